/* netvsc as a hostile Hyper-V guest drives it: the VMBus channel
 * messages, ring packets carrying NVSP and RNDIS, send and receive buffer
 * GPADLs, send sections and page ranges in guest RAM, receive completions,
 * and frames arriving from the network backend (a test backend that
 * counts what it is sent). The partition is the real one
 * (PERSONALITY_HYPERV) with one netvsc NIC, relid 1.
 * smoke runs: 5000
 *
 * Input: operations, each an opcode byte and operands (little-endian):
 * 0 to 3 those of hyperv.h (post, write, signal, eom), and
 *
 *   4 frame   len:2 dst:1             a frame from the backend, to the
 *                                     NIC's MAC (dst even) or broadcast
 *
 * Every input starts from an UNLOAD on both connection ids, with that
 * megabyte and the SynIC pages zeroed. */
#define _GNU_SOURCE
#include <unistd.h>

#include "net/net.h"
#include "vm/iothread.h"
#include "hyperv.h"

static const uint8_t mac[6] = { 0x52, 0x41, 0x43, 0, 0, 1 };
static struct net_backend nb;
static struct iothread *io;
static uint64_t tx_frames;

static void fz_send(struct net_backend *b, const void *frame, size_t len)
{
	/* a frame the device passes on is whole: within the backend's limit */
	if (len < 14 || len > NET_MAX_FRAME)
		abort();
	tx_frames++;
}

static void fz_resume(struct net_backend *b)
{
}

static const struct net_backend_ops fz_ops = { fz_send, fz_resume };

static void fuzz_init(void)
{
	struct vmbus *vb;

	hvf_init();
	nb.ops = &fz_ops;
	/* the I/O thread is never started: frames reach the guest when it
	 * signals, from the same thread */
	io = iothread_create();
	vb = vmbus_create(&vm);
	if (!io || !vb || !netvsc_create(vb, &vm, io, &nb, mac))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t frame[NET_MAX_FRAME];
	struct in in = { data, size };

	hvf_reset();
	while (in.n) {
		unsigned op = take(&in, 1) % 5;
		size_t len;

		if (op != 4) {
			hvf_op(&in, op);
			continue;
		}
		len = take(&in, 2) % (NET_MAX_FRAME + 2);
		memset(frame, 0xff, 6);
		if (!(take(&in, 1) & 1))
			memcpy(frame, mac, 6);
		nb.port.receive(nb.port.opaque, frame, len);
	}
	return 0;
}

/* ---- seeds: a guest that connects, hands over its buffers, initialises
 * RNDIS, sends and receives ---- */

/* the receive buffer (16 pages) and the send buffer (4 pages) */
#define RX_GPA (AREA + 0x10000u)
#define TX_GPA (AREA + 0x20000u)

/* an RNDIS message in send section 0 */
static void p_rndis(struct prog *p, const uint8_t *m, uint32_t len)
{
	p_write(p, TX_GPA, m, len);
	p_nvsp(p, 107, 1, 0, len);
}

static void p_setup(struct prog *p)
{
	uint8_t m[64] = { 2 };

	p_open(p);
	p_gpadl_create(p, 0x2000, RX_GPA, 16);
	p_gpadl_create(p, 0x2001, TX_GPA, 4);
	p_nvsp(p, 1, 0x60001, 0x60001, 0);
	p_nvsp(p, 101, 0x2000, 0xcafe, 0);
	p_nvsp(p, 104, 0x2001, 0, 0);
	fz_put32(m + 4, 24);
	fz_put32(m + 8, 1);
	fz_put32(m + 12, 1);
	p_rndis(p, m, 24);
}

static void fuzz_seeds(void)
{
	struct prog p = { .gpadl = 0x1000 }; /* the ring's GPADL */
	uint8_t m[128] = { 0 }, comp[8] = { 108, 0, 0, 0, 1 };

	p_setup(&p);
	fuzz_seed("setup", p.b, p.n);
	/* QUERY PERMANENT_ADDRESS */
	fz_put32(m, 4);
	fz_put32(m + 4, 28);
	fz_put32(m + 8, 2);
	fz_put32(m + 12, 0x01010101);
	fz_put32(m + 20, 20);
	p_rndis(&p, m, 28);
	fuzz_seed("query", p.b, p.n);
	/* SET CURRENT_PACKET_FILTER, then a frame each way and a completion */
	fz_put32(m, 5);
	fz_put32(m + 4, 32);
	fz_put32(m + 8, 3);
	fz_put32(m + 12, 0x0001010e);
	fz_put32(m + 16, 4);
	fz_put32(m + 28, 0x0d);
	p_rndis(&p, m, 32);
	memset(m, 0, sizeof(m));
	fz_put32(m, 1);
	fz_put32(m + 4, 44 + 60);
	fz_put32(m + 8, 36);
	fz_put32(m + 12, 60);
	memset(m + 44, 0xff, 6);
	p_rndis(&p, m, 44 + 60);
	pb(&p, 4, 1);
	pb(&p, 60, 2);
	pb(&p, 0, 1);
	p_packet(&p, 6, m, 0, m, 0);
	p_packet(&p, 11, comp, 0, comp, sizeof(comp));
	fuzz_seed("frames", p.b, p.n);
}
