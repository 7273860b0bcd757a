/* accord certify: every guest test kernel on every target, one report.
 *
 * A target is a VMM and its accelerator: accord:emu, accord:kvm, qemu:tcg,
 * qemu:kvm. A target that cannot start on this host (no usable /dev/kvm, no
 * QEMU) is "unavailable", with the reason; it is not a failure. Each guest
 * kernel prints PASS/FAIL/SKIP lines and a DONE line on its serial port and
 * leaves through the debug-exit port; those lines become the report's rows.
 * A run that times out, crashes, or ends without a DONE line that agrees
 * with what it printed is an "error" for that kernel on that target. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "certify/certify.h"
#include "certify/internal.h"
#include "engine/engine.h"

enum {
	CERTIFY_OK = 0,		/* the run completed and the reports are written */
	CERTIFY_USAGE = 1,
	CERTIFY_NO_KERNELS = 2,
	CERTIFY_NO_REPORT = 3,
};

#define DEFAULT_TIMEOUT 300
#define DETAIL_LINES 8
/* a guest may print anything; the report stays readable and quick to build */
#define MAX_RESULTS 5000

static const struct target all_targets[] = {
	{ .name = "accord:emu", .kind = TARGET_ACCORD, .accel = "emu" },
	{ .name = "accord:kvm", .kind = TARGET_ACCORD, .accel = "kvm" },
	{ .name = "qemu:tcg", .kind = TARGET_QEMU, .accel = "tcg" },
	{ .name = "qemu:kvm", .kind = TARGET_QEMU, .accel = "kvm" },
};
#define NTARGETS (int)(sizeof(all_targets) / sizeof(all_targets[0]))

static void usage(FILE *f)
{
	fprintf(f,
		"usage: accord certify [--target T]... [--out DIR] [--kernels DIR] [--timeout S]\n"
		"                      [--os-image DIR | --no-os]\n"
		"\n"
		"  --target T      accord:emu, accord:kvm, qemu:tcg or qemu:kvm; repeat for\n"
		"                  several (default: all four)\n"
		"  --out DIR       where report.json, junit.xml, report.html and logs/ go\n"
		"                  (default: certify/ beside the accord binary, build/certify)\n"
		"  --kernels DIR   the guest test kernels, *.elf (Multiboot) and *.pvh.elf,\n"
		"                  with the lists families and known-deviations beside them\n"
		"                  (default: guest/ beside the accord binary, build/guest)\n"
		"  --timeout S     seconds one kernel may run on one target (default %d)\n"
		"  --os-image DIR  the stock Linux guest for the OS-level checks, vmlinuz and\n"
		"                  initrd.cpio.gz from tools/mkguest with virtio_pci virtio_blk\n"
		"                  (default: certify-image/ beside the accord binary; make\n"
		"                  certify-image builds build/certify-image)\n"
		"  --no-os         no OS-level checks\n"
		"\n"
		"Exit status 0 when the run completed and the reports are written; the\n"
		"verdicts are in the reports. 1: bad command line, 2: no kernels, 3: the\n"
		"reports could not be written.\n",
		DEFAULT_TIMEOUT);
}

const char *verdict_name(enum verdict v)
{
	static const char *names[] = { "none", "pass", "skip", "fail", "error", "unavailable" };
	return names[v];
}

bool target_certified(const struct target *t)
{
	return t->available && !t->failed && !t->errors;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);
	if (!p)
		abort();
	return p;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		abort();
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	return s;
}

/* ---- targets ---- */

static bool in_path(const char *prog)
{
	const char *path = getenv("PATH");
	if (!path)
		return false;
	char *copy = xstrdup(path), *save, *dir;
	bool found = false;
	for (dir = strtok_r(copy, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save)) {
		char *full = xasprintf("%s/%s", *dir ? dir : ".", prog);
		struct stat st;
		found = !stat(full, &st) && S_ISREG(st.st_mode) && !access(full, X_OK);
		free(full);
	}
	free(copy);
	return found;
}

/* a /dev/kvm that opens read-write and speaks the stable API */
static bool kvm_usable(char *why, size_t n)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, n, "/dev/kvm: %s", strerror(errno));
		return false;
	}
	int v = ioctl(fd, KVM_GET_API_VERSION, 0);
	close(fd);
	if (v != KVM_API_VERSION) {
		snprintf(why, n, "/dev/kvm: KVM API version %d, expected %d", v, KVM_API_VERSION);
		return false;
	}
	return true;
}

