# sluice — see README.md. Every target installs what is missing first (scripts/setup.sh).
BUILD_DIR      ?= build
TEST_BUILD_DIR ?= build-test
JOBS           ?= $(shell nproc)
CMAKE_GEN      := -G Ninja
# The test build: warnings are errors, ASan+UBSan on (SLUICE_SANITIZE=0 to turn them off).
SLUICE_SANITIZE ?= 1
ifeq ($(SLUICE_SANITIZE),1)
SAN_FLAGS := -DSLUICE_ASAN=ON -DSLUICE_UBSAN=ON
endif
CTEST_LABELS ?= unit|store|system|chaos-short|fuzz-short
ARGS ?=
# ccache: share hits between clones of the repo (paths relative to the source dir).
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := 1

.PHONY: all setup setup-test build run test test-build test-tsan chaos bench clean format

all: build

setup:
	@bash scripts/setup.sh

setup-test:
	@bash scripts/setup.sh --test

build: setup
	@cmake -S . -B $(BUILD_DIR) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS) --target sluice

# Starts sluice on the embedded default: SQLite under ./sluice-data, users +
# counters, 127.0.0.1:8080, no auth.
run: build
	./$(BUILD_DIR)/sluice serve $(ARGS)

test-build: setup-test
	@cmake -S . -B $(TEST_BUILD_DIR) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
	  -DSLUICE_BUILD_TESTS=ON -DSLUICE_BUILD_BENCH=ON -DSLUICE_WERROR=ON -DSLUICE_FUZZ=ON \
	  $(SAN_FLAGS) >/dev/null
	@cmake --build $(TEST_BUILD_DIR) -j $(JOBS)

test: test-build
	@bash scripts/run-tests.sh $(TEST_BUILD_DIR) '$(CTEST_LABELS)'

# ThreadSanitizer over the concurrency-heavy unit tests (watcher, ingest
# incl. group commit and the HTTP server, the SQLite store). Not part of
# `make test`: it is a third full build.
test-tsan: setup-test
	@cmake -S . -B build-tsan $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DSLUICE_BUILD_TESTS=ON -DSLUICE_TSAN=ON >/dev/null
	@cmake --build build-tsan -j $(JOBS) --target sluice_watcher_tests sluice_ingest_tests sluice_queue_tests
	@cd build-tsan/tests && export TSAN_OPTIONS=halt_on_error=1 && ./sluice_watcher_tests && \
	  ./sluice_ingest_tests && ./sluice_queue_tests --gtest_filter='-*Postgres*:*Pg*'

chaos: test-build
	@bash scripts/chaos.sh $(TEST_BUILD_DIR)

bench: build
	@cmake -S . -B $(BUILD_DIR) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Release -DSLUICE_BUILD_BENCH=ON >/dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS)
	@bash bench/run-all.sh $(BUILD_DIR)

format:
	@clang-format -i $$(git ls-files 'src/*.cc' 'src/*.h' 'tests/*.cc' 'tests/*.h' 'bench/*.cc')

clean:
	rm -rf $(BUILD_DIR) $(TEST_BUILD_DIR)
