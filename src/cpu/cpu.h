/* The emu engine's x86-64 CPU: architectural state, the decoded instruction,
 * and the entry points that the engine glue (src/engine/emu.c), the tests
 * and the instruction families (exec_*.c, sse.c, x87.c) share. */
#ifndef ACCORD_CPU_H
#define ACCORD_CPU_H

#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

enum { R_RAX, R_RCX, R_RDX, R_RBX, R_RSP, R_RBP, R_RSI, R_RDI,
       R_R8, R_R9, R_R10, R_R11, R_R12, R_R13, R_R14, R_R15 };
enum { S_ES, S_CS, S_SS, S_DS, S_FS, S_GS, S_NONE = 7 };

/* RFLAGS bits */
#define F_CF 0x0001u
#define F_PF 0x0004u
#define F_AF 0x0010u
#define F_ZF 0x0040u
#define F_SF 0x0080u
#define F_TF 0x0100u
#define F_IF 0x0200u
#define F_DF 0x0400u
#define F_OF 0x0800u
#define F_IOPL 0x3000u
#define F_NT 0x4000u
#define F_RF 0x10000u
#define F_VM 0x20000u
#define F_AC 0x40000u
#define F_VIF 0x80000u
#define F_VIP 0x100000u
#define F_ID 0x200000u
#define F_ARITH (F_CF | F_PF | F_AF | F_ZF | F_SF | F_OF)

#define CR0_PE (1u << 0)
#define CR0_MP (1u << 1)
#define CR0_EM (1u << 2)
#define CR0_TS (1u << 3)
#define CR0_ET (1u << 4)
#define CR0_NE (1u << 5)
#define CR0_WP (1u << 16)
#define CR0_AM (1u << 18)
#define CR0_NW (1u << 29)
#define CR0_CD (1u << 30)
#define CR0_PG (1u << 31)
#define CR4_PSE (1u << 4)
#define CR4_PAE (1u << 5)
#define CR4_PGE (1u << 7)
#define CR4_OSFXSR (1u << 9)
#define CR4_OSXMMEXCPT (1u << 10)
#define CR4_OSXSAVE (1u << 18)
#define CR4_SMAP (1u << 21)
#define EFER_SCE (1u << 0)
#define EFER_LME (1u << 8)
#define EFER_LMA (1u << 10)
#define EFER_NXE (1u << 11)

/* exception vectors */
enum { EXC_DE = 0, EXC_DB = 1, EXC_NMI = 2, EXC_BP = 3, EXC_OF = 4, EXC_BR = 5,
       EXC_UD = 6, EXC_NM = 7, EXC_DF = 8, EXC_TS = 10, EXC_NP = 11, EXC_SS = 12,
       EXC_GP = 13, EXC_PF = 14, EXC_MF = 16, EXC_AC = 17, EXC_MC = 18, EXC_XM = 19 };

/* page-fault error code bits */
#define PF_P 1u
#define PF_W 2u
#define PF_U 4u
#define PF_RSVD 8u
#define PF_I 16u

struct seg {
	uint16_t sel;
	uint64_t base;
	uint32_t limit;
	/* descriptor attribute bits 40..47 and 52..55 of the descriptor, packed
	 * as type(0-3) s(4) dpl(5-6) p(7) avl(8) l(9) db(10) g(11) */
	uint16_t attr;
};
#define SEG_ATTR_L (1u << 9)
#define SEG_ATTR_DB (1u << 10)
#define SEG_ATTR_P (1u << 7)

struct dtr {
	uint64_t base;
	uint16_t limit;
};

typedef union {
	uint8_t b[16];
	uint16_t w[8];
	uint32_t d[4];
	uint64_t q[2];
	float f[4];
	double g[2];
} __attribute__((aligned(16))) xmm_t;

/* The x87/MMX/SSE state, in the FXSAVE layout so that it can be loaded into
 * the host FPU as is (sse.c, x87.c execute on the host unit). */
struct fxstate {
	uint16_t fcw, fsw;
	uint8_t ftw, rsvd1;
	uint16_t fop;
	uint64_t fip, fdp;
	uint32_t mxcsr, mxcsr_mask;
	uint8_t st[8][16];
	xmm_t xmm[16];
	uint8_t rsvd[96];
} __attribute__((aligned(16)));

