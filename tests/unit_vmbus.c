/* VMBus host and storvsc driven directly, the test playing the Linux guest
 * (drivers/hv, drivers/scsi/storvsc_drv.c): version negotiation, offers,
 * GPADLs over several messages on scattered pages, open/close, ring
 * packets both ways with wrap-around, interrupt masking and flow control,
 * the EOM queue, unload and rescind, SCSI commands on an image, the
 * shutdown, heartbeat, time sync and KVP services (and IC answers that
 * break the framing); then a
 * hostile guest: short and unknown messages, bad relids, GPADLs outside
 * RAM or with too many PFNs, corrupt ring indices and packet lengths. Each
 * must be refused without a crash and without touching guest memory. The
 * partition is the real one (--personality hyperv): messages go through
 * HvPostMessage and HvSignalEvent hypercalls, replies land in the SynIC
 * message page and event flags of vCPU 0, freed with EOM as Linux does. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dev/hyperv/hyperv.h"
#include "dev/hyperv/vmbus.h"
#include "vm/vm.h"
#include "tap.h"
#include "testvm.h"
#include "vmbus_guest.h"
#include "snap_hooks.h"

#define RAM_SIZE (16u << 20)
#define IMG_SIZE (1u << 20)

static char img_path[] = "/tmp/accord-unit-vmbus-XXXXXX";
static char ro_path[] = "/tmp/accord-unit-vmbus-ro-XXXXXX";
static int img_fd;
static uint8_t *snapshot;

/* guest RAM as in the snapshot, apart from the SynIC and hypercall pages
 * the exchange itself uses */
static bool ram_same(void)
{
	return !memcmp(snapshot, vm.ram, SIMP_GPA) &&
	       !memcmp(snapshot + HC_INPUT_GPA + PAGE, vm.ram + HC_INPUT_GPA + PAGE, RAM_SIZE - HC_INPUT_GPA - PAGE);
}

/* ---- storvsc requests ---- */

#define DATA_GPA 0x800000u

struct srb_result {
	uint32_t op, status;
	uint8_t srb_status, scsi_status, sense_len, sense_key, asc;
	uint32_t xfer;
	uint64_t trans;
	bool got;
};

static uint64_t next_trans = 1;

/* send a vstor packet (with a GPA_DIRECT range of len bytes at gpa when
 * len is not 0), signal, and read the completion */
static struct srb_result vstor(struct gchan *c, uint32_t op, const uint8_t *cdb, unsigned cdb_len, uint64_t gpa,
			       uint32_t len, uint8_t target, uint8_t path)
{
	uint8_t v[64] = { 0 }, extra[8 + 8 + 8 * 140] = { 0 }, buf[256];
	struct srb_result res = { 0 };
	uint32_t elen = 0, n;

	vmbus_put32(v, op);
	vmbus_put32(v + 4, 1);
	if (op == 9) {
		v[12] = cdb[0];
		v[13] = cdb[1];
	}
	if (op == 3) {
		v[12] = 52;
		v[17] = path;
		v[18] = target;
		v[20] = cdb_len;
		v[21] = 20;
		v[22] = 1;
		vmbus_put32(v + 24, len);
		memcpy(v + 28, cdb, cdb_len);
	}
	if (len) {
		unsigned pages = (gpa % PAGE + len + PAGE - 1) / PAGE;

		vmbus_put32(extra + 4, 1);
		vmbus_put32(extra + 8, len);
		vmbus_put32(extra + 12, gpa % PAGE);
		for (unsigned i = 0; i < pages; i++)
			vmbus_put64(extra + 16 + 8 * i, gpa / PAGE + i);
		elen = 16 + 8 * pages;
	}
	res.trans = next_trans++;
	if (!guest_send(c, len ? 9 : 6, res.trans, extra, elen, v, 64))
		return res;
	signal_host(c);
	n = guest_recv(c, buf, sizeof(buf));
	if (n < 16 + 64 || buf[0] != 11)
		return res;
	memcpy(&res.trans, buf + 8, 8);
	res.got = true;
	res.op = vmbus_get32(buf + 16);
	res.status = vmbus_get32(buf + 24);
	res.srb_status = buf[16 + 14];
	res.scsi_status = buf[16 + 15];
	res.sense_len = buf[16 + 21];
	res.xfer = vmbus_get32(buf + 16 + 24);
	res.sense_key = buf[16 + 28 + 2];
	res.asc = buf[16 + 28 + 12];
	return res;
}

static struct srb_result scsi(struct gchan *c, const uint8_t *cdb, unsigned cdb_len, uint64_t gpa, uint32_t len)
{
	return vstor(c, 3, cdb, cdb_len, gpa, len, 0, 0);
}

/* ---- the tests ---- */

static struct gchan ch1, ch2;
static struct vmbus *vb;

static void test_versions(void)
{
	uint8_t m[40] = { 0 };
	const uint8_t *r;
	uint32_t len;
	static const struct {
		uint32_t version, conn;
		bool ok;
		const char *what;
	} cases[] = {
		{ 6 << 16, 4, false, "unknown version 6.0" },
		{ 1 << 16 | 1, 1, false, "Windows 7's 1.1 (interrupt page model)" },
		{ 0x12345678, 1, false, "garbage version" },
		{ 5 << 16 | 3, 1, false, "5.3 on the pre-5.0 connection id 1" },
		{ 2 << 16 | 4, 1, true, "2.4 (Windows 8)" },
		{ 3 << 16, 1, true, "3.0" },
		{ 4 << 16, 1, true, "4.0" },
		{ 4 << 16 | 1, 1, true, "4.1" },
		{ 5 << 16, 4, true, "5.0" },
		{ 5 << 16 | 1, 4, true, "5.1" },
		{ 5 << 16 | 2, 4, true, "5.2" },
		{ 5 << 16 | 3, 4, true, "5.3" },
	};

	vmbus_put32(m, 3);
	post(4, m, 8);
	ok(pending_msgs() == 0, "REQUESTOFFERS before INITIATE_CONTACT gets no answer");
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(m, 0, sizeof(m));
		vmbus_put32(m + 8, cases[i].version);
		vmbus_put32(m + 12, 0);
		m[16] = 2;
		post_type(cases[i].conn, 14, m, 40);
		r = next_msg(&len);
		bool good = r && vmbus_get32(r) == 15 && len >= 16 && r[8] == cases[i].ok &&
			    (!cases[i].ok || vmbus_get32(r + 12) == cases[i].conn);
		ok(good, "INITIATE_CONTACT %s: VERSION_RESPONSE %s", cases[i].what,
		   cases[i].ok ? "accepts it" : "refuses it");
	}
	memset(m, 0, sizeof(m));
	vmbus_put32(m + 8, 5 << 16 | 3);
	vmbus_put32(m + 12, 9);
	m[16] = 2;
	post_type(4, 14, m, 40);
	ok(pending_msgs() == 0, "INITIATE_CONTACT naming a VP that does not exist is ignored");
	memset(m, 0, sizeof(m));
	vmbus_put32(m + 8, 5 << 16 | 3);
	m[16] = 2;
	post_type(4, 14, m, 40);
	r = next_msg(&len);
	ok(r && r[8] == 1, "reconnected at 5.3");
	vmbus_put32(m, 3);
	ok(post(1, m, 8) == HV_STATUS_SUCCESS && pending_msgs() == 0,
	   "after 5.x, messages on connection id 1 are not served");
	ok(post(9, m, 8) == HV_STATUS_INVALID_CONNECTION_ID, "HvPostMessage on an unknown connection id fails");
	ok(post_msg(4, 2, m, 8) == HV_STATUS_INVALID_PARAMETER,
	   "HvPostMessage with a message type other than VMBus's fails");
}

