/* Unit tests of the emu CPU's system side: the MMU (4-level walks with 4K,
 * 2M and 1G pages, accessed and dirty bits, NX, WP, U/S, page-fault error
 * codes and CR2, TLB invalidation by invlpg and CR3 loads), exception and
 * interrupt delivery (vectors, error codes, frames, IST, TSS.RSP0, double
 * and triple faults), syscall/sysret, iretq, swapgs, the core MSRs, control
 * register checks, far transfers through m16:64, and the CPUID model.
 *
 * One small machine: 4 MiB of guest RAM identity-mapped with 4K pages, a
 * GDT laid out like Linux's, an IDT whose every gate leads to a `hlt` stub
 * of its own, so a stop at stub v means vector v with its frame on the
 * stack. Test code is assembled by hand into a code page and ends in `hlt`.
 * Prints TAP and "N passed, N failed". */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cpu/cpu.h"
#include "vm/vm.h"
#include "tap.h"




/* ---- the machine ---- */

#define RAM_SIZE 0x400000ull
#define PML4 0x1000ull
#define PT_POOL 0x2000ull /* .. 0x40000 */
#define GDT 0x40000ull
#define IDT 0x41000ull
#define TSS 0x42000ull
#define STUBS 0x43000ull
#define KSTACK_TOP 0x58000ull /* TSS.RSP0 */
#define IST1_TOP 0x5a000ull
#define IST2_TOP 0x5c000ull
#define USTACK_TOP 0x68000ull
#define KCODE 0x70000ull
#define UCODE 0x78000ull
#define DATA 0x100000ull /* test data pages from here */

#define SEL_KCODE 0x10
#define SEL_KDATA 0x18
#define SEL_UCODE32 0x23
#define SEL_UDATA 0x2b
#define SEL_UCODE 0x33
#define SEL_TSS 0x40

#define PG_P 1ull
#define PG_W 2ull
#define PG_U 4ull
#define PG_A 0x20ull
#define PG_D 0x40ull
#define PG_PS 0x80ull
#define PG_NX (1ull << 63)

static uint8_t *ram;
static struct cpu *C;
static uint64_t pt_next;
static uint64_t tsc;
static int pending_irq = -1;

static uint8_t *bus_gpa_page(void *o, uint64_t gpa, bool w) { return gpa < RAM_SIZE ? ram + gpa : NULL; }
static uint64_t bus_mmio_read(void *o, uint64_t gpa, int size) { return ~0ull; }
static void bus_mmio_write(void *o, uint64_t gpa, uint64_t v, int size) {}
static uint32_t bus_pio_in(void *o, uint16_t port, int size) { return ~0u; }
static void bus_pio_out(void *o, uint16_t port, uint32_t v, int size) {}
static int bus_intr(void *o, bool ack)
{
	int v = pending_irq;
	if (ack)
		pending_irq = -1;
	return v;
}
static bool bus_msr_read(void *o, uint32_t msr, uint64_t *v) { return false; }
static bool bus_msr_write(void *o, uint32_t msr, uint64_t v) { return false; }
static uint64_t bus_tsc(void *o) { return tsc += 100; }

static uint64_t *ent(uint64_t gpa) { return (uint64_t *)(ram + gpa); }
static uint64_t rd64(uint64_t gpa) { uint64_t v; memcpy(&v, ram + gpa, 8); return v; }
static void wr64(uint64_t gpa, uint64_t v) { memcpy(ram + gpa, &v, 8); }

/* the entry of lin at level (4: PML4 .. 1: PT), creating tables on the way */
static uint64_t *walk_to(uint64_t lin, int level)
{
	uint64_t table = PML4;
	for (int l = 4; l > level; l--) {
		uint64_t *e = ent(table) + ((lin >> (12 + 9 * (l - 1))) & 511);
		if (!(*e & PG_P) || (*e & PG_PS)) {
			memset(ram + pt_next, 0, 0x1000);
			*e = pt_next | PG_P | PG_W | PG_U;
			pt_next += 0x1000;
		}
		table = *e & 0xffffffffff000ull;
	}
	return ent(table) + ((lin >> (12 + 9 * (level - 1))) & 511);
}

static uint64_t *map4k(uint64_t lin, uint64_t gpa, uint64_t flags)
{
	uint64_t *e = walk_to(lin, 1);
	*e = gpa | flags;
	return e;
}

static uint64_t *map2m(uint64_t lin, uint64_t gpa, uint64_t flags)
{
	uint64_t *e = walk_to(lin, 2);
	*e = gpa | flags | PG_PS;
	return e;
}

static uint64_t *map1g(uint64_t lin, uint64_t gpa, uint64_t flags)
{
	uint64_t *e = walk_to(lin, 3);
	*e = gpa | flags | PG_PS;
	return e;
}

static void set_gate(int v, uint64_t handler, int ist, int dpl, bool present)
{
	uint64_t *g = ent(IDT + 16 * v);
	g[0] = (handler & 0xffff) | (uint64_t)SEL_KCODE << 16 | (uint64_t)ist << 32 |
	       (uint64_t)(0x0e | dpl << 5 | (present ? 0x80 : 0)) << 40 | ((handler >> 16) & 0xffff) << 48;
	g[1] = handler >> 32;
}

static void enter_cpl(int cpl)
{
	if (cpl == 3) {
		cpu_set_seg_flat(C, S_CS, SEL_UCODE, 0xfb | SEG_ATTR_L | 1u << 11);
		cpu_set_seg_flat(C, S_SS, SEL_UDATA, 0xf3 | SEG_ATTR_DB | 1u << 11);
		C->r[R_RSP] = USTACK_TOP;
	} else {
		cpu_set_seg_flat(C, S_CS, SEL_KCODE, 0x9b | SEG_ATTR_L | 1u << 11);
		cpu_set_seg_flat(C, S_SS, SEL_KDATA, 0x93 | SEG_ATTR_DB | 1u << 11);
		C->r[R_RSP] = KSTACK_TOP - 0x800;
	}
	C->cpl = cpl;
	cpu_update_mode(C);
}

/* a fresh machine in 64-bit mode at CPL 0 */
static void machine_reset(void)
{
	memset(ram, 0, RAM_SIZE);
	cpu_reset(C);
	C->bus = (struct cpu_bus){ .gpa_page = bus_gpa_page, .mmio_read = bus_mmio_read, .mmio_write = bus_mmio_write,
				   .pio_in = bus_pio_in, .pio_out = bus_pio_out, .intr_vector = bus_intr,
				   .msr_read = bus_msr_read, .msr_write = bus_msr_write, .tsc = bus_tsc };
	pending_irq = -1;
	pt_next = PT_POOL;
	/* identity map of the first 4 MiB, user-accessible except the
	 * system structures */
	for (uint64_t a = 0x1000; a < RAM_SIZE; a += 0x1000) {
		bool sys = a >= GDT && a < 0x60000;
		map4k(a, a, PG_P | PG_W | (sys ? 0 : PG_U));
	}
	uint64_t *gdt = ent(GDT);
	gdt[1] = 0x00cf9b000000ffffull; /* 0x08 */
	gdt[2] = 0x00af9b000000ffffull; /* 0x10 kernel code */
	gdt[3] = 0x00cf93000000ffffull; /* 0x18 kernel data */
	gdt[4] = 0x00cffb000000ffffull; /* 0x23 user 32-bit code */
	gdt[5] = 0x00cff3000000ffffull; /* 0x2b user data */
	gdt[6] = 0x00affb000000ffffull; /* 0x33 user code */
	gdt[8] = 0x67 | (TSS & 0xffffff) << 16 | 0x8bull << 40 | ((TSS >> 24) & 0xff) << 56;
	gdt[9] = TSS >> 32;
	wr64(TSS + 4, KSTACK_TOP);
	wr64(TSS + 0x24, IST1_TOP);
	wr64(TSS + 0x2c, IST2_TOP);
	for (int v = 0; v < 256; v++) {
		set_gate(v, STUBS + 16 * v, 0, v == 3 || v == 4 ? 3 : 0, true);
		ram[STUBS + 16 * v] = 0xF4;
	}
	C->gdtr.base = GDT;
	C->gdtr.limit = 16 * 8 - 1;
	C->idtr.base = IDT;
	C->idtr.limit = 256 * 16 - 1;
	C->ldtr.sel = 0;
	C->ldtr.attr = 0;
	C->ldtr.limit = 0;
	C->tr.sel = SEL_TSS;
	C->tr.base = TSS;
	C->tr.limit = 0x67;
	C->tr.attr = 0x8b;
	C->cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG;
	C->cr4 = CR4_PAE | CR4_PGE | CR4_OSFXSR | CR4_OSXMMEXCPT;
	C->efer = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;
	C->cr3 = PML4;
	for (int s = S_ES; s <= S_GS; s++)
		if (s != S_CS && s != S_SS)
			C->seg[s] = (struct seg){ 0 };
	C->rflags = 2;
	tlb_flush(C);
	enter_cpl(0);
}

/* ---- code ---- */

struct code {
	uint8_t b[0x1100];
	int n;
};

static void B(struct code *k, int n, ...)
{
	va_list ap;
	va_start(ap, n);
	for (int i = 0; i < n; i++)
		k->b[k->n++] = (uint8_t)va_arg(ap, int);
	va_end(ap);
}

static void imm32(struct code *k, uint32_t v)
{
	memcpy(k->b + k->n, &v, 4);
	k->n += 4;
}

static void imm64(struct code *k, uint64_t v)
{
	memcpy(k->b + k->n, &v, 8);
	k->n += 8;
}

/* mov r64, imm64 */
static void movabs(struct code *k, int r, uint64_t v)
{
	B(k, 2, 0x48 | (r >= 8), 0xB8 + (r & 7));
	imm64(k, v);
}

/* mov rax, [moffs64] / mov [moffs64], rax */
static void load_rax(struct code *k, uint64_t a) { B(k, 2, 0x48, 0xA1); imm64(k, a); }
static void store_rax(struct code *k, uint64_t a) { B(k, 2, 0x48, 0xA3); imm64(k, a); }

static void wrmsr(struct code *k, uint32_t msr, uint64_t v)
{
	movabs(k, R_RCX, msr);
	movabs(k, R_RAX, (uint32_t)v);
	movabs(k, R_RDX, v >> 32);
	B(k, 2, 0x0F, 0x30);
}

static void rdmsr(struct code *k, uint32_t msr)
{
	movabs(k, R_RCX, msr);
	B(k, 2, 0x0F, 0x32);
}

/* what a run ended with */
struct outcome {
	enum cpu_stop stop;
	int vector;      /* -1: the code's own hlt */
	uint64_t at;     /* address of the hlt that stopped it */
	uint64_t err;    /* error code when the vector has one */
	uint64_t rip, cs, rflags, rsp, ss; /* the frame */
	uint64_t frame;  /* linear address of the frame (error code included) */
};

static bool has_err(int v)
{
	return v == 8 || (v >= 10 && v <= 14) || v == 17;
}

/* k's code at gpa, the CPU about to run it from rip */
static void load_at(uint64_t gpa, const struct code *k, uint64_t rip)
{
	memcpy(ram + gpa, k->b, k->n);
	C->rip = rip;
	C->halted = false;
	C->cur_exc = -1;
}

static struct outcome run_at(uint64_t gpa, const struct code *k, uint64_t rip)
{
	load_at(gpa, k, rip);
	struct outcome o = { 0 };
	o.stop = cpu_run(C, 100000);
	o.vector = -2;
	if (o.stop != STOP_HLT)
		return o;
	o.at = C->rip - 1;
	if (o.at >= STUBS && o.at < STUBS + 256 * 16 && !(o.at & 15)) {
		o.vector = (int)((o.at - STUBS) / 16);
		uint64_t f = C->r[R_RSP];
		o.frame = f;
		if (has_err(o.vector)) {
			o.err = rd64(f);
			f += 8;
		}
		o.rip = rd64(f);
		o.cs = rd64(f + 8);
		o.rflags = rd64(f + 16);
		o.rsp = rd64(f + 24);
		o.ss = rd64(f + 32);
	} else {
		o.vector = -1;
	}
	return o;
}

/* kernel code at KCODE, user code at UCODE */
static struct outcome run_k(const struct code *k) { return run_at(KCODE, k, KCODE); }
static struct outcome run_u(const struct code *k)
{
	enter_cpl(3);
	return run_at(UCODE, k, UCODE);
}

/* ================= MMU ================= */

static void test_page_sizes(void)
{
	machine_reset();
	const uint64_t l4k = 0x10000000, l2m = 0x80000000ull, l1g = 0xC0000000ull;
	map4k(l4k, DATA + 0x3000, PG_P | PG_W);
	map2m(l2m, 0x200000, PG_P | PG_W);
	map1g(l1g, 0, PG_P | PG_W);
	wr64(DATA + 0x3000 + 0x18, 0x1111222233334444ull);
	wr64(0x200000 + 0x1238, 0x5555666677778888ull);
	wr64(0x300000 + 0x40, 0x99990000aaaabbbbull);
	struct code k = { 0 };
	load_rax(&k, l4k + 0x18);
	B(&k, 3, 0x48, 0x89, 0xC3); /* mov rbx, rax */
	load_rax(&k, l2m + 0x1238);
	B(&k, 3, 0x48, 0x89, 0xC1); /* mov rcx, rax */
	load_rax(&k, l1g + 0x300040);
	B(&k, 1, 0xF4);
	struct outcome o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RBX] == 0x1111222233334444ull, "mmu: read through a 4K page");
	ok(o.vector == -1 && C->r[R_RCX] == 0x5555666677778888ull, "mmu: read through a 2M page");
	ok(o.vector == -1 && C->r[R_RAX] == 0x99990000aaaabbbbull, "mmu: read through a 1G page");
	uint64_t gpa = 0;
	uint32_t err = 0;
	bool t1 = mmu_translate(C, l4k + 0x123, ACC_R, &gpa, &err) && gpa == DATA + 0x3123;
	bool t2 = mmu_translate(C, l2m + 0x1ff123, ACC_R, &gpa, &err) && gpa == 0x3ff123;
	bool t3 = mmu_translate(C, l1g + 0x12345, ACC_W, &gpa, &err) && gpa == 0x12345;
	ok(t1 && t2 && t3, "mmu: mmu_translate with 4K, 2M and 1G leaves");
	/* writes through each size land in the right place */
	k.n = 0;
	movabs(&k, R_RAX, 0xfeedfacecafebeefull);
	store_rax(&k, l4k + 0x20);
	store_rax(&k, l2m + 0x10);
	store_rax(&k, l1g + 0x300100);
	B(&k, 1, 0xF4);
	o = run_k(&k);
	ok(o.vector == -1 && rd64(DATA + 0x3020) == 0xfeedfacecafebeefull && rd64(0x200010) == 0xfeedfacecafebeefull &&
		   rd64(0x300100) == 0xfeedfacecafebeefull,
	   "mmu: writes through 4K, 2M and 1G leaves");
}

