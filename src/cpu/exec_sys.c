/* System instructions: segment and descriptor-table handling, control and
 * debug registers, MSRs, CPUID, far transfers, iret, syscall/sysret, and
 * the rest of the 0F map that is not vector arithmetic. */
#include <string.h>

#include "cpu/alu.h"
#include "cpu/cpu.h"
#include "cpu/exec.h"

#define DESC_TYPE(d) (((d) >> 40) & 0xf)
#define DESC_S(d) (((d) >> 44) & 1)
#define DESC_DPL(d) ((int)(((d) >> 45) & 3))
#define DESC_P(d) (((d) >> 47) & 1)
#define DESC_L(d) (((d) >> 53) & 1)
#define DESC_DB(d) (((d) >> 54) & 1)
#define TYPE_CODE 8
#define TYPE_CONFORMING 4 /* code */
#define TYPE_READ 2       /* code: readable; data: writable */

uint64_t desc_read(struct cpu *c, uint16_t sel, int exc)
{
	uint64_t base;
	uint32_t limit;
	if (sel & 4) {
		if (!(c->ldtr.attr & SEG_ATTR_P))
			cpu_fault(c, exc, sel & ~3u);
		base = c->ldtr.base;
		limit = c->ldtr.limit;
	} else {
		base = c->gdtr.base;
		limit = c->gdtr.limit;
	}
	if ((uint32_t)(sel & ~7u) + 7 > limit)
		cpu_fault(c, exc, sel & ~3u);
	return mem_read_sys(c, base + (sel & ~7u), 8);
}

/* accessed bit, as the processor sets it on a segment load */
static void desc_set_accessed(struct cpu *c, uint16_t sel, uint64_t d)
{
	if (d & (1ull << 40))
		return;
	uint64_t base = (sel & 4) ? c->ldtr.base : c->gdtr.base;
	mem_write_sys(c, base + (sel & ~7u) + 5, ((d >> 40) & 0xff) | 1, 1);
}

void seg_from_desc(struct seg *s, uint16_t sel, uint64_t d)
{
	uint32_t limit = (d & 0xffff) | ((d >> 32) & 0xf0000);
	if (d & (1ull << 55))
		limit = (limit << 12) | 0xfff;
	s->sel = sel;
	s->base = ((d >> 16) & 0xffffff) | ((d >> 32) & 0xff000000);
	s->limit = limit;
	s->attr = ((d >> 40) & 0xff) | (((d >> 52) & 0xf) << 8);
}

void cpu_set_seg_flat(struct cpu *c, int seg, uint16_t sel, uint16_t attr)
{
	c->seg[seg].sel = sel;
	c->seg[seg].base = 0;
	c->seg[seg].limit = 0xffffffff;
	c->seg[seg].attr = attr;
}

void cpu_update_mode(struct cpu *c)
{
	if (!(c->cr0 & CR0_PE))
		c->mode = 16;
	else if ((c->efer & EFER_LMA) && (c->seg[S_CS].attr & SEG_ATTR_L))
		c->mode = 64;
	else
		c->mode = (c->seg[S_CS].attr & SEG_ATTR_DB) ? 32 : 16;
}

void cpu_load_cs(struct cpu *c, uint16_t sel, uint64_t d, int cpl)
{
	seg_from_desc(&c->seg[S_CS], (sel & ~3u) | cpl, d);
	c->cpl = cpl;
	cpu_update_mode(c);
}

