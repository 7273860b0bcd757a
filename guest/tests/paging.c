/* paging: 4-level paging as the Intel SDM vol. 3A chapter 4 describes it.
 * Accessed and dirty flags (4.8), the #PF error code and CR2 (4.7), NX, WP
 * and U/S (4.6), reserved bits (4.5, 4.7), 2 MiB and 1 GiB pages (4.5), TLB
 * invalidation by INVLPG, CR3 loads and CR4.PGE toggles (4.10.4), and aliases.
 *
 * The kernel builds its own 4 KiB page tables in RAM that nothing else uses
 * (40-48 MiB, under the 128 MiB QEMU gives the guests), hung from PML4
 * entries 1 and 2 so that every level of the walk is its own. */
#include "guest.h"

#define P 0x001ul
#define RW 0x002ul
#define US 0x004ul
#define A 0x020ul
#define D 0x040ul
#define PS 0x080ul
#define G 0x100ul
#define NX (1ul << 63)
#define ADDR_MASK 0x000ffffffffff000ul

#define CR0_WP (1ul << 16)
#define CR4_PGE (1ul << 7)
#define CR4_SMEP (1ul << 20)
#define CR4_SMAP (1ul << 21)

#define TABLE_POOL (40ul << 20)	/* page tables, bump-allocated */
#define FRAMES (44ul << 20)	/* 4 KiB data frames */
#define BIG_PHYS (48ul << 20)	/* 2 MiB-aligned target of the 2M pages */

#define VBASE (1ul << 39)	/* PML4[1] */
#define VAD (2ul << 39)		/* PML4[2]: the accessed/dirty hierarchy */
#define V4K(i) (VBASE + (uint64_t)(i) * 4096)
#define V2M (VBASE + PAGE_2M)		/* PD[1]: 2M page -> BIG_PHYS */
#define V2M_NX (VBASE + 2 * PAGE_2M)	/* PD[2]: same, NX */
#define V1G (VBASE + (1ul << 30))	/* PDPT[1]: 1G page -> 0 */
#define FRAME(n) (FRAMES + (uint64_t)(n) * 4096)

/* slots of the 4 KiB page table under VBASE */
enum {
	S_UCODE, S_USTACK, S_SUPER, S_USER, S_NX, S_X, S_RO, S_ABSENT,
	S_RSVD, S_ALIAS1, S_ALIAS2, S_INVLPG, S_CR3, S_GLOBAL, S_RO_AD,
};

static uint64_t pool_next = TABLE_POOL;
static uint64_t *pml4, *pt;
static bool have_nx;

static uint64_t *alloc_table(void)
{
	uint64_t *t = (uint64_t *)pool_next;

	pool_next += 4096;
	memset(t, 0, 4096);
	return t;
}

/* Accesses that the compiler keeps and orders: the CPU writes A and D
 * behind its back, so every access is also a compiler memory barrier, and
 * paging-structure entries are read through ent(). */
static inline uint64_t rd(uint64_t va)
{
	uint64_t v;

	asm volatile("" : : : "memory");
	v = *(volatile uint64_t *)va;
	asm volatile("" : : : "memory");
	return v;
}

static inline void wr(uint64_t va, uint64_t v)
{
	asm volatile("" : : : "memory");
	*(volatile uint64_t *)va = v;
	asm volatile("" : : : "memory");
}

static inline uint64_t ent(const uint64_t *e)
{
	return rd((uint64_t)e);
}

static void read_fn(void *arg)
{
	(void)rd((uint64_t)arg);
}

static void write_fn(void *arg)
{
	wr((uint64_t)arg, 0x5a5a5a5a5a5a5a5aul);
}

static void exec_fn(void *arg)
{
	((void (*)(void))arg)();
}

static void flush_all(void)
{
	write_cr3(read_cr3());
}

static void set_pte(int slot, uint64_t v)
{
	pt[slot] = v;
	invlpg(V4K(slot));
}

