/* smp: the other vCPUs, brought up the way a kernel does. The MADT (found
 * through the RSDP) lists the processors; each AP is woken by
 * INIT-SIPI-SIPI and reports its APIC IDs; IPIs go from every AP to the BSP
 * and back; all CPUs increment one counter with LOCK XADD; an INIT puts an
 * AP back into wait-for-SIPI. guest/families runs it with cpus=4, which is
 * also on the command line. Expectations from the SDM vol. 3A chapters 9
 * (multiple-processor management) and 11 (APIC) and ACPI 6.5 5.2.12. */
#include "guest.h"

#define MSR_APIC_BASE 0x1b
#define APIC_BASE_BSP (1ul << 8)

#define VEC_TO_BSP 0x40
#define VEC_TO_AP 0x41
#define ICR_FIXED 0u
#define ICR_ASSERT (1u << 14)

#define XADD_ROUNDS 20000
#define WAIT_SPINS (1ul << 27)

struct cpu_info {
	uint32_t madt_id;		/* the APIC ID we started it with */
	volatile uint32_t apic_id;	/* LAPIC ID register, as it reports */
	volatile uint32_t cpuid_id;	/* CPUID.1:EBX[31:24] */
	volatile uint64_t apic_base;
	volatile unsigned boots;
	volatile uint64_t heartbeat;
	volatile unsigned ipis;
	void (*volatile work)(unsigned cpu);
};

static struct cpu_info cpus[SMP_MAX_CPUS];
static unsigned ncpus;	/* the BSP and the APs listed in the MADT */
static volatile unsigned bsp_ipis;
static volatile uint32_t counter;
static volatile unsigned xadd_ready, xadd_go, xadd_done;

static bool wait_for(volatile unsigned *v, unsigned want)
{
	for (unsigned long i = 0; i < WAIT_SPINS && *v != want; i++)
		asm volatile("pause");
	return *v == want;
}

static void on_ipi(struct trap_frame *f)
{
	uint32_t id = lapic_id();

	if (f->vector == VEC_TO_BSP) {
		bsp_ipis++;
	} else {
		for (unsigned i = 1; i < ncpus; i++)
			if (cpus[i].madt_id == id)
				cpus[i].ipis++;
	}
	lapic_write(LAPIC_EOI, 0);
}

/* software-enable the local APIC (spurious vector 0xff) and accept every
 * priority */
static void lapic_enable(void)
{
	lapic_write(LAPIC_SVR, 0x1ff);
	lapic_write(0x80, 0);
}

/* every AP runs this: report, then do what the BSP posts, with interrupts
 * enabled so that IPIs arrive */
static void ap_loop(unsigned cpu)
{
	struct cpu_info *c = &cpus[cpu];

	lapic_enable();
	c->apic_id = lapic_id();
	c->cpuid_id = cpuid(1, 0).ebx >> 24;
	c->apic_base = rdmsr(MSR_APIC_BASE);
	asm volatile("lock incl %0" : "+m"(c->boots));
	sti();
	for (;;) {
		void (*w)(unsigned) = c->work;

		c->heartbeat++;
		if (w) {
			w(cpu);
			c->work = NULL;
		}
		asm volatile("pause");
	}
}

static void post(unsigned cpu, void (*w)(unsigned))
{
	cpus[cpu].work = w;
	for (unsigned long i = 0; i < WAIT_SPINS && cpus[cpu].work; i++)
		asm volatile("pause");
}

/* ---- MADT: ACPI 6.5 5.2.12 ---- */

static uint32_t madt_ids[SMP_MAX_CPUS];
static unsigned madt_n;

