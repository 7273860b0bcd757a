/* Finding ACPI tables (ACPI 6.5, 5.2): the RSDP from the PVH start info or,
 * as a PC BIOS leaves it, in the first KiB of the EBDA or in 0xe0000-0xfffff
 * on a 16-byte boundary; then the XSDT (revision 2 and later) or the RSDT.
 * Tables whose checksum is wrong are not returned. And the PM timer, the
 * platform's reference clock (ACPI 6.5 4.8.3.3), from the FADT. */
#include "guest.h"

#define PVH_START_MAGIC 0x336ec578

bool acpi_checksum_ok(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	while (n--)
		sum += *b++;
	return sum == 0;
}

static const struct acpi_rsdp *rsdp_at(uint64_t addr)
{
	const struct acpi_rsdp *r = (const struct acpi_rsdp *)(uintptr_t)addr;

	if (memcmp(r->signature, "RSD PTR ", 8) || !acpi_checksum_ok(r, 20))
		return NULL;
	if (r->revision >= 2 && (r->length < 36 || !acpi_checksum_ok(r, r->length)))
		return NULL;
	return r;
}

static const struct acpi_rsdp *rsdp_scan(uint64_t start, uint64_t end)
{
	const struct acpi_rsdp *r;

	for (uint64_t a = start; a + 20 <= end; a += 16)
		if ((r = rsdp_at(a)))
			return r;
	return NULL;
}

const struct acpi_rsdp *acpi_rsdp(void)
{
	const uint32_t *info = (const uint32_t *)(uintptr_t)boot_info;
	uintptr_t bda = 0x40e;	/* the BIOS data area's EBDA segment */
	uint64_t ebda;
	const struct acpi_rsdp *r;

	if (boot_protocol == BOOT_PVH && info && info[0] == PVH_START_MAGIC) {
		uint64_t addr = *(const uint64_t *)(info + 8);

		if (addr && addr < (4ul << 30))
			return rsdp_at(addr);
	}
	asm("" : "+r"(bda));	/* a fixed address, not an object */
	ebda = (uint64_t)*(const uint16_t *)bda << 4;
	if (ebda >= 0x80000 && ebda < 0xa0000 && (r = rsdp_scan(ebda, ebda + 1024)))
		return r;
	return rsdp_scan(0xe0000, 0x100000);
}

static const struct acpi_header *table_at(uint64_t addr)
{
	const struct acpi_header *h = (const struct acpi_header *)(uintptr_t)addr;

	if (!addr || addr >= (4ul << 30) || h->length < sizeof(*h) ||
	    !acpi_checksum_ok(h, h->length))
		return NULL;
	return h;
}

const struct acpi_header *acpi_table(const char *sig)
{
	const struct acpi_rsdp *r = acpi_rsdp();
	const struct acpi_header *root, *t;
	bool x;
	unsigned n;

	if (!r)
		return NULL;
	x = r->revision >= 2 && r->xsdt_addr;
	root = table_at(x ? r->xsdt_addr : r->rsdt_addr);
	if (!root || memcmp(root->signature, x ? "XSDT" : "RSDT", 4))
		return NULL;
	n = (root->length - sizeof(*root)) / (x ? 8 : 4);
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *e = (const uint8_t *)(root + 1) + i * (x ? 8 : 4);
		uint64_t addr = 0;

		memcpy(&addr, e, x ? 8 : 4);
		t = table_at(addr);
		if (t && !memcmp(t->signature, sig, 4))
			return t;
	}
	return NULL;
}

static uint16_t pm_port;
static uint32_t pm_mask = 0xffffff;

bool pm_timer_init(void)
{
	const uint8_t *fadt = (const uint8_t *)acpi_table("FACP");
	uint32_t port, flags;

	if (!fadt || ((const struct acpi_header *)fadt)->length < 116)
		return false;
	memcpy(&port, fadt + 76, 4);	/* PM_TMR_BLK */
	memcpy(&flags, fadt + 112, 4);
	pm_port = (uint16_t)port;
	/* FADT flags bit 8 TMR_VAL_EXT: a 32-bit counter */
	if (flags & (1u << 8))
		pm_mask = 0xffffffff;
	return pm_port != 0;
}

uint32_t pm_timer_read(void)
{
	return inl(pm_port) & pm_mask;
}

uint32_t pm_timer_ticks_since(uint32_t start)
{
	return (pm_timer_read() - start) & pm_mask;
}
