/* pci: bus 0 as a kernel enumerates it. Configuration mechanism #1
 * (0xcf8/0xcfc) and ECAM found through the ACPI MCFG table must agree; the
 * host bridge at 00:00.0, absent functions reading all ones, header types,
 * capability lists. With a virtio-blk disk attached (guest/families: the
 * "disk=" option, also on the command line): BAR sizing, the command
 * register, MSI-X, the virtio 1.x PCI capabilities and common
 * configuration, and the disk driven through a virtqueue (a sector written
 * and read back, then a run of requests timed). Expectations from the PCI Local Bus spec 3.0 (6.1-6.8),
 * the PCI Firmware spec 3.x (MCFG) and virtio 1.2 (4.1). */
#include "guest.h"

#define CONF_ADDR 0xcf8
#define CONF_DATA 0xcfc

#define PCI_VENDOR 0x00
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_CLASS 0x08
#define PCI_HEADER 0x0e
#define PCI_BAR0 0x10
#define PCI_CAP_PTR 0x34

#define CMD_IO (1u << 0)
#define CMD_MEM (1u << 1)
#define CMD_MASTER (1u << 2)
#define STATUS_CAPS (1u << 4)

#define CAP_VENDOR 0x09
#define CAP_MSIX 0x11

#define VIRTIO_VENDOR 0x1af4
#define VIRTIO_BLK_DEVICE 0x1042	/* 0x1040 + virtio device ID 2 */

/* virtio 1.2, 4.1.4: cfg_type of the vendor capabilities */
enum { VIRTIO_COMMON = 1, VIRTIO_NOTIFY, VIRTIO_ISR, VIRTIO_DEVICE, VIRTIO_PCI_CFG };

struct func {
	uint8_t dev, fn;
};

static struct func funcs[256];
static int nfuncs;
static uint64_t ecam_base;	/* 0: no MCFG entry for bus 0 */

static uint32_t conf1_addr(unsigned dev, unsigned fn, unsigned off)
{
	return 0x80000000u | dev << 11 | fn << 8 | (off & 0xfc);
}

static uint32_t cfg_read(unsigned dev, unsigned fn, unsigned off)
{
	outl(CONF_ADDR, conf1_addr(dev, fn, off));
	return inl(CONF_DATA);
}

static void cfg_write(unsigned dev, unsigned fn, unsigned off, uint32_t v)
{
	outl(CONF_ADDR, conf1_addr(dev, fn, off));
	outl(CONF_DATA, v);
}

static uint16_t cfg_read16(unsigned dev, unsigned fn, unsigned off)
{
	return cfg_read(dev, fn, off) >> (8 * (off & 2));
}

static uint8_t cfg_read8(unsigned dev, unsigned fn, unsigned off)
{
	return cfg_read(dev, fn, off) >> (8 * (off & 3));
}

static volatile uint32_t *ecam(unsigned dev, unsigned fn, unsigned off)
{
	return (volatile uint32_t *)(uintptr_t)(ecam_base | dev << 15 | fn << 12 | (off & 0xffc));
}

/* ---- enumeration through mechanism #1 ---- */

