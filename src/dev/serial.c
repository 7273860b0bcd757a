/* 16550A UART at COM1_PORT on ISA IRQ COM1_IRQ. Transmitted bytes go
 * straight to the console's output fd, so the transmitter is always empty;
 * received bytes come from the terminal through the I/O thread
 * (vm/console.h, serial_attach_input) or serial_input, and wait in a
 * receive buffer deeper than the 16550's FIFO, so that pasted input is
 * never overrun: when it is full the terminal is not read until the guest
 * takes bytes. Everything runs under vm->io_lock. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "dev/dev.h"
#include "dev/devices.h"
#include "dev/platform.h"
#include "vm/console.h"
#include "vm/vm.h"
#include "vm/snapshot.h"

#define RX_SIZE 1024

enum { UART_RBR, UART_IER, UART_IIR, UART_LCR, UART_MCR, UART_LSR, UART_MSR, UART_SCR };
#define UART_THR UART_RBR
#define UART_FCR UART_IIR

#define IER_RDI 0x01  /* received data available */
#define IER_THRI 0x02 /* transmitter holding register empty */
#define IER_RLSI 0x04 /* receiver line status */
#define IER_MSI 0x08  /* modem status */
#define IER_WRITABLE 0x0F

#define IIR_NO_INT 0x01
#define IIR_MSI 0x00
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_RLSI 0x06
#define IIR_FIFO_ENABLED 0xC0

#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define FCR_STORED 0xC9 /* enable, DMA mode, trigger level */

#define LCR_DLAB 0x80

#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_WRITABLE 0x1F

#define LSR_DR 0x01
#define LSR_OE 0x02
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define MSR_DCTS 0x01
#define MSR_DDSR 0x02
#define MSR_TERI 0x04
#define MSR_DDCD 0x08
#define MSR_DELTAS 0x0F
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80

struct serial_state {
	uint8_t ier, lcr, mcr, fcr, scr, dll, dlm;
	uint8_t msr;
	uint8_t lsr_err;   /* overrun, latched until LSR is read */
	bool thr_ipending; /* THRE interrupt not yet taken through IIR */
	bool irq;
	uint16_t rx_head, rx_count;
	uint8_t rx[RX_SIZE];
};

struct serial {
	struct vm *vm;
	int out_fd;
	struct console_input *in; /* the terminal, when the UART has it */
	struct serial_state s;
	uint64_t tx_bytes, rx_bytes; /* counters for the control API */
};

static uint8_t serial_modem_lines(const struct serial_state *s)
{
	uint8_t m = s->mcr;

	/* outside loopback the line looks like a connected null modem */
	if (!(m & MCR_LOOP))
		return MSR_DCD | MSR_DSR | MSR_CTS;
	return (m & MCR_RTS ? MSR_CTS : 0) | (m & MCR_DTR ? MSR_DSR : 0) |
	       (m & MCR_OUT1 ? MSR_RI : 0) | (m & MCR_OUT2 ? MSR_DCD : 0);
}

static void serial_update_msr(struct serial_state *s)
{
	uint8_t old = s->msr, lines = serial_modem_lines(s), changed = old ^ lines;
	uint8_t delta = old & MSR_DELTAS;

	if (changed & MSR_CTS)
		delta |= MSR_DCTS;
	if (changed & MSR_DSR)
		delta |= MSR_DDSR;
	if (changed & MSR_DCD)
		delta |= MSR_DDCD;
	if ((old & MSR_RI) && !(lines & MSR_RI))
		delta |= MSR_TERI;
	s->msr = lines | delta;
}

static uint8_t serial_iir_id(const struct serial_state *s)
{
	if ((s->ier & IER_RLSI) && s->lsr_err)
		return IIR_RLSI;
	if ((s->ier & IER_RDI) && s->rx_count)
		return IIR_RDI;
	if ((s->ier & IER_THRI) && s->thr_ipending)
		return IIR_THRI;
	if ((s->ier & IER_MSI) && (s->msr & MSR_DELTAS))
		return IIR_MSI;
	return IIR_NO_INT;
}

static void serial_update_irq(struct serial *sp)
{
	struct serial_state *s = &sp->s;
	/* on a PC, OUT2 gates the UART's interrupt onto the ISA bus, and
	 * loopback disconnects OUT2 */
	bool level = serial_iir_id(s) != IIR_NO_INT && (s->mcr & (MCR_OUT2 | MCR_LOOP)) == MCR_OUT2;

	if (level == s->irq)
		return;
	s->irq = level;
	vm_set_irq(sp->vm, COM1_IRQ, level);
}

static bool rx_push(struct serial_state *s, uint8_t b)
{
	if (s->rx_count == RX_SIZE)
		return false;
	s->rx[(s->rx_head + s->rx_count) % RX_SIZE] = b;
	s->rx_count++;
	return true;
}

static uint8_t rx_pop(struct serial *sp)
{
	struct serial_state *s = &sp->s;
	uint8_t b;

	if (!s->rx_count)
		return 0;
	b = s->rx[s->rx_head];
	s->rx_head = (s->rx_head + 1) % RX_SIZE;
	s->rx_count--;
	sp->rx_bytes++;
	console_input_room(sp->in);
	return b;
}

static void rx_clear(struct serial *sp)
{
	sp->s.rx_head = 0;
	sp->s.rx_count = 0;
	console_input_room(sp->in);
}

int serial_input(struct serial *sp, const uint8_t *buf, int n)
{
	int i;

	for (i = 0; i < n && rx_push(&sp->s, buf[i]); i++)
		;
	serial_update_irq(sp);
	return i;
}

