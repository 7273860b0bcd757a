/* virtio-rng and virtio-console driven through their registers the way a
 * guest driver would: identity and capabilities, requests and their used
 * lengths, the byte streams between the console's fds and its queues, and
 * broken drivers: chains in the wrong direction, buffers outside RAM,
 * loops and bad indices leave the device NEEDS_RESET with a configuration
 * interrupt and guest RAM untouched. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dev/dev.h"
#include "dev/pci.h"
#include "dev/virtio/virtio.h"
#include "engine/engine.h"
#include "vm/iothread.h"
#include "vm/vm.h"
#include "tap.h"
#include "testvm.h"
#include "virtio_driver.h"

#define RAM_SIZE (16u << 20)
#define QSIZE 16
#define V_CONFIG 0x40
/* queue q's vector is 1 + q, delivered as V_QUEUE0 + q */
#define V_QUEUE0 0x41

/* ring areas: 16 KiB per queue of a device */
#define RINGS(dev, q) (0x100000u + 0x10000u * (dev) + 0x4000u * (q))
#define BUF 0x300000u
#define BUF2 0x340000u
#define BUF3 0x380000u

static uint8_t *snapshot;

/* RAM equals the snapshot outside the rings of device d */
static bool ram_untouched_but_rings(const struct vdrv *d)
{
	for (size_t i = 0; i < RAM_SIZE; i++) {
		bool rings = i >= d->desc[0] && i < d->desc[0] + 0x4000u * d->nq;

		if (!rings && vm.ram[i] != snapshot[i])
			return false;
	}
	return true;
}

