/* virtio-rng through its request queue, fed by a fuzzed driver (virtio.h):
 * descriptor chains, indirect tables and ring indices are the input. A
 * chain with a driver-readable buffer must put the device in NEEDS_RESET,
 * and whatever the chains say, the device fills only guest RAM. */
#include "virtio.h"

static void fuzz_init(void)
{
	vfuzz_vm();
	if (!virtio_rng_create(&vm, vf_bus))
		abort();
	vfuzz_attach(1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	vfuzz_run(data, size);
	return 0;
}

/* a chain of n device-writable buffers of len bytes each */
static void rng_seed(const char *name, uint8_t feat, unsigned n, uint32_t len, uint16_t last_flags,
		     bool indirect)
{
	struct vf_prog p = { .n = 0 };
	int op = indirect ? 1 : 0;

	vp_bytes(&p, feat, 1);
	vp_bytes(&p, 4, 1);
	vp_bytes(&p, 0, 1);
	for (unsigned i = 0; i + 1 < n; i++)
		vp_desc(&p, op, i, 0x1000 * i, len, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, i + 1);
	vp_desc(&p, op, n - 1, 0x1000 * (n - 1), len, last_flags, 0);
	if (indirect) {
		vp_bytes(&p, 0, 1);
		vp_bytes(&p, 0, 1);
		vp_bytes(&p, 1, 1);
		vp_bytes(&p, VF_INDIRECT, 4);
		vp_bytes(&p, 16 * n, 4);
		vp_bytes(&p, VIRTQ_DESC_F_INDIRECT, 2);
		vp_bytes(&p, 0, 2);
	}
	vp_kick(&p, 0, 0);
	fuzz_seed(name, p.b, p.n);
}

static void fuzz_seeds(void)
{
	rng_seed("one", 0, 1, 64, VIRTQ_DESC_F_WRITE, false);
	rng_seed("three", 0, 3, 4096, VIRTQ_DESC_F_WRITE, false);
	rng_seed("readable", 0, 2, 16, 0, false);
	rng_seed("indirect", 1, 2, 512, VIRTQ_DESC_F_WRITE, true);
	rng_seed("event-idx", 2, 1, 32, VIRTQ_DESC_F_WRITE, false);
	rng_seed("desc-at-end", 0x08, 1, 128, VIRTQ_DESC_F_WRITE, false);
	rng_seed("used-at-end", 0x18, 2, 256, VIRTQ_DESC_F_WRITE, false);
}
