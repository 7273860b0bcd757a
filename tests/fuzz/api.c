/* The control API's request parsing (src/api/http.c, api_parse_action in
 * src/api/server.c): the input is what a client wrote on the socket. It is
 * parsed request by request as the server does with pipelined requests;
 * the body of each complete one goes to the JSON action parser. A request
 * never claims more bytes than it was given, its body lies inside it, and
 * an error is always a 4xx or 5xx with a message. */
#include "api/http.h"
#include "api/internal.h"
#include "fuzz.h"

static void fuzz_init(void)
{
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
}
