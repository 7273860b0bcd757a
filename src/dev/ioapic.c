/* I/O APIC at IOAPIC_BASE: 24 pins, GSI n on pin n, version 0x11. Runs
 * under vm->io_lock (the bus, vm_set_irq callers, ioapic_eoi). */
#include <stdlib.h>

#include "dev/dev.h"
#include "dev/devices.h"
#include "dev/platform.h"
#include "vm/vm.h"
#include "vm/snapshot.h"

#define IOAPIC_VERSION 0x11
#define IOAPIC_MMIO_SIZE 0x1000

enum { REG_IOREGSEL = 0x00, REG_IOWIN = 0x10 };
enum { IOAPICID = 0, IOAPICVER = 1, IOAPICARB = 2, IOREDTBL = 0x10 };

#define REDIR_LOGICAL (1ull << 11)
#define REDIR_DELIVERY_STATUS (1ull << 12)
#define REDIR_REMOTE_IRR (1ull << 14)
#define REDIR_LEVEL (1ull << 15)
#define REDIR_MASKED (1ull << 16)
/* vector, delivery and destination mode, polarity, trigger, mask, dest */
#define REDIR_WRITABLE 0xFF0000000001AFFFull

struct ioapic_state {
	uint32_t id;	 /* IOAPICID: bits 24-27 */
	uint32_t regsel; /* IOREGSEL */
	uint32_t line;	 /* input pin levels */
	uint64_t redir[IOAPIC_PINS];
};

struct ioapic {
	struct vm *vm;
	struct ioapic_state s;
};

static struct irq_msg ioapic_msg(uint64_t e)
{
	return (struct irq_msg){
		.vector = e & 0xFF,
		.mode = e >> 8 & 7,
		.logical = (e & REDIR_LOGICAL) != 0,
		.level = (e & REDIR_LEVEL) != 0,
		.shorthand = APIC_DEST_NONE,
		.dest = e >> 56,
	};
}

/* The split irqchip's LAPICs report an EOI only for the vectors of the
 * level-triggered pins they know of: tell them each such pin as it is now */
static void ioapic_route(struct ioapic *a, int pin)
{
	uint64_t e = a->s.redir[pin];
	struct irq_msg m = ioapic_msg(e);

	irq_route_pin(a->vm, pin, &m,
		      !(e & REDIR_MASKED) && m.level && (m.mode == APIC_DM_FIXED || m.mode == APIC_DM_LOWEST));
}

static void ioapic_service(struct ioapic *a, int pin)
{
	uint64_t e = a->s.redir[pin];
	struct irq_msg m = ioapic_msg(e);

	if (e & REDIR_MASKED)
		return;
	/* only fixed and lowest-priority interrupts end with an EOI, so
	 * only they hold the pin with remote IRR */
	if (m.level && (m.mode == APIC_DM_FIXED || m.mode == APIC_DM_LOWEST)) {
		if (!(a->s.line >> pin & 1) || (e & REDIR_REMOTE_IRR))
			return;
		a->s.redir[pin] |= REDIR_REMOTE_IRR;
	}
	irq_deliver(a->vm, &m, NULL);
}

void ioapic_set_irq(struct ioapic *a, int pin, int level)
{
	uint32_t bit;
	bool was;

	if (pin < 0 || pin >= IOAPIC_PINS)
		return;
	bit = 1u << pin;
	was = a->s.line & bit;
	if (!level) {
		a->s.line &= ~bit;
		return;
	}
	a->s.line |= bit;
	if ((a->s.redir[pin] & REDIR_LEVEL) || !was)
		ioapic_service(a, pin);
}

void ioapic_eoi(struct vm *vm, int vector)
{
	struct ioapic *a = vm->ioapic;

	if (!a)
		return;
	pthread_mutex_lock(&vm->io_lock);
	for (int pin = 0; pin < IOAPIC_PINS; pin++) {
		uint64_t e = a->s.redir[pin];

		if ((int)(e & 0xFF) != vector || !(e & REDIR_LEVEL) || !(e & REDIR_REMOTE_IRR))
			continue;
		a->s.redir[pin] &= ~REDIR_REMOTE_IRR;
		/* a line still asserted interrupts again */
		ioapic_service(a, pin);
	}
	pthread_mutex_unlock(&vm->io_lock);
}

