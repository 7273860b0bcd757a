/* The kvm engine (src/engine/kvm.c) against what a conforming KVM does
 * where this project's hosts' KVM does something else or nothing, on the
 * real /dev/kvm with ioctl() interposed: the test's own ioctl() records
 * what the engine asks and answers for a conforming KVM where this host's
 * cannot (TSC scaling; no smaller guest MAXPHYADDR than the host's).
 *  - KVM_SET_TSC_KHZ changes the TSC's rate, not its offset: each vCPU's
 *    IA32_TSC is written after the rate is set, with the VM clock;
 *  - IA32_MISC_ENABLE is the model's (fast strings), not KVM's RESET value;
 *  - CPUID: no leaf the model leaves zero is handed to KVM (KVM fills
 *    0xD.0 EBX into an entry that exists: KVM_GET_CPUID2 cannot show it
 *    here, where KVM reports the host's leaves instead); MAXPHYADDR is
 *    the host's where KVM cannot give the guest a smaller one;
 *  - an MMIO read that crosses a page is two exits; a vCPU stopped after
 *    the first (a pause) has its state read: the second part is served
 *    there too, and the guest reads the device's bytes, not stale ones;
 *  - KVM's hypercalls are limited to what CPUID 0x40000001 announces;
 *  - with KVM's LAPICs, an AP's state read after KVM accepted its INIT
 *    and SIPI is the SIPI's (KVM_GET_MP_STATE carries them out);
 *  - without KVM_CAP_EXIT_ON_EMULATION_FAILURE KVM queues #UD with an
 *    emulation failure's exit: accord's interpreter still runs the
 *    instruction, and the guest never sees that #UD;
 *  - the split irqchip's LAPIC timer and CPUID 0x15 agree: with
 *    KVM_CAP_X86_APIC_BUS_CYCLES_NS answered absent (before Linux 6.11)
 *    KVM's timer counts at 1 GHz, the VM's crystal, and 0x15 says so with
 *    a TSC ratio Linux's 32-bit arithmetic takes; with it, KVM is set to
 *    the crystal's cycle (40 ns, or 1 ns for a restored 1 GHz guest); a
 *    restored 25 MHz guest cannot run where KVM lacks it.
 * Without a usable /dev/kvm every check is a skip. Prints TAP. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cpu/cpu.h"
#include "engine/engine.h"
#include "vm/vm.h"
#include "tap.h"

#define NCPUS 2
/* Linux 6.11's capability; the headers may predate it */
#ifndef KVM_CAP_X86_APIC_BUS_CYCLES_NS
#define KVM_CAP_X86_APIC_BUS_CYCLES_NS 237
#endif
#define MSR_IA32_TSC 0x10
#define MSR_MISC_ENABLE 0x1a0
#define FRAG_BASE 0xd0000000ull
/* a conforming host's MAXPHYADDR, where KVM cannot give the guest fewer */
#define HOST_PHYS 46

static int n_skip;

/* what the engine asked of KVM, in order */
#define MAX_RECS 64
static struct rec {
	int fd;
	unsigned long req;
	uint64_t val;
} recs[MAX_RECS];
static int nrecs;
static struct kvm_cpuid2 *cpuid_set0; /* the first KVM_SET_CPUID2's table */
/* answer as a KVM with TSC scaling, on a host with HOST_PHYS physical
 * address bits, without KVM_CAP_SMALLER_MAXPHYADDR (VMX's default with EPT) */
static bool conforming;
static int last_vcpu_fd = -1; /* the vCPU KVM_CREATE_VCPU made last */
/* answer KVM_CAP_X86_APIC_BUS_CYCLES_NS absent, as a KVM before 6.11 */
static bool no_bus_cycles;
static struct kvm_cpuid2 *cpuid_last; /* the last KVM_SET_CPUID2's table */
static int bus_cycle_sets;	      /* KVM_ENABLE_CAP(KVM_CAP_X86_APIC_BUS_CYCLES_NS) */
static uint64_t bus_cycle_ns;	      /* the last one's argument */

static void record(int fd, unsigned long req, uint64_t val)
{
	if (nrecs < MAX_RECS)
		recs[nrecs++] = (struct rec){ fd, req, val };
}

