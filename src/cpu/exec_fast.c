/* Handlers for the hot instruction forms, chosen once when an instruction
 * is decoded into a block (insn_bind), so that running a cached instruction
 * is one indirect call rather than the walk through exec_insn's switches.
 * Each handler does what exec.c does for its form, with the same host
 * instructions for the flags; a form is bound here only when nothing that
 * exec.c checks at run time (lock, 64-bit-only encodings, operand and
 * address sizes) can make it behave differently. Every other instruction
 * runs exec_insn, through h_system when it ends its block (block.c), else
 * through h_generic. */
#include "cpu/alu.h"
#include "cpu/cpu.h"
#include "cpu/exec.h"

#define HOT static __attribute__((always_inline)) inline

static bool h_generic(struct cpu *c, struct insn *in)
{
	uint64_t next = c->rip + in->len;
	if (in->is_mem)
		insn_ea(c, in);
	exec_insn(c, in);
	return c->rip == next && !c->smc;
}

/* an instruction that ends its block: the serializing ones are among these
 * (block.c), and they may have made an interrupt pending */
static bool h_system(struct cpu *c, struct insn *in)
{
	if (in->is_mem)
		insn_ea(c, in);
	exec_insn(c, in);
	c->code_epoch++;
	return false;
}

/* an instruction that ends its block but is not serializing (SDM 8.3),
 * so the blocks after it need not be compared with memory: near
 * branches without a handler of their own (indirect call and jmp, ret
 * imm16, the forms outside 64-bit mode), cli, sti, popf, clac, stac,
 * swapgs, rdtscp */
static bool h_end(struct cpu *c, struct insn *in)
{
	if (in->is_mem)
		insn_ea(c, in);
	exec_insn(c, in);
	return false;
}

static bool serializing(const struct insn *in)
{
	if (in->lock)
		return true;
	if (in->map == 0) {
		switch (in->op) {
		case 0x9D: case 0xC2: case 0xC3: case 0xE8: case 0xE9: case 0xEB: case 0xFA: case 0xFB:
			return false;
		case 0xFF:
			return (in->reg & 7) != 2 && (in->reg & 7) != 4;
		}
		return true;
	}
	if (in->map == 1 && in->op == 0x01 && in->mod == 3) {
		int reg = in->reg & 7, rm = in->rm & 7;
		return !((reg == 1 && (rm == 2 || rm == 3)) || (reg == 7 && rm <= 1));
	}
	return true;
}

HOT uint64_t zx(uint64_t v, int size)
{
	return size == 8 ? v : size == 4 ? (uint32_t)v : size == 2 ? (uint16_t)v : (uint8_t)v;
}

HOT void reg_set(struct cpu *c, int r, uint64_t v, int size)
{
	c->r[r] = size == 8 ? v : (uint32_t)v;
}

/* the memory operand's linear address (the block loop computes no EA) */
HOT uint64_t ea_lin(struct cpu *c, struct insn *in)
{
	insn_ea(c, in);
	return insn_ea_lin(c, in);
}

/* Handlers return whether the block goes on after them: not after a taken
 * branch, nor after a store into a page that holds decoded code (c->smc). */
HOT bool next(struct cpu *c, const struct insn *in)
{
	c->rip += in->len;
	return true;
}

HOT bool next_store(struct cpu *c, const struct insn *in)
{
	c->rip += in->len;
	return !c->smc;
}

/* 64-bit mode near branch target: #GP(0) when not canonical */
HOT void jump64(struct cpu *c, uint64_t target)
{
	if (__builtin_expect((int64_t)(target << 16) >> 16 != (int64_t)target, 0))
		cpu_fault(c, EXC_GP, 0);
	c->rip = target;
}

/* ---- two-operand ALU, 32 and 64 bits ---- */

HOT void alu_to_reg(struct cpu *c, int op, int size, int dst, uint64_t src)
{
	uint64_t r = alu(c, op, size, c->r[dst], src);
	if (op != ALU_CMP && op != ALU_TEST)
		reg_set(c, dst, r, size);
}

/* read-modify-write of a memory destination, straight through the host
 * pointer; MMIO and page-crossing operands take the generic path (which
 * moves RIP itself) */
