"""The flake model: Cockpit's log clustering with a second opinion, as one scikit-learn classifier.

How a verdict is made (``docs/model.md`` has the reasons and the measurements):

* every log is cut to its **failing part** (`bot.normalize.failing_part`), the test's own name is
  masked, and its lines are normalised;
* **neighbours** — the distance between two failures is the normalized compression distance of the
  lines that say what failed and where (`bot.ncd`); DBSCAN groups the training failures into clusters
  of the same failure, each with its *flake share*; the nearest training failures vote with their
  cluster's share (their own label when unclustered), weighted by closeness;
* a **second opinion** — a linear text model (TF-IDF + logistic regression) on the whole failing
  part, fitted in the same ``fit``: it generalises to failures unlike any seen before, where the
  neighbours are far;
* one **calibrated flake probability** combines them: a small logistic regression over the two
  opinions and the distance to the nearest neighbour, fitted on out-of-fold opinions of the training
  failures (leave-one-out neighbours, 5-fold text model);
* the failure is a **flake** above ``threshold``, **real** below, and **unknown** only when the
  evidence is both far (the nearest neighbour is farther than 95% of the training failures are from
  theirs) and inconclusive (the two opinions disagree and the probability is near the threshold);
* ``retry_threshold_`` is set by a trial on held-out failures (`bot.trial`): the lowest probability
  at which the trial's verdicts reached the precision the user chose (0.97 by default). The service
  re-runs a job only above it — never on a coin toss, and never for a model that was not trialled.

``mode="exact"`` computes all n² distances like Cockpit; ``mode="fast"`` (default) finds candidate
neighbours through TF-IDF cosine similarity of character 4-grams and computes compression distances
only for those. ``FlakeClassifier.cockpit()`` reproduces Cockpit exactly (whole logs, its
normalisation, asymmetric distance, no second opinion, cluster vote).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import sklearn
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.cluster import DBSCAN
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from bot.ncd import clen, cross_distances, pair_distances
from bot.normalize import StopLines, failing_part, failure_lines, infra_signs, mask_test_name, normalize_log
from bot.records import truth

Progress = Callable[[str, int, int], None]  # (stage, advance, total)

# Distances are stored in the sparse DBSCAN graph; an exact 0 is stored as this to stay an entry.
_ZERO = 1e-12
# How many neighbours a verdict lists as evidence, and how many of its strongest terms.
EVIDENCE_NEIGHBOURS = 5
EVIDENCE_TERMS = 6
# Out-of-fold opinions of at least this many failures of each kind are needed to fit the combination;
# with fewer the two opinions are averaged.
MIN_PER_CLASS_TO_STACK = 5
# "Far": farther from its nearest training failure than this share of training failures are from theirs.
FAR_QUANTILE = 0.95
# "Inconclusive": the probability is within this of the threshold and the two opinions disagree.
UNSURE_MARGIN = 0.15
# The text model's words: they start with a letter and may hold dots, colons and dashes inside
# (``registry.gitlab.com``, ``E0425``-style codes stay whole; digits were normalised to 000).
WORD = r"(?u)\b[^\W\d_][\w.:-]*\w\b"
# Probabilities are clipped to this before their logit is taken.
_CLIP = 0.02


def _as_record(x: Any) -> Mapping[str, Any]:
    if isinstance(x, str):
        return {"log": x, "test": ""}
    if isinstance(x, Mapping) and isinstance(x.get("log"), str):
        return x
    raise TypeError(f"expected a log string or a record with a 'log', got {type(x).__name__}")


def fingerprint(record: Mapping[str, Any], part: Sequence[str] | None = None) -> int:
    """A 64-bit identity of one failure: its test, date, job and the end of its failing part (the
    same on a record and on its slim copy), to tell whether a trial judges failures a model learnt
    from. ``part``: the record's failing part, when already known."""
    tail = "\n".join(failing_part(record["log"]) if part is None else part)[-2048:]
    key = "\0".join(str(record.get(k) or "") for k in ("test", "date", "job", "url")) + "\0" + tail
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8", "replace"), digest_size=8).digest(), "big")


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


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _CLIP, 1 - _CLIP)
    return np.log(p / (1 - p))


