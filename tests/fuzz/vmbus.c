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
 * 0 to 3 those of hyperv.h (post, write, signal, eom), and
 *
 *   4 tick    one second of the integration services (heartbeat, time
 *             samples, KVP enumerations)
 *
 * Every input starts from an UNLOAD on both connection ids, with that
 * megabyte and the SynIC pages zeroed. */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hyperv.h"

#define IMG_SIZE (1u << 20)

static int img;
static struct hv_util *util;

static void fuzz_init(void)
{
	char path[64];
	struct vmbus *vb;

	hvf_init();
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };
	struct stat st;

	hvf_reset();
	while (in.n) {
		unsigned op = take(&in, 1) % 5;

		if (op == 4)
			hv_util_tick(util);
		else
			hvf_op(&in, op);
	}
	if (fstat(img, &st) < 0 || st.st_size != IMG_SIZE)
		abort();
	return 0;
}

/* ---- seeds: a guest that connects, opens the disk and sends requests ---- */

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
