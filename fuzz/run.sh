#!/usr/bin/env bash
# Fuzz one target for a while: fuzz/run.sh <target> <seconds>
#
# Picks the first invocation that builds on this toolchain and says which:
#   1. $FUZZ_CARGO if set (e.g. FUZZ_CARGO="cargo +nightly"), with cargo-fuzz's defaults;
#   2. stable with RUSTC_BOOTSTRAP=1 and AddressSanitizer (cargo-fuzz's default sanitizer);
#   3. stable without a sanitizer (no unstable flags at all).
# The working corpus is fuzz/corpus/<target>/ (git-ignored); the committed seeds in
# fuzz/seeds/<target>/ are read too. Crashes land in fuzz/artifacts/<target>/.
# Exit status: 0 when the run ends without a crash, 1 on a crash, 3 when nothing builds.
set -uo pipefail
cd "$(dirname "$0")/.."

target="${1:?usage: fuzz/run.sh <target> <seconds>}"
seconds="${2:-60}"
corpus="fuzz/corpus/$target"
seeds="fuzz/seeds/$target"
mkdir -p "$corpus"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)" >&2
  exit 3
fi

attempt() { # label, env assignments..., -- cargo words...
  local label="$1"; shift
  local envs=()
  while [[ "$1" != "--" ]]; do envs+=("$1"); shift; done
  shift
  echo "fuzz: trying $label: ${envs[*]} $* fuzz build $target" >&2
  if env "${envs[@]}" "$@" fuzz build $extra "$target" >&2; then
    chosen_label="$label"; chosen_env=("${envs[@]}"); chosen_cmd=("$@"); return 0
  fi
  return 1
}

chosen_label=""
extra=""
if [[ -n "${FUZZ_CARGO:-}" ]]; then
  # shellcheck disable=SC2206
  words=($FUZZ_CARGO)
  attempt "FUZZ_CARGO ($FUZZ_CARGO)" FUZZ=1 -- "${words[@]}" || true
fi
if [[ -z "$chosen_label" ]]; then
  attempt "stable, RUSTC_BOOTSTRAP=1, AddressSanitizer" RUSTC_BOOTSTRAP=1 -- cargo || true
fi
if [[ -z "$chosen_label" ]]; then
  extra="--sanitizer none"
  attempt "stable, no sanitizer" FUZZ=1 -- cargo || true
fi
if [[ -z "$chosen_label" ]]; then
  echo "fuzz: no invocation builds the fuzz targets on this toolchain" >&2
  exit 3
fi

echo "fuzz: running $target for ${seconds}s with: $chosen_label"
log="$(mktemp)"
env "${chosen_env[@]}" "${chosen_cmd[@]}" fuzz run $extra "$target" "$corpus" "$seeds" -- \
  -max_total_time="$seconds" -print_final_stats=1 2>&1 | tee "$log" | grep -E "^(#[0-9]+[[:space:]]+(INITED|DONE)|Done|INFO: Running|==|SUMMARY|thread|stat::number_of_executed_units|stat::average_exec_per_sec)"
# Read the fuzzer's status straight from this pipeline: an `|| true` after it would run when the
# pipeline fails (pipefail) and overwrite PIPESTATUS, reporting a crash as a clean run.
status=${PIPESTATUS[0]}
executed=$(grep -E "^stat::number_of_executed_units" "$log" | awk '{print $2}' | tail -1)
rate=$(grep -E "^stat::average_exec_per_sec" "$log" | awk '{print $2}' | tail -1)
rm -f "$log"
if [[ $status -ne 0 ]]; then
  echo "fuzz: $target FOUND A CRASH (exit $status); see fuzz/artifacts/$target/ and copy the input to fuzz/regressions/$target/ with the fix" >&2
  exit 1
fi
echo "fuzz: $target ok: ${executed:-?} executions in ${seconds}s (${rate:-?}/s) with $chosen_label, corpus $(ls "$corpus" | wc -l) files"