static void test_conf1(void)
{
	uint32_t v, id, class, hdr;
	int absent = -1;

	/* 3.2.2.3.2: CONFIG_ADDRESS is a read/write dword register */
	outl(CONF_ADDR, 0x80000000u);
	v = inl(CONF_ADDR);
	outl(CONF_ADDR, 0);
	check(v == 0x80000000u && inl(CONF_ADDR) == 0, "conf1.address_readback",
	      "CONFIG_ADDRESS read back 0x%x after writing 0x80000000", v);

	for (unsigned dev = 0; dev < 32; dev++) {
		unsigned nfn = 1;

		for (unsigned fn = 0; fn < nfn; fn++) {
			id = cfg_read(dev, fn, PCI_VENDOR);
			if ((id & 0xffff) == 0xffff) {
				if (fn == 0 && absent < 0)
					absent = dev;
				continue;
			}
			hdr = cfg_read8(dev, fn, PCI_HEADER);
			if (fn == 0 && (hdr & 0x80))
				nfn = 8;
			class = cfg_read(dev, fn, PCI_CLASS) >> 8;
			printf("# 00:%02x.%u %04x:%04x class %06x header %02x\n", dev, fn,
			       id & 0xffff, id >> 16, class, hdr);
			funcs[nfuncs].dev = dev;
			funcs[nfuncs].fn = fn;
			nfuncs++;
		}
	}

	/* the host bridge: base class 06h, sub-class 00h (appendix D) */
	id = cfg_read(0, 0, PCI_VENDOR);
	class = cfg_read(0, 0, PCI_CLASS) >> 8;
	hdr = cfg_read8(0, 0, PCI_HEADER);
	check((id & 0xffff) != 0xffff && (id & 0xffff) != 0, "host_bridge.present",
	      "00:00.0 vendor/device 0x%08x", id);
	check((class >> 8) == 0x0600, "host_bridge.class", "00:00.0 class code 0x%06x, expected 0x0600xx", class);
	check((hdr & 0x7f) == 0, "host_bridge.header_type", "00:00.0 header type 0x%02x, expected type 0", hdr);

	/* 6.1: a read of a function that does not exist ends in master
	 * abort, which returns all ones */
	if (absent < 0) {
		skip("absent.slot_all_ones", "every slot of bus 0 holds a device");
	} else {
		bool ones = true;

		for (unsigned off = 0; off < 0x40; off += 4)
			ones &= cfg_read(absent, 0, off) == 0xffffffffu;
		check(ones, "absent.slot_all_ones", "00:%02x.0 has no device but does not read all ones", absent);
	}
	if (hdr & 0x80)
		skip("absent.function_all_ones", "the host bridge is multi-function");
	else
		check(cfg_read(0, 1, PCI_VENDOR) == 0xffffffffu, "absent.function_all_ones",
		      "00:00.1 of a single-function device reads 0x%08x", cfg_read(0, 1, PCI_VENDOR));

	/* 6.2.1: header types 0, 1, 2 */
	bool types_ok = true;

	for (int i = 0; i < nfuncs; i++) {
		hdr = cfg_read8(funcs[i].dev, funcs[i].fn, PCI_HEADER);
		if ((hdr & 0x7f) > 2) {
			types_ok = false;
			fail("enum.header_types", "00:%02x.%u header type 0x%02x", funcs[i].dev, funcs[i].fn, hdr);
			break;
		}
	}
	if (types_ok)
		pass("enum.header_types");
}

/* 6.7: each capability's next pointer is 0 or a dword-aligned offset in
 * 0x40-0xff; the list ends. Returns the capability at `want` (first) or 0. */
static unsigned cap_walk(unsigned dev, unsigned fn, unsigned want, char *why, size_t n)
{
	bool seen[64] = { false };
	unsigned ptr, found = 0;

	why[0] = 0;
	if (!(cfg_read16(dev, fn, PCI_STATUS) & STATUS_CAPS))
		return 0;
	ptr = cfg_read8(dev, fn, PCI_CAP_PTR);
	for (int steps = 0; ptr; steps++) {
		if (ptr < 0x40 || (ptr & 3)) {
			snprintf(why, n, "00:%02x.%u: capability pointer 0x%02x", dev, fn, ptr);
			return found;
		}
		if (seen[ptr >> 2]) {
			snprintf(why, n, "00:%02x.%u: the list loops at 0x%02x", dev, fn, ptr);
			return found;
		}
		seen[ptr >> 2] = true;
		if (!found && cfg_read8(dev, fn, ptr) == want)
			found = ptr;
		ptr = cfg_read8(dev, fn, ptr + 1);
	}
	return found;
}

static void test_caps(void)
{
	char why[96];
	int with_caps = 0;

	for (int i = 0; i < nfuncs; i++) {
		if (cfg_read16(funcs[i].dev, funcs[i].fn, PCI_STATUS) & STATUS_CAPS)
			with_caps++;
		cap_walk(funcs[i].dev, funcs[i].fn, 0x100, why, sizeof(why));
		if (why[0]) {
			fail("caps.well_formed", "%s", why);
			return;
		}
	}
	printf("# %d of %d functions have a capability list\n", with_caps, nfuncs);
	pass("caps.well_formed");
}

/* ---- ECAM through the MCFG table (PCI Firmware spec 4.1.2) ---- */

