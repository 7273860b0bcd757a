/* A GDB remote stub (`accord run --gdb tcp::PORT`): the VM starts stopped
 * and waits for GDB; all-stop mode, one GDB thread per vCPU. Engine-neutral:
 * it needs the engine's get_state/set_state, set_guest_debug and translate.
 * Protocol: the "Remote Serial Protocol" appendix of the GDB manual. */
#ifndef ACCORD_GDBSTUB_H
#define ACCORD_GDBSTUB_H

#include <stdbool.h>

struct vm;
struct vcpu;
struct vcpu_exit;

/* Check a --gdb argument: "tcp::PORT" or "tcp:HOST:PORT" (HOST defaults to
 * 127.0.0.1; PORT 0 picks a free port). Prints why and returns -1 when
 * it is malformed. */
int gdbstub_check_spec(const char *spec);
/* Listen, hold the vCPUs stopped, and serve GDB from a thread of its own.
 * Prints "accord: gdb: waiting for a connection on HOST:PORT" on stderr. */
int gdbstub_start(struct vm *vm, const char *spec);
/* After vm_run: tell a connected GDB that the VM exited with status, and
 * stop the stub. */
void gdbstub_finish(struct vm *vm, int status);

/* The vCPU threads' side (vm.c), around each engine vcpu_run. enter parks
 * the thread while the debugger holds the VM stopped; false when the VM
 * ended meanwhile. leave sees EXIT_DEBUG and stops the other vCPUs. */
bool gdbstub_vcpu_enter(struct vcpu *v);
void gdbstub_vcpu_leave(struct vcpu *v, const struct vcpu_exit *ex);

#endif
