/* ACPI fixed hardware in port space (PM1a event and control blocks, the PM
 * timer) and the small PC ports around it: the PIIX reset control register
 * at 0xcf9, port 0x92 (fast A20 and reset), the keyboard controller's
 * status/command port 0x64 (enough for its reset command) and the POST
 * port 0x80. There is no SMI command port, so ACPI is always enabled and
 * SCI_EN reads as set. Runs under vm->io_lock. */
#include <stdlib.h>

#include "dev/devices.h"
#include "dev/platform.h"
#include "vm/vm.h"
#include "vm/snapshot.h"

#define NSEC_PER_SEC 1000000000ull

/* PM1 registers within the 12 bytes from ACPI_PM1A_EVT */
enum { PM1_STS = 0, PM1_EN = 2, PM1_CNT = 4, PM_TMR = 8, PM_LEN = 12 };

#define PM1_CNT_SCI_EN 0x0001
#define PM1_CNT_SLP_TYP(v) (((v) >> 10) & 7)
#define PM1_CNT_SLP_EN 0x2000
#define PM1_CNT_WRITABLE 0x1C06 /* BM_RLD, GBL_RLS, SLP_TYP */
#define PM1_EN_WRITABLE 0x0521	/* TMR_EN, GBL_EN, PWRBTN_EN, RTC_EN */
#define PM1_PWRBTN 0x0100	/* PWRBTN_STS and PWRBTN_EN */

#define RCR_SYS_RST 0x02 /* 0xcf9: hard reset when RST_CPU is set */
#define RCR_RST_CPU 0x04
#define RCR_FULL_RST 0x08
#define PORT92_RESET 0x01
#define PORT92_A20 0x02
#define KBC_CMD_RESET 0xFE

struct acpipm_state {
	uint16_t pm1_sts, pm1_en, pm1_cnt;
	uint8_t rcr;	/* 0xcf9 */
	uint8_t port92;
};

struct acpipm {
	struct vm *vm;
	struct acpipm_state s;
};

static uint32_t pm_timer(struct acpipm *pm)
{
	uint64_t now = vm_now_ns(pm->vm);

	return (uint32_t)((unsigned __int128)now * ACPI_PM_TMR_HZ / NSEC_PER_SEC) & 0xFFFFFF;
}

/* The SCI is level-triggered: asserted while an enabled event is pending.
 * The power button is the only fixed event raised so far. */
static void pm_update_sci(struct acpipm *pm)
{
	vm_set_irq(pm->vm, ACPI_SCI_IRQ, (pm->s.pm1_sts & pm->s.pm1_en & PM1_PWRBTN) != 0);
}

int acpipm_power_button(struct acpipm *pm)
{
	if (!(pm->s.pm1_en & PM1_PWRBTN))
		return -1;
	pm->s.pm1_sts |= PM1_PWRBTN;
	pm_update_sci(pm);
	return 0;
}

static uint8_t pm_read_byte(struct acpipm *pm, uint64_t off, uint32_t tmr)
{
	int shift = (off & 1) * 8;

	switch (off & ~1ull) {
	case PM1_STS:
		return (uint8_t)(pm->s.pm1_sts >> shift);
	case PM1_EN:
		return (uint8_t)(pm->s.pm1_en >> shift);
	case PM1_CNT:
		return (uint8_t)((pm->s.pm1_cnt | PM1_CNT_SCI_EN) >> shift);
	}
	if (off >= PM_TMR && off < PM_TMR + 4)
		return (uint8_t)(tmr >> (off - PM_TMR) * 8);
	return 0;
}

static uint64_t pm_read(void *opaque, uint64_t off, int size)
{
	struct acpipm *pm = opaque;
	uint32_t tmr = pm_timer(pm);
	uint64_t v = 0;

	for (int i = 0; i < size; i++)
		v |= (uint64_t)pm_read_byte(pm, off + i, tmr) << i * 8;
	return v;
}

