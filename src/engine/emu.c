/* engine_ops for accord's own x86-64 CPU (src/cpu/): wires the CPU's bus
 * hooks to the machine and runs it in slices between timer polls. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/cpu.h"
#include "dev/dev.h"
#include "engine/engine.h"
#include "vm/vm.h"

/* instructions between timer polls: small enough for timely interrupts,
 * large enough that the clock read is noise */
#define EMU_SLICE 20000

struct emu_vcpu {
	struct cpu cpu;
	struct vcpu *v;
	/* ACCORD_FIRST_INSN: say when the first guest instruction runs
	 * (bench/overhead.sh measures the start-up cost with it) */
	bool say_first;
};

static inline struct cpu *emu_cpu(struct vcpu *v)
{
	return &((struct emu_vcpu *)v->engine_priv)->cpu;
}

static uint8_t *emu_gpa_page(void *opaque, uint64_t gpa, bool write)
{
	struct vcpu *v = opaque;
	return vm_gpa(v->vm, gpa, 0x1000);
}

static bool is_lapic(uint64_t gpa)
{
	return (gpa & ~0xfffull) == LAPIC_BASE;
}

static uint64_t emu_mmio_read(void *opaque, uint64_t gpa, int size)
{
	struct vcpu *v = opaque;
	uint64_t val;
	if (is_lapic(gpa))
		return lapic_mmio_read(v->lapic, gpa & 0xfff, size);
	pthread_mutex_lock(&v->vm->io_lock);
	bus_read(&v->vm->mmio, gpa, size, &val);
	pthread_mutex_unlock(&v->vm->io_lock);
	return val;
}

static void emu_mmio_write(void *opaque, uint64_t gpa, uint64_t val, int size)
{
	struct vcpu *v = opaque;
	if (is_lapic(gpa)) {
		lapic_mmio_write(v->lapic, gpa & 0xfff, val, size);
		emu_cpu(v)->intr_poke = 1; /* EOI or TPR may unmask an interrupt */
		return;
	}
	pthread_mutex_lock(&v->vm->io_lock);
	bus_write(&v->vm->mmio, gpa, val, size);
	pthread_mutex_unlock(&v->vm->io_lock);
}

static uint32_t emu_pio_in(void *opaque, uint16_t port, int size)
{
	return vm_pio_in(opaque, port, size);
}

static void emu_pio_out(void *opaque, uint16_t port, uint32_t val, int size)
{
	struct vcpu *v = opaque;
	vm_pio_out(v, port, val, size);
	if (v->vm->exit_reason)
		emu_cpu(v)->stop_request = 1;
}

static int emu_intr_vector(void *opaque, bool ack)
{
	struct vcpu *v = opaque;
	return lapic_get_interrupt(v->lapic, ack);
}

static bool emu_msr_read(void *opaque, uint32_t msr, uint64_t *val)
{
	return vm_msr_read(opaque, msr, val);
}

static bool emu_msr_write(void *opaque, uint32_t msr, uint64_t val)
{
	return vm_msr_write(opaque, msr, val);
}

static uint64_t emu_tsc(void *opaque)
{
	struct vcpu *v = opaque;
	return vm_tsc(v->vm);
}

static int emu_vcpu_init(struct vcpu *v)
{
	/* aligned_alloc wants a size that is a multiple of the alignment */
	struct emu_vcpu *e = aligned_alloc(64, (sizeof(*e) + 63) & ~(size_t)63);
	if (!e)
		return -1;
	memset(e, 0, sizeof(*e));
	e->v = v;
	v->engine_priv = e;
	struct cpu *c = &e->cpu;
	cpu_init(c, v->index);
	c->personality = v->vm->personality;
	c->bus = (struct cpu_bus){
		.gpa_page = emu_gpa_page,
		.mmio_read = emu_mmio_read,
		.mmio_write = emu_mmio_write,
		.pio_in = emu_pio_in,
		.pio_out = emu_pio_out,
		.intr_vector = emu_intr_vector,
		.msr_read = emu_msr_read,
		.msr_write = emu_msr_write,
		.tsc = emu_tsc,
		.opaque = v,
	};
	c->trace_ud = getenv("ACCORD_TRACE_UD") != NULL;
	e->say_first = v->index == 0 && getenv("ACCORD_FIRST_INSN") != NULL;
	return 0;
}

