/* smoke: the first guest test kernel. CPUID sanity, long mode, the basic
 * exceptions with their vectors, error codes and reported RIPs, the TSC, and
 * a few integer and string instructions. Every expected value comes from the
 * Intel SDM. */
#include "guest.h"

/* A 2 MiB page inside 128 MiB of RAM that nothing else uses. */
#define PF_TEST_PAGE (32ul << 20)

static void test_boot(void)
{
	const uint32_t *info = (const uint32_t *)(uintptr_t)boot_info;

	switch (boot_protocol) {
	case BOOT_MULTIBOOT:
		check(boot_info != 0, "boot.info", "multiboot_info pointer is 0");
		break;
	case BOOT_PVH:
		check(boot_info && info[0] == 0x336ec578, "boot.info",
		      "hvm_start_info at 0x%x has magic 0x%x", boot_info,
		      boot_info ? info[0] : 0);
		break;
	default:
		fail("boot.info", "entered without the Multiboot magic or PVH");
	}
}

static void test_cpuid(void)
{
	struct cpuid_regs r = cpuid(0, 0);
	uint32_t need, missing;
	char vendor[13];
	bool printable = true;

	memcpy(vendor, &r.ebx, 4);
	memcpy(vendor + 4, &r.edx, 4);
	memcpy(vendor + 8, &r.ecx, 4);
	vendor[12] = '\0';
	for (int i = 0; i < 12; i++)
		printable &= vendor[i] >= 0x20 && vendor[i] < 0x7f;
	printf("# cpuid: max basic leaf 0x%x, vendor \"%s\"\n", r.eax,
	       printable ? vendor : "?");
	check(r.eax >= 1 && r.eax < 0x40000000, "cpuid.max_basic_leaf",
	      "leaf 0 EAX = 0x%x", r.eax);
	check(printable, "cpuid.vendor", "vendor bytes are not printable ASCII");

	r = cpuid(0x80000000, 0);
	check(r.eax >= 0x80000001 && r.eax <= 0x8000ffff,
	      "cpuid.max_extended_leaf", "leaf 0x80000000 EAX = 0x%x", r.eax);

	/* FPU, PSE, PAE, CX8, APIC, SSE, SSE2 */
	need = 1u << 0 | 1u << 3 | 1u << 6 | 1u << 8 | 1u << 9 | 1u << 25 |
	       1u << 26;
	r = cpuid(1, 0);
	missing = need & ~r.edx;
	check(!missing, "cpuid.leaf1_features",
	      "leaf 1 EDX = 0x%08x lacks bits 0x%08x", r.edx, missing);

	r = cpuid(0x80000001, 0);
	check(r.edx & (1u << 29), "cpuid.long_mode",
	      "leaf 0x80000001 EDX = 0x%08x without LM (bit 29)", r.edx);

	/* leaf 0xD agrees with leaf 1's XSAVE (ECX bit 26): with it, x87
	 * and SSE state and an area of at least the legacy region and the
	 * header; without it, no state and no size (SDM vol. 1 13.2) */
	bool xsave = cpuid(1, 0).ecx & (1u << 26);
	r = cpuid(0xd, 0);
	check(xsave ? (r.eax & 3) == 3 && r.ebx >= 576 && r.ecx >= r.ebx
		    : !(r.eax | r.ebx | r.ecx | r.edx),
	      "cpuid.leaf_d_matches_xsave", "XSAVE %s, leaf 0xD.0 = %08x %08x %08x %08x",
	      xsave ? "on" : "off", r.eax, r.ebx, r.ecx, r.edx);
}

static void test_long_mode(void)
{
	uint64_t efer = rdmsr(MSR_EFER), cr0 = read_cr0(), cr4 = read_cr4();
	uint16_t cs;

	asm volatile("mov %%cs, %0" : "=r"(cs));
	check((efer & (EFER_LME | EFER_LMA)) == (EFER_LME | EFER_LMA),
	      "long_mode.efer", "EFER = 0x%lx, LME and LMA not both set", efer);
	check((cr0 & 0x80000001) == 0x80000001 && (cr4 & 0x20),
	      "long_mode.paging", "CR0 = 0x%lx CR4 = 0x%lx", cr0, cr4);
	check(cs == SEL_CODE64, "long_mode.cs", "CS = 0x%x", cs);
}

