"""The streaming build on hard fabricated records (clutter, repeated labels, overlapping and cut
boxes): the same table whatever the chunk size, records from Parquet or Lance, duplicates judged
once, and builds killed with SIGKILL that leave the old table and resume their finished chunks."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lance
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO, demo_dict, read_table, write_spec
from forge.build import run_build
from forge.errors import ForgeError
from forge.spec.load import load_spec
from forge.staging import SIDECAR, STAGING, Staging

IMAGES = 3000


def _bench():
    spec = importlib.util.spec_from_file_location("build_scale", REPO / "bench" / "build_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_scale = _bench()
QUIET = {"echo": lambda _: None}


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    return build_scale.fabricate(tmp_path_factory.mktemp("records") / "records.parquet", IMAGES, seed=4)


def _every_family(folder: Path, records: Path, strict_balance: bool = False) -> Path:
    """Every family of specs/families in one spec; `strict_balance`: no cell above its runner-up."""
    folder.mkdir(parents=True, exist_ok=True)
    path = build_scale.merged_families_spec(folder, records)
    if strict_balance:
        spec = yaml.safe_load(path.read_text())
        for family in spec["families"]:
            family["balance"] = dict(family.get("balance", {}), max_ratio=1.0)
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_every_family_gives_the_same_table_whatever_the_chunk_size(records, tmp_path):
    spec = load_spec(_every_family(tmp_path, records, strict_balance=True))
    small = run_build(spec, tmp_path / "small", chunk_size=97, **QUIET)
    whole = run_build(spec, tmp_path / "whole", chunk_size=IMAGES, **QUIET)
    assert (small.chunks, whole.chunks) == (31, 1)
    one, other = read_table(tmp_path / "small"), read_table(tmp_path / "whole")
    assert one.num_rows == small.qa_rows > 10 * IMAGES
    assert one.equals(other)  # row for row, every column
    assert small.funnel == whole.funnel
    assert set(one.column("family").to_pylist()) == {f.name for f in spec.spec.families}  # every family made rows
    balanced = [f for f, counts in small.funnel.items() if counts.get("balance", 0) > 0]
    assert len(balanced) >= 6  # the global caps bit, identically in both


def test_synthetic_scenes_give_the_same_table_whatever_the_chunk_size(tmp_path):
    spec = load_spec(write_spec(tmp_path, demo_dict(images=90)))
    run_build(spec, tmp_path / "small", chunk_size=7, **QUIET)
    run_build(spec, tmp_path / "whole", **QUIET)
    assert read_table(tmp_path / "small").equals(read_table(tmp_path / "whole"))


def _records_spec(folder: Path, path: Path | str, name: str = "spec.yaml") -> Path:
    spec = yaml.safe_load((REPO / "specs" / "depth_order.yaml").read_text())
    spec["source"], spec["perception"] = {"kind": "records", "path": str(path)}, "records"
    return write_spec(folder, spec, name)


def test_records_from_a_folder_of_parquet_files_and_from_lance_give_the_same_table(records, tmp_path):
    table = pq.read_table(records)
    (tmp_path / "parts").mkdir()
    for i, start in enumerate(range(0, IMAGES, 1100)):
        pq.write_table(table.slice(start, 1100), tmp_path / "parts" / f"part-{i}.parquet")
    lance.write_dataset(table, tmp_path / "records.lance", max_rows_per_file=700)
    built = {}
    for name, path in {"file": records, "folder": tmp_path / "parts", "glob": tmp_path / "parts" / "*.parquet",
                       "lance": tmp_path / "records.lance"}.items():
        report = run_build(load_spec(_records_spec(tmp_path, path, f"{name}.yaml")), tmp_path / name, chunk_size=400, **QUIET)
        assert report.images == IMAGES
        built[name] = _content(read_table(tmp_path / name))  # the specs differ in their path, so in their hash
    assert built["file"].num_rows > IMAGES
    for name in ("folder", "glob", "lance"):
        assert built[name].equals(built["file"]), name


def _content(table: pa.Table) -> pa.Table:
    """The rows without what names the spec version (qa_id, spec_hash), in a fixed order."""
    rows = table.drop_columns(["qa_id", "spec_hash"])
    return rows.sort_by([("image_id", "ascending"), ("family", "ascending"), ("question", "ascending")])


def test_a_records_table_that_is_not_one_is_one_line_errors(records, tmp_path):
    bad = pq.read_table(records).drop_columns(["depth_kind"]).slice(0, 10)
    pq.write_table(bad, tmp_path / "bad.parquet")
    (tmp_path / "empty").mkdir()
    (tmp_path / "text.parquet").write_text("not parquet")
    pq.write_table(pq.read_table(records).slice(0, 0), tmp_path / "none.parquet")
    cases = {"none.parquet": "the table holds no records",
             "bad.parquet": "not a table of perception records: no column 'depth_kind'",
             "empty": "no Parquet files there",
             "text.parquet": "not a readable Parquet file",
             "missing/*.parquet": "no Parquet files there"}
    for path, message in cases.items():
        spec = _records_spec(tmp_path, tmp_path / path)
        result = subprocess.run([sys.executable, "-m", "forge.cli", "validate", str(spec)], capture_output=True, text=True)
        assert result.returncode == 2 and message in result.stderr, (path, result.stderr)
        assert result.stderr.count("\n") == 1 and "source.path" in result.stderr
        with pytest.raises(ForgeError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
            run_build(_unchecked(spec), tmp_path / "db")  # a table that broke after `forge validate`
        assert not (tmp_path / "db").exists()


def _unchecked(spec: Path):
    """The spec loaded without its path checks (a table that broke after `forge validate`)."""
    from forge.spec.load import LoadedSpec, spec_hash
    from forge.spec.schema import Spec

    parsed = Spec.model_validate(yaml.safe_load(spec.read_text()))
    return LoadedSpec(parsed, spec, spec_hash(parsed))


def test_an_image_met_twice_is_judged_once(records, tmp_path):
    table = pq.read_table(records).slice(0, 600)
    path = tmp_path / "records.parquet"
    spec = _records_spec(tmp_path, path)
    pq.write_table(table, path)
    once = run_build(load_spec(spec), tmp_path / "once", chunk_size=250, **QUIET)
    pq.write_table(pa.concat_tables([table.slice(0, 400), table.slice(100, 200), table.slice(400)]), path)  # 200 again
    twice = run_build(load_spec(spec), tmp_path / "twice", chunk_size=250, **QUIET)
    assert (once.duplicates, twice.duplicates) == (0, 200) and twice.images == 600
    assert read_table(tmp_path / "twice").equals(read_table(tmp_path / "once"))


def _build_command(spec: Path, db: Path, chunk_size: int) -> list[str]:
    return [sys.executable, "-m", "forge.cli", "build", str(spec), "--db", str(db), "--chunk-size", str(chunk_size)]


def _kill_when(command: list[str], ready, timeout: float = 240) -> None:
    """Start a build, SIGKILL it as soon as `ready()` holds."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not ready():
        assert process.poll() is None, "the build finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def _staged(db: Path, kind: str) -> int:
    """Files a build finished staging: those whose sidecar is written (not the hidden temporary files it is
    still writing, nor the sidecars themselves)."""
    return sum(1 for p in (db / STAGING).glob(f"*/{kind}/*{SIDECAR}") if not p.name.startswith("."))


