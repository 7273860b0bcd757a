# The VMBus channel class GUIDs a Linux guest lists under
# /sys/bus/vmbus/devices/*/class_id (TLFS; Linux's include/linux/hyperv.h)
SCSI_CLASS=ba6163d9-04a1-4d29-b605-72e2ffb1dc7f
SHUTDOWN_CLASS=0e0b6031-5213-4934-818b-38d90ced39db
HEARTBEAT_CLASS=57164f39-9115-4e78-ab55-382f3bd5422d
TIMESYNC_CLASS=9527e630-d0ae-497b-adce-e80ab0175caf
KVP_CLASS=a9a0f4e7-5a45-4d96-b827-8a841e8c03e6
