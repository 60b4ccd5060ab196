# Thin wrapper over CMake/CTest. `make demo` and `make test` are the README's two commands.
BUILD    ?= build
PREFIX   ?= /usr/local
JOBS     ?= $(shell nproc)
CMAKEFLAGS ?=
FUZZ_SECONDS ?= 60

.PHONY: all deps configure test test-slurm demo bench fuzz install man-lint clean

all: configure
	cmake --build $(BUILD) -j $(JOBS)

deps:
	@sh share/llmkit/install-deps.sh

configure: deps
	@test -f $(BUILD)/CMakeCache.txt || cmake -S . -B $(BUILD) -G Ninja -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKEFLAGS)

test: all
	@sh share/llmkit/install-peers.sh $(BUILD)/peers
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 900

# The Slurm scripts on a one-node Slurm cluster that the test brings up and tears down (needs
# root); exit status 77 means that Slurm could not be started here, which is not a failure.
test-slurm: all
	@LLMKIT_BIN=$(abspath $(BUILD))/bin LLMKIT_SRC=$(CURDIR) bash tests/slurm/run.sh; rc=$$?; \
	if [ $$rc -eq 77 ]; then echo "test-slurm: SKIPPED (exit status 77): Slurm could not be brought up here; the reason is above"; \
	elif [ $$rc -ne 0 ]; then exit $$rc; fi

demo: all
	sh share/llmkit/demo/run-demo.sh $(BUILD)/bin

bench: all
	@sh share/llmkit/install-peers.sh $(BUILD)/peers
	LLMKIT_PEERS=$(abspath $(BUILD))/peers sh bench/run-all.sh $(BUILD)/bin

fuzz: deps
	@test -f $(BUILD)-fuzz/CMakeCache.txt || CC=clang CXX=clang++ cmake -S . -B $(BUILD)-fuzz -DLLMKIT_FUZZ=ON -DLLMKIT_CUDA=OFF -DBUILD_TESTING=OFF
	cmake --build $(BUILD)-fuzz -j $(JOBS) --target fuzz-targets
	sh tests/fuzz/run-fuzz.sh $(BUILD)-fuzz/bin $(FUZZ_SECONDS)

install: all
	cmake --install $(BUILD) --prefix $(PREFIX)

man-lint: deps
	mandoc -Tlint -W warning man/man1/*.1 man/man5/*.5 man/man7/*.7

clean:
	rm -rf $(BUILD) $(BUILD)-fuzz
