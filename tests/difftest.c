/* Differential test of the emu engine's integer core against the host CPU.
 *
 * For each instruction family, generate short instruction sequences with
 * random operands (fixed seeds) and run each one twice:
 *   natively, in user mode, in a forked child: the code at CODE_ADDR, the
 *     registers loaded from a state block, and an exit stub that stores them
 *     back; a fault becomes a signal whose ucontext says the vector, the
 *     error code, CR2 and the registers at the fault;
 *   in the emu engine, in 64-bit mode at CPL 3 and again at CPL 0, over a
 *     flat guest memory with 4-level page tables that map the same code,
 *     data and stack at the same linear addresses. Every IDT gate leads to a
 *     `hlt` stub of its own (on IST 1), so a stop at stub v means vector v and
 *     the frame holds RIP, RFLAGS and RSP at the fault. The sequence ends with
 *     a `hlt`: at CPL 3 that is #GP at the end address, at CPL 0 a halt.
 * Then compare the vector (and error code, CR2), RIP, the 16 GPRs, the
 * architecturally defined flags (the flags an instruction leaves undefined
 * per the SDM are masked) and every byte of the data and stack pages.
 *
 *   difftest [-v] [-n CASES] [-s SEED] [-o FIRST] [-t STEPS] [FAMILY...]
 *
 * -o runs from the FIRST-th case of each family on (a failing case's number
 * minus its family's base, as printed), -t traces the emu for STEPS steps.
 *
 * Prints TAP, one line per family and CPL, and "N passed, N failed". */
#define _GNU_SOURCE
#include <capstone/capstone.h>
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include "cpu/cpu.h"


/* ---- the address space both sides share ---- */

#define CODE_ADDR 0x10000000ull
#define CODE_PAGES 2
#define CODE_SIZE (CODE_PAGES * 0x1000)
#define DATA_ADDR 0x10100000ull
#define DATA_RW 0x4000   /* read-write pages */
#define DATA_SIZE 0x5000 /* and one read-only page after them */
#define STACK_ADDR 0x10200000ull
#define STACK_SIZE 0x2000
#define STACK_MID (STACK_ADDR + 0x1000)

/* emu guest-physical layout */
#define RAM_SIZE 0x100000ull
#define PT_GPA 0x1000ull /* page-table pool: 0x1000..0x10000 */
#define CODE_GPA 0x20000ull
#define DATA_GPA 0x30000ull
#define STACK_GPA 0x40000ull
#define SYS_GPA 0x50000ull
#define SYS_LIN 0x20000000ull /* supervisor-only: GDT, IDT, TSS, stubs, stacks */
#define GDT_OFF 0x0000
#define IDT_OFF 0x1000
#define TSS_OFF 0x2000
#define STUB_OFF 0x3000
#define IST_TOP_OFF 0x6000
#define RSP0_TOP_OFF 0x8000
#define SYS_SIZE 0x8000

#define SEL_KCODE 0x10
#define SEL_KDATA 0x18
#define SEL_UDATA 0x2b
#define SEL_UCODE 0x33
#define SEL_TSS 0x40

/* result.vector values that are not exception vectors */
#define V_DONE (-1)
#define V_NATIVE_DIED (-2)
#define V_EMU_SHUTDOWN (-3)
#define V_EMU_BUDGET (-4)
#define V_EMU_STRAY (-5)

/* ---- random numbers ---- */

static uint64_t rng;

static uint64_t rnd64(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545F4914F6CDD1Dull;
}

static uint32_t rnd(uint32_t n)
{
	return (uint32_t)((rnd64() >> 11) % n);
}

static uint64_t mask_of(int size)
{
	return size >= 8 ? ~0ull : (1ull << (size * 8)) - 1;
}

/* operand values that make flags interesting: zero, small, boundaries of
 * every operand size (with random bits above), single bits, random */
static uint64_t rnd_val(void)
{
	static const int sizes[4] = { 1, 2, 4, 8 };
	int b = sizes[rnd(4)] * 8;
	uint64_t hi = b == 64 ? 0 : rnd64() & ~mask_of(b / 8);
	uint64_t top = 1ull << (b - 1);
	switch (rnd(12)) {
	case 0: return 0;
	case 1: return rnd(16);
	case 2: return -(uint64_t)rnd(16);
	case 3: return 1ull << rnd(64);
	case 4: return (1ull << rnd(64)) - 1;
	case 5: return hi | top;
	case 6: return hi | (top - 1);
	case 7: return hi | mask_of(b / 8);
	case 8: return hi | (top + rnd(3) - 1);
	case 9: return hi;
	default: return rnd64();
	}
}

/* ---- test cases ---- */

#define MAX_INS 48

struct tcase {
	uint8_t code[CODE_SIZE];  /* what the emu runs; ends with hlt */
	uint8_t ncode[CODE_SIZE]; /* what the host runs; ends with a jump to the exit stub */
	int start;                /* offset of the first instruction */
	int len;                  /* offset of the terminator */
	bool code2_absent;        /* the second code page is not present */
	uint64_t r[16], rflags;
	uint64_t xmm[16][2];
	uint32_t mxcsr;
	uint64_t mem_seed;
	uint32_t flag_mask; /* flags compared when the sequence completes */
	uint32_t flag_extra;
	uint16_t reg_undef; /* registers left undefined */
	bool cpl3_only;     /* privileged behaviour: no CPL 0 comparison */
	bool icebp;         /* a single int1 (see compare) */
	int nins;
	uint16_t ins_off[MAX_INS];  /* start of each instruction */
	uint32_t ins_undef[MAX_INS]; /* flags undefined before it */
};

struct result {
	uint64_t r[16], rip, rflags, cr2;
	uint64_t xmm[16][2];
	uint32_t mxcsr;
	int vector;
	uint32_t err;
	uint8_t data[DATA_SIZE];
	uint8_t stack[STACK_SIZE];
};

/* ---- memory contents: from pools, chosen by the case's seed ---- */

#define POOL_SIZE 0x10000
static uint8_t pools[4][POOL_SIZE + DATA_SIZE + STACK_SIZE];

static void pools_init(void)
{
	uint64_t save = rng;
	rng = 0x9e3779b97f4a7c15ull;
	for (int p = 0; p < 4; p++) {
		uint8_t *b = pools[p];
		for (size_t i = 0; i < sizeof(pools[p]); i++) {
			uint64_t v = rnd64();
			switch (p) {
			case 0: case 1: b[i] = (uint8_t)v; break;
			/* low entropy: long runs for repe/repne and zero sources */
			case 2: b[i] = (v >> 20) % 8 == 0 ? (uint8_t)v : 0; break;
			default: b[i] = (uint8_t)((i / (1 + (v >> 60))) & 1 ? 0xff : 0x00); break;
			}
		}
	}
	rng = save;
}

static const uint8_t *pool_data(uint64_t seed)
{
	return pools[seed & 3] + ((seed >> 2) % POOL_SIZE);
}

/* ---- the encoder ---- */

enum { P66 = 1, P67 = 2, PF2 = 4, PF3 = 8, PLOCK = 0x10, PCS = 0x20, PDS = 0x40, PES = 0x80, PSS = 0x100,
       PGS = 0x200, PJUNKREX = 0x400 };

struct mem {
	int base, index, scale; /* base/index -1 when absent */
	int64_t disp;
	int dsz; /* 0, 1 or 4 */
	bool rip, a32;
	uint64_t target; /* rip-relative: the address */
};

struct ins {
	unsigned pfx;
	bool w, rex40;
	int map; /* 0 or 1 (0F) */
	int op;
	bool modrm, digit;
	int reg; /* ModRM.reg: a register (16..19 = AH..BH) or the /digit */
	bool rm_mem;
	int rm;
	struct mem m;
	int isz;
	uint64_t imm;
	int plusr; /* register of a +r opcode, or -1 */
	bool hb;   /* legacy byte registers: AH..BH possible, no REX at all */
	int form_extra;
};

/* per family: the set of distinct forms seen */
#define FORM_SET 8192
struct formset {
	uint64_t key[FORM_SET];
	int n;
};

struct gen {
	struct tcase *t;
	int n;
	uint16_t fixed;  /* never destinations: addresses, counts, rsp */
	uint16_t busy;   /* implicit operands of the family: never addresses */
	uint16_t written; /* written by an instruction so far: never addresses */
	uint32_t undef;  /* flags undefined at this point */
	bool rsp_free;
	bool no_fault;   /* memory targets always read-write and mapped */
	bool setup;      /* emitting helper instructions: not counted as forms */
	bool stop;       /* nothing may follow (pop rsp) */
	uint64_t rsp;    /* far family: rsp at this point */
	int f3_off;      /* offset of the last F3 prefix emitted */
	struct formset *forms;
};

static void form_add(struct formset *s, uint64_t key)
{
	key = key * 0x9E3779B97F4A7C15ull + 1;
	unsigned h = (unsigned)(key >> 40) % FORM_SET;
	for (int i = 0; i < FORM_SET; i++, h = (h + 1) % FORM_SET) {
		if (s->key[h] == key)
			return;
		if (s->key[h] == 0) {
			s->key[h] = key;
			s->n++;
			return;
		}
	}
}

static int regcode(int r)
{
	return r >= 16 ? r - 12 : r & 7;
}

static bool is_rex_reg(int r)
{
	return r >= 8 && r < 16;
}

static void put(struct gen *g, const uint8_t *b, int n)
{
	if (g->n + n > CODE_SIZE - 32) {
		fprintf(stderr, "difftest: case too long\n");
		exit(2);
	}
	memcpy(g->t->code + g->n, b, n);
	memcpy(g->t->ncode + g->n, b, n);
	g->n += n;
}

static void begin_ins(struct gen *g)
{
	struct tcase *t = g->t;
	if (t->nins < MAX_INS) {
		t->ins_off[t->nins] = g->n;
		t->ins_undef[t->nins] = g->undef;
		t->nins++;
	}
}

static void emit(struct gen *g, struct ins *x)
{
	uint8_t b[24];
	int n = 0, dispoff = -1, f3 = -1;
	unsigned p = x->pfx;
	if (x->modrm && x->rm_mem && x->m.a32)
		p |= P67;
	/* now and then, prefixes that change nothing: a REX before a legacy
	 * prefix (ignored), 66 with REX.W (W wins), a segment override that
	 * 64-bit mode ignores, GS (base 0 on both sides) */
	if (!g->setup && rnd(16) == 0) {
		switch (rnd(4)) {
		case 0:
			if (p & (P66 | P67 | PF2 | PF3 | PLOCK))
				b[n++] = 0x40 | rnd(16);
			break;
		case 1:
			if (x->w)
				p |= P66;
			break;
		case 2:
			if (x->modrm && x->rm_mem && !(p & (PCS | PDS | PES | PSS | PGS)))
				p |= (unsigned[]){ PCS, PDS, PES, PSS }[rnd(4)];
			break;
		default:
			if (x->modrm && x->rm_mem && !(p & (PCS | PDS | PES | PSS | PGS)))
				p |= PGS;
			break;
		}
	}
	if (p & PLOCK)
		b[n++] = 0xF0;
	if (p & PF2)
		b[n++] = 0xF2;
	if (p & PF3)
		f3 = n, b[n++] = 0xF3;
	if (p & PCS)
		b[n++] = 0x2E;
	if (p & PDS)
		b[n++] = 0x3E;
	if (p & PES)
		b[n++] = 0x26;
	if (p & PSS)
		b[n++] = 0x36;
	if (p & PGS)
		b[n++] = 0x65;
	if (p & P66)
		b[n++] = 0x66;
	if (p & P67)
		b[n++] = 0x67;
	int rex = x->w ? 8 : 0;
	if (x->modrm && !x->digit && is_rex_reg(x->reg))
		rex |= 4;
	if (x->modrm && x->rm_mem) {
		if (x->m.index >= 8)
			rex |= 2;
		if (x->m.base >= 8)
			rex |= 1;
	} else if (x->modrm && is_rex_reg(x->rm)) {
		rex |= 1;
	}
	if (x->plusr >= 0 && is_rex_reg(x->plusr))
		rex |= 1;
	if (rex || x->rex40)
		b[n++] = 0x40 | rex;
	if (x->map)
		b[n++] = 0x0F;
	b[n++] = x->op + (x->plusr >= 0 ? regcode(x->plusr) : 0);
	if (x->modrm) {
		int reg = x->digit ? x->reg & 7 : regcode(x->reg);
		if (!x->rm_mem) {
			b[n++] = 0xC0 | reg << 3 | regcode(x->rm);
		} else {
			struct mem *m = &x->m;
			int idx = m->index >= 0 ? m->index & 7 : 4;
			if (m->rip) {
				b[n++] = 0x05 | reg << 3;
				dispoff = n;
				n += 4;
			} else if (m->base < 0) {
				b[n++] = 0x04 | reg << 3;
				b[n++] = m->scale << 6 | idx << 3 | 5;
				memcpy(b + n, &(int32_t){ (int32_t)m->disp }, 4);
				n += 4;
			} else {
				int dsz = m->dsz;
				if (dsz == 0 && (m->base & 7) == 5)
					dsz = 1;
				bool sib = m->index >= 0 || (m->base & 7) == 4;
				b[n++] = (dsz == 0 ? 0 : dsz == 1 ? 0x40 : 0x80) | reg << 3 | (sib ? 4 : m->base & 7);
				if (sib)
					b[n++] = m->scale << 6 | idx << 3 | (m->base & 7);
				if (dsz == 1)
					b[n++] = (uint8_t)m->disp;
				else if (dsz == 4) {
					memcpy(b + n, &(int32_t){ (int32_t)m->disp }, 4);
					n += 4;
				}
			}
		}
	}
	for (int i = 0; i < x->isz; i++)
		b[n++] = (uint8_t)(x->imm >> (8 * i));
	if (dispoff >= 0) {
		int32_t d = (int32_t)(x->m.target - (CODE_ADDR + g->n + n));
		memcpy(b + dispoff, &d, 4);
	}
	begin_ins(g);
	if (f3 >= 0)
		g->f3_off = g->n + f3;
	put(g, b, n);
	if (!g->setup && g->forms) {
		int kind = 0;
		if (x->modrm)
			kind = x->rm_mem ? 2 : 1;
		if (x->rex40)
			kind |= 4;
		if ((x->modrm && !x->digit && x->reg >= 16) || (x->modrm && !x->rm_mem && x->rm >= 16) ||
		    x->plusr >= 16)
			kind |= 8;
		uint64_t key = (uint64_t)(p & 0x1f) | (uint64_t)x->w << 5 | (uint64_t)x->map << 6 |
			       (uint64_t)x->op << 8 | (uint64_t)(x->digit ? x->reg & 7 : 0xff) << 16 |
			       (uint64_t)kind << 24 | (uint64_t)x->isz << 28 | (uint64_t)x->form_extra << 32;
		form_add(g->forms, key);
	}
}

static void ins_init(struct ins *x, int size)
{
	memset(x, 0, sizeof(*x));
	x->m.base = x->m.index = -1;
	x->plusr = -1;
	if (size == 2)
		x->pfx |= P66;
	if (size == 8)
		x->w = true;
	if (size == 1)
		x->hb = rnd(2);
}

/* raw bytes, counted as one instruction */
static void emit_raw(struct gen *g, const uint8_t *b, int n)
{
	begin_ins(g);
	put(g, b, n);
}

/* ---- operand choice ---- */

static int rsize(void)
{
	static const int s[4] = { 1, 2, 4, 8 };
	return s[rnd(4)];
}

static int size248(void)
{
	static const int s[3] = { 2, 4, 8 };
	return s[rnd(3)];
}

static int full_reg(int r)
{
	return r >= 16 ? r - 16 : r;
}

static bool reg_ok_dst(struct gen *g, int r)
{
	int f = full_reg(r);
	if (g->fixed >> f & 1)
		return false;
	if (f == R_RSP && !g->rsp_free)
		return false;
	return true;
}

/* a register for an operand of size bytes; dst: it is written */
static int pick_reg(struct gen *g, struct ins *x, int size, bool dst)
{
	for (;;) {
		int r;
		if (size == 1 && x->hb) {
			r = rnd(8);
			if (r >= 4)
				r += 12; /* AH..BH */
		} else {
			r = x->hb ? rnd(8) : rnd(16);
		}
		if (dst && !reg_ok_dst(g, r))
			continue;
		if (dst)
			g->written |= 1u << full_reg(r);
		if (size == 1 && r >= 4 && r < 8)
			x->rex40 = true;
		return r;
	}
}

/* a register no instruction of the case writes, to hold an address part */
static int alloc_addr_reg(struct gen *g, bool low8)
{
	int cand[16], n = 0;
	for (int r = 0; r < (low8 ? 8 : 16); r++) {
		if (r == R_RAX || r == R_RCX || r == R_RDX || r == R_RSP)
			continue;
		if ((g->fixed | g->busy | g->written) >> r & 1)
			continue;
		cand[n++] = r;
	}
	if (!n)
		return -1;
	int r = cand[rnd(n)];
	g->fixed |= 1u << r;
	return r;
}

