/* netvsc driven directly, the test playing the Linux guest
 * (drivers/net/hyperv: netvsc.c, rndis_filter.c) on a real Hyper-V
 * partition and VMBus host, with a test network backend and a running I/O
 * thread: NVSP version negotiation, the receive and send buffers as
 * GPADLs (the receive buffer's pages scattered), RNDIS initialisation,
 * queries and sets, frames both ways byte for byte (send sections, page
 * ranges, batches, an 802.1Q tag), the packet filter, flow control to the
 * backend when the guest holds every receive section, link indications;
 * then a hostile guest: short and unknown NVSP messages, buffers on
 * unknown GPADLs, send sections out of range, RNDIS lengths and offsets
 * past the message, page lists outside RAM, completions for sections not
 * in use, offload requests, a receive buffer torn down without a revoke.
 * Each is refused with a line on stderr, nothing reaches the backend, and
 * guest RAM outside the rings and the receive buffer stays as it was. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dev/hyperv/hyperv.h"
#include "dev/hyperv/vmbus.h"
#include "net/net.h"
#include "vm/iothread.h"
#include "vm/vm.h"
#include "tap.h"
#include "testvm.h"
#include "test_backend.h"
#include "vmbus_guest.h"
#include "snap_hooks.h"

#define RAM_SIZE (16u << 20)

/* ring pages at 1 MiB (128 pages), the receive buffer (64 pages, in
 * reverse order) at 2 MiB, the send buffer (16 pages) at 3 MiB, frames
 * sent by page ranges at 4 MiB */
#define RING_PFN 0x100u
#define RX_PFN 0x200u
#define RX_PAGES 64u
#define TX_PFN 0x300u
#define TX_PAGES 16u
#define DATA_GPA 0x400000u
#define RX_GPADL 0x2000u
#define TX_GPADL 0x2001u

#define RX_SECTION 4096u
#define TX_SECTION 6144u

static uint8_t *snapshot;
static struct iothread *io;
static struct netvsc *nic;
static const uint8_t mac[6] = { 0x52, 0x41, 0x43, 0x12, 0x34, 0x56 };

static int sent(void)
{
	int n;

	pthread_mutex_lock(&tb.lock);
	n = tb.sent;
	pthread_mutex_unlock(&tb.lock);
	return n;
}

/* guest RAM as in the snapshot, apart from the rings, the receive buffer,
 * what the test itself writes (the send buffer, the pages it sends by
 * range) and the SynIC and hypercall pages */
static bool ram_same(void)
{
	static const struct {
		uint64_t lo, hi;
	} skip[] = {
		{ RING_PFN * PAGE, (RING_PFN + MAX_RING_PAGES) * PAGE },
		{ RX_PFN * PAGE, (RX_PFN + RX_PAGES) * PAGE },
		{ TX_PFN * PAGE, (TX_PFN + TX_PAGES) * PAGE },
		{ DATA_GPA, DATA_GPA + 4 * PAGE },
		{ SIMP_GPA, HC_INPUT_GPA + PAGE },
	};
	uint64_t at = 0;

	for (unsigned i = 0; i < sizeof(skip) / sizeof(skip[0]); i++) {
		if (memcmp(snapshot + at, vm.ram + at, skip[i].lo - at))
			return false;
		at = skip[i].hi;
	}
	return !memcmp(snapshot + at, vm.ram + at, RAM_SIZE - at);
}

/* ---- NVSP and RNDIS, the guest's side ---- */

static struct gchan ch;
static uint64_t next_tid = 1;

static uint64_t nvsp_send(uint16_t type, const void *extra, uint32_t elen, const uint8_t *nv, uint32_t len)
{
	uint64_t t = next_tid++;

	guest_send(&ch, type, t, extra, elen, nv, len);
	signal_host(&ch);
	return t;
}

struct hpkt {
	uint16_t type, flags;
	uint64_t tid;
	uint32_t off, len;
	uint8_t b[1024];
};

/* the next packet from the host, waiting up to wait_ms for the I/O thread */
static bool host_pkt(struct hpkt *p, int wait_ms)
{
	for (int i = 0;; i++) {
		uint32_t n = guest_recv(&ch, p->b, sizeof(p->b));

		if (n) {
			p->len = n;
			memcpy(&p->type, p->b, 2);
			memcpy(&p->flags, p->b + 6, 2);
			p->off = (p->b[2] | p->b[3] << 8) * 8;
			memcpy(&p->tid, p->b + 8, 8);
			return true;
		}
		if (i >= wait_ms)
			return false;
		usleep(1000);
	}
}

/* a completion for tid carrying NVSP type nvtype: its status, or ~0 */
static uint32_t host_comp(uint64_t tid, uint32_t nvtype, struct hpkt *p)
{
	if (!host_pkt(p, 0) || p->type != 11 || p->tid != tid || p->len < p->off + 8 || vmbus_get32(p->b + p->off) != nvtype)
		return ~0u;
	return vmbus_get32(p->b + p->off + 4);
}

static uint64_t rx_pfn(unsigned i)
{
	return RX_PFN + RX_PAGES - 1 - i;
}

static void rx_read(uint32_t off, uint8_t *buf, uint32_t len)
{
	for (uint32_t i = 0; i < len; i++, off++)
		buf[i] = *gp(rx_pfn(off / PAGE) * PAGE + off % PAGE);
}

struct xfer {
	uint64_t tid;
	uint16_t set, flags;
	uint32_t ranges, count, offset, nvtype, chan;
	uint8_t msg[RX_SECTION];
};

/* a transfer-page packet: the RNDIS message it names, copied out of the
 * receive buffer */
static bool host_xfer(struct xfer *x, int wait_ms)
{
	struct hpkt p;

	if (!host_pkt(&p, wait_ms) || p.type != 7 || p.off != 32 || p.len < p.off + 12)
		return false;
	x->tid = p.tid;
	x->flags = p.flags;
	memcpy(&x->set, p.b + 16, 2);
	x->ranges = vmbus_get32(p.b + 20);
	x->count = vmbus_get32(p.b + 24);
	x->offset = vmbus_get32(p.b + 28);
	x->nvtype = vmbus_get32(p.b + 32);
	x->chan = vmbus_get32(p.b + 36);
	if (x->count > RX_SECTION || x->offset > RX_PAGES * PAGE - x->count)
		return false;
	rx_read(x->offset, x->msg, x->count);
	return true;
}

static void rx_done(uint64_t tid)
{
	uint8_t nv[8];

	vmbus_put32(nv, 108);
	vmbus_put32(nv + 4, 1);
	guest_send(&ch, 11, tid, NULL, 0, nv, 8);
	signal_host(&ch);
}

/* an RNDIS stream in send section idx */
static uint64_t rndis_section(uint32_t idx, const void *m, uint32_t len)
{
	uint8_t nv[40] = { 0 };

	memcpy(gp(TX_PFN * PAGE + (uint64_t)idx * TX_SECTION), m, len);
	vmbus_put32(nv, 107);
	vmbus_put32(nv + 8, idx);
	vmbus_put32(nv + 12, len);
	return nvsp_send(6, NULL, 0, nv, 40);
}

