/* VMBus, storvsc and the integration services as a hostile Hyper-V guest
 * drives them: channel messages through the HvPostMessage hypercall,
 * GPADLs, ring indices and packets in guest RAM, HvSignalEvent, the SynIC
 * message slot taken with EOM, IC answers. The partition is the real one
 * (PERSONALITY_HYPERV) with one storvsc disk on a 1 MiB memfd, relid 1
 * (its image must keep its size), and the shutdown, heartbeat, time sync
 * and KVP channels, relids 2 to 5, without their thread: the input ticks
 * their clock.
 *
 * Input: operations, each an opcode byte and operands (little-endian):
 *
 *   0 post    conn:1 len:1 bytes:len  a message on connection id 4 (conn
 *                                     odd) or 1, at most 240 bytes
 *   1 write   off:3 n:1 bytes:n       into the 1 MiB at 1 MiB: where the
 *                                     seeds put ring pages and buffers
 *   2 signal  conn:4                  HvSignalEvent
 *   3 eom     take every message in the slot
 *   4 tick    one second of the integration services (heartbeat, time
 *             samples, KVP enumerations)
 *
 * Every input starts from an UNLOAD on both connection ids, with that
 * megabyte and the SynIC pages zeroed. */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dev/hyperv/hyperv.h"
#include "dev/hyperv/vmbus.h"
#include "vm/vm.h"
#include "fuzz.h"
#include "testvm.h"

#define RAM_SIZE (16u << 20)
#define PAGE 4096u
#define IMG_SIZE (1u << 20)
#define AREA 0x100000u
#define AREA_SIZE 0x100000u
#define SIMP_GPA 0xf00000u
#define SIEFP_GPA 0xf01000u
#define HC_INPUT_GPA 0xf02000u
#define VMBUS_SINT 2

static struct vm vm;
static struct vcpu *v0;
static int img;
static struct hv_util *util;

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
	char path[64];
	struct vmbus *vb;

	if (vm_create(&vm, RAM_SIZE, 1, &stub_engine, PERSONALITY_HYPERV) < 0)
		abort();
	v0 = vm.vcpu[0];
	hv_msr_write(v0, 0x40000083, SIMP_GPA | 1);
	hv_msr_write(v0, 0x40000082, SIEFP_GPA | 1);
	hv_msr_write(v0, 0x40000090 + VMBUS_SINT, 0xf3);
	hv_msr_write(v0, 0x40000080, 1);
	img = memfd_create("disk", 0);
	if (img < 0 || ftruncate(img, IMG_SIZE) < 0)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", img);
	vb = vmbus_create(&vm);
	if (!vb || !storvsc_create(vb, path, false))
		abort();
	util = hv_util_create(vb, &vm, 0);
	if (!util)
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
	struct in in = { data, size };
	struct stat st;

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
		case 4:
			hv_util_tick(util);
			break;
		}
	}
	if (fstat(img, &st) < 0 || st.st_size != IMG_SIZE)
		abort();
	return 0;
}

/* ---- seeds: a guest that connects, opens the disk and sends requests ---- */

/* the channel's GPADL: 8 pages at AREA, outbound ring in the first 4 */
#define RING_PAGES 8
#define SPLIT 4
#define OUT_SIZE ((SPLIT - 1) * PAGE)
#define DATA_GPA (AREA + 0x80000u)

struct prog {
	uint8_t b[8192];
	size_t n;
	uint32_t w;	  /* the outbound ring's write index */
	uint32_t relid;	  /* the channel the packets go to: 0 is the disk's, 1 */
	uint64_t ring;	  /* its GPADL's first page: 0 is AREA */
};

static uint32_t p_relid(const struct prog *p)
{
	return p->relid ? p->relid : 1;
}

static uint64_t p_ring(const struct prog *p)
{
	return p->ring ? p->ring : AREA;
}

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

