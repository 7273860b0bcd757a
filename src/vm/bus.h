/* Port I/O and MMIO dispatch: devices register address ranges with an ops
 * table (kvmtool style). Lookups are by a sorted array; registrations happen
 * before the vCPUs start. */
#ifndef ACCORD_BUS_H
#define ACCORD_BUS_H

#include <stdbool.h>
#include <stdint.h>

struct io_ops {
	/* off is relative to the registered base; size is 1, 2, 4 or 8 */
	uint64_t (*read)(void *opaque, uint64_t off, int size);
	void (*write)(void *opaque, uint64_t off, uint64_t val, int size);
};

struct bus_range {
	uint64_t base, len;
	const struct io_ops *ops;
	void *opaque;
	const char *name;
};

struct bus {
	struct bus_range *r;
	int n, cap;
};

int bus_register(struct bus *b, uint64_t base, uint64_t len, const struct io_ops *ops,
		 void *opaque, const char *name);
/* false when no device claims addr (reads then see all ones) */
bool bus_read(struct bus *b, uint64_t addr, int size, uint64_t *val);
bool bus_write(struct bus *b, uint64_t addr, uint64_t val, int size);
void bus_free(struct bus *b);

#endif
