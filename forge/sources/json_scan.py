"""The structure of a JSON text, found block by block without parsing it: where its brackets and commas
outside strings are, and at which level.

A 25-million-box COCO file is one JSON object, so no parser can hand it over a piece at a time by
itself. This scanner finds, vectorized over each block (a quote ends a string unless an odd run of
backslashes precedes it), the brackets and commas of the top levels: where each top-level array starts
and ends, and the commas between its items, so a reader can cut the array into batches of whole items
and give each batch to a fast parser. It also refuses a text nested deeper than a limit: ijson keeps the
path of every value as a string, so a file nested 100,000 deep would cost it tens of gigabytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STEP = 4 << 20  # bytes scanned at once
OTHER, OPENING, CLOSING, QUOTE, BACKSLASH, COMMA = range(6)
KINDS = np.zeros(256, np.uint8)
KINDS[[ord("["), ord("{")]] = OPENING
KINDS[[ord("]"), ord("}")]] = CLOSING
KINDS[ord('"')] = QUOTE
KINDS[ord("\\")] = BACKSLASH
KINDS[ord(",")] = COMMA


@dataclass(frozen=True)
class Marks:
    """A block's brackets and commas outside strings, down to a level: `positions` in the block, `kinds`
    (OPENING, CLOSING, COMMA) and `levels`, the level each sits at: the top-level value's own brackets
    are level 0, the brackets of its members' values and the commas between its members level 1, and so
    on (an array's items and the commas between them sit one level below the array's brackets)."""

    positions: np.ndarray
    kinds: np.ndarray
    levels: np.ndarray


class JsonScanner:
    """Feed it the text in order, a block at a time; `scan` returns the block's `Marks` down to
    `levels`, or None once the text nests deeper than `limit`."""

    def __init__(self, limit: int, levels: int):
        self.limit, self.levels = limit, levels
        self.depth = 0
        self.in_string = False
        self.backslashes = 0  # the run of backslashes that ended the previous block

    @property
    def complete(self) -> bool:
        """Every bracket opened so far is closed, outside any string."""
        return self.depth == 0 and not self.in_string

    def scan(self, block: bytes) -> Marks | None:
        parts = []
        for start in range(0, len(block), STEP):
            marks = self._scan(np.frombuffer(block, np.uint8, count=min(STEP, len(block) - start), offset=start))
            if marks is None:
                return None
            parts.append(Marks(marks.positions + start, marks.kinds, marks.levels))
        if not parts:
            return Marks(np.zeros(0, np.int64), np.zeros(0, np.uint8), np.zeros(0, np.int64))
        return Marks(*(np.concatenate([getattr(p, name) for p in parts]) for name in ("positions", "kinds", "levels")))

    def _scan(self, text: np.ndarray) -> Marks | None:
        kinds = KINDS[text]
        marks = np.flatnonzero(kinds)  # the few characters that matter
        kind = kinds[marks]
        quotes = marks[kind == QUOTE]
        slashes = marks[kind == BACKSLASH]
        escaped = self._escaped(quotes, slashes)
        real = quotes[~escaped]
        structural = marks[(kind == OPENING) | (kind == CLOSING) | (kind == COMMA)]
        structural = structural[(np.searchsorted(real, structural) + self.in_string) % 2 == 0]
        structural_kinds = kinds[structural]
        opening = structural_kinds == OPENING
        depths = self.depth + np.cumsum(np.where(opening, 1, np.where(structural_kinds == CLOSING, -1, 0)))
        if depths.size and depths.max() > self.limit:
            return None
        self.depth = int(depths[-1]) if depths.size else self.depth
        self.in_string ^= bool(real.size % 2)
        self._carry(slashes, text.size)
        levels = depths - opening
        keep = levels <= self.levels
        return Marks(structural[keep], structural_kinds[keep], levels[keep])

    def _escaped(self, quotes: np.ndarray, slashes: np.ndarray) -> np.ndarray:
        """Which quotes an odd run of backslashes precedes."""
        odd = np.zeros(quotes.size, bool)
        if self.backslashes % 2 and quotes.size and quotes[0] == 0:
            odd[0] = True
        if not slashes.size:
            return odd
        starts = np.flatnonzero(np.diff(slashes, prepend=-2) != 1)  # runs of consecutive backslashes
        ends = slashes[np.append(starts[1:], slashes.size) - 1]
        lengths = np.append(starts[1:], slashes.size) - starts
        if slashes.size and slashes[0] == 0:
            lengths[0] += self.backslashes
        run = np.searchsorted(ends, quotes - 1)
        found = run < ends.size
        preceded = np.zeros(quotes.size, bool)
        preceded[found] = ends[run[found]] == quotes[found] - 1
        odd[preceded] = lengths[run[preceded]] % 2 == 1
        return odd

    def _carry(self, slashes: np.ndarray, size: int) -> None:
        """The run of backslashes the block ends with (it may escape the next block's first quote)."""
        if not slashes.size or slashes[-1] != size - 1:
            self.backslashes = 0
            return
        gaps = np.flatnonzero(np.diff(slashes) != 1)
        run = slashes.size - (gaps[-1] + 1 if gaps.size else 0)
        self.backslashes = run + (self.backslashes if run == size else 0)
