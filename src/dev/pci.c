/* The PCI host bridge: bus 0 with configuration mechanism #1 at
 * 0xcf8/0xcfc and ECAM at PCI_ECAM_BASE (announced by an MCFG table), a
 * DSDT root bridge whose _CRS gives the guest the bus, I/O and 32-bit
 * memory windows, and the decoding of the devices' memory BARs inside
 * that window. Devices interrupt through MSI-X, so there is no _PRT and
 * plugged devices report no INTx pin.
 *
 * Everything runs under vm->io_lock (the engines take it around bus
 * accesses); pci_init and pci_add run before the vCPUs start. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "boot/aml.h"
#include "boot/boot.h"
#include "dev/pci.h"
#include "vm/vm.h"
#include "vm/snapshot.h"

struct pci_bus {
	struct vm *vm;
	uint32_t conf1_addr;
	struct pci_dev host;
	struct pci_dev *dev[PCI_MAX_SLOTS];
	uint32_t next_mmio; /* where pci_add places the next BAR */
};

/* The ACPI hooks are process-wide; they emit the PCI objects only for VMs
 * that have a bus. */
#define MAX_BUSES 16
static pthread_mutex_t buses_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pci_bus *buses[MAX_BUSES];

static bool vm_has_pci(struct vm *vm)
{
	bool found = false;

	pthread_mutex_lock(&buses_lock);
	for (int i = 0; i < MAX_BUSES; i++)
		if (buses[i] && buses[i]->vm == vm)
			found = true;
	pthread_mutex_unlock(&buses_lock);
	return found;
}


void pci_set_ids(struct pci_dev *d, uint16_t vendor, uint16_t device, uint32_t class_rev)
{
	pci_put_le(d->cfg + PCI_VENDOR_ID, vendor, 2);
	pci_put_le(d->cfg + PCI_DEVICE_ID, device, 2);
	pci_put_le(d->cfg + PCI_REVISION, class_rev, 4);
	/* memory space, bus master, parity, SERR#, INTx disable */
	pci_put_le(d->wmask + PCI_COMMAND, 0x0546, 2);
	d->wmask[PCI_INT_LINE] = 0xff;
	d->wmask[0x0c] = 0xff; /* cache line size */
	d->wmask[0x0d] = 0xff; /* latency timer */
}

unsigned pci_add_cap(struct pci_dev *d, uint8_t id, unsigned len)
{
	unsigned off = d->cap_end ? d->cap_end : 0x40;

	off = (off + 3) & ~3u;
	if (len < 2 || off + len > sizeof(d->cfg))
		return 0;
	d->cfg[off] = id;
	d->cfg[off + 1] = 0;
	if (d->cap_last)
		d->cfg[d->cap_last + 1] = off;
	else
		d->cfg[PCI_CAP_PTR] = off;
	d->cfg[PCI_STATUS] |= PCI_STATUS_CAPS;
	d->cap_last = off;
	d->cap_end = off + len;
	return off;
}

uint32_t pci_bar_addr(const struct pci_dev *d, int bar)
{
	if (!d->bar[bar].size || !(d->cfg[PCI_COMMAND] & PCI_CMD_MEM))
		return 0;
	return pci_get_le(d->cfg + PCI_BAR0 + 4 * bar, 4) & ~0xfu;
}

static struct pci_dev *pci_find(struct pci_bus *b, unsigned devfn)
{
	unsigned slot = devfn >> 3;

	if ((devfn & 7) || slot >= PCI_MAX_SLOTS)
		return NULL;
	return slot == 0 ? &b->host : b->dev[slot];
}

uint32_t pci_cfg_read(struct pci_bus *b, unsigned devfn, unsigned off, int size)
{
	struct pci_dev *d = pci_find(b, devfn);

	if (!d)
		return size == 4 ? 0xffffffffu : (1u << (size * 8)) - 1;
	if (off + size > sizeof(d->cfg))
		return 0; /* no extended capabilities */
	if (d->cfg_reading)
		d->cfg_reading(d, off, size);
	return pci_get_le(d->cfg + off, size);
}

