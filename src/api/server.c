/* The control API's server: one thread polls the listening Unix socket and
 * up to API_MAX_CONNS connections, parses HTTP/1.1 requests (api/http.c)
 * and answers them with JSON. Requests are small and handled at once, so a
 * thread per connection would buy nothing; a connection idle for
 * API_IDLE_SEC is closed, so slow clients cannot hold every slot.
 *
 * A VM started without --kernel has no machine yet: the pre-boot routes
 * fill its configuration (api_configure) and the start action builds it
 * here, on this thread, while the main thread waits in api_wait_start to
 * run it. Until then only this thread touches the configuration; after
 * it, nobody changes it. */
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
#include "boot/boot.h"
#include "dev/devices.h"
#include "dev/hyperv/vmbus.h"
#include "dev/virtio/virtio.h"
#include "disk/disk.h"
#include "engine/engine.h"
#include "vm/machine.h"
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

/* what the main thread waits for before the machine is built */
enum { START_WAITING, START_BUILT, START_END };

struct api {
	struct machine *m;
	char name[MACHINE_ID_MAX + 1];
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd;
	int wake[2];
	pthread_t thread;
	bool running;
	uint64_t requests, errors;
	struct conn *conns[API_MAX_CONNS];
	pthread_mutex_t start_lock;
	pthread_cond_t start_cond;
	int start_state, end_status;
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
	if (!vm)
		return "configuring";
	if (vm->exit_reason)
		return "shut-down";
	return vm->paused ? "paused" : "running";
}

/* a counter: a JSON number, as json-c holds them (int64) */
static void json_add_u64(struct json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_int64((int64_t)v));
}

static struct json_object *jstr_or_null(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

static struct json_object *get_vm(void)
{
	struct vm *vm = api.m->vm;
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string(api.name));
	json_object_object_add(o, "pid", json_object_new_int64(getpid()));
	json_object_object_add(o, "state", json_object_new_string(vm_state(vm)));
	json_object_object_add(o, "engine", vm ? json_object_new_string(vm->engine->name) : NULL);
	json_object_object_add(o, "vcpus", json_object_new_int(api.m->cfg.cpus));
	json_add_u64(o, "memory_mib", api.m->cfg.memory >> 20);
	json_object_object_add(o, "uptime_ms", json_object_new_int64(vm ? (int64_t)(vm_now_ns(vm) / 1000000) : 0));
	json_object_object_add(o, "api_socket", json_object_new_string(api.path));
	return o;
}

static struct json_object *mac_string(const uint8_t *mac)
{
	char s[18];
	snprintf(s, sizeof(s), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
	return json_object_new_string(s);
}

static struct json_object *get_nics(void)
{
	const struct machine_config *c = &api.m->cfg;
	struct json_object *nics = json_object_new_array();
	for (int i = 0; i < c->nnics; i++) {
		const struct net_config *nc = &c->nic[i].net;
		struct json_object *d = json_object_new_object();
		json_object_object_add(d, "id", json_object_new_string(c->nic[i].id));
		json_object_object_add(d, "backend", json_object_new_string(nc->kind == NET_TAP ? "tap" : "user"));
		json_object_object_add(d, "tap", nc->kind == NET_TAP ? json_object_new_string(nc->ifname) : NULL);
		/* before the start, a NIC without a MAC of its own has none yet */
		uint8_t mac[6];
		if (api.m->nic_dev[i])
			virtio_net_mac(api.m->nic_dev[i], mac);
		else if (api.m->nic_netvsc[i])
			netvsc_mac(api.m->nic_netvsc[i], mac);
		else
			memcpy(mac, nc->mac, 6);
		json_object_object_add(d, "mac",
				       api.m->nic_dev[i] || api.m->nic_netvsc[i] || nc->has_mac ? mac_string(mac) : NULL);
		struct json_object *fwd = json_object_new_array();
		for (int k = 0; k < nc->nfwd; k++) {
			char f[48];
			net_format_hostfwd(&nc->fwd[k], f, sizeof(f));
			json_object_array_add(fwd, json_object_new_string(f));
		}
		json_object_object_add(d, "hostfwd", fwd);
		json_object_array_add(nics, d);
	}
	return nics;
}

static struct json_object *get_config(void)
{
	const struct machine_config *c = &api.m->cfg;
	struct vm *vm = api.m->vm;
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string(api.name));
	json_object_object_add(o, "kernel", jstr_or_null(c->kernel));
	json_object_object_add(o, "initrd", jstr_or_null(c->initrd));
	json_object_object_add(o, "cmdline", jstr_or_null(c->cmdline));
	json_add_u64(o, "memory_mib", c->memory >> 20);
	json_object_object_add(o, "vcpus", json_object_new_int(c->cpus));
	json_object_object_add(o, "accel", json_object_new_string(c->accel));
	json_object_object_add(o, "engine", vm ? json_object_new_string(vm->engine->name) : NULL);
	json_object_object_add(o, "personality",
			       json_object_new_string(c->personality == PERSONALITY_HYPERV ? "hyperv" : "kvm"));
	json_object_object_add(o, "irqchip", json_object_new_string(c->irqchip));
	json_object_object_add(o, "debug_exit", json_object_new_boolean(c->debug_exit));
	json_object_object_add(o, "gdb", jstr_or_null(c->gdb));
	json_object_object_add(o, "console", json_object_new_string(c->virtio_console ? "virtio" : "serial"));
	json_object_object_add(o, "rng", json_object_new_boolean(c->rng));
	struct json_object *disks = json_object_new_array();
	for (int i = 0; i < c->ndisks; i++) {
		struct json_object *d = json_object_new_object();
		json_object_object_add(d, "id", json_object_new_string(c->disk[i].id));
		json_object_object_add(d, "path", json_object_new_string(c->disk[i].path));
		json_object_object_add(d, "read_only", json_object_new_boolean(c->disk[i].ro));
		json_object_array_add(disks, d);
	}
	json_object_object_add(o, "disks", disks);
	json_object_object_add(o, "nics", get_nics());
	return o;
}