static void test_accessed_dirty(void)
{
	machine_reset();
	const uint64_t l4k = 0x10000000, l2m = 0x80000000ull, l1g = 0xC0000000ull;
	uint64_t *pte = map4k(l4k, DATA + 0x5000, PG_P | PG_W);
	uint64_t *pde = walk_to(l4k, 2), *pdpte = walk_to(l4k, 3), *pml4e = walk_to(l4k, 4);
	uint64_t *pde2m = map2m(l2m, 0x200000, PG_P | PG_W);
	uint64_t *pdpte1g = map1g(l1g, 0, PG_P | PG_W);
	*pml4e &= ~(PG_A | PG_D);
	*pdpte &= ~(PG_A | PG_D);
	*pde &= ~(PG_A | PG_D);
	*pte &= ~(PG_A | PG_D);
	struct code k = { 0 };
	load_rax(&k, l4k + 8);
	load_rax(&k, l2m + 8);
	load_rax(&k, l1g + 0x300008);
	B(&k, 1, 0xF4);
	struct outcome o = run_k(&k);
	ok(o.vector == -1 && (*pml4e & PG_A) && (*pdpte & PG_A) && (*pde & PG_A) && (*pte & PG_A),
	   "mmu: a read sets the accessed bit at every level");
	ok(!(*pte & PG_D), "mmu: a read leaves the dirty bit clear");
	ok((*pde2m & PG_A) && !(*pde2m & PG_D) && (*pdpte1g & PG_A) && !(*pdpte1g & PG_D),
	   "mmu: reads set A and not D on 2M and 1G leaves");
	k.n = 0;
	store_rax(&k, l4k + 8);
	store_rax(&k, l2m + 8);
	store_rax(&k, l1g + 0x300008);
	B(&k, 1, 0xF4);
	o = run_k(&k);
	ok(o.vector == -1 && (*pte & PG_D) && !(*pde & PG_D), "mmu: a write sets the dirty bit of the 4K leaf only");
	ok((*pde2m & PG_D) && (*pdpte1g & PG_D), "mmu: writes set D on 2M and 1G leaves");
	/* a write after a read on a clean page: the TLB entry made by the read
	 * must not let the write skip the dirty bit */
	*pte &= ~PG_D;
	tlb_flush(C);
	k.n = 0;
	load_rax(&k, l4k + 0x10);
	store_rax(&k, l4k + 0x18);
	B(&k, 1, 0xF4);
	o = run_k(&k);
	ok(o.vector == -1 && (*pte & PG_D), "mmu: read then write on a clean page sets D");
}

/* 32-bit paging: entries are 4 bytes, so half of them sit in the upper
 * half of an aligned quadword; A and D must land on the entry walked */
static void test_accessed_dirty_32(void)
{
	machine_reset();
	const uint64_t pd = DATA + 0x8000, pt = DATA + 0x9000;
	uint32_t e[4];
	memset(ram + pd, 0, 0x2000);
	e[0] = (uint32_t)pt | PG_P | PG_W;
	memcpy(ram + pd, e, 4);
	e[0] = (uint32_t)(DATA + 0xa000) | PG_P | PG_W; /* lin 0x0000 */
	e[1] = (uint32_t)(DATA + 0xb000) | PG_P | PG_W; /* lin 0x1000 */
	memcpy(ram + pt, e, 8);
	C->efer = 0;
	C->cr4 = 0;
	C->cr3 = pd;
	tlb_flush(C);
	uint64_t gpa = 0;
	uint32_t err = 0;
	bool t = mmu_translate(C, 0x1234, ACC_W | ACC_SUPER, &gpa, &err) && gpa == DATA + 0xb234;
	memcpy(e, ram + pt, 8);
	ok(t && (e[1] & PG_A) && (e[1] & PG_D) && !(e[0] & (PG_A | PG_D)),
	   "mmu: 32-bit paging sets A and D on the odd PTE walked, not its neighbour");
	memcpy(e, ram + pd, 4);
	ok(e[0] & PG_A, "mmu: 32-bit paging sets A on the PDE");
	machine_reset();
}

/* a run expected to stop in the #PF handler */
static bool pf_is(struct outcome o, uint64_t cr2, uint32_t err)
{
	return o.vector == EXC_PF && C->cr2 == cr2 && o.err == err;
}

static void test_nx_wp_us(void)
{
	machine_reset();
	const uint64_t lx = 0x10002000;
	map4k(lx, KCODE + 0x800 - 0x800, PG_P | PG_W | PG_NX); /* code page, not executable here */
	ram[KCODE] = 0xF4;
	struct code k = { 0 };
	movabs(&k, R_RAX, lx);
	B(&k, 2, 0xFF, 0xE0); /* jmp rax */
	struct outcome o = run_at(KCODE + 0x100, &k, KCODE + 0x100);
	ok(pf_is(o, lx, PF_P | PF_I) && o.rip == lx, "mmu: fetch from an NX page is #PF(P|I), CR2 and RIP at the target");
	/* NX without EFER.NXE is a reserved bit */
	C->efer &= ~(uint64_t)EFER_NXE;
	tlb_flush(C);
	k.n = 0;
	load_rax(&k, lx);
	B(&k, 1, 0xF4);
	o = run_k(&k);
	ok(pf_is(o, lx, PF_P | PF_RSVD), "mmu: bit 63 without EFER.NXE is #PF(P|RSVD)");
	C->efer |= EFER_NXE;
	tlb_flush(C);

	/* WP */
	const uint64_t lro = 0x10003000;
	map4k(lro, DATA + 0x6000, PG_P);
	C->cr0 &= ~(uint64_t)CR0_WP;
	tlb_flush(C);
	k.n = 0;
	movabs(&k, R_RAX, 0x1234);
	store_rax(&k, lro + 8);
	B(&k, 1, 0xF4);
	o = run_k(&k);
	ok(o.vector == -1 && rd64(DATA + 0x6008) == 0x1234, "mmu: CR0.WP=0: a supervisor write to a read-only page succeeds");
	C->cr0 |= CR0_WP;
	tlb_flush(C);
	enter_cpl(0);
	o = run_k(&k);
	ok(pf_is(o, lro + 8, PF_P | PF_W), "mmu: CR0.WP=1: a supervisor write to a read-only page is #PF(P|W)");
	/* with WP=0 and a TLB entry made by a read, the write still works */
	C->cr0 &= ~(uint64_t)CR0_WP;
	tlb_flush(C);
	k.n = 0;
	load_rax(&k, lro);
	movabs(&k, R_RAX, 0x5678);
	store_rax(&k, lro + 8);
	B(&k, 1, 0xF4);
	enter_cpl(0);
	o = run_k(&k);
	ok(o.vector == -1 && rd64(DATA + 0x6008) == 0x5678, "mmu: CR0.WP=0: read, then write the read-only page");
	C->cr0 |= CR0_WP;
	tlb_flush(C);

	/* U/S from CPL 3 */
	const uint64_t ls = 0x10004000, lnp = 0x10005000, luro = 0x10006000;
	map4k(ls, DATA + 0x7000, PG_P | PG_W);  /* supervisor */
	map4k(lnp, DATA + 0x8000, 0);           /* not present */
	map4k(luro, DATA + 0x9000, PG_P | PG_U); /* user, read-only */
	struct {
		const char *what;
		uint64_t lin;
		bool write;
		uint32_t err;
	} us[] = {
		{ "user read of a supervisor page", ls, false, PF_P | PF_U },
		{ "user write of a supervisor page", ls, true, PF_P | PF_W | PF_U },
		{ "user read of a not-present page", lnp, false, PF_U },
		{ "user write of a not-present page", lnp, true, PF_W | PF_U },
		{ "user write of a read-only user page", luro, true, PF_P | PF_W | PF_U },
	};
	for (size_t i = 0; i < sizeof(us) / sizeof(us[0]); i++) {
		k.n = 0;
		if (us[i].write)
			store_rax(&k, us[i].lin + 0x10);
		else
			load_rax(&k, us[i].lin + 0x10);
		B(&k, 1, 0xF4);
		o = run_u(&k);
		ok(pf_is(o, us[i].lin + 0x10, us[i].err) && o.rip == UCODE && o.cs == (SEL_UCODE | 3u),
		   "mmu: %s is #PF(%#x) with CR2, from CPL 3", us[i].what, us[i].err);
	}
	k.n = 0;
	load_rax(&k, luro + 0x10);
	B(&k, 1, 0xF4);
	o = run_u(&k);
	ok(o.vector == EXC_GP && o.rip == UCODE + 10, "mmu: user read of a read-only user page works (then hlt is #GP)");
	/* user fetch from a supervisor page */
	map4k(0x10007000, KCODE, PG_P | PG_W);
	k.n = 0;
	movabs(&k, R_RAX, 0x10007000);
	B(&k, 2, 0xFF, 0xE0);
	o = run_u(&k);
	ok(pf_is(o, 0x10007000, PF_P | PF_U | PF_I), "mmu: user fetch from a supervisor page is #PF(P|U|I)");
	/* supervisor read of a user page is fine (no SMAP) */
	enter_cpl(0);
	k.n = 0;
	load_rax(&k, luro);
	B(&k, 1, 0xF4);
	o = run_k(&k);
	ok(o.vector == -1, "mmu: supervisor read of a user page works");
}

static void test_reserved(void)
{
	machine_reset();
	const uint64_t l = 0x10008000;
	uint64_t *pte = map4k(l, DATA + 0xa000, PG_P | PG_W | (1ull << 51));
	struct code k = { 0 };
	load_rax(&k, l);
	B(&k, 1, 0xF4);
	struct outcome o = run_k(&k);
	ok(pf_is(o, l, PF_P | PF_RSVD), "mmu: a physical-address bit above MAXPHYADDR in a PTE is #PF(P|RSVD)");
	*pte = (DATA + 0xa000) | PG_P | PG_W;
	uint64_t *pde = map2m(0x80000000ull, 0x200000 | 0x2000, PG_P | PG_W); /* bit 13: reserved in a 2M leaf */
	k.n = 0;
	load_rax(&k, 0x80000000ull);
	B(&k, 1, 0xF4);
	tlb_flush(C);
	o = run_k(&k);
	ok(pf_is(o, 0x80000000ull, PF_P | PF_RSVD), "mmu: reserved address bits in a 2M leaf are #PF(P|RSVD)");
	(void)pde;
	/* a write to a reserved-bit page from CPL 3 reports W and U too */
	map4k(0x10009000, DATA + 0xb000, PG_P | PG_W | PG_U | (1ull << 45));
	k.n = 0;
	store_rax(&k, 0x10009000);
	B(&k, 1, 0xF4);
	o = run_u(&k);
	ok(pf_is(o, 0x10009000, PF_P | PF_W | PF_U | PF_RSVD), "mmu: reserved bit, user write: #PF(P|W|U|RSVD)");
}

static void test_tlb(void)
{
	machine_reset();
	const uint64_t l = 0x1000a000;
	uint64_t *pte = map4k(l, DATA + 0xc000, PG_P | PG_W);
	wr64(DATA + 0xc000, 0xaaaa);
	wr64(DATA + 0xd000, 0xbbbb);
	struct code k = { 0 };
	load_rax(&k, l);
	B(&k, 1, 0xF4);
	struct outcome o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RAX] == 0xaaaa, "tlb: first mapping read");
	*pte = (DATA + 0xd000) | PG_P | PG_W;
	o = run_k(&k);
	if (C->r[R_RAX] == 0xaaaa)
		printf("# the software TLB still holds the old translation, as a TLB may\n");
	k.n = 0;
	movabs(&k, R_RBX, l);
	B(&k, 3, 0x0F, 0x01, 0x3B); /* invlpg [rbx] */
	load_rax(&k, l);
	B(&k, 1, 0xF4);
	o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RAX] == 0xbbbb, "tlb: after invlpg the new mapping is seen");
	*pte = (DATA + 0xc000) | PG_P | PG_W;
	k.n = 0;
	load_rax(&k, l);
	B(&k, 1, 0xF4);
	o = run_k(&k);
	k.n = 0;
	B(&k, 3, 0x0F, 0x20, 0xD8); /* mov rax, cr3 */
	B(&k, 3, 0x0F, 0x22, 0xD8); /* mov cr3, rax */
	load_rax(&k, l);
	B(&k, 1, 0xF4);
	o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RAX] == 0xaaaa, "tlb: after a CR3 load the new mapping is seen");
	/* write permission removed: invlpg makes the next write fault */
	k.n = 0;
	store_rax(&k, l);
	B(&k, 1, 0xF4);
	o = run_k(&k);
	*pte &= ~PG_W;
	k.n = 0;
	movabs(&k, R_RBX, l);
	B(&k, 3, 0x0F, 0x01, 0x3B);
	store_rax(&k, l);
	B(&k, 1, 0xF4);
	o = run_k(&k);
	ok(pf_is(o, l, PF_P | PF_W), "tlb: after invlpg a write to a page made read-only faults");
	/* a page made not-present, then the whole TLB flushed by CR4.PGE */
	*pte = 0;
	k.n = 0;
	B(&k, 3, 0x0F, 0x20, 0xE0);             /* mov rax, cr4 */
	B(&k, 4, 0x48, 0x83, 0xF0, 0x00);       /* xor rax, 0 (keeps it) */
	B(&k, 4, 0x48, 0x0F, 0xBA, 0xF8), B(&k, 1, 7); /* btc rax, 7 (PGE) */
	B(&k, 3, 0x0F, 0x22, 0xE0);             /* mov cr4, rax */
	load_rax(&k, l);
	B(&k, 1, 0xF4);
	o = run_k(&k);
	ok(pf_is(o, l, 0), "tlb: toggling CR4.PGE flushes (not-present page faults)");
}