void cpu_load_seg(struct cpu *c, int seg, uint16_t sel)
{
	if (!(c->cr0 & CR0_PE) || (c->rflags & F_VM)) {
		c->seg[seg].sel = sel;
		c->seg[seg].base = (uint64_t)sel << 4;
		c->seg[seg].limit = 0xffff;
		c->seg[seg].attr = SEG_ATTR_P | 0x13;
		return;
	}
	if ((sel & ~3u) == 0) {
		if (seg == S_SS && !(c->mode == 64 && c->cpl != 3 && (sel & 3) == c->cpl))
			cpu_gp0(c);
		c->seg[seg].sel = sel;
		c->seg[seg].base = 0;
		c->seg[seg].limit = 0;
		c->seg[seg].attr = 0; /* unusable */
		return;
	}
	uint64_t d = desc_read(c, sel, EXC_GP);
	int rpl = sel & 3, dpl = DESC_DPL(d), type = DESC_TYPE(d);
	if (!DESC_S(d))
		cpu_fault(c, EXC_GP, sel & ~3u);
	if (seg == S_SS) {
		if ((type & TYPE_CODE) || !(type & TYPE_READ) || rpl != c->cpl || dpl != c->cpl)
			cpu_fault(c, EXC_GP, sel & ~3u);
		if (!DESC_P(d))
			cpu_fault(c, EXC_SS, sel & ~3u);
	} else {
		if ((type & TYPE_CODE) && !(type & TYPE_READ))
			cpu_fault(c, EXC_GP, sel & ~3u);
		if (!((type & TYPE_CODE) && (type & TYPE_CONFORMING)) && (dpl < c->cpl || dpl < rpl))
			cpu_fault(c, EXC_GP, sel & ~3u);
		if (!DESC_P(d))
			cpu_fault(c, EXC_NP, sel & ~3u);
	}
	desc_set_accessed(c, sel, d);
	seg_from_desc(&c->seg[seg], sel, d);
}

/* checks for a far transfer to a code segment at the same privilege; calls
 * through call gates and task switches are not supported (#GP) */
static uint64_t code_desc(struct cpu *c, uint16_t sel)
{
	if ((sel & ~3u) == 0)
		cpu_gp0(c);
	uint64_t d = desc_read(c, sel, EXC_GP);
	int type = DESC_TYPE(d), dpl = DESC_DPL(d);
	if (!DESC_S(d) || !(type & TYPE_CODE))
		cpu_fault(c, EXC_GP, sel & ~3u);
	if (type & TYPE_CONFORMING) {
		if (dpl > c->cpl)
			cpu_fault(c, EXC_GP, sel & ~3u);
	} else if ((sel & 3) > c->cpl || dpl != c->cpl) {
		cpu_fault(c, EXC_GP, sel & ~3u);
	}
	if (!DESC_P(d))
		cpu_fault(c, EXC_NP, sel & ~3u);
	return d;
}

void far_jump(struct cpu *c, uint16_t sel, uint64_t off)
{
	if (!(c->cr0 & CR0_PE)) {
		c->seg[S_CS].sel = sel;
		c->seg[S_CS].base = (uint64_t)sel << 4;
		c->rip = (uint16_t)off;
		return;
	}
	uint64_t d = code_desc(c, sel);
	cpu_load_cs(c, sel, d, c->cpl);
	c->rip = c->mode == 64 ? off : (uint32_t)off;
}

void far_call(struct cpu *c, uint16_t sel, uint64_t off, int size, uint64_t next)
{
	if (!(c->cr0 & CR0_PE)) {
		push(c, c->seg[S_CS].sel, size);
		push(c, next, size);
		c->seg[S_CS].sel = sel;
		c->seg[S_CS].base = (uint64_t)sel << 4;
		c->rip = (uint16_t)off;
		return;
	}
	uint64_t d = code_desc(c, sel);
	push(c, c->seg[S_CS].sel, size);
	push(c, next, size);
	cpu_load_cs(c, sel, d, c->cpl);
	c->rip = c->mode == 64 ? off : (uint32_t)off;
}

