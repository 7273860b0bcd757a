# Tests. `make test` runs tests/run, the single entry point: it builds
# everything (all, tests, guests), then runs every entry of TEST_BINS and
# then of TEST_SCRIPTS, in the order they are listed here, reads the TAP each
# prints and ends with one line "N passed, N failed, N skipped".
#
# Each test program prints TAP ("ok N - name", "not ok N - name",
# "ok N - name # SKIP reason") and ends with its own "N passed, N failed"
# line; it exits non-zero when something failed.
#
# To add a test, append a block at the end of this file:
#
#   # decoder tests (tests/test_decode.c)
#   TEST_BINS += build/tests/test_decode
#
# build/tests/NAME is built from tests/NAME.c, linked with build/libaccord.a
# and $(LDLIBS). A test that needs more objects or flags adds a rule for its
# binary. Scripts (bash, in tests/) go into TEST_SCRIPTS.

TEST_BINS :=
TEST_SCRIPTS :=

# Prerequisites naming TEST_BINS are expanded again after the whole makefile
# is read, so blocks appended below still take part.
.SECONDEXPANSION:

build/tests/%: tests/%.c build/libaccord.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< build/libaccord.a $(LDLIBS)

tests: $$(TEST_BINS)

test:
	tests/run

# one runnable entry per line, in run order (read by tests/run)
test-list:
	@printf '%s\n' $(TEST_BINS) $(TEST_SCRIPTS)