/* The conditions a known deviation may depend on: whether /dev/kvm runs
 * guest kernel code in hardware (the --accel auto probe) and, for accord's
 * kvm engine, the irqchip it chooses by default (runs with a personality
 * that needs accord's LAPIC use "user": run_irqchip) */
static void target_machine(struct target *t)
{
	char why[256] = "", nosplit[256];
	snprintf(t->kvm, sizeof(t->kvm), "none");
	if (!strcmp(t->accel, "kvm")) {
		int fast = kvm_probe(why, sizeof(why));
		snprintf(t->kvm, sizeof(t->kvm), "%s", fast > 0 ? "hardware" : fast == 0 ? "emulated" : "unknown");
	}
	if (t->kind == TARGET_ACCORD)
		snprintf(t->irqchip, sizeof(t->irqchip), "%s",
			 !strcmp(t->accel, "kvm") && !kvm_split_check(nosplit, sizeof(nosplit)) ? "split" : "user");
	snprintf(t->machine, sizeof(t->machine), "kvm=%s%s%s%s%s", t->kvm, *t->irqchip ? " irqchip=" : "",
		 t->irqchip, *why ? "; " : "", why);
}

static void target_check(struct target *t)
{
	t->available = true;
	if (t->kind == TARGET_QEMU && !in_path(QEMU_BINARY)) {
		t->available = false;
		snprintf(t->reason, sizeof(t->reason), "%s is not in PATH", QEMU_BINARY);
		return;
	}
	if (!strcmp(t->accel, "kvm") && !kvm_usable(t->reason, sizeof(t->reason)))
		t->available = false;
	if (t->available)
		target_machine(t);
}

/* ---- kernels ---- */

static int kernel_cmp(const void *a, const void *b)
{
	return strcmp(((const struct kernel *)a)->label, ((const struct kernel *)b)->label);
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && !strcmp(s + n - m, suffix);
}

/* NAME.elf is booted through Multiboot, NAME.pvh.elf through PVH */
static int find_kernels(struct certify *c)
{
	DIR *d = opendir(c->kernels_dir);
	if (!d) {
		fprintf(stderr, "accord certify: %s: %s\n", c->kernels_dir, strerror(errno));
		return -1;
	}
	struct dirent *e;
	int cap = 0;
	while ((e = readdir(d))) {
		const char *n = e->d_name;
		if (n[0] == '.' || !ends_with(n, ".elf"))
			continue;
		bool pvh = ends_with(n, ".pvh.elf");
		size_t base = strlen(n) - (pvh ? 8 : 4);
		if (!base)
			continue;
		if (c->nkernels == cap) {
			cap = cap ? cap * 2 : 16;
			c->kernels = realloc(c->kernels, cap * sizeof(*c->kernels));
			if (!c->kernels)
				abort();
		}
		struct kernel *k = &c->kernels[c->nkernels++];
		k->path = xasprintf("%s/%s", c->kernels_dir, n);
		k->protocol = pvh ? "pvh" : "multiboot";
		/* file names are bytes; the reports want text */
		k->family = sanitize(n, base);
		k->label = xasprintf("%s.%s", k->family, k->protocol);
		k->shown = sanitize(k->path, strlen(k->path));
		k->options = NULL;
	}
	closedir(d);
	if (c->nkernels)
		qsort(c->kernels, c->nkernels, sizeof(*c->kernels), kernel_cmp);
	return 0;
}

/* ---- the lists beside the kernels (guest/families, guest/known-deviations) ---- */

/* the next non-comment line of f, without its newline; NULL at the end */
static char *data_line(FILE *f, char **buf, size_t *cap)
{
	ssize_t n;
	while ((n = getline(buf, cap, f)) >= 0) {
		while (n && ((*buf)[n - 1] == '\n' || (*buf)[n - 1] == '\r'))
			(*buf)[--n] = 0;
		if (n && (*buf)[0] != '#')
			return *buf;
	}
	return NULL;
}