/* return to the same or an outer privilege level */
void far_ret(struct cpu *c, int size, uint16_t pop_bytes)
{
	uint64_t rip = pop(c, size);
	uint16_t sel = (uint16_t)pop(c, size);
	if (!(c->cr0 & CR0_PE)) {
		c->seg[S_CS].sel = sel;
		c->seg[S_CS].base = (uint64_t)sel << 4;
		c->rip = (uint16_t)rip;
		c->r[R_RSP] += pop_bytes;
		return;
	}
	int rpl = sel & 3;
	if (rpl < c->cpl || (sel & ~3u) == 0)
		cpu_fault(c, EXC_GP, sel & ~3u);
	uint64_t d = desc_read(c, sel, EXC_GP);
	if (!DESC_S(d) || !(DESC_TYPE(d) & TYPE_CODE))
		cpu_fault(c, EXC_GP, sel & ~3u);
	if (!DESC_P(d))
		cpu_fault(c, EXC_NP, sel & ~3u);
	c->r[R_RSP] += pop_bytes;
	if (rpl > c->cpl) {
		uint64_t rsp = pop(c, size);
		uint16_t ss = (uint16_t)pop(c, size);
		cpu_load_cs(c, sel, d, rpl);
		cpu_load_seg(c, S_SS, ss);
		c->r[R_RSP] = rsp + pop_bytes;
	} else {
		cpu_load_cs(c, sel, d, c->cpl);
	}
	c->rip = c->mode == 64 ? rip : (uint32_t)rip;
}

void do_iret(struct cpu *c, int size)
{
	if (!(c->cr0 & CR0_PE)) {
		uint64_t rip = pop(c, size);
		uint16_t cs = (uint16_t)pop(c, size);
		uint64_t fl = pop(c, size);
		c->seg[S_CS].sel = cs;
		c->seg[S_CS].base = (uint64_t)cs << 4;
		c->rip = (uint16_t)rip;
		write_rflags(c, fl, size, true);
		return;
	}
	if (c->rflags & F_NT)
		cpu_gp0(c); /* task return: no task switching */
	uint64_t rip = pop(c, size);
	uint16_t cs = (uint16_t)pop(c, size);
	uint64_t fl = pop(c, size);
	int rpl = cs & 3;
	if ((cs & ~3u) == 0 || rpl < c->cpl)
		cpu_fault(c, EXC_GP, cs & ~3u);
	uint64_t d = desc_read(c, cs, EXC_GP);
	if (!DESC_S(d) || !(DESC_TYPE(d) & TYPE_CODE))
		cpu_fault(c, EXC_GP, cs & ~3u);
	if (!DESC_P(d))
		cpu_fault(c, EXC_NP, cs & ~3u);
	bool outer = rpl > c->cpl;
	if (c->mode == 64 || outer) {
		uint64_t rsp = pop(c, size);
		uint16_t ss = (uint16_t)pop(c, size);
		int old_cpl = c->cpl;
		/* RFLAGS is written with the old CPL's permissions */
		write_rflags(c, fl, size, true);
		cpu_load_cs(c, cs, d, rpl);
		if ((ss & ~3u) == 0 && c->mode == 64 && rpl != 3) {
			c->seg[S_SS].sel = ss;
			c->seg[S_SS].attr = 0;
		} else {
			cpu_load_seg(c, S_SS, ss);
		}
		c->r[R_RSP] = size == 8 ? rsp : (uint32_t)rsp;
		if (rpl > old_cpl) {
			/* data segments the outer level may not use become null */
			for (int s = S_ES; s <= S_GS; s++) {
				if (s == S_CS || s == S_SS)
					continue;
				int dpl = (c->seg[s].attr >> 5) & 3;
				bool conf_code = (c->seg[s].attr & 0xc) == 0xc && (c->seg[s].attr & 0x10);
				if ((c->seg[s].attr & SEG_ATTR_P) && !conf_code && dpl < rpl && (s != S_FS && s != S_GS)) {
					c->seg[s].sel = 0;
					c->seg[s].attr = 0;
				}
			}
		}
	} else {
		write_rflags(c, fl, size, true);
		cpu_load_cs(c, cs, d, rpl);
	}
	set_rip(c, rip, size);
	c->nmi_blocked = false;
}

void io_check(struct cpu *c, uint16_t port, int size)
{
	if (!(c->cr0 & CR0_PE) || c->cpl <= (int)((c->rflags >> 12) & 3))
		return;
	/* the TSS I/O permission bitmap */
	if ((c->tr.attr & 0xf) != 0x9 && (c->tr.attr & 0xf) != 0xb)
		cpu_gp0(c);
	if (c->tr.limit < 0x67)
		cpu_gp0(c);
	uint16_t iomap = (uint16_t)mem_read_sys(c, c->tr.base + 0x66, 2);
	uint32_t byte = iomap + port / 8;
	if (byte + 1 > c->tr.limit)
		cpu_gp0(c);
	uint16_t bits = (uint16_t)mem_read_sys(c, c->tr.base + byte, 2);
	if ((bits >> (port & 7)) & ((1u << size) - 1))
		cpu_gp0(c);
}

