/* The guest-visible CPU model: one table of CPUID leaves that both engines
 * present. A feature is advertised only when the emu engine implements it
 * and the tests cover it; what is off and why is said next to it. */
#include <string.h>

#include "cpu/cpu.h"
#include "vm/vm.h"

/* leaf 1 EDX */
#define ID1_EDX (1u << 0 /* FPU */ | 1u << 2 /* DE */ | 1u << 3 /* PSE */ | 1u << 4 /* TSC */ | \
		 1u << 5 /* MSR */ | 1u << 6 /* PAE */ | 1u << 7 /* MCE: the #MC vector exists */ | \
		 1u << 8 /* CX8 */ | 1u << 9 /* APIC */ | 1u << 13 /* PGE */ | 1u << 15 /* CMOV */ | \
		 1u << 16 /* PAT */ | 1u << 19 /* CLFSH */ | 1u << 23 /* MMX */ | 1u << 24 /* FXSR */ | \
		 1u << 25 /* SSE */ | 1u << 26 /* SSE2 */)
/* Off: VME/PVI (no virtual-8086 mode), SEP (no sysenter), MTRR (no memory
 * types to model), MCA (no machine-check banks), PSE36, HTT. */

/* leaf 1 ECX */
#define ID1_ECX (1u << 0 /* SSE3 */ | 1u << 9 /* SSSE3 */ | 1u << 13 /* CX16 */ | \
		 1u << 19 /* SSE4.1 */ | 1u << 20 /* SSE4.2 */ | 1u << 23 /* POPCNT */ | \
		 1u << 24 /* TSC-deadline */ | 1u << 31 /* hypervisor present */)
/* Off: x2APIC, XSAVE/AVX (the vector state would need XSAVE and VEX),
 * PCLMULQDQ, AES, MOVBE, RDRAND, MONITOR/MWAIT, VMX, PCID. */

/* leaf 7.0 EBX: TSC_ADJUST (the TSC is one clock for all vCPUs, so Linux
 * may trust it without a watchdog), ERMS (rep movsb/stosb are the fast
 * path of the engine).
 * Off: FSGSBASE, SMEP, SMAP, BMI1/2 (VEX), AVX2, INVPCID.
 * leaf 7.0 EDX: ARCH_CAPABILITIES, whose MSR says which speculative-
 * execution problems the virtual CPU does not have (msr.c). */
#define ID7_EBX (1u << 1 | 1u << 9)
#define ID7_EDX (1u << 29)

/* 0x80000001 ECX: LAHF/SAHF in 64-bit mode, PREFETCHW (executes as a hint);
 * EDX: SYSCALL, NX, 1 GiB pages, RDTSCP, long mode */
#define EXT1_ECX (1u << 0 | 1u << 8)
#define EXT1_EDX (1u << 11 | 1u << 20 | 1u << 26 | 1u << 27 | 1u << 29)

static void put_str(uint32_t *regs, const char *s, int n)
{
	char buf[48] = { 0 };
	memcpy(buf, s, strlen(s) < (size_t)n * 4 ? strlen(s) : (size_t)n * 4);
	memcpy(regs, buf, n * 4);
}

/* KVM's paravirtual leaves (Documentation/virt/kvm/x86/cpuid.rst):
 * KVM_FEATURE_CLOCKSOURCE2 (kvmclock at 0x4b564d00/01, src/dev/kvmclock.c)
 * and KVM_FEATURE_CLOCKSOURCE_STABLE_BIT (one TSC for all vCPUs).
 * Off: the old kvmclock MSRs, async page faults, steal time, PV EOI,
 * PV TLB flush, PV send-IPI, poll control. */
#define KVM_FEATURES (1u << 3 | 1u << 24)

/* Hyper-V's leaves (TLFS "Feature and Interface Discovery"), only what
 * src/dev/hyperv/ implements. 0x40000003 EAX: the partition reference
 * counter, SynIC, synthetic timers, hypercall page and guest OS ID,
 * VP index, reset, reference TSC page, the TSC/APIC frequency MSRs.
 * EBX: HvPostMessage and HvSignalEvent. EDX: the frequency MSRs, the
 * crash MSRs, direct-mode synthetic timers.
 * Off: VP runtime, APIC-access MSRs and assist page features, statistics
 * pages, guest idle, reenlightenment, TSC-invariant control, extended
 * hypercalls, XMM hypercall input/output. */
