/* The x87 FPU (D8..DF).
 *
 * The state is the x87 part of c->fx (FXSAVE layout: abridged tag byte,
 * registers in stack order). Arithmetic, loads, stores, compares and the
 * transcendental instructions run on the host's own x87 unit, which makes
 * the 80-bit results, C0-C3 and the status flags exact: one asm statement
 * saves the host's state (fxsave64), loads the guest's with every exception
 * masked, runs a stub "op modrm; jmp *%r11" whose memory operand is a host
 * buffer at [rdi], saves the guest's state and restores the host's. The
 * environment instructions (fnstenv/fldenv/fnsave/frstor), the control and
 * status word instructions, fninit and fnclex are done in C. Exceptions that
 * the guest left unmasked set ES/B, and the next waiting x87 instruction
 * takes #MF when CR0.NE is set. FIP/FDP/FOP are kept here, as offsets
 * (FCS/FDS read as zero, as on CPUs that deprecate them).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cpu/cpu.h"

#define FSW_ES 0x0080u
#define FSW_B 0x8000u
#define FSW_TOP 0x3800u

#define SLOT 8
static uint8_t *x87_code; /* [opcode & 7][modrm] stubs; memory forms use [rdi] */
static uint32_t host_mxcsr_mask;

/* At program start, before any sandbox can forbid mmap/mprotect */
__attribute__((constructor)) static void x87_init(void)
{
	uint8_t fxs[512] __attribute__((aligned(16)));
	asm volatile("fxsave64 %0" : "=m"(fxs));
	memcpy(&host_mxcsr_mask, fxs + 28, 4);
	if (!host_mxcsr_mask)
		host_mxcsr_mask = 0xffbf;
	size_t size = 8 * 256 * SLOT;
	uint8_t *code = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (code == MAP_FAILED) {
		perror("accord: x87 stubs: mmap");
		abort();
	}
	for (int op = 0; op < 8; op++)
		for (int m = 0; m < 256; m++) {
			uint8_t *p = code + (op * 256 + m) * SLOT;
			p[0] = 0xD8 + op;
			p[1] = m < 0xC0 ? (m & 0x38) | 7 : m;
			p[2] = 0x41; /* jmp *%r11 */
			p[3] = 0xFF;
			p[4] = 0xE3;
			memset(p + 5, 0xCC, SLOT - 5);
		}
	if (mprotect(code, size, PROT_READ | PROT_EXEC)) {
		perror("accord: x87 stubs: mprotect");
		abort();
	}
	x87_code = code;
}

/* ES and B summarize the unmasked exception flags */
static void fsw_summary(struct fxstate *fx)
{
	if (fx->fsw & ~fx->fcw & 0x3f)
		fx->fsw |= FSW_ES | FSW_B;
	else
		fx->fsw &= ~(FSW_ES | FSW_B);
}

static void check_pending(struct cpu *c)
{
	if ((c->fx.fsw & FSW_ES) && (c->cr0 & CR0_NE))
		cpu_fault(c, EXC_MF, 0);
}

/* ---- memory forms: bytes accessed, read or written ---- */

enum { NONE, RD, WR, CTL };
static const struct {
	uint8_t size, dir;
} memform[8][8] = {
	/* D8 m32fp arithmetic */
	{ { 4, RD }, { 4, RD }, { 4, RD }, { 4, RD }, { 4, RD }, { 4, RD }, { 4, RD }, { 4, RD } },
	/* D9 fld fst fstp m32, fldenv fldcw fnstenv fnstcw */
	{ { 4, RD }, { 0, NONE }, { 4, WR }, { 4, WR }, { 0, CTL }, { 0, CTL }, { 0, CTL }, { 0, CTL } },
	/* DA m32int arithmetic */
	{ { 4, RD }, { 4, RD }, { 4, RD }, { 4, RD }, { 4, RD }, { 4, RD }, { 4, RD }, { 4, RD } },
	/* DB fild fisttp fist fistp m32, fld fstp m80 */
	{ { 4, RD }, { 4, WR }, { 4, WR }, { 4, WR }, { 0, NONE }, { 10, RD }, { 0, NONE }, { 10, WR } },
	/* DC m64fp arithmetic */
	{ { 8, RD }, { 8, RD }, { 8, RD }, { 8, RD }, { 8, RD }, { 8, RD }, { 8, RD }, { 8, RD } },
	/* DD fld fisttp fst fstp m64, frstor, fnsave, fnstsw */
	{ { 8, RD }, { 8, WR }, { 8, WR }, { 8, WR }, { 0, CTL }, { 0, NONE }, { 0, CTL }, { 0, CTL } },
	/* DE m16int arithmetic */
	{ { 2, RD }, { 2, RD }, { 2, RD }, { 2, RD }, { 2, RD }, { 2, RD }, { 2, RD }, { 2, RD } },
	/* DF fild fisttp fist fistp m16, fbld, fild m64, fbstp, fistp m64 */
	{ { 2, RD }, { 2, WR }, { 2, WR }, { 2, WR }, { 10, RD }, { 8, RD }, { 10, WR }, { 8, WR } },
};

