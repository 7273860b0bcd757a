/* The emu CPU on untrusted code: each input is a few bytes of machine code
 * and the registers they start with, run with a bounded budget in a small
 * machine (2 MiB of RAM identity-mapped, a Linux-like GDT, an IDT whose
 * every gate leads to a hlt stub, a TSS) in one of five modes: 64-bit at
 * CPL 0 and 3, compatibility mode at CPL 3, 32-bit protected mode without
 * paging, and real mode. Decoding, execution, the MMU, exception delivery
 * and the decoded-block cache all run; whatever the bytes do, cpu_run must
 * come back with an architectural outcome and never touch host memory
 * outside the guest's.
 *
 * Input: byte 0 picks the mode, byte 1 the code length n, then n bytes of
 * code, then up to 16 little-endian register values (RAX..R15).
 * Inputs take milliseconds here: smoke runs: 2000. */
#include "cpu/cpu.h"
#include "fuzz.h"

#define RAM_SIZE 0x200000ull
#define PML4 0x1000ull
#define PT_POOL 0x2000ull
#define GDT 0x40000ull
#define IDT 0x41000ull
#define TSS 0x42000ull
#define STUBS 0x43000ull
#define KSTACK_TOP 0x58000ull
#define IST1_TOP 0x5a000ull
#define USTACK_TOP 0x68000ull
#define KCODE 0x70000ull
#define UCODE 0x78000ull
#define DATA 0x100000ull
#define MAX_CODE 192
#define BUDGET 64

#define PG_P 1ull
#define PG_W 2ull
#define PG_U 4ull

enum { M_LONG0, M_LONG3, M_COMPAT3, M_PROT32, M_REAL, M_COUNT };

static uint8_t *ram;
static struct cpu *C;
static uint64_t pt_next;

static uint8_t *bus_gpa_page(void *o, uint64_t gpa, bool w) { return gpa < RAM_SIZE ? ram + gpa : NULL; }
static uint64_t bus_mmio_read(void *o, uint64_t gpa, int size) { return ~0ull; }
static void bus_mmio_write(void *o, uint64_t gpa, uint64_t v, int size) {}
static uint32_t bus_pio_in(void *o, uint16_t port, int size) { return ~0u; }
static void bus_pio_out(void *o, uint16_t port, uint32_t v, int size) {}
static int bus_intr(void *o, bool ack) { return -1; }
static bool bus_msr_read(void *o, uint32_t msr, uint64_t *v) { return false; }
static bool bus_msr_write(void *o, uint32_t msr, uint64_t v) { return false; }
static uint64_t bus_tsc(void *o) { return 1000; }

static uint64_t *ent(uint64_t gpa) { return (uint64_t *)(ram + gpa); }

static void map4k(uint64_t lin, uint64_t flags)
{
	uint64_t table = PML4;

	for (int l = 4; l > 1; l--) {
		uint64_t *e = ent(table) + ((lin >> (12 + 9 * (l - 1))) & 511);

		if (!(*e & PG_P)) {
			*e = pt_next | PG_P | PG_W | PG_U;
			pt_next += 0x1000;
		}
		table = *e & 0xffffffffff000ull;
	}
	ent(table)[(lin >> 12) & 511] = lin | flags;
}

static void set_seg(int s, uint16_t sel, uint16_t attr)
{
	cpu_set_seg_flat(C, s, sel, attr);
}

