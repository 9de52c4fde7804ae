"""The seeded order of rows: a 64-bit mix of the seed and the row's qa_id, computed as the table streams by.

A row's place depends on its qa_id and the seed only, never on where the row sits in the table, how
the table was written or compacted, or how many threads read it. The mix is SplitMix64's finalizer
over `qa_id xor salt(seed)`: a bijection of the id for each seed, whose orders under two seeds are
unrelated. (A bare xor with the seed, the first sampler's order, keeps the high bits of the id: seeds
that share their top bits then draw nearly the same rows from every cell.) The arithmetic is spelled
out in numpy's wrapping uint64 arithmetic, not a library's hash, so no release of a library can change
which rows a seed picks; on a batch it costs a few milliseconds (DuckDB, lacking wrapping products, took
seconds per 30M rows).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MASK = 2**64 - 1
TAKE_ALL = MASK  # the threshold under which every order falls
GOLDEN, M1, M2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def mix(z: int) -> int:
    """SplitMix64's finalizer on one 64-bit integer."""
    z = ((z ^ (z >> 30)) * M1) & MASK
    z = ((z ^ (z >> 27)) * M2) & MASK
    return z ^ (z >> 31)


def salt(seed: int) -> int:
    """The 64-bit value a seed xors into every qa_id (any Python int is a seed, negative ones too)."""
    return mix((seed * GOLDEN + 0x632BE59BD9B4E019) & MASK)


def order_of(qa_ids: pa.Array | pa.ChunkedArray, seed: int) -> np.ndarray:
    """The order (uint64) of rows with these qa_ids (decimal text): `mix(qa_id ^ salt(seed))`, vectorized."""
    return mix_array(pc.cast(qa_ids, pa.uint64()).to_numpy(zero_copy_only=False) ^ np.uint64(salt(seed)))


def mix_array(z: np.ndarray) -> np.ndarray:
    """`mix` of every element of a uint64 array, in place; returns it."""
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= np.uint64(M1)
        z ^= z >> np.uint64(27)
        z *= np.uint64(M2)
        z ^= z >> np.uint64(31)
    return z
