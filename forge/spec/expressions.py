"""Spec expressions: SQL text over the columns of the objects a family names, parsed (never
`eval`ed), allow-listed, type-checked and compiled to the engine that judges (Polars).

Daft's SQL parser reads the text; a visitor walks the tree, accepting only column references to
the family's columns, literals and side-effect-free scalar functions, so a spec cannot read files,
call models or reach the network through an expression. The same walk infers each node's kind
(boolean, number, text), so `a_label > 3` is refused when the spec is loaded, not at build time.
"""

from __future__ import annotations

import difflib
import operator
import re
from dataclasses import dataclass
from typing import Callable

import daft
import polars as pl
import pyarrow as pa
from daft.expressions import Expression
from daft.expressions.visitor import ExpressionVisitor

from forge.judge.objects import IMAGE_COLUMNS, OBJECT_COLUMNS

SIDES = "abc"
BOOL, NUMBER, TEXT, NULL = "boolean", "number", "text", "null"
_KIND_OF_OBJECT_COLUMN = {"label": TEXT, "depth_source": TEXT, "truncated": BOOL}
_KIND_OF_IMAGE_COLUMN = {"camera_source": TEXT, "gravity_source": TEXT}


def columns_for(arity: int) -> dict[str, str]:
    """Columns an expression may use in a family reading `arity` objects, with their kinds."""
    columns = {f"{side}_{name}": _KIND_OF_OBJECT_COLUMN.get(name, NUMBER)
               for side in SIDES[:arity] for name in OBJECT_COLUMNS}
    return columns | {name: _KIND_OF_IMAGE_COLUMN.get(name, NUMBER) for name in IMAGE_COLUMNS}


def _unary(method: Callable[[pl.Expr], pl.Expr], argument: str = NUMBER, result: str = NUMBER):
    return [argument], result, method


_COMPARE = {"equal": operator.eq, "not_equal": operator.ne, "less_than": operator.lt,
            "less_than_or_equal": operator.le, "greater_than": operator.gt, "greater_than_or_equal": operator.ge,
            "eq_null_safe": pl.Expr.eq_missing}
_ARITHMETIC = {"plus": operator.add, "minus": operator.sub, "multiply": operator.mul, "true_divide": operator.truediv,
               "floor_divide": operator.floordiv, "modulus": operator.mod, "pow": pl.Expr.pow, "power": pl.Expr.pow,
               "arctan2": pl.arctan2}
# name -> (argument kinds, result kind, build); "*" takes the kind of the arguments
_FUNCTIONS: dict[str, tuple[list[str], str, Callable[..., pl.Expr]]] = {
    "and": ([BOOL, BOOL], BOOL, operator.and_),
    "or": ([BOOL, BOOL], BOOL, operator.or_),
    "xor": ([BOOL, BOOL], BOOL, operator.xor),
    "not": _unary(operator.invert, BOOL, BOOL),
    "between": ([NUMBER, NUMBER, NUMBER], BOOL, lambda x, low, high: x.is_between(low, high)),
    "is_null": _unary(pl.Expr.is_null, "*", BOOL),
    "not_null": _unary(pl.Expr.is_not_null, "*", BOOL),
    "if_else": ([BOOL, "*", "*"], "*", lambda test, yes, no: pl.when(test).then(yes).otherwise(no)),
    "negate": _unary(operator.neg),
    **{name: _unary(getattr(pl.Expr, name)) for name in (
        "abs", "sqrt", "cbrt", "exp", "log10", "sign", "ceil", "floor", "sin", "cos", "tan", "arctan", "arcsin",
        "arccos", "degrees", "radians")},
    "log2": _unary(lambda x: x.log(2)),
    "ln": _unary(pl.Expr.log),
    "log": ([NUMBER, NUMBER], NUMBER, lambda x, base=None: x.log() if base is None else x.log(base)),
    "round": ([NUMBER, NUMBER], NUMBER, lambda x, digits=None: x.round(0) if digits is None
              else (x * pl.lit(10.0).pow(digits)).round(0) / pl.lit(10.0).pow(digits)),
    "clip": ([NUMBER, NUMBER, NUMBER], NUMBER, lambda x, low, high: x.clip(low, high)),
    "lower": _unary(lambda x: x.str.to_lowercase(), TEXT, TEXT),
    "upper": _unary(lambda x: x.str.to_uppercase(), TEXT, TEXT),
    "length": _unary(lambda x: x.str.len_chars(), TEXT, NUMBER),
    "contains": ([TEXT, TEXT], BOOL, lambda x, part: x.str.contains(part, literal=True)),
    "startswith": ([TEXT, TEXT], BOOL, lambda x, part: x.str.starts_with(part)),
    "endswith": ([TEXT, TEXT], BOOL, lambda x, part: x.str.ends_with(part)),
    **{name: (["*", "*"], BOOL, build) for name, build in _COMPARE.items()},
    **{name: ([NUMBER, NUMBER], NUMBER, build) for name, build in _ARITHMETIC.items()},
}
ALLOWED_FUNCTIONS = frozenset(_FUNCTIONS)
_ORDERED = {"less_than", "less_than_or_equal", "greater_than", "greater_than_or_equal"}
_OPTIONAL_ARGUMENTS = {"log": 1, "round": 1}