static struct json_object *get_counters(void)
{
	struct vm *vm = api.m->vm;
	const struct machine_config *cfg = &api.m->cfg;
	struct json_object *o = json_object_new_object();
	struct json_object *cpus = json_object_new_array();
	for (int i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = vm->vcpu[i];
		struct json_object *c = json_object_new_object();
		json_object_object_add(c, "index", json_object_new_int(i));
		json_add_u64(c, "run_exits", __atomic_load_n(&v->run_exits, __ATOMIC_RELAXED));
		if (vm->engine->insns_retired)
			json_add_u64(c, "instructions", vm->engine->insns_retired(v));
		json_object_array_add(cpus, c);
	}
	json_object_object_add(o, "vcpus", cpus);
	uint64_t tx = 0, rx = 0;
	pthread_mutex_lock(&vm->io_lock);
	if (vm->serial)
		serial_counters(vm->serial, &tx, &rx);
	pthread_mutex_unlock(&vm->io_lock);
	struct json_object *s = json_object_new_object();
	json_add_u64(s, "tx_bytes", tx);
	json_add_u64(s, "rx_bytes", rx);
	json_object_object_add(o, "serial", s);
	struct json_object *disks = json_object_new_array();
	for (int i = 0; i < cfg->ndisks; i++) {
		struct virtio_blk_counters c;
		struct json_object *d = json_object_new_object();
		json_object_object_add(d, "id", json_object_new_string(cfg->disk[i].id));
		json_object_object_add(d, "path", json_object_new_string(cfg->disk[i].path));
		/* storvsc disks (--personality hyperv) */
		if (!api.m->disk_dev[i]) {
			struct storvsc_counters sc = { 0 };
			if (api.m->disk_storvsc[i])
				storvsc_counters(api.m->disk_storvsc[i], &sc);
			json_object_object_add(d, "bus", json_object_new_string("vmbus"));
			json_add_u64(d, "reads", sc.reads);
			json_add_u64(d, "writes", sc.writes);
			json_add_u64(d, "flushes", sc.flushes);
			json_add_u64(d, "unmaps", sc.unmaps);
			json_add_u64(d, "io_errors", sc.io_errors);
			json_add_u64(d, "read_bytes", sc.read_bytes);
			json_add_u64(d, "write_bytes", sc.write_bytes);
			json_object_array_add(disks, d);
			continue;
		}
		json_object_object_add(d, "bus", json_object_new_string("virtio"));
		pthread_mutex_lock(&vm->io_lock);
		virtio_blk_counters(api.m->disk_dev[i], &c);
		pthread_mutex_unlock(&vm->io_lock);
		json_add_u64(d, "reads", c.reads);
		json_add_u64(d, "writes", c.writes);
		json_add_u64(d, "flushes", c.flushes);
		json_add_u64(d, "io_errors", c.io_errors);
		json_add_u64(d, "read_bytes", c.read_bytes);
		json_add_u64(d, "write_bytes", c.write_bytes);
		json_object_array_add(disks, d);
	}
	json_object_object_add(o, "disks", disks);
	struct json_object *nics = json_object_new_array();
	for (int i = 0; i < cfg->nnics; i++) {
		struct json_object *d = json_object_new_object();
		struct netvsc_counters nc = { 0 };

		json_object_object_add(d, "id", json_object_new_string(cfg->nic[i].id));
		if (api.m->nic_dev[i]) {
			struct virtio_net_counters vc;

			pthread_mutex_lock(&vm->io_lock);
			virtio_net_counters(api.m->nic_dev[i], &vc);
			pthread_mutex_unlock(&vm->io_lock);
			json_object_object_add(d, "bus", json_object_new_string("virtio"));
			json_add_u64(d, "rx_frames", vc.rx_frames);
			json_add_u64(d, "rx_bytes", vc.rx_bytes);
			json_add_u64(d, "rx_dropped", vc.rx_dropped);
			json_add_u64(d, "rx_filtered", vc.rx_filtered);
			json_add_u64(d, "tx_frames", vc.tx_frames);
			json_add_u64(d, "tx_bytes", vc.tx_bytes);
			json_add_u64(d, "tx_dropped", vc.tx_dropped);
			json_add_u64(d, "tx_bad_offload", vc.tx_bad_offload);
			json_add_u64(d, "tx_segments", vc.tx_segments);
			json_add_u64(d, "control_ok", vc.control_ok);
			json_add_u64(d, "control_failed", vc.control_failed);
			json_object_array_add(nics, d);
			continue;
		}
		if (api.m->nic_netvsc[i])
			netvsc_counters(api.m->nic_netvsc[i], &nc);
		json_object_object_add(d, "bus", json_object_new_string("vmbus"));
		json_add_u64(d, "rx_frames", nc.rx_frames);
		json_add_u64(d, "rx_bytes", nc.rx_bytes);
		json_add_u64(d, "rx_dropped", nc.rx_dropped);
		json_add_u64(d, "tx_frames", nc.tx_frames);
		json_add_u64(d, "tx_bytes", nc.tx_bytes);
		json_add_u64(d, "tx_dropped", nc.tx_dropped);
		json_add_u64(d, "control", nc.rx_control);
		json_add_u64(d, "nvsp_packets", nc.packets);
		json_add_u64(d, "guest_errors", nc.errors);
		json_object_array_add(nics, d);
	}
	json_object_object_add(o, "nics", nics);
	struct json_object *a = json_object_new_object();
	json_add_u64(a, "requests", api.requests);
	json_add_u64(a, "errors", api.errors);
	json_object_object_add(o, "api", a);
	return o;
}

