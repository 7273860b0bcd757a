/* engine_ops for /dev/kvm: the host CPU runs the guest; the machine stays
 * accord's. There is no in-kernel irqchip: the LAPIC, IOAPIC, PIC and the
 * timers are the userspace devices of src/dev, so this engine injects the
 * LAPIC's vectors with KVM_INTERRUPT at interrupt windows, sends MMIO, port
 * I/O and the interrupt-controller MSRs to the machine, and turns HLT into
 * EXIT_HLT for vm.c to wait on.
 *
 * Kicks: the kick signal (SIGUSR1) is blocked in a vCPU thread except inside
 * KVM_RUN (KVM_SET_SIGNAL_MASK), so a kick sent while the thread is
 * elsewhere stays pending and makes the next KVM_RUN return at once, and a
 * kick inside KVM_RUN ends it. A per-thread POSIX timer sends the same
 * signal at the next LAPIC/PIT/RTC deadline, since the guest no longer
 * stops every few thousand instructions to poll them as emu does.
 *
 * Interrupt windows: a KVM that emulates guest kernel code may run on past
 * the end of an STI shadow without the exit request_interrupt_window asks
 * for (it notices only at its next exit of another kind), so that sti; nop;
 * cli never lets a pending interrupt in. vm_init asks a throwaway VM whether
 * the exit comes; where it does not, a vCPU with an interrupt waiting for
 * IF=1 runs single-stepped until KVM says it can take it (within a budget,
 * then polled).
 *
 * Such a KVM also fails on instructions its emulator lacks (cmpxchg16b,
 * int3, clac, SSE): each runs on accord's interpreter (src/cpu/) with the
 * vCPU's whole state, which runs on past it while the instructions need
 * nothing of KVM's or the VMM's, and the state goes back to KVM
 * (insn_step, step_ahead).
 *
 * The split irqchip (vm->irqchip VM_IRQCHIP_SPLIT, --irqchip split): the
 * LAPICs are KVM's (KVM_CAP_SPLIT_IRQCHIP). KVM then injects their
 * interrupts, halts the vCPU inside KVM_RUN, starts APs at their SIPI,
 * serves IA32_APIC_BASE, the TSC deadline and the x2APIC MSRs; the IOAPIC's
 * and the MSIs' messages come here from irq_deliver() (KVM_SIGNAL_MSI), the
 * level-triggered IOAPIC pins are mirrored as GSI routes so that their EOI
 * ends KVM_RUN with KVM_EXIT_IOAPIC_EOI, and only the PIC's ExtINT is
 * injected from here (KVM_INTERRUPT where KVM's LINT0 takes it).
 *
 * ACCORD_KVM_DEV names the device to open instead of /dev/kvm (tests use
 * it to simulate a host without KVM); ACCORD_VERBOSE=1 says on stderr what
 * the host's KVM made the engine change in the CPU model. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "cpu/cpu.h"
#include "dev/dev.h"
#include "dev/platform.h"
#include "engine/engine.h"
#include "vm/vm.h"

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

#define KVM_KICK_SIGNAL SIGUSR1

/* Three pages for VMX's real-mode TSS and one for its identity-mapped page
 * table (hosts without unrestricted guest), at the top of the PCI hole where
 * accord maps no device. */
#define KVM_TSS_ADDR 0xfffbd000ull
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000ull

#define MSR_IA32_TSC 0x10
#define MSR_APIC_BASE 0x1b
#define MSR_PLATFORM_INFO 0xce
#define MSR_ARCH_CAPABILITIES 0x10a
#define MSR_MISC_FEATURES_ENABLES 0x140
#define MSR_SYSENTER_ESP 0x175
#define MSR_SYSENTER_EIP 0x176
#define MSR_MISC_ENABLE 0x1a0
#define MSR_TSC_DEADLINE 0x6e0
#define APIC_BASE_ENABLE (1ull << 11)
#define APIC_BASE_ADDR 0x000ffffffffff000ull

/* The split irqchip's LAPIC timer counts at the VM's crystal (CPUID 0x15
 * ECX), one cycle every 10^9 / vm->crystal_hz ns, where KVM has Linux
 * 6.11's capability (the headers may predate it); a KVM without it counts
 * at VM_CRYSTAL_KVM_HZ, and the guest is told that */
#ifndef KVM_CAP_X86_APIC_BUS_CYCLES_NS
#define KVM_CAP_X86_APIC_BUS_CYCLES_NS 237
#endif
/* KVM's LAPIC registers (KVM_GET_LAPIC): LVT LINT0 and LINT1 */
#define KVM_APIC_LVT0 0x350
#define KVM_APIC_LVT1 0x360
#define LVT_MASKED (1u << 16)
#define LVT_DM_EXTINT 0x700u
#define LVT_DM_NMI 0x400u
#define LVT_DM_MASK 0x700u
/* GSIs routed: the IOAPIC's pins, then one per irqfd (virtio's MSI-X
 * vectors: 17 a device at most) */
#define KVM_GSIS (IOAPIC_PINS + 512)

/* DR0-DR3 hold the debugger's breakpoints (SDM vol. 3B 18.2): DR7 enables
 * each globally (G0-G3) as an execute breakpoint (R/W and LEN 00); GE and
 * bit 10, which reads as 1 */
#define KVM_HW_BREAKS 4
#define DR7_GE (1ull << 9)
#define DR7_FIXED1 (1ull << 10)
#define DR6_BREAKS 0xfull

/* Where KVM misses interrupt windows, a vCPU steps at most window_budget
 * instructions to find one, then polls: KVM_RUN ends every
 * WINDOW_POLL_NS and the interrupt goes in at the first exit with IF=1.
 * Stepping is exact (sti; nop; cli lets the interrupt in after the nop)
 * but costs a KVM_RUN per instruction, and Linux keeps interrupts off for
 * thousands of instructions in its handlers; the budget halves each time
 * a search runs out and doubles each time one succeeds. */
#define WINDOW_STEPS_MAX 4096u
#define WINDOW_STEPS_MIN 32u
#define WINDOW_POLL_NS 200000ll
#define WINDOW_POLLING UINT32_MAX /* window_count: the budget ran out */

/* the timer signal comes at least this often, as vm.c re-checks a halted
 * vCPU now and then regardless of deadlines */
#define KVM_MAX_SLEEP_NS 100000000ll

/* A run ahead after a stepped instruction (step_ahead) ends after this
 * many instructions or this long, whichever comes first, and looks at
 * the clock, the VM's requests and the LAPIC every AHEAD_POLL
 * instructions: interrupts (KVM's LAPIC's included, which the engine
 * cannot see), kicks and pauses wait that long at most. */
#define AHEAD_MAX 100000u
#define AHEAD_NS 200000ull
#define AHEAD_POLL 64u

/* --accel auto's probe: a loop of `dec ecx; jnz` in ring 0. Hardware runs an
 * iteration in about a nanosecond; an emulated KVM in hundreds. */
#define PROBE_ITERS 50000
#define PROBE_RUNS 3
#define PROBE_FAST_NS_PER_ITER 20.0

struct kvm_vm {
	int sys_fd, vm_fd;
	int run_size;
	struct kvm_cpuid2 *supported; /* KVM_GET_SUPPORTED_CPUID */
	uint64_t arch_caps;	      /* IA32_ARCH_CAPABILITIES bits KVM vouches for */
	uint32_t tsc_khz;	      /* the guest's TSC rate; 0: unknown */
	uint64_t crystal_hz;	      /* vm->crystal_hz: CPUID 0x15 ECX */
	int personality;	      /* vm->personality: CPUID's hypervisor leaves */
	bool verbose;
	bool window_steps; /* KVM misses interrupt windows: step to find them */
	bool ioeventfd;	   /* KVM_IOEVENTFD with length 0 (any width) */
	bool split;	   /* the split irqchip: KVM's LAPICs */
	bool blockirq;	   /* KVM_GUESTDBG_BLOCKIRQ: no interrupt during a step */
	bool smaller_phys; /* KVM_CAP_SMALLER_MAXPHYADDR */
	bool emu_fail_exits; /* KVM_CAP_EXIT_ON_EMULATION_FAILURE enabled */
	/* split: the GSI routes (KVM_SET_GSI_ROUTING), the IOAPIC's pins
	 * first, then the irqfds' */
	pthread_mutex_t route_lock;
	bool route_valid[KVM_GSIS];
	struct kvm_irq_routing_entry route[KVM_GSIS];
	struct kvm_irq_routing *routing; /* the table as KVM gets it */
};

struct kvm_vcpu_priv {
	struct vcpu *v;
	struct kvm_vm *kvm;
	int fd;
	struct kvm_run *run;

	/* the thread that runs the vCPU; kicks signal it while it lives */
	pthread_mutex_t lock;
	pthread_t thread;
	bool thread_live;
	timer_t timer;
	bool timer_ok;
	bool arch_caps_told; /* ACCORD_VERBOSE's IA32_ARCH_CAPABILITIES line */
	uint64_t timer_at_ns; /* armed expiry, CLOCK_MONOTONIC; 0: none */

	bool halted;	 /* stopped at HLT until an interrupt or NMI */
	bool ready;	 /* the last exit's ready_for_interrupt_injection */
	bool io_pending; /* the last exit completes on the next KVM_RUN */
	uint64_t tsc_deadline; /* IA32_TSC_DEADLINE as the guest wrote it */

	/* the debugger's request (set_guest_debug) and what KVM was told */
	struct guest_debug dbg;
	bool dbg_resume;  /* set_guest_debug came: look at the resume RIP */
	bool step_over;	  /* resume at a breakpoint: one step without it first */
	uint64_t step_over_rip;
	bool window_step; /* stepping until an interrupt window opens */
	uint32_t window_count;	/* steps taken for the interrupt waiting now */
	uint32_t window_budget; /* steps allowed before polling instead */
	struct kvm_guest_debug dbg_set;

	/* instructions this host's KVM cannot emulate run on accord's CPU */
	struct kvm_step *step;
	uint64_t steps, step_ns;
	uint64_t ahead; /* instructions run ahead after the steps */

	/* the state KVM_CREATE_VCPU gave: INIT returns an AP to it */
	struct kvm_regs reset_regs;
	struct kvm_sregs reset_sregs;
	struct kvm_fpu reset_fpu;
	struct kvm_vcpu_events reset_events;
	struct kvm_debugregs reset_dregs;
	struct kvm_xcrs reset_xcrs;
	bool have_xcrs;
};

/* A vCPU's instruction stepped by accord's interpreter: its CPU, and the
 * vCPU's state before and after the instruction. */
struct kvm_step {
	struct cpu cpu;
	struct cpu_state before, after;
	/* the first kinds of instruction stepped, said once each (verbose) */
	uint32_t seen[8];
	int nseen;
	bool lapic_write; /* the instruction wrote KVM's LAPIC page: refused */
	bool ahead;	  /* running ahead: the bus abandons what is not RAM */
};

static __thread struct kvm_vcpu_priv *thread_vcpu;
static pthread_key_t thread_key;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int window_probe(char *why, size_t n);
enum { STEP_DONE, STEP_CANNOT, STEP_SHUTDOWN };
static int insn_step(struct kvm_vcpu_priv *p);
static bool msr_get(struct kvm_vcpu_priv *p, uint32_t index, uint64_t *val);
static bool msr_set(struct kvm_vcpu_priv *p, uint32_t index, uint64_t val);
static uint64_t vm_ticks(struct kvm_vcpu_priv *p, uint64_t ns);
static struct kvm_step *step_create(struct kvm_vcpu_priv *p);

