/* A translator of runs of decoded instructions to host code.
 *
 * Guest and host are both x86-64, so an instruction that works on general
 * registers, the arithmetic flags and ordinary memory can run as itself:
 * the guest registers a run uses are loaded into host registers once, each
 * instruction is re-encoded with its ModRM (and REX) register fields
 * pointing at those host registers and its memory operand at the host
 * address of the guest's, and the registers are stored back when the run
 * leaves. The arithmetic flags are the host's, from the host's own
 * instruction, undefined ones included, as in the interpreter (alu.h). They
 * live in the host's RFLAGS while the run computes with them and in
 * c->rflags around memory accesses (the address lookup clobbers the host's),
 * loaded and stored only where the run needs it.
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
 * would start (block.c). Conditional and near jumps within the block's page
 * leave the run with RIP at their target, as an offset from the block's
 * start: the same code serves every linear address its page is mapped at.
 * A jump back to the start of the block, when the flags are not read there
 * before they are written, loops inside the code while the budget lasts and
 * no interrupt or stop is pending, as block_exec would have re-run the
 * block. The code belongs to its block, which is compared with memory
 * before it runs (block.c), and is dropped with it. */
#include <stddef.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "cpu/jit.h"

#define JIT_SIZE (16u << 20)
/* worst case for one block: BLOCK_MAX_INSNS instructions and exits */
#define JIT_BLOCK_MAX 32768u

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
enum { K_NOP, K_MODRM, K_OPREG, K_PLAIN, K_LEA, K_JCC, K_JMP, K_PUSH, K_POP };
/* what it does with its memory operand */
enum { M_NONE, M_R, M_W, M_RW };

