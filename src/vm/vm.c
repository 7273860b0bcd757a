/* The machine: guest RAM, vCPU threads, halting and waking, and the end of
 * the VM. Engine-neutral. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "dev/dev.h"
#include "dev/hyperv/hyperv.h"
#include "dev/kvmclock.h"
#include "engine/engine.h"
#include "vm/gdbstub.h"
#include "vm/clock.h"
#include "vm/vm.h"

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

uint64_t vm_now_ns(const struct vm *vm)
{
	return mono_ns() - vm->t0_ns;
}

void vm_set_time(struct vm *vm, uint64_t ns)
{
	vm->t0_ns = mono_ns() - ns;
}

uint64_t vm_tsc(const struct vm *vm)
{
	return (uint64_t)((unsigned __int128)vm_now_ns(vm) * VM_TSC_HZ / 1000000000ull);
}

int vm_create(struct vm *vm, uint64_t ram_size, int ncpus, const struct engine_ops *engine, int personality,
	      int irqchip, uint64_t crystal_hz)
{
	memset(vm, 0, sizeof(*vm));
	vm->t0_ns = mono_ns();
	vm->personality = personality;
	vm->irqchip = irqchip;
	/* accord's LAPICs (src/dev/lapic.c) count at VM_CRYSTAL_HZ */
	if (irqchip == VM_IRQCHIP_USER && crystal_hz && crystal_hz != VM_CRYSTAL_HZ) {
		fprintf(stderr, "accord: the guest's LAPIC timer counts at %llu kHz, accord's LAPIC at %llu kHz "
				"(--irqchip user)\n",
			(unsigned long long)(crystal_hz / 1000), (unsigned long long)(VM_CRYSTAL_HZ / 1000));
		return -1;
	}
	if (personality == PERSONALITY_HYPERV ? hv_create(vm) < 0 : kvmclock_create(vm) < 0)
		return -1;
	vm->ram_size = ram_size;
	vm->low_size = ram_size < VM_HOLE_START ? ram_size : VM_HOLE_START;
	vm->ncpus = ncpus;
	vm->engine = engine;
	pthread_mutex_init(&vm->io_lock, NULL);
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_condattr_t pca;
	pthread_condattr_init(&pca);
	pthread_condattr_setclock(&pca, CLOCK_MONOTONIC);
	pthread_cond_init(&vm->pause_cond, &pca);
	vm->ram = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vm->ram == MAP_FAILED) {
		fprintf(stderr, "accord: cannot allocate %llu MiB of guest memory: %s\n",
			(unsigned long long)(ram_size >> 20), strerror(errno));
		vm->ram = NULL;
		return -1;
	}
	madvise(vm->ram, ram_size, MADV_HUGEPAGE);
	vm->crystal_hz = crystal_hz;
	if (engine->vm_init && engine->vm_init(vm) < 0)
		return -1;
	if (!vm->crystal_hz)
		vm->crystal_hz = VM_CRYSTAL_HZ;
	for (int i = 0; i < ncpus; i++) {
		struct vcpu *v = calloc(1, sizeof(*v));
		if (!v)
			return -1;
		v->vm = vm;
		v->index = i;
		/* with the engine's LAPICs, the engine holds an AP until its
		 * INIT-SIPI-SIPI itself, inside vcpu_run */
		v->state = i == 0 || irqchip == VM_IRQCHIP_SPLIT ? VCPU_RUNNING : VCPU_WAIT_SIPI;
		pthread_mutex_init(&v->lock, NULL);
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&v->cond, &ca);
		vm->vcpu[i] = v;
		v->lapic = lapic_create(v);
		if (!v->lapic)
			return -1;
		if (engine->vcpu_init(v) < 0)
			return -1;
	}
	return 0;
}

void vm_destroy(struct vm *vm)
{
	for (int i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = vm->vcpu[i];
		if (!v)
			continue;
		if (v->lapic)
			lapic_destroy(v->lapic);
		if (v->engine_priv && vm->engine && vm->engine->vcpu_destroy)
			vm->engine->vcpu_destroy(v);
		free(v->engine_priv);
		free(v);
	}
	hv_destroy(vm);
	kvmclock_destroy(vm);
	free(vm->snap_hooks);
	for (int i = 0; i < vm->snap_argc; i++)
		free(vm->snap_argv[i]);
	free(vm->snap_argv);
	if (vm->ram)
		munmap(vm->ram, vm->ram_size);
	bus_free(&vm->pio);
	bus_free(&vm->mmio);
}

void *vm_gpa(struct vm *vm, uint64_t gpa, uint64_t len)
{
	if (gpa + len < gpa)
		return NULL;
	if (gpa + len <= vm->low_size)
		return vm->ram + gpa;
	if (gpa >= VM_HOLE_END && gpa - VM_HOLE_END + len <= vm->ram_size - vm->low_size)
		return vm->ram + vm->low_size + (gpa - VM_HOLE_END);
	return NULL;
}