/* software TLB: one direct-mapped set per privilege class (0 = supervisor,
 * 1 = user). A tag is the linear page number | 1 when valid for that kind
 * of access; addend turns a linear address into a host pointer. 4096
 * entries a set, indexed by the page number with the next 12 bits folded
 * in (tlb_index): with 256 entries indexed by the low 8 bits, two hot
 * pages a multiple of 1 MiB apart (a process's stack, heap and buffers
 * land anywhere; the kernel's text, data and bss are 16 MiB apart)
 * evicted each other on every access. */
#define TLB_BITS 12
#define TLB_SIZE (1u << TLB_BITS)
/* the entries filled since the last flush, which a flush clears rather
 * than the whole TLB (a CR3 write is frequent, the set is large) */
#define TLB_LOG 512
struct tlb_entry {
	uint64_t tag_r, tag_w, tag_x;
	uintptr_t addend;
	uint64_t global; /* a global page with CR4.PGE: kept by a CR3 load */
};

struct cpu;

/* How the CPU reaches the machine. Everything the CPU cannot do alone goes
 * through these hooks; the engine glue (src/engine/emu.c) fills them in. */
struct cpu_bus {
	/* host pointer for a guest-physical page, or NULL (MMIO, unbacked) */
	uint8_t *(*gpa_page)(void *opaque, uint64_t gpa, bool write);
	uint64_t (*mmio_read)(void *opaque, uint64_t gpa, int size);
	void (*mmio_write)(void *opaque, uint64_t gpa, uint64_t val, int size);
	uint32_t (*pio_in)(void *opaque, uint16_t port, int size);
	void (*pio_out)(void *opaque, uint16_t port, uint32_t val, int size);
	/* highest-priority pending external interrupt vector, or -1; when
	 * ack is true it is accepted (moved to in-service) */
	int (*intr_vector)(void *opaque, bool ack);
	bool (*msr_read)(void *opaque, uint32_t msr, uint64_t *val);
	bool (*msr_write)(void *opaque, uint32_t msr, uint64_t val);
	/* guest time stamp counter */
	uint64_t (*tsc)(void *opaque);
	void *opaque;
};

/* why cpu_run returned */
enum cpu_stop {
	STOP_NONE = 0,
	STOP_HLT,      /* hlt with interrupts enabled and nothing pending */
	STOP_SHUTDOWN, /* triple fault */
	STOP_REQUEST,  /* cpu->stop_request was set (kick) */
	STOP_BUDGET,   /* instruction budget used up */
	STOP_DEBUG,    /* breakpoint / single step for the gdb stub */
};

struct insn {
	uint8_t len;
	uint8_t map;      /* 0: one-byte, 1: 0F, 2: 0F 38, 3: 0F 3A */
	uint8_t op;       /* opcode byte within its map */
	uint8_t rex;      /* 0 when absent */
	uint8_t opsize;   /* 2, 4 or 8 */
	uint8_t addrsize; /* 2, 4 or 8 */
	uint8_t seg;      /* segment of the memory operand (S_DS default) */
	uint8_t rep;      /* 0, 0xF2 (repne) or 0xF3 (rep/repe) */
	uint8_t lock, opsize_prefix;
	uint8_t has_modrm, mod, reg, rm; /* reg and rm include REX.R / REX.B */
	uint8_t is_mem;
	uint8_t imm_size;
	uint8_t riprel;
	int8_t base;  /* base register of the memory operand, -1 if none */
	int8_t index; /* index register, -1 if none */
	uint8_t scale;
	int64_t disp;
	uint64_t ea;   /* effective address (offset within seg), if is_mem */
	uint64_t imm;  /* sign-extended to 64 bits where the encoding says so */
	uint64_t imm2; /* enter's second immediate, far pointers' selector */
	uint8_t bytes[15];
	/* the handler that runs this instruction from a block (exec_fast.c);
	 * false: the block ends after it */
	bool (*fn)(struct cpu *c, struct insn *in);
};