struct form {
	uint8_t kind, op, digit, fl;
	uint8_t mem, size; /* memory access and its size in bytes */
	bool map1;
	bool byte;     /* byte operands: without REX, 4..7 mean AH..BH */
	bool lockable; /* a lock prefix makes it atomic (else #UD) */
	int8_t reg;    /* guest register in ModRM.reg; -1: the digit */
	int8_t rm;     /* guest register in ModRM.rm or the opcode's low bits */
	int8_t base, index; /* of the memory operand; push/pop: RSP in base */
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
		rm_operand(in, f, M_RW, size);
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
	case 0xC0: case 0xC1: case 0xD0: case 0xD1:
		f->byte = op == 0xC0 || op == 0xD0;
		rm_operand(in, f, M_RW, f->byte ? 1 : size);
		f->fl = FL_RW;
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
	bool ok = in->map == 1 ? form_map1(in, f) : in->map == 0 && form_map0(in, f);
	if (!ok)
		return false;
	if (f->kind == K_NOP) {
		f->reg = f->rm = -1;
		return !in->lock;
	}
	if (in->rep || (in->lock && !(f->lockable && in->is_mem)))
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
	int8_t host[16]; /* guest register -> host register, -1 */
	uint16_t used;   /* guest registers loaded at entry */
	int nhost;
	uint8_t saved[POOL_SIZE]; /* callee-saved host registers pushed */
	int nsaved;
	int cpl3;        /* the TLB set the block runs with */
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

/* the host's flags into c->rflags: state "in memory" */
static void emit_spill(struct emit *e)
{
	BYTES(e, 0x9C,                                           /* pushfq */
	      0x41, 0x5B,                                        /* pop r11 */
	      0x41, 0x81, 0xE3, F_ARITH & 0xff, F_ARITH >> 8, 0, 0); /* and r11d, F_ARITH */
	emit_cpu(e, 0x8B, H_R10, OFF(rflags));
	BYTES(e, 0x49, 0x81, 0xE2);                              /* and r10, ~F_ARITH */
	b4(e, (uint32_t)~F_ARITH);
	BYTES(e, 0x4D, 0x09, 0xDA);                              /* or r10, r11 */
	emit_cpu(e, 0x89, H_R10, OFF(rflags));
	e->hostfl = false;
}

/* c->rflags' arithmetic flags into the host's (only those: popf must not
 * set the host's TF, AC or DF) */
static void emit_fill(struct emit *e)
{
	emit_cpu(e, 0x8B, H_R10, OFF(rflags));
	BYTES(e, 0x41, 0x81, 0xE2, F_ARITH & 0xff, F_ARITH >> 8, 0, 0, /* and r10d, F_ARITH */
	      0x41, 0x52,                                            /* push r10 */
	      0x9D);                                                 /* popfq */
	e->hostfl = true;
}

/* Leave the code with RIP moved on by delta from the block's start (code
 * may run at several linear addresses: shared libraries, the vDSO), count
 * instructions added to icount, returning ret. */
static void emit_exit(struct emit *e, int32_t delta, uint32_t count, uint32_t ret)
{
	if (e->hostfl)
		b1(e, 0x9C); /* pushfq */
	for (int g = 0; g < 16; g++)
		if (e->used & (1u << g))
			emit_cpu(e, 0x89, e->host[g], OFF(r[g]));
	if (e->hostfl) {
		BYTES(e, 0x41, 0x5B,                                   /* pop r11 */
		      0x41, 0x81, 0xE3, F_ARITH & 0xff, F_ARITH >> 8, 0, 0); /* and r11d, F_ARITH */
		emit_cpu(e, 0x8B, H_RAX, OFF(rflags));
		b1(e, 0x48); /* and rax, ~F_ARITH */
		b1(e, 0x25);
		b4(e, (uint32_t)~F_ARITH);
		BYTES(e, 0x4C, 0x09, 0xD8); /* or rax, r11 */
		emit_cpu(e, 0x89, H_RAX, OFF(rflags));
	}
	/* the guest's flags are stored: the adds may clobber the host's */
	if (delta) {
		BYTES(e, 0x48, 0x81, 0x87); /* add qword [rdi + rip], delta */
		b4(e, OFF(rip));
		b4(e, (uint32_t)delta);
	}
	if (count) {
		BYTES(e, 0x48, 0x81, 0x87); /* add qword [rdi + icount], count */
		b4(e, OFF(icount));
		b4(e, count);
	}
	for (int i = e->nsaved - 1; i >= 0; i--)
		emit_push(e, e->saved[i], true);
	b1(e, 0xB8); /* mov eax, ret */
	b4(e, ret);
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
	uint8_t *at[4];
	int n;
};

/* r11 = the host address of the size bytes at linear r11 for a read or a
 * write, or a side exit when the TLB has no entry for it, the access
 * crosses a page or (a write) the page holds decoded code */
static void emit_lookup(struct emit *e, bool write, int size, struct side *s)
{
	uint32_t tlb = OFF(tlb) + (uint32_t)(e->cpl3 * sizeof(((struct cpu *)0)->tlb[0]));
	uint8_t tag = write ? offsetof(struct tlb_entry, tag_w) : offsetof(struct tlb_entry, tag_r);
	_Static_assert(sizeof(struct tlb_entry) == 40, "the index scales by 5 * 8");
	_Static_assert(offsetof(struct tlb_entry, addend) == 24, "addend at 24");
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

/* an instruction with its memory operand at [r11] */
static void emit_mem_insn(struct emit *e, const struct insn *in, const struct form *f)
{
	int hr = f->reg >= 0 ? e->host[f->reg] : f->digit;
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
}

/* an instruction on registers only */
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
}

/* an instruction with a memory operand, or a side exit before it */
static void emit_access(struct emit *e, const struct insn *in, const struct form *f, uint64_t rip, uint64_t rip0,
			struct side *s)
{
	bool write = f->mem != M_R;
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
	if (f->fl == FL_READ || f->fl == FL_RW)
		emit_fill(e);
	emit_mem_insn(e, in, f);
	if (f->fl != FL_NONE)
		e->hostfl = true;
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
static void scan(struct cpu *c, const struct insn *in, int n, uint64_t rip0, struct scan *s, struct emit *e)
{
	uint64_t rip = rip0;
	bool seen = false;
	s->k = 0;
	s->flags_in = false;
	s->ends_with_jump = false;
	memset(e->host, -1, sizeof(e->host));
	e->used = 0;
	e->nhost = 0;
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
		if (!seen && (f->mem != M_NONE || f->fl != FL_NONE)) {
			seen = true;
			s->flags_in = f->mem == M_NONE && (f->fl == FL_READ || f->fl == FL_RW);
		}
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

/* a branch out of the run, patched once the exits are laid out */
struct exit {
	uint8_t *at;   /* the rel32 to point at the exit */
	int32_t delta; /* target - the block's start */
	uint32_t count;
	bool hostfl;
};

int jit_translate(struct jit *j, struct cpu *c, const struct insn *in, int n, uint64_t rip0, jit_fn *fn)
{
	struct scan sc;
	struct emit e = { 0 };
	scan(c, in, n, rip0, &sc, &e);
	const struct form *forms = sc.forms;
	int k = sc.k;
	if (k < JIT_MIN_RUN)
		return 0;
	e.cpl3 = c->cpl == 3;

	uint8_t *start = j->code + j->used;
	e.p = start;
	for (int i = 0; i < e.nhost; i++)
		if (callee_saved(pool[i])) {
			e.saved[e.nsaved++] = pool[i];
			emit_push(&e, pool[i], false);
		}
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
	for (int g = 0; g < 16; g++)
		if (e.used & (1u << g))
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
		if (f->kind == K_JCC || f->kind == K_JMP) {
			if (f->kind == K_JCC) {
				if (!e.hostfl)
					emit_fill(&e);
				b1(&e, 0x0F);
				b1(&e, 0x80 | (in[i].op & 15));
			} else {
				b1(&e, 0xE9);
			}
			exits[nexits++] = (struct exit){ rel32(&e), (int32_t)(next + in[i].imm - rip0),
							 (uint32_t)(i + 1), e.hostfl };
		} else if (f->mem != M_NONE) {
			emit_access(&e, &in[i], f, rip, rip0, &sides[i]);
		} else {
			if ((f->fl == FL_READ || f->fl == FL_RW) && !e.hostfl)
				emit_fill(&e);
			emit_insn(&e, &in[i], f, rip, rip0);
			if (f->fl != FL_NONE)
				e.hostfl = true;
		}
		rip = next;
	}
	if (!sc.ends_with_jump)
		emit_exit(&e, (int32_t)(rip - rip0), (uint32_t)k, (uint32_t)k);
	/* side exits: before the access, the flags in c->rflags; the
	 * handlers run the instruction */
	rip = rip0;
	for (int i = 0; i < k; i++) {
		if (sides[i].n) {
			for (int x = 0; x < sides[i].n; x++)
				patch(sides[i].at[x], e.p);
			e.hostfl = false;
			emit_exit(&e, (int32_t)(rip - rip0), (uint32_t)i, (uint32_t)i);
		}
		rip += in[i].len;
	}
	for (int x = 0; x < nexits; x++) {
		patch(exits[x].at, e.p);
		e.hostfl = exits[x].hostfl;
		if (exits[x].delta || sc.flags_in) {
			emit_exit(&e, exits[x].delta, exits[x].count, JIT_LEFT);
			continue;
		}
		/* back to the start, where the flags are not read before they
		 * are written: go round again unless the budget is used up or
		 * something is pending, with the flags in c->rflags as at the
		 * first entry */
		if (e.hostfl)
			emit_spill(&e);
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
		patch(rel32(&e), top);
		patch(out1, e.p);
		patch(out2, e.p);
		emit_exit(&e, 0, 0, JIT_LEFT);
	}
	j->used += ((size_t)(e.p - start) + 15) & ~(size_t)15;
	*fn = (jit_fn)(void *)start;
	return k;
}
