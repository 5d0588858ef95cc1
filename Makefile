# cdam - class-discriminative attention maps for vision transformers.
#   make            build build/libcdam.a, build/cdam (CLI) and build/cdam-server
#   make run        install missing packages, build, run the CLI on a sample
#   make test       install missing packages, build, run every test
#   make test-ref   regenerate the PyTorch goldens (needs python3-torch; tools/install-deps.sh --ref)
#   make bench      forward-pass benchmark on a full-size random ViT-S/8 (see bench/README.md)
#   make bench-server   cdam-server under load against the engine's own speed (bench/README.md)
#   make SANITIZE=address test   /   make SANITIZE=undefined test   (separate build dirs)
#   make container-test   build the Dockerfile's image with podman and run it (tests/container/README.md)
#   make fuzz       libFuzzer targets under ASan+UBSan, FUZZ_SECONDS (60) each (tests/fuzz/README.md)

CC      ?= gcc
PYTHON  ?= /usr/bin/python3
SANITIZE ?=
BUILD   ?= build$(if $(SANITIZE),-$(SANITIZE),)

PKGS     := openblas libwebp libmicrohttpd libcjson libuv nettle
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS  ?= -O3 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fno-math-errno -fopenmp-simd -pthread -Icore -Iserver $(PKG_CFLAGS)
LDLIBS  += $(PKG_LIBS) -lm -pthread

ifeq ($(SANITIZE),address)
  CFLAGS  += -fsanitize=address -fno-omit-frame-pointer
  LDFLAGS += -fsanitize=address
else ifeq ($(SANITIZE),undefined)
  CFLAGS  += -fsanitize=undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
  LDFLAGS += -fsanitize=undefined
else ifeq ($(SANITIZE),fuzz)
  # `make fuzz` builds the engine and server with clang for libFuzzer into build-fuzz/
  CC      := clang
  CFLAGS  += -O1 -Wno-error -Wno-pass-failed -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
  LDFLAGS += -fsanitize=address,undefined
else ifneq ($(SANITIZE),)
  $(error SANITIZE must be address or undefined (or fuzz, used by make fuzz))
endif

