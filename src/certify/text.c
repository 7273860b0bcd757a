/* Guest output is untrusted: it may hold any bytes. sanitize() turns it into
 * valid, printable UTF-8 (what JSON needs and what XML 1.0 allows), showing
 * every byte it cannot keep as the text \xNN; the writers then escape what
 * their format reserves. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "certify/internal.h"

/* length of the valid UTF-8 sequence at s (1..4), or 0 */
static size_t utf8_len(const unsigned char *s, size_t n, uint32_t *cp)
{
	unsigned char c = s[0];
	size_t len;
	uint32_t v, min;

	if (c < 0x80) {
		*cp = c;
		return 1;
	} else if ((c & 0xe0) == 0xc0) {
		len = 2, v = c & 0x1f, min = 0x80;
	} else if ((c & 0xf0) == 0xe0) {
		len = 3, v = c & 0x0f, min = 0x800;
	} else if ((c & 0xf8) == 0xf0) {
		len = 4, v = c & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = v << 6 | (s[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return len;
}

char *sanitize(const char *s, size_t n)
{
	/* each byte becomes at most 6 ("\u0085" style or "\xNN") */
	char *out = malloc(n * 6 + 1), *p = out;
	const unsigned char *u = (const unsigned char *)s;

	if (!out)
		abort();
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t len = utf8_len(u + i, n - i, &cp);
		if (!len) {
			p += sprintf(p, "\\x%02x", u[i]);
			i++;
		} else if (cp == '\t') {
			*p++ = ' ';
			i++;
		} else if ((cp < 0x20 && cp != '\n') || cp == 0x7f) {
			p += sprintf(p, "\\x%02x", cp);
			i++;
		} else if ((cp >= 0x80 && cp <= 0x9f) || cp == 0xfffe || cp == 0xffff) {
			p += sprintf(p, "\\u%04x", cp);
			i += len;
		} else {
			memcpy(p, u + i, len);
			p += len;
			i += len;
		}
	}
	*p = 0;
	return out;
}

void put_json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else if (c == '<')	/* safe to embed in a <script> block */
			fputs("\\u003c", f);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

void put_xml(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		switch (*s) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&#39;", f); break;
		case '\n': fputs("&#10;", f); break;
		default: fputc(*s, f);
		}
	}
}
