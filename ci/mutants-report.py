#!/usr/bin/env python3
"""Writes mutants.md from a cargo-mutants run: per file, mutants generated, caught, missed, unviable
and timed out, the caught share of viable mutants against the 90 % target, and each survivor with
the note that explains it (ci/mutants-survivors.md: the test that now kills it, or why it is
equivalent).

usage: ci/mutants-report.py MUTANTS_OUT_DIR [--survivor-notes FILE] > mutants.md
"""
import argparse
import collections
import json
import os
import sys

TARGET = 90.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the mutants.out directory of a cargo-mutants run")
    parser.add_argument(
        "--survivor-notes",
        default=os.path.join(os.path.dirname(__file__), "mutants-survivors.md"),
        help="lines '- `<mutant name>`: <note>' explaining survivors",
    )
    args = parser.parse_args()
    path = os.path.join(args.out, "outcomes.json")
    try:
        with open(path, encoding="utf-8") as f:
            run = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        print(f"mutants-report: cannot read {path}: {e}", file=sys.stderr)
        return 2
    notes = {}
    if os.path.exists(args.survivor_notes):
        with open(args.survivor_notes, encoding="utf-8") as f:
            for line in f:
                if line.startswith("- `") and "`: " in line:
                    name, note = line[3:].split("`: ", 1)
                    notes[name] = note.strip()
    per_file = collections.defaultdict(collections.Counter)
    survivors = collections.defaultdict(list)
    baseline = None
    for outcome in run.get("outcomes", []):
        scenario = outcome.get("scenario")
        if scenario == "Baseline":
            baseline = outcome.get("summary")
            continue
        mutant = scenario.get("Mutant", {}) if isinstance(scenario, dict) else {}
        file = mutant.get("file", "?")
        summary = outcome.get("summary", "?")
        per_file[file][summary] += 1
        if summary in ("MissedMutant", "Timeout"):
            survivors[file].append((mutant.get("name", "?"), summary))
    print("# Mutation testing of the core")
    print()
    print(
        f"cargo-mutants {run.get('cargo_mutants_version', '?')}, {run.get('start_time', '?')} to "
        f"{run.get('end_time', '?')}; baseline {baseline}. Regenerate with `make mutants` "
        "(configuration: `.cargo/mutants.toml`; each mutant is judged by the tests of "
        "`sliceguard-core` and `sliceguard-invariants`). Target: at least "
        f"{TARGET:.0f} % of viable mutants caught in every file."
    )
    print()
    print("| file | mutants | caught | missed | timeout | unviable | caught of viable | target |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    totals = collections.Counter()
    below = []
    for file in sorted(per_file):
        c = per_file[file]
        caught, missed, timeout, unviable = (
            c["CaughtMutant"],
            c["MissedMutant"],
            c["Timeout"],
            c["Unviable"],
        )
        total = sum(c.values())
        viable = caught + missed + timeout
        share = 100.0 * caught / viable if viable else 100.0
        met = share >= TARGET
        if not met:
            below.append(file)
        totals.update(c)
        print(
            f"| `{file}` | {total} | {caught} | {missed} | {timeout} | {unviable} | "
            f"{share:.1f} % | {'met' if met else 'missed'} |"
        )
    viable = totals["CaughtMutant"] + totals["MissedMutant"] + totals["Timeout"]
    share = 100.0 * totals["CaughtMutant"] / viable if viable else 100.0
    print(
        f"| **all** | {sum(totals.values())} | {totals['CaughtMutant']} | {totals['MissedMutant']} | "
        f"{totals['Timeout']} | {totals['Unviable']} | {share:.1f} % | |"
    )
    print()
    print("## Survivors")
    print()
    if not any(survivors.values()):
        print("None.")
    for file in sorted(survivors):
        print(f"### `{file}`")
        print()
        for name, summary in survivors[file]:
            note = notes.get(name, "**unexplained**")
            kind = "timed out" if summary == "Timeout" else "missed"
            print(f"- `{name}` ({kind}): {note}")
        print()
    if below:
        print(f"Files below the target: {', '.join(below)}.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
