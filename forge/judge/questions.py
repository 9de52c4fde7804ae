"""Question rows from verified candidates: templates, answers, choices and row ids as expressions.

Each candidate gets one of its family's templates by seeded hash (`pick`). Templates compile
into string concatenations of literals, object labels ({a}, {b}, {c}) and relation values
({box}, {distance}, ...). Text is made only for rows that are kept, one template at a time, so
each row pays for one phrasing.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from forge.judge.balance import Mode
from forge.judge.hashing import add_hash, salt
from forge.judge.relations import Relation
from forge.judge.shapes import Shape
from forge.spec.schema import Answer, Family, QuestionForm
from forge.spec.templates import parse_template

NO_CHOICES = pl.lit([], dtype=pl.List(pl.String))


@dataclass(frozen=True)
class Template:
    index: int  # the value of `pick` that selects it
    template_id: str  # family/form/template
    form: QuestionForm
    text: str


def templates(family: Family) -> list[Template]:
    flat = [(fi, form, ti, text) for fi, form in enumerate(family.questions) for ti, text in enumerate(form.templates)]
    return [Template(i, f"{family.name}/{fi}/{ti}", form, text) for i, (fi, form, ti, text) in enumerate(flat)]


def add_pick(frame: pl.DataFrame, shape: Shape, family: Family, count: int, seed: int) -> pl.DataFrame:
    """`pick`: which template phrases each candidate (salted by family, independent of naming order)."""
    frame = add_hash(frame, "pick", ["key", *shape.keys()], salt("template", family.name, seed))
    return frame.with_columns((pl.col("pick") % count).cast(pl.Int64))


def render(text: str, shape: Shape, relation: Relation) -> pl.Expr:
    """A template as a string expression: literals, object labels and relation values."""
    allowed = tuple(shape.sides) + tuple(relation.values)
    pieces: list[pl.Expr] = []
    for literal, field in parse_template(text, allowed):
        if literal:
            pieces.append(pl.lit(literal))
        if field is not None:
            pieces.append(relation.values[field] if field in relation.values else pl.col(f"{field}_label"))
    return pl.concat_str(pieces) if pieces else pl.lit("")


def _answer(form: QuestionForm, shape: Shape, relation: Relation) -> pl.Expr:
    if isinstance(form.answer, Answer):
        return (pl.when(pl.col("holds")).then(render(form.answer.if_true, shape, relation))
                .otherwise(render(form.answer.if_false, shape, relation)))
    return render(form.answer, shape, relation)


def _position(form: QuestionForm, relation: Relation) -> pl.Expr:
    """Index of the answer among the choices, without rendering text."""
    if isinstance(form.answer, Answer):
        return (pl.when(pl.col("holds")).then(pl.lit(form.choices.index(form.answer.if_true)))
                .otherwise(pl.lit(form.choices.index(form.answer.if_false))))
    field = form.answer.strip("{}")
    return relation.positions[field]  # validated: a set's answer names one option


def _per_template(pick: pl.Expr, items: list[Template], build) -> pl.Expr:
    expr = build(items[-1])
    for t in reversed(items[:-1]):
        expr = pl.when(pick == t.index).then(build(t)).otherwise(expr)
    return expr


def add_cell(frame: pl.DataFrame, family: Family, shape: Shape, relation: Relation, mode: Mode) -> pl.DataFrame:
    """`cell`: the answer's position among the choices, or the answer text, as text."""
    items = templates(family)
    if mode.by == "position":
        cell = _per_template(pl.col("pick"), items, lambda t: _position(t.form, relation)).cast(pl.String)
    else:
        cell = _per_template(pl.col("pick"), items, lambda t: _answer(t.form, shape, relation))
    return frame.with_columns(cell=cell)


def phrase(kept: pl.DataFrame, family: Family, shape: Shape, relation: Relation, spec_hash: str) -> pl.DataFrame:
    """The text columns of kept rows, one template at a time: question, answer, choices, objects,
    answer_type, template_id, family and qa_id (a stable 64-bit hash, as decimal text)."""
    kept = add_hash(kept, "qa_id", ["key", *shape.keys(), "pick"], salt("qa", spec_hash, family.name))
    parts = []
    for t in templates(family):
        rows = kept.filter(pl.col("pick") == t.index)
        if rows.is_empty():
            continue
        if shape.choices() is not None:
            choices = shape.choices()
        elif t.form.choices:
            choices = pl.concat_list([render(c, shape, relation) for c in t.form.choices])
        else:
            choices = NO_CHOICES
        parts.append(rows.with_columns(
            question=render(t.text, shape, relation), answer=_answer(t.form, shape, relation), choices=choices,
            objects=shape.objects(rows), annotation_ids=_annotation_ids(shape.annotation_ids()), answer_type=pl.lit(t.form.answer_type), template_id=pl.lit(t.template_id),
            family=pl.lit(family.name), qa_id=pl.col("qa_id").cast(pl.String)))
    return pl.concat(parts, how="diagonal_relaxed") if parts else kept.clear()


def _annotation_ids(ids: pl.Expr) -> pl.Expr:
    """The annotation ids of a row's objects; null when none has one (objects a detector found)."""
    return pl.when(ids.list.drop_nulls().list.len() > 0).then(ids)
