/* Snapshots (vm/snapshot.c): the vCPUs' state, every device's state and
 * the guest memory ever touched, in one versioned file with a checksum,
 * and the machine configuration to re-create the VM in a fresh process.
 *
 * File format (little-endian, version SNAP_VERSION; version 1 and 2 files
 * still load: version 1's SNAP_CPU records end before cpu_state's
 * lapic_size, and both had no crystal, which was VM_CRYSTAL_HZ):
 *   header, 64 bytes: magic "ACCSNAP\0", u32 version, u32 header size (64),
 *     u64 RAM bytes, u32 vCPUs, u32 engine (0 emu, 1 kvm), u32 personality
 *     (0 kvm, 1 hyperv), u32 flags (SNAP_F_*), u64 VM time in ns, u64 the
 *     LAPIC timer's clock in Hz (vm->crystal_hz: VM_CRYSTAL_HZ, or
 *     VM_CRYSTAL_KVM_HZ on kvm), 8 bytes 0
 *   sections, each: u32 type, u32 instance, u64 payload length, the
 *     payload, zero bytes up to a multiple of 8:
 *     SNAP_CONFIG (first, once): the accord run arguments, each NUL-ended
 *     SNAP_CPU (one per vCPU, instance = index): u32 vCPU run state, u32 0,
 *       struct cpu_state
 *     SNAP_DEV: char name[16] (NUL-padded), the device's own bytes; the
 *       instance counts devices of that name in registration order
 *     SNAP_RAM: u64 guest-physical address (page-aligned), the pages
 *       (length - 8 bytes, a multiple of 4 KiB); pages never touched and
 *       all-zero pages are left out and read as zeros
 *     SNAP_END (last, empty)
 *   trailer, 16 bytes: u64 file size, u32 CRC-32 (zlib's) of every byte
 *     before it and of the file size, u32 magic "SEND"
 */
#ifndef ACCORD_SNAPSHOT_H
#define ACCORD_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct vm;

#define SNAP_MAGIC "ACCSNAP"
#define SNAP_VERSION 3 /* 2: cpu_state holds the split irqchip's LAPIC; 3: the crystal */
#define SNAP_HEADER_SIZE 64
#define SNAP_TRAILER_SIZE 16
#define SNAP_END_MAGIC 0x444e4553u /* "SEND" */
#define SNAP_NAME_LEN 16
#define SNAP_MAX_ARGS 256

enum snap_section { SNAP_CONFIG = 1, SNAP_CPU, SNAP_DEV, SNAP_RAM, SNAP_END };
enum snap_engine { SNAP_ENGINE_EMU, SNAP_ENGINE_KVM };
/* header flags: the VM was paused (the pause action) when it was saved,
 * and a restore leaves it paused unless told otherwise */
#define SNAP_F_PAUSED 1u

/* a device's bytes as it saves them */
struct snap_buf {
	uint8_t *p;
	size_t len, cap;
	bool failed; /* out of memory */
};
void snap_put(struct snap_buf *b, const void *p, size_t n);

/* and as it reads them back: false when fewer than n bytes are left */
struct snap_rd {
	const uint8_t *p;
	size_t len, off;
};
bool snap_get(struct snap_rd *r, void *dst, size_t n);
/* A bool of a state struct read back whole holds whatever byte the file
 * had, and one that is neither 0 nor 1 must not be read as a bool: a load
 * checks its bools' bytes with this first. */
static inline bool snap_bool_ok(const bool *b)
{
	uint8_t v;

	memcpy(&v, b, 1);
	return v <= 1;
}

/* A device's part of a snapshot. save runs with every vCPU paused and
 * vm->io_lock held: 0, or -1 with why in err (the snapshot is not
 * written), or SNAP_REFUSED with why when it is the VM's state, not a
 * failure, that forbids the snapshot (a hot-removed device). load runs before any vCPU runs, on a machine made from the
 * same configuration: 0, or -1 with why in err when the bytes cannot be
 * this device's state (nothing of the device is changed then); under
 * vm->io_lock too, as the devices' own threads may already run. */
#define SNAP_REFUSED (-2)
typedef int (*snap_save_fn)(void *opaque, struct snap_buf *b, char *err, size_t errlen);
typedef int (*snap_load_fn)(void *opaque, struct snap_rd *r, char *err, size_t errlen);
struct snap_hook {
	char name[SNAP_NAME_LEN];
	snap_save_fn save;
	snap_load_fn load;
	void *opaque;
};
/* devices register at creation; -1 when out of memory */
int vm_snap_register(struct vm *vm, const char *name, snap_save_fn save, snap_load_fn load, void *opaque);

/* The configuration snapshot_write stores: the accord run arguments that
 * re-create this machine (paths absolute). main.c sets it. */
void snapshot_set_config(struct vm *vm, int argc, char *const *argv);

/* Write the snapshot of a paused VM to fd (from its start; the caller
 * made it and renames it into place). The disks are flushed first; the
 * header records vm->snap_paused. 0, or -1 with one line of why in err,
 * or SNAP_REFUSED (a device's save said so) with its why. */
int snapshot_write(struct vm *vm, int fd, char *err, size_t errlen);

/* a snapshot read and checked: the header, the sections' framing, the
 * checksum, the configuration */
struct snap_file {
	uint32_t version;
	uint64_t ram_size, vm_time_ns;
	uint64_t crystal_hz; /* the VM's crystal: the machine made must count at it */
	uint32_t ncpus, engine, personality;
	bool paused; /* SNAP_F_PAUSED: what a restore does unless told otherwise */
	int argc;
	char *argv[SNAP_MAX_ARGS + 1];
	const uint8_t *data; /* the whole file */
	size_t size;
	void *map; /* when snapshot_open mapped it */
};
/* check a snapshot held in memory (data stays the caller's); 0, or -1
 * with one line of why in err */
int snapshot_parse(struct snap_file *f, const uint8_t *data, size_t size, char *err, size_t errlen);
int snapshot_open(struct snap_file *f, const char *path, char *err, size_t errlen);
void snapshot_close(struct snap_file *f);
/* Load it into a machine made from its configuration, before the vCPUs
 * run: guest memory, the VM clock, the vCPUs, the devices. 0, or -1 with
 * why in err. */
int snapshot_apply(struct snap_file *f, struct vm *vm, char *err, size_t errlen);

#endif
