/* The seccomp sandbox: once the VM is set up (files open, devices made,
 * guest loaded) and before the vCPUs run, the process keeps only the
 * system calls a running VMM needs. */
#ifndef ACCORD_SANDBOX_H
#define ACCORD_SANDBOX_H

#include <stdbool.h>

/* the exit status of a process the sandbox stopped (README "Exit status") */
#define SANDBOX_EXIT_STATUS 9

/* Installs the filter in every thread of the process. A call outside the
 * allow list ends the process with one line on stderr naming the call and
 * SANDBOX_EXIT_STATUS. 0, or -1 after one line on stderr.
 * ACCORD_SANDBOX_SELFTEST in the environment makes the process try a call
 * right after: "open-read" (allowed), "open-write" or any other value
 * (ptrace), both forbidden; the tests' proof that the filter is in force. */
int sandbox_enter(void);
/* true once the filter is in force: the VMM can then create no file (a
 * snapshot goes to a file the client opened and passed) */
bool sandbox_active(void);

#endif
