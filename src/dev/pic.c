/* The two cascaded 8259A PICs (master 0x20/0x21, slave 0xA0/0xA1 on the
 * master's IR2) and the PIIX edge/level control registers at 0x4d0/0x4d1.
 * The master's INTR reaches the LAPICs' LINT0 (virtual wire) and IOAPIC
 * pin 0. Runs under vm->io_lock; the INTR level is also kept in an atomic
 * so that a vCPU can look at it without the lock. */
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "dev/dev.h"
#include "dev/devices.h"
#include "vm/vm.h"
#include "vm/snapshot.h"

enum { MASTER, SLAVE };
#define CASCADE_IRQ 2

#define ICW1_IC4 0x01
#define ICW1_SNGL 0x02
#define ICW1_INIT 0x10
#define ICW4_AEOI 0x02
#define ICW4_SFNM 0x10
#define OCW3_SEL 0x08
#define OCW3_RIS 0x01
#define OCW3_RR 0x02
#define OCW3_POLL 0x04
#define OCW3_SMM 0x20
#define OCW3_ESMM 0x40

struct pic_chip {
	uint8_t irr, isr, imr;
	uint8_t line;	/* input levels, for edge detection */
	uint8_t elcr;	/* level-triggered inputs */
	uint8_t base;	/* ICW2: vector of IR0 */
	uint8_t lowest; /* IR with the lowest priority (rotation) */
	uint8_t init_step; /* 0: ready; 2, 3, 4: expecting that ICW */
	bool icw4, single;
	bool auto_eoi, rotate_on_aeoi, special_fully_nested;
	bool special_mask, read_isr, poll;
};

struct pic_state {
	struct pic_chip chip[2];
};

struct pic;
/* what a chip's two ports hand to the bus */
struct pic_port {
	struct pic *pic;
	int which;
};

struct pic {
	struct vm *vm;
	atomic_bool output;
	struct pic_port port[2];
	struct pic_state s;
};

/* inputs that cannot be level-triggered: timer, keyboard, cascade, RTC,
 * FPU error */
static const uint8_t elcr_writable[2] = { 0xF8, 0xDE };

static int prio(const struct pic_chip *c, int irq)
{
	return (irq - c->lowest - 1) & 7;
}

/* the highest-priority IR in bits, or -1 */
static int chip_highest(const struct pic_chip *c, uint8_t bits)
{
	for (int i = 1; i <= 8; i++) {
		int irq = (c->lowest + i) & 7;

		if (bits >> irq & 1)
			return irq;
	}
	return -1;
}

/* the IR this chip would present on INTA, or -1 */
static int chip_pending(const struct pic_chip *c, bool master)
{
	int irq = chip_highest(c, c->irr & ~c->imr), busy;
	uint8_t isr = c->isr;

	if (irq < 0)
		return -1;
	if (c->special_mask)
		isr &= ~c->imr;
	/* in special fully nested mode the slave may interrupt its own
	 * in-service cascade */
	if (master && c->special_fully_nested)
		isr &= ~(1u << CASCADE_IRQ);
	busy = chip_highest(c, isr);
	if (busy >= 0 && prio(c, busy) <= prio(c, irq))
		return -1;
	return irq;
}

static void chip_set_line(struct pic_chip *c, int irq, int level)
{
	uint8_t bit = 1u << irq;

	if (c->elcr & bit) {
		if (level)
			c->irr |= bit;
		else
			c->irr &= ~bit;
	} else if (level && !(c->line & bit)) {
		c->irr |= bit;
	}
	if (level)
		c->line |= bit;
	else
		c->line &= ~bit;
}

static void chip_ack(struct pic_chip *c, int irq)
{
	uint8_t bit = 1u << irq;

	if (!(c->elcr & bit))
		c->irr &= ~bit;
	if (!c->auto_eoi)
		c->isr |= bit;
	else if (c->rotate_on_aeoi)
		c->lowest = irq;
}

static void pic_update(struct pic *p)
{
	struct pic_chip *m = &p->s.chip[MASTER], *sl = &p->s.chip[SLAVE];
	bool out;

	/* the cascade input follows the slave's INT, so that a request the
	 * slave withdraws does not leave a spurious IR2 behind */
	if (chip_pending(sl, false) >= 0)
		m->irr |= 1u << CASCADE_IRQ;
	else
		m->irr &= ~(1u << CASCADE_IRQ);
	out = chip_pending(m, true) >= 0;
	if (out == atomic_load(&p->output))
		return;
	atomic_store(&p->output, out);
	if (p->vm->ioapic)
		ioapic_set_irq(p->vm->ioapic, 0, out);
	if (!out)
		return;
	for (int i = 0; i < p->vm->ncpus && i < VM_MAX_CPUS; i++) {
		struct vcpu *v = p->vm->vcpu[i];

		if (v && v->lapic && lapic_wired_to_pic(v->lapic))
			vm_kick_vcpu(v);
	}
}

