/* 8254 programmable interval timer at 0x40-0x43, and port 0x61 (channel 2
 * gate, speaker data, OUT2). Counters are computed from vm_now_ns() when
 * they are read; channel 0's rising OUT edges raise ISA IRQ 0 (GSI 2) from
 * pit_poll() and on every access. Runs under vm->io_lock. */
#include <stdio.h>
#include <stdlib.h>

#include "dev/devices.h"
#include "vm/vm.h"
#include "vm/snapshot.h"

#define PIT_HZ 1193182ull
#define PIT_GSI 2
#define NSEC_PER_SEC 1000000000ull
/* a periodic channel 0 interrupts no more often than this, so that a guest
 * cannot make the poll loop spin */
#define PIT_MIN_PERIOD_TICKS 12
/* DRAM refresh request period, toggling port 0x61 bit 4 */
#define REFRESH_NS 15085

enum { RW_LATCH, RW_LSB, RW_MSB, RW_WORD };

#define P61_GATE2 0x01
#define P61_WRITABLE 0x0F
#define P61_REFRESH 0x10
#define P61_OUT2 0x20

struct pit_channel {
	uint8_t mode; /* 0-5 */
	uint8_t rw;   /* RW_LSB, RW_MSB or RW_WORD */
	bool bcd;
	bool gate;
	bool armed;	 /* counting from a loaded count (modes 1, 5: triggered) */
	bool null_count; /* programmed, no count loaded yet */
	uint32_t reload; /* 1-65536, or 1-10000 in BCD */
	uint64_t start_ns; /* when counting (re)started */
	uint64_t frozen;   /* ticks counted before start_ns */
	bool write_msb;	   /* RW_WORD: the MSB comes next */
	uint8_t write_lsb;
	bool read_msb; /* RW_WORD: the next read returns the MSB */
	bool count_latched, status_latched;
	uint16_t latch;
	uint8_t status;
	uint64_t irq_tick; /* channel 0: tick of the next rising OUT edge, 0: none */
};

struct pit_state {
	struct pit_channel ch[3];
	uint8_t port61;
};

struct pit {
	struct vm *vm;
	struct pit_state s;
};

static uint64_t ns_to_ticks(uint64_t ns)
{
	return (uint64_t)((unsigned __int128)ns * PIT_HZ / NSEC_PER_SEC);
}

/* rounds up, so that at the returned time the tick has happened */
static uint64_t ticks_to_ns(uint64_t t)
{
	return (uint64_t)(((unsigned __int128)t * NSEC_PER_SEC + PIT_HZ - 1) / PIT_HZ);
}

static bool gate_triggered(const struct pit_channel *c)
{
	return c->mode == 1 || c->mode == 5;
}

static uint64_t pit_ticks(const struct pit_channel *c, uint64_t now)
{
	bool running = c->armed && (c->gate || gate_triggered(c));

	if (!running || now < c->start_ns)
		return c->frozen;
	return c->frozen + ns_to_ticks(now - c->start_ns);
}

static bool pit_out(const struct pit_channel *c, uint64_t now)
{
	uint64_t n = c->reload, t = pit_ticks(c, now);

	switch (c->mode) {
	case 0:
		return c->armed && t >= n;
	case 1:
		return !c->armed || t >= n;
	case 2:
		return !c->armed || !c->gate || t % n != n - 1;
	case 3:
		return !c->armed || !c->gate || t % n < (n + 1) / 2;
	default: /* 4, 5: a one-tick low pulse at terminal count */
		return !c->armed || t != n;
	}
}

static uint16_t to_bcd(uint32_t v)
{
	return (uint16_t)(v % 10 | (v / 10 % 10) << 4 | (v / 100 % 10) << 8 |
			  (v / 1000 % 10) << 12);
}

static uint32_t from_bcd(uint16_t v)
{
	return (v & 0xF) + (v >> 4 & 0xF) * 10 + (v >> 8 & 0xF) * 100 + (v >> 12 & 0xF) * 1000;
}

static uint16_t pit_count(const struct pit_channel *c, uint64_t now)
{
	uint32_t mod = c->bcd ? 10000 : 65536;
	uint64_t n = c->reload, t = pit_ticks(c, now), v;

	if (!c->armed)
		v = n;
	else if (c->mode == 2)
		v = n - t % n;
	else if (c->mode == 3)
		v = n - 2 * (t % ((n + 1) / 2)); /* counts down by two per half */
	else
		v = (n + mod - t % mod) % mod; /* wraps past zero and goes on */
	v %= mod;
	return c->bcd ? to_bcd((uint32_t)v) : (uint16_t)v;
}