static void test_ecam(void)
{
	const struct acpi_header *mcfg = acpi_table("MCFG");
	const uint8_t *e;
	unsigned n;
	int bad = -1;
	uint32_t a = 0, b = 0;
	unsigned boff = 0;

	check(acpi_rsdp() != NULL, "acpi.rsdp", "no RSDP with a valid checksum");
	if (!check(mcfg != NULL, "mcfg.present", "no MCFG table through the RSDP")) {
		skip("mcfg.bus0_entry", "no MCFG table");
		skip("ecam.agrees_with_conf1", "no MCFG table");
		skip("ecam.absent_all_ones", "no MCFG table");
		return;
	}
	/* 44 bytes of header and reserved, then 16-byte allocations */
	n = mcfg->length >= 44 ? (mcfg->length - 44) / 16 : 0;
	for (unsigned i = 0; i < n; i++) {
		uint64_t base;
		uint16_t seg;

		e = (const uint8_t *)mcfg + 44 + 16 * i;
		memcpy(&base, e, 8);
		memcpy(&seg, e + 8, 2);
		printf("# MCFG: segment %u buses %u-%u at 0x%lx\n", seg, e[10], e[11], base);
		if (seg == 0 && e[10] == 0)
			ecam_base = base;
	}
	if (!check(ecam_base && !(ecam_base & 0xfffff) && ecam_base < (4ul << 30), "mcfg.bus0_entry",
		   "no usable entry for segment 0, bus 0 (base 0x%lx)", ecam_base)) {
		ecam_base = 0;
		skip("ecam.agrees_with_conf1", "no ECAM region for bus 0");
		skip("ecam.absent_all_ones", "no ECAM region for bus 0");
		return;
	}

	for (int i = 0; i < nfuncs && bad < 0; i++)
		for (boff = 0; boff < 0x40; boff += 4) {
			a = cfg_read(funcs[i].dev, funcs[i].fn, boff);
			b = *ecam(funcs[i].dev, funcs[i].fn, boff);
			if (a != b) {
				bad = i;
				break;
			}
		}
	if (bad >= 0)
		fail("ecam.agrees_with_conf1", "00:%02x.%u offset 0x%02x: 0x%08x through 0xcf8, 0x%08x through ECAM",
		     funcs[bad].dev, funcs[bad].fn, boff, a, b);
	else
		check(nfuncs > 0, "ecam.agrees_with_conf1", "no functions found");

	for (unsigned dev = 0; dev < 32; dev++) {
		if ((cfg_read(dev, 0, PCI_VENDOR) & 0xffff) != 0xffff)
			continue;
		check(*ecam(dev, 0, 0) == 0xffffffffu && *ecam(dev, 0, 8) == 0xffffffffu,
		      "ecam.absent_all_ones", "00:%02x.0 through ECAM reads 0x%08x", dev, *ecam(dev, 0, 0));
		return;
	}
	skip("ecam.absent_all_ones", "every slot of bus 0 holds a device");
}

/* ---- a virtio-blk device ---- */

struct bar {
	uint64_t addr, size;
	bool io, is64, present;
};

static struct bar bars[6];

/* 6.2.5.1: write all ones, read the size mask back, restore */
static void test_bars(unsigned dev, unsigned fn)
{
	uint16_t cmd = cfg_read16(dev, fn, PCI_COMMAND);
	bool pow2 = true, restored = true, aligned = true, any_mem = false;
	char why[128] = "";

	/* no decoding while a BAR holds the mask */
	cfg_write(dev, fn, PCI_COMMAND, cmd & ~(CMD_IO | CMD_MEM));
	for (int i = 0; i < 6; i++) {
		unsigned off = PCI_BAR0 + 4 * i;
		uint32_t orig = cfg_read(dev, fn, off), mask, orig_hi = 0, mask_hi = 0;
		struct bar *b = &bars[i];

		cfg_write(dev, fn, off, 0xffffffffu);
		mask = cfg_read(dev, fn, off);
		cfg_write(dev, fn, off, orig);
		if (cfg_read(dev, fn, off) != orig)
			restored = false;
		if (!mask)
			continue;
		b->present = true;
		b->io = orig & 1;
		if (b->io) {
			b->addr = orig & ~3u;
			b->size = (uint32_t)~(mask & ~3u) + 1;
			b->size &= 0xffff;
		} else {
			b->is64 = ((orig >> 1) & 3) == 2;
			b->addr = orig & ~0xfu;
			if (b->is64 && i < 5) {
				orig_hi = cfg_read(dev, fn, off + 4);
				cfg_write(dev, fn, off + 4, 0xffffffffu);
				mask_hi = cfg_read(dev, fn, off + 4);
				cfg_write(dev, fn, off + 4, orig_hi);
				if (cfg_read(dev, fn, off + 4) != orig_hi)
					restored = false;
				b->addr |= (uint64_t)orig_hi << 32;
			}
			b->size = ~(((uint64_t)mask_hi << 32) | (mask & ~0xfu)) + 1;
			if (!b->is64)
				b->size &= 0xffffffffu;
			any_mem = true;
		}
		printf("# BAR%d: %s%s at 0x%lx, size 0x%lx\n", i, b->io ? "I/O" : "memory",
		       b->is64 ? " 64-bit" : "", b->addr, b->size);
		if (!b->size || (b->size & (b->size - 1))) {
			pow2 = false;
			snprintf(why, sizeof(why), "BAR%d: mask 0x%08x gives size 0x%lx", i, mask, b->size);
		} else if (b->addr & (b->size - 1)) {
			aligned = false;
		}
		if (b->is64)
			i++;
	}
	cfg_write(dev, fn, PCI_COMMAND, cmd);

	check(any_mem, "bar.memory_bar", "the device has no memory BAR");
	check(pow2, "bar.size_power_of_two", "%s", why);
	check(restored, "bar.restored", "a BAR did not read back its value after sizing");
	check(aligned, "bar.naturally_aligned", "a BAR's address is not a multiple of its size");
}

