/* hyperv: the Hyper-V guest interface as the TLFS (Hypervisor Top Level
 * Functional Specification 6.0) defines it: discovery leaves, the guest OS
 * ID and hypercall page, hypercall status codes, the VP index, the partition
 * reference counter against the ACPI PM timer, the reference TSC page, and
 * the SynIC with synthetic timers (message mode with its slot and EOM
 * protocol, periodic, direct mode). Each check needs the feature bit that
 * announces it; a target without it gets a SKIP that says so. Timing is
 * asserted only within generous bands. Every target reports every check,
 * if only as a SKIP. accord runs this family with --personality hyperv.
 *
 * With "hyperv.ticks=N" on the command line it then ticks N times, for
 * the snapshot tests (tests/hyperv_snapshot.sh): a periodic synthetic
 * timer's message on an auto-EOI SINT every 20 ms, "hvtick I" printed for
 * each, and the check hyperv.ticks at the end: the expirations rise, the
 * TSC page agrees with the counter MSR and neither goes back. A VM
 * snapshotted and restored meanwhile must keep all of that. */
#include "guest.h"

#define HV_X64_MSR_GUEST_OS_ID 0x40000000
#define HV_X64_MSR_HYPERCALL 0x40000001
#define HV_X64_MSR_VP_INDEX 0x40000002
#define HV_X64_MSR_TIME_REF_COUNT 0x40000020
#define HV_X64_MSR_REFERENCE_TSC 0x40000021
#define HV_X64_MSR_SCONTROL 0x40000080
#define HV_X64_MSR_SVERSION 0x40000081
#define HV_X64_MSR_SIEFP 0x40000082
#define HV_X64_MSR_SIMP 0x40000083
#define HV_X64_MSR_EOM 0x40000084
#define HV_X64_MSR_SINT0 0x40000090
#define HV_X64_MSR_STIMER0_CONFIG 0x400000b0
#define HV_X64_MSR_STIMER0_COUNT 0x400000b1

/* 0x40000003 EAX */
#define F_TIME_REF_COUNT (1u << 1)
#define F_SYNIC (1u << 2)
#define F_SYNTIMER (1u << 3)
#define F_HYPERCALL (1u << 5)
#define F_VP_INDEX (1u << 6)
#define F_REFERENCE_TSC (1u << 9)
/* 0x40000003 EBX */
#define F_POST_MESSAGES (1u << 4)
#define F_SIGNAL_EVENTS (1u << 5)
/* 0x40000003 EDX */
#define F_STIMER_DIRECT (1u << 19)

#define HV_STATUS_INVALID_HYPERCALL_CODE 2
#define HV_STATUS_INVALID_CONNECTION_ID 0x12
#define HVCALL_POST_MESSAGE 0x5c
#define HVCALL_SIGNAL_EVENT 0x5d
#define HC_FAST (1ul << 16)

#define HVMSG_TIMER_EXPIRED 0x80000010u
#define SINT 2
#define VEC_SINT 0x60
#define VEC_DIRECT 0x61
#define VEC_AEOI 0x62
#define SINT_AEOI 3
#define UNKNOWN_CONNECTION 0x7777

#define LAPIC 0xfee00000ul
#define APIC_EOI 0xb0
#define APIC_SVR 0xf0
#define APIC_ISR 0x100

struct hv_message {
	uint32_t type;
	uint8_t size, flags;
	uint16_t reserved;
	uint64_t sender;
	union {
		uint8_t bytes[240];
		struct {
			uint32_t index, reserved;
			uint64_t expiration, delivery;
		} timer;
	} u;
};

struct tsc_page {
	volatile uint32_t sequence;
	uint32_t reserved;
	volatile uint64_t scale;
	volatile int64_t offset;
};

static uint8_t hypercall_page[4096] __attribute__((aligned(4096)));
static uint8_t input_page[4096] __attribute__((aligned(4096)));
static struct hv_message simp[16] __attribute__((aligned(4096)));
static uint8_t siefp[4096] __attribute__((aligned(4096)));
static union {
	struct tsc_page p;
	uint8_t page[4096];
} tsc_area __attribute__((aligned(4096)));
#define tsc_page tsc_area.p

static uint32_t features_a, features_b, features_d;
static bool hv_present, have_hypercall, have_pm;
static char signature[13];
static volatile unsigned vec_count[256];

static void lapic_wr(unsigned reg, uint32_t v)
{
	*(volatile uint32_t *)(LAPIC + reg) = v;
}

