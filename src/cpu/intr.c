/* The run loop, exceptions and interrupts: delivery through the IDT in long,
 * protected and real mode, double and triple faults, the interrupt shadow,
 * NMI, and external interrupts from the interrupt controller. */
#include <capstone/capstone.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"
#include "cpu/exec.h"

void cpu_init(struct cpu *c, int index)
{
	memset(c, 0, sizeof(*c));
	c->index = index;
	c->blocks = block_cache_create(&c->code_map);
	cpu_reset(c);
}

void cpu_reset(struct cpu *c)
{
	struct cpu_bus bus = c->bus;
	int index = c->index;
	bool trace = c->trace_ud;
	memset(c, 0, offsetof(struct cpu, bus));
	c->bus = bus;
	c->index = index;
	c->trace_ud = trace;
	/* the code may have changed (INIT, SIPI with a new trampoline) */
	c->slice_ended = false;
	c->rflags = 2;
	c->rip = 0xfff0;
	c->cr0 = CR0_ET | CR0_CD | CR0_NW;
	for (int s = 0; s < 6; s++) {
		c->seg[s].limit = 0xffff;
		c->seg[s].attr = SEG_ATTR_P | 0x13;
	}
	c->seg[S_CS].sel = 0xf000;
	c->seg[S_CS].base = 0xffff0000;
	c->seg[S_CS].attr = SEG_ATTR_P | 0x1b;
	c->gdtr.limit = c->idtr.limit = 0xffff;
	c->ldtr.limit = c->tr.limit = 0xffff;
	c->ldtr.attr = SEG_ATTR_P | 0x2;
	c->tr.attr = SEG_ATTR_P | 0xb;
	c->r[R_RDX] = 0x600; /* processor signature, as after reset */
	c->fx.fcw = 0x37f;
	c->fx.mxcsr = 0x1f80;
	c->fx.mxcsr_mask = 0xffff;
	c->pat = 0x0007040600070406ull;
	c->misc_enable = 1; /* fast strings */
	c->xcr0 = 1;
	c->mode = 16;
	c->cur_exc = -1;
}

__attribute__((noreturn)) void cpu_fault(struct cpu *c, int vector, uint32_t errcode)
{
	c->pending_exc = vector;
	c->pending_err = errcode;
	longjmp(c->fault_jmp, 1);
}

/* the bytes at rip (up to nbytes of them shown) and their disassembly,
 * read without faulting, for diagnostics */
static void print_code(struct cpu *c, uint64_t rip, int nbytes, FILE *f)
{
	uint8_t b[15];
	int n = 0;
	uint64_t lin = seg_lin(c, S_CS, rip);
	for (; n < 15; n++) {
		uint64_t gpa;
		uint32_t err;
		if (!mmu_translate(c, lin + n, ACC_R | ACC_SUPER, &gpa, &err))
			break;
		b[n] = (uint8_t)phys_read(c, gpa, 1);
	}
	char text[128];
	cpu_disasm(b, n, rip, text, sizeof(text));
	for (int i = 0; i < n && i < nbytes; i++)
		fprintf(f, " %02x", b[i]);
	fprintf(f, "  %s\n", text);
}

__attribute__((noreturn)) void cpu_ud(struct cpu *c)
{
	if (c->trace_ud) {
		fprintf(stderr, "accord: cpu%d: #UD at %#" PRIx64 ":", c->index, c->insn_rip);
		print_code(c, c->insn_rip, 8, stderr);
	}
	cpu_fault(c, EXC_UD, 0);
}

static bool has_error_code(int v)
{
	return v == EXC_DF || (v >= EXC_TS && v <= EXC_PF) || v == EXC_AC;
}

static bool contributory(int v)
{
	return v == EXC_DE || (v >= EXC_TS && v <= EXC_GP);
}

