# sliceguard: the user's verbs. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
NEXTEST_PROFILE ?= $(if $(CI),ci,default)
SIM_SEEDS ?= 20
SIM_STEPS ?= 300
SIM_LARGE_SEEDS ?= 8
FUZZ_TARGET ?= annotation_parser
FUZZ_SECONDS ?= 60
# Every fuzz target (fuzz/fuzz_targets/); .ci/run and ci/nightly-fuzz.yml read this list.
FUZZ_TARGETS := annotation_parser admission_webhook quantity_request extender admission_review place_manifests go_duration policy_annotations watch_events
QUALITY_DATA ?= ../shared/data/alibaba-openb
QUALITY_SEEDS ?= 42..51
QUALITY_JOBS ?= 2
QUALITY_VARIANT_SEEDS ?= $(QUALITY_SEEDS)
# The kind tier: one pin for the node image and the kube-scheduler image (v1.33 or newer).
K8S_VERSION ?= v1.33.1
KIND_CLUSTER ?= sliceguard
IMAGE ?= sliceguard:dev
# The kustomize overlay kind-up deploys: fake-fleet, hami-device-plugin or ha (deploy/overlays/).
OVERLAY ?= fake-fleet
# conformance: CLUSTER=sim (default), kind, or kubeconfig; KUBECONFIG=FILE implies kubeconfig.
CLUSTER ?= $(if $(KUBECONFIG),kubeconfig,sim)
ifndef EVIDENCE_DIR
EVIDENCE_DIR := evidence/$(shell date -u +%Y%m%d-%H%M%S)
endif
CONFORMANCE_ARGS ?=
CONFORMANCE_CLUSTER_FLAGS = --cluster $(CLUSTER) $(if $(filter kind,$(CLUSTER)),--kind-name $(KIND_CLUSTER)) $(if $(and $(KUBECONFIG),$(filter kubeconfig,$(CLUSTER))),--kubeconfig $(KUBECONFIG))

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

.PHONY: nextest
nextest:
	@command -v cargo-nextest >/dev/null 2>&1 || { echo "installing cargo-nextest"; $(CARGO) install cargo-nextest --locked; }

.PHONY: test
test: nextest ## Run every test (unit, property, corpus replay, integration) with cargo-nextest; the core must build alone first
	$(CARGO) build -q -p sliceguard-core
	$(CARGO) nextest run --workspace --profile $(NEXTEST_PROFILE)

.PHONY: deny
deny: ## Supply chain: cargo deny check licenses bans sources (deny.toml); advisories too with DENY_ADVISORIES=1 where the advisory database is reachable
	@command -v cargo-deny >/dev/null 2>&1 || { echo "installing cargo-deny"; $(CARGO) install cargo-deny --locked; }
	$(CARGO) deny --all-features check licenses bans sources
	@if [ "$(DENY_ADVISORIES)" = "1" ]; then $(CARGO) deny check advisories; else echo "SKIPPED: cargo deny check advisories (set DENY_ADVISORIES=1 where https://github.com/rustsec/advisory-db is reachable)"; fi

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
fuzz-all: cargo-fuzz ## Fuzz every target (FUZZ_TARGETS) for FUZZ_SECONDS each, one after another
	@for t in $(FUZZ_TARGETS); do fuzz/run.sh $$t $(FUZZ_SECONDS) || exit $$?; done

.PHONY: print-fuzz-targets
print-fuzz-targets: ## Print FUZZ_TARGETS, one line (for .ci/run and the nightly fuzz workflow)
	@echo $(FUZZ_TARGETS)

# Mutation testing of the core: cargo-mutants with nextest, configured in .cargo/mutants.toml.
MUTANTS_JOBS ?= 1
MUTANTS_PROPTEST_CASES ?= 64
MUTANTS_ARGS ?=
.PHONY: cargo-mutants
cargo-mutants:
	@command -v cargo-mutants >/dev/null 2>&1 || { echo "installing cargo-mutants (about 4 minutes)"; $(CARGO) install cargo-mutants --locked; }

