/* Kernel format detection and what the loaders share: reading the files,
 * ELF program headers and notes, the memory map, command line, initrd and
 * GDT. Everything read from a file is checked against the file's size and
 * everything written is checked against guest RAM. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "boot/internal.h"
#include "engine/engine.h"
#include "vm/vm.h"

/* Kernel files are read whole; nothing this large is a kernel we can load. */
#define KERNEL_FILE_MAX (VM_HOLE_START)

static int vfail(struct boot_ctx *c, const char *subject, const char *path, const char *fmt,
		 va_list ap)
{
	int n = 0;

	if (c->err[0])
		return -1;
	if (subject)
		n = snprintf(c->err, sizeof(c->err), "%s %s: ", subject, path);
	if (n >= 0 && (size_t)n < sizeof(c->err))
		vsnprintf(c->err + n, sizeof(c->err) - n, fmt, ap);
	return -1;
}

int boot_fail(struct boot_ctx *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(c, NULL, NULL, fmt, ap);
	va_end(ap);
	return -1;
}

int kernel_fail(struct boot_ctx *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(c, "kernel", c->cfg->kernel, fmt, ap);
	va_end(ap);
	return -1;
}

int initrd_fail(struct boot_ctx *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(c, "initrd", c->cfg->initrd, fmt, ap);
	va_end(ap);
	return -1;
}

/* Reads all of fd into buf, which holds exactly len bytes. */
static int read_full(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len > (1u << 30) ? (1u << 30) : len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			errno = EIO; /* the file shrank while we read it */
		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

/* Opens path as a regular, non-empty file; its size goes to *size. */
static int open_file(struct boot_ctx *c, const char *path,
		     int (*fail)(struct boot_ctx *, const char *, ...), uint64_t *size)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return fail(c, "%s", strerror(errno));
	if (fstat(fd, &st) < 0) {
		fail(c, "%s", strerror(errno));
		goto err;
	}
	if (!S_ISREG(st.st_mode)) {
		fail(c, "not a regular file");
		goto err;
	}
	if (st.st_size == 0) {
		fail(c, "empty file");
		goto err;
	}
	*size = st.st_size;
	return fd;
err:
	close(fd);
	return -1;
}

static int kfile_read(struct boot_ctx *c, struct kfile *f)
{
	uint64_t size;
	uint8_t *data;
	int fd = open_file(c, c->cfg->kernel, kernel_fail, &size);

	if (fd < 0)
		return -1;
	if (size > KERNEL_FILE_MAX) {
		close(fd);
		return kernel_fail(c, "too large (%llu bytes)", (unsigned long long)size);
	}
	data = malloc(size);
	if (!data) {
		close(fd);
		return kernel_fail(c, "out of memory reading %llu bytes", (unsigned long long)size);
	}
	if (read_full(fd, data, size)) {
		kernel_fail(c, "read: %s", strerror(errno));
		free(data);
		close(fd);
		return -1;
	}
	close(fd);
	f->data = data;
	f->size = size;
	return 0;
}

bool elf_is(const struct kfile *f)
{
	return f->size >= 4 && !memcmp(f->data, "\x7f" "ELF", 4);
}

int elf_parse(struct boot_ctx *c, const struct kfile *f, struct elf *e)
{
	const uint8_t *d = f->data;
	uint64_t need;

	if (f->size < 52)
		return kernel_fail(c, "truncated ELF header (%zu bytes)", f->size);
	if (d[4] != 1 && d[4] != 2)
		return kernel_fail(c, "unknown ELF class %u", d[4]);
	if (d[5] != 1)
		return kernel_fail(c, "not a little-endian ELF file");
	e->data = d;
	e->size = f->size;
	e->class = d[4] == 2 ? 64 : 32;
	e->machine = get16(d + 18);
	if (e->machine != EM_386 && e->machine != EM_X86_64)
		return kernel_fail(c, "ELF file for machine %u, not x86", e->machine);
	if (e->class == 64) {
		if (f->size < 64)
			return kernel_fail(c, "truncated ELF header (%zu bytes)", f->size);
		e->entry = get64(d + 24);
		e->phoff = get64(d + 32);
		e->phentsize = get16(d + 54);
		e->phnum = get16(d + 56);
	} else {
		e->entry = get32(d + 24);
		e->phoff = get32(d + 28);
		e->phentsize = get16(d + 42);
		e->phnum = get16(d + 44);
	}
	if (!e->phnum)
		return kernel_fail(c, "ELF file has no program headers");
	if (e->phentsize < (e->class == 64 ? 56u : 32u))
		return kernel_fail(c, "ELF program header size %u is too small", e->phentsize);
	need = (uint64_t)e->phnum * e->phentsize;
	if (e->phoff > f->size || need > f->size - e->phoff)
		return kernel_fail(c, "ELF program headers at offset %llu extend past the end "
				   "of the file (%zu bytes)",
				   (unsigned long long)e->phoff, f->size);
	return 0;
}

