/* TAP output shared by the C test programs: one "ok N - name" or
 * "not ok N - name" line per check, counted for the closing
 * "N passed, N failed" line each program prints. */
#ifndef ACCORD_TESTS_TAP_H
#define ACCORD_TESTS_TAP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

static int n_test, n_pass, n_fail;

static void ok(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3), unused));
static void ok(bool cond, const char *fmt, ...)
{
	va_list ap;

	printf("%sok %d - ", cond ? "" : "not ", ++n_test);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (cond)
		n_pass++;
	else
		n_fail++;
}

#endif
