/* The guest's console on the user's terminal: raw mode, the Ctrl-a escape
 * (Ctrl-a x quits, Ctrl-a a sends Ctrl-a, Ctrl-a h helps), the last lines
 * of guest output for error reports, and guest panic detection.
 *
 * Input is read on the VM's I/O thread (console_input_start) and handed
 * to the one console device that has the keyboard (the UART or
 * virtio-console), under vm->io_lock. When the device has no room, the
 * bytes wait and the terminal is not read (typed or pasted input is never
 * dropped) until the device says it has room (console_input_room), or
 * at the latest 50 ms later (a virtio driver may post buffers before its
 * notifications reach the device). */
#ifndef ACCORD_CONSOLE_H
#define ACCORD_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

struct vm;
struct iothread;
struct console_input;

/* the fd the guest's console devices write their output to */
int console_start(struct vm *vm, int *out_fd);

/* a device's side of the input: take up to n bytes, under vm->io_lock;
 * returns how many it took */
typedef size_t (*console_input_fn)(void *dev, const uint8_t *buf, size_t n);
/* read fd on io's thread, Ctrl-a escapes applied, into fn; NULL after a
 * line on stderr */
struct console_input *console_input_start(struct vm *vm, struct iothread *io, int fd,
					  console_input_fn fn, void *dev);
/* the device took bytes and has room again: any thread, any lock */
void console_input_room(struct console_input *ci);
/* after the I/O thread has stopped */
void console_input_free(struct console_input *ci);
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
