/* VMBus host: the channel management protocol on the SynIC message
 * connection (drivers/hv/connection.c, channel_mgmt.c): version
 * negotiation, offers, GPADLs, open/close, rescind and unload. Channel
 * signals arrive through HvSignalEvent on each channel's connection id and
 * leave as event flags (bit = relid) in the SINT the guest connected on.
 * Offers never use monitor pages, so the guest always signals through the
 * hypercall. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "boot/aml.h"
#include "boot/boot.h"
#include "dev/hyperv/hyperv.h"
#include "dev/hyperv/vmbus.h"
#include "vm/snapshot.h"
#include "vm/vm.h"

/* enum vmbus_channel_message_type */
enum {
	MSG_OFFERCHANNEL = 1,
	MSG_RESCIND_CHANNELOFFER = 2,
	MSG_REQUESTOFFERS = 3,
	MSG_ALLOFFERS_DELIVERED = 4,
	MSG_OPENCHANNEL = 5,
	MSG_OPENCHANNEL_RESULT = 6,
	MSG_CLOSECHANNEL = 7,
	MSG_GPADL_HEADER = 8,
	MSG_GPADL_BODY = 9,
	MSG_GPADL_CREATED = 10,
	MSG_GPADL_TEARDOWN = 11,
	MSG_GPADL_TORNDOWN = 12,
	MSG_RELID_RELEASED = 13,
	MSG_INITIATE_CONTACT = 14,
	MSG_VERSION_RESPONSE = 15,
	MSG_UNLOAD = 16,
	MSG_UNLOAD_RESPONSE = 17,
	MSG_TL_CONNECT_REQUEST = 21,
	MSG_MODIFYCHANNEL = 22,
	MSG_TL_CONNECT_RESULT = 23,
	MSG_MODIFYCHANNEL_RESPONSE = 24,
};

#define VERSION(major, minor) ((major) << 16 | (minor))
#define VERSION_WIN10_V5 VERSION(5, 0)
#define VERSION_WIN10_V5_3 VERSION(5, 3)
/* the message connection ids: 1 before protocol 5.0, then 4 for
 * INITIATE_CONTACT and whatever VERSION_RESPONSE names afterwards */
#define MSG_CONN_ID 1
#define MSG_CONN_ID_4 4
#define CHAN_CONN_ID_BASE 0x100
#define HV_MESSAGE_VMBUS 1
#define VMBUS_SINT_DEFAULT 2
#define STATUS_UNSUCCESSFUL 0xc0000001u

#define MAX_CHANNELS 64
#define MAX_GPADLS 256
#define QUEUE_LEN (2 * MAX_CHANNELS + 16)
/* first line of each kind of guest error on stderr; the rest counted */
#define MAX_ERROR_LINES 20

#define HDR 8
#define GPADL_HEADER_LEN 20
#define GPADL_BODY_LEN 16

/* range_buflen is 16 bits: at most 8191 PFNs (32 MiB) per GPADL */
struct gpadl {
	uint32_t id, relid;
	uint32_t want, have; /* 64-bit words of range data */
	uint16_t rangecount;
	uint64_t *words;
	bool complete;
	uint32_t npages;
	uint8_t **page;
	struct vmbus_channel *user; /* the open channel whose ring it holds */
};

struct msg {
	uint32_t len;
	uint8_t data[HV_MESSAGE_PAYLOAD_MAX];
};

struct vmbus {
	struct vm *vm;
	pthread_mutex_t lock;
	bool connected;
	uint32_t version, msg_conn_id;
	unsigned vp, sint;
	struct vmbus_channel *chan[MAX_CHANNELS];
	unsigned nchan;
	struct gpadl *gpadl[MAX_GPADLS];
	struct msg queue[QUEUE_LEN];
	unsigned q_head, q_len;
	uint64_t errors, dropped;
};

/* the versions Linux 6.1 asks for, newest first (connection.c) */
static const uint32_t versions[] = {
	VERSION(5, 3), VERSION(5, 2), VERSION(5, 1), VERSION(5, 0), VERSION(4, 1),
	VERSION(4, 0), VERSION(3, 0), VERSION(2, 4),
};

static void vmbus_error(struct vmbus *vb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void vmbus_error(struct vmbus *vb, const char *fmt, ...)
{
	char line[256];
	va_list ap;

	if (vb->errors++ >= MAX_ERROR_LINES)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "accord: vmbus: %s\n", line);
}

/* ---- host to guest messages, queued while the guest's slot is busy ---- */

static void vmbus_flush(struct vmbus *vb)
{
	while (vb->q_len) {
		struct msg *m = &vb->queue[vb->q_head];
		int rc = hv_synic_post_message(vb->vm, vb->vp, vb->sint, HV_MESSAGE_VMBUS, m->data, m->len);

		if (rc == -1)
			return;
		if (rc < 0)
			vb->dropped++;
		vb->q_head = (vb->q_head + 1) % QUEUE_LEN;
		vb->q_len--;
	}
}

