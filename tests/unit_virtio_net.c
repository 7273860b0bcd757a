/* virtio-net driven the way a guest driver would, on a test backend and a
 * running I/O thread: the PCI identity, the features offered (and the
 * offloads not offered), frames both ways byte for byte, merged receive
 * buffers, a frame waiting for buffers, flow control towards the backend,
 * frames a backend answers from inside send (as slirp does), --net
 * parsing, the counters the control API reports; a snapshot of the
 * address, the filter and the receive offloads the driver set, loaded
 * into a reset device, and damaged ones refused. Then malicious rings on both queues: buffers outside RAM, loops, oversized
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
#include "net/offload.h"
#include "vm/iothread.h"
#include "vm/snapshot.h"
#include "vm/vm.h"
#include "tap.h"
#include "testvm.h"
#include "test_backend.h"
#include "virtio_driver.h"

#define RAM_SIZE (16u << 20)
#define QSIZE 256
#define HDR_LEN 12
#define RXQ 0
#define TXQ 1
#define TXBUF 0x200000u
#define RXBUF 0x300000u /* QSIZE buffers of RXBUF_LEN */
#define RXBUF_LEN 2048u
#define INDIRECT 0x400000u

#define CTRLQ 2
#define BIGBUF 0x500000u /* a 64 KiB frame to transmit */
#define CTRLBUF 0x600000u

#define V_CONFIG 0x40
#define V_RX 0x41
#define V_TX 0x42
#define V_CTRL 0x43

#define F_CSUM (1u << 0)
#define F_GUEST_CSUM (1u << 1)
#define F_MAC (1u << 5)
#define F_GUEST_TSO4 (1u << 7)
#define F_HOST_TSO4 (1u << 11)
#define F_HOST_TSO6 (1u << 12)
#define F_HOST_ECN (1u << 13)
#define F_MRG (1u << 15)
#define F_STATUS (1u << 16)
#define F_CTRL_VQ (1u << 17)
#define F_CTRL_RX (1u << 18)
#define F_CTRL_MAC_ADDR (1u << 23)

static struct pci_bus *bus;
static struct iothread *io;
static struct vdrv net;
static uint8_t *snapshot;
static struct virtio_net *nic; /* the NIC at 00:01.0 */

/* the vectors the LAPIC has pending, as a bitmask relative to V_CONFIG */
static unsigned take_irqs(void)
{
	unsigned seen = 0;
	int v;

	while ((v = take_irq()) >= 0)
		if (v >= V_CONFIG && v <= V_CTRL)
			seen |= 1u << (v - V_CONFIG);
	return seen;
}

/* The device's notifies are served on the I/O thread (through the
 * transport's eventfds); the checks after a notify need it served, so the
 * I/O thread is held while this thread serves it with the same callback
 * (iothread_run_pending). Frames from the backend still arrive on the
 * running I/O thread in between. */
static void kick(int q)
{
	iothread_stop(io);
	vdrv_notify(&net, q);
	iothread_run_pending(io);
	iothread_start(io);
}

/* reset and bring the device up with its receive and transmit queues,
 * and the control queue when lo offers it */
static bool dev_setup(uint32_t lo)
{
	net.nq = lo & F_CTRL_VQ ? 3 : 2;
	return vdrv_setup(&net, lo);
}

/* a transmit chain: the header and the frame in two descriptors at slot */
static void tx_frame(int slot, const uint8_t *frame, uint32_t len)
{
	uint64_t at = TXBUF + 0x10000 * (slot % 8);

	memset(gp(at), 0, HDR_LEN);
	memcpy(gp(at + HDR_LEN), frame, len);
	set_desc(net.desc[TXQ], slot, at, HDR_LEN, VIRTQ_DESC_F_NEXT, slot + 1);
	set_desc(net.desc[TXQ], slot + 1, at + HDR_LEN, len, 0, 0);
	vdrv_post(&net, TXQ, slot);
}

/* n receive buffers of len bytes, one descriptor each, from slot first */
static void rx_buffers(int first, int n, uint32_t len)
{
	for (int i = first; i < first + n; i++) {
		set_desc(net.desc[RXQ], i, RXBUF + RXBUF_LEN * i, len, VIRTQ_DESC_F_WRITE, 0);
		vdrv_post(&net, RXQ, i);
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
		if (vdrv_used_idx(&net, q) == want)
			return true;
		usleep(1000);
	}
	return vdrv_used_idx(&net, q) == want;
}

/* ---- tests ---- */

static void test_identity(void)
{
	ok(mmio_r(PCI_ECAM_BASE + (1 << 15), 4) == 0x10411af4, "virtio-net at 00:01.0 is 1af4:1041");
	ok(testvm_cfg_read(&vm, 1, 0x0a, 2) == 0x0200, "class 0200 (Ethernet)");
	testvm_cfg_write(&vm, 1, 0x10, 0xd0000000, 4);
	ok(vdrv_probe(&net, 1) && net.devcfg, "common, notify, device and MSI-X structures found");
	net.qsize = QSIZE;
	for (int q = 0; q < 3; q++)
		vdrv_place(&net, q, 0x100000 + 0x10000 * q);
	ok(mmio_r(net.common + 0x12, 2) == 3, "three queues: receive, transmit, control");
	uint8_t mac[6];
	for (int i = 0; i < 6; i++)
		mac[i] = mmio_r(net.devcfg + i, 1);
	ok(!memcmp(mac, "\x52\x41\x43\xaa\xbb\x01", 6), "config: the MAC given");
	ok(mmio_r(net.devcfg + 6, 2) == 1, "config: status LINK_UP");

	mmio_w(net.common + 0x00, 0, 4);
	uint32_t lo = mmio_r(net.common + 0x04, 4);
	uint32_t want = F_MAC | F_MRG | F_STATUS | F_CSUM | F_GUEST_CSUM | F_HOST_TSO4 | F_HOST_TSO6 |
			F_HOST_ECN | F_CTRL_VQ | F_CTRL_RX | F_CTRL_MAC_ADDR;
	ok((lo & want) == want, "MAC, MRG_RXBUF, STATUS, CSUM, GUEST_CSUM, HOST_TSO4/6/ECN, CTRL_VQ/RX/MAC_ADDR offered");
	/* GUEST_TSO needs a backend that makes large segments (tap); no
	 * GSO, UFO, VLAN, announce, multiqueue: nothing accord does not do */
	ok((lo & ~(want | 1u << VIRTIO_F_INDIRECT_DESC | 1u << VIRTIO_F_EVENT_IDX)) == 0,
	   "nothing else offered on a backend without offloads (%#x)", lo);

	vdrv_msix(&net, 4, V_CONFIG);
}

/* the device features of the NIC at 00:slot.0 (BAR at bar_at) */
static uint32_t slot_features(int slot, uint32_t bar_at)
{
	struct vdrv d;

	testvm_cfg_write(&vm, slot, 0x10, bar_at, 4);
	if (!vdrv_probe(&d, slot))
		return 0;
	mmio_w(d.common + 0x00, 0, 4);
	return mmio_r(d.common + 0x04, 4);
}

