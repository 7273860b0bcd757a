/* Snapshots: the writer, the checked reader and the loader (the format is
 * in vm/snapshot.h). The vCPUs are paused by the caller; the devices save
 * their state structs through the hooks they registered, so this file
 * knows no device. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "engine/engine.h"
#include "vm/snapshot.h"
#include "vm/vm.h"

#define PAGE 4096ull
/* RAM is written in runs of at most this many bytes */
#define RUN_MAX (4ull << 20)

static void fail(char *err, size_t n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
}

/* ---- the devices' buffers ---- */

void snap_put(struct snap_buf *b, const void *p, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *q = realloc(b->p, cap);
		if (!q) {
			b->failed = true;
			return;
		}
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

bool snap_get(struct snap_rd *r, void *dst, size_t n)
{
	if (r->len - r->off < n)
		return false;
	memcpy(dst, r->p + r->off, n);
	r->off += n;
	return true;
}

int vm_snap_register(struct vm *vm, const char *name, snap_save_fn save, snap_load_fn load, void *opaque)
{
	struct snap_hook *h = realloc(vm->snap_hooks, (vm->nsnap_hooks + 1) * sizeof(*h));
	if (!h)
		return -1;
	vm->snap_hooks = h;
	h += vm->nsnap_hooks++;
	memset(h, 0, sizeof(*h));
	snprintf(h->name, sizeof(h->name), "%s", name);
	h->save = save;
	h->load = load;
	h->opaque = opaque;
	return 0;
}

void snapshot_set_config(struct vm *vm, int argc, char *const *argv)
{
	vm->snap_argv = calloc((size_t)argc + 1, sizeof(char *));
	if (!vm->snap_argv)
		return;
	for (int i = 0; i < argc; i++)
		if ((vm->snap_argv[i] = strdup(argv[i])))
			vm->snap_argc = i + 1;
}

/* ---- writing ---- */

struct snap_out {
	int fd;
	uint8_t buf[1 << 16];
	size_t n;
	uint64_t off;
	uint32_t crc;
	int err; /* errno of the first failed write */
};

static void out_flush(struct snap_out *o)
{
	size_t done = 0;
	while (done < o->n && !o->err) {
		ssize_t w = write(o->fd, o->buf + done, o->n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			o->err = w < 0 ? errno : EIO;
		else
			done += (size_t)w;
	}
	o->n = 0;
}

static void out_put(struct snap_out *o, const void *p, size_t n)
{
	const uint8_t *s = p;
	o->crc = (uint32_t)crc32(o->crc, s, (uInt)n);
	o->off += n;
	while (n) {
		size_t k = sizeof(o->buf) - o->n < n ? sizeof(o->buf) - o->n : n;
		memcpy(o->buf + o->n, s, k);
		o->n += k;
		s += k;
		n -= k;
		if (o->n == sizeof(o->buf))
			out_flush(o);
	}
}

static void out_section(struct snap_out *o, uint32_t type, uint32_t instance, uint64_t len)
{
	struct {
		uint32_t type, instance;
		uint64_t len;
	} h = { type, instance, len };
	out_put(o, &h, sizeof(h));
}

static void out_pad(struct snap_out *o, uint64_t len)
{
	static const uint8_t zero[8];
	if (len & 7)
		out_put(o, zero, 8 - (len & 7));
}

static bool page_zero(const uint8_t *p)
{
	const uint64_t *q = (const uint64_t *)p;
	for (size_t i = 0; i < PAGE / 8; i++)
		if (q[i])
			return false;
	return true;
}

static uint64_t ram_gpa(const struct vm *vm, uint64_t off)
{
	return off < vm->low_size ? off : VM_HOLE_END + (off - vm->low_size);
}

/* Which pages of [p, p + len) the host ever backed: /proc/self/pagemap's
 * present (bit 63) or swapped (bit 62). mincore would miss the swapped
 * ones. Without pagemap every page is looked at. */
static void pages_backed(int pagemap, const uint8_t *p, uint64_t len, uint64_t *ent, uint8_t *keep)
{
	uint64_t n = len / PAGE;
	ssize_t want = (ssize_t)(n * 8);

	if (pagemap < 0 || pread(pagemap, ent, (size_t)want, (off_t)((uintptr_t)p / PAGE * 8)) != want) {
		memset(keep, 1, n);
		return;
	}
	for (uint64_t i = 0; i < n; i++)
		keep[i] = (ent[i] >> 62) != 0;
}

/* guest memory, skipping pages the host never backed and pages of zeros */
static int write_ram(struct vm *vm, struct snap_out *o, char *err, size_t errlen)
{
	const uint64_t chunk = 64ull << 20;
	uint64_t *ent = malloc(chunk / PAGE * 8);
	uint8_t *backed = malloc(chunk / PAGE);
	int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	if (!ent || !backed) {
		fail(err, errlen, "out of memory");
		free(ent);
		free(backed);
		if (pagemap >= 0)
			close(pagemap);
		return -1;
	}
	uint64_t run = 0, run_len = 0;
	for (uint64_t base = 0; base < vm->ram_size; base += chunk) {
		uint64_t len = vm->ram_size - base < chunk ? vm->ram_size - base : chunk;
		pages_backed(pagemap, vm->ram + base, len, ent, backed);
		for (uint64_t pg = 0; pg < len / PAGE; pg++) {
			uint64_t off = base + pg * PAGE;
			bool keep = backed[pg] && !page_zero(vm->ram + off);
			/* a run never crosses the PCI hole or grows past RUN_MAX */
			if (run_len && (!keep || off != run + run_len || off == vm->low_size || run_len == RUN_MAX)) {
				out_section(o, SNAP_RAM, 0, 8 + run_len);
				uint64_t gpa = ram_gpa(vm, run);
				out_put(o, &gpa, 8);
				out_put(o, vm->ram + run, run_len);
				run_len = 0;
			}
			if (keep) {
				if (!run_len)
					run = off;
				run_len += PAGE;
			}
		}
	}
	if (run_len) {
		out_section(o, SNAP_RAM, 0, 8 + run_len);
		uint64_t gpa = ram_gpa(vm, run);
		out_put(o, &gpa, 8);
		out_put(o, vm->ram + run, run_len);
	}
	if (pagemap >= 0)
		close(pagemap);
	free(ent);
	free(backed);
	return 0;
}

static uint32_t engine_id(const struct vm *vm)
{
	return vm->engine == &engine_kvm ? SNAP_ENGINE_KVM : SNAP_ENGINE_EMU;
}

int snapshot_write(struct vm *vm, int fd, char *err, size_t errlen)
{
	if (!vm->snap_argc) {
		fail(err, errlen, "this VM has no configuration to save");
		return -1;
	}
	struct snap_out *o = calloc(1, sizeof(*o));
	struct snap_buf b = { 0 };
	int rc = -1;
	if (!o) {
		fail(err, errlen, "out of memory");
		return -1;
	}
	o->fd = fd;
	o->crc = (uint32_t)crc32(0, NULL, 0);

	pthread_mutex_lock(&vm->io_lock);
	uint8_t hdr[SNAP_HEADER_SIZE] = SNAP_MAGIC;
	uint32_t u32[6] = { SNAP_VERSION, SNAP_HEADER_SIZE, 0, 0, 0, 0 };
	uint64_t u64;
	memcpy(hdr + 8, u32, 8);
	memcpy(hdr + 16, &vm->ram_size, 8);
	u32[0] = (uint32_t)vm->ncpus;
	u32[1] = engine_id(vm);
	u32[2] = (uint32_t)vm->personality;
	u32[3] = vm->snap_paused ? SNAP_F_PAUSED : 0;
	memcpy(hdr + 24, u32, 16);
	u64 = vm_now_ns(vm);
	memcpy(hdr + 40, &u64, 8);
	memcpy(hdr + 48, &vm->crystal_hz, 8);
	out_put(o, hdr, sizeof(hdr));

	uint64_t clen = 0;
	for (int i = 0; i < vm->snap_argc; i++)
		clen += strlen(vm->snap_argv[i]) + 1;
	out_section(o, SNAP_CONFIG, 0, clen);
	for (int i = 0; i < vm->snap_argc; i++)
		out_put(o, vm->snap_argv[i], strlen(vm->snap_argv[i]) + 1);
	out_pad(o, clen);

	for (int i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = vm->vcpu[i];
		struct cpu_state s;
		if (vm->engine->get_state(v, &s) < 0) {
			fail(err, errlen, "cannot read the state of vCPU %d", i);
			goto out;
		}
		uint32_t st[2] = { (uint32_t)v->state, 0 };
		out_section(o, SNAP_CPU, (uint32_t)i, sizeof(st) + sizeof(s));
		out_put(o, st, sizeof(st));
		out_put(o, &s, sizeof(s));
		out_pad(o, sizeof(st) + sizeof(s));
	}

	for (int i = 0; i < vm->nsnap_hooks; i++) {
		struct snap_hook *h = &vm->snap_hooks[i];
		uint32_t instance = 0;
		for (int j = 0; j < i; j++)
			instance += !strcmp(vm->snap_hooks[j].name, h->name);
		b.len = 0;
		snap_put(&b, h->name, SNAP_NAME_LEN);
		int saved = h->save(h->opaque, &b, err, errlen);
		if (saved < 0) {
			rc = saved == SNAP_REFUSED ? SNAP_REFUSED : -1;
			goto out;
		}
		if (b.failed) {
			fail(err, errlen, "out of memory");
			goto out;
		}
		out_section(o, SNAP_DEV, instance, b.len);
		out_put(o, b.p, b.len);
		out_pad(o, b.len);
	}

	if (write_ram(vm, o, err, errlen) < 0)
		goto out;
	out_section(o, SNAP_END, 0, 0);
	u64 = o->off + SNAP_TRAILER_SIZE;
	out_put(o, &u64, 8);
	u32[0] = o->crc;
	u32[1] = SNAP_END_MAGIC;
	o->crc = 0;
	out_put(o, u32, 8);
	out_flush(o);
	if (o->err) {
		fail(err, errlen, "cannot write the snapshot: %s", strerror(o->err));
		goto out;
	}
	if (fdatasync(fd) < 0 && errno != EINVAL) {
		fail(err, errlen, "cannot write the snapshot: %s", strerror(errno));
		goto out;
	}
	rc = 0;
out:
	pthread_mutex_unlock(&vm->io_lock);
	free(b.p);
	free(o);
	return rc;
}

/* ---- reading ---- */

struct sec {
	uint32_t type, instance;
	uint64_t len;
	const uint8_t *p;
};

/* a vCPU record's bytes in a file of format version: version 1 had no
 * split irqchip, its records end before the LAPIC fields (read as
 * lapic_size 0: the LAPIC is accord's device, in the device sections) */
#define SNAP_CPU_V1_SIZE 5204
_Static_assert(offsetof(struct cpu_state, lapic_size) == SNAP_CPU_V1_SIZE,
	       "cpu_state's fields before lapic_size are version 1's vCPU record: add new ones at its end");

static size_t cpu_record_size(uint32_t version)
{
	return version == 1 ? SNAP_CPU_V1_SIZE : sizeof(struct cpu_state);
}

/* the section at *off, advanced past it; false when it does not fit */
static bool next_section(const struct snap_file *f, uint64_t end, uint64_t *off, struct sec *s)
{
	if (end - *off < 16)
		return false;
	memcpy(&s->type, f->data + *off, 4);
	memcpy(&s->instance, f->data + *off + 4, 4);
	memcpy(&s->len, f->data + *off + 8, 8);
	*off += 16;
	if (s->len > end - *off)
		return false;
	s->p = f->data + *off;
	uint64_t padded = (s->len + 7) & ~7ull;
	if (padded > end - *off)
		return false;
	*off += padded;
	return true;
}

/* RAM [gpa, gpa+len) as the machine maps it, before the machine exists */
static bool ram_range_ok(uint64_t ram_size, uint64_t gpa, uint64_t len)
{
	uint64_t low = ram_size < VM_HOLE_START ? ram_size : VM_HOLE_START;
	if (gpa + len < gpa)
		return false;
	if (gpa + len <= low)
		return true;
	return gpa >= VM_HOLE_END && gpa - VM_HOLE_END + len <= ram_size - low;
}

int snapshot_parse(struct snap_file *f, const uint8_t *data, size_t size, char *err, size_t errlen)
{
	memset(f, 0, sizeof(*f));
	f->data = data;
	f->size = size;
	if (size < 8 || memcmp(data, SNAP_MAGIC, 8)) {
		fail(err, errlen, "not an accord snapshot (no ACCSNAP magic)");
		return -1;
	}
	if (size < 12) {
		fail(err, errlen, "truncated snapshot (%zu bytes)", size);
		return -1;
	}
	memcpy(&f->version, data + 8, 4);
	if (f->version < 1 || f->version > SNAP_VERSION) {
		fail(err, errlen, "snapshot format version %u; this accord reads versions 1 to %u", f->version,
		     SNAP_VERSION);
		return -1;
	}
	if (size < SNAP_HEADER_SIZE + 16 + SNAP_TRAILER_SIZE) {
		fail(err, errlen, "truncated snapshot (%zu bytes)", size);
		return -1;
	}
	uint64_t fsize;
	uint32_t crc, magic, hsize, flags;
	memcpy(&fsize, data + size - 16, 8);
	memcpy(&crc, data + size - 8, 4);
	memcpy(&magic, data + size - 4, 4);
	if (magic != SNAP_END_MAGIC || fsize != size) {
		if (magic == SNAP_END_MAGIC && fsize > size)
			fail(err, errlen, "truncated snapshot (%zu of %llu bytes)", size, (unsigned long long)fsize);
		else
			fail(err, errlen, "truncated or damaged snapshot (no valid trailer at its end)");
		return -1;
	}
	uint32_t sum = (uint32_t)crc32(0, NULL, 0);
	for (size_t done = 0, total = size - 8; done < total;) {
		size_t k = total - done > (1u << 30) ? (1u << 30) : total - done;
		sum = (uint32_t)crc32(sum, data + done, (uInt)k);
		done += k;
	}
	if (sum != crc) {
		fail(err, errlen, "damaged snapshot: checksum mismatch (CRC-32 %08x, the file says %08x)", sum, crc);
		return -1;
	}
	memcpy(&hsize, data + 12, 4);
	memcpy(&f->ram_size, data + 16, 8);
	memcpy(&f->ncpus, data + 24, 4);
	memcpy(&f->engine, data + 28, 4);
	memcpy(&f->personality, data + 32, 4);
	memcpy(&flags, data + 36, 4);
	memcpy(&f->vm_time_ns, data + 40, 8);
	f->crystal_hz = VM_CRYSTAL_HZ;
	if (f->version >= 3)
		memcpy(&f->crystal_hz, data + 48, 8);
	f->paused = flags & SNAP_F_PAUSED;
	if (hsize != SNAP_HEADER_SIZE || (flags & ~SNAP_F_PAUSED)) {
		fail(err, errlen, "damaged snapshot: bad header");
		return -1;
	}
	if (f->ram_size < PAGE || f->ram_size % PAGE || f->ram_size > (1ull << 40) || f->ncpus < 1 ||
	    f->ncpus > VM_MAX_CPUS || f->engine > SNAP_ENGINE_KVM || f->personality > PERSONALITY_HYPERV ||
	    (f->crystal_hz != VM_CRYSTAL_HZ && (f->crystal_hz != VM_CRYSTAL_KVM_HZ || f->engine != SNAP_ENGINE_KVM))) {
		fail(err, errlen,
		     "damaged snapshot: bad machine in the header (%llu bytes of RAM, %u vCPUs, LAPIC timer at %llu Hz)",
		     (unsigned long long)f->ram_size, f->ncpus, (unsigned long long)f->crystal_hz);
		return -1;
	}

	/* the sections' framing, all of it before anything is used */
	uint64_t end = size - SNAP_TRAILER_SIZE, off = SNAP_HEADER_SIZE;
	struct sec s;
	bool seen_end = false;
	uint64_t cpus_seen[VM_MAX_CPUS / 64] = { 0 };
	unsigned ncpu_seen = 0, nsec = 0;
	while (off < end) {
		if (seen_end || !next_section(f, end, &off, &s)) {
			fail(err, errlen, "damaged snapshot: section %u does not fit the file", nsec);
			return -1;
		}
		if ((nsec == 0) != (s.type == SNAP_CONFIG)) {
			fail(err, errlen, "damaged snapshot: the configuration must come first, once");
			return -1;
		}
		switch (s.type) {
		case SNAP_CONFIG:
			if (!s.len || s.p[s.len - 1]) {
				fail(err, errlen, "damaged snapshot: bad configuration");
				return -1;
			}
			for (uint64_t i = 0; i < s.len; i += strlen((const char *)s.p + i) + 1) {
				if (f->argc == SNAP_MAX_ARGS) {
					fail(err, errlen, "damaged snapshot: more than %d arguments", SNAP_MAX_ARGS);
					return -1;
				}
				f->argv[f->argc++] = (char *)s.p + i;
			}
			break;
		case SNAP_CPU:
			if (s.instance >= f->ncpus || (cpus_seen[s.instance / 64] >> (s.instance % 64) & 1) ||
			    s.len != 8 + cpu_record_size(f->version)) {
				fail(err, errlen, "damaged snapshot: bad vCPU section (vCPU %u, %llu bytes)", s.instance,
				     (unsigned long long)s.len);
				return -1;
			}
			cpus_seen[s.instance / 64] |= 1ull << (s.instance % 64);
			ncpu_seen++;
			break;
		case SNAP_DEV:
			if (s.len < SNAP_NAME_LEN || !memchr(s.p, 0, SNAP_NAME_LEN) || !s.p[0]) {
				fail(err, errlen, "damaged snapshot: bad device section");
				return -1;
			}
			break;
		case SNAP_RAM: {
			uint64_t gpa;
			if (s.len < 8 + PAGE || (s.len - 8) % PAGE) {
				fail(err, errlen, "damaged snapshot: bad memory section");
				return -1;
			}
			memcpy(&gpa, s.p, 8);
			if (gpa % PAGE || !ram_range_ok(f->ram_size, gpa, s.len - 8)) {
				fail(err, errlen, "damaged snapshot: memory at %#llx is outside the guest's RAM",
				     (unsigned long long)gpa);
				return -1;
			}
			break;
		}
		case SNAP_END:
			if (s.len) {
				fail(err, errlen, "damaged snapshot: bad end section");
				return -1;
			}
			seen_end = true;
			break;
		default:
			fail(err, errlen, "damaged snapshot: unknown section type %u", s.type);
			return -1;
		}
		nsec++;
	}
	if (!seen_end || ncpu_seen != f->ncpus) {
		fail(err, errlen, "damaged snapshot: %s", seen_end ? "a vCPU's state is missing" : "no end section");
		return -1;
	}
	return 0;
}

int snapshot_open(struct snap_file *f, const char *path, char *err, size_t errlen)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	memset(f, 0, sizeof(*f));
	if (fd < 0 || fstat(fd, &st) < 0) {
		fail(err, errlen, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		fail(err, errlen, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	if (st.st_size == 0) {
		fail(err, errlen, "%s: not an accord snapshot (empty file)", path);
		close(fd);
		return -1;
	}
	void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED) {
		fail(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	char why[256];
	if (snapshot_parse(f, map, (size_t)st.st_size, why, sizeof(why)) < 0) {
		fail(err, errlen, "%s: %s", path, why);
		munmap(map, (size_t)st.st_size);
		memset(f, 0, sizeof(*f));
		return -1;
	}
	f->map = map;
	return 0;
}

void snapshot_close(struct snap_file *f)
{
	if (f->map)
		munmap(f->map, f->size);
	memset(f, 0, sizeof(*f));
}

/* The hooks' sections in the order the machine registered them: each
 * hook's (name, instance) must be in the file once, and nothing else. */
static int match_devices(struct snap_file *f, struct vm *vm, struct sec *secs, struct sec *dev, char *err,
			 size_t errlen)
{
	uint64_t off = SNAP_HEADER_SIZE, end = f->size - SNAP_TRAILER_SIZE;
	struct sec s;
	int ndev = 0, nsecs = 0;

	while (off < end && next_section(f, end, &off, &s)) {
		if (s.type != SNAP_DEV)
			continue;
		if (nsecs > vm->nsnap_hooks) {
			fail(err, errlen, "the snapshot has devices this machine lacks");
			return -1;
		}
		secs[nsecs++] = s;
	}
	for (int i = 0; i < vm->nsnap_hooks; i++) {
		const char *name = vm->snap_hooks[i].name;
		uint32_t instance = 0;
		for (int j = 0; j < i; j++)
			instance += !strcmp(vm->snap_hooks[j].name, name);
		bool found = false;
		for (int k = 0; k < nsecs; k++) {
			if (secs[k].instance == instance && !strncmp((const char *)secs[k].p, name, SNAP_NAME_LEN)) {
				if (found) {
					fail(err, errlen, "damaged snapshot: device %s %u is in it twice", name, instance);
					return -1;
				}
				dev[i] = secs[k];
				found = true;
			}
		}
		if (!found) {
			fail(err, errlen, "the snapshot has no state for device %s %u of this machine", name, instance);
			return -1;
		}
		ndev++;
	}
	if (ndev != nsecs) {
		fail(err, errlen, "the snapshot has devices this machine lacks (%d sections, %d devices)", nsecs, ndev);
		return -1;
	}
	return 0;
}

int snapshot_apply(struct snap_file *f, struct vm *vm, char *err, size_t errlen)
{
	uint64_t off = SNAP_HEADER_SIZE, end = f->size - SNAP_TRAILER_SIZE;
	struct sec s;

	if (f->ram_size != vm->ram_size || f->ncpus != (uint32_t)vm->ncpus || f->engine != engine_id(vm) ||
	    f->personality != (uint32_t)vm->personality || f->crystal_hz != vm->crystal_hz) {
		fail(err, errlen, "the snapshot's machine (%llu MiB, %u vCPUs, %s, LAPIC timer at %llu kHz) is not this one",
		     (unsigned long long)(f->ram_size >> 20), f->ncpus, f->engine ? "kvm" : "emu",
		     (unsigned long long)(f->crystal_hz / 1000));
		return -1;
	}
	/* one more than the hooks: a surplus section is noticed */
	struct sec *dev = calloc((size_t)vm->nsnap_hooks + 2, 2 * sizeof(*dev));
	if (!dev) {
		fail(err, errlen, "out of memory");
		return -1;
	}
	if (match_devices(f, vm, dev + vm->nsnap_hooks + 2, dev, err, errlen) < 0) {
		free(dev);
		return -1;
	}
	/* the clock first: the vCPUs' TSCs and the devices' deadlines are
	 * VM times */
	vm_set_time(vm, f->vm_time_ns);
	while (off < end && next_section(f, end, &off, &s)) {
		if (s.type == SNAP_RAM) {
			uint64_t gpa;
			memcpy(&gpa, s.p, 8);
			if (vm_write_phys(vm, gpa, s.p + 8, s.len - 8) < 0) {
				fail(err, errlen, "damaged snapshot: memory at %#llx is outside RAM", (unsigned long long)gpa);
				goto fail;
			}
		} else if (s.type == SNAP_CPU) {
			struct vcpu *v = vm->vcpu[s.instance];
			struct cpu_state cs;
			uint32_t st[2];
			memcpy(st, s.p, sizeof(st));
			memset(&cs, 0, sizeof(cs));
			memcpy(&cs, s.p + sizeof(st), s.len - sizeof(st));
			if (st[0] != VCPU_RUNNING && st[0] != VCPU_WAIT_SIPI) {
				fail(err, errlen, "damaged snapshot: vCPU %u in run state %u", s.instance, st[0]);
				goto fail;
			}
			v->state = (int)st[0];
			cs.flags = CPU_STATE_FULL;
			if (vm->engine->set_state(v, &cs) < 0) {
				fail(err, errlen, "the engine cannot load the state of vCPU %u", s.instance);
				goto fail;
			}
		}
	}
	/* the devices' threads (console input, the I/O thread) already run */
	pthread_mutex_lock(&vm->io_lock);
	for (int i = 0; i < vm->nsnap_hooks; i++) {
		struct snap_hook *h = &vm->snap_hooks[i];
		struct snap_rd r = { dev[i].p, dev[i].len, SNAP_NAME_LEN };
		char why[200] = "";
		if (h->load(h->opaque, &r, why, sizeof(why)) < 0) {
			fail(err, errlen, "device %s: %s", h->name, why[0] ? why : "bad state");
			pthread_mutex_unlock(&vm->io_lock);
			goto fail;
		}
		if (r.off != r.len) {
			fail(err, errlen, "device %s: %zu bytes of its state left over", h->name, r.len - r.off);
			pthread_mutex_unlock(&vm->io_lock);
			goto fail;
		}
	}
	pthread_mutex_unlock(&vm->io_lock);
	free(dev);
	return 0;
fail:
	free(dev);
	return -1;
}
