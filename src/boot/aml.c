/* AML encoding (ACPI 6.x, chapter 20, "ACPI Machine Language
 * Specification"). */
#include <stdlib.h>
#include <string.h>

#include "boot/aml.h"

#define AML_ZERO 0x00
#define AML_ONE 0x01
#define AML_ONES 0xFF
#define AML_BYTE_PREFIX 0x0A
#define AML_WORD_PREFIX 0x0B
#define AML_DWORD_PREFIX 0x0C
#define AML_STRING_PREFIX 0x0D
#define AML_QWORD_PREFIX 0x0E
#define AML_NAME_OP 0x08
#define AML_SCOPE_OP 0x10
#define AML_BUFFER_OP 0x11
#define AML_PACKAGE_OP 0x12
#define AML_METHOD_OP 0x14
#define AML_RETURN_OP 0xA4
#define AML_EXT_OP 0x5B
#define AML_DEVICE_OP 0x82 /* after AML_EXT_OP */
#define AML_DUAL_NAME 0x2E
#define AML_MULTI_NAME 0x2F

enum { OPEN_PKG, OPEN_BUFFER };

void aml_init(struct aml *a)
{
	memset(a, 0, sizeof(*a));
}

void aml_free(struct aml *a)
{
	free(a->buf);
	aml_init(a);
}

bool aml_ok(const struct aml *a)
{
	return !a->err && !a->depth;
}

static bool aml_reserve(struct aml *a, size_t n)
{
	size_t cap = a->cap ? a->cap : 256;
	uint8_t *p;

	if (a->err)
		return false;
	if (a->len + n <= a->cap)
		return true;
	while (cap < a->len + n)
		cap *= 2;
	p = realloc(a->buf, cap);
	if (!p) {
		a->err = true;
		return false;
	}
	a->buf = p;
	a->cap = cap;
	return true;
}

void aml_bytes(struct aml *a, const void *p, size_t n)
{
	if (!aml_reserve(a, n))
		return;
	memcpy(a->buf + a->len, p, n);
	a->len += n;
}

void aml_byte(struct aml *a, uint8_t b)
{
	aml_bytes(a, &b, 1);
}

static void aml_insert(struct aml *a, size_t at, const uint8_t *p, size_t n)
{
	if (!aml_reserve(a, n))
		return;
	memmove(a->buf + at + n, a->buf + at, a->len - at);
	memcpy(a->buf + at, p, n);
	a->len += n;
}

static size_t le_bytes(uint8_t *out, uint64_t v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		out[i] = v >> (8 * i);
	return n;
}

static size_t integer_encode(uint8_t *out, uint64_t v)
{
	if (v == 0 || v == 1 || v == UINT64_MAX) {
		out[0] = v == 0 ? AML_ZERO : v == 1 ? AML_ONE : AML_ONES;
		return 1;
	}
	if (v <= 0xFF)
		out[0] = AML_BYTE_PREFIX;
	else if (v <= 0xFFFF)
		out[0] = AML_WORD_PREFIX;
	else if (v <= 0xFFFFFFFF)
		out[0] = AML_DWORD_PREFIX;
	else
		out[0] = AML_QWORD_PREFIX;
	return 1 + le_bytes(out + 1, v, v <= 0xFF ? 1 : v <= 0xFFFF ? 2 : v <= 0xFFFFFFFF ? 4 : 8);
}

/* PkgLength counts its own bytes: one byte up to 63, else a lead byte with
 * the low nibble and the count of following bytes, which hold the rest. */
static size_t pkglen_encode(uint8_t *out, size_t body)
{
	size_t n, i;

	if (body + 1 <= 0x3F) {
		out[0] = body + 1;
		return 1;
	}
	for (n = 2; n <= 4; n++) {
		size_t total = body + n;

		if (total >> (4 + 8 * (n - 1)))
			continue;
		out[0] = (n - 1) << 6 | (total & 0xF);
		for (i = 1; i < n; i++)
			out[i] = total >> (4 + 8 * (i - 1));
		return n;
	}
	return 0;
}

static bool name_char(char ch, bool first)
{
	return (ch >= 'A' && ch <= 'Z') || ch == '_' || (!first && ch >= '0' && ch <= '9');
}

void aml_namestring(struct aml *a, const char *path)
{
	const char *p = path, *segs;
	unsigned n = 0;

	if (*p == '\\')
		aml_byte(a, *p++);
	else
		while (*p == '^')
			aml_byte(a, *p++);
	if (!*p) {
		aml_byte(a, 0); /* NullName */
		return;
	}
	segs = p;
	for (;;) {
		size_t l = 0;

		while (p[l] && p[l] != '.') {
			if (!name_char(p[l], l == 0)) {
				a->err = true;
				return;
			}
			l++;
		}
		if (l == 0 || l > 4 || ++n > 255) {
			a->err = true;
			return;
		}
		p += l;
		if (!*p)
			break;
		p++;
	}
	if (n == 2) {
		aml_byte(a, AML_DUAL_NAME);
	} else if (n > 2) {
		aml_byte(a, AML_MULTI_NAME);
		aml_byte(a, n);
	}
	for (p = segs; *p;) {
		char seg[4] = { '_', '_', '_', '_' };
		size_t l = strcspn(p, ".");

		memcpy(seg, p, l);
		aml_bytes(a, seg, 4);
		p += l;
		if (*p)
			p++;
	}
}

void aml_integer(struct aml *a, uint64_t v)
{
	uint8_t b[9];

	aml_bytes(a, b, integer_encode(b, v));
}

