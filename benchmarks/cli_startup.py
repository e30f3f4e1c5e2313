"""How long does the ``mlmodelscope`` command take to start, beside a bare ``python -c pass``?

The CLI is typed at a prompt, so its start-up is a user-facing latency: issue 17 asks for ``mlmodelscope --help``
<= 0.3 s and ``mlmodelscope models list`` <= 1 s. Start-up is dominated by imports, and the machine is shared and
noisy, so each command runs ``--runs`` times *interleaved* with the baseline (one of each per round, in turn) and
the medians are compared: the ratio to ``python -c pass`` is the figure that survives a busy machine, the absolute
median the one the target is written in.

Usage::

    python benchmarks/cli_startup.py [--runs N] [--importtime [TOP]]

``--importtime`` also runs each command once under ``python -X importtime`` and prints its slowest imports
(cumulative time, the modules to make lazy first).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).parent / "mlmodelscope"
TARGETS_S = {"--help": 0.3, "models list": 1.0}


@dataclass(frozen=True)
class Case:
    """One command line to time: its label, its argv and its target (seconds; None for the baseline)."""

    label: str
    argv: list[str]
    target_s: float | None


def cases() -> list[Case]:
    """The baseline and the two commands of issue 17, each as a user types it (the installed entry point)."""
    entry = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "mlmodelscope.cli.main"]
    return [
        Case("python -c pass", [sys.executable, "-c", "pass"], None),
        *(Case(f"mlmodelscope {args}", [*entry, *args.split()], target) for args, target in TARGETS_S.items()),
    ]


def environment(data_dir: Path) -> dict[str, str]:
    """The caller's environment with a throwaway data directory, so nothing is read from or left in $HOME."""
    env = dict(os.environ)
    env["MLMODELSCOPE_DATA_DIR"] = str(data_dir)
    env.setdefault("MLMODELSCOPE_CACHE_DIR", str(data_dir / "cache"))
    return env


def time_once(case: Case, env: dict[str, str]) -> float:
    """Wall seconds of one run of ``case``; a failing command is an error, not a fast sample."""
    start = time.perf_counter()
    done = subprocess.run(case.argv, env=env, cwd=REPO, capture_output=True, check=False)
    elapsed_s = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(
            f"'{case.label}' exited {done.returncode}; it must succeed to be timed. stderr:\n{done.stderr.decode()}"
        )
    return elapsed_s


def import_offenders(case: Case, env: dict[str, str], top: int) -> list[tuple[float, str]]:
    """The ``top`` imports of ``case`` with the largest cumulative time (seconds, module), from ``-X importtime``."""
    argv = [sys.executable, "-X", "importtime", *case.argv[1:]] if case.argv[0] == sys.executable else None
    if argv is None:
        argv = [sys.executable, "-X", "importtime", "-m", "mlmodelscope.cli.main", *case.argv[1:]]
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    rows: list[tuple[float, str]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative_us, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        rows.append((int(cumulative_us) / 1e6, name))
    return sorted(rows, reverse=True)[:top]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each command (default 15)")
    parser.add_argument(
        "--importtime", type=int, nargs="?", const=15, default=0, metavar="TOP", help="print the TOP slowest imports"
    )
    options = parser.parse_args()
    if options.runs < 1:
        parser.error("--runs must be at least 1")

    with tempfile.TemporaryDirectory(prefix="mlmodelscope-cli-startup-") as scratch:
        env = environment(Path(scratch))
        all_cases = cases()
        for case in all_cases:  # warm the page cache and the bytecode caches; not timed
            time_once(case, env)
        samples_s: dict[str, list[float]] = {case.label: [] for case in all_cases}
        for _ in range(options.runs):
            for case in all_cases:
                samples_s[case.label].append(time_once(case, env))

        baseline_s = statistics.median(samples_s[all_cases[0].label])
        print(f"{options.runs} runs each, interleaved; medians (seconds) and ratio to 'python -c pass'")
        print(f"{'command':<28} {'median_s':>9} {'min_s':>7} {'ratio':>7} {'target_s':>9}  verdict")
        met_all = True
        for case in all_cases:
            median_s = statistics.median(samples_s[case.label])
            target = "" if case.target_s is None else f"{case.target_s:.2f}"
            verdict = ""
            if case.target_s is not None:
                met = median_s <= case.target_s
                met_all = met_all and met
                verdict = "met" if met else "MISSED"
            print(
                f"{case.label:<28} {median_s:>9.3f} {min(samples_s[case.label]):>7.3f} "
                f"{median_s / baseline_s:>7.2f} {target:>9}  {verdict}"
            )

        if options.importtime:
            for case in all_cases[1:]:
                print(f"\nslowest imports of '{case.label}' (cumulative seconds, one run under -X importtime):")
                for cumulative_s, name in import_offenders(case, env, options.importtime):
                    print(f"  {cumulative_s:7.3f}  {name}")
    return 0 if met_all else 1


if __name__ == "__main__":
    raise SystemExit(main())
