/* Linux x86 boot protocol, 64-bit entry (Documentation/arch/x86/boot.rst):
 * a bzImage whose compressed vmlinux we unpack on the host when we can
 * (else the kernel's own decompressor runs), or a vmlinux ELF. */
#include <string.h>
#include <stdlib.h>

#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include "boot/internal.h"
#include "engine/engine.h"
#include "vm/vm.h"

/* boot_params ("zero page") fields */
#define BP_SIZE 4096
#define BP_ACPI_RSDP_ADDR 0x070
#define BP_EXT_RAMDISK_IMAGE 0x0C0
#define BP_EXT_RAMDISK_SIZE 0x0C4
#define BP_E820_ENTRIES 0x1E8
#define BP_E820_TABLE 0x2D0
#define BP_E820_ENTRY_SIZE 20

/* setup header fields, at their offsets in both the file and boot_params */
#define HDR_START 0x1F1
#define HDR_SETUP_SECTS 0x1F1
#define HDR_SYSSIZE 0x1F4
#define HDR_BOOT_FLAG 0x1FE
#define HDR_JUMP 0x200
#define HDR_MAGIC 0x202
#define HDR_VERSION 0x206
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_LOADFLAGS 0x211
#define HDR_CODE32_START 0x214
#define HDR_RAMDISK_IMAGE 0x218
#define HDR_RAMDISK_SIZE 0x21C
#define HDR_HEAP_END_PTR 0x224
#define HDR_CMD_LINE_PTR 0x228
#define HDR_INITRD_ADDR_MAX 0x22C
#define HDR_KERNEL_ALIGNMENT 0x230
#define HDR_XLOADFLAGS 0x236
#define HDR_CMDLINE_SIZE 0x238
#define HDR_PAYLOAD_OFFSET 0x248
#define HDR_PAYLOAD_LENGTH 0x24C
#define HDR_PREF_ADDRESS 0x258
#define HDR_INIT_SIZE 0x260
/* a 2.12 header reaches at least past init_size; boot_params ends it here */
#define HDR_MIN_END 0x264
#define HDR_MAX_END 0x290

#define LOADED_HIGH 0x01
#define CAN_USE_HEAP 0x80
#define XLF_KERNEL_64 0x01
#define XLF_CAN_BE_LOADED_ABOVE_4G 0x02

/* x86 COMMAND_LINE_SIZE - 1: what a vmlinux without a header takes */
#define VMLINUX_CMDLINE_MAX 2047
#define VMLINUX_INITRD_ADDR_MAX 0x7fffffffu

/* identity map of the first 4 GiB: PML4, PDPT, 4 page directories */
#define PT_PAGES 6
_Static_assert(BOOT_PML4_ADDR + PT_PAGES * 4096 <= BOOT_CMDLINE_ADDR,
	       "page tables overlap the command line");
_Static_assert(BOOT_PARAMS_ADDR + BP_SIZE <= BOOT_PML4_ADDR, "boot_params overlaps page tables");

struct linux_layout {
	uint64_t entry;
	uint64_t kernel_end;   /* the initrd goes above this */
	uint64_t initrd_limit; /* ... and below this */
	size_t cmdline_max;
};

static int linux_put_page_tables(struct boot_ctx *c)
{
	uint8_t *pt = vm_gpa(c->vm, BOOT_PML4_ADDR, PT_PAGES * PAGE_SIZE);
	unsigned i;

	if (!pt)
		return boot_fail(c, "guest RAM does not cover the page tables at 0x%x",
				 BOOT_PML4_ADDR);
	memset(pt, 0, PT_PAGES * PAGE_SIZE);
	put64(pt, (BOOT_PML4_ADDR + PAGE_SIZE) | 3);
	for (i = 0; i < 4; i++)
		put64(pt + PAGE_SIZE + 8 * i, (BOOT_PML4_ADDR + (2 + i) * PAGE_SIZE) | 3);
	/* present, writable, 2 MiB page */
	for (i = 0; i < 4 * 512; i++)
		put64(pt + 2 * PAGE_SIZE + 8 * i, (uint64_t)i * 2 * MIB | 0x83);
	return 0;
}

