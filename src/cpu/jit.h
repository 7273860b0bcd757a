/* jit.c: host code for the register-only prefix of a decoded block. */
#ifndef ACCORD_JIT_H
#define ACCORD_JIT_H

#include "cpu/cpu.h"

/* Runs the translated instructions: leaves RIP after them (or at a branch
 * target), adds them to icount, and keeps looping a block that branches to
 * its own start while icount < end and nothing is pending. True when it
 * ran to its end without a branch: the block's next instruction follows. */
typedef bool (*jit_fn)(struct cpu *c, uint64_t end);

struct jit;
struct jit *jit_create(void);
void jit_destroy(struct jit *j);
/* forget all code (the block arena was flushed) */
void jit_reset(struct jit *j);
/* room for one more block's code? */
bool jit_room(const struct jit *j);
/* shorter runs are left to the handlers: entering and leaving the code
 * costs about as much as they do */
#define JIT_MIN_RUN 3
/* how many of the n decoded instructions at rip0 a run would cover */
int jit_prefix(struct cpu *c, const struct insn *in, int n, uint64_t rip0);
/* Translate the longest register-only prefix of the n decoded instructions
 * at rip0 (64-bit mode); returns how many it covers (0: no code) and the
 * code in *fn. */
int jit_translate(struct jit *j, struct cpu *c, const struct insn *in, int n, uint64_t rip0, jit_fn *fn);

#endif
