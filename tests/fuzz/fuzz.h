/* What every libFuzzer harness shares. A harness defines
 *
 *   static void fuzz_init(void);    once, before the first input
 *   static void fuzz_seeds(void);   writes its seed corpus with fuzz_seed()
 *   int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
 *
 * and includes this file once. With ACCORD_FUZZ_SEEDS=DIR in the
 * environment the harness writes its seeds into DIR and exits: the corpus
 * is generated, never committed (tests/fuzz/smoke.sh, tests/fuzz/long.sh). */
#ifndef ACCORD_FUZZ_H
#define ACCORD_FUZZ_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void fuzz_init(void);
static void fuzz_seeds(void);

static const char *fuzz_seed_dir;
static int fuzz_nseeds;

static void fuzz_seed(const char *name, const void *data, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", fuzz_seed_dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(data, 1, len, f) != len || fclose(f)) {
		fprintf(stderr, "fuzz: cannot write seed %s: %s\n", path, strerror(errno));
		exit(2);
	}
	fuzz_nseeds++;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_seed_dir = getenv("ACCORD_FUZZ_SEEDS");
	if (fuzz_seed_dir) {
		char dir[4096];

		/* mkdir -p */
		snprintf(dir, sizeof(dir), "%s/", fuzz_seed_dir);
		for (char *s = strchr(dir + 1, '/'); s; s = strchr(s + 1, '/')) {
			*s = 0;
			if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
				fprintf(stderr, "fuzz: %s: %s\n", dir, strerror(errno));
				exit(2);
			}
			*s = '/';
		}
		fuzz_seeds();
		printf("%d seeds in %s\n", fuzz_nseeds, fuzz_seed_dir);
		exit(0);
	}
	fuzz_init();
	return 0;
}

/* little-endian stores for building inputs */
static inline void fz_put16(uint8_t *p, uint16_t v)
{
	p[0] = v;
	p[1] = v >> 8;
}

static inline void fz_put32(uint8_t *p, uint32_t v)
{
	fz_put16(p, v);
	fz_put16(p + 2, v >> 16);
}

static inline void fz_put64(uint8_t *p, uint64_t v)
{
	fz_put32(p, v);
	fz_put32(p + 4, v >> 32);
}

#endif