/* an RNDIS stream at gpa, by page ranges as Linux 6.1's hv_page_buffer
 * array names it: one range per page */
static uint64_t rndis_pages(uint64_t gpa, const void *m, uint32_t len)
{
	uint8_t nv[40] = { 0 }, extra[8 + 16 * 24] = { 0 };
	uint32_t n = 0, done = 0;

	memcpy(gp(gpa), m, len);
	while (done < len) {
		uint32_t at = (gpa + done) % PAGE, k = PAGE - at < len - done ? PAGE - at : len - done;

		vmbus_put32(extra + 8 + 16 * n, k);
		vmbus_put32(extra + 12 + 16 * n, at);
		vmbus_put64(extra + 16 + 16 * n, (gpa + done) / PAGE);
		n++;
		done += k;
	}
	vmbus_put32(extra + 4, n);
	vmbus_put32(nv, 107);
	vmbus_put32(nv + 8, 0xffffffff);
	return nvsp_send(9, extra, 8 + 16 * n, nv, 40);
}

static uint32_t rndis_query_msg(uint8_t *m, uint32_t req, uint32_t oid, uint32_t inlen)
{
	memset(m, 0, 28 + inlen);
	vmbus_put32(m, 4);
	vmbus_put32(m + 4, 28 + inlen);
	vmbus_put32(m + 8, req);
	vmbus_put32(m + 12, oid);
	vmbus_put32(m + 16, inlen);
	vmbus_put32(m + 20, 20);
	return 28 + inlen;
}

static uint32_t rndis_set_msg(uint8_t *m, uint32_t req, uint32_t oid, const void *v, uint32_t vlen)
{
	memset(m, 0, 28);
	vmbus_put32(m, 5);
	vmbus_put32(m + 4, 28 + vlen);
	vmbus_put32(m + 8, req);
	vmbus_put32(m + 12, oid);
	vmbus_put32(m + 16, vlen);
	vmbus_put32(m + 20, 20);
	memcpy(m + 28, v, vlen);
	return 28 + vlen;
}

static uint32_t rndis_packet_msg(uint8_t *m, const uint8_t *frame, uint32_t len)
{
	memset(m, 0, 44);
	vmbus_put32(m, 1);
	vmbus_put32(m + 4, 44 + len);
	vmbus_put32(m + 8, 36);
	vmbus_put32(m + 12, len);
	memcpy(m + 44, frame, len);
	return 44 + len;
}

/* a control request in section 0: the SEND_RNDIS_PKT completion's status
 * and the reply, whose section is then given back */
static bool control(const uint8_t *m, uint32_t len, uint32_t *nvsp_status, struct xfer *x)
{
	struct hpkt p;
	uint64_t t = rndis_section(0, m, len);

	*nvsp_status = host_comp(t, 108, &p);
	if (!host_xfer(x, 0))
		return false;
	rx_done(x->tid);
	return true;
}

static void frame_fill(uint8_t *f, uint32_t len, const uint8_t *dst, uint8_t seed)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, "\x02\x00\x00\x00\x00\x01", 6);
	f[12] = 0x08;
	f[13] = 0x00;
	for (uint32_t i = 14; i < len; i++)
		f[i] = (uint8_t)(i * 7 + seed);
}

static bool tb_last_is(const uint8_t *f, uint32_t len)
{
	bool same;

	pthread_mutex_lock(&tb.lock);
	same = tb.last_len == len && !memcmp(tb.last, f, len);
	pthread_mutex_unlock(&tb.lock);
	return same;
}

/* ---- the tests ---- */

static const uint8_t nic_guid[16] = { 0x63, 0x51, 0x61, 0xf8, 0x3e, 0xdf, 0xc5, 0x46,
				      0x91, 0x3f, 0xf2, 0xd2, 0xf9, 0x65, 0xed, 0x0e };

static void test_offer_open(void)
{
	uint8_t m[40] = { 0 };
	const uint8_t *r;
	uint32_t len, status;
	uint64_t pfn[RX_PAGES];

	vmbus_put32(m + 8, 5 << 16 | 3);
	m[16] = 2;
	post_type(4, 14, m, 40);
	r = next_msg(&len);
	ok(r && vmbus_get32(r) == 15 && r[8] == 1, "VMBus 5.3 accepted");
	post_type(4, 3, m, 8);
	r = next_msg(&len);
	ok(r && vmbus_get32(r) == 1 && !memcmp(r + 8, nic_guid, 16) && vmbus_get32(r + 184) == 1,
	   "REQUESTOFFERS: a synthetic NIC (class f8615163-df3e-46c5-913f-f2d2f965ed0e), relid 1");
	r = next_msg(&len);
	ok(r && vmbus_get32(r) == 4 && !pending_msgs(), "then ALLOFFERS_DELIVERED");
	setup_chan(&ch, 1, 0x101, 0x1000, RING_PFN, 64, 32);
	make_gpadl(1, ch.gpadl, ch.pfn, ch.npages, &status);
	ok(status == 0 && open_channel(&ch, 0) == 0, "the channel's ring GPADL and OPENCHANNEL");
	for (unsigned i = 0; i < RX_PAGES; i++)
		pfn[i] = rx_pfn(i);
	make_gpadl(1, RX_GPADL, pfn, RX_PAGES, &status);
	ok(status == 0, "a 64-page receive buffer GPADL on pages in reverse order");
	for (unsigned i = 0; i < TX_PAGES; i++)
		pfn[i] = TX_PFN + i;
	make_gpadl(1, TX_GPADL, pfn, TX_PAGES, &status);
	ok(status == 0, "a 16-page send buffer GPADL");
}

static void test_nvsp_init(void)
{
	uint8_t nv[40] = { 0 };
	struct hpkt p;
	uint64_t t;
	long mark = err_mark();

	vmbus_put32(nv, 1);
	vmbus_put32(nv + 4, 0x70000);
	vmbus_put32(nv + 8, 0x70000);
	t = nvsp_send(6, NULL, 0, nv, 40);
	ok(host_comp(t, 2, &p) == 0 && vmbus_get32(p.b + p.off + 12) == 2,
	   "NVSP INIT for 7.0 (unknown): INIT_COMPLETE with status FAIL");
	vmbus_put32(nv + 4, 0x60001);
	vmbus_put32(nv + 8, 0x60001);
	event_flag(1);
	t = nvsp_send(6, NULL, 0, nv, 40);
	host_comp(t, 2, &p);
	ok(event_flag(1), "the completion raised event flag 1 (the relid)");
	ok(p.type == 11 && p.tid == t && vmbus_get32(p.b + p.off + 4) == 0x60001 && vmbus_get32(p.b + p.off + 12) == 1 &&
		   p.len - p.off >= 16,
	   "NVSP INIT for 6.1 (Linux 6.1's first try): a completion with the same id, 6.1, SUCCESS");
	vmbus_put32(nv + 4, 2);
	vmbus_put32(nv + 8, 0x60001);
	t = nvsp_send(6, NULL, 0, nv, 40);
	host_comp(t, 2, &p);
	ok(vmbus_get32(p.b + p.off + 4) == 0x60001 && vmbus_get32(p.b + p.off + 12) == 1,
	   "NVSP INIT for 2 to 6.1: the newest, 6.1");
	memset(nv, 0, sizeof(nv));
	vmbus_put32(nv, 125);
	vmbus_put32(nv + 4, 1514);
	nvsp_send(6, NULL, 0, nv, 40);
	vmbus_put32(nv, 100);
	vmbus_put32(nv + 4, 6);
	vmbus_put32(nv + 8, 30);
	nvsp_send(6, NULL, 0, nv, 40);
	ok(!host_pkt(&p, 0) && !err_since(mark, "netvsc"), "NDIS config and NDIS version: taken, no reply");
}