.PHONY: mutants
mutants: nextest cargo-mutants ## Mutants of the core judged by the core's and the invariants' tests; writes mutants.md and ci/mutants-outcomes/ (MUTANTS_ARGS="-f FILE", "--shard K/N", or "--iterate" to resume from the committed outcomes)
	@mkdir -p target/mutants ci/mutants-outcomes; \
	case " $(MUTANTS_ARGS) " in *" --iterate "*) [ -d target/mutants/mutants.out ] || \
	    python3 ci/mutants-report.py --seed-iterate target/mutants/mutants.out ci/mutants-outcomes/*.tsv;; esac; \
	status=0; PROPTEST_CASES=$(MUTANTS_PROPTEST_CASES) $(CARGO) mutants -p sliceguard-core --jobs $(MUTANTS_JOBS) \
	    -o target/mutants $(MUTANTS_ARGS) || status=$$?; \
	python3 ci/mutants-report.py --export target/mutants/mutants.out > ci/mutants-outcomes/$$(date -u +%Y%m%dT%H%M%SZ).tsv; \
	$(CARGO) mutants -p sliceguard-core --list > target/mutants/current.txt; \
	python3 ci/mutants-report.py --current target/mutants/current.txt ci/mutants-outcomes/*.tsv > mutants.md && echo "wrote mutants.md"; \
	exit $$status

.PHONY: build
build: ## Build the sliceguard binary (release)
	$(CARGO) build --release -p sliceguard-scheduler

.PHONY: sim
sim: ## Simulation campaigns with every fault: SIM_SEEDS (20) seeds x SIM_STEPS (300) operations, in both lock modes; then SIM_LARGE_SEEDS (8) on 100 nodes, where the placement index and the brief fragmentation answer decide
	$(CARGO) run -q -p sliceguard-kind-harness -- sim --seeds $(SIM_SEEDS) --steps $(SIM_STEPS) --faults all
	$(CARGO) run -q -p sliceguard-kind-harness -- sim --seeds $(SIM_SEEDS) --steps $(SIM_STEPS) --faults all --device-plugin hami --lock-release device-plugin
	$(CARGO) run -q -p sliceguard-kind-harness -- sim --seeds $(SIM_LARGE_SEEDS) --steps $(SIM_STEPS) --faults all --nodes 100

.PHONY: conformance
conformance: ## Conformance scenarios on the embedded simulated cluster (CLUSTER=kind or KUBECONFIG=... for others); prints the table, writes evidence/
	$(CARGO) run -q -p sliceguard-kind-harness -- conformance $(CONFORMANCE_CLUSTER_FLAGS) --evidence $(EVIDENCE_DIR) $(CONFORMANCE_ARGS)

# conformance-busy builds as `make test` does (workspace, tests), so after `make test` nothing rebuilds.
.PHONY: conformance-busy
conformance-busy: ## Conformance on a busy simulated cluster (other work, a cordoned device, a second GPU model; the seed applied) through a kubeconfig and a separate `sliceguard serve`; evidence/busy-<timestamp>/
	$(CARGO) build -q --workspace --tests
	ci/conformance-busy.sh target/debug $(dir $(EVIDENCE_DIR))busy-$(notdir $(EVIDENCE_DIR))

.PHONY: conformance-k3s
conformance-k3s: ## Conformance on a K3s cluster started with testcontainers, sliceguard deployed on it (needs Docker and the k3s image; exit 2 names what is missing)
	$(CARGO) build -q -p sliceguard-scheduler -p sliceguard-kind-harness
	target/debug/kind-harness conformance --cluster k3s --evidence $(dir $(EVIDENCE_DIR))k3s-$(notdir $(EVIDENCE_DIR)) $(CONFORMANCE_ARGS)

.PHONY: real-clients
real-clients: nextest ## kubectl (the seed's flow, the API walk) and the official Python client against the simulated API; the Python test says SKIPPED where python3-kubernetes is missing
	$(CARGO) nextest run --workspace --profile $(NEXTEST_PROFILE) --no-capture -E 'binary(kubectl_seed) | binary(kubectl) | binary(python_client)'

.PHONY: kind-tools
kind-tools: ## Install kind and kubectl at pinned versions (CI runners; ci/install-kind-tools.sh)
	ci/install-kind-tools.sh

.PHONY: kind-up
kind-up: ## Create the kind cluster (K8S_VERSION pinned here), build and load the image, deploy the OVERLAY (fake-fleet), register a fake fleet
	$(CARGO) build -q -p sliceguard-scheduler -p sliceguard-kind-harness
	target/debug/kind-harness up --name $(KIND_CLUSTER) --k8s-version $(K8S_VERSION) --image $(IMAGE) --overlay $(OVERLAY) --sliceguard target/debug/sliceguard

.PHONY: kind-conformance
kind-conformance: ## Conformance scenarios on the kind cluster of kind-up, evidence in evidence/
	$(CARGO) run -q -p sliceguard-kind-harness -- conformance --cluster kind --kind-name $(KIND_CLUSTER) --evidence $(EVIDENCE_DIR) $(CONFORMANCE_ARGS)

.PHONY: evidence
evidence: conformance ## Same as conformance; then lists the evidence directory (report.md, report.json, junit.xml, YAML snapshots)
	@ls -R $(EVIDENCE_DIR)

.PHONY: kind-down
kind-down: ## Delete the kind cluster
	$(CARGO) run -q -p sliceguard-kind-harness -- down --name $(KIND_CLUSTER)

.PHONY: audit
audit: ## Audit a live cluster (KUBECONFIG, or the current context): over-committed GPUs, stuck locks; exit 1 if any
	$(CARGO) run -q -p sliceguard-kind-harness -- audit $(if $(KUBECONFIG),--kubeconfig $(KUBECONFIG))

.PHONY: clean
clean: ## Remove the evidence directories and the rendered kind manifests (not target/)
	rm -rf evidence target/kind-harness

BENCH_E2E_PODS ?= 1000
BENCH_SERVE_NODES ?= 20000
BENCH_SERVE_PODS ?= 100000
BENCH_BIN_DIR ?= $(CURDIR)/target/release

.PHONY: bench
bench: ## Performance: placement index vs plain scan, rebuild-and-scan and floor (100..20k nodes), ledger, parsing, memory, the service alone (filter + bind over HTTP), end to end, serve peak RSS; writes bench/REPORT.md
	$(CARGO) build --release -q -p sliceguard-scheduler -p sliceguard-kind-harness
	SLICEGUARD_BENCH_JSON=$(CURDIR)/target/bench-placement.jsonl $(CARGO) bench -q -p sliceguard-scheduler --bench placement
	SLICEGUARD_BENCH_MEMORY_JSON=$(CURDIR)/target/bench-memory.jsonl $(CARGO) bench -q -p sliceguard-scheduler --bench memory
	SLICEGUARD_BENCH_SERVICE_JSON=$(CURDIR)/target/bench-service.jsonl $(CARGO) bench -q -p sliceguard-scheduler --bench service
	$(CARGO) run --release -q -p sliceguard-kind-harness --example bench_report -- --rows target/bench-placement.jsonl --memory-rows target/bench-memory.jsonl --service-rows target/bench-service.jsonl --out bench/REPORT.md --e2e-nodes 1000 --e2e-pods $(BENCH_E2E_PODS) --serve-nodes $(BENCH_SERVE_NODES) --serve-pods $(BENCH_SERVE_PODS) --bin-dir $(BENCH_BIN_DIR)

.PHONY: quality
quality: ## Placement quality on the Alibaba trace: regenerate bench/QUALITY.md (QUALITY_DATA, QUALITY_SEEDS, QUALITY_VARIANT_SEEDS, QUALITY_JOBS)
	$(CARGO) run --release -q -p sliceguard-kind-harness -- trace --data $(QUALITY_DATA) --seeds $(QUALITY_SEEDS) --jobs $(QUALITY_JOBS) --variants --variant-seeds $(QUALITY_VARIANT_SEEDS) --quality-report bench/QUALITY.md
