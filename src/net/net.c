/* --net parsing and backend selection (net.h). The hostfwd syntax is
 * QEMU's: PROTO:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "net/net.h"

static int parse_port(const char *s, uint16_t *port)
{
	char *end;
	long v;

	if (!*s || *s < '0' || *s > '9')
		return -1;
	v = strtol(s, &end, 10);
	if (*end || v < 1 || v > 65535)
		return -1;
	*port = v;
	return 0;
}

static int parse_addr(const char *s, uint32_t *addr)
{
	struct in_addr a;

	if (!*s) {
		*addr = 0;
		return 0;
	}
	if (inet_pton(AF_INET, s, &a) != 1)
		return -1;
	*addr = a.s_addr;
	return 0;
}

/* "ADDR:PORT" with ADDR possibly empty */
static int parse_endpoint(char *s, uint32_t *addr, uint16_t *port)
{
	char *colon = strrchr(s, ':');

	if (!colon)
		return -1;
	*colon = 0;
	return parse_addr(s, addr) || parse_port(colon + 1, port) ? -1 : 0;
}

int net_parse_hostfwd(const char *val, struct net_hostfwd *f)
{
	char buf[128], *dash, *rest;

	if (strlen(val) >= sizeof(buf))
		return -1;
	strcpy(buf, val);
	if (!strncmp(buf, "tcp:", 4))
		f->udp = false;
	else if (!strncmp(buf, "udp:", 4))
		f->udp = true;
	else
		return -1;
	rest = buf + 4;
	dash = strchr(rest, '-');
	if (!dash)
		return -1;
	*dash = 0;
	return parse_endpoint(rest, &f->host_addr, &f->host_port) ||
			       parse_endpoint(dash + 1, &f->guest_addr, &f->guest_port)
		       ? -1
		       : 0;
}

int net_parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char end;

	if (strlen(s) != 17 ||
	    sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &end) != 6)
		return -1;
	for (int i = 0; i < 6; i++)
		mac[i] = v[i];
	/* a multicast address cannot be a station's own */
	return mac[0] & 1 ? -1 : 0;
}

static const char *USAGE = "expected user[,hostfwd=tcp::HOSTPORT-:GUESTPORT]...[,mac=XX:XX:XX:XX:XX:XX]"
			   "[,offload=on|csum|off] or tap=NAME[,mac=...][,offload=...]";

int net_parse(const char *spec, struct net_config *cfg)
{
	char *s = strdup(spec), *save = NULL, *tok;
	const char *why = USAGE;
	bool first = true;

	memset(cfg, 0, sizeof(*cfg));
	if (!s)
		return -1;
	for (tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save), first = false) {
		if (first && !strcmp(tok, "user")) {
			cfg->kind = NET_USER;
		} else if (first && !strncmp(tok, "tap=", 4)) {
			cfg->kind = NET_TAP;
			if (!tok[4] || strlen(tok + 4) >= sizeof(cfg->ifname) || strchr(tok + 4, '/')) {
				why = "tap=NAME: an interface name of 1 to 15 characters";
				goto bad;
			}
			strcpy(cfg->ifname, tok + 4);
		} else if (first) {
			goto bad;
		} else if (!strncmp(tok, "mac=", 4)) {
			if (cfg->has_mac || net_parse_mac(tok + 4, cfg->mac)) {
				why = "mac=XX:XX:XX:XX:XX:XX, once, not a multicast address";
				goto bad;
			}
			cfg->has_mac = true;
		} else if (!strcmp(tok, "offload=on")) {
			cfg->offload = NET_OFFLOAD_ON;
		} else if (!strcmp(tok, "offload=csum")) {
			cfg->offload = NET_OFFLOAD_CSUM_ONLY;
		} else if (!strcmp(tok, "offload=off")) {
			cfg->offload = NET_OFFLOAD_OFF;
		} else if (!strncmp(tok, "hostfwd=", 8) && cfg->kind == NET_USER) {
			if (cfg->nfwd == NET_MAX_HOSTFWD) {
				why = "too many hostfwd= (at most 16)";
				goto bad;
			}
			if (net_parse_hostfwd(tok + 8, &cfg->fwd[cfg->nfwd])) {
				why = "hostfwd=tcp|udp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT";
				goto bad;
			}
			cfg->nfwd++;
		} else {
			goto bad;
		}
	}
	if (first)
		goto bad;
	free(s);
	return 0;
bad:
	fprintf(stderr, "accord: --net '%s': %s\n", spec, why);
	free(s);
	return -1;
}

void net_format_hostfwd(const struct net_hostfwd *f, char *out, size_t n)
{
	char ha[INET_ADDRSTRLEN] = "", ga[INET_ADDRSTRLEN] = "";

	if (f->host_addr)
		inet_ntop(AF_INET, &f->host_addr, ha, sizeof(ha));
	if (f->guest_addr)
		inet_ntop(AF_INET, &f->guest_addr, ga, sizeof(ga));
	snprintf(out, n, "%s:%s:%u-%s:%u", f->udp ? "udp" : "tcp", ha, f->host_port, ga, f->guest_port);
}

struct net_backend *net_backend_create(const struct net_config *cfg, struct iothread *io)
{
	return cfg->kind == NET_TAP ? net_tap_create(cfg, io) : net_slirp_create(cfg, io);
}

void net_backend_destroy(struct net_backend *nb)
{
	if (nb && nb->ops->destroy)
		nb->ops->destroy(nb);
}

int net_rxq_init(struct net_rxq *q)
{
	pthread_mutex_init(&q->lock, NULL);
	q->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	return q->kick_fd < 0 ? -1 : 0;
}

bool net_rxq_can_receive(struct net_rxq *q)
{
	bool ok;

	pthread_mutex_lock(&q->lock);
	ok = q->len < NET_RXQ_SOFT;
	pthread_mutex_unlock(&q->lock);
	return ok;
}

void net_rxq_push(struct net_rxq *q, const struct net_offload *o, const void *frame, size_t len, size_t min_len,
		  uint64_t *dropped, const char *who)
{
	struct net_rx_frame *f = NULL;
	bool first;
	uint64_t one = 1;

	if (len >= min_len && len <= NET_MAX_FRAME)
		f = malloc(sizeof(*f) + len);
	pthread_mutex_lock(&q->lock);
	if (!f || q->len >= NET_RXQ_HARD) {
		(*dropped)++;
		pthread_mutex_unlock(&q->lock);
		free(f);
		return;
	}
	f->next = NULL;
	f->o = o ? *o : (struct net_offload){ 0 };
	f->len = len;
	memcpy(f->data, frame, len);
	if (q->tail)
		q->tail->next = f;
	else
		q->head = f;
	q->tail = f;
	first = q->len++ == 0;
	pthread_mutex_unlock(&q->lock);
	/* later frames ride along with the flush the first one asked for */
	if (first && write(q->kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		perror(who);
}

void net_rxq_pop(struct net_rxq *q)
{
	struct net_rx_frame *f = q->head;

	q->head = f->next;
	if (!q->head)
		q->tail = NULL;
	q->len--;
	free(f);
}

void net_rxq_drop_all(struct net_rxq *q, struct net_backend *nb, uint64_t *dropped)
{
	bool resume;

	pthread_mutex_lock(&q->lock);
	resume = q->len >= NET_RXQ_SOFT;
	while (q->head) {
		struct net_rx_frame *f = q->head;

		q->head = f->next;
		free(f);
		(*dropped)++;
	}
	q->tail = NULL;
	q->len = 0;
	pthread_mutex_unlock(&q->lock);
	if (resume)
		nb->ops->resume(nb);
}
