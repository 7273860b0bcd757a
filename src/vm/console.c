/* Console plumbing between the user's terminal and the guest's console
 * devices (console.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <sys/eventfd.h>

#include "vm/console.h"
#include "vm/iothread.h"
#include "vm/vm.h"

#define TAIL_SIZE 8192
/* Guest output waiting for the terminal. A terminal that stops reading
 * (a paused pager, a stalled pipe) must not stall the UART and with it the
 * vCPU that holds vm->io_lock: the guest's bytes are always taken from
 * the pipe at once, scanned for a panic and kept in the tail, and wait here
 * for the terminal; when this is full the oldest are dropped and the
 * terminal is told how many. */
#define OUT_RING (256 * 1024)
/* at the end, how long the terminal may make no progress before the
 * output still waiting is given up */
#define DRAIN_STALL_SEC 2

static struct {
	struct vm *vm;
	int out_rd, out_wr;
	pthread_t out_thread, tty_thread;
	bool out_started, tty_started;
	pthread_mutex_t lock; /* the ring and the writer's state */
	pthread_cond_t cond;
	char ring[OUT_RING];
	size_t ring_head, ring_len;
	uint64_t dropped;  /* bytes dropped since the terminal last heard */
	uint64_t written;  /* progress, for console_stop */
	bool eof, tty_done;
	struct termios saved;
	bool raw;
	char tail[TAIL_SIZE];
	size_t tail_len;
	char line[256];
	size_t line_len;
	char panic[256];
} con;

static void restore_tty(void)
{
	if (con.raw) {
		tcsetattr(STDIN_FILENO, TCSANOW, &con.saved);
		con.raw = false;
	}
}

void console_restore_tty(void)
{
	restore_tty();
}

