import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.cluster import DBSCAN
from sklearn.exceptions import NotFittedError
from sklearn.neighbors import KNeighborsClassifier

from bench.ci_corpus import FLAKY, _wrap, generate
from bot.model import FlakeClassifier, abstains
from bot.ncd import ncd
from bot.normalize import StopLines, normalize_log

SAMPLE = Path(__file__).parents[1] / "bot" / "samples" / "cockpit-failures.jsonl.gz"


@pytest.fixture(scope="module")
def corpus():
    records = list(generate(500, seed=11))
    return records[:300], records[300:]


@pytest.fixture(scope="module")
def fitted(corpus):
    return FlakeClassifier().fit(corpus[0])


@pytest.fixture(scope="module")
def cockpit_records():
    with gzip.open(SAMPLE, "rt") as fh:
        return [json.loads(line) for line in fh]


def test_fast_and_exact_modes_reach_the_same_verdicts(corpus, fitted):
    train, test = corpus
    exact = FlakeClassifier(mode="exact").fit(train)
    assert fitted.n_distances_ < exact.n_distances_ / 2  # fast computed far fewer compressions
    agreement = np.mean(fitted.predict(test) == exact.predict(test))
    assert agreement >= 0.98


def test_recurring_flaky_cause_on_a_new_test_is_a_flake_with_evidence(fitted):
    rng = random.Random(5)
    log = _wrap(rng, "pytest", "tests/test_brand_new.py::test_never_seen", FLAKY["timeout"](rng, "pytest"), 1)
    (verdict,) = fitted.explain([{"test": "tests/test_brand_new.py::test_never_seen", "log": log}])
    assert verdict["verdict"] == "flake" and verdict["flake_probability"] > fitted.threshold
    # both opinions agree, and each is shown
    assert (
        verdict["neighbour_probability"] > fitted.threshold and verdict["text_probability"] > fitted.threshold
    )
    assert verdict["cluster"] is not None and verdict["cluster_size"] >= 3
    assert verdict["cluster_flake_share"] > fitted.threshold
    assert not verdict["far"] and verdict["distance"] <= fitted.far_distance_
    assert len(verdict["nearest"]) == 5
    assert all(n["test"] and n["distance"] >= verdict["distance"] for n in verdict["nearest"])
    # the text model's strongest terms, signed: the ones pushing towards "flake" are positive
    terms = verdict["terms"]
    assert 0 < len(terms) <= 6 and all(set(t) == {"term", "weight"} for t in terms)
    assert sum(t["weight"] for t in terms) > 0
    assert "cluster" in verdict["reason"] and "words" in verdict["reason"]


@pytest.mark.parametrize(
    ("closest", "far", "fixed", "vote", "text", "p", "unknown"),
    [
        (None, True, False, 0.0, None, 0.0, True),  # no neighbour at all
        (0.2, False, False, 0.1, 0.9, 0.5, False),  # near: the neighbours are evidence enough
        (0.9, True, False, 0.1, 0.9, 0.55, True),  # far, split, near the threshold
        (0.9, True, False, 0.1, 0.9, 0.8, False),  # far and split, but the combination is sure
        (0.9, True, False, 0.8, 0.9, 0.6, False),  # far, both say flake
        (0.9, True, False, 0.2, None, 0.45, False),  # far, no second opinion to disagree
        (0.9, True, True, 0.8, 0.9, 0.9, True),  # a fixed cut-off abstains on distance alone
    ],
)
def test_unknown_only_when_far_and_inconclusive(closest, far, fixed, vote, text, p, unknown):
    assert abstains(closest, far, fixed, vote, text, p, 0.5) is unknown


def test_a_fixed_cut_off_still_makes_the_unseen_unknown(corpus):
    odd = (
        "\n".join(f"quux{i} frobnicated the zorblax" for i in range(30))
        + "\nZorgError: the flux capacitor melted"
    )
    cut = FlakeClassifier(max_distance=0.3).fit(corpus[0])
    verdicts = cut.explain(["blah blah", odd])
    assert [v["verdict"] for v in verdicts] == ["unknown", "unknown"]
    assert all("unlike every past failure" in v["reason"] and "cut-off 0.30" in v["reason"] for v in verdicts)
    # Cockpit had no cut-off: the same logs got a cluster's verdict
    cockpit = FlakeClassifier.cockpit(mode="fast").fit(corpus[0])
    assert "unknown" not in set(cockpit.predict(["blah blah", odd]))


def test_the_second_opinion_judges_what_the_neighbours_have_never_seen():
    """Flaky network failures and real assertion failures; a new log unlike any training text in form
    that speaks of a connection reset is far from its neighbours, and the text model decides."""
    rng = random.Random(3)
    flaky = ["read ECONNRESET: connection reset by peer", "dial tcp: i/o timeout contacting registry",
             "connection reset by peer while fetching", "TLS handshake timeout to proxy"]  # fmt: skip
    real = ["AssertionError: expected 3 items, got 4", "assert total == 12, got 13",
            "ValueError: invalid literal for int()", "KeyError: 'price' in invoice"]  # fmt: skip
    records = []
    for i in range(60):
        kind = i % 2
        cause = rng.choice(flaky if kind else real)
        noise = "\n".join(f"step {rng.getrandbits(40):x} ok" for _ in range(rng.randint(2, 6)))
        records.append(
            {"test": f"t{i}", "log": f"{noise}\nError: {cause}", "label": "flake" if kind else "real"}
        )
    model = FlakeClassifier(mode="exact").fit(records)
    assert model.text_model_ is not None and model.combiner_ is not None
    query = "=== downloading artefacts ===\nwarning: retrying\nerror: connection reset by peer (ECONNRESET)"
    (verdict,) = model.explain([query])
    assert verdict["text_probability"] > 0.5
    assert verdict["verdict"] == "flake"
    assert any(
        t["term"] in ("econnreset", "reset", "connection", "peer") and t["weight"] > 0
        for t in verdict["terms"]
    )