/* a preemption, once, just before the engine's next read of the TSC */
static unsigned tsc_delay_us;

/* KVM_RUN as a KVM without KVM_CAP_EXIT_ON_EMULATION_FAILURE (before
 * Linux 5.14, or the capability off) ends it: an instruction its emulator
 * cannot run gets #UD queued, and at CPL 0 the exit to user space as well
 * (x86.c, handle_emulation_failure) */
static int emu_failures;

static int run_queue_ud(int fd)
{
	static int map_fd = -1;
	static struct kvm_run *run;
	struct kvm_vcpu_events ev;
	int rc = (int)syscall(SYS_ioctl, fd, KVM_RUN, 0);

	if (rc < 0)
		return rc;
	if (map_fd != fd) {
		if (run)
			munmap(run, sizeof(*run));
		run = mmap(NULL, sizeof(*run), PROT_READ, MAP_SHARED, fd, 0);
		if (run == MAP_FAILED)
			run = NULL;
		map_fd = run ? fd : -1;
	}
	if (!run || run->exit_reason != KVM_EXIT_INTERNAL_ERROR ||
	    run->internal.suberror != KVM_INTERNAL_ERROR_EMULATION)
		return rc;
	emu_failures++;
	if (syscall(SYS_ioctl, fd, KVM_GET_VCPU_EVENTS, &ev) == 0 && !ev.exception.injected &&
	    !ev.exception.pending) {
		ev.exception.injected = 1;
		ev.exception.nr = 6;
		ev.exception.has_error_code = 0;
		syscall(SYS_ioctl, fd, KVM_SET_VCPU_EVENTS, &ev);
	}
	return rc;
}

int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (conforming && req == KVM_CHECK_EXTENSION && (long)arg == KVM_CAP_TSC_CONTROL)
		return 1;
	if (conforming && req == KVM_CHECK_EXTENSION && (long)arg == KVM_CAP_SMALLER_MAXPHYADDR)
		return 0;
	if (conforming && req == KVM_GET_SUPPORTED_CPUID) {
		struct kvm_cpuid2 *c = arg;
		int rc = (int)syscall(SYS_ioctl, fd, req, arg);
		for (uint32_t i = 0; rc == 0 && i < c->nent; i++)
			if (c->entries[i].function == 0x80000008)
				c->entries[i].eax = (c->entries[i].eax & ~0xffu) | HOST_PHYS;
		return rc;
	}
	if (conforming && req == KVM_SET_TSC_KHZ) {
		record(fd, req, (uintptr_t)arg);
		return 0;
	}
	if (req == KVM_SET_MSRS) {
		const struct kvm_msrs *m = arg;
		for (uint32_t i = 0; i < m->nmsrs; i++)
			if (m->entries[i].index == MSR_IA32_TSC)
				record(fd, req, m->entries[i].data);
			else if (m->entries[i].index == MSR_MISC_ENABLE)
				record(fd, MSR_MISC_ENABLE, m->entries[i].data);
	}
	if (req == KVM_SET_CPUID2) {
		const struct kvm_cpuid2 *c = arg;
		size_t n = sizeof(*c) + c->nent * sizeof(c->entries[0]);
		free(cpuid_last);
		cpuid_last = malloc(n);
		if (cpuid_last)
			memcpy(cpuid_last, c, n);
		if (!cpuid_set0 && (cpuid_set0 = malloc(n)))
			memcpy(cpuid_set0, c, n);
	}
	if (req == KVM_CHECK_EXTENSION && (long)arg == KVM_CAP_X86_APIC_BUS_CYCLES_NS && no_bus_cycles)
		return 0;
	if (req == KVM_ENABLE_CAP && ((const struct kvm_enable_cap *)arg)->cap == KVM_CAP_X86_APIC_BUS_CYCLES_NS) {
		bus_cycle_sets++;
		bus_cycle_ns = ((const struct kvm_enable_cap *)arg)->args[0];
	}
	if (req == KVM_CREATE_VCPU) {
		int rc = (int)syscall(SYS_ioctl, fd, req, arg);
		last_vcpu_fd = rc;
		return rc;
	}
	if (req == KVM_CHECK_EXTENSION && (long)arg == KVM_CAP_EXIT_ON_EMULATION_FAILURE)
		return 0;
	if (req == KVM_RUN)
		return run_queue_ud(fd);
	if (req == KVM_GET_MSRS && tsc_delay_us && ((const struct kvm_msrs *)arg)->nmsrs == 1 &&
	    ((const struct kvm_msrs *)arg)->entries[0].index == MSR_IA32_TSC) {
		usleep(tsc_delay_us);
		tsc_delay_us = 0;
	}
	return (int)syscall(SYS_ioctl, fd, req, arg);
}

