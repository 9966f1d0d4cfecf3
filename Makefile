# wasmpod: `make demo` runs a wasm image through a private containerd; `make test` runs every
# test. Both install what is missing first (apt packages, rust targets): see scripts/.
SHELL := /bin/bash
.DEFAULT_GOAL := build

CARGO     ?= cargo
RELEASE   := target/release
SHIM      := $(RELEASE)/containerd-shim-wasmpod-v1
CLI       := $(RELEASE)/wasmpod
TRIXIE    := $(CURDIR)/.work/trixie
FORKY     := $(CURDIR)/.work/forky
PREFIX    ?= /usr/local
TEST_THREADS ?= 2
# `$(stage)` opens a long recipe with the time since make started, so a slow CI run shows
# where its minutes went.
MAKE_START := $(shell date +%s)
elapsed = $$(( $$(date +%s) - $(MAKE_START) )) s
stage = @echo "== $@: starts $(elapsed) after make started"

.PHONY: deps trixie forky build test-images test unit-test integration-test critest lint fmt bench bench-many trace demo install uninstall clean

deps: ## install missing apt packages and rust targets
	@scripts/install-deps.sh

trixie: ## fetch containerd 1.7 + dockerd 26 (Debian trixie, extracted) into .work/trixie
	@scripts/fetch-debian.sh trixie $(TRIXIE)

forky: ## fetch containerd 2.1 + dockerd 28 (Debian forky, extracted) into .work/forky
	@scripts/fetch-debian.sh forky $(FORKY)

build: deps ## build the shim and the wasmpod CLI (release)
	$(stage)
	$(CARGO) build --release --workspace --bins

test-images: deps ## build the wasm test programs into test-images/out
	$(stage)
	$(MAKE) -C test-images

# More prerequisites of `test` follow (cgroup2-test, fuzz-smoke): make runs the recipe after all.
test: deps build test-images trixie forky unit-test integration-test critest ## everything
	@echo "== make test: done in $(elapsed)"

