/* Fixed platform resources that the devices, the ACPI tables and the boot
 * loaders must agree on. */
#ifndef ACCORD_PLATFORM_H
#define ACCORD_PLATFORM_H

/* ACPI fixed hardware (PIIX4-like, in port space) */
#define ACPI_PM1A_EVT 0x600 /* 4 bytes: PM1_STS (2), PM1_EN (2) */
#define ACPI_PM1A_CNT 0x604 /* 2 bytes: SCI_EN, SLP_TYP (bits 10-12), SLP_EN (bit 13) */
#define ACPI_PM_TMR 0x608   /* 4 bytes: 24-bit 3.579545 MHz counter */
#define ACPI_PM_TMR_HZ 3579545
#define ACPI_SCI_IRQ 9
#define ACPI_S5_SLP_TYP 5   /* \_S5 package value the DSDT gives */
#define ACPI_RESET_PORT 0xcf9
#define ACPI_RESET_VALUE 0x06

#define COM1_PORT 0x3f8
#define COM1_IRQ 4
#define DEBUG_EXIT_PORT 0xf4

/* IOAPIC: 24 pins, GSI n = pin n; ISA IRQ0 (PIT) is GSI 2 */
#define IOAPIC_PINS 24

/* Where the loaders put things in low memory */
#define BOOT_GDT_ADDR 0x500
#define BOOT_PARAMS_ADDR 0x7000
#define BOOT_CMDLINE_ADDR 0x20000
#define BOOT_CMDLINE_MAX 0x10000
#define BOOT_PML4_ADDR 0x9000 /* identity page tables for the 64-bit entry */
#define BOOT_STACK_TOP 0x8ff0
#define ACPI_TABLES_ADDR 0xE0000 /* RSDP and tables, in the BIOS area */
#define ACPI_TABLES_END 0x100000
#define EBDA_START 0x9FC00

#endif