static void test_offers(void)
{
	static const uint8_t scsi_guid[16] = { 0xd9, 0x63, 0x61, 0xba, 0xa1, 0x04, 0x29, 0x4d,
					       0xb6, 0x05, 0x72, 0xe2, 0xff, 0xb1, 0xdc, 0x7f };
	uint8_t m[8];
	const uint8_t *r;
	uint32_t len;
	unsigned offers = 0;
	bool good = true;

	post_type(4, 3, m, 8);
	while ((r = next_msg(&len)) && vmbus_get32(r) == 1) {
		offers++;
		good = good && len == 196 && !memcmp(r + 8, scsi_guid, 16) && vmbus_get32(r + 184) == offers &&
		       !(r[189] & 1) && vmbus_get32(r + 192) == 0x100 + offers;
	}
	ok(offers == 2 && good, "REQUESTOFFERS: two storvsc offers, relids 1 and 2, no monitor, own connection ids");
	ok(r && vmbus_get32(r) == 4 && pending_msgs() == 0, "then ALLOFFERS_DELIVERED");
}

static void test_malformed(void)
{
	uint8_t m[HV_MESSAGE_PAYLOAD_MAX] = { 0 };
	uint64_t pfn[40];
	uint32_t status, len;
	const uint8_t *r;
	long mark = err_mark();

	memcpy(snapshot, vm.ram, RAM_SIZE);
	post(4, m, 4);
	ok(pending_msgs() == 0 && err_since(mark, "bytes"), "a 4-byte message: no answer, one line on stderr");
	mark = err_mark();
	post_type(4, 99, m, 16);
	ok(pending_msgs() == 0 && err_since(mark, "type 99"), "message type 99: no answer, named on stderr");
	post_type(4, 5, m, 12);
	ok(pending_msgs() == 0, "a short OPENCHANNEL: no answer");
	vmbus_put32(m + 8, 7);
	vmbus_put32(m + 24, 2);
	post_type(4, 5, m, 148);
	r = next_msg(&len);
	ok(r && vmbus_get32(r) == 6 && vmbus_get32(r + 16) != 0, "OPENCHANNEL for relid 7 (none): refused");
	for (unsigned i = 0; i < 40; i++)
		pfn[i] = 0x200 + i;
	pfn[30] = (RAM_SIZE / PAGE) + 5;
	make_gpadl(1, 0x50, pfn, 40, &status);
	ok(status != 0 && status != ~0u, "a GPADL with a PFN past the end of RAM: GPADL_CREATED refuses it");
	pfn[30] = 0xfffffffffffffull;
	make_gpadl(1, 0x51, pfn, 40, &status);
	ok(status != 0 && status != ~0u, "a GPADL with a 52-bit PFN: refused");
	pfn[30] = 0x200;
	make_gpadl(9, 0x52, pfn, 4, &status);
	ok(status != 0 && status != ~0u, "a GPADL for an unknown relid: refused");
	memset(m, 0, sizeof(m));
	vmbus_put32(m + 12, 0x99);
	post_type(4, 9, m, 32);
	ok(pending_msgs() == 0, "GPADL_BODY for an unknown GPADL: ignored");
	/* a header announcing one PFN and carrying three */
	memset(m, 0, sizeof(m));
	vmbus_put32(m + 8, 1);
	vmbus_put32(m + 12, 0x53);
	m[16] = 16;
	m[18] = 1;
	vmbus_put32(m + 20, PAGE);
	for (int i = 0; i < 3; i++)
		vmbus_put64(m + 28 + 8 * i, 0x200 + i);
	post_type(4, 8, m, 28 + 24);
	r = next_msg(&len);
	ok(r && vmbus_get32(r) == 10 && vmbus_get32(r + 12) == 0x53 && vmbus_get32(r + 16) != 0,
	   "a GPADL header carrying more PFNs than its ranges need: refused");
	/* a header for 2 PFNs carrying 1, followed by a body carrying 5 */
	memset(m, 0, sizeof(m));
	vmbus_put32(m + 8, 1);
	vmbus_put32(m + 12, 0x54);
	m[16] = 8 + 16;
	m[18] = 1;
	vmbus_put32(m + 20, 2 * PAGE);
	vmbus_put64(m + 28, 0x200);
	post_type(4, 8, m, 36);
	ok(pending_msgs() == 0, "a GPADL header without its PFNs waits for the body");
	memset(m, 0, sizeof(m));
	vmbus_put32(m + 12, 0x54);
	for (int i = 0; i < 5; i++)
		vmbus_put64(m + 16 + 8 * i, 0x200 + i);
	post_type(4, 9, m, 16 + 40);
	r = next_msg(&len);
	ok(r && vmbus_get32(r) == 10 && vmbus_get32(r + 12) == 0x54 && vmbus_get32(r + 16) != 0,
	   "a GPADL body with more PFNs than the header announced: refused");
	mark = err_mark();
	vmbus_put32(m + 8, 1);
	vmbus_put32(m + 12, 0x54);
	post_type(4, 11, m, 16);
	ok(pending_msgs() == 0 && err_since(mark, "unknown GPADL"), "teardown of a refused GPADL: ignored");
	ok(ram_same(), "guest RAM is untouched by all of the above");
}

static void test_open(void)
{
	uint32_t status;
	int n;

	setup_chan(&ch1, 1, 0x101, 0x1000, 0x100, 64, 32);
	n = make_gpadl(1, ch1.gpadl, ch1.pfn, ch1.npages, &status);
	ok(n == 3 && status == 0, "a 64-page GPADL on scattered pages in 3 messages: created (status %#x)", status);
	make_gpadl(1, ch1.gpadl, ch1.pfn, 4, &status);
	ok(status != 0, "a second GPADL with the same id: refused");
	ch1.split = 1;
	ok(open_channel(&ch1, 0) != 0, "OPENCHANNEL with a 1-page outbound ring: refused");
	ch1.split = 0xfffffff0u;
	ok(open_channel(&ch1, 0) != 0, "OPENCHANNEL with the ring split past the GPADL: refused");
	{
		struct gchan small;
		uint32_t st;

		setup_chan(&small, 1, 0x101, 0x1001, 0x180, 1, 1);
		make_gpadl(1, small.gpadl, small.pfn, 1, &st);
		small.split = 2;
		ok(st == 0 && open_channel(&small, 0) != 0, "OPENCHANNEL on a 1-page GPADL: refused");
	}
	ch1.split = 32;
	ok(open_channel(&ch1, 5) != 0, "OPENCHANNEL with target VP 5 (1 vCPU): refused");
	ok(open_channel(&ch1, 0) == 0, "OPENCHANNEL: opened");
	ok(open_channel(&ch1, 0) != 0, "OPENCHANNEL again while open: refused");
	ok(*ring_field(&ch1, true, 8) == 0, "the host leaves its receive ring unmasked");
}

static void test_storvsc_init(void)
{
	uint8_t ver[2];
	struct srb_result r;

	event_flag(1);
	r = vstor(&ch1, 7, NULL, 0, 0, 0, 0, 0);
	ok(r.got && r.op == 1 && r.status == 0 && r.trans == next_trans - 1,
	   "BEGIN_INITIALIZATION: COMPLETE_IO, status 0, same transaction id");
	ok(event_flag(1),
	   "the completion raised event flag 1 (the relid) in SINT 2");
	ver[0] = 0x02, ver[1] = 0x06;
	r = vstor(&ch1, 9, ver, 2, 0, 0, 0, 0);
	ok(r.got && r.status == 0, "QUERY_PROTOCOL_VERSION 6.2 (Windows 10): accepted");
	ver[0] = 0x02, ver[1] = 0x04;
	r = vstor(&ch1, 9, ver, 2, 0, 0, 0, 0);
	ok(r.got && r.op == 1 && r.status != 0, "QUERY_PROTOCOL_VERSION 4.2 (Windows 7): refused");
	r = vstor(&ch1, 10, NULL, 0, 0, 0, 0, 0);
	ok(r.got && r.status == 0, "QUERY_PROPERTIES");
	r = vstor(&ch1, 8, NULL, 0, 0, 0, 0, 0);
	ok(r.got && r.status == 0, "END_INITIALIZATION");
	r = vstor(&ch1, 42, NULL, 0, 0, 0, 0, 0);
	ok(r.got && r.status != 0, "an unknown vstor operation completes with an error status");
}

