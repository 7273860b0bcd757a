/* accord command line: parse, call, report. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "boot/boot.h"
#include "certify/certify.h"
#include "dev/dev.h"
#include "dev/pci.h"
#include "dev/hyperv/vmbus.h"
#include "dev/virtio/virtio.h"
#include "disk/disk.h"
#include "engine/engine.h"
#include "net/net.h"
#include "vm/console.h"
#include "vm/gdbstub.h"
#include "vm/iothread.h"
#include "vm/sandbox.h"
#include "vm/snapshot.h"
#include "vm/vm.h"

/* exit statuses (README "Exit status") */
enum {
	EXIT_OK = 0,
	EXIT_USAGE = 1,
	EXIT_GUEST_PANIC = 2,
	EXIT_BAD_IMAGE = 3,
	EXIT_NO_ACCEL = 4,
	EXIT_VM_FAILED = 5,
	/* 6 and 7 belong to accord ls/pause/... (src/api/api.h) */
	EXIT_NET_FAILED = 8,
	EXIT_SANDBOX = SANDBOX_EXIT_STATUS,
	EXIT_BAD_SNAPSHOT = 10,
};

/* accord restore: the snapshot cmd_run loads instead of a kernel */
static struct snap_file *restore_snap;

static void usage(FILE *f)
{
	fprintf(f,
		"usage: accord run --kernel FILE [options]\n"
		"       accord certify [--target T]... [--out DIR]   (accord certify --help)\n"
		"       accord ls                        the running VMs\n"
		"       accord pause|resume|stop|shutdown|reset NAME   through the VM's API\n"
		"       accord snapshot NAME FILE [--stop]   save the running VM to FILE\n"
		"       accord restore FILE [--name NAME] [--api-socket PATH] [--sandbox on|off]\n"
		"                        re-create the VM saved in FILE and run it on\n"
		"\n"
		"  --kernel FILE     bzImage, vmlinux / PVH ELF, or Multiboot kernel\n"
		"  --initrd FILE     initial ramdisk\n"
		"  --cmdline STR     kernel command line\n"
		"  --memory SIZE     guest RAM, e.g. 512M or 2G (default 512M)\n"
		"  --cpus N          virtual CPUs (default 1)\n"
		"  --accel ENGINE    auto, emu or kvm (default auto)\n"
		"  --personality P   kvm or hyperv: the paravirtual interface the guest\n"
		"                    finds at CPUID 0x40000000 (default kvm)\n"
		"  --debug-exit      port 0xf4 ends the VM with status (v << 1) | 1\n"
		"  --disk path=FILE[,ro]  a disk on a raw image (repeatable): virtio-blk,\n"
		"                    or a VMBus SCSI disk (storvsc) with --personality hyperv\n"
		"  --rng             a virtio-rng entropy device fed by the host's getrandom\n"
		"  --console serial|virtio  the terminal's device: the UART (ttyS0, default)\n"
		"                    or a virtio-console port (hvc0; the UART's output\n"
		"                    still shows)\n"
		"  --net user[,hostfwd=tcp::HOSTPORT-:GUESTPORT]...[,mac=MAC]\n"
		"                    a virtio-net NIC on user-mode networking (10.0.2.0/24,\n"
		"                    DHCP 10.0.2.15, host 10.0.2.2, DNS 10.0.2.3); hostfwd also\n"
		"                    takes udp: and tcp:ADDR:HOSTPORT-[GUESTADDR]:GUESTPORT\n"
		"  --net tap=NAME[,mac=MAC]  a virtio-net NIC on host TAP interface NAME\n"
		"                    (repeatable: one NIC per --net)\n"
		"  --gdb tcp::PORT   start stopped, wait for GDB on 127.0.0.1:PORT\n"
		"                    (tcp:HOST:PORT to choose the address; port 0: any)\n"
		"  --name NAME       the VM's name for accord ls and friends (default accord-PID)\n"
		"  --api-socket PATH the control API's socket (default NAME.sock in\n"
		"                    $XDG_RUNTIME_DIR/accord, /run/accord for root)\n"
		"  --sandbox on|off  seccomp filter on the running VMM (default on)\n"
		"\n"
		"The guest's console is on the terminal; Ctrl-a x quits.\n"
		"With --personality hyperv, SIGTERM asks the guest to shut down.\n");
}