static void skip(const char *name, const char *why)
{
	printf("ok %d - %s # SKIP %s\n", ++n_test, name, why);
	n_skip++;
}

/* each vCPU: KVM_SET_TSC_KHZ, then its IA32_TSC at the VM clock */
static void test_tsc(uint64_t tsc_after)
{
	int fds[NCPUS], n = 0;
	bool ordered = true, in_range = true, rate_ok = true;

	for (int i = 0; i < nrecs; i++)
		if (recs[i].req == KVM_SET_TSC_KHZ && n < NCPUS) {
			fds[n++] = recs[i].fd;
			rate_ok &= recs[i].val == VM_TSC_HZ / 1000;
		}
	ok(n == NCPUS && rate_ok, "KVM_SET_TSC_KHZ %llu on each of %d vCPUs (%d asked)",
	   (unsigned long long)(VM_TSC_HZ / 1000), NCPUS, n);
	for (int c = 0; c < n; c++) {
		int rate = -1, tsc = -1;
		for (int i = 0; i < nrecs; i++) {
			if (recs[i].fd != fds[c])
				continue;
			if (recs[i].req == KVM_SET_TSC_KHZ && rate < 0)
				rate = i;
			if (recs[i].req == KVM_SET_MSRS && tsc < 0)
				tsc = i;
		}
		ordered &= rate >= 0 && tsc > rate;
		in_range &= tsc > rate && recs[tsc].val <= tsc_after;
	}
	ok(n && ordered, "each vCPU's IA32_TSC is written after its KVM_SET_TSC_KHZ (a conforming KVM keeps the "
			 "offset it chose for the host's rate)");
	ok(n && in_range, "the TSC written is the VM clock at the guest's rate (at most %llu after creation)",
	   (unsigned long long)tsc_after);
}

/* KVM's RESET value of IA32_MISC_ENABLE is 0x1800 (no fast strings);
 * each vCPU gets the model's, as emu's CPU has it after its reset */
static void test_misc_enable(void)
{
	struct cpu c;
	int n = 0;
	bool same = true;

	memset(&c, 0, sizeof(c));
	cpu_reset(&c);
	for (int i = 0; i < nrecs; i++)
		if (recs[i].req == MSR_MISC_ENABLE) {
			n++;
			same &= recs[i].val == c.misc_enable;
		}
	ok(n == NCPUS && same && (c.misc_enable & 1),
	   "each vCPU's IA32_MISC_ENABLE is the model's reset value %#llx, fast strings on (%d written)",
	   (unsigned long long)c.misc_enable, n);
}

static void test_cpuid(struct vm *vm)
{
	struct cpuid_result r;
	bool zero = false, leaf_d = false;
	uint32_t i;

	if (!cpuid_set0) {
		ok(false, "KVM_SET_CPUID2 was called");
		return;
	}
	for (i = 0; i < cpuid_set0->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &cpuid_set0->entries[i];
		zero |= !(e->eax | e->ebx | e->ecx | e->edx);
		leaf_d |= e->function == 0xd;
	}
	cpuid_query(vm->personality, 0, 1, 0, &r);
	ok(!zero, "no all-zero leaf handed to KVM_SET_CPUID2 (%u entries)", cpuid_set0->nent);
	ok((r.ecx & (1u << 26)) || !leaf_d, "without XSAVE in the model no leaf 0xD entry, whose EBX KVM fills in");
	uint32_t phys = 0;
	for (i = 0; i < cpuid_set0->nent; i++)
		if (cpuid_set0->entries[i].function == 0x80000008)
			phys = cpuid_set0->entries[i].eax & 0xff;
	ok(phys == HOST_PHYS, "without KVM_CAP_SMALLER_MAXPHYADDR the guest's MAXPHYADDR is the host's %u (got %u)",
	   HOST_PHYS, phys);

}

