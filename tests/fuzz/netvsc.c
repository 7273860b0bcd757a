/* netvsc as a hostile Hyper-V guest drives it: the VMBus channel
 * messages, ring packets carrying NVSP and RNDIS, send and receive buffer
 * GPADLs, send sections and page ranges in guest RAM, receive completions,
 * and frames arriving from the network backend (a test backend that
 * counts what it is sent). The partition is the real one
 * (PERSONALITY_HYPERV) with one netvsc NIC, relid 1.
 * smoke runs: 5000
 *
 * Input: operations, each an opcode byte and operands (little-endian):
 *
 *   0 post    conn:1 len:1 bytes:len  a message on connection id 4 (conn
 *                                     odd) or 1, at most 240 bytes
 *   1 write   off:3 n:1 bytes:n       into the 1 MiB at 1 MiB: where the
 *                                     seeds put ring pages and buffers
 *   2 signal  conn:4                  HvSignalEvent
 *   3 eom     take every message in the slot
 *   4 frame   len:2 dst:1             a frame from the backend, to the
 *                                     NIC's MAC (dst even) or broadcast
 *
 * Every input starts from an UNLOAD on both connection ids, with that
 * megabyte and the SynIC pages zeroed. */
#define _GNU_SOURCE
#include <unistd.h>

#include "dev/hyperv/hyperv.h"
#include "dev/hyperv/vmbus.h"
#include "net/net.h"
#include "vm/iothread.h"
#include "vm/vm.h"
#include "fuzz.h"
#include "testvm.h"

#define RAM_SIZE (16u << 20)
#define PAGE 4096u
#define AREA 0x100000u
#define AREA_SIZE 0x100000u
#define SIMP_GPA 0xf00000u
#define SIEFP_GPA 0xf01000u
#define HC_INPUT_GPA 0xf02000u
#define VMBUS_SINT 2

static struct vm vm;
static struct vcpu *v0;
static const uint8_t mac[6] = { 0x52, 0x41, 0x43, 0, 0, 1 };
static struct net_backend nb;
static struct iothread *io;
static uint64_t tx_frames;

static void fz_send(struct net_backend *b, const void *frame, size_t len)
{
	/* a frame the device passes on is whole: within the backend's limit */
	if (len < 14 || len > NET_MAX_FRAME)
		abort();
	tx_frames++;
}

static void fz_resume(struct net_backend *b)
{
}

static const struct net_backend_ops fz_ops = { fz_send, fz_resume };

static uint8_t *gp(uint64_t gpa, size_t len)
{
	return vm_gpa(&vm, gpa, len);
}

static void post(uint32_t conn, const uint8_t *m, uint32_t len)
{
	uint8_t *in = gp(HC_INPUT_GPA, 16 + HV_MESSAGE_PAYLOAD_MAX);

	fz_put32(in, conn);
	fz_put32(in + 4, 0);
	fz_put32(in + 8, 1);
	fz_put32(in + 12, len);
	memcpy(in + 16, m, len);
	hv_hypercall_exec(v0, 0x5c, HC_INPUT_GPA, 0);
}

static void eom(void)
{
	uint8_t *slot = gp(SIMP_GPA + VMBUS_SINT * HV_MESSAGE_SIZE, HV_MESSAGE_SIZE);

	for (int i = 0; i < 64 && (slot[0] | slot[1] | slot[2] | slot[3]); i++) {
		bool pending = slot[5] & 1;

		memset(slot, 0, 4);
		if (pending)
			hv_msr_write(v0, 0x40000084, 0);
	}
}

static void fuzz_init(void)
{
	struct vmbus *vb;

	if (vm_create(&vm, RAM_SIZE, 1, &stub_engine, PERSONALITY_HYPERV) < 0)
		abort();
	v0 = vm.vcpu[0];
	hv_msr_write(v0, 0x40000083, SIMP_GPA | 1);
	hv_msr_write(v0, 0x40000082, SIEFP_GPA | 1);
	hv_msr_write(v0, 0x40000090 + VMBUS_SINT, 0xf3);
	hv_msr_write(v0, 0x40000080, 1);
	nb.ops = &fz_ops;
	/* the I/O thread is never started: frames reach the guest when it
	 * signals, from the same thread */
	io = iothread_create();
	vb = vmbus_create(&vm);
	if (!io || !vb || !netvsc_create(vb, &vm, io, &nb, mac))
		abort();
}

struct in {
	const uint8_t *p;
	size_t n;
};

