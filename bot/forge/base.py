"""The one interface between flakebot's run path and a forge (GitHub or GitLab).

The run path (``bot/run/``), chat-ops and the decisions (bot/decide.py) only ever see these types; each
forge has one thin adapter (bot/forge/github.py, bot/forge/gitlab.py) that turns them into API calls,
and one module of pure converters from its payloads and API answers to these types
(bot/forge/github_payloads.py, bot/forge/gitlab_payloads.py). URLs come from webhook payloads and API
answers, never built by hand where the forge hands them out.

Words: a *run* is a GitHub workflow run or a GitLab pipeline; a *job* is one job of it; a *change* is a
GitHub pull request or a GitLab merge request; a *note* is a comment on a change or an issue.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from bot.render import truncate_middle
from bot.status import FAILED_CONCLUSIONS

log = logging.getLogger(__name__)

ForgeName = Literal["github", "gitlab"]

# GitLab job failure_reason values that point at infrastructure rather than at the change.
INFRA_FAILURE_REASONS = frozenset(
    {
        "runner_system_failure",
        "stuck_or_timeout_failure",
        "scheduler_failure",
        "api_failure",
        "runner_unsupported",
        "data_integrity_failure",
        "job_execution_timeout",
        "unmet_prerequisites",
        "archived_failure",
        "stale_schedule",
    }
)


class ForgeError(Exception):
    """A forge call failed for good (after bounded retries). ``status`` is the HTTP status if any."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


# A repository's name as each forge allows it, and nothing that could be a path trick (``..``, ``.``,
# an empty part, ``%``, ``?``, ``#``, whitespace): the name goes into API paths, store keys and the model
# directory. GitHub: owner (letters, digits, ``-``; ``_`` for Enterprise Managed Users) / name (letters,
# digits, ``.``, ``-``, ``_``, at most 100). GitLab: a top-level group or user, up to 20 subgroups, and
# the project, each a path of letters, digits, ``_``, ``-`` and ``.`` not starting with ``-``.
_GITHUB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}/(?!\.\.?\Z)[A-Za-z0-9_.-]{1,100}")
_GITLAB_PART = r"(?!\.\.?(?:/|\Z))[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}"
_GITLAB_PATH = re.compile(rf"{_GITLAB_PART}(?:/{_GITLAB_PART}){{1,21}}")


def repo_name_problem(forge: str, full_name: str) -> str | None:
    """Why ``full_name`` is not a repository name of ``forge``, or None when it is one."""
    if forge == "github" and not _GITHUB_NAME.fullmatch(full_name):
        return f"{full_name!r} is not a GitHub repository name (owner/name)"
    if forge == "gitlab" and not _GITLAB_PATH.fullmatch(full_name):
        return f"{full_name!r} is not a GitLab project path (group/subgroup/project)"
    return None


class RateLimited(ForgeError):
    """The forge asks flakebot to wait ``wait`` seconds before its next request (a rate limit), longer
    than an adapter sleeps in place. The durable queue defers the delivery that long without holding a
    worker, and goes on after: a rate limit alone never gives a delivery up (docs/hardening.md, 7)."""

    def __init__(self, message: str, status: int | None = None, *, wait: float):
        super().__init__(message, status)
        self.wait = wait


@dataclass(frozen=True)
class Repo:
    """A repository. ``full_name`` is checked against the forge's name syntax (ValueError otherwise):
    no Repo can carry a name that would reach outside the forge's repository API."""

    forge: ForgeName
    full_name: str  # "owner/name" (GitHub) or "group/sub/project" (GitLab path_with_namespace)
    id: int | None = None  # GitHub repository id / GitLab project id
    installation_id: int | None = None  # GitHub App installation, None with a personal token
    html_url: str = ""
    default_branch: str = "main"

    def __post_init__(self) -> None:
        problem = repo_name_problem(self.forge, self.full_name)
        if problem is not None:
            raise ValueError(problem)

    @property
    def key(self) -> str:
        """The repository's key in the store and the model directory: ``"<forge>:<full name>"``."""
        return f"{self.forge}:{self.full_name}"


@dataclass
class Run:
    """A finished CI run (GitHub workflow run, GitLab pipeline)."""

    repo: Repo
    id: int
    sha: str
    branch: str
    attempt: int  # GitHub run_attempt; GitLab: 1 + retries so far (see the GitLab adapter)
    conclusion: str  # "failure", "success", "timed_out", "failed", ...
    html_url: str
    name: str = ""  # workflow name / pipeline source
    event: str = ""  # "pull_request", "push", "merge_request_event", ...
    change_numbers: list[int] = field(default_factory=list)  # PR numbers / MR iids the payload names
    head_owner: str | None = None  # owner of the head repository (forks), for the PR fallback
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    created_at: str | None = None  # when it ran (ISO-8601), for runs read from the history (backfill)

    @property
    def failed(self) -> bool:
        return self.conclusion in FAILED_CONCLUSIONS


