#!/usr/bin/env bash
# The busy-cluster conformance pass (`make conformance-busy`): a simulated cluster that already runs
# other work (`kind-harness sim serve --busy`: fractional and whole-GPU pods on some GPUs of every
# node, a cordoned device, a node with a second GPU model), `sliceguard serve` as its own process,
# the seed's three manifests applied with kubectl, then the conformance suite through the kubeconfig
# driver, exactly as a user's cluster is reached. Fails when a scenario fails, when any of the seed's
# three scenarios is skipped, or when the skipped set differs from EXPECTED_SKIPS (space-separated,
# empty by default).
# Usage: ci/conformance-busy.sh BIN_DIR EVIDENCE_DIR
set -euo pipefail
bin="${1:?usage: ci/conformance-busy.sh BIN_DIR EVIDENCE_DIR}"
evidence="${2:?usage: ci/conformance-busy.sh BIN_DIR EVIDENCE_DIR}"
expected_skips="${EXPECTED_SKIPS:-}"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api="127.0.0.1:$(port)"; webhook="127.0.0.1:$(port)"; extender="127.0.0.1:$(port)"; metrics="127.0.0.1:$(port)"
kubeconfig="$work/kubeconfig"

"$bin/kind-harness" sim serve --busy --addr "$api" --kubeconfig-out "$kubeconfig" \
  --scheduler-kubeconfig-out "$work/sliceguard.kubeconfig" --tls-out "$work/tls" \
  --webhook-url "https://$webhook/webhook" --extender-url "http://$extender" 2>"$work/sim-serve.log" &
pids+=($!)
for _ in $(seq 600); do [[ -s "$kubeconfig" && -s "$work/sliceguard.kubeconfig" ]] && break; sleep 0.1; done
[[ -s "$kubeconfig" ]] || { echo "sim serve did not start:" >&2; cat "$work/sim-serve.log" >&2; exit 2; }
grep -h "busy cluster" "$work/sim-serve.log" || true

"$bin/sliceguard" serve --kubeconfig "$work/sliceguard.kubeconfig" --tls-cert "$work/tls/tls.crt" --tls-key "$work/tls/tls.key" \
  --webhook-bind-address "$webhook" --http_bind "$extender" --metrics-bind-address "$metrics" 2>"$work/sliceguard.log" &
pids+=($!)
ready=""
for _ in $(seq 600); do
  if curl -fsS "http://$extender/readyz" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.1
done
[[ -n "$ready" ]] || { echo "sliceguard serve was not ready:" >&2; tail -40 "$work/sliceguard.log" >&2; exit 2; }

k() { kubectl --kubeconfig "$kubeconfig" --cache-dir "$work/kubectl-cache" "$@"; }
for f in examples/seed/01-fractional-pod.yaml examples/seed/02-overrequest-pending.yaml examples/seed/03-placement-spread.yaml; do
  k apply --validate=false -f "$f"
done
k wait --for=jsonpath='{.status.phase}'=Running pod/hami-fractional --timeout=60s
for _ in $(seq 120); do
  [[ "$(k get deployment hami-placement -o 'jsonpath={.status.readyReplicas}')" == 3 ]] && break
  sleep 0.5
done
[[ "$(k get deployment hami-placement -o 'jsonpath={.status.readyReplicas}')" == 3 ]] || { echo "the seed's replicas did not run" >&2; exit 1; }

set +e
"$bin/kind-harness" conformance --cluster kubeconfig --kubeconfig "$kubeconfig" --evidence "$evidence" \
  --timeout 30 --settle-ms 1000 --poll-ms 100 --deadline 280
status=$?
set -e
if (( status != 0 )); then
  echo "FAILED: conformance on the busy cluster exited $status (evidence: $evidence)" >&2
  tail -40 "$work/sliceguard.log" >&2
  exit 1
fi
skipped="$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(" ".join(s["name"] for s in r["scenarios"] if s.get("skipped")))' "$evidence/report.json")"
for seed in fractional pending placement; do
  if [[ " $skipped " == *" $seed "* ]]; then echo "FAILED: the seed's $seed scenario was skipped on the busy cluster" >&2; exit 1; fi
done
if [[ "$skipped" != "$expected_skips" ]]; then
  echo "FAILED: skipped on the busy cluster: [$skipped], expected [$expected_skips]" >&2
  exit 1
fi
echo "busy-cluster conformance: passed; skipped: [${skipped}] as expected; evidence: $evidence"
