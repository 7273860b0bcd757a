/* The engine-neutral interface (../shared/DESIGN.md): an engine runs vCPUs
 * and reports exits; everything else is the machine's. */
#ifndef ACCORD_ENGINE_H
#define ACCORD_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct vcpu;

enum vcpu_exit_kind {
	EXIT_NONE,
	EXIT_HLT,      /* halted: wait for an interrupt */
	EXIT_SHUTDOWN, /* triple fault */
	EXIT_KICK,     /* another thread asked the vCPU to return */
	EXIT_ERROR,
	EXIT_DEBUG,    /* breakpoint or single step (set_guest_debug) */
};

struct vcpu_exit {
	enum vcpu_exit_kind kind;
	char msg[160];
};

/* The register state a boot loader asks for at the entry point.
 * mode 32: flat 32-bit protected mode, paging off (Multiboot, PVH);
 * mode 64: long mode, paging on with cr3 from the loader (Linux 64-bit
 * boot protocol). Either way CS = 0x10 and the data segments = 0x18 are
 * flat, matching the GDT the loader wrote at gdt_base. */
struct boot_state {
	int mode;
	uint64_t rip, rsp, rax, rbx, rsi, rdi;
	uint64_t cr3;
	uint64_t gdt_base;
	uint16_t gdt_limit;
};

/* a segment register with its hidden part; attr packs the descriptor's
 * bits 40..47 and 52..55 as type(0-3) s(4) dpl(5-6) p(7) avl(8) l(9)
 * db(10) g(11) */
struct cpu_seg {
	uint64_t base;
	uint32_t limit;
	uint16_t sel, attr;
};

struct cpu_dtr {
	uint64_t base;
	uint16_t limit;
};

/* The vCPU's architectural state, for debugging and snapshots. get_state
 * fills all of it. set_state writes the GPRs, RIP and RFLAGS (what the gdb
 * stub changes); with CPU_STATE_FULL in flags, everything below as well
 * (a snapshot's restore, the VM clock already continuing from the
 * snapshot's time). accord's CPUID model has no XSAVE/AVX, so the
 * FXSAVE image is the whole vector state on emu. */
#define CPU_STATE_FULL 1u
struct cpu_state {
	uint64_t r[16], rip, rflags;
	uint64_t cr0, cr2, cr3, cr4, efer;
	/* selectors in the order es cs ss ds fs gs, the FS/GS bases (as in
	 * seg[]; the gdb stub's view), the x87/SSE state as FXSAVE lays it out */
	uint16_t sel[6];
	uint64_t fs_base, gs_base;
	uint8_t fxsave[512];

	uint32_t flags;
	struct cpu_seg seg[6], tr, ldtr;
	struct cpu_dtr gdtr, idtr;
	uint64_t cr8, dr[8], xcr0;
	/* the guest's TSC minus the VM clock counted at the TSC's rate
	 * (vm_now_ns() at VM_TSC_HZ, or at the rate KVM gives the guest):
	 * what makes the TSC go on from the VM time a snapshot restores */
	int64_t tsc_offset;
	uint64_t tsc_adjust; /* IA32_TSC_ADJUST */
	uint64_t star, lstar, cstar, sfmask, kernel_gs_base, tsc_aux;
	uint64_t sysenter_cs, sysenter_esp, sysenter_eip, pat, misc_enable;
	/* events: an interrupt shadow (STI or MOV SS) over the next
	 * instruction, an NMI waiting, NMIs blocked until the next IRET, an
	 * exception or interrupt being injected (vector, or -1) */
	uint8_t intr_shadow, nmi_pending, nmi_blocked, halted;
	int16_t exc_vector;
	uint8_t exc_has_error;
	uint32_t exc_error;
	int16_t irq_injected;
	/* IA32_TSC_DEADLINE as the guest wrote it (the kvm engine keeps it;
	 * emu's LAPIC state has it) */
	uint64_t tsc_deadline;
	/* the XSAVE area (KVM_GET_XSAVE) where the host's KVM shows the guest
	 * more than accord's model (AVX); xsave_size 0: none, FXSAVE is all */
	uint32_t xsave_size;
	uint8_t xsave[4096];
	/* the split irqchip: KVM's LAPIC (KVM_GET_LAPIC's registers; its TSC
	 * deadline is tsc_deadline above) and the vCPU's run state
	 * (KVM_MP_STATE_*: halted, waiting for its SIPI). lapic_size 0: the
	 * LAPIC is accord's device, saved with the devices. */
	uint32_t lapic_size, mp_state;
	uint8_t lapic[1024];
};

/* The debugger's hold on one vCPU (the gdb stub). Breakpoints are RIP
 * values, checked before the instruction there executes; a single step
 * executes one instruction (or delivers one exception) and stops. */
#define GUEST_DEBUG_MAX_BREAKS 32
struct guest_debug {
	bool single_step;
	bool skip_break_at_rip; /* resuming at a breakpoint: do not stop there at once */
	int nbreak;
	uint64_t breaks[GUEST_DEBUG_MAX_BREAKS];
};

