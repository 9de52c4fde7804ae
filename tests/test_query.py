"""forge query over a built database: saved queries, parameters, joins, formats, errors, indexes."""

from __future__ import annotations

import json
from collections import Counter

import lancedb
import polars as pl
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from conftest import REPO, copy_db, demo_dict, read_table, write_spec
from forge.build import run_build
from forge.cli import main
from forge.query import run_query
from forge.spec.load import load_spec
from forge.store import QA_INDEXES
from scene_data import make_dataset, use_annotations

QUERIES = REPO / "queries"


@pytest.fixture(scope="module")
def db(tmp_path_factory, demo_db):
    folder = tmp_path_factory.mktemp("query")
    copy_db(demo_db, folder)
    make_dataset(folder / "data", "npy_m", drop_depth_for=2, count=6, clutter=False)
    run_build(load_spec(write_spec(folder, use_annotations(demo_dict(), "npy_m"), name="ann.yaml")), folder / "db",
              echo=lambda _: None)
    return folder / "db"


def _cli(*args: str):
    return CliRunner().invoke(main, ["query", *args])


def test_per_family_counts_match_the_table(db):
    rows = read_table(db).to_pylist()
    result = run_query(db, (QUERIES / "per_family_counts.sql").read_text()).to_pylist()
    expected = Counter((r["spec_name"], r["family"]) for r in rows)
    assert {(r["spec_name"], r["family"]): r["rows"] for r in result} == dict(expected)
    images = {(r["spec_name"], r["family"]): len({x["image_id"] for x in rows if (x["spec_name"], x["family"]) == (r["spec_name"], r["family"])}) for r in result}
    assert {(r["spec_name"], r["family"]): r["images"] for r in result} == images


def test_answer_balance_shares_add_up(db):
    result = run_query(db, (QUERIES / "answer_balance.sql").read_text()).to_pylist()
    for family in {r["family"] for r in result}:
        assert sum(r["share"] for r in result if r["family"] == family) == pytest.approx(1.0, abs=1e-3)
    left = next(r for r in result if r["family"] == "left_right" and r["answer"] == "left")
    assert left["rows"] == sum(1 for r in read_table(db).to_pylist() if r["family"] == "left_right" and r["answer"] == "left")


