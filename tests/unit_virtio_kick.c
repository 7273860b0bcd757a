/* virtio notifies through eventfds (the transport's kicks, vm->io): a test
 * device with two queues on a test engine that records the engine's
 * ioeventfd calls. The bindings follow the queues (enable, reset) and the
 * BAR (moved, decoding off); where the engine cannot bind (emu), a write to
 * a queue's notify address signals its eventfd and nothing runs on the
 * writing thread; notifies for disabled queues, or before DRIVER_OK, are
 * ignored on both paths; the I/O thread serves a queue under vm->io_lock;
 * and virtio-blk served on the I/O thread completes a write and a read on
 * an image with its MSI-X interrupt. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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
#define NOTIFY_OFF 0x3000 /* as pci.c lays out BAR 0 */
#define MOVED_BAR 0xd0000000u

/* ---- a test engine: records ioeventfd calls ---- */

struct binding {
	uint64_t gpa;
	int fd;
	bool assign;
};
static struct binding calls[64];
static int ncalls;
static bool engine_binds; /* true: as KVM; false: as emu (the write exits) */

static int rec_ioeventfd(struct vm *m, uint64_t gpa, int fd, bool assign)
{
	(void)m;
	if (ncalls < 64)
		calls[ncalls++] = (struct binding){ gpa, fd, assign };
	return engine_binds ? 0 : -1;
}

static const struct engine_ops rec_engine = {
	.name = "rec",
	.vcpu_init = stub_vcpu_init,
	.ioeventfd = rec_ioeventfd,
};

static bool called(uint64_t gpa, int fd, bool assign)
{
	for (int i = 0; i < ncalls; i++)
		if (calls[i].gpa == gpa && calls[i].fd == fd && calls[i].assign == assign)
			return true;
	return false;
}

/* ---- a test device ---- */

static struct virtio_dev dev;
static int slot;
static struct vdrv drv;
static pthread_t main_thread;
static volatile int notified[2];
static volatile bool off_main = true, lock_held = true;

static void test_notify(struct virtio_dev *vd, int q)
{
	(void)vd;
	/* the transport holds vm->io_lock around a device's notify */
	if (pthread_mutex_trylock(&vm.io_lock) == 0) {
		lock_held = false;
		pthread_mutex_unlock(&vm.io_lock);
	}
	if (pthread_equal(pthread_self(), main_thread))
		off_main = false;
	__atomic_add_fetch(&notified[q], 1, __ATOMIC_SEQ_CST);
}

static const struct virtio_dev_ops test_ops = { .notify = test_notify };

static void queue_enable(int q, uint64_t base)
{
	mmio_w(drv.common + 0x16, q, 2);
	mmio_w(drv.common + 0x18, QSIZE, 2);
	mmio_w(drv.common + 0x20, base, 8);
	mmio_w(drv.common + 0x28, base + 0x1000, 8);
	mmio_w(drv.common + 0x30, base + 0x2000, 8);
	mmio_w(drv.common + 0x1c, 1, 2);
}

/* reset, negotiate VERSION_1, and stop before DRIVER_OK */
static void dev_begin(void)
{
	mmio_w(drv.common + 0x14, 0, 1);
	mmio_w(drv.common + 0x14, 3, 1);
	mmio_w(drv.common + 0x08, 1, 4);
	mmio_w(drv.common + 0x0c, 1, 4);
	mmio_w(drv.common + 0x14, 0xb, 1);
}

/* the eventfd's count, consumed; 0 when it was not signalled */
static uint64_t fd_take(int fd)
{
	uint64_t n = 0;

	if (read(fd, &n, sizeof(n)) != sizeof(n))
		return 0;
	return n;
}

/* wait (10 s at most, so a failure cannot hang) for cond() */
static bool wait_for(bool (*cond)(void))
{
	for (int i = 0; i < 10000 && !cond(); i++) {
		struct timespec ts = { 0, 1000000 };

		nanosleep(&ts, NULL);
	}
	return cond();
}

static bool q0_notified(void)
{
	return __atomic_load_n(&notified[0], __ATOMIC_SEQ_CST) > 0;
}

static bool kick0_drained(void)
{
	struct pollfd p = { .fd = dev.kick[0].fd, .events = POLLIN };

	return poll(&p, 1, 0) == 0;
}

