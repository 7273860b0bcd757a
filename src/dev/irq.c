/* Interrupt routing: GSI lines into the PIC and the IOAPIC, MSIs, and the
 * fan-out of APIC bus messages (IOAPIC, MSI, IPI) to the LAPICs; with the
 * split irqchip, the hand-over of IOAPIC and MSI messages to the engine's
 * LAPICs. */
#include <stdio.h>

#include "dev/dev.h"
#include "dev/devices.h"
#include "dev/platform.h"
#include "engine/engine.h"
#include "vm/vm.h"

#define MSI_ADDR_BASE 0xFEE00000u
#define MSI_ADDR_LOGICAL (1u << 2)
#define MSI_DATA_ASSERT (1u << 14)
#define MSI_DATA_LEVEL (1u << 15)

/* a message as the MSI address and data that carry it (Intel SDM vol. 3A
 * 11.11): what an engine's LAPIC takes */
static void irq_msi_encode(const struct irq_msg *m, uint64_t *addr, uint32_t *data)
{
	*addr = MSI_ADDR_BASE | (uint32_t)m->dest << 12 | (m->logical ? MSI_ADDR_LOGICAL : 0);
	*data = m->vector | (uint32_t)(m->mode & 7) << 8 | MSI_DATA_ASSERT | (m->level ? MSI_DATA_LEVEL : 0);
}

void vm_gsi_route(struct vm *vm, unsigned gsi, uint64_t addr, uint32_t data, bool valid)
{
	if (vm->irqchip == VM_IRQCHIP_SPLIT && vm->engine->gsi_route)
		vm->engine->gsi_route(vm, gsi, addr, data, valid);
}

void irq_route_pin(struct vm *vm, int pin, const struct irq_msg *m, bool valid)
{
	uint64_t addr;
	uint32_t data;

	if (vm->irqchip != VM_IRQCHIP_SPLIT)
		return;
	irq_msi_encode(m, &addr, &data);
	vm_gsi_route(vm, (unsigned)pin, addr, data, valid);
}

/* The caller holds vm->io_lock: the PIC and IOAPIC state is behind it. */
void vm_set_irq(struct vm *vm, unsigned gsi, int level)
{
	/* GSI 0 carries the PIC's own output (pic.c drives it); ISA IRQ 0,
	 * the PIT, is GSI 2 as the MADT's interrupt source override says */
	if (gsi == 0 || gsi >= IOAPIC_PINS)
		return;
	if (gsi < 16 && vm->pic)
		pic_set_irq(vm->pic, gsi == 2 ? 0 : (int)gsi, level);
	if (vm->ioapic)
		ioapic_set_irq(vm->ioapic, (int)gsi, level);
}

/* Any thread may send an MSI: only LAPIC locks are taken. */
void vm_send_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	struct irq_msg m = {
		.vector = data & 0xFF,
		.mode = data >> 8 & 7,
		.logical = addr >> 2 & 1,
		.level = false, /* message-signalled interrupts are edges */
		.shorthand = APIC_DEST_NONE,
		.dest = addr >> 12 & 0xFF,
	};

	/* a write outside the interrupt window is no interrupt at all */
	if (addr >> 20 != 0xFEE)
		return;
	irq_deliver(vm, &m, NULL);
}

static bool irq_targets(const struct irq_msg *m, struct lapic *l, struct lapic *src)
{
	switch (m->shorthand) {
	case APIC_DEST_SELF:
		return l == src;
	case APIC_DEST_ALL:
		return true;
	case APIC_DEST_OTHERS:
		return l != src;
	}
	return lapic_match(l, m->dest, m->logical);
}

static void irq_to_vcpu(const struct irq_msg *m, struct vcpu *v)
{
	switch (m->mode) {
	case APIC_DM_FIXED:
	case APIC_DM_LOWEST:
		lapic_accept(v->lapic, m->vector, m->level);
		break;
	case APIC_DM_NMI:
		lapic_nmi(v->lapic);
		break;
	case APIC_DM_INIT:
		lapic_init_ipi(v->lapic);
		break;
	case APIC_DM_STARTUP:
		vm_vcpu_sipi(v, m->vector);
		break;
	case APIC_DM_EXTINT:
		lapic_extint(v->lapic);
		break;
	}
	/* SMI and the reserved modes are dropped: there is no SMM */
}

void irq_deliver(struct vm *vm, const struct irq_msg *m, struct lapic *src)
{
	struct vcpu *lowest = NULL;
	uint32_t lowest_apr = 0;

	/* Split irqchip: the IOAPIC's and the MSIs' messages go to the
	 * engine's LAPICs (IPIs never come here: they are the engine's).
	 * ExtINT names the PIC, whose vector KVM's LAPIC takes only through
	 * its LINT0 (unmasked, as ExtINT: kvm_apic_accept_pic_intr), where
	 * the engine hands it over at the interrupt window; KVM has no way
	 * in for an IOAPIC pin's ExtINT (it drops such a message itself), so
	 * the pin delivers nothing more than LINT0 does: said once. */
	if (vm->irqchip == VM_IRQCHIP_SPLIT && !src && m->mode == APIC_DM_EXTINT) {
		if (__atomic_fetch_add(&vm->extint_dropped, 1, __ATOMIC_RELAXED) == 0)
			fprintf(stderr, "accord: an IOAPIC pin in ExtINT mode: with --irqchip split the PIC reaches "
					"KVM's LAPIC only through LINT0 (unmasked, ExtINT); --irqchip user delivers "
					"the pin\n");
		return;
	}
	if (vm->irqchip == VM_IRQCHIP_SPLIT && !src && vm->engine->msi) {
		uint64_t addr;
		uint32_t data;

		irq_msi_encode(m, &addr, &data);
		vm->engine->msi(vm, addr, data);
		return;
	}

	for (int i = 0; i < vm->ncpus && i < VM_MAX_CPUS; i++) {
		struct vcpu *v = vm->vcpu[i];
		uint32_t apr;

		if (!v || !v->lapic || !irq_targets(m, v->lapic, src))
			continue;
		if (m->mode != APIC_DM_LOWEST) {
			irq_to_vcpu(m, v);
			continue;
		}
		/* lowest priority goes to one LAPIC: the least busy one */
		apr = lapic_arb_priority(v->lapic);
		if (!lowest || apr < lowest_apr) {
			lowest = v;
			lowest_apr = apr;
		}
	}
	if (lowest)
		irq_to_vcpu(m, lowest);
}
