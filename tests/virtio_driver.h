/* A small virtio-pci driver for the device tests (tests/unit_virtio*.c):
 * it finds a function's capabilities, routes MSI-X to the LAPIC,
 * negotiates features, sets the queues up and posts buffers the way a
 * guest's driver does, on the test's VM `vm`, which it declares. Where the
 * rings sit is the test's choice: it sets qsize and desc/avail/used (or
 * calls vdrv_place) before vdrv_start. What a test checks of the device
 * stays in the test; this is only the driver's side. */
#ifndef ACCORD_TESTS_VIRTIO_DRIVER_H
#define ACCORD_TESTS_VIRTIO_DRIVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "dev/dev.h"
#include "dev/pci.h"
#include "dev/virtio/virtio.h"
#include "engine/engine.h"
#include "vm/vm.h"
#include "testvm.h"

struct vdrv {
	/* found by vdrv_probe; 0 where the function has no such structure */
	int slot;
	uint64_t bar, common, notify, isr, devcfg, msix;
	uint32_t notify_mult, devcfg_len;
	unsigned msix_cap, cfg_cap; /* offsets in configuration space */
	/* the queues vdrv_start sets up (vdrv_probe: all the device has),
	 * their size and their rings in guest RAM */
	int nq;
	uint16_t qsize;
	uint64_t desc[VIRTIO_MAX_QUEUES], avail[VIRTIO_MAX_QUEUES], used[VIRTIO_MAX_QUEUES];
	/* the index the driver has published in each available ring */
	uint16_t avail_idx[VIRTIO_MAX_QUEUES];
};

static struct vm vm;

/* the test's VM: ram bytes and one vCPU on engine (stub_engine runs
 * none), its LAPIC software-enabled so that MSI-X messages land */
static inline bool vdrv_vm_create(uint64_t ram, const struct engine_ops *engine)
{
	if (vm_create(&vm, ram, 1, engine, PERSONALITY_KVM, VM_IRQCHIP_USER, 0) < 0) {
		fprintf(stderr, "vm_create failed\n");
		return false;
	}
	lapic_mmio_write(vm.vcpu[0]->lapic, 0xF0, 0x1FF, 4);
	return true;
}

/* ---- accesses, locked like the engines ---- */

static inline uint64_t mmio_r(uint64_t a, int size)
{
	return locked_read(&vm, &vm.mmio, a, size);
}

static inline void mmio_w(uint64_t a, uint64_t v, int size)
{
	locked_write(&vm, &vm.mmio, a, v, size);
}

static inline uint8_t *gp(uint64_t gpa)
{
	return vm_gpa(&vm, gpa, 1);
}

/* the vector the LAPIC would deliver now (accepted and EOIed), or -1;
 * locked because an I/O thread may be raising interrupts meanwhile */
static inline int take_irq(void)
{
	int v;

	pthread_mutex_lock(&vm.io_lock);
	v = lapic_get_interrupt(vm.vcpu[0]->lapic, true);
	if (v >= 0)
		lapic_mmio_write(vm.vcpu[0]->lapic, 0xB0, 0, 4);
	pthread_mutex_unlock(&vm.io_lock);
	return v;
}

static inline void drain_irqs(void)
{
	while (take_irq() >= 0)
		;
}

