/* Checksums and TCP segmentation in software (offload.h). Every offset is
 * checked against the frame's length before it is used: the frames come
 * from guests. */
#include <string.h>

#include "net/offload.h"

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86dd
#define ETH_P_8021Q 0x8100
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17

#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_CWR 0x80

static unsigned be16(const uint8_t *p)
{
	return p[0] << 8 | p[1];
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3];
}

static void put16(uint8_t *p, unsigned v)
{
	p[0] = v >> 8;
	p[1] = v;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

uint32_t net_csum_add(uint32_t sum, const uint8_t *p, size_t len)
{
	uint64_t s = sum;

	for (; len >= 2; p += 2, len -= 2)
		s += be16(p);
	if (len)
		s += p[0] << 8;
	while (s >> 32)
		s = (s & 0xffffffff) + (s >> 32);
	return (uint32_t)s;
}

uint16_t net_csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

void net_csum_complete(uint8_t *frame, size_t len, unsigned start, unsigned offset)
{
	uint16_t c = ~net_csum_fold(net_csum_add(0, frame + start, len - start));

	/* 0 would mean "no checksum" to UDP; 0xffff is the same sum */
	put16(frame + start + offset, c ? c : 0xffff);
}

/* the offset of the IP header and its ethertype, past one 802.1Q tag */
static unsigned l3_start(const uint8_t *f, size_t len, unsigned *type)
{
	if (len < ETH_HLEN)
		return 0;
	*type = be16(f + 12);
	if (*type != ETH_P_8021Q)
		return ETH_HLEN;
	if (len < ETH_HLEN + 4)
		return 0;
	*type = be16(f + 16);
	return ETH_HLEN + 4;
}

/* the IP header of an IPv4 or IPv6 packet: its transport protocol, the
 * transport header's offset and the packet's end; false when it is not
 * whole, an IPv4 fragment or an IPv6 packet with extension headers */
static bool ip_parse(const uint8_t *f, size_t len, bool *v6, unsigned *l3, unsigned *l4,
		     unsigned *end, unsigned *proto)
{
	unsigned type = 0, o = l3_start(f, len, &type);

	if (!o)
		return false;
	*l3 = o;
	if (type == ETH_P_IP) {
		unsigned ihl, tot;

		if (len < o + 20 || f[o] >> 4 != 4)
			return false;
		ihl = (f[o] & 15) * 4;
		tot = be16(f + o + 2);
		/* more fragments, or an offset: not a whole datagram */
		if (ihl < 20 || tot < ihl || o + tot > len || (be16(f + o + 6) & 0x3fff))
			return false;
		*v6 = false;
		*l4 = o + ihl;
		*end = o + tot;
		*proto = f[o + 9];
		return true;
	}
	if (type == ETH_P_IPV6) {
		unsigned plen;

		if (len < o + 40 || f[o] >> 4 != 6)
			return false;
		plen = be16(f + o + 4);
		/* a payload length of 0 is a jumbogram */
		if (!plen || o + 40 + plen > len)
			return false;
		*v6 = true;
		*l4 = o + 40;
		*end = o + 40 + plen;
		*proto = f[o + 6];
		return true;
	}
	return false;
}

int net_tcp_parse(const uint8_t *frame, size_t len, struct net_tcp_frame *t)
{
	unsigned proto, doff;

	if (!ip_parse(frame, len, &t->v6, &t->l3, &t->l4, &t->end, &proto) || proto != IPPROTO_TCP_)
		return -1;
	if (t->l4 + 20 > t->end)
		return -1;
	doff = (frame[t->l4 + 12] >> 4) * 4;
	if (doff < 20 || t->l4 + doff > t->end)
		return -1;
	t->payload = t->l4 + doff;
	return 0;
}

/* the pseudo-header's sum for a transport segment of l4len bytes */
static uint32_t pseudo_sum(const uint8_t *f, bool v6, unsigned l3, unsigned proto, unsigned l4len)
{
	if (v6)
		return net_csum_add(0, f + l3 + 8, 32) + (l4len >> 16) + (l4len & 0xffff) + proto;
	return net_csum_add(0, f + l3 + 12, 8) + proto + l4len;
}

bool net_csum_valid(const uint8_t *frame, size_t len)
{
	unsigned l3, l4, end, proto;
	bool v6;

	if (!ip_parse(frame, len, &v6, &l3, &l4, &end, &proto))
		return false;
	if (proto != IPPROTO_TCP_ && proto != IPPROTO_UDP_)
		return false;
	if (!v6 && net_csum_fold(net_csum_add(0, frame + l3, l4 - l3)) != 0xffff)
		return false;
	if (proto == IPPROTO_TCP_ ? end - l4 < 20 : end - l4 < 8)
		return false;
	/* a UDP datagram without a checksum has nothing to vouch for */
	if (proto == IPPROTO_UDP_ && !v6 && !be16(frame + l4 + 6))
		return false;
	uint32_t s = pseudo_sum(frame, v6, l3, proto, end - l4);
	return net_csum_fold(net_csum_add(s, frame + l4, end - l4)) == 0xffff;
}

const char *net_offload_check(const struct net_offload *o, const uint8_t *frame, size_t len,
			      unsigned allowed)
{
	unsigned gso = o->gso_type & ~NET_GSO_ECN;
	struct net_tcp_frame t;

	if (o->flags & ~NET_OFF_NEEDS_CSUM)
		return "flags other than NEEDS_CSUM";
	if (o->flags & NET_OFF_NEEDS_CSUM) {
		if (!(allowed & NET_OFFLOAD_CSUM))
			return "NEEDS_CSUM without checksum offload";
		if (len < 2 || o->csum_start > len - 2 || o->csum_offset > len - 2 - o->csum_start)
			return "csum_start + csum_offset beyond the frame";
	}
	if (o->hdr_len > len)
		return "hdr_len beyond the frame";
	if ((o->gso_type & NET_GSO_ECN) && (gso == NET_GSO_NONE || !(allowed & NET_OFFLOAD_ECN)))
		return "ECN without HOST_ECN or segmentation";
	if (gso == NET_GSO_NONE)
		return NULL;
	if (gso == NET_GSO_TCPV4 ? !(allowed & NET_OFFLOAD_TSO4) :
	    gso == NET_GSO_TCPV6 ? !(allowed & NET_OFFLOAD_TSO6) : true)
		return "a gso_type not negotiated";
	if (!o->gso_size)
		return "gso_size 0";
	if (!(o->flags & NET_OFF_NEEDS_CSUM))
		return "segmentation without NEEDS_CSUM";
	if (net_tcp_parse(frame, len, &t) || t.v6 != (gso == NET_GSO_TCPV6))
		return "segmentation of a frame that is not TCP over the IP version named";
	return NULL;
}

int net_tso_segment(const uint8_t *frame, size_t len, unsigned mss, uint8_t *buf, size_t buf_len,
		    net_segment_fn out, void *opaque)
{
	struct net_tcp_frame t;
	unsigned hdrs, data, off, i = 0;
	unsigned id0, flags0;
	uint32_t seq0;

	if (net_tcp_parse(frame, len, &t) || !mss)
		return -1;
	hdrs = t.payload;
	data = t.end - t.payload;
	if (buf_len < hdrs + (data < mss ? data : mss))
		return -1;
	id0 = t.v6 ? 0 : be16(frame + t.l3 + 4);
	seq0 = be32(frame + t.l4 + 4);
	flags0 = frame[t.l4 + 13];
	off = 0;
	do {
		unsigned chunk = data - off < mss ? data - off : mss;
		bool last = off + chunk == data;
		unsigned fl = flags0, l4len = t.payload - t.l4 + chunk;
		uint8_t *tcp = buf + t.l4;

		memcpy(buf, frame, hdrs);
		memcpy(buf + hdrs, frame + hdrs + off, chunk);
		if (t.v6) {
			put16(buf + t.l3 + 4, l4len);
		} else {
			uint8_t *ip = buf + t.l3;

			put16(ip + 2, t.l4 - t.l3 + l4len);
			put16(ip + 4, id0 + i);
			put16(ip + 10, 0);
			put16(ip + 10, ~net_csum_fold(net_csum_add(0, ip, t.l4 - t.l3)) & 0xffff);
		}
		put32(tcp + 4, seq0 + off);
		if (!last)
			fl &= ~(TCP_FIN | TCP_PSH);
		if (i)
			fl &= ~TCP_CWR;
		tcp[13] = fl;
		put16(tcp + 16, 0);
		uint32_t s = pseudo_sum(buf, t.v6, t.l3, IPPROTO_TCP_, l4len);
		put16(tcp + 16, ~net_csum_fold(net_csum_add(s, tcp, l4len)) & 0xffff);
		out(opaque, buf, hdrs + chunk);
		off += chunk;
		i++;
	} while (off < data);
	return i;
}