void pci_cfg_write(struct pci_bus *b, unsigned devfn, unsigned off, uint32_t val, int size)
{
	struct pci_dev *d = pci_find(b, devfn);

	if (!d || off + size > sizeof(d->cfg))
		return;
	for (int i = 0; i < size; i++, val >>= 8) {
		uint8_t m = d->wmask[off + i];

		d->cfg[off + i] = (d->cfg[off + i] & ~m) | (val & m);
	}
	if (d->cfg_written)
		d->cfg_written(d, off, size);
}

/* 0xcf8: the address register takes 32-bit accesses only */
static uint64_t conf1_addr_read(void *opaque, uint64_t off, int size)
{
	struct pci_bus *b = opaque;

	return size == 4 ? b->conf1_addr : (1ull << (size * 8)) - 1;
}

static void conf1_addr_write(void *opaque, uint64_t off, uint64_t val, int size)
{
	struct pci_bus *b = opaque;

	if (size == 4)
		b->conf1_addr = val & 0x80fffffcu;
}

/* the bus, device and function the address register selects, or -1 */
static int conf1_target(struct pci_bus *b)
{
	if (!(b->conf1_addr & 0x80000000u) || ((b->conf1_addr >> 16) & 0xff))
		return -1;
	return (b->conf1_addr >> 8) & 0xff;
}

static uint64_t conf1_data_read(void *opaque, uint64_t off, int size)
{
	struct pci_bus *b = opaque;
	int devfn = conf1_target(b);

	if (devfn < 0 || off + size > 4)
		return (1ull << (size * 8)) - 1;
	return pci_cfg_read(b, devfn, (b->conf1_addr & 0xfc) + off, size);
}

static void conf1_data_write(void *opaque, uint64_t off, uint64_t val, int size)
{
	struct pci_bus *b = opaque;
	int devfn = conf1_target(b);

	if (devfn >= 0 && off + size <= 4)
		pci_cfg_write(b, devfn, (b->conf1_addr & 0xfc) + off, val, size);
}

static const struct io_ops conf1_addr_ops = { conf1_addr_read, conf1_addr_write };
static const struct io_ops conf1_data_ops = { conf1_data_read, conf1_data_write };

/* ECAM: bus 0 only, one 4 KiB page per function; naturally aligned
 * accesses of up to 4 bytes */
static uint64_t ecam_read(void *opaque, uint64_t off, int size)
{
	unsigned reg = off & 0xfff;

	if (size > 4 || (reg & (size - 1)))
		return size == 8 ? ~0ull : (1ull << (size * 8)) - 1;
	return pci_cfg_read(opaque, off >> 12, reg, size);
}

static void ecam_write(void *opaque, uint64_t off, uint64_t val, int size)
{
	unsigned reg = off & 0xfff;

	if (size <= 4 && !(reg & (size - 1)))
		pci_cfg_write(opaque, off >> 12, reg, val, size);
}

static const struct io_ops ecam_ops = { ecam_read, ecam_write };

/* the memory window: the first enabled BAR that contains the address */
static struct pci_bar *mmio_find(struct pci_bus *b, uint64_t gpa, uint64_t *off)
{
	for (int s = 1; s < PCI_MAX_SLOTS; s++) {
		struct pci_dev *d = b->dev[s];

		if (!d)
			continue;
		for (int i = 0; i < 6; i++) {
			uint32_t base = pci_bar_addr(d, i);

			if (base && gpa >= base && gpa - base < d->bar[i].size) {
				*off = gpa - base;
				return &d->bar[i];
			}
		}
	}
	return NULL;
}

static uint64_t window_read(void *opaque, uint64_t off, int size)
{
	uint64_t boff;
	struct pci_bar *bar = mmio_find(opaque, PCI_MMIO_BASE + off, &boff);

	if (!bar || boff + size > bar->size || !bar->ops->read)
		return size == 8 ? ~0ull : (1ull << (size * 8)) - 1;
	return bar->ops->read(bar->opaque, boff, size);
}

