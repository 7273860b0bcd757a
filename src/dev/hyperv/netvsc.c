/* netvsc: the synthetic network adapter of Hyper-V on a network backend
 * (src/net/), as drivers/net/hyperv (netvsc.c, rndis_filter.c) drives it.
 *
 * Two layers. NVSP, on the channel's rings: version negotiation
 * (NVSP_MSG_TYPE_INIT), the NDIS version and configuration, a receive
 * buffer and a send buffer the guest hands over as GPADLs, and
 * SEND_RNDIS_PKT messages both ways. RNDIS, inside them: the guest's
 * messages arrive in a send-buffer section or in the pages of a GPA_DIRECT
 * packet (or both), several to a packet when the guest batches; the
 * device's messages (frames, control replies, status indications) are
 * copied into a free receive-buffer section and announced by a transfer
 * page packet (VMBUS_PKT_XFER_PAGES), which the guest completes when it
 * has copied the section out; only then is the section reused.
 *
 * No offload is offered (the capabilities are all zero, in the NDIS 6.0
 * layout): frames are whole and carry their own checksums both ways. No
 * RSS, so one channel; a subchannel request is answered with none.
 *
 * Transmit runs on the vCPU thread that signalled, under vm->io_lock and
 * the bus lock (vmbus_lock). Received frames wait in a host-side queue
 * until a receive section is free; the I/O thread moves them into guest
 * memory under both locks.
 * With no section free the queue fills and the backend stops reading,
 * until the guest completes some. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dev/hyperv/vmbus.h"
#include "net/net.h"
#include "vm/iothread.h"
#include "vm/snapshot.h"
#include "vm/vm.h"

/* f8615163-df3e-46c5-913f-f2d2f965ed0e (HV_NIC_GUID), in guid_t byte order */
static const uint8_t nic_class[16] = { 0x63, 0x51, 0x61, 0xf8, 0x3e, 0xdf, 0xc5, 0x46,
				       0x91, 0x3f, 0xf2, 0xd2, 0xf9, 0x65, 0xed, 0x0e };

/* NVSP message types (hyperv_net.h) */
enum {
	NVSP_INIT = 1,
	NVSP_INIT_COMPLETE = 2,
	NVSP1_SEND_NDIS_VER = 100,
	NVSP1_SEND_RECV_BUF = 101,
	NVSP1_SEND_RECV_BUF_COMPLETE = 102,
	NVSP1_REVOKE_RECV_BUF = 103,
	NVSP1_SEND_SEND_BUF = 104,
	NVSP1_SEND_SEND_BUF_COMPLETE = 105,
	NVSP1_REVOKE_SEND_BUF = 106,
	NVSP1_SEND_RNDIS_PKT = 107,
	NVSP1_SEND_RNDIS_PKT_COMPLETE = 108,
	NVSP2_SEND_NDIS_CONFIG = 125,
	NVSP4_SWITCH_DATA_PATH = 129,
	NVSP5_SUBCHANNEL = 133,
};

#define NVSP_STAT_SUCCESS 1
#define NVSP_STAT_FAIL 2
#define NVSP_STAT_INVALID_RNDIS_PKT 5
/* struct nvsp_message: a 4-byte type and the largest member of the union */
#define NVSP_LEN 40
#define NVSP_NO_SECTION 0xffffffffu

/* the protocol versions of Windows Server 2008 R2 (2) to 2016 (6.1):
 * what each adds that a guest may use is served or refused here */
static const uint32_t nvsp_versions[] = { 0x2, 0x30002, 0x40000, 0x50000, 0x60000, 0x60001 };
#define NVSP_VERSION_5 0x50000

/* RNDIS messages, status codes and object identifiers (include/linux/rndis.h) */
#define RNDIS_MSG_PACKET 1
#define RNDIS_MSG_INIT 2
#define RNDIS_MSG_HALT 3
#define RNDIS_MSG_QUERY 4
#define RNDIS_MSG_SET 5
#define RNDIS_MSG_RESET 6
#define RNDIS_MSG_INDICATE 7
#define RNDIS_MSG_KEEPALIVE 8
#define RNDIS_COMPLETION 0x80000000u

#define RNDIS_STATUS_SUCCESS 0
#define RNDIS_STATUS_NOT_SUPPORTED 0xc00000bbu
#define RNDIS_STATUS_INVALID_DATA 0xc0010015u
#define RNDIS_STATUS_INVALID_LENGTH 0xc0010014u
#define RNDIS_STATUS_MEDIA_CONNECT 0x4001000bu
#define RNDIS_STATUS_MEDIA_DISCONNECT 0x4001000cu

#define OID_GEN_SUPPORTED_LIST 0x00010101
#define OID_GEN_HARDWARE_STATUS 0x00010102
#define OID_GEN_MEDIA_SUPPORTED 0x00010103
#define OID_GEN_MEDIA_IN_USE 0x00010104
#define OID_GEN_MAXIMUM_FRAME_SIZE 0x00010106
#define OID_GEN_LINK_SPEED 0x00010107
#define OID_GEN_CURRENT_PACKET_FILTER 0x0001010e
#define OID_GEN_MAXIMUM_TOTAL_SIZE 0x00010111
#define OID_GEN_MEDIA_CONNECT_STATUS 0x00010114
#define OID_GEN_XMIT_OK 0x00020101
#define OID_GEN_RCV_OK 0x00020102
#define OID_802_3_PERMANENT_ADDRESS 0x01010101
#define OID_802_3_CURRENT_ADDRESS 0x01010102
#define OID_802_3_MULTICAST_LIST 0x01010103
#define OID_802_3_MAXIMUM_LIST_SIZE 0x01010104
#define OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES 0xfc01020d
#define OID_TCP_OFFLOAD_PARAMETERS 0xfc01020c

#define PACKET_TYPE_DIRECTED 0x01
#define PACKET_TYPE_MULTICAST 0x02
#define PACKET_TYPE_ALL_MULTICAST 0x04
#define PACKET_TYPE_BROADCAST 0x08
#define PACKET_TYPE_PROMISCUOUS 0x20

/* struct ndis_offload up to ipsecv2: the NDIS 6.0 layout, all zero */
#define NDIS_OBJECT_TYPE_OFFLOAD 0xa7
#define NDIS_OFFLOAD_SIZE_6_0 112
/* struct ndis_offload_params: the header, eleven enable bytes (4..14),
 * flags (16), IPsec v2 and RSC bytes (20..23); 22 bytes up to NVSP 4 */