static void irq_handler(struct trap_frame *f)
{
	vec_count[f->vector & 0xff]++;
	lapic_wr(APIC_EOI, 0);
}

static volatile bool aeoi_in_isr;

/* an auto-EOI SINT's handler: no EOI, and its vector must not be in
 * service */
static void aeoi_handler(struct trap_frame *f)
{
	uint32_t isr = *(volatile uint32_t *)(LAPIC + APIC_ISR + 0x10 * (VEC_AEOI / 32));

	aeoi_in_isr = isr & (1u << (VEC_AEOI % 32));
	vec_count[f->vector & 0xff]++;
}

static uint64_t hypercall(uint64_t control, uint64_t in, uint64_t out)
{
	register uint64_t r8 asm("r8") = out;
	uint64_t status;
	void *page = hypercall_page;

	asm volatile("call *%[page]"
		     : "=a"(status), "+c"(control), "+d"(in), "+r"(r8)
		     : [page] "r"(page)
		     : "cc", "memory", "r9", "r10", "r11");
	return status;
}

static uint64_t ref_count(void)
{
	return rdmsr(HV_X64_MSR_TIME_REF_COUNT);
}

/* the TSC page's reference time; false when the page says "use the MSR" */
static bool tsc_page_read(uint64_t *t)
{
	uint32_t seq;
	uint64_t scale, tsc;
	int64_t offset;

	do {
		seq = tsc_page.sequence;
		if (!seq)
			return false;
		asm volatile("" ::: "memory");
		scale = tsc_page.scale;
		offset = tsc_page.offset;
		tsc = rdtsc();
		asm volatile("" ::: "memory");
	} while (tsc_page.sequence != seq);
	*t = (uint64_t)(((unsigned __int128)tsc * scale) >> 64) + (uint64_t)offset;
	return true;
}

static bool need(bool have, const char *name, const char *what)
{
	if (have)
		return true;
	if (!hv_present)
		skip(name, "no Hyper-V interface at CPUID 0x40000000 (\"%s\")", signature);
	else
		skip(name, "the target does not offer %s", what);
	return false;
}

/* a check that cannot run because an earlier one failed */
static void skip_after(const char *name, const char *failed)
{
	skip(name, "%s failed", failed);
}

static void test_discovery(void)
{
	struct cpuid_regs r;

	if (!need(hv_present, "cpuid.signature", "")) {
		need(false, "cpuid.max_leaf", "");
		need(false, "cpuid.interface", "");
		need(false, "cpuid.hypercall_available", "");
		need(false, "cpuid.limits", "");
		return;
	}
	r = cpuid(0x40000000, 0);
	pass("cpuid.signature");
	check(r.eax >= 0x40000005 && r.eax <= 0x4000ffff, "cpuid.max_leaf",
	      "0x40000000 EAX 0x%x, TLFS wants at least 0x40000005", r.eax);
	r = cpuid(0x40000001, 0);
	check(r.eax == 0x31237648, "cpuid.interface", "0x40000001 EAX 0x%x, not \"Hv#1\"", r.eax);
	r = cpuid(0x40000003, 0);
	features_a = r.eax;
	features_b = r.ebx;
	features_d = r.edx;
	printf("# features EAX 0x%x EBX 0x%x EDX 0x%x\n", r.eax, r.ebx, r.edx);
	check(features_a & F_HYPERCALL, "cpuid.hypercall_available",
	      "0x40000003 EAX 0x%x lacks HV_MSR_HYPERCALL_AVAILABLE", features_a);
	r = cpuid(0x40000005, 0);
	check(r.eax >= 1, "cpuid.limits", "0x40000005 EAX (max virtual processors) %u", r.eax);
}

static void test_msrs(void)
{
	if (need(features_a & F_HYPERCALL, "msr.guest_os_id", "the guest OS ID MSR")) {
		/* open source, Linux-style ID (TLFS 3.6) */
		wrmsr(HV_X64_MSR_GUEST_OS_ID, 0x8100000000010000ul);
		uint64_t v = rdmsr(HV_X64_MSR_GUEST_OS_ID);
		check(v == 0x8100000000010000ul, "msr.guest_os_id", "read back 0x%lx", v);
	}
	if (need(features_a & F_VP_INDEX, "msr.vp_index", "the VP index MSR")) {
		uint64_t v = rdmsr(HV_X64_MSR_VP_INDEX);
		check(v == 0, "msr.vp_index", "the boot processor's VP index is %lu", v);
	}
}

