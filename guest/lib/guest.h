/* The runtime every guest test kernel links with: boot (Multiboot v1 or PVH,
 * 32-bit entry, long mode with the first 4 GiB identity-mapped in 2 MiB
 * pages), COM1 output, exception capture, and the PASS/FAIL/SKIP protocol
 * that tests/qemu_guest.sh and the certify runner read.
 *
 * A test kernel defines test_main(); when it returns, guest_exit() prints
 * "DONE passed=N failed=N skipped=N" and writes 0 (all passed) or 1 to the
 * debug-exit port 0xf4. */
#ifndef GUEST_H
#define GUEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Selectors of the runtime's GDT (guest/lib/entry.S). */
#define SEL_CODE32 0x08
#define SEL_CODE64 0x10
#define SEL_DATA 0x18
#define SEL_USER_DATA 0x23
#define SEL_USER_CODE64 0x2b
#define SEL_TSS 0x30

#define DEBUG_EXIT_PORT 0xf4
#define COM1 0x3f8

/* Exception vectors (Intel SDM vol. 3, table 6-1). */
enum {
	VEC_DE = 0, VEC_DB = 1, VEC_NMI = 2, VEC_BP = 3, VEC_OF = 4,
	VEC_BR = 5, VEC_UD = 6, VEC_NM = 7, VEC_DF = 8, VEC_TS = 10,
	VEC_NP = 11, VEC_SS = 12, VEC_GP = 13, VEC_PF = 14, VEC_MF = 16,
	VEC_AC = 17, VEC_MC = 18, VEC_XM = 19, VEC_VE = 20, VEC_CP = 21,
};

/* #PF error code bits */
#define PF_P (1u << 0)
#define PF_W (1u << 1)
#define PF_U (1u << 2)
#define PF_RSVD (1u << 3)
#define PF_I (1u << 4)

#define RFLAGS_CF (1ul << 0)
#define RFLAGS_PF (1ul << 2)
#define RFLAGS_AF (1ul << 4)
#define RFLAGS_ZF (1ul << 6)
#define RFLAGS_SF (1ul << 7)
#define RFLAGS_TF (1ul << 8)
#define RFLAGS_IF (1ul << 9)
#define RFLAGS_DF (1ul << 10)
#define RFLAGS_OF (1ul << 11)
#define RFLAGS_ARITH (RFLAGS_CF | RFLAGS_PF | RFLAGS_AF | RFLAGS_ZF | \
		      RFLAGS_SF | RFLAGS_OF)

#define MSR_EFER 0xc0000080
#define EFER_SCE (1ul << 0)
#define EFER_LME (1ul << 8)
#define EFER_LMA (1ul << 10)
#define EFER_NXE (1ul << 11)

#define PAGE_2M (2ul << 20)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define __printf(a, b) __attribute__((format(printf, a, b)))
#define __noreturn __attribute__((noreturn))

/* ---- provided by each test kernel ---- */
void test_main(void);

/* ---- results ---- */
void pass(const char *name);
void fail(const char *name, const char *fmt, ...) __printf(2, 3);
void skip(const char *name, const char *fmt, ...) __printf(2, 3);
/* pass(name) when cond holds, else fail(name, fmt, ...); returns cond */
bool check(bool cond, const char *name, const char *fmt, ...) __printf(3, 4);
void guest_exit(void) __noreturn;
void panic(const char *fmt, ...) __printf(1, 2) __noreturn;

/* ---- console ---- */
int printf(const char *fmt, ...) __printf(1, 2);
int vprintf(const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...) __printf(3, 4);
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
void putchar_serial(char c);

/* ---- boot information ---- */
enum boot_protocol { BOOT_MULTIBOOT = 1, BOOT_PVH = 2 };
extern uint32_t boot_protocol;
extern uint32_t boot_info; /* multiboot_info or hvm_start_info, physical */
const char *boot_protocol_name(void);
const char *boot_cmdline(void); /* "" when the loader gave none */
/* "key=N" on the command line (guest/families passes the machine's options
 * there), N decimal with an optional K, M or G suffix; false when absent */