static uint64_t take(struct in *in, int bytes)
{
	uint64_t v = 0;

	for (int i = 0; i < bytes && in->n; i++, in->n--)
		v |= (uint64_t)*in->p++ << (8 * i);
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t unload[8] = { 16 };
	static uint8_t frame[NET_MAX_FRAME];
	struct in in = { data, size };

	post(1, unload, 8);
	post(4, unload, 8);
	eom();
	memset(gp(AREA, AREA_SIZE), 0, AREA_SIZE);
	memset(gp(SIMP_GPA, 2 * PAGE), 0, 2 * PAGE);
	while (in.n) {
		switch (take(&in, 1) % 5) {
		case 0: {
			uint32_t conn = take(&in, 1) & 1 ? 4 : 1;
			uint8_t m[HV_MESSAGE_PAYLOAD_MAX] = { 0 };
			unsigned len = take(&in, 1) % (HV_MESSAGE_PAYLOAD_MAX + 1);

			for (unsigned i = 0; i < len; i++)
				m[i] = take(&in, 1);
			post(conn, m, len);
			break;
		}
		case 1: {
			uint32_t off = take(&in, 3) % AREA_SIZE;
			unsigned n = take(&in, 1);
			uint8_t *d = gp(AREA, AREA_SIZE);

			for (unsigned i = 0; i < n && off + i < AREA_SIZE; i++)
				d[off + i] = take(&in, 1);
			break;
		}
		case 2:
			hv_hypercall_exec(v0, 0x5d | 1u << 16, take(&in, 4), 0);
			break;
		case 3:
			eom();
			break;
		case 4: {
			size_t len = take(&in, 2) % (NET_MAX_FRAME + 2);

			memset(frame, 0xff, 6);
			if (!(take(&in, 1) & 1))
				memcpy(frame, mac, 6);
			nb.port.receive(nb.port.opaque, frame, len);
			break;
		}
		}
	}
	return 0;
}

/* ---- seeds: a guest that connects, hands over its buffers, initialises
 * RNDIS, sends and receives ---- */

/* the channel's GPADL: 8 pages at AREA, outbound ring in the first 4 */
#define RING_PFN (AREA / PAGE)
#define RING_PAGES 8
#define SPLIT 4
#define OUT_SIZE ((SPLIT - 1) * PAGE)
#define DATA_GPA (AREA + 0x80000u)
/* the receive buffer (16 pages) and the send buffer (4 pages) */
#define RX_GPA (AREA + 0x10000u)
#define TX_GPA (AREA + 0x20000u)

struct prog {
	uint8_t b[8192];
	size_t n;
	uint32_t w; /* the outbound ring's write index */
};

static void pb(struct prog *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p->b[p->n++] = v >> (8 * i);
}

static void p_post(struct prog *p, const uint8_t *m, unsigned len)
{
	pb(p, 0, 1);
	pb(p, 1, 1);
	pb(p, len, 1);
	memcpy(p->b + p->n, m, len);
	p->n += len;
	pb(p, 3, 1);
}

static void p_write(struct prog *p, uint64_t gpa, const uint8_t *d, unsigned n)
{
	pb(p, 1, 1);
	pb(p, gpa - AREA, 3);
	pb(p, n, 1);
	memcpy(p->b + p->n, d, n);
	p->n += n;
}

/* connect as Windows 10 5.3 does, ask for offers, make the GPADL, open */
static void p_open(struct prog *p)
{
	uint8_t m[HV_MESSAGE_PAYLOAD_MAX] = { 14 };

	fz_put32(m + 8, 5 << 16 | 3);
	m[16] = VMBUS_SINT;
	p_post(p, m, 40);
	memset(m, 0, sizeof(m));
	m[0] = 3;
	p_post(p, m, 8);
	memset(m, 0, sizeof(m));
	m[0] = 8;
	fz_put32(m + 8, 1);
	fz_put32(m + 12, 0x1000);
	fz_put16(m + 16, 8 + 8 * RING_PAGES);
	fz_put16(m + 18, 1);
	fz_put32(m + 20, RING_PAGES * PAGE);
	for (unsigned i = 0; i < RING_PAGES; i++)
		fz_put64(m + 28 + 8 * i, RING_PFN + i);
	p_post(p, m, 28 + 8 * RING_PAGES);
	memset(m, 0, sizeof(m));
	m[0] = 5;
	fz_put32(m + 8, 1);
	fz_put32(m + 12, 0x77);
	fz_put32(m + 16, 0x1000);
	fz_put32(m + 24, SPLIT);
	p_post(p, m, 148);
}

/* a packet into the outbound ring (descriptor, GPA ranges, data), the
 * write index moved past it, and the host signalled */
