/* Network backends: what carries a network device's Ethernet frames to the
 * host. user (slirp.c: libslirp's user-mode stack, NAT, DHCP, DNS and port
 * forwards, no privileges) and tap (tap.c: a host TAP interface).
 *
 * A device (the "port") attaches to one backend. Frames from the guest go
 * out through ops->send, called with vm->io_lock held; it never blocks.
 * Frames for the guest come back through port->receive, on the I/O thread
 * or inside send (slirp answers some frames at once), with at most the
 * backend's own lock held: the port queues them and moves them into guest
 * buffers under vm->io_lock. A backend asks port->can_receive before it
 * reads from the host and stops reading while it is false; the port calls
 * ops->resume when it has room again. Lock order: vm->io_lock, then the
 * backend's lock, then the port's queue lock.
 *
 * Offloads (offload.h): a backend that can carry a frame with a checksum
 * still to fill in or a TCP segment larger than the MTU as it is (tap,
 * with the kernel's vnet header) has send_offload, and hands the port
 * such frames through receive_offload once the port said, through
 * set_rx_offload, which of them its guest accepts. Other backends take
 * and give whole frames with their checksums, and a port that offers its
 * guest offloads completes or segments the frames itself (offload.c). */
#ifndef ACCORD_NET_H
#define ACCORD_NET_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/offload.h"

struct iothread;

/* the largest IPv6 packet (64 KiB of payload after the 40-byte header)
 * and an Ethernet header with one VLAN tag: a TCP segment a guest's TSO
 * makes, or a TAP interface's GRO hands over */
#define NET_MAX_FRAME (65535 + 40 + 18)
#define NET_MAX_HOSTFWD 16

struct net_port {
	bool (*can_receive)(void *opaque);
	void (*receive)(void *opaque, const void *frame, size_t len);
	/* a frame with what remains to be done to it (optional) */
	void (*receive_offload)(void *opaque, const struct net_offload *o, const void *frame,
				size_t len);
	void *opaque;
};

struct net_backend;

struct net_backend_ops {
	void (*send)(struct net_backend *nb, const void *frame, size_t len);
	void (*resume)(struct net_backend *nb);
	/* optional: a frame with an offload request net_offload_check passed */
	void (*send_offload)(struct net_backend *nb, const struct net_offload *o, const void *frame,
			     size_t len);
	/* optional: the NET_OFFLOAD_* the port's guest takes on receive */
	void (*set_rx_offload)(struct net_backend *nb, unsigned offloads);
	/* free it and its host resources (listening sockets, the TAP fd);
	 * only before its I/O thread ever ran */
	void (*destroy)(struct net_backend *nb);
};

struct net_backend {
	const struct net_backend_ops *ops;
	struct net_port port;
	/* frames the host would not take, or that came too fast for the port */
	uint64_t tx_dropped, rx_dropped;
	/* NET_OFFLOAD_* that send_offload takes and set_rx_offload can give */
	unsigned offloads;
};

/* A port's queue of frames for its guest (net_rxq_*, net.c): the backend
 * pushes from its thread, the device drains it under its own lock. Past
 * NET_RXQ_SOFT frames the backend stops reading (can_receive); NET_RXQ_HARD
 * bounds what a backend that cannot wait (slirp answering a transmitted
 * frame at once) may add before frames are dropped. The first frame queued
 * signals kick_fd, an eventfd the device's I/O thread handler reads. */
#define NET_RXQ_SOFT 64
#define NET_RXQ_HARD 256

struct net_rx_frame {
	struct net_rx_frame *next;
	struct net_offload o; /* from a backend with offloads */
	size_t len;
	uint8_t data[];
};

struct net_rxq {
	pthread_mutex_t lock; /* after the device's lock and the backend's lock */
	struct net_rx_frame *head, *tail;
	unsigned len;
	int kick_fd;
};

/* the lock and the eventfd; -1 with errno set */
int net_rxq_init(struct net_rxq *q);
bool net_rxq_can_receive(struct net_rxq *q);
/* a copy of the frame (o may be NULL: none), or, shorter than min_len,
 * longer than NET_MAX_FRAME or with the queue full, one more in *dropped;
 * who names the device in a failed kick's error */
void net_rxq_push(struct net_rxq *q, const struct net_offload *o, const void *frame, size_t len, size_t min_len,
		  uint64_t *dropped, const char *who);
/* with q->lock held: free the first frame, done with */
void net_rxq_pop(struct net_rxq *q);
/* every frame dropped and counted; the backend resumed if it was held */
void net_rxq_drop_all(struct net_rxq *q, struct net_backend *nb, uint64_t *dropped);

struct net_hostfwd {
	bool udp;
	uint32_t host_addr; /* network order; 0: every address */
	uint16_t host_port;
	uint32_t guest_addr; /* network order; 0: the guest's DHCP address */
	uint16_t guest_port;
};

/* one --net option */
struct net_config {
	enum { NET_USER, NET_TAP } kind;
	char ifname[16];
	bool has_mac;
	uint8_t mac[6];
	/* offload=: what the NIC offers its guest. on (the default):
	 * checksums and segmentation; csum: checksums both ways, no
	 * segmentation; off: none */
	enum { NET_OFFLOAD_ON, NET_OFFLOAD_CSUM_ONLY, NET_OFFLOAD_OFF } offload;
	int nfwd;
	struct net_hostfwd fwd[NET_MAX_HOSTFWD];
};

/* "user[,hostfwd=...]...[,mac=...][,offload=...]" or
 * "tap=NAME[,mac=...][,offload=...]"; -1 after one line on stderr */
int net_parse(const char *spec, struct net_config *cfg);
/* the pieces of a --net spec: "tcp|udp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT"
 * and "XX:XX:XX:XX:XX:XX" (not multicast); -1 when malformed */
int net_parse_hostfwd(const char *spec, struct net_hostfwd *f);
int net_parse_mac(const char *s, uint8_t mac[6]);
/* a forward back in that syntax (at most 48 bytes with the NUL) */
void net_format_hostfwd(const struct net_hostfwd *f, char *out, size_t n);
/* the backend the configuration names, its fds and timers registered with
 * io; NULL after one line on stderr. The port is set before io starts. */
struct net_backend *net_backend_create(const struct net_config *cfg, struct iothread *io);
/* undo net_backend_create before the I/O thread started */
void net_backend_destroy(struct net_backend *nb);

struct net_backend *net_slirp_create(const struct net_config *cfg, struct iothread *io);
struct net_backend *net_tap_create(const struct net_config *cfg, struct iothread *io);

#endif