HOT bool alu_to_mem(struct cpu *c, struct insn *in, int op, int size, uint64_t src)
{
	uint64_t lin = ea_lin(c, in);
	if (op == ALU_CMP || op == ALU_TEST) {
		alu(c, op, size, mem_read(c, lin, size), src);
		return next(c, in);
	}
	void *p = mem_ptr(c, lin, size, true);
	if (!p) {
		exec_insn(c, in);
		return !c->smc;
	}
	uint64_t old = 0;
	memcpy(&old, p, size);
	uint64_t r = alu(c, op, size, old, src);
	memcpy(p, &r, size);
	return next_store(c, in);
}

#define ALU_FORMS(NAME, OP, SIZE)                                                                  \
	static bool NAME##_mr(struct cpu *c, struct insn *in)                                      \
	{                                                                                          \
		alu_to_reg(c, OP, SIZE, in->rm, zx(c->r[in->reg], SIZE));                           \
		return next(c, in);                                                                \
	}                                                                                          \
	static bool NAME##_rm(struct cpu *c, struct insn *in)                                      \
	{                                                                                          \
		alu_to_reg(c, OP, SIZE, in->reg, zx(c->r[in->rm], SIZE));                           \
		return next(c, in);                                                                \
	}                                                                                          \
	static bool NAME##_ri(struct cpu *c, struct insn *in)                                      \
	{                                                                                          \
		alu_to_reg(c, OP, SIZE, in->rm, zx(in->imm, SIZE));                                 \
		return next(c, in);                                                                \
	}                                                                                          \
	static bool NAME##_ai(struct cpu *c, struct insn *in)                                      \
	{                                                                                          \
		alu_to_reg(c, OP, SIZE, R_RAX, zx(in->imm, SIZE));                                  \
		return next(c, in);                                                                \
	}                                                                                          \
	static bool NAME##_rM(struct cpu *c, struct insn *in)                                      \
	{                                                                                          \
		alu_to_reg(c, OP, SIZE, in->reg, mem_read(c, ea_lin(c, in), SIZE));                 \
		return next(c, in);                                                                \
	}                                                                                          \
	static bool NAME##_Mr(struct cpu *c, struct insn *in)                                      \
	{                                                                                          \
		return alu_to_mem(c, in, OP, SIZE, zx(c->r[in->reg], SIZE));                              \
	}                                                                                          \
	static bool NAME##_Mi(struct cpu *c, struct insn *in)                                      \
	{                                                                                          \
		return alu_to_mem(c, in, OP, SIZE, zx(in->imm, SIZE));                                    \
	}

#define ALU_SIZES(NAME, OP) ALU_FORMS(NAME##4, OP, 4) ALU_FORMS(NAME##8, OP, 8)
ALU_SIZES(add, ALU_ADD)
ALU_SIZES(or, ALU_OR)
ALU_SIZES(adc, ALU_ADC)
ALU_SIZES(sbb, ALU_SBB)
ALU_SIZES(and, ALU_AND)
ALU_SIZES(sub, ALU_SUB)
ALU_SIZES(xor, ALU_XOR)
ALU_SIZES(cmp, ALU_CMP)
ALU_SIZES(test, ALU_TEST)

typedef bool (*handler)(struct cpu *c, struct insn *in);
struct alu_forms {
	handler mr, rm, ri, ai, rM, Mr, Mi;
};
#define FORMS(N) { N##_mr, N##_rm, N##_ri, N##_ai, N##_rM, N##_Mr, N##_Mi }
/* [size == 8][op]: ALU_ADD .. ALU_TEST */
static const struct alu_forms alu_table[2][9] = {
	{ FORMS(add4), FORMS(or4), FORMS(adc4), FORMS(sbb4), FORMS(and4), FORMS(sub4), FORMS(xor4),
	  FORMS(cmp4), FORMS(test4) },
	{ FORMS(add8), FORMS(or8), FORMS(adc8), FORMS(sbb8), FORMS(and8), FORMS(sub8), FORMS(xor8),
	  FORMS(cmp8), FORMS(test8) },
};

/* byte compares and tests, frequent in the kernel */
HOT uint64_t rm8(struct cpu *c, struct insn *in)
{
	return in->is_mem ? mem_read(c, ea_lin(c, in), 1) : reg_read(c, in->rm, 1, in->rex);
}

static bool cmpb_mr(struct cpu *c, struct insn *in)
{
	alu(c, ALU_CMP, 1, rm8(c, in), reg_read(c, in->reg, 1, in->rex));
	return next(c, in);
}