/* "FAMILY OPTION..." lines: each kernel gets its family's options */
static int load_families(struct certify *c)
{
	char *path = xasprintf("%s/families", c->kernels_dir), *buf = NULL, *line;
	size_t cap = 0;
	FILE *f = fopen(path, "r");
	if (!f && errno != ENOENT) {
		fprintf(stderr, "accord certify: %s: %s\n", path, strerror(errno));
		free(path);
		return -1;
	}
	while (f && (line = data_line(f, &buf, &cap))) {
		size_t n = strcspn(line, " \t");
		const char *opts = line + n + strspn(line + n, " \t");
		line[n] = 0;
		for (int i = 0; i < c->nkernels; i++)
			if (!strcmp(c->kernels[i].family, line) && !c->kernels[i].options)
				c->kernels[i].options = sanitize(opts, strlen(opts));
	}
	for (int i = 0; i < c->nkernels; i++)
		if (!c->kernels[i].options)
			c->kernels[i].options = xstrdup("");
	if (f)
		fclose(f);
	free(buf);
	free(path);
	return 0;
}

/* the first condition of a "key=value ..." list that is not irqchip= or
 * kvm=, or NULL */
static const char *condition_unknown(const char *cond)
{
	while (*cond) {
		if (strncmp(cond, "irqchip=", 8) && strncmp(cond, "kvm=", 4))
			return cond;
		cond += strcspn(cond, " ");
		cond += strspn(cond, " ");
	}
	return NULL;
}

/* "TARGET-GLOB [CONDITION...]<tab>FAMILY/TEST<tab>REASON" lines */
static int load_deviations(struct certify *c)
{
	char *path = xasprintf("%s/known-deviations", c->kernels_dir), *buf = NULL, *line;
	size_t cap = 0;
	FILE *f = fopen(path, "r");
	if (!f) {
		int rc = errno == ENOENT ? 0 : -1;
		if (rc)
			fprintf(stderr, "accord certify: %s: %s\n", path, strerror(errno));
		free(path);
		return rc;
	}
	while ((line = data_line(f, &buf, &cap))) {
		char *test = strchr(line, '\t'), *note = test ? strchr(test + 1, '\t') : NULL;
		if (!note) {
			fprintf(stderr, "accord certify: %s: not TARGET<tab>FAMILY/TEST<tab>REASON: %s\n", path,
				line);
			continue;
		}
		*test++ = 0;
		*note++ = 0;
		char *cond = line + strcspn(line, " ");
		if (*cond)
			*cond++ = 0;
		cond += strspn(cond, " ");
		const char *bad = condition_unknown(cond);
		if (bad) {
			fprintf(stderr, "accord certify: %s: unknown condition '%.*s' (irqchip=, kvm=): %s\t%s\n",
				path, (int)strcspn(bad, " "), bad, line, test);
			continue;
		}
		c->deviations = realloc(c->deviations, (c->ndeviations + 1) * sizeof(*c->deviations));
		if (!c->deviations)
			abort();
		struct deviation *d = &c->deviations[c->ndeviations++];
		d->target_glob = xstrdup(line);
		d->test = sanitize(test, strlen(test));
		d->conditions = xstrdup(cond);
		d->note = *cond ? xasprintf("known deviation of %s with %s: %s", line, cond, note)
				: xasprintf("known deviation of %s: %s", line, note);
	}
	fclose(f);
	free(buf);
	free(path);
	return 0;
}

/* ---- rows ---- */

struct row *row_get(struct certify *c, int kernel, const char *name)
{
	int last = -1;
	for (int i = 0; i < c->nrows; i++) {
		if (c->rows[i].kernel != kernel)
			continue;
		if (!strcmp(c->rows[i].name, name))
			return &c->rows[i];
		last = i;
	}
	if (c->nrows == c->caprows) {
		c->caprows = c->caprows ? c->caprows * 2 : 64;
		c->rows = realloc(c->rows, c->caprows * sizeof(*c->rows));
		if (!c->rows)
			abort();
	}
	/* keep each kernel's rows together, in the order first seen */
	int at = last >= 0 ? last + 1 : c->nrows;
	memmove(&c->rows[at + 1], &c->rows[at], (c->nrows - at) * sizeof(*c->rows));
	c->nrows++;
	struct row *r = &c->rows[at];
	r->kernel = kernel;
	r->name = xstrdup(name);
	r->cells = xcalloc(c->ntargets, sizeof(*r->cells));
	r->note = NULL;
	return r;
}

/* every kernel's run row exists from the start (certify_main) */
struct row *run_row(struct certify *c, int kernel)
{
	for (int i = 0; i < c->nrows; i++)
		if (c->rows[i].kernel == kernel && !strcmp(c->rows[i].name, RUN_ROW))
			return &c->rows[i];
	abort();
}

