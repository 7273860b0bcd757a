/* Differential tests of the emu engine's MMX/SSE/SSE2/SSE3/SSSE3/SSE4.1/
 * SSE4.2, x87 and FXSAVE-family instructions against the host CPU.
 *
 * Every case builds a random architectural state (GPRs, arithmetic flags,
 * x87 stack/tags/control, MMX, XMM, MXCSR with every exception masked, and
 * the bytes around a memory operand), encodes one instruction form with
 * random registers, immediate and memory placement, and runs it twice:
 * in a struct cpu in 64-bit mode on a small identity-mapped guest memory
 * (insn_decode + exec_insn, or every other time the handler insn_bind
 * binds for a block; faults caught through c->fault_jmp), and natively
 * on the host with the same state loaded (fxrstor64 + all GPRs), the memory
 * operand based at rbx/rdi pointing into a host buffer. The two resulting
 * states and memory buffers must be equal. FOP/FIP/FDP are not compared
 * (AMD hosts do not save them without a pending exception).
 *
 * Then fixed cases check what the host cannot show without faulting: #UD,
 * #NM, #GP on misalignment and reserved MXCSR bits, #XM/#UD for unmasked
 * SIMD exceptions, #MF for a pending x87 exception, #PF without side
 * effects. Prints TAP.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cpu/cpu.h"
#include "tap.h"

static long n_cases, n_forms;


/* ---- random numbers ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545f4914f6cdd1dull;
}
static unsigned rn(unsigned n) { return (unsigned)(rnd() % n); }

static uint32_t gen_f32(void)
{
	static const uint32_t special[] = { 0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000,
					    0x7fa00000, 0x00000001, 0x007fffff, 0x80400000, 0x7f7fffff,
					    0x00800000, 0x3f800000, 0xbf800000, 0x3f000000, 0x4f000000,
					    0xcf000000, 0x5f000000, 0xdf000000, 0x4effffff, 0x3fc00000 };
	float f;
	switch (rn(8)) {
	case 0: return (uint32_t)rnd();
	case 1: return special[rn(sizeof(special) / 4)];
	case 2: f = (float)((int)rn(2001) - 1000); break;
	case 3: f = (float)((int)rn(2001) - 1000) / 4.0f; break;
	default: {
		uint32_t v = (uint32_t)rnd() & 0x807fffff;
		return v | (uint32_t)(127 - 40 + rn(80)) << 23;
	}
	}
	uint32_t v;
	memcpy(&v, &f, 4);
	return v;
}

static uint64_t gen_f64(void)
{
	static const uint64_t special[] = { 0, 0x8000000000000000ull, 0x7ff0000000000000ull, 0xfff0000000000000ull,
					    0x7ff8000000000000ull, 0xfff8000000000000ull, 0x7ff4000000000000ull,
					    1, 0x000fffffffffffffull, 0x7fefffffffffffffull, 0x0010000000000000ull,
					    0x3ff0000000000000ull, 0xbff0000000000000ull, 0x41e0000000000000ull,
					    0xc1e0000000000000ull, 0x43e0000000000000ull, 0xc3e0000000000000ull,
					    0x41dfffffffc00000ull, 0x3fe0000000000000ull, 0x36a0000000000000ull };
	double f;
	switch (rn(8)) {
	case 0: return rnd();
	case 1: return special[rn(sizeof(special) / 8)];
	case 2: f = (double)((int)rn(2001) - 1000); break;
	case 3: f = (double)((int)rn(2001) - 1000) / 8.0; break;
	default: {
		uint64_t v = rnd() & 0x800fffffffffffffull;
		return v | (uint64_t)(1023 - 60 + rn(120)) << 52;
	}
	}
	uint64_t v;
	memcpy(&v, &f, 8);
	return v;
}

static void gen_f80(uint8_t *p)
{
	long double f;
	uint64_t m;
	uint16_t se;
	switch (rn(10)) {
	case 0: /* anything, including unnormals and pseudo-NaNs */
		m = rnd();
		se = (uint16_t)rnd();
		break;
	case 1: { /* specials */
		static const struct { uint64_t m; uint16_t se; } sp[] = {
			{ 0, 0 }, { 0, 0x8000 }, { 1ull << 63, 0x7fff }, { 1ull << 63, 0xffff },
			{ 3ull << 62, 0x7fff }, { 5ull << 61, 0x7fff }, { 1, 0 }, { 1ull << 63, 0 },
			{ 1ull << 63, 0x3fff }, { ~0ull, 0x7ffe }, { 1ull << 63, 0x403e }, { 1ull << 62, 0x3fff },
		};
		int i = rn(sizeof(sp) / sizeof(sp[0]));
		m = sp[i].m;
		se = sp[i].se;
		break;
	}
	case 2: f = (long double)((int)rn(2001) - 1000); goto ld;
	case 3: f = (long double)((int)rn(20001) - 10000) / 16.0L; goto ld;
	case 4: f = (long double)(int64_t)rnd(); goto ld;
	default:
		m = rnd() | 1ull << 63;
		se = (uint16_t)((rn(2) << 15) | (0x3fff - 70 + rn(140)));
		break;
	}
	memcpy(p, &m, 8);
	memcpy(p + 8, &se, 2);
	return;
ld:
	memcpy(p, &f, 10);
}

enum { D_ANY, D_INT, D_F32, D_F64, D_STR };

static void gen_vec(uint8_t *p, int n, int hint)
{
	int t = hint;
	if (t == D_ANY || rn(4) == 0)
		t = 1 + rn(4);
	for (int i = 0; i < n;) {
		switch (t) {
		case D_INT: {
			static const uint8_t sp[] = { 0, 0xff, 0x80, 0x7f, 1, 0xfe, 0x81 };
			p[i++] = rn(3) ? (uint8_t)rnd() : sp[rn(sizeof(sp))];
			break;
		}
		case D_F32: {
			uint32_t v = gen_f32();
			memcpy(p + i, &v, 4);
			i += 4;
			break;
		}
		case D_F64: {
			uint64_t v = gen_f64();
			memcpy(p + i, &v, 8);
			i += 8;
			break;
		}
		default: { /* strings of a small alphabet, with terminators */
			static const uint8_t alpha[] = { 'a', 'b', 'c', 'a', 'b', 0, 0x80, 'z', 'A' };
			p[i++] = rn(8) ? alpha[rn(sizeof(alpha))] : (uint8_t)rnd();
			break;
		}
		}
	}
}

/* ---- the state both sides start from and end with ---- */

struct hstate {
	uint64_t r[16];
	uint64_t rflags;
	uint64_t pad;
	struct fxstate fx; /* at 144, 16-byte aligned */
};
_Static_assert(offsetof(struct hstate, fx) == 144, "layout used by host_run");

#define DATA_SIZE 256

/* host side: load everything, run the code buffer, save everything */
void host_run(struct hstate *s, const void *code);
extern char host_exit[];
asm(".text\n"
    "host_run:\n\t"
    "push %rbx\n\tpush %rbp\n\tpush %r12\n\tpush %r13\n\tpush %r14\n\tpush %r15\n\t"
    "mov %rdi, hr_state(%rip)\n\t"
    "mov %rsp, hr_rsp(%rip)\n\t"
    "mov %rsi, hr_code(%rip)\n\t"
    "fxsave64 hr_fx(%rip)\n\t"
    "fxrstor64 144(%rdi)\n\t"
    "pushq 128(%rdi)\n\tpopfq\n\t"
    "mov 0(%rdi), %rax\n\tmov 8(%rdi), %rcx\n\tmov 16(%rdi), %rdx\n\tmov 24(%rdi), %rbx\n\t"
    "mov 40(%rdi), %rbp\n\tmov 48(%rdi), %rsi\n\tmov 64(%rdi), %r8\n\tmov 72(%rdi), %r9\n\t"
    "mov 80(%rdi), %r10\n\tmov 88(%rdi), %r11\n\tmov 96(%rdi), %r12\n\tmov 104(%rdi), %r13\n\t"
    "mov 112(%rdi), %r14\n\tmov 120(%rdi), %r15\n\tmov 56(%rdi), %rdi\n\t"
    "jmp *hr_code(%rip)\n"
    "host_exit:\n\t"
    "push %rdi\n\t"
    "mov hr_state(%rip), %rdi\n\t"
    "mov %rax, 0(%rdi)\n\tmov %rcx, 8(%rdi)\n\tmov %rdx, 16(%rdi)\n\tmov %rbx, 24(%rdi)\n\t"
    "mov %rbp, 40(%rdi)\n\tmov %rsi, 48(%rdi)\n\tmov %r8, 64(%rdi)\n\tmov %r9, 72(%rdi)\n\t"
    "mov %r10, 80(%rdi)\n\tmov %r11, 88(%rdi)\n\tmov %r12, 96(%rdi)\n\tmov %r13, 104(%rdi)\n\t"
    "mov %r14, 112(%rdi)\n\tmov %r15, 120(%rdi)\n\t"
    "pop %rax\n\tmov %rax, 56(%rdi)\n\t"
    "pushfq\n\tpop %rax\n\tmov %rax, 128(%rdi)\n\t"
    "fxsave64 144(%rdi)\n\t"
    "fxrstor64 hr_fx(%rip)\n\t"
    "mov hr_rsp(%rip), %rsp\n\t"
    "pop %r15\n\tpop %r14\n\tpop %r13\n\tpop %r12\n\tpop %rbp\n\tpop %rbx\n\t"
    "cld\n\t"
    "ret\n"
    ".bss\n"
    ".balign 16\n"
    "hr_fx: .space 512\n"
    "hr_state: .quad 0\n"
    "hr_rsp: .quad 0\n"
    "hr_code: .quad 0\n"
    ".text\n");

static uint8_t *host_code;                                  /* RWX page */
static uint8_t host_data[DATA_SIZE + 64] __attribute__((aligned(64)));

/* ---- guest side ---- */

#define GMEM_SIZE (4u << 20)
#define G_CODE 0x10000
#define G_DATA 0x20000 /* the operand area, moved within a page pair */
static uint8_t *gmem;
static struct cpu cpu;

static uint8_t *gpa_page(void *opaque, uint64_t gpa, bool write)
{
	return gpa < GMEM_SIZE ? gmem + gpa : NULL;
}
static uint64_t mmio_read(void *o, uint64_t gpa, int size) { return ~0ull; }
static void mmio_write(void *o, uint64_t gpa, uint64_t v, int size) { }
static uint32_t pio_in(void *o, uint16_t port, int size) { return ~0u; }
static void pio_out(void *o, uint16_t port, uint32_t v, int size) { }
static int intr_vector(void *o, bool ack) { return -1; }
static bool msr_rd(void *o, uint32_t msr, uint64_t *v) { return false; }
static bool msr_wr(void *o, uint32_t msr, uint64_t v) { return false; }
static uint64_t tsc(void *o) { return 0; }

