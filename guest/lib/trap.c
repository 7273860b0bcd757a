/* IDT, TSS and the common exception dispatcher (see guest.h for the order in
 * which an exception is handled). */
#include "guest.h"

struct idt_gate {
	uint16_t offset_lo;
	uint16_t selector;
	uint8_t ist;
	uint8_t type_attr;
	uint16_t offset_mid;
	uint32_t offset_hi;
	uint32_t reserved;
} __attribute__((packed));

struct tss64 {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
} __attribute__((packed));

struct extable_entry {
	uint64_t start, end;
};

extern char isr_stubs[];
extern uint64_t gdt[];
extern char ist_stack_top[];
extern uint64_t catch_sp;
extern char trap_catch_resume[];
extern const struct extable_entry __extable_start[], __extable_end[];

static struct idt_gate idt[256] __attribute__((aligned(16)));
static struct tss64 tss __attribute__((aligned(16)));
static trap_handler_t handlers[256];
/* per CPU (initial APIC ID): handlers run on several CPUs at once in SMP
 * tests, and only a fault inside a handler on the same CPU is nested */
static int trap_depth[256];

struct trap trap_last = { .vector = -1 };

static const char *const names[32] = {
	"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM",
	"#DF", "CSO", "#TS", "#NP", "#SS", "#GP", "#PF", "15",
	"#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "22", "23",
	"24", "25", "26", "27", "#HV", "#VC", "#SX", "31",
};

const char *trap_name(int vector)
{
	if (vector < 0)
		return "none";
	return vector < 32 ? names[vector] : "IRQ";
}

void trap_reset(void)
{
	memset(&trap_last, 0, sizeof(trap_last));
	trap_last.vector = -1;
}

void trap_set_handler(int vector, trap_handler_t fn)
{
	handlers[vector & 0xff] = fn;
}

static void set_gate(int vector, uint64_t addr, int ist)
{
	struct idt_gate *g = &idt[vector];

	g->offset_lo = addr & 0xffff;
	g->selector = SEL_CODE64;
	g->ist = ist;
	g->type_attr = 0x8e;	/* present, DPL 0, 64-bit interrupt gate */
	g->offset_mid = (addr >> 16) & 0xffff;
	g->offset_hi = addr >> 32;
	g->reserved = 0;
}

void trap_init(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) idtr = { sizeof(idt) - 1, (uintptr_t)idt };
	uint64_t base = (uintptr_t)&tss, limit = sizeof(tss) - 1;

	/* #DF, NMI and #MC on their own stack: they must not depend on the
	 * stack that may have caused them. */
	tss.ist[0] = (uintptr_t)ist_stack_top;
	tss.iomap_base = sizeof(tss);
	gdt[SEL_TSS / 8] = (limit & 0xffff) | ((base & 0xffffff) << 16) |
			   (0x89ul << 40) | (((limit >> 16) & 0xf) << 48) |
			   (((base >> 24) & 0xff) << 56);
	gdt[SEL_TSS / 8 + 1] = base >> 32;
	asm volatile("ltr %w0" : : "r"(SEL_TSS));

	for (int v = 0; v < 256; v++)
		set_gate(v, (uintptr_t)isr_stubs + 16 * v,
			 v == VEC_DF || v == VEC_NMI || v == VEC_MC ? 1 : 0);
	asm volatile("lidt %0" : : "m"(idtr));
}

/* an application processor: the IDT only (guest/lib/smp.c) */
void trap_init_ap(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) idtr = { sizeof(idt) - 1, (uintptr_t)idt };

	asm volatile("lidt %0" : : "m"(idtr));
}

static void __noreturn nested_fault(void)
{
	static const char msg[] =
		"FAIL runtime: exception inside the exception handler\n";

	for (const char *p = msg; *p; p++)
		putchar_serial(*p);
	outb(DEBUG_EXIT_PORT, 1);
	for (;;) {
		cli();
		halt();
	}
}

void trap_dispatch(struct trap_frame *f)
{
	uint64_t cr2 = read_cr2();
	int v = f->vector;
	int *depth = &trap_depth[cpuid(1, 0).ebx >> 24];

	if ((*depth)++)
		nested_fault();

	trap_last.vector = v;
	trap_last.error_code = f->error_code;
	trap_last.rip = f->rip;
	trap_last.cr2 = cr2;
	trap_last.rflags = f->rflags;
	trap_last.region_start = trap_last.region_end = 0;
	trap_last.count++;

	if (handlers[v]) {
		handlers[v](f);
		goto out;
	}

	for (const struct extable_entry *e = __extable_start;
	     e < __extable_end; e++) {
		if (f->rip >= e->start && f->rip <= e->end) {
			trap_last.region_start = e->start;
			trap_last.region_end = e->end;
			f->rip = e->end;
			goto out;
		}
	}

	if (catch_sp) {
		struct trap *t = *(struct trap **)catch_sp;

		if (t)
			*t = trap_last;
		f->rip = (uintptr_t)trap_catch_resume;
		f->rsp = catch_sp;
		f->rax = v;
		f->cs = SEL_CODE64;
		f->ss = SEL_DATA;
		f->rflags = 0x2;	/* trap_catch restores its own */
		goto out;
	}

	fail("unexpected-exception",
	     "vector %d (%s) error 0x%lx rip 0x%lx cr2 0x%lx rsp 0x%lx", v,
	     trap_name(v), f->error_code, f->rip, cr2, f->rsp);
	guest_exit();
out:
	(*depth)--;
}
