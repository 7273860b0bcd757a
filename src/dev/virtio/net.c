/* virtio-net (virtio 1.x, 5.1) on a network backend (src/net/): receive
 * queue 0, transmit queue 1, control queue 2, the 12-byte virtio_net_hdr.
 *
 * Features: MAC, STATUS (the link is always up), MRG_RXBUF; CSUM and
 * HOST_TSO4/TSO6/ECN (the guest hands over frames with the checksum to
 * fill in and TCP segments up to 64 KiB: a backend that takes them as
 * they are, tap, gets them so; for slirp the device finishes them,
 * net/offload.c); GUEST_CSUM (received frames whose checksums the device
 * checked, or the host's kernel vouched for, are marked DATA_VALID); with
 * tap, GUEST_TSO4/TSO6/ECN (the host's large segments reach the guest
 * whole); CTRL_VQ with CTRL_RX (promiscuous and all-multicast modes) and
 * CTRL_MAC_ADDR (the MAC address and the MAC filter table), the receive
 * filter working as a NIC's would. Every offload request from the guest
 * is checked against its frame (net_offload_check); a bad one drops the
 * frame and counts it.
 *
 * The guest's notifies are served on the I/O thread (the transport's
 * eventfds), so transmit and control run there too, under vm->io_lock.
 * Received frames wait in a host-side queue (rxq) until the
 * guest has buffers for them; the I/O thread, woken through an eventfd,
 * moves them into guest memory under vm->io_lock and raises the queue's
 * MSI-X vector, so receiving never waits for a vCPU exit. When rxq fills
 * up the backend stops reading from the host; when the guest posts
 * buffers (its notify of queue 0) and the queue drains, the backend
 * resumes.
 *
 * A snapshot holds what the driver set through the control queue (the
 * station address, the receive filter) and the receive offloads it took,
 * which a restored device tells its new backend at once (TUNSETOFFLOAD on
 * tap); the transport (pci.c) holds the rest. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dev/virtio/virtio.h"
#include "net/net.h"
#include "vm/iothread.h"
#include "vm/snapshot.h"
#include "vm/vm.h"

#define VIRTIO_ID_NET 1

#define NET_F_CSUM 0
#define NET_F_GUEST_CSUM 1
#define NET_F_MAC 5
#define NET_F_GUEST_TSO4 7
#define NET_F_GUEST_TSO6 8
#define NET_F_GUEST_ECN 9
#define NET_F_HOST_TSO4 11
#define NET_F_HOST_TSO6 12
#define NET_F_HOST_ECN 13
#define NET_F_MRG_RXBUF 15
#define NET_F_STATUS 16
#define NET_F_CTRL_VQ 17
#define NET_F_CTRL_RX 18
#define NET_F_CTRL_MAC_ADDR 23

/* control commands (5.1.6.5): class, command, data, then an ack byte */
#define CTRL_RX 0
#define CTRL_RX_PROMISC 0
#define CTRL_RX_ALLMULTI 1
#define CTRL_MAC 1
#define CTRL_MAC_TABLE_SET 0
#define CTRL_MAC_ADDR_SET 1
#define CTRL_OK 0
#define CTRL_ERR 1
/* filter entries kept per table; a longer table accepts its whole class
 * (unicast or multicast), as a NIC with a full filter goes promiscuous */
#define MAC_TABLE_MAX 64

#define NET_S_LINK_UP 1
#define NET_HDR_LEN 12 /* struct virtio_net_hdr with num_buffers */
#define ETH_HLEN 14

#define RXQ 0
#define TXQ 1
#define CTRLQ 2

struct virtio_net {
	struct virtio_dev vd;
	struct net_backend *nb;
	struct iothread *io;
	uint8_t mac[6]; /* the address after a reset */

	struct net_rxq rxq; /* frames held for the guest; its lock after vm->io_lock */

	/* the receive filter, under vm->io_lock */
	bool promisc, allmulti, uni_overflow, multi_overflow;
	unsigned n_uni, n_multi;
	uint8_t uni[MAC_TABLE_MAX][6], multi[MAC_TABLE_MAX][6];
	unsigned rx_offload_set; /* what the backend was told */