int vm_write_phys(struct vm *vm, uint64_t gpa, const void *src, uint64_t len)
{
	void *p = vm_gpa(vm, gpa, len);
	if (!p)
		return -1;
	memcpy(p, src, len);
	return 0;
}

int vm_read_phys(struct vm *vm, uint64_t gpa, void *dst, uint64_t len)
{
	void *p = vm_gpa(vm, gpa, len);
	if (!p)
		return -1;
	memcpy(dst, p, len);
	return 0;
}

int vm_msi_irqfd(struct vm *vm, int fd, uint64_t addr, uint32_t data)
{
	if (vm->irqchip != VM_IRQCHIP_SPLIT || !vm->engine->irqfd || !vm->engine->irqfd_release ||
	    addr >> 20 != 0xFEE)
		return -1;
	return vm->engine->irqfd(vm, fd, addr, data);
}

void vm_msi_irqfd_release(struct vm *vm, int gsi, int fd)
{
	if (gsi >= 0 && vm->engine->irqfd_release)
		vm->engine->irqfd_release(vm, gsi, fd);
}

int vm_ioeventfd(struct vm *vm, uint64_t gpa, int fd, bool assign)
{
	return vm->engine->ioeventfd ? vm->engine->ioeventfd(vm, gpa, fd, assign) : -1;
}

void vm_kick_vcpu(struct vcpu *v)
{
	pthread_mutex_lock(&v->lock);
	v->wake = 1;
	pthread_cond_signal(&v->cond);
	pthread_mutex_unlock(&v->lock);
	if (v->vm->engine->vcpu_kick)
		v->vm->engine->vcpu_kick(v);
}

void vm_vcpu_init_ipi(struct vcpu *v)
{
	if (v->index == 0)
		return; /* INIT to the bootstrap processor is not modelled */
	pthread_mutex_lock(&v->lock);
	if (v->state == VCPU_RUNNING)
		v->init_pending = 1;
	v->state = VCPU_WAIT_SIPI;
	pthread_cond_signal(&v->cond);
	pthread_mutex_unlock(&v->lock);
	if (v->vm->engine->vcpu_kick)
		v->vm->engine->vcpu_kick(v);
}

void vm_vcpu_sipi(struct vcpu *v, uint8_t vector)
{
	pthread_mutex_lock(&v->lock);
	if (v->state == VCPU_WAIT_SIPI && !v->sipi_pending) {
		v->sipi_vector = vector;
		v->sipi_pending = 1;
		pthread_cond_signal(&v->cond);
	}
	pthread_mutex_unlock(&v->lock);
}

void vm_request_exit(struct vm *vm, int reason, int status, const char *msg)
{
	int expected = VM_RUNNING;
	if (!__atomic_compare_exchange_n(&vm->exit_reason, &expected, reason, false, __ATOMIC_SEQ_CST,
					 __ATOMIC_SEQ_CST))
		return;
	vm->exit_status = status;
	snprintf(vm->exit_msg, sizeof(vm->exit_msg), "%s", msg ? msg : "");
	for (int i = 0; i < vm->ncpus; i++)
		if (vm->vcpu[i])
			vm_kick_vcpu(vm->vcpu[i]);
	pthread_mutex_lock(&vm->pause_lock);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
}

/* A vCPU waiting for its SIPI runs no guest code, and when the SIPI comes
 * it passes vcpu_park before its first instruction; so it counts as
 * stopped. */
static bool all_parked(struct vm *vm)
{
	for (int i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = vm->vcpu[i];
		if (!v->parked && !(v->state == VCPU_WAIT_SIPI && !v->sipi_pending))
			return false;
	}
	return true;
}

int vm_pause(struct vm *vm)
{
	if (vm->gdb || vm->exit_reason)
		return -1;
	pthread_mutex_lock(&vm->pause_lock);
	vm->paused = true;
	vm->pause_request = 1;
	pthread_mutex_unlock(&vm->pause_lock);
	/* kicked again while waiting: a kick can land just before a vCPU
	 * enters vcpu_run, where the engine may not see it */
	for (;;) {
		for (int i = 0; i < vm->ncpus; i++)
			if (!vm->vcpu[i]->parked)
				vm_kick_vcpu(vm->vcpu[i]);
		pthread_mutex_lock(&vm->pause_lock);
		if (!all_parked(vm) && !vm->exit_reason) {
			struct timespec until = clock_after(CLOCK_MONOTONIC, 10000000);

			pthread_cond_timedwait(&vm->pause_cond, &vm->pause_lock, &until);
		}
		bool done = all_parked(vm) || vm->exit_reason;
		pthread_mutex_unlock(&vm->pause_lock);
		if (done)
			return vm->exit_reason ? -1 : 0;
	}
}

void vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	vm->paused = false;
	vm->pause_request = 0;
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
}

void vm_start_paused(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	vm->paused = true;
	vm->pause_request = 1;
	pthread_mutex_unlock(&vm->pause_lock);
}

