/* The virtio 1.x modern PCI transport (virtio 1.x, 4.1): vendor 0x1af4,
 * device 0x1040 + type, with the common, notify, ISR and device
 * configuration structures and the MSI-X table and PBA in one 32-bit
 * memory BAR. Interrupts are MSI-X only: the function has no INTx pin.
 * A driver that breaks the rules gets NEEDS_RESET and a configuration
 * interrupt; the device then ignores its queues until it is reset. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "dev/virtio/virtio.h"
#include "vm/iothread.h"
#include "vm/vm.h"
#include "vm/snapshot.h"

#define BAR_SIZE 0x8000
#define COMMON_OFF 0x0000
#define COMMON_LEN 0x38
#define ISR_OFF 0x1000
#define DEVCFG_OFF 0x2000
#define NOTIFY_OFF 0x3000
#define NOTIFY_MULT 4
#define MSIX_TABLE_OFF 0x4000
#define MSIX_PBA_OFF 0x5000

#define CAP_COMMON 1
#define CAP_NOTIFY 2
#define CAP_ISR 3
#define CAP_DEVICE 4
#define CAP_PCI_CFG 5

#define MSIX_ENABLE 0x8000
#define MSIX_MASKALL 0x4000

/* what the transport itself implements */
#define TRANSPORT_FEATURES \
	((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_EVENT_IDX) | (1ull << VIRTIO_F_INDIRECT_DESC))


bool virtio_has(const struct virtio_dev *vd, int bit)
{
	return vd->driver_features >> bit & 1;
}

static uint64_t offered(const struct virtio_dev *vd)
{
	return vd->features | TRANSPORT_FEATURES;
}

static unsigned msix_nvec(const struct virtio_dev *vd)
{
	return vd->nqueues + 1;
}

static uint16_t msix_ctrl(const struct virtio_dev *vd)
{
	return pci_get_le(vd->pci.cfg + vd->msix_cap + 2, 2);
}

static bool msix_masked(const struct virtio_dev *vd, unsigned v)
{
	return (msix_ctrl(vd) & MSIX_MASKALL) || (vd->msix_table[16 * v + 12] & 1);
}

/* Where the engine can (the split irqchip), vector v's message goes as a
 * write to an eventfd that the engine routes to its LAPICs (KVM_IRQFD):
 * bound at the vector's first interrupt with the table entry as it is
 * then, released by msix_sync when that no longer holds (the mask and the
 * PBA stay the transport's). false: send it with vm_send_msi. */
static bool msix_irqfd(struct virtio_dev *vd, unsigned v, uint64_t addr, uint32_t data)
{
	struct virtio_irqfd *f = &vd->irqfd[v];
	uint64_t one = 1;

	if (f->failed || addr >> 20 != 0xFEE)
		return false;
	if (f->fd < 0) {
		f->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		f->gsi = f->fd < 0 ? -1 : vm_msi_irqfd(vd->vm, f->fd, addr, data);
		if (f->gsi < 0) {
			if (f->fd >= 0)
				close(f->fd);
			*f = (struct virtio_irqfd){ .fd = -1, .gsi = -1, .failed = true };
			return false;
		}
		f->addr = addr;
		f->data = data;
	}
	return write(f->fd, &one, sizeof(one)) == sizeof(one);
}

static void msix_unbind(struct virtio_dev *vd, unsigned v)
{
	struct virtio_irqfd *f = &vd->irqfd[v];

	if (f->fd < 0)
		return;
	vm_msi_irqfd_release(vd->vm, f->gsi, f->fd);
	close(f->fd);
	f->fd = f->gsi = -1;
}

/* A bound vector keeps its eventfd and route only while it is enabled,
 * unmasked and holds the message it was bound with: a guest that masks or
 * reprograms its vectors over and over holds one binding a vector at most */
static void msix_sync(struct virtio_dev *vd)
{
	for (unsigned v = 0; v < VIRTIO_MAX_QUEUES + 1; v++) {
		const uint8_t *e = vd->msix_table + 16 * v;
		const struct virtio_irqfd *f = &vd->irqfd[v];

		if (f->fd < 0)
			continue;
		if (v >= msix_nvec(vd) || !(msix_ctrl(vd) & MSIX_ENABLE) || msix_masked(vd, v) ||
		    (pci_get_le(e, 4) | (uint64_t)pci_get_le(e + 4, 4) << 32) != f->addr ||
		    pci_get_le(e + 8, 4) != f->data)
			msix_unbind(vd, v);
	}
}

