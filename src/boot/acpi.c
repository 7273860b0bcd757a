/* ACPI tables (ACPI 6.x, chapter 5): RSDP, RSDT, XSDT, FADT, FACS, MADT and
 * a DSDT with the sleep state a guest needs to power off and the devices
 * it should find, in the BIOS area where guests also search for the RSDP. */
#include <stdio.h>
#include <string.h>

#include "boot/aml.h"
#include "boot/internal.h"
#include "vm/vm.h"

#define ACPI_OEM_ID "ACCORD"
#define ACPI_OEM_TABLE_ID "ACCORD  "
#define ACPI_CREATOR_ID "ACRD"
#define ACPI_MAX_TABLES 16
#define ACPI_MAX_HOOKS 16

static acpi_dsdt_fn dsdt_hooks[ACPI_MAX_HOOKS];
static acpi_table_fn table_hooks[ACPI_MAX_HOOKS];
static int n_dsdt_hooks, n_table_hooks;

static int hook_add(void **hooks, int *n, void *fn)
{
	int i;

	for (i = 0; i < *n; i++)
		if (hooks[i] == fn)
			return 0;
	if (*n == ACPI_MAX_HOOKS)
		return -1;
	hooks[(*n)++] = fn;
	return 0;
}

int acpi_register_dsdt(acpi_dsdt_fn fn)
{
	return hook_add((void **)dsdt_hooks, &n_dsdt_hooks, (void *)fn);
}

int acpi_register_table(acpi_table_fn fn)
{
	return hook_add((void **)table_hooks, &n_table_hooks, (void *)fn);
}

uint8_t acpi_checksum(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;

	while (len--)
		sum += *p++;
	return -sum;
}

void acpi_table_header(uint8_t *buf, const char sig[4], uint32_t len, uint8_t rev)
{
	memcpy(buf, sig, 4);
	put32(buf + 4, len);
	buf[8] = rev;
	buf[9] = 0;
	memcpy(buf + 10, ACPI_OEM_ID, 6);
	memcpy(buf + 16, ACPI_OEM_TABLE_ID, 8);
	put32(buf + 24, 1);
	memcpy(buf + 28, ACPI_CREATOR_ID, 4);
	put32(buf + 32, 1);
}

/* The tables are laid out in guest RAM directly. */
struct acpi_builder {
	uint8_t *base;
	size_t off, cap;
	uint64_t tables[ACPI_MAX_TABLES]; /* for the RSDT and XSDT */
	int ntables;
};

static uint64_t acpi_gpa(size_t off)
{
	return ACPI_TABLES_ADDR + off;
}

/* offset of len free bytes aligned to align, or -1 */
static long acpi_alloc(struct acpi_builder *b, size_t len, size_t align)
{
	size_t off = align_up(b->off, align);

	if (off > b->cap || len > b->cap - off) {
		fprintf(stderr, "accord: ACPI tables: more than the %zu bytes at 0x%x\n", b->cap,
			ACPI_TABLES_ADDR);
		return -1;
	}
	b->off = off + len;
	return off;
}

static void acpi_finish(struct acpi_builder *b, size_t off)
{
	uint8_t *t = b->base + off;

	t[9] = acpi_checksum(t, get32(t + 4));
}

static int acpi_list(struct acpi_builder *b, size_t off)
{
	if (b->ntables == ACPI_MAX_TABLES) {
		fprintf(stderr, "accord: ACPI tables: more than %d tables\n", ACPI_MAX_TABLES);
		return -1;
	}
	b->tables[b->ntables++] = acpi_gpa(off);
	return 0;
}

#define FACS_SIZE 64

static long acpi_put_facs(struct acpi_builder *b)
{
	long off = acpi_alloc(b, FACS_SIZE, 64);

	if (off < 0)
		return -1;
	memcpy(b->base + off, "FACS", 4);
	put32(b->base + off + 4, FACS_SIZE);
	b->base[off + 32] = 2; /* version */
	return off;
}

static void dsdt_processors(struct aml *a, struct vm *vm)
{
	int i;

	for (i = 0; i < vm->ncpus; i++) {
		char name[16];

		/* _UID matches the MADT's ACPI processor UID */
		snprintf(name, sizeof(name), "C%03X", i);
		aml_device_begin(a, name);
		aml_name(a, "_HID");
		aml_string(a, "ACPI0007");
		aml_name(a, "_UID");
		aml_integer(a, i);
		aml_end(a);
	}
}

