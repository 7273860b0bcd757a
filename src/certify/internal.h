/* The certify runner's model: targets across, tests down, one cell each. */
#ifndef ACCORD_CERTIFY_INTERNAL_H
#define ACCORD_CERTIFY_INTERNAL_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

/* ordered from good to bad: a test reported twice keeps the worse one */
enum verdict {
	V_NONE,		/* not reported (yet) */
	V_PASS,
	V_SKIP,
	V_FAIL,
	V_ERROR,	/* the run went wrong, or the test was not reported */
	V_UNAVAILABLE,	/* the target cannot run on this host */
};

enum target_kind { TARGET_ACCORD, TARGET_QEMU };

struct target {
	const char *name;	/* "accord:emu" */
	enum target_kind kind;
	const char *accel;	/* emu, kvm, tcg */
	bool available;
	char reason[256];	/* why not available */
	/* what a known deviation's conditions are matched against (see
	 * guest/known-deviations): the irqchip accord:kvm runs with ("split"
	 * or "user"; "" where the target has no choice) and what /dev/kvm
	 * is for a kvm target ("hardware", "emulated"; "none" without KVM);
	 * machine says both, with the probe's figure, for the reports */
	char irqchip[8];
	char kvm[16];
	char machine[320];
	unsigned passed, failed, skipped, errors;
	double seconds;
};

struct kernel {
	char *path;		/* as found, to run */
	char *shown;		/* the path sanitized, to print */
	char *label;		/* smoke.multiboot, smoke.pvh (sanitized) */
	const char *protocol;	/* multiboot, pvh */
	char *family;		/* smoke: the key of families and known-deviations */
	char *options;		/* its line of <kernels>/families ("" for none) */
	bool os;		/* the OS-level checks (os.c), not a guest test kernel */
	char *missing;		/* os: why the image cannot be used, or NULL */
};

/* an entry of <kernels>/known-deviations */
struct deviation {
	char *target_glob, *test, *note;	/* test is "family/test" */
	char *conditions;			/* "irqchip=split kvm=emulated", or "" */
};

struct cell {
	enum verdict v;
	char *detail;		/* sanitized text (valid UTF-8, no controls but \n), or NULL */
};

/* A row is one guest test of one kernel, or the kernel's run itself
 * (name RUN_ROW): that row says whether the run ended cleanly. */
#define RUN_ROW "(run)"

struct row {
	int kernel;		/* index into certify.kernels */
	char *name;		/* sanitized */
	struct cell *cells;	/* one per target */
	const char *note;	/* a known deviation of some target, or NULL */
};

/* per kernel and target: the run's summary and its log files */
struct run_info {
	bool ran;
	double seconds;
	unsigned passed, failed, skipped;
	char log_out[PATH_MAX], log_err[PATH_MAX];	/* relative to the output directory */
};

struct certify {
	struct target *targets;
	int ntargets;
	struct kernel *kernels;
	int nkernels;
	struct row *rows;
	int nrows, caprows;
	struct run_info *runs;	/* [kernel * ntargets + target] */
	struct deviation *deviations;
	int ndeviations;
	const char *os_image;	/* NULL: no OS-level checks */
	char *os_initrd;	/* the image's initramfs with the probe appended */
	char *os_release;	/* the image's kernel.release, sanitized, or NULL */
	const char *kernels_dir;
	char *kernels_dir_shown;	/* sanitized */
	const char *out_dir;
	int timeout;
	time_t started;
	double seconds;
	char host[256];
};

const char *verdict_name(enum verdict v);
bool target_certified(const struct target *t);

#define QEMU_BINARY "qemu-system-x86_64"

/* certify.c: allocation that aborts on failure, and the row model */
void *xcalloc(size_t n, size_t size);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
struct row *row_get(struct certify *c, int kernel, const char *name);	/* created when new */
struct row *run_row(struct certify *c, int kernel);
void cell_set(struct cell *cell, enum verdict v, const char *detail);	/* twice: the worse */
/* the first (or last) lines of a captured stream, prefixed, appended to *detail */
void append_lines(char **detail, const char *text, bool last, const char *prefix);
struct child_result;
/* the end of a finished run: its cell (ERROR with problem, the first lines
 * of its stderr and the last of its serial output when it started; PASS
 * with pass otherwise) and its line on stdout; problem, pass and res are
 * freed */
void run_done(struct cell *cell, const struct target *t, const struct kernel *k, const struct run_info *ri,
	      char *problem, struct child_result *res, char *pass);
char *make_disk(const struct certify *c, const struct kernel *k, const char *size, char *why, size_t n);

/* runner.c: a child process with a deadline, its output captured */
struct child_result {
	bool started;
	char error[256];	/* why it could not start */
	int status;		/* exit status, when exited */
	int signal;		/* the signal that ended it, or 0 */
	bool timed_out;
	const char *aborted;	/* set when abort_marker was seen on stderr */
	double seconds;
	char *out, *err;	/* NUL-terminated, capped */
	size_t out_len, err_len;
};
void run_child(char *const argv[], int timeout_s, const char *abort_marker,
	       const char *abort_reason, struct child_result *r);
void child_result_free(struct child_result *r);
/* why a run ended other than by exiting (malloc'ed): it could not start,
 * was aborted, ran past timeout_s or was killed by a signal; NULL when it
 * exited, whatever its status */
char *child_failure(const struct child_result *r, int timeout_s);
/* certify.c: a finished run's time, and its serial and stderr output as
 * logs/TARGET-ACCEL.KERNEL.{serial,stderr}.log (none when it never started) */
void run_record(const struct certify *c, struct run_info *ri, struct target *t, const struct kernel *k,
		const struct child_result *res);

/* text.c: guest output is untrusted */
char *sanitize(const char *s, size_t n);	/* valid UTF-8, printable, malloc'ed */
void put_json_string(FILE *f, const char *s);
void put_xml(FILE *f, const char *s);		/* also fine for HTML text and attributes */

/* os.c: the OS-level checks, a stock Linux kernel's view of the machine.
 * os_add_kernel appends their pseudo-kernel (os.linux) to c->kernels. */
int os_add_kernel(struct certify *c);
void os_add_rows(struct certify *c, int ki);	/* after its run row: every row, run or not */
void os_run(struct certify *c, int ki, int ti, const char *self);

/* report.c */
int report_json(const struct certify *c, const char *path);
int report_junit(const struct certify *c, const char *path);
int report_html(const struct certify *c, const char *path);

#endif
