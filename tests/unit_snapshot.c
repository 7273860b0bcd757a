/* The snapshot format (src/vm/snapshot.c) on a small machine: the emu
 * engine's vCPUs, the platform devices, PCI with a virtio-rng, 16 MiB of
 * RAM with a few pages written. A snapshot written to a file parses, loads
 * into a machine made the same way and gives back the same memory, vCPU
 * state and device registers; it holds only the pages written. Damaged
 * files (every truncation up to the first sections, flipped bits, another
 * version or magic, and well-framed files with a valid checksum but bad
 * contents) are refused, and a machine of another shape refuses to load.
 * A VM whose state forbids a snapshot (a hot-removed VMBus disk) is
 * refused as such: SNAP_REFUSED, and 409 with the reason from the control
 * API's PUT /vm/snapshot (a failed write is 500). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <zlib.h>

#include "api/api.h"
#include "dev/dev.h"
#include "dev/hyperv/hyperv.h"
#include "dev/hyperv/vmbus.h"
#include "dev/pci.h"
#include "dev/virtio/virtio.h"
#include "engine/engine.h"
#include "tap.h"
#include "vm/machine.h"
#include "vm/snapshot.h"
#include "vm/vm.h"

#define RAM (16ull << 20)

static char *const config[] = { "--kernel", "/k", "--memory", "16M", "--cpus", "2", "--rng" };

/* the machines stay reachable until exit (LeakSanitizer in tests/asan.sh) */
static struct vm *machines[12];
static int nmachines;

static struct vm *machine(uint64_t ram, int cpus, bool rng)
{
	struct vm *vm = calloc(1, sizeof(*vm));

	machines[nmachines++] = vm;
	int null_fd = open("/dev/null", O_WRONLY);
	struct platform_opts po = { .console_out_fd = null_fd };

	if (!vm || vm_create(vm, ram, cpus, &engine_emu, PERSONALITY_KVM, VM_IRQCHIP_USER, 0) < 0 || platform_init(vm, &po) < 0)
		return NULL;
	struct pci_bus *bus = pci_init(vm);
	if (!bus || (rng && !virtio_rng_create(vm, bus)))
		return NULL;
	snapshot_set_config(vm, sizeof(config) / sizeof(config[0]), config);
	return vm;
}

static uint8_t cmos_read(struct vm *vm, uint8_t reg)
{
	uint64_t v;

	pthread_mutex_lock(&vm->io_lock);
	bus_write(&vm->pio, 0x70, reg, 1);
	bus_read(&vm->pio, 0x71, 1, &v);
	pthread_mutex_unlock(&vm->io_lock);
	return (uint8_t)v;
}

static void cmos_write(struct vm *vm, uint8_t reg, uint8_t val)
{
	pthread_mutex_lock(&vm->io_lock);
	bus_write(&vm->pio, 0x70, reg, 1);
	bus_write(&vm->pio, 0x71, val, 1);
	pthread_mutex_unlock(&vm->io_lock);
}

static uint32_t cfg_read(struct vm *vm, int slot, unsigned off)
{
	uint64_t v;

	pthread_mutex_lock(&vm->io_lock);
	bus_write(&vm->pio, 0xcf8, 0x80000000u | slot << 11 | off, 4);
	bus_read(&vm->pio, 0xcfc, 4, &v);
	pthread_mutex_unlock(&vm->io_lock);
	return (uint32_t)v;
}

static void cfg_write(struct vm *vm, int slot, unsigned off, uint32_t val)
{
	pthread_mutex_lock(&vm->io_lock);
	bus_write(&vm->pio, 0xcf8, 0x80000000u | slot << 11 | off, 4);
	bus_write(&vm->pio, 0xcfc, val, 4);
	pthread_mutex_unlock(&vm->io_lock);
}

