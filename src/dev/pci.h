/* PCI: a host bridge at 00:00.0 on bus 0, configuration mechanism #1
 * (0xcf8/0xcfc) and ECAM, and the devices plugged into it. Devices keep a
 * 256-byte configuration space with a mask of the bits the guest may write;
 * memory BARs are decoded inside one MMIO window the bus owns, so the guest
 * may move them at any time. */
#ifndef ACCORD_DEV_PCI_H
#define ACCORD_DEV_PCI_H

#include <stdbool.h>
#include <stdint.h>

#include "vm/bus.h"

struct vm;

#define PCI_ECAM_BASE 0xE0000000ull
#define PCI_ECAM_SIZE 0x100000ull /* bus 0 only */
#define PCI_MMIO_BASE 0xC0000000ull
#define PCI_MMIO_SIZE 0x20000000ull
#define PCI_MAX_SLOTS 32

/* configuration space offsets */
#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_REVISION 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_SUBSYS_VENDOR 0x2c
#define PCI_SUBSYS_ID 0x2e
#define PCI_CAP_PTR 0x34
#define PCI_INT_LINE 0x3c
#define PCI_INT_PIN 0x3d

#define PCI_CMD_MEM (1u << 1)
#define PCI_CMD_MASTER (1u << 2)
#define PCI_STATUS_CAPS (1u << 4)

struct pci_dev;

struct pci_bar {
	uint32_t size; /* a power of two >= 16; 0: no BAR */
	const struct io_ops *ops;
	void *opaque;
};

struct pci_dev {
	uint8_t cfg[256];
	uint8_t wmask[256]; /* bits the guest may change */
	struct pci_bar bar[6]; /* 32-bit memory BARs only */
	int slot;
	unsigned cap_end, cap_last; /* pci_add_cap's bookkeeping */
	/* before the guest reads, after it wrote configuration bytes
	 * [off, off + len); either may be NULL */
	void (*cfg_reading)(struct pci_dev *d, unsigned off, unsigned len);
	void (*cfg_written)(struct pci_dev *d, unsigned off, unsigned len);
	void *opaque;
};

struct pci_bus;

/* The host bridge, its ports and windows; the ACPI MCFG table and the
 * DSDT's root bridge are registered with the ACPI builder. NULL on error,
 * with a message. */
struct pci_bus *pci_init(struct vm *vm);
/* Fill in the identity and BARs first; pci_add assigns BAR addresses in
 * the window (as firmware would) and puts the device in the next slot. */
int pci_add(struct pci_bus *b, struct pci_dev *d);

/* helpers for building configuration spaces */
void pci_set_ids(struct pci_dev *d, uint16_t vendor, uint16_t device, uint32_t class_rev);
/* append a capability of len bytes (id first); returns its offset or 0 */
unsigned pci_add_cap(struct pci_dev *d, uint8_t id, unsigned len);
/* current address of a BAR, 0 when memory decoding is off */
uint32_t pci_bar_addr(const struct pci_dev *d, int bar);

/* configuration accesses as the two mechanisms do them (tests use these) */
uint32_t pci_cfg_read(struct pci_bus *b, unsigned devfn, unsigned off, int size);
void pci_cfg_write(struct pci_bus *b, unsigned devfn, unsigned off, uint32_t val, int size);

/* little-endian fields of configuration space and register images */
static inline uint32_t pci_get_le(const uint8_t *p, int size)
{
	uint32_t v = 0;

	for (int i = size - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static inline void pci_put_le(uint8_t *p, uint32_t v, int size)
{
	for (int i = 0; i < size; i++, v >>= 8)
		p[i] = v;
}

#endif
