/* Integration services (drivers/hv/hv_util.c, hv_kvp.c): four channels
 * that speak the IC message framing: a pipe header, an icmsg header, and
 * a version negotiation (framework and service versions) before anything
 * else. The host starts every exchange; the guest answers on the same
 * transaction id with the same message, the RESPONSE flag set.
 *
 * - shutdown: the host asks the guest to power off cleanly;
 * - heartbeat: a sequence number once a second, the guest adds one;
 * - time sync: the host's UTC in 100 ns units since 1601 with the
 *   partition reference time it was read at, SYNC once the channel is
 *   negotiated (the guest sets its clock) and after a restore from a
 *   snapshot, then a SAMPLE every 5 s (the guest's PTP clock "hyperv"
 *   follows them);
 * - KVP: the host enumerates the guest's pools one request at a time
 *   (the guest's hv_kvp_daemon answers): the auto pool (host name, OS,
 *   addresses), the guest pool (what the guest's programs wrote) and the
 *   external pool (what the host set), again every 10 s; the last complete
 *   enumeration is what GET /vm/kvp shows. SETs into the external pool
 *   (PUT /vm/kvp/external) wait in a short queue and go first.
 *
 * Answers that break the framing (short, without the RESPONSE flag, of
 * another type than what was asked, a negotiation naming versions the host
 * did not offer, KVP sizes beyond the message) stop that channel with one
 * line on stderr.
 *
 * With --personality hyperv, SIGTERM asks the guest to shut down; when
 * the guest has no shutdown channel open it ends accord at once, as does a
 * second SIGTERM (through the machine loop, which restores the terminal). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dev/hyperv/hyperv.h"
#include "dev/hyperv/vmbus.h"
#include "vm/console.h"
#include "vm/snapshot.h"
#include "vm/vm.h"

#define ICMSGTYPE_NEGOTIATE 0
#define ICMSGTYPE_HEARTBEAT 1
#define ICMSGTYPE_KVPEXCHANGE 2
#define ICMSGTYPE_SHUTDOWN 3
#define ICMSGTYPE_TIMESYNC 4
#define ICMSGHDRFLAG_TRANSACTION 1
#define ICMSGHDRFLAG_REQUEST 2
#define ICMSGHDRFLAG_RESPONSE 4

/* struct vmbuspipe_hdr, then struct icmsg_hdr */
#define IC_PIPE_LEN 8
#define IC_TYPE (IC_PIPE_LEN + 4)
#define IC_SIZE (IC_PIPE_LEN + 10)
#define IC_STATUS (IC_PIPE_LEN + 12)
#define IC_FLAGS (IC_PIPE_LEN + 17)
#define IC_HDR 28
/* struct shutdown_msg_data: reason, timeout, flags, a 2048-byte message */
#define SHUTDOWN_MSG_LEN (12 + 2048)

/* struct hv_kvp_msg with its enumerate body: hv_kvp_hdr (operation,
 * pool), the index, then hv_kvp_exchg_msg_value (type, key size, value
 * size, a 512-byte UTF-16 key, a 2048-byte UTF-16 value) */
#define KVP_OP_SET 1
#define KVP_OP_ENUMERATE 3
/* hv_kvp_msg_set: the hv_kvp_exchg_msg_value right after the header */
#define KVP_SET_VALUE 4
#define KVP_SETS_MAX 8
#define REG_SZ 1
#define KVP_INDEX 4
#define KVP_VALUE 8
#define KVP_KEY_SIZE (KVP_VALUE + 4)
#define KVP_VALUE_SIZE (KVP_VALUE + 8)
#define KVP_KEY (KVP_VALUE + 12)
#define KVP_KEY_MAX 512
#define KVP_VAL (KVP_KEY + KVP_KEY_MAX)
#define KVP_VAL_MAX 2048
#define KVP_MSG_LEN (KVP_VAL + KVP_VAL_MAX)
#define KVP_REFRESH_SEC 10

#define IC_MAX (IC_HDR + KVP_MSG_LEN)
/* the guest answers in a packet as long as the request */
#define UTIL_PKT_MAX (16 + IC_MAX + 8)

/* struct ic_version: major in the low half */
#define VERSION(major, minor) ((uint32_t)(minor) << 16 | (major))
#define VERSION_MAJOR(v) ((v) & 0xffff)

/* 100 ns units between 1601-01-01 and 1970-01-01 */
#define WLTIMEDELTA 116444736000000000ULL
#define ICTIMESYNCFLAG_SYNC 1
#define ICTIMESYNCFLAG_SAMPLE 2
#define TIMESYNC_SAMPLE_SEC 5

struct util_service {
	const char *name;
	uint8_t class[16];
	uint16_t msg_type;
	unsigned nsrv;
	uint32_t srv[3]; /* service versions offered, best first */
};

enum util_kind { UTIL_SHUTDOWN, UTIL_HEARTBEAT, UTIL_TIMESYNC, UTIL_KVP, UTIL_COUNT };