static void test_buffers(void)
{
	uint8_t nv[40] = { 0 };
	struct hpkt p;
	uint64_t t;
	long mark = err_mark();

	vmbus_put32(nv, 101);
	vmbus_put32(nv + 4, 0x7777);
	nv[8] = 0xfe;
	nv[9] = 0xca;
	t = nvsp_send(6, NULL, 0, nv, 40);
	ok(host_comp(t, 102, &p) == 2 && err_since(mark, "GPADL 30583"),
	   "SEND_RECV_BUF on an unknown GPADL: FAIL, one line on stderr");
	vmbus_put32(nv + 4, RX_GPADL);
	t = nvsp_send(6, NULL, 0, nv, 40);
	ok(host_comp(t, 102, &p) == 1 && vmbus_get32(p.b + p.off + 8) == 1 && vmbus_get32(p.b + p.off + 12) == 0 &&
		   vmbus_get32(p.b + p.off + 16) == RX_SECTION && vmbus_get32(p.b + p.off + 20) == RX_PAGES * PAGE / RX_SECTION &&
		   vmbus_get32(p.b + p.off + 24) == RX_PAGES * PAGE,
	   "SEND_RECV_BUF: SUCCESS, one section of 64 sub-allocations of 4096 bytes at offset 0");
	t = nvsp_send(6, NULL, 0, nv, 40);
	ok(host_comp(t, 102, &p) == 2, "a second receive buffer while one is in use: FAIL");
	memset(nv, 0, sizeof(nv));
	vmbus_put32(nv, 104);
	vmbus_put32(nv + 4, TX_GPADL);
	t = nvsp_send(6, NULL, 0, nv, 40);
	ok(host_comp(t, 105, &p) == 1 && vmbus_get32(p.b + p.off + 8) == TX_SECTION,
	   "SEND_SEND_BUF: SUCCESS, sections of 6144 bytes");
}

static void test_rndis_init(void)
{
	uint8_t m[256] = { 0 };
	uint32_t st;
	struct xfer x;
	bool got;

	vmbus_put32(m, 2);
	vmbus_put32(m + 4, 24);
	vmbus_put32(m + 8, 0x11);
	vmbus_put32(m + 12, 1);
	vmbus_put32(m + 20, 0x4000);
	got = control(m, 24, &st, &x);
	ok(st == 1, "RNDIS INITIALIZE in send section 0: SEND_RNDIS_PKT completed with SUCCESS");
	ok(got && x.set == 0xcafe && x.ranges == 1 && x.nvtype == 107 && x.chan == 1 && (x.flags & 1) &&
		   x.offset % RX_SECTION == 0,
	   "the reply arrives by transfer page packet: the buffer's id 0xcafe, one range in a section, a control "
	   "SEND_RNDIS_PKT, completion requested");
	ok(got && vmbus_get32(x.msg) == 0x80000002 && vmbus_get32(x.msg + 4) == 52 && x.count == 52 && vmbus_get32(x.msg + 8) == 0x11 &&
		   vmbus_get32(x.msg + 12) == 0 && vmbus_get32(x.msg + 16) == 1 && vmbus_get32(x.msg + 32) == 8 &&
		   vmbus_get32(x.msg + 40) == 3,
	   "INITIALIZE_CMPLT: same request id, SUCCESS, RNDIS 1.0, 8 messages per packet, 8-byte alignment");
}

static struct xfer query(uint32_t oid, uint32_t inlen, bool by_pages)
{
	uint8_t m[256];
	uint32_t len = rndis_query_msg(m, 0x100 + oid % 256, oid, inlen), st = 0;
	struct xfer x = { 0 };
	struct hpkt p;

	if (by_pages) {
		uint64_t t = rndis_pages(DATA_GPA + PAGE - 12, m, len);

		st = host_comp(t, 108, &p);
		if (host_xfer(&x, 0))
			rx_done(x.tid);
	} else {
		control(m, len, &st, &x);
	}
	if (st != 1)
		x.count = 0;
	return x;
}

static uint32_t set(uint32_t oid, const void *v, uint32_t vlen)
{
	uint8_t m[256];
	uint32_t st;
	struct xfer x;

	if (!control(m, rndis_set_msg(m, 0x200 + oid % 256, oid, v, vlen), &st, &x) || st != 1 ||
	    vmbus_get32(x.msg) != 0x80000005 || vmbus_get32(x.msg + 8) != 0x200 + oid % 256)
		return ~0u;
	return vmbus_get32(x.msg + 12);
}

static void test_rndis_oids(void)
{
	struct xfer x;
	uint8_t params[28] = { 0 };

	x = query(0x01010101, 0, true);
	ok(x.count == 30 && vmbus_get32(x.msg) == 0x80000004 && vmbus_get32(x.msg + 12) == 0 && vmbus_get32(x.msg + 16) == 6 &&
		   vmbus_get32(x.msg + 20) == 16 && !memcmp(x.msg + 24, mac, 6),
	   "QUERY PERMANENT_ADDRESS (sent by page ranges across a page boundary): the mac= address");
	x = query(0x01010102, 0, false);
	ok(x.count == 30 && !memcmp(x.msg + 24, mac, 6), "QUERY CURRENT_ADDRESS: the same");
	x = query(0x00010114, 0, false);
	ok(x.count == 28 && vmbus_get32(x.msg + 24) == 0, "QUERY MEDIA_CONNECT_STATUS: connected");
	x = query(0x00010106, 0, false);
	ok(x.count == 28 && vmbus_get32(x.msg + 24) == 1500, "QUERY MAXIMUM_FRAME_SIZE: 1500");
	x = query(0x00010107, 0, false);
	ok(x.count == 28 && vmbus_get32(x.msg + 24) == 100000000, "QUERY LINK_SPEED: 10 Gbit/s in 100 bit/s units");
	x = query(0xfc01020d, 156, false);
	bool zero = x.count == 24 + 112;
	for (uint32_t i = 28; zero && i < x.count; i++)
		zero = !x.msg[i];
	ok(zero && x.msg[24] == 0xa7 && x.msg[25] == 1 && (x.msg[26] | x.msg[27] << 8) == 112,
	   "QUERY TCP_OFFLOAD_HARDWARE_CAPABILITIES: an NDIS 6.0 offload object with no offload at all");
	x = query(0x00010116, 0, false);
	ok(x.count == 24 && vmbus_get32(x.msg + 12) == 0xc00000bb && vmbus_get32(x.msg + 16) == 0 && vmbus_get32(x.msg + 20) == 0,
	   "QUERY FRIENDLY_NAME (unsupported): NOT_SUPPORTED, no data");
	x = query(0x00010203, 16, false);
	ok(x.count == 24 && vmbus_get32(x.msg + 12) == 0xc00000bb, "QUERY RECEIVE_SCALE_CAPABILITIES: NOT_SUPPORTED (no RSS)");
	params[0] = 0x80;
	params[4] = 1;
	ok(set(0xfc01020c, params, 28) == 0, "SET TCP_OFFLOAD_PARAMETERS with IPv4 checksums disabled: SUCCESS");
	params[5] = 4;
	ok(set(0xfc01020c, params, 28) == 0xc00000bb, "SET TCP_OFFLOAD_PARAMETERS enabling TCP checksums: NOT_SUPPORTED");
	params[5] = 0;
	params[22] = 2;
	ok(set(0xfc01020c, params, 28) == 0xc00000bb, "SET TCP_OFFLOAD_PARAMETERS enabling RSC: NOT_SUPPORTED");
	ok(set(0x0001021b, params, 28) == 0xc00000bb, "SET RNDIS_CONFIG_PARAMETER (a new MAC): NOT_SUPPORTED");
	uint32_t filter = 0x0d;
	ok(set(0x0001010e, &filter, 4) == 0, "SET CURRENT_PACKET_FILTER directed|all-multicast|broadcast: SUCCESS");
	x = query(0x0001010e, 0, false);
	ok(x.count == 28 && vmbus_get32(x.msg + 24) == 0x0d, "QUERY CURRENT_PACKET_FILTER reads it back");
	{
		uint8_t m[64];
		uint32_t st;

		memset(m, 0, sizeof(m));
		vmbus_put32(m, 8);
		vmbus_put32(m + 4, 12);
		vmbus_put32(m + 8, 0x99);
		ok(control(m, 12, &st, &x) && vmbus_get32(x.msg) == 0x80000008 && vmbus_get32(x.msg + 8) == 0x99 &&
			   vmbus_get32(x.msg + 12) == 0,
		   "KEEPALIVE: KEEPALIVE_CMPLT, same id, SUCCESS");
	}
}