static void guest_init(void)
{
	gmem = aligned_alloc(4096, GMEM_SIZE);
	memset(gmem, 0, GMEM_SIZE);
	/* identity map of the first 4 MiB with two 2 MiB pages; above is unmapped */
	uint64_t pml4 = 0x1000, pdpt = 0x2000, pd = 0x3000;
	uint64_t e;
	e = pdpt | 7;
	memcpy(gmem + pml4, &e, 8);
	e = pd | 7;
	memcpy(gmem + pdpt, &e, 8);
	for (int i = 0; i < 2; i++) {
		e = (uint64_t)i << 21 | 0x87;
		memcpy(gmem + pd + 8 * i, &e, 8);
	}
	struct cpu *c = &cpu;
	cpu_init(c, 0);
	c->bus = (struct cpu_bus){ gpa_page, mmio_read, mmio_write, pio_in, pio_out, intr_vector,
				   msr_rd, msr_wr, tsc, NULL };
}

static void guest_modes(struct cpu *c)
{
	c->cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
	c->cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
	c->cr3 = 0x1000;
	c->efer = EFER_LME | EFER_LMA | EFER_SCE | EFER_NXE;
	c->cpl = 0;
	cpu_set_seg_flat(c, S_CS, 0x08, 0x9b | SEG_ATTR_L | (1u << 11));
	for (int s = 0; s < 6; s++)
		if (s != S_CS)
			cpu_set_seg_flat(c, s, 0x10, 0x93 | SEG_ATTR_DB | (1u << 11));
	c->seg[S_FS].base = c->seg[S_GS].base = 0;
	cpu_update_mode(c);
	tlb_flush(c);
}

/* run one instruction, every other time through the handler a block
 * binds to it (exec_fast.c) as a block runs it; the exception vector or -1 */
static int guest_step(struct cpu *c)
{
	static unsigned steps;
	if (setjmp(c->fault_jmp))
		return c->pending_exc;
	struct insn in;
	c->insn_rip = c->rip;
	c->insn_rsp = c->r[R_RSP];
	struct insn *d = insn_decode(c, &in);
	if (steps++ & 1) {
		insn_bind(c, d, false);
		d->fn(c, d);
	} else {
		exec_insn(c, d);
	}
	return -1;
}

/* ---- one differential case ---- */

struct tcase {
	uint8_t code[16];
	int len;
	unsigned data_off; /* where rbx and rdi point within the data area */
	unsigned page_off; /* guest placement of the data area */
};

static char last_diff[512];

static void gen_state(struct hstate *s, int hint)
{
	for (int i = 0; i < 16; i++) {
		switch (rn(4)) {
		case 0: s->r[i] = rnd(); break;
		case 1: s->r[i] = rn(64); break;
		case 2: s->r[i] = (uint64_t)(int64_t)(int32_t)rnd(); break;
		default: s->r[i] = (uint64_t)(int64_t)((int)rn(41) - 20); break;
		}
	}
	s->rflags = 2 | (rnd() & (F_CF | F_PF | F_AF | F_ZF | F_SF | F_OF));
	memset(&s->fx, 0, sizeof(s->fx));
	s->fx.fcw = 0x007f | (uint16_t)(rn(4) << 8) | (uint16_t)(rn(4) << 10);
	if (rn(2))
		s->fx.fcw = 0x037f;
	s->fx.fsw = (uint16_t)(rnd() & 0x473f) | (uint16_t)(rn(8) << 11);
	if (rn(2))
		s->fx.fsw &= 0x3800;
	s->fx.ftw = (uint8_t)rnd();
	if (rn(4) == 0)
		s->fx.ftw = rn(2) ? 0xff : 0;
	for (int i = 0; i < 8; i++) {
		if (rn(2) && hint != D_F32 && hint != D_F64)
			gen_vec(s->fx.st[i], 8, hint);
		else
			gen_f80(s->fx.st[i]);
	}
	for (int i = 0; i < 16; i++)
		gen_vec(s->fx.xmm[i].b, 16, hint);
	s->fx.mxcsr = 0x1f80 | (uint32_t)(rn(4) << 13) | (uint32_t)(rnd() & 0x3f);
	if (rn(4) == 0)
		s->fx.mxcsr |= 0x8000;
	if (rn(4) == 0)
		s->fx.mxcsr |= 0x40;
	if (rn(3) == 0)
		s->fx.mxcsr = 0x1f80;
	s->fx.mxcsr_mask = 0xffff;
}

static bool fx_equal(const struct fxstate *a, const struct fxstate *b, char *why, size_t wl)
{
	if (a->fcw != b->fcw || a->fsw != b->fsw || a->ftw != b->ftw) {
		snprintf(why, wl, "fcw %04x/%04x fsw %04x/%04x ftw %02x/%02x", a->fcw, b->fcw, a->fsw, b->fsw,
			 a->ftw, b->ftw);
		return false;
	}
	if (a->mxcsr != b->mxcsr) {
		snprintf(why, wl, "mxcsr %08x/%08x", a->mxcsr, b->mxcsr);
		return false;
	}
	for (int i = 0; i < 8; i++)
		if (memcmp(a->st[i], b->st[i], 10)) {
			uint64_t ma, mb;
			uint16_t ea, eb;
			memcpy(&ma, a->st[i], 8), memcpy(&mb, b->st[i], 8);
			memcpy(&ea, a->st[i] + 8, 2), memcpy(&eb, b->st[i] + 8, 2);
			snprintf(why, wl, "st%d %04x:%016llx/%04x:%016llx", i, ea, (unsigned long long)ma, eb,
				 (unsigned long long)mb);
			return false;
		}
	for (int i = 0; i < 16; i++)
		if (memcmp(&a->xmm[i], &b->xmm[i], 16)) {
			snprintf(why, wl, "xmm%d %016llx:%016llx/%016llx:%016llx", i,
				 (unsigned long long)a->xmm[i].q[1], (unsigned long long)a->xmm[i].q[0],
				 (unsigned long long)b->xmm[i].q[1], (unsigned long long)b->xmm[i].q[0]);
			return false;
		}
	return true;
}

/* Run tc on both sides from state s; true when the results agree. */
static bool run_case(const struct tcase *tc, const struct hstate *s0, const uint8_t *data)
{
	struct cpu *c = &cpu;
	struct hstate hs = *s0;
	uint64_t gbase = G_DATA + tc->page_off + tc->data_off;
	uint64_t hbase = (uint64_t)(uintptr_t)host_data + tc->data_off;

	/* guest */
	guest_modes(c);
	memcpy(c->r, s0->r, sizeof(c->r));
	c->r[R_RBX] = c->r[R_RDI] = gbase;
	c->r[R_RSP] = 0x8000;
	c->rflags = s0->rflags;
	c->fx = s0->fx;
	c->rip = G_CODE;
	memcpy(gmem + G_CODE, tc->code, tc->len);
	gmem[G_CODE + tc->len] = 0xF4;
	memcpy(gmem + G_DATA + tc->page_off, data, DATA_SIZE);
	int vec = guest_step(c);

	/* host */
	memcpy(host_code, tc->code, tc->len);
	uint8_t *p = host_code + tc->len;
	p[0] = 0xFF, p[1] = 0x25, p[2] = p[3] = p[4] = p[5] = 0;
	uint64_t target = (uint64_t)(uintptr_t)host_exit;
	memcpy(p + 6, &target, 8);
	memcpy(host_data, data, DATA_SIZE);
	hs.r[R_RBX] = hs.r[R_RDI] = hbase;
	host_run(&hs, host_code);

	if (vec >= 0) {
		snprintf(last_diff, sizeof(last_diff), "guest exception %d", vec);
		return false;
	}
	if (c->rip != G_CODE + (uint64_t)tc->len) {
		snprintf(last_diff, sizeof(last_diff), "rip %llx, length %d", (unsigned long long)c->rip, tc->len);
		return false;
	}
	for (int i = 0; i < 16; i++) {
		if (i == R_RSP)
			continue;
		uint64_t g = c->r[i], h = hs.r[i];
		if (i == R_RBX || i == R_RDI)
			g -= gbase, h -= hbase;
		if (g != h) {
			snprintf(last_diff, sizeof(last_diff), "r%d %016llx/%016llx", i, (unsigned long long)g,
				 (unsigned long long)h);
			return false;
		}
	}
	if ((c->rflags & F_ARITH) != (hs.rflags & F_ARITH)) {
		snprintf(last_diff, sizeof(last_diff), "rflags %03llx/%03llx", (unsigned long long)(c->rflags & F_ARITH),
			 (unsigned long long)(hs.rflags & F_ARITH));
		return false;
	}
	if (!fx_equal(&c->fx, &hs.fx, last_diff, sizeof(last_diff)))
		return false;
	if (memcmp(gmem + G_DATA + tc->page_off, host_data, DATA_SIZE)) {
		int i = 0;
		while (gmem[G_DATA + tc->page_off + i] == host_data[i])
			i++;
		snprintf(last_diff, sizeof(last_diff), "memory byte %d: %02x/%02x", i, gmem[G_DATA + tc->page_off + i],
			 host_data[i]);
		return false;
	}
	return true;
}

static void dump_code(char *out, size_t ol, const struct tcase *tc)
{
	int n = 0;
	for (int i = 0; i < tc->len && n < (int)ol - 4; i++)
		n += snprintf(out + n, ol - n, "%02x ", tc->code[i]);
}

/* ---- SSE/MMX form descriptions (the test's own, independent of sse.c) ---- */

enum { K_X = 1, K_M, K_G, K_G8, K_N };
#define T_IMM 0x001
#define T_ALIGN 0x002
#define T_REG 0x004   /* register form only */
#define T_MEM 0x008   /* memory form only */
#define T_W 0x010     /* try REX.W both ways */
#define T_F32 0x020
#define T_F64 0x040
#define T_STR 0x080
#define T_INT 0x100
#define T_CMP 0x200 /* imm: only the low 3 bits are defined for the legacy forms */
#define T_RND 0x400 /* imm: round control, bits 3:0 */

struct form {
	const char *name;
	uint16_t pfx; /* up to two prefix bytes, high one first */
	uint8_t map, op;
	uint8_t rk, mk; /* kinds of ModRM.reg and ModRM.rm */
	uint16_t fl;
	int8_t fixreg; /* group opcodes: the /digit, else -1 */
};

