/* The Hyper-V partition interface (TLFS): the partition-wide MSRs (guest
 * OS ID, hypercall page, VP index, reset, reference counter and TSC page,
 * frequencies, crash registers) and the hypercalls. The CPUID leaves are
 * in src/cpu/cpuid.c; the SynIC and synthetic timers in synic.c.
 *
 * Reference time is the VM's monotonic clock in 100 ns units, so the
 * counter MSR, the TSC page and the synthetic timers share one clock. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"
#include "dev/hyperv/internal.h"
#include "engine/engine.h"
#include "vm/snapshot.h"

#define HV_X64_MSR_GUEST_OS_ID 0x40000000
#define HV_X64_MSR_HYPERCALL 0x40000001
#define HV_X64_MSR_VP_INDEX 0x40000002
#define HV_X64_MSR_RESET 0x40000003
#define HV_X64_MSR_TIME_REF_COUNT 0x40000020
#define HV_X64_MSR_REFERENCE_TSC 0x40000021
#define HV_X64_MSR_TSC_FREQUENCY 0x40000022
#define HV_X64_MSR_APIC_FREQUENCY 0x40000023
#define HV_X64_MSR_VP_ASSIST_PAGE 0x40000073
#define HV_X64_MSR_CRASH_P0 0x40000100
#define HV_X64_MSR_CRASH_P4 0x40000104
#define HV_X64_MSR_CRASH_CTL 0x40000105

#define HYPERCALL_ENABLE (1ull << 0)
#define HYPERCALL_LOCKED (1ull << 1)
#define PAGE_GPA_MASK (~0xfffull)
#define CRASH_CTL_NOTIFY (1ull << 63)

/* the hypercall input value (TLFS "Hypercall Inputs") */
#define HC_CODE(c) ((c) & 0xffff)
#define HC_FAST (1ull << 16)
#define HC_VARHEAD(c) (((c) >> 17) & 0x3ff)
#define HC_REP_COUNT(c) (((c) >> 32) & 0xfff)
#define HC_REP_START(c) (((c) >> 48) & 0xfff)
#define HC_RSVD_MASK (0x1full << 27 | 0xfull << 44 | 0xfull << 60)

#define HVCALL_POST_MESSAGE 0x5c
#define HVCALL_SIGNAL_EVENT 0x5d

#define EFER_LMA_BIT (1ull << 10)

uint64_t hv_ref_time(const struct vm *vm)
{
	return vm_now_ns(vm) / 100;
}

static int hv_save(void *opaque, struct snap_buf *b, char *err, size_t n);
static int hv_load(void *opaque, struct snap_rd *r, char *err, size_t n);

int hv_create(struct vm *vm)
{
	struct hv *hv = calloc(1, sizeof(*hv));

	if (!hv) {
		fprintf(stderr, "accord: hyperv: out of memory\n");
		return -1;
	}
	hv->vm = vm;
	pthread_mutex_init(&hv->lock, NULL);
	for (int i = 0; i < VM_MAX_CPUS; i++)
		for (int s = 0; s < HV_SINT_COUNT; s++)
			hv->vp[i].sint[s] = 1ull << 16; /* masked */
	vm->hv = hv;
	if (vm_snap_register(vm, "hyperv", hv_save, hv_load, hv) < 0) {
		fprintf(stderr, "accord: hyperv: out of memory\n");
		return -1;
	}
	return 0;
}

void hv_destroy(struct vm *vm)
{
	if (!vm->hv)
		return;
	pthread_mutex_destroy(&vm->hv->lock);
	free(vm->hv);
	vm->hv = NULL;
}

/* without --personality hyperv there is no partition to plug into: the
 * guest cannot reach VMBus, so the call does nothing */
void hv_set_vmbus(struct vm *vm, const struct hv_vmbus_ops *ops)
{
	if (vm->hv)
		vm->hv->vmbus = ops;
}

