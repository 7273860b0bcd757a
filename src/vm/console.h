/* The serial console on the user's terminal: raw mode, the Ctrl-a escape
 * (Ctrl-a x quits, Ctrl-a a sends Ctrl-a, Ctrl-a h helps), the last lines
 * of guest output for error reports, and guest panic detection. */
#ifndef ACCORD_CONSOLE_H
#define ACCORD_CONSOLE_H

struct vm;

/* fds for the guest serial port: input the device reads, output it writes */
int console_start(struct vm *vm, int *in_fd, int *out_fd);
/* drain guest output, restore the terminal */
void console_stop(void);
/* after console_stop: "guest panic: <the kernel's panic line>" when the
 * guest's output had one, else NULL */
const char *console_panic(void);
/* put the terminal back as it was (async-signal-safe) */
void console_restore_tty(void);
/* print the last lines of guest output to stderr (after a failure) */
void console_print_tail(int lines);

#endif
