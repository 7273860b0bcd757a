/* The GDB remote stub. One thread serves one connection at a time; the vCPU
 * threads park in gdbstub_vcpu_enter while the VM is stopped (all-stop: when
 * one vCPU stops, all stop). Breakpoints and single steps are the engine's
 * (set_guest_debug): guest memory is never patched. Memory is addressed by
 * guest-virtual address through the current vCPU's page tables. */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "vm/gdbstub.h"
#include "vm/clock.h"
#include "vm/vm.h"

#define PACKET_SIZE 0x4000 /* told to GDB in qSupported */
#define GDB_SIGINT 2
#define GDB_SIGTRAP 5

enum { BP_SW, BP_HW };
struct breakpoint {
	uint64_t addr;
	int type;
};

struct gdbstub {
	struct vm *vm;
	int listen_fd, conn_fd;
	int wake_rd, wake_wr; /* a vCPU stopped the VM, or the VM ended */
	pthread_t thread;

	pthread_mutex_t lock;
	pthread_cond_t cond; /* vCPUs park on it; the stub waits on it for them */
	/* under lock */
	bool running;
	char action[VM_MAX_CPUS]; /* this run: 0 (stay stopped), 'c' or 's' */
	bool in_engine[VM_MAX_CPUS];
	bool stop_unreported; /* a vCPU ended the run; no stop reply yet */
	int stop_cpu, stop_sig;
	bool stop_step; /* the run ended because stop_cpu finished a step */
	bool ended;
	int exit_status;

	/* the stub thread's own */
	struct breakpoint bp[GUEST_DEBUG_MAX_BREAKS];
	int nbp;
	int g_cpu, c_cpu; /* Hg and Hc: a vCPU index, c_cpu -1 for all */
	bool noack, waiting_stop;
	int pstate; /* packet parser: 0 outside, 1 body, 2 and 3 checksum */
	size_t plen;
	bool poverflow;
	uint8_t pcsum, pgot;
	char pkt[PACKET_SIZE + 1];
	char last[2 * PACKET_SIZE + 8]; /* the last packet sent, for a '-' */
	size_t last_len;
};

static char target_xml[8192];
static size_t target_xml_len;

/* ---- the vCPU threads' side ---- */

static void timed_wait(pthread_cond_t *cond, pthread_mutex_t *lock, long ms)
{
	struct timespec ts = clock_after(CLOCK_MONOTONIC, ms * 1000000);

	pthread_cond_timedwait(cond, lock, &ts);
}

bool gdbstub_vcpu_enter(struct vcpu *v)
{
	struct gdbstub *g = v->vm->gdb;
	pthread_mutex_lock(&g->lock);
	/* the timeout notices the VM's end, which does not signal us */
	while (!v->vm->exit_reason && (!g->running || !g->action[v->index]))
		timed_wait(&g->cond, &g->lock, 50);
	bool go = !v->vm->exit_reason;
	g->in_engine[v->index] = go;
	pthread_mutex_unlock(&g->lock);
	return go;
}

static void kick_all(struct vm *vm)
{
	for (int i = 0; i < vm->ncpus; i++)
		vm_kick_vcpu(vm->vcpu[i]);
}

static void wake_stub(struct gdbstub *g)
{
	ssize_t r = write(g->wake_wr, "", 1);
	(void)r; /* a full pipe already wakes the stub */
}

void gdbstub_vcpu_leave(struct vcpu *v, const struct vcpu_exit *ex)
{
	struct gdbstub *g = v->vm->gdb;
	bool stopped = false;
	pthread_mutex_lock(&g->lock);
	g->in_engine[v->index] = false;
	/* a step that ended the VM is reported as its end */
	if (ex->kind == EXIT_DEBUG && g->running && !v->vm->exit_reason) {
		g->running = false;
		g->stop_cpu = v->index;
		g->stop_sig = GDB_SIGTRAP;
		g->stop_step = g->action[v->index] == 's';
		g->stop_unreported = true;
		v->vm->pause_request = 1;
		stopped = true;
	}
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
	if (stopped) {
		kick_all(v->vm);
		wake_stub(g);
	}
}

/* ---- stopping and resuming, from the stub thread ---- */

/* with g->lock held: until no vCPU is inside vcpu_run */
static void wait_stopped(struct gdbstub *g)
{
	struct vm *vm = g->vm;
	for (;;) {
		bool busy = false;
		for (int i = 0; i < vm->ncpus; i++) {
			if (g->in_engine[i]) {
				busy = true;
				vm_kick_vcpu(vm->vcpu[i]);
			}
		}
		if (!busy || vm->exit_reason)
			return;
		timed_wait(&g->cond, &g->lock, 10);
	}
}