/* n linear pages, each read once (a TLB entry each), then all mapped to
 * another physical page and CR3 reloaded: every read must see the new
 * page, whether the TLB's flush log held all the entries or overflowed */
static void tlb_flush_many(int n)
{
	machine_reset();
	const uint64_t base = 0x20000000;
	wr64(DATA + 0x1000, 1);
	wr64(DATA + 0x2000, 1000);
	wr64(DATA + 0x3000, 7);
	for (int i = 0; i < n; i++)
		map4k(base + i * 0x1000ull, DATA + (i & 1 ? 0x2000 : 0x1000), PG_P | PG_W);
	struct code loop = { 0 };
	movabs(&loop, R_RBX, base);
	B(&loop, 1, 0xB9), imm32(&loop, (uint32_t)n); /* mov ecx, n */
	B(&loop, 2, 0x31, 0xC0);                      /* xor eax, eax */
	B(&loop, 3, 0x48, 0x03, 0x03);                /* add rax, [rbx] */
	B(&loop, 3, 0x48, 0x81, 0xC3), imm32(&loop, 0x1000); /* add rbx, 0x1000 */
	B(&loop, 2, 0xFF, 0xC9);                      /* dec ecx */
	B(&loop, 2, 0x75, 0xF2);                      /* jnz the add */
	B(&loop, 1, 0xF4);
	struct outcome o = run_k(&loop);
	uint64_t before = (uint64_t)(n / 2) * 1000 + (uint64_t)(n - n / 2);
	ok(o.vector == -1 && C->r[R_RAX] == before, "tlb: %d pages read through their first mappings", n);
	for (int i = 0; i < n; i++)
		map4k(base + i * 0x1000ull, DATA + 0x3000, PG_P | PG_W);
	struct code k = { 0 };
	B(&k, 3, 0x0F, 0x20, 0xD8); /* mov rax, cr3 */
	B(&k, 3, 0x0F, 0x22, 0xD8); /* mov cr3, rax */
	memcpy(k.b + k.n, loop.b, loop.n);
	k.n += loop.n;
	o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RAX] == 7ull * n, "tlb: after a CR3 load all %d pages read the new mapping", n);
}

/* n pages, the odd ones global (CR4.PGE is on), all read, then all mapped
 * to another page: a CR3 load must drop the even pages' translations (the
 * odd ones may stay, as on a real CPU), invlpg an odd one's */
static void tlb_flush_global(int n)
{
	machine_reset();
	const uint64_t base = 0x20000000;
	wr64(DATA + 0x1000, 1);
	wr64(DATA + 0x3000, 7);
	for (int i = 0; i < n; i++)
		map4k(base + i * 0x1000ull, DATA + 0x1000, PG_P | PG_W | (i & 1 ? 0x100 : 0));
	struct code loop = { 0 };
	B(&loop, 1, 0xB9), imm32(&loop, (uint32_t)n); /* mov ecx, n */
	B(&loop, 2, 0x31, 0xC0);                      /* xor eax, eax */
	B(&loop, 3, 0x48, 0x03, 0x03);                /* add rax, [rbx] */
	B(&loop, 3, 0x48, 0x81, 0xC3), imm32(&loop, 0x1000); /* add rbx, 0x1000 */
	B(&loop, 2, 0xFF, 0xC9);                      /* dec ecx */
	B(&loop, 2, 0x75, 0xF2);                      /* jnz the add */
	B(&loop, 1, 0xF4);
	struct code k = { 0 };
	movabs(&k, R_RBX, base);
	memcpy(k.b + k.n, loop.b, loop.n);
	k.n += loop.n;
	struct outcome o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RAX] == (uint64_t)n, "tlb: %d pages, half of them global, read", n);
	for (int i = 0; i < n; i++)
		map4k(base + i * 0x1000ull, DATA + 0x3000, PG_P | PG_W | (i & 1 ? 0x100 : 0));
	/* a CR3 load, then the even pages only */
	k.n = 0;
	B(&k, 3, 0x0F, 0x20, 0xD8); /* mov rax, cr3 */
	B(&k, 3, 0x0F, 0x22, 0xD8); /* mov cr3, rax */
	movabs(&k, R_RBX, base);
	B(&k, 1, 0xB9), imm32(&k, (uint32_t)(n / 2)); /* mov ecx, n / 2 */
	B(&k, 2, 0x31, 0xC0);
	B(&k, 3, 0x48, 0x03, 0x03);
	B(&k, 3, 0x48, 0x81, 0xC3), imm32(&k, 0x2000);
	B(&k, 2, 0xFF, 0xC9);
	B(&k, 2, 0x75, 0xF2);
	B(&k, 1, 0xF4);
	o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RAX] == 7ull * (n / 2),
	   "tlb: after a CR3 load the %d non-global pages read the new mapping", n / 2);
	k.n = 0;
	movabs(&k, R_RBX, base + 0x1000);
	B(&k, 3, 0x0F, 0x01, 0x3B); /* invlpg [rbx] */
	B(&k, 3, 0x48, 0x8B, 0x03); /* mov rax, [rbx] */
	B(&k, 1, 0xF4);
	o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RAX] == 7, "tlb: after invlpg a global page reads the new mapping (%d pages)", n);
}

/* two pages that share a TLB entry evict each other, and each still reads
 * its own page */
static void tlb_same_entry(void)
{
	machine_reset();
	const uint64_t a = 0x30000000, b = a ^ (((uint64_t)TLB_SIZE + 1) << 12);
	ok(tlb_index(a) == tlb_index(b), "tlb: the test's two pages share an entry");
	map4k(a, DATA + 0x1000, PG_P | PG_W);
	map4k(b, DATA + 0x2000, PG_P | PG_W);
	wr64(DATA + 0x1000, 5);
	wr64(DATA + 0x2000, 300);
	struct code k = { 0 };
	movabs(&k, R_RBX, a);
	movabs(&k, R_RSI, b);
	B(&k, 1, 0xB9), imm32(&k, 10);   /* mov ecx, 10 */
	B(&k, 2, 0x31, 0xC0);            /* xor eax, eax */
	B(&k, 3, 0x48, 0x03, 0x03);      /* add rax, [rbx] */
	B(&k, 3, 0x48, 0x03, 0x06);      /* add rax, [rsi] */
	B(&k, 4, 0x48, 0x83, 0x06, 1);   /* add qword [rsi], 1 */
	B(&k, 2, 0xFF, 0xC9);            /* dec ecx */
	B(&k, 2, 0x75, 0xF2);            /* jnz the first add */
	B(&k, 1, 0xF4);
	struct outcome o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RAX] == 10 * 5 + 10 * 300 + 45 && rd64(DATA + 0x2000) == 310 &&
		   rd64(DATA + 0x1000) == 5,
	   "tlb: two pages sharing an entry, read and written in turn");
}

/* ================= exceptions and interrupts ================= */

static void test_exceptions(void)
{
	machine_reset();
	struct code k = { 0 };
	uint64_t rsp0 = C->r[R_RSP];
	/* #DE */
	B(&k, 2, 0x31, 0xC9);       /* xor ecx, ecx */
	B(&k, 3, 0x48, 0xF7, 0xF1); /* div rcx */
	struct outcome o = run_k(&k);
	ok(o.vector == EXC_DE && o.rip == KCODE + 2 && o.cs == SEL_KCODE && o.ss == SEL_KDATA && o.rsp == rsp0,
	   "exc: #DE: vector 0, frame RIP at the div, CS, SS, RSP");
	ok(o.frame == ((rsp0 & ~15ull) - 40) && (o.rflags & 2), "exc: the frame is below RSP aligned to 16");
	/* #UD */
	enter_cpl(0);
	k.n = 0;
	B(&k, 1, 0x90);
	B(&k, 2, 0x0F, 0x0B);
	o = run_k(&k);
	ok(o.vector == EXC_UD && o.rip == KCODE + 1 && o.frame == (rsp0 & ~15ull) - 40, "exc: #UD from ud2, no error code");
	/* #GP(0) from a non-canonical address */
	enter_cpl(0);
	k.n = 0;
	load_rax(&k, 0x0000800000000000ull);
	o = run_k(&k);
	ok(o.vector == EXC_GP && o.err == 0 && o.rip == KCODE && o.frame == (rsp0 & ~15ull) - 48,
	   "exc: #GP(0) from a non-canonical address, error code pushed");
	/* #BP is a trap */
	enter_cpl(0);
	C->rflags = 0x202;
	k.n = 0;
	B(&k, 2, 0x90, 0xCC);
	o = run_k(&k);
	ok(o.vector == EXC_BP && o.rip == KCODE + 2 && (o.rflags & F_IF) && !(C->rflags & F_IF),
	   "exc: int3 is a trap (RIP past it); an interrupt gate clears IF");
	/* int n */
	enter_cpl(0);
	k.n = 0;
	B(&k, 2, 0xCD, 0x40);
	o = run_k(&k);
	ok(o.vector == 0x40 && o.rip == KCODE + 2, "exc: int 0x40");
	/* an unaligned RSP: the frame is aligned to 16 */
	enter_cpl(0);
	C->r[R_RSP] = KSTACK_TOP - 0x803;
	k.n = 0;
	B(&k, 1, 0xCC);
	o = run_k(&k);
	ok(o.vector == EXC_BP && o.rsp == KSTACK_TOP - 0x803 && o.frame == ((KSTACK_TOP - 0x803) & ~15ull) - 40,
	   "exc: RSP 0x...7fd is aligned down to 16 before the frame");
	/* #SS(0): push with a non-canonical RSP, delivered on IST 1 */
	set_gate(EXC_SS, STUBS + 16 * EXC_SS, 1, 0, true);
	enter_cpl(0);
	C->r[R_RSP] = 0x0000800000000010ull;
	k.n = 0;
	B(&k, 1, 0x50); /* push rax */
	o = run_k(&k);
	ok(o.vector == EXC_SS && o.err == 0 && o.frame == IST1_TOP - 48 && o.rsp == 0x0000800000000010ull,
	   "exc: push with a non-canonical RSP is #SS(0) (here on IST 1)");
}

static void test_ist_rsp0(void)
{
	machine_reset();
	/* IST: vector 3 on IST 2 */
	set_gate(EXC_BP, STUBS + 16 * EXC_BP, 2, 3, true);
	struct code k = { 0 };
	B(&k, 1, 0xCC);
	uint64_t rsp = C->r[R_RSP];
	struct outcome o = run_k(&k);
	ok(o.vector == EXC_BP && o.frame == IST2_TOP - 40 && o.rsp == rsp, "ist: gate with IST 2 switches to TSS.IST2 at CPL 0");

	/* CPL 3 -> 0 through TSS.RSP0 */
	machine_reset();
	k.n = 0;
	B(&k, 2, 0x90, 0xCC);
	o = run_u(&k);
	ok(o.vector == EXC_BP && o.frame == KSTACK_TOP - 40, "rsp0: int3 from CPL 3 lands on TSS.RSP0");
	ok(o.rip == UCODE + 2 && o.cs == (SEL_UCODE | 3u) && o.ss == (SEL_UDATA | 3u) && o.rsp == USTACK_TOP,
	   "rsp0: frame holds the user RIP, CS, SS and RSP");
	ok(C->cpl == 0 && C->seg[S_CS].sel == SEL_KCODE && (C->seg[S_SS].sel & ~3u) == 0,
	   "rsp0: now CPL 0 with SS null");
	/* gate DPL 0 from CPL 3: #GP(vector*8+2) */
	machine_reset();
	k.n = 0;
	B(&k, 2, 0xCD, 0x40);
	o = run_u(&k);
	ok(o.vector == EXC_GP && o.err == 0x40 * 8 + 2 && o.rip == UCODE && o.frame == KSTACK_TOP - 48,
	   "rsp0: int 0x40 through a DPL 0 gate from CPL 3 is #GP(0x202) on RSP0");
	/* a fault from CPL 3 with an error code, on RSP0 */
	machine_reset();
	k.n = 0;
	load_rax(&k, 0x0000900000000000ull);
	o = run_u(&k);
	ok(o.vector == EXC_GP && o.err == 0 && o.frame == KSTACK_TOP - 48 && o.rsp == USTACK_TOP,
	   "rsp0: #GP(0) from CPL 3");
	/* the system structures are supervisor-only: delivery reads them with
	 * supervisor rights whatever the CPL */
	ok(!(*walk_to(IDT, 1) & PG_U) && !(*walk_to(TSS, 1) & PG_U) && !(*walk_to(KSTACK_TOP - 8, 1) & PG_U),
	   "rsp0: (IDT, TSS and kernel stack are supervisor pages)");
}