bool cmdline_uint(const char *key, uint64_t *v);

/* ---- exceptions ----
 * Every exception and interrupt is recorded in trap_last. What happens next:
 *  1. a handler installed with trap_set_handler() for the vector runs;
 *  2. else, if RIP lies in a TRAP_RESUME region, execution resumes at its end;
 *  3. else, inside trap_catch(), the function is abandoned and trap_catch
 *     returns the vector;
 *  4. else it is a FAIL line and the kernel ends. */
struct trap_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error_code;
	uint64_t rip, cs, rflags, rsp, ss;
};

struct trap {
	int vector;          /* -1: none since trap_reset() */
	uint64_t error_code; /* 0 for vectors that push none */
	uint64_t rip;        /* as pushed: the faulting insn, or the next one */
	uint64_t cr2;        /* read at entry, for every vector */
	uint64_t rflags;
	uint64_t region_start, region_end; /* matched TRAP_RESUME region */
	unsigned count;      /* exceptions since trap_reset() */
};

extern struct trap trap_last;
void trap_reset(void);

/* Run fn(arg). Returns -1 if it returned normally, else the vector of the
 * exception that stopped it (details in *t when t is not NULL); execution
 * then continues here, with callee-saved registers and RFLAGS restored. */
int trap_catch(void (*fn)(void *), void *arg, struct trap *t);

/* An inline-asm region in which an exception resumes execution at the
 * region's end: asm volatile(TRAP_RESUME("ud2")). A fault reports
 * rip == region_start for a one-instruction region, a trap rip == region_end. */
#define TRAP_RESUME(insns)                                       \
	"771:\n\t" insns "\n772:\n\t"                            \
	".pushsection .extable, \"a\"\n\t.balign 8\n\t"          \
	".quad 771b, 772b\n\t.popsection\n\t"

typedef void (*trap_handler_t)(struct trap_frame *f);
void trap_set_handler(int vector, trap_handler_t fn);
const char *trap_name(int vector);

/* ---- paging: the runtime's 4 GiB identity map ---- */
uint64_t *page_pde(uint64_t addr); /* the 2 MiB PDE mapping addr (< 4 GiB) */
void page_unmap_2m(uint64_t addr);
void page_map_2m(uint64_t addr);   /* restore the identity mapping */

/* ---- ACPI (guest/lib/acpi.c) ---- */
struct acpi_rsdp {
	char signature[8];
	uint8_t checksum;
	char oem_id[6];
	uint8_t revision;
	uint32_t rsdt_addr;
	uint32_t length;	/* revision 2 and later */
	uint64_t xsdt_addr;
	uint8_t ext_checksum;
	uint8_t reserved[3];
} __attribute__((packed));