static int emu_vcpu_run(struct vcpu *v, struct vcpu_exit *ex)
{
	struct cpu *c = emu_cpu(v);
	struct emu_vcpu *e = v->engine_priv;
	if (e->say_first) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		fprintf(stderr, "accord: first guest instruction at %lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
		e->say_first = false;
	}
	for (;;) {
		if (lapic_take_nmi(v->lapic))
			c->nmi_pending = true;
		enum cpu_stop r = cpu_run(c, EMU_SLICE);
		switch (r) {
		case STOP_BUDGET:
			vm_poll_timers(v);
			if (v->vm->exit_reason || v->init_pending) {
				ex->kind = EXIT_KICK;
				return 0;
			}
			continue;
		case STOP_HLT:
			ex->kind = EXIT_HLT;
			return 0;
		case STOP_SHUTDOWN:
			ex->kind = EXIT_SHUTDOWN;
			snprintf(ex->msg, sizeof(ex->msg), "rip=%#llx", (unsigned long long)c->rip);
			if (getenv("ACCORD_DUMP"))
				cpu_dump(c, stderr);
			return 0;
		case STOP_REQUEST:
			c->stop_request = 0;
			ex->kind = EXIT_KICK;
			return 0;
		case STOP_DEBUG:
			ex->kind = EXIT_DEBUG;
			return 0;
		default:
			ex->kind = EXIT_NONE;
			return 0;
		}
	}
}

static void emu_vcpu_kick(struct vcpu *v)
{
	struct cpu *c = emu_cpu(v);
	c->intr_poke = 1;
	if (v->vm->exit_reason || v->init_pending || v->vm->pause_request)
		c->stop_request = 1;
}

static uint64_t emu_insns_retired(struct vcpu *v)
{
	return __atomic_load_n(&emu_cpu(v)->icount, __ATOMIC_RELAXED);
}

static void seg_out(struct cpu_seg *o, const struct seg *s)
{
	*o = (struct cpu_seg){ .base = s->base, .limit = s->limit, .sel = s->sel, .attr = s->attr };
}

static void seg_in(struct seg *s, const struct cpu_seg *o)
{
	*s = (struct seg){ .sel = o->sel, .base = o->base, .limit = o->limit, .attr = o->attr };
}

void emu_state_save(const struct cpu *c, struct cpu_state *s)
{
	memset(s, 0, sizeof(*s));
	memcpy(s->r, c->r, sizeof(s->r));
	s->rip = c->rip;
	s->rflags = c->rflags;
	s->cr0 = c->cr0;
	s->cr2 = c->cr2;
	s->cr3 = c->cr3;
	s->cr4 = c->cr4;
	s->efer = c->efer;
	for (int i = 0; i < 6; i++) {
		s->sel[i] = c->seg[i].sel;
		seg_out(&s->seg[i], &c->seg[i]);
	}
	s->fs_base = c->seg[S_FS].base;
	s->gs_base = c->seg[S_GS].base;
	_Static_assert(sizeof(c->fx) == sizeof(s->fxsave), "FXSAVE image");
	memcpy(s->fxsave, &c->fx, sizeof(s->fxsave));
	seg_out(&s->tr, &c->tr);
	seg_out(&s->ldtr, &c->ldtr);
	s->gdtr = (struct cpu_dtr){ c->gdtr.base, c->gdtr.limit };
	s->idtr = (struct cpu_dtr){ c->idtr.base, c->idtr.limit };
	s->cr8 = c->cr8;
	memcpy(s->dr, c->dr, sizeof(s->dr));
	s->xcr0 = c->xcr0;
	/* emu's TSC is vm_tsc() plus IA32_TSC_ADJUST */
	s->tsc_offset = c->tsc_adjust;
	s->tsc_adjust = (uint64_t)c->tsc_adjust;
	s->star = c->star;
	s->lstar = c->lstar;
	s->cstar = c->cstar;
	s->sfmask = c->sfmask;
	s->kernel_gs_base = c->kernel_gs_base;
	s->tsc_aux = c->tsc_aux;
	s->sysenter_cs = c->sysenter_cs;
	s->sysenter_esp = c->sysenter_esp;
	s->sysenter_eip = c->sysenter_eip;
	s->pat = c->pat;
	s->misc_enable = c->misc_enable;
	s->intr_shadow = c->intr_shadow;
	s->nmi_pending = c->nmi_pending;
	s->nmi_blocked = c->nmi_blocked;
	s->halted = c->halted;
	/* between two cpu_run calls nothing is half delivered */
	s->exc_vector = -1;
	s->irq_injected = -1;
}

