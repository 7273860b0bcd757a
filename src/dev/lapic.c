/* Local APIC (xAPIC), one per vCPU, at LAPIC_BASE in its own vCPU's view.
 *
 * Interrupts arrive from any thread (the IOAPIC under vm->io_lock, IPIs
 * from other vCPUs, MSIs from device threads) while the owning vCPU thread
 * uses the registers, so all state sits behind a per-LAPIC mutex. A LAPIC
 * never takes vm->io_lock or another LAPIC's lock while holding its own. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dev/dev.h"
#include "dev/devices.h"
#include "vm/vm.h"
#include "vm/snapshot.h"

#define MSR_APIC_BASE 0x1B
#define MSR_TSC_DEADLINE 0x6E0
#define APIC_BASE_BSP (1ull << 8)
#define APIC_BASE_X2APIC (1ull << 10)
#define APIC_BASE_ENABLE (1ull << 11)
/* bits MAXPHYADDR and up are reserved (SDM vol. 3A 11.4.4) */
#define APIC_BASE_ADDR_MASK (((1ull << VM_PHYS_ADDR_BITS) - 1) & ~0xfffull)

#define APIC_VERSION 0x50014 /* version 0x14, highest LVT entry 5 */

enum {
	REG_ID = 0x20,
	REG_VER = 0x30,
	REG_TPR = 0x80,
	REG_APR = 0x90,
	REG_PPR = 0xA0,
	REG_EOI = 0xB0,
	REG_LDR = 0xD0,
	REG_DFR = 0xE0,
	REG_SVR = 0xF0,
	REG_ISR = 0x100,
	REG_TMR = 0x180,
	REG_IRR = 0x200,
	REG_ESR = 0x280,
	REG_ICR_LO = 0x300,
	REG_ICR_HI = 0x310,
	REG_LVT = 0x320, /* LVT_COUNT entries, 0x10 apart */
	REG_TIMER_ICR = 0x380,
	REG_TIMER_CCR = 0x390,
	REG_TIMER_DCR = 0x3E0,
};

enum { LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR, LVT_COUNT };

#define LVT_MASKED (1u << 16)
#define LVT_DM_MASK 0x700u
#define LVT_TIMER_MODE(v) (((v) >> 17) & 3)
enum { TIMER_ONESHOT, TIMER_PERIODIC, TIMER_DEADLINE };

static const uint32_t lvt_writable[LVT_COUNT] = {
	[LVT_TIMER] = 0x700FF,	 [LVT_THERMAL] = 0x107FF, [LVT_PERF] = 0x107FF,
	[LVT_LINT0] = 0x1A7FF,	 [LVT_LINT1] = 0x1A7FF,	  [LVT_ERROR] = 0x100FF,
};

#define SVR_ENABLE (1u << 8)
#define SVR_WRITABLE 0x3FFu /* vector, enable, focus check; no EOI suppression */

#define ESR_SEND_ILLEGAL (1u << 5)
#define ESR_RECV_ILLEGAL (1u << 6)

#define ICR_LEVEL_ASSERT (1u << 14)
#define ICR_DELIVERY_STATUS (1u << 12)

#define NSEC_PER_SEC 1000000000ull
/* a periodic timer fires no more often than this, so that a guest cannot
 * make its vCPU thread spin in the poll loop */
#define TIMER_MIN_PERIOD_NS 10000

struct lapic_state {
	uint64_t apic_base;
	uint32_t id, tpr, ldr, dfr, svr;
	uint32_t esr;	      /* what ESR reads: errors latched at its last write */
	uint32_t esr_pending; /* errors since then */
	uint32_t icr_lo, icr_hi;
	uint32_t lvt[LVT_COUNT];
	uint32_t irr[8], isr[8], tmr[8];
	uint32_t timer_icr, timer_dcr;
	uint32_t timer_start_count; /* the current count at timer_start_ns */
	uint64_t timer_start_ns;
	uint64_t timer_next_ns; /* next one-shot/periodic expiry, 0: none */
	uint64_t tsc_deadline;	/* 0: disarmed */
	bool extint;		/* the IOAPIC routed the PIC's INTR here */
};