void bcd_adjust(struct cpu *c, uint8_t op)
{
	uint8_t al = c->r[R_RAX], old_al = al;
	bool cf = c->rflags & F_CF, af = c->rflags & F_AF;
	switch (op) {
	case 0x27: /* daa */
	case 0x2F: /* das */
		if ((al & 0xf) > 9 || af) {
			al = op == 0x27 ? al + 6 : al - 6;
			cf = cf || (op == 0x27 ? old_al > 0xf9 : old_al < 6);
			af = true;
		} else {
			af = false;
		}
		if (old_al > 0x99 || (c->rflags & F_CF)) {
			al = op == 0x27 ? al + 0x60 : al - 0x60;
			cf = true;
		} else {
			cf = false;
		}
		reg_write(c, R_RAX, al, 1, false);
		alu(c, ALU_OR, 1, al, 0); /* SF ZF PF from the result */
		break;
	default: { /* aaa / aas */
		uint16_t ax = c->r[R_RAX];
		if ((al & 0xf) > 9 || af) {
			ax = op == 0x37 ? ax + 0x106 : ax - 6;
			if (op == 0x3F)
				ax = (ax & 0xff) | ((uint16_t)((ax >> 8) - 1) << 8);
			af = cf = true;
		} else {
			af = cf = false;
		}
		ax &= 0xff0f;
		reg_write(c, R_RAX, ax, 2, false);
		break;
	}
	}
	c->rflags = (c->rflags & ~(uint64_t)(F_CF | F_AF)) | (cf ? F_CF : 0) | (af ? F_AF : 0);
}

/* ---- control registers ---- */

void cpu_set_cr0(struct cpu *c, uint64_t v)
{
	if (v >> 32)
		cpu_gp0(c);
	v |= CR0_ET;
	if ((v & CR0_PG) && !(v & CR0_PE))
		cpu_gp0(c);
	if ((v & CR0_NW) && !(v & CR0_CD))
		cpu_gp0(c);
	if ((v & CR0_PG) && !(c->cr0 & CR0_PG) && (c->efer & EFER_LME)) {
		if (!(c->cr4 & CR4_PAE))
			cpu_gp0(c);
		c->efer |= EFER_LMA;
	}
	if (!(v & CR0_PG) && (c->cr0 & CR0_PG) && (c->efer & EFER_LMA)) {
		if (c->mode == 64)
			cpu_gp0(c);
		c->efer &= ~(uint64_t)EFER_LMA;
	}
	if ((v ^ c->cr0) & (CR0_PG | CR0_WP | CR0_PE))
		tlb_flush(c);
	c->cr0 = v;
	cpu_update_mode(c);
}

void cpu_set_cr3(struct cpu *c, uint64_t v)
{
	c->cr3 = v & ~(1ull << 63); /* bit 63: PCID no-flush, PCID is not advertised */
	tlb_flush_nonglobal(c);
}

/* CR4 bits accord implements: VME/PVI are not (#GP) */
#define CR4_KNOWN (0x4 | 0x8 | CR4_PSE | CR4_PAE | 0x40 | CR4_PGE | 0x100 | CR4_OSFXSR | CR4_OSXMMEXCPT)

void cpu_set_cr4(struct cpu *c, uint64_t v)
{
	if (v & ~(uint64_t)CR4_KNOWN)
		cpu_gp0(c);
	if ((c->efer & EFER_LMA) && !(v & CR4_PAE))
		cpu_gp0(c);
	if ((v ^ c->cr4) & (CR4_PSE | CR4_PAE | CR4_PGE))
		tlb_flush(c);
	c->cr4 = v;
}

