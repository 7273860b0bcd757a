/* virtio-blk (virtio 1.x, 5.2) on a disk backend (src/disk/): IN, OUT, FLUSH,
 * GET_ID, DISCARD and WRITE_ZEROES; read-only disks advertise
 * VIRTIO_BLK_F_RO and fail every write. Requests are served under
 * vm->io_lock on the VM's I/O thread (vm->io; the transport hands it the
 * notifies), so a vCPU goes on running while its disk I/O is done; without
 * an I/O thread, on the vCPU thread that notified. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dev/virtio/virtio.h"
#include "disk/disk.h"
#include "vm/vm.h"
#include "vm/snapshot.h"

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
	struct disk *disk;
	bool ro;
	uint64_t sectors;
	char id[BLK_ID_BYTES];
	struct virtio_blk_counters c;
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
		uint64_t off, chunk;

		if (skip >= s->len) {
			skip -= s->len;
			continue;
		}
		off = skip;
		skip = 0;
		chunk = s->len - off;
		if (chunk > len)
			chunk = len;
		if (to_guest ? disk_read(b->disk, s->p + off, chunk, pos)
			     : disk_write(b->disk, s->p + off, chunk, pos))
			return -1;
		pos += chunk;
		len -= chunk;
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
			disk_discard(b->disk, sector * SECTOR, count * SECTOR);
		} else {
			if (flags & ~1u)
				return BLK_S_UNSUPP;
			if (disk_zero(b->disk, sector * SECTOR, count * SECTOR, flags & 1))
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
		b->c.reads++;
		b->c.read_bytes += len;
		data = len;
		break;
	case BLK_T_OUT:
		len = r->rlen - sizeof(hdr);
		if (b->ro || len % SECTOR || !in_range(b, hdr.sector, len / SECTOR) ||
		    seg_io(b, r, false, sizeof(hdr), len, hdr.sector * SECTOR)) {
			status = BLK_S_IOERR;
			break;
		}
		b->c.writes++;
		b->c.write_bytes += len;
		break;
	case BLK_T_FLUSH:
		b->c.flushes++;
		if (disk_flush(b->disk))
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
		b->c.io_errors++;
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

/* Requests are served as they are notified, so none is in flight while
 * the vCPUs are paused; what they wrote reaches the image before the
 * snapshot that assumes it. The section: the image's size in sectors (to
 * notice a disk that is not the one the guest had), then u32 version, u32
 * 0 and the counters (struct virtio_blk_counters), which go on in the
 * restored VM as the guest's own statistics do. A section of the sectors
 * alone (version 1, before the counters) loads with them left as they are. */
#define BLK_SNAP_VERSION 2

static int blk_save(void *o, struct snap_buf *sb, char *err, size_t n)
{
	struct virtio_blk *b = o;
	uint32_t ver[2] = { BLK_SNAP_VERSION, 0 };

	if (!b->ro && disk_flush(b->disk) < 0) {
		snprintf(err, n, "cannot flush the disk %s", b->disk->name);
		return -1;
	}
	snap_put(sb, &b->sectors, 8);
	snap_put(sb, ver, 8);
	snap_put(sb, &b->c, sizeof(b->c));
	return 0;
}

static int blk_load(void *o, struct snap_rd *r, char *err, size_t n)
{
	struct virtio_blk *b = o;
	uint64_t sectors;
	uint32_t ver[2] = { 1, 0 };
	struct virtio_blk_counters c;

	if (!snap_get(r, &sectors, 8))
		return -1;
	if (r->off < r->len &&
	    (!snap_get(r, ver, 8) || ver[0] != BLK_SNAP_VERSION || ver[1] || !snap_get(r, &c, sizeof(c)))) {
		snprintf(err, n, "bad virtio-blk state (version %u)", ver[0]);
		return -1;
	}
	if (sectors != b->sectors) {
		snprintf(err, n, "the disk %s has %llu sectors, the snapshot's had %llu", b->disk->name,
			 (unsigned long long)b->sectors, (unsigned long long)sectors);
		return -1;
	}
	if (ver[0] == BLK_SNAP_VERSION)
		b->c = c;
	return 0;
}

struct virtio_blk *virtio_blk_create(struct vm *vm, struct pci_bus *bus, const char *path, bool ro)
{
	struct virtio_blk *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->disk = disk_open(path, ro);
	if (!b->disk)
		goto fail;
	b->ro = ro;
	b->sectors = b->disk->size / SECTOR;
	memcpy(b->id, b->disk->name, strnlen(b->disk->name, BLK_ID_BYTES));

	struct virtio_dev *vd = &b->vd;
	vd->device_id = VIRTIO_ID_BLOCK;
	vd->ops = &blk_ops;
	vd->opaque = b;
	vd->io = vm->io;
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
	if (virtio_pci_init(vd, vm, bus, 0x018000) || vm_snap_register(vm, "virtio-blk", blk_save, blk_load, b))
		goto fail;
	return b;
fail:
	disk_close(b->disk);
	free(b);
	return NULL;
}

void virtio_blk_counters(struct virtio_blk *b, struct virtio_blk_counters *c)
{
	*c = b->c;
}