static void pm_write(void *opaque, uint64_t off, uint64_t val, int size)
{
	struct acpipm *pm = opaque;
	uint16_t cnt = pm->s.pm1_cnt;
	bool cnt_written = false;

	for (int i = 0; i < size; i++, off++) {
		int shift = (off & 1) * 8;
		uint16_t b = (uint16_t)((val >> i * 8 & 0xFF) << shift);
		uint16_t keep = (uint16_t)~(0xFF << shift);

		switch (off & ~1ull) {
		case PM1_STS: /* write one to clear */
			pm->s.pm1_sts &= ~b;
			break;
		case PM1_EN:
			pm->s.pm1_en = ((pm->s.pm1_en & keep) | b) & PM1_EN_WRITABLE;
			break;
		case PM1_CNT:
			cnt = (cnt & keep) | b;
			cnt_written = true;
			break;
		}
	}
	pm_update_sci(pm);
	if (!cnt_written)
		return;
	pm->s.pm1_cnt = cnt & PM1_CNT_WRITABLE;
	if ((cnt & PM1_CNT_SLP_EN) && PM1_CNT_SLP_TYP(cnt) == ACPI_S5_SLP_TYP)
		vm_request_exit(pm->vm, VM_POWEROFF, 0, "guest powered off");
	/* other sleep states are not offered by the DSDT: ignore them */
}

static const struct io_ops pm_ops = {
	.read = pm_read,
	.write = pm_write,
};

static uint64_t rcr_read(void *opaque, uint64_t off, int size)
{
	struct acpipm *pm = opaque;

	return pm->s.rcr;
}

static void rcr_write(void *opaque, uint64_t off, uint64_t val, int size)
{
	struct acpipm *pm = opaque;

	pm->s.rcr = val & (RCR_SYS_RST | RCR_FULL_RST);
	if (val & RCR_RST_CPU)
		vm_request_exit(pm->vm, VM_RESET, 0, "guest reset");
}

static const struct io_ops rcr_ops = {
	.read = rcr_read,
	.write = rcr_write,
};

static uint64_t port92_read(void *opaque, uint64_t off, int size)
{
	struct acpipm *pm = opaque;

	return pm->s.port92;
}

static void port92_write(void *opaque, uint64_t off, uint64_t val, int size)
{
	struct acpipm *pm = opaque;

	/* A20 is always on; the bit only reads back */
	pm->s.port92 = val & PORT92_A20;
	if (val & PORT92_RESET)
		vm_request_exit(pm->vm, VM_RESET, 0, "guest reset");
}

static const struct io_ops port92_ops = {
	.read = port92_read,
	.write = port92_write,
};

/* status: no data for the guest, input buffer empty */
static uint64_t kbc_read(void *opaque, uint64_t off, int size)
{
	return 0;
}

static void kbc_write(void *opaque, uint64_t off, uint64_t val, int size)
{
	struct acpipm *pm = opaque;

	if ((val & 0xFF) == KBC_CMD_RESET)
		vm_request_exit(pm->vm, VM_RESET, 0, "guest reset");
}

static const struct io_ops kbc_ops = {
	.read = kbc_read,
	.write = kbc_write,
};

/* POST codes: writes vanish, reads float */
static uint64_t post_read(void *opaque, uint64_t off, int size)
{
	return ~0ull;
}

static void post_write(void *opaque, uint64_t off, uint64_t val, int size)
{
}

static const struct io_ops post_ops = {
	.read = post_read,
	.write = post_write,
};

static int acpipm_save(void *o, struct snap_buf *b, char *err, size_t n)
{
	struct acpipm *pm = o;

	snap_put(b, &pm->s, sizeof(pm->s));
	return 0;
}

static int acpipm_load(void *o, struct snap_rd *r, char *err, size_t n)
{
	struct acpipm *pm = o;

	return snap_get(r, &pm->s, sizeof(pm->s)) ? 0 : -1;
}

struct acpipm *acpipm_create(struct vm *vm)
{
	struct acpipm *pm = calloc(1, sizeof(*pm));

	if (!pm)
		return NULL;
	pm->vm = vm;
	pm->s.port92 = PORT92_A20;
	if (bus_register(&vm->pio, ACPI_PM1A_EVT, PM_LEN, &pm_ops, pm, "acpi-pm") ||
	    bus_register(&vm->pio, ACPI_RESET_PORT, 1, &rcr_ops, pm, "reset") ||
	    bus_register(&vm->pio, 0x92, 1, &port92_ops, pm, "port92") ||
	    bus_register(&vm->pio, 0x64, 1, &kbc_ops, pm, "kbc") ||
	    bus_register(&vm->pio, 0x80, 1, &post_ops, pm, "post") ||
	    vm_snap_register(vm, "acpipm", acpipm_save, acpipm_load, pm)) {
		free(pm);
		return NULL;
	}
	return pm;
}

void acpipm_destroy(struct acpipm *pm)
{
	free(pm);
}
