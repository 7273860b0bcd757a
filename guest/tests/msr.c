/* msr: the architectural MSRs a kernel relies on. The TSC and TSC_ADJUST,
 * IA32_APIC_BASE, EFER, PAT, MISC_ENABLE, the SYSCALL/SYSENTER MSRs and
 * their canonical checks, FS/GS base against the segment registers,
 * TSC_AUX with RDTSCP, and the #GP(0) of RDMSR/WRMSR for an MSR that does
 * not exist, for a reserved bit and at CPL 3. Every expected value comes
 * from the Intel SDM (vol. 3 and vol. 4, "Model-Specific Registers"). */
#include "guest.h"

#define MSR_TSC 0x10
#define MSR_APIC_BASE 0x1b
#define MSR_TSC_ADJUST 0x3b
#define MSR_SYSENTER_CS 0x174
#define MSR_SYSENTER_ESP 0x175
#define MSR_SYSENTER_EIP 0x176
#define MSR_MISC_ENABLE 0x1a0
#define MSR_PAT 0x277
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_SFMASK 0xc0000084
#define MSR_FS_BASE 0xc0000100
#define MSR_GS_BASE 0xc0000101
#define MSR_KERNEL_GS_BASE 0xc0000102
#define MSR_TSC_AUX 0xc0000103
/* outside every architectural and hypervisor MSR range */
#define MSR_ABSENT 0xdeadbeef

#define APIC_BASE_BSP (1ul << 8)
#define APIC_BASE_X2APIC (1ul << 10)
#define APIC_BASE_ENABLE (1ul << 11)
#define APIC_DEFAULT_BASE 0xfee00000ul

/* SDM vol. 3A 11.12.4: the PAT's value at power-up and reset */
#define PAT_RESET 0x0007040600070406ul

/* a 2 MiB page, inside 128 MiB of RAM, that ring 3 may use */
#define USER_PAGE (36ul << 20)
#define PTE_US 0x04ul

#define NONCANONICAL 0x0000800000000000ul

static bool intel;
static unsigned maxphyaddr;

/* the last access ended in #GP(0), reported on the instruction itself */
static bool gp0(void)
{
	return trap_last.vector == VEC_GP && trap_last.error_code == 0 &&
	       trap_last.count == 1 && trap_last.rip == trap_last.region_start;
}

static void expect_wr_gp(const char *name, uint32_t msr, uint64_t v)
{
	uint64_t before = rdmsr(msr), after;

	wrmsr_try(msr, v);
	if (!gp0()) {
		fail(name, "WRMSR 0x%x <- 0x%lx: %s (error 0x%lx), expected #GP(0)",
		     msr, v, trap_name(trap_last.vector), trap_last.error_code);
		if (trap_last.vector < 0)
			wrmsr(msr, before);
		return;
	}
	after = rdmsr(msr);
	check(after == before, name,
	      "#GP(0) as expected, but the MSR changed 0x%lx -> 0x%lx", before,
	      after);
}

static void expect_readback(const char *name, uint32_t msr, uint64_t v)
{
	uint64_t before = rdmsr(msr), got = 0;
	int vec = wrmsr_try(msr, v);

	if (vec >= 0) {
		fail(name, "WRMSR 0x%x <- 0x%lx: %s", msr, v, trap_name(vec));
		return;
	}
	rdmsr_try(msr, &got);
	wrmsr(msr, before);
	check(got == v, name, "MSR 0x%x: wrote 0x%lx, read 0x%lx", msr, v, got);
}

/* ---- TSC: SDM vol. 3B 18.17 ---- */

static void test_tsc(void)
{
	uint64_t prev = rdtsc(), t, m, worst = 0;
	bool mono = true;

	for (int i = 0; i < 1000; i++) {
		t = rdtsc();
		if (t < prev) {
			mono = false;
			worst = prev - t;
		}
		prev = t;
	}
	check(mono, "tsc.monotonic", "RDTSC went back by %lu", worst);

	t = rdtsc();
	m = rdmsr(MSR_TSC);
	prev = rdtsc();
	check(t <= m && m <= prev, "tsc.rdmsr_is_rdtsc",
	      "RDMSR(0x10) = %lu outside the RDTSCs around it [%lu, %lu]", m,
	      t, prev);
}