static int linux_finish(struct boot_ctx *c, uint8_t *bp, const struct linux_layout *l,
			struct boot_state *bs)
{
	struct mem_range map[BOOT_MEMMAP_MAX];
	uint64_t initrd, initrd_size, hi;
	int i, n;

	if (boot_put_cmdline(c, l->cmdline_max))
		return -1;
	hi = l->initrd_limit < c->vm->low_size ? l->initrd_limit : c->vm->low_size;
	if (boot_load_initrd(c, l->kernel_end, hi, &initrd, &initrd_size))
		return -1;

	bp[HDR_TYPE_OF_LOADER] = 0xFF;
	bp[HDR_LOADFLAGS] |= LOADED_HIGH | CAN_USE_HEAP;
	/* the end of a 64 KiB real-mode segment, as if setup ran there */
	put16(bp + HDR_HEAP_END_PTR, 0xFE00);
	put32(bp + HDR_CMD_LINE_PTR, BOOT_CMDLINE_ADDR);
	put32(bp + HDR_RAMDISK_IMAGE, initrd);
	put32(bp + HDR_RAMDISK_SIZE, initrd_size);
	put32(bp + BP_EXT_RAMDISK_IMAGE, initrd >> 32);
	put32(bp + BP_EXT_RAMDISK_SIZE, initrd_size >> 32);
	put64(bp + BP_ACPI_RSDP_ADDR, c->rsdp);

	n = boot_memmap(c->vm, map);
	bp[BP_E820_ENTRIES] = n;
	for (i = 0; i < n; i++) {
		uint8_t *e = bp + BP_E820_TABLE + i * BP_E820_ENTRY_SIZE;

		put64(e, map[i].addr);
		put64(e + 8, map[i].size);
		put32(e + 16, map[i].type);
	}
	if (vm_write_phys(c->vm, BOOT_PARAMS_ADDR, bp, BP_SIZE))
		return boot_fail(c, "guest RAM does not cover boot_params at 0x%x",
				 BOOT_PARAMS_ADDR);
	if (linux_put_page_tables(c) || boot_put_gdt(c, GDT_CODE64, bs))
		return -1;

	bs->mode = 64;
	bs->rip = l->entry;
	bs->rsi = BOOT_PARAMS_ADDR;
	bs->cr3 = BOOT_PML4_ADDR;
	bs->rsp = BOOT_STACK_TOP;
	return 0;
}

static int unpack_gzip(const uint8_t *in, size_t len, uint8_t *out, size_t cap, size_t *done)
{
	z_stream z = { 0 };
	int r;

	/* 16 + window bits: expect the gzip wrapper */
	if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
		return -1;
	z.next_in = (Bytef *)in;
	z.avail_in = len;
	z.next_out = out;
	z.avail_out = cap;
	r = inflate(&z, Z_FINISH);
	*done = z.total_out;
	inflateEnd(&z);
	return r == Z_STREAM_END ? 0 : -1;
}

static int unpack_xz(const uint8_t *in, size_t len, uint8_t *out, size_t cap, size_t *done)
{
	lzma_stream s = LZMA_STREAM_INIT;
	lzma_ret r;

	if (lzma_stream_decoder(&s, UINT64_MAX, 0) != LZMA_OK)
		return -1;
	s.next_in = in;
	s.avail_in = len;
	s.next_out = out;
	s.avail_out = cap;
	r = lzma_code(&s, LZMA_FINISH);
	*done = s.total_out;
	lzma_end(&s);
	return r == LZMA_STREAM_END ? 0 : -1;
}

static int unpack_zstd(const uint8_t *in, size_t len, uint8_t *out, size_t cap, size_t *done)
{
	size_t r = ZSTD_decompress(out, cap, in, len);

	if (ZSTD_isError(r))
		return -1;
	*done = r;
	return 0;
}

/* The kernel's LZ4 is the legacy frame: magic, then blocks of at most 8 MiB
 * output, each preceded by its compressed size; frames may be concatenated. */
#define LZ4_LEGACY_MAGIC 0x184C2102u
#define LZ4_LEGACY_BLOCK (8 << 20)

