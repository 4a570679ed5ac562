"""Retraining a repository's flake model from its recorded failures, behind a trial gate.

The steps (docs/chatops.md, "Retraining" has the reasons):

1. **Data**: the repository's stored failures (``Store.training_records``), oldest first, with their
   labels: a maintainer's ``/flake flake|real``, a pass on retry of the same commit (flake), a merged
   head commit (flake evidence).
2. **Held-out data** (:func:`plan`): the newest labelled failures recorded after everything the active
   model learnt from or was trialled on, ``holdout_share`` of the labelled ones (at least
   ``min_holdout``). The candidate learns from every failure *older* than the oldest of them, so the
   trial is a test of the future on the past, and a retrain without new failures has nothing to do.
3. **Trial**: the candidate and the active model classify the same held-out failures
   (:func:`bot.trial.evaluate`).
4. **Gate** (:func:`gate`): the candidate replaces the active model only when it is not worse, precision
   first. The version is stored with its trial report whatever the outcome; only a promoted one is
   activated, and it is exactly the fitted model the trial judged.

Refusals (too little data, a held-out set without both kinds of failure) are outcomes, not errors. A
retrain that fails or is interrupted writes nothing the bot reads: versions are stored atomically and
``active`` is switched last (``bot/modelstore.py``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from bot.context import active_model
from bot.modelstore import ModelError, ModelStore
from bot.records import truth
from bot.storedmodels import DatabaseModels, ModelRoot, models_at

log = logging.getLogger(__name__)

LOCK_TTL = 3 * 3600.0  # seconds a retrain may hold its repository's lock (then it expires)


class RetrainBusy(Exception):
    """Another retrain of this repository holds the lock."""


@dataclass(frozen=True)
class RetrainOptions:
    holdout_share: float = 0.2  # of the labelled failures, the newest, held out for the trial
    min_holdout: int = 10  # labelled failures a trial needs
    min_train: int = 20  # failures the candidate needs to learn from
    min_precision: float = 0.8  # the bar when there is no active model, or it flags nothing
    limit: int = 15_000  # the newest failures before the cut are learnt from (as `flakebot train`)
    target_precision: float = 0.97  # the precision the retry threshold must reach on the held-out data

    def __post_init__(self) -> None:
        if not 0 < self.holdout_share < 1:
            raise ValueError(f"holdout_share must be between 0 and 1, got {self.holdout_share}")
        if self.min_holdout < 1 or self.min_train < 2 or self.limit < 2:
            raise ValueError("min_holdout must be at least 1, min_train and limit at least 2")
        if not 0 <= self.min_precision <= 1:
            raise ValueError(f"min_precision must be between 0 and 1, got {self.min_precision}")
        if not 0 < self.target_precision <= 1:
            raise ValueError(f"target_precision must be in (0, 1], got {self.target_precision}")


# --- which failures train, which judge (pure) ------------------------------------------------------


@dataclass
class Plan:
    failures: int
    labelled: int
    unseen: int  # labelled failures newer than what the active model learnt from or was trialled on
    seen_through: int | None  # the newest failure id the active model saw (None: none of these)
    train: list[dict[str, Any]] = field(default_factory=list)
    holdout: list[dict[str, Any]] = field(default_factory=list)
    refused: str | None = None

    def counts(self) -> dict[str, Any]:
        held = Counter(truth(r) for r in self.holdout)

        def dates(records: Sequence[Mapping[str, Any]]) -> list[Any]:
            return [records[0].get("date"), records[-1].get("date")] if records else []

        return {
            "failures": self.failures,
            "labelled": self.labelled,
            "unseen_labelled": self.unseen,
            "seen_through": self.seen_through,
            "train": len(self.train),
            "train_flake_evidence": sum(truth(r) == "flake" for r in self.train),
            "train_dates": dates(self.train),
            "holdout": len(self.holdout),
            "holdout_flake": held["flake"],
            "holdout_real": held["real"],
            "holdout_dates": dates(self.holdout),
        }


def plan(records: Sequence[Mapping[str, Any]], seen_through: int | None, options: RetrainOptions) -> Plan:
    """Split a repository's failures (oldest first, each with ``failure_id``) into training and held-out
    data, or say why a retrain cannot be judged fairly. ``seen_through``: the newest failure the active
    model learnt from or was trialled on (None when it learnt from none of these)."""
    labelled = [r for r in records if truth(r) is not None]
    unseen = [r for r in labelled if seen_through is None or r["failure_id"] > seen_through]
    result = Plan(
        failures=len(records), labelled=len(labelled), unseen=len(unseen), seen_through=seen_through
    )
    if not records:
        result.refused = "no failures of this repository are recorded yet"
        return result
    if len(unseen) < options.min_holdout:
        since = " since the active model was trained and trialled" if seen_through is not None else ""
        result.refused = (
            f"only {len(unseen)} labelled failure(s) recorded{since}; a fair trial needs at least "
            f"{options.min_holdout} that the models have not learnt from"
        )
        return result
    size = max(options.min_holdout, math.ceil(options.holdout_share * len(labelled)))
    result.holdout = unseen[-size:]
    cut = result.holdout[0]["failure_id"]
    result.train = [r for r in records if r["failure_id"] < cut][-options.limit :]
    kinds = Counter(truth(r) for r in result.holdout)
    if len(result.train) < options.min_train:
        result.refused = (
            f"only {len(result.train)} failure(s) are older than the {len(result.holdout)} held out for the "
            f"trial; the candidate needs at least {options.min_train} to learn from"
        )
    elif not kinds["real"]:
        result.refused = (
            f"none of the {len(result.holdout)} held-out failures is labelled real, so precision cannot be "
            "measured: label real failures with `/flake real <test>`"
        )
    elif not kinds["flake"]:
        result.refused = (
            f"none of the {len(result.holdout)} held-out failures is a flake, so recall cannot be measured"
        )
    return result


# --- the gate (pure) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def _precision(figures: Mapping[str, Any]) -> Fraction | None:
    flagged = figures["tp"] + figures["fp"]
    return Fraction(figures["tp"], flagged) if flagged else None


def _recall(figures: Mapping[str, Any]) -> Fraction:
    flakes = figures["tp"] + figures["fn"]
    return Fraction(figures["tp"], flakes) if flakes else Fraction(0)


def _f(value: Fraction) -> str:
    return f"{float(value):.2f}"


def gate(
    candidate: Mapping[str, Any], current: Mapping[str, Any] | None, min_precision: float = 0.8
) -> Decision:
    """Whether the candidate replaces the current model, both judged on the same held-out failures
    (``bot.trial`` figures: tp, fp, fn, tn).

    Precision first: a false "flake" hides a real bug behind a retry. The bar is the current model's
    precision, or ``min_precision`` when there is no current model or it flags nothing (a precision it
    does not have). Below the bar: kept. Above it: promoted. At the bar (a tie) the recall decides, and
    an equal recall promotes (not worse, and learnt from newer failures). A candidate that flags
    nothing has no precision to compare: its recall (0) decides.
    """
    pc, rc = _precision(candidate), _recall(candidate)
    pk = _precision(current) if current is not None else None
    rk = _recall(current) if current is not None else Fraction(0)
    if pk is None:
        bar = Fraction(min_precision).limit_denominator(10_000)
        whose = (
            "there is no active model" if current is None else "the active model flags no held-out failure"
        )
        bar_text = f"{whose}, so the bar is a precision of {_f(bar)}"
    else:
        bar = pk
        bar_text = f"the active model's precision is {_f(pk)}"
    if pc is not None and pc < bar:
        return Decision(False, f"the candidate's precision {_f(pc)} is below the bar ({bar_text})")
    if pc is not None and pc > bar:
        return Decision(True, f"the candidate's precision {_f(pc)} beats the bar ({bar_text})")
    what = (
        "flags no held-out failure"
        if pc is None
        else f"has a precision of {_f(pc)}, at the bar ({bar_text}),"
    )
    if rc >= rk:
        return Decision(True, f"the candidate {what} and a recall of {_f(rc)}, not below {_f(rk)}")
    return Decision(False, f"the candidate {what} but a lower recall, {_f(rc)} against {_f(rk)}")


# --- the retrain ------------------------------------------------------------------------------------


@contextlib.contextmanager
def repo_lock(store: Any, repo: str, owner: str, ttl: float = LOCK_TTL) -> Iterator[None]:
    """Hold the repository's retrain lock (``Store.try_lock``) or raise :class:`RetrainBusy`."""
    name = lock_name(repo)
    if not store.try_lock(name, owner, time.time(), ttl):
        raise RetrainBusy(f"a retrain of {repo} is already running")
    try:
        yield
    finally:
        store.unlock(name, owner)


