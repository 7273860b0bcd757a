/* A translator of the register-only start of a decoded block to host code.
 *
 * Guest and host are both x86-64, so an instruction that only reads and
 * writes general registers and the arithmetic flags can run as itself: the
 * guest registers a run of such instructions uses are loaded into host
 * registers once, each instruction is re-encoded with its ModRM (and REX)
 * register fields pointing at those host registers, and the registers are
 * stored back when the run leaves. The arithmetic flags stay in the host's
 * RFLAGS from one instruction to the next, so they are exactly what the
 * host computes, undefined ones included, as in the interpreter (alu.h).
 * They are loaded at entry only when the run reads them before writing all
 * of them, and stored at exit only when it writes some.
 *
 * A run ends at the first instruction outside that set (memory operands,
 * implicit registers, anything that may fault or needs the machine); the
 * block's handlers go on from there (block.c). Conditional and near jumps
 * within the run leave it with RIP at their target; one back to the start
 * of the block, when the flags are dead there, loops inside the code while
 * the budget lasts and no interrupt or stop is pending, as block_exec would
 * have re-run the block. Nothing in a run can fault or store, so the code
 * needs no fault or self-modification handling of its own: it belongs to
 * its block, which is revalidated against memory before it runs. */
#include <stddef.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "cpu/jit.h"

#define JIT_SIZE (8u << 20)
/* worst case for one block: BLOCK_MAX_INSNS instructions and exits */
#define JIT_BLOCK_MAX 16384u

struct jit {
	uint8_t *code;
	size_t used;
};

