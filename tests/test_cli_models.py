"""``flakebot retrain``, ``models`` and ``rollback`` on a real store and real model directories."""

import json

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.modelstore import ModelStore, repo_dir
from bot.store import open_store
from tests.retrain_data import seed_failures

REPO = "github:octo/shop"


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def data_dir(tmp_path):
    store = open_store(tmp_path / "data")
    seed_failures(store, REPO)
    store.close()
    return tmp_path / "data"


def test_dry_run_then_retrain_then_list_and_roll_back(data_dir):
    dry = run("retrain", "--repo", REPO, "--data-dir", str(data_dir), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Dry run:** nothing was trained" in dry.output and "learn from 36 failure(s)" in dry.output
    own = ModelStore(repo_dir(data_dir / "model", REPO))
    assert own.versions() == []

    first = run("retrain", "--repo", REPO, "--data-dir", str(data_dir), "--json")
    result = json.loads(first.output)
    assert result["outcome"] == "promoted" and own.active_version() == result["version"]
    store = open_store(data_dir)
    seed_failures(store, REPO, seed=7, first_run=7000)
    store.close()
    second = run("retrain", "--repo", REPO, "--data-dir", str(data_dir))
    assert second.exit_code == 0 and "### flakebot retrain of `github:octo/shop`" in second.output
    assert f"Active model `{result['version']}`" in second.output  # judged against the first one
    versions = [m["version"] for m in own.versions()]
    assert len(versions) == 2

    listed = run("models", "--repo", REPO, "--data-dir", str(data_dir))
    lines = [line for line in listed.output.splitlines() if line[2:].startswith(tuple(versions))]
    assert len(lines) == 2 and [line[0] for line in lines].count("*") == 1
    rows = [
        json.loads(line)
        for line in run("models", "--repo", REPO, "--data-dir", str(data_dir), "--json").output.splitlines()
    ]
    assert [r["version"] for r in rows] == versions and all(r["precision"] is not None for r in rows)
    assert (
        "repositories with their own models: github:octo/shop"
        in run("models", "--data-dir", str(data_dir)).output
    )

    older = versions[-1]
    back = run("rollback", older, "--repo", REPO, "--data-dir", str(data_dir))
    assert back.exit_code == 0 and f"{older} is now the active model of {REPO}" in back.output
    assert own.active_version() == older
    unknown = run("rollback", "nope", "--repo", REPO, "--data-dir", str(data_dir))
    assert unknown.exit_code == 1 and "no model version 'nope'" in unknown.output and older in unknown.output
    assert own.active_version() == older


def test_clear_errors(data_dir, tmp_path):
    missing = run("retrain", "--repo", REPO, "--data-dir", str(tmp_path / "nowhere"))
    assert missing.exit_code == 1 and "no flakebot database in" in missing.output
    bad = run("retrain", "--repo", "github:../../etc", "--data-dir", str(data_dir))
    assert bad.exit_code == 2 and "not a repository name" in bad.output
    unknown = run("retrain", "--repo", "github:octo/other", "--data-dir", str(data_dir))
    assert unknown.exit_code == 1 and "no failures of github:octo/other are recorded" in unknown.output
    wrong = run("retrain", "--repo", REPO, "--data-dir", str(data_dir), "--holdout", "2")
    assert wrong.exit_code == 2 and "holdout_share must be between 0 and 1" in wrong.output


def test_a_retrain_already_running_is_not_started_twice(data_dir):
    store = open_store(data_dir)
    assert store.try_lock(f"retrain:{REPO}", "the-service", 0, 10**10)
    busy = run("retrain", "--repo", REPO, "--data-dir", str(data_dir))
    assert busy.exit_code == 1 and "already running" in busy.output
    assert ModelStore(repo_dir(data_dir / "model", REPO)).versions() == []
    # the service's own retrain process runs under the lock it holds
    owned = run(
        "retrain", "--repo", REPO, "--data-dir", str(data_dir), "--lock-owner", "the-service", "--json"
    )
    assert json.loads(owned.output)["outcome"] == "promoted"
    assert store.try_lock(f"retrain:{REPO}", "someone-else", 1, 60)  # and released it afterwards
    store.close()