#define OFFLOAD_PARAMS_MIN 15

/* per-packet information (struct rndis_per_packet_info) types */
#define PPI_TCPIP_CHKSUM 0
#define PPI_TCP_LARGESEND 2
#define PPI_IEEE_8021Q 6

#define RNDIS_HDR 8
#define RNDIS_PKT_LEN 36 /* struct rndis_packet */
#define ETH_HLEN 14
#define MTU 1500

/* what the device reports in INIT_C: batches of up to 8 messages, each
 * 8-byte aligned, in one send section */
#define MAX_PKT_PER_MSG 8
#define PKT_ALIGN_SHIFT 3

/* The receive buffer is cut into sections of RX_SECTION bytes, one frame
 * (or control message) each: a 1500-byte MTU frame with its RNDIS header
 * fits, and hv_netvsc allocates a copy buffer of one section for each of
 * its 64 possible channels, so bigger sections cost the guest memory. The
 * send buffer is cut as Hyper-V cuts it. */
#define RX_SECTION 4096u
#define TX_SECTION 6144u
#define RX_MAX_SECTIONS 65536u
/* an RNDIS stream the guest sends in one packet: a section, then pages */
#define TX_STREAM_MAX (TX_SECTION + NET_MAX_FRAME + 4096)
/* inbound packets: a descriptor, the GPA ranges of a frame (Linux names
 * up to 32 page buffers of 16 bytes; later kernels' multi-page ranges are
 * shorter), the NVSP message */
#define MAX_IN_PKT 4096

/* struct vmtransfer_page_packet_header after the descriptor, with one range */
#define XFER_EXT_LEN 16

#define CTRLQ_LEN 16
#define CTRL_MAX 256
#define MAX_ERROR_LINES 20

struct ctrl_msg {
	uint32_t len;
	uint8_t data[CTRL_MAX];
};

struct netvsc {
	struct vmbus_channel *ch;
	struct vm *vm;
	struct net_backend *nb;
	uint8_t mac[6];

	/* under the bus lock */
	uint32_t version;
	bool rx_ok, tx_ok;
	uint32_t rx_gpadl, tx_gpadl;
	uint16_t rx_id;
	uint32_t rx_sections, tx_sections;
	uint32_t *rx_free; /* stack of free receive sections */
	uint32_t rx_nfree;
	uint8_t *rx_busy;
	bool rndis_up, link_up;
	uint32_t filter;
	struct ctrl_msg ctrlq[CTRLQ_LEN];
	unsigned ctrl_head, ctrl_len;
	unsigned error_lines;

	struct net_rxq rxq; /* its lock after the bus lock */

	struct netvsc_counters c;

	struct vmbus_sg sg[VMBUS_MAX_SG];
	uint8_t pkt[MAX_IN_PKT];
	uint8_t stream[TX_STREAM_MAX];
	uint8_t frame[NET_MAX_FRAME + 4];
};

/* a guest error that does not stop the channel: one line each, the first few */
static void nv_error(struct netvsc *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void nv_error(struct netvsc *n, const char *fmt, ...)
{
	char line[256];
	va_list ap;

	n->c.errors++;
	if (n->error_lines >= MAX_ERROR_LINES)
		return;
	n->error_lines++;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "accord: netvsc %u: %s\n", n->ch->relid, line);
}

/* the bytes of a GPADL's pages at off, up to the end of that page; the
 * caller has checked that what it copies lies within the GPADL */
static uint8_t *gpadl_at(uint8_t **page, uint64_t off, uint32_t *room)
{
	*room = VMBUS_PAGE - off % VMBUS_PAGE;
	return page[off / VMBUS_PAGE] + off % VMBUS_PAGE;
}

static void gpadl_write(uint8_t **page, uint64_t off, const void *buf, uint32_t len)
{
	const uint8_t *p = buf;

	while (len) {
		uint32_t k;
		uint8_t *q = gpadl_at(page, off, &k);

		if (k > len)
			k = len;
		memcpy(q, p, k);
		p += k;
		off += k;
		len -= k;
	}
}

static void gpadl_read(uint8_t **page, uint64_t off, void *buf, uint32_t len)
{
	uint8_t *p = buf;

	while (len) {
		uint32_t k;
		const uint8_t *q = gpadl_at(page, off, &k);

		if (k > len)
			k = len;
		memcpy(p, q, k);
		p += k;
		off += k;
		len -= k;
	}
}

/* ---- receive buffer sections ---- */

static void rx_buf_forget(struct netvsc *n)
{
	free(n->rx_free);
	free(n->rx_busy);
	n->rx_free = NULL;
	n->rx_busy = NULL;
	n->rx_nfree = 0;
	n->rx_sections = 0;
	n->rx_ok = false;
}

/* Put one RNDIS message (hdr then data) in a free section and announce it:
 * 1 sent, 0 no section or no ring room yet (the guest signals), -1 no
 * receive buffer or the channel stopped. */
static int rx_send(struct netvsc *n, const void *hdr, uint32_t hlen, const void *data, uint32_t dlen, bool control)
{
	uint8_t ext[XFER_EXT_LEN] = { 0 }, nv[NVSP_LEN] = { 0 };
	uint32_t npages, sec;
	uint8_t **page;
	int room, rc;

	if (!n->rx_ok)
		return -1;
	page = vmbus_chan_gpadl(n->ch, n->rx_gpadl, &npages);
	if (!page || (uint64_t)npages * VMBUS_PAGE < (uint64_t)n->rx_sections * RX_SECTION) {
		/* torn down without a revoke: nothing more to receive into */
		nv_error(n, "the receive buffer's GPADL %u is gone", n->rx_gpadl);
		rx_buf_forget(n);
		return -1;
	}
	if (!n->rx_nfree)
		return 0;
	room = ring_room(&n->ch->out, XFER_EXT_LEN + NVSP_LEN);
	if (room < 0) {
		vmbus_chan_fail(n->ch, "netvsc: the guest's receive ring has corrupt indices");
		return -1;
	}
	if (!room)
		return 0;
	sec = n->rx_free[--n->rx_nfree];
	n->rx_busy[sec] = 1;
	gpadl_write(page, (uint64_t)sec * RX_SECTION, hdr, hlen);
	if (dlen)
		gpadl_write(page, (uint64_t)sec * RX_SECTION + hlen, data, dlen);
	/* xfer_pageset_id, sender_owns_set 0, range_cnt 1, {byte_count, byte_offset} */
	memcpy(ext, &n->rx_id, 2);
	vmbus_put32(ext + 4, 1);
	vmbus_put32(ext + 8, hlen + dlen);
	vmbus_put32(ext + 12, sec * RX_SECTION);
	vmbus_put32(nv, NVSP1_SEND_RNDIS_PKT);
	vmbus_put32(nv + 4, control);
	vmbus_put32(nv + 8, NVSP_NO_SECTION);
	rc = vmbus_chan_send_ext(n->ch, VMBUS_PKT_XFER_PAGES, VMBUS_PKT_F_COMPLETION, sec, ext, sizeof(ext), nv,
				 sizeof(nv));
	if (rc) {
		n->rx_busy[sec] = 0;
		n->rx_free[n->rx_nfree++] = sec;
		return rc == -2 ? 0 : -1;
	}
	return 1;
}