static const struct util_service services[UTIL_COUNT] = {
	/* 0e0b6031-5213-4934-818b-38d90ced39db (HV_SHUTDOWN_GUID) */
	[UTIL_SHUTDOWN] = { "shutdown",
			    { 0x31, 0x60, 0x0b, 0x0e, 0x13, 0x52, 0x34, 0x49, 0x81, 0x8b, 0x38, 0xd9, 0x0c, 0xed,
			      0x39, 0xdb },
			    ICMSGTYPE_SHUTDOWN, 2, { VERSION(3, 0), VERSION(1, 0) } },
	/* 57164f39-9115-4e78-ab55-382f3bd5422d (HV_HEART_BEAT_GUID) */
	[UTIL_HEARTBEAT] = { "heartbeat",
			     { 0x39, 0x4f, 0x16, 0x57, 0x15, 0x91, 0x78, 0x4e, 0xab, 0x55, 0x38, 0x2f, 0x3b, 0xd5,
			       0x42, 0x2d },
			     ICMSGTYPE_HEARTBEAT, 2, { VERSION(3, 0), VERSION(1, 0) } },
	/* 9527e630-d0ae-497b-adce-e80ab0175caf (HV_TS_GUID); 4.0 carries
	 * the reference time of the sample */
	[UTIL_TIMESYNC] = { "time sync",
			    { 0x30, 0xe6, 0x27, 0x95, 0xae, 0xd0, 0x7b, 0x49, 0xad, 0xce, 0xe8, 0x0a, 0xb0, 0x17,
			      0x5c, 0xaf },
			    ICMSGTYPE_TIMESYNC, 3, { VERSION(4, 0), VERSION(3, 0), VERSION(1, 0) } },
	/* a9a0f4e7-5a45-4d96-b827-8a841e8c03e6 (HV_KVP_GUID) */
	[UTIL_KVP] = { "KVP",
		       { 0xe7, 0xf4, 0xa0, 0xa9, 0x45, 0x5a, 0x96, 0x4d, 0xb8, 0x27, 0x8a, 0x84, 0x1e, 0x8c, 0x03,
			 0xe6 },
		       ICMSGTYPE_KVPEXCHANGE, 3, { VERSION(4, 0), VERSION(3, 0), VERSION(1, 0) } },
};

/* framework versions offered, best first */
static const uint32_t fw_versions[2] = { VERSION(3, 0), VERSION(1, 0) };

/* the pools the host enumerates, in this order */
static const uint8_t kvp_pools[] = { HV_KVP_POOL_AUTO, HV_KVP_POOL_GUEST, HV_KVP_POOL_EXTERNAL };

struct kvp_pool {
	unsigned n;
	char *key[HV_KVP_MAX_PAIRS], *value[HV_KVP_MAX_PAIRS];
};

/* a SET for the external pool, its key and value in UTF-16LE */
struct kvp_set {
	uint8_t key[KVP_KEY_MAX], value[KVP_VAL_MAX];
	uint32_t ksize, vsize;
};

struct util_chan {
	struct vmbus_channel *ch;
	struct hv_util *h;
	enum util_kind kind;
	bool negotiated;
	uint32_t fw, srv;	/* negotiated versions */
	uint64_t trans;
	uint16_t waiting;	/* KVP: the type of the request in flight, or 0xffff */
	uint64_t answers;	/* heartbeats, time samples or shutdowns the guest acknowledged */
	uint64_t seq;		/* heartbeat: last sequence number sent */
	uint8_t pkt[UTIL_PKT_MAX];
};

struct hv_util {
	struct vmbus *vb;
	struct vm *vm;
	struct util_chan chan[UTIL_COUNT];
	/* KVP: the enumeration under way (pool kvp_pools[kvp_step], index
	 * kvp_index) fills kvp_next; a finished pool replaces kvp_pool */
	unsigned kvp_step;
	uint32_t kvp_index;
	bool kvp_running, kvp_setting, kvp_due;
	uint64_t kvp_rounds, kvp_sets_done, kvp_sets_failed;
	struct kvp_set kvp_set[KVP_SETS_MAX]; /* the head is in flight while kvp_setting */
	unsigned kvp_nsets;
	struct kvp_pool kvp_pool[HV_KVP_POOL_COUNT], kvp_next;
	uint8_t out[IC_MAX], kvp_req[KVP_MSG_LEN];
	unsigned tick;
	bool resync; /* restored from a snapshot: the guest's clock is behind */
	int pipe[2];
	pthread_t thread;
};

static int sig_fd = -1;
static volatile sig_atomic_t sigterms;

static bool chan_ready(const struct util_chan *u)
{
	return u->ch->open && !u->ch->broken && u->negotiated;
}

/* a request from the host: pipe header, icmsg header, body; 0, or -1
 * when the guest's ring has no room or the channel is stopped */
static int ic_send(struct util_chan *u, uint16_t type, const void *body, uint16_t len)
{
	uint8_t *m = u->h->out;
	/* before the negotiation, the best versions on offer */
	uint32_t fw = u->negotiated ? u->fw : fw_versions[0];
	uint32_t srv = u->negotiated ? u->srv : services[u->kind].srv[0];

	memset(m, 0, IC_HDR);
	vmbus_put32(m + 4, IC_HDR - IC_PIPE_LEN + len);
	vmbus_put32(m + IC_PIPE_LEN, fw);
	vmbus_put16(m + IC_TYPE, type);
	vmbus_put32(m + IC_TYPE + 2, srv);
	vmbus_put16(m + IC_SIZE, len);
	m[IC_PIPE_LEN + 16] = (uint8_t)u->trans;
	m[IC_FLAGS] = ICMSGHDRFLAG_TRANSACTION | ICMSGHDRFLAG_REQUEST;
	memcpy(m + IC_HDR, body, len);
	if (vmbus_chan_send(u->ch, VMBUS_PKT_INBAND, VMBUS_PKT_F_COMPLETION, ++u->trans, m, IC_HDR + len))
		return -1;
	u->waiting = type;
	return 0;
}