static uint8_t pit_status(const struct pit_channel *c, uint64_t now)
{
	return (uint8_t)(pit_out(c, now) << 7 | c->null_count << 6 | c->rw << 4 | c->mode << 1 |
			 c->bcd);
}

/* the first rising OUT edge after loading a count, for channel 0 */
static uint64_t pit_first_edge(const struct pit_channel *c)
{
	switch (c->mode) {
	case 0:
	case 2:
	case 3:
		return c->reload;
	case 4:
		return c->reload + 1;
	}
	return 0; /* modes 1 and 5 wait for a gate edge channel 0 never sees */
}

static void pit_irq_update(struct pit *p, uint64_t now)
{
	struct pit_channel *c = &p->s.ch[0];
	uint64_t t;

	if (!c->irq_tick)
		return;
	t = pit_ticks(c, now);
	if (t < c->irq_tick)
		return;
	vm_set_irq(p->vm, PIT_GSI, 1);
	vm_set_irq(p->vm, PIT_GSI, 0);
	if (c->mode != 2 && c->mode != 3) {
		c->irq_tick = 0;
		return;
	}
	/* missed periods coalesce into this one interrupt */
	c->irq_tick = (t / c->reload + 1) * c->reload;
	if (c->irq_tick < t + PIT_MIN_PERIOD_TICKS)
		c->irq_tick = t + PIT_MIN_PERIOD_TICKS;
}

int64_t pit_poll(struct pit *p)
{
	struct pit_channel *c = &p->s.ch[0];
	uint64_t now = vm_now_ns(p->vm), at;

	pit_irq_update(p, now);
	if (!c->irq_tick)
		return -1;
	/* channel 0's gate is always high: ticks run from start_ns */
	at = c->start_ns + ticks_to_ns(c->irq_tick - c->frozen);
	return at > now ? (int64_t)(at - now) : 0;
}

static void pit_load(struct pit *p, struct pit_channel *c, uint16_t w, uint64_t now)
{
	uint32_t mod = c->bcd ? 10000 : 65536;
	uint32_t n = c->bcd ? from_bcd(w) % mod : w;

	c->reload = n ? n : mod;
	c->null_count = false;
	c->frozen = 0;
	c->start_ns = now;
	/* modes 1 and 5 start counting on a rising gate */
	c->armed = !gate_triggered(c);
	if (c == &p->s.ch[0])
		c->irq_tick = c->armed ? pit_first_edge(c) : 0;
}

static void pit_set_gate(struct pit_channel *c, bool gate, uint64_t now)
{
	if (gate == c->gate)
		return;
	if (gate_triggered(c)) {
		if (gate && !c->null_count && c->reload) {
			c->armed = true;
			c->frozen = 0;
			c->start_ns = now;
		}
	} else if (!gate) {
		/* counting stops while the gate is low */
		c->frozen = pit_ticks(c, now);
	} else if (c->mode == 2 || c->mode == 3) {
		/* a rising gate reloads the count */
		c->frozen = 0;
		c->start_ns = now;
	} else {
		c->start_ns = now;
	}
	c->gate = gate;
}

static void pit_latch_count(struct pit_channel *c, uint64_t now)
{
	if (c->count_latched)
		return;
	c->latch = pit_count(c, now);
	c->count_latched = true;
}

static void pit_control(struct pit *p, uint8_t v, uint64_t now)
{
	struct pit_channel *c;
	int sc = v >> 6, rw = v >> 4 & 3, mode = v >> 1 & 7;

	if (sc == 3) {
		/* read-back: bit 5 clear latches counts, bit 4 clear latches
		 * status, bits 1-3 select the channels */
		for (int i = 0; i < 3; i++) {
			c = &p->s.ch[i];
			if (!(v >> (i + 1) & 1))
				continue;
			if (!(v & 0x20))
				pit_latch_count(c, now);
			if (!(v & 0x10) && !c->status_latched) {
				c->status = pit_status(c, now);
				c->status_latched = true;
			}
		}
		return;
	}
	c = &p->s.ch[sc];
	if (rw == RW_LATCH) {
		pit_latch_count(c, now);
		return;
	}
	c->rw = (uint8_t)rw;
	c->mode = (uint8_t)(mode > 5 ? mode & 3 : mode); /* 6, 7 alias 2, 3 */
	c->bcd = v & 1;
	c->armed = false;
	c->null_count = true;
	c->frozen = 0;
	c->write_msb = false;
	c->read_msb = false;
	c->count_latched = false;
	c->status_latched = false;
	c->irq_tick = 0;
}