struct jit *jit_create(void)
{
	struct jit *j = calloc(1, sizeof(*j));
	if (!j)
		return NULL;
	j->code = mmap(NULL, JIT_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (j->code == MAP_FAILED) {
		free(j);
		return NULL;
	}
	return j;
}

void jit_destroy(struct jit *j)
{
	if (!j)
		return;
	munmap(j->code, JIT_SIZE);
	free(j);
}

void jit_reset(struct jit *j)
{
	j->used = 0;
}

bool jit_room(const struct jit *j)
{
	return j->used + JIT_BLOCK_MAX <= JIT_SIZE;
}

/* host registers: rdi holds the cpu, rsi the icount limit, r11 is scratch;
 * the guest registers a run uses get these, caller-saved ones first */
enum { H_RAX, H_RCX, H_RDX, H_RBX, H_RSP, H_RBP, H_RSI, H_RDI, H_R8, H_R9, H_R10, H_R11,
       H_R12, H_R13, H_R14, H_R15 };
static const uint8_t pool[] = { H_RAX, H_RCX, H_RDX, H_R8, H_R9, H_R10, H_RBX, H_RBP,
				H_R12, H_R13, H_R14, H_R15 };
#define POOL_SIZE (int)sizeof(pool)

/* what an instruction does with the arithmetic flags */
enum { FL_NONE, FL_READ, FL_FULL, FL_RW };
/* how it is re-encoded */
enum { K_NOP, K_MODRM, K_OPREG, K_PLAIN, K_LEA, K_JCC, K_JMP };

struct form {
	uint8_t kind, op, digit, fl;
	bool map1;
	bool byte;  /* byte operands: without REX, 4..7 mean AH..BH */
	int8_t reg; /* guest register in ModRM.reg; -1: the digit */
	int8_t rm;  /* guest register in ModRM.rm or the opcode's low bits */
	int8_t base, index; /* lea */
};

/* flags of the ALU operation add/or/adc/sbb/and/sub/xor/cmp */
static uint8_t alu_fl(int sub)
{
	return sub == 2 || sub == 3 ? FL_RW : FL_FULL;
}

/* Is in an instruction this file translates, and how? */
static bool classify(const struct insn *in, struct form *f)
{
	uint8_t op = in->op;
	memset(f, 0, sizeof(*f));
	f->kind = K_MODRM;
	f->op = op;
	f->reg = -1;
	f->rm = -1;
	f->base = -1;
	f->index = -1;
	if (in->lock)
		return false;
	if (in->map == 1) {
		f->map1 = true;
		if (op == 0x0D || (op >= 0x18 && op <= 0x1F)) {
			f->kind = K_NOP;
			return true;
		}
		if (in->rep)
			return false;
		if (op >= 0x80 && op <= 0x8F) {
			f->kind = K_JCC;
			f->fl = FL_READ;
			return true;
		}
		if (op >= 0xC8 && op <= 0xCF) { /* bswap */
			if (in->opsize == 2)
				return false;
			f->kind = K_OPREG;
			f->rm = (op & 7) | (in->rex & 1 ? 8 : 0);
			return true;
		}
		if (in->is_mem)
			return false;
		f->reg = in->reg;
		f->rm = in->rm;
		switch (op) {
		case 0x40 ... 0x4F: f->fl = FL_READ; return true;  /* cmovcc */
		case 0x90 ... 0x9F:                                  /* setcc */
			f->reg = -1;
			f->byte = true;
			f->fl = FL_READ;
			return true;
		case 0xA3: case 0xAB: case 0xB3: case 0xBB:          /* bt, bts, btr, btc */
		case 0xA4: case 0xAC:                                /* shld, shrd imm */
		case 0xAF: case 0xBC: case 0xBD:                     /* imul, bsf, bsr */
			f->fl = FL_RW;
			return true;
		case 0xBA:
			if ((in->reg & 7) < 4)
				return false;
			f->reg = -1;
			f->digit = in->reg & 7;
			f->fl = FL_RW;
			return true;
		case 0xB6: case 0xBE: f->byte = true; return true;  /* movzx, movsx */
		case 0xB7: case 0xBF: return true;
		case 0xC0: case 0xC1: /* xadd */
			f->byte = op == 0xC0;
			f->fl = FL_FULL;
			return true;
		}
		return false;
	}
	if (in->map != 0)
		return false;
	if (op == 0x90 && !(in->rex & 1)) {
		f->kind = K_NOP;
		return true;
	}
	if (in->rep)
		return false;
	if (op < 0x40 && (op & 7) < 4) {
		if (in->is_mem)
			return false;
		f->reg = in->reg;
		f->rm = in->rm;
		f->byte = !(op & 1);
		f->fl = alu_fl(op >> 3);
		return true;
	}
	if (op < 0x40 && (op & 7) < 6) {
		/* al/eax, imm: the group 1 form on the register */
		f->op = (op & 7) == 4 ? 0x80 : 0x81;
		f->digit = op >> 3;
		f->rm = R_RAX;
		f->byte = (op & 7) == 4;
		f->fl = alu_fl(op >> 3);
		return true;
	}
	switch (op) {
	case 0x70 ... 0x7F:
		f->kind = K_JCC;
		f->fl = FL_READ;
		return true;
	case 0xE9: case 0xEB:
		f->kind = K_JMP;
		return true;
	case 0xB0 ... 0xBF:
		f->kind = K_OPREG;
		f->rm = (op & 7) | (in->rex & 1 ? 8 : 0);
		f->byte = op < 0xB8;
		return true;
	case 0xA8: case 0xA9:
		f->op = op == 0xA8 ? 0xF6 : 0xF7;
		f->rm = R_RAX;
		f->byte = op == 0xA8;
		f->fl = FL_FULL;
		return true;
	case 0xF5: case 0xF8: case 0xF9: /* cmc, clc, stc */
		f->kind = K_PLAIN;
		f->fl = FL_RW;
		return true;
	case 0x8D:
		if (!in->is_mem || in->opsize == 2)
			return false;
		f->kind = K_LEA;
		f->reg = in->reg;
		if (!in->riprel) {
			f->base = in->base;
			f->index = in->index;
		}
		return true;
	}
	if (in->is_mem)
		return false;
	f->reg = in->reg;
	f->rm = in->rm;
	switch (op) {
	case 0x63:
		return in->opsize == 8;
	case 0x69: case 0x6B:
		f->fl = FL_RW;
		return true;
	case 0x84: case 0x85:
		f->byte = op == 0x84;
		f->fl = FL_FULL;
		return true;
	case 0x86 ... 0x8B: /* xchg, mov */
		f->byte = !(op & 1);
		return true;
	}
	f->reg = -1;
	f->digit = in->reg & 7;
	switch (op) {
	case 0x80: case 0x81: case 0x83:
		f->byte = op == 0x80;
		f->fl = alu_fl(f->digit);
		return true;
	case 0xC0: case 0xC1: case 0xD0: case 0xD1:
		f->byte = op == 0xC0 || op == 0xD0;
		f->fl = FL_RW;
		return true;
	case 0xF6: case 0xF7:
		f->byte = op == 0xF6;
		if (f->digit == 0 || f->digit == 3) {
			f->fl = FL_FULL;
			return true;
		}
		return f->digit == 2;
	case 0xFE: case 0xFF:
		f->byte = op == 0xFE;
		f->fl = FL_RW;
		return f->digit <= 1;
	}
	return false;
}

/* ---- emitting ---- */

struct emit {
	uint8_t *p;
	int8_t host[16]; /* guest register -> host register, -1 */
	uint16_t used;   /* guest registers loaded at entry */
	int nhost;
	uint8_t saved[POOL_SIZE]; /* callee-saved host registers pushed */
	int nsaved;
	bool flags_out; /* the run writes flags: store them at exits */
};

static void b1(struct emit *e, uint8_t v)
{
	*e->p++ = v;
}

static void b4(struct emit *e, uint32_t v)
{
	memcpy(e->p, &v, 4);
	e->p += 4;
}

static void bn(struct emit *e, uint64_t v, int n)
{
	memcpy(e->p, &v, n);
	e->p += n;
}

#define OFF(field) ((uint32_t)offsetof(struct cpu, field))

/* mov host, [rdi + off] / mov [rdi + off], host (64-bit) */
static void emit_ld(struct emit *e, int h, uint32_t off)
{
	b1(e, 0x48 | (h >> 3) << 2);
	b1(e, 0x8B);
	b1(e, 0x80 | (h & 7) << 3 | H_RDI);
	b4(e, off);
}

static void emit_st(struct emit *e, int h, uint32_t off)
{
	b1(e, 0x48 | (h >> 3) << 2);
	b1(e, 0x89);
	b1(e, 0x80 | (h & 7) << 3 | H_RDI);
	b4(e, off);
}

static bool callee_saved(int h)
{
	return h == H_RBX || h == H_RBP || h >= H_R12;
}

static void emit_push(struct emit *e, int h, bool pop)
{
	if (h >= 8)
		b1(e, 0x41);
	b1(e, (pop ? 0x58 : 0x50) | (h & 7));
}

/* Leave the code with RIP moved on by delta from the block's start (code
 * may run at several linear addresses: shared libraries, the vDSO).
 * flags_pushed: the guest flags are on the stack already; count:
 * instructions to add to icount; more: what the code returns. */
static void emit_exit(struct emit *e, int32_t delta, bool flags_pushed, uint32_t count, bool more)
{
	if (e->flags_out && !flags_pushed)
		b1(e, 0x9C); /* pushfq */
	for (int g = 0; g < 16; g++)
		if (e->used & (1u << g))
			emit_st(e, e->host[g], OFF(r[g]));
	if (e->flags_out) {
		static const uint8_t merge[] = {
			0x41, 0x5B,                                          /* pop r11 */
			0x41, 0x81, 0xE3, F_ARITH & 0xff, F_ARITH >> 8, 0, 0, /* and r11d, F_ARITH */
		};
		memcpy(e->p, merge, sizeof(merge));
		e->p += sizeof(merge);
		emit_ld(e, H_RAX, OFF(rflags));
		b1(e, 0x48); /* and rax, ~F_ARITH */
		b1(e, 0x25);
		b4(e, (uint32_t)~F_ARITH);
		b1(e, 0x4C); /* or rax, r11 */
		b1(e, 0x09);
		b1(e, 0xD8);
		emit_st(e, H_RAX, OFF(rflags));
	}
	/* the guest's flags are stored: the adds may clobber the host's */
	if (delta) {
		b1(e, 0x48); /* add qword [rdi + rip], delta */
		b1(e, 0x81);
		b1(e, 0x87);
		b4(e, OFF(rip));
		b4(e, (uint32_t)delta);
	}
	if (count) {
		b1(e, 0x48); /* add qword [rdi + icount], count */
		b1(e, 0x81);
		b1(e, 0x87);
		b4(e, OFF(icount));
		b4(e, count);
	}
	for (int i = e->nsaved - 1; i >= 0; i--)
		emit_push(e, e->saved[i], true);
	b1(e, 0xB8); /* mov eax, more */
	b4(e, more);
	b1(e, 0xC3);
}

/* the host register for guest register g, taken from the pool on first
 * use; -1 when the pool is empty */
static int host_of(struct emit *e, int g)
{
	if (e->host[g] < 0) {
		if (e->nhost == POOL_SIZE)
			return -1;
		e->host[g] = (int8_t)pool[e->nhost++];
		e->used |= 1u << g;
	}
	return e->host[g];
}

/* the guest registers f names get host registers; false when they do not
 * fit (the pool is left as it was) */
static bool assign(struct emit *e, const struct form *f)
{
	int8_t saved_host[16];
	memcpy(saved_host, e->host, sizeof(saved_host));
	uint16_t used = e->used;
	int nhost = e->nhost;
	const int8_t regs[4] = { f->reg, f->rm, f->base, f->index };
	for (int i = 0; i < 4; i++)
		if (regs[i] >= 0 && host_of(e, regs[i]) < 0) {
			memcpy(e->host, saved_host, sizeof(saved_host));
			e->used = used;
			e->nhost = nhost;
			return false;
		}
	return true;
}

static void emit_insn(struct emit *e, const struct insn *in, const struct form *f, uint64_t rip, uint64_t rip0)
{
	int hr = f->reg >= 0 ? e->host[f->reg] : f->digit;
	int hm = f->rm >= 0 ? e->host[f->rm] : 0;
	uint8_t w = in->rex & 8;
	switch (f->kind) {
	case K_NOP:
		return;
	case K_PLAIN:
		b1(e, f->op);
		return;
	case K_OPREG:
		if (in->opsize_prefix)
			b1(e, 0x66);
		b1(e, 0x40 | w | (hm >> 3));
		if (f->map1)
			b1(e, 0x0F);
		b1(e, (f->op & ~7) | (hm & 7));
		bn(e, in->imm, in->imm_size);
		return;
	case K_LEA: {
		if (in->riprel) {
			/* RIP + offset within the block + length + disp; a 32-bit
			 * lea truncates and zero-extends as either size 4 does */
			int64_t d = (int64_t)(rip - rip0) + in->len + in->disp;
			b1(e, 0x48 | (hr >> 3) << 2);
			b1(e, 0x8B); /* mov host, [rdi + rip] */
			b1(e, 0x80 | (hr & 7) << 3 | H_RDI);
			b4(e, OFF(rip));
			b1(e, 0x40 | (in->addrsize == 8 ? w : 0) | (hr >> 3) << 2 | (hr >> 3));
			b1(e, 0x8D); /* lea host, [host + d] */
			b1(e, 0x80 | (hr & 7) << 3 | (hr & 7));
			if ((hr & 7) == 4)
				b1(e, 0x24);
			b4(e, (uint32_t)d);
			return;
		}
		int hb = f->base >= 0 ? e->host[f->base] : 0;
		int hx = f->index >= 0 ? e->host[f->index] : H_RSP;
		if (in->addrsize == 4)
			b1(e, 0x67);
		b1(e, 0x40 | w | (hr >> 3) << 2 | (hx >> 3) << 1 | (hb >> 3));
		b1(e, 0x8D);
		if (f->base >= 0) {
			b1(e, 0x80 | (hr & 7) << 3 | 4);
			b1(e, in->scale << 6 | (hx & 7) << 3 | (hb & 7));
		} else {
			b1(e, (hr & 7) << 3 | 4);
			b1(e, in->scale << 6 | (hx & 7) << 3 | 5);
		}
		b4(e, (uint32_t)in->disp);
		return;
	}
	default:
		break;
	}
	if (in->opsize_prefix)
		b1(e, 0x66);
	b1(e, 0x40 | w | (f->reg >= 0 ? (hr >> 3) << 2 : 0) | (hm >> 3));
	if (f->map1)
		b1(e, 0x0F);
	b1(e, f->op);
	b1(e, 0xC0 | (hr & 7) << 3 | (hm & 7));
	bn(e, in->imm, in->imm_size);
}

/* a branch out of the run, patched once the exits are laid out */
struct exit {
	uint8_t *patch; /* the rel32 to point at the exit */
	int32_t delta; /* target - the block's start */
	uint32_t count;
};

/* what a scan of a block's start found */
struct scan {
	struct form forms[64];
	int k; /* instructions in the run */
	int first_fl;
	bool ends_with_jump;
};

/* how far the run at in goes, which registers it needs, what it does with
 * the flags */
static void scan(struct cpu *c, const struct insn *in, int n, uint64_t rip0, struct scan *s, struct emit *e)
{
	uint64_t rip = rip0;
	s->k = 0;
	s->first_fl = FL_NONE;
	s->ends_with_jump = false;
	memset(e->host, -1, sizeof(e->host));
	e->used = 0;
	e->nhost = 0;
	e->flags_out = false;
	if (c->mode != 64 || n > 64)
		return;
	for (int k = 0; k < n; k++) {
		struct form *f = &s->forms[k];
		if (!classify(&in[k], f))
			return;
		if (f->byte && !in[k].rex &&
		    ((f->reg >= 4 && f->reg < 8) || (f->rm >= 4 && f->rm < 8)))
			return;
		/* branches within the block's page only: their targets are
		 * canonical wherever the page is mapped */
		if ((f->kind == K_JCC || f->kind == K_JMP) && (rip + in[k].len + in[k].imm) >> 12 != rip0 >> 12)
			return;
		if (in[k].riprel && (int64_t)(int32_t)(in[k].disp + 0x2000) != in[k].disp + 0x2000)
			return;
		if (!assign(e, f))
			return;
		if (s->first_fl == FL_NONE)
			s->first_fl = f->fl;
		if (f->fl == FL_FULL || f->fl == FL_RW)
			e->flags_out = true;
		rip += in[k].len;
		s->k = k + 1;
		if (f->kind == K_JMP) {
			s->ends_with_jump = true;
			return;
		}
	}
}

int jit_prefix(struct cpu *c, const struct insn *in, int n, uint64_t rip0)
{
	struct scan s;
	struct emit e;
	scan(c, in, n, rip0, &s, &e);
	return s.k;
}

int jit_translate(struct jit *j, struct cpu *c, const struct insn *in, int n, uint64_t rip0, jit_fn *fn)
{
	struct scan sc;
	struct emit e = { 0 };
	scan(c, in, n, rip0, &sc, &e);
	const struct form *forms = sc.forms;
	int k = sc.k, first_fl = sc.first_fl;
	bool ends_with_jump = sc.ends_with_jump;
	uint64_t rip;
	if (k < JIT_MIN_RUN)
		return 0;
	bool flags_in = first_fl == FL_READ || first_fl == FL_RW;

	uint8_t *start = j->code + j->used;
	e.p = start;
	for (int i = 0; i < e.nhost; i++)
		if (callee_saved(pool[i])) {
			e.saved[e.nsaved++] = pool[i];
			emit_push(&e, pool[i], false);
		}
	if (flags_in) {
		static const uint8_t sahf_in[] = {
			0x41, 0x89, 0xC3,       /* mov r11d, eax */
			0x41, 0xC1, 0xEB, 0x0B, /* shr r11d, 11 */
			0x41, 0x83, 0xE3, 0x01, /* and r11d, 1 */
			0xC1, 0xE0, 0x08,       /* shl eax, 8 */
			0x41, 0x80, 0xC3, 0x7F, /* add r11b, 0x7f: OF = the guest's */
			0x9E,                   /* sahf: SF ZF AF PF CF */
		};
		emit_ld(&e, H_RAX, OFF(rflags));
		memcpy(e.p, sahf_in, sizeof(sahf_in));
		e.p += sizeof(sahf_in);
	}
	for (int g = 0; g < 16; g++)
		if (e.used & (1u << g))
			emit_ld(&e, e.host[g], OFF(r[g]));
	uint8_t *top = e.p;

	struct exit exits[64];
	int nexits = 0;
	rip = rip0;
	for (int i = 0; i < k; i++) {
		const struct form *f = &forms[i];
		uint64_t next = rip + in[i].len;
		if (f->kind == K_JCC || f->kind == K_JMP) {
			if (f->kind == K_JCC) {
				b1(&e, 0x0F);
				b1(&e, 0x80 | (in[i].op & 15));
			} else {
				b1(&e, 0xE9);
			}
			exits[nexits++] = (struct exit){ e.p, (int32_t)(next + in[i].imm - rip0), (uint32_t)(i + 1) };
			b4(&e, 0);
		} else {
			emit_insn(&e, &in[i], f, rip, rip0);
		}
		rip = next;
	}
	if (!ends_with_jump)
		emit_exit(&e, (int32_t)(rip - rip0), false, (uint32_t)k, true);
	for (int x = 0; x < nexits; x++) {
		int32_t rel = (int32_t)(e.p - (exits[x].patch + 4));
		memcpy(exits[x].patch, &rel, 4);
		if (exits[x].delta || flags_in) {
			emit_exit(&e, exits[x].delta, false, exits[x].count, false);
			continue;
		}
		/* back to the start with the flags dead there: go round again
		 * unless the budget is used up or something is pending */
		if (e.flags_out)
			b1(&e, 0x9C); /* pushfq */
		b1(&e, 0x48); /* add qword [rdi + icount], count */
		b1(&e, 0x81);
		b1(&e, 0x87);
		b4(&e, OFF(icount));
		b4(&e, exits[x].count);
		b1(&e, 0x4C); /* mov r11, [rdi + icount] */
		b1(&e, 0x8B);
		b1(&e, 0x9F);
		b4(&e, OFF(icount));
		b1(&e, 0x49); /* cmp r11, rsi */
		b1(&e, 0x39);
		b1(&e, 0xF3);
		b1(&e, 0x0F); /* jae out */
		b1(&e, 0x83);
		uint8_t *out1 = e.p;
		b4(&e, 0);
		b1(&e, 0x44); /* mov r11d, [rdi + intr_poke] */
		b1(&e, 0x8B);
		b1(&e, 0x9F);
		b4(&e, OFF(intr_poke));
		b1(&e, 0x44); /* or r11d, [rdi + stop_request] */
		b1(&e, 0x0B);
		b1(&e, 0x9F);
		b4(&e, OFF(stop_request));
		b1(&e, 0x0F); /* jnz out */
		b1(&e, 0x85);
		uint8_t *out2 = e.p;
		b4(&e, 0);
		if (e.flags_out) {
			b1(&e, 0x48); /* add rsp, 8 */
			b1(&e, 0x83);
			b1(&e, 0xC4);
			b1(&e, 0x08);
		}
		b1(&e, 0xE9); /* jmp top */
		b4(&e, (uint32_t)(int32_t)(top - (e.p + 4)));
		int32_t r1 = (int32_t)(e.p - (out1 + 4)), r2 = (int32_t)(e.p - (out2 + 4));
		memcpy(out1, &r1, 4);
		memcpy(out2, &r2, 4);
		emit_exit(&e, 0, e.flags_out, 0, false);
	}
	j->used += ((size_t)(e.p - start) + 15) & ~(size_t)15;
	*fn = (jit_fn)(void *)start;
	return k;
}
