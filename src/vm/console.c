/* Console plumbing between the user's terminal and the guest's UART. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "vm/console.h"
#include "vm/vm.h"

#define TAIL_SIZE 8192

static struct {
	struct vm *vm;
	int in_wr, out_rd, out_wr;
	pthread_t out_thread;
	bool out_started;
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

static void *out_thread(void *arg)
{
	char buf[4096];
	for (;;) {
		ssize_t n = read(con.out_rd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(STDOUT_FILENO, buf + off, n - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break;
			off += w;
		}
		tail_add(buf, n);
		for (ssize_t i = 0; i < n; i++)
			scan_line(buf[i]);
	}
	return NULL;
}

static void *in_thread(void *arg)
{
	unsigned char buf[256], out[512];
	bool esc = false;
	for (;;) {
		ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		int k = 0;
		for (ssize_t i = 0; i < n; i++) {
			unsigned char ch = buf[i];
			if (esc) {
				esc = false;
				if (ch == 'x' || ch == 'X') {
					restore_tty();
					fprintf(stderr, "\r\naccord: terminated from the console (Ctrl-a x)\r\n");
					vm_request_exit(con.vm, VM_POWEROFF, 0, "terminated from the console");
					return NULL;
				}
				if (ch == 'h' || ch == 'H' || ch == '?') {
					fprintf(stderr, "\r\nCtrl-a x  quit\r\nCtrl-a a  send Ctrl-a\r\n");
					continue;
				}
				if (ch == 'a' || ch == 1)
					out[k++] = 1;
				continue;
			}
			if (ch == 1) {
				esc = true;
				continue;
			}
			out[k++] = ch;
		}
		if (k && write(con.in_wr, out, k) < 0)
			break;
	}
	return NULL;
}

int console_start(struct vm *vm, int *in_fd, int *out_fd)
{
	int inp[2], outp[2];
	con.vm = vm;
	if (pipe(inp) < 0 || pipe(outp) < 0) {
		perror("accord: pipe");
		return -1;
	}
	con.in_wr = inp[1];
	con.out_rd = outp[0];
	con.out_wr = outp[1];
	*in_fd = inp[0];
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
	pthread_t t;
	if (pthread_create(&t, NULL, in_thread, NULL) == 0)
		pthread_detach(t);
	if (pthread_create(&con.out_thread, NULL, out_thread, NULL) == 0)
		con.out_started = true;
	return 0;
}

void console_stop(void)
{
	if (con.out_started) {
		close(con.out_wr);
		pthread_join(con.out_thread, NULL);
		con.out_started = false;
	}
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