static void vmbus_post(struct vmbus *vb, uint32_t type, uint8_t *m, uint32_t len)
{
	struct msg *q;

	vmbus_put32(m, type);
	vmbus_put32(m + 4, 0);
	if (!vb->q_len) {
		int rc = hv_synic_post_message(vb->vm, vb->vp, vb->sint, HV_MESSAGE_VMBUS, m, len);

		if (rc == 0)
			return;
		if (rc < 0 && rc != -1) {
			vb->dropped++;
			return;
		}
	}
	if (vb->q_len == QUEUE_LEN) {
		vmbus_error(vb, "message queue full; message %u dropped", type);
		vb->dropped++;
		return;
	}
	q = &vb->queue[(vb->q_head + vb->q_len++) % QUEUE_LEN];
	q->len = len;
	memcpy(q->data, m, len);
}

/* ---- channels and GPADLs ---- */

static struct vmbus_channel *chan_by_relid(struct vmbus *vb, uint32_t relid)
{
	if (relid < 1 || relid > vb->nchan)
		return NULL;
	return vb->chan[relid - 1];
}

static struct gpadl **gpadl_slot(struct vmbus *vb, uint32_t id)
{
	for (unsigned i = 0; i < MAX_GPADLS; i++)
		if (vb->gpadl[i] && vb->gpadl[i]->id == id)
			return &vb->gpadl[i];
	return NULL;
}

static void gpadl_free(struct gpadl **slot)
{
	struct gpadl *g = *slot;

	free(g->words);
	free(g->page);
	free(g);
	*slot = NULL;
}

static void chan_close(struct vmbus_channel *ch)
{
	struct gpadl **g;

	if (!ch->open)
		return;
	if (ch->ops->close)
		ch->ops->close(ch);
	g = gpadl_slot(ch->vb, ch->ring_gpadl);
	if (g)
		(*g)->user = NULL;
	memset(&ch->in, 0, sizeof(ch->in));
	memset(&ch->out, 0, sizeof(ch->out));
	ch->open = false;
	ch->broken = false;
}

/* UNLOAD, or a new INITIATE_CONTACT: the guest starts over */
static void vmbus_reset(struct vmbus *vb)
{
	for (unsigned i = 0; i < vb->nchan; i++)
		chan_close(vb->chan[i]);
	for (unsigned i = 0; i < MAX_GPADLS; i++)
		if (vb->gpadl[i])
			gpadl_free(&vb->gpadl[i]);
	vb->connected = false;
}

/* struct vmbus_channel_offer_channel */
#define OFFER_TYPE 8
#define OFFER_INSTANCE 24
#define OFFER_MMIO_MEGABYTES 58
#define OFFER_RELID 184
#define OFFER_DEDICATED_INTERRUPT 190
#define OFFER_CONNECTION_ID 192
#define OFFER_LEN 196

static void send_offer(struct vmbus *vb, struct vmbus_channel *ch)
{
	uint8_t m[OFFER_LEN] = { 0 };

	memcpy(m + OFFER_TYPE, ch->type, 16);
	memcpy(m + OFFER_INSTANCE, ch->instance, 16);
	vmbus_put16(m + OFFER_MMIO_MEGABYTES, ch->mmio_megabytes);
	vmbus_put32(m + OFFER_RELID, ch->relid);
	/* monitorid 0, monitor_allocated 0: the guest signals by hypercall */
	vmbus_put16(m + OFFER_DEDICATED_INTERRUPT, 1);
	vmbus_put32(m + OFFER_CONNECTION_ID, ch->conn_id);
	vmbus_post(vb, MSG_OFFERCHANNEL, m, sizeof(m));
}

/* The ranges of a complete GPADL become one page list; every PFN must be
 * guest RAM. */
static int gpadl_resolve(struct vmbus *vb, struct gpadl *g, bool report)
{
	uint32_t w = 0, n = 0;

	g->page = calloc(g->want, sizeof(*g->page));
	if (!g->page)
		return -1;
	for (unsigned r = 0; r < g->rangecount; r++) {
		uint32_t count, offset;
		uint64_t pages;

		if (w >= g->want)
			return -1;
		count = (uint32_t)g->words[w];
		offset = g->words[w] >> 32;
		w++;
		pages = ((uint64_t)offset + count + VMBUS_PAGE - 1) / VMBUS_PAGE;
		if (!count || offset >= VMBUS_PAGE || pages > g->want - w)
			return -1;
		for (uint64_t i = 0; i < pages; i++, w++) {
			uint64_t pfn = g->words[w];

			if (pfn >= (1ull << 52) / VMBUS_PAGE ||
			    !(g->page[n++] = vm_gpa(vb->vm, pfn * VMBUS_PAGE, VMBUS_PAGE))) {
				if (report)
					vmbus_error(vb, "GPADL %u: PFN %#llx is not guest RAM", g->id,
						    (unsigned long long)pfn);
				return -1;
			}
		}
	}
	if (w != g->want)
		return -1;
	g->npages = n;
	return 0;
}

/* GPADL_CREATED for a complete GPADL, or its refusal (ok false or pages
 * that are not guest RAM), which forgets it */
static void gpadl_finish(struct vmbus *vb, struct gpadl **slot, bool ok)
{
	struct gpadl *g = *slot;
	uint8_t m[20] = { 0 };

	vmbus_put32(m + 8, g->relid);
	vmbus_put32(m + 12, g->id);
	if (!ok || gpadl_resolve(vb, g, true)) {
		vmbus_error(vb, "GPADL %u refused: malformed ranges or pages outside guest RAM", g->id);
		vmbus_put32(m + 16, STATUS_UNSUCCESSFUL);
		gpadl_free(slot);
	} else {
		/* the ranges stay: a snapshot saves them and resolves them again */
		g->complete = true;
	}
	vmbus_post(vb, MSG_GPADL_CREATED, m, sizeof(m));
}