#define F(nm, p, m, o, rk, mk, fl) { nm, p, m, o, rk, mk, fl, -1 }
#define G(nm, p, o, r, k) { nm, p, 1, o, K_N, k, T_IMM | T_REG | T_INT, r }
/* an MMX form and its SSE2 66 form */
#define P2(nm, m, o, fl) F(nm " mm", 0, m, o, K_M, K_M, (fl)), F(nm " xmm", 0x66, m, o, K_X, K_X, (fl) | T_ALIGN)
#define FP4(nm, o)                                                                     \
	F(nm "ps", 0, 1, o, K_X, K_X, T_ALIGN | T_F32), F(nm "pd", 0x66, 1, o, K_X, K_X, T_ALIGN | T_F64), \
	F(nm "ss", 0xF3, 1, o, K_X, K_X, T_F32), F(nm "sd", 0xF2, 1, o, K_X, K_X, T_F64)

static const struct form forms[] = {
	F("movups", 0, 1, 0x10, K_X, K_X, 0),
	F("movupd", 0x66, 1, 0x10, K_X, K_X, 0),
	F("movss", 0xF3, 1, 0x10, K_X, K_X, 0),
	F("movsd", 0xF2, 1, 0x10, K_X, K_X, 0),
	F("movups store", 0, 1, 0x11, K_X, K_X, 0),
	F("movupd store", 0x66, 1, 0x11, K_X, K_X, 0),
	F("movss store", 0xF3, 1, 0x11, K_X, K_X, 0),
	F("movsd store", 0xF2, 1, 0x11, K_X, K_X, 0),
	F("movlps/movhlps", 0, 1, 0x12, K_X, K_X, 0),
	F("movlpd", 0x66, 1, 0x12, K_X, K_X, T_MEM),
	F("movsldup", 0xF3, 1, 0x12, K_X, K_X, T_ALIGN),
	F("movddup", 0xF2, 1, 0x12, K_X, K_X, 0),
	F("movlps store", 0, 1, 0x13, K_X, K_X, T_MEM),
	F("movlpd store", 0x66, 1, 0x13, K_X, K_X, T_MEM),
	F("unpcklps", 0, 1, 0x14, K_X, K_X, T_ALIGN),
	F("unpcklpd", 0x66, 1, 0x14, K_X, K_X, T_ALIGN),
	F("unpckhps", 0, 1, 0x15, K_X, K_X, T_ALIGN),
	F("unpckhpd", 0x66, 1, 0x15, K_X, K_X, T_ALIGN),
	F("movhps/movlhps", 0, 1, 0x16, K_X, K_X, 0),
	F("movhpd", 0x66, 1, 0x16, K_X, K_X, T_MEM),
	F("movshdup", 0xF3, 1, 0x16, K_X, K_X, T_ALIGN),
	F("movhps store", 0, 1, 0x17, K_X, K_X, T_MEM),
	F("movhpd store", 0x66, 1, 0x17, K_X, K_X, T_MEM),
	F("movaps", 0, 1, 0x28, K_X, K_X, T_ALIGN),
	F("movapd", 0x66, 1, 0x28, K_X, K_X, T_ALIGN),
	F("movaps store", 0, 1, 0x29, K_X, K_X, T_ALIGN),
	F("movapd store", 0x66, 1, 0x29, K_X, K_X, T_ALIGN),
	F("cvtpi2ps", 0, 1, 0x2A, K_X, K_M, 0),
	F("cvtpi2pd", 0x66, 1, 0x2A, K_X, K_M, 0),
	F("cvtsi2ss", 0xF3, 1, 0x2A, K_X, K_G, T_W),
	F("cvtsi2sd", 0xF2, 1, 0x2A, K_X, K_G, T_W),
	F("movntps", 0, 1, 0x2B, K_X, K_X, T_ALIGN | T_MEM),
	F("movntpd", 0x66, 1, 0x2B, K_X, K_X, T_ALIGN | T_MEM),
	F("cvttps2pi", 0, 1, 0x2C, K_M, K_X, T_F32),
	F("cvttpd2pi", 0x66, 1, 0x2C, K_M, K_X, T_ALIGN | T_F64),
	F("cvttss2si", 0xF3, 1, 0x2C, K_G, K_X, T_W | T_F32),
	F("cvttsd2si", 0xF2, 1, 0x2C, K_G, K_X, T_W | T_F64),
	F("cvtps2pi", 0, 1, 0x2D, K_M, K_X, T_F32),
	F("cvtpd2pi", 0x66, 1, 0x2D, K_M, K_X, T_ALIGN | T_F64),
	F("cvtss2si", 0xF3, 1, 0x2D, K_G, K_X, T_W | T_F32),
	F("cvtsd2si", 0xF2, 1, 0x2D, K_G, K_X, T_W | T_F64),
	F("ucomiss", 0, 1, 0x2E, K_X, K_X, T_F32),
	F("ucomisd", 0x66, 1, 0x2E, K_X, K_X, T_F64),
	F("comiss", 0, 1, 0x2F, K_X, K_X, T_F32),
	F("comisd", 0x66, 1, 0x2F, K_X, K_X, T_F64),
	F("movmskps", 0, 1, 0x50, K_G, K_X, T_REG | T_W),
	F("movmskpd", 0x66, 1, 0x50, K_G, K_X, T_REG | T_W),
	FP4("sqrt", 0x51),
	F("rsqrtps", 0, 1, 0x52, K_X, K_X, T_ALIGN | T_F32),
	F("rsqrtss", 0xF3, 1, 0x52, K_X, K_X, T_F32),
	F("rcpps", 0, 1, 0x53, K_X, K_X, T_ALIGN | T_F32),
	F("rcpss", 0xF3, 1, 0x53, K_X, K_X, T_F32),
	F("andps", 0, 1, 0x54, K_X, K_X, T_ALIGN),
	F("andpd", 0x66, 1, 0x54, K_X, K_X, T_ALIGN),
	F("andnps", 0, 1, 0x55, K_X, K_X, T_ALIGN),
	F("andnpd", 0x66, 1, 0x55, K_X, K_X, T_ALIGN),
	F("orps", 0, 1, 0x56, K_X, K_X, T_ALIGN),
	F("orpd", 0x66, 1, 0x56, K_X, K_X, T_ALIGN),
	F("xorps", 0, 1, 0x57, K_X, K_X, T_ALIGN),
	F("xorpd", 0x66, 1, 0x57, K_X, K_X, T_ALIGN),
	FP4("add", 0x58),
	FP4("mul", 0x59),
	F("cvtps2pd", 0, 1, 0x5A, K_X, K_X, T_F32),
	F("cvtpd2ps", 0x66, 1, 0x5A, K_X, K_X, T_ALIGN | T_F64),
	F("cvtss2sd", 0xF3, 1, 0x5A, K_X, K_X, T_F32),
	F("cvtsd2ss", 0xF2, 1, 0x5A, K_X, K_X, T_F64),
	F("cvtdq2ps", 0, 1, 0x5B, K_X, K_X, T_ALIGN | T_INT),
	F("cvtps2dq", 0x66, 1, 0x5B, K_X, K_X, T_ALIGN | T_F32),
	F("cvttps2dq", 0xF3, 1, 0x5B, K_X, K_X, T_ALIGN | T_F32),
	FP4("sub", 0x5C),
	FP4("min", 0x5D),
	FP4("div", 0x5E),
	FP4("max", 0x5F),
	F("punpcklbw mm", 0, 1, 0x60, K_M, K_M, T_INT),
	F("punpcklbw xmm", 0x66, 1, 0x60, K_X, K_X, T_ALIGN | T_INT),
	F("punpcklwd mm", 0, 1, 0x61, K_M, K_M, T_INT),
	F("punpcklwd xmm", 0x66, 1, 0x61, K_X, K_X, T_ALIGN | T_INT),
	F("punpckldq mm", 0, 1, 0x62, K_M, K_M, T_INT),
	F("punpckldq xmm", 0x66, 1, 0x62, K_X, K_X, T_ALIGN | T_INT),
	P2("packsswb", 1, 0x63, T_INT), P2("pcmpgtb", 1, 0x64, T_INT), P2("pcmpgtw", 1, 0x65, T_INT),
	P2("pcmpgtd", 1, 0x66, T_INT), P2("packuswb", 1, 0x67, T_INT), P2("punpckhbw", 1, 0x68, T_INT),
	P2("punpckhwd", 1, 0x69, T_INT), P2("punpckhdq", 1, 0x6A, T_INT), P2("packssdw", 1, 0x6B, T_INT),
	F("punpcklqdq", 0x66, 1, 0x6C, K_X, K_X, T_ALIGN | T_INT),
	F("punpckhqdq", 0x66, 1, 0x6D, K_X, K_X, T_ALIGN | T_INT),
	F("movd/movq mm, r/m", 0, 1, 0x6E, K_M, K_G, T_W),
	F("movd/movq xmm, r/m", 0x66, 1, 0x6E, K_X, K_G, T_W),
	F("movq mm, mm/m64", 0, 1, 0x6F, K_M, K_M, 0),
	F("movdqa", 0x66, 1, 0x6F, K_X, K_X, T_ALIGN),
	F("movdqu", 0xF3, 1, 0x6F, K_X, K_X, 0),
	F("pshufw", 0, 1, 0x70, K_M, K_M, T_IMM | T_INT),
	F("pshufd", 0x66, 1, 0x70, K_X, K_X, T_IMM | T_ALIGN | T_INT),
	F("pshufhw", 0xF3, 1, 0x70, K_X, K_X, T_IMM | T_ALIGN | T_INT),
	F("pshuflw", 0xF2, 1, 0x70, K_X, K_X, T_IMM | T_ALIGN | T_INT),
	G("psrlw mm, imm", 0, 0x71, 2, K_M), G("psraw mm, imm", 0, 0x71, 4, K_M), G("psllw mm, imm", 0, 0x71, 6, K_M),
	G("psrld mm, imm", 0, 0x72, 2, K_M), G("psrad mm, imm", 0, 0x72, 4, K_M), G("pslld mm, imm", 0, 0x72, 6, K_M),
	G("psrlq mm, imm", 0, 0x73, 2, K_M), G("psllq mm, imm", 0, 0x73, 6, K_M),
	G("psrlw xmm, imm", 0x66, 0x71, 2, K_X), G("psraw xmm, imm", 0x66, 0x71, 4, K_X),
	G("psllw xmm, imm", 0x66, 0x71, 6, K_X), G("psrld xmm, imm", 0x66, 0x72, 2, K_X),
	G("psrad xmm, imm", 0x66, 0x72, 4, K_X), G("pslld xmm, imm", 0x66, 0x72, 6, K_X),
	G("psrlq xmm, imm", 0x66, 0x73, 2, K_X), G("psrldq", 0x66, 0x73, 3, K_X),
	G("psllq xmm, imm", 0x66, 0x73, 6, K_X), G("pslldq", 0x66, 0x73, 7, K_X),
	P2("pcmpeqb", 1, 0x74, T_INT), P2("pcmpeqw", 1, 0x75, T_INT), P2("pcmpeqd", 1, 0x76, T_INT),
	F("haddpd", 0x66, 1, 0x7C, K_X, K_X, T_ALIGN | T_F64),
	F("haddps", 0xF2, 1, 0x7C, K_X, K_X, T_ALIGN | T_F32),
	F("hsubpd", 0x66, 1, 0x7D, K_X, K_X, T_ALIGN | T_F64),
	F("hsubps", 0xF2, 1, 0x7D, K_X, K_X, T_ALIGN | T_F32),
	F("movd/movq r/m, mm", 0, 1, 0x7E, K_M, K_G, T_W),
	F("movd/movq r/m, xmm", 0x66, 1, 0x7E, K_X, K_G, T_W),
	F("movq xmm, xmm/m64", 0xF3, 1, 0x7E, K_X, K_X, 0),
	F("movq mm/m64, mm", 0, 1, 0x7F, K_M, K_M, 0),
	F("movdqa store", 0x66, 1, 0x7F, K_X, K_X, T_ALIGN),
	F("movdqu store", 0xF3, 1, 0x7F, K_X, K_X, 0),
	F("cmpps", 0, 1, 0xC2, K_X, K_X, T_IMM | T_CMP | T_ALIGN | T_F32),
	F("cmppd", 0x66, 1, 0xC2, K_X, K_X, T_IMM | T_CMP | T_ALIGN | T_F64),
	F("cmpss", 0xF3, 1, 0xC2, K_X, K_X, T_IMM | T_CMP | T_F32),
	F("cmpsd", 0xF2, 1, 0xC2, K_X, K_X, T_IMM | T_CMP | T_F64),
	F("movnti", 0, 1, 0xC3, K_G, K_G, T_MEM | T_W),
	F("pinsrw mm", 0, 1, 0xC4, K_M, K_G, T_IMM),
	F("pinsrw xmm", 0x66, 1, 0xC4, K_X, K_G, T_IMM),
	F("pextrw mm", 0, 1, 0xC5, K_G, K_M, T_IMM | T_REG),
	F("pextrw xmm", 0x66, 1, 0xC5, K_G, K_X, T_IMM | T_REG),
	F("shufps", 0, 1, 0xC6, K_X, K_X, T_IMM | T_ALIGN),
	F("shufpd", 0x66, 1, 0xC6, K_X, K_X, T_IMM | T_ALIGN),
	F("addsubpd", 0x66, 1, 0xD0, K_X, K_X, T_ALIGN | T_F64),
	F("addsubps", 0xF2, 1, 0xD0, K_X, K_X, T_ALIGN | T_F32),
	P2("psrlw", 1, 0xD1, T_INT), P2("psrld", 1, 0xD2, T_INT), P2("psrlq", 1, 0xD3, T_INT),
	P2("paddq", 1, 0xD4, T_INT), P2("pmullw", 1, 0xD5, T_INT),
	F("movq xmm/m64, xmm", 0x66, 1, 0xD6, K_X, K_X, 0),
	F("movq2dq", 0xF3, 1, 0xD6, K_X, K_M, T_REG),
	F("movdq2q", 0xF2, 1, 0xD6, K_M, K_X, T_REG),
	F("pmovmskb mm", 0, 1, 0xD7, K_G, K_M, T_REG | T_W),
	F("pmovmskb xmm", 0x66, 1, 0xD7, K_G, K_X, T_REG | T_W),
	P2("psubusb", 1, 0xD8, T_INT), P2("psubusw", 1, 0xD9, T_INT), P2("pminub", 1, 0xDA, T_INT),
	P2("pand", 1, 0xDB, T_INT), P2("paddusb", 1, 0xDC, T_INT), P2("paddusw", 1, 0xDD, T_INT),
	P2("pmaxub", 1, 0xDE, T_INT), P2("pandn", 1, 0xDF, T_INT), P2("pavgb", 1, 0xE0, T_INT),
	P2("psraw", 1, 0xE1, T_INT), P2("psrad", 1, 0xE2, T_INT), P2("pavgw", 1, 0xE3, T_INT),
	P2("pmulhuw", 1, 0xE4, T_INT), P2("pmulhw", 1, 0xE5, T_INT),
	F("cvttpd2dq", 0x66, 1, 0xE6, K_X, K_X, T_ALIGN | T_F64),
	F("cvtdq2pd", 0xF3, 1, 0xE6, K_X, K_X, T_INT),
	F("cvtpd2dq", 0xF2, 1, 0xE6, K_X, K_X, T_ALIGN | T_F64),
	F("movntq", 0, 1, 0xE7, K_M, K_M, T_MEM),
	F("movntdq", 0x66, 1, 0xE7, K_X, K_X, T_MEM | T_ALIGN),
	P2("psubsb", 1, 0xE8, T_INT), P2("psubsw", 1, 0xE9, T_INT), P2("pminsw", 1, 0xEA, T_INT),
	P2("por", 1, 0xEB, T_INT), P2("paddsb", 1, 0xEC, T_INT), P2("paddsw", 1, 0xED, T_INT),
	P2("pmaxsw", 1, 0xEE, T_INT), P2("pxor", 1, 0xEF, T_INT),
	F("lddqu", 0xF2, 1, 0xF0, K_X, K_X, T_MEM),
	P2("psllw", 1, 0xF1, T_INT), P2("pslld", 1, 0xF2, T_INT), P2("psllq", 1, 0xF3, T_INT),
	P2("pmuludq", 1, 0xF4, T_INT), P2("pmaddwd", 1, 0xF5, T_INT), P2("psadbw", 1, 0xF6, T_INT),
	F("maskmovq", 0, 1, 0xF7, K_M, K_M, T_REG | T_INT),
	F("maskmovdqu", 0x66, 1, 0xF7, K_X, K_X, T_REG | T_INT),
	P2("psubb", 1, 0xF8, T_INT), P2("psubw", 1, 0xF9, T_INT), P2("psubd", 1, 0xFA, T_INT),
	P2("psubq", 1, 0xFB, T_INT), P2("paddb", 1, 0xFC, T_INT), P2("paddw", 1, 0xFD, T_INT),
	P2("paddd", 1, 0xFE, T_INT),
	/* SSSE3 */
	P2("pshufb", 2, 0x00, T_INT), P2("phaddw", 2, 0x01, T_INT), P2("phaddd", 2, 0x02, T_INT),
	P2("phaddsw", 2, 0x03, T_INT), P2("pmaddubsw", 2, 0x04, T_INT), P2("phsubw", 2, 0x05, T_INT),
	P2("phsubd", 2, 0x06, T_INT), P2("phsubsw", 2, 0x07, T_INT), P2("psignb", 2, 0x08, T_INT),
	P2("psignw", 2, 0x09, T_INT), P2("psignd", 2, 0x0A, T_INT), P2("pmulhrsw", 2, 0x0B, T_INT),
	P2("pabsb", 2, 0x1C, T_INT), P2("pabsw", 2, 0x1D, T_INT), P2("pabsd", 2, 0x1E, T_INT),
	F("palignr mm", 0, 3, 0x0F, K_M, K_M, T_IMM | T_INT),
	F("palignr xmm", 0x66, 3, 0x0F, K_X, K_X, T_IMM | T_ALIGN | T_INT),
	/* SSE4.1 */
	F("pblendvb", 0x66, 2, 0x10, K_X, K_X, T_ALIGN | T_INT),
	F("blendvps", 0x66, 2, 0x14, K_X, K_X, T_ALIGN),
	F("blendvpd", 0x66, 2, 0x15, K_X, K_X, T_ALIGN),
	F("ptest", 0x66, 2, 0x17, K_X, K_X, T_ALIGN | T_INT),
	F("pmovsxbw", 0x66, 2, 0x20, K_X, K_X, T_INT), F("pmovsxbd", 0x66, 2, 0x21, K_X, K_X, T_INT),
	F("pmovsxbq", 0x66, 2, 0x22, K_X, K_X, T_INT), F("pmovsxwd", 0x66, 2, 0x23, K_X, K_X, T_INT),
	F("pmovsxwq", 0x66, 2, 0x24, K_X, K_X, T_INT), F("pmovsxdq", 0x66, 2, 0x25, K_X, K_X, T_INT),
	F("pmuldq", 0x66, 2, 0x28, K_X, K_X, T_ALIGN | T_INT),
	F("pcmpeqq", 0x66, 2, 0x29, K_X, K_X, T_ALIGN | T_INT),
	F("movntdqa", 0x66, 2, 0x2A, K_X, K_X, T_ALIGN | T_MEM),
	F("packusdw", 0x66, 2, 0x2B, K_X, K_X, T_ALIGN | T_INT),
	F("pmovzxbw", 0x66, 2, 0x30, K_X, K_X, T_INT), F("pmovzxbd", 0x66, 2, 0x31, K_X, K_X, T_INT),
	F("pmovzxbq", 0x66, 2, 0x32, K_X, K_X, T_INT), F("pmovzxwd", 0x66, 2, 0x33, K_X, K_X, T_INT),
	F("pmovzxwq", 0x66, 2, 0x34, K_X, K_X, T_INT), F("pmovzxdq", 0x66, 2, 0x35, K_X, K_X, T_INT),
	F("pcmpgtq", 0x66, 2, 0x37, K_X, K_X, T_ALIGN | T_INT),
	F("pminsb", 0x66, 2, 0x38, K_X, K_X, T_ALIGN | T_INT), F("pminsd", 0x66, 2, 0x39, K_X, K_X, T_ALIGN | T_INT),
	F("pminuw", 0x66, 2, 0x3A, K_X, K_X, T_ALIGN | T_INT), F("pminud", 0x66, 2, 0x3B, K_X, K_X, T_ALIGN | T_INT),
	F("pmaxsb", 0x66, 2, 0x3C, K_X, K_X, T_ALIGN | T_INT), F("pmaxsd", 0x66, 2, 0x3D, K_X, K_X, T_ALIGN | T_INT),
	F("pmaxuw", 0x66, 2, 0x3E, K_X, K_X, T_ALIGN | T_INT), F("pmaxud", 0x66, 2, 0x3F, K_X, K_X, T_ALIGN | T_INT),
	F("pmulld", 0x66, 2, 0x40, K_X, K_X, T_ALIGN | T_INT),
	F("phminposuw", 0x66, 2, 0x41, K_X, K_X, T_ALIGN | T_INT),
	F("roundps", 0x66, 3, 0x08, K_X, K_X, T_IMM | T_RND | T_ALIGN | T_F32),
	F("roundpd", 0x66, 3, 0x09, K_X, K_X, T_IMM | T_RND | T_ALIGN | T_F64),
	F("roundss", 0x66, 3, 0x0A, K_X, K_X, T_IMM | T_RND | T_F32),
	F("roundsd", 0x66, 3, 0x0B, K_X, K_X, T_IMM | T_RND | T_F64),
	F("blendps", 0x66, 3, 0x0C, K_X, K_X, T_IMM | T_ALIGN),
	F("blendpd", 0x66, 3, 0x0D, K_X, K_X, T_IMM | T_ALIGN),
	F("pblendw", 0x66, 3, 0x0E, K_X, K_X, T_IMM | T_ALIGN),
	F("pextrb", 0x66, 3, 0x14, K_X, K_G, T_IMM | T_W),
	F("pextrw r/m16", 0x66, 3, 0x15, K_X, K_G, T_IMM | T_W),
	F("pextrd/q", 0x66, 3, 0x16, K_X, K_G, T_IMM | T_W),
	F("extractps", 0x66, 3, 0x17, K_X, K_G, T_IMM | T_W),
	F("pinsrb", 0x66, 3, 0x20, K_X, K_G, T_IMM),
	F("insertps", 0x66, 3, 0x21, K_X, K_X, T_IMM),
	F("pinsrd/q", 0x66, 3, 0x22, K_X, K_G, T_IMM | T_W),
	F("dpps", 0x66, 3, 0x40, K_X, K_X, T_IMM | T_ALIGN | T_F32),
	F("dppd", 0x66, 3, 0x41, K_X, K_X, T_IMM | T_ALIGN | T_F64),
	F("mpsadbw", 0x66, 3, 0x42, K_X, K_X, T_IMM | T_ALIGN | T_INT),
	/* SSE4.2 */
	F("pcmpestrm", 0x66, 3, 0x60, K_X, K_X, T_IMM | T_W | T_STR),
	F("pcmpestri", 0x66, 3, 0x61, K_X, K_X, T_IMM | T_W | T_STR),
	F("pcmpistrm", 0x66, 3, 0x62, K_X, K_X, T_IMM | T_STR),
	F("pcmpistri", 0x66, 3, 0x63, K_X, K_X, T_IMM | T_STR),
	F("crc32 r, r/m8", 0xF2, 2, 0xF0, K_G, K_G8, T_W),
	F("crc32 r, r/m32/64", 0xF2, 2, 0xF1, K_G, K_G, T_W),
	F("crc32 r, r/m16", 0x66F2, 2, 0xF1, K_G, K_G, 0),
};

