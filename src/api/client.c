/* The clients of the control API: `accord ls` lists the VMs whose sockets
 * are in api_socket_dir, `accord ACTION NAME` sends PUT /vm/actions
 * (start, pause, resume, stop, shutdown, reset), `accord kvp NAME` prints
 * GET /vm/kvp's pairs. Also the socket directory and VM names, which the
 * server shares. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/api.h"
#include "vm/machine.h"

#define REPLY_MAX 65536

static const char *const client_actions[] = { "start", "pause", "resume", "stop", "shutdown", "reset" };

bool api_is_client_command(const char *cmd)
{
	if (!strcmp(cmd, "ls") || !strcmp(cmd, "snapshot") || !strcmp(cmd, "kvp"))
		return true;
	for (size_t i = 0; i < sizeof(client_actions) / sizeof(client_actions[0]); i++)
		if (!strcmp(cmd, client_actions[i]))
			return true;
	return false;
}

int api_name_check(const char *opt, const char *name)
{
	if (machine_id_ok(name))
		return 0;
	fprintf(stderr, "accord: %s '%.80s': a VM name is 1 to 64 of A-Z a-z 0-9 . _ - and does not start with a dot\n",
		opt, name);
	return -1;
}

int api_socket_dir(char *out, size_t n)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	struct stat st;
	int r;
	/* a runtime directory that is not there is not the user's session */
	if (xdg && *xdg && stat(xdg, &st) == 0 && S_ISDIR(st.st_mode))
		r = snprintf(out, n, "%s/accord", xdg);
	else if (geteuid() == 0)
		r = snprintf(out, n, "/run/accord");
	else
		r = snprintf(out, n, "/tmp/accord-%u", (unsigned)geteuid());
	return r < 0 || (size_t)r >= n ? -1 : 0;
}

/* A request with Connection: close; the reply's status and body (malloc'd,
 * NUL-terminated). Returns 0, or -errno when no VM listens on path (ENOENT,
 * ECONNREFUSED: a dead VM's socket), or -EPROTO for a garbled reply. */
static int request_fd(const char *path, const char *method, const char *target, const char *body, int pass_fd,
		      int timeout_s, int *status, char **reply_body)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	/* a VM that stopped answering must not hang its client */
	struct timeval tv = { .tv_sec = timeout_s };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	char *req;
	int len = asprintf(&req,
			   "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
			   "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
			   method, target, body ? strlen(body) : 0, body ? body : "");
	if (len < 0) {
		close(fd);
		return -ENOMEM;
	}
	/* the file goes with the request's bytes (SCM_RIGHTS) */
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct iovec iov = { req, (size_t)len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (pass_fd >= 0) {
		memset(&cm, 0, sizeof(cm));
		mh.msg_control = &cm;
		mh.msg_controllen = sizeof(cm);
		struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
		h->cmsg_level = SOL_SOCKET;
		h->cmsg_type = SCM_RIGHTS;
		h->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(h), &pass_fd, sizeof(int));
	}
	ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);
	if (w > 0 && w < len) {
		ssize_t w2 = send(fd, req + w, (size_t)(len - w), MSG_NOSIGNAL);
		w = w2 < 0 ? w2 : w + w2;
	}
	free(req);
	char *buf = malloc(REPLY_MAX + 1);
	size_t got = 0;
	ssize_t r = 0;
	while (buf && w == len && got < REPLY_MAX && (r = recv(fd, buf + got, REPLY_MAX - got, 0)) > 0)
		got += (size_t)r;
	close(fd);
	if (!buf)
		return -ENOMEM;
	buf[got] = 0;
	char *sep = strstr(buf, "\r\n\r\n");
	if (w != len || r < 0 || !sep || sscanf(buf, "HTTP/1.%*d %d", status) != 1) {
		free(buf);
		return w != len || r < 0 ? -ETIMEDOUT : -EPROTO;
	}
	*reply_body = strdup(sep + 4);
	free(buf);
	return *reply_body ? 0 : -ENOMEM;
}

static int request(const char *path, const char *method, const char *target, const char *body, int *status,
		   char **reply_body)
{
	return request_fd(path, method, target, body, -1, 10, status, reply_body);
}

static bool no_listener(int rc)
{
	return rc == -ENOENT || rc == -ECONNREFUSED;
}

