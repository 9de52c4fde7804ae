"""Verification rules as boolean expressions, and the funnel of what each rule dropped.

Rules run in a fixed order and a row is charged to the first rule it fails, so the funnel
(considered -> dropped per rule -> kept) adds up exactly. Object rules apply to every
object the family names (a, b, c).
"""

from __future__ import annotations

from typing import Callable

from daft import Expression, col, lit

import daft.functions as F

from forge.relations import Relation
from forge.relations.base import iou
from forge.spec.expressions import SIDES, columns_for, parse_expression, required_arity
from forge.spec.schema import Family, Spec

MARGIN_RULE = "min_margin"


def _every(sides: str, column: str, test: Callable[[Expression], Expression]) -> Expression:
    result = test(col(f"a_{column}"))
    for side in sides[1:]:
        result = result & test(col(f"{side}_{column}"))
    return result


def _all(conditions) -> Expression:
    conditions = list(conditions)
    result = conditions[0]
    for condition in conditions[1:]:
        result = result & condition
    return result


def object_rules(spec: Spec, sides: str) -> list[tuple[str, Expression]]:
    """The spec's per-object rules (score, area, truncation, unique labels) over the given sides."""
    v = spec.verify
    rules: list[tuple[str, Expression]] = []
    if v.min_score > 0:
        rules.append(("min_score", _every(sides, "score", lambda c: c >= v.min_score)))
    if v.min_area > 0:
        rules.append(("min_area", _every(sides, "area", lambda c: c >= v.min_area)))
    if v.max_area < 1:
        rules.append(("max_area", _every(sides, "area", lambda c: c <= v.max_area)))
    if v.drop_truncated:
        rules.append(("truncated", _every(sides, "truncated", lambda c: ~c)))
    if v.unique_labels:
        rules.append(("unique_labels", _every(sides, "label_count", lambda c: c == 1)))
    if v.max_depth_spread is not None:
        limit = v.max_depth_spread
        rules.append(("depth_spread", _every(sides, "depth_spread", lambda c: c <= limit)))
    return rules


def rules_for(spec: Spec, family: Family, relation: Relation, margin: Expression) -> list[tuple[str, Expression]]:
    """(name, keep-expression) pairs in evaluation order for one family's candidates.

    Sets apply the object rules to each object before forming sets, so their candidates
    (one per image) only fail on set size and margin. Counting judges whole groups.
    """
    if relation.shape == "set":
        return [("set_size", col("set_size") >= family.set_size[0]), (MARGIN_RULE, margin >= family.min_margin)]
    if relation.shape == "group":
        return [("uncertain_detections", col("uncertain") == 0),
                ("duplicates", col("duplicate_iou") <= family.duplicate_iou),
                ("max_count", col("count") <= family.max_count),
                (MARGIN_RULE, margin >= family.min_margin)]
    sides = SIDES[: relation.arity]
    rules = object_rules(spec, sides)
    pairs = [(x, y) for i, x in enumerate(sides) for y in sides[i + 1:]]
    if spec.verify.max_iou < 1 and pairs:
        rules.append(("max_iou", _all(iou(x, y) <= spec.verify.max_iou for x, y in pairs)))
    if spec.verify.depth_agreement and pairs:
        rules.append(("depth_agreement", _all(
            (col(f"{x}_depth") < col(f"{y}_depth")) == (col(f"{x}_depth_check") < col(f"{y}_depth_check"))
            for x, y in pairs)))
    if spec.verify.flip_consistency:
        found = _every(sides, "flip_cx", lambda c: c.not_null())
        consistent = [((col(f"{x}_depth") < col(f"{y}_depth")) == (col(f"{x}_flip_depth") < col(f"{y}_flip_depth")))
                      & ((col(f"{x}_cx") < col(f"{y}_cx")) == (col(f"{x}_flip_cx") > col(f"{y}_flip_cx"))) for x, y in pairs]
        rules.append(("flip_consistency", _all([found, *consistent])))
    if relation.needs_metric:
        rules.append(("metric_depth", col("depth_kind") == "metric"))
    for rule in spec.verify.rules:
        if required_arity(rule.keep) <= relation.arity:  # a rule about b_* does not apply to one-object families
            rules.append((rule.name, parse_expression(rule.keep, columns_for(relation.arity))))
    for rule in family.rules:
        rules.append((rule.name, parse_expression(rule.keep, columns_for(relation.arity))))
    rules.append((MARGIN_RULE, margin >= family.min_margin))
    return rules


def reject_reason(rules: list[tuple[str, Expression]]) -> Expression:
    """Name of the first rule a row fails, or null when it passes all of them.

    A rule whose expression is null (e.g. a missing depth) counts as failed.
    """
    reason = lit(None).cast("string")
    for name, keep in reversed(rules):
        reason = F.when(~keep.fill_null(False), lit(name)).otherwise(reason)
    return reason
