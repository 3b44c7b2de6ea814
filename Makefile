# mica - top-level build.
#
#   make            build build/mica, build/libmica.a and the tools
#   make demo       convert the bundled stories260K model and generate from it
#   make check      build with -Werror and run every test (unit, golden, oracle, sanitizers)
#   make fuzz       run the GGUF reader fuzzer for FUZZ_SECONDS (libFuzzer, clang)
#   make fuzz-request  run the HTTP request fuzzer (a real mica serve) for FUZZ_SECONDS
#   make bench      prompt and decode speed of mica run (bench/run.sh; see bench/PROTOCOL.md)
#
# One binary runs on any x86-64: the AVX2 and AVX-512 kernel files get their own
# -m flags and are chosen at run time by src/tensor/cpu_features.c.

CC      ?= cc
CFLAGS  ?= -O2 -g
WARN    := -std=c11 -Wall -Wextra -Wshadow -Wno-unknown-pragmas -Wstrict-prototypes -Wvla
ifeq ($(WERROR),1)
WARN    += -Werror
endif
CPPFLAGS_ALL := -D_GNU_SOURCE -Iinclude -Isrc $(CPPFLAGS)
LDLIBS  := -lpcre2-8 -lutf8proc -lmicrohttpd -ljansson -luring -lpthread -lm
BUILD   ?= build
TESTDATA ?= ../shared/testdata
FUZZ_SECONDS ?= 60

ARCH := $(shell uname -m)

LIB_SRC := $(sort $(wildcard src/*/*.c))
ifneq ($(ARCH),x86_64)
LIB_SRC := $(filter-out %_avx2.c %_avx512.c,$(LIB_SRC))
endif
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(sort $(wildcard cli/*.c server/*.c)))
TEST_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(sort $(wildcard tests/unit/*.c)) tests/test_main.c)
TOOLS := $(patsubst tools/%.c,$(BUILD)/%,$(sort $(wildcard tools/*.c)))

# Per-ISA flags for the kernel files only.
ISA_avx2   := -mavx2 -mfma -mf16c
ISA_avx512 := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16 -mavx2 -mfma -mf16c

all: $(BUILD)/mica $(BUILD)/libmica.a $(TOOLS)

deps:
	@tools/install-deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(WARN) $(CFLAGS) $(if $(findstring _avx512,$<),$(ISA_avx512),$(if $(findstring _avx2,$<),$(ISA_avx2))) -MMD -MP -c $< -o $@

$(BUILD)/tests/%.o: CPPFLAGS_ALL += -Itests

$(BUILD)/libmica.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/mica: $(CLI_OBJ) $(BUILD)/libmica.a
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libmica.a $(LDLIBS)

$(BUILD)/%: tools/%.c $(BUILD)/libmica.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(WARN) $(CFLAGS) -o $@ $< $(BUILD)/libmica.a $(LDLIBS)

$(BUILD)/test_unit: $(TEST_OBJ) $(BUILD)/libmica.a
	$(CC) $(CFLAGS) -o $@ $(TEST_OBJ) $(BUILD)/libmica.a $(LDLIBS)

# ---- demo ----
demo: deps all
	$(BUILD)/mica convert llama2c $(TESTDATA)/tinystories/stories260K.bin \
	    $(TESTDATA)/tinystories/tok512.bin -o $(BUILD)/stories260K.gguf
	$(BUILD)/mica run -m $(BUILD)/stories260K.gguf -p "Once upon a time" -n 124 --temp 0

# ---- tests ----
# check: the whole suite, warnings as errors, then the sanitizer build of the unit tests.
check: deps
	$(MAKE) WERROR=1 all $(BUILD)/test_unit
	MICA_TESTDATA=$(TESTDATA) MICA_BUILD=$(BUILD) tests/run.sh
	$(MAKE) check-asan

# The whole unit suite (malformed-GGUF suite and hostile templates included), the
# malformed files through the CLI and the template comparison, under ASan and UBSan.
check-asan:
	$(MAKE) BUILD=build-asan WERROR=1 \
	    CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    build-asan/test_unit build-asan/mica build-asan/mica-template
	MICA_TESTDATA=$(TESTDATA) MICA_BUILD=build-asan ASAN_OPTIONS=detect_leaks=1 build-asan/test_unit
	MICA_TESTDATA=$(TESTDATA) MICA_BUILD=build-asan tests/scripts/malformed_cli.sh
	MICA_TESTDATA=$(TESTDATA) MICA_BUILD=build-asan tests/scripts/templates.sh

# ---- fuzzing (clang + libFuzzer) ----
fuzz: deps
	$(MAKE) BUILD=build-fuzz CC=clang \
	    CFLAGS="-O1 -g -fsanitize=fuzzer-no-link,address,undefined" build-fuzz/libmica.a
	clang $(CPPFLAGS_ALL) -O1 -g -fsanitize=fuzzer,address,undefined -o build-fuzz/fuzz_gguf \
	    tests/fuzz/fuzz_gguf.c build-fuzz/libmica.a $(LDLIBS)
	@mkdir -p build-fuzz/corpus
	build-fuzz/fuzz_gguf -max_total_time=$(FUZZ_SECONDS) -max_len=65536 build-fuzz/corpus tests/fuzz/corpus

# Requests to a real server (tests/fuzz/fuzz_request.c) over tiny-qwen3 with the Qwen3 template.
SERVER_SRC := $(sort $(wildcard server/*.c))
fuzz-request: deps
	$(MAKE) BUILD=build-fuzz CC=clang \
	    CFLAGS="-O1 -g -fsanitize=fuzzer-no-link,address,undefined" \
	    build-fuzz/libmica.a build-fuzz/mica-gen $(SERVER_SRC:%.c=build-fuzz/%.o)
	clang $(CPPFLAGS_ALL) -Iserver -O1 -g -fsanitize=fuzzer,address,undefined -o build-fuzz/fuzz_request \
	    tests/fuzz/fuzz_request.c $(SERVER_SRC:%.c=build-fuzz/%.o) build-fuzz/libmica.a $(LDLIBS)
	build-fuzz/mica-gen --preset tiny-qwen3 --type Q8_0 --vocab $(TESTDATA)/vocab/ggml-vocab-qwen2.gguf \
	    --chat-template $(TESTDATA)/templates/Qwen-Qwen3-0.6B.jinja -o build-fuzz/fuzz-model.gguf
	@mkdir -p build-fuzz/requests
	MICA_FUZZ_MODEL=build-fuzz/fuzz-model.gguf ASAN_OPTIONS=detect_leaks=0 build-fuzz/fuzz_request \
	    -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -timeout=30 build-fuzz/requests tests/fuzz/requests

bench: all
	bench/run.sh

layering:
	tools/check_layering.sh

clean:
	rm -rf build build-asan build-fuzz

.PHONY: all deps demo check check-asan fuzz fuzz-request bench layering clean

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