/* struct icmsg_negotiate: the framework versions, then the service's;
 * the guest picks one of each */
static void ic_negotiate(struct util_chan *u)
{
	const struct util_service *s = &services[u->kind];
	uint8_t b[8 + 4 * 5] = { 0 };
	unsigned n = 0;

	vmbus_put16(b, 2);
	vmbus_put16(b + 2, (uint16_t)s->nsrv);
	for (unsigned i = 0; i < 2; i++, n++)
		vmbus_put32(b + 8 + 4 * n, fw_versions[i]);
	for (unsigned i = 0; i < s->nsrv; i++, n++)
		vmbus_put32(b + 8 + 4 * n, s->srv[i]);
	ic_send(u, ICMSGTYPE_NEGOTIATE, b, (uint16_t)(8 + 4 * n));
}

/* ---- time sync ---- */

/* struct ictimesync_ref_data (4.0: the host time and the partition
 * reference time it belongs to), else struct ictimesync_data (the host
 * time, the guest's and a round trip time, which the host leaves 0) */
static void timesync_send(struct util_chan *u, uint8_t flags)
{
	uint8_t b[25] = { 0 };
	struct timespec ts;
	uint64_t ref = hv_ref_time(u->h->vm);

	clock_gettime(CLOCK_REALTIME, &ts);
	vmbus_put64(b, WLTIMEDELTA + (uint64_t)ts.tv_sec * 10000000 + (uint64_t)ts.tv_nsec / 100);
	if (VERSION_MAJOR(u->srv) >= 4) {
		vmbus_put64(b + 8, ref);
		b[16] = flags;
		ic_send(u, ICMSGTYPE_TIMESYNC, b, 24);
	} else {
		b[24] = flags;
		ic_send(u, ICMSGTYPE_TIMESYNC, b, 25);
	}
}

/* ---- KVP ---- */

/* UTF-16LE (n bytes, up to the first NUL) to UTF-8; lone surrogates
 * become U+FFFD. A malloc'd string, or NULL. */
static char *utf16_to_utf8(const uint8_t *p, uint32_t n)
{
	char *s = malloc(n / 2 * 3 + 1), *o = s;

	if (!s)
		return NULL;
	for (uint32_t i = 0; i + 1 < n; i += 2) {
		uint32_t c = vmbus_get16(p + i);

		if (!c)
			break;
		if (c >= 0xd800 && c < 0xdc00 && i + 3 < n && vmbus_get16(p + i + 2) >= 0xdc00 &&
		    vmbus_get16(p + i + 2) < 0xe000) {
			c = 0x10000 + ((c - 0xd800) << 10) + (vmbus_get16(p + i + 2) - 0xdc00);
			i += 2;
		} else if (c >= 0xd800 && c < 0xe000) {
			c = 0xfffd;
		}
		if (c < 0x80) {
			*o++ = (char)c;
		} else if (c < 0x800) {
			*o++ = (char)(0xc0 | c >> 6);
			*o++ = (char)(0x80 | (c & 0x3f));
		} else if (c < 0x10000) {
			*o++ = (char)(0xe0 | c >> 12);
			*o++ = (char)(0x80 | (c >> 6 & 0x3f));
			*o++ = (char)(0x80 | (c & 0x3f));
		} else {
			*o++ = (char)(0xf0 | c >> 18);
			*o++ = (char)(0x80 | (c >> 12 & 0x3f));
			*o++ = (char)(0x80 | (c >> 6 & 0x3f));
			*o++ = (char)(0x80 | (c & 0x3f));
		}
	}
	*o = 0;
	return s;
}

/* UTF-8 to UTF-16LE with its terminator into out (cap bytes): the byte
 * count, or -1 when s is not UTF-8 (overlong forms and surrogates
 * included) or does not fit */
static int utf8_to_utf16(const char *s, uint8_t *out, uint32_t cap)
{
	const uint8_t *p = (const uint8_t *)s;
	uint32_t n = 0;

	while (*p) {
		uint32_t c = *p++, need = 0, min = 0;

		if (c >= 0xf0 && c < 0xf5) {
			c &= 0x07, need = 3, min = 0x10000;
		} else if (c >= 0xe0 && c < 0xf0) {
			c &= 0x0f, need = 2, min = 0x800;
		} else if (c >= 0xc2 && c < 0xe0) {
			c &= 0x1f, need = 1, min = 0x80;
		} else if (c >= 0x80) {
			return -1;
		}
		for (; need; need--, p++) {
			if ((*p & 0xc0) != 0x80)
				return -1;
			c = c << 6 | (*p & 0x3f);
		}
		if (c < min || c > 0x10ffff || (c >= 0xd800 && c < 0xe000))
			return -1;
		if (c >= 0x10000) {
			if (n + 4 > cap)
				return -1;
			c -= 0x10000;
			vmbus_put16(out + n, (uint16_t)(0xd800 + (c >> 10)));
			vmbus_put16(out + n + 2, (uint16_t)(0xdc00 + (c & 0x3ff)));
			n += 4;
		} else {
			if (n + 2 > cap)
				return -1;
			vmbus_put16(out + n, (uint16_t)c);
			n += 2;
		}
	}
	if (n + 2 > cap)
		return -1;
	vmbus_put16(out + n, 0);
	return (int)n + 2;
}