static void msg_gpadl_header(struct vmbus *vb, const uint8_t *p, uint32_t len)
{
	uint32_t relid = vmbus_get32(p + 8), id = vmbus_get32(p + 12);
	uint32_t words = (len - GPADL_HEADER_LEN) / 8;
	uint16_t buflen = vmbus_get16(p + 16), rangecount = vmbus_get16(p + 18);
	struct gpadl *g;
	struct gpadl **slot = NULL;
	uint8_t m[20] = { 0 };

	if (!chan_by_relid(vb, relid) || gpadl_slot(vb, id) || !rangecount || buflen % 8 ||
	    buflen / 8 < 2u * rangecount || words > buflen / 8 ||
	    (len - GPADL_HEADER_LEN) % 8) {
		vmbus_error(vb, "GPADL header %u for relid %u refused (%u ranges, %u bytes)", id, relid,
			    rangecount, buflen);
		goto refuse;
	}
	for (unsigned i = 0; i < MAX_GPADLS && !slot; i++)
		if (!vb->gpadl[i])
			slot = &vb->gpadl[i];
	g = slot ? calloc(1, sizeof(*g)) : NULL;
	if (g)
		g->words = malloc(buflen);
	if (!g || !g->words) {
		free(g);
		vmbus_error(vb, "GPADL %u refused: too many GPADLs", id);
		goto refuse;
	}
	g->id = id;
	g->relid = relid;
	g->want = buflen / 8;
	g->rangecount = rangecount;
	memcpy(g->words, p + GPADL_HEADER_LEN, words * 8);
	g->have = words;
	*slot = g;
	if (g->have == g->want)
		gpadl_finish(vb, slot, true);
	return;
refuse:
	vmbus_put32(m + 8, relid);
	vmbus_put32(m + 12, id);
	vmbus_put32(m + 16, STATUS_UNSUCCESSFUL);
	vmbus_post(vb, MSG_GPADL_CREATED, m, sizeof(m));
}

static void msg_gpadl_body(struct vmbus *vb, const uint8_t *p, uint32_t len)
{
	uint32_t id = vmbus_get32(p + 12), words = (len - GPADL_BODY_LEN) / 8;
	struct gpadl **slot = gpadl_slot(vb, id);
	struct gpadl *g = slot ? *slot : NULL;

	if (!g || g->complete) {
		vmbus_error(vb, "GPADL body for unknown GPADL %u", id);
		return;
	}
	if ((len - GPADL_BODY_LEN) % 8 || words > g->want - g->have) {
		vmbus_error(vb, "GPADL %u: body holds %u PFNs, %u expected", id, words, g->want - g->have);
		gpadl_finish(vb, slot, false);
		return;
	}
	memcpy(g->words + g->have, p + GPADL_BODY_LEN, words * 8);
	g->have += words;
	if (g->have == g->want)
		gpadl_finish(vb, slot, true);
}

static void msg_gpadl_teardown(struct vmbus *vb, const uint8_t *p)
{
	uint32_t id = vmbus_get32(p + 12);
	struct gpadl **slot = gpadl_slot(vb, id);
	uint8_t m[12] = { 0 };

	if (!slot) {
		vmbus_error(vb, "teardown of unknown GPADL %u", id);
		return;
	}
	/* the guest closes first; a ring torn down under an open channel
	 * closes it */
	if ((*slot)->user)
		chan_close((*slot)->user);
	gpadl_free(slot);
	vmbus_put32(m + 8, id);
	vmbus_post(vb, MSG_GPADL_TORNDOWN, m, sizeof(m));
}

static void msg_open(struct vmbus *vb, const uint8_t *p)
{
	uint32_t relid = vmbus_get32(p + 8), openid = vmbus_get32(p + 12), gid = vmbus_get32(p + 16);
	uint32_t vp = vmbus_get32(p + 20), split = vmbus_get32(p + 24);
	struct vmbus_channel *ch = chan_by_relid(vb, relid);
	struct gpadl **slot = gpadl_slot(vb, gid);
	struct gpadl *g = slot ? *slot : NULL;
	uint8_t m[20] = { 0 };
	const char *why = NULL;

	if (!ch || ch->rescinded)
		why = "no such channel";
	else if (ch->open)
		why = "already open";
	else if (!g || !g->complete || g->relid != relid || g->user)
		why = "no usable ring GPADL";
	else if (g->npages < 4 || split < 2 || split > g->npages - 2)
		why = "bad ring split";
	else if (vp >= (uint32_t)vb->vm->ncpus)
		why = "no such target VP";
	else if (ring_attach(&ch->in, g->page, split, true) ||
		 ring_attach(&ch->out, g->page + split, g->npages - split, false))
		why = "ring indices out of range";
	if (why) {
		vmbus_error(vb, "open of relid %u refused: %s", relid, why);
		vmbus_put32(m + 16, STATUS_UNSUCCESSFUL);
	} else {
		ch->open = true;
		ch->broken = false;
		ch->target_vp = vp;
		ch->ring_gpadl = gid;
		g->user = ch;
		if (ch->ops->open)
			ch->ops->open(ch);
	}
	vmbus_put32(m + 8, relid);
	vmbus_put32(m + 12, openid);
	vmbus_post(vb, MSG_OPENCHANNEL_RESULT, m, sizeof(m));
}