static void test_double_triple(void)
{
	machine_reset();
	set_gate(EXC_GP, STUBS + 16 * EXC_GP, 0, 0, false);
	struct code k = { 0 };
	load_rax(&k, 0x0000800000000000ull);
	struct outcome o = run_k(&k);
	ok(o.vector == EXC_DF && o.err == 0 && o.rip == KCODE, "double fault: #GP with its gate not present gives #DF(0)");
	machine_reset();
	set_gate(EXC_GP, STUBS + 16 * EXC_GP, 0, 0, false);
	set_gate(EXC_DF, STUBS + 16 * EXC_DF, 0, 0, false);
	o = run_k(&k);
	ok(o.stop == STOP_SHUTDOWN, "triple fault: #DF gate not present too: cpu_run returns STOP_SHUTDOWN");
	/* #PF during #PF delivery (stack not present) is #DF */
	machine_reset();
	set_gate(EXC_DF, STUBS + 16 * EXC_DF, 1, 0, true);
	map4k(KSTACK_TOP - 0x1000, KSTACK_TOP - 0x1000, 0);
	tlb_flush(C);
	C->r[R_RSP] = KSTACK_TOP - 0x800;
	k.n = 0;
	load_rax(&k, 0x10000000); /* not mapped: #PF, whose frame cannot be written */
	o = run_k(&k);
	ok(o.vector == EXC_DF && o.frame == IST1_TOP - 48, "double fault: #PF while delivering #PF is #DF");
	/* a benign exception during delivery is delivered, not doubled: #PF on
	 * the stack while delivering #BP */
	machine_reset();
	map4k(KSTACK_TOP - 0x1000, KSTACK_TOP - 0x1000, 0);
	set_gate(EXC_PF, STUBS + 16 * EXC_PF, 1, 0, true);
	tlb_flush(C);
	C->r[R_RSP] = KSTACK_TOP - 0x800;
	k.n = 0;
	B(&k, 1, 0xCC);
	o = run_k(&k);
	ok(o.vector == EXC_PF && (o.err & PF_W) && C->cr2 >= KSTACK_TOP - 0x1000 && C->cr2 < KSTACK_TOP - 0x800,
	   "exceptions: #PF while pushing the #BP frame is a plain #PF");
}

static void test_external_interrupt(void)
{
	machine_reset();
	struct code k = { 0 };
	B(&k, 1, 0xFB); /* sti */
	B(&k, 1, 0x90); /* nop: in the sti shadow */
	B(&k, 1, 0x90);
	B(&k, 1, 0xF4);
	pending_irq = 0x30;
	struct outcome o = run_k(&k);
	ok(o.vector == 0x30 && o.rip == KCODE + 2 && (o.rflags & F_IF), "intr: taken after the instruction that follows sti");
	machine_reset();
	C->rflags = 0x202;
	k.n = 0;
	B(&k, 1, 0xF4);
	o = run_k(&k);
	ok(o.stop == STOP_HLT && o.vector == -1, "intr: hlt with IF=1 and nothing pending returns STOP_HLT");
	pending_irq = 0x31;
	o.stop = cpu_run(C, 1000);
	ok(o.stop == STOP_HLT && C->rip == STUBS + 0x31 * 16 + 1 && rd64(C->r[R_RSP]) == KCODE + 1,
	   "intr: a pending interrupt wakes hlt; the frame returns past the hlt");
}

static void test_single_step(void)
{
	machine_reset();
	struct code k = { 0 };
	B(&k, 1, 0x68), imm32(&k, 0x202 | F_TF); /* push; popfq: TF from here */
	B(&k, 1, 0x9D);
	B(&k, 1, 0x90); /* the first instruction traced */
	B(&k, 1, 0x90);
	C->dr[6] = 0;
	struct outcome o = run_k(&k);
	ok(o.vector == EXC_DB && o.rip == KCODE + 7 && (o.rflags & F_TF) && !(C->rflags & F_TF) && (C->dr[6] & 1u << 14),
	   "single-step: #DB after the instruction that follows the popf, DR6.BS set, TF cleared for the handler");
	machine_reset();
	k.n = 0;
	B(&k, 1, 0x68), imm32(&k, 0x202 | F_TF);
	B(&k, 1, 0x9D);
	B(&k, 1, 0xCC); /* int3: the handler is not traced, no #DB after it */
	o = run_k(&k);
	ok(o.vector == EXC_BP && o.rip == KCODE + 7, "single-step: int3 with TF set gives #BP, no #DB");
	machine_reset();
	k.n = 0;
	movabs(&k, R_RCX, 3);
	movabs(&k, R_RSI, DATA);
	movabs(&k, R_RDI, DATA + 0x100);
	B(&k, 1, 0x68), imm32(&k, 0x202 | F_TF);
	B(&k, 1, 0x9D);
	B(&k, 2, 0xF3, 0xA4); /* rep movsb */
	o = run_k(&k);
	ok(o.vector == EXC_DB && o.rip == KCODE + 36 && C->r[R_RCX] == 2 && C->r[R_RDI] == DATA + 0x101,
	   "single-step: rep movsb traps after one iteration, RIP at the instruction");
}

/* ================= cpu_step_if ================= */

/* the filter of the cpu_step_if cases: no mov r/m64, r64 */
static bool allow_no_store(void *o, const struct insn *in)
{
	return !(in->map == 0 && in->op == 0x89);
}

static uint64_t abandon_read(void *o, uint64_t gpa, int size)
{
	cpu_abandon(C);
}

/* one instruction at KCODE through cpu_step_if; RAX, RBX, RSP and XMM0
 * preset */
static enum cpu_stop step_if(const struct code *k)
{
	struct insn in;

	load_at(KCODE, k, KCODE);
	C->r[R_RAX] = 0x1111;
	C->r[R_RBX] = 0x2222;
	C->r[R_RSP] = KSTACK_TOP - 0x800;
	C->cr2 = 0x77;
	memset(&C->fx.xmm[0], 0x5a, sizeof(C->fx.xmm[0]));
	return cpu_step_if(C, &in, allow_no_store, NULL);
}

/* what a cpu_step_if that did not run must leave: the preset state */
static bool step_if_untouched(void)
{
	uint8_t x[16];

	memset(x, 0x5a, sizeof(x));
	return C->rip == KCODE && C->r[R_RAX] == 0x1111 && C->r[R_RBX] == 0x2222 &&
	       C->r[R_RSP] == KSTACK_TOP - 0x800 && C->cr2 == 0x77 && !memcmp(&C->fx.xmm[0], x, sizeof(x));
}

static void test_step_if(void)
{
	struct code k = { 0 };

	machine_reset();
	B(&k, 3, 0x48, 0x01, 0xD8); /* add rax, rbx */
	ok(step_if(&k) == STOP_NONE && C->r[R_RAX] == 0x3333 && C->rip == KCODE + 3,
	   "cpu_step_if: an admitted instruction runs");
	k.n = 0;
	B(&k, 2, 0x48, 0x89), B(&k, 2, 0x04, 0x25), imm32(&k, DATA); /* mov [DATA], rax */
	wr64(DATA, 0);
	ok(step_if(&k) == STOP_REQUEST && step_if_untouched() && rd64(DATA) == 0,
	   "cpu_step_if: an instruction the filter refuses does not run");
	k.n = 0;
	B(&k, 2, 0x48, 0x8B), B(&k, 2, 0x04, 0x25), imm32(&k, 0x40000000); /* mov rax, [1 GiB]: #PF */
	ok(step_if(&k) == STOP_REQUEST && step_if_untouched() && rd64(KSTACK_TOP - 0x800 - 8) == 0,
	   "cpu_step_if: a #PF is not delivered (no frame pushed); registers and CR2 as before");
	k.n = 0;
	B(&k, 4, 0x66, 0x0F, 0x70, 0x04), B(&k, 1, 0x25), imm32(&k, 0x40000000), B(&k, 1, 0); /* pshufd xmm0, [1 GiB], 0 */
	ok(step_if(&k) == STOP_REQUEST && step_if_untouched(), "cpu_step_if: a faulting SSE load leaves XMM0 as it was");
	k.n = 0;
	B(&k, 2, 0x48, 0x8B), B(&k, 2, 0x1C, 0x25), imm32(&k, 0x3ff000); /* mov rbx, [RAM's last page] */
	map4k(0x3ff000, RAM_SIZE + 0x1000, PG_P | PG_W); /* past RAM: the bus */
	C->bus.mmio_read = abandon_read;
	tlb_flush(C);
	ok(step_if(&k) == STOP_REQUEST && step_if_untouched(), "cpu_step_if: an access the bus abandons does not run");
	k.n = 0;
	B(&k, 3, 0x48, 0x01, 0xD8);
	load_at(KCODE, &k, KCODE);
	C->rflags |= F_TF;
	struct insn in;
	ok(cpu_step_if(C, &in, allow_no_store, NULL) == STOP_REQUEST && C->rip == KCODE,
	   "cpu_step_if: nothing runs with RFLAGS.TF set");
	C->rflags &= ~(uint64_t)F_TF;
}

/* ================= syscall, sysret, iretq, swapgs ================= */

#define MSR_EFER 0xc0000080
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SFMASK 0xc0000084
#define MSR_FS_BASE 0xc0000100
#define MSR_GS_BASE 0xc0000101
#define MSR_KGS_BASE 0xc0000102
#define MSR_TSC_AUX 0xc0000103

static void setup_syscall(void)
{
	C->star = (uint64_t)SEL_UCODE32 << 48 | (uint64_t)SEL_KCODE << 32;
	C->lstar = KCODE + 0x400;
	C->sfmask = F_IF | F_DF | F_TF | F_AC | F_NT;
}

static void test_syscall(void)
{
	machine_reset();
	setup_syscall();
	ram[KCODE + 0x400] = 0xF4;
	struct code k = { 0 };
	B(&k, 2, 0x0F, 0x05); /* syscall */
	B(&k, 1, 0xF4);
	enter_cpl(3);
	C->rflags = 0x202 | F_DF | F_CF;
	struct outcome o = run_at(UCODE, &k, UCODE);
	ok(o.vector == -1 && o.at == KCODE + 0x400 && C->cpl == 0, "syscall: to LSTAR at CPL 0");
	ok(C->r[R_RCX] == UCODE + 2 && C->r[R_R11] == (0x202 | F_DF | F_CF), "syscall: RCX = next RIP, R11 = RFLAGS");
	ok(C->rflags == (2 | F_CF), "syscall: RFLAGS masked by SFMASK");
	ok(C->seg[S_CS].sel == SEL_KCODE && C->seg[S_SS].sel == SEL_KDATA && C->mode == 64,
	   "syscall: CS = STAR[47:32], SS = CS + 8");

	/* sysretq back to CPL 3 */
	machine_reset();
	setup_syscall();
	k.n = 0;
	movabs(&k, R_RCX, UCODE + 0x20);
	movabs(&k, R_R11, 0x202 | F_OF | F_RF | F_VM);
	B(&k, 3, 0x48, 0x0F, 0x07); /* sysretq */
	ram[UCODE + 0x20] = 0x90;
	ram[UCODE + 0x21] = 0xF4; /* hlt at CPL 3: #GP */
	o = run_k(&k);
	ok(o.vector == EXC_GP && o.rip == UCODE + 0x21 && o.cs == (SEL_UCODE | 3u) && o.ss == (SEL_UDATA | 3u),
	   "sysretq: to RCX at CPL 3 with CS = STAR[63:48] + 16, SS = STAR[63:48] + 8");
	ok((o.rflags & (F_OF | F_RF | F_VM)) == F_OF && (o.rflags & F_IF), "sysretq: RFLAGS from R11 (RF, VM cleared)");
	/* sysret (32-bit) */
	machine_reset();
	setup_syscall();
	k.n = 0;
	movabs(&k, R_RCX, 0xffffffff00000000ull | (UCODE + 0x20));
	movabs(&k, R_R11, 0x202);
	B(&k, 2, 0x0F, 0x07);
	ram[UCODE + 0x20] = 0x90;
	ram[UCODE + 0x21] = 0xF4;
	o = run_k(&k);
	ok(o.vector == EXC_GP && o.cs == (SEL_UCODE32 | 3u) && o.rip == UCODE + 0x21,
	   "sysretl: to compatibility mode, CS = STAR[63:48], EIP = ECX");
	/* sysretq with a non-canonical RCX: #GP at CPL 0 */
	machine_reset();
	setup_syscall();
	k.n = 0;
	movabs(&k, R_RCX, 0x0000800000000000ull);
	movabs(&k, R_R11, 0x202);
	B(&k, 3, 0x48, 0x0F, 0x07);
	o = run_k(&k);
	ok(o.vector == EXC_GP && o.cs == SEL_KCODE && o.rip == KCODE + 20, "sysretq: non-canonical RCX is #GP(0) at CPL 0");
	/* syscall with EFER.SCE clear: #UD; sysret from CPL 3: #GP */
	machine_reset();
	setup_syscall();
	C->efer &= ~(uint64_t)EFER_SCE;
	k.n = 0;
	B(&k, 2, 0x0F, 0x05);
	o = run_u(&k);
	ok(o.vector == EXC_UD && o.rip == UCODE, "syscall: EFER.SCE clear is #UD");
	machine_reset();
	setup_syscall();
	k.n = 0;
	B(&k, 3, 0x48, 0x0F, 0x07);
	o = run_u(&k);
	ok(o.vector == EXC_GP && o.err == 0 && o.rip == UCODE, "sysret: from CPL 3 is #GP(0)");
}

