/* Execution of the general-purpose instructions: the one-byte map and the
 * integer part of the 0F map. System instructions are in exec_sys.c, vector
 * and x87 instructions in sse.c and x87.c. */
#include <string.h>

#include "cpu/alu.h"
#include "cpu/cpu.h"
#include "cpu/exec.h"

static inline uint64_t sz_mask(int size)
{
	return size == 8 ? ~0ull : (1ull << (size * 8)) - 1;
}

static inline int64_t sx(uint64_t v, int size)
{
	switch (size) {
	case 1: return (int8_t)v;
	case 2: return (int16_t)v;
	case 4: return (int32_t)v;
	default: return (int64_t)v;
	}
}

bool cond_true(struct cpu *c, int cc)
{
	uint64_t f = c->rflags;
	bool r;
	switch (cc >> 1) {
	case 0: r = f & F_OF; break;
	case 1: r = f & F_CF; break;
	case 2: r = f & F_ZF; break;
	case 3: r = (f & F_CF) || (f & F_ZF); break;
	case 4: r = f & F_SF; break;
	case 5: r = f & F_PF; break;
	case 6: r = !(f & F_SF) != !(f & F_OF); break;
	default: r = (f & F_ZF) || (!(f & F_SF) != !(f & F_OF)); break;
	}
	return (cc & 1) ? !r : r;
}

/* stack: the address size of stack operations is 64 in long mode, else the
 * B bit of SS */
static inline int stack_width(struct cpu *c)
{
	if (c->mode == 64)
		return 8;
	return (c->seg[S_SS].attr & SEG_ATTR_DB) ? 4 : 2;
}

static inline uint64_t rsp_mask(struct cpu *c, uint64_t v)
{
	int w = stack_width(c);
	return w == 8 ? v : (w == 4 ? (uint32_t)v : (uint16_t)v);
}

void push(struct cpu *c, uint64_t val, int size)
{
	uint64_t sp = c->r[R_RSP] - size;
	int w = stack_width(c);
	mem_write(c, ss_canonical(c, seg_lin(c, S_SS, rsp_mask(c, sp))), val, size);
	if (w == 8)
		c->r[R_RSP] = sp;
	else if (w == 4)
		c->r[R_RSP] = (uint32_t)sp;
	else
		c->r[R_RSP] = (c->r[R_RSP] & ~0xffffull) | (sp & 0xffff);
}

uint64_t pop(struct cpu *c, int size)
{
	uint64_t v = mem_read(c, ss_canonical(c, seg_lin(c, S_SS, rsp_mask(c, c->r[R_RSP]))), size);
	uint64_t sp = c->r[R_RSP] + size;
	int w = stack_width(c);
	if (w == 8)
		c->r[R_RSP] = sp;
	else if (w == 4)
		c->r[R_RSP] = (uint32_t)sp;
	else
		c->r[R_RSP] = (c->r[R_RSP] & ~0xffffull) | (sp & 0xffff);
	return v;
}

/* read without popping, for instructions that may fault after the read */
static uint64_t peek(struct cpu *c, int off, int size)
{
	return mem_read(c, ss_canonical(c, seg_lin(c, S_SS, rsp_mask(c, c->r[R_RSP] + off))), size);
}

static inline int stack_opsize(struct cpu *c, struct insn *in)
{
	/* near branches, push and pop default to 64 bits in long mode */
	if (c->mode == 64)
		return in->opsize_prefix && !(in->rex & 8) ? 2 : 8;
	return in->opsize;
}

void set_rip(struct cpu *c, uint64_t rip, int opsize)
{
	if (c->mode == 64 && opsize != 2) {
		if ((int64_t)(rip << 16) >> 16 != (int64_t)rip)
			cpu_fault(c, EXC_GP, 0);
		c->rip = rip;
	} else {
		c->rip = opsize == 2 ? (uint16_t)rip : (uint32_t)rip;
	}
}

/* RFLAGS writes from popf / iret: what may change depends on CPL and IOPL */
void write_rflags(struct cpu *c, uint64_t v, int size, bool iret)
{
	uint64_t mask = F_ARITH | F_TF | F_DF | F_NT | F_AC | F_ID;
	if (iret)
		mask |= F_RF;
	if (c->cpl == 0)
		mask |= F_IOPL | (iret ? F_VIF | F_VIP : 0);
	if (c->cpl <= (int)((c->rflags >> 12) & 3))
		mask |= F_IF;
	if (size == 2)
		mask &= 0xffff;
	uint64_t old = c->rflags;
	c->rflags = (old & ~mask) | (v & mask) | 2;
	if (!iret)
		c->rflags &= ~(uint64_t)F_RF; /* popf clears RF */
	if (!(old & F_IF) && (c->rflags & F_IF))
		c->intr_poke = 1;
}

/* ---- locked and plain read-modify-write on the r/m operand ---- */