/* sizes: a number with an optional K, M, G suffix; no suffix means MiB */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -1;
	uint64_t mul = 1ull << 20;
	if (*end) {
		switch (*end) {
		case 'k': case 'K': mul = 1ull << 10; break;
		case 'm': case 'M': mul = 1ull << 20; break;
		case 'g': case 'G': mul = 1ull << 30; break;
		default: return -1;
		}
		if (end[1] && !((end[1] == 'i' || end[1] == 'B') && (!end[2] || end[2] == 'B')))
			return -1;
	}
	if (v > (1ull << 40) / mul)
		return -1;
	*out = v * mul;
	return 0;
}

/* Guest RAM is a lazy mapping, so any size maps; but a guest that touches
 * more than the host's RAM can only end in the OOM killer, and one beyond
 * the address-space limit cannot be mapped at all. 0, or -1 after one line. */
static int check_memory(const char *arg, uint64_t mem)
{
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	struct rlimit as;

	if (pages > 0 && page > 0 && mem > (uint64_t)pages * page) {
		fprintf(stderr, "accord: --memory %s: more than this host's %llu MiB of RAM\n", arg,
			(unsigned long long)((uint64_t)pages * page >> 20));
		return -1;
	}
	if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY && mem >= as.rlim_cur) {
		fprintf(stderr, "accord: --memory %s: the address-space limit (ulimit -v) is %llu MiB\n",
			arg, (unsigned long long)(as.rlim_cur >> 20));
		return -1;
	}
	return 0;
}

/* The accord run arguments that make this machine again (a snapshot
 * keeps them): paths made absolute, the engine that was chosen. */
static int record_config(struct vm *vm, const struct boot_config *cfg, const char *mem_arg, int cpus,
			 int personality, bool debug_exit, int ndisks, char *const *disk_path, const bool *disk_ro,
			 bool rng, bool virtio_console, int nnics, const char *const *nic_spec)
{
	enum { MAX_ARGS = 64 };
	char *a[MAX_ARGS];
	int n = 0, rc = 0;
	char buf[64];

#define ARG(s) (a[n++] = strdup(s))
#define PATH_ARG(p) (a[n++] = realpath((p), NULL) ? : strdup(p))
	if (cfg->kernel) {
		ARG("--kernel");
		PATH_ARG(cfg->kernel);
	}
	if (cfg->initrd) {
		ARG("--initrd");
		PATH_ARG(cfg->initrd);
	}
	if (cfg->cmdline) {
		ARG("--cmdline");
		ARG(cfg->cmdline);
	}
	ARG("--memory");
	ARG(mem_arg);
	snprintf(buf, sizeof(buf), "%d", cpus);
	ARG("--cpus");
	ARG(buf);
	ARG("--accel");
	ARG(vm->engine->name);
	ARG("--personality");
	ARG(personality == PERSONALITY_HYPERV ? "hyperv" : "kvm");
	if (debug_exit)
		ARG("--debug-exit");
	for (int i = 0; i < ndisks; i++) {
		char *abs = realpath(disk_path[i], NULL);
		const char *p = abs ? abs : disk_path[i];
		size_t len = strlen(p) + sizeof("path=,ro");
		char *d = malloc(len);
		ARG("--disk");
		if (d)
			snprintf(d, len, "path=%s%s", p, disk_ro[i] ? ",ro" : "");
		a[n++] = d;
		free(abs);
	}
	if (rng)
		ARG("--rng");
	if (virtio_console) {
		ARG("--console");
		ARG("virtio");
	}
	for (int i = 0; i < nnics; i++) {
		ARG("--net");
		ARG(nic_spec[i]);
	}
#undef ARG
#undef PATH_ARG
	for (int i = 0; i < n; i++)
		if (!a[i])
			rc = -1;
	if (!rc)
		snapshot_set_config(vm, n, a);
	if (vm->snap_argc != n)
		rc = -1;
	for (int i = 0; i < n; i++)
		free(a[i]);
	return rc;
}

