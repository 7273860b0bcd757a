/* virtio-net driven the way a guest driver would, on a test backend and a
 * running I/O thread: the PCI identity, the features offered (and the
 * offloads not offered), frames both ways byte for byte, merged receive
 * buffers, a frame waiting for buffers, flow control towards the backend,
 * frames a backend answers from inside send (as slirp does), --net
 * parsing. Then
 * malicious rings on both queues: buffers outside RAM, loops, oversized
 * lengths, bad indices, short headers, buffers of the wrong direction.
 * Each must leave the device NEEDS_RESET with a configuration interrupt,
 * send nothing to the backend, and change no guest RAM beyond the rings
 * and the receive buffers. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dev/dev.h"
#include "dev/pci.h"
#include "dev/virtio/virtio.h"
#include "engine/engine.h"
#include "net/net.h"
#include "vm/iothread.h"
#include "vm/vm.h"
#include "tap.h"
#include "testvm.h"

#define RAM_SIZE (16u << 20)
#define QSIZE 256
#define HDR_LEN 12
#define RXQ 0
#define TXQ 1
#define TXBUF 0x200000u
#define RXBUF 0x300000u /* QSIZE buffers of RXBUF_LEN */
#define RXBUF_LEN 2048u
#define INDIRECT 0x400000u

#define V_CONFIG 0x40
#define V_RX 0x41
#define V_TX 0x42

static const uint64_t q_desc[2] = { 0x100000, 0x110000 };
static const uint64_t q_avail[2] = { 0x102000, 0x112000 };
static const uint64_t q_used[2] = { 0x103000, 0x113000 };

static struct vm vm;
static struct pci_bus *bus;
static struct iothread *io;
static uint64_t bar, common, notify, devcfg, msix;
static uint16_t avail_idx[2];
static uint8_t *snapshot;

/* ---- the test backend: records what the device sends, can echo it ---- */

struct test_backend {
	struct net_backend nb;
	pthread_mutex_t lock;
	int sent, resumes;
	bool echo;
	size_t last_len;
	uint8_t last[NET_MAX_FRAME];
};

static struct test_backend tb;

static void tb_send(struct net_backend *nb, const void *frame, size_t len)
{
	pthread_mutex_lock(&tb.lock);
	tb.sent++;
	tb.last_len = len;
	memcpy(tb.last, frame, len);
	pthread_mutex_unlock(&tb.lock);
	/* slirp answers some frames at once, from inside send */
	if (tb.echo)
		nb->port.receive(nb->port.opaque, frame, len);
}

static void tb_resume(struct net_backend *nb)
{
	__atomic_fetch_add(&tb.resumes, 1, __ATOMIC_SEQ_CST);
}

static const struct net_backend_ops tb_ops = { tb_send, tb_resume };

/* a frame from the host side, on this thread as a backend's would be */
static void host_frame(const void *f, size_t len)
{
	tb.nb.port.receive(tb.nb.port.opaque, f, len);
}

static bool host_can_send(void)
{
	return tb.nb.port.can_receive(tb.nb.port.opaque);
}

/* ---- accesses, locked like the engines ---- */

static uint64_t mmio_r(uint64_t a, int size)
{
	return locked_read(&vm, &vm.mmio, a, size);
}

static void mmio_w(uint64_t a, uint64_t v, int size)
{
	locked_write(&vm, &vm.mmio, a, v, size);
}

static uint8_t *gp(uint64_t gpa)
{
	return vm_gpa(&vm, gpa, 1);
}

/* the vectors the LAPIC has pending, as a bitmask relative to V_CONFIG */
static unsigned take_irqs(void)
{
	unsigned seen = 0;
	int v;

	pthread_mutex_lock(&vm.io_lock);
	while ((v = lapic_get_interrupt(vm.vcpu[0]->lapic, true)) >= 0) {
		lapic_mmio_write(vm.vcpu[0]->lapic, 0xB0, 0, 4);
		if (v >= V_CONFIG && v <= V_TX)
			seen |= 1u << (v - V_CONFIG);
	}
	pthread_mutex_unlock(&vm.io_lock);
	return seen;
}

/* ---- the driver's side ---- */

static uint8_t status(void)
{
	return mmio_r(common + 0x14, 1);
}