/* 32-bit flat code at rip for cpu0; false (said) when KVM refuses the state */
static bool code_load(struct vm *vm, uint64_t rip, const uint8_t *code, size_t n)
{
	struct boot_state bs = { .mode = 32, .rip = rip, .rsp = 0x8000, .gdt_base = 0x3000, .gdt_limit = 0x1f };

	memcpy(vm->ram + rip, code, n);
	if (engine_kvm.set_boot_state(vm->vcpu[0], &bs) < 0) {
		ok(false, "the 32-bit boot state is taken");
		return false;
	}
	return true;
}

/* the MMIO device the fragments read: byte n of its range reads n & 0xff;
 * the first read asks the vCPU to stop, as a pause would */
static int frag_reads;
static struct vm *frag_vm;

static uint64_t frag_read(void *opaque, uint64_t off, int size)
{
	uint64_t v = 0;
	(void)opaque;
	if (++frag_reads == 1)
		frag_vm->pause_request = 1;
	for (int i = 0; i < size; i++)
		v |= (uint64_t)((off + i) & 0xff) << (8 * i);
	return v;
}

static void frag_write(void *opaque, uint64_t off, uint64_t val, int size)
{
	(void)opaque, (void)off, (void)val, (void)size;
}

static const struct io_ops frag_ops = { .read = frag_read, .write = frag_write };

static void test_fragments(struct vm *vm)
{
	/* 32-bit flat code: mov eax, [FRAG_BASE + 0xffe]; mov [0x2000], eax; hlt */
	static const uint8_t code[] = { 0xa1, 0xfe, 0x0f, 0x00, 0xd0, 0xa3, 0x00, 0x20, 0x00, 0x00, 0xf4 };
	struct vcpu *v = vm->vcpu[0];
	struct vcpu_exit ex = { 0 };
	struct cpu_state *s = calloc(1, sizeof(*s));
	uint32_t got;

	frag_vm = vm;
	if (!s || bus_register(&vm->mmio, FRAG_BASE, 0x2000, &frag_ops, NULL, "frag") < 0) {
		ok(false, "set-up of the fragment test");
		free(s);
		return;
	}
	if (!code_load(vm, 0x1000, code, sizeof(code))) {
		free(s);
		return;
	}
	engine_kvm.vcpu_run(v, &ex);
	ok(ex.kind == EXIT_KICK && frag_reads == 1, "the vCPU stops after the first part of the access (exit %d, %d reads)",
	   ex.kind, frag_reads);
	ok(engine_kvm.get_state(v, s) == 0, "its state is read there");
	vm->pause_request = 0;
	for (int i = 0; i < 4 && ex.kind != EXIT_HLT && ex.kind != EXIT_ERROR; i++) {
		memset(&ex, 0, sizeof(ex));
		engine_kvm.vcpu_run(v, &ex);
	}
	memcpy(&got, vm->ram + 0x2000, 4);
	ok(ex.kind == EXIT_HLT, "the guest runs on to its hlt (exit %d%s%s)", ex.kind, ex.msg[0] ? ": " : "", ex.msg);
	ok(frag_reads == 2 && got == 0x0100fffe,
	   "a 4-byte MMIO read across a page reads both parts from the device: %#x (want 0x100fffe), %d reads", got,
	   frag_reads);
	free(s);
}

static struct vm *hung_vm;

static void hung(int sig)
{
	(void)sig;
	hung_vm->pause_request = 1;
}

/* KVM_HC_SCHED_YIELD, which a KVM that does not enforce CPUID 0x40000001
 * carries out (0) although accord announces no KVM_FEATURE_PV_SCHED_YIELD;
 * enforced, -KVM_ENOSYS (Documentation/virt/kvm/x86/hypercalls.rst) */