/* a register for a helper value: written, not an address */
static int pick_scratch(struct gen *g, uint16_t avoid)
{
	for (;;) {
		int r = rnd(16);
		if (r == R_RSP || ((g->fixed | avoid) >> r & 1))
			continue;
		g->written |= 1u << r;
		return r;
	}
}

/* an address for a memory operand of size bytes */
static uint64_t pick_target(struct gen *g, int size)
{
	int k = rnd(100);
	if (g->no_fault || k < 78)
		return DATA_ADDR + 0x100 + rnd(DATA_RW - 0x200);
	if (k < 90) /* straddling a page boundary inside the read-write pages */
		return DATA_ADDR + 0x1000 * (1 + rnd(3)) - 1 - rnd(size > 1 ? size - 1 : 1);
	if (k < 95) /* read-only page */
		return DATA_ADDR + DATA_RW + rnd(0x1000 - 16);
	if (k < 97) /* straddling read-write and read-only */
		return DATA_ADDR + DATA_RW - 1 - rnd(size > 1 ? size - 1 : 1);
	if (k < 99) /* straddling into the unmapped page after */
		return DATA_ADDR + DATA_SIZE - 1 - rnd(size > 1 ? size - 1 : 1);
	return DATA_ADDR - 0x800 + rnd(0x700); /* unmapped below */
}

static int64_t rnd_disp(int dsz)
{
	if (dsz == 1)
		return (int8_t)rnd64();
	if (rnd(2))
		return (int32_t)rnd(0x4000) - 0x2000;
	return (int32_t)rnd64();
}

/* memory operand at T through a random addressing form; sets the values of
 * the registers it uses at the start of the case */
static void mem_build(struct gen *g, struct ins *x, uint64_t T)
{
	struct mem *m = &x->m;
	memset(m, 0, sizeof(*m));
	m->base = m->index = -1;
	x->modrm = true;
	x->rm_mem = true;
	bool a32 = rnd(8) == 0;
	int form = rnd(9);
	int b = -1, i = -1;
	if (form <= 5) {
		b = alloc_addr_reg(g, x->hb);
		if (b < 0)
			form = 7 + rnd(2);
	}
	if (form >= 3 && form <= 6) {
		i = alloc_addr_reg(g, x->hb);
		if (i < 0)
			form = b >= 0 ? 0 : 8;
	}
	x->form_extra = form | a32 << 4;
	m->a32 = a32;
	uint64_t amask = a32 ? 0xffffffffull : ~0ull;
	switch (form) {
	case 7: /* [disp32] through a SIB with neither base nor index */
		m->disp = (int64_t)T;
		return;
	case 8: /* rip-relative */
		m->rip = true;
		m->target = T;
		return;
	}
	m->dsz = (form == 1 || form == 4) ? 1 : (form == 2 || form == 5 || form == 6) ? 4 : 0;
	m->disp = m->dsz ? rnd_disp(m->dsz) : 0;
	uint64_t iv = 0;
	if (i >= 0) {
		m->index = i;
		m->scale = rnd(4);
		iv = (uint64_t)(int64_t)((int)rnd(129) - 64);
		g->t->r[i] = a32 ? (rnd64() << 32) | (uint32_t)iv : iv;
	}
	if (b < 0) { /* [index*scale + disp32] */
		m->disp = (int64_t)(T - (iv << m->scale));
		return;
	}
	m->base = b;
	uint64_t bv = (T - (uint64_t)m->disp - (iv << m->scale)) & amask;
	if (a32)
		bv |= rnd64() << 32;
	g->t->r[b] = bv;
}

/* r/m operand: a register or memory */
static void rm_pick(struct gen *g, struct ins *x, int size, bool dst)
{
	x->modrm = true;
	if (rnd(2)) {
		x->rm_mem = false;
		x->rm = pick_reg(g, x, size, dst);
	} else {
		mem_build(g, x, pick_target(g, size));
	}
}

static int imm_size(int size)
{
	return size == 1 ? 1 : size == 2 ? 2 : 4;
}

/* ---- flags bookkeeping ---- */

static void fl_set(struct gen *g, uint32_t def, uint32_t undef)
{
	g->undef = (g->undef & ~def) | undef;
}

/* helper: cmp r64, imm8 (defines all six arithmetic flags) */
static void emit_cmp_imm8(struct gen *g)
{
	struct ins x;
	ins_init(&x, 8);
	x.op = 0x83;
	x.modrm = x.digit = true;
	x.reg = 7;
	x.rm = rnd(16);
	x.isz = 1;
	x.imm = rnd64();
	bool s = g->setup;
	g->setup = true;
	emit(g, &x);
	g->setup = s;
	fl_set(g, F_ARITH, 0);
}

/* make the flags an instruction reads defined */
static void fl_need(struct gen *g, uint32_t f)
{
	if (g->undef & f)
		emit_cmp_imm8(g);
}

/* ---- helper instructions ---- */

static void emit_setup(struct gen *g, struct ins *x)
{
	bool s = g->setup;
	g->setup = true;
	emit(g, x);
	g->setup = s;
}

/* mov r64, imm64 */
static void emit_movabs(struct gen *g, int r, uint64_t v)
{
	struct ins x;
	g->written |= 1u << r;
	ins_init(&x, 8);
	x.op = 0xB8;
	x.plusr = r;
	x.isz = 8;
	x.imm = v;
	emit_setup(g, &x);
}

/* mov [T], r (size bytes), through a fresh addressing form */
static void emit_store(struct gen *g, uint64_t T, int r, int size)
{
	struct ins x;
	ins_init(&x, size);
	x.hb = false;
	x.op = size == 1 ? 0x88 : 0x89;
	x.reg = r;
	if (size == 1 && r >= 4 && r < 8)
		x.rex40 = true;
	mem_build(g, &x, T);
	emit_setup(g, &x);
}

/* mov r, [T] */
static void emit_load(struct gen *g, uint64_t T, int r, int size)
{
	struct ins x;
	ins_init(&x, size);
	x.hb = false;
	x.op = size == 1 ? 0x8A : 0x8B;
	x.reg = r;
	if (size == 1 && r >= 4 && r < 8)
		x.rex40 = true;
	mem_build(g, &x, T);
	emit_setup(g, &x);
}

/* lea r, [rip + target]: returns the offset of the disp32 to patch */
static int emit_lea_rip(struct gen *g, int r)
{
	uint8_t b[7] = { 0x48 | (r >= 8 ? 4 : 0), 0x8D, (uint8_t)(0x05 | (r & 7) << 3), 0, 0, 0, 0 };
	emit_raw(g, b, 7);
	return g->n - 4;
}

static void patch_rel32(struct gen *g, int off, int target_off)
{
	int32_t d = target_off - (off + 4);
	memcpy(g->t->code + off, &d, 4);
	memcpy(g->t->ncode + off, &d, 4);
}

static void patch_rel8(struct gen *g, int off, int target_off)
{
	int d = target_off - (off + 1);
	if (d < -128 || d > 127) {
		fprintf(stderr, "difftest: rel8 out of range\n");
		exit(2);
	}
	g->t->code[off] = g->t->ncode[off] = (uint8_t)d;
}

static void emit_filler(struct gen *g, int n)
{
	uint8_t b[64];
	memset(b, 0xCC, sizeof(b));
	put(g, b, n);
}

/* ================= instruction families ================= */

/* add or adc sbb and sub xor cmp: r/m,r; r,r/m; acc,imm; 80/81/83 */
static void gen_alu(struct gen *g)
{
	struct ins x;
	int size = rsize(), op = rnd(8), form = rnd(5);
	bool wr = op != 7;
	ins_init(&x, size);
	if (op == 2 || op == 3)
		fl_need(g, F_CF);
	switch (form) {
	case 0:
		x.op = op * 8 + (size > 1);
		rm_pick(g, &x, size, wr);
		x.reg = pick_reg(g, &x, size, false);
		break;
	case 1:
		x.op = op * 8 + 2 + (size > 1);
		x.modrm = true;
		x.reg = pick_reg(g, &x, size, wr);
		rm_pick(g, &x, size, false);
		break;
	case 2:
		x.op = op * 8 + 4 + (size > 1);
		x.isz = imm_size(size);
		break;
	case 3:
		x.op = size == 1 ? 0x80 : 0x81;
		x.digit = true;
		x.reg = op;
		rm_pick(g, &x, size, wr);
		x.isz = imm_size(size);
		break;
	default:
		x.op = size == 1 ? 0x80 : 0x83;
		x.digit = true;
		x.reg = op;
		rm_pick(g, &x, size, wr);
		x.isz = 1;
		break;
	}
	x.imm = rnd_val();
	if (wr && x.modrm && x.rm_mem && form != 1 && rnd(4) == 0)
		x.pfx |= PLOCK;
	emit(g, &x);
	fl_set(g, F_ARITH, (op == 1 || op == 4 || op == 6) ? F_AF : 0);
}

/* inc dec not neg test */
static void gen_unary(struct gen *g)
{
	struct ins x;
	int size = rsize(), k = rnd(6);
	ins_init(&x, size);
	if (k <= 3) {
		static const int digit[4] = { 0, 1, 2, 3 };
		x.op = k <= 1 ? (size == 1 ? 0xFE : 0xFF) : (size == 1 ? 0xF6 : 0xF7);
		x.digit = true;
		x.reg = digit[k];
		rm_pick(g, &x, size, true);
		if (x.rm_mem && rnd(4) == 0)
			x.pfx |= PLOCK;
		emit(g, &x);
		if (k <= 1)
			fl_set(g, F_ARITH & ~F_CF, 0);
		else if (k == 3)
			fl_set(g, F_ARITH, 0);
		return;
	}
	switch (rnd(3)) {
	case 0:
		x.op = size == 1 ? 0x84 : 0x85;
		rm_pick(g, &x, size, false);
		x.reg = pick_reg(g, &x, size, false);
		break;
	case 1:
		x.op = size == 1 ? 0xA8 : 0xA9;
		x.isz = imm_size(size);
		break;
	default:
		x.op = size == 1 ? 0xF6 : 0xF7;
		x.digit = true;
		x.reg = rnd(2); /* /1 is an alias of /0 */
		rm_pick(g, &x, size, false);
		x.isz = imm_size(size);
		break;
	}
	x.imm = rnd_val();
	emit(g, &x);
	fl_set(g, F_ARITH, F_AF);
}

/* mov in every form, movzx, movsx, movsxd, mov from/to segment registers */
static void gen_mov(struct gen *g)
{
	struct ins x;
	int size = rsize();
	ins_init(&x, size);
	switch (rnd(10)) {
	case 0:
		x.op = size == 1 ? 0x88 : 0x89;
		rm_pick(g, &x, size, true);
		x.reg = pick_reg(g, &x, size, false);
		break;
	case 1:
		x.op = size == 1 ? 0x8A : 0x8B;
		x.modrm = true;
		x.reg = pick_reg(g, &x, size, true);
		rm_pick(g, &x, size, false);
		break;
	case 2:
		x.op = size == 1 ? 0xC6 : 0xC7;
		x.digit = true;
		x.reg = 0;
		rm_pick(g, &x, size, true);
		x.isz = imm_size(size);
		x.imm = rnd_val();
		break;
	case 3:
		x.op = size == 1 ? 0xB0 : 0xB8;
		x.plusr = pick_reg(g, &x, size, true);
		x.isz = size;
		x.imm = rnd_val();
		break;
	case 4: { /* moffs */
		bool a32 = rnd(4) == 0;
		x.hb = false;
		x.op = 0xA0 + (size > 1) + (rnd(2) ? 2 : 0);
		x.isz = a32 ? 4 : 8;
		x.imm = pick_target(g, size);
		if (a32)
			x.pfx |= P67;
		break;
	}
	case 5: case 6: { /* movzx / movsx */
		int ss = rnd(2) ? 1 : 2, ds = ss == 1 ? size248() : (rnd(2) ? 4 : 8);
		ins_init(&x, ds);
		x.hb = ss == 1 && ds != 8 && rnd(2);
		x.map = 1;
		x.op = (rnd(2) ? 0xB6 : 0xBE) + (ss == 2);
		x.modrm = true;
		x.reg = pick_reg(g, &x, ds, true);
		rm_pick(g, &x, ss, false);
		break;
	}
	case 7: /* movsxd, and its 32-bit form */
		ins_init(&x, rnd(4) ? 8 : 4);
		x.op = 0x63;
		x.modrm = true;
		x.reg = pick_reg(g, &x, 8, true);
		rm_pick(g, &x, 4, false);
		break;
	case 8: /* mov r/m, sreg */
		ins_init(&x, size248());
		x.op = 0x8C;
		x.digit = true;
		x.reg = rnd(6);
		rm_pick(g, &x, 2, true);
		g->t->cpl3_only |= x.reg == S_CS || x.reg == S_SS; /* their selectors differ at CPL 0 */
		break;
	default: { /* mov ds/es, r16 with a selector Linux's GDT and ours agree on */
		static const uint16_t sels[] = { 0, 3, SEL_UDATA, SEL_UCODE, 0x23, SEL_KCODE, SEL_KDATA, SEL_TSS, 0x2b | 0x80, 0x28 };
		int r = pick_scratch(g, 0);
		struct ins y;
		ins_init(&y, 4);
		y.op = 0xB8;
		y.plusr = r;
		y.isz = 4;
		y.imm = sels[rnd(sizeof(sels) / sizeof(sels[0]))];
		emit_setup(g, &y);
		/* kernel selectors fault only at CPL 3 */
		g->t->cpl3_only |= y.imm == SEL_KCODE || y.imm == SEL_KDATA;
		ins_init(&x, rnd(2) ? 2 : 4);
		x.op = 0x8E;
		x.digit = true;
		x.reg = rnd(2) ? 0 : 3;
		x.modrm = true;
		x.rm = r;
		break;
	}
	}
	emit(g, &x);
}

/* lea: every addressing form, random register values (nothing is accessed) */
static void gen_lea(struct gen *g)
{
	struct ins x;
	ins_init(&x, size248());
	bool a32 = rnd(4) == 0;
	x.op = 0x8D;
	x.modrm = true;
	x.reg = pick_reg(g, &x, 8, true);
	x.rm_mem = true;
	struct mem *m = &x.m;
	m->a32 = a32;
	int form = rnd(11);
	x.form_extra = form | a32 << 4;
	int b = rnd(16), i;
	do
		i = rnd(16);
	while (i == R_RSP);
	switch (form) {
	case 0: m->base = b; break;
	case 1: m->base = b; m->dsz = 1; break;
	case 2: m->base = b; m->dsz = 4; break;
	case 3: m->base = b; m->index = i; break;
	case 4: m->base = b; m->index = i; m->dsz = 1; break;
	case 5: m->base = b; m->index = i; m->dsz = 4; break;
	case 6: m->index = i; m->dsz = 4; break;
	case 7: m->dsz = 4; break;
	case 8: m->rip = true; m->target = CODE_ADDR + rnd64() % 0x10000 - 0x8000; break;
	case 9: m->base = rnd(2) ? R_RBP : 13; m->dsz = rnd(2); break; /* mod 0 needs disp8 */
	default: m->base = rnd(2) ? R_RSP : 12; m->dsz = rnd(3) == 2 ? 4 : rnd(2); break; /* SIB */
	}
	m->scale = rnd(4);
	m->disp = m->dsz || m->base < 0 ? rnd_disp(m->dsz == 1 ? 1 : 4) : 0;
	emit(g, &x);
}

/* ---- stack ---- */

static void gen_stack(struct gen *g)
{
	struct ins x;
	int s = rnd(5) ? 8 : 2;
	ins_init(&x, s == 2 ? 2 : 4); /* push/pop default to 64 bits: no REX.W */
	if (s == 8 && rnd(4) == 0)
		x.w = true; /* REX.W is allowed and changes nothing */
	switch (rnd(9)) {
	case 0: case 1:
		x.op = 0x50;
		x.plusr = rnd(16);
		break;
	case 2:
		x.op = 0x58;
		x.plusr = pick_reg(g, &x, 8, true);
		break;
	case 3:
		x.op = rnd(2) ? 0x6A : 0x68;
		x.isz = x.op == 0x6A ? 1 : s == 2 ? 2 : 4;
		x.imm = rnd_val();
		break;
	case 4: case 5: /* push r/m */
		x.op = 0xFF;
		x.digit = true;
		x.reg = 6;
		if (rnd(3) == 0) {
			x.modrm = x.rm_mem = true;
			x.m.base = R_RSP;
			x.m.dsz = rnd(2);
			x.m.disp = x.m.dsz ? (int)rnd(0x100) - 0x80 : 0;
			x.form_extra = 9;
		} else {
			rm_pick(g, &x, s, false);
		}
		break;
	case 6: case 7: /* pop r/m: an rsp base is taken after the increment */
		x.op = 0x8F;
		x.digit = true;
		x.reg = 0;
		if (rnd(3) == 0) {
			x.modrm = x.rm_mem = true;
			x.m.base = R_RSP;
			x.m.dsz = rnd(2);
			x.m.disp = x.m.dsz ? (int)rnd(0x100) - 0x80 : 0;
			x.form_extra = 9;
		} else {
			rm_pick(g, &x, s, true);
		}
		break;
	default:
		if (rnd(3) == 0) { /* pop rsp, last */
			x.op = 0x58;
			x.plusr = R_RSP;
			g->stop = true;
		} else { /* push fs / gs; recent Intel CPUs store only the 16-bit
			  * selector, AMD CPUs zero-extend: zero the slot first */
			uint8_t z[7] = { 0x6A, 0x00, 0x48, 0x8D, 0x64, 0x24, 0x08 }; /* push 0; lea rsp, [rsp+8] */
			emit_raw(g, z, 2);
			emit_raw(g, z + 2, 5);
			x.map = 1;
			x.op = rnd(2) ? 0xA0 : 0xA8;
		}
		break;
	}
	emit(g, &x);
}