def lock_name(repo: str) -> str:
    return f"retrain:{repo}"


def _describe(scope: str, store: ModelStore | DatabaseModels, version: str) -> dict[str, Any]:
    try:
        meta = store.meta(version)
    except (ModelError, OSError, ValueError):
        meta = {}
    return {"scope": scope, "version": version, "created_at": meta.get("created_at")}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def retrain(
    store: Any,
    repo: str,
    model_root: ModelRoot,
    options: RetrainOptions | None = None,
    *,
    dry_run: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Retrain ``repo``'s model (blocking, CPU-bound: run it in another process or thread).

    Returns the outcome as plain data: ``outcome`` is ``promoted``, ``kept``, ``refused`` or
    ``dry-run``, with the reason, the counts, both models' trial figures and threshold tables, the new
    version and the model active afterwards. Raises on failure (nothing activated).
    """
    from sklearn.base import clone

    from bot.model import FlakeClassifier
    from bot.trial import evaluate

    options = options or RetrainOptions()
    start = time.perf_counter()
    own = models_at(model_root, repo)  # validates the name before anything else
    active = active_model(model_root, repo)
    model: Any = None
    result: dict[str, Any] = {"repo": repo, "at": _now(), "version": None, "candidate": None, "current": None}
    notes: list[str] = []
    seen_through = None
    if active is not None:
        scope, active_store, version = active
        result["previous"] = _describe(*active)
        try:
            model, meta = active_store.load(version)
        except (ModelError, OSError, EOFError, ValueError) as exc:
            notes.append(f"the active model {version} could not be loaded ({exc}): judged as no model")
        else:
            if scope == "repository":
                trained = meta.get("trained_on") or {}
                seen_through = trained.get("judged_through_failure_id") or trained.get("through_failure_id")
    else:
        result["previous"] = None

    split = plan(list(store.training_records(repo)), seen_through, options)
    result.update(counts=split.counts(), notes=notes)
    result["active"] = result["previous"]
    if split.refused or dry_run:
        result.update(outcome="refused" if split.refused else "dry-run", reason=split.refused or "dry run")
        result["seconds"] = round(time.perf_counter() - start, 3)
        if not dry_run:
            own.note_retrain(_brief(result))
        return result

    candidate = clone(model) if isinstance(model, FlakeClassifier) else FlakeClassifier()
    candidate.fit([candidate.slim(r) for r in split.train], progress=progress)
    held = [candidate.slim(r) for r in split.holdout]
    trial = evaluate(held, candidate.explain(held), options.target_precision)
    candidate.retry_threshold_ = trial.figures["retry_threshold"]
    result["candidate"] = {**trial.figures, "thresholds": trial.thresholds}
    if model is not None:
        held_current = [model.slim(r) for r in split.holdout]
        judged = evaluate(held_current, model.explain(held_current), options.target_precision)
        result["current"] = {
            **judged.figures,
            "thresholds": judged.thresholds,
            "version": active and active[2],
        }
    decision = gate(trial.figures, result["current"], options.min_precision)

    last = split.train[-1]
    meta = {
        "trained_on": {
            "source": "flakebot retrain",
            "repo": repo,
            "failures": len(split.train),
            "flake_evidence": result["counts"]["train_flake_evidence"],
            "through_failure_id": last["failure_id"],
            "judged_through_failure_id": split.holdout[-1]["failure_id"],
            "dates": result["counts"]["train_dates"],
        },
        "summary": candidate.summary(),
    }
    version = own.save(candidate, meta, activate=False)
    result["version"] = version
    promote, reason = decision.promote, decision.reason
    now_active = active_model(model_root, repo)
    if promote and _identity(now_active) != _identity(active):
        promote, reason = False, "the active model changed while the candidate was trained and trialled"
    own.write_trial(version, {**result["candidate"], "current": result["current"], "counts": result["counts"],
                              "decision": {"promoted": promote, "reason": reason}})  # fmt: skip
    if promote:
        own.activate(version)
        result["active"] = _describe("repository", own, version)
    result.update(outcome="promoted" if promote else "kept", reason=reason)
    result["seconds"] = round(time.perf_counter() - start, 3)
    own.note_retrain(_brief(result))
    log.info("retrain of %s: %s (%s)", repo, result["outcome"], reason)
    return result


def _identity(active: tuple[str, ModelStore | DatabaseModels, str] | None) -> tuple[str, str] | None:
    return None if active is None else (active[0], active[2])


def _brief(result: Mapping[str, Any]) -> dict[str, Any]:
    """What ``last_retrain.json`` keeps of an outcome."""
    return {k: result.get(k) for k in ("at", "outcome", "reason", "version", "active", "counts")}
