/* A translator of runs of decoded instructions to host code.
 *
 * Guest and host are both x86-64, so an instruction that works on general
 * registers, the arithmetic flags and ordinary memory can run as itself:
 * the guest registers a run uses are loaded into host registers (the first
 * ten at entry, later ones in place of the one used again last), each
 * instruction is re-encoded with its ModRM (and REX) register fields
 * pointing at those host registers and its memory operand at the host
 * address of the guest's, and the registers it wrote are stored back when
 * the run leaves. The arithmetic flags are the host's, from the host's own
 * instruction, undefined ones included, as in the interpreter (alu.h). They
 * live in the host's RFLAGS while the run computes with them and in
 * c->rflags around memory accesses (the address lookup clobbers the host's),
 * moved with lahf/seto and sahf only where the run needs it.
 *
 * A memory operand's linear address is looked up in the software TLB
 * inline; when the entry is missing, the access crosses a page, or a write
 * would land in a page that holds decoded code, the run leaves with a side
 * exit before the instruction, with the guest state as it was there, and
 * the block's handler runs it (filling the TLB, faulting, or noting the
 * self-modification as usual). So the code itself never faults.
 *
 * A run ends at the first instruction outside that set (implicit register
 * operands, string operations, anything that needs the machine); the
 * block's handlers go on from there, and a block ends where the next run
 * would start (block.c). Conditional jumps leave the run with RIP at
 * their target, as an offset from the block's start: the same code serves
 * every linear address its page is mapped at (a target in another page
 * is checked to be canonical on the way out). A run may end in a near
 * call, a ret, or a jmp anywhere (an indirect jmp or call too: its target
 * from a register or memory), the return address pushed or popped
 * through the same lookup. A jump back to the start of
 * the block, when the flags are not read there before they are written,
 * loops inside the code while the budget lasts and no interrupt or stop is
 * pending, as block_exec would have re-run the block.
 *
 * An exit to a fixed target (a branch, the fall-through, a call or jmp)
 * is linked by block_exec to the code of the block found there, through a
 * stub that checks that block's epoch, the budget and pending events (and
 * for a target in another page, that the TLB maps it where it did), so
 * code goes on from block to block without returning. A ret or an
 * indirect jmp or call, whose target changes from one run to the next,
 * goes on through a jump cache
 * read as data instead, with the same checks. The code belongs to
 * its block, which is compared with memory before it runs (block.c), and
 * is dropped with it when the arenas are emptied. */
#include <stddef.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "cpu/jit.h"

#define JIT_SIZE (64u << 20)
/* more than the code for one block: 64 instructions and their exits */
#define JIT_BLOCK_MAX 65536u

/* the jump cache of returns and indirect jumps: the code of the block at a host address
 * (block.c's key: host address, TLB set and mode), valid while its
 * epoch is the CPU's */
#define RET_CACHE 4096u
struct ret_target {
	uintptr_t key;
	jit_fn fn;
	const uint64_t *epoch;
	uintptr_t unused;
};

struct jit {
	uint8_t *code;
	size_t used;
	size_t base; /* the entry code at the start of code */
	struct ret_target *ret;
};

/* The entry into host code: the host's callee-saved registers are saved
 * once here, so that blocks' code may use them all and go on into one
 * another's without saving them again, and each returns here. */
static const uint8_t enter_code[] = {
	0x53, 0x55, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57, /* push rbx rbp r12-r15 */
	0xFF, 0xD2,                                                 /* call rdx */
	0x41, 0x5F, 0x41, 0x5E, 0x41, 0x5D, 0x41, 0x5C, 0x5D, 0x5B, /* pop r15-r12 rbp rbx */
	0xC3,                                                       /* ret */
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
	j->ret = calloc(RET_CACHE, sizeof(*j->ret));
	if (!j->ret) {
		munmap(j->code, JIT_SIZE);
		free(j);
		return NULL;
	}
	memcpy(j->code, enter_code, sizeof(enter_code));
	j->base = j->used = (sizeof(enter_code) + 15) & ~(size_t)15;
	return j;
}

void jit_destroy(struct jit *j)
{
	if (!j)
		return;
	munmap(j->code, JIT_SIZE);
	free(j->ret);
	free(j);
}

void jit_reset(struct jit *j)
{
	j->used = j->base;
	memset(j->ret, 0, RET_CACHE * sizeof(*j->ret));
}

static unsigned ret_slot(uintptr_t key)
{
	return (unsigned)((key >> 4) ^ (key >> 16)) & (RET_CACHE - 1);
}

void jit_remember(struct jit *j, uintptr_t key, jit_fn fn, const uint64_t *epoch)
{
	j->ret[ret_slot(key)] = (struct ret_target){ key, fn, epoch, 0 };
}

jit_enter jit_entry(const struct jit *j)
{
	return (jit_enter)(void *)j->code;
}

bool jit_room(const struct jit *j)
{
	return j->used + JIT_BLOCK_MAX <= JIT_SIZE;
}

/* host registers: rdi holds the cpu, rsi the icount limit, r9-r11 are
 * scratch (addresses, TLB lookups); the guest registers a run uses get
 * these, caller-saved ones first */
enum { H_RAX, H_RCX, H_RDX, H_RBX, H_RSP, H_RBP, H_RSI, H_RDI, H_R8, H_R9, H_R10, H_R11,
       H_R12, H_R13, H_R14, H_R15 };
static const uint8_t pool[] = { H_RAX, H_RCX, H_RDX, H_R8, H_RBX, H_RBP, H_R12, H_R13, H_R14, H_R15 };
#define POOL_SIZE (int)sizeof(pool)

/* what an instruction does with the arithmetic flags */
enum { FL_NONE, FL_READ, FL_FULL, FL_RW };
/* how it is re-encoded */
enum { K_NOP, K_MODRM, K_OPREG, K_PLAIN, K_LEA, K_JCC, K_JMP, K_PUSH, K_POP, K_CALL, K_RET, K_MULDIV, K_MOVSD, K_JMPI,
       K_CALLI };
/* what it does with its memory operand */
enum { M_NONE, M_R, M_W, M_RW };

struct form {
	uint8_t kind, op, digit, fl;
	uint8_t mem, size; /* memory access and its size in bytes */
	bool map1;
	bool byte;     /* byte operands: without REX, 4..7 mean AH..BH */
	bool reg_full; /* movzx, movsx: ModRM.reg is not a byte operand */
	bool lockable; /* a lock prefix makes it atomic (else #UD) */
	/* AH..BH: bit 0 ModRM.reg, bit 1 ModRM.rm (reg and rm then name
	 * the guest register 0..3 they are the second byte of) */
	uint8_t hi;
	int8_t reg;    /* guest register in ModRM.reg; -1: the digit */
	int8_t rm;     /* guest register in ModRM.rm or the opcode's low bits */
	int8_t base, index; /* of the memory operand; push/pop: RSP in base */
	int8_t cnt;    /* RCX for a shift count in CL, else -1 */
	int8_t ax, dx; /* mul, div: RAX and RDX, else -1 */
	int8_t xmm;    /* movsd: the XMM register */
};

/* flags of the ALU operation add/or/adc/sbb/and/sub/xor/cmp */
static uint8_t alu_fl(int sub)
{
	return sub == 2 || sub == 3 ? FL_RW : FL_FULL;
}

/* the r/m operand: a register, or memory accessed as mem, size bytes */
static void rm_operand(const struct insn *in, struct form *f, uint8_t mem, int size)
{
	if (in->is_mem) {
		f->mem = mem;
		f->size = (uint8_t)size;
	} else {
		f->rm = in->rm;
	}
}

