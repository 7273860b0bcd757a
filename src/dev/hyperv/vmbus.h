/* VMBus host: the channel bus (vmbus.c), its ring buffers (ring.c) and the
 * channel devices on it (storvsc.c, netvsc.c). The wire formats follow the Linux
 * guest drivers (drivers/hv, include/linux/hyperv.h), which are the
 * protocol's public description.
 *
 * Locking: one mutex per bus serialises the channel messages, every
 * channel's rings and the devices' work; the device ops run under it.
 * vm->io_lock comes before it (vmbus_lock takes both), as for every other
 * device: a snapshot, which holds io_lock, finds the bus and the guest
 * memory it writes at rest while it saves them.
 *
 * Each part registers its snapshot hook at creation (vmbus first, then
 * the channel devices in the order the machine adds them), so a restored
 * bus has its channels, GPADLs and rings back before the devices load. */
#ifndef ACCORD_DEV_HYPERV_VMBUS_H
#define ACCORD_DEV_HYPERV_VMBUS_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

struct vm;
struct vmbus;
struct vmbus_channel;

#define VMBUS_PAGE 4096u

/* the wire's little-endian fields, read and written at any alignment */
static inline uint16_t vmbus_get16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return v;
}

static inline uint32_t vmbus_get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static inline uint64_t vmbus_get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static inline void vmbus_put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static inline void vmbus_put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static inline void vmbus_put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

/* packet types (enum vmbus_packet_type) and descriptor flags */
#define VMBUS_PKT_INBAND 6
#define VMBUS_PKT_XFER_PAGES 7
#define VMBUS_PKT_GPA_DIRECT 9
#define VMBUS_PKT_COMP 11
#define VMBUS_PKT_F_COMPLETION 1

/* struct vmpacket_descriptor; offset8 and len8 count 8-byte units */
struct vmbus_pkt_desc {
	uint16_t type, offset8, len8, flags;
	uint64_t trans_id;
};

/* One direction of a channel: a header page (indices, interrupt mask,
 * pending send size, feature bits) and the data pages after it, all
 * reached through the GPADL's pages. host_index is the one index the host
 * owns (read_index of the guest's outbound ring, write_index of its
 * inbound one); the copy in guest memory is never trusted. */
struct vmbus_ring {
	uint8_t **page;
	uint32_t size; /* data bytes */
	uint32_t host_index;
};

/* ring.c. Every index read from guest memory is checked; -1 means the
 * guest broke the ring and the channel must stop. */
int ring_attach(struct vmbus_ring *r, uint8_t **page, uint32_t npages, bool host_reads);
/* the same for a ring a snapshot describes, with the host's index as it
 * was saved (guest memory is not touched); -1 when that index is bad */
int ring_restore(struct vmbus_ring *r, uint8_t **page, uint32_t npages, uint32_t host_index);
/* guest to host: copy the next packet (descriptor first) into buf and
 * return its length; 0 when the ring is empty; -1 when an index or the
 * descriptor is corrupt or the packet is longer than cap */
int ring_peek(struct vmbus_ring *r, void *buf, uint32_t cap);
/* drop the packet ring_peek returned; true when the guest waits for room
 * (pending_send_sz) and now has it */
bool ring_consume(struct vmbus_ring *r, uint32_t len);
/* host to guest: true when a packet of len data bytes fits now; if not,
 * pending_send_sz asks the guest to signal once it does. -1: corrupt */
int ring_room(struct vmbus_ring *r, uint32_t len);
/* 1 sent and the guest wants an interrupt, 0 sent with interrupts masked,
 * -2 no room, -1 corrupt */
int ring_send(struct vmbus_ring *r, uint16_t type, uint16_t flags, uint64_t trans_id, const void *data,
	      uint32_t len);

/* the same with extlen bytes (a multiple of 8) of type-specific header
 * between the descriptor and the data, which offset8 then skips (the
 * transfer-page header of VMBUS_PKT_XFER_PAGES) */