static void test_command(unsigned dev, unsigned fn)
{
	uint16_t cmd = cfg_read16(dev, fn, PCI_COMMAND), got;
	bool io_bar = false;

	cfg_write(dev, fn, PCI_COMMAND, cmd | CMD_MEM | CMD_MASTER);
	got = cfg_read16(dev, fn, PCI_COMMAND);
	check((got & (CMD_MEM | CMD_MASTER)) == (CMD_MEM | CMD_MASTER), "command.mem_master_set",
	      "wrote 0x%04x, read 0x%04x", cmd | CMD_MEM | CMD_MASTER, got);
	cfg_write(dev, fn, PCI_COMMAND, cmd & ~(CMD_MEM | CMD_MASTER));
	got = cfg_read16(dev, fn, PCI_COMMAND);
	check(!(got & (CMD_MEM | CMD_MASTER)), "command.mem_master_clear", "wrote 0x%04x, read 0x%04x",
	      cmd & ~(CMD_MEM | CMD_MASTER), got);
	for (int i = 0; i < 6; i++)
		io_bar |= bars[i].present && bars[i].io;
	if (io_bar) {
		cfg_write(dev, fn, PCI_COMMAND, cmd | CMD_IO);
		got = cfg_read16(dev, fn, PCI_COMMAND);
		check(got & CMD_IO, "command.io_set", "wrote 0x%04x, read 0x%04x", cmd | CMD_IO, got);
	} else {
		skip("command.io_set", "the device has no I/O BAR");
	}
	cfg_write(dev, fn, PCI_COMMAND, cmd);

	if (ecam_base) {
		*ecam(dev, fn, PCI_COMMAND) = cmd ^ CMD_MASTER;
		got = cfg_read16(dev, fn, PCI_COMMAND);
		*ecam(dev, fn, PCI_COMMAND) = cmd;
		check(got == (cmd ^ CMD_MASTER), "ecam.write_seen_by_conf1",
		      "wrote 0x%04x through ECAM, 0xcf8 reads 0x%04x", cmd ^ CMD_MASTER, got);
	} else {
		skip("ecam.write_seen_by_conf1", "no ECAM region for bus 0");
	}
}

/* a BAR and a range in it, as an MSI-X or virtio capability names it */
static bool in_bar(unsigned bir, uint64_t off, uint64_t len)
{
	return bir < 6 && bars[bir].present && !bars[bir].io && off + len <= bars[bir].size;
}

/* PCI 3.0 6.8.2 */
static void test_msix(unsigned dev, unsigned fn, unsigned cap)
{
	uint16_t ctrl = cfg_read16(dev, fn, cap + 2);
	uint32_t table = cfg_read(dev, fn, cap + 4), pba = cfg_read(dev, fn, cap + 8);
	unsigned n = (ctrl & 0x7ff) + 1;

	printf("# MSI-X: %u vectors, table BAR%u+0x%x, PBA BAR%u+0x%x\n", n, table & 7, table & ~7u, pba & 7,
	       pba & ~7u);
	check(!(ctrl & 0xc000), "msix.disabled_at_reset", "message control 0x%04x: enable or function mask set", ctrl);
	check(in_bar(table & 7, table & ~7u, 16ul * n), "msix.table_in_bar",
	      "%u entries at BAR%u+0x%x do not fit the BAR", n, table & 7, table & ~7u);
	check(in_bar(pba & 7, pba & ~7u, 8ul * ((n + 63) / 64)), "msix.pba_in_bar",
	      "the PBA at BAR%u+0x%x does not fit the BAR", pba & 7, pba & ~7u);
}

/* ---- driving the disk: one split virtqueue (virtio 1.2, 2.7) ---- */

#define VQ_SIZE 16
#define DESC_NEXT 1
#define DESC_WRITE 2
#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_T_GET_ID 8
#define BLK_REQS 2000 /* requests timed for the notify rate */
#define WAIT_TICKS 30000000000ull

struct vq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

static struct {
	struct vq_desc desc[VQ_SIZE];
} vq_table __attribute__((aligned(4096)));
static struct {
	uint16_t flags, idx, ring[VQ_SIZE], used_event;
} vq_avail __attribute__((aligned(4096)));
static struct {
	uint16_t flags, idx;
	struct {
		uint32_t id, len;
	} ring[VQ_SIZE];
	uint16_t avail_event;
} vq_used __attribute__((aligned(4096)));
static struct {
	uint32_t type, reserved;
	uint64_t sector;
} blk_hdr;
static uint8_t blk_data[512] __attribute__((aligned(512)));
static volatile uint8_t blk_status;
static volatile uint16_t *vq_notify;