static int emu_get_state(struct vcpu *v, struct cpu_state *s)
{
	emu_state_save(emu_cpu(v), s);
	return 0;
}

int emu_state_load(struct cpu *c, const struct cpu_state *s)
{
	memcpy(c->r, s->r, sizeof(c->r));
	c->rip = s->rip;
	c->rflags = s->rflags | 2;
	if (!(s->flags & CPU_STATE_FULL))
		return 0;
	if (s->exc_vector >= 0 || s->irq_injected >= 0)
		return -1; /* the kvm engine's mid-injection state; emu has none */
	if (s->lapic_size)
		return -1; /* KVM's LAPIC (split irqchip); emu's is a device */
	c->cr0 = s->cr0;
	c->cr2 = s->cr2;
	c->cr3 = s->cr3;
	c->cr4 = s->cr4;
	c->cr8 = s->cr8;
	c->efer = s->efer;
	c->xcr0 = s->xcr0;
	for (int i = 0; i < 6; i++)
		seg_in(&c->seg[i], &s->seg[i]);
	seg_in(&c->tr, &s->tr);
	seg_in(&c->ldtr, &s->ldtr);
	c->gdtr = (struct dtr){ s->gdtr.base, s->gdtr.limit };
	c->idtr = (struct dtr){ s->idtr.base, s->idtr.limit };
	memcpy(c->dr, s->dr, sizeof(c->dr));
	memcpy(&c->fx, s->fxsave, sizeof(c->fx));
	c->tsc_adjust = s->tsc_offset;
	c->star = s->star;
	c->lstar = s->lstar;
	c->cstar = s->cstar;
	c->sfmask = s->sfmask;
	c->kernel_gs_base = s->kernel_gs_base;
	c->tsc_aux = s->tsc_aux;
	c->sysenter_cs = s->sysenter_cs;
	c->sysenter_esp = s->sysenter_esp;
	c->sysenter_eip = s->sysenter_eip;
	c->pat = s->pat;
	c->misc_enable = s->misc_enable;
	c->intr_shadow = s->intr_shadow;
	c->nmi_pending = s->nmi_pending;
	c->nmi_blocked = s->nmi_blocked;
	c->halted = s->halted;
	c->cur_exc = -1;
	/* what the interpreter derives from the state above */
	if (!(c->cr0 & CR0_PE))
		c->cpl = 0;
	else
		c->cpl = (c->rflags & F_VM) ? 3 : c->seg[S_CS].sel & 3;
	cpu_update_mode(c);
	tlb_flush(c);
	c->code_epoch++;
	c->intr_poke = 1;
	return 0;
}

static int emu_set_state(struct vcpu *v, const struct cpu_state *s)
{
	return emu_state_load(emu_cpu(v), s);
}

static int emu_guest_tsc(struct vcpu *v, uint64_t ns, uint64_t *tsc, uint64_t *hz)
{
	struct cpu *c = emu_cpu(v);
	/* vm_tsc() at ns, as RDTSC would read it */
	*tsc = (uint64_t)((unsigned __int128)ns * VM_TSC_HZ / 1000000000ull) + (uint64_t)c->tsc_adjust;
	*hz = VM_TSC_HZ;
	return 0;
}