/* the guest copied a section out */
static void rx_complete(struct netvsc *n, uint64_t tid)
{
	if (!n->rx_ok || tid >= n->rx_sections || !n->rx_busy[tid]) {
		nv_error(n, "completion for receive section %llu, which is not in use", (unsigned long long)tid);
		return;
	}
	n->rx_busy[tid] = 0;
	n->rx_free[n->rx_nfree++] = tid;
}

/* ---- control messages to the guest ---- */

static void ctrl_queue(struct netvsc *n, const uint8_t *m, uint32_t len)
{
	struct ctrl_msg *c;

	if (n->ctrl_len == CTRLQ_LEN) {
		nv_error(n, "RNDIS replies pile up: one dropped");
		return;
	}
	c = &n->ctrlq[(n->ctrl_head + n->ctrl_len++) % CTRLQ_LEN];
	memcpy(c->data, m, len);
	c->len = len;
}

static bool frame_wanted(const struct netvsc *n, const uint8_t *f)
{
	if (n->filter & PACKET_TYPE_PROMISCUOUS)
		return true;
	if (!memcmp(f, "\xff\xff\xff\xff\xff\xff", 6))
		return n->filter & PACKET_TYPE_BROADCAST;
	if (f[0] & 1)
		return n->filter & (PACKET_TYPE_ALL_MULTICAST | PACKET_TYPE_MULTICAST);
	return (n->filter & PACKET_TYPE_DIRECTED) && !memcmp(f, n->mac, 6);
}

/* Control replies first, then queued frames, into free sections. Under
 * the bus lock. */
static void rx_flush(struct netvsc *n)
{
	bool resume;
	unsigned before;

	while (n->ctrl_len) {
		struct ctrl_msg *c = &n->ctrlq[n->ctrl_head];
		int rc = rx_send(n, c->data, c->len, NULL, 0, true);

		if (rc == 0)
			return;
		if (rc < 0)
			n->c.errors++;
		else
			n->c.rx_control++;
		n->ctrl_head = (n->ctrl_head + 1) % CTRLQ_LEN;
		n->ctrl_len--;
	}
	pthread_mutex_lock(&n->rxq.lock);
	before = n->rxq.len;
	while (n->rxq.head) {
		struct net_rx_frame *f = n->rxq.head;
		uint8_t h[RNDIS_HDR + RNDIS_PKT_LEN] = { 0 };
		int rc = 1;

		if (!n->rndis_up || !n->rx_ok || !frame_wanted(n, f->data) ||
		    f->len + sizeof(h) > RX_SECTION) {
			n->c.rx_dropped++;
		} else {
			vmbus_put32(h, RNDIS_MSG_PACKET);
			vmbus_put32(h + 4, sizeof(h) + f->len);
			vmbus_put32(h + 8, RNDIS_PKT_LEN); /* data_offset, from the rndis_packet */
			vmbus_put32(h + 12, f->len);
			rc = rx_send(n, h, sizeof(h), f->data, f->len, false);
			if (rc == 0)
				break;
			if (rc > 0) {
				n->c.rx_frames++;
				n->c.rx_bytes += f->len;
			} else {
				n->c.rx_dropped++;
			}
		}
		net_rxq_pop(&n->rxq);
	}
	resume = before >= NET_RXQ_SOFT && n->rxq.len < NET_RXQ_SOFT;
	pthread_mutex_unlock(&n->rxq.lock);
	if (resume)
		n->nb->ops->resume(n->nb);
}

static void indicate_link(struct netvsc *n)
{
	uint8_t m[RNDIS_HDR + 12] = { 0 };

	vmbus_put32(m, RNDIS_MSG_INDICATE);
	vmbus_put32(m + 4, sizeof(m));
	vmbus_put32(m + 8, n->link_up ? RNDIS_STATUS_MEDIA_CONNECT : RNDIS_STATUS_MEDIA_DISCONNECT);
	ctrl_queue(n, m, sizeof(m));
}

/* ---- RNDIS from the guest ---- */

static const uint32_t supported_oids[] = {
	OID_GEN_SUPPORTED_LIST,		OID_GEN_HARDWARE_STATUS,      OID_GEN_MEDIA_SUPPORTED,
	OID_GEN_MEDIA_IN_USE,		OID_GEN_MAXIMUM_FRAME_SIZE,   OID_GEN_LINK_SPEED,
	OID_GEN_CURRENT_PACKET_FILTER,	OID_GEN_MAXIMUM_TOTAL_SIZE,   OID_GEN_MEDIA_CONNECT_STATUS,
	OID_GEN_XMIT_OK,		OID_GEN_RCV_OK,		      OID_802_3_PERMANENT_ADDRESS,
	OID_802_3_CURRENT_ADDRESS,	OID_802_3_MULTICAST_LIST,     OID_802_3_MAXIMUM_LIST_SIZE,
	OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES,
};

/* the value of a queried OID in v (at most CTRL_MAX - 24 bytes); its
 * length, or -1 when the OID is not supported */