/* one request: header, a data buffer (to the device or from it), status;
 * polls the used ring (no interrupt). false when the device never answered. */
static bool blk_do(uint32_t type, uint64_t sector, void *data, uint32_t len, bool to_guest)
{
	uint16_t idx = vq_avail.idx;
	uint64_t t0;

	blk_hdr.type = type;
	blk_hdr.reserved = 0;
	blk_hdr.sector = sector;
	blk_status = 0xee;
	vq_table.desc[0] = (struct vq_desc){ (uintptr_t)&blk_hdr, sizeof(blk_hdr), DESC_NEXT, 1 };
	vq_table.desc[1] = (struct vq_desc){ (uintptr_t)data, len, DESC_NEXT | (to_guest ? DESC_WRITE : 0), 2 };
	vq_table.desc[2] = (struct vq_desc){ (uintptr_t)&blk_status, 1, DESC_WRITE, 0 };
	vq_avail.ring[idx % VQ_SIZE] = 0;
	asm volatile("" ::: "memory");
	*(volatile uint16_t *)&vq_avail.idx = idx + 1;
	asm volatile("mfence" ::: "memory");
	*vq_notify = 0;
	t0 = rdtsc();
	while (*(volatile uint16_t *)&vq_used.idx != (uint16_t)(idx + 1)) {
		if (rdtsc() - t0 > WAIT_TICKS)
			return false;
		asm volatile("pause");
	}
	return true;
}

#define VEC_MSIX 0x60
#define MSIX_ENABLE 0x8000
#define MSIX_REPROGRAMS 24
static volatile unsigned msix_count, msix_count2;

static void msix_handler(struct trap_frame *f)
{
	msix_count++;
	lapic_write(LAPIC_EOI, 0);
}

static void msix_handler2(struct trap_frame *f)
{
	msix_count2++;
	lapic_write(LAPIC_EOI, 0);
}

/* wait for n interrupts in all, and a little more for any extra one */
static void msix_wait(unsigned n)
{
	uint64_t t0 = rdtsc();

	while (msix_count + msix_count2 < n && rdtsc() - t0 < WAIT_TICKS)
		asm volatile("pause");
	t0 = rdtsc();
	while (rdtsc() - t0 < WAIT_TICKS / 1000)
		asm volatile("pause");
}

/* 4.1.4.3, 4.1.5.1.2: queue 0's used buffer notification as MSI-X vector
 * 0 (vec: queue_msix_vector as read back before the queue was enabled), a
 * message to this CPU's LAPIC once MSI-X is enabled (PCI 3.0 6.8.2): one
 * request, one interrupt. The device is up, queue 0 as test_blk_io left
 * it. */
static void test_blk_msix(unsigned dev, unsigned fn, unsigned cap, uint16_t vec)
{
	uint32_t table = cfg_read(dev, fn, cap + 4), ctrl = cfg_read(dev, fn, cap);
	volatile uint32_t *e;
	bool ok;

	if (!in_bar(table & 7, table & ~7u, 16)) {
		skip("virtio.blk_msix_interrupt", "no MSI-X table in a memory BAR");
		skip("virtio.blk_msix_reprogrammed", "no MSI-X table in a memory BAR");
		return;
	}
	e = (volatile uint32_t *)(uintptr_t)(bars[table & 7].addr + (table & ~7u));
	trap_set_handler(VEC_MSIX, msix_handler);
	lapic_write(LAPIC_SVR, 0x1ff);
	e[0] = (uint32_t)LAPIC_BASE | lapic_id() << 12;
	e[1] = 0;
	e[2] = VEC_MSIX;
	e[3] = 0; /* unmasked */
	cfg_write(dev, fn, cap, ctrl | MSIX_ENABLE << 16);
	/* a BIOS (SeaBIOS under QEMU) may leave the 8259 delivering IRQ0 on
	 * vector 8 through LINT0: mask both PICs before the STI */
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
	vq_avail.flags = 0;
	msix_count = msix_count2 = 0;
	sti();
	ok = blk_do(BLK_T_GET_ID, 0, blk_data, 20, true);
	msix_wait(1);
	cli();
	check(ok && vec == 0 && msix_count == 1 && !msix_count2, "virtio.blk_msix_interrupt",
	      "request %s, queue_msix_vector reads 0x%x, %u interrupts (vector 0x%x)", ok ? "done" : "not answered", vec,
	      msix_count, VEC_MSIX);

	/* PCI 3.0 6.8.2.9: the entry masked, its data changed, unmasked, over
	 * and over, as a driver moving a vector between CPUs does: each
	 * request interrupts once, on the vector the entry holds then */
	trap_set_handler(VEC_MSIX + 1, msix_handler2);
	unsigned want1 = 0, want2 = 0, i;
	for (i = 0; i < MSIX_REPROGRAMS; i++) {
		e[3] = 1;
		e[2] = VEC_MSIX + (i & 1);
		e[3] = 0;
		if (i & 1)
			want2++;
		else
			want1++;
		sti();
		ok = blk_do(BLK_T_GET_ID, 0, blk_data, 20, true);
		msix_wait(1 + want1 + want2);
		cli();
		if (!ok || msix_count != 1 + want1 || msix_count2 != want2)
			break;
	}
	check(i == MSIX_REPROGRAMS, "virtio.blk_msix_reprogrammed",
	      "%u reprogrammings: at %u request %s, %u interrupts on 0x%x (want %u), %u on 0x%x (want %u)",
	      MSIX_REPROGRAMS, i, ok ? "done" : "not answered", msix_count, VEC_MSIX, 1 + want1, msix_count2,
	      VEC_MSIX + 1, want2);
	vq_avail.flags = 1;
	e[3] = 1;
	cfg_write(dev, fn, cap, ctrl);
}