static void test_iret_swapgs(void)
{
	machine_reset();
	struct code k = { 0 };
	/* iretq to CPL 3 through a frame on the kernel stack */
	B(&k, 2, 0x6A, SEL_UDATA); /* push ss */
	B(&k, 1, 0x68), imm32(&k, USTACK_TOP - 0x40);
	B(&k, 1, 0x68), imm32(&k, 0x202 | F_CF | F_IOPL | F_VIF); /* IOPL, VIF: loaded at CPL 0 */
	B(&k, 2, 0x6A, SEL_UCODE);
	B(&k, 1, 0x68), imm32(&k, UCODE + 0x10);
	B(&k, 2, 0x48, 0xCF);
	ram[UCODE + 0x10] = 0xF4; /* #GP at CPL 3 */
	struct outcome o = run_k(&k);
	ok(o.vector == EXC_GP && o.rip == UCODE + 0x10 && o.cs == (SEL_UCODE | 3u) && o.rsp == USTACK_TOP - 0x40 &&
		   o.ss == (SEL_UDATA | 3u),
	   "iretq: to CPL 3 with the frame's RIP, CS, RSP, SS");
	ok((o.rflags & (F_CF | F_IOPL | F_VIF | F_IF)) == (F_CF | F_IOPL | F_VIF | F_IF), "iretq: RFLAGS from the frame (from CPL 0: IOPL, VIF too)");
	/* iretq from CPL 3 to CPL 3 may not raise IOPL nor set VIF */
	machine_reset();
	k.n = 0;
	B(&k, 2, 0x6A, SEL_UDATA);
	B(&k, 1, 0x68), imm32(&k, USTACK_TOP - 0x80);
	B(&k, 1, 0x68), imm32(&k, 0x202 | F_IOPL | F_VIF | F_VIP);
	B(&k, 2, 0x6A, SEL_UCODE);
	B(&k, 1, 0x68), imm32(&k, UCODE + 0x80);
	B(&k, 2, 0x48, 0xCF);
	ram[UCODE + 0x80] = 0xF4;
	o = run_u(&k);
	ok(o.vector == EXC_GP && o.rip == UCODE + 0x80 && !(o.rflags & (F_IOPL | F_VIF | F_VIP)),
	   "iretq: at CPL 3, IOPL, VIF and VIP stay");
	/* iretq with NT set: #GP */
	machine_reset();
	C->rflags = 2 | F_NT;
	k.n = 0;
	B(&k, 2, 0x48, 0xCF);
	o = run_k(&k);
	ok(o.vector == EXC_GP && o.rip == KCODE, "iretq: with RFLAGS.NT is #GP(0)");

	/* swapgs */
	machine_reset();
	k.n = 0;
	wrmsr(&k, MSR_GS_BASE, 0x1111000);
	wrmsr(&k, MSR_KGS_BASE, 0x2222000);
	B(&k, 3, 0x0F, 0x01, 0xF8); /* swapgs */
	rdmsr(&k, MSR_GS_BASE);
	B(&k, 3, 0x48, 0x89, 0xC3); /* mov rbx, rax */
	rdmsr(&k, MSR_KGS_BASE);
	B(&k, 1, 0xF4);
	o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RBX] == 0x2222000 && C->r[R_RAX] == 0x1111000 && C->seg[S_GS].base == 0x2222000,
	   "swapgs: exchanges GS.base and KERNEL_GS_BASE");
	k.n = 0;
	B(&k, 3, 0x0F, 0x01, 0xF8);
	o = run_u(&k);
	ok(o.vector == EXC_GP && o.err == 0 && o.rip == UCODE, "swapgs: at CPL 3 is #GP(0)");
	/* gs: uses the base */
	machine_reset();
	wr64(DATA + 0x40, 0x7777);
	k.n = 0;
	wrmsr(&k, MSR_GS_BASE, DATA);
	B(&k, 9, 0x65, 0x48, 0x8B, 0x04, 0x25, 0x40, 0, 0, 0); /* mov rax, gs:[0x40] */
	B(&k, 1, 0xF4);
	o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RAX] == 0x7777, "wrmsr GS_BASE: gs: addressing uses it");
}

/* ================= MSRs, control registers ================= */

static struct outcome msr_roundtrip(uint32_t msr, uint64_t v, uint64_t *back)
{
	machine_reset();
	struct code k = { 0 };
	wrmsr(&k, msr, v);
	rdmsr(&k, msr);
	B(&k, 1, 0xF4);
	struct outcome o = run_k(&k);
	*back = (uint32_t)C->r[R_RAX] | C->r[R_RDX] << 32;
	return o;
}

static void test_msrs(void)
{
	static const struct {
		uint32_t msr;
		uint64_t v;
	} rt[] = {
		{ MSR_STAR, 0x0023001000000000ull }, { MSR_LSTAR, 0xffffffff81000000ull }, { MSR_CSTAR, 0x12345000 },
		{ MSR_FS_BASE, 0x00007f0000001000ull }, { MSR_GS_BASE, 0xffff888000000000ull },
		{ MSR_KGS_BASE, 0x1000 }, { MSR_TSC_AUX, 7 }, { 0x277, 0x0007040600070406ull },
		{ 0x174, 0x10 }, { 0x175, 0xffffc90000000000ull }, { 0x176, 0xffffffff81800000ull },
		{ 0x1a0, 1 }, { MSR_EFER, EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE },
	};
	for (size_t i = 0; i < sizeof(rt) / sizeof(rt[0]); i++) {
		uint64_t back;
		struct outcome o = msr_roundtrip(rt[i].msr, rt[i].v, &back);
		ok(o.vector == -1 && back == rt[i].v, "msr %#x: wrmsr then rdmsr gives %#" PRIx64, rt[i].msr, rt[i].v);
	}
	uint64_t back;
	struct outcome o = msr_roundtrip(MSR_SFMASK, 0xffffffff00047700ull, &back);
	ok(o.vector == -1 && back == 0x47700, "msr SFMASK: the upper half reads as zero");
	o = msr_roundtrip(MSR_FS_BASE, 0x00007f0000002000ull, &back);
	ok(C->seg[S_FS].base == 0x00007f0000002000ull, "msr FS_BASE: is the FS base");
	static const struct {
		const char *what;
		uint32_t msr;
		uint64_t v;
	} bad[] = {
		{ "an unknown MSR", 0x12345678, 0 },
		{ "a non-canonical LSTAR", MSR_LSTAR, 0x0000800000000000ull },
		{ "a non-canonical GS_BASE", MSR_GS_BASE, 0x8000000000000000ull },
		{ "TSC_AUX above 32 bits", MSR_TSC_AUX, 1ull << 32 },
		{ "a PAT with memory type 2", 0x277, 0x0007040600070402ull },
		{ "a reserved EFER bit", MSR_EFER, EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE | (1ull << 20) },
		{ "EFER.LME cleared while paging", MSR_EFER, EFER_SCE | EFER_NXE },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		machine_reset();
		struct code k = { 0 };
		wrmsr(&k, bad[i].msr, bad[i].v);
		B(&k, 1, 0xF4);
		o = run_k(&k);
		ok(o.vector == EXC_GP && o.err == 0 && o.rip == KCODE + 30, "msr: wrmsr of %s is #GP(0)", bad[i].what);
	}
	machine_reset();
	struct code k = { 0 };
	rdmsr(&k, 0x12345678);
	o = run_k(&k);
	ok(o.vector == EXC_GP && o.rip == KCODE + 10, "msr: rdmsr of an unknown MSR is #GP(0)");
	k.n = 0;
	rdmsr(&k, MSR_EFER);
	o = run_u(&k);
	ok(o.vector == EXC_GP && o.rip == UCODE + 10, "msr: rdmsr at CPL 3 is #GP(0)");
	machine_reset();
	k.n = 0;
	rdmsr(&k, 0x10);
	B(&k, 1, 0xF4);
	o = run_k(&k);
	ok(o.vector == -1 && ((uint32_t)C->r[R_RAX] | C->r[R_RDX] << 32) != 0, "msr: TSC (0x10) reads the bus clock");
}

/* mov crN, rax with rax = v; returns the outcome */
static struct outcome mov_to_cr(int cr, uint64_t v)
{
	machine_reset();
	struct code k = { 0 };
	movabs(&k, R_RAX, v);
	B(&k, 3, 0x0F, 0x22, 0xC0 | cr << 3);
	B(&k, 1, 0xF4);
	return run_k(&k);
}

static void test_crs(void)
{
	uint64_t cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG;
	uint64_t cr4 = CR4_PAE | CR4_PGE | CR4_OSFXSR | CR4_OSXMMEXCPT;
	struct {
		const char *what;
		int cr;
		uint64_t v;
		bool gp;
	} t[] = {
		{ "CR0 unchanged", 0, cr0, false },
		{ "CR0 with TS", 0, cr0 | CR0_TS, false },
		{ "CR0 with bit 32", 0, cr0 | (1ull << 32), true },
		{ "CR0 PG without PE", 0, cr0 & ~(uint64_t)CR0_PE, true },
		{ "CR0 NW without CD", 0, cr0 | CR0_NW, true },
		{ "CR0 clearing PG in 64-bit mode", 0, cr0 & ~(uint64_t)CR0_PG, true },
		{ "CR4 unchanged", 4, cr4, false },
		{ "CR4 clearing PAE in long mode", 4, cr4 & ~(uint64_t)CR4_PAE, true },
		{ "CR4 with a reserved bit (31)", 4, cr4 | (1ull << 31), true },
		{ "CR4 with PCIDE (not advertised)", 4, cr4 | (1ull << 17), true },
		{ "CR3 with bit 63 (no PCID)", 3, PML4 | (1ull << 63), false },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct outcome o = mov_to_cr(t[i].cr, t[i].v);
		if (t[i].gp)
			ok(o.vector == EXC_GP && o.err == 0 && o.rip == KCODE + 10, "cr: mov %s is #GP(0)", t[i].what);
		else
			ok(o.vector == -1, "cr: mov %s is accepted", t[i].what);
	}
	machine_reset();
	struct code k = { 0 };
	movabs(&k, R_RAX, PML4 | 0x18);
	B(&k, 3, 0x0F, 0x22, 0xD8); /* mov cr3, rax */
	B(&k, 3, 0x0F, 0x20, 0xD9); /* mov rcx, cr3 */
	B(&k, 3, 0x0F, 0x20, 0xC2); /* mov rdx, cr0 */
	B(&k, 3, 0x0F, 0x20, 0xE3); /* mov rbx, cr4 */
	B(&k, 1, 0xF4);
	struct outcome o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RCX] == (PML4 | 0x18) && C->r[R_RDX] == cr0 && C->r[R_RBX] == cr4,
	   "cr: mov from CR3, CR0, CR4 gives what was loaded");
	machine_reset();
	k.n = 0;
	load_rax(&k, 0x30000000);
	o = run_k(&k);
	enter_cpl(0);
	k.n = 0;
	B(&k, 3, 0x0F, 0x20, 0xD0); /* mov rax, cr2 */
	B(&k, 1, 0xF4);
	o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RAX] == 0x30000000, "cr: mov from CR2 after a #PF gives the address");
	machine_reset();
	k.n = 0;
	B(&k, 3, 0x0F, 0x20, 0xC0);
	o = run_u(&k);
	ok(o.vector == EXC_GP && o.rip == UCODE, "cr: mov from CR0 at CPL 3 is #GP(0)");
	k.n = 0;
	B(&k, 3, 0x0F, 0x22, 0xD8);
	o = run_u(&k);
	ok(o.vector == EXC_GP && o.rip == UCODE, "cr: mov to CR3 at CPL 3 is #GP(0)");
	machine_reset();
	k.n = 0;
	B(&k, 3, 0x0F, 0x20, 0xC8); /* mov rax, cr1 */
	o = run_k(&k);
	ok(o.vector == EXC_UD, "cr: CR1 is #UD");
}

/* ================= far transfers, CPUID ================= */

static void test_far(void)
{
	/* call far m16:64 (REX.W, Intel's form) and retfq */
	machine_reset();
	wr64(DATA, KCODE + 0x100);
	wr64(DATA + 8, SEL_KCODE);
	ram[KCODE + 0x100] = 0xF4;
	struct code k = { 0 };
	movabs(&k, R_RBX, DATA);
	B(&k, 3, 0x48, 0xFF, 0x1B); /* call far [rbx] */
	B(&k, 1, 0xF4);
	uint64_t rsp = C->r[R_RSP];
	struct outcome o = run_k(&k);
	ok(o.vector == -1 && o.at == KCODE + 0x100 && C->r[R_RSP] == rsp - 16 && rd64(rsp - 8) == SEL_KCODE &&
		   rd64(rsp - 16) == KCODE + 13,
	   "far: call far m16:64 pushes CS and RIP as 8 bytes each");
	ram[KCODE + 0x100] = 0x48;
	ram[KCODE + 0x101] = 0xCB; /* retfq */
	enter_cpl(0);
	o = run_k(&k);
	ok(o.vector == -1 && o.at == KCODE + 13 && C->r[R_RSP] == rsp, "far: retfq returns");
	/* jmp far m16:64 to a target above 4 GiB */
	machine_reset();
	map4k(0x123400000000ull, KCODE + 0x1000, PG_P | PG_W);
	ram[KCODE + 0x1000 + 0x80] = 0xF4;
	wr64(DATA, 0x123400000080ull);
	wr64(DATA + 8, SEL_KCODE);
	k.n = 0;
	movabs(&k, R_RBX, DATA);
	B(&k, 3, 0x48, 0xFF, 0x2B); /* jmp far [rbx] */
	o = run_k(&k);
	ok(o.vector == -1 && o.at == 0x123400000080ull, "far: jmp far m16:64 to a 64-bit offset");
	/* call far m16:32 */
	machine_reset();
	wr64(DATA, (uint64_t)SEL_KCODE << 32 | (KCODE + 0x100));
	ram[KCODE + 0x100] = 0xF4;
	k.n = 0;
	movabs(&k, R_RBX, DATA);
	B(&k, 2, 0xFF, 0x1B);
	rsp = C->r[R_RSP];
	o = run_k(&k);
	ok(o.vector == -1 && o.at == KCODE + 0x100 && C->r[R_RSP] == rsp - 8 && (uint32_t)rd64(rsp - 8) == KCODE + 12 &&
		   (uint16_t)rd64(rsp - 4) == SEL_KCODE,
	   "far: call far m16:32 pushes CS and EIP as 4 bytes each");
}

