/* The tap backend: a host TAP interface through /dev/net/tun (IFF_TAP,
 * IFF_NO_PI, IFF_VNET_HDR: Ethernet frames behind the kernel's 10-byte
 * virtio_net_hdr both ways, so a guest's checksum and segmentation
 * offloads pass through to the host's stack, which finishes them; what
 * the kernel may hand the guest the same way is set with TUNSETOFFLOAD,
 * from what the port's guest accepts). An existing interface is
 * attached to; a new one is created (CAP_NET_ADMIN) and lives as long as
 * accord does. Frames are read on the I/O thread; while the port cannot
 * take them the fd is paused, so the kernel's queue holds them. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "net/net.h"
#include "vm/iothread.h"

/* frames read per wake-up, so one busy interface cannot starve the loop */
#define TAP_BATCH 64
/* struct virtio_net_hdr, the kernel's default vnet header */
#define VNET_HDR_LEN 10

struct tap_backend {
	struct net_backend nb;
	struct iothread *io;
	int fd;
	char name[IFNAMSIZ];
	bool lost;
	uint8_t buf[VNET_HDR_LEN + NET_MAX_FRAME];
};

static unsigned le16(const uint8_t *p)
{
	return p[0] | p[1] << 8;
}

static void hdr_put(uint8_t *h, const struct net_offload *o)
{
	h[0] = o->flags;
	h[1] = o->gso_type;
	h[2] = o->hdr_len;
	h[3] = o->hdr_len >> 8;
	h[4] = o->gso_size;
	h[5] = o->gso_size >> 8;
	h[6] = o->csum_start;
	h[7] = o->csum_start >> 8;
	h[8] = o->csum_offset;
	h[9] = o->csum_offset >> 8;
}

static bool port_ready(struct tap_backend *t)
{
	return t->nb.port.can_receive(t->nb.port.opaque);
}

/* The interface went away under us (ip link del): say so once and stop
 * polling, or poll would report the error again at once, forever. The
 * guest keeps a NIC whose frames go nowhere. */
static void tap_lost(struct tap_backend *t, const char *why)
{
	iothread_fd_set_events(t->io, t->fd, 0);
	if (__atomic_exchange_n(&t->lost, true, __ATOMIC_SEQ_CST))
		return;
	fprintf(stderr, "accord: --net tap=%s: the interface is gone (%s); its NIC is cut off\n", t->name, why);
}