static bool version_known(uint32_t v)
{
	for (unsigned i = 0; i < sizeof(versions) / sizeof(versions[0]); i++)
		if (versions[i] == v)
			return true;
	return false;
}

static void msg_initiate_contact(struct vmbus *vb, uint32_t conn_id, const uint8_t *p)
{
	uint32_t version = vmbus_get32(p + 8), vp = vmbus_get32(p + 12);
	unsigned sint = version >= VERSION_WIN10_V5 ? p[16] : VMBUS_SINT_DEFAULT;
	uint8_t m[16] = { 0 };

	if (vp >= (uint32_t)vb->vm->ncpus || sint >= 16) {
		vmbus_error(vb, "INITIATE_CONTACT names VP %u SINT %u: ignored", vp, sint);
		return;
	}
	vmbus_reset(vb);
	vb->vp = vp;
	vb->sint = sint;
	if (version_known(version) && (conn_id == MSG_CONN_ID_4) == (version >= VERSION_WIN10_V5)) {
		vb->connected = true;
		vb->version = version;
		vb->msg_conn_id = version >= VERSION_WIN10_V5 ? MSG_CONN_ID_4 : MSG_CONN_ID;
		m[8] = 1;
		vmbus_put32(m + 12, vb->msg_conn_id);
	}
	vmbus_post(vb, MSG_VERSION_RESPONSE, m, sizeof(m));
}

/* minimum lengths of the guest's messages (HDR included) */
static uint32_t msg_min_len(uint32_t type)
{
	switch (type) {
	case MSG_REQUESTOFFERS:
	case MSG_UNLOAD:
		return HDR;
	case MSG_CLOSECHANNEL:
	case MSG_RELID_RELEASED:
		return HDR + 4;
	case MSG_GPADL_TEARDOWN:
	case MSG_MODIFYCHANNEL:
		return HDR + 8;
	case MSG_GPADL_BODY:
		return GPADL_BODY_LEN;
	case MSG_GPADL_HEADER:
		return GPADL_HEADER_LEN + 16; /* one range of one page */
	case MSG_OPENCHANNEL:
		return HDR + 20;
	case MSG_INITIATE_CONTACT:
		return HDR + 32;
	default:
		return 0;
	}
}

static void vmbus_message(struct vmbus *vb, uint32_t conn_id, const uint8_t *p, uint32_t len)
{
	uint32_t type = len >= HDR ? vmbus_get32(p) : 0, min = msg_min_len(type);
	struct vmbus_channel *ch;
	uint8_t m[16] = { 0 };

	if (!min) {
		vmbus_error(vb, "message type %u (%u bytes) not understood", type, len);
		return;
	}
	if (len < min) {
		vmbus_error(vb, "message type %u is %u bytes, at least %u expected", type, len, min);
		return;
	}
	if (type == MSG_INITIATE_CONTACT) {
		msg_initiate_contact(vb, conn_id, p);
		return;
	}
	if (!vb->connected) {
		vmbus_error(vb, "message type %u before INITIATE_CONTACT", type);
		return;
	}
	if (conn_id != vb->msg_conn_id) {
		vmbus_error(vb, "message type %u on connection id %u, not %u", type, conn_id, vb->msg_conn_id);
		return;
	}
	switch (type) {
	case MSG_REQUESTOFFERS:
		for (unsigned i = 0; i < vb->nchan; i++)
			if (!vb->chan[i]->rescinded)
				send_offer(vb, vb->chan[i]);
		vmbus_post(vb, MSG_ALLOFFERS_DELIVERED, m, HDR);
		break;
	case MSG_GPADL_HEADER:
		msg_gpadl_header(vb, p, len);
		break;
	case MSG_GPADL_BODY:
		msg_gpadl_body(vb, p, len);
		break;
	case MSG_GPADL_TEARDOWN:
		msg_gpadl_teardown(vb, p);
		break;
	case MSG_OPENCHANNEL:
		msg_open(vb, p);
		break;
	case MSG_CLOSECHANNEL:
		ch = chan_by_relid(vb, vmbus_get32(p + 8));
		if (ch)
			chan_close(ch);
		else
			vmbus_error(vb, "close of unknown relid %u", vmbus_get32(p + 8));
		break;
	case MSG_RELID_RELEASED:
		if (!chan_by_relid(vb, vmbus_get32(p + 8)))
			vmbus_error(vb, "release of unknown relid %u", vmbus_get32(p + 8));
		break;
	case MSG_MODIFYCHANNEL:
		ch = chan_by_relid(vb, vmbus_get32(p + 8));
		vmbus_put32(m + 8, vmbus_get32(p + 8));
		if (ch && vmbus_get32(p + 12) < (uint32_t)vb->vm->ncpus)
			ch->target_vp = vmbus_get32(p + 12);
		else
			vmbus_put32(m + 12, STATUS_UNSUCCESSFUL);
		if (vb->version >= VERSION_WIN10_V5_3)
			vmbus_post(vb, MSG_MODIFYCHANNEL_RESPONSE, m, 16);
		break;
	case MSG_UNLOAD:
		vmbus_reset(vb);
		vmbus_post(vb, MSG_UNLOAD_RESPONSE, m, HDR);
		break;
	}
}

