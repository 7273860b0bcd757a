/* The control API's server: one thread polls the listening Unix socket and
 * up to API_MAX_CONNS connections, parses HTTP/1.1 requests (api/http.c)
 * and answers them with JSON. Requests are small and handled at once, so a
 * thread per connection would buy nothing; a connection idle for
 * API_IDLE_SEC is closed, so slow clients cannot hold every slot. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "api/http.h"
#include "api/internal.h"
#include "dev/devices.h"
#include "dev/virtio/virtio.h"
#include "engine/engine.h"
#include "vm/sandbox.h"
#include "vm/snapshot.h"
#include "vm/vm.h"

#define API_MAX_CONNS 16
#define API_IDLE_SEC 60
#define API_BUF (HTTP_MAX_HEAD + HTTP_MAX_BODY)

struct conn {
	int fd;
	int passed_fd; /* a file the client sent along (SCM_RIGHTS), or -1 */
	size_t len;
	time_t last;
	char buf[API_BUF];
};

struct api {
	struct vm *vm;
	const struct api_vm_config *cfg;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd;
	int wake[2];
	pthread_t thread;
	bool running;
	uint64_t requests, errors;
	struct conn *conns[API_MAX_CONNS];
};

static struct api api;

/* ---- replies ---- */

static void send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* the connection is closed when read next */
		p += w;
		n -= (size_t)w;
	}
}

static void reply(int fd, int status, const char *body, bool keep_alive, const char *extra_head)
{
	char head[512];
	size_t blen = body ? strlen(body) : 0;
	int n = http_response_head(head, sizeof(head), status, blen ? "application/json" : NULL, blen,
				   keep_alive);
	if (n < 0)
		return;
	/* extra headers go before the blank line that ends the head */
	if (extra_head) {
		send_all(fd, head, (size_t)n - 2);
		send_all(fd, extra_head, strlen(extra_head));
		send_all(fd, "\r\n", 2);
	} else {
		send_all(fd, head, (size_t)n);
	}
	if (blen)
		send_all(fd, body, blen);
	if (status >= 400)
		api.errors++;
}

static void reply_json(int fd, int status, struct json_object *o, bool keep_alive)
{
	char *body;
	if (asprintf(&body, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)) < 0) {
		json_object_put(o);
		return;
	}
	reply(fd, status, body, keep_alive, NULL);
	free(body);
	json_object_put(o);
}

static void reply_error(int fd, int status, const char *msg, bool keep_alive, const char *extra_head)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "error", json_object_new_string(msg));
	char *body;
	if (asprintf(&body, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)) >= 0) {
		reply(fd, status, body, keep_alive, extra_head);
		free(body);
	}
	json_object_put(o);
}

/* ---- routes ---- */

static const char *vm_state(struct vm *vm)
{
	if (vm->exit_reason)
		return "shut-down";
	return vm->paused ? "paused" : "running";
}

static struct json_object *jstr_or_null(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

static struct json_object *get_vm(void)
{
	struct vm *vm = api.vm;
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string(api.cfg->name));
	json_object_object_add(o, "pid", json_object_new_int64(getpid()));
	json_object_object_add(o, "state", json_object_new_string(vm_state(vm)));
	json_object_object_add(o, "engine", json_object_new_string(vm->engine->name));
	json_object_object_add(o, "vcpus", json_object_new_int(vm->ncpus));
	json_object_object_add(o, "memory_mib", json_object_new_int64((int64_t)(vm->ram_size >> 20)));
	json_object_object_add(o, "uptime_ms", json_object_new_int64((int64_t)(vm_now_ns(vm) / 1000000)));
	json_object_object_add(o, "api_socket", json_object_new_string(api.path));
	return o;
}