/* A #PF with this error code, reported for this CR2. */
static void expect_pf(const char *name, int v, const struct trap *t,
		      uint64_t ec, uint64_t cr2)
{
	if (v != VEC_PF)
		fail(name, "expected #PF, got %s", v < 0 ? "no exception" :
		     trap_name(v));
	else if (t->error_code != ec)
		fail(name, "error code 0x%lx, expected 0x%lx", t->error_code, ec);
	else if (t->cr2 != cr2)
		fail(name, "CR2 0x%lx, expected 0x%lx", t->cr2, cr2);
	else
		pass(name);
}

static void setup(void)
{
	uint64_t *pdpt, *pd;

	write_cr4(read_cr4() & ~(CR4_SMEP | CR4_SMAP));
	pml4 = (uint64_t *)(read_cr3() & ADDR_MASK);
	pdpt = alloc_table();
	pd = alloc_table();
	pt = alloc_table();
	pml4[1] = (uint64_t)pdpt | P | RW | US;
	pdpt[0] = (uint64_t)pd | P | RW | US;
	pd[0] = (uint64_t)pt | P | RW | US;
	pd[1] = BIG_PHYS | P | RW | PS;
	pd[2] = BIG_PHYS | P | RW | PS | (have_nx ? NX : 0);
	if (cpuid(0x80000001, 0).edx & (1u << 26))
		pdpt[1] = 0 | P | RW | PS;
	for (int i = 0; i < 32; i++)
		memset((void *)FRAME(i), 0, 4096);
	flush_all();
}

/* SDM 4.8: the processor sets A in every paging-structure entry it uses,
 * and D, "whenever there is a write to a linear address", only in the entry
 * that maps the page. Bit 6 of an entry that references another table is
 * ignored (tables 4-15, 4-17), so nothing sets it.
 * A faulting write is no write: the leaf's D stays clear (4.8). The leaf's
 * A stays clear too: the fault is taken on the permission check before the
 * leaf is used for an access (4.7 reason 2: "its access rights do not
 * permit the access"); A in the upper levels may be set during the walk
 * and is not asserted. */
static void test_accessed_dirty(void)
{
	uint64_t *pdpt = alloc_table(), *pd = alloc_table(), *ptab = alloc_table();
	volatile uint64_t *e[4];
	static const char *const names[4] = {
		"accessed.pml4e", "accessed.pdpte", "accessed.pde", "accessed.pte",
	};
	uint64_t cr0 = read_cr0();
	struct trap t;
	bool any_d = false;
	int v;

	pml4[2] = (uint64_t)pdpt | P | RW;
	pdpt[0] = (uint64_t)pd | P | RW;
	pd[0] = (uint64_t)ptab | P | RW;
	ptab[0] = FRAME(20) | P | RW;
	ptab[1] = FRAME(21) | P;	/* read-only */
	e[0] = &pml4[2];
	e[1] = &pdpt[0];
	e[2] = &pd[0];
	e[3] = &ptab[0];
	wr(FRAME(20), 0x1122334455667788ul);
	flush_all();

	(void)rd(VAD);
	for (int i = 0; i < 4; i++)
		check(*e[i] & A, names[i], "entry 0x%lx after a read lacks A",
		      *e[i]);
	check(!(ent(&ptab[0]) & D), "dirty.not_on_read",
	      "PTE 0x%lx has D after a read", ent(&ptab[0]));

	wr(VAD, 0xfeedfacecafebeeful);
	for (int i = 0; i < 3; i++)
		any_d |= !!(*e[i] & D);
	check((ent(&ptab[0]) & D) && !any_d, "dirty.leaf_only",
	      "after a write: PTE 0x%lx PDE 0x%lx PDPTE 0x%lx PML4E 0x%lx",
	      ent(&ptab[0]), ent(&pd[0]), ent(&pdpt[0]), ent(&pml4[2]));

	/* a supervisor write to a read-only page faults with CR0.WP = 1 */
	write_cr0(cr0 | CR0_WP);
	v = trap_catch(write_fn, (void *)(VAD + 4096), &t);
	write_cr0(cr0);
	if (v != VEC_PF) {
		fail("dirty.not_on_fault", "write to a read-only page: %s",
		     v < 0 ? "no exception" : trap_name(v));
		fail("accessed.not_on_fault", "write to a read-only page: %s",
		     v < 0 ? "no exception" : trap_name(v));
	} else {
		check(!(ent(&ptab[1]) & D), "dirty.not_on_fault",
		      "PTE 0x%lx has D after a faulting write", ent(&ptab[1]));
		check(!(ent(&ptab[1]) & A), "accessed.not_on_fault",
		      "PTE 0x%lx has A after a faulting write", ent(&ptab[1]));
	}
	pml4[2] = 0;
	flush_all();
}

