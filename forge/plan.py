"""Compile a spec into lazy Daft frames: perception -> objects -> pairs -> relations -> verify -> questions.

Nothing here executes; `forge explain` prints these plans and `forge build` runs them.
"""

from __future__ import annotations

from dataclasses import dataclass

import daft
from daft import DataFrame, col

from forge.objects import object_rows
from forge.pairs import object_tuples
from forge.perception import perceive
from forge.perception.models import RunOptions
from forge.questions import question_rows
from forge.relations import Relation, relation_for
from forge.spec.load import LoadedSpec
from forge.spec.schema import Family
from forge.verify import reject_reason, rules_for

QA_COLUMNS = (
    "qa_id", "image_id", "image_uri", "family", "template_id", "question", "answer", "answer_type",
    "choices", "objects", "margin", "spec_name", "spec_hash", "perception", "depth_kind", "seed",
)
LINEAGE_COLUMNS = ("spec_name", "spec_hash", "seed")  # the same for every row of a build
JUDGED_COLUMNS = tuple(c for c in QA_COLUMNS if c not in LINEAGE_COLUMNS) + ("holds", "reject")


@dataclass(frozen=True)
class Plan:
    """The compiled build: perception records, then judged pairs and QA rows derived from them."""

    loaded: LoadedSpec
    seed: int
    perceived: DataFrame

    def judged(self, perceived: DataFrame | None = None) -> DataFrame:
        """Every candidate of every family with `margin`, `holds` and `reject` (null = kept)."""
        spec = self.loaded.spec
        objects = object_rows(perceived if perceived is not None else self.perceived, spec.objects.horizontal_fov_deg)
        tuples: dict[int, DataFrame] = {}
        frames = []
        for family in spec.families:
            relation = relation_for(family)
            if relation.arity not in tuples:
                tuples[relation.arity] = object_tuples(objects, relation.arity, self.seed)
            frames.append(self._judge(tuples[relation.arity], family, relation))
        return _concat_families(frames)

    def _judge(self, tuples: DataFrame, family: Family, relation: Relation) -> DataFrame:
        holds = relation.holds if relation.holds is not None else daft.lit(True)
        judged = tuples.with_columns({"holds": holds.fill_null(False), "margin": relation.margin.cast("float64")})
        judged = judged.with_column("reject", reject_reason(rules_for(self.loaded.spec, family, relation, col("margin"))))
        judged = question_rows(judged, family, relation, self.loaded.spec_hash, self.seed)
        return judged.select(*JUDGED_COLUMNS)

    def qa(self, judged: DataFrame) -> DataFrame:
        """Kept rows in the `qa` table's columns."""
        spec = self.loaded.spec
        kept = judged.where(col("reject").is_null()).with_columns(
            {"spec_name": daft.lit(spec.name), "spec_hash": daft.lit(self.loaded.spec_hash), "seed": daft.lit(self.seed)}
        )
        return kept.select(*QA_COLUMNS)

    def rule_names(self, family: Family) -> list[str]:
        """Verification rule names in the order they are applied (the funnel's order)."""
        return [name for name, _ in rules_for(self.loaded.spec, family, relation_for(family), col("margin"))]

    def funnel(self, judged: DataFrame) -> DataFrame:
        """Pairs per (family, reject reason); reason null counts the kept ones."""
        return judged.groupby("family", "reject").agg(col("qa_id").count().alias("pairs"))


def _concat_families(frames: list[DataFrame]) -> DataFrame:
    out = frames[0]
    for frame in frames[1:]:
        out = out.concat(frame)
    return out


def compile_spec(loaded: LoadedSpec, seed: int | None = None, limit: int | None = None,
                 options: RunOptions = RunOptions()) -> Plan:
    seed = loaded.spec.seed if seed is None else seed
    return Plan(loaded=loaded, seed=seed, perceived=perceive(loaded, seed, limit, options))