void cpu_set_efer(struct cpu *c, uint64_t v)
{
	uint64_t known = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;
	if (v & ~known)
		cpu_gp0(c);
	if ((c->cr0 & CR0_PG) && ((v ^ c->efer) & EFER_LME))
		cpu_gp0(c);
	v = (v & ~(uint64_t)EFER_LMA) | (c->efer & EFER_LMA);
	if ((v ^ c->efer) & EFER_NXE)
		tlb_flush(c);
	c->efer = v;
}

/* ---- descriptor tables ---- */

static void load_tr_ldt(struct cpu *c, uint16_t sel, bool tr)
{
	if ((sel & ~3u) == 0) {
		if (tr)
			cpu_gp0(c);
		c->ldtr.sel = sel;
		c->ldtr.attr = 0;
		c->ldtr.base = 0;
		c->ldtr.limit = 0;
		return;
	}
	if (sel & 4)
		cpu_fault(c, EXC_GP, sel & ~3u);
	uint64_t d = desc_read(c, sel, EXC_GP);
	int type = DESC_TYPE(d);
	if (DESC_S(d) || (tr ? type != 9 && type != 1 : type != 2))
		cpu_fault(c, EXC_GP, sel & ~3u);
	if (!DESC_P(d))
		cpu_fault(c, EXC_NP, sel & ~3u);
	struct seg *s = tr ? &c->tr : &c->ldtr;
	seg_from_desc(s, sel, d);
	if (c->efer & EFER_LMA) {
		uint64_t hi = mem_read(c, c->gdtr.base + (sel & ~7u) + 8, 8);
		s->base |= (hi & 0xffffffff) << 32;
	}
	if (tr) {
		/* mark the TSS busy */
		uint64_t a = c->gdtr.base + (sel & ~7u) + 5;
		mem_write(c, a, mem_read(c, a, 1) | 2, 1);
		s->attr |= 2;
	}
}

static void group0f00(struct cpu *c, struct insn *in)
{
	if (c->mode == 16 && !(c->cr0 & CR0_PE))
		cpu_ud(c);
	switch (in->reg & 7) {
	case 0: /* sldt */
		rm_write(c, in, c->ldtr.sel, in->is_mem ? 2 : in->opsize);
		break;
	case 1: /* str */
		rm_write(c, in, c->tr.sel, in->is_mem ? 2 : in->opsize);
		break;
	case 2: case 3:
		if (c->cpl)
			cpu_gp0(c);
		load_tr_ldt(c, (uint16_t)rm_read(c, in, 2), (in->reg & 7) == 3);
		break;
	case 4: case 5: { /* verr / verw */
		uint16_t sel = (uint16_t)rm_read(c, in, 2);
		bool ok = false;
		if ((sel & ~3u) && (uint32_t)(sel & ~7u) + 7 <= ((sel & 4) ? c->ldtr.limit : c->gdtr.limit)) {
			uint64_t d = desc_read(c, sel, EXC_GP);
			int type = DESC_TYPE(d), dpl = DESC_DPL(d);
			bool conf = (type & TYPE_CODE) && (type & TYPE_CONFORMING);
			if (DESC_S(d) && (conf || (dpl >= c->cpl && dpl >= (sel & 3)))) {
				if ((in->reg & 7) == 4)
					ok = !(type & TYPE_CODE) || (type & TYPE_READ);
				else
					ok = !(type & TYPE_CODE) && (type & TYPE_READ);
			}
		}
		c->rflags = ok ? c->rflags | F_ZF : c->rflags & ~(uint64_t)F_ZF;
		break;
	}
	default:
		cpu_ud(c);
	}
}

