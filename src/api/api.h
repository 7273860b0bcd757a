/* The control API: an HTTP/1.1 JSON server on a Unix socket in the VM's
 * process (api/server.c) and the thin clients behind `accord ls` and
 * `accord pause|resume|stop|shutdown|reset NAME` (api/client.c). The
 * routes are documented in docs/api.yaml. */
#ifndef ACCORD_API_H
#define ACCORD_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct virtio_blk;
struct netvsc;

/* statuses of the client commands (README "Exit status" of accord run
 * uses 0 to 5 and odd values for debug-exit; these are the clients') */
enum {
	API_EXIT_OK = 0,
	API_EXIT_USAGE = 1,
	API_EXIT_NO_VM = 6,	 /* no running VM of that name */
	API_EXIT_REFUSED = 7, /* the VM answered with an error, or not at all */
};

/* the machine configuration accord run was started with (GET /vm/config) */
struct api_vm_config {
	const char *name;
	const char *kernel, *initrd, *cmdline;
	const char *accel; /* as asked: auto, emu or kvm */
	const char *personality; /* kvm or hyperv */
	uint64_t memory;
	int cpus;
	bool debug_exit;
	const char *gdb;
	int ndisks;
	char *const *disk_path;
	const bool *disk_ro;
	struct virtio_blk *const *disk_dev; /* for their counters */
	int nnics;
	struct netvsc *const *nic_dev; /* netvsc NICs' counters; NULL: virtio-net */
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
 * be made, a warning and no API. -1 with one line on stderr. */
int api_start(struct vm *vm, const char *path, const struct api_vm_config *cfg);
/* join the server's thread and remove its socket */
void api_stop(void);

/* `accord ls` and `accord ACTION NAME`; argv[0] is the command */
int api_client_main(int argc, char **argv);
bool api_is_client_command(const char *cmd);

#endif