@dataclass(frozen=True)
class Compiled:
    """A checked expression: the Polars expression, its kind, and the columns it reads."""

    expr: pl.Expr
    kind: str
    columns: frozenset[str]


class _ExpressionError(ValueError):
    pass


def _kind_of_type(dtype: pa.DataType) -> str:
    if pa.types.is_boolean(dtype):
        return BOOL
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return TEXT
    return NUMBER


def _polars_type(dtype: daft.DataType) -> pl.DataType:
    return pl.from_arrow(pa.array([], type=dtype.to_arrow_dtype())).dtype


class _Compiler(ExpressionVisitor[tuple[pl.Expr, str]]):
    def __init__(self, columns: dict[str, str], text: str):
        self.columns, self.text, self.used = columns, text, set()

    def visit_col(self, name: str) -> tuple[pl.Expr, str]:
        if name not in self.columns:
            raise _ExpressionError(
                f"unknown column {name!r} in {_shown(self.text)}{_suggest(name, self.columns)}; columns are <side>_<name> "
                f"for the family's objects (a, b, c) and name in: {', '.join(OBJECT_COLUMNS)}; "
                f"and {', '.join(IMAGE_COLUMNS)}")
        self.used.add(name)
        return pl.col(name), self.columns[name]

    def visit_lit(self, value: object) -> tuple[pl.Expr, str]:
        kind = (NULL if value is None else BOOL if isinstance(value, bool) else TEXT if isinstance(value, str)
                else NUMBER if isinstance(value, (int, float)) else None)
        if kind is None:
            raise _ExpressionError(f"unsupported literal {value!r} in {_shown(self.text)}")
        return pl.lit(value), kind

    def visit_alias(self, expr: Expression, alias: str) -> tuple[pl.Expr, str]:
        return self.visit(expr)

    def visit_cast(self, expr: Expression, dtype: daft.DataType) -> tuple[pl.Expr, str]:
        inner, _ = self.visit(expr)
        return inner.cast(_polars_type(dtype)), _kind_of_type(dtype.to_arrow_dtype())

    def visit_try_cast(self, expr: Expression, dtype: daft.DataType) -> tuple[pl.Expr, str]:
        inner, _ = self.visit(expr)
        return inner.cast(_polars_type(dtype), strict=False), _kind_of_type(dtype.to_arrow_dtype())

    def visit_coalesce(self, args: list[Expression]) -> tuple[pl.Expr, str]:
        compiled = [self.visit(a) for a in args]
        return pl.coalesce([e for e, _ in compiled]), self._same("coalesce", [k for _, k in compiled])

    def _same(self, name: str, kinds: list[str]) -> str:
        known = {k for k in kinds if k != NULL}
        if len(known) > 1:
            raise _ExpressionError(f"{name} mixes {' and '.join(sorted(known))} values in {_shown(self.text)}")
        return known.pop() if known else NULL

    def visit_function(self, name: str, args: list[Expression]) -> tuple[pl.Expr, str]:
        if name not in _FUNCTIONS:
            raise _ExpressionError(f"function {name!r} is not allowed in spec expressions "
                                   f"(use arithmetic, comparisons, CASE and math functions)")
        wanted, result, build = _FUNCTIONS[name]
        compiled = [self.visit(a) for a in args]
        if not len(wanted) - _OPTIONAL_ARGUMENTS.get(name, 0) <= len(compiled) <= len(wanted):
            raise _ExpressionError(f"{name} takes {len(wanted)} arguments, got {len(compiled)} in {_shown(self.text)}")
        generic = [k for (_, k), want in zip(compiled, wanted) if want == "*"]
        for (_, kind), want in zip(compiled, wanted):
            if want not in ("*", kind) and kind != NULL:
                raise _ExpressionError(f"{name} needs {want} arguments, got a {kind} one in {_shown(self.text)}")
        if name in _COMPARE and len({k for k in generic if k != NULL}) > 1:
            raise _ExpressionError(f"{_shown(self.text)} compares a {generic[0]} value with a {generic[1]} one")
        same = self._same(name, generic) if generic else NULL
        if name in _ORDERED and same == BOOL:
            raise _ExpressionError(f"{name} compares true/false values in {_shown(self.text)}")
        return build(*[e for e, _ in compiled]), same if result == "*" else result


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(word, sorted(options), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


MAX_CHARS = 2000  # a rule or a relation is a line or two of SQL
MAX_NESTING = 24  # parentheses inside parentheses
MAX_TERMS = 200  # operators and function arguments: a deeper tree overflows the parser's stack


def check_size(text: str) -> None:
    """Refuse an expression too long or too deep for the parser before any parser sees it (a chain of
    thousands of ORs crashed Daft's parser, below Python, where no exception can be caught)."""
    if len(text) > MAX_CHARS:
        raise ValueError(f"expression of {len(text)} characters; expressions are limited to {MAX_CHARS} "
                         "(split the condition into several rules)")
    depth = deepest = 0
    for char in text:
        depth += (char == "(") - (char == ")")
        deepest = max(deepest, depth)
    if deepest > MAX_NESTING:
        raise ValueError(f"expression nests parentheses {deepest} deep; at most {MAX_NESTING}")
    terms = len(re.findall(r"\b(?:and|or|not)\b|[-+*/%,<>=]+", text, flags=re.IGNORECASE))
    if terms > MAX_TERMS:
        raise ValueError(f"expression has {terms} operators; at most {MAX_TERMS} (split the condition into "
                         "several rules)")


def _shown(text: str) -> str:
    """An expression as messages quote it: whole when short, else its start."""
    return repr(text) if len(text) <= 120 else repr(text[:117] + "...")


def compile_expression(text: str, columns: dict[str, str], kind: str | None = None) -> Compiled:
    """Parse, check and compile SQL expression text; raise ValueError with a one-line reason.

    `kind` (BOOL or NUMBER) is what the expression must produce.
    """
    if not text.strip():
        raise ValueError("empty expression")
    check_size(text)
    try:
        parsed = daft.sql_expr(text)
    except Exception as exc:  # Daft raises several exception types for bad SQL
        raise ValueError(f"cannot parse expression {_shown(text)}: {' '.join(str(exc).split())}") from None
    compiler = _Compiler(columns, text)
    try:
        expr, found = compiler.visit(parsed)
    except _ExpressionError as exc:
        raise ValueError(str(exc)) from None
    except Exception as exc:
        raise ValueError(f"unsupported expression {_shown(text)}: {exc}") from None
    if kind is not None and found not in (kind, NULL):
        what = {BOOL: "true/false (a condition)", NUMBER: "a number"}[kind]
        raise ValueError(f"{_shown(text)} gives a {found} value; it must give {what}")
    return Compiled(expr, found, frozenset(compiler.used))


def required_arity(compiled: Compiled) -> int:
    """How many objects (a=1, b=2, c=3) an expression refers to."""
    sides = [SIDES.index(name[0]) + 1 for name in compiled.columns if name[:2] in ("a_", "b_", "c_")]
    return max(sides, default=1)