static void group0f01(struct cpu *c, struct insn *in)
{
	if (in->mod == 3) {
		uint8_t m = in->bytes[in->len - 1];
		switch (m) {
		case 0xF8: /* swapgs */
			if (c->mode != 64)
				cpu_ud(c);
			if (c->cpl)
				cpu_gp0(c);
			{
				uint64_t t = c->seg[S_GS].base;
				c->seg[S_GS].base = c->kernel_gs_base;
				c->kernel_gs_base = t;
			}
			return;
		case 0xCA: case 0xCB: /* clac, stac */
			/* they exist where CR4.SMAP can be set: never on
			 * emu (CR4_KNOWN), on the kvm engine's steps where
			 * the host's KVM gives the guest SMAP */
			if (!(c->cr4 & CR4_SMAP) || c->cpl)
				cpu_ud(c);
			if (m == 0xCA)
				c->rflags &= ~(uint64_t)F_AC;
			else
				c->rflags |= F_AC;
			return;
		case 0xF9: { /* rdtscp */
			uint64_t t = c->bus.tsc(c->bus.opaque) + c->tsc_adjust;
			c->r[R_RAX] = (uint32_t)t;
			c->r[R_RDX] = t >> 32;
			c->r[R_RCX] = (uint32_t)c->tsc_aux;
			return;
		}
		}
		switch (in->reg & 7) {
		case 4: /* smsw r */
			reg_write(c, in->rm, c->cr0, in->opsize, false);
			return;
		case 6: /* lmsw r */
			if (c->cpl)
				cpu_gp0(c);
			cpu_set_cr0(c, (c->cr0 & ~0xeull) | (c->r[in->rm] & 0xf) | (c->cr0 & CR0_PE));
			return;
		}
		cpu_ud(c);
	}
	/* invlpg accesses nothing: no segment or canonical checks */
	uint64_t lin = (in->reg & 7) == 7 ? seg_lin(c, in->seg, in->ea) : insn_ea_lin(c, in);
	switch (in->reg & 7) {
	case 0: case 1: { /* sgdt / sidt */
		struct dtr *t = (in->reg & 7) == 0 ? &c->gdtr : &c->idtr;
		mem_write(c, lin, t->limit, 2);
		if (c->mode == 64)
			mem_write(c, lin + 2, t->base, 8);
		else
			mem_write(c, lin + 2, (uint32_t)t->base, 4);
		return;
	}
	case 2: case 3: { /* lgdt / lidt */
		if (c->cpl)
			cpu_gp0(c);
		uint16_t limit = (uint16_t)mem_read(c, lin, 2);
		uint64_t base = c->mode == 64 ? mem_read(c, lin + 2, 8) : mem_read(c, lin + 2, 4);
		if (c->mode != 64 && in->opsize == 2)
			base &= 0xffffff;
		if (c->mode == 64 && (int64_t)(base << 16) >> 16 != (int64_t)base)
			cpu_gp0(c);
		struct dtr *t = (in->reg & 7) == 2 ? &c->gdtr : &c->idtr;
		t->limit = limit;
		t->base = base;
		return;
	}
	case 4: /* smsw m16 */
		mem_write(c, lin, c->cr0, 2);
		return;
	case 6: /* lmsw m16 */
		if (c->cpl)
			cpu_gp0(c);
		cpu_set_cr0(c, (c->cr0 & ~0xeull) | (mem_read(c, lin, 2) & 0xf) | (c->cr0 & CR0_PE));
		return;
	case 7: /* invlpg */
		if (c->cpl)
			cpu_gp0(c);
		tlb_flush_page(c, lin);
		return;
	}
	cpu_ud(c);
}

static void mov_cr(struct cpu *c, struct insn *in, bool write)
{
	if (c->cpl)
		cpu_gp0(c);
	int cr = in->reg;
	int rm = in->rm;
	if (!write) {
		uint64_t v;
		switch (cr) {
		case 0: v = c->cr0; break;
		case 2: v = c->cr2; break;
		case 3: v = c->cr3; break;
		case 4: v = c->cr4; break;
		case 8: v = (c->bus.mmio_read(c->bus.opaque, 0xFEE00080ull, 4) >> 4) & 0xf; break;
		default: cpu_ud(c);
		}
		c->r[rm] = c->mode == 64 ? v : (uint32_t)v;
		return;
	}
	uint64_t v = c->mode == 64 ? c->r[rm] : (uint32_t)c->r[rm];
	switch (cr) {
	case 0: cpu_set_cr0(c, v); break;
	case 2: c->cr2 = v; break;
	case 3: cpu_set_cr3(c, v); break;
	case 4: cpu_set_cr4(c, v); break;
	case 8:
		if (v & ~0xfull)
			cpu_gp0(c);
		c->bus.mmio_write(c->bus.opaque, 0xFEE00080ull, v << 4, 4);
		c->intr_poke = 1;
		break;
	default: cpu_ud(c);
	}
}