static void deliver_real(struct cpu *c, int vector, uint64_t ret)
{
	uint64_t ent = mem_read(c, c->idtr.base + vector * 4, 4);
	push(c, c->rflags, 2);
	push(c, c->seg[S_CS].sel, 2);
	push(c, ret, 2);
	c->rflags &= ~(uint64_t)(F_IF | F_TF | F_AC);
	c->seg[S_CS].sel = ent >> 16;
	c->seg[S_CS].base = (ent >> 16) << 4;
	c->rip = ent & 0xffff;
}

/* Deliver through the IDT. Traps and software interrupts return to
 * next_rip, faults to the start of the faulting instruction. */
void cpu_deliver(struct cpu *c, int vector, bool has_err, uint32_t err, bool soft, uint64_t ret)
{
	if (!(c->cr0 & CR0_PE)) {
		deliver_real(c, vector, ret);
		return;
	}
	bool lm = c->efer & EFER_LMA;
	int gsz = lm ? 16 : 8;
	uint32_t idt_err = vector * 8 + 2 + (soft ? 0 : 1);
	if ((uint32_t)vector * gsz + gsz - 1 > c->idtr.limit)
		cpu_fault(c, EXC_GP, idt_err);
	uint64_t lo = mem_read_sys(c, c->idtr.base + vector * gsz, 8);
	uint64_t hi = lm ? mem_read_sys(c, c->idtr.base + vector * gsz + 8, 8) : 0;
	int type = (lo >> 40) & 0xf, dpl = (lo >> 45) & 3;
	bool present = (lo >> 47) & 1;
	bool gate_ok = lm ? (type == 0xe || type == 0xf) : (type == 0xe || type == 0xf || type == 0x6 || type == 0x7);
	if (!gate_ok)
		cpu_fault(c, EXC_GP, idt_err);
	if (soft && dpl < c->cpl)
		cpu_fault(c, EXC_GP, idt_err);
	if (!present)
		cpu_fault(c, EXC_NP, idt_err);
	uint16_t sel = (lo >> 16) & 0xffff;
	uint64_t target = (lo & 0xffff) | ((lo >> 32) & 0xffff0000);
	if (lm)
		target |= (hi & 0xffffffff) << 32;
	if ((sel & ~3u) == 0)
		cpu_gp0(c);
	uint64_t d = desc_read(c, sel, EXC_GP);
	int cs_dpl = (d >> 45) & 3;
	if (!((d >> 44) & 1) || !((d >> 43) & 1) || cs_dpl > c->cpl)
		cpu_fault(c, EXC_GP, sel & ~3u);
	if (!((d >> 47) & 1))
		cpu_fault(c, EXC_NP, sel & ~3u);
	bool conforming = (d >> 42) & 1;
	int new_cpl = conforming ? c->cpl : cs_dpl;
	int ist = lm ? lo >> 32 & 7 : 0;

	uint64_t old_ss = c->seg[S_SS].sel, old_rsp = c->r[R_RSP];
	uint64_t old_cs = c->seg[S_CS].sel, old_flags = c->rflags;
	uint64_t rsp = old_rsp;
	bool stack_switch = new_cpl < c->cpl;
	if (lm) {
		if (ist)
			rsp = mem_read_sys(c, c->tr.base + 0x24 + 8 * (ist - 1), 8);
		else if (stack_switch)
			rsp = mem_read_sys(c, c->tr.base + 4 + 8 * new_cpl, 8);
		rsp &= ~0xfull;
		uint64_t frame[6];
		int n = 0;
		frame[n++] = old_ss;
		frame[n++] = old_rsp;
		frame[n++] = old_flags;
		frame[n++] = old_cs;
		frame[n++] = ret;
		if (has_err)
			frame[n++] = err;
		/* write the whole frame first so a fault leaves state intact;
		 * the frame is written with the new CPL's rights */
		for (int i = 0; i < n; i++) {
			if (new_cpl < 3)
				mem_write_sys(c, rsp - 8 * (i + 1), frame[i], 8);
			else
				mem_write(c, rsp - 8 * (i + 1), frame[i], 8);
		}
		rsp -= 8 * n;
		if (stack_switch) {
			c->seg[S_SS].sel = new_cpl;
			c->seg[S_SS].attr = 0;
			c->seg[S_SS].base = 0;
		}
		c->r[R_RSP] = rsp;
		cpu_load_cs(c, sel, d, new_cpl);
		c->rip = target;
	} else {
		int gsize = (type & 8) ? 4 : 2;
		uint64_t ss_sel = old_ss;
		if (stack_switch) {
			rsp = mem_read_sys(c, c->tr.base + 4 + 8 * new_cpl, 4);
			ss_sel = mem_read_sys(c, c->tr.base + 8 + 8 * new_cpl, 2);
			/* from here on the accesses are the new CPL's: a fault
			 * while pushing becomes a double fault there */
			c->cpl = new_cpl;
			cpu_load_seg(c, S_SS, (uint16_t)ss_sel);
			c->r[R_RSP] = rsp;
			push(c, old_ss, gsize);
			push(c, old_rsp, gsize);
		}
		push(c, old_flags, gsize);
		push(c, old_cs, gsize);
		push(c, ret, gsize);
		if (has_err)
			push(c, err, gsize);
		cpu_load_cs(c, sel, d, new_cpl);
		c->rip = gsize == 4 ? (uint32_t)target : (uint16_t)target;
	}
	c->rflags &= ~(uint64_t)(F_TF | F_NT | F_RF | F_VM);
	if ((type & 1) == 0)
		c->rflags &= ~(uint64_t)F_IF; /* interrupt gate */
}

