/* Disk backends: what a disk device (virtio-blk, storvsc) reads and writes.
 * One raw image file or block device per disk; offsets and lengths are in
 * bytes and checked against the size by the caller (the device knows its
 * sector size and reports range errors in its own protocol). */
#ifndef ACCORD_DISK_H
#define ACCORD_DISK_H

#include <stdbool.h>
#include <stdint.h>

struct disk {
	int fd;
	bool ro;
	uint64_t size; /* bytes, as found at open */
	char name[64]; /* the file's base name, for serial numbers */
};

/* --disk path=FILE[,ro]; one line on stderr and -1 on a bad spec */
int disk_parse(const char *spec, char **path, bool *ro);
/* open an image; one line on stderr and NULL when it cannot be used */
struct disk *disk_open(const char *path, bool ro);
void disk_close(struct disk *d);

/* 0, or -1 on an I/O error. A read past the end of a file that shrank
 * under us reads zeros. */
int disk_read(struct disk *d, void *buf, uint64_t len, uint64_t pos);
int disk_write(struct disk *d, const void *buf, uint64_t len, uint64_t pos);
int disk_flush(struct disk *d);
/* advisory: a file system that cannot punch holes keeps the data */
void disk_discard(struct disk *d, uint64_t pos, uint64_t len);
/* the range reads as zeros afterwards; unmap allows deallocating it */
int disk_zero(struct disk *d, uint64_t pos, uint64_t len, bool unmap);

#endif