static bool form_map1(const struct insn *in, struct form *f)
{
	uint8_t op = in->op;
	int size = in->opsize;
	f->map1 = true;
	if (op == 0x0D || (op >= 0x18 && op <= 0x1F)) {
		f->kind = K_NOP;
		return true;
	}
	if (op >= 0x80 && op <= 0x8F) {
		f->kind = K_JCC;
		f->fl = FL_READ;
		return true;
	}
	if (op >= 0xC8 && op <= 0xCF) { /* bswap */
		f->kind = K_OPREG;
		f->rm = (op & 7) | (in->rex & 1 ? 8 : 0);
		return size != 2;
	}
	if ((op == 0x10 || op == 0x11) && in->rep == 0xF2) {
		/* movsd xmm, m64 and m64, xmm: data moved between memory and
		 * c->fx as integers, so the host's MXCSR and vector registers
		 * stay out of it */
		f->kind = K_MOVSD;
		f->xmm = (int8_t)in->reg;
		rm_operand(in, f, op == 0x10 ? M_R : M_W, 8);
		return in->is_mem && !in->opsize_prefix;
	}
	f->reg = in->reg;
	switch (op) {
	case 0x40 ... 0x4F: /* cmovcc */
		rm_operand(in, f, M_R, size);
		f->fl = FL_READ;
		return true;
	case 0x90 ... 0x9F: /* setcc */
		f->reg = -1;
		rm_operand(in, f, M_W, 1);
		f->byte = true;
		f->fl = FL_READ;
		return true;
	case 0xA3: case 0xAB: case 0xB3: case 0xBB: /* bt* r/m, r: memory may be far off */
		rm_operand(in, f, M_NONE, size);
		f->fl = FL_RW;
		return !in->is_mem;
	case 0xA4: case 0xAC: /* shld, shrd imm */
	case 0xA5: case 0xAD: /* and cl */
		rm_operand(in, f, M_RW, size);
		if (op & 1)
			f->cnt = R_RCX;
		f->fl = FL_RW;
		return true;
	case 0xAF: case 0xBC: case 0xBD: /* imul, bsf, bsr */
		rm_operand(in, f, M_R, size);
		f->fl = FL_RW;
		return true;
	case 0xBA:
		f->reg = -1;
		f->digit = in->reg & 7;
		rm_operand(in, f, f->digit == 4 ? M_R : M_RW, size);
		f->lockable = f->digit != 4;
		f->fl = FL_RW;
		return f->digit >= 4;
	case 0xB6: case 0xBE: /* movzx, movsx */
		rm_operand(in, f, M_R, 1);
		f->byte = true;
		f->reg_full = true;
		return true;
	case 0xB7: case 0xBF:
		rm_operand(in, f, M_R, 2);
		return true;
	case 0xC0: case 0xC1: /* xadd */
		f->byte = op == 0xC0;
		rm_operand(in, f, M_RW, f->byte ? 1 : size);
		f->lockable = true;
		f->fl = FL_FULL;
		return true;
	}
	return false;
}

static bool form_map0(const struct insn *in, struct form *f)
{
	uint8_t op = in->op;
	int size = in->opsize;
	if (op == 0x90 && !(in->rex & 1)) {
		f->kind = K_NOP;
		return true;
	}
	if (op < 0x40 && (op & 7) < 4) {
		int sub = op >> 3;
		f->reg = in->reg;
		f->byte = !(op & 1);
		if (op & 2)
			rm_operand(in, f, M_R, f->byte ? 1 : size);
		else
			rm_operand(in, f, sub == 7 ? M_R : M_RW, f->byte ? 1 : size);
		f->lockable = !(op & 2) && sub != 7;
		f->fl = alu_fl(sub);
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
	case 0x50 ... 0x5F:
		f->kind = op < 0x58 ? K_PUSH : K_POP;
		f->rm = (op & 7) | (in->rex & 1 ? 8 : 0);
		f->base = R_RSP;
		f->mem = op < 0x58 ? M_W : M_R;
		f->size = 8;
		return !in->opsize_prefix;
	case 0x70 ... 0x7F:
		f->kind = K_JCC;
		f->fl = FL_READ;
		return true;
	case 0xE9: case 0xEB:
		f->kind = K_JMP;
		return true;
	case 0xE8: case 0xC3: /* near call and ret: the return address on the stack */
		f->kind = op == 0xE8 ? K_CALL : K_RET;
		f->base = R_RSP;
		f->mem = op == 0xE8 ? M_W : M_R;
		f->size = 8;
		return !in->opsize_prefix;
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
		f->kind = K_LEA;
		f->reg = in->reg;
		return in->is_mem && size != 2;
	}
	f->reg = in->reg;
	f->byte = !(op & 1);
	int bsize = f->byte ? 1 : size;
	switch (op) {
	case 0x63:
		rm_operand(in, f, M_R, 4);
		f->byte = false;
		return size == 8;
	case 0x69: case 0x6B:
		rm_operand(in, f, M_R, size);
		f->byte = false;
		f->fl = FL_RW;
		return true;
	case 0x84: case 0x85:
		rm_operand(in, f, M_R, bsize);
		f->fl = FL_FULL;
		return true;
	case 0x86: case 0x87: /* xchg: atomic with memory, as on the host */
		rm_operand(in, f, M_RW, bsize);
		f->lockable = true;
		return true;
	case 0x88: case 0x89:
		rm_operand(in, f, M_W, bsize);
		return true;
	case 0x8A: case 0x8B:
		rm_operand(in, f, M_R, bsize);
		return true;
	}
	f->reg = -1;
	f->digit = in->reg & 7;
	switch (op) {
	case 0x80: case 0x81: case 0x83:
		f->byte = op == 0x80;
		rm_operand(in, f, f->digit == 7 ? M_R : M_RW, f->byte ? 1 : size);
		f->lockable = f->digit != 7;
		f->fl = alu_fl(f->digit);
		return true;
	case 0xC0: case 0xC1: case 0xD0: case 0xD1: case 0xD2: case 0xD3:
		f->byte = !(op & 1);
		rm_operand(in, f, M_RW, f->byte ? 1 : size);
		/* a count of 0 leaves the flags as they were */
		f->fl = FL_RW;
		if (op >= 0xD2)
			f->cnt = R_RCX;
		return true;
	case 0xC6: case 0xC7:
		rm_operand(in, f, M_W, bsize);
		return f->digit == 0;
	case 0xF6: case 0xF7:
		if (f->digit == 0) {
			rm_operand(in, f, M_R, bsize);
			f->fl = FL_FULL;
			return true;
		}
		if (f->digit >= 4) {
			/* mul, imul, div, idiv on EDX:EAX or RDX:RAX; the
			 * flags the SDM leaves undefined are the host's from
			 * the guest's (imul r, r/m's likewise; exec.c keeps
			 * them, as the hosts the difftest ran on do) */
			f->kind = K_MULDIV;
			f->ax = R_RAX;
			f->dx = R_RDX;
			rm_operand(in, f, M_R, size);
			f->fl = FL_RW;
			return op == 0xF7 && size >= 4;
		}
		rm_operand(in, f, M_RW, bsize);
		f->lockable = true;
		f->fl = f->digit == 3 ? FL_FULL : FL_NONE;
		return f->digit == 2 || f->digit == 3;
	case 0xFE: case 0xFF:
		rm_operand(in, f, M_RW, bsize);
		f->lockable = true;
		f->fl = FL_RW;
		return f->digit <= 1;
	}
	return false;
}

/* the guest registers in (of form f) may write: an exit stores only
 * those (more is harmless, fewer a bug) */
static uint16_t form_writes(const struct insn *in, const struct form *f)
{
	uint16_t w = 0;
	if (f->kind == K_MULDIV)
		return 1u << R_RAX | 1u << R_RDX;
	if (f->kind == K_PUSH || f->kind == K_POP || f->kind == K_CALL || f->kind == K_RET || f->kind == K_CALLI)
		w |= 1u << R_RSP;
	if (f->kind != K_MODRM && f->kind != K_OPREG && f->kind != K_LEA && f->kind != K_POP)
		return w;
	bool wreg = true, wrm = true;
	uint8_t op = in->op;
	if (in->map == 0 && op < 0x40) {
		int sub = op >> 3;
		wreg = (op & 7) < 4 && (op & 2) && sub != 7;
		wrm = !((op & 7) < 4 && (op & 2)) && sub != 7;
	} else if (in->map == 0) {
		switch (op) {
		case 0x84: case 0x85: case 0xA8: case 0xA9:
			wreg = wrm = false;
			break;
		case 0x88: case 0x89:
			wreg = false;
			break;
		case 0x63: case 0x69: case 0x6B: case 0x8A: case 0x8B: case 0x8D:
			wrm = false;
			break;
		case 0x80: case 0x81: case 0x83:
			wrm = f->digit != 7;
			break;
		case 0xF6: case 0xF7:
			wrm = f->digit != 0;
			break;
		}
	} else {
		switch (op) {
		case 0xA3:
			wreg = wrm = false;
			break;
		case 0xA4: case 0xA5: case 0xAB: case 0xAC: case 0xAD: case 0xB3: case 0xBB:
			wreg = false;
			break;
		case 0xBA:
			wrm = f->digit != 4;
			break;
		case 0x40 ... 0x4F: case 0xAF: case 0xB6: case 0xB7: case 0xBC: case 0xBD: case 0xBE: case 0xBF:
			wrm = false;
			break;
		}
	}
	if (wreg && f->reg >= 0)
		w |= 1u << f->reg;
	if (wrm && f->rm >= 0)
		w |= 1u << f->rm;
	return w;
}

/* Is in an instruction this file translates, and how? */
static bool classify(const struct insn *in, struct form *f)
{
	memset(f, 0, sizeof(*f));
	f->kind = K_MODRM;
	f->op = in->op;
	f->reg = -1;
	f->rm = -1;
	f->base = -1;
	f->index = -1;
	f->cnt = -1;
	f->ax = -1;
	f->dx = -1;
	bool ok = in->map == 1 ? form_map1(in, f) : in->map == 0 && form_map0(in, f);
	if (!ok)
		return false;
	if (f->byte && !in->rex) {
		if (f->reg >= 4 && !f->reg_full) {
			f->reg -= 4;
			f->hi |= 1;
		}
		if (f->rm >= 4) {
			f->rm -= 4;
			f->hi |= 2;
		}
		/* encoded without REX: no [r11], no r9 for CL */
		if (f->hi && (in->is_mem || f->cnt >= 0))
			return false;
	}
	if (f->kind == K_NOP) {
		f->reg = f->rm = -1;
		return !in->lock;
	}
	if ((in->rep && f->kind != K_MOVSD) || (in->lock && !(f->lockable && in->is_mem)))
		return false;
	if (in->is_mem && !in->riprel) {
		f->base = in->base;
		f->index = in->index;
	}
	return !in->is_mem || f->mem != M_NONE || f->kind == K_LEA;
}