/* 18.17.3: a WRMSR to the TSC that moves it by X moves TSC_ADJUST by X;
 * a WRMSR to TSC_ADJUST that adds X to it adds X to the TSC. */
static void test_tsc_adjust(void)
{
	const uint64_t x = 1ul << 40, slack = 1ul << 38;
	uint64_t adj0, adj1, t0, t1, t2, t3;

	if (!(cpuid(0, 0).eax >= 7 && (cpuid(7, 0).ebx & (1u << 1)))) {
		skip("tsc_adjust.tsc_write", "CPUID.(7,0):EBX[1] (IA32_TSC_ADJUST) is 0");
		skip("tsc_adjust.adjust_write", "CPUID.(7,0):EBX[1] (IA32_TSC_ADJUST) is 0");
		return;
	}
	adj0 = rdmsr(MSR_TSC_ADJUST);
	t0 = rdtsc();
	wrmsr(MSR_TSC, t0 + x);
	t1 = rdtsc();
	adj1 = rdmsr(MSR_TSC_ADJUST);
	/* the write added x minus the cycles between the RDTSC and it */
	check(t1 >= t0 + x && adj1 - adj0 <= x && adj1 - adj0 > x - slack,
	      "tsc_adjust.tsc_write",
	      "TSC %lu -> wrote %lu -> %lu; TSC_ADJUST moved by %ld, expected "
	      "just under %lu", t0, t0 + x, t1, (int64_t)(adj1 - adj0), x);

	t2 = rdtsc();
	wrmsr(MSR_TSC_ADJUST, adj1 - x);
	t3 = rdtsc();
	check(t3 < t2 && t3 + x >= t2 && t3 + x - t2 < slack,
	      "tsc_adjust.adjust_write",
	      "TSC %lu before, %lu after TSC_ADJUST -= %lu", t2, t3, x);
	wrmsr(MSR_TSC_ADJUST, adj0);
}

/* ---- IA32_APIC_BASE: SDM vol. 3A 11.4.4 ---- */

static void test_apic_base(void)
{
	uint64_t v = rdmsr(MSR_APIC_BASE);
	uint64_t addr_mask = ((1ul << maxphyaddr) - 1) & ~0xffful;

	check(v & APIC_BASE_BSP, "apic_base.bsp", "IA32_APIC_BASE = 0x%lx: BSP flag clear on the boot CPU", v);
	check(v & APIC_BASE_ENABLE, "apic_base.enabled",
	      "IA32_APIC_BASE = 0x%lx: the APIC is disabled after reset", v);
	check((v & addr_mask) == APIC_DEFAULT_BASE, "apic_base.address",
	      "IA32_APIC_BASE = 0x%lx, base 0x%lx, expected 0x%lx", v,
	      v & addr_mask, APIC_DEFAULT_BASE);
	/* bits 7:0 and 9 are reserved, and so is every bit at or above
	 * MAXPHYADDR */
	expect_wr_gp("apic_base.reserved_bit0_gp", MSR_APIC_BASE, v | 1);
	expect_wr_gp("apic_base.reserved_bit9_gp", MSR_APIC_BASE, v | 1ul << 9);
	expect_wr_gp("apic_base.above_maxphyaddr_gp", MSR_APIC_BASE,
		     v | 1ul << maxphyaddr);
	/* 11.12.1: setting EXTD without x2APIC support is reserved */
	if (cpuid(1, 0).ecx & (1u << 21))
		skip("apic_base.x2apic_unsupported_gp", "the CPU has x2APIC");
	else
		expect_wr_gp("apic_base.x2apic_unsupported_gp", MSR_APIC_BASE,
			     v | APIC_BASE_X2APIC);
}

/* ---- EFER: SDM vol. 3A 2.2.1, 9.8.5 ---- */

