/* Unit tests for src/boot: the loaders on the stock Debian kernel (path in
 * argv[1] or $ACCORD_TEST_KERNEL) and on synthetic images, malformed inputs,
 * and the ACPI tables parsed back from guest memory. Prints TAP. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include "boot/aml.h"
#include "boot/boot.h"
#include "dev/platform.h"
#include "engine/engine.h"
#include "vm/vm.h"
#include "tap.h"
#include "boot_images.h"

#define VM_MEM (256 * MIB)
#define NCPUS 2

static char tmpdir[64];
static struct vm vm;


static void skip(const char *why, const char *what)
{
	printf("ok %d - %s # SKIP %s\n", ++n_test, what, why);
	n_pass++;
}

static uint8_t *gpa(uint64_t addr, uint64_t len)
{
	return vm_gpa(&vm, addr, len);
}

static void vm_fill(uint8_t byte)
{
	memset(gpa(0, vm.low_size), byte, vm.low_size);
}

static char *tmp_path(const char *name)
{
	static char paths[8][128];
	static int next;
	char *p = paths[next++ % 8];

	snprintf(p, 128, "%s/%s", tmpdir, name);
	return p;
}

static const char *write_file(const char *name, const void *data, size_t len)
{
	char *path = tmp_path(name);
	FILE *f = fopen(path, "wb");

	if (!f || fwrite(data, 1, len, f) != len || fclose(f)) {
		perror(path);
		exit(2);
	}
	return path;
}

static uint8_t *read_file(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *d;
	FILE *f = fopen(path, "rb");

	if (!f)
		return NULL;
	fstat(fileno(f), &st);
	d = malloc(st.st_size + 1);
	*len = fread(d, 1, st.st_size, f);
	fclose(f);
	return d;
}

/* Runs boot_load with stderr captured into err. */
static int boot_capture(const struct boot_config *cfg, struct boot_state *bs, char *err,
			size_t cap)
{
	char *path = tmp_path("stderr");
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600), saved, r;
	ssize_t n;

	fflush(stderr);
	saved = dup(2);
	dup2(fd, 2);
	r = boot_load(&vm, cfg, bs);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	lseek(fd, 0, SEEK_SET);
	n = read(fd, err, cap - 1);
	err[n > 0 ? n : 0] = 0;
	close(fd);
	unlink(path);
	return r;
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* The call must fail with exactly one "accord: " line containing want. */
static void expect_fail(const char *kernel, const char *initrd, const char *cmdline,
			const char *want, const char *desc)
{
	struct boot_config cfg = { kernel, initrd, cmdline };
	struct boot_state bs;
	char err[1024];
	int r = boot_capture(&cfg, &bs, err, sizeof(err));
	bool good = r == -1 && count_lines(err) == 1 && !strncmp(err, "accord: ", 8) &&
		    strstr(err, want);

	err[strcspn(err, "\n")] = 0;
	ok(good, "%s -> -1, one line [%s]", desc, err);
}

/* ---- the synthetic images of tests/boot_images.h ---- */

static void check_e820(const uint8_t *bp, const char *what)
{
	const uint8_t *e = bp + 0x2D0;
	int n = bp[0x1E8];

	ok(n == 3 && get64(e) == 0 && get64(e + 8) == EBDA_START && get32(e + 16) == 1 &&
		   get64(e + 20) == EBDA_START && get64(e + 28) == 0x100000 - EBDA_START &&
		   get32(e + 36) == 2 && get64(e + 40) == 0x100000 &&
		   get64(e + 48) == VM_MEM - 0x100000 && get32(e + 56) == 1,
	   "%s: e820 has RAM, the reserved BIOS area with the ACPI tables, RAM", what);
}

static void check_boot64(const struct boot_state *bs, const char *what)
{
	uint8_t *pt = gpa(BOOT_PML4_ADDR, 6 * 4096), *gdt = gpa(BOOT_GDT_ADDR, 32);
	bool map = get64(pt) == (BOOT_PML4_ADDR + 0x1000 + 3);
	int i;

	for (i = 0; i < 4; i++)
		map &= get64(pt + 0x1000 + 8 * i) == BOOT_PML4_ADDR + (2u + i) * 0x1000 + 3;
	for (i = 0; i < 2048; i++)
		map &= get64(pt + 0x2000 + 8 * i) == (uint64_t)i * 2 * MIB + 0x83;
	ok(bs->mode == 64 && bs->rsi == BOOT_PARAMS_ADDR && bs->cr3 == BOOT_PML4_ADDR &&
		   bs->rsp == BOOT_STACK_TOP,
	   "%s: 64-bit entry state", what);
	ok(map, "%s: page tables identity-map 4 GiB with 2 MiB pages", what);
	ok(bs->gdt_base == BOOT_GDT_ADDR && bs->gdt_limit == 31 && get64(gdt) == 0 &&
		   get64(gdt + 8) == 0 && get64(gdt + 16) == 0x00AF9A000000FFFFull &&
		   get64(gdt + 24) == 0x00CF92000000FFFFull,
	   "%s: GDT has 64-bit code at 0x10, data at 0x18", what);
}

static void check_gdt32(const struct boot_state *bs, const char *what)
{
	uint8_t *gdt = gpa(BOOT_GDT_ADDR, 32);

	ok(bs->mode == 32 && bs->gdt_base == BOOT_GDT_ADDR && bs->gdt_limit == 31 &&
		   get64(gdt + 16) == 0x00CF9A000000FFFFull && get64(gdt + 24) == 0x00CF92000000FFFFull,
	   "%s: 32-bit entry, flat GDT", what);
}