/* offload=off and offload=csum: NICs at 00:02.0 and 00:03.0 */
static void test_offload_option(void)
{
	uint32_t tso = F_HOST_TSO4 | F_HOST_TSO6 | F_HOST_ECN | F_GUEST_TSO4 | F_GUEST_TSO4 << 1 | F_GUEST_TSO4 << 2;
	uint32_t off = slot_features(2, 0xd0100000), csum = slot_features(3, 0xd0200000);

	ok((off & (F_MAC | F_CTRL_VQ)) == (F_MAC | F_CTRL_VQ) && !(off & (F_CSUM | F_GUEST_CSUM | tso)),
	   "offload=off: MAC and CTRL_VQ, no checksum or segmentation offload (%#x)", off);
	ok((csum & (F_CSUM | F_GUEST_CSUM)) == (F_CSUM | F_GUEST_CSUM) && !(csum & tso),
	   "offload=csum: CSUM and GUEST_CSUM, no TSO (%#x)", csum);
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
	vdrv_used_elem(&net, TXQ, 0, &id, &len);
	ok(vdrv_used_idx(&net, TXQ) == 1 && id == 0 && len == 0, "TX: the chain comes back used, 0 bytes written");
	ok(take_irqs() & 1u << 2, "TX: the transmit queue's vector fires");

	/* the header and the frame in one descriptor, as Linux sends them */
	make_frame(f, 60, 2);
	memset(gp(TXBUF), 0, HDR_LEN);
	memcpy(gp(TXBUF + HDR_LEN), f, 60);
	set_desc(net.desc[TXQ], 4, TXBUF, HDR_LEN + 60, 0, 0);
	vdrv_post(&net, TXQ, 4);
	kick(TXQ);
	ok(tb.sent == 2 && tb.last_len == 60 && !memcmp(tb.last, f, 60), "TX: header and frame in one descriptor");

	/* a runt is no frame: dropped, the chain still returned */
	tx_frame(6, f, 10);
	kick(TXQ);
	ok(tb.sent == 2 && vdrv_used_idx(&net, TXQ) == 3 && !vdrv_needs_reset(&net),
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
	ok(vdrv_used_idx(&net, RXQ) == 0 && !vdrv_needs_reset(&net), "RX: with no buffers the frame waits");
	rx_buffers(0, 4, RXBUF_LEN);
	kick(RXQ);
	vdrv_used_elem(&net, RXQ, 0, &id, &len);
	memcpy(hdr, gp(RXBUF), HDR_LEN);
	ok(vdrv_used_idx(&net, RXQ) == 1 && id == 0 && len == HDR_LEN + sizeof(f), "RX: the notify delivers it (%u bytes)", len);
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
	ok(four, "RX: a 300-byte frame takes four 100-byte buffers (used %u)", vdrv_used_idx(&net, RXQ));
	uint8_t got[400];
	uint32_t total = 0;
	bool ids = true;
	for (int i = 4; i < 8; i++) {
		vdrv_used_elem(&net, RXQ, i, &id, &len);
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
	vdrv_used_elem(&net, RXQ, 0, &id, &len);
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
	ok(vdrv_used_idx(&net, RXQ) == n, "posting buffers delivers all %d waiting frames (used %u)", n, vdrv_used_idx(&net, RXQ));
	bool order = true;
	for (int i = 0; i < n; i++) {
		uint32_t id, len;
		vdrv_used_elem(&net, RXQ, i, &id, &len);
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

/* ---- offloads: the helpers (net/offload.c) against a reference ---- */

static void put16(uint8_t *p, unsigned v)
{
	p[0] = v >> 8;
	p[1] = v;
}

static unsigned get16(const uint8_t *p)
{
	return p[0] << 8 | p[1];
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3];
}

/* the Internet checksum, the slow obvious way */
static uint16_t ref_sum(uint32_t sum, const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		sum += i & 1 ? p[i] : p[i] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

/* the pseudo-header's sum for a TCP segment of l4len bytes */
static uint32_t ref_pseudo(const uint8_t *f, bool v6, size_t l4len)
{
	return v6 ? ref_sum(0, f + 14 + 8, 32) + l4len + 6 : ref_sum(0, f + 14 + 12, 8) + l4len + 6;
}

static bool ref_tcp_ok(const uint8_t *f, bool v6, size_t len)
{
	size_t l4 = v6 ? 54 : 34;

	return ref_sum(ref_pseudo(f, v6, len - l4), f + l4, len - l4) == 0xffff;
}

#define TCP_SEQ0 0xfffff000u /* wraps within a 64 KiB frame */
#define TCP_HLEN 32	     /* with 12 bytes of options */

/* Ethernet, IPv4 (id 0x1234) or IPv6, TCP with options and data bytes;
 * checksums right. Returns the frame's length. */
static size_t tcp_frame(uint8_t *f, bool v6, size_t data, uint8_t flags)
{
	size_t l3 = 14, l4 = l3 + (v6 ? 40 : 20), len = l4 + TCP_HLEN + data;

	memcpy(f, "\x52\x41\x43\xaa\xbb\x01\x52\x55\x0a\x00\x02\x02", 12);
	put16(f + 12, v6 ? 0x86dd : 0x0800);
	memset(f + l3, 0, l4 - l3);
	if (v6) {
		f[l3] = 0x60;
		put16(f + l3 + 4, TCP_HLEN + data);
		f[l3 + 6] = 6;
		f[l3 + 7] = 64;
		for (int i = 0; i < 32; i++)
			f[l3 + 8 + i] = 0x20 + i * 7;
	} else {
		f[l3] = 0x45;
		put16(f + l3 + 2, 20 + TCP_HLEN + data);
		put16(f + l3 + 4, 0x1234);
		put16(f + l3 + 6, 0x4000); /* DF */
		f[l3 + 8] = 64;
		f[l3 + 9] = 6;
		memcpy(f + l3 + 12, "\x0a\x00\x02\x0f\x0a\x00\x02\x02", 8);
		put16(f + l3 + 10, ~ref_sum(0, f + l3, 20) & 0xffff);
	}
	uint8_t *t = f + l4;
	memset(t, 0, TCP_HLEN);
	put16(t, 40000);
	put16(t + 2, 80);
	t[4] = (uint8_t)(TCP_SEQ0 >> 24);
	t[5] = (uint8_t)(TCP_SEQ0 >> 16);
	t[6] = (uint8_t)(TCP_SEQ0 >> 8);
	t[7] = (uint8_t)TCP_SEQ0;
	t[11] = 1;
	t[12] = (TCP_HLEN / 4) << 4;
	t[13] = flags;
	put16(t + 14, 65535);
	memcpy(t + 20, "\x01\x01\x08\x0a\x00\x00\x00\x01\x00\x00\x00\x02", 12);
	for (size_t i = 0; i < data; i++)
		t[TCP_HLEN + i] = (uint8_t)(i * 7 + (i >> 9));
	put16(t + 16, ~ref_sum(ref_pseudo(f, v6, TCP_HLEN + data), t, TCP_HLEN + data) & 0xffff);
	return len;
}

/* turn a whole frame into what a checksum-offloading guest hands over:
 * the pseudo-header's sum where the checksum goes */
static void make_partial(uint8_t *f, bool v6, size_t len)
{
	size_t l4 = v6 ? 54 : 34;

	put16(f + l4 + 16, ref_sum(ref_pseudo(f, v6, len - l4), NULL, 0));
}

struct segs {
	int n;
	uint8_t *f[64];
	size_t len[64];
};

static void seg_keep(void *opaque, const uint8_t *frame, size_t len)
{
	struct segs *s = opaque;

	if (s->n < 64) {
		s->f[s->n] = malloc(len);
		memcpy(s->f[s->n], frame, len);
		s->len[s->n++] = len;
	}
}

/* every segment of a TCP frame cut at mss: headers, checksums, payload */
static bool check_segments(const uint8_t *orig, size_t olen, bool v6, unsigned mss, int n,
			   uint8_t *const *seg, const size_t *slen, char *why, size_t whylen)
{
	size_t l4 = v6 ? 54 : 34, hdrs = l4 + TCP_HLEN, data = olen - hdrs, off = 0;
	int want = (data + mss - 1) / mss;
	uint8_t oflags = orig[l4 + 13];

	if (n != want) {
		snprintf(why, whylen, "%d segments, want %d", n, want);
		return false;
	}
	for (int i = 0; i < n; i++) {
		const uint8_t *s = seg[i];
		size_t chunk = data - off < mss ? data - off : mss;
		bool last = i == n - 1;
		uint8_t fl = oflags;

		if (!last)
			fl &= ~0x09;
		if (i)
			fl &= ~0x80;
		if (slen[i] != hdrs + chunk || memcmp(s, orig, 14) || memcmp(s + hdrs, orig + hdrs + off, chunk)) {
			snprintf(why, whylen, "segment %d: length %zu or bytes wrong", i, slen[i]);
			return false;
		}
		if (v6 ? get16(s + 18) != TCP_HLEN + chunk || memcmp(s + 22, orig + 22, 32) :
			 get16(s + 16) != 20 + TCP_HLEN + chunk || get16(s + 18) != 0x1234u + i ||
				 ref_sum(0, s + 14, 20) != 0xffff || memcmp(s + 26, orig + 26, 8)) {
			snprintf(why, whylen, "segment %d: IP header wrong", i);
			return false;
		}
		if (get32(s + l4 + 4) != (uint32_t)(TCP_SEQ0 + off) || s[l4 + 13] != fl ||
		    memcmp(s + l4, orig + l4, 4) || memcmp(s + l4 + 8, orig + l4 + 8, 5) ||
		    memcmp(s + l4 + 14, orig + l4 + 14, 2) || memcmp(s + l4 + 18, orig + l4 + 18, TCP_HLEN - 18)) {
			snprintf(why, whylen, "segment %d: TCP header wrong (seq %#x flags %#x)", i, get32(s + l4 + 4),
				 s[l4 + 13]);
			return false;
		}
		if (!ref_tcp_ok(s, v6, slen[i]) || !net_csum_valid(s, slen[i])) {
			snprintf(why, whylen, "segment %d: TCP checksum wrong", i);
			return false;
		}
		off += chunk;
	}
	return true;
}

static void free_segs(struct segs *s)
{
	for (int i = 0; i < s->n; i++)
		free(s->f[i]);
	s->n = 0;
}

static void test_offload_helpers(void)
{
	static uint8_t f[NET_MAX_FRAME], buf[NET_MAX_FRAME];
	struct segs sg = { 0 };
	char why[128] = "";
	size_t len;

	for (int v6 = 0; v6 < 2; v6++) {
		const char *ip = v6 ? "IPv6" : "IPv4";
		/* the largest IP packet: 64 KiB of TCP */
		size_t data = 65535 - (v6 ? 0 : 20) - TCP_HLEN;

		len = tcp_frame(f, v6, data, 0x80 | 0x10 | 0x08 | 0x01); /* CWR ACK PSH FIN */
		ok(ref_tcp_ok(f, v6, len) && net_csum_valid(f, len), "%s: the synthetic %zu-byte frame checks out", ip,
		   len);
		int n = net_tso_segment(f, len, 1448, buf, sizeof(buf), seg_keep, &sg);
		bool good = check_segments(f, len, v6, 1448, sg.n, sg.f, sg.len, why, sizeof(why));
		ok(n == sg.n && good, "%s TSO of a 64 KiB frame at MSS 1448: %d segments, each with its length, %s%s",
		   ip, n, v6 ? "sequence number, flags, checksum and bytes" : "id, IP checksum, sequence number, flags, TCP checksum and bytes",
		   good ? "" : why);
		free_segs(&sg);

		len = tcp_frame(f, v6, 1000, 0x18);
		n = net_tso_segment(f, len, 1448, buf, sizeof(buf), seg_keep, &sg);
		ok(n == 1 && sg.len[0] == len && !memcmp(sg.f[0], f, len), "%s: a frame within the MSS is one segment, unchanged", ip);
		free_segs(&sg);

		len = tcp_frame(f, v6, 3000, 0x18);
		make_partial(f, v6, len);
		ok(!net_csum_valid(f, len), "%s: a partial checksum does not check out", ip);
		net_csum_complete(f, len, v6 ? 54 : 34, 16);
		ok(ref_tcp_ok(f, v6, len) && net_csum_valid(f, len), "%s: net_csum_complete finishes it", ip);
		f[len - 1] ^= 1;
		ok(!net_csum_valid(f, len), "%s: one flipped bit fails the check", ip);
	}

	/* an odd length, and a UDP datagram */
	len = tcp_frame(f, false, 777, 0x18);
	make_partial(f, false, len);
	net_csum_complete(f, len, 34, 16);
	ok(ref_tcp_ok(f, false, len), "checksum completion with an odd length");

	/* requests that do not describe their frame */
	len = tcp_frame(f, false, 5000, 0x10);
	unsigned all = NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6 | NET_OFFLOAD_ECN;
	struct net_offload good = { NET_OFF_NEEDS_CSUM, NET_GSO_TCPV4, 66, 1448, 34, 16 };
	ok(!net_offload_check(&good, f, len, all), "a TSO4 request for a TCP/IPv4 frame passes");
	struct {
		struct net_offload o;
		unsigned allowed;
		size_t len;
		const char *what;
	} bad[] = {
		{ { NET_OFF_NEEDS_CSUM, NET_GSO_TCPV4, 66, 0, 34, 16 }, all, len, "gso_size 0" },
		{ { NET_OFF_NEEDS_CSUM, NET_GSO_TCPV4, len + 1, 1448, 34, 16 }, all, len, "hdr_len beyond the frame" },
		{ { NET_OFF_NEEDS_CSUM, 0, 0, 0, len - 1, 0 }, all, len, "csum_start at the last byte" },
		{ { NET_OFF_NEEDS_CSUM, 0, 0, 0, 34, len - 35 }, all, len, "csum_offset past the end" },
		{ { NET_OFF_NEEDS_CSUM, 0, 0, 0, 65535, 65535 }, all, len, "csum_start + csum_offset near 128 KiB" },
		{ { NET_OFF_NEEDS_CSUM, 0, 0, 0, 0, 0 }, all, 1, "a one-byte frame" },
		{ { NET_OFF_NEEDS_CSUM, 0, 0, 0, 34, 16 }, 0, len, "NEEDS_CSUM not negotiated" },
		{ { NET_OFF_NEEDS_CSUM | NET_OFF_DATA_VALID, 0, 0, 0, 34, 16 }, all, len, "DATA_VALID from the driver" },
		{ { 0x80, 0, 0, 0, 0, 0 }, all, len, "an unknown flag" },
		{ { NET_OFF_NEEDS_CSUM, NET_GSO_TCPV4, 66, 1448, 34, 16 }, NET_OFFLOAD_CSUM, len, "TSO4 not negotiated" },
		{ { NET_OFF_NEEDS_CSUM, NET_GSO_TCPV6, 66, 1448, 34, 16 }, all, len, "TCPV6 on an IPv4 frame" },
		{ { NET_OFF_NEEDS_CSUM, 3, 66, 1448, 34, 16 }, all, len, "UDP fragmentation (not offered)" },
		{ { NET_OFF_NEEDS_CSUM, NET_GSO_TCPV4 | NET_GSO_ECN, 66, 1448, 34, 16 }, all & ~NET_OFFLOAD_ECN, len,
		  "ECN not negotiated" },
		{ { NET_OFF_NEEDS_CSUM, NET_GSO_ECN, 0, 0, 34, 16 }, all, len, "ECN without segmentation" },
		{ { 0, NET_GSO_TCPV4, 66, 1448, 34, 16 }, all, len, "segmentation without NEEDS_CSUM" },
		{ { NET_OFF_NEEDS_CSUM, NET_GSO_TCPV4, 66, 1448, 34, 16 }, all, 60, "TSO of a frame cut short" },
		{ { 0, 0, 61, 0, 0, 0 }, all, 60, "hdr_len beyond a plain frame" },
	};
	int refused = 0, nbad = sizeof(bad) / sizeof(bad[0]);
	for (int i = 0; i < nbad; i++) {
		if (net_offload_check(&bad[i].o, f, bad[i].len, bad[i].allowed))
			refused++;
		else
			printf("# accepted: %s\n", bad[i].what);
	}
	ok(refused == nbad, "%d of %d malformed offload requests refused", refused, nbad);

	/* segmentation refuses what it cannot parse, and sends nothing */
	uint8_t udp[100];
	memcpy(udp, f, sizeof(udp));
	udp[23] = 17;
	int n1 = net_tso_segment(udp, sizeof(udp), 1448, buf, sizeof(buf), seg_keep, &sg);
	f[46] = 0x40; /* a TCP data offset of 16 bytes */
	int n2 = net_tso_segment(f, len, 1448, buf, sizeof(buf), seg_keep, &sg);
	ok(n1 < 0 && n2 < 0 && sg.n == 0, "no segments from a UDP frame or a TCP header shorter than 20 bytes");
}

/* ---- offloads through the device ---- */

static void counters(struct virtio_net_counters *c)
{
	pthread_mutex_lock(&vm.io_lock);
	virtio_net_counters(nic, c);
	pthread_mutex_unlock(&vm.io_lock);
}

/* a transmit chain with the given header fields, frame at BIGBUF */
static void tx_offload(const uint8_t *frame, size_t len, uint8_t flags, uint8_t gso, uint16_t hdr_len,
		       uint16_t gso_size, uint16_t cstart, uint16_t coff)
{
	uint8_t *h = gp(BIGBUF);
	const uint16_t v[4] = { hdr_len, gso_size, cstart, coff };

	memset(h, 0, HDR_LEN);
	h[0] = flags;
	h[1] = gso;
	for (int i = 0; i < 4; i++)
		memcpy(h + 2 + 2 * i, &v[i], 2);
	memcpy(gp(BIGBUF + HDR_LEN), frame, len);
	/* the header alone, then the frame: as a scatter-gather driver does */
	set_desc(net.desc[TXQ], 0, BIGBUF, HDR_LEN, VIRTQ_DESC_F_NEXT, 1);
	set_desc(net.desc[TXQ], 1, BIGBUF + HDR_LEN, len, 0, 0);
	vdrv_post(&net, TXQ, 0);
	kick(TXQ);
}

static void test_offload_tx(void)
{
	static uint8_t f[NET_MAX_FRAME];
	char why[128] = "";
	size_t len;

	ok(dev_setup(F_MAC | F_MRG | F_STATUS | F_CSUM | F_HOST_TSO4 | F_HOST_TSO6 | F_HOST_ECN),
	   "up with CSUM and HOST_TSO4/TSO6/ECN");
	len = tcp_frame(f, false, 1400, 0x18);
	uint8_t whole[1600];
	memcpy(whole, f, len);
	make_partial(f, false, len);
	int sent = tb.sent;
	tx_offload(f, len, NET_OFF_NEEDS_CSUM, NET_GSO_NONE, 0, 0, 34, 16);
	ok(tb.sent == sent + 1 && tb.last_len == len && !memcmp(tb.last, whole, len),
	   "CSUM: the backend gets the frame with its TCP checksum filled in");

	for (int v6 = 0; v6 < 2; v6++) {
		size_t data = 65535 - (v6 ? 0 : 20) - TCP_HLEN;
		len = tcp_frame(f, v6, data, 0x80 | 0x18 | 0x01);
		uint8_t *orig = malloc(len);
		memcpy(orig, f, len);
		make_partial(f, v6, len);
		tb.keep = true;
		tb.nkept = 0;
		uint16_t used = vdrv_used_idx(&net, TXQ);
		tx_offload(f, len, NET_OFF_NEEDS_CSUM, v6 ? NET_GSO_TCPV6 | NET_GSO_ECN : NET_GSO_TCPV4,
			   (v6 ? 54 : 34) + TCP_HLEN, 1448, v6 ? 54 : 34, 16);
		tb.keep = false;
		bool good = check_segments(orig, len, v6, 1448, tb.nkept, tb.kept, tb.kept_len, why, sizeof(why));
		ok(good && vdrv_used_idx(&net, TXQ) == used + 1,
		   "HOST_TSO%d: a 64 KiB frame leaves as %d segments, headers, checksums and bytes right %s", v6 ? 6 : 4,
		   tb.nkept, good ? "" : why);
		for (int i = 0; i < tb.nkept; i++)
			free(tb.kept[i]);
		tb.nkept = 0;
		free(orig);
	}

	/* bad requests: dropped, the chain returned, the device still fine */
	len = tcp_frame(f, false, 5000, 0x18);
	make_partial(f, false, len);
	sent = tb.sent;
	uint16_t used = vdrv_used_idx(&net, TXQ);
	struct virtio_net_counters c0, c1;
	counters(&c0);
	tx_offload(f, len, NET_OFF_NEEDS_CSUM, NET_GSO_TCPV4, 66, 0, 34, 16);
	tx_offload(f, len, NET_OFF_NEEDS_CSUM, NET_GSO_TCPV4, len + 1, 1448, 34, 16);
	tx_offload(f, len, NET_OFF_NEEDS_CSUM, NET_GSO_NONE, 0, 0, len - 10, 9);
	tx_offload(f, len, NET_OFF_NEEDS_CSUM, NET_GSO_NONE, 0, 0, 65535, 65535);
	tx_offload(f, len, NET_OFF_NEEDS_CSUM, NET_GSO_TCPV6, 66, 1448, 34, 16);
	tx_offload(f, 60, NET_OFF_NEEDS_CSUM, NET_GSO_TCPV4, 54, 1448, 34, 16);
	ok(tb.sent == sent && vdrv_used_idx(&net, TXQ) == used + 6 && !vdrv_needs_reset(&net),
	   "gso_size 0, hdr_len or csum_start+offset beyond the frame, TCPV6 on IPv4, a cut TSO frame: "
	   "6 dropped, 6 chains returned, no reset");
	counters(&c1);
	ok(c1.tx_bad_offload - c0.tx_bad_offload == 6 && c1.tx_frames == c0.tx_frames,
	   "counters: 6 more tx_bad_offload, no frame sent");
	make_frame(f, 100, 12);
	tx_offload(f, 100, 0, 0, 0, 0, 0, 0);
	ok(tb.sent == sent + 1, "and the next plain frame goes out");

	ok(dev_setup(F_MAC | F_MRG | F_STATUS), "up without CSUM");
	len = tcp_frame(f, false, 1400, 0x18);
	sent = tb.sent;
	tx_offload(f, len, NET_OFF_NEEDS_CSUM, NET_GSO_NONE, 0, 0, 34, 16);
	tx_offload(f, len, NET_OFF_NEEDS_CSUM, NET_GSO_TCPV4, 66, 536, 34, 16);
	ok(tb.sent == sent && !vdrv_needs_reset(&net), "NEEDS_CSUM and TSO4 not negotiated: dropped");
	take_irqs();
}

static void test_offload_rx(void)
{
	uint8_t f[1600];
	size_t len;

	ok(dev_setup(F_MAC | F_MRG | F_STATUS | F_GUEST_CSUM), "up with GUEST_CSUM");
	rx_buffers(0, 8, RXBUF_LEN);
	kick(RXQ);
	len = tcp_frame(f, false, 1000, 0x18);
	host_frame(f, len);
	f[len - 1] ^= 0x55;
	host_frame(f, len);
	make_frame(f, 200, 13);
	host_frame(f, 200);
	len = tcp_frame(f, true, 1200, 0x18);
	host_frame(f, len);
	ok(wait_used(RXQ, 4), "four frames delivered");
	ok(gp(RXBUF)[0] == NET_OFF_DATA_VALID && gp(RXBUF + RXBUF_LEN)[0] == 0 &&
		   gp(RXBUF + 2 * RXBUF_LEN)[0] == 0 && gp(RXBUF + 3 * RXBUF_LEN)[0] == NET_OFF_DATA_VALID,
	   "DATA_VALID on the good TCP/IPv4 and TCP/IPv6 frames, not on the corrupted one or a non-IP one");
	take_irqs();
}

/* ---- the control queue ---- */

/* one command: class, command, data; the ack, or -1 when none came */
static int ctrl(uint8_t cls, uint8_t cmd, const void *data, size_t dlen)
{
	uint8_t *c = gp(CTRLBUF);
	uint16_t before = vdrv_used_idx(&net, CTRLQ);

	c[0] = cls;
	c[1] = cmd;
	if (dlen)
		memcpy(c + 2, data, dlen);
	*gp(CTRLBUF + 0x1000) = 0xee;
	set_desc(net.desc[CTRLQ], 0, CTRLBUF, 2 + dlen, VIRTQ_DESC_F_NEXT, 1);
	set_desc(net.desc[CTRLQ], 1, CTRLBUF + 0x1000, 1, VIRTQ_DESC_F_WRITE, 0);
	vdrv_post(&net, CTRLQ, 0);
	kick(CTRLQ);
	if (vdrv_used_idx(&net, CTRLQ) != (uint16_t)(before + 1))
		return -1;
	return *gp(CTRLBUF + 0x1000);
}

static uint16_t rx_seen;

/* whether a frame to dst reaches the guest: it goes first, a broadcast
 * marker after it; once the marker is in, dst's fate is decided */
static bool passes(const uint8_t *dst)
{
	uint8_t f[64];

	make_frame(f, sizeof(f), 14);
	memcpy(f, dst, 6);
	host_frame(f, sizeof(f));
	memset(f, 0xff, 6);
	host_frame(f, sizeof(f));
	for (int i = 0; i < 20000; i++) {
		uint16_t u = vdrv_used_idx(&net, RXQ);
		if (u != rx_seen) {
			uint32_t id, len;
			vdrv_used_elem(&net, RXQ, u - 1, &id, &len);
			if (!memcmp(gp(RXBUF + RXBUF_LEN * id + HDR_LEN), "\xff\xff\xff\xff\xff\xff", 6)) {
				bool got = (uint16_t)(u - rx_seen) == 2;
				rx_seen = u;
				return got;
			}
		}
		usleep(1000);
	}
	return false;
}

static void test_ctrl(void)
{
	static const uint8_t own[6] = { 0x52, 0x41, 0x43, 0xaa, 0xbb, 0x01 };
	static const uint8_t other[6] = { 0x52, 0x41, 0x43, 0x12, 0x34, 0x56 };
	static const uint8_t mcast[6] = { 0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb };
	static const uint8_t listed[6] = { 0x02, 0x11, 0x22, 0x33, 0x44, 0x55 };
	static const uint8_t newmac[6] = { 0x52, 0x41, 0x43, 0x00, 0x00, 0x99 };
	uint8_t on = 1, off = 0, table[64];

	ok(dev_setup(F_MAC | F_MRG | F_STATUS | F_CTRL_VQ | F_CTRL_RX | F_CTRL_MAC_ADDR),
	   "up with CTRL_VQ, CTRL_RX, CTRL_MAC_ADDR and the control queue");
	rx_buffers(0, QSIZE, 128);
	kick(RXQ);
	rx_seen = 0;
	ok(passes(other), "after a reset the filter is promiscuous: another station's frame comes in");
	ok(ctrl(0, 0, &off, 1) == 0, "RX PROMISC off: VIRTIO_NET_OK");
	ok(!passes(other) && passes(own) && !passes(mcast), "then another station's frame and a multicast one are filtered, our own comes in");
	ok(ctrl(0, 1, &on, 1) == 0 && passes(mcast), "RX ALLMULTI on: multicast comes in");
	ok(ctrl(0, 1, &off, 1) == 0 && !passes(mcast), "ALLMULTI off: filtered again");
	/* one unicast entry, one multicast entry */
	memset(table, 0, sizeof(table));
	table[0] = 1;
	memcpy(table + 4, listed, 6);
	table[10] = 1;
	memcpy(table + 14, mcast, 6);
	ok(ctrl(1, 0, table, 20) == 0 && passes(listed) && passes(mcast) && !passes(other),
	   "MAC_TABLE_SET: the listed unicast and multicast addresses come in, others not");
	ok(ctrl(1, 1, newmac, 6) == 0, "MAC_ADDR_SET: VIRTIO_NET_OK");
	uint8_t cfg[6];
	for (int i = 0; i < 6; i++)
		cfg[i] = mmio_r(net.devcfg + i, 1);
	ok(!memcmp(cfg, newmac, 6) && passes(newmac) && !passes(own),
	   "the new address is in the configuration and the filter, the old one is not");

	/* malformed commands: VIRTIO_NET_ERR, nothing changes */
	uint8_t two[2] = { 0, 0 }, big[8] = { 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0 };
	uint8_t extra[9] = { 0 }, mc_addr[6] = { 0x01, 0, 0x5e, 0, 0, 1 };
	int errs = 0, cmds = 0;
	struct {
		uint8_t cls, cmd;
		const void *data;
		size_t len;
	} bad[] = {
		{ 0, 0, two, 2 },	 /* PROMISC with two bytes */
		{ 0, 0, NULL, 0 },	 /* PROMISC with none */
		{ 0, 0, "\x02", 1 },	 /* neither on nor off */
		{ 0, 5, &on, 1 },	 /* NOBCAST: RX_EXTRA not offered */
		{ 1, 0, big, 8 },	 /* 2^32-1 unicast entries */
		{ 1, 0, extra, 9 },	 /* two empty tables and a stray byte */
		{ 1, 0, extra, 7 },	 /* a table cut short */
		{ 1, 1, newmac, 5 },	 /* an address of five bytes */
		{ 1, 1, mc_addr, 6 },	 /* a multicast station address */
		{ 1, 2, NULL, 0 },	 /* no such MAC command */
		{ 2, 0, two, 2 },	 /* VLAN: not offered */
		{ 3, 0, NULL, 0 },	 /* ANNOUNCE: not offered */
		{ 4, 0, two, 2 },	 /* MQ: not offered */
		{ 5, 0, big, 8 },	 /* GUEST_OFFLOADS: not offered */
		{ 200, 0, NULL, 0 },	 /* no such class */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++, cmds++)
		errs += ctrl(bad[i].cls, bad[i].cmd, bad[i].data, bad[i].len) == 1;
	/* a command of one byte: no command at all */
	set_desc(net.desc[CTRLQ], 0, CTRLBUF, 1, VIRTQ_DESC_F_NEXT, 1);
	set_desc(net.desc[CTRLQ], 1, CTRLBUF + 0x1000, 1, VIRTQ_DESC_F_WRITE, 0);
	vdrv_post(&net, CTRLQ, 0);
	kick(CTRLQ);
	cmds++;
	errs += *gp(CTRLBUF + 0x1000) == 1;
	for (int i = 0; i < 6; i++)
		cfg[i] = mmio_r(net.devcfg + i, 1);
	ok(errs == cmds && !memcmp(cfg, newmac, 6) && !passes(other) && !vdrv_needs_reset(&net),
	   "%d of %d malformed commands answered VIRTIO_NET_ERR; the address and the filter unchanged", errs, cmds);

	/* a command with nowhere to put the ack breaks the rules */
	set_desc(net.desc[CTRLQ], 0, CTRLBUF, 3, 0, 0);
	vdrv_post(&net, CTRLQ, 0);
	kick(CTRLQ);
	ok(vdrv_needs_reset(&net), "a command without an ack buffer: NEEDS_RESET");
	take_irqs();

	ok(dev_setup(F_MAC | F_MRG | F_STATUS | F_CTRL_VQ), "a reset, and up with CTRL_VQ alone");
	for (int i = 0; i < 6; i++)
		cfg[i] = mmio_r(net.devcfg + i, 1);
	ok(!memcmp(cfg, own, 6), "the reset brought the original address back");
	ok(ctrl(0, 0, &off, 1) == 1 && ctrl(1, 1, newmac, 6) == 1, "RX and MAC_ADDR_SET without their features: VIRTIO_NET_ERR");
	rx_buffers(0, QSIZE, 128);
	kick(RXQ);
	rx_seen = 0;
	ok(passes(other), "and the filter stays promiscuous");
	take_irqs();
}

/* ---- counters and snapshots ---- */

/* the snapshot hook of a device: its name, the instance of that name */
static struct snap_hook *hook(const char *name, int instance)
{
	for (int i = 0; i < vm.nsnap_hooks; i++)
		if (!strcmp(vm.snap_hooks[i].name, name) && instance-- == 0)
			return &vm.snap_hooks[i];
	return NULL;
}

/* the transport's section and virtio-net's, as snapshot_write saves them */
static bool save_nic(int instance, struct snap_buf *t, struct snap_buf *d)
{
	struct snap_hook *ht = hook("virtio", instance), *hd = hook("virtio-net", instance);
	char err[200];
	bool good;

	if (!ht || !hd)
		return false;
	pthread_mutex_lock(&vm.io_lock);
	good = !ht->save(ht->opaque, t, err, sizeof(err)) && !hd->save(hd->opaque, d, err, sizeof(err));
	pthread_mutex_unlock(&vm.io_lock);
	return good && !t->failed && !d->failed;
}

/* and loaded as snapshot_apply does: the transport first, all bytes used */
static bool load_nic(int instance, const struct snap_buf *t, const uint8_t *d, size_t dlen, char *err, size_t n)
{
	struct snap_hook *ht = hook("virtio", instance), *hd = hook("virtio-net", instance);
	struct snap_rd rt = { t->p, t->len, 0 }, rd = { d, dlen, 0 };
	bool good;

	err[0] = 0;
	if (!ht || !hd)
		return false;
	pthread_mutex_lock(&vm.io_lock);
	good = !ht->load(ht->opaque, &rt, err, n) && rt.off == rt.len && !hd->load(hd->opaque, &rd, err, n) &&
	       rd.off == rd.len;
	pthread_mutex_unlock(&vm.io_lock);
	return good;
}

static bool config_mac_is(const uint8_t *mac)
{
	uint8_t cfg[6];

	for (int i = 0; i < 6; i++)
		cfg[i] = mmio_r(net.devcfg + i, 1);
	return !memcmp(cfg, mac, 6);
}

/* a backend that can take large segments, and what it was told */
static unsigned told_offloads, told_times;

static void ob_set_rx_offload(struct net_backend *nb, unsigned offloads)
{
	told_offloads = offloads;
	told_times++;
}

static const struct net_backend_ops ob_ops = { tb_send, tb_resume, NULL, ob_set_rx_offload };
static struct net_backend ob = { .ops = &ob_ops,
				 .offloads = NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6 | NET_OFFLOAD_ECN };

/* A snapshot of the NIC after the driver set its address and filter: saved,
 * the device reset (as a fresh process's is), loaded; then damaged sections
 * are refused and change nothing. The guest's receive offloads reach a new
 * backend at the load. */
static void test_snapshot(void)
{
	static const uint8_t own[6] = { 0x52, 0x41, 0x43, 0xaa, 0xbb, 0x01 };
	static const uint8_t other[6] = { 0x52, 0x41, 0x43, 0x12, 0x34, 0x56 };
	static const uint8_t mcast[6] = { 0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb };
	static const uint8_t mcast2[6] = { 0x01, 0x00, 0x5e, 0x00, 0x00, 0x42 };
	static const uint8_t listed[6] = { 0x02, 0x11, 0x22, 0x33, 0x44, 0x55 };
	static const uint8_t newmac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x99 };
	struct virtio_net_counters c0, c1;
	struct snap_buf t = { 0 }, d = { 0 };
	bool loaded;
	uint8_t off = 0, table[64], bad[2048];
	char err[200];

	ok(dev_setup(F_MAC | F_MRG | F_STATUS | F_CTRL_VQ | F_CTRL_RX | F_CTRL_MAC_ADDR),
	   "snapshot: up with the control queue");
	rx_buffers(0, QSIZE, 128);
	kick(RXQ);
	rx_seen = 0;
	counters(&c0);
	memset(table, 0, sizeof(table));
	table[0] = 1;
	memcpy(table + 4, listed, 6);
	table[10] = 1;
	memcpy(table + 14, mcast, 6);
	bool set = ctrl(0, 0, &off, 1) == 0 && ctrl(1, 0, table, 20) == 0 && ctrl(1, 1, newmac, 6) == 0 &&
		   ctrl(1, 1, mcast, 6) == 1;
	bool filtered = !passes(other) && passes(newmac) && !passes(own) && passes(listed) && !passes(mcast2);
	counters(&c1);
	ok(set && filtered, "the driver sets PROMISC off, a MAC table and a new address: the filter follows");
	/* five frames and their five broadcast markers: two in, three out */
	ok(c1.control_ok - c0.control_ok == 3 && c1.control_failed - c0.control_failed == 1 &&
		   c1.rx_filtered - c0.rx_filtered == 3 && c1.rx_frames - c0.rx_frames == 7,
	   "counters: 3 commands OK, 1 failed, 3 frames filtered, 7 received (%llu %llu %llu %llu)",
	   (unsigned long long)(c1.control_ok - c0.control_ok), (unsigned long long)(c1.control_failed - c0.control_failed),
	   (unsigned long long)(c1.rx_filtered - c0.rx_filtered), (unsigned long long)(c1.rx_frames - c0.rx_frames));

	struct virtio_net_counters at_save, now;
	counters(&at_save);
	bool saved = save_nic(0, &t, &d);
	ok(saved, "saved: the transport's section and virtio-net's (%zu bytes)", d.len);
	/* the NIC counts on after the snapshot */
	passes(newmac);
	/* what a fresh process's device is: reset, the address it was made with */
	iothread_stop(io);
	mmio_w(net.common + 0x14, 0, 1);
	iothread_run_pending(io);
	iothread_start(io);
	ok(config_mac_is(own), "a reset device has its first address again");
	loaded = load_nic(0, &t, d.p, d.len, err, sizeof(err));
	ok(loaded, "loaded%s%s", err[0] ? ": " : "", err);
	counters(&now);
	ok(loaded && !memcmp(&now, &at_save, sizeof(now)),
	   "the counters are the snapshot's again (%llu frames received, %llu commands OK)",
	   (unsigned long long)now.rx_frames, (unsigned long long)now.control_ok);
	ok(vdrv_status(&net) == 0xf && config_mac_is(newmac), "the driver's address is back in the configuration");
	ok(!passes(other) && passes(newmac) && !passes(own) && passes(listed) && passes(mcast) && !passes(mcast2),
	   "the filter is back: not promiscuous, the new address and the listed ones in, the rest out");

	/* damaged sections: refused, the device as it was */
	struct {
		const char *what;
		size_t at;
		uint8_t v;
	} cases[] = {
		{ "version 3", 0, 3 },
		{ "version 0", 0, 0 },
		{ "a multicast address", 4, 0x01 },
		{ "PROMISC 2", 10, 2 },
		{ "ALLMULTI 255", 11, 255 },
		{ "65 unicast entries", 14, 65 },
		{ "a multicast table overflowing and listing entries", 13, 1 },
		{ "receive offloads the driver did not take", 22, NET_OFFLOAD_CSUM },
	};
	int refused = 0;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(bad, d.p, d.len);
		bad[cases[i].at] = cases[i].v;
		bool no = !load_nic(0, &t, bad, d.len, err, sizeof(err));
		refused += no;
		if (!no || !err[0])
			ok(false, "snapshot: %s is refused with a reason (%s)", cases[i].what, err);
	}
	bool cut = !load_nic(0, &t, d.p, d.len - 1, err, sizeof(err));
	ok(refused == (int)(sizeof(cases) / sizeof(cases[0])) && cut,
	   "%d damaged virtio-net sections and a cut one refused", refused);
	ok(config_mac_is(newmac) && !passes(other) && passes(newmac) && passes(listed),
	   "and the device is as the good load left it");
	/* version 1, before the counters: the rest of the state, counters as they are */
	counters(&at_save);
	memcpy(bad, d.p, d.len - sizeof(now));
	bad[0] = 1;
	loaded = load_nic(0, &t, bad, d.len - sizeof(now), err, sizeof(err));
	counters(&now);
	ok(loaded && !memcmp(&now, &at_save, sizeof(now)) && config_mac_is(newmac),
	   "a version 1 section (no counters) loads, the counters left as they were%s%s", err[0] ? ": " : "", err);
	take_irqs();
	free(t.p);
	free(d.p);

	/* the receive offloads: the NIC at 00:04.0 on a backend with TSO */
	struct vdrv ob_nic = { .qsize = QSIZE };
	bool up;

	testvm_cfg_write(&vm, 4, 0x10, 0xd0300000, 4);
	up = vdrv_probe(&ob_nic, 4);
	ob_nic.nq = 0; /* features only: no queue is needed */
	up = up && vdrv_setup(&ob_nic, F_MAC | F_GUEST_CSUM | F_GUEST_TSO4 | F_GUEST_TSO4 << 1);
	memset(&t, 0, sizeof(t));
	memset(&d, 0, sizeof(d));
	ok(up && told_times == 0,
	   "a NIC on a backend with TSO, GUEST_CSUM and GUEST_TSO4/6 taken, the backend not told yet");
	saved = save_nic(3, &t, &d);
	ok(saved, "saved");
	mmio_w(ob_nic.common + 0x14, 0, 1);
	told_times = 0;
	loaded = load_nic(3, &t, d.p, d.len, err, sizeof(err));
	ok(loaded && told_times == 1 && told_offloads == (NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6),
	   "loaded: the new backend is told the offloads at once (%#x)", told_offloads);
	memcpy(bad, d.p, d.len);
	bad[22] = NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6 | NET_OFFLOAD_ECN;
	told_times = 0;
	ok(!load_nic(3, &t, bad, d.len, err, sizeof(err)) && strstr(err, "negotiated") && told_times == 0,
	   "GUEST_ECN the driver did not take: refused, the backend not told (%s)", err);
	mmio_w(ob_nic.common + 0x14, 0, 1);
	free(t.p);
	free(d.p);
}

/* ---- malicious rings ---- */

/* RAM that a case may change: the rings, the receive buffers */
static bool ram_untouched(void)
{
	for (size_t i = 0; i < RAM_SIZE; i++) {
		bool allowed = false;

		for (int q = 0; q < 2; q++)
			allowed |= (i >= net.used[q] && i < net.used[q] + 6 + 8 * QSIZE + 2);
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
		for (int i = 0; i < 20000 && !vdrv_needs_reset(&net); i++)
			usleep(1000);
	} else {
		kick(TXQ);
	}
	unsigned irqs = take_irqs();
	ok(vdrv_needs_reset(&net) && (irqs & 1), "%s: NEEDS_RESET and a configuration interrupt", what);
	ok(tb.sent == sent && ram_untouched() && vdrv_used_idx(&net, q) == 0,
	   "%s: nothing sent, nothing used, no RAM changed", what);
	/* a device that needs a reset ignores its queues until then */
	tx_frame(0, f, sizeof(f));
	kick(TXQ);
	ok(tb.sent == sent, "%s: ignored until reset", what);
}

static void t_outside(void)
{
	set_desc(net.desc[TXQ], 0, TXBUF, HDR_LEN, VIRTQ_DESC_F_NEXT, 1);
	set_desc(net.desc[TXQ], 1, RAM_SIZE - 16, 64, 0, 0);
	vdrv_post(&net, TXQ, 0);
}

static void t_huge_addr(void)
{
	set_desc(net.desc[TXQ], 0, 0xfffffffffffff000ull, 0x2000, 0, 0);
	vdrv_post(&net, TXQ, 0);
}

static void t_loop(void)
{
	set_desc(net.desc[TXQ], 0, TXBUF, HDR_LEN, VIRTQ_DESC_F_NEXT, 1);
	set_desc(net.desc[TXQ], 1, TXBUF + 64, 64, VIRTQ_DESC_F_NEXT, 0);
	vdrv_post(&net, TXQ, 0);
}

static void t_oversized(void)
{
	/* in RAM, but more than any frame without segmentation offload */
	set_desc(net.desc[TXQ], 0, TXBUF, HDR_LEN + NET_MAX_FRAME + 1, 0, 0);
	vdrv_post(&net, TXQ, 0);
}

static void t_short_hdr(void)
{
	set_desc(net.desc[TXQ], 0, TXBUF, 8, 0, 0);
	vdrv_post(&net, TXQ, 0);
}

static void t_bad_head(void)
{
	vdrv_post(&net, TXQ, QSIZE + 3);
}

static void t_bad_next(void)
{
	set_desc(net.desc[TXQ], 0, TXBUF, HDR_LEN, VIRTQ_DESC_F_NEXT, QSIZE);
	vdrv_post(&net, TXQ, 0);
}

static void t_avail_jump(void)
{
	set_desc(net.desc[TXQ], 0, TXBUF, HDR_LEN + 60, 0, 0);
	vdrv_post(&net, TXQ, 0);
	vdrv_publish(&net, TXQ, net.avail_idx[TXQ] + QSIZE + 1);
}

static void t_writable_tx(void)
{
	set_desc(net.desc[TXQ], 0, TXBUF, HDR_LEN + 60, VIRTQ_DESC_F_NEXT, 1);
	set_desc(net.desc[TXQ], 1, TXBUF + 0x1000, 64, VIRTQ_DESC_F_WRITE, 0);
	vdrv_post(&net, TXQ, 0);
}

static void t_indirect_loop(void)
{
	set_desc(INDIRECT, 0, TXBUF, HDR_LEN, VIRTQ_DESC_F_NEXT, 1);
	set_desc(INDIRECT, 1, TXBUF + 64, 64, VIRTQ_DESC_F_NEXT, 0);
	set_desc(net.desc[TXQ], 0, INDIRECT, 32, VIRTQ_DESC_F_INDIRECT, 0);
	vdrv_post(&net, TXQ, 0);
}

static void r_outside(void)
{
	set_desc(net.desc[RXQ], 0, RAM_SIZE - 100, 2048, VIRTQ_DESC_F_WRITE, 0);
	vdrv_post(&net, RXQ, 0);
}

static void r_readable(void)
{
	set_desc(net.desc[RXQ], 0, RXBUF, 2048, 0, 0);
	vdrv_post(&net, RXQ, 0);
}

static void r_short(void)
{
	set_desc(net.desc[RXQ], 0, RXBUF, 8, VIRTQ_DESC_F_WRITE, 0);
	vdrv_post(&net, RXQ, 0);
}

static void r_loop(void)
{
	set_desc(net.desc[RXQ], 0, RXBUF, 2048, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
	vdrv_post(&net, RXQ, 0);
}

static void r_bad_head(void)
{
	vdrv_post(&net, RXQ, 0xffff);
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
	ok(!net_parse("user,offload=off", &c) && c.offload == NET_OFFLOAD_OFF && !net_parse("tap=t0,offload=csum", &c) &&
		   c.offload == NET_OFFLOAD_CSUM_ONLY && !net_parse("user,offload=on", &c) && c.offload == NET_OFFLOAD_ON &&
		   !net_parse("user", &c) && c.offload == NET_OFFLOAD_ON,
	   "offload=off, csum and on (the default)");
	static const char *const bad[] = {
		"", "usr", "user,hostfwd=tcp::80", "user,hostfwd=tcp::0-:80", "user,hostfwd=tcp::65536-:80",
		"user,hostfwd=sctp::1-:2", "user,hostfwd=tcp:1.2.3:1-:2", "user,hostfwd=tcp::1-:2x",
		"user,mac=52:41:43:01:02", "user,mac=01:00:5e:00:00:01", "user,mac=52:41:43:01:02:03,mac=52:41:43:01:02:04",
		"user,bogus=1", "user,offload=no", "tap=", "tap=a/b", "tap=sixteen-chars-xx", "tap=x,hostfwd=tcp::1-:2", "user,tap=x",
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
	if (!vdrv_vm_create(RAM_SIZE, &stub_engine))
		return 1;
	snapshot = malloc(RAM_SIZE);
	io = iothread_create();
	bus = pci_init(&vm);
	if (!snapshot || !io || !bus) {
		fprintf(stderr, "setup failed\n");
		return 1;
	}
	pthread_mutex_init(&tb.lock, NULL);
	tb.nb.ops = &tb_ops;
	struct net_config cfg = { .kind = NET_USER, .has_mac = true };
	memcpy(cfg.mac, mac, 6);
	struct virtio_net *n = virtio_net_create(&vm, bus, io, &tb.nb, &cfg);
	static struct net_backend nb2 = { .ops = &tb_ops }, nb3 = { .ops = &tb_ops };
	struct net_config cfg2 = { .kind = NET_USER, .offload = NET_OFFLOAD_OFF };
	struct net_config cfg3 = { .kind = NET_USER, .offload = NET_OFFLOAD_CSUM_ONLY };
	struct net_config cfg4 = { .kind = NET_TAP };
	bool extra = virtio_net_create(&vm, bus, io, &nb2, &cfg2) && virtio_net_create(&vm, bus, io, &nb3, &cfg3) &&
		     virtio_net_create(&vm, bus, io, &ob, &cfg4);
	nic = n;
	test_parse();
	ok(n != NULL && iothread_start(io) == 0, "a virtio-net device on a test backend, I/O thread running");
	if (n) {
		test_identity();
		if (extra)
			test_offload_option();
		else
			ok(false, "NICs with offload=off and offload=csum");
		test_tx();
		test_rx();
		test_no_mrg();
		test_flow();
		test_echo();
		test_offload_helpers();
		test_offload_tx();
		test_offload_rx();
		test_ctrl();
		if (extra)
			test_snapshot();
		test_malicious();
	}
	iothread_stop(io);
	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail != 0;
}