/* a one-instruction TRAP_RESUME region that must fault with `vector` */
static void expect_fault(const char *name, int vector, uint64_t error_code,
			 bool check_error)
{
	const struct trap *t = &trap_last;

	if (t->vector != vector || t->count != 1)
		fail(name, "expected %s, got %s (%u exceptions)",
		     trap_name(vector), trap_name(t->vector), t->count);
	else if (t->rip != t->region_start)
		fail(name, "RIP 0x%lx, expected the faulting instruction 0x%lx",
		     t->rip, t->region_start);
	else if (check_error && t->error_code != error_code)
		fail(name, "error code 0x%lx, expected 0x%lx", t->error_code,
		     error_code);
	else
		pass(name);
}

static void test_ud(void)
{
	trap_reset();
	asm volatile(TRAP_RESUME("ud2"));
	expect_fault("exception.ud2", VEC_UD, 0, false);

	/* INTO is invalid in 64-bit mode */
	trap_reset();
	asm volatile(TRAP_RESUME(".byte 0xce"));
	expect_fault("exception.into_ud", VEC_UD, 0, false);
}

static void test_de(void)
{
	uint64_t lo = 1, hi = 0, divisor = 0;

	trap_reset();
	asm volatile(TRAP_RESUME("divq %2") : "+a"(lo), "+d"(hi) : "r"(divisor));
	expect_fault("exception.de_divide_by_zero", VEC_DE, 0, false);
	/* a fault leaves the destination registers unchanged */
	check(lo == 1 && hi == 0, "exception.de_no_side_effect",
	      "RDX:RAX = 0x%lx:0x%lx after the fault", hi, lo);

	/* quotient 2^64 does not fit in RAX */
	lo = 0;
	hi = 1;
	divisor = 1;
	trap_reset();
	asm volatile(TRAP_RESUME("divq %2") : "+a"(lo), "+d"(hi) : "r"(divisor));
	expect_fault("exception.de_quotient_overflow", VEC_DE, 0, false);

	/* INT64_MIN / -1 = 2^63 does not fit in a signed quadword */
	lo = 1ul << 63;
	hi = ~0ul;
	divisor = ~0ul;
	trap_reset();
	asm volatile(TRAP_RESUME("idivq %2") : "+a"(lo), "+d"(hi) : "r"(divisor));
	expect_fault("exception.de_idiv_overflow", VEC_DE, 0, false);
}

static void test_gp(void)
{
	uint64_t addr = 0x8000000000000000ul, val = 0;

	/* RAX as the base register: the reference uses DS, so #GP, not #SS */
	trap_reset();
	asm volatile(TRAP_RESUME("movq (%%rax), %%rdx")
		     : "+d"(val) : "a"(addr) : "memory");
	expect_fault("exception.gp_noncanonical_read", VEC_GP, 0, true);

	addr = 0x0000800000000000ul;
	trap_reset();
	asm volatile(TRAP_RESUME("movq %%rdx, (%%rax)")
		     : : "a"(addr), "d"(val) : "memory");
	expect_fault("exception.gp_noncanonical_write", VEC_GP, 0, true);
}