static bool synthetic_landed(uint64_t rip)
{
	uint8_t *seg = gpa(SYN_PADDR, SYN_CODE + SYN_BSS);
	size_t i;

	for (i = SYN_CODE; i < SYN_CODE + SYN_BSS; i++)
		if (seg[i])
			return false;
	return rip == SYN_PADDR + SYN_ENTRY_OFF && !memcmp(seg, syn_code, SYN_CODE);
}

static void test_synthetic_formats(void)
{
	static uint8_t elf[0x2000], packed[0x4000], image[0x8000];
	static const struct {
		const char *name;
		size_t (*pack)(const uint8_t *, size_t, uint8_t *, size_t);
	} fmts[] = {
		{ "gzip", compress_gzip },
		{ "xz", compress_xz },
		{ "zstd", compress_zstd },
		{ "lz4", compress_lz4 },
	};
	size_t elf_len = make_elf64(elf, false), i;
	struct boot_state bs;
	char err[512];

	for (i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
		size_t n = fmts[i].pack(elf, elf_len, packed, sizeof(packed));
		struct boot_config cfg = { write_file("syn.bz", image, make_bzimage(image, packed, n)),
					   NULL, "console=ttyS0" };
		int r;

		vm_fill(0xAA);
		r = boot_capture(&cfg, &bs, err, sizeof(err));
		ok(r == 0 && !err[0] && synthetic_landed(bs.rip),
		   "synthetic bzImage, %s payload: decompressed on the host, ELF at p_paddr, "
		   "bss zeroed, entry translated",
		   fmts[i].name);
	}

	/* an unknown payload format leaves decompression to the guest */
	memcpy(packed, "BZh9", 4);
	memset(packed + 4, 0x55, 60);
	{
		size_t n = make_bzimage(image, packed, 64);
		struct boot_config cfg = { write_file("syn.bz", image, n), NULL, NULL };
		int r;

		vm_fill(0);
		r = boot_capture(&cfg, &bs, err, sizeof(err));
		ok(r == 0 && bs.rip == SYN_PADDR + 0x200 &&
			   !memcmp(gpa(SYN_PADDR, n - SYN_PM_OFF), image + SYN_PM_OFF, n - SYN_PM_OFF) &&
			   get32(gpa(BOOT_PARAMS_ADDR + 0x214, 4)) == SYN_PADDR,
		   "synthetic bzImage, bzip2 payload: protected-mode code at pref_address, entry +0x200");
		check_boot64(&bs, "fallback");
	}
}

static void test_vmlinux_and_pvh(void)
{
	static uint8_t elf[0x2000];
	size_t len = make_elf64(elf, false);
	struct boot_config cfg = { write_file("vmlinux", elf, len), NULL, "root=/dev/vda" };
	struct boot_state bs;
	char err[512];
	uint8_t *bp, *si;
	int r;

	vm_fill(0xAA);
	r = boot_capture(&cfg, &bs, err, sizeof(err));
	bp = gpa(BOOT_PARAMS_ADDR, 4096);
	ok(r == 0 && synthetic_landed(bs.rip), "plain vmlinux: loaded at p_paddr, entry converted "
						"from virtual");
	ok(get16(bp + 0x1FE) == 0xAA55 && !memcmp(bp + 0x202, "HdrS", 4) && bp[0x210] == 0xFF &&
		   get32(bp + 0x228) == BOOT_CMDLINE_ADDR &&
		   !strcmp((char *)gpa(BOOT_CMDLINE_ADDR, 14), "root=/dev/vda"),
	   "plain vmlinux: boot_params with a header, loader type, command line");
	check_e820(bp, "plain vmlinux");
	check_boot64(&bs, "plain vmlinux");

	len = make_elf64(elf, true);
	cfg.kernel = write_file("pvh", elf, len);
	cfg.initrd = write_file("initrd.small", syn_code, 3000);
	vm_fill(0xAA);
	r = boot_capture(&cfg, &bs, err, sizeof(err));
	si = gpa(BOOT_PARAMS_ADDR, 0x100);
	ok(r == 0 && bs.rip == SYN_PADDR + SYN_PVH_ENTRY_OFF && bs.rbx == BOOT_PARAMS_ADDR,
	   "PVH: entry from the note, EBX = start info");
	check_gdt32(&bs, "PVH");
	ok(get32(si) == 0x336ec578 && get32(si + 4) == 1 && get64(si + 0x18) == BOOT_CMDLINE_ADDR &&
		   !strcmp((char *)gpa(get64(si + 0x18), 14), "root=/dev/vda") &&
		   !memcmp(gpa(get64(si + 0x20), 8), "RSD PTR ", 8),
	   "PVH: start info magic, version 1, command line, RSDP");
	{
		uint8_t *mod = gpa(get64(si + 0x10), 32), *mm = gpa(get64(si + 0x28), 72);
		uint64_t addr = mod ? get64(mod) : 0;

		ok(get32(si + 0xC) == 1 && mod && get64(mod + 8) == 3000 && !(addr & 0xFFF) &&
			   addr >= SYN_PADDR + SYN_CODE + SYN_BSS && addr + 3000 <= VM_MEM &&
			   !memcmp(gpa(addr, 3000), syn_code, 3000),
		   "PVH: initrd is module 0, page-aligned above the kernel");
		ok(get32(si + 0x30) == 3 && mm && get64(mm) == 0 && get32(mm + 16) == 1 &&
			   get64(mm + 24) == EBDA_START && get32(mm + 40) == 2 &&
			   get64(mm + 48) == 0x100000 && get64(mm + 56) == VM_MEM - 0x100000,
		   "PVH: memory map v1 with RAM and reserved ranges");
	}
}

