/* jit.c: host code for runs of decoded instructions. */
#ifndef ACCORD_JIT_H
#define ACCORD_JIT_H

#include "cpu/cpu.h"

/* Runs the translated instructions and returns the index of the block's
 * instruction to go on with (its handler runs it: a side exit before a
 * memory access the code cannot make, which the handler then makes or
 * faults on), or JIT_LEFT when a branch left the block. RIP and icount
 * are where the handlers expect them. A block that branches to its own
 * start loops inside the code while icount < end and nothing is pending. */
typedef unsigned (*jit_fn)(struct cpu *c, uint64_t end);
#define JIT_LEFT 255u
/* Code runs through the entry (jit_entry), which saves the host's
 * callee-saved registers: enter(c, end, fn) */
typedef unsigned (*jit_enter)(struct cpu *c, uint64_t end, jit_fn fn);

struct jit;
struct jit *jit_create(void);
void jit_destroy(struct jit *j);
/* forget all code (the block arena was flushed) */
void jit_reset(struct jit *j);
/* room for one more block's code? */
bool jit_room(const struct jit *j);
jit_enter jit_entry(const struct jit *j);
/* shorter runs are left to the handlers: entering and leaving the code
 * costs about as much as they do */
#define JIT_MIN_RUN 3
/* how many of the n decoded instructions at rip0 a run would cover */
int jit_prefix(struct cpu *c, const struct insn *in, int n, uint64_t rip0);
/* Translate the run at the start of the n decoded instructions at rip0
 * (64-bit mode, JIT_MIN_RUN instructions or more) of the block owner;
 * returns how many it covers (0: no code) and the code in *fn. */
int jit_translate(struct jit *j, struct cpu *c, const struct insn *in, int n, uint64_t rip0, void *owner,
		  jit_fn *fn);
/* Every return of the code says in c->jit_block which block's code
 * returned (code jumps on to the next block's once linked) and in
 * c->jit_exit the exit it took when that exit may be linked (else 0).
 * Point that exit at to, the code of the block for the guest code at
 * host address code (cpl3: the TLB set it runs with), entered while its
 * epoch is the CPU's, the budget lasts, nothing is pending and, for an
 * exit out of the page, the TLB still maps RIP there; false when there
 * is no room. */
bool jit_link(struct jit *j, uintptr_t exit, jit_fn to, const uint64_t *epoch, const uint8_t *code, bool cpl3);
/* c->jit_exit after a near ret or an indirect jmp or call whose target
 * the jump cache did not hold (or whose checks failed): remember the
 * target block's code there */
#define JIT_EXIT_RET 2u
/* the jump cache of returns and indirect jumps: the code of the block
 * with this key (block.c), entered while *epoch is the CPU's code_epoch */
void jit_remember(struct jit *j, uintptr_t key, jit_fn fn, const uint64_t *epoch);

#endif
