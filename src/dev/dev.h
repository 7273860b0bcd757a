/* The platform devices: creation and the calls the engines and the machine
 * make into them. One file per device under src/dev/. */
#ifndef ACCORD_DEV_H
#define ACCORD_DEV_H

#include <stdbool.h>
#include <stdint.h>

struct vm;
struct vcpu;
struct lapic;
struct serial;

struct platform_opts {
	int console_out_fd; /* guest serial output */
	bool debug_exit;    /* port 0xf4 present */
};

/* Registers every legacy device (serial, rtc, pic, pit, ioapic, ACPI PM,
 * reset, debug-exit) on the vm's buses. 0 or -1 with a message on stderr. */
int platform_init(struct vm *vm, const struct platform_opts *o);
void platform_destroy(struct vm *vm);

/* Local APIC, one per vCPU, at LAPIC_BASE in each vCPU's own view. */
struct lapic *lapic_create(struct vcpu *v);
void lapic_destroy(struct lapic *l);
uint64_t lapic_mmio_read(struct lapic *l, uint64_t off, int size);
void lapic_mmio_write(struct lapic *l, uint64_t off, uint64_t val, int size);
/* highest-priority interrupt deliverable now (IRR above PPR), or -1;
 * ack moves it from IRR to ISR (the CPU accepted it) */
int lapic_get_interrupt(struct lapic *l, bool ack);
/* fire the timer if due; returns ns until the next timer event, or -1 */
int64_t lapic_poll_timer(struct lapic *l);
/* an interrupt arriving at this LAPIC (IOAPIC, MSI, IPI) */
void lapic_accept(struct lapic *l, int vector, bool level);
/* IA32_APIC_BASE (0x1B), IA32_TSC_DEADLINE (0x6E0) */
bool lapic_msr_read(struct lapic *l, uint32_t msr, uint64_t *val);
bool lapic_msr_write(struct lapic *l, uint32_t msr, uint64_t val);
/* the vectors (a 256-bit set) that are EOI'd as they are accepted: the
 * Hyper-V SynIC's auto-EOI SINTs */
void lapic_set_auto_eoi(struct lapic *l, const uint32_t vectors[8]);
/* the vector of the 8259's INTA cycle when its INTR is up (ack: the
 * cycle happens), else -1; takes vm->io_lock. The split irqchip's engine
 * asks it where its LAPIC takes ExtINT. */
int pic_extint(struct vm *vm, bool ack);
/* an NMI arrived (IPI, IOAPIC or MSI); reading it clears it */
bool lapic_take_nmi(struct lapic *l);

/* The vCPU loop calls this: it fires due PIT and RTC interrupts and returns
 * ns until the next such event, or -1. Takes vm->io_lock. */
int64_t platform_poll(struct vm *vm);
/* the LAPIC's EOI of a level-triggered vector; takes vm->io_lock */
void ioapic_eoi(struct vm *vm, int vector);
/* bytes for the guest's COM1 receiver (tests, console layer); returns how
 * many fitted. The caller holds vm->io_lock. */
int serial_input(struct serial *s, const uint8_t *buf, int n);
/* give the UART the terminal's input: fd is read on io's thread
 * (vm/console.h); serial_destroy after the I/O thread has stopped */
struct iothread;
int serial_attach_input(struct serial *s, struct iothread *io, int fd);

#endif
