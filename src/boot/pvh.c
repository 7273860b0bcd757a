/* PVH boot (xen/include/public/arch-x86/hvm/start_info.h): an ELF kernel
 * with a XEN_ELFNOTE_PHYS32_ENTRY note is entered in flat 32-bit protected
 * mode with paging off and EBX pointing at an hvm_start_info. */
#include <string.h>

#include "boot/internal.h"
#include "engine/engine.h"
#include "vm/vm.h"

#define HVM_START_MAGIC 0x336ec578u

/* hvm_start_info, version 1 */
#define SI_MAGIC 0x00
#define SI_VERSION 0x04
#define SI_NR_MODULES 0x0C
#define SI_MODLIST_PADDR 0x10
#define SI_CMDLINE_PADDR 0x18
#define SI_RSDP_PADDR 0x20
#define SI_MEMMAP_PADDR 0x28
#define SI_MEMMAP_ENTRIES 0x30

/* where the start info's parts go inside its page */
#define PVH_MODLIST_OFF 0x40
#define PVH_MEMMAP_OFF 0x80
#define PVH_MEMMAP_ENTRY_SIZE 24
#define PVH_INFO_SIZE (PVH_MEMMAP_OFF + BOOT_MEMMAP_MAX * PVH_MEMMAP_ENTRY_SIZE)

int pvh_load(struct boot_ctx *c, const struct elf *e, uint32_t entry, struct boot_state *bs)
{
	struct mem_range map[BOOT_MEMMAP_MAX];
	uint8_t info[PVH_INFO_SIZE] = { 0 };
	uint64_t lo, hi, initrd, initrd_size;
	int i, n;

	if (elf_load(c, e, &lo, &hi))
		return -1;
	if (entry < lo || entry >= hi)
		return kernel_fail(c, "PVH entry point 0x%x lies outside the loaded image "
				   "0x%llx-0x%llx",
				   entry, (unsigned long long)lo, (unsigned long long)hi);
	if (boot_put_cmdline(c, BOOT_CMDLINE_MAX - 1))
		return -1;
	/* a 32-bit entry without paging reaches only the first 4 GiB */
	if (boot_load_initrd(c, hi, c->vm->low_size, &initrd, &initrd_size))
		return -1;

	put32(info + SI_MAGIC, HVM_START_MAGIC);
	put32(info + SI_VERSION, 1);
	put64(info + SI_CMDLINE_PADDR, BOOT_CMDLINE_ADDR);
	put64(info + SI_RSDP_PADDR, c->rsdp);
	if (initrd_size) {
		put32(info + SI_NR_MODULES, 1);
		put64(info + SI_MODLIST_PADDR, BOOT_INFO_ADDR + PVH_MODLIST_OFF);
		put64(info + PVH_MODLIST_OFF, initrd);
		put64(info + PVH_MODLIST_OFF + 8, initrd_size);
	}
	n = boot_memmap(c->vm, map);
	put64(info + SI_MEMMAP_PADDR, BOOT_INFO_ADDR + PVH_MEMMAP_OFF);
	put32(info + SI_MEMMAP_ENTRIES, n);
	for (i = 0; i < n; i++) {
		uint8_t *m = info + PVH_MEMMAP_OFF + i * PVH_MEMMAP_ENTRY_SIZE;

		put64(m, map[i].addr);
		put64(m + 8, map[i].size);
		put32(m + 16, map[i].type);
	}
	if (vm_write_phys(c->vm, BOOT_INFO_ADDR, info, sizeof(info)))
		return boot_fail(c, "guest RAM does not cover the start info at 0x%x",
				 BOOT_INFO_ADDR);
	if (boot_put_gdt(c, GDT_CODE32, bs))
		return -1;
	bs->mode = 32;
	bs->rip = entry;
	bs->rbx = BOOT_INFO_ADDR;
	bs->rsp = BOOT_STACK_TOP;
	return 0;
}
