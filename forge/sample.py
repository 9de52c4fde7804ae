"""`forge sample`: draw a training mixture from the QA table, deterministically, in bounded memory.

1. Candidates: rows passing `--where`, in the requested split (assigned from the image id, so an
   image never lands in two splits).
2. Family quotas: explicit counts, or `n` shared by weights.
3. Within a family, rows are grouped into cells by the `stratify` columns and each cell gets an equal
   share; cells too small to fill theirs pass the remainder to the others (water-filling). Cell sizes
   come from one aggregate scan (forge.sampling.scan).
4. Inside a cell, rows are taken in a seeded order of their qa_id (forge.sampling.order), skipping a
   question already taken on the same image. A second scan finds the rows under each cell's order
   threshold, a little more than its quota; they are then trimmed exactly (forge.sampling.select). A
   cell that comes up short is scanned again with a wider threshold; one that runs out of distinct
   questions passes its remainder on like a small cell. So the rows depend on the database, the options
   and the seed only, and memory on the cells and the sample, not on the table.
The report says what could not be filled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional

import duckdb
import lance
import numpy as np
import polars as pl
import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forge.errors import ForgeError
from forge.progress import ProgressFactory, no_progress
from forge.query import check_params, open_table
from forge.sampling.order import TAKE_ALL
from forge.sampling.quotas import family_targets, thresholds, water_fill
from forge.sampling.scan import Rows, check_condition, connection, count_cells, pick_candidates, read_rows, take_columns
from forge.sampling.select import KEY, Selection, select
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


def split_edges(splits: dict[str, float]) -> list[tuple[str, float]]:
    """(name, upper edge of its share of [0, 1)) in order, as `split_expr` assigns them."""
    total = sum(splits.values())
    if total <= 0 or any(v < 0 for v in splits.values()):
        raise ForgeError(f"splits {splits}: fractions must be >= 0 and sum to more than 0")
    edges, edge = [], 0.0
    for name, share in splits.items():
        edge += share / total
        edges.append((name, edge))
    return edges


def split_expr(splits: dict[str, float], position: pl.Expr | None = None) -> pl.Expr:
    """Split of each row from its image id (a sha256 prefix): the same image always lands in one split.

    `position` is the id's first 32 bits as an integer column, when already computed.
    """
    edges = split_edges(splits)
    bits = position if position is not None else pl.col("image_id").str.slice(0, 8).str.to_integer(base=16)
    position = bits.cast(pl.Float64) / 2**32
    expr = None
    for name, edge in edges:
        condition = position < edge
        expr = pl.when(condition).then(pl.lit(name)) if expr is None else expr.when(condition).then(pl.lit(name))
    return expr.otherwise(pl.lit(edges[-1][0]))


@dataclass
class SampleReport:
    requested: dict[str, int]
    obtained: dict[str, int]
    cells: pl.DataFrame  # family, the stratify columns, rows (in the cell), quota, obtained
    duplicates_dropped: int  # rows skipped because their question on their image was taken already

    def lines(self) -> list[str]:
        out = [f"sampled {sum(self.obtained.values())} of {sum(self.requested.values())} requested rows "
               f"({self.duplicates_dropped} duplicate questions skipped)"]
        for family, wanted in self.requested.items():
            got = self.obtained.get(family, 0)
            short = f" — could not fill {wanted - got}" if got < wanted else ""
            out.append(f"  {family:<18} {got:>9} / {wanted}{short}")
        return out

    def cell_lines(self) -> list[str]:
        """Per cell given a share: its rows, its quota and what it yields (what a real run takes); then, per
        family, how many cells got no share."""
        given = self.cells.filter(pl.col("quota") > 0)
        strata = [c for c in given.columns if c not in ("family", "rows", "quota", "obtained")]
        label = pl.concat_str([_text(c, given.schema[c]) for c in strata], separator="/") if strata else pl.lit("(all)")
        lines = given.select(pl.concat_str([
            pl.col("family").str.pad_end(20), pl.lit(" "), label.str.pad_end(30), pl.lit(" "),
            *[pl.col(c).cast(pl.String).str.pad_start(w) + pl.lit(" ") for c, w in (("rows", 10), ("quota", 8))],
            pl.col("obtained").cast(pl.String).str.pad_start(8),
            pl.when(pl.col("obtained") < pl.col("quota"))
            .then(pl.lit("  short ") + (pl.col("quota") - pl.col("obtained")).cast(pl.String)).otherwise(pl.lit(""))]))
        none = (self.cells.filter(pl.col("quota") == 0).group_by("family").len().sort("family")
                .select(pl.format("{} cells of {} got no share", pl.col("len"), pl.col("family"))))
        header = f"{'family':<20} {'cell':<30} {'rows':>10} {'quota':>8} {'takes':>8}"
        return [header, *lines.to_series().to_list(), *none.to_series().to_list()]


def _text(column: str, dtype: pl.DataType) -> pl.Expr:
    """A cell value as text: 'null' for none; lists and structs as Python writes them."""
    text = (pl.col(column).map_elements(str, return_dtype=pl.String) if dtype.is_nested()
            else pl.col(column).cast(pl.String))
    return text.fill_null("null")


@dataclass
class Choice:
    """The chosen rows (order, offset, question key, family, strata, split) and the report; `read` fetches them whole."""

    dataset: lance.LanceDataset
    chosen: pl.DataFrame  # in seeded order: cell, ord, pos, key, family, the strata, extra columns, split
    report: SampleReport
    splits: dict[str, float]

    def read(self, progress: ProgressFactory = no_progress) -> pa.Table:
        """Every qa column of the chosen rows plus `split`, in seeded order."""
        table = read_rows(self.dataset, self.chosen, progress)
        return table.append_column("split", self.chosen.get_column("split").to_arrow().cast(pa.string()))


def _checked(mix: Mix) -> None:
    if not mix.weights and not mix.quotas and mix.n is None:
        raise ForgeError("say what to sample: --n N (every family equally), --family NAME=WEIGHT with --n, "
                         "--quota NAME=COUNT, or --mix FILE")
    if mix.weights and mix.n is None:
        raise ForgeError("family weights need a total: --n N (or n: in the mix file)")
    if mix.split is not None and mix.split not in mix.splits:
        raise ForgeError(f"--split {mix.split!r}: not one of {', '.join(mix.splits)}")
    split_edges(mix.splits)
    check_params(mix.where or "", mix.params)


def _strata(mix: Mix, dataset: lance.LanceDataset) -> list[str]:
    """The stratify columns besides family, each a qa column."""
    names = dataset.schema.names
    strata = [c for c in dict.fromkeys(mix.stratify) if c != "family"]
    unknown = [c for c in strata if c not in names]
    if unknown:
        raise ForgeError(f"--stratify {','.join(mix.stratify)}: {', '.join(repr(c) for c in unknown)} is not a qa "
                         f"column (columns: {', '.join(names)})")
    return strata


def _family_spans(cells: pl.DataFrame) -> list[tuple[str, int, int]]:
    """(family, first cell, end) per family: cells come sorted by family, so each family is one run."""
    runs = cells.get_column("family").rle().struct.unnest()
    ends = np.cumsum(runs.get_column("len").to_numpy())
    return list(zip(runs.get_column("value").to_list(), (ends - runs.get_column("len").to_numpy()).tolist(),
                    ends.tolist()))


def _family_quotas(spans: list[tuple[str, int, int]], sizes: np.ndarray, targets: dict[str, int]) -> np.ndarray:
    """Each cell's share of its family's target (cells sorted by family, then their values)."""
    quota = np.zeros(len(sizes), dtype=np.int64)
    for family, lo, hi in spans:
        quota[lo:hi] = water_fill(sizes[lo:hi], targets[family])
    return quota


def choose(db: Path, mix: Mix, seed: int, extra: tuple[str, ...] = (),
           progress: ProgressFactory = no_progress) -> Choice:
    """Which rows a sample takes, and the report, without reading the rows whole. `extra` columns (e.g.
    answer, for a dry run's summary) come along with the chosen rows."""
    _checked(mix)
    dataset = open_table(db, "qa")
    strata = _strata(mix, dataset)
    rows = Rows(dataset, mix.where, mix.params, mix.split, split_edges(mix.splits))
    every_family = not mix.weights and not mix.quotas
    with connection(db) as conn:  # closed after counting: it gives back what the count held (~0.2 GiB at 4M cells)
        check_condition(conn, rows)
        counted = count_cells(conn, rows, strata, every_family, progress)
    weights = ({family: 1.0 for family in sorted(counted.get_column("family").unique().drop_nulls())}
               if every_family else mix.weights)
    targets = family_targets(mix.quotas, weights, mix.n)
    keep = pl.col("family").is_in(list(targets)) & (pl.col("rows") > 0)
    if not counted.select(keep.all()).item():  # a copy of every cell: only when some must go
        counted = counted.filter(keep)
    cells = counted.with_row_index("cell")
    del counted
    spans = _family_spans(cells)
    with connection(db) as conn:
        selection, quota = _fill(conn, rows, strata, cells, spans, targets, seed, progress)
    taken = selection.taken
    known = cells.select(["family", *strata])[taken.get_column("cell")]  # what a row's cell says of it
    extra = [c for c in extra if c not in known.columns]
    chosen = pl.concat([taken, known, take_columns(dataset, taken.get_column("pos").to_numpy(), extra)], how="horizontal")
    chosen = chosen.with_columns(split=split_expr(mix.splits, pl.col("key") // (1 << 32)))
    report_cells = cells.drop("cell").with_columns(quota=pl.Series(quota), obtained=pl.Series(selection.obtained))
    obtained = {family: int(selection.obtained[lo:hi].sum()) for family, lo, hi in spans}
    report = SampleReport(targets, {f: obtained.get(f, 0) for f in targets}, report_cells, selection.skipped)
    return Choice(dataset, chosen, report, mix.splits)


def _fill(conn: duckdb.DuckDBPyConnection, rows: Rows, strata: list[str], cells: pl.DataFrame,
          spans: list[tuple[str, int, int]], targets: dict[str, int], seed: int,
          progress: ProgressFactory) -> tuple[Selection, np.ndarray]:
    """Scan for each cell's candidates and trim them until every cell has its quota or has run out.

    A cell short inside its threshold is rescanned with a wider one; a cell short with every row scanned
    has fewer distinct questions than rows: its size becomes what it yielded and its family is shared
    out again (water-filling), which may widen the others. `spans` are the families' runs of cells.
    """
    sizes = cells.get_column("rows").to_numpy().astype(np.int64)
    available = sizes.copy()
    quota = _family_quotas(spans, available, targets)
    widen = np.ones(len(sizes))
    threshold = np.zeros(len(sizes), dtype=np.uint64)
    candidates = pl.DataFrame(schema={"cell": pl.UInt32, "ord": pl.UInt64, "pos": pl.UInt64, "key": pl.UInt64})
    while True:
        wanted = np.where(quota > 0, thresholds(quota, sizes, widen), 0).astype(np.uint64)
        rescan = wanted > threshold
        if rescan.any():
            threshold = np.maximum(threshold, wanted)
            scanned = cells.filter(pl.Series(rescan)).select("family", *strata, "cell").with_columns(
                threshold=pl.Series(threshold[rescan], dtype=pl.UInt64))
            found = pick_candidates(conn, rows, strata, scanned.to_arrow(), seed, progress)
            kept = candidates.filter(~pl.col("cell").is_in(scanned.get_column("cell").implode()))
            candidates = pl.concat([kept, found.cast(kept.schema)])
        selection = select(candidates, quota, lambda positions: take_columns(rows.dataset, positions, KEY))
        short = selection.obtained < quota
        if not short.any():
            return selection, quota
        spent = short & (threshold == TAKE_ALL)
        widen[short & ~spent] *= 4
        if spent.any():
            available[spent] = selection.obtained[spent]
            quota = _family_quotas(spans, available, targets)


def mixture_lines(rows: pl.DataFrame, answers: int = 5) -> list[str]:
    """The drawn mixture as a table: rows per family and split, and each family's most common answers."""
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


def draw(db: Path, mix: Mix, seed: int, progress: ProgressFactory = no_progress) -> tuple[pa.Table, SampleReport]:
    """The sampled qa rows (all columns plus `split`, in seeded order) and what was (not) filled."""
    choice = choose(db, mix, seed, progress=progress)
    return choice.read(progress), choice.report