static void kvp_pool_clear(struct kvp_pool *p)
{
	for (unsigned i = 0; i < p->n; i++) {
		free(p->key[i]);
		free(p->value[i]);
	}
	p->n = 0;
}

static void kvp_request(struct hv_util *h)
{
	uint8_t *b = h->kvp_req;

	memset(b, 0, KVP_MSG_LEN);
	b[0] = KVP_OP_ENUMERATE;
	b[1] = kvp_pools[h->kvp_step];
	vmbus_put32(b + KVP_INDEX, h->kvp_index);
	/* no room: the next tick starts over */
	if (ic_send(&h->chan[UTIL_KVP], ICMSGTYPE_KVPEXCHANGE, b, KVP_MSG_LEN))
		h->kvp_running = false;
}

static void kvp_set_send(struct hv_util *h)
{
	const struct kvp_set *s = &h->kvp_set[0];
	uint8_t *b = h->kvp_req;

	memset(b, 0, KVP_MSG_LEN);
	b[0] = KVP_OP_SET;
	b[1] = HV_KVP_POOL_EXTERNAL;
	vmbus_put32(b + KVP_SET_VALUE, REG_SZ);
	vmbus_put32(b + KVP_SET_VALUE + 4, s->ksize);
	vmbus_put32(b + KVP_SET_VALUE + 8, s->vsize);
	memcpy(b + KVP_SET_VALUE + 12, s->key, s->ksize);
	memcpy(b + KVP_SET_VALUE + 12 + KVP_KEY_MAX, s->value, s->vsize);
	h->kvp_setting = ic_send(&h->chan[UTIL_KVP], ICMSGTYPE_KVPEXCHANGE, b, KVP_MSG_LEN) == 0;
}

/* with nothing in flight: a queued SET, else a new enumeration of the
 * pools if one is due (asked now, or while something was in flight) */
static void kvp_work(struct hv_util *h, bool enumerate)
{
	h->kvp_due |= enumerate;
	if (h->kvp_running || h->kvp_setting || !chan_ready(&h->chan[UTIL_KVP]))
		return;
	if (h->kvp_nsets) {
		kvp_set_send(h);
		return;
	}
	if (!h->kvp_due)
		return;
	h->kvp_due = false;
	h->kvp_running = true;
	h->kvp_step = 0;
	h->kvp_index = 0;
	kvp_pool_clear(&h->kvp_next);
	kvp_request(h);
}

/* the guest's answer to a SET: done or refused; false when short */
static bool kvp_set_answer(struct hv_util *h, const uint8_t *m, uint32_t mlen)
{
	if (mlen < IC_HDR + KVP_MSG_LEN)
		return false;
	if (vmbus_get32(m + IC_STATUS))
		h->kvp_sets_failed++;
	else
		h->kvp_sets_done++;
	memmove(&h->kvp_set[0], &h->kvp_set[1], (h->kvp_nsets - 1) * sizeof(h->kvp_set[0]));
	h->kvp_nsets--;
	h->kvp_setting = false;
	kvp_work(h, false);
	return true;
}

/* the guest's answer to ENUMERATE: a pair, or (any error status) the end
 * of the pool. false when the answer breaks the message's bounds. */
static bool kvp_answer(struct hv_util *h, const uint8_t *m, uint32_t mlen)
{
	const uint8_t *b = m + IC_HDR;
	uint32_t ksize, vsize;
	struct kvp_pool *p = &h->kvp_next;

	if (mlen < IC_HDR + KVP_MSG_LEN)
		return false;
	ksize = vmbus_get32(b + KVP_KEY_SIZE);
	vsize = vmbus_get32(b + KVP_VALUE_SIZE);
	if (!vmbus_get32(m + IC_STATUS) && (ksize > KVP_KEY_MAX || vsize > KVP_VAL_MAX))
		return false;
	if (!vmbus_get32(m + IC_STATUS) && h->kvp_index < HV_KVP_MAX_PAIRS) {
		char *k = utf16_to_utf8(b + KVP_KEY, ksize), *v = utf16_to_utf8(b + KVP_VAL, vsize);

		if (k && v) {
			p->key[p->n] = k;
			p->value[p->n++] = v;
		} else {
			free(k);
			free(v);
		}
		h->kvp_index++;
		kvp_request(h);
		return true;
	}
	/* this pool is complete */
	struct kvp_pool *done = &h->kvp_pool[kvp_pools[h->kvp_step]];

	kvp_pool_clear(done);
	*done = *p;
	p->n = 0;
	h->kvp_index = 0;
	if (++h->kvp_step < sizeof(kvp_pools)) {
		kvp_request(h);
	} else {
		h->kvp_running = false;
		h->kvp_rounds++;
		kvp_work(h, false);
	}
	return true;
}

/* ---- the channels ---- */

