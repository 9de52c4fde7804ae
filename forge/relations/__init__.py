"""Built-in relations: the geometry of each question family, as Daft expressions.

One module per shape of question: `objects.py` (one object), `pairs.py` (two), `triples.py`
(three), `sets.py` (3-5 objects of an image), `groups.py` (all objects sharing a label). A relation gives a `margin` (how clearly the answer is decided), either `holds`
(which of two answers is right) or named `values` that templates print ({box}, {distance}),
and the number of objects it reads (`arity`): columns a_*, b_*, c_*.
"""

from __future__ import annotations

from forge.relations.base import Relation
from forge.relations.groups import COUNTING
from forge.relations.sets import DEPTH_EXTREME
from forge.spec.expressions import columns_for, parse_expression
from forge.spec.schema import CustomRelation, Family
from forge.relations.objects import OBJECT_RELATIONS
from forge.relations.pairs import PAIR_RELATIONS
from forge.relations.triples import TRIPLE_RELATIONS

BUILTIN_RELATIONS: dict[str, Relation] = {
    **OBJECT_RELATIONS, **PAIR_RELATIONS, **TRIPLE_RELATIONS, "depth_extreme": DEPTH_EXTREME, "counting": COUNTING,
}


def relation_for(family: Family) -> Relation:
    """The family's relation: a built-in, or a custom one parsed from its expressions (ValueError if bad)."""
    if not isinstance(family.relation, CustomRelation):
        return BUILTIN_RELATIONS[family.relation]
    custom = family.relation
    columns = columns_for(custom.arity)
    return Relation(arity=custom.arity, holds=parse_expression(custom.holds, columns),
                    margin=parse_expression(custom.margin, columns), meaning="custom")


__all__ = ["BUILTIN_RELATIONS", "Relation", "relation_for"]