static uint8_t pit_read_count(struct pit_channel *c, uint64_t now)
{
	uint16_t v;
	bool msb;

	if (c->status_latched) {
		c->status_latched = false;
		return c->status;
	}
	v = c->count_latched ? c->latch : pit_count(c, now);
	msb = c->rw == RW_MSB || (c->rw == RW_WORD && c->read_msb);
	if (c->rw == RW_WORD)
		c->read_msb = !c->read_msb;
	/* a latch holds until all of it is read */
	if (c->rw != RW_WORD || !c->read_msb)
		c->count_latched = false;
	return msb ? v >> 8 : v & 0xFF;
}

static void pit_write_count(struct pit *p, struct pit_channel *c, uint8_t v, uint64_t now)
{
	switch (c->rw) {
	case RW_LSB:
		pit_load(p, c, v, now);
		break;
	case RW_MSB:
		pit_load(p, c, (uint16_t)(v << 8), now);
		break;
	case RW_WORD:
		if (!c->write_msb) {
			c->write_lsb = v;
			c->write_msb = true;
			break;
		}
		c->write_msb = false;
		pit_load(p, c, (uint16_t)(c->write_lsb | v << 8), now);
		break;
	}
}

static uint64_t pit_port_read(void *opaque, uint64_t off, int size)
{
	struct pit *p = opaque;
	uint64_t now = vm_now_ns(p->vm);

	pit_irq_update(p, now);
	if (off == 3)
		return 0xFF; /* the control register is write-only */
	return pit_read_count(&p->s.ch[off], now);
}

static void pit_port_write(void *opaque, uint64_t off, uint64_t val, int size)
{
	struct pit *p = opaque;
	uint64_t now = vm_now_ns(p->vm);

	pit_irq_update(p, now);
	if (off == 3)
		pit_control(p, (uint8_t)val, now);
	else
		pit_write_count(p, &p->s.ch[off], (uint8_t)val, now);
}

static const struct io_ops pit_ops = {
	.read = pit_port_read,
	.write = pit_port_write,
};

static uint64_t port61_read(void *opaque, uint64_t off, int size)
{
	struct pit *p = opaque;
	uint64_t now = vm_now_ns(p->vm);
	uint8_t v = p->s.port61 & P61_WRITABLE;

	pit_irq_update(p, now);
	if (now / REFRESH_NS & 1)
		v |= P61_REFRESH;
	if (pit_out(&p->s.ch[2], now))
		v |= P61_OUT2;
	return v;
}

static void port61_write(void *opaque, uint64_t off, uint64_t val, int size)
{
	struct pit *p = opaque;
	uint64_t now = vm_now_ns(p->vm);

	pit_irq_update(p, now);
	p->s.port61 = val & P61_WRITABLE;
	pit_set_gate(&p->s.ch[2], val & P61_GATE2, now);
}

static const struct io_ops port61_ops = {
	.read = port61_read,
	.write = port61_write,
};

static int pit_snap_save(void *o, struct snap_buf *b, char *err, size_t n)
{
	struct pit *p = o;

	snap_put(b, &p->s, sizeof(p->s));
	return 0;
}

static int pit_snap_load(void *o, struct snap_rd *r, char *err, size_t n)
{
	struct pit *p = o;
	struct pit_state s;

	if (!snap_get(r, &s, sizeof(s)))
		return -1;
	for (int i = 0; i < 3; i++) {
		const struct pit_channel *c = &s.ch[i];
		const bool *flags[] = { &c->bcd, &c->gate, &c->armed, &c->null_count, &c->write_msb,
					&c->read_msb, &c->count_latched, &c->status_latched };
		bool bools = true;
		for (size_t k = 0; k < sizeof(flags) / sizeof(flags[0]); k++)
			bools &= snap_bool_ok(flags[k]);
		if (c->mode > 5 || c->rw > RW_WORD || c->reload < 1 || c->reload > 65536 || !bools) {
			snprintf(err, n, "bad 8254 channel %d", i);
			return -1;
		}
	}
	p->s = s;
	return 0;
}

struct pit *pit_create(struct vm *vm)
{
	struct pit *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->vm = vm;
	for (int i = 0; i < 3; i++) {
		p->s.ch[i].rw = RW_WORD;
		p->s.ch[i].reload = 65536;
		p->s.ch[i].null_count = true;
		/* only channel 2's gate is wired to port 0x61 */
		p->s.ch[i].gate = i != 2;
	}
	if (bus_register(&vm->pio, 0x40, 4, &pit_ops, p, "pit") ||
	    bus_register(&vm->pio, 0x61, 1, &port61_ops, p, "port61") ||
	    vm_snap_register(vm, "pit", pit_snap_save, pit_snap_load, p)) {
		free(p);
		return NULL;
	}
	return p;
}

void pit_destroy(struct pit *p)
{
	free(p);
}