static void kvp_add(void *arg, const char *key, const char *value)
{
	json_object_object_add(arg, key, json_object_new_string(value));
}

/* what the guest's KVP daemon reported in the last complete enumeration */
static struct json_object *get_kvp(void)
{
	struct hv_util *h = api.m->hv_util;
	struct hv_util_state st = { 0 };
	struct json_object *o = json_object_new_object(), *pools = json_object_new_object();
	struct json_object *autop = json_object_new_object(), *guest = json_object_new_object();
	struct json_object *ext = json_object_new_object(), *sets = json_object_new_object();
	char ver[16] = "";

	if (h) {
		hv_util_status(h, &st);
		hv_util_kvp_foreach(h, HV_KVP_POOL_AUTO, kvp_add, autop);
		hv_util_kvp_foreach(h, HV_KVP_POOL_GUEST, kvp_add, guest);
		hv_util_kvp_foreach(h, HV_KVP_POOL_EXTERNAL, kvp_add, ext);
		if (st.kvp_ready)
			snprintf(ver, sizeof(ver), "%u.%u", st.kvp_version & 0xffff, st.kvp_version >> 16);
	}
	json_object_object_add(o, "available", json_object_new_boolean(h != NULL));
	json_object_object_add(o, "connected", json_object_new_boolean(st.kvp_ready));
	json_object_object_add(o, "version", ver[0] ? json_object_new_string(ver) : NULL);
	json_add_u64(o, "enumerations", st.kvp_rounds);
	json_object_object_add(pools, "auto", autop);
	json_object_object_add(pools, "guest", guest);
	json_object_object_add(pools, "external", ext);
	json_object_object_add(o, "pools", pools);
	json_add_u64(sets, "done", st.kvp_sets_done);
	json_add_u64(sets, "failed", st.kvp_sets_failed);
	json_add_u64(sets, "pending", st.kvp_sets_pending);
	json_object_object_add(o, "sets", sets);
	return o;
}

/* body as one strict JSON object (no bytes after it) whose fields are all
 * among names; NULL with why in err. example shows what a body looks like. */
