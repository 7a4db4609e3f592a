# The two commands of the README: `make demo` and `make test`. Everything else is
# a helper for them.
BUILD_DIR ?= build
JOBS ?= 2
CMAKE_FLAGS ?=
export PATH := $(CURDIR)/.tools/bin:$(PATH)

FUZZ_BUILD_DIR ?= build-fuzz
FUZZ_RUNS ?= 1000000
FUZZ_JOBS ?= 1

.PHONY: all deps configure build test demo format format-check clean manifests fuzz

all: build

deps:
	scripts/install-deps.sh

configure: deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 600

demo: build
	scripts/demo.sh $(BUILD_DIR)

# The long fuzz run, on demand: the tests/fuzz targets built with clang, libFuzzer, ASan
# and UBSan in $(FUZZ_BUILD_DIR), each run for FUZZ_RUNS executions (docs/development.md).
fuzz: deps
	CC=clang-14 CXX=clang++-14 cmake -S . -B $(FUZZ_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -DMOESERVE_FUZZ=ON -DMOESERVE_TESTS=OFF -DMOESERVE_BENCH=OFF -DMOESERVE_CUDA=OFF
	cmake --build $(FUZZ_BUILD_DIR) -j $(JOBS) --target fuzz_targets
	FUZZ_RUNS=$(FUZZ_RUNS) FUZZ_JOBS=$(FUZZ_JOBS) scripts/fuzz.sh $(FUZZ_BUILD_DIR)

format:
	clang-format -i $$(git ls-files '*.h' '*.cpp' '*.cu')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.h' '*.cpp' '*.cu')

clean:
	rm -rf $(BUILD_DIR)

# deploy/operator from the Helm chart (tests/deploy fails when it is stale).
manifests:
	scripts/render-manifests.sh > deploy/operator/moeserve-operator.yaml