static void test_efer(void)
{
	uint64_t efer = rdmsr(MSR_EFER), got;
	bool nx = cpuid(0x80000001, 0).edx & (1u << 20);

	check((efer & (EFER_LME | EFER_LMA)) == (EFER_LME | EFER_LMA),
	      "efer.long_mode", "EFER = 0x%lx in 64-bit mode", efer);

	expect_readback("efer.sce_set", MSR_EFER, efer | EFER_SCE);
	expect_readback("efer.sce_clear", MSR_EFER, efer & ~EFER_SCE);
	if (nx) {
		expect_readback("efer.nxe_set", MSR_EFER, efer | EFER_NXE);
		expect_readback("efer.nxe_clear", MSR_EFER, efer & ~EFER_NXE);
		skip("efer.nxe_unsupported_gp", "the CPU has NX (CPUID.80000001H:EDX[20])");
	} else {
		skip("efer.nxe_set", "the CPU has no NX (CPUID.80000001H:EDX[20])");
		skip("efer.nxe_clear", "the CPU has no NX (CPUID.80000001H:EDX[20])");
		expect_wr_gp("efer.nxe_unsupported_gp", MSR_EFER, efer | EFER_NXE);
	}

	/* 9.8.5: changing LME while paging is enabled is a #GP */
	expect_wr_gp("efer.lme_clear_with_paging_gp", MSR_EFER, efer & ~EFER_LME);
	/* LMA is read-only: the processor sets it from LME and CR0.PG */
	wrmsr_try(MSR_EFER, efer & ~EFER_LMA);
	got = rdmsr(MSR_EFER);
	check(got & EFER_LMA, "efer.lma_read_only",
	      "after writing EFER with LMA clear, EFER = 0x%lx", got);
	wrmsr(MSR_EFER, efer);

	/* bits 7:1, 9 and 63:12 (but AMD's 15:12) are reserved */
	expect_wr_gp("efer.reserved_bit1_gp", MSR_EFER, efer | 1ul << 1);
	expect_wr_gp("efer.reserved_bit9_gp", MSR_EFER, efer | 1ul << 9);
	expect_wr_gp("efer.reserved_bit63_gp", MSR_EFER, efer | 1ul << 63);
}

/* ---- PAT: SDM vol. 3A 11.12.2 ---- */

static void test_pat(void)
{
	uint64_t pat = rdmsr(MSR_PAT);

	check(pat == PAT_RESET, "pat.reset_value", "IA32_PAT = 0x%016lx, expected 0x%016lx", pat, PAT_RESET);
	/* UC WC WT WP WB UC- in a new order: every valid type */
	expect_readback("pat.readback", MSR_PAT, 0x0007010600050406ul);
	/* types 2, 3 and 8-255 are reserved: "a #GP" */
	expect_wr_gp("pat.type2_gp", MSR_PAT, (pat & ~0xfful) | 2);
	expect_wr_gp("pat.type3_gp", MSR_PAT, (pat & ~0xfful) | 3);
	expect_wr_gp("pat.type8_gp", MSR_PAT, (pat & ~(0xfful << 56)) | 8ul << 56);
	expect_wr_gp("pat.type_ff_gp", MSR_PAT, (pat & ~(0xfful << 24)) | 0xfful << 24);
}

/* ---- IA32_MISC_ENABLE: SDM vol. 4 table 2-2 (Intel only) ---- */

static void test_misc_enable(void)
{
	uint64_t v;

	if (!intel) {
		skip("misc_enable.fast_strings", "not a GenuineIntel CPU: IA32_MISC_ENABLE is Intel's");
		skip("misc_enable.fast_strings_rw", "not a GenuineIntel CPU: IA32_MISC_ENABLE is Intel's");
		return;
	}
	if (rdmsr_try(MSR_MISC_ENABLE, &v) >= 0) {
		fail("misc_enable.fast_strings", "RDMSR 0x1a0: %s", trap_name(trap_last.vector));
		return;
	}
	/* bit 0, fast-string enable, is set by default */
	check(v & 1, "misc_enable.fast_strings", "IA32_MISC_ENABLE = 0x%lx", v);
	expect_readback("misc_enable.fast_strings_rw", MSR_MISC_ENABLE, v ^ 1);
}