void cell_set(struct cell *cell, enum verdict v, const char *detail)
{
	if (cell->v != V_NONE) {
		/* reported twice: keep the worse verdict, and say so */
		char *d = xasprintf("%s%sreported again: %s%s%s", cell->detail ? cell->detail : "",
				    cell->detail ? "\n" : "", verdict_name(v), detail && *detail ? ": " : "",
				    detail ? detail : "");
		free(cell->detail);
		cell->detail = d;
		if (v > cell->v)
			cell->v = v;
		return;
	}
	cell->v = v;
	cell->detail = detail && *detail ? xstrdup(detail) : NULL;
}

/* ---- one run ---- */

/* some lines of a captured stream, each prefixed: the first ones (a VMM
 * says what went wrong before it dumps state) or the last ones (a guest's
 * last words) */
void append_lines(char **detail, const char *text, bool last, const char *prefix)
{
	size_t n = strlen(text);
	while (n && (text[n - 1] == '\n' || text[n - 1] == '\r'))
		n--;
	size_t start = 0, end = n;
	int lines = 0;
	if (last) {
		for (start = n; start > 0; start--)
			if (text[start - 1] == '\n' && ++lines == DETAIL_LINES)
				break;
	} else {
		for (end = 0; end < n; end++)
			if (text[end] == '\n' && ++lines == DETAIL_LINES)
				break;
	}
	if (start == end)
		return;
	char *part = sanitize(text + start, end - start);
	size_t cap = strlen(*detail) + strlen(part) * 2 + (DETAIL_LINES + 1) * (strlen(prefix) + 2) + 2;
	char *d = malloc(cap), *p = d;
	if (!d)
		abort();
	p += sprintf(p, "%s\n%s", *detail, prefix);
	for (const char *q = part; *q; q++) {
		if (*q == '\r')
			continue;
		*p++ = *q;
		if (*q == '\n')
			p += sprintf(p, "%s", prefix);
	}
	*p = 0;
	free(part);
	free(*detail);
	*detail = d;
}

void run_done(struct cell *cell, const struct target *t, const struct kernel *k, const struct run_info *ri,
	      char *problem, struct child_result *res, char *pass)
{
	if (!problem) {
		cell_set(cell, V_PASS, pass);
	} else {
		char *detail = xstrdup(problem);
		if (res->started) {
			append_lines(&detail, res->err, false, "stderr: ");
			append_lines(&detail, res->out, true, "serial: ");
		}
		cell_set(cell, V_ERROR, detail);
		free(detail);
	}
	printf("[%s] %s: %u passed, %u failed, %u skipped (%.1f s)%s%s\n", t->name, k->label, ri->passed,
	       ri->failed, ri->skipped, res->seconds, problem ? ": error: " : "", problem ? problem : "");
	fflush(stdout);
	free(problem);
	free(pass);
	child_result_free(res);
}

/* the irqchip accord runs kernel k with on target t ("" for other VMMs):
 * a family with a personality keeps accord's LAPIC (the Hyper-V SynIC is
 * built on it) */
static const char *run_irqchip(const struct target *t, const struct kernel *k)
{
	if (t->kind == TARGET_ACCORD && k->options && strstr(k->options, "personality="))
		return "user";
	return t->irqchip;
}

/* whether every "key=value" of cond holds for kernel k on target t */
static bool conditions_hold(const char *cond, const struct target *t, const struct kernel *k)
{
	while (*cond) {
		size_t n = strcspn(cond, " ");
		const char *eq = memchr(cond, '=', n), *have = !strncmp(cond, "kvm=", 4) ? t->kvm : run_irqchip(t, k);
		size_t vn = n - (size_t)(eq + 1 - cond);
		if (strlen(have) != vn || strncmp(eq + 1, have, vn))
			return false;
		cond += n;
		cond += strspn(cond, " ");
	}
	return true;
}

static const char *known_note(const struct certify *c, const struct target *t, const struct kernel *k,
			      const char *test)
{
	size_t fn = strlen(k->family);
	for (int i = 0; i < c->ndeviations; i++) {
		const struct deviation *d = &c->deviations[i];
		if (!fnmatch(d->target_glob, t->name, 0) && !strncmp(d->test, k->family, fn) &&
		    d->test[fn] == '/' && !strcmp(d->test + fn + 1, test) && conditions_hold(d->conditions, t, k))
			return d->note;
	}
	return NULL;
}

