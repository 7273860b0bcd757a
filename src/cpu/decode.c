/* Instruction decoder: prefixes, REX, opcode maps, ModRM/SIB, displacement,
 * immediates, RIP-relative addressing. The result is a struct insn that the
 * execution families read; the decoder itself knows no semantics beyond
 * operand shapes. */
#include <string.h>

#include "cpu/cpu.h"

/* one-byte map: which opcodes carry a ModRM byte */
static const uint8_t modrm_map0[256] = {
	/*       0 1 2 3 4 5 6 7 8 9 A B C D E F */
	/* 0 */ 1,1,1,1,0,0,0,0,1,1,1,1,0,0,0,0,
	/* 1 */ 1,1,1,1,0,0,0,0,1,1,1,1,0,0,0,0,
	/* 2 */ 1,1,1,1,0,0,0,0,1,1,1,1,0,0,0,0,
	/* 3 */ 1,1,1,1,0,0,0,0,1,1,1,1,0,0,0,0,
	/* 4 */ 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
	/* 5 */ 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
	/* 6 */ 0,0,1,1,0,0,0,0,0,1,0,1,0,0,0,0,
	/* 7 */ 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
	/* 8 */ 1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
	/* 9 */ 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
	/* A */ 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
	/* B */ 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
	/* C */ 1,1,0,0,1,1,1,1,0,0,0,0,0,0,0,0,
	/* D */ 1,1,1,1,0,0,0,0,1,1,1,1,1,1,1,1,
	/* E */ 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
	/* F */ 0,0,0,0,0,0,1,1,0,0,0,0,0,0,1,1,
};

/* 0F map: which opcodes carry a ModRM byte */
static const uint8_t modrm_map1[256] = {
	/*       0 1 2 3 4 5 6 7 8 9 A B C D E F */
	/* 0 */ 1,1,1,1,0,0,0,0,0,0,0,0,0,1,0,1,
	/* 1 */ 1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
	/* 2 */ 1,1,1,1,0,0,0,0,1,1,1,1,1,1,1,1,
	/* 3 */ 0,0,0,0,0,0,0,0,1,0,1,0,0,0,0,0,
	/* 4 */ 1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
	/* 5 */ 1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
	/* 6 */ 1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
	/* 7 */ 1,1,1,1,1,1,1,0,1,1,1,1,1,1,1,1,
	/* 8 */ 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
	/* 9 */ 1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
	/* A */ 0,0,0,1,1,1,0,0,0,0,0,1,1,1,1,1,
	/* B */ 1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
	/* C */ 1,1,1,1,1,1,1,1,0,0,0,0,0,0,0,0,
	/* D */ 1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
	/* E */ 1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
	/* F */ 1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
};

struct fetch {
	struct cpu *c;
	struct insn *in;
	uint64_t lin; /* linear address of the first byte */
	const uint8_t *p; /* host pointer of the current run of bytes */
	int avail;        /* bytes readable through p from index 'base' */
	int base;
	int n;            /* bytes consumed */
	uint8_t one;
};

/* Make byte index n of the instruction available. Faults only when the
 * instruction really reaches the next page. */
static void fetch_refill(struct fetch *f)
{
	struct cpu *c = f->c;
	uint64_t lin = f->lin + f->n;
	if (f->n >= 15)
		cpu_fault(c, EXC_GP, 0);
	if (c->mode == 64 && (int64_t)lin >> 47 != 0 && (int64_t)lin >> 47 != -1)
		cpu_fault(c, EXC_GP, 0);
	int inpage = 0x1000 - (int)(lin & 0xfff);
	const uint8_t *hp = mem_fetch_ptr(c, lin);
	f->base = f->n;
	if (hp) {
		f->p = hp;
		/* never past the 15th byte: fetching a 16th is #GP(0) */
		f->avail = inpage < 15 - f->n ? inpage : 15 - f->n;
	} else {
		/* code in MMIO space: a byte at a time */
		f->one = mem_fetch_mmio(c, lin);
		f->p = &f->one;
		f->avail = 1;
	}
}

static inline uint8_t fetch_u8(struct fetch *f)
{
	if (f->n - f->base >= f->avail)
		fetch_refill(f);
	uint8_t b = f->p[f->n - f->base];
	if (f->n < 15)
		f->in->bytes[f->n] = b;
	f->n++;
	return b;
}

static uint64_t fetch_imm(struct fetch *f, int size)
{
	uint64_t v = 0;
	for (int i = 0; i < size; i++)
		v |= (uint64_t)fetch_u8(f) << (8 * i);
	return v;
}