static void test_ad_2m(void)
{
	uint64_t *pd = (uint64_t *)(((uint64_t *)(pml4[1] & ADDR_MASK))[0] &
				    ADDR_MASK);

	pd[3] = BIG_PHYS | P | RW | PS;
	invlpg(VBASE + 3 * PAGE_2M);
	(void)rd(VBASE + 3 * PAGE_2M + 0x800);
	check((ent(&pd[3]) & (A | D)) == A, "dirty.2m_read",
	      "2M PDE 0x%lx after a read, expected A without D", ent(&pd[3]));
	wr(VBASE + 3 * PAGE_2M + 0x1000, rd(VBASE + 3 * PAGE_2M + 0x1000));
	check((ent(&pd[3]) & (A | D)) == (A | D), "dirty.2m_write",
	      "2M PDE 0x%lx after a write, expected A and D", ent(&pd[3]));
	pd[3] = 0;
	invlpg(VBASE + 3 * PAGE_2M);
}

/* SDM 4.6: with EFER.NXE = 1, an instruction fetch from a page with XD set
 * faults (4.7: error code P | I/D); data reads are allowed. */
static void test_nx(void)
{
	struct trap t;
	uint64_t off = 0x345;
	int v;

	if (!have_nx) {
		skip("nx.fetch_4k", "CPUID 0x80000001 EDX bit 20 (NX) is clear");
		skip("nx.fetch_2m", "CPUID 0x80000001 EDX bit 20 (NX) is clear");
		return;
	}
	*(volatile uint8_t *)(FRAME(S_NX) + off) = 0xc3;	/* ret */
	*(volatile uint8_t *)(FRAME(S_X) + off) = 0xc3;
	*(volatile uint8_t *)(BIG_PHYS + 0x1000 + off) = 0xc3;
	set_pte(S_NX, FRAME(S_NX) | P | RW | NX);
	set_pte(S_X, FRAME(S_X) | P | RW);

	v = trap_catch(exec_fn, (void *)(V4K(S_X) + off), &t);
	check(v < 0, "nx.fetch_allowed_4k", "executing a page without XD: %s",
	      trap_name(v));
	v = trap_catch(exec_fn, (void *)(V4K(S_NX) + off), &t);
	expect_pf("nx.fetch_4k", v, &t, PF_P | PF_I, V4K(S_NX) + off);
	v = trap_catch(read_fn, (void *)(V4K(S_NX) + off), &t);
	check(v < 0 && *(volatile uint8_t *)(V4K(S_NX) + off) == 0xc3,
	      "nx.read_4k", "reading an XD page: %s", trap_name(v));

	v = trap_catch(exec_fn, (void *)(V2M_NX + 0x1000 + off), &t);
	expect_pf("nx.fetch_2m", v, &t, PF_P | PF_I, V2M_NX + 0x1000 + off);
	v = trap_catch(read_fn, (void *)(V2M_NX + 0x1000 + off), &t);
	check(v < 0 && *(volatile uint8_t *)(V2M_NX + 0x1000 + off) == 0xc3,
	      "nx.read_2m", "reading an XD 2M page: %s", trap_name(v));
}

/* SDM 4.6.1: supervisor writes to a read-only page fault if CR0.WP = 1 and
 * are allowed if CR0.WP = 0. */
