/* The control API's request parsing: HTTP/1.1 heads and bodies
 * (src/api/http.c), the JSON body of PUT /vm/actions and the pre-boot
 * routes' bodies and DELETEs (api_configure, api_remove, src/api/server.c)
 * against well-formed, malformed, oversized and random input. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/http.h"
#include "api/internal.h"
#include "vm/machine.h"
#include "tap.h"

static struct http_request req;
static char err[256];

static int parse(const char *s)
{
	return http_parse(s, strlen(s), &req, err, sizeof(err));
}

static void expect_status(const char *what, const char *s, int status)
{
	int r = parse(s);
	ok(r == -status && err[0], "%s: %d (got %d: %s)", what, status, -r, r < 0 ? err : "");
}

static void good_requests(void)
{
	const char *get = "GET /vm HTTP/1.1\r\nHost: x\r\n\r\n";
	int r = parse(get);
	ok(r == (int)strlen(get) && !strcmp(req.method, "GET") && !strcmp(req.path, "/vm") && req.keep_alive &&
		   req.body_len == 0,
	   "GET /vm HTTP/1.1: whole request, keep-alive");

	const char *put = "PUT /vm/actions HTTP/1.1\r\nContent-Length: 17\r\n\r\n{\"action\":\"stop\"}";
	r = parse(put);
	ok(r == (int)strlen(put) && req.body_len == 17 && !memcmp(req.body, "{\"action\":\"stop\"}", 17),
	   "PUT with a Content-Length body");

	ok(parse("PUT /vm/actions HTTP/1.1\r\nContent-Length: 17\r\n\r\n{\"act") == 0,
	   "a body not all there yet: read more");
	ok(parse("GET /vm HTTP/1.1\r\nHost: x\r\n") == 0, "a head without its blank line: read more");
	ok(parse("") == 0, "nothing yet: read more");

	const char *two = "GET /vm HTTP/1.1\r\n\r\nGET /vm/config HTTP/1.1\r\n\r\n";
	r = parse(two);
	ok(r == 20 && !strcmp(req.path, "/vm"), "pipelined requests: the first one only");
	r = http_parse(two + 20, strlen(two) - 20, &req, err, sizeof(err));
	ok(r == (int)strlen(two) - 20 && !strcmp(req.path, "/vm/config"), "pipelined requests: then the second");

	ok(parse("GET /vm HTTP/1.0\r\n\r\n") > 0 && !req.keep_alive, "HTTP/1.0 closes by default");
	ok(parse("GET /vm HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n") > 0 && req.keep_alive,
	   "HTTP/1.0 with Connection: keep-alive");
	ok(parse("GET /vm HTTP/1.1\r\nconnection:   close  \r\n\r\n") > 0 && !req.keep_alive,
	   "Connection: close, any case, padded");
	ok(parse("GET /vm?x=1&y=2 HTTP/1.1\r\n\r\n") > 0 && !strcmp(req.path, "/vm"), "the query string is dropped");
	ok(parse("GET /vm HTTP/1.1\nHost: x\n\n") > 0 && !strcmp(req.path, "/vm"), "bare LF line ends");
	ok(parse("PUT /a HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nab") > 0 && req.body_len == 2,
	   "Content-Length twice with the same value");
}

static void bad_requests(void)
{
	expect_status("no target", "GET\r\n\r\n", 400);
	expect_status("no version", "GET /vm\r\n\r\n", 400);
	expect_status("relative target", "GET vm HTTP/1.1\r\n\r\n", 400);
	expect_status("HTTP/2.0", "GET /vm HTTP/2.0\r\n\r\n", 505);
	expect_status("garbled version", "GET /vm HTTP/1.1x\r\n\r\n", 400);
	expect_status("lower-case version", "GET /vm http/1.1\r\n\r\n", 400);
	expect_status("two spaces", "GET  /vm HTTP/1.1\r\n\r\n", 400);
	expect_status("method with a slash", "G/T /vm HTTP/1.1\r\n\r\n", 400);
	expect_status("method too long", "GETGETGETGETGETGETGET /vm HTTP/1.1\r\n\r\n", 501);
	expect_status("header without a colon", "GET /vm HTTP/1.1\r\nHost x\r\n\r\n", 400);
	expect_status("header name with a space", "GET /vm HTTP/1.1\r\nContent Length: 1\r\n\r\n", 400);
	expect_status("empty header name", "GET /vm HTTP/1.1\r\n: x\r\n\r\n", 400);
	expect_status("folded header", "GET /vm HTTP/1.1\r\nHost: x\r\n y\r\n\r\n", 400);
	expect_status("Content-Length not a number", "PUT /a HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400);
	expect_status("negative Content-Length", "PUT /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400);
	expect_status("empty Content-Length", "PUT /a HTTP/1.1\r\nContent-Length:\r\n\r\n", 400);
	expect_status("conflicting Content-Length",
		      "PUT /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400);
	expect_status("body over 16 KiB", "PUT /a HTTP/1.1\r\nContent-Length: 16385\r\n\r\n", 413);
	expect_status("absurd Content-Length", "PUT /a HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
		      413);
	expect_status("chunked", "PUT /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501);
	expect_status("control byte in a header", "GET /vm HTTP/1.1\r\nHost: a\x01z\r\n\r\n", 400);
	expect_status("control byte in the target", "GET /v\x7fm HTTP/1.1\r\n\r\n", 400);
	expect_status("leading blank line", "\r\nGET /vm HTTP/1.1\r\n\r\n", 400);
	expect_status("binary garbage", "\x16\x03\x01\x02\x00", 400);

	char path[600];
	memset(path, 'a', sizeof(path));
	path[0] = '/';
	char *s;
	if (asprintf(&s, "GET %.*s HTTP/1.1\r\n\r\n", 400, path) > 0) {
		expect_status("target over 255 bytes", s, 414);
		free(s);
	}
	/* a head that never ends is refused once it reaches the limit */
	size_t n = HTTP_MAX_HEAD + 100;
	char *big = malloc(n + 1);
	strcpy(big, "GET /vm HTTP/1.1\r\nX-Pad: ");
	memset(big + strlen(big), 'p', n - strlen(big));
	big[n] = 0;
	ok(http_parse(big, HTTP_MAX_HEAD - 1, &req, err, sizeof(err)) == 0, "a long head below the limit: read more");
	expect_status("head over 8 KiB", big, 431);
	free(big);
}

