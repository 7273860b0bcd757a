/* MMU: page walks (4-level long mode, 3-level PAE, and paging off), accessed
 * and dirty bits, protection checks, page faults, and the software TLB in
 * front of them; plus the linear-memory accessors every instruction uses. */
#include <string.h>

#include "cpu/cpu.h"
#include "cpu/exec.h"
#include "vm/vm.h"

#define PTE_P (1ull << 0)
#define PTE_W (1ull << 1)
#define PTE_U (1ull << 2)
#define PTE_A (1ull << 5)
#define PTE_D (1ull << 6)
#define PTE_PS (1ull << 7)
#define PTE_G (1ull << 8)
#define PTE_NX (1ull << 63)
/* the physical-address width advertised in CPUID 0x80000008 */
#define PHYS_BITS VM_PHYS_ADDR_BITS
#define PTE_ADDR (((1ull << PHYS_BITS) - 1) & ~0xfffull)
#define PTE_RSVD_ADDR (((1ull << 52) - 1) & ~((1ull << PHYS_BITS) - 1))

uint64_t phys_read(struct cpu *c, uint64_t gpa, int size)
{
	uint8_t *p = c->bus.gpa_page(c->bus.opaque, gpa & ~0xfffull, false);
	uint64_t v = 0;
	if (p && (gpa & 0xfff) + size <= 0x1000) {
		memcpy(&v, p + (gpa & 0xfff), size);
		return v;
	}
	if (p) {
		for (int i = 0; i < size; i++)
			v |= phys_read(c, gpa + i, 1) << (8 * i);
		return v;
	}
	return c->bus.mmio_read(c->bus.opaque, gpa, size);
}

void phys_write(struct cpu *c, uint64_t gpa, uint64_t val, int size)
{
	uint8_t *p = c->bus.gpa_page(c->bus.opaque, gpa & ~0xfffull, true);
	if (p && (gpa & 0xfff) + size <= 0x1000) {
		code_store(c, (uintptr_t)p);
		memcpy(p + (gpa & 0xfff), &val, size);
		return;
	}
	if (p) {
		for (int i = 0; i < size; i++)
			phys_write(c, gpa + i, val >> (8 * i), 1);
		return;
	}
	c->bus.mmio_write(c->bus.opaque, gpa, val, size);
}

void tlb_flush(struct cpu *c)
{
	if (c->tlb_nlog > TLB_LOG) {
		memset(c->tlb, 0, sizeof(c->tlb));
	} else {
		for (unsigned i = 0; i < c->tlb_nlog; i++) {
			unsigned k = c->tlb_log[i];
			memset(&c->tlb[k >> TLB_BITS][k & (TLB_SIZE - 1)], 0, sizeof(struct tlb_entry));
		}
	}
	c->tlb_nlog = 0;
}

void tlb_flush_nonglobal(struct cpu *c)
{
	if (c->tlb_nlog > TLB_LOG) {
		tlb_flush(c);
		return;
	}
	unsigned kept = 0;
	for (unsigned i = 0; i < c->tlb_nlog; i++) {
		unsigned k = c->tlb_log[i];
		struct tlb_entry *e = &c->tlb[k >> TLB_BITS][k & (TLB_SIZE - 1)];
		if (e->global)
			c->tlb_log[kept++] = (uint16_t)k;
		else
			memset(e, 0, sizeof(*e));
	}
	c->tlb_nlog = kept;
}

void tlb_flush_page(struct cpu *c, uint64_t lin)
{
	unsigned i = tlb_index(lin);
	memset(&c->tlb[0][i], 0, sizeof(c->tlb[0][i]));
	memset(&c->tlb[1][i], 0, sizeof(c->tlb[1][i]));
}

/* Set bits in a paging-structure entry atomically: other vCPUs walk and
 * update the same tables. A 32-bit paging entry may sit in the upper half of
 * the aligned quadword. */
static void pte_set_bits(struct cpu *c, uint64_t gpa, uint64_t bits)
{
	uint8_t *p = c->bus.gpa_page(c->bus.opaque, gpa & ~0xfffull, true);
	if (p) {
		code_store(c, (uintptr_t)p);
		__atomic_fetch_or((uint64_t *)(p + (gpa & 0xff8)), bits << ((gpa & 4) * 8), __ATOMIC_SEQ_CST);
	}
}

