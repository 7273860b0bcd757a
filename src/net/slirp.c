/* The user backend on libslirp: a NAT'ed network 10.0.2.0/24 with the host
 * at 10.0.2.2 (its loopback too), DNS at 10.0.2.3 and DHCP handing out
 * 10.0.2.15, as QEMU's user networking does; hostfwd= rules listen on the
 * host and forward to the guest. IPv4 only.
 *
 * libslirp is not thread-safe, so every call into it holds s->lock: the
 * I/O thread polls its sockets and runs its timers, and a vCPU thread
 * feeds it the guest's frames (under vm->io_lock, which comes first). Its
 * sockets change from round to round, so it is an I/O thread source:
 * slirp_pollfds_fill names them, slirp_pollfds_poll serves them. While the
 * port cannot take frames the source names none, so no socket is read
 * until the guest posts receive buffers again. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <slirp/libslirp.h>

#include "net/net.h"
#include "vm/iothread.h"

struct slirp_backend {
	struct net_backend nb;
	struct iothread *io;
	pthread_mutex_t lock;
	Slirp *slirp;
	bool polled; /* slirp's fds are in this round's poll set */
	uint64_t guest_errors;
};

struct slirp_timer {
	struct slirp_backend *s;
	struct iothread_timer *t;
	SlirpTimerId id;
	SlirpTimerCb cb; /* the pre-version-4 flavour, if slirp asks for it */
	void *cb_opaque;
};

static ssize_t cb_send_packet(const void *buf, size_t len, void *opaque)
{
	struct slirp_backend *s = opaque;

	if (len > NET_MAX_FRAME) {
		s->nb.rx_dropped++;
		return len;
	}
	s->nb.port.receive(s->nb.port.opaque, buf, len);
	return len;
}

static void cb_guest_error(const char *msg, void *opaque)
{
	struct slirp_backend *s = opaque;

	/* the guest's mistakes are the guest's business: count, stay quiet */
	s->guest_errors++;
}

static int64_t cb_clock_get_ns(void *opaque)
{
	return iothread_now_ns();
}

static void timer_fire(void *opaque)
{
	struct slirp_timer *st = opaque;
	struct slirp_backend *s = st->s;

	pthread_mutex_lock(&s->lock);
	if (st->cb)
		st->cb(st->cb_opaque);
	else
		slirp_handle_timer(s->slirp, st->id, st->cb_opaque);
	pthread_mutex_unlock(&s->lock);
}

static struct slirp_timer *timer_make(struct slirp_backend *s, SlirpTimerId id, SlirpTimerCb cb,
				      void *cb_opaque)
{
	struct slirp_timer *st = calloc(1, sizeof(*st));

	if (!st)
		return NULL;
	st->s = s;
	st->id = id;
	st->cb = cb;
	st->cb_opaque = cb_opaque;
	st->t = iothread_timer_new(s->io, timer_fire, st);
	if (!st->t) {
		free(st);
		return NULL;
	}
	return st;
}

static void *cb_timer_new(SlirpTimerCb cb, void *cb_opaque, void *opaque)
{
	return timer_make(opaque, 0, cb, cb_opaque);
}

static void *cb_timer_new_opaque(SlirpTimerId id, void *cb_opaque, void *opaque)
{
	return timer_make(opaque, id, NULL, cb_opaque);
}

static void cb_timer_free(void *timer, void *opaque)
{
	struct slirp_timer *st = timer;

	if (!st)
		return;
	iothread_timer_free(st->t);
	free(st);
}

static void cb_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
	struct slirp_timer *st = timer;

	if (st)
		iothread_timer_arm(st->t, expire_ms < 0 ? 0 : expire_ms * 1000000);
}

/* slirp_pollfds_fill names the fds afresh every round: nothing to track */
static void cb_register_poll_fd(int fd, void *opaque)
{
}

static void cb_unregister_poll_fd(int fd, void *opaque)
{
}

static void cb_notify(void *opaque)
{
	struct slirp_backend *s = opaque;

	iothread_wake(s->io);
}

static const SlirpCb slirp_cbs = {
	.send_packet = cb_send_packet,
	.guest_error = cb_guest_error,
	.clock_get_ns = cb_clock_get_ns,
	.timer_new = cb_timer_new,
	.timer_free = cb_timer_free,
	.timer_mod = cb_timer_mod,
	.register_poll_fd = cb_register_poll_fd,
	.unregister_poll_fd = cb_unregister_poll_fd,
	.notify = cb_notify,
	.timer_new_opaque = cb_timer_new_opaque,
};

static int add_poll(int fd, int events, void *opaque)
{
	short ev = 0;

	if (events & SLIRP_POLL_IN)
		ev |= POLLIN;
	if (events & SLIRP_POLL_OUT)
		ev |= POLLOUT;
	if (events & SLIRP_POLL_PRI)
		ev |= POLLPRI;
	return iothread_pollset_add(opaque, fd, ev);
}