static void util_open(struct vmbus_channel *ch)
{
	struct util_chan *u = ch->opaque;

	u->negotiated = false;
	u->waiting = 0xffff;
	if (u->kind == UTIL_KVP) {
		u->h->kvp_running = false;
		u->h->kvp_setting = false;
		kvp_pool_clear(&u->h->kvp_next);
	}
	ic_negotiate(u);
}

/* the guest's answer to the negotiation: one framework and one service
 * version, both among those offered; 0 when they agree, 1 when the guest
 * found no match (vercnt 0), -1 when the answer is malformed */
static int negotiated(struct util_chan *u, const uint8_t *m, uint32_t mlen)
{
	const struct util_service *s = &services[u->kind];
	const uint8_t *b = m + IC_HDR;
	bool fw_ok = false, srv_ok = false;

	if (mlen < IC_HDR + 8)
		return -1;
	if (vmbus_get16(b) == 0 && vmbus_get16(b + 2) == 0)
		return 1;
	if (vmbus_get16(b) != 1 || vmbus_get16(b + 2) != 1 || mlen < IC_HDR + 16)
		return -1;
	u->fw = vmbus_get32(b + 8);
	u->srv = vmbus_get32(b + 12);
	for (unsigned i = 0; i < 2; i++)
		fw_ok |= u->fw == fw_versions[i];
	for (unsigned i = 0; i < s->nsrv; i++)
		srv_ok |= u->srv == s->srv[i];
	return fw_ok && srv_ok ? 0 : -1;
}

/* one answer from the guest; false when it breaks the protocol */
static bool util_answer(struct util_chan *u, const uint8_t *m, uint32_t mlen)
{
	struct hv_util *h = u->h;
	uint16_t type;
	uint32_t status;

	if (mlen < IC_HDR || !(m[IC_FLAGS] & ICMSGHDRFLAG_RESPONSE))
		return false;
	type = vmbus_get16(m + IC_TYPE);
	status = vmbus_get32(m + IC_STATUS);
	if (type != ICMSGTYPE_NEGOTIATE && type != services[u->kind].msg_type)
		return false;
	if (type == ICMSGTYPE_NEGOTIATE) {
		int rc = negotiated(u, m, mlen);

		if (rc < 0)
			return false;
		if (rc > 0) {
			fprintf(stderr, "accord: vmbus: the guest's %s service shares no version with the host\n",
				services[u->kind].name);
			return true;
		}
		u->negotiated = true;
		u->waiting = 0xffff;
		if (u->kind == UTIL_TIMESYNC)
			timesync_send(u, ICTIMESYNCFLAG_SYNC);
		else if (u->kind == UTIL_KVP)
			kvp_work(h, true);
		return true;
	}
	if (!u->negotiated)
		return false;
	switch (u->kind) {
	case UTIL_HEARTBEAT:
		if (mlen < IC_HDR + 8)
			return false;
		if (!status && vmbus_get64(m + IC_HDR) == u->seq + 1)
			u->answers++;
		break;
	case UTIL_KVP:
		if (u->waiting != ICMSGTYPE_KVPEXCHANGE || (!h->kvp_running && !h->kvp_setting))
			return false;
		u->waiting = 0xffff;
		return h->kvp_setting ? kvp_set_answer(h, m, mlen) : kvp_answer(h, m, mlen);
	default:
		if (!status)
			u->answers++;
		break;
	}
	return true;
}

static void util_notify(struct vmbus_channel *ch)
{
	struct util_chan *u = ch->opaque;

	for (;;) {
		int len = ring_peek(&ch->in, u->pkt, sizeof(u->pkt));
		struct vmbus_pkt_desc d;

		if (len < 0)
			vmbus_chan_fail(ch, "%s: corrupt ring or a packet over %zu bytes", services[u->kind].name,
					sizeof(u->pkt));
		if (len <= 0)
			return;
		memcpy(&d, u->pkt, sizeof(d));
		if (d.type != VMBUS_PKT_INBAND || d.offset8 * 8u > (uint32_t)len ||
		    !util_answer(u, u->pkt + d.offset8 * 8, len - d.offset8 * 8)) {
			vmbus_chan_fail(ch, "%s: malformed IC answer (packet type %u, %d bytes)",
					services[u->kind].name, d.type, len);
			return;
		}
		if (ring_consume(&ch->in, len))
			vmbus_chan_kick(ch);
	}
}

static void util_close(struct vmbus_channel *ch)
{
	struct util_chan *u = ch->opaque;

	u->negotiated = false;
	if (u->kind == UTIL_KVP) {
		/* a SET in flight stays queued for the next open */
		u->h->kvp_running = false;
		u->h->kvp_setting = false;
	}
}

static const struct vmbus_dev_ops util_ops = { .open = util_open, .notify = util_notify, .close = util_close };

/* ---- snapshots ---- */

#define SNAP_UTIL_VERSION 1
/* a pair's UTF-8 from at most 1024 UTF-16 units */
#define KVP_STR_MAX (3 * KVP_VAL_MAX / 2)

static void put_str(struct snap_buf *b, const char *s)
{
	uint32_t len = (uint32_t)strlen(s);

	snap_put(b, &len, 4);
	snap_put(b, s, len);
}

static void put_pool(struct snap_buf *b, const struct kvp_pool *p)
{
	snap_put(b, &p->n, 4);
	for (unsigned i = 0; i < p->n; i++) {
		put_str(b, p->key[i]);
		put_str(b, p->value[i]);
	}
}

