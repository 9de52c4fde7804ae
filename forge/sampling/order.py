"""The seeded order of rows: a 64-bit mix of the seed and the row's qa_id, computed inside DuckDB.

A row's place depends on its qa_id and the seed only, never on where the row sits in the table, how
the table was written or compacted, or how many threads read it. The mix is SplitMix64's finalizer
over `qa_id xor salt(seed)`: a bijection of the id for each seed, whose orders under two seeds are
unrelated. (A bare xor with the seed, the first sampler's order, keeps the high bits of the id: seeds
that share their top bits then draw nearly the same rows from every cell.) The arithmetic is spelled
out in SQL, not DuckDB's `hash()`, so a DuckDB release cannot change which rows a seed picks.
"""

from __future__ import annotations

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


def _times(value: str, factor: int) -> str:
    """`value * factor` modulo 2^64 in DuckDB (UBIGINT products overflow; UHUGEINT ones do not)."""
    return f"(({value})::UHUGEINT * {factor}::UHUGEINT & {MASK}::UHUGEINT)::UBIGINT"


def order_sql(qid: str, seed: int) -> str:
    """SQL for the order of the row whose qa_id as UBIGINT is the expression `qid`."""
    z = f"xor({qid}, {salt(seed)}::UBIGINT)"
    z = _times(f"xor({z}, {z} >> 30)", M1)
    z = _times(f"xor({z}, {z} >> 27)", M2)
    return f"xor({z}, {z} >> 31)"
