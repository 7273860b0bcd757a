/* COM1 output and a small printf: %d %i %u %x %X %o %p %s %c %%, with the
 * flags '-', '0', '#', a width (digits or '*'), a precision for %s, and the
 * length modifiers hh, h, l, ll, z. */
#include "guest.h"

#define UART_THR 0
#define UART_IER 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_DLL 0
#define UART_DLM 1
#define LSR_THRE 0x20

void serial_init(void)
{
	outb(COM1 + UART_IER, 0);
	outb(COM1 + UART_LCR, 0x80);	/* DLAB */
	outb(COM1 + UART_DLL, 1);	/* 115200 baud */
	outb(COM1 + UART_DLM, 0);
	outb(COM1 + UART_LCR, 0x03);	/* 8N1 */
	outb(COM1 + UART_FCR, 0x07);	/* FIFO on, cleared */
	outb(COM1 + UART_MCR, 0x03);	/* DTR, RTS */
}

void putchar_serial(char c)
{
	/* bounded, so a missing UART cannot hang the kernel */
	for (int i = 0; i < 1000000; i++)
		if (inb(COM1 + UART_LSR) & LSR_THRE)
			break;
	outb(COM1 + UART_THR, c);
}

struct sink {
	char *buf;	/* NULL: the serial port */
	size_t size;
	size_t len;
};

static void emit(struct sink *s, char c)
{
	if (!s->buf)
		putchar_serial(c);
	else if (s->len + 1 < s->size)
		s->buf[s->len] = c;
	s->len++;
}

/* prefix (sign or "0x") goes before zero padding, after space padding */
static void emit_padded(struct sink *s, const char *prefix, const char *str,
			size_t n, int width, bool left, char pad)
{
	size_t np = strlen(prefix);
	int fill = width > (int)(n + np) ? width - (int)(n + np) : 0;

	if (!left && pad == ' ')
		while (fill-- > 0)
			emit(s, ' ');
	while (*prefix)
		emit(s, *prefix++);
	if (!left && pad == '0')
		while (fill-- > 0)
			emit(s, '0');
	while (n--)
		emit(s, *str++);
	if (left)
		while (fill-- > 0)
			emit(s, ' ');
}

static int format(struct sink *s, const char *fmt, va_list ap)
{
	static const char lower[] = "0123456789abcdef";
	static const char upper[] = "0123456789ABCDEF";
	char num[32];

	for (; *fmt; fmt++) {
		bool left = false, alt = false;
		char pad = ' ';
		int width = 0, prec = -1, lng = 0;

		if (*fmt != '%') {
			emit(s, *fmt);
			continue;
		}
		for (fmt++;; fmt++) {
			if (*fmt == '-')
				left = true;
			else if (*fmt == '0')
				pad = '0';
			else if (*fmt == '#')
				alt = true;
			else
				break;
		}
		if (*fmt == '*') {
			width = va_arg(ap, int);
			fmt++;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + *fmt++ - '0';
		if (*fmt == '.') {
			prec = 0;
			for (fmt++; *fmt >= '0' && *fmt <= '9'; fmt++)
				prec = prec * 10 + *fmt - '0';
		}
		for (;; fmt++) {
			if (*fmt == 'l' || *fmt == 'z')
				lng++;
			else if (*fmt != 'h')
				break;
		}

		uint64_t v;
		unsigned base = 10;
		bool neg = false;
		const char *digits = lower;

		switch (*fmt) {
		case '\0':
			return s->len;
		case '%':
			emit(s, '%');
			continue;
		case 'c':
			num[0] = (char)va_arg(ap, int);
			emit_padded(s, "", num, 1, width, left, ' ');
			continue;
		case 's': {
			const char *str = va_arg(ap, const char *);
			size_t n;

			if (!str)
				str = "(null)";
			for (n = 0; str[n] && (prec < 0 || (int)n < prec); n++)
				;
			emit_padded(s, "", str, n, width, left, ' ');
			continue;
		}
		case 'd':
		case 'i': {
			int64_t sv = lng ? va_arg(ap, int64_t) : va_arg(ap, int);

			neg = sv < 0;
			v = neg ? -(uint64_t)sv : (uint64_t)sv;
			break;
		}
		case 'p':
			v = (uintptr_t)va_arg(ap, void *);
			base = 16;
			alt = true;
			break;
		case 'X':
			digits = upper;
			/* fall through */
		case 'x':
		case 'o':
		case 'u':
			v = lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
			base = *fmt == 'u' ? 10 : *fmt == 'o' ? 8 : 16;
			break;
		default:
			emit(s, '%');
			emit(s, *fmt);
			continue;
		}

		/* digits backwards from the end of num[] */
		char *p = num + sizeof(num);

		do {
			*--p = digits[v % base];
			v /= base;
		} while (v);
		const char *prefix = "";

		if (neg)
			prefix = "-";
		else if (alt && base == 16)
			prefix = *fmt == 'X' ? "0X" : "0x";
		emit_padded(s, prefix, p, num + sizeof(num) - p, width, left,
			    pad);
	}
	return s->len;
}

int vprintf(const char *fmt, va_list ap)
{
	struct sink s = { 0 };

	return format(&s, fmt, ap);
}

int printf(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vprintf(fmt, ap);
	va_end(ap);
	return n;
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct sink s = { .buf = buf, .size = size };
	int n = format(&s, fmt, ap);

	if (size)
		buf[s.len < size ? s.len : size - 1] = '\0';
	return n;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}
