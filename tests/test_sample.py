"""forge sample: quotas, stratified cells, splits by image, dedup, determinism (exports: test_export.py)."""

from __future__ import annotations

from collections import Counter

import pytest
from click.testing import CliRunner

from conftest import read_table
from forge.cli import main
from forge.sample import Mix, draw


@pytest.fixture(scope="module")
def db(sample_db):
    return sample_db


def test_quotas_fill_equal_cells_and_report_what_is_missing(db):
    table, report = draw(db, Mix(quotas={"left_right": 40, "depth_order": 60, "grounding": 100},
                                 stratify=["answer_type"]), seed=0)
    rows = table.to_pylist()
    assert Counter(r["family"] for r in rows) == {"left_right": 40, "depth_order": 60, "grounding": 100}
    assert Counter(r["answer_type"] for r in rows if r["family"] == "grounding") == {"box": 50, "point": 50}
    assert "could not fill" not in "\n".join(report.lines())
    # asking for more than there is: every row is taken and the shortfall reported
    available = sum(1 for r in read_table(db).to_pylist() if r["family"] == "grounding")
    table, report = draw(db, Mix(quotas={"grounding": 10_000}, stratify=["answer_type"]), seed=0)
    assert table.num_rows == report.obtained["grounding"] == available
    assert f"could not fill {10_000 - available}" in "\n".join(report.lines())


def test_stratified_cells_are_equal(db):
    table, report = draw(db, Mix(quotas={"left_right": 60}, stratify=["answer"]), seed=1)
    assert Counter(r["answer"] for r in table.to_pylist()) == {"left": 30, "right": 30}
    table, _ = draw(db, Mix(quotas={"depth_order": 60}, stratify=["template_id"]), seed=1)
    cells = Counter(r["template_id"] for r in table.to_pylist())
    assert len(cells) == 6 and set(cells.values()) == {10}


def test_weights_share_n_and_where_filters(db):
    table, report = draw(db, Mix(weights={"depth_order": 3, "left_right": 1}, n=200, where="margin > 0.2"), seed=2)
    rows = table.to_pylist()
    assert Counter(r["family"] for r in rows) == {"depth_order": 150, "left_right": 50}
    assert all(r["margin"] > 0.2 for r in rows)


def test_splits_are_disjoint_by_image_and_stable(db):
    images = {}
    for split in ("train", "val", "test"):
        table, _ = draw(db, Mix(quotas={"left_right": 10_000, "depth_order": 10_000}, split=split), seed=0)
        images[split] = {r["image_id"] for r in table.to_pylist()}
        assert {r["split"] for r in table.to_pylist()} <= {split}
    assert not images["train"] & images["val"] and not images["train"] & images["test"] and not images["val"] & images["test"]
    everything, _ = draw(db, Mix(quotas={"left_right": 10_000, "depth_order": 10_000}), seed=5)
    by_image = {r["image_id"]: r["split"] for r in everything.to_pylist()}
    assert all(by_image[i] == s for s, ids in images.items() for i in ids)
    assert len(images["train"]) > len(images["val"]) + len(images["test"])


def test_identical_questions_on_an_image_appear_once(db):
    table, report = draw(db, Mix(quotas={"left_right": 10_000}), seed=0)
    keys = [(r["image_id"], r["question"]) for r in table.to_pylist()]
    assert len(keys) == len(set(keys))
    assert report.duplicates_dropped > 0  # demo and demo_copy ask the same questions
    stored = [r for r in read_table(db).to_pylist() if r["family"] == "left_right"]
    assert set(keys) == {(r["image_id"], r["question"]) for r in stored}
    by_spec = Counter((r["image_id"], r["question"], r["spec_name"]) for r in stored)  # the table keeps both specs' rows
    assert set(by_spec.values()) == {1} and len(by_spec) == 2 * len(keys)


def test_same_seed_same_sample_other_seed_other_sample(db):
    mix = Mix(quotas={"depth_order": 50}, stratify=["answer_type"])
    first, second, other = (draw(db, mix, seed=s)[0] for s in (4, 4, 5))
    assert first.equals(second)
    assert set(first.column("qa_id").to_pylist()) != set(other.column("qa_id").to_pylist())


@pytest.mark.parametrize("args, message", [
    ([], "say what to sample: --n N (every family equally)"),
    (["--family", "depth_order=1"], "family weights need a total: --n N"),
    (["--family", "depth_order"], "--family 'depth_order': write NAME=FLOAT"),
    (["--quota", "left_right=many"], "--quota 'left_right=many': write NAME=INT"),
    (["--quota", "left_right=5", "--where", "nonsense ==="], "query failed"),
])
def test_sample_mistakes_are_one_line(db, tmp_path, args, message):
    result = CliRunner().invoke(main, ["sample", "--db", str(db), *args, "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory, demo_db):
    """The demo table built again in chunks of 7 images."""
    from conftest import demo_dict, write_spec
    from forge.build import run_build
    from forge.spec.load import load_spec

    folder = tmp_path_factory.mktemp("chunks")
    run_build(load_spec(write_spec(folder, demo_dict(images=60))), folder / "db", echo=lambda _: None, chunk_size=7)
    return folder / "db"


def test_the_rows_do_not_depend_on_chunks_layout_compaction_or_threads(demo_db, rebuilt, tmp_path, monkeypatch):
    import os
    import shutil

    import lance
    import numpy as np

    assert read_table(demo_db).column("qa_id").equals(read_table(rebuilt).column("qa_id"))
    mixes = [Mix(n=120, stratify=["answer"]), Mix(quotas={"depth_order": 40}, stratify=["template_id"], split="train")]
    expected = [draw(demo_db, mix, seed=9)[0].column("qa_id") for mix in mixes]
    assert [draw(rebuilt, mix, seed=9)[0].column("qa_id") for mix in mixes] == expected
    # the same rows shuffled into fragments of 97, then compacted into one
    shuffled = shutil.copytree(demo_db, tmp_path / "db")
    table = read_table(demo_db)
    order = np.random.default_rng(1).permutation(table.num_rows)
    lance.write_dataset(table.take(order), shuffled / "qa.lance", mode="overwrite", max_rows_per_file=97)
    assert len(lance.dataset(str(shuffled / "qa.lance")).get_fragments()) > 1
    assert [draw(shuffled, mix, seed=9)[0].column("qa_id") for mix in mixes] == expected
    lance.dataset(str(shuffled / "qa.lance")).optimize.compact_files(target_rows_per_fragment=1 << 20)
    assert len(lance.dataset(str(shuffled / "qa.lance")).get_fragments()) == 1
    assert [draw(shuffled, mix, seed=9)[0].column("qa_id") for mix in mixes] == expected
    monkeypatch.setattr(os, "cpu_count", lambda: 1)  # DuckDB's threads
    assert [draw(shuffled, mix, seed=9)[0].column("qa_id") for mix in mixes] == expected
