"""`forge sample` at scale: a 1M-row mixture stratified by answer, from tables built by bench/build_scale.py.

For each database (the `every_family` tables of the 1M- and 3M-image builds), each in a process of its own:
- choose: `forge.sample.choose` (both scans, quotas, the exact trim with dedup), wall and CPU time, peak RSS;
- read: the chosen rows read whole for export (not part of choosing, reported apart), time and peak RSS;
- dry run: `forge sample --n N --stratify answer --dry-run` as a user runs it, time and peak RSS;
- bare scan: Lance reading family, answer and qa_id of every row and nothing else, as a yardstick of what the
  machine gives at that moment (the load average is printed too: another process may share the cores).
With --old REF, also the sampler of that git revision (the first one held every candidate's keys in memory).

Usage: python bench/sample_scale.py [--db DB ...] [--n 1000000] [--stratify answer] [--old main] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DBS = [REPO / "bench_data/b1m/run_1000000/every_family.lancedb",
               REPO / "bench_data/b3m/run_3000000/every_family.lancedb"]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def worker(task: str, db: Path, n: int, stratify: str) -> dict:
    """One measurement, in this process (started fresh by `measure`); imports are not timed (the dry run,
    timed as a user runs it, includes them)."""
    from forge import sample

    started, cpu = time.perf_counter(), _cpu()
    if task == "scan":
        import lance

        rows = sum(b.num_rows for b in lance.dataset(str(db / "qa.lance")).scanner(
            columns=["family", stratify, "qa_id"], batch_size=1 << 16).to_batches())
        return {"rows": rows, "s": time.perf_counter() - started, "cpu_s": _cpu() - cpu, "peak_gib": _peak_gib()}
    mix = sample.Mix(n=n, stratify=[stratify])
    if task == "old":  # the first sampler had no `choose`
        table, _ = sample.draw(db, mix, seed=0)
        return {"rows": table.num_rows, "s": time.perf_counter() - started, "cpu_s": _cpu() - cpu,
                "peak_gib": _peak_gib()}
    choice = sample.choose(db, mix, seed=0)
    out = {"rows": choice.chosen.height, "s": time.perf_counter() - started, "cpu_s": _cpu() - cpu,
           "peak_gib": _peak_gib(), "cells": choice.report.cells.height}
    started, cpu = time.perf_counter(), _cpu()
    table = choice.read()
    out.update(read_s=time.perf_counter() - started, read_cpu_s=_cpu() - cpu, read_rows=table.num_rows,
               read_peak_gib=_peak_gib())
    return out


def measure(task: str, db: Path, n: int, stratify: str, pythonpath: str | None = None) -> dict:
    """`worker` in a child process; from a folder outside the repository when another revision's forge is on
    PYTHONPATH (the working directory would come first on sys.path)."""
    env = {**os.environ, **({"PYTHONPATH": pythonpath} if pythonpath else {})}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", task, "--db", str(db), "--n", str(n),
               "--stratify", stratify]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def dry_run(db: Path, n: int, stratify: str) -> dict:
    """`forge sample --dry-run` as a user runs it; peak RSS of the child measured by this process's parent view."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             f"subprocess.run([sys.executable, '-m', 'forge.cli', 'sample', '--db', {str(db)!r}, '--n', '{n}', "
             f"'--stratify', {stratify!r}, '--dry-run'], check=True, capture_output=True); "
             "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1]}
    seconds, peak = done.stdout.split()
    return {"s": float(seconds), "peak_gib": int(peak) / 2**20}


def old_revision(ref: str) -> str:
    """A folder holding `forge/` as it was at `ref`."""
    folder = Path(tempfile.mkdtemp(prefix="forge-old-"))
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "forge"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, nargs="+", default=DEFAULT_DBS)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--stratify", default="answer")
    parser.add_argument("--old", metavar="REF", help="also time the sampler of this git revision (e.g. main)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.db[0], args.n, args.stratify)))
        return
    old = old_revision(args.old) if args.old else None
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
          f"Python {platform.python_version()}; forge sample --n {args.n:,} --stratify {args.stratify}", flush=True)
    results = []
    for db in (path.resolve() for path in args.db):
        result = {"db": str(db), "load_before": os.getloadavg()[0], "scan": measure("scan", db, args.n, args.stratify),
                  "choose": measure("choose", db, args.n, args.stratify), "dry_run": dry_run(db, args.n, args.stratify)}
        if old:
            result["old"] = measure("old", db, args.n, args.stratify, pythonpath=old)
        result["load_after"] = os.getloadavg()[0]
        results.append(result)
        scan, choice, dry = result["scan"], result["choose"], result["dry_run"]
        print(f"{db}: {scan.get('rows', 0):,} rows (load average {result['load_before']:.1f} before, "
              f"{result['load_after']:.1f} after)")
        print(f"  bare scan of family, {args.stratify}, qa_id".ljust(39) + f"{scan.get('s', 0):6.1f} s  cpu {scan.get('cpu_s', 0):5.1f} s  "
              f"peak {scan.get('peak_gib', 0):.2f} GiB")
        if "error" in choice:
            print(f"  choose failed: {choice['error']}")
        else:
            print(f"  choose {choice['rows']:,} rows ({choice['cells']:,} cells)".ljust(39) + f"{choice['s']:6.1f} s  cpu {choice['cpu_s']:5.1f} s  "
                  f"peak {choice['peak_gib']:.2f} GiB")
            print(f"  read them for export".ljust(39) + f"{choice['read_s']:6.1f} s  cpu {choice['read_cpu_s']:5.1f} s  "
                  f"peak {choice['read_peak_gib']:.2f} GiB")
        print("  --dry-run (CLI, start-up included)".ljust(39) + (f"{dry['s']:6.1f} s  peak {dry['peak_gib']:.2f} GiB"
                                                            if "error" not in dry else f"failed: {dry['error']}"))
        if old:
            before = result["old"]
            print(f"  {args.old}'s sampler, choose and read".ljust(39) + (
                f"{before['s']:6.1f} s  cpu {before['cpu_s']:5.1f} s  peak {before['peak_gib']:.2f} GiB"
                if "error" not in before else f"failed: {before['error']}"), flush=True)
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
