/* Application processors and the local APIC. smp_start_ap() wakes one AP
 * with INIT-SIPI-SIPI (SDM vol. 3A 9.4.4.1); the AP runs the trampoline of
 * entry.S into long mode on the BSP's page tables and GDT, loads the IDT
 * and calls the test's function with its own stack. APs are started one at
 * a time, so the boot variables below need no lock.
 *
 * An AP has no TSS: it must not take an exception that switches stacks
 * (#DF, NMI, #MC use the IST). Interrupts may reach handlers installed with
 * trap_set_handler() on several CPUs at once; trap_last and trap_catch are
 * shared, so only one CPU at a time may rely on them. */
#include "guest.h"

#define AP_STACK_SIZE 16384
/* pause iterations to wait for an AP that is not there: generous, so that
 * a slow emulator on a loaded host still makes it */
#define AP_WAIT_SPINS (1ul << 27)

#define APIC_ICR_LO 0x300
#define APIC_ICR_HI 0x310
#define ICR_DELIVERY_PENDING (1u << 12)
#define ICR_ASSERT (1u << 14)

extern const char ap_trampoline[], ap_trampoline_end[], ap_tramp_far[], ap_tramp32[];
void trap_init_ap(void);
void ap_main(void);

uint64_t ap_boot_stack;
static volatile unsigned ap_boot_cpu;
static volatile int ap_arrived = -1;
static void (*volatile ap_fn)(unsigned cpu);
static uint8_t ap_stacks[SMP_MAX_CPUS][AP_STACK_SIZE] __attribute__((aligned(16)));

uint32_t lapic_read(unsigned reg)
{
	return *(volatile uint32_t *)(LAPIC_BASE + reg);
}

void lapic_write(unsigned reg, uint32_t v)
{
	*(volatile uint32_t *)(LAPIC_BASE + reg) = v;
}

uint32_t lapic_id(void)
{
	return lapic_read(LAPIC_ID) >> 24;
}

void lapic_ipi(uint32_t dest, uint32_t icr_lo)
{
	lapic_write(APIC_ICR_HI, dest << 24);
	lapic_write(APIC_ICR_LO, icr_lo);
	for (unsigned long i = 0; i < AP_WAIT_SPINS && (lapic_read(APIC_ICR_LO) & ICR_DELIVERY_PENDING); i++)
		asm volatile("pause");
}

void ap_main(void)
{
	unsigned cpu = ap_boot_cpu;
	void (*fn)(unsigned) = ap_fn;

	trap_init_ap();
	ap_arrived = (int)cpu;
	fn(cpu);
	for (;;) {
		cli();
		halt();
	}
}

static void spin(unsigned long n)
{
	while (n--)
		asm volatile("pause");
}

static bool wait_arrival(unsigned cpu)
{
	for (unsigned long i = 0; i < AP_WAIT_SPINS && ap_arrived != (int)cpu; i++)
		asm volatile("pause");
	return ap_arrived == (int)cpu;
}

bool smp_sipi(uint32_t apic_id, unsigned cpu, void (*fn)(unsigned cpu))
{
	uint32_t far = AP_TRAMPOLINE + (uint32_t)(ap_tramp32 - ap_trampoline);

	if (cpu == 0 || cpu >= SMP_MAX_CPUS)
		panic("smp_sipi: cpu %u out of range", cpu);
	memcpy((void *)AP_TRAMPOLINE, ap_trampoline, ap_trampoline_end - ap_trampoline);
	memcpy((void *)(AP_TRAMPOLINE + (ap_tramp_far - ap_trampoline)), &far, 4);
	ap_boot_cpu = cpu;
	ap_fn = fn;
	ap_boot_stack = (uint64_t)ap_stacks[cpu] + AP_STACK_SIZE;
	ap_arrived = -1;
	asm volatile("mfence" : : : "memory");
	lapic_ipi(apic_id, ICR_STARTUP | ICR_ASSERT | (AP_TRAMPOLINE >> 12));
	return wait_arrival(cpu);
}

void smp_init_ipi(uint32_t apic_id)
{
	lapic_ipi(apic_id, ICR_INIT | ICR_ASSERT);
}

bool smp_start_ap(uint32_t apic_id, unsigned cpu, void (*fn)(unsigned cpu))
{
	smp_init_ipi(apic_id);
	spin(10000);
	if (smp_sipi(apic_id, cpu, fn))
		return true;
	/* the second SIPI of the SDM's sequence, for an AP that missed the
	 * first; a started AP ignores it */
	lapic_ipi(apic_id, ICR_STARTUP | ICR_ASSERT | (AP_TRAMPOLINE >> 12));
	return wait_arrival(cpu);
}
