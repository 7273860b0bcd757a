/* What the boot loaders share: the kernel file, error reporting, ELF
 * parsing, the memory map, and the pieces every entry state needs. */
#ifndef ACCORD_BOOT_INTERNAL_H
#define ACCORD_BOOT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "boot/boot.h"
#include "dev/platform.h"

struct vm;
struct boot_state;

#define KIB 1024ull
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)
#define PAGE_SIZE 4096ull

/* Low memory the loaders' own structures use (GDT, boot_params or start
 * info, page tables, command line); kernels may not load over it. */
#define BOOT_DATA_END (BOOT_CMDLINE_ADDR + BOOT_CMDLINE_MAX)
/* The Multiboot info, PVH start info and their lists share boot_params' page:
 * only one loader runs per boot. */
#define BOOT_INFO_ADDR BOOT_PARAMS_ADDR

/* First error wins: a loader may try something (host decompression) and
 * fall back, so messages are collected, not printed, until boot_load ends. */
struct boot_ctx {
	struct vm *vm;
	const struct boot_config *cfg;
	uint64_t rsdp;
	char err[4096 + 256]; /* room for a path and the message */
};

/* Record the error (if it is the first) and return -1: as given, or after
 * "kernel FILE: " or "initrd FILE: ". */
int boot_fail(struct boot_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int kernel_fail(struct boot_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int initrd_fail(struct boot_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

struct kfile {
	const uint8_t *data;
	size_t size;
};

static inline uint16_t get16(const uint8_t *p)
{
	return p[0] | p[1] << 8;
}

static inline uint32_t get32(const uint8_t *p)
{
	return get16(p) | (uint32_t)get16(p + 2) << 16;
}

static inline uint64_t get64(const uint8_t *p)
{
	return get32(p) | (uint64_t)get32(p + 4) << 32;
}

static inline void put16(uint8_t *p, uint16_t v)
{
	p[0] = v;
	p[1] = v >> 8;
}

static inline void put32(uint8_t *p, uint32_t v)
{
	put16(p, v);
	put16(p + 2, v >> 16);
}

static inline void put64(uint8_t *p, uint64_t v)
{
	put32(p, v);
	put32(p + 4, v >> 32);
}

static inline uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* ELF32 or ELF64, little-endian, x86; the program header table is known to
 * lie inside the file. */
struct elf {
	const uint8_t *data;
	size_t size;
	int class; /* 32 or 64 */
	uint16_t machine;
	uint64_t entry, phoff;
	unsigned phentsize, phnum;
};

struct elf_seg {
	uint32_t type;
	uint64_t offset, vaddr, paddr, filesz, memsz;
};

#define PT_LOAD 1
#define PT_NOTE 4
#define EM_386 3
#define EM_X86_64 62

bool elf_is(const struct kfile *f);
int elf_parse(struct boot_ctx *c, const struct kfile *f, struct elf *e);
void elf_seg(const struct elf *e, unsigned i, struct elf_seg *s);
/* Copies every PT_LOAD to its p_paddr and zeroes the rest of p_memsz;
 * [*lo, *hi) receives the span loaded. */
int elf_load(struct boot_ctx *c, const struct elf *e, uint64_t *lo, uint64_t *hi);
/* e_entry as a physical address, through the PT_LOAD that contains it */
int elf_entry_phys(struct boot_ctx *c, const struct elf *e, uint64_t *entry);
/* the descriptor of the first note NAME/TYPE in a PT_NOTE, or NULL */
const uint8_t *elf_find_note(const struct elf *e, const char *name, uint32_t type,
			     uint32_t *desc_len);

/* Checks that [addr, addr+len) is guest RAM outside the loaders' data. */
int boot_check_range(struct boot_ctx *c, const char *what, uint64_t addr, uint64_t len);

/* The guest's memory map (e820 types), shared by every loader. */
enum { MEM_RAM = 1, MEM_RESERVED = 2 };
struct mem_range {
	uint64_t addr, size;
	uint32_t type;
};
#define BOOT_MEMMAP_MAX 4
int boot_memmap(struct vm *vm, struct mem_range *r);

/* Copies the command line to BOOT_CMDLINE_ADDR unless longer than max. */
int boot_put_cmdline(struct boot_ctx *c, size_t max);

/* Reads the initrd into the highest page-aligned place in [lo, hi). */
int boot_load_initrd(struct boot_ctx *c, uint64_t lo, uint64_t hi, uint64_t *addr,
		     uint64_t *size);

/* GDT at BOOT_GDT_ADDR: null, null, code at 0x10, flat data at 0x18 */
int boot_put_gdt(struct boot_ctx *c, uint64_t code_desc, struct boot_state *bs);
#define GDT_CODE64 0x00AF9A000000FFFFull
#define GDT_CODE32 0x00CF9A000000FFFFull
#define GDT_DATA 0x00CF92000000FFFFull

/* the formats */
int linux_load_bzimage(struct boot_ctx *c, const struct kfile *f, struct boot_state *bs);
int linux_load_vmlinux(struct boot_ctx *c, const struct elf *e, struct boot_state *bs);
int pvh_load(struct boot_ctx *c, const struct elf *e, uint32_t entry, struct boot_state *bs);
/* off: file offset of a Multiboot header whose checksum is good */
int multiboot_load(struct boot_ctx *c, const struct kfile *f, size_t off,
		   struct boot_state *bs);
#define MULTIBOOT_MAGIC 0x1BADB002u
#define MULTIBOOT_SEARCH 8192

#endif
