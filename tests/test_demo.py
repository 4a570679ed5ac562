from click.testing import CliRunner

from bot.cli import cli
from bot.demo import replay, sample_records
from bot.store import open_store


async def test_the_sample_replay_runs_the_real_pipeline(tmp_path):
    import io

    out = io.StringIO()
    summary = await replay(tmp_path, out)
    later = sample_records()[120:]
    assert sum(summary["verdicts"].values()) == len(later) == 80
    assert summary["runs"] == 19 and summary["retried"] < summary["runs"]
    # Cockpit's labels are weak: re-runs happen only when the model's trial found a threshold
    # precise enough, and the replay says which
    if summary["retry_threshold"] is None:
        assert summary["retried"] == 0
    assert "retries:" in out.getvalue()
    comments = sorted((tmp_path / "demo" / "comments").glob("pull-*.md"))
    assert len(comments) == summary["comments"] and comments
    assert all(c.read_text().startswith("<!-- flakebot:comment -->") for c in comments)
    store = open_store(tmp_path / "demo")
    try:
        assert len(list(store.training_records())) == 80  # every failure kept for retraining
        assert store.scores()  # and every test scored
    finally:
        store.close()
    assert "failures judged" in out.getvalue()
    # the closing line names the command that shows the history it recorded, and that command works
    last = out.getvalue().rstrip("\n").splitlines()[-1]
    assert last == f"The test history it recorded: flakebot scores --data-dir {tmp_path / 'demo'}"
    shown = CliRunner().invoke(cli, last.split(": ", 1)[1].split()[1:])
    assert shown.exit_code == 0 and "testBasic" in shown.stdout


def test_flakebot_run_without_credentials_replays_the_sample(tmp_path, monkeypatch):
    for name in (
        "GITHUB_WEBHOOK_SECRET",
        "GITHUB_TOKEN",
        "GITHUB_APP_ID",
        "GITLAB_TOKEN",
        "GITLAB_WEBHOOK_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLAKEBOT_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, ["run"])
    assert result.exit_code == 0, result.output
    assert "replaying the shipped sample data" in result.stderr
    assert "PR #7330" in result.stdout and "would have been re-run" in result.stdout