static struct json_object *parse_object(const char *body, size_t len, const char *const *names,
					const char *example, char *err, size_t errlen)
{
	if (len == 0) {
		snprintf(err, errlen, "the body must be a JSON object such as %s", example);
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
	if (!o || jerr != json_tokener_success) {
		snprintf(err, errlen, "malformed JSON: %s",
			 jerr == json_tokener_continue ? "incomplete" : json_tokener_error_desc(jerr));
		goto bad;
	}
	for (size_t i = used; i < len; i++) {
		if (!strchr(" \t\r\n", body[i])) {
			snprintf(err, errlen, "malformed JSON: bytes after the object");
			goto bad;
		}
	}
	if (!json_object_is_type(o, json_type_object)) {
		snprintf(err, errlen, "the body must be a JSON object such as %s", example);
		goto bad;
	}
	json_object_object_foreach(o, key, val)
	{
		(void)val;
		bool known = false;
		for (const char *const *n = names; *n; n++)
			known |= !strcmp(key, *n);
		if (!known) {
			snprintf(err, errlen, "unknown field '%.64s'", key);
			goto bad;
		}
	}
	return o;
bad:
	json_object_put(o);
	return NULL;
}

/* A field of a parsed body: 1 when present (null counts as absent), 0 when
 * absent, -1 with why in err when of the wrong type. Strings with a NUL
 * inside are refused: "a\u0000b" is not "a". */
static int field(struct json_object *o, const char *key, enum json_type type, struct json_object **val,
		 char *err, size_t errlen)
{
	static const char *const what[] = { [json_type_boolean] = "true or false",
					    [json_type_int] = "an integer",
					    [json_type_string] = "a string",
					    [json_type_array] = "an array" };
	if (!json_object_object_get_ex(o, key, val) || !*val)
		return 0;
	if (!json_object_is_type(*val, type) ||
	    (type == json_type_string && (size_t)json_object_get_string_len(*val) != strlen(json_object_get_string(*val)))) {
		snprintf(err, errlen, "'%s' must be %s", key, what[type]);
		return -1;
	}
	return 1;
}

static int string_field(struct json_object *o, const char *key, bool required, const char **out, char *err,
			size_t errlen)
{
	struct json_object *v;
	int r = field(o, key, json_type_string, &v, err, errlen);
	*out = r > 0 ? json_object_get_string(v) : NULL;
	if (r == 0 && required)
		snprintf(err, errlen, "'%s' is required", key);
	return r < 0 || (r == 0 && required) ? -1 : r;
}

const char *api_parse_action(const char *body, size_t len, char *err, size_t errlen)
{
	static const char *const actions[] = { "start", "pause", "resume", "shutdown", "reset", "stop" };
	static const char *const names[] = { "action", NULL };
	struct json_object *o = parse_object(body, len, names, "{\"action\": \"pause\"}", err, errlen);
	const char *name, *found = NULL;
	if (!o)
		return NULL;
	if (string_field(o, "action", true, &name, err, errlen) < 0) {
		snprintf(err, errlen, "'action' must be a string: start, pause, resume, shutdown, reset or stop");
		goto out;
	}
	for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
		if (!strcmp(name, actions[i]))
			found = actions[i];
	if (!found)
		snprintf(err, errlen, "unknown action '%.64s': expected start, pause, resume, shutdown, reset or stop",
			 name);
out:
	json_object_put(o);
	return found;
}

int api_parse_kvp(const char *body, size_t len, char **key, char **value, char *err, size_t errlen)
{
	static const char *const kvp_fields[] = { "key", "value", NULL };
	struct json_object *o = parse_object(body, len, kvp_fields, "{\"key\": \"k\", \"value\": \"v\"}", err, errlen);
	struct json_object *k = NULL, *v = NULL;
	int rc = -1;
	*key = *value = NULL;
	if (!o)
		return -1;
	json_object_object_get_ex(o, "key", &k);
	json_object_object_get_ex(o, "value", &v);
	if (!k || !v || !json_object_is_type(k, json_type_string) || !json_object_is_type(v, json_type_string)) {
		snprintf(err, errlen, "'key' and 'value' must both be strings");
		goto out;
	}
	/* a NUL inside would cut the string short */
	if (strlen(json_object_get_string(k)) != (size_t)json_object_get_string_len(k) ||
	    strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v)) {
		snprintf(err, errlen, "'key' and 'value' must not hold NUL characters");
		goto out;
	}
	*key = strdup(json_object_get_string(k));
	*value = strdup(json_object_get_string(v));
	if (!*key || !*value) {
		free(*key);
		free(*value);
		*key = *value = NULL;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	rc = 0;
out:
	json_object_put(o);
	return rc;
}

/* PUT /vm/kvp/external: a SET into the guest's external pool */
static int put_kvp(const struct http_request *req, char *err, size_t errlen)
{
	char *key, *value;
	int rc;
	if (api_parse_kvp(req->body, req->body_len, &key, &value, err, errlen) < 0)
		return 400;
	rc = api.m->hv_util ? hv_util_kvp_set(api.m->hv_util, key, value) : -1;
	free(key);
	free(value);
	if (rc == -1) {
		snprintf(err, errlen, "%s", api.m->hv_util ? "the guest's KVP service is not connected (hv_utils and hv_kvp_daemon)"
							    : "no KVP: the VM does not run with --personality hyperv");
		return 409;
	}
	if (rc == -2) {
		snprintf(err, errlen, "8 KVP SETs already wait for the guest");
		return 503;
	}
	if (rc == -3) {
		snprintf(err, errlen, "'key' (not empty, at most 255 UTF-16 units) or 'value' (at most 1023) too long");
		return 400;
	}
	return 204;
}

/* ---- pre-boot configuration ---- */

static int put_machine_config(struct machine_config *c, const char *id, struct json_object *o, char *err,
			      size_t errlen)
{
	(void)id;
	struct machine_config t = *c; /* these fields own no strings */
	struct json_object *v;
	const char *s;
	char why[160];
	int r;

	if ((r = field(o, "vcpus", json_type_int, &v, err, errlen)) < 0)
		return 400;
	if (r && machine_set_cpus(&t, (long)json_object_get_int64(v), why, sizeof(why))) {
		snprintf(err, errlen, "vcpus %lld: %s", (long long)json_object_get_int64(v), why);
		return 400;
	}
	if ((r = field(o, "memory_mib", json_type_int, &v, err, errlen)) < 0)
		return 400;
	if (r) {
		int64_t mib = json_object_get_int64(v);
		/* the bound keeps the shift sane; the host's RAM is checked next */
		if (mib < 0 || mib > (1 << 30)) {
			snprintf(err, errlen, "memory_mib %lld: expected a size from 16 MiB to the host's RAM",
				 (long long)mib);
			return 400;
		}
		if (machine_set_memory(&t, (uint64_t)mib << 20, why, sizeof(why))) {
			snprintf(err, errlen, "memory_mib %lld: %s", (long long)mib, why);
			return 400;
		}
	}
	if ((r = string_field(o, "accel", false, &s, err, errlen)) < 0)
		return 400;
	if (r && machine_set_accel(&t, s, why, sizeof(why))) {
		snprintf(err, errlen, "accel '%.32s': %s", s, why);
		return 400;
	}
	/* kvm must be there now; auto decides at the start */
	if (r && !strcmp(t.accel, "kvm") && kvm_check(why, sizeof(why)) < 0) {
		snprintf(err, errlen, "accel kvm: %s", why);
		return 400;
	}
	if ((r = string_field(o, "personality", false, &s, err, errlen)) < 0)
		return 400;
	if (r && machine_set_personality(&t, s, why, sizeof(why))) {
		snprintf(err, errlen, "personality '%.32s': %s", s, why);
		return 400;
	}
	if ((r = string_field(o, "irqchip", false, &s, err, errlen)) < 0)
		return 400;
	if (r && machine_set_irqchip(&t, s, why, sizeof(why))) {
		snprintf(err, errlen, "irqchip '%.32s': %s", s, why);
		return 400;
	}
	/* split where it cannot be: refused now, as accord run refuses it,
	 * where the engine is known (auto decides at the start) */
	if (!strcmp(t.irqchip, "split")) {
		why[0] = 0;
		if (!strcmp(t.accel, "emu"))
			snprintf(why, sizeof(why), "the emu engine has no in-kernel LAPIC (split needs accel kvm)");
		else if (t.personality == PERSONALITY_HYPERV)
			snprintf(why, sizeof(why),
				 "personality hyperv keeps the LAPICs in accord (the SynIC delivers into them)");
		else if (!strcmp(t.accel, "kvm"))
			kvm_split_check(why, sizeof(why));
		if (why[0]) {
			snprintf(err, errlen, "irqchip split: %s", why);
			return 400;
		}
	}
	if ((r = field(o, "debug_exit", json_type_boolean, &v, err, errlen)) < 0)
		return 400;
	if (r)
		t.debug_exit = json_object_get_boolean(v);
	*c = t;
	return 204;
}

static int put_boot_source(struct machine_config *c, const char *id, struct json_object *o, char *err, size_t errlen)
{
	(void)id;
	const char *kernel, *initrd, *cmdline;
	if (string_field(o, "kernel", true, &kernel, err, errlen) < 0 ||
	    string_field(o, "initrd", false, &initrd, err, errlen) < 0 ||
	    string_field(o, "cmdline", false, &cmdline, err, errlen) < 0)
		return 400;
	struct boot_config bc = { .kernel = kernel, .initrd = initrd, .cmdline = cmdline };
	int tok = machine_capture_begin();
	int rc = boot_check(&bc, c->memory);
	machine_capture_end(tok, false, err, errlen);
	if (rc < 0)
		return 400;
	return machine_set_boot(c, kernel, initrd, cmdline, err, errlen) ? 400 : 204;
}

static int put_drive(struct machine_config *c, const char *id, struct json_object *o, char *err, size_t errlen)
{
	struct json_object *v;
	const char *path;
	int r;
	if (string_field(o, "path", true, &path, err, errlen) < 0 ||
	    (r = field(o, "read_only", json_type_boolean, &v, err, errlen)) < 0)
		return 400;
	bool ro = r && json_object_get_boolean(v);
	/* refused here with the line accord run would print for --disk */
	int tok = machine_capture_begin();
	struct disk *d = disk_open(path, ro);
	machine_capture_end(tok, false, err, errlen);
	if (!d)
		return 400;
	disk_close(d);
	return machine_set_disk(c, id, path, ro, err, errlen) ? 400 : 204;
}

static int put_nic(struct machine_config *c, const char *id, struct json_object *o, char *err, size_t errlen)
{
	struct net_config nc = { 0 };
	struct json_object *fwd;
	const char *backend, *tap, *mac;
	int r;
	if (string_field(o, "backend", true, &backend, err, errlen) < 0 ||
	    string_field(o, "tap", false, &tap, err, errlen) < 0 ||
	    string_field(o, "mac", false, &mac, err, errlen) < 0 ||
	    (r = field(o, "hostfwd", json_type_array, &fwd, err, errlen)) < 0)
		return 400;
	if (!strcmp(backend, "tap")) {
		nc.kind = NET_TAP;
		if (!tap || !*tap || strlen(tap) >= sizeof(nc.ifname) || strchr(tap, '/')) {
			snprintf(err, errlen, "'tap' must name an interface of 1 to 15 characters");
			return 400;
		}
		if (r) {
			snprintf(err, errlen, "'hostfwd' is for the user backend");
			return 400;
		}
		strcpy(nc.ifname, tap);
	} else if (!strcmp(backend, "user")) {
		nc.kind = NET_USER;
		if (tap) {
			snprintf(err, errlen, "'tap' is for the tap backend");
			return 400;
		}
	} else {
		snprintf(err, errlen, "backend '%.32s': expected user or tap", backend);
		return 400;
	}
	if (mac) {
		if (net_parse_mac(mac, nc.mac) < 0) {
			snprintf(err, errlen, "mac '%.32s': expected XX:XX:XX:XX:XX:XX, not a multicast address", mac);
			return 400;
		}
		nc.has_mac = true;
	}
	size_t n = r ? json_object_array_length(fwd) : 0;
	if (n > NET_MAX_HOSTFWD) {
		snprintf(err, errlen, "at most %d hostfwd rules", NET_MAX_HOSTFWD);
		return 400;
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *f = json_object_array_get_idx(fwd, i);
		const char *spec = json_object_get_string(f);
		if (!json_object_is_type(f, json_type_string) || (size_t)json_object_get_string_len(f) != strlen(spec) ||
		    net_parse_hostfwd(spec, &nc.fwd[i]) < 0) {
			snprintf(err, errlen, "hostfwd '%.64s': expected tcp|udp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT",
				 spec ? spec : "");
			return 400;
		}
		nc.nfwd++;
	}
	return machine_set_nic(c, id, &nc, err, errlen) ? 400 : 204;
}

static int put_rng(struct machine_config *c, const char *id, struct json_object *o, char *err, size_t errlen)
{
	struct json_object *v;
	int r = field(o, "enabled", json_type_boolean, &v, err, errlen);
	(void)id;
	if (r == 0)
		snprintf(err, errlen, "'enabled' is required");
	if (r <= 0)
		return 400;
	c->rng = json_object_get_boolean(v);
	return 204;
}

static int put_console(struct machine_config *c, const char *id, struct json_object *o, char *err, size_t errlen)
{
	const char *kind;
	(void)id;
	if (string_field(o, "kind", true, &kind, err, errlen) < 0)
		return 400;
	if (machine_set_console(c, kind, err, errlen)) {
		snprintf(err, errlen, "kind '%.32s': expected serial or virtio", kind);
		return 400;
	}
	return 204;
}

int api_configure(struct machine_config *c, const char *path, const char *id, const char *body, size_t len,
		  char *err, size_t errlen)
{
	static const char *const machine[] = { "vcpus", "memory_mib", "accel", "personality", "irqchip", "debug_exit",
					       NULL };
	static const char *const boot[] = { "kernel", "initrd", "cmdline", NULL };
	static const char *const drive[] = { "path", "read_only", NULL };
	static const char *const nic[] = { "backend", "tap", "mac", "hostfwd", NULL };
	static const char *const rng[] = { "enabled", NULL };
	static const char *const console[] = { "kind", NULL };
	static const struct {
		const char *path;
		const char *const *fields;
		const char *example;
		int (*put)(struct machine_config *c, const char *id, struct json_object *o, char *err, size_t errlen);
	} forms[] = {
		{ "/vm/machine-config", machine, "{\"vcpus\": 2, \"memory_mib\": 256}", put_machine_config },
		{ "/vm/boot-source", boot, "{\"kernel\": \"/path/to/bzImage\"}", put_boot_source },
		{ "/vm/drives/{id}", drive, "{\"path\": \"/path/to/disk.img\"}", put_drive },
		{ "/vm/network-interfaces/{id}", nic, "{\"backend\": \"user\"}", put_nic },
		{ "/vm/rng", rng, "{\"enabled\": true}", put_rng },
		{ "/vm/console", console, "{\"kind\": \"serial\"}", put_console },
	};
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		if (strcmp(path, forms[i].path))
			continue;
		if (strstr(path, "{id}") && (!id || !machine_id_ok(id))) {
			snprintf(err, errlen, "an id is 1 to %d of A-Z a-z 0-9 . _ - and does not start with a dot",
				 MACHINE_ID_MAX);
			return 400;
		}
		struct json_object *o = parse_object(body, len, forms[i].fields, forms[i].example, err, errlen);
		if (!o)
			return 400;
		int status = forms[i].put(c, id, o, err, errlen);
		json_object_put(o);
		return status;
	}
	snprintf(err, errlen, "no such resource: %.64s", path);
	return 404;
}

