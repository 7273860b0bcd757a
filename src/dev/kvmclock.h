/* kvmclock (KVM's paravirtual clock, Documentation/virt/kvm/x86/msr.rst):
 * with --personality kvm the guest finds it through CPUID 0x40000001. */
#ifndef ACCORD_KVMCLOCK_H
#define ACCORD_KVMCLOCK_H

#include <stdbool.h>
#include <stdint.h>

struct vm;
struct vcpu;

#define MSR_KVM_WALL_CLOCK_NEW 0x4b564d00
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01

/* 0, or -1 with a message on stderr */
int kvmclock_create(struct vm *vm);
void kvmclock_destroy(struct vm *vm);
/* false means #GP */
bool kvmclock_msr_read(struct vcpu *v, uint32_t msr, uint64_t *val);
bool kvmclock_msr_write(struct vcpu *v, uint32_t msr, uint64_t val);

#endif