struct cpu {
	uint64_t r[16];
	uint64_t rip;
	uint64_t rflags;
	struct seg seg[6], ldtr, tr;
	struct dtr gdtr, idtr;
	uint64_t cr0, cr2, cr3, cr4, cr8, efer, xcr0;
	uint64_t dr[8];
	int cpl;
	int mode; /* 16, 32 or 64: the default code size of CS */

	/* MSRs the CPU keeps itself */
	uint64_t star, lstar, cstar, sfmask, kernel_gs_base, tsc_aux;
	uint64_t sysenter_cs, sysenter_esp, sysenter_eip;
	uint64_t pat, misc_enable, ucode_rev;
	int64_t tsc_adjust; /* IA32_TSC_ADJUST: this CPU's TSC minus the machine's */

	struct fxstate fx;

	/* interrupt shadow after sti / mov ss: no interrupt before the next
	 * instruction completes */
	bool intr_shadow;
	bool halted;
	bool nmi_pending;
	bool nmi_blocked; /* from NMI delivery until the next iret */
	/* set from other threads to make cpu_run return soon */
	volatile int stop_request;
	/* set from other threads when an interrupt may have become pending */
	volatile int intr_poke;

	/* exception being delivered, for double/triple fault detection */
	int cur_exc;     /* vector being delivered, -1 when none */
	int pending_exc; /* raised by cpu_fault, delivered by cpu_run */
	uint32_t pending_err;
	uint64_t insn_rip; /* RIP of the instruction being executed */
	uint64_t insn_rsp; /* RSP before it, restored when it faults */
	jmp_buf fault_jmp;

	struct tlb_entry tlb[2][TLB_SIZE];
	uint16_t tlb_log[TLB_LOG]; /* class << TLB_BITS | index */
	unsigned tlb_nlog;         /* TLB_LOG + 1: the log overflowed */

	struct cpu_bus bus;
	/* blocks of decoded instructions (block.c); NULL: decode every time */
	struct block_cache *blocks;
	/* Which host pages hold decoded code: a byte per page, indexed by
	 * the host address (code_store). A store there sets smc, which ends
	 * the running block, and moves code_epoch on: a cached block is
	 * compared with memory again only when the epoch moved since its last
	 * check (block.c says when else it moves). */
	uint8_t *code_map;
	uint64_t code_epoch;
	bool smc;
	bool slice_ended; /* cpu_run last returned STOP_BUDGET */
	/* where host code made from blocks returned (jit.h) */
	void *jit_block;
	uintptr_t jit_exit;
	uint64_t jit_target; /* an indirect call's target while it pushes */
	uint64_t icount; /* instructions retired */
	int index;       /* vCPU number (APIC ID) */
	int personality; /* enum vm_personality: the CPUID hypervisor leaves */

	/* debugging: print RIP, bytes and disassembly of #UD opcodes */
	bool trace_ud;
	/* single-step and breakpoints for the gdb stub */
	bool single_step;
	int nbreak;
	uint64_t resume_icount; /* a breakpoint at the resume RIP is skipped once */
	uint64_t breaks[32];
};

/* lifecycle */
void cpu_init(struct cpu *c, int index);
void cpu_reset(struct cpu *c); /* power-on state: real mode at f000:fff0 */
/* Run until something needs the VMM or max_insns retire. */
enum cpu_stop cpu_run(struct cpu *c, uint64_t max_insns);

/* Execute the one instruction at RIP and nothing else: no interrupt is
 * taken, no cached block used (the kvm engine runs what its host's KVM
 * cannot emulate). A fault it raises is delivered through the IDT as
 * cpu_run would, and *fault says which (-1: none); *in is the decoded
 * instruction (len 0 when it could not be fetched). STOP_NONE, STOP_HLT
 * (it was hlt) or STOP_SHUTDOWN (a triple fault). */
enum cpu_stop cpu_step(struct cpu *c, struct insn *in, int *fault);