static void dsdt_legacy(struct aml *a)
{
	aml_device_begin(a, "COM1");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0501");
	aml_name(a, "_UID");
	aml_integer(a, 1);
	aml_name(a, "_CRS");
	aml_buffer_begin(a);
	aml_res_io(a, COM1_PORT, 8);
	aml_res_irq(a, COM1_IRQ);
	aml_res_end(a);
	aml_end(a);
	aml_end(a);

	aml_device_begin(a, "RTC");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0B00");
	aml_name(a, "_CRS");
	aml_buffer_begin(a);
	aml_res_io(a, 0x70, 2);
	aml_res_irq(a, 8);
	aml_res_end(a);
	aml_end(a);
	aml_end(a);
}

static long acpi_put_dsdt(struct acpi_builder *b, struct vm *vm)
{
	uint8_t header[ACPI_HEADER_SIZE] = { 0 };
	struct aml a;
	long off = -1;
	int i;

	aml_init(&a);
	aml_bytes(&a, header, sizeof(header));
	aml_scope_begin(&a, "\\_SB");
	dsdt_processors(&a, vm);
	dsdt_legacy(&a);
	for (i = 0; i < n_dsdt_hooks; i++)
		dsdt_hooks[i](&a, vm);
	aml_end(&a);
	/* SLP_TYPa, SLP_TYPb for PM1a/b_CNT; Linux powers off through this */
	aml_name(&a, "\\_S5");
	aml_package_begin(&a, 4);
	aml_integer(&a, ACPI_S5_SLP_TYP);
	aml_integer(&a, ACPI_S5_SLP_TYP);
	aml_integer(&a, 0);
	aml_integer(&a, 0);
	aml_end(&a);

	if (!aml_ok(&a)) {
		fprintf(stderr, "accord: ACPI tables: the DSDT's AML is malformed\n");
	} else {
		off = acpi_alloc(b, a.len, 16);
		if (off >= 0) {
			memcpy(b->base + off, a.buf, a.len);
			/* 2: integers are 64 bits wide */
			acpi_table_header(b->base + off, "DSDT", a.len, 2);
			acpi_finish(b, off);
		}
	}
	aml_free(&a);
	return off;
}

/* FADT, revision 6 layout */
#define FADT_SIZE 276
#define FADT_FIRMWARE_CTRL 36
#define FADT_DSDT 40
#define FADT_SCI_INT 46
#define FADT_SMI_CMD 48
#define FADT_PM1A_EVT_BLK 56
#define FADT_PM1A_CNT_BLK 64
#define FADT_PM_TMR_BLK 76
#define FADT_PM1_EVT_LEN 88
#define FADT_PM1_CNT_LEN 89
#define FADT_PM_TMR_LEN 91
#define FADT_P_LVL2_LAT 96
#define FADT_P_LVL3_LAT 98
#define FADT_IAPC_BOOT_ARCH 109
#define FADT_FLAGS 112
#define FADT_RESET_REG 116
#define FADT_RESET_VALUE 128
#define FADT_MINOR_VERSION 131
#define FADT_X_DSDT 140
#define FADT_X_PM1A_EVT_BLK 148
#define FADT_X_PM1A_CNT_BLK 172
#define FADT_X_PM_TMR_BLK 208
#define FADT_HYPERVISOR_ID 268

#define FADT_F_WBINVD (1u << 0)
#define FADT_F_PROC_C1 (1u << 2)
#define FADT_F_SLP_BUTTON (1u << 5) /* no fixed sleep button */
#define FADT_F_RESET_REG_SUP (1u << 10)

#define BOOT_ARCH_LEGACY_DEVICES (1u << 0)
#define BOOT_ARCH_VGA_NOT_PRESENT (1u << 2)

/* Generic Address Structure in system I/O space */
static void acpi_put_gas_io(uint8_t *p, uint16_t port, uint8_t bits, uint8_t access)
{
	p[0] = 1;
	p[1] = bits;
	p[2] = 0;
	p[3] = access;
	put64(p + 4, port);
}

