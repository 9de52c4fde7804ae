"""`forge query`: SQL over a forge database.

Every table in the database folder (qa, builds, errors, perception_*) is visible under its name.
Two engines, chosen by measurement (bench/RESULTS.md):
- DuckDB for everything: it reads the Lance datasets through their Arrow dataset interface and
  gives full SQL — GROUP BY, joins between forge tables, window functions.
- a Lance scan for plain slices, `SELECT cols FROM table [WHERE filter] LIMIT n`: it stops after n
  matches (29 ms at 10M rows, where DuckDB takes 0.33 s and the scalar indexes, which first
  materialize every match, 0.2 s).
Queries only read: one SELECT statement, on a DuckDB connection that can touch no file but its own
spill folder (saved `.sql` files travel between people; a query must not read or write outside the
database, nor change it). Ctrl-C and --timeout stop either engine (forge.stopping).
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

import duckdb
import lance
import polars as pl
import pyarrow as pa

from forge.errors import ForgeError
from forge.spill import spill_folder
from forge.stopping import TimedOut, run_polling, run_stoppable

# no file system, no extensions, and no way for the query to turn either back on
READ_ONLY = {"enable_external_access": False, "autoload_known_extensions": False, "autoinstall_known_extensions": False,
             "allow_community_extensions": False, "lock_configuration": True}


def read_query(text_or_file: str) -> str:
    """SQL given inline, or read from a .sql file (UTF-8, as DuckDB reads SQL)."""
    if text_or_file.endswith(".sql"):
        path = Path(text_or_file)
        if not path.is_file():
            raise ForgeError(f"{path}: query file not found (give SQL text or a path to a .sql file, e.g. queries/per_family_counts.sql)")
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ForgeError(f"{path}: not UTF-8 text (byte {exc.start} is 0x{exc.object[exc.start]:02x}); save the "
                             f"query file as UTF-8") from None
        except OSError as exc:
            raise ForgeError(f"{path}: cannot read the query file ({exc.strerror})") from None
    return _utf8(text_or_file, "the query text")


def _utf8(text: str, what: str) -> str:
    """`text` itself, or one line when it holds bytes that are not UTF-8 (the shell passes them through as
    lone surrogates, which DuckDB cannot take)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ForgeError(f"{what} is not UTF-8 (character {exc.start + 1}); write it in UTF-8") from None
    return text


def parse_params(pairs: tuple[str, ...]) -> dict[str, object]:
    """--param name=value pairs; values that look like numbers become numbers."""
    params: dict[str, object] = {}
    for pair in pairs:
        name, sep, value = _utf8(pair, "a --param NAME=VALUE").partition("=")
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


INT64_MAX = 2**63 - 1


def _lance_slice(dataset: lance.LanceDataset, match: re.Match) -> pa.Table:
    columns = None if match["columns"] == "*" else [c.strip() for c in match["columns"].split(",")]
    limit = min(int(match["limit"]), INT64_MAX)  # Lance takes an int64; no table has more rows anyway
    return dataset.to_table(columns=columns, filter=match["where"], limit=limit, use_scalar_index=False)


def _open_tables(db: Path) -> tuple[dict[str, lance.LanceDataset], dict[str, str]]:
    """Every readable `*.lance` table by name, and for each unreadable one (an empty `junk.lance`, a broken
    copy), by its lower-case name, the line that says so: a folder forge does not need must not break
    queries over the others, and a query that names it gets that line."""
    readable, unreadable = {}, {}
    for path in sorted(p for p in db.glob("*.lance") if p.is_dir()) if db.is_dir() else []:
        try:
            readable[path.stem] = lance.dataset(str(path))
        except (ValueError, OSError) as exc:
            reason = re.sub(r",\s*/\S+\.rs:\d+:\d+", "", " ".join(str(exc).split()))  # Rust source locations
            unreadable[path.stem.lower()] = (f"{path}: not a readable Lance table ({reason}); rebuild it with "
                                             f"`forge build`, or remove the folder")
    return readable, unreadable


