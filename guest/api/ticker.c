/* ticker: prints "tick N" on the serial console about every 20 ms of the
 * ACPI PM timer, forever or "ticker.count=N" times, for the control API's
 * tests (tests/api.sh): a paused VM prints no tick, a resumed one goes on
 * from the number where it stopped. With "ticker.flood" it prints without
 * pausing, as fast as the UART takes it (tests/flood.sh: such a guest must
 * not starve the console output or the API). Not a guest test kernel: it proves
 * nothing about the VMM by itself, so it lives outside guest/tests/. */
#include "guest.h"

#define PM_TMR_PORT 0x608
#define PM_TMR_HZ 3579545u
#define TICK_PM (PM_TMR_HZ / 50)

static bool ticker_flood(void)
{
	return strstr(boot_cmdline(), "ticker.flood") != NULL;
}

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
	bool flood = ticker_flood();
	for (uint64_t i = 1; !count || i <= count; i++) {
		printf("tick %lu\n", i);
		if (!flood)
			pm_sleep(TICK_PM);
	}
	pass("ticker.ticks");
}
