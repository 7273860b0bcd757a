/* The machine accord run builds: one configuration, filled from the
 * command line (src/main.c) or through the control API's pre-boot routes
 * (src/api/server.c) with the same checks, and the one function that
 * builds a VM from it. */
#ifndef ACCORD_MACHINE_H
#define ACCORD_MACHINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/net.h"
#include "vm/sandbox.h"

/* exit statuses of accord run (README "Exit status") */
enum {
	EXIT_OK = 0,
	EXIT_USAGE = 1,
	EXIT_GUEST_PANIC = 2,
	EXIT_BAD_IMAGE = 3,
	EXIT_NO_ACCEL = 4,
	EXIT_VM_FAILED = 5,
	/* 6 and 7 belong to accord ls/pause/... (src/api/api.h) */
	EXIT_NET_FAILED = 8,
	EXIT_SANDBOX = SANDBOX_EXIT_STATUS,
	EXIT_BAD_SNAPSHOT = 10,
};

#define MACHINE_MAX_DISKS 16
#define MACHINE_MAX_NICS 4
/* drive and interface ids, and VM names: 1 to 64 of [A-Za-z0-9._-] */
#define MACHINE_ID_MAX 64
#define MACHINE_MIN_MEMORY (16ull << 20)

struct machine_disk {
	char id[MACHINE_ID_MAX + 1];
	char *path;
	bool ro;
};

struct machine_nic {
	char id[MACHINE_ID_MAX + 1];
	struct net_config net;
};

/* Strings are owned (malloc'd) by the configuration. */
struct machine_config {
	char *kernel, *initrd, *cmdline; /* kernel NULL: not configured yet */
	uint64_t memory;
	int cpus;
	const char *accel; /* "auto", "emu" or "kvm" (static) */
	int personality;   /* enum vm_personality */
	const char *irqchip; /* "auto", "split" or "user" (static) */
	bool debug_exit, rng, virtio_console, sandbox;
	char *gdb;
	int ndisks;
	struct machine_disk disk[MACHINE_MAX_DISKS];
	int nnics;
	struct machine_nic nic[MACHINE_MAX_NICS];
};

struct vm;
struct iothread;
struct engine_ops;
struct virtio_blk;
struct virtio_net;
struct storvsc;
struct netvsc;
struct hv_util;
struct snap_file;

/* A configuration and, once machine_build succeeded, the VM made of it. */
struct machine {
	struct machine_config cfg;
	const struct engine_ops *engine;
	struct vm *vm; /* NULL until built */
	struct iothread *io;
	struct virtio_blk *disk_dev[MACHINE_MAX_DISKS]; /* NULL: a VMBus disk */
	struct storvsc *disk_storvsc[MACHINE_MAX_DISKS]; /* --personality hyperv */
	struct virtio_net *nic_dev[MACHINE_MAX_NICS]; /* NULL: a VMBus NIC */
	struct netvsc *nic_netvsc[MACHINE_MAX_NICS];  /* --personality hyperv */
	struct hv_util *hv_util; /* --personality hyperv: shutdown and KVP; else NULL */
	struct snap_file *restore; /* accord restore: loaded where the kernel would be */
};

/* The defaults of accord run: 512 MiB, one vCPU, --accel auto,
 * --personality kvm, the serial console, the sandbox on. */
void machine_config_init(struct machine_config *c);
/* free its strings (it can be initialised again) */
void machine_config_free(struct machine_config *c);

/* Setters: 0, or an exit status with the reason in err (no option name:
 * the caller says which option or field it was). A failed setter leaves
 * the configuration as it was. */
int machine_set_memory(struct machine_config *c, uint64_t bytes, char *err, size_t n);
int machine_set_cpus(struct machine_config *c, long cpus, char *err, size_t n);
int machine_set_accel(struct machine_config *c, const char *accel, char *err, size_t n);
int machine_set_personality(struct machine_config *c, const char *p, char *err, size_t n);
int machine_set_irqchip(struct machine_config *c, const char *irqchip, char *err, size_t n);
int machine_set_console(struct machine_config *c, const char *kind, char *err, size_t n);
/* NULL initrd or cmdline: none */
int machine_set_boot(struct machine_config *c, const char *kernel, const char *initrd, const char *cmdline,
		     char *err, size_t n);
/* id NULL: the next "diskN" / "netN"; an existing id is replaced */
int machine_set_disk(struct machine_config *c, const char *id, const char *path, bool ro, char *err, size_t n);
int machine_set_nic(struct machine_config *c, const char *id, const struct net_config *net, char *err, size_t n);
/* take drive or interface id out (the others keep their order); an id
 * that is not there is EXIT_USAGE */
int machine_remove_disk(struct machine_config *c, const char *id, char *err, size_t n);
int machine_remove_nic(struct machine_config *c, const char *id, char *err, size_t n);
/* 1 to MACHINE_ID_MAX of [A-Za-z0-9._-], not starting with a dot */
bool machine_id_ok(const char *id);

/* Builds the VM, loads the kernel and leaves everything ready for
 * machine_run. 0, or an exit status after one line "accord: ..." on
 * stderr. With recoverable, every check that a configuration can fail
 * (the engine, the kernel, initrd and command line against the memory
 * size, the disks, the network backends) runs before anything that cannot
 * be undone, and *fatal stays false for them: the process can fix the
 * configuration and build again. A failure after that point (out of
 * memory, the engine refusing the VM) sets *fatal. */
int machine_build(struct machine *m, bool recoverable, bool *fatal);
/* Runs the built VM until it ends (the I/O thread, the sandbox, the
 * vCPUs) and reports why it ended; the process exit status. */
int machine_run(struct machine *m);

/* While capturing, what this process writes to stderr (fd 2, whichever
 * thread writes) is kept; the end puts its last "accord: " line, without
 * the prefix, into err, and with echo writes it all to stderr after all.
 * For the control API, whose replies carry the line accord run would
 * print. begin returns the token for end (-1: nothing is captured, end
 * still says why). */
int machine_capture_begin(void);
void machine_capture_end(int token, bool echo, char *err, size_t n);

#endif