static void machine_reset(int mode)
{
	memset(ram, 0, RAM_SIZE);
	cpu_reset(C);
	C->bus = (struct cpu_bus){ .gpa_page = bus_gpa_page, .mmio_read = bus_mmio_read,
				   .mmio_write = bus_mmio_write, .pio_in = bus_pio_in,
				   .pio_out = bus_pio_out, .intr_vector = bus_intr,
				   .msr_read = bus_msr_read, .msr_write = bus_msr_write,
				   .tsc = bus_tsc };
	tlb_flush(C);
	if (mode == M_REAL) {
		C->seg[S_CS].sel = KCODE >> 4;
		C->seg[S_CS].base = KCODE;
		C->rip = 0;
		C->r[R_RSP] = 0xfff0;
		return;
	}
	pt_next = PT_POOL;
	for (uint64_t a = 0x1000; a < RAM_SIZE; a += 0x1000) {
		bool sys = a >= GDT && a < 0x60000;

		map4k(a, PG_P | PG_W | (sys ? 0 : PG_U));
	}
	uint64_t *gdt = ent(GDT);
	gdt[1] = 0x00cf9b000000ffffull; /* 0x08 32-bit kernel code */
	gdt[2] = 0x00af9b000000ffffull; /* 0x10 kernel code */
	gdt[3] = 0x00cf93000000ffffull; /* 0x18 kernel data */
	gdt[4] = 0x00cffb000000ffffull; /* 0x23 user 32-bit code */
	gdt[5] = 0x00cff3000000ffffull; /* 0x2b user data */
	gdt[6] = 0x00affb000000ffffull; /* 0x33 user code */
	gdt[8] = 0x67 | (TSS & 0xffffff) << 16 | 0x8bull << 40;
	memcpy(ram + TSS + 4, &(uint64_t){ KSTACK_TOP }, 8);
	memcpy(ram + TSS + 0x24, &(uint64_t){ IST1_TOP }, 8);
	for (int v = 0; v < 256; v++) {
		uint64_t h = STUBS + 16 * v, *g = ent(IDT + 16 * v);
		int dpl = v == 3 || v == 4 || v == 0x80 ? 3 : 0;

		g[0] = (h & 0xffff) | 0x10ull << 16 | (uint64_t)(v == 8) << 32 |
		       (uint64_t)(0x8e | dpl << 5) << 40 | ((h >> 16) & 0xffff) << 48;
		g[1] = 0;
		ram[h] = 0xF4;
	}
	C->gdtr.base = GDT;
	C->gdtr.limit = 16 * 8 - 1;
	C->idtr.base = IDT;
	C->idtr.limit = 256 * 16 - 1;
	C->ldtr = (struct seg){ 0 };
	C->tr = (struct seg){ .sel = 0x40, .base = TSS, .limit = 0x67, .attr = 0x8b };
	if (mode == M_PROT32) {
		C->cr0 = CR0_PE | CR0_ET | CR0_NE;
		C->idtr.limit = 0; /* a 64-bit IDT means nothing here: faults triple */
		set_seg(S_CS, 0x08, 0x9b | SEG_ATTR_DB | 1u << 11);
		set_seg(S_SS, 0x18, 0x93 | SEG_ATTR_DB | 1u << 11);
		set_seg(S_DS, 0x18, 0x93 | SEG_ATTR_DB | 1u << 11);
		set_seg(S_ES, 0x18, 0x93 | SEG_ATTR_DB | 1u << 11);
		C->cpl = 0;
		C->rip = KCODE;
		C->r[R_RSP] = KSTACK_TOP - 0x800;
		cpu_update_mode(C);
		return;
	}
	C->cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG;
	C->cr4 = CR4_PAE | CR4_PGE | CR4_OSFXSR | CR4_OSXMMEXCPT;
	C->efer = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;
	C->cr3 = PML4;
	for (int s = S_ES; s <= S_GS; s++)
		C->seg[s] = (struct seg){ 0 };
	C->rflags = 2;
	if (mode == M_LONG0) {
		set_seg(S_CS, 0x10, 0x9b | SEG_ATTR_L | 1u << 11);
		set_seg(S_SS, 0x18, 0x93 | SEG_ATTR_DB | 1u << 11);
		C->cpl = 0;
		C->rip = KCODE;
		C->r[R_RSP] = KSTACK_TOP - 0x800;
	} else {
		if (mode == M_COMPAT3) {
			set_seg(S_CS, 0x23, 0xfb | SEG_ATTR_DB | 1u << 11);
			for (int s = S_ES; s <= S_GS; s++)
				if (s != S_CS)
					set_seg(s, 0x2b, 0xf3 | SEG_ATTR_DB | 1u << 11);
		} else {
			set_seg(S_CS, 0x33, 0xfb | SEG_ATTR_L | 1u << 11);
			set_seg(S_SS, 0x2b, 0xf3 | SEG_ATTR_DB | 1u << 11);
		}
		C->cpl = 3;
		C->rip = UCODE;
		C->r[R_RSP] = USTACK_TOP;
	}
	cpu_update_mode(C);
}