static void setup_stack(struct gen *g)
{
	int k = rnd(20);
	if (k == 0)
		g->t->r[R_RSP] = STACK_ADDR + rnd(12); /* pushes fault */
	else if (k == 1)
		g->t->r[R_RSP] = STACK_ADDR + STACK_SIZE - rnd(12); /* pops fault */
}

/* ---- exchange and compare-exchange ---- */

static void gen_xchg(struct gen *g)
{
	struct ins x;
	int size = rsize();
	ins_init(&x, size);
	switch (rnd(8)) {
	case 0: case 1:
		x.op = size == 1 ? 0x86 : 0x87;
		rm_pick(g, &x, size, true);
		x.reg = pick_reg(g, &x, size, true);
		if (x.rm_mem && rnd(4) == 0)
			x.pfx |= PLOCK;
		emit(g, &x);
		return;
	case 2: /* xchg rAX, r; 90 is nop, 87 C0 is not */
		ins_init(&x, size248());
		x.op = 0x90;
		x.plusr = pick_reg(g, &x, 8, true);
		emit(g, &x);
		return;
	case 3: case 4: { /* cmpxchg */
		x.map = 1;
		x.op = size == 1 ? 0xB0 : 0xB1;
		rm_pick(g, &x, size, true);
		x.reg = pick_reg(g, &x, size, false);
		if (rnd(2)) { /* make it match: load the accumulator from the destination */
			struct ins y;
			ins_init(&y, size);
			y.hb = x.hb;
			y.op = size == 1 ? 0x8A : 0x8B;
			y.modrm = true;
			y.reg = R_RAX;
			y.rm_mem = x.rm_mem;
			y.rm = x.rm;
			y.m = x.m;
			y.rex40 = x.rex40;
			emit_setup(g, &y);
		}
		if (x.rm_mem && rnd(3) == 0)
			x.pfx |= PLOCK;
		fl_set(g, F_ARITH, 0);
		emit(g, &x);
		return;
	}
	case 5: case 6: { /* cmpxchg8b / cmpxchg16b */
		bool wide = rnd(2);
		int n = wide ? 16 : 8;
		uint64_t T = pick_target(g, n);
		if (rnd(10))
			T &= ~(uint64_t)(n - 1);
		if (rnd(2)) {
			emit_load(g, T, R_RAX, wide ? 8 : 4);
			emit_load(g, T + n / 2, R_RDX, wide ? 8 : 4);
		}
		ins_init(&x, wide ? 8 : 4);
		x.map = 1;
		x.op = 0xC7;
		x.digit = true;
		x.reg = 1;
		mem_build(g, &x, T);
		if (rnd(2))
			x.pfx |= PLOCK;
		emit(g, &x);
		fl_set(g, F_ZF, 0);
		return;
	}
	default: /* xadd */
		x.map = 1;
		x.op = size == 1 ? 0xC0 : 0xC1;
		rm_pick(g, &x, size, true);
		x.reg = pick_reg(g, &x, size, true);
		if (x.rm_mem && rnd(4) == 0)
			x.pfx |= PLOCK;
		emit(g, &x);
		fl_set(g, F_ARITH, 0);
		return;
	}
}

/* ---- bt bts btr btc ---- */

static void gen_bit(struct gen *g)
{
	struct ins x;
	int size = size248(), op = rnd(4);
	ins_init(&x, size);
	x.map = 1;
	switch (rnd(3)) {
	case 0: /* register offset, register operand: the offset wraps */
		x.op = 0xA3 + op * 8;
		x.modrm = true;
		x.rm = pick_reg(g, &x, size, op != 0);
		x.reg = pick_reg(g, &x, size, false);
		break;
	case 1: /* immediate offset: wraps, register or memory */
		x.op = 0xBA;
		x.digit = true;
		x.reg = 4 + op;
		rm_pick(g, &x, size, op != 0);
		x.isz = 1;
		x.imm = rnd(4) ? rnd(256) : rnd(size * 8);
		break;
	default: { /* register offset into memory: signed, beyond the operand */
		int bits = size * 8;
		int64_t lim = rnd(10) ? 0x500 * 8 : 0x6000 * 8;
		if (size == 2 && lim > 0x7fff)
			lim = 0x7fff;
		int64_t off = (int64_t)(rnd64() % (2 * lim + 1)) - lim;
		if (rnd(8) == 0)
			off = (int64_t)rnd(bits) - bits / 2;
		int r = alloc_addr_reg(g, false);
		if (r < 0) {
			x.op = 0xBA;
			x.digit = true;
			x.reg = 4 + op;
			rm_pick(g, &x, size, true);
			x.isz = 1;
			x.imm = rnd(256);
			break;
		}
		g->t->r[r] = size == 8 ? (uint64_t)off : (rnd64() & ~mask_of(size)) | ((uint64_t)off & mask_of(size));
		x.op = 0xA3 + op * 8;
		x.reg = r;
		mem_build(g, &x, DATA_ADDR + 0x600 + rnd(DATA_RW - 0xc00));
		break;
	}
	}
	if (op && x.rm_mem && rnd(4) == 0)
		x.pfx |= PLOCK;
	emit(g, &x);
	fl_set(g, F_CF, F_OF | F_SF | F_AF | F_PF);
}

/* ---- bsf bsr, tzcnt/lzcnt encodings (run as bsf/bsr), popcnt ---- */

static void gen_bitscan(struct gen *g)
{
	struct ins x;
	int size = size248(), k = rnd(5);
	ins_init(&x, size);
	x.map = 1;
	x.modrm = true;
	x.reg = pick_reg(g, &x, size, true);
	if (rnd(2)) {
		x.rm = pick_reg(g, &x, size, false);
		if (rnd(4) == 0 && reg_ok_dst(g, x.rm) && x.rm != x.reg) {
			struct ins y; /* a zero source */
			g->written |= 1u << x.rm;
			ins_init(&y, 4);
			y.op = 0xB8;
			y.plusr = x.rm;
			y.isz = 4;
			y.imm = rnd(4) ? 0 : rnd_val();
			emit_setup(g, &y);
		}
	} else {
		mem_build(g, &x, pick_target(g, size));
	}
	switch (k) {
	case 0: case 1: x.op = 0xBC + k; break;
	case 2: case 3: x.op = 0xBC + (k - 2); x.pfx |= PF3; break;
	default: x.op = 0xB8; x.pfx |= PF3; break;
	}
	g->f3_off = -1;
	emit(g, &x);
	/* the model has neither BMI1 nor LZCNT: the host runs plain bsf/bsr,
	 * with a ds prefix in place of the rep so that the length matches */
	if ((k == 2 || k == 3) && g->f3_off >= 0)
		g->t->ncode[g->f3_off] = 0x3E;
	if (k == 4)
		fl_set(g, F_ARITH, 0);
	else
		fl_set(g, F_ZF, F_CF | F_OF | F_SF | F_AF | F_PF);
}

/* ---- shifts and rotates ---- */

static uint8_t shift_count(int size)
{
	int w = size * 8;
	switch (rnd(8)) {
	case 0: return 0;
	case 1: return 1;
	case 2: return w - 1;
	case 3: return w;
	case 4: return w + 1;
	case 5: return (uint8_t)(rnd(2) ? 32 + rnd(2) : 64 + rnd(2));
	case 6: return (uint8_t)rnd(256);
	default: return (uint8_t)rnd(w);
	}
}

static void emit_mov_cl(struct gen *g, uint8_t v)
{
	uint8_t b[2] = { 0xB1, v };
	emit_raw(g, b, 2);
}

static void gen_shift(struct gen *g)
{
	struct ins x;
	int k = rnd(10);
	if (k < 8) {
		int size = rsize(), form = rnd(3);
		uint8_t n = form == 0 ? 1 : shift_count(size);
		ins_init(&x, size);
		if (k == 2 || k == 3)
			fl_need(g, F_CF);
		if (form == 2)
			emit_mov_cl(g, n);
		x.op = form == 0 ? (size == 1 ? 0xD0 : 0xD1) : form == 1 ? (size == 1 ? 0xC0 : 0xC1) : (size == 1 ? 0xD2 : 0xD3);
		x.digit = true;
		x.reg = k;
		bool had_rcx = g->fixed >> R_RCX & 1;
		if (form == 2)
			g->fixed |= 1u << R_RCX; /* keep the count */
		rm_pick(g, &x, size, true);
		if (!had_rcx)
			g->fixed &= ~(1u << R_RCX);
		if (form == 1) {
			x.isz = 1;
			x.imm = n;
		}
		emit(g, &x);
		int mc = n & (size == 8 ? 63 : 31);
		if (mc == 0)
			return;
		uint32_t of = mc == 1 ? 0 : F_OF;
		if (k <= 3) /* rotates: CF, and OF for 1 */
			fl_set(g, F_CF | (F_OF & ~of), of);
		else if ((k == 4 || k == 5 || k == 6) && mc >= size * 8)
			fl_set(g, F_SF | F_ZF | F_PF, F_CF | F_AF | F_OF);
		else
			fl_set(g, F_CF | F_SF | F_ZF | F_PF | (F_OF & ~of), F_AF | of);
		return;
	}
	/* shld / shrd */
	int size = size248(), form = rnd(2);
	uint8_t n = shift_count(size);
	ins_init(&x, size);
	x.map = 1;
	x.op = (k == 8 ? 0xA4 : 0xAC) + form;
	bool had_rcx = g->fixed >> R_RCX & 1;
	if (form == 1) {
		g->fixed |= 1u << R_RCX;
		emit_mov_cl(g, n);
	}
	rm_pick(g, &x, size, true);
	x.reg = pick_reg(g, &x, size, false);
	if (!had_rcx)
		g->fixed &= ~(1u << R_RCX);
	int mc = n & (size == 8 ? 63 : 31);
	if (mc > size * 8 && x.rm_mem) { /* result undefined: keep memory defined */
		mc = size * 8;
		n = (uint8_t)mc;
		if (form == 1)
			g->t->code[g->n - 1] = g->t->ncode[g->n - 1] = n;
	}
	if (form == 0) {
		x.isz = 1;
		x.imm = n;
	}
	emit(g, &x);
	if (mc == 0)
		return;
	if (mc > size * 8) {
		g->t->reg_undef |= 1u << x.rm;
		fl_set(g, 0, F_ARITH);
		return;
	}
	uint32_t of = mc == 1 ? 0 : F_OF;
	fl_set(g, F_CF | F_SF | F_ZF | F_PF | (F_OF & ~of), F_AF | of);
}

/* ---- multiply and divide ---- */

static void gen_muldiv(struct gen *g)
{
	struct ins x;
	int k = rnd(9);
	if (k <= 1) { /* mul / imul, one operand */
		int size = rsize();
		ins_init(&x, size);
		x.op = size == 1 ? 0xF6 : 0xF7;
		x.digit = true;
		x.reg = 4 + k;
		rm_pick(g, &x, size, false);
		emit(g, &x);
		fl_set(g, F_CF | F_OF, F_SF | F_ZF | F_AF | F_PF);
		return;
	}
	if (k <= 4) { /* imul r, r/m; imul r, r/m, imm */
		int size = size248();
		ins_init(&x, size);
		x.modrm = true;
		x.reg = pick_reg(g, &x, size, true);
		rm_pick(g, &x, size, false);
		if (k == 2) {
			x.map = 1;
			x.op = 0xAF;
		} else if (k == 3) {
			x.op = 0x69;
			x.isz = imm_size(size);
			x.imm = rnd_val();
		} else {
			x.op = 0x6B;
			x.isz = 1;
			x.imm = rnd_val();
		}
		emit(g, &x);
		fl_set(g, F_CF | F_OF, F_SF | F_ZF | F_AF | F_PF);
		return;
	}
	/* div / idiv with a chosen dividend and divisor */
	int size = rsize(), bits = size * 8;
	bool sign = k >= 7;
	uint64_t m = mask_of(size);
	uint64_t dv = rnd_val() & m, lo = rnd_val() & m, hi;
	int sc = rnd(20);
	if (dv == 0 && sc > 0)
		dv = (1 + rnd(1000)) & m ? (1 + rnd(1000)) & m : 1;
	if (sc == 0) {
		dv = 0;
		hi = rnd_val() & m;
	} else if (sc <= 3) { /* overflow */
		if (sign) {
			dv = m; /* -1 */
			hi = m;
			lo = 1ull << (bits - 1);
		} else {
			hi = dv + (rnd_val() & m) % (m - dv + 1);
		}
	} else if (sc <= 6) {
		hi = rnd_val() & m;
	} else if (sign) {
		hi = (lo >> (bits - 1)) & 1 ? m : 0;
	} else {
		hi = dv ? (rnd_val() & m) % dv : 0;
	}
	g->fixed |= 1u << R_RAX | 1u << R_RDX;
	if (size == 1) {
		emit_movabs(g, R_RAX, (rnd64() & ~0xffffull) | hi << 8 | lo);
	} else {
		emit_movabs(g, R_RAX, (size == 8 ? 0 : rnd64() & ~m) | lo);
		emit_movabs(g, R_RDX, (size == 8 ? 0 : rnd64() & ~m) | hi);
	}
	uint64_t full = (size == 8 ? 0 : rnd64() & ~m) | dv;
	ins_init(&x, size);
	x.op = size == 1 ? 0xF6 : 0xF7;
	x.digit = true;
	x.reg = 6 + sign;
	if (rnd(2)) {
		int r = pick_scratch(g, 0);
		emit_movabs(g, r, full);
		x.modrm = true;
		if (size == 1 && r >= 4 && r < 8)
			x.rex40 = true;
		x.rm = r;
		x.hb = false;
	} else {
		int r = pick_scratch(g, 0);
		uint64_t T = DATA_ADDR + 0x100 + rnd(DATA_RW - 0x200);
		emit_movabs(g, r, full);
		emit_store(g, T, r, size);
		x.hb = false;
		mem_build(g, &x, T);
	}
	g->fixed &= ~(1u << R_RAX | 1u << R_RDX);
	emit(g, &x);
	fl_set(g, 0, F_ARITH);
}

/* ---- setcc cmovcc jcc loop jrcxz ---- */

/* mov r32, imm32: what a skipped or looped-over region does */
static void emit_mark(struct gen *g)
{
	struct ins y;
	ins_init(&y, 4);
	y.op = 0xB8;
	y.plusr = pick_scratch(g, 1u << R_RCX);
	y.isz = 4;
	y.imm = rnd64();
	emit_setup(g, &y);
}

