/* The machine: guest RAM and its map, vCPUs, the buses, the devices, and the
 * lifecycle. Engine-neutral: src/engine/{emu,kvm}.c run the vCPUs. */
#ifndef ACCORD_VM_H
#define ACCORD_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vm/bus.h"

#define VM_MAX_CPUS 64
/* Guest-physical map: RAM from 0 up to the PCI hole, the rest above 4 GiB. */
#define VM_HOLE_START 0xC0000000ull
#define VM_HOLE_END 0x100000000ull
/* MAXPHYADDR: CPUID 0x80000008, reserved bits of page tables and IA32_APIC_BASE */
#define VM_PHYS_ADDR_BITS 40
#define LAPIC_BASE 0xFEE00000ull
#define IOAPIC_BASE 0xFEC00000ull

/* Guest TSC and LAPIC timer clock, told to the guest through CPUID 0x15
 * (TSC = crystal * 0x15.EBX / 0x15.EAX) so it never calibrates. */
#define VM_CRYSTAL_HZ 25000000ull
#define VM_TSC_RATIO 80ull /* TSC = 2 GHz */
#define VM_TSC_HZ (VM_CRYSTAL_HZ * VM_TSC_RATIO)
/* The LAPIC timer clock of a VM whose LAPICs are a KVM's that counts only
 * at 1 GHz (before Linux 6.11's KVM_CAP_X86_APIC_BUS_CYCLES_NS): that VM's
 * vm->crystal_hz, which CPUID 0x15 tells its guest instead */
#define VM_CRYSTAL_KVM_HZ 1000000000ull

struct vm;
struct hv;
struct kvmclock;
struct lapic;
struct engine_ops;
struct gdbstub;

struct vcpu {
	struct vm *vm;
	int index;
	pthread_t thread;
	struct lapic *lapic;
	void *engine_priv;
	/* INIT/SIPI state for application processors */
	volatile int state; /* VCPU_WAIT_SIPI or VCPU_RUNNING */
	volatile uint8_t sipi_vector;
	volatile int sipi_pending, init_pending;
	int wake; /* under lock: something happened since the vCPU halted */
	bool parked; /* under vm->pause_lock: stopped by vm_pause */
	uint64_t run_exits; /* returns from the engine's vcpu_run (API counters) */
	pthread_mutex_t lock;
	pthread_cond_t cond; /* signalled on interrupts, SIPI, stop */
};
enum { VCPU_WAIT_SIPI, VCPU_RUNNING };

/* the paravirtual interface the guest is offered (--personality): CPUID
 * 0x40000000 and up, and the MSRs and hypercalls behind them */
enum vm_personality {
	PERSONALITY_KVM,    /* "KVMKVMKVM": kvmclock (src/dev/kvmclock.c) */
	PERSONALITY_HYPERV, /* "Microsoft Hv": the TLFS (src/dev/hyperv/) */
};

/* where the LAPICs are (--irqchip): accord's devices (src/dev/lapic.c), or
 * the engine's (KVM's in-kernel LAPIC), with the IOAPIC and PIC still
 * accord's: their messages go to the engine's msi hook */
enum vm_irqchip {
	VM_IRQCHIP_USER,
	VM_IRQCHIP_SPLIT,
};

/* why the VM ended */
enum vm_exit_reason {
	VM_RUNNING = 0,
	VM_POWEROFF,    /* ACPI S5 / Hyper-V: status 0 */
	VM_RESET,       /* reset requested (treated as exit unless --reboot) */
	VM_DEBUG_EXIT,  /* debug-exit port: status (v << 1) | 1 */
	VM_PANIC,       /* guest reported a panic */
	VM_ERROR,       /* triple fault, engine error */
	VM_STOPPED,     /* the control API's stop action: status 0 */
};

struct vm {
	uint8_t *ram;
	uint64_t ram_size; /* total bytes of guest RAM */
	uint64_t low_size; /* bytes mapped below VM_HOLE_START */
	int ncpus;
	struct vcpu *vcpu[VM_MAX_CPUS];
	const struct engine_ops *engine;
	void *engine_priv;

	struct bus pio, mmio;
	pthread_mutex_t io_lock; /* serialises device emulation */
	/* the I/O thread (vm/iothread.h) that serves virtio notifies and
	 * network backends; NULL: everything runs on the vCPU threads */
	struct iothread *io;

	/* devices that other parts address directly */
	struct serial *serial;
	struct ioapic *ioapic;
	struct pic *pic;
	struct pit *pit;
	struct rtc *rtc;
	struct acpipm *acpipm;

	int personality;	    /* enum vm_personality */
	int irqchip;		    /* enum vm_irqchip */
	/* the LAPIC timer's clock as the guest is told (CPUID 0x15 ECX):
	 * VM_CRYSTAL_HZ, or VM_CRYSTAL_KVM_HZ with KVM's LAPICs (split) */
	uint64_t crystal_hz;
	/* split irqchip: ExtINT messages from the IOAPIC, which KVM's LAPIC
	 * cannot take (said once on stderr) */
	unsigned extint_dropped;
	struct hv *hv;		    /* PERSONALITY_HYPERV, else NULL */
	struct kvmclock *kvmclock; /* PERSONALITY_KVM, else NULL */

	uint64_t t0_ns; /* CLOCK_MONOTONIC at VM creation: guest time zero */

	volatile int exit_reason;
	int exit_status; /* process exit status for VM_DEBUG_EXIT */
	char exit_msg[256];
	bool debug_exit; /* --debug-exit: port 0xf4 is present */

