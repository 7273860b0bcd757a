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

#endif