	/* the device's own; GET /vm/counters adds the backend's drops.
	 * rx_dropped also moves under the queue lock alone */
	struct virtio_net_counters c;
	struct virtq_req req;
	struct virtq_used used[VIRTQ_MAX_SIZE];
	uint8_t tx_buf[NET_MAX_FRAME];
	uint8_t seg_buf[NET_MAX_FRAME];
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

static unsigned le16(const uint8_t *p)
{
	return p[0] | p[1] << 8;
}

static void hdr_put(uint8_t *h, const struct net_offload *o)
{
	const uint16_t v[4] = { o->hdr_len, o->gso_size, o->csum_start, o->csum_offset };

	h[0] = o->flags;
	h[1] = o->gso_type;
	for (int i = 0; i < 4; i++) {
		h[2 + 2 * i] = v[i];
		h[3 + 2 * i] = v[i] >> 8;
	}
	h[10] = h[11] = 0; /* num_buffers, filled in at the end */
}

static unsigned offloads_of(const struct virtio_dev *vd, int csum, int tso4, int tso6, int ecn)
{
	return (virtio_has(vd, csum) ? NET_OFFLOAD_CSUM : 0) |
	       (virtio_has(vd, tso4) ? NET_OFFLOAD_TSO4 : 0) |
	       (virtio_has(vd, tso6) ? NET_OFFLOAD_TSO6 : 0) | (virtio_has(vd, ecn) ? NET_OFFLOAD_ECN : 0);
}

/* what the driver may ask of the device, and what it takes from it */
static unsigned tx_offloads(const struct virtio_dev *vd)
{
	return offloads_of(vd, NET_F_CSUM, NET_F_HOST_TSO4, NET_F_HOST_TSO6, NET_F_HOST_ECN);
}

static unsigned rx_offloads(const struct virtio_dev *vd)
{
	return offloads_of(vd, NET_F_GUEST_CSUM, NET_F_GUEST_TSO4, NET_F_GUEST_TSO6, NET_F_GUEST_ECN);
}

/* The receive filter (CTRL_RX, CTRL_MAC): what a NIC in this mode with
 * this address and these tables would take off the wire. */
static bool rx_accept(const struct virtio_net *n, const uint8_t *dst)
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	bool multi = dst[0] & 1;

	if (n->promisc)
		return true;
	if (multi) {
		if (!memcmp(dst, bcast, 6) || n->allmulti || n->multi_overflow)
			return true;
		for (unsigned i = 0; i < n->n_multi; i++)
			if (!memcmp(dst, n->multi[i], 6))
				return true;
		return false;
	}
	if (!memcmp(dst, n->vd.config, 6) || n->uni_overflow)
		return true;
	for (unsigned i = 0; i < n->n_uni; i++)
		if (!memcmp(dst, n->uni[i], 6))
			return true;
	return false;
}

/* Settle a frame's header with what the driver negotiated: false when the
 * frame cannot be given to this driver. A frame the backend left
 * unfinished (tap, negotiated before a reset) is finished here if it can
 * be; one it vouched for, or whose checksums check out, is DATA_VALID. */
static bool rx_settle(struct virtio_net *n, struct net_rx_frame *f)
{
	unsigned ok = rx_offloads(&n->vd);
	struct net_offload *o = &f->o;

	if (o->gso_type != NET_GSO_NONE || (o->flags & NET_OFF_NEEDS_CSUM)) {
		if (net_offload_check(o, f->data, f->len, ok)) {
			struct net_offload plain = *o;

			plain.gso_type = NET_GSO_NONE;
			if (o->gso_type != NET_GSO_NONE ||
			    net_offload_check(&plain, f->data, f->len, NET_OFFLOAD_CSUM))
				return false;
			net_csum_complete(f->data, f->len, o->csum_start, o->csum_offset);
			*o = (struct net_offload){ 0 };
		}
		return true;
	}
	o->flags &= NET_OFF_DATA_VALID;
	if (!(ok & NET_OFFLOAD_CSUM))
		*o = (struct net_offload){ 0 };
	else if (!o->flags && net_csum_valid(f->data, f->len))
		o->flags = NET_OFF_DATA_VALID;
	return true;
}

enum { RX_WAIT, RX_DONE, RX_TOO_BIG, RX_FILTERED, RX_BROKEN };

/* Put one frame into the guest's receive buffers: one chain, or with
 * MRG_RXBUF as many as it takes. Nothing is published until the frame is
 * whole; when the buffers run out first, the chains go back to the ring
 * (last_avail is rewound) and the frame waits. */
