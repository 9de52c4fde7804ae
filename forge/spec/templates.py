"""Question/answer templates: `{a}`, `{b}`, `{c}` name objects, other names print relation values; `{{`/`}}` are literal braces."""

from __future__ import annotations

import string

PLACEHOLDERS = ("a", "b")


def parse_template(text: str, allowed: tuple[str, ...] = PLACEHOLDERS) -> list[tuple[str, str | None]]:
    """Split a template into (literal, placeholder-or-None) pieces; raise ValueError on a bad one."""
    pieces: list[tuple[str, str | None]] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"malformed template {text!r}: {exc} (write literal braces as {{{{ and }}}})") from None
    for literal, field, spec, conversion in parsed:
        if field is not None and field not in allowed:
            names = ", ".join("{" + p + "}" for p in allowed)
            raise ValueError(f"unknown placeholder {{{field}}} (allowed: {names})")
        if spec or conversion:
            raise ValueError(f"placeholder {{{field}}} takes no format spec or conversion")
        pieces.append((literal, field))
    return pieces


def placeholders_used(text: str, allowed: tuple[str, ...] = PLACEHOLDERS) -> list[str]:
    """Placeholders in order of appearance."""
    return [field for _, field in parse_template(text, allowed) if field is not None]
