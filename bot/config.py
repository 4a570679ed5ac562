"""Configuration: the service's settings (environment variables) and each repository's own file.

Service settings come only from the environment (secrets never on the command line):

=========================  ==================================================================
``GITHUB_WEBHOOK_SECRET``  the GitHub webhooks' secret (required when GitHub is enabled)
``GITHUB_APP_ID``          GitHub App id; with ``GITHUB_PRIVATE_KEY`` (PEM text or a file path)
``GITHUB_TOKEN``           or a personal access token, for a single repository
``GITHUB_API_URL``         default ``https://api.github.com`` (GitHub Enterprise, test servers)
``GITLAB_URL``             default ``https://gitlab.com``
``GITLAB_TOKEN``           a project/group access token (Developer) or personal token, scope ``api``
``GITLAB_WEBHOOK_SECRET``  the GitLab webhook's secret token (required when GitLab is enabled)
``FLAKEBOT_DATA_DIR``      where the SQLite database lives (default ``./data``)
``FLAKEBOT_DATABASE_URL``  ``postgresql://user:password@host:port/db``: the store (and the models) in
                           PostgreSQL, for several instances; unset: SQLite in the data directory
``FLAKEBOT_MODEL``         the model directory of ``flakebot train`` (default ``$FLAKEBOT_DATA_DIR/model``;
                           with a database URL, its active model seeds an empty database's)
``FLAKEBOT_RETRAIN_EVERY`` retrain each repository with new labels this often (``7d``, ``12h``;
                           default off); ``/flake retrain`` and ``flakebot retrain`` work either way
``FLAKEBOT_RETRAIN_TIMEOUT`` stop a retrain that takes longer (default ``2h``)
``FLAKEBOT_BACKFILL_DAYS``  days of CI history read the first time a repository without a model or
                           history is seen (default 30; ``0``/``off``: never read it by itself)
``FLAKEBOT_LOG_DEADLINE``  the longest download of one job's log, retry included (default ``3m``)
``FLAKEBOT_KNOWN_ISSUES``  optional JSONL of known-issue patterns (Cockpit's naughty format)
``FLAKEBOT_DRY_RUN``       ``1``: decide and log everything, write nothing to any forge
``FLAKEBOT_WORKERS``       concurrent pipeline workers (default 2; ``0``: answer webhooks only, with
                           PostgreSQL and ``flakebot worker`` processes doing the work)
``FLAKEBOT_LEASE``         how long a worker's claim on a delivery, and a lock it holds, last without
                           renewal (default ``2m``): after a crash, another instance takes them over then
``FLAKEBOT_READ_TOKEN``    optional: ``GET /`` and ``GET /quarantine.json`` then need it (docs/history.md)
``PORT``                   HTTP port (default 8080; ``flakebot serve --port`` wins)
=========================  ==================================================================

Per-repository settings live in ``.github/flakebot.yml`` (GitHub) or ``.flakebot.yml`` (GitLab), read
from the default branch through the API. Every key is optional (see :class:`RepoConfig`). A file that
is not valid gives a clear error in the bot's comment and puts the repository in *safe mode*: verdicts
are still commented, but nothing is retried and no issue is touched, so a typo can never switch an
action on. A file that cannot be read is not an absent one (``bot/run/scope.load_repo_config``): the
settings last read apply, else safe mode.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from bot.incidents import IncidentConfig
from bot.quarantine import QuarantineConfig
from bot.scoring import ScoringConfig


class ConfigError(ValueError):
    """A setting is missing or wrong; the message says which and how to fix it."""


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str | None, name: str = "duration") -> float | None:
    """Seconds from ``90s``, ``30m``, ``12h``, ``7d``, ``2w`` (or a plain number of seconds); None for
    empty, ``0`` or ``off``."""
    text = (value or "").strip().lower()
    if text in ("", "0", "off", "none", "never"):
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw]?)", text)
    if not match:
        raise ConfigError(f"{name} must be a duration such as 30m, 12h or 7d (or off), got {value!r}")
    seconds = float(match[1]) * _UNITS[match[2] or "s"]
    return seconds or None


def _days(value: str | None) -> int | None:
    """FLAKEBOT_BACKFILL_DAYS: 30 when unset, None for 0/off, else 1 to 400 days."""
    text = (value or "30").strip().lower()
    if text in ("0", "off", "none", "never"):
        return None
    if not text.isdigit() or not 1 <= int(text) <= 400:
        raise ConfigError(
            f"FLAKEBOT_BACKFILL_DAYS must be a number of days from 1 to 400, or off; got {value!r}"
        )
    return int(text)


def _private_key(value: str) -> str:
    """PEM text as given, or the content of the file it names."""
    if "-----BEGIN" in value:
        return value.replace("\\n", "\n")
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError("GITHUB_PRIVATE_KEY is neither PEM text nor the path of a readable file")
    return path.read_text()


@dataclass(frozen=True)
class Settings:
    github_webhook_secret: str | None = None
    github_app_id: str | None = None
    github_private_key: str | None = field(default=None, repr=False)
    github_token: str | None = field(default=None, repr=False)
    github_api_url: str = "https://api.github.com"
    gitlab_url: str = "https://gitlab.com"
    gitlab_token: str | None = field(default=None, repr=False)
    gitlab_webhook_secret: str | None = field(default=None, repr=False)
    read_token: str | None = field(default=None, repr=False)  # for the history page and quarantine.json
    data_dir: Path = Path("data")
    database_url: str | None = field(default=None, repr=False)  # PostgreSQL; None: SQLite in data_dir
    model_dir: Path = Path("data/model")
    known_issues: Path | None = None
    dry_run: bool = False
    workers: int = 2
    retrain_every: float | None = None  # seconds between scheduled retrains; None: off
    retrain_timeout: float = 2 * 3600.0
    lease: float = 120.0  # seconds a delivery's claim and a held lock last without renewal
    backfill_days: int | None = 30  # read on first sight of a repository without model or history
    port: int = 8080
    max_body_bytes: int = 25 * 1024 * 1024  # GitHub caps webhook payloads at 25 MB
    max_unauthenticated_bytes: int = 64 * 1024 * 1024  # read from deliveries not yet authenticated, in all
    replay_window: float = 7 * 86400.0  # a signed GitHub body seen again within this long is a replay
    max_log_bytes: int = 64 * 1024 * 1024  # per job log
    log_deadline: float = 180.0  # seconds to download one job's log, its one retry included
    max_report_bytes: int = 32 * 1024 * 1024  # all test reports of a run

    def __repr__(self) -> str:  # never print a secret, even by accident
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        shown["github_webhook_secret"] = "***" if self.github_webhook_secret else None
        return f"Settings({shown})"

    @property
    def github_enabled(self) -> bool:
        return bool(self.github_webhook_secret or self.github_token or self.github_app_id)

    @property
    def gitlab_enabled(self) -> bool:
        return bool(self.gitlab_token or self.gitlab_webhook_secret)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        get = lambda name: (env.get(name) or "").strip() or None  # noqa: E731
        data_dir = Path(get("FLAKEBOT_DATA_DIR") or "data")
        key = get("GITHUB_PRIVATE_KEY")
        database_url = get("FLAKEBOT_DATABASE_URL")
        if database_url is not None and not database_url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(
                "FLAKEBOT_DATABASE_URL must be a PostgreSQL URL, postgresql://user:password@host:port/dbname "
                "(unset it to keep the SQLite store in FLAKEBOT_DATA_DIR)"
            )
        try:
            workers = int(get("FLAKEBOT_WORKERS") or 2)
            port = int(get("PORT") or 8080)
        except ValueError as exc:
            raise ConfigError(f"FLAKEBOT_WORKERS and PORT must be whole numbers ({exc})") from exc
        settings = cls(
            github_webhook_secret=get("GITHUB_WEBHOOK_SECRET"),
            github_app_id=get("GITHUB_APP_ID"),
            github_private_key=_private_key(key) if key else None,
            github_token=get("GITHUB_TOKEN"),
            github_api_url=(get("GITHUB_API_URL") or "https://api.github.com").rstrip("/"),
            gitlab_url=(get("GITLAB_URL") or "https://gitlab.com").rstrip("/"),
            gitlab_token=get("GITLAB_TOKEN"),
            gitlab_webhook_secret=get("GITLAB_WEBHOOK_SECRET"),
            read_token=get("FLAKEBOT_READ_TOKEN"),
            data_dir=data_dir,
            database_url=database_url,
            model_dir=Path(get("FLAKEBOT_MODEL") or data_dir / "model"),
            known_issues=Path(p) if (p := get("FLAKEBOT_KNOWN_ISSUES")) else None,
            dry_run=_flag(get("FLAKEBOT_DRY_RUN")),
            workers=max(0, workers),
            retrain_every=parse_duration(get("FLAKEBOT_RETRAIN_EVERY"), "FLAKEBOT_RETRAIN_EVERY"),
            retrain_timeout=parse_duration(get("FLAKEBOT_RETRAIN_TIMEOUT"), "FLAKEBOT_RETRAIN_TIMEOUT")
            or 7200.0,
            port=port,
            lease=parse_duration(get("FLAKEBOT_LEASE"), "FLAKEBOT_LEASE") or 120.0,
            backfill_days=_days(get("FLAKEBOT_BACKFILL_DAYS")),
            log_deadline=parse_duration(get("FLAKEBOT_LOG_DEADLINE"), "FLAKEBOT_LOG_DEADLINE") or 180.0,
        )
        return replace(settings, **overrides) if overrides else settings

    def check_for_serving(self) -> None:
        """Refuse to serve webhooks without what it takes to verify and answer them."""
        if not (self.github_enabled or self.gitlab_enabled):
            raise ConfigError(
                "no forge configured: set GITHUB_WEBHOOK_SECRET with GITHUB_APP_ID/GITHUB_PRIVATE_KEY or "
                "GITHUB_TOKEN, and/or GITLAB_WEBHOOK_SECRET with GITLAB_TOKEN (see README, 'Configuration')"
            )
        if self.workers == 0 and not self.database_url:
            raise ConfigError(
                "FLAKEBOT_WORKERS=0 (answer webhooks only) needs FLAKEBOT_DATABASE_URL: with SQLite no other "
                "process would work the queue"
            )
        if self.read_token is not None and len(self.read_token) < 16:
            raise ConfigError("FLAKEBOT_READ_TOKEN is too short: use at least 16 random characters")
        if self.github_enabled:
            if not self.github_webhook_secret:
                raise ConfigError("GITHUB_WEBHOOK_SECRET is required: unsigned GitHub webhooks are refused")
            if len(self.github_webhook_secret) < 16:
                raise ConfigError("GITHUB_WEBHOOK_SECRET is too short: use at least 16 random characters")
            has_app = bool(self.github_app_id and self.github_private_key)
            if not (has_app or self.github_token):
                raise ConfigError("set GITHUB_APP_ID and GITHUB_PRIVATE_KEY (a GitHub App) or GITHUB_TOKEN")
            if self.github_app_id and not self.github_private_key:
                raise ConfigError("GITHUB_APP_ID is set but GITHUB_PRIVATE_KEY is not")
        if self.gitlab_enabled:
            if not self.gitlab_webhook_secret:
                raise ConfigError(
                    "GITLAB_WEBHOOK_SECRET is required: GitLab webhooks without a token are refused"
                )
            if len(self.gitlab_webhook_secret) < 16:
                raise ConfigError("GITLAB_WEBHOOK_SECRET is too short: use at least 16 random characters")
            if not self.gitlab_token:
                raise ConfigError("GITLAB_TOKEN is required to read jobs and write notes on GitLab")


# --- per repository ------------------------------------------------------------------------------

CONFIG_PATHS = {"github": ".github/flakebot.yml", "gitlab": ".flakebot.yml"}


@dataclass(frozen=True)
class RepoConfig:
    """What a repository's ``flakebot.yml`` may set; every key optional.

    .. code-block:: yaml

        threshold: 0.4        # flake probability above which the log model says "flake"
        comment: true         # post / update the PR or MR comment
        dry_run: false        # decide and log only; write nothing
        retry:
          enabled: true
          max_attempts: 3     # attempts in total, the first run included
        quarantine:
          enabled: true
          label: flaky-test
          max_open: 7
          cooldown_days: 21
          stable_runs_to_close: 30
          expire_days: 30     # a quarantine ends this long after its last failure unless renewed; 0: never
          assign_owners: true # assign new quarantine issues to the test file's CODEOWNERS
        incidents:
          enabled: true
          min_changes: 5      # changes failing the same way ...
          window_minutes: 30  # ... within this long are an infrastructure incident
          quiet_minutes: 60   # it is over after this long without a new failure of its kind
          label: infra-incident
        scoring:
          window: 50
    """

    threshold: float | None = None  # None: the model's own
    comment: bool = True
    dry_run: bool = False
    retry_enabled: bool = True
    max_attempts: int = 3
    quarantine_enabled: bool = True
    quarantine: QuarantineConfig = field(default_factory=QuarantineConfig)
    incidents: IncidentConfig = field(default_factory=IncidentConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    error: str | None = None  # set when the file was invalid, or could not be read: safe mode
    unread: bool = False  # the file could not be read and none was read before (comment only)

    @property
    def safe_mode(self) -> bool:
        return self.error is not None

    @property
    def safe_reason(self) -> str:
        """Why nothing is re-run or quarantined in safe mode, in a few words."""
        return f"the repository's flakebot settings {'could not be read' if self.unread else 'are not valid'}"

    @property
    def may_quarantine(self) -> bool:
        return self.quarantine_enabled and not self.safe_mode

    @property
    def may_declare_incidents(self) -> bool:
        return self.incidents.enabled and not self.safe_mode


_TOP = {"threshold", "comment", "dry_run", "retry", "quarantine", "incidents", "scoring"}
_RETRY = {"enabled", "max_attempts"}
_QUARANTINE = {
    "enabled",
    "label",
    "max_open",
    "cooldown_days",
    "stable_runs_to_close",
    "expire_days",
    "assign_owners",
}
_INCIDENTS = {"enabled", "min_changes", "window_minutes", "quiet_minutes", "label"}


def _check_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown key(s) in {where}: {', '.join(unknown)} (known: {', '.join(sorted(allowed))})"
        )


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    return value


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a mapping of settings")
    return value


def parse_repo_config(text: str | None, *, where: str = "flakebot.yml") -> RepoConfig:
    """The repository's settings from its YAML text (None: the file does not exist: defaults).

    Never raises: an invalid file gives the defaults in safe mode, with ``error`` saying what is wrong.
    """
    if text is None or not text.strip():
        return RepoConfig()
    try:
        data = yaml.safe_load(text)
        if data is None:
            return RepoConfig()
        if not isinstance(data, Mapping):
            raise ConfigError("the file must be a YAML mapping of settings")
        _check_keys(data, _TOP, where)
        retry, quarantine = _section(data, "retry"), _section(data, "quarantine")
        incidents = _section(data, "incidents")
        _check_keys(retry, _RETRY, f"{where}: retry")
        _check_keys(quarantine, _QUARANTINE, f"{where}: quarantine")
        _check_keys(incidents, _INCIDENTS, f"{where}: incidents")
        threshold = data.get("threshold")
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold < 1
        ):
            raise ConfigError(f"threshold must be a number in [0, 1), got {threshold!r}")
        max_attempts = retry.get("max_attempts", 3)
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or not 1 <= max_attempts <= 10:
            raise ConfigError(f"retry.max_attempts must be a whole number from 1 to 10, got {max_attempts!r}")
        try:
            qconfig = QuarantineConfig(**{k: v for k, v in quarantine.items() if k != "enabled"})
            iconfig = IncidentConfig(**incidents)
            scoring = ScoringConfig.from_mapping(_section(data, "scoring"))
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from exc
        return RepoConfig(
            threshold=None if threshold is None else float(threshold),
            comment=_bool(data.get("comment", True), "comment"),
            dry_run=_bool(data.get("dry_run", False), "dry_run"),
            retry_enabled=_bool(retry.get("enabled", True), "retry.enabled"),
            max_attempts=max_attempts,
            quarantine_enabled=_bool(quarantine.get("enabled", True), "quarantine.enabled"),
            quarantine=qconfig,
            incidents=iconfig,
            scoring=scoring,
        )
    except (yaml.YAMLError, ConfigError) as exc:
        return RepoConfig(
            error=f"{where} is not valid, so flakebot retries nothing and opens no issue: {exc}"
        )
