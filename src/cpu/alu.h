/* Integer ALU with exact x86 flags. accord runs on x86-64 hosts only, so the
 * arithmetic and its flags (including the "undefined" ones, which then match
 * a real CPU) come from the host's own instruction: the guest's arithmetic
 * flags are loaded with popf, the operation runs, pushf reads them back.
 * The whole tree is built with -mno-red-zone, which makes push/pop inside
 * inline assembly safe. */
#ifndef ACCORD_ALU_H
#define ACCORD_ALU_H

#include "cpu/cpu.h"

enum alu_op { ALU_ADD, ALU_OR, ALU_ADC, ALU_SBB, ALU_AND, ALU_SUB, ALU_XOR, ALU_CMP,
	      ALU_TEST, ALU_INC, ALU_DEC, ALU_NEG, ALU_NOT,
	      ALU_ROL, ALU_ROR, ALU_RCL, ALU_RCR, ALU_SHL, ALU_SHR, ALU_SAL, ALU_SAR };

#define ALU_IN "pushq %[f]\n\tpopfq\n\t"
/* operations whose flags do not depend on the incoming ones skip the popf,
 * the expensive half of the exchange */
#define ALU_NOIN ""
/* adc, sbb, inc and dec read only CF of the incoming flags: bt loads it
 * for a fraction of popf's cost */
#define ALU_CFIN "bt $0, %[f]\n\t"
#define ALU_OUT "\n\tpushfq\n\tpopq %[f]"
/* shifts and rotates need all six incoming flags (a zero count keeps them,
 * and the host may keep the undefined ones), but not the rest of popf:
 * sahf loads SF ZF AF PF CF from AH, and an add that overflows or not sets
 * OF first; several times cheaper than popf. Needs RAX and a scratch t. */
#define ALU_SAHF_IN                                                                          \
	"movl %k[f], %k[t]\n\t"                                                              \
	"shrl $11, %k[t]\n\t"                                                                \
	"andl $1, %k[t]\n\t"                                                                 \
	"movl %k[f], %%eax\n\t"                                                              \
	"shll $8, %%eax\n\t"                                                                 \
	"addb $0x7f, %b[t]\n\t"                                                              \
	"sahf\n\t"

#define ALU_BIN_IN(IN, INSN, a, b, f, size)                                                       \
	switch (size) {                                                                     \
	case 1: { uint8_t x = a, y = b;                                                     \
		asm(IN INSN " %[y],%[x]" ALU_OUT : [x] "+q"(x), [f] "+r"(f) : [y] "q"(y) : "cc"); \
		a = x; break; }                                                             \
	case 2: { uint16_t x = a, y = b;                                                    \
		asm(IN INSN " %[y],%[x]" ALU_OUT : [x] "+r"(x), [f] "+r"(f) : [y] "r"(y) : "cc"); \
		a = x; break; }                                                             \
	case 4: { uint32_t x = a, y = b;                                                    \
		asm(IN INSN " %[y],%[x]" ALU_OUT : [x] "+r"(x), [f] "+r"(f) : [y] "r"(y) : "cc"); \
		a = x; break; }                                                             \
	default: { uint64_t x = a, y = b;                                                   \
		asm(IN INSN " %[y],%[x]" ALU_OUT : [x] "+r"(x), [f] "+r"(f) : [y] "r"(y) : "cc"); \
		a = x; break; }                                                             \
	}

#define ALU_BIN(INSN, a, b, f, size) ALU_BIN_IN(ALU_IN, INSN, a, b, f, size)
#define ALU_BIN_FRESH(INSN, a, b, f, size) ALU_BIN_IN(ALU_NOIN, INSN, a, b, f, size)
#define ALU_BIN_CF(INSN, a, b, f, size) ALU_BIN_IN(ALU_CFIN, INSN, a, b, f, size)

#define ALU_UN_IN(IN, INSN, a, f, size)                                                           \
	switch (size) {                                                                     \
	case 1: { uint8_t x = a; asm(IN INSN " %[x]" ALU_OUT : [x] "+q"(x), [f] "+r"(f) : : "cc"); a = x; break; } \
	case 2: { uint16_t x = a; asm(IN INSN " %[x]" ALU_OUT : [x] "+r"(x), [f] "+r"(f) : : "cc"); a = x; break; } \
	case 4: { uint32_t x = a; asm(IN INSN " %[x]" ALU_OUT : [x] "+r"(x), [f] "+r"(f) : : "cc"); a = x; break; } \
	default: { uint64_t x = a; asm(IN INSN " %[x]" ALU_OUT : [x] "+r"(x), [f] "+r"(f) : : "cc"); a = x; break; } \
	}

#define ALU_UN_CF(INSN, a, f, size) ALU_UN_IN(ALU_CFIN, INSN, a, f, size)
#define ALU_UN_FRESH(INSN, a, f, size) ALU_UN_IN(ALU_NOIN, INSN, a, f, size)

#define ALU_SHIFT(INSN, a, n, f, size)                                                     \
	switch (size) {                                                                     \
	case 1: { uint8_t x = a; uint32_t t; asm(ALU_SAHF_IN INSN " %%cl,%[x]" ALU_OUT : [x] "+q"(x), [f] "+r"(f), [t] "=&r"(t) : "c"(n) : "cc", "rax"); a = x; break; } \
	case 2: { uint16_t x = a; uint32_t t; asm(ALU_SAHF_IN INSN " %%cl,%[x]" ALU_OUT : [x] "+r"(x), [f] "+r"(f), [t] "=&r"(t) : "c"(n) : "cc", "rax"); a = x; break; } \
	case 4: { uint32_t x = a; uint32_t t; asm(ALU_SAHF_IN INSN " %%cl,%[x]" ALU_OUT : [x] "+r"(x), [f] "+r"(f), [t] "=&r"(t) : "c"(n) : "cc", "rax"); a = x; break; } \
	default: { uint64_t x = a; uint32_t t; asm(ALU_SAHF_IN INSN " %%cl,%[x]" ALU_OUT : [x] "+r"(x), [f] "+r"(f), [t] "=&r"(t) : "c"(n) : "cc", "rax"); a = x; break; } \
	}

