/* The synthetic interrupt controller (TLFS "Inter-Partition
 * Communication" and "Timers"): per virtual processor a message page and
 * an event flags page, sixteen SINTs that turn a message or an event into
 * an interrupt at the vCPU's LAPIC, and four synthetic timers that expire
 * into a SINT message or straight into a vector (direct mode).
 *
 * Messages use the TLFS slot protocol: a slot whose message type is not
 * HVMSG_NONE is the guest's; a sender that finds it busy sets the
 * message-pending flag, and the guest, having freed the slot, writes the
 * EOM MSR so the sender tries again.
 *
 * Timers run on the reference clock (tlfs.c) and are fired from the
 * vCPU's timer poll (vm_poll_timers), like the LAPIC timer. */
#include <string.h>

#include "dev/dev.h"
#include "dev/hyperv/internal.h"
#include "vm/snapshot.h"

#define HV_X64_MSR_SCONTROL 0x40000080
#define HV_X64_MSR_SVERSION 0x40000081
#define HV_X64_MSR_SIEFP 0x40000082
#define HV_X64_MSR_SIMP 0x40000083
#define HV_X64_MSR_EOM 0x40000084
#define HV_X64_MSR_SINT0 0x40000090
#define HV_X64_MSR_SINT15 0x4000009F
#define HV_X64_MSR_STIMER0_CONFIG 0x400000B0
#define HV_X64_MSR_STIMER3_COUNT 0x400000B7

#define SYNIC_VERSION 1
#define PAGE_ENABLE 1ull
#define PAGE_GPA_MASK (~0xfffull)

#define SINT_VECTOR(s) ((s) & 0xff)
#define SINT_MASKED (1ull << 16)
#define SINT_AUTO_EOI (1ull << 17)
#define SINT_POLLING (1ull << 18)
#define SINT_WRITABLE (0xffull | SINT_MASKED | SINT_AUTO_EOI | SINT_POLLING)

#define STIMER_ENABLE (1ull << 0)
#define STIMER_PERIODIC (1ull << 1)
#define STIMER_LAZY (1ull << 2)
#define STIMER_AUTO_ENABLE (1ull << 3)
#define STIMER_VECTOR(c) (((c) >> 4) & 0xff)
#define STIMER_DIRECT (1ull << 12)
#define STIMER_SINTX(c) (((c) >> 16) & 0xf)
#define STIMER_WRITABLE (0xfffull | STIMER_DIRECT | 0xfull << 16)
/* a periodic timer fires at most this often (100 ns units), so that a
 * guest cannot make its vCPU thread spin in the poll loop */
#define STIMER_MIN_PERIOD 100

#define HVMSG_NONE 0
#define HVMSG_TIMER_EXPIRED 0x80000010u
#define MSG_FLAG_PENDING 1

/* struct hv_message in the TLFS */
struct hv_message {
	uint32_t type;
	uint8_t size;
	uint8_t flags;
	uint16_t reserved;
	uint64_t sender;
	uint8_t payload[HV_MESSAGE_PAYLOAD_MAX];
};
_Static_assert(sizeof(struct hv_message) == HV_MESSAGE_SIZE, "SynIC message slot");

/* The LAPIC accepts the vectors of unmasked auto-EOI SINTs without an
 * ISR entry, so the guest's handler needs no EOI. With hv->lock held. */
static void auto_eoi_update(struct hv *hv, struct vcpu *v)
{
	uint32_t vectors[8] = { 0 };

	for (int i = 0; i < HV_SINT_COUNT; i++) {
		uint64_t s = hv->vp[v->index].sint[i];
		if ((s & SINT_AUTO_EOI) && !(s & SINT_MASKED))
			vectors[SINT_VECTOR(s) / 32] |= 1u << (SINT_VECTOR(s) % 32);
	}
	lapic_set_auto_eoi(v->lapic, vectors);
}

/* raise the SINT's vector at vp's LAPIC; with hv->lock held */
static void sint_raise(struct hv *hv, unsigned vp, unsigned sint)
{
	uint64_t s = hv->vp[vp].sint[sint];

	/* a polled SINT interrupts nobody: the guest looks at its pages */
	if (s & (SINT_MASKED | SINT_POLLING))
		return;
	lapic_accept(hv->vm->vcpu[vp]->lapic, (int)SINT_VECTOR(s), false);
}

/* with hv->lock held: 0 delivered, -1 slot busy (pending flag set), -2
 * nowhere to deliver */