CORE_SRC := $(filter-out core/cli.c,$(wildcard core/*.c))
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o)
SRV_SRC  := $(filter-out server/main.c,$(wildcard server/*.c))
SRV_OBJ  := $(SRV_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
HDRS     := $(wildcard core/*.h server/*.h)
# fuzz targets tests/fuzz/fuzz_<name>.c: replay_<name> (plain main, tests/fuzz/replay.c) is
# part of every build and `make test` replays tests/fuzz/corpus/<name>/ with it
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
REPLAY_BIN   := $(FUZZ_TARGETS:%=$(BUILD)/tests/replay_%)
REPLAY_RUNS  := $(foreach t,$(FUZZ_TARGETS),"$(BUILD)/tests/replay_$(t) tests/fuzz/corpus/$(t)")

.PHONY: all deps run test test-ref bench bench-server clean container-test fuzz fuzz-build
all: $(REPLAY_BIN)
all: $(BUILD)/cdam $(BUILD)/cdam-server $(BUILD)/cdam-server-fault $(TEST_BIN)

deps:
	@tools/install-deps.sh

$(BUILD)/%.o: %.c $(HDRS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libcdam.a: $(CORE_OBJ)
	ar rcs $@ $^

$(BUILD)/libsrv.a: $(SRV_OBJ)
	ar rcs $@ $^

$(BUILD)/cdam: $(BUILD)/core/cli.o $(BUILD)/libcdam.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/cdam-server: $(BUILD)/server/main.o $(BUILD)/libsrv.a $(BUILD)/libcdam.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# The allocation fault-injection build for tests/api/faults.test.js: the same objects, every
# allocation of server/ and core/ through tests/fault/fault_alloc.c (X-Fault-Alloc: N fails
# the Nth one); the production binary is untouched.
FAULT_WRAP := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=strndup,--wrap=aligned_alloc,--wrap=posix_memalign
$(BUILD)/cdam-server-fault: $(BUILD)/server/main.o $(BUILD)/tests/fault/fault_alloc.o $(BUILD)/libsrv.a $(BUILD)/libcdam.a
	$(CC) $(LDFLAGS) $(FAULT_WRAP) $^ $(LDLIBS) -o $@

# the container's health probe (Dockerfile HEALTHCHECK): GET /healthz, exit 0 on 200
$(BUILD)/cdam-healthcheck: tools/healthcheck.c Makefile
	$(CC) $(CFLAGS) $(LDFLAGS) $< -o $@

$(BUILD)/tests/%: tests/%.c tests/check.h $(BUILD)/libsrv.a $(BUILD)/libcdam.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(BUILD)/libsrv.a $(BUILD)/libcdam.a $(LDLIBS) -o $@

# make run [MODEL=dino|tiny]: serves the demo model (or the paper's, once
# tools/fetch-dino.sh has fetched it) on http://127.0.0.1:8080 (PORT=..., HOST=...).
MODEL ?= demo
PORT  ?= 8080
HOST  ?= 127.0.0.1
ifeq ($(MODEL),dino)
  RUN_MODEL := models/dino/dino-vits8.safetensors models/dino/cdam-head-imagenet.safetensors
else ifeq ($(MODEL),tiny)
  RUN_MODEL := tests/data/models/tiny.safetensors
else ifneq ($(wildcard models/fashion-vit.safetensors),)
  RUN_MODEL := models/fashion-vit.safetensors
else
  RUN_MODEL := tests/data/models/tiny.safetensors
  RUN_WARN  := 1
endif

run: deps
	@$(MAKE) --no-print-directory $(BUILD)/cdam-server
	@$(if $(RUN_WARN),echo "cdam: WARNING: models/fashion-vit.safetensors is missing; serving the small random test model $(RUN_MODEL)" >&2,true)
	$(BUILD)/cdam-server --model $(RUN_MODEL) --host $(HOST) --port $(PORT) --static static --data-dir data

test: deps
	@tools/install-deps.sh --test
	@$(MAKE) --no-print-directory all
	tests/run.sh $(TEST_BIN) $(REPLAY_RUNS) "tests/test_cli.sh $(BUILD)" $(if $(wildcard $(PYTHON)),"$(PYTHON) tests/ref/test_convert.py") \
	  $(if $(wildcard tests/api/run.sh),"tests/api/run.sh $(BUILD)") \
	  $(if $(wildcard tests/web/run.sh),"tests/web/run.sh $(BUILD)") \
	  $(if $(and $(CONTAINER_TEST),$(shell command -v podman 2>/dev/null)),tests/container/run.sh)

test-ref:
	@tools/install-deps.sh --ref
	$(PYTHON) tests/ref/make_images.py
	$(PYTHON) tests/ref/make_goldens.py
	$(PYTHON) tests/ref/make_explain_goldens.py

bench: deps
	@$(MAKE) --no-print-directory all $(BUILD)/bench_forward $(BUILD)/bench_explain
	bench/run.sh $(BUILD)

bench-server: deps
	@$(MAKE) --no-print-directory $(BUILD)/cdam-server $(BUILD)/bench_explain
	bench/server.sh $(BUILD)

$(BUILD)/bench_%: bench/bench_%.c $(BUILD)/libcdam.a
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(BUILD)/libcdam.a $(LDLIBS) -o $@

# make container-test: builds the Dockerfile's image (podman, no Docker engine) from a clean
# copy of the tree and runs it; validates deploy/ and openapi.yaml (tests/container/README.md).
# `make test` runs it too when podman is installed, in the default build only (not under
# SANITIZE=...: the image is built from the same sources either way).
CONTAINER_TEST ?= $(if $(SANITIZE),,1)
container-test:
	@tools/install-deps.sh --container
	tests/container/run.sh

# Fuzzing (tests/fuzz/README.md). replay_<name>: the target with a plain main(), any
# compiler. make fuzz: every target built with clang and libFuzzer (SANITIZE=fuzz ->
# build-fuzz/), then run FUZZ_SECONDS each on a scratch copy of its corpus by
# tests/fuzz/run.sh, which prints exec/s and coverage and fails on any crash, leak,
# timeout or OOM (reproducers in build-fuzz/<name>-crashes/).
FUZZ_SECONDS ?= 60
FUZZ_DEPS := tests/fuzz/fuzz.h server/http.c $(HDRS) $(BUILD)/libsrv.a $(BUILD)/libcdam.a
$(BUILD)/tests/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $(FUZZ_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -Itests/fuzz -DFUZZ_NAME='"$*"' tests/fuzz/replay.c $< $(BUILD)/libsrv.a $(BUILD)/libcdam.a $(LDLIBS) -o $@

$(BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_DEPS)
	$(CC) $(CFLAGS) $(LDFLAGS) -fsanitize=fuzzer -Itests/fuzz $< $(BUILD)/libsrv.a $(BUILD)/libcdam.a $(LDLIBS) -o $@

fuzz-build: $(FUZZ_TARGETS:%=$(BUILD)/fuzz_%)

fuzz:
	@tools/install-deps.sh --fuzz
	@$(MAKE) --no-print-directory SANITIZE=fuzz fuzz-build
	tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

clean:
	rm -rf build build-address build-undefined build-fuzz