static void test_wp(void)
{
	uint64_t cr0 = read_cr0();
	struct trap t;
	int v;

	wr(FRAME(S_RO), 0);
	set_pte(S_RO, FRAME(S_RO) | P);
	write_cr0(cr0 | CR0_WP);
	v = trap_catch(write_fn, (void *)V4K(S_RO), &t);
	expect_pf("wp.supervisor_write_faults", v, &t, PF_P | PF_W, V4K(S_RO));
	check(rd(FRAME(S_RO)) == 0, "wp.write_suppressed",
	      "the faulting write changed the page to 0x%lx", rd(FRAME(S_RO)));
	write_cr0(cr0 & ~CR0_WP);
	invlpg(V4K(S_RO));
	v = trap_catch(write_fn, (void *)V4K(S_RO), &t);
	check(v < 0 && rd(FRAME(S_RO)) == 0x5a5a5a5a5a5a5a5aul,
	      "wp.off_write_allowed", "with CR0.WP = 0: %s, page 0x%lx",
	      v < 0 ? "no exception" : trap_name(v), rd(FRAME(S_RO)));
	write_cr0(cr0);
}

/* ---- CPL 3 ----
 * A ring-3 stub on a user page does one access through RDI and then ud2;
 * the #PF or #UD comes back into ring 0 through the TSS's RSP0 and
 * trap_catch abandons the user context. */
static uint8_t ring0_stack[8192] __attribute__((aligned(16)));

struct user_call {
	uint64_t rip, rsp, target;
};

static void user_enter(void *arg)
{
	struct user_call *u = arg;

	asm volatile("pushq %[ss]\n\t"
		     "pushq %[rsp]\n\t"
		     "pushq $2\n\t"
		     "pushq %[cs]\n\t"
		     "pushq %[rip]\n\t"
		     "iretq"
		     : : [ss] "i"(SEL_USER_DATA), [rsp] "r"(u->rsp),
		       [cs] "i"(SEL_USER_CODE64), [rip] "r"(u->rip),
		       "D"(u->target)
		     : "memory");
	__builtin_unreachable();
}

static int run_user(bool write, uint64_t target, struct trap *t)
{
	struct user_call u = {
		.rip = V4K(S_UCODE) + (write ? 16 : 0),
		.rsp = V4K(S_USTACK) + 4096 - 64,
		.target = target,
	};
	int v = trap_catch(user_enter, &u, t);

	asm volatile("movw %w0, %%ds\n\tmovw %w0, %%es\n\t"
		     "movw %w0, %%fs\n\tmovw %w0, %%gs"
		     : : "r"(SEL_DATA));
	return v;
}

static void test_user(void)
{
	extern uint64_t gdt[];
	/* movq (%rdi), %rax; ud2 */
	static const uint8_t stub_read[] = { 0x48, 0x8b, 0x07, 0x0f, 0x0b };
	/* movq $0x7777, (%rdi); ud2 */
	static const uint8_t stub_write[] = { 0x48, 0xc7, 0x07, 0x77, 0x77,
					      0x00, 0x00, 0x0f, 0x0b };
	uint64_t tss = ((gdt[SEL_TSS / 8] >> 16) & 0xffffff) |
		       (((gdt[SEL_TSS / 8] >> 56) & 0xff) << 24) |
		       (gdt[SEL_TSS / 8 + 1] << 32);
	uint64_t rsp0 = (uint64_t)ring0_stack + sizeof(ring0_stack);
	struct trap t;
	int v;

	memcpy((void *)(tss + 4), &rsp0, 8);
	memcpy((void *)FRAME(S_UCODE), stub_read, sizeof(stub_read));
	memcpy((void *)(FRAME(S_UCODE) + 16), stub_write, sizeof(stub_write));
	set_pte(S_UCODE, FRAME(S_UCODE) | P | US);
	set_pte(S_USTACK, FRAME(S_USTACK) | P | RW | US);
	set_pte(S_SUPER, FRAME(S_SUPER) | P | RW);
	set_pte(S_USER, FRAME(S_USER) | P | RW | US);

	v = run_user(false, V4K(S_USER) + 8, &t);
	check(v == VEC_UD, "user.read_user_page",
	      "CPL 3 read of a user page ended with %s (error 0x%lx, CR2 0x%lx), "
	      "expected the stub's #UD", trap_name(v), t.error_code, t.cr2);
	v = run_user(true, V4K(S_USER) + 8, &t);
	check(v == VEC_UD && rd(FRAME(S_USER) + 8) == 0x7777,
	      "user.write_user_page",
	      "CPL 3 write of a user page ended with %s (error 0x%lx), "
	      "page 0x%lx", trap_name(v), t.error_code, rd(FRAME(S_USER) + 8));
	v = run_user(false, V4K(S_SUPER) + 0x18, &t);
	expect_pf("user.read_supervisor", v, &t, PF_P | PF_U,
		  V4K(S_SUPER) + 0x18);
	v = run_user(true, V4K(S_SUPER) + 0x20, &t);
	expect_pf("user.write_supervisor", v, &t, PF_P | PF_W | PF_U,
		  V4K(S_SUPER) + 0x20);
	check(t.rip == V4K(S_UCODE) + 16, "user.fault_rip",
	      "RIP 0x%lx, expected the faulting instruction 0x%lx", t.rip,
	      V4K(S_UCODE) + 16);
}