static void test_scsi(void)
{
	uint8_t cdb[16], *buf = gp(DATA_GPA), pattern[4096], back[4096];
	struct srb_result r;

	memset(cdb, 0, 16);
	cdb[0] = 0x12;
	cdb[4] = 96;
	r = scsi(&ch1, cdb, 6, DATA_GPA, 96);
	ok(r.got && r.srb_status == 1 && r.xfer == 36 && buf[2] == 5 && !memcmp(buf + 8, "accord", 6),
	   "INQUIRY: 36 bytes, SPC-3, vendor accord");
	cdb[1] = 1;
	cdb[2] = 0xb0;
	r = scsi(&ch1, cdb, 6, DATA_GPA, 96);
	ok(r.got && r.srb_status == 1 && buf[1] == 0xb0 && r.xfer == 64, "INQUIRY VPD 0xb0 (block limits)");
	cdb[2] = 0x42;
	r = scsi(&ch1, cdb, 6, DATA_GPA, 96);
	ok(r.got && r.scsi_status == 2 && r.srb_status == 0x84 && r.sense_key == 5 && r.asc == 0x24,
	   "INQUIRY of VPD page 0x42: CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN CDB");
	memset(cdb, 0, 16);
	cdb[0] = 0x9e;
	cdb[1] = 0x10;
	cdb[13] = 32;
	r = scsi(&ch1, cdb, 16, DATA_GPA, 32);
	uint64_t last = 0;
	for (int i = 0; i < 8; i++)
		last = last << 8 | buf[i];
	ok(r.got && r.srb_status == 1 && last == IMG_SIZE / 512 - 1 && buf[10] == 2 && (buf[14] & 0x80),
	   "READ CAPACITY (16): last LBA %llu, 512-byte blocks, LBPME", (unsigned long long)last);
	memset(cdb, 0, 16);
	cdb[0] = 0x25;
	r = scsi(&ch1, cdb, 10, DATA_GPA, 8);
	ok(r.got && r.xfer == 8 && buf[3] == (IMG_SIZE / 512 - 1) % 256 && buf[6] == 2, "READ CAPACITY (10)");

	/* WRITE (10) of 8 blocks from a buffer at offset 0x200 of one page
	 * and the start of the next */
	for (int i = 0; i < 4096; i++)
		pattern[i] = i * 7 + 3;
	memcpy(gp(DATA_GPA + 0x200), pattern, 4096);
	memset(cdb, 0, 16);
	cdb[0] = 0x2a;
	cdb[5] = 16;
	cdb[8] = 8;
	r = scsi(&ch1, cdb, 10, DATA_GPA + 0x200, 4096);
	ok(r.got && r.srb_status == 1 && r.scsi_status == 0 && r.xfer == 4096, "WRITE (10) of 8 blocks at LBA 16");
	ok(pread(img_fd, back, 4096, 16 * 512) == 4096 && !memcmp(back, pattern, 4096),
	   "the image holds the written blocks");
	memset(gp(DATA_GPA + 0x10000), 0, 8192);
	cdb[0] = 0x88;
	memset(cdb + 1, 0, 15);
	cdb[9] = 16;
	cdb[13] = 8;
	r = scsi(&ch1, cdb, 16, DATA_GPA + 0x10000 + 0x100, 4096);
	ok(r.got && r.srb_status == 1 && !memcmp(gp(DATA_GPA + 0x10100), pattern, 4096),
	   "READ (16) reads them back into another misaligned buffer");
	memset(cdb, 0, 16);
	cdb[0] = 0x35;
	r = scsi(&ch1, cdb, 10, 0, 0);
	ok(r.got && r.srb_status == 1 && r.scsi_status == 0, "SYNCHRONIZE CACHE (10)");
	memset(cdb, 0, 16);
	cdb[0] = 0x28;
	vmbus_put32(cdb + 2, __builtin_bswap32(IMG_SIZE / 512 - 4));
	cdb[8] = 8;
	r = scsi(&ch1, cdb, 10, DATA_GPA, 4096);
	ok(r.got && r.scsi_status == 2 && r.sense_key == 5 && r.asc == 0x21 && r.xfer == 0 && r.sense_len == 18,
	   "READ (10) past the end: LOGICAL BLOCK ADDRESS OUT OF RANGE");
	memset(cdb, 0, 16);
	cdb[0] = 0x28;
	cdb[8] = 16;
	r = scsi(&ch1, cdb, 10, DATA_GPA, 4096);
	ok(r.got && r.scsi_status == 2 && r.sense_key == 5, "READ (10) of 16 blocks into a 4 KiB buffer: refused");
	memset(cdb, 0, 16);
	cdb[0] = 0xc7;
	r = scsi(&ch1, cdb, 10, 0, 0);
	ok(r.got && r.scsi_status == 2 && r.sense_key == 5 && r.asc == 0x20,
	   "opcode 0xc7: INVALID COMMAND OPERATION CODE");
	memset(cdb, 0, 16);
	cdb[0] = 0x12;
	cdb[4] = 36;
	r = vstor(&ch1, 3, cdb, 6, DATA_GPA, 36, 1, 0);
	ok(r.got && r.srb_status == 1 && r.xfer == 36 && buf[0] == 0x7f,
	   "INQUIRY to target 1: peripheral qualifier 3, no unit");
	memset(cdb, 0, 16);
	cdb[0] = 0xa0;
	cdb[9] = 16;
	r = vstor(&ch1, 3, cdb, 12, DATA_GPA, 16, 1, 0);
	ok(r.got && r.srb_status == 1 && r.xfer == 8 && buf[3] == 0, "REPORT LUNS to target 1: no LUNs");
	cdb[0] = 0x25;
	r = vstor(&ch1, 3, cdb, 10, DATA_GPA, 8, 1, 0);
	ok(r.got && r.srb_status == 0x20, "READ CAPACITY to target 1: SRB_STATUS_INVALID_LUN");
	memset(cdb, 0, 16);
	cdb[0] = 0x12;
	cdb[4] = 36;
	r = vstor(&ch1, 3, cdb, 6, DATA_GPA, 36, 0, 3);
	ok(r.got && r.srb_status == 1 && buf[0] == 0x7f, "INQUIRY to channel 3, target 0: no unit either");
	memset(cdb, 0, 16);
	cdb[0] = 0xa0;
	cdb[9] = 16;
	r = scsi(&ch1, cdb, 12, DATA_GPA, 16);
	ok(r.got && r.xfer == 16 && buf[3] == 8 && buf[8] == 0 && buf[9] == 0, "REPORT LUNS: LUN 0 alone");
	memset(cdb, 0, 16);
	cdb[0] = 0x1a;
	cdb[2] = 0x08;
	cdb[4] = 64;
	r = scsi(&ch1, cdb, 6, DATA_GPA, 64);
	ok(r.got && r.xfer == 24 && buf[4] == 0x08 && (buf[6] & 0x04) && !(buf[2] & 0x80),
	   "MODE SENSE (6), caching page: write cache enabled, not write-protected");
	/* UNMAP the 8 blocks written above */
	memset(buf, 0, 24);
	buf[1] = 22;
	buf[3] = 16;
	buf[15] = 16;
	buf[19] = 8;
	memset(cdb, 0, 16);
	cdb[0] = 0x42;
	cdb[8] = 24;
	r = scsi(&ch1, cdb, 10, DATA_GPA, 24);
	memset(pattern, 0, sizeof(pattern));
	ok(r.got && r.srb_status == 1 && pread(img_fd, back, 4096, 16 * 512) == 4096 && !memcmp(back, pattern, 4096),
	   "UNMAP of those blocks: they read back as zeros");
	buf[19] = 0;
	buf[18] = 0x10;
	buf[8 + 7] = 0xff;
	buf[8 + 6] = 0xff;
	r = scsi(&ch1, cdb, 10, DATA_GPA, 24);
	ok(r.got && r.scsi_status == 2 && r.asc == 0x21, "UNMAP past the end: refused");
}

