#!/usr/bin/env python3
"""Writes mutants.md from a cargo-mutants run: per file, mutants generated, caught, missed, unviable
and timed out, the caught share of viable mutants against the 90 % target, and each survivor with
the note that explains it (ci/mutants-survivors.md: the test that now kills it, or why it is
equivalent).

usage: ci/mutants-report.py MUTANTS_OUT_DIR [LATER_OUT_DIR ...] [--survivor-notes FILE] > mutants.md

With several runs, a file's numbers come from the last run that mutated it: a whole-core run
followed by reruns of the files whose tests were strengthened (`make mutants MUTANTS_ARGS="-f
FILE ..."`) reports each file as its last run found it, and the header names every run.
"""
import argparse
import collections
import json
import os
import sys

TARGET = 90.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "out", nargs="+", help="mutants.out directories of cargo-mutants runs, oldest first"
    )
    parser.add_argument(
        "--survivor-notes",
        default=os.path.join(os.path.dirname(__file__), "mutants-survivors.md"),
        help="lines '- `<mutant name>`: <note>' explaining survivors",
    )
    args = parser.parse_args()
    runs = []
    for out in args.out:
        path = os.path.join(out, "outcomes.json")
        try:
            with open(path, encoding="utf-8") as f:
                runs.append(json.load(f))
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
    # The outcomes of each file from the last run that mutated it.
    by_file = {}
    run_of_file = {}
    baselines = []
    for number, run in enumerate(runs, start=1):
        files = collections.defaultdict(list)
        for outcome in run.get("outcomes", []):
            scenario = outcome.get("scenario")
            if scenario == "Baseline":
                baselines.append(outcome.get("summary"))
                continue
            mutant = scenario.get("Mutant", {}) if isinstance(scenario, dict) else {}
            files[mutant.get("file", "?")].append((mutant, outcome.get("summary", "?")))
        for file, outcomes in files.items():
            by_file[file] = outcomes
            run_of_file[file] = number
    per_file = collections.defaultdict(collections.Counter)
    survivors = collections.defaultdict(list)
    for file, outcomes in by_file.items():
        for mutant, summary in outcomes:
            per_file[file][summary] += 1
            if summary in ("MissedMutant", "Timeout"):
                survivors[file].append((mutant.get("name", "?"), summary))
    print("# Mutation testing of the core")
    print()
    described = "; ".join(
        f"run {n}: cargo-mutants {run.get('cargo_mutants_version', '?')}, "
        f"{run.get('start_time', '?')} to {run.get('end_time', '?')}, "
        f"{sum(1 for o in run.get('outcomes', []) if o.get('scenario') != 'Baseline')} mutants"
        for n, run in enumerate(runs, start=1)
    )
    print(
        f"{described}; baselines {', '.join(str(b) for b in baselines)}. Regenerate with `make mutants` "
        "(configuration: `.cargo/mutants.toml`; each mutant is judged by the tests of "
        "`sliceguard-core` and `sliceguard-invariants`). Target: at least "
        f"{TARGET:.0f} % of viable mutants caught in every file."
    )
    if len(runs) > 1:
        print()
        print(
            "Each file's row comes from the last run that mutated it (the `run` column): run 1 "
            "mutated the whole core; later runs mutated again the files whose tests were "
            "strengthened after it, with the source under mutation unchanged unless the note says so."
        )
    print()
    print("| file | run | mutants | caught | missed | timeout | unviable | caught of viable | target |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
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
            f"| `{file}` | {run_of_file[file]} | {total} | {caught} | {missed} | {timeout} | {unviable} | "
            f"{share:.1f} % | {'met' if met else 'missed'} |"
        )
    viable = totals["CaughtMutant"] + totals["MissedMutant"] + totals["Timeout"]
    share = 100.0 * totals["CaughtMutant"] / viable if viable else 100.0
    print(
        f"| **all** | | {sum(totals.values())} | {totals['CaughtMutant']} | {totals['MissedMutant']} | "
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
