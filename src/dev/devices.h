/* How the platform devices in src/dev/ reach each other: creation for
 * platform.c, the interrupt wiring (PIC, IOAPIC, LAPICs) and the timers'
 * poll hooks. Private to src/dev/; the rest of accord uses dev/dev.h.
 *
 * Locking: everything here except the LAPIC calls and irq_deliver() runs
 * under vm->io_lock. Lock order is vm->io_lock, then one LAPIC's lock. */
#ifndef ACCORD_DEV_DEVICES_H
#define ACCORD_DEV_DEVICES_H

#include <stdbool.h>
#include <stdint.h>

struct vm;
struct lapic;
struct serial;
struct rtc;
struct pic;
struct pit;
struct ioapic;
struct acpipm;

/* APIC delivery modes, shared by the IOAPIC redirection entries, the LAPIC
 * ICR and MSI data */
enum {
	APIC_DM_FIXED = 0,
	APIC_DM_LOWEST = 1,
	APIC_DM_SMI = 2,
	APIC_DM_NMI = 4,
	APIC_DM_INIT = 5,
	APIC_DM_STARTUP = 6,
	APIC_DM_EXTINT = 7,
};

enum { APIC_DEST_NONE, APIC_DEST_SELF, APIC_DEST_ALL, APIC_DEST_OTHERS };

/* one interrupt message on the APIC bus */
struct irq_msg {
	uint8_t vector;
	uint8_t mode;      /* APIC_DM_* */
	bool logical;      /* destination mode */
	bool level;        /* trigger mode */
	uint8_t shorthand; /* APIC_DEST_* */
	uint8_t dest;      /* APIC ID or logical mask */
};

/* irq.c: fan a message out to the LAPICs it names. src is the sending
 * LAPIC for shorthands (NULL from the IOAPIC and MSIs). Takes only LAPIC
 * locks, so any thread may call it. */
void irq_deliver(struct vm *vm, const struct irq_msg *m, struct lapic *src);
/* split irqchip: IOAPIC pin's message mirrored to the engine (valid false:
 * none), so that its LAPICs report the EOI of a level-triggered vector */
void irq_route_pin(struct vm *vm, int pin, const struct irq_msg *m, bool valid);

/* lapic.c: the parts of a LAPIC that irq_deliver needs */
bool lapic_match(struct lapic *l, uint8_t dest, bool logical);
uint32_t lapic_arb_priority(struct lapic *l);
void lapic_nmi(struct lapic *l);
void lapic_init_ipi(struct lapic *l);
void lapic_extint(struct lapic *l);
/* true when the PIC's INTR reaches this LAPIC (LINT0 as ExtINT, hardware
 * disabled APIC, or an ExtINT redirection from the IOAPIC) */
bool lapic_wired_to_pic(struct lapic *l);

/* pic.c: the 8259A pair, ISA IRQs 0-15 */
struct pic *pic_create(struct vm *vm);
void pic_destroy(struct pic *p);
void pic_set_irq(struct pic *p, int irq, int level);
/* INTR output, readable without vm->io_lock */
bool pic_output(struct pic *p);
/* the vector an INTA cycle returns now, or -1 (peek) when nothing is
 * pending; ack performs the INTA cycle */
int pic_intack(struct pic *p, bool ack);

/* ioapic.c */
struct ioapic *ioapic_create(struct vm *vm);
void ioapic_destroy(struct ioapic *a);
void ioapic_set_irq(struct ioapic *a, int pin, int level);

/* pit.c: 8254 and port 0x61 */
struct pit *pit_create(struct vm *vm);
void pit_destroy(struct pit *p);
/* fire a due channel 0 interrupt; ns until the next one or -1 */
int64_t pit_poll(struct pit *p);

/* rtc.c */
struct rtc *rtc_create(struct vm *vm);
void rtc_destroy(struct rtc *r);
int64_t rtc_poll(struct rtc *r);

/* serial.c: COM1, writing what the guest transmits to out_fd */
struct serial *serial_create(struct vm *vm, int out_fd);
/* after the I/O thread has stopped */
void serial_destroy(struct serial *s);
/* bytes the guest transmitted and received, under vm->io_lock */
void serial_counters(struct serial *s, uint64_t *tx_bytes, uint64_t *rx_bytes);

/* acpipm.c: PM1 event/control, PM timer, reset ports, POST port, port 0x92
 * and the keyboard controller's status/command port */
struct acpipm *acpipm_create(struct vm *vm);
void acpipm_destroy(struct acpipm *pm);
/* press the fixed-feature power button (PWRBTN_STS and the SCI), under
 * vm->io_lock; -1 when the guest has not enabled it (PWRBTN_EN) */
int acpipm_power_button(struct acpipm *pm);

/* debugexit.c */
int debugexit_init(struct vm *vm);

#endif