static void test_pf(void)
{
	uint64_t addr = PF_TEST_PAGE + 0x1238, val = 0, efer;
	volatile uint64_t *p = (volatile uint64_t *)addr;
	struct cpuid_regs ext = cpuid(0x80000001, 0);
	struct trap t;
	int vec;

	page_unmap_2m(PF_TEST_PAGE);

	trap_reset();
	asm volatile(TRAP_RESUME("movq (%%rax), %%rdx")
		     : "+d"(val) : "a"(addr) : "memory");
	expect_fault("exception.pf_read_not_present", VEC_PF, 0, true);
	check(trap_last.cr2 == addr, "exception.pf_read_cr2",
	      "CR2 = 0x%lx, expected 0x%lx", trap_last.cr2, addr);

	trap_reset();
	asm volatile(TRAP_RESUME("movq %%rdx, (%%rax)")
		     : : "a"(addr), "d"(val) : "memory");
	expect_fault("exception.pf_write_not_present", VEC_PF, PF_W, true);
	check(trap_last.cr2 == addr, "exception.pf_write_cr2",
	      "CR2 = 0x%lx, expected 0x%lx", trap_last.cr2, addr);

	/* I/D is reported only with EFER.NXE (or CR4.SMEP) set */
	efer = rdmsr(MSR_EFER);
	vec = trap_catch((void (*)(void *))(PF_TEST_PAGE + 0x40), NULL, &t);
	if (vec != VEC_PF)
		fail("exception.pf_fetch_not_present", "got %s", trap_name(vec));
	else
		check(t.rip == PF_TEST_PAGE + 0x40 && t.cr2 == t.rip &&
		      t.error_code == ((efer & EFER_NXE) ? PF_I : 0),
		      "exception.pf_fetch_not_present",
		      "RIP 0x%lx CR2 0x%lx error 0x%lx", t.rip, t.cr2,
		      t.error_code);

	/* bits 20:13 of a 2 MiB PDE are reserved */
	page_map_2m(PF_TEST_PAGE);
	*page_pde(PF_TEST_PAGE) |= 1ul << 13;
	invlpg(PF_TEST_PAGE);
	trap_reset();
	asm volatile(TRAP_RESUME("movq (%%rax), %%rdx")
		     : "+d"(val) : "a"(addr) : "memory");
	expect_fault("exception.pf_reserved_bit", VEC_PF, PF_P | PF_RSVD,
		     true);

	/* execute-disable on a present page: P and I/D */
	page_map_2m(PF_TEST_PAGE);
	if (!(ext.edx & (1u << 20))) {
		skip("exception.pf_nx", "CPUID 0x80000001 EDX.NX is clear");
	} else {
		wrmsr(MSR_EFER, efer | EFER_NXE);
		*page_pde(PF_TEST_PAGE) |= 1ul << 63;
		invlpg(PF_TEST_PAGE);
		vec = trap_catch((void (*)(void *))(PF_TEST_PAGE + 0x40), NULL,
				 &t);
		page_map_2m(PF_TEST_PAGE);
		wrmsr(MSR_EFER, efer);
		if (vec != VEC_PF)
			fail("exception.pf_nx", "got %s", trap_name(vec));
		else
			check(t.rip == PF_TEST_PAGE + 0x40 &&
			      t.error_code == (PF_P | PF_I), "exception.pf_nx",
			      "RIP 0x%lx error 0x%lx", t.rip, t.error_code);
	}

	/* mapped again: the RAM behind it is reachable */
	trap_reset();
	*p = 0x5a5a1234c3c3abcdul;
	check(trap_last.vector == -1 && *p == 0x5a5a1234c3c3abcdul,
	      "exception.pf_remapped", "%s after remapping, read 0x%lx",
	      trap_name(trap_last.vector), *p);
}

static void test_bp(void)
{
	const struct trap *t = &trap_last;

	/* #BP is a trap: the saved RIP is that of the next instruction */
	trap_reset();
	asm volatile(TRAP_RESUME("int3"));
	check(t->vector == VEC_BP && t->rip == t->region_end,
	      "exception.bp_int3", "%s at RIP 0x%lx, int3 region 0x%lx-0x%lx",
	      trap_name(t->vector), t->rip, t->region_start, t->region_end);

	/* one #BP, and the registers live across it are as they were */
	uint64_t a = 0x1122334455667788ul, b = 0x99aabbccddeeff00ul;
	trap_reset();
	asm volatile(TRAP_RESUME("int3") : "+r"(a), "+r"(b));
	check(t->vector == VEC_BP && t->count == 1 &&
	      a == 0x1122334455667788ul && b == 0x99aabbccddeeff00ul,
	      "exception.bp_int3_registers", "%s (%u exceptions), registers 0x%lx 0x%lx",
	      trap_name(t->vector), t->count, a, b);

	trap_reset();
	asm volatile(TRAP_RESUME("int $3"));
	check(t->vector == VEC_BP && t->rip == t->region_end,
	      "exception.bp_int_3", "%s at RIP 0x%lx, int $3 region 0x%lx-0x%lx",
	      trap_name(t->vector), t->rip, t->region_start, t->region_end);
}

