/* The OS-level checks: the stock Debian kernel of the default guest image
 * (tools/mkguest) boots on each target with a known machine (OS_CPUS vCPUs,
 * OS_MEMORY_MIB of RAM, a virtio-blk disk of OS_DISK_MIB) and reports what it
 * sees through the accord.autotest hook: certify appends a small cpio archive
 * to the image's initramfs whose /autotest.sh replaces the image's own (the
 * kernel unpacks concatenated archives in order, later files win). The
 * script prints "accord-os: KEY VALUE" lines and powers off; each check is
 * one row of the report, under the pseudo-kernel "os.linux". */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "certify/internal.h"

#define OS_CPUS 2
#define OS_MEMORY_MIB 512
#define OS_DISK_MIB 16
/* MemTotal is RAM less what the kernel keeps for itself (its image, the
 * struct page array, firmware and ACPI ranges): tens of MiB for the cloud
 * kernel at this size; far more means the guest lost RAM, more than RAM
 * that it invented some */
#define OS_MEMORY_SLACK_MIB 96
#define OS_CMDLINE "console=ttyS0 panic=-1 quiet accord.autotest"

static const char probe[] =
	"#!/bin/sh\n"
	"# accord certify's OS-level probe; it replaces the image's /autotest.sh\n"
	"r() { echo \"accord-os: $1 $2\"; }\n"
	"r kernel \"$(uname -r)\"\n"
	"r nproc \"$(nproc)\"\n"
	"r cpuinfo \"$(grep -c ^processor /proc/cpuinfo)\"\n"
	"r memtotal_kb \"$(sed -n 's/^MemTotal: *\\([0-9]*\\) kB$/\\1/p' /proc/meminfo)\"\n"
	"cs=/sys/devices/system/clocksource/clocksource0\n"
	"r clocksource \"$(cat $cs/current_clocksource)\"\n"
	"r clocksources \"$(cat $cs/available_clocksource)\"\n"
	"i=0\n"
	"while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done\n"
	"if [ -b /dev/vda ]; then r vda_sectors \"$(cat /sys/block/vda/size)\"; else r vda_sectors none; fi\n"
	"r modules_asked \"$(sed 's/\\.ko$//' /lib/modules/load.list 2>/dev/null | tr '\\n' ' ')\"\n"
	"r modules_loaded \"$(cut -d' ' -f1 /proc/modules | tr '\\n' ' ')\"\n"
	"r done ok\n"
	"poweroff -f\n";

/* the rows, in report order */
static const char *const os_rows[] = {
	"boot.kernel_release", "cpus.nproc", "cpus.cpuinfo", "memory.memtotal", "clocksource.current",
	"clocksource.available", "disk.vda_present", "disk.vda_size", "modules.loaded",
};
#define NROWS (int)(sizeof(os_rows) / sizeof(os_rows[0]))

static bool is_file(const char *path)
{
	struct stat st;
	return !stat(path, &st) && S_ISREG(st.st_mode);
}

/* one newc entry (the format of the kernel's initramfs, and of cpio -H newc) */
static void newc(FILE *f, const char *name, unsigned mode, const void *data, size_t size, unsigned ino)
{
	size_t namesize = strlen(name) + 1;
	fprintf(f, "070701%08X%08X%08X%08X%08X%08X%08zX%08X%08X%08X%08X%08zX%08X", ino, mode, 0, 0, 1, 0, size,
		0, 0, 0, 0, namesize, 0);
	fwrite(name, 1, namesize, f);
	for (size_t pad = (4 - (110 + namesize) % 4) % 4; pad; pad--)
		fputc(0, f);
	fwrite(data, 1, size, f);
	for (size_t pad = (4 - size % 4) % 4; pad; pad--)
		fputc(0, f);
}

/* <out>/os-initrd.img: the image's initramfs, zeros to a 4-byte boundary
 * (an uncompressed archive must start on one), then the probe */
static int make_initrd(struct certify *c, const char *initrd, char *why, size_t n)
{
	char *path = xasprintf("%s/os-initrd.img", c->out_dir);
	FILE *in = fopen(initrd, "rb"), *out = in ? fopen(path, "wb") : NULL;
	char buf[65536];
	size_t got, total = 0;
	int rc = 0;

	if (!in || !out) {
		snprintf(why, n, "%s: %s", in ? path : initrd, strerror(errno));
		rc = -1;
		goto done;
	}
	while ((got = fread(buf, 1, sizeof(buf), in)) > 0) {
		fwrite(buf, 1, got, out);
		total += got;
	}
	for (; total % 512; total++)
		fputc(0, out);
	newc(out, "autotest.sh", 0100755, probe, sizeof(probe) - 1, 1);
	newc(out, "TRAILER!!!", 0, NULL, 0, 0);
	if (ferror(in) || ferror(out)) {
		snprintf(why, n, "%s: write error", path);
		rc = -1;
	}
done:
	if (in)
		fclose(in);
	if (out && fclose(out) && !rc) {
		snprintf(why, n, "%s: %s", path, strerror(errno));
		rc = -1;
	}
	if (!rc)
		c->os_initrd = path;
	else
		free(path);
	return rc;
}