/* `out HV_HYPERCALL_PORT, eax; ret`: the handler reads the registers
 * itself, so the same bytes serve the 64-bit and the 32-bit convention */
static const uint8_t hypercall_code[] = { 0xe7, HV_HYPERCALL_PORT, 0xc3 };

/* The hypercall page is an overlay in the TLFS; accord writes its code into
 * the guest page instead, which the guest gave up for it. */
static bool hypercall_write(struct hv *hv, uint64_t val)
{
	uint8_t page[4096];

	if (hv->hypercall & HYPERCALL_LOCKED)
		return true;
	val &= PAGE_GPA_MASK | HYPERCALL_ENABLE | HYPERCALL_LOCKED;
	/* no hypercalls before the guest said who it is */
	if (!hv->guest_os_id)
		val &= ~HYPERCALL_ENABLE;
	if (val & HYPERCALL_ENABLE) {
		/* int3 past the code: a stray jump into the page traps */
		memset(page, 0xcc, sizeof(page));
		memcpy(page, hypercall_code, sizeof(hypercall_code));
		if (vm_write_phys(hv->vm, val & PAGE_GPA_MASK, page, sizeof(page)) < 0)
			return false;
	}
	hv->hypercall = val;
	return true;
}

/* The TSC page (TLFS "Partition Reference TSC Mechanism"): reference time
 * = ((tsc * scale) >> 64) + offset, with scale the 100 ns units per TSC
 * tick in 0.64 fixed point. Written while the sequence is 0, which tells a
 * reader to use the counter MSR meanwhile. */
static void tsc_page_write(struct hv *hv, struct vcpu *v, uint64_t val)
{
	struct tsc_page {
		uint32_t sequence, reserved;
		uint64_t scale;
		int64_t offset;
	} *page;
	uint64_t tsc, hz, ns, scale, gpa = val & PAGE_GPA_MASK;
	uint32_t seq;

	hv->reference_tsc = val & (PAGE_GPA_MASK | 1);
	page = vm_gpa(hv->vm, gpa, sizeof(*page));
	if (!(val & 1) || !page)
		return;
	ns = vm_now_ns(hv->vm);
	vm_guest_tsc(v, ns, &tsc, &hz);
	scale = (uint64_t)(((unsigned __int128)10000000 << 64) / hz);
	seq = __atomic_exchange_n(&page->sequence, 0, __ATOMIC_SEQ_CST);
	page->reserved = 0;
	__atomic_store_n(&page->scale, scale, __ATOMIC_RELAXED);
	__atomic_store_n(&page->offset, (int64_t)(ns / 100 - (uint64_t)(((unsigned __int128)tsc * scale) >> 64)),
			 __ATOMIC_RELAXED);
	/* 0 means invalid and 0xFFFFFFFF is reserved */
	seq = seq >= 0xFFFFFFFE ? 1 : seq + 1;
	__atomic_store_n(&page->sequence, seq, __ATOMIC_RELEASE);
}

static void crash_report(struct hv *hv)
{
	char msg[200];

	snprintf(msg, sizeof(msg),
		 "the guest reported a crash through the Hyper-V crash MSRs: P0=%#llx P1=%#llx P2=%#llx P3=%#llx P4=%#llx",
		 (unsigned long long)hv->crash_p[0], (unsigned long long)hv->crash_p[1],
		 (unsigned long long)hv->crash_p[2], (unsigned long long)hv->crash_p[3],
		 (unsigned long long)hv->crash_p[4]);
	vm_request_exit(hv->vm, VM_PANIC, 2, msg);
}

/* ---- snapshots ---- */

#define SNAP_HV_VERSION 1

/* The partition's MSRs and every vCPU's SynIC. The hypercall page, the
 * reference TSC page and the SynIC pages are guest memory. The TSC page
 * is written again on load, as Hyper-V does after a migration: the
 * restored VM's clock goes on from the snapshot's time, but a guest TSC
 * that the engine could not put back where it was (a KVM that keeps its
 * own) would otherwise move the page's time away from the counter's. */