static inline struct kvm_vcpu_priv *priv(struct vcpu *v)
{
	return v->engine_priv;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static const char *kvm_dev_path(void)
{
	const char *p = getenv("ACCORD_KVM_DEV");
	return p && *p ? p : "/dev/kvm";
}

static const struct {
	int cap;
	const char *name;
} required_caps[] = {
	{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
	{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
	{ KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
	{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
	{ KVM_CAP_X86_USER_SPACE_MSR, "KVM_CAP_X86_USER_SPACE_MSR" },
	{ KVM_CAP_X86_MSR_FILTER, "KVM_CAP_X86_MSR_FILTER" },
};

/* the KVM device with API 12 and the capabilities this engine needs, or -1
 * with the reason in why ("/dev/kvm: No such file or directory") */
static int kvm_open_dev(char *why, size_t n)
{
	const char *path = kvm_dev_path();
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, n, "%s: %s", path, strerror(errno));
		return -1;
	}
	int api = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (api < 0) {
		snprintf(why, n, "%s: not a KVM device (KVM_GET_API_VERSION: %s)", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (api != KVM_API_VERSION) {
		snprintf(why, n, "%s: KVM API version %d, accord needs %d", path, api, KVM_API_VERSION);
		close(fd);
		return -1;
	}
	for (size_t i = 0; i < sizeof(required_caps) / sizeof(required_caps[0]); i++) {
		if (ioctl(fd, KVM_CHECK_EXTENSION, required_caps[i].cap) <= 0) {
			snprintf(why, n, "%s: the host's KVM lacks %s (Linux 5.10 or later has it)", path,
				 required_caps[i].name);
			close(fd);
			return -1;
		}
	}
	return fd;
}

int kvm_check(char *why, size_t n)
{
	int fd = kvm_open_dev(why, n);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

/* what the split irqchip needs of the host's KVM besides kvm_check's */
static const struct {
	int cap;
	const char *name;
} split_caps[] = {
	{ KVM_CAP_SPLIT_IRQCHIP, "KVM_CAP_SPLIT_IRQCHIP" },
	{ KVM_CAP_SIGNAL_MSI, "KVM_CAP_SIGNAL_MSI" },
	{ KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING" },
	{ KVM_CAP_TSC_DEADLINE_TIMER, "KVM_CAP_TSC_DEADLINE_TIMER" },
};

int kvm_split_check(char *why, size_t n)
{
	int fd = kvm_open_dev(why, n);
	if (fd < 0)
		return -1;
	for (size_t i = 0; i < sizeof(split_caps) / sizeof(split_caps[0]); i++) {
		if (ioctl(fd, KVM_CHECK_EXTENSION, split_caps[i].cap) <= 0) {
			snprintf(why, n, "the host's KVM lacks %s", split_caps[i].name);
			close(fd);
			return -1;
		}
	}
	close(fd);
	return 0;
}

/* ---- the guest-visible CPU model ---- */

/* leaves whose ECX input selects a subleaf */
static bool cpuid_indexed(uint32_t leaf)
{
	static const uint32_t l[] = { 4, 7, 0xb, 0xd, 0xf, 0x10, 0x12, 0x14, 0x17, 0x18, 0x1d, 0x1e,
				      0x1f, 0x20, 0x23, 0x24, 0x8000001d, 0x80000020, 0x80000026 };
	for (size_t i = 0; i < sizeof(l) / sizeof(l[0]); i++)
		if (l[i] == leaf)
			return true;
	return false;
}

static const struct kvm_cpuid_entry2 *supported_entry(const struct kvm_cpuid2 *s, uint32_t leaf, uint32_t sub)
{
	for (uint32_t i = 0; i < s->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &s->entries[i];
		if (e->function == leaf &&
		    (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == sub))
			return e;
	}
	return NULL;
}

enum { R_EAX, R_EBX, R_ECX, R_EDX };

/* Bits of a feature register that accord provides itself, whatever KVM
 * supports: the APIC, its TSC-deadline mode and its always-running timer
 * are the userspace LAPIC's, the hypervisor bit is accord's to set. */
static uint32_t own_bits(uint32_t leaf, int reg)
{
	if (leaf == 1 && reg == R_ECX)
		return 1u << 24 | 1u << 31;
	if (leaf == 1 && reg == R_EDX)
		return 1u << 9;
	if (leaf == 6 && reg == R_EAX)
		return 1u << 2;
	return 0;
}

/* whether register reg of a leaf holds feature flags that the host's KVM
 * must be able to back; the other registers are information (vendor,
 * signature, cache and topology data, brand, accord's own leaves) */
static bool feature_reg(uint32_t leaf, uint32_t sub, int reg)
{
	switch (leaf) {
	case 1:
		return reg == R_ECX || reg == R_EDX;
	case 6:
		return reg == R_EAX;
	case 7:
		return reg != R_EAX || sub > 0; /* 7.0 EAX is the subleaf count */
	case 0xd:
		return (sub == 0 && (reg == R_EAX || reg == R_EDX)) || (sub == 1 && reg == R_EAX);
	case 0x80000001:
		return reg == R_ECX || reg == R_EDX;
	case 0x80000007:
		return reg == R_EDX;
	case 0x80000008:
		return reg == R_EBX;
	}
	return false;
}

static void cpuid_mask(struct kvm_vm *k, int cpu, struct kvm_cpuid_entry2 *e)
{
	static const char regname[4][4] = { "EAX", "EBX", "ECX", "EDX" };
	const struct kvm_cpuid_entry2 *s = supported_entry(k->supported, e->function, e->index);
	uint32_t *r[4] = { &e->eax, &e->ebx, &e->ecx, &e->edx };
	const uint32_t zero[4] = { 0 };
	const uint32_t *sr = zero;
	uint32_t sup[4];

	if (s) {
		sup[0] = s->eax, sup[1] = s->ebx, sup[2] = s->ecx, sup[3] = s->edx;
		sr = sup;
	}
	for (int i = 0; i < 4; i++) {
		if (!feature_reg(e->function, e->index, i))
			continue;
		uint32_t drop = *r[i] & ~(sr[i] | own_bits(e->function, i));
		if (!drop)
			continue;
		*r[i] &= ~drop;
		if (k->verbose && cpu == 0)
			fprintf(stderr,
				"accord: kvm: CPUID 0x%x.%u %s bits 0x%08x are not supported by this host's KVM; "
				"hidden from the guest\n",
				e->function, e->index, regname[i], drop);
	}
	/* Never more address bits than the host has. Nor fewer physical
	 * ones where KVM cannot give a guest fewer than the host's
	 * (KVM_CAP_SMALLER_MAXPHYADDR absent: with EPT or NPT the hardware
	 * walks the guest's page tables and faults only on the host's
	 * reserved bits, so a PTE with the model's bit 40 set would map
	 * memory above the model's 1 TiB rather than fault). */
	if (e->function == 0x80000008 && s) {
		uint32_t phys = e->eax & 0xff, lin = (e->eax >> 8) & 0xff, host = s->eax & 0xff;
		if (host && (phys > host || (phys < host && !k->smaller_phys))) {
			if (k->verbose && cpu == 0)
				fprintf(stderr, "accord: kvm: the guest's MAXPHYADDR is the host's %u bits, not %u\n",
					host, phys);
			phys = host;
		}
		if (((s->eax >> 8) & 0xff) && lin > ((s->eax >> 8) & 0xff))
			lin = (s->eax >> 8) & 0xff;
		e->eax = (e->eax & ~0xffffu) | lin << 8 | phys;
	}
}

/* |p/q - a/b| * q * b, to compare fractions' distances to a/b as |p*b - q*a| / q */
static unsigned __int128 ratio_off(uint64_t p, uint64_t q, uint64_t a, uint64_t b)
{
	unsigned __int128 x = (unsigned __int128)p * b, y = (unsigned __int128)q * a;
	return x > y ? x - y : y - x;
}

/* the fraction num/den nearest a/b with num <= nmax and den < 2^32: the
 * last convergent of a/b's continued fraction within the bounds, or the
 * semiconvergent after it where that is nearer; num 0 when none fits */
static void ratio_nearest(uint64_t a, uint64_t b, uint64_t nmax, uint32_t *num, uint32_t *den)
{
	uint64_t p0 = 0, q0 = 1, p1 = 1, q1 = 0, x = a, y = b;

	while (y) {
		uint64_t t = x / y, r = x % y;
		if ((unsigned __int128)t * p1 + p0 > nmax || (unsigned __int128)t * q1 + q0 > UINT32_MAX) {
			/* the largest step s < t within the bounds */
			uint64_t s = p1 ? (nmax - p0) / p1 : t - 1;
			if (q1 && (UINT32_MAX - q0) / q1 < s)
				s = (UINT32_MAX - q0) / q1;
			uint64_t ps = s * p1 + p0, qs = s * q1 + q0;
			if (s && (!q1 || ratio_off(ps, qs, a, b) * q1 < ratio_off(p1, q1, a, b) * qs)) {
				p1 = ps;
				q1 = qs;
			}
			break;
		}
		uint64_t p2 = t * p1 + p0, q2 = t * q1 + q0;
		p0 = p1;
		q0 = q1;
		p1 = p2;
		q1 = q2;
		x = y;
		y = r;
	}
	*num = q1 ? (uint32_t)p1 : 0;
	*den = q1 ? (uint32_t)q1 : 1;
}

/* CPUID 0x15 and 0x16 tell the guest its TSC rate, and 0x15 ECX the
 * crystal that clocks its LAPIC timer. The model says VM_TSC_HZ and
 * VM_CRYSTAL_HZ; where KVM cannot scale the TSC to VM_TSC_HZ, or the VM's
 * crystal is KVM's 1 GHz (split_enable), they follow what the guest
 * really gets. */
static void cpuid_tsc(struct kvm_vm *k, struct kvm_cpuid_entry2 *e)
{
	if ((uint64_t)k->tsc_khz * 1000 == VM_TSC_HZ && k->crystal_hz == VM_CRYSTAL_HZ)
		return;
	if (e->function == 0x15) {
		/* Linux computes crystal_khz * EBX / EAX in 32 bits: the
		 * nearest ratio that fits; EBX 0 (the guest calibrates)
		 * where the TSC rate is unknown */
		uint64_t crystal_khz = k->crystal_hz / 1000;
		e->ecx = (uint32_t)k->crystal_hz;
		ratio_nearest(k->tsc_khz, crystal_khz, UINT32_MAX / crystal_khz, &e->ebx, &e->eax);
	} else if (e->function == 0x16) {
		e->eax = k->tsc_khz / 1000;
		e->ebx = k->tsc_khz / 1000;
	}
}

static int cpuid_add(struct kvm_vm *k, int cpu, struct kvm_cpuid2 *c, uint32_t leaf, uint32_t sub,
		     bool indexed)
{
	struct cpuid_result r;
	if (c->nent >= 256)
		return -1;
	cpuid_query(k->personality, cpu, leaf, sub, &r);
	/* A leaf the model leaves all zero gets no entry: KVM answers zeros
	 * for an absent leaf below the range's maximum, as the model does,
	 * but fills sizes into an entry that exists (0xD.0 EBX from XCR0,
	 * kvm_update_cpuid_runtime), which the guest would then read where
	 * the model has no XSAVE. */
	if (!(r.eax | r.ebx | r.ecx | r.edx))
		return 0;
	struct kvm_cpuid_entry2 *e = &c->entries[c->nent++];
	memset(e, 0, sizeof(*e));
	e->function = leaf;
	e->index = sub;
	e->flags = indexed ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0;
	e->eax = r.eax;
	e->ebx = r.ebx;
	e->ecx = r.ecx;
	e->edx = r.edx;
	cpuid_mask(k, cpu, e);
	cpuid_tsc(k, e);
	/* nor one that is all zero once what the host's KVM lacks is hidden
	 * (0x80000007 on a host without an invariant TSC) */
	if (!(e->eax | e->ebx | e->ecx | e->edx))
		c->nent--;
	return 0;
}

/* bits KVM keeps up to date itself (OSXSAVE and APIC in leaf 1, OSPKE in
 * leaf 7, the XSAVE area sizes in leaf 0xD) */
static void cpuid_runtime_bits(uint32_t leaf, uint32_t sub, uint32_t m[4])
{
	memset(m, 0, 4 * sizeof(m[0]));
	if (leaf == 1) {
		m[R_ECX] = 1u << 27;
		m[R_EDX] = 1u << 9;
	} else if (leaf == 7 && sub == 0) {
		m[R_ECX] = 1u << 4;
	} else if (leaf == 0xd && sub <= 1) {
		m[R_EBX] = ~0u;
	}
}

/* A conforming KVM presents the table as set. Some hosts' KVM replaces
 * feature leaves with the host's own: the guest then sees another CPU than
 * accord's model, which is worth one line. */
static void cpuid_verify(struct kvm_vcpu_priv *p, const struct kvm_cpuid2 *set)
{
	static const char regname[4][4] = { "EAX", "EBX", "ECX", "EDX" };
	struct kvm_cpuid2 *got = calloc(1, sizeof(*got) + 256 * sizeof(got->entries[0]));
	if (!got)
		return;
	got->nent = 256;
	if (ioctl(p->fd, KVM_GET_CPUID2, got) < 0) {
		free(got);
		return;
	}
	for (uint32_t i = 0; i < set->nent; i++) {
		const struct kvm_cpuid_entry2 *want = &set->entries[i];
		const struct kvm_cpuid_entry2 *have = supported_entry(got, want->function, want->index);
		uint32_t w[4] = { want->eax, want->ebx, want->ecx, want->edx }, h[4] = { 0 }, m[4];
		if (have)
			h[0] = have->eax, h[1] = have->ebx, h[2] = have->ecx, h[3] = have->edx;
		cpuid_runtime_bits(want->function, want->index, m);
		for (int r = 0; r < 4; r++) {
			if ((w[r] & ~m[r]) == (h[r] & ~m[r]))
				continue;
			fprintf(stderr,
				"accord: kvm: this host's KVM does not present accord's CPU model (CPUID 0x%x.%u %s "
				"reads 0x%08x, not 0x%08x); the guest sees other CPU features than on emu\n",
				want->function, want->index, regname[r], h[r], w[r]);
			free(got);
			return;
		}
	}
	free(got);
}

/* every leaf of the shared model (src/cpu/cpuid.c), as KVM_SET_CPUID2 */
static int cpuid_set(struct kvm_vcpu_priv *p)
{
	static const uint32_t bases[] = { 0, 0x40000000, 0x80000000 };
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 256 * sizeof(c->entries[0]));
	int cpu = p->v->index;
	if (!c)
		return -1;
	for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); b++) {
		struct cpuid_result r;
		cpuid_query(p->kvm->personality, cpu, bases[b], 0, &r);
		uint32_t max = r.eax;
		if (bases[b] && (max < bases[b] || max > bases[b] + 0xff))
			continue; /* the model has no leaves in this range */
		if (!bases[b] && max > 0xff)
			max = 0xff;
		for (uint32_t leaf = bases[b]; leaf <= max; leaf++) {
			bool indexed = cpuid_indexed(leaf);
			for (uint32_t sub = 0; sub < (indexed ? 64u : 1u); sub++)
				if (cpuid_add(p->kvm, cpu, c, leaf, sub, indexed) < 0) {
					free(c);
					fprintf(stderr, "accord: kvm: the CPU model has more than 256 CPUID leaves\n");
					return -1;
				}
		}
	}
	int rc = ioctl(p->fd, KVM_SET_CPUID2, c);
	if (rc < 0)
		fprintf(stderr, "accord: kvm: KVM_SET_CPUID2: %s\n", strerror(errno));
	else if (cpu == 0)
		cpuid_verify(p, c);
	free(c);
	return rc;
}

static struct kvm_cpuid2 *get_supported_cpuid(int sys_fd)
{
	for (int n = 128; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		if (!c)
			return NULL;
		c->nent = n;
		if (ioctl(sys_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
			return c;
		free(c);
		if (errno != E2BIG)
			return NULL;
	}
	return NULL;
}

/* IA32_ARCH_CAPABILITIES says which speculative-execution problems the CPU
 * does not have: KVM's answer is what it vouches for on this host (the
 * feature MSR of KVM_GET_MSRS on /dev/kvm; none where KVM has no feature
 * MSRs), the model's says so of accord's interpreter */
static uint64_t host_arch_capabilities(int sys_fd)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} m = { .h.nmsrs = 1, .e.index = MSR_ARCH_CAPABILITIES };
	if (ioctl(sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_GET_MSR_FEATURES) <= 0 ||
	    ioctl(sys_fd, KVM_GET_MSRS, &m) != 1)
		return 0;
	return m.e.data;
}

/* ---- the VM ---- */

/* The interrupt-controller MSRs go to accord's LAPIC: IA32_APIC_BASE and
 * IA32_TSC_DEADLINE through the filter. x2APIC MSRs cannot be filtered (KVM
 * ignores filters on them); without an in-kernel LAPIC KVM fails them, and
 * KVM_MSR_EXIT_REASON_INVAL brings them here too. The Hyper-V range and
 * KVM's own paravirtual MSRs are accord's to answer, not KVM's: the
 * personality accord's CPUID announces (src/dev/kvmclock.c,
 * src/dev/hyperv/) serves them on both engines. */
static int msr_filter_set(int vm_fd, bool split)
{
	static uint8_t deny[0x200 / 8]; /* all zero: every MSR of a range exits */
	static const struct {
		uint32_t base, n;
		bool lapic;	 /* the split irqchip's LAPIC (KVM's) serves it */
		bool write_only; /* reads stay in KVM */
	} ranges[] = {
		{ MSR_APIC_BASE, 1, true, false },
		{ MSR_TSC_DEADLINE, 1, true, false },
		{ 0x40000000, 0x200, false, false }, /* Hyper-V (TLFS) */
		{ 0x11, 2, false, false },	      /* MSR_KVM_WALL_CLOCK, MSR_KVM_SYSTEM_TIME */
		{ 0x4b564d00, 0x100, false, false }, /* KVM's paravirtual MSRs */
		/* KVM keeps a non-canonical SYSENTER_ESP/EIP where it
		 * intercepts them (AMD: x86.c's __kvm_set_msr makes the value
		 * canonical, as an AMD CPU ignores it); the GenuineIntel model
		 * raises #GP(0) (SDM vol. 2B WRMSR) */
		{ MSR_SYSENTER_ESP, 2, false, true },
		/* KVM answers these itself, with CPUID faulting on offer
		 * (Linux's cpuid_fault flag); the model has neither, so the
		 * guest gets #GP as on emu */
		{ MSR_PLATFORM_INFO, 1, false, false },
		{ MSR_MISC_FEATURES_ENABLES, 1, false, false },
		/* KVM's own value would give the guest other mitigations than
		 * on emu: machine_msr_read answers the model's */
		{ MSR_ARCH_CAPABILITIES, 1, false, false },
	};
	struct kvm_msr_filter f = { .flags = KVM_MSR_FILTER_DEFAULT_ALLOW };
	int n = 0;
	for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
		if (split && ranges[i].lapic)
			continue;
		f.ranges[n].flags = ranges[i].write_only ? KVM_MSR_FILTER_WRITE
							 : KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE;
		f.ranges[n].base = ranges[i].base;
		f.ranges[n].nmsrs = ranges[i].n;
		f.ranges[n].bitmap = deny;
		n++;
	}
	return ioctl(vm_fd, KVM_X86_SET_MSR_FILTER, &f);
}

/* The split irqchip, before any vCPU: KVM's LAPICs with IOAPIC_PINS GSIs
 * reserved for accord's IOAPIC, their timer at the VM's crystal. A KVM
 * with KVM_CAP_X86_APIC_BUS_CYCLES_NS counts at vm->crystal_hz (a restored
 * guest's, else VM_CRYSTAL_HZ); one without counts at VM_CRYSTAL_KVM_HZ,
 * which becomes the VM's crystal (a restored guest told another cannot
 * run there). */
static int split_enable(struct kvm_vm *k, struct vm *vm)
{
	struct kvm_enable_cap split = { .cap = KVM_CAP_SPLIT_IRQCHIP, .args = { IOAPIC_PINS } };
	bool bus_cycles = ioctl(k->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_X86_APIC_BUS_CYCLES_NS) > 0;
	uint64_t restored = vm->crystal_hz;

	if (!vm->crystal_hz)
		vm->crystal_hz = bus_cycles ? VM_CRYSTAL_HZ : VM_CRYSTAL_KVM_HZ;
	if (!bus_cycles && vm->crystal_hz != VM_CRYSTAL_KVM_HZ) {
		fprintf(stderr,
			"accord: kvm: the guest's LAPIC timer counts at %llu kHz, which the host's KVM cannot give "
			"(it lacks KVM_CAP_X86_APIC_BUS_CYCLES_NS, Linux 6.11: its LAPIC timer counts at 1 GHz)\n",
			(unsigned long long)(vm->crystal_hz / 1000));
		return -1;
	}
	if (ioctl(k->vm_fd, KVM_ENABLE_CAP, &split) < 0) {
		fprintf(stderr, "accord: kvm: KVM_CAP_SPLIT_IRQCHIP: %s\n", strerror(errno));
		return -1;
	}
	if (bus_cycles) {
		struct kvm_enable_cap bus = { .cap = KVM_CAP_X86_APIC_BUS_CYCLES_NS,
					      .args = { 1000000000ull / vm->crystal_hz } };
		if (ioctl(k->vm_fd, KVM_ENABLE_CAP, &bus) < 0) {
			fprintf(stderr, "accord: kvm: KVM_CAP_X86_APIC_BUS_CYCLES_NS: %s\n", strerror(errno));
			return -1;
		}
	}
	if (k->verbose && vm->crystal_hz == VM_CRYSTAL_KVM_HZ)
		fprintf(stderr, "accord: kvm: the LAPIC timer counts at KVM's 1 GHz (%s); CPUID 0x15 tells the guest "
				"a 1 GHz crystal\n",
			bus_cycles && restored ? "the restored guest was told so"
					       : "the host's KVM lacks KVM_CAP_X86_APIC_BUS_CYCLES_NS, Linux 6.11");
	int dbg = ioctl(k->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_GUEST_DEBUG2);
	k->blockirq = dbg > 0 && (dbg & KVM_GUESTDBG_BLOCKIRQ);
	k->routing = calloc(1, sizeof(*k->routing) + KVM_GSIS * sizeof(k->routing->entries[0]));
	if (!k->routing)
		return -1;
	pthread_mutex_init(&k->route_lock, NULL);
	k->split = true;
	return 0;
}

static int kvm_vm_init(struct vm *vm)
{
	char why[256];
	struct kvm_vm *k = calloc(1, sizeof(*k));
	if (!k)
		return -1;
	vm->engine_priv = k;
	k->personality = vm->personality;
	k->verbose = getenv("ACCORD_VERBOSE") && strcmp(getenv("ACCORD_VERBOSE"), "0");
	k->sys_fd = kvm_open_dev(why, sizeof(why));
	if (k->sys_fd < 0) {
		fprintf(stderr, "accord: kvm: %s\n", why);
		return -1;
	}
	k->run_size = ioctl(k->sys_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	k->smaller_phys = ioctl(k->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_SMALLER_MAXPHYADDR) > 0;
	k->supported = get_supported_cpuid(k->sys_fd);
	k->arch_caps = host_arch_capabilities(k->sys_fd);
	if (k->run_size <= 0 || !k->supported) {
		fprintf(stderr, "accord: kvm: cannot query the host's KVM: %s\n", strerror(errno));
		return -1;
	}
	k->vm_fd = ioctl(k->sys_fd, KVM_CREATE_VM, 0);
	if (k->vm_fd < 0) {
		fprintf(stderr, "accord: kvm: KVM_CREATE_VM: %s\n", strerror(errno));
		return -1;
	}
	if (ioctl(k->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_ADDR) < 0) {
		fprintf(stderr, "accord: kvm: KVM_SET_TSS_ADDR: %s\n", strerror(errno));
		return -1;
	}
	if (ioctl(k->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0) {
		uint64_t a = KVM_IDENTITY_MAP_ADDR;
		if (ioctl(k->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &a) < 0) {
			fprintf(stderr, "accord: kvm: KVM_SET_IDENTITY_MAP_ADDR: %s\n", strerror(errno));
			return -1;
		}
	}

	/* guest RAM: below the PCI hole, and the rest from 4 GiB (vm_gpa) */
	struct kvm_userspace_memory_region low = {
		.slot = 0,
		.guest_phys_addr = 0,
		.memory_size = vm->low_size,
		.userspace_addr = (uintptr_t)vm->ram,
	};
	struct kvm_userspace_memory_region high = {
		.slot = 1,
		.guest_phys_addr = VM_HOLE_END,
		.memory_size = vm->ram_size - vm->low_size,
		.userspace_addr = (uintptr_t)(vm->ram + vm->low_size),
	};
	if (ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &low) < 0 ||
	    (high.memory_size && ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &high) < 0)) {
		fprintf(stderr, "accord: kvm: KVM_SET_USER_MEMORY_REGION: %s\n", strerror(errno));
		return -1;
	}

	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_X86_USER_SPACE_MSR,
		.args = { KVM_MSR_EXIT_REASON_FILTER | KVM_MSR_EXIT_REASON_UNKNOWN | KVM_MSR_EXIT_REASON_INVAL },
	};
	if (vm->irqchip == VM_IRQCHIP_SPLIT && split_enable(k, vm) < 0)
		return -1;
	if (!vm->crystal_hz)
		vm->crystal_hz = VM_CRYSTAL_HZ;
	k->crystal_hz = vm->crystal_hz;
	if (ioctl(k->vm_fd, KVM_ENABLE_CAP, &cap) < 0 || msr_filter_set(k->vm_fd, k->split) < 0) {
		fprintf(stderr, "accord: kvm: cannot send MSRs to accord's model: %s\n", strerror(errno));
		return -1;
	}
	/* An instruction KVM's emulator lacks (an SSE load from MMIO, ...)
	 * comes to accord's interpreter (insn_step). Without this capability
	 * (Linux 5.14) KVM exits so only at CPL 0, with #UD already queued,
	 * and at CPL 3 injects #UD instead. */
	if (ioctl(k->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_EXIT_ON_EMULATION_FAILURE) > 0) {
		struct kvm_enable_cap ef = { .cap = KVM_CAP_EXIT_ON_EMULATION_FAILURE, .args = { 1 } };
		k->emu_fail_exits = ioctl(k->vm_fd, KVM_ENABLE_CAP, &ef) == 0;
	}
	/* virtio notifies: Linux writes 16 bits, other drivers 32; one
	 * registration of length 0 catches either */
	k->ioeventfd = ioctl(k->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_IOEVENTFD) > 0 &&
		       ioctl(k->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_IOEVENTFD_ANY_LENGTH) > 0;
	int win = window_probe(why, sizeof(why));
	if (win < 0) {
		fprintf(stderr, "accord: kvm: %s\n", why);
		return -1;
	}
	k->window_steps = !win;
	if (k->window_steps && k->verbose)
		fprintf(stderr, "accord: kvm: this host's KVM gives no exit at the end of an STI shadow; "
				"a vCPU waiting for an interrupt window runs single-stepped\n");
	return 0;
}

/* ---- vCPUs ---- */

/* The guest TSC runs at VM_TSC_HZ where KVM can scale it, so that CPUID
 * 0x15 is true as it stands; elsewhere it runs at the host's rate and
 * cpuid_tsc() tells the guest that rate instead. */
static void tsc_rate_set(struct kvm_vcpu_priv *p)
{
	struct kvm_vm *k = p->kvm;
	int host = ioctl(p->fd, KVM_GET_TSC_KHZ, 0);
	uint32_t want = VM_TSC_HZ / 1000;

	if (host < 0)
		host = 0;
	if (ioctl(k->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_CONTROL) > 0) {
		if (ioctl(p->fd, KVM_SET_TSC_KHZ, (unsigned long)want) == 0) {
			k->tsc_khz = want;
			return;
		}
		/* a failed attempt leaves KVM believing the asked-for rate */
		if (host)
			ioctl(p->fd, KVM_SET_TSC_KHZ, (unsigned long)host);
	}
	k->tsc_khz = (uint32_t)host;
	if (k->verbose && p->v->index == 0)
		fprintf(stderr,
			"accord: kvm: the host's KVM cannot scale the TSC to %llu kHz; the guest's TSC "
			"runs at the host's %d kHz and CPUID 0x15 says so\n",
			(unsigned long long)want, host);
}

static uint32_t lapic_reg(const struct kvm_lapic_state *st, unsigned off)
{
	uint32_t v;
	memcpy(&v, st->regs + off, 4);
	return v;
}

static void lapic_reg_set(struct kvm_lapic_state *st, unsigned off, uint32_t v)
{
	memcpy(st->regs + off, &v, 4);
}

/* what a BIOS leaves on the BSP, as accord's LAPIC starts (lapic.c):
 * virtual wire mode, the 8259 on LINT0 and NMI on LINT1 */
static int split_bsp_lints(struct kvm_vcpu_priv *p)
{
	struct kvm_lapic_state st;

	if (ioctl(p->fd, KVM_GET_LAPIC, &st) < 0)
		return -1;
	lapic_reg_set(&st, KVM_APIC_LVT0, LVT_DM_EXTINT);
	lapic_reg_set(&st, KVM_APIC_LVT1, LVT_DM_NMI);
	return ioctl(p->fd, KVM_SET_LAPIC, &st);
}

/* the interpreter for stepped instructions, kvm_run and the vCPU's fd
 * (a failed vcpu_init may have made only some) */
static void kvm_vcpu_destroy(struct vcpu *v)
{
	struct kvm_vcpu_priv *p = priv(v);

	free(p->step);
	p->step = NULL;
	if (p->run && p->run != MAP_FAILED)
		munmap(p->run, p->kvm->run_size);
	p->run = NULL;
	if (p->fd > 0)
		close(p->fd);
	p->fd = -1;
}

static int kvm_vcpu_init(struct vcpu *v)
{
	struct kvm_vm *k = v->vm->engine_priv;
	struct kvm_vcpu_priv *p = calloc(1, sizeof(*p));
	if (!p)
		return -1;
	v->engine_priv = p;
	p->v = v;
	p->kvm = k;
	p->window_budget = WINDOW_STEPS_MAX;
	pthread_mutex_init(&p->lock, NULL);
	p->fd = ioctl(k->vm_fd, KVM_CREATE_VCPU, (unsigned long)v->index);
	if (p->fd < 0) {
		fprintf(stderr, "accord: kvm: KVM_CREATE_VCPU %d: %s\n", v->index, strerror(errno));
		return -1;
	}
	p->run = mmap(NULL, k->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, 0);
	if (p->run == MAP_FAILED) {
		fprintf(stderr, "accord: kvm: cannot map kvm_run: %s\n", strerror(errno));
		return -1;
	}
	tsc_rate_set(p);
	/* KVM_SET_TSC_KHZ changes the rate, not the offset KVM_CREATE_VCPU
	 * chose for the host's: scaled, the TSC would start from the
	 * host's uptime times (ratio - 1), below zero (near 2^64) where the
	 * guest's rate is the lower. It starts at the VM clock, as vm_tsc()
	 * on emu, and KVM keeps the vCPUs' writes in step. */
	if (!msr_set(p, MSR_IA32_TSC, vm_ticks(p, vm_now_ns(v->vm)))) {
		fprintf(stderr, "accord: kvm: KVM_SET_MSRS refused cpu%d's IA32_TSC\n", v->index);
		return -1;
	}
	if (cpuid_set(p) < 0)
		return -1;
	/* KVM answers its paravirtual hypercalls (and MSRs) whatever CPUID
	 * says unless told to enforce it (api.rst KVM_CAP_ENFORCE_PV_FEATURE_CPUID):
	 * the guest gets what 0x40000001 announces, which is accord's
	 * kvmclock and no hypercall (none of them under --personality hyperv) */
	if (ioctl(k->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_ENFORCE_PV_FEATURE_CPUID) > 0) {
		struct kvm_enable_cap pv = { .cap = KVM_CAP_ENFORCE_PV_FEATURE_CPUID, .args = { 1 } };
		if (ioctl(p->fd, KVM_ENABLE_CAP, &pv) < 0) {
			fprintf(stderr, "accord: kvm: KVM_CAP_ENFORCE_PV_FEATURE_CPUID: %s\n", strerror(errno));
			return -1;
		}
	}
	if (ioctl(p->fd, KVM_GET_REGS, &p->reset_regs) < 0 || ioctl(p->fd, KVM_GET_SREGS, &p->reset_sregs) < 0 ||
	    ioctl(p->fd, KVM_GET_FPU, &p->reset_fpu) < 0 ||
	    ioctl(p->fd, KVM_GET_VCPU_EVENTS, &p->reset_events) < 0 ||
	    ioctl(p->fd, KVM_GET_DEBUGREGS, &p->reset_dregs) < 0) {
		fprintf(stderr, "accord: kvm: cannot read the vCPU's reset state: %s\n", strerror(errno));
		return -1;
	}
	p->have_xcrs = ioctl(p->fd, KVM_GET_XCRS, &p->reset_xcrs) == 0;
	if (k->split && v->index == 0 && split_bsp_lints(p) < 0) {
		fprintf(stderr, "accord: kvm: cannot set up cpu0's LAPIC: %s\n", strerror(errno));
		return -1;
	}
	/* made now: the sandbox comes before the first instruction to step */
	p->step = step_create(p);
	if (!p->step)
		return -1;
	/* KVM's RESET leaves IA32_MISC_ENABLE with fast strings off (PEBS
	 * and BTS unavailable: 0x1800), on which Linux turns ERMS and
	 * REP_GOOD off; the model's value is accord's CPU's after its reset */
	if (!msr_set(p, MSR_MISC_ENABLE, p->step->cpu.misc_enable)) {
		fprintf(stderr, "accord: kvm: KVM_SET_MSRS refused cpu%d's IA32_MISC_ENABLE\n", v->index);
		return -1;
	}
	/* after RESET and INIT, EDX holds the processor signature */
	struct cpuid_result r;
	cpuid_query(k->personality, v->index, 1, 0, &r);
	p->reset_regs.rdx = r.eax;
	return 0;
}

static void kick_handler(int sig)
{
	(void)sig;
}

static void thread_gone(void *arg)
{
	struct kvm_vcpu_priv *p = arg;
	if (p->kvm->verbose && p->steps)
		fprintf(stderr, "accord: kvm: cpu%d: %llu instructions the host's KVM cannot emulate ran on accord's "
				"interpreter, and %llu after them in the same hand-overs (%.1f us a hand-over)\n",
			p->v->index, (unsigned long long)p->steps, (unsigned long long)p->ahead,
			p->step_ns / 1e3 / p->steps);
	pthread_mutex_lock(&p->lock);
	p->thread_live = false;
	if (p->timer_ok)
		timer_delete(p->timer);
	p->timer_ok = false;
	pthread_mutex_unlock(&p->lock);
}

static void once_init(void)
{
	struct sigaction sa = { .sa_handler = kick_handler, .sa_flags = SA_RESTART };
	sigemptyset(&sa.sa_mask);
	sigaction(KVM_KICK_SIGNAL, &sa, NULL);
	pthread_key_create(&thread_key, thread_gone);
}

/* the calling thread runs this vCPU from now on: block the kick signal
 * outside KVM_RUN, point the deadline timer at this thread */
static int thread_attach(struct kvm_vcpu_priv *p)
{
	sigset_t kick, old;
	pthread_once(&once, once_init);
	sigemptyset(&kick);
	sigaddset(&kick, KVM_KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &kick, &old);
	sigdelset(&old, KVM_KICK_SIGNAL);

	/* the kernel's sigset is the first 8 bytes of glibc's */
	struct {
		struct kvm_signal_mask m;
		uint8_t set[8];
	} mask = { .m.len = 8 };
	memcpy(mask.set, &old, 8);
	if (ioctl(p->fd, KVM_SET_SIGNAL_MASK, &mask) < 0)
		return -1;

	struct sigevent sev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = KVM_KICK_SIGNAL };
	sev.sigev_notify_thread_id = gettid();
	pthread_mutex_lock(&p->lock);
	if (p->timer_ok)
		timer_delete(p->timer);
	p->timer_ok = timer_create(CLOCK_MONOTONIC, &sev, &p->timer) == 0;
	p->timer_at_ns = 0;
	p->thread = pthread_self();
	p->thread_live = true;
	pthread_mutex_unlock(&p->lock);
	pthread_setspecific(thread_key, p);
	thread_vcpu = p;
	return p->timer_ok ? 0 : -1;
}

static void kvm_vcpu_kick(struct vcpu *v)
{
	struct kvm_vcpu_priv *p = priv(v);
	if (!p || thread_vcpu == p)
		return; /* the vCPU's own thread looks before it enters KVM_RUN */
	pthread_mutex_lock(&p->lock);
	if (p->thread_live)
		pthread_kill(p->thread, KVM_KICK_SIGNAL);
	pthread_mutex_unlock(&p->lock);
}

static void signals_drain(void)
{
	sigset_t kick;
	struct timespec zero = { 0 };
	sigemptyset(&kick);
	sigaddset(&kick, KVM_KICK_SIGNAL);
	while (sigtimedwait(&kick, NULL, &zero) > 0)
		;
}

/* have the timer signal end KVM_RUN by the next timer event (ns from now;
 * negative: none) */
static void timer_arm(struct kvm_vcpu_priv *p, int64_t ns)
{
	if (!p->timer_ok)
		return;
	if (ns < 0 || ns > KVM_MAX_SLEEP_NS)
		ns = KVM_MAX_SLEEP_NS;
	if (ns < 1000)
		ns = 1000;
	uint64_t now = mono_ns(), at = now + (uint64_t)ns;
	if (p->timer_at_ns > now && p->timer_at_ns <= at)
		return; /* an earlier expiry is armed: it comes first anyway */
	struct itimerspec its = { .it_value = { .tv_sec = at / 1000000000ull, .tv_nsec = at % 1000000000ull } };
	if (timer_settime(p->timer, TIMER_ABSTIME, &its, NULL) == 0)
		p->timer_at_ns = at;
}

static void pio_exit(struct kvm_vcpu_priv *p);
static void mmio_exit(struct kvm_vcpu_priv *p);

/* Finish the exit KVM still owes (an IN's data, an MMIO read, an RDMSR)
 * without running guest code, so registers read or written now are those
 * after the instruction. Completing one part of an access may stop at
 * the next (KVM splits an MMIO access that crosses a page, or is wider
 * than 8 bytes, into fragments; a string I/O instruction can need another
 * batch): KVM_RUN then returns that exit, not EINTR, and it is served
 * here as the run loop would. */
static void io_complete(struct kvm_vcpu_priv *p)
{
	int rc;

	if (!p->io_pending)
		return;
	p->run->immediate_exit = 1;
	while ((rc = ioctl(p->fd, KVM_RUN, 0)) == 0) {
		if (p->run->exit_reason == KVM_EXIT_MMIO)
			mmio_exit(p);
		else if (p->run->exit_reason == KVM_EXIT_IO)
			pio_exit(p);
		else
			break;
	}
	/* KVM_RUN's EINTR says whether the vCPU, after the instruction,
	 * takes an interrupt (not with an exception the instruction raised) */
	p->ready = rc < 0 && errno == EINTR && p->run->ready_for_interrupt_injection;
	p->run->immediate_exit = 0;
	p->io_pending = false;
}

static uint8_t tpr_read(struct lapic *l)
{
	return (uint8_t)(lapic_mmio_read(l, 0x80, 4) >> 4);
}

/* ---- exits ---- */

static void pio_exit(struct kvm_vcpu_priv *p)
{
	struct kvm_run *run = p->run;
	struct vm *vm = p->v->vm;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	int size = run->io.size;

	/* the data must lie inside the kvm_run mapping */
	if ((size != 1 && size != 2 && size != 4) ||
	    (uint64_t)run->io.data_offset + (uint64_t)run->io.count * size > (uint64_t)p->kvm->run_size)
		return;
	if (run->io.direction == KVM_EXIT_IO_OUT && run->io.count == 1) {
		uint32_t val = 0;
		memcpy(&val, data, size);
		if (vm_pio_out_vcpu(p->v, run->io.port, val, size))
			return;
	}
	pthread_mutex_lock(&vm->io_lock);
	for (uint32_t i = 0; i < run->io.count; i++, data += size) {
		uint64_t val = 0;
		if (run->io.direction == KVM_EXIT_IO_OUT) {
			memcpy(&val, data, size);
			bus_write(&vm->pio, run->io.port, val, size);
		} else {
			bus_read(&vm->pio, run->io.port, size, &val);
			memcpy(data, &val, size);
		}
	}
	pthread_mutex_unlock(&vm->io_lock);
}

/* a guest access to MMIO at gpa: accord's LAPIC, or a device on the bus */
/* Split irqchip: an instruction stepped on accord's interpreter reaches
 * KVM's LAPIC page (KVM's own exits never do while it is enabled). A read
 * comes from KVM_GET_LAPIC, which holds the timer's current count as of
 * now; a write's effects (EOI, ICR, the timer) are KVM's to carry out, and
 * KVM_SET_LAPIC does not: the step is refused (st->lapic_write). false:
 * not KVM's LAPIC (disabled, or elsewhere). */
static bool split_lapic_access(struct kvm_vcpu_priv *p, uint64_t gpa, uint64_t *val, int len, bool write)
{
	struct kvm_lapic_state st;
	uint64_t base;
	unsigned off = gpa & 0xfff;

	if (!p->kvm->split || !p->step || !msr_get(p, MSR_APIC_BASE, &base) || !(base & APIC_BASE_ENABLE) ||
	    (gpa & ~0xfffull) != (base & APIC_BASE_ADDR))
		return false;
	if (write) {
		p->step->lapic_write = true;
		return true;
	}
	*val = 0;
	if (ioctl(p->fd, KVM_GET_LAPIC, &st) < 0) {
		p->step->lapic_write = true; /* no state to read: refused as well */
		return true;
	}
	/* each register is the first 4 bytes of its 16; the rest reads 0 */
	for (int i = 0; i < len && i < 8; i++) {
		unsigned b = off + (unsigned)i;
		if (b < sizeof(st.regs) && (b & 0xf) < 4)
			*val |= (uint64_t)(uint8_t)st.regs[b] << (8 * i);
	}
	return true;
}

static void mmio_access(struct kvm_vcpu_priv *p, uint64_t gpa, uint64_t *val, int len, bool write)
{
	struct vm *vm = p->v->vm;

	if (split_lapic_access(p, gpa, val, len, write))
		return;
	if ((gpa & ~0xfffull) == LAPIC_BASE && !p->kvm->split) {
		if (write)
			lapic_mmio_write(p->v->lapic, gpa & 0xfff, *val, len);
		else
			*val = lapic_mmio_read(p->v->lapic, gpa & 0xfff, len);
		return;
	}
	pthread_mutex_lock(&vm->io_lock);
	if (write)
		bus_write(&vm->mmio, gpa, *val, len);
	else
		bus_read(&vm->mmio, gpa, len, val);
	pthread_mutex_unlock(&vm->io_lock);
}

static void mmio_exit(struct kvm_vcpu_priv *p)
{
	struct kvm_run *run = p->run;
	uint64_t val = 0;
	uint32_t mlen = run->mmio.len;
	int len = mlen > 8 ? 8 : (int)mlen;

	if (run->mmio.is_write)
		memcpy(&val, run->mmio.data, len);
	mmio_access(p, run->mmio.phys_addr, &val, len, run->mmio.is_write);
	if (!run->mmio.is_write)
		memcpy(run->mmio.data, &val, len);
}

static bool guest_tsc(struct kvm_vcpu_priv *p, uint64_t *tsc)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} m = { .h.nmsrs = 1, .e.index = MSR_IA32_TSC };
	if (ioctl(p->fd, KVM_GET_MSRS, &m) != 1)
		return false;
	*tsc = m.e.data;
	return true;
}

