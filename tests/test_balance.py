"""Answer, option-position and template balance: seeded rejection caps every cell at max_ratio x the runner-up."""

from __future__ import annotations

import math
from collections import Counter

import daft
import pytest
import yaml

from conftest import REPO, read_table, write_spec
from forge.balance import BALANCE_RULE, balance
from forge.build import run_build
from forge.spec.load import load_spec


def _frame(positions: list[int], family: str = "f") -> daft.DataFrame:
    n = len(positions)
    return daft.from_pydict({
        "qa_id": [f"q{i}" for i in range(n)], "family": [family] * n, "reject": [None] * n,
        "answer": [["x", "y", "z"][p] for p in positions], "choices": [["x", "y", "z"]] * n,
    }).with_column("reject", daft.col("reject").cast("string"))


@pytest.mark.parametrize("by", ["position", "answer"])
def test_surplus_rows_are_rejected_down_to_the_cap(by):
    frame = _frame([0] * 80 + [1] * 20 + [2] * 5)
    rows = balance(frame, {"f": (by, 1.1)}, seed=3).to_pylist()
    kept = Counter(r["answer"] for r in rows if r["reject"] is None)
    assert kept == {"x": 22, "y": 20, "z": 5}
    assert sum(r["reject"] == BALANCE_RULE for r in rows) == 58
    assert len(rows) == 105


def test_balance_is_seeded():
    frame = _frame([0] * 50 + [1] * 10)
    kept = {s: {r["qa_id"] for r in balance(frame, {"f": ("position", 1.0)}, seed=s).to_pylist() if r["reject"] is None}
            for s in (1, 1, 2)}
    again = {r["qa_id"] for r in balance(frame, {"f": ("position", 1.0)}, seed=1).to_pylist() if r["reject"] is None}
    assert kept[1] == again and kept[1] != kept[2] and len(kept[1]) == 20


def test_rows_already_rejected_and_other_families_are_untouched():
    frame = _frame([0] * 30 + [1] * 10).concat(_frame([0] * 30, family="g"))
    already = (daft.col("qa_id") == "q0") & (daft.col("family") == "f")
    frame = frame.with_column("reject", daft.functions.when(already, daft.lit("min_margin")).otherwise(daft.col("reject")))
    rows = balance(frame, {"f": ("position", 1.0)}, seed=0).to_pylist()
    assert sum(1 for r in rows if r["family"] == "g" and r["reject"] is None) == 30
    assert Counter(r["reject"] for r in rows if r["family"] == "f") == {None: 20, BALANCE_RULE: 19, "min_margin": 1}


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
