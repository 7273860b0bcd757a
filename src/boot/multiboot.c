/* Multiboot v1 (the Multiboot Specification 0.6.96): the image is placed by
 * the header's address fields (flag 16) or by its ELF program headers, and
 * entered in flat 32-bit protected mode with EAX = 0x2BADB002 and EBX
 * pointing at the multiboot_info. */
#include <string.h>

#include "boot/internal.h"
#include "engine/engine.h"
#include "vm/vm.h"

#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002u

/* header flags */
#define MBH_PAGE_ALIGN (1u << 0)
#define MBH_MEMORY_INFO (1u << 1)
#define MBH_VIDEO_MODE (1u << 2)
#define MBH_AOUT_KLUDGE (1u << 16)
#define MBH_AOUT_SIZE 32

/* multiboot_info flags and fields */
#define MBI_MEMORY (1u << 0)
#define MBI_CMDLINE (1u << 2)
#define MBI_MODS (1u << 3)
#define MBI_MMAP (1u << 6)
#define MBI_LOADER_NAME (1u << 9)
#define MBI_FLAGS 0
#define MBI_MEM_LOWER 4
#define MBI_MEM_UPPER 8
#define MBI_CMDLINE_PTR 16
#define MBI_MODS_COUNT 20
#define MBI_MODS_ADDR 24
#define MBI_MMAP_LENGTH 44
#define MBI_MMAP_ADDR 48
#define MBI_LOADER_NAME_PTR 64
#define MBI_SIZE 120

/* the info page: multiboot_info, memory map, module list, strings */
#define MB_MMAP_OFF 0x80
#define MB_MMAP_ENTRY_SIZE 24 /* the size field, then 20 bytes */
#define MB_MODS_OFF 0x100
#define MB_LOADER_NAME_OFF 0x180
#define MB_MOD_STRING_OFF 0x200
#define MB_INFO_SIZE 0x1000

static const char loader_name[] = "accord";

/* The a.out kludge: the header says which part of the file goes where. */
static int multiboot_load_aout(struct boot_ctx *c, const struct kfile *f, size_t off,
			       uint64_t *lo, uint64_t *hi, uint64_t *entry)
{
	const uint8_t *h = f->data + off;
	uint32_t header_addr, load_addr, load_end, bss_end;
	uint64_t file_off, load_size, mem_size;
	uint8_t *dst;

	if (off + MBH_AOUT_SIZE > f->size)
		return kernel_fail(c, "truncated Multiboot header at offset %zu", off);
	header_addr = get32(h + 12);
	load_addr = get32(h + 16);
	load_end = get32(h + 20);
	bss_end = get32(h + 24);
	*entry = get32(h + 28);
	if (header_addr < load_addr || header_addr - load_addr > off)
		return kernel_fail(c, "Multiboot header_addr 0x%x and load_addr 0x%x put the load "
				   "before the start of the file",
				   header_addr, load_addr);
	file_off = off - (header_addr - load_addr);
	if (!load_end) {
		load_size = f->size - file_off;
	} else {
		if (load_end < load_addr)
			return kernel_fail(c, "Multiboot load_end_addr 0x%x is below load_addr 0x%x",
					   load_end, load_addr);
		load_size = load_end - load_addr;
		if (load_size > f->size - file_off)
			return kernel_fail(c, "truncated: Multiboot load_end_addr needs %llu bytes "
					   "from offset %llu, the file has %zu",
					   (unsigned long long)load_size,
					   (unsigned long long)file_off, f->size);
	}
	mem_size = load_size;
	if (bss_end) {
		if (bss_end < load_addr + load_size)
			return kernel_fail(c, "Multiboot bss_end_addr 0x%x is below the end of the "
					   "image 0x%llx",
					   bss_end, (unsigned long long)(load_addr + load_size));
		mem_size = bss_end - load_addr;
	}
	if (!mem_size)
		return kernel_fail(c, "Multiboot header loads nothing");
	if (boot_check_range(c, "Multiboot image", load_addr, mem_size))
		return -1;
	dst = vm_gpa(c->vm, load_addr, mem_size);
	memcpy(dst, f->data + file_off, load_size);
	memset(dst + load_size, 0, mem_size - load_size);
	*lo = load_addr;
	*hi = load_addr + mem_size;
	if (*entry < *lo || *entry >= *hi)
		return kernel_fail(c, "Multiboot entry_addr 0x%llx lies outside the image "
				   "0x%llx-0x%llx",
				   (unsigned long long)*entry, (unsigned long long)*lo,
				   (unsigned long long)*hi);
	return 0;
}

