/* virtio-net (virtio 1.x, 5.1) on a network backend (src/net/): receive
 * queue 0, transmit queue 1, the 12-byte virtio_net_hdr, VIRTIO_NET_F_MAC,
 * VIRTIO_NET_F_STATUS (the link is always up) and VIRTIO_NET_F_MRG_RXBUF.
 * No checksum or segmentation offload is offered: every frame is whole
 * and carries its own checksums both ways.
 *
 * The guest's notifies are served on the I/O thread (the transport's
 * eventfds), so transmission runs there too, under vm->io_lock.
 * Received frames wait in a host-side queue (rxq) until the guest has
 * buffers for them; the I/O thread, woken through an eventfd, moves them
 * into guest memory under vm->io_lock and raises the queue's MSI-X vector,
 * so receiving never waits for a vCPU exit. When rxq fills up the backend
 * stops reading from the host; when the guest posts buffers (its notify of
 * queue 0) and the queue drains, the backend resumes. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "dev/virtio/virtio.h"
#include "net/net.h"
#include "vm/iothread.h"
#include "vm/vm.h"

#define VIRTIO_ID_NET 1

#define NET_F_MAC 5
#define NET_F_MRG_RXBUF 15
#define NET_F_STATUS 16

#define NET_S_LINK_UP 1
#define NET_HDR_LEN 12 /* struct virtio_net_hdr with num_buffers */
#define NET_HDR_GSO_NONE 0
#define ETH_HLEN 14

#define RXQ 0
#define TXQ 1

/* frames held for the guest: past RXQ_SOFT the backend stops reading;
 * RXQ_HARD bounds what a backend that cannot wait (slirp answering a
 * transmitted frame at once) may add before frames are dropped */
#define RXQ_SOFT 64
#define RXQ_HARD 256

struct rx_frame {
	struct rx_frame *next;
	size_t len;
	uint8_t data[];
};

struct virtio_net {
	struct virtio_dev vd;
	struct net_backend *nb;
	struct iothread *io;
	int kick_fd;

	pthread_mutex_t rxq_lock; /* after vm->io_lock and the backend's lock */
	struct rx_frame *rxq_head, *rxq_tail;
	unsigned rxq_len;

	uint64_t rx_frames, rx_bytes, rx_dropped;
	uint64_t tx_frames, tx_bytes, tx_dropped;
	struct virtq_req req;
	struct virtq_used used[VIRTQ_MAX_SIZE];
	uint8_t tx_buf[NET_MAX_FRAME];
};

static bool net_running(const struct virtio_dev *vd)
{
	return (vd->status & (VIRTIO_S_DRIVER_OK | VIRTIO_S_NEEDS_RESET)) == VIRTIO_S_DRIVER_OK;
}

/* the host address of byte off of a chain's writable buffers */
static uint8_t *wbyte(const struct virtq_req *r, uint64_t off)
{
	for (unsigned i = r->nr; i < r->nr + r->nw; i++) {
		if (off < r->seg[i].len)
			return r->seg[i].p + off;
		off -= r->seg[i].len;
	}
	return NULL;
}

enum { RX_WAIT, RX_DONE, RX_TOO_BIG, RX_BROKEN };

/* Put one frame into the guest's receive buffers: one chain, or with
 * MRG_RXBUF as many as it takes. Nothing is published until the frame is
 * whole; when the buffers run out first, the chains go back to the ring
 * (last_avail is rewound) and the frame waits. */