/* GPRs the tests may name: not rsp, not rbx/rdi (the memory bases) */
static const int gprs[] = { R_RAX, R_RCX, R_RDX, R_RBP, R_RSI, R_R8, R_R9, R_R10, R_R11, R_R12, R_R13, R_R14, R_R15 };

static int pick(int kind)
{
	switch (kind) {
	case K_X: return rn(16);
	case K_M: return rn(8);
	case K_G: case K_G8: return gprs[rn(sizeof(gprs) / sizeof(gprs[0]))];
	default: return 0;
	}
}

static void encode(struct tcase *tc, const struct form *f, bool mem, bool w, int reg, int rm, int disp, uint8_t imm)
{
	uint8_t *b = tc->code;
	int n = 0;
	if (f->pfx >> 8)
		b[n++] = f->pfx >> 8;
	if (f->pfx & 0xff)
		b[n++] = f->pfx & 0xff;
	uint8_t rex = 0x40 | (w ? 8 : 0) | (reg & 8 ? 4 : 0) | (!mem && (rm & 8) ? 1 : 0);
	/* a REX without bits now and then, which changes byte registers */
	if (rex != 0x40 || rn(4) == 0)
		b[n++] = rex;
	b[n++] = 0x0F;
	if (f->map == 2)
		b[n++] = 0x38;
	else if (f->map == 3)
		b[n++] = 0x3A;
	b[n++] = f->op;
	if (mem) {
		b[n++] = 0x40 | (reg & 7) << 3 | (rn(2) ? 3 : 7); /* [rbx+d8] or [rdi+d8] */
		b[n++] = (uint8_t)disp;
	} else {
		b[n++] = 0xC0 | (reg & 7) << 3 | (rm & 7);
	}
	if (f->fl & T_IMM)
		b[n++] = imm;
	tc->len = n;
}