/* random bytes, and random mutations of a good request: never a crash, a
 * request never longer than the input, a status always a 4xx or 5xx */
static void random_input(void)
{
	static const char good[] = "PUT /vm/actions HTTP/1.1\r\nContent-Length: 18\r\n\r\n{\"action\":\"pause\"}";
	char buf[256];
	int bad = 0;
	srand(8);
	for (int i = 0; i < 200000; i++) {
		size_t len;
		if (i & 1) {
			len = (size_t)rand() % sizeof(buf);
			for (size_t j = 0; j < len; j++)
				buf[j] = (char)rand();
		} else {
			len = sizeof(good) - 1;
			memcpy(buf, good, len);
			for (int k = rand() % 4; k >= 0; k--)
				buf[rand() % len] = (char)rand();
			len -= (size_t)rand() % 8;
		}
		int r = http_parse(buf, len, &req, err, sizeof(err));
		if (r > (int)len || (r < 0 && (-r < 400 || -r > 599)) ||
		    (r > 0 && (req.body + req.body_len > buf + len || req.path[0] != '/')))
			bad++;
	}
	ok(bad == 0, "200000 random and mutated requests: bounded results (%d bad)", bad);
}

static void responses(void)
{
	char out[256];
	int n = http_response_head(out, sizeof(out), 404, "application/json", 12, false);
	ok(n > 0 && !strncmp(out, "HTTP/1.1 404 Not Found\r\n", 24) && strstr(out, "Content-Length: 12\r\n") &&
		   strstr(out, "Connection: close\r\n") && !strcmp(out + n - 4, "\r\n\r\n"),
	   "a 404 head");
	ok(http_response_head(out, 40, 200, "application/json", 1, true) == -1, "a head that does not fit: -1");
}