static int hv_save(void *opaque, struct snap_buf *b, char *err, size_t n)
{
	struct hv *hv = opaque;
	uint32_t u32[2] = { SNAP_HV_VERSION, (uint32_t)hv->vm->ncpus };

	pthread_mutex_lock(&hv->lock);
	snap_put(b, u32, 8);
	snap_put(b, &hv->guest_os_id, 8);
	snap_put(b, &hv->hypercall, 8);
	snap_put(b, &hv->reference_tsc, 8);
	snap_put(b, hv->crash_p, sizeof(hv->crash_p));
	for (int i = 0; i < hv->vm->ncpus; i++)
		synic_save(&hv->vp[i], b);
	pthread_mutex_unlock(&hv->lock);
	return 0;
}

static int hv_load(void *opaque, struct snap_rd *r, char *err, size_t n)
{
	struct hv *hv = opaque;
	struct vm *vm = hv->vm;
	uint64_t os, hc, tsc, crash[5];
	uint32_t u32[2];
	struct hv_vp *vp = calloc((size_t)vm->ncpus, sizeof(*vp));

	if (!vp) {
		snprintf(err, n, "out of memory");
		return -1;
	}
	if (!snap_get(r, u32, 8) || u32[0] != SNAP_HV_VERSION || u32[1] != (uint32_t)vm->ncpus) {
		snprintf(err, n, "Hyper-V state of another version or machine");
		goto fail;
	}
	if (!snap_get(r, &os, 8) || !snap_get(r, &hc, 8) || !snap_get(r, &tsc, 8) || !snap_get(r, crash, sizeof(crash)))
		goto bad;
	/* as hypercall_write and tsc_page_write leave them */
	if ((hc & ~(PAGE_GPA_MASK | HYPERCALL_ENABLE | HYPERCALL_LOCKED)) || ((hc & HYPERCALL_ENABLE) && !os) ||
	    ((hc & HYPERCALL_ENABLE) && !vm_gpa(vm, hc & PAGE_GPA_MASK, 4096)) || (tsc & ~(PAGE_GPA_MASK | 1)))
		goto bad;
	for (int i = 0; i < vm->ncpus; i++) {
		if (!synic_load(hv, &vp[i], r)) {
			snprintf(err, n, "bad SynIC state of vCPU %d", i);
			goto fail;
		}
	}
	pthread_mutex_lock(&hv->lock);
	hv->guest_os_id = os;
	hv->hypercall = hc;
	hv->reference_tsc = tsc;
	memcpy(hv->crash_p, crash, sizeof(crash));
	memcpy(hv->vp, vp, (size_t)vm->ncpus * sizeof(*vp));
	synic_restored(hv);
	tsc_page_write(hv, vm->vcpu[0], tsc);
	pthread_mutex_unlock(&hv->lock);
	free(vp);
	return 0;
bad:
	snprintf(err, n, "bad Hyper-V partition state");
fail:
	free(vp);
	return -1;
}