/* a long-mode vCPU state, as a snapshot would carry it */
static void vcpu_setup(struct vm *vm, int i)
{
	struct cpu_state s;

	vm->engine->get_state(vm->vcpu[i], &s);
	for (int r = 0; r < 16; r++)
		s.r[r] = 0x1111111111111111ull * (uint64_t)(r + 1) + (uint64_t)i;
	s.rip = 0xffffffff81000000ull + (uint64_t)i;
	s.rflags = 0x246;
	s.cr0 = 0x80050033;
	s.cr3 = 0x1000;
	s.cr4 = 0x6a0;
	s.efer = 0xd01;
	s.seg[1] = (struct cpu_seg){ 0, 0xffffffff, 0x10, 0x9b | 1u << 9 | 1u << 11 };
	for (int k = 0; k < 6; k++)
		if (k != 1)
			s.seg[k] = (struct cpu_seg){ 0, 0xffffffff, 0x18, 0x93 | 1u << 10 | 1u << 11 };
	s.seg[5].base = 0xffff888000000000ull + (uint64_t)i;
	s.gdtr = (struct cpu_dtr){ 0xfffffe0000001000ull, 0x7f };
	s.idtr = (struct cpu_dtr){ 0xfffffe0000000000ull, 0xfff };
	s.tr = (struct cpu_seg){ 0xfffffe0000003000ull, 0x4087, 0x40, 0x8b };
	s.lstar = 0xffffffff81a00000ull;
	s.star = 0x23001000000000ull;
	s.kernel_gs_base = 0x7f0000001000ull;
	s.sfmask = 0x47700;
	s.fxsave[24] = 0x80; /* MXCSR low byte */
	s.fxsave[25] = 0x1f;
	s.fxsave[160] = 0xab; /* xmm0 */
	s.halted = i == 1;
	s.nmi_blocked = 1;
	s.tsc_offset = 123456789ll * (i + 1);
	s.flags = CPU_STATE_FULL;
	vm->engine->set_state(vm->vcpu[i], &s);
}

static bool state_equal(struct vm *a, struct vm *b, int i)
{
	struct cpu_state x, y;

	a->engine->get_state(a->vcpu[i], &x);
	b->engine->get_state(b->vcpu[i], &y);
	return !memcmp(&x, &y, sizeof(x));
}

static size_t write_snapshot(struct vm *vm, uint8_t **out)
{
	int fd = memfd_create("snap", 0);
	char err[256] = "";

	if (fd < 0 || snapshot_write(vm, fd, err, sizeof(err)) < 0) {
		fprintf(stderr, "snapshot_write: %s\n", err);
		return 0;
	}
	off_t n = lseek(fd, 0, SEEK_END);
	*out = malloc((size_t)n);
	if (pread(fd, *out, (size_t)n, 0) != n)
		n = 0;
	close(fd);
	return (size_t)n;
}

static bool parses(const uint8_t *p, size_t n, char *err, size_t errlen)
{
	struct snap_file f;

	return snapshot_parse(&f, p, n, err, errlen) == 0;
}

/* the trailer made right again for contents changed on purpose */
static void reseal(uint8_t *p, size_t n)
{
	uint64_t size = n;
	memcpy(p + n - 16, &size, 8);
	uint32_t crc = (uint32_t)crc32(0, p, (uInt)(n - 8));
	memcpy(p + n - 8, &crc, 4);
}

/* offset of the first section of type t, or 0 */
static size_t find_section(const uint8_t *p, size_t n, uint32_t t)
{
	size_t off = SNAP_HEADER_SIZE;

	while (off + 16 <= n - SNAP_TRAILER_SIZE) {
		uint32_t type;
		uint64_t len;
		memcpy(&type, p + off, 4);
		memcpy(&len, p + off + 8, 8);
		if (type == t)
			return off;
		off += 16 + ((len + 7) & ~7ull);
	}
	return 0;
}

/* PUT PATH with BODY on the API socket SOCK: the reply's status, its
 * body in reply */
static int api_put(const char *sock, const char *path, const char *body, char *reply, size_t cap)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	char req[512], buf[4096];
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), status = -1;
	size_t got = 0;
	ssize_t r;

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock);
	int len = snprintf(req, sizeof(req),
			   "PUT %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s", path,
			   strlen(body), body);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || write(fd, req, (size_t)len) != len) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	while (got < sizeof(buf) - 1 && (r = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)r;
	close(fd);
	buf[got] = 0;
	char *sep = strstr(buf, "\r\n\r\n");
	if (sscanf(buf, "HTTP/1.1 %d", &status) != 1 || !sep)
		return -1;
	sep[strcspn(sep + 4, "\n") + 4] = 0;
	snprintf(reply, cap, "%s", sep + 4);
	return status;
}

