"""Verification rules on formed candidates, and the funnel of what each rule dropped.

Rules run in a fixed order and a candidate is charged to the first rule it fails, so the funnel
(considered -> dropped per rule -> kept) adds up exactly. The order: the rules decided while the
shape forms candidates (metric depth, then the object rules, `objects.object_rules`), the shape's
own rules, the rules between the named objects (overlap, second depth model, mirrored image),
custom rules, and last `min_margin`.
"""

from __future__ import annotations

from functools import reduce

import polars as pl

from forge.judge.relations.base import iou
from forge.judge.shapes import Shape
from forge.spec.expressions import BOOL, columns_for, compile_expression, required_arity
from forge.spec.schema import Family, Spec

MARGIN_RULE = "min_margin"

col = pl.col


def _all(conditions: list[pl.Expr]) -> pl.Expr:
    return reduce(lambda x, y: x & y, conditions)


HIDDEN_RULE = "partly_hidden"


def rules_for(spec: Spec, family: Family, shape: Shape, whole_objects: bool = False) -> list[tuple[str, pl.Expr]]:
    """(name, keep-expression) of the rules on a family's formed candidates, in evaluation order.

    `margin` is a column of the candidates by then (the relation's margin).
    """
    rules = list(shape.rules(family))
    if shape.takes_custom_rules:
        sides = shape.sides
        pairs = [(x, y) for i, x in enumerate(sides) for y in sides[i + 1:]]
        v = spec.verify
        if whole_objects:  # the relation reads extents or centres: no part of a named object may be hidden
            rules.append((HIDDEN_RULE, _all([col(f"{s}_occlusion").is_null() | (col(f"{s}_occlusion") <= 0) for s in sides])))
        if v.max_iou < 1 and pairs:
            rules.append(("max_iou", _all([iou(x, y) <= v.max_iou for x, y in pairs])))
        if v.depth_agreement and pairs:
            rules.append(("depth_agreement", _all([
                (col(f"{x}_depth") < col(f"{y}_depth")) == (col(f"{x}_depth_check") < col(f"{y}_depth_check"))
                for x, y in pairs])))
        if v.flip_consistency:
            found = _all([col(f"{s}_flip_cx").is_not_null() for s in sides])
            consistent = [((col(f"{x}_depth") < col(f"{y}_depth")) == (col(f"{x}_flip_depth") < col(f"{y}_flip_depth")))
                          & ((col(f"{x}_cx") < col(f"{y}_cx")) == (col(f"{x}_flip_cx") > col(f"{y}_flip_cx")))
                          for x, y in pairs]
            rules.append(("flip_consistency", _all([found, *consistent])))
        columns = columns_for(len(sides))
        for rule in v.rules:
            compiled = compile_expression(rule.keep, columns_for(3), BOOL)
            if required_arity(compiled) <= len(sides):  # a rule about b_* does not apply to one-object families
                rules.append((rule.name, compiled.expr))
        for rule in family.rules:
            rules.append((rule.name, compile_expression(rule.keep, columns, BOOL).expr))
    rules.append((MARGIN_RULE, col("margin") >= family.min_margin))
    return rules


def funnel_lines(funnel: dict[str, dict[str, int]]) -> list[str]:
    """Per family: candidates considered, dropped by each rule in order, kept."""
    out = []
    for family, counts in funnel.items():
        out.append(f"  {family}: {sum(counts.values())} candidates considered")
        out.extend(f"    - {reason:<22} {count:>8}" for reason, count in counts.items() if reason != "kept")
        out.append(f"    = {'kept':<22} {counts.get('kept', 0):>8}")
    return out
