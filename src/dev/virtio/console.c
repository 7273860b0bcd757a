/* virtio-console (virtio 1.x, 5.3) with one port and no optional features:
 * queue 0 receives (host to guest), queue 1 transmits. Linux makes the
 * port hvc0. What the guest transmits is written to the console's output
 * fd at once, as serial.c does with its transmitter; the terminal's input
 * comes from the I/O thread (vm/console.h), which copies it into the
 * receive buffers the driver posted under vm->io_lock and, when there are
 * none, waits for the driver's notification of the receive queue, so that
 * typed or pasted input is never dropped. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "dev/virtio/virtio.h"
#include "vm/console.h"
#include "vm/vm.h"

#define VIRTIO_ID_CONSOLE 3
#define RXQ 0
#define TXQ 1
/* struct virtio_console_config: cols, rows, max_nr_ports, emerg_wr; every
 * field belongs to a feature not offered, so all read zero */
#define CONFIG_LEN 12

struct virtio_console {
	struct virtio_dev vd;
	int out_fd;
	struct console_input *in; /* the terminal, when hvc0 has it */
	uint64_t rx_bytes, tx_bytes;
	struct virtq_req req;	 /* under vm->io_lock */
};

static bool con_running(const struct virtio_dev *vd)
{
	return (vd->status & (VIRTIO_S_DRIVER_OK | VIRTIO_S_NEEDS_RESET)) == VIRTIO_S_DRIVER_OK;
}

/* copy up to n bytes of input into the receive queue; returns how many
 * the guest took. Under vm->io_lock. */
static size_t con_receive(void *dev, const uint8_t *buf, size_t n)
{
	struct virtio_console *c = dev;
	struct virtio_dev *vd = &c->vd;
	struct virtq *q = &vd->vq[RXQ];
	size_t done = 0;
	bool irq = false;
	int rc = 0;

	if (!con_running(vd))
		return 0;
	while (done < n && (rc = vq_pop(vd->vm, q, &c->req)) > 0) {
		uint64_t w;

		/* receive buffers are device-writable only */
		if (c->req.nr) {
			rc = -1;
			break;
		}
		w = vq_write(&c->req, 0, buf + done, n - done);
		done += w;
		if (vq_push(q, c->req.head, w))
			irq = true;
	}
	if (irq)
		virtio_notify_queue(vd, RXQ);
	if (rc < 0)
		virtio_needs_reset(vd);
	c->rx_bytes += done;
	return done;
}

static void con_write_out(struct virtio_console *c, const uint8_t *p, uint64_t len)
{
	while (len) {
		ssize_t w = write(c->out_fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		/* a console that cannot take the bytes loses them, as the UART does */
		if (w <= 0)
			return;
		p += w;
		len -= w;
	}
}

static void con_transmit(struct virtio_console *c)
{
	struct virtio_dev *vd = &c->vd;
	struct virtq *q = &vd->vq[TXQ];
	bool irq = false;
	int rc;

	while ((rc = vq_pop(vd->vm, q, &c->req)) > 0) {
		/* transmit buffers are driver-readable only */
		if (c->req.nw) {
			rc = -1;
			break;
		}
		for (unsigned i = 0; i < c->req.nr && c->out_fd >= 0; i++)
			con_write_out(c, c->req.seg[i].p, c->req.seg[i].len);
		c->tx_bytes += c->req.rlen;
		if (vq_push(q, c->req.head, 0))
			irq = true;
	}
	if (irq)
		virtio_notify_queue(vd, TXQ);
	if (rc < 0)
		virtio_needs_reset(vd);
}

static void con_notify(struct virtio_dev *vd, int q)
{
	struct virtio_console *c = vd->opaque;

	if (q == TXQ)
		con_transmit(c);
	else
		console_input_room(c->in);
}

static const struct virtio_dev_ops con_ops = { .notify = con_notify };

struct virtio_console *virtio_console_create(struct vm *vm, struct pci_bus *bus, int out_fd)
{
	struct virtio_console *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->out_fd = out_fd;
	c->vd.device_id = VIRTIO_ID_CONSOLE;
	c->vd.ops = &con_ops;
	c->vd.opaque = c;
	c->vd.nqueues = 2;
	c->vd.config_len = CONFIG_LEN;
	c->vd.vm = vm;
	/* class 0x078000: other communication controller, as QEMU's */
	if (virtio_pci_init(&c->vd, vm, bus, 0x078000)) {
		fprintf(stderr, "accord: --console virtio: cannot add the virtio-console device\n");
		free(c);
		return NULL;
	}
	return c;
}

int virtio_console_attach_input(struct virtio_console *c, struct iothread *io, int fd)
{
	c->in = console_input_start(c->vd.vm, io, fd, con_receive, c);
	return c->in ? 0 : -1;
}

void virtio_console_destroy(struct virtio_console *c)
{
	if (!c)
		return;
	console_input_free(c->in);
	virtio_pci_release(&c->vd);
	free(c);
}