/* one "PASS name", "FAIL name: reason" or "SKIP name: reason" line */
static void parse_result(struct certify *c, int kernel, int ti, enum verdict v, const char *rest,
			 struct run_info *ri)
{
	const char *colon = v == V_PASS ? NULL : strstr(rest, ": ");
	size_t name_len = colon ? (size_t)(colon - rest) : strlen(rest);
	while (name_len && rest[name_len - 1] == ' ')
		name_len--;
	if (!name_len)
		return;
	char *name = sanitize(rest, name_len > 200 ? 200 : name_len);
	char *reason = colon ? sanitize(colon + 2, strlen(colon + 2)) : NULL;
	if (!strcmp(name, RUN_ROW)) {	/* not a guest's to claim */
		free(name);
		name = xstrdup("[" RUN_ROW "]");
	}
	struct row *r = row_get(c, kernel, name);
	cell_set(&r->cells[ti], v, reason);
	if (v == V_FAIL && !r->note)
		r->note = known_note(c, &c->targets[ti], &c->kernels[kernel], name);
	if (v == V_PASS)
		ri->passed++;
	else if (v == V_FAIL)
		ri->failed++;
	else
		ri->skipped++;
	free(name);
	free(reason);
}

static void write_log(const struct certify *c, const char *rel, const char *data, size_t n)
{
	char *path = xasprintf("%s/%s", c->out_dir, rel);
	FILE *f = fopen(path, "w");
	if (f) {
		fwrite(data, 1, n, f);
		fclose(f);
	}
	free(path);
}

void run_record(const struct certify *c, struct run_info *ri, struct target *t, const struct kernel *k,
		const struct child_result *res)
{
	ri->ran = true;
	ri->seconds = res->seconds;
	t->seconds += res->seconds;
	if (!res->started) {
		ri->log_out[0] = ri->log_err[0] = 0;
		return;
	}
	/* one flat directory: logs/accord-emu.smoke.multiboot.serial.log */
	int tn = (int)strcspn(t->name, ":");
	snprintf(ri->log_out, sizeof(ri->log_out), "logs/%.*s-%s.%s.serial.log", tn, t->name, t->accel, k->label);
	snprintf(ri->log_err, sizeof(ri->log_err), "logs/%.*s-%s.%s.stderr.log", tn, t->name, t->accel, k->label);
	write_log(c, ri->log_out, res->out, res->out_len);
	write_log(c, ri->log_err, res->err, res->err_len);
}

/* A sparse raw image of the size asked for ("16M"), for one run of
 * kernel k: <out>/FAMILY.disk.img; NULL with the reason on error. */
char *make_disk(const struct certify *c, const struct kernel *k, const char *size, char *why, size_t n)
{
	char *end;
	long mib = strtol(size, &end, 10);
	if (end == size || strcmp(end, "M") || mib < 1 || mib > 4096) {
		snprintf(why, n, "families: %s: disk=%s: expected 1M to 4096M", k->family, size);
		return NULL;
	}
	char *path = xasprintf("%s/%s.disk.img", c->out_dir, k->family);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)mib << 20) < 0) {
		snprintf(why, n, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		free(path);
		return NULL;
	}
	close(fd);
	return path;
}

/* The arguments that give kernel k the machine its family asks for
 * (guest/families); they go into argv from *n on. The options are also the
 * kernel's command line. Returns -1 with the reason in why. */
static int family_args(const struct certify *c, const struct kernel *k, const struct target *t, char **argv,
		       int *n, char ***owned, char *why, size_t whylen)
{
	char *copy = xstrdup(k->options), *save, *opt;
	bool accord = t->kind == TARGET_ACCORD;
	int no = 0, rc = 0;

	*owned = xcalloc(8, sizeof(**owned));
	for (opt = strtok_r(copy, " \t", &save); opt && !rc; opt = strtok_r(NULL, " \t", &save)) {
		if (no > 4) {
			snprintf(why, whylen, "families: %s: too many options", k->family);
			rc = -1;
		} else if (!strncmp(opt, "cpus=", 5)) {
			argv[(*n)++] = accord ? "--cpus" : "-smp";
			argv[(*n)++] = (*owned)[no++] = xstrdup(opt + 5);
		} else if (!strncmp(opt, "disk=", 5)) {
			char *disk = make_disk(c, k, opt + 5, why, whylen);
			if (!disk) {
				rc = -1;
			} else if (accord) {
				argv[(*n)++] = "--disk";
				argv[(*n)++] = (*owned)[no++] = xasprintf("path=%s", disk);
			} else {
				argv[(*n)++] = "-drive";
				argv[(*n)++] = (*owned)[no++] = xasprintf("file=%s,if=none,id=disk0,format=raw", disk);
				argv[(*n)++] = "-device";
				argv[(*n)++] = "virtio-blk-pci,drive=disk0,disable-legacy=on";
			}
			free(disk);
		} else if (!strncmp(opt, "qemu-machine=", 13)) {
			if (!accord) {
				argv[(*n)++] = "-machine";
				argv[(*n)++] = (*owned)[no++] = xstrdup(opt + 13);
			}
		} else if (!strncmp(opt, "personality=", 12)) {
			/* accord's; other targets run the family as it is, and
			 * it SKIPs what its target lacks */
			if (accord) {
				argv[(*n)++] = "--personality";
				argv[(*n)++] = (*owned)[no++] = xstrdup(opt + 12);
			}
		} else {
			snprintf(why, whylen, "families: %s: unknown option '%s'", k->family, opt);
			rc = -1;
		}
	}
	if (!rc && *k->options) {
		argv[(*n)++] = accord ? "--cmdline" : "-append";
		argv[(*n)++] = k->options;
	}
	free(copy);
	return rc;
}