static void p_packet(struct prog *p, uint16_t type, const uint8_t *extra, uint32_t elen, const uint8_t *d,
		     uint32_t dlen)
{
	uint8_t pkt[256] = { 0 };
	uint32_t total = (16 + elen + dlen + 7) & ~7u;

	pkt[0] = type;
	pkt[2] = (16 + elen) / 8;
	fz_put16(pkt + 4, total / 8);
	pkt[6] = 1;
	fz_put64(pkt + 8, p->w + 1);
	memcpy(pkt + 16, extra, elen);
	memcpy(pkt + 16 + elen, d, dlen);
	fz_put64(pkt + total, (uint64_t)p->w << 32);
	/* the seeds' packets never wrap */
	p_write(p, AREA + PAGE + p->w, pkt, total + 8);
	p->w = (p->w + total + 8) % OUT_SIZE;
	fz_put32(pkt, p->w);
	p_write(p, AREA, pkt, 4);
	pb(p, 2, 1);
	pb(p, 0x100 + 1, 4);
	pb(p, 3, 1);
}

static void p_gpadl(struct prog *p, uint32_t id, uint64_t gpa, unsigned pages)
{
	uint8_t m[HV_MESSAGE_PAYLOAD_MAX] = { 8 };

	fz_put32(m + 8, 1);
	fz_put32(m + 12, id);
	fz_put16(m + 16, 8 + 8 * pages);
	fz_put16(m + 18, 1);
	fz_put32(m + 20, pages * PAGE);
	for (unsigned i = 0; i < pages; i++)
		fz_put64(m + 28 + 8 * i, gpa / PAGE + i);
	p_post(p, m, 28 + 8 * pages);
}

static void p_nvsp(struct prog *p, uint32_t type, uint32_t a, uint32_t b, uint32_t c)
{
	uint8_t nv[40] = { 0 };

	fz_put32(nv, type);
	fz_put32(nv + 4, a);
	fz_put32(nv + 8, b);
	fz_put32(nv + 12, c);
	p_packet(p, 6, nv, 0, nv, sizeof(nv));
}

/* an RNDIS message in send section 0 */
static void p_rndis(struct prog *p, const uint8_t *m, uint32_t len)
{
	p_write(p, TX_GPA, m, len);
	p_nvsp(p, 107, 1, 0, len);
}

static void p_setup(struct prog *p)
{
	uint8_t m[64] = { 2 };

	p_open(p);
	p_gpadl(p, 0x2000, RX_GPA, 16);
	p_gpadl(p, 0x2001, TX_GPA, 4);
	p_nvsp(p, 1, 0x60001, 0x60001, 0);
	p_nvsp(p, 101, 0x2000, 0xcafe, 0);
	p_nvsp(p, 104, 0x2001, 0, 0);
	fz_put32(m + 4, 24);
	fz_put32(m + 8, 1);
	fz_put32(m + 12, 1);
	p_rndis(p, m, 24);
}

static void fuzz_seeds(void)
{
	struct prog p = { .n = 0 };
	uint8_t m[128] = { 0 }, comp[8] = { 108, 0, 0, 0, 1 };

	p_setup(&p);
	fuzz_seed("setup", p.b, p.n);
	/* QUERY PERMANENT_ADDRESS */
	fz_put32(m, 4);
	fz_put32(m + 4, 28);
	fz_put32(m + 8, 2);
	fz_put32(m + 12, 0x01010101);
	fz_put32(m + 20, 20);
	p_rndis(&p, m, 28);
	fuzz_seed("query", p.b, p.n);
	/* SET CURRENT_PACKET_FILTER, then a frame each way and a completion */
	fz_put32(m, 5);
	fz_put32(m + 4, 32);
	fz_put32(m + 8, 3);
	fz_put32(m + 12, 0x0001010e);
	fz_put32(m + 16, 4);
	fz_put32(m + 28, 0x0d);
	p_rndis(&p, m, 32);
	memset(m, 0, sizeof(m));
	fz_put32(m, 1);
	fz_put32(m + 4, 44 + 60);
	fz_put32(m + 8, 36);
	fz_put32(m + 12, 60);
	memset(m + 44, 0xff, 6);
	p_rndis(&p, m, 44 + 60);
	pb(&p, 4, 1);
	pb(&p, 60, 2);
	pb(&p, 0, 1);
	p_packet(&p, 6, m, 0, m, 0);
	p_packet(&p, 11, comp, 0, comp, sizeof(comp));
	fuzz_seed("frames", p.b, p.n);
}
