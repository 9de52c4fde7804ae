"""Compile a spec into lazy Daft frames: perception -> objects -> pairs -> relations -> verify -> questions.

Nothing here executes; `forge explain` prints these plans and `forge build` runs them.
"""

from __future__ import annotations

from dataclasses import dataclass

import daft
from daft import DataFrame, col

from forge.objects import object_rows
from forge.pairs import pair_rows
from forge.perception import perceive
from forge.perception.models import RunOptions
from forge.questions import question_rows
from forge.relations import BUILTIN_RELATIONS
from forge.spec.expressions import parse_expression
from forge.spec.load import LoadedSpec
from forge.spec.schema import CustomRelation, Family
from forge.verify import reject_reason, rules_for

QA_COLUMNS = (
    "qa_id", "image_id", "image_uri", "family", "template_id", "question", "answer", "answer_type",
    "choices", "objects", "margin", "spec_name", "spec_hash", "perception", "depth_kind", "seed",
)


@dataclass(frozen=True)
class Plan:
    """The compiled build: perception records, then judged pairs and QA rows derived from them."""

    loaded: LoadedSpec
    seed: int
    perceived: DataFrame

    def judged(self, perceived: DataFrame | None = None) -> DataFrame:
        """Every pair of every family with `margin`, `holds` and `reject` (null = kept)."""
        base = perceived if perceived is not None else self.perceived
        pairs = pair_rows(object_rows(base), self.seed)
        frames = [self._judge(pairs, family) for family in self.loaded.spec.families]
        out = frames[0]
        for frame in frames[1:]:
            out = out.concat(frame)
        return out

    def _judge(self, pairs: DataFrame, family: Family) -> DataFrame:
        if isinstance(family.relation, CustomRelation):
            holds, margin = parse_expression(family.relation.holds), parse_expression(family.relation.margin)
        else:
            builtin = BUILTIN_RELATIONS[family.relation]
            holds, margin = builtin.holds, builtin.margin
        judged = pairs.with_columns({"holds": holds.fill_null(False), "margin": margin.cast("float64")})
        rules = rules_for(self.loaded.spec, family, daft.col("margin"))
        judged = judged.with_column("reject", reject_reason(rules))
        return question_rows(judged, family, col("holds"), self.loaded.spec_hash, self.seed)

    def qa(self, judged: DataFrame) -> DataFrame:
        """Kept rows in the `qa` table's columns."""
        spec = self.loaded.spec
        kept = judged.where(col("reject").is_null()).with_columns(
            {"spec_name": daft.lit(spec.name), "spec_hash": daft.lit(self.loaded.spec_hash), "seed": daft.lit(self.seed)}
        )
        return kept.select(*QA_COLUMNS)

    def rule_names(self, family: Family) -> list[str]:
        """Verification rule names in the order they are applied (the funnel's order)."""
        return [name for name, _ in rules_for(self.loaded.spec, family, daft.col("margin"))]

    def funnel(self, judged: DataFrame) -> DataFrame:
        """Pairs per (family, reject reason); reason null counts the kept ones."""
        return judged.groupby("family", "reject").agg(col("qa_id").count().alias("pairs"))


def compile_spec(loaded: LoadedSpec, seed: int | None = None, limit: int | None = None,
                 options: RunOptions = RunOptions()) -> Plan:
    seed = loaded.spec.seed if seed is None else seed
    return Plan(loaded=loaded, seed=seed, perceived=perceive(loaded, seed, limit, options))