/* A fault unwound to cpu_run: deliver it, turning a fault during delivery
 * into a double fault and a fault during that into a shutdown. */
static bool deliver_fault(struct cpu *c)
{
	int v = c->pending_exc;
	uint32_t err = c->pending_err;
	c->rip = c->insn_rip;
	c->r[R_RSP] = c->insn_rsp;
	if (c->cur_exc >= 0) {
		int prev = c->cur_exc;
		if (prev == EXC_DF)
			return false;
		if ((contributory(prev) && contributory(v)) ||
		    (prev == EXC_PF && (contributory(v) || v == EXC_PF))) {
			v = EXC_DF;
			err = 0;
		}
	}
	c->cur_exc = v;
	c->insn_rsp = c->r[R_RSP];
	cpu_deliver(c, v, has_error_code(v) && (c->cr0 & CR0_PE), err, false, c->rip);
	c->cur_exc = -1;
	return true;
}

/* true when an interrupt was taken */
static bool take_interrupt(struct cpu *c)
{
	if (c->nmi_pending && !c->nmi_blocked) {
		c->nmi_pending = false;
		c->nmi_blocked = true;
		c->halted = false;
		c->cur_exc = EXC_NMI;
		c->insn_rip = c->rip;
		c->insn_rsp = c->r[R_RSP];
		cpu_deliver(c, EXC_NMI, false, 0, false, c->rip);
		c->cur_exc = -1;
		return true;
	}
	if (!(c->rflags & F_IF))
		return false;
	if (c->bus.intr_vector(c->bus.opaque, false) < 0)
		return false;
	int v = c->bus.intr_vector(c->bus.opaque, true);
	if (v < 0)
		return false;
	c->halted = false;
	c->cur_exc = v;
	c->insn_rip = c->rip;
	c->insn_rsp = c->r[R_RSP];
	cpu_deliver(c, v, false, 0, false, c->rip);
	c->cur_exc = -1;
	return true;
}

/* RFLAGS.TF was set when the instruction began: #DB (a trap) after it,
 * except after a software interrupt, whose handler is not traced, and
 * after mov ss / pop ss, which delay it by one instruction. */
