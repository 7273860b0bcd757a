/* The kernel loaders on untrusted files: each input is a kernel file that
 * boot_load reads through a memfd into a small VM, so format detection,
 * the bzImage setup header and payload decompression (gzip, xz, zstd,
 * LZ4), ELF program headers and notes (vmlinux, PVH) and Multiboot (a.out
 * kludge and ELF) all see it. A load that succeeds must leave an entry
 * state the engines accept. */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <unistd.h>

#include "boot/boot.h"
#include "engine/engine.h"
#include "vm/vm.h"
#include "fuzz.h"
#include "testvm.h"
#include "boot_images.h"

#define RAM (64ull << 20)

static struct vm vm;
static int kfd;
static char kpath[64];

static void fuzz_init(void)
{
	if (vm_create(&vm, RAM, 1, &stub_engine, PERSONALITY_KVM, VM_IRQCHIP_USER, 0) < 0)
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

/* ---- seeds: one small image of each format (tests/boot_images.h) ---- */

static void fuzz_seeds(void)
{
	static uint8_t elf[0x2000], z[0x2000], img[0x4000];
	size_t n;

	syn_code_init();
	n = make_elf64(elf, false);
	fuzz_seed("vmlinux", elf, n);
	fuzz_seed("pvh64", img, make_elf64(img, true));
	fuzz_seed("multiboot-elf", img, make_mb_elf32(img, 0x3));
	fuzz_seed("multiboot-aout", img, make_mb_aout(img));
	fuzz_seed("bzimage-gzip", img, make_bzimage(img, z, compress_gzip(elf, n, z, sizeof(z))));
	fuzz_seed("bzimage-xz", img, make_bzimage(img, z, compress_xz(elf, n, z, sizeof(z))));
	fuzz_seed("bzimage-zstd", img, make_bzimage(img, z, compress_zstd(elf, n, z, sizeof(z))));
	fuzz_seed("bzimage-lz4", img, make_bzimage(img, z, compress_lz4(elf, n, z, sizeof(z))));

	/* a payload the host does not unpack: loaded for the kernel's own
	 * decompressor */
	memset(z, 0x5a, 64);
	fuzz_seed("bzimage-raw", img, make_bzimage(img, z, 64));
}
