/* The debug-exit port for test kernels (QEMU's isa-debug-exit semantics):
 * writing v ends the VM with process exit status (v << 1) | 1, so that no
 * guest value can look like a clean exit. */
#include <stdio.h>

#include "dev/devices.h"
#include "dev/platform.h"
#include "vm/vm.h"

static uint64_t debugexit_read(void *opaque, uint64_t off, int size)
{
	return 0;
}

static void debugexit_write(void *opaque, uint64_t off, uint64_t val, int size)
{
	struct vm *vm = opaque;
	uint64_t v = size >= 4 ? (uint32_t)val : val & ((1ull << size * 8) - 1);
	char msg[64];

	snprintf(msg, sizeof(msg), "guest wrote 0x%llx to the debug-exit port",
		 (unsigned long long)v);
	vm_request_exit(vm, VM_DEBUG_EXIT, (int)((v << 1) | 1), msg);
}

static const struct io_ops debugexit_ops = {
	.read = debugexit_read,
	.write = debugexit_write,
};

int debugexit_init(struct vm *vm)
{
	return bus_register(&vm->pio, DEBUG_EXIT_PORT, 4, &debugexit_ops, vm, "debug-exit");
}