struct lapic {
	struct vcpu *vcpu;
	struct vm *vm;
	pthread_mutex_t lock;
	atomic_bool nmi;
	struct lapic_state s;
	/* vectors the Hyper-V SynIC delivers with auto-EOI: accepted
	 * without entering the ISR. Not APIC state, so INIT keeps it. */
	uint32_t auto_eoi[8];
};

static int vec_highest(const uint32_t *bits)
{
	for (int i = 7; i >= 0; i--)
		if (bits[i])
			return i * 32 + 31 - __builtin_clz(bits[i]);
	return -1;
}

static bool vec_test(const uint32_t *bits, int v)
{
	return bits[v >> 5] >> (v & 31) & 1;
}

static void vec_set(uint32_t *bits, int v)
{
	bits[v >> 5] |= 1u << (v & 31);
}

static void vec_clear(uint32_t *bits, int v)
{
	bits[v >> 5] &= ~(1u << (v & 31));
}

static uint32_t vec_class(int v)
{
	return v < 0 ? 0 : (uint32_t)v & 0xF0;
}

static bool lapic_enabled(const struct lapic_state *s)
{
	return (s->apic_base & APIC_BASE_ENABLE) && (s->svr & SVR_ENABLE);
}

static uint32_t lapic_ppr(const struct lapic_state *s)
{
	uint32_t isr_class = vec_class(vec_highest(s->isr));

	return (s->tpr & 0xF0) >= isr_class ? s->tpr : isr_class;
}

static uint32_t lapic_apr(const struct lapic_state *s)
{
	uint32_t irr_class = vec_class(vec_highest(s->irr));
	uint32_t isr_class = vec_class(vec_highest(s->isr));
	uint32_t tpr_class = s->tpr & 0xF0, apr = tpr_class;

	if (tpr_class >= irr_class && tpr_class > isr_class)
		return s->tpr;
	if (irr_class > apr)
		apr = irr_class;
	if (isr_class > apr)
		apr = isr_class;
	return apr;
}

/* the highest IRR vector the CPU may take now, or -1 */
static int lapic_pending(const struct lapic_state *s)
{
	int v;

	if (!lapic_enabled(s))
		return -1;
	v = vec_highest(s->irr);
	if (v < 0 || vec_class(v) <= (lapic_ppr(s) & 0xF0))
		return -1;
	return v;
}

/* power-up and INIT state: INIT keeps the APIC ID and IA32_APIC_BASE */
static void lapic_reset(struct lapic_state *s)
{
	uint64_t base = s->apic_base;
	uint32_t id = s->id;

	memset(s, 0, sizeof(*s));
	s->apic_base = base;
	s->id = id;
	s->dfr = 0xFFFFFFFF;
	s->svr = 0xFF;
	for (int i = 0; i < LVT_COUNT; i++)
		s->lvt[i] = LVT_MASKED;
}

static void lapic_set_irr(struct lapic *l, int vector, bool level);

/* with l->lock held */
static void lapic_error(struct lapic *l, uint32_t bits)
{
	uint32_t lvt = l->s.lvt[LVT_ERROR];

	l->s.esr_pending |= bits;
	if (!(lvt & LVT_MASKED) && (lvt & 0xFF) >= 16)
		lapic_set_irr(l, lvt & 0xFF, false);
}

/* with l->lock held */
static void lapic_set_irr(struct lapic *l, int vector, bool level)
{
	struct lapic_state *s = &l->s;

	if (!lapic_enabled(s))
		return;
	/* vectors 0-15 are reserved for exceptions */
	if (vector < 16) {
		lapic_error(l, ESR_RECV_ILLEGAL);
		return;
	}
	vec_set(s->irr, vector);
	if (level)
		vec_set(s->tmr, vector);
	else
		vec_clear(s->tmr, vector);
}

