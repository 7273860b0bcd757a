/* Internal interface between the instruction families of the CPU. */
#ifndef ACCORD_EXEC_H
#define ACCORD_EXEC_H

#include "cpu/cpu.h"

bool cond_true(struct cpu *c, int cc);
void push(struct cpu *c, uint64_t val, int size);
uint64_t pop(struct cpu *c, int size);
void set_rip(struct cpu *c, uint64_t rip, int opsize);
void write_rflags(struct cpu *c, uint64_t v, int size, bool iret);
uint64_t xchg_rm(struct cpu *c, struct insn *in, int size, uint64_t v);

/* mmu.c: implicit supervisor accesses (descriptor tables, the TSS, the
 * stack of an interrupt that enters CPL 0), which are privileged whatever
 * the CPL */
uint64_t mem_read_sys(struct cpu *c, uint64_t lin, int size);
void mem_write_sys(struct cpu *c, uint64_t lin, uint64_t val, int size);

/* exec_sys.c */
void exec_sys(struct cpu *c, struct insn *in);
void bcd_adjust(struct cpu *c, uint8_t op);
void io_check(struct cpu *c, uint16_t port, int size);
void far_jump(struct cpu *c, uint16_t sel, uint64_t off);
void far_call(struct cpu *c, uint16_t sel, uint64_t off, int size, uint64_t next);
void far_ret(struct cpu *c, int size, uint16_t pop_bytes);
void do_iret(struct cpu *c, int size);
/* descriptor access: raw 8-byte descriptor for a selector, #GP(sel) when
 * outside its table */
uint64_t desc_read(struct cpu *c, uint16_t sel, int exc);
void seg_from_desc(struct seg *s, uint16_t sel, uint64_t d);
void cpu_load_cs(struct cpu *c, uint16_t sel, uint64_t d, int cpl);

#endif
