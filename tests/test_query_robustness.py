"""What a hostile tester did to `forge query` (and the --where of show and sample): Ctrl-C and --timeout
stop either engine at once with one line, spill files stay inside the database and go away, stray
`*.lance` folders, huge LIMITs and non-UTF-8 SQL are one line each, and show/sample take --param."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import lance
import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from conftest import REPO, copy_db, read_table
import forge.query
from forge.cli import INTERRUPTED, USER_ERROR, main
from forge.query import run_query
from forge.sample import Mix, draw
from forge.show import select_rows
from forge.spill import SPILL_FOLDER

ROWS = 200_000
# hours of work for either engine: a cross join for DuckDB, a filter Lance evaluates on every row
ENDLESS = {"duckdb": "SELECT sum(hash(a.qa_id || b.qa_id)) AS h FROM qa a, qa b",
           "lance": "SELECT qa_id FROM qa WHERE levenshtein(repeat(qa_id, 40), repeat('abcdefg', 40)) < 0 LIMIT 5"}


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """A bare `qa` table of 200,000 rows: enough for queries that run for minutes."""
    db = tmp_path_factory.mktemp("big") / "db"
    ids = np.char.add("qa", np.arange(ROWS).astype(str))
    margins = np.random.default_rng(0).random(ROWS)
    lance.write_dataset(pa.table({"qa_id": ids, "margin": margins}), str(db / "qa.lance"))
    return db


@pytest.fixture
def cwd(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def _one_line(stderr: str) -> str:
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    return stderr.strip()


@pytest.mark.parametrize("engine", ["duckdb", "lance"])
def test_ctrl_c_stops_a_long_query_at_once_with_one_line(big, cwd, engine):
    process = subprocess.Popen([sys.executable, "-m", "forge.cli", "query", ENDLESS[engine], "--db", str(big),
                                "--engine", engine], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    time.sleep(1.5)  # the engine is at work by now: imports take well under a second
    assert process.poll() is None, process.communicate()
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
    stopped = time.monotonic() - sent
    assert process.returncode == INTERRUPTED == 130
    assert stopped < 1.0, f"{engine} took {stopped:.2f} s to stop"
    assert _one_line(err) == "interrupted: forge query stopped by Ctrl-C" and out == ""
    assert list(cwd.iterdir()) == [] and sorted(p.name for p in big.iterdir()) == ["qa.lance"]


@pytest.mark.parametrize("engine", ["duckdb", "lance"])
def test_timeout_stops_a_query_with_one_line_naming_the_option(big, cwd, engine):
    started = time.monotonic()
    result = _cli("query", ENDLESS[engine], "--db", str(big), "--engine", engine, "--timeout", "0.5")
    assert result.exit_code == USER_ERROR
    assert _one_line(result.stderr) == ("error: query timed out after 0.5 s (--timeout 0.5); raise the limit with "
                                        "--timeout SECONDS, or leave --timeout out for no limit")
    assert time.monotonic() - started < 1.5
    assert list(cwd.iterdir()) == [] and sorted(p.name for p in big.iterdir()) == ["qa.lance"]
    # within its limit, a query answers as without one
    assert _cli("query", "SELECT count(*) AS n FROM qa", "--db", str(big), "--timeout", "60",
                "--format", "csv").stdout.split() == ["n", str(ROWS)]


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1", "1e7"])
def test_a_timeout_must_be_a_finite_positive_number_of_seconds(big, value):
    result = _cli("query", "SELECT 1", "--db", str(big), "--timeout", value)
    assert result.exit_code == USER_ERROR and "Traceback" not in result.output
    assert f"Invalid value for '--timeout': {float(value):g} is not a number of seconds in (0, 1000000]" in result.stderr


def test_duckdb_spills_inside_the_database_and_removes_its_files(big, cwd, monkeypatch):
    setting = run_query(big, "SELECT current_setting('temp_directory') AS t").column("t")[0].as_py()
    assert Path(setting).parent == big / SPILL_FOLDER
    assert Path(setting).name.startswith(f"query-{socket.gethostname().replace('-', '_')}-{os.getpid()}-")
    # a sort over more than DuckDB may hold in memory spills: its files appear there, never in the working directory
    monkeypatch.setattr(forge.query, "READ_ONLY", {**forge.query.READ_ONLY, "memory_limit": "32MB", "threads": 1})
    seen: set[Path] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                seen.update(p for p in big.rglob("duckdb_temp_*") if SPILL_FOLDER in p.parts)
                seen.update(cwd.rglob("*"))
            except FileNotFoundError:  # a folder removed while it was listed
                pass
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = run_query(big, "SELECT qa_id, repeat(qa_id, 20) AS x FROM qa ORDER BY x DESC")
    finally:
        done.set()
        watcher.join()
    texts = result.column("x").to_pylist()
    assert result.num_rows == ROWS and texts == sorted(texts, reverse=True)
    assert seen and all(p.is_relative_to(big / SPILL_FOLDER) for p in seen), sorted(seen)[:3]
    assert list(cwd.iterdir()) == [] and sorted(p.name for p in big.iterdir()) == ["qa.lance"]


def test_spill_folders_of_killed_queries_are_swept(big, cwd):
    host = socket.gethostname().replace("-", "_")
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = big / SPILL_FOLDER / f"query-{host}-{ended.stdout.strip()}-x1"
    running = big / SPILL_FOLDER / f"query-{host}-{os.getpid()}-x2"
    for folder in (killed, running):
        folder.mkdir(parents=True)
        (folder / "duckdb_temp_storage-0.tmp").write_bytes(b"spill")
    try:
        assert run_query(big, "SELECT count(*) AS n FROM qa").to_pylist() == [{"n": ROWS}]
        assert not killed.exists() and running.is_dir()  # a live query's folder is left alone
    finally:
        shutil.rmtree(big / SPILL_FOLDER)


def test_a_database_forge_cannot_write_into_spills_to_the_system_temp_folder(big, tmp_path, monkeypatch):
    (big / SPILL_FOLDER).write_text("not a folder")  # as a read-only database: no spill folder can be made there
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    try:
        setting = run_query(big, "SELECT current_setting('temp_directory') AS t").column("t")[0].as_py()
        assert Path(setting).parent == tmp_path and Path(setting).name.startswith("forge-query-")
        assert not Path(setting).exists() and (big / SPILL_FOLDER).read_text() == "not a folder"
    finally:
        (big / SPILL_FOLDER).unlink()


@pytest.fixture(scope="module")
def junk_db(tmp_path_factory, demo_db) -> Path:
    """The demo database with an empty `junk.lance` and a `broken.lance` whose manifest is garbage."""
    db = copy_db(demo_db, tmp_path_factory.mktemp("stray"))
    (db / "junk.lance").mkdir()
    (db / "broken.lance" / "_versions").mkdir(parents=True)
    (db / "broken.lance" / "_versions" / "1.manifest").write_bytes(b"garbage")
    return db


@pytest.mark.parametrize("args", [
    ["query", "SELECT family, count(*) AS n FROM qa GROUP BY 1"],
    ["query", "SELECT qa_id FROM qa LIMIT 3"],
    ["stats"],
    ["sample", "--n", "10", "--dry-run"],
])
def test_unreadable_lance_folders_are_ignored(junk_db, args):
    result = _cli(*args, "--db", str(junk_db))
    assert result.exit_code == 0, result.output
    assert "junk" not in result.output and "broken" not in result.output


@pytest.mark.parametrize("sql, table", [
    ("SELECT * FROM junk LIMIT 3", "junk"),
    ("SELECT count(*) FROM junk", "junk"),
    ("SELECT q.family FROM qa q JOIN BROKEN b USING (qa_id)", "broken"),
])
def test_a_query_naming_an_unreadable_table_is_one_line(junk_db, sql, table):
    result = _cli("query", sql, "--db", str(junk_db))
    assert result.exit_code == USER_ERROR
    line = _one_line(result.stderr)
    assert line.startswith(f"error: {junk_db / table}.lance: not a readable Lance table (")
    assert line.endswith("rebuild it with `forge build`, or remove the folder") and ".rs:" not in line


@pytest.mark.parametrize("command", [["query", "SELECT count(*) FROM qa"], ["stats"], ["sample", "--n", "5", "--dry-run"]])
def test_a_broken_qa_table_is_one_line_naming_it(tmp_path, command):
    (tmp_path / "db" / "qa.lance" / "_versions").mkdir(parents=True)
    (tmp_path / "db" / "qa.lance" / "_versions" / "1.manifest").write_bytes(b"garbage")
    result = _cli(*command, "--db", str(tmp_path / "db"))
    assert result.exit_code == USER_ERROR
    assert _one_line(result.stderr).startswith(f"error: {tmp_path / 'db' / 'qa.lance'}: not a readable Lance table (")


@pytest.mark.parametrize("engine", ["auto", "lance"])
def test_a_limit_beyond_int64_on_the_lance_path_returns_every_row(big, engine):
    result = _cli("query", "SELECT qa_id FROM qa WHERE margin < 0.001 LIMIT 9223372036854775808", "--db", str(big),
                  "--engine", engine, "--format", "csv")
    assert result.exit_code == 0, result.output
    expected = int((lance.dataset(str(big / "qa.lance")).to_table().column("margin").to_numpy() < 0.001).sum())
    assert len(result.stdout.split()) == expected + 1 and expected > 100


def test_a_limit_beyond_int64_in_duckdb_is_one_line(big):
    result = _cli("query", "SELECT qa_id FROM qa LIMIT 99999999999999999999", "--db", str(big), "--engine", "duckdb")
    assert result.exit_code == USER_ERROR
    assert "out of range for the destination type INT64" in _one_line(result.stderr)


def test_a_non_utf8_query_file_is_one_line_naming_it(big, tmp_path):
    path = tmp_path / "latin1.sql"
    path.write_bytes("SELECT count(*) FROM qa -- café\n".encode("latin-1"))
    result = _cli("query", str(path), "--db", str(big))
    assert result.exit_code == USER_ERROR
    assert _one_line(result.stderr) == f"error: {path}: not UTF-8 text (byte 30 is 0xe9); save the query file as UTF-8"


@pytest.mark.parametrize("args, message", [
    (["SELECT 'caf\udce9' AS x"], "error: the query text is not UTF-8 (character 12); write it in UTF-8"),
    (["SELECT $x AS x", "--param", "x=caf\udce9"], "error: a --param NAME=VALUE is not UTF-8 (character 6); write it in UTF-8"),
])
def test_non_utf8_bytes_from_the_shell_are_one_line(big, args, message):
    """Bytes that are not UTF-8 on a command line reach Python as lone surrogates (PEP 383)."""
    result = _cli("query", *args, "--db", str(big))
    assert result.exit_code == USER_ERROR and _one_line(result.stderr) == message


def test_ctrl_c_in_a_reading_command_is_one_line_and_exit_130(demo_db, monkeypatch):
    def interrupted(db):
        raise KeyboardInterrupt

    monkeypatch.setattr("forge.stats.stats_lines", interrupted)
    result = _cli("stats", "--db", str(demo_db))
    assert result.exit_code == INTERRUPTED
    assert _one_line(result.stderr) == "interrupted: forge stats stopped by Ctrl-C"


def test_show_takes_params_for_its_where(demo_db, tmp_path):
    rows = select_rows(demo_db, "qa", "left_right", "margin > $m", 5, {"m": 0.3})
    expected = [r for r in read_table(demo_db).to_pylist() if r["family"] == "left_right" and r["margin"] > 0.3][:5]
    assert [r["qa_id"] for r in rows] == [r["qa_id"] for r in expected] and len(rows) == 5
    result = _cli("show", "--db", str(demo_db), "--where", "margin > $m", "--param", "m=0.3", "--n", "2",
                  "--out", str(tmp_path / "p.html"))
    assert result.exit_code == 0, result.output
    assert "2 rows ->" in result.stdout and (tmp_path / "p.html").is_file()


@pytest.mark.parametrize("args, message", [
    (["--where", "margin > $m"], "error: query needs --param m=..."),
    (["--where", "margin > $m", "--param", "m"], "error: --param 'm': write name=value"),
    (["--where", "margin > 0.3", "--param", "m=1"], "error: --param m: the query has no such parameter"),
])
@pytest.mark.parametrize("command", [["show", "--out", "p.html"], ["sample", "--n", "10", "--dry-run"]])
def test_show_and_sample_param_mistakes_are_one_line(demo_db, command, args, message):
    result = _cli(*command, "--db", str(demo_db), *args)
    assert result.exit_code == USER_ERROR
    assert _one_line(result.stderr).startswith(message)


def test_show_refuses_a_param_that_family_already_sets(demo_db, tmp_path):
    result = _cli("show", "--db", str(demo_db), "--family", "left_right", "--param", "family=depth_order",
                  "--out", str(tmp_path / "p.html"))
    assert result.exit_code == USER_ERROR
    assert _one_line(result.stderr) == "error: --param family: --family already sets $family; give one of them"


def test_sample_takes_params_for_its_where(demo_db):
    with_param, _ = draw(demo_db, Mix(n=40, where="margin > $m", params={"m": 0.3}), seed=1)
    literal, _ = draw(demo_db, Mix(n=40, where="margin > 0.3"), seed=1)
    assert with_param.column("qa_id").to_pylist() == literal.column("qa_id").to_pylist()
    assert with_param.num_rows == 40 and min(with_param.column("margin").to_pylist()) > 0.3
    result = _cli("sample", "--db", str(demo_db), "--n", "40", "--where", "margin > $m", "--param", "m=0.3",
                  "--seed", "1", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "sampled 40 of 40 requested rows" in result.stderr
