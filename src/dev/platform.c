/* The legacy platform: creates every device on the vm's buses and polls
 * the timers for the vCPU loop. */
#include <pthread.h>
#include <stdio.h>

#include "dev/dev.h"
#include "dev/devices.h"
#include "vm/vm.h"

int platform_init(struct vm *vm, const struct platform_opts *o)
{
	/* the interrupt controllers first: the others raise lines into them */
	vm->ioapic = ioapic_create(vm);
	if (!vm->ioapic)
		goto fail;
	vm->pic = pic_create(vm);
	if (!vm->pic)
		goto fail;
	vm->pit = pit_create(vm);
	if (!vm->pit)
		goto fail;
	vm->rtc = rtc_create(vm);
	if (!vm->rtc)
		goto fail;
	vm->acpipm = acpipm_create(vm);
	if (!vm->acpipm)
		goto fail;
	if (o->debug_exit && debugexit_init(vm))
		goto fail;
	/* last: its input thread may raise an interrupt at once */
	vm->serial = serial_create(vm, o->console_out_fd);
	if (!vm->serial)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "accord: cannot set up the platform devices\n");
	platform_destroy(vm);
	return -1;
}

void platform_destroy(struct vm *vm)
{
	serial_destroy(vm->serial);
	acpipm_destroy(vm->acpipm);
	rtc_destroy(vm->rtc);
	pit_destroy(vm->pit);
	pic_destroy(vm->pic);
	ioapic_destroy(vm->ioapic);
	vm->serial = NULL;
	vm->acpipm = NULL;
	vm->rtc = NULL;
	vm->pit = NULL;
	vm->pic = NULL;
	vm->ioapic = NULL;
}

int64_t platform_poll(struct vm *vm)
{
	int64_t next = -1, t;

	pthread_mutex_lock(&vm->io_lock);
	if (vm->pit)
		next = pit_poll(vm->pit);
	if (vm->rtc) {
		t = rtc_poll(vm->rtc);
		if (t >= 0 && (next < 0 || t < next))
			next = t;
	}
	pthread_mutex_unlock(&vm->io_lock);
	return next;
}