void lapic_accept(struct lapic *l, int vector, bool level)
{
	bool wake;

	if (vector < 0 || vector > 255)
		return;
	pthread_mutex_lock(&l->lock);
	lapic_set_irr(l, vector, level);
	/* an interrupt held back by TPR or ISR needs no wake-up: only the
	 * vCPU itself can lower its priority, and then it looks again */
	wake = lapic_pending(&l->s) >= 0;
	pthread_mutex_unlock(&l->lock);
	if (wake)
		vm_kick_vcpu(l->vcpu);
}

/* ---- timer ---- */

static uint32_t timer_div(const struct lapic_state *s)
{
	uint32_t d = (s->timer_dcr & 3) | (s->timer_dcr >> 1 & 4);

	return d == 7 ? 1 : 2u << d;
}

static int timer_mode(const struct lapic_state *s)
{
	return LVT_TIMER_MODE(s->lvt[LVT_TIMER]);
}

/* rounds up, so that at the returned time the count has reached zero */
static uint64_t crystal_to_ns(uint64_t ticks)
{
	return (uint64_t)(((unsigned __int128)ticks * NSEC_PER_SEC + VM_CRYSTAL_HZ - 1) /
			  VM_CRYSTAL_HZ);
}

/* timer counts (after the divider) since timer_start_ns */
static uint64_t timer_elapsed(const struct lapic_state *s, uint64_t now)
{
	if (now <= s->timer_start_ns)
		return 0;
	return (uint64_t)((unsigned __int128)(now - s->timer_start_ns) * VM_CRYSTAL_HZ /
			  NSEC_PER_SEC) /
	       timer_div(s);
}

static uint32_t timer_ccr(const struct lapic_state *s, uint64_t now)
{
	uint64_t e;

	if (!s->timer_icr || timer_mode(s) == TIMER_DEADLINE)
		return 0;
	e = timer_elapsed(s, now);
	if (e < s->timer_start_count)
		return s->timer_start_count - e;
	if (timer_mode(s) != TIMER_PERIODIC)
		return 0;
	return s->timer_icr - (e - s->timer_start_count) % s->timer_icr;
}

static void timer_start(struct lapic_state *s, uint64_t now, uint32_t count)
{
	s->timer_start_ns = now;
	s->timer_start_count = count;
	s->timer_next_ns = count ? now + crystal_to_ns((uint64_t)count * timer_div(s)) : 0;
}

static void timer_fire(struct lapic *l)
{
	uint32_t lvt = l->s.lvt[LVT_TIMER];

	if (!(lvt & LVT_MASKED))
		lapic_set_irr(l, lvt & 0xFF, false);
}

/* raise an expired timer's interrupt; with l->lock held */
static void timer_update(struct lapic *l, uint64_t now)
{
	struct lapic_state *s = &l->s;
	uint64_t e, n;

	if (timer_mode(s) == TIMER_DEADLINE) {
		if (s->tsc_deadline && vm_tsc(l->vm) >= s->tsc_deadline) {
			s->tsc_deadline = 0;
			timer_fire(l);
		}
		return;
	}
	if (!s->timer_next_ns || now < s->timer_next_ns)
		return;
	timer_fire(l);
	if (timer_mode(s) != TIMER_PERIODIC || !s->timer_icr) {
		s->timer_next_ns = 0;
		return;
	}
	/* missed periods coalesce into this one interrupt */
	e = timer_elapsed(s, now);
	n = e >= s->timer_start_count ? (e - s->timer_start_count) / s->timer_icr + 1 : 1;
	s->timer_next_ns = s->timer_start_ns +
			   crystal_to_ns((s->timer_start_count + n * s->timer_icr) * timer_div(s));
	if (s->timer_next_ns < now + TIMER_MIN_PERIOD_NS)
		s->timer_next_ns = now + TIMER_MIN_PERIOD_NS;
}