@dataclass
class Job:
    id: int
    name: str
    conclusion: str  # as Run.conclusion
    html_url: str
    attempt: int = 1  # which attempt of this job (GitHub run_attempt, GitLab same-name count)
    failure_reason: str | None = None  # GitLab only
    started_at: str | None = None
    completed_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def failed(self) -> bool:
        return self.conclusion in FAILED_CONCLUSIONS

    @property
    def infra_failure(self) -> bool:
        return self.failure_reason in INFRA_FAILURE_REASONS

    @property
    def duration(self) -> float | None:
        from datetime import datetime

        if not (self.started_at and self.completed_at):
            return None
        start = datetime.fromisoformat(self.started_at.replace("Z", "+00:00"))
        end = datetime.fromisoformat(self.completed_at.replace("Z", "+00:00"))
        return max(0.0, (end - start).total_seconds())


@dataclass
class TestReport:
    """A machine-readable test report of a run: JUnit XML (GitHub artifact) or GitLab's report JSON."""

    kind: Literal["junit-xml", "gitlab-json"]
    name: str  # artifact file name / "test_report"
    data: bytes
    job_name: str | None = None


@dataclass
class Change:
    """A pull request / merge request."""

    number: int  # PR number / MR iid
    html_url: str
    head_sha: str
    head_ref: str
    state: str = "open"


@dataclass
class Note:
    id: int
    body: str
    author: str
    html_url: str = ""


@dataclass
class Issue:
    number: int  # GitHub number / GitLab iid
    title: str
    state: str  # "open" | "closed"
    html_url: str
    labels: list[str] = field(default_factory=list)
    body: str = ""
    closed_by: str | None = None  # login of who closed it, when known
    closed_at: str | None = None
    assignees: list[str] = field(default_factory=list)  # logins


@dataclass(frozen=True)
class Identity:
    """Who flakebot is on a forge: the login its notes and issue closings carry, and its user id where
    the forge has one (GitLab's notes name their author by id)."""

    login: str
    id: int | None = None

    def wrote(self, login: str, user_id: int | None = None) -> bool:
        """Whether a note by ``login`` (or by the user ``user_id``) is flakebot's own."""
        return login == self.login or (user_id is not None and user_id == self.id)


Permission = Literal["admin", "write", "read", "none"]


