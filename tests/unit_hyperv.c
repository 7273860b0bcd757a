/* Unit tests for the paravirtual personalities: the CPUID leaves, the
 * Hyper-V MSRs (src/dev/hyperv/tlfs.c), hypercall decoding with hostile
 * inputs, the SynIC message slot protocol and synthetic timers
 * (src/dev/hyperv/synic.c), and kvmclock (src/dev/kvmclock.c). A machine
 * with no engine behind it; a stub engine holds the registers a hypercall
 * reads. Expectations come from the TLFS and KVM's msr.rst. Timers are only
 * asked "did it fire" within a generous bound. Prints TAP. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cpu/cpu.h"
#include "dev/dev.h"
#include "dev/hyperv/hyperv.h"
#include "dev/kvmclock.h"
#include "engine/engine.h"
#include "vm/vm.h"
#include "tap.h"

#define RAM (16ull << 20)
#define NCPUS 2
#define WAIT_MS 2000

/* ---- a stub engine: registers for the hypercall path ---- */

static struct cpu_state regs[NCPUS];

static int stub_vcpu_init(struct vcpu *v)
{
	return 0;
}

static int stub_get_state(struct vcpu *v, struct cpu_state *s)
{
	*s = regs[v->index];
	return 0;
}

static int stub_set_state(struct vcpu *v, const struct cpu_state *s)
{
	regs[v->index] = *s;
	return 0;
}

static const struct engine_ops stub_engine = {
	.name = "stub",
	.vcpu_init = stub_vcpu_init,
	.get_state = stub_get_state,
	.set_state = stub_set_state,
};

#define HVMSR_GUEST_OS_ID 0x40000000
#define HVMSR_HYPERCALL 0x40000001
#define HVMSR_VP_INDEX 0x40000002
#define HVMSR_RESET 0x40000003
#define HVMSR_TIME_REF_COUNT 0x40000020
#define HVMSR_REFERENCE_TSC 0x40000021
#define HVMSR_TSC_FREQUENCY 0x40000022
#define HVMSR_APIC_FREQUENCY 0x40000023
#define HVMSR_SCONTROL 0x40000080
#define HVMSR_SVERSION 0x40000081
#define HVMSR_SIEFP 0x40000082
#define HVMSR_SIMP 0x40000083
#define HVMSR_EOM 0x40000084
#define HVMSR_SINT0 0x40000090
#define HVMSR_STIMER0_CONFIG 0x400000B0
#define HVMSR_STIMER0_COUNT 0x400000B1
#define HVMSR_STIMER1_CONFIG 0x400000B2
#define HVMSR_STIMER1_COUNT 0x400000B3
#define HVMSR_CRASH_P0 0x40000100
#define HVMSR_CRASH_CTL 0x40000105

#define HYPERCALL_PAGE 0x10000ull
#define SIMP_PAGE 0x11000ull
#define SIEFP_PAGE 0x12000ull
#define TSC_PAGE 0x13000ull
#define INPUT_PAGE 0x14000ull
#define PVCLOCK_GPA 0x15040ull
#define WALLCLOCK_GPA 0x15100ull

