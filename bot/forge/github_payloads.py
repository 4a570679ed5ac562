"""GitHub JSON (webhook payloads and REST answers) into the forge interface's types. Pure functions.

Webhooks flakebot consumes:

* ``workflow_run`` (action ``completed``): :func:`run_from_workflow_run`.
* ``check_suite`` (action ``completed``): :func:`run_from_check_suite`. Suites made by GitHub Actions are
  ignored (None): every Actions suite also sends a ``workflow_run`` event, which carries the run id the
  Actions API needs. Suites of other CI apps (no Actions run behind them) become a :class:`Run` with
  ``event == "check_suite"`` and the suite's id; the adapter reads their check runs as jobs.
* ``issue_comment`` (action ``created``): :func:`comment_from_issue_comment`.
* ``pull_request`` (action ``closed``): :func:`merged_head`.

The webhook endpoint runs every delivery through :func:`check_delivery` (the same converters) before
it is queued, so a malformed payload is refused with 400 and its reason, never retried.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from bot.forge.base import Change, Issue, Job, Note, Permission, Repo, Run, repo_name_problem

CHECK_SUITE_EVENT = "check_suite"  # Run.event of a run made from a third-party check suite
ACTIONS_APP_SLUG = "github-actions"


class PayloadError(ValueError):
    """A webhook payload or API answer lacks a field flakebot needs, or has it with the wrong type."""


_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", int: "a whole number", bool: "true/false"}


def _json_type(value: Any) -> str:
    return next((name for kind, name in _TYPE_NAMES.items() if type(value) is kind), type(value).__name__)


def _get(obj: Any, path: str, kind: type | None = None) -> Any:
    """``obj["a"]["b"]`` for ``path == "a.b"``, with a clear error naming the field when it is missing or,
    with ``kind``, of another JSON type (``true`` is no number)."""
    node = obj
    for key in path.split("."):
        if not isinstance(node, dict) or node.get(key) is None:
            raise PayloadError(f"GitHub payload lacks {path!r}")
        node = node[key]
    if kind is not None and (not isinstance(node, kind) or (isinstance(node, bool) and kind is not bool)):
        raise PayloadError(f"GitHub payload's {path!r} is {_json_type(node)}, not {_TYPE_NAMES[kind]}")
    return node


def _opt(obj: Any, key: str, kind: type, default: Any = None) -> Any:
    """An optional field: ``default`` when it is missing, null or of another type."""
    value = obj.get(key) if isinstance(obj, dict) else None
    if value is None or not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        return default
    return value


def _login(user: Any) -> str:
    return _opt(user, "login", str, "")


def _numbers(pulls: Any, where: str) -> list[int]:
    """The pull request numbers of a payload's ``pull_requests`` list."""
    if pulls is None:
        return []
    if not isinstance(pulls, list):
        raise PayloadError(f"GitHub payload's {where!r} is {_json_type(pulls)}, not a list")
    return [_get(pr, "number", int) for pr in pulls]


def repo_from_payload(payload: dict[str, Any]) -> Repo:
    """The repository of a webhook delivery, with the App installation when the delivery names one.
    Its ``full_name`` must be a GitHub repository's (``owner/name``): no other name reaches an API path."""
    repository = _get(payload, "repository", dict)
    full_name = _get(repository, "full_name", str)
    problem = repo_name_problem("github", full_name)
    if problem is not None:
        raise PayloadError(f"GitHub payload's repository.full_name: {problem}")
    return Repo(
        forge="github",
        full_name=full_name,
        id=_opt(repository, "id", int),
        installation_id=_opt(payload.get("installation"), "id", int),
        html_url=_opt(repository, "html_url", str, ""),
        default_branch=_opt(repository, "default_branch", str, "") or "main",
    )


def run_from_workflow_run(payload: dict[str, Any]) -> Run:
    """A ``workflow_run`` delivery as a :class:`Run`.

    ``change_numbers`` are the payload's ``pull_requests`` (empty for fork PRs: the adapter then looks
    the PR up by head branch and SHA); ``head_owner`` is the owner of the head repository (the fork).
    """
    wr = _get(payload, "workflow_run", dict)
    run = run_from_api(wr, repo_from_payload(payload))
    # a run judged live is dated when it is judged (``created_at`` is that of its first attempt)
    name = run.name or _opt(payload.get("workflow"), "name", str, "")
    return replace(run, name=name, raw=wr, created_at=None)