static void test_hypercalls(void)
{
	uint64_t st;

	if (!need(features_a & F_HYPERCALL, "hypercall.enable", "the hypercall page")) {
		need(false, "hypercall.invalid_code", "the hypercall page");
		need(false, "hypercall.post_message_unknown_connection", "the hypercall page");
		need(false, "hypercall.signal_event_unknown_connection", "the hypercall page");
		return;
	}
	wrmsr(HV_X64_MSR_HYPERCALL, (uint64_t)(uintptr_t)hypercall_page | 1);
	uint64_t v = rdmsr(HV_X64_MSR_HYPERCALL);
	have_hypercall = check(v == ((uint64_t)(uintptr_t)hypercall_page | 1), "hypercall.enable",
			       "HYPERCALL MSR reads 0x%lx", v);
	if (!have_hypercall) {
		skip_after("hypercall.invalid_code", "hypercall.enable");
		skip_after("hypercall.post_message_unknown_connection", "hypercall.enable");
		skip_after("hypercall.signal_event_unknown_connection", "hypercall.enable");
		return;
	}
	/* 0x0fff names no hypercall in TLFS 6.0 */
	st = hypercall(0x0fff, 0, 0);
	check((st & 0xffff) == HV_STATUS_INVALID_HYPERCALL_CODE, "hypercall.invalid_code",
	      "status 0x%lx, want HV_STATUS_INVALID_HYPERCALL_CODE", st & 0xffff);
	if (need(features_b & F_POST_MESSAGES, "hypercall.post_message_unknown_connection", "HvPostMessage")) {
		uint32_t *in = (uint32_t *)input_page;
		in[0] = UNKNOWN_CONNECTION;
		in[1] = 0;
		in[2] = 1; /* message type */
		in[3] = 8; /* payload bytes */
		st = hypercall(HVCALL_POST_MESSAGE, (uint64_t)(uintptr_t)input_page, 0);
		check((st & 0xffff) == HV_STATUS_INVALID_CONNECTION_ID, "hypercall.post_message_unknown_connection",
		      "status 0x%lx, want HV_STATUS_INVALID_CONNECTION_ID", st & 0xffff);
	}
	if (need(features_b & F_SIGNAL_EVENTS, "hypercall.signal_event_unknown_connection", "HvSignalEvent")) {
		st = hypercall(HVCALL_SIGNAL_EVENT | HC_FAST, UNKNOWN_CONNECTION, 0);
		check((st & 0xffff) == HV_STATUS_INVALID_CONNECTION_ID,
		      "hypercall.signal_event_unknown_connection",
		      "status 0x%lx, want HV_STATUS_INVALID_CONNECTION_ID", st & 0xffff);
	}
}

static void test_reference_time(void)
{
	if (!need(features_a & F_TIME_REF_COUNT, "time_ref_count.monotonic", "the reference counter")) {
		need(false, "time_ref_count.vs_pm_timer", "the reference counter");
		return;
	}
	uint64_t prev = ref_count(), first = prev;
	bool mono = true;
	for (int i = 0; i < 2000; i++) {
		uint64_t t = ref_count();
		mono &= t >= prev;
		prev = t;
	}
	check(mono && prev > first, "time_ref_count.monotonic", "went from %lu to %lu (backwards: %s)", first,
	      prev, mono ? "no" : "yes");
	if (!need(have_pm, "time_ref_count.vs_pm_timer", "an ACPI PM timer to compare with"))
		return;
	/* 50 ms of PM timer against the counter's 100 ns units */
	uint64_t r0 = ref_count();
	uint32_t p0 = pm_timer_read(), ticks;
	while ((ticks = pm_timer_ticks_since(p0)) < PM_TIMER_HZ / 20)
		;
	uint64_t r1 = ref_count();
	uint64_t ref_ns = (r1 - r0) * 100, pm_ns = (uint64_t)ticks * 1000000000ul / PM_TIMER_HZ;
	check(ref_ns >= pm_ns / 2 && ref_ns <= pm_ns * 2, "time_ref_count.vs_pm_timer",
	      "%lu ns by the counter over %lu ns of PM timer", ref_ns, pm_ns);
}

