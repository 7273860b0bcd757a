/* virtio-net through its receive, transmit and control queues, fed by a
 * fuzzed driver (virtio.h), on a test backend that swallows what the guest
 * transmits and hands it frames from the input to receive. With every
 * feature offered (the program's feature byte, bit 2) the transmit path
 * meets the offload requests in the headers (checksum completion, TCP
 * segmentation, their checks) and queue 2 the control commands.
 *
 * Input: byte 0 the number of frames to receive (mod 5), each a length
 * (2 bytes: bits 0-14 mod 1600; bit 15: a 10-byte offload header, as a
 * TAP interface's, comes first and the frame arrives through
 * receive_offload) and its bytes; the rest is the driver's program. The
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
	bool has_hdr;
	struct net_offload o;
};

static struct net_backend nb;
static struct frame frames[MAX_FRAMES];
static unsigned nframes, next_frame;

static void deliver(void)
{
	if (next_frame < nframes) {
		const struct frame *f = &frames[next_frame++];

		if (f->has_hdr)
			nb.port.receive_offload(nb.port.opaque, &f->o, f->p, f->len);
		else
			nb.port.receive(nb.port.opaque, f->p, f->len);
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
	vm.io = io;
	nb.ops = &tb_ops;
	if (!io || !virtio_net_create(&vm, vf_bus, io, &nb, &(struct net_config){ .kind = NET_USER }))
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
		unsigned word = off + 2 <= size ? data[off] | data[off + 1] << 8 : 0;
		size_t len = (word & 0x7fff) % MAX_LEN;
		struct frame *f = &frames[i];

		off = off + 2 <= size ? off + 2 : size;
		f->has_hdr = word & 0x8000;
		if (f->has_hdr) {
			uint8_t h[10] = { 0 };

			for (int k = 0; k < 10 && off < size; k++)
				h[k] = data[off++];
			f->o = (struct net_offload){ h[0], h[1], h[2] | h[3] << 8, h[4] | h[5] << 8,
						     h[6] | h[7] << 8, h[8] | h[9] << 8 };
		}
		if (len > size - off)
			len = size - off;
		f->p = data + off;
		f->len = len;
		off += len;
	}
	vfuzz_run(data + off, size - off);
	while (next_frame < nframes)
		deliver();
	vf_kick(0);
	drain_irqs();
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

/* a TCP/IPv4 frame of len bytes (len >= 54) with its pseudo-header's
 * checksum in place, as a checksum-offloading driver hands it over */
static size_t tcp_frame(uint8_t *f, size_t len)
{
	memset(f, 0, len);
	memcpy(f, "\xff\xff\xff\xff\xff\xff\x52\x41\x43\0\0\1\x08\x00", 14);
	f[14] = 0x45;
	f[16] = (len - 14) >> 8;
	f[17] = len - 14;
	f[22] = 64;
	f[23] = 6;
	memcpy(f + 26, "\x0a\x00\x02\x0f\x0a\x00\x02\x02", 8);
	f[46] = 0x50;
	f[47] = 0x18;
	for (size_t i = 54; i < len; i++)
		f[i] = i * 13;
	return len;
}

/* a header with an offload request and a TCP frame of len bytes */
static void offload_seed(const char *name, uint8_t flags, uint8_t gso, uint16_t gso_size,
			 uint16_t cstart, uint16_t coff, size_t len)
{
	struct net_seed s = { .n = 0 };
	struct vf_prog p = { .n = 0 };
	uint8_t hdr[12] = { flags, gso, 54, 0, gso_size, gso_size >> 8, cstart, cstart >> 8, coff,
			    coff >> 8 };
	uint8_t f[800];

	s.b[s.n++] = 0;
	tcp_frame(f, len);
	vp_bytes(&p, 4, 1); /* every feature */
	vp_bytes(&p, 8, 1);
	vp_bytes(&p, 1, 1);
	vp_data(&p, 0, hdr, sizeof(hdr));
	for (size_t o = 0; o < len; o += 200)
		vp_data(&p, 0x100 + o, f + o, len - o < 200 ? len - o : 200);
	vp_desc(&p, 0, 0, 0, 12, VIRTQ_DESC_F_NEXT, 1);
	vp_desc(&p, 0, 1, 0x100, len, 0, 0);
	vp_kick(&p, 0, 1);
	ns_write(name, &s, &p);
}

/* a control command: class, command, data, and a byte for the ack */
static void ctrl_seed(const char *name, uint8_t cls, uint8_t cmd, const void *data, uint8_t dlen)
{
	struct net_seed s = { .n = 0 };
	struct vf_prog p = { .n = 0 };
	uint8_t c[64] = { cls, cmd };

	memcpy(c + 2, data, dlen);
	s.b[s.n++] = 0;
	vp_bytes(&p, 4, 1);
	vp_bytes(&p, 4, 1);
	vp_bytes(&p, 2, 1);
	vp_data(&p, 0, c, 2 + dlen);
	vp_desc(&p, 0, 0, 0, 2 + dlen, VIRTQ_DESC_F_NEXT, 1);
	vp_desc(&p, 0, 1, 0x100, 1, VIRTQ_DESC_F_WRITE, 0);
	vp_kick(&p, 0, 2);
	ns_write(name, &s, &p);
}

/* a frame with a TAP interface's header, into a receive buffer */
static void rx_offload_seed(const char *name, uint8_t flags, uint8_t gso)
{
	struct net_seed s = { .n = 0 };
	struct vf_prog p = { .n = 0 };
	uint8_t f[600];
	size_t len = tcp_frame(f, sizeof(f));
	uint8_t h[10] = { flags, gso, 54, 0, 200, 0, 34, 0, 16, 0 };

	s.b[s.n++] = 1;
	fz_put16(s.b + s.n, len | 0x8000);
	s.n += 2;
	memcpy(s.b + s.n, h, 10);
	s.n += 10;
	memcpy(s.b + s.n, f, len);
	s.n += len;
	vp_bytes(&p, 4, 1);
	vp_bytes(&p, 4, 1);
	vp_bytes(&p, 0, 1);
	vp_desc(&p, 0, 0, 0, 2048, VIRTQ_DESC_F_WRITE, 0);
	vp_kick(&p, 0, 0);
	ns_write(name, &s, &p);
}

static void fuzz_seeds(void)
{
	static const uint8_t table[20] = { 1, 0, 0, 0, 2, 0x11, 0x22, 0x33, 0x44, 0x55,
					   1, 0, 0, 0, 1, 0, 0x5e, 0, 0, 1 };

	offload_seed("tx-csum", 1, 0, 0, 34, 16, 600);
	offload_seed("tx-tso4", 1, 1, 200, 34, 16, 800);
	offload_seed("tx-tso4-ecn", 1, 0x81, 100, 34, 16, 800);
	offload_seed("tx-gso-size-0", 1, 1, 0, 34, 16, 800);
	offload_seed("tx-csum-beyond", 1, 0, 0, 790, 16, 800);
	ctrl_seed("ctrl-promisc", 0, 0, "\0", 1);
	ctrl_seed("ctrl-allmulti", 0, 1, "\1", 1);
	ctrl_seed("ctrl-mac-table", 1, 0, table, sizeof(table));
	ctrl_seed("ctrl-mac-addr", 1, 1, "\x52\x41\x43\0\0\x77", 6);
	ctrl_seed("ctrl-short", 1, 0, "\xff\xff\xff\xff", 4);
	rx_offload_seed("rx-data-valid", 2, 0);
	rx_offload_seed("rx-needs-csum", 1, 0);
	rx_offload_seed("rx-gso", 1, 1);
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
