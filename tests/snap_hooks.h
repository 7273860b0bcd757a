/* For the unit tests of the devices' snapshot hooks (vm_snap_register):
 * a device's section saved, loaded back and saved again; every
 * truncation and hostile values refused with a reason, the device's state
 * unchanged by a refused load (its next save is the same bytes). The
 * hooks run under vm->io_lock, as in snapshot_write and snapshot_apply.
 * The includer includes tap.h. */
#ifndef ACCORD_TESTS_SNAP_HOOKS_H
#define ACCORD_TESTS_SNAP_HOOKS_H

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "vm/snapshot.h"
#include "vm/vm.h"

struct sec_buf {
	uint8_t *p;
	size_t len;
};

/* the hook of section NAME, err cleared; NULL with why in err */
static inline struct snap_hook *sh_find(struct vm *vm, const char *name, char *err, size_t n)
{
	err[0] = 0;
	for (int i = 0; i < vm->nsnap_hooks; i++)
		if (!strcmp(vm->snap_hooks[i].name, name))
			return &vm->snap_hooks[i];
	snprintf(err, n, "no hook %s", name);
	return NULL;
}

/* the device's bytes (without the name snapshot_write puts first); 0, or
 * -1 with why in err */
static inline int sh_save(struct vm *vm, const char *name, struct sec_buf *out, char *err, size_t n)
{
	struct snap_hook *h = sh_find(vm, name, err, n);
	struct snap_buf b = { 0 };
	int rc;

	if (!h)
		return -1;
	pthread_mutex_lock(&vm->io_lock);
	rc = h->save(h->opaque, &b, err, n);
	pthread_mutex_unlock(&vm->io_lock);
	if (rc < 0 || b.failed) {
		free(b.p);
		return -1;
	}
	out->p = b.p;
	out->len = b.len;
	return 0;
}

/* as snapshot_apply: the load, and every byte of the section used */
static inline int sh_load(struct vm *vm, const char *name, const uint8_t *p, size_t len, char *err, size_t n)
{
	struct snap_hook *h = sh_find(vm, name, err, n);
	struct snap_rd r = { p, len, 0 };
	int rc;

	if (!h)
		return -1;
	pthread_mutex_lock(&vm->io_lock);
	rc = h->load(h->opaque, &r, err, n);
	pthread_mutex_unlock(&vm->io_lock);
	if (rc == 0 && r.off != r.len) {
		snprintf(err, n, "%zu bytes left over", r.len - r.off);
		return -1;
	}
	return rc;
}

static inline bool sh_same(struct vm *vm, const char *name, const struct sec_buf *want)
{
	struct sec_buf now;
	char err[200];
	bool same;

	if (sh_save(vm, name, &now, err, sizeof(err)) < 0)
		return false;
	same = now.len == want->len && !memcmp(now.p, want->p, now.len);
	free(now.p);
	return same;
}

/* save, load that, save again: the same bytes */
static inline bool sh_round_trip(struct vm *vm, const char *name, struct sec_buf *saved)
{
	char err[200];

	if (sh_save(vm, name, saved, err, sizeof(err)) < 0) {
		printf("# %s: save: %s\n", name, err);
		return false;
	}
	if (sh_load(vm, name, saved->p, saved->len, err, sizeof(err)) < 0) {
		printf("# %s: load: %s\n", name, err);
		return false;
	}
	return sh_same(vm, name, saved);
}

/* every shorter section is refused with a reason and changes nothing */
static inline bool sh_truncations_refused(struct vm *vm, const char *name, const struct sec_buf *s)
{
	char err[200];

	for (size_t len = 0; len < s->len; len++) {
		if (sh_load(vm, name, s->p, len, err, sizeof(err)) == 0 || !sh_same(vm, name, s)) {
			printf("# %s: %zu of %zu bytes: %s\n", name, len, s->len, err[0] ? err : "loaded");
			return false;
		}
	}
	return true;
}

/* the section with n bytes at off replaced: refused with a reason, the
 * device unchanged; the reason in err */
static inline bool sh_patch_refused(struct vm *vm, const char *name, const struct sec_buf *s, size_t off,
				    const void *bytes, size_t n, char *err, size_t errlen)
{
	uint8_t *c = malloc(s->len);
	bool refused;

	if (!c || off + n > s->len) {
		free(c);
		snprintf(err, errlen, "patch outside the section");
		return false;
	}
	memcpy(c, s->p, s->len);
	memcpy(c + off, bytes, n);
	refused = sh_load(vm, name, c, s->len, err, errlen) < 0 && err[0];
	free(c);
	if (!refused && !err[0])
		snprintf(err, errlen, "loaded");
	return refused && sh_same(vm, name, s);
}

/* random bytes changed, count times: each load refused with a reason or
 * taken (and then the original loads back); nothing crashes (the ASan
 * build checks the reads) */
static inline bool sh_flips(struct vm *vm, const char *name, const struct sec_buf *s, unsigned count, unsigned seed)
{
	uint8_t *c = malloc(s->len ? s->len : 1);
	char err[200];
	bool good = c != NULL;

	srand(seed);
	for (unsigned i = 0; i < count && good && s->len; i++) {
		memcpy(c, s->p, s->len);
		for (int k = 0; k < 1 + rand() % 3; k++)
			c[(size_t)rand() % s->len] ^= (uint8_t)(1 + rand() % 255);
		if (sh_load(vm, name, c, s->len, err, sizeof(err)) < 0) {
			good = err[0] && sh_same(vm, name, s);
		} else {
			good = sh_load(vm, name, s->p, s->len, err, sizeof(err)) == 0 && sh_same(vm, name, s);
		}
		if (!good)
			printf("# %s: flip %u: %s\n", name, i, err);
	}
	free(c);
	return good;
}

#endif