/* ---- Multiboot ---- */

static void test_multiboot(void)
{
	static uint8_t img[0x1000];
	size_t len = make_mb_elf32(img, 0x3);
	struct boot_config cfg = { write_file("mb.elf", img, len), write_file("mod", syn_code, 3000),
				   "test=1" };
	struct boot_state bs;
	uint8_t *mbi, *mm, *mod;
	char err[512];
	int r;

	vm_fill(0xAA);
	r = boot_capture(&cfg, &bs, err, sizeof(err));
	mbi = gpa(BOOT_PARAMS_ADDR, 120);
	ok(r == 0 && bs.rax == 0x2BADB002 && bs.rbx == BOOT_PARAMS_ADDR && bs.rip == MB_LOAD + 0x20 &&
		   !memcmp(gpa(MB_LOAD + 0x20, 0xE0), img + 0x120, 0xE0) &&
		   *gpa(MB_LOAD + 0x100, 1) == 0 && *gpa(MB_LOAD + 0x7FF, 1) == 0,
	   "Multiboot ELF32: segments loaded, bss zeroed, EAX magic, EBX info");
	check_gdt32(&bs, "Multiboot");
	ok(get32(mbi) == (1 | 4 | 8 | 64 | 512) && get32(mbi + 4) == 639 &&
		   get32(mbi + 8) == (VM_MEM - MIB) / 1024 &&
		   !strcmp((char *)gpa(get32(mbi + 16), 7), "test=1") &&
		   !strcmp((char *)gpa(get32(mbi + 64), 7), "accord"),
	   "Multiboot info: flags, mem_lower/upper, cmdline, loader name");
	mod = gpa(get32(mbi + 24), 16);
	ok(get32(mbi + 20) == 1 && mod && !(get32(mod) & 0xFFF) && get32(mod + 4) - get32(mod) == 3000 &&
		   get32(mod) >= MB_LOAD + 0x800 &&
		   !memcmp(gpa(get32(mod), 3000), syn_code, 3000) &&
		   !strcmp((char *)gpa(get32(mod + 8), strlen(cfg.initrd) + 1), cfg.initrd),
	   "Multiboot info: the initrd as a page-aligned module with its string");
	mm = gpa(get32(mbi + 48), 72);
	ok(get32(mbi + 44) == 72 && get32(mm) == 20 && get64(mm + 4) == 0 &&
		   get64(mm + 12) == EBDA_START && get32(mm + 20) == 1 && get32(mm + 24) == 20 &&
		   get32(mm + 44) == 2 && get64(mm + 52) == 0x100000 && get32(mm + 68) == 1,
	   "Multiboot info: mmap entries of size 20");

	/* a.out kludge in a raw binary: header at 0x10, bss after the file */
	cfg.kernel = write_file("mb.bin", img, make_mb_aout(img));
	cfg.initrd = NULL;
	vm_fill(0xAA);
	r = boot_capture(&cfg, &bs, err, sizeof(err));
	mbi = gpa(BOOT_PARAMS_ADDR, 120);
	ok(r == 0 && bs.rip == MB_LOAD + 0x40 && !memcmp(gpa(MB_LOAD, 0x400), img, 0x400) &&
		   *gpa(MB_LOAD + 0x400, 1) == 0 && *gpa(MB_LOAD + 0x1FFF, 1) == 0 &&
		   *gpa(MB_LOAD + 0x2000, 1) == 0xAA && !(get32(mbi) & 8),
	   "Multiboot a.out kludge: load/bss/entry addresses honoured");

	put32(img + 0x24, MB_LOAD + 0x800);
	expect_fail(write_file("mb.bin", img, 0x400), NULL, NULL, "truncated",
		    "Multiboot load_end_addr past the end of the file");
	mb_header(img + 0x10, 0x10007);
	expect_fail(write_file("mb.bin", img, 0x400), NULL, NULL, "video mode",
		    "Multiboot header asking for a video mode");
	mb_header(img + 0x10, 0x3);
	expect_fail(write_file("mb.bin", img, 0x400), NULL, NULL, "not ELF",
		    "Multiboot header without flag 16 in a raw binary");
}

/* ---- malformed inputs ---- */

static void test_malformed(const uint8_t *bz, size_t bz_len, const char *what)
{
	static const size_t cuts[] = { 0x100, 0x1F0, 0x204, 0x240, 0x300 };
	char desc[128];
	size_t i, setup = (bz[0x1F1] + 1) * 512, need = setup + get32(bz + 0x1F4) * 16;

	for (i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		snprintf(desc, sizeof(desc), "%s cut at %zu bytes", what, cuts[i]);
		expect_fail(write_file("cut", bz, cuts[i]), NULL, NULL, "", desc);
	}
	snprintf(desc, sizeof(desc), "%s cut inside the protected-mode kernel", what);
	expect_fail(write_file("cut", bz, need - 1), NULL, NULL, "truncated", desc);
	snprintf(desc, sizeof(desc), "%s cut in the middle", what);
	expect_fail(write_file("cut", bz, setup + (need - setup) / 2), NULL, NULL, "truncated", desc);
	snprintf(desc, sizeof(desc), "%s cut right after the setup code", what);
	expect_fail(write_file("cut", bz, setup), NULL, NULL, "truncated", desc);
}