int64_t lapic_poll_timer(struct lapic *l)
{
	struct lapic_state *s = &l->s;
	uint64_t now = vm_now_ns(l->vm), tsc;
	unsigned __int128 ns;
	int64_t r = -1;

	pthread_mutex_lock(&l->lock);
	timer_update(l, now);
	if (timer_mode(s) == TIMER_DEADLINE) {
		if (s->tsc_deadline) {
			tsc = vm_tsc(l->vm);
			ns = tsc >= s->tsc_deadline ? 0
						    : ((unsigned __int128)(s->tsc_deadline - tsc) *
							       NSEC_PER_SEC +
						       VM_TSC_HZ - 1) /
							      VM_TSC_HZ;
			r = ns > INT64_MAX ? INT64_MAX : (int64_t)ns;
		}
	} else if (s->timer_next_ns) {
		r = (int64_t)(s->timer_next_ns - now);
	}
	pthread_mutex_unlock(&l->lock);
	return r;
}

/* ---- registers ---- */

/* with l->lock held */
static uint32_t lapic_reg_read(struct lapic *l, uint32_t reg)
{
	struct lapic_state *s = &l->s;

	if (reg >= REG_ISR && reg < REG_ISR + 0x80)
		return s->isr[(reg - REG_ISR) >> 4];
	if (reg >= REG_TMR && reg < REG_TMR + 0x80)
		return s->tmr[(reg - REG_TMR) >> 4];
	if (reg >= REG_IRR && reg < REG_IRR + 0x80)
		return s->irr[(reg - REG_IRR) >> 4];
	if (reg >= REG_LVT && reg < REG_LVT + 0x10 * LVT_COUNT)
		return s->lvt[(reg - REG_LVT) >> 4];
	switch (reg) {
	case REG_ID:
		return s->id;
	case REG_VER:
		return APIC_VERSION;
	case REG_TPR:
		return s->tpr;
	case REG_APR:
		return lapic_apr(s);
	case REG_PPR:
		return lapic_ppr(s);
	case REG_LDR:
		return s->ldr;
	case REG_DFR:
		return s->dfr;
	case REG_SVR:
		return s->svr;
	case REG_ESR:
		return s->esr;
	case REG_ICR_LO:
		return s->icr_lo;
	case REG_ICR_HI:
		return s->icr_hi;
	case REG_TIMER_ICR:
		return s->timer_icr;
	case REG_TIMER_CCR:
		return timer_ccr(s, vm_now_ns(l->vm));
	case REG_TIMER_DCR:
		return s->timer_dcr;
	}
	return 0;
}

uint64_t lapic_mmio_read(struct lapic *l, uint64_t off, int size)
{
	uint32_t byte = off & 0xF, v;

	/* registers are 32 bits wide at 16-byte strides */
	if (off >= 0x1000 || byte >= 4)
		return 0;
	pthread_mutex_lock(&l->lock);
	v = lapic_reg_read(l, (uint32_t)(off - byte));
	pthread_mutex_unlock(&l->lock);
	v >>= byte * 8;
	return size >= 4 ? v : v & ((1u << size * 8) - 1);
}

/* with l->lock held */
static void lapic_write_lvt(struct lapic *l, int i, uint32_t v)
{
	struct lapic_state *s = &l->s;
	bool was_deadline = LVT_TIMER_MODE(s->lvt[i]) == TIMER_DEADLINE;

	v &= lvt_writable[i];
	if (!(s->svr & SVR_ENABLE))
		v |= LVT_MASKED;
	if (i == LVT_TIMER) {
		timer_update(l, vm_now_ns(l->vm));
		/* entering or leaving TSC-deadline mode disarms the timer */
		if (was_deadline != (LVT_TIMER_MODE(v) == TIMER_DEADLINE)) {
			s->timer_icr = 0;
			s->timer_next_ns = 0;
			s->tsc_deadline = 0;
		}
	}
	s->lvt[i] = v;
}

