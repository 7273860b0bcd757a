/* Integration services (drivers/hv/hv_util.c): the shutdown channel, by
 * which the host asks the guest to power off cleanly, and the heartbeat
 * channel, on which the guest answers a sequence number once a second.
 * Both speak the IC message framing: a pipe header, an icmsg header, and
 * a version negotiation (framework and service versions) before anything
 * else. The host starts every exchange; the guest answers on the same
 * transaction id.
 *
 * With --personality hyperv, SIGTERM asks the guest to shut down; when
 * the guest has no shutdown channel open, or on a second SIGTERM, accord
 * ends at once. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dev/hyperv/vmbus.h"
#include "vm/vm.h"

/* 0e0b6031-5213-4934-818b-38d90ced39db (HV_SHUTDOWN_GUID) */
static const uint8_t shutdown_class[16] = { 0x31, 0x60, 0x0b, 0x0e, 0x13, 0x52, 0x34, 0x49,
					    0x81, 0x8b, 0x38, 0xd9, 0x0c, 0xed, 0x39, 0xdb };
/* 57164f39-9115-4e78-ab55-382f3bd5422d (HV_HEART_BEAT_GUID) */
static const uint8_t heartbeat_class[16] = { 0x39, 0x4f, 0x16, 0x57, 0x15, 0x91, 0x78, 0x4e,
					     0xab, 0x55, 0x38, 0x2f, 0x3b, 0xd5, 0x42, 0x2d };

#define ICMSGTYPE_NEGOTIATE 0
#define ICMSGTYPE_HEARTBEAT 1
#define ICMSGTYPE_SHUTDOWN 3
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
#define IC_MAX (IC_HDR + SHUTDOWN_MSG_LEN)
/* the guest answers in a packet as long as the request */
#define UTIL_PKT_MAX (16 + IC_MAX + 8)

#define VERSION(major, minor) ((uint32_t)(minor) << 16 | (major))

enum util_kind { UTIL_SHUTDOWN, UTIL_HEARTBEAT };

struct util_chan {
	struct vmbus_channel *ch;
	enum util_kind kind;
	bool negotiated;
	uint64_t trans;
	uint64_t seq;                  /* heartbeat: last sequence number sent */
	uint64_t beats, shutdowns_acked;
	uint8_t pkt[UTIL_PKT_MAX];
};

struct hv_util {
	struct vmbus *vb;
	struct vm *vm;
	struct util_chan shutdown, heartbeat;
	int pipe[2];
	pthread_t thread;
};

static int sig_fd = -1;

/* a request from the host: pipe header, icmsg header, body */
static void ic_send(struct util_chan *u, uint16_t type, const void *body, uint16_t len)
{
	uint8_t m[IC_MAX] = { 0 };
	/* framework 3.0, service 3.0 once negotiated; before, what is offered */
	uint32_t ver = VERSION(3, 0);

	memcpy(m + 4, &(uint32_t){ IC_HDR - IC_PIPE_LEN + len }, 4);
	memcpy(m + IC_PIPE_LEN, &ver, 4);
	memcpy(m + IC_TYPE, &type, 2);
	memcpy(m + IC_TYPE + 2, &ver, 4);
	memcpy(m + IC_SIZE, &len, 2);
	m[IC_PIPE_LEN + 16] = (uint8_t)u->trans;
	m[IC_FLAGS] = ICMSGHDRFLAG_TRANSACTION | ICMSGHDRFLAG_REQUEST;
	memcpy(m + IC_HDR, body, len);
	vmbus_chan_send(u->ch, VMBUS_PKT_INBAND, VMBUS_PKT_F_COMPLETION, ++u->trans, m, IC_HDR + len);
}

/* struct icmsg_negotiate: the framework versions (3.0, 1.1), then the
 * service's (3.0, 1.0); hv_util picks one of each */
static void ic_negotiate(struct util_chan *u)
{
	uint8_t b[8 + 4 * 4] = { 2, 0, 2, 0 };
	uint32_t v[4] = { VERSION(3, 0), VERSION(1, 1), VERSION(3, 0), VERSION(1, 0) };

	memcpy(b + 8, v, sizeof(v));
	ic_send(u, ICMSGTYPE_NEGOTIATE, b, sizeof(b));
}

static void util_open(struct vmbus_channel *ch)
{
	struct util_chan *u = ch->opaque;

	u->negotiated = false;
	ic_negotiate(u);
}