/* many small requests: the indices of both rings wrap several times, and
 * packets straddle the end of the data area */
static void test_wrap(void)
{
	uint8_t cdb[16] = { 0 };
	uint32_t size = ring_size(&ch1, true), wraps = 0, prev = *ring_field(&ch1, true, 0);
	bool good = true;

	for (int i = 0; i < 4000 && good; i++) {
		struct srb_result r = scsi(&ch1, cdb, 6, 0, 0);

		good = r.got && r.trans == next_trans - 1 && r.srb_status == 1;
		if (*ring_field(&ch1, true, 0) < prev)
			wraps++;
		prev = *ring_field(&ch1, true, 0);
	}
	ok(good && wraps >= 2, "4000 TEST UNIT READY round trips, indices wrapped %u times in a %u-byte ring", wraps,
	   size);
	ok(*ring_field(&ch1, true, 4) == *ring_field(&ch1, true, 0), "the host consumed every request");
}

static void test_masking(void)
{
	uint8_t v[64] = { 0 }, buf[256];
	int sent = 0, got = 0;

	vmbus_put32(v, 3);
	v[20] = 6;
	/* the guest masks its receive ring: completions arrive without events */
	*ring_field(&ch1, false, 8) = 1;
	event_flag(1);
	guest_send(&ch1, 6, 1000, NULL, 0, v, 64);
	signal_host(&ch1);
	ok(!event_flag(1) && guest_recv(&ch1, buf, sizeof(buf)) == 80,
	   "with interrupt_mask set the completion comes without an event");
	*ring_field(&ch1, false, 8) = 0;
	guest_send(&ch1, 6, 1001, NULL, 0, v, 64);
	signal_host(&ch1);
	ok(event_flag(1) && guest_recv(&ch1, buf, sizeof(buf)) == 80, "unmasked, the event is back");

	/* the guest stops reading: the host fills the receive ring, then
	 * leaves requests in place and asks for room */
	while (guest_send(&ch1, 6, 2000 + sent, NULL, 0, v, 64)) {
		sent++;
		signal_host(&ch1);
	}
	ok(*ring_field(&ch1, false, 12) != 0, "a full receive ring: the host sets pending_send_sz (%u)",
	   *ring_field(&ch1, false, 12));
	ok(*ring_field(&ch1, true, 4) != *ring_field(&ch1, true, 0), "and leaves the unanswered requests in the ring");
	for (;;) {
		if (guest_recv(&ch1, buf, sizeof(buf))) {
			got++;
			continue;
		}
		/* empty: tell the host there is room, as hv_pkt_iter_close does */
		signal_host(&ch1);
		if (!guest_recv(&ch1, buf, sizeof(buf)))
			break;
		got++;
	}
	ok(got == sent, "after the guest reads and signals, every one of %d requests is answered (%d)", sent, got);
	ok(*ring_field(&ch1, false, 12) == 0, "pending_send_sz is cleared");
}

static void test_ro(void)
{
	uint32_t status;
	uint8_t cdb[16] = { 0 }, *buf = gp(DATA_GPA);
	struct srb_result r;

	setup_chan(&ch2, 2, 0x102, 0x2000, 0x300, 8, 4);
	make_gpadl(2, ch2.gpadl, ch2.pfn, ch2.npages, &status);
	ok(status == 0 && open_channel(&ch2, 0) == 0, "the read-only disk's channel opens");
	cdb[0] = 0x2a;
	cdb[8] = 1;
	r = scsi(&ch2, cdb, 10, DATA_GPA, 512);
	ok(r.got && r.scsi_status == 2 && r.sense_key == 7 && r.asc == 0x27, "WRITE (10): DATA PROTECT, WRITE PROTECTED");
	memset(cdb, 0, 16);
	cdb[0] = 0x5a;
	cdb[2] = 0x3f;
	cdb[8] = 64;
	r = scsi(&ch2, cdb, 10, DATA_GPA, 64);
	ok(r.got && r.xfer == 8 + 20 + 12 && (buf[3] & 0x80), "MODE SENSE (10), all pages: write-protect bit set");
}

static void test_corrupt(void)
{
	uint8_t v[64] = { 0 }, cdb[16] = { 0 };
	long mark;
	uint32_t w, status;
	struct srb_result r;

	/* write_index beyond the ring */
	event_flag(2);
	w = *ring_field(&ch2, true, 0);
	*ring_field(&ch2, true, 0) = ring_size(&ch2, true) + 8;
	memcpy(snapshot, vm.ram, RAM_SIZE);
	mark = err_mark();
	signal_host(&ch2);
	ok(err_since(mark, "channel 2 stopped") && !event_flag(2), "write_index past the ring: channel 2 stopped");
	ok(ram_same(), "and nothing in guest RAM changed");
	*ring_field(&ch2, true, 0) = w;
	w = *ring_field(&ch2, false, 0);
	guest_send(&ch2, 6, 5, NULL, 0, v, 64);
	signal_host(&ch2);
	ok(!event_flag(2) && *ring_field(&ch2, false, 0) == w, "a stopped channel serves nothing more");

	/* the guest closes and reopens with fresh rings */
	memset(v, 0, 16);
	vmbus_put32(v + 8, 2);
	post_type(4, 7, v, 12);
	vmbus_put32(v + 8, 2);
	vmbus_put32(v + 12, ch2.gpadl);
	post_type(4, 11, v, 16);
	uint32_t len;
	const uint8_t *m = next_msg(&len);
	ok(m && vmbus_get32(m) == 12 && vmbus_get32(m + 8) == ch2.gpadl, "CLOSECHANNEL, then GPADL_TEARDOWN: GPADL_TORNDOWN");
	setup_chan(&ch2, 2, 0x102, 0x2001, 0x300, 8, 4);
	make_gpadl(2, ch2.gpadl, ch2.pfn, ch2.npages, &status);
	ok(status == 0 && open_channel(&ch2, 0) == 0, "reopened on a new GPADL");
	cdb[0] = 0;
	r = scsi(&ch2, cdb, 6, 0, 0);
	ok(r.got && r.srb_status == 1, "and it serves requests again");

	/* a descriptor whose len8 runs past what was written */
	memset(v, 0, sizeof(v));
	guest_send(&ch2, 6, 6, NULL, 0, v, 64);
	uint8_t bad[2] = { 0xff, 0x0f };
	ring_copy(&ch2, true, *ring_field(&ch2, true, 4) + 4, bad, 2, true);
	memcpy(snapshot, vm.ram, RAM_SIZE);
	mark = err_mark();
	signal_host(&ch2);
	ok(err_since(mark, "channel 2 stopped") && ram_same(),
	   "a packet length of 32 KiB in an 12 KiB ring: stopped, RAM untouched");

	/* a GPA_DIRECT request whose page is outside RAM */
	post_type(4, 7, (uint8_t[12]){ [8] = 2 }, 12);
	setup_chan(&ch2, 2, 0x102, 0x2002, 0x300, 8, 4);
	make_gpadl(2, ch2.gpadl, ch2.pfn, ch2.npages, &status);
	open_channel(&ch2, 0);
	uint8_t extra[24] = { 0 };
	vmbus_put32(extra + 4, 1);
	vmbus_put32(extra + 8, 512);
	vmbus_put64(extra + 16, RAM_SIZE / PAGE + 100);
	memset(v, 0, sizeof(v));
	vmbus_put32(v, 3);
	v[20] = 10;
	v[28] = 0x28;
	v[36] = 1;
	vmbus_put32(v + 24, 512);
	guest_send(&ch2, 9, 7, extra, 24, v, 64);
	memcpy(snapshot, vm.ram, RAM_SIZE);
	mark = err_mark();
	signal_host(&ch2);
	ok(err_since(mark, "outside guest RAM") && ram_same(),
	   "READ into a page outside RAM: channel stopped, RAM untouched");
	ok(signal_host(&(struct gchan){ .conn = 0x150 }) == HV_STATUS_INVALID_CONNECTION_ID,
	   "HvSignalEvent on an unknown connection id fails");
}

