/* The control API: an HTTP/1.1 JSON server on a Unix socket in the VM's
 * process (api/server.c) and the thin clients behind `accord ls` and
 * `accord start|pause|resume|stop|shutdown|reset|kvp NAME` (api/client.c). The
 * routes are documented in docs/api.yaml. */
#ifndef ACCORD_API_H
#define ACCORD_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct machine;

/* statuses of the client commands (README "Exit status" of accord run
 * uses 0 to 5 and odd values for debug-exit; these are the clients') */
enum {
	API_EXIT_OK = 0,
	API_EXIT_USAGE = 1,
	API_EXIT_NO_VM = 6,	 /* no running VM of that name */
	API_EXIT_REFUSED = 7, /* the VM answered with an error, or not at all */
};

/* VM names: 1 to 64 of [A-Za-z0-9._-], not starting with a dot; prints
 * why not and returns -1 */
int api_name_check(const char *opt, const char *name);
/* where VMs' sockets live: $XDG_RUNTIME_DIR/accord, else /run/accord for
 * root, else /tmp/accord-UID; -1 if it does not fit */
int api_socket_dir(char *out, size_t n);

/* Listen on path (created; a stale socket of a dead VM is replaced) and
 * serve from a thread of its own until api_stop. The default path
 * (path NULL) is NAME.sock in api_socket_dir; when that directory cannot
 * be made, a warning and no API (an error when the machine is not built:
 * it waits for the API to configure it). -1 with one line on stderr.
 * With m->vm NULL the pre-boot routes configure m->cfg, and the start
 * action builds the machine (machine_build) on the server's thread. */
int api_start(struct machine *m, const char *name, const char *path);
/* Before the machine is built: wait for the start action. true when it
 * built the machine, now to be run; false when the process is to end with
 * *status (0: the stop action; else a build failure that cannot be
 * undone, already answered). */
bool api_wait_start(int *status);
/* join the server's thread and remove its socket */
void api_stop(void);

/* `accord ls` and `accord ACTION NAME` (start, pause, ...); argv[0] is
 * the command */
int api_client_main(int argc, char **argv);
bool api_is_client_command(const char *cmd);

#endif