/* The LAPIC counts TSC deadlines in vm_tsc() units; the guest writes them
 * in its own TSC's, which KVM may offset (the guest can write its TSC) or
 * run at another rate. Convert through the distance from now. */
static bool deadline_write(struct kvm_vcpu_priv *p, uint64_t val)
{
	struct vm *vm = p->v->vm;
	uint64_t g, t, d;

	if (!val) {
		p->tsc_deadline = 0;
		return lapic_msr_write(p->v->lapic, MSR_TSC_DEADLINE, 0);
	}
	if (!guest_tsc(p, &g) || !p->kvm->tsc_khz)
		return false;
	t = vm_tsc(vm);
	d = t;
	if (val > g)
		d += (uint64_t)((unsigned __int128)(val - g) * VM_TSC_HZ / ((uint64_t)p->kvm->tsc_khz * 1000));
	p->tsc_deadline = val;
	return lapic_msr_write(p->v->lapic, MSR_TSC_DEADLINE, d ? d : 1);
}

/* MSRs that KVM leaves to accord: the machine's model answers, as it does
 * for the emu engine after the CPU core's own MSRs; false means #GP */
/* The guest's TSC at VM time ns (kvmclock's and the TSC page's pair).
 * KVM's TSC is read between two reads of the VM clock and carried to ns
 * at the TSC's rate: taken as it comes, a thread preempted between the
 * caller's clock read and the ioctl (a loaded host) paired the clock with
 * a later TSC, and the guest's clock ran that far behind (2 ms seen).
 * The narrowest of a few tries counts. */