/* the engine binds (KVM): registrations follow queues and BAR */
static void test_bindings(void)
{
	uint64_t n0, n1;

	engine_binds = true;
	ncalls = 0;
	dev_begin();
	ok(ncalls == 0, "no queue enabled: nothing bound (%d calls)", ncalls);
	queue_enable(0, 0x100000);
	n0 = drv.bar + NOTIFY_OFF;
	n1 = drv.bar + NOTIFY_OFF + 4;
	ok(ncalls == 1 && called(n0, dev.kick[0].fd, true),
	   "queue 0 enabled: its eventfd bound at BAR 0 + 0x3000 (%d calls)", ncalls);
	queue_enable(1, 0x110000);
	ok(ncalls == 2 && called(n1, dev.kick[1].fd, true), "queue 1 enabled: its own eventfd at BAR 0 + 0x3004");
	ok(dev.kick[0].fd != dev.kick[1].fd, "one eventfd per queue");
	mmio_w(drv.common + 0x14, 0xf, 1);

	ncalls = 0;
	testvm_cfg_write(&vm, slot, PCI_BAR0, MOVED_BAR, 4);
	ok(ncalls == 4 && called(n0, dev.kick[0].fd, false) && called(n1, dev.kick[1].fd, false) &&
		   called(MOVED_BAR + NOTIFY_OFF, dev.kick[0].fd, true) &&
		   called(MOVED_BAR + NOTIFY_OFF + 4, dev.kick[1].fd, true),
	   "BAR 0 moved: both unbound at the old address, bound at the new (%d calls)", ncalls);
	ncalls = 0;
	testvm_cfg_write(&vm, slot, PCI_COMMAND, PCI_CMD_MASTER, 2);
	ok(ncalls == 2 && called(MOVED_BAR + NOTIFY_OFF, dev.kick[0].fd, false),
	   "memory decoding off: both unbound (%d calls)", ncalls);
	ncalls = 0;
	testvm_cfg_write(&vm, slot, PCI_COMMAND, PCI_CMD_MEM | PCI_CMD_MASTER, 2);
	ok(ncalls == 2 && called(MOVED_BAR + NOTIFY_OFF + 4, dev.kick[1].fd, true),
	   "memory decoding on: bound again (%d calls)", ncalls);
	ncalls = 0;
	testvm_cfg_write(&vm, slot, PCI_COMMAND, PCI_CMD_MEM | PCI_CMD_MASTER, 2);
	ok(ncalls == 0, "a configuration write that changes nothing binds nothing");
	drv.bar = MOVED_BAR;
	drv.common = (drv.common & 0xffff) + drv.bar;

	ncalls = 0;
	mmio_w(drv.common + 0x14, 0, 1);
	ok(ncalls == 2 && called(MOVED_BAR + NOTIFY_OFF, dev.kick[0].fd, false) &&
		   called(MOVED_BAR + NOTIFY_OFF + 4, dev.kick[1].fd, false),
	   "device reset: both queues unbound (%d calls)", ncalls);
	ok(dev.kick[0].gpa == 0 && dev.kick[1].gpa == 0, "after the reset no queue is bound");
}

/* the engine cannot bind (emu): the transport signals the eventfd */
static void test_signals(void)
{
	engine_binds = false;
	notified[0] = notified[1] = 0;
	dev_begin();
	queue_enable(0, 0x100000);
	ok(dev.kick[0].gpa == 0, "the engine could not bind: the queue keeps the MMIO path");
	fd_take(dev.kick[0].fd);
	fd_take(dev.kick[1].fd);

	mmio_w(drv.bar + NOTIFY_OFF, 0, 2);
	ok(fd_take(dev.kick[0].fd) == 0, "a notify before DRIVER_OK is ignored");
	mmio_w(drv.common + 0x14, 0xf, 1);

	uint64_t before = dev.notifies;
	mmio_w(drv.bar + NOTIFY_OFF, 0, 2);
	ok(fd_take(dev.kick[0].fd) == 1, "a 16-bit write to queue 0's notify address signals its eventfd");
	mmio_w(drv.bar + NOTIFY_OFF, 0, 4);
	mmio_w(drv.bar + NOTIFY_OFF, 0, 4);
	ok(fd_take(dev.kick[0].fd) == 2, "two 32-bit writes: the eventfd counts two");
	ok(notified[0] == 0 && notified[1] == 0, "nothing ran on the writing thread");
	ok(dev.notifies == before, "the transport leaves the count to the I/O thread");

	mmio_w(drv.bar + NOTIFY_OFF + 4, 1, 2);
	ok(fd_take(dev.kick[1].fd) == 0 && fd_take(dev.kick[0].fd) == 0,
	   "a notify for queue 1, not enabled, signals nothing");
	ok(dev.notifies == before + 1, "but is counted");
	mmio_w(drv.bar + NOTIFY_OFF + 8, 2, 2);
	ok(fd_take(dev.kick[0].fd) == 0 && fd_take(dev.kick[1].fd) == 0,
	   "a write past the last queue's notify address signals nothing");
}

