/* The snapshot reader and loader (src/vm/snapshot.c and the devices' load
 * hooks): the input is a snapshot file. It is parsed as it is (the
 * checksum refuses almost everything), then once more with its trailer
 * made right (size and CRC-32), so that the fuzzer reaches the framing,
 * the configuration, the vCPU and memory sections and the devices' state;
 * a file that parses is loaded into a small machine (emu, 1 vCPU, the
 * platform devices, PCI with a virtio-rng, a virtio-blk on a scratch
 * image and a virtio-net on a backend that drops everything, 16 MiB). Nothing may read or write outside the file or the
 * machine, and a refusal always says why. smoke runs: 3000 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "dev/dev.h"
#include "dev/pci.h"
#include "dev/virtio/virtio.h"
#include "engine/engine.h"
#include "fuzz.h"
#include "net/net.h"
#include "vm/iothread.h"
#include "vm/snapshot.h"
#include "vm/vm.h"

#define RAM (16ull << 20)

static struct vm *vm;
static char *const config[] = { "--memory", "16M", "--accel", "emu", "--rng", "--net", "user" };

static void null_send(struct net_backend *nb, const void *frame, size_t len)
{
}

static void null_resume(struct net_backend *nb)
{
}

/* a load hands a restored NIC's receive offloads to its backend */
static void null_rx_offload(struct net_backend *nb, unsigned offloads)
{
	if (offloads & ~nb->offloads)
		abort();
}

static const struct net_backend_ops null_ops = { null_send, null_resume, NULL, null_rx_offload };
static struct net_backend null_nb = { .ops = &null_ops,
				      .offloads = NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6 |
						  NET_OFFLOAD_ECN };

static void fuzz_init(void)
{
	static char img[] = "/tmp/accord-fuzz-snapshot-XXXXXX";
	int fd = mkstemp(img);
	int null_fd = open("/dev/null", O_WRONLY);
	struct platform_opts po = { .console_out_fd = null_fd };
	struct pci_bus *bus;
	struct iothread *io;
	struct net_config nc = { .kind = NET_TAP };

	if (fd < 0 || ftruncate(fd, 1 << 20) < 0)
		abort();
	close(fd);
	vm = calloc(1, sizeof(*vm));
	if (!vm || vm_create(vm, RAM, 1, &engine_emu, PERSONALITY_KVM) < 0 || platform_init(vm, &po) < 0 ||
	    !(bus = pci_init(vm)) || !virtio_rng_create(vm, bus) || !virtio_blk_create(vm, bus, img, false) ||
	    !(io = iothread_create()) || !virtio_net_create(vm, bus, io, &null_nb, &nc))
		abort();
	unlink(img);
	snapshot_set_config(vm, sizeof(config) / sizeof(config[0]), config);
}

static void try_load(const uint8_t *p, size_t n)
{
	struct snap_file f;
	char err[320] = "";

	if (snapshot_parse(&f, p, n, err, sizeof(err)) < 0) {
		if (!err[0])
			abort();
		return;
	}
	if (f.argc < 0 || f.argc > SNAP_MAX_ARGS)
		abort();
	for (int i = 0; i < f.argc; i++)
		if ((const uint8_t *)f.argv[i] < p || (const uint8_t *)f.argv[i] >= p + n)
			abort();
	err[0] = 0;
	if (snapshot_apply(&f, vm, err, sizeof(err)) < 0 && !err[0])
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a copy of exactly size bytes, so that ASan sees any read past it */
	uint8_t *buf = malloc(size ? size : 1);

	memcpy(buf, data, size);
	try_load(buf, size);
	if (size >= SNAP_HEADER_SIZE + SNAP_TRAILER_SIZE) {
		uint64_t n = size;
		uint32_t crc;
		memcpy(buf + size - 16, &n, 8);
		crc = (uint32_t)crc32(0, buf, (uInt)(size - 8));
		memcpy(buf + size - 8, &crc, 4);
		memcpy(buf + size - 4, "SEND", 4);
		try_load(buf, size);
	}
	free(buf);
	return 0;
}

static void fuzz_seeds(void)
{
	int fd = memfd_create("snap", 0);
	char err[256];

	/* a machine that did something: memory, a vCPU in long mode
	 * (the seeds are written before fuzz_init would run) */
	fuzz_init();
	memcpy(vm->ram + 0x100000, "seed", 4);
	vm->ram[RAM - 4096] = 1;
	struct cpu_state s;
	vm->engine->get_state(vm->vcpu[0], &s);
	s.cr0 = 0x80000011;
	s.cr4 = 0x20;
	s.efer = 0x500;
	s.seg[1].attr = 0x9b | 1u << 9;
	s.flags = CPU_STATE_FULL;
	vm->engine->set_state(vm->vcpu[0], &s);
	if (fd < 0 || snapshot_write(vm, fd, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz: snapshot_write: %s\n", err);
		exit(2);
	}
	off_t n = lseek(fd, 0, SEEK_END);
	uint8_t *p = malloc((size_t)n);
	if (!p || pread(fd, p, (size_t)n, 0) != n)
		exit(2);
	fuzz_seed("machine", p, (size_t)n);
	fuzz_seed("header-only", p, SNAP_HEADER_SIZE);
	fuzz_seed("cut", p, (size_t)n / 2);
	free(p);
	close(fd);
}