/* a hyperv VM with a storvsc disk that was hot-removed: its state, not the
 * host, forbids the snapshot */
static void refused_snapshot(void)
{
	static struct vm vm;
	static struct machine m;
	static char *const cfg[] = { "--kernel", "/k", "--memory", "16M", "--personality", "hyperv" };
	char dir[] = "/tmp/accord-unit-snapshot-XXXXXX", img[64], sock[64], body[160], file[64], reply[1024],
	     err[320] = "";
	struct vmbus *vb = NULL;
	struct storvsc *disk = NULL;
	int fd = -1;

	bool made = mkdtemp(dir) != NULL;
	snprintf(img, sizeof(img), "%s/disk.img", dir);
	snprintf(sock, sizeof(sock), "%s/api.sock", dir);
	snprintf(file, sizeof(file), "%s/vm.snap", dir);
	snprintf(body, sizeof(body), "{\"path\": \"%s\"}", file);
	made = made && (fd = open(img, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) >= 0 && ftruncate(fd, 1 << 20) == 0 &&
	       vm_create(&vm, RAM, 1, &engine_emu, PERSONALITY_HYPERV, VM_IRQCHIP_USER, 0) == 0 && (vb = vmbus_create(&vm)) &&
	       (disk = storvsc_create(vb, img, false));
	if (fd >= 0)
		close(fd);
	ok(made, "a hyperv machine with a storvsc disk");
	if (!made)
		return;
	snapshot_set_config(&vm, sizeof(cfg) / sizeof(cfg[0]), cfg);
	storvsc_remove(disk);
	fd = memfd_create("refused", 0);
	int rc = snapshot_write(&vm, fd, err, sizeof(err));
	close(fd);
	ok(rc == SNAP_REFUSED && strstr(err, "hot-removed"), "the disk hot-removed: snapshot_write refuses (%d): %s",
	   rc, err);

	machine_config_init(&m.cfg);
	m.vm = &vm;
	vm_start_paused(&vm);
	int status = -1;
	if (api_start(&m, "refused", sock) == 0)
		status = api_put(sock, "/vm/snapshot", body, reply, sizeof(reply));
	ok(status == 409 && strstr(reply, "hot-removed"),
	   "PUT /vm/snapshot of that VM: 409 with the reason, not 500 like a failed write (%d %s)", status, reply);
	ok(access(file, F_OK) < 0 && access(strcat(file, ".tmp"), F_OK) < 0, "and no snapshot file is left");
	api_stop();
	unlink(img);
	rmdir(dir);
}

int main(void)
{
	struct vm *a = machine(RAM, 2, true);
	char err[320];

	if (!a) {
		printf("not ok 1 - a machine to snapshot\n0 passed, 1 failed\n");
		return 1;
	}
	/* a VM that has run for 5000 s: the restored clock must say so */
	vm_set_time(a, 5000000000000ull);
	/* guest memory: three pages written, one of them all zeros */
	memset(a->ram + 0x5000, 0x5a, 4096);
	memcpy(a->ram + 0x800000, "written before the snapshot", 27);
	a->ram[RAM - 1] = 0x77;
	memset(a->ram + 0x9000, 0, 4096);
	for (int i = 0; i < 2; i++)
		vcpu_setup(a, i);
	cmos_write(a, 0x40, 0xc3);
	lapic_mmio_write(a->vcpu[1]->lapic, 0x80, 0x50, 4); /* TPR */
	cfg_write(a, 1, PCI_COMMAND, PCI_CMD_MEM | PCI_CMD_MASTER);
	cfg_write(a, 1, PCI_BAR0, 0xc1000000);
	a->vcpu[1]->state = VCPU_RUNNING;

	uint8_t *snap = NULL;
	size_t n = write_snapshot(a, &snap);
	ok(n > 0, "snapshot_write: %zu bytes", n);
	ok(n < 64 * 1024, "only the pages written are in it (%zu bytes for 16 MiB of RAM)", n);

	struct snap_file f;
	int rc = snapshot_parse(&f, snap, n, err, sizeof(err));
	ok(rc == 0, "snapshot_parse accepts it%s%s", rc ? ": " : "", rc ? err : "");
	ok(f.ram_size == RAM && f.ncpus == 2 && f.engine == SNAP_ENGINE_EMU && f.personality == PERSONALITY_KVM,
	   "the header: 16 MiB, 2 vCPUs, emu, kvm personality");
	bool args = f.argc == (int)(sizeof(config) / sizeof(config[0]));
	for (int i = 0; args && i < f.argc; i++)
		args = !strcmp(f.argv[i], config[i]);
	ok(args, "the configuration comes back argument for argument");

	struct vm *b = machine(RAM, 2, true);
	rc = b ? snapshot_apply(&f, b, err, sizeof(err)) : -1;
	ok(rc == 0, "snapshot_apply loads it into a machine made the same way%s%s", rc ? ": " : "", rc ? err : "");
	ok(!memcmp(a->ram, b->ram, RAM), "guest memory is the same, byte for byte");
	ok(state_equal(a, b, 0) && state_equal(a, b, 1), "both vCPUs' state is the same (segments, tables, MSRs, "
							   "FXSAVE, halted, NMI blocking, the TSC's offset)");
	ok(b->vcpu[1]->state == VCPU_RUNNING, "the AP's run state comes back");
	ok(cmos_read(b, 0x40) == 0xc3, "a CMOS byte comes back");
	ok(lapic_mmio_read(b->vcpu[1]->lapic, 0x80, 4) == 0x50, "vCPU 1's LAPIC TPR comes back");
	ok(cfg_read(b, 1, PCI_BAR0) == cfg_read(a, 1, PCI_BAR0) && cfg_read(b, 1, PCI_BAR0) == 0xc1000000 &&
		   (cfg_read(b, 1, PCI_COMMAND) & 0xffff) == (PCI_CMD_MEM | PCI_CMD_MASTER),
	   "the virtio device's BAR and command register come back");
	int64_t dt = (int64_t)(vm_now_ns(b) - vm_now_ns(a));
	ok(dt > -1000000000ll && dt < 1000000000ll && vm_now_ns(b) > 4999000000000ull,
	   "the VM clock continues from the snapshot's time (5000 s)");

	/* damaged files */
	bool all = true;
	for (size_t len = 0; len < n; len += len < 4096 ? 1 : 4093)
		all &= !parses(snap, len, err, sizeof(err));
	ok(all, "every truncation is refused");
	all = true;
	srand(8);
	for (int i = 0; i < 2000; i++) {
		size_t at = (size_t)rand() % n;
		uint8_t bit = (uint8_t)(1u << (rand() % 8));
		snap[at] ^= bit;
		all &= !parses(snap, n, err, sizeof(err));
		snap[at] ^= bit;
	}
	ok(all, "2000 single flipped bits are refused");
	snap[n / 2] ^= 1;
	parses(snap, n, err, sizeof(err));
	ok(strstr(err, "checksum") != NULL, "a flipped bit is named a checksum mismatch: %s", err);
	snap[n / 2] ^= 1;
	snap[8] = SNAP_VERSION + 1;
	parses(snap, n, err, sizeof(err));
	char want[32];
	snprintf(want, sizeof(want), "version %d", SNAP_VERSION + 1);
	ok(strstr(err, want) != NULL, "another format version is named: %s", err);
	snap[8] = SNAP_VERSION;
	snap[0] = 'X';
	parses(snap, n, err, sizeof(err));
	ok(strstr(err, "not an accord snapshot") != NULL, "another magic is named: %s", err);
	snap[0] = 'A';
	ok(parses(snap, n, err, sizeof(err)), "the file is whole again");

	/* valid checksums, bad contents */
	uint8_t *c = malloc(n);
	size_t ram_off = find_section(snap, n, SNAP_RAM);
	memcpy(c, snap, n);
	uint64_t gpa = RAM;
	memcpy(c + ram_off + 16, &gpa, 8);
	reseal(c, n);
	ok(ram_off && !parses(c, n, err, sizeof(err)) && strstr(err, "outside"), "memory beyond RAM: %s", err);
	memcpy(c, snap, n);
	gpa = 0x1001;
	memcpy(c + ram_off + 16, &gpa, 8);
	reseal(c, n);
	ok(!parses(c, n, err, sizeof(err)), "memory at an address not page-aligned: %s", err);
	memcpy(c, snap, n);
	uint64_t huge = ~0ull - 8;
	memcpy(c + ram_off + 8, &huge, 8);
	reseal(c, n);
	ok(!parses(c, n, err, sizeof(err)), "a section longer than the file: %s", err);
	memcpy(c, snap, n);
	size_t cpu_off = find_section(snap, n, SNAP_CPU);
	uint32_t idx = 7;
	memcpy(c + cpu_off + 4, &idx, 4);
	reseal(c, n);
	ok(cpu_off && !parses(c, n, err, sizeof(err)), "a vCPU the header does not have: %s", err);
	memcpy(c, snap, n);
	uint32_t type = 99;
	memcpy(c + cpu_off, &type, 4);
	reseal(c, n);
	ok(!parses(c, n, err, sizeof(err)), "an unknown section type: %s", err);
	memcpy(c, snap, n);
	uint32_t cpus = 0;
	memcpy(c + 24, &cpus, 4);
	reseal(c, n);
	ok(!parses(c, n, err, sizeof(err)), "a machine of 0 vCPUs: %s", err);
	memcpy(c, snap, n);
	size_t dev_off = find_section(snap, n, SNAP_DEV);
	c[dev_off + 16] = 'X'; /* its name */
	reseal(c, n);
	struct snap_file g;
	struct vm *d = machine(RAM, 2, true);
	rc = snapshot_parse(&g, c, n, err, sizeof(err));
	rc = rc ? rc : snapshot_apply(&g, d, err, sizeof(err));
	ok(rc < 0 && strstr(err, "device"), "a device this machine does not have: %s", err);

	/* the run state in the header's flags */
	snapshot_parse(&f, snap, n, err, sizeof(err));
	ok(!f.paused, "a running VM's snapshot says running");
	uint8_t *ps = NULL;
	a->snap_paused = true;
	size_t pn = write_snapshot(a, &ps);
	a->snap_paused = false;
	ok(pn && snapshot_parse(&g, ps, pn, err, sizeof(err)) == 0 && g.paused && ps[36] == SNAP_F_PAUSED,
	   "a paused VM's snapshot says paused (SNAP_F_PAUSED)");
	if (pn) {
		ps[36] = 2;
		reseal(ps, pn);
		ok(!parses(ps, pn, err, sizeof(err)) && strstr(err, "bad header"), "an unknown flag: %s", err);
	}
	free(ps);

	/* the LAPIC timer's clock in the header (version 3): what the guest
	 * was told, and the machine made for it must count at it */
	uint64_t hz;
	memcpy(&hz, snap + 48, 8);
	snapshot_parse(&f, snap, n, err, sizeof(err));
	ok(hz == VM_CRYSTAL_HZ && f.crystal_hz == VM_CRYSTAL_HZ, "the header holds the VM's crystal, %llu Hz",
	   (unsigned long long)hz);
	memcpy(c, snap, n);
	hz = 0;
	memcpy(c + 48, &hz, 8);
	c[8] = 2;
	reseal(c, n);
	err[0] = 0;
	ok(snapshot_parse(&g, c, n, err, sizeof(err)) == 0 && g.crystal_hz == VM_CRYSTAL_HZ,
	   "a version 2 file (no crystal) is read as VM_CRYSTAL_HZ: %s", err);
	c[8] = SNAP_VERSION;
	hz = 24000000;
	memcpy(c + 48, &hz, 8);
	reseal(c, n);
	ok(!parses(c, n, err, sizeof(err)) && strstr(err, "bad machine"), "a crystal accord never tells: %s", err);
	hz = VM_CRYSTAL_KVM_HZ;
	memcpy(c + 48, &hz, 8);
	reseal(c, n);
	ok(!parses(c, n, err, sizeof(err)) && strstr(err, "bad machine"),
	   "KVM's 1 GHz crystal in an emu engine's snapshot: %s", err);
	uint32_t kvm_engine = SNAP_ENGINE_KVM;
	memcpy(c + 28, &kvm_engine, 4);
	reseal(c, n);
	err[0] = 0;
	ok(snapshot_parse(&g, c, n, err, sizeof(err)) == 0 && g.crystal_hz == VM_CRYSTAL_KVM_HZ,
	   "KVM's 1 GHz crystal in a kvm engine's snapshot is read: %s", err);
	struct vm *k1 = machine(RAM, 2, true);
	g.engine = SNAP_ENGINE_EMU; /* this machine's: only the crystal differs */
	ok(snapshot_apply(&g, k1, err, sizeof(err)) < 0 && strstr(err, "not this one"),
	   "a machine whose LAPIC timer counts at another rate refuses it: %s", err);
	static struct vm user1g;
	ok(vm_create(&user1g, RAM, 1, &engine_emu, PERSONALITY_KVM, VM_IRQCHIP_USER, VM_CRYSTAL_KVM_HZ) < 0,
	   "no machine with accord's LAPICs (--irqchip user) is made for a 1 GHz crystal");

	/* machines of another shape */
	struct vm *e = machine(RAM * 2, 2, true);
	snapshot_parse(&f, snap, n, err, sizeof(err));
	ok(snapshot_apply(&f, e, err, sizeof(err)) < 0 && strstr(err, "not this one"), "another RAM size: %s", err);
	struct vm *h = machine(RAM, 2, false);
	ok(snapshot_apply(&f, h, err, sizeof(err)) < 0, "a machine without the virtio-rng: %s", err);

	/* a hyperv machine: the partition, VMBus and the integration services
	 * are saved and loaded into a machine made the same way */
	static struct vm hv[2];
	static char *const hv_config[] = { "--kernel", "/k", "--memory", "16M", "--personality", "hyperv" };
	int fd = memfd_create("hv", 0);
	bool made = true;
	for (int i = 0; i < 2; i++) {
		struct vmbus *vb = NULL;
		made &= vm_create(&hv[i], RAM, 1, &engine_emu, PERSONALITY_HYPERV, VM_IRQCHIP_USER, 0) == 0 && (vb = vmbus_create(&hv[i])) &&
			hv_util_create(vb, &hv[i], 0);
	}
	ok(made, "two hyperv machines with VMBus and the integration services");
	if (made) {
		snapshot_set_config(&hv[0], sizeof(hv_config) / sizeof(hv_config[0]), hv_config);
		/* the guest's SynIC and a timer */
		hv_msr_write(hv[0].vcpu[0], 0x40000083, 0x10000 | 1);
		hv_msr_write(hv[0].vcpu[0], 0x40000090 + 2, 0x52);
		hv_msr_write(hv[0].vcpu[0], 0x400000b0, 1 | 2 | 2u << 16);
		hv_msr_write(hv[0].vcpu[0], 0x400000b1, 1000000000);
		rc = snapshot_write(&hv[0], fd, err, sizeof(err));
		off_t hn = lseek(fd, 0, SEEK_END);
		uint8_t *hs = hn > 0 ? malloc((size_t)hn) : NULL;
		struct snap_file hf;
		uint64_t simp = 0, sint = 0, stimer = 0;
		ok(rc == 0 && hs && pread(fd, hs, (size_t)hn, 0) == hn, "--personality hyperv: snapshot_write: %s",
		   rc ? err : "ok");
		rc = hs ? snapshot_parse(&hf, hs, (size_t)hn, err, sizeof(err)) : -1;
		ok(rc == 0 && hf.personality == PERSONALITY_HYPERV, "it parses, personality hyperv in the header");
		rc = rc ? rc : snapshot_apply(&hf, &hv[1], err, sizeof(err));
		hv_msr_read(hv[1].vcpu[0], 0x40000083, &simp);
		hv_msr_read(hv[1].vcpu[0], 0x40000090 + 2, &sint);
		hv_msr_read(hv[1].vcpu[0], 0x400000b1, &stimer);
		ok(rc == 0 && simp == (0x10000 | 1) && sint == 0x52 && stimer == 1000000000,
		   "and loads into the second: SIMP %#llx, SINT2 %#llx, STIMER0_COUNT %llu (%s)", (unsigned long long)simp,
		   (unsigned long long)sint, (unsigned long long)stimer, rc ? err : "ok");
		snapshot_parse(&hf, hs, (size_t)hn, err, sizeof(err));
		ok(snapshot_apply(&hf, machine(RAM, 1, false), err, sizeof(err)) < 0 && strstr(err, "not this one"),
		   "a kvm-personality machine refuses it: %s", err);
		free(hs);
	}
	refused_snapshot();
	free(c);
	free(snap);
	printf("1..%d\n%d passed, %d failed\n", n_test, n_pass, n_fail);
	return n_fail != 0;
}