static int query_oid(struct netvsc *n, uint32_t oid, uint8_t *v)
{
	switch (oid) {
	case OID_GEN_SUPPORTED_LIST:
		memcpy(v, supported_oids, sizeof(supported_oids));
		return sizeof(supported_oids);
	case OID_GEN_HARDWARE_STATUS:
	case OID_GEN_MEDIA_SUPPORTED: /* 802.3 is 0 */
	case OID_GEN_MEDIA_IN_USE:
		vmbus_put32(v, 0);
		return 4;
	case OID_GEN_MAXIMUM_FRAME_SIZE:
		vmbus_put32(v, MTU);
		return 4;
	case OID_GEN_MAXIMUM_TOTAL_SIZE:
		vmbus_put32(v, MTU + ETH_HLEN);
		return 4;
	case OID_GEN_LINK_SPEED: /* in 100 bit/s: 10 Gbit/s, as Hyper-V */
		vmbus_put32(v, 100000000);
		return 4;
	case OID_GEN_CURRENT_PACKET_FILTER:
		vmbus_put32(v, n->filter);
		return 4;
	case OID_GEN_MEDIA_CONNECT_STATUS: /* 0 connected, 1 disconnected */
		vmbus_put32(v, !n->link_up);
		return 4;
	case OID_GEN_XMIT_OK:
		vmbus_put64(v, n->c.tx_frames);
		return 8;
	case OID_GEN_RCV_OK:
		vmbus_put64(v, n->c.rx_frames);
		return 8;
	case OID_802_3_PERMANENT_ADDRESS:
	case OID_802_3_CURRENT_ADDRESS:
		memcpy(v, n->mac, 6);
		return 6;
	case OID_802_3_MULTICAST_LIST:
		return 0;
	case OID_802_3_MAXIMUM_LIST_SIZE:
		vmbus_put32(v, 0);
		return 4;
	case OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES:
		/* no checksum, segmentation, IPsec or coalescing offload */
		memset(v, 0, NDIS_OFFLOAD_SIZE_6_0);
		v[0] = NDIS_OBJECT_TYPE_OFFLOAD;
		v[1] = 1;
		v[2] = NDIS_OFFLOAD_SIZE_6_0;
		return NDIS_OFFLOAD_SIZE_6_0;
	}
	return -1;
}

/* the status of a SET of oid with its value (len bytes) */
static uint32_t set_oid(struct netvsc *n, uint32_t oid, const uint8_t *v, uint32_t len)
{
	switch (oid) {
	case OID_GEN_CURRENT_PACKET_FILTER:
		if (len < 4)
			return RNDIS_STATUS_INVALID_LENGTH;
		n->filter = vmbus_get32(v);
		return RNDIS_STATUS_SUCCESS;
	case OID_TCP_OFFLOAD_PARAMETERS:
		/* "no change" (0) or "disabled" (1) for every checksum,
		 * segmentation, IPsec and coalescing offload: anything that
		 * would switch one on is refused, none being offered */
		if (len < OFFLOAD_PARAMS_MIN)
			return RNDIS_STATUS_INVALID_LENGTH;
		for (uint32_t i = 4; i < len && i < 24; i++)
			if ((i < 15 || i >= 20) && v[i] > 1)
				return RNDIS_STATUS_NOT_SUPPORTED;
		return RNDIS_STATUS_SUCCESS;
	case OID_802_3_MULTICAST_LIST:
		/* every multicast frame passes with ALL_MULTICAST; a list alone
		 * is accepted and the filter's MULTICAST bit passes them all */
		return len % 6 ? RNDIS_STATUS_INVALID_LENGTH : RNDIS_STATUS_SUCCESS;
	}
	return RNDIS_STATUS_NOT_SUPPORTED;
}

/* an Ethernet frame in an RNDIS_MSG_PACKET of len bytes: true when it went out */
static bool rndis_packet(struct netvsc *n, const uint8_t *m, uint32_t len)
{
	uint32_t doff, dlen, poff, plen, tci = 0;
	bool vlan = false;

	if (len < RNDIS_HDR + RNDIS_PKT_LEN)
		return false;
	doff = vmbus_get32(m + 8);
	dlen = vmbus_get32(m + 12);
	poff = vmbus_get32(m + 28);
	plen = vmbus_get32(m + 32);
	if (doff > len - RNDIS_HDR || dlen > len - RNDIS_HDR - doff || dlen < ETH_HLEN || dlen > NET_MAX_FRAME - 4)
		return false;
	/* per-packet information: only an 802.1Q tag can be honoured;
	 * checksum or segmentation requests were never offered */
	if (plen) {
		if (poff < RNDIS_PKT_LEN || poff > len - RNDIS_HDR || plen > len - RNDIS_HDR - poff)
			return false;
		for (uint32_t o = 0; o < plen;) {
			const uint8_t *p = m + RNDIS_HDR + poff + o;
			uint32_t size, type, at;

			if (plen - o < 12)
				return false;
			size = vmbus_get32(p);
			type = vmbus_get32(p + 4);
			at = vmbus_get32(p + 8);
			if (size < 12 || size > plen - o || at > size - 4)
				return false;
			/* bit 31: Linux's own (internal) types, nothing to do */
			if (type == PPI_IEEE_8021Q) {
				uint32_t info = vmbus_get32(p + at);

				tci = (info & 7) << 13 | (info >> 3 & 1) << 12 | (info >> 4 & 0xfff);
				vlan = true;
			} else if ((type == PPI_TCPIP_CHKSUM || type == PPI_TCP_LARGESEND) && vmbus_get32(p + at)) {
				return false;
			}
			o += size;
		}
	}
	const uint8_t *f = m + RNDIS_HDR + doff;
	if (vlan) {
		memcpy(n->frame, f, 12);
		n->frame[12] = 0x81;
		n->frame[13] = 0x00;
		n->frame[14] = tci >> 8;
		n->frame[15] = tci;
		memcpy(n->frame + 16, f + 12, dlen - 12);
		f = n->frame;
		dlen += 4;
	}
	/* the bus's work holds vm->io_lock, as a backend wants */
	n->nb->ops->send(n->nb, f, dlen);
	n->c.tx_frames++;
	n->c.tx_bytes += dlen;
	return true;
}

