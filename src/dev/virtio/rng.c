/* virtio-rng, the entropy device (virtio 1.x, 5.4): one request queue whose
 * device-writable buffers the device fills from the host's getrandom(2).
 * The spec forbids driver-readable buffers on this queue, so a chain with
 * one is a broken driver (NEEDS_RESET). One chain gets at most RNG_MAX_CHAIN
 * bytes, so a guest cannot make a single notification cost the host more
 * than that per buffer it posted. Requests are served on the vCPU thread
 * that notified, under vm->io_lock. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

#include "dev/virtio/virtio.h"
#include "vm/vm.h"

#define VIRTIO_ID_RNG 4
#define RNG_MAX_CHAIN 65536u

struct virtio_rng {
	struct virtio_dev vd;
	uint64_t bytes, requests, host_errors;
	struct virtq_req req;
};

/* fill up to RNG_MAX_CHAIN bytes of the chain's writable buffers; returns
 * the bytes written, 0 when the host has no entropy to give */
static uint32_t rng_fill(struct virtio_rng *r, const struct virtq_req *req)
{
	uint64_t want = req->wlen < RNG_MAX_CHAIN ? req->wlen : RNG_MAX_CHAIN;
	uint64_t done = 0;
	uint8_t buf[4096];

	while (done < want) {
		size_t n = want - done < sizeof(buf) ? want - done : sizeof(buf);
		ssize_t got = getrandom(buf, n, 0);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			r->host_errors++;
			break;
		}
		vq_write(req, done, buf, got);
		done += got;
	}
	r->bytes += done;
	return done;
}

static void rng_notify(struct virtio_dev *vd, int q)
{
	struct virtio_rng *r = vd->opaque;
	struct virtq *vq = &vd->vq[q];
	bool irq = false;
	int rc;

	while ((rc = vq_pop(vd->vm, vq, &r->req)) > 0) {
		if (r->req.nr) {
			rc = -1;
			break;
		}
		r->requests++;
		if (vq_push(vq, r->req.head, rng_fill(r, &r->req)))
			irq = true;
	}
	if (irq)
		virtio_notify_queue(vd, q);
	if (rc < 0)
		virtio_needs_reset(vd);
}

static const struct virtio_dev_ops rng_ops = { .notify = rng_notify };

struct virtio_rng *virtio_rng_create(struct vm *vm, struct pci_bus *bus)
{
	struct virtio_rng *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->vd.device_id = VIRTIO_ID_RNG;
	r->vd.ops = &rng_ops;
	r->vd.opaque = r;
	r->vd.nqueues = 1;
	/* class 0xff0000: a device that fits no defined class, as QEMU's */
	if (virtio_pci_init(&r->vd, vm, bus, 0xff0000)) {
		fprintf(stderr, "accord: --rng: cannot add the virtio-rng device\n");
		free(r);
		return NULL;
	}
	return r;
}
