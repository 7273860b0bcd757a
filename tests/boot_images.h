/* Synthetic kernel images for the loader tests (tests/unit_boot.c) and the
 * seed corpus of the loader fuzzer (tests/fuzz/boot.c): an x86-64 ELF
 * (vmlinux, or PVH with its entry note), the payload compressors the
 * kernel's own bzImage may use (gzip, xz, zstd, LZ4 legacy), a bzImage
 * around a payload, and Multiboot kernels (ELF32, and a raw binary with
 * the a.out kludge). The ELF carries syn_code, a pattern the tests look for
 * in guest memory once syn_code_init has filled it. Links with -lz -llzma
 * -lzstd -llz4. */
#ifndef ACCORD_TESTS_BOOT_IMAGES_H
#define ACCORD_TESTS_BOOT_IMAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

/* the loaders' own little-endian get16..put64, MIB and GIB */
#include "boot/internal.h"

#define SYN_PADDR 0x1000000ull
#define SYN_VADDR 0xffffffff81000000ull
#define SYN_ENTRY_OFF 0x40
#define SYN_CODE 0x1000
#define SYN_BSS 0x3000
#define SYN_PVH_ENTRY_OFF 0x80

#define SYN_SETUP_SECTS 1
#define SYN_PM_OFF ((SYN_SETUP_SECTS + 1) * 512)
#define SYN_PAYLOAD_OFF 0x100

#define MB_LOAD 0x100000u

static uint8_t syn_code[SYN_CODE];

static inline void syn_code_init(void)
{
	for (int i = 0; i < SYN_CODE; i++)
		syn_code[i] = i * 13 + 1;
}

/* An x86-64 ELF with one PT_LOAD (syn_code, then bss) and optionally a
 * PT_NOTE holding a PVH entry note. Returns the length written to buf. */
static inline size_t make_elf64(uint8_t *buf, bool pvh)
{
	size_t code_off = 0x200;
	uint8_t *ph = buf + 64, *note = buf + 0x100;

	memset(buf, 0, code_off + SYN_CODE);
	memcpy(buf, "\x7f" "ELF", 4);
	buf[4] = 2;
	buf[5] = 1;
	buf[6] = 1;
	put16(buf + 16, 2);
	put16(buf + 18, 62);
	put32(buf + 20, 1);
	put64(buf + 24, SYN_VADDR + SYN_ENTRY_OFF);
	put64(buf + 32, 64);
	put16(buf + 52, 64);
	put16(buf + 54, 56);
	put16(buf + 56, pvh ? 2 : 1);
	put32(ph, 1);
	put32(ph + 4, 7);
	put64(ph + 8, code_off);
	put64(ph + 16, SYN_VADDR);
	put64(ph + 24, SYN_PADDR);
	put64(ph + 32, SYN_CODE);
	put64(ph + 40, SYN_CODE + SYN_BSS);
	put64(ph + 48, 0x200000);
	if (pvh) {
		ph += 56;
		put32(ph, 4);
		put64(ph + 8, note - buf);
		put64(ph + 32, 20);
		put64(ph + 40, 20);
		put32(note, 4);
		put32(note + 4, 4);
		put32(note + 8, 18);
		memcpy(note + 12, "Xen", 4);
		put32(note + 16, SYN_PADDR + SYN_PVH_ENTRY_OFF);
	}
	memcpy(buf + code_off, syn_code, SYN_CODE);
	return code_off + SYN_CODE;
}

/* The compressors: len bytes of in into at most cap bytes of out, with the
 * uncompressed size in the last four bytes as the kernel's build appends
 * it. Each returns the length written. */
static inline size_t compress_gzip(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
	z_stream z = { 0 };

	deflateInit2(&z, 9, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY);
	z.next_in = (uint8_t *)in;
	z.avail_in = len;
	z.next_out = out;
	z.avail_out = cap;
	deflate(&z, Z_FINISH);
	deflateEnd(&z);
	return z.total_out; /* gzip's trailer already ends in the size */
}

static inline size_t compress_xz(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
	size_t pos = 0;

	lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, NULL, in, len, out, &pos, cap - 4);
	put32(out + pos, len);
	return pos + 4;
}

static inline size_t compress_zstd(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
	size_t n = ZSTD_compress(out, cap - 4, in, len, 19);

	put32(out + n, len);
	return n + 4;
}