static int get_revents(int idx, void *opaque)
{
	short rev = iothread_pollset_revents(opaque, idx);
	int ev = 0;

	if (rev & POLLIN)
		ev |= SLIRP_POLL_IN;
	if (rev & POLLOUT)
		ev |= SLIRP_POLL_OUT;
	if (rev & POLLPRI)
		ev |= SLIRP_POLL_PRI;
	if (rev & (POLLERR | POLLNVAL))
		ev |= SLIRP_POLL_ERR;
	if (rev & POLLHUP)
		ev |= SLIRP_POLL_HUP;
	return ev;
}

static void src_prepare(void *opaque, struct iothread_pollset *ps, int64_t *timeout_ns)
{
	struct slirp_backend *s = opaque;
	uint32_t ms;

	s->polled = s->nb.port.can_receive(s->nb.port.opaque);
	if (!s->polled)
		return;
	ms = *timeout_ns < 0 || *timeout_ns / 1000000 > UINT32_MAX ? UINT32_MAX : *timeout_ns / 1000000;
	pthread_mutex_lock(&s->lock);
	slirp_pollfds_fill(s->slirp, &ms, add_poll, ps);
	pthread_mutex_unlock(&s->lock);
	if (ms != UINT32_MAX && (*timeout_ns < 0 || (int64_t)ms * 1000000 < *timeout_ns))
		*timeout_ns = (int64_t)ms * 1000000;
}

static void src_dispatch(void *opaque, struct iothread_pollset *ps, int poll_error)
{
	struct slirp_backend *s = opaque;

	if (!s->polled)
		return;
	pthread_mutex_lock(&s->lock);
	slirp_pollfds_poll(s->slirp, poll_error, get_revents, ps);
	pthread_mutex_unlock(&s->lock);
}

static const struct iothread_source_ops slirp_source = { src_prepare, src_dispatch };

static void slirp_send(struct net_backend *nb, const void *frame, size_t len)
{
	struct slirp_backend *s = (struct slirp_backend *)nb;

	pthread_mutex_lock(&s->lock);
	slirp_input(s->slirp, frame, len);
	pthread_mutex_unlock(&s->lock);
}

static void slirp_resume(struct net_backend *nb)
{
	struct slirp_backend *s = (struct slirp_backend *)nb;

	iothread_wake(s->io);
}

static void slirp_destroy(struct net_backend *nb)
{
	struct slirp_backend *s = (struct slirp_backend *)nb;

	/* closes the forwards' listening sockets; its timers go through
	 * cb_timer_free. The I/O thread's source entry goes with the thread. */
	slirp_cleanup(s->slirp);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static const struct net_backend_ops slirp_ops = {
	.send = slirp_send,
	.resume = slirp_resume,
	.destroy = slirp_destroy,
};

static struct in_addr ip4(const char *s)
{
	struct in_addr a;

	inet_pton(AF_INET, s, &a);
	return a;
}

struct net_backend *net_slirp_create(const struct net_config *cfg, struct iothread *io)
{
	struct slirp_backend *s = calloc(1, sizeof(*s));
	SlirpConfig sc = {
		.version = 4,
		.in_enabled = true,
		.vnetwork = ip4("10.0.2.0"),
		.vnetmask = ip4("255.255.255.0"),
		.vhost = ip4("10.0.2.2"),
		.vdhcp_start = ip4("10.0.2.15"),
		.vnameserver = ip4("10.0.2.3"),
		.vhostname = "accord-guest",
	};

	if (!s) {
		fprintf(stderr, "accord: --net user: out of memory\n");
		return NULL;
	}
	s->nb.ops = &slirp_ops;
	s->io = io;
	pthread_mutex_init(&s->lock, NULL);
	s->slirp = slirp_new(&sc, &slirp_cbs, s);
	if (!s->slirp) {
		fprintf(stderr, "accord: --net user: libslirp could not start\n");
		free(s);
		return NULL;
	}
	for (int i = 0; i < cfg->nfwd; i++) {
		const struct net_hostfwd *f = &cfg->fwd[i];
		struct in_addr ha = { f->host_addr }, ga = { f->guest_addr };

		if (slirp_add_hostfwd(s->slirp, f->udp, ha, f->host_port, ga, f->guest_port) < 0) {
			char addr[INET_ADDRSTRLEN] = "";

			if (f->host_addr)
				inet_ntop(AF_INET, &ha, addr, sizeof(addr));
			fprintf(stderr, "accord: --net user: hostfwd=%s:%s:%u: cannot listen on the host (%s)\n",
				f->udp ? "udp" : "tcp", addr, f->host_port,
				errno ? strerror(errno) : "address in use?");
			slirp_cleanup(s->slirp);
			free(s);
			return NULL;
		}
	}
	if (iothread_source_add(io, &slirp_source, s)) {
		fprintf(stderr, "accord: --net user: too many I/O sources\n");
		slirp_cleanup(s->slirp);
		free(s);
		return NULL;
	}
	return &s->nb;
}
