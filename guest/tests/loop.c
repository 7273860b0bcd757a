/* loop: a CPU-bound loop of a fixed instruction mix (9 instructions an
 * iteration: add, rol, xor, imul, mov, shr, sub, dec, jnz) whose result is
 * checked against the value the host CPU computes for the default count.
 * bench/mips.sh runs it with "loop.iters=N" on accord and on QEMU and turns
 * the run times into guest instructions per second. */
#include "guest.h"

#define LOOP_DEFAULT_ITERS 1000000ull
/* loop_core(1000000, 1) on a real x86-64 CPU */
#define LOOP_DEFAULT_RESULT 0x20173c1cf5b50fbeull

static uint64_t loop_core(uint64_t iters, uint64_t seed)
{
	uint64_t a = seed, b = 0x9e3779b97f4a7c15ull, n = iters;
	if (!n)
		return a;
	asm volatile("1:\n\t"
		     "add %[b], %[a]\n\t"
		     "rol $13, %[a]\n\t"
		     "xor %[n], %[a]\n\t"
		     "imul %[b], %[a]\n\t"
		     "mov %[a], %%rdx\n\t"
		     "shr $7, %%rdx\n\t"
		     "sub %%rdx, %[a]\n\t"
		     "dec %[n]\n\t"
		     "jnz 1b\n\t"
		     : [a] "+r"(a), [n] "+r"(n)
		     : [b] "r"(b)
		     : "rdx", "cc");
	return a;
}

static uint64_t loop_iters(void)
{
	const char *p = strstr(boot_cmdline(), "loop.iters=");
	uint64_t n = 0;
	if (!p)
		return LOOP_DEFAULT_ITERS;
	for (p += 11; *p >= '0' && *p <= '9'; p++)
		n = n * 10 + (uint64_t)(*p - '0');
	return n;
}

void test_main(void)
{
	uint64_t n = loop_iters();
	uint64_t r = loop_core(n, 1);
	printf("# loop: %lu iterations, %lu instructions, result %016lx\n", n, n * 9 + 1, r);
	if (n == LOOP_DEFAULT_ITERS)
		check(r == LOOP_DEFAULT_RESULT, "loop.result", "got %016lx, the host CPU computes %016llx",
		      r, LOOP_DEFAULT_RESULT);
	else
		skip("loop.result", "no reference value for %lu iterations", n);
}
