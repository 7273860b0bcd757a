/* The machine configuration, its checks, and building and running the VM
 * it describes (machine.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "boot/boot.h"
#include "dev/dev.h"
#include "dev/hyperv/vmbus.h"
#include "dev/pci.h"
#include "dev/virtio/virtio.h"
#include "disk/disk.h"
#include "engine/engine.h"
#include "vm/console.h"
#include "vm/gdbstub.h"
#include "vm/iothread.h"
#include "vm/machine.h"
#include "vm/snapshot.h"
#include "vm/vm.h"

/* ---- the configuration ---- */

void machine_config_init(struct machine_config *c)
{
	memset(c, 0, sizeof(*c));
	c->memory = 512ull << 20;
	c->cpus = 1;
	c->accel = "auto";
	c->personality = PERSONALITY_KVM;
	c->irqchip = "auto";
	c->sandbox = true;
}

void machine_config_free(struct machine_config *c)
{
	free(c->kernel);
	free(c->initrd);
	free(c->cmdline);
	free(c->gdb);
	for (int i = 0; i < c->ndisks; i++)
		free(c->disk[i].path);
	machine_config_init(c);
}

/* Guest RAM is a lazy mapping, so any size maps; but a guest that touches
 * more than the host's RAM can only end in the OOM killer, and one beyond
 * the address-space limit cannot be mapped at all. */
int machine_set_memory(struct machine_config *c, uint64_t mem, char *err, size_t n)
{
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	struct rlimit as;

	if (mem < MACHINE_MIN_MEMORY) {
		snprintf(err, n, "at least 16M is needed");
		return EXIT_USAGE;
	}
	if (mem & 0xfff) {
		snprintf(err, n, "must be a multiple of 4K");
		return EXIT_USAGE;
	}
	if (pages > 0 && page > 0 && mem > (uint64_t)pages * page) {
		snprintf(err, n, "more than this host's %llu MiB of RAM",
			 (unsigned long long)((uint64_t)pages * page >> 20));
		return EXIT_USAGE;
	}
	if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY && mem >= as.rlim_cur) {
		snprintf(err, n, "the address-space limit (ulimit -v) is %llu MiB",
			 (unsigned long long)(as.rlim_cur >> 20));
		return EXIT_USAGE;
	}
	c->memory = mem;
	return 0;
}

int machine_set_cpus(struct machine_config *c, long cpus, char *err, size_t n)
{
	if (cpus < 1 || cpus > VM_MAX_CPUS) {
		snprintf(err, n, "expected a number from 1 to %d", VM_MAX_CPUS);
		return EXIT_USAGE;
	}
	c->cpus = (int)cpus;
	return 0;
}

int machine_set_accel(struct machine_config *c, const char *accel, char *err, size_t n)
{
	static const char *const names[] = { "auto", "emu", "kvm" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!strcmp(accel, names[i])) {
			c->accel = names[i];
			return 0;
		}
	}
	snprintf(err, n, "expected auto, emu or kvm");
	return EXIT_USAGE;
}

int machine_set_personality(struct machine_config *c, const char *p, char *err, size_t n)
{
	if (!strcmp(p, "kvm")) {
		c->personality = PERSONALITY_KVM;
	} else if (!strcmp(p, "hyperv")) {
		c->personality = PERSONALITY_HYPERV;
	} else {
		snprintf(err, n, "expected kvm or hyperv");
		return EXIT_USAGE;
	}
	return 0;
}

int machine_set_console(struct machine_config *c, const char *kind, char *err, size_t n)
{
	if (strcmp(kind, "serial") && strcmp(kind, "virtio")) {
		snprintf(err, n, "expected serial or virtio");
		return EXIT_USAGE;
	}
	c->virtio_console = !strcmp(kind, "virtio");
	return 0;
}

/* a malloc'd copy of s, NULL for NULL; false when out of memory */
static bool dup_or_null(const char *s, char **out)
{
	*out = s ? strdup(s) : NULL;
	return !s || *out;
}

