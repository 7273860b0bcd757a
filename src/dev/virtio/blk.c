/* virtio-blk (virtio 1.x, 5.2) on a raw image file: IN, OUT, FLUSH,
 * GET_ID, DISCARD and WRITE_ZEROES; read-only disks advertise
 * VIRTIO_BLK_F_RO and fail every write. Requests are served on the vCPU
 * thread that notified, under vm->io_lock; an I/O thread is a later step. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dev/virtio/virtio.h"
#include "vm/vm.h"

#define VIRTIO_ID_BLOCK 2
#define SECTOR 512ull

#define BLK_F_SEG_MAX 2
#define BLK_F_RO 5
#define BLK_F_BLK_SIZE 6
#define BLK_F_FLUSH 9
#define BLK_F_DISCARD 13
#define BLK_F_WRITE_ZEROES 14

#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_T_FLUSH 4
#define BLK_T_GET_ID 8
#define BLK_T_DISCARD 11
#define BLK_T_WRITE_ZEROES 13

#define BLK_S_OK 0
#define BLK_S_IOERR 1
#define BLK_S_UNSUPP 2

#define BLK_ID_BYTES 20
#define MAX_RANGES 32
#define MAX_RANGE_SECTORS 0x3fffffu

struct virtio_blk {
	struct virtio_dev vd;
	int fd;
	bool ro;
	uint64_t sectors;
	char id[BLK_ID_BYTES];
	uint64_t reads, writes, flushes, io_errors;
	uint64_t read_bytes, write_bytes;
	struct virtq_req req;
};

static void put_le(uint8_t *p, uint64_t v, int size)
{
	for (int i = 0; i < size; i++, v >>= 8)
		p[i] = v;
}

static bool in_range(const struct virtio_blk *b, uint64_t sector, uint64_t count)
{
	return sector <= b->sectors && count <= b->sectors - sector;
}

/* Move len bytes between the image at pos and the chain's readable
 * (to_guest false) or writable segments, after skipping skip bytes. */
static int seg_io(struct virtio_blk *b, const struct virtq_req *r, bool to_guest, uint64_t skip,
		  uint64_t len, uint64_t pos)
{
	unsigned first = to_guest ? r->nr : 0, n = to_guest ? r->nw : r->nr;

	for (unsigned i = first; i < first + n && len; i++) {
		const struct virtq_seg *s = &r->seg[i];
		uint64_t off = 0, chunk;

		if (skip >= s->len) {
			skip -= s->len;
			continue;
		}
		off = skip;
		skip = 0;
		chunk = s->len - off;
		if (chunk > len)
			chunk = len;
		while (chunk) {
			ssize_t done = to_guest ? pread(b->fd, s->p + off, chunk, pos)
						: pwrite(b->fd, s->p + off, chunk, pos);
			if (done < 0 && errno == EINTR)
				continue;
			if (done < 0)
				return -1;
			if (done == 0) {
				if (!to_guest)
					return -1;
				/* the file shrank under us: the rest reads as zeros */
				memset(s->p + off, 0, chunk);
				done = chunk;
			}
			off += done;
			pos += done;
			len -= done;
			chunk -= done;
		}
	}
	return 0;
}

static int zero_range(struct virtio_blk *b, uint64_t pos, uint64_t len, bool unmap)
{
	static const uint8_t zeros[65536];

	if (!unmap && !fallocate(b->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, pos, len))
		return 0;
	if (!fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, pos, len))
		return 0;
	while (len) {
		size_t n = len < sizeof(zeros) ? len : sizeof(zeros);
		ssize_t done = pwrite(b->fd, zeros, n, pos);

		if (done < 0 && errno == EINTR)
			continue;
		if (done <= 0)
			return -1;
		pos += done;
		len -= done;
	}
	return 0;
}

/* DISCARD and WRITE_ZEROES: an array of {le64 sector, le32 count, le32 flags} */
static uint8_t blk_ranges(struct virtio_blk *b, const struct virtq_req *r, uint32_t type)
{
	uint64_t bytes = r->rlen - 16, n = bytes / 16;

	if (b->ro)
		return BLK_S_IOERR;
	if (!n || bytes % 16 || n > MAX_RANGES)
		return BLK_S_UNSUPP;
	for (uint64_t i = 0; i < n; i++) {
		uint8_t seg[16];
		uint64_t sector;
		uint32_t count, flags;

		vq_read(r, 16 + 16 * i, seg, 16);
		memcpy(&sector, seg, 8);
		memcpy(&count, seg + 8, 4);
		memcpy(&flags, seg + 12, 4);
		if (count > MAX_RANGE_SECTORS || !in_range(b, sector, count))
			return BLK_S_IOERR;
		if (type == BLK_T_DISCARD) {
			if (flags)
				return BLK_S_UNSUPP;
			/* advisory: a file system that cannot punch holes keeps the data */
			fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, sector * SECTOR,
				  count * SECTOR);
		} else {
			if (flags & ~1u)
				return BLK_S_UNSUPP;
			if (zero_range(b, sector * SECTOR, count * SECTOR, flags & 1))
				return BLK_S_IOERR;
		}
	}
	return BLK_S_OK;
}