/* result of op on a (and b, or the shift count in b); updates c->rflags */
static inline __attribute__((always_inline)) uint64_t alu(struct cpu *c, int op, int size, uint64_t a, uint64_t b)
{
	uint64_t f = c->rflags & F_ARITH;
	uint8_t n = (uint8_t)b;
	switch (op) {
	case ALU_ADD: ALU_BIN_FRESH("add", a, b, f, size); break;
	case ALU_OR: ALU_BIN_FRESH("or", a, b, f, size); break;
	case ALU_ADC: ALU_BIN_CF("adc", a, b, f, size); break;
	case ALU_SBB: ALU_BIN_CF("sbb", a, b, f, size); break;
	case ALU_AND: case ALU_TEST: ALU_BIN_FRESH("and", a, b, f, size); break;
	case ALU_SUB: case ALU_CMP: ALU_BIN_FRESH("sub", a, b, f, size); break;
	case ALU_XOR: ALU_BIN_FRESH("xor", a, b, f, size); break;
	case ALU_INC: ALU_UN_CF("inc", a, f, size); break;
	case ALU_DEC: ALU_UN_CF("dec", a, f, size); break;
	case ALU_NEG: ALU_UN_FRESH("neg", a, f, size); break;
	case ALU_NOT: return ~a;
	case ALU_ROL: ALU_SHIFT("rol", a, n, f, size); break;
	case ALU_ROR: ALU_SHIFT("ror", a, n, f, size); break;
	case ALU_RCL: ALU_SHIFT("rcl", a, n, f, size); break;
	case ALU_RCR: ALU_SHIFT("rcr", a, n, f, size); break;
	case ALU_SHL: case ALU_SAL: ALU_SHIFT("shl", a, n, f, size); break;
	case ALU_SHR: ALU_SHIFT("shr", a, n, f, size); break;
	case ALU_SAR: ALU_SHIFT("sar", a, n, f, size); break;
	}
	c->rflags = (c->rflags & ~(uint64_t)F_ARITH) | (f & F_ARITH);
	return a;
}

/* shld / shrd: a is the destination, b the source bits */
static inline uint64_t alu_shd(struct cpu *c, bool right, int size, uint64_t a, uint64_t b, uint8_t n)
{
	uint64_t f = c->rflags & F_ARITH;
#define SHD(T, INSN) { T x = a, y = b; asm(ALU_IN INSN " %%cl,%[y],%[x]" ALU_OUT : [x] "+r"(x), [f] "+r"(f) : [y] "r"(y), "c"(n) : "cc"); a = x; }
	if (right) {
		switch (size) {
		case 2: SHD(uint16_t, "shrd"); break;
		case 4: SHD(uint32_t, "shrd"); break;
		default: SHD(uint64_t, "shrd"); break;
		}
	} else {
		switch (size) {
		case 2: SHD(uint16_t, "shld"); break;
		case 4: SHD(uint32_t, "shld"); break;
		default: SHD(uint64_t, "shld"); break;
		}
	}
#undef SHD
	c->rflags = (c->rflags & ~(uint64_t)F_ARITH) | (f & F_ARITH);
	return a;
}

/* bsf / bsr: dest keeps its value when the source is zero, as hardware does */
static inline uint64_t alu_bitscan(struct cpu *c, bool reverse, int size, uint64_t dest, uint64_t src)
{
	uint64_t f = c->rflags & F_ARITH;
#define BS(T, INSN) { T x = dest, y = src; asm(ALU_IN INSN " %[y],%[x]" ALU_OUT : [x] "+r"(x), [f] "+r"(f) : [y] "r"(y) : "cc"); dest = x; }
	if (reverse) {
		switch (size) {
		case 2: BS(uint16_t, "bsr"); break;
		case 4: BS(uint32_t, "bsr"); break;
		default: BS(uint64_t, "bsr"); break;
		}
	} else {
		switch (size) {
		case 2: BS(uint16_t, "bsf"); break;
		case 4: BS(uint32_t, "bsf"); break;
		default: BS(uint64_t, "bsf"); break;
		}
	}
	c->rflags = (c->rflags & ~(uint64_t)F_ARITH) | (f & F_ARITH);
	return dest;
}

static inline uint64_t alu_popcnt(struct cpu *c, int size, uint64_t src)
{
	uint64_t f = c->rflags & F_ARITH, r;
	if (size == 2) {
		uint16_t x, y = src;
		asm(ALU_IN "popcnt %[y],%[x]" ALU_OUT : [x] "=r"(x), [f] "+r"(f) : [y] "r"(y) : "cc");
		r = x;
	} else {
		uint64_t x, y = size == 4 ? (uint32_t)src : src;
		asm(ALU_IN "popcnt %[y],%[x]" ALU_OUT : [x] "=r"(x), [f] "+r"(f) : [y] "r"(y) : "cc");
		r = x;
	}
	c->rflags = (c->rflags & ~(uint64_t)F_ARITH) | (f & F_ARITH);
	return r;
}

#endif