/* 3.1.1: bring the device up with queue 0, no interrupts (the driver
 * polls); a write and a read of the same sector must agree, and a run of
 * requests is timed (a "#" line: notifies per second, not checked); then
 * one request with an MSI-X interrupt */
static void test_blk_io(unsigned dev, unsigned fn, unsigned msix, volatile uint8_t *common, volatile uint8_t *notify,
			uint32_t mult)
{
	uint8_t want[512];
	uint16_t qsize, qoff, vec;
	bool ok;

	common[20] = 0;
	common[20] = 1;
	common[20] = 3;
	*(volatile uint32_t *)(common + 8) = 0;	/* driver_feature_select */
	*(volatile uint32_t *)(common + 12) = 0;
	*(volatile uint32_t *)(common + 8) = 1;
	*(volatile uint32_t *)(common + 12) = 1;	/* VERSION_1 only */
	common[20] = 0xb;
	if (!check(common[20] & 8, "virtio.blk_features_ok", "device_status 0x%02x after FEATURES_OK", common[20]))
		return;
	*(volatile uint16_t *)(common + 22) = 0;	/* queue_select */
	qsize = *(volatile uint16_t *)(common + 24);
	if (!check(qsize >= VQ_SIZE, "virtio.blk_queue_size", "queue 0 size %u", qsize))
		return;
	*(volatile uint16_t *)(common + 24) = VQ_SIZE;
	/* MSI-X vector 0, disabled until test_blk_msix: the polled requests
	 * interrupt nothing */
	*(volatile uint16_t *)(common + 26) = msix ? 0 : 0xffff;
	vec = *(volatile uint16_t *)(common + 26);
	*(volatile uint64_t *)(common + 32) = (uintptr_t)&vq_table;
	*(volatile uint64_t *)(common + 40) = (uintptr_t)&vq_avail;
	*(volatile uint64_t *)(common + 48) = (uintptr_t)&vq_used;
	qoff = *(volatile uint16_t *)(common + 30);
	*(volatile uint16_t *)(common + 28) = 1;
	vq_avail.flags = 1;	/* VRING_AVAIL_F_NO_INTERRUPT */
	common[20] = 0xf;
	vq_notify = (volatile uint16_t *)(notify + (uint64_t)qoff * mult);

	for (int i = 0; i < 512; i++)
		want[i] = blk_data[i] = (uint8_t)(i * 7 + 0x5a);
	ok = blk_do(BLK_T_OUT, 3, blk_data, 512, false);
	check(ok && blk_status == 0, "virtio.blk_write", "%s, status 0x%02x", ok ? "done" : "no answer", blk_status);
	memset(blk_data, 0, sizeof(blk_data));
	ok = blk_do(BLK_T_IN, 3, blk_data, 512, true);
	check(ok && blk_status == 0 && !memcmp(blk_data, want, 512), "virtio.blk_read_back",
	      "%s, status 0x%02x, data %s", ok ? "done" : "no answer", blk_status,
	      memcmp(blk_data, want, 512) ? "differs" : "matches");

	uint64_t t0 = rdtsc(), ticks;
	int n;
	for (n = 0; n < BLK_REQS; n++)
		if (!blk_do(BLK_T_GET_ID, 0, blk_data, 20, true) || blk_status != 0)
			break;
	ticks = rdtsc() - t0;
	check(n == BLK_REQS, "virtio.blk_many_requests", "request %d of %d failed (status 0x%02x)", n, BLK_REQS,
	      blk_status);
	struct cpuid_regs r = cpuid(0, 0);
	uint64_t hz = 0;
	if (r.eax >= 0x15) {
		r = cpuid(0x15, 0);
		if (r.eax && r.ebx && r.ecx)
			hz = (uint64_t)r.ecx * r.ebx / r.eax;
	}
	if (n)
		printf("# virtio-blk: %d GET_ID requests, %lu TSC ticks each%s", n, ticks / n, hz ? "" : "\n");
	if (n && hz)
		printf(", %lu requests (notifies) per second\n", (uint64_t)n * hz / (ticks ? ticks : 1));
	if (msix) {
		test_blk_msix(dev, fn, msix, vec);
	} else {
		skip("virtio.blk_msix_interrupt", "no MSI-X capability");
		skip("virtio.blk_msix_reprogrammed", "no MSI-X capability");
	}
	common[20] = 0;
}