static int form_hint(uint16_t fl)
{
	return fl & T_F32 ? D_F32 : fl & T_F64 ? D_F64 : fl & T_STR ? D_STR : fl & T_INT ? D_INT : D_ANY;
}

static void test_form(const struct form *f, int ncases)
{
	int bad = 0, done = 0;
	char first[700] = "";
	for (int k = 0; k < ncases; k++) {
		struct hstate s;
		uint8_t data[DATA_SIZE];
		struct tcase tc;
		int hint = form_hint(f->fl);
		gen_state(&s, hint);
		gen_vec(data, DATA_SIZE, hint);
		bool mem = (f->fl & T_MEM) || (!(f->fl & T_REG) && rn(2));
		bool w = (f->fl & T_W) && rn(2);
		int reg = f->fixreg >= 0 ? f->fixreg : pick(f->rk);
		int rm = pick(f->mk);
		if (f->fl & T_STR) {
			/* explicit lengths around the interesting range */
			s.r[R_RAX] = rn(4) ? (uint64_t)(int64_t)((int)rn(41) - 20) : rnd();
			s.r[R_RDX] = rn(4) ? (uint64_t)(int64_t)((int)rn(41) - 20) : rnd();
		}
		uint8_t imm = (uint8_t)rnd();
		if (f->fl & T_CMP)
			imm &= 7;
		if (f->fl & T_RND)
			imm &= 15;
		tc.page_off = rn(4) == 0 ? 0xF00 + rn(0x80) : rn(64);
		tc.data_off = (f->fl & T_ALIGN) ? 16 * rn(8) : rn(128);
		if (f->fl & T_ALIGN)
			tc.page_off &= ~15u;
		int disp = (f->fl & T_ALIGN) ? 16 * rn(4) : rn(64);
		/* rbx and rdi both point at data_off; the operand is at + disp */
		encode(&tc, f, mem, w, reg, rm, disp, imm);
		if (!run_case(&tc, &s, data)) {
			if (!bad++) {
				char hex[64];
				dump_code(hex, sizeof(hex), &tc);
				snprintf(first, sizeof(first), "[%s] %s", hex, last_diff);
			}
		}
		done++;
	}
	n_cases += done;
	n_forms++;
	if (bad)
		ok(false, "%s: %d of %d cases differ; first: %s", f->name, bad, done, first);
	else
		ok(true, "%s (%d cases)", f->name, done);
}

static void test_emms(void)
{
	int bad = 0;
	for (int k = 0; k < 200; k++) {
		struct hstate s;
		uint8_t data[DATA_SIZE];
		gen_state(&s, D_ANY);
		gen_vec(data, DATA_SIZE, D_ANY);
		struct tcase tc = { .code = { 0x0F, 0x77 }, .len = 2 };
		bad += !run_case(&tc, &s, data);
	}
	n_cases += 200;
	n_forms++;
	ok(!bad, "emms (200 cases): %s", bad ? last_diff : "");
}

/* ---- x87 ---- */

struct xform {
	const char *name;
	uint8_t op;          /* D8..DF */
	uint8_t lo, hi;      /* register forms: modrm range; memory forms: lo = /digit, hi = 0 */
	uint8_t mem;         /* memory operand bytes (0: register form) */
	uint8_t kind;        /* what to put in memory */
	bool o16;            /* with a 66 prefix */
};
enum { M_F32 = 1, M_F64, M_F80, M_I16, M_I32, M_I64, M_BCD, M_ENV, M_SAVE, M_CW, M_OUT };