static void test_rdtsc(void)
{
	uint64_t first = rdtsc(), prev = first, now = first;

	for (int i = 0; i < 10000; i++) {
		now = rdtsc();
		if (now < prev)
			break;
		prev = now;
	}
	check(now >= prev && now > first, "rdtsc.monotonic",
	      "TSC went from 0x%lx to 0x%lx (first 0x%lx)", prev, now, first);
}

static uint64_t flags_of(uint64_t rflags, uint64_t mask)
{
	return rflags & mask;
}

static void test_mul_div(void)
{
	uint64_t lo, hi, f, q, r;
	int64_t sq, sr;

	lo = ~0ul;
	asm volatile("mulq %[b]; pushfq; popq %[f]"
		     : "+a"(lo), "=d"(hi), [f] "=r"(f) : [b] "r"(~0ul));
	check(hi == 0xfffffffffffffffeul && lo == 1 &&
	      flags_of(f, RFLAGS_CF | RFLAGS_OF) == (RFLAGS_CF | RFLAGS_OF),
	      "alu.mul_full", "RDX:RAX = 0x%lx:0x%lx flags 0x%lx", hi, lo, f);

	lo = 3;
	asm volatile("mulq %[b]; pushfq; popq %[f]"
		     : "+a"(lo), "=d"(hi), [f] "=r"(f) : [b] "r"(5ul));
	check(hi == 0 && lo == 15 && !flags_of(f, RFLAGS_CF | RFLAGS_OF),
	      "alu.mul_small", "RDX:RAX = 0x%lx:0x%lx flags 0x%lx", hi, lo, f);

	lo = -1;
	asm volatile("imulq %[b]; pushfq; popq %[f]"
		     : "+a"(lo), "=d"(hi), [f] "=r"(f) : [b] "r"(-1l));
	check(hi == 0 && lo == 1 && !flags_of(f, RFLAGS_CF | RFLAGS_OF),
	      "alu.imul_neg_neg", "RDX:RAX = 0x%lx:0x%lx flags 0x%lx", hi, lo,
	      f);

	/* -2^32 * 2^32 = -2^64: RDX is not the sign extension of RAX */
	lo = -(1l << 32);
	asm volatile("imulq %[b]; pushfq; popq %[f]"
		     : "+a"(lo), "=d"(hi), [f] "=r"(f) : [b] "r"(1l << 32));
	check(hi == ~0ul && lo == 0 &&
	      flags_of(f, RFLAGS_CF | RFLAGS_OF) == (RFLAGS_CF | RFLAGS_OF),
	      "alu.imul_overflow", "RDX:RAX = 0x%lx:0x%lx flags 0x%lx", hi, lo,
	      f);

	lo = 1ul << 62;
	asm volatile("imulq %[b], %[a]; pushfq; popq %[f]"
		     : [a] "+r"(lo), [f] "=r"(f) : [b] "r"(2ul));
	check(lo == 1ul << 63 &&
	      flags_of(f, RFLAGS_CF | RFLAGS_OF) == (RFLAGS_CF | RFLAGS_OF),
	      "alu.imul2_overflow", "result 0x%lx flags 0x%lx", lo, f);

	q = 5;
	r = 1;
	asm volatile("divq %[d]" : "+a"(q), "+d"(r) : [d] "r"(16ul));
	check(q == 0x1000000000000000ul && r == 5, "alu.div",
	      "quotient 0x%lx remainder 0x%lx", q, r);

	/* IDIV truncates toward zero; the remainder has the dividend's sign */
	sq = -7;
	sr = -1;
	asm volatile("idivq %[d]" : "+a"(sq), "+d"(sr) : [d] "r"(2l));
	check(sq == -3 && sr == -1, "alu.idiv_negative_dividend",
	      "-7 / 2 = %ld remainder %ld", sq, sr);
	sq = 7;
	sr = 0;
	asm volatile("idivq %[d]" : "+a"(sq), "+d"(sr) : [d] "r"(-2l));
	check(sq == -3 && sr == 1, "alu.idiv_negative_divisor",
	      "7 / -2 = %ld remainder %ld", sq, sr);
}

