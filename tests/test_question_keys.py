"""The question key every QA row stores (forge/question_keys.py): what `forge sample` reads for dedup and
splits. Its values are pinned: keys written by one forge must match keys another computes, or identical
questions from two builds would no longer be recognised as one."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from conftest import read_table
from forge.question_keys import image_positions, question_keys, text_hashes


def test_values_are_pinned():
    assert [hex(v) for v in text_hashes(pa.array(["Which is closer to the camera, the chair or the table?", "a", "é"]))
            ] == ["0xe0506991fb37f96", "0xb283085a8c486789", "0x56b69af955878724"]
    keys = question_keys(pa.array(["9f86d081884c7d65", "00000000ffff"]), pa.array(["How many cups are there?"] * 2))
    assert [hex(v) for v in keys] == ["0x9f86d081bcceaeeb", "0xbcceaeeb"]


def test_every_byte_counts_and_layout_does_not():
    texts = ["", "a", "a\x00", "abcdefg", "abcdefgh", "abcdefghi", "abcdefgh" * 2, "abcdefgh" * 2 + "x",
             "bacdefgh", "abcdefgx", "é" * 9, "e" * 18, "x" * 40_000, "x" * 40_001, None]
    hashes = text_hashes(pa.array(texts))
    assert len(set(hashes[:-1].tolist())) == len(texts) - 1  # no two distinct texts agree
    assert hashes[-1] == hashes[0]  # null hashes as empty
    # the same text in any position of any array, sliced, chunked or large_string, hashes alike
    arrays = [pa.array(texts)[3:9], pa.chunked_array([pa.array(texts[3:5]), pa.array(texts[5:9])]),
              pa.array(texts[3:9], pa.large_string())]
    for array in arrays:
        assert text_hashes(array).tolist() == hashes[3:9].tolist()


def test_keys_hold_the_image_position_the_split_reads():
    rng = np.random.default_rng(0)
    ids = [f"{v:016x}" * 4 for v in rng.integers(0, 2**63, 1000, dtype=np.int64)]
    keys = question_keys(pa.array(ids), pa.array(["q"] * 1000))
    assert (keys >> np.uint64(32)).tolist() == [int(i[:8], 16) for i in ids]
    assert image_positions(pa.array([None, "not hex!"])).tolist() == [0, 0]


def test_built_rows_store_their_keys(demo_db):
    rows = read_table(demo_db)
    expected = question_keys(rows.column("image_id"), rows.column("question"))
    assert rows.column("question_key").to_numpy().tolist() == expected.tolist()
    same = pl.from_arrow(rows.select(["image_id", "question", "question_key"]))
    assert same.group_by("image_id", "question").agg(pl.col("question_key").n_unique()).get_column(
        "question_key").max() == 1