/* The walk. access: ACC_R/W/X plus ACC_USER/ACC_SUPER to override the
 * privilege of the access. On success *gpa and the effective permissions. */
static bool walk(struct cpu *c, uint64_t lin, int access, uint64_t *gpa, uint32_t *err,
		 bool *writable, bool *exec, bool *dirty, bool *global)
{
	*global = false;
	int kind = access & 3;
	bool user = (access & ACC_USER) || (c->cpl == 3 && !(access & ACC_SUPER));
	uint32_t ec = (kind == ACC_W ? PF_W : 0) | (user ? PF_U : 0) | (kind == ACC_X && (c->efer & EFER_NXE) ? PF_I : 0);

	if (!(c->cr0 & CR0_PG)) {
		*gpa = lin & 0xffffffffull;
		*writable = *exec = *dirty = true;
		return true;
	}
	bool nxe = c->efer & EFER_NXE;
	uint64_t rsvd_nx = nxe ? 0 : PTE_NX;
	uint64_t entries[4], addrs[4];
	int levels, n = 0;
	uint64_t table;
	bool w = true, u = true, nx = false;
	uint64_t pte = 0, page_size = 0;

	if (c->efer & EFER_LMA) {
		levels = 4;
		table = c->cr3 & PTE_ADDR;
	} else if (c->cr4 & CR4_PAE) {
		/* PAE: the PDPTE is selected by bits 31:30 */
		levels = 3;
		uint64_t pdpte = phys_read(c, (c->cr3 & 0xffffffe0u) + ((lin >> 30) & 3) * 8, 8);
		if (!(pdpte & PTE_P))
			goto fault;
		table = pdpte & PTE_ADDR;
		levels = 2;
	} else {
		/* 32-bit paging: two levels of 4-byte entries, 4 MiB pages with PSE */
		uint64_t pde_a = (c->cr3 & 0xfffff000u) + ((lin >> 22) & 0x3ff) * 4;
		uint64_t pde = phys_read(c, pde_a, 4);
		if (!(pde & PTE_P))
			goto fault;
		w = pde & PTE_W;
		u = pde & PTE_U;
		if ((pde & PTE_PS) && (c->cr4 & CR4_PSE)) {
			entries[n] = pde, addrs[n++] = pde_a;
			pte = pde;
			*gpa = (pde & 0xffc00000u) + (lin & 0x3fffff);
			goto leaf;
		}
		entries[n] = pde, addrs[n++] = pde_a;
		uint64_t pte_a = (pde & 0xfffff000u) + ((lin >> 12) & 0x3ff) * 4;
		pte = phys_read(c, pte_a, 4);
		if (!(pte & PTE_P))
			goto fault;
		w = w && (pte & PTE_W);
		u = u && (pte & PTE_U);
		entries[n] = pte, addrs[n++] = pte_a;
		*gpa = (pte & 0xfffff000u) + (lin & 0xfff);
		goto leaf;
	}
	for (int level = levels; level >= 1; level--) {
		int shift = 12 + 9 * (level - 1);
		uint64_t a = table + ((lin >> shift) & 511) * 8;
		uint64_t e = phys_read(c, a, 8);
		if (!(e & PTE_P))
			goto fault;
		if (e & (rsvd_nx | PTE_RSVD_ADDR))
			goto rsvd;
		w = w && (e & PTE_W);
		u = u && (e & PTE_U);
		nx = nx || (nxe && (e & PTE_NX));
		entries[n] = e, addrs[n++] = a;
		if (level == 1 || ((e & PTE_PS) && level <= 3)) {
			if (level == 3 && !(c->efer & EFER_LMA))
				goto rsvd; /* no 1 GiB pages in PAE mode */
			page_size = 1ull << shift;
			uint64_t base = level == 1 ? (e & PTE_ADDR) : (e & PTE_ADDR & ~(page_size - 1));
			if (level > 1 && (e & PTE_ADDR & (page_size - 1) & ~0x1000ull))
				goto rsvd; /* reserved bits in a large-page address */
			pte = e;
			*gpa = base + (lin & (page_size - 1));
			break;
		}
		table = e & PTE_ADDR;
	}
leaf:
	if (user && !u)
		goto prot;
	if (kind == ACC_W && !w && (user || (c->cr0 & CR0_WP)))
		goto prot;
	if (kind == ACC_X && nx)
		goto prot;
	/* accessed on every level, dirty on the leaf for writes */
	for (int i = 0; i < n; i++)
		if (!(entries[i] & PTE_A))
			pte_set_bits(c, addrs[i], PTE_A);
	if (kind == ACC_W && !(pte & PTE_D))
		pte_set_bits(c, addrs[n - 1], PTE_D);
	*writable = w || (!user && !(c->cr0 & CR0_WP));
	*exec = !nx;
	*dirty = (pte & PTE_D) || kind == ACC_W;
	*global = (pte & PTE_G) && (c->cr4 & CR4_PGE);
	return true;
fault:
	*err = ec;
	return false;
rsvd:
	*err = ec | PF_P | PF_RSVD;
	return false;
prot:
	*err = ec | PF_P;
	return false;
}

