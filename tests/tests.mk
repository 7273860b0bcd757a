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
