# Thin wrapper over CMake so the README's commands stay one line each.
#   make          build ./build/ocimirror
#   make run      build and serve on the embedded defaults (0.0.0.0:5000)
#   make test     build, then run every unit and end-to-end test twice:
#                 on the normal build and on an ASan+UBSan build; then a
#                 short libFuzzer run of every parser
#   make bench    the benchmarks (bench/README.md), with ratios to nginx and
#                 distribution; results go to bench/out/
#   make unit     unit tests only (fast)
#   make install  install binary, systemd unit, default config (PREFIX=/usr/local)
BUILD ?= build
PREFIX ?= /usr/local
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
CTEST_ARGS ?= --output-on-failure

.PHONY: all build run test test-release test-asan fuzz-short bench unit install clean
all: build

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX)
	cmake --build $(BUILD) -j$(JOBS)

run: build
	./$(BUILD)/ocimirror serve

unit: build
	cd $(BUILD) && ctest -L unit $(CTEST_ARGS)

test-release: build
	cd $(BUILD) && ctest $(CTEST_ARGS)

test-asan:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DOM_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest $(CTEST_ARGS)

# A short libFuzzer run of every parser target (clang; ~20 s a target).
fuzz-short:
	scripts/fuzz.sh short

test: test-release test-asan fuzz-short

# Benchmarks against distribution (proxy mode) and nginx; never pass/fail.
bench: build
	bench/run.sh

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
