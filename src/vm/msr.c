/* The machine's MSRs and the vCPU-bound port, shared by both engines: what
 * the CPU core does not hold goes to the LAPIC, then to the paravirtual
 * personality (kvmclock or the Hyper-V TLFS), so that one model answers
 * whichever engine runs the vCPU. */
#include "dev/dev.h"
#include "dev/hyperv/hyperv.h"
#include "dev/kvmclock.h"
#include "engine/engine.h"
#include "vm/vm.h"

bool vm_msr_read(struct vcpu *v, uint32_t msr, uint64_t *val)
{
	struct vm *vm = v->vm;

	if (lapic_msr_read(v->lapic, msr, val))
		return true;
	if (vm->hv)
		return hv_msr_read(v, msr, val);
	if (vm->kvmclock)
		return kvmclock_msr_read(v, msr, val);
	return false;
}

bool vm_msr_write(struct vcpu *v, uint32_t msr, uint64_t val)
{
	struct vm *vm = v->vm;

	if (lapic_msr_write(v->lapic, msr, val))
		return true;
	if (vm->hv)
		return hv_msr_write(v, msr, val);
	if (vm->kvmclock)
		return kvmclock_msr_write(v, msr, val);
	return false;
}

bool vm_pio_out_vcpu(struct vcpu *v, uint16_t port, uint32_t val, int size)
{
	if (v->vm->hv && port == HV_HYPERCALL_PORT) {
		hv_hypercall(v);
		return true;
	}
	return false;
}

uint32_t vm_pio_in(struct vcpu *v, uint16_t port, int size)
{
	uint64_t val = 0;

	pthread_mutex_lock(&v->vm->io_lock);
	bus_read(&v->vm->pio, port, size, &val);
	pthread_mutex_unlock(&v->vm->io_lock);
	return (uint32_t)val;
}

void vm_pio_out(struct vcpu *v, uint16_t port, uint32_t val, int size)
{
	if (vm_pio_out_vcpu(v, port, val, size))
		return;
	pthread_mutex_lock(&v->vm->io_lock);
	bus_write(&v->vm->pio, port, val, size);
	pthread_mutex_unlock(&v->vm->io_lock);
}

void vm_guest_tsc(struct vcpu *v, uint64_t ns, uint64_t *tsc, uint64_t *hz)
{
	const struct engine_ops *e = v->vm->engine;

	if (e->guest_tsc && e->guest_tsc(v, ns, tsc, hz) == 0)
		return;
	/* vm_tsc() at that instant */
	*tsc = (uint64_t)((unsigned __int128)ns * VM_TSC_HZ / 1000000000ull);
	*hz = VM_TSC_HZ;
}
