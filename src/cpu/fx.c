/* 0F AE memory forms: fxsave, fxrstor, ldmxcsr, stmxcsr. XSAVE is not
 * advertised, so xsave/xrstor/xsaveopt are #UD (return false).
 *
 * c->fx is kept in the 64-bit FXSAVE layout with FIP/FDP as offsets; the
 * legacy layout (no REX.W, or outside 64-bit mode) stores them as 32-bit
 * offsets with zero FCS/FDS selectors. Bytes 416..511 are not written, as on
 * hardware; outside 64-bit mode only xmm0-7 are saved and restored.
 */
#include <string.h>

#include "cpu/cpu.h"

#define MXCSR_MASK 0xffffu /* what the guest sees in the FXSAVE image */

static void fxsave(struct cpu *c, struct insn *in, uint64_t lin)
{
	struct fxstate img = c->fx;
	bool wide = c->mode == 64 && (in->rex & 8);
	img.mxcsr_mask = MXCSR_MASK;
	img.rsvd1 = 0;
	if (!wide) {
		img.fip = (uint32_t)img.fip;
		img.fdp = (uint32_t)img.fdp;
	}
	int len = c->mode == 64 ? 416 : 288;
	mem_write_buf(c, lin, &img, len);
}

static void fxrstor(struct cpu *c, struct insn *in, uint64_t lin)
{
	struct fxstate img;
	bool wide = c->mode == 64 && (in->rex & 8);
	mem_read_buf(c, lin, &img, sizeof(img));
	if (img.mxcsr & ~MXCSR_MASK)
		cpu_gp0(c);
	struct fxstate *fx = &c->fx;
	fx->fcw = (img.fcw & 0x1f3f) | 0x40;
	fx->fsw = img.fsw;
	fx->ftw = img.ftw;
	fx->fop = img.fop & 0x7ff;
	fx->fip = wide ? img.fip : (uint32_t)img.fip;
	fx->fdp = wide ? img.fdp : (uint32_t)img.fdp;
	fx->mxcsr = img.mxcsr;
	for (int i = 0; i < 8; i++) {
		memcpy(fx->st[i], img.st[i], 10);
		memset(fx->st[i] + 10, 0, 6);
	}
	memcpy(fx->xmm, img.xmm, (c->mode == 64 ? 16 : 8) * sizeof(xmm_t));
	/* ES and B follow the unmasked exception flags */
	if (fx->fsw & ~fx->fcw & 0x3f)
		fx->fsw |= 0x8080;
	else
		fx->fsw &= ~0x8080;
}

bool fx_exec(struct cpu *c, struct insn *in)
{
	if (!in->is_mem || in->rep)
		return false;
	int reg = in->reg & 7;
	if (reg > 3)
		return false; /* xsave, xrstor, xsaveopt; clflush is done by the caller */
	if (reg <= 1) {
		if (c->cr0 & (CR0_EM | CR0_TS))
			cpu_fault(c, EXC_NM, 0);
	} else {
		if ((c->cr0 & CR0_EM) || !(c->cr4 & CR4_OSFXSR))
			cpu_ud(c);
		if (c->cr0 & CR0_TS)
			cpu_fault(c, EXC_NM, 0);
	}
	uint64_t lin = insn_ea_lin(c, in);
	switch (reg) {
	case 0:
		if (lin & 15)
			cpu_gp0(c);
		fxsave(c, in, lin);
		break;
	case 1:
		if (lin & 15)
			cpu_gp0(c);
		fxrstor(c, in, lin);
		break;
	case 2: {
		uint32_t v = (uint32_t)mem_read(c, lin, 4);
		if (v & ~MXCSR_MASK)
			cpu_gp0(c);
		c->fx.mxcsr = v;
		break;
	}
	case 3:
		mem_write(c, lin, c->fx.mxcsr, 4);
		break;
	}
	return true;
}