int machine_set_boot(struct machine_config *c, const char *kernel, const char *initrd, const char *cmdline,
		     char *err, size_t n)
{
	char *k, *i, *l;

	if (!dup_or_null(kernel, &k) || !dup_or_null(initrd, &i) || !dup_or_null(cmdline, &l)) {
		snprintf(err, n, "out of memory");
		return EXIT_VM_FAILED;
	}
	free(c->kernel);
	free(c->initrd);
	free(c->cmdline);
	c->kernel = k;
	c->initrd = i;
	c->cmdline = l;
	return 0;
}

bool machine_id_ok(const char *id)
{
	size_t n = strlen(id);
	bool ok = n >= 1 && n <= MACHINE_ID_MAX && id[0] != '.';

	for (size_t i = 0; ok && i < n; i++)
		ok = (id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
		     (id[i] >= '0' && id[i] <= '9') || strchr("._-", id[i]);
	return ok;
}

/* the index of id in a list of count entries of size bytes whose first
 * member is the id, or -1 */
static int find_id(const char *ids, size_t size, int count, const char *id)
{
	for (int i = 0; i < count; i++)
		if (!strcmp(ids + i * size, id))
			return i;
	return -1;
}

/* the slot for id in such a list: the existing one, or the next free one
 * (count grows), or -1 when the list is full; id NULL names one prefixN */
static int slot(char *ids, size_t size, int *count, int max, const char *prefix, const char **id,
		char *buf, size_t bufn)
{
	int i;

	if (!*id) {
		for (int k = *count;; k++) {
			snprintf(buf, bufn, "%s%d", prefix, k);
			if (find_id(ids, size, *count, buf) < 0)
				break;
		}
		*id = buf;
	}
	i = find_id(ids, size, *count, *id);
	if (i >= 0)
		return i;
	return *count < max ? (*count)++ : -1;
}

int machine_set_disk(struct machine_config *c, const char *id, const char *path, bool ro, char *err, size_t n)
{
	char auto_id[16];
	char *p;
	int i;

	if (id && !machine_id_ok(id)) {
		snprintf(err, n, "an id is 1 to %d of A-Z a-z 0-9 . _ - and does not start with a dot",
			 MACHINE_ID_MAX);
		return EXIT_USAGE;
	}
	p = strdup(path);
	if (!p) {
		snprintf(err, n, "out of memory");
		return EXIT_VM_FAILED;
	}
	i = slot(c->disk[0].id, sizeof(c->disk[0]), &c->ndisks, MACHINE_MAX_DISKS, "disk", &id, auto_id,
		 sizeof(auto_id));
	if (i < 0) {
		free(p);
		snprintf(err, n, "at most %d disks", MACHINE_MAX_DISKS);
		return EXIT_USAGE;
	}
	free(c->disk[i].path);
	snprintf(c->disk[i].id, sizeof(c->disk[i].id), "%s", id);
	c->disk[i].path = p;
	c->disk[i].ro = ro;
	return 0;
}

int machine_set_nic(struct machine_config *c, const char *id, const struct net_config *net, char *err, size_t n)
{
	char auto_id[16];
	int i;

	if (id && !machine_id_ok(id)) {
		snprintf(err, n, "an id is 1 to %d of A-Z a-z 0-9 . _ - and does not start with a dot",
			 MACHINE_ID_MAX);
		return EXIT_USAGE;
	}
	i = slot(c->nic[0].id, sizeof(c->nic[0]), &c->nnics, MACHINE_MAX_NICS, "net", &id, auto_id,
		 sizeof(auto_id));
	if (i < 0) {
		snprintf(err, n, "at most %d network devices", MACHINE_MAX_NICS);
		return EXIT_USAGE;
	}
	snprintf(c->nic[i].id, sizeof(c->nic[i].id), "%s", id);
	c->nic[i].net = *net;
	return 0;
}

int machine_remove_disk(struct machine_config *c, const char *id, char *err, size_t n)
{
	int i = find_id(c->disk[0].id, sizeof(c->disk[0]), c->ndisks, id);

	if (i < 0) {
		snprintf(err, n, "no drive '%.64s'", id);
		return EXIT_USAGE;
	}
	free(c->disk[i].path);
	/* the others keep their order: the guest sees them as added */
	memmove(&c->disk[i], &c->disk[i + 1], (size_t)(c->ndisks - i - 1) * sizeof(c->disk[0]));
	c->ndisks--;
	memset(&c->disk[c->ndisks], 0, sizeof(c->disk[0]));
	return 0;
}

int machine_remove_nic(struct machine_config *c, const char *id, char *err, size_t n)
{
	int i = find_id(c->nic[0].id, sizeof(c->nic[0]), c->nnics, id);

	if (i < 0) {
		snprintf(err, n, "no network interface '%.64s'", id);
		return EXIT_USAGE;
	}
	memmove(&c->nic[i], &c->nic[i + 1], (size_t)(c->nnics - i - 1) * sizeof(c->nic[0]));
	c->nnics--;
	memset(&c->nic[c->nnics], 0, sizeof(c->nic[0]));
	return 0;
}

int machine_set_irqchip(struct machine_config *c, const char *irqchip, char *err, size_t n)
{
	static const char *const names[] = { "auto", "split", "user" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!strcmp(irqchip, names[i])) {
			c->irqchip = names[i];
			return 0;
		}
	}
	snprintf(err, n, "expected split or user");
	return EXIT_USAGE;
}