static struct json_object *get_config(void)
{
	const struct api_vm_config *c = api.cfg;
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string(c->name));
	json_object_object_add(o, "kernel", json_object_new_string(c->kernel));
	json_object_object_add(o, "initrd", jstr_or_null(c->initrd));
	json_object_object_add(o, "cmdline", jstr_or_null(c->cmdline));
	json_object_object_add(o, "memory_mib", json_object_new_int64((int64_t)(c->memory >> 20)));
	json_object_object_add(o, "vcpus", json_object_new_int(c->cpus));
	json_object_object_add(o, "accel", json_object_new_string(c->accel));
	json_object_object_add(o, "engine", json_object_new_string(api.vm->engine->name));
	json_object_object_add(o, "personality", json_object_new_string(c->personality));
	json_object_object_add(o, "debug_exit", json_object_new_boolean(c->debug_exit));
	json_object_object_add(o, "gdb", jstr_or_null(c->gdb));
	struct json_object *disks = json_object_new_array();
	for (int i = 0; i < c->ndisks; i++) {
		struct json_object *d = json_object_new_object();
		json_object_object_add(d, "path", json_object_new_string(c->disk_path[i]));
		json_object_object_add(d, "read_only", json_object_new_boolean(c->disk_ro[i]));
		json_object_array_add(disks, d);
	}
	json_object_object_add(o, "disks", disks);
	return o;
}

static struct json_object *get_counters(void)
{
	struct vm *vm = api.vm;
	struct json_object *o = json_object_new_object();
	struct json_object *cpus = json_object_new_array();
	for (int i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = vm->vcpu[i];
		struct json_object *c = json_object_new_object();
		json_object_object_add(c, "index", json_object_new_int(i));
		json_object_object_add(c, "run_exits",
				       json_object_new_int64((int64_t)__atomic_load_n(&v->run_exits,
										 __ATOMIC_RELAXED)));
		if (vm->engine->insns_retired)
			json_object_object_add(c, "instructions",
					       json_object_new_int64((int64_t)vm->engine->insns_retired(v)));
		json_object_array_add(cpus, c);
	}
	json_object_object_add(o, "vcpus", cpus);
	uint64_t tx = 0, rx = 0;
	pthread_mutex_lock(&vm->io_lock);
	if (vm->serial)
		serial_counters(vm->serial, &tx, &rx);
	pthread_mutex_unlock(&vm->io_lock);
	struct json_object *s = json_object_new_object();
	json_object_object_add(s, "tx_bytes", json_object_new_int64((int64_t)tx));
	json_object_object_add(s, "rx_bytes", json_object_new_int64((int64_t)rx));
	json_object_object_add(o, "serial", s);
	struct json_object *disks = json_object_new_array();
	for (int i = 0; i < api.cfg->ndisks; i++) {
		struct virtio_blk_counters c;
		struct json_object *d = json_object_new_object();
		json_object_object_add(d, "path", json_object_new_string(api.cfg->disk_path[i]));
		/* storvsc disks (--personality hyperv) keep no counters yet */
		if (!api.cfg->disk_dev[i]) {
			json_object_object_add(d, "bus", json_object_new_string("vmbus"));
			json_object_array_add(disks, d);
			continue;
		}
		json_object_object_add(d, "bus", json_object_new_string("virtio"));
		pthread_mutex_lock(&vm->io_lock);
		virtio_blk_counters(api.cfg->disk_dev[i], &c);
		pthread_mutex_unlock(&vm->io_lock);
		json_object_object_add(d, "reads", json_object_new_int64((int64_t)c.reads));
		json_object_object_add(d, "writes", json_object_new_int64((int64_t)c.writes));
		json_object_object_add(d, "flushes", json_object_new_int64((int64_t)c.flushes));
		json_object_object_add(d, "io_errors", json_object_new_int64((int64_t)c.io_errors));
		json_object_object_add(d, "read_bytes", json_object_new_int64((int64_t)c.read_bytes));
		json_object_object_add(d, "write_bytes", json_object_new_int64((int64_t)c.write_bytes));
		json_object_array_add(disks, d);
	}
	json_object_object_add(o, "disks", disks);
	struct json_object *a = json_object_new_object();
	json_object_object_add(a, "requests", json_object_new_int64((int64_t)api.requests));
	json_object_object_add(a, "errors", json_object_new_int64((int64_t)api.errors));
	json_object_object_add(o, "api", a);
	return o;
}