/* one control message: its reply (if any) is queued */
static void rndis_control(struct netvsc *n, uint32_t type, const uint8_t *m, uint32_t len)
{
	uint8_t r[CTRL_MAX] = { 0 };
	uint32_t rlen = RNDIS_HDR + 8, status = RNDIS_STATUS_SUCCESS;

	if (len < RNDIS_HDR + 4) {
		nv_error(n, "RNDIS message %#x of %u bytes", type, len);
		return;
	}
	memcpy(r + 8, m + 8, 4); /* request id */
	switch (type) {
	case RNDIS_MSG_INIT:
		/* major 1, minor 0, connectionless, 802.3 */
		vmbus_put32(r + 16, 1);
		vmbus_put32(r + 20, 0);
		vmbus_put32(r + 24, 1);
		vmbus_put32(r + 28, 0);
		vmbus_put32(r + 32, MAX_PKT_PER_MSG);
		vmbus_put32(r + 36, TX_STREAM_MAX - TX_SECTION);
		vmbus_put32(r + 40, PKT_ALIGN_SHIFT);
		rlen = RNDIS_HDR + 44;
		n->rndis_up = true;
		break;
	case RNDIS_MSG_HALT:
		n->rndis_up = false;
		n->filter = 0;
		return;
	case RNDIS_MSG_QUERY: {
		int vlen;

		if (len < RNDIS_HDR + 20) {
			nv_error(n, "RNDIS query of %u bytes", len);
			return;
		}
		vlen = query_oid(n, vmbus_get32(m + 12), r + RNDIS_HDR + 16);
		if (vlen < 0) {
			status = RNDIS_STATUS_NOT_SUPPORTED;
			rlen = RNDIS_HDR + 16;
		} else {
			vmbus_put32(r + 16, vlen);
			vmbus_put32(r + 20, 16); /* from the request id */
			rlen = RNDIS_HDR + 16 + vlen;
		}
		break;
	}
	case RNDIS_MSG_SET: {
		uint32_t vlen, voff;

		if (len < RNDIS_HDR + 20) {
			nv_error(n, "RNDIS set of %u bytes", len);
			return;
		}
		vlen = vmbus_get32(m + 16);
		voff = vmbus_get32(m + 20);
		if (voff > len - RNDIS_HDR || vlen > len - RNDIS_HDR - voff)
			status = RNDIS_STATUS_INVALID_DATA;
		else
			status = set_oid(n, vmbus_get32(m + 12), m + RNDIS_HDR + voff, vlen);
		break;
	}
	case RNDIS_MSG_RESET:
		/* status, addressing_reset: no request id */
		memset(r + 8, 0, 8);
		break;
	case RNDIS_MSG_KEEPALIVE:
		break;
	default:
		nv_error(n, "unknown RNDIS message %#x", type);
		return;
	}
	vmbus_put32(r, type | RNDIS_COMPLETION);
	vmbus_put32(r + 4, rlen);
	if (type == RNDIS_MSG_RESET)
		vmbus_put32(r + 8, status);
	else
		vmbus_put32(r + 12, status);
	ctrl_queue(n, r, rlen);
}

/* the RNDIS messages of one SEND_RNDIS_PKT: the NVSP status */
static uint32_t rndis_stream(struct netvsc *n, const uint8_t *s, uint32_t len)
{
	uint32_t status = NVSP_STAT_SUCCESS;

	if (len < RNDIS_HDR)
		return NVSP_STAT_INVALID_RNDIS_PKT;
	while (len >= RNDIS_HDR) {
		uint32_t type = vmbus_get32(s), mlen = vmbus_get32(s + 4);

		if (mlen < RNDIS_HDR || mlen > len) {
			nv_error(n, "RNDIS message length %u with %u bytes left", mlen, len);
			return NVSP_STAT_INVALID_RNDIS_PKT;
		}
		if (type == RNDIS_MSG_PACKET) {
			if (!rndis_packet(n, s, mlen)) {
				n->c.tx_dropped++;
				status = NVSP_STAT_INVALID_RNDIS_PKT;
			}
		} else {
			rndis_control(n, type, s, mlen);
		}
		s += mlen;
		len -= mlen;
	}
	return status;
}

/* SEND_RNDIS_PKT: gather the send section and the packet's pages */
static uint32_t nvsp_rndis(struct netvsc *n, const struct vmbus_pkt_desc *d, const uint8_t *pkt, uint32_t len,
			   const uint8_t *nv)
{
	uint32_t idx = vmbus_get32(nv + 8), size = vmbus_get32(nv + 12), total = 0;

	if (idx != NVSP_NO_SECTION) {
		uint32_t npages;
		uint8_t **page = n->tx_ok ? vmbus_chan_gpadl(n->ch, n->tx_gpadl, &npages) : NULL;

		if (!page || idx >= n->tx_sections || size > TX_SECTION ||
		    (uint64_t)npages * VMBUS_PAGE < (uint64_t)n->tx_sections * TX_SECTION) {
			nv_error(n, "send section %u (%u bytes) out of range", idx, size);
			return NVSP_STAT_FAIL;
		}
		gpadl_read(page, (uint64_t)idx * TX_SECTION, n->stream, size);
		total = size;
	}
	if (d->type == VMBUS_PKT_GPA_DIRECT) {
		uint64_t bytes;
		int nsg = vmbus_pkt_sg(n->vm, pkt, len, n->sg, VMBUS_MAX_SG, &bytes);

		if (nsg < 0) {
			nv_error(n, "a page list outside guest RAM or malformed");
			return NVSP_STAT_FAIL;
		}
		if (bytes > sizeof(n->stream) - total) {
			nv_error(n, "an RNDIS packet of %llu bytes", (unsigned long long)(bytes + total));
			return NVSP_STAT_FAIL;
		}
		for (int i = 0; i < nsg; i++) {
			memcpy(n->stream + total, n->sg[i].p, n->sg[i].len);
			total += n->sg[i].len;
		}
	}
	return rndis_stream(n, n->stream, total);
}

