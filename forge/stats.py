"""`forge stats`: what a database holds — rows per family, answer balance, where the images' cameras and
gravity came from, the last build's funnel."""

from __future__ import annotations

import json
from pathlib import Path

import lancedb
import pyarrow.compute as pc

from forge.judge.verify import funnel_lines
from forge.errors import ForgeError
from forge.query import run_query

CHOICE_TYPES = ("two_choice", "yes_no", "multiple_choice")
POSITION_NAMES = "ABCDE"


def _grouped(db: Path, sql: str) -> dict[str, list[tuple[object, int]]]:
    """family -> [(value, rows)], largest first: aggregated by SQL, so a 10M-row table is never loaded."""
    out: dict[str, list[tuple[object, int]]] = {}
    for row in run_query(db, sql).to_pylist():
        out.setdefault(row["family"], []).append((row["value"], row["n"]))
    for cells in out.values():
        cells.sort(key=lambda cell: (-cell[1], str(cell[0])))
    return out


def _share(cells: list[tuple[object, int]], total: int, top: int = 5) -> str:
    return ", ".join(f"{value} {count / total:.1%}" for value, count in cells[:top])


def stats_lines(db: Path, table: str = "qa") -> list[str]:
    """Readable summary lines; ForgeError when the database or table is missing."""
    if not (db / f"{table}.lance").is_dir():
        raise ForgeError(f"{db}: no `{table}` table here; build one with `forge build SPEC --db {db}`")
    families = {r["family"]: r["n"] for r in run_query(db, f"SELECT family, count(*) AS n FROM {table} GROUP BY 1").to_pylist()}
    specs = run_query(db, f"SELECT DISTINCT spec_name FROM {table} ORDER BY 1").column("spec_name").to_pylist()
    lines = [f"{db}: {sum(families.values())} QA rows, specs: {', '.join(specs)}"]
    types = _grouped(db, f"SELECT family, answer_type AS value, count(*) AS n FROM {table} GROUP BY 1, 2")
    choice_types = ", ".join(f"'{t}'" for t in CHOICE_TYPES)
    positions = _grouped(db, f"SELECT family, list_position(choices, answer) AS value, count(*) AS n FROM {table} "
                             f"WHERE answer_type IN ({choice_types}) GROUP BY 1, 2")
    answers = _grouped(db, f"SELECT family, answer AS value, count(*) AS n FROM {table} GROUP BY 1, 2 "
                           f"QUALIFY row_number() OVER (PARTITION BY family ORDER BY count(*) DESC, answer) <= 5")
    for family in sorted(families):
        rows = families[family]
        lines.append(f"  {family:<18} {rows:>9} rows")
        lines.append(f"    answer types: {_share(types[family], rows)}")
        if family in positions:
            choice_rows = sum(count for _, count in positions[family])
            named = [(POSITION_NAMES[value - 1], count) for value, count in positions[family] if value is not None]
            if named:  # rows whose answer is not among their choices have no position
                lines.append(f"    answer position: {_share(named, choice_rows)}")
        lines.append(f"    answers (top 5): {_share(answers[family], rows)}")
    geometry = _grouped(db, f"SELECT 'all' AS family, concat(coalesce(camera_source, 'unknown'), '|', "
                            f"coalesce(gravity_source, 'unknown')) AS value, count(DISTINCT image_id) AS n FROM {table} GROUP BY 1, 2")
    if geometry:
        images = sum(count for _, count in geometry["all"])
        for position, what in ((0, "cameras"), (1, "gravity")):
            counts: dict[str, int] = {}
            for value, count in geometry["all"]:
                part = str(value).split("|")[position]
                counts[part] = counts.get(part, 0) + count
            cells = sorted(counts.items(), key=lambda cell: (-cell[1], cell[0]))
            lines.append(f"{what} of the {images} images asked about: {_share(cells, images, top=len(cells))}")
    if (db / "errors.lance").is_dir():
        skipped = _grouped(db, "SELECT 'all' AS family, split_part(reason, ':', 1) AS value, count(*) AS n FROM errors GROUP BY 1, 2")
        if skipped:
            cells = skipped["all"]
            lines.append(f"skipped images: {sum(count for _, count in cells)} (table `errors`): "
                         + ", ".join(f"{reason} x{count}" for reason, count in cells[:5]))
    connection = lancedb.connect(str(db))
    if (db / "builds.lance").is_dir():
        builds = connection.open_table("builds").to_arrow()
        if builds.num_rows:
            last = builds.take(pc.sort_indices(builds, [("started_at", "descending")])[:1]).to_pylist()[0]
            lines.append(f"last build: spec {last['spec_name']} ({last['spec_hash']}) at {last['started_at']}, "
                         f"{last['images']} images ({last['images_failed']} skipped), {last['qa_rows']} QA rows, "
                         f"{last['seconds']:.1f} s")
            lines.extend(funnel_lines(json.loads(last["funnel"])))
    return lines