static int unpack_lz4(const uint8_t *in, size_t len, uint8_t *out, size_t cap, size_t *done)
{
	size_t pos = 4, o = 0;

	while (len - pos >= 4) {
		uint32_t bsz = get32(in + pos);
		size_t room = cap - o < LZ4_LEGACY_BLOCK ? cap - o : LZ4_LEGACY_BLOCK;
		int n;

		pos += 4;
		if (bsz == LZ4_LEGACY_MAGIC)
			continue;
		if (bsz > len - pos || bsz > (uint32_t)LZ4_compressBound(LZ4_LEGACY_BLOCK))
			return -1;
		n = LZ4_decompress_safe((const char *)in + pos, (char *)out + o, bsz, room);
		if (n < 0)
			return -1;
		o += n;
		pos += bsz;
	}
	if (pos != len)
		return -1;
	*done = o;
	return 0;
}

/* Decompresses a bzImage payload into a malloc'd buffer; NULL when the
 * format is not one we unpack or the data is bad. */
static uint8_t *linux_unpack(const uint8_t *in, size_t len, uint64_t max, size_t *out_len)
{
	int (*unpack)(const uint8_t *, size_t, uint8_t *, size_t, size_t *);
	size_t cap, stream_len = len - 4;
	uint8_t *out;

	if (len < 16)
		return NULL;
	/* The build appends the decompressed size (le32); gzip's own trailer
	 * ends with the same value, so only gzip's stream includes it. */
	cap = get32(in + len - 4);
	if (!memcmp(in, "\x1f\x8b", 2)) {
		unpack = unpack_gzip;
		stream_len = len;
	} else if (!memcmp(in, "\xfd" "7zXZ\0", 6)) {
		unpack = unpack_xz;
	} else if (!memcmp(in, "\x02\x21\x4c\x18", 4)) {
		unpack = unpack_lz4;
	} else if (!memcmp(in, "\x28\xb5\x2f\xfd", 4)) {
		unpack = unpack_zstd;
	} else {
		/* bzip2, lzma, lzo: left to the kernel's decompressor */
		return NULL;
	}
	if (cap < 64 || cap > max)
		return NULL;
	out = malloc(cap);
	if (!out)
		return NULL;
	if (unpack(in, stream_len, out, cap, out_len)) {
		free(out);
		return NULL;
	}
	return out;
}

/* Loads the payload's vmlinux at its physical addresses. Failure only means
 * the kernel's own decompressor gets the job, so errors stay quiet. */
static int bzimage_load_vmlinux(struct boot_ctx *c, const uint8_t *payload, size_t len,
				struct linux_layout *l)
{
	struct boot_ctx quiet = *c;
	struct kfile f;
	struct elf e;
	uint64_t lo;
	int ret = -1;

	f.data = linux_unpack(payload, len, c->vm->low_size, &f.size);
	if (!f.data)
		return -1;
	quiet.err[0] = 0;
	if (!elf_parse(&quiet, &f, &e) && e.class == 64 && e.machine == EM_X86_64 &&
	    !elf_load(&quiet, &e, &lo, &l->kernel_end) && !elf_entry_phys(&quiet, &e, &l->entry) &&
	    l->entry < 4 * GIB)
		ret = 0;
	free((void *)f.data);
	return ret;
}