static void test_add_sub_flags(void)
{
	const uint64_t m = RFLAGS_ARITH;
	uint64_t v, f;

	v = 0x7ffffffffffffffful;
	asm volatile("addq $1, %[v]; pushfq; popq %[f]"
		     : [v] "+r"(v), [f] "=r"(f));
	/* 0x80..00: low byte 0x00 has even parity; carry out of bit 3 */
	check(v == 1ul << 63 &&
	      flags_of(f, m) == (RFLAGS_OF | RFLAGS_SF | RFLAGS_PF | RFLAGS_AF),
	      "alu.add_signed_overflow", "result 0x%lx flags 0x%lx", v,
	      flags_of(f, m));

	v = ~0ul;
	asm volatile("addq $1, %[v]; pushfq; popq %[f]"
		     : [v] "+r"(v), [f] "=r"(f));
	check(v == 0 &&
	      flags_of(f, m) == (RFLAGS_CF | RFLAGS_ZF | RFLAGS_PF | RFLAGS_AF),
	      "alu.add_carry", "result 0x%lx flags 0x%lx", v, flags_of(f, m));

	v = 0;
	asm volatile("subq $1, %[v]; pushfq; popq %[f]"
		     : [v] "+r"(v), [f] "=r"(f));
	check(v == ~0ul &&
	      flags_of(f, m) == (RFLAGS_CF | RFLAGS_SF | RFLAGS_PF | RFLAGS_AF),
	      "alu.sub_borrow", "result 0x%lx flags 0x%lx", v, flags_of(f, m));

	/* a 32-bit destination zero-extends into the full register */
	v = ~0ul;
	asm volatile("addl $0, %k[v]" : [v] "+r"(v));
	check(v == 0xfffffffful, "alu.32bit_zero_extends", "result 0x%lx", v);
}

static void test_shift_count_mask(void)
{
	uint64_t v = 1;
	uint32_t w = 1;

	/* counts are masked to 6 bits (64-bit operand) or 5 bits */
	asm volatile("shlq %%cl, %0" : "+r"(v) : "c"(65));
	asm volatile("shll %%cl, %0" : "+r"(w) : "c"(33));
	check(v == 2 && w == 2, "alu.shift_count_masked",
	      "1 << 65 = 0x%lx (64-bit), 1 << 33 = 0x%x (32-bit)", v, w);
}

static void test_bsf_bsr(void)
{
	struct {
		uint64_t src, bsf, bsr;
	} cases[] = {
		{ 0x80, 7, 7 },
		{ 0x8000000000000001ul, 0, 63 },
		{ 0x0000000000010100ul, 8, 16 },
		{ 0xfff0000000000000ul, 52, 63 },
	};
	bool ok = true;
	uint64_t d;
	uint8_t zf;

	for (unsigned i = 0; i < ARRAY_SIZE(cases); i++) {
		asm volatile("bsfq %[s], %[d]; setz %[z]"
			     : [d] "=r"(d), [z] "=q"(zf) : [s] "r"(cases[i].src));
		if (d != cases[i].bsf || zf) {
			fail("alu.bsf", "bsf 0x%lx = %lu ZF=%u", cases[i].src,
			     d, zf);
			ok = false;
		}
		asm volatile("bsrq %[s], %[d]; setz %[z]"
			     : [d] "=r"(d), [z] "=q"(zf) : [s] "r"(cases[i].src));
		if (d != cases[i].bsr || zf) {
			fail("alu.bsr", "bsr 0x%lx = %lu ZF=%u", cases[i].src,
			     d, zf);
			ok = false;
		}
	}
	if (ok)
		pass("alu.bsf_bsr");

	/* a zero source sets ZF; the destination is undefined */
	d = 0;
	asm volatile("bsfq %[s], %[d]; setz %[z]"
		     : [d] "+r"(d), [z] "=q"(zf) : [s] "r"(0ul));
	check(zf == 1, "alu.bsf_zero_sets_zf", "ZF=%u", zf);
	asm volatile("bsrq %[s], %[d]; setz %[z]"
		     : [d] "+r"(d), [z] "=q"(zf) : [s] "r"(0ul));
	check(zf == 1, "alu.bsr_zero_sets_zf", "ZF=%u", zf);
}

