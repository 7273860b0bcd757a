/* The control API's request parsing (src/api/http.c, api_parse_action and
 * api_configure in src/api/server.c): the input is what a client wrote on
 * the socket. It is parsed request by request as the server does with
 * pipelined requests; the body of each complete one goes to the JSON
 * action parser, and to the pre-boot route its path names, applied to one
 * configuration that lives across inputs. A request never claims more
 * bytes than it was given, its body lies inside it, an error is always a
 * 4xx or 5xx with a message, and the configuration stays within its
 * bounds. */
#include "api/http.h"
#include "api/internal.h"
#include "fuzz.h"
#include "vm/machine.h"

static struct machine_config cfg;

static void fuzz_init(void)
{
	machine_config_init(&cfg);
}

/* the pre-boot route a request's path names: the route and its {id} */
static void configure(const char *path, const char *body, size_t len)
{
	static const char *const with_id[] = { "/vm/drives/", "/vm/network-interfaces/" };
	char route[HTTP_MAX_PATH], err[512] = "";
	const char *id = NULL;

	snprintf(route, sizeof(route), "%s", path);
	for (size_t i = 0; i < sizeof(with_id) / sizeof(with_id[0]); i++) {
		size_t n = strlen(with_id[i]);
		if (!strncmp(path, with_id[i], n)) {
			snprintf(route, sizeof(route), "%s{id}", with_id[i]);
			id = path + n;
		}
	}
	int st = api_configure(&cfg, route, id, body, len, err, sizeof(err));
	if ((st != 204 && st != 400 && st != 404) || (st != 204 && !err[0]))
		abort();
	if (cfg.cpus < 1 || cfg.cpus > 64 || cfg.memory < MACHINE_MIN_MEMORY || cfg.ndisks > MACHINE_MAX_DISKS ||
	    cfg.nnics > MACHINE_MAX_NICS)
		abort();
	for (int i = 0; i < cfg.ndisks; i++)
		if (!cfg.disk[i].path || !machine_id_ok(cfg.disk[i].id))
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a copy of exactly size bytes, so that ASan sees any read past it */
	char *buf = malloc(size ? size : 1);
	size_t off = 0;

	memcpy(buf, data, size);
	while (off < size) {
		struct http_request req;
		char err[256] = "";
		int r = http_parse(buf + off, size - off, &req, err, sizeof(err));

		if (r < 0) {
			if (-r < 400 || -r > 599 || !err[0])
				abort();
			break;
		}
		if (r == 0)
			break;
		if ((size_t)r > size - off || req.body < buf + off || req.body + req.body_len > buf + off + r ||
		    req.body_len > HTTP_MAX_BODY)
			abort();
		if (!api_parse_action(req.body, req.body_len, err, sizeof(err)) && !err[0])
			abort();
		configure(req.path, req.body, req.body_len);
		off += r;
	}
	free(buf);
	return 0;
}

static void api_seed(const char *name, const char *s)
{
	fuzz_seed(name, s, strlen(s));
}

static void fuzz_seeds(void)
{
	api_seed("get-vm", "GET /vm HTTP/1.1\r\nHost: x\r\n\r\n");
	api_seed("get-config-1.0", "GET /vm/config?x=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	api_seed("get-counters-lf", "GET /vm/counters HTTP/1.1\nHost: x\n\n");
	api_seed("pause", "PUT /vm/actions HTTP/1.1\r\nContent-Length: 18\r\n\r\n{\"action\":\"pause\"}");
	api_seed("stop-close", "PUT /vm/actions HTTP/1.1\r\nConnection: close\r\nContent-Length: 21\r\n\r\n"
			       "{ \"action\" : \"stop\" }");
	api_seed("two-lengths", "PUT /vm/actions HTTP/1.1\r\nContent-Length: 19\r\ncontent-length: 19\r\n\r\n"
				"{\"action\":\"reset\"}\n");
	api_seed("pipelined", "GET /vm HTTP/1.1\r\n\r\nPUT /vm/actions HTTP/1.1\r\nContent-Length: 19\r\n\r\n"
			      "{\"action\":\"resume\"}GET /vm/counters HTTP/1.1\r\n\r\n");
	api_seed("json-odd", "PUT /vm/actions HTTP/1.1\r\nContent-Length: 44\r\n\r\n"
			     "{\"action\":\"pa\\u0075se\",\"x\":[1,2.5e3,null,{}]}");
	api_seed("chunked", "PUT /vm/actions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
	api_seed("incomplete", "PUT /vm/actions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"act");
	api_seed("machine-config", "PUT /vm/machine-config HTTP/1.1\r\nContent-Length: 60\r\n\r\n"
				   "{\"vcpus\":2,\"memory_mib\":256,\"accel\":\"emu\",\"debug_exit\":true}");
	/* files that are there when the smoke test runs (from the top of the
	 * tree, after make tests): a kernel, a file for a disk */
	api_seed("boot-source", "PUT /vm/boot-source HTTP/1.1\r\nContent-Length: 67\r\n\r\n"
				"{\"kernel\":\"build/api-guest/ticker.elf\",\"initrd\":null,\"cmdline\":\"a\"}");
	api_seed("drive", "PUT /vm/drives/root HTTP/1.1\r\nContent-Length: 44\r\n\r\n"
			  "{\"path\":\"tests/fuzz/api.c\",\"read_only\":true}");
	api_seed("nic", "PUT /vm/network-interfaces/eth0 HTTP/1.1\r\nContent-Length: 72\r\n\r\n"
			"{\"backend\":\"user\",\"mac\":\"52:54:00:00:00:01\",\"hostfwd\":[\"tcp::2222-:22\"]}");
	api_seed("tap", "PUT /vm/network-interfaces/n1 HTTP/1.1\r\nContent-Length: 28\r\n\r\n"
			"{\"backend\":\"tap\",\"tap\":\"t0\"}");
	api_seed("rng-console", "PUT /vm/rng HTTP/1.1\r\nContent-Length: 16\r\n\r\n{\"enabled\":true}"
				"PUT /vm/console HTTP/1.1\r\nContent-Length: 17\r\n\r\n{\"kind\":\"virtio\"}");
}