/* the "error" of a JSON error body, or the body itself */
static void print_error(const char *who, int status, const char *body)
{
	struct json_object *o = json_tokener_parse(body);
	struct json_object *e;
	const char *msg = body;
	if (o && json_object_object_get_ex(o, "error", &e) && json_object_is_type(e, json_type_string))
		msg = json_object_get_string(e);
	fprintf(stderr, "accord: %s: %d: %.300s\n", who, status, msg);
	json_object_put(o);
}

static const char *jget(struct json_object *o, const char *key)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, key, &v))
		return "?";
	/* null: not there yet (the engine of a VM still being configured) */
	return v ? json_object_get_string(v) : "-";
}

static int cmd_ls(void)
{
	char dir[108];
	if (api_socket_dir(dir, sizeof(dir)) < 0) {
		fprintf(stderr, "accord: ls: the socket directory's path is too long\n");
		return API_EXIT_USAGE;
	}
	printf("%-24s %8s %-11s %-6s %s\n", "NAME", "PID", "STATE", "ENGINE", "SOCKET");
	DIR *d = opendir(dir);
	if (!d)
		return API_EXIT_OK; /* no VM ever ran here */
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (n < 6 || strcmp(e->d_name + n - 5, ".sock"))
			continue;
		char path[512];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		int status;
		char *body;
		int rc = request(path, "GET", "/vm", NULL, &status, &body);
		if (rc == -ECONNREFUSED) {
			/* the VM died without removing its socket */
			unlink(path);
			continue;
		}
		if (rc < 0 || status != 200) {
			if (rc == 0)
				free(body);
			continue;
		}
		struct json_object *o = json_tokener_parse(body);
		if (o)
			printf("%-24s %8s %-11s %-6s %s\n", jget(o, "name"), jget(o, "pid"), jget(o, "state"),
			       jget(o, "engine"), path);
		json_object_put(o);
		free(body);
	}
	closedir(d);
	return API_EXIT_OK;
}

/* NAME's socket (NAME may be a socket's path); -1 after one line */
static int vm_socket(const char *cmd, const char *name, char *path, size_t n)
{
	if (strchr(name, '/')) {
		snprintf(path, n, "%s", name);
		return 0;
	}
	char dir[108];
	if (api_name_check(cmd, name) < 0)
		return -1;
	if (api_socket_dir(dir, sizeof(dir)) < 0) {
		fprintf(stderr, "accord: %s: the socket directory's path is too long\n", cmd);
		return -1;
	}
	snprintf(path, n, "%s/%s.sock", dir, name);
	return 0;
}

/* accord snapshot NAME FILE [--stop]: the client makes FILE.tmp and
 * passes it to the VM (a sandboxed VMM cannot create files), and renames
 * it to FILE once the VM wrote the snapshot */
static int cmd_snapshot(int argc, char **argv)
{
	bool stop = argc == 4 && !strcmp(argv[3], "--stop");
	if (argc != 3 && !stop) {
		fprintf(stderr, "accord: usage: accord snapshot NAME FILE [--stop]\n");
		return API_EXIT_USAGE;
	}
	const char *name = argv[1], *file = argv[2];
	char path[512], *tmp = NULL;
	if (vm_socket("snapshot", name, path, sizeof(path)) < 0)
		return API_EXIT_USAGE;
	if (!*file || asprintf(&tmp, "%s.tmp", file) < 0) {
		fprintf(stderr, "accord: snapshot: bad file name '%s'\n", file);
		return API_EXIT_USAGE;
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "accord: snapshot: %s: %s\n", tmp, strerror(errno));
		free(tmp);
		return API_EXIT_USAGE;
	}
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "path", json_object_new_string(file));
	if (stop)
		json_object_object_add(o, "stop", json_object_new_boolean(true));
	char *body = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	int status = 0;
	char *reply = NULL;
	/* guest memory is written while the client waits */
	int rc = body ? request_fd(path, "PUT", "/vm/snapshot", body, fd, 600, &status, &reply) : -ENOMEM;
	free(body);
	close(fd);
	int ret = API_EXIT_OK;
	if (no_listener(rc)) {
		fprintf(stderr, "accord: snapshot: no running VM named '%s'\n", name);
		ret = API_EXIT_NO_VM;
	} else if (rc < 0) {
		fprintf(stderr, "accord: snapshot: %s: %s\n", name, rc == -EPROTO ? "garbled reply" : strerror(-rc));
		ret = API_EXIT_REFUSED;
	} else if (status / 100 != 2) {
		char who[160];
		snprintf(who, sizeof(who), "snapshot %s", name);
		print_error(who, status, reply);
		ret = API_EXIT_REFUSED;
	} else if (rename(tmp, file) < 0) {
		fprintf(stderr, "accord: snapshot: %s: %s\n", file, strerror(errno));
		ret = API_EXIT_REFUSED;
	}
	if (ret != API_EXIT_OK)
		unlink(tmp);
	free(reply);
	free(tmp);
	return ret;
}