/* the guest's answers */
static void util_notify(struct vmbus_channel *ch)
{
	struct util_chan *u = ch->opaque;

	for (;;) {
		int len = ring_peek(&ch->in, u->pkt, sizeof(u->pkt));
		struct vmbus_pkt_desc d;
		const uint8_t *m;
		uint32_t mlen, status;
		uint16_t type;

		if (len < 0)
			vmbus_chan_fail(ch, "util: corrupt ring or a packet over %zu bytes", sizeof(u->pkt));
		if (len <= 0)
			return;
		memcpy(&d, u->pkt, sizeof(d));
		m = u->pkt + d.offset8 * 8;
		mlen = len - d.offset8 * 8;
		if (mlen >= IC_HDR && (m[IC_FLAGS] & ICMSGHDRFLAG_RESPONSE)) {
			memcpy(&type, m + IC_TYPE, 2);
			memcpy(&status, m + IC_STATUS, 4);
			if (type == ICMSGTYPE_NEGOTIATE && mlen >= IC_HDR + 8)
				/* one framework and one service version: a match */
				u->negotiated = m[IC_HDR] == 1 && m[IC_HDR + 2] == 1;
			else if (type == ICMSGTYPE_SHUTDOWN && !status)
				u->shutdowns_acked++;
			else if (type == ICMSGTYPE_HEARTBEAT && mlen >= IC_HDR + 8 &&
				 !memcmp(m + IC_HDR, &(uint64_t){ u->seq + 1 }, 8))
				u->beats++;
		}
		if (ring_consume(&ch->in, len))
			vmbus_chan_kick(ch);
	}
}

static const struct vmbus_dev_ops util_ops = { .open = util_open, .notify = util_notify };

/* flags 1: shut down, by force if need be */
int hv_util_shutdown(struct hv_util *h)
{
	struct util_chan *u = &h->shutdown;
	uint8_t b[SHUTDOWN_MSG_LEN] = { 0 };
	int rc = -1;

	memcpy(b + 8, &(uint32_t){ 1 }, 4);
	memcpy(b + 12, "accord: shutdown", 16);
	vmbus_lock(h->vb);
	if (u->ch->open && !u->ch->broken && u->negotiated) {
		ic_send(u, ICMSGTYPE_SHUTDOWN, b, sizeof(b));
		rc = 0;
	}
	vmbus_unlock(h->vb);
	return rc;
}

static void heartbeat(struct hv_util *h)
{
	struct util_chan *u = &h->heartbeat;
	uint8_t b[8 + 32] = { 0 };

	vmbus_lock(h->vb);
	if (u->ch->open && !u->ch->broken && u->negotiated) {
		u->seq += 2;
		memcpy(b, &u->seq, 8);
		ic_send(u, ICMSGTYPE_HEARTBEAT, b, sizeof(b));
	}
	vmbus_unlock(h->vb);
}

static void on_sigterm(int sig)
{
	int saved = errno;

	/* a second SIGTERM while the first waits for the guest ends accord */
	signal(sig, SIG_DFL);
	if (write(sig_fd, "t", 1) < 0)
		raise(sig);
	errno = saved;
}

/* the heartbeat once a second, and SIGTERM turned into a shutdown request */
static void *util_thread(void *arg)
{
	struct hv_util *h = arg;
	struct pollfd p = { .fd = h->pipe[0], .events = POLLIN };

	while (!h->vm->exit_reason) {
		char c;

		if (poll(&p, 1, 1000) > 0 && read(h->pipe[0], &c, 1) == 1) {
			if (hv_util_shutdown(h) == 0) {
				fprintf(stderr, "\r\naccord: SIGTERM: asked the guest to shut down\r\n");
			} else {
				fprintf(stderr, "\r\naccord: SIGTERM: the guest has no shutdown channel; ending\r\n");
				vm_request_exit(h->vm, VM_POWEROFF, 0, "SIGTERM");
			}
		}
		heartbeat(h);
	}
	return NULL;
}

static bool util_add(struct hv_util *h, struct util_chan *u, enum util_kind kind, const uint8_t *class)
{
	uint8_t instance[16] = { 0x61, 0x63, 0x63, 0x6f, 0x72, 0x64, 0x00, 0x40, 0x80, 0x49, 0x43 };

	instance[15] = kind;
	u->kind = kind;
	u->ch = vmbus_add_channel(h->vb, class, instance, &util_ops, u);
	return u->ch != NULL;
}

struct hv_util *hv_util_create(struct vmbus *vb, struct vm *vm, bool handle_sigterm)
{
	struct hv_util *h = calloc(1, sizeof(*h));

	if (!h || pipe(h->pipe)) {
		free(h);
		fprintf(stderr, "accord: cannot set up the integration services\n");
		return NULL;
	}
	h->vb = vb;
	h->vm = vm;
	if (!util_add(h, &h->shutdown, UTIL_SHUTDOWN, shutdown_class) ||
	    !util_add(h, &h->heartbeat, UTIL_HEARTBEAT, heartbeat_class))
		return NULL;
	if (pthread_create(&h->thread, NULL, util_thread, h)) {
		fprintf(stderr, "accord: cannot start the integration services thread\n");
		return NULL;
	}
	pthread_detach(h->thread);
	if (handle_sigterm) {
		sig_fd = h->pipe[1];
		signal(SIGTERM, on_sigterm);
	}
	return h;
}

uint64_t hv_util_heartbeats(struct hv_util *h)
{
	uint64_t n;

	vmbus_lock(h->vb);
	n = h->heartbeat.beats;
	vmbus_unlock(h->vb);
	return n;
}