static void single_step_trap(struct cpu *c, const struct insn *in)
{
	if (in->map == 0) {
		switch (in->op) {
		case 0xCC: case 0xCD: case 0xF1:
			return;
		case 0xCE: /* into: only when it raised #OF (and so cleared TF) */
			if (!(c->rflags & F_TF))
				return;
			break;
		case 0x17:
			return;
		case 0x8E:
			if ((in->reg & 7) == S_SS)
				return;
			break;
		}
	}
	if (c->halted)
		return;
	c->dr[6] |= 1u << 14; /* BS */
	c->cur_exc = EXC_DB;
	c->insn_rip = c->rip;
	c->insn_rsp = c->r[R_RSP];
	cpu_deliver(c, EXC_DB, false, 0, false, c->rip);
	c->cur_exc = -1;
}

static enum cpu_stop run(struct cpu *c, uint64_t max_insns)
{
	volatile uint64_t end = c->icount + max_insns;
	c->intr_poke = 1;
	if (setjmp(c->fault_jmp)) {
		if (!deliver_fault(c))
			return STOP_SHUTDOWN;
		/* a single step that faults ends at the handler, not in it */
		if (c->single_step) {
			c->icount++;
			return STOP_DEBUG;
		}
		/* faults count against the budget so a fault loop still
		 * returns to the engine */
		if (++c->icount >= end)
			return STOP_BUDGET;
	}
	for (;;) {
		if (__builtin_expect(c->intr_poke | c->stop_request | c->halted, 0)) {
			if (c->stop_request)
				return STOP_REQUEST;
			/* single steps hold interrupts off (as QEMU's gdbstub
			 * does) unless they wake a halted CPU */
			if (c->intr_poke && !c->intr_shadow && (!c->single_step || c->halted)) {
				c->intr_poke = 0;
				take_interrupt(c);
			}
			if (c->halted)
				return STOP_HLT;
		}
		if (__builtin_expect(c->nbreak != 0 || c->single_step, 0)) {
			for (int i = 0; i < c->nbreak; i++)
				if (c->breaks[i] == c->rip && c->icount != c->resume_icount)
					return STOP_DEBUG;
		}
		/* the fast path: a cached block; TF and the debugger step
		 * one instruction at a time */
		if (__builtin_expect(c->blocks && !(c->rflags & F_TF) && !c->single_step && !c->nbreak, 1) &&
		    block_exec(c, end)) {
			if (c->icount >= end)
				return STOP_BUDGET;
			continue;
		}
		struct insn scratch;
		c->insn_rip = c->rip;
		c->insn_rsp = c->r[R_RSP];
		c->intr_shadow = false;
		bool tf = c->rflags & F_TF;
		struct insn *in = insn_decode(c, &scratch);
		exec_insn(c, in);
		/* it may have been serializing (block.c) */
		c->code_epoch++;
		c->icount++;
		if (__builtin_expect(tf, 0))
			single_step_trap(c, in);
		if (c->single_step)
			return STOP_DEBUG;
		if (c->icount >= end)
			return STOP_BUDGET;
	}
}

enum cpu_stop cpu_run(struct cpu *c, uint64_t max_insns)
{
	/* Cached blocks are compared with memory again after any stop but
	 * the end of a slice: the VMM may have written guest memory (the gdb
	 * stub, a snapshot) while this CPU was stopped. Between slices it
	 * only polls timers; other writers are seen at the serializing
	 * instructions and MMIO accesses that move the epoch (block.c). */
	if (!c->slice_ended)
		c->code_epoch++;
	enum cpu_stop r = run(c, max_insns);
	c->slice_ended = r == STOP_BUDGET;
	return r;
}