struct engine_ops {
	const char *name;
	int (*vm_init)(struct vm *vm);
	int (*vcpu_init)(struct vcpu *cpu);
	/* optional: what vcpu_init made besides engine_priv itself, which
	 * vm_destroy frees after this (the vCPU's thread has ended) */
	void (*vcpu_destroy)(struct vcpu *cpu);
	/* run until the VMM must act; port I/O and MMIO are handled inside
	 * through the vm's buses */
	int (*vcpu_run)(struct vcpu *cpu, struct vcpu_exit *exit);
	void (*vcpu_kick)(struct vcpu *cpu);
	int (*get_state)(struct vcpu *cpu, struct cpu_state *s);
	int (*set_state)(struct vcpu *cpu, const struct cpu_state *s);
	/* boot entry: set registers for the loader's chosen entry state */
	int (*set_boot_state)(struct vcpu *cpu, const struct boot_state *bs);
	/* an application processor after INIT-SIPI: real mode at vector << 12 */
	int (*start_ap)(struct vcpu *cpu, uint8_t vector);
	/* debugging (the gdb stub), NULL when the engine has none. Called only
	 * while the vCPU is out of vcpu_run; a breakpoint or a finished single
	 * step ends vcpu_run with EXIT_DEBUG. While vm->pause_request is set,
	 * vcpu_kick must make vcpu_run return. */
	int (*set_guest_debug)(struct vcpu *cpu, const struct guest_debug *dbg);
	/* guest-virtual to guest-physical through the vCPU's page tables, as
	 * a supervisor read would walk them; -1 when that would fault */
	int (*translate)(struct vcpu *cpu, uint64_t va, uint64_t *gpa);
	/* instructions the vCPU retired so far (the API's counters), read
	 * from another thread; NULL when the engine cannot count them */
	uint64_t (*insns_retired)(struct vcpu *cpu);
	/* the guest's TSC on this vCPU at VM time ns (vm_now_ns(), just
	 * read) and its rate in Hz, on the vCPU's thread; NULL or -1: it is
	 * vm_tsc() at VM_TSC_HZ */
	int (*guest_tsc)(struct vcpu *cpu, uint64_t ns, uint64_t *tsc, uint64_t *hz);
	/* ioeventfd: a guest write of any width at gpa (MMIO) signals the
	 * eventfd fd without leaving the guest (assign false: no longer).
	 * -1 when the engine cannot: the write then ends the vCPU's run as
	 * any MMIO does and the device signals fd itself. NULL: never. */
	int (*ioeventfd)(struct vm *vm, uint64_t gpa, int fd, bool assign);
	/* The split irqchip (vm->irqchip VM_IRQCHIP_SPLIT; NULL on engines
	 * without one): the LAPICs are the engine's. msi sends an interrupt
	 * message (MSI address and data) to them, from any thread.
	 * gsi_route mirrors IOAPIC pin gsi as such a message (valid false:
	 * no route), so that the engine's LAPIC reports the EOI of a
	 * level-triggered vector to ioapic_eoi(). 0, or -1. */
	int (*msi)(struct vm *vm, uint64_t addr, uint32_t data);
	int (*gsi_route)(struct vm *vm, unsigned gsi, uint64_t addr, uint32_t data, bool valid);
	/* split irqchip: a write to eventfd fd sends the MSI (addr, data)
	 * through a new route: its GSI, or -1. irqfd_release undoes it (fd
	 * unbound, the route dropped; the caller closes fd). */
	int (*irqfd)(struct vm *vm, int fd, uint64_t addr, uint32_t data);
	void (*irqfd_release)(struct vm *vm, int gsi, int fd);
};

extern const struct engine_ops engine_emu;

/* emu's CPU (src/cpu/) to and from a cpu_state, as emu's get_state and
 * set_state do it (src/engine/emu.c); the kvm engine runs an instruction
 * its host cannot emulate on such a CPU */
struct cpu;
void emu_state_save(const struct cpu *c, struct cpu_state *s);
int emu_state_load(struct cpu *c, const struct cpu_state *s);

extern const struct engine_ops engine_kvm;

/* kvm engine availability (src/engine/kvm.c); the environment variable
 * ACCORD_KVM_DEV names another device than /dev/kvm (tests use it).
 * kvm_check: 0 if the device opens with API 12 and the capabilities the
 * engine needs, else -1 and why ("/dev/kvm: No such file or directory").
 * kvm_probe: also times a ring-0 loop in a throwaway VM: 1 if KVM runs it
 * at hardware speed, 0 if not (an emulated KVM; why says how slow), -1 if
 * KVM is unusable (why says why). */
int kvm_check(char *why, size_t n);
int kvm_probe(char *why, size_t n);
/* whether the host's KVM can run the split irqchip (its LAPIC, accord's
 * IOAPIC and PIC): 0, or -1 and why */
int kvm_split_check(char *why, size_t n);

#endif
