"""Skipped images grouped by kind of reason, for a build's summary, in memory that does not grow with them.

A build that skips 300,000 missing files must print a few lines, not 300,000: reasons that differ only in a
path, a URL, a quoted name or a number are one kind (`row N of … holds no image`), counted, with the first few
images as examples. The full list, one row per image with its own reason, is the `errors` table's job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

EXAMPLES = 3  # images named per kind of reason
SHOWN = 10  # kinds listed in the summary, most frequent first; the rest are summed in one line
MAX_KINDS = 1000  # kinds told apart; any further ones are counted together, so memory stays bounded
OTHER = "other reasons"

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_PATH = re.compile(r"(?<![\w.])(?:[a-z][a-z0-9+.-]*://\S*|~?/\S*|\S+/\S+)", re.IGNORECASE)
_SIZE = re.compile(r"\d+x\d+")
_NUMBER = re.compile(r"(?<![A-Za-z])\d+(?:\.\d+)?")  # not inside a word: s3, OWLv2 stay


def kind(reason: str) -> str:
    """The reason with what varies from image to image left out: quoted names, paths and URIs, numbers."""
    text = _QUOTED.sub("'…'", reason)
    text = _PATH.sub("…", text)
    return _NUMBER.sub("N", _SIZE.sub("NxN", text))


@dataclass
class Skipped:
    """Counts and a few example images per kind of reason."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, uri: str, reason: str) -> None:
        key = kind(reason)
        if key not in self.counts and len(self.counts) >= MAX_KINDS:
            key = OTHER
        self.counts[key] = self.counts.get(key, 0) + 1
        shown = self.examples.setdefault(key, [])
        if len(shown) < EXAMPLES:
            shown.append(uri)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def lines(self, indent: str = "    ") -> list[str]:
        """One line per kind (`skipped 298000: cannot read image: No such file or directory, e.g. a.png, b.png`),
        most frequent first, at most SHOWN of them."""
        ranked = sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))
        out = [f"{indent}skipped {count}: {reason} (e.g. {', '.join(self.examples[reason])})"
               for reason, count in ranked[:SHOWN]]
        rest = ranked[SHOWN:]
        if rest:
            out.append(f"{indent}skipped {sum(n for _, n in rest)}: {len(rest)} other kinds of reason")
        return out