class Forge(ABC):
    """What the run path, the decisions' actions and chat-ops need from a forge.

    Every method raises :class:`ForgeError` on a definitive failure; transient errors (5xx, rate
    limits with ``Retry-After``, timeouts) are retried inside the adapter with bounded back-off.
    Adapters never log tokens, and take every URL they can from payloads and answers.

    **Over-long bodies**, one contract on every forge: a comment, reply, note or issue body longer than
    :attr:`max_body_chars` is cut in the middle to that length, saying how much was cut, and a warning
    is logged (:meth:`fit_body`); it is never refused. Callers render within the limit already (the PR
    comment drops detail, then rows; replies and issue bodies are cut where they are rendered), so a cut
    here means a renderer missed: the comment still arrives, and its hidden marker (at the top) survives.
    """

    name: ForgeName
    max_body_chars: int  # the longest comment, note or issue body the forge takes

    def fit_body(self, body: str, what: str = "body") -> str:
        """``body`` within :attr:`max_body_chars` (cut in the middle, saying so): see the class doc."""
        if len(body) <= self.max_body_chars:
            return body
        log.warning(
            "%s %s has %d characters, over the %d %s takes: cut in the middle",
            self.name, what, len(body), self.max_body_chars, self.name,
        )  # fmt: skip
        return truncate_middle(body, self.max_body_chars)

    async def aclose(self) -> None:  # noqa: B027 - most adapters hold nothing of their own
        """Release what the adapter holds itself (GitLab: its thread pool); the service calls it on
        shutdown."""

    @abstractmethod
    async def identity(self, repo: Repo) -> Identity | None:
        """Who flakebot is on the forge (asked once, then remembered), to tell its own comments and issue
        closings from people's. None when the forge will not say: flakebot then finds its comments by
        their hidden marker alone. May raise :class:`ForgeError` when asking failed."""

    # --- reading a run -------------------------------------------------------------------------
    @abstractmethod
    async def list_jobs(self, run: Run) -> list[Job]:
        """The run's latest jobs (GitHub ``filter=latest``; GitLab: newest job per name)."""

    @abstractmethod
    def job_log(self, job: Job, repo: Repo, max_bytes: int) -> AsyncIterator[bytes]:
        """Stream the job's log in chunks; stop after ``max_bytes`` (the caller marks the cut)."""

    @abstractmethod
    async def test_reports(self, run: Run, max_bytes: int) -> list[TestReport]:
        """JUnit XML artifacts (GitHub) or the pipeline test report (GitLab); [] when none."""

    @abstractmethod
    async def changes_for_run(self, run: Run) -> list[Change]:
        """The open PRs/MRs the run belongs to; for forks fall back to matching head branch and SHA."""

    @abstractmethod
    async def read_file(self, repo: Repo, path: str, ref: str | None = None) -> str | None:
        """A repository file's text (per-repo settings); None when it does not exist."""

    # --- acting -------------------------------------------------------------------------------
    @abstractmethod
    async def upsert_note(self, repo: Repo, change: Change, marker: str, body: str) -> Note:
        """Edit the bot's note on the change that contains ``marker``, or create it. One per change."""

    @abstractmethod
    async def reply(self, repo: Repo, change_number: int, body: str) -> Note:
        """Post a new note on a change (chat-ops replies)."""

    @abstractmethod
    async def acknowledge(self, repo: Repo, change_number: int, note_id: int) -> None:
        """Mark a chat-ops note as seen (a reaction / award emoji)."""

    @abstractmethod
    async def retry_jobs(self, run: Run, jobs: list[Job]) -> None:
        """Re-run the failed jobs of a run (GitHub rerun-failed-jobs; GitLab job.retry() each)."""

    async def run_attempt(self, run: Run) -> int:
        """The run's latest attempt now: higher than the attempt judged once a re-run was made (how a
        delivery resumed after a crash knows the re-run it asked for went through). By default its
        latest jobs' highest attempt (GitLab counts attempts per job)."""
        return max([run.attempt, *(job.attempt for job in await self.list_jobs(run))])

    @abstractmethod
    async def ensure_labels(self, repo: Repo, labels: list[str]) -> None:
        """Create missing labels up front (GitHub drops unknown labels silently)."""

    @abstractmethod
    async def find_issues(self, repo: Repo, label: str) -> list[Issue]:
        """All issues (open and closed) carrying ``label``, newest first."""

    @abstractmethod
    async def create_issue(self, repo: Repo, title: str, body: str, labels: list[str]) -> Issue: ...

    @abstractmethod
    async def update_issue(
        self,
        repo: Repo,
        number: int,
        *,
        body: str | None = None,
        state: Literal["open", "closed"] | None = None,
        comment: str | None = None,
    ) -> Issue:
        """Change an issue's body and/or state, optionally adding a comment."""

    @abstractmethod
    async def assign_issue(self, repo: Repo, number: int, users: list[str]) -> list[str]:
        """Assign the issue to these users (logins); those the forge will not assign (not a member, no
        such user, a group) are left out. Returns those of ``users`` it assigned. Mentions no one."""

    @abstractmethod
    async def permission(self, repo: Repo, user: str | int) -> Permission:
        """The user's permission on the repository (GitHub collaborator API; GitLab access level)."""

    # --- reading a repository's CI history (``flakebot backfill``; read-only) ------------------
    # Not abstract: a forge that cannot read its history says so when asked.
    async def find_repo(self, full_name: str, installation_id: int | None = None) -> Repo:
        """The repository by name, with its id, page and default branch (and, for a GitHub App, its
        installation, asked of GitHub unless given). :class:`ForgeError` (404) when it is not there."""
        raise ForgeError(f"{self.name}: reading the CI history is not supported")

    def list_runs(self, repo: Repo, since: datetime, until: datetime) -> AsyncIterator[Run]:
        """The finished runs created (GitLab: updated) between ``since`` and ``until``, on every
        branch, newest first, each with ``created_at``; paginated as the forge pages them."""
        raise ForgeError(f"{self.name}: reading the CI history is not supported")

    async def list_all_jobs(self, run: Run) -> list[Job]:
        """Every job of every attempt of the run, each with its ``attempt`` (GitHub ``filter=all``;
        GitLab ``include_retried``: the n-th job of a name is its attempt n)."""
        raise ForgeError(f"{self.name}: reading the CI history is not supported")
