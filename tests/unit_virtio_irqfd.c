/* Unit tests for the release of virtio MSI-X irqfds (src/dev/virtio/pci.c
 * msix_irqfd/msix_sync, vm_msi_irqfd_release): with the split irqchip a
 * vector's interrupts go through an eventfd the engine binds to a route;
 * a recording engine stands for KVM (no /dev/kvm needed) and keeps the
 * bindings it holds. Masking a vector, the function mask, reprogramming
 * its entry, disabling MSI-X, a device reset and the device going away
 * each release the binding (the engine told, the eventfd closed); a guest
 * that does so a thousand times leaves the process with the file
 * descriptors it had. Prints TAP. */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dev/dev.h"
#include "dev/pci.h"
#include "dev/virtio/virtio.h"
#include "engine/engine.h"
#include "vm/vm.h"
#include "tap.h"
#include "testvm.h"
#include "virtio_driver.h"

#define GSIS 64
#define FIRST_GSI 24

/* the recording engine's bindings: fd by GSI, -1 where none */
static int bound[GSIS];
static int nbind, nrelease, nmsi, bad_release;
static uint32_t last_data;

static int rec_msi(struct vm *m, uint64_t addr, uint32_t data)
{
	(void)m;
	(void)addr;
	nmsi++;
	return 0;
}

static int rec_irqfd(struct vm *m, int fd, uint64_t addr, uint32_t data)
{
	(void)m;
	(void)addr;
	for (int g = FIRST_GSI; g < GSIS; g++) {
		if (bound[g] < 0) {
			bound[g] = fd;
			nbind++;
			last_data = data;
			return g;
		}
	}
	return -1;
}

static void rec_irqfd_release(struct vm *m, int gsi, int fd)
{
	(void)m;
	if (gsi < FIRST_GSI || gsi >= GSIS || bound[gsi] != fd) {
		bad_release++;
		return;
	}
	bound[gsi] = -1;
	nrelease++;
}

static const struct engine_ops rec_engine = {
	.name = "rec",
	.vcpu_init = stub_vcpu_init,
	.msi = rec_msi,
	.irqfd = rec_irqfd,
	.irqfd_release = rec_irqfd_release,
};

static int nbound(void)
{
	int n = 0;

	for (int g = FIRST_GSI; g < GSIS; g++)
		n += bound[g] >= 0;
	return n;
}

static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own */
}

static struct virtio_dev dev;
static struct vdrv drv;

static const struct virtio_dev_ops test_ops = { 0 };

static void fire(int q)
{
	pthread_mutex_lock(&vm.io_lock);
	virtio_notify_queue(&dev, q);
	pthread_mutex_unlock(&vm.io_lock);
}