static void test_bad_inputs(const uint8_t *bz, size_t bz_len)
{
	static uint8_t buf[0x10000];
	uint32_t x = 12345;
	char missing[128], want[256];
	size_t i;

	snprintf(missing, sizeof(missing), "%s", tmp_path("does-not-exist"));
	for (i = 0; i < sizeof(buf); i++) {
		x = x * 1103515245 + 12345;
		buf[i] = x >> 16;
	}
	buf[0] = 0;
	expect_fail(write_file("random", buf, sizeof(buf)), NULL, NULL,
		    "not a bzImage, ELF or Multiboot kernel", "random bytes");
	expect_fail(write_file("empty", buf, 0), NULL, NULL, "empty file", "empty file");
	snprintf(want, sizeof(want), "accord: kernel %s: No such file or directory\n", missing);
	expect_fail(missing, NULL, NULL, want, "missing kernel file");
	expect_fail(tmpdir, NULL, NULL, "not a regular file", "a directory as the kernel");

	/* ELF damage, on the synthetic vmlinux */
	{
		size_t len = make_elf64(buf, false);

		put64(buf + 32, len);
		expect_fail(write_file("bad.elf", buf, len), NULL, NULL, "program headers",
			    "ELF program headers past the end");
		make_elf64(buf, false);
		put64(buf + 64 + 32, 0x100000);
		put64(buf + 64 + 40, 0x100000);
		expect_fail(write_file("bad.elf", buf, len), NULL, NULL, "past the end of the file",
			    "ELF segment past the end of the file");
		make_elf64(buf, false);
		put64(buf + 64 + 24, 4 * GIB + 0x1000);
		expect_fail(write_file("bad.elf", buf, len), NULL, NULL, "does not fit",
			    "ELF segment outside guest RAM");
		make_elf64(buf, false);
		put64(buf + 64 + 24, 0x8000);
		expect_fail(write_file("bad.elf", buf, len), NULL, NULL, "overlaps",
			    "ELF segment over the loader's data");
		make_elf64(buf, false);
		put64(buf + 24, 0x1234);
		expect_fail(write_file("bad.elf", buf, len), NULL, NULL, "entry point",
			    "ELF entry outside every segment");
		make_elf64(buf, false);
		buf[18] = 40;
		expect_fail(write_file("bad.elf", buf, len), NULL, NULL, "not x86", "ARM ELF");
		expect_fail(write_file("bad.elf", buf, 40), NULL, NULL, "truncated ELF header",
			    "ELF cut inside its header");
	}

	/* setup header damage */
	memcpy(buf, bz, 0x1000);
	put16(buf + 0x206, 0x20A);
	expect_fail(write_file("bad.bz", buf, 0x1000), NULL, NULL, "no 64-bit entry",
		    "bzImage with boot protocol 2.10");
	memcpy(buf, bz, 0x1000);
	put16(buf + 0x236, 0);
	expect_fail(write_file("bad.bz", buf, 0x1000), NULL, NULL, "XLF_KERNEL_64",
		    "bzImage without XLF_KERNEL_64");

	/* initrd and command line */
	{
		int fd = open(tmp_path("huge-initrd"), O_CREAT | O_TRUNC | O_WRONLY, 0600);

		if (ftruncate(fd, 300 * MIB) < 0)
			perror("ftruncate");
		close(fd);
		snprintf(want, sizeof(want), "accord: initrd %s: does not fit in guest memory (%llu bytes,",
			 tmp_path("huge-initrd"), 300 * MIB);
		expect_fail(write_file("k", bz, bz_len), tmp_path("huge-initrd"), NULL, want,
			    "initrd larger than guest memory");
		unlink(tmp_path("huge-initrd"));
		expect_fail(write_file("k", bz, bz_len), missing, NULL, "No such file",
			    "missing initrd");
		memset(buf, 'x', 5000);
		buf[5000] = 0;
		expect_fail(write_file("k", bz, bz_len), NULL, (char *)buf,
			    "command line: too long (5000 bytes", "over-long command line");
	}
}

/* ---- ACPI ---- */

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s += *p++;
	return s;
}

/* the table at addr if its signature and checksum are right */
static uint8_t *acpi_table(uint64_t addr, const char *sig)
{
	uint8_t *t = gpa(addr, 36);

	if (!t || memcmp(t, sig, 4) || get32(t + 4) < 36)
		return NULL;
	t = gpa(addr, get32(t + 4));
	return t && sum(t, get32(t + 4)) == 0 && !memcmp(t + 10, "ACCORD", 6) ? t : NULL;
}

static bool find_bytes(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
	return memmem(hay, n, needle, m) != NULL;
}