static void test_cmpxchg(void)
{
	uint64_t mem, rax, lo, hi;
	uint8_t zf;

	mem = 5;
	rax = 5;
	asm volatile("lock cmpxchgq %[src], %[m]; setz %[z]"
		     : [m] "+m"(mem), "+a"(rax), [z] "=q"(zf) : [src] "r"(9ul));
	check(zf && mem == 9 && rax == 5, "alu.cmpxchg_equal",
	      "ZF=%u mem=%lu rax=%lu", zf, mem, rax);

	mem = 5;
	rax = 7;
	asm volatile("lock cmpxchgq %[src], %[m]; setz %[z]"
		     : [m] "+m"(mem), "+a"(rax), [z] "=q"(zf) : [src] "r"(9ul));
	check(!zf && mem == 5 && rax == 5, "alu.cmpxchg_not_equal",
	      "ZF=%u mem=%lu rax=%lu", zf, mem, rax);

	/* CMPXCHG8B compares EDX:EAX, stores ECX:EBX */
	mem = 0x1111111122222222ul;
	lo = 0x22222222;
	hi = 0x11111111;
	asm volatile("lock cmpxchg8b %[m]; setz %[z]"
		     : [m] "+m"(mem), "+a"(lo), "+d"(hi), [z] "=q"(zf)
		     : "b"(0x44444444), "c"(0x33333333));
	check(zf && mem == 0x3333333344444444ul, "alu.cmpxchg8b_equal",
	      "ZF=%u mem=0x%lx", zf, mem);
	lo = 0;
	hi = 0;
	asm volatile("lock cmpxchg8b %[m]; setz %[z]"
		     : [m] "+m"(mem), "+a"(lo), "+d"(hi), [z] "=q"(zf)
		     : "b"(0), "c"(0));
	check(!zf && lo == 0x44444444 && hi == 0x33333333 &&
	      mem == 0x3333333344444444ul, "alu.cmpxchg8b_not_equal",
	      "ZF=%u EDX:EAX=0x%lx:0x%lx mem=0x%lx", zf, hi, lo, mem);
}

static uint64_t cx16_buf[4] __attribute__((aligned(16)));

