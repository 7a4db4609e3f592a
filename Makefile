# The two commands of the README: `make demo` and `make test`. Everything else is
# a helper for them.
BUILD_DIR ?= build
JOBS ?= 2
CMAKE_FLAGS ?=
export PATH := $(CURDIR)/.tools/bin:$(PATH)

.PHONY: all deps configure build test demo format format-check clean manifests

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

format:
	clang-format -i $$(git ls-files '*.h' '*.cpp' '*.cu')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.h' '*.cpp' '*.cu')

clean:
	rm -rf $(BUILD_DIR)

# deploy/operator from the Helm chart (tests/deploy fails when it is stale).
manifests:
	scripts/render-manifests.sh > deploy/operator/moeserve-operator.yaml
