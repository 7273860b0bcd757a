/* The control API's request parsing: HTTP/1.1 heads and bodies
 * (src/api/http.c) and the JSON body of PUT /vm/actions (src/api/server.c)
 * against well-formed, malformed, oversized and random input. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "api/http.h"
#include "api/internal.h"
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

int main(void)
{
	good_requests();
	bad_requests();
	random_input();
	responses();
	action_bodies();
	kvp_bodies();
	printf("1..%d\n%d passed, %d failed\n", n_test, n_pass, n_fail);
	return n_fail ? 1 : 0;
}