/* ---- emitting ---- */

struct emit {
	uint8_t *p;
	int8_t host[16]; /* guest register -> host register now, -1 */
	int nhost;       /* pool registers in use */
	/* a register was evicted: the mapping is no longer the one the
	 * code starts with */
	bool moved;
	uint16_t dirty; /* guest registers written since loaded */
	int cpl3;        /* the TLB set the block runs with */
	void *owner;     /* the block, for c->jit_block */
	struct jit *j;
	/* the guest's arithmetic flags are in the host's RFLAGS (else in
	 * c->rflags) */
	bool hostfl;
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

static void bytes(struct emit *e, const uint8_t *b, size_t n)
{
	memcpy(e->p, b, n);
	e->p += n;
}
#define BYTES(e, ...)                                                                              \
	do {                                                                                       \
		static const uint8_t b_[] = { __VA_ARGS__ };                                     \
		bytes(e, b_, sizeof(b_));                                                          \
	} while (0)

/* a rel32 to patch once its target is laid out */
static uint8_t *rel32(struct emit *e)
{
	uint8_t *p = e->p;
	b4(e, 0);
	return p;
}

static void patch(uint8_t *at, const uint8_t *target)
{
	int32_t rel = (int32_t)(target - (at + 4));
	memcpy(at, &rel, 4);
}

#define OFF(field) ((uint32_t)offsetof(struct cpu, field))

/* op host, [rdi + off] (64-bit): 8B load, 89 store */
static void emit_cpu(struct emit *e, uint8_t op, int h, uint32_t off)
{
	b1(e, 0x48 | (h >> 3) << 2);
	b1(e, op);
	b1(e, 0x80 | (h & 7) << 3 | H_RDI);
	b4(e, off);
}

/* lea dst, [src + disp] (64-bit) */
static void emit_lea_disp(struct emit *e, int dst, int src, int32_t disp)
{
	b1(e, 0x48 | (dst >> 3) << 2 | (src >> 3));
	b1(e, 0x8D);
	b1(e, 0x80 | (dst & 7) << 3 | (src & 7));
	if ((src & 7) == 4)
		b1(e, 0x24);
	b4(e, (uint32_t)disp);
}

/* The host's flags into c->rflags: state "in memory". pushf and popf are
 * microcoded and the slowest part of a block's exit; lahf, sahf and seto
 * are single operations (guest RAX kept in r9 around them; r9-r11
 * scratch). */
static void emit_spill(struct emit *e)
{
	BYTES(e, 0x41, 0x0F, 0x90, 0xC3,            /* seto r11b */
	      0x49, 0x89, 0xC1,                     /* mov r9, rax */
	      0x9F,                                 /* lahf: SF ZF AF PF CF */
	      0x41, 0x89, 0xC2,                     /* mov r10d, eax */
	      0x4C, 0x89, 0xC8,                     /* mov rax, r9 */
	      0x41, 0xC1, 0xEA, 0x08,               /* shr r10d, 8 */
	      0x41, 0x81, 0xE2, 0xD5, 0, 0, 0,      /* and r10d, SF ZF AF PF CF */
	      0x45, 0x0F, 0xB6, 0xDB,               /* movzx r11d, r11b */
	      0x41, 0xC1, 0xE3, 0x0B,               /* shl r11d, 11: OF */
	      0x45, 0x09, 0xDA);                    /* or r10d, r11d */
	_Static_assert(F_ARITH == 0x8D5, "the arithmetic flags are OF and the low byte's 0xD5");
	emit_cpu(e, 0x8B, H_R11, OFF(rflags));
	BYTES(e, 0x49, 0x81, 0xE3);                 /* and r11, ~F_ARITH */
	b4(e, (uint32_t)~F_ARITH);
	BYTES(e, 0x4D, 0x09, 0xD3);                 /* or r11, r10 */
	emit_cpu(e, 0x89, H_R11, OFF(rflags));
	e->hostfl = false;
}

/* c->rflags' arithmetic flags into the host's (only those); r9 and r10
 * scratch, r11 (an operand's address) kept */
static void emit_fill(struct emit *e)
{
	BYTES(e, 0x49, 0x89, 0xC1);                 /* mov r9, rax */
	emit_cpu(e, 0x8B, H_RAX, OFF(rflags));
	BYTES(e, 0x41, 0x89, 0xC2,                  /* mov r10d, eax */
	      0x41, 0xC1, 0xEA, 0x0B,               /* shr r10d, 11 */
	      0x41, 0x83, 0xE2, 0x01,               /* and r10d, 1 */
	      0xC1, 0xE0, 0x08,                     /* shl eax, 8 */
	      0x41, 0x80, 0xC2, 0x7F,               /* add r10b, 0x7f: OF = the guest's */
	      0x9E,                                 /* sahf: SF ZF AF PF CF */
	      0x4C, 0x89, 0xC8);                    /* mov rax, r9 */
	e->hostfl = true;
}

/* the guest registers written in host registers back into the cpu */
static void emit_store_all(struct emit *e)
{
	for (int g = 0; g < 16; g++)
		if (e->host[g] >= 0 && (e->dirty >> g & 1))
			emit_cpu(e, 0x89, e->host[g], OFF(r[g]));
}

/* how an exit may go on into the next block's code: CH_RET through the
 * jump cache */
enum { CH_NONE, CH_PAGE, CH_FAR, CH_RET };

static void emit_tlb_entry(struct emit *e, uint32_t tlb);

/* A ret's or an indirect jmp's target (RIP in r10, stored) through the jump cache: on into
 * the code remembered for the host address the TLB maps it to, with the
 * checks of a link (that code's epoch, the budget, nothing pending);
 * else c->jit_exit = JIT_EXIT_RET and the code returns. */
static void emit_ret_lookup(struct emit *e)
{
	uint8_t *miss[5];
	int n = 0;
	uint32_t tlb = OFF(tlb) + (uint32_t)(e->cpl3 * sizeof(((struct cpu *)0)->tlb[0]));
	_Static_assert(sizeof(struct ret_target) == 32, "the slot scales by 32");
	BYTES(e, 0x4D, 0x89, 0xD3);                /* mov r11, r10 */
	emit_tlb_entry(e, tlb);
	BYTES(e, 0x4D, 0x89, 0xD9,                 /* mov r9, r11 */
	      0x49, 0x81, 0xE1, 0x00, 0xF0, 0xFF, 0xFF, /* and r9, ~0xfff */
	      0x49, 0x83, 0xC9, 0x01,              /* or r9, 1 */
	      0x4D, 0x3B, 0x4A);                   /* cmp r9, [r10 + tag_x] */
	b1(e, offsetof(struct tlb_entry, tag_x));
	BYTES(e, 0x0F, 0x85);                      /* jne miss */
	miss[n++] = rel32(e);
	BYTES(e, 0x4D, 0x03, 0x5A, 24,             /* add r11, [r10 + addend] */
	      0x49, 0xC1, 0xE3, 0x04,              /* shl r11, 4 */
	      0x49, 0x83, 0xCB);                   /* or r11, TLB set and mode */
	b1(e, (uint8_t)(e->cpl3 << 3 | 64 >> 4));
	/* ret_slot(r11) * 32 + the cache */
	BYTES(e, 0x4D, 0x89, 0xD9,                 /* mov r9, r11 */
	      0x49, 0xC1, 0xE9, 0x04,              /* shr r9, 4 */
	      0x4D, 0x89, 0xDA,                    /* mov r10, r11 */
	      0x49, 0xC1, 0xEA, 0x10,              /* shr r10, 16 */
	      0x4D, 0x31, 0xD1,                    /* xor r9, r10 */
	      0x41, 0x81, 0xE1);                   /* and r9d, RET_CACHE - 1 */
	b4(e, RET_CACHE - 1);
	BYTES(e, 0x49, 0xC1, 0xE1, 0x05,           /* shl r9, 5 */
	      0x49, 0xBA);                         /* mov r10, cache */
	bn(e, (uintptr_t)e->j->ret, 8);
	BYTES(e, 0x4D, 0x01, 0xCA,                 /* add r10, r9 */
	      0x4D, 0x3B, 0x1A,                    /* cmp r11, [r10] */
	      0x0F, 0x85);                         /* jne miss */
	miss[n++] = rel32(e);
	BYTES(e, 0x4D, 0x8B, 0x4A, 0x10,           /* mov r9, [r10 + epoch] */
	      0x4D, 0x8B, 0x09,                    /* mov r9, [r9] */
	      0x4C, 0x3B, 0x8F);                   /* cmp r9, [rdi + code_epoch] */
	b4(e, OFF(code_epoch));
	BYTES(e, 0x0F, 0x85);                      /* jne miss */
	miss[n++] = rel32(e);
	BYTES(e, 0x4C, 0x8B, 0x8F);                /* mov r9, [rdi + icount] */
	b4(e, OFF(icount));
	BYTES(e, 0x49, 0x39, 0xF1,                 /* cmp r9, rsi */
	      0x0F, 0x83);                         /* jae miss */
	miss[n++] = rel32(e);
	BYTES(e, 0x44, 0x8B, 0x8F);                /* mov r9d, [rdi + intr_poke] */
	b4(e, OFF(intr_poke));
	BYTES(e, 0x44, 0x0B, 0x8F);                /* or r9d, [rdi + stop_request] */
	b4(e, OFF(stop_request));
	BYTES(e, 0x0F, 0x85);                      /* jnz miss */
	miss[n++] = rel32(e);
	BYTES(e, 0x41, 0xFF, 0x62, 0x08);          /* jmp [r10 + fn] */
	for (int i = 0; i < n; i++)
		patch(miss[i], e->p);
	BYTES(e, 0x48, 0xC7, 0x87);                /* mov qword [rdi + jit_exit], JIT_EXIT_RET */
	b4(e, OFF(jit_exit));
	b4(e, JIT_EXIT_RET);
}

/* Leave the code with RIP moved on by delta from the block's start (code
 * may run at several linear addresses: shared libraries, the vDSO), or set
 * to r10 (RIP_R10), count instructions added to icount, returning ret. A
 * chainable exit ends in a jmp that jit_link may point at the next block's
 * code: CH_PAGE to a fixed place in the block's page, CH_FAR elsewhere
 * (the link then checks the TLB too). */
#define RIP_R10 INT32_MIN
static void emit_exit(struct emit *e, int32_t delta, uint32_t count, uint32_t ret, int chain)
{
	/* (a transfer to r10 spilled the flags before it) */
	if (e->hostfl)
		emit_spill(e);
	emit_store_all(e);
	/* the guest's flags are stored: the adds may clobber the host's */
	if (delta == RIP_R10) {
		emit_cpu(e, 0x89, H_R10, OFF(rip));
	} else if (delta) {
		BYTES(e, 0x48, 0x81, 0x87); /* add qword [rdi + rip], delta */
		b4(e, OFF(rip));
		b4(e, (uint32_t)delta);
	}
	if (count) {
		BYTES(e, 0x48, 0x81, 0x87); /* add qword [rdi + icount], count */
		b4(e, OFF(icount));
		b4(e, count);
	}
	BYTES(e, 0x49, 0xBB); /* mov r11, owner */
	bn(e, (uintptr_t)e->owner, 8);
	BYTES(e, 0x4C, 0x89, 0x9F); /* mov [rdi + jit_block], r11 */
	b4(e, OFF(jit_block));
	if (chain == CH_RET) {
		emit_ret_lookup(e);
	} else if (chain == CH_NONE) {
		BYTES(e, 0x48, 0xC7, 0x87); /* mov qword [rdi + jit_exit], 0 */
		b4(e, OFF(jit_exit));
		b4(e, 0);
	} else {
		BYTES(e, 0x49, 0xBB); /* mov r11, slot */
		uint8_t *slot_imm = e->p;
		bn(e, 0, 8);
		BYTES(e, 0x4C, 0x89, 0x9F); /* mov [rdi + jit_exit], r11 */
		b4(e, OFF(jit_exit));
		/* the jmp at an even address: bit 0 of jit_exit says CH_FAR */
		if ((uintptr_t)e->p & 1)
			b1(e, 0x90);
		uintptr_t slot = (uintptr_t)e->p | (chain == CH_FAR);
		memcpy(slot_imm, &slot, 8);
		b1(e, 0xE9); /* jmp: on to the next instruction until linked */
		b4(e, 0);
	}
	b1(e, 0xB8); /* mov eax, ret */
	b4(e, ret);
	b1(e, 0xC3);
}

/* the guest registers an instruction names */
#define FORM_REGS 7
static void form_regs(const struct form *f, int8_t regs[FORM_REGS])
{
	regs[0] = f->reg;
	regs[1] = f->rm;
	regs[2] = f->base;
	regs[3] = f->index;
	regs[4] = f->cnt;
	regs[5] = f->ax;
	regs[6] = f->dx;
}

static bool names(const struct form *f, int g)
{
	return f->reg == g || f->rm == g || f->base == g || f->index == g || f->cnt == g ||
	       f->ax == g || f->dx == g;
}

/* Give the registers of instruction i of the run host registers. The
 * first POOL_SIZE distinct ones got theirs at entry; a later one takes
 * the host register of the guest register used again last (or never),
 * stored back first. Moves only: the flags stay as they are. */
static void emit_regs(struct emit *e, const struct form *forms, int k, int i)
{
	int8_t regs[FORM_REGS];
	form_regs(&forms[i], regs);
	for (int r = 0; r < FORM_REGS; r++) {
		int g = regs[r];
		if (g < 0 || e->host[g] >= 0)
			continue;
		int victim = -1, far = -1;
		for (int v = 0; v < 16; v++) {
			if (e->host[v] < 0 || names(&forms[i], v))
				continue;
			int next = i + 1;
			while (next < k && !names(&forms[next], v))
				next++;
			if (next > far) {
				far = next;
				victim = v;
			}
		}
		int h = e->host[victim];
		if (e->dirty >> victim & 1)
			emit_cpu(e, 0x89, h, OFF(r[victim]));
		e->dirty &= (uint16_t)~(1u << victim);
		e->host[victim] = -1;
		e->host[g] = (int8_t)h;
		emit_cpu(e, 0x8B, h, OFF(r[g]));
		e->moved = true;
	}
}

/* lea into host register hr of in's memory operand (rip: in's address,
 * rip0 the block's); w: REX.W */
static void emit_ea(struct emit *e, const struct insn *in, const struct form *f, int hr, uint8_t w,
		    uint64_t rip, uint64_t rip0)
{
	if (in->riprel) {
		/* RIP + offset within the block + length + disp; a 32-bit
		 * lea truncates and zero-extends as a 32-bit address does */
		int64_t d = (int64_t)(rip - rip0) + in->len + in->disp;
		emit_cpu(e, 0x8B, hr, OFF(rip));
		b1(e, 0x40 | (in->addrsize == 8 ? w : 0) | (hr >> 3) << 2 | (hr >> 3));
		b1(e, 0x8D);
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
}

/* the side exits of a memory access: to patch with the exit before it */
struct side {
	uint8_t *at[8];
	int n;
	int8_t host[16]; /* the register mapping there */
	uint16_t dirty;
};

/* r10 = the TLB entry of the linear address in r11 (cpu.h's tlb_index,
 * r9 clobbered), tlb the offset of the privilege class's array */
static void emit_tlb_entry(struct emit *e, uint32_t tlb)
{
	_Static_assert(TLB_BITS == 12, "tlb_index folds 12 bits");
	BYTES(e, 0x4D, 0x89, 0xDA,             /* mov r10, r11 */
	      0x49, 0xC1, 0xEA, 12,            /* shr r10, 12 */
	      0x4D, 0x89, 0xD1,                /* mov r9, r10 */
	      0x49, 0xC1, 0xE9, 12,            /* shr r9, 12 */
	      0x4D, 0x31, 0xCA,                /* xor r10, r9 */
	      0x41, 0x81, 0xE2);               /* and r10d, TLB_SIZE - 1 */
	b4(e, TLB_SIZE - 1);
	BYTES(e, 0x4F, 0x8D, 0x14, 0x92,       /* lea r10, [r10 + r10 * 4] */
	      0x4E, 0x8D, 0x94, 0xD7);         /* lea r10, [rdi + r10 * 8 + tlb] */
	b4(e, tlb);
}

/* r11 = the host address of the size bytes at linear r11 for a read or a
 * write, or a side exit when the TLB has no entry for it, the access
 * crosses a page or (a write) the page holds decoded code */
static void emit_lookup(struct emit *e, bool write, int size, struct side *s)
{
	uint32_t tlb = OFF(tlb) + (uint32_t)(e->cpl3 * sizeof(((struct cpu *)0)->tlb[0]));
	uint8_t tag = write ? offsetof(struct tlb_entry, tag_w) : offsetof(struct tlb_entry, tag_r);
	_Static_assert(sizeof(struct tlb_entry) == 40, "the index scales by 5 * 8");
	_Static_assert(offsetof(struct tlb_entry, addend) == 24, "addend at 24");
	emit_tlb_entry(e, tlb);
	BYTES(e, 0x4D, 0x89, 0xD9,             /* mov r9, r11 */
	      0x49, 0x81, 0xE1, 0x00, 0xF0, 0xFF, 0xFF, /* and r9, ~0xfff */
	      0x49, 0x83, 0xC9, 0x01,          /* or r9, 1 */
	      0x4D, 0x3B, 0x4A);               /* cmp r9, [r10 + tag] */
	b1(e, tag);
	BYTES(e, 0x0F, 0x85);                  /* jne side */
	s->at[s->n++] = rel32(e);
	if (size > 1) {
		BYTES(e, 0x45, 0x89, 0xD9,                         /* mov r9d, r11d */
		      0x41, 0x81, 0xE1, 0xFF, 0x0F, 0x00, 0x00,    /* and r9d, 0xfff */
		      0x41, 0x81, 0xF9);                           /* cmp r9d, 0x1000 - size */
		b4(e, 0x1000u - (uint32_t)size);
		BYTES(e, 0x0F, 0x87);                              /* ja side */
		s->at[s->n++] = rel32(e);
	}
	BYTES(e, 0x4D, 0x03, 0x5A, 24);        /* add r11, [r10 + addend] */
	if (write) {
		BYTES(e, 0x4D, 0x89, 0xDA,                         /* mov r10, r11 */
		      0x49, 0xC1, 0xEA, 12,                        /* shr r10, 12 */
		      0x41, 0x81, 0xE2);                           /* and r10d, CODE_MAP_SIZE - 1 */
		b4(e, CODE_MAP_SIZE - 1);
		BYTES(e, 0x4C, 0x03, 0x97);                        /* add r10, [rdi + code_map] */
		b4(e, OFF(code_map));
		BYTES(e, 0x41, 0x80, 0x3A, 0x00,                   /* cmp byte [r10], 0 */
		      0x0F, 0x85);                                 /* jne side */
		s->at[s->n++] = rel32(e);
	}
}

/* A shift by CL needs the count in the host's CL: when guest RCX lives
 * elsewhere, host RCX waits in r9 meanwhile (an operand living in host
 * RCX is named as r9 then). Moves leave the flags alone. */
static bool emit_cl_in(struct emit *e, const struct form *f)
{
	if (f->cnt < 0 || e->host[f->cnt] == H_RCX)
		return false;
	int hc = e->host[f->cnt];
	BYTES(e, 0x49, 0x89, 0xC9); /* mov r9, rcx */
	b1(e, 0x48 | hc >> 3);      /* mov rcx, hc */
	b1(e, 0x8B);
	b1(e, 0xC8 | (hc & 7));
	return true;
}

static int cl_host(bool moved, int h)
{
	return moved && h == H_RCX ? H_R9 : h;
}

static void emit_cl_out(struct emit *e, bool moved)
{
	if (moved)
		BYTES(e, 0x4C, 0x89, 0xC9); /* mov rcx, r9 */
}

/* An instruction naming AH..BH is encoded without REX, so its registers
 * must live in host RAX..RBX: xchg (which leaves the flags alone) brings
 * them there, and the guest registers that lived there to theirs. */
static void emit_low(struct emit *e, const struct form *f)
{
	int8_t g[2] = { f->reg, f->rm };
	for (int i = 0; i < 2; i++) {
		int h = g[i] >= 0 ? e->host[g[i]] : 0;
		if (h < 4)
			continue;
		int other = g[i ^ 1] >= 0 && g[i ^ 1] != g[i] ? e->host[g[i ^ 1]] : -1;
		int t = other == 0 ? 1 : 0;
		int o = 0;
		while (o < 16 && e->host[o] != t)
			o++;
		b1(e, 0x48 | (h >> 3) << 2); /* xchg h, t */
		b1(e, 0x87);
		b1(e, 0xC0 | (h & 7) << 3 | t);
		if (o < 16)
			e->host[o] = (int8_t)h;
		e->host[g[i]] = (int8_t)t;
		e->moved = true;
	}
}

/* an instruction with its memory operand at [r11] */
static void emit_mem_insn(struct emit *e, const struct insn *in, const struct form *f)
{
	bool cl = emit_cl_in(e, f);
	int hr = f->reg >= 0 ? cl_host(cl, e->host[f->reg]) : f->digit;
	if (in->lock)
		b1(e, 0xF0);
	if (in->opsize_prefix)
		b1(e, 0x66);
	b1(e, 0x41 | (in->rex & 8) | (f->reg >= 0 ? (hr >> 3) << 2 : 0));
	if (f->map1)
		b1(e, 0x0F);
	b1(e, f->op);
	b1(e, (hr & 7) << 3 | 3);
	bn(e, in->imm, in->imm_size);
	emit_cl_out(e, cl);
}

/* an instruction on registers only */
static void emit_insn(struct emit *e, const struct insn *in, const struct form *f, uint64_t rip, uint64_t rip0)
{
	if (f->hi) {
		emit_low(e, f);
		int hr = f->reg >= 0 ? e->host[f->reg] + (f->hi & 1 ? 4 : 0) : f->digit;
		int hm = e->host[f->rm] + (f->hi & 2 ? 4 : 0);
		if (in->opsize_prefix)
			b1(e, 0x66);
		if (f->kind == K_OPREG) {
			b1(e, (f->op & ~7) | hm);
		} else {
			if (f->map1)
				b1(e, 0x0F);
			b1(e, f->op);
			b1(e, 0xC0 | hr << 3 | hm);
		}
		bn(e, in->imm, in->imm_size);
		return;
	}
	bool cl = emit_cl_in(e, f);
	int hr = f->reg >= 0 ? cl_host(cl, e->host[f->reg]) : f->digit;
	int hm = f->rm >= 0 ? cl_host(cl, e->host[f->rm]) : 0;
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
	case K_LEA:
		emit_ea(e, in, f, hr, w, rip, rip0);
		return;
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
	emit_cl_out(e, cl);
}

/* a side exit unless r10 holds a canonical address (r9 scratch) */
static void emit_canonical(struct emit *e, struct side *s)
{
	BYTES(e, 0x4D, 0x89, 0xD1,       /* mov r9, r10 */
	      0x49, 0xC1, 0xE1, 16,      /* shl r9, 16 */
	      0x49, 0xC1, 0xF9, 16,      /* sar r9, 16 */
	      0x4D, 0x39, 0xD1,          /* cmp r9, r10 */
	      0x0F, 0x85);               /* jne side */
	s->at[s->n++] = rel32(e);
}

/* A call, a ret, an indirect jmp or call, or a jmp out of the page, the
 * run's last instruction: the target's RIP into r10 (a direct jmp's and
 * call's as a delta from the block's start), a side exit before it when
 * that is not canonical or the target's read or the stack access cannot
 * be made here. The flags are in c->rflags
 * after it. */
static void emit_transfer(struct emit *e, const struct insn *in, const struct form *f, uint64_t rip,
			  uint64_t rip0, struct side *s)
{
	if (e->hostfl)
		emit_spill(e);
	int hs = e->host[R_RSP];
	if (f->kind == K_RET) {
		emit_lea_disp(e, H_R11, hs, 0);
		emit_lookup(e, false, 8, s);
		BYTES(e, 0x4D, 0x8B, 0x13); /* mov r10, [r11] */
		emit_canonical(e, s);
		emit_lea_disp(e, hs, hs, 8);
		return;
	}
	uint64_t next = rip + in->len;
	if (f->kind == K_JMPI || f->kind == K_CALLI) {
		if (in->is_mem) {
			emit_ea(e, in, f, H_R11, 8, rip, rip0);
			if (in->seg == S_FS || in->seg == S_GS) {
				BYTES(e, 0x4C, 0x03, 0x9F); /* add r11, [rdi + base] */
				b4(e, OFF(seg[in->seg].base));
			}
			emit_lookup(e, false, 8, s);
			BYTES(e, 0x4D, 0x8B, 0x13); /* mov r10, [r11] */
		} else {
			int hm = e->host[f->rm];
			b1(e, 0x4C | (hm >> 3)); /* mov r10, hm */
			b1(e, 0x8B);
			b1(e, 0xD0 | (hm & 7));
		}
		emit_canonical(e, s);
		if (f->kind == K_JMPI)
			return;
		/* the push's lookup clobbers r10: the target waits in the cpu */
		emit_cpu(e, 0x89, H_R10, OFF(jit_target));
		emit_lea_disp(e, H_R11, hs, -8);
		emit_lookup(e, true, 8, s);
		emit_cpu(e, 0x8B, H_R10, OFF(rip));
		BYTES(e, 0x4D, 0x8D, 0x92); /* lea r10, [r10 + next - rip0] */
		b4(e, (uint32_t)(int32_t)(next - rip0));
		BYTES(e, 0x4D, 0x89, 0x13); /* mov [r11], r10 */
		emit_lea_disp(e, hs, hs, -8);
		emit_cpu(e, 0x8B, H_R10, OFF(jit_target));
		return;
	}
	emit_cpu(e, 0x8B, H_R10, OFF(rip));
	BYTES(e, 0x4D, 0x8D, 0x92); /* lea r10, [r10 + target - rip0] */
	b4(e, (uint32_t)(int32_t)(next + in->imm - rip0));
	emit_canonical(e, s);
	if (f->kind == K_CALL) {
		emit_lea_disp(e, H_R11, hs, -8);
		emit_lookup(e, true, 8, s);
		emit_cpu(e, 0x8B, H_R10, OFF(rip));
		BYTES(e, 0x4D, 0x8D, 0x92); /* lea r10, [r10 + next - rip0] */
		b4(e, (uint32_t)(int32_t)(next - rip0));
		BYTES(e, 0x4D, 0x89, 0x13); /* mov [r11], r10 */
		emit_lea_disp(e, hs, hs, -8);
	}
}

/* Guest register g into host register h, by xchg (the flags stay): the
 * guest register living in h, if any, goes where g was. */
static void emit_place(struct emit *e, int g, int h)
{
	int x = e->host[g];
	if (x == h)
		return;
	b1(e, 0x48 | (x >> 3) << 2 | h >> 3); /* xchg h, x */
	b1(e, 0x87);
	b1(e, 0xC0 | (x & 7) << 3 | (h & 7));
	for (int o = 0; o < 16; o++)
		if (e->host[o] == h)
			e->host[o] = (int8_t)x;
	e->host[g] = (int8_t)h;
	e->moved = true;
}

/* A side exit where div (sign: idiv) by host register hd would raise #DE:
 * the handler raises it. idiv is taken only on a dividend that is the
 * sign extension of the accumulator (cdq, cqo) and a divisor other than
 * 0 and -1: its quotient then fits, and the interpreter decides the
 * rest. r10 scratch. */
static void emit_div_check(struct emit *e, uint8_t w, bool sign, int hd, struct side *s)
{
	int ha = e->host[R_RAX], hx = e->host[R_RDX];
	int bits = w ? 64 : 32;
	if (!sign) {
		b1(e, 0x40 | w | (hd >> 3) << 2 | hx >> 3); /* cmp hx, hd */
		b1(e, 0x39);
		b1(e, 0xC0 | (hd & 7) << 3 | (hx & 7));
		BYTES(e, 0x0F, 0x83);                      /* jae side */
		s->at[s->n++] = rel32(e);
		return;
	}
	b1(e, 0x44 | w | hd >> 3);                          /* lea r10, [hd + 1] */
	b1(e, 0x8D);
	b1(e, 0x40 | 2 << 3 | (hd & 7));
	if ((hd & 7) == 4)
		b1(e, 0x24);
	b1(e, 1);
	b1(e, 0x41 | w);                                    /* cmp r10, 1 */
	BYTES(e, 0x83, 0xFA, 1,
	      0x0F, 0x86);                                  /* jbe side: 0 or -1 */
	s->at[s->n++] = rel32(e);
	b1(e, 0x41 | w | (ha >> 3) << 2);                   /* mov r10, ha */
	b1(e, 0x89);
	b1(e, 0xC0 | (ha & 7) << 3 | 2);
	b1(e, 0x41 | w);                                    /* sar r10, bits - 1 */
	BYTES(e, 0xC1, 0xFA);
	b1(e, (uint8_t)(bits - 1));
	b1(e, 0x41 | w | (hx >> 3) << 2);                   /* cmp r10, hx */
	b1(e, 0x39);
	b1(e, 0xC0 | (hx & 7) << 3 | 2);
	BYTES(e, 0x0F, 0x85);                               /* jne side */
	s->at[s->n++] = rel32(e);
}

/* mul, imul, div, idiv (F7 /4-/7): the accumulator's guest registers
 * brought into host RAX and RDX, a memory operand loaded into r11 first,
 * #DE left to the handler by a side exit before the instruction */
static void emit_muldiv(struct emit *e, const struct insn *in, const struct form *f, uint64_t rip,
			uint64_t rip0, struct side *s)
{
	bool div = f->digit >= 6;
	uint8_t w = in->rex & 8;
	int hd = H_R11;
	/* a side exit finds the flags in c->rflags */
	if ((div || in->is_mem) && e->hostfl)
		emit_spill(e);
	if (in->is_mem) {
		emit_ea(e, in, f, H_R11, 8, rip, rip0);
		if (in->seg == S_FS || in->seg == S_GS) {
			BYTES(e, 0x4C, 0x03, 0x9F); /* add r11, [rdi + base] */
			b4(e, OFF(seg[in->seg].base));
		}
		emit_lookup(e, false, f->size, s);
		b1(e, 0x45 | w);                    /* mov r11, [r11] */
		BYTES(e, 0x8B, 0x1B);
	} else {
		hd = e->host[f->rm];
	}
	if (div)
		emit_div_check(e, w, f->digit == 7, hd, s);
	emit_place(e, R_RAX, H_RAX);
	emit_place(e, R_RDX, H_RDX);
	if (!in->is_mem)
		hd = e->host[f->rm];
	if (!e->hostfl)
		emit_fill(e);
	b1(e, 0x40 | w | hd >> 3);
	b1(e, 0xF7);
	b1(e, 0xC0 | f->digit << 3 | (hd & 7));
	e->hostfl = true;
}

/* movsd between [r11] and XMM f->xmm in c->fx, through r9; a side exit
 * when CR0.EM, CR0.TS or a clear CR4.OSFXSR make it #UD or #NM (the
 * handler raises it). The flags are in c->rflags here. */
static void emit_movsd(struct emit *e, const struct insn *in, const struct form *f, struct side *s)
{
	uint32_t x = OFF(fx) + (uint32_t)offsetof(struct fxstate, xmm) + 16u * (uint32_t)f->xmm;
	BYTES(e, 0xF7, 0x87);                /* test dword [rdi + cr0], EM | TS */
	b4(e, OFF(cr0));
	b4(e, CR0_EM | CR0_TS);
	BYTES(e, 0x0F, 0x85);                /* jnz side */
	s->at[s->n++] = rel32(e);
	BYTES(e, 0xF7, 0x87);                /* test dword [rdi + cr4], OSFXSR */
	b4(e, OFF(cr4));
	b4(e, CR4_OSFXSR);
	BYTES(e, 0x0F, 0x84);                /* jz side */
	s->at[s->n++] = rel32(e);
	if (in->op == 0x10) {
		BYTES(e, 0x4D, 0x8B, 0x0B);  /* mov r9, [r11] */
		emit_cpu(e, 0x89, H_R9, x);
		BYTES(e, 0x48, 0xC7, 0x87);  /* mov qword [rdi + x + 8], 0 */
		b4(e, x + 8);
		b4(e, 0);
	} else {
		emit_cpu(e, 0x8B, H_R9, x);
		BYTES(e, 0x4D, 0x89, 0x0B);  /* mov [r11], r9 */
	}
}

/* an instruction with a memory operand, or a side exit before it */
static void emit_access(struct emit *e, const struct insn *in, const struct form *f, uint64_t rip, uint64_t rip0,
			struct side *s)
{
	bool write = f->mem != M_R;
	if (f->kind == K_MULDIV) {
		emit_muldiv(e, in, f, rip, rip0, s);
		return;
	}
	/* a side exit leaves the flags in c->rflags, the lookup clobbers
	 * the host's */
	if (e->hostfl)
		emit_spill(e);
	if (f->kind == K_PUSH) {
		int hs = e->host[R_RSP], hv = e->host[f->rm];
		emit_lea_disp(e, H_R11, hs, -8);
		emit_lookup(e, true, 8, s);
		/* mov [r11], hv; then rsp (push rsp stores the old value) */
		b1(e, 0x49 | (hv >> 3) << 2);
		b1(e, 0x89);
		b1(e, (hv & 7) << 3 | 3);
		emit_lea_disp(e, hs, hs, -8);
		return;
	}
	if (f->kind == K_POP) {
		int hs = e->host[R_RSP], hv = e->host[f->rm];
		emit_lea_disp(e, H_R11, hs, 0);
		emit_lookup(e, false, 8, s);
		/* rsp first: pop rsp loads the value read */
		emit_lea_disp(e, hs, hs, 8);
		b1(e, 0x49 | (hv >> 3) << 2); /* mov hv, [r11] */
		b1(e, 0x8B);
		b1(e, (hv & 7) << 3 | 3);
		return;
	}
	emit_ea(e, in, f, H_R11, 8, rip, rip0);
	if (in->seg == S_FS || in->seg == S_GS) {
		BYTES(e, 0x4C, 0x03, 0x9F); /* add r11, [rdi + base] */
		b4(e, OFF(seg[in->seg].base));
	}
	emit_lookup(e, write, f->size, s);
	if (f->kind == K_MOVSD) {
		emit_movsd(e, in, f, s);
		return;
	}
	if (f->fl == FL_READ || f->fl == FL_RW)
		emit_fill(e);
	emit_mem_insn(e, in, f);
	if (f->fl != FL_NONE)
		e->hostfl = true;
}

/* jmp r/m and call r/m (ff /4, ff /2) with a 64-bit target: the target
 * from rm or the memory operand; a call's RSP in reg */
static bool form_indirect(const struct insn *in, struct form *f)
{
	int digit = in->reg & 7;
	if (in->map != 0 || in->op != 0xFF || (digit != 2 && digit != 4) || in->opsize_prefix || in->lock ||
	    in->rep)
		return false;
	memset(f, 0, sizeof(*f));
	f->kind = digit == 4 ? K_JMPI : K_CALLI;
	f->op = in->op;
	f->reg = digit == 2 ? R_RSP : -1;
	f->rm = in->is_mem ? -1 : in->rm;
	f->base = in->is_mem && !in->riprel ? in->base : -1;
	f->index = in->is_mem && !in->riprel ? in->index : -1;
	f->cnt = -1;
	f->mem = in->is_mem ? M_R : M_NONE;
	f->size = 8;
	return true;
}

/* what a scan of a block's start found */
struct scan {
	struct form forms[64];
	int k;            /* instructions in the run */
	bool flags_in;    /* the first use of the flags reads them */
	bool ends_with_jump;
};

/* how far the run at in goes, which registers it needs, what it does with
 * the flags */
static void scan(struct cpu *c, const struct insn *in, int n, uint64_t rip0, struct scan *s)
{
	uint64_t rip = rip0;
	bool seen = false;
	s->k = 0;
	s->flags_in = false;
	s->ends_with_jump = false;
	if (c->mode != 64 || n > 64)
		return;
	for (int k = 0; k < n; k++) {
		struct form *f = &s->forms[k];
		if (!classify(&in[k], f) && !form_indirect(&in[k], f))
			return;
		/* a jmp, call or conditional branch anywhere a delta from the
		 * block's start reaches (out of the page through a linked far
		 * exit that checks the target is canonical) */
		int64_t delta = (int64_t)(rip + in[k].len + in[k].imm - rip0);
		if ((f->kind == K_JMP || f->kind == K_CALL || f->kind == K_JCC) &&
		    (delta != (int32_t)delta || delta == INT32_MIN))
			return;
		if (in[k].riprel && (int64_t)(int32_t)(in[k].disp + 0x2000) != in[k].disp + 0x2000)
			return;
		if (!seen && (f->mem != M_NONE || f->fl != FL_NONE)) {
			seen = true;
			s->flags_in = f->mem == M_NONE && (f->fl == FL_READ || f->fl == FL_RW);
		}
		rip += in[k].len;
		s->k = k + 1;
		if (f->kind == K_JMP || f->kind == K_CALL || f->kind == K_RET || f->kind == K_JMPI ||
		    f->kind == K_CALLI) {
			s->ends_with_jump = true;
			return;
		}
	}
}

int jit_prefix(struct cpu *c, const struct insn *in, int n, uint64_t rip0)
{
	struct scan s;
	scan(c, in, n, rip0, &s);
	return s.k;
}

/* Guest RAX..RBX loaded at entry go into host RAX..RBX (the others into
 * the rest of the pool): a shift then finds its count in CL, and AH..BH
 * are where an instruction without REX names them. */
static void entry_prefer(int8_t host[16])
{
	bool used[16] = { false };
	for (int g = R_RAX; g <= R_RBX; g++)
		if (host[g] >= 0) {
			host[g] = (int8_t)g;
			used[g] = true;
		}
	int p = 0;
	for (int g = R_RSP; g < 16; g++) {
		if (host[g] < 0)
			continue;
		while (used[pool[p]])
			p++;
		host[g] = (int8_t)pool[p];
		used[pool[p]] = true;
	}
}

/* a branch out of the run, patched once the exits are laid out */
struct exit {
	uint8_t *at;   /* the rel32 to point at the exit */
	int32_t delta; /* target - the block's start, or RIP_R10 */
	uint32_t count;
	int chain;
	bool hostfl, moved;
	int8_t host[16];
	uint16_t dirty;
	/* a conditional branch out of the page: its target is checked to be
	 * canonical at the exit, else the exit is before it (RIP moved on by
	 * before, count i) */
	bool check;
	int i;
	int32_t before;
};

int jit_translate(struct jit *j, struct cpu *c, const struct insn *in, int n, uint64_t rip0, void *owner,
		  jit_fn *fn)
{
	struct scan sc;
	struct emit e = { 0 };
	scan(c, in, n, rip0, &sc);
	const struct form *forms = sc.forms;
	int k = sc.k;
	/* a run ending in a transfer is worth it at any length: its exit
	 * may be linked to the next block's code */
	if (k < JIT_MIN_RUN && !sc.ends_with_jump)
		return 0;
	e.cpl3 = c->cpl == 3;
	e.owner = owner;
	e.j = j;
	/* the first POOL_SIZE guest registers the run names, in the order
	 * it names them, are loaded at entry */
	memset(e.host, -1, sizeof(e.host));
	for (int i = 0; i < k && e.nhost < POOL_SIZE; i++) {
		int8_t regs[FORM_REGS];
		form_regs(&forms[i], regs);
		for (int r = 0; r < FORM_REGS; r++)
			if (regs[r] >= 0 && e.host[regs[r]] < 0 && e.nhost < POOL_SIZE)
				e.host[regs[r]] = (int8_t)pool[e.nhost++];
	}
	entry_prefer(e.host);

	/* A run that loops back to its start goes round with the registers
	 * it wrote in the last round not yet stored: they are all written
	 * at every exit. */
	uint64_t at = rip0;
	for (int i = 0; i < k; i++) {
		at += in[i].len;
		if ((forms[i].kind == K_JCC || forms[i].kind == K_JMP) && at + in[i].imm == rip0 && !sc.flags_in)
			for (int x = 0; x < k; x++)
				e.dirty |= form_writes(&in[x], &forms[x]);
	}
	uint8_t *start = j->code + j->used;
	e.p = start;
	if (sc.flags_in) {
		emit_cpu(&e, 0x8B, H_RAX, OFF(rflags));
		BYTES(&e, 0x41, 0x89, 0xC3,       /* mov r11d, eax */
		      0x41, 0xC1, 0xEB, 0x0B,     /* shr r11d, 11 */
		      0x41, 0x83, 0xE3, 0x01,     /* and r11d, 1 */
		      0xC1, 0xE0, 0x08,           /* shl eax, 8 */
		      0x41, 0x80, 0xC3, 0x7F,     /* add r11b, 0x7f: OF = the guest's */
		      0x9E);                      /* sahf: SF ZF AF PF CF */
		e.hostfl = true;
	}
	uint8_t *reload = e.p;
	for (int g = 0; g < 16; g++)
		if (e.host[g] >= 0)
			emit_cpu(&e, 0x8B, e.host[g], OFF(r[g]));
	uint8_t *top = e.p;

	struct exit exits[64];
	struct side sides[64];
	int nexits = 0;
	uint64_t rip = rip0;
	for (int i = 0; i < k; i++) {
		const struct form *f = &forms[i];
		uint64_t next = rip + in[i].len;
		sides[i].n = 0;
		emit_regs(&e, forms, k, i);
		memcpy(sides[i].host, e.host, sizeof(e.host));
		sides[i].dirty = e.dirty;
		bool to_r10 = f->kind == K_RET || f->kind == K_JMPI || f->kind == K_CALLI;
		bool far = f->kind == K_CALL || to_r10 ||
			   (f->kind == K_JMP && (next + in[i].imm) >> 12 != rip0 >> 12);
		if (far) {
			emit_transfer(&e, &in[i], f, rip, rip0, &sides[i]);
			e.dirty |= form_writes(&in[i], f);
			b1(&e, 0xE9);
			struct exit *x = &exits[nexits++];
			*x = (struct exit){ rel32(&e), to_r10 ? RIP_R10 : (int32_t)(next + in[i].imm - rip0),
					    (uint32_t)(i + 1), to_r10 ? CH_RET : CH_FAR, false, e.moved, { 0 } };
			memcpy(x->host, e.host, sizeof(e.host));
			x->dirty = e.dirty;
		} else if (f->kind == K_JCC && (next + in[i].imm) >> 12 != rip0 >> 12) {
			if (!e.hostfl)
				emit_fill(&e);
			b1(&e, 0x0F);
			b1(&e, 0x80 | (in[i].op & 15));
			struct exit *x = &exits[nexits++];
			*x = (struct exit){ rel32(&e), (int32_t)(next + in[i].imm - rip0), (uint32_t)(i + 1), CH_FAR,
					    e.hostfl, e.moved, { 0 }, 0, true, i, (int32_t)(rip - rip0) };
			memcpy(x->host, e.host, sizeof(e.host));
			x->dirty = e.dirty;
		} else if (f->kind == K_JCC || f->kind == K_JMP) {
			if (f->kind == K_JCC) {
				if (!e.hostfl)
					emit_fill(&e);
				b1(&e, 0x0F);
				b1(&e, 0x80 | (in[i].op & 15));
			} else {
				b1(&e, 0xE9);
			}
			struct exit *x = &exits[nexits++];
			*x = (struct exit){ rel32(&e), (int32_t)(next + in[i].imm - rip0), (uint32_t)(i + 1), CH_PAGE,
					    e.hostfl, e.moved, { 0 }, 0 };
			memcpy(x->host, e.host, sizeof(e.host));
			x->dirty = e.dirty;
		} else if (f->mem != M_NONE || f->kind == K_MULDIV) {
			emit_access(&e, &in[i], f, rip, rip0, &sides[i]);
			e.dirty |= form_writes(&in[i], f);
		} else {
			if ((f->fl == FL_READ || f->fl == FL_RW) && !e.hostfl)
				emit_fill(&e);
			emit_insn(&e, &in[i], f, rip, rip0);
			e.dirty |= form_writes(&in[i], f);
			if (f->fl != FL_NONE)
				e.hostfl = true;
		}
		rip = next;
	}
	if (!sc.ends_with_jump)
		emit_exit(&e, (int32_t)(rip - rip0), (uint32_t)k, (uint32_t)k,
			  k == n && (rip0 & 0xfff) + (rip - rip0) < 0x1000 ? CH_PAGE : CH_NONE);
	/* side exits: before the access, the flags in c->rflags; the
	 * handlers run the instruction */
	rip = rip0;
	for (int i = 0; i < k; i++) {
		if (sides[i].n) {
			for (int x = 0; x < sides[i].n; x++)
				patch(sides[i].at[x], e.p);
			e.hostfl = false;
			memcpy(e.host, sides[i].host, sizeof(e.host));
			e.dirty = sides[i].dirty;
			emit_exit(&e, (int32_t)(rip - rip0), (uint32_t)i, (uint32_t)i, CH_NONE);
		}
		rip += in[i].len;
	}
	for (int x = 0; x < nexits; x++) {
		patch(exits[x].at, e.p);
		e.hostfl = exits[x].hostfl;
		memcpy(e.host, exits[x].host, sizeof(e.host));
		e.dirty = exits[x].dirty;
		if (exits[x].check) {
			struct side bad = { .n = 0 };
			if (e.hostfl)
				emit_spill(&e);
			emit_store_all(&e);
			e.dirty = 0;
			emit_cpu(&e, 0x8B, H_R10, OFF(rip));
			BYTES(&e, 0x4D, 0x8D, 0x92); /* lea r10, [r10 + target - rip0] */
			b4(&e, (uint32_t)exits[x].delta);
			emit_canonical(&e, &bad);
			emit_exit(&e, RIP_R10, exits[x].count, JIT_LEFT, CH_FAR);
			patch(bad.at[0], e.p);
			emit_exit(&e, exits[x].before, (uint32_t)exits[x].i, (uint32_t)exits[x].i, CH_NONE);
			continue;
		}
		if (exits[x].delta || sc.flags_in || exits[x].chain == CH_FAR) {
			emit_exit(&e, exits[x].delta, exits[x].count, JIT_LEFT, exits[x].chain);
			continue;
		}
		/* back to the start, where the flags are not read before they
		 * are written: go round again unless the budget is used up or
		 * something is pending, with the flags in c->rflags as at the
		 * first entry, and the registers as there (evicted ones are
		 * stored, the entry's loaded again) */
		if (e.hostfl)
			emit_spill(&e);
		if (exits[x].moved) {
			emit_store_all(&e);
			memset(e.host, -1, sizeof(e.host));
		}
		BYTES(&e, 0x48, 0x81, 0x87); /* add qword [rdi + icount], count */
		b4(&e, OFF(icount));
		b4(&e, exits[x].count);
		BYTES(&e, 0x4C, 0x8B, 0x9F); /* mov r11, [rdi + icount] */
		b4(&e, OFF(icount));
		BYTES(&e, 0x49, 0x39, 0xF3,  /* cmp r11, rsi */
		      0x0F, 0x83);           /* jae out */
		uint8_t *out1 = rel32(&e);
		BYTES(&e, 0x44, 0x8B, 0x9F); /* mov r11d, [rdi + intr_poke] */
		b4(&e, OFF(intr_poke));
		BYTES(&e, 0x44, 0x0B, 0x9F); /* or r11d, [rdi + stop_request] */
		b4(&e, OFF(stop_request));
		BYTES(&e, 0x0F, 0x85);       /* jnz out */
		uint8_t *out2 = rel32(&e);
		b1(&e, 0xE9);                /* jmp top */
		patch(rel32(&e), exits[x].moved ? reload : top);
		patch(out1, e.p);
		patch(out2, e.p);
		emit_exit(&e, 0, 0, JIT_LEFT, CH_NONE);
	}
	j->used += ((size_t)(e.p - start) + 15) & ~(size_t)15;
	*fn = (jit_fn)(void *)start;
	return k;
}
/* where a link stub holds the epoch's address, the host page of the
 * target (CH_FAR) and its final jmp */
#define STUB_EPOCH 2
#define STUB_PAGE 135
#define STUB_JMP(far) ((far) ? 152 : 62)

bool jit_link(struct jit *j, uintptr_t exit, jit_fn to, const uint64_t *epoch, const uint8_t *code, bool cpl3)
{
	bool far = exit & 1;
	uint8_t *slot = (uint8_t *)(exit & ~(uintptr_t)1);
	uintptr_t page = (uintptr_t)code & ~(uintptr_t)0xfff;
	uint8_t *back = slot + 5;
	int32_t rel;
	memcpy(&rel, slot + 1, 4);
	if (rel) {
		/* linked before, to a block since replaced or whose checks
		 * failed: the same stub, pointed at the block there now */
		uint8_t *stub = back + rel;
		const uint64_t *was;
		uintptr_t was_page = page;
		memcpy(&was, stub + STUB_EPOCH, 8);
		if (far)
			memcpy(&was_page, stub + STUB_PAGE, 8);
		int32_t jmp, want = (int32_t)((const uint8_t *)(void *)to - (stub + STUB_JMP(far) + 5));
		memcpy(&jmp, stub + STUB_JMP(far) + 1, 4);
		/* writing code the host may have fetched costs it a pipeline
		 * flush: only when the link changes */
		if (was != epoch || jmp != want || was_page != page) {
			memcpy(stub + STUB_EPOCH, &epoch, 8);
			if (far)
				memcpy(stub + STUB_PAGE, &page, 8);
			patch(stub + STUB_JMP(far) + 1, (const uint8_t *)(void *)to);
		}
		return true;
	}
	if (j->used + 256 + JIT_BLOCK_MAX > JIT_SIZE)
		return false;
	uint8_t *start = j->code + j->used;
	struct emit e = { .p = start };
	/* the next block's checks of block_exec: its code unchanged since
	 * compared, the budget, nothing pending */
	BYTES(&e, 0x49, 0xBB); /* mov r11, epoch */
	bn(&e, (uintptr_t)epoch, 8);
	BYTES(&e, 0x4D, 0x8B, 0x1B,  /* mov r11, [r11] */
	      0x4C, 0x3B, 0x9F);     /* cmp r11, [rdi + code_epoch] */
	b4(&e, OFF(code_epoch));
	BYTES(&e, 0x0F, 0x85);       /* jne back */
	patch(rel32(&e), back);
	BYTES(&e, 0x4C, 0x8B, 0x9F); /* mov r11, [rdi + icount] */
	b4(&e, OFF(icount));
	BYTES(&e, 0x49, 0x39, 0xF3,  /* cmp r11, rsi */
	      0x0F, 0x83);           /* jae back */
	patch(rel32(&e), back);
	BYTES(&e, 0x44, 0x8B, 0x9F); /* mov r11d, [rdi + intr_poke] */
	b4(&e, OFF(intr_poke));
	BYTES(&e, 0x44, 0x0B, 0x9F); /* or r11d, [rdi + stop_request] */
	b4(&e, OFF(stop_request));
	BYTES(&e, 0x0F, 0x85);       /* jnz back */
	patch(rel32(&e), back);
	if (far) {
		/* the target's page is where it was at the link, through an
		 * executable TLB entry of the same set: the linear address
		 * of a page mapped elsewhere may hold other code */
		uint32_t tlb = OFF(tlb) + (uint32_t)(cpl3 * sizeof(((struct cpu *)0)->tlb[0]));
		BYTES(&e, 0x4C, 0x8B, 0x9F);           /* mov r11, [rdi + rip] */
		b4(&e, OFF(rip));
		emit_tlb_entry(&e, tlb);
		BYTES(&e, 0x49, 0x81, 0xE3, 0x00, 0xF0, 0xFF, 0xFF, /* and r11, ~0xfff */
		      0x4D, 0x89, 0xD9,                /* mov r9, r11 */
		      0x49, 0x83, 0xC9, 0x01,          /* or r9, 1 */
		      0x4D, 0x3B, 0x4A, 16,            /* cmp r9, [r10 + tag_x] */
		      0x0F, 0x85);                     /* jne back */
		patch(rel32(&e), back);
		BYTES(&e, 0x4D, 0x03, 0x5A, 24,        /* add r11, [r10 + addend] */
		      0x49, 0xB9);                     /* mov r9, page */
		if (e.p - start != STUB_PAGE)
			abort();
		bn(&e, page, 8);
		BYTES(&e, 0x4D, 0x39, 0xCB,            /* cmp r11, r9 */
		      0x0F, 0x85);                     /* jne back */
		patch(rel32(&e), back);
	}
	if (e.p - start != STUB_JMP(far))
		abort();
	b1(&e, 0xE9);                /* jmp to */
	patch(rel32(&e), (const uint8_t *)(void *)to);
	j->used += ((size_t)(e.p - start) + 15) & ~(size_t)15;
	patch(slot + 1, start);
	return true;
}
