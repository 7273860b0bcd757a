/* A guest driver for virtio-pci devices that the fuzzer steers: the
 * harness of a virtio device (virtio_blk.c, virtio_net.c, virtio_rng.c,
 * virtio_console.c) creates its device on a PCI bus of a small VM and hands
 * each input to vfuzz_run(), which brings the device up the way a driver
 * would and then executes the input as a little program that writes
 * descriptors, the avail ring, buffer contents and transport registers and
 * notifies.
 *
 * Input: byte 0 feature choices (bit 0 INDIRECT_DESC, bit 1 EVENT_IDX,
 * bit 2 every device feature offered) and, in bits 3-4, which ring sits
 * flush against the end of guest RAM (descriptor table, avail ring, used
 * ring; guest RAM is followed by a guard page, so a device that indexes
 * past that ring faults at once), byte 1 the queue size (log2, 0-8),
 * byte 2 the queue; then operations, each an opcode byte and operands
 * (little-endian):
 *
 *   0 desc     idx:1 mode:1 addr:4 len:4 flags:2 next:2   descriptor table
 *   1 indirect idx:1 mode:1 addr:4 len:4 flags:2 next:2   the indirect table
 *   2 avail    head:2     a ring entry, published with idx + 1
 *   3 idx      idx:2      the avail index, raw
 *   4 data     off:2 n:1 bytes:n   into the buffer area
 *   5 notify   queue:1
 *   6 event    used_event:2
 *   7 common   off:1 val:4 size:1  a write to the common configuration
 *
 * An address with mode bit 0 clear is an offset into the buffer area;
 * set, it is taken as is, with mode >> 1 as bits 32-39: rings and buffers
 * outside RAM, in the PCI hole or wrapping around are the device's
 * problem, which it must solve without touching anything outside guest
 * RAM. */
#ifndef ACCORD_FUZZ_VIRTIO_H
#define ACCORD_FUZZ_VIRTIO_H

#include <sys/mman.h>

#include "dev/dev.h"
#include "dev/pci.h"
#include "dev/virtio/virtio.h"
#include "vm/iothread.h"
#include "vm/vm.h"
#include "fuzz.h"
#include "testvm.h"
#include "virtio_driver.h"

#define VF_RAM (16u << 20)
#define VF_DESC 0x100000u
#define VF_AVAIL 0x101000u
#define VF_USED 0x102000u
#define VF_INDIRECT 0x103000u
#define VF_DATA 0x110000u
#define VF_DATA_SIZE 0x10000u
#define VF_BAR 0xd0000000u

static struct pci_bus *vf_bus;
/* the device under test, found by vfuzz_attach */
static struct vdrv vf_dev;

/* the rings of the current input */
static uint64_t vf_desc_at, vf_avail_at, vf_used_at;