#define TSC_PAIR_TRIES 4
#define TSC_PAIR_NS 20000
static int kvm_guest_tsc(struct vcpu *v, uint64_t ns, uint64_t *tsc, uint64_t *hz)
{
	struct kvm_vcpu_priv *p = priv(v);
	uint64_t g, t0, t1, best = UINT64_MAX, at = 0, val = 0;

	if (!p->kvm->tsc_khz)
		return -1;
	for (int i = 0; i < TSC_PAIR_TRIES && best > TSC_PAIR_NS; i++) {
		t0 = vm_now_ns(v->vm);
		if (!guest_tsc(p, &g))
			return -1;
		t1 = vm_now_ns(v->vm);
		if (t1 - t0 < best) {
			best = t1 - t0;
			at = t0 + best / 2;
			val = g;
		}
	}
	*hz = (uint64_t)p->kvm->tsc_khz * 1000;
	__int128 d = (__int128)((int64_t)(ns - at)) * (__int128)*hz / 1000000000;
	*tsc = (uint64_t)((__int128)val + d);
	return 0;
}

/* the MSRs of the split irqchip's LAPIC: KVM's (an instruction stepped on
 * accord's interpreter reaches them here) */
static bool split_lapic_msr(struct kvm_vcpu_priv *p, uint32_t msr)
{
	return p->kvm->split && (msr == MSR_APIC_BASE || msr == MSR_TSC_DEADLINE || (msr >= 0x800 && msr < 0x900));
}

static bool machine_msr_read(struct kvm_vcpu_priv *p, uint32_t msr, uint64_t *val)
{
	if (split_lapic_msr(p, msr))
		return msr_get(p, msr, val);
	if (msr == MSR_TSC_DEADLINE) {
		uint64_t armed;
		if (!lapic_msr_read(p->v->lapic, msr, &armed))
			return false;
		*val = armed ? p->tsc_deadline : 0;
		return true;
	}
	if (msr == MSR_ARCH_CAPABILITIES) {
		/* the model's bits, of those KVM vouches for: the guest's code
		 * runs on the host's CPU, not on accord's interpreter */
		uint64_t model;
		if (!msr_read(&p->step->cpu, msr, &model))
			return false;
		if (p->kvm->verbose && p->v->index == 0 && !p->arch_caps_told && (model & ~p->kvm->arch_caps))
			fprintf(stderr,
				"accord: kvm: IA32_ARCH_CAPABILITIES bits 0x%llx are not vouched for by this host's "
				"KVM; hidden from the guest\n",
				(unsigned long long)(model & ~p->kvm->arch_caps));
		p->arch_caps_told = true;
		*val = model & p->kvm->arch_caps;
		return true;
	}
	return vm_msr_read(p->v, msr, val);
}

static bool machine_msr_write(struct kvm_vcpu_priv *p, uint32_t msr, uint64_t val)
{
	if (split_lapic_msr(p, msr))
		return msr_set(p, msr, val);
	if (msr == MSR_TSC_DEADLINE)
		return deadline_write(p, val);
	if (msr == MSR_SYSENTER_ESP || msr == MSR_SYSENTER_EIP)
		return lin_canonical(val) && msr_set(p, msr, val);
	return vm_msr_write(p->v, msr, val);
}