const char *api_parse_action(const char *body, size_t len, char *err, size_t errlen)
{
	static const char *const actions[] = { "pause", "resume", "shutdown", "reset", "stop" };
	if (len == 0) {
		snprintf(err, errlen, "the body must be a JSON object such as {\"action\": \"pause\"}");
		return NULL;
	}
	struct json_tokener *tok = json_tokener_new();
	if (!tok) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	struct json_object *o = json_tokener_parse_ex(tok, body, (int)len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	size_t used = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	const char *found = NULL;
	if (!o || jerr != json_tokener_success) {
		snprintf(err, errlen, "malformed JSON: %s",
			 jerr == json_tokener_continue ? "incomplete" : json_tokener_error_desc(jerr));
		goto out;
	}
	for (size_t i = used; i < len; i++) {
		if (!strchr(" \t\r\n", body[i])) {
			snprintf(err, errlen, "malformed JSON: bytes after the object");
			goto out;
		}
	}
	if (!json_object_is_type(o, json_type_object)) {
		snprintf(err, errlen, "the body must be a JSON object such as {\"action\": \"pause\"}");
		goto out;
	}
	struct json_object *a = NULL;
	json_object_object_foreach(o, key, val)
	{
		if (strcmp(key, "action")) {
			snprintf(err, errlen, "unknown field '%.64s'", key);
			goto out;
		}
		a = val;
	}
	if (!a || !json_object_is_type(a, json_type_string)) {
		snprintf(err, errlen, "'action' must be a string: pause, resume, shutdown, reset or stop");
		goto out;
	}
	const char *name = json_object_get_string(a);
	/* "pause\u0000x" is not "pause" */
	size_t nlen = (size_t)json_object_get_string_len(a);
	for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
		if (nlen == strlen(actions[i]) && !strcmp(name, actions[i]))
			found = actions[i];
	if (!found)
		snprintf(err, errlen, "unknown action '%.64s': expected pause, resume, shutdown, reset or stop", name);
out:
	json_object_put(o);
	return found;
}

/* Returns the HTTP status; err holds the message of an error. An action
 * that ends the VM is left in *end for after the reply went out. */
static int do_action(const char *action, int *end, char *err, size_t errlen)
{
	struct vm *vm = api.vm;
	if (vm->exit_reason) {
		snprintf(err, errlen, "the VM has shut down");
		return 409;
	}
	if (!strcmp(action, "stop")) {
		*end = VM_STOPPED;
		return 204;
	}
	if (!strcmp(action, "reset")) {
		*end = VM_RESET;
		return 204;
	}
	if (vm->gdb) {
		snprintf(err, errlen, "the VM is under the gdb stub's control (--gdb); use gdb");
		return 409;
	}
	if (!strcmp(action, "pause")) {
		if (vm_pause(vm) < 0) {
			snprintf(err, errlen, "the VM has shut down");
			return 409;
		}
		return 204;
	}
	if (!strcmp(action, "resume")) {
		vm_resume(vm);
		return 204;
	}
	/* shutdown: the ACPI power button */
	if (vm->paused) {
		snprintf(err, errlen, "the VM is paused: resume it first, or the guest cannot see the button");
		return 409;
	}
	pthread_mutex_lock(&vm->io_lock);
	int rc = vm->acpipm ? acpipm_power_button(vm->acpipm) : -1;
	pthread_mutex_unlock(&vm->io_lock);
	if (rc < 0) {
		snprintf(err, errlen, "the guest has not enabled the ACPI power button (PWRBTN_EN): it would not notice");
		return 409;
	}
	return 204;
}

/* The body of PUT /vm/snapshot: {"path": FILE} and optionally "stop":
 * true. The path is required even when the client passed the file (it is
 * what the reply and the VM's log name). 0, or -1 with why in err. */
static int parse_snapshot(const char *body, size_t len, char *path, size_t pathlen, bool *stop, char *err,
			  size_t errlen)
{
	struct json_tokener *tok = json_tokener_new();
	int rc = -1;

	*stop = false;
	if (!tok) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	struct json_object *o = len ? json_tokener_parse_ex(tok, body, (int)len) : NULL;
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	size_t used = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (!o || jerr != json_tokener_success || !json_object_is_type(o, json_type_object)) {
		snprintf(err, errlen, "the body must be a JSON object such as {\"path\": \"/var/lib/vm.snap\"}");
		goto out;
	}
	for (size_t i = used; i < len; i++) {
		if (!strchr(" \t\r\n", body[i])) {
			snprintf(err, errlen, "malformed JSON: bytes after the object");
			goto out;
		}
	}
	path[0] = 0;
	json_object_object_foreach(o, key, val)
	{
		if (!strcmp(key, "path") && json_object_is_type(val, json_type_string)) {
			size_t n = (size_t)json_object_get_string_len(val);
			if (n == 0 || n + 5 > pathlen || memchr(json_object_get_string(val), 0, n)) {
				snprintf(err, errlen, "'path' must be a file name of 1 to %zu bytes", pathlen - 5);
				goto out;
			}
			memcpy(path, json_object_get_string(val), n + 1);
		} else if (!strcmp(key, "stop") && json_object_is_type(val, json_type_boolean)) {
			*stop = json_object_get_boolean(val);
		} else {
			snprintf(err, errlen, "unknown field or wrong type: '%.64s' (path: string, stop: boolean)", key);
			goto out;
		}
	}
	if (!path[0]) {
		snprintf(err, errlen, "'path' is missing");
		goto out;
	}
	rc = 0;
out:
	json_object_put(o);
	return rc;
}

/* PUT /vm/snapshot: every vCPU paused, the snapshot written (the disks
 * flushed first), then the VM runs on, stays paused if it was, or ends
 * with "stop". The file is the one the client passed, else path.tmp
 * renamed to path, which a sandboxed VMM cannot create. Returns the HTTP
 * status; err holds the error, or the reply's body for 200. */
static int do_snapshot(const struct http_request *req, int *passed_fd, int *end, char *err, size_t errlen)
{
	struct vm *vm = api.vm;
	char path[4096], tmp[4096 + 8];
	bool stop;
	int fd = -1;

	if (parse_snapshot(req->body, req->body_len, path, sizeof(path), &stop, err, errlen) < 0)
		return 400;
	if (vm->exit_reason) {
		snprintf(err, errlen, "the VM has shut down");
		return 409;
	}
	if (vm->personality != PERSONALITY_KVM) {
		snprintf(err, errlen, "snapshots of --personality hyperv guests are not supported yet (SynIC and VMBus state)");
		return 409;
	}
	if (vm->gdb) {
		snprintf(err, errlen, "the VM is under the gdb stub's control (--gdb)");
		return 409;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	bool opened_here = *passed_fd < 0;
	if (!opened_here) {
		fd = *passed_fd;
		*passed_fd = -1;
	} else if (sandbox_active()) {
		snprintf(err, errlen, "the sandbox does not let the VMM create files: use accord snapshot (it passes the file "
			 "along) or run with --sandbox off");
		return 409;
	} else if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
		snprintf(err, errlen, "%.200s: %s", tmp, strerror(errno));
		return 400;
	}
	bool was_paused = vm->paused;
	if (!was_paused && vm_pause(vm) < 0) {
		close(fd);
		snprintf(err, errlen, "the VM has shut down");
		return 409;
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	char why[300];
	int rc = snapshot_write(vm, fd, why, sizeof(why));
	off_t size = rc == 0 ? lseek(fd, 0, SEEK_CUR) : -1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	close(fd);
	if (opened_here && rc == 0 && rename(tmp, path) < 0) {
		snprintf(why, sizeof(why), "%.200s: %s", path, strerror(errno));
		rc = -1;
	}
	if (opened_here && rc < 0)
		unlink(tmp);
	if (stop && rc == 0)
		*end = VM_STOPPED;
	else if (!was_paused)
		vm_resume(vm);
	if (rc < 0) {
		snprintf(err, errlen, "%s", why);
		return 500;
	}
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "path", json_object_new_string(path));
	json_object_object_add(o, "bytes", json_object_new_int64(size));
	json_object_object_add(o, "ms", json_object_new_int64((t1.tv_sec - t0.tv_sec) * 1000 +
							      (t1.tv_nsec - t0.tv_nsec) / 1000000));
	snprintf(err, errlen, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return 200;
}

struct route {
	const char *path;
	const char *method;
};

static const struct route routes[] = {
	{ "/vm", "GET" },
	{ "/vm/config", "GET" },
	{ "/vm/counters", "GET" },
	{ "/vm/actions", "PUT" },
	{ "/vm/snapshot", "PUT" },
};

static void handle(int fd, const struct http_request *req, int *passed_fd)
{
	bool ka = req->keep_alive;
	const struct route *r = NULL;
	api.requests++;
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (!strcmp(req->path, routes[i].path))
			r = &routes[i];
	if (!r) {
		char msg[HTTP_MAX_PATH + 32];
		snprintf(msg, sizeof(msg), "no such resource: %s", req->path);
		reply_error(fd, 404, msg, ka, NULL);
		return;
	}
	if (strcmp(req->method, r->method)) {
		char msg[96], allow[48];
		snprintf(msg, sizeof(msg), "%s takes %s, not %.16s", r->path, r->method, req->method);
		snprintf(allow, sizeof(allow), "Allow: %s\r\n", r->method);
		reply_error(fd, 405, msg, ka, allow);
		return;
	}
	if (!strcmp(r->path, "/vm"))
		reply_json(fd, 200, get_vm(), ka);
	else if (!strcmp(r->path, "/vm/config"))
		reply_json(fd, 200, get_config(), ka);
	else if (!strcmp(r->path, "/vm/counters"))
		reply_json(fd, 200, get_counters(), ka);
	else if (!strcmp(r->path, "/vm/snapshot")) {
		char msg[4400];
		int end = 0;
		int status = do_snapshot(req, passed_fd, &end, msg, sizeof(msg));
		if (status >= 400)
			reply_error(fd, status, msg, ka, NULL);
		else
			reply(fd, status, msg, ka, NULL);
		if (end == VM_STOPPED)
			vm_request_exit(api.vm, VM_STOPPED, 0, "stopped after a snapshot through the control API");
	} else {
		char err[200];
		const char *action = api_parse_action(req->body, req->body_len, err, sizeof(err));
		if (!action) {
			reply_error(fd, 400, err, ka, NULL);
			return;
		}
		int end = 0;
		int status = do_action(action, &end, err, sizeof(err));
		if (status >= 400)
			reply_error(fd, status, err, ka, NULL);
		else
			reply(fd, status, NULL, ka, NULL);
		if (end == VM_STOPPED)
			vm_request_exit(api.vm, VM_STOPPED, 0, "stopped through the control API");
		else if (end == VM_RESET)
			vm_request_exit(api.vm, VM_RESET, 0, "reset through the control API");
	}
}

/* ---- connections ---- */

static void conn_close(int i)
{
	if (api.conns[i]->passed_fd >= 0)
		close(api.conns[i]->passed_fd);
	close(api.conns[i]->fd);
	free(api.conns[i]);
	api.conns[i] = NULL;
}

static void conn_accept(void)
{
	int fd = accept4(api.listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	/* a client that does not read its replies cannot stall the server */
	struct timeval tv = { .tv_sec = 2 };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	for (int i = 0; i < API_MAX_CONNS; i++) {
		if (api.conns[i])
			continue;
		api.conns[i] = malloc(sizeof(struct conn));
		if (!api.conns[i])
			break;
		api.conns[i]->fd = fd;
		api.conns[i]->passed_fd = -1;
		api.conns[i]->len = 0;
		api.conns[i]->last = time(NULL);
		return;
	}
	reply_error(fd, 503, "too many connections", false, NULL);
	close(fd);
}

/* false when the connection is to be closed */
static bool conn_read(struct conn *c)
{
	/* a client may send a file along (accord snapshot): the last one
	 * sent is kept for the request that uses it */
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(4 * sizeof(int))];
	} cm;
	struct iovec iov = { c->buf + c->len, API_BUF - c->len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &cm, .msg_controllen = sizeof(cm) };
	ssize_t n = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return true;
	for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h)) {
		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
			continue;
		size_t nfd = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t k = 0; k < nfd; k++) {
			int pfd;
			memcpy(&pfd, CMSG_DATA(h) + k * sizeof(int), sizeof(int));
			if (c->passed_fd >= 0)
				close(c->passed_fd);
			c->passed_fd = pfd;
		}
	}
	if (n <= 0)
		return false;
	c->len += (size_t)n;
	c->last = time(NULL);
	for (;;) {
		struct http_request req;
		char err[128];
		int used = http_parse(c->buf, c->len, &req, err, sizeof(err));
		if (used == 0)
			return true;
		if (used < 0) {
			reply_error(c->fd, -used, err, false, NULL);
			return false;
		}
		handle(c->fd, &req, &c->passed_fd);
		memmove(c->buf, c->buf + used, c->len - (size_t)used);
		c->len -= (size_t)used;
		if (!req.keep_alive)
			return false;
	}
}

