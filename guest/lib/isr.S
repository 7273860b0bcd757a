/* Interrupt and exception entry stubs, and trap_catch().
 *
 * One 16-byte stub per vector at isr_stubs + 16 * vector. Vectors whose
 * exception pushes an error code (SDM vol. 3, table 6-1: 8, 10-14, 17, 21,
 * 29, 30) push only the vector; the others push a 0 error code first, so
 * trap_common always sees the layout of struct trap_frame. A software INT n
 * to an error-code vector pushes no error code and is not supported. */

	.text
	.code64

	.balign 16
	.globl isr_stubs
isr_stubs:
	.set vec, 0
	.rept 256
	.balign 16
	.if !(vec == 8 || (vec >= 10 && vec <= 14) || vec == 17 || vec == 21 || vec == 29 || vec == 30)
	pushq $0
	.endif
	pushq $vec
	jmp trap_common
	.set vec, vec + 1
	.endr

trap_common:
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	/* The CPU aligned RSP to 16 before its pushes: 5 + 2 + 15 quadwords
	 * keep it aligned for the call. The C ABI wants DF clear. */
	movq %rsp, %rdi
	cld
	call trap_dispatch
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rbp
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rbx
	popq %rax
	addq $16, %rsp
	iretq

/* int trap_catch(void (*fn)(void *), void *arg, struct trap *t)
 *
 * Saves the callee-saved registers, RFLAGS, the enclosing catch frame and t
 * on the stack and publishes the frame in catch_sp; trap_dispatch() resumes
 * an abandoned call at trap_catch_resume with RSP = catch_sp, RAX = vector. */
	.globl trap_catch, trap_catch_resume
trap_catch:
	pushq %rbp
	pushq %rbx
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	pushfq
	pushq catch_sp(%rip)
	pushq %rdx
	movq %rsp, catch_sp(%rip)
	movq %rdi, %rax
	movq %rsi, %rdi
	call *%rax
	movl $-1, %eax
trap_catch_resume:
	addq $8, %rsp
	popq catch_sp(%rip)
	popfq
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbx
	popq %rbp
	ret

	.data
	.balign 8
	.globl catch_sp
catch_sp:
	.quad 0

	.section .note.GNU-stack, "", @progbits