static void on_signal(int sig)
{
	restore_tty();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void tail_add(const char *buf, size_t n)
{
	if (n > TAIL_SIZE) {
		buf += n - TAIL_SIZE;
		n = TAIL_SIZE;
	}
	if (con.tail_len + n > TAIL_SIZE) {
		size_t drop = con.tail_len + n - TAIL_SIZE;
		memmove(con.tail, con.tail + drop, con.tail_len - drop);
		con.tail_len -= drop;
	}
	memcpy(con.tail + con.tail_len, buf, n);
	con.tail_len += n;
}

/* A Linux guest that panics says so on its console; the VM ends with the
 * panic status instead of hanging (the kernel's default is to spin). */
static void scan_line(char ch)
{
	if (ch == '\n' || con.line_len == sizeof(con.line) - 1) {
		con.line[con.line_len] = 0;
		char *p = strstr(con.line, "Kernel panic - not syncing");
		if (p && !con.panic[0]) {
			snprintf(con.panic, sizeof(con.panic), "guest panic: %s", p);
			size_t l = strlen(con.panic);
			while (l && (con.panic[l - 1] == '\r' || con.panic[l - 1] == '\n'))
				con.panic[--l] = 0;
			vm_request_exit(con.vm, VM_PANIC, 2, con.panic);
		}
		con.line_len = 0;
		return;
	}
	con.line[con.line_len++] = ch;
}

static void ring_put(const char *buf, size_t n)
{
	if (n > OUT_RING) {
		con.dropped += n - OUT_RING;
		buf += n - OUT_RING;
		n = OUT_RING;
	}
	if (con.ring_len + n > OUT_RING) {
		size_t drop = con.ring_len + n - OUT_RING;

		con.ring_head = (con.ring_head + drop) % OUT_RING;
		con.ring_len -= drop;
		con.dropped += drop;
	}
	for (size_t i = 0; i < n; i++)
		con.ring[(con.ring_head + con.ring_len + i) % OUT_RING] = buf[i];
	con.ring_len += n;
}

/* takes the guest's output from the UART's pipe as fast as it comes */
static void *out_thread(void *arg)
{
	char buf[4096];
	for (;;) {
		ssize_t n = read(con.out_rd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		pthread_mutex_lock(&con.lock);
		ring_put(buf, n);
		pthread_cond_broadcast(&con.cond);
		pthread_mutex_unlock(&con.lock);
		tail_add(buf, n);
		for (ssize_t i = 0; i < n; i++)
			scan_line(buf[i]);
	}
	pthread_mutex_lock(&con.lock);
	con.eof = true;
	pthread_cond_broadcast(&con.cond);
	pthread_mutex_unlock(&con.lock);
	return NULL;
}

static bool write_all(const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(STDOUT_FILENO, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= w;
	}
	return true;
}

/* hands the buffered output to the terminal, at the terminal's pace */
static void *tty_thread(void *arg)
{
	char buf[4096], note[128];
	bool ok = true;

	pthread_mutex_lock(&con.lock);
	for (;;) {
		while (!con.ring_len && !con.eof)
			pthread_cond_wait(&con.cond, &con.lock);
		if (!con.ring_len)
			break;
		size_t n = con.ring_len < sizeof(buf) ? con.ring_len : sizeof(buf);
		uint64_t dropped = con.dropped;

		for (size_t i = 0; i < n; i++)
			buf[i] = con.ring[(con.ring_head + i) % OUT_RING];
		con.ring_head = (con.ring_head + n) % OUT_RING;
		con.ring_len -= n;
		con.dropped = 0;
		pthread_mutex_unlock(&con.lock);
		if (dropped && ok) {
			int k = snprintf(note, sizeof(note),
					 "\r\n[accord: %llu bytes of guest output dropped: the terminal did not keep up]\r\n",
					 (unsigned long long)dropped);
			ok = write_all(note, k);
		}
		/* a terminal that is gone still has its output taken */
		if (ok)
			ok = write_all(buf, n);
		pthread_mutex_lock(&con.lock);
		con.written += n;
		pthread_cond_broadcast(&con.cond);
	}
	con.tty_done = true;
	pthread_cond_broadcast(&con.cond);
	pthread_mutex_unlock(&con.lock);
	return NULL;
}

/* how long input waits for a device that said nothing about room */
#define INPUT_RETRY_NS 50000000

struct console_input {
	struct vm *vm;
	struct iothread *io;
	int fd, room_fd;
	struct iothread_timer *retry;
	console_input_fn fn;
	void *dev;
	bool esc;	       /* Ctrl-a came last */
	bool paused;	       /* fd is off the I/O thread while bytes wait */
	bool waiting;	       /* bytes wait for room (atomic: devices read it) */
	size_t pend_off, pend_len;
	uint8_t pend[512];     /* input after escapes, not yet taken */
};

/* Ctrl-a x, a, h: the escapes of the terminal. false when the VM ends. */
static bool input_escapes(struct console_input *ci, const uint8_t *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t ch = buf[i];

		if (ci->esc) {
			ci->esc = false;
			if (ch == 'x' || ch == 'X') {
				restore_tty();
				fprintf(stderr, "\r\naccord: terminated from the console (Ctrl-a x)\r\n");
				vm_request_exit(ci->vm, VM_POWEROFF, 0, "terminated from the console");
				return false;
			}
			if (ch == 'h' || ch == 'H' || ch == '?') {
				fprintf(stderr, "\r\nCtrl-a x  quit\r\nCtrl-a a  send Ctrl-a\r\n");
				continue;
			}
			if (ch == 'a' || ch == 1)
				ci->pend[ci->pend_len++] = 1;
			continue;
		}
		if (ch == 1) {
			ci->esc = true;
			continue;
		}
		ci->pend[ci->pend_len++] = ch;
	}
	return true;
}

/* hand the waiting bytes to the device; true when none are left */
static bool input_flush(struct console_input *ci)
{
	pthread_mutex_lock(&ci->vm->io_lock);
	while (ci->pend_len) {
		size_t k = ci->fn(ci->dev, ci->pend + ci->pend_off, ci->pend_len);

		if (!k)
			break;
		ci->pend_off += k;
		ci->pend_len -= k;
	}
	pthread_mutex_unlock(&ci->vm->io_lock);
	if (ci->pend_len)
		return false;
	ci->pend_off = 0;
	return true;
}

static void input_readable(void *opaque, int fd, short revents);

/* The device is full: stop reading the terminal until it has room. The
 * fd leaves the poll set, since a hang-up would be reported even with no
 * events asked for. */
static void input_wait(struct console_input *ci)
{
	if (ci->fd >= 0 && !ci->paused) {
		iothread_fd_del(ci->io, ci->fd);
		ci->paused = true;
	}
	__atomic_store_n(&ci->waiting, true, __ATOMIC_SEQ_CST);
	iothread_timer_arm(ci->retry, iothread_now_ns() + INPUT_RETRY_NS);
}

static void input_resume(struct console_input *ci)
{
	if (!input_flush(ci)) {
		input_wait(ci);
		return;
	}
	__atomic_store_n(&ci->waiting, false, __ATOMIC_SEQ_CST);
	iothread_timer_arm(ci->retry, -1);
	if (ci->paused && !iothread_fd_add(ci->io, ci->fd, POLLIN, input_readable, ci))
		ci->paused = false;
}

static void input_readable(void *opaque, int fd, short revents)
{
	struct console_input *ci = opaque;
	uint8_t buf[256];
	ssize_t n;

	/* the fd is polled only while nothing waits, and escapes can only
	 * shorten the input: the pending buffer holds it */
	do
		n = read(fd, buf, sizeof(buf));
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return;
	if (n <= 0) {
		/* the end of input, or a terminal gone: nothing more comes */
		iothread_fd_del(ci->io, fd);
		ci->fd = -1;
		return;
	}
	if (!input_escapes(ci, buf, n)) {
		iothread_fd_del(ci->io, fd);
		ci->fd = -1;
		return;
	}
	if (!input_flush(ci))
		input_wait(ci);
}

static void input_room_event(void *opaque, int fd, short revents)
{
	struct console_input *ci = opaque;
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	input_resume(ci);
}

static void input_retry(void *opaque)
{
	input_resume(opaque);
}

void console_input_room(struct console_input *ci)
{
	uint64_t one = 1;

	if (ci && __atomic_exchange_n(&ci->waiting, false, __ATOMIC_SEQ_CST) &&
	    write(ci->room_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		perror("accord: console input");
}

struct console_input *console_input_start(struct vm *vm, struct iothread *io, int fd,
					  console_input_fn fn, void *dev)
{
	struct console_input *ci = calloc(1, sizeof(*ci));

	if (!ci)
		goto fail;
	ci->vm = vm;
	ci->io = io;
	ci->fd = fd;
	ci->fn = fn;
	ci->dev = dev;
	ci->room_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ci->retry = iothread_timer_new(io, input_retry, ci);
	if (ci->room_fd < 0 || !ci->retry)
		goto fail;
	if (iothread_fd_add(io, ci->room_fd, POLLIN, input_room_event, ci))
		goto fail;
	if (iothread_fd_add(io, fd, POLLIN, input_readable, ci)) {
		iothread_fd_del(io, ci->room_fd);
		goto fail;
	}
	return ci;
fail:
	fprintf(stderr, "accord: console input: cannot watch the terminal on the I/O thread\n");
	if (ci) {
		if (ci->retry)
			iothread_timer_free(ci->retry);
		if (ci->room_fd >= 0)
			close(ci->room_fd);
		free(ci);
	}
	return NULL;
}

void console_input_free(struct console_input *ci)
{
	if (!ci)
		return;
	if (ci->fd >= 0 && !ci->paused)
		iothread_fd_del(ci->io, ci->fd);
	iothread_fd_del(ci->io, ci->room_fd);
	iothread_timer_free(ci->retry);
	close(ci->room_fd);
	free(ci);
}

int console_start(struct vm *vm, int *out_fd)
{
	int outp[2];
	con.vm = vm;
	if (pipe(outp) < 0) {
		perror("accord: pipe");
		return -1;
	}
	con.out_rd = outp[0];
	con.out_wr = outp[1];
	/* slack for the moments the reader is not scheduled (best effort) */
	fcntl(outp[1], F_SETPIPE_SZ, 1 << 20);
	pthread_mutex_init(&con.lock, NULL);
	pthread_cond_init(&con.cond, NULL);
	*out_fd = outp[1];
	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &con.saved) == 0) {
		struct termios raw = con.saved;
		cfmakeraw(&raw);
		raw.c_oflag |= OPOST | ONLCR;
		if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0) {
			con.raw = true;
			atexit(restore_tty);
			signal(SIGTERM, on_signal);
			signal(SIGHUP, on_signal);
		}
	}
	if (pthread_create(&con.out_thread, NULL, out_thread, NULL) == 0)
		con.out_started = true;
	if (pthread_create(&con.tty_thread, NULL, tty_thread, NULL) == 0)
		con.tty_started = true;
	return 0;
}