struct acpi_header {
	char signature[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	uint32_t creator_id;
	uint32_t creator_revision;
} __attribute__((packed));

bool acpi_checksum_ok(const void *p, size_t n);
const struct acpi_rsdp *acpi_rsdp(void);	/* NULL: none found */
/* the first table with this signature whose checksum holds, or NULL */
const struct acpi_header *acpi_table(const char *sig);

/* the PM timer (3.579545 MHz) from the FADT; false when there is none */
#define PM_TIMER_HZ 3579545u
bool pm_timer_init(void);
uint32_t pm_timer_read(void);
/* ticks since a pm_timer_read() value, across one wrap of the counter */
uint32_t pm_timer_ticks_since(uint32_t start);

/* ---- local APIC and application processors (guest/lib/smp.c) ---- */
#define LAPIC_BASE 0xfee00000ul
#define LAPIC_ID 0x20
#define LAPIC_EOI 0xb0
#define LAPIC_SVR 0xf0
#define SMP_MAX_CPUS 16
/* a page below 1 MiB that neither loader uses after boot: the SIPI vector
 * is AP_TRAMPOLINE >> 12 */
#define AP_TRAMPOLINE 0x8000ul
#define ICR_INIT (5u << 8)
#define ICR_STARTUP (6u << 8)

uint32_t lapic_read(unsigned reg);
void lapic_write(unsigned reg, uint32_t v);
uint32_t lapic_id(void);	/* this CPU's APIC ID */
/* writes ICR (destination APIC ID, low dword) and waits for delivery */
void lapic_ipi(uint32_t dest, uint32_t icr_lo);
/* Wakes the AP with this APIC ID by INIT-SIPI-SIPI (SDM vol. 3A 9.4.4.1);
 * it enters long mode and calls fn(cpu) on its own stack (cpu: 1 to
 * SMP_MAX_CPUS - 1, chosen by the caller). True once fn has been called. */
bool smp_start_ap(uint32_t apic_id, unsigned cpu, void (*fn)(unsigned cpu));
/* the parts: an INIT IPI, and one SIPI that starts an AP waiting for it */
void smp_init_ipi(uint32_t apic_id);
bool smp_sipi(uint32_t apic_id, unsigned cpu, void (*fn)(unsigned cpu));

/* ---- string ---- */
void *memset(void *s, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strstr(const char *h, const char *n);

/* ---- CPU access ---- */
static inline void outb(uint16_t port, uint8_t v)
{
	asm volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outw(uint16_t port, uint16_t v)
{
	asm volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outl(uint16_t port, uint32_t v)
{
	asm volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;

	asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint16_t inw(uint16_t port)
{
	uint16_t v;

	asm volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint32_t inl(uint16_t port)
{
	uint32_t v;

	asm volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

struct cpuid_regs {
	uint32_t eax, ebx, ecx, edx;
};

static inline struct cpuid_regs cpuid(uint32_t leaf, uint32_t subleaf)
{
	struct cpuid_regs r;

	asm volatile("cpuid"
		     : "=a"(r.eax), "=b"(r.ebx), "=c"(r.ecx), "=d"(r.edx)
		     : "a"(leaf), "c"(subleaf));
	return r;
}

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;

	asm volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
	asm volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v),
		     "d"((uint32_t)(v >> 32)) : "memory");
}

/* RDMSR/WRMSR with an exception caught: the vector (details in
 * trap_last), or -1; a faulting RDMSR leaves *v 0 */
static inline int rdmsr_try(uint32_t msr, uint64_t *v)
{
	uint32_t lo = 0, hi = 0;

	trap_reset();
	asm volatile(TRAP_RESUME("rdmsr") : "+a"(lo), "+d"(hi) : "c"(msr) : "memory");
	*v = (uint64_t)hi << 32 | lo;
	return trap_last.vector;
}

static inline int wrmsr_try(uint32_t msr, uint64_t v)
{
	trap_reset();
	asm volatile(TRAP_RESUME("wrmsr")
		     : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32))
		     : "memory");
	return trap_last.vector;
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

#define DEFINE_CR(n)                                                     \
	static inline uint64_t read_cr##n(void)                          \
	{                                                                \
		uint64_t v;                                              \
		asm volatile("mov %%cr" #n ", %0" : "=r"(v));            \
		return v;                                                \
	}                                                                \
	static inline void write_cr##n(uint64_t v)                       \
	{                                                                \
		asm volatile("mov %0, %%cr" #n : : "r"(v) : "memory");   \
	}
DEFINE_CR(0)
DEFINE_CR(2)
DEFINE_CR(3)
DEFINE_CR(4)
#undef DEFINE_CR

static inline uint64_t read_rflags(void)
{
	uint64_t v;

	asm volatile("pushfq; popq %0" : "=r"(v));
	return v;
}

static inline void invlpg(uint64_t addr)
{
	asm volatile("invlpg (%0)" : : "r"(addr) : "memory");
}

static inline void cli(void)
{
	asm volatile("cli" : : : "memory");
}

static inline void sti(void)
{
	asm volatile("sti" : : : "memory");
}

static inline void halt(void)
{
	asm volatile("hlt" : : : "memory");
}

#endif