/* ---- the SynIC side (struct hv_vmbus_ops) ---- */

static uint16_t vmbus_post_message(void *opaque, unsigned vp, uint32_t connection_id, uint32_t type,
				   const void *payload, uint32_t len)
{
	struct vmbus *vb = opaque;

	if (connection_id != MSG_CONN_ID && connection_id != MSG_CONN_ID_4)
		return HV_STATUS_INVALID_CONNECTION_ID;
	if (type != HV_MESSAGE_VMBUS || len > HV_MESSAGE_PAYLOAD_MAX)
		return HV_STATUS_INVALID_PARAMETER;
	vmbus_lock(vb);
	vmbus_message(vb, connection_id, payload, len);
	vmbus_unlock(vb);
	return HV_STATUS_SUCCESS;
}

static uint16_t vmbus_signal_event(void *opaque, unsigned vp, uint32_t connection_id, uint16_t flag)
{
	struct vmbus *vb = opaque;
	struct vmbus_channel *ch;

	if (connection_id <= CHAN_CONN_ID_BASE)
		return HV_STATUS_INVALID_CONNECTION_ID;
	vmbus_lock(vb);
	ch = chan_by_relid(vb, connection_id - CHAN_CONN_ID_BASE);
	if (!ch) {
		vmbus_unlock(vb);
		return HV_STATUS_INVALID_CONNECTION_ID;
	}
	ch->signals_in++;
	if (ch->open && !ch->broken && ch->ops->notify)
		ch->ops->notify(ch);
	vmbus_unlock(vb);
	return HV_STATUS_SUCCESS;
}

static void vmbus_eom(void *opaque, unsigned vp)
{
	struct vmbus *vb = opaque;

	vmbus_lock(vb);
	vmbus_flush(vb);
	vmbus_unlock(vb);
}

/* ---- what the channel devices use ---- */

int vmbus_chan_send(struct vmbus_channel *ch, uint16_t type, uint16_t flags, uint64_t trans_id,
		    const void *data, uint32_t len)
{
	return vmbus_chan_send_ext(ch, type, flags, trans_id, NULL, 0, data, len);
}

int vmbus_chan_send_ext(struct vmbus_channel *ch, uint16_t type, uint16_t flags, uint64_t trans_id,
			const void *ext, uint32_t extlen, const void *data, uint32_t len)
{
	int rc;

	if (!ch->open || ch->broken)
		return -1;
	rc = ring_send_ext(&ch->out, type, flags, trans_id, ext, extlen, data, len);
	if (rc == -1) {
		vmbus_chan_fail(ch, "the guest's receive ring has corrupt indices");
		return -1;
	}
	if (rc == -2)
		return -2;
	ch->packets_out++;
	if (rc == 1)
		vmbus_chan_kick(ch);
	return 0;
}

uint8_t **vmbus_chan_gpadl(struct vmbus_channel *ch, uint32_t id, uint32_t *npages)
{
	struct gpadl **slot = gpadl_slot(ch->vb, id);

	if (!slot || !(*slot)->complete || (*slot)->relid != ch->relid)
		return NULL;
	*npages = (*slot)->npages;
	return (*slot)->page;
}

void vmbus_chan_kick(struct vmbus_channel *ch)
{
	struct vmbus *vb = ch->vb;

	ch->interrupts_out++;
	hv_synic_signal_event(vb->vm, ch->target_vp, vb->sint, ch->relid);
}

void vmbus_chan_fail(struct vmbus_channel *ch, const char *fmt, ...)
{
	char line[256];
	va_list ap;

	if (ch->broken)
		return;
	ch->broken = true;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "accord: vmbus: channel %u stopped: %s\n", ch->relid, line);
}

int vmbus_pkt_sg(struct vm *vm, const uint8_t *pkt, uint32_t len, struct vmbus_sg *sg, int max, uint64_t *total)
{
	uint32_t end = vmbus_get16(pkt + 2) * 8u, off = sizeof(struct vmbus_pkt_desc) + 8, nranges;
	int n = 0;

	*total = 0;
	if (end > len || end < off)
		return -1;
	nranges = vmbus_get32(pkt + sizeof(struct vmbus_pkt_desc) + 4);
	for (uint32_t r = 0; r < nranges; r++) {
		uint32_t rlen, roff;
		uint64_t pages;

		if (end - off < 8)
			return -1;
		rlen = vmbus_get32(pkt + off);
		roff = vmbus_get32(pkt + off + 4);
		off += 8;
		pages = ((uint64_t)roff % VMBUS_PAGE + rlen + VMBUS_PAGE - 1) / VMBUS_PAGE;
		if (!rlen || roff >= VMBUS_PAGE || pages > (end - off) / 8)
			return -1;
		for (uint64_t i = 0; i < pages; i++, off += 8) {
			uint64_t pfn = vmbus_get64(pkt + off);
			uint32_t start = i ? 0 : roff, n_bytes = VMBUS_PAGE - start;
			uint8_t *p;

			if (n_bytes > rlen)
				n_bytes = rlen;
			if (pfn >= (1ull << 52) / VMBUS_PAGE || !(p = vm_gpa(vm, pfn * VMBUS_PAGE + start, n_bytes)))
				return -1;
			/* pages adjacent in guest RAM are adjacent here: one segment, one
			 * system call for the disk */
			if (n && sg[n - 1].p + sg[n - 1].len == p && sg[n - 1].len <= UINT32_MAX - n_bytes) {
				sg[n - 1].len += n_bytes;
			} else {
				if (n == max)
					return -1;
				sg[n].p = p;
				sg[n++].len = n_bytes;
			}
			rlen -= n_bytes;
			*total += n_bytes;
		}
	}
	return n;
}