static void set_desc(uint64_t table, int i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t *d = gp(table + 16 * i);

	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

static uint16_t used_idx(int q)
{
	return __atomic_load_n((uint16_t *)gp(q_used[q] + 2), __ATOMIC_ACQUIRE);
}

static void used_elem(int q, int i, uint32_t *id, uint32_t *len)
{
	uint8_t *e = gp(q_used[q] + 4 + 8 * (i % QSIZE));

	memcpy(id, e, 4);
	memcpy(len, e + 4, 4);
}

/* make head available on queue q without notifying */
static void post(int q, uint16_t head)
{
	memcpy(gp(q_avail[q] + 4 + 2 * (avail_idx[q] % QSIZE)), &head, 2);
	avail_idx[q]++;
	__atomic_store_n((uint16_t *)gp(q_avail[q] + 2), avail_idx[q], __ATOMIC_RELEASE);
}

/* The device's notifies are served on the I/O thread (through the
 * transport's eventfds); the checks after a notify need it served, so the
 * I/O thread is held while this thread serves it with the same callback
 * (iothread_run_pending). Frames from the backend still arrive on the
 * running I/O thread in between. */
static void kick(int q)
{
	iothread_stop(io);
	mmio_w(notify + 4 * q, q, 2);
	iothread_run_pending(io);
	iothread_start(io);
}

/* reset and bring the device up with both queues */
static bool dev_setup(uint32_t lo)
{
	mmio_w(common + 0x14, 0, 1);
	if (status() != 0)
		return false;
	for (int q = 0; q < 2; q++) {
		memset(gp(q_desc[q]), 0, 0x4000);
		avail_idx[q] = 0;
	}
	mmio_w(common + 0x14, 1, 1);
	mmio_w(common + 0x14, 3, 1);
	mmio_w(common + 0x08, 0, 4);
	mmio_w(common + 0x0c, lo, 4);
	mmio_w(common + 0x08, 1, 4);
	mmio_w(common + 0x0c, 1, 4); /* VERSION_1 */
	mmio_w(common + 0x14, 0xb, 1);
	if (!(status() & VIRTIO_S_FEATURES_OK))
		return false;
	mmio_w(common + 0x10, 0, 2);
	for (int q = 0; q < 2; q++) {
		mmio_w(common + 0x16, q, 2);
		mmio_w(common + 0x18, QSIZE, 2);
		mmio_w(common + 0x1a, q + 1, 2);
		mmio_w(common + 0x20, q_desc[q], 8);
		mmio_w(common + 0x28, q_avail[q], 8);
		mmio_w(common + 0x30, q_used[q], 8);
		mmio_w(common + 0x1c, 1, 2);
	}
	mmio_w(common + 0x14, 0xf, 1);
	take_irqs();
	return status() == 0xf;
}

/* a transmit chain: the header and the frame in two descriptors at slot */
static void tx_frame(int slot, const uint8_t *frame, uint32_t len)
{
	uint64_t at = TXBUF + 0x10000 * (slot % 8);

	memset(gp(at), 0, HDR_LEN);
	memcpy(gp(at + HDR_LEN), frame, len);
	set_desc(q_desc[TXQ], slot, at, HDR_LEN, VIRTQ_DESC_F_NEXT, slot + 1);
	set_desc(q_desc[TXQ], slot + 1, at + HDR_LEN, len, 0, 0);
	post(TXQ, slot);
}

/* n receive buffers of len bytes, one descriptor each, from slot first */
static void rx_buffers(int first, int n, uint32_t len)
{
	for (int i = first; i < first + n; i++) {
		set_desc(q_desc[RXQ], i, RXBUF + RXBUF_LEN * i, len, VIRTQ_DESC_F_WRITE, 0);
		post(RXQ, i);
	}
}

static void make_frame(uint8_t *f, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		f[i] = (uint8_t)(i * 131 + seed * 17 + (i >> 8));
}

/* the I/O thread delivers asynchronously: wait for it, up to 20 s on a
 * busy machine */
static bool wait_used(int q, uint16_t want)
{
	for (int i = 0; i < 20000; i++) {
		if (used_idx(q) == want)
			return true;
		usleep(1000);
	}
	return used_idx(q) == want;
}

/* ---- tests ---- */

static void test_identity(void)
{
	ok(mmio_r(PCI_ECAM_BASE + (1 << 15), 4) == 0x10411af4, "virtio-net at 00:01.0 is 1af4:1041");
	ok(testvm_cfg_read(&vm, 1, 0x0a, 2) == 0x0200, "class 0200 (Ethernet)");
	testvm_cfg_write(&vm, 1, 0x10, 0xd0000000, 4);
	testvm_cfg_write(&vm, 1, 0x04, PCI_CMD_MEM | PCI_CMD_MASTER, 2);
	bar = testvm_cfg_read(&vm, 1, 0x10, 4) & ~0xfu;
	int n = 0;
	for (unsigned c = testvm_cfg_read(&vm, 1, 0x34, 1); c && n < 48; c = testvm_cfg_read(&vm, 1, c + 1, 1), n++) {
		uint8_t id = testvm_cfg_read(&vm, 1, c, 1);
		if (id == 0x11) {
			msix = bar + (testvm_cfg_read(&vm, 1, c + 4, 4) & ~7u);
			testvm_cfg_write(&vm, 1, c + 2, 0x8000, 2);
		} else if (id == 0x09) {
			uint8_t type = testvm_cfg_read(&vm, 1, c + 3, 1);
			uint64_t at = bar + testvm_cfg_read(&vm, 1, c + 8, 4);
			if (type == 1)
				common = at;
			if (type == 2)
				notify = at;
			if (type == 4)
				devcfg = at;
		}
	}
	ok(common && notify && devcfg && msix, "common, notify, device and MSI-X structures found");
	ok(mmio_r(common + 0x12, 2) == 2, "two queues: receive and transmit");
	uint8_t mac[6];
	for (int i = 0; i < 6; i++)
		mac[i] = mmio_r(devcfg + i, 1);
	ok(!memcmp(mac, "\x52\x41\x43\xaa\xbb\x01", 6), "config: the MAC given");
	ok(mmio_r(devcfg + 6, 2) == 1, "config: status LINK_UP");

	mmio_w(common + 0x00, 0, 4);
	uint32_t lo = mmio_r(common + 0x04, 4);
	ok((lo >> 5 & 1) && (lo >> 15 & 1) && (lo >> 16 & 1), "MAC, MRG_RXBUF and STATUS offered");
	/* CSUM, GUEST_CSUM, CTRL_GUEST_OFFLOADS, GSO, the TSO/ECN/UFO
	 * family, CTRL_VQ and everything after: nothing accord does not do */
	ok((lo & ~(1u << 5 | 1u << 15 | 1u << 16 | 1u << VIRTIO_F_INDIRECT_DESC | 1u << VIRTIO_F_EVENT_IDX)) == 0,
	   "no checksum or segmentation offload offered (%#x)", lo);

	for (int v = 0; v < 3; v++) {
		mmio_w(msix + 16 * v, 0xfee00000, 4);
		mmio_w(msix + 16 * v + 4, 0, 4);
		mmio_w(msix + 16 * v + 8, V_CONFIG + v, 4);
		mmio_w(msix + 16 * v + 12, 0, 4);
	}
}

static void test_tx(void)
{
	uint8_t f[1514];

	ok(dev_setup(1u << 5 | 1u << 15 | 1u << 16), "driver brings the device up with MRG_RXBUF");
	make_frame(f, sizeof(f), 1);
	tx_frame(0, f, sizeof(f));
	kick(TXQ);
	ok(tb.sent == 1 && tb.last_len == sizeof(f) && !memcmp(tb.last, f, sizeof(f)),
	   "TX: a 1514-byte frame reaches the backend byte for byte, without the header");
	uint32_t id, len;
	used_elem(TXQ, 0, &id, &len);
	ok(used_idx(TXQ) == 1 && id == 0 && len == 0, "TX: the chain comes back used, 0 bytes written");
	ok(take_irqs() & 1u << 2, "TX: the transmit queue's vector fires");

	/* the header and the frame in one descriptor, as Linux sends them */
	make_frame(f, 60, 2);
	memset(gp(TXBUF), 0, HDR_LEN);
	memcpy(gp(TXBUF + HDR_LEN), f, 60);
	set_desc(q_desc[TXQ], 4, TXBUF, HDR_LEN + 60, 0, 0);
	post(TXQ, 4);
	kick(TXQ);
	ok(tb.sent == 2 && tb.last_len == 60 && !memcmp(tb.last, f, 60), "TX: header and frame in one descriptor");

	/* a runt is no frame: dropped, the chain still returned */
	tx_frame(6, f, 10);
	kick(TXQ);
	ok(tb.sent == 2 && used_idx(TXQ) == 3 && !(status() & VIRTIO_S_NEEDS_RESET),
	   "TX: a 10-byte runt is dropped, the chain returned");
}

static void test_rx(void)
{
	uint8_t f[1514], hdr[HDR_LEN];
	uint32_t id, len;

	ok(dev_setup(1u << 5 | 1u << 15 | 1u << 16), "reset and up again");
	/* a frame before any buffer waits for one */
	make_frame(f, sizeof(f), 3);
	host_frame(f, sizeof(f));
	usleep(20000);
	ok(used_idx(RXQ) == 0 && !(status() & VIRTIO_S_NEEDS_RESET), "RX: with no buffers the frame waits");
	rx_buffers(0, 4, RXBUF_LEN);
	kick(RXQ);
	used_elem(RXQ, 0, &id, &len);
	memcpy(hdr, gp(RXBUF), HDR_LEN);
	ok(used_idx(RXQ) == 1 && id == 0 && len == HDR_LEN + sizeof(f), "RX: the notify delivers it (%u bytes)", len);
	ok(!memcmp(gp(RXBUF + HDR_LEN), f, sizeof(f)), "RX: the frame byte for byte after the header");
	ok(hdr[0] == 0 && hdr[1] == 0 && hdr[10] == 1 && hdr[11] == 0, "RX: header flags 0, GSO_NONE, num_buffers 1");
	ok(take_irqs() & 1u << 1, "RX: the receive queue's vector fires");

	/* with buffers posted, the I/O thread delivers on its own */
	make_frame(f, 100, 4);
	host_frame(f, 100);
	ok(wait_used(RXQ, 2), "RX: the I/O thread delivers a frame without any notify");
	ok(!memcmp(gp(RXBUF + RXBUF_LEN + HDR_LEN), f, 100), "RX: its bytes are right");
	for (int i = 0; i < 100 && !(take_irqs() & 1u << 1); i++)
		usleep(1000);

	/* merged buffers: buffers 2 and 3 (2 KiB) are still posted; after
	 * them come 100-byte ones, and a 300-byte frame needs four */
	rx_buffers(4, 8, 100);
	host_frame(f, 60);
	host_frame(f, 60);
	ok(wait_used(RXQ, 4), "RX: two more frames use up the 2 KiB buffers");
	make_frame(f, 300, 5);
	host_frame(f, 300);
	bool four = wait_used(RXQ, 8);
	ok(four, "RX: a 300-byte frame takes four 100-byte buffers (used %u)", used_idx(RXQ));
	uint8_t got[400];
	uint32_t total = 0;
	bool ids = true;
	for (int i = 4; i < 8; i++) {
		used_elem(RXQ, i, &id, &len);
		ids &= id == (uint32_t)i;
		memcpy(got + total, gp(RXBUF + RXBUF_LEN * id), len);
		total += len;
	}
	ok(ids && total == HDR_LEN + 300 && got[10] == 4 && !memcmp(got + HDR_LEN, f, 300),
	   "RX: num_buffers 4, the pieces in order add up to the frame");
	take_irqs();
}

static void test_no_mrg(void)
{
	uint8_t f[1514];

	ok(dev_setup(1u << 5 | 1u << 16), "up without MRG_RXBUF");
	rx_buffers(0, 1, 600);
	make_frame(f, 1000, 6);
	host_frame(f, 1000);
	make_frame(f, 500, 7);
	host_frame(f, 500);
	ok(wait_used(RXQ, 1), "RX: a frame too big for one buffer is dropped, the next fits");
	uint32_t id, len;
	used_elem(RXQ, 0, &id, &len);
	ok(id == 0 && len == HDR_LEN + 500 && !memcmp(gp(RXBUF + HDR_LEN), f, 500) && gp(RXBUF)[10] == 1,
	   "RX: the buffer holds the 500-byte frame, num_buffers 1");
	take_irqs();
}

static void test_flow(void)
{
	uint8_t f[64];
	int n = 0;

	ok(dev_setup(1u << 5 | 1u << 15 | 1u << 16), "up again for flow control");
	int resumes = tb.resumes;
	make_frame(f, sizeof(f), 8);
	while (host_can_send() && n < 1000) {
		f[0] = n;
		host_frame(f, sizeof(f));
		n++;
	}
	ok(n > 0 && n < 1000 && !host_can_send(), "no buffers: the port stops the backend after %d frames", n);
	rx_buffers(0, QSIZE, 128);
	kick(RXQ);
	ok(used_idx(RXQ) == n, "posting buffers delivers all %d waiting frames (used %u)", n, used_idx(RXQ));
	bool order = true;
	for (int i = 0; i < n; i++) {
		uint32_t id, len;
		used_elem(RXQ, i, &id, &len);
		order &= len == HDR_LEN + sizeof(f) && gp(RXBUF + RXBUF_LEN * id)[HDR_LEN] == (uint8_t)i;
	}
	ok(order, "in order, none lost");
	ok(host_can_send() && tb.resumes > resumes, "and the backend is told to resume");
	take_irqs();
}

static void test_echo(void)
{
	uint8_t f[200];

	ok(dev_setup(1u << 5 | 1u << 15 | 1u << 16), "up again for the round trip");
	rx_buffers(0, 4, RXBUF_LEN);
	kick(RXQ);
	tb.echo = true;
	make_frame(f, sizeof(f), 9);
	tx_frame(0, f, sizeof(f));
	kick(TXQ);
	tb.echo = false;
	ok(wait_used(RXQ, 1) && !memcmp(gp(RXBUF + HDR_LEN), f, sizeof(f)),
	   "a frame the backend answers from inside send comes back byte for byte");
	take_irqs();
}

/* ---- malicious rings ---- */

/* RAM that a case may change: the rings, the receive buffers */
static bool ram_untouched(void)
{
	for (size_t i = 0; i < RAM_SIZE; i++) {
		bool allowed = false;

		for (int q = 0; q < 2; q++)
			allowed |= (i >= q_used[q] && i < q_used[q] + 6 + 8 * QSIZE + 2);
		allowed |= i >= RXBUF && i < RXBUF + RXBUF_LEN * QSIZE;
		if (!allowed && vm.ram[i] != snapshot[i])
			return false;
	}
	return true;
}

static void bad_case(const char *what, int q, void (*build)(void))
{
	uint8_t f[64];

	if (!dev_setup(1u << 5 | 1u << 15 | 1u << 16 | 1u << VIRTIO_F_INDIRECT_DESC)) {
		ok(false, "%s: device setup", what);
		return;
	}
	int sent = tb.sent;
	build();
	memcpy(snapshot, vm.ram, RAM_SIZE);
	if (q == RXQ) {
		kick(RXQ);
		make_frame(f, sizeof(f), 10);
		host_frame(f, sizeof(f));
		for (int i = 0; i < 20000 && !(status() & VIRTIO_S_NEEDS_RESET); i++)
			usleep(1000);
	} else {
		kick(TXQ);
	}
	unsigned irqs = take_irqs();
	ok((status() & VIRTIO_S_NEEDS_RESET) && (irqs & 1), "%s: NEEDS_RESET and a configuration interrupt", what);
	ok(tb.sent == sent && ram_untouched() && used_idx(q) == 0,
	   "%s: nothing sent, nothing used, no RAM changed", what);
	/* a device that needs a reset ignores its queues until then */
	tx_frame(0, f, sizeof(f));
	kick(TXQ);
	ok(tb.sent == sent, "%s: ignored until reset", what);
}

static void t_outside(void)
{
	set_desc(q_desc[TXQ], 0, TXBUF, HDR_LEN, VIRTQ_DESC_F_NEXT, 1);
	set_desc(q_desc[TXQ], 1, RAM_SIZE - 16, 64, 0, 0);
	post(TXQ, 0);
}

static void t_huge_addr(void)
{
	set_desc(q_desc[TXQ], 0, 0xfffffffffffff000ull, 0x2000, 0, 0);
	post(TXQ, 0);
}

static void t_loop(void)
{
	set_desc(q_desc[TXQ], 0, TXBUF, HDR_LEN, VIRTQ_DESC_F_NEXT, 1);
	set_desc(q_desc[TXQ], 1, TXBUF + 64, 64, VIRTQ_DESC_F_NEXT, 0);
	post(TXQ, 0);
}

static void t_oversized(void)
{
	/* in RAM, but more than any frame without segmentation offload */
	set_desc(q_desc[TXQ], 0, TXBUF, HDR_LEN + NET_MAX_FRAME + 1, 0, 0);
	post(TXQ, 0);
}

static void t_short_hdr(void)
{
	set_desc(q_desc[TXQ], 0, TXBUF, 8, 0, 0);
	post(TXQ, 0);
}

static void t_bad_head(void)
{
	post(TXQ, QSIZE + 3);
}

static void t_bad_next(void)
{
	set_desc(q_desc[TXQ], 0, TXBUF, HDR_LEN, VIRTQ_DESC_F_NEXT, QSIZE);
	post(TXQ, 0);
}

static void t_avail_jump(void)
{
	set_desc(q_desc[TXQ], 0, TXBUF, HDR_LEN + 60, 0, 0);
	post(TXQ, 0);
	avail_idx[TXQ] += QSIZE + 1;
	__atomic_store_n((uint16_t *)gp(q_avail[TXQ] + 2), avail_idx[TXQ], __ATOMIC_RELEASE);
}

static void t_writable_tx(void)
{
	set_desc(q_desc[TXQ], 0, TXBUF, HDR_LEN + 60, VIRTQ_DESC_F_NEXT, 1);
	set_desc(q_desc[TXQ], 1, TXBUF + 0x1000, 64, VIRTQ_DESC_F_WRITE, 0);
	post(TXQ, 0);
}

static void t_indirect_loop(void)
{
	set_desc(INDIRECT, 0, TXBUF, HDR_LEN, VIRTQ_DESC_F_NEXT, 1);
	set_desc(INDIRECT, 1, TXBUF + 64, 64, VIRTQ_DESC_F_NEXT, 0);
	set_desc(q_desc[TXQ], 0, INDIRECT, 32, VIRTQ_DESC_F_INDIRECT, 0);
	post(TXQ, 0);
}

static void r_outside(void)
{
	set_desc(q_desc[RXQ], 0, RAM_SIZE - 100, 2048, VIRTQ_DESC_F_WRITE, 0);
	post(RXQ, 0);
}

static void r_readable(void)
{
	set_desc(q_desc[RXQ], 0, RXBUF, 2048, 0, 0);
	post(RXQ, 0);
}

static void r_short(void)
{
	set_desc(q_desc[RXQ], 0, RXBUF, 8, VIRTQ_DESC_F_WRITE, 0);
	post(RXQ, 0);
}

static void r_loop(void)
{
	set_desc(q_desc[RXQ], 0, RXBUF, 2048, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
	post(RXQ, 0);
}

static void r_bad_head(void)
{
	post(RXQ, 0xffff);
}

static void test_malicious(void)
{
	bad_case("TX buffer running past the end of RAM", TXQ, t_outside);
	bad_case("TX buffer at an address near 2^64", TXQ, t_huge_addr);
	bad_case("TX descriptor loop", TXQ, t_loop);
	bad_case("TX chain longer than a 64 KiB frame", TXQ, t_oversized);
	bad_case("TX header shorter than virtio_net_hdr", TXQ, t_short_hdr);
	bad_case("TX head index past the queue", TXQ, t_bad_head);
	bad_case("TX next index past the queue", TXQ, t_bad_next);
	bad_case("TX avail index jumping by more than the queue", TXQ, t_avail_jump);
	bad_case("TX chain with a writable buffer", TXQ, t_writable_tx);
	bad_case("TX indirect table with a loop", TXQ, t_indirect_loop);
	bad_case("RX buffer running past the end of RAM", RXQ, r_outside);
	bad_case("RX buffer the device may not write", RXQ, r_readable);
	bad_case("RX buffer shorter than virtio_net_hdr", RXQ, r_short);
	bad_case("RX descriptor loop", RXQ, r_loop);
	bad_case("RX head index past the queue", RXQ, r_bad_head);

	ok(dev_setup(1u << 5 | 1u << 15 | 1u << 16), "a reset brings the device back");
	uint8_t f[64];
	int sent = tb.sent;
	make_frame(f, sizeof(f), 11);
	tx_frame(0, f, sizeof(f));
	kick(TXQ);
	ok(tb.sent == sent + 1 && !memcmp(tb.last, f, sizeof(f)), "and it transmits again");
}

/* --net parsing: QEMU's hostfwd forms, mac=, tap=; malformed ones refused */
static void test_parse(void)
{
	struct net_config c;
	bool good;

	good = !net_parse("user,hostfwd=tcp::8080-:80,hostfwd=udp:127.0.0.1:5353-10.0.2.15:53,mac=52:41:43:01:02:03",
			  &c);
	ok(good && c.kind == NET_USER && c.nfwd == 2 && !c.fwd[0].udp && c.fwd[0].host_addr == 0 &&
		   c.fwd[0].host_port == 8080 && c.fwd[0].guest_addr == 0 && c.fwd[0].guest_port == 80,
	   "user with hostfwd=tcp::8080-:80");
	ok(good && c.fwd[1].udp && c.fwd[1].host_addr == htonl(0x7f000001) && c.fwd[1].host_port == 5353 &&
		   c.fwd[1].guest_addr == htonl(0x0a00020f) && c.fwd[1].guest_port == 53,
	   "hostfwd=udp:127.0.0.1:5353-10.0.2.15:53");
	ok(good && c.has_mac && !memcmp(c.mac, "\x52\x41\x43\x01\x02\x03", 6), "mac=52:41:43:01:02:03");
	ok(!net_parse("tap=actap0", &c) && c.kind == NET_TAP && !strcmp(c.ifname, "actap0") && !c.has_mac,
	   "tap=actap0");
	static const char *const bad[] = {
		"", "usr", "user,hostfwd=tcp::80", "user,hostfwd=tcp::0-:80", "user,hostfwd=tcp::65536-:80",
		"user,hostfwd=sctp::1-:2", "user,hostfwd=tcp:1.2.3:1-:2", "user,hostfwd=tcp::1-:2x",
		"user,mac=52:41:43:01:02", "user,mac=01:00:5e:00:00:01", "user,mac=52:41:43:01:02:03,mac=52:41:43:01:02:04",
		"user,bogus=1", "tap=", "tap=a/b", "tap=sixteen-chars-xx", "tap=x,hostfwd=tcp::1-:2", "user,tap=x",
	};
	int refused = 0, saved = dup(2), null = open("/dev/null", O_WRONLY);

	/* each refusal prints its line; the test's output needs none of them */
	fflush(stderr);
	if (null >= 0)
		dup2(null, 2);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		refused += net_parse(bad[i], &c) < 0;
	if (saved >= 0)
		dup2(saved, 2);
	close(null);
	close(saved);
	ok(refused == (int)(sizeof(bad) / sizeof(bad[0])), "%d of %zu malformed --net values refused", refused,
	   sizeof(bad) / sizeof(bad[0]));
}

int main(void)
{
	static const uint8_t mac[6] = { 0x52, 0x41, 0x43, 0xaa, 0xbb, 0x01 };

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (vm_create(&vm, RAM_SIZE, 1, &stub_engine, PERSONALITY_KVM) < 0) {
		fprintf(stderr, "vm_create failed\n");
		return 1;
	}
	lapic_mmio_write(vm.vcpu[0]->lapic, 0xF0, 0x1FF, 4);
	snapshot = malloc(RAM_SIZE);
	io = iothread_create();
	bus = pci_init(&vm);
	if (!snapshot || !io || !bus) {
		fprintf(stderr, "setup failed\n");
		return 1;
	}
	pthread_mutex_init(&tb.lock, NULL);
	tb.nb.ops = &tb_ops;
	struct virtio_net *n = virtio_net_create(&vm, bus, io, &tb.nb, mac);
	test_parse();
	ok(n != NULL && iothread_start(io) == 0, "a virtio-net device on a test backend, I/O thread running");
	if (n) {
		test_identity();
		test_tx();
		test_rx();
		test_no_mrg();
		test_flow();
		test_echo();
		test_malicious();
	}
	iothread_stop(io);
	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail != 0;
}
