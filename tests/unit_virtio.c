/* virtio over PCI, driven the way a guest driver would: the host bridge's
 * configuration mechanisms and BARs, the modern transport's capabilities,
 * feature negotiation and MSI-X, and virtio-blk requests on a temporary
 * image. Then malicious rings: buffers outside RAM, loops, bad indices,
 * bad flags, oversized lengths. Each must leave the device NEEDS_RESET
 * with a configuration interrupt, and leave guest RAM and the image
 * untouched apart from what the rules allow. The disk's snapshot section
 * carries its size and its counters. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dev/dev.h"
#include "dev/pci.h"
#include "dev/virtio/virtio.h"
#include "engine/engine.h"
#include "vm/vm.h"
#include "tap.h"
#include "testvm.h"
#include "virtio_driver.h"
#include "snap_hooks.h"

#define RAM_SIZE (16u << 20)
#define QSIZE 16
#define DESC 0x100000u
#define AVAIL 0x101000u
#define USED 0x102000u
#define INDIRECT 0x103000u
#define HDR 0x200000u
#define DATA 0x210000u
#define STATUS 0x220000u
#define IMG_SIZE (1u << 20)

#define V_CONFIG 0x40
#define V_QUEUE 0x41

static char img_path[] = "/tmp/accord-unit-virtio-XXXXXX";
static char ro_path[] = "/tmp/accord-unit-virtio-ro-XXXXXX";
static int img_fd;
static struct pci_bus *bus;
static struct vdrv blk;
static uint8_t *snapshot;

/* a three-part block request: header, data, status */
static void blk_req(uint32_t type, uint64_t sector, uint32_t len, bool data_to_guest)
{
	uint8_t *h = gp(HDR);

	memset(h, 0, 16);
	memcpy(h, &type, 4);
	memcpy(h + 8, &sector, 8);
	*gp(STATUS) = 0xee;
	if (len) {
		set_desc(DESC, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
		set_desc(DESC, 1, DATA, len, VIRTQ_DESC_F_NEXT | (data_to_guest ? VIRTQ_DESC_F_WRITE : 0), 2);
		set_desc(DESC, 2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	} else {
		set_desc(DESC, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 2);
		set_desc(DESC, 2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	}
	vdrv_submit(&blk, 0, 0);
}

static void img_read(uint64_t off, void *buf, size_t len)
{
	if (pread(img_fd, buf, len, off) != (ssize_t)len)
		memset(buf, 0xaa, len);
}

/* ---- tests ---- */

static void test_pci(void)
{
	ok(testvm_cfg_read(&vm, 0, 0, 4) == 0x29c08086, "host bridge 00:00.0 is 8086:29c0 through 0xcf8/0xcfc");
	ok(mmio_r(PCI_ECAM_BASE, 4) == 0x29c08086, "host bridge through ECAM");
	ok(testvm_cfg_read(&vm, 0, 0x0a, 2) == 0x0600, "host bridge class 0600");
	ok(testvm_cfg_read(&vm, 5, 0, 4) == 0xffffffff, "an empty slot reads all ones");
	ok(mmio_r(PCI_ECAM_BASE + (1 << 15), 4) == 0x10421af4, "virtio-blk at 00:01.0 is 1af4:1042");
	ok(testvm_cfg_read(&vm, 1, 0x08, 1) >= 1, "modern-only device: revision >= 1");
	ok(testvm_cfg_read(&vm, 1, 0x3d, 1) == 0, "no INTx pin (MSI-X only)");
	ok(testvm_cfg_read(&vm, 1, 0x06, 2) & PCI_STATUS_CAPS, "capability list present");

	uint32_t orig = testvm_cfg_read(&vm, 1, 0x10, 4);
	testvm_cfg_write(&vm, 1, 0x10, 0xffffffff, 4);
	uint32_t sz = testvm_cfg_read(&vm, 1, 0x10, 4);
	ok(sz == 0xffff8000, "BAR 0 sizes as 32 KiB memory (%#x)", sz);
	testvm_cfg_write(&vm, 1, 0x10, 0xd0000000, 4);
	testvm_cfg_write(&vm, 1, 0x04, PCI_CMD_MEM | PCI_CMD_MASTER, 2);
	uint32_t bar = testvm_cfg_read(&vm, 1, 0x10, 4) & ~0xfu;
	ok(bar == 0xd0000000 && orig != 0xd0000000, "BAR 0 moved to %#x", bar);
	ok(mmio_r(orig & ~0xfu, 4) == 0xffffffff, "the old BAR address no longer decodes");
	testvm_cfg_write(&vm, 1, 0x04, 0, 2);
	ok(mmio_r(bar + 0x12, 2) == 0xffff, "memory decoding off: the BAR does not decode");
	testvm_cfg_write(&vm, 1, 0x04, PCI_CMD_MEM | PCI_CMD_MASTER, 2);

	/* the capabilities the Linux driver looks for */
	bool found = vdrv_probe(&blk, 1) && blk.isr && blk.devcfg;
	unsigned c = blk.msix_cap, win = blk.cfg_cap;
	ok(c && testvm_cfg_read(&vm, 1, c + 4, 4) % 8 == 0 && (testvm_cfg_read(&vm, 1, c + 8, 4) & 7) == 0,
	   "MSI-X table and PBA in BAR 0");
	ok(found, "MSI-X and the common, notify, ISR and device capabilities");
	ok(mmio_r(blk.common + 0x12, 2) == 1, "one queue");

	/* the PCI configuration access capability reaches the same registers */
	ok(win != 0, "VIRTIO_PCI_CAP_PCI_CFG present");
	if (win) {
		testvm_cfg_write(&vm, 1, win + 4, 0, 1);
		testvm_cfg_write(&vm, 1, win + 8, blk.common - blk.bar + 0x12, 4);
		testvm_cfg_write(&vm, 1, win + 12, 2, 4);
		ok(testvm_cfg_read(&vm, 1, win + 16, 2) == 1, "num_queues read through pci_cfg_data");
		testvm_cfg_write(&vm, 1, win + 8, blk.common - blk.bar, 4);
		testvm_cfg_write(&vm, 1, win + 12, 4, 4);
		testvm_cfg_write(&vm, 1, win + 16, 1, 4);
		ok(mmio_r(blk.common, 4) == 1, "device_feature_select written through pci_cfg_data");
		mmio_w(blk.common, 0, 4);
		testvm_cfg_write(&vm, 1, win + 8, 0x7fff, 4);
		ok(testvm_cfg_read(&vm, 1, win + 16, 4) == 1, "a misaligned window does nothing");
	}
	ok(mmio_r(blk.devcfg, 8) == IMG_SIZE / 512, "capacity in sectors");
}

static void test_features(void)
{
	mmio_w(blk.common + 0x14, 0, 1);
	mmio_w(blk.common + 0x00, 1, 4);
	uint32_t hi = mmio_r(blk.common + 0x04, 4);
	mmio_w(blk.common + 0x00, 0, 4);
	uint32_t lo = mmio_r(blk.common + 0x04, 4);
	ok(hi & 1, "VERSION_1 offered");
	ok((lo >> VIRTIO_F_INDIRECT_DESC & 1) && (lo >> VIRTIO_F_EVENT_IDX & 1),
	   "INDIRECT_DESC and EVENT_IDX offered");
	ok(lo & (1 << 9), "FLUSH offered");
	mmio_w(blk.common + 0x14, 3, 1);
	mmio_w(blk.common + 0x08, 1, 4);
	mmio_w(blk.common + 0x0c, 0, 4);
	mmio_w(blk.common + 0x14, 0xb, 1);
	ok(!(vdrv_status(&blk) & VIRTIO_S_FEATURES_OK), "FEATURES_OK refused without VERSION_1");
	mmio_w(blk.common + 0x14, 0, 1);
	mmio_w(blk.common + 0x14, 3, 1);
	mmio_w(blk.common + 0x08, 1, 4);
	mmio_w(blk.common + 0x0c, 1 | 0x80, 4); /* a feature never offered */
	mmio_w(blk.common + 0x14, 0xb, 1);
	ok(!(vdrv_status(&blk) & VIRTIO_S_FEATURES_OK), "FEATURES_OK refused for features not offered");
}

static void test_io(void)
{
	uint8_t buf[4096], want[4096];

	ok(vdrv_setup(&blk, 0), "driver brings the device up (VERSION_1)");
	/* write 1 KiB at sector 2 */
	for (int i = 0; i < 1024; i++)
		gp(DATA)[i] = i * 7 + 3;
	memcpy(snapshot, vm.ram, RAM_SIZE);
	blk_req(1, 2, 1024, false);
	img_read(1024, buf, 1024);
	ok(vdrv_used_idx(&blk, 0) == 1 && *gp(STATUS) == 0 && !memcmp(buf, gp(DATA), 1024),
	   "OUT: 1 KiB at sector 2 lands in the image");
	ok(vdrv_used_len(&blk, 0, 0) == 1, "OUT: used length 1 (the status byte)");
	ok(take_irq() == V_QUEUE, "OUT: the queue's MSI-X vector fires");
	drain_irqs();
	/* only the status byte, the used ring and the request changed */
	size_t bad = 0;
	for (size_t i = 0; i < RAM_SIZE; i++) {
		bool allowed = (i >= USED && i < USED + 6 + 8 * QSIZE) || i == STATUS ||
			       (i >= DESC && i < DESC + 16 * QSIZE) || (i >= AVAIL && i < AVAIL + 6 + 2 * QSIZE) ||
			       (i >= HDR && i < HDR + 16);
		if (!allowed && vm.ram[i] != snapshot[i])
			bad++;
	}
	ok(bad == 0, "OUT: no other guest byte changed (%zu did)", bad);

	/* read 4 KiB from sector 0 */
	img_read(0, want, 4096);
	memset(gp(DATA), 0, 4096);
	blk_req(0, 0, 4096, true);
	ok(vdrv_used_idx(&blk, 0) == 2 && *gp(STATUS) == 0 && !memcmp(gp(DATA), want, 4096),
	   "IN: 4 KiB from sector 0 match the image");
	ok(vdrv_used_len(&blk, 0, 1) == 4097, "IN: used length is data + status");

	blk_req(4, 0, 0, false);
	ok(vdrv_used_idx(&blk, 0) == 3 && *gp(STATUS) == 0, "FLUSH completes");
	memset(gp(DATA), 0, 64);
	blk_req(8, 0, 20, true);
	ok(*gp(STATUS) == 0 && !strncmp((char *)gp(DATA), strrchr(img_path, '/') + 1, 20),
	   "GET_ID returns the image's name");
	blk_req(99, 0, 0, false);
	ok(*gp(STATUS) == 2, "unknown request type: UNSUPP");
	blk_req(0, IMG_SIZE / 512 - 1, 1024, true);
	ok(*gp(STATUS) == 1, "IN past the end: IOERR");
	blk_req(0, 0, 100, true);
	ok(*gp(STATUS) == 1, "IN of a partial sector: IOERR");
	blk_req(1, ~0ull / 512, 512, false);
	ok(*gp(STATUS) == 1, "OUT with a huge sector: IOERR");

	/* WRITE_ZEROES and DISCARD over sectors 2-3 */
	uint8_t seg[16] = { 0 };
	uint64_t s = 2;
	uint32_t n = 2;
	memcpy(seg, &s, 8);
	memcpy(seg + 8, &n, 4);
	memcpy(gp(DATA), seg, 16);
	blk_req(13, 0, 16, false);
	img_read(1024, buf, 1024);
	memset(want, 0, 1024);
	ok(*gp(STATUS) == 0 && !memcmp(buf, want, 1024), "WRITE_ZEROES zeroes sectors 2-3");
	blk_req(11, 0, 16, false);
	ok(*gp(STATUS) == 0, "DISCARD completes");

	/* an indirect table: header, data, status */
	set_desc(INDIRECT, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(INDIRECT, 1, DATA, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	set_desc(INDIRECT, 2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	memset(gp(HDR), 0, 16);
	*gp(STATUS) = 0xee;
	set_desc(DESC, 5, INDIRECT, 48, VIRTQ_DESC_F_INDIRECT, 0);
	ok(vdrv_setup(&blk, 1u << VIRTIO_F_INDIRECT_DESC), "bring-up with INDIRECT_DESC");
	set_desc(INDIRECT, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(INDIRECT, 1, DATA, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	set_desc(INDIRECT, 2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	set_desc(DESC, 5, INDIRECT, 48, VIRTQ_DESC_F_INDIRECT, 0);
	img_read(0, want, 512);
	vdrv_submit(&blk, 0, 5);
	ok(*gp(STATUS) == 0 && !memcmp(gp(DATA), want, 512) && !vdrv_needs_reset(&blk),
	   "IN through an indirect table");

	/* a masked vector is held in the PBA and sent when unmasked */
	mmio_w(blk.msix + 16 + 12, 1, 4);
	drain_irqs();
	blk_req(4, 0, 0, false);
	uint64_t pba = blk.msix + 0x1000; /* the PBA follows the table's page */
	ok(take_irq() < 0 && (mmio_r(pba, 8) & 2), "masked vector: no interrupt, PBA bit set");
	mmio_w(blk.msix + 16 + 12, 0, 4);
	ok(take_irq() == V_QUEUE && !(mmio_r(pba, 8) & 2), "unmasking delivers the pending interrupt");

	/* EVENT_IDX: the device publishes avail_event; used_event suppresses */
	ok(vdrv_setup(&blk, 1u << VIRTIO_F_EVENT_IDX), "bring-up with EVENT_IDX");
	uint16_t ev = 5; /* interrupt only after the 6th buffer */
	memcpy(gp(AVAIL + 4 + 2 * QSIZE), &ev, 2);
	blk_req(4, 0, 0, false);
	uint16_t aev;
	memcpy(&aev, gp(USED + 4 + 8 * QSIZE), 2);
	ok(aev == 1, "EVENT_IDX: avail_event follows the ring (%u)", aev);
	ok(take_irq() < 0, "EVENT_IDX: used_event suppresses the interrupt");
}

/* The disk's snapshot section: its size and its counters, which a load
 * puts back (they go on in a restored VM); a section of the size alone
 * (version 1, before the counters) loads and leaves them as they are. */
static void test_snapshot(struct virtio_blk *disk)
{
	struct virtio_blk_counters at_save, now;
	struct sec_buf s = { 0 };
	char err[200] = "";
	bool good;

	virtio_blk_counters(disk, &at_save);
	good = sh_round_trip(&vm, "virtio-blk", &s) && s.len == 16 + sizeof(at_save);
	ok(good && at_save.reads && at_save.writes,
	   "snapshot: the disk's section: its size and counters (%llu reads, %llu writes), saved and loaded back",
	   (unsigned long long)at_save.reads, (unsigned long long)at_save.writes);
	if (!good) {
		free(s.p);
		return;
	}
	blk_req(0, 0, 512, false);
	virtio_blk_counters(disk, &now);
	good = now.reads == at_save.reads + 1 && sh_load(&vm, "virtio-blk", s.p, s.len, err, sizeof(err)) == 0;
	virtio_blk_counters(disk, &now);
	ok(good && !memcmp(&now, &at_save, sizeof(now)), "a read after the snapshot, then the load: the counters "
	   "are the snapshot's again (%llu reads)%s%s", (unsigned long long)now.reads, err[0] ? ": " : "", err);

	blk_req(0, 0, 512, false);
	virtio_blk_counters(disk, &at_save);
	good = sh_load(&vm, "virtio-blk", s.p, 8, err, sizeof(err)) == 0;
	virtio_blk_counters(disk, &now);
	ok(good && !memcmp(&now, &at_save, sizeof(now)),
	   "a section of the size alone (version 1) loads, the counters left as they were%s%s", err[0] ? ": " : "",
	   err);

	good = sh_load(&vm, "virtio-blk", s.p, s.len, err, sizeof(err)) == 0;
	ok(good && sh_patch_refused(&vm, "virtio-blk", &s, 8, "\3", 1, err, sizeof(err)), "version 3 is refused: %s",
	   err);
	ok(sh_patch_refused(&vm, "virtio-blk", &s, 0, "\1", 1, err, sizeof(err)), "another disk size is refused: %s",
	   err);
	bool cut = true;
	for (size_t len = 0; len < s.len; len++)
		if (len != 8)
			cut &= sh_load(&vm, "virtio-blk", s.p, len, err, sizeof(err)) < 0;
	ok(cut, "every other cut of the section is refused");
	free(s.p);
}

static void test_ro(void)
{
	struct virtio_blk *ro = virtio_blk_create(&vm, bus, ro_path, true);
	ok(ro != NULL, "read-only disk at 00:02.0");
	/* blk_req drives blk: the read-only disk stands in for a while */
	struct vdrv saved = blk;
	vdrv_probe(&blk, 2);
	mmio_w(blk.common + 0x00, 0, 4);
	ok(mmio_r(blk.common + 0x04, 4) & (1 << 5), "read-only disk offers VIRTIO_BLK_F_RO");
	ok(vdrv_setup(&blk, 0), "read-only disk comes up");
	memset(gp(DATA), 0x5a, 512);
	blk_req(1, 0, 512, false);
	uint8_t buf[512], zero[512] = { 0 };
	int fd = open(ro_path, O_RDONLY);
	ok(fd >= 0 && pread(fd, buf, 512, 0) == 512 && !memcmp(buf, zero, 512) && *gp(STATUS) == 1,
	   "OUT to a read-only disk: IOERR, image unchanged");
	if (fd >= 0)
		close(fd);
	memcpy(gp(DATA), (uint64_t[2]){ 0, 1 }, 16);
	blk_req(13, 0, 16, false);
	ok(*gp(STATUS) == 1, "WRITE_ZEROES on a read-only disk: IOERR");
	mmio_w(blk.common + 0x14, 0, 1);
	blk = saved;
}

/* One malicious ring: set up, let build() write the descriptors, notify
 * with head, and check the device gave up cleanly. */
static void bad_case(const char *what, uint32_t lo, void (*build)(void), uint16_t head, uint16_t idx)
{
	uint8_t img_before[8192], img_after[8192];

	if (!vdrv_setup(&blk, lo)) {
		ok(false, "%s: device setup", what);
		return;
	}
	vdrv_msix(&blk, 2, V_CONFIG);
	drain_irqs();
	memset(gp(HDR), 0, 16);
	gp(HDR)[0] = 1; /* OUT at sector 0 if it were honoured */
	memset(gp(DATA), 0x77, 8192);
	build();
	img_read(0, img_before, sizeof(img_before));
	vdrv_post(&blk, 0, head);
	vdrv_publish(&blk, 0, idx);
	memcpy(snapshot, vm.ram, RAM_SIZE);
	vdrv_notify(&blk, 0);
	size_t changed = 0;
	for (size_t i = 0; i < RAM_SIZE; i++)
		if (vm.ram[i] != snapshot[i])
			changed++;
	img_read(0, img_after, sizeof(img_after));
	ok(vdrv_needs_reset(&blk) && vdrv_used_idx(&blk, 0) == 0 && changed == 0 &&
		   !memcmp(img_before, img_after, sizeof(img_before)),
	   "%s: NEEDS_RESET, nothing used, guest RAM and image untouched (%zu bytes changed)", what,
	   changed);
	ok(take_irq() == V_CONFIG, "%s: configuration interrupt", what);
	drain_irqs();
	/* it stays broken until reset */
	set_desc(DESC, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(DESC, 1, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	blk.avail_idx[0] = 1;
	vdrv_submit(&blk, 0, 0);
	if (!strcmp(what, "buffer outside RAM"))
		ok(vdrv_used_idx(&blk, 0) == 0, "a broken device ignores notifications until reset");
}

static void b_outside(void)
{
	set_desc(DESC, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(DESC, 1, 0x40000000, 512, VIRTQ_DESC_F_NEXT, 2);
	set_desc(DESC, 2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
}

static void b_straddle(void)
{
	set_desc(DESC, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(DESC, 1, RAM_SIZE - 256, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	set_desc(DESC, 2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
}

static void b_hole(void)
{
	set_desc(DESC, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(DESC, 1, PCI_MMIO_BASE, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	set_desc(DESC, 2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
}

static void b_wrap(void)
{
	set_desc(DESC, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(DESC, 1, ~0ull - 100, 512, VIRTQ_DESC_F_NEXT, 2);
	set_desc(DESC, 2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
}

static void b_huge(void)
{
	set_desc(DESC, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(DESC, 1, DATA, 0xffffffff, VIRTQ_DESC_F_NEXT, 2);
	set_desc(DESC, 2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
}

static void b_loop(void)
{
	set_desc(DESC, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(DESC, 1, DATA, 512, VIRTQ_DESC_F_NEXT, 2);
	set_desc(DESC, 2, DATA, 512, VIRTQ_DESC_F_NEXT, 1);
}

static void b_selfloop(void)
{
	set_desc(DESC, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 0);
}

static void b_next_range(void)
{
	set_desc(DESC, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 200);
}

static void b_plain(void)
{
	set_desc(DESC, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(DESC, 1, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
}

static void b_flags(void)
{
	set_desc(DESC, 0, HDR, 16, VIRTQ_DESC_F_NEXT | 0x10, 1);
	set_desc(DESC, 1, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
}

static void b_order(void)
{
	set_desc(DESC, 0, STATUS, 1, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	set_desc(DESC, 1, HDR, 16, 0, 0);
}

static void b_indirect_off(void)
{
	set_desc(INDIRECT, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(INDIRECT, 1, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	set_desc(DESC, 0, INDIRECT, 32, VIRTQ_DESC_F_INDIRECT, 0);
}

static void b_indirect_nested(void)
{
	set_desc(INDIRECT, 0, INDIRECT + 0x100, 32, VIRTQ_DESC_F_INDIRECT, 0);
	set_desc(INDIRECT + 0x100, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(INDIRECT + 0x100, 1, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	set_desc(DESC, 0, INDIRECT, 16, VIRTQ_DESC_F_INDIRECT, 0);
}

static void b_indirect_len(void)
{
	b_indirect_off();
	set_desc(DESC, 0, INDIRECT, 33, VIRTQ_DESC_F_INDIRECT, 0);
}

static void b_indirect_next(void)
{
	b_indirect_off();
	set_desc(DESC, 0, INDIRECT, 32, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
}

static void b_indirect_loop(void)
{
	set_desc(INDIRECT, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(INDIRECT, 1, DATA, 16, VIRTQ_DESC_F_NEXT, 0);
	set_desc(DESC, 0, INDIRECT, 32, VIRTQ_DESC_F_INDIRECT, 0);
}

static void b_indirect_range(void)
{
	set_desc(INDIRECT, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 2);
	set_desc(DESC, 0, INDIRECT, 32, VIRTQ_DESC_F_INDIRECT, 0);
}

static void b_indirect_outside(void)
{
	set_desc(DESC, 0, RAM_SIZE - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
}

static void test_malicious(void)
{
	const uint32_t ind = 1u << VIRTIO_F_INDIRECT_DESC;

	bad_case("buffer outside RAM", 0, b_outside, 0, 1);
	bad_case("buffer straddling the end of RAM", 0, b_straddle, 0, 1);
	bad_case("buffer in the PCI hole", 0, b_hole, 0, 1);
	bad_case("buffer address wrapping around", 0, b_wrap, 0, 1);
	bad_case("4 GiB length", 0, b_huge, 0, 1);
	bad_case("descriptor loop", 0, b_loop, 0, 1);
	bad_case("descriptor pointing at itself", 0, b_selfloop, 0, 1);
	bad_case("next index past the table", 0, b_next_range, 0, 1);
	bad_case("head index past the table", 0, b_plain, 99, 1);
	bad_case("avail index ahead by more than the queue size", 0, b_plain, 0, QSIZE + 1);
	bad_case("unknown descriptor flag", 0, b_flags, 0, 1);
	bad_case("readable after writable", 0, b_order, 0, 1);
	bad_case("indirect without the feature", 0, b_indirect_off, 0, 1);
	bad_case("nested indirect table", ind, b_indirect_nested, 0, 1);
	bad_case("indirect length not a multiple of 16", ind, b_indirect_len, 0, 1);
	bad_case("indirect with NEXT", ind, b_indirect_next, 0, 1);
	bad_case("loop inside an indirect table", ind, b_indirect_loop, 0, 1);
	bad_case("next past an indirect table", ind, b_indirect_range, 0, 1);
	bad_case("indirect table outside RAM", ind, b_indirect_outside, 0, 1);

	/* rings outside RAM are refused when the queue is enabled */
	mmio_w(blk.common + 0x14, 0, 1);
	mmio_w(blk.common + 0x14, 3, 1);
	mmio_w(blk.common + 0x08, 1, 4);
	mmio_w(blk.common + 0x0c, 1, 4);
	mmio_w(blk.common + 0x14, 0xb, 1);
	mmio_w(blk.common + 0x16, 0, 2);
	mmio_w(blk.common + 0x20, RAM_SIZE - 64, 8);
	mmio_w(blk.common + 0x28, AVAIL, 8);
	mmio_w(blk.common + 0x30, USED, 8);
	mmio_w(blk.common + 0x1c, 1, 2);
	ok(vdrv_needs_reset(&blk) && !mmio_r(blk.common + 0x1c, 2),
	   "descriptor table outside RAM: queue refused, NEEDS_RESET");
	mmio_w(blk.common + 0x14, 0, 1);
	mmio_w(blk.common + 0x14, 0xb, 1);
	mmio_w(blk.common + 0x18, 3, 2);
	mmio_w(blk.common + 0x20, DESC, 8);
	mmio_w(blk.common + 0x1c, 1, 2);
	ok(vdrv_needs_reset(&blk), "queue size not a power of two: NEEDS_RESET");
	mmio_w(blk.common + 0x16, 7, 2);
	mmio_w(blk.common + 0x1c, 1, 2);
	vdrv_notify(&blk, 7);
	ok(mmio_r(blk.common + 0x18, 2) == 0, "a queue that does not exist reads as size 0");

	/* a request without a status buffer is completed with length 0 */
	ok(vdrv_setup(&blk, 0), "reset clears NEEDS_RESET");
	set_desc(DESC, 0, HDR, 16, 0, 0);
	vdrv_submit(&blk, 0, 0);
	ok(vdrv_used_idx(&blk, 0) == 1 && vdrv_used_len(&blk, 0, 0) == 0 && !vdrv_needs_reset(&blk),
	   "request without a status byte: completed empty");
	/* the device works again after a reset */
	memset(gp(DATA), 0x3c, 512);
	blk_req(1, 8, 512, false);
	uint8_t buf[512];
	img_read(8 * 512, buf, 512);
	ok(*gp(STATUS) == 0 && !memcmp(buf, gp(DATA), 512), "after a reset the device serves requests");
	/* out-of-range MMIO offsets and sizes are harmless */
	mmio_w(blk.bar + 0x7ff8, ~0ull, 8);
	mmio_w(blk.msix + 16 * 63, ~0ull, 8);
	ok(mmio_r(blk.bar + 0x6000, 4) == 0, "unused BAR space reads 0");
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!vdrv_vm_create(RAM_SIZE, &stub_engine))
		return 1;
	snapshot = malloc(RAM_SIZE);
	img_fd = mkstemp(img_path);
	int ro_fd = mkstemp(ro_path);
	if (!snapshot || img_fd < 0 || ro_fd < 0 || ftruncate(img_fd, IMG_SIZE) || ftruncate(ro_fd, IMG_SIZE)) {
		perror("setup");
		return 1;
	}
	close(ro_fd);
	uint8_t pat[4096];
	for (int i = 0; i < 4096; i++)
		pat[i] = i ^ (i >> 8);
	if (pwrite(img_fd, pat, 4096, 0) != 4096) {
		perror("pwrite");
		return 1;
	}
	bus = pci_init(&vm);
	struct virtio_blk *disk = bus ? virtio_blk_create(&vm, bus, img_path, false) : NULL;
	ok(disk != NULL, "PCI bus and a virtio-blk disk");
	if (disk) {
		blk.qsize = QSIZE;
		blk.desc[0] = DESC;
		blk.avail[0] = AVAIL;
		blk.used[0] = USED;
		test_pci();
		test_features();
		vdrv_msix(&blk, 2, V_CONFIG);
		test_io();
		test_snapshot(disk);
		test_ro();
		test_malicious();
	}
	ok(virtio_blk_create(&vm, bus, "/nonexistent/accord.img", false) == NULL,
	   "a missing image is refused");
	unlink(img_path);
	unlink(ro_path);
	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail != 0;
}
