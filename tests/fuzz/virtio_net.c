/* virtio-net through its receive and transmit queues, fed by a fuzzed
 * driver (virtio.h), on a test backend that swallows what the guest
 * transmits and hands it frames from the input to receive.
 *
 * Input: byte 0 the number of frames to receive (mod 5), each a length
 * (2 bytes, mod 1600) and its bytes; the rest is the driver's program. The
 * backend answers every frame the guest transmits with the next of them,
 * from inside send as slirp does; those left over arrive after the
 * program, followed by a notification of the receive queue. The I/O
 * thread is never started, so frames move into guest buffers only on a
 * notification, the same way for every run of an input. */
#include "net/net.h"
#include "vm/iothread.h"
#include "virtio.h"

#define MAX_FRAMES 4
#define MAX_LEN 1600

struct frame {
	const uint8_t *p;
	size_t len;
};

static struct net_backend nb;
static struct frame frames[MAX_FRAMES];
static unsigned nframes, next_frame;

static void deliver(void)
{
	if (next_frame < nframes) {
		nb.port.receive(nb.port.opaque, frames[next_frame].p, frames[next_frame].len);
		next_frame++;
	}
}

static void tb_send(struct net_backend *b, const void *frame, size_t len)
{
	static uint8_t sink[NET_MAX_FRAME];

	(void)b;
	if (len > NET_MAX_FRAME)
		abort();
	/* the whole frame must be readable (ASan checks the copy) */
	memcpy(sink, frame, len);
	deliver();
}

static void tb_resume(struct net_backend *b)
{
	(void)b;
}

static const struct net_backend_ops tb_ops = { tb_send, tb_resume };

static void fuzz_init(void)
{
	struct iothread *io = iothread_create();

	vfuzz_vm();
	vf_vm.io = io;
	nb.ops = &tb_ops;
	if (!io || !virtio_net_create(&vf_vm, vf_bus, io, &nb, NULL))
		abort();
	vfuzz_attach(1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 1;

	if (!size)
		return 0;
	nframes = data[0] % (MAX_FRAMES + 1);
	next_frame = 0;
	for (unsigned i = 0; i < nframes; i++) {
		size_t len = off + 2 <= size ? (data[off] | data[off + 1] << 8) % MAX_LEN : 0;

		off = off + 2 <= size ? off + 2 : size;
		if (len > size - off)
			len = size - off;
		frames[i] = (struct frame){ data + off, len };
		off += len;
	}
	vfuzz_run(data + off, size - off);
	while (next_frame < nframes)
		deliver();
	vf_kick(0);
	vfuzz_drain();
	return 0;
}

/* ---- seeds ---- */

struct net_seed {
	uint8_t b[8192];
	size_t n;
};

static void ns_frame(struct net_seed *s, size_t len)
{
	fz_put16(s->b + s->n, len);
	s->n += 2;
	for (size_t i = 0; i < len; i++)
		s->b[s->n + i] = i < 6 ? 0xff : i < 12 ? 0x52 : i == 12 ? 0x08 : i == 13 ? 0x06 : i;
	s->n += len;
}

static void ns_write(const char *name, struct net_seed *s, const struct vf_prog *p)
{
	memcpy(s->b + s->n, p->b, p->n);
	fuzz_seed(name, s->b, s->n + p->n);
}

/* frames of the given lengths into n receive buffers of len bytes */
static void rx_seed(const char *name, uint8_t feat, unsigned nf, size_t flen, unsigned nbuf, uint32_t len)
{
	struct net_seed s = { .n = 0 };
	struct vf_prog p = { .n = 0 };

	s.b[s.n++] = nf;
	for (unsigned i = 0; i < nf; i++)
		ns_frame(&s, flen);
	vp_bytes(&p, feat, 1);
	vp_bytes(&p, 4, 1);
	vp_bytes(&p, 0, 1);
	for (unsigned i = 0; i < nbuf; i++) {
		vp_desc(&p, 0, i, 0x800 * i, len, VIRTQ_DESC_F_WRITE, 0);
		vp_kick(&p, i, 0);
	}
	ns_write(name, &s, &p);
}

/* a header and a frame of len bytes in one or two buffers */
static void tx_seed(const char *name, uint8_t feat, unsigned nf, uint8_t gso, size_t len, bool split)
{
	struct net_seed s = { .n = 0 };
	struct vf_prog p = { .n = 0 };
	uint8_t hdr[12] = { 0, gso };

	s.b[s.n++] = nf;
	for (unsigned i = 0; i < nf; i++)
		ns_frame(&s, 60);
	vp_bytes(&p, feat, 1);
	vp_bytes(&p, 4, 1);
	vp_bytes(&p, 1, 1);
	vp_data(&p, 0, hdr, sizeof(hdr));
	if (split) {
		vp_desc(&p, 0, 0, 0, 12, VIRTQ_DESC_F_NEXT, 1);
		vp_desc(&p, 0, 1, 0x100, len, 0, 0);
	} else {
		vp_data(&p, 12, "\xff\xff\xff\xff\xff\xff\x52\x41\x43\0\0\1\x08\x06", 14);
		vp_desc(&p, 0, 0, 0, 12 + len, 0, 0);
	}
	vp_kick(&p, 0, 1);
	ns_write(name, &s, &p);
}

static void fuzz_seeds(void)
{
	rx_seed("rx", 0, 1, 60, 1, 1526);
	rx_seed("rx-mrg", 4, 2, 1514, 4, 512);
	rx_seed("rx-no-buffer", 0, 3, 100, 0, 0);
	rx_seed("rx-short-buffer", 4, 1, 1514, 1, 8);
	rx_seed("rx-used-at-end", 0x1c, 2, 64, 2, 2048);
	tx_seed("tx", 0, 0, 0, 60, false);
	tx_seed("tx-split-answered", 0, 2, 0, 1514, true);
	tx_seed("tx-gso", 0, 0, 1, 60, false);
	tx_seed("tx-runt", 0, 1, 0, 4, false);
	tx_seed("tx-desc-at-end", 0x0c, 0, 0, 100, true);
}