def test_parameters_and_the_low_margin_slice(db):
    result = _cli(str(QUERIES / "low_margin.sql"), "--db", str(db), "--param", "family=depth_order",
                  "--param", "max_margin=0.4", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert rows and len(rows) <= 100
    assert all(r["margin"] < 0.4 for r in rows)
    assert [r["margin"] for r in rows] == sorted(r["margin"] for r in rows)
    truth = {r["qa_id"] for r in read_table(db).to_pylist() if r["family"] == "depth_order" and r["margin"] < 0.4}
    assert {r["qa_id"] for r in rows} <= truth and len(rows) == min(100, len(truth))


def test_joins_between_forge_tables_and_skipped_images(db):
    joined = run_query(db, "SELECT q.spec_name, count(*) AS n, max(b.images) AS images FROM qa q "
                           "JOIN builds b USING (spec_hash) GROUP BY 1 ORDER BY 1").to_pylist()
    assert [r["spec_name"] for r in joined] == ["demo", "demo_annotated"]
    assert joined[0]["images"] == 60
    skipped = run_query(db, (QUERIES / "skipped_images.sql").read_text()).to_pylist()
    assert [(r["spec_name"], r["reason"], r["images"]) for r in skipped] == [("demo_annotated", "cannot read depth map", 1)]
    sources = run_query(db, (QUERIES / "per_source_counts.sql").read_text()).to_pylist()
    assert {r["perception"] for r in sources} == {"synthetic", "annotations"}


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet", "table"])
def test_every_format_parses_back(db, tmp_path, fmt):
    sql = "SELECT qa_id, family, margin, choices, objects FROM qa ORDER BY qa_id LIMIT 7"
    expected = run_query(db, sql).to_pylist()
    out = tmp_path / f"result.{fmt}"
    result = _cli(sql, "--db", str(db), "--format", fmt, "--out", str(out))
    assert result.exit_code == 0, result.output
    if fmt == "parquet":
        assert pq.read_table(out).to_pylist() == expected
    elif fmt == "json":
        assert json.loads(out.read_text()) == expected
    elif fmt == "csv":
        back = pl.read_csv(out, infer_schema=False).to_dicts()
        assert [r["qa_id"] for r in back] == [r["qa_id"] for r in expected]
        assert [float(r["margin"]) for r in back] == [r["margin"] for r in expected]
        assert [json.loads(r["choices"]) for r in back] == [r["choices"] for r in expected]
        assert [json.loads(r["objects"]) for r in back] == [r["objects"] for r in expected]
    else:
        text = out.read_text()
        assert "7 rows" in text and expected[0]["family"] in text


@pytest.mark.parametrize("args, message", [
    (["SELEC 1"], "query failed: Parser Error"),
    (["SELECT * FROM nope"], "query failed: Catalog Error"),
    ([str(QUERIES / "low_margin.sql")], "query needs --param family=..., max_margin=..."),
    (["SELECT 1", "--param", "x=1"], "--param x: the query has no such parameter"),
    (["SELECT 1", "--param", "x"], "--param 'x': write name=value"),
    (["missing.sql"], "missing.sql: query file not found"),
    (["SELECT 1", "--format", "parquet"], "--format parquet needs --out"),
])
def test_mistakes_are_one_line(db, args, message):
    result = _cli(*args, "--db", str(db))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_query_without_a_database(tmp_path):
    result = _cli("SELECT 1", "--db", str(tmp_path / "none"))
    assert result.exit_code == 2 and "no forge tables here" in result.stderr


def test_indexes_exist_and_cover_new_rows(db):
    table = lancedb.connect(str(db)).open_table("qa")
    indexes = {index.columns[0]: index for index in table.list_indices()}
    assert set(indexes) == set(QA_INDEXES)
    assert all(index.num_unindexed_rows == 0 for index in indexes.values())
    assert table.count_rows("family = 'left_right' AND margin > 0.2") == sum(
        1 for r in read_table(db).to_pylist() if r["family"] == "left_right" and r["margin"] > 0.2)


@pytest.mark.parametrize("sql, simple", [
    ("SELECT * FROM qa LIMIT 10", True),
    ("select qa_id, margin from qa where family = 'left_right' and margin > 0.2 limit 5;", True),
    ("SELECT * FROM qa WHERE family = 'x' ORDER BY margin LIMIT 5", False),
    ("SELECT family, count(*) FROM qa GROUP BY family LIMIT 5", False),
    ("SELECT * FROM qa WHERE qa_id IN (SELECT qa_id FROM qa) LIMIT 5", False),
    ("SELECT * FROM qa WHERE family = $family LIMIT 5", False),
    ("SELECT * FROM qa", False),
    ("SELECT upper(family) FROM qa LIMIT 5", False),
])
def test_only_plain_slices_take_the_lance_path(sql, simple):
    from forge.query import plain_slice

    assert (plain_slice(sql) is not None) == simple


def test_both_engines_return_the_same_slice(db):
    sql = "SELECT qa_id, margin FROM qa WHERE family = 'left_right' AND margin > 0.3 LIMIT 100000"
    lance_rows = run_query(db, sql, engine="lance").to_pylist()
    duck_rows = run_query(db, sql, engine="duckdb").to_pylist()
    assert lance_rows and sorted(map(str, lance_rows)) == sorted(map(str, duck_rows))
    limited = run_query(db, sql.replace("100000", "7"), engine="auto").to_pylist()
    assert len(limited) == 7 and all(r["margin"] > 0.3 for r in limited)


def test_auto_falls_back_to_duckdb_and_lance_engine_says_why(db):
    sql = "SELECT qa_id FROM qa WHERE regexp_matches(question, 'cube') LIMIT 5"  # DuckDB-only function
    rows = run_query(db, sql).to_pylist()
    assert len(rows) == 5
    result = _cli(sql, "--db", str(db), "--engine", "lance")
    assert result.exit_code == 2 and "query failed in the Lance engine" in result.stderr
    result = _cli("SELECT family, count(*) FROM qa GROUP BY family", "--db", str(db), "--engine", "lance")
    assert result.exit_code == 2 and "--engine lance runs only plain slices" in result.stderr


def test_a_query_result_exports_to_training_formats(db, tmp_path):
    sql = "SELECT * FROM qa WHERE family = 'left_right' AND margin > 0.2 ORDER BY qa_id LIMIT 20"
    expected = run_query(db, sql).to_pylist()
    result = _cli(sql, "--db", str(db), "--format", "llava", "--out", str(tmp_path / "q"))
    assert result.exit_code == 0, result.output
    items = json.loads((tmp_path / "q" / "llava.json").read_text())
    assert [i["id"] for i in items] == [r["qa_id"] for r in expected]
    assert items[0]["conversations"][1]["value"] == expected[0]["answer"]
    assert all((tmp_path / "q" / i["image"]).is_file() and i["split"] in ("train", "val", "test") for i in items)
    result = _cli("SELECT qa_id FROM qa LIMIT 3", "--db", str(db), "--format", "llava", "--out", str(tmp_path / "x"))
    assert result.exit_code == 2 and "needs the QA columns image_id, image_uri, family, question" in result.stderr


@pytest.mark.parametrize("sql, message", [
    ("COPY qa TO '{tmp}/leak.csv'", "COPY is refused"),
    ("ATTACH '{tmp}/other.db' AS other", "ATTACH is refused"),
    ("CREATE TABLE t AS SELECT * FROM qa", "CREATE is refused"),
    ("SELECT * FROM read_csv('/etc/passwd')", "file system operations are disabled"),
    ("SELECT * FROM read_text('/etc/hostname')", "file system operations are disabled"),
    ("SELECT * FROM glob('/root/**')", "file system operations are disabled"),
    ("SELECT * FROM qa WHERE qa_id IN (SELECT content FROM read_text('{tmp}/ids.txt'))", "file system operations are disabled"),
    ("SELECT 1; COPY qa TO '{tmp}/x.csv'", "runs one statement; this text has 2"),
    ("SELECT 1; SELECT 2", "runs one statement; this text has 2"),
    ("SET enable_external_access = true", "SET is refused"),
    ("INSTALL httpfs", "LOAD is refused"),
    ("COPY (SELECT 1) TO '{db}/qa.lance/_versions/1.manifest'", "COPY is refused"),
])
def test_queries_only_read_the_database(db, tmp_path, sql, message):
    """Saved .sql files travel between people: a query may not read or write any file, nor change the db."""
    (tmp_path / "ids.txt").write_text("1\n")
    before = read_table(db).num_rows
    result = _cli(sql.format(tmp=tmp_path, db=db), "--db", str(db))
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert message in result.stderr, result.stderr
    assert not (tmp_path / "leak.csv").exists() and not (tmp_path / "other.db").exists()
    assert read_table(db).num_rows == before and _cli("SELECT count(*) AS n FROM qa", "--db", str(db)).exit_code == 0


@pytest.mark.parametrize("fmt", ["csv", "json", "table"])
def test_variant_columns_come_out_as_json_text(db, fmt):
    result = _cli("SELECT CAST([1, 2] AS VARIANT) AS v, family FROM qa ORDER BY qa_id LIMIT 2", "--db", str(db),
                  "--format", fmt)
    assert result.exit_code == 0, result.output
    assert "[1,2]" in result.stdout
