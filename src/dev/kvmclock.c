/* kvmclock: KVM's paravirtual clock (Documentation/virt/kvm/x86/msr.rst,
 * arch/x86/include/asm/pvclock-abi.h). Each vCPU names a pvclock structure
 * in its RAM through MSR_KVM_SYSTEM_TIME_NEW; the guest turns its TSC into
 * nanoseconds since the VM started with
 *   system_time + ((tsc - tsc_timestamp) << tsc_shift) * mul >> 32.
 * accord's guest TSC runs at a fixed rate from the same monotonic clock as
 * vm_now_ns() and is one clock for every vCPU, so one write per MSR write
 * stays right and PVCLOCK_TSC_STABLE_BIT is true. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dev/kvmclock.h"
#include "vm/vm.h"
#include "vm/snapshot.h"

#define PVCLOCK_TSC_STABLE_BIT (1u << 0)
#define SYSTEM_TIME_ENABLE 1ull

struct pvclock_vcpu_time_info {
	uint32_t version, pad0;
	uint64_t tsc_timestamp, system_time;
	uint32_t tsc_to_system_mul;
	int8_t tsc_shift;
	uint8_t flags, pad[2];
};
_Static_assert(sizeof(struct pvclock_vcpu_time_info) == 32, "pvclock_vcpu_time_info");

struct pvclock_wall_clock {
	uint32_t version, sec, nsec;
};

struct kvmclock {
	pthread_mutex_t lock;
	uint64_t wall_clock;
	uint64_t system_time[VM_MAX_CPUS];
};

/* The MSRs as the guest wrote them. The structures they point at are in
 * guest memory and stay right: the VM clock and the TSC continue from the
 * snapshot's time. */
static int kvmclock_save(void *o, struct snap_buf *b, char *err, size_t n)
{
	struct kvmclock *k = o;

	pthread_mutex_lock(&k->lock);
	snap_put(b, &k->wall_clock, 8);
	snap_put(b, k->system_time, sizeof(k->system_time));
	pthread_mutex_unlock(&k->lock);
	return 0;
}

static int kvmclock_load(void *o, struct snap_rd *r, char *err, size_t n)
{
	struct kvmclock *k = o;
	uint64_t wall, sys[VM_MAX_CPUS];

	if (!snap_get(r, &wall, 8) || !snap_get(r, sys, sizeof(sys)))
		return -1;
	pthread_mutex_lock(&k->lock);
	k->wall_clock = wall;
	memcpy(k->system_time, sys, sizeof(sys));
	pthread_mutex_unlock(&k->lock);
	return 0;
}

int kvmclock_create(struct vm *vm)
{
	struct kvmclock *k = calloc(1, sizeof(*k));

	if (!k) {
		fprintf(stderr, "accord: kvmclock: out of memory\n");
		return -1;
	}
	pthread_mutex_init(&k->lock, NULL);
	vm->kvmclock = k;
	return vm_snap_register(vm, "kvmclock", kvmclock_save, kvmclock_load, k);
}

void kvmclock_destroy(struct vm *vm)
{
	if (!vm->kvmclock)
		return;
	pthread_mutex_destroy(&vm->kvmclock->lock);
	free(vm->kvmclock);
	vm->kvmclock = NULL;
}

/* mul and shift with ns = (ticks << shift) * mul >> 32 for a clock of hz */
static void time_scale(uint64_t hz, uint32_t *mul, int8_t *shift)
{
	uint64_t num = 1000000000ull, den = hz;
	int s = 0;

	/* bring num/den into [0.5, 1) so that it fits 0.32 fixed point */
	while (num >= den) {
		den <<= 1;
		s++;
	}
	while (num * 2 < den) {
		num <<= 1;
		s--;
	}
	*mul = (uint32_t)((num << 32) / den);
	*shift = (int8_t)s;
}

/* The version is odd while the guest must not trust the fields. The
 * structure lies inside one page of RAM (checked by the caller). */
static void system_time_write(struct vcpu *v, uint64_t gpa)
{
	struct pvclock_vcpu_time_info *p = vm_gpa(v->vm, gpa, sizeof(*p));
	uint64_t tsc, hz;
	uint32_t ver = __atomic_load_n(&p->version, __ATOMIC_RELAXED);

	ver |= 1;
	__atomic_store_n(&p->version, ver, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	p->system_time = vm_now_ns(v->vm);
	vm_guest_tsc(v, p->system_time, &tsc, &hz);
	p->tsc_timestamp = tsc;
	time_scale(hz, &p->tsc_to_system_mul, &p->tsc_shift);
	p->flags = PVCLOCK_TSC_STABLE_BIT;
	p->pad0 = 0;
	memset(p->pad, 0, sizeof(p->pad));
	__atomic_store_n(&p->version, ver + 1, __ATOMIC_RELEASE);
}

/* the host's wall-clock time when the guest's clock read 0 */
static void wall_clock_write(struct vm *vm, uint64_t gpa)
{
	struct pvclock_wall_clock *w = vm_gpa(vm, gpa, sizeof(*w));
	struct timespec ts;
	uint64_t boot;
	uint32_t ver;

	if (!w)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	boot = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec - vm_now_ns(vm);
	ver = __atomic_load_n(&w->version, __ATOMIC_RELAXED) | 1;
	__atomic_store_n(&w->version, ver, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	w->sec = (uint32_t)(boot / 1000000000ull);
	w->nsec = (uint32_t)(boot % 1000000000ull);
	__atomic_store_n(&w->version, ver + 1, __ATOMIC_RELEASE);
}

bool kvmclock_msr_read(struct vcpu *v, uint32_t msr, uint64_t *val)
{
	struct kvmclock *k = v->vm->kvmclock;

	switch (msr) {
	case MSR_KVM_WALL_CLOCK_NEW:
		*val = k->wall_clock;
		return true;
	case MSR_KVM_SYSTEM_TIME_NEW:
		*val = k->system_time[v->index];
		return true;
	}
	return false;
}

bool kvmclock_msr_write(struct vcpu *v, uint32_t msr, uint64_t val)
{
	struct kvmclock *k = v->vm->kvmclock;
	uint64_t gpa = val & ~SYSTEM_TIME_ENABLE;

	switch (msr) {
	case MSR_KVM_WALL_CLOCK_NEW:
		pthread_mutex_lock(&k->lock);
		k->wall_clock = val;
		wall_clock_write(v->vm, val);
		pthread_mutex_unlock(&k->lock);
		return true;
	case MSR_KVM_SYSTEM_TIME_NEW:
		pthread_mutex_lock(&k->lock);
		k->system_time[v->index] = val;
		/* an address outside RAM or across a page is never written:
		 * the guest sees no clock there */
		if ((val & SYSTEM_TIME_ENABLE) && (gpa & 0xfff) + sizeof(struct pvclock_vcpu_time_info) <= 0x1000 &&
		    vm_gpa(v->vm, gpa, sizeof(struct pvclock_vcpu_time_info)))
			system_time_write(v, gpa);
		pthread_mutex_unlock(&k->lock);
		return true;
	}
	return false;
}