/* ---- building ---- */

/* Where the LAPICs go, once the engine is chosen: split asked for must be
 * possible (else an exit status after a line saying why not: EXIT_USAGE
 * for the configuration, EXIT_NO_ACCEL for the host); auto is split where
 * it is. */
static int choose_irqchip(const struct machine_config *c, const struct engine_ops *engine, int *irqchip)
{
	int rc = EXIT_USAGE;
	bool asked = !strcmp(c->irqchip, "split"), verbose = getenv("ACCORD_VERBOSE") &&
							  strcmp(getenv("ACCORD_VERBOSE"), "0");
	char why[256] = "";

	*irqchip = VM_IRQCHIP_USER;
	if (!strcmp(c->irqchip, "user"))
		return 0;
	if (engine != &engine_kvm)
		snprintf(why, sizeof(why), "the %s engine has no in-kernel LAPIC (split needs --accel kvm)",
			 engine->name);
	else if (c->personality == PERSONALITY_HYPERV)
		snprintf(why, sizeof(why),
			 "--personality hyperv keeps the LAPICs in accord (the SynIC delivers into them)");
	else if (kvm_split_check(why, sizeof(why)) == 0)
		*irqchip = VM_IRQCHIP_SPLIT;
	else
		rc = EXIT_NO_ACCEL;
	if (asked && *irqchip != VM_IRQCHIP_SPLIT) {
		fprintf(stderr, "accord: --irqchip split: %s\n", why);
		return rc;
	}
	if (verbose && engine == &engine_kvm && *irqchip == VM_IRQCHIP_SPLIT)
		fprintf(stderr, "accord: kvm: irqchip split: the LAPICs are KVM's, the IOAPIC and PIC accord's\n");
	else if (verbose && engine == &engine_kvm)
		fprintf(stderr, "accord: kvm: irqchip user: the LAPICs, IOAPIC and PIC are accord's%s%s%s\n",
			why[0] ? " (" : "", why, why[0] ? ")" : "");
	return 0;
}

static const struct engine_ops *choose_engine(const char *accel)
{
	char why[256];

	if (!strcmp(accel, "emu"))
		return &engine_emu;
	if (!strcmp(accel, "kvm")) {
		if (kvm_check(why, sizeof(why)) < 0) {
			fprintf(stderr, "accord: --accel kvm: %s\n", why);
			return NULL;
		}
		return &engine_kvm;
	}
	int fast = kvm_probe(why, sizeof(why));
	if (fast == 0)
		fprintf(stderr, "accord: --accel auto: %s; using emu\n", why);
	else if (fast < 0)
		fprintf(stderr, "accord: --accel auto: no usable /dev/kvm (%s); using emu\n", why);
	return fast > 0 ? &engine_kvm : &engine_emu;
}

