/* The test guest's SynIC on one vCPU, shared by the VMBus device tests
 * (vmbus_guest.h) and the fuzz harnesses (fuzz/hyperv.h): where its
 * message page, event-flag page and hypercall input page lie, the set-up
 * Linux's hv_synic_enable_regs does, HvPostMessage, and freeing a message
 * slot as vmbus_on_msg_dpc does. */
#ifndef ACCORD_TESTS_SYNIC_GUEST_H
#define ACCORD_TESTS_SYNIC_GUEST_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "dev/hyperv/hyperv.h"
#include "dev/hyperv/vmbus.h"
#include "vm/vm.h"

#define PAGE 4096u
#define SIMP_GPA 0xf00000u
#define SIEFP_GPA 0xf01000u
#define HC_INPUT_GPA 0xf02000u
#define VMBUS_SINT 2

/* message and event pages, the VMBus SINT unmasked with vector 0xf3 */
static inline void synic_setup(struct vcpu *v)
{
	hv_msr_write(v, 0x40000083, SIMP_GPA | 1);
	hv_msr_write(v, 0x40000082, SIEFP_GPA | 1);
	hv_msr_write(v, 0x40000090 + VMBUS_SINT, 0xf3);
	hv_msr_write(v, 0x40000080, 1);
}

static inline uint8_t *synic_msg_slot(struct vcpu *v)
{
	return vm_gpa(v->vm, SIMP_GPA + VMBUS_SINT * HV_MESSAGE_SIZE, HV_MESSAGE_SIZE);
}

/* the slot's message taken: its type cleared, and EOM written when the
 * host said another one waits */
static inline void synic_msg_free(struct vcpu *v, uint8_t *slot)
{
	bool pending = slot[5] & 1;

	vmbus_put32(slot, 0);
	if (pending)
		hv_msr_write(v, 0x40000084, 0);
}

/* HvPostMessage of LEN bytes to connection CONN; the hypercall's status */
static inline uint16_t synic_post(struct vcpu *v, uint32_t conn, uint32_t type, const void *m, uint32_t len)
{
	uint8_t *in = vm_gpa(v->vm, HC_INPUT_GPA, 16 + HV_MESSAGE_PAYLOAD_MAX);

	vmbus_put32(in, conn);
	vmbus_put32(in + 4, 0);
	vmbus_put32(in + 8, type);
	vmbus_put32(in + 12, len);
	memcpy(in + 16, m, len);
	return hv_hypercall_exec(v, 0x5c, HC_INPUT_GPA, 0) & 0xffff;
}

#endif
