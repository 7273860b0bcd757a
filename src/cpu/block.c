/* Blocks of decoded instructions, cached per CPU and keyed by the host
 * address of their first byte (so by guest-physical address), the code
 * size and the privilege class (user or not: the TLB set that the host
 * code made from a block looks up, jit.c). A block runs straight-line
 * code: it ends at an unconditional transfer, at an instruction that
 * changes how the following bytes must be decoded or when interrupts must
 * be looked at, at the end of its page, or after BLOCK_MAX_INSNS. Execution leaves a block early whenever RIP is not
 * where the next instruction starts (a taken branch, a string instruction
 * that will restart) and when an instruction wrote into a page that holds
 * decoded code.
 *
 * A cached block is used only while the bytes in memory equal the bytes it
 * was decoded from, so code that other vCPUs or devices modify needs no
 * invalidation protocol. The bytes are compared at entry unless nothing
 * could have changed them since the last compare, which the CPU's
 * code_epoch tells: it moves on at each store of this CPU into a code page
 * (cpu.h code_store), after each instruction that ends a block and may be
 * serializing, at each MMIO access (devices), after each instruction
 * cpu_run steps outside blocks, and when cpu_run starts after a stop other
 * than the end of a slice (intr.c). Another
 * vCPU's modification need only be seen after a serializing instruction on
 * this one (SDM 8.1.3, cross-modifying code); Linux's text_poke_bp
 * synchronises with IPIs. */
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"
#include "cpu/jit.h"

#define BLOCK_MAX_INSNS 64
#define BLOCK_HASH (1u << 14)
#define BLOCK_ARENA (16u << 20)

struct block {
	uintptr_t key;
	struct block *next; /* hash chain */
	/* the blocks that followed this one last, which spares the hash
	 * lookup on the way out of most blocks */
	struct block *succ[2];
	uintptr_t succ_key[2];
	unsigned succ_next;
	const uint8_t *bytes; /* the code this block was decoded from */
	uint64_t epoch;       /* the code_epoch when the bytes last matched */
	uint16_t nbytes;
	uint8_t ninsns;
	/* host code for the first instructions (jit.c), or NULL */
	jit_fn jit;
	struct insn in[];
};

struct block_cache {
	struct block *hash[BLOCK_HASH];
	uint8_t *arena;
	size_t used;
	struct block *last; /* the block that ran last, NULL after a flush */
	uint8_t *code_map;  /* CODE_MAP_SIZE bytes, see struct cpu */
	struct jit *jit;    /* NULL: no host code (ACCORD_JIT=0) */
	jit_enter enter;
	unsigned flushes;   /* how often the arenas were emptied */
};

/* the code map of a CPU without a block cache: no page holds code */
static uint8_t no_code[CODE_MAP_SIZE];

struct block_cache *block_cache_create(uint8_t **code_map)
{
	*code_map = no_code;
	struct block_cache *bc = calloc(1, sizeof(*bc));
	if (!bc)
		return NULL;
	bc->arena = malloc(BLOCK_ARENA);
	bc->code_map = calloc(CODE_MAP_SIZE, 1);
	if (!bc->arena || !bc->code_map) {
		free(bc->arena);
		free(bc->code_map);
		free(bc);
		return NULL;
	}
	*code_map = bc->code_map;
	const char *env = getenv("ACCORD_JIT");
	if (!env || strcmp(env, "0"))
		bc->jit = jit_create();
	if (bc->jit)
		bc->enter = jit_entry(bc->jit);
	return bc;
}

void block_cache_destroy(struct block_cache *bc)
{
	if (!bc)
		return;
	jit_destroy(bc->jit);
	free(bc->arena);
	free(bc->code_map);
	free(bc);
}

static inline unsigned block_slot(uintptr_t key)
{
	return (unsigned)((key >> 3) ^ (key >> 17)) & (BLOCK_HASH - 1);
}

