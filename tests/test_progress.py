"""Builds report progress batch by batch while they run and throughput per stage at the end."""

from __future__ import annotations

import re

from forge.build import run_build
from forge.spec.load import load_spec
from conftest import demo_dict, write_spec
from helpers import RecordingProgress


def test_progress_moves_per_batch_and_chunk_and_stages_report_throughput(tmp_path):
    progress = RecordingProgress()
    spec = load_spec(write_spec(tmp_path, demo_dict(images=60)))
    report = run_build(spec, tmp_path / "db", echo=lambda _: None, progress=progress, chunk_size=20)

    perceive, count, write = progress.bars
    assert (perceive["label"], perceive["total"], perceive["unit"]) == ("perceiving (synthetic)", 60, "images")
    assert sum(perceive["updates"]) == 60
    assert len(perceive["updates"]) >= 4  # streamed in batches of 16, not all at the end
    assert (count["label"], count["total"]) == ("judging, pass 1 of 2: counting (3 chunks)", 60)
    assert (write["label"], write["total"]) == ("judging, pass 2 of 2: phrasing and writing (3 chunks)", 60)
    assert count["updates"] == write["updates"] == [20, 20, 20]  # a chunk's images as the chunk finishes

    stages = {s.name: s for s in report.stages.stages}
    assert list(stages) == ["setup", "perceive", "count", "write", "commit", "index"]
    assert stages["setup"].counts == {}
    assert stages["perceive"].counts == {"images": 60}
    assert stages["count"].counts == {"images": 60, "candidates": sum(sum(f.values()) for f in report.funnel.values())}
    assert stages["write"].counts == stages["commit"].counts == stages["index"].counts == {"QA": report.qa_rows}
    assert all(s.seconds > 0 for s in stages.values())
    assert sum(s.seconds for s in stages.values()) <= report.seconds  # stages never overlap or count twice
    assert "  chunks        3 of up to 20 images, judged by 1 worker process" in report.lines()
    text = "\n".join(report.lines())
    total = re.search(r"total\s+([\d.]+) s  60 images \(([\d.,]+) images/s\), (\d+) QA \(([\d.,]+) QA/s\)", text)
    assert total, text
    seconds, images_rate, qa, qa_rate = total.groups()
    assert int(qa) == report.qa_rows
    assert abs(float(images_rate.replace(",", "")) - 60 / report.seconds) < 0.11 * 60 / report.seconds + 0.1
    assert abs(float(qa_rate.replace(",", "")) - report.qa_rows / report.seconds) <= 0.06 * report.qa_rows / report.seconds + 1
