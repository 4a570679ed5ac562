"""Normalized compression distance (NCD) between logs, with zlib as Cockpit used it.

``NCD(a, b) = (C(ab) - min(C(a), C(b))) / max(C(a), C(b))`` where ``C`` is the length of the zlib
(level 6) compressed text. Identical texts are at distance 0.

Cockpit used the formula as is, so ``NCD(a, b) != NCD(b, a)``: the order of the concatenation changes
what zlib finds. flakebot's default is the usual symmetrisation, ``min(C(ab), C(ba))`` in the numerator,
which costs a second compression per pair; ``symmetric=False`` keeps Cockpit's version.

zlib releases the GIL while it compresses, so the batch functions spread pairs over threads.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

LEVEL = 6


def clen(data: bytes) -> int:
    """Compressed length of ``data``."""
    return len(zlib.compress(data, LEVEL))


def ncd(a: bytes, b: bytes, ca: int | None = None, cb: int | None = None, symmetric: bool = True) -> float:
    """The NCD of two byte strings; pass their compressed lengths when known (they are cached)."""
    if a == b:
        return 0.0
    ca = clen(a) if ca is None else ca
    cb = clen(b) if cb is None else cb
    cab = clen(a + b)
    if symmetric:
        cab = min(cab, clen(b + a))
    return max(0.0, (cab - min(ca, cb)) / max(ca, cb, 1))


def _workers(n_jobs: int | None) -> int:
    if n_jobs is None or n_jobs == 0:
        return 1
    if n_jobs < 0:
        return max(1, (os.cpu_count() or 1) + 1 + n_jobs)
    return n_jobs


def _run(chunks: list, work: Callable, n_jobs: int | None, progress: Callable[[int], None] | None):
    workers = _workers(n_jobs)
    if workers == 1:
        results = []
        for chunk in chunks:
            results.append(work(chunk))
            if progress:
                progress(len(chunk))
        return results
    with ThreadPoolExecutor(workers) as pool:
        results = []
        for chunk, result in zip(chunks, pool.map(work, chunks), strict=True):
            results.append(result)
            if progress:
                progress(len(chunk))
        return results


def pair_distances(
    texts: Sequence[bytes],
    lengths: Sequence[int],
    pairs: np.ndarray,
    *,
    symmetric: bool = True,
    n_jobs: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """NCD for each (i, j) row of ``pairs`` (an ``(m, 2)`` int array) over one collection of texts."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)

    def work(chunk: np.ndarray) -> list[float]:
        return [ncd(texts[i], texts[j], lengths[i], lengths[j], symmetric) for i, j in chunk]

    chunks = [pairs[k : k + 512] for k in range(0, len(pairs), 512)]
    out = _run(chunks, work, n_jobs, progress)
    return np.fromiter((d for part in out for d in part), dtype=np.float64, count=len(pairs))


def cross_distances(
    queries: Sequence[bytes],
    query_lengths: Sequence[int],
    texts: Sequence[bytes],
    lengths: Sequence[int],
    columns: Sequence[Sequence[int]] | None = None,
    *,
    symmetric: bool = True,
    n_jobs: int | None = None,
) -> list[np.ndarray]:
    """For each query, its NCD to ``texts`` (all of them, or the indices in ``columns[q]``).

    The query is the first part of the concatenation, as in Cockpit's prediction.
    """

    def work(q: int) -> np.ndarray:
        cols = range(len(texts)) if columns is None else columns[q]
        a, ca = queries[q], query_lengths[q]
        return np.array([ncd(a, texts[j], ca, lengths[j], symmetric) for j in cols], dtype=np.float64)

    workers = _workers(n_jobs)
    if workers == 1 or len(queries) == 1:
        return [work(q) for q in range(len(queries))]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(work, range(len(queries))))
