"""The flake model: Cockpit's log clustering as a scikit-learn estimator, with its weaknesses fixed.

How it works (``docs/model.md`` has the reasons and the measurements):

* every training log is normalised and cut to the part that explains the failure (`bot.normalize`);
* the distance between two logs is their normalized compression distance (`bot.ncd`);
* DBSCAN groups the training failures into clusters of the same failure; each cluster's *flake share*
  is the fraction of its failures that were merged or passed anyway (or labelled flake by a human);
* a new failure is compared with its nearest training failures: it is a **flake** when the evidence of
  those neighbours (their cluster's flake share, or their own label for unclustered ones) exceeds the
  threshold, **real** otherwise, and **unknown** when even the nearest one is farther than
  ``max_distance`` — something never seen before is never called a flake.

``mode="exact"`` computes all n² distances like Cockpit; ``mode="fast"`` (default) finds candidate
neighbours through TF-IDF cosine similarity and computes compression distances only for those, then
feeds DBSCAN a sparse neighbourhood graph. ``FlakeClassifier.cockpit()`` reproduces Cockpit exactly
(whole logs, its normalisation, asymmetric distance, no cut-off, cluster vote).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator
from sklearn.cluster import DBSCAN
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.utils.validation import check_is_fitted

from bot.ncd import clen, cross_distances, pair_distances
from bot.normalize import (
    StopLines,
    error_region,
    failure_lines,
    mask_test_name,
    normalize_log,
    split_lines,
    tail_bytes,
    usable_lines,
)
from bot.records import truth

Progress = Callable[[str, int, int], None]  # (stage, advance, total)

# When focusing, only the last lines of a log are normalised: the failure is at the end.
SCAN_LINES = 5000
# Distances are stored in the sparse DBSCAN graph; an exact 0 is stored as this to stay an entry.
_ZERO = 1e-12
# How many neighbours a verdict lists as evidence.
EVIDENCE_NEIGHBOURS = 5


def _as_record(x: Any) -> Mapping[str, Any]:
    if isinstance(x, str):
        return {"log": x, "test": ""}
    if isinstance(x, Mapping) and isinstance(x.get("log"), str):
        return x
    raise TypeError(f"expected a log string or a record with a 'log', got {type(x).__name__}")


def _evidence(y: Any) -> int:
    """Training targets: 1/True/'flake' is flake evidence; 0/False/'real'/None is not."""
    if y is None or y is False or y == 0 or y == "real":
        return 0
    if y is True or y == 1 or y == "flake":
        return 1
    raise ValueError(f"unknown target {y!r}: use 1/0, true/false, 'flake'/'real' or None")


def _distance_weights(d: np.ndarray) -> np.ndarray:
    """Inverse-distance weights as scikit-learn's ``weights='distance'``: exact matches win outright."""
    zero = d <= 0
    if zero.any():
        return zero.astype(np.float64)
    return 1.0 / d