static int rx_put(struct virtio_net *n, const struct rx_frame *f, bool *irq)
{
	struct virtio_dev *vd = &n->vd;
	struct virtq *q = &vd->vq[RXQ];
	struct virtq_req *r = &n->req;
	bool mrg = virtio_has(vd, NET_F_MRG_RXBUF);
	uint16_t start = q->last_avail;
	uint64_t total = NET_HDR_LEN + f->len, done = 0;
	uint8_t hdr[NET_HDR_LEN] = { 0 }, *nbuf_at[2] = { NULL, NULL };
	unsigned nbuf = 0;

	hdr[1] = NET_HDR_GSO_NONE;
	while (done < total) {
		/* the whole ring cannot hold it: it never will */
		if (nbuf == q->size) {
			q->last_avail = start;
			return RX_TOO_BIG;
		}
		int rc = vq_pop(vd->vm, q, r);

		if (rc < 0)
			return RX_BROKEN;
		if (rc == 0) {
			q->last_avail = start;
			return RX_WAIT;
		}
		/* receive buffers are device-writable only and not empty, and
		 * the header must fit in the first */
		if (r->nr || !r->wlen || (nbuf == 0 && r->wlen < NET_HDR_LEN))
			return RX_BROKEN;
		uint64_t chunk = r->wlen < total - done ? r->wlen : total - done;
		if (!mrg && chunk < total) {
			q->last_avail = start;
			return RX_TOO_BIG;
		}
		if (nbuf == 0) {
			vq_write(r, 0, hdr, NET_HDR_LEN);
			vq_write(r, NET_HDR_LEN, f->data, chunk - NET_HDR_LEN);
			nbuf_at[0] = wbyte(r, 10);
			nbuf_at[1] = wbyte(r, 11);
		} else {
			vq_write(r, 0, f->data + (done - NET_HDR_LEN), chunk);
		}
		n->used[nbuf].head = r->head;
		n->used[nbuf].len = chunk;
		nbuf++;
		done += chunk;
	}
	/* num_buffers, little-endian, wherever the driver put those bytes */
	*nbuf_at[0] = nbuf;
	*nbuf_at[1] = nbuf >> 8;
	if (vq_push_n(q, n->used, nbuf))
		*irq = true;
	return RX_DONE;
}

/* Move queued frames into guest buffers. The caller holds vm->io_lock. */
static void rx_flush(struct virtio_net *n)
{
	struct virtio_dev *vd = &n->vd;
	bool irq = false, broken = false, resume;
	unsigned before;

	if (!net_running(vd) || !vd->vq[RXQ].enabled)
		return;
	pthread_mutex_lock(&n->rxq_lock);
	before = n->rxq_len;
	while (n->rxq_head) {
		struct rx_frame *f = n->rxq_head;
		int rc = rx_put(n, f, &irq);

		if (rc == RX_WAIT)
			break;
		if (rc == RX_BROKEN) {
			broken = true;
			break;
		}
		if (rc == RX_DONE) {
			n->rx_frames++;
			n->rx_bytes += f->len;
		} else {
			n->rx_dropped++;
		}
		n->rxq_head = f->next;
		if (!n->rxq_head)
			n->rxq_tail = NULL;
		n->rxq_len--;
		free(f);
	}
	resume = before >= RXQ_SOFT && n->rxq_len < RXQ_SOFT;
	pthread_mutex_unlock(&n->rxq_lock);
	if (irq)
		virtio_notify_queue(vd, RXQ);
	if (broken)
		virtio_needs_reset(vd);
	if (resume)
		n->nb->ops->resume(n->nb);
}

static void rxq_drop_all(struct virtio_net *n)
{
	bool resume;

	pthread_mutex_lock(&n->rxq_lock);
	resume = n->rxq_len >= RXQ_SOFT;
	while (n->rxq_head) {
		struct rx_frame *f = n->rxq_head;

		n->rxq_head = f->next;
		free(f);
		n->rx_dropped++;
	}
	n->rxq_tail = NULL;
	n->rxq_len = 0;
	pthread_mutex_unlock(&n->rxq_lock);
	if (resume)
		n->nb->ops->resume(n->nb);
}

static bool port_can_receive(void *opaque)
{
	struct virtio_net *n = opaque;
	bool ok;

	pthread_mutex_lock(&n->rxq_lock);
	ok = n->rxq_len < RXQ_SOFT;
	pthread_mutex_unlock(&n->rxq_lock);
	return ok;
}