static bool cmpb_rm(struct cpu *c, struct insn *in)
{
	alu(c, ALU_CMP, 1, reg_read(c, in->reg, 1, in->rex), rm8(c, in));
	return next(c, in);
}

static bool testb_mr(struct cpu *c, struct insn *in)
{
	alu(c, ALU_TEST, 1, rm8(c, in), reg_read(c, in->reg, 1, in->rex));
	return next(c, in);
}

static bool cmpb_mi(struct cpu *c, struct insn *in)
{
	alu(c, ALU_CMP, 1, rm8(c, in), in->imm);
	return next(c, in);
}

static bool testb_mi(struct cpu *c, struct insn *in)
{
	alu(c, ALU_TEST, 1, rm8(c, in), in->imm);
	return next(c, in);
}

static bool cmpb_ai(struct cpu *c, struct insn *in)
{
	alu(c, ALU_CMP, 1, c->r[R_RAX], in->imm);
	return next(c, in);
}

static bool testb_ai(struct cpu *c, struct insn *in)
{
	alu(c, ALU_TEST, 1, c->r[R_RAX], in->imm);
	return next(c, in);
}

/* the other byte ALU forms (00-35 with a byte operand, 80): string and
 * checksum code in user programs */
HOT bool alub_to_rm(struct cpu *c, struct insn *in, int op, uint64_t src)
{
	if (in->is_mem)
		return alu_to_mem(c, in, op, 1, src);
	reg_write(c, in->rm, alu(c, op, 1, reg_read(c, in->rm, 1, in->rex), src), 1, in->rex);
	return next(c, in);
}

#define BYTE_FORMS(NAME, OP)                                                                       \
	static bool NAME##b_mr(struct cpu *c, struct insn *in)                                     \
	{                                                                                          \
		return alub_to_rm(c, in, OP, reg_read(c, in->reg, 1, in->rex));                    \
	}                                                                                          \
	static bool NAME##b_rm(struct cpu *c, struct insn *in)                                     \
	{                                                                                          \
		uint64_t r = alu(c, OP, 1, reg_read(c, in->reg, 1, in->rex), rm8(c, in));          \
		reg_write(c, in->reg, r, 1, in->rex);                                              \
		return next(c, in);                                                                \
	}                                                                                          \
	static bool NAME##b_ai(struct cpu *c, struct insn *in)                                     \
	{                                                                                          \
		reg_write(c, R_RAX, alu(c, OP, 1, c->r[R_RAX], in->imm), 1, false);                \
		return next(c, in);                                                                \
	}                                                                                          \
	static bool NAME##b_mi(struct cpu *c, struct insn *in)                                     \
	{                                                                                          \
		return alub_to_rm(c, in, OP, (uint8_t)in->imm);                                    \
	}
BYTE_FORMS(add, ALU_ADD)
BYTE_FORMS(or, ALU_OR)
BYTE_FORMS(adc, ALU_ADC)
BYTE_FORMS(sbb, ALU_SBB)
BYTE_FORMS(and, ALU_AND)
BYTE_FORMS(sub, ALU_SUB)
BYTE_FORMS(xor, ALU_XOR)

struct byte_forms {
	handler mr, rm, ai, mi;
};
#define BFORMS(N) { N##b_mr, N##b_rm, N##b_ai, N##b_mi }
/* [op]: ALU_ADD .. ALU_XOR; cmp has its own handlers above */
static const struct byte_forms byte_table[7] = {
	BFORMS(add), BFORMS(or), BFORMS(adc), BFORMS(sbb), BFORMS(and), BFORMS(sub), BFORMS(xor),
};

/* nop, pause, endbr64, the hint nops */
static bool nop(struct cpu *c, struct insn *in)
{
	return next(c, in);
}

/* ---- inc, dec, shifts and rotates of a register ---- */

#define UNARY(NAME, OP, SIZE)                                                                      \
	static bool NAME(struct cpu *c, struct insn *in)                                           \
	{                                                                                          \
		reg_set(c, in->rm, alu(c, OP, SIZE, c->r[in->rm], 0), SIZE);                        \
		return next(c, in);                                                                \
	}
UNARY(inc4, ALU_INC, 4)
UNARY(inc8, ALU_INC, 8)
UNARY(dec4, ALU_DEC, 4)
UNARY(dec8, ALU_DEC, 8)

