/* virtio 1.x: split virtqueues (queue.c), the modern PCI transport with
 * MSI-X (pci.c) and the devices on top (blk.c, rng.c, console.c, net.c). A
 * device gives the
 * transport its id, features, queue count, configuration bytes and a
 * notify handler; the transport does the rest. Everything runs under
 * vm->io_lock. A device that sets io before virtio_pci_init has its
 * notifies served on that I/O thread (vm/iothread.h): each queue gets an
 * eventfd, bound to its notify address through the engine (KVM_IOEVENTFD,
 * so the write never leaves the guest) or signalled by the transport when
 * the write does reach it; without io, the vCPU thread that notified
 * serves the queue. Host-side events (received frames) run on the I/O
 * thread too. */
#ifndef ACCORD_DEV_VIRTIO_H
#define ACCORD_DEV_VIRTIO_H

#include <stdbool.h>
#include <stdint.h>

#include "dev/pci.h"

struct vm;

/* device status bits */
#define VIRTIO_S_ACKNOWLEDGE 0x01
#define VIRTIO_S_DRIVER 0x02
#define VIRTIO_S_DRIVER_OK 0x04
#define VIRTIO_S_FEATURES_OK 0x08
#define VIRTIO_S_NEEDS_RESET 0x40
#define VIRTIO_S_FAILED 0x80

#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4

#define VIRTQ_MAX_SIZE 256
/* buffers in one chain, indirect tables included */
#define VIRTQ_MAX_SEGS 1024
#define VIRTIO_NO_VECTOR 0xffff
#define VIRTIO_MAX_QUEUES 8
#define VIRTIO_CONFIG_MAX 256

/* one guest buffer of a chain, already translated to a host pointer */
struct virtq_seg {
	uint8_t *p;
	uint32_t len;
};

/* a popped chain: the device-readable segments first, then the writable */
struct virtq_req {
	uint16_t head;
	unsigned nr, nw;
	uint64_t rlen, wlen; /* total bytes */
	struct virtq_seg seg[VIRTQ_MAX_SEGS];
};

struct virtq {
	uint16_t size; /* as the driver set it */
	bool enabled;
	uint16_t msix_vector;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	/* host views of the rings, resolved when the queue is enabled */
	uint8_t *desc, *avail, *used;
	uint16_t last_avail; /* next avail entry to pop */
	uint16_t used_idx;   /* next used entry to fill */
	bool event_idx, indirect;
};

/* queue.c. vq_pop: 1 with a chain in *r, 0 when the ring is empty, -1 when
 * the driver broke the rules (the caller marks the device NEEDS_RESET).
 * No guest address outside RAM is ever dereferenced. */
int vq_enable(struct vm *vm, struct virtq *q);
int vq_pop(struct vm *vm, struct virtq *q, struct virtq_req *r);
/* put a finished chain in the used ring; true when the driver wants an
 * interrupt for it */
bool vq_push(struct virtq *q, uint16_t head, uint32_t written);
/* several chains at once: the driver sees them all or none (a merged
 * receive buffer must not show up in parts) */
struct virtq_used {
	uint16_t head;
	uint32_t len;
};
bool vq_push_n(struct virtq *q, const struct virtq_used *u, unsigned n);
void vq_reset(struct virtq *q);

/* copy between a chain's segments and a flat buffer, skipping off bytes of
 * the readable (or writable) segments; returns the bytes copied */
uint64_t vq_read(const struct virtq_req *r, uint64_t off, void *dst, uint64_t len);
uint64_t vq_write(const struct virtq_req *r, uint64_t off, const void *src, uint64_t len);

struct virtio_dev;
struct iothread;

/* a queue's notify eventfd (virtio_dev.io set) */
struct virtio_kick {
	struct virtio_dev *vd;
	int q;
	int fd;
	uint64_t gpa; /* where the engine signals fd itself; 0: nowhere */
};

/* an MSI-X vector sent through an eventfd the engine routes (the split
 * irqchip's KVM_IRQFD): fd -1 until its first interrupt; the route the
 * engine holds for it (gsi) carries addr and data */
struct virtio_irqfd {
	int fd, gsi;
	bool failed; /* the engine cannot: vm_send_msi */
	uint64_t addr;
	uint32_t data;
};

struct virtio_dev_ops {
	/* the driver notified queue q */
	void (*notify)(struct virtio_dev *vd, int q);
	/* the driver reset the device */
	void (*reset)(struct virtio_dev *vd);
};