static void port_receive(void *opaque, const void *frame, size_t len)
{
	struct virtio_net *n = opaque;
	struct rx_frame *f = NULL;
	bool first = false;
	uint64_t one = 1;

	if (len <= NET_MAX_FRAME)
		f = malloc(sizeof(*f) + len);
	pthread_mutex_lock(&n->rxq_lock);
	if (!f || n->rxq_len >= RXQ_HARD) {
		n->rx_dropped++;
		pthread_mutex_unlock(&n->rxq_lock);
		free(f);
		return;
	}
	f->next = NULL;
	f->len = len;
	memcpy(f->data, frame, len);
	if (n->rxq_tail)
		n->rxq_tail->next = f;
	else
		n->rxq_head = f;
	n->rxq_tail = f;
	first = n->rxq_len++ == 0;
	pthread_mutex_unlock(&n->rxq_lock);
	/* later frames ride along with the flush the first one asked for */
	if (first && write(n->kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		perror("accord: virtio-net");
}

/* the I/O thread: frames arrived */
static void net_kicked(void *opaque, int fd, short revents)
{
	struct virtio_net *n = opaque;
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	pthread_mutex_lock(&n->vd.vm->io_lock);
	rx_flush(n);
	pthread_mutex_unlock(&n->vd.vm->io_lock);
}

static void tx_drain(struct virtio_net *n)
{
	struct virtio_dev *vd = &n->vd;
	struct virtq *q = &vd->vq[TXQ];
	struct virtq_req *r = &n->req;
	bool irq = false;
	int rc;

	while ((rc = vq_pop(vd->vm, q, r)) > 0) {
		uint8_t hdr[NET_HDR_LEN];

		/* a transmit chain is readable only: a header, then one frame
		 * of at most 64 KiB (no segmentation offload was offered) */
		if (r->nw || r->rlen < NET_HDR_LEN || r->rlen - NET_HDR_LEN > NET_MAX_FRAME) {
			rc = -1;
			break;
		}
		uint64_t len = r->rlen - NET_HDR_LEN;
		vq_read(r, 0, hdr, NET_HDR_LEN);
		vq_read(r, NET_HDR_LEN, n->tx_buf, len);
		if (len < ETH_HLEN || hdr[1] != NET_HDR_GSO_NONE) {
			n->tx_dropped++;
		} else {
			n->nb->ops->send(n->nb, n->tx_buf, len);
			n->tx_frames++;
			n->tx_bytes += len;
		}
		if (vq_push(q, r->head, 0))
			irq = true;
	}
	if (irq)
		virtio_notify_queue(vd, TXQ);
	if (rc < 0)
		virtio_needs_reset(vd);
}

static void net_notify(struct virtio_dev *vd, int q)
{
	struct virtio_net *n = vd->opaque;

	if (q == TXQ)
		tx_drain(n);
	/* new receive buffers, or frames a transmitted one called forth */
	rx_flush(n);
}

static void net_reset(struct virtio_dev *vd)
{
	rxq_drop_all(vd->opaque);
}

static const struct virtio_dev_ops net_ops = { .notify = net_notify, .reset = net_reset };

struct virtio_net *virtio_net_create(struct vm *vm, struct pci_bus *bus, struct iothread *io,
				     struct net_backend *nb, const uint8_t *mac)
{
	static const uint8_t default_mac[6] = { 0x52, 0x41, 0x43, 0x00, 0x00, 0x00 };
	static unsigned ndev;
	struct virtio_net *n = calloc(1, sizeof(*n));

	if (!n) {
		fprintf(stderr, "accord: virtio-net: out of memory\n");
		return NULL;
	}
	n->nb = nb;
	n->io = io;
	pthread_mutex_init(&n->rxq_lock, NULL);
	n->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (n->kick_fd < 0) {
		fprintf(stderr, "accord: virtio-net: eventfd: %s\n", strerror(errno));
		free(n);
		return NULL;
	}

	struct virtio_dev *vd = &n->vd;
	vd->device_id = VIRTIO_ID_NET;
	vd->ops = &net_ops;
	vd->opaque = n;
	vd->io = io;
	vd->nqueues = 2;
	vd->features = 1ull << NET_F_MAC | 1ull << NET_F_STATUS | 1ull << NET_F_MRG_RXBUF;
	ndev++;
	if (mac) {
		memcpy(vd->config, mac, 6);
	} else {
		memcpy(vd->config, default_mac, 6);
		vd->config[5] = ndev;
	}
	vd->config[6] = NET_S_LINK_UP; /* status */
	vd->config[8] = 1;             /* max_virtqueue_pairs */
	vd->config_len = 10;
	if (iothread_fd_add(io, n->kick_fd, POLLIN, net_kicked, n)) {
		fprintf(stderr, "accord: virtio-net: cannot register with the I/O thread\n");
		goto fail;
	}
	/* class 0x0200: Ethernet controller */
	if (virtio_pci_init(vd, vm, bus, 0x020000)) {
		fprintf(stderr, "accord: virtio-net: no room on the PCI bus\n");
		iothread_fd_del(io, n->kick_fd);
		goto fail;
	}
	nb->port = (struct net_port){ port_can_receive, port_receive, n };
	return n;
fail:
	close(n->kick_fd);
	free(n);
	return NULL;
}
