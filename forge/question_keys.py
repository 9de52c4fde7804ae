"""The 64-bit key of a question on an image: what the sampler's dedup and splits read instead of the text.

`forge sample` takes an identical question on one image once, and puts an image in one split by its id's
first 32 bits. Reading `image_id` and `question` for that costs more than everything else it reads (two
long text columns; bench/RESULTS.md), so every QA row also stores `question_key`:
- the high 32 bits: the image's position, its id's first 8 hex digits (what the split is drawn from);
- the low 32 bits: a hash of the question's UTF-8 bytes.
Equal texts on one image always have equal keys; equal keys are only candidates (a hash may collide), so
the sampler compares the texts of the few rows whose keys repeat. The hash is spelled out in numpy's
wrapping uint64 arithmetic over little-endian 8-byte words (a polynomial, then SplitMix64's finalizer),
not a library's hash, so keys written by any build, machine or library version agree.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
from numpy.lib.stride_tricks import as_strided

from forge.sampling.order import mix_array

_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd: every power is invertible mod 2^64, so one changed word always shows
_POWERS = np.concatenate([[np.uint64(1)], np.cumprod(np.full((1 << 12) - 1, _BASE, dtype=np.uint64))])
_SLICE = 1 << 16  # rows hashed at a time: working arrays of a few MB


def image_positions(image_ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Each image id's first 32 bits (its first 8 hex digits; 0 for a null or non-hex id), as uint64."""
    ids = pl.Series(values=image_ids) if not isinstance(image_ids, pl.Series) else image_ids
    return ids.str.slice(0, 8).str.to_integer(base=16, strict=False).fill_null(0).cast(pl.UInt64).to_numpy()


def text_hashes(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A stable 64-bit hash of each string's UTF-8 bytes (null hashes as empty)."""
    texts = texts.cast(pa.large_string())
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    count = len(texts)
    offsets = np.frombuffer(texts.buffers()[1], np.int64)[texts.offset:texts.offset + count + 1]
    data = texts.buffers()[2]
    data = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    out = np.empty(count, np.uint64)
    for lo in range(0, count, _SLICE):
        edges = offsets[lo:min(count, lo + _SLICE) + 1]
        out[lo:lo + len(edges) - 1] = _hash_slice(data[edges[0]:edges[-1]], edges - edges[0])
    return mix_array(out)


def _hash_slice(blob: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Σ word_k · BASE^k over each string's 8-byte words (the last one zero-padded), xor its length."""
    lengths = np.diff(edges)
    words = (lengths + 7) >> 3
    padded = np.concatenate([blob, np.zeros(8, np.uint8)])
    first = np.cumsum(words) - words
    k = np.arange(int(words.sum())) - np.repeat(first, words)
    starts = np.repeat(edges[:-1], words) + 8 * k
    word = as_strided(padded, shape=(len(padded) - 7, 8), strides=(1, 1))[starts].view("<u8").ravel()
    left = np.repeat(lengths, words) - 8 * k
    tail = left < 8
    word[tail] &= (np.uint64(1) << (np.uint64(8) * left[tail].astype(np.uint64))) - np.uint64(1)
    word *= _POWERS[k % len(_POWERS)]  # texts over 32 KB reuse powers: still a function of the text
    sums = np.zeros(len(lengths), np.uint64)
    some = words > 0
    if some.any():
        sums[some] = np.add.reduceat(word, first[some])
    return sums ^ lengths.astype(np.uint64)


def question_keys(image_ids: pa.Array | pa.ChunkedArray, questions: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The `question_key` of each row: image position in the high 32 bits, the question's hash in the low."""
    return (image_positions(image_ids) << np.uint64(32)) | (text_hashes(questions) >> np.uint64(32))
