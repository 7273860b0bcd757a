/* Unit tests for the split irqchip's side in accord (src/dev/irq.c,
 * src/dev/ioapic.c, vm_msi_irqfd): a machine whose engine records what it
 * is handed instead of KVM, so no /dev/kvm is needed. The IOAPIC's and the
 * MSIs' messages reach the engine as MSI address/data (ExtINT stays with
 * the PIC); the level-triggered pins are mirrored as routes on every
 * redirection-table change and after a snapshot's load; the EOI of such a
 * pin (what KVM_EXIT_IOAPIC_EOI reports) delivers a line still asserted
 * again; with the user irqchip nothing reaches the engine. Prints TAP. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dev/dev.h"
#include "dev/platform.h"
#include "engine/engine.h"
#include "vm/snapshot.h"
#include "vm/vm.h"
#include "tap.h"
#include "testvm.h"

#define MAX_MSGS 64

/* what the recording engine was handed */
static struct {
	int nmsi;
	uint64_t msi_addr[MAX_MSGS];
	uint32_t msi_data[MAX_MSGS];
	bool route_valid[IOAPIC_PINS];
	uint64_t route_addr[IOAPIC_PINS];
	uint32_t route_data[IOAPIC_PINS];
	int nroutes, nirqfd;
} rec;

static int rec_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	if (rec.nmsi < MAX_MSGS) {
		rec.msi_addr[rec.nmsi] = addr;
		rec.msi_data[rec.nmsi] = data;
	}
	rec.nmsi++;
	return 0;
}

static int rec_gsi_route(struct vm *vm, unsigned gsi, uint64_t addr, uint32_t data, bool valid)
{
	if (gsi >= IOAPIC_PINS)
		return -1;
	rec.route_valid[gsi] = valid;
	rec.route_addr[gsi] = addr;
	rec.route_data[gsi] = data;
	rec.nroutes++;
	return 0;
}

static int rec_irqfd(struct vm *vm, int fd, uint64_t addr, uint32_t data)
{
	rec.nirqfd++;
	return IOAPIC_PINS;
}

static void rec_irqfd_release(struct vm *vm, int gsi, int fd)
{
}

static const struct engine_ops rec_engine = {
	.name = "rec",
	.vcpu_init = stub_vcpu_init,
	.msi = rec_msi,
	.gsi_route = rec_gsi_route,
	.irqfd = rec_irqfd,
	.irqfd_release = rec_irqfd_release,
};

static struct vm vm;

static void ioapic_redir(int pin, uint64_t e)
{
	locked_write(&vm, &vm.mmio, IOAPIC_BASE, 0x10 + 2 * pin + 1, 4);
	locked_write(&vm, &vm.mmio, IOAPIC_BASE + 0x10, (uint32_t)(e >> 32), 4);
	locked_write(&vm, &vm.mmio, IOAPIC_BASE, 0x10 + 2 * pin, 4);
	locked_write(&vm, &vm.mmio, IOAPIC_BASE + 0x10, (uint32_t)e, 4);
}

static uint32_t ioapic_redir_lo(int pin)
{
	locked_write(&vm, &vm.mmio, IOAPIC_BASE, 0x10 + 2 * pin, 4);
	return (uint32_t)locked_read(&vm, &vm.mmio, IOAPIC_BASE + 0x10, 4);
}

static void set_irq(unsigned gsi, int level)
{
	pthread_mutex_lock(&vm.io_lock);
	vm_set_irq(&vm, gsi, level);
	pthread_mutex_unlock(&vm.io_lock);
}

#define LEVEL (1ull << 15)
#define MASKED (1ull << 16)
#define LOGICAL (1ull << 11)
#define REMOTE_IRR (1u << 14)

