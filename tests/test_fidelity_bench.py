"""The fidelity benchmark at CI size: the whole-box estimator is wrong under occlusion, the
occlusion-aware box and masks are not (the full size runs from bench/)."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_fidelity_benchmark_shows_box_depth_wrong_and_occlusion_aware_depth_right():
    result = subprocess.run([sys.executable, str(REPO / "bench" / "fidelity.py"), "--scenes", "80"],
                            capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[3:6]]
            for line in result.stdout.splitlines() if line.startswith("| ") and not line.startswith("| family")}
    assert {"depth_order", "left_right", "above_below", "depth_extreme", "counting", "perspective_side"} <= set(rows)
    box, visible, mask = rows["depth_order"]
    assert float(box.split("%")[0]) > 0
    assert visible.startswith("0.0% (") and mask.startswith("0.0% (")
    assert "not calibrated: distance" in result.stdout