static void test_hypercall(struct vm *vm)
{
	/* mov eax, 11; xor ebx, ebx; vmcall; mov [0x2004], eax; hlt */
	static const uint8_t code[] = { 0xb8, 0x0b, 0x00, 0x00, 0x00, 0x31, 0xdb, 0x0f, 0x01, 0xc1,
					0xa3, 0x04, 0x20, 0x00, 0x00, 0xf4 };
	struct vcpu *v = vm->vcpu[0];
	struct vcpu_exit ex = { 0 };
	uint32_t got = 0x5a5a5a5a;

	memcpy(vm->ram + 0x2004, &got, 4);
	if (!code_load(vm, 0x1100, code, sizeof(code)))
		return;
	/* a KVM that cannot run vmcall may loop on it: stopped after 5 s */
	hung_vm = vm;
	signal(SIGALRM, hung);
	alarm(5);
	for (int i = 0; i < 4 && ex.kind != EXIT_HLT && ex.kind != EXIT_ERROR && !vm->pause_request; i++) {
		memset(&ex, 0, sizeof(ex));
		engine_kvm.vcpu_run(v, &ex);
	}
	alarm(0);
	memcpy(&got, vm->ram + 0x2004, 4);
	if (ex.kind != EXIT_HLT)
		skip("a KVM hypercall CPUID 0x40000001 does not announce is refused",
		     "this host's KVM does not get past the vmcall (it is still there after 5 s)");
	else
		ok(got == (uint32_t)-1000, "a KVM hypercall CPUID 0x40000001 does not announce is refused: "
					   "EAX %#x (want -KVM_ENOSYS, 0xfffffc18)", got);
}

/* An SSE load from MMIO, which KVM's emulator lacks: on a KVM that
 * queues #UD with its exit (run_queue_ud) the instruction still runs on
 * accord's interpreter, and the guest (no IDT: a #UD would be a triple
 * fault) reads the device's bytes */
static void test_emulation_failure(struct vm *vm)
{
	/* mov eax, cr4; or eax, 0x200 (OSFXSR); mov cr4, eax;
	 * movd xmm0, [FRAG_BASE + 0x10]; movd [0x2008], xmm0; hlt */
	static const uint8_t code[] = { 0x0f, 0x20, 0xe0, 0x0d, 0x00, 0x02, 0x00, 0x00, 0x0f, 0x22, 0xe0,
					0x66, 0x0f, 0x6e, 0x05, 0x10, 0x00, 0x00, 0xd0,
					0x66, 0x0f, 0x7e, 0x05, 0x08, 0x20, 0x00, 0x00, 0xf4 };
	struct vcpu *v = vm->vcpu[0];
	struct vcpu_exit ex = { 0 };
	uint32_t got = 0x5a5a5a5a;

	memcpy(vm->ram + 0x2008, &got, 4);
	if (!code_load(vm, 0x1200, code, sizeof(code)))
		return;
	emu_failures = 0;
	vm->pause_request = 0;
	for (int i = 0; i < 4 && ex.kind != EXIT_HLT && ex.kind != EXIT_ERROR && ex.kind != EXIT_SHUTDOWN; i++) {
		memset(&ex, 0, sizeof(ex));
		engine_kvm.vcpu_run(v, &ex);
	}
	memcpy(&got, vm->ram + 0x2008, 4);
	if (!emu_failures && ex.kind == EXIT_HLT) {
		skip("an instruction KVM cannot emulate, with #UD queued, runs on accord's interpreter",
		     "this host's KVM emulated the SSE load from MMIO itself");
		return;
	}
	ok(ex.kind == EXIT_HLT && got == 0x13121110,
	   "an instruction KVM cannot emulate, with #UD queued, runs on accord's interpreter: exit %d%s%s, "
	   "read %#x (want 0x13121110)",
	   ex.kind, ex.msg[0] ? ": " : "", ex.msg, got);
}

/* kvmclock and the TSC page pair a VM time with the guest's TSC at that
 * time (engine_ops.guest_tsc): a thread preempted before its read of
 * KVM's TSC (5 ms here) must not pair the time with a later TSC. Two
 * pairs 5 ms and more apart must agree with the TSC's rate. */
