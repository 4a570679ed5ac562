"""A fake GitLab on loopback: the REST routes python-gitlab really calls for flakebot, under /api/v4.

Answers are shaped like the examples of GitLab's API docs (``doc/api/jobs.md``, ``pipelines.md``,
``notes.md``, ``issues.md``, ``members.md``, ``repository_files.md``, ``merge_requests.md``,
``emoji_reactions.md``, ``labels.md``, ``users.md`` in gitlabhq/gitlabhq). Lists are paginated like
GitLab (``page``/``per_page``, ``X-Page``/``X-Next-Page``/``X-Total`` headers and a ``Link`` header).

* State lives in memory and is seeded by the test (``add_project``, ``add_pipeline``, ``add_job``, ...
  or ``seed_from_pipeline_hook`` from a real Pipeline Hook payload).
* Every request is recorded (``requests``, ``calls(method, path_regex)``); requests without the right
  ``PRIVATE-TOKEN`` get 401.
* Faults per route: ``fail`` (an HTTP status N times), ``rate_limit`` (429 with ``Retry-After``),
  ``slow`` (answer after a delay), ``drop`` (close the connection without an answer) and ``truncate``
  (send part of a body, then close).
* Unknown routes answer 404 and are recorded in ``violations``; faults that never fired are reported
  too. The ``fake_gitlab`` fixture fails a test that leaves either.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode

from aiohttp import web

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "gitlab"
DEFAULT_TOKEN = "glpat-FAKEfakeFAKEfake0123"
DEFAULT_WEBHOOK_SECRET = "fake-webhook-secret-0123456789"
AUTO_LABEL_COLOR = "#6699cc"  # GitLab's colour for labels it creates with an issue
RETRYABLE = {"failed", "canceled", "success"}

EMPTY_TEST_REPORT = {
    "total_time": 0,
    "total_count": 0,
    "success_count": 0,
    "failed_count": 0,
    "skipped_count": 0,
    "error_count": 0,
    "test_suites": [],
}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _webhook_time(value: str | None) -> str | None:
    """An API time ("2024-06-01T12:30:00.000Z") as a Pipeline Hook writes it ("2024-06-01 12:30:00 UTC")."""
    if not value:
        return None
    return value.replace("T", " ", 1).split(".")[0].rstrip("Z") + " UTC"


def hook_time(value: str | None) -> str | None:
    """A webhook time ("2016-08-12 15:26:12 UTC") as the API writes it ("2016-08-12T15:26:12.000Z")."""
    if not value:
        return None
    return value.replace(" UTC", ".000Z").replace(" ", "T", 1)


@dataclass
class Recorded:
    method: str
    path: str  # raw (percent-encoded) path after /api/v4
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int = 0


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    kind: str  # status | rate_limit | slow | drop | truncate
    times: int
    status: int = 500
    body: Any = None
    retry_after: str | None = None
    delay: float = 0.0
    after_bytes: int = 0
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        return self.fired < self.times and self.method == method and bool(self.pattern.fullmatch(path))


@dataclass
class Project:
    data: dict[str, Any]
    pipelines: dict[int, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[int, dict[str, Any]] = field(default_factory=dict)
    traces: dict[int, bytes] = field(default_factory=dict)
    test_reports: dict[int, bytes] = field(default_factory=dict)
    mrs: dict[int, dict[str, Any]] = field(default_factory=dict)
    mr_notes: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    awards: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # note id -> emoji
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)
    issue_notes: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    labels: list[dict[str, Any]] = field(default_factory=list)
    members: dict[int, int] = field(default_factory=dict)  # user id -> access level
    files: dict[tuple[str, str | None], bytes] = field(default_factory=dict)

    @property
    def id(self) -> int:
        return self.data["id"]


class Problem(Exception):
    """An error answer: status and GitLab-style ``message``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


Handler = Callable[..., Awaitable[web.StreamResponse] | web.StreamResponse | Any]