/* `accord kvp NAME`: what the guest reports through Hyper-V KVP, one
 * "POOL KEY=VALUE" line per pair */
static int cmd_kvp(const char *name)
{
	char path[512];
	if (vm_socket("kvp", name, path, sizeof(path)) < 0)
		return API_EXIT_USAGE;
	int status;
	char *reply;
	int rc = request(path, "GET", "/vm/kvp", NULL, &status, &reply);
	if (no_listener(rc)) {
		fprintf(stderr, "accord: kvp: no running VM named '%s'\n", name);
		return API_EXIT_NO_VM;
	}
	if (rc < 0) {
		fprintf(stderr, "accord: kvp: %s: %s\n", name, rc == -EPROTO ? "garbled reply" : strerror(-rc));
		return API_EXIT_REFUSED;
	}
	struct json_object *o = status == 200 ? json_tokener_parse(reply) : NULL;
	struct json_object *pools, *v;
	int ret = API_EXIT_OK;
	if (!o || !json_object_object_get_ex(o, "pools", &pools)) {
		char who[160];
		snprintf(who, sizeof(who), "kvp %s", name);
		print_error(who, status, reply);
		ret = API_EXIT_REFUSED;
	} else if (!json_object_object_get_ex(o, "connected", &v) || !json_object_get_boolean(v)) {
		fprintf(stderr, "accord: kvp: %s: %s\n", name,
			json_object_object_get_ex(o, "available", &v) && json_object_get_boolean(v)
				? "the guest's KVP service is not connected (hv_utils and hv_kvp_daemon)"
				: "no KVP: the VM does not run with --personality hyperv");
		ret = API_EXIT_REFUSED;
	} else {
		json_object_object_foreach(pools, pool, pairs)
		{
			json_object_object_foreach(pairs, key, val)
				printf("%s %s=%s\n", pool, key, json_object_get_string(val));
		}
	}
	json_object_put(o);
	free(reply);
	return ret;
}

static int cmd_action(const char *action, const char *name)
{
	char path[512];
	if (vm_socket(action, name, path, sizeof(path)) < 0)
		return API_EXIT_USAGE;
	char body[64];
	snprintf(body, sizeof(body), "{\"action\": \"%s\"}", action);
	int status;
	char *reply;
	int rc = request(path, "PUT", "/vm/actions", body, &status, &reply);
	if (no_listener(rc)) {
		fprintf(stderr, "accord: %s: no running VM named '%s'\n", action, name);
		return API_EXIT_NO_VM;
	}
	if (rc < 0) {
		fprintf(stderr, "accord: %s: %s: %s\n", action, name,
			rc == -EPROTO ? "garbled reply" : strerror(-rc));
		return API_EXIT_REFUSED;
	}
	int ret = API_EXIT_OK;
	if (status / 100 != 2) {
		char who[160];
		snprintf(who, sizeof(who), "%s %s", action, name);
		print_error(who, status, reply);
		ret = API_EXIT_REFUSED;
	} else if (status == 200 && reply) {
		/* shutdown says how the guest was asked */
		struct json_object *o = json_tokener_parse(reply);
		if (o && json_object_is_type(o, json_type_object))
			printf("%s: %s requested (%s)\n", name, action, jget(o, "method"));
		json_object_put(o);
	}
	free(reply);
	return ret;
}

int api_client_main(int argc, char **argv)
{
	const char *cmd = argv[0];
	if (!strcmp(cmd, "ls")) {
		if (argc != 1) {
			fprintf(stderr, "accord: usage: accord ls\n");
			return API_EXIT_USAGE;
		}
		return cmd_ls();
	}
	if (!strcmp(cmd, "snapshot"))
		return cmd_snapshot(argc, argv);
	if (argc != 2) {
		fprintf(stderr, "accord: usage: accord %s NAME\n", cmd);
		return API_EXIT_USAGE;
	}
	if (!strcmp(cmd, "kvp"))
		return cmd_kvp(argv[1]);
	return cmd_action(cmd, argv[1]);
}