static void serial_transmit(struct serial *sp, uint8_t b)
{
	struct serial_state *s = &sp->s;
	ssize_t r;

	sp->tx_bytes++;
	if (s->mcr & MCR_LOOP) {
		if (!rx_push(s, b))
			s->lsr_err |= LSR_OE;
	} else if (sp->out_fd >= 0) {
		/* a console that cannot take the byte loses it, as a wire would */
		do
			r = write(sp->out_fd, &b, 1);
		while (r < 0 && errno == EINTR);
	}
	/* the byte left at once: the holding register is empty again */
	s->thr_ipending = true;
}

static uint64_t serial_read(void *opaque, uint64_t off, int size)
{
	struct serial *sp = opaque;
	struct serial_state *s = &sp->s;
	bool dlab = s->lcr & LCR_DLAB;
	uint8_t v = 0;

	switch (off) {
	case UART_RBR:
		v = dlab ? s->dll : rx_pop(sp);
		break;
	case UART_IER:
		v = dlab ? s->dlm : s->ier;
		break;
	case UART_IIR:
		v = serial_iir_id(s);
		/* reading IIR takes the THRE interrupt it reports */
		if (v == IIR_THRI)
			s->thr_ipending = false;
		if (s->fcr & FCR_ENABLE)
			v |= IIR_FIFO_ENABLED;
		break;
	case UART_LCR:
		v = s->lcr;
		break;
	case UART_MCR:
		v = s->mcr;
		break;
	case UART_LSR:
		v = s->lsr_err | LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0);
		s->lsr_err = 0;
		break;
	case UART_MSR:
		v = s->msr;
		s->msr &= ~MSR_DELTAS;
		break;
	case UART_SCR:
		v = s->scr;
		break;
	}
	serial_update_irq(sp);
	return v;
}

static void serial_write(void *opaque, uint64_t off, uint64_t val, int size)
{
	struct serial *sp = opaque;
	struct serial_state *s = &sp->s;
	bool dlab = s->lcr & LCR_DLAB;
	uint8_t v = (uint8_t)val;

	switch (off) {
	case UART_THR:
		if (dlab)
			s->dll = v;
		else
			serial_transmit(sp, v);
		break;
	case UART_IER:
		if (dlab) {
			s->dlm = v;
			break;
		}
		/* enabling the THRE interrupt with THR empty raises it anew */
		if ((v & IER_THRI) && !(s->ier & IER_THRI))
			s->thr_ipending = true;
		s->ier = v & IER_WRITABLE;
		break;
	case UART_FCR:
		/* switching the FIFOs on or off empties them */
		if (((v ^ s->fcr) & FCR_ENABLE) || (v & FCR_CLEAR_RX))
			rx_clear(sp);
		s->fcr = v & FCR_STORED;
		break;
	case UART_LCR:
		s->lcr = v;
		break;
	case UART_MCR:
		s->mcr = v & MCR_WRITABLE;
		serial_update_msr(s);
		break;
	case UART_SCR:
		s->scr = v;
		break;
	}
	serial_update_irq(sp);
}

static const struct io_ops serial_ops = {
	.read = serial_read,
	.write = serial_write,
};

static size_t serial_take(void *dev, const uint8_t *buf, size_t n)
{
	return serial_input(dev, buf, n > RX_SIZE ? RX_SIZE : (int)n);
}

/* the UART's registers and the bytes received but not yet read */
static int serial_save(void *o, struct snap_buf *b, char *err, size_t n)
{
	struct serial *sp = o;

	snap_put(b, &sp->s, sizeof(sp->s));
	return 0;
}

static int serial_load(void *o, struct snap_rd *r, char *err, size_t n)
{
	struct serial *sp = o;
	struct serial_state s;

	if (!snap_get(r, &s, sizeof(s)))
		return -1;
	if (s.rx_head >= RX_SIZE || s.rx_count > RX_SIZE) {
		snprintf(err, n, "bad receive buffer");
		return -1;
	}
	if (!snap_bool_ok(&s.thr_ipending) || !snap_bool_ok(&s.irq)) {
		snprintf(err, n, "bad interrupt state");
		return -1;
	}
	/* what the console typed since this process started follows what
	 * the guest had not read yet */
	unsigned typed = sp->s.rx_count;
	for (unsigned i = 0; i < typed && s.rx_count < RX_SIZE; i++, s.rx_count++)
		s.rx[(s.rx_head + s.rx_count) % RX_SIZE] = sp->s.rx[(sp->s.rx_head + i) % RX_SIZE];
	sp->s = s;
	if (typed)
		serial_update_irq(sp);
	return 0;
}

struct serial *serial_create(struct vm *vm, int out_fd)
{
	struct serial *sp = calloc(1, sizeof(*sp));

	if (!sp)
		return NULL;
	sp->vm = vm;
	sp->out_fd = out_fd;
	sp->s.msr = serial_modem_lines(&sp->s);
	if (bus_register(&vm->pio, COM1_PORT, 8, &serial_ops, sp, "serial") ||
	    vm_snap_register(vm, "serial", serial_save, serial_load, sp)) {
		serial_destroy(sp);
		return NULL;
	}
	return sp;
}

int serial_attach_input(struct serial *sp, struct iothread *io, int fd)
{
	sp->in = console_input_start(sp->vm, io, fd, serial_take, sp);
	return sp->in ? 0 : -1;
}

void serial_destroy(struct serial *sp)
{
	if (!sp)
		return;
	console_input_free(sp->in);
	free(sp);
}

void serial_counters(struct serial *sp, uint64_t *tx_bytes, uint64_t *rx_bytes)
{
	*tx_bytes = sp->tx_bytes;
	*rx_bytes = sp->rx_bytes;
}