static int message_post(struct hv *hv, unsigned vp, unsigned sint, uint32_t type, const void *payload,
			uint32_t len)
{
	struct hv_vp *p = &hv->vp[vp];
	struct hv_message *slot;

	if (!(p->scontrol & 1) || !(p->simp & PAGE_ENABLE) || (p->sint[sint] & SINT_MASKED))
		return -2;
	slot = vm_gpa(hv->vm, (p->simp & PAGE_GPA_MASK) + sint * HV_MESSAGE_SIZE, HV_MESSAGE_SIZE);
	if (!slot)
		return -2;
	if (__atomic_load_n(&slot->type, __ATOMIC_ACQUIRE) != HVMSG_NONE) {
		__atomic_fetch_or(&slot->flags, MSG_FLAG_PENDING, __ATOMIC_SEQ_CST);
		/* the guest may have freed the slot before it could see the
		 * flag; then it will not write EOM, so deliver now */
		if (__atomic_load_n(&slot->type, __ATOMIC_SEQ_CST) != HVMSG_NONE) {
			p->waiters |= (uint16_t)(1u << sint);
			return -1;
		}
	}
	slot->size = (uint8_t)len;
	slot->flags = (p->waiters >> sint) & 1 ? MSG_FLAG_PENDING : 0;
	slot->reserved = 0;
	slot->sender = 0;
	memcpy(slot->payload, payload, len);
	__atomic_store_n(&slot->type, type, __ATOMIC_RELEASE);
	sint_raise(hv, vp, sint);
	return 0;
}

int hv_synic_post_message(struct vm *vm, unsigned vp, unsigned sint, uint32_t type, const void *payload,
			  uint32_t len)
{
	struct hv *hv = vm->hv;
	int r;

	if (!hv || vp >= (unsigned)vm->ncpus || sint >= HV_SINT_COUNT || len > HV_MESSAGE_PAYLOAD_MAX)
		return -2;
	pthread_mutex_lock(&hv->lock);
	r = message_post(hv, vp, sint, type, payload, len);
	pthread_mutex_unlock(&hv->lock);
	return r;
}

int hv_synic_signal_event(struct vm *vm, unsigned vp, unsigned sint, unsigned flag)
{
	struct hv *hv = vm->hv;
	struct hv_vp *p;
	uint8_t *flags, bit, old;

	/* a flag past the slot's 2048 bits has nowhere to go either */
	if (!hv || vp >= (unsigned)vm->ncpus || sint >= HV_SINT_COUNT || flag >= HV_MESSAGE_SIZE * 8)
		return -2;
	pthread_mutex_lock(&hv->lock);
	p = &hv->vp[vp];
	flags = vm_gpa(vm, (p->siefp & PAGE_GPA_MASK) + sint * HV_MESSAGE_SIZE, HV_MESSAGE_SIZE);
	if (!(p->scontrol & 1) || !(p->siefp & PAGE_ENABLE) || (p->sint[sint] & SINT_MASKED) || !flags) {
		pthread_mutex_unlock(&hv->lock);
		return -2;
	}
	bit = (uint8_t)(1u << (flag & 7));
	old = __atomic_fetch_or(&flags[flag >> 3], bit, __ATOMIC_SEQ_CST);
	if (!(old & bit))
		sint_raise(hv, vp, sint);
	pthread_mutex_unlock(&hv->lock);
	return 0;
}

/* ---- synthetic timers ---- */

static void stimer_start(struct hv_stimer *t, uint64_t now)
{
	t->exp = 0;
	if (!(t->config & STIMER_ENABLE) || !t->count)
		return;
	if (t->config & STIMER_PERIODIC)
		t->exp = now + (t->count < STIMER_MIN_PERIOD ? STIMER_MIN_PERIOD : t->count);
	else
		/* a past time expires at once (0 means "not armed") */
		t->exp = t->count > now ? t->count : now ? now : 1;
}

/* post a timer's expiry message; with hv->lock held. false: the slot is
 * busy and the message stays pending */
static bool stimer_message(struct hv *hv, unsigned vp, int i, uint64_t exp, uint64_t now)
{
	struct hv_stimer *t = &hv->vp[vp].stimer[i];
	struct {
		uint32_t index, reserved;
		uint64_t expiration, delivery;
	} m = { (uint32_t)i, 0, exp, now };

	if (message_post(hv, vp, STIMER_SINTX(t->config), HVMSG_TIMER_EXPIRED, &m, sizeof(m)) == -1) {
		t->pending = true;
		t->pending_exp = exp;
		return false;
	}
	t->pending = false;
	return true;
}

static void stimer_expire(struct hv *hv, unsigned vp, int i, uint64_t now)
{
	struct hv_stimer *t = &hv->vp[vp].stimer[i];
	uint64_t exp = t->exp;

	if (t->config & STIMER_DIRECT)
		lapic_accept(hv->vm->vcpu[vp]->lapic, (int)STIMER_VECTOR(t->config), false);
	else if (!t->pending) /* an expiry still waiting for its slot absorbs this one */
		stimer_message(hv, vp, i, exp, now);
	if (t->config & STIMER_PERIODIC) {
		/* missed periods coalesce into this one expiry */
		t->exp += t->count;
		if (t->exp <= now)
			t->exp = now + t->count;
		if (t->exp < now + STIMER_MIN_PERIOD)
			t->exp = now + STIMER_MIN_PERIOD;
	} else {
		t->exp = 0;
		t->config &= ~STIMER_ENABLE;
	}
}