/* cpu_step for instructions that may as well not run (the kvm engine runs
 * on past the one its KVM could not, where KVM would do the rest): the
 * instruction at RIP runs only when allow(opaque, in) admits it once
 * decoded, and is kept only when it completes without an exception and
 * without the bus calling cpu_abandon. STOP_NONE: it ran; STOP_REQUEST:
 * it did not, and the registers, RIP, RFLAGS, CR2 and the x87/SSE state
 * are as before it (allow must admit nothing that changes more before it
 * can fault; memory it stored before the fault stays stored). Never with
 * RFLAGS.TF set, an interrupt shadow or a halted CPU: STOP_REQUEST. */
enum cpu_stop cpu_step_if(struct cpu *c, struct insn *in, bool (*allow)(void *opaque, const struct insn *in),
			  void *opaque);
/* from a bus callback inside cpu_step_if: the instruction does not run */
__attribute__((noreturn)) void cpu_abandon(struct cpu *c);

/* Exceptions: never return; unwind to cpu_run, which delivers them. */
__attribute__((noreturn)) void cpu_fault(struct cpu *c, int vector, uint32_t errcode);
__attribute__((noreturn)) void cpu_ud(struct cpu *c);
#define cpu_gp0(c) cpu_fault((c), EXC_GP, 0)

/* Deliver an interrupt or exception now (used by cpu_run and the tests). */
void cpu_deliver(struct cpu *c, int vector, bool has_err, uint32_t err, bool soft, uint64_t next_rip);

/* memory: linear addresses (segment base already added), may fault. The
 * TLB hit is inline (every instruction's operands come through here); a
 * miss, MMIO or an access across a page goes to the _slow half. */
uint64_t mem_read_slow(struct cpu *c, uint64_t lin, int size);
void mem_write_slow(struct cpu *c, uint64_t lin, uint64_t val, int size);

/* the host code computes the same (jit.c emit_lookup) */
static inline unsigned tlb_index(uint64_t lin)
{
	return (unsigned)((lin >> 12) ^ (lin >> (12 + TLB_BITS))) & (TLB_SIZE - 1);
}

static inline struct tlb_entry *tlb_entry(struct cpu *c, uint64_t lin)
{
	return &c->tlb[c->cpl == 3][tlb_index(lin)];
}

#define CODE_MAP_SIZE (1u << 20)
/* this CPU stores through host pointer hp */
static inline void code_store(struct cpu *c, uintptr_t hp)
{
	if (__builtin_expect(c->code_map[(hp >> 12) & (CODE_MAP_SIZE - 1)], 0)) {
		c->smc = true;
		c->code_epoch++;
	}
}

static inline uint64_t mem_read(struct cpu *c, uint64_t lin, int size)
{
	struct tlb_entry *e = tlb_entry(c, lin);
	if (__builtin_expect(e->tag_r == ((lin & ~0xfffull) | 1) && (lin & 0xfff) + size <= 0x1000, 1)) {
		const void *p = (const void *)(uintptr_t)(lin + e->addend);
		uint8_t b;
		uint16_t w;
		uint32_t d;
		uint64_t q;
		switch (size) {
		case 1: memcpy(&b, p, 1); return b;
		case 2: memcpy(&w, p, 2); return w;
		case 4: memcpy(&d, p, 4); return d;
		default: memcpy(&q, p, 8); return q;
		}
	}
	return mem_read_slow(c, lin, size);
}

static inline void mem_write(struct cpu *c, uint64_t lin, uint64_t val, int size)
{
	struct tlb_entry *e = tlb_entry(c, lin);
	if (__builtin_expect(e->tag_w == ((lin & ~0xfffull) | 1) && (lin & 0xfff) + size <= 0x1000, 1)) {
		uintptr_t hp = lin + e->addend;
		uint8_t b = (uint8_t)val;
		uint16_t w = (uint16_t)val;
		uint32_t d = (uint32_t)val;
		code_store(c, hp);
		switch (size) {
		case 1: memcpy((void *)hp, &b, 1); break;
		case 2: memcpy((void *)hp, &w, 2); break;
		case 4: memcpy((void *)hp, &d, 4); break;
		default: memcpy((void *)hp, &val, 8); break;
		}
		return;
	}
	mem_write_slow(c, lin, val, size);
}
void mem_read_buf(struct cpu *c, uint64_t lin, void *buf, int len);
void mem_write_buf(struct cpu *c, uint64_t lin, const void *buf, int len);
/* Host pointer for a naturally aligned access of size bytes that does not
 * cross a page and is plain RAM; NULL otherwise (then use mem_read). Faults
 * like the access would. Used for atomic read-modify-write. */