struct virtio_dev {
	struct pci_dev pci;
	struct vm *vm;
	const struct virtio_dev_ops *ops;
	void *opaque;
	uint16_t device_id; /* virtio device type, e.g. 2 for block */
	uint64_t features;  /* offered (the transport adds its own) */
	uint64_t driver_features;
	uint32_t dfsel, gfsel;
	uint8_t status;
	uint8_t config_generation;
	uint8_t isr;
	uint16_t config_vector;
	uint16_t queue_sel;
	int nqueues;
	struct virtq vq[VIRTIO_MAX_QUEUES];
	uint8_t config[VIRTIO_CONFIG_MAX];
	unsigned config_len;
	/* MSI-X: one vector for configuration changes, one per queue */
	unsigned msix_cap;
	unsigned cfgwin_cap; /* VIRTIO_PCI_CAP_PCI_CFG */
	uint8_t msix_table[16 * (VIRTIO_MAX_QUEUES + 1)];
	uint8_t msix_pba[8];
	struct virtio_irqfd irqfd[VIRTIO_MAX_QUEUES + 1];
	/* notifies served on this I/O thread (NULL: on the vCPU's) */
	struct iothread *io;
	struct virtio_kick kick[VIRTIO_MAX_QUEUES];
	/* counters */
	uint64_t notifies, interrupts, errors;
};

/* Sets up the PCI function (IDs, capabilities, BAR) and plugs it into the
 * bus. The device fills id, ops, features, nqueues and config first. */
int virtio_pci_init(struct virtio_dev *vd, struct vm *vm, struct pci_bus *bus, uint32_t class_code);
/* a device that goes away: its MSI-X vectors' engine bindings released */
void virtio_pci_release(struct virtio_dev *vd);
/* signal queue q's vector (the caller decided the driver wants it) */
void virtio_notify_queue(struct virtio_dev *vd, int q);
/* the driver broke the rules: NEEDS_RESET and a configuration interrupt */
void virtio_needs_reset(struct virtio_dev *vd);
bool virtio_has(const struct virtio_dev *vd, int bit);

/* blk.c: --disk path=FILE[,ro]. NULL after one line on stderr when the
 * image cannot be opened. The disk lives as long as the process. */
struct virtio_blk;
struct virtio_blk *virtio_blk_create(struct vm *vm, struct pci_bus *bus, const char *path,
				     bool ro);

/* rng.c: --rng, an entropy source fed by the host's getrandom(2) */
struct virtio_rng;
struct virtio_rng *virtio_rng_create(struct vm *vm, struct pci_bus *bus);

/* console.c: --console virtio, port 0 (hvc0 in Linux) on the terminal.
 * What the guest transmits is written to out_fd; with an input attached,
 * fd is read on io's thread (vm/console.h) and goes to the guest. */
struct virtio_console;
struct iothread;
struct virtio_console *virtio_console_create(struct vm *vm, struct pci_bus *bus, int out_fd);
int virtio_console_attach_input(struct virtio_console *c, struct iothread *io, int fd);
/* after the I/O thread has stopped */
void virtio_console_destroy(struct virtio_console *c);
/* completed requests and their bytes (the control API), under vm->io_lock */
struct virtio_blk_counters {
	uint64_t reads, writes, flushes, io_errors, read_bytes, write_bytes;
};
void virtio_blk_counters(struct virtio_blk *b, struct virtio_blk_counters *c);

/* net.c: a virtio-net device on a network backend (src/net/), as cfg
 * (a --net option) says. Frames from the backend are delivered on io's
 * thread. Without mac=: accord's default, 52:41:43:00:00:NN with NN
 * counting the devices from 1. */
struct virtio_net;
struct iothread;
struct net_backend;
struct net_config;
struct virtio_net *virtio_net_create(struct vm *vm, struct pci_bus *bus, struct iothread *io,
				     struct net_backend *nb, const struct net_config *cfg);
/* the MAC address the device shows the guest */
void virtio_net_mac(const struct virtio_net *n, uint8_t mac[6]);
/* for the control API, under vm->io_lock: frames and bytes each way;
 * frames for the guest dropped (no room, too long for its buffers, or by
 * the backend) and those its receive filter (CTRL_RX, CTRL_MAC) kept out;
 * the guest's frames dropped (too short, or refused by the host) and
 * those with an offload request that does not fit the frame; the TCP
 * segments the device cut for a backend without TSO; control-queue
 * commands answered VIRTIO_NET_OK and VIRTIO_NET_ERR */
struct virtio_net_counters {
	uint64_t rx_frames, rx_bytes, rx_dropped, rx_filtered;
	uint64_t tx_frames, tx_bytes, tx_dropped, tx_bad_offload, tx_segments;
	uint64_t control_ok, control_failed;
};
void virtio_net_counters(const struct virtio_net *n, struct virtio_net_counters *c);

#endif