static void action(const char *body, const char *want)
{
	const char *a = api_parse_action(body, strlen(body), err, sizeof(err));
	char shown[48];
	snprintf(shown, sizeof(shown), "%s", body);
	for (char *p = shown; *p; p++)
		if (*p < ' ')
			*p = '.';
	if (want)
		ok(a && !strcmp(a, want), "action body %s -> %s", shown, want);
	else
		ok(!a && err[0], "action body '%s' refused: %s", shown, err);
}

static void action_bodies(void)
{
	action("{\"action\": \"pause\"}", "pause");
	action("{\"action\":\"resume\"}\r\n", "resume");
	action(" {\"action\":\"stop\"} ", "stop");
	action("{\"action\":\"shutdown\"}", "shutdown");
	action("{\"action\":\"reset\"}", "reset");
	action("{\"action\":\"start\"}", "start");
	action("", NULL);
	action("{", NULL);
	action("{\"action\":\"pause\"", NULL);
	action("{\"action\":\"pause\"} x", NULL);
	action("{\"action\":\"pause\"}{}", NULL);
	action("[\"pause\"]", NULL);
	action("\"pause\"", NULL);
	action("{}", NULL);
	action("{\"action\":1}", NULL);
	action("{\"action\":null}", NULL);
	action("{\"action\":\"Pause\"}", NULL);
	action("{\"action\":\"explode\"}", NULL);
	action("{\"action\":\"pause\",\"force\":true}", NULL);
	action("{'action':'pause'}", NULL);
	action("{\"action\":\"pause\",}", NULL);
	action("{\"action\":\"pa\\u0000use\"}", NULL);
	action("{\"action\":\"pause\\u0000x\"}", NULL);
	char deep[4096];
	memset(deep, '[', sizeof(deep) - 1);
	deep[sizeof(deep) - 1] = 0;
	action(deep, NULL);
}

static void kvp_body(const char *body, const char *want_key, const char *want_value)
{
	char *k, *v;
	int rc = api_parse_kvp(body, strlen(body), &k, &v, err, sizeof(err));
	if (want_key)
		ok(rc == 0 && !strcmp(k, want_key) && !strcmp(v, want_value), "kvp body %s -> %s=%s", body, want_key,
		   want_value);
	else
		ok(rc < 0 && !k && !v && err[0], "kvp body '%s' refused: %s", body, err);
	if (!rc) {
		free(k);
		free(v);
	}
}

static void kvp_bodies(void)
{
	kvp_body("{\"key\": \"HostKey\", \"value\": \"a value\"}", "HostKey", "a value");
	kvp_body("{\"value\":\"\",\"key\":\"k\"}", "k", "");
	kvp_body("{\"key\":\"k\\u00e9\",\"value\":\"\\ud83d\\ude00\"}", "k\xc3\xa9", "\xf0\x9f\x98\x80");
	kvp_body("", NULL, NULL);
	kvp_body("{\"key\":\"k\"}", NULL, NULL);
	kvp_body("{\"value\":\"v\"}", NULL, NULL);
	kvp_body("{\"key\":1,\"value\":\"v\"}", NULL, NULL);
	kvp_body("{\"key\":\"k\",\"value\":null}", NULL, NULL);
	kvp_body("{\"key\":\"k\",\"value\":\"v\",\"pool\":0}", NULL, NULL);
	kvp_body("{\"key\":\"k\\u0000x\",\"value\":\"v\"}", NULL, NULL);
	kvp_body("[\"k\",\"v\"]", NULL, NULL);
	kvp_body("{\"key\":\"k\",\"value\":\"v\"} x", NULL, NULL);
}

/* ---- the pre-boot routes ---- */

static struct machine_config cfg;
static char dir[] = "/tmp/unit-api-XXXXXX";
static char kernel[64], disk_file[64];

static int put(const char *path, const char *id, const char *body)
{
	err[0] = 0;
	return api_configure(&cfg, path, id, body, strlen(body), err, sizeof(err));
}

static void expect_put(const char *what, const char *path, const char *id, const char *body, int status)
{
	int r = put(path, id, body);
	ok(r == status && (status == 204 || err[0]), "%s: %d (got %d: %s)", what, status, r, err);
}