static void test_cpuid(void)
{
	struct cpuid_result r;
	cpuid_query(PERSONALITY_KVM, 0, 0, 0, &r);
	char vendor[13];
	memcpy(vendor, &r.ebx, 4);
	memcpy(vendor + 4, &r.edx, 4);
	memcpy(vendor + 8, &r.ecx, 4);
	vendor[12] = 0;
	ok(!strcmp(vendor, "GenuineIntel") && r.eax >= 1, "cpuid 0: GenuineIntel, max basic leaf %u", r.eax);
	uint32_t max = r.eax;
	cpuid_query(PERSONALITY_KVM, 3, 1, 0, &r);
	uint32_t need = 1u << 0 | 1u << 3 | 1u << 5 | 1u << 6 | 1u << 8 | 1u << 13 | 1u << 15 | 1u << 24 | 1u << 25 | 1u << 26;
	ok((r.edx & need) == need, "cpuid 1: EDX has FPU PSE MSR PAE CX8 PGE CMOV FXSR SSE SSE2");
	ok((r.eax >> 8 & 0xf) == 6 && (r.ebx >> 24) == 3, "cpuid 1: family 6, APIC ID from the vCPU index");
	ok(!(r.ecx & (1u << 22 | 1u << 30 | 1u << 26)), "cpuid 1: no MOVBE, RDRAND, XSAVE (not implemented)");
	cpuid_query(PERSONALITY_KVM, 0, 7, 0, &r);
	ok(!(r.ebx & (1u << 3 | 1u << 8 | 1u << 5)), "cpuid 7: no BMI1, BMI2, AVX2 (tzcnt and lzcnt run as bsf and bsr)");
	cpuid_query(PERSONALITY_KVM, 0, 0x80000000, 0, &r);
	ok(r.eax >= 0x80000008, "cpuid 0x80000000: max extended leaf %#x", r.eax);
	cpuid_query(PERSONALITY_KVM, 0, 0x80000001, 0, &r);
	ok((r.edx & (1u << 29 | 1u << 20 | 1u << 11)) == (1u << 29 | 1u << 20 | 1u << 11) && !(r.ecx & (1u << 5)),
	   "cpuid 0x80000001: LM, NX, SYSCALL; no LZCNT (ABM)");
	cpuid_query(PERSONALITY_KVM, 0, 0x80000008, 0, &r);
	ok((r.eax & 0xff) == 40 && (r.eax >> 8 & 0xff) == 48, "cpuid 0x80000008: 40 physical, 48 linear address bits");
	cpuid_query(PERSONALITY_KVM, 0, 0x3, 0, &r);
	ok(!r.eax && !r.ebx && !r.ecx && !r.edx, "cpuid: an unimplemented leaf below the maximum reads 0");
	/* SDM vol. 2A, CPUID: above the highest basic or extended leaf, the
	 * highest basic leaf's data is returned */
	struct cpuid_result top, past;
	cpuid_query(PERSONALITY_KVM, 0, max, 0, &top);
	cpuid_query(PERSONALITY_KVM, 0, max + 1, 0, &past);
	bool same = !memcmp(&top, &past, sizeof(top));
	cpuid_query(PERSONALITY_KVM, 0, 0x80000100, 0, &past);
	same = same && !memcmp(&top, &past, sizeof(top));
	ok(same, "cpuid: leaves past the maximum return the highest basic leaf");
	/* the instruction gives what cpuid_query says */
	machine_reset();
	struct code k = { 0 };
	movabs(&k, R_RAX, 1);
	movabs(&k, R_RCX, 0);
	B(&k, 2, 0x0F, 0xA2);
	B(&k, 1, 0xF4);
	struct outcome o = run_k(&k);
	cpuid_query(PERSONALITY_KVM, 0, 1, 0, &r);
	ok(o.vector == -1 && C->r[R_RAX] == r.eax && C->r[R_RBX] == r.ebx && C->r[R_RCX] == r.ecx && C->r[R_RDX] == r.edx,
	   "cpuid: the instruction returns the model's leaf 1");
	/* instructions the model does not advertise are #UD */
	static const struct {
		const char *what;
		uint8_t n, b[6];
	} ud[] = {
		{ "movbe", 5, { 0x0F, 0x38, 0xF0, 0x04, 0x24 } },
		{ "rdrand", 3, { 0x0F, 0xC7, 0xF0 } },
		{ "andn (VEX)", 5, { 0xC4, 0xE2, 0x78, 0xF2, 0xC0 } },
		{ "xsave without OSXSAVE", 4, { 0x0F, 0xAE, 0x20, 0x90 } },
	};
	for (size_t i = 0; i < sizeof(ud) / sizeof(ud[0]); i++) {
		machine_reset();
		k.n = 0;
		memcpy(k.b, ud[i].b, ud[i].n);
		k.n = ud[i].n;
		B(&k, 1, 0xF4);
		o = run_k(&k);
		ok(o.vector == EXC_UD && o.rip == KCODE, "cpuid model: %s is #UD", ud[i].what);
	}
}

/* Random bytes as code, at CPL 0 and CPL 3: whatever they are, the engine
 * must come back (an exception through the IDT, a hlt, the budget, or a
 * triple fault when the code wrecked its own tables) without crashing or
 * touching memory outside the guest. Undefined opcodes must show up as #UD. */
static void test_random_bytes(void)
{
	unsigned seed = 12345;
	for (int cpl = 0; cpl <= 3; cpl += 3) {
		int cases = 3000, sane = 0, ud = 0, exc = 0;
		for (int i = 0; i < cases; i++) {
			machine_reset();
			struct code k = { 0 };
			for (int j = 0; j < 24; j++)
				k.b[k.n++] = (uint8_t)(rand_r(&seed) >> 7);
			B(&k, 4, 0xF4, 0xF4, 0xF4, 0xF4);
			struct outcome o = cpl ? run_u(&k) : run_k(&k);
			bool ok_stop = o.stop == STOP_HLT || o.stop == STOP_BUDGET || o.stop == STOP_SHUTDOWN;
			sane += ok_stop;
			ud += o.vector == EXC_UD;
			exc += o.vector >= 0;
		}
		ok(sane == cases, "random code at CPL %d: %d of %d runs came back with an architectural outcome",
		   cpl, sane, cases);
		ok(ud > cases / 50 && exc > cases / 4,
		   "random code at CPL %d: %d exceptions, %d of them #UD", cpl, exc, ud);
	}
}

/* Self-modifying code: a store into the running block ends it and the
 * bytes are decoded again, in straight-line code and in a loop that patches
 * its own immediate (the block cache re-runs an unpatched loop unchecked). */
static void test_smc(void)
{
	machine_reset();
	struct code k = { 0 };
	/* mov byte [KCODE + 9], 0x2a; mov al, 0; hlt: the store patches the
	 * next instruction's immediate */
	B(&k, 3, 0xC6, 0x04, 0x25);
	imm32(&k, (uint32_t)KCODE + 9);
	B(&k, 1, 0x2a);
	B(&k, 2, 0xB0, 0x00);
	B(&k, 1, 0xF4);
	struct outcome o = run_k(&k);
	ok(o.vector == -1 && (C->r[R_RAX] & 0xff) == 0x2a, "smc: a store patches the next instruction");

	k.n = 0;
	B(&k, 2, 0x31, 0xDB); /* xor ebx, ebx */
	B(&k, 2, 0x31, 0xC9); /* xor ecx, ecx */
	B(&k, 1, 0xB8);       /* 4: mov eax, imm32 (patched below) */
	imm32(&k, 0);
	B(&k, 2, 0x01, 0xC3); /* add ebx, eax */
	B(&k, 2, 0xFF, 0xC1); /* inc ecx */
	B(&k, 3, 0x89, 0x0C, 0x25); /* mov [KCODE + 5], ecx */
	imm32(&k, (uint32_t)KCODE + 5);
	B(&k, 3, 0x83, 0xF9, 0x05); /* cmp ecx, 5 */
	B(&k, 2, 0x75, (uint8_t)(4 - (k.n + 2))); /* jne 4 */
	B(&k, 1, 0xF4);
	o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RBX] == 0 + 1 + 2 + 3 + 4, "smc: a loop sees the immediate it patches in itself");

	/* the same loop with the patch done from another page: the loop's
	 * block is re-run after a store elsewhere, then patched from here */
	k.n = 0;
	B(&k, 2, 0x31, 0xDB); /* xor ebx, ebx */
	B(&k, 2, 0x31, 0xC9); /* xor ecx, ecx */
	B(&k, 1, 0xB8);       /* 4: mov eax, imm32 */
	imm32(&k, 7);
	B(&k, 2, 0x01, 0xC3); /* add ebx, eax */
	B(&k, 2, 0xFF, 0xC1); /* inc ecx */
	B(&k, 3, 0x89, 0x0C, 0x25); /* mov [DATA], ecx: not a code page */
	imm32(&k, (uint32_t)DATA);
	B(&k, 3, 0x83, 0xF9, 0x03); /* cmp ecx, 3 */
	B(&k, 2, 0x75, (uint8_t)(4 - (k.n + 2))); /* jne 4 */
	B(&k, 1, 0xF4);
	o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RBX] == 21, "smc: a loop storing to data runs its cached block");
	k.b[5] = 1;
	o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RBX] == 3, "smc: code changed between runs is decoded again");
}

/* Host code made from a block (src/cpu/jit.c) belongs to the physical
 * bytes, which may be mapped at several linear addresses: a loop that sums
 * an array, with a RIP-relative lea and a branch back to its start, gives
 * the same sums and addresses of its own at either mapping. Its first
 * accesses miss the TLB (a side exit to the handlers), later ones hit. */
static void test_jit_alias(void)
{
	const uint64_t alias = 0x200000000ull;
	machine_reset();
	map4k(alias, KCODE, PG_P);
	for (int i = 0; i < 100; i++) {
		uint32_t v = 3 * i;
		memcpy(ram + DATA + 4 * i, &v, 4);
	}
	struct code k = { 0 };
	movabs(&k, R_RSI, DATA);
	B(&k, 2, 0x31, 0xC0);                         /* xor eax, eax */
	B(&k, 2, 0x31, 0xC9);                         /* xor ecx, ecx */
	B(&k, 3, 0x48, 0x8D, 0x1D);                   /* lea rbx, [rip + 0]: top */
	imm32(&k, 0);
	int top = k.n;
	B(&k, 2, 0x01, 0xC8);                         /* top: add eax, ecx */
	B(&k, 3, 0x03, 0x04, 0x8E);                   /* add eax, [rsi + rcx * 4] */
	B(&k, 2, 0xFF, 0xC1);                         /* inc ecx */
	B(&k, 3, 0x83, 0xF9, 100);                    /* cmp ecx, 100 */
	B(&k, 2, 0x75, (uint8_t)(top - (k.n + 2)));   /* jne top */
	B(&k, 1, 0xF4);
	const uint64_t base[2] = { KCODE, alias };
	for (int i = 0; i < 2; i++) {
		tlb_flush(C);
		struct outcome o = run_at(KCODE, &k, base[i]);
		ok(o.vector == -1 && C->r[R_RAX] == 4 * 4950 && C->r[R_RBX] == base[i] + top &&
			   o.at == base[i] + k.n - 1,
		   "jit: a loop over memory at %s", i ? "a second mapping of its code" : "its first mapping");
	}
}

/* Host code of one block jumps straight into the next block's once linked
 * (jit.c jit_link); the link checks the next block's epoch, the budget and
 * pending events on every hop. A loop over two blocks A and B, chained to
 * each other: A patches the immediate of B's first instruction in its
 * third round (a store into a code page), and B must add the new value
 * from then on. Then the code is run again after the test has written B
 * (as a device or the VMM would) while the link A -> B stands. */
static void test_jit_chain_smc(void)
{
	machine_reset();
	struct code k = { 0 };
	B(&k, 2, 0x31, 0xDB);                         /* xor ebx, ebx */
	B(&k, 2, 0x31, 0xC9);                         /* xor ecx, ecx */
	B(&k, 2, 0x31, 0xD2);                         /* xor edx, edx */
	int a = k.n;
	B(&k, 2, 0xFF, 0xC1);                         /* A: inc ecx */
	B(&k, 3, 0x83, 0xC2, 0x01);                   /* add edx, 1 */
	B(&k, 3, 0x83, 0xF9, 0x03);                   /* cmp ecx, 3 */
	B(&k, 2, 0x75, 9);                            /* jne B */
	B(&k, 2, 0xC6, 0x05);                         /* mov byte [rip + B + 1], 10 */
	imm32(&k, 3);
	B(&k, 1, 10);
	B(&k, 2, 0xEB, 0);                            /* jmp B */
	int b = k.n;
	B(&k, 1, 0xB8);                               /* B: mov eax, 1 */
	imm32(&k, 1);
	B(&k, 2, 0x01, 0xC3);                         /* add ebx, eax */
	B(&k, 3, 0x83, 0xC2, 0x00);                   /* add edx, 0 */
	B(&k, 3, 0x83, 0xF9, 0x06);                   /* cmp ecx, 6 */
	B(&k, 2, 0x75, (uint8_t)(a - (k.n + 2)));     /* jne A */
	B(&k, 1, 0xF4);
	if (b != a + 19)
		abort();
	struct outcome o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RBX] == 2 + 4 * 10 && C->r[R_RDX] == 6,
	   "jit chain: a store into the next block's code is seen through the link (rbx %" PRIu64 ")",
	   C->r[R_RBX]);
	/* the second run starts with the patched byte; then B's immediate
	 * is written from outside between runs */
	k.b[b + 1] = 10;
	o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RBX] == 60, "jit chain: the same code again (rbx %" PRIu64 ")", C->r[R_RBX]);
	ram[KCODE + b + 1] = 7;
	o = run_at(KCODE, &(struct code){ 0 }, KCODE);
	ok(o.vector == -1 && C->r[R_RBX] == 2 * 7 + 4 * 10,
	   "jit chain: a block written from outside while linked to is decoded again (rbx %" PRIu64 ")",
	   C->r[R_RBX]);
}

static void *raise_irq(void *arg)
{
	struct timespec ts = { 0, 20 * 1000 * 1000 };
	nanosleep(&ts, NULL);
	pending_irq = 0x30;
	__atomic_store_n(&C->intr_poke, 1, __ATOMIC_SEQ_CST);
	return arg;
}

/* An interrupt raised (by another thread, as devices do) while two blocks
 * run around in host code, linked to each other, is taken at a hop; and a
 * loop without interrupts stops at the end of its budget. */