def abstains(
    closest: float | None,
    far: bool,
    fixed_cut_off: bool,
    vote: float,
    text: float | None,
    p: float,
    threshold: float,
) -> bool:
    """Whether a verdict is "unknown": no neighbour at all; or far from every training failure and —
    unless a fixed cut-off was asked for, which abstains on distance alone — inconclusive: the
    neighbours and the text model fall on different sides of the threshold and the combined
    probability is within ``UNSURE_MARGIN`` of it."""
    if closest is None:
        return True
    if not far:
        return False
    if fixed_cut_off:
        return True
    split = text is not None and (vote > threshold) != (text > threshold)
    return split and abs(p - threshold) < UNSURE_MARGIN


class FlakeClassifier(ClassifierMixin, BaseEstimator):
    """Tells flaky test failures from real ones by comparing their logs with past failures.

    ``classes_`` is ``["flake", "real"]``; ``predict_proba`` gives their probabilities (columns in
    that order); ``predict`` gives "flake", "real" or — when the evidence is far and inconclusive —
    "unknown"; ``explain`` gives each verdict with its evidence.

    Parameters
    ----------
    mode : "fast" or "exact"
        How neighbours are found: TF-IDF candidates + compression distance (fast) or all pairs (exact).
    eps, min_samples : DBSCAN parameters (Cockpit: 0.3 and 3; ``min_samples`` is capped at n/10).
    n_neighbors : how many nearest training failures vote (Cockpit: 5, distance-weighted).
    threshold : a failure is a flake when its flake probability exceeds this (Cockpit: 0.4).
    max_df : lines in more than this share of training logs are dropped as stop lines (0.17).
    keep_error_lines : never drop lines that say what failed as stop lines (Cockpit did).
    max_distance : an optional fixed cut-off: a failure farther than this from every training failure
        is "unknown". None (default): unknown only when far *and* inconclusive (see above).
    focus : compare only the failing part of each log (True) or whole logs (Cockpit).
    symmetric : symmetric compression distance (True) or Cockpit's one-sided one.
    normalizer : "extended" (flakebot) or "cockpit" line normalisation.
    vote : "evidence" — the neighbours' cluster flake shares (their own label when unclustered), or
        "cluster" — Cockpit's majority cluster, whose flake share decides (noise is never a flake).
    second_opinion : fit the linear text model and combine it with the neighbours (Cockpit: no).
    C : inverse regularisation of the linear text model.
    infra_prior : let the combination weigh signs of the infrastructure in the failing part (full
        disks, unreachable registries, runner system failures; `bot.normalize.INFRA_SIGNS`).
    n_candidates : fast mode: candidate neighbours per failure from TF-IDF cosine similarity.
    n_jobs : threads for the compression distances (-1: all cores).
    """

    def __init__(
        self,
        mode: str = "fast",
        eps: float = 0.3,
        min_samples: int = 3,
        n_neighbors: int = 5,
        threshold: float = 0.5,
        max_df: float = 0.17,
        keep_error_lines: bool = True,
        max_distance: float | None = None,
        focus: bool = True,
        symmetric: bool = True,
        normalizer: str = "extended",
        vote: str = "evidence",
        second_opinion: bool = True,
        C: float = 10.0,
        infra_prior: bool = True,
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
        self.symmetric = symmetric
        self.normalizer = normalizer
        self.vote = vote
        self.second_opinion = second_opinion
        self.C = C
        self.infra_prior = infra_prior
        self.n_candidates = n_candidates
        self.n_jobs = n_jobs

    @classmethod
    def cockpit(cls, **overrides: Any) -> FlakeClassifier:
        """Cockpit's learner as it was: whole logs, its normalisation, one-sided NCD, no cut-off, the
        majority cluster's vote at 0.4 and no second opinion."""
        params: dict[str, Any] = dict(
            mode="exact",
            threshold=0.4,
            max_distance=None,
            focus=False,
            symmetric=False,
            normalizer="cockpit",
            keep_error_lines=False,
            vote="cluster",
            second_opinion=False,
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
        if self.C <= 0:
            raise ValueError("C must be positive")

    def _lines(self, record: Mapping[str, Any], part: Sequence[str] | None = None) -> list[str]:
        """Normalised lines (Cockpit: the whole log; flakebot: the failing part, test name masked)."""
        if not self.focus:
            return normalize_log(record["log"], self.normalizer)
        part = failing_part(record["log"]) if part is None else part
        return normalize_log(mask_test_name("\n".join(part), record.get("test") or ""), self.normalizer)

    def _text(self, lines: list[str]) -> str:
        """What the compression distance compares: the lines that say what failed and where."""
        kept = failure_lines(lines, self.stop_lines_) if self.focus else self.stop_lines_.drop(lines)
        return "\n".join(kept)

    def slim(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The record with its log cut to its failing part (whole logs in Cockpit's mode).

        Keeping slim records bounds the memory of training on thousands of long logs and the size of
        the failures the bot stores for retraining; the verdict on a slim record is the same.
        """
        record = dict(_as_record(record))
        if self.focus:
            record["log"] = "\n".join(failing_part(record["log"]))
        return record

    def prepare(self, X: Iterable[Any]) -> list[str]:
        """The texts the compression distance compares for these logs or records (after fit)."""
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
        self.classes_ = np.array(["flake", "real"], dtype=object)
        self.truth_ = truths
        self.meta_ = [
            {k: r.get(k) for k in ("test", "context", "job", "url", "date", "pull", "revision") if r.get(k)}
            for r in records
        ]

        lines = []
        fingerprints = []
        signs = []
        for r in records:
            part = failing_part(r["log"])
            lines.append(self._lines(r, part))
            fingerprints.append(fingerprint(r, part))
            signs.append(infra_signs(part))
            if progress:
                progress("normalise", 1, n)
        # which failures it learnt from (a trial warns when its data overlaps them)
        self.fingerprints_ = np.unique(np.array(fingerprints, dtype=np.uint64))
        self.stop_lines_ = StopLines(self.max_df, keep_errors=self.keep_error_lines).fit(lines)
        self.texts_ = [self._text(item) for item in lines]
        data = self._encoded = [t.encode("utf-8") for t in self.texts_]
        self.lengths_ = np.array([clen(d) for d in data], dtype=np.int64)

        if self.mode == "exact":
            graph, pairs, d = self._exact_graph(data, progress)
        else:
            graph, pairs, d = self._fast_graph(data, progress)
        self.n_distances_ = len(pairs)
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

        # how close a training failure usually is to another: beyond this a neighbour is "far"
        loo_d, _ = _nearest_from_pairs(pairs, d, n, 1, both_orders=self.symmetric)
        finite = np.array([dist[0] for dist in loo_d if len(dist)])
        self.far_distance_ = float(np.quantile(finite, FAR_QUANTILE)) if len(finite) else None
        self.prior_ = float(self.y_.mean())
        self._fit_second_opinion(lines)
        del lines
        # The combination learns how far to trust each opinion from the opinions each training failure
        # got from the failures *before* it — as in production, where a new kind of failure meets only
        # older ones — not from all the others, among which it nearly always has a twin.
        rank = _time_rank(records)
        pre_d, pre_i = _nearest_from_pairs(pairs, d, n, max(self.n_neighbors, 1), self.symmetric, rank)
        pre_vote = np.array([self._older_vote(dist, idx) for dist, idx in zip(pre_d, pre_i, strict=True)])
        pre_nearest = np.array([dist[0] if len(dist) else np.inf for dist in pre_d])
        pre_text = self._earlier_text_opinions(rank) if self.text_model_ is not None else None
        infra = np.array([bool(x) for x in signs], dtype=np.float64)
        self._fit_combination(pre_vote, pre_text, pre_nearest, infra)
        # set by a trial on held-out failures (bot.trial.retry_threshold), never by the training data
        self.retry_threshold_ = None
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _fit_second_opinion(self, lines: list[list[str]]) -> None:
        """The linear text model on the whole (normalised, masked) failing part."""
        self.text_vectorizer_ = None
        self.text_model_ = None
        self.text_terms_ = None
        self._text_features = None
        y = self.y_
        if not self.second_opinion or y.min() == y.max():
            return
        vectorizer = TfidfVectorizer(sublinear_tf=True, token_pattern=WORD, dtype=np.float32)
        features = vectorizer.fit_transform("\n".join(item) for item in lines)
        model = LogisticRegression(C=self.C, class_weight="balanced", max_iter=5000)
        model.fit(features, y)
        self.text_vectorizer_, self.text_model_ = vectorizer, model
        self.text_terms_ = vectorizer.get_feature_names_out()  # once: it is built anew at each call
        self._text_features = features

    def _older_vote(self, dist: np.ndarray, idx: np.ndarray) -> float:
        """What a training failure's older neighbours said: their own labels, by closeness (the prior
        when it had none), fading with distance as `_vote` does."""
        dist, idx = dist[: self.n_neighbors], idx[: self.n_neighbors]
        if not len(idx):
            return self.prior_
        weights = _distance_weights(dist)
        p = float(np.dot(weights, self.y_[idx]) / weights.sum())
        return self._fade(p, float(dist[0]))

    def _fade(self, p: float, closest: float) -> float:
        far = self.far_distance_
        if self.max_distance is None and far and closest > far:
            # neighbours farther than training failures usually are from theirs say less: their vote
            # fades towards the share of flakes in the training data as the distance grows
            return self.prior_ + (p - self.prior_) * far / closest
        return p

    def _earlier_text_opinions(self, rank: np.ndarray, blocks: int = 5) -> np.ndarray:
        """The text model's opinion of each training failure, fitted on the earlier blocks of the
        training data (in time order); NaN for the first block and where earlier ones lack a kind."""
        y = self.y_
        features = self._text_features
        self._text_features = None
        out = np.full(len(y), np.nan)
        order = np.argsort(rank, kind="stable")
        cuts = [round(len(y) * b / blocks) for b in range(blocks + 1)]
        for b in range(1, blocks):
            before, block = order[: cuts[b]], order[cuts[b] : cuts[b + 1]]
            if len(block) == 0 or y[before].min() == y[before].max():
                continue
            model = LogisticRegression(C=self.C, class_weight="balanced", max_iter=5000)
            model.fit(features[before], y[before])
            out[block] = model.predict_proba(features[block])[:, 1]
        return out

    def _fit_combination(
        self, vote: np.ndarray, text: np.ndarray | None, nearest: np.ndarray, infra: np.ndarray
    ) -> None:
        """The calibrated combination: a logistic regression over the opinions of the earlier data."""
        self.combiner_ = None
        if text is None:
            return
        known = ~np.isnan(text)
        y = self.y_[known]
        if min(y.sum(), len(y) - y.sum()) < MIN_PER_CLASS_TO_STACK:
            return
        features = self._stack(vote[known], text[known], nearest[known], infra[known])
        self.combiner_ = LogisticRegression(C=1.0, max_iter=1000).fit(features, y)

    def _stack(
        self, vote: np.ndarray, text: np.ndarray, nearest: np.ndarray, infra: np.ndarray
    ) -> np.ndarray:
        """The combination's inputs: both opinions (as logits), the distance to the nearest training
        failure, and whether the failing part shows signs of the infrastructure (`infra_signs`)."""
        far = np.where(np.isfinite(nearest), nearest, 1.0)
        columns = [_logit(vote), _logit(text), far]
        return np.column_stack([*columns, infra] if self.infra_prior else columns)

    def _combine(
        self, vote: np.ndarray, text: np.ndarray | None, nearest: np.ndarray, infra: np.ndarray
    ) -> np.ndarray:
        if text is None:
            return np.asarray(vote, dtype=np.float64)
        if self.combiner_ is None:
            return (np.asarray(vote) + np.asarray(text)) / 2
        return self.combiner_.predict_proba(self._stack(vote, text, nearest, infra))[:, 1]

    def _exact_graph(
        self, data: list[bytes], progress: Progress | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
        return matrix, pairs, d

    def _fast_graph(
        self, data: list[bytes], progress: Progress | None
    ) -> tuple[sparse.csr_matrix, np.ndarray, np.ndarray]:
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
        i, j, dn = pairs[near, 0], pairs[near, 1], np.maximum(d[near], _ZERO)
        if self.symmetric:
            i, j, dn = np.concatenate([i, j]), np.concatenate([j, i]), np.concatenate([dn, dn])
        return sparse.csr_matrix((dn, (i, j)), shape=(n, n)), pairs, d

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
        return self._kneighbors_of_texts(texts, k)

    def _kneighbors_of_texts(self, texts: list[str], k: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
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
        state.pop("_text_features", None)
        return state

    def _vote(self, dist: np.ndarray, idx: np.ndarray) -> tuple[float, int]:
        """The neighbours' flake probability and the cluster most of them belong to (-1: none)."""
        dist, idx = dist[: self.n_neighbors], idx[: self.n_neighbors]
        if self.max_distance is not None:
            idx, dist = idx[dist <= self.max_distance], dist[dist <= self.max_distance]
        if not len(idx):
            return 0.0, -1
        weights = _distance_weights(dist)
        labels = self.labels_[idx]
        # the cluster the weighted majority of neighbours belongs to (noise = -1), as Cockpit
        totals: dict[int, float] = {}
        for label, w in zip(labels.tolist(), weights.tolist(), strict=True):
            totals[label] = totals.get(label, 0.0) + w
        cluster = max(sorted(totals), key=lambda c: totals[c])
        shares = self.cluster_share_
        if self.vote == "cluster":
            return (float(shares[cluster]) if cluster >= 0 else 0.0), cluster
        values = np.where(labels >= 0, shares[np.maximum(labels, 0)], self.y_[idx])
        p = float(np.dot(weights, values) / weights.sum())
        return self._fade(p, float(dist[0])), cluster

    def _text_opinions(self, lines: list[list[str]]) -> tuple[np.ndarray | None, list[list[dict[str, Any]]]]:
        """The text model's flake probability of each item and its strongest terms."""
        if self.text_model_ is None:
            return None, [[] for _ in lines]
        features = self.text_vectorizer_.transform("\n".join(item) for item in lines)
        p = self.text_model_.predict_proba(features)[:, 1]
        coef = self.text_model_.coef_[0]
        names = self.text_terms_
        terms = []
        for row in features:
            contrib = row.data * coef[row.indices]
            top = np.argsort(-np.abs(contrib), kind="stable")[:EVIDENCE_TERMS]
            terms.append(
                [{"term": str(names[row.indices[t]]), "weight": round(float(contrib[t]), 3)} for t in top]
            )
        return p, terms

    def explain(self, X: Iterable[Any]) -> list[dict[str, Any]]:
        """One verdict per item, with its evidence (see ``docs/model.md`` for the fields)."""
        check_is_fitted(self, "labels_")
        # the inputs are our own arrays: scikit-learn's per-call checks cost more than the work
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return self._explain(X)

    def _explain(self, X: Iterable[Any]) -> list[dict[str, Any]]:
        records = [_as_record(x) for x in X]
        parts = [failing_part(r["log"]) if self.focus else [] for r in records]
        lines = [self._lines(r, part) for r, part in zip(records, parts, strict=True)]
        texts = [self._text(item) for item in lines]
        signs = [infra_signs(part) for part in parts]
        dists, idxs = self._kneighbors_of_texts(texts, max(self.n_neighbors, EVIDENCE_NEIGHBOURS))
        votes = [self._vote(d, i) for d, i in zip(dists, idxs, strict=True)]
        text_p, terms = self._text_opinions(lines)
        vote_p = np.array([v[0] for v in votes])
        nearest = np.array([float(d[0]) if len(d) else np.inf for d in dists])
        combined = self._combine(
            vote_p, text_p, nearest, np.array([bool(x) for x in signs], dtype=np.float64)
        )
        return [
            self._verdict(
                dists[q],
                idxs[q],
                votes[q],
                None if text_p is None else float(text_p[q]),
                float(combined[q]),
                terms[q],
                signs[q],
            )
            for q in range(len(records))
        ]

    def predict(self, X: Iterable[Any]) -> np.ndarray:
        """'flake', 'real' or 'unknown' per item."""
        return np.array([v["verdict"] for v in self.explain(X)], dtype=object)

    def predict_proba(self, X: Iterable[Any]) -> np.ndarray:
        """Probabilities of ``classes_`` (flake, real) per item, shape (n, 2); an "unknown" verdict
        still has its (inconclusive) probability."""
        p = np.array([v["flake_probability"] for v in self.explain(X)], dtype=np.float64)
        return np.column_stack([p, 1 - p])

    def _verdict(
        self,
        dist: np.ndarray,
        idx: np.ndarray,
        vote: tuple[float, int],
        text_p: float | None,
        p: float,
        terms: list[dict[str, Any]],
        signs: list[str],
    ) -> dict[str, Any]:
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
        vote_p, cluster = vote
        verdict: dict[str, Any] = {
            "verdict": "flake" if p > self.threshold else "real",
            "flake_probability": round(p, 4),
            "neighbour_probability": round(vote_p, 4),
            "text_probability": None if text_p is None else round(text_p, 4),
            "threshold": self.threshold,
            "retry_threshold": self.retry_threshold_,
            "cluster": None,
            "cluster_size": 0,
            "cluster_flake_share": None,
            "distance": None if closest is None else round(closest, 4),
            "far": False,
            "nearest": nearest,
            "terms": terms,
            "infra_signs": signs,
            "reason": "",
        }
        if cluster >= 0:
            verdict.update(
                cluster=cluster,
                cluster_size=int(self.cluster_size_[cluster]),
                cluster_flake_share=round(float(self.cluster_share_[cluster]), 4),
            )
        cut_off = self.max_distance if self.max_distance is not None else self.far_distance_
        far = closest is None or (cut_off is not None and closest > cut_off)
        verdict["far"] = bool(far)
        if abstains(closest, far, self.max_distance is not None, vote_p, text_p, p, self.threshold):
            verdict["verdict"] = "unknown"
            why = "" if self.max_distance is not None else " and the evidence is split"
            verdict["reason"] = (
                f"unlike every past failure{why}: the nearest is "
                + ("missing" if closest is None else f"{closest:.2f} away")
                + (f" (cut-off {cut_off:.2f})" if cut_off is not None else "")
                + f"; flake probability {p:.0%}"
            )
            return verdict
        parts = []
        if verdict["far"]:
            parts.append(
                f"its nearest past failures are far ({closest:.2f}; training failures are usually within "
                f"{self.far_distance_:.2f} of another), so they say little: {vote_p:.0%} flaky"
            )
        elif cluster >= 0:
            parts.append(
                f"like cluster {cluster} of {verdict['cluster_size']} past failures, "
                f"{verdict['cluster_flake_share']:.0%} of which were flaky"
            )
        else:
            parts.append(f"{vote_p:.0%} flaky by its nearest past failures")
        if text_p is not None:
            parts.append(f"its words say {text_p:.0%}")
        if signs:
            parts.append("signs of the infrastructure: " + ", ".join(signs))
        verdict["reason"] = f"flake probability {p:.0%}: " + "; ".join(parts)
        return verdict

    def learnt_from(self, X: Iterable[Any]) -> np.ndarray:
        """For each record: whether this model learnt from it (by `fingerprint`)."""
        prints = np.array([fingerprint(_as_record(x)) for x in X], dtype=np.uint64)
        return np.isin(prints, getattr(self, "fingerprints_", np.array([], dtype=np.uint64)))

    def summary(self) -> dict[str, Any]:
        """Figures of the fitted model, for the CLI and the model registry."""
        return {
            "failures": len(self.y_),
            "flake_evidence": int(self.y_.sum()),
            "clusters": self.n_clusters_,
            "noise": self.n_noise_,
            "distances_computed": self.n_distances_,
            "stop_lines": len(self.stop_lines_.lines),
            "second_opinion": self.text_model_ is not None,
            "combined": "fitted"
            if self.combiner_ is not None
            else ("mean" if self.text_model_ else "neighbours"),
            "far_distance": None if self.far_distance_ is None else round(self.far_distance_, 4),
            "retry_threshold": self.retry_threshold_,
            "seconds": round(self.fit_seconds_, 3),
            "params": self.get_params(),
        }


def _time_rank(records: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Each record's position in time: by ``date`` when every record has one, else as given."""
    dates = [str(r.get("date") or "") for r in records]
    if all(dates):
        return np.argsort(np.argsort(np.array(dates), kind="stable"), kind="stable")
    return np.arange(len(records))


def _nearest_from_pairs(
    pairs: np.ndarray, d: np.ndarray, n: int, k: int, both_orders: bool, rank: np.ndarray | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each training failure's ``k`` nearest others among the computed distances, nearest first
    (with ``rank``: only the ones before it in time)."""
    i, j = pairs[:, 0], pairs[:, 1]
    if both_orders:
        i, j, d = np.concatenate([i, j]), np.concatenate([j, i]), np.concatenate([d, d])
    if rank is not None:
        older = rank[j] < rank[i]
        i, j, d = i[older], j[older], d[older]
    order = np.lexsort((d, i))
    i, j, d = i[order], j[order], d[order]
    starts = np.searchsorted(i, np.arange(n + 1))
    dists, idxs = [], []
    for a in range(n):
        lo, hi = starts[a], min(starts[a + 1], starts[a] + k)
        dists.append(d[lo:hi])
        idxs.append(j[lo:hi])
    return dists, idxs