/* serve one request; returns the bytes written into the guest's buffers */
static uint32_t blk_request(struct virtio_blk *b, const struct virtq_req *r)
{
	struct {
		uint32_t type, reserved;
		uint64_t sector;
	} hdr;
	uint8_t status = BLK_S_OK;
	uint64_t data = 0, len;

	if (r->wlen < 1 || vq_read(r, 0, &hdr, sizeof(hdr)) < sizeof(hdr)) {
		b->vd.errors++;
		return 0; /* no header or nowhere to put the status */
	}
	switch (hdr.type) {
	case BLK_T_IN:
		len = r->wlen - 1;
		if (len % SECTOR || !in_range(b, hdr.sector, len / SECTOR) ||
		    seg_io(b, r, true, 0, len, hdr.sector * SECTOR)) {
			status = BLK_S_IOERR;
			break;
		}
		b->reads++;
		b->read_bytes += len;
		data = len;
		break;
	case BLK_T_OUT:
		len = r->rlen - sizeof(hdr);
		if (b->ro || len % SECTOR || !in_range(b, hdr.sector, len / SECTOR) ||
		    seg_io(b, r, false, sizeof(hdr), len, hdr.sector * SECTOR)) {
			status = BLK_S_IOERR;
			break;
		}
		b->writes++;
		b->write_bytes += len;
		break;
	case BLK_T_FLUSH:
		b->flushes++;
		if (!b->ro && fdatasync(b->fd))
			status = BLK_S_IOERR;
		break;
	case BLK_T_GET_ID:
		data = r->wlen - 1 < BLK_ID_BYTES ? r->wlen - 1 : BLK_ID_BYTES;
		vq_write(r, 0, b->id, data);
		break;
	case BLK_T_DISCARD:
	case BLK_T_WRITE_ZEROES:
		status = blk_ranges(b, r, hdr.type);
		break;
	default:
		status = BLK_S_UNSUPP;
		break;
	}
	if (status == BLK_S_IOERR)
		b->io_errors++;
	vq_write(r, r->wlen - 1, &status, 1);
	return data + 1;
}

static void blk_notify(struct virtio_dev *vd, int q)
{
	struct virtio_blk *b = vd->opaque;
	struct virtq *vq = &vd->vq[q];
	bool irq = false;
	int rc;

	while ((rc = vq_pop(vd->vm, vq, &b->req)) > 0) {
		uint32_t written = blk_request(b, &b->req);

		if (vq_push(vq, b->req.head, written))
			irq = true;
	}
	if (irq)
		virtio_notify_queue(vd, q);
	if (rc < 0)
		virtio_needs_reset(vd);
}

static const struct virtio_dev_ops blk_ops = { .notify = blk_notify };

int virtio_blk_parse(const char *spec, char **path, bool *ro)
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

struct virtio_blk *virtio_blk_create(struct vm *vm, struct pci_bus *bus, const char *path, bool ro)
{
	struct virtio_blk *b = calloc(1, sizeof(*b));
	struct stat st;
	off_t size;

	if (!b)
		return NULL;
	b->fd = open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (b->fd < 0) {
		fprintf(stderr, "accord: --disk %s: %s\n", path, strerror(errno));
		goto fail;
	}
	if (fstat(b->fd, &st) || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
		fprintf(stderr, "accord: --disk %s: not a regular file or block device\n", path);
		goto fail;
	}
	size = lseek(b->fd, 0, SEEK_END);
	if (size < 0) {
		fprintf(stderr, "accord: --disk %s: %s\n", path, strerror(errno));
		goto fail;
	}
	b->ro = ro;
	b->sectors = size / SECTOR;
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	memcpy(b->id, base, strnlen(base, BLK_ID_BYTES));

	struct virtio_dev *vd = &b->vd;
	vd->device_id = VIRTIO_ID_BLOCK;
	vd->ops = &blk_ops;
	vd->opaque = b;
	vd->nqueues = 1;
	vd->features = 1ull << BLK_F_SEG_MAX | 1ull << BLK_F_BLK_SIZE | 1ull << BLK_F_FLUSH |
		       1ull << BLK_F_DISCARD | 1ull << BLK_F_WRITE_ZEROES;
	if (ro)
		vd->features |= 1ull << BLK_F_RO;
	put_le(vd->config + 0, b->sectors, 8);       /* capacity */
	put_le(vd->config + 12, VIRTQ_MAX_SIZE - 2, 4); /* seg_max */
	put_le(vd->config + 20, SECTOR, 4);          /* blk_size */
	put_le(vd->config + 36, MAX_RANGE_SECTORS, 4); /* max_discard_sectors */
	put_le(vd->config + 40, MAX_RANGES, 4);      /* max_discard_seg */
	put_le(vd->config + 44, 8, 4);               /* discard_sector_alignment */
	put_le(vd->config + 48, MAX_RANGE_SECTORS, 4); /* max_write_zeroes_sectors */
	put_le(vd->config + 52, MAX_RANGES, 4);      /* max_write_zeroes_seg */
	vd->config[56] = 1;                          /* write_zeroes_may_unmap */
	vd->config_len = 60;
	/* class 0x0180: other mass storage controller */
	if (virtio_pci_init(vd, vm, bus, 0x018000))
		goto fail;
	return b;
fail:
	if (b->fd >= 0)
		close(b->fd);
	free(b);
	return NULL;
}

void virtio_blk_counters(struct virtio_blk *b, struct virtio_blk_counters *c)
{
	*c = (struct virtio_blk_counters){
		.reads = b->reads, .writes = b->writes, .flushes = b->flushes, .io_errors = b->io_errors,
		.read_bytes = b->read_bytes, .write_bytes = b->write_bytes,
	};
}