/* ---- snapshots ---- */

#define SNAP_VMBUS_VERSION 1

static void put8(struct snap_buf *b, uint8_t v)
{
	snap_put(b, &v, 1);
}

/* The bus, its channels and their GPADLs, as ranges: the pages are
 * resolved again on load, which checks them as the guest's own GPADL
 * messages are checked. Ring contents are guest memory; the host's index
 * of each ring is here. Runs under vm->io_lock, which every user of the
 * bus holds. */
static int vmbus_save(void *opaque, struct snap_buf *b, char *err, size_t n)
{
	struct vmbus *vb = opaque;
	uint32_t u32[5], ngpadl = 0;

	pthread_mutex_lock(&vb->lock);
	for (unsigned i = 0; i < vb->nchan; i++) {
		if (vb->chan[i]->rescinded) {
			snprintf(err, n, "VMBus channel %u was hot-removed (rescinded): a VM with a removed device cannot be saved",
				 vb->chan[i]->relid);
			pthread_mutex_unlock(&vb->lock);
			return SNAP_REFUSED;
		}
	}
	u32[0] = SNAP_VMBUS_VERSION;
	snap_put(b, u32, 4);
	put8(b, vb->connected);
	u32[0] = vb->version;
	u32[1] = vb->msg_conn_id;
	u32[2] = vb->vp;
	u32[3] = vb->sint;
	u32[4] = vb->nchan;
	snap_put(b, u32, 20);
	snap_put(b, &vb->errors, 8);
	snap_put(b, &vb->dropped, 8);
	for (unsigned i = 0; i < vb->nchan; i++) {
		struct vmbus_channel *ch = vb->chan[i];

		snap_put(b, &ch->relid, 4);
		snap_put(b, ch->type, 16);
		snap_put(b, ch->instance, 16);
		put8(b, ch->open);
		put8(b, ch->broken);
		u32[0] = ch->target_vp;
		u32[1] = ch->ring_gpadl;
		u32[2] = ch->open ? (uint32_t)(ch->out.page - ch->in.page) : 0;
		u32[3] = ch->in.host_index;
		u32[4] = ch->out.host_index;
		snap_put(b, u32, 20);
		snap_put(b, &ch->signals_in, 8);
		snap_put(b, &ch->interrupts_out, 8);
		snap_put(b, &ch->packets_in, 8);
		snap_put(b, &ch->packets_out, 8);
	}
	snap_put(b, &vb->q_len, 4);
	for (unsigned i = 0; i < vb->q_len; i++) {
		const struct msg *m = &vb->queue[(vb->q_head + i) % QUEUE_LEN];

		snap_put(b, &m->len, 4);
		snap_put(b, m->data, m->len);
	}
	for (unsigned i = 0; i < MAX_GPADLS; i++)
		ngpadl += vb->gpadl[i] != NULL;
	snap_put(b, &ngpadl, 4);
	for (unsigned i = 0; i < MAX_GPADLS; i++) {
		const struct gpadl *g = vb->gpadl[i];

		if (!g)
			continue;
		u32[0] = g->id;
		u32[1] = g->relid;
		u32[2] = g->want;
		u32[3] = g->have;
		snap_put(b, u32, 16);
		snap_put(b, &g->rangecount, 2);
		put8(b, g->complete);
		snap_put(b, g->words, (size_t)g->have * 8);
	}
	pthread_mutex_unlock(&vb->lock);
	return 0;
}

/* a channel's part of the file, read before anything is changed */
struct chan_snap {
	uint8_t instance[16];
	bool open, broken;
	uint32_t target_vp, ring_gpadl, split, in_index, out_index;
	uint64_t counters[4];
	struct gpadl *ring;
};

static bool get_bool(struct snap_rd *r, bool *v)
{
	uint8_t b;

	if (!snap_get(r, &b, 1) || b > 1)
		return false;
	*v = b;
	return true;
}

static void gpadls_free(struct gpadl **g, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (g[i])
			gpadl_free(&g[i]);
}