#define SHIFT(NAME, OP, SIZE)                                                                      \
	static bool NAME##_i(struct cpu *c, struct insn *in)                                       \
	{                                                                                          \
		reg_set(c, in->rm, alu(c, OP, SIZE, c->r[in->rm], (uint8_t)in->imm), SIZE);        \
		return next(c, in);                                                                \
	}                                                                                          \
	static bool NAME##_1(struct cpu *c, struct insn *in)                                       \
	{                                                                                          \
		reg_set(c, in->rm, alu(c, OP, SIZE, c->r[in->rm], 1), SIZE);                        \
		return next(c, in);                                                                \
	}                                                                                          \
	static bool NAME##_cl(struct cpu *c, struct insn *in)                                      \
	{                                                                                          \
		reg_set(c, in->rm, alu(c, OP, SIZE, c->r[in->rm], (uint8_t)c->r[R_RCX]), SIZE);    \
		return next(c, in);                                                                \
	}
#define SHIFT_SIZES(NAME, OP) SHIFT(NAME##4, OP, 4) SHIFT(NAME##8, OP, 8)
SHIFT_SIZES(rol, ALU_ROL)
SHIFT_SIZES(ror, ALU_ROR)
SHIFT_SIZES(shl, ALU_SHL)
SHIFT_SIZES(shr, ALU_SHR)
SHIFT_SIZES(sar, ALU_SAR)

struct shift_forms {
	handler i, one, cl;
};
#define SFORMS(N) { N##_i, N##_1, N##_cl }
/* [size == 8][reg]: rol ror rcl rcr shl shr sal sar; rcl/rcr are rare */
static const struct shift_forms shift_table[2][8] = {
	{ SFORMS(rol4), SFORMS(ror4), { 0 }, { 0 }, SFORMS(shl4), SFORMS(shr4), SFORMS(shl4), SFORMS(sar4) },
	{ SFORMS(rol8), SFORMS(ror8), { 0 }, { 0 }, SFORMS(shl8), SFORMS(shr8), SFORMS(shl8), SFORMS(sar8) },
};

/* imul r, r/m (CF and OF from the host, the rest kept, as exec.c) */
#define IMUL(NAME, T, SIZE)                                                                        \
	static bool NAME(struct cpu *c, struct insn *in)                                           \
	{                                                                                          \
		uint64_t f = c->rflags & F_ARITH;                                                  \
		T x = (T)c->r[in->reg];                                                            \
		T y = (T)(in->is_mem ? mem_read(c, ea_lin(c, in), SIZE) : c->r[in->rm]);           \
		asm(ALU_NOIN "imul %[y],%[x]" ALU_OUT : [x] "+r"(x), [f] "+r"(f) : [y] "r"(y) : "cc"); \
		c->rflags = (c->rflags & ~(uint64_t)(F_CF | F_OF)) | (f & (F_CF | F_OF));         \
		c->r[in->reg] = x;                                                                 \
		return next(c, in);                                                                \
	}
IMUL(imul4, uint32_t, 4)
IMUL(imul8, uint64_t, 8)

/* ---- moves ---- */

#define MOVES(SIZE)                                                                                \
	static bool mov##SIZE##_mr(struct cpu *c, struct insn *in)                                 \
	{                                                                                          \
		reg_set(c, in->rm, c->r[in->reg], SIZE);                                           \
		return next(c, in);                                                                \
	}                                                                                          \
	static bool mov##SIZE##_rm(struct cpu *c, struct insn *in)                                 \
	{                                                                                          \
		reg_set(c, in->reg, c->r[in->rm], SIZE);                                           \
		return next(c, in);                                                                \
	}                                                                                          \
	static bool mov##SIZE##_rM(struct cpu *c, struct insn *in)                                 \
	{                                                                                          \
		reg_set(c, in->reg, mem_read(c, ea_lin(c, in), SIZE), SIZE);                        \
		return next(c, in);                                                                \
	}                                                                                          \
	static bool mov##SIZE##_Mr(struct cpu *c, struct insn *in)                                 \
	{                                                                                          \
		mem_write(c, ea_lin(c, in), c->r[in->reg], SIZE);                                  \
		return next_store(c, in);                                                             \
	}                                                                                          \
	static bool mov##SIZE##_Mi(struct cpu *c, struct insn *in)                                 \
	{                                                                                          \
		mem_write(c, ea_lin(c, in), in->imm, SIZE);                                        \
		return next_store(c, in);                                                             \
	}                                                                                          \
	static bool mov##SIZE##_ri(struct cpu *c, struct insn *in)                                 \
	{                                                                                          \
		reg_set(c, in->rm, in->imm, SIZE);                                                 \
		return next(c, in);                                                                \
	}                                                                                          \
	static bool mov##SIZE##_oi(struct cpu *c, struct insn *in)                                 \
	{                                                                                          \
		reg_set(c, (in->op & 7) | (in->rex & 1 ? 8 : 0), in->imm, SIZE);                   \
		return next(c, in);                                                                \
	}                                                                                          \
	static bool lea##SIZE(struct cpu *c, struct insn *in)                                      \
	{                                                                                          \
		insn_ea(c, in);                                                                    \
		reg_set(c, in->reg, in->ea, SIZE);                                                 \
		return next(c, in);                                                                \
	}
