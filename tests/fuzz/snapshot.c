/* The snapshot reader and loader (src/vm/snapshot.c and the devices' load
 * hooks): the input is a snapshot file. It is parsed as it is (the
 * checksum refuses almost everything), then once more with its trailer
 * made right (size and CRC-32), so that the fuzzer reaches the framing,
 * the configuration, the vCPU and memory sections and the devices' state;
 * a file that parses is loaded into a small machine (emu, 1 vCPU, the
 * platform devices, PCI with a virtio-rng, a virtio-blk on a scratch
 * image and a virtio-net on a backend that drops everything, 16 MiB),
 * or, when the header says --personality hyperv, into a Hyper-V one (the
 * partition, VMBus with a netvsc NIC, a storvsc disk and the integration
 * services, 16 MiB). Nothing may read or write outside
 * the file or the machine, and a refusal always says why. The seeds are
 * snapshots of both machines, the Hyper-V one with a guest that has
 * connected VMBus, opened the NIC's channel, handed over its buffers and
 * initialised RNDIS (tests/fuzz/hyperv.h), a timer armed. smoke runs: 3000 */
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
#include "hyperv.h"

#define RAM (16ull << 20)

/* the KVM-personality machine; hyperv.h's vm is the Hyper-V one */
static struct vm *kvm_vm;
static char *const config[] = { "--memory", "16M", "--accel", "emu", "--rng", "--net", "user" };
static char *const hv_config[] = { "--memory", "16M", "--accel", "emu", "--personality", "hyperv" };
static struct net_backend nb;
static struct iothread *io;

static void fz_send(struct net_backend *b, const void *frame, size_t len)
{
}

static void fz_resume(struct net_backend *b)
{
}

static const struct net_backend_ops fz_ops = { fz_send, fz_resume };

/* a load hands a restored virtio NIC's receive offloads to its backend */
static void fz_rx_offload(struct net_backend *b, unsigned offloads)
{
	if (offloads & ~b->offloads)
		abort();
}

static const struct net_backend_ops fz_vnet_ops = { fz_send, fz_resume, NULL, fz_rx_offload };
static struct net_backend vnet_nb = { .ops = &fz_vnet_ops,
				      .offloads = NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6 |
						  NET_OFFLOAD_ECN };

/* the Hyper-V machine, its NIC first (relid 1, the channel hyperv.h's
 * programs open); the I/O thread is never started */
static void hv_machine_init(const char *img)
{
	static const uint8_t mac[6] = { 0x52, 0x41, 0x43, 0, 0, 1 };
	struct vmbus *vb;

	nb.ops = &fz_ops;
	if (vm_create(&vm, RAM_SIZE, 1, &engine_emu, PERSONALITY_HYPERV, VM_IRQCHIP_USER, 0) < 0 || !(vb = vmbus_create(&vm)) ||
	    !netvsc_create(vb, &vm, io, &nb, mac) || !storvsc_create(vb, img, false) || !hv_util_create(vb, &vm, 0))
		abort();
	hvf_synic_init();
	snapshot_set_config(&vm, sizeof(hv_config) / sizeof(hv_config[0]), hv_config);
}

static void fuzz_init(void)
{
	static char img[] = "/tmp/accord-fuzz-snapshot-XXXXXX";
	int fd = mkstemp(img);
	int null_fd = open("/dev/null", O_WRONLY);
	struct platform_opts po = { .console_out_fd = null_fd };
	struct pci_bus *bus;
	struct net_config nc = { .kind = NET_TAP };

	if (fd < 0 || ftruncate(fd, 1 << 20) < 0)
		abort();
	close(fd);
	kvm_vm = calloc(1, sizeof(*kvm_vm));
	io = iothread_create();
	if (!kvm_vm || !io || vm_create(kvm_vm, RAM, 1, &engine_emu, PERSONALITY_KVM, VM_IRQCHIP_USER, 0) < 0 || platform_init(kvm_vm, &po) < 0 ||
	    !(bus = pci_init(kvm_vm)) || !virtio_rng_create(kvm_vm, bus) || !virtio_blk_create(kvm_vm, bus, img, false) ||
	    !virtio_net_create(kvm_vm, bus, io, &vnet_nb, &nc))
		abort();
	hv_machine_init(img);
	unlink(img);
	snapshot_set_config(kvm_vm, sizeof(config) / sizeof(config[0]), config);
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
	if (snapshot_apply(&f, f.personality == PERSONALITY_HYPERV ? &vm : kvm_vm, err, sizeof(err)) < 0 && !err[0])
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

/* a snapshot of m as a seed */
static void seed_of(struct vm *m, const char *name, bool cuts)
{
	int fd = memfd_create("snap", 0);
	char err[256];

	if (fd < 0 || snapshot_write(m, fd, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz: snapshot_write: %s\n", err);
		exit(2);
	}
	off_t n = lseek(fd, 0, SEEK_END);
	uint8_t *p = malloc((size_t)n);
	if (!p || pread(fd, p, (size_t)n, 0) != n)
		exit(2);
	fuzz_seed(name, p, (size_t)n);
	if (cuts) {
		fuzz_seed("header-only", p, SNAP_HEADER_SIZE);
		fuzz_seed("cut", p, (size_t)n / 2);
	}
	free(p);
	close(fd);
}

static void fuzz_seeds(void)
{
	/* a machine that did something: memory, a vCPU in long mode
	 * (the seeds are written before fuzz_init would run) */
	fuzz_init();
	memcpy(kvm_vm->ram + 0x100000, "seed", 4);
	kvm_vm->ram[RAM - 4096] = 1;
	struct cpu_state s;
	kvm_vm->engine->get_state(kvm_vm->vcpu[0], &s);
	s.cr0 = 0x80000011;
	s.cr4 = 0x20;
	s.efer = 0x500;
	s.seg[1].attr = 0x9b | 1u << 9;
	s.flags = CPU_STATE_FULL;
	kvm_vm->engine->set_state(kvm_vm->vcpu[0], &s);
	seed_of(kvm_vm, "machine", true);

	/* the Hyper-V guest: VMBus, the NIC's buffers, NVSP, RNDIS */
	struct prog p = { .gpadl = 0x1000 };
	uint8_t m[64] = { 2 };
	p_open(&p);
	p_gpadl_create(&p, 0x2000, AREA + 0x10000u, 16);
	p_gpadl_create(&p, 0x2001, AREA + 0x20000u, 4);
	p_nvsp(&p, 1, 0x60001, 0x60001, 0);
	p_nvsp(&p, 101, 0x2000, 0xcafe, 0);
	p_nvsp(&p, 104, 0x2001, 0, 0);
	fz_put32(m + 4, 24);
	fz_put32(m + 8, 1);
	fz_put32(m + 12, 1);
	p_write(&p, AREA + 0x20000u, m, 24);
	p_nvsp(&p, 107, 1, 0, 24);
	struct in in = { p.b, p.n };
	while (in.n)
		hvf_op(&in, take(&in, 1) & 3);
	hv_msr_write(v0, 0x400000b2, 1 | 2 | 2u << 16);
	hv_msr_write(v0, 0x400000b3, 1000000);
	seed_of(&vm, "hyperv", false);
}