int os_add_kernel(struct certify *c)
{
	char *vmlinuz = xasprintf("%s/vmlinuz", c->os_image);
	char *initrd = xasprintf("%s/initrd.cpio.gz", c->os_image);
	char why[512] = "";

	c->kernels = realloc(c->kernels, (c->nkernels + 1) * sizeof(*c->kernels));
	if (!c->kernels)
		abort();
	struct kernel *k = &c->kernels[c->nkernels++];
	memset(k, 0, sizeof(*k));
	k->path = vmlinuz;
	k->shown = sanitize(c->os_image, strlen(c->os_image));
	k->label = xstrdup("os.linux");
	k->family = xstrdup("os");
	k->options = xasprintf("cpus=%d memory=%dM disk=%dM", OS_CPUS, OS_MEMORY_MIB, OS_DISK_MIB);
	k->protocol = "linux";
	k->os = true;
	if (!is_file(vmlinuz) || !is_file(initrd))
		snprintf(why, sizeof(why), "no guest image (vmlinuz, initrd.cpio.gz) in %s: make certify-image",
			 c->os_image);
	else
		make_initrd(c, initrd, why, sizeof(why));
	if (*why)
		k->missing = sanitize(why, strlen(why));
	free(initrd);

	/* the release the image was built from, when mkguest recorded it */
	char *rel = xasprintf("%s/kernel.release", c->os_image);
	FILE *f = fopen(rel, "r");
	char line[256];
	if (f && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = 0;
		c->os_release = sanitize(line, strlen(line));
	}
	if (f)
		fclose(f);
	free(rel);
	return c->nkernels - 1;
}

void os_add_rows(struct certify *c, int ki)
{
	for (int i = 0; i < NROWS; i++)
		row_get(c, ki, os_rows[i]);
}

/* the value of "accord-os: KEY VALUE" in the output, sanitized; NULL if absent */
static char *value(const char *out, const char *key)
{
	char *pat = xasprintf("accord-os: %s ", key);
	const char *p = strstr(out, pat);
	char *v = NULL;
	if (p) {
		p += strlen(pat);
		size_t n = strcspn(p, "\r\n");
		while (n && p[n - 1] == ' ')
			n--;
		v = sanitize(p, n);
	}
	free(pat);
	return v;
}

static bool word_in(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = list; p && (p = strstr(p, word)); p += n)
		if ((p == list || p[-1] == ' ') && (p[n] == ' ' || !p[n]))
			return true;
	return false;
}