/* register forms the unit defines, with the aliases every x86 CPU executes
 * (fstp1, fcom2, fcomp3, fxch4, fcomp5, fxch7, fstp8, fstp9, ffreep) */
static bool reg_valid(int op, uint8_t m)
{
	switch (op) {
	case 0: case 4: return true;
	case 1:
		return m < 0xD1 || (m >= 0xD8 && m < 0xE2) || m == 0xE4 || m == 0xE5 ||
		       (m >= 0xE8 && m <= 0xEE) || m >= 0xF0;
	case 2: return m < 0xE0 || m == 0xE9;
	case 3: return m < 0xE5 || (m >= 0xE8 && m < 0xF8);
	case 5: return m < 0xF0;
	case 6: return m < 0xD8 || m == 0xD9 || m >= 0xE0;
	default: return m <= 0xE0 || (m >= 0xE8 && m < 0xF8);
	}
}

/* Run the stub on a copy of the guest state with all exceptions masked.
 * *ah carries the guest's flags in (fcmov) and the new ones out (fcomi). */
static void x87_native(const uint8_t *code, struct fxstate *g, void *mem, uint8_t *ah)
{
	struct fxstate host;
	uint64_t ax = (uint64_t)*ah << 8;
	asm volatile("fxsave64 %[h]\n\t"
		     "fxrstor64 %[g]\n\t"
		     "sahf\n\t"
		     "lea 1f(%%rip), %%r11\n\t"
		     "jmp *%[code]\n"
		     "1:\n\t"
		     "lahf\n\t"
		     "fxsave64 %[g]\n\t"
		     "fxrstor64 %[h]"
		     : [g] "+m"(*g), [h] "=m"(host), "+a"(ax)
		     : [code] "r"(code), "D"(mem)
		     : "r11", "cc", "memory");
	*ah = ax >> 8;
}

/* ---- environment ---- */

/* The registers are stored in stack order: a new TOP moves them. */
static void set_top(struct fxstate *fx, int top)
{
	int old = (fx->fsw >> 11) & 7;
	if (top != old) {
		uint8_t st[8][16];
		for (int i = 0; i < 8; i++)
			memcpy(st[i], fx->st[(i + top - old) & 7], 16);
		memcpy(fx->st, st, sizeof(st));
	}
	fx->fsw = (fx->fsw & ~FSW_TOP) | (uint16_t)(top << 11);
}

/* the full tag word from the abridged one and the register contents */
static uint16_t full_tags(const struct fxstate *fx)
{
	int top = (fx->fsw >> 11) & 7;
	uint16_t tw = 0;
	for (int p = 0; p < 8; p++) {
		int t;
		if (!(fx->ftw & (1u << p))) {
			t = 3;
		} else {
			const uint8_t *r = fx->st[(p - top) & 7];
			uint64_t mant;
			uint16_t se;
			memcpy(&mant, r, 8);
			memcpy(&se, r + 8, 2);
			int exp = se & 0x7fff;
			if (exp == 0x7fff)
				t = 2;
			else if (exp == 0)
				t = mant ? 2 : 1;
			else
				t = (mant >> 63) ? 0 : 2;
		}
		tw |= t << (2 * p);
	}
	return tw;
}

static uint8_t abridged_tags(uint16_t tw)
{
	uint8_t t = 0;
	for (int p = 0; p < 8; p++)
		if (((tw >> (2 * p)) & 3) != 3)
			t |= 1u << p;
	return t;
}

/* protected-mode layouts: 28 bytes (32-bit operand size) or 14 (16-bit) */
static int env_store(struct cpu *c, struct insn *in, uint8_t *b)
{
	struct fxstate *fx = &c->fx;
	uint16_t tw = full_tags(fx);
	if (in->opsize == 2) {
		uint16_t v[7] = { fx->fcw, fx->fsw, tw, (uint16_t)fx->fip, 0, (uint16_t)fx->fdp, 0 };
		memcpy(b, v, 14);
		return 14;
	}
	uint32_t v[7] = { 0xffff0000u | fx->fcw, 0xffff0000u | fx->fsw, 0xffff0000u | tw,
			  (uint32_t)fx->fip, (uint32_t)(fx->fop & 0x7ff) << 16, (uint32_t)fx->fdp,
			  0xffff0000u };
	memcpy(b, v, 28);
	return 28;
}

static int env_size(struct insn *in)
{
	return in->opsize == 2 ? 14 : 28;
}

static void env_load(struct cpu *c, struct insn *in, const uint8_t *b)
{
	struct fxstate *fx = &c->fx;
	uint16_t tw, sw;
	if (in->opsize == 2) {
		uint16_t v[7];
		memcpy(v, b, 14);
		fx->fcw = v[0];
		sw = v[1];
		tw = v[2];
		fx->fip = v[3];
		fx->fdp = v[5];
		fx->fop = 0;
	} else {
		uint32_t v[7];
		memcpy(v, b, 28);
		fx->fcw = (uint16_t)v[0];
		sw = (uint16_t)v[1];
		tw = (uint16_t)v[2];
		fx->fip = v[3];
		fx->fop = (v[4] >> 16) & 0x7ff;
		fx->fdp = v[5];
	}
	set_top(fx, (sw >> 11) & 7);
	fx->fsw = sw;
	fx->fcw = (fx->fcw & 0x1f3f) | 0x40;
	fx->ftw = abridged_tags(tw);
	fsw_summary(fx);
}

