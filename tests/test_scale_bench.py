"""The scale benchmark's code path at CI size: 100k rows, every operation returns what it should."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def test_scale_benchmark_runs_on_100k_rows(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "bench" / "scale.py"), "--rows", "100000", "--sample", "10000",
                             "--chunk", "50000", "--db", str(tmp_path), "--json"],
                            capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    ops = {r["op"]: r for r in json.loads(result.stdout.strip().splitlines()[-1])}
    assert ops["write"]["rows"] == 100_000
    assert ops["slice_lancedb"]["rows"] == ops["slice_duckdb"]["rows"] == ops["slice_pylance"]["rows"] == 1000
    assert ops["slice_lance_scan"]["rows"] == ops["slice_forge_query"]["rows"] == ops["slice_polars"]["rows"] == 1000
    assert ops["groupby_duckdb"]["rows"] == ops["groupby_pylance_sql"]["rows"] > 10
    assert ops["stratified_sample"]["rows"] == 10_000
    assert 0 < ops["count_indexed"]["rows"] < 100_000