static void test_tx(void)
{
	static uint8_t f[3000], m[6200];
	struct hpkt p;
	uint32_t len;
	uint64_t t;
	int before = sent();

	frame_fill(f, 1514, (const uint8_t *)"\x02\x00\x00\x00\x00\x02", 1);
	len = rndis_packet_msg(m, f, 1514);
	t = rndis_section(3, m, len);
	ok(host_comp(t, 108, &p) == 1 && sent() == before + 1 && tb_last_is(f, 1514),
	   "a 1514-byte frame in send section 3 reaches the backend byte for byte; completion SUCCESS");
	frame_fill(f, 3000, (const uint8_t *)"\x02\x00\x00\x00\x00\x02", 2);
	len = rndis_packet_msg(m, f, 3000);
	t = rndis_pages(DATA_GPA + 100, m, len);
	ok(host_comp(t, 108, &p) == 1 && sent() == before + 2 && tb_last_is(f, 3000),
	   "a 3000-byte frame by page ranges over two pages: byte for byte");
	/* a batch: two messages, each padded to 8 bytes, in one section */
	frame_fill(f, 61, (const uint8_t *)"\x02\x00\x00\x00\x00\x02", 3);
	len = rndis_packet_msg(m, f, 61);
	vmbus_put32(m + 4, 112);
	frame_fill(f, 100, (const uint8_t *)"\x02\x00\x00\x00\x00\x02", 4);
	len = 112 + rndis_packet_msg(m + 112, f, 100);
	t = rndis_section(9, m, len);
	ok(host_comp(t, 108, &p) == 1 && sent() == before + 4 && tb_last_is(f, 100),
	   "two padded RNDIS packets batched in the last send section: two frames");
	/* an 802.1Q per-packet info: the tag goes into the frame */
	frame_fill(f, 64, (const uint8_t *)"\x02\x00\x00\x00\x00\x02", 5);
	memset(m, 0, 44 + 12);
	vmbus_put32(m, 1);
	vmbus_put32(m + 4, 44 + 12 + 64);
	vmbus_put32(m + 8, 36 + 12);
	vmbus_put32(m + 12, 64);
	vmbus_put32(m + 28, 36);
	vmbus_put32(m + 32, 12 + 4);
	vmbus_put32(m + 4, 44 + 16 + 64);
	vmbus_put32(m + 44, 16);
	vmbus_put32(m + 48, 6);
	vmbus_put32(m + 52, 12);
	vmbus_put32(m + 56, 5 | 1 << 3 | 42 << 4); /* priority 5, CFI, VLAN 42 */
	vmbus_put32(m + 8, 36 + 16);
	memcpy(m + 60, f, 64);
	t = rndis_section(1, m, 44 + 16 + 64);
	{
		uint8_t want[68];

		memcpy(want, f, 12);
		memcpy(want + 12, "\x81\x00\xb0\x2a", 4);
		memcpy(want + 16, f + 12, 52);
		ok(host_comp(t, 108, &p) == 1 && sent() == before + 5 && tb_last_is(want, 68),
		   "an 802.1Q per-packet info: the frame leaves tagged (TCI 0xb02a)");
	}
	/* a checksum request was never offered */
	vmbus_put32(m + 48, 0);
	vmbus_put32(m + 56, 1 << 2);
	t = rndis_section(1, m, 44 + 16 + 64);
	ok(host_comp(t, 108, &p) == 5 && sent() == before + 5,
	   "a checksum-offload per-packet info: refused (INVALID_RNDIS_PKT), nothing sent");
}

/* a frame from the host arrives in a section; returns its xfer (completed
 * when done is set) */
static bool rx_one(const uint8_t *f, uint32_t len, struct xfer *x, bool done)
{
	host_frame(f, len);
	if (!host_xfer(x, 3000))
		return false;
	if (done)
		rx_done(x->tid);
	return true;
}

static void test_rx(void)
{
	static uint8_t f[1514];
	struct xfer x;
	struct netvsc_counters c0, c1;
	bool got;

	netvsc_counters(nic, &c0);
	frame_fill(f, 1514, mac, 9);
	got = rx_one(f, 1514, &x, true);
	ok(got && x.nvtype == 107 && x.chan == 0 && x.count == 44 + 1514 && vmbus_get32(x.msg) == 1 &&
		   vmbus_get32(x.msg + 4) == 44 + 1514 && vmbus_get32(x.msg + 8) == 36 && vmbus_get32(x.msg + 12) == 1514 &&
		   !memcmp(x.msg + 44, f, 1514),
	   "a 1514-byte frame for our MAC: an RNDIS packet in a receive section, byte for byte");
	frame_fill(f, 60, (const uint8_t *)"\xff\xff\xff\xff\xff\xff", 10);
	got = rx_one(f, 60, &x, true);
	ok(got && !memcmp(x.msg + 44, f, 60), "a broadcast frame passes the filter");
	frame_fill(f, 60, (const uint8_t *)"\x02\x99\x99\x99\x99\x99", 11);
	host_frame(f, 60);
	frame_fill(f, 60, (const uint8_t *)"\x33\x33\x00\x00\x00\x01", 12);
	got = rx_one(f, 60, &x, true);
	ok(got && !memcmp(x.msg + 44, f, 60), "a frame for another MAC is filtered out; a multicast one passes");
	netvsc_counters(nic, &c1);
	ok(c1.rx_frames == c0.rx_frames + 3 && c1.rx_dropped == c0.rx_dropped + 1 && c1.tx_frames >= 5,
	   "counters: 3 frames received, 1 filtered, the frames sent");
}