MOVES(4)
MOVES(8)

#define MOVX(NAME, FROM, CAST, SIZE)                                                               \
	static bool NAME(struct cpu *c, struct insn *in)                                           \
	{                                                                                          \
		uint64_t v = in->is_mem ? mem_read(c, ea_lin(c, in), FROM) : reg_read(c, in->rm, FROM, in->rex); \
		reg_set(c, in->reg, (uint64_t)(CAST v), SIZE);                                     \
		return next(c, in);                                                                \
	}
MOVX(movzb4, 1, (uint8_t), 4)
MOVX(movzb8, 1, (uint8_t), 8)
MOVX(movzw4, 2, (uint16_t), 4)
MOVX(movzw8, 2, (uint16_t), 8)
MOVX(movsb4, 1, (int64_t)(int8_t), 4)
MOVX(movsb8, 1, (int64_t)(int8_t), 8)
MOVX(movsw4, 2, (int64_t)(int16_t), 4)
MOVX(movsw8, 2, (int64_t)(int16_t), 8)
MOVX(movsd8, 4, (int64_t)(int32_t), 8)

/* byte loads and stores */
static bool movb_Mr(struct cpu *c, struct insn *in)
{
	mem_write(c, ea_lin(c, in), reg_read(c, in->reg, 1, in->rex), 1);
	return next_store(c, in);
}

static bool movb_rM(struct cpu *c, struct insn *in)
{
	reg_write(c, in->reg, mem_read(c, ea_lin(c, in), 1), 1, in->rex);
	return next(c, in);
}

static bool movb_Mi(struct cpu *c, struct insn *in)
{
	mem_write(c, ea_lin(c, in), in->imm, 1);
	return next_store(c, in);
}

/* ---- conditions: cmovcc, setcc, jcc, one handler per condition ---- */

HOT bool cond(struct cpu *c, int cc)
{
	uint64_t f = c->rflags;
	bool r;
	switch (cc >> 1) {
	case 0: r = f & F_OF; break;
	case 1: r = f & F_CF; break;
	case 2: r = f & F_ZF; break;
	case 3: r = f & (F_CF | F_ZF); break;
	case 4: r = f & F_SF; break;
	case 5: r = f & F_PF; break;
	case 6: r = !(f & F_SF) != !(f & F_OF); break;
	default: r = (f & F_ZF) || (!(f & F_SF) != !(f & F_OF)); break;
	}
	return (cc & 1) ? !r : r;
}

#define COND(CC)                                                                                   \
	static bool jcc64_##CC(struct cpu *c, struct insn *in)                                    \
	{                                                                                          \
		uint64_t next = c->rip + in->len;                                                  \
		bool taken = cond(c, CC);                                                          \
		jump64(c, taken ? next + in->imm : next);                                          \
		return !taken;                                                                     \
	}                                                                                          \
	static bool cmov4_##CC(struct cpu *c, struct insn *in)                                    \
	{                                                                                          \
		uint64_t v = in->is_mem ? mem_read(c, ea_lin(c, in), 4) : c->r[in->rm];            \
		if (cond(c, CC))                                                                   \
			c->r[in->reg] = (uint32_t)v;                                               \
		else                                                                               \
			c->r[in->reg] = (uint32_t)c->r[in->reg];                                   \
		return next(c, in);                                                                \
	}                                                                                          \
	static bool cmov8_##CC(struct cpu *c, struct insn *in)                                    \
	{                                                                                          \
		uint64_t v = in->is_mem ? mem_read(c, ea_lin(c, in), 8) : c->r[in->rm];            \
		if (cond(c, CC))                                                                   \
			c->r[in->reg] = v;                                                         \
		return next(c, in);                                                                \
	}                                                                                          \
	static bool setcc_##CC(struct cpu *c, struct insn *in)                                    \
	{                                                                                          \
		if (in->is_mem)                                                                    \
			mem_write(c, ea_lin(c, in), cond(c, CC), 1);                               \
		else                                                                               \
			reg_write(c, in->rm, cond(c, CC), 1, in->rex);                             \
		return next_store(c, in);                                                          \
	}