static int emu_set_boot_state(struct vcpu *v, const struct boot_state *bs)
{
	struct cpu *c = emu_cpu(v);
	c->gdtr.base = bs->gdt_base;
	c->gdtr.limit = bs->gdt_limit;
	c->idtr.base = 0;
	c->idtr.limit = 0;
	c->rflags = 2;
	c->cr0 = CR0_PE | CR0_ET;
	c->cpl = 0;
	/* a flat data segment 0x18 and code 0x10, as the loader's GDT says */
	uint16_t data_attr = 0x93 | SEG_ATTR_DB | (1u << 11);
	for (int s = 0; s < 6; s++)
		cpu_set_seg_flat(c, s, 0x18, data_attr);
	c->tr.attr = SEG_ATTR_P | 0xb;
	c->tr.limit = 0x67;
	if (bs->mode == 64) {
		c->cr4 = CR4_PAE;
		c->cr3 = bs->cr3;
		c->efer = EFER_LME | EFER_LMA;
		c->cr0 |= CR0_PG;
		cpu_set_seg_flat(c, S_CS, 0x10, 0x9b | SEG_ATTR_L | (1u << 11));
	} else {
		cpu_set_seg_flat(c, S_CS, 0x10, 0x9b | SEG_ATTR_DB | (1u << 11));
	}
	cpu_update_mode(c);
	tlb_flush(c);
	c->rip = bs->rip;
	c->r[R_RSP] = bs->rsp;
	c->r[R_RAX] = bs->rax;
	c->r[R_RBX] = bs->rbx;
	c->r[R_RSI] = bs->rsi;
	c->r[R_RDI] = bs->rdi;
	return 0;
}

static int emu_start_ap(struct vcpu *v, uint8_t vector)
{
	struct cpu *c = emu_cpu(v);
	cpu_reset(c);
	c->seg[S_CS].sel = (uint16_t)vector << 8;
	c->seg[S_CS].base = (uint64_t)vector << 12;
	c->rip = 0;
	return 0;
}

/* gdb stub */
static int emu_set_guest_debug(struct vcpu *v, const struct guest_debug *d)
{
	struct cpu *c = emu_cpu(v);
	int n = d->nbreak < GUEST_DEBUG_MAX_BREAKS ? d->nbreak : GUEST_DEBUG_MAX_BREAKS;
	_Static_assert(sizeof(c->breaks) / sizeof(c->breaks[0]) >= GUEST_DEBUG_MAX_BREAKS, "breaks");
	memcpy(c->breaks, d->breaks, n * sizeof(c->breaks[0]));
	c->nbreak = n;
	c->single_step = d->single_step;
	c->resume_icount = d->skip_break_at_rip ? c->icount : ~0ull;
	return 0;
}

static int emu_translate(struct vcpu *v, uint64_t va, uint64_t *gpa)
{
	struct cpu *c = emu_cpu(v);
	uint32_t err;
	if ((c->efer & EFER_LMA) && (uint64_t)((int64_t)(va << 16) >> 16) != va)
		return -1;
	/* the walk of a read: it may set accessed bits, never dirty bits */
	return mmu_translate(c, va, ACC_R | ACC_SUPER, gpa, &err) ? 0 : -1;
}

const struct engine_ops engine_emu = {
	.name = "emu",
	.vcpu_init = emu_vcpu_init,
	.vcpu_run = emu_vcpu_run,
	.vcpu_kick = emu_vcpu_kick,
	.get_state = emu_get_state,
	.set_state = emu_set_state,
	.set_boot_state = emu_set_boot_state,
	.start_ap = emu_start_ap,
	.set_guest_debug = emu_set_guest_debug,
	.insns_retired = emu_insns_retired,
	.translate = emu_translate,
	.guest_tsc = emu_guest_tsc,
};