static void msix_send(struct virtio_dev *vd, unsigned v)
{
	const uint8_t *e = vd->msix_table + 16 * v;
	uint64_t addr = pci_get_le(e, 4) | (uint64_t)pci_get_le(e + 4, 4) << 32;
	uint32_t data = pci_get_le(e + 8, 4);

	vd->interrupts++;
	if (!msix_irqfd(vd, v, addr, data))
		vm_send_msi(vd->vm, addr, data);
}

static void msix_fire(struct virtio_dev *vd, uint16_t v)
{
	if (v >= msix_nvec(vd) || !(msix_ctrl(vd) & MSIX_ENABLE))
		return;
	if (msix_masked(vd, v))
		vd->msix_pba[v / 8] |= 1 << (v % 8);
	else
		msix_send(vd, v);
}

/* a mask was lifted: deliver what became pending meanwhile */
static void msix_flush(struct virtio_dev *vd)
{
	if (!(msix_ctrl(vd) & MSIX_ENABLE))
		return;
	for (unsigned v = 0; v < msix_nvec(vd); v++) {
		if ((vd->msix_pba[v / 8] >> (v % 8) & 1) && !msix_masked(vd, v)) {
			vd->msix_pba[v / 8] &= ~(1 << (v % 8));
			msix_send(vd, v);
		}
	}
}

void virtio_notify_queue(struct virtio_dev *vd, int q)
{
	vd->isr |= 1;
	msix_fire(vd, vd->vq[q].msix_vector);
}

void virtio_needs_reset(struct virtio_dev *vd)
{
	vd->errors++;
	if (vd->status & VIRTIO_S_NEEDS_RESET)
		return;
	vd->status |= VIRTIO_S_NEEDS_RESET;
	if (vd->status & VIRTIO_S_DRIVER_OK) {
		vd->isr |= 2;
		msix_fire(vd, vd->config_vector);
	}
}

/* the driver may have queue q served: enabled, DRIVER_OK, no NEEDS_RESET */
static bool queue_live(const struct virtio_dev *vd, unsigned q)
{
	return q < (unsigned)vd->nqueues && vd->vq[q].enabled &&
	       (vd->status & (VIRTIO_S_DRIVER_OK | VIRTIO_S_NEEDS_RESET)) == VIRTIO_S_DRIVER_OK;
}

/* Keep each queue's eventfd bound where its notify address is now: while
 * the queue is enabled and the BAR decodes, at BAR 0 + NOTIFY_OFF +
 * NOTIFY_MULT * q (one address per queue, so no data match is needed);
 * nowhere otherwise. Called after whatever can change that: a queue
 * enabled, a reset, a configuration write (BAR 0, the command register).
 * Where the engine cannot bind, the write comes to notify_write instead. */
static void kicks_bind(struct virtio_dev *vd)
{
	uint32_t bar = pci_bar_addr(&vd->pci, 0);

	if (!vd->io)
		return;
	for (int q = 0; q < vd->nqueues; q++) {
		struct virtio_kick *k = &vd->kick[q];
		uint64_t want = bar && vd->vq[q].enabled ? bar + NOTIFY_OFF + NOTIFY_MULT * (uint64_t)q : 0;

		if (k->gpa == want)
			continue;
		if (k->gpa)
			vm_ioeventfd(vd->vm, k->gpa, k->fd, false);
		k->gpa = want && vm_ioeventfd(vd->vm, want, k->fd, true) == 0 ? want : 0;
	}
}

/* the I/O thread: a queue's eventfd fired (from the engine or from
 * notify_write); n notifies since the last time */
static void kick_ready(void *opaque, int fd, short revents)
{
	struct virtio_kick *k = opaque;
	struct virtio_dev *vd = k->vd;
	uint64_t n;

	(void)revents;
	if (read(fd, &n, sizeof(n)) != sizeof(n))
		return;
	pthread_mutex_lock(&vd->vm->io_lock);
	vd->notifies += n;
	if (queue_live(vd, k->q))
		vd->ops->notify(vd, k->q);
	pthread_mutex_unlock(&vd->vm->io_lock);
}

static void device_reset(struct virtio_dev *vd)
{
	vd->status = 0;
	vd->driver_features = 0;
	vd->dfsel = vd->gfsel = 0;
	vd->isr = 0;
	vd->config_vector = VIRTIO_NO_VECTOR;
	vd->queue_sel = 0;
	memset(vd->msix_pba, 0, sizeof(vd->msix_pba)); /* nothing is pending any more */
	virtio_pci_release(vd);
	for (int i = 0; i < VIRTIO_MAX_QUEUES; i++)
		vq_reset(&vd->vq[i]);
	kicks_bind(vd);
	if (vd->ops->reset)
		vd->ops->reset(vd);
}