COND(0) COND(1) COND(2) COND(3) COND(4) COND(5) COND(6) COND(7)
COND(8) COND(9) COND(10) COND(11) COND(12) COND(13) COND(14) COND(15)

#define BY_CC(P) { P##0, P##1, P##2, P##3, P##4, P##5, P##6, P##7, \
		   P##8, P##9, P##10, P##11, P##12, P##13, P##14, P##15 }
static const handler jcc64_table[16] = BY_CC(jcc64_);
static const handler cmov4_table[16] = BY_CC(cmov4_);
static const handler cmov8_table[16] = BY_CC(cmov8_);
static const handler setcc_table[16] = BY_CC(setcc_);

/* ---- stack and near transfers in 64-bit mode ---- */

static bool push64(struct cpu *c, struct insn *in)
{
	uint64_t v = c->r[(in->op & 7) | (in->rex & 1 ? 8 : 0)];
	uint64_t sp = c->r[R_RSP] - 8;
	mem_write(c, ss_canonical(c, sp), v, 8);
	c->r[R_RSP] = sp;
	return next_store(c, in);
}

static bool pop64(struct cpu *c, struct insn *in)
{
	uint64_t v = mem_read(c, ss_canonical(c, c->r[R_RSP]), 8);
	c->r[R_RSP] += 8;
	c->r[(in->op & 7) | (in->rex & 1 ? 8 : 0)] = v;
	return next(c, in);
}

static bool call64(struct cpu *c, struct insn *in)
{
	uint64_t next = c->rip + in->len, target = next + in->imm;
	if ((int64_t)(target << 16) >> 16 != (int64_t)target)
		cpu_fault(c, EXC_GP, 0);
	uint64_t sp = c->r[R_RSP] - 8;
	mem_write(c, ss_canonical(c, sp), next, 8);
	c->r[R_RSP] = sp;
	c->rip = target;
	return false;
}

static bool ret64(struct cpu *c, struct insn *in)
{
	uint64_t t = mem_read(c, ss_canonical(c, c->r[R_RSP]), 8);
	jump64(c, t);
	c->r[R_RSP] += 8;
	return false;
}

static bool jmp64(struct cpu *c, struct insn *in)
{
	jump64(c, c->rip + in->len + in->imm);
	return false;
}

/* ---- binding ---- */