	/* --gdb (vm/gdbstub.c): while pause_request is set the vCPUs leave
	 * vcpu_run and park in gdbstub_vcpu_enter */
	struct gdbstub *gdb;
	volatile int pause_request;
	/* vm_pause/vm_resume (the control API) use the same pause_request;
	 * without a gdb stub the vCPUs park in vm.c instead */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;
	bool paused;

	/* snapshots (vm/snapshot.h): the devices' save/load hooks and the
	 * arguments that re-create this machine */
	struct snap_hook *snap_hooks;
	int nsnap_hooks;
	char **snap_argv;
	int snap_argc;
	/* the VM was paused (the pause action) before a snapshot held it:
	 * what the snapshot records, set by its writer */
	bool snap_paused;
};

/* crystal_hz: the LAPIC timer clock the guest must be told (a restored
 * guest's), or 0: VM_CRYSTAL_HZ where the engine's LAPIC can count at it
 * (the engine's vm_init chooses) */
int vm_create(struct vm *vm, uint64_t ram_size, int ncpus, const struct engine_ops *engine, int personality,
	      int irqchip, uint64_t crystal_hz);
void vm_destroy(struct vm *vm);
/* host pointer for [gpa, gpa+len) if it is all RAM, else NULL */
void *vm_gpa(struct vm *vm, uint64_t gpa, uint64_t len);
/* copy into guest RAM; -1 if the range is not RAM */
int vm_write_phys(struct vm *vm, uint64_t gpa, const void *src, uint64_t len);
int vm_read_phys(struct vm *vm, uint64_t gpa, void *dst, uint64_t len);
/* guest clock */
uint64_t vm_now_ns(const struct vm *vm);
/* make the guest clock read ns now (a restored snapshot's time) */
void vm_set_time(struct vm *vm, uint64_t ns);
uint64_t vm_tsc(const struct vm *vm);
/* interrupt lines (GSI) and MSIs, routed through IOAPIC/PIC to LAPICs */
void vm_set_irq(struct vm *vm, unsigned gsi, int level);
void vm_send_msi(struct vm *vm, uint64_t addr, uint32_t data);
/* An eventfd whose every write sends the MSI (addr, data) inside the
 * engine (the split irqchip's KVM_IRQFD), bound to a new route: its GSI,
 * or -1 when the engine cannot (send with vm_send_msi instead).
 * vm_msi_irqfd_release unbinds fd and drops route gsi (fd stays open). */
int vm_msi_irqfd(struct vm *vm, int fd, uint64_t addr, uint32_t data);
void vm_msi_irqfd_release(struct vm *vm, int gsi, int fd);
/* the split irqchip: IOAPIC pin gsi as the engine's LAPICs must know it
 * (valid false: masked or not level-triggered) */
void vm_gsi_route(struct vm *vm, unsigned gsi, uint64_t addr, uint32_t data, bool valid);
/* Bind an eventfd to a guest write at gpa (a virtio notify address)
 * through the engine (ioeventfd in engine.h); -1 when the engine cannot, and
 * the write then reaches the bus as before. */
int vm_ioeventfd(struct vm *vm, uint64_t gpa, int fd, bool assign);
/* wake a vCPU that may be halted or running so it notices new work */
void vm_kick_vcpu(struct vcpu *v);
/* INIT and STARTUP IPIs to application processors (from the LAPIC) */
void vm_vcpu_init_ipi(struct vcpu *v);
void vm_vcpu_sipi(struct vcpu *v, uint8_t vector);
/* ns until this vCPU's next timer event, firing what is due */
int64_t vm_poll_timers(struct vcpu *v);
/* end the VM; the first reason wins */
void vm_request_exit(struct vm *vm, int reason, int status, const char *msg);
/* Stop every vCPU at an instruction boundary (0), or -1 when the VM has
 * ended or a debugger holds it; resume lets them run again. */
int vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);
/* before vm_run: the VM starts paused (a restored snapshot of a paused
 * VM), its vCPUs parked before their first instruction until vm_resume */
void vm_start_paused(struct vm *vm);
/* The machine's MSRs, after the CPU core's own: the LAPIC's, then the
 * personality's (src/vm/msr.c). Both engines send every MSR they do not
 * hold themselves here, on the vCPU's thread; false means #GP. */
bool vm_msr_read(struct vcpu *v, uint32_t msr, uint64_t *val);
bool vm_msr_write(struct vcpu *v, uint32_t msr, uint64_t val);
/* A port write that belongs to the vCPU that made it rather than to a
 * device (the Hyper-V hypercall port). Both engines offer every OUT here
 * first, with no lock held; true means it was taken. */
bool vm_pio_out_vcpu(struct vcpu *v, uint16_t port, uint32_t val, int size);
/* one port access of vCPU v, as both engines make it when they run an IN
 * or OUT themselves: an OUT goes to vm_pio_out_vcpu first, then to the
 * device bus under io_lock */
uint32_t vm_pio_in(struct vcpu *v, uint16_t port, int size);
void vm_pio_out(struct vcpu *v, uint16_t port, uint32_t val, int size);
/* the guest's TSC on this vCPU at VM time ns (vm_now_ns(), just read), and
 * its rate: what paravirtual clocks (kvmclock, the Hyper-V TSC page) tell
 * the guest to scale */
void vm_guest_tsc(struct vcpu *v, uint64_t ns, uint64_t *tsc, uint64_t *hz);
/* run all vCPUs until the VM ends; returns the process exit status */
int vm_run(struct vm *vm);

#endif
