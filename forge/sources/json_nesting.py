"""How deep a JSON text nests, measured block by block before a streaming parser sees it.

ijson's parsers keep the path of every value as a string ("annotations.item.segmentation.item..."), so a
file nested 100,000 deep costs them tens of gigabytes before a single item is built. A real COCO file nests
six levels at most; this guard counts brackets outside strings, vectorized over each block (a quote ends a
string unless an odd run of backslashes precedes it), and says when a text goes deeper than a limit.
"""

from __future__ import annotations

import numpy as np

STEP = 4 << 20  # bytes scanned at once
OTHER, OPENING, CLOSING, QUOTE, BACKSLASH = range(5)
KINDS = np.zeros(256, np.uint8)
KINDS[[ord("["), ord("{")]] = OPENING
KINDS[[ord("]"), ord("}")]] = CLOSING
KINDS[ord('"')] = QUOTE
KINDS[ord("\\")] = BACKSLASH


class NestingGuard:
    """Feed it the text in order; `feed` returns False once the text nests deeper than `limit`."""

    def __init__(self, limit: int):
        self.limit = limit
        self.depth = 0
        self.in_string = False
        self.backslashes = 0  # the run of backslashes that ended the previous block

    def feed(self, block: bytes) -> bool:
        return all(self._scan(np.frombuffer(block, np.uint8, count=min(STEP, len(block) - start), offset=start))
                   for start in range(0, len(block), STEP))

    def _scan(self, text: np.ndarray) -> bool:
        kinds = KINDS[text]
        marks = np.flatnonzero(kinds)  # the few characters that matter
        kind = kinds[marks]
        quotes = marks[kind == QUOTE]
        slashes = marks[kind == BACKSLASH]
        escaped = self._escaped(quotes, slashes)
        real = quotes[~escaped]
        brackets = marks[(kind == OPENING) | (kind == CLOSING)]
        outside = (np.searchsorted(real, brackets) + self.in_string) % 2 == 0
        changes = np.where(kinds[brackets[outside]] == OPENING, 1, -1)
        depths = self.depth + np.cumsum(changes)
        if depths.size and depths.max() > self.limit:
            return False
        self.depth = int(depths[-1]) if depths.size else self.depth
        self.in_string ^= bool(real.size % 2)
        self._carry(slashes, text.size)
        return True

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
