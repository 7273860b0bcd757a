/* For the VMBus device tests: the test playing the Linux guest of a
 * Hyper-V partition (drivers/hv) on vCPU 0 of the includer's vm. Messages
 * go through the HvPostMessage and HvSignalEvent hypercalls, replies land
 * in the SynIC message page and event flags, freed with EOM as Linux does;
 * a channel's rings are the guest's side of struct gchan. stderr goes to
 * errlog, which the includer opens. */
#ifndef ACCORD_TESTS_VMBUS_GUEST_H
#define ACCORD_TESTS_VMBUS_GUEST_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "synic_guest.h"

static struct vm vm;
static struct vcpu *v0;
static FILE *errlog;

static inline uint8_t *gp(uint64_t gpa)
{
	return vm_gpa(&vm, gpa, 1);
}

static inline uint8_t *msg_slot(void)
{
	return synic_msg_slot(v0);
}

/* the message in the VMBus slot, or NULL; taking it frees the slot and
 * writes EOM, which lets the host deliver the next one */
static inline const uint8_t *next_msg(uint32_t *len)
{
	static uint8_t copy[HV_MESSAGE_PAYLOAD_MAX];
	uint8_t *slot = msg_slot();

	if (!vmbus_get32(slot))
		return NULL;
	*len = slot[4];
	memcpy(copy, slot + 16, HV_MESSAGE_PAYLOAD_MAX);
	synic_msg_free(v0, slot);
	return copy;
}

static inline unsigned pending_msgs(void)
{
	return vmbus_get32(msg_slot()) != 0;
}

/* test and clear a channel's bit in the VMBus SINT's event flags */
static inline bool event_flag(uint32_t relid)
{
	uint8_t *flags = gp(SIEFP_GPA + VMBUS_SINT * HV_MESSAGE_SIZE);
	bool set = flags[relid / 8] & (1u << (relid % 8));

	flags[relid / 8] &= ~(1u << (relid % 8));
	return set;
}

static inline uint16_t post_msg(uint32_t conn, uint32_t type, const void *m, uint32_t len)
{
	return synic_post(v0, conn, type, m, len);
}

static inline uint16_t post(uint32_t conn, const void *m, uint32_t len)
{
	return post_msg(conn, 1, m, len);
}

static inline uint16_t post_type(uint32_t conn, uint32_t type, uint8_t *m, uint32_t len)
{
	vmbus_put32(m, type);
	vmbus_put32(m + 4, 0);
	return post(conn, m, len);
}

/* stderr goes to a file, so that the one-line errors can be checked */
static inline long err_mark(void)
{
	fflush(stderr);
	return ftell(errlog);
}

static inline bool err_since(long mark, const char *needle)
{
	char buf[4096] = { 0 };

	fflush(stderr);
	fseek(errlog, mark, SEEK_SET);
	size_t n = fread(buf, 1, sizeof(buf) - 1, errlog);
	fseek(errlog, 0, SEEK_END);
	buf[n] = 0;
	return strstr(buf, needle) != NULL;
}

/* ---- the guest's side of a channel ---- */

#define MAX_RING_PAGES 128
struct gchan {
	uint32_t relid, conn, gpadl;
	unsigned npages, split;
	uint64_t pfn[MAX_RING_PAGES];
};

static inline uint8_t *ring_page(struct gchan *c, bool out, unsigned i)
{
	return gp(c->pfn[(out ? 0 : c->split) + i] * PAGE);
}

static inline uint32_t *ring_field(struct gchan *c, bool out, unsigned off)
{
	return (uint32_t *)(ring_page(c, out, 0) + off);
}

static inline uint32_t ring_size(struct gchan *c, bool out)
{
	return ((out ? c->split : c->npages - c->split) - 1) * PAGE;
}

static inline void ring_copy(struct gchan *c, bool out, uint32_t off, void *buf, uint32_t len, bool to_ring)
{
	uint8_t *p = buf;
	uint32_t size = ring_size(c, out);

	for (uint32_t i = 0; i < len; i++) {
		uint32_t o = (off + i) % size;
		uint8_t *q = ring_page(c, out, 1 + o / PAGE) + o % PAGE;

		if (to_ring)
			*q = p[i];
		else
			p[i] = *q;
	}
}

/* a packet into the guest's outbound ring: descriptor, extra (the GPA
 * range list of a GPA_DIRECT packet), data; false when it does not fit */