static int rx_put(struct virtio_net *n, const struct net_rx_frame *f, bool *irq)
{
	struct virtio_dev *vd = &n->vd;
	struct virtq *q = &vd->vq[RXQ];
	struct virtq_req *r = &n->req;
	bool mrg = virtio_has(vd, NET_F_MRG_RXBUF);
	uint16_t start = q->last_avail;
	uint64_t total = NET_HDR_LEN + f->len, done = 0;
	uint8_t hdr[NET_HDR_LEN], *nbuf_at[2] = { NULL, NULL };
	unsigned nbuf = 0;

	hdr_put(hdr, &f->o);
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
	pthread_mutex_lock(&n->rxq.lock);
	before = n->rxq.len;
	while (n->rxq.head) {
		struct net_rx_frame *f = n->rxq.head;
		int rc;

		if (f->len < ETH_HLEN || !rx_accept(n, f->data))
			rc = RX_FILTERED;
		else if (!rx_settle(n, f))
			rc = RX_TOO_BIG;
		else
			rc = rx_put(n, f, &irq);
		if (rc == RX_WAIT)
			break;
		if (rc == RX_BROKEN) {
			broken = true;
			break;
		}
		if (rc == RX_DONE) {
			n->c.rx_frames++;
			n->c.rx_bytes += f->len;
		} else if (rc == RX_FILTERED) {
			n->c.rx_filtered++;
		} else {
			n->c.rx_dropped++;
		}
		net_rxq_pop(&n->rxq);
	}
	resume = before >= NET_RXQ_SOFT && n->rxq.len < NET_RXQ_SOFT;
	pthread_mutex_unlock(&n->rxq.lock);
	if (irq)
		virtio_notify_queue(vd, RXQ);
	if (broken)
		virtio_needs_reset(vd);
	if (resume)
		n->nb->ops->resume(n->nb);
}

static bool port_can_receive(void *opaque)
{
	struct virtio_net *n = opaque;

	return net_rxq_can_receive(&n->rxq);
}

static void port_queue(struct virtio_net *n, const struct net_offload *o, const void *frame,
		       size_t len)
{
	net_rxq_push(&n->rxq, o, frame, len, 0, &n->c.rx_dropped, "accord: virtio-net");
}

static void port_receive(void *opaque, const void *frame, size_t len)
{
	static const struct net_offload none;

	port_queue(opaque, &none, frame, len);
}

static void port_receive_offload(void *opaque, const struct net_offload *o, const void *frame,
				 size_t len)
{
	port_queue(opaque, o, frame, len);
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

static void tx_segment(void *opaque, const uint8_t *frame, size_t len)
{
	struct virtio_net *n = opaque;

	n->nb->ops->send(n->nb, frame, len);
	n->c.tx_segments++;
}

/* a frame from tx_buf whose offload request passed the checks */
static void tx_send(struct virtio_net *n, struct net_offload *o, size_t len)
{
	const struct net_backend *nb = n->nb;
	bool gso = o->gso_type != NET_GSO_NONE;
	unsigned need = gso ? NET_OFFLOAD_CSUM | (o->gso_type & NET_GSO_ECN ? NET_OFFLOAD_ECN : 0) |
				      ((o->gso_type & ~NET_GSO_ECN) == NET_GSO_TCPV4 ? NET_OFFLOAD_TSO4 :
										    NET_OFFLOAD_TSO6) :
			     NET_OFFLOAD_CSUM;

	if (!gso && !(o->flags & NET_OFF_NEEDS_CSUM))
		nb->ops->send(n->nb, n->tx_buf, len);
	else if (nb->ops->send_offload && (nb->offloads & need) == need)
		nb->ops->send_offload(n->nb, o, n->tx_buf, len);
	else if (gso)
		net_tso_segment(n->tx_buf, len, o->gso_size, n->seg_buf, sizeof(n->seg_buf), tx_segment, n);
	else {
		net_csum_complete(n->tx_buf, len, o->csum_start, o->csum_offset);
		nb->ops->send(n->nb, n->tx_buf, len);
	}
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
		 * of at most one IP packet's 64 KiB */
		if (r->nw || r->rlen < NET_HDR_LEN || r->rlen - NET_HDR_LEN > NET_MAX_FRAME) {
			rc = -1;
			break;
		}
		uint64_t len = r->rlen - NET_HDR_LEN;
		vq_read(r, 0, hdr, NET_HDR_LEN);
		vq_read(r, NET_HDR_LEN, n->tx_buf, len);
		struct net_offload o = { hdr[0], hdr[1], le16(hdr + 2), le16(hdr + 4), le16(hdr + 6),
					 le16(hdr + 8) };
		if (len < ETH_HLEN) {
			n->c.tx_dropped++;
		} else if (net_offload_check(&o, n->tx_buf, len, tx_offloads(vd))) {
			n->c.tx_bad_offload++;
		} else {
			tx_send(n, &o, len);
			n->c.tx_frames++;
			n->c.tx_bytes += len;
		}
		if (vq_push(q, r->head, 0))
			irq = true;
	}
	if (irq)
		virtio_notify_queue(vd, TXQ);
	if (rc < 0)
		virtio_needs_reset(vd);
}

