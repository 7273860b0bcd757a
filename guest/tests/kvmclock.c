/* kvmclock: KVM's paravirtual clock as Linux's Documentation/virt/kvm/x86
 * (cpuid.rst, msr.rst) defines it: the "KVMKVMKVM" leaves, the pvclock
 * structure behind MSR_KVM_SYSTEM_TIME_NEW with its version protocol (odd
 * while the hypervisor writes), the stable bit, monotonic time that keeps
 * pace with the ACPI PM timer, and the wall clock behind
 * MSR_KVM_WALL_CLOCK_NEW. Every target reports every check, a target
 * without KVM's interface as SKIPs. Timing only within generous bands. */
#include "guest.h"

#define MSR_KVM_WALL_CLOCK_NEW 0x4b564d00
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define KVM_FEATURE_CLOCKSOURCE2 (1u << 3)
#define KVM_FEATURE_CLOCKSOURCE_STABLE_BIT (1u << 24)
#define PVCLOCK_TSC_STABLE_BIT 1

struct pvclock_vcpu_time_info {
	volatile uint32_t version;
	uint32_t pad0;
	volatile uint64_t tsc_timestamp, system_time;
	volatile uint32_t tsc_to_system_mul;
	volatile int8_t tsc_shift;
	volatile uint8_t flags;
	uint8_t pad[2];
} __attribute__((packed));

struct pvclock_wall_clock {
	volatile uint32_t version, sec, nsec;
} __attribute__((packed));

static union {
	struct pvclock_vcpu_time_info ti;
	uint8_t page[4096];
} clock_area __attribute__((aligned(4096)));
static union {
	struct pvclock_wall_clock wc;
	uint8_t bytes[64];
} wall_area __attribute__((aligned(64)));

static const char *const checks[] = {
	"cpuid.signature", "cpuid.clocksource2", "pvclock.enable", "pvclock.version_protocol",
	"pvclock.stable_bit", "pvclock.monotonic", "pvclock.vs_pm_timer", "wall_clock.sane",
};

static char signature[13];
static uint32_t features;

/* nanoseconds by the pvclock, read under the version protocol */
static uint64_t pvclock_ns(void)
{
	const struct pvclock_vcpu_time_info *p = &clock_area.ti;
	uint32_t ver;
	uint64_t delta, ns;

	do {
		ver = p->version;
		asm volatile("" ::: "memory");
		delta = rdtsc() - p->tsc_timestamp;
		if (p->tsc_shift >= 0)
			delta <<= p->tsc_shift;
		else
			delta >>= -p->tsc_shift;
		ns = p->system_time + (uint64_t)(((unsigned __int128)delta * p->tsc_to_system_mul) >> 32);
		asm volatile("" ::: "memory");
	} while ((ver & 1) || p->version != ver);
	return ns;
}

void test_main(void)
{
	struct cpuid_regs r = cpuid(0x40000000, 0);
	const struct pvclock_vcpu_time_info *p = &clock_area.ti;
	bool have_pm = pm_timer_init();

	memcpy(signature, &r.ebx, 4);
	memcpy(signature + 4, &r.ecx, 4);
	memcpy(signature + 8, &r.edx, 4);
	if (memcmp(signature, "KVMKVMKVM\0\0\0", 12)) {
		for (int i = 0; i < 12; i++)
			if (signature[i] < 0x20 || signature[i] > 0x7e)
				signature[i] = '?';
		for (size_t i = 0; i < ARRAY_SIZE(checks); i++)
			skip(checks[i], "no KVM interface at CPUID 0x40000000 (\"%s\")", signature);
		return;
	}
	pass("cpuid.signature");
	features = cpuid(0x40000001, 0).eax;
	printf("# KVM features 0x%x\n", features);
	if (!check(features & KVM_FEATURE_CLOCKSOURCE2, "cpuid.clocksource2", "0x40000001 EAX 0x%x", features)) {
		for (size_t i = 2; i < ARRAY_SIZE(checks); i++)
			skip(checks[i], "no KVM_FEATURE_CLOCKSOURCE2");
		return;
	}

	uint64_t gpa = (uint64_t)(uintptr_t)p;
	wrmsr(MSR_KVM_SYSTEM_TIME_NEW, gpa | 1);
	uint32_t v1 = p->version;
	check(v1 && !(v1 & 1) && p->tsc_to_system_mul && rdmsr(MSR_KVM_SYSTEM_TIME_NEW) == (gpa | 1),
	      "pvclock.enable", "version %u, mul 0x%x, MSR 0x%lx", v1, p->tsc_to_system_mul,
	      rdmsr(MSR_KVM_SYSTEM_TIME_NEW));
	wrmsr(MSR_KVM_SYSTEM_TIME_NEW, gpa | 1);
	uint32_t v2 = p->version;
	check(!(v2 & 1) && v2 > v1, "pvclock.version_protocol", "version %u after %u: it must move on and be even",
	      v2, v1);
	if (features & KVM_FEATURE_CLOCKSOURCE_STABLE_BIT)
		check(p->flags & PVCLOCK_TSC_STABLE_BIT, "pvclock.stable_bit", "flags 0x%x", p->flags);
	else
		skip("pvclock.stable_bit", "no KVM_FEATURE_CLOCKSOURCE_STABLE_BIT");

	uint64_t prev = pvclock_ns(), first = prev;
	bool mono = true;
	for (int i = 0; i < 2000; i++) {
		uint64_t t = pvclock_ns();
		mono &= t >= prev;
		prev = t;
	}
	check(mono && prev > first, "pvclock.monotonic", "from %lu to %lu ns (backwards: %s)", first, prev,
	      mono ? "no" : "yes");
	if (have_pm) {
		uint64_t n0 = pvclock_ns();
		uint32_t p0 = pm_timer_read(), ticks;
		while ((ticks = pm_timer_ticks_since(p0)) < PM_TIMER_HZ / 20)
			;
		uint64_t ns = pvclock_ns() - n0, pm_ns = (uint64_t)ticks * 1000000000ul / PM_TIMER_HZ;
		check(ns >= pm_ns / 2 && ns <= pm_ns * 2, "pvclock.vs_pm_timer", "%lu ns by kvmclock over %lu ns of PM timer",
		      ns, pm_ns);
	} else {
		skip("pvclock.vs_pm_timer", "no ACPI PM timer to compare with");
	}

	wrmsr(MSR_KVM_WALL_CLOCK_NEW, (uint64_t)(uintptr_t)&wall_area.wc);
	const struct pvclock_wall_clock *w = &wall_area.wc;
	/* after 2020-01-01 and before 2100 */
	check(w->version && !(w->version & 1) && w->sec > 1577836800u && w->sec < 4102444800u && w->nsec < 1000000000u,
	      "wall_clock.sane", "version %u, boot time %u.%09u s", w->version, w->sec, w->nsec);
	wrmsr(MSR_KVM_SYSTEM_TIME_NEW, 0);
}
