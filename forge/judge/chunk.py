"""Judging one chunk of perception records: objects -> candidates -> relation -> verify ->
balance -> questions, for every family of a spec.

`Judge.count` is the first pass (funnel and balance histograms, no text); `Judge.phrase` the
second (the QA rows a chunk keeps, given the build's balance limits). Both run the same code up to
the verified candidates, so they agree row for row; chunk boundaries change nothing, because every
candidate lies within one image and every choice is a hash of the image and its objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa

from forge.judge import balance, questions
from forge.judge.objects import IMAGE_OUTPUT, ChunkObjects, chunk_objects, first_failing, object_rules, requirements
from forge.judge.relations import Relation, relation_for
from forge.judge.shapes import Context, Sets, Shape
from forge.judge.verify import rules_for
from forge.spec.load import LoadedSpec
from forge.spec.schema import Family
from forge.store import QA_MADE, QA_SCHEMA, qa_table


@dataclass(frozen=True)
class FamilyJudge:
    """One family compiled: its shape, relation, rules in funnel order and balancing."""

    family: Family
    shape: Shape
    relation: Relation
    rules: list[tuple[str, pl.Expr]]
    mode: balance.Mode | None
    context: Context

    @property
    def name(self) -> str:
        return self.family.name

    def phrase_columns(self) -> list[str]:
        """The columns of verified candidates that balancing and phrasing read (what pass 1 keeps)."""
        needed = {"img", "key", "pick", "margin", "holds", *self.shape.phrase_columns()}
        for expr in [*self.shape.keys(), *self.relation.values.values()]:
            needed.update(expr.meta.root_names())
        if self.mode is not None:
            needed.update(("cell", "order", "bucket"))
        return sorted(needed)

    def steps(self) -> list[str]:
        """Funnel steps in order, ending with balance (when the family balances)."""
        formed = self.shape.rule_names(self.context.spec, self.context.requirements)
        return formed + [name for name, _ in self.rules] + ([balance.BALANCE_RULE] if self.mode else [])

    def judged(self, chunk: ChunkObjects) -> tuple[pl.DataFrame, dict[str, int]]:
        """Every formed candidate with margin, holds and `reject` (1-based index of the first rule it
        fails, 0 when it passes all); the candidates dropped while forming them."""
        candidates, funnel = self.shape.candidates(chunk, self.context)
        relation = self.relation
        judged = candidates.with_columns(
            margin=relation.margin.cast(pl.Float64),
            holds=(relation.holds if relation.holds is not None else pl.lit(True)).fill_null(False))
        return judged.with_columns(reject=first_failing(self.rules)), funnel

    def verified(self, chunk: ChunkObjects) -> tuple[pl.DataFrame, dict[str, int]]:
        """Candidates that pass every rule, with margin, holds, pick, cell and order; the funnel so far."""
        judged, funnel = self.judged(chunk)
        rejected = judged["reject"].value_counts()
        codes = dict(zip(rejected["reject"].to_list(), rejected["count"].to_list()))
        for i, (name, _) in enumerate(self.rules, start=1):
            funnel[name] = int(codes.get(i, 0))
        kept = judged.filter(pl.col("reject") == 0).drop("reject")
        funnel["kept"] = kept.height
        considered = funnel.pop("considered")
        assert considered == sum(funnel.values()), (self.name, considered, funnel)  # every candidate charged once
        kept = questions.add_pick(kept, self.shape, self.family, len(questions.templates(self.family)),
                                  self.context.seed)
        if self.mode is not None:
            kept = questions.add_cell(kept, self.family, self.shape, self.relation, self.mode)
            kept = balance.add_order(kept, self.shape.keys(), self.name, self.context.seed)
        return kept.select(self.phrase_columns()), funnel


@dataclass
class ChunkCount:
    """What the first pass learns from a chunk, and the verified candidates the second pass phrases."""

    images: int = 0
    objects: int = 0
    over_cap: int = 0  # objects perception left out of crowded images
    failures: list[tuple[str, str]] = field(default_factory=list)
    funnel: dict[str, dict[str, int]] = field(default_factory=dict)  # "kept" = passed every rule
    cells: pl.DataFrame | None = None  # family, cell, bucket, rows
    verified: dict[str, pl.DataFrame] = field(default_factory=dict)  # family -> its phrase columns
    images_out: pl.DataFrame | None = None  # img and the image columns QA rows carry


class Judge:
    """A spec's families compiled for judging chunks of perception records."""

    def __init__(self, loaded: LoadedSpec, seed: int):
        self.loaded, self.seed = loaded, seed
        spec = loaded.spec
        self.families: list[FamilyJudge] = []
        for family in spec.families:
            shape, relation = relation_for(family)
            mode = balance.mode_for(family, relation.holds is not None, isinstance(shape, Sets))
            needs = requirements(spec, relation.needs_metric, relation.needs_gravity, relation.lifted)
            context = Context(spec, family, seed, tuple(needs))
            rules = rules_for(spec, family, shape, relation.whole_objects)
            self.families.append(FamilyJudge(family, shape, relation, rules, mode, context))

    def describe(self, chunk_size: int) -> list[str]:
        """What judging a chunk does, family by family (`forge explain`)."""
        spec = self.loaded.spec
        out = [f"per chunk of up to {chunk_size} images, with Polars; object rules before any tuple is formed:"]
        out += [f"  {name}: keep {expr}" for name, expr in object_rules(spec)]
        for judge in self.families:
            relation = judge.relation
            out.append(f"family {judge.name}: {judge.shape.describe()}; {relation.meaning}")
            if relation.holds is not None:
                out.append(f"  holds  = {relation.holds}")
            out.append(f"  margin = {relation.margin}")
            out += [f"  rule {name}: keep {expr}" for name, expr in judge.rules]
            phrasings = len(questions.templates(judge.family))
            balanced = (f"balanced by {judge.mode.by}, no cell above {judge.mode.max_ratio} x the runner-up"
                        if judge.mode else "not balanced")
            out.append(f"  {phrasings} templates, one per candidate by seeded hash; {balanced}")
        return out

    @property
    def modes(self) -> dict[str, balance.Mode]:
        return {f.name: f.mode for f in self.families if f.mode is not None}

    def _objects(self, records: pl.DataFrame) -> ChunkObjects:
        return chunk_objects(records, self.loaded.spec)

    def count(self, records: pl.DataFrame) -> ChunkCount:
        chunk = self._objects(records)
        errors = records.filter(pl.col("error").is_not_null())
        out = ChunkCount(images=records.height, objects=chunk.objects.height,
                         over_cap=int(chunk.images["objects_over_cap"].fill_null(0).sum()),
                         failures=list(zip(errors["image_uri"].to_list(), errors["error"].to_list())),
                         images_out=chunk.images.select("img", *IMAGE_OUTPUT))
        cells = []
        for judge in self.families:
            kept, out.funnel[judge.name] = judge.verified(chunk)
            out.verified[judge.name] = kept
            if judge.mode is not None:
                cells.append(balance.histogram(kept).with_columns(family=pl.lit(judge.name)))
        out.cells = pl.concat(cells) if cells else None
        return out

    def phrase(self, verified: dict[str, pl.DataFrame], images: pl.DataFrame,
               limits: balance.Limits) -> tuple[pa.Table, pl.DataFrame]:
        """(QA rows a chunk keeps for sure, boundary rows with family, cell and order for the end),
        from its verified candidates and image columns (`count`'s `verified` and `images_out`)."""
        sure, boundary = [], []
        for judge in self.families:
            kept = verified[judge.name]
            if judge.mode is not None:
                kept, edge = balance.split_kept(kept, judge.name, limits)
                if not edge.is_empty():
                    boundary.append(self._rows(images, judge, edge, extra=("cell", "order")))
            if not kept.is_empty():
                sure.append(self._rows(images, judge, kept))
        rows = pl.concat(sure) if sure else pl.DataFrame(schema=pl.from_arrow(QA_SCHEMA.empty_table().select(QA_MADE)).schema)
        edge = pl.concat(boundary) if boundary else pl.DataFrame()
        return self.to_qa(rows), edge

    def _rows(self, images: pl.DataFrame, judge: FamilyJudge, kept: pl.DataFrame, extra: tuple[str, ...] = ()) -> pl.DataFrame:
        text = questions.phrase(kept, judge.family, judge.shape, judge.relation, self.loaded.spec_hash)
        images = images.select(IMAGE_OUTPUT)[text["img"].to_numpy()]
        spec = self.loaded.spec
        lineage = {"spec_name": pl.lit(spec.name), "spec_hash": pl.lit(self.loaded.spec_hash),
                   "seed": pl.lit(self.seed, pl.Int64), "source_dataset": pl.lit(spec.source.dataset, pl.String)}
        own = [name for name in QA_MADE if name not in images.columns and name not in lineage]
        return pl.concat([text.select(*own, *extra), images], how="horizontal").with_columns(**lineage)

    @staticmethod
    def to_qa(rows: pl.DataFrame) -> pa.Table:
        return qa_table(rows.select(QA_MADE).to_arrow())