static void test_flow(void)
{
	static uint8_t f[200];
	struct xfer x[RX_PAGES * PAGE / RX_SECTION];
	struct xfer y;
	unsigned nsec = RX_PAGES * PAGE / RX_SECTION, got = 0, sent_frames = 0;
	int resumes = __atomic_load_n(&tb.resumes, __ATOMIC_SEQ_CST);

	/* the guest holds every section: frames wait, then the backend stops */
	while (host_can_send() && sent_frames < 1000) {
		frame_fill(f, 200, mac, sent_frames);
		host_frame(f, 200);
		sent_frames++;
		if (got < nsec && host_xfer(&x[got], 200))
			got++;
	}
	while (got < nsec && host_xfer(&x[got], 200))
		got++;
	ok(got == nsec && !host_can_send() && sent_frames < 1000,
	   "all %u sections held by the guest: after %u frames the port stops the backend", nsec, sent_frames);
	ok(!host_xfer(&y, 100), "and nothing more arrives");
	for (unsigned i = 0; i < got; i++)
		rx_done(x[i].tid);
	unsigned more = 0;
	while (host_xfer(&y, 500)) {
		rx_done(y.tid);
		more++;
	}
	ok(more == sent_frames - nsec && host_can_send() &&
		   __atomic_load_n(&tb.resumes, __ATOMIC_SEQ_CST) > resumes,
	   "sections completed: the %u waiting frames arrive and the backend is told to resume", more);
}

static void test_link(void)
{
	struct xfer x;

	netvsc_set_link(nic, false);
	ok(host_xfer(&x, 0) && x.chan == 1 && vmbus_get32(x.msg) == 7 && vmbus_get32(x.msg + 8) == 0x4001000c,
	   "link down: an RNDIS INDICATE_STATUS MEDIA_DISCONNECT");
	rx_done(x.tid);
	x = query(0x00010114, 0, false);
	ok(x.count == 28 && vmbus_get32(x.msg + 24) == 1, "QUERY MEDIA_CONNECT_STATUS: disconnected");
	netvsc_set_link(nic, true);
	ok(host_xfer(&x, 0) && vmbus_get32(x.msg + 8) == 0x4001000b, "link up: MEDIA_CONNECT");
	rx_done(x.tid);
}

/* ---- snapshots: the hyperv, vmbus and netvsc sections ---- */

static void put32_at(struct sec_buf *s, size_t off, uint32_t v, const char *name, const char *what)
{
	char err[200];

	ok(sh_patch_refused(&vm, name, s, off, &v, 4, err, sizeof(err)), "snapshot: %s with %s is refused: %s", name,
	   what, err);
}

static void put8_at(struct sec_buf *s, size_t off, uint8_t v, const char *name, const char *what)
{
	char err[200];

	ok(sh_patch_refused(&vm, name, s, off, &v, 1, err, sizeof(err)), "snapshot: %s with %s is refused: %s", name,
	   what, err);
}

/* field offsets in the sections (the formats in hv_save, vmbus_save and
 * nv_save): the partition's first vCPU, the bus's first channel */
#define HV_VP0 72
#define HV_SINT0 (HV_VP0 + 24)
#define HV_STIMER0 (HV_VP0 + 162)
#define VB_CHAN0 41
#define VB_QLEN (VB_CHAN0 + 90)
#define NV_CTRL_LEN 46

