/* A small HTTP/1.1 request parser and response writer for the control API
 * (api/server.c) and its clients (api/client.c). Requests are bounded: the
 * head (request line and headers) to HTTP_MAX_HEAD bytes, the body to
 * HTTP_MAX_BODY; only Content-Length bodies, no chunked encoding. */
#ifndef ACCORD_API_HTTP_H
#define ACCORD_API_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_MAX_HEAD 8192
#define HTTP_MAX_BODY 16384
#define HTTP_MAX_PATH 256

struct http_request {
	char method[16];
	char path[HTTP_MAX_PATH];
	const char *body; /* points into the parsed buffer; not NUL-terminated */
	size_t body_len;
	bool keep_alive;
};

/* Parse one request at the start of buf[0, len).
 * > 0: a whole request of that many bytes is in *req;
 * 0: incomplete, read more;
 * < 0: the request is bad; -status is the HTTP status to answer (400, 413,
 * 431, 501, 505) and err says why in one line. The connection must be
 * closed after answering: its byte stream can no longer be framed. */
int http_parse(const char *buf, size_t len, struct http_request *req, char *err, size_t errlen);

const char *http_reason(int status);

/* Format a response head for a body of body_len bytes into out; returns
 * its length, or -1 if it does not fit. */
int http_response_head(char *out, size_t outlen, int status, const char *content_type, size_t body_len,
		       bool keep_alive);

#endif
