"""How many rows each family and each cell gets, and the order threshold that finds them in one scan.

The rules are the first sampler's: family quotas are explicit counts or `n` shared by weights; inside a
family every cell (a combination of the stratify columns' values) gets an equal share, and a cell too
small to fill its share passes the remainder to the larger ones (water-filling). Ties between cells of
equal size go by the cells' order (their values, sorted).

A cell's threshold is the order below which its quota's rows are expected to lie, with room to spare:
orders are uniform on [0, 2^64), so a cell of n rows has Binomial(n, t / 2^64) rows under t. The room
(six standard deviations plus a constant) makes a scan that comes up short a one-in-a-billion event per
cell; the sampler rescans such a cell with a wider threshold, so the result never depends on the room.
"""

from __future__ import annotations

import math

import numpy as np

from forge.sampling.order import TAKE_ALL

SPARE_SD = 6.0  # standard deviations of room above a quota
SPARE_ROWS = 16  # and rows, for small quotas (Poisson tails)


def family_targets(quotas: dict[str, int], weights: dict[str, float], n: int | None) -> dict[str, int]:
    """Rows per family: the explicit quotas, or `n` shared by the weights (rounded per family)."""
    if quotas:
        return dict(quotas)
    total = sum(weights.values())
    return {family: int(round(n * weight / total)) if total > 0 else 0 for family, weight in weights.items()}


def water_fill(sizes: np.ndarray, target: int) -> np.ndarray:
    """Equal shares of `target` over cells, capped by their sizes; the remainder goes to the larger cells.

    The same takes as handing out `remaining // cells_left` to the cells from the smallest up (ties in
    the given order), vectorized: the cells that fit under that share are taken whole; the rest split
    what remains evenly, the last (largest) of them one row more.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    count = len(sizes)
    take = np.zeros(count, dtype=np.int64)
    if count == 0 or target <= 0:
        return take
    order = np.argsort(sizes, kind="stable")
    ranked = sizes[order]
    before = np.concatenate([[0], np.cumsum(ranked)[:-1]])
    left = count - np.arange(count)
    whole = ranked <= (target - before) // left
    first_partial = int(np.argmin(whole)) if not whole.all() else count
    shares = ranked.copy()
    if first_partial < count:
        share, extra = divmod(int(target - before[first_partial]), count - first_partial)
        shares[first_partial:] = share
        shares[count - extra:] += 1
    take[order] = shares
    return take


def thresholds(quota: np.ndarray, rows: np.ndarray, widen: np.ndarray | None = None) -> np.ndarray:
    """Per cell, the order threshold (uint64) whose rows cover the quota with room: TAKE_ALL where the
    room reaches the cell's size. `widen` (>= 1) multiplies the room, for a cell that came up short."""
    quota = np.asarray(quota, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.float64)
    factor = np.ones_like(quota) if widen is None else np.asarray(widen, dtype=np.float64)
    wanted = (quota + SPARE_SD * np.sqrt(quota) + SPARE_ROWS) * factor
    fraction = np.divide(wanted, rows, out=np.ones_like(wanted), where=rows > 0)
    out = np.full(len(quota), TAKE_ALL, dtype=np.uint64)
    partial = fraction < 1.0
    # floor(fraction * 2^64) stays below 2^64 for fraction < 1 once rounded down to float precision
    out[partial] = np.floor(fraction[partial] * math.ldexp(1.0, 64)).astype(np.uint64)
    return out