def test_one_kind_of_training_data_means_neighbours_only(corpus):
    flakes = [r for r in corpus[0] if r["label"] == "flake"][:20]
    model = FlakeClassifier().fit(flakes)
    assert model.text_model_ is None and model.combiner_ is None
    (verdict,) = model.explain([flakes[0]])
    assert verdict["text_probability"] is None and verdict["terms"] == []
    assert verdict["flake_probability"] == verdict["neighbour_probability"]


def test_training_never_sets_a_retry_threshold(fitted):
    # only a trial on failures the model did not learn from may (bot.trial, bot.training)
    assert fitted.retry_threshold_ is None


def test_human_label_wins_over_merged(corpus):
    train = [dict(r, label="real", merged=True) if r["label"] == "flake" else r for r in corpus[0]]
    model = FlakeClassifier().fit(train)
    assert model.y_.sum() == 0 and model.cluster_share_.max() == 0
    assert "flake" not in set(model.predict(corpus[1]))


def test_explicit_targets_override_record_labels(corpus):
    flipped = [0 if r["label"] == "flake" else 1 for r in corpus[0]]
    model = FlakeClassifier().fit(corpus[0], flipped)
    assert model.y_.tolist() == flipped
    with pytest.raises(ValueError, match="unknown target"):
        FlakeClassifier().fit(corpus[0][:3], ["maybe", 1, 0])


def test_a_long_preamble_does_not_hide_the_same_failure():
    rng = random.Random(1)
    failure = 'Traceback (most recent call last):\n  File "api.py", line 80, in call\nTimeoutError: timed out waiting for db'

    def log(i):
        preamble = "\n".join(
            f"step {i}-{k}: {rng.getrandbits(256):x} {rng.choice(['fetch', 'build', 'link'])}"
            for k in range(3000)
        )
        return preamble + "\n" + failure

    records = [{"test": f"t{i}", "log": log(i), "label": "flake"} for i in range(4)]
    records += [{"test": "other", "log": "AssertionError: 1 != 2", "label": "real"}] * 2
    default = FlakeClassifier(mode="exact").fit(records)
    whole = FlakeClassifier.cockpit().fit(records)
    query = {"test": "t9", "log": log(9)}
    assert default.kneighbors([query])[0][0][0] < 0.05  # the same failure, found
    assert whole.kneighbors([query])[0][0][0] > 0.5  # lost in 40 KB of unrelated output
    assert default.predict([query])[0] == "flake"


def test_cockpit_mode_reproduces_cockpits_pipeline(cockpit_records):
    """An independent re-computation with scikit-learn's own KNeighborsClassifier on the full matrix."""
    train, test = cockpit_records[:80], cockpit_records[80:110]
    model = FlakeClassifier.cockpit().fit(train)

    lines = [normalize_log(r["log"], "cockpit") for r in train]
    stop = StopLines(0.17, keep_errors=False).fit(lines)
    texts = ["\n".join(stop.drop(x)).encode() for x in lines]
    matrix = np.array([[ncd(a, b, symmetric=False) for b in texts] for a in texts])
    labels = DBSCAN(eps=0.3, min_samples=min(3, len(train) / 10), metric="precomputed").fit(matrix).labels_
    assert (labels == model.labels_).all()

    queries = ["\n".join(stop.drop(normalize_log(r["log"], "cockpit"))).encode() for r in test]
    cross = np.array([[ncd(q, t, symmetric=False) for t in texts] for q in queries])
    knn = KNeighborsClassifier(metric="precomputed", weights="distance").fit(matrix, labels)
    expected = knn.predict(cross)
    got = [v["cluster"] if v["cluster"] is not None else -1 for v in model.explain(test)]
    assert list(expected) == got
    share = {
        c: np.mean([r["merged"] is True for r, lab in zip(train, labels, strict=True) if lab == c])
        for c in set(labels)
    }
    flakes = [c != -1 and share[c] > 0.4 for c in expected]
    assert [v == "flake" for v in model.predict(test)] == flakes


def test_is_a_scikit_learn_classifier(fitted, corpus):
    params = fitted.get_params()
    assert params["mode"] == "fast" and params["eps"] == 0.3 and params["threshold"] == 0.5
    assert params["max_distance"] is None and params["second_opinion"] is True
    assert is_classifier(fitted) and list(fitted.classes_) == ["flake", "real"]
    proba = fitted.predict_proba(corpus[1][:10])
    assert proba.shape == (10, 2) and np.allclose(proba.sum(axis=1), 1.0)
    decided = fitted.predict(corpus[1][:10])
    for row, verdict in zip(proba, decided, strict=True):
        if verdict != "unknown":
            assert (verdict == "flake") == (row[0] > fitted.threshold)
    fresh = clone(fitted)
    assert not hasattr(fresh, "labels_")
    with pytest.raises(NotFittedError):
        fresh.predict(["x"])
    assert fresh.set_params(threshold=0.6).threshold == 0.6
    with pytest.raises(ValueError, match="mode"):
        FlakeClassifier(mode="quick").fit(["a", "b"])


def test_slim_records_get_the_same_verdicts(fitted, corpus):
    test = corpus[1][:40]
    assert [v["verdict"] for v in fitted.explain(test)] == [
        v["verdict"] for v in fitted.explain([fitted.slim(r) for r in test])
    ]
    assert all(len(fitted.slim(r)["log"]) <= len(r["log"]) for r in test)