/* Stop the VM (Ctrl-C, a new connection); a stop a vCPU made first wins. */
static void stop_vm(struct gdbstub *g, int sig)
{
	pthread_mutex_lock(&g->lock);
	if (g->running) {
		g->running = false;
		g->stop_cpu = g->c_cpu >= 0 ? g->c_cpu : g->g_cpu;
		g->stop_sig = sig;
		g->stop_step = false;
		g->vm->pause_request = 1;
	}
	g->stop_unreported = false;
	wait_stopped(g);
	pthread_mutex_unlock(&g->lock);
}

/* actions[i]: 0, 'c' or 's' for vCPU i */
static void resume(struct gdbstub *g, const char *actions)
{
	struct vm *vm = g->vm;
	struct guest_debug d = { .nbreak = 0 };
	for (int i = 0; i < g->nbp; i++) {
		bool dup = false;
		for (int j = 0; j < d.nbreak; j++)
			dup |= d.breaks[j] == g->bp[i].addr;
		if (!dup)
			d.breaks[d.nbreak++] = g->bp[i].addr;
	}
	for (int i = 0; i < vm->ncpus; i++) {
		d.single_step = actions[i] == 's';
		/* a step always executes an instruction; a continue leaves
		 * the breakpoint it stopped at */
		d.skip_break_at_rip = actions[i] == 's' || i == g->stop_cpu;
		vm->engine->set_guest_debug(vm->vcpu[i], &d);
	}
	pthread_mutex_lock(&g->lock);
	memcpy(g->action, actions, vm->ncpus);
	g->running = true;
	g->stop_unreported = false;
	vm->pause_request = 0;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
	g->waiting_stop = true;
}

static void resume_all(struct gdbstub *g)
{
	char actions[VM_MAX_CPUS];
	memset(actions, 'c', sizeof(actions));
	resume(g, actions);
}

/* ---- packets ---- */

static const char hexdig[] = "0123456789abcdef";

