/* VMBus ring buffers (struct hv_ring_buffer in include/linux/hyperv.h): a
 * header page and a circular data area of 8-byte aligned packets, each a
 * descriptor, its payload padded to 8 bytes and a trailing 64-bit word
 * holding the writer's index before the packet. The guest maps the pages
 * through a GPADL, so the data area may be scattered over guest RAM: every
 * access goes page by page through the translated page list. */
#include <string.h>

#include "dev/hyperv/vmbus.h"

#define RB_WRITE_INDEX 0
#define RB_READ_INDEX 4
#define RB_INTERRUPT_MASK 8
#define RB_PENDING_SEND_SZ 12

static uint32_t *rb_field(const struct vmbus_ring *r, unsigned off)
{
	return (uint32_t *)(r->page[0] + off);
}

static uint32_t rb_load(const struct vmbus_ring *r, unsigned off)
{
	return __atomic_load_n(rb_field(r, off), __ATOMIC_ACQUIRE);
}

static void rb_store(const struct vmbus_ring *r, unsigned off, uint32_t v)
{
	__atomic_store_n(rb_field(r, off), v, __ATOMIC_RELEASE);
}

static bool rb_index_ok(const struct vmbus_ring *r, uint32_t i)
{
	return i < r->size && !(i & 7);
}

/* the bytes at data offset off (off < size) up to the end of its page
 * or of the data area */
static uint8_t *rb_chunk(const struct vmbus_ring *r, uint32_t off, uint32_t *n)
{
	uint32_t in_page = off % VMBUS_PAGE;

	*n = VMBUS_PAGE - in_page;
	return r->page[1 + off / VMBUS_PAGE] + in_page;
}

static void rb_read(const struct vmbus_ring *r, uint32_t off, void *buf, uint32_t len)
{
	uint8_t *p = buf;

	while (len) {
		uint32_t n;
		const uint8_t *q = rb_chunk(r, off, &n);

		if (n > len)
			n = len;
		memcpy(p, q, n);
		p += n;
		len -= n;
		off = (off + n) % r->size;
	}
}

/* returns the offset after the bytes written */
static uint32_t rb_write(const struct vmbus_ring *r, uint32_t off, const void *buf, uint32_t len)
{
	const uint8_t *p = buf;

	while (len) {
		uint32_t n;
		uint8_t *q = rb_chunk(r, off, &n);

		if (n > len)
			n = len;
		memcpy(q, p, n);
		p += n;
		len -= n;
		off = (off + n) % r->size;
	}
	return off;
}

int ring_attach(struct vmbus_ring *r, uint8_t **page, uint32_t npages, bool host_reads)
{
	if (npages < 2 || npages - 1 > UINT32_MAX / VMBUS_PAGE)
		return -1;
	r->page = page;
	r->size = (npages - 1) * VMBUS_PAGE;
	/* the guest zeroes both indices before it opens the channel */
	r->host_index = rb_load(r, host_reads ? RB_READ_INDEX : RB_WRITE_INDEX);
	if (!rb_index_ok(r, r->host_index))
		return -1;
	if (host_reads)
		rb_store(r, RB_INTERRUPT_MASK, 0);
	return 0;
}

int ring_restore(struct vmbus_ring *r, uint8_t **page, uint32_t npages, uint32_t host_index)
{
	if (npages < 2 || npages - 1 > UINT32_MAX / VMBUS_PAGE)
		return -1;
	r->page = page;
	r->size = (npages - 1) * VMBUS_PAGE;
	r->host_index = host_index;
	return rb_index_ok(r, host_index) ? 0 : -1;
}

static uint32_t rb_used(const struct vmbus_ring *r, uint32_t w, uint32_t rd)
{
	return w >= rd ? w - rd : r->size - rd + w;
}

