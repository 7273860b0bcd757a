/* The kernel loaders on untrusted files: each input is a kernel file that
 * boot_load reads through a memfd into a small VM, so format detection,
 * the bzImage setup header and payload decompression (gzip, xz, zstd,
 * LZ4), ELF program headers and notes (vmlinux, PVH) and Multiboot (a.out
 * kludge and ELF) all see it. A load that succeeds must leave an entry
 * state the engines accept. */
#define _GNU_SOURCE
#include <lz4.h>
#include <lzma.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "boot/boot.h"
#include "engine/engine.h"
#include "vm/vm.h"
#include "fuzz.h"
#include "testvm.h"

#define RAM (64ull << 20)

static struct vm vm;
static int kfd;
static char kpath[64];

static void fuzz_init(void)
{
	if (vm_create(&vm, RAM, 1, &stub_engine, PERSONALITY_KVM) < 0)
		abort();
	kfd = memfd_create("kernel", 0);
	if (kfd < 0)
		abort();
	snprintf(kpath, sizeof(kpath), "/proc/self/fd/%d", kfd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct boot_config cfg = { .kernel = kpath, .cmdline = "console=ttyS0" };
	struct boot_state bs;

	if (ftruncate(kfd, 0) < 0 || (size && pwrite(kfd, data, size, 0) != (ssize_t)size))
		abort();
	if (boot_load(&vm, &cfg, &bs) == 0) {
		/* what set_boot_state relies on */
		if (bs.mode != 32 && bs.mode != 64)
			abort();
		if (bs.rip >= vm.low_size && bs.mode == 32)
			abort();
	}
	return 0;
}

/* ---- seeds: one small image of each format ---- */

#define PADDR 0x1000000u
#define VADDR 0xffffffff81000000ull
#define CODE 0x400

static size_t elf64(uint8_t *b, bool pvh)
{
	uint8_t *ph = b + 64, *note = b + 0x100;
	size_t off = 0x200;

	memset(b, 0, off + CODE);
	memcpy(b, "\x7f" "ELF\x02\x01\x01", 7);
	fz_put16(b + 16, 2);
	fz_put16(b + 18, 62);
	fz_put32(b + 20, 1);
	fz_put64(b + 24, VADDR + 0x40);
	fz_put64(b + 32, 64);
	fz_put16(b + 52, 64);
	fz_put16(b + 54, 56);
	fz_put16(b + 56, pvh ? 2 : 1);
	fz_put32(ph, 1);
	fz_put32(ph + 4, 7);
	fz_put64(ph + 8, off);
	fz_put64(ph + 16, VADDR);
	fz_put64(ph + 24, PADDR);
	fz_put64(ph + 32, CODE);
	fz_put64(ph + 40, CODE + 0x1000);
	if (pvh) {
		ph += 56;
		fz_put32(ph, 4);
		fz_put64(ph + 8, note - b);
		fz_put64(ph + 32, 20);
		fz_put64(ph + 40, 20);
		fz_put32(note, 4);
		fz_put32(note + 4, 4);
		fz_put32(note + 8, 18);
		memcpy(note + 12, "Xen", 4);
		fz_put32(note + 16, PADDR + 0x80);
	}
	memset(b + off, 0x90, CODE);
	return off + CODE;
}

/* a 32-bit ELF with a Multiboot header in its first page */
static size_t mb_elf32(uint8_t *b)
{
	uint8_t *ph = b + 52, *mb = b + 0x80;
	size_t off = 0x100;

	memset(b, 0, off + CODE);
	memcpy(b, "\x7f" "ELF\x01\x01\x01", 7);
	fz_put16(b + 16, 2);
	fz_put16(b + 18, 3);
	fz_put32(b + 20, 1);
	fz_put32(b + 24, 0x100000);
	fz_put32(b + 28, 52);
	fz_put16(b + 40, 52);
	fz_put16(b + 42, 32);
	fz_put16(b + 44, 1);
	fz_put32(ph, 1);
	fz_put32(ph + 4, off);
	fz_put32(ph + 8, 0x100000);
	fz_put32(ph + 12, 0x100000);
	fz_put32(ph + 16, CODE);
	fz_put32(ph + 20, CODE + 0x100);
	fz_put32(mb, 0x1BADB002);
	fz_put32(mb + 4, 3);
	fz_put32(mb + 8, -(0x1BADB002u + 3));
	memset(b + off, 0x90, CODE);
	return off + CODE;
}

/* a flat image with the a.out kludge */
static size_t mb_aout(uint8_t *b)
{
	memset(b, 0x90, 0x800);
	fz_put32(b, 0x1BADB002);
	fz_put32(b + 4, 0x10003);
	fz_put32(b + 8, -(0x1BADB002u + 0x10003));
	fz_put32(b + 12, 0x100000);
	fz_put32(b + 16, 0x100000);
	fz_put32(b + 20, 0x100800);
	fz_put32(b + 24, 0x102000);
	fz_put32(b + 28, 0x100020);
	return 0x800;
}

static size_t bzimage(uint8_t *b, const uint8_t *payload, size_t len)
{
	size_t pm = (0x100 + len + 15) & ~15ul, pm_off = 2 * 512;

	memset(b, 0, pm_off + pm);
	b[0x1F1] = 1;
	fz_put32(b + 0x1F4, pm / 16);
	fz_put16(b + 0x1FE, 0xAA55);
	b[0x200] = 0xEB;
	b[0x201] = 0x6A;
	memcpy(b + 0x202, "HdrS", 4);
	fz_put16(b + 0x206, 0x20F);
	b[0x211] = 0x01;
	fz_put32(b + 0x22C, 0x7fffffff);
	fz_put32(b + 0x230, 0x200000);
	b[0x234] = 1;
	fz_put16(b + 0x236, 0x3);
	fz_put32(b + 0x238, 2047);
	fz_put32(b + 0x248, 0x100);
	fz_put32(b + 0x24C, len);
	fz_put64(b + 0x258, PADDR);
	fz_put32(b + 0x260, 0x400000);
	memset(b + pm_off, 0xCC, 0x100);
	memcpy(b + pm_off + 0x100, payload, len);
	return pm_off + pm;
}

static void fuzz_seeds(void)
{
	static uint8_t elf[0x1000], z[0x2000], img[0x4000];
	size_t n = elf64(elf, false), zn, pos;
	z_stream zs = { 0 };

	fuzz_seed("vmlinux", elf, n);
	fuzz_seed("pvh64", img, elf64(img, true));
	fuzz_seed("multiboot-elf", img, mb_elf32(img));
	fuzz_seed("multiboot-aout", img, mb_aout(img));

	deflateInit2(&zs, 9, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY);
	zs.next_in = elf;
	zs.avail_in = n;
	zs.next_out = z;
	zs.avail_out = sizeof(z);
	deflate(&zs, Z_FINISH);
	deflateEnd(&zs);
	fuzz_seed("bzimage-gzip", img, bzimage(img, z, zs.total_out));

	pos = 0;
	lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, NULL, elf, n, z, &pos, sizeof(z) - 4);
	fz_put32(z + pos, n);
	fuzz_seed("bzimage-xz", img, bzimage(img, z, pos + 4));

	zn = ZSTD_compress(z, sizeof(z) - 4, elf, n, 19);
	fz_put32(z + zn, n);
	fuzz_seed("bzimage-zstd", img, bzimage(img, z, zn + 4));

	fz_put32(z, 0x184C2102);
	zn = LZ4_compress_default((const char *)elf, (char *)z + 8, n, sizeof(z) - 12);
	fz_put32(z + 4, zn);
	fz_put32(z + 8 + zn, n);
	fuzz_seed("bzimage-lz4", img, bzimage(img, z, zn + 12));

	/* a payload the host does not unpack: loaded for the kernel's own
	 * decompressor */
	memset(z, 0x5a, 64);
	fuzz_seed("bzimage-raw", img, bzimage(img, z, 64));
}