/* a Multiboot kernel with the a.out kludge: 4 KiB loaded at 1 MiB */
static void write_kernel(void)
{
	uint32_t h[8] = { 0x1BADB002u, 1u << 16, 0, 0x100000, 0x100000, 0, 0, 0x100020 };
	char image[4096] = { 0 };
	h[2] = -(h[0] + h[1]);
	memcpy(image, h, sizeof(h));
	snprintf(kernel, sizeof(kernel), "%s/kernel", dir);
	snprintf(disk_file, sizeof(disk_file), "%s/disk.img", dir);
	int fd = open(kernel, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	int dfd = open(disk_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || dfd < 0 || write(fd, image, sizeof(image)) != (ssize_t)sizeof(image) ||
	    write(dfd, image, sizeof(image)) != (ssize_t)sizeof(image))
		ok(false, "cannot write the test files in %s", dir);
	close(fd);
	close(dfd);
}

static void configure(void)
{
	char body[512];
	machine_config_init(&cfg);

	expect_put("machine-config: vcpus and memory", "/vm/machine-config", NULL,
		   "{\"vcpus\": 2, \"memory_mib\": 256}", 204);
	ok(cfg.cpus == 2 && cfg.memory == 256ull << 20, "... set: %d vCPUs, %llu MiB", cfg.cpus,
	   (unsigned long long)(cfg.memory >> 20));
	expect_put("machine-config: accel, personality, debug_exit", "/vm/machine-config", NULL,
		   "{\"accel\": \"emu\", \"personality\": \"hyperv\", \"debug_exit\": true}", 204);
	ok(!strcmp(cfg.accel, "emu") && cfg.personality == 1 && cfg.debug_exit && cfg.cpus == 2,
	   "... set, the vCPUs kept");
	expect_put("machine-config: irqchip user", "/vm/machine-config", NULL, "{\"irqchip\": \"user\"}", 204);
	ok(!strcmp(cfg.irqchip, "user"), "... set (%s)", cfg.irqchip);
	expect_put("machine-config: irqchip bogus", "/vm/machine-config", NULL, "{\"irqchip\": \"bogus\"}", 400);
	ok(!strcmp(err, "irqchip 'bogus': expected split or user"), "... with its line (%s)", err);
	expect_put("machine-config: irqchip split with accel emu", "/vm/machine-config", NULL,
		   "{\"irqchip\": \"split\"}", 400);
	ok(strstr(err, "irqchip split: the emu engine has no in-kernel LAPIC") && !strcmp(cfg.irqchip, "user"),
	   "... with its line, nothing changed (%s)", err);
	expect_put("machine-config: irqchip split with personality hyperv", "/vm/machine-config", NULL,
		   "{\"irqchip\": \"split\", \"accel\": \"auto\"}", 400);
	ok(strstr(err, "irqchip split: personality hyperv keeps the LAPICs in accord") != NULL, "... with its line (%s)",
	   err);
	expect_put("machine-config: irqchip split with accel auto (decided at the start)", "/vm/machine-config", NULL,
		   "{\"irqchip\": \"split\", \"accel\": \"auto\", \"personality\": \"kvm\"}", 204);
	ok(!strcmp(cfg.irqchip, "split") && !strcmp(cfg.accel, "auto"), "... set");
	expect_put("machine-config: accel emu under irqchip split", "/vm/machine-config", NULL,
		   "{\"accel\": \"emu\"}", 400);
	expect_put("machine-config: irqchip 7", "/vm/machine-config", NULL, "{\"irqchip\": 7}", 400);
	expect_put("machine-config: back to emu, hyperv, irqchip auto", "/vm/machine-config", NULL,
		   "{\"accel\": \"emu\", \"personality\": \"hyperv\", \"irqchip\": \"auto\"}", 204);
	expect_put("machine-config: {} changes nothing", "/vm/machine-config", NULL, "{}", 204);
	expect_put("machine-config: 0 vCPUs", "/vm/machine-config", NULL, "{\"vcpus\": 0}", 400);
	expect_put("machine-config: 65 vCPUs", "/vm/machine-config", NULL, "{\"vcpus\": 65}", 400);
	expect_put("machine-config: huge vCPUs", "/vm/machine-config", NULL, "{\"vcpus\": 4294967298}", 400);
	expect_put("machine-config: 15 MiB", "/vm/machine-config", NULL, "{\"memory_mib\": 15}", 400);
	expect_put("machine-config: 2^62 MiB", "/vm/machine-config", NULL, "{\"memory_mib\": 4611686018427387904}", 400);
	expect_put("machine-config: a good vcpus with a bad memory", "/vm/machine-config", NULL,
		   "{\"vcpus\": 4, \"memory_mib\": 1}", 400);
	ok(cfg.cpus == 2 && cfg.memory == 256ull << 20, "... changed nothing");
	expect_put("machine-config: vcpus null is absent", "/vm/machine-config", NULL, "{\"vcpus\": null}", 204);
	expect_put("machine-config: vcpus true", "/vm/machine-config", NULL, "{\"vcpus\": true}", 400);
	expect_put("machine-config: accel 'kvm '", "/vm/machine-config", NULL, "{\"accel\": \"kvm \"}", 400);
	expect_put("machine-config: accel with a NUL", "/vm/machine-config", NULL, "{\"accel\": \"emu\\u0000\"}", 400);
	expect_put("machine-config: debug_exit 1", "/vm/machine-config", NULL, "{\"debug_exit\": 1}", 400);
	expect_put("machine-config: an array", "/vm/machine-config", NULL, "[2]", 400);
	expect_put("machine-config: two objects", "/vm/machine-config", NULL, "{}{}", 400);
	expect_put("machine-config: empty body", "/vm/machine-config", NULL, "", 400);

	snprintf(body, sizeof(body), "{\"kernel\": \"%s\", \"cmdline\": \"console=ttyS0\"}", kernel);
	expect_put("boot-source: a Multiboot kernel", "/vm/boot-source", NULL, body, 204);
	ok(cfg.kernel && !strcmp(cfg.kernel, kernel) && !cfg.initrd && !strcmp(cfg.cmdline, "console=ttyS0"),
	   "... set");
	snprintf(body, sizeof(body), "{\"kernel\": \"%s/none\"}", dir);
	expect_put("boot-source: a missing kernel", "/vm/boot-source", NULL, body, 400);
	char want[256];
	snprintf(want, sizeof(want), "kernel %s/none: No such file or directory", dir);
	ok(!strcmp(err, want), "... with the loader's line: %s", err);
	snprintf(body, sizeof(body), "{\"kernel\": \"%s\"}", dir);
	expect_put("boot-source: a directory", "/vm/boot-source", NULL, body, 400);
	snprintf(body, sizeof(body), "{\"kernel\": \"%s\", \"initrd\": \"%s/none\"}", kernel, dir);
	expect_put("boot-source: a missing initrd", "/vm/boot-source", NULL, body, 400);
	ok(cfg.kernel && !strcmp(cfg.kernel, kernel) && !strcmp(cfg.cmdline, "console=ttyS0"),
	   "... the boot source kept");
	expect_put("boot-source: no kernel", "/vm/boot-source", NULL, "{\"initrd\": \"x\"}", 400);

	snprintf(body, sizeof(body), "{\"path\": \"%s\", \"read_only\": true}", disk_file);
	expect_put("drives/root", "/vm/drives/{id}", "root", body, 204);
	snprintf(body, sizeof(body), "{\"path\": \"%s\"}", disk_file);
	expect_put("drives/root again, writable", "/vm/drives/{id}", "root", body, 204);
	ok(cfg.ndisks == 1 && !strcmp(cfg.disk[0].id, "root") && !cfg.disk[0].ro, "... replaced, not added");
	snprintf(body, sizeof(body), "{\"path\": \"%s/none\"}", dir);
	expect_put("drives: a missing file", "/vm/drives/{id}", "data", body, 400);
	snprintf(want, sizeof(want), "--disk %s/none: No such file or directory", dir);
	ok(!strcmp(err, want) && cfg.ndisks == 1, "... with --disk's line: %s", err);
	snprintf(body, sizeof(body), "{\"path\": \"%s\"}", disk_file);
	expect_put("drives: no id", "/vm/drives/{id}", NULL, body, 400);
	expect_put("drives: an empty id", "/vm/drives/{id}", "", body, 400);
	expect_put("drives: an id starting with a dot", "/vm/drives/{id}", "..", body, 400);
	expect_put("drives: an id with a space", "/vm/drives/{id}", "a b", body, 400);
	char id[80];
	memset(id, 'a', 65);
	id[65] = 0;
	expect_put("drives: a 65-byte id", "/vm/drives/{id}", id, body, 400);
	int added = 0;
	for (int i = 0; i < 20; i++) {
		snprintf(id, sizeof(id), "d%d", i);
		added += put("/vm/drives/{id}", id, body) == 204;
	}
	ok(added == 15 && cfg.ndisks == 16 && err[0], "drives: 16 at most (%d more added, then: %s)", added, err);

	expect_put("network-interfaces: user with forwards and a MAC", "/vm/network-interfaces/{id}", "eth0",
		   "{\"backend\": \"user\", \"mac\": \"52:54:00:00:00:01\", "
		   "\"hostfwd\": [\"tcp::2222-:22\", \"udp:127.0.0.1:5353-10.0.2.15:53\"]}", 204);
	ok(cfg.nnics == 1 && cfg.nic[0].net.kind == NET_USER && cfg.nic[0].net.has_mac &&
		   cfg.nic[0].net.mac[5] == 1 && cfg.nic[0].net.nfwd == 2 && cfg.nic[0].net.fwd[1].udp &&
		   cfg.nic[0].net.fwd[1].host_port == 5353,
	   "... set");
	expect_put("network-interfaces: tap", "/vm/network-interfaces/{id}", "eth1",
		   "{\"backend\": \"tap\", \"tap\": \"tap0\"}", 204);
	ok(cfg.nnics == 2 && cfg.nic[1].net.kind == NET_TAP && !strcmp(cfg.nic[1].net.ifname, "tap0"), "... set");
	expect_put("network-interfaces: a 16-byte tap name", "/vm/network-interfaces/{id}", "eth2",
		   "{\"backend\": \"tap\", \"tap\": \"0123456789abcdef\"}", 400);
	expect_put("network-interfaces: tap with a slash", "/vm/network-interfaces/{id}", "eth2",
		   "{\"backend\": \"tap\", \"tap\": \"a/b\"}", 400);
	expect_put("network-interfaces: tap name on user", "/vm/network-interfaces/{id}", "eth2",
		   "{\"backend\": \"user\", \"tap\": \"tap0\"}", 400);
	expect_put("network-interfaces: a short MAC", "/vm/network-interfaces/{id}", "eth2",
		   "{\"backend\": \"user\", \"mac\": \"52:54:00:00:01\"}", 400);
	expect_put("network-interfaces: port 0", "/vm/network-interfaces/{id}", "eth2",
		   "{\"backend\": \"user\", \"hostfwd\": [\"tcp::0-:22\"]}", 400);
	expect_put("network-interfaces: 17 forwards", "/vm/network-interfaces/{id}", "eth2",
		   "{\"backend\": \"user\", \"hostfwd\": [\"tcp::1-:1\", \"tcp::2-:1\", \"tcp::3-:1\", "
		   "\"tcp::4-:1\", \"tcp::5-:1\", \"tcp::6-:1\", \"tcp::7-:1\", \"tcp::8-:1\", \"tcp::9-:1\", "
		   "\"tcp::10-:1\", \"tcp::11-:1\", \"tcp::12-:1\", \"tcp::13-:1\", \"tcp::14-:1\", "
		   "\"tcp::15-:1\", \"tcp::16-:1\", \"tcp::17-:1\"]}", 400);
	expect_put("network-interfaces: hostfwd not an array", "/vm/network-interfaces/{id}", "eth2",
		   "{\"backend\": \"user\", \"hostfwd\": \"tcp::1-:1\"}", 400);
	expect_put("network-interfaces: no backend", "/vm/network-interfaces/{id}", "eth2", "{}", 400);
	ok(cfg.nnics == 2, "... none added");
	put("/vm/network-interfaces/{id}", "eth2", "{\"backend\": \"user\"}");
	put("/vm/network-interfaces/{id}", "eth3", "{\"backend\": \"user\"}");
	expect_put("network-interfaces: a fifth", "/vm/network-interfaces/{id}", "eth4", "{\"backend\": \"user\"}",
		   400);
	ok(cfg.nnics == 4, "... 4 at most");

	expect_put("rng on", "/vm/rng", NULL, "{\"enabled\": true}", 204);
	ok(cfg.rng, "... set");
	expect_put("rng: enabled a string", "/vm/rng", NULL, "{\"enabled\": \"yes\"}", 400);
	expect_put("console virtio", "/vm/console", NULL, "{\"kind\": \"virtio\"}", 204);
	ok(cfg.virtio_console, "... set");
	expect_put("console: hvc0", "/vm/console", NULL, "{\"kind\": \"hvc0\"}", 400);
	expect_put("an unknown route", "/vm/balloon", NULL, "{}", 404);
}

static void expect_remove(const char *what, const char *path, const char *id, size_t body_len, int status)
{
	err[0] = 0;
	int r = api_remove(&cfg, path, id, body_len, err, sizeof(err));
	ok(r == status && (status == 204 || err[0]), "%s: %d (got %d: %s)", what, status, r, err);
}

/* DELETE on the routes with an id, on what configure() left: drives root,
 * d0..d14 and interfaces eth0..eth3 */
static void removing(void)
{
	char body[512];

	ok(cfg.ndisks == 16 && cfg.nnics == 4, "16 drives and 4 interfaces to remove from");
	expect_remove("DELETE drives/d3", "/vm/drives/{id}", "d3", 0, 204);
	bool order = cfg.ndisks == 15 && !strcmp(cfg.disk[0].id, "root");
	for (int i = 1; i < cfg.ndisks; i++) {
		char want[16];
		snprintf(want, sizeof(want), "d%d", i < 4 ? i - 1 : i);
		order &= !strcmp(cfg.disk[i].id, want) && cfg.disk[i].path;
	}
	ok(order, "... gone, the others in their order");
	expect_remove("DELETE drives/d3 again", "/vm/drives/{id}", "d3", 0, 404);
	ok(!strcmp(err, "no drive 'd3'"), "... says so: %s", err);
	expect_remove("DELETE drives with a body", "/vm/drives/{id}", "d4", 2, 400);
	expect_remove("DELETE drives: an id starting with a dot", "/vm/drives/{id}", ".d4", 0, 400);
	expect_remove("DELETE drives: no id", "/vm/drives/{id}", NULL, 0, 400);
	ok(cfg.ndisks == 15, "... none of them removed anything");
	snprintf(body, sizeof(body), "{\"path\": \"%s\"}", disk_file);
	expect_put("a drive again where one was removed", "/vm/drives/{id}", "new", body, 204);
	ok(cfg.ndisks == 16 && !strcmp(cfg.disk[15].id, "new"), "... added last");
	for (int i = cfg.ndisks - 1; i >= 0; i--) {
		char id[MACHINE_ID_MAX + 1];
		snprintf(id, sizeof(id), "%s", cfg.disk[i].id);
		api_remove(&cfg, "/vm/drives/{id}", id, 0, err, sizeof(err));
	}
	ok(cfg.ndisks == 0, "every drive removed, one by one from the last");

	expect_remove("DELETE network-interfaces/eth1", "/vm/network-interfaces/{id}", "eth1", 0, 204);
	ok(cfg.nnics == 3 && !strcmp(cfg.nic[0].id, "eth0") && !strcmp(cfg.nic[1].id, "eth2") &&
		   !strcmp(cfg.nic[2].id, "eth3") && cfg.nic[0].net.nfwd == 2 && cfg.nic[0].net.fwd[1].host_port == 5353,
	   "... gone, the others as they were");
	expect_remove("DELETE network-interfaces/eth9", "/vm/network-interfaces/{id}", "eth9", 0, 404);
	ok(!strcmp(err, "no network interface 'eth9'"), "... says so: %s", err);
	expect_put("a fourth interface again", "/vm/network-interfaces/{id}", "eth5", "{\"backend\": \"user\"}", 204);
	ok(cfg.nnics == 4, "... 4 again");
	expect_remove("DELETE of a route without an id", "/vm/rng", NULL, 0, 404);
}

static bool config_sane(void)
{
	bool sane = cfg.cpus >= 1 && cfg.cpus <= 64 && cfg.memory >= MACHINE_MIN_MEMORY && !(cfg.memory & 0xfff) &&
		    cfg.ndisks <= MACHINE_MAX_DISKS && cfg.nnics <= MACHINE_MAX_NICS &&
		    (!strcmp(cfg.accel, "auto") || !strcmp(cfg.accel, "emu") || !strcmp(cfg.accel, "kvm"));
	for (int i = 0; i < cfg.ndisks; i++)
		sane &= cfg.disk[i].path && machine_id_ok(cfg.disk[i].id);
	for (int i = 0; i < cfg.nnics; i++)
		sane &= machine_id_ok(cfg.nic[i].id) && cfg.nic[i].net.nfwd <= NET_MAX_HOSTFWD;
	return sane;
}

/* random mutations of good bodies and random bytes on every route: only
 * 204 or 400, and a configuration that stays within its bounds */
static void configure_random(void)
{
	static const char *const paths[] = { "/vm/machine-config", "/vm/boot-source", "/vm/drives/{id}",
					     "/vm/network-interfaces/{id}", "/vm/rng", "/vm/console" };
	char bodies[6][256];
	snprintf(bodies[0], 256, "{\"vcpus\": 3, \"memory_mib\": 64, \"accel\": \"emu\", \"debug_exit\": false}");
	snprintf(bodies[1], 256, "{\"kernel\": \"%s\", \"initrd\": null, \"cmdline\": \"a b\"}", kernel);
	snprintf(bodies[2], 256, "{\"path\": \"%s\", \"read_only\": true}", disk_file);
	snprintf(bodies[3], 256, "{\"backend\": \"user\", \"mac\": \"52:54:00:00:00:09\", \"hostfwd\": [\"tcp::80-:8080\"]}");
	snprintf(bodies[4], 256, "{\"enabled\": false}");
	snprintf(bodies[5], 256, "{\"kind\": \"serial\"}");
	static const char json_bytes[] = "0123456789{}[]\",:tfn-. ";
	char buf[300], id[8];
	int bad = 0, accepted = 0, removed = 0;
	srand(9);
	machine_config_free(&cfg);
	for (int i = 0; i < 60000; i++) {
		int r = rand() % 6;
		size_t len;
		if (i % 5 == 4) {
			len = (size_t)rand() % 64;
			for (size_t j = 0; j < len; j++)
				buf[j] = (char)rand();
		} else {
			len = strlen(bodies[r]);
			memcpy(buf, bodies[r], len);
			for (int k = rand() % 4; k > 0; k--)
				buf[rand() % len] = (char)(i % 3 ? json_bytes[rand() % (sizeof(json_bytes) - 1)] : rand());
			len -= (size_t)(rand() % 4 == 0) * ((size_t)rand() % 6);
		}
		snprintf(id, sizeof(id), "x%d", rand() % 24);
		err[0] = 0;
		/* now and then a DELETE of a drive or an interface */
		if (i % 7 == 6) {
			int st = api_remove(&cfg, paths[2 + rand() % 2], id, 0, err, sizeof(err));
			removed += st == 204;
			if ((st != 204 && st != 404) || (st == 404 && !err[0]) || !config_sane())
				bad++;
			continue;
		}
		int st = api_configure(&cfg, paths[r], id, buf, len, err, sizeof(err));
		accepted += st == 204;
		if ((st != 204 && st != 400) || (st == 400 && !err[0]) || !config_sane())
			bad++;
	}
	ok(bad == 0 && accepted > 5000 && removed > 500,
	   "60000 random and mutated pre-boot bodies and DELETEs: 204, 400 or 404 with a reason, the "
	   "configuration within bounds (%d bad, %d accepted, %d removed)", bad, accepted, removed);
}

int main(void)
{
	good_requests();
	bad_requests();
	random_input();
	responses();
	action_bodies();
	kvp_bodies();
	if (!mkdtemp(dir)) {
		ok(false, "mkdtemp");
	} else {
		write_kernel();
		configure();
		removing();
		configure_random();
		machine_config_free(&cfg);
		unlink(kernel);
		unlink(disk_file);
		rmdir(dir);
	}
	printf("1..%d\n%d passed, %d failed\n", n_test, n_pass, n_fail);
	return n_fail ? 1 : 0;
}