static void test_eom_unload_rescind(struct storvsc *rescind_me)
{
	uint8_t m[40] = { 0 };
	const uint8_t *r;
	uint32_t len;
	unsigned n = 0;

	/* the guest leaves the first offer in its slot */
	post_type(4, 3, m, 8);
	ok(vmbus_get32(msg_slot()) == 1 && vmbus_get32(msg_slot() + 16) == 1 && (msg_slot()[5] & 1),
	   "REQUESTOFFERS: the first offer in the slot, the message-pending flag set for the rest");
	while ((r = next_msg(&len)))
		n = n * 10 + vmbus_get32(r);
	ok(n == 114, "freed with EOM one by one: OFFERCHANNEL, OFFERCHANNEL, ALLOFFERS_DELIVERED in order");
	storvsc_remove(rescind_me);
	r = next_msg(&len);
	ok(r && vmbus_get32(r) == 2 && vmbus_get32(r + 8) == 2, "removing the second disk: RESCIND_CHANNELOFFER for relid 2");
	post_type(4, 3, m, 8);
	n = 0;
	while ((r = next_msg(&len)))
		n++;
	ok(n == 2, "a rescinded channel is no longer offered");
	post_type(4, 16, m, 8);
	r = next_msg(&len);
	ok(r && vmbus_get32(r) == 17, "UNLOAD: UNLOAD_RESPONSE");
	uint32_t rd = *ring_field(&ch1, true, 4);
	memset(m, 0, sizeof(m));
	vmbus_put32(m, 3);
	guest_send(&ch1, 6, 9, NULL, 0, m, 40);
	ok(signal_host(&ch1) == HV_STATUS_SUCCESS && *ring_field(&ch1, true, 4) == rd,
	   "after UNLOAD the channels are closed: a request stays unread");
	post_type(4, 3, m, 8);
	ok(pending_msgs() == 0, "and REQUESTOFFERS is not served until the next INITIATE_CONTACT");
}

/* the integration services: negotiation, shutdown, heartbeat */
static struct gchan ch3, ch4;
static struct hv_util *util;

/* the next host packet's IC message (pipe header first), its length in *len */
static uint8_t *ic_recv(struct gchan *c, uint32_t *len, uint64_t *trans)
{
	static uint8_t buf[4096];
	uint32_t n = guest_recv(c, buf, sizeof(buf));

	if (n < 16 + 28)
		return NULL;
	memcpy(trans, buf + 8, 8);
	*len = n - (buf[2] | buf[3] << 8) * 8;
	return buf + (buf[2] | buf[3] << 8) * 8;
}

/* answer as hv_util does: same message, RESPONSE flag, same transaction */
static void ic_answer(struct gchan *c, uint8_t *m, uint32_t len, uint64_t trans)
{
	m[25] = 1 | 4;
	guest_send(c, 6, trans, NULL, 0, m, len);
	signal_host(c);
}

static void test_util(void)
{
	uint8_t m[40] = { 0 }, *ic;
	uint32_t status, len;
	uint64_t trans;
	struct hv_util *u;
	const uint8_t *r;
	bool beat = false;

	vmbus_put32(m + 8, 5 << 16 | 3);
	m[16] = 2;
	post_type(4, 14, m, 40);
	next_msg(&len);
	u = util = hv_util_create(vb, &vm, 0);
	ok(u != NULL, "the shutdown, heartbeat, time sync and KVP services");
	if (!u)
		return;
	unsigned offers = 0;
	while ((r = next_msg(&len)))
		offers += vmbus_get32(r) == 1 && (r[8] == 0x31 || r[8] == 0x39 || r[8] == 0x30 || r[8] == 0xe7);
	ok(offers == 4, "added on a live connection, all four are offered at once");
	ok(hv_util_shutdown(u) == -1, "a shutdown request before the guest opened the channel: refused");

	setup_chan(&ch3, 3, 0x103, 0x3000, 0x300, 8, 4);
	make_gpadl(3, ch3.gpadl, ch3.pfn, ch3.npages, &status);
	ok(status == 0 && open_channel(&ch3, 0) == 0, "the guest opens the shutdown channel");
	ic = ic_recv(&ch3, &len, &trans);
	ok(ic && ic[12] == 0 && ic[28] == 2 && ic[30] == 2 && len >= 28 + 8 + 16,
	   "on open the host offers 2 framework and 2 service versions (ICMSGTYPE_NEGOTIATE)");
	ok(hv_util_shutdown(u) == -1, "before the guest answers, no shutdown request");
	if (ic) {
		ic[28] = 1;
		ic[30] = 1;
		ic_answer(&ch3, ic, len, trans);
	}
	ok(hv_util_shutdown(u) == 0, "after the negotiation a shutdown request is sent");
	ic = ic_recv(&ch3, &len, &trans);
	ok(ic && ic[12] == 3 && len == 28 + 12 + 2048 && vmbus_get32(ic + 28 + 8) == 1,
	   "ICMSGTYPE_SHUTDOWN, flags 1, with the full shutdown_msg_data");

	setup_chan(&ch4, 4, 0x104, 0x4000, 0x380, 8, 4);
	make_gpadl(4, ch4.gpadl, ch4.pfn, ch4.npages, &status);
	ok(status == 0 && open_channel(&ch4, 0) == 0, "the guest opens the heartbeat channel");
	ic = ic_recv(&ch4, &len, &trans);
	if (ic) {
		ic[28] = 1;
		ic[30] = 1;
		ic_answer(&ch4, ic, len, trans);
	}
	/* no service thread here: the test ticks the services' clock */
	hv_util_tick(u);
	ic = ic_recv(&ch4, &len, &trans);
	beat = ic && ic[12] == 1;
	ok(beat, "a heartbeat arrives with the next tick (one a second)");
	if (beat) {
		uint64_t seq;

		memcpy(&seq, ic + 28, 8);
		seq++;
		memcpy(ic + 28, &seq, 8);
		ic_answer(&ch4, ic, len, trans);
	}
	ok(hv_util_heartbeats(u) == 1, "the guest's answer (sequence + 1) is counted");
}


/* time sync and KVP, and IC answers that break the framing */
static struct gchan ch5, ch6;

#define IC_VER(major, minor) ((uint32_t)(minor) << 16 | (major))

/* the guest's negotiation answer: framework fw, service srv */
static void ic_agree(struct gchan *c, uint32_t fw, uint32_t srv)
{
	uint32_t len;
	uint64_t trans;
	uint8_t *ic = ic_recv(c, &len, &trans);

	if (!ic)
		return;
	ic[28] = 1;
	ic[30] = 1;
	vmbus_put32(ic + 36, fw);
	vmbus_put32(ic + 40, srv);
	ic_answer(c, ic, len, trans);
}