/* connect as Linux does at 5.3, ask for offers, make the GPADL, open */
static void p_open(struct prog *p)
{
	uint32_t gpadl = 0x1000 + p_relid(p);

	uint8_t m[HV_MESSAGE_PAYLOAD_MAX] = { 14 };

	fz_put32(m + 8, 5 << 16 | 3);
	m[16] = VMBUS_SINT;
	p_post(p, m, 40);
	memset(m, 0, sizeof(m));
	m[0] = 3;
	p_post(p, m, 8);
	memset(m, 0, sizeof(m));
	m[0] = 8;
	fz_put32(m + 8, p_relid(p));
	fz_put32(m + 12, gpadl);
	fz_put16(m + 16, 8 + 8 * RING_PAGES);
	fz_put16(m + 18, 1);
	fz_put32(m + 20, RING_PAGES * PAGE);
	for (unsigned i = 0; i < RING_PAGES; i++)
		fz_put64(m + 28 + 8 * i, p_ring(p) / PAGE + i);
	p_post(p, m, 28 + 8 * RING_PAGES);
	memset(m, 0, sizeof(m));
	m[0] = 5;
	fz_put32(m + 8, p_relid(p));
	fz_put32(m + 12, 0x77);
	fz_put32(m + 16, gpadl);
	fz_put32(m + 24, SPLIT);
	p_post(p, m, 148);
}

/* a packet into the outbound ring (descriptor, GPA ranges, data), the
 * write index moved past it, and the host signalled */