static void test_virtio(unsigned dev, unsigned fn, unsigned msix, uint64_t disk_bytes)
{
	uint64_t where[6] = { 0 }, lens[6] = { 0 }, bar_of[6] = { 0 };
	bool found[6] = { false }, fit = true, aligned = true;
	uint32_t mult = 0;
	unsigned cap_len_notify = 0;
	char why[128] = "";

	for (unsigned ptr = cfg_read8(dev, fn, PCI_CAP_PTR), steps = 0; ptr && steps < 48;
	     ptr = cfg_read8(dev, fn, ptr + 1), steps++) {
		unsigned type, bar, cap_len;
		uint32_t off, len;

		if (cfg_read8(dev, fn, ptr) != CAP_VENDOR)
			continue;
		cap_len = cfg_read8(dev, fn, ptr + 2);
		type = cfg_read8(dev, fn, ptr + 3);
		bar = cfg_read8(dev, fn, ptr + 4);
		off = cfg_read(dev, fn, ptr + 8);
		len = cfg_read(dev, fn, ptr + 12);
		printf("# virtio cap at 0x%02x: type %u len %u BAR%u+0x%x length 0x%x\n", ptr, type, cap_len, bar, off,
		       len);
		if (type < VIRTIO_COMMON || type > VIRTIO_PCI_CFG || found[type])
			continue;	/* 4.1.4: the driver uses the first of each type */
		found[type] = true;
		if (cap_len < 16) {
			fit = false;
			snprintf(why, sizeof(why), "type %u: cap_len %u < 16", type, cap_len);
		}
		if (type == VIRTIO_PCI_CFG)
			continue;
		where[type] = off;
		lens[type] = len;
		bar_of[type] = bar;
		if (!in_bar(bar, off, len)) {
			fit = false;
			snprintf(why, sizeof(why), "type %u: BAR%u+0x%x length 0x%x is outside the BAR", type, bar,
				 off, len);
		}
		/* 4.1.4.3, 4.1.4.4, 4.1.4.6: offsets the driver may rely on */
		if (((type == VIRTIO_COMMON || type == VIRTIO_DEVICE) && (off & 3)) ||
		    (type == VIRTIO_NOTIFY && (off & 1)))
			aligned = false;
		if (type == VIRTIO_NOTIFY) {
			cap_len_notify = cap_len;
			mult = cfg_read(dev, fn, ptr + 16);
		}
	}
	check(found[VIRTIO_COMMON], "virtio.cap_common", "no VIRTIO_PCI_CAP_COMMON_CFG");
	check(found[VIRTIO_NOTIFY], "virtio.cap_notify", "no VIRTIO_PCI_CAP_NOTIFY_CFG");
	check(found[VIRTIO_ISR], "virtio.cap_isr", "no VIRTIO_PCI_CAP_ISR_CFG");
	check(found[VIRTIO_DEVICE], "virtio.cap_device", "no VIRTIO_PCI_CAP_DEVICE_CFG (virtio-blk has one)");
	check(found[VIRTIO_PCI_CFG], "virtio.cap_pci_cfg", "no VIRTIO_PCI_CAP_PCI_CFG (4.1.4.9: MUST)");
	check(fit, "virtio.caps_in_bars", "%s", why);
	check(aligned, "virtio.caps_aligned", "a common/device cap offset is not 4-byte or notify 2-byte aligned");
	/* 4.1.4.4: the multiplier is an even power of two, or 0 */
	check(!found[VIRTIO_NOTIFY] || (cap_len_notify >= 20 && (mult & (mult - 1)) == 0 && !(mult & 1)),
	      "virtio.notify_multiplier", "notify cap_len %u, notify_off_multiplier %u", cap_len_notify, mult);
	/* 4.1.4.3: struct virtio_pci_common_cfg through queue_device is 56 bytes */
	check(!found[VIRTIO_COMMON] || lens[VIRTIO_COMMON] >= 56, "virtio.common_cfg_size",
	      "common configuration length 0x%lx < 56", lens[VIRTIO_COMMON]);
	if (!found[VIRTIO_COMMON] || !found[VIRTIO_DEVICE] || !fit) {
		skip("virtio.version_1_offered", "no usable common configuration");
		skip("virtio.reset_status", "no usable common configuration");
		skip("virtio.blk_capacity", "no usable device configuration");
		return;
	}

	uint16_t cmd = cfg_read16(dev, fn, PCI_COMMAND);
	volatile uint8_t *common = (volatile uint8_t *)(uintptr_t)(bars[bar_of[VIRTIO_COMMON]].addr +
								   where[VIRTIO_COMMON]);
	volatile uint8_t *devcfg = (volatile uint8_t *)(uintptr_t)(bars[bar_of[VIRTIO_DEVICE]].addr +
								   where[VIRTIO_DEVICE]);
	uint32_t feat_hi;
	uint8_t status;
	uint64_t cap_lo, cap_hi;

	cfg_write(dev, fn, PCI_COMMAND, cmd | CMD_MEM);
	*(volatile uint32_t *)(common + 0) = 1;	/* device_feature_select */
	feat_hi = *(volatile uint32_t *)(common + 4);
	/* firmware may have driven the device (SeaBIOS boots from it):
	 * writing 0 resets it, and the reset is complete once device_status
	 * reads 0 (4.1.4.3.1, 2.4.1) */
	common[20] = 0;
	status = common[20];
	cap_lo = *(volatile uint32_t *)(devcfg + 0);
	cap_hi = *(volatile uint32_t *)(devcfg + 4);
	if (found[VIRTIO_NOTIFY] && in_bar(bar_of[VIRTIO_NOTIFY], where[VIRTIO_NOTIFY], lens[VIRTIO_NOTIFY])) {
		cfg_write(dev, fn, PCI_COMMAND, cmd | CMD_MEM | CMD_MASTER);
		test_blk_io(dev, fn, msix, common, (volatile uint8_t *)(uintptr_t)(bars[bar_of[VIRTIO_NOTIFY]].addr +
								     where[VIRTIO_NOTIFY]),
			    mult);
	}
	cfg_write(dev, fn, PCI_COMMAND, cmd);

	/* 6.1: VIRTIO_F_VERSION_1 (feature bit 32) */
	check(feat_hi & 1, "virtio.version_1_offered", "device features 63:32 = 0x%08x", feat_hi);
	check(status == 0, "virtio.reset_status", "device_status 0x%02x after writing 0", status);
	/* 5.2.4: capacity in 512-byte sectors */
	check((cap_hi << 32 | cap_lo) == disk_bytes / 512, "virtio.blk_capacity",
	      "capacity %lu sectors, the disk has %lu bytes", cap_hi << 32 | cap_lo, disk_bytes);
}

