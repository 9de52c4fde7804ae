"""`forge stats`: what a database holds — rows per family, answer balance, the last build's funnel."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import lancedb
import pyarrow.compute as pc

from forge.build import funnel_lines
from forge.errors import ForgeError

CHOICE_TYPES = {"two_choice", "yes_no", "multiple_choice"}
POSITION_NAMES = "ABCDE"


def _share(counter: Counter, total: int, top: int = 5) -> str:
    return ", ".join(f"{value} {count / total:.1%}" for value, count in counter.most_common(top))


def stats_lines(db: Path, table: str = "qa") -> list[str]:
    """Readable summary lines; ForgeError when the database or table is missing."""
    if not (db / f"{table}.lance").is_dir():
        raise ForgeError(f"{db}: no `{table}` table here; build one with `forge build SPEC --db {db}`")
    connection = lancedb.connect(str(db))
    qa = connection.open_table(table).to_arrow().select(["family", "answer", "answer_type", "choices", "spec_name"])
    lines = [f"{db}: {qa.num_rows} QA rows, specs: {', '.join(sorted(set(qa.column('spec_name').to_pylist())))}"]
    families: dict[str, list[dict]] = {}
    for row in qa.select(["family", "answer", "answer_type", "choices"]).to_pylist():
        families.setdefault(row["family"], []).append(row)
    for family in sorted(families):
        rows = families[family]
        lines.append(f"  {family:<18} {len(rows):>9} rows")
        types = Counter(r["answer_type"] for r in rows)
        lines.append(f"    answer types: {_share(types, len(rows))}")
        choice_rows = [r for r in rows if r["answer_type"] in CHOICE_TYPES]
        if choice_rows:
            positions = Counter(POSITION_NAMES[r["choices"].index(r["answer"])] for r in choice_rows)
            lines.append(f"    answer position: {_share(positions, len(choice_rows))}")
        lines.append(f"    answers (top 5): {_share(Counter(r['answer'] for r in rows), len(rows))}")
    if (db / "errors.lance").is_dir():
        errors = connection.open_table("errors").to_arrow().to_pylist()
        if errors:
            reasons = Counter(e["reason"].split(":")[0] for e in errors)
            lines.append(f"skipped images: {len(errors)} (table `errors`): "
                         + ", ".join(f"{reason} x{count}" for reason, count in reasons.most_common(5)))
    if (db / "builds.lance").is_dir():
        builds = connection.open_table("builds").to_arrow()
        if builds.num_rows:
            last = builds.take(pc.sort_indices(builds, [("started_at", "descending")])[:1]).to_pylist()[0]
            lines.append(f"last build: spec {last['spec_name']} ({last['spec_hash']}) at {last['started_at']}, "
                         f"{last['images']} images ({last['images_failed']} skipped), {last['qa_rows']} QA rows, "
                         f"{last['seconds']:.1f} s")
            lines.extend(funnel_lines(json.loads(last["funnel"])))
    return lines
