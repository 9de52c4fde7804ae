"""Same spec + seed -> same rows; a rebuild replaces the spec's previous build (never duplicates it);
a changed spec replaces its old rows; other specs' rows are left alone."""

from __future__ import annotations

from conftest import demo_dict, read_table, write_spec
from forge.build import run_build
from forge.spec.load import load_spec

QUIET = {"echo": lambda _: None}


def test_same_seed_same_table_and_rebuild_adds_nothing(tmp_path):
    spec = load_spec(write_spec(tmp_path, demo_dict(images=60)))
    first = run_build(spec, tmp_path / "one", **QUIET)
    run_build(spec, tmp_path / "two", **QUIET)
    one, two = read_table(tmp_path / "one"), read_table(tmp_path / "two")
    assert one.num_rows == first.qa_rows > 0
    assert one.equals(two)

    again = run_build(spec, tmp_path / "one", **QUIET)
    assert again.write.rows == again.write.replaced == one.num_rows and again.write.stale == 0
    assert read_table(tmp_path / "one").equals(one)


def test_other_seed_changes_phrasing_and_order(tmp_path):
    spec = load_spec(write_spec(tmp_path, demo_dict(images=40)))
    run_build(spec, tmp_path / "a", seed=1, **QUIET)
    run_build(spec, tmp_path / "b", seed=2, **QUIET)
    a, b = read_table(tmp_path / "a"), read_table(tmp_path / "b")
    assert set(a.column("qa_id").to_pylist()) != set(b.column("qa_id").to_pylist())
    assert set(a.column("seed").to_pylist()) == {1}


def test_limit_then_full_build_replaces_the_trial_without_duplicates(tmp_path):
    spec = load_spec(write_spec(tmp_path, demo_dict(images=50)))
    partial = run_build(spec, tmp_path / "db", limit=10, **QUIET)
    assert partial.images == 10
    trial = read_table(tmp_path / "db")
    full = run_build(spec, tmp_path / "db", **QUIET)
    table = read_table(tmp_path / "db")
    assert full.write.replaced == partial.qa_rows and table.num_rows == full.qa_rows > partial.qa_rows
    assert len(set(table.column("qa_id").to_pylist())) == table.num_rows
    # the trial's images are judged the same way in the full build: most of their rows come back
    assert len(set(trial.column("qa_id").to_pylist()) & set(table.column("qa_id").to_pylist())) >= 0.8 * trial.num_rows


def test_builds_of_other_specs_into_the_same_table_are_left_alone(tmp_path):
    first = demo_dict(images=30)
    other = dict(demo_dict(images=20), name="other_demo", seed=5)
    run_build(load_spec(write_spec(tmp_path, other, name="other.yaml")), tmp_path / "db", **QUIET)
    before = read_table(tmp_path / "db")
    run_build(load_spec(write_spec(tmp_path, first)), tmp_path / "db", **QUIET)
    again = run_build(load_spec(write_spec(tmp_path, first)), tmp_path / "db", **QUIET)
    table = read_table(tmp_path / "db")
    assert again.write.replaced == again.write.rows > 0
    kept = table.filter(table.column("spec_name").to_numpy(zero_copy_only=False) == "other_demo")
    assert kept.equals(before)


def test_edited_spec_replaces_rows_of_its_older_version(tmp_path):
    spec = demo_dict(images=40)
    old = load_spec(write_spec(tmp_path, spec))
    first = run_build(old, tmp_path / "db", **QUIET)
    spec["families"][1]["questions"][0]["templates"][0] = "Is the {a} on the left or the right of the {b}?"
    new = load_spec(write_spec(tmp_path, spec))
    assert new.spec_hash != old.spec_hash
    second = run_build(new, tmp_path / "db", **QUIET)
    table = read_table(tmp_path / "db")
    assert second.write.replaced == second.write.stale == first.qa_rows
    assert set(table.column("spec_hash").to_pylist()) == {new.spec_hash}
    assert table.num_rows == second.qa_rows