# Every cargo test here selects the whole workspace, as `make build` does: cargo then gives each
# dependency the same features in all of them and builds it once (`-p wasmpod-integration`
# alone built the suite's dependencies a second time, with fewer features). Test files are
# chosen with `--test`: the suite's (integration/tests) in the lanes, the others here.
INTEGRATION_TESTS := $(basename $(notdir $(wildcard integration/tests/*.rs)))
UNIT_TEST_FILES := $(basename $(notdir $(wildcard shim/tests/*.rs image-tools/tests/*.rs)))

unit-test: deps
	$(stage)
	$(CARGO) fmt --all -- --check
	$(CARGO) test --release --workspace --no-fail-fast --lib --bins $(addprefix --test ,$(UNIT_TEST_FILES))
	$(CARGO) test --release --workspace --doc

# $(call lane,TITLE,CONTAINERD,CRI_CONTAINERD,DOCKERD,TESTS): the integration suite's test
# files TESTS, its ctr tests on CONTAINERD, its CRI tests on CRI_CONTAINERD (1.7 or later), its
# Docker tests on DOCKERD with the containerd beside it. Each lane prints the versions it runs.
define lane
	@echo "== integration tests ($(elapsed) after make started): $(1): containerd $$($(2) --version | cut -d' ' -f3)," \
	  "CRI on containerd $$($(3) --version | cut -d' ' -f3), $$($(4) --version)"
	WASMPOD_CONTAINERD=$(2) WASMPOD_CRI_CONTAINERD=$(3) WASMPOD_DOCKERD=$(4) \
	  $(CARGO) test --release --no-fail-fast --workspace $(addprefix --test ,$(5)) -- --test-threads=$(TEST_THREADS)
endef

# The test files that are wholly CRI or Docker tests. Containerd 1.6 has no CRI the tests can
# use (it predates raw wasm layers), so its lane's CRI and Docker run on containerd 1.7 and
# Docker 26: the very daemons of the 1.7 lane. The 1.6 lane leaves these files out rather than
# run them twice; every other file (the CRI and Docker tests in mixed files included) runs there.
CRI_DOCKER_TESTS := cri cri_conformance cri_exec cri_terminal docker ci_recipe http_reach
CTR_TESTS := $(filter-out $(CRI_DOCKER_TESTS),$(INTEGRATION_TESTS))

integration-test: build test-images trixie forky
	$(stage)
	$(call lane,containerd 1.6 (bookworm) without the CRI and Docker files,/usr/bin/containerd,$(TRIXIE)/bin/containerd,$(TRIXIE)/bin/dockerd,$(CTR_TESTS))
	$(call lane,containerd 1.7 + Docker 26 (trixie),$(TRIXIE)/bin/containerd,$(TRIXIE)/bin/containerd,$(TRIXIE)/bin/dockerd,$(INTEGRATION_TESTS))
	$(call lane,containerd 2.1 + Docker 28 (forky),$(FORKY)/bin/containerd,$(FORKY)/bin/containerd,$(FORKY)/bin/dockerd,$(INTEGRATION_TESTS))

# critest: Kubernetes' CRI validation suite (cri-tools v1.34.0, prebuilt: it cannot be built
# here) under runc and wasmpod, side by side, on containerd 1.7 and 2.1 (scripts/critest.sh).
# CRITEST_TOOLS is the dir holding critest.xz and crictl.xz.
CRITEST_TOOLS ?= $(patsubst %/critest.xz,%,$(firstword $(wildcard $(CURDIR)/../shared/tools/critest.xz /work/shared/tools/critest.xz)))

critest: build trixie forky ## CRI conformance (critest): wasmpod vs runc on containerd 1.7 and 2.1
	$(stage)
	CRITEST_TOOLS=$(CRITEST_TOOLS) scripts/critest.sh $(TRIXIE)/bin/containerd $(FORKY)/bin/containerd

# cgroup v2 lane: this host is cgroup v1 hybrid, users' nodes are cgroup v2 only. Boots a
# throwaway QEMU VM (TCG) whose only hierarchy is cgroup v2 and runs the integration tests
# that touch cgroups in it, on containerd 1.7 and 2.1 (scripts/cgroup2-vm/run.sh; README).
.PHONY: cgroup2-test
cgroup2-test: build test-images trixie forky ## cgroup v2 only VM: limits, Update, stats, freeze, OOM, systemd paths
	$(stage)
	scripts/cgroup2-vm/run.sh
test: cgroup2-test

# Fuzzing (cargo-fuzz, libFuzzer, nightly; fuzz/README.md): the targets of fuzz/ on their
# committed corpora, FUZZ_SECONDS each (scripts/fuzz-smoke.sh): 20 s in `make test`; `make
# fuzz` for the long runs (new inputs go into fuzz/corpus: `cargo fuzz cmin` before committing).
FUZZ_SECONDS ?= 1800
.PHONY: fuzz-smoke fuzz
fuzz-smoke: deps ## 20 s of libFuzzer per fuzz target on its corpus; fails on any crash
	$(stage)
	FUZZ_SECONDS=20 scripts/fuzz-smoke.sh
test: fuzz-smoke

fuzz: ## long fuzz runs: FUZZ_SECONDS (default 1800) or 10 million executions per target
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_RUNS=10000000 FUZZ_GROW=1 scripts/fuzz-smoke.sh

lint: deps ## formatting and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

bench: build test-images ## wasmpod vs runc, runwasi and the floor: ctr and docker run, churn, idle PSS; engine start; 1000 idle containers; HTTP vs wasmtime serve
	scripts/bench.sh
	scripts/bench-docker.sh $(TRIXIE)/bin/dockerd $(FORKY)/bin/dockerd
	scripts/bench-churn.sh $(TRIXIE)/bin/containerd $(FORKY)/bin/containerd
	scripts/trace-start.sh $(TRIXIE)/bin/containerd

bench-many: build test-images ## 10,000 idle wasm containers at once, in opt-in groups of 100 (MANY, GROUP_SIZE)
	scripts/bench-many.sh

trace: build test-images trixie ## where one cached `ctr run --rm` spends its time, wasmpod beside runc and the floor
	scripts/trace-start.sh $(TRIXIE)/bin/containerd

demo: build test-images ## private containerd, run the hello image through wasmpod
	scripts/demo.sh

install: build ## the CLI into $(PREFIX)/bin, then `wasmpod install`: the shim, containerd's runtime handler
	install -m 0755 $(CLI) $(PREFIX)/bin/
	$(PREFIX)/bin/wasmpod install --shim $(SHIM) --bin-dir $(PREFIX)/bin $(INSTALL_FLAGS)

uninstall: ## `wasmpod uninstall`, then remove the CLI
	$(CLI) uninstall --bin-dir $(PREFIX)/bin $(INSTALL_FLAGS)
	rm -f $(PREFIX)/bin/wasmpod

clean:
	$(CARGO) clean
	$(MAKE) -C test-images clean
	rm -rf .work