static uint32_t ioapic_reg_read(struct ioapic *a, uint32_t reg)
{
	uint64_t e;

	switch (reg) {
	case IOAPICID:
	case IOAPICARB:
		return a->s.id;
	case IOAPICVER:
		return (IOAPIC_PINS - 1) << 16 | IOAPIC_VERSION;
	}
	if (reg < IOREDTBL || reg >= IOREDTBL + 2 * IOAPIC_PINS)
		return 0;
	e = a->s.redir[(reg - IOREDTBL) / 2];
	return reg & 1 ? (uint32_t)(e >> 32) : (uint32_t)e;
}

static void ioapic_reg_write(struct ioapic *a, uint32_t reg, uint32_t val)
{
	uint64_t old, e;
	int pin;

	if (reg == IOAPICID) {
		a->s.id = val & 0x0F000000;
		return;
	}
	if (reg < IOREDTBL || reg >= IOREDTBL + 2 * IOAPIC_PINS)
		return;
	pin = (reg - IOREDTBL) / 2;
	old = a->s.redir[pin];
	if (reg & 1)
		e = (old & 0xFFFFFFFFull) | (uint64_t)val << 32;
	else
		e = (old & ~0xFFFFFFFFull) | val;
	e = (e & REDIR_WRITABLE) | (old & (REDIR_REMOTE_IRR | REDIR_DELIVERY_STATUS));
	/* remote IRR means nothing on an edge-triggered pin */
	if (!(e & REDIR_LEVEL))
		e &= ~REDIR_REMOTE_IRR;
	a->s.redir[pin] = e;
	if ((e ^ old) & ~(REDIR_REMOTE_IRR | REDIR_DELIVERY_STATUS))
		ioapic_route(a, pin);
	/* unmasking a pin whose line is held asserts it now */
	if (e & REDIR_LEVEL)
		ioapic_service(a, pin);
}

static uint64_t ioapic_mmio_read(void *opaque, uint64_t off, int size)
{
	struct ioapic *a = opaque;
	uint64_t v;

	if (off < REG_IOREGSEL + 4)
		v = a->s.regsel;
	else if (off >= REG_IOWIN && off < REG_IOWIN + 4)
		v = ioapic_reg_read(a, a->s.regsel);
	else
		return 0;
	v >>= (off & 3) * 8;
	return size >= 8 ? v : v & ((1ull << size * 8) - 1);
}

static void ioapic_mmio_write(void *opaque, uint64_t off, uint64_t val, int size)
{
	struct ioapic *a = opaque;

	if (off == REG_IOREGSEL)
		a->s.regsel = val & 0xFF;
	else if (off == REG_IOWIN && size >= 4)
		ioapic_reg_write(a, a->s.regsel, (uint32_t)val);
}

static const struct io_ops ioapic_ops = {
	.read = ioapic_mmio_read,
	.write = ioapic_mmio_write,
};

static int ioapic_save(void *o, struct snap_buf *b, char *err, size_t n)
{
	struct ioapic *a = o;

	snap_put(b, &a->s, sizeof(a->s));
	return 0;
}

static int ioapic_load(void *o, struct snap_rd *r, char *err, size_t n)
{
	struct ioapic *a = o;

	if (!snap_get(r, &a->s, sizeof(a->s)))
		return -1;
	for (int pin = 0; pin < IOAPIC_PINS; pin++)
		ioapic_route(a, pin);
	return 0;
}

struct ioapic *ioapic_create(struct vm *vm)
{
	struct ioapic *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	a->vm = vm;
	/* the MADT gives the IOAPIC the first ID after the LAPICs' */
	a->s.id = (uint32_t)(vm->ncpus & 0xF) << 24;
	for (int i = 0; i < IOAPIC_PINS; i++)
		a->s.redir[i] = REDIR_MASKED;
	if (bus_register(&vm->mmio, IOAPIC_BASE, IOAPIC_MMIO_SIZE, &ioapic_ops, a, "ioapic") ||
	    vm_snap_register(vm, "ioapic", ioapic_save, ioapic_load, a)) {
		free(a);
		return NULL;
	}
	return a;
}

void ioapic_destroy(struct ioapic *a)
{
	free(a);
}