static void gen_cond(struct gen *g)
{
	struct ins x;
	int cc = rnd(16);
	switch (rnd(8)) {
	case 0: case 1: /* setcc */
		ins_init(&x, 1);
		x.map = 1;
		x.op = 0x90 + cc;
		x.digit = true;
		x.reg = rnd(8); /* the reg field is ignored */
		rm_pick(g, &x, 1, true);
		emit(g, &x);
		return;
	case 2: case 3: { /* cmovcc; the source is read even when false */
		int size = size248();
		ins_init(&x, size);
		x.map = 1;
		x.op = 0x40 + cc;
		x.modrm = true;
		x.reg = pick_reg(g, &x, size, true);
		rm_pick(g, &x, size, false);
		emit(g, &x);
		return;
	}
	case 4: { /* jcc forward over a mov */
		bool near = rnd(2);
		int off;
		if (near) {
			uint8_t b[6] = { 0x0F, (uint8_t)(0x80 + cc), 0, 0, 0, 0 };
			emit_raw(g, b, 6);
			off = g->n - 4;
		} else {
			uint8_t b[2] = { (uint8_t)(0x70 + cc), 0 };
			emit_raw(g, b, 2);
			off = g->n - 1;
		}
		form_add(g->forms, 0x1000 + cc * 2 + near);
		emit_mark(g);
		if (rnd(3) == 0)
			emit_mark(g);
		if (near)
			patch_rel32(g, off, g->n);
		else
			patch_rel8(g, off, g->n);
		return;
	}
	case 5: { /* a counted loop closed by a backward jcc */
		static const uint8_t ccs[4] = { 0x5, 0xF, 0x7, 0x9 };
		int c = ccs[rnd(4)];
		int r = pick_scratch(g, 1u << R_RCX);
		uint16_t save = g->fixed;
		g->fixed |= 1u << r;
		struct ins y;
		ins_init(&y, 4);
		y.op = 0xB8;
		y.plusr = r;
		y.isz = 4;
		y.imm = 1 + rnd(20);
		emit_setup(g, &y);
		int top = g->n;
		emit_mark(g);
		ins_init(&y, 8); /* dec r */
		y.op = 0xFF;
		y.digit = true;
		y.reg = 1;
		y.modrm = true;
		y.rm = r;
		emit_setup(g, &y);
		bool near = rnd(2);
		if (near) {
			uint8_t b[6] = { 0x0F, (uint8_t)(0x80 + c), 0, 0, 0, 0 };
			emit_raw(g, b, 6);
			patch_rel32(g, g->n - 4, top);
		} else {
			uint8_t b[2] = { (uint8_t)(0x70 + c), 0 };
			emit_raw(g, b, 2);
			patch_rel8(g, g->n - 1, top);
		}
		form_add(g->forms, 0x2000 + c * 2 + near);
		g->fixed = save;
		return;
	}
	case 6: { /* loop / loope / loopne */
		int op = 0xE0 + rnd(3);
		bool a32 = rnd(3) == 0;
		uint64_t n = 1 + rnd(24);
		emit_movabs(g, R_RCX, a32 ? (rnd64() << 32) | n : n);
		g->fixed |= 1u << R_RCX;
		int top = g->n;
		struct ins y; /* the body sets ZF now and then */
		ins_init(&y, 8);
		y.op = 0x83;
		y.digit = true;
		y.reg = rnd(2) ? 7 : 0;
		y.modrm = true;
		y.rm = pick_scratch(g, 1u << R_RCX);
		y.isz = 1;
		y.imm = rnd(3);
		emit_setup(g, &y);
		uint8_t b[3] = { 0x67, (uint8_t)op, 0 };
		emit_raw(g, a32 ? b : b + 1, a32 ? 3 : 2);
		patch_rel8(g, g->n - 1, top);
		form_add(g->forms, 0x3000 + op * 2 + a32);
		g->fixed &= ~(1u << R_RCX);
		fl_set(g, F_ARITH, 0);
		return;
	}
	default: { /* jrcxz / jecxz forward */
		bool a32 = rnd(3) == 0;
		static const uint64_t vals[5] = { 0, 1, 1ull << 32, 0xffffffff00000000ull, 0x80000000 };
		emit_movabs(g, R_RCX, rnd(4) ? vals[rnd(5)] : rnd64());
		uint8_t b[3] = { 0x67, 0xE3, 0 };
		emit_raw(g, a32 ? b : b + 1, a32 ? 3 : 2);
		int off = g->n - 1;
		form_add(g->forms, 0x4000 + a32);
		emit_mark(g);
		patch_rel8(g, off, g->n);
		return;
	}
	}
}

/* ---- conversions, flag instructions, pushf/popf, xlat, nops ---- */

static void gen_misc(struct gen *g)
{
	struct ins x;
	switch (rnd(16)) {
	case 0: case 1: /* cbw cwde cdqe / cwd cdq cqo */
		ins_init(&x, size248());
		x.op = 0x98 + rnd(2);
		emit(g, &x);
		return;
	case 2: { /* bswap; the 16-bit form is undefined */
		int size = rnd(8) ? (rnd(2) ? 4 : 8) : 2;
		ins_init(&x, size);
		x.map = 1;
		x.op = 0xC8;
		x.plusr = pick_reg(g, &x, 8, true);
		emit(g, &x);
		if (size == 2)
			g->t->reg_undef |= 1u << x.plusr;
		return;
	}
	case 3: /* lahf */
		fl_need(g, F_ARITH);
		ins_init(&x, 4);
		x.op = 0x9F;
		emit(g, &x);
		return;
	case 4: /* sahf */
		ins_init(&x, 4);
		x.op = 0x9E;
		emit(g, &x);
		fl_set(g, F_SF | F_ZF | F_AF | F_PF | F_CF, 0);
		return;
	case 5: { /* clc stc cmc cld std */
		static const uint8_t ops[5] = { 0xF8, 0xF9, 0xF5, 0xFC, 0xFD };
		ins_init(&x, 4);
		x.op = ops[rnd(5)];
		if (x.op == 0xF5)
			fl_need(g, F_CF);
		emit(g, &x);
		return;
	}
	case 6: /* pushf */
		fl_need(g, F_ARITH);
		ins_init(&x, rnd(4) ? 4 : 2);
		x.op = 0x9C;
		emit(g, &x);
		return;
	case 7: case 8: { /* popf of a value pushed just before */
		bool w16 = rnd(4) == 0;
		uint64_t v = rnd64() & (F_ARITH | F_DF | F_NT | F_ID | 0x8000 | 0x28);
		v |= F_IF | 2;
		if (rnd(4) == 0)
			v |= F_IOPL & rnd64(); /* ignored at CPL 3 */
		struct ins y;
		ins_init(&y, w16 ? 2 : 4);
		y.op = 0x68;
		y.isz = w16 ? 2 : 4;
		y.imm = v;
		emit_setup(g, &y);
		bool tf = rnd(5) == 0;
		if (tf) { /* single-step: #DB after the instruction that follows */
			y.imm |= F_TF;
			memcpy(g->t->code + g->n - y.isz, &y.imm, y.isz);
			memcpy(g->t->ncode + g->n - y.isz, &y.imm, y.isz);
		}
		ins_init(&x, w16 ? 2 : 4);
		x.op = 0x9D;
		emit(g, &x);
		fl_set(g, F_ARITH, 0);
		g->t->flag_extra |= F_NT | F_ID | F_IF | F_TF;
		if (tf) {
			static const uint8_t next[][6] = {
				{ 1, 0x90 }, { 1, 0xF5 }, { 3, 0x48, 0xFF, 0xC0 }, { 4, 0x48, 0x83, 0xC1, 0x05 },
				{ 1, 0x9C }, { 1, 0xCC }, { 2, 0xCD, 0x03 }, { 2, 0x0F, 0x0B },
				{ 5, 0xB8, 0x2b, 0, 0, 0 }, { 2, 0x8E, 0xD0 }, /* mov eax, 0x2b; mov ss, eax */
				{ 2, 0x6A, 0x2b }, { 1, 0x17 }, /* push 0x2b; pop ss (invalid in 64-bit mode) */
				{ 3, 0x48, 0x31, 0xC0 },
			};
			int k = rnd(sizeof(next) / sizeof(next[0]));
			if (k == 9 || k == 11)
				k--;
			if (k == 8 || k == 10) { /* mov ss / pop ss with its selector set up */
				emit_raw(g, next[k] + 1, next[k][0]);
				k++;
			}
			emit_raw(g, next[k] + 1, next[k][0]);
			form_add(g->forms, 0x7000 + k);
			if (k == 9) { /* the trap waits one more instruction */
				uint8_t nop = 0x90;
				emit_raw(g, &nop, 1);
			}
			g->stop = true;
		}
		g->t->cpl3_only |= (v & F_IOPL) != 0; /* CPL 0 may change IOPL */
		return;
	}
	case 9: { /* xlat: rbx holds the table (setup_misc) */
		bool a32 = rnd(4) == 0;
		ins_init(&x, rnd(2) ? 8 : 4);
		x.op = 0xD7;
		if (a32)
			x.pfx |= P67;
		emit(g, &x);
		return;
	}
	case 14: case 15: { /* lar lsl verr verw: descriptors read at CPL 3; the
			    * GDT is Linux's (not its per-CPU entry 0x78) */
		static const uint16_t sels[] = { 0, 3, 0x08, 0x10, 0x18, 0x1b, 0x23, 0x28, 0x2b, 0x30, 0x33,
						 0x38, 0x40, 0x43, 0x60, 0x6b, 0x80, 0x2f, 0xfff3 };
		int r = pick_scratch(g, 0);
		struct ins y;
		g->t->cpl3_only = true; /* CPL 0 may see the kernel's descriptors */
		ins_init(&y, 4);
		y.op = 0xB8;
		y.plusr = r;
		y.isz = 4;
		y.imm = (rnd64() & 0xffff0000) | sels[rnd(sizeof(sels) / sizeof(sels[0]))];
		emit_setup(g, &y);
		int k = rnd(4);
		ins_init(&x, k < 2 ? size248() : 4);
		x.map = 1;
		x.modrm = true;
		if (k < 2) {
			x.op = 0x02 + k; /* lar, lsl */
			x.reg = pick_reg(g, &x, 8, true);
		} else {
			x.op = 0x00;
			x.digit = true;
			x.reg = k + 2; /* verr /4, verw /5 */
		}
		if (rnd(3)) {
			x.rm = r;
		} else {
			uint64_t T = DATA_ADDR + 0x100 + rnd(DATA_RW - 0x200);
			emit_store(g, T, r, 2);
			mem_build(g, &x, T);
		}
		emit(g, &x);
		fl_set(g, F_ZF, 0);
		return;
	}
	case 10: { /* nop, 66 nop, pause */
		static const uint8_t b[3][2] = { { 0x90 }, { 0x66, 0x90 }, { 0xF3, 0x90 } };
		int k = rnd(3);
		emit_raw(g, b[k], k ? 2 : 1);
		form_add(g->forms, 0x5000 + k);
		return;
	}
	default: { /* 0F 1F /0, hint nops 0F 19..1F, prefetch 0F 18 and 0F 0D: no access */
		int k = rnd(4);
		ins_init(&x, rnd(3) == 0 ? 2 : 4);
		x.map = 1;
		x.modrm = x.digit = true;
		if (k == 0) {
			x.op = 0x1F;
			x.reg = 0;
		} else if (k == 1) {
			x.op = 0x19 + rnd(6); /* 19..1E, not 1E with F3 */
			x.reg = rnd(8);
		} else if (k == 2) {
			x.op = 0x18;
			x.reg = rnd(4);
		} else {
			x.op = 0x0D;
			x.reg = rnd(2);
		}
		if (k < 2 && rnd(3) == 0) {
			x.rm = rnd(16);
		} else {
			struct mem *m = &x.m;
			x.rm_mem = true;
			m->base = rnd(3) ? (int)rnd(16) : -1;
			m->index = rnd(2) ? -1 : (int)rnd(16);
			if (m->index == R_RSP)
				m->index = -1;
			m->scale = rnd(4);
			m->dsz = m->base < 0 ? 4 : rnd(3) == 2 ? 4 : rnd(2);
			m->disp = rnd_disp(m->dsz == 1 ? 1 : 4);
			m->a32 = rnd(6) == 0;
			if (rnd(8) == 0) {
				m->rip = true;
				m->target = DATA_ADDR + 0x8000 + rnd(0x8000);
			}
			x.form_extra = (m->base >= 0) | (m->index >= 0) << 1 | m->rip << 2 | m->dsz << 3;
		}
		emit(g, &x);
		return;
	}
	}
}

static void setup_misc(struct gen *g)
{
	g->busy |= 1u << R_RBX;
	g->fixed |= 1u << R_RBX;
	g->t->r[R_RBX] = DATA_ADDR + rnd(DATA_SIZE - 0x100);
}

/* ---- string instructions ---- */

static void gen_string(struct gen *g)
{
	static const uint8_t ops[5] = { 0xA4, 0xAA, 0xAC, 0xA6, 0xAE }; /* movs stos lods cmps scas */
	int k = rnd(5), size = rsize();
	bool a32 = rnd(5) == 0;
	bool down = rnd(2);
	int pre = rnd(6); /* 0: none, 1-3: F3, 4-5: F2 */
	if (k < 3 && pre >= 4 && rnd(2))
		pre = 1;
	bool rep = pre != 0;
	/* count */
	uint64_t n;
	switch (rnd(6)) {
	case 0: n = 0; break;
	case 1: n = 1; break;
	case 2: n = 2 + rnd(15); break;
	case 3: n = 17 + rnd(300); break;
	case 4: n = (rnd(0x3000) + 1) / size; break;
	default: n = rnd(64); break;
	}
	/* placement: the whole run inside the data pages (the source may be
	 * in the read-only page), except now and then */
	int64_t span = (int64_t)(n * size) + 16;
	if (span > DATA_RW - 0x100)
		span = DATA_RW - 0x100;
	uint64_t S, D;
	if (down) {
		S = DATA_ADDR + span + rnd(DATA_SIZE - span - 16);
		D = DATA_ADDR + span + rnd(DATA_RW - span - 16);
	} else {
		S = DATA_ADDR + rnd(DATA_SIZE - span);
		D = DATA_ADDR + rnd(DATA_RW - span);
	}
	if (k == 0 && rnd(3) == 0) { /* overlapping movs */
		int64_t d = (int64_t)rnd(4 * size + 1) - 2 * size;
		D = S + d;
		if (D + span > DATA_ADDR + DATA_RW)
			D = DATA_ADDR + DATA_RW - span, S = D - d;
		if (down && D < DATA_ADDR + span)
			D = DATA_ADDR + span, S = D - d;
	}
	if (rnd(12) == 0) /* off the end, or into the read-only page */
		D = DATA_ADDR + DATA_SIZE - rnd(64) - (down ? 0 : rnd(256));
	uint64_t rcx = n, rsi = S, rdi = D;
	if (a32) {
		rcx = rnd64() << 32 | (uint32_t)n;
		rsi = rnd64() << 32 | (uint32_t)S;
		rdi = rnd64() << 32 | (uint32_t)D;
	}
	emit_movabs(g, R_RSI, rsi);
	emit_movabs(g, R_RDI, rdi);
	if (rep || rnd(2))
		emit_movabs(g, R_RCX, rcx);
	if (k >= 3 && rnd(2)) {
		static const uint64_t av[4] = { 0, 0xff, 0xffffffffffffffffull, 0x0101010101010101ull };
		emit_movabs(g, R_RAX, rnd(3) ? av[rnd(4)] : rnd64());
	}
	uint8_t b = down ? 0xFD : 0xFC;
	if (rnd(4))
		emit_raw(g, &b, 1);
	if (rnd(10) == 0) { /* single-step: #DB after each iteration */
		uint8_t pf[6] = { 0x68 };
		uint32_t v = 0x202 | F_TF | (down ? F_DF : 0) | (rnd64() & F_ARITH);
		memcpy(pf + 1, &v, 4);
		pf[5] = 0x9D;
		emit_raw(g, pf, 5);
		emit_raw(g, pf + 5, 1);
		g->t->flag_extra |= F_TF;
		g->stop = true;
	}
	struct ins x;
	ins_init(&x, size);
	x.hb = false;
	x.op = ops[k] + (size > 1);
	if (pre >= 1 && pre <= 3)
		x.pfx |= PF3;
	else if (pre >= 4)
		x.pfx |= PF2;
	if (a32)
		x.pfx |= P67;
	if ((k == 0 || k == 2 || k == 3) && rnd(8) == 0)
		x.pfx |= (unsigned[]){ PCS, PDS, PES, PSS }[rnd(4)]; /* no effect in 64-bit mode */
	emit(g, &x);
	if (k >= 3 && (!rep || n))
		fl_set(g, F_ARITH, 0);
}

static void setup_string(struct gen *g)
{
	g->busy |= 1u << R_RSI | 1u << R_RDI | 1u << R_RCX | 1u << R_RAX;
	g->rsp_free = false;
	g->fixed |= 1u << R_RSP;
}

/* ---- call ret jmp enter leave ---- */

static void emit_body(struct gen *g)
{
	struct ins y; /* add r, imm8: something the path leaves behind */
	ins_init(&y, 8);
	y.op = 0x83;
	y.digit = true;
	y.reg = 0;
	y.modrm = true;
	y.rm = pick_scratch(g, 1u << R_RBP);
	y.isz = 1;
	y.imm = rnd(256);
	emit_setup(g, &y);
	fl_set(g, F_ARITH, 0);
}

