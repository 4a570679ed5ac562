"""The GitLab adapter (gitlab.com and self-managed) behind :class:`bot.forge.base.Forge`.

python-gitlab is synchronous: every call runs in a bounded thread pool, never on the event loop.
Transient failures are retried by python-gitlab itself (``retry_transient_errors``, ``max_retries``,
``obey_rate_limit``), with three guards added here:

* every request gets ``max_retries = max_attempts - 1`` (python-gitlab's default is 10 per call);
* POSTs (new notes, issues, job retries, labels, emoji) are *not* retried on 5xx or dropped
  connections: the server may have done the work before failing, and a second POST would duplicate
  it. They fail with :class:`ForgeError`; the durable queue retries the whole step later, and that is
  safe because notes are found again by marker and issues by label. 429 is still retried (GitLab did
  nothing);
* a ``Retry-After`` (or ``RateLimit-Reset``) longer than ``max_rate_limit_wait`` seconds (10) is not
  slept through in a worker thread: it becomes :class:`~bot.forge.base.RateLimited` at once, with the
  wait GitLab asked for, and the queue defers the delivery that long.

The token is sent in the ``PRIVATE-TOKEN`` header only and never appears in messages: errors are
built from the status and GitLab's ``message`` and masked with :func:`bot.redact.mask_secrets`.
python-gitlab logs nothing itself; only ``Gitlab.enable_debug()`` would print headers, and flakebot
never calls it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import gitlab
import requests
from gitlab.exceptions import GitlabError

from bot.forge.base import (
    Change,
    Forge,
    ForgeError,
    Identity,
    Issue,
    Job,
    Note,
    Permission,
    RateLimited,
    Repo,
    Run,
    TestReport,
)
from bot.forge.gitlab_payloads import (
    access_permission,
    all_jobs,
    change_from_api,
    issue_from_api,
    latest_jobs,
    repo_from_project,
    run_from_pipeline,
)
from bot.forge.pace import Pace
from bot.forge.retry import asked_wait
from bot.redact import mask_secrets
from bot.render import truncate_middle

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_URL = "https://gitlab.com"
NOTE_MAX_CHARS = 1_000_000  # GitLab's limit for a note body (an issue description's is 1,048,576)
MAX_FILE_BYTES = 1024 * 1024  # .flakebot.yml and friends
CHUNK_BYTES = 64 * 1024
PER_PAGE = 100  # GitLab's maximum page size
LABEL_COLOR = "#dc143c"
LABEL_DESCRIPTION = "Managed by flakebot"
UNREADABLE_WAIT = 60.0  # seconds to wait on a 429 whose Retry-After cannot be read


class _RateLimited(Exception):
    """Raised from a response hook when GitLab asks for a longer wait than we accept."""

    def __init__(self, wait: float | None):
        super().__init__(wait)
        self.wait = wait


class _Client(gitlab.Gitlab):
    """python-gitlab with flakebot's retry bounds applied to every request (see the module doc)."""

    def __init__(
        self, *args: Any, flakebot_max_retries: int, flakebot_pace: Pace | None = None, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        self.flakebot_max_retries = flakebot_max_retries
        self.flakebot_pace = flakebot_pace

    def http_request(self, verb: str, path: str, *args: Any, **kwargs: Any) -> requests.Response:
        if self.flakebot_pace is not None and (pause := self.flakebot_pace.wait_before(time.time())) > 0:
            self.flakebot_pace.waiting(pause)
            time.sleep(pause)  # a worker thread of a backfill's own forge: nobody else waits on it
        kwargs.setdefault("max_retries", self.flakebot_max_retries)
        if verb.lower() == "post":
            kwargs.setdefault("retry_transient_errors", False)
        return super().http_request(verb, path, *args, **kwargs)


class GitLabForge(Forge):
    name = "gitlab"
    max_body_chars = NOTE_MAX_CHARS  # a note's limit; an issue description may be a little longer

    def __init__(
        self,
        *,
        url: str = DEFAULT_URL,
        token: str,
        timeout: float = 30.0,
        max_attempts: int = 4,
        max_rate_limit_wait: float = 10.0,
        executor: ThreadPoolExecutor | None = None,
        max_workers: int = 8,
        ack_emoji: str = "eyes",
        pace: Pace | None = None,
    ):
        if not token:
            raise ValueError("a GitLab token is required (GITLAB_TOKEN)")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.url = url.rstrip("/")
        self._token = token
        self._max_rate_limit_wait = max_rate_limit_wait
        self._ack_emoji = ack_emoji
        self._gl = _Client(
            self.url,
            private_token=token,
            timeout=timeout,
            retry_transient_errors=True,
            per_page=PER_PAGE,
            flakebot_max_retries=max_attempts - 1,
            flakebot_pace=pace,
        )
        self._gl.session.hooks["response"].append(self._check_rate_limit)
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="gitlab")
        self._user_lock = threading.Lock()
        self._user: dict[str, Any] | None = None

    async def aclose(self) -> None:
        """Close the HTTP session and, when the forge made it, the thread pool."""
        self._gl.session.close()
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # --- plumbing ---------------------------------------------------------------------------

    def _check_rate_limit(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """requests response hook: refuse to sleep through a long rate-limit wait in a worker."""
        if self._gl.flakebot_pace is not None:
            self._gl.flakebot_pace.note(response.status_code, response.headers, time.time())
        if response.status_code != 429:
            return
        wait = asked_wait(response.headers, time.time())
        if wait is None and response.headers.get("Retry-After"):
            wait = math.inf  # python-gitlab cannot read it either: do not let it guess
        if wait is not None and wait > self._max_rate_limit_wait:
            response.close()
            raise _RateLimited(wait)
        if wait is not None:  # python-gitlab wants whole seconds
            response.headers["Retry-After"] = str(math.ceil(wait))

    def _error(self, what: str, exc: BaseException) -> ForgeError:
        status: int | None = None
        if isinstance(exc, _RateLimited):
            known = exc.wait is not None and not math.isinf(exc.wait)
            wait = exc.wait if known else UNREADABLE_WAIT
            detail = f"rate limited, GitLab asks to wait {f'{wait:.0f}s' if known else 'an unknown time'}"
            return RateLimited(mask_secrets(f"GitLab {what}: {detail}", extra=[self._token]), 429, wait=wait)
        if isinstance(exc, GitlabError):
            status = exc.response_code
            message = exc.error_message
            if isinstance(message, bytes):
                message = message.decode("utf-8", errors="replace")
            detail = f"HTTP {status}: {truncate_middle(str(message), 300)}" if status else str(message)
        elif isinstance(exc, requests.Timeout):
            detail = "timed out"
        elif isinstance(exc, requests.RequestException):
            detail = f"connection failed ({type(exc).__name__})"
        else:
            detail = f"{type(exc).__name__}: {exc}"
        return ForgeError(mask_secrets(f"GitLab {what}: {detail}", extra=[self._token]), status)

    async def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` in the thread pool; python-gitlab and requests errors become ForgeError."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
        except (GitlabError, requests.RequestException, _RateLimited) as exc:
            raise self._error(what, exc) from exc

    def _project(self, repo: Repo) -> Any:
        return self._gl.projects.get(repo.id if repo.id is not None else repo.full_name, lazy=True)

    def _me(self) -> dict[str, Any]:
        """The token's own user (GET /user), fetched once. Runs in a worker thread."""
        with self._user_lock:
            if self._user is None:
                self._gl.auth()
                assert self._gl.user is not None
                self._user = dict(self._gl.user.attributes)
            return self._user

    def _read_capped(self, path: str, limit: int, query: dict[str, Any] | None = None) -> tuple[bytes, bool]:
        """GET ``path`` streamed; at most ``limit`` bytes and whether there was more. Worker thread."""
        response = self._gl.http_get(path, query_data=query, streamed=True, raw=True)
        assert isinstance(response, requests.Response)
        buf = bytearray()
        try:
            for chunk in response.iter_content(CHUNK_BYTES):
                buf += chunk
                if len(buf) > limit:
                    return bytes(buf[:limit]), True
        finally:
            response.close()
        return bytes(buf), False

    def _clean(self, body: str, what: str) -> str:
        return self.fit_body(mask_secrets(body, extra=[self._token]), what)

    async def identity(self, repo: Repo) -> Identity:
        """The token's own user (``GET /user``, asked once): its notes are flakebot's."""
        me = await self._call("current user", self._me)
        return Identity(str(me["username"]), int(me["id"]))

    # --- reading a run ------------------------------------------------------------------------

    async def list_jobs(self, run: Run) -> list[Job]:
        def fetch() -> list[dict[str, Any]]:
            pipeline = self._project(run.repo).pipelines.get(run.id, lazy=True)
            return [job.attributes for job in pipeline.jobs.list(include_retried=True, iterator=True)]

        return latest_jobs(await self._call(f"jobs of pipeline {run.id}", fetch))

    async def job_log(self, job: Job, repo: Repo, max_bytes: int) -> AsyncIterator[bytes]:
        """The job's trace in chunks of bytes, at most ``max_bytes`` in total.

        A connection that breaks mid-stream raises ForgeError after the chunks already yielded.
        """
        what = f"log of job {job.id}"
        path = f"{self._project(repo).jobs.path}/{job.id}/trace"
        response: requests.Response = await self._call(what, self._gl.http_get, path, streamed=True, raw=True)
        chunks = response.iter_content(CHUNK_BYTES)
        sent = 0
        try:
            while sent < max_bytes:
                chunk = await self._call(what, next, chunks, None)
                if chunk is None:
                    return
                chunk = chunk[: max_bytes - sent]
                sent += len(chunk)
                yield chunk
        finally:
            await asyncio.get_running_loop().run_in_executor(self._executor, response.close)

    async def test_reports(self, run: Run, max_bytes: int) -> list[TestReport]:
        """The pipeline's test report (GitLab's JSON, raw bytes) when it has test suites, else []."""
        path = self._project(run.repo).pipelines.get(run.id, lazy=True).test_report.path
        try:
            data, cut = await self._call(
                f"test report of pipeline {run.id}", self._read_capped, path, max_bytes
            )
        except ForgeError as exc:
            if exc.status == 404:
                return []
            raise
        if cut:
            log.warning("test report of pipeline %s is larger than %d bytes: skipped", run.id, max_bytes)
            return []
        try:
            report = json.loads(data)
        except ValueError as exc:
            log.warning("test report of pipeline %s is not JSON (%s): skipped", run.id, exc)
            return []
        if not isinstance(report, dict) or not report.get("test_suites"):
            return []
        return [TestReport(kind="gitlab-json", name="test_report", data=data)]

    async def changes_for_run(self, run: Run) -> list[Change]:
        """The open MRs the payload names, else the open MRs of the pipeline's branch at its SHA."""

        def fetch() -> list[Change]:
            project = self._project(run.repo)
            if run.change_numbers:
                found = []
                for iid in run.change_numbers:
                    try:
                        found.append(project.mergerequests.get(iid).attributes)
                    except GitlabError as exc:
                        if exc.response_code != 404:  # deleted since the pipeline ran: skip it
                            raise
                return [change_from_api(mr, run) for mr in found if mr.get("state") == "opened"]
            candidates = project.mergerequests.list(state="opened", source_branch=run.branch, iterator=True)
            return [
                change_from_api(mr.attributes) for mr in candidates if mr.attributes.get("sha") == run.sha
            ]

        return await self._call(f"merge requests of pipeline {run.id}", fetch)

    async def read_file(self, repo: Repo, path: str, ref: str | None = None) -> str | None:
        project = self._project(repo)
        encoded = gitlab.utils.EncodedId(path)
        try:
            data, cut = await self._call(
                f"file {path}",
                self._read_capped,
                f"{project.files.path}/{encoded}/raw",
                MAX_FILE_BYTES,
                {"ref": ref} if ref else None,
            )
        except ForgeError as exc:
            if exc.status == 404:
                return None
            raise
        if cut:
            raise ForgeError(f"GitLab file {path}: larger than {MAX_FILE_BYTES} bytes", status=None)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            log.warning("%s in %s is not valid UTF-8: invalid bytes replaced", path, repo.full_name)
            return data.decode("utf-8", errors="replace")

    # --- acting -------------------------------------------------------------------------------

    async def upsert_note(self, repo: Repo, change: Change, marker: str, body: str) -> Note:
        """Edit the bot's own note containing ``marker`` on the MR (the oldest if several), or create it."""
        body = self._clean(body, "note")

        def upsert() -> Note:
            me = self._me()
            mr = self._project(repo).mergerequests.get(change.number, lazy=True)
            mine = None
            for note in mr.notes.list(sort="asc", order_by="created_at", iterator=True):
                author = note.attributes.get("author") or {}
                if author.get("id") == me["id"] and marker in (note.attributes.get("body") or ""):
                    mine = note
                    break
            if mine is None:
                mine = mr.notes.create({"body": body})
            elif mine.body != body:
                mine.body = body
                mine.save()
            return Note(
                id=mine.id,
                body=mine.body,
                author=me["username"],
                html_url=f"{change.html_url}#note_{mine.id}",
            )

        return await self._call(f"note on merge request !{change.number}", upsert)

    async def reply(self, repo: Repo, change_number: int, body: str) -> Note:
        body = self._clean(body, "note")

        def create() -> Note:
            me = self._me()
            mr = self._project(repo).mergerequests.get(change_number, lazy=True)
            note = mr.notes.create({"body": body})
            url = f"{repo.html_url}/-/merge_requests/{change_number}#note_{note.id}" if repo.html_url else ""
            return Note(id=note.id, body=note.body, author=me["username"], html_url=url)

        return await self._call(f"reply on merge request !{change_number}", create)

    async def acknowledge(self, repo: Repo, change_number: int, note_id: int) -> None:
        def award() -> None:
            mr = self._project(repo).mergerequests.get(change_number, lazy=True)
            note = mr.notes.get(note_id, lazy=True)
            try:
                note.awardemojis.create({"name": self._ack_emoji})
            except GitlabError as exc:
                if "already been taken" not in str(exc.error_message):
                    raise

        await self._call(f"emoji on note {note_id}", award)

    async def retry_jobs(self, run: Run, jobs: list[Job]) -> None:
        """``job.retry()`` each failed job; tries all of them, then reports those that failed."""
        failures = []
        for job in jobs:
            if not job.failed:
                continue
            lazy = self._project(run.repo).jobs.get(job.id, lazy=True)
            try:
                await self._call(f"retry of job {job.id} ({job.name})", lazy.retry)
            except ForgeError as exc:
                failures.append(exc)
        if failures:
            statuses = {exc.status for exc in failures}
            raise ForgeError(
                "; ".join(str(exc) for exc in failures), statuses.pop() if len(statuses) == 1 else None
            )

    async def ensure_labels(self, repo: Repo, labels: list[str]) -> None:
        """Create the missing labels with flakebot's colour and description.

        GitLab would create missing labels with the issue, but grey and without a description; creating
        them up front makes quarantine labels recognisable. Group labels count as existing.
        """

        def ensure() -> None:
            project = self._project(repo)
            existing = {
                label.name for label in project.labels.list(include_ancestor_groups=True, iterator=True)
            }
            for name in dict.fromkeys(labels):
                if name in existing:
                    continue
                try:
                    project.labels.create(
                        {"name": name, "color": LABEL_COLOR, "description": LABEL_DESCRIPTION}
                    )
                except GitlabError as exc:
                    if exc.response_code != 409:  # created meanwhile: fine
                        raise

        await self._call(f"labels of {repo.full_name}", ensure)

    async def find_issues(self, repo: Repo, label: str) -> list[Issue]:
        def fetch() -> list[Issue]:
            issues = self._project(repo).issues.list(
                labels=[label], state="all", order_by="created_at", sort="desc", iterator=True
            )
            return [issue_from_api(issue.attributes) for issue in issues]

        return await self._call(f"issues labelled {label!r}", fetch)

    async def create_issue(self, repo: Repo, title: str, body: str, labels: list[str]) -> Issue:
        data = {"title": title, "description": self._clean(body, "issue description"), "labels": labels}
        created = await self._call(f"new issue in {repo.full_name}", self._project(repo).issues.create, data)
        return issue_from_api(created.attributes)

    async def update_issue(
        self,
        repo: Repo,
        number: int,
        *,
        body: str | None = None,
        state: Literal["open", "closed"] | None = None,
        comment: str | None = None,
    ) -> Issue:
        """The comment goes first, so a closed issue ends with its reason."""

        def update() -> Issue:
            issues = self._project(repo).issues
            if comment is not None:
                issues.get(number, lazy=True).notes.create({"body": self._clean(comment, "note")})
            changes: dict[str, Any] = {}
            if body is not None:
                changes["description"] = self._clean(body, "issue description")
            if state is not None:
                changes["state_event"] = "close" if state == "closed" else "reopen"
            data = issues.update(number, changes) if changes else issues.get(number).attributes
            return issue_from_api(data)

        return await self._call(f"issue #{number}", update)

    async def assign_issue(self, repo: Repo, number: int, users: list[str]) -> list[str]:
        """Assign by user id: each login is looked up (a CODEOWNERS ``@name`` may be a group, which has no
        user and is left out). GitLab Free keeps one assignee; Premium keeps them all."""

        def assign() -> list[str]:
            ids = []
            for name in dict.fromkeys(users):
                found = self._gl.users.list(username=name, get_all=False)
                if found:
                    ids.append(found[0].id)
            issues = self._project(repo).issues
            data = issues.update(number, {"assignee_ids": ids}) if ids else issues.get(number).attributes
            return issue_from_api(data).assignees

        return await self._call(f"assignees of issue #{number}", assign)

    async def permission(self, repo: Repo, user: str | int) -> Permission:
        """The user's access level on the project, inherited ones included; unknown users → none."""

        def fetch() -> Permission:
            user_id = user
            if isinstance(user, str) and not user.isdigit():
                found = self._gl.users.list(username=user, get_all=False)
                if not found:
                    return "none"
                user_id = found[0].id
            try:
                member = self._project(repo).members_all.get(int(user_id))
            except GitlabError as exc:
                if exc.response_code == 404:
                    return "none"
                raise
            return access_permission(member.attributes.get("access_level"))

        return await self._call(f"permission of {user!r}", fetch)

    # --- reading the CI history (flakebot backfill) -------------------------------------------

    async def find_repo(self, full_name: str, installation_id: int | None = None) -> Repo:
        """``GET /projects/:path``: the project's id, page and default branch."""

        def fetch() -> Repo:
            return repo_from_project(self._gl.projects.get(full_name).attributes)

        return await self._call(f"project {full_name}", fetch)

    async def list_runs(self, repo: Repo, since: datetime, until: datetime) -> AsyncIterator[Run]:
        """The finished pipelines updated in [since, until], newest first, a page (100) at a time
        (``scope=finished``, ``updated_after``/``updated_before``: every GitLab version has them)."""
        what = f"pipelines of {repo.full_name}"
        pipelines = await self._call(
            what,
            self._project(repo).pipelines.list,
            scope="finished",
            updated_after=_stamp(since),
            updated_before=_stamp(until),
            order_by="id",
            sort="desc",
            iterator=True,
        )  # fmt: skip (the first page is asked here)
        while True:
            page = await self._call(what, _next_page, pipelines)
            if not page:
                return
            for data in page:
                run = run_from_pipeline(data, repo)
                if run is not None:
                    yield run

    async def list_all_jobs(self, run: Run) -> list[Job]:
        """Every job of the pipeline, retried ones included (``include_retried=true``)."""

        def fetch() -> list[dict[str, Any]]:
            pipeline = self._project(run.repo).pipelines.get(run.id, lazy=True)
            return [job.attributes for job in pipeline.jobs.list(include_retried=True, iterator=True)]

        return all_jobs(await self._call(f"jobs of pipeline {run.id}", fetch))


def _next_page(items: Any) -> list[dict[str, Any]]:
    """The next (at most) 100 items of a python-gitlab listing, [] at its end (it asks GitLab for a
    page when it needs one). Worker thread."""
    page: list[dict[str, Any]] = []
    for item in items:
        page.append(item.attributes)
        if len(page) >= PER_PAGE:
            break
    return page


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
