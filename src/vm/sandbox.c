/* The seccomp sandbox (libseccomp). What a running VMM does is read and
 * write fds it already has, wait, keep time, allocate memory, start and
 * stop its own threads, signal them (the kvm engine's kicks), drive
 * /dev/kvm and the terminal through ioctl, and talk over sockets (the gdb
 * stub, user-mode networking and TAP). It creates and writes no file,
 * runs no program and makes no process: writable opens, execve, fork and
 * ptrace are what an attacker who took over the VMM through a device bug
 * would want first. Read-only opens stay: libslirp reads /etc/resolv.conf
 * when the guest first asks its DNS server, long after set-up.
 *
 * A forbidden call traps (SCMP_ACT_TRAP) rather than killing the process
 * outright: the SIGSYS handler prints the call's name in one line, puts the
 * terminal back and exits with SANDBOX_EXIT_STATUS, so a missing entry in
 * the list shows up as a clear message instead of a silent death by
 * signal. Calls from a foreign ABI (int 0x80, x32) kill the process. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/if_tun.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include "vm/console.h"
#include "vm/sandbox.h"

static bool active;

/* the system calls allowed with any arguments */
static const int allowed[] = {
	/* fds that are already open: disk images, the console, sockets */
	SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev),
	SCMP_SYS(pread64), SCMP_SYS(pwrite64), SCMP_SYS(preadv), SCMP_SYS(pwritev),
	SCMP_SYS(preadv2), SCMP_SYS(pwritev2), SCMP_SYS(lseek), SCMP_SYS(fsync),
	SCMP_SYS(fdatasync), SCMP_SYS(fallocate), SCMP_SYS(close), SCMP_SYS(fstat),
	SCMP_SYS(newfstatat), SCMP_SYS(fcntl), SCMP_SYS(dup), SCMP_SYS(pipe2),
	/* waiting */
	SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(select), SCMP_SYS(pselect6),
	SCMP_SYS(epoll_create1), SCMP_SYS(epoll_ctl), SCMP_SYS(epoll_wait),
	SCMP_SYS(epoll_pwait), SCMP_SYS(eventfd2), SCMP_SYS(futex), SCMP_SYS(sched_yield),
	/* pthread_getattr_np (sanitizers, at thread start) reads it */
	SCMP_SYS(sched_getaffinity),
	/* time: guest clocks, LAPIC timers, the kvm engine's deadline timer */
	SCMP_SYS(clock_gettime), SCMP_SYS(clock_getres), SCMP_SYS(gettimeofday),
	SCMP_SYS(nanosleep), SCMP_SYS(clock_nanosleep), SCMP_SYS(timer_create),
	SCMP_SYS(timer_settime), SCMP_SYS(timer_gettime), SCMP_SYS(timer_delete),
	SCMP_SYS(timerfd_create), SCMP_SYS(timerfd_settime), SCMP_SYS(timerfd_gettime),
	/* memory */
	SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(madvise),
	SCMP_SYS(mprotect), SCMP_SYS(brk),
	/* threads (clone below), signals for vCPU kicks */
	SCMP_SYS(set_robust_list), SCMP_SYS(rseq), SCMP_SYS(exit), SCMP_SYS(exit_group),
	SCMP_SYS(gettid), SCMP_SYS(getpid), SCMP_SYS(rt_sigaction), SCMP_SYS(rt_sigprocmask),
	SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigtimedwait), SCMP_SYS(sigaltstack),
	SCMP_SYS(restart_syscall), SCMP_SYS(getrandom),
	/* sockets: the gdb stub, libslirp, TAP (socket itself below) */
	SCMP_SYS(connect), SCMP_SYS(bind), SCMP_SYS(listen), SCMP_SYS(accept),
	SCMP_SYS(accept4), SCMP_SYS(sendto), SCMP_SYS(recvfrom), SCMP_SYS(sendmsg),
	SCMP_SYS(recvmsg), SCMP_SYS(sendmmsg), SCMP_SYS(recvmmsg), SCMP_SYS(setsockopt),
	SCMP_SYS(getsockopt), SCMP_SYS(getsockname), SCMP_SYS(getpeername),
	SCMP_SYS(shutdown),
	/* the control API removes its socket file when the VM ends (src/api) */
	SCMP_SYS(unlink), SCMP_SYS(unlinkat),
};

/* ioctl requests besides KVM's own (type 0xAE): the terminal,
 * non-blocking sockets, and a TAP interface's offloads (set when the
 * guest's driver has said which it takes, src/net/tap.c) */