static void test_cmpxchg16b(void)
{
	uint64_t lo = 1, hi = 2;
	uint8_t zf;

	if (!(cpuid(1, 0).ecx & (1u << 13))) {
		skip("alu.cmpxchg16b", "CPUID 1 ECX.CX16 is clear");
		return;
	}
	cx16_buf[0] = 1;
	cx16_buf[1] = 2;
	asm volatile("lock cmpxchg16b %[m]; setz %[z]"
		     : [m] "+m"(cx16_buf[0]), "+a"(lo), "+d"(hi), [z] "=q"(zf)
		     : "b"(0xaaul), "c"(0xbbul) : "memory");
	check(zf && cx16_buf[0] == 0xaa && cx16_buf[1] == 0xbb,
	      "alu.cmpxchg16b", "ZF=%u mem=0x%lx:0x%lx", zf, cx16_buf[1],
	      cx16_buf[0]);

	/* the operand must be 16-byte aligned: #GP(0) otherwise */
	trap_reset();
	asm volatile(TRAP_RESUME("lock cmpxchg16b (%%rsi)")
		     : "+a"(lo), "+d"(hi)
		     : "S"(&cx16_buf[1]), "b"(0ul), "c"(0ul) : "memory");
	expect_fault("alu.cmpxchg16b_misaligned_gp", VEC_GP, 0, true);

	/* a mismatch loads the memory operand into RDX:RAX, clears ZF and
	 * leaves memory as it was (the write-back is of the old value) */
	lo = 5;
	hi = 6;
	asm volatile("lock cmpxchg16b %[m]; setz %[z]"
		     : [m] "+m"(cx16_buf[0]), "+a"(lo), "+d"(hi), [z] "=q"(zf)
		     : "b"(0x11ul), "c"(0x22ul) : "memory");
	check(!zf && lo == 0xaa && hi == 0xbb && cx16_buf[0] == 0xaa &&
	      cx16_buf[1] == 0xbb, "alu.cmpxchg16b_mismatch",
	      "ZF=%u RDX:RAX=0x%lx:0x%lx mem=0x%lx:0x%lx", zf, hi, lo,
	      cx16_buf[1], cx16_buf[0]);

	/* on a page that is not present: #PF, CR2 the operand, the registers
	 * unchanged; the error code's W bit is left open (a locked
	 * read-modify-write: QEMU TCG reports the read) */
	uint64_t addr = PF_TEST_PAGE + 0x2340;
	page_unmap_2m(PF_TEST_PAGE);
	trap_reset();
	asm volatile(TRAP_RESUME("lock cmpxchg16b (%%rsi)")
		     : "+a"(lo), "+d"(hi)
		     : "S"(addr), "b"(0ul), "c"(0ul) : "memory");
	page_map_2m(PF_TEST_PAGE);
	expect_fault("alu.cmpxchg16b_not_present_pf", VEC_PF, 0, false);
	check(trap_last.cr2 == addr && !(trap_last.error_code & ~(uint64_t)PF_W) &&
	      lo == 0xaa && hi == 0xbb, "alu.cmpxchg16b_pf_cr2",
	      "CR2 = 0x%lx (expected 0x%lx), error code 0x%lx, RDX:RAX = 0x%lx:0x%lx",
	      trap_last.cr2, addr, trap_last.error_code, hi, lo);
}

/* The XSAVE instructions with CR4.OSXSAVE clear (as the loaders leave it):
 * #UD, whatever CPUID says (SDM vol. 1 13.3, vol. 2 XRSTOR and XSAVE) */
static uint8_t xsave_area[1024] __attribute__((aligned(64)));

static void test_xsave_disabled(void)
{
	if (read_cr4() & (1ul << 18)) {
		skip("xsave.xrstor_without_osxsave_ud", "CR4.OSXSAVE is set");
		return;
	}
	trap_reset();
	asm volatile(TRAP_RESUME("xrstor (%%rdi)")
		     : : "D"(xsave_area), "a"(3u), "d"(0u) : "memory");
	expect_fault("xsave.xrstor_without_osxsave_ud", VEC_UD, 0, false);
	trap_reset();
	asm volatile(TRAP_RESUME("xsave (%%rdi)")
		     : : "D"(xsave_area), "a"(3u), "d"(0u) : "memory");
	expect_fault("xsave.xsave_without_osxsave_ud", VEC_UD, 0, false);
}

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 7);
}

static void test_movsb(void)
{
	uint8_t src[64], dst[80];
	uint8_t *s, *d;
	uint64_t n;

	fill(src, sizeof(src), 3);
	memset(dst, 0xcc, sizeof(dst));
	s = src;
	d = dst + 8;
	n = 37;
	asm volatile("cld; rep movsb" : "+S"(s), "+D"(d), "+c"(n) : : "memory");
	check(n == 0 && s == src + 37 && d == dst + 45 &&
	      !memcmp(dst + 8, src, 37) && dst[7] == 0xcc && dst[45] == 0xcc,
	      "string.rep_movsb_forward",
	      "RCX=%lu RSI=+%ld RDI=+%ld", n, s - src, d - dst);

	/* DF=1: from the last element down; the pointers end one below */
	memset(dst, 0xcc, sizeof(dst));
	s = src + 36;
	d = dst + 8 + 36;
	n = 37;
	asm volatile("std; rep movsb; cld"
		     : "+S"(s), "+D"(d), "+c"(n) : : "memory");
	check(n == 0 && (uintptr_t)s == (uintptr_t)src - 1 && d == dst + 7 &&
	      !memcmp(dst + 8, src, 37) && dst[7] == 0xcc && dst[45] == 0xcc,
	      "string.rep_movsb_backward",
	      "RCX=%lu RSI=%+ld RDI=%+ld", n, (long)((uintptr_t)s - (uintptr_t)src),
	      (long)(d - dst));

	/* the element-by-element semantics: overlap by one replicates */
	fill(dst, sizeof(dst), 1);
	s = dst;
	d = dst + 1;
	n = 16;
	asm volatile("cld; rep movsb" : "+S"(s), "+D"(d), "+c"(n) : : "memory");
	bool same = true;

	for (int i = 1; i <= 16; i++)
		same &= dst[i] == dst[0];
	check(same && dst[17] == (uint8_t)(1 + 17 * 7),
	      "string.rep_movsb_overlap", "bytes 1..16 are not all 0x%x",
	      dst[0]);

	/* RCX = 0: nothing happens */
	s = src;
	d = dst;
	n = 0;
	memset(dst, 0xcc, sizeof(dst));
	asm volatile("cld; rep movsb" : "+S"(s), "+D"(d), "+c"(n) : : "memory");
	check(s == src && d == dst && dst[0] == 0xcc, "string.rep_zero_count",
	      "RSI=+%ld RDI=+%ld", s - src, d - dst);
}