static void p_packet(struct prog *p, uint16_t type, const uint8_t *extra, uint32_t elen, const uint8_t *d,
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

/* a vstor packet: op, and for EXECUTE_SRB a CDB on len bytes at DATA_GPA */
static void p_vstor(struct prog *p, uint32_t op, const uint8_t *cdb, unsigned cdb_len, uint32_t len, bool in)
{
	uint8_t v[64] = { 0 }, extra[48] = { 0 };
	unsigned pages = (len + PAGE - 1) / PAGE;

	fz_put32(v, op);
	fz_put32(v + 4, 1);
	if (op == 9) {
		v[12] = cdb[0];
		v[13] = cdb[1];
	}
	if (op == 3) {
		v[12] = 52;
		v[20] = cdb_len;
		v[21] = 20;
		v[22] = in;
		fz_put32(v + 24, len);
		memcpy(v + 28, cdb, cdb_len);
	}
	if (!len) {
		p_packet(p, 6, extra, 0, v, sizeof(v));
		return;
	}
	fz_put32(extra + 4, 1);
	fz_put32(extra + 8, len);
	for (unsigned i = 0; i < pages; i++)
		fz_put64(extra + 16 + 8 * i, DATA_GPA / PAGE + i);
	p_packet(p, 9, extra, 16 + 8 * pages, v, sizeof(v));
}

static void p_init(struct prog *p)
{
	static const uint8_t win10[2] = { 0x02, 0x06 };

	p_open(p);
	p_vstor(p, 7, NULL, 0, 0, false);
	p_vstor(p, 9, win10, 2, 0, false);
	p_vstor(p, 10, NULL, 0, 0, false);
	p_vstor(p, 8, NULL, 0, 0, false);
}

static void scsi_seed(const char *name, const uint8_t *cdb, unsigned cdb_len, uint32_t len, bool in)
{
	struct prog p = { .n = 0 };

	p_init(&p);
	p_vstor(&p, 3, cdb, cdb_len, len, in);
	fuzz_seed(name, p.b, p.n);
}

/* ---- integration services: the guest's answers ---- */

/* an IC answer: pipe header, icmsg header (type, status, RESPONSE), body */
static void p_ic(struct prog *p, uint16_t type, uint32_t status, const uint8_t *body, uint32_t len)
{
	static uint8_t m[28 + 2580];

	memset(m, 0, sizeof(m));
	fz_put32(m + 4, 20 + len);
	fz_put32(m + 8, 3);
	fz_put16(m + 12, type);
	fz_put32(m + 14, 3);
	fz_put16(m + 18, (uint16_t)len);
	fz_put32(m + 20, status);
	m[25] = 1 | 4;
	memcpy(m + 28, body, len);
	p_packet(p, 6, m, 0, m, 28 + len);
}

/* the negotiation answer: framework 3.0 and service major.0 */
static void p_agree(struct prog *p, uint16_t major)
{
	uint8_t b[16] = { 1, 0, 1, 0 };

	fz_put32(b + 8, 3);
	fz_put32(b + 12, major);
	p_ic(p, 0, 0, b, sizeof(b));
}

static void ic_seed(const char *name, uint32_t relid, uint16_t major, uint16_t type, const uint8_t *body,
		    uint32_t len, unsigned ticks)
{
	struct prog p = { .n = 0, .relid = relid, .ring = AREA + 0x10000u * relid };

	p_open(&p);
	p_agree(&p, major);
	for (unsigned i = 0; i < ticks; i++) {
		pb(&p, 4, 1);
		pb(&p, 3, 1);
	}
	if (body)
		p_ic(&p, type, 0, body, len);
	fuzz_seed(name, p.b, p.n);
}

static void ic_seeds(void)
{
	static uint8_t kvp[2580], beat[40], sample[24];
	static const uint8_t key[] = { 'N', 0, 'a', 0, 'm', 0, 'e', 0, 0, 0 }, value[] = { 'v', 0, 0xe0, 0, 0, 0 };

	kvp[0] = 3;
	kvp[1] = 2;
	fz_put32(kvp + 8, 1);
	fz_put32(kvp + 12, sizeof(key));
	fz_put32(kvp + 16, sizeof(value));
	memcpy(kvp + 20, key, sizeof(key));
	memcpy(kvp + 20 + 512, value, sizeof(value));
	beat[0] = 3;
	sample[16] = 2;
	ic_seed("ic-shutdown", 2, 3, 3, NULL, 0, 0);
	ic_seed("ic-heartbeat", 3, 3, 1, beat, sizeof(beat), 1);
	ic_seed("ic-timesync", 4, 4, 4, sample, sizeof(sample), 5);
	ic_seed("ic-kvp", 5, 4, 2, kvp, sizeof(kvp), 0);
}

static void fuzz_seeds(void)
{
	static const uint8_t inquiry[6] = { 0x12, 0, 0, 0, 36 };
	static const uint8_t tur[6] = { 0 };
	static const uint8_t capacity[10] = { 0x25 };
	static const uint8_t read10[10] = { 0x28, 0, 0, 0, 0, 8, 0, 0, 2 };
	static const uint8_t write10[10] = { 0x2a, 0, 0, 0, 0x07, 0xfe, 0, 0, 2 };
	static const uint8_t read16[16] = { 0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8 };
	static const uint8_t sense[6] = { 0x03, 0, 0, 0, 18 };
	static const uint8_t modesense[6] = { 0x1a, 0, 0x3f, 0, 192 };
	static const uint8_t vpd[6] = { 0x12, 1, 0x83, 0, 255 };
	struct prog p = { .n = 0 };

	p_open(&p);
	fuzz_seed("open", p.b, p.n);
	p.n = 0;
	p_init(&p);
	fuzz_seed("storvsc-init", p.b, p.n);
	scsi_seed("inquiry", inquiry, 6, 36, true);
	scsi_seed("test-unit-ready", tur, 6, 0, false);
	scsi_seed("read-capacity", capacity, 10, 8, true);
	scsi_seed("read10", read10, 10, 4096, true);
	scsi_seed("write10-last", write10, 10, 1024, false);
	scsi_seed("read16", read16, 16, 4096, true);
	scsi_seed("request-sense", sense, 6, 18, true);
	scsi_seed("mode-sense", modesense, 6, 192, true);
	scsi_seed("inquiry-vpd", vpd, 6, 255, true);
	ic_seeds();
}
