"""Built-in relations: the geometry of each question family, as Polars expressions.

One module per shape of question: `objects.py` (one object), `pairs.py` (two), `triples.py`
(three), `sets.py` (3-5 objects of an image), `groups.py` (all objects sharing a label). A family
is a relation over a shape (`forge/judge/shapes.py`): the shape forms the candidates, the relation
gives their `margin` and either `holds` (which of two answers is right) or `values` templates print.
"""

from __future__ import annotations

import polars as pl

from forge.judge.relations.base import Relation
from forge.judge.relations.groups import COUNTING
from forge.judge.relations.objects import OBJECT_RELATIONS
from forge.judge.relations.pairs import PAIR_RELATIONS
from forge.judge.relations.sets import DEPTH_EXTREME
from forge.judge.relations.triples import TRIPLE_RELATIONS
from forge.judge.shapes import Groups, Sets, Shape, Tuples
from forge.spec.expressions import BOOL, NUMBER, columns_for, compile_expression
from forge.spec.schema import CustomRelation, Family

BUILTIN: dict[str, tuple[Shape, Relation]] = {
    **{name: (Tuples(1), r) for name, r in OBJECT_RELATIONS.items()},
    **{name: (Tuples(2), r) for name, r in PAIR_RELATIONS.items()},
    **{name: (Tuples(3), r) for name, r in TRIPLE_RELATIONS.items()},
    "depth_extreme": (Sets(), DEPTH_EXTREME),
    "counting": (Groups(), COUNTING),
}


def relation_for(family: Family) -> tuple[Shape, Relation]:
    """The family's shape and relation: a built-in, or a custom one compiled from its expressions
    (ValueError naming the problem if they are bad)."""
    if not isinstance(family.relation, CustomRelation):
        return BUILTIN[family.relation]
    custom = family.relation
    columns = columns_for(custom.arity)
    holds = compile_expression(custom.holds, columns, BOOL)
    margin = compile_expression(custom.margin, columns, NUMBER)
    return Tuples(custom.arity), Relation(holds=holds.expr, margin=margin.expr.cast(pl.Float64), meaning="custom")


__all__ = ["BUILTIN", "Relation", "relation_for"]