static void set(struct certify *c, int ki, int ti, const char *row, bool ok, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
static void set(struct certify *c, int ki, int ti, const char *row, bool ok, const char *fmt, ...)
{
	va_list ap;
	char *d;
	va_start(ap, fmt);
	if (vasprintf(&d, fmt, ap) < 0)
		abort();
	va_end(ap);
	cell_set(&row_get(c, ki, row)->cells[ti], ok ? V_PASS : V_FAIL, d);
	struct run_info *ri = &c->runs[ki * c->ntargets + ti];
	if (ok)
		ri->passed++;
	else
		ri->failed++;
	free(d);
}

/* what the guest said, against the machine it was given */
static void judge(struct certify *c, int ki, int ti, const char *out)
{
	char *v;
	long n;

	if ((v = value(out, "kernel")))
		set(c, ki, ti, "boot.kernel_release", !c->os_release || !strcmp(v, c->os_release),
		    "uname -r: %s; the image's kernel.release: %s", v, c->os_release ? c->os_release : "(none)");
	free(v);

	if ((v = value(out, "nproc"))) {
		n = strtol(v, NULL, 10);
		set(c, ki, ti, "cpus.nproc", n == OS_CPUS, "nproc: %s, %d vCPUs configured", v, OS_CPUS);
	}
	free(v);
	if ((v = value(out, "cpuinfo"))) {
		n = strtol(v, NULL, 10);
		set(c, ki, ti, "cpus.cpuinfo", n == OS_CPUS, "/proc/cpuinfo: %s processors, %d vCPUs configured", v,
		    OS_CPUS);
	}
	free(v);

	if ((v = value(out, "memtotal_kb"))) {
		long kb = strtol(v, NULL, 10), ram = OS_MEMORY_MIB * 1024L;
		set(c, ki, ti, "memory.memtotal", kb <= ram && kb >= ram - OS_MEMORY_SLACK_MIB * 1024L,
		    "MemTotal %ld KiB of %ld KiB configured (expected within %d MiB below)", kb, ram,
		    OS_MEMORY_SLACK_MIB);
	}
	free(v);

	char *avail = value(out, "clocksources");
	if ((v = value(out, "clocksource"))) {
		/* jiffies is the clocksource of last resort: no hardware
		 * counter was found usable */
		set(c, ki, ti, "clocksource.current", *v && strcmp(v, "jiffies") && strcmp(v, "refined-jiffies"),
		    "current: %s; available: %s", v, avail ? avail : "?");
		set(c, ki, ti, "clocksource.available", avail && word_in(avail, v),
		    "available: %s; current: %s", avail ? avail : "?", v);
	}
	free(v);
	free(avail);

	if ((v = value(out, "vda_sectors"))) {
		bool present = strcmp(v, "none") != 0;
		long want = OS_DISK_MIB * 2048L;
		set(c, ki, ti, "disk.vda_present", present, "/dev/vda %s (a %d MiB virtio-blk disk is attached)",
		    present ? "is a block device" : "did not appear", OS_DISK_MIB);
		if (present)
			set(c, ki, ti, "disk.vda_size", strtol(v, NULL, 10) == want,
			    "/sys/block/vda/size: %s sectors, expected %ld", v, want);
	}
	free(v);

	char *asked = value(out, "modules_asked"), *loaded = value(out, "modules_loaded");
	if (asked && loaded) {
		char *copy = xstrdup(asked), *save, *m, *missing = xstrdup("");
		for (m = strtok_r(copy, " ", &save); m; m = strtok_r(NULL, " ", &save))
			if (!word_in(loaded, m)) {
				char *t = xasprintf("%s %s", missing, m);
				free(missing);
				missing = t;
			}
		set(c, ki, ti, "modules.loaded", *asked && !*missing,
		    "asked (the image's load.list): %s; /proc/modules: %s%s%s", *asked ? asked : "(none)",
		    *loaded ? loaded : "(none)", *missing ? "; missing:" : "", missing);
		free(copy);
		free(missing);
	}
	free(asked);
	free(loaded);
}

void os_run(struct certify *c, int ki, int ti, const char *self)
{
	struct target *t = &c->targets[ti];
	struct kernel *k = &c->kernels[ki];
	struct run_info *ri = &c->runs[ki * c->ntargets + ti];
	struct row *rr = run_row(c, ki);
	char why[512], *argv[40], cpus[16], mem[16], *disk = NULL, *drive = NULL;
	int n = 0;

	if (k->missing) {
		cell_set(&rr->cells[ti], V_SKIP, k->missing);
		for (int i = 0; i < NROWS; i++)
			cell_set(&row_get(c, ki, os_rows[i])->cells[ti], V_SKIP, k->missing);
		ri->skipped += NROWS;
		printf("[%s] %s: skipped: %s\n", t->name, k->label, k->missing);
		return;
	}
	snprintf(mem, sizeof(mem), "%dM", OS_DISK_MIB);
	if (!(disk = make_disk(c, k, mem, why, sizeof(why)))) {
		cell_set(&rr->cells[ti], V_ERROR, why);
		return;
	}
	snprintf(cpus, sizeof(cpus), "%d", OS_CPUS);
	if (t->kind == TARGET_ACCORD) {
		snprintf(mem, sizeof(mem), "%dM", OS_MEMORY_MIB);
		drive = xasprintf("path=%s", disk);
		char *a[] = { (char *)self, "run", "--kernel", k->path, "--initrd", c->os_initrd, "--cmdline",
			      OS_CMDLINE, "--memory", mem, "--cpus", cpus, "--disk", drive, "--accel",
			      (char *)t->accel };
		memcpy(argv, a, sizeof(a));
		n = sizeof(a) / sizeof(a[0]);
		if (!strcmp(t->accel, "kvm")) {
			argv[n++] = "--irqchip";
			argv[n++] = t->irqchip;
		}
	} else {
		snprintf(mem, sizeof(mem), "%d", OS_MEMORY_MIB);
		drive = xasprintf("file=%s,if=none,id=disk0,format=raw", disk);
		char *a[] = { QEMU_BINARY, "-accel", (char *)t->accel, "-kernel", k->path, "-initrd", c->os_initrd,
			      "-append", OS_CMDLINE, "-m", mem, "-smp", cpus, "-drive", drive, "-device",
			      "virtio-blk-pci,drive=disk0,disable-legacy=on", "-display", "none", "-serial", "stdio",
			      "-monitor", "none", "-no-reboot" };
		memcpy(argv, a, sizeof(a));
		n = sizeof(a) / sizeof(a[0]);
	}
	argv[n] = NULL;

	struct child_result res;
	run_child(argv, c->timeout, t->kind == TARGET_QEMU ? "KVM internal error" : NULL,
		  "QEMU reported a KVM internal error and stopped the VM", &res);
	unlink(disk);
	free(disk);
	free(drive);
	run_record(c, ri, t, k, &res);
	if (res.started)
		judge(c, ki, ti, res.out);

	/* a clean run: the probe finished and the VM powered off (status 0) */
	char *problem = child_failure(&res, c->timeout), *done = res.started ? value(res.out, "done") : NULL;
	if (!problem) {
		if (!done)
			problem = xasprintf("the guest's probe did not finish (exit status %d)", res.status);
		else if (res.status != 0)
			problem = xasprintf("exit status %d after power-off, expected 0", res.status);
	}
	free(done);
	run_done(&rr->cells[ti], t, k, ri, problem, &res, xasprintf("booted and powered off: %.1f s", res.seconds));
}
