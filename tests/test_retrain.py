"""Retraining with a trial gate: which failures train and which judge, the gate, and the retrain on a
real store with real models (per-repository model directories, atomic activation)."""

import json

import pytest

from bot.context import ModelProvider
from bot.model import FlakeClassifier
from bot.modelstore import ModelError, ModelStore, repo_dir, repo_dirs
from bot.retrain import RetrainBusy, RetrainOptions, gate, plan, repo_lock, retrain
from tests.retrain_data import seed_failures

REPO = "github:octo/shop"


def record(i, label=None, merged=None):
    return {"status": "failure", "test": f"t{i}", "log": "E boom", "failure_id": i, "label": label,
            "merged": merged, "date": f"2024-01-{1 + i // 24:02d}T{i % 24:02d}:00:00Z"}  # fmt: skip


# --- plan ----------------------------------------------------------------------------------------------


def test_the_newest_labelled_failures_judge_and_only_older_ones_train():
    records = [record(i, label=("real" if i % 4 == 0 else "flake") if i % 5 else None) for i in range(1, 61)]
    split = plan(records, None, RetrainOptions(holdout_share=0.2, min_holdout=5, min_train=10))
    assert split.refused is None
    labelled = [r for r in records if r["label"]]
    assert [r["failure_id"] for r in split.holdout] == [r["failure_id"] for r in labelled[-10:]]  # 20% of 48
    cut = split.holdout[0]["failure_id"]
    assert [r["failure_id"] for r in split.train] == list(range(1, cut))  # unlabelled ones too, none newer
    counts = split.counts()
    assert counts["holdout"] == 10 and counts["holdout_flake"] + counts["holdout_real"] == 10
    assert counts["train"] == cut - 1 and counts["labelled"] == 48


def test_the_active_model_is_judged_only_on_failures_it_never_learnt_from():
    records = [record(i, label="real" if i % 3 == 0 else "flake") for i in range(1, 41)]
    options = RetrainOptions(min_holdout=5, min_train=10)
    split = plan(records, 33, options)  # the active model learnt from failures 1..33
    assert split.unseen == 7 and all(r["failure_id"] > 33 for r in split.holdout)
    assert plan(records, 37, options).refused.startswith(
        "only 3 labelled failure(s) recorded since the active"
    )


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([], "no failures of this repository are recorded yet"),
        ([record(i, label="flake") for i in range(1, 8)], "only 7 labelled failure(s) recorded; a fair trial"),
        ([record(i, label="flake" if i % 2 else "real") for i in range(1, 16)], "only 5 failure(s) are older"),
        ([record(i, label="flake") for i in range(1, 41)], "none of the 10 held-out failures is labelled real"),
        ([record(i, merged=True) for i in range(1, 31)] + [record(i, label="real") for i in range(31, 41)],
         "none of the 10 held-out failures is a flake"),
    ],
)  # fmt: skip
def test_a_retrain_that_cannot_be_judged_fairly_is_refused(records, message):
    assert message in plan(records, None, RetrainOptions(min_holdout=10, min_train=10)).refused


def test_options_are_checked():
    with pytest.raises(ValueError, match="holdout_share"):
        RetrainOptions(holdout_share=1.5)
    with pytest.raises(ValueError, match="min_train"):
        RetrainOptions(min_train=1)


# --- the gate ----------------------------------------------------------------------------------------


def figures(tp, fp, fn, tn=5):
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


@pytest.mark.parametrize(
    ("candidate", "current", "promote", "words"),
    [
        (figures(9, 1, 0), figures(8, 2, 0), True, "precision 0.90 beats the bar"),  # better precision
        (figures(4, 0, 6), figures(9, 1, 0), True, "precision 1.00 beats"),  # precision first, recall lower
        (figures(8, 2, 0), figures(9, 1, 0), False, "below the bar"),  # worse precision, same recall
        (
            figures(9, 1, 1),
            figures(9, 1, 1),
            True,
            "precision of 0.90, at the bar (the active model's precision is 0.90), and a recall of 0.90",
        ),  # a tie
        (figures(9, 1, 3), figures(18, 2, 2), False, "lower recall, 0.75 against 0.90"),  # same p, worse r
        (figures(0, 0, 5), figures(5, 1, 0), False, "flags no held-out failure but a lower recall"),
        (figures(0, 0, 5), figures(0, 0, 5), True, "flags no held-out failure and a recall of 0.00"),
        (
            figures(8, 2, 0),
            None,
            True,
            "at the bar (there is no active model, so the bar is a precision of 0.80)",
        ),
        (figures(7, 3, 0), None, False, "below the bar (there is no active model"),
        (figures(9, 1, 0), figures(0, 0, 9), True, "active model flags no held-out failure"),
        (figures(6, 4, 0), figures(0, 0, 9), False, "below the bar (the active model flags no"),
    ],
)
def test_the_gate_is_not_worse_precision_first(candidate, current, promote, words):
    decision = gate(candidate, current, 0.8)
    assert decision.promote is promote
    assert words in decision.reason


