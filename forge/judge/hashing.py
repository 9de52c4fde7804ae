"""Stable seeded hashes for every choice a build makes by chance: naming order, phrasing, set
order, balancing, row ids.

They are SplitMix64 mixes of 64-bit integers written out here, not a library's hash, so the same
inputs give the same table on any machine and with any Polars, Daft or NumPy version. Polars'
unsigned arithmetic wraps, so the mix runs as columnar expressions; each step is its own column
(a nested expression would repeat its inputs at every level).
"""

from __future__ import annotations

import hashlib

import polars as pl

U64 = pl.UInt64
_GOLDEN, _M1, _M2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def salt(*parts: object) -> int:
    """A 64-bit constant from text parts, e.g. salt("template", family, seed)."""
    digest = hashlib.blake2b("\x1f".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _mix(z: pl.Expr) -> pl.Expr:
    z = (z ^ (z // pl.lit(1 << 30, U64))) * pl.lit(_M1, U64)
    z = (z ^ (z // pl.lit(1 << 27, U64))) * pl.lit(_M2, U64)
    return z ^ (z // pl.lit(1 << 31, U64))


def add_hash(frame: pl.DataFrame, name: str, values: list[pl.Expr | str], seed_salt: int) -> pl.DataFrame:
    """Add column `name`: a u64 hash of `values` (integer columns; negatives wrap) under `seed_salt`."""
    frame = frame.with_columns(pl.lit(seed_salt, U64).alias(name))
    for value in values:
        expr = pl.col(value) if isinstance(value, str) else value
        step = pl.col(name) ^ (expr.cast(U64, wrap_numerical=True) + pl.lit(_GOLDEN, U64))
        frame = frame.with_columns(step.alias(name)).with_columns(_mix(pl.col(name)).alias(name))
    return frame


def image_keys(image_ids: pl.Series) -> pl.Series:
    """A u64 key per image id, decided by the id alone: forge's ids are hex content hashes (their first
    16 digits are the key); any other id (from a table made elsewhere) is hashed."""
    hex_like = image_ids.str.contains(r"^[0-9a-f]{16}")
    keys = image_ids.str.slice(0, 16).str.to_integer(base=16, dtype=U64, strict=False)
    others = (~hex_like).arg_true()
    if others.len():
        hashed = pl.Series([salt("image", i) for i in image_ids.gather(others).to_list()], dtype=U64)
        keys = keys.scatter(others, hashed)
    return keys