static handler bind_map0(struct cpu *c, const struct insn *in)
{
	uint8_t op = in->op;
	int size = in->opsize;
	bool wide = size == 8, dw = size == 4 || size == 8;
	bool m64 = c->mode == 64;

	if (op < 0x38 && ((op & 7) == 0 || (op & 7) == 2 || (op & 7) == 4)) {
		const struct byte_forms *f = &byte_table[op >> 3];
		return (op & 7) == 0 ? f->mr : (op & 7) == 2 ? f->rm : f->ai;
	}
	if (op < 0x40 && ((op & 7) == 1 || (op & 7) == 3 || (op & 7) == 5)) {
		if (!dw)
			return NULL;
		const struct alu_forms *f = &alu_table[wide][op >> 3];
		switch (op & 7) {
		case 1: return in->is_mem ? f->Mr : f->mr;
		case 3: return in->is_mem ? f->rM : f->rm;
		case 5: return f->ai;
		}
		return NULL;
	}
	switch (op) {
	case 0x50 ... 0x57:
		return m64 && !in->opsize_prefix ? push64 : NULL;
	case 0x58 ... 0x5F:
		return m64 && !in->opsize_prefix ? pop64 : NULL;
	case 0x63:
		return m64 && wide ? movsd8 : NULL;
	case 0x70 ... 0x7F:
		return m64 ? jcc64_table[op & 15] : NULL;
	case 0x38: return cmpb_mr;
	case 0x3A: return cmpb_rm;
	case 0x3C: return cmpb_ai;
	case 0x84: return testb_mr;
	case 0x90: return in->rex & 1 ? NULL : nop;
	case 0xA8: return testb_ai;
	case 0x80:
		return (in->reg & 7) == 7 ? cmpb_mi : byte_table[in->reg & 7].mi;
	case 0x81: case 0x83: {
		if (!dw)
			return NULL;
		const struct alu_forms *f = &alu_table[wide][in->reg & 7];
		return in->is_mem ? f->Mi : f->ri;
	}
	case 0x85:
		if (!dw)
			return NULL;
		return in->is_mem ? alu_table[wide][ALU_TEST].Mr : alu_table[wide][ALU_TEST].mr;
	case 0x88:
		return in->is_mem ? movb_Mr : NULL;
	case 0x89:
		if (!dw)
			return NULL;
		if (in->is_mem)
			return wide ? mov8_Mr : mov4_Mr;
		return wide ? mov8_mr : mov4_mr;
	case 0x8A:
		return in->is_mem ? movb_rM : NULL;
	case 0x8B:
		if (!dw)
			return NULL;
		if (in->is_mem)
			return wide ? mov8_rM : mov4_rM;
		return wide ? mov8_rm : mov4_rm;
	case 0x8D:
		if (!dw || !in->is_mem)
			return NULL;
		return wide ? lea8 : lea4;
	case 0xB8 ... 0xBF:
		if (!dw)
			return NULL;
		return wide ? mov8_oi : mov4_oi;
	case 0xC1: case 0xD1: case 0xD3: {
		if (!dw || in->is_mem)
			return NULL;
		const struct shift_forms *f = &shift_table[wide][in->reg & 7];
		return op == 0xC1 ? f->i : op == 0xD1 ? f->one : f->cl;
	}
	case 0xC3:
		return m64 && !in->opsize_prefix ? ret64 : NULL;
	case 0xC6:
		return in->is_mem && (in->reg & 7) == 0 ? movb_Mi : NULL;
	case 0xC7:
		if (!dw || (in->reg & 7))
			return NULL;
		if (in->is_mem)
			return wide ? mov8_Mi : mov4_Mi;
		return wide ? mov8_ri : mov4_ri;
	case 0xE8:
		return m64 && !in->opsize_prefix ? call64 : NULL;
	case 0xE9: case 0xEB:
		return m64 ? jmp64 : NULL;
	case 0xF6:
		return (in->reg & 7) == 0 ? testb_mi : NULL;
	case 0xF7:
		if (!dw || (in->reg & 7) != 0)
			return NULL;
		return in->is_mem ? alu_table[wide][ALU_TEST].Mi : alu_table[wide][ALU_TEST].ri;
	case 0xFF:
		if (!dw || in->is_mem || (in->reg & 7) > 1)
			return NULL;
		if ((in->reg & 7) == 0)
			return wide ? inc8 : inc4;
		return wide ? dec8 : dec4;
	}
	return NULL;
}

/* MMX and SSE (maps 2 and 3, and map 1's opcodes that exec_map1 and
 * exec_sys leave to sse.c): straight to sse_exec, not through the two
 * switches */
static bool h_sse(struct cpu *c, struct insn *in)
{
	if (in->is_mem)
		insn_ea(c, in);
	if (!sse_exec(c, in))
		cpu_ud(c);
	return next_store(c, in);
}

/* The scalar-double moves and register copies of compiled floating-point
 * code (busybox awk), without sse_exec's table walk; with CR0.EM or TS
 * set or CR4.OSFXSR clear, sse_exec raises what it raises. */
HOT bool sse_ready(const struct cpu *c)
{
	return !(c->cr0 & (CR0_EM | CR0_TS)) && (c->cr4 & CR4_OSFXSR);
}

static bool movsd_xm(struct cpu *c, struct insn *in) /* F2 0F 10 */
{
	if (!sse_ready(c))
		return h_sse(c, in);
	xmm_t *d = &c->fx.xmm[in->reg];
	if (in->is_mem) {
		d->q[0] = mem_read(c, ea_lin(c, in), 8);
		d->q[1] = 0;
	} else {
		d->q[0] = c->fx.xmm[in->rm].q[0];
	}
	return next(c, in);
}