/* does this instruction end a block? */
static bool ends_block(const struct insn *in)
{
	uint8_t op = in->op;
	if (in->map == 0) {
		switch (op) {
		case 0x07: case 0x17: case 0x1F: /* pop segment */
		case 0x6C ... 0x6F:              /* ins / outs */
		case 0x8E:                       /* mov sreg */
		case 0x9A: case 0x9D:            /* call far, popf */
		case 0xC2: case 0xC3: case 0xCA ... 0xCF: /* ret, int, iret */
		case 0xE4 ... 0xE7: case 0xEC ... 0xEF:   /* in / out */
		case 0xE8 ... 0xEB:              /* call, jmp */
		case 0xF1: case 0xF4:            /* int1, hlt */
		case 0xFA: case 0xFB:            /* cli, sti */
			return true;
		case 0xFF:
			return in->reg >= 2 && in->reg <= 5;
		}
		return false;
	}
	if (in->map == 1) {
		switch (op) {
		case 0x00: case 0x01: case 0x05 ... 0x09: case 0x0B:
		case 0x20 ... 0x23: case 0x30: case 0x32 ... 0x35:
		case 0xA1: case 0xA2: case 0xA9: case 0xAA:
		case 0xB2: case 0xB4: case 0xB5: case 0xB9: case 0xFF:
			return true;
		}
	}
	return false;
}

static struct block *block_build(struct cpu *c, const uint8_t *p, uint64_t lin, uintptr_t key)
{
	struct block_cache *bc = c->blocks;
	size_t worst = sizeof(struct block) + BLOCK_MAX_INSNS * sizeof(struct insn) + 0x1000;
	if (bc->used + worst > BLOCK_ARENA || (bc->jit && !jit_room(bc->jit))) {
		memset(bc->hash, 0, sizeof(bc->hash));
		bc->used = 0;
		bc->last = NULL;
		if (bc->jit)
			jit_reset(bc->jit);
		bc->flushes++;
	}
	struct block *volatile b = (struct block *)(bc->arena + bc->used);
	uint64_t rip0 = c->rip, cr2 = c->cr2;
	int pending = c->pending_exc;
	uint32_t pending_err = c->pending_err;
	unsigned room = 0x1000 - (unsigned)(lin & 0xfff);
	volatile int n = 0;
	volatile unsigned off = 0;
	jmp_buf saved;

	/* Decoding ahead must not fault: a fault ends the block before the
	 * instruction, which then faults for real when it is reached. */
	memcpy(saved, c->fault_jmp, sizeof(saved));
	if (setjmp(c->fault_jmp) == 0) {
		while (n < BLOCK_MAX_INSNS) {
			struct insn *in = &b->in[n];
			c->rip = rip0 + off;
			insn_decode_static(c, in);
			bool last = ends_block(in);
			insn_bind(c, in, last);
			if (off + in->len > room)
				break; /* reaches into the next page */
			off += in->len;
			n++;
			if (last)
				break;
		}
	}
	memcpy(c->fault_jmp, saved, sizeof(saved));
	c->rip = rip0;
	c->cr2 = cr2;
	c->pending_exc = pending;
	c->pending_err = pending_err;
	if (n == 0)
		return NULL;
	/* a run of host code starts a block: end this one where the next
	 * run would begin */
	if (bc->jit) {
		int p = jit_prefix(c, b->in, n, rip0), i = 0;
		unsigned at = 0;
		for (; i < n; at += b->in[i++].len)
			if (i >= (p ? p : 1) &&
			    jit_prefix(c, b->in + i, n - i < JIT_MIN_RUN ? n - i : JIT_MIN_RUN, rip0 + at) >= JIT_MIN_RUN)
				break;
		if (i < n) {
			n = i;
			off = at;
		}
	}
	uint8_t *copy = (uint8_t *)&b->in[n];
	memcpy(copy, p, off);
	b->key = key;
	b->succ[0] = b->succ[1] = NULL;
	b->succ_key[0] = b->succ_key[1] = 0;
	b->succ_next = 0;
	b->bytes = copy;
	b->epoch = c->code_epoch;
	bc->code_map[((uintptr_t)p >> 12) & (CODE_MAP_SIZE - 1)] = 1;
	b->nbytes = (uint16_t)off;
	b->ninsns = (uint8_t)n;
	b->jit = NULL;
	if (bc->jit)
		jit_translate(bc->jit, c, b->in, n, rip0, (void *)b, &b->jit);
	unsigned slot = block_slot(key);
	b->next = bc->hash[slot];
	bc->hash[slot] = b;
	bc->used += (sizeof(*b) + n * sizeof(struct insn) + off + 63) & ~(size_t)63;
	return b;
}