/* What the kernel, initrd, command line and disks can get wrong, found
 * without building anything: the loaders on scratch memory, the disks
 * opened and closed again. */
static int check_files(const struct machine_config *c)
{
	struct boot_config bc = { .kernel = c->kernel, .initrd = c->initrd, .cmdline = c->cmdline };

	if (boot_check(&bc, c->memory) < 0)
		return EXIT_BAD_IMAGE;
	for (int i = 0; i < c->ndisks; i++) {
		struct disk *d = disk_open(c->disk[i].path, c->disk[i].ro);
		if (!d)
			return EXIT_BAD_IMAGE;
		disk_close(d);
	}
	return 0;
}

/* the NICs' backends, which run on the I/O thread: made before the VM, as
 * they can fail for reasons the user fixes (a port in use, a TAP interface
 * that cannot be attached), and undone cleanly when they do */
static int make_backends(struct machine *m, struct net_backend **nb)
{
	const struct machine_config *c = &m->cfg;

	/* the I/O thread: the terminal's input, the NICs' backends and the
	 * virtio notifies */
	m->io = iothread_create();
	if (!m->io)
		return EXIT_VM_FAILED;
	for (int i = 0; i < c->nnics; i++) {
		nb[i] = net_backend_create(&c->nic[i].net, m->io);
		if (!nb[i]) {
			while (i-- > 0)
				net_backend_destroy(nb[i]);
			iothread_destroy(m->io);
			m->io = NULL;
			return EXIT_NET_FAILED;
		}
	}
	return 0;
}

/* The accord run arguments that make this machine again (a snapshot
 * keeps them): paths made absolute, the engine that was chosen. */