/* with l->lock held; fills *m and returns true when an IPI is to be sent */
static bool lapic_write_icr(struct lapic *l, uint32_t v, struct irq_msg *m)
{
	struct lapic_state *s = &l->s;

	s->icr_lo = v & ~ICR_DELIVERY_STATUS; /* delivery is immediate */
	m->vector = v & 0xFF;
	m->mode = v >> 8 & 7;
	m->logical = v >> 11 & 1;
	m->level = v >> 15 & 1;
	m->shorthand = v >> 18 & 3;
	m->dest = s->icr_hi >> 24;
	/* an INIT level de-assert does nothing on P4 and later APICs */
	if (m->mode == APIC_DM_INIT && m->level && !(v & ICR_LEVEL_ASSERT))
		return false;
	if ((m->mode == APIC_DM_FIXED || m->mode == APIC_DM_LOWEST) && m->vector < 16) {
		lapic_error(l, ESR_SEND_ILLEGAL);
		return false;
	}
	return true;
}

void lapic_mmio_write(struct lapic *l, uint64_t off, uint64_t val, int size)
{
	struct lapic_state *s = &l->s;
	uint32_t v = (uint32_t)val;
	int eoi_vector = -1;
	struct irq_msg m;
	bool send = false;

	/* only whole aligned registers are writable */
	if (off >= 0x1000 || (off & 0xF) || size < 4)
		return;
	pthread_mutex_lock(&l->lock);
	if (off >= REG_LVT && off < REG_LVT + 0x10 * LVT_COUNT) {
		lapic_write_lvt(l, (int)(off - REG_LVT) >> 4, v);
		goto out;
	}
	switch (off) {
	case REG_ID:
		s->id = v & 0xFF000000;
		break;
	case REG_TPR:
		s->tpr = v & 0xFF;
		break;
	case REG_EOI: {
		int vec = vec_highest(s->isr);

		if (vec < 0)
			break;
		vec_clear(s->isr, vec);
		if (vec_test(s->tmr, vec))
			eoi_vector = vec;
		break;
	}
	case REG_LDR:
		s->ldr = v & 0xFF000000;
		break;
	case REG_DFR:
		s->dfr = v | 0x0FFFFFFF;
		break;
	case REG_SVR:
		s->svr = v & SVR_WRITABLE;
		if (!(v & SVR_ENABLE))
			for (int i = 0; i < LVT_COUNT; i++)
				s->lvt[i] |= LVT_MASKED;
		break;
	case REG_ESR:
		s->esr = s->esr_pending;
		s->esr_pending = 0;
		break;
	case REG_ICR_LO:
		send = lapic_write_icr(l, v, &m);
		break;
	case REG_ICR_HI:
		s->icr_hi = v & 0xFF000000;
		break;
	case REG_TIMER_ICR: {
		uint64_t now = vm_now_ns(l->vm);

		if (timer_mode(s) == TIMER_DEADLINE)
			break;
		/* an expiry that is already due still interrupts */
		timer_update(l, now);
		s->timer_icr = v;
		timer_start(s, now, v);
		break;
	}
	case REG_TIMER_DCR: {
		uint64_t now = vm_now_ns(l->vm);
		uint32_t count;

		/* keep counting from the current count at the new rate */
		timer_update(l, now);
		count = timer_ccr(s, now);
		s->timer_dcr = v & 0xB;
		if (s->timer_icr && timer_mode(s) != TIMER_DEADLINE &&
		    (count || timer_mode(s) == TIMER_PERIODIC))
			timer_start(s, now, count);
		break;
	}
	}
out:
	pthread_mutex_unlock(&l->lock);
	if (eoi_vector >= 0)
		ioapic_eoi(l->vm, eoi_vector);
	if (send)
		irq_deliver(l->vm, &m, l);
}