static void test_dsdt_hook(struct aml *a, struct vm *v)
{
	aml_device_begin(a, "PCI0");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0A08");
	aml_name(a, "_CRS");
	aml_buffer_begin(a);
	aml_res_space(a, AML_SPACE_BUS, 0, 0, 256);
	aml_res_space(a, AML_SPACE_IO, AML_IO_ENTIRE_RANGE, 0xD000, 0x3000);
	aml_res_space(a, AML_SPACE_MEM, AML_MEM_RW, 0xC0000000, 0x3EC00000);
	aml_res_space(a, AML_SPACE_MEM, AML_MEM_RW | AML_MEM_CACHEABLE, 0x8000000000ull, GIB);
	aml_res_mem32(a, 0xFEC00000, 0x1000, true);
	aml_res_end(a);
	aml_end(a);
	aml_method_begin(a, "_STA", 0, false);
	aml_return(a);
	aml_integer(a, 0xF);
	aml_end(a);
	aml_end(a);
}

static long test_table_hook(struct vm *v, uint8_t *buf, size_t cap)
{
	if (cap < 60)
		return -1;
	memset(buf, 0, 60);
	acpi_table_header(buf, "MCFG", 60, 1);
	put64(buf + 44, 0xB0000000);
	return 60;
}

static void test_acpi(void)
{
	uint64_t rsdp_addr = 0;
	uint8_t *rsdp, *xsdt, *rsdt, *fadt = NULL, *madt = NULL, *mcfg = NULL, *dsdt, *facs, *p;
	int i, n, lapics = 0, isos = 0, nmis = 0, ioapics = 0;
	bool iso0 = false, iso9 = false;

	acpi_register_dsdt(test_dsdt_hook);
	acpi_register_dsdt(test_dsdt_hook);
	acpi_register_table(test_table_hook);
	ok(acpi_build(&vm, &rsdp_addr) == 0 && rsdp_addr >= ACPI_TABLES_ADDR &&
		   rsdp_addr < ACPI_TABLES_END && !(rsdp_addr & 15),
	   "acpi_build puts the RSDP 16-byte aligned in the BIOS area");
	rsdp = gpa(rsdp_addr, 36);
	ok(!memcmp(rsdp, "RSD PTR ", 8) && sum(rsdp, 20) == 0 && sum(rsdp, 36) == 0 &&
		   rsdp[15] == 2 && get32(rsdp + 20) == 36 && !memcmp(rsdp + 9, "ACCORD", 6),
	   "RSDP: revision 2, both checksums, OEM ID");
	xsdt = acpi_table(get64(rsdp + 24), "XSDT");
	rsdt = acpi_table(get32(rsdp + 16), "RSDT");
	ok(xsdt && rsdt && (get32(xsdt + 4) - 36) / 8 == (get32(rsdt + 4) - 36) / 4,
	   "XSDT and RSDT: checksums, same number of entries");
	n = xsdt ? (get32(xsdt + 4) - 36) / 8 : 0;
	for (i = 0; i < n; i++) {
		uint64_t a = get64(xsdt + 36 + 8 * i);

		if (get32(rsdt + 36 + 4 * i) != a)
			break;
		fadt = fadt ? fadt : acpi_table(a, "FACP");
		madt = madt ? madt : acpi_table(a, "APIC");
		mcfg = mcfg ? mcfg : acpi_table(a, "MCFG");
	}
	ok(i == n && n == 3 && fadt && madt && mcfg, "XSDT lists FADT, MADT and a hook's table, "
						     "each with a good checksum");
	if (!fadt || !madt)
		return;
	ok(get32(fadt + 4) == 276 && fadt[8] == 6 && get32(fadt + 40) == get64(fadt + 140),
	   "FADT: revision 6, 276 bytes, DSDT and X_DSDT agree");
	facs = gpa(get32(fadt + 36), 64);
	ok(facs && !(get32(fadt + 36) & 63) && !memcmp(facs, "FACS", 4) && get32(facs + 4) == 64,
	   "FACS: 64-byte aligned");
	ok(get16(fadt + 46) == ACPI_SCI_IRQ && get32(fadt + 48) == 0 &&
		   get32(fadt + 56) == ACPI_PM1A_EVT && get32(fadt + 64) == ACPI_PM1A_CNT &&
		   get32(fadt + 76) == ACPI_PM_TMR && fadt[88] == 4 && fadt[89] == 2 && fadt[91] == 4,
	   "FADT: SCI, no SMI command, PM1a event/control and timer blocks");
	ok(fadt[148] == 1 && fadt[149] == 32 && get64(fadt + 152) == ACPI_PM1A_EVT &&
		   fadt[172] == 1 && fadt[173] == 16 && get64(fadt + 176) == ACPI_PM1A_CNT &&
		   fadt[208] == 1 && fadt[209] == 32 && get64(fadt + 212) == ACPI_PM_TMR,
	   "FADT: X_ generic addresses match the legacy blocks");
	ok((get32(fadt + 112) & (1 << 10)) && !(get32(fadt + 112) & (1 << 8)) && fadt[116] == 1 &&
		   get64(fadt + 120) == ACPI_RESET_PORT && fadt[128] == ACPI_RESET_VALUE &&
		   (get32(fadt + 112) & 5) == 5,
	   "FADT: reset register, WBINVD, PROC_C1, 24-bit timer");
	ok(!(get16(fadt + 109) & 2) && (get16(fadt + 109) & 4) && !(get16(fadt + 109) & 0x20),
	   "FADT: IAPC_BOOT_ARCH has no 8042, no VGA, a CMOS RTC");

	ok(get32(madt + 36) == LAPIC_BASE && (get32(madt + 40) & 1), "MADT: LAPIC address, PCAT_COMPAT");
	for (p = madt + 44; p < madt + get32(madt + 4) && p[1] >= 2; p += p[1]) {
		if (p[0] == 0 && p[1] == 8 && p[2] == lapics && p[3] == lapics && get32(p + 4) == 1)
			lapics++;
		if (p[0] == 1 && p[1] == 12 && p[2] == NCPUS && get32(p + 4) == IOAPIC_BASE &&
		    get32(p + 8) == 0)
			ioapics++;
		if (p[0] == 2 && p[1] == 10) {
			isos++;
			iso0 |= p[3] == 0 && get32(p + 4) == 2 && (get16(p + 8) & 0xC) != 0xC;
			iso9 |= p[3] == 9 && get32(p + 4) == 9 && get16(p + 8) == 0xD;
		}
		if (p[0] == 4 && p[1] == 6 && p[2] == 0xFF && p[5] == 1)
			nmis++;
	}
	ok(p == madt + get32(madt + 4), "MADT: entries fill the table exactly");
	ok(lapics == NCPUS && ioapics == 1 && isos == 2 && iso0 && iso9 && nmis == 1,
	   "MADT: %d enabled LAPICs, IOAPIC id %d, IRQ0->GSI2 and level SCI overrides, LINT1 NMI",
	   lapics, NCPUS);

	dsdt = acpi_table(get64(fadt + 140), "DSDT");
	ok(dsdt && dsdt[8] == 2, "DSDT: checksum, revision 2");
	if (!dsdt)
		return;
	n = get32(dsdt + 4);
	ok(find_bytes(dsdt, n,
		      "\x08\x5C\x5F\x53\x35\x5F\x12\x08\x04\x0A\x05\x0A\x05\x00\x00", 15),
	   "DSDT: Name (\\_S5, Package (4) {5, 5, 0, 0})");
	ok(dsdt[36] == 0x10 && find_bytes(dsdt + 36, 8, "\x5C\x5F\x53\x42\x5F", 5),
	   "DSDT: Scope (\\_SB) first");
	ok(find_bytes(dsdt, n, "\x5B\x82", 2) &&
		   find_bytes(dsdt, n, "_HID\x0D" "ACPI0007", 13) &&
		   find_bytes(dsdt, n, "\x08_HID\x0C\x41\xD0\x05\x01", 10) &&
		   find_bytes(dsdt, n, "\x47\x01\xF8\x03\xF8\x03\x01\x08\x22\x10\x00\x79\x00", 13),
	   "DSDT: processor devices and COM1 with its _CRS");
	ok(find_bytes(dsdt, n, "\x08_HID\x0C\x41\xD0\x0A\x08", 10) &&
		   find_bytes(dsdt, n, "\x88\x0D\x00\x02\x0C\x00\x00\x00\x00\x00\xFF\x00\x00\x00\x00\x01", 16) &&
		   find_bytes(dsdt, n, "\x8A\x2B\x00\x00\x0C\x03", 6) &&
		   find_bytes(dsdt, n, "\x14\x09_STA\x00\xA4\x0A\x0F", 10),
	   "DSDT: a hook's device with word/qword address spaces and a method");
	ok(get64(mcfg + 44) == 0xB0000000, "hook table content kept");

	/* the AML encoder on its own */
	{
		struct aml a;
		static uint8_t big[200];

		aml_init(&a);
		aml_name(&a, "\\_SB.PCI0.ISA_.RTC");
		aml_buffer_begin(&a);
		aml_bytes(&a, big, sizeof(big));
		aml_end(&a);
		ok(aml_ok(&a) && a.len == 1 + 1 + 1 + 1 + 16 + 1 + 2 + 2 + 200 &&
			   !memcmp(a.buf, "\x08\x5C\x2F\x04_SB_PCI0ISA_RTC_\x11", 21) &&
			   a.buf[21] == (0x40 | ((200 + 2 + 2) & 0xF)) && a.buf[22] == (204 >> 4) &&
			   a.buf[23] == 0x0A && a.buf[24] == 200,
		   "AML: multi-segment name, two-byte PkgLength, buffer size");
		aml_free(&a);
		aml_name(&a, "1BAD");
		ok(!aml_ok(&a), "AML: a name starting with a digit is an error");
		aml_free(&a);
		aml_scope_begin(&a, "\\");
		ok(!aml_ok(&a), "AML: an unclosed scope is an error");
		aml_end(&a);
		aml_end(&a);
		ok(!aml_ok(&a), "AML: an extra aml_end is an error");
		aml_free(&a);
	}
}