/* SEND_RECV_BUF / SEND_SEND_BUF: the buffer's GPADL is cut into sections */
static void nvsp_buffer(struct netvsc *n, bool rx, const uint8_t *nv, uint8_t *reply)
{
	uint32_t gpadl = vmbus_get32(nv + 4), npages = 0, status = NVSP_STAT_FAIL;
	uint64_t bytes;
	uint16_t id;

	memcpy(&id, nv + 8, 2);
	vmbus_put32(reply, rx ? NVSP1_SEND_RECV_BUF_COMPLETE : NVSP1_SEND_SEND_BUF_COMPLETE);
	if (!vmbus_chan_gpadl(n->ch, gpadl, &npages) || (rx ? n->rx_ok : n->tx_ok)) {
		nv_error(n, "%s buffer GPADL %u refused", rx ? "receive" : "send", gpadl);
		goto out;
	}
	bytes = (uint64_t)npages * VMBUS_PAGE;
	if (rx) {
		uint32_t count = bytes / RX_SECTION;

		if (count > RX_MAX_SECTIONS)
			count = RX_MAX_SECTIONS;
		if (!count)
			goto out;
		n->rx_free = malloc(count * sizeof(*n->rx_free));
		n->rx_busy = calloc(count, 1);
		if (!n->rx_free || !n->rx_busy) {
			rx_buf_forget(n);
			goto out;
		}
		for (uint32_t i = 0; i < count; i++)
			n->rx_free[i] = count - 1 - i;
		n->rx_nfree = count;
		n->rx_sections = count;
		n->rx_gpadl = gpadl;
		n->rx_id = id;
		n->rx_ok = true;
		/* one section of sub-allocations: offset 0, size, count, end */
		vmbus_put32(reply + 8, 1);
		vmbus_put32(reply + 12, 0);
		vmbus_put32(reply + 16, RX_SECTION);
		vmbus_put32(reply + 20, count);
		vmbus_put32(reply + 24, count * RX_SECTION);
	} else {
		if (bytes < TX_SECTION)
			goto out;
		n->tx_sections = bytes / TX_SECTION;
		n->tx_gpadl = gpadl;
		n->tx_ok = true;
		vmbus_put32(reply + 8, TX_SECTION);
	}
	status = NVSP_STAT_SUCCESS;
out:
	vmbus_put32(reply + 4, status);
}

/* one packet from the guest: NVSP inband, SEND_RNDIS_PKT with page
 * ranges, or the completion of a receive section */
static void nvsp_packet(struct netvsc *n, const uint8_t *pkt, uint32_t len)
{
	struct vmbus_pkt_desc d;
	uint8_t nv[NVSP_LEN] = { 0 }, reply[NVSP_LEN] = { 0 };
	uint32_t off, dlen, type;
	bool want = false;

	memcpy(&d, pkt, sizeof(d));
	off = d.offset8 * 8u;
	dlen = len - off;
	if (dlen < 4) {
		nv_error(n, "a %u-byte NVSP message", dlen);
		return;
	}
	memcpy(nv, pkt + off, dlen < NVSP_LEN ? dlen : NVSP_LEN);
	type = vmbus_get32(nv);
	if (d.type == VMBUS_PKT_COMP) {
		if (type == NVSP1_SEND_RNDIS_PKT_COMPLETE)
			rx_complete(n, d.trans_id);
		else
			nv_error(n, "completion of NVSP type %u", type);
		return;
	}
	if (d.type != VMBUS_PKT_INBAND && !(d.type == VMBUS_PKT_GPA_DIRECT && type == NVSP1_SEND_RNDIS_PKT)) {
		nv_error(n, "packet type %u carrying NVSP type %u", d.type, type);
		return;
	}
	switch (type) {
	case NVSP_INIT: {
		uint32_t lo = vmbus_get32(nv + 4), hi = vmbus_get32(nv + 8), v = 0;

		for (unsigned i = 0; i < sizeof(nvsp_versions) / sizeof(nvsp_versions[0]); i++)
			if (nvsp_versions[i] >= lo && nvsp_versions[i] <= hi)
				v = nvsp_versions[i];
		vmbus_put32(reply, NVSP_INIT_COMPLETE);
		vmbus_put32(reply + 4, v);
		vmbus_put32(reply + 12, v ? NVSP_STAT_SUCCESS : NVSP_STAT_FAIL);
		if (v)
			n->version = v;
		want = true;
		break;
	}
	case NVSP1_SEND_NDIS_VER:
	case NVSP2_SEND_NDIS_CONFIG:
		/* the guest's NDIS version and MTU: nothing depends on them */
		break;
	case NVSP1_SEND_RECV_BUF:
	case NVSP1_SEND_SEND_BUF:
		nvsp_buffer(n, type == NVSP1_SEND_RECV_BUF, nv, reply);
		want = true;
		break;
	case NVSP1_REVOKE_RECV_BUF:
		rx_buf_forget(n);
		break;
	case NVSP1_REVOKE_SEND_BUF:
		n->tx_ok = false;
		break;
	case NVSP1_SEND_RNDIS_PKT:
		vmbus_put32(reply, NVSP1_SEND_RNDIS_PKT_COMPLETE);
		vmbus_put32(reply + 4, nvsp_rndis(n, &d, pkt, len, nv));
		want = true;
		break;
	case NVSP5_SUBCHANNEL:
		/* no RSS: no subchannels */
		vmbus_put32(reply, NVSP5_SUBCHANNEL);
		vmbus_put32(reply + 4, n->version >= NVSP_VERSION_5 ? NVSP_STAT_SUCCESS : NVSP_STAT_FAIL);
		want = true;
		break;
	case NVSP4_SWITCH_DATA_PATH:
		/* there is no VF to switch to; the completion carries no data */
		if (d.flags & VMBUS_PKT_F_COMPLETION)
			vmbus_chan_send(n->ch, VMBUS_PKT_COMP, 0, d.trans_id, reply, 0);
		return;
	default:
		nv_error(n, "unknown NVSP message type %u", type);
		return;
	}
	if (want && (d.flags & VMBUS_PKT_F_COMPLETION))
		vmbus_chan_send(n->ch, VMBUS_PKT_COMP, 0, d.trans_id, reply, sizeof(reply));
}

static void nv_notify(struct vmbus_channel *ch)
{
	struct netvsc *n = ch->opaque;

	for (;;) {
		int len = ring_peek(&ch->in, n->pkt, sizeof(n->pkt)), room;

		if (len < 0)
			vmbus_chan_fail(ch, "netvsc: corrupt send ring or a packet over %zu bytes", sizeof(n->pkt));
		if (len <= 0)
			break;
		/* a packet is taken only when its completion has room; if not,
		 * the guest signals once it has read some */
		room = ring_room(&ch->out, NVSP_LEN);
		if (room < 0)
			vmbus_chan_fail(ch, "netvsc: the guest's receive ring has corrupt indices");
		if (room <= 0)
			break;
		nvsp_packet(n, n->pkt, len);
		n->c.packets++;
		if (ring_consume(&ch->in, len))
			vmbus_chan_kick(ch);
		if (ch->broken)
			return;
	}
	/* freed sections, ring room, control replies, frames a transmitted
	 * one called forth */
	if (!ch->broken)
		rx_flush(n);
}