static void *api_thread(void *arg)
{
	struct pollfd pfd[API_MAX_CONNS + 2];
	int idx[API_MAX_CONNS + 2];
	for (;;) {
		int n = 0;
		pfd[n++] = (struct pollfd){ .fd = api.wake[0], .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = api.listen_fd, .events = POLLIN };
		for (int i = 0; i < API_MAX_CONNS; i++) {
			if (!api.conns[i])
				continue;
			idx[n] = i;
			pfd[n++] = (struct pollfd){ .fd = api.conns[i]->fd, .events = POLLIN };
		}
		int r = poll(pfd, (nfds_t)n, 1000);
		if (r < 0 && errno != EINTR)
			break;
		if (pfd[0].revents)
			break;
		time_t now = time(NULL);
		for (int k = 2; k < n; k++) {
			int i = idx[k];
			if (pfd[k].revents ? !conn_read(api.conns[i]) : now - api.conns[i]->last > API_IDLE_SEC)
				conn_close(i);
		}
		if (pfd[1].revents & POLLIN)
			conn_accept();
	}
	for (int i = 0; i < API_MAX_CONNS; i++)
		if (api.conns[i])
			conn_close(i);
	return NULL;
}

/* ---- start and stop ---- */

static int listen_on(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "accord: --api-socket '%s': path too long (at most %zu bytes)\n", path,
			sizeof(sa.sun_path) - 1);
		return -1;
	}
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "accord: --api-socket: %s\n", strerror(errno));
		return -1;
	}
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			fprintf(stderr, "accord: --api-socket '%s': exists and is not a socket\n", path);
			close(fd);
			return -1;
		}
		/* a socket nobody listens on is a dead VM's: replace it */
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			fprintf(stderr, "accord: --api-socket '%s': a running VM is using it\n", path);
			close(fd);
			return -1;
		}
		close(fd);
		unlink(path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			fprintf(stderr, "accord: --api-socket: %s\n", strerror(errno));
			return -1;
		}
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
		fprintf(stderr, "accord: --api-socket '%s': %s\n", path, strerror(errno));
		close(fd);
		return -1;
	}
	chmod(path, 0600);
	return fd;
}

