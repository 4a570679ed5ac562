"""Stored failures with labels, for retraining tests: recurring flaky causes and one-off real bugs,
as the pipeline records them (split from GitHub Actions-style pytest logs) and labelled the ways the
bot learns labels (a pass on retry, a merged head commit, a maintainer's ``/flake real``)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from bot.split import split_log
from bot.store import Failure, Store
from tests.ci_logs import actions_pytest_log, cause, real_bug


@dataclass(frozen=True)
class Seeded:
    test: str
    kind: str  # flake | real | unlabelled
    run_id: int
    change: int


def failure_log(test: str, message: str, seed: int) -> str:
    (record,) = split_log([actions_pytest_log([(test, message)], seed=seed)], job="tests")
    return record["log"]


def seed_failures(
    store: Store,
    repo: str,
    *,
    flaky: int = 30,
    real: int = 12,
    unlabelled: int = 4,
    seed: int = 1,
    first_run: int = 1000,
) -> list[Seeded]:
    """Record ``flaky + real + unlabelled`` failures in random order, one run and change each, labelled."""
    rng = random.Random(seed)
    kinds = ["flake"] * flaky + ["real"] * real + ["unlabelled"] * unlabelled
    rng.shuffle(kinds)
    seeded = []
    for i, kind in enumerate(kinds):
        run_id, change = first_run + i, first_run + i
        if kind == "real":
            test = f"tests/test_bug{run_id}.py::test_case_{run_id}"
            message = real_bug(rng)
        else:
            test = f"tests/test_net{run_id}.py::test_fetch_{run_id}"
            message = cause(("reset", "timeout", "dns")[i % 3], rng)
        log = failure_log(test, message, run_id)
        kept = Failure(test=test, log=log, run_id=run_id, attempt=1, job="tests", revision=f"{run_id:040x}",
                       change_number=change, verdict="unknown")  # fmt: skip
        store.record_failures(repo, [kept])
        if kind == "flake" and i % 2:
            store.label_passed_on_retry(repo, run_id, 2, [test])
        elif kind == "flake":
            store.label_merged(repo, f"{run_id:040x}")
        elif kind == "real":
            store.label_by_human(repo, change, test, "real", "maintainer")
        seeded.append(Seeded(test, kind, run_id, change))
    return seeded


def train_shared_model(path) -> str:
    """A shared model (``flakebot train``) learnt from earlier failures of the shop: recurring flaky
    causes and one-off bugs, as in tests/test_e2e_github.py. Returns its version."""
    from bot.modelstore import ModelStore
    from bot.training import interleave, train_and_save

    rng = random.Random(3)
    records = []
    for i in range(24):
        test = f"tests/test_old{i}.py::test_thing_{i}"
        records.append({"status": "failure", "test": test, "label": "flake",
                        "log": failure_log(test, cause(("reset", "timeout", "dns")[i % 3], rng), i)})  # fmt: skip
    for i in range(16):
        test = f"tests/test_bug{i}.py::test_case_{i}"
        records.append(
            {
                "status": "failure",
                "test": test,
                "label": "real",
                "log": failure_log(test, real_bug(rng), 50 + i),
            }
        )
    version, _ = train_and_save(
        ModelStore(path), interleave(records), {"trained_on": {"failures": len(records)}}
    )
    return version