static void describe_internal(struct kvm_vcpu_priv *p, char *msg, size_t n)
{
	struct kvm_run *run = p->run;
	struct kvm_regs regs = { 0 };
	struct kvm_sregs sregs = { 0 };
	int len = 0;

	ioctl(p->fd, KVM_GET_REGS, &regs);
	ioctl(p->fd, KVM_GET_SREGS, &sregs);
	switch (run->internal.suberror) {
	case KVM_INTERNAL_ERROR_EMULATION: {
		uint8_t bytes[15];
		int nb = 0;
		if (run->emulation_failure.ndata >= 3 &&
		    (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
			nb = run->emulation_failure.insn_size;
			if (nb > 15)
				nb = 15;
			memcpy(bytes, run->emulation_failure.insn_bytes, nb);
		} else {
			/* KVM gave no bytes: read them through the guest's page tables */
			struct kvm_translation tr = { .linear_address = sregs.cs.base + regs.rip };
			uint8_t *h;
			if (ioctl(p->fd, KVM_TRANSLATE, &tr) == 0 && tr.valid &&
			    (h = vm_gpa(p->v->vm, tr.physical_address, 15)) != NULL) {
				memcpy(bytes, h, 15);
				nb = 15;
			}
		}
		len = snprintf(msg, n, "kvm: the host's KVM cannot emulate the instruction at rip %#llx (cpl %d):",
			       (unsigned long long)regs.rip, sregs.ss.dpl);
		for (int i = 0; i < nb && len > 0 && (size_t)len < n; i++)
			len += snprintf(msg + len, n - len, " %02x", bytes[i]);
		if (!nb && len > 0 && (size_t)len < n)
			len += snprintf(msg + len, n - len, " (bytes unknown)");
		if (p->step && p->step->lapic_write && len > 0 && (size_t)len < n)
			snprintf(msg + len, n - len, "; it writes KVM's LAPIC (--irqchip split), which accord's "
						     "interpreter cannot (--irqchip user can)");
		return;
	}
	case KVM_INTERNAL_ERROR_SIMUL_EX:
		len = snprintf(msg, n, "kvm: internal error: an exception while delivering an exception");
		break;
	case KVM_INTERNAL_ERROR_DELIVERY_EV:
		len = snprintf(msg, n, "kvm: internal error: a VM exit while delivering an event");
		break;
	case KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON:
		len = snprintf(msg, n, "kvm: internal error: unexpected hardware exit reason");
		break;
	default:
		len = snprintf(msg, n, "kvm: internal error, suberror %u", run->internal.suberror);
		break;
	}
	if (len > 0 && (size_t)len < n)
		len += snprintf(msg + len, n - len, " at rip %#llx", (unsigned long long)regs.rip);
	for (uint32_t i = 0; i < run->internal.ndata && i < 4 && len > 0 && (size_t)len < n; i++)
		len += snprintf(msg + len, n - len, "%s%#llx", i ? " " : " (data ",
				(unsigned long long)run->internal.data[i]);
	if (run->internal.ndata && len > 0 && (size_t)len < n)
		snprintf(msg + len, n - len, ")");
}

/* KVM_EXIT_FAIL_ENTRY: the hardware refused the vCPU's state. VMX reports
 * the exit reason with bit 31 set (SDM vol. 3C 26.8: 33 invalid guest
 * state, 34 MSR loading, 41 machine check), or VM_INSTRUCTION_ERROR where
 * VMLAUNCH/VMRESUME itself failed; SVM reports VMEXIT_INVALID (-1) for a
 * VMCB that fails its consistency checks (APM vol. 2 15.5.1). */
static void describe_fail_entry(struct kvm_vcpu_priv *p, char *msg, size_t n)
{
	uint64_t why = p->run->fail_entry.hardware_entry_failure_reason;
	struct kvm_regs regs = { 0 };
	const char *what = "";

	ioctl(p->fd, KVM_GET_REGS, &regs);
	if (why == 0x80000021)
		what = ": VMX, invalid guest state";
	else if (why == 0x80000022)
		what = ": VMX, MSR loading";
	else if (why == 0x80000029)
		what = ": VMX, machine check";
	else if (why == ~0ull)
		what = ": SVM, invalid VMCB state";
	snprintf(msg, n, "kvm: VM entry failed at rip %#llx (hardware reason %#llx%s, host CPU %u)",
		 (unsigned long long)regs.rip, (unsigned long long)why, what, p->run->fail_entry.cpu);
}

/* Tell KVM what the debugger and the search for an interrupt window need,
 * when that changed. The trap flag KVM sets for a step is its own: it
 * takes it out of RFLAGS again when stepping ends (KVM_SET_GUEST_DEBUG). */
static int debug_apply(struct kvm_vcpu_priv *p)
{
	const struct guest_debug *d = &p->dbg;
	struct kvm_guest_debug g = { 0 };

	if (d->single_step || p->step_over || p->window_step)
		g.control |= KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP;
	/* KVM's LAPIC would deliver an interrupt inside the debugger's step:
	 * the step then ends at the handler's first instruction, not after
	 * the one the debugger meant (as emu and the user irqchip step) */
	if ((d->single_step || p->step_over) && p->kvm->blockirq)
		g.control |= KVM_GUESTDBG_BLOCKIRQ;
	if (d->nbreak) {
		g.control |= KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP;
		g.arch.debugreg[7] = DR7_GE | DR7_FIXED1;
		for (int i = 0; i < d->nbreak && i < KVM_HW_BREAKS; i++) {
			if (p->step_over && d->breaks[i] == p->step_over_rip)
				continue;
			g.arch.debugreg[i] = d->breaks[i];
			g.arch.debugreg[7] |= 2ull << (i * 2);
		}
	}
	if (!memcmp(&g, &p->dbg_set, sizeof(g)))
		return 0;
	if (ioctl(p->fd, KVM_SET_GUEST_DEBUG, &g) < 0)
		return -1;
	p->dbg_set = g;
	return 0;
}

/* A debugger resumes the vCPU: a continue from a breakpoint, or any step,
 * first executes the instruction at RIP with that breakpoint out of the
 * debug registers, since an instruction breakpoint would fault again before
 * the instruction runs. */
static int debug_resume(struct kvm_vcpu_priv *p)
{
	struct kvm_regs r;

	p->dbg_resume = false;
	p->step_over = false;
	if (!p->dbg.skip_break_at_rip)
		return 0;
	io_complete(p);
	if (ioctl(p->fd, KVM_GET_REGS, &r) < 0)
		return -1;
	for (int i = 0; i < p->dbg.nbreak && i < KVM_HW_BREAKS; i++)
		p->step_over |= p->dbg.breaks[i] == r.rip;
	p->step_over_rip = r.rip;
	return 0;
}

/* A KVM_EXIT_DEBUG: whether the debugger must hear of it. A finished
 * window-search step is the engine's own. */
static bool debug_exit(struct kvm_vcpu_priv *p)
{
	if (p->step_over) {
		p->step_over = false;
		return p->dbg.single_step;
	}
	return p->dbg.single_step || (p->run->debug.arch.dr6 & DR6_BREAKS);
}

/* An interrupt went in: the search for its window ended within its
 * budget, and the next may step longer */
static void window_found(struct kvm_vcpu_priv *p)
{
	if (p->window_count != WINDOW_POLLING && p->window_budget < WINDOW_STEPS_MAX)
		p->window_budget *= 2;
	p->window_count = 0;
}

/* Inject the LAPIC's highest vector if the vCPU can take it now (the last
 * exit said so and nothing has changed the registers since); otherwise ask
 * KVM to exit when it can, or step to find that point where KVM would not
 * exit. A debugger's step executes one instruction, not the first of an
 * interrupt handler (as on emu); a halted vCPU still wakes. */
/* Split irqchip: whether KVM's LAPIC takes the PIC's INTR now (LINT0
 * unmasked as ExtINT, or the APIC hardware-disabled), as KVM decides */
static bool split_extint_wired(struct kvm_vcpu_priv *p)
{
	struct kvm_lapic_state st;
	uint64_t base;
	uint32_t lvt0;

	if (!msr_get(p, MSR_APIC_BASE, &base) || ioctl(p->fd, KVM_GET_LAPIC, &st) < 0)
		return false;
	lvt0 = lapic_reg(&st, KVM_APIC_LVT0);
	return !(base & APIC_BASE_ENABLE) || (lvt0 & (LVT_MASKED | LVT_DM_MASK)) == LVT_DM_EXTINT;
}

/* the vector to inject from here: the user irqchip's LAPIC's, or with
 * the split irqchip the PIC's where KVM's LAPIC takes it */
static int interrupt_pending(struct kvm_vcpu_priv *p, bool ack)
{
	if (!p->kvm->split)
		return lapic_get_interrupt(p->v->lapic, ack);
	if (!ack && (pic_extint(p->v->vm, false) < 0 || !split_extint_wired(p)))
		return -1;
	return pic_extint(p->v->vm, ack);
}

static void interrupts_deliver(struct kvm_vcpu_priv *p)
{
	bool stepping = (p->dbg.single_step || p->step_over) && !p->halted;
	int vec = stepping ? -1 : interrupt_pending(p, false);

	/* An exit's instruction is finished on the next KVM_RUN, and that may
	 * raise an exception: #GP for an MSR access accord refused, a fault of
	 * the emulator's. KVM injects one event per entry, the exception,
	 * and drops an interrupt queued with KVM_INTERRUPT before it (Linux
	 * 6.1: the interrupt is gone at the next exit, while accord's LAPIC
	 * holds it in service and blocks every vector at or below its
	 * class). So the instruction is completed first, and the interrupt
	 * goes in only where KVM then says the vCPU takes one. */
	if (vec >= 0 && p->ready && p->io_pending)
		io_complete(p);
	if (vec >= 0 && p->ready) {
		if (p->window_step) {
			/* the handler's frame must not save KVM's trap flag */
			p->window_step = false;
			debug_apply(p);
		}
		vec = interrupt_pending(p, true);
		if (vec >= 0) {
			struct kvm_interrupt irq = { .irq = (uint32_t)vec };
			if (ioctl(p->fd, KVM_INTERRUPT, &irq) == 0) {
				p->ready = false;
				p->halted = false;
				window_found(p);
			}
			vec = interrupt_pending(p, false);
		}
	}
	p->run->request_interrupt_window = vec >= 0;
	if (vec < 0 || !p->kvm->window_steps) {
		p->window_step = false;
		p->window_count = 0;
		return;
	}
	if (p->window_count == p->window_budget) {
		/* this search ran out: poll, and the next one steps less */
		if (p->window_budget > WINDOW_STEPS_MIN)
			p->window_budget /= 2;
		p->window_count = WINDOW_POLLING;
	}
	p->window_step = p->window_count < p->window_budget;
}

static int kvm_vcpu_run(struct vcpu *v, struct vcpu_exit *ex)
{
	struct kvm_vcpu_priv *p = priv(v);
	struct kvm_run *run = p->run;
	struct vm *vm = v->vm;

	if (thread_vcpu != p && thread_attach(p) < 0) {
		snprintf(ex->msg, sizeof(ex->msg), "kvm: cannot set up the vCPU thread's kick signal: %s",
			 strerror(errno));
		ex->kind = EXIT_ERROR;
		return 0;
	}
	/* Kicks that came while vm.c had the vCPU waiting are stale: what
	 * they announced is looked at below. Without this, each would cost
	 * one KVM_RUN that returns at once. */
	signals_drain();
	if (p->dbg_resume && debug_resume(p) < 0) {
		snprintf(ex->msg, sizeof(ex->msg), "kvm: cannot resume from the debugger: %s", strerror(errno));
		ex->kind = EXIT_ERROR;
		return 0;
	}
	for (;;) {
		if (vm->exit_reason || v->init_pending || vm->pause_request) {
			ex->kind = EXIT_KICK;
			return 0;
		}
		int64_t next = vm_poll_timers(v);
		if (lapic_take_nmi(v->lapic)) {
			if (ioctl(p->fd, KVM_NMI) < 0) {
				snprintf(ex->msg, sizeof(ex->msg), "kvm: KVM_NMI: %s", strerror(errno));
				ex->kind = EXIT_ERROR;
				return 0;
			}
			p->halted = false;
		}
		interrupts_deliver(p);
		if (p->halted) {
			ex->kind = EXIT_HLT;
			return 0;
		}
		if (debug_apply(p) < 0) {
			snprintf(ex->msg, sizeof(ex->msg), "kvm: KVM_SET_GUEST_DEBUG: %s", strerror(errno));
			ex->kind = EXIT_ERROR;
			return 0;
		}
		if (p->run->request_interrupt_window && !p->window_step && p->kvm->window_steps &&
		    (next < 0 || next > WINDOW_POLL_NS))
			next = WINDOW_POLL_NS;
		timer_arm(p, next);
		/* the split irqchip's TPR is KVM's LAPIC's */
		uint8_t cr8 = p->kvm->split ? 0 : tpr_read(v->lapic);
		run->cr8 = cr8;
		run->immediate_exit = 0;

		int rc = ioctl(p->fd, KVM_RUN, 0);
		int err = errno;

		p->ready = run->ready_for_interrupt_injection;
		p->io_pending = false;
		/* a guest write to CR8 is a write to the LAPIC's TPR */
		if (!p->kvm->split && run->cr8 != cr8)
			lapic_mmio_write(v->lapic, 0x80, (uint32_t)(run->cr8 & 0xf) << 4, 4);
		if (rc < 0) {
			if (err == EINTR || err == EAGAIN) {
				signals_drain();
				continue;
			}
			snprintf(ex->msg, sizeof(ex->msg), "kvm: KVM_RUN: %s", strerror(err));
			ex->kind = EXIT_ERROR;
			return 0;
		}
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			pio_exit(p);
			p->io_pending = true;
			break;
		case KVM_EXIT_MMIO:
			mmio_exit(p);
			p->io_pending = true;
			break;
		case KVM_EXIT_X86_RDMSR: {
			uint64_t val = 0;
			bool ok = machine_msr_read(p, run->msr.index, &val);
			run->msr.error = !ok;
			run->msr.data = ok ? val : 0;
			p->io_pending = true;
			break;
		}
		case KVM_EXIT_X86_WRMSR:
			run->msr.error = !machine_msr_write(p, run->msr.index, run->msr.data);
			p->io_pending = true;
			break;
		case KVM_EXIT_HLT:
			p->halted = true;
			break;
		case KVM_EXIT_DEBUG:
			p->window_count += p->window_step;
			if (debug_exit(p)) {
				ex->kind = EXIT_DEBUG;
				return 0;
			}
			break;
		case KVM_EXIT_IOAPIC_EOI:
			ioapic_eoi(vm, run->eoi.vector);
			break;
		case KVM_EXIT_IRQ_WINDOW_OPEN:
		case KVM_EXIT_SET_TPR:
		case KVM_EXIT_INTR:
			break;
		case KVM_EXIT_SHUTDOWN: {
			struct kvm_regs regs = { 0 };
			ioctl(p->fd, KVM_GET_REGS, &regs);
			ex->kind = EXIT_SHUTDOWN;
			snprintf(ex->msg, sizeof(ex->msg), "rip=%#llx", (unsigned long long)regs.rip);
			return 0;
		}
		case KVM_EXIT_FAIL_ENTRY:
			ex->kind = EXIT_ERROR;
			describe_fail_entry(p, ex->msg, sizeof(ex->msg));
			return 0;
		case KVM_EXIT_INTERNAL_ERROR:
			if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION) {
				uint64_t t0 = mono_ns();
				int r = insn_step(p);
				p->step_ns += mono_ns() - t0;
				if (r == STEP_DONE)
					break;
				if (r == STEP_SHUTDOWN) {
					ex->kind = EXIT_SHUTDOWN;
					snprintf(ex->msg, sizeof(ex->msg), "rip=%#llx",
						 (unsigned long long)p->step->cpu.insn_rip);
					return 0;
				}
			}
			ex->kind = EXIT_ERROR;
			describe_internal(p, ex->msg, sizeof(ex->msg));
			return 0;
		default:
			ex->kind = EXIT_ERROR;
			snprintf(ex->msg, sizeof(ex->msg), "kvm: unexpected exit reason %u", run->exit_reason);
			return 0;
		}
	}
}

/* ---- state ---- */

/* The x87/SSE state as FXSAVE lays it out in 64-bit mode. A KVM that keeps
 * the guest's FPU state from the VMM (confidential guests; some emulated
 * KVMs) succeeds without writing anything: MXCSR's reserved bits, all ones
 * before the call, tell. The image is then zero and the call fails. */
static int fxsave_image(struct kvm_vcpu_priv *p, uint8_t fx[512])
{
	static bool told;
	struct kvm_fpu f;
	uint32_t mxcsr_mask = 0xffff;

	memset(fx, 0, 512);
	memset(&f, 0xff, sizeof(f));
	if (ioctl(p->fd, KVM_GET_FPU, &f) < 0)
		return -1;
	if (f.mxcsr & 0xffff0000u) {
		if (!told)
			fprintf(stderr, "accord: kvm: this host's KVM does not report the guest's x87/SSE state "
					"(KVM_GET_FPU returns nothing); it reads as zero\n");
		told = true;
		return -1;
	}
	memcpy(fx + 0, &f.fcw, 2);
	memcpy(fx + 2, &f.fsw, 2);
	fx[4] = f.ftwx;
	memcpy(fx + 6, &f.last_opcode, 2);
	memcpy(fx + 8, &f.last_ip, 8);
	memcpy(fx + 16, &f.last_dp, 8);
	memcpy(fx + 24, &f.mxcsr, 4);
	memcpy(fx + 28, &mxcsr_mask, 4);
	memcpy(fx + 32, f.fpr, sizeof(f.fpr));
	memcpy(fx + 160, f.xmm, sizeof(f.xmm));
	return 0;
}

/* the MSRs a snapshot keeps, in the order of cpu_state's fields (the TSC
 * goes as its offset from the VM clock, tsc_offset) */
static const uint32_t state_msrs[] = {
	0xc0000081, /* STAR */
	0xc0000082, /* LSTAR */
	0xc0000083, /* CSTAR */
	0xc0000084, /* SFMASK */
	0xc0000102, /* KERNEL_GS_BASE */
	0xc0000103, /* TSC_AUX */
	0x174,	    /* SYSENTER_CS */
	0x175,	    /* SYSENTER_ESP */
	0x176,	    /* SYSENTER_EIP */
	0x277,	    /* PAT */
	0x1a0,	    /* MISC_ENABLE */
	0x3b,	    /* TSC_ADJUST */
};

static uint64_t *state_msr_field(struct cpu_state *s, int i)
{
	uint64_t *f[] = { &s->star, &s->lstar, &s->cstar, &s->sfmask, &s->kernel_gs_base, &s->tsc_aux,
			  &s->sysenter_cs, &s->sysenter_esp, &s->sysenter_eip, &s->pat, &s->misc_enable, &s->tsc_adjust };
	_Static_assert(sizeof(f) / sizeof(f[0]) == sizeof(state_msrs) / sizeof(state_msrs[0]), "state MSRs");
	return f[i];
}

/* one MSR at a time: KVM stops a batch at the first it does not know */
static bool msr_get(struct kvm_vcpu_priv *p, uint32_t index, uint64_t *val)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} m = { .h.nmsrs = 1, .e.index = index };
	if (ioctl(p->fd, KVM_GET_MSRS, &m) != 1)
		return false;
	*val = m.e.data;
	return true;
}

/* state_msrs into their fields in one KVM_GET_MSRS where KVM knows them
 * all; from the first it does not know on, one at a time (those read 0) */
static void msrs_get(struct kvm_vcpu_priv *p, struct cpu_state *s)
{
	enum { N = sizeof(state_msrs) / sizeof(state_msrs[0]) };
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e[N];
	} m = { .h.nmsrs = N };
	int got;

	for (int i = 0; i < N; i++)
		m.e[i].index = state_msrs[i];
	got = ioctl(p->fd, KVM_GET_MSRS, &m);
	if (got < 0)
		got = 0;
	for (int i = 0; i < N; i++)
		if (i < got)
			*state_msr_field(s, i) = m.e[i].data;
		else if (!msr_get(p, state_msrs[i], state_msr_field(s, i)))
			*state_msr_field(s, i) = 0;
}

static bool msr_set(struct kvm_vcpu_priv *p, uint32_t index, uint64_t val)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} m = { .h.nmsrs = 1, .e.index = index, .e.data = val };
	return ioctl(p->fd, KVM_SET_MSRS, &m) == 1;
}

/* VM time ns in ticks of the guest's TSC */
static uint64_t vm_ticks(struct kvm_vcpu_priv *p, uint64_t ns)
{
	uint64_t hz = p->kvm->tsc_khz ? (uint64_t)p->kvm->tsc_khz * 1000 : VM_TSC_HZ;
	return (uint64_t)((unsigned __int128)ns * hz / 1000000000ull);
}

static void seg_out(struct cpu_seg *o, const struct kvm_segment *k)
{
	o->base = k->base;
	o->limit = k->limit;
	o->sel = k->selector;
	o->attr = (uint16_t)((k->type & 15) | (k->s & 1) << 4 | (k->dpl & 3) << 5 | (k->present & !k->unusable) << 7 |
			     (k->avl & 1) << 8 | (k->l & 1) << 9 | (k->db & 1) << 10 | (k->g & 1) << 11);
}

static void seg_in(struct kvm_segment *k, const struct cpu_seg *o)
{
	*k = (struct kvm_segment){
		.base = o->base, .limit = o->limit, .selector = o->sel,
		.type = o->attr & 15, .s = o->attr >> 4 & 1, .dpl = o->attr >> 5 & 3, .present = o->attr >> 7 & 1,
		.avl = o->attr >> 8 & 1, .l = o->attr >> 9 & 1, .db = o->attr >> 10 & 1, .g = o->attr >> 11 & 1,
		.unusable = !(o->attr >> 7 & 1),
	};
}

/* the split irqchip's LAPIC and run state; the TSC deadline is KVM's */
static int state_get_lapic(struct kvm_vcpu_priv *p, struct cpu_state *s)
{
	struct kvm_mp_state mp;

	_Static_assert(sizeof(struct kvm_lapic_state) == sizeof(s->lapic), "LAPIC state");
	if (ioctl(p->fd, KVM_GET_LAPIC, (struct kvm_lapic_state *)s->lapic) < 0 ||
	    ioctl(p->fd, KVM_GET_MP_STATE, &mp) < 0)
		return -1;
	s->lapic_size = sizeof(s->lapic);
	s->mp_state = mp.mp_state;
	s->halted = mp.mp_state == KVM_MP_STATE_HALTED;
	return 0;
}

