"""GitLab webhook payloads and API answers → flakebot's forge types. Pure functions, no I/O.

Shapes follow GitLab's documented examples (``doc/user/project/integrations/webhook_events.md``):

* ``Pipeline Hook`` drives the main path: a *finished* pipeline (``failed`` or ``success``) becomes a
  :class:`~bot.forge.base.Run`. Running, pending, canceled, skipped and manual pipelines are ignored.
* ``Job Hook`` only records evidence (see :func:`job_from_job_hook`): the pipeline hook that follows
  carries every job of the pipeline, so acting on single jobs would do the work twice.
* ``Note Hook`` feeds chat-ops: only a *new* (``action == "create"``), non-system comment on a merge
  request is returned; edits fire the hook again and must not re-run a command.

Malformed payloads raise :class:`PayloadError` naming the missing or mistyped field, so the endpoint
can answer 400 with a clear reason; nothing is guessed.

The adapter's answers (python-gitlab's ``attributes``) are converted here too, as GitHub's are in
``github_payloads.py``: :func:`latest_jobs`, :func:`issue_from_api`, :func:`change_from_api`,
:func:`access_permission`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.forge.base import Change, Issue, Job, Permission, Repo, Run, repo_name_problem

# Pipeline statuses that end a pipeline and are worth a look. ``canceled`` is someone's decision,
# ``skipped``/``manual`` never ran: none of them says anything about flakiness.
FINISHED_PIPELINE_STATUSES = frozenset({"failed", "success"})
FINISHED_JOB_STATUSES = frozenset({"failed", "success"})


class PayloadError(ValueError):
    """A webhook payload that lacks a field flakebot needs, or has it with the wrong type."""


@dataclass(frozen=True)
class JobEvent:
    """What a ``Job Hook`` is worth recording.

    ``kind`` is ``"retry-passed"`` when a retried job (``retries_count`` > 0) finished ``success``: the
    same job on the same SHA failed before and passed now, strong evidence that the earlier failure was
    a flake. ``"failed"`` is a failed job (its ``failure_reason`` may point at infrastructure); the
    pipeline hook that follows is what triggers the analysis.
    """

    kind: Literal["retry-passed", "failed"]
    repo: Repo
    pipeline_id: int
    sha: str
    ref: str
    job: Job
    retries: int  # GitLab's retries_count: 0 for the first run, 1 for the first retry, ...


@dataclass(frozen=True)
class NoteEvent:
    """A new comment on a merge request: the input of chat-ops."""

    repo: Repo
    change_number: int  # the merge request's iid
    note_id: int
    body: str
    author_id: int
    author: str  # username
    html_url: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


# --- field access with clear errors -------------------------------------------------------------


def _field(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, Mapping):
        raise PayloadError(f"{where} must be a JSON object")
    if key not in obj or obj[key] is None:
        raise PayloadError(f"{where}.{key} is missing")
    value = obj[key]
    # bool is an int in Python; an id of ``true`` is still malformed
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise PayloadError(f"{where}.{key} has the wrong type (bool)")
    if not isinstance(value, kind):
        raise PayloadError(f"{where}.{key} has the wrong type ({type(value).__name__})")
    return value


def _optional(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    value = obj.get(key)
    if value is None or (isinstance(value, bool) and kind is not bool):
        return default
    return value if isinstance(value, kind) else default


def _object(payload: Any, kind: str) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise PayloadError(f"payload must be a JSON object, got {type(payload).__name__}")
    got = payload.get("object_kind")
    if got != kind:
        raise PayloadError(f"expected object_kind {kind!r}, got {got!r}")
    return payload


def repo_from_project(project: Any) -> Repo:
    """The :class:`Repo` of a payload's ``project`` object."""
    full_name = _field(project, "path_with_namespace", str, "project")
    problem = repo_name_problem("gitlab", full_name)
    if problem is not None:
        raise PayloadError(f"project.path_with_namespace: {problem}")
    return Repo(
        forge="gitlab",
        full_name=full_name,
        id=_field(project, "id", int, "project"),
        html_url=_optional(project, "web_url", str, ""),
        default_branch=_optional(project, "default_branch", str, "") or "main",
    )


# --- Pipeline Hook ------------------------------------------------------------------------------


