"""forge sample's memory follows the sample and the cells, not the table: a generated table of 4M rows
is sampled in about the peak memory of one of 1M rows, and under a fixed bound."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lance
import numpy as np
import pyarrow as pa
import pytest

from forge.question_keys import question_keys

FAMILIES = [f"family_{i}" for i in range(12)]
BATCH = 250_000
SAMPLE = 200_000
BOUND_GIB = 0.75  # peak RSS of `forge sample` on either table (measured: 0.5; the first sampler: 1.04 at 4M rows)
GROWTH_MIB = 160  # what 3M more rows may add (measured: none; the first sampler: 470)


def _batches(rows: int):
    """Rows shaped like forge's: 12 families, 2-40 answers each, ~40-character questions and their keys,
    unique qa_ids."""
    rng = np.random.default_rng(rows)
    answers = pa.array([f"answer {i}" for i in range(40)])
    questions = pa.array([f"Which is closer to the camera, the {a} or the {b}?" for a in range(30) for b in range(30)])
    for start in range(0, rows, BATCH):
        count = min(BATCH, rows - start)
        family = rng.integers(0, len(FAMILIES), count)
        columns = {
            "qa_id": pa.array(rng.integers(0, 2**63, count, dtype=np.uint64)).cast(pa.string()),
            "image_id": pa.array(rng.integers(0, 2**63, count // 8 + 1, dtype=np.uint64)).cast(pa.string()).take(
                pa.array(np.sort(rng.integers(0, count // 8 + 1, count)))),
            "family": pa.DictionaryArray.from_arrays(pa.array(family), pa.array(FAMILIES)).cast(pa.string()),
            "question": pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, len(questions), count)), questions)
            .cast(pa.string()),
            "answer": pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, 2 + 38 * (family % 2), count)), answers)
            .cast(pa.string()),
        }
        columns["question_key"] = pa.array(question_keys(columns["image_id"], columns["question"]))
        yield pa.RecordBatch.from_pydict(columns)


def _table(folder: Path, rows: int) -> Path:
    schema = next(_batches(1)).schema
    lance.write_dataset(pa.RecordBatchReader.from_batches(schema, _batches(rows)), folder / "qa.lance")
    return folder


def _peak_gib(db: Path) -> float:
    """Peak RSS of `forge sample --dry-run` in a process of its own, measured by its parent."""
    forge = (f"from forge.cli import main; main(['sample', '--db', {str(db)!r}, '--n', '{SAMPLE}', "
             f"'--stratify', 'answer', '--dry-run'])")
    parent = ("import resource, subprocess, sys; "
              f"subprocess.run([sys.executable, '-c', {forge!r}], check=True, stdout=subprocess.DEVNULL); "
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", parent], check=True, capture_output=True, text=True).stdout
    return int(out.split()[-1]) / 2**20


@pytest.mark.timeout(300)
def test_peak_memory_follows_the_sample_not_the_table(tmp_path):
    small = _peak_gib(_table(tmp_path / "small", 1_000_000))
    big = _peak_gib(_table(tmp_path / "big", 4_000_000))
    assert big <= BOUND_GIB, f"{big:.2f} GiB sampling 4M rows"
    assert (big - small) * 1024 <= GROWTH_MIB, f"{small:.2f} GiB at 1M rows, {big:.2f} GiB at 4M"