static int multiboot_load_elf(struct boot_ctx *c, const struct kfile *f, uint64_t *lo,
			      uint64_t *hi, uint64_t *entry)
{
	struct elf e;

	if (elf_parse(c, f, &e) || elf_load(c, &e, lo, hi) || elf_entry_phys(c, &e, entry))
		return -1;
	if (*hi > 4 * GIB)
		return kernel_fail(c, "Multiboot image loads above 4 GiB (up to 0x%llx)",
				   (unsigned long long)*hi);
	return 0;
}

int multiboot_load(struct boot_ctx *c, const struct kfile *f, size_t off, struct boot_state *bs)
{
	struct mem_range map[BOOT_MEMMAP_MAX];
	uint8_t info[MB_INFO_SIZE] = { 0 };
	uint32_t hflags = get32(f->data + off + 4), mbi_flags;
	uint64_t lo, hi, entry, initrd, initrd_size;
	int i, n;

	if (hflags & MBH_VIDEO_MODE)
		return kernel_fail(c, "Multiboot header asks for a video mode; accord has no display");
	/* bits 0-15 are requirements: refuse the ones we do not know */
	if (hflags & 0xFFFF & ~(MBH_PAGE_ALIGN | MBH_MEMORY_INFO))
		return kernel_fail(c, "Multiboot header requires unknown features (flags 0x%x)",
				   hflags);
	if (hflags & MBH_AOUT_KLUDGE) {
		if (multiboot_load_aout(c, f, off, &lo, &hi, &entry))
			return -1;
	} else if (elf_is(f)) {
		if (multiboot_load_elf(c, f, &lo, &hi, &entry))
			return -1;
	} else {
		return kernel_fail(c, "Multiboot header without load addresses (flag 16) in a "
				   "file that is not ELF");
	}
	if (boot_put_cmdline(c, BOOT_CMDLINE_MAX - 1))
		return -1;
	if (boot_load_initrd(c, hi, c->vm->low_size, &initrd, &initrd_size))
		return -1;

	mbi_flags = MBI_MEMORY | MBI_CMDLINE | MBI_MMAP | MBI_LOADER_NAME;
	/* KiB below the EBDA and from 1 MiB to the first hole */
	put32(info + MBI_MEM_LOWER, EBDA_START / KIB);
	put32(info + MBI_MEM_UPPER, (c->vm->low_size - 1 * MIB) / KIB);
	put32(info + MBI_CMDLINE_PTR, BOOT_CMDLINE_ADDR);
	if (initrd_size) {
		size_t len = strlen(c->cfg->initrd);

		if (len >= MB_INFO_SIZE - MB_MOD_STRING_OFF)
			return initrd_fail(c, "path too long for the Multiboot module string");
		memcpy(info + MB_MOD_STRING_OFF, c->cfg->initrd, len);
		mbi_flags |= MBI_MODS;
		put32(info + MBI_MODS_COUNT, 1);
		put32(info + MBI_MODS_ADDR, BOOT_INFO_ADDR + MB_MODS_OFF);
		put32(info + MB_MODS_OFF, initrd);
		put32(info + MB_MODS_OFF + 4, initrd + initrd_size);
		put32(info + MB_MODS_OFF + 8, BOOT_INFO_ADDR + MB_MOD_STRING_OFF);
	}
	n = boot_memmap(c->vm, map);
	put32(info + MBI_MMAP_LENGTH, n * MB_MMAP_ENTRY_SIZE);
	put32(info + MBI_MMAP_ADDR, BOOT_INFO_ADDR + MB_MMAP_OFF);
	for (i = 0; i < n; i++) {
		uint8_t *m = info + MB_MMAP_OFF + i * MB_MMAP_ENTRY_SIZE;

		put32(m, MB_MMAP_ENTRY_SIZE - 4);
		put64(m + 4, map[i].addr);
		put64(m + 12, map[i].size);
		put32(m + 20, map[i].type);
	}
	memcpy(info + MB_LOADER_NAME_OFF, loader_name, sizeof(loader_name));
	put32(info + MBI_LOADER_NAME_PTR, BOOT_INFO_ADDR + MB_LOADER_NAME_OFF);
	put32(info + MBI_FLAGS, mbi_flags);
	if (vm_write_phys(c->vm, BOOT_INFO_ADDR, info, sizeof(info)))
		return boot_fail(c, "guest RAM does not cover the Multiboot info at 0x%x",
				 BOOT_INFO_ADDR);
	if (boot_put_gdt(c, GDT_CODE32, bs))
		return -1;
	bs->mode = 32;
	bs->rip = entry;
	bs->rax = MULTIBOOT_BOOTLOADER_MAGIC;
	bs->rbx = BOOT_INFO_ADDR;
	bs->rsp = BOOT_STACK_TOP;
	return 0;
}