static uint32_t le32_at(const struct virtq_req *r, uint64_t off)
{
	uint8_t b[4];

	vq_read(r, off, b, 4);
	return b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24;
}

/* VIRTIO_NET_CTRL_MAC_TABLE_SET: a unicast table, then a multicast one,
 * each a le32 count and that many addresses, filling the data exactly */
static uint8_t ctrl_mac_table(struct virtio_net *n, const struct virtq_req *r, uint64_t dlen)
{
	uint64_t nu, nm;

	if (dlen < 8)
		return CTRL_ERR;
	nu = le32_at(r, 2);
	if (nu > (dlen - 8) / 6)
		return CTRL_ERR;
	nm = le32_at(r, 2 + 4 + 6 * nu);
	if (8 + 6 * (nu + nm) != dlen)
		return CTRL_ERR;
	n->uni_overflow = nu > MAC_TABLE_MAX;
	n->multi_overflow = nm > MAC_TABLE_MAX;
	n->n_uni = n->uni_overflow ? 0 : nu;
	n->n_multi = n->multi_overflow ? 0 : nm;
	for (unsigned i = 0; i < n->n_uni; i++)
		vq_read(r, 2 + 4 + 6 * i, n->uni[i], 6);
	for (unsigned i = 0; i < n->n_multi; i++)
		vq_read(r, 2 + 8 + 6 * (nu + i), n->multi[i], 6);
	return CTRL_OK;
}

static uint8_t ctrl_command(struct virtio_net *n, const struct virtq_req *r)
{
	struct virtio_dev *vd = &n->vd;
	uint8_t cc[2], v[6];
	uint64_t dlen;

	if (r->rlen < 2)
		return CTRL_ERR;
	vq_read(r, 0, cc, 2);
	dlen = r->rlen - 2;
	if (cc[0] == CTRL_RX && virtio_has(vd, NET_F_CTRL_RX)) {
		if (dlen != 1 || (cc[1] != CTRL_RX_PROMISC && cc[1] != CTRL_RX_ALLMULTI))
			return CTRL_ERR;
		vq_read(r, 2, v, 1);
		if (v[0] > 1)
			return CTRL_ERR;
		if (cc[1] == CTRL_RX_PROMISC)
			n->promisc = v[0];
		else
			n->allmulti = v[0];
		return CTRL_OK;
	}
	if (cc[0] == CTRL_MAC && cc[1] == CTRL_MAC_TABLE_SET && virtio_has(vd, NET_F_CTRL_RX))
		return ctrl_mac_table(n, r, dlen);
	if (cc[0] == CTRL_MAC && cc[1] == CTRL_MAC_ADDR_SET && virtio_has(vd, NET_F_CTRL_MAC_ADDR)) {
		/* a station address is unicast */
		if (dlen != 6 || (vq_read(r, 2, v, 6), v[0] & 1))
			return CTRL_ERR;
		memcpy(vd->config, v, 6);
		vd->config_generation++;
		return CTRL_OK;
	}
	return CTRL_ERR;
}

static void ctrl_drain(struct virtio_net *n)
{
	struct virtio_dev *vd = &n->vd;
	struct virtq *q = &vd->vq[CTRLQ];
	struct virtq_req *r = &n->req;
	bool irq = false;
	int rc;

	while ((rc = vq_pop(vd->vm, q, r)) > 0) {
		uint8_t ack;

		/* the driver must leave room for the ack */
		if (!r->wlen) {
			rc = -1;
			break;
		}
		ack = ctrl_command(n, r);
		if (ack == CTRL_OK)
			n->c.control_ok++;
		else
			n->c.control_failed++;
		vq_write(r, 0, &ack, 1);
		if (vq_push(q, r->head, 1))
			irq = true;
	}
	if (irq)
		virtio_notify_queue(vd, CTRLQ);
	if (rc < 0)
		virtio_needs_reset(vd);
}

/* tell the backend what the driver takes, once it has said so */
static void rx_offload_sync(struct virtio_net *n, unsigned want)
{
	if (want == n->rx_offload_set || !n->nb->ops->set_rx_offload)
		return;
	n->nb->ops->set_rx_offload(n->nb, want & n->nb->offloads);
	n->rx_offload_set = want;
}

