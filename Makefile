# sliceguard: the user's verbs. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
NEXTEST_PROFILE ?= $(if $(CI),ci,default)
SIM_SEEDS ?= 20
SIM_STEPS ?= 300
FUZZ_TARGET ?= annotation_parser
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := annotation_parser admission_webhook quantity_request
QUALITY_DATA ?= ../shared/data/alibaba-openb
QUALITY_SEEDS ?= 42..51
QUALITY_JOBS ?= 2

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

.PHONY: nextest
nextest:
	@command -v cargo-nextest >/dev/null 2>&1 || { echo "installing cargo-nextest"; $(CARGO) install cargo-nextest --locked; }

.PHONY: test
test: nextest ## Run every test (unit, property, corpus replay, integration) with cargo-nextest
	$(CARGO) nextest run --workspace --profile $(NEXTEST_PROFILE)

.PHONY: lint
lint: ## cargo fmt --check and clippy with warnings denied
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: cargo-fuzz
cargo-fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || { echo "installing cargo-fuzz"; $(CARGO) install cargo-fuzz --locked; }

.PHONY: fuzz
fuzz: cargo-fuzz ## Fuzz FUZZ_TARGET (annotation_parser) for FUZZ_SECONDS (60); prints the invocation it used
	fuzz/run.sh $(FUZZ_TARGET) $(FUZZ_SECONDS)

.PHONY: fuzz-all
fuzz-all: cargo-fuzz ## Fuzz every target for FUZZ_SECONDS each
	@for t in $(FUZZ_TARGETS); do fuzz/run.sh $$t $(FUZZ_SECONDS) || exit $$?; done

.PHONY: build
build: ## Build the sliceguard binary (release)
	$(CARGO) build --release -p sliceguard-scheduler

.PHONY: sim
sim: ## Simulation campaigns with every fault: SIM_SEEDS (20) seeds x SIM_STEPS (300) operations
	$(CARGO) run -q -p sliceguard-kind-harness -- sim --seeds $(SIM_SEEDS) --steps $(SIM_STEPS) --faults all

.PHONY: conformance
conformance: sim ## The conformance job on the embedded simulated cluster (scenario suite: see README)
	@echo "make conformance: the simulated cluster's campaigns passed (above)."
	@echo "The scenario suite (fractional, pending, placement, sharing, ...) with evidence reports is the next issue; see README."

.PHONY: quality
quality: ## Placement quality on the Alibaba trace: regenerate bench/QUALITY.md (QUALITY_DATA, QUALITY_SEEDS, QUALITY_JOBS)
	$(CARGO) run --release -q -p sliceguard-kind-harness -- trace --data $(QUALITY_DATA) --seeds $(QUALITY_SEEDS) --jobs $(QUALITY_JOBS) --variants --quality-report bench/QUALITY.md
