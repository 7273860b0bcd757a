/* virtio-blk through its virtqueue, fed by a fuzzed driver (virtio.h):
 * descriptor chains, indirect tables, ring indices and request headers
 * are the input. The disk is a 1 MiB memfd; whatever the requests say, its
 * size must not change (no write past the capacity) and the device must
 * not touch memory outside guest RAM. */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "virtio.h"

#define IMG_SIZE (1u << 20)

static int img;

static void fuzz_init(void)
{
	char path[64];

	vfuzz_vm();
	/* served on an I/O thread, as accord runs it (vf_kick serves it) */
	vm.io = iothread_create();
	if (!vm.io)
		abort();
	img = memfd_create("disk", 0);
	if (img < 0 || ftruncate(img, IMG_SIZE) < 0)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", img);
	if (!virtio_blk_create(&vm, vf_bus, path, false))
		abort();
	vfuzz_attach(1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stat st;

	vfuzz_run(data, size);
	if (fstat(img, &st) < 0 || st.st_size != IMG_SIZE)
		abort();
	return 0;
}

/* request type, sector; then the three-descriptor chain */
static void blk_seed(const char *name, uint8_t feat, uint32_t type, uint64_t sector,
		     uint32_t len, bool to_guest, bool indirect)
{
	struct vf_prog p = { .n = 0 };
	uint8_t hdr[16] = { 0 };
	uint16_t dflags = to_guest ? VIRTQ_DESC_F_WRITE : 0;
	int op = indirect ? 1 : 0;

	vp_bytes(&p, feat, 1);
	vp_bytes(&p, 4, 1); /* 16 entries */
	vp_bytes(&p, 0, 1);
	fz_put32(hdr, type);
	fz_put64(hdr + 8, sector);
	vp_data(&p, 0, hdr, 16);
	if (type == 11 || type == 13) {
		uint8_t seg[16] = { 0 };

		fz_put64(seg, sector);
		fz_put32(seg + 8, len / 512);
		vp_data(&p, 0x100, seg, 16);
		vp_desc(&p, op, 0, 0, 16, VIRTQ_DESC_F_NEXT, 1);
		vp_desc(&p, op, 1, 0x100, 16, VIRTQ_DESC_F_NEXT, 2);
	} else if (len) {
		vp_desc(&p, op, 0, 0, 16, VIRTQ_DESC_F_NEXT, 1);
		vp_desc(&p, op, 1, 0x1000, len, VIRTQ_DESC_F_NEXT | dflags, 2);
	} else {
		vp_desc(&p, op, 0, 0, 16, VIRTQ_DESC_F_NEXT, 2);
	}
	vp_desc(&p, op, 2, 0x200, 1, VIRTQ_DESC_F_WRITE, 0);
	if (indirect) {
		/* the table at the start of the buffer area's neighbour */
		vp_bytes(&p, 0, 1);
		vp_bytes(&p, 0, 1);
		vp_bytes(&p, 1, 1);
		vp_bytes(&p, VF_INDIRECT, 4);
		vp_bytes(&p, 48, 4);
		vp_bytes(&p, VIRTQ_DESC_F_INDIRECT, 2);
		vp_bytes(&p, 0, 2);
	}
	vp_kick(&p, 0, 0);
	fuzz_seed(name, p.b, p.n);
}

static void fuzz_seeds(void)
{
	blk_seed("in", 0, 0, 2, 1024, true, false);
	blk_seed("out", 0, 1, 8, 512, false, false);
	blk_seed("flush", 0, 4, 0, 0, false, false);
	blk_seed("get-id", 0, 8, 0, 20, true, false);
	blk_seed("discard", 4, 11, 16, 4096, false, false);
	blk_seed("write-zeroes", 4, 13, 32, 1024, false, false);
	blk_seed("in-indirect", 1, 0, 4, 2048, true, true);
	blk_seed("out-indirect-event", 3, 1, 1, 512, false, true);
	blk_seed("last-sector", 0, 0, IMG_SIZE / 512 - 1, 512, true, false);
	/* each ring against the end of RAM once */
	blk_seed("in-desc-at-end", 0x08, 0, 3, 512, true, false);
	blk_seed("out-avail-at-end", 0x12, 1, 5, 512, false, false);
	blk_seed("in-used-at-end", 0x19, 0, 7, 1024, true, true);
}