/* the I/O thread serves the queue */
static void test_iothread(void)
{
	notified[0] = 0;
	if (iothread_start(vm.io) < 0) {
		ok(false, "the I/O thread starts");
		return;
	}
	uint64_t before = dev.notifies;
	mmio_w(drv.bar + NOTIFY_OFF, 0, 2);
	ok(wait_for(q0_notified), "the I/O thread runs the device's notify for queue 0");
	ok(off_main, "not on the thread that wrote the notify address");
	ok(lock_held, "with vm->io_lock held");
	pthread_mutex_lock(&vm.io_lock);
	uint64_t after = dev.notifies;
	pthread_mutex_unlock(&vm.io_lock);
	ok(after == before + 1, "and counts it (%llu, was %llu)", (unsigned long long)after,
	   (unsigned long long)before);

	/* a kick that the I/O thread sees only after the driver reset the
	 * device: the queue is gone, the notify is dropped */
	iothread_stop(vm.io);
	notified[0] = 0;
	uint64_t one = 1;
	ok(write(dev.kick[0].fd, &one, sizeof(one)) == sizeof(one), "a kick left pending");
	mmio_w(drv.common + 0x14, 0, 1);
	iothread_start(vm.io);
	ok(wait_for(kick0_drained) && notified[0] == 0,
	   "consumed after a reset without running the device (%d)", notified[0]);
	iothread_stop(vm.io);
}

/* ---- virtio-blk on the I/O thread ---- */

#define DESC 0x200000u
#define AVAIL 0x201000u
#define USED 0x202000u
#define HDR 0x210000u
#define DATA 0x220000u
#define STATUS 0x230000u
#define IMG_SIZE (1u << 20)
#define V_QUEUE 0x41

static struct vdrv blk;

static bool blk_done(void)
{
	return vdrv_used_idx(&blk, 0) == blk.avail_idx[0];
}

static void blk_req(uint32_t type, uint64_t sector, uint32_t len, bool to_guest)
{
	uint8_t *h = gp(HDR);

	memset(h, 0, 16);
	memcpy(h, &type, 4);
	memcpy(h + 8, &sector, 8);
	*gp(STATUS) = 0xee;
	set_desc(DESC, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(DESC, 1, DATA, len, VIRTQ_DESC_F_NEXT | (to_guest ? VIRTQ_DESC_F_WRITE : 0), 2);
	set_desc(DESC, 2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	vdrv_submit(&blk, 0, 0);
}

static void test_blk(struct pci_bus *bus)
{
	char path[] = "/tmp/accord-unit-kick-XXXXXX";
	int fd = mkstemp(path);
	uint8_t buf[1024];

	if (fd < 0 || ftruncate(fd, IMG_SIZE)) {
		ok(false, "a temporary image");
		return;
	}
	engine_binds = false;
	if (!virtio_blk_create(&vm, bus, path, false)) {
		ok(false, "virtio-blk on the I/O thread");
		return;
	}
	bool up = vdrv_probe(&blk, slot + 1);
	blk.qsize = QSIZE;
	blk.desc[0] = DESC;
	blk.avail[0] = AVAIL;
	blk.used[0] = USED;
	/* queue 0's vector 1 to V_QUEUE on the LAPIC */
	vdrv_msix(&blk, 2, V_QUEUE - 1);
	ok(up && vdrv_setup(&blk, 0), "virtio-blk up with an MSI-X vector for its queue");

	iothread_start(vm.io);
	for (int i = 0; i < 1024; i++)
		gp(DATA)[i] = i * 13 + 5;
	blk_req(1, 4, 1024, false);
	bool done = wait_for(blk_done);
	ok(done && *gp(STATUS) == 0, "a 1 KiB write completes on the I/O thread (status %u)", *gp(STATUS));
	ok(pread(fd, buf, 1024, 4 * 512) == 1024 && !memcmp(buf, gp(DATA), 1024), "the image holds the data");
	int v = take_irq();
	ok(v == V_QUEUE, "the queue's MSI-X vector reached the LAPIC from the I/O thread (%#x)", v);
	memset(gp(DATA), 0, 1024);
	blk_req(0, 4, 1024, true);
	ok(wait_for(blk_done) && *gp(STATUS) == 0 && !memcmp(buf, gp(DATA), 1024),
	   "reading it back on the I/O thread gives the same bytes");
	iothread_stop(vm.io);
	unlink(path);
	close(fd);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	main_thread = pthread_self();
	if (!vdrv_vm_create(RAM_SIZE, &rec_engine))
		return 1;
	vm.io = iothread_create();
	struct pci_bus *bus = vm.io ? pci_init(&vm) : NULL;
	dev.device_id = 0x7f;
	dev.ops = &test_ops;
	dev.io = vm.io;
	dev.nqueues = 2;
	ok(bus && virtio_pci_init(&dev, &vm, bus, 0xff0000) == 0, "a virtio device with an I/O thread");
	if (!bus || !dev.pci.slot)
		goto out;
	slot = dev.pci.slot;
	ok(dev.kick[0].fd >= 0 && dev.kick[1].fd >= 0 && !dev.kick[0].gpa && !dev.kick[1].gpa,
	   "an eventfd per queue, bound nowhere yet");
	vdrv_probe(&drv, slot);
	test_bindings();
	test_signals();
	test_iothread();
	test_blk(bus);
out:
	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail != 0;
}