static void tap_readable(void *opaque, int fd, short revents)
{
	struct tap_backend *t = opaque;

	if (revents & (POLLERR | POLLHUP | POLLNVAL)) {
		tap_lost(t, "poll reports an error");
		return;
	}
	for (int i = 0; i < TAP_BATCH; i++) {
		if (!port_ready(t)) {
			/* pause, then look again: a resume may have come between */
			iothread_fd_set_events(t->io, fd, 0);
			if (port_ready(t) && !__atomic_load_n(&t->lost, __ATOMIC_SEQ_CST))
				iothread_fd_set_events(t->io, fd, POLLIN);
			return;
		}
		ssize_t n = read(fd, t->buf, sizeof(t->buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			tap_lost(t, strerror(errno));
		if (n <= 0)
			return;
		if (n <= VNET_HDR_LEN)
			continue;
		const uint8_t *h = t->buf;
		struct net_offload o = { h[0], h[1], le16(h + 2), le16(h + 4), le16(h + 6), le16(h + 8) };
		/* the kernel gives only what TUNSETOFFLOAD allowed */
		if (t->nb.port.receive_offload)
			t->nb.port.receive_offload(t->nb.port.opaque, &o, t->buf + VNET_HDR_LEN,
						   n - VNET_HDR_LEN);
		else
			t->nb.port.receive(t->nb.port.opaque, t->buf + VNET_HDR_LEN, n - VNET_HDR_LEN);
	}
}

static void tap_send_offload(struct net_backend *nb, const struct net_offload *o,
			     const void *frame, size_t len)
{
	struct tap_backend *t = (struct tap_backend *)nb;
	uint8_t h[VNET_HDR_LEN];
	struct iovec iov[2] = { { h, sizeof(h) }, { (void *)frame, len } };
	ssize_t n;

	hdr_put(h, o);
	do
		n = writev(t->fd, iov, 2);
	while (n < 0 && errno == EINTR);
	/* a full queue or a down interface loses the frame, as a wire would */
	if (n != (ssize_t)(len + sizeof(h)))
		nb->tx_dropped++;
	/* detached: the kernel's wake-up of the poller can come before the
	 * fd reads as dead, so a send may be the first to know */
	if (n < 0 && errno == EBADFD)
		tap_lost(t, strerror(errno));
}

static void tap_send(struct net_backend *nb, const void *frame, size_t len)
{
	static const struct net_offload none;

	tap_send_offload(nb, &none, frame, len);
}

static void tap_set_rx_offload(struct net_backend *nb, unsigned offloads)
{
	struct tap_backend *t = (struct tap_backend *)nb;
	unsigned long f = 0;

	if (offloads & NET_OFFLOAD_CSUM) {
		f |= TUN_F_CSUM;
		/* the kernel takes segmentation only with checksums */
		if (offloads & NET_OFFLOAD_TSO4)
			f |= TUN_F_TSO4;
		if (offloads & NET_OFFLOAD_TSO6)
			f |= TUN_F_TSO6;
		if ((offloads & NET_OFFLOAD_ECN) && (f & (TUN_F_TSO4 | TUN_F_TSO6)))
			f |= TUN_F_TSO_ECN;
	}
	/* without them, the host's stack finishes every frame before the
	 * guest sees it, which is always right */
	if (ioctl(t->fd, TUNSETOFFLOAD, f) < 0 && f)
		ioctl(t->fd, TUNSETOFFLOAD, 0ul);
}

static void tap_resume(struct net_backend *nb)
{
	struct tap_backend *t = (struct tap_backend *)nb;

	if (!__atomic_load_n(&t->lost, __ATOMIC_SEQ_CST))
		iothread_fd_set_events(t->io, t->fd, POLLIN);
}

static void tap_destroy(struct net_backend *nb)
{
	struct tap_backend *t = (struct tap_backend *)nb;

	iothread_fd_del(t->io, t->fd);
	close(t->fd);
	free(t);
}

static const struct net_backend_ops tap_ops = {
	.send = tap_send,
	.resume = tap_resume,
	.send_offload = tap_send_offload,
	.set_rx_offload = tap_set_rx_offload,
	.destroy = tap_destroy,
};

static const char *tap_hint(int err)
{
	if (err == EPERM)
		return " (a new interface needs CAP_NET_ADMIN; or create it first with "
		       "'ip tuntap add NAME mode tap user USER')";
	if (err == EINVAL || err == EBUSY)
		return " (an interface of another kind, or one in use?)";
	return "";
}

struct net_backend *net_tap_create(const struct net_config *cfg, struct iothread *io)
{
	struct tap_backend *t = calloc(1, sizeof(*t));
	struct ifreq ifr = { 0 };

	if (!t) {
		fprintf(stderr, "accord: --net tap=%s: out of memory\n", cfg->ifname);
		return NULL;
	}
	t->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (t->fd < 0) {
		fprintf(stderr, "accord: --net tap=%s: /dev/net/tun: %s\n", cfg->ifname, strerror(errno));
		free(t);
		return NULL;
	}
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", cfg->ifname);
	if (ioctl(t->fd, TUNSETIFF, &ifr) < 0) {
		fprintf(stderr, "accord: --net tap=%s: cannot attach a TAP interface: %s%s\n", cfg->ifname,
			strerror(errno), tap_hint(errno));
		goto fail;
	}
	snprintf(t->name, sizeof(t->name), "%s", ifr.ifr_name);
	/* a persistent interface keeps the header size its last user set;
	 * nothing is handed over unfinished until the guest says it copes */
	int hsz = VNET_HDR_LEN;
	if (ioctl(t->fd, TUNSETVNETHDRSZ, &hsz) < 0 || ioctl(t->fd, TUNSETOFFLOAD, 0ul) < 0) {
		fprintf(stderr, "accord: --net tap=%s: cannot set up the vnet header: %s\n", cfg->ifname,
			strerror(errno));
		goto fail;
	}
	t->nb.offloads = NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6 | NET_OFFLOAD_ECN;
	t->nb.ops = &tap_ops;
	t->io = io;
	if (iothread_fd_add(io, t->fd, POLLIN, tap_readable, t)) {
		fprintf(stderr, "accord: --net tap=%s: cannot watch the interface\n", cfg->ifname);
		goto fail;
	}
	return &t->nb;
fail:
	close(t->fd);
	free(t);
	return NULL;
}