int ring_send_ext(struct vmbus_ring *r, uint16_t type, uint16_t flags, uint64_t trans_id, const void *ext,
		  uint32_t extlen, const void *data, uint32_t len);

/* guest buffers named by a packet's GPA ranges (GPA_DIRECT packets),
 * translated to host pointers, at most one page each */
struct vmbus_sg {
	uint8_t *p;
	uint32_t len;
};
#define VMBUS_MAX_SG 520

/* What a channel device plugs into the bus. All run under the bus lock. */
struct vmbus_dev_ops {
	/* the guest opened the channel; its rings are attached */
	void (*open)(struct vmbus_channel *ch);
	/* the guest signalled the channel: serve its ring */
	void (*notify)(struct vmbus_channel *ch);
	/* closed by the guest, by UNLOAD or by a rescind */
	void (*close)(struct vmbus_channel *ch);
};

struct vmbus_channel {
	struct vmbus *vb;
	struct vm *vm;
	const struct vmbus_dev_ops *ops;
	void *opaque;
	uint32_t relid, conn_id;
	uint8_t type[16], instance[16];
	uint16_t mmio_megabytes;
	bool open, broken, rescinded;
	uint32_t target_vp, ring_gpadl;
	struct vmbus_ring in;  /* guest to host */
	struct vmbus_ring out; /* host to guest */
	/* counters */
	uint64_t signals_in, interrupts_out, packets_in, packets_out;
};

/* vmbus.c */
struct vmbus *vmbus_create(struct vm *vm);
/* offer a channel of class type; NULL when the bus is full */
struct vmbus_channel *vmbus_add_channel(struct vmbus *vb, const uint8_t type[16], const uint8_t instance[16],
					const struct vmbus_dev_ops *ops, void *opaque);
/* for work outside the SynIC's callbacks (a timer, a signal): vm->io_lock
 * and the bus lock, under which the device ops run */
void vmbus_lock(struct vmbus *vb);
void vmbus_unlock(struct vmbus *vb);
/* withdraw an offer (hot removal): RESCIND_CHANNELOFFER; locks the bus */
void vmbus_rescind(struct vmbus_channel *ch);
/* host to guest packet on an open channel, with the interrupt the guest
 * asked for: 0, -2 when the ring has no room, -1 when the channel is
 * stopped */
int vmbus_chan_send(struct vmbus_channel *ch, uint16_t type, uint16_t flags, uint64_t trans_id,
		    const void *data, uint32_t len);
/* the same with a type-specific header (ring_send_ext) */
int vmbus_chan_send_ext(struct vmbus_channel *ch, uint16_t type, uint16_t flags, uint64_t trans_id,
			const void *ext, uint32_t extlen, const void *data, uint32_t len);
/* the pages of a complete GPADL the guest made for this channel (a
 * device's own buffers: netvsc's send and receive buffers), or NULL. The
 * array lives until the guest tears the GPADL down, so it is looked up
 * again under the bus lock each time it is used. */