-include $(wildcard build/tests/*.d)
.PHONY: tests test test-list

# guest test kernels on QEMU TCG: the reference check of guest/tests/
TEST_SCRIPTS += tests/qemu_guest.sh

# platform devices: UART, RTC, PIT, PIC, IOAPIC, LAPIC, ACPI PM, debug exit
# (tests/unit_dev.c)
TEST_BINS += build/tests/unit_dev

# ---- emu CPU: differential test against the host, CPU unit tests ----
# (tests/difftest.c, tests/unit_cpu.c). Linked against the src/cpu objects
# only, so that work in progress elsewhere does not stop them.
CPU_TEST_OBJS = $(filter build/src/cpu/%.o,$(OBJS))
build/tests/difftest build/tests/unit_cpu: build/tests/%: tests/%.c $$(CPU_TEST_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(CPU_TEST_OBJS) -lcapstone -lm
TEST_BINS += build/tests/unit_cpu build/tests/difftest
# ---- end emu CPU ----

# --- sse/x87 (owner: sse.c, x87.c, fx.c) ---
# MMX/SSE*/x87/fxsave differential tests against the host CPU
# (tests/unit_sse.c). Linked with the cpu objects only, so that it builds
# while other parts of the tree are in flux.
TEST_BINS += build/tests/unit_sse
UNIT_SSE_OBJS = $(filter build/src/cpu/%,$(OBJS))
build/tests/unit_sse: tests/unit_sse.c $$(UNIT_SSE_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(UNIT_SSE_OBJS) -lcapstone -lm
# --- end sse/x87 ---

# accord run: bad input gives one clear line and a distinct status
TEST_SCRIPTS += tests/cli_errors.sh

# guest test kernels on accord's emu engine (Multiboot and PVH)
TEST_SCRIPTS += tests/accord_guest.sh

# the stock Debian kernel to a busybox shell on the emu engine
TEST_SCRIPTS += tests/boot_linux.sh

# ---- boot loaders and ACPI tables (tests/unit_boot.c) ----
# bzImage/vmlinux/PVH/Multiboot loading, malformed images, ACPI parsed back.
# The stock kernel comes from tests/stock-kernel.sh (../shared/debs);
# without a package those cases are skipped with a reason.
TEST_BINS += build/tests/unit_boot
# ---- end boot loaders ----

# ---- kvm engine (owner: src/engine/kvm.c) ----
# --accel auto's probe and fallback, --accel kvm without a device, the guest
# test kernels on kvm compared with emu, Linux on kvm where KVM is fast
TEST_SCRIPTS += tests/kvm_engine.sh
# the same on a host with AMD-V (QEMU's TCG with -cpu max, kvm_amd, accord
# inside): the guest test kernels compared with emu, --accel auto
TEST_SCRIPTS += tests/kvm_svm.sh
# the stock Debian kernel there on --accel kvm --irqchip user, 1 and 2 CPUs:
# user space, uname, the CPU count, busybox's hash, a virtio-blk pattern
# through MSI-X, poweroff; --personality hyperv with Linux's VMBus drivers
# (storvsc); what the guest reports (CPU identity, x86/fpu lines, flags,
# vulnerabilities, Hyper-V lines, clocksource, warnings) compared with the
# same boots on emu here; MSR_PLATFORM_INFO and IA32_ARCH_CAPABILITIES as
# the model says (tests/kvm_svm_linux.sh)
TEST_SCRIPTS += tests/kvm_svm_linux.sh
# there, a running Linux (2 vCPUs) saved mid-loop and restored twice
TEST_SCRIPTS += tests/kvm_svm_snapshot.sh
# ---- end kvm engine ----

# ---- gdb stub and lockstep (owner: src/vm/gdbstub.c, tools/lockstep) ----
# `accord run --gdb` driven by gdb, and tools/lockstep against QEMU TCG
# (tests/gdbstub.sh)
TEST_SCRIPTS += tests/gdbstub.sh
# ---- end gdb stub ----

# ---- accord certify (owner: src/certify/) ----
# the guest test kernels on accord:emu and qemu:tcg through `accord certify`,
# its JSON/JUnit/HTML reports, unavailable targets, hostile guest output
# (tests/certify.sh)
TEST_SCRIPTS += tests/certify.sh
# ---- end accord certify ----

# ---- virtio (owner: src/dev/pci.c, src/dev/virtio/) ----
# PCI host bridge, virtio PCI transport, virtqueues against malicious
# descriptors, virtio-blk requests on an image (tests/unit_virtio.c); then
# virtio-blk in the stock kernel on the emu engine (tests/virtio_blk.sh)
TEST_BINS += build/tests/unit_virtio
TEST_SCRIPTS += tests/virtio_blk.sh
# ---- end virtio ----

# ---- control API (owner: src/api/, docs/api.yaml) ----
# the HTTP request parser against malformed input (tests/unit_api.c); two
# VMs at once driven through their sockets, accord ls and the clients, bad
# requests, docs/api.yaml against the server's routes, and the ACPI power
# button in the stock kernel (tests/api.sh). build/api-guest/ticker.elf is a
# guest that prints a numbered line every 20 ms (guest/api/ticker.c), kept
# out of build/guest/ where accord certify would take it for a test kernel.
TEST_BINS += build/tests/unit_api
TEST_SCRIPTS += tests/api.sh
tests guests: build/api-guest/ticker.elf
build/api-guest/ticker.o: guest/api/ticker.c
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) -c -o $@ $<
build/api-guest/ticker.elf: build/api-guest/ticker.o $$(GUEST_MB_OBJ) $$(GUEST_LIB_OBJS) guest/lib/guest.ld
	$(GUEST_LD) $(GUEST_LDFLAGS) -o $@.64 $(filter %.o,$^)
	$(GUEST_OBJCOPY) -O elf32-i386 $@.64 $@
	rm -f $@.64
# ---- end control API ----
# ---- virtio-net (owner: src/net/, src/dev/virtio/net.c, src/vm/iothread.c) ----
# the device against malicious rings and a test backend
# (tests/unit_virtio_net.c); then the stock kernel with a user (libslirp)
# NIC and, as root, a TAP NIC: DHCP, wget from the host, hostfwd, ping
# (tests/virtio_net.sh)
TEST_BINS += build/tests/unit_virtio_net
TEST_SCRIPTS += tests/virtio_net.sh
# ---- end virtio-net ----
# ---- hardening (owner: tests/fuzz/, src/vm/sandbox.c) ----
# libFuzzer harnesses: the loaders, the emu CPU, virtqueues (tests/fuzz/);
# each runs a fixed number of inputs from its generated seeds
-include tests/fuzz/fuzz.mk
TEST_SCRIPTS += tests/fuzz/smoke.sh
# the seccomp sandbox in force, its diagnostic; guest output to a stalled
# terminal (tests/sandbox.sh, tests/console_stall.sh)
TEST_SCRIPTS += tests/sandbox.sh tests/console_stall.sh
# ASan+UBSan: `make asan` (tests/asan.mk), then the C tests and a Linux boot
# under the sanitizers (tests/asan.sh)
-include tests/asan.mk
TEST_SCRIPTS += tests/asan.sh
# ---- end hardening ----

# ---- paravirtual personalities (owner: src/dev/hyperv/tlfs.c, synic.c, src/dev/kvmclock.c) ----
# CPUID leaves per --personality, the Hyper-V MSRs, hypercall decoding with
# hostile inputs, the SynIC slot protocol, synthetic timers, kvmclock
# (tests/unit_hyperv.c)
TEST_BINS += build/tests/unit_hyperv
# ---- end paravirtual personalities ----

# ---- paravirtual personalities with Linux (owner: src/dev/hyperv/, src/dev/kvmclock.c) ----
# the stock kernel with --personality hyperv (Hyper-V detected, TSC page
# clocksource, stimer0 clockevent on two vCPUs, crash MSRs end accord with
# status 2) and --personality kvm (kvm-clock): three boots
# (tests/hyperv_linux.sh)
TEST_SCRIPTS += tests/hyperv_linux.sh
# ---- end paravirtual personalities with Linux ----
# ---- virtio-rng, virtio-console, several disks (owner: src/dev/virtio/rng.c, console.c) ----
# both devices through their registers, byte streams and broken drivers
# (tests/unit_virtio_devices.c); then
# the stock kernel with --console virtio (shell on hvc0), --rng and two
# --disk; a panic printed on hvc0 (tests/virtio_devices.sh)
TEST_BINS += build/tests/unit_virtio_devices
TEST_SCRIPTS += tests/virtio_devices.sh
# ---- end virtio-rng, virtio-console ----

# ---- VMBus and storvsc (owner: src/dev/hyperv/vmbus.c, ring.c, storvsc.c) ----
# the VMBus host driven as the Linux guest drives it, storvsc SCSI on an
# image, and a hostile guest (tests/unit_vmbus.c)
TEST_BINS += build/tests/unit_vmbus
# ---- end VMBus ----

# ---- storvsc in the stock kernel (owner: tests/hyperv_storage.sh) ----
# --personality hyperv: hv_vmbus and hv_storvsc find two VMBus SCSI disks,
# the guest makes and fills an ext2 file system, a read-only disk refuses
# writes; the host checks the image with e2fsck and debugfs
TEST_SCRIPTS += tests/hyperv_storage.sh
# ---- end storvsc ----

# a guest flooding its UART without a pause (ticker.flood) does not starve
# the console, the control API, pause/resume or stop (tests/flood.sh)
TEST_SCRIPTS += tests/flood.sh

# ---- snapshots (owner: src/vm/snapshot.c) ----
# the format's writer and reader on a small machine, damaged files
# (tests/unit_snapshot.c); the ticker test kernel on emu (2 vCPUs) and kvm
# snapshotted, killed and restored twice, damaged files refused, hyperv
# refused, the API's PUT /vm/snapshot; the stock kernel with a virtio disk
# snapshotted in a counting loop and restored twice (tests/snapshot.sh)
TEST_BINS += build/tests/unit_snapshot
TEST_SCRIPTS += tests/snapshot.sh
# ---- end snapshots ----
# ---- virtio notifies on the I/O thread (owner: src/dev/virtio/pci.c kicks, src/engine/kvm.c ioeventfd) ----
# the transport's per-queue eventfds: bound through the engine's ioeventfd
# hook as queues are enabled, the BAR moves and the device resets; on an
# engine that cannot bind (emu) a notify write signals the eventfd; notifies
# for disabled queues ignored; the I/O thread serves the queue under
# vm->io_lock; virtio-blk on the I/O thread (tests/unit_virtio_kick.c)
TEST_BINS += build/tests/unit_virtio_kick
# ---- end virtio notifies ----
# ---- netvsc (owner: src/dev/hyperv/netvsc.c) ----
# --personality hyperv --net user: the stock kernel's hv_netvsc binds the
# VMBus synthetic NIC, DHCP, a token and a random MiB both ways through
# slirp and hostfwd (tests/hyperv_net.sh)
TEST_SCRIPTS += tests/hyperv_net.sh
# ---- end netvsc ----

# ---- netvsc unit (owner: src/dev/hyperv/netvsc.c) ----
# NVSP, the send and receive buffers, RNDIS and frames both ways driven as
# hv_netvsc drives them, flow control, and a hostile guest
# (tests/unit_netvsc.c)
TEST_BINS += build/tests/unit_netvsc
# ---- end netvsc unit ----
# ---- Hyper-V integration services in the stock kernel (owner: src/dev/hyperv/util.c) ----
# --personality hyperv: hv_utils binds shutdown, heartbeat, time sync and
# KVP; SYNC and SAMPLEs correct a clock set to 2001; hv_kvp_daemon's pairs
# through GET /vm/kvp; accord shutdown via the shutdown service; a second
# SIGTERM ends accord with the terminal restored (tests/hyperv_util.sh)
TEST_SCRIPTS += tests/hyperv_util.sh
# ---- configuring a VM through the control API (owner: src/vm/machine.c, src/api/server.c pre-boot routes) ----
# `accord run --name NAME` without --kernel: the pre-boot routes and their
# refusals (the same lines as accord run's), start-time failures the process
# survives, then one Linux boot configured only through the API: 2 vCPUs,
# 256 MiB, a disk, a user NIC, virtio-rng, checked inside the guest
# (tests/api_config.sh); the request parsing in tests/unit_api.c
TEST_SCRIPTS += tests/api_config.sh
# ---- end configuring through the API ----
# ---- what snapshots keep besides memory and registers (owner: src/vm/snapshot.c run state, src/dev/virtio/net.c) ----
# a paused VM restored paused (GET /vm, no tick until accord resume),
# accord restore --state; the stock kernel's MAC set with ip link, its
# receive filter and GET /vm/counters after a restore; the guest's time of
# day lagging by the gap, hwclock -s from the RTC putting it right
# (tests/snapshot_state.sh); virtio-net's section and counters in
# tests/unit_virtio_net.c
TEST_SCRIPTS += tests/snapshot_state.sh
# ---- end snapshot state ----
# ---- Hyper-V snapshots (owner: src/dev/hyperv/ snapshot hooks) ----
# --personality hyperv snapshots: the Hyper-V test kernel's synthetic timer
# ticking through snapshot, SIGKILL and restore on emu and kvm, damaged
# VMBus/SynIC/util sections refused; the stock kernel with storvsc (ext4)
# and netvsc (hostfwd) resuming a counting loop (tests/hyperv_snapshot.sh);
# the sections' round trips and refusals in tests/unit_netvsc.c and
# tests/unit_vmbus.c
TEST_SCRIPTS += tests/hyperv_snapshot.sh
# ---- end Hyper-V snapshots ----
# ---- the split irqchip (owner: src/dev/irq.c, src/dev/ioapic.c, src/engine/kvm.c) ----
# the IOAPIC's and MSIs' messages handed to the engine's LAPICs as MSIs
# (ExtINT kept), level pins mirrored as routes on every change and after a
# snapshot's load, EOI redelivery, irqfd only with the split irqchip
# (tests/unit_irqchip.c, a recording engine: no /dev/kvm needed); on kvm,
# tests/kvm_engine.sh runs the guest families with both irqchips
TEST_BINS += build/tests/unit_irqchip
# ---- end split irqchip ----
# ---- the test scripts' own pitfalls (tests/lint_scripts.sh) ----
# a `result` whose arguments hold a command substitution must be given its
# condition's status first: bash sets $? to the substitution's before the
# call, and such a line reported the substitution's status (it could not
# fail)
TEST_SCRIPTS += tests/lint_scripts.sh
# ---- end lint ----
# ---- virtio MSI-X irqfd release (owner: src/dev/virtio/pci.c, src/engine/kvm.c) ----
# a vector's KVM_IRQFD binding released when it is masked (entry or
# function mask), reprogrammed, MSI-X disabled, the device reset or gone;
# no fd growth over 1000 reprogrammings (tests/unit_virtio_irqfd.c, a
# recording engine: no /dev/kvm needed)
TEST_BINS += build/tests/unit_virtio_irqfd
# ---- end virtio MSI-X irqfd release ----
# ---- the kvm engine against a conforming KVM (owner: src/engine/kvm.c) ----
# on /dev/kvm with ioctl() interposed: each vCPU's TSC written after
# KVM_SET_TSC_KHZ (answered as a KVM with TSC scaling), no all-zero CPUID
# leaf handed to KVM (it fills 0xD.0 EBX into one), an MMIO read across a
# page completed part by part when the vCPU's state is read between the
# parts (tests/unit_kvm_api.c; skips without /dev/kvm)
TEST_BINS += build/tests/unit_kvm_api
# ---- end kvm against a conforming KVM ----
# ---- the split irqchip without KVM_CAP_X86_APIC_BUS_CYCLES_NS (owner: src/engine/kvm.c) ----
# on the AMD-V host (Linux 6.1's KVM, whose LAPIC timer counts at 1 GHz):
# --irqchip auto chooses split, the guest is told a 1 GHz crystal and its
# LAPIC timer counts at it, a snapshot records the crystal and keeps it
# when restored where KVM has the capability (~10 s; skips without QEMU)
TEST_SCRIPTS += tests/kvm_svm_split.sh
# ---- end split without KVM_CAP_X86_APIC_BUS_CYCLES_NS ----