static void write_status(struct virtio_dev *vd, uint8_t val)
{
	if (!val) {
		device_reset(vd);
		return;
	}
	if ((val & VIRTIO_S_FEATURES_OK) && !(vd->status & VIRTIO_S_FEATURES_OK)) {
		/* accept only what was offered, and only the modern interface */
		if ((vd->driver_features & ~offered(vd)) || !virtio_has(vd, VIRTIO_F_VERSION_1))
			val &= ~VIRTIO_S_FEATURES_OK;
	}
	vd->status = val | (vd->status & VIRTIO_S_NEEDS_RESET);
}

static struct virtq *selected(struct virtio_dev *vd)
{
	return vd->queue_sel < vd->nqueues ? &vd->vq[vd->queue_sel] : NULL;
}

static uint64_t common_read(struct virtio_dev *vd, unsigned off, int size)
{
	struct virtq *q = selected(vd);
	uint64_t v;

	switch (off) {
	case 0x00: return vd->dfsel;
	case 0x04: return vd->dfsel < 2 ? (uint32_t)(offered(vd) >> (32 * vd->dfsel)) : 0;
	case 0x08: return vd->gfsel;
	case 0x0c: return vd->gfsel < 2 ? (uint32_t)(vd->driver_features >> (32 * vd->gfsel)) : 0;
	case 0x10: return vd->config_vector;
	case 0x12: return vd->nqueues;
	case 0x14: return vd->status;
	case 0x15: return vd->config_generation;
	case 0x16: return vd->queue_sel;
	case 0x18: return q ? q->size : 0;
	case 0x1a: return q ? q->msix_vector : VIRTIO_NO_VECTOR;
	case 0x1c: return q ? q->enabled : 0;
	case 0x1e: return q ? vd->queue_sel : 0;
	}
	if (!q || off < 0x20 || off >= COMMON_LEN)
		return 0;
	/* the 64-bit ring addresses, whole or in 32-bit halves */
	v = off < 0x28 ? q->desc_gpa : off < 0x30 ? q->avail_gpa : q->used_gpa;
	if (off & 4)
		v >>= 32;
	return size == 8 ? v : (uint32_t)v;
}

static void set_addr(uint64_t *a, unsigned off, uint64_t val, int size)
{
	if (size == 8)
		*a = val;
	else if (off & 4)
		*a = (*a & 0xffffffffull) | (uint64_t)(uint32_t)val << 32;
	else
		*a = (*a & ~0xffffffffull) | (uint32_t)val;
}

static void common_write(struct virtio_dev *vd, unsigned off, uint64_t val, int size)
{
	struct virtq *q = selected(vd);
	uint64_t *fw;

	switch (off) {
	case 0x00: vd->dfsel = val; return;
	case 0x08: vd->gfsel = val; return;
	case 0x0c:
		if (vd->gfsel < 2 && !(vd->status & VIRTIO_S_FEATURES_OK)) {
			fw = &vd->driver_features;
			*fw &= ~(0xffffffffull << (32 * vd->gfsel));
			*fw |= (uint64_t)(uint32_t)val << (32 * vd->gfsel);
		}
		return;
	case 0x10:
		vd->config_vector = val < msix_nvec(vd) ? val : VIRTIO_NO_VECTOR;
		return;
	case 0x14: write_status(vd, val); return;
	case 0x16: vd->queue_sel = val; return;
	}
	/* the queue's fields are fixed once it is enabled */
	if (!q || q->enabled)
		return;
	switch (off) {
	case 0x18: q->size = val; return;
	case 0x1a: q->msix_vector = val < msix_nvec(vd) ? val : VIRTIO_NO_VECTOR; return;
	case 0x1c:
		if (val != 1)
			return;
		q->event_idx = virtio_has(vd, VIRTIO_F_EVENT_IDX);
		q->indirect = virtio_has(vd, VIRTIO_F_INDIRECT_DESC);
		if (vq_enable(vd->vm, q))
			virtio_needs_reset(vd);
		kicks_bind(vd);
		return;
	}
	if (off >= 0x20 && off < 0x28)
		set_addr(&q->desc_gpa, off, val, size);
	else if (off >= 0x28 && off < 0x30)
		set_addr(&q->avail_gpa, off, val, size);
	else if (off >= 0x30 && off < COMMON_LEN)
		set_addr(&q->used_gpa, off, val, size);
}

