"""Run a fuzzing campaign: every harness under atheris, two at a time, and count executions.

    python -m fuzz.run --seconds 600                # every target, 600 s each
    python -m fuzz.run --runs 300000 image unpack   # a fixed number of executions

Each target runs as ``python -m fuzz.fuzz_<target>`` (libFuzzer via atheris) on the corpus
``fuzz/corpus/<target>`` (seeded by :mod:`fuzz.seeds` when missing), with the target's
``-max_len``, a per-input timeout, crash artifacts in ``fuzz/artifacts/<target>/`` and the
log in ``fuzz/logs/<target>-<time>.log``.  At the end it prints the executions per target
(libFuzzer's ``stat::number_of_executed_units``) and any crash file, and exits 1 if a target
crashed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fuzz import seeds

HERE = Path(__file__).resolve().parent
#: Target -> libFuzzer's -max_len: images a few pages long, extraction smaller (it touches the
#: disk), device trees a page.
MAX_LEN = {"image": 16384, "unpack": 16384, "extract": 8192, "fdt": 4096}
TARGETS = tuple(MAX_LEN)
_EXECUTED = re.compile(rb"stat::number_of_executed_units:\s*(\d+)")
_DONE = re.compile(rb"^Done (\d+) (?:runs )?in", re.MULTILINE)
_PROGRESS = re.compile(rb"^#(\d+)\s", re.MULTILINE)
_CRASH = re.compile(rb"Test unit written to (\S+)")


def executions(log: bytes) -> int:
    """Executions reported by a libFuzzer log (final stats, else the last progress line)."""
    for pattern in (_EXECUTED, _DONE):
        found = pattern.findall(log)
        if found:
            return int(found[-1])
    found = _PROGRESS.findall(log)
    return int(found[-1]) if found else 0


def run_target(target: str, *, seconds: int | None, runs: int | None, timeout: int) -> tuple[int, list[str]]:
    """Fuzz ``target`` once; return its executions and the crash files it wrote."""
    corpus = HERE / "corpus" / target
    if not corpus.is_dir() or not any(corpus.iterdir()):
        seeds.write(HERE / "corpus", (target,))
    artifacts = HERE / "artifacts" / target
    artifacts.mkdir(parents=True, exist_ok=True)
    logs = HERE / "logs"
    logs.mkdir(exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        f"fuzz.fuzz_{target}",
        f"-max_len={MAX_LEN[target]}",
        f"-timeout={timeout}",
        "-rss_limit_mb=3072",
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/",
    ]
    if seconds is not None:
        cmd.append(f"-max_total_time={seconds}")
    if runs is not None:
        cmd.append(f"-atheris_runs={runs + 1}")  # atheris counts the initial corpus pass as one
    cmd.append(str(corpus))
    log_path = logs / f"{target}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    with open(log_path, "wb") as log:
        subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False, cwd=HERE.parent)
    text = log_path.read_bytes()
    crashes = [c.decode() for c in _CRASH.findall(text)]
    return executions(text), crashes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="*", help=f"targets to fuzz (default all: {' '.join(TARGETS)})")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--seconds", type=int, help="seconds per target (default 300)")
    group.add_argument("--runs", type=int, help="executions per target")
    parser.add_argument("--jobs", type=int, default=2, help="targets fuzzed at once (default 2)")
    parser.add_argument("--timeout", type=int, default=20, help="seconds before an input is a hang")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None or args.runs is not None else 300
    targets = args.targets or list(TARGETS)
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets {unknown} (choose from {', '.join(TARGETS)})")
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = dict(
            zip(
                targets,
                pool.map(
                    lambda t: run_target(t, seconds=seconds, runs=args.runs, timeout=args.timeout), targets
                ),
                strict=True,
            )
        )
    total = 0
    for target, (count, crashes) in results.items():
        total += count
        print(f"{target:8} {count:>10} executions" + (f"  CRASH {' '.join(crashes)}" if crashes else ""))
    print(f"{'total':8} {total:>10} executions")
    return 1 if any(crashes for _, crashes in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
