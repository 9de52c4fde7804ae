"""Verification rules as boolean expressions, and the funnel of what each rule dropped.

Rules run in a fixed order and a pair is charged to the first rule it fails, so the funnel
(considered -> dropped per rule -> kept) adds up exactly.
"""

from __future__ import annotations

from daft import Expression, col, lit

import daft.functions as F

from forge.spec.expressions import parse_expression
from forge.spec.schema import Family, Spec

MARGIN_RULE = "min_margin"


def _both(template: str, test) -> Expression:
    return test(col(template.format("a"))) & test(col(template.format("b")))


def rules_for(spec: Spec, family: Family, margin: Expression) -> list[tuple[str, Expression]]:
    """(name, keep-expression) pairs in evaluation order for one family."""
    v = spec.verify
    rules: list[tuple[str, Expression]] = []
    if v.min_score > 0:
        rules.append(("min_score", _both("{}_score", lambda c: c >= v.min_score)))
    if v.min_area > 0:
        rules.append(("min_area", _both("{}_area", lambda c: c >= v.min_area)))
    if v.max_area < 1:
        rules.append(("max_area", _both("{}_area", lambda c: c <= v.max_area)))
    if v.drop_truncated:
        rules.append(("truncated", _both("{}_truncated", lambda c: ~c)))
    if v.unique_labels:
        rules.append(("unique_labels", _both("{}_label_count", lambda c: c == 1)))
    for rule in v.rules:
        rules.append((rule.name, parse_expression(rule.keep)))
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