/* The four services' negotiated versions and exchanges in flight (their
 * requests are in the guest's rings), the KVP enumeration under way with
 * the pairs read so far, the SETs queued and the last complete pools. */
static int util_save(void *opaque, struct snap_buf *b, char *err, size_t n)
{
	struct hv_util *h = opaque;
	uint32_t u32[4] = { SNAP_UTIL_VERSION, h->tick, h->kvp_step, h->kvp_index };
	uint8_t f[3] = { h->kvp_running, h->kvp_setting, h->kvp_due };
	uint64_t u64[3] = { h->kvp_rounds, h->kvp_sets_done, h->kvp_sets_failed };

	snap_put(b, u32, sizeof(u32));
	for (unsigned k = 0; k < UTIL_COUNT; k++) {
		const struct util_chan *u = &h->chan[k];
		uint8_t neg = u->negotiated;

		snap_put(b, &neg, 1);
		snap_put(b, &u->fw, 4);
		snap_put(b, &u->srv, 4);
		snap_put(b, &u->waiting, 2);
		snap_put(b, &u->trans, 8);
		snap_put(b, &u->answers, 8);
		snap_put(b, &u->seq, 8);
	}
	snap_put(b, f, sizeof(f));
	snap_put(b, u64, sizeof(u64));
	snap_put(b, &h->kvp_nsets, 4);
	for (unsigned i = 0; i < h->kvp_nsets; i++) {
		const struct kvp_set *s = &h->kvp_set[i];

		snap_put(b, &s->ksize, 4);
		snap_put(b, &s->vsize, 4);
		snap_put(b, s->key, s->ksize);
		snap_put(b, s->value, s->vsize);
	}
	for (unsigned p = 0; p < HV_KVP_POOL_COUNT; p++)
		put_pool(b, &h->kvp_pool[p]);
	put_pool(b, &h->kvp_next);
	return 0;
}

/* a pool's pairs, NUL-free strings of bounded length; false when bad */
static bool get_pool(struct snap_rd *r, struct kvp_pool *p)
{
	uint32_t n;

	if (!snap_get(r, &n, 4) || n > HV_KVP_MAX_PAIRS)
		return false;
	for (p->n = 0; p->n < n;) {
		char *s[2] = { NULL, NULL };

		for (int i = 0; i < 2; i++) {
			uint32_t len;

			if (!snap_get(r, &len, 4) || len > KVP_STR_MAX || !(s[i] = malloc(len + 1)) ||
			    !snap_get(r, s[i], len) || memchr(s[i], 0, len)) {
				free(s[0]);
				free(s[1]);
				return false;
			}
			s[i][len] = 0;
		}
		p->key[p->n] = s[0];
		p->value[p->n++] = s[1];
	}
	return true;
}