bool mmu_translate(struct cpu *c, uint64_t lin, int access, uint64_t *gpa, uint32_t *err)
{
	bool w, x, d, g;
	return walk(c, lin, access, gpa, err, &w, &x, &d, &g);
}

/* Translate for an access by the running instruction, fault on failure,
 * and fill the TLB when the page is RAM. Returns the host pointer or NULL
 * (MMIO), with *gpa set. */
static uint8_t *translate_fill(struct cpu *c, uint64_t lin, int kind, uint64_t *gpa)
{
	uint32_t err = 0;
	bool w, x, d, g;
	if (c->mode == 64 && !lin_canonical(lin))
		cpu_fault(c, EXC_GP, 0);
	if (!walk(c, lin, kind, gpa, &err, &w, &x, &d, &g)) {
		c->cr2 = lin;
		cpu_fault(c, EXC_PF, err);
	}
	uint64_t page = *gpa & ~0xfffull;
	uint8_t *hp = c->bus.gpa_page(c->bus.opaque, page, kind == ACC_W);
	if (!hp)
		return NULL;
	int user = c->cpl == 3;
	struct tlb_entry *e = &c->tlb[user][tlb_index(lin)];
	uint64_t tag = (lin & ~0xfffull) | 1;
	if (e->tag_r != tag && e->tag_w != tag && e->tag_x != tag) {
		/* an empty entry is filled: log it for tlb_flush */
		if (!(e->tag_r | e->tag_w | e->tag_x) && c->tlb_nlog <= TLB_LOG) {
			if (c->tlb_nlog < TLB_LOG)
				c->tlb_log[c->tlb_nlog] = (uint16_t)(user << TLB_BITS | tlb_index(lin));
			c->tlb_nlog++;
		}
		memset(e, 0, sizeof(*e));
	}
	e->addend = (uintptr_t)hp - (lin & ~0xfffull);
	/* kept by CR3 loads (tlb_flush_nonglobal) */
	e->global = g;
	e->tag_r = tag;
	if (w && d)
		e->tag_w = tag;
	if (x)
		e->tag_x = tag;
	return hp + (lin & 0xfff);
}

const uint8_t *mem_fetch_slow(struct cpu *c, uint64_t lin)
{
	uint64_t gpa;
	return translate_fill(c, lin, ACC_X, &gpa);
}

uint8_t mem_fetch_mmio(struct cpu *c, uint64_t lin)
{
	uint64_t gpa;
	uint8_t *p = translate_fill(c, lin, ACC_X, &gpa);
	return p ? *p : (uint8_t)c->bus.mmio_read(c->bus.opaque, gpa, 1);
}

uint64_t mem_read_slow(struct cpu *c, uint64_t lin, int size)
{
	if ((lin & 0xfff) + size > 0x1000) {
		uint64_t v = 0;
		for (int i = 0; i < size; i++)
			v |= mem_read_slow(c, lin + i, 1) << (8 * i);
		return v;
	}
	uint64_t gpa, v = 0;
	uint8_t *p = translate_fill(c, lin, ACC_R, &gpa);
	if (p) {
		memcpy(&v, p, size);
		return v;
	}
	/* a device may write guest memory, code included, when accessed */
	c->code_epoch++;
	return c->bus.mmio_read(c->bus.opaque, gpa, size);
}

