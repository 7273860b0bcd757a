/* The Hyper-V interface (TLFS): the contract between the partition-level
 * parts (tlfs.c: CPUID leaves, MSRs, hypercalls, reference TSC; synic.c:
 * SynIC and synthetic timers) and VMBus (vmbus.c and its channels).
 *
 * Present only with --personality hyperv; vm->hv is NULL otherwise. */
#ifndef ACCORD_HYPERV_H
#define ACCORD_HYPERV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct vcpu;

/* TLFS hypercall status codes (TLFS 6.0, appendix "Hypercall status codes") */
#define HV_STATUS_SUCCESS 0x0000
#define HV_STATUS_INVALID_HYPERCALL_CODE 0x0002
#define HV_STATUS_INVALID_HYPERCALL_INPUT 0x0003
#define HV_STATUS_INVALID_ALIGNMENT 0x0004
#define HV_STATUS_INVALID_PARAMETER 0x0005
#define HV_STATUS_ACCESS_DENIED 0x0006
#define HV_STATUS_INVALID_PORT_ID 0x0011
#define HV_STATUS_INVALID_CONNECTION_ID 0x0012
#define HV_STATUS_INSUFFICIENT_BUFFERS 0x0013

#define HV_MESSAGE_SIZE 256
#define HV_MESSAGE_PAYLOAD_MAX 240 /* bytes of payload in one SynIC message */

/* What VMBus (or any other user of the SynIC) plugs into the partition.
 * Called on the vCPU thread of vp that made the hypercall or wrote the MSR,
 * with no accord lock held. */
struct hv_vmbus_ops {
	/* HvPostMessage (code 0x5c): the guest posted a message to the
	 * host on connection_id; returns an HV_STATUS_* code for the guest */
	uint16_t (*post_message)(void *opaque, unsigned vp, uint32_t connection_id, uint32_t type,
				 const void *payload, uint32_t len);
	/* HvSignalEvent (code 0x5d, fast): the guest signalled flag_number on
	 * connection_id; returns an HV_STATUS_* code for the guest */
	uint16_t (*signal_event)(void *opaque, unsigned vp, uint32_t connection_id, uint16_t flag_number);
	/* the guest wrote HV_X64_MSR_EOM on vp: a message slot may be free
	 * again, a message that found its slot busy can be posted now */
	void (*eom)(void *opaque, unsigned vp);
	void *opaque;
};

/* Plug VMBus into the partition (once, before the vCPUs run). */
void hv_set_vmbus(struct vm *vm, const struct hv_vmbus_ops *ops);

/* Host to guest: deliver one SynIC message into vp's message page slot for
 * sint and raise that SINT's interrupt. Any thread.
 * Returns 0 when delivered; -1 when the slot holds an undelivered message
 * (the message pending flag is set in the slot; retry after the eom
 * callback); -2 when vp's SynIC, its message page or that SINT is disabled
 * or masked. len <= HV_MESSAGE_PAYLOAD_MAX. */
int hv_synic_post_message(struct vm *vm, unsigned vp, unsigned sint, uint32_t type, const void *payload,
			  uint32_t len);

/* Host to guest: set bit flag in vp's event flags page slot for sint and,
 * if it was clear, raise that SINT's interrupt. Any thread. Returns 0, or
 * -2 when the SynIC, the event flags page or the SINT is disabled/masked. */
int hv_synic_signal_event(struct vm *vm, unsigned vp, unsigned sint, unsigned flag);

/* ---- the partition, as the machine (src/vm/) uses it ---- */

/* The hypercall page accord writes holds `out HV_HYPERCALL_PORT, eax; ret`:
 * a port-I/O trap serves both engines, where vmcall would need each
 * engine's own exit. The port is one no PC device uses. */
#define HV_HYPERCALL_PORT 0xE6

/* with --personality hyperv: 0, or -1 with a message on stderr */
int hv_create(struct vm *vm);
void hv_destroy(struct vm *vm);
/* the TLFS MSRs (0x40000000-0x400001FF); false means #GP */
bool hv_msr_read(struct vcpu *v, uint32_t msr, uint64_t *val);
bool hv_msr_write(struct vcpu *v, uint32_t msr, uint64_t val);
/* the vCPU executed the hypercall page: read its registers (64- or 32-bit
 * calling convention), run the hypercall, write the result back */
void hv_hypercall(struct vcpu *v);
/* one hypercall: control (code, fast bit, rep count/start), the input and
 * output (GPAs, or the values of a fast call); returns the result value
 * (status in bits 15:0, reps completed in bits 43:32) */
uint64_t hv_hypercall_exec(struct vcpu *v, uint64_t control, uint64_t input, uint64_t output);
/* fire due synthetic timers of this vCPU; ns until its next one, or -1 */
int64_t hv_poll_timers(struct vcpu *v);
/* the partition reference counter: 100 ns units since the VM started */
uint64_t hv_ref_time(const struct vm *vm);

#endif