def run_from_pipeline_hook(payload: Any) -> Run | None:
    """The finished pipeline of a ``Pipeline Hook``, or None when it is not finished.

    ``Run.attempt`` is always 1: GitLab has no pipeline attempt. Retrying a job re-opens the *same*
    pipeline (same id) and a new ``Pipeline Hook`` arrives when it finishes again; the attempts that
    matter are per job, counted by :meth:`GitLabForge.list_jobs` as ``Job.attempt`` (the payload's
    ``builds`` holds only the latest job of each name, so it cannot count them).

    ``Run.change_numbers`` holds the ``merge_request.iid`` when the payload names a merge request of
    the same project (merge request pipelines); otherwise the adapter looks the MR up by branch and SHA.
    """
    payload = _object(payload, "pipeline")
    attrs = _field(payload, "object_attributes", dict, "payload")
    status = _field(attrs, "status", str, "object_attributes")
    if status not in FINISHED_PIPELINE_STATUSES:
        return None
    repo = repo_from_project(_field(payload, "project", dict, "payload"))
    changes: list[int] = []
    mr = payload.get("merge_request")
    if isinstance(mr, Mapping):
        iid = _field(mr, "iid", int, "merge_request")
        target = _optional(mr, "target_project_id", int)
        # an MR iid only means something in its target project
        if target is None or target == repo.id:
            changes.append(iid)
    source = _optional(attrs, "source", str, "")
    return Run(
        repo=repo,
        id=_field(attrs, "id", int, "object_attributes"),
        sha=_field(attrs, "sha", str, "object_attributes"),
        branch=_field(attrs, "ref", str, "object_attributes"),
        attempt=1,
        conclusion=status,
        html_url=_optional(attrs, "url", str, ""),
        name=_optional(attrs, "name", str, "") or source,
        event=source,
        change_numbers=changes,
        raw=dict(payload),
    )


# --- Job Hook -----------------------------------------------------------------------------------


def job_from_job_hook(payload: Any) -> JobEvent | None:
    """What a ``Job Hook`` is worth recording, or None.

    * a retried job (``retries_count`` > 0) that finished ``success`` → ``"retry-passed"``;
    * a ``failed`` job → ``"failed"`` (its ``failure_reason`` shows whether the runner or the change
      failed; the pipeline hook still drives the analysis);
    * everything else (created, pending, running, canceled, a first-run success) → None.

    ``retries_count`` is missing on GitLab versions before 16.2 (15.6 behind a feature flag); without
    it a passing job cannot be told apart from a retry, so it is ignored.
    """
    payload = _object(payload, "build")
    status = _field(payload, "build_status", str, "payload")
    if status not in FINISHED_JOB_STATUSES:
        return None
    retries = _optional(payload, "retries_count", int, 0)
    if status == "success" and retries < 1:
        return None
    project = _field(payload, "project", dict, "payload")
    repo = repo_from_project(project)
    job_id = _field(payload, "build_id", int, "payload")
    web_url = f"{repo.html_url}/-/jobs/{job_id}" if repo.html_url else ""
    job = Job(
        id=job_id,
        name=_field(payload, "build_name", str, "payload"),
        conclusion=status,
        html_url=web_url,
        attempt=retries + 1,
        failure_reason=_optional(payload, "build_failure_reason", str) if status == "failed" else None,
        started_at=_optional(payload, "build_started_at_iso", str)
        or _optional(payload, "build_started_at", str),
        completed_at=_optional(payload, "build_finished_at_iso", str)
        or _optional(payload, "build_finished_at", str),
        raw=dict(payload),
    )
    return JobEvent(
        kind="failed" if status == "failed" else "retry-passed",
        repo=repo,
        pipeline_id=_field(payload, "pipeline_id", int, "payload"),
        sha=_field(payload, "sha", str, "payload"),
        ref=_optional(payload, "ref", str, ""),
        job=job,
        retries=retries,
    )


# --- Note Hook ----------------------------------------------------------------------------------


def note_from_note_hook(payload: Any) -> NoteEvent | None:
    """A new, human comment on a merge request, or None (edits, system notes, other targets).

    ``object_attributes.action`` exists since GitLab 16.11, which also started firing the hook on
    edits; older versions fire on create only, so a missing ``action`` counts as ``create``.
    """
    payload = _object(payload, "note")
    attrs = _field(payload, "object_attributes", dict, "payload")
    if attrs.get("noteable_type") != "MergeRequest":
        return None
    if attrs.get("action", "create") != "create" or attrs.get("system") is True:
        return None
    mr = _field(payload, "merge_request", dict, "payload")
    user = _field(payload, "user", dict, "payload")
    return NoteEvent(
        repo=repo_from_project(_field(payload, "project", dict, "payload")),
        change_number=_field(mr, "iid", int, "merge_request"),
        note_id=_field(attrs, "id", int, "object_attributes"),
        body=_field(attrs, "note", str, "object_attributes"),
        author_id=_field(attrs, "author_id", int, "object_attributes"),
        author=_field(user, "username", str, "user"),
        html_url=_optional(attrs, "url", str, ""),
        raw=dict(payload),
    )