int api_start(struct vm *vm, const char *path, const struct api_vm_config *cfg)
{
	memset(&api, 0, sizeof(api));
	api.vm = vm;
	api.cfg = cfg;
	if (path) {
		snprintf(api.path, sizeof(api.path), "%s", path);
	} else {
		/* without a place for the default socket the VM still runs,
		 * only unseen by accord ls */
		char dir[sizeof(api.path)];
		if (api_socket_dir(dir, sizeof(dir)) < 0 ||
		    snprintf(api.path, sizeof(api.path), "%s/%s.sock", dir, cfg->name) >= (int)sizeof(api.path)) {
			fprintf(stderr, "accord: warning: no control API: the socket directory's path is too long\n");
			return 0;
		}
		if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
			fprintf(stderr, "accord: warning: no control API: cannot create %s: %s\n", dir,
				strerror(errno));
			return 0;
		}
	}
	api.listen_fd = listen_on(api.path);
	if (api.listen_fd < 0)
		return -1;
	if (pipe2(api.wake, O_CLOEXEC) < 0 || pthread_create(&api.thread, NULL, api_thread, NULL) != 0) {
		fprintf(stderr, "accord: cannot start the API server's thread\n");
		close(api.listen_fd);
		unlink(api.path);
		return -1;
	}
	api.running = true;
	return 0;
}

void api_stop(void)
{
	if (!api.running)
		return;
	ssize_t r = write(api.wake[1], "", 1);
	(void)r; /* an empty pipe takes one byte */
	pthread_join(api.thread, NULL);
	close(api.listen_fd);
	close(api.wake[0]);
	close(api.wake[1]);
	unlink(api.path);
	api.running = false;
}