static int util_load(void *opaque, struct snap_rd *r, char *err, size_t n)
{
	struct hv_util *h = opaque;
	struct util_chan chan[UTIL_COUNT];
	struct kvp_pool *pool = calloc(HV_KVP_POOL_COUNT + 1, sizeof(*pool));
	struct kvp_set *sets = calloc(KVP_SETS_MAX, sizeof(*sets));
	uint32_t u32[4], nsets;
	uint8_t f[3];
	uint64_t u64[3];
	const char *why = "truncated";

	if (!pool || !sets) {
		why = "out of memory";
		goto bad;
	}
	if (!snap_get(r, u32, sizeof(u32)) || u32[0] != SNAP_UTIL_VERSION) {
		why = "another version";
		goto bad;
	}
	for (unsigned k = 0; k < UTIL_COUNT; k++) {
		const struct util_service *sv = &services[k];
		struct util_chan *u = &chan[k];
		uint8_t neg;
		bool fw_ok = false, srv_ok = false;

		if (!snap_get(r, &neg, 1) || !snap_get(r, &u->fw, 4) || !snap_get(r, &u->srv, 4) ||
		    !snap_get(r, &u->waiting, 2) || !snap_get(r, &u->trans, 8) || !snap_get(r, &u->answers, 8) ||
		    !snap_get(r, &u->seq, 8))
			goto bad;
		for (unsigned i = 0; i < 2; i++)
			fw_ok |= u->fw == fw_versions[i];
		for (unsigned i = 0; i < sv->nsrv; i++)
			srv_ok |= u->srv == sv->srv[i];
		why = "bad negotiation";
		if (neg > 1 || (neg && (!fw_ok || !srv_ok)) ||
		    (u->waiting != 0xffff && u->waiting != ICMSGTYPE_NEGOTIATE && u->waiting != sv->msg_type))
			goto bad;
		u->negotiated = neg;
		why = "truncated";
	}
	if (!snap_get(r, f, sizeof(f)) || !snap_get(r, u64, sizeof(u64)) || !snap_get(r, &nsets, 4))
		goto bad;
	/* one KVP exchange at a time; a SET in flight is the queue's head;
	 * an enumeration under way is at one of the pools (past the last
	 * once done) */
	why = "bad KVP state";
	if (f[0] > 1 || f[1] > 1 || f[2] > 1 || (f[0] && f[1]) || nsets > KVP_SETS_MAX || (f[1] && !nsets) ||
	    u32[2] > sizeof(kvp_pools) || (f[0] && u32[2] == sizeof(kvp_pools)) || u32[3] > HV_KVP_MAX_PAIRS)
		goto bad;
	for (unsigned i = 0; i < nsets; i++)
		if (!snap_get(r, &sets[i].ksize, 4) || !snap_get(r, &sets[i].vsize, 4) || sets[i].ksize > KVP_KEY_MAX ||
		    sets[i].vsize > KVP_VAL_MAX || !snap_get(r, sets[i].key, sets[i].ksize) ||
		    !snap_get(r, sets[i].value, sets[i].vsize))
			goto bad;
	for (unsigned p = 0; p <= HV_KVP_POOL_COUNT; p++)
		if (!get_pool(r, &pool[p]))
			goto bad;
	/* the enumeration under way holds at most one pair per index read */
	if (pool[HV_KVP_POOL_COUNT].n > u32[3])
		goto bad;

	h->tick = u32[1];
	h->resync = true;
	h->kvp_step = u32[2];
	h->kvp_index = u32[3];
	for (unsigned k = 0; k < UTIL_COUNT; k++) {
		struct util_chan *u = &h->chan[k];

		u->negotiated = chan[k].negotiated;
		u->fw = chan[k].fw;
		u->srv = chan[k].srv;
		u->waiting = chan[k].waiting;
		u->trans = chan[k].trans;
		u->answers = chan[k].answers;
		u->seq = chan[k].seq;
	}
	h->kvp_running = f[0];
	h->kvp_setting = f[1];
	h->kvp_due = f[2];
	h->kvp_rounds = u64[0];
	h->kvp_sets_done = u64[1];
	h->kvp_sets_failed = u64[2];
	memcpy(h->kvp_set, sets, nsets * sizeof(*sets));
	h->kvp_nsets = nsets;
	for (unsigned p = 0; p < HV_KVP_POOL_COUNT; p++) {
		kvp_pool_clear(&h->kvp_pool[p]);
		h->kvp_pool[p] = pool[p];
	}
	kvp_pool_clear(&h->kvp_next);
	h->kvp_next = pool[HV_KVP_POOL_COUNT];
	free(pool);
	free(sets);
	return 0;
bad:
	snprintf(err, n, "bad integration services state: %s", why);
	if (pool)
		for (unsigned p = 0; p <= HV_KVP_POOL_COUNT; p++)
			kvp_pool_clear(&pool[p]);
	free(pool);
	free(sets);
	return -1;
}

/* flags 1: shut down, by force if need be */
int hv_util_shutdown(struct hv_util *h)
{
	struct util_chan *u = &h->chan[UTIL_SHUTDOWN];
	uint8_t b[SHUTDOWN_MSG_LEN] = { 0 };
	int rc = -1;

	vmbus_put32(b + 8, 1);
	memcpy(b + 12, "accord: shutdown", 16);
	vmbus_lock(h->vb);
	if (chan_ready(u)) {
		ic_send(u, ICMSGTYPE_SHUTDOWN, b, sizeof(b));
		rc = 0;
	}
	vmbus_unlock(h->vb);
	return rc;
}

/* once a second: the heartbeat, every 5 s a time sample, every 10 s a
 * new KVP enumeration */
void hv_util_tick(struct hv_util *h)
{
	struct util_chan *u = &h->chan[UTIL_HEARTBEAT];
	uint8_t b[8 + 32] = { 0 };
	unsigned tick;

	vmbus_lock(h->vb);
	tick = ++h->tick;
	if (chan_ready(u)) {
		u->seq += 2;
		vmbus_put64(b, u->seq);
		ic_send(u, ICMSGTYPE_HEARTBEAT, b, sizeof(b));
	}
	/* after a restore, as Hyper-V after a resume: SYNC sets the guest's
	 * clock, which stood still from the snapshot to the restore */
	if (h->resync && chan_ready(&h->chan[UTIL_TIMESYNC])) {
		timesync_send(&h->chan[UTIL_TIMESYNC], ICTIMESYNCFLAG_SYNC);
		h->resync = false;
	} else if (tick % TIMESYNC_SAMPLE_SEC == 0 && chan_ready(&h->chan[UTIL_TIMESYNC])) {
		timesync_send(&h->chan[UTIL_TIMESYNC], ICTIMESYNCFLAG_SAMPLE);
	}
	kvp_work(h, tick % KVP_REFRESH_SEC == 0);
	vmbus_unlock(h->vb);
}

static void on_sigterm(int sig)
{
	int saved = errno;

	/* the first asks the guest, the second ends accord through the
	 * machine loop; if that is stuck, a third ends it here */
	if (++sigterms > 2 || write(sig_fd, "t", 1) < 0) {
		console_restore_tty();
		signal(sig, SIG_DFL);
		raise(sig);
	}
	errno = saved;
}