static void net_notify(struct virtio_dev *vd, int q)
{
	struct virtio_net *n = vd->opaque;

	if (!net_running(vd))
		return;
	rx_offload_sync(n, rx_offloads(vd));
	if (q == TXQ)
		tx_drain(n);
	else if (q == CTRLQ)
		ctrl_drain(n);
	/* new receive buffers, or frames a transmitted one called forth */
	rx_flush(n);
}

static void filter_reset(struct virtio_net *n)
{
	n->promisc = true;
	n->allmulti = n->uni_overflow = n->multi_overflow = false;
	n->n_uni = n->n_multi = 0;
	memcpy(n->vd.config, n->mac, 6);
}

static void net_reset(struct virtio_dev *vd)
{
	struct virtio_net *n = vd->opaque;

	net_rxq_drop_all(&n->rxq, n->nb, &n->c.rx_dropped);
	filter_reset(n);
	rx_offload_sync(n, 0);
}

static const struct virtio_dev_ops net_ops = { .notify = net_notify, .reset = net_reset };

/* The snapshot section: a version, then the station address, the filter's
 * modes, both tables with their counts, and the receive offloads the
 * driver took, field by field in little-endian; from version 2 the
 * counters as GET /vm/counters shows them (struct virtio_net_counters),
 * which go on in the restored VM as the guest's own statistics do. A
 * section of version 1 loads with the counters left as they are. */
#define NET_SNAP_VERSION 2

/* what the driver takes on receive: its features, once it is running */
static unsigned rx_taken(const struct virtio_net *n)
{
	return net_running(&n->vd) ? rx_offloads(&n->vd) : 0;
}

static int net_save(void *o, struct snap_buf *b, char *err, size_t errlen)
{
	struct virtio_net *n = o;
	uint32_t u[4] = { NET_SNAP_VERSION, n->n_uni, n->n_multi, rx_taken(n) };
	uint8_t modes[4] = { n->promisc, n->allmulti, n->uni_overflow, n->multi_overflow };

	snap_put(b, &u[0], 4);
	snap_put(b, n->vd.config, 6);
	snap_put(b, modes, 4);
	snap_put(b, &u[1], 12);
	snap_put(b, n->uni, sizeof(n->uni));
	snap_put(b, n->multi, sizeof(n->multi));
	struct virtio_net_counters c;
	virtio_net_counters(n, &c);
	snap_put(b, &c, sizeof(c));
	return 0;
}

/* Every field checked before any is used: the device is left as it was
 * when one is bad. The transport's section came first, so the driver's
 * features and status are the snapshot's. */
static int net_load(void *o, struct snap_rd *r, char *err, size_t errlen)
{
	struct virtio_net *n = o;
	uint32_t version, counts[3];
	uint8_t mac[6], modes[4], uni[MAC_TABLE_MAX][6], multi[MAC_TABLE_MAX][6];
	struct virtio_net_counters c;

	if (!snap_get(r, &version, 4))
		return -1;
	if (!version || version > NET_SNAP_VERSION) {
		snprintf(err, errlen, "virtio-net state of version %u; this accord reads version %u", version,
			 NET_SNAP_VERSION);
		return -1;
	}
	if (!snap_get(r, mac, 6) || !snap_get(r, modes, 4) || !snap_get(r, counts, 12) ||
	    !snap_get(r, uni, sizeof(uni)) || !snap_get(r, multi, sizeof(multi)) ||
	    (version >= 2 && !snap_get(r, &c, sizeof(c))))
		return -1;
	if (mac[0] & 1) {
		snprintf(err, errlen, "a multicast station address");
		return -1;
	}
	for (int i = 0; i < 4; i++) {
		if (modes[i] > 1) {
			snprintf(err, errlen, "a receive mode of %u", modes[i]);
			return -1;
		}
	}
	/* a table too long for the filter is kept as its overflow alone */
	if (counts[0] > MAC_TABLE_MAX || counts[1] > MAC_TABLE_MAX || (modes[2] && counts[0]) ||
	    (modes[3] && counts[1])) {
		snprintf(err, errlen, "MAC filter tables of %u and %u entries", counts[0], counts[1]);
		return -1;
	}
	if (counts[2] != rx_taken(n)) {
		snprintf(err, errlen, "receive offloads %#x, but the driver negotiated %#x", counts[2], rx_taken(n));
		return -1;
	}
	memcpy(n->vd.config, mac, 6);
	n->promisc = modes[0];
	n->allmulti = modes[1];
	n->uni_overflow = modes[2];
	n->multi_overflow = modes[3];
	n->n_uni = counts[0];
	n->n_multi = counts[1];
	memcpy(n->uni, uni, sizeof(uni));
	memcpy(n->multi, multi, sizeof(multi));
	/* the backend's own drops are in the saved sums; a new one counts
	 * from 0 */
	if (version >= 2) {
		pthread_mutex_lock(&n->rxq.lock);
		n->c = c;
		pthread_mutex_unlock(&n->rxq.lock);
	}
	/* the backend is new: it has been told nothing yet */
	if (n->nb->ops->set_rx_offload) {
		n->nb->ops->set_rx_offload(n->nb, counts[2] & n->nb->offloads);
		n->rx_offload_set = counts[2];
	}
	return 0;
}