# --- what is worth queueing ----------------------------------------------------------------------

MERGE_REQUEST_ACTIONS = frozenset({"merge"})  # a merged MR's failures are flake evidence (hooks.outcomes)


def ignore_reason(event: str, payload: Any) -> str | None:
    """Why a delivery of a known ``event`` needs no work (answered at once, never queued), or None.

    GitLab sends a Pipeline Hook for every status change and a Job Hook for every job, so most
    deliveries are dropped here: unfinished pipelines, jobs other than a retry that passed (the
    Pipeline Hook that follows covers failed jobs), edited or system notes and notes on anything but a
    merge request, merge request events other than a merge. Raises :class:`PayloadError` when the
    payload is malformed, so the endpoint refuses it with 400 instead of queueing what cannot work.
    """
    if event == "Pipeline Hook":
        if run_from_pipeline_hook(payload) is None:
            return f"pipeline {payload['object_attributes']['status']}: only finished pipelines are analysed"
    elif event == "Job Hook":
        job = job_from_job_hook(payload)
        if job is None or job.kind != "retry-passed":
            return f"job {payload['build_status']}: only a retried job that passed is recorded"
    elif event == "Note Hook":
        if note_from_note_hook(payload) is None:
            return "not a new comment on a merge request"
    elif event == "Merge Request Hook" and merged_head(payload) is None:
        return f"merge request {payload['object_attributes'].get('action')}: only merges are recorded"
    return None


def merged_head(payload: Any) -> tuple[Repo, int, str] | None:
    """(project, MR iid, head SHA) of a ``Merge Request Hook`` whose action is a merge, else None."""
    attrs = _field(_object(payload, "merge_request"), "object_attributes", dict, "payload")
    if _optional(attrs, "action", str) not in MERGE_REQUEST_ACTIONS:
        return None
    commit = _field(attrs, "last_commit", dict, "object_attributes")
    return (
        repo_from_project(_field(payload, "project", dict, "payload")),
        _field(attrs, "iid", int, "object_attributes"),
        _field(commit, "id", str, "object_attributes.last_commit"),
    )


# --- deduplication ------------------------------------------------------------------------------


def delivery_key(headers: Mapping[str, str], payload: Any) -> str:
    """A key that is the same for every delivery of one event, to deduplicate retried deliveries.

    GitLab's ``Idempotency-Key`` header (17.4+) stays the same when a delivery is retried; older
    versions lack it, so the event's own ids stand in: the pipeline or job id with its status and
    finish time (a retried job re-finishes the same pipeline: a new event), or the note id.
    ``X-Gitlab-Event-UUID`` is *not* used: GitLab shares it between the hooks of one event chain.
    ``headers`` must be case-insensitive (aiohttp's and requests' are).
    """
    key = headers.get("Idempotency-Key")
    if key:
        return f"gitlab:{key.strip()}"
    if not isinstance(payload, Mapping):
        raise PayloadError(f"payload must be a JSON object, got {type(payload).__name__}")
    kind = payload.get("object_kind")
    project = payload.get("project") if isinstance(payload.get("project"), Mapping) else {}
    project_id = project.get("id", payload.get("project_id"))
    attrs = payload.get("object_attributes") if isinstance(payload.get("object_attributes"), Mapping) else {}
    if kind == "pipeline":
        parts = [attrs.get("id"), attrs.get("status"), attrs.get("finished_at")]
    elif kind == "build":
        parts = [payload.get("build_id"), payload.get("build_status"), payload.get("build_finished_at")]
    elif kind in ("note", "merge_request"):
        parts = [attrs.get("id"), attrs.get("action", "create"), attrs.get("updated_at")]
    else:
        raise PayloadError(f"no delivery key for object_kind {kind!r}")
    if parts[0] is None:
        raise PayloadError(f"no id in the {kind} payload")
    return ":".join(["gitlab", str(kind), str(project_id), *("" if p is None else str(p) for p in parts)])