bool hv_msr_read(struct vcpu *v, uint32_t msr, uint64_t *val)
{
	struct hv *hv = v->vm->hv;
	uint64_t tsc, hz;
	bool ok = true;

	if (msr >= 0x40000080 && msr <= 0x400000B7)
		return synic_msr_read(hv, v, msr, val);
	pthread_mutex_lock(&hv->lock);
	switch (msr) {
	case HV_X64_MSR_GUEST_OS_ID: *val = hv->guest_os_id; break;
	case HV_X64_MSR_HYPERCALL: *val = hv->hypercall; break;
	case HV_X64_MSR_VP_INDEX: *val = (uint64_t)v->index; break;
	case HV_X64_MSR_RESET: *val = 0; break;
	case HV_X64_MSR_TIME_REF_COUNT: *val = hv_ref_time(v->vm); break;
	case HV_X64_MSR_REFERENCE_TSC: *val = hv->reference_tsc; break;
	case HV_X64_MSR_TSC_FREQUENCY:
		vm_guest_tsc(v, vm_now_ns(v->vm), &tsc, &hz);
		*val = hz;
		break;
	/* the LAPIC timer counts the crystal clock (src/dev/lapic.c) */
	case HV_X64_MSR_APIC_FREQUENCY: *val = VM_CRYSTAL_HZ; break;
	case HV_X64_MSR_VP_ASSIST_PAGE: *val = hv->vp[v->index].vp_assist; break;
	case HV_X64_MSR_CRASH_CTL: *val = CRASH_CTL_NOTIFY; break; /* what accord can be told */
	default:
		if (msr >= HV_X64_MSR_CRASH_P0 && msr <= HV_X64_MSR_CRASH_P4)
			*val = hv->crash_p[msr - HV_X64_MSR_CRASH_P0];
		else
			ok = false;
	}
	pthread_mutex_unlock(&hv->lock);
	return ok;
}

bool hv_msr_write(struct vcpu *v, uint32_t msr, uint64_t val)
{
	struct hv *hv = v->vm->hv;
	bool ok = true, crash = false;

	if (msr >= 0x40000080 && msr <= 0x400000B7)
		return synic_msr_write(hv, v, msr, val);
	pthread_mutex_lock(&hv->lock);
	switch (msr) {
	case HV_X64_MSR_GUEST_OS_ID:
		hv->guest_os_id = val;
		if (!val)
			hv->hypercall &= ~HYPERCALL_ENABLE;
		break;
	case HV_X64_MSR_HYPERCALL: ok = hypercall_write(hv, val); break;
	case HV_X64_MSR_RESET:
		if (val & 1)
			vm_request_exit(v->vm, VM_RESET, 0, "the guest reset the partition (HV_X64_MSR_RESET)");
		break;
	case HV_X64_MSR_REFERENCE_TSC: tsc_page_write(hv, v, val); break;
	/* no assist features are offered, so the page is only remembered */
	case HV_X64_MSR_VP_ASSIST_PAGE: hv->vp[v->index].vp_assist = val & (PAGE_GPA_MASK | 1); break;
	case HV_X64_MSR_CRASH_CTL: crash = val & CRASH_CTL_NOTIFY; break;
	default:
		/* VP_INDEX, TIME_REF_COUNT and the frequencies are read-only */
		if (msr >= HV_X64_MSR_CRASH_P0 && msr <= HV_X64_MSR_CRASH_P4)
			hv->crash_p[msr - HV_X64_MSR_CRASH_P0] = val;
		else
			ok = false;
	}
	if (crash)
		crash_report(hv);
	pthread_mutex_unlock(&hv->lock);
	return ok;
}

/* a hypercall's input block: 8-byte aligned, within one page, in RAM */
static uint16_t input_map(struct hv *hv, uint64_t gpa, uint64_t len, void *buf)
{
	if ((gpa & 7) || (gpa & 0xfff) + len > 0x1000)
		return HV_STATUS_INVALID_ALIGNMENT;
	if (vm_read_phys(hv->vm, gpa, buf, len) < 0)
		return HV_STATUS_INVALID_PARAMETER;
	return HV_STATUS_SUCCESS;
}