static int64_t sext(uint64_t v, int size)
{
	switch (size) {
	case 1: return (int8_t)v;
	case 2: return (int16_t)v;
	case 4: return (int32_t)v;
	default: return (int64_t)v;
	}
}

/* immediate size of a one-byte-map opcode; -1 means "operand size, at most 4" */
static int imm_size_map0(struct insn *in)
{
	uint8_t op = in->op;
	if (op < 0x40 && (op & 7) == 4)
		return 1;
	if (op < 0x40 && (op & 7) == 5)
		return in->opsize == 2 ? 2 : 4;
	switch (op) {
	case 0x68: case 0x69: case 0x81: case 0xA9: case 0xC7: case 0xE8: case 0xE9:
		return in->opsize == 2 ? 2 : 4;
	case 0x6A: case 0x6B: case 0x70 ... 0x7F: case 0x80: case 0x82: case 0x83:
	case 0xA8: case 0xB0 ... 0xB7: case 0xC0: case 0xC1: case 0xC6: case 0xCD:
	case 0xD4: case 0xD5: case 0xE0 ... 0xE7: case 0xEB:
		return 1;
	case 0xB8 ... 0xBF:
		return in->opsize;
	case 0xC2: case 0xCA:
		return 2;
	case 0xC8:
		return 3; /* iw, ib */
	/* in->reg carries REX.R, which a group's sub-opcode ignores */
	case 0xF6:
		return (in->reg & 7) <= 1 ? 1 : 0;
	case 0xF7:
		return (in->reg & 7) <= 1 ? (in->opsize == 2 ? 2 : 4) : 0;
	case 0xA0 ... 0xA3:
		return in->addrsize; /* moffs */
	case 0x9A: case 0xEA:
		return in->opsize == 2 ? 4 : 6; /* ptr16:16 / ptr16:32 */
	}
	return 0;
}

static int imm_size_map1(struct insn *in)
{
	switch (in->op) {
	case 0x80 ... 0x8F:
		return in->opsize == 2 ? 2 : 4;
	case 0x70 ... 0x73: case 0xA4: case 0xAC: case 0xBA: case 0xC2: case 0xC4:
	case 0xC5: case 0xC6:
		return 1;
	}
	return 0;
}

/* ModRM, SIB and displacement: the addressing form only. The address
 * itself depends on registers and is computed per execution (insn_ea in cpu.h),
 * so a decoded instruction can be reused. */
static void decode_modrm(struct fetch *f, struct insn *in)
{
	uint8_t m = fetch_u8(f);
	uint8_t rex = in->rex;
	in->has_modrm = 1;
	in->mod = m >> 6;
	in->reg = ((m >> 3) & 7) | (rex & 4 ? 8 : 0);
	in->rm = (m & 7) | (rex & 1 ? 8 : 0);
	if (in->mod == 3) {
		in->is_mem = 0;
		return;
	}
	in->is_mem = 1;
	in->base = -1;
	in->index = -1;
	int rm = m & 7;
	if (in->addrsize == 2) {
		static const int8_t b16[8] = { R_RBX, R_RBX, R_RBP, R_RBP, R_RSI, R_RDI, R_RBP, R_RBX };
		static const int8_t i16[8] = { R_RSI, R_RDI, R_RSI, R_RDI, -1, -1, -1, -1 };
		if (in->mod == 0 && rm == 6) {
			in->disp = fetch_imm(f, 2);
			return;
		}
		in->base = b16[rm];
		in->index = i16[rm];
		if (in->mod == 1)
			in->disp = sext(fetch_imm(f, 1), 1);
		else if (in->mod == 2)
			in->disp = fetch_imm(f, 2);
		if ((rm == 2 || rm == 3 || rm == 6) && in->seg == S_NONE)
			in->seg = S_SS;
		return;
	}
	if (rm == 4) {
		uint8_t sib = fetch_u8(f);
		int idx = ((sib >> 3) & 7) | (rex & 2 ? 8 : 0);
		int base = (sib & 7) | (rex & 1 ? 8 : 0);
		in->scale = sib >> 6;
		if (idx != R_RSP)
			in->index = idx;
		if ((base & 7) == 5 && in->mod == 0) {
			in->disp = sext(fetch_imm(f, 4), 4);
		} else {
			in->base = base;
			if ((base == R_RSP || base == R_RBP) && in->seg == S_NONE)
				in->seg = S_SS;
		}
	} else if (rm == 5 && in->mod == 0) {
		in->disp = sext(fetch_imm(f, 4), 4);
		/* RIP-relative: relative to the end of the instruction */
		in->riprel = f->c->mode == 64;
	} else {
		int base = rm | (rex & 1 ? 8 : 0);
		in->base = base;
		if (base == R_RBP && in->seg == S_NONE)
			in->seg = S_SS;
	}
	if (in->mod == 1)
		in->disp += sext(fetch_imm(f, 1), 1);
	else if (in->mod == 2)
		in->disp += sext(fetch_imm(f, 4), 4);
}