static void run_one(struct certify *c, int ki, int ti, const char *self)
{
	struct target *t = &c->targets[ti];
	struct kernel *k = &c->kernels[ki];
	struct run_info *ri = &c->runs[ki * c->ntargets + ti];
	char *argv[48], **owned, why[256];
	int n = 0;

	if (t->kind == TARGET_ACCORD) {
		argv[n++] = (char *)self;
		argv[n++] = "run";
		argv[n++] = "--kernel";
		argv[n++] = k->path;
		argv[n++] = "--debug-exit";
		argv[n++] = "--accel";
		argv[n++] = (char *)t->accel;
		if (!strcmp(t->accel, "kvm")) {
			argv[n++] = "--irqchip";
			argv[n++] = (char *)run_irqchip(t, k);
		}
	} else {
		argv[n++] = QEMU_BINARY;
		argv[n++] = "-accel";
		argv[n++] = (char *)t->accel;
		argv[n++] = "-kernel";
		argv[n++] = k->path;
		argv[n++] = "-device";
		argv[n++] = "isa-debug-exit,iobase=0xf4,iosize=0x04";
		argv[n++] = "-display";
		argv[n++] = "none";
		argv[n++] = "-serial";
		argv[n++] = "stdio";
		argv[n++] = "-no-reboot";
		argv[n++] = "-monitor";
		argv[n++] = "none";
		argv[n++] = "-m";
		argv[n++] = "128";
	}
	struct child_result res;
	if (family_args(c, k, t, argv, &n, &owned, why, sizeof(why)) < 0) {
		memset(&res, 0, sizeof(res));
		snprintf(res.error, sizeof(res.error), "%s", why);
	} else {
		argv[n] = NULL;
		/* QEMU stops the VM on a KVM internal error and waits forever */
		run_child(argv, c->timeout, t->kind == TARGET_QEMU ? "KVM internal error" : NULL,
			  "QEMU reported a KVM internal error and stopped the VM", &res);
	}
	for (int i = 0; owned[i]; i++)
		free(owned[i]);
	free(owned);
	if (strstr(k->options, "disk=")) {
		char *disk = xasprintf("%s/%s.disk.img", c->out_dir, k->family);
		unlink(disk);
		free(disk);
	}
	run_record(c, ri, t, k, &res);

	bool done = false, done_agrees = false, too_many = false;
	unsigned dp = 0, df = 0, ds = 0;
	for (char *line = res.out; res.started && line && *line;) {
		char *end = strchr(line, '\n');
		if (end)
			*end = 0;
		size_t len = strlen(line);
		if (len && line[len - 1] == '\r')
			line[--len] = 0;
		if (ri->passed + ri->failed + ri->skipped >= MAX_RESULTS)
			too_many = true;
		else if (!strncmp(line, "PASS ", 5))
			parse_result(c, ki, ti, V_PASS, line + 5, ri);
		else if (!strncmp(line, "FAIL ", 5))
			parse_result(c, ki, ti, V_FAIL, line + 5, ri);
		else if (!strncmp(line, "SKIP ", 5))
			parse_result(c, ki, ti, V_SKIP, line + 5, ri);
		else if (!strncmp(line, "DONE ", 5) && !done)
			done = sscanf(line, "DONE passed=%u failed=%u skipped=%u", &dp, &df, &ds) == 3;
		if (end)
			*end = '\n';
		line = end ? end + 1 : NULL;
	}
	done_agrees = done && dp == ri->passed && df == ri->failed && ds == ri->skipped;

	/* the run's own row: did it end the way a guest test kernel must? */
	int want = ri->failed ? 3 : 1;
	char *problem = child_failure(&res, c->timeout);
	if (!problem) {
		if (too_many)
			problem = xasprintf("printed more than %d results; the rest were not read", MAX_RESULTS);
		else if (!done)
			problem = xasprintf("ended without a DONE line (exit status %d)", res.status);
		else if (!done_agrees)
			problem = xasprintf("DONE passed=%u failed=%u skipped=%u disagrees with the lines printed "
					    "(%u passed, %u failed, %u skipped)",
					    dp, df, ds, ri->passed, ri->failed, ri->skipped);
		else if (res.status != want)
			problem = xasprintf("exit status %d, expected %d", res.status, want);
	}

	struct row *rr = row_get(c, ki, RUN_ROW);
	run_done(&rr->cells[ti], t, k, ri, problem, &res,
		 xasprintf("ended cleanly: exit status %d, %.1f s", res.status, res.seconds));
}