int api_remove(struct machine_config *c, const char *path, const char *id, size_t body_len, char *err,
	       size_t errlen)
{
	static const struct {
		const char *path;
		int (*remove)(struct machine_config *c, const char *id, char *err, size_t n);
	} forms[] = {
		{ "/vm/drives/{id}", machine_remove_disk },
		{ "/vm/network-interfaces/{id}", machine_remove_nic },
	};
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		if (strcmp(path, forms[i].path))
			continue;
		if (!id || !machine_id_ok(id)) {
			snprintf(err, errlen, "an id is 1 to %d of A-Z a-z 0-9 . _ - and does not start with a dot",
				 MACHINE_ID_MAX);
			return 400;
		}
		if (body_len) {
			snprintf(err, errlen, "DELETE takes no body");
			return 400;
		}
		return forms[i].remove(c, id, err, errlen) ? 404 : 204;
	}
	snprintf(err, errlen, "no such resource: %.64s", path);
	return 404;
}

/* what an action leaves for after its reply went out */
enum { END_NONE, END_STOP, END_RESET, END_BUILT, END_PROCESS };

/* The start action: build the machine here, on the server's thread, while
 * the main thread waits in api_wait_start. */
static int start(int *end, char *err, size_t errlen)
{
	struct machine *m = api.m;
	bool fatal;
	if (!m->cfg.kernel) {
		snprintf(err, errlen, "no boot source: PUT /vm/boot-source {\"kernel\": ...} first");
		return 400;
	}
	int tok = machine_capture_begin();
	int rc = machine_build(m, true, &fatal);
	/* the process's own log says why a start failed, too */
	machine_capture_end(tok, true, err, errlen);
	if (rc == 0) {
		*end = END_BUILT;
		return 204;
	}
	if (!fatal)
		return 400;
	/* half a machine cannot be taken apart: the process ends as accord
	 * run would, with the same status */
	api.end_status = rc;
	*end = END_PROCESS;
	return 500;
}

