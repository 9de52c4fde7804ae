"""`forge sample`: draw a training mixture from the QA table, deterministically.

1. Candidates: rows passing `--where`, in the requested split (assigned from the image id, so
   an image never lands in two splits), with identical questions on one image kept once.
2. Family quotas: explicit counts, or `n` shared by weights.
3. Within a family, rows are grouped into cells by the `stratify` columns and each cell gets an
   equal share; cells too small to fill theirs pass the remainder to the others (water-filling).
4. Inside a cell, rows are taken in a seeded order of their qa_id (a 64-bit hash already), so the
   same seed gives the same sample and another seed a different one.
The report says what could not be filled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional

import lance
import polars as pl
import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forge.errors import ForgeError
from forge.query import run_query
from forge.yaml_files import read_yaml_text

SPLIT_NAMES = ("train", "val", "test")
DEFAULT_SPLITS = {"train": 0.9, "val": 0.05, "test": 0.05}


@dataclass
class Mix:
    """What to draw: family weights or quotas, total size, stratification, filter, split."""

    weights: dict[str, float] = field(default_factory=dict)
    quotas: dict[str, int] = field(default_factory=dict)
    n: int | None = None
    stratify: list[str] = field(default_factory=list)
    where: str | None = None
    params: dict[str, object] = field(default_factory=dict)  # values of the $name placeholders in `where`
    split: str | None = None
    splits: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SPLITS))


class _MixFile(BaseModel):
    """A mix file's keys and their types; what `forge sample --mix` reads."""

    model_config = ConfigDict(extra="forbid", strict=True)
    n: Optional[int] = Field(None, ge=1, description="rows in all")
    families: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict, description="family -> weight")
    quotas: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict, description="family -> rows")
    stratify: list[str] = Field(default_factory=list, description="columns whose values each get an equal share")
    where: Optional[str] = None
    split: Optional[Literal["train", "val", "test"]] = None
    splits: dict[Literal["train", "val", "test"], Annotated[float, Field(ge=0)]] = Field(default_factory=lambda: dict(DEFAULT_SPLITS))


def load_mix(path: Path) -> Mix:
    """A mix file: {n, families: {name: weight}, quotas: {name: count}, stratify, where, split, splits};
    ForgeError (one line naming the key and what it must be) when it is not one."""
    data = yaml.safe_load(read_yaml_text(path, "mix file"))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ForgeError(f"{path}: a mix file is a YAML mapping with keys n, families, quotas, stratify, where, split, "
                         "splits (see mixes/balanced.yaml)")
    try:
        mix = _MixFile.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        given = f", got {error['input']!r}" if "input" in error and error["type"] != "extra_forbidden" else ""
        message = "unknown key (allowed: n, families, quotas, stratify, where, split, splits)" \
            if error["type"] == "extra_forbidden" else error["msg"].removeprefix("Value error, ")
        raise ForgeError(f"{path}: {where}: {message}{given}") from None
    return Mix(weights=dict(mix.families), quotas=dict(mix.quotas), n=mix.n, stratify=list(mix.stratify),
               where=mix.where, split=mix.split, splits=dict(mix.splits))


IMAGE_POSITION_SQL = "CAST('0x' || substr(image_id, 1, 8) AS UBIGINT)"


def split_expr(splits: dict[str, float], position: pl.Expr | None = None) -> pl.Expr:
    """Split of each row from its image id (a sha256 prefix): the same image always lands in one split.

    `position` is the id's first 32 bits as an integer column, when already computed.
    """
    total = sum(splits.values())
    if total <= 0 or any(v < 0 for v in splits.values()):
        raise ForgeError(f"splits {splits}: fractions must be >= 0 and sum to more than 0")
    bits = position if position is not None else pl.col("image_id").str.slice(0, 8).str.to_integer(base=16)
    position = bits.cast(pl.Float64) / 2**32
    expr, edge = None, 0.0
    for name, share in splits.items():
        edge += share / total
        condition = position < edge
        expr = pl.when(condition).then(pl.lit(name)) if expr is None else expr.when(condition).then(pl.lit(name))
    return expr.otherwise(pl.lit(list(splits)[-1]))