static void test_stosq(void)
{
	const uint64_t v = 0xdeadbeefcafef00dul, guard = 0x1111111111111111ul;
	uint64_t buf[12], *d, n;
	bool ok;

	for (int i = 0; i < 12; i++)
		buf[i] = guard;
	d = &buf[2];
	n = 5;
	asm volatile("cld; rep stosq" : "+D"(d), "+c"(n) : "a"(v) : "memory");
	ok = n == 0 && d == &buf[7] && buf[1] == guard && buf[7] == guard;
	for (int i = 2; i < 7; i++)
		ok &= buf[i] == v;
	check(ok, "string.rep_stosq_forward", "RCX=%lu RDI=buf+%ld", n,
	      d - buf);

	for (int i = 0; i < 12; i++)
		buf[i] = guard;
	d = &buf[9];
	n = 5;
	asm volatile("std; rep stosq; cld"
		     : "+D"(d), "+c"(n) : "a"(v) : "memory");
	ok = n == 0 && d == &buf[4] && buf[4] == guard && buf[10] == guard;
	for (int i = 5; i < 10; i++)
		ok &= buf[i] == v;
	check(ok, "string.rep_stosq_backward", "RCX=%lu RDI=buf+%ld", n,
	      d - buf);
}

static void test_scas_cmps(void)
{
	static const char str[] = "hello";
	static const char a[] = "abcdef", b[] = "abcxef";
	const char *s, *d;
	uint64_t n;
	uint8_t zf;

	/* repne scasb: the classic strlen */
	d = str;
	n = ~0ul;
	asm volatile("cld; repne scasb; setz %[z]"
		     : "+D"(d), "+c"(n), [z] "=q"(zf) : "a"(0) : "memory");
	check(zf && ~n - 1 == 5 && d == str + 6, "string.repne_scasb",
	      "ZF=%u RCX=0x%lx RDI=+%ld", zf, n, d - str);

	/* repe cmpsb stops after the first mismatch (index 3) */
	s = a;
	d = b;
	n = 6;
	asm volatile("cld; repe cmpsb; setz %[z]"
		     : "+S"(s), "+D"(d), "+c"(n), [z] "=q"(zf) : : "memory");
	check(!zf && n == 2 && s == a + 4 && d == b + 4, "string.repe_cmpsb",
	      "ZF=%u RCX=%lu RSI=+%ld RDI=+%ld", zf, n, s - a, d - b);
}

void test_main(void)
{
	test_boot();
	test_cpuid();
	test_long_mode();
	test_ud();
	test_de();
	test_gp();
	test_pf();
	test_bp();
	test_rdtsc();
	test_mul_div();
	test_add_sub_flags();
	test_shift_count_mask();
	test_bsf_bsr();
	test_cmpxchg();
	test_cmpxchg16b();
	test_xsave_disabled();
	test_movsb();
	test_stosq();
	test_scas_cmps();
}