/* the guest closes a channel and opens it again on fresh rings */
static uint32_t reopen(struct gchan *c)
{
	uint8_t m[12] = { 0 };
	uint32_t len;

	vmbus_put32(m + 8, c->relid);
	post_type(4, 7, m, 12);
	while (next_msg(&len))
		;
	for (unsigned i = 0; i < c->npages; i++)
		memset(gp(c->pfn[i] * PAGE), 0, PAGE);
	return open_channel(c, 0);
}

static uint64_t now_1601(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return 116444736000000000ULL + (uint64_t)ts.tv_sec * 10000000 + (uint64_t)ts.tv_nsec / 100;
}

static void test_timesync(void)
{
	uint8_t *ic;
	uint32_t status, len;
	uint64_t trans, t, ref;
	struct hv_util_state st;
	bool sample = false;

	setup_chan(&ch5, 5, 0x105, 0x5000, 0x400, 8, 4);
	make_gpadl(5, ch5.gpadl, ch5.pfn, ch5.npages, &status);
	ok(status == 0 && open_channel(&ch5, 0) == 0, "the guest opens the time sync channel");
	ic = ic_recv(&ch5, &len, &trans);
	ok(ic && ic[12] == 0 && ic[28] == 2 && ic[30] == 3 && len == 28 + 8 + 20 && vmbus_get32(ic + 36 + 8) == IC_VER(4, 0),
	   "time sync offers 2 framework and 3 service versions, 4.0 first");
	if (ic) {
		ic[28] = 1;
		ic[30] = 1;
		vmbus_put32(ic + 36, IC_VER(3, 0));
		vmbus_put32(ic + 40, IC_VER(4, 0));
		ic_answer(&ch5, ic, len, trans);
	}
	ic = ic_recv(&ch5, &len, &trans);
	t = now_1601();
	ref = hv_ref_time(&vm);
	ok(ic && ic[12] == 4 && len == 56 && ic[28 + 16] == 1,
	   "once negotiated at 4.0: ICMSGTYPE_TIMESYNC with ICTIMESYNCFLAG_SYNC (ictimesync_ref_data)");
	if (ic) {
		uint64_t host, vmref;

		memcpy(&host, ic + 28, 8);
		memcpy(&vmref, ic + 36, 8);
		ok(host <= t && t - host < 50000000, "parenttime: the host's UTC in 100 ns units since 1601");
		ok(vmref <= ref && ref - vmref < 50000000, "vmreferencetime: the partition reference time of the sample");
		ic_answer(&ch5, ic, len, trans);
	}
	hv_util_status(util, &st);
	ok(st.time_samples == 1 && st.timesync_version == IC_VER(4, 0), "the guest's acknowledgement is counted");
	/* a sample every 5th tick (5 s) */
	for (int i = 0; i < 5 && !sample; i++) {
		hv_util_tick(util);
		ic = ic_recv(&ch5, &len, &trans);
		sample = ic && ic[12] == 4 && ic[28 + 16] == 2;
	}
	ok(sample, "within 5 ticks an ICTIMESYNCFLAG_SAMPLE follows");

	/* an older guest: 3.0 gets struct ictimesync_data */
	ok(reopen(&ch5) == 0, "the guest reopens the time sync channel");
	ic_agree(&ch5, IC_VER(3, 0), IC_VER(3, 0));
	ic = ic_recv(&ch5, &len, &trans);
	ok(ic && ic[12] == 4 && len == 56 && ic[28 + 24] == 1 && !vmbus_get32(ic + 36) && !vmbus_get32(ic + 40),
	   "negotiated at 3.0: SYNC in ictimesync_data (childtime and round trip 0)");
}

/* a UTF-16LE string into p, its byte count with the terminator */
static uint32_t utf16(uint8_t *p, const uint16_t *s)
{
	uint32_t n = 0;

	do
		memcpy(p + 2 * n, &s[n], 2);
	while (s[n++]);
	return 2 * n;
}

/* answer the KVP request in flight: a pair, or status (HV_S_CONT: no more) */
static bool kvp_reply(uint8_t pool, uint32_t index, const uint16_t *key, const uint16_t *value, uint32_t status)
{
	uint32_t len;
	uint64_t trans;
	uint8_t *ic = ic_recv(&ch6, &len, &trans);
	bool asked = ic && ic[12] == 2 && len == 28 + 2580 && ic[28] == 3 && ic[29] == pool && vmbus_get32(ic + 32) == index;

	if (!ic)
		return false;
	vmbus_put32(ic + 20, status);
	if (!status) {
		vmbus_put32(ic + 36, 1);
		vmbus_put32(ic + 40, utf16(ic + 48, key));
		vmbus_put32(ic + 44, utf16(ic + 48 + 512, value));
	}
	ic_answer(&ch6, ic, len, trans);
	return asked;
}

static void kvp_collect(void *arg, const char *key, const char *value)
{
	char *out = arg;

	snprintf(out + strlen(out), 256 - strlen(out), "%s=%s;", key, value);
}

/* the SET in flight: op, pool 0, REG_SZ, key and value in UTF-16; its
 * answer carries status */
static bool kvp_set_reply(const char *key, const char *value, uint32_t status)
{
	uint32_t len;
	uint64_t trans;
	uint8_t *ic = ic_recv(&ch6, &len, &trans);
	bool same = ic && ic[12] == 2 && len == 28 + 2580 && ic[28] == 1 && ic[29] == 0 && vmbus_get32(ic + 32) == 1 &&
		    vmbus_get32(ic + 36) == 2 * (strlen(key) + 1) && vmbus_get32(ic + 40) == 2 * (strlen(value) + 1);

	for (size_t i = 0; same && i <= strlen(key); i++)
		same = ic[44 + 2 * i] == (uint8_t)key[i] && !ic[45 + 2 * i];
	for (size_t i = 0; same && i <= strlen(value); i++)
		same = ic[44 + 512 + 2 * i] == (uint8_t)value[i] && !ic[45 + 512 + 2 * i];
	if (!ic)
		return false;
	vmbus_put32(ic + 20, status);
	ic_answer(&ch6, ic, len, trans);
	return same;
}

static void test_kvp_set(void)
{
	struct hv_util_state st;
	char key[300], value[1100];

	ok(hv_util_kvp_set(util, "HostKey", "a value") == 0 && kvp_set_reply("HostKey", "a value", 0),
	   "hv_util_kvp_set: KVP_OP_SET into the external pool at once, REG_SZ in UTF-16");
	hv_util_status(util, &st);
	ok(st.kvp_sets_done == 1 && st.kvp_sets_pending == 0, "the guest's answer completes it");
	memset(key, 'a', 256);
	key[256] = 0;
	memset(value, 'b', 1024);
	value[1024] = 0;
	ok(hv_util_kvp_set(util, "", "v") == -3 && hv_util_kvp_set(util, key, "v") == -3 &&
	   hv_util_kvp_set(util, "k", value) == -3, "an empty key, a 256-unit key, a 1024-unit value: refused");
	ok(hv_util_kvp_set(util, "\xc3", "v") == -3 && hv_util_kvp_set(util, "\xc0\x80", "v") == -3 &&
	   hv_util_kvp_set(util, "\xed\xa0\x80", "v") == -3 && hv_util_kvp_set(util, "k", "\xf4\x90\x80\x80") == -3,
	   "not UTF-8 (truncated, overlong, a surrogate, beyond U+10FFFF): refused");
	key[255] = 0;
	value[1023] = 0;
	ok(hv_util_kvp_set(util, key, value) == 0, "a 255-unit key and a 1023-unit value fit");
	for (int i = 1; i < 8; i++)
		hv_util_kvp_set(util, "k", "v");
	ok(hv_util_kvp_set(util, "k", "v") == -2, "a ninth waiting SET: refused");
	ok(kvp_set_reply(key, value, 0x80004005), "one SET in flight at a time: the first");
	hv_util_status(util, &st);
	ok(st.kvp_sets_failed == 1 && st.kvp_sets_pending == 7, "the guest refused it: counted as failed");
	bool all = true;
	for (int i = 1; i < 8; i++)
		all &= kvp_set_reply("k", "v", 0);
	hv_util_status(util, &st);
	ok(all && st.kvp_sets_done == 8 && st.kvp_sets_pending == 0, "the others follow one by one");
	ok(hv_util_kvp_set(util, "Again", "x") == 0, "a SET the guest does not answer before it closes the channel");
	reopen(&ch6);
	ic_agree(&ch6, IC_VER(3, 0), IC_VER(4, 0));
	ok(kvp_set_reply("Again", "x", 0), "is sent again first after the reopen");
	ok(kvp_reply(2, 0, NULL, NULL, 0x80070103) && kvp_reply(1, 0, NULL, NULL, 0x80070103) &&
	   kvp_reply(0, 0, NULL, NULL, 0x80070103), "then the enumeration");
}

