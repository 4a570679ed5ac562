"""GitHub JSON (webhook payloads and REST answers) into the forge interface's types. Pure functions.

Webhooks flakebot consumes:

* ``workflow_run`` (action ``completed``): :func:`run_from_workflow_run`.
* ``check_suite`` (action ``completed``): :func:`run_from_check_suite`. Suites made by GitHub Actions are
  ignored (None): every Actions suite also sends a ``workflow_run`` event, which carries the run id the
  Actions API needs. Suites of other CI apps (no Actions run behind them) become a :class:`Run` with
  ``event == "check_suite"`` and the suite's id; the adapter reads their check runs as jobs.
* ``issue_comment`` (action ``created``): :func:`note_from_comment` and :func:`repo_from_payload`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bot.forge.base import Change, Issue, Job, Note, Permission, Repo, Run

CHECK_SUITE_EVENT = "check_suite"  # Run.event of a run made from a third-party check suite
ACTIONS_APP_SLUG = "github-actions"


class PayloadError(ValueError):
    """A webhook payload or API answer lacks a field flakebot needs."""


def _get(obj: Any, path: str) -> Any:
    """``obj["a"]["b"]`` for ``path == "a.b"``, with a clear error naming the missing field."""
    node = obj
    for key in path.split("."):
        if not isinstance(node, dict) or node.get(key) is None:
            raise PayloadError(f"GitHub payload lacks {path!r}")
        node = node[key]
    return node


def _login(user: Any) -> str:
    return user.get("login", "") if isinstance(user, dict) else ""


def repo_from_payload(payload: dict[str, Any]) -> Repo:
    """The repository of a webhook delivery, with the App installation when the delivery names one."""
    repository = _get(payload, "repository")
    installation = payload.get("installation") or {}
    return Repo(
        forge="github",
        full_name=_get(repository, "full_name"),
        id=repository.get("id"),
        installation_id=installation.get("id"),
        html_url=repository.get("html_url") or "",
        default_branch=repository.get("default_branch") or "main",
    )


def run_from_workflow_run(payload: dict[str, Any]) -> Run:
    """A ``workflow_run`` delivery as a :class:`Run`.

    ``change_numbers`` are the payload's ``pull_requests`` (empty for fork PRs: the adapter then looks
    the PR up by head branch and SHA); ``head_owner`` is the owner of the head repository (the fork).
    """
    wr = _get(payload, "workflow_run")
    run = run_from_api(wr, repo_from_payload(payload))
    # a run judged live is dated when it is judged (``created_at`` is that of its first attempt)
    name = run.name or (payload.get("workflow") or {}).get("name") or ""
    return replace(run, name=name, raw=wr, created_at=None)


def run_from_check_suite(payload: dict[str, Any]) -> Run | None:
    """A ``check_suite`` delivery as a :class:`Run`, or None for suites GitHub Actions made.

    Third-party suites carry no Actions run: the Run's ``id`` is the check suite id, its ``event`` is
    ``"check_suite"``, and its ``html_url`` is the head commit's checks page when the payload has no
    better one.
    """
    suite = _get(payload, "check_suite")
    app = suite.get("app") or {}
    if app.get("slug") == ACTIONS_APP_SLUG:
        return None
    repo = repo_from_payload(payload)
    sha = _get(suite, "head_sha")
    html_url = f"{repo.html_url}/commit/{sha}/checks" if repo.html_url else ""
    return Run(
        repo=repo,
        id=int(_get(suite, "id")),
        sha=sha,
        branch=suite.get("head_branch") or "",
        attempt=1,
        conclusion=suite.get("conclusion") or suite.get("status") or "",
        html_url=html_url,
        name=app.get("name") or app.get("slug") or "",
        event=CHECK_SUITE_EVENT,
        change_numbers=[int(pr["number"]) for pr in suite.get("pull_requests") or [] if pr.get("number")],
        head_owner=None,
        raw=suite,
    )


def repo_from_api(data: dict[str, Any], installation_id: int | None = None) -> Repo:
    """A repository of the API (``GET /repos/{owner}/{repo}``) as a :class:`Repo`."""
    return Repo(
        forge="github",
        full_name=_get(data, "full_name"),
        id=data.get("id"),
        installation_id=installation_id,
        html_url=data.get("html_url") or "",
        default_branch=data.get("default_branch") or "main",
    )


def run_from_api(data: dict[str, Any], repo: Repo) -> Run:
    """A workflow run of the API (``GET .../actions/runs``, and a ``workflow_run`` payload's run) as a
    :class:`Run` of ``repo``, with when it was created."""
    return Run(
        repo=repo,
        id=int(_get(data, "id")),
        sha=_get(data, "head_sha"),
        branch=data.get("head_branch") or "",
        attempt=int(data.get("run_attempt") or 1),
        conclusion=data.get("conclusion") or data.get("status") or "",
        html_url=data.get("html_url") or "",
        name=data.get("name") or "",
        event=data.get("event") or "",
        change_numbers=[int(pr["number"]) for pr in data.get("pull_requests") or [] if pr.get("number")],
        head_owner=_login((data.get("head_repository") or {}).get("owner")) or None,
        raw={},  # a listing holds hundreds of runs: nothing else of the answer is kept
        created_at=data.get("created_at"),
    )


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
        id=int(_get(data, "id")),
        body=data.get("body") or "",
        author=_login(data.get("user")),
        html_url=data.get("html_url") or "",
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