/* HvPostMessage: a message for the host on a connection (VMBus) */
static uint16_t post_message(struct hv *hv, struct vcpu *v, uint64_t control, uint64_t gpa)
{
	struct {
		uint32_t connection_id, reserved, type, size;
		uint8_t payload[HV_MESSAGE_PAYLOAD_MAX];
	} in;
	uint16_t st;

	if (control & HC_FAST)
		return HV_STATUS_INVALID_HYPERCALL_INPUT;
	st = input_map(hv, gpa, sizeof(in), &in);
	if (st)
		return st;
	/* types with the high bit set are the hypervisor's own */
	if (in.size > HV_MESSAGE_PAYLOAD_MAX || !in.type || (in.type & 0x80000000u))
		return HV_STATUS_INVALID_PARAMETER;
	if (!hv->vmbus || !hv->vmbus->post_message)
		return HV_STATUS_INVALID_CONNECTION_ID;
	return hv->vmbus->post_message(hv->vmbus->opaque, (unsigned)v->index, in.connection_id, in.type,
				       in.payload, in.size);
}

/* HvSignalEvent: fast (the input in the register) or from memory */
static uint16_t signal_event(struct hv *hv, struct vcpu *v, uint64_t control, uint64_t input)
{
	uint64_t in = input;
	uint16_t st;

	if (!(control & HC_FAST)) {
		st = input_map(hv, input, sizeof(in), &in);
		if (st)
			return st;
	}
	if (in >> 48)
		return HV_STATUS_INVALID_HYPERCALL_INPUT;
	if ((uint16_t)(in >> 32) >= 2048) /* bits in one SINT's event flags */
		return HV_STATUS_INVALID_PARAMETER;
	if (!hv->vmbus || !hv->vmbus->signal_event)
		return HV_STATUS_INVALID_CONNECTION_ID;
	return hv->vmbus->signal_event(hv->vmbus->opaque, (unsigned)v->index, (uint32_t)in,
				       (uint16_t)(in >> 32));
}

uint64_t hv_hypercall_exec(struct vcpu *v, uint64_t control, uint64_t input, uint64_t output)
{
	struct hv *hv = v->vm->hv;
	uint16_t st;

	switch (HC_CODE(control)) {
	case HVCALL_POST_MESSAGE:
	case HVCALL_SIGNAL_EVENT:
		break;
	default:
		return HV_STATUS_INVALID_HYPERCALL_CODE;
	}
	/* both are simple (not rep) calls with no variable header */
	if ((control & HC_RSVD_MASK) || HC_VARHEAD(control) || HC_REP_COUNT(control) || HC_REP_START(control))
		return HV_STATUS_INVALID_HYPERCALL_INPUT;
	if (HC_CODE(control) == HVCALL_POST_MESSAGE)
		st = post_message(hv, v, control, input);
	else
		st = signal_event(hv, v, control, input);
	return st;
}

void hv_hypercall(struct vcpu *v)
{
	const struct engine_ops *e = v->vm->engine;
	struct hv *hv = v->vm->hv;
	struct cpu_state s;
	uint64_t control, in, out, result;
	bool enabled;
	bool lm;

	/* without an enabled hypercall page the port is no device's */
	pthread_mutex_lock(&hv->lock);
	enabled = hv->hypercall & HYPERCALL_ENABLE;
	pthread_mutex_unlock(&hv->lock);
	if (!enabled || e->get_state(v, &s) < 0)
		return;
	/* hypercalls are for the guest's kernel (TLFS: #UD above CPL 0); a
	 * user program its kernel gave the I/O ports gets no hypercall */
	if (s.sel[1] & 3)
		return;
	lm = s.efer & EFER_LMA_BIT;
	if (lm) {
		control = s.r[R_RCX];
		in = s.r[R_RDX];
		out = s.r[R_R8];
	} else {
		control = s.r[R_RDX] << 32 | (uint32_t)s.r[R_RAX];
		in = s.r[R_RBX] << 32 | (uint32_t)s.r[R_RCX];
		out = s.r[R_RDI] << 32 | (uint32_t)s.r[R_RSI];
	}
	result = hv_hypercall_exec(v, control, in, out);
	if (lm) {
		s.r[R_RAX] = result;
	} else {
		s.r[R_RAX] = (uint32_t)result;
		s.r[R_RDX] = result >> 32;
	}
	e->set_state(v, &s);
}