static void notify_write(struct virtio_dev *vd, unsigned off)
{
	unsigned q = off / NOTIFY_MULT;
	uint64_t one = 1;

	if (!queue_live(vd, q)) {
		vd->notifies++;
		return;
	}
	if (!vd->io) {
		vd->notifies++;
		vd->ops->notify(vd, q);
		return;
	}
	/* the I/O thread counts it; a full counter already says "notified" */
	if (write(vd->kick[q].fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		perror("accord: virtio notify");
}

static uint64_t bar_read(void *opaque, uint64_t off, int size)
{
	struct virtio_dev *vd = opaque;

	if (off < COMMON_LEN)
		return common_read(vd, off, size);
	if (off == ISR_OFF) {
		uint8_t v = vd->isr;

		vd->isr = 0; /* reading acknowledges */
		return v;
	}
	if (off >= DEVCFG_OFF && off + size <= DEVCFG_OFF + vd->config_len && size <= 8) {
		uint64_t v = 0;

		memcpy(&v, vd->config + (off - DEVCFG_OFF), size);
		return v;
	}
	if (off >= MSIX_TABLE_OFF && off + size <= MSIX_TABLE_OFF + 16 * msix_nvec(vd) && size <= 8) {
		uint64_t v = 0;

		memcpy(&v, vd->msix_table + (off - MSIX_TABLE_OFF), size);
		return v;
	}
	if (off >= MSIX_PBA_OFF && off + size <= MSIX_PBA_OFF + sizeof(vd->msix_pba) && size <= 8) {
		uint64_t v = 0;

		memcpy(&v, vd->msix_pba + (off - MSIX_PBA_OFF), size);
		return v;
	}
	return 0;
}

static void bar_write(void *opaque, uint64_t off, uint64_t val, int size)
{
	struct virtio_dev *vd = opaque;

	if (off < COMMON_LEN) {
		common_write(vd, off, val, size);
	} else if (off >= NOTIFY_OFF && off < NOTIFY_OFF + NOTIFY_MULT * (uint64_t)vd->nqueues) {
		notify_write(vd, off - NOTIFY_OFF);
	} else if (off >= MSIX_TABLE_OFF && off + size <= MSIX_TABLE_OFF + 16 * msix_nvec(vd) &&
		   size <= 8) {
		memcpy(vd->msix_table + (off - MSIX_TABLE_OFF), &val, size);
		msix_sync(vd);
		msix_flush(vd);
	}
	/* the device configuration of the devices here is read-only */
}

static const struct io_ops bar_ops = { bar_read, bar_write };

/* VIRTIO_PCI_CAP_PCI_CFG: a window into BAR 0 through configuration
 * space; bar, offset and length (1, 2 or 4) select what pci_cfg_data
 * reads and writes. Nothing happens when the selection is out of range. */
static bool cfg_window(struct virtio_dev *vd, unsigned off, unsigned len, uint32_t *at, int *size)
{
	unsigned c = vd->cfgwin_cap;
	const uint8_t *p = vd->pci.cfg + c;

	if (off >= c + 20 || off + len <= c + 16)
		return false;
	*at = pci_get_le(p + 8, 4);
	*size = pci_get_le(p + 12, 4);
	return p[4] == 0 && (*size == 1 || *size == 2 || *size == 4) && !(*at & (*size - 1)) &&
	       *at < BAR_SIZE;
}

static void cfg_reading(struct pci_dev *d, unsigned off, unsigned len)
{
	struct virtio_dev *vd = d->opaque;
	uint32_t at;
	int size;

	if (cfg_window(vd, off, len, &at, &size))
		pci_put_le(d->cfg + vd->cfgwin_cap + 16, bar_read(vd, at, size), size);
}

static void cfg_written(struct pci_dev *d, unsigned off, unsigned len)
{
	struct virtio_dev *vd = d->opaque;
	uint32_t at;
	int size;

	if (off < vd->msix_cap + 4 && off + len > vd->msix_cap + 2) {
		msix_sync(vd);
		msix_flush(vd);
	}
	kicks_bind(vd);
	if (cfg_window(vd, off, len, &at, &size))
		bar_write(vd, at, pci_get_le(d->cfg + vd->cfgwin_cap + 16, size), size);
}

static void add_vcap(struct pci_dev *d, uint8_t type, uint32_t off, uint32_t len, bool notify)
{
	unsigned c = pci_add_cap(d, 0x09, notify ? 20 : 16);

	d->cfg[c + 2] = notify ? 20 : 16;
	d->cfg[c + 3] = type;
	d->cfg[c + 4] = 0; /* BAR 0 */
	pci_put_le(d->cfg + c + 8, off, 4);
	pci_put_le(d->cfg + c + 12, len, 4);
	if (notify)
		pci_put_le(d->cfg + c + 16, NOTIFY_MULT, 4);
}

/* The transport's state; the PCI configuration space is the bus's. The
 * rings live in guest memory: a queue keeps only where they are and how
 * far it got. */
struct vq_snap {
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint16_t size, msix_vector, last_avail, used_idx;
	uint8_t enabled, event_idx, indirect, pad;
};

struct virtio_snap {
	uint64_t driver_features;
	uint32_t device_id, nqueues, dfsel, gfsel;
	uint16_t config_vector, queue_sel;
	uint8_t status, config_generation, isr, pad;
	struct vq_snap vq[VIRTIO_MAX_QUEUES];
	uint8_t msix_table[16 * (VIRTIO_MAX_QUEUES + 1)];
	uint8_t msix_pba[8];
};

static int virtio_save(void *o, struct snap_buf *b, char *err, size_t n)
{
	struct virtio_dev *vd = o;
	struct virtio_snap s = {
		.driver_features = vd->driver_features, .device_id = vd->device_id,
		.nqueues = (uint32_t)vd->nqueues, .dfsel = vd->dfsel, .gfsel = vd->gfsel,
		.config_vector = vd->config_vector, .queue_sel = vd->queue_sel, .status = vd->status,
		.config_generation = vd->config_generation, .isr = vd->isr,
	};

	for (int i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		const struct virtq *q = &vd->vq[i];
		s.vq[i] = (struct vq_snap){ q->desc_gpa, q->avail_gpa, q->used_gpa, q->size, q->msix_vector,
					    q->last_avail, q->used_idx, q->enabled, q->event_idx, q->indirect };
	}
	memcpy(s.msix_table, vd->msix_table, sizeof(s.msix_table));
	memcpy(s.msix_pba, vd->msix_pba, sizeof(s.msix_pba));
	snap_put(b, &s, sizeof(s));
	return 0;
}

static int virtio_load(void *o, struct snap_rd *r, char *err, size_t n)
{
	struct virtio_dev *vd = o;
	struct virtio_snap s;

	if (!snap_get(r, &s, sizeof(s)))
		return -1;
	if (s.device_id != vd->device_id || s.nqueues != (uint32_t)vd->nqueues) {
		snprintf(err, n, "a virtio device of type %u with %u queues, this machine's is %u with %d",
			 s.device_id, s.nqueues, vd->device_id, vd->nqueues);
		return -1;
	}
	vd->driver_features = s.driver_features;
	vd->dfsel = s.dfsel;
	vd->gfsel = s.gfsel;
	vd->config_vector = s.config_vector < msix_nvec(vd) ? s.config_vector : VIRTIO_NO_VECTOR;
	vd->queue_sel = s.queue_sel;
	vd->status = s.status;
	vd->config_generation = s.config_generation;
	vd->isr = s.isr;
	memcpy(vd->msix_table, s.msix_table, sizeof(vd->msix_table));
	memcpy(vd->msix_pba, s.msix_pba, sizeof(vd->msix_pba));
	msix_sync(vd);
	for (int i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		struct virtq *q = &vd->vq[i];
		const struct vq_snap *qs = &s.vq[i];

		vq_reset(q);
		q->desc_gpa = qs->desc_gpa;
		q->avail_gpa = qs->avail_gpa;
		q->used_gpa = qs->used_gpa;
		q->size = qs->size;
		q->msix_vector = qs->msix_vector < msix_nvec(vd) ? qs->msix_vector : VIRTIO_NO_VECTOR;
		q->event_idx = qs->event_idx;
		q->indirect = qs->indirect;
		if (!qs->enabled)
			continue;
		/* guest memory is loaded: the rings resolve as when the
		 * driver enabled them */
		if (i >= vd->nqueues || vq_enable(vd->vm, q) < 0) {
			snprintf(err, n, "queue %d's rings are not in guest memory", i);
			return -1;
		}
		q->last_avail = qs->last_avail;
		q->used_idx = qs->used_idx;
	}
	/* the PCI configuration (BAR 0) is loaded before the devices on the
	 * bus: bind the notify addresses again, and let the I/O thread look
	 * at every live queue once, for requests the guest queued whose
	 * notify the snapshot caught in flight */
	kicks_bind(vd);
	for (int q = 0; vd->io && q < vd->nqueues; q++) {
		uint64_t one = 1;

		if (queue_live(vd, (unsigned)q) && write(vd->kick[q].fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
			snprintf(err, n, "cannot notify queue %d: %s", q, strerror(errno));
			return -1;
		}
	}
	return 0;
}

void virtio_pci_release(struct virtio_dev *vd)
{
	for (unsigned v = 0; v < VIRTIO_MAX_QUEUES + 1; v++)
		msix_unbind(vd, v);
}

int virtio_pci_init(struct virtio_dev *vd, struct vm *vm, struct pci_bus *bus, uint32_t class_code)
{
	struct pci_dev *d = &vd->pci;

	if (vd->nqueues < 1 || vd->nqueues > VIRTIO_MAX_QUEUES || vd->config_len > 0x1000 ||
	    vd->config_len > VIRTIO_CONFIG_MAX)
		return -1;
	vd->vm = vm;
	for (int i = 0; i < VIRTIO_MAX_QUEUES; i++)
		vq_reset(&vd->vq[i]);
	for (int v = 0; v < VIRTIO_MAX_QUEUES + 1; v++)
		vd->irqfd[v] = (struct virtio_irqfd){ .fd = -1, .gsi = -1 };
	for (int q = 0; vd->io && q < vd->nqueues; q++) {
		struct virtio_kick *k = &vd->kick[q];

		*k = (struct virtio_kick){ .vd = vd, .q = q };
		k->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (k->fd < 0 || iothread_fd_add(vd->io, k->fd, POLLIN, kick_ready, k)) {
			fprintf(stderr, "accord: virtio: cannot set up a notify eventfd: %s\n", strerror(errno));
			return -1;
		}
	}
	vd->config_vector = VIRTIO_NO_VECTOR;
	/* revision 1: a modern-only device */
	pci_set_ids(d, 0x1af4, 0x1040 + vd->device_id, class_code << 8 | 1);
	pci_put_le(d->cfg + PCI_SUBSYS_VENDOR, 0x1af4, 2);
	pci_put_le(d->cfg + PCI_SUBSYS_ID, 0x1100, 2);
	d->bar[0] = (struct pci_bar){ BAR_SIZE, &bar_ops, vd };
	d->opaque = vd;
	d->cfg_reading = cfg_reading;
	d->cfg_written = cfg_written;

	vd->msix_cap = pci_add_cap(d, 0x11, 12);
	pci_put_le(d->cfg + vd->msix_cap + 2, msix_nvec(vd) - 1, 2);
	d->wmask[vd->msix_cap + 3] = (MSIX_ENABLE | MSIX_MASKALL) >> 8;
	pci_put_le(d->cfg + vd->msix_cap + 4, MSIX_TABLE_OFF, 4);
	pci_put_le(d->cfg + vd->msix_cap + 8, MSIX_PBA_OFF, 4);
	for (unsigned v = 0; v < msix_nvec(vd); v++)
		vd->msix_table[16 * v + 12] = 1; /* masked until the driver sets it up */

	add_vcap(d, CAP_COMMON, COMMON_OFF, COMMON_LEN, false);
	add_vcap(d, CAP_NOTIFY, NOTIFY_OFF, NOTIFY_MULT * vd->nqueues, true);
	add_vcap(d, CAP_ISR, ISR_OFF, 1, false);
	/* a device without configuration (rng) has no such structure: Linux
	 * refuses a zero-length one */
	if (vd->config_len)
		add_vcap(d, CAP_DEVICE, DEVCFG_OFF, vd->config_len, false);
	/* the configuration-space window: bar, offset, length and data are
	 * for the driver to write */
	vd->cfgwin_cap = pci_add_cap(d, 0x09, 20);
	d->cfg[vd->cfgwin_cap + 2] = 20;
	d->cfg[vd->cfgwin_cap + 3] = CAP_PCI_CFG;
	d->wmask[vd->cfgwin_cap + 4] = 0xff;
	memset(d->wmask + vd->cfgwin_cap + 8, 0xff, 12);
	if (vm_snap_register(vm, "virtio", virtio_save, virtio_load, vd) < 0)
		return -1;
	return pci_add(bus, d);
}