static void window_write(void *opaque, uint64_t off, uint64_t val, int size)
{
	uint64_t boff;
	struct pci_bar *bar = mmio_find(opaque, PCI_MMIO_BASE + off, &boff);

	if (bar && boff + size <= bar->size && bar->ops->write)
		bar->ops->write(bar->opaque, boff, val, size);
}

static const struct io_ops window_ops = { window_read, window_write };

int pci_add(struct pci_bus *b, struct pci_dev *d)
{
	int slot;

	for (slot = 1; slot < PCI_MAX_SLOTS && b->dev[slot]; slot++)
		;
	if (slot == PCI_MAX_SLOTS) {
		fprintf(stderr, "accord: PCI: no free slot on bus 0\n");
		return -1;
	}
	for (int i = 0; i < 6; i++) {
		uint32_t size = d->bar[i].size;

		if (!size)
			continue;
		uint32_t addr = (b->next_mmio + size - 1) & ~(size - 1);
		if (size < 16 || (size & (size - 1)) || addr < b->next_mmio ||
		    addr + (uint64_t)size > PCI_MMIO_BASE + PCI_MMIO_SIZE) {
			fprintf(stderr, "accord: PCI: no room for a %u-byte BAR\n", size);
			return -1;
		}
		pci_put_le(d->cfg + PCI_BAR0 + 4 * i, addr, 4); /* 32-bit, non-prefetchable */
		pci_put_le(d->wmask + PCI_BAR0 + 4 * i, ~(size - 1), 4);
		b->next_mmio = addr + size;
	}
	d->slot = slot;
	b->dev[slot] = d;
	return 0;
}

static long mcfg_table(struct vm *vm, uint8_t *buf, size_t cap)
{
	const uint32_t len = ACPI_HEADER_SIZE + 8 + 16;

	if (!vm_has_pci(vm))
		return 0;
	if (cap < len) {
		fprintf(stderr, "accord: ACPI tables: no room for the MCFG\n");
		return -1;
	}
	memset(buf, 0, len);
	acpi_table_header(buf, "MCFG", len, 1);
	uint8_t *e = buf + ACPI_HEADER_SIZE + 8;
	for (int i = 0; i < 8; i++)
		e[i] = PCI_ECAM_BASE >> (8 * i);
	/* segment 0, buses 0 to 0 */
	e[10] = 0;
	e[11] = PCI_ECAM_SIZE / 0x100000 - 1;
	return len;
}

static void pci_dsdt(struct aml *a, struct vm *vm)
{
	if (!vm_has_pci(vm))
		return;
	aml_device_begin(a, "PCI0");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0A03");
	aml_name(a, "_UID");
	aml_integer(a, 0);
	aml_name(a, "_SEG");
	aml_integer(a, 0);
	aml_name(a, "_BBN");
	aml_integer(a, 0);
	aml_name(a, "_CRS");
	aml_buffer_begin(a);
	aml_res_space(a, AML_SPACE_BUS, 0, 0, PCI_ECAM_SIZE / 0x100000);
	aml_res_io(a, 0xcf8, 8);
	aml_res_space(a, AML_SPACE_IO, AML_IO_ENTIRE_RANGE, 0, 0xcf8);
	aml_res_space(a, AML_SPACE_IO, AML_IO_ENTIRE_RANGE, 0xd00, 0x10000 - 0xd00);
	aml_res_space(a, AML_SPACE_MEM, AML_MEM_RW, PCI_MMIO_BASE, PCI_MMIO_SIZE);
	aml_res_end(a);
	aml_end(a);
	aml_end(a);

	/* Linux uses ECAM only when the firmware reserves it as a motherboard
	 * resource */
	aml_device_begin(a, "MRES");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0C02");
	aml_name(a, "_UID");
	aml_integer(a, 1);
	aml_name(a, "_CRS");
	aml_buffer_begin(a);
	aml_res_mem32(a, PCI_ECAM_BASE, PCI_ECAM_SIZE, true);
	aml_res_end(a);
	aml_end(a);
	aml_end(a);
}

