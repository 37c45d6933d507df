#!/usr/bin/env python3
"""Writes mutants.md from a cargo-mutants run: per file, mutants generated, caught, missed, unviable
and timed out, the caught share of viable mutants against the 90 % target, and each survivor with
the note that explains it (ci/mutants-survivors.md: the test that now kills it, or why it is
equivalent).

usage: ci/mutants-report.py MUTANTS_OUT_DIR [LATER_OUT_DIR ...] [--survivor-notes FILE] > mutants.md

With several runs (oldest first), each mutant's outcome is the one of the last run that tested
it: a whole-core run interrupted and resumed with `--iterate`, or followed by reruns of the files
whose tests were strengthened, reports every mutant as it was last tested. With `--current FILE`
(`cargo mutants --list` of the tree now), mutants that no longer exist (their line moved) are left
out, and mutants of the tree that no run tested are counted as untested: a report with untested
mutants is not a complete run.
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
    parser.add_argument(
        "--current",
        help="`cargo mutants --list` of the tree now: the mutants the report must account for",
    )
    args = parser.parse_args()
    current = None
    if args.current:
        with open(args.current, encoding="utf-8") as f:
            current = [line.strip() for line in f if line.strip()]
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
    # Each mutant's outcome from the last run that tested it.
    latest = {}
    baselines = []
    for number, run in enumerate(runs, start=1):
        for outcome in run.get("outcomes", []):
            scenario = outcome.get("scenario")
            if scenario == "Baseline":
                baselines.append(outcome.get("summary"))
                continue
            mutant = scenario.get("Mutant", {}) if isinstance(scenario, dict) else {}
            name = mutant.get("name", "?")
            latest[name] = (mutant.get("file", "?"), outcome.get("summary", "?"), number)
    untested = []
    if current is not None:
        wanted = set(current)
        latest = {name: v for name, v in latest.items() if name in wanted}
        untested = [name for name in current if name not in latest]
    per_file = collections.defaultdict(collections.Counter)
    runs_of_file = collections.defaultdict(set)
    survivors = collections.defaultdict(list)
    for name, (file, summary, number) in sorted(latest.items()):
        per_file[file][summary] += 1
        runs_of_file[file].add(number)
        if summary in ("MissedMutant", "Timeout"):
            survivors[file].append((name, summary))
    for name in untested:
        per_file[name.split(":", 1)[0]]["Untested"] += 1
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
            "Each mutant counts with its outcome in the last run that tested it (the `runs` column "
            "names the runs a file's outcomes come from): later runs resumed an interrupted run "
            "(`--iterate`) or tested again the mutants of files whose tests were strengthened."
        )
    if current is not None:
        print()
        print(
            f"Mutants in the tree now (`cargo mutants --list`): {len(current)}; tested: "
            f"{len(current) - len(untested)}; untested: {len(untested)}."
        )
    print()
    print(
        "| file | runs | mutants | caught | missed | timeout | unviable | untested | caught of viable | target |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    totals = collections.Counter()
    below = []
    for file in sorted(per_file):
        c = per_file[file]
        caught, missed, timeout, unviable, never = (
            c["CaughtMutant"],
            c["MissedMutant"],
            c["Timeout"],
            c["Unviable"],
            c["Untested"],
        )
        total = sum(c.values())
        viable = caught + missed + timeout
        share = 100.0 * caught / viable if viable else 100.0
        met = share >= TARGET and never == 0
        if not met:
            below.append(file)
        totals.update(c)
        print(
            f"| `{file}` | {', '.join(str(n) for n in sorted(runs_of_file[file])) or '—'} | {total} | "
            f"{caught} | {missed} | {timeout} | {unviable} | {never} | "
            f"{f'{share:.1f} %' if viable else '—'} | {'met' if met else ('untested' if never else 'missed')} |"
        )
    viable = totals["CaughtMutant"] + totals["MissedMutant"] + totals["Timeout"]
    share = 100.0 * totals["CaughtMutant"] / viable if viable else 100.0
    print(
        f"| **all** | | {sum(totals.values())} | {totals['CaughtMutant']} | {totals['MissedMutant']} | "
        f"{totals['Timeout']} | {totals['Unviable']} | {totals['Untested']} | {share:.1f} % | |"
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
