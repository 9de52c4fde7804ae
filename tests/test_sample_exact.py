"""forge sample's two-scan sampler against the first sampler, which held every candidate row in memory.

The reference below is that sampler's algorithm (candidates after where and split, identical questions
on an image kept once by lowest order, water-filled cells ranked by order), written plainly in Polars
with the seeded order computed in numpy. On the test database, whose duplicates (two specs asking the
same questions) never cross cells, both must give the same quotas and the same rows.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from conftest import REPO, read_table
from forge import sample
from forge.sample import Mix, draw, load_mix, split_expr
from forge.sampling import order, quotas
from forge.question_keys import question_keys
from forge.sampling.quotas import water_fill


@pytest.fixture(scope="module")
def db(sample_db):
    return sample_db


def mix_numpy(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer, in wrapping uint64 arithmetic."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(order.M1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(order.M2)
        return z ^ (z >> np.uint64(31))


def seeded_order(qa_ids: pl.Series, seed: int) -> np.ndarray:
    return mix_numpy(qa_ids.cast(pl.UInt64).to_numpy() ^ np.uint64(order.salt(seed)))


def old_water_fill(sizes: list[int], target: int) -> list[int]:
    """The first sampler's water-filling, as it was."""
    take = [0] * len(sizes)
    ranked = sorted(range(len(sizes)), key=lambda i: sizes[i])
    remaining, left = target, len(sizes)
    for i in ranked:
        share = min(sizes[i], remaining // left if left else 0)
        take[i], remaining, left = share, remaining - share, left - 1
    for i in reversed(ranked):
        extra = min(remaining, sizes[i] - take[i])
        take[i], remaining = take[i] + extra, remaining - extra
    return take


def reference(db, mix: Mix, seed: int) -> tuple[dict[tuple, int], list[str]]:
    """The first sampler: (family, *cell values) -> quota, and the qa_ids it picks, in seeded order."""
    rows = pl.from_arrow(read_table(db))
    if mix.where:
        rows = pl.SQLContext(qa=rows).execute(f"SELECT * FROM qa WHERE {mix.where}", eager=True)
    if mix.split:
        rows = rows.filter(split_expr(mix.splits) == mix.split)
    rows = rows.with_columns(order=pl.Series(seeded_order(rows["qa_id"], seed)))
    rows = rows.filter(pl.col("order") == pl.col("order").min().over("image_id", "question"))
    families = sorted(set(read_table(db)["family"].to_pylist()))
    if mix.quotas:
        wanted = dict(mix.quotas)
    else:
        weights = mix.weights or {f: 1.0 for f in families}
        wanted = {f: int(round(mix.n * w / sum(weights.values()))) for f, w in weights.items()}
    strata = [c for c in dict.fromkeys(mix.stratify) if c != "family"]
    quota, picked = {}, []
    for family, target in wanted.items():
        cells = rows.filter(pl.col("family") == family).group_by(["family", *strata]).len().sort(["family", *strata])
        for cell, take in zip(cells.drop("len").iter_rows(), old_water_fill(cells["len"].to_list(), target)):
            quota[cell] = take
            members = rows.filter(pl.all_horizontal(pl.col(c) == v for c, v in zip(["family", *strata], cell)))
            picked.append(members.sort("order").head(take).select("qa_id", "order"))
    chosen = pl.concat(picked).sort("order")["qa_id"].to_list() if picked else []
    return quota, chosen


MIXES = [
    Mix(quotas={"left_right": 40, "depth_order": 60, "grounding": 100}, stratify=["answer_type"]),
    Mix(quotas={"left_right": 61}, stratify=["answer"]),  # an odd quota: who gets the extra row
    Mix(quotas={"depth_order": 65}, stratify=["template_id"]),
    Mix(quotas={"grounding": 150}, stratify=["answer"]),  # a cell per box: most hold one row (water-filling)
    Mix(quotas={"grounding": 10_000}, stratify=["answer_type"]),  # more than there is
    Mix(weights={"depth_order": 3, "left_right": 1}, n=201, where="margin > 0.2"),
    Mix(n=301),  # every family equally
    Mix(n=90, stratify=["answer", "template_id"], split="val"),
    Mix(quotas={"left_right": 10, "depth_order": 10}, where="family = 'left_right'"),  # a family emptied by where
    Mix(quotas={"left_right": 10_000}),  # every distinct question, duplicates dropped
]


@pytest.mark.parametrize("mix", MIXES + ["mixes/balanced.yaml"], ids=lambda m: m if isinstance(m, str) else None)
@pytest.mark.parametrize("seed", [0, 7])
def test_quotas_and_rows_are_the_first_samplers(db, mix, seed):
    mix = load_mix(REPO / mix) if isinstance(mix, str) else mix
    expected_quota, expected_rows = reference(db, mix, seed)
    table, report = draw(db, mix, seed)
    strata = [c for c in report.cells.columns if c not in ("rows", "quota", "obtained")]
    got_quota = {cell[:-1]: cell[-1] for cell in report.cells.select(*strata, "quota").iter_rows()}
    assert {c: q for c, q in got_quota.items() if q} == {c: q for c, q in expected_quota.items() if q}
    assert table.column("qa_id").to_pylist() == expected_rows
    assert sum(report.obtained.values()) == len(expected_rows)


def test_vectorized_water_fill_is_the_first_samplers():
    rng = np.random.default_rng(3)
    for _ in range(2000):
        sizes = rng.integers(0, rng.choice([3, 20, 1000]), rng.integers(0, 12)).tolist()
        target = int(rng.integers(0, 2 * sum(sizes) + 3))
        assert water_fill(np.array(sizes), target).tolist() == old_water_fill(sizes, target), (sizes, target)


def test_the_order_is_splitmix_of_qa_id_and_seed():
    ids = ["0", "1", str(2**64 - 1), str(2**63), "18215549520226416441"]
    for seed in (0, 1, -5, 2**40):
        got = order.order_of(pa.array(ids), seed).tolist()
        assert got == [order.mix(int(i) ^ order.salt(seed)) for i in ids]
        assert got == seeded_order(pl.Series(ids), seed).tolist()


def test_rows_do_not_depend_on_the_room_above_the_quotas(db, monkeypatch):
    """With no room at all, most cells come up short and are scanned again: the same rows must come out."""
    mix = Mix(n=400, stratify=["answer"], where="margin > 0.05")
    table, report = draw(db, mix, seed=3)
    scans = []
    real = sample.pick_candidates
    monkeypatch.setattr(sample, "pick_candidates", lambda *a, **k: scans.append(1) or real(*a, **k))
    monkeypatch.setattr(quotas, "SPARE_SD", 0.0)
    monkeypatch.setattr(quotas, "SPARE_ROWS", 0)
    tight, tight_report = draw(db, mix, seed=3)
    assert len(scans) > 1  # the tight thresholds did come up short
    assert tight.column("qa_id").to_pylist() == table.column("qa_id").to_pylist()
    assert tight_report.cells.equals(report.cells)


KEYED_MIXES = [Mix(quotas={"left_right": 10_000}), Mix(n=90, stratify=["answer", "template_id"], split="val"),
               Mix(quotas={"grounding": 150}, stratify=["answer"])]


def test_keys_computed_for_an_older_table_or_colliding_give_the_same_rows(db, tmp_path, monkeypatch):
    """A table written before question keys existed has them computed as the sampler scans (opened by a build
    it gains the column, null); and keys that collide (every question on an image alike) only cost reading
    the texts: the rows are the same."""
    import shutil

    import lance

    from forge.query import open_table
    from forge.sampling import scan
    from forge.store import QA_SCHEMA, Store

    expected = [draw(db, mix, seed=5)[0].column("qa_id").to_pylist() for mix in KEYED_MIXES]
    older = shutil.copytree(db, tmp_path / "older")
    lance.dataset(str(older / "qa.lance")).drop_columns(["question_key"])
    assert not scan.Rows(lance.dataset(str(older / "qa.lance"))).keys_stored
    assert [draw(older, mix, seed=5)[0].column("qa_id").to_pylist() for mix in KEYED_MIXES] == expected
    Store(older).table("qa", QA_SCHEMA)  # what the next build into it does: the column, null
    assert lance.dataset(str(older / "qa.lance")).to_table(columns=["question_key"]).column(0).null_count > 0
    assert not scan.Rows(lance.dataset(str(older / "qa.lance"))).keys_stored and scan.Rows(open_table(db, "qa")).keys_stored
    assert [draw(older, mix, seed=5)[0].column("qa_id").to_pylist() for mix in KEYED_MIXES] == expected

    read = []
    real_take = sample.take_columns
    monkeypatch.setattr(sample, "take_columns", lambda d, p, c: read.append(len(p)) or real_take(d, p, c))
    [draw(older, mix, seed=5) for mix in KEYED_MIXES]
    texts_read, read[:] = sum(read), []  # the true duplicates' (two specs ask the same questions)
    monkeypatch.setattr(scan, "question_keys", lambda ids, questions: question_keys(ids, pa.array([""] * len(ids))))
    assert [draw(older, mix, seed=5)[0].column("qa_id").to_pylist() for mix in KEYED_MIXES] == expected
    assert sum(read) > texts_read + 100  # every candidate sharing an image had its text read and compared


def test_rows_with_the_same_order_are_walked_by_cell_then_text():
    """Two rows with one qa_id (hence one order): the first sampler's rule takes them by cell, then image id and
    question; their texts are read for that, and for rows whose keys repeat, and for no other."""
    from forge.sampling.select import select

    texts = {0: ("img_b", "q1"), 1: ("img_a", "q2"), 2: ("img_a", "q1"), 3: ("img_c", "q3"), 4: ("img_a", "q1")}
    candidates = pl.DataFrame({"cell": [1, 0, 0, 1, 1], "ord": [5, 5, 5, 1, 9], "pos": [0, 1, 2, 3, 4],
                               "key": [10, 11, 12, 13, 12]}, schema={"cell": pl.UInt32, "ord": pl.UInt64,
                                                                     "pos": pl.UInt64, "key": pl.UInt64})
    asked = []

    def read(positions):
        asked.extend(positions.tolist())
        return pl.DataFrame([texts[p] for p in positions.tolist()], schema=["image_id", "question"], orient="row")

    chosen = select(candidates, np.array([2, 3]), read)
    # walk: pos 3 (ord 1); ord 5 by cell, then text: cell 0's pos 2 (img_a, q1) and pos 1 (img_a, q2), cell 1's
    # pos 0; then pos 4 (ord 9), whose question on its image pos 2 took already: skipped, cell 1 stays short
    assert chosen.taken.get_column("pos").to_list() == [3, 2, 1, 0]
    assert chosen.obtained.tolist() == [2, 2] and chosen.skipped == 1
    assert set(asked) == {0, 1, 2, 4}  # the tied orders, then the repeated key (12: pos 2 and 4)
