# libFuzzer harnesses (tests/fuzz/NAME.c -> build/fuzz/NAME), built with
# clang and -fsanitize=fuzzer,address,undefined against build/fuzz/libaccord.a,
# a copy of the library instrumented the same way. Every tests/fuzz/*.c is a
# harness: adding one is one file, nothing to list. tests/fuzz/smoke.sh runs
# each of them for a fixed number of inputs in `make test`.
#
#   make fuzz                      build every harness
#   build/fuzz/NAME -help=1        libFuzzer's options
#   tests/fuzz/long.sh NAME SECS   a long run from the harness's seed corpus

FUZZ_CC ?= clang
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined
CLANG_WFLAGS := -Wno-gnu-variable-sized-type-not-at-end
FUZZ_CFLAGS = $(CFLAGS) $(CLANG_WFLAGS) -fsanitize=fuzzer-no-link $(FUZZ_SAN)
FUZZ_OBJS := $(LIBOBJS:build/%=build/fuzz/%)
FUZZERS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(wildcard tests/fuzz/*.c))

build/fuzz/src/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

build/fuzz/libaccord.a: $(FUZZ_OBJS)
	rm -f $@; ar rcs $@ $^

$(FUZZERS): build/fuzz/%: tests/fuzz/%.c $(wildcard tests/fuzz/*.h) build/fuzz/libaccord.a
	$(FUZZ_CC) $(CFLAGS) -fsanitize=fuzzer $(FUZZ_SAN) -Itests -Itests/fuzz -o $@ $< \
		build/fuzz/libaccord.a $(LDLIBS)

fuzz: $(FUZZERS)

-include $(wildcard build/fuzz/src/*/*.d build/fuzz/src/*/*/*.d build/fuzz/*.d)
.PHONY: fuzz
