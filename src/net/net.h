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
 * backend's lock, then the port's queue lock. */
#ifndef ACCORD_NET_H
#define ACCORD_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct iothread;

#define NET_MAX_FRAME 65535
#define NET_MAX_HOSTFWD 16

struct net_port {
	bool (*can_receive)(void *opaque);
	void (*receive)(void *opaque, const void *frame, size_t len);
	void *opaque;
};

struct net_backend;

struct net_backend_ops {
	void (*send)(struct net_backend *nb, const void *frame, size_t len);
	void (*resume)(struct net_backend *nb);
	/* free it and its host resources (listening sockets, the TAP fd);
	 * only before its I/O thread ever ran */
	void (*destroy)(struct net_backend *nb);
};

struct net_backend {
	const struct net_backend_ops *ops;
	struct net_port port;
	/* frames the host would not take, or that came too fast for the port */
	uint64_t tx_dropped, rx_dropped;
};

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
	int nfwd;
	struct net_hostfwd fwd[NET_MAX_HOSTFWD];
};

/* "user[,hostfwd=...]...[,mac=...]" or "tap=NAME[,mac=...]"; -1 after one
 * line on stderr */
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
