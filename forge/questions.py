"""Question rows from verified tuples: templates, answers and choices as expressions.

Templates are compiled into string concatenations of literals, object labels ({a}, {b},
{c}) and relation values ({box}, {distance}, ...), and the phrasing for each tuple is
picked by a seeded hash, so text generation stays columnar and reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from daft import DataFrame, DataType, Expression, col, lit

import daft.functions as F

from forge.relations import Relation
from forge.spec.expressions import SIDES
from forge.spec.schema import Answer, Family, QuestionForm
from forge.spec.templates import parse_template

NO_CHOICES = lit([]).cast(DataType.list(DataType.string()))


@dataclass(frozen=True)
class _Template:
    template_id: str
    form: QuestionForm
    text: str


def render(template: str, relation: Relation) -> Expression:
    """A template as a string expression: literals, object labels and relation values."""
    allowed = tuple(SIDES[: relation.arity]) + tuple(relation.values)
    expr: Expression | None = None
    for literal, field in parse_template(template, allowed):
        pieces = [lit(literal)] if literal else []
        if field is not None:
            pieces.append(relation.values[field] if field in relation.values else col(f"{field}_label"))
        for piece in pieces:
            expr = piece if expr is None else expr + piece
    return expr if expr is not None else lit("")


def _templates(family: Family) -> list[_Template]:
    return [
        _Template(f"{family.name}/{fi}/{ti}", form, text)
        for fi, form in enumerate(family.questions)
        for ti, text in enumerate(form.templates)
    ]


def _per_template(pick: Expression, templates: list[_Template], build: Callable[[_Template], Expression]) -> Expression:
    expr = build(templates[-1])
    for i in range(len(templates) - 2, -1, -1):
        expr = F.when(pick == i, build(templates[i])).otherwise(expr)
    return expr


def _box(side: str) -> Expression:
    return F.to_list(*(col(f"{side}_{k}") for k in ("x1", "y1", "x2", "y2")))


def _answer(form: QuestionForm, relation: Relation) -> Expression:
    if isinstance(form.answer, Answer):
        return F.when(col("holds"), render(form.answer.if_true, relation)).otherwise(render(form.answer.if_false, relation))
    return render(form.answer, relation)


def tuple_objects(arity: int) -> Expression:
    """The `objects` column of a tuple family: its objects in the order a, b, c."""
    return F.to_list(*(F.to_struct(label=col(f"{side}_label"), box=_box(side)) for side in SIDES[:arity]))


def question_rows(candidates: DataFrame, family: Family, relation: Relation, spec_hash: str, seed: int,
                  objects: Expression, keys: list[Expression], choices: Expression | None = None) -> DataFrame:
    """Add template_id, question, answer, answer_type, choices, objects and qa_id.

    `objects` and `keys` (what identifies a candidate within its image) depend on the
    family's shape; `choices` replaces the forms' choices when the options are data (sets).
    """
    templates = _templates(family)
    indexes = keys
    # salted by purpose and family so the pick is independent of the tuple-order hash
    pick = F.hash(col("image_id"), *indexes, lit(f"template/{family.name}"), seed=seed) % len(templates)
    template_id = _per_template(pick, templates, lambda t: lit(t.template_id))
    return candidates.with_columns(
        {
            "family": lit(family.name),
            "template_id": template_id,
            "question": _per_template(pick, templates, lambda t: render(t.text, relation)),
            "answer": _per_template(pick, templates, lambda t: _answer(t.form, relation)),
            "answer_type": _per_template(pick, templates, lambda t: lit(t.form.answer_type)),
            "choices": choices if choices is not None else _per_template(
                pick, templates,
                lambda t: F.to_list(*(render(c, relation) for c in t.form.choices)) if t.form.choices else NO_CHOICES,
            ),
            "objects": objects,
            "qa_id": F.hash(col("image_id"), *indexes, template_id, lit(spec_hash), hash_function="sha1").cast("string"),
        }
    )