# --- per-repository model directories ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["github:../etc", "github:", "bitbucket:o/r", "github:o/../../x", "github:/abs", "github:o/r/"]
)
def test_repository_names_cannot_reach_outside_the_model_directory(tmp_path, name):
    with pytest.raises(ModelError, match="not a repository name"):
        repo_dir(tmp_path, name)


def test_a_repository_model_wins_over_the_shared_one_and_falls_back(tmp_path, store):
    seed_failures(store, REPO)
    shared = ModelStore(tmp_path / "model")
    shared_version = shared.save(FlakeClassifier().fit([r for r in store.training_records(REPO)][:20]), {})
    provider = ModelProvider(tmp_path / "model")
    _, meta = provider.get(REPO)
    assert meta["version"] == shared_version
    assert (
        provider.active(REPO)[0] == "shared" and provider.get("github:../x")[1]["version"] == shared_version
    )

    result = retrain(store, REPO, tmp_path / "model")
    assert result["outcome"] == "promoted" and result["previous"]["version"] == shared_version
    _, meta = provider.get(REPO)
    assert meta["version"] == result["version"] and provider.active(REPO)[0] == "repository"
    assert (
        provider.get("github:octo/other")[1]["version"] == shared_version
    )  # other repos keep the shared one
    assert provider.get()[1]["version"] == shared_version
    assert list(repo_dirs(tmp_path / "model")) == [REPO]
    # the candidate was judged against the shared model on the same held-out failures
    assert result["current"]["version"] == shared_version and result["current"]["judged"] == 10


# --- the retrain -----------------------------------------------------------------------------------------


def test_a_first_retrain_is_promoted_and_stored_with_its_trial(tmp_path, store):
    seed_failures(store, REPO)
    result = retrain(store, REPO, tmp_path / "model")
    assert result["outcome"] == "promoted", result["reason"]
    own = ModelStore(repo_dir(tmp_path / "model", REPO))
    assert own.active_version() == result["version"] == result["active"]["version"]
    meta = own.meta(result["version"])
    assert meta["trial"]["decision"]["promoted"] is True
    assert meta["trial"]["precision"] == result["candidate"]["precision"] >= 0.8
    table = {row["threshold"] for row in meta["trial"]["thresholds"]}
    assert {0.1, 0.5, 0.9} <= table
    # its trial chose the retry threshold, which the stored model carries when loaded
    retry = meta["trial"]["retry_threshold"]
    assert retry is None or retry in table
    assert own.load()[0].retry_threshold_ == retry
    trained = meta["trained_on"]
    assert trained["failures"] == result["counts"]["train"] == 36
    assert own.last_retrain()["outcome"] == "promoted"
    # the candidate learnt nothing newer than its held-out failures
    held = result["counts"]["holdout"]
    ids = [r["failure_id"] for r in store.training_records(REPO) if r["label"] or r["merged"]]
    assert trained["through_failure_id"] < ids[-held]
    json.dumps(result)  # plain data: the service reads it from the retrain process


def test_a_worse_candidate_is_kept_out_and_still_stored(tmp_path, store):
    seed_failures(store, REPO, seed=1)
    first = retrain(store, REPO, tmp_path / "model")
    # then someone (wrongly) labels many real bugs flaky: the candidate learns that; the newest,
    # held-out failures are labelled correctly
    for seeded in seed_failures(store, REPO, flaky=0, real=30, unlabelled=0, seed=2, first_run=5000):
        store.label_by_human(REPO, seeded.change, seeded.test, "flake", "someone")
    seed_failures(store, REPO, flaky=12, real=6, unlabelled=0, seed=3, first_run=9000)
    second = retrain(store, REPO, tmp_path / "model", RetrainOptions(holdout_share=0.1, min_holdout=15))
    assert second["outcome"] == "kept", second["reason"]
    assert second["current"]["version"] == first["version"]
    own = ModelStore(repo_dir(tmp_path / "model", REPO))
    assert own.active_version() == first["version"] == second["active"]["version"]
    assert own.meta(second["version"])["trial"]["decision"]["promoted"] is False
    assert [m["version"] for m in own.versions()] == [second["version"], first["version"]]