void pic_set_irq(struct pic *p, int irq, int level)
{
	if (irq < 0 || irq > 15 || irq == CASCADE_IRQ)
		return;
	chip_set_line(&p->s.chip[irq >> 3], irq & 7, level);
	pic_update(p);
}

bool pic_output(struct pic *p)
{
	return atomic_load(&p->output);
}

int pic_extint(struct vm *vm, bool ack)
{
	int v = -1;

	if (!vm->pic || !pic_output(vm->pic))
		return -1;
	pthread_mutex_lock(&vm->io_lock);
	v = pic_intack(vm->pic, ack);
	pthread_mutex_unlock(&vm->io_lock);
	return v;
}

int pic_intack(struct pic *p, bool ack)
{
	struct pic_chip *m = &p->s.chip[MASTER], *sl = &p->s.chip[SLAVE];
	int irq = chip_pending(m, true), sirq, vec;

	if (irq < 0) {
		/* INTA with nothing left: the master answers IR7 */
		if (!ack)
			return -1;
		return m->base | 7;
	}
	if (irq == CASCADE_IRQ && !m->single) {
		sirq = chip_pending(sl, false);
		vec = sirq < 0 ? sl->base | 7 : sl->base | sirq;
		if (ack && sirq >= 0)
			chip_ack(sl, sirq);
	} else {
		vec = m->base | irq;
	}
	if (ack) {
		chip_ack(m, irq);
		pic_update(p);
	}
	return vec;
}

static void chip_eoi(struct pic_chip *c, uint8_t ocw2)
{
	int irq;

	switch (ocw2 >> 5) {
	case 1: /* non-specific EOI */
	case 5: /* rotate on non-specific EOI */
		irq = chip_highest(c, c->isr);
		if (irq < 0)
			return;
		c->isr &= ~(1u << irq);
		if (ocw2 >> 5 == 5)
			c->lowest = irq;
		break;
	case 3: /* specific EOI */
	case 7: /* rotate on specific EOI */
		c->isr &= ~(1u << (ocw2 & 7));
		if (ocw2 >> 5 == 7)
			c->lowest = ocw2 & 7;
		break;
	case 6: /* set priority */
		c->lowest = ocw2 & 7;
		break;
	case 4:
		c->rotate_on_aeoi = true;
		break;
	case 0:
		c->rotate_on_aeoi = false;
		break;
	}
}

static void chip_write_cmd(struct pic_chip *c, uint8_t v)
{
	if (v & ICW1_INIT) {
		/* ICW1 resets the chip; edge detection restarts, so only
		 * level-triggered inputs that are held stay requested */
		c->irr = c->line & c->elcr;
		c->isr = 0;
		c->imr = 0;
		c->lowest = 7;
		c->special_mask = false;
		c->read_isr = false;
		c->poll = false;
		c->auto_eoi = false;
		c->rotate_on_aeoi = false;
		c->special_fully_nested = false;
		c->icw4 = v & ICW1_IC4;
		c->single = v & ICW1_SNGL;
		c->init_step = 2;
	} else if (v & OCW3_SEL) {
		if (v & OCW3_POLL)
			c->poll = true;
		if (v & OCW3_RR)
			c->read_isr = v & OCW3_RIS;
		if (v & OCW3_ESMM)
			c->special_mask = v & OCW3_SMM;
	} else {
		chip_eoi(c, v);
	}
}

static void chip_write_data(struct pic_chip *c, uint8_t v)
{
	switch (c->init_step) {
	case 2:
		c->base = v & 0xF8;
		c->init_step = !c->single ? 3 : c->icw4 ? 4 : 0;
		break;
	case 3: /* cascade wiring is fixed: nothing to learn from ICW3 */
		c->init_step = c->icw4 ? 4 : 0;
		break;
	case 4:
		c->auto_eoi = v & ICW4_AEOI;
		c->special_fully_nested = v & ICW4_SFNM;
		c->init_step = 0;
		break;
	default:
		c->imr = v;
	}
}

