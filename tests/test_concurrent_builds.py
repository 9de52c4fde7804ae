"""Builds into one database at the same time: they take turns (a lock with the holder's name), so no
row is ever doubled, and a rebuild repairs a table that holds duplicates."""

from __future__ import annotations

import subprocess
import sys
import time

import lance
import pytest

from conftest import demo_dict, read_table, write_spec
from forge.build import run_build
from forge.spec.load import load_spec


def _spec(folder, name: str, images: int = 12) -> str:
    return str(write_spec(folder, dict(demo_dict(images=images), name=name), name=f"{name}.yaml"))


def _together(specs: list[str], db, logs) -> list[subprocess.CompletedProcess]:
    """Start the builds while this test holds the database's lock, so that every one of them reaches it
    while it is taken (whatever the machine's speed); release it once all say they wait."""
    from forge.store import Store

    logs.mkdir(exist_ok=True)
    errs = [logs / f"{i}.err" for i in range(len(specs))]
    with Store(db).build_lock("the test", lambda _: None):
        processes = [subprocess.Popen([sys.executable, "-m", "forge.cli", "build", spec, "--db", str(db)],
                                      stdout=subprocess.PIPE, stderr=err.open("w"), text=True)
                     for spec, err in zip(specs, errs)]
        deadline = time.time() + 300
        while not all("waiting: forge build of spec the test" in err.read_text() for err in errs):
            assert time.time() < deadline and all(p.poll() is None for p in processes)
            time.sleep(0.1)
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=600), p.stdout.read(), err.read_text())
            for p, err in zip(processes, errs)]


@pytest.mark.parametrize("names, trials", [(["demo", "demo"], 2), (["demo", "other", "third", "demo"], 1)],
                         ids=["same-spec-x2", "mixed-x4"])
def test_concurrent_builds_never_double_rows(tmp_path, names, trials):
    specs = {name: _spec(tmp_path, name) for name in names}
    alone = {}
    for name in set(names):  # each spec built alone: the rows the shared table must hold
        alone[name] = run_build(load_spec(specs[name]), tmp_path / f"alone_{name}", echo=lambda _: None).qa_rows
    for trial in range(trials):
        db = tmp_path / f"db{trial}"
        results = _together([specs[name] for name in names], db, tmp_path / f"logs{trial}")
        assert all(r.returncode == 0 for r in results), [r.stderr[-2000:] for r in results]
        waits = sum(r.stderr.count("waiting: forge build of spec") for r in results)
        assert waits >= len(names)  # each found the lock taken, said by whom, and waited its turn
        rows = read_table(db).to_pylist()
        ids = [row["qa_id"] for row in rows]
        assert len(ids) == len(set(ids)) == sum(alone.values())
        assert {name: sum(r["spec_name"] == name for r in rows) for name in alone} == alone


def test_a_rebuild_repairs_a_table_holding_duplicates(tmp_path):
    spec = load_spec(_spec(tmp_path, "demo"))
    rows = run_build(spec, tmp_path / "db", echo=lambda _: None).qa_rows
    dataset = lance.dataset(str(tmp_path / "db" / "qa.lance"))
    lance.write_dataset(dataset.to_table(), dataset.uri, mode="append")  # every row twice, as racing commits once left it
    assert read_table(tmp_path / "db").num_rows == 2 * rows
    run_build(spec, tmp_path / "db", echo=lambda _: None)
    table = read_table(tmp_path / "db")
    assert table.num_rows == rows == len(set(table.column("qa_id").to_pylist()))


def test_index_upkeep_failure_after_the_commit_is_a_warning_and_the_build_is_logged(tmp_path, monkeypatch):
    from forge.store import Store

    def full_disk(self, table_name: str = "qa") -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Store, "maintain", full_disk)
    report = run_build(load_spec(_spec(tmp_path, "demo")), tmp_path / "db", echo=lambda _: None)
    assert any("index upkeep failed" in w and "No space left" in w for w in report.warnings)
    assert read_table(tmp_path / "db").num_rows == report.qa_rows > 0
    builds = lance.dataset(str(tmp_path / "db" / "builds.lance")).to_table()
    assert builds.num_rows == 1 and builds.column("qa_rows").to_pylist() == [report.qa_rows]
