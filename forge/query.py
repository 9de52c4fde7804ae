"""`forge query`: SQL over a forge database.

Every table in the database folder (qa, builds, errors, perception_*) is visible under its name.
Two engines, chosen by measurement (bench/RESULTS.md):
- DuckDB for everything: it reads the Lance datasets through their Arrow dataset interface and
  gives full SQL — GROUP BY, joins between forge tables, window functions.
- a Lance scan for plain slices, `SELECT cols FROM table [WHERE filter] LIMIT n`: it stops after n
  matches (29 ms at 10M rows, where DuckDB takes 0.33 s and the scalar indexes, which first
  materialize every match, 0.2 s).
Queries only read: one SELECT statement, on a DuckDB connection that can touch no file (saved `.sql`
files travel between people; a query must not read or write outside the database, nor change it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import lance
import polars as pl
import pyarrow as pa

from forge.errors import ForgeError

# no file system, no extensions, and no way for the query to turn either back on
READ_ONLY = {"enable_external_access": False, "autoload_known_extensions": False, "autoinstall_known_extensions": False,
             "allow_community_extensions": False, "lock_configuration": True}


def read_query(text_or_file: str) -> str:
    """SQL given inline, or read from a .sql file."""
    if text_or_file.endswith(".sql"):
        path = Path(text_or_file)
        if not path.is_file():
            raise ForgeError(f"{path}: query file not found (give SQL text or a path to a .sql file, e.g. queries/per_family_counts.sql)")
        return path.read_text(encoding="utf-8")
    return text_or_file


def parse_params(pairs: tuple[str, ...]) -> dict[str, object]:
    """--param name=value pairs; values that look like numbers become numbers."""
    params: dict[str, object] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ForgeError(f"--param {pair!r}: write name=value, e.g. --param family=depth_order")
        try:
            params[name] = int(value)
        except ValueError:
            try:
                params[name] = float(value)
            except ValueError:
                params[name] = value
    return params


_SLICE = re.compile(r"^\s*SELECT\s+(?P<columns>\*|[A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s+FROM\s+(?P<table>[A-Za-z_]\w*)"
                    r"(?:\s+WHERE\s+(?P<where>.+?))?\s+LIMIT\s+(?P<limit>\d+)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
_NOT_A_SLICE = re.compile(r"\b(ORDER|GROUP|HAVING|JOIN|UNION|SELECT|OFFSET|QUALIFY|WINDOW)\b|\$|--|/\*", re.IGNORECASE)


def plain_slice(sql: str) -> re.Match | None:
    """The parts of `SELECT cols FROM table [WHERE filter] LIMIT n`, or None for any other query."""
    match = _SLICE.match(sql)
    if match is None or (match["where"] and _NOT_A_SLICE.search(match["where"])):
        return None
    return match


def _lance_slice(path: Path, match: re.Match) -> pa.Table:
    columns = None if match["columns"] == "*" else [c.strip() for c in match["columns"].split(",")]
    return lance.dataset(str(path)).to_table(columns=columns, filter=match["where"], limit=int(match["limit"]),
                                            use_scalar_index=False)


def run_query(db: Path, sql: str, params: dict[str, object] | None = None, engine: str = "auto") -> pa.Table:
    """Run one SELECT with $name parameters over every table of the database, read-only; ForgeError on
    bad SQL and on anything but one SELECT."""
    _only_one_select(sql)
    tables = sorted(p for p in db.glob("*.lance") if p.is_dir()) if db.is_dir() else []
    if not tables:
        raise ForgeError(f"{db}: no forge tables here; build one with `forge build SPEC --db {db}`")
    match = plain_slice(sql) if engine != "duckdb" and not params else None
    if engine == "lance" and match is None:
        raise ForgeError("--engine lance runs only plain slices: SELECT columns FROM table [WHERE filter] LIMIT n (no $params)")
    if match is not None and (db / f"{match['table']}.lance").is_dir():
        try:
            return _lance_slice(db / f"{match['table']}.lance", match)
        except (ValueError, OSError) as exc:  # Lance's filter dialect differs from DuckDB's in places
            if engine == "lance":
                raise ForgeError(f"query failed in the Lance engine: {' '.join(str(exc).split())[:300]}") from None
    wanted = set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", sql))
    params = params or {}
    missing, unused = wanted - set(params), set(params) - wanted
    if missing:
        raise ForgeError(f"query needs --param {', '.join(f'{m}=...' for m in sorted(missing))}")
    if unused:
        raise ForgeError(f"--param {', '.join(sorted(unused))}: the query has no such parameter (it uses: {', '.join(sorted(wanted)) or 'none'})")
    connection = duckdb.connect(config=READ_ONLY)
    for path in tables:
        connection.register(path.stem, lance.dataset(str(path)))
    try:
        return _portable(connection.sql(sql, params=params or None)).to_arrow_table()
    except duckdb.Error as exc:
        reason = " ".join(str(exc).split())
        raise ForgeError(f"query failed: {reason} (tables: {', '.join(p.stem for p in tables)})") from None


def _portable(relation: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    """VARIANT columns as JSON text: no output format (CSV, Polars, Parquet readers) takes DuckDB's variant."""
    types = [str(kind).upper() for kind in relation.types]
    if not any(kind.startswith("VARIANT") for kind in types):
        return relation
    quoted = ['"' + name.replace('"', '""') + '"' for name in relation.columns]
    return relation.project(", ".join(f"CAST({q} AS JSON)::VARCHAR AS {q}" if kind.startswith("VARIANT") else q
                                      for q, kind in zip(quoted, types)))


def _only_one_select(sql: str) -> None:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ForgeError(f"query failed: {' '.join(str(exc).split())}") from None
    if len(statements) != 1:
        raise ForgeError(f"forge query runs one statement; this text has {len(statements)} (drop all but one SELECT)")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise ForgeError(f"forge query only reads: {kind.name} is refused (write one SELECT ... FROM a forge table)")


def _flat(table: pa.Table) -> pl.DataFrame:
    """Nested columns (lists, structs) as JSON text, for formats that hold only flat values."""
    frame = pl.from_arrow(table)
    nested = [name for name, dtype in frame.schema.items() if dtype.is_nested()]
    return frame.with_columns(
        pl.Series(name, [json.dumps(v) for v in table.column(name).to_pylist()]) for name in nested)


def write_result(table: pa.Table, fmt: str, out: Path | None) -> str | None:
    """Write to `out` (parquet needs one) or return the text to print."""
    if fmt == "parquet":
        if out is None:
            raise ForgeError("--format parquet needs --out FILE.parquet")
        pl.from_arrow(table).write_parquet(out)
        return None
    if fmt == "csv":
        text = _flat(table).write_csv()
    elif fmt == "json":
        text = json.dumps(table.to_pylist(), default=str, indent=1)
    else:
        with pl.Config(tbl_rows=50, tbl_cols=-1, fmt_str_lengths=60, tbl_width_chars=160):
            text = f"{_flat(table)}\n{table.num_rows} rows"
    if out is not None:
        out.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        return None
    return text