/* tests that a target did not report, and the targets that could not run */
static void fill_gaps(struct certify *c)
{
	for (int i = 0; i < c->nrows; i++) {
		struct row *r = &c->rows[i];
		for (int ti = 0; ti < c->ntargets; ti++) {
			struct cell *cell = &r->cells[ti];
			struct target *t = &c->targets[ti];
			if (!t->available) {
				cell_set(cell, V_UNAVAILABLE, t->reason);
				continue;
			}
			if (cell->v != V_NONE)
				continue;
			if (run_row(c, r->kernel)->cells[ti].v == V_ERROR)
				cell_set(cell, V_ERROR, "not reported: the kernel's run ended early (see its (run) row)");
			else
				cell_set(cell, V_ERROR, "not reported by this target, although the run ended cleanly");
		}
	}
	for (int ti = 0; ti < c->ntargets; ti++) {
		struct target *t = &c->targets[ti];
		for (int i = 0; i < c->nrows && t->available; i++) {
			struct row *r = &c->rows[i];
			switch (r->cells[ti].v) {
			case V_PASS: t->passed += strcmp(r->name, RUN_ROW) != 0; break;
			case V_FAIL: t->failed++; break;
			case V_SKIP: t->skipped++; break;
			case V_ERROR: t->errors++; break;
			default: break;
			}
		}
	}
}

/* ---- the command ---- */

static int add_target(struct certify *c, const char *name)
{
	for (int i = 0; i < NTARGETS; i++) {
		if (strcmp(all_targets[i].name, name))
			continue;
		for (int j = 0; j < c->ntargets; j++)
			if (!strcmp(c->targets[j].name, name))
				return 0;
		c->targets[c->ntargets++] = all_targets[i];
		return 0;
	}
	fprintf(stderr, "accord certify: --target '%s': expected accord:emu, accord:kvm, qemu:tcg or qemu:kvm\n",
		name);
	return -1;
}

static int mkdir_p(const char *path)
{
	char *p = xstrdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, 0777) < 0 && errno != EEXIST) {
			free(p);
			return -1;
		}
		*s = '/';
	}
	int rc = mkdir(p, 0777) < 0 && errno != EEXIST ? -1 : 0;
	free(p);
	return rc;
}