int ring_peek(struct vmbus_ring *r, void *buf, uint32_t cap)
{
	uint32_t w = rb_load(r, RB_WRITE_INDEX), rd = r->host_index, avail, len;
	struct vmbus_pkt_desc d;

	if (!rb_index_ok(r, w))
		return -1;
	if (w == rd)
		return 0;
	avail = rb_used(r, w, rd);
	if (avail < sizeof(d) + 8)
		return -1;
	rb_read(r, rd, &d, sizeof(d));
	len = (uint32_t)d.len8 * 8;
	if (len < sizeof(d) || d.offset8 * 8u < sizeof(d) || d.offset8 * 8u > len || len + 8 > avail ||
	    len > cap)
		return -1;
	rb_read(r, rd, buf, len);
	/* the descriptor is read once: the copy in buf is what gets served */
	memcpy(buf, &d, sizeof(d));
	return len;
}

bool ring_consume(struct vmbus_ring *r, uint32_t len)
{
	uint32_t pending, w, free;

	r->host_index = (r->host_index + len + 8) % r->size;
	rb_store(r, RB_READ_INDEX, r->host_index);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	pending = rb_load(r, RB_PENDING_SEND_SZ);
	if (!pending)
		return false;
	w = rb_load(r, RB_WRITE_INDEX);
	if (!rb_index_ok(r, w))
		return false;
	free = r->size - rb_used(r, w, r->host_index);
	return free > pending && free - (len + 8) <= pending;
}

static uint32_t pkt_bytes(uint32_t len)
{
	return sizeof(struct vmbus_pkt_desc) + ((len + 7) & ~7u) + 8;
}

/* 1: fits, 0: no room now, -1: corrupt */
static int rb_fits(struct vmbus_ring *r, uint32_t need)
{
	uint32_t rd = rb_load(r, RB_READ_INDEX);

	if (!rb_index_ok(r, rd))
		return -1;
	/* a full ring would look empty: keep one slot free, as the guest does */
	return r->size - rb_used(r, r->host_index, rd) > need;
}

int ring_room(struct vmbus_ring *r, uint32_t len)
{
	uint32_t need = pkt_bytes(len);
	int fits;

	if (len > r->size || need >= r->size)
		return -1;
	fits = rb_fits(r, need);
	if (fits)
		return fits;
	rb_store(r, RB_PENDING_SEND_SZ, need);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	/* the guest may have read in between: look again */
	fits = rb_fits(r, need);
	if (fits > 0)
		rb_store(r, RB_PENDING_SEND_SZ, 0);
	return fits;
}

int ring_send(struct vmbus_ring *r, uint16_t type, uint16_t flags, uint64_t trans_id, const void *data,
	      uint32_t len)
{
	return ring_send_ext(r, type, flags, trans_id, NULL, 0, data, len);
}

int ring_send_ext(struct vmbus_ring *r, uint16_t type, uint16_t flags, uint64_t trans_id, const void *ext,
		  uint32_t extlen, const void *data, uint32_t len)
{
	static const uint8_t zeros[8];
	struct vmbus_pkt_desc d = { .type = type, .flags = flags, .trans_id = trans_id };
	uint32_t need, w = r->host_index, pad = ((len + 7) & ~7u) - len;
	uint64_t prev = (uint64_t)w << 32;
	int fits;

	if (extlen % 8 || extlen > 0xffff * 8u - sizeof(d) || len > UINT32_MAX - extlen - 8)
		return -1;
	need = pkt_bytes(extlen + len);
	fits = ring_room(r, extlen + len);
	if (fits <= 0)
		return fits < 0 ? -1 : -2;
	d.offset8 = (sizeof(d) + extlen) / 8;
	d.len8 = (need - 8) / 8;
	w = rb_write(r, w, &d, sizeof(d));
	w = rb_write(r, w, ext, extlen);
	w = rb_write(r, w, data, len);
	w = rb_write(r, w, zeros, pad);
	w = rb_write(r, w, &prev, 8);
	r->host_index = w;
	rb_store(r, RB_WRITE_INDEX, w);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	rb_store(r, RB_PENDING_SEND_SZ, 0);
	return !rb_load(r, RB_INTERRUPT_MASK);
}