static uint64_t rd(struct vcpu *v, uint32_t msr)
{
	uint64_t val = 0xdeadbeef;

	if (!vm_msr_read(v, msr, &val))
		return 0xdeadbeefdeadbeefull;
	return val;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static struct vm *make_vm(int personality)
{
	struct vm *vm = calloc(1, sizeof(*vm));

	if (!vm || vm_create(vm, RAM, NCPUS, &stub_engine, personality, VM_IRQCHIP_USER, 0) < 0) {
		fprintf(stderr, "vm_create failed\n");
		exit(1);
	}
	/* software-enable the LAPICs, as a guest does, so interrupts land */
	for (int i = 0; i < NCPUS; i++)
		lapic_mmio_write(vm->vcpu[i]->lapic, 0xF0, 0x1FF, 4);
	return vm;
}

static void str3(const struct cpuid_result *r, char out[13])
{
	memcpy(out, &r->ebx, 4);
	memcpy(out + 4, &r->ecx, 4);
	memcpy(out + 8, &r->edx, 4);
	out[12] = 0;
}

/* ---- CPUID ---- */

static void test_cpuid(void)
{
	struct cpuid_result r;
	char s[13];

	cpuid_query(PERSONALITY_HYPERV, 0, 0x40000000, 0, &r);
	str3(&r, s);
	ok(!strcmp(s, "Microsoft Hv") && r.eax >= 0x40000005 && r.eax <= 0x400000FF,
	   "hyperv: 0x40000000 is \"Microsoft Hv\", highest leaf %#x in 0x40000005..0x400000FF", r.eax);
	cpuid_query(PERSONALITY_HYPERV, 0, 0x40000001, 0, &r);
	ok(r.eax == 0x31237648, "hyperv: 0x40000001 EAX is \"Hv#1\"");
	cpuid_query(PERSONALITY_HYPERV, 0, 0x40000003, 0, &r);
	/* exactly what is implemented: ref count, SynIC, stimers, hypercall,
	 * VP index, reset, TSC page, frequencies; post/signal; freq, crash,
	 * direct stimers */
	ok(r.eax == 0xAEE && r.ebx == 0x30 && r.edx == 0x80500,
	   "hyperv: 0x40000003 features EAX %#x EBX %#x EDX %#x", r.eax, r.ebx, r.edx);
	ok(!(r.eax & 1) && !(r.eax & (1u << 4)) && !(r.ebx & (1u << 20)),
	   "hyperv: no VP runtime, APIC access or extended hypercalls advertised");
	cpuid_query(PERSONALITY_HYPERV, 0, 0x40000004, 0, &r);
	ok((r.eax & (1u << 9)) && !(r.eax & (1u << 3)), "hyperv: hints say auto-EOI deprecated, no APIC MSRs");
	cpuid_query(PERSONALITY_HYPERV, 0, 0x40000005, 0, &r);
	ok(r.eax >= NCPUS, "hyperv: 0x40000005 allows %u virtual processors", r.eax);
	cpuid_query(PERSONALITY_KVM, 0, 0x40000000, 0, &r);
	str3(&r, s);
	ok(!memcmp(s, "KVMKVMKVM\0\0\0", 12) && r.eax == 0x40000001, "kvm: 0x40000000 is \"KVMKVMKVM\"");
	cpuid_query(PERSONALITY_KVM, 0, 0x40000001, 0, &r);
	ok(r.eax == (1u << 3 | 1u << 24), "kvm: 0x40000001 CLOCKSOURCE2 and CLOCKSOURCE_STABLE_BIT (%#x)", r.eax);
	cpuid_query(PERSONALITY_KVM, 0, 1, 0, &r);
	ok(r.ecx & (1u << 31), "leaf 1 ECX says a hypervisor is present");
}

/* ---- partition MSRs ---- */

static void test_partition_msrs(struct vm *vm)
{
	struct vcpu *v0 = vm->vcpu[0], *v1 = vm->vcpu[1];
	uint8_t code[4];

	ok(rd(v0, HVMSR_GUEST_OS_ID) == 0, "GUEST_OS_ID starts at 0");
	ok(vm_msr_write(v0, HVMSR_HYPERCALL, HYPERCALL_PAGE | 1) && !(rd(v0, HVMSR_HYPERCALL) & 1),
	   "HYPERCALL: enable is refused while GUEST_OS_ID is 0");
	ok(vm_msr_write(v0, HVMSR_GUEST_OS_ID, 0x8100000000060100ull) &&
		   rd(v1, HVMSR_GUEST_OS_ID) == 0x8100000000060100ull,
	   "GUEST_OS_ID reads back, partition-wide");
	ok(!vm_msr_write(v0, HVMSR_HYPERCALL, (RAM + 0x100000) | 1), "HYPERCALL: a page outside RAM is #GP");
	ok(vm_msr_write(v0, HVMSR_HYPERCALL, HYPERCALL_PAGE | 1) && rd(v0, HVMSR_HYPERCALL) == (HYPERCALL_PAGE | 1),
	   "HYPERCALL: enable and GPA read back");
	vm_read_phys(vm, HYPERCALL_PAGE, code, sizeof(code));
	ok(code[0] == 0xe7 && code[1] == HV_HYPERCALL_PORT && code[2] == 0xc3 && code[3] == 0xcc,
	   "the hypercall page holds out %#x, eax; ret", HV_HYPERCALL_PORT);
	ok(rd(v0, HVMSR_VP_INDEX) == 0 && rd(v1, HVMSR_VP_INDEX) == 1, "VP_INDEX is the vCPU's index");
	ok(!vm_msr_write(v0, HVMSR_VP_INDEX, 5), "VP_INDEX is read-only");
	ok(!vm_msr_write(v0, HVMSR_TIME_REF_COUNT, 5), "TIME_REF_COUNT is read-only");
	ok(rd(v0, HVMSR_APIC_FREQUENCY) == VM_CRYSTAL_HZ, "APIC_FREQUENCY is the LAPIC timer clock");
	ok(rd(v0, HVMSR_TSC_FREQUENCY) == VM_TSC_HZ, "TSC_FREQUENCY is the guest TSC rate");
	ok(rd(v0, HVMSR_CRASH_CTL) == 1ull << 63, "CRASH_CTL offers CrashNotify only");
	ok(!vm_msr_read(v0, 0x40000050, &(uint64_t){ 0 }) && !vm_msr_read(v0, 0x40000010, &(uint64_t){ 0 }),
	   "MSRs not implemented (VP_RUNTIME, 0x40000050) are #GP");

	uint64_t t0 = vm_now_ns(vm), r0 = rd(v0, HVMSR_TIME_REF_COUNT), prev = r0;
	bool mono = true;
	for (int i = 0; i < 1000; i++) {
		uint64_t r = rd(v0, HVMSR_TIME_REF_COUNT);
		mono &= r >= prev;
		prev = r;
	}
	uint64_t t1 = vm_now_ns(vm);
	ok(mono && r0 >= t0 / 100 && prev <= t1 / 100 + 1, "TIME_REF_COUNT is monotonic, 100 ns units of VM time");

	ok(vm_msr_write(v0, HVMSR_GUEST_OS_ID, 0) && !(rd(v0, HVMSR_HYPERCALL) & 1),
	   "clearing GUEST_OS_ID disables the hypercall page");
	vm_msr_write(v0, HVMSR_GUEST_OS_ID, 0x8100000000060100ull);
	vm_msr_write(v0, HVMSR_HYPERCALL, HYPERCALL_PAGE | 1);

	ok(vm_msr_write(v1, 0x40000073, 0x20001) && rd(v1, 0x40000073) == 0x20001 && rd(v0, 0x40000073) == 0,
	   "VP_ASSIST_PAGE is held per VP");

	/* the locked bit freezes the register until the VM resets */
	struct vm *lvm = make_vm(PERSONALITY_HYPERV);
	struct vcpu *lv = lvm->vcpu[0];
	vm_msr_write(lv, HVMSR_GUEST_OS_ID, 1);
	vm_msr_write(lv, HVMSR_HYPERCALL, HYPERCALL_PAGE | 3);
	vm_msr_write(lv, HVMSR_HYPERCALL, 0);
	ok(rd(lv, HVMSR_HYPERCALL) == (HYPERCALL_PAGE | 3), "HYPERCALL: once locked, writes do not change it");
	vm_destroy(lvm);
	free(lvm);
}

static void test_tsc_page(struct vm *vm)
{
	struct vcpu *v = vm->vcpu[0];
	struct {
		uint32_t seq, res;
		uint64_t scale;
		int64_t offset;
	} p;

	ok(vm_msr_write(v, HVMSR_REFERENCE_TSC, (RAM + 0x200000) | 1) &&
		   rd(v, HVMSR_REFERENCE_TSC) == ((RAM + 0x200000) | 1),
	   "REFERENCE_TSC outside RAM: the MSR holds it, nothing is written");
	vm_msr_write(v, HVMSR_REFERENCE_TSC, TSC_PAGE | 1);
	vm_read_phys(vm, TSC_PAGE, &p, sizeof(p));
	ok(p.seq != 0 && p.seq != 0xFFFFFFFF, "TSC page: a valid sequence (%u)", p.seq);
	ok(p.scale == (uint64_t)(((unsigned __int128)1 << 64) / 200), "TSC page: scale is 2^64/200 for a 2 GHz TSC");
	bool agree = true;
	for (int i = 0; i < 5; i++) {
		uint64_t before = rd(v, HVMSR_TIME_REF_COUNT);
		uint64_t tsc = vm_tsc(vm);
		uint64_t after = rd(v, HVMSR_TIME_REF_COUNT);
		uint64_t ref = (uint64_t)(((unsigned __int128)tsc * p.scale) >> 64) + (uint64_t)p.offset;
		agree &= ref + 1 >= before && ref <= after + 1;
		sleep_ms(3);
	}
	ok(agree, "TSC page: ((tsc * scale) >> 64) + offset lies between TIME_REF_COUNT reads");
	uint32_t seq1 = p.seq;
	vm_msr_write(v, HVMSR_REFERENCE_TSC, TSC_PAGE | 1);
	vm_read_phys(vm, TSC_PAGE, &p, sizeof(p));
	ok(p.seq != seq1 && p.seq != 0, "TSC page: a rewrite moves the sequence on");
}

/* ---- hypercalls ---- */

static struct {
	int posts, signals, eoms;
	unsigned vp;
	uint32_t conn, type, len;
	uint16_t flag;
	uint8_t payload[HV_MESSAGE_PAYLOAD_MAX];
} seen;

static uint16_t fake_post(void *opaque, unsigned vp, uint32_t conn, uint32_t type, const void *payload,
			  uint32_t len)
{
	seen.posts++;
	seen.vp = vp;
	seen.conn = conn;
	seen.type = type;
	seen.len = len;
	memcpy(seen.payload, payload, len);
	return conn == 4 ? HV_STATUS_SUCCESS : HV_STATUS_INVALID_CONNECTION_ID;
}

static uint16_t fake_signal(void *opaque, unsigned vp, uint32_t conn, uint16_t flag)
{
	seen.signals++;
	seen.vp = vp;
	seen.conn = conn;
	seen.flag = flag;
	return HV_STATUS_SUCCESS;
}

static void fake_eom(void *opaque, unsigned vp)
{
	seen.eoms++;
	seen.vp = vp;
}

static const struct hv_vmbus_ops fake_vmbus = {
	.post_message = fake_post,
	.signal_event = fake_signal,
	.eom = fake_eom,
};

static void put_post_input(struct vm *vm, uint64_t gpa, uint32_t conn, uint32_t type, uint32_t size)
{
	uint32_t hdr[4] = { conn, 0, type, size };
	uint8_t payload[HV_MESSAGE_PAYLOAD_MAX];

	for (int i = 0; i < (int)sizeof(payload); i++)
		payload[i] = (uint8_t)i;
	vm_write_phys(vm, gpa, hdr, sizeof(hdr));
	vm_write_phys(vm, gpa + 16, payload, sizeof(payload));
}

static void test_hypercalls_novmbus(struct vm *vm)
{
	struct vcpu *v = vm->vcpu[0];

	put_post_input(vm, INPUT_PAGE, 4, 1, 16);
	ok(hv_hypercall_exec(v, 0x0099, INPUT_PAGE, 0) == HV_STATUS_INVALID_HYPERCALL_CODE,
	   "unknown hypercall code: HV_STATUS_INVALID_HYPERCALL_CODE");
	ok(hv_hypercall_exec(v, 0x005c, INPUT_PAGE, 0) == HV_STATUS_INVALID_CONNECTION_ID,
	   "HvPostMessage with no VMBus: HV_STATUS_INVALID_CONNECTION_ID");
	ok(hv_hypercall_exec(v, 0x1005d, 4, 0) == HV_STATUS_INVALID_CONNECTION_ID,
	   "HvSignalEvent (fast) with no VMBus: HV_STATUS_INVALID_CONNECTION_ID");
}

static void test_hypercalls(struct vm *vm)
{
	struct vcpu *v0 = vm->vcpu[0], *v1 = vm->vcpu[1];
	uint64_t r;

	hv_set_vmbus(vm, &fake_vmbus);
	put_post_input(vm, INPUT_PAGE, 4, 7, 24);
	r = hv_hypercall_exec(v1, 0x005c, INPUT_PAGE, 0);
	ok(r == HV_STATUS_SUCCESS && seen.posts == 1 && seen.vp == 1 && seen.conn == 4 && seen.type == 7 &&
		   seen.len == 24 && seen.payload[23] == 23,
	   "HvPostMessage reaches VMBus with vp, connection, type and payload");
	put_post_input(vm, INPUT_PAGE, 9, 7, 24);
	ok(hv_hypercall_exec(v0, 0x005c, INPUT_PAGE, 0) == HV_STATUS_INVALID_CONNECTION_ID,
	   "HvPostMessage: VMBus's status comes back");
	put_post_input(vm, INPUT_PAGE, 4, 7, 241);
	ok(hv_hypercall_exec(v0, 0x005c, INPUT_PAGE, 0) == HV_STATUS_INVALID_PARAMETER,
	   "HvPostMessage: a payload over 240 bytes is HV_STATUS_INVALID_PARAMETER");
	put_post_input(vm, INPUT_PAGE, 4, 0x80000010, 8);
	ok(hv_hypercall_exec(v0, 0x005c, INPUT_PAGE, 0) == HV_STATUS_INVALID_PARAMETER,
	   "HvPostMessage: a hypervisor message type is HV_STATUS_INVALID_PARAMETER");
	int posts = seen.posts;
	ok(hv_hypercall_exec(v0, 0x005c, RAM + 0x1000, 0) == HV_STATUS_INVALID_PARAMETER,
	   "HvPostMessage: input outside RAM is HV_STATUS_INVALID_PARAMETER");
	ok(hv_hypercall_exec(v0, 0x005c, ~0ull & ~7ull, 0) == HV_STATUS_INVALID_ALIGNMENT,
	   "HvPostMessage: input at the top of the address space (crosses its page)");
	ok(hv_hypercall_exec(v0, 0x005c, INPUT_PAGE + 4, 0) == HV_STATUS_INVALID_ALIGNMENT,
	   "HvPostMessage: input not 8-byte aligned is HV_STATUS_INVALID_ALIGNMENT");
	ok(hv_hypercall_exec(v0, 0x005c, INPUT_PAGE + 0xF80, 0) == HV_STATUS_INVALID_ALIGNMENT,
	   "HvPostMessage: input crossing a page is HV_STATUS_INVALID_ALIGNMENT");
	ok(hv_hypercall_exec(v0, 0x005c | 1ull << 32, INPUT_PAGE, 0) == HV_STATUS_INVALID_HYPERCALL_INPUT,
	   "HvPostMessage with a rep count is HV_STATUS_INVALID_HYPERCALL_INPUT");
	ok(hv_hypercall_exec(v0, 0x005c | 1ull << 17, INPUT_PAGE, 0) == HV_STATUS_INVALID_HYPERCALL_INPUT,
	   "a variable header size on a call that takes none is HV_STATUS_INVALID_HYPERCALL_INPUT");
	ok(hv_hypercall_exec(v0, 0x005c | 1ull << 63, INPUT_PAGE, 0) == HV_STATUS_INVALID_HYPERCALL_INPUT,
	   "reserved control bits are HV_STATUS_INVALID_HYPERCALL_INPUT");
	ok(hv_hypercall_exec(v0, 0x1005c, INPUT_PAGE, 0) == HV_STATUS_INVALID_HYPERCALL_INPUT,
	   "a fast HvPostMessage is HV_STATUS_INVALID_HYPERCALL_INPUT");
	ok(seen.posts == posts, "no rejected HvPostMessage reached VMBus");

	r = hv_hypercall_exec(v0, 0x1005d, 3ull << 32 | 4, 0);
	ok(r == HV_STATUS_SUCCESS && seen.signals == 1 && seen.conn == 4 && seen.flag == 3 && seen.vp == 0,
	   "HvSignalEvent (fast): connection and flag from the register");
	uint32_t in[2] = { 6, 9 };
	vm_write_phys(vm, INPUT_PAGE, in, sizeof(in));
	r = hv_hypercall_exec(v0, 0x005d, INPUT_PAGE, 0);
	ok(r == HV_STATUS_SUCCESS && seen.signals == 2 && seen.conn == 6 && seen.flag == 9,
	   "HvSignalEvent (memory): connection and flag from the input page");
	ok(hv_hypercall_exec(v0, 0x1005d, 1ull << 48 | 4, 0) == HV_STATUS_INVALID_HYPERCALL_INPUT,
	   "HvSignalEvent: reserved input bits are HV_STATUS_INVALID_HYPERCALL_INPUT");
	ok(hv_hypercall_exec(v0, 0x1005d, 2048ull << 32 | 4, 0) == HV_STATUS_INVALID_PARAMETER,
	   "HvSignalEvent: flag 2048 is HV_STATUS_INVALID_PARAMETER");

	/* through the registers, as the hypercall page's trap delivers it */
	memset(&regs[0], 0, sizeof(regs[0]));
	regs[0].efer = 1ull << 10 | 1ull << 8;
	regs[0].r[R_RCX] = 0x1005d;
	regs[0].r[R_RDX] = 5ull << 32 | 4;
	regs[0].r[R_RAX] = 0x1234;
	hv_hypercall(v0);
	ok(regs[0].r[R_RAX] == HV_STATUS_SUCCESS && seen.flag == 5, "64-bit convention: RCX, RDX in, RAX out");
	regs[0].r[R_RCX] = 0x77;
	hv_hypercall(v0);
	ok(regs[0].r[R_RAX] == HV_STATUS_INVALID_HYPERCALL_CODE, "64-bit convention: a bad code's status in RAX");
	memset(&regs[0], 0, sizeof(regs[0]));
	regs[0].r[R_RDX] = 0; /* control high */
	regs[0].r[R_RAX] = 0x1005d;
	regs[0].r[R_RBX] = 7; /* input high: flag 7 */
	regs[0].r[R_RCX] = 4;
	hv_hypercall(v0);
	ok(regs[0].r[R_RAX] == 0 && regs[0].r[R_RDX] == 0 && seen.flag == 7,
	   "32-bit convention: EDX:EAX control, EBX:ECX input, EDX:EAX result");
	regs[0].sel[1] = 0x2b; /* user code, CPL 3 */
	regs[0].r[R_RAX] = 0x1005d;
	hv_hypercall(v0);
	ok(regs[0].r[R_RAX] == 0x1005d, "from CPL 3 the port does nothing");
	regs[0].sel[1] = 0x10;
	vm_msr_write(v0, HVMSR_HYPERCALL, 0);
	regs[0].r[R_RAX] = 0x1005d;
	hv_hypercall(v0);
	ok(regs[0].r[R_RAX] == 0x1005d, "with the hypercall page disabled the port does nothing");
	vm_msr_write(v0, HVMSR_HYPERCALL, HYPERCALL_PAGE | 1);
}

/* ---- SynIC ---- */

struct msg {
	uint32_t type;
	uint8_t size, flags;
	uint16_t res;
	uint64_t sender;
	uint8_t payload[240];
};

static struct msg read_slot(struct vm *vm, int sint)
{
	struct msg m;

	vm_read_phys(vm, SIMP_PAGE + sint * 256, &m, sizeof(m));
	return m;
}

static void free_slot(struct vm *vm, int sint)
{
	uint32_t z = 0;

	vm_write_phys(vm, SIMP_PAGE + sint * 256, &z, 4);
}

/* the highest pending vector, acknowledged and EOI'd */
static int take_irq(struct vcpu *v)
{
	int vec = lapic_get_interrupt(v->lapic, true);

	if (vec >= 0)
		lapic_mmio_write(v->lapic, 0xB0, 0, 4);
	return vec;
}

static void test_synic(struct vm *vm)
{
	struct vcpu *v = vm->vcpu[1];
	uint8_t pl[16] = "hello synic";
	struct msg m;

	ok(rd(v, HVMSR_SINT0 + 2) == 1ull << 16, "SINTs start masked");
	ok(rd(v, HVMSR_SVERSION) == 1 && !vm_msr_write(v, HVMSR_SVERSION, 2), "SVERSION reads 1, is read-only");
	ok(!vm_msr_write(v, HVMSR_SINT0 + 2, 5), "an unmasked SINT with a vector below 16 is #GP");
	ok(!vm_msr_write(v, HVMSR_SIMP, (RAM + 0x1000) | 1), "SIMP outside RAM is #GP");
	ok(hv_synic_post_message(vm, 1, 2, 1, pl, sizeof(pl)) == -2, "post with the SynIC disabled: -2");
	vm_msr_write(v, HVMSR_SCONTROL, 1);
	vm_msr_write(v, HVMSR_SIMP, SIMP_PAGE | 1);
	vm_msr_write(v, HVMSR_SIEFP, SIEFP_PAGE | 1);
	ok(hv_synic_post_message(vm, 1, 2, 1, pl, sizeof(pl)) == -2, "post to a masked SINT: -2");
	vm_msr_write(v, HVMSR_SINT0 + 2, 0x40);
	ok(rd(v, HVMSR_SINT0 + 2) == 0x40, "SINT2 reads back");
	ok(hv_synic_post_message(vm, 9, 2, 1, pl, sizeof(pl)) == -2 &&
		   hv_synic_post_message(vm, 1, 16, 1, pl, sizeof(pl)) == -2 &&
		   hv_synic_post_message(vm, 1, 2, 1, pl, 241) == -2,
	   "post to a VP, SINT or length out of range: -2");
	ok(hv_synic_post_message(vm, 1, 2, 0x55, pl, sizeof(pl)) == 0, "post to an enabled SINT: 0");
	m = read_slot(vm, 2);
	ok(m.type == 0x55 && m.size == sizeof(pl) && m.flags == 0 && !memcmp(m.payload, pl, sizeof(pl)),
	   "the message is in SINT2's slot of the message page");
	ok(take_irq(v) == 0x40 && take_irq(vm->vcpu[0]) < 0, "SINT2's vector is raised on that vCPU only");
	ok(hv_synic_post_message(vm, 1, 2, 0x56, pl, sizeof(pl)) == -1 && (read_slot(vm, 2).flags & 1) &&
		   read_slot(vm, 2).type == 0x55,
	   "post to a busy slot: -1, message-pending flag set, the slot untouched");
	seen.eoms = 0;
	free_slot(vm, 2);
	vm_msr_write(v, HVMSR_EOM, 0);
	ok(seen.eoms == 1 && seen.vp == 1, "EOM calls VMBus's eom for that VP");
	ok(hv_synic_post_message(vm, 1, 2, 0x56, pl, sizeof(pl)) == 0 && read_slot(vm, 2).type == 0x56 &&
		   read_slot(vm, 2).flags == 0,
	   "after EOM the retried post lands, flags clear");
	take_irq(v);
	ok(hv_synic_post_message(vm, 1, 2, 0x57, pl, sizeof(pl)) == -1, "the slot is busy again: -1");
	free_slot(vm, 2); /* freed, but no EOM yet */
	ok(hv_synic_post_message(vm, 1, 2, 0x58, pl, sizeof(pl)) == 0 && (read_slot(vm, 2).flags & 1),
	   "a message delivered while a sender waits keeps the pending flag, so EOM still comes");
	take_irq(v);
	free_slot(vm, 2);
	vm_msr_write(v, HVMSR_EOM, 0);
	ok(hv_synic_post_message(vm, 1, 2, 0x59, pl, sizeof(pl)) == 0 && read_slot(vm, 2).flags == 0,
	   "after EOM nobody waits: the next message has the flag clear");
	take_irq(v);
	free_slot(vm, 2);

	uint8_t f[256];
	ok(hv_synic_signal_event(vm, 1, 2, 77) == 0, "signal event flag 77 on SINT2: 0");
	vm_read_phys(vm, SIEFP_PAGE + 2 * 256, f, sizeof(f));
	ok(f[77 / 8] == 1 << (77 % 8), "the flag is set in SINT2's event flags");
	ok(take_irq(v) == 0x40, "signalling a clear flag raises the SINT");
	hv_synic_signal_event(vm, 1, 2, 77);
	ok(take_irq(v) < 0, "signalling a flag already set does not");
	ok(hv_synic_signal_event(vm, 1, 2, 2048) == -2, "flag 2048 is out of range: -2");
	vm_msr_write(v, HVMSR_SINT0 + 3, 0x41 | 1ull << 18);
	ok(hv_synic_signal_event(vm, 1, 3, 1) == 0 && take_irq(v) < 0, "a polled SINT takes the flag, raises nothing");

	/* auto-EOI: accepted without an ISR entry */
	vm_msr_write(v, HVMSR_SINT0 + 4, 0x42 | 1ull << 17);
	hv_synic_signal_event(vm, 1, 4, 1);
	int vec = lapic_get_interrupt(v->lapic, true);
	uint32_t isr = (uint32_t)lapic_mmio_read(v->lapic, 0x100 + 0x10 * (0x42 / 32), 4);
	ok(vec == 0x42 && !(isr & 1u << (0x42 % 32)), "an auto-EOI SINT's vector is accepted without an ISR entry");
	vm_msr_write(v, HVMSR_SINT0 + 4, 0x42);
	hv_synic_signal_event(vm, 1, 4, 2);
	vec = lapic_get_interrupt(v->lapic, true);
	isr = (uint32_t)lapic_mmio_read(v->lapic, 0x100 + 0x10 * (0x42 / 32), 4);
	ok(vec == 0x42 && (isr & 1u << (0x42 % 32)), "without auto-EOI it stays in the ISR until EOI");
	lapic_mmio_write(v->lapic, 0xB0, 0, 4);
	vm_msr_write(v, HVMSR_SINT0 + 4, 1ull << 16);
}

/* poll vCPU v's timers until cond holds or WAIT_MS passed */
#define POLL_UNTIL(v, cond)                                                \
	({                                                                 \
		bool _ok = false;                                          \
		for (int _i = 0; _i < WAIT_MS && !_ok; _i++) {            \
			hv_poll_timers(v);                                 \
			_ok = (cond);                                      \
			if (!_ok)                                          \
				sleep_ms(1);                               \
		}                                                          \
		_ok;                                                       \
	})

static void test_stimers(struct vm *vm)
{
	struct vcpu *v = vm->vcpu[1];
	struct {
		uint32_t index, res;
		uint64_t exp, delivery;
	} p;

	/* one-shot, message mode, SINT 2 */
	free_slot(vm, 2);
	uint64_t due = hv_ref_time(vm) + 20000; /* 2 ms */
	vm_msr_write(v, HVMSR_STIMER1_CONFIG, 1 | 2ull << 16);
	vm_msr_write(v, HVMSR_STIMER1_COUNT, due);
	ok(POLL_UNTIL(v, read_slot(vm, 2).type == 0x80000010), "one-shot stimer1: HVMSG_TIMER_EXPIRED arrives");
	struct msg m = read_slot(vm, 2);
	memcpy(&p, m.payload, sizeof(p));
	ok(m.size == 24 && p.index == 1 && p.exp == due && p.delivery >= due,
	   "the message: size 24, timer 1, expiration = count, delivery after it");
	ok(take_irq(v) == 0x40, "the timer message raises SINT2's vector");
	ok(!(rd(v, HVMSR_STIMER1_CONFIG) & 1), "a one-shot timer disables itself");

	/* a busy slot: the expiry waits for EOM */
	due = hv_ref_time(vm) + 10000;
	vm_msr_write(v, HVMSR_STIMER1_CONFIG, 1 | 2ull << 16);
	vm_msr_write(v, HVMSR_STIMER1_COUNT, due);
	ok(POLL_UNTIL(v, read_slot(vm, 2).flags & 1), "expiry into a busy slot sets message-pending");
	take_irq(v);
	free_slot(vm, 2);
	vm_msr_write(v, HVMSR_EOM, 0);
	m = read_slot(vm, 2);
	memcpy(&p, m.payload, sizeof(p));
	ok(m.type == 0x80000010 && p.exp == due && take_irq(v) == 0x40, "EOM delivers the pending expiry");
	free_slot(vm, 2);

	/* message mode with SINT 0 is off; auto-enable by count */
	vm_msr_write(v, HVMSR_STIMER1_CONFIG, 1);
	ok(!(rd(v, HVMSR_STIMER1_CONFIG) & 1), "message mode with SINTx 0: the timer stays disabled");
	vm_msr_write(v, HVMSR_STIMER1_CONFIG, 8 | 2ull << 16);
	vm_msr_write(v, HVMSR_STIMER1_COUNT, hv_ref_time(vm) + 10000000);
	ok(rd(v, HVMSR_STIMER1_CONFIG) & 1, "auto-enable: writing the count enables the timer");
	int64_t next = hv_poll_timers(v);
	ok(next > 0 && next <= 1000000000, "the next deadline is reported to the timer poll (%lld ns)",
	   (long long)next);
	vm_msr_write(v, HVMSR_STIMER1_COUNT, 0);
	ok(!(rd(v, HVMSR_STIMER1_CONFIG) & 1) && hv_poll_timers(v) < 0, "count 0 disables the timer");

	/* periodic, direct mode: the vector itself, again and again */
	vm_msr_write(v, HVMSR_STIMER0_CONFIG, 1 | 2 | 0x50ull << 4 | 1ull << 12);
	vm_msr_write(v, HVMSR_STIMER0_COUNT, 10000); /* 1 ms */
	int fired = 0;
	for (int i = 0; i < 3; i++)
		fired += POLL_UNTIL(v, lapic_get_interrupt(v->lapic, false) == 0x50) && take_irq(v) == 0x50;
	ok(fired == 3, "periodic direct-mode stimer0 raises vector 0x50 repeatedly (%d/3)", fired);
	ok((rd(v, HVMSR_STIMER0_CONFIG) & 1) && read_slot(vm, 2).type == 0, "it stays enabled and posts no message");
	vm_msr_write(v, HVMSR_STIMER0_CONFIG, 0);
	take_irq(v);
}

static void test_crash_reset(void)
{
	struct vm *vm = make_vm(PERSONALITY_HYPERV);
	struct vcpu *v = vm->vcpu[0];

	for (int i = 0; i < 5; i++)
		vm_msr_write(v, HVMSR_CRASH_P0 + i, 0x100 + i);
	ok(rd(v, HVMSR_CRASH_P0 + 3) == 0x103 && vm->exit_reason == VM_RUNNING,
	   "crash parameters read back and end nothing");
	vm_msr_write(v, HVMSR_CRASH_CTL, 1ull << 63);
	ok(vm->exit_reason == VM_PANIC && strstr(vm->exit_msg, "crash MSRs") && strstr(vm->exit_msg, "P0=0x100"),
	   "CRASH_CTL CrashNotify ends the VM as a guest panic with P0-P4 (%s)", vm->exit_msg);
	vm_destroy(vm);
	free(vm);

	vm = make_vm(PERSONALITY_HYPERV);
	vm_msr_write(vm->vcpu[0], HVMSR_RESET, 0);
	ok(vm->exit_reason == VM_RUNNING, "RESET written 0 does nothing");
	vm_msr_write(vm->vcpu[0], HVMSR_RESET, 1);
	ok(vm->exit_reason == VM_RESET, "RESET bit 0 resets the VM");
	vm_destroy(vm);
	free(vm);
}

/* ---- kvmclock ---- */

struct pvti {
	uint32_t version, pad0;
	uint64_t tsc_timestamp, system_time;
	uint32_t mul;
	int8_t shift;
	uint8_t flags, pad[2];
};

static uint64_t pvclock_ns(const struct pvti *p, uint64_t tsc)
{
	uint64_t d = tsc - p->tsc_timestamp;

	d = p->shift >= 0 ? d << p->shift : d >> -p->shift;
	return p->system_time + (uint64_t)(((unsigned __int128)d * p->mul) >> 32);
}

static void test_kvmclock(void)
{
	struct vm *vm = make_vm(PERSONALITY_KVM);
	struct vcpu *v = vm->vcpu[0];
	struct pvti p;

	ok(!vm_msr_read(v, HVMSR_GUEST_OS_ID, &(uint64_t){ 0 }), "kvm personality: no Hyper-V MSRs");
	hv_set_vmbus(vm, &fake_vmbus);
	ok(hv_synic_post_message(vm, 0, 2, 1, "x", 1) == -2 && hv_synic_signal_event(vm, 0, 2, 1) == -2,
	   "kvm personality: VMBus plugs into nothing, posts go nowhere (-2)");
	ok(vm_msr_read(v, 0x1b, &(uint64_t){ 0 }), "the LAPIC's MSRs still answer through vm_msr_read");
	ok(vm_msr_write(v, MSR_KVM_SYSTEM_TIME_NEW, (RAM + 0x40) | 1) &&
		   rd(v, MSR_KVM_SYSTEM_TIME_NEW) == ((RAM + 0x40) | 1),
	   "SYSTEM_TIME outside RAM: held, never written");
	uint8_t edge[32];
	memset(edge, 0xAA, sizeof(edge));
	vm_write_phys(vm, 0x15FF0, edge, 16);
	vm_msr_write(v, MSR_KVM_SYSTEM_TIME_NEW, 0x15FF0 | 1);
	vm_read_phys(vm, 0x15FF0, edge, 16);
	ok(edge[0] == 0xAA && edge[15] == 0xAA, "SYSTEM_TIME across a page: not written");
	vm_msr_write(v, MSR_KVM_SYSTEM_TIME_NEW, PVCLOCK_GPA | 1);
	vm_read_phys(vm, PVCLOCK_GPA, &p, sizeof(p));
	ok(p.version && !(p.version & 1), "pvclock: version even and non-zero after the update (%u)", p.version);
	ok(p.flags & 1, "pvclock: PVCLOCK_TSC_STABLE_BIT");
	bool agree = true;
	for (int i = 0; i < 5; i++) {
		uint64_t before = vm_now_ns(vm);
		uint64_t ns = pvclock_ns(&p, vm_tsc(vm));
		uint64_t after = vm_now_ns(vm);
		agree &= ns + 2 >= before && ns <= after + 2;
		sleep_ms(3);
	}
	ok(agree, "pvclock: system_time + scaled TSC delta is the VM's clock (mul %#x shift %d)", p.mul, p.shift);
	uint32_t ver = p.version;
	vm_msr_write(v, MSR_KVM_SYSTEM_TIME_NEW, PVCLOCK_GPA | 1);
	vm_read_phys(vm, PVCLOCK_GPA, &p, sizeof(p));
	ok(p.version == ver + 2, "pvclock: each update moves the version by 2");

	struct {
		uint32_t version, sec, nsec;
	} w;
	vm_msr_write(v, MSR_KVM_WALL_CLOCK_NEW, WALLCLOCK_GPA);
	vm_read_phys(vm, WALLCLOCK_GPA, &w, sizeof(w));
	time_t now = time(NULL);
	ok(w.version && !(w.version & 1) && w.sec <= (uint64_t)now && w.sec + 5 >= (uint64_t)now && w.nsec < 1000000000,
	   "wall clock: the host time when the VM's clock read 0");
	vm_destroy(vm);
	free(vm);

	vm = make_vm(PERSONALITY_HYPERV);
	ok(!vm_msr_write(vm->vcpu[0], MSR_KVM_SYSTEM_TIME_NEW, PVCLOCK_GPA | 1),
	   "hyperv personality: no kvmclock MSRs");
	vm_destroy(vm);
	free(vm);
}

int main(void)
{
	struct vm *vm;

	test_cpuid();
	vm = make_vm(PERSONALITY_HYPERV);
	test_partition_msrs(vm);
	test_tsc_page(vm);
	test_hypercalls_novmbus(vm);
	test_hypercalls(vm);
	test_synic(vm);
	test_stimers(vm);
	vm_destroy(vm);
	free(vm);
	test_crash_reset();
	test_kvmclock();
	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}
