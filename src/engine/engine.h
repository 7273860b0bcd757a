/* The engine-neutral interface (../shared/DESIGN.md): an engine runs vCPUs
 * and reports exits; everything else is the machine's. */
#ifndef ACCORD_ENGINE_H
#define ACCORD_ENGINE_H

#include <stdint.h>

struct vm;
struct vcpu;

enum vcpu_exit_kind {
	EXIT_NONE,
	EXIT_HLT,      /* halted: wait for an interrupt */
	EXIT_SHUTDOWN, /* triple fault */
	EXIT_KICK,     /* another thread asked the vCPU to return */
	EXIT_ERROR,
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

/* general-purpose state for debugging and snapshots */
struct cpu_state {
	uint64_t r[16], rip, rflags;
	uint64_t cr0, cr2, cr3, cr4, efer;
};

struct engine_ops {
	const char *name;
	int (*vm_init)(struct vm *vm);
	int (*vcpu_init)(struct vcpu *cpu);
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
};

extern const struct engine_ops engine_emu;
extern const struct engine_ops engine_kvm;

#endif