static const unsigned long ioctls[] = {
	TCGETS, TCSETS, TCSETSW, TCSETSF, TIOCGWINSZ, FIONBIO, FIONREAD, FIOCLEX, TUNSETOFFLOAD,
};

static const int socket_domains[] = { AF_UNIX, AF_INET, AF_INET6 };

/* names for the SIGSYS handler, resolved beforehand: the handler must not
 * allocate */
#define NAMES 512
static char *names[NAMES];

static void put_str(char *buf, size_t *n, size_t cap, const char *s)
{
	while (*s && *n < cap)
		buf[(*n)++] = *s++;
}

static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	char buf[256], num[16];
	size_t n = 0, k = 0;
	int nr = si->si_syscall;
	unsigned v = nr < 0 ? 0 : (unsigned)nr;

	do
		num[k++] = '0' + v % 10;
	while ((v /= 10) && k < sizeof(num));
	put_str(buf, &n, sizeof(buf), "accord: sandbox: forbidden system call ");
	while (k && n < sizeof(buf))
		buf[n++] = num[--k];
	put_str(buf, &n, sizeof(buf), " (");
	put_str(buf, &n, sizeof(buf), nr >= 0 && nr < NAMES && names[nr] ? names[nr] : "unknown");
	put_str(buf, &n, sizeof(buf), "); --sandbox off runs without the filter\n");
	console_restore_tty();
	ssize_t w = write(STDERR_FILENO, buf, n);
	(void)w; /* nothing better to do when stderr is gone */
	_exit(SANDBOX_EXIT_STATUS);
}

static int rules(scmp_filter_ctx ctx)
{
	size_t i;
	int r;

	for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		if ((r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0)) < 0)
			return r;
	/* threads of this process only: no fork, no new process; glibc falls
	 * back from clone3 (whose flags a filter cannot see) to clone */
	r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
			     SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
	if (r < 0 || (r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0)) < 0)
		return r;
	/* read-only opens (see above) */
	r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(openat), 1,
			     SCMP_A2(SCMP_CMP_MASKED_EQ, O_ACCMODE | O_CREAT | O_TRUNC | O_APPEND,
				     O_RDONLY));
	if (r < 0)
		return r;
	/* signals to this process's own threads */
	r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
			     SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()));
	if (r < 0)
		return r;
	r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
			     SCMP_A1(SCMP_CMP_MASKED_EQ, 0xff00, KVMIO << 8));
	for (i = 0; r >= 0 && i < sizeof(ioctls) / sizeof(ioctls[0]); i++)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				     SCMP_A1(SCMP_CMP_EQ, ioctls[i]));
	for (i = 0; r >= 0 && i < sizeof(socket_domains) / sizeof(socket_domains[0]); i++)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
				     SCMP_A0(SCMP_CMP_EQ, socket_domains[i]));
	return r;
}

/* tests/sandbox.sh: "open-read" must pass the filter, "open-write" and
 * anything else (ptrace) must not */
static void selftest(const char *what)
{
	int fd;

	if (!what)
		return;
	if (!strcmp(what, "open-read") || !strcmp(what, "open-write")) {
		fd = openat(AT_FDCWD, "/dev/null", what[5] == 'r' ? O_RDONLY : O_WRONLY);
		if (fd >= 0)
			close(fd);
		return;
	}
	syscall(SYS_ptrace, 0, 0, 0, 0);
}

int sandbox_enter(void)
{
	struct sigaction sa = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO };
	scmp_filter_ctx ctx;
	int r;

	for (int nr = 0; nr < NAMES; nr++)
		names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0) {
		fprintf(stderr, "accord: sandbox: SIGSYS handler: %s\n", strerror(errno));
		return -1;
	}
	ctx = seccomp_init(SCMP_ACT_TRAP);
	if (!ctx) {
		fprintf(stderr, "accord: sandbox: seccomp_init failed\n");
		return -1;
	}
	/* every thread, the console's included, gets the filter */
	r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	if (r >= 0)
		r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	if (r >= 0)
		r = rules(ctx);
	if (r >= 0)
		r = seccomp_load(ctx);
	seccomp_release(ctx);
	if (r < 0) {
		fprintf(stderr, "accord: sandbox: cannot install the seccomp filter: %s "
			"(--sandbox off runs without it)\n", strerror(-r));
		return -1;
	}
	active = true;
	selftest(getenv("ACCORD_SANDBOX_SELFTEST"));
	return 0;
}

bool sandbox_active(void)
{
	return active;
}