static int record_config(const struct machine_config *c, struct vm *vm)
{
	enum { MAX_ARGS = 2 * (12 + MACHINE_MAX_DISKS + MACHINE_MAX_NICS) };
	char *a[MAX_ARGS];
	int n = 0, rc = 0;
	char buf[64];

#define ARG(s) (a[n++] = strdup(s))
#define PATH_ARG(p) (a[n++] = realpath((p), NULL) ?: strdup(p))
	if (c->kernel) {
		ARG("--kernel");
		PATH_ARG(c->kernel);
	}
	if (c->initrd) {
		ARG("--initrd");
		PATH_ARG(c->initrd);
	}
	if (c->cmdline) {
		ARG("--cmdline");
		ARG(c->cmdline);
	}
	snprintf(buf, sizeof(buf), "%lluK", (unsigned long long)(c->memory >> 10));
	ARG("--memory");
	ARG(buf);
	snprintf(buf, sizeof(buf), "%d", c->cpus);
	ARG("--cpus");
	ARG(buf);
	ARG("--accel");
	ARG(vm->engine->name);
	ARG("--personality");
	ARG(c->personality == PERSONALITY_HYPERV ? "hyperv" : "kvm");
	ARG("--irqchip");
	ARG(vm->irqchip == VM_IRQCHIP_SPLIT ? "split" : "user");
	if (c->debug_exit)
		ARG("--debug-exit");
	for (int i = 0; i < c->ndisks; i++) {
		char *abs = realpath(c->disk[i].path, NULL);
		ARG("--disk");
		a[n++] = NULL;
		if (asprintf(&a[n - 1], "path=%s%s", abs ? abs : c->disk[i].path, c->disk[i].ro ? ",ro" : "") < 0)
			a[n - 1] = NULL;
		free(abs);
	}
	if (c->rng)
		ARG("--rng");
	if (c->virtio_console) {
		ARG("--console");
		ARG("virtio");
	}
	for (int i = 0; i < c->nnics; i++) {
		static const char *const offload[] = { "on", "csum", "off" };
		const struct net_config *nc = &c->nic[i].net;
		char spec[NET_MAX_HOSTFWD * 56 + 64];
		int len = nc->kind == NET_TAP ? snprintf(spec, sizeof(spec), "tap=%s", nc->ifname)
					      : snprintf(spec, sizeof(spec), "user");
		for (int f = 0; f < nc->nfwd; f++) {
			char fwd[48];
			net_format_hostfwd(&nc->fwd[f], fwd, sizeof(fwd));
			len += snprintf(spec + len, sizeof(spec) - (size_t)len, ",hostfwd=%s", fwd);
		}
		if (nc->has_mac)
			len += snprintf(spec + len, sizeof(spec) - (size_t)len, ",mac=%02x:%02x:%02x:%02x:%02x:%02x",
					nc->mac[0], nc->mac[1], nc->mac[2], nc->mac[3], nc->mac[4], nc->mac[5]);
		snprintf(spec + len, sizeof(spec) - (size_t)len, ",offload=%s", offload[nc->offload]);
		ARG("--net");
		ARG(spec);
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

int machine_build(struct machine *m, bool recoverable, bool *fatal)
{
	const struct machine_config *c = &m->cfg;
	struct net_backend *nb[MACHINE_MAX_NICS];
	struct boot_config bc = { .kernel = c->kernel, .initrd = c->initrd, .cmdline = c->cmdline };
	struct boot_state bs;
	int out_fd, rc;
	bool console = false;

	*fatal = false;
	m->engine = choose_engine(c->accel);
	if (!m->engine)
		return EXIT_NO_ACCEL;
	int irqchip;
	if ((rc = choose_irqchip(c, m->engine, &irqchip)))
		return rc;
	if (recoverable && (rc = check_files(c)))
		return rc;
	if ((rc = make_backends(m, nb)))
		return rc;

	/* from here on a failure cannot be undone */
	*fatal = true;
	rc = EXIT_VM_FAILED;
	struct vm *vm = calloc(1, sizeof(*vm));
	if (!vm) {
		fprintf(stderr, "accord: out of memory\n");
		return EXIT_VM_FAILED;
	}
	/* a restored guest's LAPIC timer goes on at the rate it was told */
	if (vm_create(vm, c->memory, c->cpus, m->engine, c->personality, irqchip,
		      m->restore ? m->restore->crystal_hz : 0) < 0)
		return EXIT_VM_FAILED;
	vm->debug_exit = c->debug_exit;
	/* virtio-blk and virtio-net serve the guest's notifies there too */
	vm->io = m->io;
	if (record_config(c, vm) < 0) {
		fprintf(stderr, "accord: out of memory\n");
		return EXIT_VM_FAILED;
	}
	if (console_start(vm, &out_fd) < 0)
		return EXIT_VM_FAILED;
	console = true;
	struct platform_opts po = { .console_out_fd = out_fd, .debug_exit = c->debug_exit };
	if (platform_init(vm, &po) < 0)
		goto fail;
	/* PCI and the virtio devices on it */
	struct pci_bus *pci = pci_init(vm);
	if (!pci)
		goto fail;
	/* Hyper-V guests find their disks on VMBus (storvsc), as on Hyper-V;
	 * KVM guests on virtio-blk */
	struct vmbus *vmbus = NULL;
	if (c->personality == PERSONALITY_HYPERV &&
	    (!(vmbus = vmbus_create(vm)) ||
	     !(m->hv_util = hv_util_create(vmbus, vm, HV_UTIL_THREAD | HV_UTIL_SIGTERM))))
		goto fail;
	for (int i = 0; i < c->ndisks; i++) {
		rc = EXIT_BAD_IMAGE;
		if (vmbus) {
			m->disk_storvsc[i] = storvsc_create(vmbus, c->disk[i].path, c->disk[i].ro);
			if (!m->disk_storvsc[i])
				goto fail;
			continue;
		}
		m->disk_dev[i] = virtio_blk_create(vm, pci, c->disk[i].path, c->disk[i].ro);
		if (!m->disk_dev[i])
			goto fail;
	}
	rc = EXIT_VM_FAILED;
	/* with --console virtio the terminal types into hvc0 only; the UART's
	 * output still reaches the terminal (early boot messages, panics) */
	struct virtio_console *vcon = NULL;
	if ((c->virtio_console && !(vcon = virtio_console_create(vm, pci, out_fd))) ||
	    (c->rng && !virtio_rng_create(vm, pci)) ||
	    (vcon ? virtio_console_attach_input(vcon, m->io, STDIN_FILENO) :
		    serial_attach_input(vm->serial, m->io, STDIN_FILENO)))
		goto fail;
	/* as for disks: a Hyper-V guest finds its NICs on VMBus (netvsc) */
	for (int i = 0; i < c->nnics; i++) {
		const struct net_config *nc = &c->nic[i].net;

		if (vmbus) {
			m->nic_netvsc[i] = netvsc_create(vmbus, vm, m->io, nb[i], nc->has_mac ? nc->mac : NULL);
			if (!m->nic_netvsc[i])
				goto fail;
			continue;
		}
		m->nic_dev[i] = virtio_net_create(vm, pci, m->io, nb[i], nc);
		if (!m->nic_dev[i])
			goto fail;
	}
	if (m->restore) {
		char err[320];
		if (snapshot_apply(m->restore, vm, err, sizeof(err)) < 0) {
			fprintf(stderr, "accord: restore: %s\n", err);
			rc = EXIT_BAD_SNAPSHOT;
			goto fail;
		}
		if (m->restore->paused)
			vm_start_paused(vm);
		snapshot_close(m->restore);
		m->restore = NULL;
	} else {
		if (boot_load(vm, &bc, &bs) < 0) {
			rc = EXIT_BAD_IMAGE;
			goto fail;
		}
		m->engine->set_boot_state(vm->vcpu[0], &bs);
	}
	if (c->gdb && gdbstub_start(vm, c->gdb) < 0)
		goto fail;
	m->vm = vm;
	return 0;
fail:
	if (console)
		console_stop();
	return rc;
}

int machine_run(struct machine *m)
{
	struct vm *vm = m->vm;

	if (m->io && iothread_start(m->io) < 0) {
		console_stop();
		return EXIT_VM_FAILED;
	}
	/* everything is open and loaded: from here on the VMM only runs */
	if (m->cfg.sandbox && sandbox_enter() < 0) {
		console_stop();
		return EXIT_SANDBOX;
	}
	int rc = vm_run(vm);
	iothread_stop(m->io);
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

/* ---- stderr for the control API ---- */

int machine_capture_begin(void)
{
	int mem = memfd_create("accord-stderr", MFD_CLOEXEC);
	/* with fd 2 closed there is no stderr to stand in for */
	int saved = mem <= 2 ? -1 : fcntl(2, F_DUPFD_CLOEXEC, 3);

	if (saved < 0 || dup2(mem, 2) < 0) {
		if (mem >= 0)
			close(mem);
		if (saved >= 0)
			close(saved);
		return -1;
	}
	close(mem);
	return saved;
}

void machine_capture_end(int saved, bool echo, char *err, size_t n)
{
	char buf[4096];
	ssize_t got;

	fflush(stderr);
	got = saved < 0 ? -1 : pread(2, buf, sizeof(buf) - 1, 0);
	if (saved >= 0) {
		dup2(saved, 2);
		close(saved);
	}
	if (got < 0)
		got = 0;
	buf[got] = 0;
	if (got && echo)
		fputs(buf, stderr);
	/* the reason is the last line printed: warnings (--accel auto
	 * falling back to emu) come before it */
	const char *line = NULL;
	for (const char *p = buf; *p; p += strcspn(p, "\n"), p += *p == '\n')
		if (!strncmp(p, "accord: ", 8))
			line = p + 8;
	if (!line)
		line = got ? buf : "failed, without saying why";
	snprintf(err, n, "%.*s", (int)strcspn(line, "\n"), line);
}