static void test_kvp(void)
{
	/* "vàl" and U+1F600 as a surrogate pair; "x" and a lone surrogate */
	static const uint16_t name[] = { 'N', 'a', 'm', 'e', 0 }, val[] = { 'v', 0xe0, 'l', 0xd83d, 0xde00, 0 };
	static const uint16_t k2[] = { 'x', 0 }, v2[] = { 0xdc00, 'y', 0 };
	uint8_t *ic;
	uint32_t status, len;
	uint64_t trans;
	struct hv_util_state st;
	char pairs[256] = "";
	long mark;

	setup_chan(&ch6, 6, 0x106, 0x6000, 0x480, 8, 4);
	make_gpadl(6, ch6.gpadl, ch6.pfn, ch6.npages, &status);
	ok(status == 0 && open_channel(&ch6, 0) == 0, "the guest opens the KVP channel");
	ic = ic_recv(&ch6, &len, &trans);
	ok(ic && ic[12] == 0 && ic[28] == 2 && ic[30] == 3, "KVP offers 2 framework and 3 service versions");
	hv_util_status(util, &st);
	ok(!st.kvp_ready && st.kvp_rounds == 0, "before the guest answers, KVP is not connected");
	if (ic) {
		ic[28] = 1;
		ic[30] = 1;
		vmbus_put32(ic + 36, IC_VER(3, 0));
		vmbus_put32(ic + 40, IC_VER(4, 0));
		ic_answer(&ch6, ic, len, trans);
	}
	ok(kvp_reply(2, 0, name, val, 0), "then KVP_OP_ENUMERATE of the auto pool, index 0, a full hv_kvp_msg");
	ok(kvp_reply(2, 1, k2, v2, 0), "index 1 after the guest's answer: one request in flight at a time");
	ok(kvp_reply(2, 2, NULL, NULL, 0x80070103), "index 2");
	ok(kvp_reply(1, 0, NULL, NULL, 0x80070103), "HV_S_CONT ends the auto pool: the guest pool follows");
	ok(kvp_reply(0, 0, NULL, NULL, 0x80070103), "then the external pool");
	hv_util_status(util, &st);
	ok(st.kvp_ready && st.kvp_version == IC_VER(4, 0) && st.kvp_rounds == 1, "HV_S_CONT ends the enumeration");
	hv_util_kvp_foreach(util, 2, kvp_collect, pairs);
	ok(!strcmp(pairs, "Name=v\xc3\xa0l\xf0\x9f\x98\x80;x=\xef\xbf\xbdy;"),
	   "the auto pool's pairs in UTF-8 (a surrogate pair joined, a lone one U+FFFD)");
	ok(ic_recv(&ch6, &len, &trans) == NULL, "and nothing more is asked until the next round");
	test_kvp_set();

	/* answers that break the framing */
	mark = err_mark();
	ok(reopen(&ch6) == 0, "the guest reopens the KVP channel");
	ic_agree(&ch6, IC_VER(3, 0), IC_VER(9, 0));
	hv_util_status(util, &st);
	ok(!st.kvp_ready && err_since(mark, "KVP: malformed IC answer"),
	   "a negotiation answer naming a version the host did not offer: the channel stops with one line");
	ok(hv_util_kvp_set(util, "k", "v") == -1, "no SET while KVP is not connected");
	mark = err_mark();
	reopen(&ch6);
	ic = ic_recv(&ch6, &len, &trans);
	if (ic) {
		memset(ic + 28, 0, 8);
		ic_answer(&ch6, ic, len, trans);
	}
	hv_util_status(util, &st);
	ok(!st.kvp_ready && err_since(mark, "shares no version") && !err_since(mark, "stopped"),
	   "a guest that shares no version (vercnt 0): not connected, one line, the channel not stopped");
	reopen(&ch6);
	ic = ic_recv(&ch6, &len, &trans);
	mark = err_mark();
	if (ic) {
		guest_send(&ch6, 6, trans, NULL, 0, ic, 20);
		signal_host(&ch6);
	}
	ok(err_since(mark, "channel 6 stopped: KVP: malformed IC answer"), "an answer shorter than the IC header");
	reopen(&ch6);
	ic = ic_recv(&ch6, &len, &trans);
	mark = err_mark();
	if (ic) {
		guest_send(&ch6, 6, trans, NULL, 0, ic, len);
		signal_host(&ch6);
	}
	ok(err_since(mark, "malformed IC answer"), "an answer without ICMSGHDRFLAG_RESPONSE");
	reopen(&ch6);
	ic = ic_recv(&ch6, &len, &trans);
	mark = err_mark();
	if (ic) {
		ic[12] = 1;
		ic_answer(&ch6, ic, len, trans);
	}
	ok(err_since(mark, "malformed IC answer"), "an answer of another message type (heartbeat on KVP)");
	reopen(&ch6);
	ic_agree(&ch6, IC_VER(3, 0), IC_VER(4, 0));
	ic = ic_recv(&ch6, &len, &trans);
	mark = err_mark();
	if (ic) {
		vmbus_put32(ic + 40, 600);
		ic_answer(&ch6, ic, len, trans);
	}
	ok(err_since(mark, "malformed IC answer"), "an ENUMERATE answer with a 600-byte key (512 at most)");
	reopen(&ch6);
	ic_agree(&ch6, IC_VER(3, 0), IC_VER(4, 0));
	ic = ic_recv(&ch6, &len, &trans);
	mark = err_mark();
	if (ic) {
		ic[25] = 1 | 4;
		guest_send(&ch6, 6, trans, NULL, 0, ic, 100);
		signal_host(&ch6);
	}
	ok(err_since(mark, "malformed IC answer"), "an ENUMERATE answer shorter than hv_kvp_msg");
	reopen(&ch6);
	ic_agree(&ch6, IC_VER(3, 0), IC_VER(4, 0));
	ok(kvp_reply(2, 0, name, val, 0) && kvp_reply(2, 1, NULL, NULL, 0x80070103) &&
	   kvp_reply(1, 0, NULL, NULL, 0x80070103) && kvp_reply(0, 0, NULL, NULL, 0x80070103),
	   "after all that, a reopened channel enumerates again");
	mark = err_mark();
	if ((ic = ic_recv(&ch6, &len, &trans)) == NULL) {
		uint8_t m[28 + 2580] = { 0 };

		m[12] = 2;
		ic_answer(&ch6, m, sizeof(m), 99);
	}
	ok(err_since(mark, "malformed IC answer"), "an answer with no request in flight");
	hv_util_status(util, &st);
	pairs[0] = 0;
	hv_util_kvp_foreach(util, 2, kvp_collect, pairs);
	ok(!strcmp(pairs, "Name=v\xc3\xa0l\xf0\x9f\x98\x80;"), "the last complete enumeration stays readable");
}