static const struct xform xforms[] = {
	{ "fadd/fmul/fcom/fcomp/fsub/fsubr/fdiv/fdivr m32", 0xD8, 0, 7, 4, M_F32 },
	{ "fadd etc. st0, st(i)", 0xD8, 0xC0, 0xFF },
	{ "fld m32", 0xD9, 0, 0, 4, M_F32 },
	{ "fst m32", 0xD9, 2, 2, 4, M_OUT },
	{ "fstp m32", 0xD9, 3, 3, 4, M_OUT },
	{ "fldenv", 0xD9, 4, 4, 28, M_ENV },
	{ "fldenv o16", 0xD9, 4, 4, 14, M_ENV, true },
	{ "fldcw", 0xD9, 5, 5, 2, M_CW },
	{ "fnstenv", 0xD9, 6, 6, 28, M_OUT },
	{ "fnstenv o16", 0xD9, 6, 6, 14, M_OUT, true },
	{ "fnstcw", 0xD9, 7, 7, 2, M_OUT },
	{ "fld st(i)", 0xD9, 0xC0, 0xC7 },
	{ "fxch", 0xD9, 0xC8, 0xCF },
	{ "fnop", 0xD9, 0xD0, 0xD0 },
	{ "fchs", 0xD9, 0xE0, 0xE0 }, { "fabs", 0xD9, 0xE1, 0xE1 },
	{ "ftst", 0xD9, 0xE4, 0xE4 }, { "fxam", 0xD9, 0xE5, 0xE5 },
	{ "fld1/fldl2t/fldl2e/fldpi/fldlg2/fldln2/fldz", 0xD9, 0xE8, 0xEE },
	{ "f2xm1", 0xD9, 0xF0, 0xF0 }, { "fyl2x", 0xD9, 0xF1, 0xF1 }, { "fptan", 0xD9, 0xF2, 0xF2 },
	{ "fpatan", 0xD9, 0xF3, 0xF3 }, { "fxtract", 0xD9, 0xF4, 0xF4 }, { "fprem1", 0xD9, 0xF5, 0xF5 },
	{ "fdecstp", 0xD9, 0xF6, 0xF6 }, { "fincstp", 0xD9, 0xF7, 0xF7 }, { "fprem", 0xD9, 0xF8, 0xF8 },
	{ "fyl2xp1", 0xD9, 0xF9, 0xF9 }, { "fsqrt", 0xD9, 0xFA, 0xFA }, { "fsincos", 0xD9, 0xFB, 0xFB },
	{ "frndint", 0xD9, 0xFC, 0xFC }, { "fscale", 0xD9, 0xFD, 0xFD }, { "fsin", 0xD9, 0xFE, 0xFE },
	{ "fcos", 0xD9, 0xFF, 0xFF },
	{ "fiadd etc. m32int", 0xDA, 0, 7, 4, M_I32 },
	{ "fcmovb/e/be/u", 0xDA, 0xC0, 0xDF },
	{ "fucompp", 0xDA, 0xE9, 0xE9 },
	{ "fild m32", 0xDB, 0, 0, 4, M_I32 },
	{ "fisttp m32", 0xDB, 1, 1, 4, M_OUT },
	{ "fist m32", 0xDB, 2, 2, 4, M_OUT },
	{ "fistp m32", 0xDB, 3, 3, 4, M_OUT },
	{ "fld m80", 0xDB, 5, 5, 10, M_F80 },
	{ "fstp m80", 0xDB, 7, 7, 10, M_OUT },
	{ "fcmovnb/ne/nbe/nu", 0xDB, 0xC0, 0xDF },
	{ "fnclex", 0xDB, 0xE2, 0xE2 },
	{ "fninit", 0xDB, 0xE3, 0xE3 },
	{ "fucomi", 0xDB, 0xE8, 0xEF },
	{ "fcomi", 0xDB, 0xF0, 0xF7 },
	{ "fadd etc. m64", 0xDC, 0, 7, 8, M_F64 },
	{ "fadd etc. st(i), st0", 0xDC, 0xC0, 0xCF },
	{ "fsubr/fsub/fdivr/fdiv st(i), st0", 0xDC, 0xE0, 0xFF },
	{ "fld m64", 0xDD, 0, 0, 8, M_F64 },
	{ "fisttp m64", 0xDD, 1, 1, 8, M_OUT },
	{ "fst m64", 0xDD, 2, 2, 8, M_OUT },
	{ "fstp m64", 0xDD, 3, 3, 8, M_OUT },
	{ "frstor", 0xDD, 4, 4, 108, M_SAVE },
	{ "frstor o16", 0xDD, 4, 4, 94, M_SAVE, true },
	{ "fnsave", 0xDD, 6, 6, 108, M_OUT },
	{ "fnsave o16", 0xDD, 6, 6, 94, M_OUT, true },
	{ "fnstsw m16", 0xDD, 7, 7, 2, M_OUT },
	{ "ffree", 0xDD, 0xC0, 0xC7 },
	{ "fst st(i)", 0xDD, 0xD0, 0xD7 },
	{ "fstp st(i)", 0xDD, 0xD8, 0xDF },
	{ "fucom", 0xDD, 0xE0, 0xE7 },
	{ "fucomp", 0xDD, 0xE8, 0xEF },
	{ "fiadd etc. m16int", 0xDE, 0, 7, 2, M_I16 },
	{ "faddp/fmulp", 0xDE, 0xC0, 0xCF },
	{ "fcompp", 0xDE, 0xD9, 0xD9 },
	{ "fsubrp/fsubp/fdivrp/fdivp", 0xDE, 0xE0, 0xFF },
	{ "fild m16", 0xDF, 0, 0, 2, M_I16 },
	{ "fisttp m16", 0xDF, 1, 1, 2, M_OUT },
	{ "fist m16", 0xDF, 2, 2, 2, M_OUT },
	{ "fistp m16", 0xDF, 3, 3, 2, M_OUT },
	{ "fbld", 0xDF, 4, 4, 10, M_BCD },
	{ "fild m64", 0xDF, 5, 5, 8, M_I64 },
	{ "fbstp", 0xDF, 6, 6, 10, M_OUT },
	{ "fistp m64", 0xDF, 7, 7, 8, M_OUT },
	{ "ffreep", 0xDF, 0xC0, 0xC7 },
	{ "fnstsw ax", 0xDF, 0xE0, 0xE0 },
	{ "fucomip", 0xDF, 0xE8, 0xEF },
	{ "fcomip", 0xDF, 0xF0, 0xF7 },
	/* aliases that every x86 CPU executes */
	{ "fstp1", 0xD9, 0xD8, 0xDF },
	{ "fcom2/fcomp3", 0xDC, 0xD0, 0xDF },
	{ "fxch4", 0xDD, 0xC8, 0xCF },
	{ "fcomp5", 0xDE, 0xD0, 0xD7 },
	{ "fxch7/fstp8/fstp9", 0xDF, 0xC8, 0xDF },
};

static void gen_mem(uint8_t *p, int kind, int size)
{
	switch (kind) {
	case M_F32: {
		uint32_t v = gen_f32();
		memcpy(p, &v, 4);
		break;
	}
	case M_F64: {
		uint64_t v = gen_f64();
		memcpy(p, &v, 8);
		break;
	}
	case M_F80: gen_f80(p); break;
	case M_I16: case M_I32: case M_I64: gen_vec(p, size, D_INT); break;
	case M_BCD:
		for (int i = 0; i < 9; i++)
			p[i] = (uint8_t)(rn(10) << 4 | rn(10));
		p[9] = rn(2) ? 0x80 : 0;
		break;
	case M_CW: {
		uint16_t cw = (uint16_t)rnd() | 0x3f;
		memcpy(p, &cw, 2);
		break;
	}
	case M_ENV: case M_SAVE: {
		/* a plausible environment: every exception masked, any tags */
		bool o16 = size == 14 || size == 94;
		uint16_t cw = ((uint16_t)rnd() & 0x1f00) | 0x3f | (uint16_t)(rnd() & 0xc0);
		uint16_t sw = (uint16_t)(rnd() & 0x7f7f);
		uint16_t tw = (uint16_t)rnd();
		gen_vec(p, size, D_INT);
		if (o16) {
			memcpy(p, &cw, 2), memcpy(p + 2, &sw, 2), memcpy(p + 4, &tw, 2);
		} else {
			memcpy(p, &cw, 2), memcpy(p + 4, &sw, 2), memcpy(p + 8, &tw, 2);
		}
		int n = o16 ? 14 : 28;
		for (int i = 0; kind == M_SAVE && i < 8; i++)
			gen_f80(p + n + 10 * i);
		break;
	}
	default: break;
	}
}

static void test_xform(const struct xform *f, int ncases)
{
	int bad = 0;
	char first[700] = "";
	for (int k = 0; k < ncases; k++) {
		struct hstate s;
		uint8_t data[DATA_SIZE];
		struct tcase tc;
		gen_state(&s, D_F64);
		gen_vec(data, DATA_SIZE, D_INT);
		int n = 0;
		if (f->o16)
			tc.code[n++] = 0x66;
		else if (rn(4) == 0)
			tc.code[n++] = 0x40 | (rn(2) ? 8 : 0); /* REX.W changes none of these */
		tc.code[n++] = f->op;
		tc.page_off = rn(4) == 0 ? 0xF00 + rn(0x80) : rn(64);
		tc.data_off = rn(64);
		int disp = rn(64);
		if (f->mem) {
			int r = f->lo + rn(f->hi - f->lo + 1);
			tc.code[n++] = 0x40 | r << 3 | 3;
			tc.code[n++] = (uint8_t)disp;
			gen_mem(data + tc.data_off + disp, f->kind, f->mem);
		} else {
			tc.code[n++] = (uint8_t)(f->lo + rn(f->hi - f->lo + 1));
		}
		tc.len = n;
		bool same = run_case(&tc, &s, data);
		if (!same) {
			/* environment images: FIP, FOP, FDP and the selectors are not
			 * compared (AMD stores them only with an exception pending) */
			bool env = f->kind == M_OUT && f->mem >= 14 && (f->op == 0xD9 || f->op == 0xDD);
			if (env && strncmp(last_diff, "memory byte", 11) == 0) {
				int o16 = f->o16;
				int lo = o16 ? 6 : 12, hi = o16 ? 14 : 28;
				uint8_t *g = gmem + G_DATA + tc.page_off + tc.data_off + disp;
				uint8_t *h = host_data + tc.data_off + disp;
				memcpy(g + lo, h + lo, hi - lo);
				if (!memcmp(gmem + G_DATA + tc.page_off, host_data, DATA_SIZE))
					same = true;
				else
					snprintf(last_diff, sizeof(last_diff), "env image differs beyond FIP/FDP");
			}
		}
		if (!same && !bad++) {
			char hex[64];
			dump_code(hex, sizeof(hex), &tc);
			snprintf(first, sizeof(first), "[%s] %s", hex, last_diff);
		}
	}
	n_cases += ncases;
	n_forms++;
	if (bad)
		ok(false, "x87 %s: %d of %d cases differ; first: %s", f->name, bad, ncases, first);
	else
		ok(true, "x87 %s (%d cases)", f->name, ncases);
}

/* ---- fxsave family, differential ---- */

static void test_fxsave(bool wide)
{
	int bad = 0, ncases = 300;
	char first[700] = "";
	for (int k = 0; k < ncases; k++) {
		struct hstate s;
		uint8_t data[DATA_SIZE];
		gen_state(&s, D_ANY);
		memset(data, 0xA5, DATA_SIZE);
		struct tcase tc = { .page_off = 0, .data_off = 0 };
		int n = 0;
		tc.code[n++] = wide ? 0x48 : 0x40;
		tc.code[n++] = 0x0F, tc.code[n++] = 0xAE, tc.code[n++] = 0x03; /* [rbx] */
		tc.len = n;
		/* the image is 512 bytes: use a bigger area for this one */
		struct cpu *c = &cpu;
		struct hstate hs = s;
		static uint8_t hbuf[1024] __attribute__((aligned(64)));
		guest_modes(c);
		memcpy(c->r, s.r, sizeof(c->r));
		c->r[R_RBX] = G_DATA;
		c->rflags = s.rflags;
		c->fx = s.fx;
		c->rip = G_CODE;
		memcpy(gmem + G_CODE, tc.code, tc.len);
		memset(gmem + G_DATA, 0xA5, 1024);
		int vec = guest_step(c);
		memcpy(host_code, tc.code, tc.len);
		uint8_t *p = host_code + tc.len;
		p[0] = 0xFF, p[1] = 0x25, p[2] = p[3] = p[4] = p[5] = 0;
		uint64_t target = (uint64_t)(uintptr_t)host_exit;
		memcpy(p + 6, &target, 8);
		memset(hbuf, 0xA5, sizeof(hbuf));
		hs.r[R_RBX] = (uintptr_t)hbuf;
		host_run(&hs, host_code);
		uint8_t *g = gmem + G_DATA;
		/* fop, fip, fdp are not compared; nor the mxcsr_mask, which is the guest's */
		memcpy(g + 6, hbuf + 6, 18);
		memcpy(g + 28, hbuf + 28, 4);
		const char *why = NULL;
		if (vec >= 0)
			why = "exception";
		else if (memcmp(g, hbuf, 1024))
			why = "image";
		if (why && !bad++) {
			int i = 0;
			while (i < 1024 && g[i] == hbuf[i])
				i++;
			snprintf(first, sizeof(first), "%s, byte %d %02x/%02x", why, i, g[i], hbuf[i]);
		}
	}
	n_cases += ncases;
	n_forms++;
	ok(!bad, "fxsave%s image (%d cases)%s%s", wide ? "64" : "", ncases, bad ? ": " : "", first);
}

