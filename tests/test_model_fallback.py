"""A corrupt or missing model file (hardening 12): the previous good version judges instead, and the
error is reported in ``/healthz``, the log and the comment, never taken for "no model trained yet"."""

from __future__ import annotations

import gzip
import logging
import shutil

import pytest

from bench.ci_corpus import generate
from bot.context import ModelProvider
from bot.model import FlakeClassifier
from bot.modelstore import ModelStore, retry_threshold
from tests.test_e2e_github import REPO, model_dir, seed_run, send, settings, settle, the_comment  # noqa: F401


@pytest.fixture(scope="module")
def fitted():
    return FlakeClassifier().fit(list(generate(60, seed=3)))


def break_model(store: ModelStore, version: str, how: str) -> None:
    path = store.versions_dir / version / "model.pkl.gz"
    if how == "missing":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    else:  # not gzip at all
        path.write_bytes(b"\x00" * 64)


@pytest.mark.parametrize("how", ["missing", "truncated", "garbage"])
def test_the_previous_good_version_judges_when_the_active_one_cannot_be_loaded(tmp_path, fitted, how, caplog):
    store = ModelStore(tmp_path)
    good = store.save(fitted, {"note": "good"})
    store.write_trial(good, {"retry_threshold": 0.7})
    refused = store.save(fitted, {"note": "a retrain's candidate, never promoted"}, activate=False)
    broken = store.save(fitted, {"note": "broken"})
    store.write_trial(broken, {"retry_threshold": 0.2})
    break_model(store, broken, how)
    assert refused > good  # newer than the good one, but it was never active: no fallback

    provider = ModelProvider(tmp_path)
    caplog.set_level(logging.WARNING)
    loaded = provider.load()
    assert loaded.meta["version"] == good and loaded.model is not None
    assert loaded.model.retry_threshold_ == 0.7 == retry_threshold(loaded.meta)  # good's own trial
    assert broken in loaded.problem and good in loaded.problem and "could not be loaded" in loaded.problem
    assert any(broken in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    health = provider.health()
    assert health == {"active": broken, "in_use": good, "errors": [loaded.problem]}
    assert provider.get()[1]["version"] == good  # the same answer through the older call


def test_with_no_earlier_version_the_failures_are_unknown_for_that_reason(tmp_path, fitted):
    store = ModelStore(tmp_path)
    only = store.save(fitted, {})
    break_model(store, only, "garbage")
    loaded = ModelProvider(tmp_path).load()
    assert loaded.model is None and "no earlier version" in loaded.problem and only in loaded.problem


def test_a_repaired_model_is_used_again(tmp_path, fitted, monkeypatch):
    store = ModelStore(tmp_path)
    good = store.save(fitted, {})
    broken = store.save(fitted, {})
    saved = (store.versions_dir / broken / "model.pkl.gz").read_bytes()
    break_model(store, broken, "truncated")
    provider = ModelProvider(tmp_path)
    assert provider.load().meta["version"] == good
    (store.versions_dir / broken / "model.pkl.gz").write_bytes(saved)
    monkeypatch.setattr("bot.context.RETRY_BROKEN_AFTER", 0.0)
    loaded = provider.load()
    assert loaded.meta["version"] == broken and loaded.problem is None and provider.health()["errors"] == []


# --- the service -----------------------------------------------------------------------------------------


@pytest.fixture
def broken_model_dir(model_dir, tmp_path):  # noqa: F811
    """The shop's trained model, then a newer version made active whose file is cut (a full disk)."""
    path = tmp_path / "model"
    shutil.copytree(model_dir, path)
    store = ModelStore(path)
    good = store.active_version()
    newer = good + "-broken"  # sorts after it
    shutil.copytree(store.versions_dir / good, store.versions_dir / newer)
    (store.versions_dir / newer / "model.pkl.gz").write_bytes(gzip.compress(b"not a pickle")[:10])
    store.activate(newer)
    return path, good, newer


async def test_the_service_reports_a_broken_model_and_judges_with_the_previous_one(
    aiohttp_client,
    settings,  # noqa: F811
    broken_model_dir,
    fake_github,
):
    from dataclasses import replace

    from bot.web import create_app
    from tests.ci_logs import cause

    path, good, newer = broken_model_dir
    client = await aiohttp_client(create_app(replace(settings, model_dir=path)))
    health = await (await client.get("/healthz")).json()
    assert health["status"] == "degraded" and health["model"] == good and health["active_model"] == newer
    assert newer in health["model_errors"][0]

    import random

    run = seed_run(fake_github, [("tests/test_new.py::test_fetch", cause("reset", random.Random(9)))])
    await send(client, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    await settle(client)
    body = the_comment(fake_github)["body"]
    assert "no flake model trained yet" not in body
    assert (
        f"the active flake model {newer} could not be loaded" in body and f"previous version {good}" in body
    )
    assert "**flake**" in body  # judged by the previous version