/* ---- the stock kernel ---- */

/* The test's own reading of the payload, independent of the loader's code
 * path: it only needs the lz4 legacy format the Debian kernel uses. */
static uint8_t *unpack_stock(const uint8_t *bz, size_t len, size_t *out_len)
{
	size_t pm = (bz[0x1F1] + 1) * 512, pl = get32(bz + 0x24C), pos = 4, o = 0;
	const uint8_t *p = bz + pm + get32(bz + 0x248);
	size_t cap = get32(p + pl - 4);
	uint8_t *out = malloc(cap);

	if (get32(p) != 0x184C2102)
		return NULL;
	while (pos + 4 <= pl - 4) {
		uint32_t n = get32(p + pos);
		int r;

		pos += 4;
		if (n == 0x184C2102)
			continue;
		r = LZ4_decompress_safe((const char *)p + pos, (char *)out + o, n, cap - o);
		if (r < 0)
			return NULL;
		o += r;
		pos += n;
	}
	*out_len = o;
	return out;
}

static void test_stock_kernel(const char *path)
{
	static const char cmdline[] = "console=ttyS0 earlyprintk=serial,ttyS0 nokaslr";
	size_t bz_len = 0, elf_len = 0, initrd_len = 3 * MIB + 123, i;
	uint8_t *bz = path ? read_file(path, &bz_len) : NULL, *elf, *initrd, *bp;
	uint64_t entry = 0, entry_off = 0, kernel_end = 0, rd, rd_size;
	struct boot_config cfg;
	struct boot_state bs;
	bool segs = true;
	char err[512];
	int r;

	if (!bz) {
		skip(path ? "cannot read the stock kernel"
			  : "no stock kernel: no argv[1], no ACCORD_TEST_KERNEL, and "
			    "tests/stock-kernel.sh found no linux-image package",
		     "stock Debian kernel");
		return;
	}
	elf = unpack_stock(bz, bz_len, &elf_len);
	ok(elf && !memcmp(elf, "\x7f" "ELF", 4), "stock kernel: the test unpacks its lz4 payload");
	if (!elf)
		return;
	initrd = malloc(initrd_len);
	for (i = 0; i < initrd_len; i++)
		initrd[i] = i * 7 + (i >> 12);
	cfg = (struct boot_config){ path, write_file("initrd", initrd, initrd_len), cmdline };

	vm_fill(0);
	r = boot_capture(&cfg, &bs, err, sizeof(err));
	err[strcspn(err, "\n")] = 0;
	ok(r == 0 && !err[0], "stock kernel: boot_load succeeds [%s]", err);

	/* every PT_LOAD of the test's own copy of vmlinux is in guest RAM */
	for (i = 0; i < get16(elf + 56); i++) {
		const uint8_t *ph = elf + get64(elf + 32) + i * get16(elf + 54);
		uint64_t paddr = get64(ph + 24), filesz = get64(ph + 32);
		uint64_t memsz = get64(ph + 40), e = get64(elf + 24);

		if (get32(ph) != 1)
			continue;
		segs &= !memcmp(gpa(paddr, filesz), elf + get64(ph + 8), filesz);
		/* vmlinux's e_entry is physical */
		if (e >= paddr && e < paddr + memsz) {
			entry = e;
			entry_off = get64(ph + 8) + (e - paddr);
		}
		if (paddr + memsz > kernel_end)
			kernel_end = paddr + memsz;
	}
	ok(segs, "stock kernel: decompressed vmlinux segments landed at p_paddr");
	ok(bs.rip == entry && entry == get64(bz + 0x258) && entry_off + 64 <= elf_len &&
		   !memcmp(gpa(bs.rip, 64), elf + entry_off, 64),
	   "stock kernel: entry 0x%llx is startup_64 of the ELF, not the decompressor",
	   (unsigned long long)bs.rip);
	check_boot64(&bs, "stock kernel");

	bp = gpa(BOOT_PARAMS_ADDR, 4096);
	ok(!memcmp(bp + 0x1F1, bz + 0x1F1, 0x210 - 0x1F1) &&
		   !memcmp(bp + 0x22C, bz + 0x22C, 0x202 + bz[0x201] - 0x22C),
	   "stock kernel: setup header copied from the file");
	ok(bp[0x210] == 0xFF && (bp[0x211] & 0x81) == 0x81 && get16(bp + 0x224) == 0xFE00 &&
		   get32(bp + 0x214) == get64(bz + 0x258),
	   "stock kernel: loader type, LOADED_HIGH | CAN_USE_HEAP, heap_end_ptr, code32_start");
	ok(get32(bp + 0x228) == BOOT_CMDLINE_ADDR &&
		   !strcmp((char *)gpa(BOOT_CMDLINE_ADDR, sizeof(cmdline)), cmdline),
	   "stock kernel: command line");
	rd = get32(bp + 0x218) | (uint64_t)get32(bp + 0xC0) << 32;
	rd_size = get32(bp + 0x21C) | (uint64_t)get32(bp + 0xC4) << 32;
	ok(rd_size == initrd_len && !(rd & 0xFFF) && rd >= kernel_end && rd + rd_size <= VM_MEM &&
		   VM_MEM - (rd + rd_size) < 4096 && !memcmp(gpa(rd, rd_size), initrd, initrd_len),
	   "stock kernel: initrd at 0x%llx, page-aligned at the top of RAM above the kernel",
	   (unsigned long long)rd);
	ok(!memcmp(gpa(get64(bp + 0x70), 8), "RSD PTR ", 8), "stock kernel: acpi_rsdp_addr");
	check_e820(bp, "stock kernel");

	/* damage the payload's magic: the kernel's decompressor must take over */
	{
		size_t pm = (bz[0x1F1] + 1) * 512;
		uint8_t *copy = malloc(bz_len);

		memcpy(copy, bz, bz_len);
		memset(copy + pm + get32(bz + 0x248), 0, 4);
		cfg.kernel = write_file("vmlinuz.damaged", copy, bz_len);
		vm_fill(0);
		r = boot_capture(&cfg, &bs, err, sizeof(err));
		ok(r == 0 && bs.rip == get64(bz + 0x258) + 0x200 &&
			   !memcmp(gpa(get64(bz + 0x258), get32(bz + 0x1F4) * 16), copy + pm,
				   get32(bz + 0x1F4) * 16),
		   "stock kernel, unknown payload: loaded for the in-guest decompressor");
		rd = get32(gpa(BOOT_PARAMS_ADDR + 0x218, 4));
		ok(rd >= get64(bz + 0x258) + get32(bz + 0x260),
		   "stock kernel, in-guest decompression: initrd above init_size");
		free(copy);
		unlink(cfg.kernel);
	}

	/* the decompressed vmlinux as a file: PVH (it has the note) */
	cfg.kernel = write_file("vmlinux.stock", elf, elf_len);
	vm_fill(0);
	r = boot_capture(&cfg, &bs, err, sizeof(err));
	ok(r == 0 && bs.mode == 32 && bs.rbx == BOOT_PARAMS_ADDR && bs.rip >= entry &&
		   bs.rip < kernel_end &&
		   get32(gpa(BOOT_PARAMS_ADDR, 4)) == 0x336ec578 &&
		   get64(gpa(BOOT_PARAMS_ADDR + 0x10, 8)) && get32(gpa(BOOT_PARAMS_ADDR + 0xC, 4)) == 1,
	   "stock vmlinux: PVH entry 0x%llx with the initrd as a module",
	   (unsigned long long)bs.rip);

	/* without its PVH note it is a plain vmlinux with a physical e_entry */
	{
		uint8_t *note = memmem(elf, elf_len, "\x04\0\0\0\x08\0\0\0\x12\0\0\0Xen", 16);

		if (note)
			note[8] = 0x7F;
		cfg.kernel = write_file("vmlinux.stock", elf, elf_len);
		vm_fill(0);
		r = boot_capture(&cfg, &bs, err, sizeof(err));
		bp = gpa(BOOT_PARAMS_ADDR, 4096);
		ok(note && r == 0 && bs.mode == 64 && bs.rip == entry &&
			   !memcmp(gpa(entry, 64), elf + entry_off, 64) &&
			   get32(bp + 0x218) >= kernel_end && get32(bp + 0x21C) == initrd_len,
		   "stock vmlinux without the PVH note: 64-bit entry at e_entry, initrd above _end");
	}
	unlink(cfg.kernel);

	test_malformed(bz, bz_len, "stock bzImage");
	{
		char *longline = malloc(2100);

		memset(longline, 'y', 2048);
		longline[2048] = 0;
		expect_fail(path, NULL, longline, "at most 2047",
			    "stock kernel: command line over cmdline_size");
		free(longline);
	}
	unlink(cfg.initrd);
	free(initrd);
	free(elf);
	free(bz);
}

