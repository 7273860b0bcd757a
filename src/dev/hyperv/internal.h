/* State shared by tlfs.c (partition MSRs, hypercalls, reference time) and
 * synic.c (SynIC and synthetic timers). Not for other parts of accord:
 * they use hyperv.h. */
#ifndef ACCORD_HYPERV_INTERNAL_H
#define ACCORD_HYPERV_INTERNAL_H

#include <pthread.h>

#include "dev/hyperv/hyperv.h"
#include "vm/vm.h"

#define HV_SINT_COUNT 16
#define HV_STIMER_COUNT 4

struct hv_stimer {
	uint64_t config, count;
	uint64_t exp;	  /* reference time of the next expiry; 0: not armed */
	bool pending;	  /* expired, its message waits for a free slot */
	uint64_t pending_exp;
};

/* one virtual processor's SynIC */
struct hv_vp {
	uint64_t scontrol, siefp, simp, sint[HV_SINT_COUNT];
	uint64_t vp_assist;
	/* SINTs whose slot turned a sender away since the last EOM: a
	 * message delivered there keeps the message-pending flag, so the
	 * guest still writes the EOM that sender waits for */
	uint16_t waiters;
	struct hv_stimer stimer[HV_STIMER_COUNT];
};

struct hv {
	struct vm *vm;
	/* guards everything below; taken before a LAPIC's lock, never
	 * held across a call into VMBus */
	pthread_mutex_t lock;
	uint64_t guest_os_id, hypercall, reference_tsc;
	uint64_t crash_p[5];
	const struct hv_vmbus_ops *vmbus;
	struct hv_vp vp[VM_MAX_CPUS];
};

/* synic.c: SCONTROL..SINT15 and STIMER0..3, with hv->lock not held */
bool synic_msr_read(struct hv *hv, struct vcpu *v, uint32_t msr, uint64_t *val);
bool synic_msr_write(struct hv *hv, struct vcpu *v, uint32_t msr, uint64_t val);

/* synic.c: one virtual processor's SynIC and timers in a snapshot; load
 * reads and checks them into p (a copy, not the live state): false when
 * they are not a state the guest could have reached. synic_restored then
 * tells the vCPUs' LAPICs the auto-EOI vectors. With hv->lock held. */
struct snap_buf;
struct snap_rd;
void synic_save(const struct hv_vp *p, struct snap_buf *b);
bool synic_load(struct hv *hv, struct hv_vp *p, struct snap_rd *r);
void synic_restored(struct hv *hv);

#endif
