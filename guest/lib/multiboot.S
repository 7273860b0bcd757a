/* Multiboot v1 header, linked only into the Multiboot-capable image
 * (build/guest/NAME.elf); the PVH-only image leaves it out, because QEMU
 * prefers Multiboot whenever it finds this header. Flags 0: the loader takes
 * the load addresses and the entry point from the ELF headers. */
#define MB_MAGIC 0x1badb002
#define MB_FLAGS 0

	.section .multiboot, "a"
	.balign 4
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

	.section .note.GNU-stack, "", @progbits
