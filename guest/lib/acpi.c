/* ACPI, as far as test kernels need it: the PM timer, the platform's
 * reference clock (ACPI 6.5 4.8.3.3), found through RSDP -> XSDT/RSDT ->
 * FADT. */
#include "guest.h"

static bool sum_ok(const uint8_t *p, uint32_t len)
{
	uint8_t s = 0;

	for (uint32_t i = 0; i < len; i++)
		s += p[i];
	return s == 0;
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static const uint8_t *find_rsdp(void)
{
	if (boot_protocol == BOOT_PVH) {
		uint64_t r = *(const uint64_t *)(uintptr_t)(boot_info + 32);

		if (r && !memcmp((void *)r, "RSD PTR ", 8))
			return (const uint8_t *)r;
	}
	uintptr_t bda = 0x40e; /* the BIOS data area's EBDA segment */
	uint64_t ebda;

	asm("" : "+r"(bda)); /* a fixed address, not an object */
	ebda = (uint64_t)*(const uint16_t *)bda << 4;
	if (ebda >= 0x80000 && ebda < 0xa0000)
		for (uint64_t a = ebda; a < ebda + 1024; a += 16)
			if (!memcmp((void *)a, "RSD PTR ", 8) && sum_ok((void *)a, 20))
				return (const uint8_t *)a;
	for (uint64_t a = 0xe0000; a < 0x100000; a += 16)
		if (!memcmp((void *)a, "RSD PTR ", 8) && sum_ok((void *)a, 20))
			return (const uint8_t *)a;
	return NULL;
}

const uint8_t *acpi_find_table(const char *sig)
{
	const uint8_t *rsdp = find_rsdp();

	if (!rsdp)
		return NULL;
	uint64_t xsdt = rsdp[15] >= 2 ? rd64(rsdp + 24) : 0;
	const uint8_t *root = (const uint8_t *)(uintptr_t)(xsdt ? xsdt : rd32(rsdp + 16));
	unsigned esz = xsdt ? 8 : 4;
	uint32_t len = rd32(root + 4);

	for (uint32_t off = 36; off + esz <= len; off += esz) {
		uint64_t a = esz == 8 ? rd64(root + off) : rd32(root + off);
		const uint8_t *t = (const uint8_t *)(uintptr_t)a;

		if (a && a < (1ul << 32) && !memcmp(t, sig, 4))
			return t;
	}
	return NULL;
}

static uint16_t pm_port;
static uint32_t pm_mask = 0xffffff;

bool pm_timer_init(void)
{
	const uint8_t *fadt = acpi_find_table("FACP");

	if (!fadt)
		return false;
	pm_port = (uint16_t)rd32(fadt + 76); /* PM_TMR_BLK */
	/* FADT flags bit 8 TMR_VAL_EXT: a 32-bit counter */
	if (rd32(fadt + 112) & (1u << 8))
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