enum cpu_stop cpu_step(struct cpu *c, struct insn *in, int *fault)
{
	*fault = -1;
	in->len = 0;
	c->pending_exc = -1;
	if (setjmp(c->fault_jmp)) {
		*fault = c->pending_exc;
		if (!deliver_fault(c))
			return STOP_SHUTDOWN;
		c->icount++;
		return STOP_NONE;
	}
	c->insn_rip = c->rip;
	c->insn_rsp = c->r[R_RSP];
	c->intr_shadow = false;
	bool tf = c->rflags & F_TF;
	insn_decode(c, in);
	exec_insn(c, in);
	c->code_epoch++;
	c->icount++;
	if (tf)
		single_step_trap(c, in);
	return c->halted ? STOP_HLT : STOP_NONE;
}

/* pending_exc of an instruction abandoned by the bus */
#define EXC_ABANDON (-2)

void cpu_abandon(struct cpu *c)
{
	cpu_fault(c, EXC_ABANDON, 0);
}

enum cpu_stop cpu_step_if(struct cpu *c, struct insn *in, bool (*allow)(void *opaque, const struct insn *in),
			  void *opaque)
{
	uint64_t r[16], rip = c->rip, rflags = c->rflags, cr2 = c->cr2;
	struct fxstate fx;

	in->len = 0;
	if ((c->rflags & F_TF) || c->intr_shadow || c->halted)
		return STOP_REQUEST;
	memcpy(r, c->r, sizeof(r));
	memcpy(&fx, &c->fx, sizeof(fx));
	c->pending_exc = -1;
	if (setjmp(c->fault_jmp)) {
		memcpy(c->r, r, sizeof(r));
		memcpy(&c->fx, &fx, sizeof(fx));
		c->rip = rip;
		c->rflags = rflags;
		c->cr2 = cr2;
		c->pending_exc = -1;
		return STOP_REQUEST;
	}
	c->insn_rip = c->rip;
	c->insn_rsp = c->r[R_RSP];
	insn_decode(c, in);
	if (!allow(opaque, in))
		return STOP_REQUEST;
	exec_insn(c, in);
	c->code_epoch++;
	c->icount++;
	return STOP_NONE;
}

void cpu_disasm(const uint8_t *bytes, int len, uint64_t rip, char *out, int outlen)
{
	csh h;
	cs_insn *insn;
	snprintf(out, outlen, "(bad)");
	if (cs_open(CS_ARCH_X86, CS_MODE_64, &h) != CS_ERR_OK)
		return;
	if (cs_disasm(h, bytes, len, rip, 1, &insn) == 1) {
		snprintf(out, outlen, "%s %s", insn->mnemonic, insn->op_str);
		cs_free(insn, 1);
	}
	cs_close(&h);
}

void cpu_dump(struct cpu *c, FILE *f)
{
	static const char *names[16] = { "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
					 "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15" };
	fprintf(f, "cpu%d: rip=%016" PRIx64 " rflags=%08" PRIx64 " cpl=%d mode=%d\n", c->index, c->rip,
		c->rflags, c->cpl, c->mode);
	for (int i = 0; i < 16; i++)
		fprintf(f, "  %-3s=%016" PRIx64 "%s", names[i], c->r[i], i % 4 == 3 ? "\n" : "");
	fprintf(f, "  cr0=%08" PRIx64 " cr2=%016" PRIx64 " cr3=%016" PRIx64 " cr4=%08" PRIx64 " efer=%" PRIx64 "\n",
		c->cr0, c->cr2, c->cr3, c->cr4, c->efer);
	fprintf(f, "  cs=%04x ss=%04x ds=%04x es=%04x fs=%04x gs=%04x fsbase=%" PRIx64 " gsbase=%" PRIx64 "\n",
		c->seg[S_CS].sel, c->seg[S_SS].sel, c->seg[S_DS].sel, c->seg[S_ES].sel, c->seg[S_FS].sel,
		c->seg[S_GS].sel, c->seg[S_FS].base, c->seg[S_GS].base);
	fprintf(f, "  code:");
	print_code(c, c->rip, 12, f);
}
