"""Question/answer templates: `{a}` and `{b}` name the pair's objects; `{{`/`}}` are literal braces."""

from __future__ import annotations

import string

PLACEHOLDERS = ("a", "b")


def parse_template(text: str) -> list[tuple[str, str | None]]:
    """Split a template into (literal, placeholder-or-None) pieces; raise ValueError on a bad one."""
    pieces: list[tuple[str, str | None]] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"malformed template {text!r}: {exc} (write literal braces as {{{{ and }}}})") from None
    for literal, field, spec, conversion in parsed:
        if field is not None and field not in PLACEHOLDERS:
            allowed = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            raise ValueError(f"unknown placeholder {{{field}}} (allowed: {allowed})")
        if spec or conversion:
            raise ValueError(f"placeholder {{{field}}} takes no format spec or conversion")
        pieces.append((literal, field))
    return pieces


def placeholders_used(text: str) -> set[str]:
    return {field for _, field in parse_template(text) if field is not None}