/* an eventfd bound by the device holds one count per interrupt */
static bool fd_is_eventfd(int fd)
{
	char path[64], target[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = 0;
	return strstr(target, "eventfd") != NULL;
}

static void entry(int v, uint32_t data, uint32_t ctrl)
{
	mmio_w(drv.msix + 16 * v, 0xfee00000, 4);
	mmio_w(drv.msix + 16 * v + 4, 0, 4);
	mmio_w(drv.msix + 16 * v + 8, data, 4);
	mmio_w(drv.msix + 16 * v + 12, ctrl, 4);
}

static void msix_ctrl_write(uint16_t ctrl)
{
	testvm_cfg_write(&vm, drv.slot, drv.msix_cap + 2, ctrl, 2);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int g = 0; g < GSIS; g++)
		bound[g] = -1;
	if (!vdrv_vm_create(16 << 20, &rec_engine))
		return 1;
	vm.irqchip = VM_IRQCHIP_SPLIT;
	struct pci_bus *bus = pci_init(&vm);
	dev.device_id = 0x7f;
	dev.ops = &test_ops;
	dev.nqueues = 2;
	ok(bus && virtio_pci_init(&dev, &vm, bus, 0xff0000) == 0, "a virtio device");
	if (!bus || !dev.pci.slot || !vdrv_probe(&drv, dev.pci.slot)) {
		ok(false, "the device's capabilities");
		goto out;
	}
	/* queue 0 on vector 1, queue 1 on vector 2 */
	for (int q = 0; q < 2; q++) {
		mmio_w(drv.common + 0x16, q, 2);
		mmio_w(drv.common + 0x1a, q + 1, 2);
	}
	int fds0 = open_fds();

	entry(1, 0x41, 0);
	entry(2, 0x42, 0);
	fire(0);
	fire(0);
	ok(nbind == 1 && nbound() == 1 && dev.irqfd[1].fd >= 0 && fd_is_eventfd(dev.irqfd[1].fd) && nmsi == 0,
	   "vector 1's interrupts go through one bound eventfd (%d binds, %d MSIs)", nbind, nmsi);
	ok(open_fds() == fds0 + 1, "one file descriptor more (%d, was %d)", open_fds(), fds0);

	entry(1, 0x41, 1);
	ok(nrelease == 1 && nbound() == 0 && dev.irqfd[1].fd < 0 && open_fds() == fds0,
	   "masking the vector releases its binding and closes the eventfd");
	fire(0);
	ok(nbind == 1 && nmsi == 0, "a masked vector's interrupt binds nothing (pending)");
	entry(1, 0x41, 0);
	ok(nbind == 2 && nbound() == 1 && last_data == 0x41, "the unmask sends it through a new binding");

	mmio_w(drv.msix + 16 * 1 + 8, 0x51, 4);
	ok(nrelease == 2 && nbound() == 0, "reprogramming the entry's data releases the binding");
	fire(0);
	ok(nbind == 3 && last_data == 0x51, "the next interrupt binds the new message (%#x)", last_data);

	fire(1);
	ok(nbound() == 2, "a second vector, a second binding");
	msix_ctrl_write(0xC000);
	ok(nbound() == 0 && dev.irqfd[1].fd < 0 && dev.irqfd[2].fd < 0, "the function mask releases both");
	fire(0);
	fire(1);
	msix_ctrl_write(0x8000);
	ok(nbound() == 2, "the pending interrupts go out at the unmask through new bindings");
	msix_ctrl_write(0x0000);
	ok(nbound() == 0 && open_fds() == fds0, "disabling MSI-X releases both (%d fds, was %d)", open_fds(), fds0);
	msix_ctrl_write(0x8000);

	/* a guest that reprograms and masks its vectors over and over */
	for (int i = 0; i < 1000; i++) {
		entry(1, 0x40 + i % 32, 0);
		fire(0);
		fire(1);
		if (i % 3 == 0)
			entry(2, 0x42, 1);
		else if (i % 3 == 1)
			entry(2, 0x42, 0);
	}
	ok(nbound() <= 2 && open_fds() <= fds0 + 2 && bad_release == 0,
	   "1000 reprogrammings: %d bindings held, %d fds (was %d), %d binds, %d releases", nbound(), open_fds(),
	   fds0, nbind, nrelease);

	mmio_w(drv.common + 0x14, 0, 1);
	ok(nbound() == 0 && open_fds() == fds0, "a device reset releases every binding");
	entry(1, 0x41, 0);
	for (int q = 0; q < 2; q++) {
		mmio_w(drv.common + 0x16, q, 2);
		mmio_w(drv.common + 0x1a, q + 1, 2);
	}
	fire(0);
	ok(nbound() == 1, "bound again after the reset");
	virtio_pci_release(&dev);
	ok(nbound() == 0 && open_fds() == fds0 && bad_release == 0, "the device going away releases it");

	/* the user irqchip: no binding at all */
	vm.irqchip = VM_IRQCHIP_USER;
	int before = nbind;
	fire(0);
	ok(nbind == before && nbound() == 0, "with the user irqchip nothing is bound");
out:
	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail != 0;
}
