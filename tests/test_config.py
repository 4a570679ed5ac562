from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, parse_repo_config
from bot.decide import decide
from bot.run.results import Judgement, ModelVerdict
from bot.verdict import Verdict

SECRET = "s" * 32
# a flake the model called so above its trialled retry threshold
FLAKE = Judgement(test="t", job="tests", job_url="", verdict=Verdict("flake", "log", "history", "model"),
                  model=ModelVerdict.from_explain({"verdict": "flake", "flake_probability": 0.99,
                                                   "retry_threshold": 0.9}))  # fmt: skip


def test_repo_config_defaults_and_every_key():
    assert parse_repo_config(None).max_attempts == 3 and parse_repo_config("").retry_enabled
    assert decide([FLAKE], parse_repo_config(""), attempt=1).retry
    config = parse_repo_config(
        """
threshold: 0.55
comment: false
dry_run: true
retry: {enabled: false, max_attempts: 2}
quarantine: {enabled: true, label: flaky, max_open: 3, cooldown_days: 7, stable_runs_to_close: 10}
scoring: {window: 20}
"""
    )
    assert (config.threshold, config.comment, config.dry_run) == (0.55, False, True)
    assert (config.retry_enabled, config.max_attempts) == (False, 2)
    assert not decide([FLAKE], config, attempt=1).retry
    assert (config.quarantine.label, config.quarantine.max_open, config.quarantine.cooldown_days) == (
        "flaky",
        3,
        7,
    )
    assert config.scoring.window == 20 and not config.safe_mode


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("retry: {enabled: flase}", "retry.enabled must be true or false"),
        ("retyr: {enabled: false}", "unknown key(s) in flakebot.yml: retyr"),
        ("threshold: 2", "threshold must be a number in [0, 1)"),
        ("retry: {max_attempts: 0}", "retry.max_attempts must be a whole number from 1 to 10"),
        ("quarantine: {max_open: -1}", "max_open must be a whole number"),
        ("scoring: {window: 1}", "window must be at least 2"),
        ("- a list", "must be a YAML mapping"),
        ("threshold: [unclosed", "not valid"),
    ],
)
def test_an_invalid_file_means_safe_mode_with_a_clear_error(text, message):
    config = parse_repo_config(text)
    assert config.safe_mode and message in config.error
    # a typo never switches an action on
    assert not decide([FLAKE], config, attempt=1).retry and not config.may_quarantine
    assert "retries nothing and opens no issue" in config.error


def test_settings_from_environment_and_refusals(tmp_path):
    key = tmp_path / "app.pem"
    key.write_text("-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----\n")
    settings = Settings.from_env(
        {"GITHUB_WEBHOOK_SECRET": SECRET, "GITHUB_APP_ID": "12", "GITHUB_PRIVATE_KEY": str(key),
         "GITHUB_API_URL": "http://127.0.0.1:9/", "FLAKEBOT_DATA_DIR": str(tmp_path), "PORT": "9000",
         "FLAKEBOT_LOG_DEADLINE": "90s"}
    )  # fmt: skip
    settings.check_for_serving()
    assert settings.log_deadline == 90.0 and Settings.from_env({}).log_deadline == 180.0
    assert (
        settings.github_private_key.startswith("-----BEGIN")
        and settings.github_api_url == "http://127.0.0.1:9"
    )
    assert settings.model_dir == Path(tmp_path) / "model" and settings.port == 9000
    assert SECRET not in repr(settings) and "abc" not in repr(settings)

    with pytest.raises(ConfigError, match="no forge configured"):
        Settings.from_env({}).check_for_serving()
    with pytest.raises(ConfigError, match="GITHUB_WEBHOOK_SECRET is required"):
        Settings.from_env({"GITHUB_TOKEN": "ghp_x"}).check_for_serving()
    with pytest.raises(ConfigError, match="too short"):
        Settings.from_env({"GITHUB_TOKEN": "ghp_x", "GITHUB_WEBHOOK_SECRET": "short"}).check_for_serving()
    with pytest.raises(ConfigError, match="GITLAB_WEBHOOK_SECRET is required"):
        Settings.from_env({"GITLAB_TOKEN": "glpat-x"}).check_for_serving()
    with pytest.raises(ConfigError, match="neither PEM text nor the path"):
        Settings.from_env({"GITHUB_PRIVATE_KEY": str(tmp_path / "missing.pem")})