/* SDM 4.7: P = 0 when the fault is caused by a non-present page; CR2 holds
 * the linear address that caused it. */
static void test_not_present(void)
{
	uint64_t *pd = (uint64_t *)(((uint64_t *)(pml4[1] & ADDR_MASK))[0] &
				    ADDR_MASK);
	struct trap t;
	int v;

	set_pte(S_ABSENT, FRAME(S_ABSENT) | RW);	/* P clear */
	v = trap_catch(read_fn, (void *)(V4K(S_ABSENT) + 0x123), &t);
	expect_pf("notpresent.read", v, &t, 0, V4K(S_ABSENT) + 0x123);
	v = trap_catch(write_fn, (void *)(V4K(S_ABSENT) + 0xff8), &t);
	expect_pf("notpresent.write", v, &t, PF_W, V4K(S_ABSENT) + 0xff8);
	/* a not-present PDE */
	pd[5] = 0;
	invlpg(VBASE + 5 * PAGE_2M + 0x4321);
	v = trap_catch(read_fn, (void *)(VBASE + 5 * PAGE_2M + 0x4321), &t);
	expect_pf("notpresent.pde", v, &t, 0, VBASE + 5 * PAGE_2M + 0x4321);
}

/* SDM 4.5 (table 4-19): PTE bits MAXPHYADDR..51 are reserved; 4.7: a
 * reserved-bit fault reports RSVD together with P. */
static void test_reserved(void)
{
	unsigned maxphy = cpuid(0x80000000, 0).eax >= 0x80000008 ?
			  cpuid(0x80000008, 0).eax & 0xff : 36;
	struct trap t;
	int v;

	if (maxphy >= 52) {
		skip("rsvd.pte_above_maxphyaddr", "MAXPHYADDR is %u", maxphy);
		return;
	}
	set_pte(S_RSVD, FRAME(S_RSVD) | P | RW | (1ul << 51));
	v = trap_catch(read_fn, (void *)(V4K(S_RSVD) + 0x40), &t);
	expect_pf("rsvd.pte_bit51", v, &t, PF_P | PF_RSVD, V4K(S_RSVD) + 0x40);
	if (maxphy < 51) {
		set_pte(S_RSVD, FRAME(S_RSVD) | P | RW | (1ul << maxphy));
		v = trap_catch(write_fn, (void *)(V4K(S_RSVD) + 0x80), &t);
		expect_pf("rsvd.pte_maxphyaddr_bit", v, &t,
			  PF_P | PF_W | PF_RSVD, V4K(S_RSVD) + 0x80);
	}
	set_pte(S_RSVD, 0);
}

/* SDM 4.5: a 2 MiB page maps linear bits 20:0 and a 1 GiB page bits 29:0
 * as the offset into the physical page. */
static void test_large(void)
{
	uint64_t off2m = 0x1235, off1g = BIG_PHYS + 0x5673;

	wr(BIG_PHYS + off2m, 0x0102030405060708ul);
	check(rd(V2M + off2m) == 0x0102030405060708ul, "large.2m_offset",
	      "read 0x%lx through the 2M page", rd(V2M + off2m));
	wr(V2M + 0x1ffff0, 0xa5a5a5a5deadbeeful);
	check(rd(BIG_PHYS + 0x1ffff0) == 0xa5a5a5a5deadbeeful,
	      "large.2m_write_end", "physical 0x%lx holds 0x%lx",
	      BIG_PHYS + 0x1ffff0, rd(BIG_PHYS + 0x1ffff0));
	if (!(cpuid(0x80000001, 0).edx & (1u << 26))) {
		skip("large.1g_offset", "CPUID 0x80000001 EDX bit 26 (1 GiB "
		     "pages) is clear");
		return;
	}
	wr(off1g, 0x1111222233334444ul);
	check(rd(V1G + off1g) == 0x1111222233334444ul, "large.1g_offset",
	      "read 0x%lx through the 1G page at offset 0x%lx",
	      rd(V1G + off1g), off1g);
}