void *mem_ptr(struct cpu *c, uint64_t lin, int size, bool write);
/* instruction fetch: host pointer to the byte at lin (the rest of its page
 * follows), or NULL when the page is not RAM; then mem_fetch_mmio */
const uint8_t *mem_fetch_slow(struct cpu *c, uint64_t lin);
static inline const uint8_t *mem_fetch_ptr(struct cpu *c, uint64_t lin)
{
	struct tlb_entry *e = tlb_entry(c, lin);
	if (__builtin_expect(e->tag_x == ((lin & ~0xfffull) | 1), 1))
		return (const uint8_t *)(uintptr_t)(lin + e->addend);
	return mem_fetch_slow(c, lin);
}
uint8_t mem_fetch_mmio(struct cpu *c, uint64_t lin);
/* physical access (no paging), for page walks and descriptor tables */
uint64_t phys_read(struct cpu *c, uint64_t gpa, int size);
void phys_write(struct cpu *c, uint64_t gpa, uint64_t val, int size);
void tlb_flush(struct cpu *c);
/* a CR3 load: the entries of global pages stay (CR4.PGE) */
void tlb_flush_nonglobal(struct cpu *c);
void tlb_flush_page(struct cpu *c, uint64_t lin);
/* Translate without side effects besides A/D bits; returns false and sets
 * *err (page-fault error code) when the access would fault. */
bool mmu_translate(struct cpu *c, uint64_t lin, int access, uint64_t *gpa, uint32_t *err);
#define ACC_R 0
#define ACC_W 1
#define ACC_X 2
#define ACC_USER 4     /* force a user-mode check */
#define ACC_SUPER 8    /* implicit supervisor access (descriptor tables) */

/* segment:offset to linear, with the checks 64-bit mode still makes */
static inline uint64_t seg_lin(struct cpu *c, int seg, uint64_t off)
{
	if (c->mode == 64)
		return (seg == S_FS || seg == S_GS) ? off + c->seg[seg].base : off;
	return (uint32_t)(off + c->seg[seg].base);
}

/* operand helpers for instruction families (inline: every instruction
 * uses them) */

/* bits 63:47 all equal: canonical with 48-bit linear addresses (the CPU
 * model has no LA57) */
static inline bool lin_canonical(uint64_t lin)
{
	return (int64_t)(lin << 16) >> 16 == (int64_t)lin;
}

/* In 64-bit mode a non-canonical address through SS raises #SS(0), through
 * any other segment #GP(0) (mmu.c) */
static inline uint64_t ss_canonical(struct cpu *c, uint64_t lin)
{
	if (c->mode == 64 && !lin_canonical(lin))
		cpu_fault(c, EXC_SS, 0);
	return lin;
}

static inline uint64_t insn_ea_lin(struct cpu *c, const struct insn *in)
{
	uint64_t lin = seg_lin(c, in->seg, in->ea);
	return in->seg == S_SS ? ss_canonical(c, lin) : lin;
}

static inline uint64_t reg_read(struct cpu *c, int reg, int size, bool rex)
{
	switch (size) {
	case 1:
		if (!rex && reg >= 4 && reg < 8)
			return (c->r[reg - 4] >> 8) & 0xff;
		return c->r[reg] & 0xff;
	case 2: return c->r[reg] & 0xffff;
	case 4: return c->r[reg] & 0xffffffff;
	default: return c->r[reg];
	}
}

static inline void reg_write(struct cpu *c, int reg, uint64_t val, int size, bool rex)
{
	switch (size) {
	case 1:
		if (!rex && reg >= 4 && reg < 8)
			c->r[reg - 4] = (c->r[reg - 4] & ~0xff00ull) | ((val & 0xff) << 8);
		else
			c->r[reg] = (c->r[reg] & ~0xffull) | (val & 0xff);
		break;
	case 2: c->r[reg] = (c->r[reg] & ~0xffffull) | (val & 0xffff); break;
	case 4: c->r[reg] = (uint32_t)val; break;
	default: c->r[reg] = val; break;
	}
}