/* CONFIG_ADDRESS and every function's configuration space */
static int pci_save(void *o, struct snap_buf *sb, char *err, size_t n)
{
	struct pci_bus *b = o;
	uint32_t present = 0;

	for (int i = 0; i < PCI_MAX_SLOTS; i++)
		present |= (uint32_t)(b->dev[i] != NULL) << i;
	snap_put(sb, &b->conf1_addr, 4);
	snap_put(sb, &present, 4);
	snap_put(sb, b->host.cfg, 256);
	for (int i = 0; i < PCI_MAX_SLOTS; i++)
		if (b->dev[i])
			snap_put(sb, b->dev[i]->cfg, 256);
	return 0;
}

/* only what the guest may write is taken: the rest is the device's own
 * and the same in a machine made from the same configuration */
static void cfg_load(struct pci_dev *d, const uint8_t *cfg)
{
	for (int i = 0; i < 256; i++)
		d->cfg[i] = (d->cfg[i] & ~d->wmask[i]) | (cfg[i] & d->wmask[i]);
}

static int pci_load(void *o, struct snap_rd *r, char *err, size_t n)
{
	struct pci_bus *b = o;
	uint32_t addr, present, have = 0;
	uint8_t cfg[PCI_MAX_SLOTS + 1][256];

	for (int i = 0; i < PCI_MAX_SLOTS; i++)
		have |= (uint32_t)(b->dev[i] != NULL) << i;
	if (!snap_get(r, &addr, 4) || !snap_get(r, &present, 4))
		return -1;
	if (present != have) {
		snprintf(err, n, "PCI slots %#x are in use, this machine has %#x", present, have);
		return -1;
	}
	if (!snap_get(r, cfg[PCI_MAX_SLOTS], 256))
		return -1;
	for (int i = 0; i < PCI_MAX_SLOTS; i++)
		if (b->dev[i] && !snap_get(r, cfg[i], 256))
			return -1;
	b->conf1_addr = addr & 0x80fffffcu;
	cfg_load(&b->host, cfg[PCI_MAX_SLOTS]);
	for (int i = 0; i < PCI_MAX_SLOTS; i++)
		if (b->dev[i])
			cfg_load(b->dev[i], cfg[i]);
	return 0;
}

struct pci_bus *pci_init(struct vm *vm)
{
	struct pci_bus *b = calloc(1, sizeof(*b));
	int i;

	if (!b) {
		fprintf(stderr, "accord: cannot set up the PCI host bridge\n");
		return NULL;
	}
	b->vm = vm;
	b->next_mmio = PCI_MMIO_BASE;
	/* 00:00.0: an Intel host bridge, as Q35's */
	pci_set_ids(&b->host, 0x8086, 0x29c0, 0x06000000);
	b->host.cfg[PCI_COMMAND] = PCI_CMD_MEM;
	pci_put_le(b->host.cfg + PCI_SUBSYS_VENDOR, 0x1af4, 2);
	pci_put_le(b->host.cfg + PCI_SUBSYS_ID, 0x1100, 2);
	if (bus_register(&vm->pio, 0xcf8, 1, &conf1_addr_ops, b, "pci-conf1-addr") ||
	    bus_register(&vm->pio, 0xcfc, 4, &conf1_data_ops, b, "pci-conf1-data") ||
	    bus_register(&vm->mmio, PCI_ECAM_BASE, PCI_ECAM_SIZE, &ecam_ops, b, "pci-ecam") ||
	    bus_register(&vm->mmio, PCI_MMIO_BASE, PCI_MMIO_SIZE, &window_ops, b, "pci-mmio") ||
	    vm_snap_register(vm, "pci", pci_save, pci_load, b))
		goto fail;
	if (acpi_register_table(mcfg_table) || acpi_register_dsdt(pci_dsdt))
		goto fail;
	pthread_mutex_lock(&buses_lock);
	for (i = 0; i < MAX_BUSES && buses[i]; i++)
		;
	if (i < MAX_BUSES)
		buses[i] = b;
	pthread_mutex_unlock(&buses_lock);
	if (i == MAX_BUSES)
		goto fail;
	return b;
fail:
	/* the buses may already point at b: leave it allocated */
	fprintf(stderr, "accord: cannot set up the PCI host bridge\n");
	return NULL;
}