static void gen_control(struct gen *g)
{
	uint8_t b[16];
	switch (rnd(10)) {
	case 0: { /* call rel32 over filler, then pop the return address */
		int k = rnd(12);
		b[0] = 0xE8;
		memset(b + 1, 0, 4);
		emit_raw(g, b, 5);
		form_add(g->forms, 0xE8);
		int off = g->n - 4;
		emit_filler(g, k);
		patch_rel32(g, off, g->n);
		struct ins x;
		ins_init(&x, 4);
		x.op = 0x58;
		x.plusr = pick_scratch(g, 1u << R_RBP);
		emit(g, &x);
		return;
	}
	case 1: case 2: { /* call a subroutine that returns (ret or ret imm16) */
		int how = rnd(3); /* 0: rel32, 1: register, 2: memory */
		int lea_off = -1, r = -1;
		struct ins x;
		if (how) {
			r = pick_scratch(g, 1u << R_RBP);
			lea_off = emit_lea_rip(g, r);
		}
		if (how == 2) {
			uint64_t T = DATA_ADDR + 0x100 + rnd(DATA_RW - 0x200);
			emit_store(g, T, r, 8);
			ins_init(&x, 4);
			x.op = 0xFF;
			x.digit = true;
			x.reg = 2;
			mem_build(g, &x, T);
			emit(g, &x);
		} else if (how == 1) {
			ins_init(&x, 4);
			x.op = 0xFF;
			x.digit = true;
			x.reg = 2;
			x.modrm = true;
			x.rm = r;
			emit(g, &x);
		} else {
			b[0] = 0xE8;
			memset(b + 1, 0, 4);
			emit_raw(g, b, 5);
			form_add(g->forms, 0xE8);
		}
		int call_off = g->n - 4;
		b[0] = 0xEB;
		b[1] = 0;
		emit_raw(g, b, 2);
		form_add(g->forms, 0xEB);
		int out_off = g->n - 1;
		int sub = g->n;
		if (how == 0)
			patch_rel32(g, call_off, sub);
		else
			patch_rel32(g, lea_off, sub);
		emit_body(g);
		if (rnd(3) == 0) {
			uint16_t imm = rnd(2) ? 8 * rnd(4) : rnd(64);
			b[0] = 0xC2;
			b[1] = (uint8_t)imm;
			b[2] = (uint8_t)(imm >> 8);
			emit_raw(g, b, 3);
			form_add(g->forms, 0xC2);
		} else {
			b[0] = 0xC3;
			emit_raw(g, b, 1);
			form_add(g->forms, 0xC3);
		}
		patch_rel8(g, out_off, g->n);
		return;
	}
	case 3: case 4: { /* jmp rel8 / rel32 / register / memory over filler */
		int how = rnd(4), off, r;
		struct ins x;
		if (how == 0) {
			b[0] = 0xEB;
			b[1] = 0;
			emit_raw(g, b, 2);
			off = g->n - 1;
		} else if (how == 1) {
			b[0] = 0xE9;
			memset(b + 1, 0, 4);
			emit_raw(g, b, 5);
			off = g->n - 4;
		} else {
			r = pick_scratch(g, 1u << R_RBP);
			off = emit_lea_rip(g, r);
			ins_init(&x, 4);
			x.op = 0xFF;
			x.digit = true;
			x.reg = 4;
			if (how == 2) {
				x.modrm = true;
				x.rm = r;
			} else {
				uint64_t T = DATA_ADDR + 0x100 + rnd(DATA_RW - 0x200);
				emit_store(g, T, r, 8);
				mem_build(g, &x, T);
			}
			emit(g, &x);
		}
		form_add(g->forms, 0xE900 + how);
		emit_filler(g, rnd(20));
		if (how == 0)
			patch_rel8(g, off, g->n);
		else
			patch_rel32(g, off, g->n);
		return;
	}
	case 5: { /* push the address, ret */
		b[0] = 0x68;
		emit_raw(g, b, 5);
		int at = g->n - 4;
		b[0] = 0xC3;
		emit_raw(g, b, 1);
		emit_filler(g, rnd(8));
		uint32_t target = (uint32_t)(CODE_ADDR + g->n);
		memcpy(g->t->code + at, &target, 4);
		memcpy(g->t->ncode + at, &target, 4);
		form_add(g->forms, 0x68C3);
		return;
	}
	case 6: case 7: { /* enter, then maybe leave */
		static const uint16_t sizes[5] = { 0, 8, 0x20, 0x18, 0x100 };
		uint16_t imm = rnd(3) ? sizes[rnd(5)] : (uint16_t)rnd(0x200);
		uint8_t level = rnd(3) ? (uint8_t)rnd(4) : (uint8_t)rnd(40);
		b[0] = 0xC8;
		b[1] = (uint8_t)imm;
		b[2] = (uint8_t)(imm >> 8);
		b[3] = level;
		emit_raw(g, b, 4);
		form_add(g->forms, 0xC800 + ((level & 31) > 1 ? 2 : level & 31));
		if (rnd(3)) {
			bool w16 = rnd(8) == 0;
			b[0] = 0x66;
			b[1] = 0xC9;
			emit_raw(g, w16 ? b : b + 1, w16 ? 2 : 1);
			form_add(g->forms, 0xC900 + w16);
		}
		return;
	}
	case 8: { /* leave alone: rbp becomes stack data, so it comes last */
		g->stop = true;
		b[0] = 0xC9;
		emit_raw(g, b, 1);
		form_add(g->forms, 0xC900);
		return;
	}
	default: { /* call rel32 to a target that returns at once */
		b[0] = 0xE8;
		memset(b + 1, 0, 4);
		emit_raw(g, b, 5);
		int off = g->n - 4;
		b[0] = 0xEB;
		b[1] = 1;
		emit_raw(g, b, 2);
		patch_rel32(g, off, g->n);
		b[0] = 0xC3;
		emit_raw(g, b, 1);
		form_add(g->forms, 0xE8C3);
		return;
	}
	}
}

static void setup_control(struct gen *g)
{
	g->busy |= 1u << R_RBP;
	g->fixed |= 1u << R_RBP;
	g->t->r[R_RBP] = STACK_MID + ((int)rnd(0x200) - 0x100) * 8 / 8;
	if (rnd(20) == 0) /* calls and enter fault on the stack */
		g->t->r[R_RSP] = STACK_ADDR + rnd(24);
}

/* ---- far call, jmp, ret and iret to the same privilege level ---- */

/* mov qword/dword [rsp + off], imm32 */
static void emit_store_rsp(struct gen *g, bool q, uint8_t off, uint32_t v)
{
	uint8_t b[9] = { 0x48, 0xC7, 0x44, 0x24, off };
	memcpy(b + 5, &v, 4);
	if (q)
		emit_raw(g, b, 9);
	else
		emit_raw(g, b + 1, 8);
}

/* AMD CPUs ignore REX.W on an indirect far call or jmp (m16:32 only);
 * the model is Intel's, whose m16:64 form unit_cpu.c covers */
static bool host_amd;

static void gen_far(struct gen *g)
{
	uint8_t b[16];
	struct tcase *t = g->t;
	switch (rnd(3)) {
	case 0: { /* iretq / iretd to CPL 3 with a frame built on the stack */
		bool q = rnd(4) != 0;
		int slot = q ? 8 : 4;
		uint32_t fl = 0x202 | (rnd64() & (F_ARITH | F_DF));
		if (rnd(3) == 0) /* bits CPL 3 may or may not change */
			fl |= rnd64() & (F_NT | F_ID | F_VIF | F_VIP | F_IOPL | F_RF | 0x28);
		if (rnd(4) == 0)
			fl &= ~F_IF;
		if (rnd(16) == 0) { /* NT set before the iret: #GP in IA-32e mode */
			uint8_t nt[6] = { 0x68 };
			uint32_t v = 0x202 | F_NT;
			memcpy(nt + 1, &v, 4);
			emit_raw(g, nt, 5);
			nt[0] = 0x9D;
			emit_raw(g, nt, 1);
		}
		uint8_t sub[4] = { 0x48, 0x83, 0xEC, (uint8_t)(5 * slot) };
		emit_raw(g, sub, 4);
		int at = g->n;
		emit_store_rsp(g, q, 0, 0);
		emit_store_rsp(g, q, slot, SEL_UCODE);
		emit_store_rsp(g, q, 2 * slot, fl);
		emit_store_rsp(g, q, 3 * slot, 0); /* patched: rsp before the sub */
		emit_store_rsp(g, q, 4 * slot, SEL_UDATA);
		b[0] = 0x48;
		b[1] = 0xCF;
		emit_raw(g, q ? b : b + 1, q ? 2 : 1);
		form_add(g->forms, 0xCF00 + q);
		uint32_t target = (uint32_t)(CODE_ADDR + g->n);
		int len = q ? 9 : 8;
		memcpy(t->code + at + len - 4, &target, 4);
		memcpy(t->ncode + at + len - 4, &target, 4);
		uint32_t sp = (uint32_t)g->rsp;
		memcpy(t->code + at + 4 * len - 4, &sp, 4);
		memcpy(t->ncode + at + 4 * len - 4, &sp, 4);
		t->flag_extra |= F_NT | F_ID | F_VIF | F_VIP | F_IOPL | F_IF;
		fl_set(g, F_ARITH, 0);
		return;
	}
	case 1: { /* call far [m] to a routine that returns far */
		int kind = rnd(8); /* 0-4: m16:64 + retfq, 5-6: m16:32 + retfd, 7: mixed */
		bool cq = kind <= 4 || (kind == 7 && rnd(2)), rq = kind <= 4 || (kind == 7 && !cq);
		if (host_amd && cq) {
			cq = false;
			rq = kind == 7 || rnd(2);
		}
		uint64_t T = DATA_ADDR + 0x100 + rnd(DATA_RW - 0x200);
		int r = pick_scratch(g, 0);
		int lea_off = emit_lea_rip(g, r);
		emit_store(g, T, r, cq ? 8 : 4);
		uint8_t sel[7] = { 0xB8 | (r & 7) };
		struct ins y; /* mov word [T + 4 or 8], sel */
		ins_init(&y, 2);
		y.op = 0xC7;
		y.digit = true;
		y.reg = 0;
		y.isz = 2;
		y.imm = SEL_UCODE;
		mem_build(g, &y, T + (cq ? 8 : 4));
		emit_setup(g, &y);
		(void)sel;
		struct ins x;
		ins_init(&x, cq ? 8 : 4);
		x.op = 0xFF;
		x.digit = true;
		x.reg = 3;
		mem_build(g, &x, T);
		emit(g, &x);
		b[0] = 0xEB;
		b[1] = 0;
		emit_raw(g, b, 2);
		int out = g->n - 1;
		patch_rel32(g, lea_off, g->n);
		emit_body(g);
		bool imm = rnd(3) == 0;
		uint16_t pop = imm ? 8 * rnd(3) : 0;
		int k = 0;
		if (rq)
			b[k++] = 0x48;
		b[k++] = imm ? 0xCA : 0xCB;
		if (imm) {
			b[k++] = (uint8_t)pop;
			b[k++] = (uint8_t)(pop >> 8);
		}
		emit_raw(g, b, k);
		form_add(g->forms, 0xCA00 + rq * 2 + imm);
		patch_rel8(g, out, g->n);
		g->rsp += pop;
		if (cq != rq)
			g->stop = true; /* #GP: cs 0 from the wrong half of the frame */
		return;
	}
	default: { /* jmp far [m] */
		bool q = rnd(3) != 0 && !host_amd;
		uint64_t T = DATA_ADDR + 0x100 + rnd(DATA_RW - 0x200);
		int r = pick_scratch(g, 0);
		int lea_off = emit_lea_rip(g, r);
		emit_store(g, T, r, q ? 8 : 4);
		struct ins y;
		ins_init(&y, 2);
		y.op = 0xC7;
		y.digit = true;
		y.reg = 0;
		y.isz = 2;
		static const uint16_t sels[] = { SEL_UCODE, SEL_UCODE, SEL_UCODE, SEL_UCODE, SEL_UDATA, SEL_KCODE, 0 };
		y.imm = sels[rnd(sizeof(sels) / sizeof(sels[0]))];
		mem_build(g, &y, T + (q ? 8 : 4));
		emit_setup(g, &y);
		struct ins x;
		ins_init(&x, q ? 8 : 4);
		x.op = 0xFF;
		x.digit = true;
		x.reg = 5;
		mem_build(g, &x, T);
		emit(g, &x);
		emit_filler(g, rnd(8));
		patch_rel32(g, lea_off, g->n);
		if (y.imm != SEL_UCODE)
			g->stop = true;
		return;
	}
	}
}

static void setup_far(struct gen *g)
{
	g->t->cpl3_only = true; /* user selectors */
	g->rsp = g->t->r[R_RSP];
}

/* ---- self-modifying code: stores into instructions about to run, and
 * into one that already ran (the decoded-instruction cache must notice) ---- */

static void gen_smc(struct gen *g)
{
	struct tcase *t = g->t;
	int r = pick_scratch(g, 1u << R_RCX);
	switch (rnd(3)) {
	case 0: { /* patch the immediate of the next instruction: mov byte/dword [rip+d], imm */
		bool dw = rnd(2);
		uint8_t b[11] = { 0xC6, 0x05 };
		int len = dw ? 10 : 7;
		if (dw)
			b[0] = 0xC7;
		uint32_t v = (uint32_t)rnd64();
		memcpy(b + 6, &v, 4);
		emit_raw(g, b, len);
		int disp_at = g->n - len + 2;
		/* add r32, imm32 */
		uint8_t a[7] = { (uint8_t)(0x40 | (r >= 8)), 0x81, (uint8_t)(0xC0 | (r & 7)) };
		v = (uint32_t)rnd64();
		memcpy(a + 3, &v, 4);
		emit_raw(g, a, 7);
		int32_t d = (int32_t)((g->n - 4 + (dw ? 0 : rnd(4))) - (disp_at + 4 + (dw ? 4 : 1)));
		memcpy(t->code + disp_at, &d, 4);
		memcpy(t->ncode + disp_at, &d, 4);
		fl_set(g, F_ARITH, 0);
		form_add(g->forms, 0x100 + dw);
		return;
	}
	case 1: { /* turn a later nop into clc, stc, cmc, cdq or cwde */
		static const uint8_t ops[5] = { 0xF8, 0xF9, 0xF5, 0x99, 0x98 };
		uint8_t b[7] = { 0xC6, 0x05, 0, 0, 0, 0, ops[rnd(5)] };
		emit_raw(g, b, 7);
		int disp_at = g->n - 5;
		int gap = rnd(4);
		for (int i = 0; i < gap; i++) {
			uint8_t nop = 0x90;
			emit_raw(g, &nop, 1);
		}
		uint8_t nop = 0x90;
		emit_raw(g, &nop, 1);
		int32_t d = (int32_t)((g->n - 1) - (disp_at + 5));
		memcpy(t->code + disp_at, &d, 4);
		memcpy(t->ncode + disp_at, &d, 4);
		form_add(g->forms, 0x200 + b[6]);
		return;
	}
	default: { /* a loop that runs an instruction, patches it, runs it again */
		g->fixed |= 1u << R_RCX;
		uint8_t m[5] = { 0xB9, (uint8_t)(2 + rnd(3)), 0, 0, 0 }; /* mov ecx, n */
		emit_raw(g, m, 5);
		int top = g->n;
		uint8_t a[7] = { (uint8_t)(0x40 | (r >= 8)), 0x81, (uint8_t)(0xC0 | (r & 7)) };
		uint32_t v = (uint32_t)rnd64();
		memcpy(a + 3, &v, 4);
		emit_raw(g, a, 7);
		uint8_t st[10] = { 0xC7, 0x05 };
		v = (uint32_t)rnd64();
		memcpy(st + 6, &v, 4);
		emit_raw(g, st, 10);
		int32_t d = (int32_t)((top + 3) - g->n);
		memcpy(t->code + g->n - 8, &d, 4);
		memcpy(t->ncode + g->n - 8, &d, 4);
		uint8_t dec[3] = { 0xFF, 0xC9 }; /* dec ecx */
		emit_raw(g, dec, 2);
		uint8_t j[2] = { 0x75, 0 };
		emit_raw(g, j, 2);
		patch_rel8(g, g->n - 1, top);
		g->fixed &= ~(1u << R_RCX);
		fl_set(g, F_ARITH, 0);
		form_add(g->forms, 0x300);
		return;
	}
	}
}

/* ---- exceptions: #UD, #GP, #PF, #BP, #DB, #DE from instructions ---- */