def test_refusals_and_dry_runs_train_nothing(tmp_path, store):
    seed_failures(store, REPO, flaky=5, real=2)
    refused = retrain(store, REPO, tmp_path / "model")
    assert refused["outcome"] == "refused" and "a fair trial needs at least 10" in refused["reason"]
    own = ModelStore(repo_dir(tmp_path / "model", REPO))
    assert own.versions() == [] and own.last_retrain()["outcome"] == "refused"
    seed_failures(store, REPO, first_run=3000)
    dry = retrain(store, REPO, tmp_path / "model", dry_run=True)
    assert dry["outcome"] == "dry-run" and dry["counts"]["holdout"] == 10 and dry["candidate"] is None
    assert own.versions() == [] and own.last_retrain()["outcome"] == "refused"


class Interrupted(BaseException):
    pass


def test_an_interrupted_or_failed_retrain_leaves_the_active_model_untouched(tmp_path, store):
    seed_failures(store, REPO)
    first = retrain(store, REPO, tmp_path / "model")
    seed_failures(store, REPO, seed=4, first_run=4000)
    own = ModelStore(repo_dir(tmp_path / "model", REPO))

    def interrupt(stage, advance, total):
        if stage == "distances":
            raise Interrupted  # e.g. KeyboardInterrupt, or the process being stopped

    with pytest.raises(Interrupted):
        retrain(store, REPO, tmp_path / "model", progress=interrupt)
    assert own.active_version() == first["version"]
    assert [m["version"] for m in own.versions()] == [first["version"]]
    assert own.last_retrain()["version"] == first["version"]

    # a broken active model is judged as no model (and replaced only through the gate)
    (own.versions_dir / first["version"] / "model.pkl.gz").write_bytes(b"not a gzip pickle")
    result = retrain(store, REPO, tmp_path / "model")
    assert "could not be loaded" in result["notes"][0]
    assert result["current"] is None and result["outcome"] == "promoted"


def test_a_model_activated_meanwhile_is_not_overwritten(tmp_path, store):
    seed_failures(store, REPO)
    first = retrain(store, REPO, tmp_path / "model")
    seed_failures(store, REPO, seed=5, first_run=6000)
    own = ModelStore(repo_dir(tmp_path / "model", REPO))
    rolled_back = own.save(FlakeClassifier().fit([r for r in store.training_records(REPO)][:10]), {},
                           activate=False)  # fmt: skip

    def rollback_meanwhile(stage, advance, total):
        if stage == "cluster":
            own.activate(rolled_back)  # `flakebot rollback` while the candidate is being trained

    result = retrain(store, REPO, tmp_path / "model", progress=rollback_meanwhile)
    assert result["current"]["version"] == first["version"]
    assert result["outcome"] == "kept" and "the active model changed" in result["reason"]
    assert own.active_version() == rolled_back


def test_two_retrains_of_one_repository_do_not_run_at_once(store):
    with repo_lock(store, REPO, "first"):
        with pytest.raises(RetrainBusy, match="already running"), repo_lock(store, REPO, "second"):
            pass
        with repo_lock(store, "github:octo/other", "third"):  # another repository: independent
            pass
    with repo_lock(store, REPO, "second"):  # released
        pass


def test_a_retrain_without_new_failures_has_nothing_to_judge_on(tmp_path, store):
    seed_failures(store, REPO)
    first = retrain(store, REPO, tmp_path / "model")
    again = retrain(store, REPO, tmp_path / "model")
    assert (
        again["outcome"] == "refused" and "since the active model was trained and trialled" in again["reason"]
    )
    # new failures: the next trial judges only them; the candidate also learns from the first held-out ones
    seed_failures(store, REPO, seed=9, first_run=8000)
    third = retrain(store, REPO, tmp_path / "model")
    meta = ModelStore(repo_dir(tmp_path / "model", REPO)).meta(first["version"])
    judged_through = meta["trained_on"]["judged_through_failure_id"]
    assert third["counts"]["seen_through"] == judged_through
    assert third["counts"]["train"] > first["counts"]["train"] + first["counts"]["holdout"]