#define HV_FEATURES_EAX (1u << 1 | 1u << 2 | 1u << 3 | 1u << 5 | 1u << 6 | 1u << 7 | 1u << 9 | 1u << 11)
#define HV_FEATURES_EBX (1u << 4 | 1u << 5)
#define HV_FEATURES_EDX (1u << 8 | 1u << 10 | 1u << 19)
/* 0x40000004 EAX: relaxed timing (watchdogs must not count on the speed
 * of a vCPU: the emu engine is an interpreter), and auto-EOI deprecated
 * (as the TLFS asks of hypervisors with a virtual APIC; auto-EOI SINTs
 * work all the same).
 * EBX 0xFFFFFFFF: never notify long spin waits. */
#define HV_HINTS_EAX (1u << 5 | 1u << 9)

static void pv_leaf(int personality, uint32_t leaf, struct cpuid_result *r)
{
	uint32_t v[3];

	if (personality == PERSONALITY_KVM) {
		if (leaf == 0x40000000) {
			put_str(v, "KVMKVMKVM", 3);
			r->eax = 0x40000001;
			r->ebx = v[0];
			r->ecx = v[1];
			r->edx = v[2];
		} else if (leaf == 0x40000001) {
			r->eax = KVM_FEATURES;
		}
		return;
	}
	switch (leaf) {
	case 0x40000000:
		put_str(v, "Microsoft Hv", 3);
		r->eax = 0x40000006;
		r->ebx = v[0];
		r->ecx = v[1];
		r->edx = v[2];
		break;
	case 0x40000001:
		put_str(v, "Hv#1", 1);
		r->eax = v[0];
		break;
	case 0x40000002:
		/* the version a guest may gate interfaces on: 10.0 build 20348 */
		r->eax = 20348;
		r->ebx = 10u << 16;
		break;
	case 0x40000003:
		r->eax = HV_FEATURES_EAX;
		r->ebx = HV_FEATURES_EBX;
		r->edx = HV_FEATURES_EDX;
		break;
	case 0x40000004:
		r->eax = HV_HINTS_EAX;
		r->ebx = 0xFFFFFFFF;
		break;
	case 0x40000005:
		r->eax = VM_MAX_CPUS; /* virtual processors */
		r->ebx = VM_MAX_CPUS; /* logical processors */
		break;
	/* 0x40000006, hardware features in use (SLAT, DMA remapping, ...):
	 * none */
	}
}

void cpuid_query(int personality, int cpu_index, uint32_t leaf, uint32_t sub, struct cpuid_result *r)
{
	memset(r, 0, sizeof(*r));
	/* past the highest basic or extended leaf, Intel CPUs return the
	 * highest basic leaf (SDM vol. 2A, CPUID) */
	if ((leaf > 0x16 && leaf < 0x40000000) || leaf > 0x80000008) {
		leaf = 0x16;
		sub = 0;
	}
	switch (leaf) {
	case 0: {
		uint32_t v[3];
		put_str(v, "GenuineIntel", 3);
		r->eax = 0x16;
		r->ebx = v[0];
		r->edx = v[1];
		r->ecx = v[2];
		break;
	}
	case 1:
		/* family 6, model 0x55, stepping 7 */
		r->eax = 0x00050657;
		r->ebx = (uint32_t)cpu_index << 24 | 1u << 16 | 8u << 8;
		r->ecx = ID1_ECX;
		r->edx = ID1_EDX;
		break;
	case 6:
		r->eax = 1u << 2; /* ARAT: the LAPIC timer never stops */
		break;
	case 7:
		if (sub == 0) {
			r->ebx = ID7_EBX;
			r->edx = ID7_EDX;
		}
		break;
	case 0x15:
		r->eax = 1;
		r->ebx = VM_TSC_RATIO;
		r->ecx = VM_CRYSTAL_HZ;
		break;
	case 0x16:
		r->eax = VM_TSC_HZ / 1000000;
		r->ebx = VM_TSC_HZ / 1000000;
		r->ecx = 100;
		break;
	case 0x40000000 ... 0x400000FF:
		pv_leaf(personality, leaf, r);
		break;
	case 0x80000000:
		r->eax = 0x80000008;
		break;
	case 0x80000001:
		r->ecx = EXT1_ECX;
		r->edx = EXT1_EDX;
		break;
	case 0x80000002: case 0x80000003: case 0x80000004: {
		static const char brand[49] = "accord virtual CPU";
		uint32_t v[12];
		put_str(v, brand, 12);
		memcpy(r, &v[(leaf - 0x80000002) * 4], 16);
		break;
	}
	case 0x80000007:
		r->edx = 1u << 8; /* invariant TSC */
		break;
	case 0x80000008:
		r->eax = VM_PHYS_ADDR_BITS | 48 << 8; /* physical and linear address bits */
		break;
	}
}