static void gen_fault(struct gen *g)
{
	uint8_t b[16];
	struct ins x;
	switch (rnd(15)) {
	case 0: { /* opcodes invalid in 64-bit mode, ud0/1/2 */
		static const uint8_t inv[] = { 0x06, 0x07, 0x0E, 0x16, 0x17, 0x1E, 0x1F, 0x27, 0x2F, 0x37,
					       0x3F, 0x60, 0x61, 0x82, 0x9A, 0xCE, 0xD4, 0xD5, 0xD6, 0xEA };
		int k = rnd(sizeof(inv) + 3);
		if (k < (int)sizeof(inv)) {
			b[0] = inv[k];
			memset(b + 1, 0, 7);
			emit_raw(g, b, 8);
			form_add(g->forms, 0x100 + inv[k]);
		} else {
			static const uint8_t ud[3][3] = { { 0x0F, 0x0B }, { 0x0F, 0xB9, 0xC0 }, { 0x0F, 0xFF, 0xC0 } };
			k -= sizeof(inv);
			/* Intel's UD0 and UD1 fetch a ModRM byte, AMD's not always:
			 * keep them away from an absent page */
			if (g->t->code2_absent)
				k = 0;
			emit_raw(g, ud[k], k ? 3 : 2);
			form_add(g->forms, 0x200 + k);
		}
		return;
	}
	case 1: { /* lock: on a register destination, on what cannot be locked, and on what can */
		static const struct { uint8_t map, op, digit; bool mem; } lk[] = {
			{ 0, 0x01, 0xff, false }, { 0, 0x89, 0xff, true }, { 0, 0x90, 0xfe, false },
			{ 0, 0x39, 0xff, true }, { 0, 0x85, 0xff, true }, { 0, 0x8B, 0xff, true },
			{ 0, 0x81, 7, true }, { 0, 0xF7, 0, true }, { 0, 0xFF, 0, false },
			{ 1, 0xA3, 0xff, true }, { 1, 0xBA, 4, true }, { 1, 0xB1, 0xff, false },
			{ 1, 0xAF, 0xff, true }, { 1, 0xC7, 1, false }, { 1, 0xBC, 0xff, true },
			{ 0, 0x87, 0xff, true }, { 0, 0xF7, 3, true }, { 0, 0x83, 2, true },
			{ 1, 0xAB, 0xff, true }, { 1, 0xBA, 7, true }, { 1, 0xC1, 0xff, true },
		};
		int k = rnd(sizeof(lk) / sizeof(lk[0]));
		ins_init(&x, size248());
		x.pfx |= PLOCK;
		x.map = lk[k].map;
		x.op = lk[k].op;
		if (lk[k].digit != 0xfe) {
			x.modrm = true;
			x.digit = lk[k].digit != 0xff;
			x.reg = x.digit ? lk[k].digit : rnd(8);
			if (lk[k].mem)
				mem_build(g, &x, DATA_ADDR + 0x100 + rnd(DATA_RW - 0x200));
			else
				x.rm = rnd(8);
			if (x.op == 0x81 || x.op == 0x83 || (x.map && x.op == 0xBA)) {
				x.isz = x.op == 0x81 ? imm_size(x.w ? 8 : x.pfx & P66 ? 2 : 4) : 1;
				x.imm = rnd64();
			}
		}
		emit(g, &x);
		fl_set(g, 0, F_ARITH);
		return;
	}
	case 2: case 3: { /* memory access to unmapped, read-only, non-canonical */
		int size = rsize();
		ins_init(&x, size);
		x.hb = false;
		x.op = rnd(2) ? (size == 1 ? 0x88 : 0x89) : (size == 1 ? 0x8A : 0x8B);
		x.modrm = true;
		x.reg = rnd(16);
		if (size == 1 && x.reg >= 4 && x.reg < 8)
			x.rex40 = true;
		uint64_t T;
		switch (rnd(4)) {
		case 0: T = DATA_ADDR + DATA_SIZE + rnd(0x1000); break;
		case 1: T = DATA_ADDR + DATA_RW + rnd(0x1000); break;
		case 2: T = DATA_ADDR + DATA_SIZE - rnd(8); break;
		default: T = 0x0000800000000000ull + rnd64() % 0x1000; break;
		}
		if (T >> 47) { /* non-canonical: a plain base register, not rsp/rbp (those raise #SS) */
			int r = alloc_addr_reg(g, false);
			if (r < 0 || r == R_RBP || r == 13) {
				mem_build(g, &x, DATA_ADDR + DATA_SIZE);
			} else {
				x.rm_mem = true;
				x.m.base = r;
				x.m.index = -1;
				g->t->r[r] = rnd(2) ? T : ~T + 1 - 0x1000;
			}
		} else {
			mem_build(g, &x, T);
		}
		emit(g, &x);
		return;
	}
	case 4: /* int3, int imm8 (gates 3 and 4 are DPL 3 as in Linux, the rest #GP) */
		if (rnd(2)) {
			b[0] = 0xCC;
			emit_raw(g, b, 1);
			form_add(g->forms, 0xCC);
		} else {
			static const uint8_t v[] = { 3, 4, 0, 1, 6, 13, 14, 0x20, 0x81, 0xff };
			b[0] = 0xCD;
			b[1] = v[rnd(sizeof(v))];
			emit_raw(g, b, 2);
			form_add(g->forms, 0xCD00 + (b[1] == 3 || b[1] == 4));
			g->t->cpl3_only = b[1] != 3 && b[1] != 4;
		}
		return;
	case 5: /* int1 */
		g->t->icebp = true;
		b[0] = 0xF1;
		emit_raw(g, b, 1);
		form_add(g->forms, 0xF1);
		return;
	case 6: { /* privileged: #GP(0) at CPL 3 */
		static const uint8_t p[][4] = { { 1, 0xF4 }, { 1, 0xFA }, { 1, 0xFB }, { 2, 0xE4, 0x80 }, { 1, 0xEC },
						{ 2, 0xE6, 0x80 }, { 1, 0xEE }, { 1, 0x6C }, { 1, 0x6F },
						{ 3, 0x0F, 0x01, 0xF8 }, { 2, 0x0F, 0x06 }, { 2, 0x0F, 0x09 },
						{ 3, 0x0F, 0x20, 0xC0 }, { 3, 0x0F, 0x22, 0xD8 }, { 2, 0x0F, 0x30 },
						{ 2, 0x0F, 0x32 }, { 3, 0x0F, 0x01, 0x38 + 0x40 } };
		int k = rnd(sizeof(p) / sizeof(p[0]));
		if (p[k][1] == 0x0F && p[k][2] == 0x01 && p[k][3] == 0x78) {
			uint8_t inv[4] = { 0x0F, 0x01, 0x7B, 0 }; /* invlpg [rbx+0] */
			emit_raw(g, inv, 4);
		} else {
			emit_raw(g, p[k] + 1, p[k][0]);
		}
		form_add(g->forms, 0x300 + k);
		g->t->cpl3_only = true;
		return;
	}
	case 7: /* cmpxchg16b misaligned */
		ins_init(&x, 8);
		x.map = 1;
		x.op = 0xC7;
		x.digit = true;
		x.reg = 1;
		mem_build(g, &x, (DATA_ADDR + 0x100 + rnd(0x3000)) | (1 + rnd(15)));
		emit(g, &x);
		return;
	case 8: { /* jump into a non-executable page */
		int r = pick_scratch(g, 0);
		emit_movabs(g, r, DATA_ADDR + rnd(DATA_SIZE));
		ins_init(&x, 4);
		x.op = 0xFF;
		x.digit = true;
		x.reg = rnd(2) ? 4 : 2;
		x.modrm = true;
		x.rm = r;
		emit(g, &x);
		return;
	}
	case 9: { /* push into an unmapped page */
		emit_movabs(g, R_RSP, STACK_ADDR + rnd(8));
		g->stop = true;
		ins_init(&x, 4);
		x.op = 0x50;
		x.plusr = rnd(16);
		emit(g, &x);
		return;
	}
	case 10: { /* a read that straddles into the unmapped page, or a write into the read-only page */
		int size = size248();
		ins_init(&x, size);
		x.op = rnd(2) ? 0x01 : 0x03;
		x.modrm = true;
		x.reg = rnd(16);
		mem_build(g, &x, rnd(2) ? DATA_ADDR + DATA_SIZE - 1 - rnd(size - 1) : DATA_ADDR + DATA_RW - 1 - rnd(size - 1));
		emit(g, &x);
		fl_set(g, F_ARITH, 0);
		return;
	}
	case 11: { /* ModRM forms that do not exist, and instructions of 15 and 16 bytes */
		static const uint8_t bad[][4] = {
			{ 2, 0x8D, 0xC0 }, { 3, 0x0F, 0xC7, 0xC8 }, { 2, 0x8E, 0xC8 }, { 2, 0x8C, 0xF0 },
			{ 2, 0xFE, 0xD0 }, { 2, 0xFF, 0xF8 }, { 2, 0xFF, 0xD8 }, { 2, 0xFF, 0xE8 },
			{ 3, 0x0F, 0xBA, 0xE0 - 0x20 }, { 2, 0xC6, 0xC8 }, { 3, 0x0F, 0x00, 0xF0 },
			{ 2, 0x8E, 0xF8 },
		};
		int k = rnd(sizeof(bad) / sizeof(bad[0]) + 2);
		if (k < (int)(sizeof(bad) / sizeof(bad[0]))) {
			emit_raw(g, bad[k] + 1, bad[k][0]);
			if ((bad[k][1] == 0x0F && bad[k][2] == 0xBA) || bad[k][1] == 0xC6)
				emit_filler(g, 1); /* its immediate */
			form_add(g->forms, 0x400 + k);
		} else {
			int pre = k == (int)(sizeof(bad) / sizeof(bad[0])) ? 14 : 15; /* 15 bytes: fine; 16: #GP */
			uint8_t l[16];
			memset(l, 0x66, pre);
			l[pre] = 0x90;
			emit_raw(g, l, pre + 1);
			form_add(g->forms, 0x500 + pre);
		}
		return;
	}
	default: { /* div by zero, overflow */
		int size = rsize();
		g->fixed |= 1u << R_RAX | 1u << R_RDX;
		int r = pick_scratch(g, 0);
		emit_movabs(g, r, rnd(2) ? 0 : rnd64() & ~mask_of(size));
		if (rnd(2)) {
			emit_movabs(g, R_RAX, 0x8000000000000000ull);
			emit_movabs(g, R_RDX, ~0ull);
		}
		g->fixed &= ~(1u << R_RAX | 1u << R_RDX);
		ins_init(&x, size);
		x.hb = false;
		x.op = size == 1 ? 0xF6 : 0xF7;
		x.digit = true;
		x.reg = 6 + rnd(2);
		x.modrm = true;
		x.rm = r;
		if (size == 1 && r >= 4 && r < 8)
			x.rex40 = true;
		emit(g, &x);
		fl_set(g, 0, F_ARITH);
		return;
	}
	}
}

/* ================= running natively ================= */

struct nstate {
	uint64_t r[16];
	uint64_t rflags;
	uint64_t target;
	uint64_t xmm[16][2]; /* at 144 */
	uint32_t mxcsr, host_mxcsr; /* at 400, 404 */
};
struct nstate dt_in, dt_out;
uint64_t dt_host_rsp;
void dt_enter(void);
void dt_exit(void);

/* dt_enter: save the host's callee-saved registers and stack, load the
 * case's registers and flags, jump to the code. dt_exit (reached through
 * the jump at the end of the code): store them, return to dt_enter's caller. */
asm(".text\n"
    ".globl dt_enter\n"
    "dt_enter:\n"
    "	push %rbx\n	push %rbp\n	push %r12\n	push %r13\n	push %r14\n	push %r15\n"
    "	mov %rsp, dt_host_rsp(%rip)\n"
    "	xor %eax, %eax\n	mov %eax, %ds\n	mov %eax, %es\n"
    "	stmxcsr dt_in+404(%rip)\n	ldmxcsr dt_in+400(%rip)\n"
    "	movdqu dt_in+144(%rip), %xmm0\n"
    "	movdqu dt_in+160(%rip), %xmm1\n"
    "	movdqu dt_in+176(%rip), %xmm2\n"
    "	movdqu dt_in+192(%rip), %xmm3\n"
    "	movdqu dt_in+208(%rip), %xmm4\n"
    "	movdqu dt_in+224(%rip), %xmm5\n"
    "	movdqu dt_in+240(%rip), %xmm6\n"
    "	movdqu dt_in+256(%rip), %xmm7\n"
    "	movdqu dt_in+272(%rip), %xmm8\n"
    "	movdqu dt_in+288(%rip), %xmm9\n"
    "	movdqu dt_in+304(%rip), %xmm10\n"
    "	movdqu dt_in+320(%rip), %xmm11\n"
    "	movdqu dt_in+336(%rip), %xmm12\n"
    "	movdqu dt_in+352(%rip), %xmm13\n"
    "	movdqu dt_in+368(%rip), %xmm14\n"
    "	movdqu dt_in+384(%rip), %xmm15\n"
    "	pushq dt_in+128(%rip)\n	popfq\n"
    "	mov dt_in+0(%rip), %rax\n	mov dt_in+8(%rip), %rcx\n"
    "	mov dt_in+16(%rip), %rdx\n	mov dt_in+24(%rip), %rbx\n"
    "	mov dt_in+40(%rip), %rbp\n	mov dt_in+48(%rip), %rsi\n"
    "	mov dt_in+56(%rip), %rdi\n	mov dt_in+64(%rip), %r8\n"
    "	mov dt_in+72(%rip), %r9\n	mov dt_in+80(%rip), %r10\n"
    "	mov dt_in+88(%rip), %r11\n	mov dt_in+96(%rip), %r12\n"
    "	mov dt_in+104(%rip), %r13\n	mov dt_in+112(%rip), %r14\n"
    "	mov dt_in+120(%rip), %r15\n	mov dt_in+32(%rip), %rsp\n"
    "	jmp *dt_in+136(%rip)\n"
    ".globl dt_exit\n"
    "dt_exit:\n"
    "	mov %rax, dt_out+0(%rip)\n	mov %rcx, dt_out+8(%rip)\n"
    "	mov %rdx, dt_out+16(%rip)\n	mov %rbx, dt_out+24(%rip)\n"
    "	mov %rsp, dt_out+32(%rip)\n	mov %rbp, dt_out+40(%rip)\n"
    "	mov %rsi, dt_out+48(%rip)\n	mov %rdi, dt_out+56(%rip)\n"
    "	mov %r8, dt_out+64(%rip)\n	mov %r9, dt_out+72(%rip)\n"
    "	mov %r10, dt_out+80(%rip)\n	mov %r11, dt_out+88(%rip)\n"
    "	mov %r12, dt_out+96(%rip)\n	mov %r13, dt_out+104(%rip)\n"
    "	mov %r14, dt_out+112(%rip)\n	mov %r15, dt_out+120(%rip)\n"
    "	movdqu %xmm0, dt_out+144(%rip)\n"
    "	movdqu %xmm1, dt_out+160(%rip)\n"
    "	movdqu %xmm2, dt_out+176(%rip)\n"
    "	movdqu %xmm3, dt_out+192(%rip)\n"
    "	movdqu %xmm4, dt_out+208(%rip)\n"
    "	movdqu %xmm5, dt_out+224(%rip)\n"
    "	movdqu %xmm6, dt_out+240(%rip)\n"
    "	movdqu %xmm7, dt_out+256(%rip)\n"
    "	movdqu %xmm8, dt_out+272(%rip)\n"
    "	movdqu %xmm9, dt_out+288(%rip)\n"
    "	movdqu %xmm10, dt_out+304(%rip)\n"
    "	movdqu %xmm11, dt_out+320(%rip)\n"
    "	movdqu %xmm12, dt_out+336(%rip)\n"
    "	movdqu %xmm13, dt_out+352(%rip)\n"
    "	movdqu %xmm14, dt_out+368(%rip)\n"
    "	movdqu %xmm15, dt_out+384(%rip)\n"
    "	stmxcsr dt_out+400(%rip)\n	ldmxcsr dt_in+404(%rip)\n"
    "	mov dt_host_rsp(%rip), %rsp\n"
    "	pushfq\n	popq dt_out+128(%rip)\n"
    "	cld\n"
    "	pop %r15\n	pop %r14\n	pop %r13\n	pop %r12\n	pop %rbp\n	pop %rbx\n"
    "	ret\n");

static sigjmp_buf dt_jb;
static struct result *volatile dt_cur;
static uint8_t *data_alias; /* read-write view of the data pages, read-only page included */

static void dt_signal(int sig, siginfo_t *si, void *ucp)
{
	ucontext_t *uc = ucp;
	greg_t *gr = uc->uc_mcontext.gregs;
	struct result *r = dt_cur;
	static const int map[16] = { REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
				     REG_R8, REG_R9, REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15 };
	for (int i = 0; i < 16; i++)
		r->r[i] = gr[map[i]];
	r->rip = gr[REG_RIP];
	r->rflags = gr[REG_EFL];
	r->vector = (int)gr[REG_TRAPNO];
	r->err = (uint32_t)gr[REG_ERR];
	r->cr2 = gr[REG_CR2];
	/* the handler runs with the host's own MXCSR; the case's is here */
	memcpy(r->xmm, uc->uc_mcontext.fpregs->_xmm, sizeof(r->xmm));
	r->mxcsr = uc->uc_mcontext.fpregs->mxcsr;
	siglongjmp(dt_jb, 1);
}