static inline void set_desc(uint64_t table, int i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t *d = gp(table + 16 * i);

	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

/* ---- the driver ---- */

/* Turn on memory decoding and bus mastering of the function in slot, find
 * its capabilities, enable MSI-X and set nq to the device's queues; true
 * when the common, notify and MSI-X structures are there. The queue size
 * and the rings are left as they were. */
static inline bool vdrv_probe(struct vdrv *d, int slot)
{
	unsigned c, n = 0;

	d->slot = slot;
	d->common = d->notify = d->isr = d->devcfg = d->msix = 0;
	d->notify_mult = d->devcfg_len = 0;
	d->msix_cap = d->cfg_cap = 0;
	testvm_cfg_write(&vm, slot, 0x04, PCI_CMD_MEM | PCI_CMD_MASTER, 2);
	d->bar = testvm_cfg_read(&vm, slot, 0x10, 4) & ~0xfu;
	/* the bound stops a looping capability list */
	for (c = testvm_cfg_read(&vm, slot, 0x34, 1); c && n < 48; c = testvm_cfg_read(&vm, slot, c + 1, 1), n++) {
		uint8_t id = testvm_cfg_read(&vm, slot, c, 1);

		if (id == 0x11) {
			d->msix_cap = c;
			d->msix = d->bar + (testvm_cfg_read(&vm, slot, c + 4, 4) & ~7u);
			testvm_cfg_write(&vm, slot, c + 2, 0x8000, 2);
		} else if (id == 0x09) {
			uint8_t type = testvm_cfg_read(&vm, slot, c + 3, 1);
			uint64_t at = d->bar + testvm_cfg_read(&vm, slot, c + 8, 4);

			if (type == 1) {
				d->common = at;
			} else if (type == 2) {
				d->notify = at;
				d->notify_mult = testvm_cfg_read(&vm, slot, c + 16, 4);
			} else if (type == 3) {
				d->isr = at;
			} else if (type == 4) {
				d->devcfg = at;
				d->devcfg_len = testvm_cfg_read(&vm, slot, c + 12, 4);
			} else if (type == 5) {
				d->cfg_cap = c;
			}
		}
	}
	d->nq = 0;
	if (d->common) {
		d->nq = mmio_r(d->common + 0x12, 2);
		if (d->nq > VIRTIO_MAX_QUEUES)
			d->nq = VIRTIO_MAX_QUEUES;
	}
	return d->common && d->notify && d->msix;
}

/* MSI-X entries 0..n-1 (0: configuration changes, 1 + q: queue q) to the
 * LAPIC's vectors vector0..vector0 + n - 1, unmasked */
static inline void vdrv_msix(const struct vdrv *d, int n, uint8_t vector0)
{
	for (int v = 0; v < n; v++) {
		mmio_w(d->msix + 16 * v, 0xfee00000, 4);
		mmio_w(d->msix + 16 * v + 4, 0, 4);
		mmio_w(d->msix + 16 * v + 8, vector0 + v, 4);
		mmio_w(d->msix + 16 * v + 12, 0, 4);
	}
}

/* queue q's rings from base: the descriptor table, then the available and
 * the used ring, each on the next 4 KiB boundary (qsize set first) */
static inline void vdrv_place(struct vdrv *d, int q, uint64_t base)
{
	d->desc[q] = base;
	d->avail[q] = d->desc[q] + ((16u * d->qsize + 0xfff) & ~0xfffu);
	d->used[q] = d->avail[q] + ((6u + 2 * d->qsize + 0xfff) & ~0xfffu);
}

static inline uint8_t vdrv_status(const struct vdrv *d)
{
	return mmio_r(d->common + 0x14, 1);
}

static inline bool vdrv_needs_reset(const struct vdrv *d)
{
	return vdrv_status(d) & VIRTIO_S_NEEDS_RESET;
}

/* a 64-bit register in two halves, as Linux's vp_iowrite64_twopart */
static inline void vdrv_write64(uint64_t a, uint64_t v)
{
	mmio_w(a, (uint32_t)v, 4);
	mmio_w(a + 4, v >> 32, 4);
}

/* Reset the device, negotiate features (the low word; the high word is
 * VERSION_1), and set queues 0..nq-1 up with empty rings, queue q on
 * MSI-X entry 1 + q and configuration changes on entry 0: a driver up to
 * FEATURES_OK, free to post buffers before it sets DRIVER_OK. */
static inline bool vdrv_start(struct vdrv *d, uint32_t features)
{
	uint64_t c = d->common;

	mmio_w(c + 0x14, 0, 1);
	if (vdrv_status(d) != 0)
		return false;
	mmio_w(c + 0x14, VIRTIO_S_ACKNOWLEDGE, 1);
	mmio_w(c + 0x14, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER, 1);
	mmio_w(c + 0x08, 0, 4);
	mmio_w(c + 0x0c, features, 4);
	mmio_w(c + 0x08, 1, 4);
	mmio_w(c + 0x0c, 1, 4);
	mmio_w(c + 0x14, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK, 1);
	if (!(vdrv_status(d) & VIRTIO_S_FEATURES_OK))
		return false;
	mmio_w(c + 0x10, 0, 2);
	for (int q = 0; q < d->nq; q++) {
		memset(gp(d->desc[q]), 0, 16 * d->qsize);
		memset(gp(d->avail[q]), 0, 6 + 2 * d->qsize);
		memset(gp(d->used[q]), 0, 6 + 8 * d->qsize);
		d->avail_idx[q] = 0;
		mmio_w(c + 0x16, q, 2);
		mmio_w(c + 0x18, d->qsize, 2);
		mmio_w(c + 0x1a, 1 + q, 2);
		vdrv_write64(c + 0x20, d->desc[q]);
		vdrv_write64(c + 0x28, d->avail[q]);
		vdrv_write64(c + 0x30, d->used[q]);
		mmio_w(c + 0x1c, 1, 2);
		if (mmio_r(c + 0x1c, 2) != 1)
			return false;
	}
	drain_irqs();
	return vdrv_status(d) == (VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK);
}

/* vdrv_start, then DRIVER_OK */
static inline bool vdrv_setup(struct vdrv *d, uint32_t features)
{
	if (!vdrv_start(d, features))
		return false;
	mmio_w(d->common + 0x14, 0xf, 1);
	drain_irqs();
	return vdrv_status(d) == 0xf;
}

/* the available ring's index as the driver writes it (normally after a
 * new entry; a test may write any) */
static inline void vdrv_publish(struct vdrv *d, int q, uint16_t idx)
{
	d->avail_idx[q] = idx;
	__atomic_store_n((uint16_t *)gp(d->avail[q] + 2), idx, __ATOMIC_RELEASE);
}

/* head into queue q's available ring, without a notify */
static inline void vdrv_post(struct vdrv *d, int q, uint16_t head)
{
	memcpy(gp(d->avail[q] + 4 + 2 * (d->avail_idx[q] % d->qsize)), &head, 2);
	vdrv_publish(d, q, d->avail_idx[q] + 1);
}

static inline void vdrv_notify(const struct vdrv *d, int q)
{
	mmio_w(d->notify + q * d->notify_mult, q, 2);
}

static inline void vdrv_submit(struct vdrv *d, int q, uint16_t head)
{
	vdrv_post(d, q, head);
	vdrv_notify(d, q);
}

static inline uint16_t vdrv_used_idx(const struct vdrv *d, int q)
{
	return __atomic_load_n((uint16_t *)gp(d->used[q] + 2), __ATOMIC_ACQUIRE);
}

/* the used ring's entry i (taken modulo the ring) */
static inline void vdrv_used_elem(const struct vdrv *d, int q, int i, uint32_t *id, uint32_t *len)
{
	uint8_t *e = gp(d->used[q] + 4 + 8 * (i % d->qsize));

	memcpy(id, e, 4);
	memcpy(len, e + 4, 4);
}

static inline uint32_t vdrv_used_len(const struct vdrv *d, int q, int i)
{
	uint32_t id, len;

	vdrv_used_elem(d, q, i, &id, &len);
	return len;
}

#endif