static void test_snapshot(void)
{
	static const char *const names[] = { "hyperv", "vmbus", "netvsc" };
	static uint8_t f[300];
	struct sec_buf s[3];
	struct xfer held, x1, x2;
	uint8_t *ram = malloc(RAM_SIZE);
	char err[200];
	bool good = ram != NULL, got;

	/* a periodic synthetic timer armed far ahead, and a frame in a
	 * receive section the guest still holds */
	hv_msr_write(v0, 0x400000b2, 1 | 2 | 2u << 16);
	hv_msr_write(v0, 0x400000b3, 100000000000ull);
	frame_fill(f, 300, mac, 77);
	ok(rx_one(f, 300, &held, false), "snapshot: a frame sits in a receive section the guest holds");
	for (int i = 0; i < 3; i++) {
		bool rt = sh_round_trip(&vm, names[i], &s[i]);

		ok(rt, "snapshot: the %s section saves, loads and saves again as the same %zu bytes", names[i],
		   rt ? s[i].len : 0);
		good &= rt;
	}
	if (!good)
		return;
	memcpy(ram, vm.ram, RAM_SIZE);

	/* the guest goes on: gives the section back, takes a frame, sets
	 * another filter */
	rx_done(held.tid);
	got = rx_one(f, 300, &x1, true);
	ok(got && set(0x0001010e, "\x20\0\0\0", 4) == 0 && !sh_same(&vm, "netvsc", &s[2]) && !sh_same(&vm, "vmbus", &s[1]),
	   "snapshot: the guest moves on (a section back, a frame, the filter promiscuous)");
	hv_msr_write(v0, 0x400000b2, 0);
	ok(!sh_same(&vm, "hyperv", &s[0]), "snapshot: and a timer stopped");

	/* back to the snapshot: memory, then the sections in the machine's order */
	memcpy(vm.ram, ram, RAM_SIZE);
	good = true;
	for (int i = 0; i < 3; i++)
		good &= sh_load(&vm, names[i], s[i].p, s[i].len, err, sizeof(err)) == 0 && sh_same(&vm, names[i], &s[i]);
	ok(good, "snapshot: loaded back, every section is as it was saved");
	rx_done(held.tid);
	got = rx_one(f, 300, &x2, true);
	ok(got && x2.offset == x1.offset && x2.count == x1.count && !memcmp(x2.msg + 44, f, 300),
	   "the restored NIC takes the held section back and delivers the next frame where it did before (offset %u)",
	   x2.offset);
	x2 = query(0x0001010e, 0, false);
	ok(x2.count == 28 && vmbus_get32(x2.msg + 24) == 0x0d, "its packet filter is the snapshot's (0x%x)",
	   vmbus_get32(x2.msg + 24));

	/* what cannot be a snapshot is refused, and changes nothing */
	for (int i = 0; i < 3; i++)
		sh_load(&vm, names[i], s[i].p, s[i].len, err, sizeof(err));
	for (int i = 0; i < 3; i++)
		ok(sh_truncations_refused(&vm, names[i], &s[i]), "snapshot: each of the %zu truncations of %s is refused",
		   s[i].len, names[i]);
	put32_at(&s[0], 0, 2, "hyperv", "section version 2");
	put32_at(&s[0], 4, 2, "hyperv", "2 vCPUs");
	put32_at(&s[0], HV_SINT0, 0x05, "hyperv", "an unmasked SINT on exception vector 5");
	put32_at(&s[0], HV_VP0 + 16, 0x40000001, "hyperv", "a SIMP page outside RAM");
	put32_at(&s[0], 16, 0x1001, "hyperv", "the hypercall page enabled outside RAM");
	put32_at(&s[0], HV_STIMER0 + 16, 5, "hyperv", "a disabled timer armed");
	put8_at(&s[0], HV_STIMER0 + 24, 2, "hyperv", "a pending flag of 2");
	put32_at(&s[1], 0, 2, "vmbus", "section version 2");
	put8_at(&s[1], 4, 2, "vmbus", "connected = 2");
	put8_at(&s[1], 4, 0, "vmbus", "an open channel on a bus not connected");
	put32_at(&s[1], 5, 0x12345, "vmbus", "an unknown protocol version");
	put32_at(&s[1], 13, 1, "vmbus", "the message VP 1 of 1");
	put32_at(&s[1], 21, 2, "vmbus", "2 channels on a bus of 1");
	put32_at(&s[1], VB_CHAN0, 2, "vmbus", "another relid");
	put8_at(&s[1], VB_CHAN0 + 4, 0x64, "vmbus", "another class of device");
	put32_at(&s[1], VB_CHAN0 + 38, 1, "vmbus", "a target VP that does not exist");
	put32_at(&s[1], VB_CHAN0 + 42, 0xdead, "vmbus", "a ring on an unknown GPADL");
	put32_at(&s[1], VB_CHAN0 + 46, 1, "vmbus", "a ring split after 1 page");
	put32_at(&s[1], VB_CHAN0 + 50, 3, "vmbus", "an unaligned ring index");
	put32_at(&s[1], VB_CHAN0 + 54, 0x7fff0000, "vmbus", "a ring index past the ring");
	put32_at(&s[1], VB_QLEN, 1000, "vmbus", "1000 queued messages");
	uint32_t qlen = vmbus_get32(s[1].p + VB_QLEN);
	size_t goff = VB_QLEN + 4;
	for (uint32_t i = 0; i < qlen; i++)
		goff += 4 + vmbus_get32(s[1].p + goff);
	put32_at(&s[1], goff, 300, "vmbus", "300 GPADLs");
	/* the first GPADL: id, relid, want, have, rangecount, complete, then the range and its first PFN */
	put32_at(&s[1], goff + 4 + 4, 9, "vmbus", "a GPADL of a channel that does not exist");
	put32_at(&s[1], goff + 4 + 27 + 8, 0x100000, "vmbus", "a GPADL page outside guest RAM");
	put32_at(&s[1], goff + 4 + 8, 1, "vmbus", "a GPADL shorter than its ranges");
	put32_at(&s[2], 0, 3, "netvsc", "section version 3");
	put32_at(&s[2], 0, 0, "netvsc", "section version 0");
	put32_at(&s[2], 4, 0x12345, "netvsc", "an NVSP version never offered");
	put32_at(&s[2], 20, 65537, "netvsc", "65537 receive sections");
	put32_at(&s[2], 20, vmbus_get32(s[2].p + 20) + 1, "netvsc", "more receive sections than its GPADL holds");
	put32_at(&s[2], 24, 0, "netvsc", "a send buffer of no sections");
	put32_at(&s[2], 32, 21, "netvsc", "21 error lines");
	put8_at(&s[2], 42, 2, "netvsc", "rx_ok = 2");
	put32_at(&s[2], NV_CTRL_LEN, 17, "netvsc", "17 queued RNDIS replies");
	size_t foff = NV_CTRL_LEN + 4;
	for (uint32_t i = 0; i < vmbus_get32(s[2].p + NV_CTRL_LEN); i++)
		foff += 4 + vmbus_get32(s[2].p + foff);
	foff += sizeof(struct netvsc_counters);
	put32_at(&s[2], foff, vmbus_get32(s[2].p + 20) + 1, "netvsc", "more free sections than sections");
	put32_at(&s[2], foff + 8, vmbus_get32(s[2].p + foff + 4), "netvsc", "a free section twice");
	put32_at(&s[2], foff + 4, vmbus_get32(s[2].p + 20), "netvsc", "a free section past the buffer");
	for (int i = 0; i < 3; i++)
		ok(sh_flips(&vm, names[i], &s[i], 300, 7 + i), "snapshot: %s with 300 random damages: refused with a "
		   "reason or loaded, never a crash", names[i]);

	/* the machine as at the snapshot again, for the tests after this one */
	memcpy(vm.ram, ram, RAM_SIZE);
	good = true;
	for (int i = 0; i < 3; i++)
		good &= sh_load(&vm, names[i], s[i].p, s[i].len, err, sizeof(err)) == 0;
	rx_done(held.tid);
	hv_msr_write(v0, 0x400000b2, 0);
	ok(good, "snapshot: the machine goes back to the snapshot");
	for (int i = 0; i < 3; i++)
		free(s[i].p);
	free(ram);
}

/* Frames the backend delivered while the guest held every receive
 * section are in the netvsc section: after going back to the snapshot
 * they reach the guest, in order, as it gives sections back. A section
 * of version 1 (before they were kept) loads, with none. */