static inline uint64_t rm_read(struct cpu *c, const struct insn *in, int size)
{
	if (in->is_mem)
		return mem_read(c, insn_ea_lin(c, in), size);
	return reg_read(c, in->rm, size, in->rex);
}

static inline void rm_write(struct cpu *c, const struct insn *in, uint64_t val, int size)
{
	if (in->is_mem)
		mem_write(c, insn_ea_lin(c, in), val, size);
	else
		reg_write(c, in->rm, val, size, in->rex);
}


/* control registers and modes */
void cpu_set_cr0(struct cpu *c, uint64_t v);
void cpu_set_cr3(struct cpu *c, uint64_t v);
void cpu_set_cr4(struct cpu *c, uint64_t v);
void cpu_set_efer(struct cpu *c, uint64_t v);
void cpu_update_mode(struct cpu *c);
void cpu_load_seg(struct cpu *c, int seg, uint16_t sel); /* protected-mode load with checks */
void cpu_set_seg_flat(struct cpu *c, int seg, uint16_t sel, uint16_t attr);

/* Decode at c->rip into scratch (faults like instruction fetch), with the
 * memory operand's address computed; returns scratch. */
struct insn *insn_decode(struct cpu *c, struct insn *scratch);
/* the same without the address (for cached blocks), and the address */
void insn_decode_static(struct cpu *c, struct insn *in);

/* the memory operand's effective address from the decoded form */
static inline void insn_ea(struct cpu *c, struct insn *in)
{
	uint64_t ea = (uint64_t)in->disp;
	if (in->base >= 0)
		ea += c->r[in->base];
	if (in->index >= 0)
		ea += c->r[in->index] << in->scale;
	if (in->riprel)
		ea += c->rip + in->len;
	if (in->addrsize == 4)
		ea = (uint32_t)ea;
	else if (in->addrsize == 2)
		ea = (uint16_t)ea;
	in->ea = ea;
}


/* block.c: the decoded-block cache */
/* *code_map: the cache's map of code pages (cpu->code_map) */
struct block_cache *block_cache_create(uint8_t **code_map);
void block_cache_destroy(struct block_cache *bc);
/* Run the block at c->rip (decoding it on a miss), and the blocks after it
 * until an event, TF, hlt or icount reaching end; false when no block could
 * be made at c->rip (the caller steps one instruction). */
bool block_exec(struct cpu *c, uint64_t end);
/* execute one decoded instruction; the families */
void exec_insn(struct cpu *c, struct insn *in);
/* choose in->fn for a decoded instruction in this CPU mode; ends_block:
 * the block ends after it (block.c) */
void insn_bind(struct cpu *c, struct insn *in, bool ends_block);
/* SSE/MMX (map 1..3 vector opcodes) and x87 (D8..DF): return false for an
 * opcode they do not implement (the caller raises #UD) */
bool sse_exec(struct cpu *c, struct insn *in);
bool x87_exec(struct cpu *c, struct insn *in);
/* fxsave / fxrstor / ldmxcsr / stmxcsr / xsave family (0F AE) */
bool fx_exec(struct cpu *c, struct insn *in);

/* the guest-visible CPU model, shared by both engines (cpuid.c, msr.c) */
struct cpuid_result {
	uint32_t eax, ebx, ecx, edx;
};
/* the CPUID model; personality (enum vm_personality) chooses the
 * hypervisor leaves at 0x40000000 */
void cpuid_query(int personality, int cpu_index, uint32_t leaf, uint32_t subleaf, struct cpuid_result *r);
/* MSRs the CPU core holds; other MSRs go to bus.msr_read/msr_write */
bool msr_read(struct cpu *c, uint32_t msr, uint64_t *val);
bool msr_write(struct cpu *c, uint32_t msr, uint64_t val);

/* debug: print an instruction with capstone, best effort */
void cpu_disasm(const uint8_t *bytes, int len, uint64_t rip, char *out, int outlen);
void cpu_dump(struct cpu *c, FILE *f);

#endif