/* the block for the code at p, from the previous block's successors, the
 * hash table, or decoded now; NULL when nothing can be decoded there */
/* b's bytes may be run for the code at p */
static inline bool block_valid(struct cpu *c, struct block *b, const uint8_t *p)
{
	if (b->epoch == c->code_epoch)
		return true;
	if (memcmp(b->bytes, p, b->nbytes))
		return false;
	b->epoch = c->code_epoch;
	return true;
}

static struct block *block_find(struct cpu *c, const uint8_t *p, uint64_t lin, uintptr_t key)
{
	struct block_cache *bc = c->blocks;
	struct block *prev = bc->last, *b = NULL;
	if (prev) {
		if (prev->succ_key[0] == key)
			b = prev->succ[0];
		else if (prev->succ_key[1] == key)
			b = prev->succ[1];
		if (b && block_valid(c, b, p))
			return b;
	}
	b = bc->hash[block_slot(key)];
	while (b && (b->key != key || !block_valid(c, b, p)))
		b = b->next;
	if (!b) {
		b = block_build(c, p, lin, key);
		if (!b)
			return NULL;
	}
	/* a flush while building leaves prev dangling: bc->last is NULL then */
	if (prev && bc->last == prev) {
		unsigned i = prev->succ_next;
		prev->succ[i] = b;
		prev->succ_key[i] = key;
		prev->succ_next = i ^ 1;
	}
	return b;
}

bool block_exec(struct cpu *c, uint64_t end)
{
	struct block_cache *bc = c->blocks;
	struct block *b = NULL;
	bool ran = false;
	/* the exit of host code that led here, to link to this block's */
	uintptr_t link = 0;
	unsigned flushes = bc->flushes;
	/* one block after another while nothing asks for cpu_run's attention:
	 * an event, a fault (which unwinds), TF set by popf or iret, hlt, or
	 * the end of the budget */
	do {
		/* a fetch fault is reported at the instruction being fetched */
		c->insn_rip = c->rip;
		c->insn_rsp = c->r[R_RSP];
		uint64_t lin = seg_lin(c, S_CS, c->rip);
		const uint8_t *p = mem_fetch_ptr(c, lin);
		/* a loop back to the start of the block that just ran, with
		 * the epoch unmoved, runs it again without a lookup */
		uintptr_t key = (uintptr_t)p << 4 | (uintptr_t)(c->cpl == 3) << 3 | (uintptr_t)(c->mode >> 4);
		if (!b || b->key != key || b->epoch != c->code_epoch) {
			b = p ? block_find(c, p, lin, key) : NULL;
			if (!b) {
				bc->last = NULL;
				return ran;
			}
			bc->last = b;
		}
		if (link && b->jit && !c->intr_shadow && flushes == bc->flushes) {
			if (link == JIT_EXIT_RET)
				jit_remember(bc->jit, key, b->jit, &b->epoch);
			else
				jit_link(bc->jit, link, b->jit, &b->epoch, p, c->cpl == 3);
		}
		link = 0;
		c->smc = false;
		/* The instructions that set the interrupt shadow (sti, mov ss,
		 * pop ss) end their block; the shadow lasts one instruction,
		 * after which a pending interrupt is taken. */
		struct insn *in = b->in, *stop = b->in + (c->intr_shadow ? 1 : b->ninsns);
		bool more = true;
		if (b->jit && !c->intr_shadow) {
			unsigned at = bc->enter(c, end, b->jit);
			/* linked code may have gone on into other blocks */
			b = bc->last = c->jit_block;
			link = c->jit_exit;
			flushes = bc->flushes;
			more = at < b->ninsns;
			in = b->in + (more ? at : 0);
			stop = b->in + b->ninsns;
		}
		c->intr_shadow = false;
		while (more) {
			c->insn_rip = c->rip;
			c->insn_rsp = c->r[R_RSP];
			more = in->fn(c, in) && ++in != stop;
			c->icount++;
		}
		ran = true;
	} while (!(c->intr_poke | c->stop_request | c->halted) && !(c->rflags & F_TF) &&
		 c->icount < end);
	return true;
}