/* ---- SYSENTER/SYSCALL MSRs, FS/GS bases: the WRMSR canonical checks
 * (SDM vol. 2B WRMSR, "Protected Mode Exceptions") ---- */

static void test_canonical(void)
{
	/* SYSENTER_ESP/EIP are in the SDM's list; AMD keeps only 32 bits
	 * of them, so the check is Intel's */
	static const struct {
		uint32_t msr;
		const char *name;
		bool intel_only;
	} msrs[] = {
		{ MSR_SYSENTER_ESP, "sysenter_esp", true },
		{ MSR_SYSENTER_EIP, "sysenter_eip", true },
		{ MSR_LSTAR, "lstar", false },
		{ MSR_FS_BASE, "fs_base", false },
		{ MSR_GS_BASE, "gs_base", false },
		{ MSR_KERNEL_GS_BASE, "kernel_gs_base", false },
	};
	char name[64];

	for (size_t i = 0; i < ARRAY_SIZE(msrs); i++) {
		if (msrs[i].intel_only && !intel) {
			snprintf(name, sizeof(name), "%s.canonical_readback", msrs[i].name);
			skip(name, "not a GenuineIntel CPU: the MSR is 32 bits wide on AMD");
			snprintf(name, sizeof(name), "%s.noncanonical_gp", msrs[i].name);
			skip(name, "not a GenuineIntel CPU: the MSR is 32 bits wide on AMD");
			continue;
		}
		snprintf(name, sizeof(name), "%s.canonical_readback", msrs[i].name);
		expect_readback(name, msrs[i].msr, 0xffff800012345678ul);
		snprintf(name, sizeof(name), "%s.noncanonical_gp", msrs[i].name);
		expect_wr_gp(name, msrs[i].msr, NONCANONICAL);
	}
	expect_readback("sysenter_cs.readback", MSR_SYSENTER_CS, 0x10);
	/* STAR holds selectors and a 32-bit EIP, no address to check */
	expect_readback("star.readback", MSR_STAR, 0x0023001000c0ffeeul);
	expect_readback("sfmask.readback", MSR_SFMASK, 0x47700);
}

static void test_seg_bases(void)
{
	static volatile uint64_t cell_fs = 0x1111, cell_gs = 0x2222;
	uint64_t fs_old = rdmsr(MSR_FS_BASE), gs_old = rdmsr(MSR_GS_BASE);
	uint64_t kgs_old = rdmsr(MSR_KERNEL_GS_BASE), v, gs, kgs;

	/* FS_BASE and GS_BASE are the hidden bases FS: and GS: use */
	wrmsr(MSR_FS_BASE, (uintptr_t)&cell_fs);
	wrmsr(MSR_GS_BASE, (uintptr_t)&cell_gs);
	asm volatile("movq %%fs:0, %0" : "=r"(v));
	check(v == 0x1111, "fs_base.segment_base", "FS:0 read 0x%lx, expected 0x1111", v);
	asm volatile("movq %%gs:0, %0" : "=r"(v));
	check(v == 0x2222, "gs_base.segment_base", "GS:0 read 0x%lx, expected 0x2222", v);

	/* SWAPGS exchanges GS_BASE and KERNEL_GS_BASE (vol. 2B SWAPGS) */
	wrmsr(MSR_KERNEL_GS_BASE, (uintptr_t)&cell_fs);
	asm volatile("swapgs" : : : "memory");
	gs = rdmsr(MSR_GS_BASE);
	kgs = rdmsr(MSR_KERNEL_GS_BASE);
	asm volatile("movq %%gs:0, %0" : "=r"(v));
	asm volatile("swapgs" : : : "memory");
	check(gs == (uintptr_t)&cell_fs && kgs == (uintptr_t)&cell_gs && v == 0x1111,
	      "swapgs.exchange", "after SWAPGS: GS_BASE 0x%lx, KERNEL_GS_BASE 0x%lx, GS:0 0x%lx",
	      gs, kgs, v);

	/* a selector load in 64-bit mode loads the base from the
	 * descriptor (vol. 3A 3.4.4): SEL_DATA's base is 0 */
	asm volatile("movw %w0, %%fs" : : "r"(SEL_DATA));
	v = rdmsr(MSR_FS_BASE);
	check(v == 0, "fs_base.selector_load", "FS_BASE = 0x%lx after loading FS with a flat selector", v);

	wrmsr(MSR_FS_BASE, fs_old);
	wrmsr(MSR_GS_BASE, gs_old);
	wrmsr(MSR_KERNEL_GS_BASE, kgs_old);
}

