/* virtio-console (virtio 1.x, 5.3) with one port and no optional features:
 * queue 0 receives (host to guest), queue 1 transmits. Linux makes the
 * port hvc0. What the guest transmits is written to the console's output
 * fd at once, as serial.c does with its transmitter; what arrives on the
 * input fd is read by a thread that, under vm->io_lock, copies it into
 * the receive buffers the driver posted, and waits for more buffers when
 * there are none, so that typed or pasted input is never dropped. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "dev/virtio/virtio.h"
#include "vm/clock.h"
#include "vm/vm.h"

#define VIRTIO_ID_CONSOLE 3
#define RXQ 0
#define TXQ 1
/* struct virtio_console_config: cols, rows, max_nr_ports, emerg_wr; every
 * field belongs to a feature not offered, so all read zero */
#define CONFIG_LEN 12
/* how long the reader waits for receive buffers before it looks again */
#define RX_RETRY_NS 50000000

struct virtio_console {
	struct virtio_dev vd;
	int in_fd, out_fd;
	pthread_t reader;
	bool has_reader;
	bool stop;		 /* under vm->io_lock */
	int wake[2];		 /* a byte here stops the reader */
	pthread_cond_t rx_space; /* with vm->io_lock: the driver posted buffers */
	uint64_t rx_bytes, tx_bytes;
	struct virtq_req req;	 /* under vm->io_lock */
};

static bool con_running(const struct virtio_dev *vd)
{
	return (vd->status & (VIRTIO_S_DRIVER_OK | VIRTIO_S_NEEDS_RESET)) == VIRTIO_S_DRIVER_OK;
}

/* copy up to n bytes of input into the receive queue; returns how many
 * the guest took. Under vm->io_lock. */
static size_t con_receive(struct virtio_console *c, const uint8_t *buf, size_t n)
{
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
		pthread_cond_signal(&c->rx_space);
}

static const struct virtio_dev_ops con_ops = { .notify = con_notify };

static void *con_reader(void *arg)
{
	struct virtio_console *c = arg;
	pthread_mutex_t *io_lock = &c->vd.vm->io_lock;
	uint8_t buf[256];
	bool stop = false;
	ssize_t n;

	while (!stop) {
		struct pollfd pfd[2] = { { .fd = c->in_fd, .events = POLLIN },
					 { .fd = c->wake[0], .events = POLLIN } };

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents)
			break;
		n = read(c->in_fd, buf, sizeof(buf));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break; /* end of input */
		pthread_mutex_lock(io_lock);
		for (size_t done = 0; !c->stop;) {
			done += con_receive(c, buf + done, n - done);
			if (done == (size_t)n)
				break;
			/* the guest is behind, or its driver is not up yet. A
			 * notification of the receive queue wakes us; buffers
			 * posted before DRIVER_OK, whose notifications the
			 * transport drops, are found at the next look. */
			struct timespec until = clock_after(CLOCK_REALTIME, RX_RETRY_NS);

			pthread_cond_timedwait(&c->rx_space, io_lock, &until);
		}
		stop = c->stop;
		pthread_mutex_unlock(io_lock);
	}
	return NULL;
}

struct virtio_console *virtio_console_create(struct vm *vm, struct pci_bus *bus, int in_fd,
					     int out_fd)
{
	struct virtio_console *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->in_fd = in_fd;
	c->out_fd = out_fd;
	c->wake[0] = c->wake[1] = -1;
	pthread_cond_init(&c->rx_space, NULL);
	c->vd.device_id = VIRTIO_ID_CONSOLE;
	c->vd.ops = &con_ops;
	c->vd.opaque = c;
	c->vd.nqueues = 2;
	c->vd.config_len = CONFIG_LEN;
	/* the reader finds the device not running until a driver sets it up */
	c->vd.vm = vm;
	if (in_fd >= 0) {
		if (pipe(c->wake) < 0 || pthread_create(&c->reader, NULL, con_reader, c))
			goto fail;
		c->has_reader = true;
	}
	/* class 0x078000: other communication controller, as QEMU's */
	if (virtio_pci_init(&c->vd, vm, bus, 0x078000))
		goto fail;
	return c;
fail:
	fprintf(stderr, "accord: --console virtio: cannot add the virtio-console device\n");
	virtio_console_destroy(c);
	return NULL;
}

void virtio_console_destroy(struct virtio_console *c)
{
	if (!c)
		return;
	if (c->has_reader) {
		pthread_mutex_lock(&c->vd.vm->io_lock);
		c->stop = true;
		pthread_cond_broadcast(&c->rx_space);
		pthread_mutex_unlock(&c->vd.vm->io_lock);
		while (write(c->wake[1], "", 1) < 0 && errno == EINTR)
			;
		pthread_join(c->reader, NULL);
	}
	for (int i = 0; i < 2; i++)
		if (c->wake[i] >= 0)
			close(c->wake[i]);
	pthread_cond_destroy(&c->rx_space);
	free(c);
}
