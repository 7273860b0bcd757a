/* Boot loaders (Linux bzImage/vmlinux, PVH, Multiboot v1) and the ACPI
 * tables they point the guest at. */
#ifndef ACCORD_BOOT_H
#define ACCORD_BOOT_H

#include <stddef.h>
#include <stdint.h>

struct vm;
struct aml;
struct boot_state;

struct boot_config {
	const char *kernel;  /* bzImage, vmlinux/PVH ELF, or Multiboot image */
	const char *initrd;  /* NULL: none */
	const char *cmdline; /* NULL: empty */
};

/* Builds the ACPI tables, loads the kernel (and initrd) into guest RAM and
 * fills *bs with the entry state the kernel's format asks for. Call it after
 * the devices exist: their ACPI hooks run here. 0, or -1 with one line
 * "accord: ..." on stderr. */
int boot_load(struct vm *vm, const struct boot_config *cfg, struct boot_state *bs);
/* Everything boot_load checks about the kernel, initrd and command line,
 * for a VM of ram_size bytes, without a VM: the same loaders run on scratch
 * memory. 0, or -1 with boot_load's line on stderr. */
int boot_check(const struct boot_config *cfg, uint64_t ram_size);

/* Writes RSDP, RSDT, XSDT, FADT, FACS, MADT, DSDT and the registered extra
 * tables into [ACPI_TABLES_ADDR, ACPI_TABLES_END). 0, or -1 with a message. */
int acpi_build(struct vm *vm, uint64_t *rsdp_addr);

/* Devices that need ACPI objects register hooks before boot_load, from the
 * main thread (duplicates are ignored; -1 when the hook table is full).
 * acpi_build calls them for each VM it builds tables for, so a hook looks
 * at the vm to decide what to emit.
 * A DSDT hook emits objects inside Scope (\_SB) with the aml.h encoder.
 * A table hook writes one whole table at buf (at most cap bytes, header from
 * acpi_table_header) and returns its length, 0 for none, or -1 after
 * printing why; acpi_build lists it in the RSDT/XSDT and sets its checksum. */
typedef void (*acpi_dsdt_fn)(struct aml *a, struct vm *vm);
typedef long (*acpi_table_fn)(struct vm *vm, uint8_t *buf, size_t cap);
int acpi_register_dsdt(acpi_dsdt_fn fn);
int acpi_register_table(acpi_table_fn fn);

#define ACPI_HEADER_SIZE 36
/* standard header with accord's OEM fields; the checksum is left 0 */
void acpi_table_header(uint8_t *buf, const char sig[4], uint32_t len, uint8_t rev);
uint8_t acpi_checksum(const uint8_t *p, size_t len);

#endif
