/* virtio-console through its receive and transmit queues, fed by a fuzzed
 * driver (virtio.h). What the guest transmits goes to /dev/null; a receive
 * buffer the driver may read, or a transmit buffer it wants written, must
 * put the device in NEEDS_RESET. There is no input attached: the receive queue's
 * buffers are only posted and taken back at the reset of the next input. */
#include <fcntl.h>

#include "virtio.h"

static void fuzz_init(void)
{
	int out = open("/dev/null", O_WRONLY);

	vfuzz_vm();
	if (out < 0 || !virtio_console_create(&vm, vf_bus, out))
		abort();
	vfuzz_attach(1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	vfuzz_run(data, size);
	return 0;
}

/* the text in one buffer, or split over two, on the queue */
static void con_seed(const char *name, uint8_t feat, uint8_t queue, const char *text, bool split,
		     uint16_t flags)
{
	struct vf_prog p = { .n = 0 };
	uint32_t len = strlen(text);

	vp_bytes(&p, feat, 1);
	vp_bytes(&p, 3, 1);
	vp_bytes(&p, queue, 1);
	vp_data(&p, 0, text, len);
	if (split) {
		vp_desc(&p, 0, 0, 0, len / 2, flags | VIRTQ_DESC_F_NEXT, 1);
		vp_desc(&p, 0, 1, len / 2, len - len / 2, flags, 0);
	} else {
		vp_desc(&p, 0, 0, 0, len, flags, 0);
	}
	vp_kick(&p, 0, queue);
	fuzz_seed(name, p.b, p.n);
}

static void fuzz_seeds(void)
{
	con_seed("tx", 0, 1, "hello, hvc0\n", false, 0);
	con_seed("tx-split", 0, 1, "login: root\r\n", true, 0);
	con_seed("tx-writable", 0, 1, "x", false, VIRTQ_DESC_F_WRITE);
	con_seed("rx", 0, 0, "................", false, VIRTQ_DESC_F_WRITE);
	con_seed("rx-readable", 0, 0, "..", true, 0);
	con_seed("tx-event-idx", 2, 1, "abc", false, 0);
	con_seed("tx-avail-at-end", 0x10, 1, "at the end\n", false, 0);
}
