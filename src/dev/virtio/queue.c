/* Split virtqueues (virtio 1.x, 2.7): the device's side of the descriptor
 * table, the available ring and the used ring. The guest owns all three
 * and may write anything into them at any time, so every index is checked
 * against the queue size, every chain is bounded, and every buffer is
 * translated with vm_gpa, which refuses anything that is not wholly RAM.
 * A violation is reported to the caller, which marks the device
 * NEEDS_RESET; nothing outside guest RAM is ever touched. */
#include <string.h>

#include "dev/virtio/virtio.h"
#include "vm/vm.h"

static uint16_t ld16(const uint8_t *p)
{
	return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE);
}

static void st16(uint8_t *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)p, v, __ATOMIC_RELEASE);
}

void vq_reset(struct virtq *q)
{
	memset(q, 0, sizeof(*q));
	q->size = VIRTQ_MAX_SIZE;
	q->msix_vector = VIRTIO_NO_VECTOR;
}

int vq_enable(struct vm *vm, struct virtq *q)
{
	uint64_t n = q->size;

	q->enabled = false;
	if (!n || n > VIRTQ_MAX_SIZE || (n & (n - 1)))
		return -1;
	if ((q->desc_gpa & 15) || (q->avail_gpa & 1) || (q->used_gpa & 3))
		return -1;
	q->desc = vm_gpa(vm, q->desc_gpa, 16 * n);
	q->avail = vm_gpa(vm, q->avail_gpa, 6 + 2 * n);
	q->used = vm_gpa(vm, q->used_gpa, 6 + 8 * n);
	if (!q->desc || !q->avail || !q->used)
		return -1;
	q->last_avail = 0;
	q->used_idx = 0;
	q->enabled = true;
	return 0;
}

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

static void load_desc(const uint8_t *table, unsigned i, struct desc *d)
{
	memcpy(d, table + 16 * (size_t)i, 16);
}

/* walk the chain starting at head into r; -1 on any rule broken */
static int walk_chain(struct vm *vm, struct virtq *q, uint16_t head, struct virtq_req *r)
{
	const uint8_t *table = q->desc;
	unsigned tsize = q->size, limit = q->size, count = 0, i = head;
	bool indirect = false;
	struct desc d;

	r->head = head;
	r->nr = r->nw = 0;
	r->rlen = r->wlen = 0;
	for (;;) {
		/* a chain may visit each descriptor of its table once: more
		 * means a loop */
		if (++count > limit)
			return -1;
		load_desc(table, i, &d);
		if (d.flags & ~(VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_INDIRECT))
			return -1;
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (!q->indirect || indirect || (d.flags & VIRTQ_DESC_F_NEXT) ||
			    !d.len || (d.len & 15) || d.len / 16 > VIRTQ_MAX_SEGS)
				return -1;
			table = vm_gpa(vm, d.addr, d.len);
			if (!table)
				return -1;
			tsize = limit = d.len / 16;
			count = 0;
			indirect = true;
			i = 0;
			continue;
		}
		if (r->nr + r->nw == VIRTQ_MAX_SEGS)
			return -1;
		uint8_t *p = d.len ? vm_gpa(vm, d.addr, d.len) : NULL;
		if (d.len && !p)
			return -1;
		struct virtq_seg *s = &r->seg[r->nr + r->nw];
		s->p = p;
		s->len = d.len;
		if (d.flags & VIRTQ_DESC_F_WRITE) {
			r->nw++;
			r->wlen += d.len;
		} else {
			/* readable buffers come before the writable ones */
			if (r->nw)
				return -1;
			r->nr++;
			r->rlen += d.len;
		}
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (d.next >= tsize)
			return -1;
		i = d.next;
	}
}

int vq_pop(struct vm *vm, struct virtq *q, struct virtq_req *r)
{
	if (!q->enabled)
		return 0;
	uint16_t avail_idx = ld16(q->avail + 2);
	if (avail_idx == q->last_avail && q->event_idx) {
		/* ask for a notification on the next buffer, then look again
		 * in case one arrived meanwhile */
		st16(q->used + 4 + 8 * q->size, q->last_avail);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		avail_idx = ld16(q->avail + 2);
	}
	if (avail_idx == q->last_avail)
		return 0;
	if ((uint16_t)(avail_idx - q->last_avail) > q->size)
		return -1;
	uint16_t head = ld16(q->avail + 4 + 2 * (q->last_avail & (q->size - 1)));
	if (head >= q->size || walk_chain(vm, q, head, r))
		return -1;
	q->last_avail++;
	if (q->event_idx)
		st16(q->used + 4 + 8 * q->size, q->last_avail);
	return 1;
}

bool vq_push_n(struct virtq *q, const struct virtq_used *u, unsigned n)
{
	uint16_t old = q->used_idx;

	for (unsigned i = 0; i < n; i++) {
		uint8_t *e = q->used + 4 + 8 * (uint16_t)((old + i) & (q->size - 1));
		uint32_t elem[2] = { u[i].head, u[i].len };

		memcpy(e, elem, 8);
	}
	q->used_idx += n;
	st16(q->used + 2, q->used_idx);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (q->event_idx) {
		uint16_t ev = ld16(q->avail + 4 + 2 * q->size);

		return (uint16_t)(q->used_idx - ev - 1) < (uint16_t)(q->used_idx - old);
	}
	return !(ld16(q->avail) & 1); /* VRING_AVAIL_F_NO_INTERRUPT */
}

bool vq_push(struct virtq *q, uint16_t head, uint32_t written)
{
	struct virtq_used u = { head, written };

	return vq_push_n(q, &u, 1);
}

/* copy between buf and the segments [first, first + count) of a request,
 * starting off bytes into them; returns the bytes copied */
static uint64_t vq_copy(const struct virtq_req *r, unsigned first, unsigned count, uint64_t off, uint8_t *buf,
			uint64_t len, bool to_guest)
{
	uint64_t done = 0;

	for (unsigned i = first; i < first + count && done < len; i++) {
		const struct virtq_seg *s = &r->seg[i];

		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		uint64_t n = s->len - off;
		if (n > len - done)
			n = len - done;
		if (to_guest)
			memcpy(s->p + off, buf + done, n);
		else
			memcpy(buf + done, s->p + off, n);
		done += n;
		off = 0;
	}
	return done;
}

uint64_t vq_read(const struct virtq_req *r, uint64_t off, void *dst, uint64_t len)
{
	return vq_copy(r, 0, r->nr, off, dst, len, false);
}

uint64_t vq_write(const struct virtq_req *r, uint64_t off, const void *src, uint64_t len)
{
	return vq_copy(r, r->nr, r->nw, off, (uint8_t *)src, len, true);
}