static void test_fxrstor(bool wide)
{
	int bad = 0, ncases = 300;
	char first[700] = "";
	for (int k = 0; k < ncases; k++) {
		struct hstate s, img;
		gen_state(&s, D_ANY);
		gen_state(&img, D_ANY);
		uint8_t image[512];
		memcpy(image, &img.fx, 512);
		gen_vec(image + 416, 96, D_INT);
		image[5] = (uint8_t)rnd();
		for (int i = 0; i < 8; i++)
			gen_vec(image + 32 + 16 * i + 10, 6, D_INT);
		uint16_t fcw = (uint16_t)rnd() | 0x3f;
		memcpy(image, &fcw, 2);
		uint16_t fop = (uint16_t)rnd();
		memcpy(image + 6, &fop, 2);
		struct tcase tc;
		int n = 0;
		tc.code[n++] = wide ? 0x48 : 0x40;
		tc.code[n++] = 0x0F, tc.code[n++] = 0xAE, tc.code[n++] = 0x0B; /* fxrstor [rbx] */
		tc.len = n;
		struct cpu *c = &cpu;
		struct hstate hs = s;
		static uint8_t hbuf[512] __attribute__((aligned(64)));
		guest_modes(c);
		memcpy(c->r, s.r, sizeof(c->r));
		c->r[R_RBX] = G_DATA;
		c->rflags = s.rflags;
		c->fx = s.fx;
		c->rip = G_CODE;
		memcpy(gmem + G_CODE, tc.code, tc.len);
		memcpy(gmem + G_DATA, image, 512);
		int vec = guest_step(c);
		memcpy(host_code, tc.code, tc.len);
		uint8_t *p = host_code + tc.len;
		p[0] = 0xFF, p[1] = 0x25, p[2] = p[3] = p[4] = p[5] = 0;
		uint64_t target = (uint64_t)(uintptr_t)host_exit;
		memcpy(p + 6, &target, 8);
		memcpy(hbuf, image, 512);
		hs.r[R_RBX] = (uintptr_t)hbuf;
		host_run(&hs, host_code);
		char why[512] = "";
		if (vec >= 0)
			snprintf(why, sizeof(why), "exception %d", vec);
		else
			fx_equal(&c->fx, &hs.fx, why, sizeof(why));
		if (why[0] && !bad++)
			snprintf(first, sizeof(first), "%s", why);
	}
	n_cases += ncases;
	n_forms++;
	ok(!bad, "fxrstor%s (%d cases)%s%s", wide ? "64" : "", ncases, bad ? ": " : "", first);
}

static void test_mxcsr_insns(void)
{
	int bad = 0, ncases = 200;
	for (int k = 0; k < ncases; k++) {
		struct hstate s;
		uint8_t data[DATA_SIZE];
		gen_state(&s, D_ANY);
		gen_vec(data, DATA_SIZE, D_INT);
		struct tcase tc = { .page_off = rn(64), .data_off = rn(64) };
		bool ld = rn(2);
		int disp = rn(64);
		if (ld) {
			uint32_t v = (uint32_t)rnd() & 0xffff;
			v |= 0x1f80; /* masked, so the host does not trap afterwards */
			memcpy(data + tc.data_off + disp, &v, 4);
		}
		tc.code[0] = 0x0F, tc.code[1] = 0xAE, tc.code[2] = (ld ? 0x53 : 0x5B), tc.code[3] = (uint8_t)disp;
		tc.len = 4;
		bad += !run_case(&tc, &s, data);
	}
	n_cases += ncases;
	n_forms += 2;
	ok(!bad, "ldmxcsr / stmxcsr (%d cases)%s%s", ncases, bad ? ": " : "", bad ? last_diff : "");
}

/* ---- exceptions (guest only) ---- */

/* run code with state s and the given control registers; the vector or -1 */
static int guest_exc(const uint8_t *code, int len, uint64_t cr0_clear, uint64_t cr0_set, uint64_t cr4_clear,
		     struct hstate *s)
{
	struct cpu *c = &cpu;
	guest_modes(c);
	c->cr0 = (c->cr0 & ~cr0_clear) | cr0_set;
	c->cr4 &= ~cr4_clear;
	memcpy(c->r, s->r, sizeof(c->r));
	c->r[R_RBX] = c->r[R_RDI] = G_DATA;
	c->rflags = s->rflags;
	c->fx = s->fx;
	c->rip = G_CODE;
	memcpy(gmem + G_CODE, code, len);
	return guest_step(c);
}

