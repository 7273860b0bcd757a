# `make asan`: accord and the C test programs built with clang and
# -fsanitize=address,undefined (undefined behaviour is fatal) into
# build/asan/; tests/asan.sh runs them. Every entry of TEST_BINS gets its
# sanitized twin build/asan/tests/NAME, linked with the sanitized library.

ASAN_CC ?= clang
ASAN_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
ASAN_CFLAGS = $(CFLAGS) -Wno-gnu-variable-sized-type-not-at-end $(ASAN_SAN)
ASAN_OBJS := $(OBJS:build/%=build/asan/%)

build/asan/src/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(ASAN_CC) $(ASAN_CFLAGS) -c -o $@ $<

build/asan/accord: $(ASAN_OBJS)
	$(ASAN_CC) $(ASAN_CFLAGS) -o $@ $^ $(LDLIBS)

build/asan/libaccord.a: $(filter-out build/asan/src/main.o,$(ASAN_OBJS))
	rm -f $@; ar rcs $@ $^

build/asan/tests/%: tests/%.c build/asan/libaccord.a
	@mkdir -p $(dir $@)
	$(ASAN_CC) $(ASAN_CFLAGS) -Itests -o $@ $< build/asan/libaccord.a $(LDLIBS)

asan: build/asan/accord $$(patsubst build/tests/%,build/asan/tests/%,$$(TEST_BINS))

-include $(wildcard build/asan/src/*.d build/asan/src/*/*.d build/asan/src/*/*/*.d build/asan/tests/*.d)
.PHONY: asan