static void native_map(void)
{
	void *p = mmap((void *)CODE_ADDR, CODE_PAGES * 0x1000, PROT_READ | PROT_WRITE | PROT_EXEC,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (p != (void *)CODE_ADDR)
		goto fail;
	int fd = memfd_create("difftest-data", 0);
	if (fd < 0 || ftruncate(fd, DATA_SIZE) < 0)
		goto fail;
	data_alias = mmap(NULL, DATA_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	p = mmap((void *)DATA_ADDR, DATA_RW, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
	if (data_alias == MAP_FAILED || p != (void *)DATA_ADDR)
		goto fail;
	p = mmap((void *)(DATA_ADDR + DATA_RW), DATA_SIZE - DATA_RW, PROT_READ, MAP_SHARED | MAP_FIXED_NOREPLACE, fd,
		 DATA_RW);
	if (p != (void *)(DATA_ADDR + DATA_RW))
		goto fail;
	p = mmap((void *)STACK_ADDR, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
		 -1, 0);
	if (p != (void *)STACK_ADDR)
		goto fail;
	return;
fail:
	perror("difftest: native mappings");
	_exit(3);
}

static void native_child(struct tcase *cases, struct result *res, int from, int n, volatile int *progress)
{
	static uint8_t altstack[65536];
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) };
	sigaltstack(&ss, NULL);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = dt_signal;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	int sigs[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP };
	for (int i = 0; i < 5; i++)
		sigaction(sigs[i], &sa, NULL);
	native_map();
	alarm(30);
	/* the read-only page must be present: Linux fills pages lazily, and the
	 * error code of a write to an unpopulated page says "not present" */
	(void)*(volatile uint8_t *)(DATA_ADDR + DATA_RW);
	for (volatile int i = from; i < n; i++) {
		struct tcase *t = &cases[i];
		struct result *r = &res[i];
		*progress = i;
		memcpy((void *)CODE_ADDR, t->ncode, CODE_SIZE);
		if (t->code2_absent)
			mprotect((void *)(CODE_ADDR + 0x1000), 0x1000, PROT_NONE);
		const uint8_t *src = pool_data(t->mem_seed);
		memcpy(data_alias, src, DATA_SIZE);
		memcpy((void *)STACK_ADDR, src + DATA_SIZE, STACK_SIZE);
		memcpy(dt_in.r, t->r, sizeof(t->r));
		dt_in.rflags = t->rflags;
		dt_in.target = CODE_ADDR + t->start;
		memcpy(dt_in.xmm, t->xmm, sizeof(t->xmm));
		dt_in.mxcsr = t->mxcsr;
		dt_cur = r;
		if (!sigsetjmp(dt_jb, 1)) {
			dt_enter();
			memcpy(r->r, dt_out.r, sizeof(r->r));
			r->rflags = dt_out.rflags;
			memcpy(r->xmm, dt_out.xmm, sizeof(r->xmm));
			r->mxcsr = dt_out.mxcsr;
			r->rip = CODE_ADDR + t->len;
			r->vector = V_DONE;
			r->err = 0;
			r->cr2 = 0;
		}
		if (t->code2_absent)
			mprotect((void *)(CODE_ADDR + 0x1000), 0x1000, PROT_READ | PROT_WRITE | PROT_EXEC);
		memcpy(r->data, data_alias, DATA_SIZE);
		memcpy(r->stack, (void *)STACK_ADDR, STACK_SIZE);
	}
	*progress = n;
	_exit(0);
}

/* run cases [0, n) on the host; a child that dies marks its case */
static void native_run(struct tcase *cases, struct result *res, int n)
{
	static volatile int *progress;
	if (!progress)
		progress = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int from = 0;
	while (from < n) {
		*progress = from;
		fflush(stdout);
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			exit(3);
		}
		if (pid == 0)
			native_child(cases, res, from, n, progress);
		int st;
		waitpid(pid, &st, 0);
		int at = *progress;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && at >= n)
			return;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 3)
			exit(3);
		memset(&res[at], 0, sizeof(res[at]));
		res[at].vector = V_NATIVE_DIED;
		res[at].err = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
		from = at + 1;
	}
}

/* ================= running in the emu engine ================= */

static uint8_t *ram;
static struct cpu *C;
static uint64_t pt_next = PT_GPA;
static uint64_t tsc_now;

static uint8_t *bus_gpa_page(void *o, uint64_t gpa, bool w)
{
	return gpa < RAM_SIZE ? ram + gpa : NULL;
}
static uint64_t bus_mmio_read(void *o, uint64_t gpa, int size) { return ~0ull; }
static void bus_mmio_write(void *o, uint64_t gpa, uint64_t v, int size) {}
static uint32_t bus_pio_in(void *o, uint16_t port, int size) { return ~0u; }
static void bus_pio_out(void *o, uint16_t port, uint32_t v, int size) {}
static int bus_intr(void *o, bool ack) { return -1; }
static bool bus_msr_read(void *o, uint32_t msr, uint64_t *v) { return false; }
static bool bus_msr_write(void *o, uint32_t msr, uint64_t v) { return false; }
static uint64_t bus_tsc(void *o) { return tsc_now += 1000; }

#define PG_P 1ull
#define PG_W 2ull
#define PG_U 4ull
#define PG_NX (1ull << 63)

static uint64_t *pt_at(uint64_t gpa)
{
	return (uint64_t *)(ram + gpa);
}

static uint64_t *map_page(uint64_t lin, uint64_t gpa, uint64_t flags)
{
	uint64_t table = PT_GPA;
	if (pt_next == PT_GPA)
		pt_next += 0x1000; /* the PML4 */
	for (int level = 4; level > 1; level--) {
		uint64_t *e = pt_at(table) + ((lin >> (12 + 9 * (level - 1))) & 511);
		if (!(*e & PG_P)) {
			*e = pt_next | PG_P | PG_W | PG_U;
			pt_next += 0x1000;
		}
		table = *e & 0xffffffffff000ull;
	}
	uint64_t *pte = pt_at(table) + ((lin >> 12) & 511);
	*pte = gpa | flags | PG_P;
	return pte;
}

static uint64_t *code2_pte;

static void emu_init(void)
{
	ram = aligned_alloc(4096, RAM_SIZE);
	memset(ram, 0, RAM_SIZE);
	C = aligned_alloc(64, (sizeof(*C) + 63) & ~(size_t)63);
	cpu_init(C, 0);
	C->bus = (struct cpu_bus){ .gpa_page = bus_gpa_page, .mmio_read = bus_mmio_read, .mmio_write = bus_mmio_write,
				   .pio_in = bus_pio_in, .pio_out = bus_pio_out, .intr_vector = bus_intr,
				   .msr_read = bus_msr_read, .msr_write = bus_msr_write, .tsc = bus_tsc };
	for (int i = 0; i < CODE_PAGES; i++)
		code2_pte = map_page(CODE_ADDR + i * 0x1000, CODE_GPA + i * 0x1000, PG_W | PG_U);
	for (uint64_t o = 0; o < DATA_SIZE; o += 0x1000)
		map_page(DATA_ADDR + o, DATA_GPA + o, PG_U | PG_NX | (o < DATA_RW ? PG_W : 0));
	for (uint64_t o = 0; o < STACK_SIZE; o += 0x1000)
		map_page(STACK_ADDR + o, STACK_GPA + o, PG_U | PG_W | PG_NX);
	for (uint64_t o = 0; o < SYS_SIZE; o += 0x1000)
		map_page(SYS_LIN + o, SYS_GPA + o, PG_W | (o == STUB_OFF ? 0 : PG_NX));

	/* a GDT laid out like Linux's */
	uint64_t *gdt = (uint64_t *)(ram + SYS_GPA + GDT_OFF);
	gdt[1] = 0x00cf9b000000ffffull; /* 0x08 kernel 32-bit code */
	gdt[2] = 0x00af9b000000ffffull; /* 0x10 kernel code */
	gdt[3] = 0x00cf93000000ffffull; /* 0x18 kernel data */
	gdt[4] = 0x00cffb000000ffffull; /* 0x23 user 32-bit code */
	gdt[5] = 0x00cff3000000ffffull; /* 0x2b user data */
	gdt[6] = 0x00affb000000ffffull; /* 0x33 user code */
	uint64_t tss = SYS_LIN + TSS_OFF;
	gdt[8] = 0x67 | (tss & 0xffffff) << 16 | 0x8bull << 40 | ((tss >> 24) & 0xff) << 56;
	gdt[9] = tss >> 32;
	uint8_t *t = ram + SYS_GPA + TSS_OFF;
	uint64_t rsp0 = SYS_LIN + RSP0_TOP_OFF, ist1 = SYS_LIN + IST_TOP_OFF;
	memcpy(t + 4, &rsp0, 8);
	memcpy(t + 0x24, &ist1, 8);
	uint16_t iomap = 0x68;
	memcpy(t + 0x66, &iomap, 2);
	/* every vector: an interrupt gate on IST 1 to a hlt of its own */
	uint64_t *idt = (uint64_t *)(ram + SYS_GPA + IDT_OFF);
	for (int v = 0; v < 256; v++) {
		uint64_t h = SYS_LIN + STUB_OFF + v * 16;
		int dpl = (v == 3 || v == 4) ? 3 : 0;
		idt[2 * v] = (h & 0xffff) | (uint64_t)SEL_KCODE << 16 | 1ull << 32 | (0x8eull | dpl << 5) << 40 |
			     ((h >> 16) & 0xffff) << 48;
		idt[2 * v + 1] = h >> 32;
		ram[SYS_GPA + STUB_OFF + v * 16] = 0xF4;
		memset(ram + SYS_GPA + STUB_OFF + v * 16 + 1, 0xCC, 15);
	}
	C->gdtr.base = SYS_LIN + GDT_OFF;
	C->gdtr.limit = 16 * 8 - 1;
	C->idtr.base = SYS_LIN + IDT_OFF;
	C->idtr.limit = 256 * 16 - 1;
	C->ldtr.sel = 0; /* no LDT, as in Linux */
	C->ldtr.base = 0;
	C->ldtr.limit = 0;
	C->ldtr.attr = 0;
	C->tr.sel = SEL_TSS;
	C->tr.base = tss;
	C->tr.limit = 0x67;
	C->tr.attr = 0x8b;
	C->cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG;
	C->cr4 = CR4_PAE | CR4_PGE | CR4_OSFXSR | CR4_OSXMMEXCPT;
	C->efer = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;
	C->cr3 = PT_GPA;
	tlb_flush(C);
}

static bool has_errcode(int v)
{
	return v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21 || v == 29 || v == 30;
}

static int trace_steps; /* -t: trace the emu instruction by instruction */

static void emu_run(struct tcase *t, int cpl, struct result *r)
{
	struct cpu *c = C;
	memcpy(ram + CODE_GPA, t->code, CODE_SIZE);
	if (t->code2_absent) {
		*code2_pte &= ~PG_P;
		tlb_flush(c);
	}
	const uint8_t *src = pool_data(t->mem_seed);
	memcpy(ram + DATA_GPA, src, DATA_SIZE);
	memcpy(ram + STACK_GPA, src + DATA_SIZE, STACK_SIZE);
	memcpy(c->r, t->r, sizeof(c->r));
	c->rip = CODE_ADDR + t->start;
	c->rflags = t->rflags;
	memcpy(c->fx.xmm, t->xmm, sizeof(t->xmm));
	c->fx.mxcsr = t->mxcsr;
	if (cpl == 3) {
		cpu_set_seg_flat(c, S_CS, SEL_UCODE, 0xfb | SEG_ATTR_L | 1u << 11);
		cpu_set_seg_flat(c, S_SS, SEL_UDATA, 0xf3 | SEG_ATTR_DB | 1u << 11);
	} else {
		cpu_set_seg_flat(c, S_CS, SEL_KCODE, 0x9b | SEG_ATTR_L | 1u << 11);
		cpu_set_seg_flat(c, S_SS, SEL_KDATA, 0x93 | SEG_ATTR_DB | 1u << 11);
	}
	for (int s = S_ES; s <= S_GS; s++) {
		if (s == S_CS || s == S_SS)
			continue;
		c->seg[s].sel = 0;
		c->seg[s].base = 0;
		c->seg[s].limit = 0;
		c->seg[s].attr = 0;
	}
	c->cpl = cpl;
	cpu_update_mode(c);
	c->halted = false;
	c->cur_exc = -1;
	c->intr_shadow = false;
	c->cr2 = 0;
	enum cpu_stop st;
	if (trace_steps) {
		for (int i = 0; i < trace_steps; i++) {
			fprintf(stderr, "# trace cpl%d rip=%" PRIx64 " rax=%" PRIx64 " rsp=%" PRIx64 " fl=%" PRIx64 "\n", c->cpl,
				c->rip, c->r[R_RAX], c->r[R_RSP], c->rflags);
			st = cpu_run(c, 1);
			if (st != STOP_BUDGET)
				break;
		}
	} else {
		st = cpu_run(c, 1000000);
	}
	if (t->code2_absent) {
		*code2_pte |= PG_P;
		tlb_flush(c);
	}
	memcpy(r->r, c->r, sizeof(r->r));
	r->rip = c->rip;
	r->rflags = c->rflags;
	r->err = 0;
	r->cr2 = 0;
	uint64_t at = c->rip - 1;
	uint64_t end = CODE_ADDR + t->len;
	if (st == STOP_SHUTDOWN) {
		r->vector = V_EMU_SHUTDOWN;
	} else if (st != STOP_HLT) {
		r->vector = V_EMU_BUDGET;
	} else if (cpl == 0 && at == end) {
		r->vector = V_DONE;
		r->rip = end;
	} else if (at >= SYS_LIN + STUB_OFF && at < SYS_LIN + STUB_OFF + 4096 && (at & 15) == 0) {
		int v = (int)((at - SYS_LIN - STUB_OFF) / 16);
		uint64_t fr = c->r[R_RSP];
		if (fr < SYS_LIN || fr + 48 > SYS_LIN + SYS_SIZE) {
			r->vector = V_EMU_STRAY;
		} else {
			uint64_t *f = (uint64_t *)(ram + SYS_GPA + (fr - SYS_LIN));
			if (has_errcode(v))
				r->err = (uint32_t)*f++;
			r->rip = f[0];
			r->rflags = f[2];
			r->r[R_RSP] = f[3];
			r->vector = v;
			r->cr2 = c->cr2;
			if (cpl == 3 && v == EXC_GP && r->rip == end && r->err == 0)
				r->vector = V_DONE;
		}
	} else {
		r->vector = V_EMU_STRAY;
	}
	memcpy(r->data, ram + DATA_GPA, DATA_SIZE);
	memcpy(r->stack, ram + STACK_GPA, STACK_SIZE);
	memcpy(r->xmm, c->fx.xmm, sizeof(r->xmm));
	r->mxcsr = c->fx.mxcsr;
}

/* ================= comparing and reporting ================= */

static const char *regname[16] = { "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
				   "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15" };
static bool verbose, print_all;

static const char *vecname(int v, char *buf)
{
	switch (v) {
	case V_DONE: return "completed";
	case V_NATIVE_DIED: return "host child died";
	case V_EMU_SHUTDOWN: return "emu triple fault";
	case V_EMU_BUDGET: return "emu budget exhausted";
	case V_EMU_STRAY: return "emu stopped elsewhere";
	}
	sprintf(buf, "vector %d", v);
	return buf;
}

/* flags compared: those defined before the faulting instruction, or at the end */
static uint32_t flags_to_compare(struct tcase *t, struct result *n)
{
	uint32_t undef = 0;
	if (n->vector == V_DONE) {
		return t->flag_mask | t->flag_extra;
	}
	uint64_t off = n->rip - CODE_ADDR;
	for (int i = 0; i < t->nins; i++)
		if (t->ins_off[i] <= off)
			undef = t->ins_undef[i];
	return ((F_ARITH | F_DF) & ~undef) | t->flag_extra;
}

static int compare(struct tcase *t, struct result *n, struct result *e, int cpl, char *why, size_t wlen)
{
	char b1[32], b2[32];
	int w = 0;
	/* INT1 is a trap: RIP is past it. This host is itself a virtual
	 * machine whose hypervisor re-injects an intercepted ICEBP as #DB
	 * without advancing RIP; expect the architectural value. */
	if (t->icebp && n->vector == EXC_DB && n->rip == CODE_ADDR + t->start)
		n->rip = CODE_ADDR + t->start + 1;
#define WHY(...) (w += snprintf(why + w, w < (int)wlen ? wlen - w : 0, __VA_ARGS__))
	if (n->vector != e->vector) {
		WHY(" [%s: host %s, emu %s]", "outcome", vecname(n->vector, b1), vecname(e->vector, b2));
		if (n->vector >= 0)
			WHY(" [host error code %#x cr2 %#" PRIx64 "]", n->err, n->cr2);
		if (e->vector >= 0)
			WHY(" [emu error code %#x cr2 %#" PRIx64 "]", e->err, e->cr2);
		if (n->vector < 0 && n->vector != V_DONE)
			return 1;
	}
	if (n->vector >= 0 && n->vector == e->vector) {
		uint32_t en = n->err, ee = e->err;
		if (cpl == 0 && n->vector == EXC_PF)
			en &= ~PF_U;
		if (has_errcode(n->vector) && en != ee)
			WHY(" [error code: host %#x, emu %#x]", en, ee);
		if (n->vector == EXC_PF && n->cr2 != e->cr2)
			WHY(" [cr2: host %#" PRIx64 ", emu %#" PRIx64 "]", n->cr2, e->cr2);
	}
	if (n->rip != e->rip)
		WHY(" [rip: host %#" PRIx64 ", emu %#" PRIx64 "]", n->rip, e->rip);
	for (int i = 0; i < 16; i++)
		if (!(t->reg_undef >> i & 1) && n->r[i] != e->r[i])
			WHY(" [%s: host %#" PRIx64 ", emu %#" PRIx64 "]", regname[i], n->r[i], e->r[i]);
	for (int i = 0; i < 16; i++)
		if (n->xmm[i][0] != e->xmm[i][0] || n->xmm[i][1] != e->xmm[i][1])
			WHY(" [xmm%d: host %016" PRIx64 "%016" PRIx64 ", emu %016" PRIx64 "%016" PRIx64 "]", i,
			    n->xmm[i][1], n->xmm[i][0], e->xmm[i][1], e->xmm[i][0]);
	if (n->mxcsr != e->mxcsr)
		WHY(" [mxcsr: host %#x, emu %#x]", n->mxcsr, e->mxcsr);
	uint32_t fm = flags_to_compare(t, n);
	if ((n->rflags ^ e->rflags) & fm)
		WHY(" [rflags (mask %#x): host %#" PRIx64 ", emu %#" PRIx64 "]", fm, n->rflags & fm, e->rflags & fm);
	for (int i = 0; i < DATA_SIZE; i++)
		if (n->data[i] != e->data[i]) {
			WHY(" [memory %#" PRIx64 ": host %02x, emu %02x]", (uint64_t)(DATA_ADDR + i), n->data[i], e->data[i]);
			break;
		}
	for (int i = 0; i < STACK_SIZE; i++)
		if (n->stack[i] != e->stack[i]) {
			WHY(" [stack %#" PRIx64 ": host %02x, emu %02x]", (uint64_t)(STACK_ADDR + i), n->stack[i], e->stack[i]);
			break;
		}
	return w != 0;
#undef WHY
}

