/* The I/O thread's event loop (iothread.h): ppoll() over the registered
 * fds, the sources' fds of this round and an eventfd that registration
 * calls and iothread_wake() write, with the nearest timer as the timeout.
 * One lock guards the registrations; it is never held while a callback
 * runs, so callbacks may register, arm and wake freely. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "vm/iothread.h"

struct io_fd {
	int fd;
	short events;
	iothread_fd_fn fn;
	void *opaque;
};

struct iothread_timer {
	struct iothread *io;
	struct iothread_timer *next;
	int64_t deadline; /* -1: disarmed */
	iothread_timer_fn fn;
	void *opaque;
};

struct io_source {
	const struct iothread_source_ops *ops;
	void *opaque;
};

struct iothread_pollset {
	struct pollfd *pfd;
	int n, cap;
};

struct iothread {
	pthread_mutex_t lock;
	pthread_t thread;
	bool running, stop;
	int wake_fd;
	struct io_fd *fds;
	int nfds, fds_cap;
	struct iothread_timer *timers;
	struct io_source *src;
	int nsrc, src_cap;
	struct iothread_pollset ps;
};

int64_t iothread_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void iothread_wake(struct iothread *io)
{
	uint64_t one = 1;

	/* a full counter already means "wake up" */
	if (write(io->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		perror("accord: iothread wake");
}

int iothread_pollset_add(struct iothread_pollset *ps, int fd, short events)
{
	if (ps->n == ps->cap) {
		int cap = ps->cap ? 2 * ps->cap : 64;
		struct pollfd *p = realloc(ps->pfd, cap * sizeof(*p));

		if (!p)
			return -1;
		ps->pfd = p;
		ps->cap = cap;
	}
	ps->pfd[ps->n] = (struct pollfd){ .fd = fd, .events = events };
	return ps->n++;
}

short iothread_pollset_revents(const struct iothread_pollset *ps, int idx)
{
	return idx >= 0 && idx < ps->n ? ps->pfd[idx].revents : 0;
}

static int grow(void **arr, int *cap, int n, size_t elem)
{
	if (n < *cap)
		return 0;
	int ncap = *cap ? 2 * *cap : 8;
	void *p = realloc(*arr, ncap * elem);

	if (!p)
		return -1;
	*arr = p;
	*cap = ncap;
	return 0;
}

static struct io_fd *find_fd(struct iothread *io, int fd)
{
	for (int i = 0; i < io->nfds; i++)
		if (io->fds[i].fd == fd)
			return &io->fds[i];
	return NULL;
}

int iothread_fd_add(struct iothread *io, int fd, short events, iothread_fd_fn fn, void *opaque)
{
	int rc = -1;

	pthread_mutex_lock(&io->lock);
	if (!find_fd(io, fd) && !grow((void **)&io->fds, &io->fds_cap, io->nfds, sizeof(*io->fds))) {
		io->fds[io->nfds++] = (struct io_fd){ fd, events, fn, opaque };
		rc = 0;
	}
	pthread_mutex_unlock(&io->lock);
	iothread_wake(io);
	return rc;
}

void iothread_fd_set_events(struct iothread *io, int fd, short events)
{
	struct io_fd *f;
	bool changed = false;

	pthread_mutex_lock(&io->lock);
	f = find_fd(io, fd);
	if (f && f->events != events) {
		f->events = events;
		changed = true;
	}
	pthread_mutex_unlock(&io->lock);
	if (changed)
		iothread_wake(io);
}

void iothread_fd_del(struct iothread *io, int fd)
{
	struct io_fd *f;

	pthread_mutex_lock(&io->lock);
	f = find_fd(io, fd);
	if (f)
		*f = io->fds[--io->nfds];
	pthread_mutex_unlock(&io->lock);
	iothread_wake(io);
}

struct iothread_timer *iothread_timer_new(struct iothread *io, iothread_timer_fn fn, void *opaque)
{
	struct iothread_timer *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->io = io;
	t->deadline = -1;
	t->fn = fn;
	t->opaque = opaque;
	pthread_mutex_lock(&io->lock);
	t->next = io->timers;
	io->timers = t;
	pthread_mutex_unlock(&io->lock);
	return t;
}

void iothread_timer_arm(struct iothread_timer *t, int64_t deadline_ns)
{
	pthread_mutex_lock(&t->io->lock);
	t->deadline = deadline_ns < 0 ? -1 : deadline_ns;
	pthread_mutex_unlock(&t->io->lock);
	iothread_wake(t->io);
}

void iothread_timer_free(struct iothread_timer *t)
{
	struct iothread *io;

	if (!t)
		return;
	io = t->io;
	pthread_mutex_lock(&io->lock);
	for (struct iothread_timer **p = &io->timers; *p; p = &(*p)->next) {
		if (*p == t) {
			*p = t->next;
			break;
		}
	}
	pthread_mutex_unlock(&io->lock);
	free(t);
}

int iothread_source_add(struct iothread *io, const struct iothread_source_ops *ops, void *opaque)
{
	int rc = -1;

	pthread_mutex_lock(&io->lock);
	if (io->nsrc < IOTHREAD_MAX_SOURCES &&
	    !grow((void **)&io->src, &io->src_cap, io->nsrc, sizeof(*io->src))) {
		io->src[io->nsrc++] = (struct io_source){ ops, opaque };
		rc = 0;
	}
	pthread_mutex_unlock(&io->lock);
	iothread_wake(io);
	return rc;
}

/* fire the timers that are due, one at a time with the lock dropped */
static void run_timers(struct iothread *io)
{
	for (;;) {
		int64_t now = iothread_now_ns();
		struct iothread_timer *due = NULL;
		iothread_timer_fn fn = NULL;
		void *opaque = NULL;

		pthread_mutex_lock(&io->lock);
		for (struct iothread_timer *t = io->timers; t; t = t->next) {
			if (t->deadline >= 0 && t->deadline <= now) {
				due = t;
				break;
			}
		}
		if (due) {
			due->deadline = -1;
			fn = due->fn;
			opaque = due->opaque;
		}
		pthread_mutex_unlock(&io->lock);
		if (!due)
			return;
		fn(opaque);
	}
}

/* one poll round and its callbacks; at most max_timeout ns of sleep (-1:
 * until something happens). The number of fds that were ready, -1 when
 * poll failed. */
static int round_run(struct iothread *io, int64_t max_timeout)
{
	struct iothread_pollset *ps = &io->ps;
	int64_t timeout = -1, now = iothread_now_ns();
	int nfixed, nsrc, rc;
	struct io_source src[IOTHREAD_MAX_SOURCES];

	ps->n = 0;
	iothread_pollset_add(ps, io->wake_fd, POLLIN);
	pthread_mutex_lock(&io->lock);
	for (int i = 0; i < io->nfds; i++)
		if (io->fds[i].events)
			iothread_pollset_add(ps, io->fds[i].fd, io->fds[i].events);
	for (struct iothread_timer *t = io->timers; t; t = t->next) {
		if (t->deadline < 0)
			continue;
		int64_t left = t->deadline > now ? t->deadline - now : 0;
		if (timeout < 0 || left < timeout)
			timeout = left;
	}
	nsrc = io->nsrc;
	if (nsrc)
		memcpy(src, io->src, nsrc * sizeof(*src));
	pthread_mutex_unlock(&io->lock);
	nfixed = ps->n;

	for (int i = 0; i < nsrc; i++)
		src[i].ops->prepare(src[i].opaque, ps, &timeout);
	if (max_timeout >= 0 && (timeout < 0 || timeout > max_timeout))
		timeout = max_timeout;

	struct timespec ts = { timeout / 1000000000, timeout % 1000000000 };
	rc = ppoll(ps->pfd, ps->n, timeout < 0 ? NULL : &ts, NULL);
	if (rc < 0 && errno != EINTR) {
		perror("accord: iothread poll");
		return -1;
	}
	if (rc < 0)
		for (int i = 0; i < ps->n; i++)
			ps->pfd[i].revents = 0;

	if (ps->pfd[0].revents & POLLIN) {
		uint64_t v;

		if (read(io->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			perror("accord: iothread wake");
	}
	for (int i = 1; i < nfixed; i++) {
		short rev = ps->pfd[i].revents;
		iothread_fd_fn fn = NULL;
		void *opaque = NULL;

		if (!rev)
			continue;
		/* the fd may have been paused or removed since the round began */
		pthread_mutex_lock(&io->lock);
		struct io_fd *f = find_fd(io, ps->pfd[i].fd);
		if (f && f->events) {
			fn = f->fn;
			opaque = f->opaque;
		}
		pthread_mutex_unlock(&io->lock);
		if (fn)
			fn(opaque, ps->pfd[i].fd, rev);
	}
	for (int i = 0; i < nsrc; i++)
		src[i].ops->dispatch(src[i].opaque, ps, rc < 0);
	run_timers(io);
	return rc < 0 ? 0 : rc;
}

static void *loop(void *arg)
{
	struct iothread *io = arg;

	while (!__atomic_load_n(&io->stop, __ATOMIC_ACQUIRE))
		if (round_run(io, -1) < 0)
			break;
	return NULL;
}

void iothread_run_pending(struct iothread *io)
{
	/* bounded: a callback that keeps its fd ready must not hang a test */
	for (int i = 0; i < 64 && round_run(io, 0) > 0; i++)
		;
}

struct iothread *iothread_create(void)
{
	struct iothread *io = calloc(1, sizeof(*io));

	if (!io) {
		fprintf(stderr, "accord: iothread: out of memory\n");
		return NULL;
	}
	/* room for the wake-up fd at least, so that every round can poll */
	if (iothread_pollset_add(&io->ps, -1, 0) < 0) {
		fprintf(stderr, "accord: iothread: out of memory\n");
		free(io);
		return NULL;
	}
	io->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (io->wake_fd < 0) {
		free(io->ps.pfd);
		fprintf(stderr, "accord: iothread: eventfd: %s\n", strerror(errno));
		free(io);
		return NULL;
	}
	pthread_mutex_init(&io->lock, NULL);
	return io;
}

int iothread_start(struct iothread *io)
{
	int err;

	if (io->running)
		return 0;
	io->stop = false;
	err = pthread_create(&io->thread, NULL, loop, io);
	if (err) {
		fprintf(stderr, "accord: iothread: %s\n", strerror(err));
		return -1;
	}
	io->running = true;
	return 0;
}

void iothread_destroy(struct iothread *io)
{
	if (!io)
		return;
	iothread_stop(io);
	while (io->timers) {
		struct iothread_timer *t = io->timers;

		io->timers = t->next;
		free(t);
	}
	free(io->fds);
	free(io->src);
	free(io->ps.pfd);
	close(io->wake_fd);
	pthread_mutex_destroy(&io->lock);
	free(io);
}

void iothread_stop(struct iothread *io)
{
	if (!io || !io->running)
		return;
	__atomic_store_n(&io->stop, true, __ATOMIC_RELEASE);
	iothread_wake(io);
	pthread_join(io->thread, NULL);
	io->running = false;
}