static void test_madt(uint64_t want)
{
	const struct acpi_header *madt = acpi_table("APIC");
	const uint8_t *p, *end;
	uint32_t lapic_addr;
	bool unique = true, bsp_listed = false, overflow = false;
	uint32_t bsp = lapic_id();

	if (!check(madt != NULL, "madt.present", "no MADT (signature APIC) through the RSDP"))
		return;
	memcpy(&lapic_addr, (const uint8_t *)madt + 36, 4);
	check(lapic_addr == LAPIC_BASE && (rdmsr(MSR_APIC_BASE) & ~0xffful) == LAPIC_BASE, "madt.lapic_address",
	      "MADT local APIC address 0x%x, IA32_APIC_BASE 0x%lx", lapic_addr, rdmsr(MSR_APIC_BASE));

	end = (const uint8_t *)madt + madt->length;
	for (p = (const uint8_t *)madt + 44; p + 2 <= end && p[1] >= 2 && p + p[1] <= end; p += p[1]) {
		uint32_t id, flags;

		if (p[0] == 0 && p[1] >= 8) {		/* processor local APIC */
			id = p[3];
			memcpy(&flags, p + 4, 4);
		} else if (p[0] == 9 && p[1] >= 16) {	/* processor local x2APIC */
			memcpy(&id, p + 4, 4);
			memcpy(&flags, p + 8, 4);
		} else {
			continue;
		}
		if (!(flags & 1))	/* not enabled */
			continue;
		if (madt_n == SMP_MAX_CPUS) {
			overflow = true;
			break;
		}
		for (unsigned i = 0; i < madt_n; i++)
			unique &= madt_ids[i] != id;
		bsp_listed |= id == bsp;
		madt_ids[madt_n++] = id;
	}
	printf("# MADT: %u enabled processors, BSP APIC ID %u\n", madt_n, bsp);
	check(!overflow && madt_n == want, "madt.cpu_count", "%u enabled processors%s, %lu configured", madt_n,
	      overflow ? " or more" : "", want);
	check(unique, "madt.apic_ids_unique", "an APIC ID is listed twice");
	check(bsp_listed, "madt.bsp_listed", "the BSP's APIC ID %u is not in the MADT", bsp);
	check((cpuid(1, 0).ebx >> 24) == bsp, "bsp.cpuid_apic_id", "CPUID.1:EBX[31:24] = %u, APIC ID register %u",
	      cpuid(1, 0).ebx >> 24, bsp);
	check(rdmsr(MSR_APIC_BASE) & APIC_BASE_BSP, "bsp.apic_base_bsp_flag", "IA32_APIC_BASE = 0x%lx",
	      rdmsr(MSR_APIC_BASE));
}

/* ---- bring-up ---- */

static void test_startup(void)
{
	uint32_t bsp = lapic_id();
	unsigned started = 0;
	bool ids = true, cpuid_ids = true, flags = true;

	ncpus = 1;
	cpus[0].madt_id = bsp;
	for (unsigned i = 0; i < madt_n; i++) {
		if (madt_ids[i] == bsp)
			continue;
		unsigned cpu = ncpus++;

		cpus[cpu].madt_id = madt_ids[i];
		/* ap_loop reports (boots) after the runtime saw it arrive */
		if (smp_start_ap(madt_ids[i], cpu, ap_loop) && wait_for(&cpus[cpu].boots, 1))
			started++;
		else
			fail("ap.started", "the AP with APIC ID %u did not report in", madt_ids[i]);
	}
	printf("# %u of %u APs started\n", started, ncpus - 1);
	if (ncpus == 1) {
		skip("ap.started", "the MADT lists no other processor");
		skip("ap.apic_id_matches_madt", "the MADT lists no other processor");
		skip("ap.cpuid_apic_id", "the MADT lists no other processor");
		skip("ap.bsp_flag_clear", "the MADT lists no other processor");
		return;
	}
	check(started == ncpus - 1, "ap.started", "%u of %u APs reported in", started, ncpus - 1);

	for (unsigned i = 1; i < ncpus; i++) {
		struct cpu_info *c = &cpus[i];

		if (!c->boots)
			continue;
		if (c->apic_id != c->madt_id) {
			ids = false;
			fail("ap.apic_id_matches_madt", "started APIC ID %u, its APIC ID register says %u", c->madt_id,
			     c->apic_id);
		}
		if (c->cpuid_id != c->apic_id) {
			cpuid_ids = false;
			fail("ap.cpuid_apic_id", "APIC ID %u, CPUID.1:EBX[31:24] %u", c->apic_id, c->cpuid_id);
		}
		/* 9.4.1: the BSP flag is set only on the BSP */
		if (c->apic_base & APIC_BASE_BSP) {
			flags = false;
			fail("ap.bsp_flag_clear", "APIC ID %u: IA32_APIC_BASE = 0x%lx", c->apic_id, c->apic_base);
		}
	}
	if (ids)
		pass("ap.apic_id_matches_madt");
	if (cpuid_ids)
		pass("ap.cpuid_apic_id");
	if (flags)
		pass("ap.bsp_flag_clear");
}

/* ---- IPIs: fixed delivery, physical destination (11.6) ---- */

static void send_to_bsp(unsigned cpu)
{
	lapic_ipi(cpus[0].madt_id, ICR_FIXED | ICR_ASSERT | VEC_TO_BSP);
}