static void fninit(struct fxstate *fx)
{
	set_top(fx, 0);
	fx->fcw = 0x37f;
	fx->fsw = 0;
	fx->ftw = 0;
	fx->fop = 0;
	fx->fip = 0;
	fx->fdp = 0;
}

static bool control(struct cpu *c, struct insn *in, uint64_t lin)
{
	struct fxstate *fx = &c->fx;
	uint8_t buf[108];
	switch ((in->op & 7) << 3 | (in->reg & 7)) {
	case 014: /* fldenv */
		check_pending(c);
		mem_read_buf(c, lin, buf, env_size(in));
		env_load(c, in, buf);
		break;
	case 015: /* fldcw */
		check_pending(c);
		fx->fcw = ((uint16_t)mem_read(c, lin, 2) & 0x1f3f) | 0x40;
		fsw_summary(fx);
		break;
	case 016: /* fnstenv: then every exception is masked */
		mem_write_buf(c, lin, buf, env_store(c, in, buf));
		fx->fcw |= 0x3f;
		fsw_summary(fx);
		break;
	case 017: /* fnstcw */
		mem_write(c, lin, fx->fcw, 2);
		break;
	case 054: { /* frstor */
		check_pending(c);
		int n = env_size(in);
		mem_read_buf(c, lin, buf, n + 80);
		env_load(c, in, buf);
		for (int i = 0; i < 8; i++) {
			memset(fx->st[i], 0, 16);
			memcpy(fx->st[i], buf + n + 10 * i, 10);
		}
		break;
	}
	case 056: { /* fnsave, then fninit */
		int n = env_store(c, in, buf);
		for (int i = 0; i < 8; i++)
			memcpy(buf + n + 10 * i, fx->st[i], 10);
		mem_write_buf(c, lin, buf, n + 80);
		fninit(fx);
		break;
	}
	case 057: /* fnstsw m16 */
		mem_write(c, lin, fx->fsw, 2);
		break;
	default:
		return false;
	}
	return true;
}

bool x87_exec(struct cpu *c, struct insn *in)
{
	int op = in->op & 7, reg = in->reg & 7;
	uint8_t modrm = (uint8_t)(in->mod << 6 | reg << 3 | (in->rm & 7));
	struct fxstate *fx = &c->fx;
	uint64_t lin = 0;
	int size = 0, dir = NONE;
	bool flags_out = false;

	if (in->lock)
		cpu_ud(c);
	if (in->is_mem) {
		dir = memform[op][reg].dir;
		size = memform[op][reg].size;
		if (dir == NONE)
			return false;
		lin = insn_ea_lin(c, in);
		if (dir == CTL)
			return control(c, in, lin);
	} else {
		if (!reg_valid(op, modrm))
			return false;
		switch (op << 8 | modrm) {
		case 0x7E0: /* fnstsw ax */
			c->r[R_RAX] = (c->r[R_RAX] & ~0xffffull) | fx->fsw;
			return true;
		case 0x3E2: /* fnclex */
			fx->fsw &= ~(0x00ff | FSW_B);
			return true;
		case 0x3E3: /* fninit */
			fninit(fx);
			return true;
		case 0x3E0: case 0x3E1: case 0x3E4: /* feni fdisi fsetpm: nops since the 387 */
			return true;
		}
		/* fcomi fcomip fucomi fucomip */
		flags_out = (op == 3 || op == 7) && modrm >= 0xE8 && modrm < 0xF8;
	}
	check_pending(c);

	struct fxstate g = *fx;
	g.fcw |= 0x3f;
	g.fsw &= ~(FSW_ES | FSW_B);
	g.mxcsr &= host_mxcsr_mask & 0xffff;
	uint8_t buf[16] __attribute__((aligned(16))) = { 0 };
	if (dir == RD)
		mem_read_buf(c, lin, buf, size);
	uint8_t ah = (uint8_t)c->rflags;
	x87_native(x87_code + (op * 256 + modrm) * SLOT, &g, buf, &ah);
	/* a faulting store leaves the FPU as it was */
	if (dir == WR)
		mem_write_buf(c, lin, buf, size);

	fx->fsw = g.fsw;
	fx->ftw = g.ftw;
	memcpy(fx->st, g.st, sizeof(fx->st));
	fsw_summary(fx);
	fx->fop = (uint16_t)(op << 8 | modrm);
	fx->fip = c->mode == 64 ? c->insn_rip : (uint32_t)c->insn_rip;
	if (in->is_mem)
		fx->fdp = c->mode == 64 ? in->ea : (uint32_t)in->ea;
	if (flags_out)
		c->rflags = (c->rflags & ~(uint64_t)F_ARITH) | (ah & (F_ZF | F_PF | F_CF));
	return true;
}