@contextmanager
def _time_limit(timeout: float | None) -> Iterator[None]:
    try:
        yield
    except TimedOut:
        raise ForgeError(f"query timed out after {timeout:g} s (--timeout {timeout:g}); raise the limit with "
                         f"--timeout SECONDS, or leave --timeout out for no limit") from None


def run_query(db: Path, sql: str, params: dict[str, object] | None = None, engine: str = "auto",
              timeout: float | None = None) -> pa.Table:
    """Run one SELECT with $name parameters over every table of the database, read-only; ForgeError on
    bad SQL, on anything but one SELECT and after `timeout` seconds; Ctrl-C stops the engine within
    a fraction of a second and raises KeyboardInterrupt."""
    _only_one_select(sql)
    datasets, unreadable = _open_tables(db)
    if not datasets and unreadable:  # say why, rather than that there is nothing
        raise ForgeError(unreadable.get("qa", next(iter(unreadable.values()))))
    if not datasets:
        raise ForgeError(f"{db}: no forge tables here; build one with `forge build SPEC --db {db}`")
    match = plain_slice(sql) if engine != "duckdb" and not params else None
    if engine == "lance" and match is None:
        raise ForgeError("--engine lance runs only plain slices: SELECT columns FROM table [WHERE filter] LIMIT n (no $params)")
    if match is not None and match["table"].lower() in unreadable:
        raise ForgeError(unreadable[match["table"].lower()])
    if match is not None and match["table"] in datasets:
        try:
            with _time_limit(timeout):
                return run_polling(lambda: _lance_slice(datasets[match["table"]], match), timeout)
        except (ValueError, OSError) as exc:  # Lance's filter dialect differs from DuckDB's in places
            if engine == "lance":
                raise ForgeError(f"query failed in the Lance engine: {' '.join(str(exc).split())[:300]}") from None
    params = params or {}
    check_params(sql, params)
    return _duckdb(db, sql, params, datasets, unreadable, timeout)


def check_params(sql: str, params: dict[str, object]) -> None:
    """ForgeError when the $name placeholders of `sql` and the --param names differ."""
    wanted = set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", sql))
    missing, unused = wanted - set(params), set(params) - wanted
    if missing:
        raise ForgeError(f"query needs --param {', '.join(f'{m}=...' for m in sorted(missing))}")
    if unused:
        raise ForgeError(f"--param {', '.join(sorted(unused))}: the query has no such parameter (it uses: {', '.join(sorted(wanted)) or 'none'})")


def open_table(db: Path, name: str) -> lance.LanceDataset:
    """One table of the database, or ForgeError saying why it cannot be read (as a query naming it would)."""
    datasets, unreadable = _open_tables(db)
    if name in datasets:
        return datasets[name]
    if name.lower() in unreadable:
        raise ForgeError(unreadable[name.lower()])
    raise ForgeError(f"{db}: no {name} table here; build one with `forge build SPEC --db {db}`")


def _duckdb(db: Path, sql: str, params: dict[str, object], datasets: dict[str, lance.LanceDataset],
            unreadable: dict[str, str], timeout: float | None) -> pa.Table:
    """The query on a read-only DuckDB connection that sees every readable table and spills into the database."""
    with spill_folder(db) as spill:
        connection = duckdb.connect(config={**READ_ONLY, "temp_directory": str(spill)})
        try:
            for name, dataset in datasets.items():
                connection.register(name, dataset)
            with _time_limit(timeout):
                return run_stoppable(lambda: _portable(connection.sql(sql, params=params or None)).to_arrow_table(),
                                     connection.interrupt, timeout)
        except duckdb.Error as exc:
            reason = " ".join(str(exc).split())
            named = re.search(r"Table with name (\S+) does not exist", reason)
            if named and named[1].lower() in unreadable:
                raise ForgeError(unreadable[named[1].lower()]) from None
            raise ForgeError(f"query failed: {reason} (tables: {', '.join(datasets)})") from None
        finally:
            with suppress(duckdb.Error):  # a query that ignored its stop keeps the connection; the process end closes it
                connection.close()


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