/* the timers above, and SIGTERM turned into a shutdown request */
static void *util_thread(void *arg)
{
	struct hv_util *h = arg;
	struct pollfd p = { .fd = h->pipe[0], .events = POLLIN };
	struct timespec next;
	unsigned terms = 0;

	clock_gettime(CLOCK_MONOTONIC, &next);
	while (!h->vm->exit_reason) {
		struct timespec now;
		char c;
		int wait;

		clock_gettime(CLOCK_MONOTONIC, &now);
		wait = (int)((next.tv_sec - now.tv_sec) * 1000 + (next.tv_nsec - now.tv_nsec) / 1000000);
		if (poll(&p, 1, wait > 0 ? wait : 0) > 0 && read(h->pipe[0], &c, 1) == 1) {
			if (++terms > 1) {
				fprintf(stderr, "\r\naccord: SIGTERM again: ending\r\n");
				vm_request_exit(h->vm, VM_STOPPED, 0, "SIGTERM");
			} else if (hv_util_shutdown(h) == 0) {
				fprintf(stderr, "\r\naccord: SIGTERM: asked the guest to shut down\r\n");
			} else {
				fprintf(stderr, "\r\naccord: SIGTERM: the guest has no shutdown channel; ending\r\n");
				vm_request_exit(h->vm, VM_POWEROFF, 0, "SIGTERM");
			}
			continue;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > next.tv_sec || (now.tv_sec == next.tv_sec && now.tv_nsec >= next.tv_nsec)) {
			hv_util_tick(h);
			next.tv_sec++;
		}
	}
	return NULL;
}

struct hv_util *hv_util_create(struct vmbus *vb, struct vm *vm, unsigned flags)
{
	struct hv_util *h = calloc(1, sizeof(*h));
	uint8_t instance[16] = { 0x61, 0x63, 0x63, 0x6f, 0x72, 0x64, 0x00, 0x40, 0x80, 0x49, 0x43 };

	if (!h || pipe(h->pipe)) {
		free(h);
		fprintf(stderr, "accord: cannot set up the integration services\n");
		return NULL;
	}
	h->vb = vb;
	h->vm = vm;
	for (unsigned k = 0; k < UTIL_COUNT; k++) {
		struct util_chan *u = &h->chan[k];

		instance[15] = (uint8_t)k;
		u->h = h;
		u->kind = k;
		u->waiting = 0xffff;
		u->ch = vmbus_add_channel(vb, services[k].class, instance, &util_ops, u);
		if (!u->ch)
			return NULL;
	}
	if (vm_snap_register(vm, "hv-util", util_save, util_load, h)) {
		fprintf(stderr, "accord: cannot set up the integration services\n");
		return NULL;
	}
	if (!(flags & HV_UTIL_THREAD))
		return h;
	if (pthread_create(&h->thread, NULL, util_thread, h)) {
		fprintf(stderr, "accord: cannot start the integration services thread\n");
		return NULL;
	}
	pthread_detach(h->thread);
	if (flags & HV_UTIL_SIGTERM) {
		sig_fd = h->pipe[1];
		signal(SIGTERM, on_sigterm);
	}
	return h;
}

void hv_util_status(struct hv_util *h, struct hv_util_state *st)
{
	vmbus_lock(h->vb);
	st->heartbeats = h->chan[UTIL_HEARTBEAT].answers;
	st->time_samples = h->chan[UTIL_TIMESYNC].answers;
	st->shutdown_ready = chan_ready(&h->chan[UTIL_SHUTDOWN]);
	st->kvp_ready = chan_ready(&h->chan[UTIL_KVP]);
	st->kvp_version = st->kvp_ready ? h->chan[UTIL_KVP].srv : 0;
	st->timesync_version = chan_ready(&h->chan[UTIL_TIMESYNC]) ? h->chan[UTIL_TIMESYNC].srv : 0;
	st->kvp_rounds = h->kvp_rounds;
	st->kvp_sets_done = h->kvp_sets_done;
	st->kvp_sets_failed = h->kvp_sets_failed;
	st->kvp_sets_pending = h->kvp_nsets;
	vmbus_unlock(h->vb);
}

uint64_t hv_util_heartbeats(struct hv_util *h)
{
	struct hv_util_state st;

	hv_util_status(h, &st);
	return st.heartbeats;
}

void hv_util_kvp_foreach(struct hv_util *h, unsigned pool, void (*fn)(void *arg, const char *key, const char *value),
			 void *arg)
{
	if (pool >= HV_KVP_POOL_COUNT)
		return;
	vmbus_lock(h->vb);
	for (unsigned i = 0; i < h->kvp_pool[pool].n; i++)
		fn(arg, h->kvp_pool[pool].key[i], h->kvp_pool[pool].value[i]);
	vmbus_unlock(h->vb);
}

int hv_util_kvp_set(struct hv_util *h, const char *key, const char *value)
{
	struct kvp_set *s;
	int ks, vs, rc = 0;

	vmbus_lock(h->vb);
	if (!chan_ready(&h->chan[UTIL_KVP])) {
		rc = -1;
	} else if (h->kvp_nsets == KVP_SETS_MAX) {
		rc = -2;
	} else {
		s = &h->kvp_set[h->kvp_nsets];
		ks = *key ? utf8_to_utf16(key, s->key, KVP_KEY_MAX) : -1;
		vs = utf8_to_utf16(value, s->value, KVP_VAL_MAX);
		if (ks < 0 || vs < 0) {
			rc = -3;
		} else {
			s->ksize = (uint32_t)ks;
			s->vsize = (uint32_t)vs;
			h->kvp_nsets++;
			kvp_work(h, false);
		}
	}
	vmbus_unlock(h->vb);
	return rc;
}
