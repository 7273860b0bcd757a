/* Port I/O and MMIO dispatch: a sorted array of ranges, binary search. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vm/bus.h"

int bus_register(struct bus *b, uint64_t base, uint64_t len, const struct io_ops *ops, void *opaque,
		 const char *name)
{
	for (int i = 0; i < b->n; i++) {
		struct bus_range *r = &b->r[i];
		if (base < r->base + r->len && r->base < base + len) {
			fprintf(stderr, "accord: %s at %#llx overlaps %s\n", name, (unsigned long long)base, r->name);
			return -1;
		}
	}
	if (b->n == b->cap) {
		int cap = b->cap ? b->cap * 2 : 16;
		struct bus_range *r = realloc(b->r, cap * sizeof(*r));
		if (!r)
			return -1;
		b->r = r;
		b->cap = cap;
	}
	int i = b->n;
	while (i > 0 && b->r[i - 1].base > base) {
		b->r[i] = b->r[i - 1];
		i--;
	}
	b->r[i] = (struct bus_range){ base, len, ops, opaque, name };
	b->n++;
	return 0;
}

static struct bus_range *bus_find(struct bus *b, uint64_t addr)
{
	int lo = 0, hi = b->n - 1;
	while (lo <= hi) {
		int mid = (lo + hi) / 2;
		struct bus_range *r = &b->r[mid];
		if (addr < r->base)
			hi = mid - 1;
		else if (addr >= r->base + r->len)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

bool bus_read(struct bus *b, uint64_t addr, int size, uint64_t *val)
{
	struct bus_range *r = bus_find(b, addr);
	if (!r || !r->ops->read) {
		*val = size == 8 ? ~0ull : (1ull << (size * 8)) - 1;
		return false;
	}
	*val = r->ops->read(r->opaque, addr - r->base, size);
	return true;
}

bool bus_write(struct bus *b, uint64_t addr, uint64_t val, int size)
{
	struct bus_range *r = bus_find(b, addr);
	if (!r || !r->ops->write)
		return false;
	r->ops->write(r->opaque, addr - r->base, val, size);
	return true;
}

void bus_free(struct bus *b)
{
	free(b->r);
	memset(b, 0, sizeof(*b));
}