/* messages that found their slot busy; with hv->lock held */
static void stimer_retry(struct hv *hv, unsigned vp, uint64_t now)
{
	for (int i = 0; i < HV_STIMER_COUNT; i++) {
		struct hv_stimer *t = &hv->vp[vp].stimer[i];
		if (t->pending)
			stimer_message(hv, vp, i, t->pending_exp, now);
	}
}

int64_t hv_poll_timers(struct vcpu *v)
{
	struct hv *hv = v->vm->hv;
	unsigned vp = (unsigned)v->index;
	uint64_t now = hv_ref_time(v->vm);
	int64_t next = -1;

	pthread_mutex_lock(&hv->lock);
	for (int i = 0; i < HV_STIMER_COUNT; i++) {
		struct hv_stimer *t = &hv->vp[vp].stimer[i];
		if (t->exp && t->exp <= now)
			stimer_expire(hv, vp, i, now);
		if (t->pending)
			stimer_message(hv, vp, i, t->pending_exp, now);
		if (t->exp) {
			int64_t ns = (int64_t)(t->exp - now) * 100;
			if (next < 0 || ns < next)
				next = ns;
		}
	}
	pthread_mutex_unlock(&hv->lock);
	return next;
}

/* ---- MSRs ---- */

bool synic_msr_read(struct hv *hv, struct vcpu *v, uint32_t msr, uint64_t *val)
{
	struct hv_vp *p = &hv->vp[v->index];
	bool ok = true;

	pthread_mutex_lock(&hv->lock);
	switch (msr) {
	case HV_X64_MSR_SCONTROL: *val = p->scontrol; break;
	case HV_X64_MSR_SVERSION: *val = SYNIC_VERSION; break;
	case HV_X64_MSR_SIEFP: *val = p->siefp; break;
	case HV_X64_MSR_SIMP: *val = p->simp; break;
	case HV_X64_MSR_EOM: *val = 0; break;
	default:
		if (msr >= HV_X64_MSR_SINT0 && msr <= HV_X64_MSR_SINT15) {
			*val = p->sint[msr - HV_X64_MSR_SINT0];
		} else if (msr >= HV_X64_MSR_STIMER0_CONFIG && msr <= HV_X64_MSR_STIMER3_COUNT) {
			struct hv_stimer *t = &p->stimer[(msr - HV_X64_MSR_STIMER0_CONFIG) / 2];
			*val = (msr & 1) ? t->count : t->config;
		} else {
			ok = false;
		}
	}
	pthread_mutex_unlock(&hv->lock);
	return ok;
}

/* SIMP and SIEFP: the page must be RAM; the TLFS has it cleared when the
 * guest enables it */
static bool page_write(struct hv *hv, uint64_t *reg, uint64_t val)
{
	uint64_t gpa = val & PAGE_GPA_MASK;

	val &= PAGE_GPA_MASK | PAGE_ENABLE;
	if (val & PAGE_ENABLE) {
		uint8_t *page = vm_gpa(hv->vm, gpa, 0x1000);
		if (!page)
			return false;
		if (!(*reg & PAGE_ENABLE) || (*reg & PAGE_GPA_MASK) != gpa)
			memset(page, 0, 0x1000);
	}
	*reg = val;
	return true;
}