class FakeGitLab:
    def __init__(self, token: str = DEFAULT_TOKEN, webhook_secret: str = DEFAULT_WEBHOOK_SECRET):
        self.token = token
        self.webhook_secret = webhook_secret
        self.url = ""
        self.projects: dict[int, Project] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self.faults: list[Fault] = []
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests answered at the same time
        self.max_per_page = 100  # GitLab's cap on per_page; lower it to make tests page
        self._ids = itertools.count(1000)
        self._hook_clock = itertools.count(0)  # minutes after 2024-06-01 12:00 UTC, one per hook built
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self.bot = self.add_user("flakebot-bot", name="flakebot", bot=True)
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = [
            (m, re.compile(p), h)
            for m, p, h in [
                ("GET", r"/user", self._get_user),
                ("GET", r"/users", self._list_users),
                ("GET", r"/projects/(?P<pid>[^/]+)", self._get_project),
                ("GET", r"/projects/(?P<pid>[^/]+)/pipelines", self._list_pipelines),
                ("GET", r"/projects/(?P<pid>[^/]+)/pipelines/(?P<pipeline>\d+)/jobs", self._list_jobs),
                (
                    "GET",
                    r"/projects/(?P<pid>[^/]+)/pipelines/(?P<pipeline>\d+)/test_report",
                    self._test_report,
                ),
                ("GET", r"/projects/(?P<pid>[^/]+)/jobs/(?P<job>\d+)/trace", self._trace),
                ("POST", r"/projects/(?P<pid>[^/]+)/jobs/(?P<job>\d+)/retry", self._retry_job),
                ("GET", r"/projects/(?P<pid>[^/]+)/merge_requests", self._list_mrs),
                ("GET", r"/projects/(?P<pid>[^/]+)/merge_requests/(?P<iid>\d+)", self._get_mr),
                ("GET", r"/projects/(?P<pid>[^/]+)/merge_requests/(?P<iid>\d+)/notes", self._list_mr_notes),
                ("POST", r"/projects/(?P<pid>[^/]+)/merge_requests/(?P<iid>\d+)/notes", self._create_mr_note),
                (
                    "PUT",
                    r"/projects/(?P<pid>[^/]+)/merge_requests/(?P<iid>\d+)/notes/(?P<note>\d+)",
                    self._update_mr_note,
                ),
                (
                    "POST",
                    r"/projects/(?P<pid>[^/]+)/merge_requests/(?P<iid>\d+)/notes/(?P<note>\d+)/award_emoji",
                    self._award_emoji,
                ),
                ("GET", r"/projects/(?P<pid>[^/]+)/repository/files/(?P<path>[^/]+)/raw", self._raw_file),
                ("GET", r"/projects/(?P<pid>[^/]+)/labels", self._list_labels),
                ("POST", r"/projects/(?P<pid>[^/]+)/labels", self._create_label),
                ("GET", r"/projects/(?P<pid>[^/]+)/issues", self._list_issues),
                ("POST", r"/projects/(?P<pid>[^/]+)/issues", self._create_issue),
                ("GET", r"/projects/(?P<pid>[^/]+)/issues/(?P<iid>\d+)", self._get_issue),
                ("PUT", r"/projects/(?P<pid>[^/]+)/issues/(?P<iid>\d+)", self._update_issue),
                ("POST", r"/projects/(?P<pid>[^/]+)/issues/(?P<iid>\d+)/notes", self._create_issue_note),
                ("GET", r"/projects/(?P<pid>[^/]+)/members/all/(?P<user>\d+)", self._get_member),
            ]
        ]

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        for user in self.users.values():
            user["web_url"] = f"{self.url}/{user['username']}"
        for project in self.projects.values():
            self._fix_urls(project)

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def problems(self) -> list[str]:
        """Unknown routes hit and faults that never fired: a test that leaves any is wrong."""
        unused = [
            f"fault {f.kind} on {f.method} {f.pattern.pattern} fired {f.fired} of {f.times} times"
            for f in self.faults
            if f.fired < f.times
        ]
        return [*self.violations, *unused]

    # --- seeding ------------------------------------------------------------------------------

    def next_id(self) -> int:
        return next(self._ids)

    def add_user(self, username: str, *, id: int | None = None, name: str | None = None, bot: bool = False):
        user_id = id if id is not None else self.next_id()
        user = {
            "id": user_id,
            "username": username,
            "name": name or username.title(),
            "state": "active",
            "locked": False,
            "avatar_url": f"https://www.gravatar.com/avatar/{user_id:032x}?s=80&d=identicon",
            "web_url": f"{self.url}/{username}",
            "bot": bot,
        }
        self.users[user_id] = user
        return user

    def add_project(
        self, path_with_namespace: str, *, id: int | None = None, default_branch: str = "main"
    ) -> Project:
        project_id = id if id is not None else self.next_id()
        namespace, _, name = path_with_namespace.rpartition("/")
        project = Project(
            data={
                "id": project_id,
                "name": name,
                "path": name,
                "path_with_namespace": path_with_namespace,
                "namespace": namespace,
                "default_branch": default_branch,
                "web_url": "",
            }
        )
        self.projects[project_id] = project
        self._fix_urls(project)
        return project

    def _fix_urls(self, project: Project) -> None:
        project.data["web_url"] = f"{self.url}/{project.data['path_with_namespace']}"
        for job in project.jobs.values():
            job["web_url"] = f"{project.data['web_url']}/-/jobs/{job['id']}"
        for pipeline in project.pipelines.values():
            pipeline["web_url"] = f"{project.data['web_url']}/-/pipelines/{pipeline['id']}"
        for mr in project.mrs.values():
            mr["web_url"] = f"{project.data['web_url']}/-/merge_requests/{mr['iid']}"
        for issue in project.issues.values():
            issue["web_url"] = f"{project.data['web_url']}/-/issues/{issue['iid']}"

    def add_pipeline(
        self,
        project: Project,
        *,
        sha: str,
        ref: str,
        id: int | None = None,
        status: str = "failed",
        source: str = "push",
        created_at: str | None = None,
    ) -> dict[str, Any]:
        pipeline_id = id if id is not None else self.next_id()
        pipeline = {
            "id": pipeline_id,
            "iid": len(project.pipelines) + 1,
            "project_id": project.id,
            "sha": sha,
            "ref": ref,
            "status": status,
            "source": source,
            "created_at": created_at or now(),
            "updated_at": created_at or now(),
            "web_url": f"{project.data['web_url']}/-/pipelines/{pipeline_id}",
        }
        project.pipelines[pipeline_id] = pipeline
        return pipeline

    def add_job(
        self,
        project: Project,
        pipeline: dict[str, Any],
        name: str,
        *,
        status: str = "failed",
        failure_reason: str | None = None,
        trace: bytes = b"",
        stage: str = "test",
        id: int | None = None,
        retried: bool = False,
    ) -> dict[str, Any]:
        """A job of the pipeline; ``retried=True`` for an earlier attempt that a newer job replaced."""
        job_id = id if id is not None else self.next_id()
        job = {
            "id": job_id,
            "name": name,
            "stage": stage,
            "status": status,
            "failure_reason": failure_reason if status == "failed" else None,
            "ref": pipeline["ref"],
            "tag": False,
            "coverage": None,
            "allow_failure": False,
            "created_at": "2015-12-24T15:51:21.802Z",
            "started_at": "2015-12-24T17:54:27.722Z",
            "finished_at": "2015-12-24T17:54:31.198Z",
            "duration": 3.476,
            "queued_duration": 0.010,
            "commit": {"id": pipeline["sha"], "short_id": pipeline["sha"][:8], "title": "Test the CI"},
            "pipeline": {k: pipeline[k] for k in ("id", "project_id", "ref", "sha", "status")},
            "web_url": f"{project.data['web_url']}/-/jobs/{job_id}",
            "artifacts": [],
            "runner": None,
            "tag_list": ["docker"],
            "user": self._user_brief(self.bot),
            "retried": retried,
        }
        project.jobs[job_id] = job
        project.traces[job_id] = trace
        return job

    def set_test_report(self, project: Project, pipeline_id: int, report: bytes | dict[str, Any]) -> None:
        project.test_reports[pipeline_id] = (
            report if isinstance(report, bytes) else json.dumps(report).encode()
        )

    def add_merge_request(
        self,
        project: Project,
        *,
        source_branch: str,
        sha: str,
        iid: int | None = None,
        state: str = "opened",
        target_branch: str = "main",
        title: str = "Test",
    ) -> dict[str, Any]:
        iid = iid if iid is not None else len(project.mrs) + 1
        mr = {
            "id": self.next_id(),
            "iid": iid,
            "project_id": project.id,
            "title": title,
            "description": "",
            "state": state,
            "created_at": "2017-04-29T08:46:00Z",
            "updated_at": "2017-04-29T08:46:00Z",
            "target_branch": target_branch,
            "source_branch": source_branch,
            "source_project_id": project.id,
            "target_project_id": project.id,
            "sha": sha,
            "draft": False,
            "detailed_merge_status": "mergeable",
            "author": self._user_brief(self.bot),
            "web_url": f"{project.data['web_url']}/-/merge_requests/{iid}",
            "head_pipeline": None,  # in single-MR answers only (set_head_pipeline)
        }
        project.mrs[iid] = mr
        project.mr_notes.setdefault(iid, [])
        return mr

    def set_head_pipeline(self, project: Project, mr_iid: int, pipeline: dict[str, Any]) -> None:
        """The MR's latest pipeline, as ``head_pipeline`` of ``GET .../merge_requests/:iid`` shows it."""
        keys = (
            "id",
            "iid",
            "project_id",
            "sha",
            "ref",
            "status",
            "source",
            "created_at",
            "updated_at",
            "web_url",
        )
        project.mrs[mr_iid]["head_pipeline"] = {k: pipeline[k] for k in keys}

    def add_note(self, project: Project, mr_iid: int, body: str, *, author: dict[str, Any]) -> dict[str, Any]:
        note = self._note(project, "MergeRequest", project.mrs[mr_iid], body, author)
        project.mr_notes.setdefault(mr_iid, []).append(note)
        return note

    def add_issue(
        self,
        project: Project,
        title: str,
        *,
        labels: list[str] | tuple[str, ...] = (),
        state: str = "opened",
        description: str = "",
        closed_by: dict[str, Any] | None = None,
        created_at: str | None = None,
    ) -> dict[str, Any]:
        iid = len(project.issues) + 1
        issue = {
            "id": self.next_id(),
            "iid": iid,
            "project_id": project.id,
            "title": title,
            "description": description,
            "state": state,
            "created_at": created_at or now(),
            "updated_at": created_at or now(),
            "closed_at": now() if state == "closed" else None,
            "closed_by": self._user_brief(closed_by) if closed_by and state == "closed" else None,
            "labels": list(labels),
            "assignees": [],
            "assignee": None,
            "author": self._user_brief(self.bot),
            "type": "ISSUE",
            "confidential": False,
            "web_url": f"{project.data['web_url']}/-/issues/{iid}",
        }
        project.issues[iid] = issue
        project.issue_notes.setdefault(iid, [])
        for name in labels:
            self._label(project, name)
        return issue

    def add_label(self, project: Project, name: str, *, color: str = "#428BCA", group: bool = False):
        label = self._label(project, name, color=color)
        label["is_project_label"] = not group
        return label

    def add_member(self, project: Project, user: dict[str, Any], access_level: int) -> None:
        project.members[user["id"]] = access_level

    def add_file(self, project: Project, path: str, content: bytes, *, ref: str | None = None) -> None:
        project.files[(path, ref)] = content

    def seed_from_pipeline_hook(
        self,
        payload: dict[str, Any],
        *,
        traces: dict[str, bytes] | None = None,
        failure_reasons: dict[str, str] | None = None,
    ) -> Project:
        """State matching a real Pipeline Hook payload: its project, pipeline, jobs (``builds``) and MR."""
        attrs, builds = payload["object_attributes"], payload.get("builds") or []
        project = self.projects.get(payload["project"]["id"]) or self.add_project(
            payload["project"]["path_with_namespace"], id=payload["project"]["id"]
        )
        pipeline = self.add_pipeline(
            project,
            sha=attrs["sha"],
            ref=attrs["ref"],
            id=attrs["id"],
            status=attrs["status"],
            source=attrs["source"],
        )
        for build in builds:
            name = build["name"]
            reason = (failure_reasons or {}).get(name, build.get("failure_reason"))
            job = self.add_job(
                project,
                pipeline,
                name,
                status=build["status"],
                failure_reason=reason,
                trace=(traces or {}).get(name, b""),
                stage=build["stage"],
                id=build["id"],
            )
            job.update(started_at=hook_time(build["started_at"]), finished_at=hook_time(build["finished_at"]))
        mr = payload.get("merge_request")
        if mr:
            self.add_merge_request(
                project, source_branch=mr["source_branch"], sha=attrs["sha"], iid=mr["iid"], state=mr["state"]
            )
        return project

    # --- faults ---------------------------------------------------------------------------------

    def _fault(self, method: str, path: str, kind: str, times: int, **kwargs: Any) -> Fault:
        fault = Fault(method.upper(), re.compile(path), kind, times, **kwargs)
        self.faults.append(fault)
        return fault

    def fail(self, method: str, path: str, *, status: int = 500, times: int = 1, body: Any = None) -> Fault:
        body = body if body is not None else {"message": f"{status} Internal Server Error"}
        return self._fault(method, path, "status", times, status=status, body=body)

    def rate_limit(self, method: str, path: str, *, retry_after: str | None = "1", times: int = 1) -> Fault:
        return self._fault(method, path, "rate_limit", times, status=429, retry_after=retry_after)

    def slow(self, method: str, path: str, *, delay: float, times: int = 1) -> Fault:
        return self._fault(method, path, "slow", times, delay=delay)

    def drop(self, method: str, path: str, *, times: int = 1) -> Fault:
        return self._fault(method, path, "drop", times)

    def truncate(self, method: str, path: str, *, after_bytes: int, times: int = 1) -> Fault:
        return self._fault(method, path, "truncate", times, after_bytes=after_bytes)

    # --- inspection -----------------------------------------------------------------------------

    def calls(self, method: str, path: str) -> list[Recorded]:
        pattern = re.compile(path)
        return [r for r in self.requests if r.method == method.upper() and pattern.fullmatch(r.path)]

    def project(self, id: int) -> Project:
        return self.projects[id]

    def finish_job(
        self,
        project: Project,
        job_id: int,
        status: str,
        *,
        trace: bytes = b"",
        failure_reason: str | None = None,
    ) -> dict[str, Any]:
        """A job (a retry the bot asked for, say) ran to the end with ``status`` and this trace."""
        job = project.jobs[job_id]
        job.update(
            status=status,
            failure_reason=failure_reason if status == "failed" else None,
            started_at="2024-06-01T12:30:00.000Z",
            finished_at="2024-06-01T12:31:00.000Z",
            duration=60.0,
        )
        project.traces[job_id] = trace
        return job

    def jobs_of(self, project: Project, pipeline_id: int, *, latest: bool = True) -> list[dict[str, Any]]:
        """The pipeline's jobs, oldest first; only the newest of each name when ``latest``."""
        jobs = sorted(
            (j for j in project.jobs.values() if j["pipeline"]["id"] == pipeline_id), key=lambda j: j["id"]
        )
        return [j for j in jobs if not j["retried"]] if latest else jobs

    # --- webhook payloads built from the state, in the shape of GitLab's documented examples ------

    def _hook_time(self) -> str:
        minutes = next(self._hook_clock)
        return f"2024-06-01 {12 + minutes // 60:02d}:{minutes % 60:02d}:00 UTC"

    def _hook_project(self, project: Project) -> dict[str, Any]:
        data = project.data
        return {
            "id": project.id,
            "name": data["name"],
            "description": "",
            "web_url": data["web_url"],
            "avatar_url": None,
            "git_ssh_url": f"git@127.0.0.1:{data['path_with_namespace']}.git",
            "git_http_url": f"{data['web_url']}.git",
            "namespace": data["namespace"],
            "visibility_level": 20,
            "path_with_namespace": data["path_with_namespace"],
            "default_branch": data["default_branch"],
        }

    def pipeline_hook(
        self, project: Project, pipeline_id: int, *, merge_request: int | None = None
    ) -> dict[str, Any]:
        """The Pipeline Hook GitLab sends for the pipeline as it is now: the documented example
        (``pipeline_success_mr.json``) with this pipeline, its latest jobs (``builds``), a new
        ``finished_at`` each call, and the merge request ``merge_request`` (an iid) when given."""
        payload = load_webhook("pipeline_success_mr")
        pipeline = project.pipelines[pipeline_id]
        template = payload["builds"][1]
        payload.pop("source_pipeline")  # only multi-project pipelines have one
        payload["object_attributes"].update(
            id=pipeline["id"],
            iid=pipeline["iid"],
            name=None,  # set only by a workflow:name in .gitlab-ci.yml
            ref=pipeline["ref"],
            sha=pipeline["sha"],
            before_sha=pipeline["sha"],
            source=pipeline["source"],
            status=pipeline["status"],
            finished_at=self._hook_time(),
            url=pipeline["web_url"],
        )
        payload["project"] = self._hook_project(project)
        payload["commit"].update(
            id=pipeline["sha"], url=f"{project.data['web_url']}/-/commit/{pipeline['sha']}"
        )
        if merge_request is None:
            payload["merge_request"] = None
        else:
            mr = project.mrs[merge_request]
            payload["merge_request"].update(
                id=mr["id"],
                iid=mr["iid"],
                title=mr["title"],
                source_branch=mr["source_branch"],
                source_project_id=project.id,
                target_branch=mr["target_branch"],
                target_project_id=project.id,
                state=mr["state"],
                url=mr["web_url"],
            )
        payload["builds"] = [
            {
                **template,
                "id": job["id"],
                "stage": job["stage"],
                "name": job["name"],
                "status": job["status"],
                "started_at": _webhook_time(job["started_at"]),
                "finished_at": _webhook_time(job["finished_at"]),
                "failure_reason": job["failure_reason"],
                "allow_failure": job["allow_failure"],
            }
            for job in reversed(self.jobs_of(project, pipeline_id))
        ]
        return payload

    def job_hook(self, project: Project, job_id: int) -> dict[str, Any]:
        """The Job Hook GitLab sends for the job as it is now: the documented example
        (``job_failed.json``) with this job, its pipeline and ``retries_count`` (earlier jobs of the
        same name in the pipeline)."""
        payload = load_webhook("job_failed")
        job = project.jobs[job_id]
        pipeline = project.pipelines[job["pipeline"]["id"]]
        earlier = [j for j in self.jobs_of(project, pipeline["id"], latest=False) if j["name"] == job["name"]]
        payload.pop("source_pipeline")
        payload.update(
            ref=pipeline["ref"],
            sha=pipeline["sha"],
            before_sha=pipeline["sha"],
            build_id=job["id"],
            build_name=job["name"],
            build_stage=job["stage"],
            build_status=job["status"],
            build_started_at=job["started_at"],
            build_started_at_iso=job["started_at"],
            build_finished_at=job["finished_at"],
            build_finished_at_iso=job["finished_at"],
            build_failure_reason=job["failure_reason"] or "unknown_failure",
            build_allow_failure=job["allow_failure"],
            retries_count=sum(1 for j in earlier if j["id"] < job["id"]),
            pipeline_id=pipeline["id"],
            project_id=project.id,
            project_name=project.data["path_with_namespace"],
            project=self._hook_project(project),
        )
        payload["commit"].update(id=pipeline["id"], sha=pipeline["sha"], status=pipeline["status"])
        return payload

    # --- webhook deliveries -----------------------------------------------------------------------

    def delivery(
        self,
        event: str,
        payload: dict[str, Any] | bytes,
        *,
        token: str | None = None,
        idempotency_key: str | None = None,
        event_uuid: str | None = None,
        with_idempotency_key: bool = True,
    ) -> tuple[dict[str, str], bytes]:
        """Headers and body of a webhook delivery as GitLab sends it (``X-Gitlab-*``, ``Idempotency-Key``;
        ``with_idempotency_key=False`` as GitLab before 17.4 sends it)."""
        return gitlab_delivery(
            event,
            payload,
            token=self.webhook_secret if token is None else token,
            idempotency_key=idempotency_key,
            event_uuid=event_uuid,
            instance=self.url or "https://gitlab.example.com",
            with_idempotency_key=with_idempotency_key,
        )

    # --- dispatch -------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = request.rel_url.raw_path
        if not raw.startswith("/api/v4/"):
            self.violations.append(f"{request.method} {raw}: not under /api/v4")
            return web.json_response({"message": "404 Not Found"}, status=404)
        path = raw[len("/api/v4") :]
        body: Any = None
        if request.can_read_body:
            data = await request.read()
            if request.content_type == "application/json":
                try:
                    body = json.loads(data)
                except ValueError:
                    return web.json_response({"error": "invalid JSON body"}, status=400)
            else:
                body = dict((await request.post()).items()) if data else None
        record = Recorded(
            request.method,
            path,
            {k: request.query.getall(k) for k in request.query},
            {k: v for k, v in request.headers.items() if k.lower() not in {"private-token"}},
            body,
        )
        record.headers["PRIVATE-TOKEN-present"] = str("PRIVATE-TOKEN" in request.headers)
        self.requests.append(record)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response = await self._answer(request, path, body)
        finally:
            self.in_flight -= 1
        record.status = response.status
        return response

    async def _answer(self, request: web.Request, path: str, body: Any) -> web.StreamResponse:
        fault = next((f for f in self.faults if f.matches(request.method, path)), None)
        if fault is not None:
            fault.fired += 1
            if fault.kind == "status":
                return web.json_response(fault.body, status=fault.status)
            if fault.kind == "rate_limit":
                headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                headers["RateLimit-Limit"] = "600"
                return web.json_response({"message": "Retry later"}, status=429, headers=headers)
            if fault.kind == "drop":
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)
            if fault.kind == "slow":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), fault.delay)
        if request.headers.get("PRIVATE-TOKEN") != self.token:
            return web.json_response({"message": "401 Unauthorized"}, status=401)
        route = next(
            (
                (handler, m)
                for method, pattern, handler in self._routes
                if method == request.method and (m := pattern.fullmatch(path))
            ),
            None,
        )
        if route is None:
            self.violations.append(f"{request.method} {path}: no such route in the fake")
            return web.json_response({"message": "404 Not Found"}, status=404)
        handler, match = route
        params = dict(match.groupdict())
        try:
            if "pid" in params:
                params["project"] = self._find_project(params.pop("pid"))
            result = handler(request, body=body, **params)
            if asyncio.iscoroutine(result):
                result = await result
        except Problem as problem:
            return web.json_response({"message": problem.message}, status=problem.status)
        if isinstance(result, web.StreamResponse):
            if fault is not None and fault.kind == "truncate":
                return await self._truncated(request, result, fault.after_bytes)
            return result
        raise AssertionError(f"handler for {path} returned {type(result).__name__}")

    async def _truncated(
        self, request: web.Request, full: web.StreamResponse, after: int
    ) -> web.StreamResponse:
        assert isinstance(full, web.Response) and full.body is not None
        data = bytes(full.body)  # type: ignore[arg-type]
        response = web.StreamResponse(status=full.status, headers={"Content-Type": full.content_type})
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[:after])
        assert request.transport is not None
        request.transport.close()
        return response

    def _find_project(self, raw_id: str) -> Project:
        ident = unquote(raw_id)
        if ident.isdigit() and int(ident) in self.projects:
            return self.projects[int(ident)]
        for project in self.projects.values():
            if project.data["path_with_namespace"] == ident:
                return project
        raise Problem(404, "404 Project Not Found")

    def _page(self, request: web.Request, items: list[Any]) -> web.Response:
        """GitLab's offset pagination: page/per_page (default 20, max 100) and its headers."""
        try:
            page = max(1, int(request.query.get("page", "1")))
            per_page = min(self.max_per_page, max(1, int(request.query.get("per_page", "20"))))
        except ValueError:
            raise Problem(400, "400 Bad request - page is invalid") from None
        total_pages = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]

        def link(number: int) -> str:
            query = {k: v for k, v in request.query.items() if k not in ("page", "per_page")}
            query.update(page=str(number), per_page=str(per_page))
            return f"{self.url}{request.rel_url.raw_path}?{urlencode(query)}"

        headers = {
            "X-Page": str(page),
            "X-Per-Page": str(per_page),
            "X-Total": str(len(items)),
            "X-Total-Pages": str(total_pages),
            "X-Next-Page": str(page + 1) if page < total_pages else "",
            "X-Prev-Page": str(page - 1) if page > 1 else "",
        }
        links = []
        if page > 1:
            links.append(f'<{link(page - 1)}>; rel="prev"')
        if page < total_pages:
            links.append(f'<{link(page + 1)}>; rel="next"')
        links += [f'<{link(1)}>; rel="first"', f'<{link(total_pages)}>; rel="last"']
        headers["Link"] = ", ".join(links)
        return web.json_response(chunk, headers=headers)

    # --- helpers --------------------------------------------------------------------------------

    def _user_brief(self, user: dict[str, Any]) -> dict[str, Any]:
        return {k: user[k] for k in ("id", "username", "name", "state", "avatar_url", "web_url")}

    def _note(self, project: Project, kind: str, target: dict[str, Any], body: str, author: dict[str, Any]):
        stamp = now()
        return {
            "id": self.next_id(),
            "type": None,
            "body": body,
            "attachment": None,
            "author": self._user_brief(author),
            "created_at": stamp,
            "updated_at": stamp,
            "system": False,
            "noteable_id": target["id"],
            "noteable_type": kind,
            "project_id": project.id,
            "noteable_iid": target["iid"],
            "resolvable": False,
            "confidential": False,
            "internal": False,
            "imported": False,
            "imported_from": "none",
        }

    def _label(self, project: Project, name: str, *, color: str = AUTO_LABEL_COLOR, description: str = ""):
        for label in project.labels:
            if label["name"] == name:
                return label
        label = {
            "id": self.next_id(),
            "name": name,
            "color": color,
            "text_color": "#FFFFFF",
            "description": description or None,
            "description_html": description,
            "open_issues_count": 0,
            "closed_issues_count": 0,
            "open_merge_requests_count": 0,
            "subscribed": False,
            "priority": None,
            "is_project_label": True,
        }
        project.labels.append(label)
        return label

    def _mr(self, project: Project, iid: str) -> dict[str, Any]:
        mr = project.mrs.get(int(iid))
        if mr is None:
            raise Problem(404, "404 Not found")
        return mr

    def _issue(self, project: Project, iid: str) -> dict[str, Any]:
        issue = project.issues.get(int(iid))
        if issue is None:
            raise Problem(404, "404 Not found")
        return issue

    def _job(self, project: Project, job_id: str) -> dict[str, Any]:
        job = project.jobs.get(int(job_id))
        if job is None:
            raise Problem(404, "404 Not found")
        return job

    @staticmethod
    def _text(body: Any, key: str, required: bool = True) -> str | None:
        value = body.get(key) if isinstance(body, dict) else None
        if required and not (isinstance(value, str) and value.strip()):
            raise Problem(400, f"400 Bad request - {key} is missing")
        return value

    @staticmethod
    def _labels_param(value: Any) -> list[str]:
        if isinstance(value, list):
            return [str(v) for v in value]
        return [v for v in str(value or "").split(",") if v]

    # --- routes ---------------------------------------------------------------------------------

    def _get_user(self, request: web.Request, body: Any) -> web.Response:
        return web.json_response({**self.bot, "created_at": "2012-05-23T08:00:58Z", "bio": ""})

    def _list_users(self, request: web.Request, body: Any) -> web.Response:
        name = request.query.get("username")
        found = [self._user_brief(u) for u in self.users.values() if name is None or u["username"] == name]
        return self._page(request, found)

    def _get_project(self, request: web.Request, body: Any, project: Project) -> web.Response:
        return web.json_response(
            {**project.data, "description": "", "visibility": "private", "created_at": "2012-05-23T08:00:58Z"}
        )

    def _list_pipelines(self, request: web.Request, body: Any, project: Project) -> web.Response:
        """``GET /projects/:id/pipelines`` (doc/api/pipelines.md): scope, status, ref, sha, updated_after,
        updated_before, order_by (id, updated_at), sort (desc by default)."""
        query = request.query
        pipelines = list(project.pipelines.values())
        finished = {"success", "failed", "canceled", "skipped"}
        if query.get("scope") == "finished":
            pipelines = [p for p in pipelines if p["status"] in finished]
        elif query.get("scope") not in (None, "finished"):
            raise Problem(400, "400 Bad request - scope does not have a valid value")
        for key in ("status", "ref", "sha"):
            if key in query:
                pipelines = [p for p in pipelines if p[key] == query[key]]
        if "updated_after" in query:
            pipelines = [p for p in pipelines if _instant(p["updated_at"]) > _instant(query["updated_after"])]
        if "updated_before" in query:
            pipelines = [
                p for p in pipelines if _instant(p["updated_at"]) < _instant(query["updated_before"])
            ]
        order = query.get("order_by", "id")
        if order not in ("id", "updated_at"):
            raise Problem(400, "400 Bad request - order_by does not have a valid value")
        pipelines.sort(key=lambda p: (p[order], p["id"]), reverse=query.get("sort", "desc") == "desc")
        return self._page(request, pipelines)

    def _list_jobs(self, request: web.Request, body: Any, project: Project, pipeline: str) -> web.Response:
        if int(pipeline) not in project.pipelines:
            raise Problem(404, "404 Not found")
        jobs = [j for j in project.jobs.values() if j["pipeline"]["id"] == int(pipeline)]
        if request.query.get("include_retried", "").lower() != "true":
            jobs = [j for j in jobs if not j["retried"]]
        jobs.sort(key=lambda j: j["id"], reverse=True)  # newest first, like GitLab >= 13.5
        return self._page(request, [{k: v for k, v in j.items() if k != "retried"} for j in jobs])

    def _test_report(self, request: web.Request, body: Any, project: Project, pipeline: str) -> web.Response:
        if int(pipeline) not in project.pipelines:
            raise Problem(404, "404 Not found")
        data = project.test_reports.get(int(pipeline))
        if data is None:
            return web.json_response(EMPTY_TEST_REPORT)
        return web.Response(body=data, content_type="application/json")

    def _trace(self, request: web.Request, body: Any, project: Project, job: str) -> web.Response:
        self._job(project, job)
        return web.Response(body=project.traces.get(int(job), b""), content_type="text/plain")

    def _retry_job(self, request: web.Request, body: Any, project: Project, job: str) -> web.Response:
        old = self._job(project, job)
        if old["status"] not in RETRYABLE or old["retried"]:
            raise Problem(403, "403 Forbidden  - Job is not retryable")
        old["retried"] = True
        pipeline = project.pipelines[old["pipeline"]["id"]]
        pipeline["status"] = "running"
        new = self.add_job(project, pipeline, old["name"], status="pending", stage=old["stage"])
        new.update(started_at=None, finished_at=None, duration=None, created_at=now())
        return web.json_response({k: v for k, v in new.items() if k != "retried"}, status=201)

    def _list_mrs(self, request: web.Request, body: Any, project: Project) -> web.Response:
        state = request.query.get("state", "all")
        branch = request.query.get("source_branch")
        mrs = [
            mr
            for mr in sorted(project.mrs.values(), key=lambda m: m["id"], reverse=True)
            if (state == "all" or mr["state"] == state) and (branch is None or mr["source_branch"] == branch)
        ]
        return self._page(request, [{k: v for k, v in mr.items() if k != "head_pipeline"} for mr in mrs])

    def _get_mr(self, request: web.Request, body: Any, project: Project, iid: str) -> web.Response:
        return web.json_response(self._mr(project, iid))

    def _list_mr_notes(self, request: web.Request, body: Any, project: Project, iid: str) -> web.Response:
        self._mr(project, iid)
        key = request.query.get("order_by", "created_at")
        if key not in ("created_at", "updated_at"):
            raise Problem(400, "400 Bad request - order_by does not have a valid value")
        notes = sorted(project.mr_notes[int(iid)], key=lambda n: (n[key], n["id"]))
        if request.query.get("sort", "desc") == "desc":
            notes.reverse()
        return self._page(request, notes)

    def _create_mr_note(self, request: web.Request, body: Any, project: Project, iid: str) -> web.Response:
        mr = self._mr(project, iid)
        text = self._text(body, "body")
        assert text is not None
        if len(text) > 1_000_000:
            raise Problem(400, "400 Bad request - Note is too long (maximum is 1000000 characters)")
        note = self._note(project, "MergeRequest", mr, text, self.bot)
        project.mr_notes[int(iid)].append(note)
        return web.json_response(note, status=201)

    def _update_mr_note(
        self, request: web.Request, body: Any, project: Project, iid: str, note: str
    ) -> web.Response:
        self._mr(project, iid)
        found = next((n for n in project.mr_notes[int(iid)] if n["id"] == int(note)), None)
        if found is None:
            raise Problem(404, "404 Note Not Found")
        if found["author"]["id"] != self.bot["id"]:
            raise Problem(403, "403 Forbidden")
        text = self._text(body, "body")
        found.update(body=text, updated_at=now())
        return web.json_response(found)

    def _award_emoji(
        self, request: web.Request, body: Any, project: Project, iid: str, note: str
    ) -> web.Response:
        self._mr(project, iid)
        target = next((n for n in project.mr_notes[int(iid)] if n["id"] == int(note)), None)
        if target is None:
            raise Problem(404, "404 Note Not Found")
        name = self._text(body, "name")
        awards = project.awards.setdefault(int(note), [])
        if any(a["name"] == name and a["user"]["id"] == self.bot["id"] for a in awards):
            raise Problem(404, "404 Award Emoji Name has already been taken")
        award = {
            "id": self.next_id(),
            "name": name,
            "user": self._user_brief(self.bot),
            "created_at": now(),
            "updated_at": now(),
            "awardable_id": int(note),
            "awardable_type": "Note",
        }
        awards.append(award)
        return web.json_response(award, status=201)

    def _raw_file(self, request: web.Request, body: Any, project: Project, path: str) -> web.Response:
        file_path = unquote(path)
        ref = request.query.get("ref")
        content = project.files.get((file_path, ref))
        if content is None and ref in (None, project.data["default_branch"], "HEAD"):
            content = project.files.get((file_path, None))
        if content is None:
            raise Problem(404, "404 File Not Found")
        return web.Response(body=content, content_type="text/plain")

    def _list_labels(self, request: web.Request, body: Any, project: Project) -> web.Response:
        labels = project.labels
        if request.query.get("include_ancestor_groups", "").lower() == "false":
            labels = [label for label in labels if label["is_project_label"]]
        return self._page(request, labels)

    def _create_label(self, request: web.Request, body: Any, project: Project) -> web.Response:
        name = self._text(body, "name")
        color = self._text(body, "color")
        assert name is not None and color is not None
        if any(label["name"] == name for label in project.labels):
            raise Problem(409, "Label already exists")
        label = self._label(
            project, name, color=color, description=self._text(body, "description", False) or ""
        )
        return web.json_response(label, status=201)

    def _list_issues(self, request: web.Request, body: Any, project: Project) -> web.Response:
        wanted = self._labels_param(request.query.get("labels"))
        state = request.query.get("state", "all")
        key = request.query.get("order_by", "created_at")
        issues = [
            issue
            for issue in project.issues.values()
            if (state == "all" or issue["state"] == state) and all(name in issue["labels"] for name in wanted)
        ]
        issues.sort(key=lambda i: (i[key], i["id"]), reverse=request.query.get("sort", "desc") == "desc")
        return self._page(request, issues)

    def _create_issue(self, request: web.Request, body: Any, project: Project) -> web.Response:
        title = self._text(body, "title")
        assert title is not None
        description = self._text(body, "description", False) or ""
        if len(description) > 1_048_576:
            raise Problem(400, "400 Bad request - description is too long (maximum is 1048576 characters)")
        issue = self.add_issue(
            project, title, labels=self._labels_param(body.get("labels")), description=description
        )
        return web.json_response(issue, status=201)

    def _get_issue(self, request: web.Request, body: Any, project: Project, iid: str) -> web.Response:
        return web.json_response(self._issue(project, iid))

    def _update_issue(self, request: web.Request, body: Any, project: Project, iid: str) -> web.Response:
        issue = self._issue(project, iid)
        body = body if isinstance(body, dict) else {}
        if "description" in body:
            issue["description"] = body["description"]
        if "assignee_ids" in body:  # members only (GitLab ignores the others); Premium: all of them
            ids = body["assignee_ids"] if isinstance(body["assignee_ids"], list) else [body["assignee_ids"]]
            issue["assignees"] = [self._user_brief(self.users[int(i)]) for i in ids
                                  if int(i) in self.users and int(i) in project.members]  # fmt: skip
            issue["assignee"] = issue["assignees"][0] if issue["assignees"] else None
        event = body.get("state_event")
        if event == "close" and issue["state"] != "closed":
            issue.update(state="closed", closed_at=now(), closed_by=self._user_brief(self.bot))
        elif event == "reopen" and issue["state"] == "closed":
            issue.update(state="opened", closed_at=None, closed_by=None)
        elif event not in (None, "close", "reopen"):
            raise Problem(400, "400 Bad request - state_event does not have a valid value")
        issue["updated_at"] = now()
        return web.json_response(issue)

    def _create_issue_note(self, request: web.Request, body: Any, project: Project, iid: str) -> web.Response:
        issue = self._issue(project, iid)
        note = self._note(project, "Issue", issue, self._text(body, "body") or "", self.bot)
        project.issue_notes[int(iid)].append(note)
        return web.json_response(note, status=201)

    def _get_member(self, request: web.Request, body: Any, project: Project, user: str) -> web.Response:
        level = project.members.get(int(user))
        if level is None or int(user) not in self.users:
            raise Problem(404, "404 Not found")
        member = {
            **self._user_brief(self.users[int(user)]),
            "access_level": level,
            "created_at": "2012-10-22T14:13:35Z",
            "expires_at": None,
            "membership_state": "active",
        }
        return web.json_response(member)


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- webhook payloads and deliveries -------------------------------------------------------------


def load_webhook(name: str) -> dict[str, Any]:
    """A payload of ``tests/fixtures/gitlab/webhooks/<name>.json`` (a fresh copy each call)."""
    return json.loads((FIXTURES / "webhooks" / f"{name}.json").read_text())


def gitlab_delivery(
    event: str,
    payload: dict[str, Any] | bytes,
    *,
    token: str | None,
    idempotency_key: str | None = None,
    event_uuid: str | None = None,
    instance: str = "https://gitlab.example.com",
    with_idempotency_key: bool = True,
) -> tuple[dict[str, str], bytes]:
    """The headers and body GitLab sends for one webhook delivery.

    ``token=None`` leaves ``X-Gitlab-Token`` out (a hook without a secret); a bytes payload is sent
    as is (for malformed-body tests).
    """
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitLab/18.0.0",
        "X-Gitlab-Event": event,
        "X-Gitlab-Instance": instance,
        "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
        "X-Gitlab-Event-UUID": event_uuid or str(uuid.uuid4()),
        "Idempotency-Key": idempotency_key or str(uuid.uuid4()),
    }
    if token is not None:
        headers["X-Gitlab-Token"] = token
    if not with_idempotency_key:
        del headers["Idempotency-Key"]
    return headers, body