static void test_tsc_page(void)
{
	uint64_t t, a, b;

	if (!need(features_a & F_REFERENCE_TSC, "tsc_page.valid", "the reference TSC page")) {
		need(false, "tsc_page.agrees_with_counter", "the reference TSC page");
		need(false, "tsc_page.monotonic", "the reference TSC page");
		return;
	}
	wrmsr(HV_X64_MSR_REFERENCE_TSC, (uint64_t)(uintptr_t)&tsc_page | 1);
	if (!tsc_page.sequence) {
		/* TLFS: sequence 0 tells the guest to use the counter MSR */
		skip("tsc_page.valid", "the target left the TSC page invalid (sequence 0)");
		skip("tsc_page.agrees_with_counter", "the TSC page is invalid");
		skip("tsc_page.monotonic", "the TSC page is invalid");
		return;
	}
	check(tsc_page.scale != 0, "tsc_page.valid", "sequence %u, scale 0x%lx", tsc_page.sequence,
	      tsc_page.scale);
	bool agree = true;
	for (int i = 0; i < 20 && agree; i++) {
		a = ref_count();
		tsc_page_read(&t);
		b = ref_count();
		/* 1 ms of slack either side: two clocks read in turn */
		agree = t + 10000 >= a && t <= b + 10000;
	}
	check(agree, "tsc_page.agrees_with_counter", "page %lu outside [%lu, %lu]", t, a, b);
	uint64_t prev = 0;
	bool mono = true;
	for (int i = 0; i < 2000; i++) {
		tsc_page_read(&t);
		mono &= t >= prev;
		prev = t;
	}
	check(mono, "tsc_page.monotonic", "the page's time went backwards");
}

/* wait up to 2 s (PM timer, or a bounded spin without one) for cond */
#define WAIT_FOR(cond)                                                          \
	({                                                                      \
		uint32_t _p0 = have_pm ? pm_timer_read() : 0;                   \
		uint64_t _spins = 0;                                            \
		while (!(cond) && (have_pm ? pm_timer_ticks_since(_p0) < 2 * PM_TIMER_HZ \
					   : _spins++ < 200000000ul))            \
			asm volatile("pause");                                  \
		(cond);                                                         \
	})

static struct hv_message *slot(void)
{
	return &simp[SINT];
}

/* the guest's side of the slot protocol: free it, EOM when asked */
static void slot_release_at(volatile struct hv_message *m)
{
	m->type = 0;
	asm volatile("mfence" ::: "memory");
	if (m->flags & 1)
		wrmsr(HV_X64_MSR_EOM, 0);
}

static void slot_release(void)
{
	slot_release_at(slot());
}

static const char *const stimer_checks[] = {
	"stimer.message", "stimer.message_fields", "stimer.oneshot_disables",
	"stimer.periodic", "stimer.pending_then_eom", "stimer.direct", "synic.auto_eoi",
};

