import json

import pytest

from bench.ci_corpus import generate
from bot.model import FlakeClassifier
from bot.modelstore import MODEL_FORMAT, ModelError, ModelStore


@pytest.fixture(scope="module")
def model():
    return FlakeClassifier().fit(list(generate(120, seed=3)))


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("disk full (simulated)")


def test_save_load_round_trip_and_versions(tmp_path, model):
    store = ModelStore(tmp_path)
    with pytest.raises(ModelError, match="flakebot train"):
        store.load()
    v1 = store.save(model, {"trained_on": {"failures": 120}})
    loaded, meta = store.load()
    assert meta["version"] == v1 and meta["trained_on"]["failures"] == 120
    assert meta["format"] == MODEL_FORMAT and meta["scikit_learn"]
    queries = list(generate(30, seed=4))
    assert list(loaded.predict(queries)) == list(model.predict(queries))

    v2 = store.save(model, {"note": "second"})
    assert store.active_version() == v2
    assert [m["version"] for m in store.versions()] == [v2, v1]
    assert [m["active"] for m in store.versions()] == [True, False]
    store.activate(v1)
    assert store.load()[1]["version"] == v1
    with pytest.raises(ModelError, match="no model version"):
        store.activate("nope")


def test_a_failed_save_leaves_the_active_model_untouched(tmp_path, model):
    store = ModelStore(tmp_path)
    good = store.save(model, {})
    with pytest.raises(RuntimeError, match="disk full"):
        store.save(Unpicklable(), {})
    assert store.active_version() == good
    assert [m["version"] for m in store.versions()] == [good]
    assert not [p for p in (tmp_path / "versions").iterdir() if p.name.startswith(".")]


def test_saving_without_activating_and_trial_figures(tmp_path, model):
    store = ModelStore(tmp_path)
    first = store.save(model, {})
    second = store.save(model, {}, activate=False)
    assert store.active_version() == first
    store.write_trial(second, {"precision": 0.9})
    assert store.meta(second)["trial"] == {"precision": 0.9}


def test_the_retry_threshold_comes_from_the_latest_trial_on_unseen_failures(tmp_path, model):
    store = ModelStore(tmp_path)
    version = store.save(model, {})
    assert store.load()[0].retry_threshold_ is None  # never trialled: no retries on its verdicts
    store.write_trial(version, {"precision": 0.97, "retry_threshold": 0.8})
    assert store.load()[0].retry_threshold_ == 0.8  # its own trial
    store.add_trial(version, {"precision": 1.0, "retry_threshold": 0.3, "overlap": 12})
    assert store.load()[0].retry_threshold_ == 0.8  # a trial on what it learnt from does not count
    store.add_trial(version, {"precision": 0.98, "retry_threshold": 0.9, "overlap": 0})
    assert store.load()[0].retry_threshold_ == 0.9  # the latest fair trial
    store.add_trial(version, {"precision": 0.5, "retry_threshold": None, "overlap": 0})
    assert store.load()[0].retry_threshold_ is None  # the latest says: no threshold reaches the target
    meta = store.meta(version)
    assert meta["trial"]["retry_threshold"] == 0.8 and len(meta["trials"]) == 3  # its own trial is kept


def test_refuses_a_model_of_another_format(tmp_path, model):
    store = ModelStore(tmp_path)
    version = store.save(model, {})
    meta_path = tmp_path / "versions" / version / "meta.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "format": 99}))
    with pytest.raises(ModelError, match="format 99"):
        store.load()