uint8_t **vmbus_chan_gpadl(struct vmbus_channel *ch, uint32_t id, uint32_t *npages);
/* the guest broke the channel's protocol: stop it with one line on stderr */
void vmbus_chan_fail(struct vmbus_channel *ch, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* the guest made room that a device waits for: signal it */
void vmbus_chan_kick(struct vmbus_channel *ch);
/* the GPA ranges of a GPA_DIRECT packet (pkt is the whole packet, len its
 * length): the number of segments in sg, their total in *total, or -1
 * when a range is malformed or outside guest RAM */
int vmbus_pkt_sg(struct vm *vm, const uint8_t *pkt, uint32_t len, struct vmbus_sg *sg, int max, uint64_t *total);

/* storvsc.c: a SCSI disk on a raw image; NULL after one line on stderr */
struct storvsc;
struct storvsc *storvsc_create(struct vmbus *vb, const char *path, bool ro);
/* completed requests and their bytes (the control API); locks the bus */
struct storvsc_counters {
	uint64_t reads, writes, flushes, unmaps, io_errors, read_bytes, write_bytes;
};
void storvsc_counters(struct storvsc *s, struct storvsc_counters *c);
/* hot removal: the guest sees the channel rescinded; the image is closed */
void storvsc_remove(struct storvsc *s);

/* netvsc.c: a network adapter on a backend (net/net.h), whose port it
 * takes; NULL after one line on stderr */
struct netvsc;
struct iothread;
struct net_backend;
struct netvsc_counters {
	uint64_t packets;			   /* NVSP packets taken from the guest */
	uint64_t tx_frames, tx_bytes, tx_dropped; /* guest to backend */
	uint64_t rx_frames, rx_bytes, rx_dropped; /* backend to guest */
	uint64_t rx_control;			   /* RNDIS replies and indications */
	uint64_t errors;			   /* guest protocol errors */
};
struct netvsc *netvsc_create(struct vmbus *vb, struct vm *vm, struct iothread *io, struct net_backend *nb,
			     const uint8_t *mac);
/* link up or down, with an RNDIS status indication to the guest */
void netvsc_set_link(struct netvsc *n, bool up);
void netvsc_counters(struct netvsc *n, struct netvsc_counters *c);
void netvsc_mac(struct netvsc *n, uint8_t mac[6]);

/* util.c: the integration services (shutdown, heartbeat, time sync, KVP).
 * With HV_UTIL_THREAD a thread runs hv_util_tick once a second and, with
 * HV_UTIL_SIGTERM too, turns SIGTERM into a shutdown request. NULL after
 * one line on stderr. */
struct hv_util;
#define HV_UTIL_THREAD 1
#define HV_UTIL_SIGTERM 2
struct hv_util *hv_util_create(struct vmbus *vb, struct vm *vm, unsigned flags);
/* one second's work: the heartbeat, every 5th a time sample, every 10th
 * a KVP enumeration (when none is under way); locks the bus */
void hv_util_tick(struct hv_util *h);
/* ask the guest to shut down: 0, or -1 when its shutdown channel is not
 * open and negotiated */
int hv_util_shutdown(struct hv_util *h);
struct hv_util_state {
	bool shutdown_ready, kvp_ready;  /* open and negotiated */
	uint32_t kvp_version, timesync_version; /* negotiated (major | minor << 16), or 0 */
	uint64_t heartbeats;   /* answered correctly */
	uint64_t time_samples; /* time messages the guest acknowledged */
	uint64_t kvp_rounds;   /* complete enumerations of the pools */
	uint64_t kvp_sets_done, kvp_sets_failed; /* SETs the guest stored or refused */
	unsigned kvp_sets_pending;
};
void hv_util_status(struct hv_util *h, struct hv_util_state *st);
/* heartbeats the guest answered correctly */
uint64_t hv_util_heartbeats(struct hv_util *h);
/* the KVP pools (enum hv_kvp_exchg_pool); the host enumerates the auto,
 * guest and external pools, at most HV_KVP_MAX_PAIRS pairs each */
#define HV_KVP_POOL_EXTERNAL 0
#define HV_KVP_POOL_GUEST 1
#define HV_KVP_POOL_AUTO 2
#define HV_KVP_POOL_COUNT 5
#define HV_KVP_MAX_PAIRS 64
/* each pair of pool from the last complete enumeration (UTF-8), under
 * the bus lock */
void hv_util_kvp_foreach(struct hv_util *h, unsigned pool, void (*fn)(void *arg, const char *key, const char *value),
			 void *arg);
/* queue a SET of key (not empty, at most 255 UTF-16 units) to value (at
 * most 1023) in the external pool: 0; -1 when KVP is not connected, -2
 * when 8 SETs already wait, -3 when key or value is not UTF-8 or too long */
int hv_util_kvp_set(struct hv_util *h, const char *key, const char *value);

#endif