/* SDM 4.10.4.1: INVLPG invalidates the TLB entries for the page; a MOV to
 * CR3 invalidates all non-global ones; a CR4.PGE change invalidates all,
 * global ones included. Before the invalidation either translation may be
 * used, so only the state after it is asserted. */
static void test_tlb(void)
{
	uint64_t cr4 = read_cr4();

	wr(FRAME(22), 0xaaaa);
	wr(FRAME(23), 0xbbbb);

	set_pte(S_INVLPG, FRAME(22) | P | RW);
	(void)rd(V4K(S_INVLPG));
	pt[S_INVLPG] = FRAME(23) | P | RW;
	invlpg(V4K(S_INVLPG));
	check(rd(V4K(S_INVLPG)) == 0xbbbb, "tlb.invlpg",
	      "read 0x%lx after INVLPG, expected the new page's 0xbbbb",
	      rd(V4K(S_INVLPG)));

	set_pte(S_CR3, FRAME(22) | P | RW);
	(void)rd(V4K(S_CR3));
	pt[S_CR3] = FRAME(23) | P | RW;
	flush_all();
	check(rd(V4K(S_CR3)) == 0xbbbb, "tlb.cr3_reload",
	      "read 0x%lx after a CR3 load, expected 0xbbbb", rd(V4K(S_CR3)));

	if (!(cpuid(1, 0).edx & (1u << 13))) {
		skip("tlb.global_pge_toggle", "CPUID 1 EDX bit 13 (PGE) is clear");
		return;
	}
	write_cr4(cr4 | CR4_PGE);
	set_pte(S_GLOBAL, FRAME(22) | P | RW | G);
	(void)rd(V4K(S_GLOBAL));
	pt[S_GLOBAL] = FRAME(23) | P | RW | G;
	flush_all();	/* the global entry may survive this: not asserted */
	write_cr4(cr4 & ~CR4_PGE);
	write_cr4(cr4 | CR4_PGE);
	check(rd(V4K(S_GLOBAL)) == 0xbbbb, "tlb.global_pge_toggle",
	      "read 0x%lx after toggling CR4.PGE, expected 0xbbbb",
	      rd(V4K(S_GLOBAL)));
	write_cr4(cr4);
}

static void test_alias(void)
{
	set_pte(S_ALIAS1, FRAME(24) | P | RW);
	set_pte(S_ALIAS2, FRAME(24) | P | RW);
	wr(V4K(S_ALIAS1) + 0x100, 0x0badc0de12345678ul);
	check(rd(V4K(S_ALIAS2) + 0x100) == 0x0badc0de12345678ul,
	      "alias.write_visible", "the other alias reads 0x%lx",
	      rd(V4K(S_ALIAS2) + 0x100));
	wr(V4K(S_ALIAS2) + 0x100, 0x8765432100c0ffeeul);
	check(rd(V4K(S_ALIAS1) + 0x100) == 0x8765432100c0ffeeul &&
	      rd(FRAME(24) + 0x100) == 0x8765432100c0ffeeul,
	      "alias.write_back", "first alias 0x%lx, identity 0x%lx",
	      rd(V4K(S_ALIAS1) + 0x100), rd(FRAME(24) + 0x100));
}

void test_main(void)
{
	have_nx = cpuid(0x80000001, 0).edx & (1u << 20);
	if (have_nx)
		wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_NXE);
	setup();
	test_accessed_dirty();
	test_ad_2m();
	test_nx();
	test_wp();
	test_user();
	test_not_present();
	test_reserved();
	test_large();
	test_tlb();
	test_alias();
}
