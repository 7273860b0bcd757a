/* Raw image backend: the file's bytes are the disk's bytes. Shared by
 * virtio-blk and storvsc; called on the vCPU thread that asked. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk/disk.h"

int disk_parse(const char *spec, char **path, bool *ro)
{
	char *s = strdup(spec), *save = NULL, *tok;

	*path = NULL;
	*ro = false;
	if (!s)
		return -1;
	for (tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strncmp(tok, "path=", 5) && tok[5] && !*path) {
			*path = strdup(tok + 5);
		} else if (!strcmp(tok, "ro")) {
			*ro = true;
		} else {
			fprintf(stderr, "accord: --disk '%s': expected path=FILE[,ro]\n", spec);
			free(*path);
			free(s);
			*path = NULL;
			return -1;
		}
	}
	free(s);
	if (!*path) {
		fprintf(stderr, "accord: --disk '%s': expected path=FILE[,ro]\n", spec);
		return -1;
	}
	return 0;
}

struct disk *disk_open(const char *path, bool ro)
{
	struct disk *d = calloc(1, sizeof(*d));
	struct stat st;
	off_t size;

	if (!d)
		return NULL;
	d->fd = open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (d->fd < 0) {
		fprintf(stderr, "accord: --disk %s: %s\n", path, strerror(errno));
		goto fail;
	}
	if (fstat(d->fd, &st) || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
		fprintf(stderr, "accord: --disk %s: not a regular file or block device\n", path);
		goto fail;
	}
	size = lseek(d->fd, 0, SEEK_END);
	if (size < 0) {
		fprintf(stderr, "accord: --disk %s: %s\n", path, strerror(errno));
		goto fail;
	}
	d->ro = ro;
	d->size = size;
	const char *base = strrchr(path, '/');
	snprintf(d->name, sizeof(d->name), "%s", base ? base + 1 : path);
	return d;
fail:
	if (d->fd >= 0)
		close(d->fd);
	free(d);
	return NULL;
}

void disk_close(struct disk *d)
{
	if (!d)
		return;
	close(d->fd);
	free(d);
}

int disk_read(struct disk *d, void *buf, uint64_t len, uint64_t pos)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t done = pread(d->fd, p, len, pos);

		if (done < 0 && errno == EINTR)
			continue;
		if (done < 0)
			return -1;
		if (done == 0) {
			/* the file shrank under us: the rest reads as zeros */
			memset(p, 0, len);
			return 0;
		}
		p += done;
		pos += done;
		len -= done;
	}
	return 0;
}

int disk_write(struct disk *d, const void *buf, uint64_t len, uint64_t pos)
{
	const uint8_t *p = buf;

	if (d->ro)
		return -1;
	while (len) {
		ssize_t done = pwrite(d->fd, p, len, pos);

		if (done < 0 && errno == EINTR)
			continue;
		if (done <= 0)
			return -1;
		p += done;
		pos += done;
		len -= done;
	}
	return 0;
}

int disk_flush(struct disk *d)
{
	return d->ro ? 0 : fdatasync(d->fd);
}

void disk_discard(struct disk *d, uint64_t pos, uint64_t len)
{
	if (!d->ro)
		fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, pos, len);
}

int disk_zero(struct disk *d, uint64_t pos, uint64_t len, bool unmap)
{
	static const uint8_t zeros[65536];

	if (d->ro)
		return -1;
	if (!unmap && !fallocate(d->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, pos, len))
		return 0;
	if (!fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, pos, len))
		return 0;
	while (len) {
		size_t n = len < sizeof(zeros) ? len : sizeof(zeros);

		if (disk_write(d, zeros, n, pos))
			return -1;
		pos += n;
		len -= n;
	}
	return 0;
}