/* Waits until the terminal has the guest's output, unless it makes no
 * progress for DRAIN_STALL_SEC: then what is left is given up (the panic
 * line and the tail were taken already) and the writer is left behind. */
static void drain_tty(void)
{
	uint64_t seen;
	struct timespec until;

	pthread_mutex_lock(&con.lock);
	do {
		seen = con.written;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += DRAIN_STALL_SEC;
		while (!con.tty_done && con.written == seen)
			if (pthread_cond_timedwait(&con.cond, &con.lock, &until))
				break;
	} while (!con.tty_done && con.written != seen);
	bool done = con.tty_done;
	pthread_mutex_unlock(&con.lock);
	if (done)
		pthread_join(con.tty_thread, NULL);
	con.tty_started = false;
}

void console_stop(void)
{
	if (con.out_started) {
		close(con.out_wr);
		pthread_join(con.out_thread, NULL);
		con.out_started = false;
	}
	if (con.tty_started)
		drain_tty();
	restore_tty();
}

const char *console_panic(void)
{
	return con.panic[0] ? con.panic : NULL;
}

void console_print_tail(int lines)
{
	size_t start = con.tail_len;
	int seen = 0;
	while (start > 0) {
		if (con.tail[start - 1] == '\n' && ++seen > lines)
			break;
		start--;
	}
	fprintf(stderr, "accord: last guest console lines:\n");
	fwrite(con.tail + start, 1, con.tail_len - start, stderr);
	if (con.tail_len && con.tail[con.tail_len - 1] != '\n')
		fputc('\n', stderr);
}
