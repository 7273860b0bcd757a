/* A Hyper-V guest that the fuzzer steers, for the harnesses of the VMBus
 * devices (vmbus.c, netvsc.c): the partition is the real one
 * (PERSONALITY_HYPERV), vCPU 0's SynIC takes the VMBus messages in SINT 2.
 * hvf_init() creates the VM; the harness adds its devices. Each input
 * starts with hvf_reset() and is read with take(); hvf_op() executes the
 * operations every harness shares (little-endian operands):
 *
 *   0 post    conn:1 len:1 bytes:len  a message on connection id 4 (conn
 *                                     odd) or 1, at most 240 bytes
 *   1 write   off:3 n:1 bytes:n       into the 1 MiB at 1 MiB: where the
 *                                     seeds put ring pages and buffers
 *   2 signal  conn:4                  HvSignalEvent
 *   3 eom     take every message in the slot
 *
 * The seeds are written as such programs (struct prog): p_open() connects
 * and opens one channel, p_packet() puts a packet into its outbound ring. */
#ifndef ACCORD_FUZZ_HYPERV_H
#define ACCORD_FUZZ_HYPERV_H

#include "fuzz.h"
#include "synic_guest.h"
#include "testvm.h"

#define RAM_SIZE (16u << 20)
#define AREA 0x100000u
#define AREA_SIZE 0x100000u

static struct vm vm;
static struct vcpu *v0;

static inline uint8_t *gp(uint64_t gpa, size_t len)
{
	return vm_gpa(&vm, gpa, len);
}

static inline void post(uint32_t conn, const uint8_t *m, uint32_t len)
{
	synic_post(v0, conn, 1, m, len);
}

static inline void eom(void)
{
	uint8_t *slot = synic_msg_slot(v0);

	for (int i = 0; i < 64 && vmbus_get32(slot); i++)
		synic_msg_free(v0, slot);
}

/* vCPU 0's SynIC */
static inline void hvf_synic_init(void)
{
	v0 = vm.vcpu[0];
	synic_setup(v0);
}

/* the VM and vCPU 0's SynIC */
static inline void hvf_init(void)
{
	if (vm_create(&vm, RAM_SIZE, 1, &stub_engine, PERSONALITY_HYPERV, VM_IRQCHIP_USER, 0) < 0)
		abort();
	hvf_synic_init();
}

struct in {
	const uint8_t *p;
	size_t n;
};

static inline uint64_t take(struct in *in, int bytes)
{
	uint64_t v = 0;

	for (int i = 0; i < bytes && in->n; i++, in->n--)
		v |= (uint64_t)*in->p++ << (8 * i);
	return v;
}

/* an UNLOAD on both connection ids, the area and the SynIC pages zeroed */
static inline void hvf_reset(void)
{
	static const uint8_t unload[8] = { 16 };

	post(1, unload, 8);
	post(4, unload, 8);
	eom();
	memset(gp(AREA, AREA_SIZE), 0, AREA_SIZE);
	memset(gp(SIMP_GPA, 2 * PAGE), 0, 2 * PAGE);
}

/* operations 0 to 3 */
static inline void hvf_op(struct in *in, unsigned op)
{
	switch (op) {
	case 0: {
		uint32_t conn = take(in, 1) & 1 ? 4 : 1;
		uint8_t m[HV_MESSAGE_PAYLOAD_MAX] = { 0 };
		unsigned len = take(in, 1) % (HV_MESSAGE_PAYLOAD_MAX + 1);

		for (unsigned i = 0; i < len; i++)
			m[i] = take(in, 1);
		post(conn, m, len);
		break;
	}
	case 1: {
		uint32_t off = take(in, 3) % AREA_SIZE;
		unsigned n = take(in, 1);
		uint8_t *d = gp(AREA, AREA_SIZE);

		for (unsigned i = 0; i < n && off + i < AREA_SIZE; i++)
			d[off + i] = take(in, 1);
		break;
	}
	case 2:
		hv_hypercall_exec(v0, 0x5d | 1u << 16, take(in, 4), 0);
		break;
	case 3:
		eom();
		break;
	}
}

/* ---- seeds ---- */

/* the channel's GPADL: 8 pages, outbound ring in the first 4 */
#define RING_PAGES 8
#define SPLIT 4
#define OUT_SIZE ((SPLIT - 1) * PAGE)
#define DATA_GPA (AREA + 0x80000u)

struct prog {
	uint8_t b[8192];
	size_t n;
	uint32_t w;	  /* the outbound ring's write index */
	uint32_t relid;	  /* the channel the packets go to: 0 is 1 */
	uint64_t ring;	  /* its GPADL's first page: 0 is AREA */
	uint32_t gpadl;	  /* its GPADL's id: 0 is 0x1000 + the relid */
};