static void test_exceptions(void)
{
	struct hstate s;
	struct cpu *c = &cpu;
	gen_state(&s, D_F32);
	s.fx.mxcsr = 0x1f80;
	s.fx.fcw = 0x37f;
	s.fx.fsw = 0;
	static const uint8_t addps[] = { 0x0F, 0x58, 0x03 };       /* addps xmm0, [rbx] */
	static const uint8_t paddb_mm[] = { 0x0F, 0xFC, 0xC1 };    /* paddb mm0, mm1 */
	static const uint8_t emms[] = { 0x0F, 0x77 };
	static const uint8_t fxsave[] = { 0x0F, 0xAE, 0x03 };
	static const uint8_t ldmxcsr[] = { 0x0F, 0xAE, 0x13 };
	static const uint8_t fld1[] = { 0xD9, 0xE8 };

	ok(guest_exc(addps, 3, 0, CR0_EM, 0, &s) == EXC_UD, "addps with CR0.EM: #UD");
	ok(guest_exc(addps, 3, 0, 0, CR4_OSFXSR, &s) == EXC_UD, "addps without CR4.OSFXSR: #UD");
	ok(guest_exc(addps, 3, 0, CR0_TS, 0, &s) == EXC_NM, "addps with CR0.TS: #NM");
	ok(guest_exc(paddb_mm, 3, 0, CR0_EM, 0, &s) == EXC_UD, "paddb mm with CR0.EM: #UD");
	ok(guest_exc(paddb_mm, 3, 0, CR0_TS, 0, &s) == EXC_NM, "paddb mm with CR0.TS: #NM");
	ok(guest_exc(paddb_mm, 3, 0, 0, CR4_OSFXSR, &s) == -1, "paddb mm without CR4.OSFXSR runs");
	ok(guest_exc(emms, 2, 0, CR0_TS, 0, &s) == EXC_NM, "emms with CR0.TS: #NM");
	ok(guest_exc(fxsave, 3, 0, CR0_TS, 0, &s) == EXC_NM, "fxsave with CR0.TS: #NM");
	ok(guest_exc(fxsave, 3, 0, CR0_EM, 0, &s) == EXC_NM, "fxsave with CR0.EM: #NM");
	ok(guest_exc(ldmxcsr, 3, 0, CR0_EM, 0, &s) == EXC_UD, "ldmxcsr with CR0.EM: #UD");
	ok(guest_exc(ldmxcsr, 3, 0, CR0_TS, 0, &s) == EXC_NM, "ldmxcsr with CR0.TS: #NM");
	/* the forms exec_fast.c runs without sse_exec, each through both
	 * paths (guest_step alternates) */
	static const struct { uint8_t code[5]; int len; const char *name; } fast[] = {
		{ { 0xF2, 0x0F, 0x10, 0x03 }, 4, "movsd xmm0, [rbx]" },
		{ { 0xF2, 0x0F, 0x11, 0xC1 }, 4, "movsd xmm1, xmm0" },
		{ { 0x0F, 0x28, 0xC1 }, 3, "movaps xmm0, xmm1" },
		{ { 0x66, 0x0F, 0x57, 0xC9 }, 4, "xorpd xmm1, xmm1" },
		{ { 0x66, 0x48, 0x0F, 0x6E, 0xC0 }, 5, "movq xmm0, rax" },
		{ { 0x66, 0x48, 0x0F, 0x7E, 0xC0 }, 5, "movq rax, xmm0" },
	};
	for (size_t i = 0; i < sizeof(fast) / sizeof(fast[0]); i++) {
		int v[6];
		for (int k = 0; k < 2; k++) {
			v[3 * k] = guest_exc(fast[i].code, fast[i].len, 0, CR0_EM, 0, &s);
			v[3 * k + 1] = guest_exc(fast[i].code, fast[i].len, 0, 0, CR4_OSFXSR, &s);
			v[3 * k + 2] = guest_exc(fast[i].code, fast[i].len, 0, CR0_TS, 0, &s);
		}
		ok(v[0] == EXC_UD && v[1] == EXC_UD && v[2] == EXC_NM && v[3] == EXC_UD && v[4] == EXC_UD &&
		   v[5] == EXC_NM, "%s with CR0.EM, without CR4.OSFXSR, with CR0.TS: #UD #UD #NM", fast[i].name);
	}

	/* alignment */
	static const uint8_t movaps_mis[] = { 0x0F, 0x28, 0x43, 0x01 }; /* movaps xmm0, [rbx+1] */
	static const uint8_t movups_mis[] = { 0x0F, 0x10, 0x43, 0x01 };
	static const uint8_t movdqa_st_mis[] = { 0x66, 0x0F, 0x7F, 0x43, 0x08 };
	static const uint8_t paddb_mis[] = { 0x66, 0x0F, 0xFC, 0x43, 0x04 };
	static const uint8_t pcmpistri_mis[] = { 0x66, 0x0F, 0x3A, 0x63, 0x43, 0x03, 0x0C };
	static const uint8_t fxsave_mis[] = { 0x0F, 0xAE, 0x43, 0x08 };
	ok(guest_exc(movaps_mis, 4, 0, 0, 0, &s) == EXC_GP && c->pending_err == 0, "movaps misaligned: #GP(0)");
	ok(guest_exc(movups_mis, 4, 0, 0, 0, &s) == -1, "movups misaligned runs");
	ok(guest_exc(movdqa_st_mis, 5, 0, 0, 0, &s) == EXC_GP, "movdqa store misaligned: #GP(0)");
	ok(guest_exc(paddb_mis, 5, 0, 0, 0, &s) == EXC_GP, "paddb xmm, m128 misaligned: #GP(0)");
	ok(guest_exc(pcmpistri_mis, 7, 0, 0, 0, &s) == -1, "pcmpistri misaligned runs");
	ok(guest_exc(fxsave_mis, 4, 0, 0, 0, &s) == EXC_GP, "fxsave misaligned: #GP(0)");

	/* reserved MXCSR bits */
	uint32_t bad_mx = 0x11f80;
	memcpy(gmem + G_DATA, &bad_mx, 4);
	ok(guest_exc(ldmxcsr, 3, 0, 0, 0, &s) == EXC_GP, "ldmxcsr with bit 16 set: #GP(0)");
	uint32_t good_mx = 0x9fc0;
	memcpy(gmem + G_DATA, &good_mx, 4);
	ok(guest_exc(ldmxcsr, 3, 0, 0, 0, &s) == -1 && c->fx.mxcsr == 0x9fc0, "ldmxcsr DAZ|FTZ accepted");
	static const uint8_t fxrstor[] = { 0x48, 0x0F, 0xAE, 0x0B };
	memcpy(gmem + G_DATA, &s.fx, 512);
	memcpy(gmem + G_DATA + 24, &bad_mx, 4);
	ok(guest_exc(fxrstor, 4, 0, 0, 0, &s) == EXC_GP, "fxrstor with a reserved MXCSR bit: #GP(0)");

	/* unmasked SIMD exceptions */
	static const uint8_t divps[] = { 0x0F, 0x5E, 0xC1 }; /* divps xmm0, xmm1 */
	struct hstate z = s;
	for (int i = 0; i < 4; i++) {
		float one = 1.0f, zero = 0.0f;
		memcpy(&z.fx.xmm[0].d[i], &one, 4);
		memcpy(&z.fx.xmm[1].d[i], &zero, 4);
	}
	z.fx.mxcsr = 0x1f80 & ~0x200; /* ZM clear */
	int v = guest_exc(divps, 3, 0, 0, 0, &z);
	ok(v == EXC_XM && (c->fx.mxcsr & 4) && !memcmp(&c->fx.xmm[0], &z.fx.xmm[0], 16),
	   "divps by zero, ZM clear: #XM, ZE set, destination unchanged");
	v = guest_exc(divps, 3, 0, 0, CR4_OSXMMEXCPT, &z);
	ok(v == EXC_UD, "divps by zero, ZM clear, no CR4.OSXMMEXCPT: #UD");
	z.fx.mxcsr = 0x1f80;
	v = guest_exc(divps, 3, 0, 0, 0, &z);
	ok(v == -1 && (c->fx.mxcsr & 4) && c->fx.xmm[0].d[0] == 0x7f800000, "divps by zero masked: inf, ZE set");

	/* x87: an unmasked exception is taken at the next waiting instruction */
	static const uint8_t fdiv_z[] = { 0xD9, 0xEE, 0xD9, 0xE8, 0xDE, 0xF1 }; /* fldz; fld1; fdivrp */
	struct hstate x = s;
	x.fx.fcw = 0x37f & ~4; /* ZM clear */
	x.fx.ftw = 0;
	x.fx.fsw = 0;
	guest_modes(c);
	memcpy(c->r, x.r, sizeof(c->r));
	c->fx = x.fx;
	c->rip = G_CODE;
	memcpy(gmem + G_CODE, fdiv_z, sizeof(fdiv_z));
	memcpy(gmem + G_CODE + sizeof(fdiv_z), fld1, 2);
	int v1 = guest_step(c), v2 = guest_step(c), v3 = guest_step(c);
	int v4 = guest_step(c);
	ok(v1 == -1 && v2 == -1 && v3 == -1 && (c->fx.fsw & 0x8084) == 0x8084 && v4 == EXC_MF,
	   "x87 divide by zero unmasked: ZE, ES, B set; next fld1 takes #MF (%d %d %d %d fsw %04x)", v1, v2,
	   v3, v4, c->fx.fsw);
	static const uint8_t fnclex[] = { 0xDB, 0xE2 };
	c->rip = G_CODE;
	memcpy(gmem + G_CODE, fnclex, 2);
	memcpy(gmem + G_CODE + 2, fld1, 2);
	v1 = guest_step(c);
	v2 = guest_step(c);
	ok(v1 == -1 && v2 == -1 && !(c->fx.fsw & 0x80ff), "fnclex clears it, fld1 runs");

	/* page faults leave no trace */
	static const uint8_t movups_far[] = { 0x0F, 0x11, 0x86, 0xF8, 0x0F, 0x00, 0x00 }; /* movups [rsi+0xff8], xmm0 */
	s.r[R_RSI] = (4u << 20) - 0x1000; /* the store crosses into the unmapped 4 MiB */
	memset(gmem + (4u << 20) - 8, 0x5A, 8);
	v = guest_exc(movups_far, 7, 0, 0, 0, &s);
	bool untouched = true;
	for (int i = 0; i < 8; i++)
		untouched &= gmem[(4u << 20) - 8 + i] == 0x5A;
	ok(v == EXC_PF && c->cr2 == (4u << 20) && untouched, "movups store across into an unmapped page: #PF, nothing written");
	static const uint8_t fstp_far[] = { 0xDD, 0x9E, 0x00, 0x10, 0x00, 0x00 }; /* fstp qword [rsi+0x1000] */
	struct hstate y = s;
	y.fx.ftw = 0xff;
	v = guest_exc(fstp_far, 6, 0, 0, 0, &y);
	ok(v == EXC_PF && c->fx.ftw == 0xff && c->fx.fsw == y.fx.fsw, "fstp to an unmapped page: #PF, stack unchanged");
	static const uint8_t movdqu_ld_far[] = { 0xF3, 0x0F, 0x6F, 0x86, 0xF8, 0x0F, 0x00, 0x00 };
	v = guest_exc(movdqu_ld_far, 8, 0, 0, 0, &s);
	ok(v == EXC_PF && !memcmp(&c->fx.xmm[0], &s.fx.xmm[0], 16), "movdqu load across into an unmapped page: #PF");

	/* encodings */
	static const uint8_t lock_addps[] = { 0xF0, 0x0F, 0x58, 0xC1 };
	static const uint8_t lock_pshufb[] = { 0xF0, 0x66, 0x0F, 0x38, 0x00, 0xC1 };
	static const uint8_t vex_vaddps[] = { 0xC5, 0xF0, 0x58, 0xC2 };
	static const uint8_t movlpd_reg[] = { 0x66, 0x0F, 0x12, 0xC1 };
	static const uint8_t psrldq_mm[] = { 0x0F, 0x73, 0xD8, 0x01 };
	static const uint8_t pclmul[] = { 0x66, 0x0F, 0x3A, 0x44, 0xC1, 0x00 };
	static const uint8_t xsave[] = { 0x0F, 0xAE, 0x23 };
	static const uint8_t movbe[] = { 0x0F, 0x38, 0xF0, 0x03 };
	ok(guest_exc(lock_addps, 4, 0, 0, 0, &s) == EXC_UD, "lock addps: #UD");
	ok(guest_exc(lock_pshufb, 6, 0, 0, 0, &s) == EXC_UD, "lock pshufb: #UD");
	ok(guest_exc(vex_vaddps, 4, 0, 0, 0, &s) == EXC_UD, "VEX vaddps: #UD");
	ok(guest_exc(movlpd_reg, 4, 0, 0, 0, &s) == EXC_UD, "movlpd with a register source: #UD");
	ok(guest_exc(psrldq_mm, 4, 0, 0, 0, &s) == EXC_UD, "psrldq on an MMX register: #UD");
	ok(guest_exc(pclmul, 6, 0, 0, 0, &s) == EXC_UD, "pclmulqdq (not advertised): #UD");
	ok(guest_exc(xsave, 3, 0, 0, 0, &s) == EXC_UD, "xsave (not advertised): #UD");
	ok(guest_exc(movbe, 4, 0, 0, 0, &s) == EXC_UD, "movbe (not advertised): #UD");
	static const uint8_t x87_bad[][3] = { { 0xD9, 0xD1 }, { 0xD9, 0xE2 }, { 0xDA, 0xE8 }, { 0xDB, 0xF8 },
					      { 0xDD, 0xF0 }, { 0xDE, 0xD8 }, { 0xDF, 0xE1 }, { 0xDF, 0xF8 },
					      { 0xD9, 0x4B, 0x00 }, { 0xDB, 0x63, 0x00 }, { 0xDB, 0x73, 0x00 },
					      { 0xDD, 0x6B, 0x00 } };
	int nbad = 0;
	for (size_t i = 0; i < sizeof(x87_bad) / sizeof(x87_bad[0]); i++)
		nbad += guest_exc(x87_bad[i], x87_bad[i][1] < 0xC0 ? 3 : 2, 0, 0, 0, &s) != EXC_UD;
	ok(!nbad, "undefined x87 encodings: #UD");
	ok(guest_exc(fld1, 2, 0, CR0_EM, 0, &s) == EXC_NM, "fld1 with CR0.EM: #NM");

	/* the host's own MXCSR and x87 control word are untouched */
	uint32_t mx;
	uint16_t cw;
	asm volatile("stmxcsr %0" : "=m"(mx));
	asm volatile("fnstcw %0" : "=m"(cw));
	ok(mx == 0x1f80 && cw == 0x37f, "host MXCSR %08x and FCW %04x are the defaults", mx, cw);
}

/* 32-bit protected mode: xmm8-15 are out of reach, fxsave stores 288 bytes */
static void test_mode32(void)
{
	struct cpu *c = &cpu;
	struct hstate s;
	gen_state(&s, D_INT);
	guest_modes(c);
	c->cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE;
	c->efer = 0;
	cpu_set_seg_flat(c, S_CS, 0x08, 0x9b | SEG_ATTR_DB | (1u << 11));
	cpu_update_mode(c);
	tlb_flush(c);
	memcpy(c->r, s.r, sizeof(c->r));
	c->fx = s.fx;
	c->r[R_RBX] = G_DATA;
	c->rip = G_CODE;
	static const uint8_t code[] = { 0x66, 0x0F, 0xEF, 0xC7,        /* pxor xmm0, xmm7 */
					0x0F, 0xAE, 0x03 };             /* fxsave [ebx] */
	memcpy(gmem + G_CODE, code, sizeof(code));
	memset(gmem + G_DATA, 0xA5, 512);
	int v1 = guest_step(c), v2 = guest_step(c);
	xmm_t want;
	for (int i = 0; i < 2; i++)
		want.q[i] = s.fx.xmm[0].q[i] ^ s.fx.xmm[7].q[i];
	ok(v1 == -1 && v2 == -1 && c->mode == 32 && !memcmp(&c->fx.xmm[0], &want, 16) &&
		   !memcmp(gmem + G_DATA + 160, &c->fx.xmm[0], 128) && gmem[G_DATA + 288] == 0xA5,
	   "32-bit mode: pxor, fxsave stores xmm0-7 only");
}

int main(int argc, char **argv)
{
	/* optional: cases per form, and a seed */
	int per_form = argc > 1 ? atoi(argv[1]) : 400;
	if (argc > 2)
		rng_state = strtoull(argv[2], NULL, 0) | 1;
	host_code = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (host_code == MAP_FAILED) {
		printf("1..0 # SKIP no executable memory for the host side\n0 passed, 0 failed\n");
		return 0;
	}
	guest_init();
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++)
		test_form(&forms[i], per_form);
	test_emms();
	for (size_t i = 0; i < sizeof(xforms) / sizeof(xforms[0]); i++)
		test_xform(&xforms[i], per_form);
	test_fxsave(true);
	test_fxsave(false);
	test_fxrstor(true);
	test_fxrstor(false);
	test_mxcsr_insns();
	test_exceptions();
	test_mode32();
	printf("# %ld instruction forms, %ld differential cases against the host\n", n_forms, n_cases);
	printf("1..%d\n%d passed, %d failed\n", n_test, n_pass, n_fail);
	return n_fail ? 1 : 0;
}