static long acpi_put_fadt(struct acpi_builder *b, size_t facs, size_t dsdt)
{
	long off = acpi_alloc(b, FADT_SIZE, 16);
	uint8_t *f;

	if (off < 0)
		return -1;
	f = b->base + off;
	acpi_table_header(f, "FACP", FADT_SIZE, 6);
	/* X_FIRMWARE_CTRL must stay 0 when FIRMWARE_CTRL is used */
	put32(f + FADT_FIRMWARE_CTRL, acpi_gpa(facs));
	put32(f + FADT_DSDT, acpi_gpa(dsdt));
	put64(f + FADT_X_DSDT, acpi_gpa(dsdt));
	put16(f + FADT_SCI_INT, ACPI_SCI_IRQ);
	/* no SMI command port: the hardware is always in ACPI mode */
	put32(f + FADT_SMI_CMD, 0);
	put32(f + FADT_PM1A_EVT_BLK, ACPI_PM1A_EVT);
	put32(f + FADT_PM1A_CNT_BLK, ACPI_PM1A_CNT);
	put32(f + FADT_PM_TMR_BLK, ACPI_PM_TMR);
	f[FADT_PM1_EVT_LEN] = 4;
	f[FADT_PM1_CNT_LEN] = 2;
	f[FADT_PM_TMR_LEN] = 4;
	acpi_put_gas_io(f + FADT_X_PM1A_EVT_BLK, ACPI_PM1A_EVT, 32, 2);
	acpi_put_gas_io(f + FADT_X_PM1A_CNT_BLK, ACPI_PM1A_CNT, 16, 2);
	acpi_put_gas_io(f + FADT_X_PM_TMR_BLK, ACPI_PM_TMR, 32, 3);
	/* latencies above 100 and 1000 us say C2 and C3 are not supported */
	put16(f + FADT_P_LVL2_LAT, 101);
	put16(f + FADT_P_LVL3_LAT, 1001);
	/* COM1 and the RTC sit on the ISA bus; no 8042, no VGA */
	put16(f + FADT_IAPC_BOOT_ARCH, BOOT_ARCH_LEGACY_DEVICES | BOOT_ARCH_VGA_NOT_PRESENT);
	/* TMR_VAL_EXT clear: the PM timer counts 24 bits */
	put32(f + FADT_FLAGS,
	      FADT_F_WBINVD | FADT_F_PROC_C1 | FADT_F_SLP_BUTTON | FADT_F_RESET_REG_SUP);
	acpi_put_gas_io(f + FADT_RESET_REG, ACPI_RESET_PORT, 8, 1);
	f[FADT_RESET_VALUE] = ACPI_RESET_VALUE;
	f[FADT_MINOR_VERSION] = 0;
	memcpy(f + FADT_HYPERVISOR_ID, ACPI_OEM_ID, 6);
	acpi_finish(b, off);
	return off;
}

#define MADT_PCAT_COMPAT 1
#define MADT_LAPIC 0
#define MADT_IOAPIC 1
#define MADT_ISO 2
#define MADT_LAPIC_NMI 4
/* MPS INTI flags */
#define MPS_HIGH 0x1
#define MPS_LOW 0x3
#define MPS_EDGE (0x1 << 2)
#define MPS_LEVEL (0x3 << 2)

static long acpi_put_madt(struct acpi_builder *b, struct vm *vm)
{
	size_t len = ACPI_HEADER_SIZE + 8 + vm->ncpus * 8 + 12 + 2 * 10 + 6;
	long off = acpi_alloc(b, len, 16);
	uint8_t *m, *p;
	int i;

	if (off < 0)
		return -1;
	m = b->base + off;
	acpi_table_header(m, "APIC", len, 4);
	put32(m + 36, LAPIC_BASE);
	put32(m + 40, MADT_PCAT_COMPAT);
	p = m + 44;
	for (i = 0; i < vm->ncpus; i++, p += 8) {
		p[0] = MADT_LAPIC;
		p[1] = 8;
		p[2] = i; /* ACPI processor UID */
		p[3] = i; /* APIC ID */
		put32(p + 4, 1); /* enabled */
	}
	p[0] = MADT_IOAPIC;
	p[1] = 12;
	p[2] = vm->ncpus; /* the first ID after the LAPICs' */
	put32(p + 4, IOAPIC_BASE);
	put32(p + 8, 0);
	p += 12;
	/* the PIT's IRQ 0 arrives on pin 2; the SCI is level-triggered */
	p[0] = MADT_ISO;
	p[1] = 10;
	p[2] = 0;
	p[3] = 0;
	put32(p + 4, 2);
	put16(p + 8, MPS_HIGH | MPS_EDGE);
	p += 10;
	p[0] = MADT_ISO;
	p[1] = 10;
	p[2] = 0;
	p[3] = ACPI_SCI_IRQ;
	put32(p + 4, ACPI_SCI_IRQ);
	put16(p + 8, MPS_HIGH | MPS_LEVEL);
	p += 10;
	/* NMIs arrive on LINT1 of every processor */
	p[0] = MADT_LAPIC_NMI;
	p[1] = 6;
	p[2] = 0xFF;
	put16(p + 3, MPS_HIGH | MPS_EDGE);
	p[5] = 1;
	acpi_finish(b, off);
	return off;
}