static void test_ipi(void)
{
	bool to_bsp = true, to_ap = true;

	if (ncpus < 2) {
		skip("ipi.ap_to_bsp", "no AP");
		skip("ipi.bsp_to_ap", "no AP");
		return;
	}
	for (unsigned i = 1; i < ncpus; i++) {
		unsigned before = bsp_ipis, ap_before = cpus[i].ipis;

		if (!cpus[i].boots)
			continue;
		sti();
		post(i, send_to_bsp);
		wait_for(&bsp_ipis, before + 1);
		cli();
		if (bsp_ipis != before + 1) {
			to_bsp = false;
			fail("ipi.ap_to_bsp", "APIC ID %u -> BSP: %u interrupts arrived, expected 1", cpus[i].madt_id,
			     bsp_ipis - before);
		}
		lapic_ipi(cpus[i].madt_id, ICR_FIXED | ICR_ASSERT | VEC_TO_AP);
		wait_for(&cpus[i].ipis, ap_before + 1);
		if (cpus[i].ipis != ap_before + 1) {
			to_ap = false;
			fail("ipi.bsp_to_ap", "BSP -> APIC ID %u: %u interrupts arrived, expected 1", cpus[i].madt_id,
			     cpus[i].ipis - ap_before);
		}
	}
	if (to_bsp)
		pass("ipi.ap_to_bsp");
	if (to_ap)
		pass("ipi.bsp_to_ap");
}

/* ---- LOCK XADD from every CPU at once (9.1.2.2) ---- */

static void xadd_rounds(void)
{
	uint32_t one;

	for (int i = 0; i < XADD_ROUNDS; i++) {
		one = 1;
		asm volatile("lock xaddl %0, %1" : "+r"(one), "+m"(counter) : : "memory");
	}
}

static void xadd_work(unsigned cpu)
{
	asm volatile("lock incl %0" : "+m"(xadd_ready));
	while (!xadd_go)
		asm volatile("pause");
	xadd_rounds();
	asm volatile("lock incl %0" : "+m"(xadd_done));
}

static void test_xadd(void)
{
	unsigned running = 0;

	for (unsigned i = 1; i < ncpus; i++) {
		if (!cpus[i].boots)
			continue;
		cpus[i].work = xadd_work;
		running++;
	}
	wait_for(&xadd_ready, running);
	xadd_go = 1;
	xadd_rounds();
	wait_for(&xadd_done, running);
	check(xadd_done == running && counter == (running + 1) * XADD_ROUNDS, "lock_xadd.total",
	      "%u CPUs x %d increments gave %u (%u of %u APs finished)", running + 1, XADD_ROUNDS, counter,
	      xadd_done, running);
}

/* ---- INIT and SIPI on a running AP (9.4.2, 11.6.1) ---- */

static void test_init(void)
{
	struct cpu_info *c = &cpus[1];
	uint64_t hb, prev;
	unsigned boots;
	bool stopped = false;

	if (ncpus < 2 || !c->boots) {
		skip("sipi.ignored_while_running", "no AP");
		skip("init.stops_the_ap", "no AP");
		skip("init.then_sipi_restarts", "no AP");
		return;
	}
	/* a SIPI to a processor that is not waiting for one does nothing:
	 * the trampoline is still in place, and an AP that ran it would count
	 * one more boot */
	boots = 0;
	for (unsigned i = 1; i < ncpus; i++)
		boots += cpus[i].boots;
	lapic_ipi(c->madt_id, ICR_STARTUP | ICR_ASSERT | (AP_TRAMPOLINE >> 12));
	hb = c->heartbeat;
	for (unsigned long i = 0; i < WAIT_SPINS && c->heartbeat < hb + 10000; i++)
		asm volatile("pause");
	for (unsigned i = 1; i < ncpus; i++)
		boots -= cpus[i].boots;
	check(boots == 0 && c->heartbeat >= hb + 10000, "sipi.ignored_while_running",
	      "after a SIPI to a running AP: %d more boots, heartbeat +%lu", -(int)boots, c->heartbeat - hb);

	/* INIT: the AP stops and waits for a SIPI */
	smp_init_ipi(c->madt_id);
	prev = c->heartbeat;
	for (int tries = 0; tries < 1000 && !stopped; tries++) {
		for (unsigned long i = 0; i < 100000; i++)
			asm volatile("pause");
		hb = c->heartbeat;
		stopped = hb == prev;
		prev = hb;
	}
	check(stopped, "init.stops_the_ap", "the AP's heartbeat kept counting after an INIT");

	boots = c->boots;
	check(smp_sipi(c->madt_id, 1, ap_loop) && wait_for(&c->boots, boots + 1), "init.then_sipi_restarts",
	      "after INIT, a SIPI: %u boots, expected %u", c->boots, boots + 1);
}

void test_main(void)
{
	uint64_t want;

	if (!cmdline_uint("cpus", &want))
		want = 1;
	/* the PIC's timer (programmed by firmware) must not reach us */
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
	lapic_enable();
	trap_set_handler(VEC_TO_BSP, on_ipi);
	trap_set_handler(VEC_TO_AP, on_ipi);

	test_madt(want);
	test_startup();
	test_ipi();
	test_xadd();
	test_init();
}