static void test_messages(void)
{
	int fd = 7;

	/* an edge pin: vector 0x41, lowest priority, logical destination 0x3 */
	memset(&rec, 0, sizeof(rec));
	ioapic_redir(10, 0x41 | 1 << 8 | LOGICAL | 3ull << 56);
	set_irq(10, 1);
	set_irq(10, 0);
	ok(rec.nmsi == 1 && rec.msi_addr[0] == (0xfee00000u | 3 << 12 | 1 << 2) &&
		   rec.msi_data[0] == (0x41 | 1 << 8 | 1 << 14),
	   "an edge IOAPIC pin reaches the engine as one MSI (addr %#llx data %#x, %d sent)",
	   (unsigned long long)rec.msi_addr[0], rec.msi_data[0], rec.nmsi);
	ok(!rec.route_valid[10], "an edge pin is not mirrored as a route");

	/* a device's MSI: physical destination 1, fixed, vector 0x60 */
	memset(&rec, 0, sizeof(rec));
	vm_send_msi(&vm, 0xfee01000, 0x60);
	ok(rec.nmsi == 1 && rec.msi_addr[0] == 0xfee01000 && rec.msi_data[0] == (0x60 | 1 << 14),
	   "a device's MSI reaches the engine (addr %#llx data %#x)", (unsigned long long)rec.msi_addr[0],
	   rec.msi_data[0]);
	vm_send_msi(&vm, 0xfed00000, 0x61);
	ok(rec.nmsi == 1, "a write outside the interrupt window sends nothing");

	/* NMI through the IOAPIC: the engine's LAPICs take it */
	memset(&rec, 0, sizeof(rec));
	ioapic_redir(11, 4 << 8);
	set_irq(11, 1);
	set_irq(11, 0);
	ok(rec.nmsi == 1 && (rec.msi_data[0] >> 8 & 7) == 4, "an NMI pin reaches the engine as an NMI message");

	/* ExtINT names the PIC: not the engine's, whose LAPIC takes the
	 * PIC only through LINT0; the pin's messages are dropped, said once */
	memset(&rec, 0, sizeof(rec));
	char errs[512] = "";
	FILE *tmp = tmpfile();
	int saved = dup(2);
	fflush(stderr);
	if (tmp && saved >= 0 && dup2(fileno(tmp), 2) == 2) {
		ioapic_redir(12, 7 << 8);
		set_irq(12, 1);
		set_irq(12, 0);
		set_irq(12, 1);
		set_irq(12, 0);
		fflush(stderr);
		dup2(saved, 2);
		rewind(tmp);
		errs[fread(errs, 1, sizeof(errs) - 1, tmp)] = 0;
	}
	if (saved >= 0)
		close(saved);
	if (tmp)
		fclose(tmp);
	ok(rec.nmsi == 0 && vm.extint_dropped == 2, "an ExtINT pin is not handed to the engine (%d sent, %u dropped)",
	   rec.nmsi, vm.extint_dropped);
	ok(!strcmp(errs, "accord: an IOAPIC pin in ExtINT mode: with --irqchip split the PIC reaches KVM's LAPIC only "
			 "through LINT0 (unmasked, ExtINT); --irqchip user delivers the pin\n"),
	   "... said once on stderr (%s)", errs);
	ioapic_redir(10, MASKED);
	ioapic_redir(11, MASKED);
	ioapic_redir(12, MASKED);

	int gsi = vm_msi_irqfd(&vm, fd, 0xfee00000, 0x60);
	ok(gsi == IOAPIC_PINS && rec.nirqfd == 1, "an irqfd is the engine's with the split irqchip (gsi %d)", gsi);
	ok(vm_msi_irqfd(&vm, fd, 0xfed00000, 0x60) < 0 && rec.nirqfd == 1,
	   "an irqfd outside the interrupt window is refused");
}