/* vm_create wants an engine; these tests never run a vCPU */
static int test_vcpu_init(struct vcpu *v)
{
	return 0;
}

static const struct engine_ops test_engine = { .name = "none", .vcpu_init = test_vcpu_init };

/* argv[1], else $ACCORD_TEST_KERNEL, else what tests/stock-kernel.sh finds
 * (tests/run runs us from the repository root) */
static const char *stock_kernel_path(int argc, char **argv)
{
	static char path[4096];
	const char *given = argc > 1 ? argv[1] : getenv("ACCORD_TEST_KERNEL");
	FILE *p;

	if (given)
		return *given ? given : NULL;
	p = popen("tests/stock-kernel.sh 2>/dev/null", "r");
	if (!p)
		return NULL;
	if (!fgets(path, sizeof(path), p))
		path[0] = 0;
	pclose(p);
	path[strcspn(path, "\n")] = 0;
	return path[0] ? path : NULL;
}

int main(int argc, char **argv)
{
	const char *kernel = stock_kernel_path(argc, argv);
	static uint8_t elf[0x2000], packed[0x4000], bz[0x8000];
	size_t i, bz_len;

	setvbuf(stdout, NULL, _IOLBF, 0);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/unit_boot.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 2;
	}
	if (vm_create(&vm, VM_MEM, NCPUS, &test_engine, PERSONALITY_KVM, VM_IRQCHIP_USER, 0)) {
		fprintf(stderr, "unit_boot: vm_create failed\n");
		return 2;
	}
	syn_code_init();

	test_synthetic_formats();
	test_vmlinux_and_pvh();
	test_multiboot();
	bz_len = make_bzimage(bz, packed, compress_gzip(elf, make_elf64(elf, false), packed,
							 sizeof(packed)));
	test_malformed(bz, bz_len, "synthetic bzImage");
	test_bad_inputs(bz, bz_len);
	test_stock_kernel(kernel);
	test_acpi();

	vm_destroy(&vm);
	for (i = 0; i < 8; i++) {
		static const char *names[] = { "syn.bz", "vmlinux", "pvh", "initrd.small", "mb.elf",
					       "mod", "mb.bin", "cut" };

		unlink(tmp_path(names[i]));
	}
	unlink(tmp_path("random"));
	unlink(tmp_path("empty"));
	unlink(tmp_path("bad.elf"));
	unlink(tmp_path("bad.bz"));
	unlink(tmp_path("k"));
	rmdir(tmpdir);
	printf("1..%d\n%d passed, %d failed\n", n_test, n_pass, n_fail);
	return n_fail ? 1 : 0;
}
