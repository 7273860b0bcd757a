/* For the network device tests: a test backend that records what the
 * device sends (the last frame, and every frame while keep is set) and can
 * echo it back, and the host's side of the port (host_frame). */
#ifndef ACCORD_TESTS_TEST_BACKEND_H
#define ACCORD_TESTS_TEST_BACKEND_H

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"

struct test_backend {
	struct net_backend nb;
	pthread_mutex_t lock;
	int sent, resumes;
	bool echo;
	/* every frame kept while keep is set (segments) */
	bool keep;
	int nkept;
	uint8_t *kept[64];
	size_t kept_len[64];
	size_t last_len;
	uint8_t last[NET_MAX_FRAME];
};

static struct test_backend tb;

static inline void tb_send(struct net_backend *nb, const void *frame, size_t len)
{
	pthread_mutex_lock(&tb.lock);
	tb.sent++;
	tb.last_len = len;
	memcpy(tb.last, frame, len);
	if (tb.keep && tb.nkept < 64) {
		tb.kept[tb.nkept] = malloc(len);
		memcpy(tb.kept[tb.nkept], frame, len);
		tb.kept_len[tb.nkept++] = len;
	}
	pthread_mutex_unlock(&tb.lock);
	/* slirp answers some frames at once, from inside send */
	if (tb.echo)
		nb->port.receive(nb->port.opaque, frame, len);
}

static inline void tb_resume(struct net_backend *nb)
{
	__atomic_fetch_add(&tb.resumes, 1, __ATOMIC_SEQ_CST);
}

static const struct net_backend_ops tb_ops = { tb_send, tb_resume };

/* a frame from the host side, on this thread as a backend's would be */
static inline void host_frame(const void *f, size_t len)
{
	tb.nb.port.receive(tb.nb.port.opaque, f, len);
}

static inline bool host_can_send(void)
{
	return tb.nb.port.can_receive(tb.nb.port.opaque);
}

#endif