static void test_snapshot_queued(void)
{
	static const char *const names[] = { "hyperv", "vmbus", "netvsc" };
	enum { NSEC = RX_PAGES * PAGE / RX_SECTION, NQ = 3, FLEN = 200 };
	static struct xfer held[NSEC], y;
	static uint8_t f[NQ][FLEN];
	struct sec_buf s[3] = { 0 };
	uint8_t *ram = malloc(RAM_SIZE), *v1 = NULL;
	char err[200] = "";
	bool good = ram != NULL;
	unsigned n = 0;

	for (unsigned i = 0; i < NSEC && good; i++) {
		frame_fill(f[0], FLEN, mac, 100 + i);
		good = rx_one(f[0], FLEN, &held[i], false);
	}
	for (unsigned k = 0; k < NQ && good; k++) {
		frame_fill(f[k], FLEN, mac, 200 + k);
		host_frame(f[k], FLEN);
	}
	good = good && !host_xfer(&y, 200);
	ok(good, "snapshot: the guest holds all %u receive sections, %u frames wait for one", NSEC, NQ);
	if (!good)
		goto out;
	memcpy(ram, vm.ram, RAM_SIZE);
	for (int i = 0; i < 3; i++)
		good &= sh_save(&vm, names[i], &s[i], err, sizeof(err)) == 0;
	size_t qoff = good ? s[2].len - NQ * (4 + FLEN) - 4 : 0;
	ok(good && vmbus_get32(s[2].p + qoff) == NQ && vmbus_get32(s[2].p + qoff + 4) == FLEN &&
		   !memcmp(s[2].p + qoff + 8, f[0], FLEN),
	   "snapshot: the netvsc section holds the %u waiting frames", NQ);
	if (!good)
		goto out;
	ok(sh_truncations_refused(&vm, "netvsc", &s[2]), "snapshot: each of the %zu truncations of it is refused",
	   s[2].len);
	put32_at(&s[2], qoff, NET_RXQ_HARD + 1, "netvsc", "more queued frames than the queue holds");
	put32_at(&s[2], qoff + 4, 13, "netvsc", "a queued frame shorter than an Ethernet header");
	put32_at(&s[2], qoff + 4, FLEN + 1, "netvsc", "a queued frame longer than its bytes");

	/* the guest goes on and takes them; then back to the snapshot */
	for (unsigned i = 0; i < NSEC; i++)
		rx_done(held[i].tid);
	for (unsigned k = 0; k < NQ && host_xfer(&y, 3000); k++, n++)
		rx_done(y.tid);
	memcpy(vm.ram, ram, RAM_SIZE);
	for (int i = 0; i < 3; i++)
		good &= sh_load(&vm, names[i], s[i].p, s[i].len, err, sizeof(err)) == 0;
	ok(good && n == NQ && !host_xfer(&y, 200), "snapshot: back to it, the guest holds every section again%s%s",
	   good ? "" : ": ", good ? "" : err);

	/* it gives one back, then the rest: the frames come in order */
	n = 0;
	rx_done(held[0].tid);
	for (unsigned k = 0; k < NQ; k++) {
		if (!host_xfer(&y, 3000) || y.count != 44 + FLEN || memcmp(y.msg + 44, f[k], FLEN))
			break;
		n++;
		rx_done(y.tid);
		if (k == 0)
			for (unsigned i = 1; i < NSEC; i++)
				rx_done(held[i].tid);
	}
	ok(n == NQ, "the restored NIC delivers the %u frames that waited at the snapshot, in order, byte for byte "
	   "(%u did)", NQ, n);

	/* version 1: the same state without the frames */
	v1 = malloc(qoff);
	good = v1 != NULL;
	if (good) {
		memcpy(v1, s[2].p, qoff);
		vmbus_put32(v1, 1);
		memcpy(vm.ram, ram, RAM_SIZE);
		for (int i = 0; i < 2; i++)
			good &= sh_load(&vm, names[i], s[i].p, s[i].len, err, sizeof(err)) == 0;
		good &= sh_load(&vm, "netvsc", v1, qoff, err, sizeof(err)) == 0;
		for (unsigned i = 0; good && i < NSEC; i++)
			rx_done(held[i].tid);
	}
	ok(good && !host_xfer(&y, 300), "snapshot: a version 1 netvsc section loads, with no frames waiting%s%s",
	   good ? "" : ": ", good ? "" : err);
out:
	for (int i = 0; i < 3; i++)
		free(s[i].p);
	free(v1);
	free(ram);
}

static void test_hostile(void)
{
	static uint8_t m[7000], f[100];
	uint8_t nv[40] = { 0 }, extra[64] = { 0 };
	struct hpkt p;
	uint64_t t;
	long mark;
	int before = sent();
	struct netvsc_counters c0, c1;

	netvsc_counters(nic, &c0);
	memcpy(snapshot, vm.ram, RAM_SIZE);
	mark = err_mark();
	guest_send(&ch, 6, next_tid++, NULL, 0, nv, 0);
	signal_host(&ch);
	ok(!host_pkt(&p, 0) && err_since(mark, "0-byte NVSP"), "an empty NVSP message: no reply, one line on stderr");
	mark = err_mark();
	vmbus_put32(nv, 999);
	nvsp_send(6, NULL, 0, nv, 40);
	ok(!host_pkt(&p, 0) && err_since(mark, "type 999"), "NVSP message type 999: no reply, named on stderr");
	mark = err_mark();
	vmbus_put32(nv, 107);
	nvsp_send(7, NULL, 0, nv, 40);
	ok(!host_pkt(&p, 0) && err_since(mark, "packet type 7"), "a transfer-page packet from the guest: refused");

	frame_fill(f, 100, mac, 1);
	uint32_t len = rndis_packet_msg(m, f, 100);
	memset(nv, 0, sizeof(nv));
	vmbus_put32(nv, 107);
	vmbus_put32(nv + 8, 10);
	vmbus_put32(nv + 12, len);
	mark = err_mark();
	t = nvsp_send(6, NULL, 0, nv, 40);
	ok(host_comp(t, 108, &p) == 2 && err_since(mark, "send section 10"),
	   "send section 10 of 10: FAIL, one line on stderr");
	vmbus_put32(nv + 8, 0);
	vmbus_put32(nv + 12, 6145);
	t = nvsp_send(6, NULL, 0, nv, 40);
	ok(host_comp(t, 108, &p) == 2, "a 6145-byte send section: FAIL");
	vmbus_put32(m + 4, len + 1);
	t = rndis_section(0, m, len);
	ok(host_comp(t, 108, &p) == 5, "an RNDIS msg_len one past the data: INVALID_RNDIS_PKT");
	vmbus_put32(m + 4, 4);
	t = rndis_section(0, m, len);
	ok(host_comp(t, 108, &p) == 5, "an RNDIS msg_len of 4: INVALID_RNDIS_PKT");
	vmbus_put32(m + 4, len);
	vmbus_put32(m + 8, 36 + 1);
	t = rndis_section(0, m, len);
	ok(host_comp(t, 108, &p) == 5, "an RNDIS packet whose data runs one byte past the message: refused");
	vmbus_put32(m + 8, 0xfffffff0u);
	t = rndis_section(0, m, len);
	ok(host_comp(t, 108, &p) == 5, "an RNDIS data offset of 0xfffffff0: refused");
	vmbus_put32(m + 8, 36);
	vmbus_put32(m + 12, 0xffffffffu);
	t = rndis_section(0, m, len);
	ok(host_comp(t, 108, &p) == 5, "an RNDIS data length of 0xffffffff: refused");
	vmbus_put32(m + 12, 100);
	vmbus_put32(m + 28, 36);
	vmbus_put32(m + 32, 0x7fffffff);
	t = rndis_section(0, m, len);
	ok(host_comp(t, 108, &p) == 5, "per-packet info past the message: refused");
	vmbus_put32(m + 28, 0);
	vmbus_put32(m + 32, 0);
	vmbus_put32(nv + 8, 0);
	vmbus_put32(nv + 12, 0);
	t = nvsp_send(6, NULL, 0, nv, 40);
	ok(host_comp(t, 108, &p) == 5, "an empty RNDIS stream: INVALID_RNDIS_PKT");

	/* page ranges: outside RAM, malformed */
	vmbus_put32(extra + 4, 1);
	vmbus_put32(extra + 8, 64);
	vmbus_put32(extra + 12, 0);
	vmbus_put64(extra + 16, (RAM_SIZE + (64u << 20)) / PAGE);
	vmbus_put32(nv + 8, 0xffffffff);
	mark = err_mark();
	t = nvsp_send(9, extra, 24, nv, 40);
	ok(host_comp(t, 108, &p) == 2 && err_since(mark, "page list"), "a page range outside guest RAM: FAIL");
	vmbus_put32(extra + 4, 5);
	t = nvsp_send(9, extra, 24, nv, 40);
	ok(host_comp(t, 108, &p) == 2, "five ranges announced, one given: FAIL");
	vmbus_put32(extra + 4, 1);
	vmbus_put32(extra + 12, 5000);
	vmbus_put64(extra + 16, DATA_GPA / PAGE);
	t = nvsp_send(9, extra, 24, nv, 40);
	ok(host_comp(t, 108, &p) == 2, "a range offset of 5000 (past its page): FAIL");

	/* completions for sections the host never lent */
	mark = err_mark();
	vmbus_put32(nv, 108);
	vmbus_put32(nv + 4, 1);
	guest_send(&ch, 11, 9999, NULL, 0, nv, 8);
	guest_send(&ch, 11, 5, NULL, 0, nv, 8);
	signal_host(&ch);
	ok(!host_pkt(&p, 0) && err_since(mark, "section 9999") && err_since(mark, "section 5,"),
	   "completions for receive sections 9999 and 5 (not lent): ignored, named on stderr");
	mark = err_mark();
	vmbus_put32(nv, 105);
	guest_send(&ch, 11, 1, NULL, 0, nv, 8);
	signal_host(&ch);
	ok(!host_pkt(&p, 0) && err_since(mark, "completion of NVSP type 105"), "a completion of NVSP type 105: refused");

	/* malformed RNDIS control messages */
	memset(m, 0, 64);
	vmbus_put32(m, 4);
	vmbus_put32(m + 4, 12);
	mark = err_mark();
	t = rndis_section(0, m, 12);
	ok(host_comp(t, 108, &p) == 1 && !host_pkt(&p, 0) && err_since(mark, "RNDIS query of 12 bytes"),
	   "a 12-byte RNDIS QUERY: no reply, one line");
	rndis_set_msg(m, 0x55, 0x0001010e, "\x0d\0\0\0", 4);
	vmbus_put32(m + 20, 1000);
	{
		struct xfer x;
		uint32_t st;

		ok(control(m, 32, &st, &x) && vmbus_get32(x.msg) == 0x80000005 && vmbus_get32(x.msg + 12) == 0xc0010015,
		   "an RNDIS SET whose value lies past the message: INVALID_DATA");
	}
	memset(m, 0, 64);
	vmbus_put32(m, 0x77);
	vmbus_put32(m + 4, 16);
	mark = err_mark();
	t = rndis_section(0, m, 16);
	ok(host_comp(t, 108, &p) == 1 && !host_pkt(&p, 0) && err_since(mark, "unknown RNDIS message 0x77"),
	   "RNDIS message type 0x77: no reply, named");

	netvsc_counters(nic, &c1);
	ok(sent() == before && ram_same(), "nothing reached the backend and guest RAM is as it was");
	ok(c1.errors > c0.errors && c1.tx_dropped > c0.tx_dropped, "the errors and dropped frames are counted");
}