/* the VM and its PCI bus, before the harness creates its device */
static void vfuzz_vm(void)
{
	uint8_t *ram;

	if (!vdrv_vm_create(VF_RAM, &stub_engine))
		abort();
	/* guest RAM with an inaccessible page after it: reads past the end
	 * of RAM land there instead of in whatever the host mapped next */
	ram = mmap(NULL, VF_RAM + 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (ram == MAP_FAILED || mprotect(ram, VF_RAM, PROT_READ | PROT_WRITE))
		abort();
	munmap(vm.ram, VF_RAM);
	vm.ram = ram;
	vf_bus = pci_init(&vm);
	if (!vf_bus)
		abort();
}

/* after the device exists: place its BAR, find the capabilities, point
 * the MSI-X vectors at the LAPIC */
static void vfuzz_attach(int slot)
{
	testvm_cfg_write(&vm, slot, 0x10, VF_BAR, 4);
	if (!vdrv_probe(&vf_dev, slot))
		abort();
	vdrv_msix(&vf_dev, VIRTIO_MAX_QUEUES + 1, 0x40);
}

/* notify queue q; a device served on an I/O thread (vm.io, not
 * started) has the notify's eventfd served here, on this thread, as the
 * I/O thread would serve it */
static void vf_kick(unsigned q)
{
	vdrv_notify(&vf_dev, q);
	if (vm.io)
		iothread_run_pending(vm.io);
}

struct vf_in {
	const uint8_t *p;
	size_t n;
};

static uint64_t vf_take(struct vf_in *in, int bytes)
{
	uint64_t v = 0;

	for (int i = 0; i < bytes; i++) {
		uint8_t b = 0;

		if (in->n) {
			b = *in->p++;
			in->n--;
		}
		v |= (uint64_t)b << (8 * i);
	}
	return v;
}

static void vf_desc(uint64_t table, struct vf_in *in, unsigned count)
{
	unsigned idx = vf_take(in, 1) % count;
	uint8_t mode = vf_take(in, 1);
	uint64_t addr = vf_take(in, 4);
	uint8_t *d = vm_gpa(&vm, table + 16 * idx, 16);

	if (mode & 1)
		addr |= (uint64_t)(mode >> 1) << 32;
	else
		addr = VF_DATA + addr % VF_DATA_SIZE;
	fz_put64(d, addr);
	fz_put32(d + 8, vf_take(in, 4));
	fz_put16(d + 12, vf_take(in, 2));
	fz_put16(d + 14, vf_take(in, 2));
}

/* one input: bring the device up and run the program */
static void vfuzz_run(const uint8_t *data, size_t size)
{
	struct vf_in in = { data, size };
	uint8_t feat = vf_take(&in, 1);
	unsigned qsize = 1u << (vf_take(&in, 1) % 9);
	unsigned queue = vf_take(&in, 1);
	uint16_t avail_idx = 0;
	uint32_t lo, hi;

	mmio_w(vf_dev.common + 0x14, 0, 1);
	vf_desc_at = VF_DESC;
	vf_avail_at = VF_AVAIL;
	vf_used_at = VF_USED;
	switch ((feat >> 3) & 3) {
	case 1: vf_desc_at = VF_RAM - 16 * qsize; break;
	case 2: vf_avail_at = VF_RAM - (6 + 2 * qsize); break;
	case 3: vf_used_at = VF_RAM - (8 + 8 * qsize); break;
	}
	memset(vm_gpa(&vm, VF_DESC, VF_DATA + VF_DATA_SIZE - VF_DESC), 0,
	       VF_DATA + VF_DATA_SIZE - VF_DESC);
	memset(vm_gpa(&vm, VF_RAM - 0x1000, 0x1000), 0, 0x1000);
	mmio_w(vf_dev.common + 0x14, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER, 1);
	mmio_w(vf_dev.common + 0x00, 0, 4);
	lo = mmio_r(vf_dev.common + 0x04, 4);
	if (!(feat & 4))
		lo &= (feat & 1 ? 1u << VIRTIO_F_INDIRECT_DESC : 0) |
		      (feat & 2 ? 1u << VIRTIO_F_EVENT_IDX : 0);
	mmio_w(vf_dev.common + 0x00, 1, 4);
	hi = mmio_r(vf_dev.common + 0x04, 4);
	if (!(feat & 4))
		hi &= 1; /* VERSION_1 */
	mmio_w(vf_dev.common + 0x08, 0, 4);
	mmio_w(vf_dev.common + 0x0c, lo, 4);
	mmio_w(vf_dev.common + 0x08, 1, 4);
	mmio_w(vf_dev.common + 0x0c, hi, 4);
	mmio_w(vf_dev.common + 0x14, 0xb, 1);
	mmio_w(vf_dev.common + 0x10, 0, 2);
	queue %= mmio_r(vf_dev.common + 0x12, 2);
	mmio_w(vf_dev.common + 0x16, queue, 2);
	mmio_w(vf_dev.common + 0x18, qsize, 2);
	mmio_w(vf_dev.common + 0x1a, 1 + queue, 2);
	mmio_w(vf_dev.common + 0x20, vf_desc_at, 8);
	mmio_w(vf_dev.common + 0x28, vf_avail_at, 8);
	mmio_w(vf_dev.common + 0x30, vf_used_at, 8);
	mmio_w(vf_dev.common + 0x1c, 1, 2);
	mmio_w(vf_dev.common + 0x14, 0xf, 1);

	while (in.n) {
		uint8_t *avail = vm_gpa(&vm, vf_avail_at, 6 + 2 * qsize);

		switch (vf_take(&in, 1) % 8) {
		case 0:
			vf_desc(vf_desc_at, &in, qsize);
			break;
		case 1:
			vf_desc(VF_INDIRECT, &in, 256);
			break;
		case 2:
			fz_put16(avail + 4 + 2 * (avail_idx % qsize), vf_take(&in, 2));
			fz_put16(avail + 2, ++avail_idx);
			break;
		case 3:
			avail_idx = vf_take(&in, 2);
			fz_put16(avail + 2, avail_idx);
			break;
		case 4: {
			unsigned off = vf_take(&in, 2), n = vf_take(&in, 1);
			uint8_t *d = vm_gpa(&vm, VF_DATA + off, n);

			for (unsigned i = 0; i < n && d && off + i < VF_DATA_SIZE; i++)
				d[i] = vf_take(&in, 1);
			break;
		}
		case 5:
			vf_kick(vf_take(&in, 1) % VIRTIO_MAX_QUEUES);
			break;
		case 6:
			fz_put16(avail + 4 + 2 * qsize, vf_take(&in, 2));
			break;
		case 7: {
			unsigned off = vf_take(&in, 1) % 0x40;
			uint32_t v = vf_take(&in, 4);

			mmio_w(vf_dev.common + off, v, 1 << (vf_take(&in, 1) % 3));
			break;
		}
		}
	}
	/* taking interrupts keeps the LAPIC's state bounded from input to
	 * input */
	drain_irqs();
}

/* ---- building seeds ---- */

struct vf_prog {
	uint8_t b[1024];
	size_t n;
};

static inline void vp_bytes(struct vf_prog *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p->b[p->n++] = v >> (8 * i);
}

static inline void vp_desc(struct vf_prog *p, int op, unsigned idx, uint32_t off, uint32_t len,
			   uint16_t flags, uint16_t next)
{
	vp_bytes(p, op, 1);
	vp_bytes(p, idx, 1);
	vp_bytes(p, 0, 1);
	vp_bytes(p, off, 4);
	vp_bytes(p, len, 4);
	vp_bytes(p, flags, 2);
	vp_bytes(p, next, 2);
}

static inline void vp_data(struct vf_prog *p, uint16_t off, const void *d, uint8_t n)
{
	vp_bytes(p, 4, 1);
	vp_bytes(p, off, 2);
	vp_bytes(p, n, 1);
	memcpy(p->b + p->n, d, n);
	p->n += n;
}

static inline void vp_kick(struct vf_prog *p, uint16_t head, uint8_t queue)
{
	vp_bytes(p, 2, 1);
	vp_bytes(p, head, 2);
	vp_bytes(p, 5, 1);
	vp_bytes(p, queue, 1);
}

#endif