/* ---- TSC_AUX: vol. 2B RDTSCP, vol. 4 table 2-2 ---- */

static void test_tsc_aux(void)
{
	uint32_t lo, hi, aux;
	uint64_t t0, t1, t;

	if (!(cpuid(0x80000001, 0).edx & (1u << 27))) {
		skip("tsc_aux.rdtscp", "CPUID.80000001H:EDX[27] (RDTSCP) is 0");
		skip("tsc_aux.reserved_gp", "CPUID.80000001H:EDX[27] (RDTSCP) is 0");
		return;
	}
	wrmsr(MSR_TSC_AUX, 0x5a5a1234);
	t0 = rdtsc();
	asm volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(aux));
	t1 = rdtsc();
	t = (uint64_t)hi << 32 | lo;
	check(aux == 0x5a5a1234 && t0 <= t && t <= t1, "tsc_aux.rdtscp",
	      "RDTSCP: ECX 0x%x (TSC_AUX 0x5a5a1234), TSC %lu between %lu and %lu",
	      aux, t, t0, t1);
	/* bits 63:32 are reserved */
	expect_wr_gp("tsc_aux.reserved_gp", MSR_TSC_AUX, 1ul << 32);
}

/* ---- the #GP(0) cases of RDMSR/WRMSR ---- */

static void test_absent(void)
{
	uint64_t v;

	rdmsr_try(MSR_ABSENT, &v);
	check(gp0(), "absent.rdmsr_gp", "RDMSR 0x%x: %s (error 0x%lx), expected #GP(0)",
	      MSR_ABSENT, trap_name(trap_last.vector), trap_last.error_code);
	wrmsr_try(MSR_ABSENT, 0);
	check(gp0(), "absent.wrmsr_gp", "WRMSR 0x%x: %s (error 0x%lx), expected #GP(0)",
	      MSR_ABSENT, trap_name(trap_last.vector), trap_last.error_code);
}

/* RDMSR and WRMSR are privileged: at CPL 3, #GP(0). A ring-3 stub on a
 * user page runs the instruction and then ud2; the #GP comes back to ring 0
 * through the TSS's RSP0 and trap_catch abandons the user context. */
static uint8_t ring0_stack[8192] __attribute__((aligned(16)));

static void user_enter(void *rip)
{
	asm volatile("pushq %[ss]\n\t"
		     "pushq %[rsp]\n\t"
		     "pushq $2\n\t"
		     "pushq %[cs]\n\t"
		     "pushq %[rip]\n\t"
		     "iretq"
		     : : [ss] "i"(SEL_USER_DATA), [rsp] "r"(USER_PAGE + PAGE_2M - 64),
		       [cs] "i"(SEL_USER_CODE64), [rip] "r"(rip), "c"(MSR_TSC), "a"(0), "d"(0)
		     : "memory");
	__builtin_unreachable();
}

/* SDM vol. 2B SYSCALL: from ring 3 to LSTAR with CS from STAR[47:32],
 * CPL 0; the landing's ud2 proves ring 0 fetched it */
extern char syscall_landing[];
asm(".text\n"
    "syscall_landing:\n\t"
    "ud2\n");

