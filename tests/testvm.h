/* For the device tests: an engine that creates vCPUs and runs none, and
 * bus accesses locked the way the engines lock them. */
#ifndef ACCORD_TESTS_TESTVM_H
#define ACCORD_TESTS_TESTVM_H

#include <pthread.h>

#include "engine/engine.h"
#include "vm/vm.h"

static int stub_vcpu_init(struct vcpu *v)
{
	return 0;
}

static const struct engine_ops stub_engine = {
	.name = "stub",
	.vcpu_init = stub_vcpu_init,
};

static inline uint64_t locked_read(struct vm *m, struct bus *b, uint64_t addr, int size)
{
	uint64_t v;

	pthread_mutex_lock(&m->io_lock);
	bus_read(b, addr, size, &v);
	pthread_mutex_unlock(&m->io_lock);
	return v;
}

static inline void locked_write(struct vm *m, struct bus *b, uint64_t addr, uint64_t v, int size)
{
	pthread_mutex_lock(&m->io_lock);
	bus_write(b, addr, v, size);
	pthread_mutex_unlock(&m->io_lock);
}

/* PCI configuration space through mechanism #1 (0xcf8/0xcfc), as a guest
 * driver reaches it; slot is the device number on bus 0, function 0 */
static inline uint32_t testvm_cfg_read(struct vm *m, int slot, unsigned off, int size)
{
	uint64_t v;

	pthread_mutex_lock(&m->io_lock);
	bus_write(&m->pio, 0xcf8, 0x80000000u | slot << 11 | (off & 0xfc), 4);
	bus_read(&m->pio, 0xcfc + (off & 3), size, &v);
	pthread_mutex_unlock(&m->io_lock);
	return v;
}

static inline void testvm_cfg_write(struct vm *m, int slot, unsigned off, uint32_t val, int size)
{
	pthread_mutex_lock(&m->io_lock);
	bus_write(&m->pio, 0xcf8, 0x80000000u | slot << 11 | (off & 0xfc), 4);
	bus_write(&m->pio, 0xcfc + (off & 3), val, size);
	pthread_mutex_unlock(&m->io_lock);
}

#endif