static csh cs_handle;

static void print_case(struct tcase *t)
{
	cs_insn *insn;
	size_t n = cs_disasm(cs_handle, t->code + t->start, t->len + 1 - t->start, CODE_ADDR + t->start, 0, &insn);
	for (size_t i = 0; i < n; i++) {
		printf("#     %08" PRIx64 ": ", insn[i].address);
		for (int j = 0; j < insn[i].size && j < 12; j++)
			printf("%02x", insn[i].bytes[j]);
		printf("%*s %s %s\n", 26 - 2 * (insn[i].size < 12 ? insn[i].size : 12), "", insn[i].mnemonic, insn[i].op_str);
	}
	if (n)
		cs_free(insn, n);
	printf("#     bytes:");
	for (int i = t->start; i <= t->len && i < t->start + 64; i++)
		printf(" %02x", t->code[i]);
	printf("\n#     in:");
	for (int i = 0; i < 16; i++)
		printf(" %s=%" PRIx64 "%s", regname[i], t->r[i], i == 7 ? "\n#        " : "");
	printf(" rflags=%" PRIx64 " mem=%" PRIx64 "%s\n", t->rflags, t->mem_seed,
	       t->code2_absent ? " (second code page absent)" : "");
	printf("#         mxcsr=%x", t->mxcsr);
	for (int i = 0; i < 16; i++)
		printf(" xmm%d=%016" PRIx64 "%016" PRIx64 "%s", i, t->xmm[i][1], t->xmm[i][0], i % 4 == 3 ? "\n#        " : "");
	printf("\n");
}

/* ================= families ================= */

/* instructions of several families in one sequence: flags written by one
 * and read by another (jcc, setcc, cmovcc, adc, rcl, pushf) with memory
 * accesses and stack operations between them, as the host code made from
 * blocks (src/cpu/jit.c) carries them from one instruction to the next */
static void gen_mix(struct gen *g)
{
	static void (*const gens[])(struct gen *g) = {
		gen_alu, gen_unary, gen_mov, gen_lea, gen_stack, gen_xchg, gen_bit, gen_shift, gen_cond,
	};
	gens[rnd(sizeof(gens) / sizeof(gens[0]))](g);
}

/* mul and div among instructions naming many registers: long runs evict
 * and reload RAX and RDX into other host registers */
static void gen_muldivmix(struct gen *g)
{
	static void (*const gens[])(struct gen *g) = { gen_muldiv, gen_alu, gen_mov, gen_lea };
	gens[rnd(sizeof(gens) / sizeof(gens[0]))](g);
}

/* ---- SSE: scalar double and the data movement of compiled code ---- */

static void gen_sse_k(struct gen *g, int k)
{
	struct ins x;
	ins_init(&x, 4);
	x.map = 1;
	x.modrm = true;
	x.reg = rnd(16);
	switch (k) {
	case 0: case 1: /* movsd xmm, xmm/m64; movsd xmm/m64, xmm */
		x.pfx |= PF2;
		x.op = 0x10 + k;
		rm_pick(g, &x, 8, false);
		break;
	case 2: case 3: /* movups, movupd: load and store */
		x.pfx |= rnd(2) ? P66 : 0;
		x.op = 0x10 + (k & 1);
		rm_pick(g, &x, 16, false);
		break;
	case 4: /* addsd, mulsd, subsd, minsd, divsd, maxsd, sqrtsd */
		x.pfx |= PF2;
		x.op = (int[]){ 0x58, 0x59, 0x5C, 0x5D, 0x5E, 0x5F, 0x51 }[rnd(7)];
		rm_pick(g, &x, 8, false);
		break;
	case 5: /* ucomisd, comisd */
		x.pfx |= P66;
		x.op = 0x2E + rnd(2);
		rm_pick(g, &x, 8, false);
		emit(g, &x);
		fl_set(g, F_ARITH, 0);
		return;
	case 6: /* cvtsi2sd xmm, r/m32 and r/m64 */
		x.pfx |= PF2;
		x.op = 0x2A;
		x.w = rnd(2);
		rm_pick(g, &x, x.w ? 8 : 4, false);
		break;
	case 7: /* cvttsd2si, cvtsd2si r, xmm/m64 */
		x.pfx |= PF2;
		x.op = 0x2C + rnd(2);
		x.w = rnd(2);
		rm_pick(g, &x, 8, false);
		x.reg = pick_reg(g, &x, 8, true);
		break;
	case 8: /* movq xmm, r64; movq r64, xmm (66 REX.W 0F 6E / 7E) */
		x.pfx |= P66;
		x.w = true;
		x.op = rnd(2) ? 0x6E : 0x7E;
		x.rm_mem = false;
		x.rm = pick_reg(g, &x, 8, x.op == 0x7E);
		break;
	case 9: /* movaps, movapd, xorps, xorpd, pxor, andpd, andnpd, orpd
		 * between registers */
		x.op = (int[]){ 0x28, 0x57, 0xEF, 0x54, 0x55, 0x56 }[rnd(6)];
		x.pfx |= x.op == 0xEF || rnd(2) ? P66 : 0;
		x.rm_mem = false;
		x.rm = rnd(16);
		break;
	case 10: /* cvtsd2ss, cvtss2sd */
		x.pfx |= rnd(2) ? PF2 : PF3;
		x.op = 0x5A;
		rm_pick(g, &x, x.pfx & PF2 ? 8 : 4, false);
		break;
	case 11: /* unpcklpd, movhpd/movlpd load */
		x.pfx |= P66;
		x.op = 0x14;
		x.rm_mem = false;
		x.rm = rnd(16);
		break;
	default: /* movq xmm, xmm/m64 (F3 0F 7E), movq xmm/m64, xmm (66 0F D6) */
		if (rnd(2)) {
			x.pfx |= PF3;
			x.op = 0x7E;
		} else {
			x.pfx |= P66;
			x.op = 0xD6;
		}
		rm_pick(g, &x, 8, false);
		break;
	}
	/* an xmm operand in ModRM.rm names XMM0-15: any will do */
	if (!x.rm_mem && k != 6 && k != 8)
		x.rm = rnd(16);
	emit(g, &x);
}

static void gen_sse(struct gen *g)
{
	gen_sse_k(g, rnd(13));
}

/* movsd loads and stores among integer instructions: runs of host code
 * (src/cpu/jit.c) through them */
static void gen_ssemix(struct gen *g)
{
	switch (rnd(4)) {
	case 0: gen_sse_k(g, rnd(2)); break;
	case 1: gen_sse(g); break;
	case 2: gen_mov(g); break;
	default: gen_alu(g); break;
	}
}

struct family {
	const char *name;
	void (*gen)(struct gen *g);
	void (*setup)(struct gen *g);
	int ncases, max_ins;
	bool rsp_free, no_fault;
};

static const struct family families[] = {
	{ "alu", gen_alu, NULL, 30000, 4, true },
	{ "unary", gen_unary, NULL, 15000, 4, true },
	{ "mov", gen_mov, NULL, 25000, 4, true },
	{ "lea", gen_lea, NULL, 15000, 4, true },
	{ "stack", gen_stack, setup_stack, 20000, 5 },
	{ "xchg", gen_xchg, NULL, 25000, 3, true },
	{ "bit", gen_bit, NULL, 20000, 4, true },
	{ "bitscan", gen_bitscan, NULL, 15000, 3, true },
	{ "shift", gen_shift, NULL, 30000, 4, true },
	{ "muldiv", gen_muldiv, NULL, 20000, 3, true },
	{ "cond", gen_cond, NULL, 25000, 5, true },
	{ "misc", gen_misc, setup_misc, 20000, 5 },
	{ "string", gen_string, setup_string, 25000, 2 },
	{ "control", gen_control, setup_control, 20000, 4 },
	{ "far", gen_far, setup_far, 10000, 3 },
	{ "smc", gen_smc, NULL, 10000, 3 },
	{ "fault", gen_fault, NULL, 25000, 1 },
	{ "mix", gen_mix, setup_stack, 30000, 8 },
	/* runs naming more guest registers than the translator has host
	 * registers for (evictions within a run) */
	{ "mixlong", gen_mix, setup_stack, 8000, 32 },
	/* shifts by CL and AH..BH in long runs: the count and the high-byte
	 * registers moved between host registers by evictions */
	{ "shiftlong", gen_shift, NULL, 8000, 24, true },
	{ "alulong", gen_alu, NULL, 8000, 24, true },
	/* mul and div in long runs: RAX and RDX moved into host RAX and RDX
	 * past evictions, #DE before the host divides */
	{ "muldivlong", gen_muldivmix, NULL, 8000, 32, true },
	/* XMM registers and MXCSR compared */
	{ "sse", gen_sse, NULL, 20000, 4, true },
	{ "ssemix", gen_ssemix, NULL, 10000, 16, true },
};
#define NFAM ((int)(sizeof(families) / sizeof(families[0])))

/* XMM registers and MXCSR: random bits or small doubles, any rounding
 * mode, now and then FTZ or DAZ, every exception masked, some status
 * flags set; from
 * a generator of their own, so that the other families' cases stay
 * what they were */
static void sse_state(struct tcase *t, uint64_t seed)
{
	uint64_t save = rng;
	rng = seed * 0xD1B54A32D192ED03ull + 0x5e5e;
	rnd64();
	for (int i = 0; i < 16; i++) {
		if (rnd(2)) {
			t->xmm[i][0] = rnd64();
		} else {
			double d = (double)((int)rnd(2001) - 1000) / (double)(1 + rnd(8));
			memcpy(&t->xmm[i][0], &d, 8);
		}
		t->xmm[i][1] = rnd64();
	}
	t->mxcsr = 0x1f80 | (uint32_t)rnd(64);
	if (rnd(4) == 0) /* another rounding mode */
		t->mxcsr |= (uint32_t)(1 + rnd(3)) << 13;
	if (rnd(8) == 0) /* flush to zero, denormals are zero */
		t->mxcsr |= rnd(2) ? 0x8000 : 0x40;
	rng = save;
}

static void gen_case(const struct family *f, struct tcase *t, struct formset *forms, uint64_t seed)
{
	struct gen g;
	memset(t, 0, offsetof(struct tcase, code));
	memset(t->code, 0xCC, CODE_SIZE);
	memset(t->ncode, 0xCC, CODE_SIZE);
	memset((uint8_t *)t + offsetof(struct tcase, len), 0, sizeof(*t) - offsetof(struct tcase, len));
	rng = seed * 0x9E3779B97F4A7C15ull + 0x1234567;
	for (int i = 0; i < 16; i++)
		t->r[i] = rnd_val();
	t->r[R_RSP] = STACK_MID + ((int)rnd(0x40) - 0x20) * 8 + (rnd(8) == 0 ? rnd(8) : 0);
	t->rflags = 0x202 | (rnd64() & F_ARITH);
	if (rnd(4) == 0)
		t->rflags |= F_DF;
	t->mem_seed = rnd64();
	sse_state(t, seed);
	memset(&g, 0, sizeof(g));
	g.t = t;
	g.forms = forms;
	g.rsp_free = f->rsp_free;
	g.no_fault = f->no_fault;
	g.fixed = f->rsp_free ? 0 : 1u << R_RSP;
	g.f3_off = -1;
	/* a fifth of the cases start just before the second code page, so that
	 * instructions straddle it; a third of those without that page */
	if (rnd(5) == 0) {
		t->start = 0x1000 - 1 - rnd(24);
		t->code2_absent = rnd(3) == 0;
	}
	g.n = t->start;
	if (f->setup)
		f->setup(&g);
	int n = 1 + rnd(f->max_ins);
	for (int i = 0; i < n && !g.stop; i++)
		f->gen(&g);
	/* with the second page absent, both terminators (the host's is 14
	 * bytes long) must lie in it, or neither */
	if (t->code2_absent && g.n < 0x1000 && g.n + 14 > 0x1000)
		while (g.n < 0x1000)
			emit_filler(&g, 1), t->code[g.n - 1] = t->ncode[g.n - 1] = 0x90;
	t->len = g.n;
	t->code[g.n] = 0xF4;
	uint8_t jmp[6] = { 0xFF, 0x25, 0, 0, 0, 0 };
	uint64_t exit_addr = (uint64_t)(uintptr_t)dt_exit;
	memcpy(t->ncode + g.n, jmp, 6);
	memcpy(t->ncode + g.n + 6, &exit_addr, 8);
	t->flag_mask = (F_ARITH | F_DF) & ~g.undef;
}

#define BATCH 256

static int n_test, n_pass, n_fail;

static void run_family(const struct family *f, int ncases, uint64_t seed)
{
	static struct tcase *cases;
	static struct result *nres, *eres;
	static struct formset forms;
	if (!cases) {
		cases = calloc(BATCH, sizeof(*cases));
		nres = mmap(NULL, BATCH * sizeof(*nres), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		eres = calloc(1, sizeof(*eres));
	}
	memset(&forms, 0, sizeof(forms));
	int fails[2] = { 0, 0 }, checked[2] = { 0, 0 }, faults = 0;
	for (int base = 0; base < ncases; base += BATCH) {
		int n = ncases - base < BATCH ? ncases - base : BATCH;
		for (int i = 0; i < n; i++)
			gen_case(f, &cases[i], &forms, seed + base + i);
		native_run(cases, nres, n);
		for (int i = 0; i < n; i++) {
			struct tcase *t = &cases[i];
			if (nres[i].vector >= 0)
				faults++;
			if (print_all) {
				printf("# %s case %" PRIu64 ":\n", f->name, seed + base + i);
				print_case(t);
			}
			for (int k = 0; k < 2; k++) {
				int cpl = k ? 0 : 3;
				if (cpl == 0 && t->cpl3_only)
					continue;
				char why[2048];
				emu_run(t, cpl, eres);
				checked[k]++;
				if (compare(t, &nres[i], eres, cpl, why, sizeof(why))) {
					if (fails[k]++ < (verbose ? 50 : 3)) {
						printf("# %s case %" PRIu64 " (CPL %d):%s\n", f->name, seed + base + i, cpl, why);
						print_case(t);
					}
				}
			}
		}
	}
	for (int k = 0; k < 2; k++) {
		bool ok = fails[k] == 0;
		if (!checked[k])
			continue; /* a family of CPL 3 behaviour only */
		printf("%sok %d - %s at CPL %d: %d forms, %d cases (%d ended in an exception)%s", ok ? "" : "not ",
		       ++n_test, f->name, k ? 0 : 3, forms.n, checked[k], faults, ok ? "\n" : "");
		if (!ok)
			printf(", %d mismatches\n", fails[k]);
		if (ok)
			n_pass++;
		else
			n_fail++;
	}
	fflush(stdout);
}

int main(int argc, char **argv)
{
	int ncases = -1;
	uint64_t seed = 1, offset = 0;
	const char *only[32];
	int nonly = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-v"))
			verbose = true;
		else if (!strcmp(argv[i], "-p"))
			print_all = true;
		else if (!strcmp(argv[i], "-n") && i + 1 < argc)
			ncases = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-s") && i + 1 < argc)
			seed = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "-o") && i + 1 < argc)
			offset = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "-t") && i + 1 < argc)
			trace_steps = atoi(argv[++i]);
		else if (nonly < 32)
			only[nonly++] = argv[i];
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (cs_open(CS_ARCH_X86, CS_MODE_64, &cs_handle) != CS_ERR_OK) {
		fprintf(stderr, "difftest: capstone\n");
		return 3;
	}
	pools_init();
	emu_init();
	uint32_t v[4];
	asm("cpuid" : "=a"(v[0]), "=b"(v[1]), "=c"(v[2]), "=d"(v[3]) : "a"(0), "c"(0));
	host_amd = v[1] == 0x68747541; /* "Auth"enticAMD */
	int total = 0;
	for (int i = 0; i < NFAM; i++) {
		const struct family *f = &families[i];
		bool sel = nonly == 0;
		for (int j = 0; j < nonly; j++)
			sel |= !strcmp(only[j], f->name);
		if (!sel)
			continue;
		int n = ncases > 0 ? ncases : f->ncases;
		run_family(f, n, seed * 1000003ull + (uint64_t)i * 100000000ull + offset);
		total += n;
	}
	printf("1..%d\n", n_test);
	printf("# %d cases per CPL in total\n", total);
	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}