static void test_tsc_pair(void)
{
	static struct vm vm;
	uint64_t ns0, ns1, t0, t1, hz0, hz1;

	if (vm_create(&vm, 16 << 20, 1, &engine_kvm, PERSONALITY_KVM, VM_IRQCHIP_USER, 0) < 0) {
		ok(false, "vm_create for the TSC pairs");
		return;
	}
	ns0 = vm_now_ns(&vm);
	tsc_delay_us = 5000;
	int r0 = engine_kvm.guest_tsc(vm.vcpu[0], ns0, &t0, &hz0);
	ns1 = vm_now_ns(&vm);
	int r1 = engine_kvm.guest_tsc(vm.vcpu[0], ns1, &t1, &hz1);
	tsc_delay_us = 0;
	if (r0 < 0 || r1 < 0) {
		skip("the guest's TSC paired with the VM time despite a preempted read",
		     "the engine knows no TSC rate on this host");
		vm_destroy(&vm);
		return;
	}
	double err_us = ((double)(t1 - t0) * 1e6 / (double)hz0) - (double)(ns1 - ns0) / 1e3;
	ok(hz0 == hz1 && err_us > -500 && err_us < 500,
	   "the guest's TSC paired with the VM time despite a preempted read: %.0f us apart by the TSC, %.0f us "
	   "by the clock (rate %llu Hz)",
	   (double)(t1 - t0) * 1e6 / (double)hz0, (double)(ns1 - ns0) / 1e3, (unsigned long long)hz0);
	vm_destroy(&vm);
}

/* With KVM's LAPICs an AP's INIT and SIPI wait in KVM until it runs or
 * its run state is read (KVM_GET_MP_STATE carries them out): a state read
 * between (a pause, a snapshot, gdb) must give the registers the SIPI
 * set, not the ones from before it with the run state from after it */
static void test_sipi(void)
{
	static struct vm vm;
	char why[256];
	struct cpu_state *s;

	if (kvm_split_check(why, sizeof(why)) < 0) {
		skip("an AP's state read after its SIPI holds the SIPI's CS:IP", why);
		return;
	}
	s = calloc(1, sizeof(*s));
	if (!s || vm_create(&vm, 16 << 20, NCPUS, &engine_kvm, PERSONALITY_KVM, VM_IRQCHIP_SPLIT, 0) < 0) {
		ok(false, "vm_create with the split irqchip");
		free(s);
		return;
	}
	/* INIT, then SIPI with vector 0x10, to APIC ID 1: edge, physical */
	/* KVM finds a LAPIC for a message in a map it rebuilds when a
	 * LAPIC changes; a vCPU made after the last change is not in it
	 * yet (the guest's first LAPIC writes rebuild it) */
	struct kvm_lapic_state ls;
	if (last_vcpu_fd < 0 || syscall(SYS_ioctl, last_vcpu_fd, KVM_GET_LAPIC, &ls) < 0 ||
	    syscall(SYS_ioctl, last_vcpu_fd, KVM_SET_LAPIC, &ls) < 0) {
		ok(false, "KVM_GET/SET_LAPIC on cpu%d", NCPUS - 1);
		free(s);
		return;
	}
	engine_kvm.msi(&vm, 0xfee00000ull | 1u << 12, 5u << 8);
	engine_kvm.msi(&vm, 0xfee00000ull | 1u << 12, 6u << 8 | 0x10);
	int rc = engine_kvm.get_state(vm.vcpu[1], s);
	ok(rc == 0 && s->mp_state == KVM_MP_STATE_RUNNABLE && s->seg[1].sel == 0x1000 && s->seg[1].base == 0x10000 &&
		   s->rip == 0,
	   "an AP's state read after its SIPI holds the SIPI's CS:IP (run state %u, CS %#x base %#llx, IP %#llx)",
	   s->mp_state, s->seg[1].sel, (unsigned long long)s->seg[1].base, (unsigned long long)s->rip);
	free(s);
}

/* leaf 0x15 of the last KVM_SET_CPUID2 */
static const struct kvm_cpuid_entry2 *leaf15(void)
{
	for (uint32_t i = 0; cpuid_last && i < cpuid_last->nent; i++)
		if (cpuid_last->entries[i].function == 0x15)
			return &cpuid_last->entries[i];
	return NULL;
}