/* Returns the HTTP status; err holds the message of an error. An action
 * that ends the VM is left in *end for after the reply went out. */
static int do_action(const char *action, int *end, const char **method, char *err, size_t errlen)
{
	struct vm *vm = api.m->vm;
	if (!vm) {
		if (!strcmp(action, "start"))
			return start(end, err, errlen);
		if (!strcmp(action, "stop")) {
			api.end_status = 0;
			*end = END_PROCESS;
			return 204;
		}
		snprintf(err, errlen, "the VM has not started: configure it, then PUT /vm/actions {\"action\": \"start\"}");
		return 409;
	}
	if (vm->exit_reason) {
		snprintf(err, errlen, "the VM has shut down");
		return 409;
	}
	if (!strcmp(action, "start")) {
		snprintf(err, errlen, "the VM has already started");
		return 409;
	}
	if (!strcmp(action, "stop")) {
		*end = END_STOP;
		return 204;
	}
	if (!strcmp(action, "reset")) {
		*end = END_RESET;
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
	/* shutdown: the Hyper-V shutdown service when the guest has it,
	 * else the ACPI power button */
	if (vm->paused) {
		snprintf(err, errlen, "the VM is paused: resume it first, or the guest cannot see the request");
		return 409;
	}
	if (api.m->hv_util && hv_util_shutdown(api.m->hv_util) == 0) {
		*method = "hyperv-shutdown-service";
		return 200;
	}
	pthread_mutex_lock(&vm->io_lock);
	int rc = vm->acpipm ? acpipm_power_button(vm->acpipm) : -1;
	pthread_mutex_unlock(&vm->io_lock);
	if (rc < 0) {
		snprintf(err, errlen, "%s",
			 api.m->hv_util ? "the guest has neither the Hyper-V shutdown service (hv_utils) open nor the "
					    "ACPI power button (PWRBTN_EN) enabled: it would not notice"
					  : "the guest has not enabled the ACPI power button (PWRBTN_EN): it would not notice");
		return 409;
	}
	*method = "acpi-power-button";
	return 200;
}

/* tell the main thread, waiting in api_wait_start, how the start went */
static void start_done(int state)
{
	pthread_mutex_lock(&api.start_lock);
	api.start_state = state;
	pthread_cond_signal(&api.start_cond);
	pthread_mutex_unlock(&api.start_lock);
}

bool api_wait_start(int *status)
{
	pthread_mutex_lock(&api.start_lock);
	while (api.start_state == START_WAITING)
		pthread_cond_wait(&api.start_cond, &api.start_lock);
	bool built = api.start_state == START_BUILT;
	*status = api.end_status;
	pthread_mutex_unlock(&api.start_lock);
	return built;
}

/* The body of PUT /vm/snapshot: {"path": FILE} and optionally "stop":
 * true. The path is required even when the client passed the file (it is
 * what the reply and the VM's log name). 0, or -1 with why in err. */
static int parse_snapshot(const char *body, size_t len, char *path, size_t pathlen, bool *stop, char *err,
			  size_t errlen)
{
	static const char *const names[] = { "path", "stop", NULL };
	struct json_object *o = parse_object(body, len, names, "{\"path\": \"/var/lib/vm.snap\"}", err, errlen);
	struct json_object *v;
	const char *p;
	int rc = -1;

	*stop = false;
	if (!o)
		return -1;
	if (string_field(o, "path", true, &p, err, errlen) < 0 || field(o, "stop", json_type_boolean, &v, err, errlen) < 0)
		goto out;
	if (v)
		*stop = json_object_get_boolean(v);
	if (!*p || strlen(p) + 5 > pathlen) {
		snprintf(err, errlen, "'path' must be a file name of 1 to %zu bytes", pathlen - 5);
		goto out;
	}
	memcpy(path, p, strlen(p) + 1);
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
	struct vm *vm = api.m->vm;
	char path[4096], tmp[4096 + 8];
	bool stop;
	int fd = -1;

	if (parse_snapshot(req->body, req->body_len, path, sizeof(path), &stop, err, errlen) < 0)
		return 400;
	if (!vm) {
		snprintf(err, errlen, "the VM has not started: nothing to save");
		return 409;
	}
	if (vm->exit_reason) {
		snprintf(err, errlen, "the VM has shut down");
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
	/* a paused VM is restored paused */
	vm->snap_paused = was_paused;
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
		return rc == SNAP_REFUSED ? 409 : 500;
	}
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "path", json_object_new_string(path));
	json_object_object_add(o, "bytes", json_object_new_int64(size));
	json_object_object_add(o, "state", json_object_new_string(was_paused ? "paused" : "running"));
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
	{ "/vm/kvp", "GET" },
	{ "/vm/kvp/external", "PUT" },
	{ "/vm/actions", "PUT" },
	{ "/vm/snapshot", "PUT" },
	/* pre-boot configuration (api_configure, api_remove); {id} is one
	 * path segment */
	{ "/vm/machine-config", "PUT" },
	{ "/vm/boot-source", "PUT" },
	{ "/vm/drives/{id}", "PUT" },
	{ "/vm/drives/{id}", "DELETE" },
	{ "/vm/network-interfaces/{id}", "PUT" },
	{ "/vm/network-interfaces/{id}", "DELETE" },
	{ "/vm/rng", "PUT" },
	{ "/vm/console", "PUT" },
};