static int vmbus_load(void *opaque, struct snap_rd *r, char *err, size_t n)
{
	struct vmbus *vb = opaque;
	struct chan_snap *cs = NULL;
	struct gpadl *g[MAX_GPADLS] = { 0 };
	struct msg *queue = NULL;
	uint32_t ver, u32[5], q_len, ngpadl;
	uint64_t errors, dropped;
	bool connected;
	const char *why = "truncated, or a flag other than 0 or 1";

	if (!snap_get(r, &ver, 4) || ver != SNAP_VMBUS_VERSION) {
		snprintf(err, n, "VMBus state of another version");
		return -1;
	}
	if (!get_bool(r, &connected) || !snap_get(r, u32, 20) || !snap_get(r, &errors, 8) ||
	    !snap_get(r, &dropped, 8))
		goto bad;
	why = "bad connection";
	if ((connected && (!version_known(u32[0]) ||
			   u32[1] != (u32[0] >= VERSION_WIN10_V5 ? MSG_CONN_ID_4 : MSG_CONN_ID))) ||
	    u32[2] >= (uint32_t)vb->vm->ncpus || u32[3] >= 16)
		goto bad;
	if (u32[4] != vb->nchan) {
		snprintf(err, n, "the snapshot has %u VMBus channels, this machine %u", u32[4], vb->nchan);
		return -1;
	}
	cs = calloc(vb->nchan + 1, sizeof(*cs));
	queue = calloc(QUEUE_LEN, sizeof(*queue));
	if (!cs || !queue) {
		why = "out of memory";
		goto bad;
	}
	for (unsigned i = 0; i < vb->nchan; i++) {
		struct chan_snap *c = &cs[i];
		uint8_t type[16];
		uint32_t relid;

		why = "a channel truncated, or a flag other than 0 or 1";
		if (!snap_get(r, &relid, 4) || !snap_get(r, type, 16) || !snap_get(r, c->instance, 16) ||
		    !get_bool(r, &c->open) || !get_bool(r, &c->broken) || !snap_get(r, &c->target_vp, 4) ||
		    !snap_get(r, &c->ring_gpadl, 4) || !snap_get(r, &c->split, 4) || !snap_get(r, &c->in_index, 4) ||
		    !snap_get(r, &c->out_index, 4) || !snap_get(r, c->counters, 32))
			goto bad;
		if (relid != vb->chan[i]->relid || memcmp(type, vb->chan[i]->type, 16)) {
			snprintf(err, n, "VMBus channel %u of the snapshot is another device than this machine's", i + 1);
			goto fail;
		}
		why = "bad channel";
		/* an UNLOAD or INITIATE_CONTACT closes every channel */
		if (c->target_vp >= (uint32_t)vb->vm->ncpus || (c->open && !connected))
			goto bad;
	}
	why = "bad message queue";
	if (!snap_get(r, &q_len, 4) || q_len > QUEUE_LEN)
		goto bad;
	for (unsigned i = 0; i < q_len; i++)
		if (!snap_get(r, &queue[i].len, 4) || queue[i].len < HDR || queue[i].len > HV_MESSAGE_PAYLOAD_MAX ||
		    !snap_get(r, queue[i].data, queue[i].len))
			goto bad;
	why = "bad GPADL";
	if (!snap_get(r, &ngpadl, 4) || ngpadl > MAX_GPADLS)
		goto bad;
	for (unsigned i = 0; i < ngpadl; i++) {
		uint32_t id, relid, want, have;
		uint16_t rangecount;
		bool complete;

		if (!snap_get(r, &id, 4) || !snap_get(r, &relid, 4) || !snap_get(r, &want, 4) ||
		    !snap_get(r, &have, 4) || !snap_get(r, &rangecount, 2) || !get_bool(r, &complete))
			goto bad;
		/* as msg_gpadl_header and msg_gpadl_body allow them */
		if (!chan_by_relid(vb, relid) || want > 0xffff / 8 || !rangecount || want < 2u * rangecount ||
		    have > want || complete != (have == want))
			goto bad;
		for (unsigned j = 0; j < i; j++)
			if (g[j]->id == id)
				goto bad;
		g[i] = calloc(1, sizeof(*g[i]));
		if (!g[i] || !(g[i]->words = malloc((size_t)want * 8))) {
			why = "out of memory";
			goto bad;
		}
		g[i]->id = id;
		g[i]->relid = relid;
		g[i]->want = want;
		g[i]->have = have;
		g[i]->rangecount = rangecount;
		if (!snap_get(r, g[i]->words, (size_t)have * 8))
			goto bad;
		if (complete) {
			if (gpadl_resolve(vb, g[i], false)) {
				why = "a GPADL's ranges are malformed or outside guest RAM";
				goto bad;
			}
			g[i]->complete = true;
		}
	}
	/* each open channel's rings, in a GPADL of its own */
	for (unsigned i = 0; i < vb->nchan; i++) {
		struct chan_snap *c = &cs[i];
		struct vmbus_ring in, out;

		if (!c->open)
			continue;
		why = "an open channel's ring GPADL is missing";
		for (unsigned j = 0; j < ngpadl && !c->ring; j++)
			if (g[j]->id == c->ring_gpadl)
				c->ring = g[j];
		if (!c->ring || !c->ring->complete || c->ring->relid != i + 1 || c->ring->user)
			goto bad;
		why = "bad ring split or index";
		if (c->ring->npages < 4 || c->split < 2 || c->split > c->ring->npages - 2 ||
		    ring_restore(&in, c->ring->page, c->split, c->in_index) ||
		    ring_restore(&out, c->ring->page + c->split, c->ring->npages - c->split, c->out_index))
			goto bad;
		c->ring->user = vb->chan[i];
	}

	/* all checked: replace the bus's state without telling the devices,
	 * whose own sections follow */
	pthread_mutex_lock(&vb->lock);
	for (unsigned i = 0; i < MAX_GPADLS; i++)
		if (vb->gpadl[i])
			gpadl_free(&vb->gpadl[i]);
	memcpy(vb->gpadl, g, sizeof(g));
	vb->connected = connected;
	vb->version = u32[0];
	vb->msg_conn_id = u32[1];
	vb->vp = u32[2];
	vb->sint = u32[3];
	vb->errors = errors;
	vb->dropped = dropped;
	vb->q_head = 0;
	vb->q_len = q_len;
	memcpy(vb->queue, queue, q_len * sizeof(*queue));
	for (unsigned i = 0; i < vb->nchan; i++) {
		struct vmbus_channel *ch = vb->chan[i];
		struct chan_snap *c = &cs[i];

		memcpy(ch->instance, c->instance, 16);
		ch->open = c->open;
		ch->broken = c->broken;
		ch->target_vp = c->target_vp;
		ch->ring_gpadl = c->ring_gpadl;
		memset(&ch->in, 0, sizeof(ch->in));
		memset(&ch->out, 0, sizeof(ch->out));
		if (c->open) {
			ring_restore(&ch->in, c->ring->page, c->split, c->in_index);
			ring_restore(&ch->out, c->ring->page + c->split, c->ring->npages - c->split, c->out_index);
		}
		ch->signals_in = c->counters[0];
		ch->interrupts_out = c->counters[1];
		ch->packets_in = c->counters[2];
		ch->packets_out = c->counters[3];
	}
	pthread_mutex_unlock(&vb->lock);
	free(cs);
	free(queue);
	return 0;
bad:
	snprintf(err, n, "bad VMBus state: %s", why);
fail:
	gpadls_free(g, MAX_GPADLS);
	free(cs);
	free(queue);
	return -1;
}