def run_from_check_suite(payload: dict[str, Any]) -> Run | None:
    """A ``check_suite`` delivery as a :class:`Run`, or None for suites GitHub Actions made.

    Third-party suites carry no Actions run: the Run's ``id`` is the check suite id, its ``event`` is
    ``"check_suite"``, and its ``html_url`` is the head commit's checks page when the payload has no
    better one.
    """
    suite = _get(payload, "check_suite", dict)
    app = _opt(suite, "app", dict, {})
    if app.get("slug") == ACTIONS_APP_SLUG:
        return None
    repo = repo_from_payload(payload)
    sha = _get(suite, "head_sha", str)
    html_url = f"{repo.html_url}/commit/{sha}/checks" if repo.html_url else ""
    return Run(
        repo=repo,
        id=_get(suite, "id", int),
        sha=sha,
        branch=_opt(suite, "head_branch", str, ""),
        attempt=1,
        conclusion=_opt(suite, "conclusion", str) or _opt(suite, "status", str, ""),
        html_url=html_url,
        name=_opt(app, "name", str) or _opt(app, "slug", str, ""),
        event=CHECK_SUITE_EVENT,
        change_numbers=_numbers(suite.get("pull_requests"), "check_suite.pull_requests"),
        head_owner=None,
        raw=suite,
    )


def repo_from_api(data: dict[str, Any], installation_id: int | None = None) -> Repo:
    """A repository of the API (``GET /repos/{owner}/{repo}``) as a :class:`Repo`."""
    return Repo(
        forge="github",
        full_name=_get(data, "full_name", str),
        id=_opt(data, "id", int),
        installation_id=installation_id,
        html_url=_opt(data, "html_url", str, ""),
        default_branch=_opt(data, "default_branch", str, "main"),
    )


def run_from_api(data: dict[str, Any], repo: Repo) -> Run:
    """A workflow run of the API (``GET .../actions/runs``, and a ``workflow_run`` payload's run) as a
    :class:`Run` of ``repo``, with when it was created."""
    head_repo = _opt(data, "head_repository", dict, {})
    return Run(
        repo=repo,
        id=_get(data, "id", int),
        sha=_get(data, "head_sha", str),
        branch=_opt(data, "head_branch", str, ""),
        attempt=_opt(data, "run_attempt", int, 1),
        conclusion=_opt(data, "conclusion", str) or _opt(data, "status", str, ""),
        html_url=_opt(data, "html_url", str, ""),
        name=_opt(data, "name", str, ""),
        event=_opt(data, "event", str, ""),
        change_numbers=_numbers(data.get("pull_requests"), "workflow_run.pull_requests"),
        head_owner=_login(head_repo.get("owner")) or None,
        raw={},  # a listing holds hundreds of runs: nothing else of the answer is kept
        created_at=_opt(data, "created_at", str),
    )


@dataclass(frozen=True)
class CommentEvent:
    """A new comment on a pull request (an ``issue_comment`` created): the input of chat-ops."""

    repo: Repo
    change_number: int
    note: Note
    by_bot: bool  # written by a bot account (flakebot's own App included)


def comment_from_issue_comment(payload: dict[str, Any]) -> CommentEvent | None:
    """An ``issue_comment`` delivery's comment, or None when it is on a plain issue."""
    issue = _get(payload, "issue", dict)
    comment = _get(payload, "comment", dict)
    if "pull_request" not in issue:
        return None
    return CommentEvent(
        repo=repo_from_payload(payload),
        change_number=_get(issue, "number", int),
        note=note_from_comment(comment),
        by_bot=_opt(comment.get("user"), "type", str, "") == "Bot",
    )