static void mov_dr(struct cpu *c, struct insn *in, bool write)
{
	if (c->cpl)
		cpu_gp0(c);
	int dr = in->reg;
	if (dr > 7)
		cpu_ud(c);
	if (dr == 4 || dr == 5) {
		if (c->cr4 & 0x8)
			cpu_ud(c);
		dr += 2;
	}
	if (!write) {
		uint64_t v = c->dr[dr];
		if (dr == 6)
			v |= 0xffff0ff0;
		if (dr == 7)
			v |= 0x400;
		c->r[in->rm] = c->mode == 64 ? v : (uint32_t)v;
		return;
	}
	uint64_t v = c->r[in->rm];
	if ((dr == 6 || dr == 7) && (v >> 32))
		cpu_gp0(c);
	c->dr[dr] = v;
}

static void lar_lsl(struct cpu *c, struct insn *in, bool lsl)
{
	uint16_t sel = (uint16_t)rm_read(c, in, 2);
	bool ok = false;
	uint64_t d = 0;
	if ((sel & ~3u) && (uint32_t)(sel & ~7u) + 7 <= ((sel & 4) ? c->ldtr.limit : c->gdtr.limit)) {
		d = desc_read(c, sel, EXC_GP);
		int type = DESC_TYPE(d), dpl = DESC_DPL(d);
		bool conf = DESC_S(d) && (type & TYPE_CODE) && (type & TYPE_CONFORMING);
		bool valid_sys = !DESC_S(d) && (type == 1 || type == 2 || type == 3 || type == 9 || type == 11 ||
						(!lsl && (type == 12)));
		if ((DESC_S(d) || valid_sys) && (conf || (dpl >= c->cpl && dpl >= (sel & 3))))
			ok = true;
	}
	if (!ok) {
		c->rflags &= ~(uint64_t)F_ZF;
		return;
	}
	c->rflags |= F_ZF;
	uint64_t v;
	if (lsl) {
		struct seg s;
		seg_from_desc(&s, sel, d);
		v = s.limit;
	} else {
		/* bits 19:16 are "undefined"; hardware gives limit 19:16 */
		v = (d >> 32) & 0x00ffff00;
	}
	reg_write(c, in->reg, v, in->opsize == 2 ? 2 : 4, false);
}

