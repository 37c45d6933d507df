#!/usr/bin/env python3
"""Writes mutants.md from a cargo-mutants run: per file, mutants generated, caught, missed, unviable
and timed out, the caught share of viable mutants against the 90 % target, and each survivor with
the note that explains it (ci/mutants-survivors.md: the test that now kills it, or why it is
equivalent).

usage: ci/mutants-report.py [--current LIST] RUN [RUN ...] [--survivor-notes FILE] > mutants.md
       ci/mutants-report.py --export MUTANTS_OUT_DIR > ci/mutants-outcomes/<time>.tsv
       ci/mutants-report.py --seed-iterate MUTANTS_OUT_DIR RUN [RUN ...]

A RUN is a cargo-mutants output directory (its outcomes.json) or a committed outcome file
(ci/mutants-outcomes/*.tsv, written by --export: a `#` header line naming the run, then one
`outcome<TAB>mutant` line per mutant), so the accumulated run survives `cargo clean` and moves
between machines. --seed-iterate writes the previously_caught.txt that `cargo mutants --iterate`
reads, from the runs' caught and unviable mutants, so a later session resumes where the last stopped.

With several runs, each mutant's outcome is the one of the last run that tested it. Runs are
ordered by the start time each records (the order given breaks ties), so a rerun started while a
long run went on, and exported before it, still counts as the later. The runs can be a whole-core
run interrupted and resumed with `--iterate`, and reruns of the files whose tests were
strengthened. With `--current FILE` (`cargo mutants --list` of the tree now), mutants that no
longer exist (their line moved) are left out, and mutants of the tree that no run tested are
counted as untested: a report with untested mutants is not a complete run.
"""
import argparse
import collections
import json
import os
import sys

TARGET = 90.0


def read_run(path):
    """One run as outcomes.json holds it, from a mutants.out directory or an exported .tsv file."""
    if os.path.isdir(path):
        with open(os.path.join(path, "outcomes.json"), encoding="utf-8") as f:
            return json.load(f)
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if not lines or not lines[0].startswith("# cargo-mutants "):
        raise ValueError("not an exported run: the first line must be '# cargo-mutants ...'")
    header = lines[0].split()
    run = {
        "cargo_mutants_version": header[2] if len(header) > 2 else "?",
        "start_time": header[3] if len(header) > 3 else "?",
        "end_time": header[4] if len(header) > 4 else "?",
        "outcomes": [],
    }
    for number, line in enumerate(lines[1:], start=2):
        summary, _, name = line.partition("\t")
        if not name:
            raise ValueError(f"line {number}: expected 'outcome<TAB>mutant', found {line!r}")
        scenario = "Baseline" if name == "Baseline" else {
            "Mutant": {"name": name, "file": name.split(":", 1)[0]}
        }
        run["outcomes"].append({"scenario": scenario, "summary": summary})
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "out",
        nargs="+",
        help="runs, oldest first: mutants.out directories or committed .tsv outcome files",
    )
    parser.add_argument("--export", action="store_true", help="print the one run given as TSV")
    parser.add_argument(
        "--seed-iterate",
        metavar="DIR",
        help="write DIR/previously_caught.txt for `cargo mutants --iterate` from the runs",
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
        if "*" in out and not os.path.exists(out):
            continue  # an unmatched shell glob: no committed runs yet
        try:
            runs.append(read_run(out))
        except (OSError, ValueError) as e:
            print(f"mutants-report: cannot read {out}: {e}", file=sys.stderr)
            return 2
    # Oldest first by the run's own start time (ISO 8601 sorts as text); `sorted` is stable.
    runs = sorted(runs, key=lambda run: run.get("start_time") or "")
    if args.export:
        if len(runs) != 1:
            print("mutants-report: --export takes one run", file=sys.stderr)
            return 2
        run = runs[0]
        print(
            f"# cargo-mutants {run.get('cargo_mutants_version', '?')} "
            f"{run.get('start_time', '?')} {run.get('end_time', '?')}"
        )
        for outcome in run.get("outcomes", []):
            scenario = outcome.get("scenario")
            if scenario == "Baseline":
                print(f"{outcome.get('summary')}\tBaseline")
            else:
                print(f"{outcome.get('summary')}\t{scenario['Mutant']['name']}")
        return 0
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
    if args.seed_iterate:
        os.makedirs(args.seed_iterate, exist_ok=True)
        done = sorted(
            name for name, (_, summary, _) in latest.items()
            if summary in ("CaughtMutant", "Unviable")
        )
        with open(os.path.join(args.seed_iterate, "previously_caught.txt"), "w", encoding="utf-8") as f:
            f.writelines(f"{name}\n" for name in done)
        print(f"mutants-report: {len(done)} caught or unviable mutants seeded", file=sys.stderr)
        return 0
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
