"""Native runner versus Daft's Ray runner on the same synthetic spec; prints wall time and stages.

Each build is a fresh `forge build` process (what a user runs), so the Ray figures include starting
a local Ray. Also checks that both runners wrote the same table.

Usage: python bench/runners.py [--images N] [--cpus C]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import lancedb
import yaml

DEMO = Path(__file__).resolve().parent.parent / "specs" / "demo.yaml"
BUILD = textwrap.dedent("""
    import sys
    if sys.argv[3] == "ray":
        import ray
        ray.init(num_cpus=int(sys.argv[4]), include_dashboard=False)
    from forge.cli import main
    main(["build", sys.argv[1], "--db", sys.argv[2], "--runner", sys.argv[3]])
""")


def build(spec: Path, db: Path, runner: str, cpus: int) -> tuple[float, list[str]]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", BUILD, str(spec), str(db), runner, str(cpus)],
                          capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    lines = done.stdout.splitlines()
    return seconds, lines[lines.index("  throughput") + 1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="CPUs for the local Ray")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}; "
          f"synthetic spec, {args.images} images; local Ray with {args.cpus} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        spec = yaml.safe_load(DEMO.read_text())
        spec["source"]["images"] = args.images
        spec_path = Path(tmp) / "demo.yaml"
        spec_path.write_text(yaml.safe_dump(spec))
        tables = {}
        for runner in ("native", "ray"):
            seconds, stages = build(spec_path, Path(tmp) / runner, runner, args.cpus)
            tables[runner] = lancedb.connect(str(Path(tmp) / runner)).open_table("qa").to_arrow().sort_by("qa_id")
            print(f"{runner:>6}: {seconds:6.1f} s wall (process start to exit)")
            print("\n".join(stages))
        same = tables["native"].equals(tables["ray"])
        print(f"same table from both runners: {same} ({tables['native'].num_rows} rows)")


if __name__ == "__main__":
    main()