int linux_load_bzimage(struct boot_ctx *c, const struct kfile *f, struct boot_state *bs)
{
	const uint8_t *d = f->data;
	uint8_t bp[BP_SIZE] = { 0 };
	struct linux_layout l;
	uint64_t setup_size, syssize, pref, load_size, payload_off, payload_len;
	unsigned version, hdr_end, setup_sects;
	uint16_t xlf;

	if (d[HDR_JUMP] != 0xEB)
		return kernel_fail(c, "malformed setup header: no jump at 0x200");
	hdr_end = HDR_MAGIC + d[HDR_JUMP + 1];
	if (hdr_end > f->size)
		return kernel_fail(c, "truncated: the setup header ends at %u, the file has %zu bytes",
				   hdr_end, f->size);
	version = hdr_end >= HDR_VERSION + 2 ? get16(d + HDR_VERSION) : 0;
	if (version && version < 0x20C)
		return kernel_fail(c, "boot protocol %u.%02u has no 64-bit entry point (needs 2.12)",
				   version >> 8, version & 0xFF);
	if (hdr_end < HDR_MIN_END || hdr_end > HDR_MAX_END)
		return kernel_fail(c, "malformed setup header: %u bytes long",
				   hdr_end - HDR_START);
	xlf = get16(d + HDR_XLOADFLAGS);
	if (!(xlf & XLF_KERNEL_64))
		return kernel_fail(c, "not a 64-bit kernel (XLF_KERNEL_64 is clear)");

	setup_sects = d[HDR_SETUP_SECTS] ? d[HDR_SETUP_SECTS] : 4;
	setup_size = (setup_sects + 1) * 512ull;
	if (setup_size > f->size)
		return kernel_fail(c, "truncated: the setup code needs %llu bytes, the file has %zu",
				   (unsigned long long)setup_size, f->size);
	syssize = get32(d + HDR_SYSSIZE) * 16ull;
	if (!syssize)
		return kernel_fail(c, "malformed setup header: syssize is 0");
	if (syssize > f->size - setup_size)
		return kernel_fail(c, "truncated: the kernel needs %llu bytes, the file has %zu",
				   (unsigned long long)(setup_size + syssize), f->size);
	payload_off = get32(d + HDR_PAYLOAD_OFFSET);
	payload_len = get32(d + HDR_PAYLOAD_LENGTH);
	if (payload_off > syssize || payload_len > syssize - payload_off)
		return kernel_fail(c, "payload at %llu (%llu bytes) lies outside the %llu-byte "
				   "protected-mode kernel",
				   (unsigned long long)payload_off,
				   (unsigned long long)payload_len, (unsigned long long)syssize);
	pref = get64(d + HDR_PREF_ADDRESS);
	load_size = get32(d + HDR_INIT_SIZE);
	if (load_size < syssize)
		load_size = syssize;

	memcpy(bp + HDR_START, d + HDR_START, hdr_end - HDR_START);
	l.initrd_limit = xlf & XLF_CAN_BE_LOADED_ABOVE_4G
				 ? 4 * GIB
				 : (uint64_t)get32(d + HDR_INITRD_ADDR_MAX) + 1;
	l.cmdline_max = get32(d + HDR_CMDLINE_SIZE);

	if (bzimage_load_vmlinux(c, d + setup_size + payload_off, payload_len, &l)) {
		uint8_t *dst;

		if (boot_check_range(c, "kernel", pref, load_size))
			return -1;
		if (pref + load_size > 4 * GIB)
			return kernel_fail(c, "load address 0x%llx is above the 4 GiB identity map",
					   (unsigned long long)pref);
		dst = vm_gpa(c->vm, pref, load_size);
		memcpy(dst, d + setup_size, syssize);
		memset(dst + syssize, 0, load_size - syssize);
		/* the 64-bit entry of the kernel's own decompressor */
		l.entry = pref + 0x200;
		l.kernel_end = pref + load_size;
	}
	put32(bp + HDR_CODE32_START, pref);
	return linux_finish(c, bp, &l, bs);
}

int linux_load_vmlinux(struct boot_ctx *c, const struct elf *e, struct boot_state *bs)
{
	uint8_t bp[BP_SIZE] = { 0 };
	struct linux_layout l;
	uint64_t lo;

	if (elf_load(c, e, &lo, &l.kernel_end) || elf_entry_phys(c, e, &l.entry))
		return -1;
	if (l.entry >= 4 * GIB)
		return kernel_fail(c, "entry point 0x%llx is above the 4 GiB identity map",
				   (unsigned long long)l.entry);
	/* no setup header in the file: present the one a bzImage would have */
	put16(bp + HDR_BOOT_FLAG, 0xAA55);
	memcpy(bp + HDR_MAGIC, "HdrS", 4);
	put16(bp + HDR_VERSION, 0x20F);
	put32(bp + HDR_CODE32_START, lo);
	put32(bp + HDR_INITRD_ADDR_MAX, VMLINUX_INITRD_ADDR_MAX);
	put32(bp + HDR_KERNEL_ALIGNMENT, 2 * MIB);
	put16(bp + HDR_XLOADFLAGS, XLF_KERNEL_64);
	put32(bp + HDR_CMDLINE_SIZE, VMLINUX_CMDLINE_MAX);
	put64(bp + HDR_PREF_ADDRESS, lo);
	l.initrd_limit = VMLINUX_INITRD_ADDR_MAX + 1ull;
	l.cmdline_max = VMLINUX_CMDLINE_MAX;
	return linux_finish(c, bp, &l, bs);
}