static int cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, 0, 'k' },
		{ "initrd", required_argument, 0, 'i' },
		{ "cmdline", required_argument, 0, 'c' },
		{ "memory", required_argument, 0, 'm' },
		{ "cpus", required_argument, 0, 'p' },
		{ "accel", required_argument, 0, 'a' },
		{ "debug-exit", no_argument, 0, 'd' },
		{ "gdb", required_argument, 0, 'g' },
		{ "disk", required_argument, 0, 'D' },
		{ "name", required_argument, 0, 'N' },
		{ "api-socket", required_argument, 0, 'A' },
		{ "net", required_argument, 0, 'n' },
		{ "personality", required_argument, 0, 'P' },
		{ "rng", no_argument, 0, 'r' },
		{ "console", required_argument, 0, 'C' },
		{ "sandbox", required_argument, 0, 'S' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct boot_config cfg = { 0 };
	uint64_t mem = 512ull << 20;
	const char *mem_arg = "512M";
	int cpus = 1;
	const char *accel = "auto";
	bool debug_exit = false;
	const char *gdb = NULL;
	int personality = PERSONALITY_KVM;
	bool sandbox = true;
	int ch;
	/* --disk */
	enum { MAX_DISKS = 16 };
	char *disk_path[MAX_DISKS];
	bool disk_ro[MAX_DISKS];
	struct virtio_blk *disk_dev[MAX_DISKS];
	int ndisks = 0;
	bool rng = false, virtio_console = false;
	/* the control API */
	char default_name[32];
	const char *name = NULL, *api_socket = NULL;
	/* --net (virtio-net) */
	enum { MAX_NICS = 4 };
	static struct net_config nic[MAX_NICS];
	const char *nic_spec[MAX_NICS];
	int nnics = 0;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'k': cfg.kernel = optarg; break;
		case 'i': cfg.initrd = optarg; break;
		case 'c': cfg.cmdline = optarg; break;
		case 'm':
			mem_arg = optarg;
			if (parse_size(optarg, &mem) < 0) {
				fprintf(stderr, "accord: --memory '%s': expected a size such as 512M or 2G\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'p': {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end || n < 1 || n > VM_MAX_CPUS) {
				fprintf(stderr, "accord: --cpus '%s': expected a number from 1 to %d\n", optarg,
					VM_MAX_CPUS);
				return EXIT_USAGE;
			}
			cpus = (int)n;
			break;
		}
		case 'a': accel = optarg; break;
		case 'd': debug_exit = true; break;
		case 'g':
			if (gdbstub_check_spec(optarg) < 0)
				return EXIT_USAGE;
			gdb = optarg;
			break;
		case 'D':
			if (ndisks == MAX_DISKS) {
				fprintf(stderr, "accord: --disk: at most %d disks\n", MAX_DISKS);
				return EXIT_USAGE;
			}
			if (disk_parse(optarg, &disk_path[ndisks], &disk_ro[ndisks]) < 0)
				return EXIT_USAGE;
			ndisks++;
			break;
		case 'N':
			if (api_name_check("--name", optarg) < 0)
				return EXIT_USAGE;
			name = optarg;
			break;
		case 'A': api_socket = optarg; break;
		case 'n':
			if (nnics == MAX_NICS) {
				fprintf(stderr, "accord: --net: at most %d network devices\n", MAX_NICS);
				return EXIT_USAGE;
			}
			if (net_parse(optarg, &nic[nnics]) < 0)
				return EXIT_USAGE;
			nic_spec[nnics++] = optarg;
			break;
		case 'P':
			if (!strcmp(optarg, "kvm")) {
				personality = PERSONALITY_KVM;
			} else if (!strcmp(optarg, "hyperv")) {
				personality = PERSONALITY_HYPERV;
			} else {
				fprintf(stderr, "accord: --personality '%s': expected kvm or hyperv\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'r': rng = true; break;
		case 'C':
			if (strcmp(optarg, "serial") && strcmp(optarg, "virtio")) {
				fprintf(stderr, "accord: --console '%s': expected serial or virtio\n", optarg);
				return EXIT_USAGE;
			}
			virtio_console = !strcmp(optarg, "virtio");
			break;
		case 'S':
			if (strcmp(optarg, "on") && strcmp(optarg, "off")) {
				fprintf(stderr, "accord: --sandbox '%s': expected on or off\n", optarg);
				return EXIT_USAGE;
			}
			sandbox = !strcmp(optarg, "on");
			break;
		case 'h': usage(stdout); return EXIT_OK;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "accord: unexpected argument '%s'\n", argv[optind]);
		return EXIT_USAGE;
	}
	if (!cfg.kernel && !restore_snap) {
		fprintf(stderr, "accord: run needs --kernel FILE\n");
		return EXIT_USAGE;
	}
	if (mem < (16ull << 20)) {
		fprintf(stderr, "accord: --memory: at least 16M is needed\n");
		return EXIT_USAGE;
	}
	if (mem & 0xfff) {
		fprintf(stderr, "accord: --memory: must be a multiple of 4K\n");
		return EXIT_USAGE;
	}
	if (check_memory(mem_arg, mem) < 0)
		return EXIT_USAGE;

	const struct engine_ops *engine;
	if (!strcmp(accel, "emu")) {
		engine = &engine_emu;
	} else if (!strcmp(accel, "auto")) {
		char why[256];
		int fast = kvm_probe(why, sizeof(why));
		engine = fast > 0 ? &engine_kvm : &engine_emu;
		if (fast == 0)
			fprintf(stderr, "accord: --accel auto: %s; using emu\n", why);
		else if (fast < 0)
			fprintf(stderr, "accord: --accel auto: no usable /dev/kvm (%s); using emu\n", why);
	} else if (!strcmp(accel, "kvm")) {
		char why[256];
		if (kvm_check(why, sizeof(why)) < 0) {
			fprintf(stderr, "accord: --accel kvm: %s\n", why);
			return EXIT_NO_ACCEL;
		}
		engine = &engine_kvm;
	} else {
		fprintf(stderr, "accord: --accel '%s': expected auto, emu or kvm\n", accel);
		return EXIT_USAGE;
	}

	struct vm *vm = calloc(1, sizeof(*vm));
	if (!vm) {
		fprintf(stderr, "accord: out of memory\n");
		return EXIT_VM_FAILED;
	}
	if (vm_create(vm, mem, cpus, engine, personality) < 0)
		return EXIT_VM_FAILED;
	vm->debug_exit = debug_exit;
	if (record_config(vm, &cfg, mem_arg, cpus, personality, debug_exit, ndisks, disk_path, disk_ro, rng,
			  virtio_console, nnics, nic_spec) < 0) {
		fprintf(stderr, "accord: out of memory\n");
		return EXIT_VM_FAILED;
	}
	int in_fd, out_fd;
	if (console_start(vm, &in_fd, &out_fd) < 0)
		return EXIT_VM_FAILED;
	/* with --console virtio the terminal types into hvc0 only; the UART's
	 * output still reaches the terminal (early boot messages, panics) */
	struct platform_opts po = { .console_in_fd = virtio_console ? -1 : in_fd,
				    .console_out_fd = out_fd,
				    .debug_exit = debug_exit };
	if (platform_init(vm, &po) < 0) {
		console_stop();
		return EXIT_VM_FAILED;
	}
	/* PCI and the virtio devices on it */
	struct pci_bus *pci = pci_init(vm);
	if (!pci) {
		console_stop();
		return EXIT_VM_FAILED;
	}
	/* Hyper-V guests find their disks on VMBus (storvsc), as on Hyper-V;
	 * KVM guests on virtio-blk */
	struct vmbus *vmbus = NULL;
	if (personality == PERSONALITY_HYPERV &&
	    (!(vmbus = vmbus_create(vm)) || !hv_util_create(vmbus, vm, true))) {
		console_stop();
		return EXIT_VM_FAILED;
	}
	for (int i = 0; i < ndisks; i++) {
		if (vmbus) {
			disk_dev[i] = NULL;
			if (!storvsc_create(vmbus, disk_path[i], disk_ro[i])) {
				console_stop();
				return EXIT_BAD_IMAGE;
			}
			continue;
		}
		disk_dev[i] = virtio_blk_create(vm, pci, disk_path[i], disk_ro[i]);
		if (!disk_dev[i]) {
			console_stop();
			return EXIT_BAD_IMAGE;
		}
	}
	if ((virtio_console && !virtio_console_create(vm, pci, in_fd, out_fd)) ||
	    (rng && !virtio_rng_create(vm, pci))) {
		console_stop();
		return EXIT_VM_FAILED;
	}
	/* the NICs' backends run on the I/O thread */
	struct iothread *io = NULL;
	if (nnics) {
		io = iothread_create();
		if (!io) {
			console_stop();
			return EXIT_VM_FAILED;
		}
	}
	for (int i = 0; i < nnics; i++) {
		struct net_backend *nb = net_backend_create(&nic[i], io);
		if (!nb) {
			console_stop();
			return EXIT_NET_FAILED;
		}
		if (!virtio_net_create(vm, pci, io, nb, nic[i].has_mac ? nic[i].mac : NULL)) {
			console_stop();
			return EXIT_VM_FAILED;
		}
	}
	if (restore_snap) {
		char err[320];
		if (snapshot_apply(restore_snap, vm, err, sizeof(err)) < 0) {
			fprintf(stderr, "accord: restore: %s\n", err);
			console_stop();
			return EXIT_BAD_SNAPSHOT;
		}
		snapshot_close(restore_snap);
	} else {
		struct boot_state bs;
		if (boot_load(vm, &cfg, &bs) < 0) {
			console_stop();
			return EXIT_BAD_IMAGE;
		}
		engine->set_boot_state(vm->vcpu[0], &bs);
	}
	if (gdb && gdbstub_start(vm, gdb) < 0) {
		console_stop();
		return EXIT_VM_FAILED;
	}
	if (!name) {
		snprintf(default_name, sizeof(default_name), "accord-%d", (int)getpid());
		name = default_name;
	}
	struct api_vm_config api_cfg = {
		.name = name, .kernel = cfg.kernel, .initrd = cfg.initrd, .cmdline = cfg.cmdline,
		.accel = accel, .personality = personality == PERSONALITY_HYPERV ? "hyperv" : "kvm", .memory = mem, .cpus = cpus, .debug_exit = debug_exit, .gdb = gdb,
		.ndisks = ndisks, .disk_path = disk_path, .disk_ro = disk_ro, .disk_dev = disk_dev,
	};
	if (api_start(vm, api_socket, &api_cfg) < 0) {
		console_stop();
		return EXIT_USAGE;
	}
	if (io && iothread_start(io) < 0) {
		console_stop();
		return EXIT_VM_FAILED;
	}
	/* everything is open and loaded: from here on the VMM only runs */
	if (sandbox && sandbox_enter() < 0) {
		console_stop();
		return EXIT_SANDBOX;
	}
	int rc = vm_run(vm);
	iothread_stop(io);
	api_stop();
	gdbstub_finish(vm, rc);
	console_stop();
	/* A kernel booted with panic=N resets right after its panic message,
	 * and the reset can end the VM before the console thread read that
	 * message; the drained console decides. */
	int reason = vm->exit_reason;
	const char *panic = console_panic();
	if (panic && (reason == VM_RESET || reason == VM_PANIC)) {
		reason = VM_PANIC;
		snprintf(vm->exit_msg, sizeof(vm->exit_msg), "%s", panic);
	}
	switch (reason) {
	case VM_POWEROFF:
	case VM_DEBUG_EXIT:
	case VM_STOPPED:
		break;
	case VM_RESET:
		fprintf(stderr, "accord: %s; accord does not reboot guests, so it exits\n",
			strcmp(vm->exit_msg, "guest reset") ? vm->exit_msg : "the guest asked for a reset");
		break;
	case VM_PANIC:
		fprintf(stderr, "accord: %s\n", vm->exit_msg);
		console_print_tail(20);
		rc = EXIT_GUEST_PANIC;
		break;
	default:
		fprintf(stderr, "accord: the VM failed: %s\n", vm->exit_msg);
		console_print_tail(20);
		rc = EXIT_VM_FAILED;
		break;
	}
	return rc;
}