bool synic_msr_write(struct hv *hv, struct vcpu *v, uint32_t msr, uint64_t val)
{
	unsigned vp = (unsigned)v->index;
	struct hv_vp *p = &hv->vp[vp];
	uint64_t now = hv_ref_time(v->vm);
	bool ok = true, eom = false;

	pthread_mutex_lock(&hv->lock);
	switch (msr) {
	case HV_X64_MSR_SCONTROL:
		p->scontrol = val & 1;
		break;
	case HV_X64_MSR_SIEFP: ok = page_write(hv, &p->siefp, val); break;
	case HV_X64_MSR_SIMP: ok = page_write(hv, &p->simp, val); break;
	case HV_X64_MSR_EOM:
		/* every sender turned away hears of this EOM: the timers
		 * here, VMBus through its eom callback below */
		p->waiters = 0;
		stimer_retry(hv, vp, now);
		eom = true;
		break;
	default:
		if (msr >= HV_X64_MSR_SINT0 && msr <= HV_X64_MSR_SINT15) {
			/* vectors 0-15 are exceptions: no unmasked SINT uses one */
			if ((val & ~SINT_WRITABLE) || (!(val & SINT_MASKED) && SINT_VECTOR(val) < 16)) {
				ok = false;
			} else {
				p->sint[msr - HV_X64_MSR_SINT0] = val;
				auto_eoi_update(hv, v);
			}
		} else if (msr >= HV_X64_MSR_STIMER0_CONFIG && msr <= HV_X64_MSR_STIMER3_COUNT) {
			struct hv_stimer *t = &p->stimer[(msr - HV_X64_MSR_STIMER0_CONFIG) / 2];
			if (msr & 1) {
				t->count = val;
				if (!val)
					t->config &= ~STIMER_ENABLE;
				else if (t->config & STIMER_AUTO_ENABLE)
					t->config |= STIMER_ENABLE;
			} else {
				t->config = val & STIMER_WRITABLE;
				/* in message mode SINT 0 means no SINT: the timer is off */
				if (!(t->config & STIMER_DIRECT) && !STIMER_SINTX(t->config))
					t->config &= ~STIMER_ENABLE;
			}
			t->pending = false;
			stimer_start(t, now);
		} else {
			ok = false; /* SVERSION is read-only; the rest is not a SynIC MSR */
		}
	}
	pthread_mutex_unlock(&hv->lock);
	/* a moved timer deadline needs no kick: this vCPU polls its timers
	 * before it runs or halts again */
	if (eom && hv->vmbus && hv->vmbus->eom)
		hv->vmbus->eom(hv->vmbus->opaque, vp);
	return ok;
}

/* ---- snapshots ---- */

/* The registers as the guest wrote them, the timers' deadlines (reference
 * times, which a restored VM continues) and the senders waiting for an
 * EOM. Messages and event flags are in the guest's pages. */
void synic_save(const struct hv_vp *p, struct snap_buf *b)
{
	snap_put(b, &p->scontrol, 8);
	snap_put(b, &p->siefp, 8);
	snap_put(b, &p->simp, 8);
	snap_put(b, p->sint, sizeof(p->sint));
	snap_put(b, &p->vp_assist, 8);
	snap_put(b, &p->waiters, 2);
	for (int i = 0; i < HV_STIMER_COUNT; i++) {
		const struct hv_stimer *t = &p->stimer[i];
		uint8_t pending = t->pending;

		snap_put(b, &t->config, 8);
		snap_put(b, &t->count, 8);
		snap_put(b, &t->exp, 8);
		snap_put(b, &pending, 1);
		snap_put(b, &t->pending_exp, 8);
	}
}

/* an enabled SIMP or SIEFP page must be guest RAM, as page_write wants */
static bool page_ok(struct hv *hv, uint64_t reg)
{
	if (reg & ~(PAGE_GPA_MASK | PAGE_ENABLE))
		return false;
	return !(reg & PAGE_ENABLE) || vm_gpa(hv->vm, reg & PAGE_GPA_MASK, 0x1000);
}

bool synic_load(struct hv *hv, struct hv_vp *p, struct snap_rd *r)
{
	memset(p, 0, sizeof(*p));
	if (!snap_get(r, &p->scontrol, 8) || !snap_get(r, &p->siefp, 8) || !snap_get(r, &p->simp, 8) ||
	    !snap_get(r, p->sint, sizeof(p->sint)) || !snap_get(r, &p->vp_assist, 8) || !snap_get(r, &p->waiters, 2))
		return false;
	if ((p->scontrol & ~1ull) || !page_ok(hv, p->siefp) || !page_ok(hv, p->simp) ||
	    (p->vp_assist & ~(PAGE_GPA_MASK | PAGE_ENABLE)))
		return false;
	for (int i = 0; i < HV_SINT_COUNT; i++)
		if ((p->sint[i] & ~SINT_WRITABLE) || (!(p->sint[i] & SINT_MASKED) && SINT_VECTOR(p->sint[i]) < 16))
			return false;
	for (int i = 0; i < HV_STIMER_COUNT; i++) {
		struct hv_stimer *t = &p->stimer[i];
		uint8_t pending;

		if (!snap_get(r, &t->config, 8) || !snap_get(r, &t->count, 8) || !snap_get(r, &t->exp, 8) ||
		    !snap_get(r, &pending, 1) || !snap_get(r, &t->pending_exp, 8) || pending > 1)
			return false;
		t->pending = pending;
		/* armed only while enabled with a count (stimer_start) */
		if ((t->config & ~STIMER_WRITABLE) || (t->exp && (!(t->config & STIMER_ENABLE) || !t->count)))
			return false;
	}
	return true;
}

void synic_restored(struct hv *hv)
{
	for (int i = 0; i < hv->vm->ncpus; i++)
		auto_eoi_update(hv, hv->vm->vcpu[i]);
}