static void test_cpl3_syscall(void)
{
	struct trap t;
	uint64_t efer = rdmsr(MSR_EFER), star = rdmsr(MSR_STAR), lstar = rdmsr(MSR_LSTAR),
		 sfmask = rdmsr(MSR_SFMASK);
	int v;

	wrmsr(MSR_EFER, efer | EFER_SCE);
	wrmsr(MSR_STAR, 0x001b0010ul << 32);
	wrmsr(MSR_LSTAR, (uint64_t)syscall_landing);
	wrmsr(MSR_SFMASK, 0x47700);
	v = trap_catch(user_enter, (void *)(USER_PAGE + 8), &t);
	check(v == VEC_UD && t.rip == (uint64_t)syscall_landing, "cpl3.syscall_lands_at_lstar",
	      "ring-3 SYSCALL: %s (error 0x%lx) at 0x%lx, cr2 0x%lx, expected #UD at LSTAR 0x%lx in ring 0",
	      trap_name(v), t.error_code, t.rip, t.cr2, (uint64_t)syscall_landing);
	wrmsr(MSR_EFER, efer);
	wrmsr(MSR_STAR, star);
	wrmsr(MSR_LSTAR, lstar);
	wrmsr(MSR_SFMASK, sfmask);
}

static void test_cpl3(void)
{
	extern uint64_t gdt[], pml4[], pdpt[];
	/* rdmsr; ud2 and wrmsr; ud2, syscall; ud2 */
	static const uint8_t stubs[] = { 0x0f, 0x32, 0x0f, 0x0b, 0x0f, 0x30, 0x0f, 0x0b, 0x0f, 0x05, 0x0f, 0x0b };
	uint64_t tss = ((gdt[SEL_TSS / 8] >> 16) & 0xffffff) |
		       (((gdt[SEL_TSS / 8] >> 56) & 0xff) << 24) |
		       (gdt[SEL_TSS / 8 + 1] << 32);
	uint64_t rsp0 = (uint64_t)ring0_stack + sizeof(ring0_stack);
	static const char *const names[] = { "cpl3.rdmsr_gp", "cpl3.wrmsr_gp" };
	struct trap t;

	memcpy((void *)(tss + 4), &rsp0, 8);
	memcpy((void *)USER_PAGE, stubs, sizeof(stubs));
	pml4[0] |= PTE_US;
	pdpt[0] |= PTE_US;
	*page_pde(USER_PAGE) |= PTE_US;
	write_cr3(read_cr3());
	for (int i = 0; i < 2; i++) {
		int v = trap_catch(user_enter, (void *)(USER_PAGE + 4 * i), &t);

		check(v == VEC_GP && t.error_code == 0 && t.rip == USER_PAGE + 4 * i,
		      names[i],
		      "%s at CPL 3: %s (error 0x%lx) at 0x%lx, expected #GP(0) at 0x%lx",
		      i ? "WRMSR" : "RDMSR", trap_name(v), t.error_code, t.rip,
		      USER_PAGE + 4 * i);
	}
	test_cpl3_syscall();
	asm volatile("movw %w0, %%ds\n\tmovw %w0, %%es\n\t"
		     "movw %w0, %%fs\n\tmovw %w0, %%gs"
		     : : "r"(SEL_DATA));
	*page_pde(USER_PAGE) &= ~PTE_US;
	pdpt[0] &= ~PTE_US;
	pml4[0] &= ~PTE_US;
	write_cr3(read_cr3());
}

void test_main(void)
{
	struct cpuid_regs r = cpuid(0, 0);

	intel = r.ebx == 0x756e6547 && r.edx == 0x49656e69 && r.ecx == 0x6c65746e;
	maxphyaddr = 36;
	if (cpuid(0x80000000, 0).eax >= 0x80000008)
		maxphyaddr = cpuid(0x80000008, 0).eax & 0xff;
	printf("# msr: %s, MAXPHYADDR %u\n", intel ? "GenuineIntel" : "not Intel", maxphyaddr);

	test_tsc();
	test_tsc_adjust();
	test_apic_base();
	test_efer();
	test_pat();
	test_misc_enable();
	test_canonical();
	test_seg_bases();
	test_tsc_aux();
	test_absent();
	test_cpl3();
}