void aml_string(struct aml *a, const char *s)
{
	const char *p;

	for (p = s; *p; p++)
		if ((unsigned char)*p > 0x7F)
			a->err = true;
	aml_byte(a, AML_STRING_PREFIX);
	aml_bytes(a, s, strlen(s) + 1);
}

static int hex_digit(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

void aml_eisaid(struct aml *a, const char *id)
{
	uint32_t v = 0;
	int i;

	if (strlen(id) != 7) {
		a->err = true;
		return;
	}
	/* three letters of 5 bits each, then four hex digits, big-endian */
	for (i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z') {
			a->err = true;
			return;
		}
		v = v << 5 | (id[i] - 0x40);
	}
	for (i = 3; i < 7; i++) {
		int d = hex_digit(id[i]);

		if (d < 0) {
			a->err = true;
			return;
		}
		v = v << 4 | d;
	}
	aml_byte(a, AML_DWORD_PREFIX);
	aml_byte(a, v >> 24);
	aml_byte(a, v >> 16);
	aml_byte(a, v >> 8);
	aml_byte(a, v);
}

void aml_name(struct aml *a, const char *path)
{
	aml_byte(a, AML_NAME_OP);
	aml_namestring(a, path);
}

void aml_return(struct aml *a)
{
	aml_byte(a, AML_RETURN_OP);
}

static void aml_open(struct aml *a, int kind)
{
	if (a->depth == AML_MAX_DEPTH) {
		a->err = true;
		return;
	}
	a->open[a->depth].start = a->len;
	a->open[a->depth].kind = kind;
	a->depth++;
}

void aml_scope_begin(struct aml *a, const char *path)
{
	aml_byte(a, AML_SCOPE_OP);
	aml_open(a, OPEN_PKG);
	aml_namestring(a, path);
}

void aml_device_begin(struct aml *a, const char *path)
{
	aml_byte(a, AML_EXT_OP);
	aml_byte(a, AML_DEVICE_OP);
	aml_open(a, OPEN_PKG);
	aml_namestring(a, path);
}

void aml_method_begin(struct aml *a, const char *path, unsigned nargs, bool serialized)
{
	if (nargs > 7)
		a->err = true;
	aml_byte(a, AML_METHOD_OP);
	aml_open(a, OPEN_PKG);
	aml_namestring(a, path);
	aml_byte(a, (nargs & 7) | (serialized ? 0x08 : 0));
}

void aml_package_begin(struct aml *a, unsigned n)
{
	if (n > 255)
		a->err = true;
	aml_byte(a, AML_PACKAGE_OP);
	aml_open(a, OPEN_PKG);
	aml_byte(a, n);
}

void aml_buffer_begin(struct aml *a)
{
	aml_byte(a, AML_BUFFER_OP);
	aml_open(a, OPEN_BUFFER);
}

void aml_end(struct aml *a)
{
	uint8_t head[4 + 9];
	size_t start, body, n = 0, sz = 0;
	uint8_t size[9];

	if (a->err)
		return;
	if (!a->depth) {
		a->err = true;
		return;
	}
	a->depth--;
	start = a->open[a->depth].start;
	body = a->len - start;
	if (a->open[a->depth].kind == OPEN_BUFFER)
		sz = integer_encode(size, body);
	n = pkglen_encode(head, body + sz);
	if (!n) {
		a->err = true;
		return;
	}
	memcpy(head + n, size, sz);
	aml_insert(a, start, head, n + sz);
}

void aml_res_io(struct aml *a, uint16_t base, uint8_t len)
{
	uint8_t d[8] = { 0x47, 0x01, base, base >> 8, base, base >> 8, 1, len };

	aml_bytes(a, d, sizeof(d));
}

void aml_res_irq(struct aml *a, unsigned irq)
{
	uint8_t d[3] = { 0x22, 0, 0 };

	if (irq > 15) {
		a->err = true;
		return;
	}
	d[1 + irq / 8] = 1 << (irq % 8);
	aml_bytes(a, d, sizeof(d));
}

void aml_res_mem32(struct aml *a, uint32_t base, uint32_t len, bool writable)
{
	uint8_t d[12] = { 0x86, 9, 0, writable };

	le_bytes(d + 4, base, 4);
	le_bytes(d + 8, len, 4);
	aml_bytes(a, d, sizeof(d));
}

void aml_res_space(struct aml *a, enum aml_space space, uint8_t type_flags, uint64_t min,
		   uint64_t len)
{
	uint64_t max = min + len - 1;
	uint8_t d[3 + 43];
	size_t w, n;

	if (!len || max < min) {
		a->err = true;
		return;
	}
	w = max <= 0xFFFF ? 2 : max <= 0xFFFFFFFF ? 4 : 8;
	d[0] = w == 2 ? 0x88 : w == 4 ? 0x87 : 0x8A;
	n = 3 + 3 + 5 * w; /* tag, length, type, flags, type flags, five fields */
	d[1] = n - 3;
	d[2] = 0;
	d[3] = space;
	d[4] = 0x0C; /* producer, positive decode, min and max fixed */
	d[5] = type_flags;
	le_bytes(d + 6, 0, w);           /* granularity */
	le_bytes(d + 6 + w, min, w);
	le_bytes(d + 6 + 2 * w, max, w);
	le_bytes(d + 6 + 3 * w, 0, w);   /* translation */
	le_bytes(d + 6 + 4 * w, len, w);
	aml_bytes(a, d, n);
}

void aml_res_end(struct aml *a)
{
	/* a zero checksum means "treat as valid" */
	static const uint8_t d[2] = { 0x79, 0 };

	aml_bytes(a, d, sizeof(d));
}
