"""Spec expressions: Daft SQL text over pair columns, parsed (never `eval`ed) and allow-listed.

Only column references to the pair schema, literals and side-effect-free scalar functions
are accepted, so a spec cannot read files, call models or reach the network through an
expression.
"""

from __future__ import annotations

import difflib

import daft
from daft.expressions import Expression
from daft.expressions.visitor import ExpressionVisitor

OBJECT_COLUMNS: dict[str, str] = {
    "idx": "position of the object in its image's object list",
    "label": "object name, e.g. 'red cube'",
    "score": "detector confidence (1.0 for annotations without scores and synthetic data)",
    "x1": "box left, fraction of image width",
    "y1": "box top, fraction of image height",
    "x2": "box right, fraction of image width",
    "y2": "box bottom, fraction of image height",
    "cx": "box centre x, fraction of image width",
    "cy": "box centre y, fraction of image height",
    "w": "box width, fraction of image width",
    "h": "box height, fraction of image height",
    "area": "box area, fraction of image area",
    "depth": "front-surface depth: distance from the camera, larger = farther",
    "depth_check": "front-surface depth from perception.depth_check (null without one)",
    "flip_depth": "depth measured in the mirrored image (perception.flip_check; null when not found again)",
    "flip_cx": "box centre x of the object's detection in the mirrored image (null when not found again)",
    "depth_spread": "(p75 - p25) / p50 of depth in the box's central half: large when the depth is unreliable",
    "truncated": "box touches the image border (true/false)",
    "label_count": "how many objects in the image share this label",
}
IMAGE_COLUMNS: dict[str, str] = {
    "width": "image width in pixels",
    "height": "image height in pixels",
    "fov_scale": "2·tan(horizontal field of view / 2): metres across the image per metre of depth",
}
SIDES = "abc"


def columns_for(arity: int) -> frozenset[str]:
    """Columns an expression may use in a family reading `arity` objects (a_*, b_*, c_*)."""
    return frozenset(f"{side}_{name}" for side in SIDES[:arity] for name in OBJECT_COLUMNS) | frozenset(IMAGE_COLUMNS)


PAIR_COLUMNS = columns_for(2)

ALLOWED_FUNCTIONS: frozenset[str] = frozenset(
    {
        "and", "or", "not", "xor",
        "equal", "not_equal", "less_than", "less_than_or_equal", "greater_than", "greater_than_or_equal",
        "between", "is_null", "not_null", "is_in", "if_else", "eq_null_safe",
        "plus", "minus", "multiply", "true_divide", "floor_divide", "modulus", "negate",
        "abs", "sqrt", "cbrt", "exp", "ln", "log", "log2", "log10", "pow", "power", "sign", "ceil", "floor",
        "round", "clip", "sin", "cos", "tan", "arctan", "arctan2", "arcsin", "arccos", "degrees", "radians",
        "lower", "upper", "contains", "startswith", "endswith", "length",
    }
)


class _Collector(ExpressionVisitor[None]):
    def __init__(self) -> None:
        self.columns: set[str] = set()
        self.functions: set[str] = set()

    def visit_col(self, name: str) -> None:
        self.columns.add(name)

    def visit_lit(self, value: object) -> None:
        return None

    def visit_alias(self, expr: Expression, alias: str) -> None:
        self.visit(expr)

    def visit_cast(self, expr: Expression, dtype: object) -> None:
        self.visit(expr)

    def visit_coalesce(self, args: list[Expression]) -> None:
        for arg in args:
            self.visit(arg)

    def visit_function(self, name: str, args: list[Expression]) -> None:
        self.functions.add(name)
        for arg in args:
            self.visit(arg)


def _suggest(word: str, options: frozenset[str] | set[str]) -> str:
    close = difflib.get_close_matches(word, sorted(options), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def required_arity(text: str) -> int:
    """How many objects (a=1, b=2, c=3) a parsed-clean expression refers to."""
    found = _Collector()
    found.visit(daft.sql_expr(text))
    sides = [SIDES.index(name[0]) + 1 for name in found.columns if name[:2] in ("a_", "b_", "c_")]
    return max(sides, default=1)


def parse_expression(text: str, columns: frozenset[str] = PAIR_COLUMNS) -> Expression:
    """Parse SQL expression text; raise ValueError with a one-line reason if it is not acceptable."""
    if not text.strip():
        raise ValueError("empty expression")
    try:
        expr = daft.sql_expr(text)
    except Exception as exc:  # Daft raises several exception types for bad SQL
        reason = " ".join(str(exc).split())
        raise ValueError(f"cannot parse expression {text!r}: {reason}") from None
    found = _Collector()
    try:
        found.visit(expr)
    except Exception as exc:
        raise ValueError(f"unsupported expression {text!r}: {exc}") from None
    for name in sorted(found.columns):
        if name not in columns:
            raise ValueError(f"unknown column {name!r} in {text!r}{_suggest(name, columns)}; columns are <side>_<name> "
                             f"for the family's objects (a, b, c) and name in: {', '.join(OBJECT_COLUMNS)}; "
                             f"and {', '.join(IMAGE_COLUMNS)}")
    for name in sorted(found.functions):
        if name not in ALLOWED_FUNCTIONS:
            raise ValueError(f"function {name!r} is not allowed in spec expressions (use arithmetic, comparisons, CASE and math functions)")
    return expr