/* accord restore FILE: accord run with the snapshot's arguments, loading
 * the snapshot where run would load the kernel */
static int cmd_restore(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, 0, 'N' },
		{ "api-socket", required_argument, 0, 'A' },
		{ "sandbox", required_argument, 0, 'S' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	const char *extra[6];
	int nextra = 0, ch;
	static struct snap_file snap;
	char err[320];

	optind = 1;
	opterr = 0; /* the one line below says it */
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'N': extra[nextra++] = "--name"; extra[nextra++] = optarg; break;
		case 'A': extra[nextra++] = "--api-socket"; extra[nextra++] = optarg; break;
		case 'S': extra[nextra++] = "--sandbox"; extra[nextra++] = optarg; break;
		case 'h': usage(stdout); return EXIT_OK;
		default: ch = -2; break;
		}
		if (ch == -2 || nextra > 6 - 2)
			break;
	}
	if (ch != -1 || optind != argc - 1) {
		fprintf(stderr, "accord: usage: accord restore FILE [--name NAME] [--api-socket PATH] [--sandbox on|off]\n");
		return EXIT_USAGE;
	}
	if (snapshot_open(&snap, argv[optind], err, sizeof(err)) < 0) {
		fprintf(stderr, "accord: restore: %s\n", err);
		return EXIT_BAD_SNAPSHOT;
	}
	char **run_argv = calloc((size_t)snap.argc + nextra + 2, sizeof(char *));
	if (!run_argv) {
		fprintf(stderr, "accord: out of memory\n");
		return EXIT_VM_FAILED;
	}
	int n = 0;
	run_argv[n++] = "run";
	for (int i = 0; i < snap.argc; i++)
		if (!(run_argv[n++] = strdup(snap.argv[i]))) {
			fprintf(stderr, "accord: out of memory\n");
			return EXIT_VM_FAILED;
		}
	for (int i = 0; i < nextra; i++)
		run_argv[n++] = (char *)extra[i];
	restore_snap = &snap;
	opterr = 1;
	return cmd_run(n, run_argv);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "restore"))
		return cmd_restore(argc - 1, argv + 1);
	/* the validation suite's runner (src/certify/) */
	if (!strcmp(argv[1], "certify"))
		return certify_main(argc - 1, argv + 1);
	/* clients of running VMs' control APIs (src/api/) */
	if (api_is_client_command(argv[1]))
		return api_client_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return EXIT_OK;
	}
	fprintf(stderr, "accord: unknown command '%s' (see accord --help)\n", argv[1]);
	return EXIT_USAGE;
}