static void test_jit_chain_intr(void)
{
	machine_reset();
	struct code k = { 0 };
	int a = k.n;
	B(&k, 3, 0x83, 0xC0, 0x01);                   /* A: add eax, 1 */
	B(&k, 3, 0x83, 0xC3, 0x02);                   /* add ebx, 2 */
	B(&k, 3, 0x83, 0xC1, 0x03);                   /* add ecx, 3 */
	B(&k, 2, 0xEB, 0);                            /* jmp B */
	B(&k, 3, 0x83, 0xC2, 0x01);                   /* B: add edx, 1 */
	B(&k, 3, 0x83, 0xC6, 0x01);                   /* add esi, 1 */
	B(&k, 3, 0x83, 0xC7, 0x01);                   /* add edi, 1 */
	B(&k, 2, 0xEB, (uint8_t)(a - (k.n + 2)));     /* jmp A */
	load_at(KCODE, &k, KCODE);
	C->rflags = 0x202;
	/* a loop that never stops fails the test rather than hang it */
	alarm(120);
	enum cpu_stop stop = cpu_run(C, 1000000);
	ok(stop == STOP_BUDGET && C->icount >= 1000000 && C->r[R_RAX] + C->r[R_RDX] > 1000,
	   "jit chain: a loop over linked blocks ends with its budget");
	pthread_t t;
	pthread_create(&t, NULL, raise_irq, NULL);
	stop = cpu_run(C, 20000000000ull);
	pthread_join(t, NULL);
	alarm(0);
	ok(stop == STOP_HLT && C->rip == STUBS + 0x30 * 16 + 1 && rd64(C->r[R_RSP]) >= KCODE &&
		   rd64(C->r[R_RSP]) < KCODE + (uint64_t)k.n,
	   "jit chain: an interrupt raised while linked blocks loop is taken");
}

/* The code page KCODE mapped at two linear addresses, ALIAS1 and ALIAS2,
 * the page after each mapping next1 and next2 (after a machine reset):
 * the same code reaching a different page at each of its mappings. */
#define ALIAS1 0x300000000ull
#define ALIAS2 0x300010000ull
static void map_code_twice(uint64_t next1, uint64_t next2)
{
	machine_reset();
	map4k(ALIAS1, KCODE, PG_P);
	map4k(ALIAS1 + 0x1000, next1, PG_P);
	map4k(ALIAS2, KCODE, PG_P);
	map4k(ALIAS2 + 0x1000, next2, PG_P);
}

/* Near calls, rets and jmps out of the page end a run of host code; a
 * link from a call or jmp into another page also checks that the TLB
 * still maps the target where it did. One code page X is mapped at two
 * linear addresses, and the page after each maps a different function:
 * the same call in X must reach the function at its own mapping, in one
 * run (no serializing instruction between the two). */
static void test_jit_call_alias(void)
{
	const uint64_t a1 = ALIAS1, a2 = ALIAS2;
	const uint64_t f1 = KCODE + 0x1000, f2 = DATA + 0x10000;
	map_code_twice(f1, f2);
	const uint8_t fn1[] = { 0xB8, 1, 0, 0, 0, 0xC3 }, fn2[] = { 0xB8, 2, 0, 0, 0, 0xC3 };
	memcpy(ram + f1, fn1, sizeof(fn1));
	memcpy(ram + f2, fn2, sizeof(fn2));
	struct code k = { 0 };
	movabs(&k, R_R8, a1 ^ a2);
	B(&k, 2, 0x31, 0xDB);                         /* xor ebx, ebx */
	B(&k, 2, 0x31, 0xC9);                         /* xor ecx, ecx */
	int top = k.n;
	B(&k, 1, 0xE8);                               /* top: call the next page */
	imm32(&k, (uint32_t)(0x1000 - (k.n + 4)));
	B(&k, 2, 0x01, 0xC3);                         /* add ebx, eax */
	B(&k, 2, 0xFF, 0xC1);                         /* inc ecx */
	B(&k, 3, 0x83, 0xF9, 0x06);                   /* cmp ecx, 6 */
	B(&k, 2, 0x74, 12);                           /* je done */
	B(&k, 3, 0x48, 0x8D, 0x15);                   /* lea rdx, [rip + top] */
	imm32(&k, (uint32_t)(top - (k.n + 4)));
	B(&k, 3, 0x4C, 0x31, 0xC2);                   /* xor rdx, r8: the other mapping */
	B(&k, 2, 0xFF, 0xE2);                         /* jmp rdx */
	B(&k, 1, 0xF4);                               /* done: hlt */
	struct outcome o = run_at(KCODE, &k, a1);
	ok(o.vector == -1 && C->r[R_RBX] == 3 * 1 + 3 * 2 && (o.at & 0xfff) == (uint64_t)k.n - 1,
	   "jit call: a call into the next page reaches the function mapped there at each mapping (rbx %" PRIu64 ")",
	   C->r[R_RBX]);
}

/* A ret goes where the stack says, not necessarily after its call; a
 * call whose return address straddles two pages, and a call instruction
 * that does, in a loop (the second round through linked code). */
static void test_jit_call_ret(void)
{
	machine_reset();
	struct code k = { 0 };
	B(&k, 2, 0x31, 0xDB);                         /* xor ebx, ebx */
	B(&k, 2, 0x31, 0xC9);                         /* xor ecx, ecx */
	int top = k.n;
	B(&k, 1, 0xE8);                               /* top: call f */
	int call = k.n;
	imm32(&k, 0);
	B(&k, 3, 0x83, 0xC3, 0x64);                   /* add ebx, 100: skipped by f's ret */
	B(&k, 3, 0x83, 0xC3, 0x01);                   /* add ebx, 1 */
	B(&k, 2, 0xFF, 0xC1);                         /* inc ecx */
	B(&k, 3, 0x83, 0xF9, 0x05);                   /* cmp ecx, 5 */
	B(&k, 2, 0x75, (uint8_t)(top - (k.n + 2)));   /* jne top */
	B(&k, 1, 0xF4);
	int f = k.n;
	B(&k, 5, 0x48, 0x83, 0x04, 0x24, 0x03);       /* f: add qword [rsp], 3 */
	B(&k, 2, 0x31, 0xC0);                         /* xor eax, eax */
	B(&k, 1, 0xC3);                               /* ret */
	uint32_t rel = (uint32_t)(f - (call + 4));
	memcpy(k.b + call, &rel, 4);
	struct outcome o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RBX] == 5, "jit ret: to the address on the stack, past its call's next instruction (rbx %" PRIu64 ")",
	   C->r[R_RBX]);
	/* the return address at 4 bytes below a page boundary: the push
	 * and the pop straddle two pages */
	C->r[R_RSP] = USTACK_TOP - 0x1000 + 4;
	o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RBX] == 5 && C->r[R_RSP] == USTACK_TOP - 0x1000 + 4,
	   "jit call: a return address across a page boundary");
	/* a call instruction across a page boundary, into a function in the
	 * first page */
	machine_reset();
	k.n = 0;
	B(&k, 2, 0x31, 0xDB);                         /* xor ebx, ebx */
	B(&k, 2, 0x31, 0xC9);                         /* xor ecx, ecx */
	B(&k, 1, 0xE9);                               /* jmp top */
	imm32(&k, (uint32_t)(0xffe - (k.n + 4)));
	f = k.n;
	B(&k, 3, 0x83, 0xC3, 0x07);                   /* f: add ebx, 7 */
	B(&k, 1, 0xC3);                               /* ret */
	while (k.n < 0xffe)
		B(&k, 1, 0x90);
	top = k.n;
	B(&k, 1, 0xE8);                               /* top: call f, at 0xffe of its page */
	imm32(&k, (uint32_t)(f - (k.n + 4)));
	B(&k, 2, 0xFF, 0xC1);                         /* inc ecx */
	B(&k, 3, 0x83, 0xF9, 0x04);                   /* cmp ecx, 4 */
	B(&k, 2, 0x75, (uint8_t)(top - (k.n + 2)));   /* jne top */
	B(&k, 1, 0xF4);
	if (top != 0xffe || k.n > (int)sizeof(k.b))
		abort();
	o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RBX] == 28 && o.at == KCODE + k.n - 1,
	   "jit call: a call instruction across a page boundary (rbx %" PRIu64 ")", C->r[R_RBX]);
}

/* A near ret in host code goes on into the code of the block at its
 * target through a jump cache indexed by the target's host address (jit.c
 * emit_ret_lookup), checked like a link. Two return sites, in two pages,
 * placed so that their host addresses share a slot of the cache: each
 * ret must land at its own site, not at the one the slot held last. */
static void test_jit_ret_cache(void)
{
	machine_reset();
	struct code k = { 0 };
	uint64_t page = (uint64_t)(uintptr_t)(ram + KCODE) >> 12;
	int pad = 0, offb;
	/* site A at KCODE + 13 + pad; site B where it shares A's slot */
	for (;; pad++) {
		int offa = 13 + pad;
		offb = (offa ^ (int)(page & 0xfff) ^ (int)((page + 1) & 0xfff)) & 0xfff;
		if (offb >= 5 && offb < 0xfc0)
			break;
	}
	B(&k, 2, 0x31, 0xC0);                         /* xor eax, eax */
	B(&k, 2, 0x31, 0xDB);                         /* xor ebx, ebx */
	B(&k, 2, 0x31, 0xC9);                         /* xor ecx, ecx */
	while (k.n < 8 + pad)
		B(&k, 1, 0x90);
	int top = k.n;
	B(&k, 1, 0xE8);                               /* top: call f */
	int call = k.n;
	imm32(&k, 0);
	B(&k, 3, 0x83, 0xC3, 0x01);                   /* A: add ebx, 1 */
	B(&k, 1, 0xE9);                               /* jmp B - 5 */
	imm32(&k, (uint32_t)(0x1000 + offb - 5 - (k.n + 4)));
	int f = k.n;
	B(&k, 3, 0x83, 0xC0, 0x01);                   /* f: add eax, 1 */
	B(&k, 1, 0xC3);                               /* ret */
	uint32_t rel = (uint32_t)(f - (call + 4));
	memcpy(k.b + call, &rel, 4);
	if (top + 5 != 13 + pad)
		abort();
	struct code kb = { 0 };
	int at = 0x1000 + offb - 5;
	B(&kb, 1, 0xE8);                              /* call f */
	imm32(&kb, (uint32_t)(f - (at + 5)));
	B(&kb, 3, 0x83, 0xC3, 0x64);                  /* B: add ebx, 100 */
	B(&kb, 2, 0xFF, 0xC1);                        /* inc ecx */
	B(&kb, 3, 0x83, 0xF9, 0x32);                  /* cmp ecx, 50 */
	B(&kb, 2, 0x74, 5);                           /* je done */
	B(&kb, 1, 0xE9);                              /* jmp top */
	imm32(&kb, (uint32_t)(top - (at + kb.n + 4)));
	B(&kb, 1, 0xF4);                              /* done: hlt */
	memcpy(ram + KCODE + at, kb.b, kb.n);
	struct outcome o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RAX] == 100 && C->r[R_RBX] == 50 * 101 && o.at == KCODE + at + kb.n - 1,
	   "jit ret: two return sites sharing a slot of the jump cache, each reached (rbx %" PRIu64 ")",
	   C->r[R_RBX]);
	/* site B's code written from outside between runs, as a device
	 * would: the cached target must not run */
	ram[KCODE + at + 7] = 0x65;
	o = run_at(KCODE, &(struct code){ 0 }, KCODE);
	ok(o.vector == -1 && C->r[R_RBX] == 50 * 102,
	   "jit ret: a return site written from outside is decoded again (rbx %" PRIu64 ")", C->r[R_RBX]);
}

/* A block that returns to its own start (push rcx; ret) loops through the
 * jump cache alone, with no link between: it ends with its budget, sees
 * its code written from outside while stopped, and takes an interrupt
 * raised meanwhile. */
static void test_jit_ret_loop(void)
{
	machine_reset();
	struct code k = { 0 };
	B(&k, 3, 0x48, 0x8D, 0x0D);                   /* lea rcx, [rip + top] */
	imm32(&k, 0);
	int top = k.n;
	B(&k, 3, 0x83, 0xC0, 0x01);                   /* top: add eax, 1 */
	B(&k, 3, 0x83, 0xC3, 0x01);                   /* add ebx, 1 */
	B(&k, 1, 0x51);                               /* push rcx */
	B(&k, 1, 0xC3);                               /* ret */
	load_at(KCODE, &k, KCODE);
	C->rflags = 0x202;
	alarm(120);
	enum cpu_stop stop = cpu_run(C, 1000000);
	ok(stop == STOP_BUDGET && C->icount >= 1000000 && C->r[R_RAX] > 1000 && C->r[R_RAX] == C->r[R_RBX],
	   "jit ret: a block returning to its own start ends with its budget");
	uint64_t a = C->r[R_RAX], b = C->r[R_RBX];
	/* written while stopped other than at the end of a slice (as the
	 * gdb stub or a snapshot restore would) */
	ram[KCODE + top + 2] = 2;
	C->slice_ended = false;
	stop = cpu_run(C, 100000);
	ok(stop == STOP_BUDGET && C->r[R_RBX] > b + 1000 && C->r[R_RAX] - a == 2 * (C->r[R_RBX] - b),
	   "jit ret: its code written from outside while stopped is decoded again (%" PRIu64 " rounds, eax +%" PRIu64 ")",
	   C->r[R_RBX] - b, C->r[R_RAX] - a);
	pthread_t t;
	pthread_create(&t, NULL, raise_irq, NULL);
	stop = cpu_run(C, 20000000000ull);
	pthread_join(t, NULL);
	alarm(0);
	ok(stop == STOP_HLT && C->rip == STUBS + 0x30 * 16 + 1,
	   "jit ret: an interrupt raised while it loops is taken");
}

/* A conditional branch out of its page goes on in host code: taken, the
 * run leaves through a link that checks the TLB like a jmp's (the same
 * code mapped at two linear addresses, the page after each holding a
 * different target); a target past the canonical boundary is a #GP at the
 * branch, not at the target. */