static bool all_bytes(const uint8_t *p, size_t n, uint8_t v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* the driver of the function in slot, its rings the index-th set of
 * RINGS, its interrupts from V_CONFIG on */
static void driver_init(struct vdrv *d, int slot, int index)
{
	vdrv_probe(d, slot);
	d->qsize = QSIZE;
	for (int q = 0; q < d->nq; q++)
		vdrv_place(d, q, RINGS(index, q));
	vdrv_msix(d, d->nq + 1, V_CONFIG);
}

/* ---- virtio-rng ---- */

static void test_rng(struct vdrv *d)
{
	ok(testvm_cfg_read(&vm, d->slot, 0, 4) == 0x10441af4, "virtio-rng is 1af4:1044");
	ok(d->nq == 1, "virtio-rng: one request queue");
	ok(!d->devcfg, "virtio-rng: no device configuration structure (Linux refuses an empty one)");
	ok(vdrv_setup(d, 0), "virtio-rng: the driver brings it up");

	/* one 64-byte buffer */
	memset(gp(BUF), 0xaa, 128);
	set_desc(d->desc[0], 0, BUF, 64, VIRTQ_DESC_F_WRITE, 0);
	vdrv_submit(d, 0, 0);
	ok(vdrv_used_idx(d, 0) == 1 && vdrv_used_len(d, 0, 0) == 64, "a 64-byte request is filled: used length 64");
	ok(!all_bytes(gp(BUF), 64, 0xaa) && !all_bytes(gp(BUF), 64, 0), "the bytes are neither the old ones nor zeros");
	ok(all_bytes(gp(BUF) + 64, 64, 0xaa), "nothing beyond the buffer is written");
	ok(take_irq() == V_QUEUE0, "the request queue's vector fires");

	/* the next request gives other bytes */
	uint8_t first[64];
	memcpy(first, gp(BUF), 64);
	vdrv_submit(d, 0, 0);
	ok(vdrv_used_idx(d, 0) == 2 && memcmp(first, gp(BUF), 64), "a second request gives different bytes");

	/* a chain of two writable buffers is filled across both */
	memset(gp(BUF), 0xaa, 256);
	memset(gp(BUF2), 0xaa, 256);
	set_desc(d->desc[0], 1, BUF, 100, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
	set_desc(d->desc[0], 2, BUF2, 28, VIRTQ_DESC_F_WRITE, 0);
	vdrv_submit(d, 0, 1);
	ok(vdrv_used_idx(d, 0) == 3 && vdrv_used_len(d, 0, 2) == 128, "a chain of 100 + 28 bytes: used length 128");
	ok(!all_bytes(gp(BUF2), 28, 0xaa) && all_bytes(gp(BUF) + 100, 156, 0xaa) &&
		   all_bytes(gp(BUF2) + 28, 228, 0xaa),
	   "both buffers are filled and nothing else");

	/* a request larger than the bound: 64 KiB filled, the rest untouched */
	memset(gp(BUF), 0xaa, 0x20000);
	set_desc(d->desc[0], 3, BUF, 0x10000, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 4);
	set_desc(d->desc[0], 4, BUF + 0x10000, 0x10000, VIRTQ_DESC_F_WRITE, 0);
	vdrv_submit(d, 0, 3);
	ok(vdrv_used_idx(d, 0) == 4 && vdrv_used_len(d, 0, 3) == 0x10000, "a 128 KiB chain gets 64 KiB: used length 65536");
	ok(all_bytes(gp(BUF) + 0x10000, 0x10000, 0xaa) && !all_bytes(gp(BUF) + 0xff00, 256, 0xaa),
	   "the bytes past 64 KiB are untouched");

	/* an empty writable buffer completes empty */
	set_desc(d->desc[0], 5, BUF, 0, VIRTQ_DESC_F_WRITE, 0);
	vdrv_submit(d, 0, 5);
	ok(vdrv_used_idx(d, 0) == 5 && vdrv_used_len(d, 0, 4) == 0 && !vdrv_needs_reset(d), "a zero-length buffer: used length 0");
	drain_irqs();

	/* broken drivers */
	static const struct {
		const char *name;
		uint64_t addr;
		uint32_t len;
		uint16_t flags, next, head;
	} bad[] = {
		{ "a device-readable buffer (the spec forbids them)", BUF, 64, 0, 0, 0 },
		{ "a buffer outside guest RAM", RAM_SIZE - 32, 64, VIRTQ_DESC_F_WRITE, 0, 0 },
		{ "a buffer at a huge address", 0xfffffffffffff000ull, 4096, VIRTQ_DESC_F_WRITE, 0, 0 },
		{ "a descriptor that loops to itself", BUF, 64, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0, 0 },
		{ "a next index beyond the table", BUF, 64, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, QSIZE, 0 },
		{ "a head index beyond the table", BUF, 64, VIRTQ_DESC_F_WRITE, 0, QSIZE + 3 },
		{ "unknown descriptor flags", BUF, 64, VIRTQ_DESC_F_WRITE | 0x80, 0, 0 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		vdrv_setup(d, 0);
		memset(gp(BUF), 0xaa, 4096);
		set_desc(d->desc[0], 0, bad[i].addr, bad[i].len, bad[i].flags, bad[i].next);
		memcpy(snapshot, vm.ram, RAM_SIZE);
		vdrv_submit(d, 0, bad[i].head);
		ok(vdrv_needs_reset(d) && vdrv_used_idx(d, 0) == 0 && take_irq() == V_CONFIG && ram_untouched_but_rings(d),
		   "rng: %s: NEEDS_RESET, a configuration interrupt, no bytes written", bad[i].name);
	}

	/* a readable buffer ahead of a writable one */
	vdrv_setup(d, 0);
	set_desc(d->desc[0], 0, BUF, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(d->desc[0], 1, BUF2, 64, VIRTQ_DESC_F_WRITE, 0);
	memcpy(snapshot, vm.ram, RAM_SIZE);
	vdrv_submit(d, 0, 0);
	ok(vdrv_needs_reset(d) && vdrv_used_idx(d, 0) == 0 && ram_untouched_but_rings(d),
	   "rng: a readable buffer before a writable one: NEEDS_RESET, nothing written");

	/* the available index running more than a ring ahead */
	vdrv_setup(d, 0);
	set_desc(d->desc[0], 0, BUF, 64, VIRTQ_DESC_F_WRITE, 0);
	uint16_t idx = QSIZE + 1;
	vdrv_publish(d, 0, idx);
	vdrv_notify(d, 0);
	ok(vdrv_needs_reset(d) && vdrv_used_idx(d, 0) == 0, "rng: avail idx %u with a ring of %u: NEEDS_RESET", idx, QSIZE);

	/* a device in NEEDS_RESET ignores its queue until reset */
	memset(gp(d->avail[0]), 0, 0x1000);
	d->avail_idx[0] = 0;
	vdrv_submit(d, 0, 0);
	ok(vdrv_used_idx(d, 0) == 0, "rng: NEEDS_RESET: further requests are ignored");
	ok(vdrv_setup(d, 0), "rng: a reset clears NEEDS_RESET");
	memset(gp(BUF), 0, 32);
	set_desc(d->desc[0], 0, BUF, 32, VIRTQ_DESC_F_WRITE, 0);
	vdrv_submit(d, 0, 0);
	ok(vdrv_used_idx(d, 0) == 1 && vdrv_used_len(d, 0, 0) == 32 && !all_bytes(gp(BUF), 32, 0),
	   "rng: after the reset requests are served again");
	drain_irqs();
}

/* ---- virtio-console ---- */

/* wait until queue q's used index reaches want (the reader thread is
 * asynchronous); the bound is for a hung device, not a speed check */
static bool wait_used(const struct vdrv *d, int q, uint16_t want)
{
	for (int i = 0; i < 2000; i++) {
		pthread_mutex_lock(&vm.io_lock);
		uint16_t u = vdrv_used_idx(d, q);
		pthread_mutex_unlock(&vm.io_lock);
		if (u == want)
			return true;
		usleep(5000);
	}
	return false;
}

static ssize_t read_all(int fd, char *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, 10000) <= 0)
			break;
		ssize_t r = read(fd, buf + got, n - got);
		if (r <= 0)
			break;
		got += r;
	}
	return got;
}

static void test_console(struct vdrv *d, int in_wr, int out_rd)
{
	char buf[64];

	ok(testvm_cfg_read(&vm, d->slot, 0, 4) == 0x10431af4, "virtio-console is 1af4:1043");
	ok(d->nq == 2, "virtio-console: receive and transmit queues");
	ok(d->devcfg && d->devcfg_len == 12 && mmio_r(d->devcfg, 4) == 0 && mmio_r(d->devcfg + 8, 4) == 0,
	   "virtio-console: a 12-byte configuration, all zero (no optional feature offered)");
	mmio_w(d->common, 0, 4);
	ok((mmio_r(d->common + 4, 4) & 0x7) == 0, "virtio-console: SIZE, MULTIPORT and EMERG_WRITE not offered");

	/* input typed before the driver is up waits for it */
	ok(write(in_wr, "early", 5) == 5, "input before the driver is up");
	usleep(100000);
	/* a driver may post receive buffers before DRIVER_OK; the
	 * transport drops that notification */
	ok(vdrv_start(d, 0), "virtio-console: the driver sets the queues up");
	memset(gp(BUF3), '.', 64);
	set_desc(d->desc[0], 0, BUF3, 64, VIRTQ_DESC_F_WRITE, 0);
	vdrv_submit(d, 0, 0);
	mmio_w(d->common + 0x14, 0xf, 1);
	ok(vdrv_status(d) == 0xf, "virtio-console: DRIVER_OK after the receive buffer was posted");
	ok(wait_used(d, 0, 1) && vdrv_used_len(d, 0, 0) == 5 && !memcmp(gp(BUF3), "early.", 6),
	   "the early input arrives in the buffer posted before DRIVER_OK");
	ok(take_irq() == V_QUEUE0, "the receive queue's vector fires");

	/* transmit: two readable buffers come out in order */
	memcpy(gp(BUF), "hello, ", 7);
	memcpy(gp(BUF2), "hvc0\n", 5);
	set_desc(d->desc[1], 0, BUF, 7, VIRTQ_DESC_F_NEXT, 1);
	set_desc(d->desc[1], 1, BUF2, 5, 0, 0);
	vdrv_submit(d, 1, 0);
	ssize_t n = read_all(out_rd, buf, 12);
	ok(n == 12 && !memcmp(buf, "hello, hvc0\n", 12), "transmitted bytes reach the output fd in order");
	ok(vdrv_used_idx(d, 1) == 1 && vdrv_used_len(d, 1, 0) == 0, "transmit: used length 0");
	ok(take_irq() == V_QUEUE0 + 1, "the transmit queue's vector fires");

	/* input split across two small buffers, posted before it arrives */
	memset(gp(BUF3), '.', 64);
	set_desc(d->desc[0], 1, BUF3, 4, VIRTQ_DESC_F_WRITE, 0);
	set_desc(d->desc[0], 2, BUF3 + 32, 16, VIRTQ_DESC_F_WRITE, 0);
	vdrv_submit(d, 0, 1);
	vdrv_submit(d, 0, 2);
	ok(write(in_wr, "0123456789", 10) == 10, "ten bytes of input");
	ok(wait_used(d, 0, 3) && vdrv_used_len(d, 0, 1) == 4 && vdrv_used_len(d, 0, 2) == 6 &&
		   !memcmp(gp(BUF3), "0123.", 5) && !memcmp(gp(BUF3 + 32), "456789.", 7),
	   "split across a 4-byte and a 16-byte buffer: used lengths 4 and 6");

	/* more input than buffers: the rest waits for the next buffer */
	ok(write(in_wr, "abcdefgh", 8) == 8, "eight more bytes with no buffer posted");
	usleep(100000);
	ok(vdrv_used_idx(d, 0) == 3 && !vdrv_needs_reset(d), "no buffer: nothing is completed, nothing lost yet");
	memset(gp(BUF3), '.', 64);
	set_desc(d->desc[0], 3, BUF3, 64, VIRTQ_DESC_F_WRITE, 0);
	vdrv_submit(d, 0, 3);
	ok(wait_used(d, 0, 4) && vdrv_used_len(d, 0, 3) == 8 && !memcmp(gp(BUF3), "abcdefgh.", 9),
	   "the waiting input arrives when a buffer is posted");
	drain_irqs();

	/* broken drivers */
	vdrv_setup(d, 0);
	set_desc(d->desc[1], 0, BUF, 8, VIRTQ_DESC_F_WRITE, 0);
	memcpy(snapshot, vm.ram, RAM_SIZE);
	vdrv_submit(d, 1, 0);
	ok(vdrv_needs_reset(d) && vdrv_used_idx(d, 1) == 0 && take_irq() == V_CONFIG && ram_untouched_but_rings(d),
	   "console: a writable transmit buffer: NEEDS_RESET, a configuration interrupt");

	vdrv_setup(d, 0);
	set_desc(d->desc[1], 0, RAM_SIZE - 4, 8, 0, 0);
	vdrv_submit(d, 1, 0);
	ok(vdrv_needs_reset(d) && vdrv_used_idx(d, 1) == 0, "console: a transmit buffer outside RAM: NEEDS_RESET");

	vdrv_setup(d, 0);
	set_desc(d->desc[1], 0, BUF, 8, VIRTQ_DESC_F_NEXT, 0);
	vdrv_submit(d, 1, 0);
	ok(vdrv_needs_reset(d) && vdrv_used_idx(d, 1) == 0, "console: a transmit chain that loops: NEEDS_RESET");

	vdrv_setup(d, 0);
	set_desc(d->desc[0], 0, BUF3, 64, 0, 0);
	memcpy(snapshot, vm.ram, RAM_SIZE);
	vdrv_submit(d, 0, 0);
	ok(write(in_wr, "x", 1) == 1, "a byte of input for a readable receive buffer");
	for (int i = 0; i < 200 && !vdrv_needs_reset(d); i++)
		usleep(5000);
	ok(vdrv_needs_reset(d) && vdrv_used_idx(d, 0) == 0 && ram_untouched_but_rings(d),
	   "console: a device-readable receive buffer: NEEDS_RESET, nothing written");
	ok(vdrv_setup(d, 0), "console: a reset clears NEEDS_RESET");
	/* the byte that met the broken ring was not taken: it comes now */
	memset(gp(BUF3), '.', 64);
	set_desc(d->desc[0], 0, BUF3, 64, VIRTQ_DESC_F_WRITE, 0);
	vdrv_submit(d, 0, 0);
	ok(wait_used(d, 0, 1) && vdrv_used_len(d, 0, 0) == 1 && gp(BUF3)[0] == 'x',
	   "console: after the reset the waiting input arrives");
	drain_irqs();
}

int main(void)
{
	int in[2], out[2];

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!vdrv_vm_create(RAM_SIZE, &stub_engine))
		return 1;
	snapshot = malloc(RAM_SIZE);
	if (!snapshot || pipe(in) || pipe(out)) {
		perror("setup");
		return 1;
	}
	struct pci_bus *bus = pci_init(&vm);
	struct virtio_rng *rng = bus ? virtio_rng_create(&vm, bus) : NULL;
	struct virtio_console *con = bus ? virtio_console_create(&vm, bus, out[1]) : NULL;
	/* static: reachable at exit, as accord's own is (LeakSanitizer) */
	static struct iothread *io;
	io = iothread_create();
	ok(rng && con && io && !virtio_console_attach_input(con, io, in[0]) && !iothread_start(io),
	   "PCI bus with a virtio-rng and a virtio-console, its input on an I/O thread");
	if (rng && con) {
		struct vdrv r, c;

		driver_init(&r, 1, 0);
		driver_init(&c, 2, 1);
		test_rng(&r);
		test_console(&c, in[1], out[0]);
		iothread_stop(io);
		virtio_console_destroy(con);
	}
	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail != 0;
}
