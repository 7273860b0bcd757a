/* ticker: prints "tick N" on the serial console about every 20 ms of the
 * ACPI PM timer, forever or "ticker.count=N" times, for the control API's
 * tests (tests/api.sh): a paused VM prints no tick, a resumed one goes on
 * from the number where it stopped. Not a guest test kernel: it proves
 * nothing about the VMM by itself, so it lives outside guest/tests/. */
#include "guest.h"

#define PM_TMR_PORT 0x608
#define PM_TMR_HZ 3579545u
#define TICK_PM (PM_TMR_HZ / 50)

static uint64_t ticker_count(void)
{
	const char *p = strstr(boot_cmdline(), "ticker.count=");
	uint64_t n = 0;
	if (!p)
		return 0;
	for (p += 13; *p >= '0' && *p <= '9'; p++)
		n = n * 10 + (uint64_t)(*p - '0');
	return n;
}

/* the 24-bit PM timer, waited on across its wrap-around */
static void pm_sleep(uint32_t ticks)
{
	uint32_t start = inl(PM_TMR_PORT) & 0xffffff;
	while (((inl(PM_TMR_PORT) - start) & 0xffffff) < ticks)
		asm volatile("pause");
}

void test_main(void)
{
	uint64_t count = ticker_count();
	for (uint64_t i = 1; !count || i <= count; i++) {
		printf("tick %lu\n", i);
		pm_sleep(TICK_PM);
	}
	pass("ticker.ticks");
}