static bool cas_sized(void *p, uint64_t *old, uint64_t nv, int size)
{
	switch (size) {
	case 1: { uint8_t o = *old; bool ok = __atomic_compare_exchange_n((uint8_t *)p, &o, (uint8_t)nv, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); *old = o; return ok; }
	case 2: { uint16_t o = *old; bool ok = __atomic_compare_exchange_n((uint16_t *)p, &o, (uint16_t)nv, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); *old = o; return ok; }
	case 4: { uint32_t o = *old; bool ok = __atomic_compare_exchange_n((uint32_t *)p, &o, (uint32_t)nv, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); *old = o; return ok; }
	default: return __atomic_compare_exchange_n((uint64_t *)p, old, nv, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
	}
}

static uint64_t load_sized(const void *p, int size)
{
	switch (size) {
	case 1: return __atomic_load_n((const uint8_t *)p, __ATOMIC_SEQ_CST);
	case 2: return __atomic_load_n((const uint16_t *)p, __ATOMIC_SEQ_CST);
	case 4: return __atomic_load_n((const uint32_t *)p, __ATOMIC_SEQ_CST);
	default: return __atomic_load_n((const uint64_t *)p, __ATOMIC_SEQ_CST);
	}
}

/* host pointer for an atomic access, when the operand is RAM and within one
 * cache line (a split lock falls back to plain accesses) */
static void *atomic_ptr(struct cpu *c, uint64_t lin, int size)
{
	if ((lin & 63) + size > 64)
		return NULL;
	return mem_ptr(c, lin, size, true);
}

/* Fault now as a write to [lin, lin + size) would. Read-modify-write
 * instructions check for write access before they read, and nothing of
 * theirs (flags included) may change when the write faults. */
static void probe_write(struct cpu *c, uint64_t lin, int size)
{
	uint64_t last = (lin + size - 1) & ~0xfffull;
	mem_ptr(c, lin, 1, true);
	if (last != (lin & ~0xfffull))
		mem_ptr(c, last, 1, true);
}

typedef uint64_t (*rmw_fn)(struct cpu *c, uint64_t old, uint64_t arg, int size, int op);

static uint64_t rmw_alu(struct cpu *c, uint64_t old, uint64_t arg, int size, int op)
{
	return alu(c, op, size, old, arg);
}

/* apply fn to the r/m operand; atomically when locked (or xchg-like) */
static uint64_t rmw(struct cpu *c, struct insn *in, int size, rmw_fn fn, uint64_t arg, int op,
		    bool atomic)
{
	if (!in->is_mem) {
		uint64_t old = reg_read(c, in->rm, size, in->rex);
		reg_write(c, in->rm, fn(c, old, arg, size, op), size, in->rex);
		return old;
	}
	uint64_t lin = insn_ea_lin(c, in);
	void *p = atomic ? atomic_ptr(c, lin, size) : NULL;
	if (p) {
		uint64_t fl = c->rflags, old = load_sized(p, size), nv;
		for (;;) {
			c->rflags = fl;
			nv = fn(c, old, arg, size, op);
			if (cas_sized(p, &old, nv, size))
				return old;
		}
	}
	probe_write(c, lin, size);
	uint64_t old = mem_read(c, lin, size);
	mem_write(c, lin, fn(c, old, arg, size, op), size);
	return old;
}

static void alu_rm(struct cpu *c, struct insn *in, int op, int size, uint64_t src)
{
	if (op == ALU_CMP || op == ALU_TEST) {
		alu(c, op, size, rm_read(c, in, size), src);
		return;
	}
	if (in->lock && !in->is_mem)
		cpu_ud(c);
	rmw(c, in, size, rmw_alu, src, op, in->lock);
}

/* ---- bit tests ---- */

static uint64_t rmw_bit(struct cpu *c, uint64_t old, uint64_t bit, int size, int op)
{
	uint64_t m = 1ull << bit;
	if (old & m)
		c->rflags |= F_CF;
	else
		c->rflags &= ~(uint64_t)F_CF;
	switch (op) {
	case 5: return old | m;  /* bts */
	case 6: return old & ~m; /* btr */
	case 7: return old ^ m;  /* btc */
	default: return old;     /* bt */
	}
}

/* op: 4 bt, 5 bts, 6 btr, 7 btc; offset from a register addresses memory
 * beyond the operand (signed), from an immediate it wraps */
static void bit_op(struct cpu *c, struct insn *in, int op, uint64_t offset, bool from_reg)
{
	int size = in->opsize, bits = size * 8;
	if (in->is_mem && from_reg) {
		int64_t off = sx(offset, size);
		int64_t byte = (off >> (size == 8 ? 6 : (size == 4 ? 5 : 4))) * size;
		struct insn tmp = *in;
		tmp.ea = in->ea + byte;
		if (in->addrsize == 4)
			tmp.ea = (uint32_t)tmp.ea;
		else if (in->addrsize == 2)
			tmp.ea = (uint16_t)tmp.ea;
		offset = (uint64_t)off & (bits - 1);
		if (op == 4)
			rmw_bit(c, rm_read(c, &tmp, size), offset, size, op);
		else
			rmw(c, &tmp, size, rmw_bit, offset, op, in->lock);
		return;
	}
	offset &= bits - 1;
	if (op == 4)
		rmw_bit(c, rm_read(c, in, size), offset, size, op);
	else
		rmw(c, in, size, rmw_bit, offset, op, in->lock);
}

/* ---- multiply and divide, with the host's exact flags ---- */

static void mul_op(struct cpu *c, int size, uint64_t src, bool sign)
{
	uint64_t f = c->rflags & F_ARITH;
	switch (size) {
	case 1: {
		uint16_t ax = (uint8_t)c->r[R_RAX];
		uint8_t s = src;
		if (sign)
			asm(ALU_NOIN "imulb %[s]" ALU_OUT : "+a"(ax), [f] "+r"(f) : [s] "q"(s) : "cc");
		else
			asm(ALU_NOIN "mulb %[s]" ALU_OUT : "+a"(ax), [f] "+r"(f) : [s] "q"(s) : "cc");
		reg_write(c, R_RAX, ax, 2, false);
		break;
	}
	case 2: {
		uint16_t a = c->r[R_RAX], d, s = src;
		if (sign)
			asm(ALU_NOIN "imulw %[s]" ALU_OUT : "+a"(a), "=d"(d), [f] "+r"(f) : [s] "r"(s) : "cc");
		else
			asm(ALU_NOIN "mulw %[s]" ALU_OUT : "+a"(a), "=d"(d), [f] "+r"(f) : [s] "r"(s) : "cc");
		reg_write(c, R_RAX, a, 2, false);
		reg_write(c, R_RDX, d, 2, false);
		break;
	}
	case 4: {
		uint32_t a = c->r[R_RAX], d, s = src;
		if (sign)
			asm(ALU_NOIN "imull %[s]" ALU_OUT : "+a"(a), "=d"(d), [f] "+r"(f) : [s] "r"(s) : "cc");
		else
			asm(ALU_NOIN "mull %[s]" ALU_OUT : "+a"(a), "=d"(d), [f] "+r"(f) : [s] "r"(s) : "cc");
		c->r[R_RAX] = a;
		c->r[R_RDX] = d;
		break;
	}
	default: {
		uint64_t a = c->r[R_RAX], d, s = src;
		if (sign)
			asm(ALU_NOIN "imulq %[s]" ALU_OUT : "+a"(a), "=d"(d), [f] "+r"(f) : [s] "r"(s) : "cc");
		else
			asm(ALU_NOIN "mulq %[s]" ALU_OUT : "+a"(a), "=d"(d), [f] "+r"(f) : [s] "r"(s) : "cc");
		c->r[R_RAX] = a;
		c->r[R_RDX] = d;
		break;
	}
	}
	/* CF and OF are defined; SF, ZF, AF and PF are left as they were
	 * (the SDM leaves them undefined), which spares loading the guest's
	 * flags into the host */
	c->rflags = (c->rflags & ~(uint64_t)(F_CF | F_OF)) | (f & (F_CF | F_OF));
}

static uint64_t imul2(struct cpu *c, int size, uint64_t a, uint64_t b)
{
	uint64_t f = c->rflags & F_ARITH;
	switch (size) {
	case 2: { uint16_t x = a, y = b; asm(ALU_NOIN "imulw %[y],%[x]" ALU_OUT : [x] "+r"(x), [f] "+r"(f) : [y] "r"(y) : "cc"); a = x; break; }
	case 4: { uint32_t x = a, y = b; asm(ALU_NOIN "imull %[y],%[x]" ALU_OUT : [x] "+r"(x), [f] "+r"(f) : [y] "r"(y) : "cc"); a = x; break; }
	default: { uint64_t x = a, y = b; asm(ALU_NOIN "imulq %[y],%[x]" ALU_OUT : [x] "+r"(x), [f] "+r"(f) : [y] "r"(y) : "cc"); a = x; break; }
	}
	/* CF and OF are defined; SF, ZF, AF and PF are left as they were
	 * (the SDM leaves them undefined), which spares loading the guest's
	 * flags into the host */
	c->rflags = (c->rflags & ~(uint64_t)(F_CF | F_OF)) | (f & (F_CF | F_OF));
	return a;
}

/* #DE is decided here, before the host divides, so the host never traps */
static void div_op(struct cpu *c, int size, uint64_t src, bool sign)
{
	uint64_t f = c->rflags & F_ARITH;
	int bits = size * 8;
	uint64_t m = sz_mask(size);
	src &= m;
	if (src == 0)
		cpu_fault(c, EXC_DE, 0);
	uint64_t lo = size == 1 ? (uint8_t)c->r[R_RAX] : c->r[R_RAX] & m;
	uint64_t hi = size == 1 ? (uint8_t)(c->r[R_RAX] >> 8) : c->r[R_RDX] & m;
	if (!sign) {
		if (hi >= src)
			cpu_fault(c, EXC_DE, 0);
	} else {
		/* arithmetic without signed overflow: the dividend can be
		 * -2^127, whose negation does not exist */
		__int128 n = (__int128)(int64_t)sx(hi, size) * ((__int128)1 << bits) + (__int128)lo;
		__int128 d = sx(src, size);
		__int128 lim = (__int128)1 << (bits - 1);
		if (d == -1) {
			if (n > lim || n <= -lim)
				cpu_fault(c, EXC_DE, 0);
		} else {
			__int128 q = n / d;
			if (q >= lim || q < -lim)
				cpu_fault(c, EXC_DE, 0);
		}
	}
	switch (size) {
	case 1: {
		uint16_t ax = (uint16_t)c->r[R_RAX];
		uint8_t s = src;
		if (sign)
			asm(ALU_IN "idivb %[s]" ALU_OUT : "+a"(ax), [f] "+r"(f) : [s] "q"(s) : "cc");
		else
			asm(ALU_IN "divb %[s]" ALU_OUT : "+a"(ax), [f] "+r"(f) : [s] "q"(s) : "cc");
		reg_write(c, R_RAX, ax, 2, false);
		break;
	}
	case 2: {
		uint16_t a = lo, d = hi, s = src;
		if (sign)
			asm(ALU_IN "idivw %[s]" ALU_OUT : "+a"(a), "+d"(d), [f] "+r"(f) : [s] "r"(s) : "cc");
		else
			asm(ALU_IN "divw %[s]" ALU_OUT : "+a"(a), "+d"(d), [f] "+r"(f) : [s] "r"(s) : "cc");
		reg_write(c, R_RAX, a, 2, false);
		reg_write(c, R_RDX, d, 2, false);
		break;
	}
	case 4: {
		uint32_t a = lo, d = hi, s = src;
		if (sign)
			asm(ALU_IN "idivl %[s]" ALU_OUT : "+a"(a), "+d"(d), [f] "+r"(f) : [s] "r"(s) : "cc");
		else
			asm(ALU_IN "divl %[s]" ALU_OUT : "+a"(a), "+d"(d), [f] "+r"(f) : [s] "r"(s) : "cc");
		c->r[R_RAX] = a;
		c->r[R_RDX] = d;
		break;
	}
	default: {
		uint64_t a = lo, d = hi, s = src;
		if (sign)
			asm(ALU_IN "idivq %[s]" ALU_OUT : "+a"(a), "+d"(d), [f] "+r"(f) : [s] "r"(s) : "cc");
		else
			asm(ALU_IN "divq %[s]" ALU_OUT : "+a"(a), "+d"(d), [f] "+r"(f) : [s] "r"(s) : "cc");
		c->r[R_RAX] = a;
		c->r[R_RDX] = d;
		break;
	}
	}
	c->rflags = (c->rflags & ~(uint64_t)F_ARITH) | (f & F_ARITH);
}

/* ---- string instructions ---- */

static inline uint64_t areg(struct cpu *c, int r, int asz)
{
	return asz == 8 ? c->r[r] : (asz == 4 ? (uint32_t)c->r[r] : (uint16_t)c->r[r]);
}

static inline void areg_add(struct cpu *c, int r, int asz, int64_t d)
{
	uint64_t v = c->r[r] + d;
	if (asz == 8)
		c->r[r] = v;
	else if (asz == 4)
		c->r[r] = (uint32_t)v;
	else
		c->r[r] = (c->r[r] & ~0xffffull) | (v & 0xffff);
}

/* How many iterations of a rep string instruction run before the CPU looks
 * at interrupts again; the instruction restarts where it stopped. */
#define REP_CHUNK 4096

static bool string_op(struct cpu *c, struct insn *in)
{
	int op = in->op, size;
	int asz = in->addrsize;
	bool rep = in->rep != 0;
	switch (op) {
	case 0x6C: case 0xA4: case 0xA6: case 0xAA: case 0xAC: case 0xAE: size = 1; break;
	default: size = in->opsize; break;
	}
	int64_t step = (c->rflags & F_DF) ? -size : size;
	uint64_t count = rep ? areg(c, R_RCX, asz) : 1;
	int n = 0;
	/* single-stepping traps after every iteration */
	int chunk = (c->rflags & F_TF) ? 1 : REP_CHUNK;

	if (rep && count == 0)
		return true;
	while (count) {
		uint64_t si = seg_lin(c, in->seg, areg(c, R_RSI, asz));
		uint64_t di = seg_lin(c, S_ES, areg(c, R_RDI, asz));
		bool stop = false;

		/* bulk paths for the kernel's memcpy/memset: forward, in RAM,
		 * within a page on both sides */
		if (rep && step > 0 && (op == 0xA4 || op == 0xA5 || op == 0xAA || op == 0xAB) && count > 1) {
			uint64_t room_d = 0x1000 - (di & 0xfff);
			uint64_t room_s = op <= 0xA5 ? 0x1000 - (si & 0xfff) : room_d;
			uint64_t k = count;
			if (k * size > room_d)
				k = room_d / size;
			if (k * size > room_s)
				k = room_s / size;
			if (k > (uint64_t)chunk)
				k = chunk;
			if (k > 1) {
				uint8_t *dp = mem_ptr(c, di, (int)(k * size), true);
				uint8_t *sp = op <= 0xA5 ? mem_ptr(c, si, (int)(k * size), false) : NULL;
				if (dp && (op >= 0xAA || sp)) {
					uint64_t bytes = k * size;
					if (op >= 0xAA) {
						uint64_t v = c->r[R_RAX];
						if (size == 1)
							memset(dp, (uint8_t)v, bytes);
						else
							for (uint64_t i = 0; i < k; i++)
								memcpy(dp + i * size, &v, size);
					} else if (dp >= sp + bytes || sp >= dp + bytes) {
						memcpy(dp, sp, bytes);
					} else {
						/* overlap: x86 copies element by element,
						 * each read whole before it is written */
						for (uint64_t i = 0; i < bytes; i += size)
							memmove(dp + i, sp + i, size);
					}
					if (op <= 0xA5)
						areg_add(c, R_RSI, asz, bytes);
					areg_add(c, R_RDI, asz, bytes);
					count -= k;
					areg_add(c, R_RCX, asz, -(int64_t)k);
					n += (int)k;
					if (n >= chunk && count)
						return false;
					continue;
				}
			}
		}

		switch (op) {
		case 0xA4: case 0xA5: /* movs */
			mem_write(c, di, mem_read(c, si, size), size);
			areg_add(c, R_RSI, asz, step);
			areg_add(c, R_RDI, asz, step);
			break;
		case 0xAA: case 0xAB: /* stos */
			mem_write(c, di, c->r[R_RAX], size);
			areg_add(c, R_RDI, asz, step);
			break;
		case 0xAC: case 0xAD: /* lods */
			reg_write(c, R_RAX, mem_read(c, si, size), size, false);
			areg_add(c, R_RSI, asz, step);
			break;
		case 0xA6: case 0xA7: { /* cmps */
			uint64_t a = mem_read(c, si, size), b = mem_read(c, di, size);
			alu(c, ALU_CMP, size, a, b);
			areg_add(c, R_RSI, asz, step);
			areg_add(c, R_RDI, asz, step);
			stop = true;
			break;
		}
		case 0xAE: case 0xAF: /* scas */
			alu(c, ALU_CMP, size, c->r[R_RAX], mem_read(c, di, size));
			areg_add(c, R_RDI, asz, step);
			stop = true;
			break;
		case 0x6C: case 0x6D: /* ins */
			io_check(c, (uint16_t)c->r[R_RDX], size);
			mem_write(c, di, c->bus.pio_in(c->bus.opaque, (uint16_t)c->r[R_RDX], size), size);
			areg_add(c, R_RDI, asz, step);
			break;
		case 0x6E: case 0x6F: /* outs */
			io_check(c, (uint16_t)c->r[R_RDX], size);
			c->bus.pio_out(c->bus.opaque, (uint16_t)c->r[R_RDX], (uint32_t)mem_read(c, si, size), size);
			areg_add(c, R_RSI, asz, step);
			break;
		}
		if (!rep)
			return true;
		count--;
		areg_add(c, R_RCX, asz, -1);
		n++;
		if (stop) {
			bool zf = c->rflags & F_ZF;
			if ((in->rep == 0xF3 && !zf) || (in->rep == 0xF2 && zf))
				return true;
		}
		if (count && n >= chunk)
			return false;
	}
	return true;
}

/* ---- the one-byte map ---- */

static void exec_map0(struct cpu *c, struct insn *in)
{
	uint8_t op = in->op;
	int size = in->opsize;
	bool rex = in->rex != 0;
	uint64_t next = c->rip + in->len;

	if (c->mode == 64) {
		switch (op) {
		case 0x06: case 0x07: case 0x0E: case 0x16: case 0x17: case 0x1E: case 0x1F:
		case 0x27: case 0x2F: case 0x37: case 0x3F: case 0x60: case 0x61: case 0x62:
		case 0x82: case 0x9A: case 0xCE: case 0xD4: case 0xD5: case 0xD6: case 0xEA:
			cpu_ud(c);
		}
	}
	if (in->lock) {
		/* lock is valid only on a memory-destination read-modify-write */
		bool ok = in->is_mem && ((op < 0x38 && (op & 7) < 2) || (op >= 0x80 && op <= 0x83 && (in->reg & 7) != 7) ||
					 op == 0x86 || op == 0x87 || ((op == 0xF6 || op == 0xF7) && ((in->reg & 7) == 2 || (in->reg & 7) == 3)) ||
					 ((op == 0xFE || op == 0xFF) && (in->reg & 7) < 2));
		if (!ok)
			cpu_ud(c);
	}

	if (op < 0x40 && (op & 7) < 6) {
		int aop = op >> 3;
		switch (op & 7) {
		case 0: alu_rm(c, in, aop, 1, reg_read(c, in->reg, 1, rex)); break;
		case 1: alu_rm(c, in, aop, size, reg_read(c, in->reg, size, rex)); break;
		case 2: {
			uint64_t r = alu(c, aop, 1, reg_read(c, in->reg, 1, rex), rm_read(c, in, 1));
			if (aop != ALU_CMP)
				reg_write(c, in->reg, r, 1, rex);
			break;
		}
		case 3: {
			uint64_t r = alu(c, aop, size, reg_read(c, in->reg, size, rex), rm_read(c, in, size));
			if (aop != ALU_CMP)
				reg_write(c, in->reg, r, size, rex);
			break;
		}
		case 4: {
			uint64_t r = alu(c, aop, 1, c->r[R_RAX], in->imm);
			if (aop != ALU_CMP)
				reg_write(c, R_RAX, r, 1, false);
			break;
		}
		case 5: {
			uint64_t r = alu(c, aop, size, c->r[R_RAX], in->imm);
			if (aop != ALU_CMP)
				reg_write(c, R_RAX, r, size, false);
			break;
		}
		}
		c->rip = next;
		return;
	}

	switch (op) {
	case 0x06: case 0x0E: case 0x16: case 0x1E: /* push es/cs/ss/ds */
		push(c, c->seg[op >> 3].sel, size);
		break;
	case 0x07: case 0x17: case 0x1F: { /* pop es/ss/ds */
		uint16_t sel = (uint16_t)peek(c, 0, size);
		cpu_load_seg(c, op >> 3, sel);
		pop(c, size);
		if (op == 0x17)
			c->intr_shadow = true;
		break;
	}
	case 0x27: case 0x2F: case 0x37: case 0x3F: /* daa das aaa aas */
		bcd_adjust(c, op);
		break;
	case 0x40 ... 0x47: /* inc r (32-bit modes only) */
		reg_write(c, op & 7, alu(c, ALU_INC, size, c->r[op & 7], 0), size, false);
		break;
	case 0x48 ... 0x4F:
		reg_write(c, op & 7, alu(c, ALU_DEC, size, c->r[op & 7], 0), size, false);
		break;
	case 0x50 ... 0x57: {
		int r = (op & 7) | (in->rex & 1 ? 8 : 0);
		int s = stack_opsize(c, in);
		push(c, reg_read(c, r, s, false), s);
		break;
	}
	case 0x58 ... 0x5F: {
		int r = (op & 7) | (in->rex & 1 ? 8 : 0);
		int s = stack_opsize(c, in);
		uint64_t v = pop(c, s);
		reg_write(c, r, v, s, false);
		break;
	}
	case 0x60: { /* pusha */
		uint64_t sp = c->r[R_RSP];
		for (int r = 0; r < 8; r++)
			push(c, r == R_RSP ? sp : c->r[r], size);
		break;
	}
	case 0x61: /* popa */
		for (int r = 7; r >= 0; r--) {
			uint64_t v = pop(c, size);
			if (r != R_RSP)
				reg_write(c, r, v, size, false);
		}
		break;
	case 0x63: /* movsxd (64-bit mode); arpl elsewhere is not supported */
		if (c->mode != 64)
			cpu_ud(c);
		reg_write(c, in->reg, size == 8 ? (uint64_t)(int64_t)(int32_t)rm_read(c, in, 4) : rm_read(c, in, size), size, false);
		break;
	case 0x68: case 0x6A:
		push(c, in->imm, stack_opsize(c, in));
		break;
	case 0x69: case 0x6B:
		reg_write(c, in->reg, imul2(c, size, rm_read(c, in, size), in->imm), size, false);
		break;
	case 0x6C ... 0x6F:
		if (!string_op(c, in))
			return;
		break;
	case 0x70 ... 0x7F:
		if (cond_true(c, op & 15))
			next = (next + in->imm);
		set_rip(c, next, c->mode == 64 ? 8 : size);
		return;
	case 0x80: case 0x82:
		alu_rm(c, in, in->reg & 7, 1, in->imm);
		break;
	case 0x81: case 0x83:
		alu_rm(c, in, in->reg & 7, size, in->imm);
		break;
	case 0x84: alu(c, ALU_TEST, 1, rm_read(c, in, 1), reg_read(c, in->reg, 1, rex)); break;
	case 0x85: alu(c, ALU_TEST, size, rm_read(c, in, size), reg_read(c, in->reg, size, rex)); break;
	case 0x86: case 0x87: { /* xchg: implicitly locked with memory */
		int s = op == 0x86 ? 1 : size;
		uint64_t v = reg_read(c, in->reg, s, rex);
		uint64_t old = xchg_rm(c, in, s, v);
		reg_write(c, in->reg, old, s, rex);
		break;
	}
	case 0x88: rm_write(c, in, reg_read(c, in->reg, 1, rex), 1); break;
	case 0x89: rm_write(c, in, reg_read(c, in->reg, size, rex), size); break;
	case 0x8A: reg_write(c, in->reg, rm_read(c, in, 1), 1, rex); break;
	case 0x8B: reg_write(c, in->reg, rm_read(c, in, size), size, rex); break;
	case 0x8C: { /* mov r/m, sreg */
		int sr = in->reg & 7;
		if (sr > S_GS)
			cpu_ud(c);
		if (in->is_mem)
			rm_write(c, in, c->seg[sr].sel, 2);
		else
			reg_write(c, in->rm, c->seg[sr].sel, size, false);
		break;
	}
	case 0x8D: /* lea */
		if (!in->is_mem)
			cpu_ud(c);
		reg_write(c, in->reg, in->ea, size, false);
		break;
	case 0x8E: { /* mov sreg, r/m */
		int sr = in->reg & 7;
		if (sr == S_CS || sr > S_GS)
			cpu_ud(c);
		cpu_load_seg(c, sr, (uint16_t)rm_read(c, in, 2));
		if (sr == S_SS)
			c->intr_shadow = true;
		break;
	}
	case 0x8F: { /* pop r/m; only /0 exists */
		if (in->reg & 7)
			cpu_ud(c);
		int s = stack_opsize(c, in);
		uint64_t v = peek(c, 0, s);
		struct insn tmp = *in;
		/* an rsp-based address is computed after the increment */
		if (in->is_mem && in->base == R_RSP)
			tmp.ea += s;
		rm_write(c, &tmp, v, s);
		pop(c, s);
		break;
	}
	case 0x90: /* nop, pause, xchg r8, rax */
		if (in->rex & 1) {
			uint64_t t = c->r[R_R8];
			reg_write(c, R_R8, c->r[R_RAX], size, false);
			reg_write(c, R_RAX, t, size, false);
		}
		break;
	case 0x91 ... 0x97: {
		int r = (op & 7) | (in->rex & 1 ? 8 : 0);
		uint64_t t = reg_read(c, r, size, false);
		reg_write(c, r, reg_read(c, R_RAX, size, false), size, false);
		reg_write(c, R_RAX, t, size, false);
		break;
	}
	case 0x98: /* cbw cwde cdqe */
		if (size == 2)
			reg_write(c, R_RAX, (uint64_t)(int64_t)(int8_t)c->r[R_RAX], 2, false);
		else if (size == 4)
			reg_write(c, R_RAX, (uint64_t)(int64_t)(int16_t)c->r[R_RAX], 4, false);
		else
			c->r[R_RAX] = (uint64_t)(int64_t)(int32_t)c->r[R_RAX];
		break;
	case 0x99: /* cwd cdq cqo */
		reg_write(c, R_RDX, sx(c->r[R_RAX], size) < 0 ? ~0ull : 0, size, false);
		break;
	case 0x9A: /* call far ptr (32-bit modes) */
		far_call(c, (uint16_t)in->imm2, in->imm, size, next);
		return;
	case 0x9B: /* fwait */
		if ((c->cr0 & (CR0_TS | CR0_MP)) == (CR0_TS | CR0_MP))
			cpu_fault(c, EXC_NM, 0);
		/* a pending unmasked x87 exception (FSW.ES) is taken here */
		if ((c->fx.fsw & 0x80) && (c->cr0 & CR0_NE))
			cpu_fault(c, EXC_MF, 0);
		break;
	case 0x9C: { /* pushf */
		int s = stack_opsize(c, in);
		push(c, c->rflags & ~(uint64_t)(F_RF | F_VM), s);
		break;
	}
	case 0x9D: { /* popf */
		int s = stack_opsize(c, in);
		write_rflags(c, pop(c, s), s, false);
		break;
	}
	case 0x9E: /* sahf */
		c->rflags = (c->rflags & ~0xd5ull) | ((c->r[R_RAX] >> 8) & 0xd5) | 2;
		break;
	case 0x9F: /* lahf */
		reg_write(c, 4, (c->rflags & 0xd5) | 2, 1, false);
		break;
	case 0xA0 ... 0xA3: { /* mov with a memory offset */
		int s = op & 1 ? size : 1;
		uint64_t lin = seg_lin(c, in->seg, in->addrsize == 8 ? in->imm : (in->addrsize == 4 ? (uint32_t)in->imm : (uint16_t)in->imm));
		if (op < 0xA2)
			reg_write(c, R_RAX, mem_read(c, lin, s), s, false);
		else
			mem_write(c, lin, c->r[R_RAX], s);
		break;
	}
	case 0xA4 ... 0xA7: case 0xAA ... 0xAF:
		if (!string_op(c, in))
			return;
		break;
	case 0xA8: alu(c, ALU_TEST, 1, c->r[R_RAX], in->imm); break;
	case 0xA9: alu(c, ALU_TEST, size, c->r[R_RAX], in->imm); break;
	case 0xB0 ... 0xB7:
		reg_write(c, (op & 7) | (in->rex & 1 ? 8 : 0), in->imm, 1, rex);
		break;
	case 0xB8 ... 0xBF:
		reg_write(c, (op & 7) | (in->rex & 1 ? 8 : 0), in->imm, size, false);
		break;
	case 0xC0: case 0xC1: case 0xD0 ... 0xD3: { /* shift group 2 */
		int s = (op & 1) ? size : 1;
		uint8_t n = op <= 0xC1 ? (uint8_t)in->imm : (op <= 0xD1 ? 1 : (uint8_t)c->r[R_RCX]);
		rmw(c, in, s, rmw_alu, n, ALU_ROL + (in->reg & 7), false);
		break;
	}
	case 0xC2: case 0xC3: { /* ret near */
		int s = stack_opsize(c, in);
		uint64_t t = peek(c, 0, s);
		set_rip(c, t, s);
		pop(c, s);
		if (op == 0xC2)
			areg_add(c, R_RSP, stack_width(c), (int64_t)(uint16_t)in->imm);
		return;
	}
	case 0xC4: case 0xC5: /* les / lds (32-bit modes) */
		if (!in->is_mem)
			cpu_ud(c);
		{
			uint64_t lin = insn_ea_lin(c, in);
			uint64_t off = mem_read(c, lin, size);
			uint16_t sel = (uint16_t)mem_read(c, lin + size, 2);
			cpu_load_seg(c, op == 0xC4 ? S_ES : S_DS, sel);
			reg_write(c, in->reg, off, size, false);
		}
		break;
	case 0xC6: case 0xC7: /* mov r/m, imm: only /0 exists (no TSX) */
		if (in->reg & 7)
			cpu_ud(c);
		rm_write(c, in, in->imm, op == 0xC6 ? 1 : size);
		break;
	case 0xC8: { /* enter */
		int s = stack_opsize(c, in);
		int level = in->imm2 & 31;
		push(c, c->r[R_RBP], s);
		uint64_t frame = c->r[R_RSP];
		for (int i = 1; i < level; i++) {
			uint64_t bp = c->r[R_RBP] - (uint64_t)i * s;
			push(c, mem_read(c, ss_canonical(c, seg_lin(c, S_SS, rsp_mask(c, bp))), s), s);
		}
		if (level)
			push(c, frame, s);
		/* the frame must be writable down to the final stack pointer */
		mem_ptr(c, ss_canonical(c, seg_lin(c, S_SS, rsp_mask(c, c->r[R_RSP] - (uint16_t)in->imm))), 1, true);
		reg_write(c, R_RBP, frame, s == 8 ? 8 : stack_width(c), false);
		areg_add(c, R_RSP, stack_width(c), -(int64_t)(uint16_t)in->imm);
		break;
	}
	case 0xC9: { /* leave */
		int s = stack_opsize(c, in);
		uint64_t v = mem_read(c, ss_canonical(c, seg_lin(c, S_SS, rsp_mask(c, c->r[R_RBP]))), s);
		reg_write(c, R_RSP, c->r[R_RBP] + s, stack_width(c) == 8 ? 8 : stack_width(c), false);
		reg_write(c, R_RBP, v, s, false);
		break;
	}
	case 0xCA: case 0xCB: /* ret far */
		far_ret(c, size, op == 0xCA ? (uint16_t)in->imm : 0);
		return;
	case 0xCC: /* int3 */
		c->rip = next;
		cpu_deliver(c, EXC_BP, false, 0, true, next);
		return;
	case 0xCD: /* int n */
		c->rip = next;
		cpu_deliver(c, (uint8_t)in->imm, false, 0, true, next);
		return;
	case 0xCE: /* into */
		if (c->rflags & F_OF) {
			c->rip = next;
			cpu_deliver(c, EXC_OF, false, 0, true, next);
			return;
		}
		break;
	case 0xCF: /* iret */
		do_iret(c, size);
		return;
	case 0xD7: { /* xlat */
		uint64_t a = areg(c, R_RBX, in->addrsize) + (uint8_t)c->r[R_RAX];
		if (in->addrsize != 8)
			a &= in->addrsize == 4 ? 0xffffffffull : 0xffff;
		reg_write(c, R_RAX, mem_read(c, seg_lin(c, in->seg, a), 1), 1, false);
		break;
	}
	case 0xD8 ... 0xDF:
		if (c->cr0 & (CR0_EM | CR0_TS))
			cpu_fault(c, EXC_NM, 0);
		if (!x87_exec(c, in))
			cpu_ud(c);
		break;
	case 0xE0 ... 0xE3: { /* loopne loope loop jrcxz */
		int asz = in->addrsize;
		bool take;
		if (op == 0xE3) {
			take = areg(c, R_RCX, asz) == 0;
		} else {
			areg_add(c, R_RCX, asz, -1);
			take = areg(c, R_RCX, asz) != 0;
			if (op == 0xE0)
				take = take && !(c->rflags & F_ZF);
			else if (op == 0xE1)
				take = take && (c->rflags & F_ZF);
		}
		if (take)
			next += in->imm;
		set_rip(c, next, c->mode == 64 ? 8 : size);
		return;
	}
	case 0xE4: case 0xE5: case 0xEC: case 0xED: { /* in */
		int s = op & 1 ? (size == 2 ? 2 : 4) : 1;
		uint16_t port = op < 0xEC ? (uint8_t)in->imm : (uint16_t)c->r[R_RDX];
		io_check(c, port, s);
		reg_write(c, R_RAX, c->bus.pio_in(c->bus.opaque, port, s), s, false);
		break;
	}
	case 0xE6: case 0xE7: case 0xEE: case 0xEF: { /* out */
		int s = op & 1 ? (size == 2 ? 2 : 4) : 1;
		uint16_t port = op < 0xEE ? (uint8_t)in->imm : (uint16_t)c->r[R_RDX];
		io_check(c, port, s);
		c->rip = next; /* the device may end the VM; RIP is past the out */
		c->bus.pio_out(c->bus.opaque, port, (uint32_t)c->r[R_RAX], s);
		return;
	}
	case 0xE8: { /* call rel */
		int s = stack_opsize(c, in);
		uint64_t target = next + in->imm;
		if (s == 2)
			target &= 0xffff;
		else if (s == 4)
			target = (uint32_t)target;
		set_rip(c, target, s);
		c->rip = next; /* restore until the push succeeded */
		push(c, next, s);
		c->rip = target;
		return;
	}
	case 0xE9: case 0xEB:
		set_rip(c, next + in->imm, c->mode == 64 ? 8 : size);
		return;
	case 0xEA: /* jmp far ptr (32-bit modes) */
		far_jump(c, (uint16_t)in->imm2, in->imm);
		return;
	case 0xF1: /* int1 (icebp): a trap, delivered like a hardware #DB, without the gate DPL check */
		c->rip = next;
		cpu_deliver(c, EXC_DB, false, 0, false, next);
		return;
	case 0xF4: /* hlt */
		if (c->cpl)
			cpu_gp0(c);
		c->rip = next;
		c->halted = true;
		return;
	case 0xF5: c->rflags ^= F_CF; break;
	case 0xF6: case 0xF7: {
		int s = op == 0xF6 ? 1 : size;
		switch (in->reg & 7) {
		case 0: case 1: alu(c, ALU_TEST, s, rm_read(c, in, s), in->imm); break;
		case 2: rmw(c, in, s, rmw_alu, 0, ALU_NOT, in->lock); break;
		case 3: rmw(c, in, s, rmw_alu, 0, ALU_NEG, in->lock); break;
		case 4: mul_op(c, s, rm_read(c, in, s), false); break;
		case 5: mul_op(c, s, rm_read(c, in, s), true); break;
		case 6: div_op(c, s, rm_read(c, in, s), false); break;
		case 7: div_op(c, s, rm_read(c, in, s), true); break;
		}
		break;
	}
	case 0xF8: c->rflags &= ~(uint64_t)F_CF; break;
	case 0xF9: c->rflags |= F_CF; break;
	case 0xFA: /* cli */
		if (c->cpl > (int)((c->rflags >> 12) & 3))
			cpu_gp0(c);
		c->rflags &= ~(uint64_t)F_IF;
		break;
	case 0xFB: /* sti */
		if (c->cpl > (int)((c->rflags >> 12) & 3))
			cpu_gp0(c);
		if (!(c->rflags & F_IF)) {
			c->rflags |= F_IF;
			c->intr_shadow = true;
			c->intr_poke = 1;
		}
		break;
	case 0xFC: c->rflags &= ~(uint64_t)F_DF; break;
	case 0xFD: c->rflags |= F_DF; break;
	case 0xFE:
		if ((in->reg & 7) > 1)
			cpu_ud(c);
		rmw(c, in, 1, rmw_alu, 0, (in->reg & 7) == 0 ? ALU_INC : ALU_DEC, in->lock);
		break;
	case 0xFF:
		switch (in->reg & 7) {
		case 0: rmw(c, in, size, rmw_alu, 0, ALU_INC, in->lock); break;
		case 1: rmw(c, in, size, rmw_alu, 0, ALU_DEC, in->lock); break;
		case 2: { /* call near indirect */
			int s = stack_opsize(c, in);
			uint64_t target = rm_read(c, in, s);
			set_rip(c, target, s);
			c->rip = next;
			push(c, next, s);
			c->rip = s == 8 ? target : (s == 4 ? (uint32_t)target : (uint16_t)target);
			return;
		}
		case 3: { /* call far indirect */
			if (!in->is_mem)
				cpu_ud(c);
			uint64_t lin = insn_ea_lin(c, in);
			uint64_t off = mem_read(c, lin, size);
			uint16_t sel = (uint16_t)mem_read(c, lin + size, 2);
			far_call(c, sel, off, size, next);
			return;
		}
		case 4: { /* jmp near indirect */
			int s = stack_opsize(c, in);
			set_rip(c, rm_read(c, in, s), s);
			return;
		}
		case 5: { /* jmp far indirect */
			if (!in->is_mem)
				cpu_ud(c);
			uint64_t lin = insn_ea_lin(c, in);
			uint64_t off = mem_read(c, lin, size);
			uint16_t sel = (uint16_t)mem_read(c, lin + size, 2);
			far_jump(c, sel, off);
			return;
		}
		case 6: {
			int s = stack_opsize(c, in);
			push(c, rm_read(c, in, s), s);
			break;
		}
		default:
			cpu_ud(c);
		}
		break;
	default:
		cpu_ud(c);
	}
	c->rip = next;
}

uint64_t xchg_rm(struct cpu *c, struct insn *in, int size, uint64_t v)
{
	if (!in->is_mem) {
		uint64_t old = reg_read(c, in->rm, size, in->rex);
		reg_write(c, in->rm, v, size, in->rex);
		return old;
	}
	uint64_t lin = insn_ea_lin(c, in);
	void *p = atomic_ptr(c, lin, size);
	if (p) {
		switch (size) {
		case 1: return __atomic_exchange_n((uint8_t *)p, (uint8_t)v, __ATOMIC_SEQ_CST);
		case 2: return __atomic_exchange_n((uint16_t *)p, (uint16_t)v, __ATOMIC_SEQ_CST);
		case 4: return __atomic_exchange_n((uint32_t *)p, (uint32_t)v, __ATOMIC_SEQ_CST);
		default: return __atomic_exchange_n((uint64_t *)p, v, __ATOMIC_SEQ_CST);
		}
	}
	probe_write(c, lin, size);
	uint64_t old = mem_read(c, lin, size);
	mem_write(c, lin, v, size);
	return old;
}

/* ---- the 0F map, integer part ---- */

static void cmpxchg(struct cpu *c, struct insn *in, int size)
{
	uint64_t acc = reg_read(c, R_RAX, size, false);
	uint64_t src = reg_read(c, in->reg, size, in->rex);
	uint64_t old;
	if (in->is_mem) {
		uint64_t lin = insn_ea_lin(c, in);
		void *p = atomic_ptr(c, lin, size);
		if (p) {
			old = acc & sz_mask(size);
			cas_sized(p, &old, src, size);
		} else {
			probe_write(c, lin, size);
			old = mem_read(c, lin, size);
			/* the destination is written back either way */
			mem_write(c, lin, old == (acc & sz_mask(size)) ? src : old, size);
		}
	} else {
		old = reg_read(c, in->rm, size, in->rex);
		if (old == (acc & sz_mask(size)))
			reg_write(c, in->rm, src, size, in->rex);
	}
	alu(c, ALU_CMP, size, acc, old);
	if (!(c->rflags & F_ZF))
		reg_write(c, R_RAX, old, size, false);
}

static void cmpxchg_wide(struct cpu *c, struct insn *in)
{
	bool wide = in->opsize == 8;
	int size = wide ? 16 : 8;
	uint64_t lin = insn_ea_lin(c, in);
	if (!in->is_mem)
		cpu_ud(c);
	if (wide && (lin & 15))
		cpu_gp0(c);
	if (!wide) {
		uint64_t cmp = (uint32_t)c->r[R_RAX] | (c->r[R_RDX] << 32);
		uint64_t nv = (uint32_t)c->r[R_RBX] | (c->r[R_RCX] << 32);
		void *p = atomic_ptr(c, lin, 8);
		uint64_t old = cmp;
		bool ok;
		if (p) {
			ok = cas_sized(p, &old, nv, 8);
		} else {
			probe_write(c, lin, 8);
			old = mem_read(c, lin, 8);
			ok = old == cmp;
			mem_write(c, lin, ok ? nv : old, 8);
		}
		if (ok) {
			c->rflags |= F_ZF;
		} else {
			c->rflags &= ~(uint64_t)F_ZF;
			c->r[R_RAX] = (uint32_t)old;
			c->r[R_RDX] = old >> 32;
		}
		return;
	}
	uint64_t lo = c->r[R_RAX], hi = c->r[R_RDX];
	void *p = mem_ptr(c, lin, size, true);
	bool ok;
	if (p) {
		/* p is 16-byte aligned: the guest address is, and so is the
		 * host page it lies in */
		asm volatile("lock cmpxchg16b %[m]\n\tsete %[ok]"
			     : [ok] "=q"(ok), [m] "+m"(*(volatile unsigned __int128 *)p), "+a"(lo), "+d"(hi)
			     : "b"(c->r[R_RBX]), "c"(c->r[R_RCX])
			     : "memory", "cc");
	} else {
		probe_write(c, lin, 16);
		uint64_t olo = mem_read(c, lin, 8), ohi = mem_read(c, lin + 8, 8);
		ok = olo == lo && ohi == hi;
		uint64_t buf[2] = { ok ? c->r[R_RBX] : olo, ok ? c->r[R_RCX] : ohi };
		mem_write_buf(c, lin, buf, 16);
		lo = olo;
		hi = ohi;
	}
	if (ok) {
		c->rflags |= F_ZF;
	} else {
		c->rflags &= ~(uint64_t)F_ZF;
		c->r[R_RAX] = lo;
		c->r[R_RDX] = hi;
	}
}

static void exec_map1(struct cpu *c, struct insn *in)
{
	uint8_t op = in->op;
	int size = in->opsize;
	bool rex = in->rex != 0;
	uint64_t next = c->rip + in->len;

	if (in->lock) {
		bool ok = in->is_mem && (op == 0xAB || op == 0xB3 || op == 0xBB || op == 0xB0 || op == 0xB1 ||
					 op == 0xC0 || op == 0xC1 || (op == 0xBA && in->reg >= 5) ||
					 (op == 0xC7 && in->reg == 1));
		if (!ok)
			cpu_ud(c);
	}
	switch (op) {
	case 0x40 ... 0x4F: { /* cmovcc: the source is read even when false */
		uint64_t v = rm_read(c, in, size);
		if (cond_true(c, op & 15))
			reg_write(c, in->reg, v, size, false);
		else if (size == 4)
			c->r[in->reg] = (uint32_t)c->r[in->reg];
		break;
	}
	case 0x80 ... 0x8F:
		if (cond_true(c, op & 15))
			next += in->imm;
		set_rip(c, next, c->mode == 64 ? 8 : size);
		return;
	case 0x90 ... 0x9F:
		rm_write(c, in, cond_true(c, op & 15), 1);
		break;
	case 0xA0: case 0xA8: /* push fs / gs */
		push(c, c->seg[op == 0xA0 ? S_FS : S_GS].sel, stack_opsize(c, in));
		break;
	case 0xA1: case 0xA9: { /* pop fs / gs */
		int s = stack_opsize(c, in);
		cpu_load_seg(c, op == 0xA1 ? S_FS : S_GS, (uint16_t)peek(c, 0, s));
		pop(c, s);
		break;
	}
	case 0xA3: bit_op(c, in, 4, reg_read(c, in->reg, size, rex), true); break;
	case 0xAB: bit_op(c, in, 5, reg_read(c, in->reg, size, rex), true); break;
	case 0xB3: bit_op(c, in, 6, reg_read(c, in->reg, size, rex), true); break;
	case 0xBB: bit_op(c, in, 7, reg_read(c, in->reg, size, rex), true); break;
	case 0xBA:
		if (in->reg < 4)
			cpu_ud(c);
		bit_op(c, in, in->reg & 7, in->imm, false);
		break;
	case 0xA4: case 0xA5: case 0xAC: case 0xAD: { /* shld / shrd */
		uint8_t n = (op & 1) ? (uint8_t)c->r[R_RCX] : (uint8_t)in->imm;
		uint64_t src = reg_read(c, in->reg, size, rex);
		if (in->is_mem)
			probe_write(c, insn_ea_lin(c, in), size);
		uint64_t d = rm_read(c, in, size);
		rm_write(c, in, alu_shd(c, op >= 0xAC, size, d, src, n), size);
		break;
	}
	case 0xAF:
		reg_write(c, in->reg, imul2(c, size, reg_read(c, in->reg, size, rex), rm_read(c, in, size)), size, false);
		break;
	case 0xB0: cmpxchg(c, in, 1); break;
	case 0xB1: cmpxchg(c, in, size); break;
	case 0xB6: reg_write(c, in->reg, rm_read(c, in, 1), size, false); break;
	case 0xB7: reg_write(c, in->reg, rm_read(c, in, 2), size, false); break;
	case 0xBE: reg_write(c, in->reg, (uint64_t)(int64_t)(int8_t)rm_read(c, in, 1), size, false); break;
	case 0xBF: reg_write(c, in->reg, (uint64_t)(int64_t)(int16_t)rm_read(c, in, 2), size, false); break;
	case 0xB8: /* popcnt (F3) */
		if (in->rep != 0xF3)
			cpu_ud(c);
		reg_write(c, in->reg, alu_popcnt(c, size, rm_read(c, in, size)), size, false);
		break;
	case 0xBC: case 0xBD: { /* bsf / bsr; tzcnt / lzcnt run as these, as
				   on CPUs without BMI1 / LZCNT (not advertised) */
		uint64_t src = rm_read(c, in, size);
		uint64_t d = alu_bitscan(c, op == 0xBD, size, reg_read(c, in->reg, size, false), src);
		/* a zero source leaves the whole register as it was, as hardware does */
		if (src & sz_mask(size))
			reg_write(c, in->reg, d, size, false);
		break;
	}
	case 0xC0: case 0xC1: { /* xadd: the sum is stored last (xadd r, r doubles r) */
		int s = op == 0xC0 ? 1 : size;
		uint64_t src = reg_read(c, in->reg, s, rex);
		if (!in->is_mem) {
			uint64_t d = reg_read(c, in->rm, s, rex);
			uint64_t sum = alu(c, ALU_ADD, s, d, src);
			reg_write(c, in->reg, d, s, rex);
			reg_write(c, in->rm, sum, s, rex);
			break;
		}
		uint64_t old = rmw(c, in, s, rmw_alu, src, ALU_ADD, in->lock);
		reg_write(c, in->reg, old, s, rex);
		break;
	}
	case 0xC7: /* group 9 */
		if (in->reg == 1 && in->is_mem) {
			cmpxchg_wide(c, in);
			break;
		}
		cpu_ud(c);
	case 0xC8 ... 0xCF: { /* bswap */
		int r = (op & 7) | (in->rex & 1 ? 8 : 0);
		if (size == 8)
			c->r[r] = __builtin_bswap64(c->r[r]);
		else if (size == 4)
			c->r[r] = __builtin_bswap32((uint32_t)c->r[r]);
		else
			reg_write(c, r, 0, 2, false); /* undefined; zero as hardware does */
		break;
	}
	default:
		exec_sys(c, in);
		return;
	}
	c->rip = next;
}

void exec_insn(struct cpu *c, struct insn *in)
{
	if (in->map == 0)
		exec_map0(c, in);
	else if (in->map == 1)
		exec_map1(c, in);
	else if (!sse_exec(c, in))
		cpu_ud(c);
	else
		c->rip += in->len;
}