static bool movsd_mx(struct cpu *c, struct insn *in) /* F2 0F 11 */
{
	if (!sse_ready(c))
		return h_sse(c, in);
	uint64_t v = c->fx.xmm[in->reg].q[0];
	if (in->is_mem) {
		mem_write(c, ea_lin(c, in), v, 8);
		return next_store(c, in);
	}
	c->fx.xmm[in->rm].q[0] = v;
	return next(c, in);
}

static bool movap_xx(struct cpu *c, struct insn *in) /* (66) 0F 28, registers */
{
	if (!sse_ready(c))
		return h_sse(c, in);
	c->fx.xmm[in->reg] = c->fx.xmm[in->rm];
	return next(c, in);
}

static bool xor_xx(struct cpu *c, struct insn *in) /* (66) 0F 57, 66 0F EF, registers */
{
	if (!sse_ready(c))
		return h_sse(c, in);
	xmm_t *d = &c->fx.xmm[in->reg];
	const xmm_t *s = &c->fx.xmm[in->rm];
	d->q[0] ^= s->q[0];
	d->q[1] ^= s->q[1];
	return next(c, in);
}

static bool movq_xr(struct cpu *c, struct insn *in) /* 66 REX.W 0F 6E, registers */
{
	if (!sse_ready(c))
		return h_sse(c, in);
	xmm_t *d = &c->fx.xmm[in->reg];
	d->q[0] = c->r[in->rm];
	d->q[1] = 0;
	return next(c, in);
}

static bool movq_rx(struct cpu *c, struct insn *in) /* 66 REX.W 0F 7E, registers */
{
	if (!sse_ready(c))
		return h_sse(c, in);
	c->r[in->rm] = c->fx.xmm[in->reg].q[0];
	return next(c, in);
}

/* the SSE forms above, by mandatory prefix, or h_sse */
static handler bind_sse(const struct insn *in)
{
	bool p66 = !in->rep && in->opsize_prefix, np = !in->rep && !in->opsize_prefix;
	bool reg = !in->is_mem;
	switch (in->op) {
	case 0x10: case 0x11:
		if (in->rep == 0xF2)
			return in->op == 0x10 ? movsd_xm : movsd_mx;
		break;
	case 0x28:
		if ((np || p66) && reg)
			return movap_xx;
		break;
	case 0x57:
		if ((np || p66) && reg)
			return xor_xx;
		break;
	case 0xEF:
		if (p66 && reg)
			return xor_xx;
		break;
	case 0x6E: case 0x7E:
		if (p66 && reg && (in->rex & 8))
			return in->op == 0x6E ? movq_xr : movq_rx;
		break;
	}
	return h_sse;
}

static handler bind_map1(struct cpu *c, const struct insn *in)
{
	uint8_t op = in->op;
	int size = in->opsize;
	bool wide = size == 8, dw = size == 4 || size == 8;

	switch (op) {
	case 0x0D: case 0x18 ... 0x1F:
		return nop;
	case 0x40 ... 0x4F:
		if (!dw)
			return NULL;
		return wide ? cmov8_table[op & 15] : cmov4_table[op & 15];
	case 0x80 ... 0x8F:
		return c->mode == 64 ? jcc64_table[op & 15] : NULL;
	case 0x90 ... 0x9F:
		return setcc_table[op & 15];
	case 0xAF:
		if (!dw)
			return NULL;
		return wide ? imul8 : imul4;
	case 0xB6: case 0xB7: case 0xBE: case 0xBF:
		if (!dw)
			return NULL;
		if (op == 0xB6)
			return wide ? movzb8 : movzb4;
		if (op == 0xB7)
			return wide ? movzw8 : movzw4;
		if (op == 0xBE)
			return wide ? movsb8 : movsb4;
		return wide ? movsw8 : movsw4;
	case 0x10 ... 0x17: case 0x28 ... 0x2F: case 0x50 ... 0x7F: case 0xC2 ... 0xC6: case 0xD0 ... 0xFE:
		return bind_sse(in);
	}
	return NULL;
}

void insn_bind(struct cpu *c, struct insn *in, bool ends_block)
{
	handler h = NULL;
	/* a lock prefix is #UD or an atomic access: exec.c decides */
	if (!in->lock) {
		if (in->map == 0)
			h = bind_map0(c, in);
		else if (in->map == 1)
			h = bind_map1(c, in);
		else
			h = h_sse;
	}
	if (!h && ends_block)
		h = serializing(in) ? h_system : h_end;
	in->fn = h ? h : h_generic;
}