void mem_write_slow(struct cpu *c, uint64_t lin, uint64_t val, int size)
{
	uint64_t gpa;
	if ((lin & 0xfff) + size > 0x1000) {
		int first = 0x1000 - (lin & 0xfff);
		/* probe both pages for write before storing anything */
		translate_fill(c, lin, ACC_W, &gpa);
		translate_fill(c, lin + first, ACC_W, &gpa);
		for (int i = 0; i < size; i++)
			mem_write_slow(c, lin + i, val >> (8 * i), 1);
		return;
	}
	uint8_t *p = translate_fill(c, lin, ACC_W, &gpa);
	if (p) {
		code_store(c, (uintptr_t)p);
		memcpy(p, &val, size);
	} else {
		c->code_epoch++;
		c->bus.mmio_write(c->bus.opaque, gpa, val, size);
	}
}

void *mem_ptr(struct cpu *c, uint64_t lin, int size, bool write)
{
	if ((lin & 0xfff) + size > 0x1000)
		return NULL;
	struct tlb_entry *e = tlb_entry(c, lin);
	uint64_t tag = (lin & ~0xfffull) | 1;
	uint8_t *p;
	if ((write ? e->tag_w : e->tag_r) == tag) {
		p = (uint8_t *)(lin + e->addend);
	} else {
		uint64_t gpa;
		p = translate_fill(c, lin, write ? ACC_W : ACC_R, &gpa);
	}
	/* the caller writes through p */
	if (write && p)
		code_store(c, (uintptr_t)p);
	return p;
}

void mem_read_buf(struct cpu *c, uint64_t lin, void *buf, int len)
{
	uint8_t *b = buf;
	while (len > 0) {
		int n = 0x1000 - (int)(lin & 0xfff);
		if (n > len)
			n = len;
		uint8_t *p = mem_ptr(c, lin, n, false);
		if (p) {
			memcpy(b, p, n);
		} else {
			for (int i = 0; i < n; i++)
				b[i] = (uint8_t)mem_read(c, lin + i, 1);
		}
		lin += n, b += n, len -= n;
	}
}

void mem_write_buf(struct cpu *c, uint64_t lin, const void *buf, int len)
{
	const uint8_t *b = buf;
	/* probe every page first: a fault must not leave a partial store */
	for (uint64_t a = lin; a < lin + (uint64_t)len; a = (a | 0xfff) + 1)
		mem_ptr(c, a, 1, true);
	while (len > 0) {
		int n = 0x1000 - (int)(lin & 0xfff);
		if (n > len)
			n = len;
		uint8_t *p = mem_ptr(c, lin, n, true);
		if (p) {
			memcpy(p, b, n);
		} else {
			for (int i = 0; i < n; i++)
				mem_write(c, lin + i, b[i], 1);
		}
		lin += n, b += n, len -= n;
	}
}

/* Implicit supervisor accesses from CPL 3: a walk with supervisor rights,
 * kept out of the TLB, which holds user rights at CPL 3. */
static uint64_t sys_translate(struct cpu *c, uint64_t lin, int kind)
{
	uint64_t gpa;
	uint32_t err = 0;
	if (c->mode == 64 && !lin_canonical(lin))
		cpu_fault(c, EXC_GP, 0);
	if (!mmu_translate(c, lin, kind | ACC_SUPER, &gpa, &err)) {
		c->cr2 = lin;
		cpu_fault(c, EXC_PF, err);
	}
	return gpa;
}

uint64_t mem_read_sys(struct cpu *c, uint64_t lin, int size)
{
	if (c->cpl != 3)
		return mem_read(c, lin, size);
	if ((lin & 0xfff) + size > 0x1000) {
		uint64_t v = 0;
		for (int i = 0; i < size; i++)
			v |= mem_read_sys(c, lin + i, 1) << (8 * i);
		return v;
	}
	return phys_read(c, sys_translate(c, lin, ACC_R), size);
}

void mem_write_sys(struct cpu *c, uint64_t lin, uint64_t val, int size)
{
	if (c->cpl != 3) {
		mem_write(c, lin, val, size);
		return;
	}
	if ((lin & 0xfff) + size > 0x1000) {
		sys_translate(c, lin, ACC_W);
		sys_translate(c, (lin + size - 1) & ~0xfffull, ACC_W);
		for (int i = 0; i < size; i++)
			mem_write_sys(c, lin + i, val >> (8 * i), 1);
		return;
	}
	phys_write(c, sys_translate(c, lin, ACC_W), val, size);
}