void insn_decode_static(struct cpu *c, struct insn *in)
{
	struct fetch f = { .c = c, .in = in, .lin = seg_lin(c, S_CS, c->rip) };
	memset(in, 0, sizeof(*in));
	in->seg = S_NONE;
	int def = c->mode == 16 ? 2 : 4;
	int opsize = def, addrsize = c->mode == 64 ? 8 : def;
	uint8_t b;

	for (;;) {
		b = fetch_u8(&f);
		if (c->mode == 64 && (b & 0xF0) == 0x40) {
			in->rex = b;
			continue;
		}
		/* a REX prefix counts only right before the opcode */
		uint8_t rex = in->rex;
		in->rex = 0;
		switch (b) {
		case 0x66: in->opsize_prefix = 1; continue;
		case 0x67: addrsize = c->mode == 64 ? 4 : (def == 4 ? 2 : 4); continue;
		case 0xF0: in->lock = 1; continue;
		case 0xF2: case 0xF3: in->rep = b; continue;
		/* 64-bit mode ignores these: the default segment (SS for an
		 * rsp or rbp base) decides between #SS and #GP */
		case 0x26: if (c->mode != 64) in->seg = S_ES; continue;
		case 0x2E: if (c->mode != 64) in->seg = S_CS; continue;
		case 0x36: if (c->mode != 64) in->seg = S_SS; continue;
		case 0x3E: if (c->mode != 64) in->seg = S_DS; continue;
		case 0x64: in->seg = S_FS; continue;
		case 0x65: in->seg = S_GS; continue;
		}
		in->rex = rex;
		break;
	}
	if (in->opsize_prefix)
		opsize = def == 4 ? 2 : 4;
	if (in->rex & 8)
		opsize = 8;
	in->opsize = opsize;
	in->addrsize = addrsize;
	if (b == 0x0F) {
		b = fetch_u8(&f);
		if (b == 0x38) {
			in->map = 2;
			in->op = fetch_u8(&f);
			decode_modrm(&f, in);
		} else if (b == 0x3A) {
			in->map = 3;
			in->op = fetch_u8(&f);
			decode_modrm(&f, in);
			in->imm_size = 1;
		} else {
			in->map = 1;
			in->op = b;
			if (modrm_map1[b])
				decode_modrm(&f, in);
			in->imm_size = imm_size_map1(in);
		}
	} else {
		in->map = 0;
		in->op = b;
		if ((b == 0xC4 || b == 0xC5) && c->mode == 64) {
			/* VEX: no AVX is advertised, so every VEX form is #UD */
			in->len = f.n;
			cpu_ud(c);
		}
		if (b == 0x62 && c->mode == 64)
			cpu_ud(c); /* EVEX */
		if (modrm_map0[b])
			decode_modrm(&f, in);
		in->imm_size = imm_size_map0(in);
	}
	if (in->imm_size) {
		if (in->map == 0 && in->op == 0xC8) {
			in->imm = fetch_imm(&f, 2);
			in->imm2 = fetch_u8(&f);
		} else if (in->map == 0 && (in->op == 0x9A || in->op == 0xEA)) {
			in->imm = fetch_imm(&f, in->imm_size - 2);
			in->imm2 = fetch_imm(&f, 2);
		} else if (in->map == 0 && in->op >= 0xA0 && in->op <= 0xA3) {
			in->imm = fetch_imm(&f, in->imm_size);
		} else if (in->map == 0 && in->op >= 0xB8 && in->op <= 0xBF) {
			in->imm = fetch_imm(&f, in->imm_size);
		} else if (in->map == 0 && (in->op == 0xC2 || in->op == 0xCA)) {
			in->imm = fetch_imm(&f, 2);
		} else {
			in->imm = (uint64_t)sext(fetch_imm(&f, in->imm_size), in->imm_size);
		}
	}
	in->len = f.n;
	if (in->seg == S_NONE)
		in->seg = S_DS;
}

struct insn *insn_decode(struct cpu *c, struct insn *scratch)
{
	insn_decode_static(c, scratch);
	if (scratch->is_mem)
		insn_ea(c, scratch);
	return scratch;
}
