"""Answer, option-position and template balance: seeded rejection caps every cell at max_ratio x the
runner-up, exactly and whatever the chunking, in two passes that never hold the rows."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import polars as pl
import pytest
import yaml

from conftest import REPO, demo_dict, read_table, write_spec
from forge.build import run_build
from forge.judge import balance
from forge.spec.load import load_spec


def _balanced(cells: list[str], chunks: int = 1, seed: int = 3, ratio: float = 1.1) -> tuple[set[int], balance.Limits]:
    """Row ids kept by the two-pass balance of one family's rows split into `chunks` chunks."""
    frame = pl.DataFrame({"key": np.arange(len(cells), dtype=np.uint64), "i": np.arange(len(cells)),
                          "pick": np.zeros(len(cells), dtype=np.int64), "cell": cells})
    frame = balance.add_order(frame, [pl.col("i")], "f", seed).with_columns(
        qa_id=pl.col("i").cast(pl.String), family=pl.lit("f"))
    parts = [frame[int(p[0]):int(p[-1]) + 1] for p in np.array_split(np.arange(frame.height), chunks) if p.size]
    histograms: dict[str, np.ndarray] = {}
    for part in parts:  # pass 1: counts only
        for row in balance.histogram(part).iter_rows(named=True):
            histograms.setdefault(row["cell"], np.zeros(balance.BUCKETS, dtype=np.int64))[row["bucket"]] += row["rows"]
    limits = balance.limits({"f": histograms}, {"f": balance.Mode("position", ratio)})
    kept, edges = set(), []
    for part in parts:  # pass 2: keep below the limits, set the boundary aside
        sure, edge = balance.split_kept(part, "f", limits)
        kept |= set(sure["i"].to_list())
        edges.append(edge)
    kept |= set(balance.resolve_boundary(pl.concat(edges), limits)["i"].to_list())
    return kept, limits


def test_surplus_rows_are_rejected_down_to_the_cap():
    cells = ["x"] * 80 + ["y"] * 20 + ["z"] * 5
    kept, limits = _balanced(cells)
    assert Counter(cells[i] for i in kept) == {"x": 22, "y": 20, "z": 5}
    assert limits.dropped("f") == 58 and limits.caps == {"f": 22}


def test_an_over_full_cell_keeps_exactly_its_cap_across_a_shared_bucket():
    # 300,000 rows in 65,536 buckets: the cap falls inside a bucket holding several rows
    cells = ["yes"] * 300_000 + ["no"] * 100_000
    kept, limits = _balanced(cells, chunks=9)
    counts = Counter(cells[i] for i in kept)
    assert counts == {"yes": 110_000, "no": 100_000}
    [limit] = limits.cells["f"].values()
    assert limit.take > 0  # the boundary bucket was split, not dropped whole


def test_the_kept_rows_do_not_depend_on_the_chunking():
    cells = list(np.random.default_rng(1).choice(["a", "b", "c"], 5000, p=[0.6, 0.3, 0.1]))
    one, _ = _balanced(cells, chunks=1)
    assert _balanced(cells, chunks=13)[0] == one == _balanced(cells, chunks=500)[0]


def test_balance_is_seeded():
    cells = ["x"] * 50 + ["y"] * 10
    first, again, other = (_balanced(cells, seed=s, ratio=1.0)[0] for s in (1, 1, 2))
    assert first == again and first != other and len(first) == 20


def test_a_family_with_one_answer_cell_is_dropped_and_reported(tmp_path):
    spec = demo_dict(images=40)
    spec["families"] = [dict(spec["families"][1], name="always_yes",
                             relation={"holds": "a_depth > 0", "margin": "1.0"}, min_margin=0.5)]
    report = run_build(load_spec(write_spec(tmp_path, spec)), tmp_path / "db", echo=lambda _: None)
    counts = report.funnel["always_yes"]
    assert counts["kept"] == 0 and counts["balance"] > 100
    [warning] = report.warnings
    assert warning.startswith(f"family always_yes: all {counts['balance']} kept answers fall in one answer cell ('0')")
    assert "warning: family always_yes" in "\n".join(report.lines())
    assert read_table(tmp_path / "db").num_rows == 0


@pytest.fixture(scope="module")
def family_rows(tmp_path_factory):
    folder = tmp_path_factory.mktemp("balance")
    rows = {}
    for name in ("depth_order", "layout", "depth_extreme", "counting"):
        spec = yaml.safe_load((REPO / "specs" / "families" / f"{name}.yaml").read_text())
        run_build(load_spec(write_spec(folder, spec, name=f"{name}.yaml")), folder / "db", echo=lambda _: None)
    for row in read_table(folder / "db").to_pylist():
        rows.setdefault(row["family"], []).append(row)
    return rows


def _cells_within_ratio(cells: Counter, ratio: float) -> None:
    largest, runner_up = sorted(cells.values(), reverse=True)[:2]
    assert largest <= math.ceil(ratio * runner_up), cells


@pytest.mark.parametrize("family", ["depth_order", "left_right", "above_below", "depth_extreme"])
def test_answer_positions_are_balanced(family_rows, family):
    cells = Counter(r["choices"].index(r["answer"]) for r in family_rows[family])
    assert len(cells) >= 2
    _cells_within_ratio(cells, 1.1)
    if len(cells) == 2:
        assert max(cells.values()) / sum(cells.values()) <= 1.1 / 2.1 + 0.01


def test_yes_no_answers_are_balanced(family_rows):
    cells = Counter(r["answer"] for r in family_rows["depth_order"] if r["answer_type"] == "yes_no")
    assert set(cells) == {"yes", "no"}
    assert 0.4 < cells["yes"] / sum(cells.values()) < 0.6


def test_count_answers_are_balanced(family_rows):
    cells = Counter(r["answer"] for r in family_rows["counting"])
    _cells_within_ratio(cells, 1.5)


@pytest.mark.parametrize("family", ["depth_order", "left_right", "depth_extreme"])
def test_templates_are_used_evenly(family_rows, family):
    cells = Counter(r["template_id"] for r in family_rows[family])
    mean = sum(cells.values()) / len(cells)
    assert len(cells) >= 3
    assert all(0.5 * mean <= n <= 1.5 * mean for n in cells.values()), cells