def test_a_build_killed_while_writing_leaves_the_old_table_and_resumes_its_finished_chunks(records, tmp_path):
    old = _records_spec(tmp_path, records, "old.yaml")
    db = tmp_path / "db"
    assert subprocess.run(_build_command(old, db, 500), capture_output=True).returncode == 0
    before = read_table(db)
    edited = yaml.safe_load(old.read_text())
    edited["families"][0]["min_margin"] = 0.3  # a new version of the spec: it replaces the old rows
    new = write_spec(tmp_path, edited, "new.yaml")
    chunks = -(-IMAGES // 100)
    _kill_when(_build_command(new, db, 100), lambda: _staged(db, "written") >= 0.8 * chunks)
    assert read_table(db).equals(before)  # readers still see the old build, whole

    started = time.perf_counter()
    finished = subprocess.run(_build_command(new, db, 100), capture_output=True, text=True)
    resumed_s = time.perf_counter() - started
    assert finished.returncode == 0, finished.stderr
    line = next(l for l in finished.stdout.splitlines() if l.startswith("  resumed"))
    numbers = dict(part.split(" ")[::-1] for part in line.split("reused: ")[1].split(", "))
    assert int(numbers["counted"]) == chunks and int(numbers["written"]) >= 0.8 * chunks
    clean = tmp_path / "clean"
    started = time.perf_counter()
    clean_run = subprocess.run(_build_command(new, clean, 100), capture_output=True, text=True)
    assert clean_run.returncode == 0
    clean_output = clean_run.stdout
    full_s = time.perf_counter() - started
    table = read_table(db)
    assert table.equals(read_table(clean))  # the resumed build made the clean build's table
    assert set(table.column("spec_hash").to_pylist()) == {load_spec(new).spec_hash}
    assert not (db / STAGING).exists() or not any((db / STAGING).iterdir())
    def judging_seconds(output: str) -> float:  # the count and write stages of a build's throughput lines
        return sum(float(line.split()[1]) for line in output.splitlines() if line.split()[:1] in (["count"], ["write"]))

    resumed_judging, full_judging = judging_seconds(finished.stdout), judging_seconds(clean_output)
    print(f"resumed in {resumed_s:.1f} s (judging {resumed_judging:.2f} s), a full build {full_s:.1f} s "
          f"(judging {full_judging:.2f} s)")  # the reuse itself is asserted from the counts above, not the clock


def test_a_build_killed_while_perceiving_keeps_the_chunks_it_staged(tmp_path):
    spec = write_spec(tmp_path, demo_dict(images=120))
    db = tmp_path / "db"
    _kill_when(_build_command(spec, db, 10), lambda: _staged(db, "records") >= 5)
    report = run_build(load_spec(spec), db, chunk_size=10, **QUIET)
    assert report.resumed["perceived"] >= 5 and report.resumed["counted"] == 0
    run_build(load_spec(spec), tmp_path / "clean", chunk_size=10, **QUIET)
    assert read_table(db).equals(read_table(tmp_path / "clean"))


def test_a_build_that_died_after_its_commit_does_not_commit_twice(tmp_path, monkeypatch):
    spec = load_spec(write_spec(tmp_path, demo_dict(images=40)))
    monkeypatch.setattr(Staging, "finish", lambda self: None)  # as if killed right after the commit
    first = run_build(spec, tmp_path / "db", chunk_size=15, **QUIET)
    table = read_table(tmp_path / "db")
    again = run_build(spec, tmp_path / "db", chunk_size=15, **QUIET)
    assert again.resumed == {"perceived": 3, "counted": 3, "written": 3}
    assert again.write == first.write  # the same commit, reported again
    assert read_table(tmp_path / "db").equals(table)
    assert lance.dataset(tmp_path / "db" / "qa.lance").count_rows() == table.num_rows == first.qa_rows


def test_an_abandoned_build_leaves_no_data_files_behind(tmp_path, monkeypatch):
    from forge.store import Store

    spec = write_spec(tmp_path, demo_dict(images=60))
    db = tmp_path / "db"
    monkeypatch.setattr(Store, "commit_rows", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        run_build(load_spec(spec), db, chunk_size=20, **QUIET)
    data = db / "qa.lance" / "data"
    assert len(list(data.iterdir())) >= 3  # staged, never committed
    monkeypatch.undo()
    edited = demo_dict(images=60)
    edited["families"] = edited["families"][:1]  # another version: the staged build is abandoned
    run_build(load_spec(write_spec(tmp_path, edited)), db, chunk_size=20, **QUIET)
    referenced = {f.path for fragment in lance.dataset(db / "qa.lance").get_fragments() for f in fragment.data_files()}
    assert {p.name for p in data.iterdir()} == referenced