/* ---- snapshots: the storvsc, integration services and partition
 * sections; the bus refuses to be saved with a rescinded channel ---- */

static void patch_refused(struct sec_buf *s, const char *name, size_t off, const void *v, size_t n, const char *what)
{
	char err[200];

	ok(sh_patch_refused(&vm, name, s, off, v, n, err, sizeof(err)), "snapshot: %s with %s is refused: %s", name, what,
	   err);
}

/* hv-util's section (util_save): the channels from 16, 35 bytes each,
 * then the KVP flags, counters, SETs and the pools */
#define UT_CHAN(k) (16 + 35 * (k))
#define UT_FLAGS UT_CHAN(4)
#define UT_NSETS (UT_FLAGS + 3 + 24)

/* the offset of pool p's count in hv-util's section */
static size_t ut_pool(const struct sec_buf *s, unsigned pool)
{
	size_t off = UT_NSETS + 4;

	for (uint32_t i = 0; i < vmbus_get32(s->p + UT_NSETS); i++)
		off += 8 + vmbus_get32(s->p + off) + vmbus_get32(s->p + off + 4);
	for (unsigned p = 0; p < pool; p++) {
		uint32_t n = vmbus_get32(s->p + off);

		off += 4;
		for (uint32_t i = 0; i < 2 * n; i++)
			off += 4 + vmbus_get32(s->p + off);
	}
	return off;
}

static void test_snapshot(void)
{
	static const char *const names[] = { "hyperv", "storvsc", "hv-util" };
	struct sec_buf s[3], vbs;
	char err[200];
	bool good = true;

	good = sh_save(&vm, "vmbus", &vbs, err, sizeof(err)) < 0 && strstr(err, "rescinded");
	ok(good, "snapshot: a bus with a rescinded channel (the removed disk) is not saved: %s", err);
	for (int i = 0; i < 3; i++) {
		bool rt = sh_round_trip(&vm, names[i], &s[i]);

		ok(rt, "snapshot: the %s section saves, loads and saves again as the same %zu bytes", names[i],
		   rt ? s[i].len : 0);
		if (!rt)
			return;
	}
	uint32_t kvp_n = vmbus_get32(s[2].p + ut_pool(&s[2], 2));
	ok(kvp_n == 1 && vmbus_get32(s[2].p + UT_CHAN(3)) != 0,
	   "snapshot: hv-util holds the negotiated KVP channel and the auto pool's pair (%u)", kvp_n);
	for (int i = 0; i < 3; i++)
		ok(sh_truncations_refused(&vm, names[i], &s[i]), "snapshot: each of the %zu truncations of %s is refused",
		   s[i].len, names[i]);
	uint64_t blocks = (IMG_SIZE / 512) + 1;
	patch_refused(&s[1], "storvsc", 4, &blocks, 8, "a disk of another size");
	patch_refused(&s[1], "storvsc", 0, "\2", 1, "section version 2");
	patch_refused(&s[2], "hv-util", 0, "\2", 1, "section version 2");
	patch_refused(&s[2], "hv-util", 8, "\4", 1, "an enumeration past the end");
	patch_refused(&s[2], "hv-util", 12, "\101", 1, "an enumeration at pair 65");
	patch_refused(&s[2], "hv-util", UT_CHAN(0), "\2", 1, "negotiated = 2");
	patch_refused(&s[2], "hv-util", UT_CHAN(3) + 5, "\x45\x23\x01\0", 4, "a KVP version never offered");
	patch_refused(&s[2], "hv-util", UT_CHAN(3) + 1, "\7\0\0\0", 4, "a framework version never offered");
	patch_refused(&s[2], "hv-util", UT_CHAN(3) + 9, "\7\0", 2, "a request of type 7 in flight");
	patch_refused(&s[2], "hv-util", UT_FLAGS, "\1\1", 2, "an enumeration and a SET at once");
	if (!vmbus_get32(s[2].p + UT_NSETS))
		patch_refused(&s[2], "hv-util", UT_FLAGS, "\0\1", 2, "a SET in flight with none queued");
	patch_refused(&s[2], "hv-util", UT_NSETS, "\11", 1, "9 queued SETs");
	patch_refused(&s[2], "hv-util", ut_pool(&s[2], 0), "\101", 1, "65 pairs in a pool");
	size_t key = ut_pool(&s[2], 2) + 4;
	patch_refused(&s[2], "hv-util", key + 4, "\0", 1, "a NUL in a key");
	patch_refused(&s[2], "hv-util", key, "\0\20\0\0", 4, "a key of 4096 bytes");
	for (int i = 0; i < 3; i++)
		ok(sh_flips(&vm, names[i], &s[i], 300, 17 + i), "snapshot: %s with 300 random damages: refused with a "
		   "reason or loaded, never a crash", names[i]);
	for (int i = 0; i < 3; i++) {
		good &= sh_load(&vm, names[i], s[i].p, s[i].len, err, sizeof(err)) == 0;
		free(s[i].p);
	}
	ok(good, "snapshot: the machine goes back to the snapshot");

	/* the restored guest's clock stood still since the snapshot: the
	 * next tick sets it (SYNC), as Hyper-V does after a resume */
	uint8_t *ic;
	uint32_t len;
	uint64_t trans;
	bool before = false, sync = false;
	while ((ic = ic_recv(&ch5, &len, &trans)))
		before |= ic[12] == 4 && ic[28 + 24] == 1;
	hv_util_tick(util);
	while ((ic = ic_recv(&ch5, &len, &trans)))
		sync |= ic[12] == 4 && ic[28 + 24] == 1;
	ok(!before && sync, "snapshot: after the restore the next tick sends the guest a time SYNC");
}

int main(void)
{
	struct storvsc *ro;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (vm_create(&vm, RAM_SIZE, 1, &stub_engine, PERSONALITY_HYPERV, VM_IRQCHIP_USER, 0) < 0) {
		fprintf(stderr, "vm_create failed\n");
		return 1;
	}
	snapshot = malloc(RAM_SIZE);
	img_fd = mkstemp(img_path);
	int ro_fd = mkstemp(ro_path);
	errlog = tmpfile();
	if (!snapshot || img_fd < 0 || ro_fd < 0 || !errlog || ftruncate(img_fd, IMG_SIZE) ||
	    ftruncate(ro_fd, IMG_SIZE)) {
		perror("setup");
		return 1;
	}
	close(ro_fd);
	int saved_stderr = dup(2);
	dup2(fileno(errlog), 2);

	v0 = vm.vcpu[0];
	synic_setup(v0);
	vb = vmbus_create(&vm);
	ok(vb != NULL, "vmbus_create plugs VMBus into the partition");
	ok(storvsc_create(vb, img_path, false) != NULL, "a storvsc disk");
	ro = storvsc_create(vb, ro_path, true);
	ok(ro != NULL, "a read-only storvsc disk");
	ok(storvsc_create(vb, "/nonexistent/accord.img", false) == NULL, "a missing image is refused");
	if (vb && ro) {
		test_versions();
		test_offers();
		test_malformed();
		test_open();
		test_storvsc_init();
		test_scsi();
		test_wrap();
		test_masking();
		test_ro();
		test_corrupt();
		test_eom_unload_rescind(ro);
		test_util();
		if (util) {
			test_timesync();
			test_kvp();
			test_snapshot();
		}
	}
	dup2(saved_stderr, 2);
	unlink(img_path);
	unlink(ro_path);
	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail != 0;
}
