/* One guest run: a child process in its own process group, stdin from
 * /dev/null, stdout (the guest's serial port) and stderr captured, ended by
 * SIGTERM and then SIGKILL when it outlives its deadline. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "certify/internal.h"

/* a guest that prints without end must not exhaust the host's memory */
#define CAPTURE_MAX (8u << 20)
#define KILL_GRACE_MS 5000

struct capture {
	char *buf;
	size_t len, cap;
};

/* the running child's process group: it is not in our terminal's group, so
 * an interrupt of certify must end it here */
static volatile sig_atomic_t current_child;

static void on_signal(int sig)
{
	if (current_child > 0)
		kill(-(pid_t)current_child, SIGKILL);
	signal(sig, SIG_DFL);
	raise(sig);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* returns false at end of file */
static bool capture_read(int fd, struct capture *c)
{
	char tmp[65536];
	ssize_t n = read(fd, tmp, sizeof(tmp));
	if (n < 0)
		return errno == EINTR || errno == EAGAIN;
	if (n == 0)
		return false;
	size_t keep = c->len + (size_t)n > CAPTURE_MAX ? CAPTURE_MAX - c->len : (size_t)n;
	if (c->len + keep + 1 > c->cap) {
		size_t cap = c->cap ? c->cap : 65536;
		while (cap < c->len + keep + 1)
			cap *= 2;
		c->buf = realloc(c->buf, cap);
		if (!c->buf)
			abort();
		c->cap = cap;
	}
	memcpy(c->buf + c->len, tmp, keep);
	c->len += keep;
	c->buf[c->len] = 0;
	return true;
}

void run_child(char *const argv[], int timeout_s, const char *abort_marker,
	       const char *abort_reason, struct child_result *r)
{
	int out[2], err[2];
	struct capture co = { 0 }, ce = { 0 };

	memset(r, 0, sizeof(*r));
	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
		snprintf(r->error, sizeof(r->error), "pipe: %s", strerror(errno));
		return;
	}
	double t0 = now();
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(r->error, sizeof(r->error), "fork: %s", strerror(errno));
		close(out[0]), close(out[1]), close(err[0]), close(err[1]);
		return;
	}
	if (pid == 0) {
		setpgid(0, 0);
		int null = open("/dev/null", O_RDONLY);
		if (null < 0 || dup2(null, 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0)
			_exit(127);
		signal(SIGPIPE, SIG_DFL);
		execvp(argv[0], argv);
		dprintf(2, "accord certify: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	setpgid(pid, pid);	/* also here: no race with the kill below */
	current_child = pid;
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		struct sigaction old;
		/* a signal our caller ignores stays ignored */
		if (!sigaction(sigs[i], NULL, &old) && old.sa_handler != SIG_IGN)
			signal(sigs[i], on_signal);
	}
	r->started = true;
	close(out[1]);
	close(err[1]);

	struct pollfd pfd[2] = { { .fd = out[0], .events = POLLIN }, { .fd = err[0], .events = POLLIN } };
	double deadline = t0 + timeout_s, kill_at = 0;
	int open_fds = 2;
	while (open_fds) {
		double t = now();
		if (!kill_at && t >= deadline) {
			r->timed_out = true;
			kill(-pid, SIGTERM);
			kill_at = t + KILL_GRACE_MS / 1000.0;
		} else if (kill_at && t >= kill_at) {
			/* a child that ignores SIGTERM, or a grandchild that keeps
			 * the pipes: stop waiting for them */
			kill(-pid, SIGKILL);
			break;
		}
		double until = kill_at ? kill_at : deadline;
		int ms = (int)((until - t) * 1000) + 1;
		int n = poll(pfd, 2, ms);
		if (n < 0 && errno != EINTR)
			break;
		for (int i = 0; i < 2 && n > 0; i++) {
			if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			if (!capture_read(pfd[i].fd, i ? &ce : &co)) {
				close(pfd[i].fd);
				pfd[i].fd = -1;
				open_fds--;
			}
		}
		if (abort_marker && !r->aborted && !kill_at && ce.buf && strstr(ce.buf, abort_marker)) {
			r->aborted = abort_reason;
			kill(-pid, SIGKILL);
			kill_at = now() + KILL_GRACE_MS / 1000.0;
		}
	}
	for (int i = 0; i < 2; i++)
		if (pfd[i].fd >= 0)
			close(pfd[i].fd);

	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	current_child = 0;
	r->seconds = now() - t0;
	if (WIFEXITED(st))
		r->status = WEXITSTATUS(st);
	else if (WIFSIGNALED(st))
		r->signal = WTERMSIG(st);
	r->out = co.buf ? co.buf : strdup("");
	r->out_len = co.len;
	r->err = ce.buf ? ce.buf : strdup("");
	r->err_len = ce.len;
}

void child_result_free(struct child_result *r)
{
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
}

char *child_failure(const struct child_result *r, int timeout_s)
{
	if (!r->started)
		return xasprintf("could not start: %s", r->error);
	if (r->aborted)
		return xasprintf("%s", r->aborted);
	if (r->timed_out)
		return xasprintf("timed out after %d s", timeout_s);
	if (r->signal)
		return xasprintf("killed by signal %d (%s)", r->signal, strsignal(r->signal));
	return NULL;
}
