/* HTTP/1.1 request parsing for the control API. Strict where leniency
 * would let two parsers disagree on where a request ends (Content-Length
 * twice, Transfer-Encoding, folded headers), lenient on a bare LF as the
 * line end, which curl never sends but people typing into socat do. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api/http.h"

static int fail(char *err, size_t errlen, int status, const char *why)
{
	snprintf(err, errlen, "%s", why);
	return -status;
}

/* RFC 9110 token characters */
static bool is_tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* the end of the head (just past its blank line), or 0 if not in buf */
static size_t head_end(const char *buf, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (buf[i + 1] == '\n')
			return i + 2;
		if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* one line of the head: [p, eol) without its CR LF; returns the next line */
static const char *next_line(const char *p, const char *end, const char **eol)
{
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	*eol = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
	return nl + 1;
}

static bool token_eq(const char *p, size_t n, const char *word)
{
	return strlen(word) == n && !strncasecmp(p, word, n);
}

static int parse_request_line(const char *p, const char *eol, struct http_request *req, int *minor, char *err,
			      size_t errlen)
{
	const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
	if (!sp1 || sp1 == p)
		return fail(err, errlen, 400, "malformed request line");
	size_t mlen = (size_t)(sp1 - p);
	if (mlen >= sizeof(req->method))
		return fail(err, errlen, 501, "unknown method");
	for (size_t i = 0; i < mlen; i++)
		if (!is_tchar(p[i]))
			return fail(err, errlen, 400, "malformed method");
	memcpy(req->method, p, mlen);
	req->method[mlen] = 0;

	const char *t = sp1 + 1;
	const char *sp2 = memchr(t, ' ', (size_t)(eol - t));
	if (!sp2 || sp2 == t || *t != '/')
		return fail(err, errlen, 400, "the request target must be an absolute path");
	size_t tlen = (size_t)(sp2 - t);
	for (size_t i = 0; i < tlen; i++)
		if ((unsigned char)t[i] <= ' ' || (unsigned char)t[i] >= 0x7f)
			return fail(err, errlen, 400, "control or non-ASCII byte in the request target");
	/* the query string is not part of the route */
	const char *q = memchr(t, '?', tlen);
	if (q)
		tlen = (size_t)(q - t);
	if (tlen >= sizeof(req->path))
		return fail(err, errlen, 414, "request target too long");
	memcpy(req->path, t, tlen);
	req->path[tlen] = 0;

	const char *v = sp2 + 1;
	size_t vlen = (size_t)(eol - v);
	if (vlen != 8 || strncmp(v, "HTTP/", 5) || v[5] < '0' || v[5] > '9' || v[6] != '.' || v[7] < '0' ||
	    v[7] > '9')
		return fail(err, errlen, 400, "malformed HTTP version");
	if (v[5] != '1')
		return fail(err, errlen, 505, "only HTTP/1.x is spoken here");
	*minor = v[7] - '0';
	return 0;
}

int http_parse(const char *buf, size_t len, struct http_request *req, char *err, size_t errlen)
{
	size_t hlen = head_end(buf, len < HTTP_MAX_HEAD ? len : HTTP_MAX_HEAD);
	if (!hlen) {
		/* a request line never starts with white space or a control */
		if (len > 0 && !is_tchar(buf[0]))
			return fail(err, errlen, 400, "malformed request line");
		if (len >= HTTP_MAX_HEAD)
			return fail(err, errlen, 431, "request head larger than 8 KiB");
		return 0;
	}
	memset(req, 0, sizeof(*req));
	const char *end = buf + hlen, *eol;
	const char *p = next_line(buf, end, &eol);
	int minor;
	int rc = parse_request_line(buf, eol, req, &minor, err, errlen);
	if (rc < 0)
		return rc;
	req->keep_alive = minor >= 1;

	bool have_length = false;
	unsigned long long length = 0;
	for (;;) {
		const char *line = p;
		p = next_line(line, end, &eol);
		if (eol == line)
			break; /* the blank line */
		if (*line == ' ' || *line == '\t')
			return fail(err, errlen, 400, "folded header lines are not accepted");
		const char *colon = memchr(line, ':', (size_t)(eol - line));
		if (!colon || colon == line)
			return fail(err, errlen, 400, "malformed header line");
		for (const char *c = line; c < colon; c++)
			if (!is_tchar(*c))
				return fail(err, errlen, 400, "malformed header name");
		const char *val = colon + 1, *vend = eol;
		while (val < vend && (*val == ' ' || *val == '\t'))
			val++;
		while (vend > val && (vend[-1] == ' ' || vend[-1] == '\t'))
			vend--;
		for (const char *c = val; c < vend; c++)
			if ((unsigned char)*c < ' ' && *c != '\t')
				return fail(err, errlen, 400, "control character in a header value");
		size_t nlen = (size_t)(colon - line), vlen = (size_t)(vend - val);

		if (token_eq(line, nlen, "content-length")) {
			unsigned long long n = 0;
			if (vlen == 0 || vlen > 12)
				return fail(err, errlen, vlen ? 413 : 400,
					    vlen ? "request body too large" : "empty Content-Length");
			for (size_t i = 0; i < vlen; i++) {
				if (val[i] < '0' || val[i] > '9')
					return fail(err, errlen, 400, "Content-Length is not a number");
				n = n * 10 + (unsigned)(val[i] - '0');
			}
			if (have_length && n != length)
				return fail(err, errlen, 400, "conflicting Content-Length headers");
			have_length = true;
			length = n;
		} else if (token_eq(line, nlen, "transfer-encoding")) {
			return fail(err, errlen, 501, "Transfer-Encoding is not supported; send Content-Length");
		} else if (token_eq(line, nlen, "connection")) {
			if (token_eq(val, vlen, "close"))
				req->keep_alive = false;
			else if (token_eq(val, vlen, "keep-alive"))
				req->keep_alive = true;
		}
	}
	if (length > HTTP_MAX_BODY)
		return fail(err, errlen, 413, "request body larger than 16 KiB");
	if (len - hlen < length)
		return 0;
	req->body = buf + hlen;
	req->body_len = (size_t)length;
	return (int)(hlen + length);
}

const char *http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

int http_response_head(char *out, size_t outlen, int status, const char *content_type, size_t body_len,
		       bool keep_alive)
{
	int n = snprintf(out, outlen,
			 "HTTP/1.1 %d %s\r\n"
			 "Server: accord\r\n"
			 "%s%s%s"
			 "Content-Length: %zu\r\n"
			 "Connection: %s\r\n"
			 "\r\n",
			 status, http_reason(status), content_type ? "Content-Type: " : "",
			 content_type ? content_type : "", content_type ? "\r\n" : "", body_len,
			 keep_alive ? "keep-alive" : "close");
	return n < 0 || (size_t)n >= outlen ? -1 : n;
}