void elf_seg(const struct elf *e, unsigned i, struct elf_seg *s)
{
	const uint8_t *p = e->data + e->phoff + (uint64_t)i * e->phentsize;

	s->type = get32(p);
	if (e->class == 64) {
		s->offset = get64(p + 8);
		s->vaddr = get64(p + 16);
		s->paddr = get64(p + 24);
		s->filesz = get64(p + 32);
		s->memsz = get64(p + 40);
	} else {
		s->offset = get32(p + 4);
		s->vaddr = get32(p + 8);
		s->paddr = get32(p + 12);
		s->filesz = get32(p + 16);
		s->memsz = get32(p + 20);
	}
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

int boot_check_range(struct boot_ctx *c, const char *what, uint64_t addr, uint64_t len)
{
	if (addr + len < addr)
		return kernel_fail(c, "%s at 0x%llx wraps around the address space", what,
				   (unsigned long long)addr);
	if (overlaps(addr, len, 0, BOOT_DATA_END) ||
	    overlaps(addr, len, EBDA_START, 1 * MIB - EBDA_START))
		return kernel_fail(c, "%s at 0x%llx-0x%llx overlaps the boot loader's data below "
				   "1 MiB",
				   what, (unsigned long long)addr, (unsigned long long)(addr + len));
	if (!vm_gpa(c->vm, addr, len))
		return kernel_fail(c, "%s at 0x%llx-0x%llx does not fit in guest memory (%llu MiB)",
				   what, (unsigned long long)addr, (unsigned long long)(addr + len),
				   (unsigned long long)(c->vm->ram_size / MIB));
	return 0;
}

int elf_load(struct boot_ctx *c, const struct elf *e, uint64_t *lo, uint64_t *hi)
{
	struct elf_seg s;
	bool any = false;
	unsigned i;

	*lo = UINT64_MAX;
	*hi = 0;
	for (i = 0; i < e->phnum; i++) {
		uint8_t *dst;

		elf_seg(e, i, &s);
		if (s.type != PT_LOAD || !s.memsz)
			continue;
		if (s.filesz > s.memsz)
			return kernel_fail(c, "ELF segment %u has file size %llu above its memory "
					   "size %llu",
					   i, (unsigned long long)s.filesz,
					   (unsigned long long)s.memsz);
		if (s.offset > e->size || s.filesz > e->size - s.offset)
			return kernel_fail(c, "ELF segment %u (offset %llu, %llu bytes) extends past "
					   "the end of the file (%zu bytes)",
					   i, (unsigned long long)s.offset,
					   (unsigned long long)s.filesz, e->size);
		if (boot_check_range(c, "ELF segment", s.paddr, s.memsz))
			return -1;
		dst = vm_gpa(c->vm, s.paddr, s.memsz);
		memcpy(dst, e->data + s.offset, s.filesz);
		memset(dst + s.filesz, 0, s.memsz - s.filesz);
		if (s.paddr < *lo)
			*lo = s.paddr;
		if (s.paddr + s.memsz > *hi)
			*hi = s.paddr + s.memsz;
		any = true;
	}
	if (!any)
		return kernel_fail(c, "ELF file has no loadable segments");
	return 0;
}

int elf_entry_phys(struct boot_ctx *c, const struct elf *e, uint64_t *entry)
{
	struct elf_seg s;
	unsigned i;

	/* vmlinux's e_entry is already physical; other kernels link it at a
	 * virtual address, which the segment holding it translates. */
	for (i = 0; i < e->phnum; i++) {
		elf_seg(e, i, &s);
		if (s.type == PT_LOAD && e->entry >= s.paddr && e->entry - s.paddr < s.memsz) {
			*entry = e->entry;
			return 0;
		}
	}
	for (i = 0; i < e->phnum; i++) {
		elf_seg(e, i, &s);
		if (s.type == PT_LOAD && e->entry >= s.vaddr && e->entry - s.vaddr < s.memsz) {
			*entry = s.paddr + (e->entry - s.vaddr);
			return 0;
		}
	}
	return kernel_fail(c, "ELF entry point 0x%llx lies in no loadable segment",
			   (unsigned long long)e->entry);
}

const uint8_t *elf_find_note(const struct elf *e, const char *name, uint32_t type,
			     uint32_t *desc_len)
{
	uint64_t namesz = strlen(name) + 1;
	struct elf_seg s;
	unsigned i;

	for (i = 0; i < e->phnum; i++) {
		const uint8_t *p;
		uint64_t left;

		elf_seg(e, i, &s);
		if (s.type != PT_NOTE || s.offset > e->size || s.filesz > e->size - s.offset)
			continue;
		p = e->data + s.offset;
		left = s.filesz;
		while (left >= 12) {
			uint64_t nsz = get32(p), dsz = get32(p + 4);
			uint64_t total = 12 + align_up(nsz, 4) + align_up(dsz, 4);

			if (total > left)
				break;
			if (nsz == namesz && get32(p + 8) == type && !memcmp(p + 12, name, namesz)) {
				*desc_len = dsz;
				return p + 12 + align_up(nsz, 4);
			}
			p += total;
			left -= total;
		}
	}
	return NULL;
}

int boot_memmap(struct vm *vm, struct mem_range *r)
{
	int n = 0;

	r[n++] = (struct mem_range){ 0, EBDA_START, MEM_RAM };
	/* EBDA, VGA hole, BIOS area; the ACPI tables live here too */
	r[n++] = (struct mem_range){ EBDA_START, 1 * MIB - EBDA_START, MEM_RESERVED };
	if (vm->low_size > 1 * MIB)
		r[n++] = (struct mem_range){ 1 * MIB, vm->low_size - 1 * MIB, MEM_RAM };
	if (vm->ram_size > vm->low_size)
		r[n++] = (struct mem_range){ VM_HOLE_END, vm->ram_size - vm->low_size, MEM_RAM };
	return n;
}

int boot_put_cmdline(struct boot_ctx *c, size_t max)
{
	const char *s = c->cfg->cmdline ? c->cfg->cmdline : "";
	size_t len = strlen(s);

	if (max > BOOT_CMDLINE_MAX - 1)
		max = BOOT_CMDLINE_MAX - 1;
	if (len > max)
		return boot_fail(c, "command line: too long (%zu bytes, the kernel takes at most %zu)",
				 len, max);
	if (vm_write_phys(c->vm, BOOT_CMDLINE_ADDR, s, len + 1))
		return boot_fail(c, "command line: guest RAM does not cover 0x%x",
				 BOOT_CMDLINE_ADDR);
	return 0;
}

int boot_load_initrd(struct boot_ctx *c, uint64_t lo, uint64_t hi, uint64_t *addr,
		     uint64_t *size)
{
	uint64_t avail, len;
	void *dst;
	int fd;

	*addr = *size = 0;
	if (!c->cfg->initrd)
		return 0;
	fd = open_file(c, c->cfg->initrd, initrd_fail, &len);
	if (fd < 0)
		return -1;
	lo = align_up(lo, PAGE_SIZE);
	hi &= ~(PAGE_SIZE - 1);
	avail = hi > lo ? hi - lo : 0;
	if (len > avail) {
		close(fd);
		return initrd_fail(c, "does not fit in guest memory (%llu bytes, %llu available)",
				   (unsigned long long)len, (unsigned long long)avail);
	}
	*addr = (hi - len) & ~(PAGE_SIZE - 1);
	dst = vm_gpa(c->vm, *addr, len);
	if (!dst || read_full(fd, dst, len)) {
		close(fd);
		return initrd_fail(c, "%s", dst ? strerror(errno) : "guest RAM has a gap");
	}
	close(fd);
	*size = len;
	return 0;
}

int boot_put_gdt(struct boot_ctx *c, uint64_t code_desc, struct boot_state *bs)
{
	uint8_t gdt[32] = { 0 };

	put64(gdt + 0x10, code_desc);
	put64(gdt + 0x18, GDT_DATA);
	if (vm_write_phys(c->vm, BOOT_GDT_ADDR, gdt, sizeof(gdt)))
		return boot_fail(c, "guest RAM does not cover the GDT at 0x%x", BOOT_GDT_ADDR);
	bs->gdt_base = BOOT_GDT_ADDR;
	bs->gdt_limit = sizeof(gdt) - 1;
	return 0;
}

/* offset of a Multiboot header (magic, flags, checksum summing to 0, 4-aligned
 * in the first 8 KiB), or -1 */
static long multiboot_find(const struct kfile *f)
{
	size_t end = f->size < MULTIBOOT_SEARCH ? f->size : MULTIBOOT_SEARCH;
	size_t off;

	for (off = 0; off + 12 <= end; off += 4) {
		const uint8_t *p = f->data + off;

		if (get32(p) == MULTIBOOT_MAGIC &&
		    (uint32_t)(get32(p) + get32(p + 4) + get32(p + 8)) == 0)
			return off;
	}
	return -1;
}

static bool bzimage_is(const struct kfile *f)
{
	return f->size >= 0x206 && get16(f->data + 0x1FE) == 0xAA55 &&
	       !memcmp(f->data + 0x202, "HdrS", 4);
}

#define XEN_ELFNOTE_PHYS32_ENTRY 18

static int elf_dispatch(struct boot_ctx *c, const struct kfile *f, struct boot_state *bs)
{
	const uint8_t *desc;
	uint32_t len;
	uint64_t entry;
	struct elf e;

	if (elf_parse(c, f, &e))
		return -1;
	desc = elf_find_note(&e, "Xen", XEN_ELFNOTE_PHYS32_ENTRY, &len);
	if (desc) {
		if (len != 4 && len != 8)
			return kernel_fail(c, "PVH entry note has %u bytes, not 4 or 8", len);
		entry = len == 8 ? get64(desc) : get32(desc);
		if (entry > UINT32_MAX)
			return kernel_fail(c, "PVH entry point 0x%llx is above 4 GiB",
					   (unsigned long long)entry);
		return pvh_load(c, &e, entry, bs);
	}
	if (e.class != 64 || e.machine != EM_X86_64)
		return kernel_fail(c, "32-bit ELF file without a Multiboot header or PVH note");
	return linux_load_vmlinux(c, &e, bs);
}

static int boot_dispatch(struct boot_ctx *c, const struct kfile *f, struct boot_state *bs)
{
	long mb = multiboot_find(f);

	if (mb >= 0)
		return multiboot_load(c, f, mb, bs);
	if (bzimage_is(f))
		return linux_load_bzimage(c, f, bs);
	if (elf_is(f))
		return elf_dispatch(c, f, bs);
	return kernel_fail(c, "not a bzImage, ELF or Multiboot kernel");
}

/* Reads the kernel and loads it, the initrd and the command line into
 * vm's RAM; with acpi, after the ACPI tables. */
static int load(struct vm *vm, const struct boot_config *cfg, struct boot_state *bs, bool acpi)
{
	struct boot_ctx c = { .vm = vm, .cfg = cfg };
	struct kfile f;
	int ret = -1;

	memset(bs, 0, sizeof(*bs));
	if (vm->low_size < 2 * MIB) {
		fprintf(stderr, "accord: guest memory: %llu KiB is too small to boot a kernel\n",
			(unsigned long long)(vm->low_size / KIB));
		return -1;
	}
	if (kfile_read(&c, &f))
		goto out;
	/* acpi_build reports its own errors */
	if (!acpi || acpi_build(vm, &c.rsdp) == 0)
		ret = boot_dispatch(&c, &f, bs);
	free((void *)f.data);
out:
	if (ret && c.err[0])
		fprintf(stderr, "accord: %s\n", c.err);
	return ret;
}

int boot_load(struct vm *vm, const struct boot_config *cfg, struct boot_state *bs)
{
	return load(vm, cfg, bs, true);
}

int boot_check(const struct boot_config *cfg, uint64_t ram_size)
{
	/* the loaders only touch RAM: a bare vm holding a scratch copy is
	 * enough, and its mapping is lazy like guest RAM */
	struct vm scratch = { .ram_size = ram_size,
			      .low_size = ram_size < VM_HOLE_START ? ram_size : VM_HOLE_START };
	struct boot_state bs;
	int ret;

	scratch.ram = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			   -1, 0);
	if (scratch.ram == MAP_FAILED) {
		fprintf(stderr, "accord: cannot allocate %llu MiB of guest memory: %s\n",
			(unsigned long long)(ram_size >> 20), strerror(errno));
		return -1;
	}
	ret = load(&scratch, cfg, &bs, false);
	munmap(scratch.ram, ram_size);
	return ret;
}