/* a poll command turns the next read into an INTA cycle */
static uint8_t pic_poll(struct pic *p, int which)
{
	struct pic_chip *c = &p->s.chip[which];
	int irq = chip_pending(c, which == MASTER);

	c->poll = false;
	if (irq < 0)
		return 0;
	chip_ack(c, irq);
	if (which == SLAVE)
		chip_ack(&p->s.chip[MASTER], CASCADE_IRQ);
	return 0x80 | irq;
}

static uint64_t pic_read(void *opaque, uint64_t off, int size)
{
	struct pic_port *port = opaque;
	struct pic *p = port->pic;
	struct pic_chip *c = &p->s.chip[port->which];
	uint8_t v;

	if (off & 1)
		return c->imr;
	if (!c->poll)
		return c->read_isr ? c->isr : c->irr;
	v = pic_poll(p, port->which);
	pic_update(p);
	return v;
}

static void pic_write(void *opaque, uint64_t off, uint64_t val, int size)
{
	struct pic_port *port = opaque;
	struct pic *p = port->pic;
	struct pic_chip *c = &p->s.chip[port->which];

	if (off & 1)
		chip_write_data(c, (uint8_t)val);
	else
		chip_write_cmd(c, (uint8_t)val);
	pic_update(p);
}

static const struct io_ops pic_ops = {
	.read = pic_read,
	.write = pic_write,
};

static uint64_t elcr_read(void *opaque, uint64_t off, int size)
{
	struct pic *p = opaque;
	uint64_t v = 0;

	for (int i = 0; i < size && off + i < 2; i++)
		v |= (uint64_t)p->s.chip[off + i].elcr << i * 8;
	return v;
}

static void elcr_write(void *opaque, uint64_t off, uint64_t val, int size)
{
	struct pic *p = opaque;

	for (int i = 0; i < size && off + i < 2; i++) {
		struct pic_chip *c = &p->s.chip[off + i];

		c->elcr = (uint8_t)(val >> i * 8) & elcr_writable[off + i];
	}
	pic_update(p);
}

static const struct io_ops elcr_ops = {
	.read = elcr_read,
	.write = elcr_write,
};

/* the chips' registers and the INTR output they gave, so that nothing of
 * the loaded state is interpreted before the guest runs */
static int pic_save(void *o, struct snap_buf *b, char *err, size_t n)
{
	struct pic *p = o;
	uint8_t out = atomic_load(&p->output);

	snap_put(b, &p->s, sizeof(p->s));
	snap_put(b, &out, 1);
	return 0;
}

static int pic_load(void *o, struct snap_rd *r, char *err, size_t n)
{
	struct pic *p = o;
	struct pic_state s;
	uint8_t out;

	if (!snap_get(r, &s, sizeof(s)) || !snap_get(r, &out, 1))
		return -1;
	for (int i = 0; i < 2; i++) {
		const struct pic_chip *c = &s.chip[i];
		const bool *flags[] = { &c->icw4, &c->single, &c->auto_eoi, &c->rotate_on_aeoi,
					&c->special_fully_nested, &c->special_mask, &c->read_isr, &c->poll };
		bool bools = true;
		for (size_t k = 0; k < sizeof(flags) / sizeof(flags[0]); k++)
			bools &= snap_bool_ok(flags[k]);
		if (c->lowest > 7 || c->init_step == 1 || c->init_step > 4 || !bools) {
			snprintf(err, n, "bad 8259 state");
			return -1;
		}
	}
	p->s = s;
	atomic_store(&p->output, out != 0);
	return 0;
}

struct pic *pic_create(struct vm *vm)
{
	struct pic *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->vm = vm;
	atomic_init(&p->output, false);
	/* as a BIOS leaves them: initialised, the master at vector 0x08 and
	 * the slave at 0x70, every input masked but the cascade */
	for (int i = 0; i < 2; i++) {
		p->port[i] = (struct pic_port){ p, i };
		p->s.chip[i].lowest = 7;
		p->s.chip[i].imr = 0xFF;
	}
	p->s.chip[MASTER].base = 0x08;
	p->s.chip[MASTER].imr &= ~(1u << CASCADE_IRQ);
	p->s.chip[SLAVE].base = 0x70;
	if (bus_register(&vm->pio, 0x20, 2, &pic_ops, &p->port[MASTER], "pic-master") ||
	    bus_register(&vm->pio, 0xA0, 2, &pic_ops, &p->port[SLAVE], "pic-slave") ||
	    bus_register(&vm->pio, 0x4D0, 2, &elcr_ops, p, "elcr") ||
	    vm_snap_register(vm, "pic", pic_save, pic_load, p)) {
		free(p);
		return NULL;
	}
	return p;
}

void pic_destroy(struct pic *p)
{
	free(p);
}