/* the guest closed the channel (or unloaded): everything starts over */
static void nv_close(struct vmbus_channel *ch)
{
	struct netvsc *n = ch->opaque;

	rx_buf_forget(n);
	n->tx_ok = false;
	n->rndis_up = false;
	n->filter = 0;
	n->version = 0;
	n->ctrl_len = 0;
	net_rxq_drop_all(&n->rxq, n->nb, &n->c.rx_dropped);
}

static const struct vmbus_dev_ops nv_ops = { .notify = nv_notify, .close = nv_close };

/* ---- snapshots ---- */

/* 2 added the frames waiting for a receive section; a section of
 * version 1 loads with none */
#define SNAP_NETVSC_VERSION 2

/* NVSP and RNDIS state, the buffers' GPADLs and which receive sections
 * the guest still holds (announced, not completed: their packets are in
 * its ring), the replies waiting for a section, and the frames the
 * backend delivered that no section took yet (each: u32 length, the
 * bytes): a guest that held every section at the snapshot gets them when
 * it gives sections back, as it would have without the snapshot. */
static int nv_save(void *opaque, struct snap_buf *b, char *err, size_t errlen)
{
	struct netvsc *n = opaque;
	uint8_t flags[4] = { n->rx_ok, n->tx_ok, n->rndis_up, n->link_up };
	uint32_t u32[9] = { SNAP_NETVSC_VERSION, n->version, n->rx_gpadl, n->tx_gpadl, n->rx_id,
			    n->rx_sections, n->tx_sections, n->filter, n->error_lines };

	snap_put(b, u32, sizeof(u32));
	snap_put(b, n->mac, 6);
	snap_put(b, flags, 4);
	snap_put(b, &n->ctrl_len, 4);
	for (unsigned i = 0; i < n->ctrl_len; i++) {
		const struct ctrl_msg *c = &n->ctrlq[(n->ctrl_head + i) % CTRLQ_LEN];

		snap_put(b, &c->len, 4);
		snap_put(b, c->data, c->len);
	}
	pthread_mutex_lock(&n->rxq.lock);
	snap_put(b, &n->c, sizeof(n->c));
	if (n->rx_ok) {
		snap_put(b, &n->rx_nfree, 4);
		snap_put(b, n->rx_free, (size_t)n->rx_nfree * 4);
	}
	snap_put(b, &n->rxq.len, 4);
	for (const struct net_rx_frame *f = n->rxq.head; f; f = f->next) {
		uint32_t len = (uint32_t)f->len;

		snap_put(b, &len, 4);
		snap_put(b, f->data, f->len);
	}
	pthread_mutex_unlock(&n->rxq.lock);
	return 0;
}

/* the queued frames of a section: at most what the queue holds, each as
 * port_receive would have queued it; NULL, or why not (the frames read
 * so far are in the list) */
static const char *nv_load_frames(struct snap_rd *r, struct net_rx_frame **head, struct net_rx_frame **tail,
				  uint32_t *count)
{
	if (!snap_get(r, count, 4) || *count > NET_RXQ_HARD)
		return "bad queued frames";
	for (uint32_t i = 0; i < *count; i++) {
		uint32_t len;
		struct net_rx_frame *f;

		if (!snap_get(r, &len, 4) || len < ETH_HLEN || len > NET_MAX_FRAME)
			return "bad queued frames";
		if (!(f = malloc(sizeof(*f) + len)))
			return "out of memory";
		f->next = NULL;
		f->o = (struct net_offload){ 0 };
		f->len = len;
		if (*tail)
			(*tail)->next = f;
		else
			*head = f;
		*tail = f;
		if (!snap_get(r, f->data, len))
			return "bad queued frames";
	}
	return NULL;
}

static void nv_free_frames(struct net_rx_frame *f)
{
	while (f) {
		struct net_rx_frame *next = f->next;

		free(f);
		f = next;
	}
}

/* sections of a buffer GPADL as nvsp_buffer cuts them, or 0 when the
 * guest has torn it down (which rx_send and nvsp_rndis notice) */
static uint64_t nv_sections(struct netvsc *n, uint32_t gpadl, uint32_t section, uint32_t max)
{
	uint32_t npages;
	uint64_t count;

	if (!vmbus_chan_gpadl(n->ch, gpadl, &npages))
		return 0;
	count = (uint64_t)npages * VMBUS_PAGE / section;
	return count > max ? max : count;
}

