"""Compile a spec into lazy Daft frames: perception -> objects -> pairs -> relations -> verify -> questions.

Nothing here executes; `forge explain` prints these plans and `forge build` runs them.
"""

from __future__ import annotations

from dataclasses import dataclass

import daft
from daft import DataFrame, col

from forge.balance import BALANCE_RULE, balance
from forge.objects import object_rows
from forge.pairs import object_tuples
from forge.perception import perceive
from forge.perception.models import RunOptions
from forge.questions import question_rows, tuple_objects
from forge.relations import Relation, relation_for
from forge.relations.groups import MAX_COUNT, object_groups
from forge.relations.positions import IMAGE_FIELDS, labels_list, objects_list
from forge.relations.positions import keys as position_keys
from forge.relations.sets import MAX_SET, object_sets
from forge.spec.expressions import SIDES
from forge.spec.load import LoadedSpec
from forge.spec.schema import Family
from forge.verify import object_rules, reject_reason, rules_for

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
    images: int  # images the source yields (after --limit)

    def judged(self, perceived: DataFrame | None = None) -> DataFrame:
        """Every candidate of every family with `margin`, `holds` and `reject` (null = kept)."""
        spec = self.loaded.spec
        objects = object_rows(perceived if perceived is not None else self.perceived, spec.objects.horizontal_fov_deg)
        tuples: dict[int, DataFrame] = {}

        def tuples_of(arity: int) -> DataFrame:
            if arity not in tuples:
                tuples[arity] = object_tuples(objects, arity, self.seed)
            return tuples[arity]

        frames = []
        for family in spec.families:
            relation = relation_for(family)
            if relation.shape == "set":
                frames.append(self._judge_sets(tuples_of(1), family, relation))
            elif relation.shape == "group":
                frames.append(self._judge_groups(tuples_of(1), family, relation))
            else:
                frames.append(self._judge(tuples_of(relation.arity), family, relation))
        return balance(_concat_families(frames), self.balance_modes(), self.seed)

    def balance_modes(self) -> dict[str, tuple[str, float]]:
        """family -> (cells to balance, max ratio), for families that balance."""
        modes = {}
        for family in self.loaded.spec.families:
            by = family.balance.by
            if by == "auto":
                relation = relation_for(family)
                by = "position" if relation.holds is not None or relation.shape == "set" else "none"
            if by != "none":
                modes[family.name] = (by, family.balance.max_ratio)
        return modes

    def _judged(self, candidates: DataFrame, family: Family, relation: Relation, **question_args) -> DataFrame:
        judged = candidates.with_columns({"holds": (relation.holds if relation.holds is not None else daft.lit(True)).fill_null(False),
                                          "margin": relation.margin.cast("float64")})
        judged = judged.with_column("reject", reject_reason(rules_for(self.loaded.spec, family, relation, col("margin"))))
        judged = question_rows(judged, family, relation, self.loaded.spec_hash, self.seed, **question_args)
        return judged.select(*JUDGED_COLUMNS)

    def _judge(self, tuples: DataFrame, family: Family, relation: Relation) -> DataFrame:
        keys = [col(f"{side}_idx") for side in SIDES[: relation.arity]]
        return self._judged(tuples, family, relation, objects=tuple_objects(relation.arity), keys=keys)

    def _judge_sets(self, singles: DataFrame, family: Family, relation: Relation) -> DataFrame:
        passed = reject_reason(object_rules(self.loaded.spec, "a")).is_null()
        images = singles.select("image_id", *IMAGE_FIELDS).distinct()
        sets = object_sets(singles.where(passed), images, family.name, family.set_size, self.seed)
        low, high = family.set_size
        return self._judged(sets, family, relation, objects=objects_list(col("set_size"), low, high),
                            keys=position_keys(MAX_SET), choices=labels_list(col("set_size"), low, high))

    def _judge_groups(self, singles: DataFrame, family: Family, relation: Relation) -> DataFrame:
        groups = object_groups(singles, self.loaded.spec.verify.min_score)
        return self._judged(groups, family, relation, objects=objects_list(col("count"), 1, MAX_COUNT),
                            keys=position_keys(MAX_COUNT))

    def qa(self, judged: DataFrame) -> DataFrame:
        """Kept rows in the `qa` table's columns."""
        spec = self.loaded.spec
        kept = judged.where(col("reject").is_null()).with_columns(
            {"spec_name": daft.lit(spec.name), "spec_hash": daft.lit(self.loaded.spec_hash), "seed": daft.lit(self.seed)}
        )
        return kept.select(*QA_COLUMNS)

    def rule_names(self, family: Family) -> list[str]:
        """Verification rule names in the order they are applied (the funnel's order)."""
        names = [name for name, _ in rules_for(self.loaded.spec, family, relation_for(family), col("margin"))]
        return names + ([BALANCE_RULE] if family.name in self.balance_modes() else [])

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
    perceived, images = perceive(loaded, seed, limit, options)
    return Plan(loaded=loaded, seed=seed, perceived=perceived, images=images)