static void test_level(void)
{
	uint64_t e = 0x52 | LEVEL | 1ull << 56;

	memset(&rec, 0, sizeof(rec));
	ioapic_redir(9, e | MASKED);
	ok(!rec.route_valid[9] && rec.nroutes >= 1, "a masked level pin: its route is removed");
	ioapic_redir(9, e);
	ok(rec.route_valid[9] && rec.route_addr[9] == (0xfee00000u | 1 << 12) &&
		   rec.route_data[9] == (0x52 | 1 << 14 | 1 << 15),
	   "unmasked, the level pin is mirrored as a level MSI route (addr %#llx data %#x)",
	   (unsigned long long)rec.route_addr[9], rec.route_data[9]);
	int routes = rec.nroutes;
	ioapic_redir(9, e);
	ok(rec.nroutes == routes, "writing the same entry again sets no route");

	set_irq(9, 1);
	ok(rec.nmsi == 1 && (rec.msi_data[0] & (1 << 15)) && (ioapic_redir_lo(9) & REMOTE_IRR),
	   "an asserted level pin sends a level message and sets remote IRR");
	set_irq(9, 1);
	ok(rec.nmsi == 1, "while remote IRR is set nothing more is sent");
	ioapic_eoi(&vm, 0x52);
	ok(rec.nmsi == 2 && (ioapic_redir_lo(9) & REMOTE_IRR),
	   "the EOI of its vector with the line still asserted delivers again (%d sent)", rec.nmsi);
	set_irq(9, 0);
	ioapic_eoi(&vm, 0x52);
	ok(rec.nmsi == 2 && !(ioapic_redir_lo(9) & REMOTE_IRR), "with the line low the EOI clears remote IRR only");

	ioapic_redir(9, (e & ~LEVEL));
	ok(!rec.route_valid[9], "made edge-triggered, the pin's route is removed");
	ioapic_redir(9, MASKED);
}

/* the routes after a snapshot's load follow the loaded table */
static void test_snapshot(void)
{
	char err[200] = "";
	struct snap_hook *h = NULL;

	for (int i = 0; i < vm.nsnap_hooks; i++)
		if (!strcmp(vm.snap_hooks[i].name, "ioapic"))
			h = &vm.snap_hooks[i];
	if (!h) {
		ok(false, "the IOAPIC has a snapshot hook");
		return;
	}
	ioapic_redir(5, 0x45 | LEVEL);
	struct snap_buf b = { 0 };
	ok(h->save(h->opaque, &b, err, sizeof(err)) == 0 && !b.failed, "the IOAPIC saves");
	ioapic_redir(5, MASKED);
	memset(&rec, 0, sizeof(rec));
	struct snap_rd r = { b.p, b.len, 0 };
	ok(h->load(h->opaque, &r, err, sizeof(err)) == 0, "the IOAPIC loads %s", err);
	ok(rec.route_valid[5] && (rec.route_data[5] & 0xff) == 0x45 && rec.nroutes == IOAPIC_PINS,
	   "after the load every pin is routed again, pin 5 as saved (%d routes)", rec.nroutes);
	free(b.p);
	ioapic_redir(5, MASKED);
}

int main(void)
{
	struct platform_opts po;
	int out[2];

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (pipe(out)) {
		perror("pipe");
		return 1;
	}
	if (vm_create(&vm, 16 << 20, 2, &rec_engine, PERSONALITY_KVM, VM_IRQCHIP_SPLIT, 0) < 0) {
		fprintf(stderr, "vm_create failed\n");
		return 1;
	}
	po = (struct platform_opts){ .console_out_fd = out[1] };
	if (platform_init(&vm, &po) < 0) {
		fprintf(stderr, "platform_init failed\n");
		return 1;
	}
	test_messages();
	test_level();
	test_snapshot();

	/* the user irqchip: the same pin stays accord's */
	vm.irqchip = VM_IRQCHIP_USER;
	lapic_mmio_write(vm.vcpu[0]->lapic, 0xF0, 0x1FF, 4);
	memset(&rec, 0, sizeof(rec));
	ioapic_redir(10, 0x41 | LEVEL);
	set_irq(10, 1);
	set_irq(10, 0);
	ok(rec.nmsi == 0 && rec.nroutes == 0 && vm_msi_irqfd(&vm, 7, 0xfee00000, 0x41) < 0,
	   "with the user irqchip nothing reaches the engine (%d messages, %d routes)", rec.nmsi, rec.nroutes);
	ok(lapic_get_interrupt(vm.vcpu[0]->lapic, false) == 0x41, "accord's LAPIC took the pin's vector");

	platform_destroy(&vm);
	vm_destroy(&vm);
	printf("1..%d\n%d passed, %d failed\n", n_test, n_pass, n_fail);
	return n_fail ? 1 : 0;
}
