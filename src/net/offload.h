/* Checksum and segmentation offload in software, for NICs whose guests
 * hand over partially checksummed or oversized TCP frames (virtio-net's
 * VIRTIO_NET_F_CSUM and HOST_TSO4/6; netvsc's offloads could use them
 * too) when the backend cannot take such frames (slirp), and the checks
 * that a guest's offload request describes its frame before anything acts
 * on it. The request uses virtio_net_hdr's fields, host order; every
 * function here reads and writes only inside the frame it is given. */
#ifndef ACCORD_NET_OFFLOAD_H
#define ACCORD_NET_OFFLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NET_OFF_NEEDS_CSUM 1 /* virtio's VIRTIO_NET_HDR_F_NEEDS_CSUM */
#define NET_OFF_DATA_VALID 2 /* VIRTIO_NET_HDR_F_DATA_VALID */

#define NET_GSO_NONE 0
#define NET_GSO_TCPV4 1
#define NET_GSO_TCPV6 4
#define NET_GSO_ECN 0x80

struct net_offload {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len, gso_size, csum_start, csum_offset;
};

/* what the guest may ask for (its negotiated features) */
#define NET_OFFLOAD_CSUM 1
#define NET_OFFLOAD_TSO4 2
#define NET_OFFLOAD_TSO6 4
#define NET_OFFLOAD_ECN 8

/* A parsed TCP frame, for segmentation: Ethernet, IPv4 or IPv6 (no
 * extension headers), TCP; offsets into the frame. */
struct net_tcp_frame {
	bool v6;
	/* offsets of the IP and TCP headers, of the data and of the end of
	 * the IP packet (a short frame's Ethernet padding lies beyond) */
	unsigned l3, l4, payload, end;
};

/* NULL when o is a request the guest may make for a frame of len bytes,
 * else why not (for a counter or a trace). allowed: NET_OFFLOAD_* */
const char *net_offload_check(const struct net_offload *o, const uint8_t *frame, size_t len,
			      unsigned allowed);

/* the Internet checksum's 32-bit sum of len bytes, added to sum */
uint32_t net_csum_add(uint32_t sum, const uint8_t *p, size_t len);
uint16_t net_csum_fold(uint32_t sum);

/* NEEDS_CSUM: fold the sum from start to the end of the frame into the 16
 * bits at start + offset (which hold the pseudo-header's sum). The
 * request has passed net_offload_check. */
void net_csum_complete(uint8_t *frame, size_t len, unsigned start, unsigned offset);

/* true when the frame is IPv4 or IPv6 carrying TCP or UDP whose IP header
 * (v4) and transport checksums are right: a receiver may skip its own
 * check (DATA_VALID) */
bool net_csum_valid(const uint8_t *frame, size_t len);

/* -1 when the frame is not Ethernet + IPv4/IPv6 + TCP as segmentation
 * needs it (IPv4 fragments and options are fine, IPv6 extension headers
 * are not) */
int net_tcp_parse(const uint8_t *frame, size_t len, struct net_tcp_frame *t);

/* Cut a large TCP frame into segments of at most mss bytes of data, each
 * a whole frame with its own IP length, IPv4 id (counting up) and header
 * checksum, TCP sequence number and checksum; FIN and PSH only on the
 * last, CWR only on the first. Each segment is built in buf (room for
 * the headers and mss bytes) and handed to out. Returns the number of
 * segments, -1 when the frame cannot be segmented (nothing was sent). */
typedef void (*net_segment_fn)(void *opaque, const uint8_t *frame, size_t len);
int net_tso_segment(const uint8_t *frame, size_t len, unsigned mss, uint8_t *buf, size_t buf_len,
		    net_segment_fn out, void *opaque);

#endif