void exec_sys(struct cpu *c, struct insn *in)
{
	uint64_t next = c->rip + in->len;
	switch (in->op) {
	case 0x00: group0f00(c, in); break;
	case 0x01: group0f01(c, in); break;
	case 0x02: lar_lsl(c, in, false); break;
	case 0x03: lar_lsl(c, in, true); break;
	case 0x05: { /* syscall */
		if (!(c->efer & EFER_SCE) || c->mode != 64)
			cpu_ud(c);
		c->r[R_RCX] = next;
		c->r[R_R11] = c->rflags & ~(uint64_t)F_RF;
		uint16_t cs = (c->star >> 32) & 0xfffc;
		cpu_set_seg_flat(c, S_CS, cs, 0x9b | SEG_ATTR_L | (1u << 11));
		cpu_set_seg_flat(c, S_SS, cs + 8, 0x93 | SEG_ATTR_DB | (1u << 11));
		c->cpl = 0;
		c->rflags &= ~(c->sfmask | F_RF);
		c->rflags |= 2;
		cpu_update_mode(c);
		c->rip = c->lstar;
		return;
	}
	case 0x07: { /* sysret */
		if (!(c->efer & EFER_SCE) || !(c->efer & EFER_LMA))
			cpu_ud(c);
		if (c->cpl || c->mode != 64)
			cpu_gp0(c);
		uint16_t base = (c->star >> 48) & 0xfffc;
		bool to64 = in->opsize == 8;
		if (to64 && (int64_t)(c->r[R_RCX] << 16) >> 16 != (int64_t)c->r[R_RCX])
			cpu_gp0(c);
		uint64_t old = c->rflags;
		c->rflags = (c->r[R_R11] & 0x3C7FD7) | 2;
		if (!(old & F_IF) && (c->rflags & F_IF))
			c->intr_poke = 1;
		if (to64)
			cpu_set_seg_flat(c, S_CS, (base + 16) | 3, 0xfb | SEG_ATTR_L | (1u << 11));
		else
			cpu_set_seg_flat(c, S_CS, base | 3, 0xfb | SEG_ATTR_DB | (1u << 11));
		c->seg[S_SS].sel = (base + 8) | 3;
		c->seg[S_SS].attr = 0xf3 | SEG_ATTR_DB | (1u << 11);
		c->cpl = 3;
		cpu_update_mode(c);
		c->rip = to64 ? c->r[R_RCX] : (uint32_t)c->r[R_RCX];
		return;
	}
	case 0x06: /* clts */
		if (c->cpl)
			cpu_gp0(c);
		c->cr0 &= ~(uint64_t)CR0_TS;
		break;
	case 0x08: case 0x09: /* invd / wbinvd */
		if (c->cpl)
			cpu_gp0(c);
		break;
	case 0x0B: case 0xB9: case 0xFF: /* ud2 ud1 ud0 */
		cpu_ud(c);
	case 0x0D: /* prefetch / prefetchw */
	case 0x18 ... 0x1F: /* hint nops, prefetchN, nopl */
		break;
	case 0x20: mov_cr(c, in, false); break;
	case 0x22: mov_cr(c, in, true); break;
	case 0x21: mov_dr(c, in, false); break;
	case 0x23: mov_dr(c, in, true); break;
	case 0x30: { /* wrmsr */
		if (c->cpl)
			cpu_gp0(c);
		uint32_t msr = (uint32_t)c->r[R_RCX];
		uint64_t v = (uint32_t)c->r[R_RAX] | (c->r[R_RDX] << 32);
		if (!msr_write(c, msr, v) && !c->bus.msr_write(c->bus.opaque, msr, v))
			cpu_gp0(c);
		c->intr_poke = 1; /* APIC state may have changed */
		break;
	}
	case 0x31: { /* rdtsc */
		if ((c->cr4 & 0x4) && c->cpl)
			cpu_gp0(c);
		uint64_t t = c->bus.tsc(c->bus.opaque) + c->tsc_adjust;
		c->r[R_RAX] = (uint32_t)t;
		c->r[R_RDX] = t >> 32;
		break;
	}
	case 0x32: { /* rdmsr */
		if (c->cpl)
			cpu_gp0(c);
		uint32_t msr = (uint32_t)c->r[R_RCX];
		uint64_t v;
		if (!msr_read(c, msr, &v) && !c->bus.msr_read(c->bus.opaque, msr, &v))
			cpu_gp0(c);
		c->r[R_RAX] = (uint32_t)v;
		c->r[R_RDX] = v >> 32;
		break;
	}
	case 0x33: /* rdpmc: no performance counters are advertised */
		cpu_gp0(c);
	case 0xA2: { /* cpuid */
		struct cpuid_result r;
		cpuid_query(c->personality, c->index, (uint32_t)c->r[R_RAX], (uint32_t)c->r[R_RCX], &r);
		c->r[R_RAX] = r.eax;
		c->r[R_RBX] = r.ebx;
		c->r[R_RCX] = r.ecx;
		c->r[R_RDX] = r.edx;
		break;
	}
	case 0xAE:
		if (in->mod == 3 && in->rep == 0 && !in->opsize_prefix) {
			switch (in->reg & 7) {
			case 5: case 6: case 7: /* lfence mfence sfence */
				__atomic_thread_fence(__ATOMIC_SEQ_CST);
				c->rip = next;
				return;
			}
		}
		if (in->is_mem && (in->reg & 7) == 7 && in->rep == 0) {
			/* clflush / clflushopt: a byte access for its faults */
			mem_read(c, insn_ea_lin(c, in), 1);
			break;
		}
		if (!fx_exec(c, in))
			cpu_ud(c);
		break;
	default:
		if (!sse_exec(c, in))
			cpu_ud(c);
		break;
	}
	c->rip = next;
}