static inline uint32_t p_relid(const struct prog *p)
{
	return p->relid ? p->relid : 1;
}

static inline uint64_t p_ring(const struct prog *p)
{
	return p->ring ? p->ring : AREA;
}

static inline uint32_t p_gpadl(const struct prog *p)
{
	return p->gpadl ? p->gpadl : 0x1000 + p_relid(p);
}

static inline void pb(struct prog *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p->b[p->n++] = v >> (8 * i);
}

static inline void p_post(struct prog *p, const uint8_t *m, unsigned len)
{
	pb(p, 0, 1);
	pb(p, 1, 1);
	pb(p, len, 1);
	memcpy(p->b + p->n, m, len);
	p->n += len;
	pb(p, 3, 1);
}

static inline void p_write(struct prog *p, uint64_t gpa, const uint8_t *d, unsigned n)
{
	while (n) {
		unsigned k = n < 255 ? n : 255;

		pb(p, 1, 1);
		pb(p, gpa - AREA, 3);
		pb(p, k, 1);
		memcpy(p->b + p->n, d, k);
		p->n += k;
		gpa += k;
		d += k;
		n -= k;
	}
}

/* GPADL ID on the channel: PAGES pages from GPA, in one header message */
static inline void p_gpadl_create(struct prog *p, uint32_t id, uint64_t gpa, unsigned pages)
{
	uint8_t m[HV_MESSAGE_PAYLOAD_MAX] = { 8 };

	fz_put32(m + 8, p_relid(p));
	fz_put32(m + 12, id);
	fz_put16(m + 16, 8 + 8 * pages);
	fz_put16(m + 18, 1);
	fz_put32(m + 20, pages * PAGE);
	for (unsigned i = 0; i < pages; i++)
		fz_put64(m + 28 + 8 * i, gpa / PAGE + i);
	p_post(p, m, 28 + 8 * pages);
}

/* connect as Linux does at 5.3, ask for offers, make the GPADL, open */
static inline void p_open(struct prog *p)
{
	uint8_t m[HV_MESSAGE_PAYLOAD_MAX] = { 14 };

	fz_put32(m + 8, 5 << 16 | 3);
	m[16] = VMBUS_SINT;
	p_post(p, m, 40);
	memset(m, 0, sizeof(m));
	m[0] = 3;
	p_post(p, m, 8);
	p_gpadl_create(p, p_gpadl(p), p_ring(p), RING_PAGES);
	memset(m, 0, sizeof(m));
	m[0] = 5;
	fz_put32(m + 8, p_relid(p));
	fz_put32(m + 12, 0x77);
	fz_put32(m + 16, p_gpadl(p));
	fz_put32(m + 24, SPLIT);
	p_post(p, m, 148);
}

/* a packet into the outbound ring (descriptor, GPA ranges, data), the
 * write index moved past it, and the host signalled */
static inline void p_packet(struct prog *p, uint16_t type, const uint8_t *extra, uint32_t elen, const uint8_t *d,
			    uint32_t dlen)
{
	static uint8_t pkt[4096];
	uint32_t total = (16 + elen + dlen + 7) & ~7u;

	memset(pkt, 0, sizeof(pkt));
	pkt[0] = type;
	pkt[2] = (16 + elen) / 8;
	fz_put16(pkt + 4, total / 8);
	pkt[6] = 1;
	fz_put64(pkt + 8, p->w + 1);
	memcpy(pkt + 16, extra, elen);
	memcpy(pkt + 16 + elen, d, dlen);
	fz_put64(pkt + total, (uint64_t)p->w << 32);
	/* the seeds' packets never wrap */
	p_write(p, p_ring(p) + PAGE + p->w, pkt, total + 8);
	p->w = (p->w + total + 8) % OUT_SIZE;
	fz_put32(pkt, p->w);
	p_write(p, p_ring(p), pkt, 4);
	pb(p, 2, 1);
	pb(p, 0x100 + p_relid(p), 4);
	pb(p, 3, 1);
}

/* a netvsc NVSP message (type and three u32s) in an in-band packet */
static inline void p_nvsp(struct prog *p, uint32_t type, uint32_t a, uint32_t b, uint32_t c)
{
	uint8_t nv[40] = { 0 };

	fz_put32(nv, type);
	fz_put32(nv + 4, a);
	fz_put32(nv + 8, b);
	fz_put32(nv + 12, c);
	p_packet(p, 6, nv, 0, nv, sizeof(nv));
}

#endif
