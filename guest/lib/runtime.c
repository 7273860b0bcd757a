/* Runtime start-up, the PASS/FAIL/SKIP protocol, boot information and the
 * paging helpers. */
#include "guest.h"

#define PVH_START_MAGIC 0x336ec578
#define MB_INFO_CMDLINE (1u << 2)

#define PTE_P 0x01ul
#define PTE_RW 0x02ul
#define PTE_PWT 0x08ul
#define PTE_PCD 0x10ul
#define PTE_PS 0x80ul

void serial_init(void);
void trap_init(void);

extern uint64_t page_dirs[2048];

static unsigned passed, failed, skipped;

void pass(const char *name)
{
	passed++;
	printf("PASS %s\n", name);
}

static void report(const char *word, const char *name, const char *fmt,
		   va_list ap)
{
	printf("%s %s: ", word, name);
	vprintf(fmt, ap);
	printf("\n");
}

void fail(const char *name, const char *fmt, ...)
{
	va_list ap;

	failed++;
	va_start(ap, fmt);
	report("FAIL", name, fmt, ap);
	va_end(ap);
}

void skip(const char *name, const char *fmt, ...)
{
	va_list ap;

	skipped++;
	va_start(ap, fmt);
	report("SKIP", name, fmt, ap);
	va_end(ap);
}

bool check(bool cond, const char *name, const char *fmt, ...)
{
	va_list ap;

	if (cond) {
		pass(name);
		return true;
	}
	failed++;
	va_start(ap, fmt);
	report("FAIL", name, fmt, ap);
	va_end(ap);
	return false;
}

void guest_exit(void)
{
	printf("DONE passed=%u failed=%u skipped=%u\n", passed, failed, skipped);
	/* isa-debug-exit: the VMM exits with status (value << 1) | 1 */
	outb(DEBUG_EXIT_PORT, failed ? 1 : 0);
	for (;;) {
		cli();
		halt();
	}
}

void panic(const char *fmt, ...)
{
	va_list ap;

	failed++;
	va_start(ap, fmt);
	report("FAIL", "panic", fmt, ap);
	va_end(ap);
	guest_exit();
}

const char *boot_protocol_name(void)
{
	switch (boot_protocol) {
	case BOOT_MULTIBOOT:
		return "multiboot";
	case BOOT_PVH:
		return "pvh";
	default:
		return "unknown";
	}
}

const char *boot_cmdline(void)
{
	const uint32_t *mbi = (const uint32_t *)(uintptr_t)boot_info;
	uint64_t addr = 0;

	if (!boot_info)
		return "";
	if (boot_protocol == BOOT_MULTIBOOT && (mbi[0] & MB_INFO_CMDLINE))
		addr = mbi[4];
	else if (boot_protocol == BOOT_PVH && mbi[0] == PVH_START_MAGIC)
		addr = *(const uint64_t *)(mbi + 6);
	if (!addr || addr >= (4ul << 30))
		return "";
	return (const char *)(uintptr_t)addr;
}

bool cmdline_uint(const char *key, uint64_t *v)
{
	const char *c = boot_cmdline(), *p = c;
	size_t n = strlen(key);

	while ((p = strstr(p, key))) {
		if ((p == c || p[-1] == ' ') && p[n] == '=')
			break;
		p += n;
	}
	if (!p)
		return false;
	p += n + 1;
	if (*p < '0' || *p > '9')
		return false;
	*v = 0;
	for (; *p >= '0' && *p <= '9'; p++)
		*v = *v * 10 + (uint64_t)(*p - '0');
	switch (*p) {
	case 'G':
		*v <<= 10;
		/* fall through */
	case 'M':
		*v <<= 10;
		/* fall through */
	case 'K':
		*v <<= 10;
	}
	return true;
}

uint64_t *page_pde(uint64_t addr)
{
	if (addr >= (4ul << 30))
		panic("page_pde: 0x%lx is outside the identity map", addr);
	return &page_dirs[addr >> 21];
}

void page_unmap_2m(uint64_t addr)
{
	*page_pde(addr) = 0;
	invlpg(addr);
}

void page_map_2m(uint64_t addr)
{
	uint64_t pde = (addr & ~(PAGE_2M - 1)) | PTE_P | PTE_RW | PTE_PS;

	if (addr >= (3ul << 30))
		pde |= PTE_PWT | PTE_PCD;
	*page_pde(addr) = pde;
	invlpg(addr);
}

/* x87 and SSE usable from inline asm: CR0.EM off, MP and NE on, and
 * CR4.OSFXSR/OSXMMEXCPT when the CPU has FXSAVE and SSE. */
static void fpu_init(void)
{
	struct cpuid_regs r = cpuid(1, 0);
	uint64_t cr0 = read_cr0();

	cr0 &= ~(1ul << 2);
	cr0 |= (1ul << 1) | (1ul << 5);
	write_cr0(cr0);
	if ((r.edx & (1u << 24)) && (r.edx & (1u << 25)))
		write_cr4(read_cr4() | (1ul << 9) | (1ul << 10));
	if (r.edx & 1)
		asm volatile("fninit");
}

void runtime_main(void)
{
	serial_init();
	trap_init();
	fpu_init();
	printf("# accord guest runtime: boot %s, cmdline \"%s\"\n",
	       boot_protocol_name(), boot_cmdline());
	test_main();
	guest_exit();
}