static void test_device(void)
{
	uint64_t disk_bytes;
	int at = -1;
	char why[96];
	unsigned msix;

	if (!cmdline_uint("disk", &disk_bytes)) {
		skip("virtio.present", "no disk=SIZE on the command line: no device to check");
		return;
	}
	for (int i = 0; i < nfuncs && at < 0; i++)
		if (cfg_read(funcs[i].dev, funcs[i].fn, PCI_VENDOR) ==
		    (VIRTIO_BLK_DEVICE << 16 | VIRTIO_VENDOR))
			at = i;
	/* 4.1.2.1: vendor 1AF4h, device 1040h + the virtio device ID */
	if (!check(at >= 0, "virtio.present", "no %04x:%04x (virtio-blk, non-transitional) on bus 0",
		   VIRTIO_VENDOR, VIRTIO_BLK_DEVICE))
		return;
	unsigned dev = funcs[at].dev, fn = funcs[at].fn;

	check((cfg_read8(dev, fn, PCI_HEADER) & 0x7f) == 0, "virtio.header_type", "header type 0x%02x",
	      cfg_read8(dev, fn, PCI_HEADER));
	test_bars(dev, fn);
	test_command(dev, fn);
	msix = cap_walk(dev, fn, CAP_MSIX, why, sizeof(why));
	if (check(msix != 0, "msix.present", "no MSI-X capability%s%s", why[0] ? ": " : "", why))
		test_msix(dev, fn, msix);
	test_virtio(dev, fn, msix, disk_bytes);
}

void test_main(void)
{
	test_conf1();
	test_caps();
	test_ecam();
	test_device();
}