static void test_synic(void)
{
	if (!need(features_a & F_SYNIC, "synic.version", "the SynIC")) {
		need(false, "synic.enable", "the SynIC");
		need(false, "synic.sint_masked_by_default", "the SynIC");
		for (size_t i = 0; i < ARRAY_SIZE(stimer_checks); i++)
			need(false, stimer_checks[i], "the SynIC");
		return;
	}
	check(rdmsr(HV_X64_MSR_SVERSION) == 1, "synic.version", "SVERSION 0x%lx", rdmsr(HV_X64_MSR_SVERSION));
	wrmsr(HV_X64_MSR_SIMP, (uint64_t)(uintptr_t)simp | 1);
	wrmsr(HV_X64_MSR_SIEFP, (uint64_t)(uintptr_t)siefp | 1);
	wrmsr(HV_X64_MSR_SINT0 + SINT, VEC_SINT);
	wrmsr(HV_X64_MSR_SCONTROL, 1);
	uint64_t sint = rdmsr(HV_X64_MSR_SINT0 + SINT), simp_msr = rdmsr(HV_X64_MSR_SIMP);
	check(sint == VEC_SINT && simp_msr == ((uint64_t)(uintptr_t)simp | 1) && (rdmsr(HV_X64_MSR_SCONTROL) & 1),
	      "synic.enable", "SINT%d 0x%lx SIMP 0x%lx", SINT, sint, simp_msr);
	check(rdmsr(HV_X64_MSR_SINT0 + 5) & (1ul << 16), "synic.sint_masked_by_default", "SINT5 0x%lx",
	      rdmsr(HV_X64_MSR_SINT0 + 5));

	if (!(features_a & F_SYNTIMER)) {
		for (size_t i = 0; i < ARRAY_SIZE(stimer_checks); i++)
			need(false, stimer_checks[i], "synthetic timers");
		return;
	}
	volatile struct hv_message *m = slot();
	unsigned before = vec_count[VEC_SINT];
	uint64_t due = ref_count() + 100000; /* 10 ms */
	/* one-shot, message mode into SINT2 */
	wrmsr(HV_X64_MSR_STIMER0_CONFIG, 1 | (uint64_t)SINT << 16);
	wrmsr(HV_X64_MSR_STIMER0_COUNT, due);
	bool got = WAIT_FOR(m->type == HVMSG_TIMER_EXPIRED && vec_count[VEC_SINT] != before);
	if (check(got, "stimer.message", "type 0x%x, vector 0x%x taken %u times", m->type, VEC_SINT,
		  vec_count[VEC_SINT] - before)) {
		check(m->size == 24 && m->u.timer.index == 0 && m->u.timer.expiration == due &&
			      m->u.timer.delivery >= due,
		      "stimer.message_fields", "size %u index %u expiration %lu (want %lu) delivery %lu", m->size,
		      m->u.timer.index, m->u.timer.expiration, due, m->u.timer.delivery);
		check(!(rdmsr(HV_X64_MSR_STIMER0_CONFIG) & 1), "stimer.oneshot_disables",
		      "CONFIG 0x%lx after expiry", rdmsr(HV_X64_MSR_STIMER0_CONFIG));
	} else {
		skip_after("stimer.message_fields", "stimer.message");
		skip_after("stimer.oneshot_disables", "stimer.message");
	}
	slot_release();

	/* periodic, 5 ms: three expiry messages in a row */
	unsigned n = 0;
	wrmsr(HV_X64_MSR_STIMER0_CONFIG + 2, 1 | 2 | (uint64_t)SINT << 16);
	wrmsr(HV_X64_MSR_STIMER0_COUNT + 2, 50000);
	for (int i = 0; i < 3; i++) {
		if (!WAIT_FOR(m->type == HVMSG_TIMER_EXPIRED))
			break;
		n += m->u.timer.index == 1;
		slot_release();
	}
	check(n == 3, "stimer.periodic", "%u of 3 periodic expiry messages from timer 1", n);

	/* leave the slot busy: the next expiry must set message-pending and
	 * arrive only after EOM */
	bool pending = WAIT_FOR(m->type == HVMSG_TIMER_EXPIRED) && WAIT_FOR(m->flags & 1);
	uint64_t first = m->u.timer.expiration;
	slot_release();
	bool again = WAIT_FOR(m->type == HVMSG_TIMER_EXPIRED && m->u.timer.expiration != first);
	check(pending && again, "stimer.pending_then_eom", "pending flag %s, message after EOM %s",
	      pending ? "set" : "never set", again ? "arrived" : "never arrived");
	wrmsr(HV_X64_MSR_STIMER0_CONFIG + 2, 0);
	slot_release();

	if (need(features_d & F_STIMER_DIRECT, "stimer.direct", "direct-mode synthetic timers")) {
		before = vec_count[VEC_DIRECT];
		wrmsr(HV_X64_MSR_STIMER0_CONFIG + 4, 1 | (uint64_t)VEC_DIRECT << 4 | 1ul << 12);
		wrmsr(HV_X64_MSR_STIMER0_COUNT + 4, ref_count() + 50000);
		got = WAIT_FOR(vec_count[VEC_DIRECT] != before);
		check(got && m->type == 0, "stimer.direct", "vector 0x%x taken %u times, slot type 0x%x",
		      VEC_DIRECT, vec_count[VEC_DIRECT] - before, m->type);
	}

	/* auto-EOI (TLFS SINT register bit 17): a timer message on SINT3 */
	volatile struct hv_message *m3 = &simp[SINT_AEOI];
	wrmsr(HV_X64_MSR_SINT0 + SINT_AEOI, VEC_AEOI | 1ul << 17);
	before = vec_count[VEC_AEOI];
	wrmsr(HV_X64_MSR_STIMER0_CONFIG + 6, 1 | (uint64_t)SINT_AEOI << 16);
	wrmsr(HV_X64_MSR_STIMER0_COUNT + 6, ref_count() + 50000);
	got = WAIT_FOR(vec_count[VEC_AEOI] != before);
	check(got && m3->type == HVMSG_TIMER_EXPIRED && !aeoi_in_isr, "synic.auto_eoi",
	      "vector 0x%x taken %u times, %s the ISR in its handler", VEC_AEOI, vec_count[VEC_AEOI] - before,
	      aeoi_in_isr ? "in" : "not in");
	m3->type = 0;
	wrmsr(HV_X64_MSR_SINT0 + SINT_AEOI, 1ul << 16);
}

