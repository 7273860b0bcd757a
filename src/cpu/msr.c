/* The MSRs the CPU core holds itself. Interrupt-controller MSRs (APIC base,
 * TSC deadline) and paravirtual ones go to the machine through bus hooks. */
#include "cpu/cpu.h"

#define MSR_TSC 0x10
#define MSR_PLATFORM_ID 0x17
#define MSR_TSC_ADJUST 0x3b
#define MSR_UCODE_REV 0x8b
#define MSR_ARCH_CAPABILITIES 0x10a
#define MSR_SYSENTER_CS 0x174
#define MSR_SYSENTER_ESP 0x175
#define MSR_SYSENTER_EIP 0x176
#define MSR_MISC_ENABLE 0x1a0
#define MSR_PAT 0x277
#define MSR_EFER 0xc0000080
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SFMASK 0xc0000084
#define MSR_FS_BASE 0xc0000100
#define MSR_GS_BASE 0xc0000101
#define MSR_KERNEL_GS_BASE 0xc0000102
#define MSR_TSC_AUX 0xc0000103

/* The interpreter executes nothing speculatively: RDCL_NO, SSB_NO, MDS_NO,
 * TAA_NO, SBDR_SSDP_NO, FBSDP_NO, PSDP_NO, PBRSB_NO, GDS_NO, RFDS_NO. */
#define ARCH_CAP_EMU (1ull << 0 | 1ull << 4 | 1ull << 5 | 1ull << 8 | 1ull << 13 | 1ull << 14 | \
		      1ull << 15 | 1ull << 24 | 1ull << 26 | 1ull << 27)

bool msr_read(struct cpu *c, uint32_t msr, uint64_t *v)
{
	switch (msr) {
	case MSR_TSC: *v = c->bus.tsc(c->bus.opaque) + c->tsc_adjust; return true;
	case MSR_TSC_ADJUST: *v = (uint64_t)c->tsc_adjust; return true;
	case MSR_PLATFORM_ID: *v = 0; return true;
	case MSR_UCODE_REV: *v = c->ucode_rev; return true;
	case MSR_ARCH_CAPABILITIES: *v = ARCH_CAP_EMU; return true;
	case MSR_SYSENTER_CS: *v = c->sysenter_cs; return true;
	case MSR_SYSENTER_ESP: *v = c->sysenter_esp; return true;
	case MSR_SYSENTER_EIP: *v = c->sysenter_eip; return true;
	case MSR_MISC_ENABLE: *v = c->misc_enable; return true;
	case MSR_PAT: *v = c->pat; return true;
	case MSR_EFER: *v = c->efer; return true;
	case MSR_STAR: *v = c->star; return true;
	case MSR_LSTAR: *v = c->lstar; return true;
	case MSR_CSTAR: *v = c->cstar; return true;
	case MSR_SFMASK: *v = c->sfmask; return true;
	case MSR_FS_BASE: *v = c->seg[S_FS].base; return true;
	case MSR_GS_BASE: *v = c->seg[S_GS].base; return true;
	case MSR_KERNEL_GS_BASE: *v = c->kernel_gs_base; return true;
	case MSR_TSC_AUX: *v = c->tsc_aux; return true;
	}
	return false;
}

/* false: not an MSR of the core (the caller asks the machine, then #GP) */
bool msr_write(struct cpu *c, uint32_t msr, uint64_t v)
{
	switch (msr) {
	case MSR_TSC:
		/* as on hardware, a TSC write moves TSC_ADJUST by the same delta */
		c->tsc_adjust = (int64_t)(v - c->bus.tsc(c->bus.opaque));
		return true;
	case MSR_TSC_ADJUST: c->tsc_adjust = (int64_t)v; return true;
	case MSR_UCODE_REV: c->ucode_rev = 0; return true; /* writing 0 primes the read */
	case MSR_SYSENTER_CS: c->sysenter_cs = v; return true;
	case MSR_SYSENTER_ESP: if (!lin_canonical(v)) cpu_gp0(c); c->sysenter_esp = v; return true;
	case MSR_SYSENTER_EIP: if (!lin_canonical(v)) cpu_gp0(c); c->sysenter_eip = v; return true;
	case MSR_MISC_ENABLE:
		/* fast strings and the bits Linux toggles; limit CPUID (bit 22)
		 * and XD disable (bit 34) are refused */
		if (v & (1ull << 22 | 1ull << 34))
			cpu_gp0(c);
		c->misc_enable = v;
		return true;
	case MSR_PAT:
		for (int i = 0; i < 8; i++) {
			uint8_t t = v >> (8 * i);
			if (t == 2 || t == 3 || t > 7)
				cpu_gp0(c);
		}
		c->pat = v;
		return true;
	case MSR_EFER: cpu_set_efer(c, v); return true;
	case MSR_STAR: c->star = v; return true;
	case MSR_LSTAR: if (!lin_canonical(v)) cpu_gp0(c); c->lstar = v; return true;
	case MSR_CSTAR: if (!lin_canonical(v)) cpu_gp0(c); c->cstar = v; return true;
	case MSR_SFMASK: c->sfmask = v & 0xffffffff; return true;
	case MSR_FS_BASE: if (!lin_canonical(v)) cpu_gp0(c); c->seg[S_FS].base = v; return true;
	case MSR_GS_BASE: if (!lin_canonical(v)) cpu_gp0(c); c->seg[S_GS].base = v; return true;
	case MSR_KERNEL_GS_BASE: if (!lin_canonical(v)) cpu_gp0(c); c->kernel_gs_base = v; return true;
	case MSR_TSC_AUX: if (v >> 32) cpu_gp0(c); c->tsc_aux = v; return true;
	}
	return false;
}