static void send_raw(struct gdbstub *g, const char *buf, size_t len)
{
	while (len > 0 && g->conn_fd >= 0) {
		ssize_t n = send(g->conn_fd, buf, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* the reader notices the closed connection */
		buf += n;
		len -= (size_t)n;
	}
}

/* body may hold binary data: '$', '#', '}' and '*' are escaped */
static void send_packet(struct gdbstub *g, const char *body, size_t len)
{
	char *o = g->last;
	uint8_t sum = 0;
	*o++ = '$';
	for (size_t i = 0; i < len && o - g->last < (ptrdiff_t)sizeof(g->last) - 4; i++) {
		char ch = body[i];
		if (ch == '$' || ch == '#' || ch == '}' || ch == '*') {
			*o++ = '}';
			sum += '}';
			ch ^= 0x20;
		}
		*o++ = ch;
		sum += (uint8_t)ch;
	}
	*o++ = '#';
	*o++ = hexdig[sum >> 4];
	*o++ = hexdig[sum & 15];
	g->last_len = (size_t)(o - g->last);
	send_raw(g, g->last, g->last_len);
}

static void send_str(struct gdbstub *g, const char *s)
{
	send_packet(g, s, strlen(s));
}

static char *put_hex(char *o, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		*o++ = hexdig[b[i] >> 4];
		*o++ = hexdig[b[i] & 15];
	}
	*o = '\0';
	return o;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* hex digits to bytes; the number of bytes, -1 on a bad digit */
static long get_hex(const char *s, uint8_t *b, size_t max)
{
	size_t n = 0;
	while (s[0] && s[1] && n < max) {
		int hi = hexval(s[0]), lo = hexval(s[1]);
		if (hi < 0 || lo < 0)
			return -1;
		b[n++] = (uint8_t)(hi << 4 | lo);
		s += 2;
	}
	return (long)n;
}

/* "ADDR,LEN" followed by end (a ':' for M and X); false when malformed */
static bool parse_addr_len(const char *s, uint64_t *addr, uint64_t *len, char end, const char **rest)
{
	char *e;
	*addr = strtoull(s, &e, 16);
	if (e == s || *e != ',')
		return false;
	s = e + 1;
	*len = strtoull(s, &e, 16);
	if (e == s || *e != end)
		return false;
	if (rest)
		*rest = e + (end ? 1 : 0);
	return true;
}

/* GDB thread ids are vCPU index + 1; -1 all, 0 any */
static bool parse_tid(const char *s, int *cpu, int ncpus)
{
	if (!strcmp(s, "-1")) {
		*cpu = -1;
		return true;
	}
	char *e;
	unsigned long t = strtoul(s, &e, 16);
	if (e == s || *e)
		return false;
	if (t == 0) {
		*cpu = -2;
		return true;
	}
	if (t > (unsigned long)ncpus)
		return false;
	*cpu = (int)t - 1;
	return true;
}

/* ---- registers: the layout of target_xml ---- */

enum {
	REG_RIP = 16, REG_EFLAGS, REG_CS, REG_ST0 = 24, REG_FCTRL = 32, REG_FOP = 39,
	REG_XMM0 = 40, REG_MXCSR = 56, REG_FS_BASE, REG_GS_BASE, REG_CR0, REG_EFER = 63, NREGS
};
/* GDB's rax rbx rcx rdx rsi rdi rbp rsp r8..r15 to the SDM's numbering */
static const int gpr_map[16] = { 0, 3, 1, 2, 6, 7, 5, 4, 8, 9, 10, 11, 12, 13, 14, 15 };
/* GDB's cs ss ds es fs gs to cpu_state.sel (es cs ss ds fs gs) */
static const int seg_map[6] = { 1, 2, 3, 0, 4, 5 };

static uint64_t le(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* FXSAVE keeps an abridged tag byte; GDB wants the full x87 tag word */
static uint32_t full_tag_word(const uint8_t *fx)
{
	int top = (le(fx + 2, 2) >> 11) & 7;
	uint32_t tag = 0;
	for (int phys = 0; phys < 8; phys++) {
		int t = 3; /* empty */
		if (fx[4] & (1 << phys)) {
			const uint8_t *r = fx + 32 + 16 * ((phys - top) & 7);
			uint64_t mant = le(r, 8);
			int exp = (int)(le(r + 8, 2) & 0x7fff);
			if (exp == 0x7fff)
				t = 2;
			else if (exp == 0)
				t = mant ? 2 : 1;
			else
				t = (mant >> 63) ? 0 : 2;
		}
		tag |= (uint32_t)t << (2 * phys);
	}
	return tag;
}

/* register n into out (little-endian); its size, 0 when there is none */
static int reg_get(const struct cpu_state *s, int n, uint8_t *out)
{
	const uint8_t *fx = s->fxsave;
	uint64_t v;
	int size = 8;
	if (n < 16)
		v = s->r[gpr_map[n]];
	else if (n == REG_RIP)
		v = s->rip;
	else if (n == REG_EFLAGS)
		v = s->rflags, size = 4;
	else if (n < REG_ST0)
		v = s->sel[seg_map[n - REG_CS]], size = 4;
	else if (n < REG_FCTRL) {
		memcpy(out, fx + 32 + 16 * (n - REG_ST0), 10);
		return 10;
	} else if (n <= REG_FOP) {
		static const struct { int off, len, shift; } f[8] = {
			{ 0, 2, 0 },   /* fctrl */
			{ 2, 2, 0 },   /* fstat */
			{ 0, 0, 0 },   /* ftag */
			{ 12, 2, 0 },  /* fiseg: bits 47:32 of the 64-bit FIP */
			{ 8, 4, 0 },   /* fioff */
			{ 20, 2, 0 },  /* foseg */
			{ 16, 4, 0 },  /* fooff */
			{ 6, 2, 0 },   /* fop */
		};
		int k = n - REG_FCTRL;
		v = k == 2 ? full_tag_word(fx) : le(fx + f[k].off, f[k].len);
		if (k == 7)
			v &= 0x7ff;
		size = 4;
	} else if (n < REG_MXCSR) {
		memcpy(out, fx + 160 + 16 * (n - REG_XMM0), 16);
		return 16;
	} else if (n == REG_MXCSR)
		v = le(fx + 24, 4), size = 4;
	else if (n == REG_FS_BASE)
		v = s->fs_base;
	else if (n == REG_GS_BASE)
		v = s->gs_base;
	else if (n < NREGS) {
		const uint64_t sys[5] = { s->cr0, s->cr2, s->cr3, s->cr4, s->efer };
		v = sys[n - REG_CR0];
	} else
		return 0;
	for (int i = 0; i < size; i++)
		out[i] = (uint8_t)(v >> (8 * i));
	return size;
}

/* the registers set_state writes: the GPRs, RIP and RFLAGS */
static bool reg_set(struct cpu_state *s, int n, const uint8_t *in, int len)
{
	if (n < 16 && len == 8)
		s->r[gpr_map[n]] = le(in, 8);
	else if (n == REG_RIP && len == 8)
		s->rip = le(in, 8);
	else if (n == REG_EFLAGS && len == 4)
		s->rflags = le(in, 4);
	else
		return false;
	return true;
}

static void build_target_xml(void)
{
	static const char *const gprs[16] = { "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
					      "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15" };
	static const char *const segs[6] = { "cs", "ss", "ds", "es", "fs", "gs" };
	static const char *const fpctl[8] = { "fctrl", "fstat", "ftag", "fiseg",
					      "fioff", "foseg", "fooff", "fop" };
	static const char *const flags[] = { "CF", "", "PF", "", "AF", "", "ZF", "SF", "TF", "IF",
					     "DF", "OF", "", "", "NT", "", "RF", "VM", "AC", "VIF",
					     "VIP", "ID" };
	static const char *const sys[5] = { "cr0", "cr2", "cr3", "cr4", "efer" };
	char *o = target_xml, *end = target_xml + sizeof(target_xml);
#define OUT(...) (o += snprintf(o, (size_t)(end - o), __VA_ARGS__))
	OUT("<?xml version=\"1.0\"?><!DOCTYPE target SYSTEM \"gdb-target.dtd\">"
	    "<target version=\"1.0\"><architecture>i386:x86-64</architecture>"
	    "<feature name=\"org.gnu.gdb.i386.core\"><flags id=\"x86_eflags\" size=\"4\">");
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		if (flags[i][0])
			OUT("<field name=\"%s\" start=\"%zu\" end=\"%zu\"/>", flags[i], i, i);
	OUT("</flags>");
	for (int i = 0; i < 16; i++)
		OUT("<reg name=\"%s\" bitsize=\"64\" type=\"%s\"/>", gprs[i],
		    i == 6 || i == 7 ? "data_ptr" : "int64");
	OUT("<reg name=\"rip\" bitsize=\"64\" type=\"code_ptr\"/>"
	    "<reg name=\"eflags\" bitsize=\"32\" type=\"x86_eflags\"/>");
	for (int i = 0; i < 6; i++)
		OUT("<reg name=\"%s\" bitsize=\"32\" type=\"int32\"/>", segs[i]);
	for (int i = 0; i < 8; i++)
		OUT("<reg name=\"st%d\" bitsize=\"80\" type=\"i387_ext\"/>", i);
	for (int i = 0; i < 8; i++)
		OUT("<reg name=\"%s\" bitsize=\"32\" type=\"int\" group=\"float\"/>", fpctl[i]);
	OUT("</feature><feature name=\"org.gnu.gdb.i386.sse\">"
	    "<vector id=\"v4f\" type=\"ieee_single\" count=\"4\"/>"
	    "<vector id=\"v2d\" type=\"ieee_double\" count=\"2\"/>"
	    "<vector id=\"v16i8\" type=\"int8\" count=\"16\"/>"
	    "<vector id=\"v8i16\" type=\"int16\" count=\"8\"/>"
	    "<vector id=\"v4i32\" type=\"int32\" count=\"4\"/>"
	    "<vector id=\"v2i64\" type=\"int64\" count=\"2\"/>"
	    "<union id=\"vec128\"><field name=\"v4_float\" type=\"v4f\"/>"
	    "<field name=\"v2_double\" type=\"v2d\"/><field name=\"v16_int8\" type=\"v16i8\"/>"
	    "<field name=\"v8_int16\" type=\"v8i16\"/><field name=\"v4_int32\" type=\"v4i32\"/>"
	    "<field name=\"v2_int64\" type=\"v2i64\"/><field name=\"uint128\" type=\"uint128\"/>"
	    "</union>");
	for (int i = 0; i < 16; i++)
		OUT("<reg name=\"xmm%d\" bitsize=\"128\" type=\"vec128\"/>", i);
	OUT("<reg name=\"mxcsr\" bitsize=\"32\" type=\"int\" group=\"vector\"/></feature>"
	    "<feature name=\"org.gnu.gdb.i386.segments\">"
	    "<reg name=\"fs_base\" bitsize=\"64\" type=\"int\"/>"
	    "<reg name=\"gs_base\" bitsize=\"64\" type=\"int\"/></feature>"
	    "<feature name=\"org.accord.x86.sys\">");
	for (int i = 0; i < 5; i++)
		OUT("<reg name=\"%s\" bitsize=\"64\" type=\"int\" group=\"system\"/>", sys[i]);
	OUT("</feature></target>");
#undef OUT
	target_xml_len = strlen(target_xml);
}

/* ---- memory ---- */

/* guest-virtual memory through the Hg vCPU's page tables: RAM only, so
 * that reading never touches a device; the bytes done */
static size_t mem_access(struct gdbstub *g, uint64_t va, uint8_t *buf, size_t len, bool write)
{
	struct vm *vm = g->vm;
	struct vcpu *v = vm->vcpu[g->g_cpu];
	size_t done = 0;
	while (done < len) {
		uint64_t gpa, a = va + done;
		if (vm->engine->translate(v, a, &gpa) < 0)
			break;
		size_t chunk = 0x1000 - (a & 0xfff);
		if (chunk > len - done)
			chunk = len - done;
		uint8_t *p = vm_gpa(vm, gpa, chunk);
		if (!p)
			break;
		if (write)
			memcpy(p, buf + done, chunk);
		else
			memcpy(buf + done, p, chunk);
		done += chunk;
	}
	return done;
}

/* ---- the packet handlers ---- */

static void reply_stop(struct gdbstub *g, bool with_reason)
{
	char buf[64];
	int tid = g->stop_cpu + 1;
	const char *why = "";
	if (with_reason && g->stop_sig == GDB_SIGTRAP && !g->stop_step) {
		struct cpu_state s;
		g->vm->engine->get_state(g->vm->vcpu[g->stop_cpu], &s);
		for (int i = 0; i < g->nbp; i++)
			if (g->bp[i].addr == s.rip)
				why = g->bp[i].type == BP_HW ? "hwbreak:;" : "swbreak:;";
	}
	snprintf(buf, sizeof(buf), "T%02xthread:%x;%s", g->stop_sig, tid, why);
	send_str(g, buf);
}

/* the VM has stopped: tell GDB, make the stopping vCPU current */
static void report_stop(struct gdbstub *g)
{
	g->waiting_stop = false;
	g->g_cpu = g->stop_cpu;
	g->c_cpu = g->stop_cpu;
	reply_stop(g, true);
}

static void handle_regs(struct gdbstub *g, const char *p)
{
	struct vm *vm = g->vm;
	struct vcpu *v = vm->vcpu[g->g_cpu];
	struct cpu_state s;
	static char out[2 * 1024 + 1];
	uint8_t b[16];
	vm->engine->get_state(v, &s);
	if (p[0] == 'g') {
		char *o = out;
		for (int n = 0; n < NREGS; n++)
			o = put_hex(o, b, (size_t)reg_get(&s, n, b));
		send_str(g, out);
		return;
	}
	/* G: the same layout; what set_state cannot write is left alone */
	const char *h = p + 1;
	for (int n = 0; n < NREGS && *h; n++) {
		int size = reg_get(&s, n, b);
		if (strlen(h) < 2 * (size_t)size || get_hex(h, b, (size_t)size) != size) {
			send_str(g, "E01");
			return;
		}
		reg_set(&s, n, b, size);
		h += 2 * size;
	}
	vm->engine->set_state(v, &s);
	send_str(g, "OK");
}

static void handle_reg(struct gdbstub *g, const char *p)
{
	struct vm *vm = g->vm;
	struct vcpu *v = vm->vcpu[g->g_cpu];
	struct cpu_state s;
	uint8_t b[16];
	char out[40], *e;
	unsigned long n = strtoul(p + 1, &e, 16);
	vm->engine->get_state(v, &s);
	int size = n < NREGS ? reg_get(&s, (int)n, b) : 0;
	if (p[0] == 'p') {
		if (e == p + 1 || *e || !size) {
			send_str(g, "E00");
			return;
		}
		put_hex(out, b, (size_t)size);
		send_str(g, out);
		return;
	}
	if (e == p + 1 || *e != '=' || !size || strlen(e + 1) != 2 * (size_t)size ||
	    get_hex(e + 1, b, (size_t)size) != size || !reg_set(&s, (int)n, b, size)) {
		send_str(g, "E01");
		return;
	}
	vm->engine->set_state(v, &s);
	send_str(g, "OK");
}

static void handle_mem(struct gdbstub *g, char *p, size_t len)
{
	static uint8_t buf[PACKET_SIZE];
	static char out[2 * PACKET_SIZE + 1];
	uint64_t addr, n;
	const char *data;
	if (p[0] == 'm') {
		if (!parse_addr_len(p + 1, &addr, &n, '\0', NULL)) {
			send_str(g, "E01");
			return;
		}
		if (n > (PACKET_SIZE - 8) / 2)
			n = (PACKET_SIZE - 8) / 2;
		size_t got = mem_access(g, addr, buf, n, false);
		if (!got && n) {
			send_str(g, "E14");
			return;
		}
		put_hex(out, buf, got);
		send_str(g, out);
		return;
	}
	if (!parse_addr_len(p + 1, &addr, &n, ':', &data) || n > sizeof(buf)) {
		send_str(g, "E01");
		return;
	}
	size_t have;
	if (p[0] == 'M') {
		long r = get_hex(data, buf, n);
		if (r < 0) {
			send_str(g, "E01");
			return;
		}
		have = (size_t)r;
	} else { /* X: binary, '}' escapes the next byte */
		have = 0;
		for (const char *s = data; s < p + len && have < n; s++)
			buf[have++] = *s == '}' && s + 1 < p + len ? (uint8_t)(*++s ^ 0x20) : (uint8_t)*s;
	}
	if (have != n) {
		send_str(g, "E01");
		return;
	}
	send_str(g, mem_access(g, addr, buf, n, true) == n ? "OK" : "E14");
}

static void handle_break(struct gdbstub *g, const char *p)
{
	uint64_t addr, kind;
	int type = p[1] - '0';
	if ((type != 0 && type != 1) || p[2] != ',' || !parse_addr_len(p + 3, &addr, &kind, '\0', NULL)) {
		/* Z2..Z4 (watchpoints) are not supported: an empty reply */
		send_str(g, type >= 2 && type <= 4 ? "" : "E01");
		return;
	}
	int bt = type == 0 ? BP_SW : BP_HW;
	if (p[0] == 'Z') {
		if (g->nbp == GUEST_DEBUG_MAX_BREAKS) {
			send_str(g, "E28");
			return;
		}
		g->bp[g->nbp++] = (struct breakpoint){ addr, bt };
	} else {
		for (int i = 0; i < g->nbp; i++) {
			if (g->bp[i].addr == addr && g->bp[i].type == bt) {
				g->bp[i] = g->bp[--g->nbp];
				break;
			}
		}
	}
	send_str(g, "OK");
}

/* c, s, C, S: the legacy resume packets, with an optional new RIP */
static void handle_legacy_resume(struct gdbstub *g, const char *p)
{
	struct vm *vm = g->vm;
	char actions[VM_MAX_CPUS] = { 0 };
	int cpu = g->c_cpu >= 0 ? g->c_cpu : g->stop_cpu;
	const char *a = p + 1;
	if (p[0] == 'C' || p[0] == 'S') { /* signal;addr: the signal is dropped */
		a = strchr(a, ';');
		a = a ? a + 1 : "";
	}
	if (*a) {
		struct cpu_state s;
		vm->engine->get_state(vm->vcpu[cpu], &s);
		s.rip = strtoull(a, NULL, 16);
		vm->engine->set_state(vm->vcpu[cpu], &s);
	}
	if (p[0] == 's' || p[0] == 'S')
		actions[cpu] = 's';
	else
		memset(actions, 'c', sizeof(actions));
	resume(g, actions);
}

/* vCont;ACTION[:TID]...: the leftmost action that names a vCPU wins */
static void handle_vcont(struct gdbstub *g, char *p)
{
	struct vm *vm = g->vm;
	char actions[VM_MAX_CPUS] = { 0 };
	bool any = false;
	char *save = NULL;
	for (char *t = strtok_r(p, ";", &save); t; t = strtok_r(NULL, ";", &save)) {
		char kind = t[0];
		if (kind == 'C' || kind == 'S')
			kind = (char)(kind - 'A' + 'a');
		if (kind != 'c' && kind != 's') {
			send_str(g, "E01");
			return;
		}
		char *colon = strchr(t, ':');
		int cpu = -1;
		if (colon && !parse_tid(colon + 1, &cpu, vm->ncpus)) {
			send_str(g, "E22");
			return;
		}
		for (int i = 0; i < vm->ncpus; i++) {
			if ((cpu < 0 || cpu == i) && !actions[i]) {
				actions[i] = kind;
				any = true;
			}
		}
	}
	if (!any) {
		send_str(g, "E22");
		return;
	}
	resume(g, actions);
}

static void handle_query(struct gdbstub *g, char *p)
{
	struct vm *vm = g->vm;
	char out[PACKET_SIZE];
	if (!strncmp(p, "qSupported", 10)) {
		snprintf(out, sizeof(out), "PacketSize=%x;qXfer:features:read+;QStartNoAckMode+;"
			 "swbreak+;hwbreak+;vContSupported+", PACKET_SIZE);
		send_str(g, out);
	} else if (!strcmp(p, "qAttached")) {
		send_str(g, "1");
	} else if (!strcmp(p, "qC")) {
		snprintf(out, sizeof(out), "QC%x", g->g_cpu + 1);
		send_str(g, out);
	} else if (!strcmp(p, "qfThreadInfo")) {
		char *o = out;
		*o++ = 'm';
		for (int i = 0; i < vm->ncpus; i++)
			o += snprintf(o, sizeof(out) - (size_t)(o - out), "%s%x", i ? "," : "", i + 1);
		send_str(g, out);
	} else if (!strcmp(p, "qsThreadInfo")) {
		send_str(g, "l");
	} else if (!strncmp(p, "qThreadExtraInfo,", 17)) {
		int cpu;
		char text[32];
		if (!parse_tid(p + 17, &cpu, vm->ncpus) || cpu < 0) {
			send_str(g, "E22");
			return;
		}
		snprintf(text, sizeof(text), "vCPU %d", cpu);
		put_hex(out, (const uint8_t *)text, strlen(text));
		send_str(g, out);
	} else if (!strncmp(p, "qXfer:features:read:", 20)) {
		uint64_t off, n;
		char *annex = p + 20, *colon = strchr(annex, ':');
		if (!colon || !parse_addr_len(colon + 1, &off, &n, '\0', NULL)) {
			send_str(g, "E01");
			return;
		}
		*colon = '\0';
		if (strcmp(annex, "target.xml")) {
			send_str(g, "E00");
			return;
		}
		if (off > target_xml_len)
			off = target_xml_len;
		if (n > PACKET_SIZE / 2 - 8)
			n = PACKET_SIZE / 2 - 8; /* room for escapes */
		if (n > target_xml_len - off)
			n = target_xml_len - off;
		out[0] = off + n < target_xml_len ? 'm' : 'l';
		memcpy(out + 1, target_xml + off, n);
		send_packet(g, out, n + 1);
	} else if (!strncmp(p, "qSymbol", 7)) {
		send_str(g, "OK");
	} else {
		send_str(g, "");
	}
}

/* one complete packet; true when the connection is to end */
static bool handle_packet(struct gdbstub *g, char *p, size_t len)
{
	struct vm *vm = g->vm;
	int cpu;
	switch (p[0]) {
	case '?':
		reply_stop(g, false);
		break;
	case 'g':
	case 'G':
		handle_regs(g, p);
		break;
	case 'p':
	case 'P':
		handle_reg(g, p);
		break;
	case 'm':
	case 'M':
	case 'X':
		handle_mem(g, p, len);
		break;
	case 'c':
	case 's':
	case 'C':
	case 'S':
		handle_legacy_resume(g, p);
		break;
	case 'Z':
	case 'z':
		handle_break(g, p);
		break;
	case 'H':
		if ((p[1] != 'g' && p[1] != 'c') || !parse_tid(p + 2, &cpu, vm->ncpus)) {
			send_str(g, "E22");
		} else {
			if (p[1] == 'c')
				g->c_cpu = cpu == -2 ? g->c_cpu : cpu;
			else if (cpu >= 0)
				g->g_cpu = cpu;
			send_str(g, "OK");
		}
		break;
	case 'T':
		send_str(g, parse_tid(p + 1, &cpu, vm->ncpus) && cpu >= 0 ? "OK" : "E22");
		break;
	case 'q':
		handle_query(g, p);
		break;
	case 'Q':
		if (!strcmp(p, "QStartNoAckMode")) {
			send_str(g, "OK");
			g->noack = true;
		} else {
			send_str(g, "");
		}
		break;
	case 'v':
		if (!strcmp(p, "vCont?"))
			send_str(g, "vCont;c;C;s;S");
		else if (!strncmp(p, "vCont;", 6))
			handle_vcont(g, p + 6);
		else if (!strncmp(p, "vKill", 5))
			goto kill;
		else
			send_str(g, "");
		break;
	case 'D':
		send_str(g, "OK");
		return true;
	case 'k':
	kill:
		fprintf(stderr, "accord: gdb: killed by the debugger\n");
		vm_request_exit(vm, VM_POWEROFF, 0, "killed by the debugger");
		pthread_mutex_lock(&g->lock);
		pthread_cond_broadcast(&g->cond);
		pthread_mutex_unlock(&g->lock);
		if (p[0] == 'v')
			send_str(g, "OK");
		return true;
	default:
		send_str(g, "");
		break;
	}
	return false;
}

/* one byte from GDB; true when the connection is to end */
static bool feed(struct gdbstub *g, uint8_t ch)
{
	switch (g->pstate) {
	case 0:
		if (ch == '$') {
			g->pstate = 1;
			g->plen = 0;
			g->pcsum = 0;
			g->poverflow = false;
		} else if (ch == 0x03 && g->waiting_stop) {
			stop_vm(g, GDB_SIGINT);
			report_stop(g);
		} else if (ch == '-' && !g->noack && g->last_len) {
			send_raw(g, g->last, g->last_len);
		}
		return false; /* '+' and stray bytes */
	case 1:
		if (ch == '#') {
			g->pstate = 2;
		} else {
			g->pcsum += ch;
			if (g->plen < PACKET_SIZE)
				g->pkt[g->plen++] = (char)ch;
			else
				g->poverflow = true;
		}
		return false;
	case 2:
		g->pgot = (uint8_t)(hexval((char)ch) << 4);
		g->pstate = 3;
		return false;
	default:
		g->pgot |= (uint8_t)hexval((char)ch);
		g->pstate = 0;
		if (!g->noack) {
			bool good = g->pgot == g->pcsum && !g->poverflow;
			send_raw(g, good ? "+" : "-", 1);
			if (!good)
				return false;
		}
		g->pkt[g->plen] = '\0';
		return handle_packet(g, g->pkt, g->plen);
	}
}

/* ---- the connection and the thread ---- */

static void drain(int fd)
{
	char buf[64];
	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

static void serve(struct gdbstub *g)
{
	uint8_t buf[4096];
	for (;;) {
		struct pollfd pf[2] = { { g->conn_fd, POLLIN, 0 }, { g->wake_rd, POLLIN, 0 } };
		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		if (pf[1].revents & POLLIN) {
			drain(g->wake_rd);
			pthread_mutex_lock(&g->lock);
			bool ended = g->ended, stopped = g->stop_unreported;
			int status = g->exit_status;
			if (stopped && !ended)
				wait_stopped(g);
			g->stop_unreported = false;
			pthread_mutex_unlock(&g->lock);
			if (ended) {
				/* a GDB that waits for a stop hears why; one that
				 * thinks the VM is stopped just loses it */
				if (g->waiting_stop) {
					char w[8];
					snprintf(w, sizeof(w), "W%02x", status & 0xff);
					send_str(g, w);
				}
				return;
			}
			if (stopped && g->waiting_stop)
				report_stop(g);
		}
		if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = read(g->conn_fd, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return;
			for (ssize_t i = 0; i < n; i++)
				if (feed(g, buf[i]))
					return;
		}
	}
}

static void *stub_thread(void *arg)
{
	struct gdbstub *g = arg;
	struct vm *vm = g->vm;
	for (;;) {
		pthread_mutex_lock(&g->lock);
		bool ended = g->ended;
		pthread_mutex_unlock(&g->lock);
		if (ended)
			break;
		struct pollfd pf[2] = { { g->listen_fd, POLLIN, 0 }, { g->wake_rd, POLLIN, 0 } };
		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			break;
		if (pf[1].revents & POLLIN)
			drain(g->wake_rd);
		if (!(pf[0].revents & POLLIN))
			continue;
		int fd = accept(g->listen_fd, NULL, NULL);
		if (fd < 0)
			continue;
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		g->conn_fd = fd;
		g->noack = false;
		g->pstate = 0;
		g->last_len = 0;
		g->waiting_stop = false;
		/* a debugger that connects finds the VM stopped */
		stop_vm(g, GDB_SIGTRAP);
		serve(g);
		close(fd);
		g->conn_fd = -1;
		/* detached or gone: the VM runs on, free of breakpoints */
		if (!vm->exit_reason) {
			g->nbp = 0;
			resume_all(g);
		}
		g->waiting_stop = false;
	}
	return NULL;
}

/* "tcp::PORT" or "tcp:HOST:PORT" */
static int parse_spec(const char *spec, char *host, size_t hostlen, int *port)
{
	const char *p, *colon;
	char *e;
	if (strncmp(spec, "tcp:", 4) || !(colon = strrchr(spec + 4, ':')))
		goto bad;
	p = spec + 4;
	size_t n = (size_t)(colon - p);
	if (n >= hostlen)
		goto bad;
	if (n == 0)
		snprintf(host, hostlen, "127.0.0.1");
	else
		snprintf(host, hostlen, "%.*s", (int)n, p);
	long v = strtol(colon + 1, &e, 10);
	if (e == colon + 1 || *e || v < 0 || v > 65535)
		goto bad;
	*port = (int)v;
	return 0;
bad:
	fprintf(stderr, "accord: --gdb '%s': expected tcp::PORT or tcp:HOST:PORT\n", spec);
	return -1;
}

int gdbstub_check_spec(const char *spec)
{
	char host[256];
	int port;
	return parse_spec(spec, host, sizeof(host), &port);
}

int gdbstub_start(struct vm *vm, const char *spec)
{
	char host[256], portstr[8];
	int port;
	if (parse_spec(spec, host, sizeof(host), &port) < 0)
		return -1;
	if (!vm->engine->set_guest_debug || !vm->engine->translate) {
		fprintf(stderr, "accord: --gdb: the %s engine has no debugging support\n", vm->engine->name);
		return -1;
	}
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *ai;
	snprintf(portstr, sizeof(portstr), "%d", port);
	int err = getaddrinfo(host, portstr, &hints, &ai);
	if (err) {
		fprintf(stderr, "accord: --gdb: %s: %s\n", host, gai_strerror(err));
		return -1;
	}
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1) < 0) {
		fprintf(stderr, "accord: --gdb: cannot listen on %s:%d: %s\n", host, port, strerror(errno));
		freeaddrinfo(ai);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	freeaddrinfo(ai);
	struct sockaddr_in sa;
	socklen_t salen = sizeof(sa);
	getsockname(fd, (struct sockaddr *)&sa, &salen);
	port = ntohs(sa.sin_port);

	struct gdbstub *g = calloc(1, sizeof(*g));
	int pfd[2];
	if (!g || pipe2(pfd, O_CLOEXEC | O_NONBLOCK) < 0) {
		fprintf(stderr, "accord: --gdb: %s\n", strerror(errno));
		free(g);
		close(fd);
		return -1;
	}
	build_target_xml();
	g->vm = vm;
	g->listen_fd = fd;
	g->conn_fd = -1;
	g->wake_rd = pfd[0];
	g->wake_wr = pfd[1];
	g->c_cpu = -1;
	g->stop_sig = GDB_SIGTRAP;
	pthread_mutex_init(&g->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&g->cond, &ca);
	/* the VM starts stopped: the vCPUs park before their first instruction */
	vm->pause_request = 1;
	vm->gdb = g;
	if (pthread_create(&g->thread, NULL, stub_thread, g) != 0) {
		fprintf(stderr, "accord: --gdb: cannot start the stub's thread\n");
		vm->gdb = NULL;
		vm->pause_request = 0;
		close(fd);
		close(pfd[0]);
		close(pfd[1]);
		free(g);
		return -1;
	}
	fprintf(stderr, "accord: gdb: waiting for a connection on %s:%d\n", host, port);
	return 0;
}

void gdbstub_finish(struct vm *vm, int status)
{
	struct gdbstub *g = vm->gdb;
	if (!g)
		return;
	pthread_mutex_lock(&g->lock);
	g->ended = true;
	g->exit_status = status;
	pthread_mutex_unlock(&g->lock);
	wake_stub(g);
	pthread_join(g->thread, NULL);
	if (g->conn_fd >= 0)
		close(g->conn_fd);
	close(g->listen_fd);
	close(g->wake_rd);
	close(g->wake_wr);
	vm->gdb = NULL;
	pthread_cond_destroy(&g->cond);
	pthread_mutex_destroy(&g->lock);
	free(g);
}