/* path against a route's path; *id is the segment a "{id}" stands for */
static bool route_match(const char *route, const char *path, const char **id)
{
	const char *t = strstr(route, "{id}");
	size_t n = t ? (size_t)(t - route) : 0;
	*id = NULL;
	if (!t)
		return !strcmp(route, path);
	if (strncmp(route, path, n) || !path[n] || strchr(path + n, '/'))
		return false;
	*id = path + n;
	return true;
}

static void handle(int fd, const struct http_request *req, int *passed_fd)
{
	bool ka = req->keep_alive;
	const struct route *r = NULL;
	const char *id = NULL;
	char methods[32] = "";
	api.requests++;
	/* the route of this path and method; the path's methods for a 405 */
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]) && !r; i++) {
		if (!route_match(routes[i].path, req->path, &id))
			continue;
		if (!strcmp(req->method, routes[i].method))
			r = &routes[i];
		else
			snprintf(methods + strlen(methods), sizeof(methods) - strlen(methods), "%s%s",
				 methods[0] ? ", " : "", routes[i].method);
	}
	if (!r && !methods[0]) {
		char msg[HTTP_MAX_PATH + 32];
		snprintf(msg, sizeof(msg), "no such resource: %s", req->path);
		reply_error(fd, 404, msg, ka, NULL);
		return;
	}
	if (!r) {
		char msg[HTTP_MAX_PATH + 96], allow[48];
		snprintf(msg, sizeof(msg), "%s takes %s, not %.16s", req->path, methods, req->method);
		snprintf(allow, sizeof(allow), "Allow: %s\r\n", methods);
		reply_error(fd, 405, msg, ka, allow);
		return;
	}
	if (!strcmp(r->path, "/vm")) {
		reply_json(fd, 200, get_vm(), ka);
	} else if (!strcmp(r->path, "/vm/config")) {
		reply_json(fd, 200, get_config(), ka);
	} else if (!strcmp(r->path, "/vm/counters")) {
		if (api.m->vm)
			reply_json(fd, 200, get_counters(), ka);
		else
			reply_error(fd, 409, "the VM has not started: no counters yet", ka, NULL);
	} else if (!strcmp(r->path, "/vm/snapshot")) {
		char msg[4400];
		int end = 0;
		int status = do_snapshot(req, passed_fd, &end, msg, sizeof(msg));
		if (status >= 400)
			reply_error(fd, status, msg, ka, NULL);
		else
			reply(fd, status, msg, ka, NULL);
		if (end == VM_STOPPED)
			vm_request_exit(api.m->vm, VM_STOPPED, 0, "stopped after a snapshot through the control API");
	} else if (!strcmp(r->path, "/vm/kvp")) {
		reply_json(fd, 200, get_kvp(), ka);
	} else if (!strcmp(r->path, "/vm/kvp/external")) {
		char err[200];
		int status = put_kvp(req, err, sizeof(err));
		if (status >= 400)
			reply_error(fd, status, err, ka, NULL);
		else
			reply(fd, status, NULL, ka, NULL);
	} else if (!strcmp(r->path, "/vm/counters")) {
		if (api.m->vm)
			reply_json(fd, 200, get_counters(), ka);
		else
			reply_error(fd, 409, "the VM has not started: no counters yet", ka, NULL);
	} else if (strcmp(r->path, "/vm/actions")) {
		char err[512] = "";
		int status = 409;
		bool del = !strcmp(r->method, "DELETE");
		/* the configuration is fixed once the machine is built */
		if (api.m->vm)
			snprintf(err, sizeof(err), "the VM has started: %s can only be %s before the start", r->path,
				 del ? "removed" : "set");
		else if (del)
			status = api_remove(&api.m->cfg, r->path, id, req->body_len, err, sizeof(err));
		else
			status = api_configure(&api.m->cfg, r->path, id, req->body, req->body_len, err, sizeof(err));
		if (status >= 400)
			reply_error(fd, status, err, ka, NULL);
		else
			reply(fd, status, NULL, ka, NULL);
	} else {
		char err[512];
		const char *action = api_parse_action(req->body, req->body_len, err, sizeof(err));
		if (!action) {
			reply_error(fd, 400, err, ka, NULL);
			return;
		}
		int end = END_NONE;
		const char *method = NULL;
		int status = do_action(action, &end, &method, err, sizeof(err));
		if (status >= 400) {
			reply_error(fd, status, err, ka, NULL);
		} else if (method) {
			struct json_object *o = json_object_new_object();
			json_object_object_add(o, "action", json_object_new_string(action));
			json_object_object_add(o, "method", json_object_new_string(method));
			reply_json(fd, status, o, ka);
		} else {
			reply(fd, status, NULL, ka, NULL);
		}
		if (end == END_STOP)
			vm_request_exit(api.m->vm, VM_STOPPED, 0, "stopped through the control API");
		else if (end == END_RESET)
			vm_request_exit(api.m->vm, VM_RESET, 0, "reset through the control API");
		else if (end == END_BUILT)
			start_done(START_BUILT);
		else if (end == END_PROCESS)
			start_done(START_END);
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

int api_start(struct machine *m, const char *name, const char *path)
{
	memset(&api, 0, sizeof(api));
	api.m = m;
	snprintf(api.name, sizeof(api.name), "%s", name);
	pthread_mutex_init(&api.start_lock, NULL);
	pthread_cond_init(&api.start_cond, NULL);
	api.start_state = m->vm ? START_BUILT : START_WAITING;
	if (path) {
		snprintf(api.path, sizeof(api.path), "%s", path);
	} else {
		/* without a place for the default socket a running VM still
		 * runs, only unseen by accord ls; one waiting for its
		 * configuration would wait forever */
		const char *level = m->vm ? "warning: no control API" : "no control API";
		char dir[sizeof(api.path)];
		if (api_socket_dir(dir, sizeof(dir)) < 0 ||
		    snprintf(api.path, sizeof(api.path), "%s/%s.sock", dir, name) >= (int)sizeof(api.path)) {
			fprintf(stderr, "accord: %s: the socket directory's path is too long\n", level);
			return m->vm ? 0 : -1;
		}
		if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
			fprintf(stderr, "accord: %s: cannot create %s: %s\n", level, dir, strerror(errno));
			return m->vm ? 0 : -1;
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