int certify_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "target", required_argument, 0, 't' },
		{ "out", required_argument, 0, 'o' },
		{ "kernels", required_argument, 0, 'k' },
		{ "timeout", required_argument, 0, 's' },
		{ "os-image", required_argument, 0, 'i' },
		{ "no-os", no_argument, 0, 'n' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct certify c = { .timeout = DEFAULT_TIMEOUT };
	bool no_os = false;
	int ch;

	c.targets = xcalloc(NTARGETS, sizeof(*c.targets));
	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 't':
			if (add_target(&c, optarg) < 0)
				return CERTIFY_USAGE;
			break;
		case 'o': c.out_dir = optarg; break;
		case 'k': c.kernels_dir = optarg; break;
		case 'i': c.os_image = optarg; break;
		case 'n': no_os = true; break;
		case 's': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || end == optarg || v < 1 || v > 86400) {
				fprintf(stderr, "accord certify: --timeout '%s': expected seconds from 1 to 86400\n",
					optarg);
				return CERTIFY_USAGE;
			}
			c.timeout = (int)v;
			break;
		}
		case 'h': usage(stdout); return CERTIFY_OK;
		default: usage(stderr); return CERTIFY_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "accord certify: unexpected argument '%s'\n", argv[optind]);
		return CERTIFY_USAGE;
	}
	if (!c.ntargets)
		for (int i = 0; i < NTARGETS; i++)
			c.targets[c.ntargets++] = all_targets[i];

	/* accord targets run this very binary; the defaults sit beside it */
	char self[PATH_MAX];
	ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (len <= 0) {
		fprintf(stderr, "accord certify: /proc/self/exe: %s\n", strerror(errno));
		return CERTIFY_USAGE;
	}
	self[len] = 0;
	char *selfdir = dirname(xstrdup(self));
	if (!c.kernels_dir)
		c.kernels_dir = xasprintf("%s/guest", selfdir);
	if (!c.out_dir)
		c.out_dir = xasprintf("%s/certify", selfdir);
	if (no_os)
		c.os_image = NULL;
	else if (!c.os_image)
		c.os_image = xasprintf("%s/certify-image", selfdir);

	if (find_kernels(&c) < 0 || load_families(&c) < 0 || load_deviations(&c) < 0)
		return CERTIFY_NO_KERNELS;
	if (!c.nkernels) {
		fprintf(stderr, "accord certify: no guest test kernels (*.elf) in %s (make guests)\n",
			c.kernels_dir);
		return CERTIFY_NO_KERNELS;
	}
	char *logs = xasprintf("%s/logs", c.out_dir);
	if (mkdir_p(logs) < 0) {
		fprintf(stderr, "accord certify: %s: %s\n", logs, strerror(errno));
		return CERTIFY_NO_REPORT;
	}
	free(logs);
	if (c.os_image)
		os_add_kernel(&c);

	c.kernels_dir_shown = sanitize(c.kernels_dir, strlen(c.kernels_dir));
	struct utsname u;
	if (!uname(&u)) {
		char *host = xasprintf("%s %s %s", u.nodename, u.sysname, u.release);
		char *shown = sanitize(host, strlen(host));
		snprintf(c.host, sizeof(c.host), "%s", shown);
		free(host);
		free(shown);
	}
	c.started = time(NULL);
	c.runs = xcalloc((size_t)c.nkernels * c.ntargets, sizeof(*c.runs));

	for (int ti = 0; ti < c.ntargets; ti++) {
		target_check(&c.targets[ti]);
		if (c.targets[ti].available)
			printf("target %s: available: %s\n", c.targets[ti].name, c.targets[ti].machine);
		else
			printf("target %s: unavailable: %s\n", c.targets[ti].name, c.targets[ti].reason);
	}
	fflush(stdout);

	for (int ki = 0; ki < c.nkernels; ki++) {
		row_get(&c, ki, RUN_ROW);
		if (c.kernels[ki].os)
			os_add_rows(&c, ki);
		for (int ti = 0; ti < c.ntargets; ti++)
			if (c.targets[ti].available && c.kernels[ki].os)
				os_run(&c, ki, ti, self);
			else if (c.targets[ti].available)
				run_one(&c, ki, ti, self);
	}
	fill_gaps(&c);
	c.seconds = difftime(time(NULL), c.started);

	for (int ti = 0; ti < c.ntargets; ti++) {
		struct target *t = &c.targets[ti];
		if (!t->available)
			printf("verdict %s: unavailable (%s)\n", t->name, t->reason);
		else
			printf("verdict %s: %s (%u passed, %u failed, %u skipped, %u errors)\n", t->name,
			       target_certified(t) ? "certified" : "not certified", t->passed, t->failed,
			       t->skipped, t->errors);
	}

	static const struct {
		const char *file;
		int (*write)(const struct certify *, const char *);
	} reports[] = {
		{ "report.json", report_json },
		{ "junit.xml", report_junit },
		{ "report.html", report_html },
	};
	int rc = CERTIFY_OK;
	for (size_t i = 0; i < sizeof(reports) / sizeof(reports[0]); i++) {
		char *path = xasprintf("%s/%s", c.out_dir, reports[i].file);
		if (reports[i].write(&c, path) < 0) {
			fprintf(stderr, "accord certify: %s: %s\n", path, strerror(errno));
			rc = CERTIFY_NO_REPORT;
		} else {
			printf("report: %s\n", path);
		}
		free(path);
	}
	return rc;
}
