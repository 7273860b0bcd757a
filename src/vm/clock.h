/* Deadlines for pthread_cond_timedwait: now on clock clk plus ns. The
 * condition variable must use the same clock (CLOCK_MONOTONIC where the
 * code set the attribute, CLOCK_REALTIME by default). */
#ifndef ACCORD_VM_CLOCK_H
#define ACCORD_VM_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline struct timespec clock_after(clockid_t clk, int64_t ns)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	ns += ts.tv_nsec;
	ts.tv_sec += ns / 1000000000;
	ts.tv_nsec = ns % 1000000000;
	return ts;
}

#endif
