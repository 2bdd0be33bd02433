# Wrapper around CMake. `make` builds, `make test` installs what is missing and runs the suite,
# `make demo` runs the main job on an embedded default.
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)

.PHONY: all deps build test test-asan demo clean format

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DSEIFER_WERROR=ON >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test: build test-asan
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@grep -h "^conformance: " $(BUILD)/Testing/Temporary/LastTest.log | sed 's/^/release build: /'
	@grep -h "^conformance: " $(ASAN_BUILD)/Testing/Temporary/LastTest.log | sed 's/^/ASan+UBSan build: /'

# Unit, conformance and CLI tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSEIFER_SANITIZE=ON -DSEIFER_WERROR=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS)

demo: build
	@scripts/demo.sh $(BUILD)/seifer $(BUILD)/tests/npytool

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