int lapic_get_interrupt(struct lapic *l, bool ack)
{
	struct vm *vm = l->vm;
	int v;

	/* ExtINT bypasses the IRR and the priority logic: the vector comes
	 * from the 8259's INTA cycle */
	if (vm->pic && pic_output(vm->pic) && lapic_wired_to_pic(l)) {
		v = pic_extint(vm, ack);
		if (v >= 0) {
			if (ack) {
				pthread_mutex_lock(&l->lock);
				l->s.extint = false;
				pthread_mutex_unlock(&l->lock);
			}
			return v;
		}
	}
	pthread_mutex_lock(&l->lock);
	v = lapic_pending(&l->s);
	if (v >= 0 && ack) {
		vec_clear(l->s.irr, v);
		if (!vec_test(l->auto_eoi, v))
			vec_set(l->s.isr, v);
	}
	pthread_mutex_unlock(&l->lock);
	return v;
}

void lapic_set_auto_eoi(struct lapic *l, const uint32_t vectors[8])
{
	pthread_mutex_lock(&l->lock);
	memcpy(l->auto_eoi, vectors, sizeof(l->auto_eoi));
	pthread_mutex_unlock(&l->lock);
}

bool lapic_take_nmi(struct lapic *l)
{
	return atomic_exchange(&l->nmi, false);
}

/* ---- MSRs ---- */

bool lapic_msr_read(struct lapic *l, uint32_t msr, uint64_t *val)
{
	struct lapic_state *s = &l->s;

	switch (msr) {
	case MSR_APIC_BASE:
		pthread_mutex_lock(&l->lock);
		*val = s->apic_base;
		pthread_mutex_unlock(&l->lock);
		return true;
	case MSR_TSC_DEADLINE:
		pthread_mutex_lock(&l->lock);
		*val = timer_mode(s) == TIMER_DEADLINE ? s->tsc_deadline : 0;
		pthread_mutex_unlock(&l->lock);
		return true;
	}
	return false;
}

bool lapic_msr_write(struct lapic *l, uint32_t msr, uint64_t val)
{
	struct lapic_state *s = &l->s;

	switch (msr) {
	case MSR_APIC_BASE:
		/* no x2APIC; the BSP flag is read-only */
		if (val & ~(APIC_BASE_ADDR_MASK | APIC_BASE_ENABLE | APIC_BASE_BSP))
			return false;
		pthread_mutex_lock(&l->lock);
		/* a hardware-disabled APIC comes back in its power-up state.
		 * A relocated base is remembered, but the engines keep the
		 * registers at LAPIC_BASE. */
		if (!(val & APIC_BASE_ENABLE))
			lapic_reset(s);
		s->apic_base = (val & ~APIC_BASE_BSP) | (s->apic_base & APIC_BASE_BSP);
		pthread_mutex_unlock(&l->lock);
		return true;
	case MSR_TSC_DEADLINE:
		pthread_mutex_lock(&l->lock);
		if (timer_mode(s) == TIMER_DEADLINE) {
			s->tsc_deadline = val;
			timer_update(l, vm_now_ns(l->vm));
		}
		pthread_mutex_unlock(&l->lock);
		return true;
	}
	return false;
}

/* ---- what irq.c and pic.c ask of a LAPIC ---- */

bool lapic_match(struct lapic *l, uint8_t dest, bool logical)
{
	uint32_t id, ldr, model;

	pthread_mutex_lock(&l->lock);
	id = l->s.id >> 24;
	ldr = l->s.ldr >> 24;
	model = l->s.dfr >> 28;
	pthread_mutex_unlock(&l->lock);
	if (!logical)
		return dest == 0xFF || dest == id;
	if (model == 0xF)
		return (ldr & dest) != 0;
	/* cluster model: the high nibble names the cluster (15: all), the
	 * low nibble is a member mask */
	return ((dest >> 4) == 0xF || (dest >> 4) == (ldr >> 4)) && (dest & ldr & 0xF);
}