static void test_jit_jcc_far(void)
{
	const uint64_t a1 = ALIAS1, a2 = ALIAS2;
	const uint64_t t1 = KCODE + 0x1000, t2 = DATA + 0x10000;
	map_code_twice(t1, t2);
	struct code k = { 0 };
	movabs(&k, R_R8, a1 ^ a2);
	B(&k, 2, 0x31, 0xDB);                         /* xor ebx, ebx */
	B(&k, 2, 0x31, 0xC9);                         /* xor ecx, ecx */
	int top = k.n;
	B(&k, 2, 0xFF, 0xC1);                         /* top: inc ecx */
	B(&k, 3, 0x83, 0xF9, 0x07);                   /* cmp ecx, 7 */
	B(&k, 2, 0x0F, 0x85);                         /* jne the next page */
	imm32(&k, (uint32_t)(0x1000 - (k.n + 4)));
	B(&k, 1, 0xF4);                               /* hlt */
	int back = k.n;
	B(&k, 3, 0x48, 0x8D, 0x15);                   /* back: lea rdx, [rip + top] */
	imm32(&k, (uint32_t)(top - (k.n + 4)));
	B(&k, 3, 0x4C, 0x31, 0xC2);                   /* xor rdx, r8: the other mapping */
	B(&k, 2, 0xFF, 0xE2);                         /* jmp rdx */
	/* at the start of each next page: add ebx, 1 (or 2); jmp back */
	for (int i = 0; i < 2; i++) {
		uint8_t *t = ram + (i ? t2 : t1);
		const uint8_t f[] = { 0x83, 0xC3, (uint8_t)(i + 1), 0xE9 };
		memcpy(t, f, sizeof(f));
		uint32_t rel = (uint32_t)(back - (0x1000 + 8));
		memcpy(t + 4, &rel, 4);
	}
	struct outcome o = run_at(KCODE, &k, a1);
	ok(o.vector == -1 && C->r[R_RBX] == 3 * 1 + 3 * 2 && C->r[R_RCX] == 7,
	   "jit jcc: a branch into the next page reaches the code mapped there at each mapping (rbx %" PRIu64 ")",
	   C->r[R_RBX]);

	/* the last page below the canonical boundary, its branch taken to
	 * 16 bytes past it */
	const uint64_t edge = 0x7ffffffff000ull;
	machine_reset();
	map4k(edge, KCODE, PG_P);
	k.n = 0;
	B(&k, 2, 0x31, 0xC0);                         /* xor eax, eax */
	B(&k, 2, 0xFF, 0xC0);                         /* inc eax */
	B(&k, 3, 0x83, 0xF8, 0x01);                   /* cmp eax, 1 */
	int jcc = k.n;
	B(&k, 2, 0x0F, 0x84);                         /* je edge + 0x1010 */
	imm32(&k, (uint32_t)(0x1010 - (k.n + 4)));
	B(&k, 1, 0xF4);
	o = run_at(KCODE, &k, edge);
	ok(o.vector == 13 && o.rip == edge + (uint64_t)jcc,
	   "jit jcc: a branch past the canonical boundary is #GP at the branch (vector %d at %#" PRIx64 ")",
	   o.vector, o.rip);
}

/* movsd to and from memory runs in host code, which checks CR0.EM/TS and
 * CR4.OSFXSR each time: the same code, already translated, raises #NM
 * and #UD at the movsd once they say so. */
static void test_jit_movsd(void)
{
	machine_reset();
	for (int i = 0; i < 64; i++) {
		uint64_t v = 0x0101010101010101ull * (uint64_t)i;
		memcpy(ram + DATA + 8 * i, &v, 8);
	}
	memset(&C->fx.xmm[1], 0xAB, 16);
	struct code k = { 0 };
	movabs(&k, R_RSI, DATA);
	B(&k, 2, 0x31, 0xC9);                         /* xor ecx, ecx */
	int top = k.n;
	B(&k, 5, 0xF2, 0x0F, 0x10, 0x0C, 0xCE);       /* top: movsd xmm1, [rsi + rcx * 8] */
	B(&k, 5, 0xF2, 0x0F, 0x11, 0x8C, 0xCE);       /* movsd [rsi + rcx * 8 + 0x800], xmm1 */
	imm32(&k, 0x800);
	B(&k, 2, 0xFF, 0xC1);                         /* inc ecx */
	B(&k, 3, 0x83, 0xF9, 64);                     /* cmp ecx, 64 */
	B(&k, 2, 0x75, (uint8_t)(top - (k.n + 2)));   /* jne top */
	B(&k, 1, 0xF4);
	struct outcome o = run_k(&k);
	ok(o.vector == -1 && !memcmp(ram + DATA, ram + DATA + 0x800, 64 * 8) &&
		   C->fx.xmm[1].q[0] == 0x3f3f3f3f3f3f3f3full && C->fx.xmm[1].q[1] == 0,
	   "jit movsd: 64 loads and stores, the upper half cleared by the load");
	C->cr0 |= CR0_TS;
	o = run_k(&k);
	ok(o.vector == 7 && o.rip == KCODE + (uint64_t)top && C->r[R_RCX] == 0,
	   "jit movsd: with CR0.TS, #NM at the load (vector %d at %#" PRIx64 ")", o.vector, o.rip);
	C->cr0 &= ~(uint64_t)CR0_TS;
	C->cr4 &= ~(uint64_t)CR4_OSFXSR;
	o = run_k(&k);
	ok(o.vector == 6 && o.rip == KCODE + (uint64_t)top,
	   "jit movsd: without CR4.OSFXSR, #UD at the load (vector %d at %#" PRIx64 ")", o.vector, o.rip);
}

/* jmp r/m and call r/m (ff /4, ff /2) in host code go on through the
 * jump cache the rets use: one jmp through a table in memory reaching
 * four targets in turn (one of them a jmp through a register), calls
 * through memory and a register, the push of one across a page
 * boundary, and targets past the canonical boundary #GP at the jmp or
 * call. */
static void test_jit_indirect(void)
{
	machine_reset();
	struct code k = { 0 };
	B(&k, 2, 0x31, 0xDB);                         /* xor ebx, ebx */
	B(&k, 2, 0x31, 0xC9);                         /* xor ecx, ecx */
	B(&k, 3, 0x48, 0x8D, 0x35);                   /* lea rsi, [rip + table] */
	int table_rel = k.n;
	imm32(&k, 0);
	int top = k.n;
	B(&k, 2, 0x89, 0xC8);                         /* top: mov eax, ecx */
	B(&k, 3, 0x83, 0xE0, 0x03);                   /* and eax, 3 */
	B(&k, 3, 0xFF, 0x24, 0xC6);                   /* jmp [rsi + rax * 8] */
	int t[4], to_next[3];
	const uint8_t add[3] = { 1, 10, 100 };
	for (int i = 0; i < 3; i++) {
		t[i] = k.n;
		B(&k, 3, 0x83, 0xC3, add[i]);         /* add ebx, 1 / 10 / 100 */
		B(&k, 1, 0xEB);                       /* jmp next */
		to_next[i] = k.n;
		B(&k, 1, 0);
	}
	t[3] = k.n;
	B(&k, 3, 0x48, 0x8D, 0x15);                   /* lea rdx, [rip + t3b] */
	imm32(&k, 4);
	B(&k, 2, 0xFF, 0xE2);                         /* jmp rdx */
	B(&k, 2, 0x0F, 0x0B);                         /* ud2: not reached */
	B(&k, 6, 0x81, 0xC3, 0xE8, 0x03, 0x00, 0x00); /* t3b: add ebx, 1000 */
	int next = k.n;
	for (int i = 0; i < 3; i++)
		k.b[to_next[i]] = (uint8_t)(next - (to_next[i] + 1));
	B(&k, 2, 0xFF, 0xC1);                         /* next: inc ecx */
	B(&k, 3, 0x83, 0xF9, 0x28);                   /* cmp ecx, 40 */
	B(&k, 2, 0x75, (uint8_t)(top - (k.n + 2)));   /* jne top */
	int done = k.n;
	B(&k, 1, 0xF4);                               /* hlt */
	while (k.n & 7)
		B(&k, 1, 0xCC);
	uint32_t rel = (uint32_t)(k.n - (table_rel + 4));
	memcpy(k.b + table_rel, &rel, 4);
	for (int i = 0; i < 4; i++) {
		uint64_t a = KCODE + (uint64_t)t[i];
		memcpy(k.b + k.n, &a, 8);
		k.n += 8;
	}
	struct outcome o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RBX] == 10 * 1111 && o.at == KCODE + (uint64_t)done,
	   "jit jmp r/m: through a table in memory and a register, each target reached (rbx %" PRIu64 ")",
	   C->r[R_RBX]);

	machine_reset();
	k.n = 0;
	B(&k, 2, 0x31, 0xDB);                         /* xor ebx, ebx */
	B(&k, 2, 0x31, 0xC9);                         /* xor ecx, ecx */
	B(&k, 3, 0x48, 0x8D, 0x35);                   /* lea rsi, [rip + table] */
	table_rel = k.n;
	imm32(&k, 0);
	top = k.n;
	B(&k, 2, 0xFF, 0x16);                         /* top: call [rsi] */
	B(&k, 3, 0x48, 0x8D, 0x15);                   /* lea rdx, [rip + g] */
	int g_rel = k.n;
	imm32(&k, 0);
	B(&k, 2, 0xFF, 0xD2);                         /* call rdx */
	B(&k, 3, 0xFF, 0x56, 0x08);                   /* call [rsi + 8] */
	B(&k, 3, 0x83, 0xC3, 0x02);                   /* add ebx, 2 */
	B(&k, 2, 0xFF, 0xC1);                         /* inc ecx */
	B(&k, 3, 0x83, 0xF9, 0x1E);                   /* cmp ecx, 30 */
	B(&k, 2, 0x75, (uint8_t)(top - (k.n + 2)));   /* jne top */
	done = k.n;
	B(&k, 1, 0xF4);                               /* hlt */
	int f = k.n;
	B(&k, 3, 0x83, 0xC3, 0x01);                   /* f: add ebx, 1 */
	B(&k, 1, 0xC3);                               /* ret */
	int g = k.n;
	B(&k, 3, 0x83, 0xC3, 0x64);                   /* g: add ebx, 100 */
	B(&k, 1, 0xC3);                               /* ret */
	rel = (uint32_t)(g - (g_rel + 4));
	memcpy(k.b + g_rel, &rel, 4);
	while (k.n & 7)
		B(&k, 1, 0xCC);
	rel = (uint32_t)(k.n - (table_rel + 4));
	memcpy(k.b + table_rel, &rel, 4);
	uint64_t fa = KCODE + (uint64_t)f, ga = KCODE + (uint64_t)g;
	memcpy(k.b + k.n, &fa, 8);
	memcpy(k.b + k.n + 8, &ga, 8);
	k.n += 16;
	o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RBX] == 30 * 203 && o.at == KCODE + (uint64_t)done,
	   "jit call r/m: through memory and a register, each returning after its call (rbx %" PRIu64 ")",
	   C->r[R_RBX]);
	/* the return addresses 4 bytes below a page boundary: each push
	 * straddles two pages */
	C->r[R_RSP] = USTACK_TOP - 0x1000 + 4;
	o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RBX] == 30 * 203 && C->r[R_RSP] == USTACK_TOP - 0x1000 + 4,
	   "jit call r/m: return addresses across a page boundary (rbx %" PRIu64 ")", C->r[R_RBX]);

	for (int call = 0; call < 2; call++) {
		machine_reset();
		k.n = 0;
		movabs(&k, R_RDX, 0x800000000000ull);
		B(&k, 2, 0x31, 0xC9);                 /* xor ecx, ecx */
		B(&k, 2, 0xFF, 0xC1);                 /* inc ecx */
		int at = k.n;
		if (call)
			B(&k, 3, 0x48, 0x89, 0xE6);   /* mov rsi, rsp */
		at = k.n;
		B(&k, 2, 0xFF, call ? 0xD2 : 0xE2);   /* call rdx / jmp rdx */
		B(&k, 1, 0xF4);
		o = run_k(&k);
		ok(o.vector == 13 && o.rip == KCODE + (uint64_t)at && C->r[R_RCX] == 1,
		   "jit %s r/m: a target past the canonical boundary is #GP at the %s (vector %d at %#" PRIx64 ")",
		   call ? "call" : "jmp", call ? "call" : "jmp", o.vector, o.rip);
	}
}

/* REX.R is no part of a group opcode's sub-opcode (ModRM.reg): 4C 81 /0 is
 * add, 4C F7 /0 is test with its immediate */
static void test_group_rex_r(void)
{
	machine_reset();
	struct code k = { 0 };
	movabs(&k, R_RAX, 40);
	B(&k, 3, 0x4C, 0x81, 0xC0); /* add rax, 2 (REX.W REX.R) */
	imm32(&k, 2);
	B(&k, 3, 0x4C, 0xF7, 0xC0); /* test rax, 0x100 (REX.W REX.R) */
	imm32(&k, 0x100);
	B(&k, 3, 0x4C, 0xFF, 0xC0); /* inc rax (REX.W REX.R) */
	B(&k, 1, 0xF4);
	struct outcome o = run_k(&k);
	ok(o.vector == -1 && C->r[R_RAX] == 43 && o.at == KCODE + k.n - 1,
	   "decode: REX.R leaves a group's sub-opcode and immediate alone");
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	ram = aligned_alloc(4096, RAM_SIZE);
	C = aligned_alloc(64, (sizeof(*C) + 63) & ~(size_t)63);
	memset(C, 0, sizeof(*C));
	cpu_init(C, 0);
	test_page_sizes();
	test_accessed_dirty();
	test_accessed_dirty_32();
	test_nx_wp_us();
	test_reserved();
	test_tlb();
	tlb_flush_many(8);
	tlb_flush_many(600);
	tlb_flush_global(8);
	tlb_flush_global(600);
	tlb_same_entry();
	test_smc();
	test_group_rex_r();
	test_jit_alias();
	test_jit_chain_smc();
	test_jit_chain_intr();
	test_jit_call_alias();
	test_jit_call_ret();
	test_jit_ret_cache();
	test_jit_ret_loop();
	test_jit_jcc_far();
	test_jit_movsd();
	test_jit_indirect();
	test_exceptions();
	test_ist_rsp0();
	test_double_triple();
	test_external_interrupt();
	test_single_step();
	test_step_if();
	test_syscall();
	test_iret_swapgs();
	test_msrs();
	test_crs();
	test_far();
	test_cpuid();
	test_random_bytes();
	printf("1..%d\n", n_test);
	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}