/* a split-irqchip VM made with the crystal asked for (0: the engine's
 * choice): vm_create's result, the bus cycle KVM was set to (0: none) */
static int crystal_vm(struct vm *vm, uint64_t crystal_hz, uint64_t *cycle)
{
	bus_cycle_sets = 0;
	bus_cycle_ns = 0;
	free(cpuid_last);
	cpuid_last = NULL;
	int rc = vm_create(vm, 16 << 20, 1, &engine_kvm, PERSONALITY_KVM, VM_IRQCHIP_SPLIT, crystal_hz);
	*cycle = bus_cycle_sets ? bus_cycle_ns : 0;
	return rc;
}

/* The split irqchip's LAPIC timer counts at the VM's crystal, and CPUID
 * 0x15 tells the guest that crystal and a TSC ratio Linux's
 * crystal_khz * EBX / EAX (32 bits, native_calibrate_tsc) turns into the
 * TSC rate the vCPU has */
static void test_crystal(void)
{
	static const char *const names[] = {
		"without KVM_CAP_X86_APIC_BUS_CYCLES_NS the split irqchip is available",
		"without KVM_CAP_X86_APIC_BUS_CYCLES_NS the VM's crystal is KVM's 1 GHz, KVM left at its 1 ns cycle",
		"without KVM_CAP_X86_APIC_BUS_CYCLES_NS CPUID 0x15 says a 1 GHz crystal and the TSC's rate",
		"a restored 25 MHz guest is refused where KVM lacks KVM_CAP_X86_APIC_BUS_CYCLES_NS",
		"with KVM_CAP_X86_APIC_BUS_CYCLES_NS KVM counts at 25 MHz (40 ns) and CPUID 0x15 says 25 MHz",
		"with KVM_CAP_X86_APIC_BUS_CYCLES_NS a restored 1 GHz guest gets KVM at 1 ns and CPUID 0x15 1 GHz",
	};
	static struct vm vm[4];
	char why[256];
	uint64_t cycle;
	const struct kvm_cpuid_entry2 *e;
	size_t t = 0;

	no_bus_cycles = true;
	if (kvm_split_check(why, sizeof(why)) < 0) {
		if (strstr(why, "APIC_BUS_CYCLES"))
			ok(false, "%s (it says: %s)", names[t++], why);
		for (; t < sizeof(names) / sizeof(names[0]); t++)
			skip(names[t], why);
		no_bus_cycles = false;
		return;
	}
	ok(true, "%s", names[t++]);
	int rc = crystal_vm(&vm[0], 0, &cycle);
	int tsc_khz = last_vcpu_fd >= 0 ? (int)syscall(SYS_ioctl, last_vcpu_fd, KVM_GET_TSC_KHZ, 0) : -1;
	ok(rc == 0 && vm[0].crystal_hz == 1000000000ull && !cycle,
	   "%s (vm_create %d, crystal %llu Hz, bus cycle set to %llu ns)", names[t++], rc,
	   (unsigned long long)vm[0].crystal_hz, (unsigned long long)cycle);
	e = leaf15();
	if (!e || tsc_khz <= 0) {
		ok(false, "%s (leaf 0x15 %s, KVM_GET_TSC_KHZ %d)", names[t++], e ? "set" : "missing", tsc_khz);
	} else {
		uint32_t crystal_khz = e->ecx / 1000;
		uint64_t prod = (uint64_t)crystal_khz * e->ebx;
		uint32_t linux_khz = e->eax ? (uint32_t)(crystal_khz * e->ebx) / e->eax : 0;
		int64_t off = (int64_t)linux_khz - tsc_khz;
		ok(e->ecx == 1000000000u && prod <= UINT32_MAX && e->eax && (off < 0 ? -off : off) <= tsc_khz / 100000,
		   "%s: ECX %u, EBX/EAX %u/%u: %u kHz in 32 bits, the vCPU's TSC %d kHz", names[t++], e->ecx, e->ebx,
		   e->eax, linux_khz, tsc_khz);
	}
	rc = crystal_vm(&vm[1], VM_CRYSTAL_HZ, &cycle);
	ok(rc < 0, "%s (vm_create %d)", names[t++], rc);
	no_bus_cycles = false;

	const char *dev = getenv("ACCORD_KVM_DEV") ? getenv("ACCORD_KVM_DEV") : "/dev/kvm";
	int fd = open(dev, O_RDWR | O_CLOEXEC);
	long bus = fd >= 0 ? syscall(SYS_ioctl, fd, KVM_CHECK_EXTENSION, KVM_CAP_X86_APIC_BUS_CYCLES_NS) : -1;
	if (fd >= 0)
		close(fd);
	if (bus <= 0) {
		for (; t < sizeof(names) / sizeof(names[0]); t++)
			skip(names[t], "the host's KVM lacks KVM_CAP_X86_APIC_BUS_CYCLES_NS (Linux 6.11)");
		return;
	}
	rc = crystal_vm(&vm[2], 0, &cycle);
	e = leaf15();
	ok(rc == 0 && vm[2].crystal_hz == VM_CRYSTAL_HZ && cycle == 40 && e && e->ecx == VM_CRYSTAL_HZ,
	   "%s (vm_create %d, crystal %llu Hz, bus cycle %llu ns, 0x15 ECX %u)", names[t++], rc,
	   (unsigned long long)vm[2].crystal_hz, (unsigned long long)cycle, e ? e->ecx : 0);
	rc = crystal_vm(&vm[3], 1000000000ull, &cycle);
	e = leaf15();
	ok(rc == 0 && vm[3].crystal_hz == 1000000000ull && cycle == 1 && e && e->ecx == 1000000000u,
	   "%s (vm_create %d, crystal %llu Hz, bus cycle %llu ns, 0x15 ECX %u)", names[t++], rc,
	   (unsigned long long)vm[3].crystal_hz, (unsigned long long)cycle, e ? e->ecx : 0);
}