uint32_t lapic_arb_priority(struct lapic *l)
{
	uint32_t apr;

	pthread_mutex_lock(&l->lock);
	apr = lapic_apr(&l->s);
	pthread_mutex_unlock(&l->lock);
	return apr;
}

void lapic_nmi(struct lapic *l)
{
	atomic_store(&l->nmi, true);
	vm_kick_vcpu(l->vcpu);
}

void lapic_init_ipi(struct lapic *l)
{
	pthread_mutex_lock(&l->lock);
	lapic_reset(&l->s);
	pthread_mutex_unlock(&l->lock);
	vm_vcpu_init_ipi(l->vcpu);
}

void lapic_extint(struct lapic *l)
{
	pthread_mutex_lock(&l->lock);
	l->s.extint = true;
	pthread_mutex_unlock(&l->lock);
	vm_kick_vcpu(l->vcpu);
}

bool lapic_wired_to_pic(struct lapic *l)
{
	struct lapic_state *s = &l->s;
	bool wired;

	pthread_mutex_lock(&l->lock);
	wired = !(s->apic_base & APIC_BASE_ENABLE) || s->extint ||
		(s->lvt[LVT_LINT0] & (LVT_MASKED | LVT_DM_MASK)) == APIC_DM_EXTINT << 8;
	pthread_mutex_unlock(&l->lock);
	return wired;
}

/* the registers, the timer (its times are VM times, which a restored VM
 * continues) and an NMI not yet taken */
static int lapic_save(void *o, struct snap_buf *b, char *err, size_t n)
{
	struct lapic *l = o;
	uint8_t nmi;

	pthread_mutex_lock(&l->lock);
	snap_put(b, &l->s, sizeof(l->s));
	pthread_mutex_unlock(&l->lock);
	nmi = atomic_load(&l->nmi);
	snap_put(b, &nmi, 1);
	return 0;
}

static int lapic_load(void *o, struct snap_rd *r, char *err, size_t n)
{
	struct lapic *l = o;
	struct lapic_state s;
	uint8_t nmi;

	if (!snap_get(r, &s, sizeof(s)) || !snap_get(r, &nmi, 1))
		return -1;
	if (!snap_bool_ok(&s.extint)) {
		snprintf(err, n, "bad ExtINT state");
		return -1;
	}
	pthread_mutex_lock(&l->lock);
	l->s = s;
	pthread_mutex_unlock(&l->lock);
	atomic_store(&l->nmi, nmi != 0);
	return 0;
}

struct lapic *lapic_create(struct vcpu *v)
{
	struct lapic *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->vcpu = v;
	l->vm = v->vm;
	pthread_mutex_init(&l->lock, NULL);
	atomic_init(&l->nmi, false);
	l->s.apic_base = LAPIC_BASE | APIC_BASE_ENABLE | (v->index == 0 ? APIC_BASE_BSP : 0);
	l->s.id = (uint32_t)v->index << 24;
	lapic_reset(&l->s);
	/* what a BIOS leaves on the BSP: virtual wire mode, with the 8259 on
	 * LINT0 and NMI on LINT1 */
	if (v->index == 0) {
		l->s.lvt[LVT_LINT0] = APIC_DM_EXTINT << 8;
		l->s.lvt[LVT_LINT1] = APIC_DM_NMI << 8;
	}
	if (vm_snap_register(v->vm, "lapic", lapic_save, lapic_load, l) < 0) {
		lapic_destroy(l);
		return NULL;
	}
	return l;
}

void lapic_destroy(struct lapic *l)
{
	if (!l)
		return;
	pthread_mutex_destroy(&l->lock);
	free(l);
}