void virtio_net_mac(const struct virtio_net *n, uint8_t mac[6])
{
	memcpy(mac, n->vd.config, 6);
}

void virtio_net_counters(const struct virtio_net *n, struct virtio_net_counters *c)
{
	*c = n->c;
	c->rx_dropped = __atomic_load_n(&n->c.rx_dropped, __ATOMIC_RELAXED) +
			__atomic_load_n(&n->nb->rx_dropped, __ATOMIC_RELAXED);
	c->tx_dropped += __atomic_load_n(&n->nb->tx_dropped, __ATOMIC_RELAXED);
}

struct virtio_net *virtio_net_create(struct vm *vm, struct pci_bus *bus, struct iothread *io,
				     struct net_backend *nb, const struct net_config *cfg)
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
	if (net_rxq_init(&n->rxq) < 0) {
		fprintf(stderr, "accord: virtio-net: eventfd: %s\n", strerror(errno));
		free(n);
		return NULL;
	}

	struct virtio_dev *vd = &n->vd;
	vd->device_id = VIRTIO_ID_NET;
	vd->ops = &net_ops;
	vd->opaque = n;
	vd->io = io;
	vd->nqueues = 3;
	vd->features = 1ull << NET_F_MAC | 1ull << NET_F_STATUS | 1ull << NET_F_MRG_RXBUF |
		       1ull << NET_F_CTRL_VQ | 1ull << NET_F_CTRL_RX | 1ull << NET_F_CTRL_MAC_ADDR;
	if (cfg->offload != NET_OFFLOAD_OFF)
		vd->features |= 1ull << NET_F_CSUM | 1ull << NET_F_GUEST_CSUM;
	if (cfg->offload == NET_OFFLOAD_ON)
		vd->features |= 1ull << NET_F_HOST_TSO4 | 1ull << NET_F_HOST_TSO6 | 1ull << NET_F_HOST_ECN;
	/* large segments for the guest only from a backend that makes them */
	if (cfg->offload == NET_OFFLOAD_ON && nb->ops->set_rx_offload && (nb->offloads & NET_OFFLOAD_TSO4))
		vd->features |= 1ull << NET_F_GUEST_TSO4 | 1ull << NET_F_GUEST_TSO6 | 1ull << NET_F_GUEST_ECN;
	ndev++;
	if (cfg->has_mac) {
		memcpy(n->mac, cfg->mac, 6);
	} else {
		memcpy(n->mac, default_mac, 6);
		n->mac[5] = ndev;
	}
	filter_reset(n);
	vd->config[6] = NET_S_LINK_UP; /* status */
	vd->config[8] = 1;             /* max_virtqueue_pairs */
	vd->config_len = 10;
	if (iothread_fd_add(io, n->rxq.kick_fd, POLLIN, net_kicked, n)) {
		fprintf(stderr, "accord: virtio-net: cannot register with the I/O thread\n");
		goto fail;
	}
	/* class 0x0200: Ethernet controller */
	if (virtio_pci_init(vd, vm, bus, 0x020000)) {
		fprintf(stderr, "accord: virtio-net: no room on the PCI bus\n");
		iothread_fd_del(io, n->rxq.kick_fd);
		goto fail;
	}
	/* after the transport's: a load sees the driver's features */
	if (vm_snap_register(vm, "virtio-net", net_save, net_load, n) < 0) {
		fprintf(stderr, "accord: virtio-net: out of memory\n");
		return NULL;
	}
	nb->port = (struct net_port){ port_can_receive, port_receive, port_receive_offload, n };
	return n;
fail:
	close(n->rxq.kick_fd);
	free(n);
	return NULL;
}