static int acpi_put_hook_tables(struct acpi_builder *b, struct vm *vm)
{
	int i;

	for (i = 0; i < n_table_hooks; i++) {
		long off = acpi_alloc(b, 0, 16), len;

		if (off < 0)
			return -1;
		len = table_hooks[i](vm, b->base + off, b->cap - off);
		if (len < 0)
			return -1; /* the hook said why */
		if (len == 0)
			continue;
		if (len < ACPI_HEADER_SIZE || (size_t)len > b->cap - off ||
		    get32(b->base + off + 4) != (uint32_t)len) {
			fprintf(stderr, "accord: ACPI tables: a device's table is malformed\n");
			return -1;
		}
		b->off = off + len;
		acpi_finish(b, off);
		if (acpi_list(b, off))
			return -1;
	}
	return 0;
}

static int acpi_put_roots(struct acpi_builder *b, uint64_t *rsdp_addr)
{
	long rsdt = acpi_alloc(b, ACPI_HEADER_SIZE + 4 * b->ntables, 16);
	long xsdt = acpi_alloc(b, ACPI_HEADER_SIZE + 8 * b->ntables, 16);
	uint8_t *r = b->base; /* the RSDP is the first thing, 16-byte aligned */
	int i;

	if (rsdt < 0 || xsdt < 0)
		return -1;
	acpi_table_header(b->base + rsdt, "RSDT", ACPI_HEADER_SIZE + 4 * b->ntables, 1);
	acpi_table_header(b->base + xsdt, "XSDT", ACPI_HEADER_SIZE + 8 * b->ntables, 1);
	for (i = 0; i < b->ntables; i++) {
		put32(b->base + rsdt + ACPI_HEADER_SIZE + 4 * i, b->tables[i]);
		put64(b->base + xsdt + ACPI_HEADER_SIZE + 8 * i, b->tables[i]);
	}
	acpi_finish(b, rsdt);
	acpi_finish(b, xsdt);

	memcpy(r, "RSD PTR ", 8);
	memcpy(r + 9, ACPI_OEM_ID, 6);
	r[15] = 2;
	put32(r + 16, acpi_gpa(rsdt));
	put32(r + 20, 36);
	put64(r + 24, acpi_gpa(xsdt));
	r[8] = acpi_checksum(r, 20);
	r[32] = acpi_checksum(r, 36);
	*rsdp_addr = acpi_gpa(0);
	return 0;
}

int acpi_build(struct vm *vm, uint64_t *rsdp_addr)
{
	struct acpi_builder b = { .cap = ACPI_TABLES_END - ACPI_TABLES_ADDR };
	long facs, dsdt, fadt, madt;

	b.base = vm_gpa(vm, ACPI_TABLES_ADDR, b.cap);
	if (!b.base) {
		fprintf(stderr, "accord: ACPI tables: guest RAM does not cover 0x%x-0x%x\n",
			ACPI_TABLES_ADDR, ACPI_TABLES_END);
		return -1;
	}
	memset(b.base, 0, b.cap);
	b.off = 36; /* the RSDP */
	facs = acpi_put_facs(&b);
	dsdt = facs < 0 ? -1 : acpi_put_dsdt(&b, vm);
	fadt = dsdt < 0 ? -1 : acpi_put_fadt(&b, facs, dsdt);
	madt = fadt < 0 ? -1 : acpi_put_madt(&b, vm);
	if (madt < 0 || acpi_list(&b, fadt) || acpi_list(&b, madt) ||
	    acpi_put_hook_tables(&b, vm) || acpi_put_roots(&b, rsdp_addr))
		return -1;
	return 0;
}