# --- API answers (python-gitlab ``attributes``) ---------------------------------------------------

# GitLab access levels (doc/api/members.md)
MAINTAINER, DEVELOPER, GUEST = 40, 30, 10


def access_permission(level: int | None) -> Permission:
    """GitLab access level → flakebot permission (≥ 40 admin, 30 write, 10–29 read, else none)."""
    if level is None:
        return "none"
    if level >= MAINTAINER:
        return "admin"
    if level >= DEVELOPER:
        return "write"
    if level >= GUEST:
        return "read"
    return "none"


def latest_jobs(jobs: Iterable[Mapping[str, Any]]) -> list[Job]:
    """The newest job of each name, ``attempt`` = how many jobs of that name the pipeline has.

    ``jobs`` is the pipeline's job list *with* retried jobs (``include_retried=true``); a retry is a
    new job with a higher id and the same name. Sorted by name for a stable order.
    """
    newest = {job.name: job for job in all_jobs(jobs)}  # oldest first: the last of each name stays
    return [newest[name] for name in sorted(newest)]


def all_jobs(jobs: Iterable[Mapping[str, Any]]) -> list[Job]:
    """Every job of a pipeline (``include_retried=true``), oldest first, each with its ``attempt``: the
    n-th job of a name (by id) is that job's attempt n."""
    seen: dict[str, int] = {}
    result = []
    for job in sorted(jobs, key=lambda j: int(j["id"])):
        name = str(job["name"])
        seen[name] = seen.get(name, 0) + 1
        status = str(job.get("status") or "")
        result.append(
            Job(
                id=int(job["id"]),
                name=name,
                conclusion=status,
                html_url=str(job.get("web_url") or ""),
                attempt=seen[name],
                failure_reason=job.get("failure_reason") if status == "failed" else None,
                started_at=job.get("started_at"),
                completed_at=job.get("finished_at"),
                raw=dict(job),
            )
        )
    return result


def run_from_pipeline(data: Mapping[str, Any], repo: Repo) -> Run | None:
    """A pipeline of the API (``GET /projects/:id/pipelines``) as a :class:`Run`, or None when it did not
    finish failed or successful (as :func:`run_from_pipeline_hook`)."""
    status = str(data.get("status") or "")
    if status not in FINISHED_PIPELINE_STATUSES:
        return None
    source = str(data.get("source") or "")
    return Run(
        repo=repo,
        id=int(data["id"]),
        sha=str(data["sha"]),
        branch=str(data.get("ref") or ""),
        attempt=1,
        conclusion=status,
        html_url=str(data.get("web_url") or ""),
        name=str(data.get("name") or "") or source,
        event=source,
        created_at=data.get("created_at"),
    )


def issue_from_api(data: Mapping[str, Any]) -> Issue:
    """An issue of the API (``GET /projects/:id/issues``) as an :class:`Issue`."""
    closed_by = data.get("closed_by")
    return Issue(
        number=int(data["iid"]),
        title=str(data.get("title") or ""),
        state="closed" if data.get("state") == "closed" else "open",
        html_url=str(data.get("web_url") or ""),
        labels=[str(label) for label in data.get("labels") or []],
        body=str(data.get("description") or ""),
        closed_by=closed_by.get("username") if isinstance(closed_by, Mapping) else None,
        closed_at=data.get("closed_at"),
        assignees=[
            str(u["username"])
            for u in data.get("assignees") or []
            if isinstance(u, Mapping) and u.get("username")
        ],
    )


def change_from_api(data: Mapping[str, Any], run: Run | None = None) -> Change:
    """An MR as a :class:`Change`. A merged-results pipeline runs on a merge commit, not on the MR's
    head: when it is the MR's head pipeline (``head_pipeline``, single-MR answers only), the MR counts
    as being at the pipeline's SHA, so the pipeline's note is not taken for one about an older commit."""
    state = str(data.get("state") or "")
    head_sha = str(data.get("sha") or "")
    head_pipeline = data.get("head_pipeline")
    if run is not None and isinstance(head_pipeline, Mapping) and head_pipeline.get("id") == run.id:
        head_sha = run.sha
    return Change(
        number=int(data["iid"]),
        html_url=str(data.get("web_url") or ""),
        head_sha=head_sha,
        head_ref=str(data.get("source_branch") or ""),
        state="open" if state == "opened" else state,
    )
