"""Question rows from verified pairs: templates, answers and choices as expressions.

Templates are compiled into string concatenations of literals and label columns, and the
phrasing for each pair is picked by a seeded hash, so text generation stays columnar and
reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from daft import DataFrame, Expression, col, lit

import daft.functions as F

from forge.spec.schema import Family, QuestionForm
from forge.spec.templates import parse_template


@dataclass(frozen=True)
class _Template:
    template_id: str
    form: QuestionForm
    text: str


def render(template: str) -> Expression:
    """A template as a string expression: literals plus `a_label`/`b_label` columns."""
    expr: Expression | None = None
    for literal, field in parse_template(template):
        for piece in ([lit(literal)] if literal else []) + ([col(f"{field}_label")] if field else []):
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


def question_rows(pairs: DataFrame, family: Family, holds: Expression, spec_hash: str, seed: int) -> DataFrame:
    """Add template_id, question, answer, answer_type, choices, objects and qa_id to kept pairs."""
    templates = _templates(family)
    # salted by purpose and family so the pick is independent of the pair-order hash
    pick = F.hash(col("image_id"), col("a_idx"), col("b_idx"), lit(f"template/{family.name}"), seed=seed) % len(templates)
    template_id = _per_template(pick, templates, lambda t: lit(t.template_id))
    return pairs.with_columns(
        {
            "family": lit(family.name),
            "template_id": template_id,
            "question": _per_template(pick, templates, lambda t: render(t.text)),
            "answer": _per_template(
                pick, templates, lambda t: F.when(holds, render(t.form.answer.if_true)).otherwise(render(t.form.answer.if_false))
            ),
            "answer_type": _per_template(pick, templates, lambda t: lit(t.form.answer_type)),
            "choices": _per_template(pick, templates, lambda t: F.to_list(*(render(c) for c in t.form.choices))),
            "objects": F.to_list(
                F.to_struct(label=col("a_label"), box=_box("a")),
                F.to_struct(label=col("b_label"), box=_box("b")),
            ),
            "qa_id": F.hash(
                col("image_id"), col("a_idx"), col("b_idx"), template_id, lit(spec_hash), hash_function="sha1"
            ).cast("string"),
        }
    )