static int nv_load(void *opaque, struct snap_rd *r, char *err, size_t errlen)
{
	struct netvsc *n = opaque;
	uint32_t u32[9], ctrl_len, nfree = 0, *rx_free = NULL, nframes = 0;
	uint8_t mac[6], flags[4], *busy = NULL;
	struct net_rx_frame *frames = NULL, *last = NULL;
	uint64_t one = 1;
	struct ctrl_msg *ctrl = calloc(CTRLQ_LEN, sizeof(*ctrl));
	struct netvsc_counters c;
	uint64_t have;
	bool version_ok = false;
	const char *why = "truncated";

	if (!ctrl)
		goto bad;
	if (!snap_get(r, u32, sizeof(u32)) || !u32[0] || u32[0] > SNAP_NETVSC_VERSION) {
		why = "another version";
		goto bad;
	}
	if (!snap_get(r, mac, 6) || !snap_get(r, flags, 4) || !snap_get(r, &ctrl_len, 4))
		goto bad;
	why = "bad NVSP or RNDIS state";
	for (unsigned i = 0; i < sizeof(nvsp_versions) / sizeof(nvsp_versions[0]); i++)
		version_ok |= u32[1] == nvsp_versions[i];
	if ((u32[1] && !version_ok) || u32[4] > 0xffff || u32[8] > MAX_ERROR_LINES || flags[0] > 1 ||
	    flags[1] > 1 || flags[2] > 1 || flags[3] > 1 || ctrl_len > CTRLQ_LEN)
		goto bad;
	for (unsigned i = 0; i < ctrl_len; i++)
		if (!snap_get(r, &ctrl[i].len, 4) || ctrl[i].len > CTRL_MAX || !snap_get(r, ctrl[i].data, ctrl[i].len))
			goto bad;
	if (!snap_get(r, &c, sizeof(c)))
		goto bad;
	/* the receive buffer: its sections, and a stack of the free ones
	 * holding each section the guest does not hold, once */
	why = "bad receive buffer";
	if (!flags[0] && u32[5])
		goto bad;
	if (flags[0]) {
		have = nv_sections(n, u32[2], RX_SECTION, RX_MAX_SECTIONS);
		if (!u32[5] || u32[5] > RX_MAX_SECTIONS || (have && have != u32[5]) || !snap_get(r, &nfree, 4) ||
		    nfree > u32[5])
			goto bad;
		rx_free = malloc((size_t)u32[5] * sizeof(*rx_free));
		busy = malloc(u32[5]);
		if (!rx_free || !busy || !snap_get(r, rx_free, (size_t)nfree * 4))
			goto bad;
		memset(busy, 1, u32[5]);
		for (uint32_t i = 0; i < nfree; i++) {
			if (rx_free[i] >= u32[5] || !busy[rx_free[i]])
				goto bad;
			busy[rx_free[i]] = 0;
		}
	}
	why = "bad send buffer";
	if ((!flags[1] && u32[6]) ||
	    (flags[1] && (!u32[6] || ((have = nv_sections(n, u32[3], TX_SECTION, UINT32_MAX)) && have != u32[6]))))
		goto bad;
	if (u32[0] >= 2 && (why = nv_load_frames(r, &frames, &last, &nframes)))
		goto bad;

	free(n->rx_free);
	free(n->rx_busy);
	n->rx_free = rx_free;
	n->rx_busy = busy;
	n->rx_nfree = nfree;
	n->version = u32[1];
	n->rx_gpadl = u32[2];
	n->tx_gpadl = u32[3];
	n->rx_id = (uint16_t)u32[4];
	n->rx_sections = u32[5];
	n->tx_sections = u32[6];
	n->filter = u32[7];
	n->error_lines = u32[8];
	memcpy(n->mac, mac, 6);
	n->rx_ok = flags[0];
	n->tx_ok = flags[1];
	n->rndis_up = flags[2];
	n->link_up = flags[3];
	memcpy(n->ctrlq, ctrl, sizeof(n->ctrlq));
	n->ctrl_head = 0;
	n->ctrl_len = ctrl_len;
	/* the queue is the snapshot's: what a new backend delivered before
	 * the load goes, as frames do when the guest closes the channel */
	net_rxq_drop_all(&n->rxq, n->nb, &n->c.rx_dropped);
	pthread_mutex_lock(&n->rxq.lock);
	n->c = c;
	n->rxq.head = frames;
	n->rxq.tail = last;
	n->rxq.len = nframes;
	pthread_mutex_unlock(&n->rxq.lock);
	/* the I/O thread moves them once the guest has a section free */
	if (frames && write(n->rxq.kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		perror("accord: netvsc");
	free(ctrl);
	return 0;
bad:
	snprintf(err, errlen, "bad netvsc state: %s", ctrl ? why : "out of memory");
	free(ctrl);
	free(rx_free);
	free(busy);
	nv_free_frames(frames);
	return -1;
}

/* ---- the backend's side ---- */

static bool port_can_receive(void *opaque)
{
	struct netvsc *n = opaque;

	return net_rxq_can_receive(&n->rxq);
}

static void port_receive(void *opaque, const void *frame, size_t len)
{
	struct netvsc *n = opaque;

	net_rxq_push(&n->rxq, NULL, frame, len, ETH_HLEN, &n->c.rx_dropped, "accord: netvsc");
}

/* the I/O thread: frames arrived */
static void nv_kicked(void *opaque, int fd, short revents)
{
	struct netvsc *n = opaque;
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	vmbus_lock(n->ch->vb);
	if (n->ch->open && !n->ch->broken)
		rx_flush(n);
	vmbus_unlock(n->ch->vb);
}

struct netvsc *netvsc_create(struct vmbus *vb, struct vm *vm, struct iothread *io, struct net_backend *nb,
			     const uint8_t *mac)
{
	static const uint8_t default_mac[6] = { 0x52, 0x41, 0x43, 0x00, 0x00, 0x00 };
	static unsigned count;
	uint8_t instance[16] = { 0x61, 0x63, 0x63, 0x6f, 0x72, 0x64, 0x00, 0x40, 0x80, 0x4e, 0x49, 0x43 };
	struct netvsc *n = calloc(1, sizeof(*n));

	if (!n) {
		fprintf(stderr, "accord: netvsc: out of memory\n");
		return NULL;
	}
	n->vm = vm;
	n->nb = nb;
	n->link_up = true;
	count++;
	if (mac) {
		memcpy(n->mac, mac, 6);
	} else {
		memcpy(n->mac, default_mac, 6);
		n->mac[5] = count;
	}
	if (net_rxq_init(&n->rxq) < 0) {
		fprintf(stderr, "accord: netvsc: eventfd: %s\n", strerror(errno));
		free(n);
		return NULL;
	}
	if (iothread_fd_add(io, n->rxq.kick_fd, POLLIN, nv_kicked, n)) {
		fprintf(stderr, "accord: netvsc: cannot register with the I/O thread\n");
		goto fail;
	}
	instance[14] = count >> 8;
	instance[15] = count;
	n->ch = vmbus_add_channel(vb, nic_class, instance, &nv_ops, n);
	if (!n->ch || vm_snap_register(vm, "netvsc", nv_save, nv_load, n)) {
		iothread_fd_del(io, n->rxq.kick_fd);
		goto fail;
	}
	nb->port = (struct net_port){ .can_receive = port_can_receive, .receive = port_receive, .opaque = n };
	return n;
fail:
	close(n->rxq.kick_fd);
	free(n);
	return NULL;
}

void netvsc_set_link(struct netvsc *n, bool up)
{
	vmbus_lock(n->ch->vb);
	if (n->link_up != up) {
		n->link_up = up;
		if (n->rndis_up) {
			indicate_link(n);
			if (n->ch->open && !n->ch->broken)
				rx_flush(n);
		}
	}
	vmbus_unlock(n->ch->vb);
}

void netvsc_counters(struct netvsc *n, struct netvsc_counters *c)
{
	/* rx_dropped also moves under the queue lock alone */
	vmbus_lock(n->ch->vb);
	pthread_mutex_lock(&n->rxq.lock);
	*c = n->c;
	pthread_mutex_unlock(&n->rxq.lock);
	vmbus_unlock(n->ch->vb);
}

void netvsc_mac(struct netvsc *n, uint8_t mac[6])
{
	memcpy(mac, n->mac, 6);
}
