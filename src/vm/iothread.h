/* The I/O thread: one event loop per VM, so that device work driven from
 * the host side (a network backend's socket or TAP fd, a timer) runs
 * without waiting for a vCPU to exit.
 *
 * Three kinds of event source plug into it:
 *  - fds: a callback when poll() reports the requested events. Setting the
 *    events to 0 pauses an fd without unregistering it (flow control).
 *    poll() reports POLLERR, POLLHUP and POLLNVAL whatever was asked for:
 *    a callback that sees them must pause or remove its fd, or the loop
 *    spins on them.
 *  - timers: a callback at a CLOCK_MONOTONIC deadline, one shot; re-arm
 *    from the callback for periodic work.
 *  - sources: for libraries that name their fds afresh on every round
 *    (libslirp): prepare() adds fds to the round's poll set and may shorten
 *    the timeout, dispatch() reads the results.
 *
 * Callbacks run on the I/O thread with no accord lock held; a device takes
 * vm->io_lock itself before it touches its state or guest memory. Every
 * registration call may be made from any thread, including from a
 * callback; the loop sees the change before it sleeps again. */
#ifndef ACCORD_IOTHREAD_H
#define ACCORD_IOTHREAD_H

#include <poll.h>
#include <stdint.h>

struct iothread;
struct iothread_timer;

typedef void (*iothread_fd_fn)(void *opaque, int fd, short revents);
typedef void (*iothread_timer_fn)(void *opaque);

/* the poll set of one round, for sources */
struct iothread_pollset;
/* index of the new entry, -1 when the set is full */
int iothread_pollset_add(struct iothread_pollset *ps, int fd, short events);
short iothread_pollset_revents(const struct iothread_pollset *ps, int idx);

struct iothread_source_ops {
	/* add fds; *timeout_ns (-1: none) may be lowered */
	void (*prepare)(void *opaque, struct iothread_pollset *ps, int64_t *timeout_ns);
	void (*dispatch)(void *opaque, struct iothread_pollset *ps, int poll_error);
};

/* NULL after a line on stderr */
struct iothread *iothread_create(void);
int iothread_start(struct iothread *io);
/* stop the loop and join the thread; the registrations stay */
void iothread_stop(struct iothread *io);
/* stop it and free it with its registrations (their owners are gone) */
void iothread_destroy(struct iothread *io);

int iothread_fd_add(struct iothread *io, int fd, short events, iothread_fd_fn fn, void *opaque);
void iothread_fd_set_events(struct iothread *io, int fd, short events);
void iothread_fd_del(struct iothread *io, int fd);

struct iothread_timer *iothread_timer_new(struct iothread *io, iothread_timer_fn fn, void *opaque);
/* deadline in CLOCK_MONOTONIC ns; -1 disarms */
void iothread_timer_arm(struct iothread_timer *t, int64_t deadline_ns);
void iothread_timer_free(struct iothread_timer *t);

#define IOTHREAD_MAX_SOURCES 16
int iothread_source_add(struct iothread *io, const struct iothread_source_ops *ops, void *opaque);

/* With the thread not started (unit tests, fuzzers): run, on the calling
 * thread, the callbacks of whatever is ready now, round after round until
 * nothing is. */
void iothread_run_pending(struct iothread *io);

/* make the loop run a round now (e.g. a source has new work) */
void iothread_wake(struct iothread *io);

int64_t iothread_now_ns(void);

#endif
