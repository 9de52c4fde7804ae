"""The CLI as users call it: help, validate, explain, and a custom family from the README."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from conftest import DEMO_SPEC, REPO, demo_dict, read_table, write_spec
from forge.cli import main
from truth import eligible_pairs


@pytest.mark.parametrize("command", [[], ["build"], ["validate"], ["explain"]])
def test_help_explains_every_option(command):
    result = CliRunner().invoke(main, command + ["--help"])
    assert result.exit_code == 0
    if command == ["build"]:
        for option in ("--db", "--limit", "--seed", "--chunk-size", "--no-resume"):
            assert option in result.output
        assert "forge.lancedb" in result.output
        assert "default: 20000" in result.output  # the chunk size's default is documented


def test_every_shipped_spec_validates():
    specs = sorted(str(p) for p in (REPO / "specs").rglob("*.yaml"))
    assert len(specs) >= 10
    result = CliRunner().invoke(main, ["validate", *specs])
    assert result.exit_code == 0, result.output
    assert result.output.count(": ok (") == len(specs)


@pytest.mark.parametrize("spec, operators", [
    ("demo.yaml", ["RenderSynthetic", "== Judging ==", 'unique_labels: keep [(col("label_count")) == (dyn int: 1)]',
                   "family depth_order: every pair of objects (a, b)", "rule min_margin: keep [(col(\"margin\")) >= (dyn float: 0.15)]"]),
    ("depth_order.yaml", ["IdentifyImages", "PrepareImages", "EstimateDepth", "DetectObjects", "ModelRecord",
                          "family depth_order", "balanced by position"]),
])
def test_explain_prints_plan_without_running(tmp_path, spec, operators, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["explain", str(REPO / "specs" / spec)])
    assert result.exit_code == 0, result.output
    assert "Optimized Logical Plan" in result.output
    for op in operators:
        assert op in result.output
    assert not any(tmp_path.iterdir())  # nothing was built or written


ABOVE_BELOW = {
    "name": "above_below",
    "relation": {"holds": "a_cy < b_cy", "margin": "abs(a_cy - b_cy)"},
    "min_margin": 0.1,
    "questions": [{
        "answer_type": "yes_no", "choices": ["yes", "no"], "answer": {"if_true": "yes", "if_false": "no"},
        "templates": ["Is the {a} above the {b} in the image?", "Is the {a} higher up than the {b}?",
                      "In the picture, is the {a} positioned above the {b}?"],
    }],
}


def test_custom_relation_family_with_yes_no_answers(tmp_path):
    spec = demo_dict(images=80)
    spec["families"] = [ABOVE_BELOW]
    spec["verify"]["rules"] = [{"name": "near_enough", "keep": "a_depth < 10 AND b_depth < 10"}]
    path = write_spec(tmp_path, spec)
    result = CliRunner().invoke(main, ["build", str(path), "--db", str(tmp_path / "db")])
    assert result.exit_code == 0, result.output
    assert "near_enough" in result.output
    rows = read_table(tmp_path / "db").to_pylist()
    assert rows
    for row in rows:
        a_label, b_label = (o["label"] for o in row["objects"])
        truth = eligible_pairs(row["image_uri"], min_area=0.001)[frozenset((a_label, b_label))]
        a, b = truth["objects"][a_label], truth["objects"][b_label]
        assert a.z_front < 10 and b.z_front < 10
        a_cy, b_cy = (a.box_px[1] + a.box_px[3]) / 2, (b.box_px[1] + b.box_px[3]) / 2
        assert abs(a_cy - b_cy) / 240 >= 0.1
        assert row["answer"] == ("yes" if a_cy < b_cy else "no")
        assert row["choices"] == ["yes", "no"] and row["answer_type"] == "yes_no"
    assert {r["answer"] for r in rows} == {"yes", "no"}


def test_stats_reports_families_balance_and_last_funnel(tmp_path):
    path = write_spec(tmp_path, demo_dict(images=40))
    built = CliRunner().invoke(main, ["build", str(path), "--db", str(tmp_path / "db")])
    assert built.exit_code == 0, built.output
    rows = read_table(tmp_path / "db").to_pylist()
    result = CliRunner().invoke(main, ["stats", "--db", str(tmp_path / "db")])
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"{len(rows)} QA rows, specs: demo" in out
    for family in ("depth_order", "left_right"):
        family_rows = [r for r in rows if r["family"] == family]
        assert f"  {family:<18} {len(family_rows):>9} rows" in out
        left = sum(1 for r in family_rows if r["answer"] == "left")
        if family == "left_right":
            assert f"left {left / len(family_rows):.1%}" in out
    funnel = out.split("last build:")[1]
    assert funnel.index("min_score") < funnel.index("truncated") < funnel.index("unique_labels") < funnel.index("min_margin")
    kept = [int(line.split()[-1]) for line in funnel.splitlines() if line.strip().startswith("= kept")]
    assert kept == [sum(1 for r in rows if r["family"] == f) for f in ("depth_order", "left_right")]


def test_stats_without_a_database_is_one_line_error(tmp_path):
    result = CliRunner().invoke(main, ["stats", "--db", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    assert "no `qa` table here" in result.stderr and result.stderr.count("\n") == 1


def test_synthetic_builds_never_import_torch(tmp_path):
    """Model code loads only for model perception: the demo builds without importing torch."""
    import subprocess
    import sys

    code = ("import sys; from forge.build import run_build; from forge.spec.load import load_spec; "
            f"run_build(load_spec({str(DEMO_SPEC)!r}), {str(tmp_path / 'db')!r}, limit=4, echo=lambda m: None); "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