/* everything beyond the GPRs, RIP, RFLAGS and the FXSAVE image */
static int state_get_full(struct kvm_vcpu_priv *p, const struct kvm_sregs *sr, struct cpu_state *s)
{
	const struct kvm_segment *segs[6] = { &sr->es, &sr->cs, &sr->ss, &sr->ds, &sr->fs, &sr->gs };
	struct kvm_debugregs dr;
	struct kvm_vcpu_events ev;

	for (int i = 0; i < 6; i++)
		seg_out(&s->seg[i], segs[i]);
	seg_out(&s->tr, &sr->tr);
	seg_out(&s->ldtr, &sr->ldt);
	s->gdtr = (struct cpu_dtr){ sr->gdt.base, sr->gdt.limit };
	s->idtr = (struct cpu_dtr){ sr->idt.base, sr->idt.limit };
	s->cr8 = sr->cr8;
	if (ioctl(p->fd, KVM_GET_DEBUGREGS, &dr) < 0 || ioctl(p->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return -1;
	memcpy(s->dr, dr.db, sizeof(dr.db));
	s->dr[6] = dr.dr6;
	s->dr[7] = dr.dr7;
	s->xcr0 = 1;
	if (p->have_xcrs) {
		struct kvm_xcrs x;
		if (ioctl(p->fd, KVM_GET_XCRS, &x) < 0)
			return -1;
		for (unsigned i = 0; i < x.nr_xcrs && i < KVM_MAX_XCRS; i++)
			if (x.xcrs[i].xcr == 0)
				s->xcr0 = x.xcrs[i].value;
	}
	msrs_get(p, s);
	uint64_t tsc;
	if (!msr_get(p, MSR_IA32_TSC, &tsc))
		return -1;
	s->tsc_offset = (int64_t)(tsc - vm_ticks(p, vm_now_ns(p->v->vm)));
	s->tsc_deadline = p->tsc_deadline;
	if (p->kvm->split && !msr_get(p, MSR_TSC_DEADLINE, &s->tsc_deadline))
		return -1;
	if (ioctl(p->kvm->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0) {
		_Static_assert(sizeof(struct kvm_xsave) <= sizeof(s->xsave), "XSAVE area");
		if (ioctl(p->fd, KVM_GET_XSAVE, (struct kvm_xsave *)s->xsave) < 0)
			return -1;
		s->xsave_size = sizeof(struct kvm_xsave);
	}
	s->exc_vector = ev.exception.injected || ev.exception.pending ? ev.exception.nr : -1;
	s->exc_has_error = ev.exception.has_error_code;
	s->exc_error = ev.exception.error_code;
	s->irq_injected = ev.interrupt.injected ? ev.interrupt.nr : -1;
	s->intr_shadow = ev.interrupt.shadow;
	s->nmi_pending = ev.nmi.pending || ev.nmi.injected;
	s->nmi_blocked = ev.nmi.masked;
	s->halted |= p->halted; /* or KVM's run state (state_get_lapic) */
	return 0;
}

/* the parts of a cpu_state that state_set writes besides the registers */
enum {
	STATE_SREGS = 1u << 0,	/* segments, descriptor tables, CRs, EFER */
	STATE_FPU = 1u << 1,	/* x87/SSE and the XSAVE area */
	STATE_XCR = 1u << 2,
	STATE_DREGS = 1u << 3,
	STATE_MSRS = 1u << 4,	/* state_msrs and IA32_TSC_DEADLINE */
	STATE_TSC = 1u << 5,
	STATE_EVENTS = 1u << 6, /* pending events, interrupt shadow, halt */
	STATE_LAPIC = 1u << 7,	/* the split irqchip's LAPIC and run state */
	STATE_ALL = 0xff,
};

/* KVM's order: the system registers (EFER before the MSRs that depend on
 * long mode), the FPU, XCR0, the debug registers, the MSRs and the TSC,
 * the registers (KVM_SET_REGS drops a pending exception), the pending
 * events last */
static int state_set(struct kvm_vcpu_priv *p, const struct cpu_state *s, const struct kvm_regs *r, unsigned parts)
{
	struct kvm_sregs sr;
	struct kvm_segment *segs[6] = { &sr.es, &sr.cs, &sr.ss, &sr.ds, &sr.fs, &sr.gs };
	struct kvm_debugregs dr = { 0 };
	struct kvm_vcpu_events ev;
	struct kvm_fpu f = { 0 };

	if (parts & STATE_SREGS) {
		if (ioctl(p->fd, KVM_GET_SREGS, &sr) < 0)
			return -1;
		for (int i = 0; i < 6; i++)
			seg_in(segs[i], &s->seg[i]);
		seg_in(&sr.tr, &s->tr);
		seg_in(&sr.ldt, &s->ldtr);
		sr.gdt = (struct kvm_dtable){ .base = s->gdtr.base, .limit = s->gdtr.limit };
		sr.idt = (struct kvm_dtable){ .base = s->idtr.base, .limit = s->idtr.limit };
		sr.cr0 = s->cr0;
		sr.cr2 = s->cr2;
		sr.cr3 = s->cr3;
		sr.cr4 = s->cr4;
		sr.cr8 = s->cr8;
		sr.efer = s->efer;
		memset(sr.interrupt_bitmap, 0, sizeof(sr.interrupt_bitmap));
		if (ioctl(p->fd, KVM_SET_SREGS, &sr) < 0)
			return -1;
	}
	if (parts & STATE_FPU) {
		memcpy(&f.fcw, s->fxsave + 0, 2);
		memcpy(&f.fsw, s->fxsave + 2, 2);
		f.ftwx = s->fxsave[4];
		memcpy(&f.last_opcode, s->fxsave + 6, 2);
		memcpy(&f.last_ip, s->fxsave + 8, 8);
		memcpy(&f.last_dp, s->fxsave + 16, 8);
		memcpy(&f.mxcsr, s->fxsave + 24, 4);
		memcpy(f.fpr, s->fxsave + 32, sizeof(f.fpr));
		memcpy(f.xmm, s->fxsave + 160, sizeof(f.xmm));
		if (ioctl(p->fd, KVM_SET_FPU, &f) < 0)
			return -1;
		/* the same x87/SSE state and what lies beyond it */
		if (s->xsave_size == sizeof(struct kvm_xsave) &&
		    ioctl(p->fd, KVM_SET_XSAVE, (struct kvm_xsave *)s->xsave) < 0)
			return -1;
	}
	if ((parts & STATE_XCR) && p->have_xcrs) {
		struct kvm_xcrs x = { .nr_xcrs = 1 };
		x.xcrs[0].xcr = 0;
		x.xcrs[0].value = s->xcr0;
		if (ioctl(p->fd, KVM_SET_XCRS, &x) < 0)
			return -1;
	}
	if (parts & STATE_DREGS) {
		memcpy(dr.db, s->dr, sizeof(dr.db));
		dr.dr6 = s->dr[6];
		dr.dr7 = s->dr[7];
		if (ioctl(p->fd, KVM_SET_DEBUGREGS, &dr) < 0)
			return -1;
	}
	if (parts & STATE_MSRS) {
		for (size_t i = 0; i < sizeof(state_msrs) / sizeof(state_msrs[0]); i++) {
			/* an MSR this KVM does not know read as 0 and stays so */
			uint64_t val = *state_msr_field((struct cpu_state *)s, (int)i);
			if (!msr_set(p, state_msrs[i], val) && val)
				return -1;
		}
		p->tsc_deadline = s->tsc_deadline;
	}
	if ((parts & STATE_TSC) &&
	    !msr_set(p, MSR_IA32_TSC, vm_ticks(p, vm_now_ns(p->v->vm)) + (uint64_t)s->tsc_offset))
		return -1;
	if (ioctl(p->fd, KVM_SET_REGS, r) < 0)
		return -1;
	if (parts & STATE_EVENTS) {
		if (ioctl(p->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
			return -1;
		ev.exception.injected = s->exc_vector >= 0;
		ev.exception.pending = 0;
		ev.exception.nr = s->exc_vector >= 0 ? (uint8_t)s->exc_vector : 0;
		ev.exception.has_error_code = s->exc_has_error;
		ev.exception.error_code = s->exc_error;
		ev.interrupt.injected = s->irq_injected >= 0;
		ev.interrupt.nr = s->irq_injected >= 0 ? (uint8_t)s->irq_injected : 0;
		ev.interrupt.shadow = s->intr_shadow;
		ev.nmi.injected = 0;
		ev.nmi.pending = s->nmi_pending;
		ev.nmi.masked = s->nmi_blocked;
		ev.flags = KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_NMI_PENDING;
		if (ioctl(p->fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
			return -1;
		p->halted = s->halted && !p->kvm->split;
		/* a HLT stepped on accord's interpreter: KVM's vCPU halts */
		struct kvm_mp_state mp = { KVM_MP_STATE_HALTED };
		if (p->kvm->split && s->halted && !(parts & STATE_LAPIC) && ioctl(p->fd, KVM_SET_MP_STATE, &mp) < 0)
			return -1;
	}
	/* the LAPIC before its TSC deadline (KVM takes one only in the
	 * timer's deadline mode), the run state last */
	if ((parts & STATE_LAPIC) && p->kvm->split) {
		struct kvm_mp_state mp = { s->mp_state };
		if (ioctl(p->fd, KVM_SET_LAPIC, (const struct kvm_lapic_state *)s->lapic) < 0 ||
		    (s->tsc_deadline && !msr_set(p, MSR_TSC_DEADLINE, s->tsc_deadline)) ||
		    ioctl(p->fd, KVM_SET_MP_STATE, &mp) < 0)
			return -1;
	}
	/* A halted vCPU does not enter KVM_RUN until an interrupt is taken,
	 * so no exit would tell it is ready for one: it is when it halted
	 * with interrupts on and nothing pending (as after KVM_EXIT_HLT). */
	p->ready = (parts & STATE_EVENTS) && s->halted && (s->rflags & (1u << 9)) && !s->intr_shadow &&
		   s->irq_injected < 0 && s->exc_vector < 0;
	return 0;
}

/* the vCPU's state (with rp, KVM_GET_REGS's registers too); with lapic,
 * the split irqchip's LAPIC too (an instruction stepped on accord's
 * interpreter leaves it as it is) */
static int state_read(struct kvm_vcpu_priv *p, struct cpu_state *s, bool lapic, struct kvm_regs *rp)
{
	struct kvm_regs r;
	struct kvm_sregs sr;

	io_complete(p);
	memset(s, 0, sizeof(*s));
	/* the run state first: KVM_GET_MP_STATE carries out an INIT or SIPI
	 * that KVM's LAPIC accepted for a vCPU not in KVM_RUN since, which
	 * changes the registers read after it (a SIPI: CS:IP) */
	if ((lapic && p->kvm->split && state_get_lapic(p, s) < 0) || ioctl(p->fd, KVM_GET_REGS, &r) < 0 ||
	    ioctl(p->fd, KVM_GET_SREGS, &sr) < 0 || state_get_full(p, &sr, s) < 0)
		return -1;
	if (rp)
		*rp = r;
	s->r[R_RAX] = r.rax;
	s->r[R_RCX] = r.rcx;
	s->r[R_RDX] = r.rdx;
	s->r[R_RBX] = r.rbx;
	s->r[R_RSP] = r.rsp;
	s->r[R_RBP] = r.rbp;
	s->r[R_RSI] = r.rsi;
	s->r[R_RDI] = r.rdi;
	s->r[R_R8] = r.r8;
	s->r[R_R9] = r.r9;
	s->r[R_R10] = r.r10;
	s->r[R_R11] = r.r11;
	s->r[R_R12] = r.r12;
	s->r[R_R13] = r.r13;
	s->r[R_R14] = r.r14;
	s->r[R_R15] = r.r15;
	s->rip = r.rip;
	s->rflags = r.rflags;
	s->cr0 = sr.cr0;
	s->cr2 = sr.cr2;
	s->cr3 = sr.cr3;
	s->cr4 = sr.cr4;
	s->efer = sr.efer;
	s->sel[0] = sr.es.selector;
	s->sel[1] = sr.cs.selector;
	s->sel[2] = sr.ss.selector;
	s->sel[3] = sr.ds.selector;
	s->sel[4] = sr.fs.selector;
	s->sel[5] = sr.gs.selector;
	s->fs_base = sr.fs.base;
	s->gs_base = sr.gs.base;
	/* the XSAVE area starts with the FXSAVE image, and it is there
	 * where KVM_GET_FPU returns nothing */
	if (s->xsave_size) {
		memcpy(s->fxsave, s->xsave, sizeof(s->fxsave));
		return 0;
	}
	return fxsave_image(p, s->fxsave);
}

static int state_get(struct kvm_vcpu_priv *p, struct cpu_state *s, bool lapic)
{
	return state_read(p, s, lapic, NULL);
}

/* without the LAPIC, and the registers as KVM_GET_REGS gave them */
static int state_get_regs(struct kvm_vcpu_priv *p, struct cpu_state *s, struct kvm_regs *r)
{
	return state_read(p, s, false, r);
}

static int kvm_get_state(struct vcpu *v, struct cpu_state *s)
{
	return state_get(priv(v), s, true);
}

/* the general-purpose registers, RIP and RFLAGS, as emu_set_state */
static int kvm_set_state(struct vcpu *v, const struct cpu_state *s)
{
	struct kvm_vcpu_priv *p = priv(v);
	struct kvm_regs r;

	io_complete(p);
	if (ioctl(p->fd, KVM_GET_REGS, &r) < 0)
		return -1;
	r.rax = s->r[R_RAX];
	r.rcx = s->r[R_RCX];
	r.rdx = s->r[R_RDX];
	r.rbx = s->r[R_RBX];
	r.rsp = s->r[R_RSP];
	r.rbp = s->r[R_RBP];
	r.rsi = s->r[R_RSI];
	r.rdi = s->r[R_RDI];
	r.r8 = s->r[R_R8];
	r.r9 = s->r[R_R9];
	r.r10 = s->r[R_R10];
	r.r11 = s->r[R_R11];
	r.r12 = s->r[R_R12];
	r.r13 = s->r[R_R13];
	r.r14 = s->r[R_R14];
	r.r15 = s->r[R_R15];
	r.rip = s->rip;
	r.rflags = s->rflags | 2;
	p->ready = false; /* IF may have changed: wait for KVM to say */
	if (!(s->flags & CPU_STATE_FULL))
		return ioctl(p->fd, KVM_SET_REGS, &r);
	if (p->kvm->split != (s->lapic_size != 0) || (s->lapic_size && s->lapic_size != sizeof(s->lapic))) {
		fprintf(stderr, "accord: kvm: cpu%d's state %s; this VM's LAPIC is %s\n", v->index,
			s->lapic_size ? "holds KVM's LAPIC (--irqchip split)"
				      : "has no LAPIC of KVM's (--irqchip user)",
			p->kvm->split ? "KVM's (--irqchip split)" : "accord's (--irqchip user)");
		return -1;
	}
	return state_set(p, s, &r, STATE_ALL);
}

static void seg_flat(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code64)
{
	*s = (struct kvm_segment){
		.base = 0,
		.limit = 0xffffffff,
		.selector = sel,
		.type = type,
		.present = 1,
		.dpl = 0,
		.db = !code64,
		.s = 1,
		.l = code64,
		.g = 1,
	};
}

/* the loader's entry state, as emu_set_boot_state sets it */
static int kvm_set_boot_state(struct vcpu *v, const struct boot_state *bs)
{
	struct kvm_vcpu_priv *p = priv(v);
	struct kvm_sregs sr;
	struct kvm_regs r = { 0 };

	io_complete(p);
	if (ioctl(p->fd, KVM_GET_SREGS, &sr) < 0)
		return -1;
	seg_flat(&sr.cs, 0x10, 0xb, bs->mode == 64);
	seg_flat(&sr.ds, 0x18, 0x3, false);
	sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
	sr.tr = (struct kvm_segment){ .limit = 0x67, .type = 0xb, .present = 1 };
	sr.gdt.base = bs->gdt_base;
	sr.gdt.limit = bs->gdt_limit;
	sr.idt.base = 0;
	sr.idt.limit = 0;
	sr.cr0 = 0x11; /* PE, ET */
	sr.cr4 = 0;
	sr.efer = 0;
	if (bs->mode == 64) {
		sr.cr0 |= 0x80000000u; /* PG */
		sr.cr3 = bs->cr3;
		sr.cr4 = 0x20;		   /* PAE */
		sr.efer = 0x500;	   /* LME, LMA */
	}
	memset(sr.interrupt_bitmap, 0, sizeof(sr.interrupt_bitmap));
	r.rflags = 2;
	r.rip = bs->rip;
	r.rsp = bs->rsp;
	r.rax = bs->rax;
	r.rbx = bs->rbx;
	r.rsi = bs->rsi;
	r.rdi = bs->rdi;
	p->halted = false;
	p->ready = false;
	if (ioctl(p->fd, KVM_SET_SREGS, &sr) < 0 || ioctl(p->fd, KVM_SET_REGS, &r) < 0) {
		fprintf(stderr, "accord: kvm: cannot set the boot state: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

/* INIT brings the vCPU back to its reset state; the SIPI starts it in real
 * mode at vector << 12 */
static int kvm_start_ap(struct vcpu *v, uint8_t vector)
{
	struct kvm_vcpu_priv *p = priv(v);
	struct kvm_regs r = p->reset_regs;
	struct kvm_sregs sr = p->reset_sregs;
	struct kvm_vcpu_events ev = p->reset_events;

	io_complete(p);
	sr.cs.selector = (uint16_t)vector << 8;
	sr.cs.base = (uint64_t)vector << 12;
	r.rip = 0;
	/* no pending NMI, exception, interrupt or interrupt shadow */
	ev.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW;
	p->halted = false;
	p->ready = false;
	p->tsc_deadline = 0;
	if (ioctl(p->fd, KVM_SET_SREGS, &sr) < 0 || ioctl(p->fd, KVM_SET_REGS, &r) < 0 ||
	    ioctl(p->fd, KVM_SET_FPU, &p->reset_fpu) < 0 || ioctl(p->fd, KVM_SET_VCPU_EVENTS, &ev) < 0 ||
	    ioctl(p->fd, KVM_SET_DEBUGREGS, &p->reset_dregs) < 0 ||
	    (p->have_xcrs && ioctl(p->fd, KVM_SET_XCRS, &p->reset_xcrs) < 0)) {
		fprintf(stderr, "accord: kvm: cannot reset cpu%d for its SIPI: %s\n", v->index, strerror(errno));
		return -1;
	}
	return 0;
}

/* Breakpoints are RIP values; the debug registers hold linear addresses,
 * the same where CS has base 0 (long mode, the loaders' flat segments). */
static int kvm_set_guest_debug(struct vcpu *v, const struct guest_debug *d)
{
	struct kvm_vcpu_priv *p = priv(v);

	p->dbg = *d;
	p->dbg_resume = true;
	if (d->nbreak > KVM_HW_BREAKS) {
		if (v->index == 0)
			fprintf(stderr,
				"accord: kvm: gdb: %d breakpoints, but the kvm engine has %d debug registers; "
				"only the first %d stop the guest\n",
				d->nbreak, KVM_HW_BREAKS, KVM_HW_BREAKS);
		p->dbg.nbreak = KVM_HW_BREAKS;
		return -1;
	}
	return 0;
}

static int kvm_translate(struct vcpu *v, uint64_t va, uint64_t *gpa)
{
	struct kvm_vcpu_priv *p = priv(v);
	struct kvm_sregs sr;
	struct kvm_translation tr = { .linear_address = va };

	if (ioctl(p->fd, KVM_GET_SREGS, &sr) < 0)
		return -1;
	if ((sr.efer & EFER_LMA) && (uint64_t)((int64_t)(va << 16) >> 16) != va)
		return -1;
	if (ioctl(p->fd, KVM_TRANSLATE, &tr) < 0 || !tr.valid)
		return -1;
	*gpa = tr.physical_address;
	return 0;
}

/* The write completes inside KVM: the vCPU goes on at once and the I/O
 * thread, polling fd, does the device's work. Without the capability the
 * write exits to mmio_exit as before, and the device signals fd there. */
static int kvm_ioeventfd(struct vm *vm, uint64_t gpa, int fd, bool assign)
{
	struct kvm_vm *k = vm->engine_priv;
	struct kvm_ioeventfd ev = {
		.addr = gpa,
		.len = 0,
		.fd = fd,
		.flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
	};

	if (!k || !k->ioeventfd)
		return -1;
	if (ioctl(k->vm_fd, KVM_IOEVENTFD, &ev) < 0) {
		if (k->verbose)
			fprintf(stderr, "accord: kvm: KVM_IOEVENTFD %s %#llx: %s\n", assign ? "at" : "off",
				(unsigned long long)gpa, strerror(errno));
		return -1;
	}
	if (k->verbose)
		fprintf(stderr, "accord: kvm: KVM_IOEVENTFD %s %#llx: %s\n", assign ? "at" : "off",
			(unsigned long long)gpa, assign ? "writes there signal an eventfd without an exit" : "removed");
	return 0;
}

/* ---- the split irqchip's messages ---- */

/* An IOAPIC or MSI message for KVM's LAPICs. KVM_SIGNAL_MSI is a VM
 * ioctl: any thread may send one, and a halted vCPU wakes inside KVM. */
static int kvm_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	struct kvm_vm *k = vm->engine_priv;
	struct kvm_msi m = { .address_lo = (uint32_t)addr, .address_hi = (uint32_t)(addr >> 32), .data = data };

	if (!k || !k->split)
		return -1;
	/* 0: the message reached no LAPIC (all disabled): as on hardware */
	if (ioctl(k->vm_fd, KVM_SIGNAL_MSI, &m) < 0) {
		if (k->verbose)
			fprintf(stderr, "accord: kvm: KVM_SIGNAL_MSI %#llx %#x: %s\n", (unsigned long long)addr, data,
				strerror(errno));
		return -1;
	}
	return 0;
}

/* KVM reports the EOI of a level-triggered vector (KVM_EXIT_IOAPIC_EOI)
 * only for the vectors of MSI routes on the GSIs reserved for the IOAPIC:
 * the routing table holds the IOAPIC's level-triggered pins as they are */
/* route gsi as the MSI (addr, data), or no longer; under route_lock */
static int route_set(struct kvm_vm *k, unsigned gsi, uint64_t addr, uint32_t data, bool valid)
{
	k->route_valid[gsi] = valid;
	k->route[gsi] = (struct kvm_irq_routing_entry){
		.gsi = gsi,
		.type = KVM_IRQ_ROUTING_MSI,
		.u.msi = { .address_lo = (uint32_t)addr, .address_hi = (uint32_t)(addr >> 32), .data = data },
	};
	k->routing->nr = 0;
	for (unsigned i = 0; i < KVM_GSIS; i++)
		if (k->route_valid[i])
			k->routing->entries[k->routing->nr++] = k->route[i];
	return ioctl(k->vm_fd, KVM_SET_GSI_ROUTING, k->routing);
}

static int kvm_gsi_route(struct vm *vm, unsigned gsi, uint64_t addr, uint32_t data, bool valid)
{
	struct kvm_vm *k = vm->engine_priv;
	int rc;

	if (!k || !k->split || gsi >= IOAPIC_PINS)
		return -1;
	pthread_mutex_lock(&k->route_lock);
	rc = route_set(k, gsi, addr, data, valid);
	pthread_mutex_unlock(&k->route_lock);
	if (rc < 0)
		fprintf(stderr, "accord: kvm: KVM_SET_GSI_ROUTING (IOAPIC pin %u): %s\n", gsi, strerror(errno));
	return rc < 0 ? -1 : 0;
}

/* A device's MSI through an eventfd: KVM injects at each write (from the
 * I/O thread) without an ioctl of accord's; the route is a GSI past the
 * IOAPIC's, held until the device releases it (the vector masked,
 * disabled or reprogrammed, the device reset or gone) */
static int kvm_irqfd(struct vm *vm, int fd, uint64_t addr, uint32_t data)
{
	struct kvm_vm *k = vm->engine_priv;
	int g, rc, err = 0;

	if (!k || !k->split || fd < 0)
		return -1;
	pthread_mutex_lock(&k->route_lock);
	for (g = IOAPIC_PINS; g < KVM_GSIS && k->route_valid[g]; g++)
		;
	if (g == KVM_GSIS) {
		pthread_mutex_unlock(&k->route_lock);
		return -1;
	}
	struct kvm_irqfd irqfd = { .fd = (uint32_t)fd, .gsi = (uint32_t)g };
	rc = route_set(k, (unsigned)g, addr, data, true);
	if (rc == 0 && (rc = ioctl(k->vm_fd, KVM_IRQFD, &irqfd)) < 0) {
		err = errno;
		route_set(k, (unsigned)g, 0, 0, false);
	} else if (rc < 0) {
		err = errno;
	}
	pthread_mutex_unlock(&k->route_lock);
	if (k->verbose)
		fprintf(stderr, "accord: kvm: KVM_IRQFD gsi %d (MSI %#llx %#x): %s\n", g, (unsigned long long)addr,
			data, rc ? strerror(err) : "eventfd writes interrupt the guest");
	return rc < 0 ? -1 : g;
}

/* KVM drops its reference to fd at the deassign; the route goes after it
 * so that no write in between reaches a GSI without one */
static void kvm_irqfd_release(struct vm *vm, int gsi, int fd)
{
	struct kvm_vm *k = vm->engine_priv;
	struct kvm_irqfd irqfd = { .fd = (uint32_t)fd, .gsi = (uint32_t)gsi, .flags = KVM_IRQFD_FLAG_DEASSIGN };

	if (!k || !k->split || gsi < IOAPIC_PINS || gsi >= KVM_GSIS)
		return;
	pthread_mutex_lock(&k->route_lock);
	if (k->route_valid[gsi]) {
		if (ioctl(k->vm_fd, KVM_IRQFD, &irqfd) < 0)
			fprintf(stderr, "accord: kvm: KVM_IRQFD deassign gsi %d: %s\n", gsi, strerror(errno));
		if (route_set(k, (unsigned)gsi, 0, 0, false) < 0)
			fprintf(stderr, "accord: kvm: KVM_SET_GSI_ROUTING (drop gsi %d): %s\n", gsi, strerror(errno));
		else if (k->verbose)
			fprintf(stderr, "accord: kvm: KVM_IRQFD gsi %d released\n", gsi);
	}
	pthread_mutex_unlock(&k->route_lock);
}

/* ---- instructions the host's KVM cannot emulate ---- */

/* accord's CPU reaches the machine as a KVM exit would */
static uint8_t *step_gpa_page(void *opaque, uint64_t gpa, bool write)
{
	struct kvm_vcpu_priv *p = opaque;
	(void)write;
	return vm_gpa(p->v->vm, gpa, 0x1000);
}

/* A run ahead leaves the devices to KVM's exits: the instruction does
 * not run (step_ahead's filter keeps port I/O and MSRs out already) */
static void step_device(struct kvm_vcpu_priv *p)
{
	if (p->step->ahead)
		cpu_abandon(&p->step->cpu);
}

static uint64_t step_mmio_read(void *opaque, uint64_t gpa, int size)
{
	uint64_t val = 0;
	step_device(opaque);
	mmio_access(opaque, gpa, &val, size, false);
	return val;
}

static void step_mmio_write(void *opaque, uint64_t gpa, uint64_t val, int size)
{
	step_device(opaque);
	mmio_access(opaque, gpa, &val, size, true);
}

static uint32_t step_pio_in(void *opaque, uint16_t port, int size)
{
	step_device(opaque);
	return vm_pio_in(((struct kvm_vcpu_priv *)opaque)->v, port, size);
}

static void step_pio_out(void *opaque, uint16_t port, uint32_t val, int size)
{
	step_device(opaque);
	vm_pio_out(((struct kvm_vcpu_priv *)opaque)->v, port, val, size);
}

/* the engine injects interrupts between KVM_RUNs, never inside a step */
static int step_intr_vector(void *opaque, bool ack)
{
	(void)opaque;
	(void)ack;
	return -1;
}

static bool step_msr_read(void *opaque, uint32_t msr, uint64_t *val)
{
	step_device(opaque);
	return machine_msr_read(opaque, msr, val);
}

static bool step_msr_write(void *opaque, uint32_t msr, uint64_t val)
{
	step_device(opaque);
	return machine_msr_write(opaque, msr, val);
}

/* the CPU adds tsc_offset (its IA32_TSC_ADJUST) to this */
static uint64_t step_tsc(void *opaque)
{
	struct kvm_vcpu_priv *p = opaque;
	return vm_ticks(p, vm_now_ns(p->v->vm));
}

static uint8_t no_code_map[CODE_MAP_SIZE];

static struct kvm_step *step_create(struct kvm_vcpu_priv *p)
{
	struct kvm_step *st = aligned_alloc(64, (sizeof(*st) + 63) & ~(size_t)63);
	if (!st)
		return NULL;
	memset(st, 0, sizeof(*st));
	/* cpu_init without the block cache: a step decodes its one
	 * instruction, and no code page is ever marked in the map */
	st->cpu.index = p->v->index;
	st->cpu.code_map = no_code_map;
	cpu_reset(&st->cpu);
	st->cpu.personality = p->kvm->personality;
	st->cpu.bus = (struct cpu_bus){
		.gpa_page = step_gpa_page,
		.mmio_read = step_mmio_read,
		.mmio_write = step_mmio_write,
		.pio_in = step_pio_in,
		.pio_out = step_pio_out,
		.intr_vector = step_intr_vector,
		.msr_read = step_msr_read,
		.msr_write = step_msr_write,
		.tsc = step_tsc,
		.opaque = p,
	};
	return st;
}

/* the parts of the state an instruction changed */
static unsigned state_changed(const struct cpu_state *a, const struct cpu_state *b)
{
	unsigned parts = 0;
#define DIFF(f) memcmp(&a->f, &b->f, sizeof(a->f))
	if (DIFF(seg) || DIFF(tr) || DIFF(ldtr) || DIFF(gdtr) || DIFF(idtr) || DIFF(cr0) || DIFF(cr2) ||
	    DIFF(cr3) || DIFF(cr4) || DIFF(cr8) || DIFF(efer))
		parts |= STATE_SREGS;
	if (DIFF(fxsave) || DIFF(xsave))
		parts |= STATE_FPU;
	if (DIFF(xcr0))
		parts |= STATE_XCR;
	if (DIFF(dr))
		parts |= STATE_DREGS;
	if (DIFF(star) || DIFF(lstar) || DIFF(cstar) || DIFF(sfmask) || DIFF(kernel_gs_base) || DIFF(tsc_aux) ||
	    DIFF(sysenter_cs) || DIFF(sysenter_esp) || DIFF(sysenter_eip) || DIFF(pat) || DIFF(misc_enable) ||
	    DIFF(tsc_adjust))
		parts |= STATE_MSRS;
	if (DIFF(tsc_offset))
		parts |= STATE_TSC;
	if (DIFF(intr_shadow) || DIFF(nmi_pending) || DIFF(nmi_blocked) || DIFF(halted))
		parts |= STATE_EVENTS;
#undef DIFF
	return parts;
}

/* the first time each kind of instruction is stepped (ACCORD_VERBOSE=1);
 * bytes, not a disassembly: capstone's set-up calls what the sandbox
 * forbids */
static void step_say(struct kvm_vcpu_priv *p, struct kvm_step *st, uint64_t rip, const struct insn *in, int fault)
{
	uint32_t kind = (uint32_t)in->map << 16 | (uint32_t)in->op << 8 | (in->has_modrm ? in->reg & 7 : 0);
	char hex[64];
	int len = 0;

	for (int i = 0; i < st->nseen; i++)
		if (st->seen[i] == kind)
			return;
	if (st->nseen == (int)(sizeof(st->seen) / sizeof(st->seen[0])))
		return;
	st->seen[st->nseen++] = kind;
	for (int i = 0; i < in->len && i < 15; i++)
		len += snprintf(hex + len, sizeof(hex) - len, "%s%02x", i ? " " : "", in->bytes[i]);
	fprintf(stderr, "accord: kvm: cpu%d: the host's KVM cannot emulate the instruction at rip %#llx (%s); "
			"accord's interpreter ran it%s\n",
		p->v->index, (unsigned long long)rip, hex, fault >= 0 ? ", and it faulted" : "");
}

/* Whether a #UD the interpreter raised is what the architecture defines
 * for the instruction, not an opcode the interpreter lacks: ud0, ud1 and
 * ud2, and the XSAVE family while CR4.OSXSAVE is clear (the interpreter
 * has no XSAVE; SDM vol. 1 13.3). */
static bool ud_defined(const struct cpu *c, const struct insn *in)
{
	int reg = in->reg & 7;

	if (in->map != 1)
		return false;
	if (in->op == 0x0b || in->op == 0xb9 || in->op == 0xff)
		return true;
	bool xsave = in->is_mem && ((in->op == 0xae && reg >= 4 && reg <= 6 && !in->rep && !in->opsize_prefix) ||
				    (in->op == 0xc7 && reg >= 3 && reg <= 5));
	return xsave && !(c->cr4 & CR4_OSXSAVE);
}

/* Whether an instruction may run ahead on accord's CPU (step_ahead):
 * what changes only the registers, the flags and RIP, reads memory at
 * most, and cannot change IF, CPL, the mode or anything KVM keeps apart
 * (MSRs, control and debug registers, descriptor tables, the TSC, CPUID's
 * model); and the SSE family (0F map's SIMD rows, 0F 38 and 0F 3A), whose
 * stores are what the step writes anyway. General-purpose stores (push
 * and call included) and locked instructions are left to KVM: KVM sees
 * those writes (a guest page table written by accord's CPU would escape
 * KVM's write tracking; no kernel writes its page tables with SSE). */
static bool ahead_allow(void *opaque, const struct insn *in)
{
	unsigned op = in->op, reg = in->reg & 7;
	bool reg_only = !in->is_mem;

	(void)opaque;
	if (in->lock)
		return false;
	if (in->map == 2)
		return op < 0xf0 || ((op == 0xf0 || op == 0xf1) && in->rep == 0xf2); /* crc32 reads */
	if (in->map == 3)
		return true;
	if (in->map == 1) {
		if ((op >= 0x10 && op <= 0x17) || (op >= 0x28 && op <= 0x2f) || (op >= 0x50 && op <= 0x77) ||
		    op == 0x7e || op == 0x7f || op == 0xc2 || (op >= 0xc4 && op <= 0xc6) || (op >= 0xd0 && op <= 0xfe))
			return true; /* SSE/MMX */
		if ((op >= 0x40 && op <= 0x4f) || (op >= 0x80 && op <= 0x8f) || op == 0x0d || (op >= 0x18 && op <= 0x1f))
			return true; /* cmovcc, jcc, hints and nops */
		if (op == 0xa3 || op == 0xaf || op == 0xb6 || op == 0xb7 || op == 0xb8 || op == 0xbe || op == 0xbf ||
		    (op >= 0xc8 && op <= 0xcf) || (op == 0xba && reg == 4))
			return true; /* bt, imul, movzx/movsx, popcnt, bswap */
		/* bsf/bsr; not tzcnt/lzcnt, which are bsf/bsr where CPUID has
		 * no BMI1/ABM: the guest may see the host's CPUID, the
		 * interpreter models accord's */
		if (op == 0xbc || op == 0xbd)
			return in->rep != 0xf3;
		if ((op >= 0x90 && op <= 0x9f) || op == 0xa4 || op == 0xa5 || op == 0xab || op == 0xac || op == 0xad ||
		    op == 0xb0 || op == 0xb1 || op == 0xb3 || op == 0xbb || op == 0xc0 || op == 0xc1 ||
		    (op == 0xba && reg >= 5))
			return reg_only; /* setcc, shld/shrd, bts/btr/btc, cmpxchg, xadd */
		return false;
	}
	if (op < 0x40 && (op & 7) < 6) {
		/* the ALU rows: r/m op= r only to a register; cmp never writes */
		if ((op & 7) >= 2 || (op & 0x38) == 0x38)
			return true;
		return reg_only;
	}
	switch (op) {
	case 0x63: case 0x69: case 0x6b: case 0x84: case 0x85: case 0x8a: case 0x8b: case 0x8d:
	case 0x98: case 0x99: case 0xa8: case 0xa9: case 0xc2: case 0xc3: case 0xe0: case 0xe1: case 0xe2:
	case 0xe3: case 0xe9: case 0xeb: case 0xf5: case 0xf8: case 0xf9: case 0xfc: case 0xfd:
		return true; /* movsxd, imul, test, mov and lea loads, cbw/cwd, ret, loops, jmp, flags */
	case 0x70 ... 0x7f: case 0xb0 ... 0xbf:
		return true; /* jcc, mov imm */
	case 0x90 ... 0x97:
		return in->rep != 0xf3; /* xchg, nop; not pause (a spin loop: back to KVM) */
	case 0x80: case 0x81: case 0x83:
		return reg == 7 || reg_only;
	case 0x86: case 0x87: case 0x88: case 0x89: case 0x8c: case 0xc0: case 0xc1: case 0xc6: case 0xc7:
	case 0xd0: case 0xd1: case 0xd2: case 0xd3:
		return reg_only;
	case 0xf6: case 0xf7:
		return reg != 2 && reg != 3 ? true : reg_only; /* test, mul, div read; not, neg write */
	case 0xfe:
		return reg <= 1 && reg_only;
	case 0xff:
		return reg == 4 || (reg <= 1 && reg_only); /* jmp r/m; inc/dec */
	}
	return false;
}

/* After the step, accord's CPU runs on with the state it holds while the
 * instructions are ahead_allow's and RAM-only (the bus abandons the
 * first device access), for AHEAD_MAX instructions or AHEAD_NS at most,
 * and ends early for what the run loop must see: an interrupt the
 * guest can take from accord's LAPIC, the VM's exit, pause or INIT
 * requests, the next timer deadline. Not while a debugger steps or has
 * breakpoints, nor with the guest's own breakpoints enabled in DR7
 * (accord's CPU does not check them). How many ran. */
static uint64_t step_ahead(struct kvm_vcpu_priv *p, struct kvm_step *st)
{
	struct cpu *c = &st->cpu;
	struct vm *vm = p->v->vm;
	struct insn in;
	uint64_t n, until;

	if (p->dbg.single_step || p->dbg.nbreak || p->step_over || (c->dr[7] & 0xff))
		return 0;
	until = mono_ns() + AHEAD_NS;
	if (p->timer_at_ns && p->timer_at_ns < until)
		until = p->timer_at_ns;
	st->ahead = true;
	for (n = 0; n < AHEAD_MAX; n++) {
		if (n % AHEAD_POLL == 0 &&
		    (vm->exit_reason || vm->pause_request || p->v->init_pending || mono_ns() >= until ||
		     (!p->kvm->split && (c->rflags & F_IF) && lapic_get_interrupt(p->v->lapic, false) >= 0)))
			break;
		if (cpu_step_if(c, &in, ahead_allow, p) != STOP_NONE)
			break;
	}
	st->ahead = false;
	return n;
}

/* KVM stopped at an instruction its emulator cannot run: run that one
 * instruction on accord's CPU with the vCPU's whole state, run on
 * (step_ahead), and hand the state back. Its faults, and the exceptions
 * it raises (int3's #BP), go through the guest's IDT as a CPU delivers
 * them. STEP_CANNOT (nothing changed) when the interpreter cannot run it
 * either: it raised #UD for an opcode that is not one of the
 * undefined-opcode instructions, or the vCPU was in the middle of an
 * event delivery. */
/* Without KVM_CAP_EXIT_ON_EMULATION_FAILURE, KVM (Linux 5.x-6.x,
 * handle_emulation_failure) queues #UD for the instruction and then exits
 * to user space at CPL 0: that #UD is KVM's, not the instruction's, and
 * goes before the instruction runs on accord's CPU. */
static int drop_queued_ud(struct kvm_vcpu_priv *p)
{
	struct kvm_vcpu_events ev;

	if (ioctl(p->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return -1;
	if (!(ev.exception.pending || ev.exception.injected) || ev.exception.nr != EXC_UD)
		return 0;
	ev.exception.pending = ev.exception.injected = 0;
	ev.exception.has_error_code = 0;
	ev.exception_has_payload = 0;
	return ioctl(p->fd, KVM_SET_VCPU_EVENTS, &ev);
}

/* STEP_CANNOT, with the reason under ACCORD_VERBOSE=1 */
static int step_cannot(struct kvm_vcpu_priv *p, const char *why)
{
	if (p->kvm->verbose)
		fprintf(stderr, "accord: kvm: cpu%d: cannot step the instruction KVM could not emulate: %s\n",
			p->v->index, why);
	return STEP_CANNOT;
}

static int insn_step(struct kvm_vcpu_priv *p)
{
	struct kvm_step *st = p->step;
	struct kvm_regs r;
	struct insn in;
	int fault;

	if (!st)
		return step_cannot(p, "no interpreter for this vCPU");
	if (!p->kvm->emu_fail_exits && drop_queued_ud(p) < 0)
		return step_cannot(p, "KVM's #UD for the instruction cannot be taken back");
	if (state_get_regs(p, &st->before, &r) < 0)
		return step_cannot(p, "the vCPU's state cannot be read");
	st->before.flags = CPU_STATE_FULL;
	if (emu_state_load(&st->cpu, &st->before) < 0)
		return step_cannot(p, st->before.lapic_size ? "the state holds KVM's LAPIC"
							    : "the vCPU is in the middle of an event delivery");
	struct cpu *c = &st->cpu;
	st->lapic_write = false;
	enum cpu_stop stop = cpu_step(c, &in, &fault);
	if (st->lapic_write)
		return step_cannot(p, "the instruction writes KVM's LAPIC");
	if (stop == STOP_SHUTDOWN)
		return STEP_SHUTDOWN;
	if (fault == EXC_UD && !ud_defined(c, &in))
		return step_cannot(p, "accord's interpreter has no such instruction either (#UD)");
	uint64_t rip = c->insn_rip, ahead = stop == STOP_NONE && fault < 0 ? step_ahead(p, st) : 0;
	emu_state_save(c, &st->after);
	st->after.flags = CPU_STATE_FULL;
	/* what emu's CPU does not hold stays as KVM had it */
	st->after.tsc_deadline = st->before.tsc_deadline;
	st->after.tsc_adjust = st->before.tsc_adjust;
	st->after.xsave_size = st->before.xsave_size;
	memcpy(st->after.xsave, st->before.xsave, sizeof(st->after.xsave));
	if (st->after.xsave_size && memcmp(st->after.fxsave, st->before.fxsave, 416)) {
		memcpy(st->after.xsave, st->after.fxsave, 416);
		/* XSTATE_BV (SDM vol. 1 13.4.2): x87 and SSE as the legacy area
		 * holds them; with the bits clear (the registers were in their
		 * init state when KVM saved them) XRSTOR would load zeros */
		st->after.xsave[512] |= 3;
	}
	if (stop == STOP_HLT)
		st->after.halted = 1;
	r.rax = st->after.r[R_RAX];
	r.rcx = st->after.r[R_RCX];
	r.rdx = st->after.r[R_RDX];
	r.rbx = st->after.r[R_RBX];
	r.rsp = st->after.r[R_RSP];
	r.rbp = st->after.r[R_RBP];
	r.rsi = st->after.r[R_RSI];
	r.rdi = st->after.r[R_RDI];
	r.r8 = st->after.r[R_R8];
	r.r9 = st->after.r[R_R9];
	r.r10 = st->after.r[R_R10];
	r.r11 = st->after.r[R_R11];
	r.r12 = st->after.r[R_R12];
	r.r13 = st->after.r[R_R13];
	r.r14 = st->after.r[R_R14];
	r.r15 = st->after.r[R_R15];
	r.rip = st->after.rip;
	r.rflags = st->after.rflags | 2;
	if (state_set(p, &st->after, &r, state_changed(&st->before, &st->after)) < 0) {
		fprintf(stderr, "accord: kvm: cannot write back the state of a stepped instruction: %s\n",
			strerror(errno));
		return STEP_CANNOT;
	}
	p->steps++;
	p->ahead += ahead;
	if (p->kvm->verbose)
		step_say(p, st, rip, &in, fault);
	return STEP_DONE;
}

const struct engine_ops engine_kvm = {
	.name = "kvm",
	.vm_init = kvm_vm_init,
	.vcpu_init = kvm_vcpu_init,
	.vcpu_destroy = kvm_vcpu_destroy,
	.vcpu_run = kvm_vcpu_run,
	.vcpu_kick = kvm_vcpu_kick,
	.get_state = kvm_get_state,
	.set_state = kvm_set_state,
	.set_boot_state = kvm_set_boot_state,
	.start_ap = kvm_start_ap,
	.set_guest_debug = kvm_set_guest_debug,
	.translate = kvm_translate,
	.guest_tsc = kvm_guest_tsc,
	.ioeventfd = kvm_ioeventfd,
	.msi = kvm_msi,
	.gsi_route = kvm_gsi_route,
	.irqfd = kvm_irqfd,
	.irqfd_release = kvm_irqfd_release,
};

/* ---- --accel auto's probe ---- */

struct probe {
	int sys, vm, cpu;
	uint8_t *mem;
	struct kvm_run *run;
	int run_size;
};

static void probe_close(struct probe *pr)
{
	if (pr->run && pr->run != MAP_FAILED)
		munmap(pr->run, pr->run_size);
	if (pr->mem && pr->mem != MAP_FAILED)
		munmap(pr->mem, 0x10000);
	if (pr->cpu >= 0)
		close(pr->cpu);
	if (pr->vm >= 0)
		close(pr->vm);
	if (pr->sys >= 0)
		close(pr->sys);
}

/* one run of the loop with n iterations; ns, or -1 with why */
static int64_t probe_run(struct probe *pr, uint32_t n, char *why, size_t wn)
{
	/* mov ecx, n; 1: dec ecx; jnz 1b; hlt (32-bit code) */
	uint8_t code[] = { 0xb9, 0, 0, 0, 0, 0x49, 0x75, 0xfd, 0xf4 };
	memcpy(code + 1, &n, 4);
	memcpy(pr->mem + 0x1000, code, sizeof(code));

	struct kvm_regs r = { .rip = 0x1000, .rflags = 2, .rsp = 0x8000 };
	if (ioctl(pr->cpu, KVM_SET_REGS, &r) < 0) {
		snprintf(why, wn, "probe: KVM_SET_REGS: %s", strerror(errno));
		return -1;
	}
	uint64_t t0 = mono_ns();
	int rc = ioctl(pr->cpu, KVM_RUN, 0);
	uint64_t t1 = mono_ns();
	if (rc < 0 && errno == EINTR)
		return probe_run(pr, n, why, wn); /* a signal of the caller's: again */
	if (rc < 0) {
		snprintf(why, wn, "probe: KVM_RUN: %s", strerror(errno));
		return -1;
	}
	if (pr->run->exit_reason == KVM_EXIT_HLT)
		return (int64_t)(t1 - t0);
	if (pr->run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
		snprintf(why, wn, "the probe guest stopped with a KVM internal error (suberror %u)",
			 pr->run->internal.suberror);
	else
		snprintf(why, wn, "the probe guest stopped with KVM exit reason %u", pr->run->exit_reason);
	return -1;
}

/* a throwaway VM with one vCPU in flat 32-bit protected mode, ring 0,
 * paging off, and 64 KiB of RAM; -1 with why */
static int probe_open(struct probe *pr, char *why, size_t n)
{
	*pr = (struct probe){ .sys = -1, .vm = -1, .cpu = -1 };
	pr->sys = kvm_open_dev(why, n);
	if (pr->sys < 0)
		return -1;
	const char *path = kvm_dev_path();
	pr->run_size = ioctl(pr->sys, KVM_GET_VCPU_MMAP_SIZE, 0);
	pr->vm = ioctl(pr->sys, KVM_CREATE_VM, 0);
	if (pr->run_size <= 0 || pr->vm < 0) {
		snprintf(why, n, "%s: cannot create a VM: %s", path, strerror(errno));
		probe_close(pr);
		return -1;
	}
	pr->mem = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct kvm_userspace_memory_region mr = {
		.slot = 0, .memory_size = 0x10000, .userspace_addr = (uintptr_t)pr->mem
	};
	if (pr->mem == MAP_FAILED || ioctl(pr->vm, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_ADDR) < 0 ||
	    ioctl(pr->vm, KVM_SET_USER_MEMORY_REGION, &mr) < 0 ||
	    (pr->cpu = ioctl(pr->vm, KVM_CREATE_VCPU, 0UL)) < 0) {
		snprintf(why, n, "%s: cannot set up a VM: %s", path, strerror(errno));
		probe_close(pr);
		return -1;
	}
	pr->run = mmap(NULL, pr->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, pr->cpu, 0);
	struct kvm_sregs sr;
	if (pr->run == MAP_FAILED || ioctl(pr->cpu, KVM_GET_SREGS, &sr) < 0) {
		snprintf(why, n, "%s: cannot set up a vCPU: %s", path, strerror(errno));
		probe_close(pr);
		return -1;
	}
	seg_flat(&sr.cs, 0x8, 0xb, false);
	seg_flat(&sr.ds, 0x10, 0x3, false);
	sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
	sr.cr0 = 0x11;
	sr.cr4 = 0;
	sr.efer = 0;
	if (ioctl(pr->cpu, KVM_SET_SREGS, &sr) < 0) {
		snprintf(why, n, "%s: cannot set up a vCPU: %s", path, strerror(errno));
		probe_close(pr);
		return -1;
	}
	return 0;
}

/* Whether KVM exits for request_interrupt_window where an STI shadow ends,
 * as VT-x's interrupt-window exiting and AMD-V's virtual interrupt make it:
 * `sti; nop; cli; hlt` entered with IF=0 must stop before the cli.
 * 1 if it does, 0 if not (stepping to the window is right anywhere, only
 * slower), -1 with why when the probe VM cannot run. */
static int window_probe(char *why, size_t n)
{
	static const uint8_t code[] = { 0xfb, 0x90, 0xfa, 0xf4 };
	struct probe pr;
	struct kvm_regs r = { .rip = 0x1000, .rflags = 2, .rsp = 0x8000 };
	int rc;

	if (probe_open(&pr, why, n) < 0)
		return -1;
	memcpy(pr.mem + 0x1000, code, sizeof(code));
	if (ioctl(pr.cpu, KVM_SET_REGS, &r) < 0) {
		snprintf(why, n, "window probe: KVM_SET_REGS: %s", strerror(errno));
		probe_close(&pr);
		return -1;
	}
	pr.run->request_interrupt_window = 1;
	do
		rc = ioctl(pr.cpu, KVM_RUN, 0);
	while (rc < 0 && errno == EINTR);
	if (rc < 0) {
		snprintf(why, n, "window probe: KVM_RUN: %s", strerror(errno));
		probe_close(&pr);
		return -1;
	}
	rc = pr.run->exit_reason == KVM_EXIT_IRQ_WINDOW_OPEN;
	probe_close(&pr);
	return rc;
}

int kvm_probe(char *why, size_t n)
{
	struct probe pr;
	if (probe_open(&pr, why, n) < 0)
		return -1;
	const char *path = kvm_dev_path();

	/* a first short run faults the page in and loads the vCPU */
	if (probe_run(&pr, 1, why, n) < 0) {
		probe_close(&pr);
		return 0;
	}
	int64_t best = -1;
	for (int i = 0; i < PROBE_RUNS; i++) {
		int64_t t = probe_run(&pr, PROBE_ITERS, why, n);
		if (t < 0) {
			probe_close(&pr);
			return 0;
		}
		if (best < 0 || t < best)
			best = t;
		if ((double)best / PROBE_ITERS <= PROBE_FAST_NS_PER_ITER)
			break;
	}
	probe_close(&pr);
	double per_insn = (double)best / PROBE_ITERS / 2; /* dec, jnz */
	if ((double)best / PROBE_ITERS > PROBE_FAST_NS_PER_ITER) {
		snprintf(why, n, "%s runs guest kernel code at %.0f ns per instruction (an emulated KVM)", path,
			 per_insn);
		return 0;
	}
	snprintf(why, n, "%s runs guest kernel code at %.2f ns per instruction", path, per_insn);
	return 1;
}
