# accord: `make` builds build/accord; `make test` runs the whole suite.
CC ?= cc
CFLAGS ?= -O2 -g
CFLAGS += -mno-red-zone -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
	  -Isrc -pthread -MMD -MP
LDLIBS += -pthread -llz4 -lz -llzma -lzstd -lcapstone -lm -ljson-c $(shell pkg-config --libs slirp 2>/dev/null || echo -lslirp) -lseccomp

SRCS := $(shell find src -name '*.c' | sort)
OBJS := $(SRCS:%.c=build/%.o)
LIBOBJS := $(filter-out build/src/main.o,$(OBJS))

all: build/accord

build/accord: $(OBJS)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

build/libaccord.a: $(LIBOBJS)
	rm -f $@; ar rcs $@ $^

build/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

-include tests/tests.mk
-include guest/guest.mk

# The README's first command: set up, build accord and the default guest,
# and boot it with the console on this terminal (Ctrl-a x quits).
GUEST_CMDLINE ?= console=ttyS0 panic=-1 quiet
run:
	@tests/setup.sh
	@$(MAKE) --no-print-directory all guest-image
	build/accord run --kernel build/guest-image/vmlinuz --initrd build/guest-image/initrd.cpio.gz \
		--cmdline "$(GUEST_CMDLINE)" --memory 512M

clean:
	rm -rf build

-include $(OBJS:.o=.d)
.PHONY: all clean test run