/* legacy frame, split into small blocks to exercise the block loop */
static inline size_t compress_lz4(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
	size_t pos = 4, done = 0;

	put32(out, 0x184C2102);
	while (done < len) {
		size_t chunk = len - done < 1024 ? len - done : 1024;
		int n = LZ4_compress_default((const char *)in + done, (char *)out + pos + 4, chunk,
					     cap - pos - 8);

		put32(out + pos, n);
		pos += 4 + n;
		done += chunk;
	}
	put32(out + pos, len);
	return pos + 4;
}

/* A bzImage around payload: 0x100 bytes of stand-in decompressor, then the
 * payload; the setup header describes both. */
static inline size_t make_bzimage(uint8_t *buf, const uint8_t *payload, size_t len)
{
	size_t pm = (SYN_PAYLOAD_OFF + len + 15) & ~15ul;

	memset(buf, 0, SYN_PM_OFF + pm);
	buf[0x1F1] = SYN_SETUP_SECTS;
	put32(buf + 0x1F4, pm / 16);
	put16(buf + 0x1FE, 0xAA55);
	buf[0x200] = 0xEB;
	buf[0x201] = 0x6A; /* header ends at 0x26C */
	memcpy(buf + 0x202, "HdrS", 4);
	put16(buf + 0x206, 0x20F);
	buf[0x211] = 0x01;
	put32(buf + 0x22C, 0x7fffffff);
	put32(buf + 0x230, 0x200000);
	buf[0x234] = 1;
	put16(buf + 0x236, 0x3);
	put32(buf + 0x238, 2047);
	put32(buf + 0x248, SYN_PAYLOAD_OFF);
	put32(buf + 0x24C, len);
	put64(buf + 0x258, SYN_PADDR);
	put32(buf + 0x260, 0x400000);
	memset(buf + SYN_PM_OFF, 0xCC, SYN_PAYLOAD_OFF);
	memcpy(buf + SYN_PM_OFF + SYN_PAYLOAD_OFF, payload, len);
	return SYN_PM_OFF + pm;
}

static inline void mb_header(uint8_t *p, uint32_t flags)
{
	put32(p, 0x1BADB002);
	put32(p + 4, flags);
	put32(p + 8, -(0x1BADB002u + flags));
}

/* An ELF32 Multiboot kernel with the given header flags: one segment at
 * MB_LOAD, 0x100 bytes in the file (the header, then 0xE0 bytes of NOPs
 * from the entry at MB_LOAD + 0x20) and bss to 0x800. Needs 0x1000 bytes
 * of buf; returns 0x200. */
static inline size_t make_mb_elf32(uint8_t *buf, uint32_t flags)
{
	uint8_t *ph = buf + 52;

	memset(buf, 0, 0x1000);
	memcpy(buf, "\x7f" "ELF", 4);
	buf[4] = 1;
	buf[5] = 1;
	buf[6] = 1;
	put16(buf + 16, 2);
	put16(buf + 18, 3);
	put32(buf + 20, 1);
	put32(buf + 24, MB_LOAD + 0x20);
	put32(buf + 28, 52);
	put16(buf + 40, 52);
	put16(buf + 42, 32);
	put16(buf + 44, 1);
	put32(ph, 1);
	put32(ph + 4, 0x100);
	put32(ph + 8, MB_LOAD);
	put32(ph + 12, MB_LOAD);
	put32(ph + 16, 0x100);
	put32(ph + 20, 0x800);
	mb_header(buf + 0x100, flags);
	memset(buf + 0x120, 0x90, 0xE0);
	return 0x200;
}

/* A raw binary with the a.out kludge: 0x400 bytes of NOPs loaded at
 * MB_LOAD, the header at 0x10, bss to MB_LOAD + 0x2000, the entry at
 * MB_LOAD + 0x40. Returns 0x400. */
static inline size_t make_mb_aout(uint8_t *buf)
{
	memset(buf, 0x90, 0x400);
	mb_header(buf + 0x10, 0x10003);
	put32(buf + 0x1C, MB_LOAD + 0x10);
	put32(buf + 0x20, MB_LOAD);
	put32(buf + 0x24, MB_LOAD + 0x400);
	put32(buf + 0x28, MB_LOAD + 0x2000);
	put32(buf + 0x2C, MB_LOAD + 0x40);
	return 0x400;
}

#endif
