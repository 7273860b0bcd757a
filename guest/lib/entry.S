/* Boot entry of the guest test kernels.
 *
 * Both entries start in 32-bit protected mode with paging off, as Multiboot v1
 * (EAX = 0x2badb002, EBX = multiboot_info) and PVH (EBX = hvm_start_info)
 * define it. Neither protocol promises a usable GDT or stack, so we load our
 * own, build identity page tables for the first 4 GiB with 2 MiB pages and
 * enter long mode, then call runtime_main() in C. */
#define BOOT_MULTIBOOT 1
#define BOOT_PVH 2

#define SEL_CODE32 0x08
#define SEL_CODE64 0x10
#define SEL_DATA 0x18

#define MSR_EFER 0xc0000080
#define EFER_LME 0x100
#define CR4_PAE 0x20
/* PE, MP, ET, NE, WP, PG: fixed values, so the test environment does not
 * depend on what the loader left in CR0 (CD/NW/AM/TS all clear). */
#define CR0_LONG 0x80010033

#define PTE_P 0x01
#define PTE_RW 0x02
#define PTE_PWT 0x08
#define PTE_PCD 0x10
#define PTE_PS 0x80

#define STACK_SIZE 16384
#define IST_STACK_SIZE 4096

	.section .text.boot, "ax"
	.code32

	.globl _start
_start:
	cli
	cld
	cmpl $0x2badb002, %eax
	jne 1f
	movl $BOOT_MULTIBOOT, boot_protocol
1:	movl %ebx, boot_info
	jmp boot32

	.globl pvh_start
pvh_start:
	cli
	cld
	movl $BOOT_PVH, boot_protocol
	movl %ebx, boot_info

boot32:
	lgdt gdt_ptr
	ljmp $SEL_CODE32, $1f
1:	movw $SEL_DATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %fs
	movw %ax, %gs
	movw %ax, %ss
	movl $stack_top, %esp

	/* Loaders zero the ELF memsz tail, but a loader bug must not look
	 * like a CPU bug, so clear .bss (page tables and stacks included). */
	movl $__bss_start, %edi
	movl $__bss_end, %ecx
	subl %edi, %ecx
	xorl %eax, %eax
	rep stosb

	/* PML4[0] -> PDPT, PDPT[0..3] -> the four page directories */
	movl $pdpt + (PTE_P | PTE_RW), pml4
	movl $page_dirs + (PTE_P | PTE_RW), %eax
	xorl %ecx, %ecx
1:	movl %eax, pdpt(, %ecx, 8)
	addl $4096, %eax
	incl %ecx
	cmpl $4, %ecx
	jb 1b

	/* 2048 PDEs of 2 MiB; the last GiB (MMIO: IOAPIC, LAPIC, ...) is
	 * mapped uncached. High dwords stay 0 from the .bss clear. */
	xorl %ecx, %ecx
1:	movl %ecx, %eax
	shll $21, %eax
	orl $(PTE_P | PTE_RW | PTE_PS), %eax
	cmpl $1536, %ecx
	jb 2f
	orl $(PTE_PWT | PTE_PCD), %eax
2:	movl %eax, page_dirs(, %ecx, 8)
	incl %ecx
	cmpl $2048, %ecx
	jb 1b

	movl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	movl $CR0_LONG, %eax
	movl %eax, %cr0
	ljmp $SEL_CODE64, $long_entry

	.code64
long_entry:
	movw $SEL_DATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw %ax, %fs
	movw %ax, %gs
	lgdt gdt_ptr
	movq $stack_top, %rsp
	xorl %ebp, %ebp
	call runtime_main
1:	cli
	hlt
	jmp 1b

	/* Application processors (guest/lib/smp.c). A SIPI starts an AP in
	 * real mode at CS:IP = (vector << 8):0 (SDM vol. 3A 9.4.4); smp.c
	 * copies ap_trampoline to such a page and fills ap_tramp_far with the
	 * linear address of ap_tramp32 there. The AP loads our GDT and takes
	 * the path of the BSP into long mode, on the BSP's page tables. */
	.section .rodata, "a"
	.code16
	.globl ap_trampoline, ap_trampoline_end, ap_tramp_far
ap_trampoline:
	cli
	cld
	lgdtl %cs:ap_tramp_gdt - ap_trampoline
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmpl *%cs:ap_tramp_far - ap_trampoline

	.code32
	.globl ap_tramp32
ap_tramp32:
	movw $SEL_DATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	movl $CR0_LONG, %eax
	movl %eax, %cr0
	ljmp $SEL_CODE64, $ap_long_entry

	.balign 8
ap_tramp_far:
	.long 0			/* offset: filled by smp.c */
	.word SEL_CODE32
ap_tramp_gdt:
	.word gdt_end - gdt - 1
	.long gdt
ap_trampoline_end:

	.text
	.code64
ap_long_entry:
	movw $SEL_DATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw %ax, %fs
	movw %ax, %gs
	lgdt gdt_ptr
	movq ap_boot_stack(%rip), %rsp
	xorl %ebp, %ebp
	call ap_main
1:	cli
	hlt
	jmp 1b

	/* The PVH entry point (Xen's XEN_ELFNOTE_PHYS32_ENTRY = 18). Note
	 * alignment 4: some loaders pad the name by the segment alignment. */
	.section .note.Xen, "a", @note
	.balign 4
	.long 4		/* namesz */
	.long 4		/* descsz */
	.long 18	/* type */
	.asciz "Xen"
	.long pvh_start

	.data
	.globl boot_protocol, boot_info
boot_protocol:
	.long 0
boot_info:
	.long 0

	/* Fixed layout (guest.h SEL_*). User data precedes user code so
	 * that STAR[63:48] = 0x18 gives SYSRET's SS = 0x23, CS = 0x2b. */
	.balign 16
	.globl gdt
gdt:
	.quad 0
	.quad 0x00cf9b000000ffff	/* 0x08 code, 32-bit */
	.quad 0x00af9b000000ffff	/* 0x10 code, 64-bit */
	.quad 0x00cf93000000ffff	/* 0x18 data */
	.quad 0x00cff3000000ffff	/* 0x20 user data */
	.quad 0x00affb000000ffff	/* 0x28 user code, 64-bit */
	.quad 0, 0			/* 0x30 TSS, set up by trap_init() */
gdt_end:

	.balign 8
	.globl gdt_ptr
gdt_ptr:
	.word gdt_end - gdt - 1
	.quad gdt

	.section .bss, "aw", @nobits
	.balign 4096
	.globl pml4, pdpt, page_dirs
pml4:
	.skip 4096
pdpt:
	.skip 4096
page_dirs:
	.skip 4 * 4096

	.balign 16
	.skip STACK_SIZE
stack_top:
	.globl ist_stack_top
	.skip IST_STACK_SIZE
ist_stack_top:

	.section .note.GNU-stack, "", @progbits