/* the vCPU's side of vm_pause: wait out the pause outside vcpu_run */
static void vcpu_park(struct vcpu *v)
{
	struct vm *vm = v->vm;
	pthread_mutex_lock(&vm->pause_lock);
	v->parked = true;
	pthread_cond_broadcast(&vm->pause_cond);
	while (vm->pause_request && !vm->exit_reason)
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	v->parked = false;
	pthread_mutex_unlock(&vm->pause_lock);
}

/* Sleep until something may have happened for this halted vCPU: a kick
 * (interrupt, IPI, exit) or the next timer deadline. */
static void vcpu_wait(struct vcpu *v, int64_t timeout_ns)
{
	if (timeout_ns < 0 || timeout_ns > 100000000)
		timeout_ns = 100000000; /* re-check now and then regardless */
	struct timespec ts = clock_after(CLOCK_MONOTONIC, timeout_ns);
	pthread_mutex_lock(&v->lock);
	while (!v->wake && !v->vm->exit_reason) {
		if (pthread_cond_timedwait(&v->cond, &v->lock, &ts) == ETIMEDOUT)
			break;
	}
	v->wake = 0;
	pthread_mutex_unlock(&v->lock);
}

static int64_t min_deadline(int64_t a, int64_t b)
{
	if (a < 0)
		return b;
	if (b < 0)
		return a;
	return a < b ? a : b;
}

/* ns until this vCPU's next timer event (and the platform's, on vCPU 0) */
int64_t vm_poll_timers(struct vcpu *v)
{
	int64_t t = lapic_poll_timer(v->lapic);
	if (v->vm->hv)
		t = min_deadline(t, hv_poll_timers(v));
	if (v->index == 0)
		t = min_deadline(t, platform_poll(v->vm));
	return t;
}

/* Application processors wait for INIT-SIPI-SIPI; then the engine starts
 * them in real mode at vector << 12. */
static bool vcpu_wait_sipi(struct vcpu *v)
{
	struct vm *vm = v->vm;
	pthread_mutex_lock(&v->lock);
	while (!vm->exit_reason && !(v->state == VCPU_WAIT_SIPI && v->sipi_pending))
		pthread_cond_wait(&v->cond, &v->lock);
	bool go = !vm->exit_reason;
	uint8_t vec = v->sipi_vector;
	v->sipi_pending = 0;
	v->init_pending = 0;
	v->state = VCPU_RUNNING;
	pthread_mutex_unlock(&v->lock);
	if (go && vm->engine->start_ap(v, vec) < 0) {
		vm_request_exit(vm, VM_ERROR, 1, "cannot start an application processor");
		return false;
	}
	return go;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	struct vcpu_exit ex;

	/* an AP restored from a snapshot may be running already */
	if (v->state == VCPU_WAIT_SIPI && !vcpu_wait_sipi(v))
		return NULL;
	while (!vm->exit_reason) {
		memset(&ex, 0, sizeof(ex));
		if (vm->gdb && !gdbstub_vcpu_enter(v))
			break;
		if (!vm->gdb && vm->pause_request) {
			vcpu_park(v);
			continue;
		}
		int rc = vm->engine->vcpu_run(v, &ex);
		v->run_exits++;
		if (vm->gdb)
			gdbstub_vcpu_leave(v, &ex);
		if (rc < 0) {
			vm_request_exit(vm, VM_ERROR, 1, ex.msg[0] ? ex.msg : "vCPU failed");
			break;
		}
		switch (ex.kind) {
		case EXIT_HLT:
			vcpu_wait(v, vm_poll_timers(v));
			vm_poll_timers(v);
			break;
		case EXIT_SHUTDOWN: {
			char msg[200];
			snprintf(msg, sizeof(msg), "cpu%d: triple fault%s%s", v->index, ex.msg[0] ? ": " : "", ex.msg);
			vm_request_exit(vm, VM_ERROR, 1, msg);
			break;
		}
		case EXIT_ERROR:
			vm_request_exit(vm, VM_ERROR, 1, ex.msg);
			break;
		default:
			break;
		}
		if (v->init_pending && v->index != 0 && !vm->exit_reason) {
			if (!vcpu_wait_sipi(v))
				break;
		}
	}
	return NULL;
}

int vm_run(struct vm *vm)
{
	for (int i = 0; i < vm->ncpus; i++) {
		if (pthread_create(&vm->vcpu[i]->thread, NULL, vcpu_thread, vm->vcpu[i]) != 0) {
			fprintf(stderr, "accord: cannot start vCPU thread %d\n", i);
			vm_request_exit(vm, VM_ERROR, 1, "thread creation failed");
			for (int j = 0; j < i; j++)
				pthread_join(vm->vcpu[j]->thread, NULL);
			return 1;
		}
	}
	for (int i = 0; i < vm->ncpus; i++)
		pthread_join(vm->vcpu[i]->thread, NULL);
	switch (vm->exit_reason) {
	case VM_POWEROFF:
	case VM_RESET:
	case VM_STOPPED:
		return 0;
	case VM_DEBUG_EXIT:
		return vm->exit_status;
	case VM_PANIC:
		return 2;
	default:
		return vm->exit_status ? vm->exit_status : 1;
	}
}