static void fuzz_init(void)
{
	ram = aligned_alloc(4096, RAM_SIZE);
	C = aligned_alloc(64, (sizeof(*C) + 63) & ~(size_t)63);
	if (!ram || !C)
		abort();
	memset(C, 0, sizeof(*C));
	cpu_init(C, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	int mode = data[0] % M_COUNT;
	size_t n = data[1] % (MAX_CODE + 1);
	if (n > size - 2)
		n = size - 2;
	const uint8_t *regs = data + 2 + n;
	size_t nregs = (size - 2 - n) / 8;

	machine_reset(mode);
	uint64_t at = mode == M_REAL ? KCODE : C->rip;
	memcpy(ram + at, data + 2, n);
	memset(ram + at + n, 0xF4, 4);
	for (size_t i = 0; i < nregs && i < 16; i++)
		if (i != R_RSP)
			memcpy(&C->r[i], regs + 8 * i, 8);
	/* two rounds, so that a halted CPU resumes and cached blocks run
	 * again; the budget is small because one unit of it can be a whole
	 * chunk of a rep string instruction (thousands of iterations) */
	for (int round = 0; round < 2; round++) {
		enum cpu_stop s = cpu_run(C, BUDGET);

		if (s != STOP_HLT && s != STOP_BUDGET && s != STOP_SHUTDOWN)
			abort();
		if (s == STOP_SHUTDOWN)
			break;
		C->halted = false;
	}
	return 0;
}

/* ---- seeds: short sequences from the families, in every mode ---- */

static void seed(const char *name, int mode, const char *code, size_t n)
{
	uint8_t buf[2 + MAX_CODE + 16 * 8];
	char fname[64];

	buf[0] = mode;
	buf[1] = n;
	memcpy(buf + 2, code, n);
	for (int i = 0; i < 16; i++)
		fz_put64(buf + 2 + n + 8 * i, DATA + 0x100 * i);
	snprintf(fname, sizeof(fname), "%s-%d", name, mode);
	fuzz_seed(fname, buf, 2 + n + 16 * 8);
}

static void fuzz_seeds(void)
{
	static const struct {
		const char *name;
		const char *code;
		size_t n;
	} s[] = {
		{ "alu", "\x48\x01\xd8\x48\x29\xc8\x48\x31\xd2\x48\xf7\xf3\x48\x0f\xaf\xc1\xd1\xe0", 18 },
		{ "mem", "\x48\x8b\x03\x48\x89\x43\x08\x48\x8d\x44\x8b\x10\xff\x03\x48\x87\x0b", 17 },
		{ "stack", "\x50\x53\x9c\x5b\x58\x9d\xe8\x00\x00\x00\x00\x58\xc3", 13 },
		{ "string", "\xfc\x48\x89\xde\x48\x89\xcf\xb9\x10\x00\x00\x00\xf3\xa4\xf3\xab", 16 },
		{ "branch", "\x31\xc9\xff\xc1\x83\xf9\x05\x75\xf9\x74\x02\xeb\xfe\xe3\x00", 15 },
		{ "sys", "\x0f\x01\xf8\x0f\x05\x0f\x07\xcd\x80\xcc\x0f\x0b\xf4", 13 },
		{ "cr", "\x0f\x20\xc0\x0f\x22\xc0\x0f\x20\xe0\x0f\x01\x38\x0f\x00\xd8", 15 },
		{ "sse", "\x66\x0f\xef\xc0\x0f\x28\x0b\x66\x0f\xfe\xc1\x0f\x11\x43\x20\xf2\x0f\x58\xc1", 19 },
		{ "x87", "\xd9\xe8\xd9\xee\xde\xc1\xdd\x1b\xdb\xe3\x9b\xd9\x3b", 13 },
		{ "prefix", "\x66\x67\xf0\x48\x0f\xb1\x0b\x2e\x3e\x26\x64\x65\xf3\x90\x36\x8b\x04\x24", 18 },
		{ "cpuid", "\x31\xc0\x0f\xa2\x0f\x31\x0f\x32\x0f\xae\x03\x0f\xae\x0b", 14 },
		{ "far", "\xff\x2b\xcb\x48\xcf\x0f\x00\xc0\x8e\xd8\x8e\xe0", 12 },
	};

	for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
		for (int m = 0; m < M_COUNT; m++)
			seed(s[i].name, m, s[i].code, s[i].n);
}