static uint64_t cmdline_count(const char *key)
{
	const char *p = strstr(boot_cmdline(), key);
	uint64_t n = 0;

	if (!p)
		return 0;
	for (p += strlen(key); *p >= '0' && *p <= '9'; p++)
		n = n * 10 + (uint64_t)(*p - '0');
	return n;
}

#define TICK_REF 200000 /* 20 ms in 100 ns units */

static void test_ticks(uint64_t count)
{
	volatile struct hv_message *m = &simp[SINT_AEOI];
	uint64_t last_exp = 0, last_ref = 0, i, a = 0, t = 0, b = 0;
	bool ok = true;
	const char *why = "";

	if (!hv_present || !(features_a & F_SYNTIMER) || !(features_a & F_REFERENCE_TSC) || !tsc_page.sequence) {
		skip("hyperv.ticks", "no synthetic timers or TSC page");
		return;
	}
	m->type = 0;
	wrmsr(HV_X64_MSR_SINT0 + SINT_AEOI, VEC_AEOI | 1ul << 17);
	wrmsr(HV_X64_MSR_STIMER0_CONFIG, 1 | 2 | (uint64_t)SINT_AEOI << 16);
	wrmsr(HV_X64_MSR_STIMER0_COUNT, TICK_REF);
	for (i = 1; i <= count; i++) {
		/* the slot fills from the timer; an interrupt with it, whose
		 * auto-EOI leaves the LAPIC free for the next one */
		while (m->type != HVMSG_TIMER_EXPIRED)
			asm volatile("sti; hlt; cli");
		asm volatile("sti");
		a = ref_count();
		tsc_page_read(&t);
		b = ref_count();
		if (m->u.timer.index != 0 || m->u.timer.expiration <= last_exp)
			ok = false, why = "the expirations went back or another timer fired";
		else if (t < last_ref || a < last_ref || t + 10000 < a || t > b + 10000)
			ok = false, why = "the TSC page and the counter disagree or went back";
		else if (aeoi_in_isr)
			ok = false, why = "the auto-EOI vector was left in service";
		if (!ok)
			break;
		last_exp = m->u.timer.expiration;
		last_ref = b;
		printf("hvtick %lu\n", i);
		slot_release_at(m);
	}
	wrmsr(HV_X64_MSR_STIMER0_CONFIG, 0);
	wrmsr(HV_X64_MSR_SINT0 + SINT_AEOI, 1ul << 16);
	check(ok, "hyperv.ticks", "after %lu ticks: %s (counter %lu, page %lu, counter %lu; before: %lu; expiration %lu)",
	      i - 1, why, a, t, b, last_ref, last_exp);
}

void test_main(void)
{
	struct cpuid_regs r = cpuid(0x40000000, 0);

	memcpy(signature, &r.ebx, 4);
	memcpy(signature + 4, &r.ecx, 4);
	memcpy(signature + 8, &r.edx, 4);
	/* a CPU with no hypervisor leaves repeats its highest basic leaf */
	for (int i = 0; i < 12; i++)
		if (signature[i] < 0x20 || signature[i] > 0x7e)
			signature[i] = '?';
	hv_present = !strcmp(signature, "Microsoft Hv");
	have_pm = pm_timer_init();
	trap_set_handler(VEC_SINT, irq_handler);
	trap_set_handler(VEC_DIRECT, irq_handler);
	trap_set_handler(VEC_AEOI, aeoi_handler);
	if (hv_present) {
		/* the 8259s may be live and unmapped (vector 8 for IRQ0 after a
		 * PVH boot): only the LAPIC's vectors may come in */
		outb(0x21, 0xff);
		outb(0xa1, 0xff);
		lapic_wr(APIC_SVR, 0x1ff);
		sti();
	}
	test_discovery();
	test_msrs();
	test_hypercalls();
	test_reference_time();
	test_tsc_page();
	test_synic();
	uint64_t ticks = cmdline_count("hyperv.ticks=");
	if (ticks)
		test_ticks(ticks);
	cli();
	if (features_a & F_SYNIC)
		wrmsr(HV_X64_MSR_SCONTROL, 0);
}