def merged_head(payload: dict[str, Any]) -> tuple[Repo, int, str] | None:
    """(repository, number, head SHA) of a ``pull_request`` closed delivery when it was merged, else None."""
    pull = _get(payload, "pull_request", dict)
    if pull.get("merged") is not True:
        return None
    return repo_from_payload(payload), _get(pull, "number", int), _get(pull, "head.sha", str)


_DELIVERIES = {
    "workflow_run": run_from_workflow_run,
    "check_suite": run_from_check_suite,
    "issue_comment": comment_from_issue_comment,
    "pull_request": merged_head,
}


def check_delivery(event: str, payload: Any) -> None:
    """Raise :class:`PayloadError` when a delivery lacks or mistypes a field flakebot reads: the
    webhook endpoint answers 400 with the reason, so nothing malformed reaches the queue. Deliveries of
    the events flakebot handles go through the converters their handlers use."""
    if not isinstance(payload, dict):
        raise PayloadError(f"the payload must be a JSON object, got {_json_type(payload)}")
    action = payload.get("action")
    if action is not None and not isinstance(action, str):
        raise PayloadError(f"GitHub payload's 'action' is {_json_type(action)}, not a string")
    convert = _DELIVERIES.get(event)
    if convert is not None:
        convert(payload)


def job_from_api(data: dict[str, Any]) -> Job:
    """An Actions job (``GET .../runs/{id}/jobs``) or a check run (``.../check-runs``) as a :class:`Job`."""
    return Job(
        id=int(_get(data, "id")),
        name=data.get("name") or "",
        conclusion=data.get("conclusion") or data.get("status") or "",
        html_url=data.get("html_url") or "",
        attempt=int(data.get("run_attempt") or 1),
        started_at=data.get("started_at"),
        completed_at=data.get("completed_at"),
        raw=data,
    )


def jobs_as_of(jobs: list[Job], attempt: int) -> list[Job]:
    """A run's jobs as its attempt ``attempt`` left them, from the jobs of every attempt (``filter=all``):
    for each job name, the job(s) of the newest attempt up to it. A re-run of the failed jobs makes the
    next attempt's jobs at once (queued), so the jobs GitHub lists as the latest (``filter=latest``) of a
    run re-run since are no longer those of the attempt being judged; the jobs that passed keep those of
    their own attempt."""
    newest: dict[str, int] = {}
    for job in jobs:
        if job.attempt <= attempt:
            newest[job.name] = max(newest.get(job.name, 0), job.attempt)
    return [job for job in jobs if job.attempt <= attempt and job.attempt == newest[job.name]]


def change_from_pull(data: dict[str, Any]) -> Change:
    return Change(
        number=int(_get(data, "number")),
        html_url=data.get("html_url") or "",
        head_sha=_get(data, "head.sha"),
        head_ref=_get(data, "head.ref"),
        state=data.get("state") or "open",
    )


def note_from_comment(data: dict[str, Any]) -> Note:
    """An issue comment (API answer or an ``issue_comment`` payload's ``comment``) as a :class:`Note`."""
    return Note(
        id=_get(data, "id", int),
        body=_opt(data, "body", str, ""),
        author=_login(data.get("user")),
        html_url=_opt(data, "html_url", str, ""),
    )


def issue_from_api(data: dict[str, Any]) -> Issue:
    labels = [
        label if isinstance(label, str) else label.get("name", "") for label in data.get("labels") or []
    ]
    return Issue(
        number=int(_get(data, "number")),
        title=data.get("title") or "",
        state=data.get("state") or "open",
        html_url=data.get("html_url") or "",
        labels=[label for label in labels if label],
        body=data.get("body") or "",
        closed_by=_login(data.get("closed_by")) or None,
        closed_at=data.get("closed_at"),
        assignees=[login for user in data.get("assignees") or [] if (login := _login(user))],
    )


# GitHub's repository roles onto the interface's four levels: maintain can push, triage cannot.
_ROLES: dict[str, Permission] = {
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
}


def permission_from_api(data: dict[str, Any]) -> Permission:
    """``GET .../collaborators/{user}/permission`` as admin/write/read/none (role_name first)."""
    for key in ("role_name", "permission"):
        role = data.get(key)
        if role in _ROLES:
            return _ROLES[role]
    return "none"