/* ---- set-up ---- */

/* \_SB.VMBS: drivers/hv/vmbus_drv.c binds to _HID "VMBus" and walks the
 * device's _CRS (on x86 the interrupt there is not used; the SynIC's
 * vector is) */
static void vmbus_dsdt(struct aml *a, struct vm *vm)
{
	aml_device_begin(a, "VMBS");
	aml_name(a, "_HID");
	aml_string(a, "VMBus");
	aml_name(a, "_UID");
	aml_integer(a, 0);
	aml_name(a, "_CRS");
	aml_buffer_begin(a);
	aml_res_irq(a, 5);
	aml_res_end(a);
	aml_end(a);
	aml_end(a);
}

struct vmbus *vmbus_create(struct vm *vm)
{
	struct vmbus *vb = calloc(1, sizeof(*vb));
	static struct hv_vmbus_ops ops = {
		.post_message = vmbus_post_message,
		.signal_event = vmbus_signal_event,
		.eom = vmbus_eom,
	};

	if (!vb || acpi_register_dsdt(vmbus_dsdt) || vm_snap_register(vm, "vmbus", vmbus_save, vmbus_load, vb)) {
		fprintf(stderr, "accord: cannot set up VMBus\n");
		free(vb);
		return NULL;
	}
	vb->vm = vm;
	vb->sint = VMBUS_SINT_DEFAULT;
	pthread_mutex_init(&vb->lock, NULL);
	ops.opaque = vb;
	hv_set_vmbus(vm, &ops);
	return vb;
}

struct vmbus_channel *vmbus_add_channel(struct vmbus *vb, const uint8_t type[16], const uint8_t instance[16],
					const struct vmbus_dev_ops *ops, void *opaque)
{
	struct vmbus_channel *ch;

	pthread_mutex_lock(&vb->lock);
	ch = vb->nchan < MAX_CHANNELS ? calloc(1, sizeof(*ch)) : NULL;
	if (ch) {
		ch->vb = vb;
		ch->vm = vb->vm;
		ch->ops = ops;
		ch->opaque = opaque;
		memcpy(ch->type, type, 16);
		memcpy(ch->instance, instance, 16);
		vb->chan[vb->nchan++] = ch;
		ch->relid = vb->nchan;
		ch->conn_id = CHAN_CONN_ID_BASE + ch->relid;
		/* a channel added after the guest asked for offers is offered now */
		if (vb->connected)
			send_offer(vb, ch);
	}
	pthread_mutex_unlock(&vb->lock);
	if (!ch)
		fprintf(stderr, "accord: vmbus: at most %d channels\n", MAX_CHANNELS);
	return ch;
}

void vmbus_lock(struct vmbus *vb)
{
	pthread_mutex_lock(&vb->vm->io_lock);
	pthread_mutex_lock(&vb->lock);
}

void vmbus_unlock(struct vmbus *vb)
{
	pthread_mutex_unlock(&vb->lock);
	pthread_mutex_unlock(&vb->vm->io_lock);
}

void vmbus_rescind(struct vmbus_channel *ch)
{
	struct vmbus *vb = ch->vb;
	uint8_t m[12] = { 0 };

	vmbus_lock(vb);
	if (!ch->rescinded) {
		chan_close(ch);
		ch->rescinded = true;
		vmbus_put32(m + 8, ch->relid);
		if (vb->connected)
			vmbus_post(vb, MSG_RESCIND_CHANNELOFFER, m, sizeof(m));
	}
	vmbus_unlock(vb);
}
