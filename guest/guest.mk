# Guest test kernels (guest/tests/NAME.c) and the default guest image.
#
# For each kernel:
#   build/guest/NAME.elf      ELF32 with the Multiboot header and the PVH note
#                             (QEMU's -kernel takes Multiboot only from ELF32)
#   build/guest/NAME.pvh.elf  ELF64 with the PVH note only (QEMU prefers
#                             Multiboot whenever it sees the header)
#   build/guest/NAME.elf64    the 64-bit link of NAME.elf, with symbols
#
# and beside them, for `accord certify --kernels build/guest`, the lists the
# runners read: families (what machine each family needs) and
# known-deviations (see those files).
#
# `make guest-image` builds build/guest-image/{vmlinuz,initrd.cpio.gz}.

GUEST_CC ?= gcc
GUEST_LD ?= ld
GUEST_OBJCOPY ?= objcopy
GUEST_CFLAGS := -std=gnu11 -O2 -g -Wall -Wextra -Wno-unused-parameter \
	-ffreestanding -nostdlib -fno-pic -fno-pie -mno-red-zone \
	-mgeneral-regs-only -mno-sse -mno-mmx -mno-80387 -mcmodel=small \
	-fno-stack-protector -fno-asynchronous-unwind-tables -fno-unwind-tables \
	-fcf-protection=none -fno-tree-loop-distribute-patterns \
	-Iguest/lib -MMD -MP
GUEST_LDFLAGS := -m elf_x86_64 -nostdlib -static -z max-page-size=0x1000 \
	--build-id=none -T guest/lib/guest.ld

GUEST_OUT := build/guest
GUEST_LIB_SRCS := $(filter-out guest/lib/multiboot.S, \
	$(wildcard guest/lib/*.c guest/lib/*.S))
GUEST_LIB_OBJS := $(GUEST_LIB_SRCS:guest/lib/%=$(GUEST_OUT)/lib/%.o)
GUEST_MB_OBJ := $(GUEST_OUT)/lib/multiboot.S.o
GUEST_NAMES := $(sort $(basename $(notdir $(wildcard guest/tests/*.c))))
GUEST_KERNELS := $(GUEST_NAMES:%=$(GUEST_OUT)/%.elf) \
	$(GUEST_NAMES:%=$(GUEST_OUT)/%.pvh.elf)

GUEST_DATA := $(GUEST_OUT)/families $(GUEST_OUT)/known-deviations

guests: $(GUEST_KERNELS) $(GUEST_NAMES:%=$(GUEST_OUT)/%.elf64) $(GUEST_DATA)

$(GUEST_DATA): $(GUEST_OUT)/%: guest/%
	@mkdir -p $(dir $@)
	cp $< $@

$(GUEST_OUT)/lib/%.c.o: guest/lib/%.c
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) -c -o $@ $<

$(GUEST_OUT)/lib/%.S.o: guest/lib/%.S
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) -c -o $@ $<

$(GUEST_OUT)/tests/%.o: guest/tests/%.c
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) -c -o $@ $<

$(GUEST_OUT)/%.elf64: $(GUEST_OUT)/tests/%.o $(GUEST_MB_OBJ) $(GUEST_LIB_OBJS) \
		guest/lib/guest.ld
	$(GUEST_LD) $(GUEST_LDFLAGS) -o $@ $(filter %.o,$^)

$(GUEST_OUT)/%.pvh.elf: $(GUEST_OUT)/tests/%.o $(GUEST_LIB_OBJS) guest/lib/guest.ld
	$(GUEST_LD) $(GUEST_LDFLAGS) -o $@ $(filter %.o,$^)

$(GUEST_OUT)/%.elf: $(GUEST_OUT)/%.elf64
	$(GUEST_OBJCOPY) -O elf32-i386 $< $@

guest-image:
	tools/mkguest

# the stock Linux guest of `accord certify`'s OS-level checks: the default
# image with the modules a virtio-blk disk needs
certify-image:
	MKGUEST_OUT=$(CURDIR)/build/certify-image GUEST_MODULES="virtio_pci virtio_blk" tools/mkguest

-include $(GUEST_LIB_OBJS:.o=.d) $(GUEST_MB_OBJ:.o=.d) \
	$(GUEST_NAMES:%=$(GUEST_OUT)/tests/%.d)
.PHONY: guests guest-image certify-image
.SECONDARY: $(GUEST_LIB_OBJS) $(GUEST_MB_OBJ) $(GUEST_NAMES:%=$(GUEST_OUT)/tests/%.o)
