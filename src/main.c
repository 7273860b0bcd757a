/* accord command line: parse, call, report. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "certify/certify.h"
#include "disk/disk.h"
#include "net/net.h"
#include "vm/console.h"
#include "vm/gdbstub.h"
#include "vm/machine.h"
#include "vm/snapshot.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: accord run --kernel FILE [options]\n"
		"       accord run --name NAME|--api-socket PATH [options]   without --kernel:\n"
		"                    configured through the control API, then started by it\n"
		"       accord certify [--target T]... [--out DIR]   (accord certify --help)\n"
		"       accord ls                        the running VMs\n"
		"       accord start|pause|resume|stop|shutdown|reset NAME   through the VM's API\n"
		"       accord kvp NAME                  what a Hyper-V guest reports through KVP\n"
		"       accord snapshot NAME FILE [--stop]   save the running VM to FILE\n"
		"       accord restore FILE [--name NAME] [--api-socket PATH] [--sandbox on|off]\n"
		"                      [--state saved|running|paused]\n"
		"                        re-create the VM saved in FILE and run it on; a VM\n"
		"                        saved while paused comes back paused (--state saved)\n"
		"                        until accord resume NAME, unless --state says otherwise\n"
		"\n"
		"  --kernel FILE     bzImage, vmlinux / PVH ELF, or Multiboot kernel\n"
		"  --initrd FILE     initial ramdisk\n"
		"  --cmdline STR     kernel command line\n"
		"  --memory SIZE     guest RAM, e.g. 512M or 2G (default 512M)\n"
		"  --cpus N          virtual CPUs (default 1)\n"
		"  --accel ENGINE    auto, emu or kvm (default auto)\n"
		"  --personality P   kvm or hyperv: the paravirtual interface the guest\n"
		"                    finds at CPUID 0x40000000 (default kvm)\n"
		"  --irqchip split|user  kvm engine: the LAPICs in KVM, the IOAPIC and PIC\n"
		"                    in accord (split), or all of them in accord (user);\n"
		"                    default split where the host's KVM has it and the\n"
		"                    personality is kvm\n"
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
		"                    (repeatable: one NIC per --net); ,offload=csum offers the\n"
		"                    guest checksum offload without TSO, ,offload=off neither;\n"
		"                    with --personality hyperv each NIC is a VMBus synthetic\n"
		"                    NIC (netvsc), which offers no offload\n"
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

/* Without --kernel but with --name or --api-socket, the VM is configured
 * through the control API (what the command line gave is the starting
 * point) and built when it asks: PUT /vm/actions {"action": "start"}. */
static int run_from_api(struct machine *m, const char *name, const char *api_socket)
{
	int status;

	if (api_start(m, name, api_socket) < 0)
		return EXIT_USAGE;
	if (!api_wait_start(&status)) {
		api_stop();
		return status;
	}
	status = machine_run(m);
	api_stop();
	return status;
}