static void test_teardown(void)
{
	uint8_t m[HV_MESSAGE_PAYLOAD_MAX] = { 0 }, nv[40] = { 0 }, f[60];
	uint64_t pfn[4] = { 0x1000000, 0x1000001, 0x1000002, 0x1000003 };
	uint32_t status, len;
	const uint8_t *r;
	struct hpkt p;
	struct xfer x;
	uint64_t t;
	long mark;

	/* the guest tears the receive buffer down without revoking it */
	memcpy(snapshot, vm.ram, RAM_SIZE);
	vmbus_put32(m + 8, 1);
	vmbus_put32(m + 12, RX_GPADL);
	post_type(4, 11, m, 16);
	r = next_msg(&len);
	ok(r && vmbus_get32(r) == 12, "GPADL_TEARDOWN of the receive buffer under the running NIC: torn down");
	mark = err_mark();
	frame_fill(f, 60, mac, 1);
	host_frame(f, 60);
	usleep(200000);
	ok(!host_xfer(&x, 100) && err_since(mark, "receive buffer's GPADL") &&
		   !memcmp(snapshot + RX_PFN * PAGE, vm.ram + RX_PFN * PAGE, RX_PAGES * PAGE),
	   "a frame then: dropped, one line, the old pages untouched");
	make_gpadl(1, 0x3000, pfn, 4, &status);
	ok(status != 0, "a GPADL on pages outside guest RAM: refused by the bus");
	vmbus_put32(nv, 101);
	vmbus_put32(nv + 4, 0x3000);
	t = nvsp_send(6, NULL, 0, nv, 40);
	ok(host_comp(t, 102, &p) == 2, "SEND_RECV_BUF naming it: FAIL");
	memset(nv, 0, sizeof(nv));
	vmbus_put32(nv, 106);
	nvsp_send(6, NULL, 0, nv, 40);
	memset(m, 0, sizeof(m));
	len = rndis_query_msg(m, 1, 0x00010114, 0);
	t = rndis_section(0, m, len);
	ok(!host_pkt(&p, 0) || (p.tid == t && vmbus_get32(p.b + p.off + 4) == 2),
	   "after REVOKE_SEND_BUF a send section: FAIL");
	/* close and open again: the NIC starts over */
	memset(m, 0, sizeof(m));
	vmbus_put32(m + 8, 1);
	post_type(4, 7, m, 12);
	memset(ring_page(&ch, true, 0), 0, PAGE);
	memset(ring_page(&ch, false, 0), 0, PAGE);
	ok(open_channel(&ch, 0) == 0, "CLOSECHANNEL and OPENCHANNEL again");
	memset(nv, 0, sizeof(nv));
	vmbus_put32(nv, 1);
	vmbus_put32(nv + 4, 0x60001);
	vmbus_put32(nv + 8, 0x60001);
	t = nvsp_send(6, NULL, 0, nv, 40);
	ok(host_comp(t, 2, &p) == 0x60001 && vmbus_get32(p.b + p.off + 12) == 1, "NVSP INIT on the reopened channel: SUCCESS");
	memset(nv, 0, sizeof(nv));
	vmbus_put32(nv, 104);
	vmbus_put32(nv + 4, TX_GPADL);
	t = nvsp_send(6, NULL, 0, nv, 40);
	ok(host_comp(t, 105, &p) == 1, "the send buffer can be handed over again");
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (vm_create(&vm, RAM_SIZE, 1, &stub_engine, PERSONALITY_HYPERV, VM_IRQCHIP_USER, 0) < 0) {
		fprintf(stderr, "vm_create failed\n");
		return 1;
	}
	snapshot = malloc(RAM_SIZE);
	errlog = tmpfile();
	io = iothread_create();
	if (!snapshot || !errlog || !io) {
		perror("setup");
		return 1;
	}
	int saved_stderr = dup(2);
	dup2(fileno(errlog), 2);

	v0 = vm.vcpu[0];
	synic_setup(v0);
	struct vmbus *vb = vmbus_create(&vm);
	pthread_mutex_init(&tb.lock, NULL);
	tb.nb.ops = &tb_ops;
	nic = vb ? netvsc_create(vb, &vm, io, &tb.nb, mac) : NULL;
	ok(nic != NULL && iothread_start(io) == 0, "a netvsc NIC on VMBus, a test backend, the I/O thread running");
	if (nic) {
		test_offer_open();
		test_nvsp_init();
		test_buffers();
		test_rndis_init();
		test_rndis_oids();
		test_tx();
		test_rx();
		test_flow();
		test_link();
		test_snapshot();
		test_snapshot_queued();
		test_hostile();
		test_teardown();
	}
	iothread_stop(io);
	dup2(saved_stderr, 2);
	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail != 0;
}