static inline bool guest_send(struct gchan *c, uint16_t type, uint64_t trans, const void *extra, uint32_t elen,
		       const void *data, uint32_t dlen)
{
	uint32_t size = ring_size(c, true), w = *ring_field(c, true, 0), r = *ring_field(c, true, 4);
	uint32_t off8 = (16 + elen) / 8, total = (16 + elen + dlen + 7) & ~7u;
	uint32_t used = w >= r ? w - r : size - r + w;
	uint8_t desc[16] = { 0 }, zero[8] = { 0 };
	uint64_t prev = (uint64_t)w << 32;

	if (size - used <= total + 8)
		return false;
	desc[0] = type;
	desc[2] = off8;
	desc[4] = (uint8_t)(total / 8);
	desc[5] = (uint8_t)(total / 8 >> 8);
	desc[6] = 1;
	memcpy(desc + 8, &trans, 8);
	ring_copy(c, true, w, desc, 16, true);
	ring_copy(c, true, w + 16, (void *)extra, elen, true);
	ring_copy(c, true, w + 16 + elen, (void *)data, dlen, true);
	ring_copy(c, true, w + 16 + elen + dlen, zero, total - 16 - elen - dlen, true);
	ring_copy(c, true, w + total, &prev, 8, true);
	*ring_field(c, true, 0) = (w + total + 8) % size;
	return true;
}

/* the next packet from the host: its length (descriptor included), 0 when
 * the inbound ring is empty */
static inline uint32_t guest_recv(struct gchan *c, uint8_t *buf, uint32_t cap)
{
	uint32_t size = ring_size(c, false), w = *ring_field(c, false, 0), r = *ring_field(c, false, 4);
	uint8_t desc[16];
	uint32_t len;

	if (w == r)
		return 0;
	ring_copy(c, false, r, desc, 16, false);
	len = (desc[4] | desc[5] << 8) * 8;
	if (len > cap)
		return 0;
	ring_copy(c, false, r, buf, len, false);
	*ring_field(c, false, 4) = (r + len + 8) % size;
	return len;
}

static inline uint16_t signal_host(struct gchan *c)
{
	return hv_hypercall_exec(v0, 0x5d | 1u << 16, c->conn, 0) & 0xffff;
}

/* GPADL_HEADER and as many GPADL_BODY messages as the PFNs need; returns
 * the number of messages and the creation status */
static inline int make_gpadl(uint32_t relid, uint32_t id, const uint64_t *pfn, unsigned n, uint32_t *status)
{
	uint8_t m[HV_MESSAGE_PAYLOAD_MAX] = { 0 };
	unsigned first = n < 26 ? n : 26, done, count = 1;
	uint32_t len;
	const uint8_t *r;

	vmbus_put32(m + 8, relid);
	vmbus_put32(m + 12, id);
	m[16] = (8 + 8 * n) & 0xff;
	m[17] = (8 + 8 * n) >> 8;
	m[18] = 1;
	vmbus_put32(m + 20, n * PAGE);
	vmbus_put32(m + 24, 0);
	for (unsigned i = 0; i < first; i++)
		vmbus_put64(m + 28 + 8 * i, pfn[i]);
	post_type(4, 8, m, 28 + 8 * first);
	for (done = first; done < n; count++) {
		unsigned k = n - done < 28 ? n - done : 28;

		memset(m, 0, sizeof(m));
		vmbus_put32(m + 8, count);
		vmbus_put32(m + 12, id);
		for (unsigned i = 0; i < k; i++)
			vmbus_put64(m + 16 + 8 * i, pfn[done + i]);
		post_type(4, 9, m, 16 + 8 * k);
		done += k;
	}
	*status = ~0u;
	while ((r = next_msg(&len)))
		if (vmbus_get32(r) == 10 && vmbus_get32(r + 12) == id)
			*status = vmbus_get32(r + 16);
	return count;
}

static inline uint32_t open_channel(struct gchan *c, uint32_t target_vp)
{
	uint8_t m[HV_MESSAGE_PAYLOAD_MAX] = { 0 };
	uint32_t len, status = ~0u;
	const uint8_t *r;

	vmbus_put32(m + 8, c->relid);
	vmbus_put32(m + 12, 0x77);
	vmbus_put32(m + 16, c->gpadl);
	vmbus_put32(m + 20, target_vp);
	vmbus_put32(m + 24, c->split);
	post_type(4, 5, m, 148);
	while ((r = next_msg(&len)))
		if (vmbus_get32(r) == 6 && vmbus_get32(r + 8) == c->relid && vmbus_get32(r + 12) == 0x77)
			status = vmbus_get32(r + 16);
	return status;
}

/* zeroed ring pages, scattered: page i of the channel at base + (i * 7) % span */
static inline void setup_chan(struct gchan *c, uint32_t relid, uint32_t conn, uint32_t gpadl, uint64_t base,
		       unsigned npages, unsigned split)
{
	c->relid = relid;
	c->conn = conn;
	c->gpadl = gpadl;
	c->npages = npages;
	c->split = split;
	for (unsigned i = 0; i < npages; i++) {
		c->pfn[i] = base + (i * 7) % MAX_RING_PAGES;
		memset(gp(c->pfn[i] * PAGE), 0, PAGE);
	}
}

#endif