class FlakeClassifier(BaseEstimator):
    """Tells flaky test failures from real ones by comparing their logs with past failures.

    Parameters
    ----------
    mode : "fast" or "exact"
        How neighbours are found: TF-IDF candidates + compression distance (fast) or all pairs (exact).
    eps, min_samples : DBSCAN parameters (Cockpit: 0.3 and 3; ``min_samples`` is capped at n/10).
    n_neighbors : how many nearest training failures vote (Cockpit: 5, distance-weighted).
    threshold : a failure is a flake when its flake probability exceeds this (Cockpit: 0.4).
    max_df : lines in more than this share of training logs are dropped as stop lines (0.17).
    keep_error_lines : never drop lines that say what failed as stop lines (Cockpit did).
    max_distance : the prediction cut-off; a failure farther than this from every training failure is
        "unknown". None disables it (Cockpit).
    focus : compare only the failing part of each log (True) or whole logs (Cockpit).
    focus_bytes : size cap of that part, keeping its end.
    symmetric : symmetric compression distance (True) or Cockpit's one-sided one.
    normalizer : "extended" (flakebot) or "cockpit" line normalisation.
    vote : "evidence" — the neighbours' cluster flake shares (their own label when unclustered), or
        "cluster" — Cockpit's majority cluster, whose flake share decides (noise is never a flake).
    n_candidates : fast mode: candidate neighbours per failure from TF-IDF cosine similarity.
    n_jobs : threads for the compression distances (-1: all cores).
    """

    def __init__(
        self,
        mode: str = "fast",
        eps: float = 0.3,
        min_samples: int = 3,
        n_neighbors: int = 5,
        threshold: float = 0.4,
        max_df: float = 0.17,
        keep_error_lines: bool = True,
        max_distance: float | None = 0.3,
        focus: bool = True,
        focus_bytes: int = 8192,
        symmetric: bool = True,
        normalizer: str = "extended",
        vote: str = "evidence",
        n_candidates: int = 30,
        n_jobs: int | None = -1,
    ):
        self.mode = mode
        self.eps = eps
        self.min_samples = min_samples
        self.n_neighbors = n_neighbors
        self.threshold = threshold
        self.max_df = max_df
        self.keep_error_lines = keep_error_lines
        self.max_distance = max_distance
        self.focus = focus
        self.focus_bytes = focus_bytes
        self.symmetric = symmetric
        self.normalizer = normalizer
        self.vote = vote
        self.n_candidates = n_candidates
        self.n_jobs = n_jobs

    @classmethod
    def cockpit(cls, **overrides: Any) -> FlakeClassifier:
        """Cockpit's learner as it was: whole logs, its normalisation, one-sided NCD, no cut-off."""
        params: dict[str, Any] = dict(
            mode="exact",
            max_distance=None,
            focus=False,
            symmetric=False,
            normalizer="cockpit",
            keep_error_lines=False,
            vote="cluster",
        )
        params.update(overrides)
        return cls(**params)

    # --- representation ----------------------------------------------------------------------
    def validate_params(self) -> None:
        if self.mode not in ("fast", "exact"):
            raise ValueError(f"mode must be 'fast' or 'exact', not {self.mode!r}")
        if self.vote not in ("evidence", "cluster"):
            raise ValueError(f"vote must be 'evidence' or 'cluster', not {self.vote!r}")
        if self.normalizer not in ("extended", "cockpit"):
            raise ValueError(f"normalizer must be 'extended' or 'cockpit', not {self.normalizer!r}")
        if not 0 < self.eps <= 1 or not 0 <= self.threshold < 1:
            raise ValueError("eps must be in (0, 1] and threshold in [0, 1)")
        if self.max_distance is not None and not 0 < self.max_distance <= 1.5:
            raise ValueError("max_distance must be in (0, 1.5] or None")

    def _lines(self, record: Mapping[str, Any]) -> list[str]:
        """Normalised lines (Cockpit: the whole log; flakebot: the last error region, test name masked)."""
        if not self.focus:
            return normalize_log(record["log"], self.normalizer)
        region = usable_lines(error_region(split_lines(record["log"])[-SCAN_LINES:]))
        text = mask_test_name("\n".join(region), record.get("test") or "")
        return normalize_log(text, self.normalizer)

    def _text(self, lines: list[str]) -> str:
        if self.focus:
            kept = tail_bytes(failure_lines(lines, self.stop_lines_), self.focus_bytes)
        else:
            kept = self.stop_lines_.drop(lines)
        return "\n".join(kept)

    def slim(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The record with its log cut to the part this model reads (whole logs in Cockpit's mode).

        Keeping slim records bounds the memory of training on thousands of long logs and the size of
        the failures the bot stores for retraining; the verdict on a slim record is the same.
        """
        record = dict(_as_record(record))
        if self.focus:
            record["log"] = "\n".join(error_region(split_lines(record["log"])[-SCAN_LINES:]))
        return record

    def prepare(self, X: Iterable[Any]) -> list[str]:
        """The texts the model compares for these logs or records (after fit)."""
        return [self._text(self._lines(_as_record(x))) for x in X]

    # --- training ------------------------------------------------------------------------------
    def fit(self, X: Sequence[Any], y: Sequence[Any] | None = None, progress: Progress | None = None):
        """Learn from failed runs. ``X``: records (or log strings); ``y``: flake evidence per item
        (defaults to the records' own ``label``/``merged``)."""
        self.validate_params()
        start = time.perf_counter()
        records = [_as_record(x) for x in X]
        n = len(records)
        if n < 2:
            raise ValueError(f"need at least 2 failures to train, got {n}")
        if y is None:
            truths = [truth(r) for r in records]
            y = truths
        else:
            truths = ["flake" if _evidence(v) else ("real" if v in (0, False, "real") else None) for v in y]
        self.y_ = np.array([_evidence(v) for v in y], dtype=np.int8)
        if len(self.y_) != n:
            raise ValueError(f"X has {n} items but y has {len(self.y_)}")
        self.truth_ = truths
        self.meta_ = [
            {k: r.get(k) for k in ("test", "context", "job", "url", "date", "pull", "revision") if r.get(k)}
            for r in records
        ]

        lines = []
        for r in records:
            lines.append(self._lines(r))
            if progress:
                progress("normalise", 1, n)
        self.stop_lines_ = StopLines(self.max_df, keep_errors=self.keep_error_lines).fit(lines)
        self.texts_ = [self._text(item) for item in lines]
        del lines
        data = self._encoded = [t.encode("utf-8") for t in self.texts_]
        self.lengths_ = np.array([clen(d) for d in data], dtype=np.int64)

        if self.mode == "exact":
            graph, self.n_distances_ = self._exact_graph(data, progress)
        else:
            graph, self.n_distances_ = self._fast_graph(data, progress)
        # Cockpit's min(3, n/10) was a float; a neighbour count is whole, so its ceiling is the same rule
        min_samples = max(1, math.ceil(min(self.min_samples, n / 10)))
        self.labels_ = DBSCAN(eps=self.eps, min_samples=min_samples, metric="precomputed").fit(graph).labels_
        if progress:
            progress("cluster", 1, 1)

        clustered = self.labels_ >= 0
        n_clusters = int(self.labels_.max()) + 1 if clustered.any() else 0
        sizes = np.bincount(self.labels_[clustered], minlength=n_clusters)
        flakes = np.bincount(self.labels_[clustered], weights=self.y_[clustered], minlength=n_clusters)
        self.cluster_size_ = sizes.astype(np.int64)
        self.cluster_share_ = np.divide(flakes, sizes, out=np.zeros(n_clusters), where=sizes > 0)
        self.n_clusters_ = n_clusters
        self.n_noise_ = int((~clustered).sum())
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _exact_graph(self, data: list[bytes], progress: Progress | None) -> tuple[np.ndarray, int]:
        n = len(data)
        if self.symmetric:
            i, j = np.triu_indices(n, k=1)
        else:
            i, j = np.nonzero(~np.eye(n, dtype=bool))
        pairs = np.stack([i, j], axis=1)
        report = (lambda k: progress("distances", k, len(pairs))) if progress else None
        d = pair_distances(
            data, self.lengths_, pairs, symmetric=self.symmetric, n_jobs=self.n_jobs, progress=report
        )
        matrix = np.zeros((n, n), dtype=np.float64)
        matrix[i, j] = d
        if self.symmetric:
            matrix[j, i] = d
        return matrix, len(pairs)

    def _fast_graph(self, data: list[bytes], progress: Progress | None) -> tuple[sparse.csr_matrix, int]:
        n = len(data)
        # character 4-grams approximate what a compressor finds in common better than words do; hashed
        # into a fixed space, so no vocabulary of millions of 4-grams is ever held in memory
        self.hasher_ = HashingVectorizer(analyzer="char", ngram_range=(4, 4), n_features=2**20,
                                         alternate_sign=False, norm=None, dtype=np.float32)  # fmt: skip
        counts = self._hash(self.texts_)
        self.idf_ = TfidfTransformer(sublinear_tf=True).fit(counts)
        rows = self.idf_.transform(counts).tocsr()
        del counts
        # only the inverted index (4-gram -> training logs) is kept: it serves training and queries
        self.index_ = rows.T.tocsr()
        candidates = self._candidates(rows, self.n_candidates + 1)
        del rows
        rows = np.repeat(np.arange(n), [len(c) for c in candidates])
        cols = np.concatenate(candidates) if candidates else np.array([], dtype=np.int64)
        keep = rows != cols
        pairs = np.stack([rows[keep], cols[keep]], axis=1)
        if self.symmetric:  # each unordered pair once
            pairs = np.unique(np.sort(pairs, axis=1), axis=0)
        else:  # both orders of every candidate pair
            pairs = np.unique(np.concatenate([pairs, pairs[:, ::-1]]), axis=0)
        report = (lambda k: progress("distances", k, len(pairs))) if progress else None
        d = pair_distances(
            data, self.lengths_, pairs, symmetric=self.symmetric, n_jobs=self.n_jobs, progress=report
        )
        near = d <= self.eps
        i, j, d = pairs[near, 0], pairs[near, 1], np.maximum(d[near], _ZERO)
        if self.symmetric:
            i, j, d = np.concatenate([i, j]), np.concatenate([j, i]), np.concatenate([d, d])
        return sparse.csr_matrix((d, (i, j)), shape=(n, n)), len(pairs)

    def _hash(self, texts: Sequence[str], chunk: int = 500) -> sparse.csr_matrix:
        """4-gram counts of the texts, a chunk at a time: scikit-learn gathers every 4-gram occurrence
        of a batch before summing them, which for thousands of logs is far bigger than the result."""
        return sparse.vstack(
            [self.hasher_.transform(texts[i : i + chunk]) for i in range(0, len(texts), chunk)]
            or [self.hasher_.transform([])]
        ).tocsr()

    def _candidates(self, queries: sparse.csr_matrix, k: int) -> list[np.ndarray]:
        """Indices of the ``k`` training items most similar (TF-IDF cosine) to each query row."""
        out: list[np.ndarray] = []
        index = self.index_
        n = index.shape[1]
        k = min(k, n)
        step = max(1, 2_000_000 // max(n, 1))  # rows per block: bounded dense memory
        for start in range(0, queries.shape[0], step):
            sims = (queries[start : start + step] @ index).toarray()
            top = (
                np.argpartition(-sims, k - 1, axis=1)[:, :k]
                if k < n
                else np.tile(np.arange(n), (len(sims), 1))
            )
            for row, idx in zip(sims, top, strict=True):
                out.append(idx[np.argsort(-row[idx], kind="stable")])
        return out

    # --- prediction ----------------------------------------------------------------------------
    def kneighbors(
        self, X: Iterable[Any], n_neighbors: int | None = None
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Distances and indices of the nearest training failures of each item, nearest first."""
        check_is_fitted(self, "labels_")
        k = n_neighbors or max(self.n_neighbors, EVIDENCE_NEIGHBOURS)
        texts = self.prepare(X)
        data = [t.encode("utf-8") for t in texts]
        lengths = [clen(d) for d in data]
        encoded = self._training_bytes()
        if self.mode == "exact":
            columns = None
        else:
            columns = self._candidates(self.idf_.transform(self._hash(texts)).tocsr(), self.n_candidates)
        rows = cross_distances(
            data, lengths, encoded, self.lengths_, columns, symmetric=self.symmetric, n_jobs=self.n_jobs
        )
        dists, idxs = [], []
        for q, row in enumerate(rows):
            cols = np.arange(len(encoded)) if columns is None else np.asarray(columns[q])
            order = np.argsort(row, kind="stable")[:k]
            dists.append(row[order])
            idxs.append(cols[order])
        return dists, idxs

    def _training_bytes(self) -> list[bytes]:
        encoded = getattr(self, "_encoded", None)
        if encoded is None:
            encoded = self._encoded = [t.encode("utf-8") for t in self.texts_]
        return encoded

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_encoded", None)  # derived from texts_, rebuilt on first use
        return state

    def explain(self, X: Iterable[Any]) -> list[dict[str, Any]]:
        """One verdict per item, with its evidence (see ``docs/model.md`` for the fields)."""
        items = list(X)
        dists, idxs = self.kneighbors(items)
        return [self._verdict(d, i) for d, i in zip(dists, idxs, strict=True)]

    def predict(self, X: Iterable[Any]) -> np.ndarray:
        """'flake', 'real' or 'unknown' per item."""
        return np.array([v["verdict"] for v in self.explain(X)], dtype=object)

    def predict_proba(self, X: Iterable[Any]) -> np.ndarray:
        """Flake probability per item (NaN for unknown items)."""
        return np.array(
            [np.nan if v["flake_probability"] is None else v["flake_probability"] for v in self.explain(X)]
        )

    def _verdict(self, dist: np.ndarray, idx: np.ndarray) -> dict[str, Any]:
        nearest = [
            {
                **self.meta_[j],
                "distance": round(float(d), 4),
                "label": self.truth_[j],
                "cluster": int(self.labels_[j]) if self.labels_[j] >= 0 else None,
            }
            for d, j in zip(dist[:EVIDENCE_NEIGHBOURS], idx[:EVIDENCE_NEIGHBOURS], strict=True)
        ]
        closest = float(dist[0]) if len(dist) else None
        verdict: dict[str, Any] = {
            "verdict": "unknown",
            "flake_probability": None,
            "cluster": None,
            "cluster_size": 0,
            "cluster_flake_share": None,
            "distance": None if closest is None else round(closest, 4),
            "nearest": nearest,
            "reason": "",
        }
        if closest is None or (self.max_distance is not None and closest > self.max_distance):
            verdict["reason"] = (
                "unlike every past failure: the nearest is "
                + ("missing" if closest is None else f"{closest:.2f} away")
                + f" (cut-off {self.max_distance})"
            )
            return verdict

        within = dist[: self.n_neighbors]
        members = idx[: self.n_neighbors]
        if self.max_distance is not None:
            members = members[within <= self.max_distance]
            within = within[within <= self.max_distance]
        weights = _distance_weights(within)
        labels = self.labels_[members]
        # the cluster the weighted majority of neighbours belongs to (noise = -1), as Cockpit
        totals: dict[int, float] = {}
        for label, w in zip(labels.tolist(), weights.tolist(), strict=True):
            totals[label] = totals.get(label, 0.0) + w
        cluster = max(sorted(totals), key=lambda c: totals[c])
        if cluster >= 0:
            verdict.update(
                cluster=cluster,
                cluster_size=int(self.cluster_size_[cluster]),
                cluster_flake_share=round(float(self.cluster_share_[cluster]), 4),
            )

        if self.vote == "cluster":
            p = float(self.cluster_share_[cluster]) if cluster >= 0 else 0.0
        else:
            values = np.where(labels >= 0, self.cluster_share_[np.maximum(labels, 0)], self.y_[members])
            p = float(np.dot(weights, values) / weights.sum())
        flake = p > self.threshold
        verdict["verdict"] = "flake" if flake else "real"
        verdict["flake_probability"] = round(p, 4)
        if cluster >= 0:
            verdict["reason"] = (
                f"like cluster {cluster} of {verdict['cluster_size']} past failures, "
                f"{verdict['cluster_flake_share']:.0%} of which were flaky"
            )
        else:
            verdict["reason"] = (
                f"like {len(members)} unclustered past failure(s), {p:.0%} flaky by distance-weighted vote"
            )
        return verdict

    def summary(self) -> dict[str, Any]:
        """Figures of the fitted model, for the CLI and the model registry."""
        return {
            "failures": len(self.y_),
            "flake_evidence": int(self.y_.sum()),
            "clusters": self.n_clusters_,
            "noise": self.n_noise_,
            "distances_computed": self.n_distances_,
            "stop_lines": len(self.stop_lines_.lines),
            "seconds": round(self.fit_seconds_, 3),
            "params": self.get_params(),
        }