/* accord restore: the snapshot cmd_run loads instead of a kernel */
static struct snap_file *restore_snap;

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
		{ "irqchip", required_argument, 0, 'I' },
		{ "rng", no_argument, 0, 'r' },
		{ "console", required_argument, 0, 'C' },
		{ "sandbox", required_argument, 0, 'S' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	static struct machine m;
	struct machine_config *c = &m.cfg;
	const char *kernel = NULL, *initrd = NULL, *cmdline = NULL;
	char default_name[32], err[256];
	const char *name = NULL, *api_socket = NULL;
	int ch, rc = 0;

	machine_config_init(c);
	m.restore = restore_snap;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'k': kernel = optarg; break;
		case 'i': initrd = optarg; break;
		case 'c': cmdline = optarg; break;
		case 'm': {
			uint64_t mem;
			if (parse_size(optarg, &mem) < 0) {
				fprintf(stderr, "accord: --memory '%s': expected a size such as 512M or 2G\n", optarg);
				return EXIT_USAGE;
			}
			if ((rc = machine_set_memory(c, mem, err, sizeof(err))))
				fprintf(stderr, "accord: --memory %s: %s\n", optarg, err);
			break;
		}
		case 'p': {
			char *end;
			long n = strtol(optarg, &end, 10);
			if ((rc = machine_set_cpus(c, *end ? 0 : n, err, sizeof(err))))
				fprintf(stderr, "accord: --cpus '%s': %s\n", optarg, err);
			break;
		}
		case 'a':
			if ((rc = machine_set_accel(c, optarg, err, sizeof(err))))
				fprintf(stderr, "accord: --accel '%s': %s\n", optarg, err);
			break;
		case 'd': c->debug_exit = true; break;
		case 'g':
			if (gdbstub_check_spec(optarg) < 0)
				return EXIT_USAGE;
			free(c->gdb);
			c->gdb = strdup(optarg);
			break;
		case 'D': {
			char *path;
			bool ro;
			if (disk_parse(optarg, &path, &ro) < 0)
				return EXIT_USAGE;
			if ((rc = machine_set_disk(c, NULL, path, ro, err, sizeof(err))))
				fprintf(stderr, "accord: --disk: %s\n", err);
			free(path);
			break;
		}
		case 'N':
			if (api_name_check("--name", optarg) < 0)
				return EXIT_USAGE;
			name = optarg;
			break;
		case 'A': api_socket = optarg; break;
		case 'n': {
			struct net_config nc;
			if (net_parse(optarg, &nc) < 0)
				return EXIT_USAGE;
			if ((rc = machine_set_nic(c, NULL, &nc, err, sizeof(err))))
				fprintf(stderr, "accord: --net: %s\n", err);
			break;
		}
		case 'P':
			if ((rc = machine_set_personality(c, optarg, err, sizeof(err))))
				fprintf(stderr, "accord: --personality '%s': %s\n", optarg, err);
			break;
		case 'I':
			if ((rc = machine_set_irqchip(c, optarg, err, sizeof(err))))
				fprintf(stderr, "accord: --irqchip '%s': %s\n", optarg, err);
			break;
		case 'r': c->rng = true; break;
		case 'C':
			if ((rc = machine_set_console(c, optarg, err, sizeof(err))))
				fprintf(stderr, "accord: --console '%s': %s\n", optarg, err);
			break;
		case 'S':
			if (strcmp(optarg, "on") && strcmp(optarg, "off")) {
				fprintf(stderr, "accord: --sandbox '%s': expected on or off\n", optarg);
				return EXIT_USAGE;
			}
			c->sandbox = !strcmp(optarg, "on");
			break;
		case 'h': usage(stdout); return EXIT_OK;
		default: usage(stderr); return EXIT_USAGE;
		}
		if (rc)
			return rc;
	}
	if (optind < argc) {
		fprintf(stderr, "accord: unexpected argument '%s'\n", argv[optind]);
		return EXIT_USAGE;
	}
	if (!name) {
		snprintf(default_name, sizeof(default_name), "accord-%d", (int)getpid());
		name = default_name;
	}
	if (!kernel) {
		if (name == default_name && !api_socket) {
			fprintf(stderr, "accord: run needs --kernel FILE (or --name/--api-socket to configure it through the API)\n");
			return EXIT_USAGE;
		}
		if (initrd || cmdline) {
			fprintf(stderr, "accord: --initrd and --cmdline need --kernel\n");
			return EXIT_USAGE;
		}
		return run_from_api(&m, name, api_socket);
	}
	if ((rc = machine_set_boot(c, kernel, initrd, cmdline, err, sizeof(err)))) {
		fprintf(stderr, "accord: %s\n", err);
		return rc;
	}
	bool fatal;
	if ((rc = machine_build(&m, false, &fatal)))
		return rc;
	if (api_start(&m, name, api_socket) < 0) {
		console_stop();
		return EXIT_USAGE;
	}
	rc = machine_run(&m);
	api_stop();
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
		{ "state", required_argument, 0, 's' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	const char *extra[6], *state = "saved";
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
		case 's': state = optarg; break;
		case 'h': usage(stdout); return EXIT_OK;
		default: ch = -2; break;
		}
		if (ch == -2 || nextra > 6 - 2)
			break;
	}
	if (ch != -1 || optind != argc - 1) {
		fprintf(stderr, "accord: usage: accord restore FILE [--name NAME] [--api-socket PATH] [--sandbox on|off] "
				"[--state saved|running|paused]\n");
		return EXIT_USAGE;
	}
	if (strcmp(state, "saved") && strcmp(state, "running") && strcmp(state, "paused")) {
		fprintf(stderr, "accord: --state '%s': expected saved, running or paused\n", state);
		return EXIT_USAGE;
	}
	if (snapshot_open(&snap, argv[optind], err, sizeof(err)) < 0) {
		fprintf(stderr, "accord: restore: %s\n", err);
		return EXIT_BAD_SNAPSHOT;
	}
	/* the run state the VM comes back in: the snapshot's, or the one asked for */
	if (strcmp(state, "saved"))
		snap.paused = !strcmp(state, "paused");
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