int main(void)
{
	static const char *const names[] = {
		"KVM_SET_TSC_KHZ on each vCPU",
		"each vCPU's IA32_TSC is written after its KVM_SET_TSC_KHZ",
		"the TSC written is the VM clock at the guest's rate",
		"each vCPU's IA32_MISC_ENABLE is the model's reset value",
		"no all-zero leaf handed to KVM_SET_CPUID2",
		"without XSAVE in the model no leaf 0xD entry",
		"without KVM_CAP_SMALLER_MAXPHYADDR the guest's MAXPHYADDR is the host's",
		"the vCPU stops after the first part of the access",
		"its state is read there",
		"the guest runs on to its hlt",
		"a 4-byte MMIO read across a page reads both parts from the device",
		"a KVM hypercall CPUID 0x40000001 does not announce is refused",
		"an AP's state read after its SIPI holds the SIPI's CS:IP",
		"an instruction KVM cannot emulate, with #UD queued, runs on accord's interpreter",
		"the guest's TSC paired with the VM time despite a preempted read",
		"the split irqchip's crystal, KVM's LAPIC timer and CPUID 0x15 agree",
	};
	static struct vm vm;
	char why[256];

	setvbuf(stdout, NULL, _IONBF, 0);
	if (kvm_check(why, sizeof(why)) < 0) {
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			skip(names[i], why);
		printf("%d passed, %d failed, %d skipped\n", n_pass, n_fail, n_skip);
		return 0;
	}
	conforming = true;
	if (vm_create(&vm, 16 << 20, NCPUS, &engine_kvm, PERSONALITY_KVM, VM_IRQCHIP_USER, 0) < 0) {
		ok(false, "vm_create on the kvm engine");
		printf("%d passed, %d failed, %d skipped\n", n_pass, n_fail, n_skip);
		return 1;
	}
	uint64_t tsc_after = vm_tsc(&vm);
	conforming = false;
	test_tsc(tsc_after);
	test_misc_enable();
	test_cpuid(&vm);
	test_fragments(&vm);
	test_hypercall(&vm);
	test_emulation_failure(&vm);
	test_tsc_pair();
	test_sipi();
	test_crystal();
	printf("%d passed, %d failed, %d skipped\n", n_pass, n_fail, n_skip);
	return n_fail ? 1 : 0;
}