def _water_fill(sizes: list[int], target: int) -> list[int]:
    """Equal shares of `target` over cells, capped by their sizes, remainder to the larger cells."""
    take = [0] * len(sizes)
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    remaining, left = target, len(sizes)
    for i in order:
        share = min(sizes[i], remaining // left if left else 0)
        take[i], remaining, left = share, remaining - share, left - 1
    for i in reversed(order):  # integer division leftovers, to cells that still have rows
        extra = min(remaining, sizes[i] - take[i])
        take[i], remaining = take[i] + extra, remaining - extra
    return take


@dataclass
class SampleReport:
    requested: dict[str, int]
    obtained: dict[str, int]
    cells: dict[str, dict[str, int]]
    duplicates_dropped: int

    def lines(self) -> list[str]:
        out = [f"sampled {sum(self.obtained.values())} of {sum(self.requested.values())} requested rows "
               f"({self.duplicates_dropped} duplicate questions skipped)"]
        for family, wanted in self.requested.items():
            got = self.obtained.get(family, 0)
            short = f" — could not fill {wanted - got}" if got < wanted else ""
            out.append(f"  {family:<18} {got:>9} / {wanted}{short}")
        return out


def _fetch(db: Path, picked: pl.DataFrame) -> pa.Table:
    """Full rows for the picked qa ids, by position: Lance's take reads only those rows
    (1M of 10M in ~3 s), where a join would scan every column of every row."""
    dataset = lance.dataset(str(db / "qa.lance"))
    positions = (pl.from_arrow(dataset.to_table(columns=["qa_id"])).with_row_index("position")
                 .select(pl.col("qa_id").cast(pl.UInt64).alias("qid"), "position")
                 .join(picked, on="qid").get_column("position").sort())
    return dataset.take(positions.to_numpy())


def draw(db: Path, mix: Mix, seed: int) -> tuple[pa.Table, SampleReport]:
    """The sampled qa rows (all columns plus `split`) and what was (not) filled."""
    if not mix.weights and not mix.quotas:
        if mix.n is None:
            raise ForgeError("say what to sample: --n N (every family equally), --family NAME=WEIGHT with --n, "
                             "--quota NAME=COUNT, or --mix FILE")
        names = run_query(db, "SELECT DISTINCT family FROM qa ORDER BY family").column("family").to_pylist()
        mix.weights = {name: 1.0 for name in names}
    if mix.weights and mix.n is None:
        raise ForgeError("family weights need a total: --n N (or n: in the mix file)")
    if mix.split is not None and mix.split not in mix.splits:
        raise ForgeError(f"--split {mix.split!r}: not one of {', '.join(mix.splits)}")
    # compact keys instead of strings: a 10M-row table scans in ~1 s and ~0.5 GB
    strata = ", ".join(dict.fromkeys(c for c in mix.stratify if c != "family"))
    where = f"WHERE {mix.where}" if mix.where else ""
    candidates = pl.from_arrow(run_query(db, (
        f"SELECT CAST(qa_id AS UBIGINT) AS qid, {IMAGE_POSITION_SQL} AS image_position, "
        f"hash(image_id, question) AS same_question, family{', ' + strata if strata else ''} FROM qa {where}"),
        mix.params))
    if mix.split is not None:
        candidates = candidates.filter(split_expr(mix.splits, pl.col("image_position")) == mix.split)
    mixer = (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % 2**64
    candidates = candidates.with_columns(order=pl.col("qid") ^ pl.lit(mixer, pl.UInt64))
    before = candidates.height
    # keep the first of each identical question in seeded order (a window minimum: no 10M-row sort)
    candidates = candidates.filter(pl.col("order") == pl.col("order").min().over("same_question"))
    duplicates = before - candidates.height

    families = list(mix.quotas) or list(mix.weights)
    if mix.quotas:
        requested = dict(mix.quotas)
    else:
        total = sum(mix.weights.values())
        requested = {f: int(round(mix.n * w / total)) for f, w in mix.weights.items()}
    chosen, cells_report, obtained = [], {}, {}
    for family in families:
        rows = candidates.filter(pl.col("family") == family)
        keys = mix.stratify or ["family"]
        cells = rows.group_by(keys, maintain_order=False).len().sort(keys)
        takes = _water_fill(cells["len"].to_list(), requested[family])
        quota = cells.with_columns(take=pl.Series(takes, dtype=pl.UInt32)).drop("len")
        ranked = rows.join(quota, on=keys, how="left").with_columns(
            rank=pl.col("order").rank("ordinal").over(keys))
        picked = ranked.filter(pl.col("rank") <= pl.col("take"))
        chosen.append(picked.select("qid"))
        obtained[family] = picked.height
        cells_report[family] = {"/".join(str(v) for v in row[:-1]): row[-1] for row in quota.iter_rows()}
    full = pl.from_arrow(_fetch(db, pl.concat(chosen) if chosen else pl.DataFrame({"qid": []}, schema={"qid": pl.UInt64})))
    full = full.with_columns(split=split_expr(mix.splits),
                             order=pl.col("qa_id").cast(pl.UInt64) ^ pl.lit(mixer, pl.UInt64)).sort("order").drop("order")
    table = full.to_arrow()
    return table, SampleReport(requested, obtained, cells_report, duplicates)


def mixture_lines(table: pa.Table, answers: int = 5) -> list[str]:
    """The drawn mixture as a table: rows per family and split, and each family's most common answers."""
    rows = pl.from_arrow(table.select(["family", "split", "answer"]))
    if rows.is_empty():
        return ["(no rows)"]
    splits = [name for name in SPLIT_NAMES if name in set(rows["split"])]
    counts = rows.group_by("family", "split").len().pivot(on="split", index="family", values="len").fill_null(0)
    out = [f"{'family':<20} {'rows':>8} " + " ".join(f"{name:>8}" for name in splits) + "  top answers"]
    for family in sorted(counts["family"]):
        line = counts.filter(pl.col("family") == family).row(0, named=True)
        top = (rows.filter(pl.col("family") == family).group_by("answer").len()
               .sort(["len", "answer"], descending=[True, False]).head(answers))
        total = sum(line[name] for name in splits)
        shares = ", ".join(f"{a} {n / total:.0%}" for a, n in top.iter_rows())
        out.append(f"{family:<20} {total:>8} " + " ".join(f"{line[name]:>8}" for name in splits) + f"  {shares}")
    return out
