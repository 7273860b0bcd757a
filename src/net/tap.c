/* The tap backend: a host TAP interface through /dev/net/tun (IFF_TAP,
 * IFF_NO_PI: plain Ethernet frames both ways). An existing interface is
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
#include <unistd.h>

#include "net/net.h"
#include "vm/iothread.h"

/* frames read per wake-up, so one busy interface cannot starve the loop */
#define TAP_BATCH 64

struct tap_backend {
	struct net_backend nb;
	struct iothread *io;
	int fd;
	char name[IFNAMSIZ];
	bool lost;
	uint8_t buf[NET_MAX_FRAME];
};

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
		t->nb.port.receive(t->nb.port.opaque, t->buf, n);
	}
}

static void tap_send(struct net_backend *nb, const void *frame, size_t len)
{
	struct tap_backend *t = (struct tap_backend *)nb;
	ssize_t n;

	do
		n = write(t->fd, frame, len);
	while (n < 0 && errno == EINTR);
	/* a full queue or a down interface loses the frame, as a wire would */
	if (n != (ssize_t)len)
		nb->tx_dropped++;
	/* detached: the kernel's wake-up of the poller can come before the
	 * fd reads as dead, so a send may be the first to know */
	if (n < 0 && errno == EBADFD)
		tap_lost(t, strerror(errno));
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

static const struct net_backend_ops tap_ops = { tap_send, tap_resume, tap_destroy };

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
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", cfg->ifname);
	if (ioctl(t->fd, TUNSETIFF, &ifr) < 0) {
		fprintf(stderr, "accord: --net tap=%s: cannot attach a TAP interface: %s%s\n", cfg->ifname,
			strerror(errno), tap_hint(errno));
		goto fail;
	}
	snprintf(t->name, sizeof(t->name), "%s", ifr.ifr_name);
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
