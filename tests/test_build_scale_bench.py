"""The build-scale benchmark's code path at CI size: forge, the per-row loop and the Polars query
make the same rows from the same fabricated records (the full sizes run from bench/)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def test_build_scale_benchmark_runs_and_its_three_implementations_agree(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "bench" / "build_scale.py"), "--images", "4000", "--chunk-size",
                             "1500", "--data", str(tmp_path), "--json"], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    [row] = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["same_rows"] is True
    assert row["forge"]["rows"] == row["per_row"]["rows"] == row["polars"]["rows"] > 4000
    assert row["every_family"]["rows"] > 10 * 4000  # every family together: over ten QA rows per image
    assert set(row["forge"]["stages"]) == {"setup", "count", "write", "commit", "index"}
    assert all(row[name]["peak_gib"] < 4 for name in ("forge", "every_family"))
