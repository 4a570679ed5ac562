"""Training a model the way ``flakebot train`` does: fit, trial on the newest failures, then refit.

1. The newest labelled failures (``holdout_share`` of them, at least ``min_holdout``) are held out;
   a model of the same parameters learns from every failure older than them and judges them
   (`bot.trial.evaluate`): that trial is the version's own trial, and it chooses the **retry
   threshold** — the lowest flake probability at which its verdicts reached ``target_precision``.
2. The model that is stored learns from *all* the failures, the newest included (they are the most
   like tomorrow's), and carries that threshold.

A model is refused — not stored as active — when it could never call anything a flake (no flake
evidence) or when there are too few labelled failures to trial it (the same rules as a retrain's
gate, ``bot.retrain.plan``); ``force`` stores it anyway, without a retry threshold, so the service
comments its verdicts but re-runs nothing on them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sklearn.base import clone

from bot.records import truth
from bot.retrain import RetrainOptions, plan
from bot.trial import TARGET_PRECISION, TrialReport, evaluate


@dataclass
class Trained:
    model: Any  # the fitted FlakeClassifier, learnt from every failure
    trial: TrialReport | None  # its method's trial on the newest labelled failures
    trial_counts: dict[str, Any]
    refused: str | None  # why it should not be activated (None: fine)


def train_with_trial(
    model: Any,
    records: Sequence[Mapping[str, Any]],
    *,
    holdout_share: float = 0.2,
    min_holdout: int = 10,
    target_precision: float = TARGET_PRECISION,
    force: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> Trained:
    """Trial ``model``'s method on the newest labelled failures of ``records`` (oldest first), then
    fit it on all of them. With a refusal and without ``force`` nothing is fitted (``model`` None)."""
    if not any(truth(r) == "flake" for r in records):
        refused = (
            "none of the failures is flake evidence (a `label` of flake, or `merged` true), so the model "
            "could never call anything a flake"
        )
        return _only_if_forced(model, records, refused, force, progress)
    numbered = [{**r, "failure_id": i} for i, r in enumerate(records)]
    options = RetrainOptions(holdout_share=holdout_share, min_holdout=min_holdout, min_train=2)
    split = plan(numbered, None, options)
    if split.refused:
        refused = f"too few labelled failures to trial the model: {split.refused}"
        return _only_if_forced(model, records, refused, force, progress, split.counts())
    candidate = clone(model).fit(split.train, progress=progress)
    report = evaluate(split.holdout, candidate.explain(split.holdout), target_precision)
    final = model.fit(records, progress=progress)
    final.retry_threshold_ = report.figures["retry_threshold"]
    return Trained(final, report, split.counts(), None)


def _only_if_forced(
    model: Any,
    records: Sequence[Mapping[str, Any]],
    refused: str,
    force: bool,
    progress: Callable[[str, int, int], None] | None,
    counts: dict[str, Any] | None = None,
) -> Trained:
    fitted = model.fit(records, progress=progress) if force else None
    return Trained(fitted, None, counts or {}, refused)


def interleave(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Records without dates in a fixed, mixed order (the i-th of each label in turn), so that the
    newest held out for the trial hold both kinds: for examples and tests written label by label."""
    by_label: dict[Any, list[Mapping[str, Any]]] = {}
    for r in records:
        by_label.setdefault(truth(r), []).append(r)
    groups = list(by_label.values())
    return [g[i] for i in range(max(map(len, groups), default=0)) for g in groups if i < len(g)]


class Refused(Exception):
    """The model was not stored: ``str()`` says why."""


def train_and_save(
    store: Any,
    records: Sequence[Mapping[str, Any]],
    meta: Mapping[str, Any] | None = None,
    *,
    model: Any = None,
    activate: bool = True,
    force: bool = False,
    **options: Any,
) -> tuple[str, Trained]:
    """`train_with_trial`, then store the model as a new version of ``store`` (a ``ModelStore``) with
    its own trial. Raises `Refused` (nothing stored) when it is refused and not ``force``."""
    from bot.model import FlakeClassifier

    trained = train_with_trial(
        model if model is not None else FlakeClassifier(), records, force=force, **options
    )
    if trained.model is None:
        raise Refused(f"not stored: {trained.refused} (--force stores it anyway; it will never retry)")
    full = {**(meta or {}), "summary": trained.model.summary()}
    if trained.refused:
        full["refused"] = trained.refused
    version = store.save(trained.model, full, activate=activate)
    if (own := trial_meta(trained)) is not None:
        store.write_trial(version, own)
    return version, trained


def trial_meta(trained: Trained) -> dict[str, Any] | None:
    """What a version keeps of its own trial (``trial.json``)."""
    if trained.trial is None:
        return None
    return {
        **trained.trial.figures,
        "thresholds": trained.trial.thresholds,
        "counts": trained.trial_counts,
        "kind": "the newest labelled failures, judged by the same method trained on the older ones",
    }
