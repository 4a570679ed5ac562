"""A fake GitHub for end-to-end tests: real HTTP on 127.0.0.1, answers shaped like GitHub's.

Two aiohttp servers on random loopback ports:

* ``fake.url``: the REST API. Every request is checked against GitHub's OpenAPI description
  (``tests/fixtures/github/openapi-trimmed.json``): the path and method must exist, path and query
  parameters and the JSON body must be valid, and User-Agent, Accept and Authorization must be sent.
  A violation is recorded in ``fake.violations`` and answered the way GitHub would (404, 400, 422,
  401); every answer the fake gives is checked against the documented response schema too
  (``fake.response_violations``), so the fake cannot drift from GitHub.
* ``fake.blob_url``: the storage that log and artifact downloads redirect (302) to. Its URLs are
  signed and short-lived; it records whether an Authorization header reached it (it must not).

State is seeded with ``add_*`` helpers; the JSON they hold is built from the description's response
examples. Faults are injected per operation id (``fake.fail("issues/create-comment", 500, times=2)``)
or per blob route (``"blob:logs"``, ``"blob:artifacts"``). Every request is recorded in
``fake.requests`` (method, path, query, JSON body, operation id).

Webhook deliveries: :func:`load_webhook` reads the trimmed real payloads in
``tests/fixtures/github/webhooks/``, :func:`delivery` signs one like GitHub does, and
``fake.workflow_run_payload`` / ``fake.issue_comment_payload`` point a real payload at the fake's state.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import itertools
import json
import secrets
import time
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.openapi import OpenAPI, Problem, Route

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "github"
SPEC_PATH = FIXTURES / "openapi-trimmed.json"
WEBHOOKS_DIR = FIXTURES / "webhooks"
HTML = "https://github.com"
DOCS = "https://docs.github.com/rest"


def iso(epoch: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if epoch is None else epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- webhook deliveries ------------------------------------------------------------------------
def load_webhook(name: str) -> dict[str, Any]:
    """A webhook fixture by file stem, e.g. ``"workflow_run.completed.failure"``."""
    return json.loads((WEBHOOKS_DIR / f"{name}.json").read_text(encoding="utf-8"))


def app_key_pair() -> tuple[str, bytes]:
    """A throw-away RSA key pair for the fake GitHub App: (private PEM text, public PEM); never committed."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def sign(body: bytes, secret: str) -> str:
    """``X-Hub-Signature-256`` as GitHub computes it: HMAC-SHA256 of the raw body, hex."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivery(
    event: str,
    payload: dict[str, Any] | bytes,
    secret: str | None,
    *,
    delivery_id: str | None = None,
    form: bool = False,
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a webhook delivery like GitHub sends it (unsigned when ``secret`` is None).

    ``form=True``: the webhook's content type is ``application/x-www-form-urlencoded`` (a choice in its
    settings): the JSON is the ``payload`` parameter of a form, and the signature covers the form.
    """
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    if form:
        body = urlencode({"payload": body.decode()}).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded" if form else "application/json",
        "User-Agent": "GitHub-Hookshot/4c6f5d1",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "292430182",
        "X-GitHub-Hook-Installation-Target-ID": "79929171",
        "X-GitHub-Hook-Installation-Target-Type": "integration",
    }
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(body, secret)
    return headers, body


# --- faults and records ------------------------------------------------------------------------
@dataclass
class Fault:
    kind: str  # "status" | "delay" | "drop"; on the blob host also "cut" and "trickle"
    times: int = 1
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "Server Error"
    seconds: float = 0.0
    after_bytes: int = 0  # "cut": the connection closes after this many bytes of the body
    chunk_bytes: int = 0  # "trickle": the body comes this many bytes every `seconds`


@dataclass
class Recorded:
    host: str  # "api" | "blob"
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any  # parsed JSON, raw bytes when not JSON, None when empty
    operation: str | None = None
    auth: str | None = None  # "token" | "bearer" | None: the scheme only, never the credential
    status: int | None = None


@dataclass
class RepoState:
    data: dict[str, Any]  # the repository JSON (as in webhook payloads)
    installation_id: int | None
    runs: dict[int, dict[str, Any]] = field(default_factory=dict)  # run id -> {"status", "attempt", ...}
    jobs: dict[int, dict[str, Any]] = field(default_factory=dict)
    logs: dict[int, bytes | None] = field(default_factory=dict)  # None: expired (410)
    artifacts: dict[int, tuple[dict[str, Any], bytes]] = field(default_factory=dict)
    check_runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)  # PRs are issues too
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    reactions: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    files: dict[tuple[str, str | None], bytes] = field(default_factory=dict)
    next_number: int = 1


class FakeGitHub:
    def __init__(
        self,
        *,
        app_id: int = 4242,
        app_public_key: bytes | None = None,
        app_slug: str = "flakebot-test",
        personal_token: str = "ghp_" + "T" * 36,
        user_login: str = "flakebot-user",
        token_ttl: float = 3600.0,
        blob_ttl: float = 60.0,
        page_size: int = 100,
        listing_cap: int = 1000,
    ):
        self.spec = OpenAPI.load(SPEC_PATH)
        self.app_id, self.app_public_key, self.app_slug = app_id, app_public_key, app_slug
        self.personal_token, self.user_login = personal_token, user_login
        self.token_ttl, self.blob_ttl, self.page_size = token_ttl, blob_ttl, page_size
        self.listing_cap = listing_cap  # GitHub answers at most 1,000 runs to a filtered listing
        self.url = self.blob_url = ""
        self.repos: dict[str, RepoState] = {}
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self.response_violations: list[str] = []
        self.dropped_labels: list[str] = []  # labels GitHub silently dropped from new issues
        self.tokens: dict[str, tuple[int, float]] = {}  # installation token -> (installation, expires)
        self.tokens_issued = 0
        self._faults: dict[str, list[Fault]] = {}
        self._blobs: dict[str, tuple[bytes, float, str]] = {}  # key -> (data, expires, content type)
        self._ids = itertools.count(1_000_001)
        self._runners: list[web.AppRunner] = []

    # --- life cycle ------------------------------------------------------------------------------
    async def start(self) -> FakeGitHub:
        self.url = await self._serve(self._api)
        self.blob_url = await self._serve(self._blob)
        return self

    async def _serve(self, handler: Any) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    def problems(self) -> list[str]:
        """Everything that must not happen in a test: request violations and fake drift."""
        return [*self.violations, *(f"fake answered off-spec: {v}" for v in self.response_violations)]

    # --- seeding state -------------------------------------------------------------------------
    def _id(self) -> int:
        return next(self._ids)

    def repo(self, full_name: str) -> RepoState:
        return self.repos[full_name]

    def add_repo(
        self, full_name: str = "octo-org/octo-repo", *, installation_id: int | None = 957387
    ) -> RepoState:
        owner, name = full_name.split("/")
        data = copy.deepcopy(load_webhook("workflow_run.completed.failure")["repository"])
        data.update(
            id=self._id(),
            name=name,
            full_name=full_name,
            html_url=f"{HTML}/{full_name}",
            url=f"{self.url}/repos/{full_name}",
            fork=False,
            default_branch="main",
        )
        data["owner"] = self._user(owner, kind="Organization")
        state = RepoState(data=data, installation_id=installation_id)
        self.repos[full_name] = state
        return state

    def _user(self, login: str, kind: str = "User") -> dict[str, Any]:
        user = self.spec.example("issue-comment")["user"]
        user.update(login=login, id=zlib.crc32(login.encode()) % 10**8, type=kind, html_url=f"{HTML}/{login}")
        user["url"] = f"{self.url}/users/{login}"
        return user

    def add_run(
        self,
        repo: str,
        *,
        head_sha: str = "3484a3fb816e0859fd6e1cea078d76385ff50625",
        head_branch: str = "fix-flaky-test",
        status: str = "completed",
        conclusion: str = "failure",
        attempt: int = 1,
        run_id: int | None = None,
        created_at: str | None = None,
        name: str = "CI",
        event: str = "pull_request",
    ) -> int:
        run_id = run_id or self._id()
        self.repo(repo).runs[run_id] = {
            "head_sha": head_sha,
            "head_branch": head_branch,
            "status": status,
            "conclusion": conclusion,
            "attempt": attempt,
            "reruns": 0,
            "created_at": created_at or iso(),
            "name": name,
            "event": event,
        }
        return run_id

    def add_job(
        self,
        repo: str,
        run_id: int,
        name: str,
        *,
        conclusion: str = "failure",
        log: bytes | None = b"",
        attempt: int | None = None,
    ) -> dict[str, Any]:
        """A job of the run; ``log=None`` makes its log expired (410). A job a re-run queued (same name and
        attempt) is the one that completes, as on GitHub."""
        state, run = self.repo(repo), self.repo(repo).runs[run_id]
        queued = [j for j in state.jobs.values() if j["run_id"] == run_id and j["name"] == name
                  and j["run_attempt"] == (attempt or run["attempt"]) and j["status"] != "completed"]  # fmt: skip
        if queued:
            queued[0].update(status="completed", conclusion=conclusion, completed_at="2020-01-20T17:44:37Z")
            state.logs[queued[0]["id"]] = log
            return queued[0]
        job = self.spec.example("job-paginated")["jobs"][0]
        job_id = self._id()
        job.update(
            id=job_id,
            run_id=run_id,
            run_url=f"{self.url}/repos/{repo}/actions/runs/{run_id}",
            url=f"{self.url}/repos/{repo}/actions/jobs/{job_id}",
            html_url=f"{HTML}/{repo}/actions/runs/{run_id}/job/{job_id}",
            check_run_url=f"{self.url}/repos/{repo}/check-runs/{job_id}",
            head_sha=run["head_sha"],
            head_branch=run["head_branch"],
            name=name,
            status="completed",
            conclusion=conclusion,
            run_attempt=attempt or run["attempt"],
            created_at="2020-01-20T17:42:38Z",
            workflow_name="CI",
        )
        state.jobs[job_id] = job
        state.logs[job_id] = log
        return job

    def add_artifact(
        self, repo: str, run_id: int, name: str, data: bytes, *, expired: bool = False
    ) -> dict[str, Any]:
        state, run = self.repo(repo), self.repo(repo).runs[run_id]
        artifact = self.spec.example("artifact-paginated")["artifacts"][0]
        artifact_id = self._id()
        artifact.update(
            id=artifact_id,
            name=name,
            size_in_bytes=len(data),
            url=f"{self.url}/repos/{repo}/actions/artifacts/{artifact_id}",
            archive_download_url=f"{self.url}/repos/{repo}/actions/artifacts/{artifact_id}/zip",
            expired=expired,
            digest="sha256:" + hashlib.sha256(data).hexdigest(),
        )
        artifact["workflow_run"].update(
            id=run_id,
            repository_id=state.data["id"],
            head_repository_id=state.data["id"],
            head_branch=run["head_branch"],
            head_sha=run["head_sha"],
        )
        state.artifacts[artifact_id] = (artifact, data)
        return artifact

    def add_check_run(
        self, repo: str, suite_id: int, name: str, *, conclusion: str = "failure", output_text: str = ""
    ) -> dict[str, Any]:
        check = self.spec.example("check-run-paginated")["check_runs"][0]
        check_id = self._id()
        check.update(id=check_id, name=name, conclusion=conclusion, html_url=f"{HTML}/{repo}/runs/{check_id}")
        check["url"] = f"{self.url}/repos/{repo}/check-runs/{check_id}"
        check["output"].update(
            title=f"{name}: {conclusion}", summary=f"{name} {conclusion}", text=output_text
        )
        check["check_suite"] = {"id": suite_id}
        self.repo(repo).check_runs[check_id] = check
        return check

    def _new_issue(
        self, repo: str, title: str, body: str, user: dict[str, Any], labels: list[str]
    ) -> dict[str, Any]:
        state = self.repo(repo)
        number, state.next_number = state.next_number, state.next_number + 1
        issue = self.spec.example("issue")
        issue.update(
            id=self._id(),
            number=number,
            title=title,
            body=body,
            user=user,
            state="open",
            state_reason=None,
            labels=[state.labels[name] for name in labels if name in state.labels],
            assignee=None,
            assignees=[],
            milestone=None,
            comments=0,
            closed_at=None,
            closed_by=None,
            created_at=iso(),
            updated_at=iso(),
            url=f"{self.url}/repos/{repo}/issues/{number}",
            repository_url=f"{self.url}/repos/{repo}",
            html_url=f"{HTML}/{repo}/issues/{number}",
        )
        issue.pop("pull_request", None)
        state.issues[number] = issue
        return issue

    def add_issue(
        self,
        repo: str,
        title: str,
        *,
        body: str = "",
        labels: tuple[str, ...] = (),
        state: str = "open",
        closed_by: str | None = None,
    ) -> dict[str, Any]:
        for label in labels:
            self.add_label(repo, label)
        issue = self._new_issue(repo, title, body, self._user("octocat"), list(labels))
        if state == "closed":
            issue.update(state="closed", state_reason="completed", closed_at=iso())
            issue["closed_by"] = self._user(closed_by or "octocat")
        return issue

    def add_label(self, repo: str, name: str) -> dict[str, Any]:
        labels = self.repo(repo).labels
        if name not in labels:
            label = self.spec.example("label")
            label.update(id=self._id(), name=name, color="ededed", default=False, description=None)
            label["url"] = f"{self.url}/repos/{repo}/labels/{name}"
            labels[name] = label
        return labels[name]

    def add_pull(
        self,
        repo: str,
        *,
        head_sha: str,
        head_ref: str,
        head_owner: str | None = None,
        state: str = "open",
        title: str = "Fix the flaky test",
    ) -> dict[str, Any]:
        """A pull request; ``head_owner`` other than the repository's owner makes it a fork PR."""
        base = self.repo(repo)
        owner = head_owner or base.data["owner"]["login"]
        issue = self._new_issue(repo, title, "", self._user(owner), [])
        number = issue["number"]
        issue["pull_request"] = {
            "url": f"{self.url}/repos/{repo}/pulls/{number}",
            "html_url": f"{HTML}/{repo}/pull/{number}",
            "diff_url": f"{HTML}/{repo}/pull/{number}.diff",
            "patch_url": f"{HTML}/{repo}/pull/{number}.patch",
            "merged_at": None,
        }
        issue["html_url"] = f"{HTML}/{repo}/pull/{number}"
        pull = self.spec.example("pull-request")
        head_repo = copy.deepcopy(base.data)
        if owner != base.data["owner"]["login"]:
            name = base.data["name"]
            head_repo.update(
                id=self._id(), full_name=f"{owner}/{name}", fork=True, html_url=f"{HTML}/{owner}/{name}"
            )
            head_repo["owner"] = self._user(owner)
        pull.update(
            id=self._id(),
            number=number,
            state=state,
            title=title,
            url=f"{self.url}/repos/{repo}/pulls/{number}",
            html_url=f"{HTML}/{repo}/pull/{number}",
            issue_url=issue["url"],
            user=self._user(owner),
            requested_teams=[],
            labels=[],
            milestone=None,
        )
        pull["head"].update(label=f"{owner}:{head_ref}", ref=head_ref, sha=head_sha, user=self._user(owner))
        pull["head"]["repo"].update(
            {k: head_repo[k] for k in ("id", "name", "full_name", "fork", "html_url")}
        )
        pull["head"]["repo"]["owner"] = head_repo["owner"]
        pull["base"].update(label=f"{base.data['owner']['login']}:main", ref="main")
        pull["base"]["repo"].update(
            {k: base.data[k] for k in ("id", "name", "full_name", "fork", "html_url")}
        )
        pull["base"]["repo"]["owner"] = base.data["owner"]
        if state == "closed":
            issue.update(state="closed", closed_at=iso())
            pull.update(closed_at=iso())
        base.pulls[number] = pull
        return pull

    def add_comment(
        self, repo: str, number: int, body: str, *, user: str = "octocat", bot: bool = False
    ) -> dict[str, Any]:
        return self._new_comment(repo, number, body, self._user(user, "Bot" if bot else "User"))

    def _new_comment(self, repo: str, number: int, body: str, user: dict[str, Any]) -> dict[str, Any]:
        comment = self.spec.example("issue-comment")
        comment_id = self._id()
        comment.update(
            id=comment_id,
            body=body,
            user=user,
            created_at=iso(),
            updated_at=iso(),
            url=f"{self.url}/repos/{repo}/issues/comments/{comment_id}",
            html_url=f"{self.repo(repo).issues[number]['html_url']}#issuecomment-{comment_id}",
            issue_url=f"{self.url}/repos/{repo}/issues/{number}",
        )
        comment.pop("performed_via_github_app", None)
        self.repo(repo).comments[comment_id] = comment
        self.repo(repo).issues[number]["comments"] += 1
        return comment

    def comments_on(self, repo: str, number: int) -> list[dict[str, Any]]:
        suffix = f"/issues/{number}"
        return [c for c in self.repo(repo).comments.values() if c["issue_url"].endswith(suffix)]

    def set_role(self, repo: str, user: str, role: str) -> None:
        """admin, maintain, write, triage, read, or none (a known user without access)."""
        self.repo(repo).roles[user] = role

    def add_file(self, repo: str, path: str, content: bytes | str, *, ref: str | None = None) -> None:
        self.repo(repo).files[(path, ref)] = content.encode() if isinstance(content, str) else content

    # --- faults --------------------------------------------------------------------------------
    def inject(self, route: str, fault: Fault) -> None:
        """Apply ``fault`` to the next ``fault.times`` requests of an operation id or blob route."""
        self._faults.setdefault(route, []).append(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    def fail(self, route: str, status: int = 500, *, times: int = 1) -> None:
        self.inject(route, Fault("status", times=times, status=status))

    def rate_limit(
        self,
        route: str,
        *,
        retry_after: float | None = 1,
        reset_in: float | None = None,
        status: int = 403,
        times: int = 1,
    ) -> None:
        """Secondary (``Retry-After``) or primary (``x-ratelimit-remaining: 0``) rate limit."""
        headers = {"x-ratelimit-limit": "5000", "x-ratelimit-used": "5000", "x-ratelimit-resource": "core"}
        if retry_after is not None:
            headers["Retry-After"] = str(int(retry_after))
        if reset_in is not None:
            headers.update(
                {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time() + reset_in))}
            )
        message = (
            "You have exceeded a secondary rate limit."
            if retry_after is not None
            else "API rate limit exceeded"
        )
        self.inject(route, Fault("status", times=times, status=status, headers=headers, message=message))

    def delay(self, route: str, seconds: float, *, times: int = 1) -> None:
        self.inject(route, Fault("delay", times=times, seconds=seconds))

    def drop(self, route: str, *, times: int = 1) -> None:
        self.inject(route, Fault("drop", times=times))

    def cut(self, route: str, *, after_bytes: int, times: int = 1) -> None:
        """A download (``"blob:logs"``, ``"blob:artifacts"``) whose connection closes after ``after_bytes``
        of its announced length."""
        self.inject(route, Fault("cut", times=times, after_bytes=after_bytes))

    def trickle(self, route: str, *, chunk_bytes: int, every: float, times: int = 1) -> None:
        """A download that sends ``chunk_bytes`` every ``every`` seconds (a slow or stalling server)."""
        self.inject(route, Fault("trickle", times=times, chunk_bytes=chunk_bytes, seconds=every))

    def expire_tokens(self) -> None:
        """Make every installation token issued so far expired (GitHub answers 401 Bad credentials)."""
        for token, (installation, _) in self.tokens.items():
            self.tokens[token] = (installation, 0.0)

    def _next_fault(self, route: str) -> Fault | None:
        queue = self._faults.get(route)
        if not queue:
            return None
        fault = queue[0]
        fault.times -= 1
        if fault.times <= 0:
            queue.pop(0)
        return fault

    async def _apply_fault(
        self, route: str, request: web.Request, fault: Fault | None = None
    ) -> web.StreamResponse | None:
        fault = fault or self._next_fault(route)
        if fault is None or fault.kind in ("cut", "trickle"):
            return None
        if fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
            return None
        if fault.kind == "drop":
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # the connection is gone: no answer at all
        body = {"message": fault.message, "documentation_url": DOCS, "status": str(fault.status)}
        return web.json_response(body, status=fault.status, headers=fault.headers)

    def calls(self, operation: str) -> list[Recorded]:
        return [r for r in self.requests if r.operation == operation]

    @property
    def blob_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.host == "blob"]

    # --- webhook payloads pointing at the fake's state ------------------------------------------
    def _payload_repo(self, repo: str) -> dict[str, Any]:
        return copy.deepcopy(self.repo(repo).data)

    def workflow_run_payload(
        self, repo: str, run_id: int, *, pull_numbers: list[int] | None = None
    ) -> dict[str, Any]:
        """A real ``workflow_run`` completed payload for a seeded run.

        ``pull_numbers`` None lists the repository's own (non-fork) open PRs whose head is the run's
        SHA, as GitHub does; fork PRs are never listed.
        """
        state, run = self.repo(repo), self.repo(repo).runs[run_id]
        payload = load_webhook("workflow_run.completed.failure")
        payload["repository"] = self._payload_repo(repo)
        if state.installation_id is not None:
            payload["installation"] = {
                "id": state.installation_id,
                "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uOTU3Mzg3",
            }
        else:
            payload.pop("installation", None)
        if pull_numbers is None:
            pull_numbers = [
                n
                for n, p in state.pulls.items()
                if p["state"] == "open"
                and p["head"]["sha"] == run["head_sha"]
                and not p["head"]["repo"]["fork"]
            ]
        wr = payload["workflow_run"]
        head_owner = next(
            (
                state.pulls[n]["head"]["repo"]["owner"]["login"]
                for n, p in state.pulls.items()
                if p["head"]["sha"] == run["head_sha"]
            ),
            state.data["owner"]["login"],
        )
        wr.update(
            **self._run_fields(repo, run_id),
            conclusion=run["conclusion"],
            repository=self._payload_repo(repo),
            pull_requests=[
                {
                    "url": state.pulls[n]["url"],
                    "id": state.pulls[n]["id"],
                    "number": n,
                    "head": {
                        "ref": state.pulls[n]["head"]["ref"],
                        "sha": state.pulls[n]["head"]["sha"],
                        "repo": {
                            "id": state.data["id"],
                            "url": state.data["url"],
                            "name": state.data["name"],
                        },
                    },
                    "base": {
                        "ref": "main",
                        "sha": state.pulls[n]["base"]["sha"],
                        "repo": {
                            "id": state.data["id"],
                            "url": state.data["url"],
                            "name": state.data["name"],
                        },
                    },
                }
                for n in pull_numbers
            ],
        )
        head = self._payload_repo(repo)
        if head_owner != state.data["owner"]["login"]:
            head.update(full_name=f"{head_owner}/{head['name']}", fork=True, id=head["id"] + 1)
            head["owner"] = self._user(head_owner)
        wr["head_repository"] = head
        return payload

    def issue_comment_payload(
        self, repo: str, number: int, body: str, *, user: str = "octocat"
    ) -> dict[str, Any]:
        """A real ``issue_comment`` created payload; the comment is added to the fake's state too."""
        state = self.repo(repo)
        payload = load_webhook(
            "issue_comment.created.pull" if number in state.pulls else "issue_comment.created.issue"
        )
        payload["repository"] = self._payload_repo(repo)
        if state.installation_id is not None:
            payload["installation"] = {
                "id": state.installation_id,
                "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ==",
            }
        issue = copy.deepcopy(state.issues[number])
        payload["issue"].update(
            {k: issue[k] for k in ("id", "number", "title", "state", "html_url", "url", "user")}
        )
        if number in state.pulls:
            payload["issue"]["pull_request"] = issue["pull_request"]
        payload["comment"].update(self.add_comment(repo, number, body, user=user))
        payload["sender"] = self._user(user)
        return payload

    def pull_request_closed_payload(self, repo: str, number: int, *, merged: bool = True) -> dict[str, Any]:
        """A real ``pull_request`` closed payload for a seeded pull request (merged unless told not)."""
        state, pull = self.repo(repo), self.repo(repo).pulls[number]
        payload = load_webhook("pull_request.closed.merged")
        payload["repository"] = self._payload_repo(repo)
        if state.installation_id is not None:
            payload["installation"] = {
                "id": state.installation_id,
                "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ==",
            }
        else:
            payload.pop("installation", None)
        payload["number"] = number
        payload["pull_request"].update(
            number=number, merged=merged, state="closed", html_url=pull["html_url"]
        )
        payload["pull_request"]["head"].update(sha=pull["head"]["sha"], ref=pull["head"]["ref"])
        if not merged:
            payload["pull_request"].update(merged_at=None, merged_by=None)
        pull.update(state="closed", merged=merged)
        return payload

    # --- the API server --------------------------------------------------------------------------
    async def _api(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._api_request(request)
        except Exception as exc:  # a bug in the fake must fail the test, not look like GitHub's 500
            self.response_violations.append(f"the fake crashed on {request.method} {request.path}: {exc!r}")
            raise

    async def _api_request(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        query: dict[str, list[str]] = {}
        for key, value in request.query.items():
            query.setdefault(key, []).append(value)
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = body
        auth_header = request.headers.get("Authorization", "")
        record = Recorded(
            "api", request.method, request.path, query, parsed, auth=auth_header.split(" ")[0].lower() or None
        )
        self.requests.append(record)
        route = self.spec.route(request.method, request.raw_path.split("?")[0])
        if isinstance(route, Problem):
            return self._violation(record, [route])
        record.operation = route.operation_id
        problems = self._header_problems(request, route)
        problems += self.spec.check_request(route, query, body, request.headers.get("Content-Type"))
        if problems:
            return self._violation(record, problems)
        response = await self._apply_fault(route.operation_id, request)
        if response is None:
            response = self._authorized(route, auth_header)
        if response is None:
            handler = getattr(self, "op_" + route.operation_id.replace("/", "__").replace("-", "_"))
            status, data, headers = handler(request, route, query, parsed)
            response = self._answer(request, route, status, data, headers)
        record.status = response.status
        return response

    def _header_problems(self, request: web.Request, route: Route) -> list[Problem]:
        problems = []
        if not request.headers.get("User-Agent"):
            problems.append(Problem(403, "no User-Agent header (GitHub refuses such requests)"))
        if not request.headers.get("Accept"):
            problems.append(Problem(400, "no Accept header (send application/vnd.github+json)"))
        if not request.headers.get("Authorization"):
            problems.append(Problem(401, "no Authorization header: flakebot always authenticates"))
        return problems

    def _violation(self, record: Recorded, problems: list[Problem]) -> web.Response:
        for problem in problems:
            self.violations.append(f"{record.method} {record.path}: {problem.message}")
        first = problems[0]
        record.status = first.status
        message = {404: "Not Found", 401: "Requires authentication", 400: "Problems parsing JSON"}.get(
            first.status, first.message
        )
        if first.status == 422:
            message = "Invalid request.\n\n" + first.message
        return web.json_response(
            {"message": message, "documentation_url": DOCS, "status": str(first.status)}, status=first.status
        )

    def _error(self, status: int, message: str) -> web.Response:
        return web.json_response(
            {"message": message, "documentation_url": DOCS, "status": str(status)}, status=status
        )

    def _authorized(self, route: Route, header: str) -> web.Response | None:
        """None when the credentials are good for this operation, else GitHub's 401/404 answer."""
        scheme, _, credential = header.partition(" ")
        if route.operation_id.startswith("apps/"):
            if scheme.lower() != "bearer":
                self.violations.append(
                    f"{route.operation_id}: App endpoints need the App's JWT as a Bearer token"
                )
                return self._error(401, "A JSON web token could not be decoded")
            problem = self._jwt_problem(credential)
            return self._error(401, problem) if problem else None
        if credential == self.personal_token:
            return None
        if credential in self.tokens:
            installation, expires = self.tokens[credential]
            if expires <= time.time():
                return self._error(401, "Bad credentials")
            if "owner" in route.params:
                state = self._state(route)
                if state is None or state.installation_id != installation:
                    return self._error(404, "Not Found")  # the App is not installed there
            return None
        try:
            jwt.get_unverified_header(credential)
            self.violations.append(
                f"{route.operation_id}: called with the App JWT instead of an installation token"
            )
        except jwt.PyJWTError:
            pass
        return self._error(401, "Bad credentials")

    def _jwt_problem(self, token: str) -> str | None:
        if self.app_public_key is None:
            return "this fake has no App key"
        try:
            claims = jwt.decode(
                token,
                self.app_public_key,
                algorithms=["RS256"],
                issuer=str(self.app_id),
                options={"require": ["iat", "exp", "iss"]},
            )
        except jwt.PyJWTError as exc:
            return f"A JSON web token could not be decoded ({exc})"
        now = time.time()
        if claims["exp"] > now + 600 + 5:
            return "'Expiration time' claim ('exp') is too far in the future"
        if claims["iat"] > now + 60:
            return "'Issued at' claim ('iat') must be an Integer representing a time in the past"
        return None

    def _identity(self, request: web.Request) -> dict[str, Any]:
        credential = request.headers.get("Authorization", "").partition(" ")[2]
        if credential in self.tokens:
            return self._user(f"{self.app_slug}[bot]", "Bot")
        return self._user(self.user_login)

    def _answer(
        self, request: web.Request, route: Route, status: int, data: Any, headers: dict[str, str]
    ) -> web.Response:
        content_type = headers.pop("Content-Type", "application/json; charset=utf-8")
        for problem in self.spec.check_response(route, status, content_type, data):
            self.response_violations.append(f"{route.operation_id}: {problem}")
        headers.setdefault("x-ratelimit-limit", "5000")
        headers.setdefault("x-ratelimit-remaining", "4999")
        headers.setdefault("x-ratelimit-reset", str(int(time.time()) + 3600))
        headers.setdefault("x-github-request-id", uuid.uuid4().hex[:16].upper())
        if request.method == "GET" and status == 200 and data is not None:
            # conditional requests, as GitHub answers every GET (docs: "Use conditional requests"): an
            # unchanged answer is a 304 without a body, which costs no rate limit
            etag = 'W/"' + hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:40] + '"'
            headers["ETag"] = etag
            if request.headers.get("If-None-Match") == etag:
                return web.Response(status=304, headers=headers)
        if data is None:
            return web.Response(status=status, headers=headers)
        return web.Response(
            status=status, body=json.dumps(data).encode(), headers={**headers, "Content-Type": content_type}
        )

    def _page(
        self, request: web.Request, query: dict[str, list[str]], items: list[Any]
    ) -> tuple[list[Any], dict[str, str]]:
        per_page = min(int(query.get("per_page", ["30"])[0]), 100, self.page_size)
        page = int(query.get("page", ["1"])[0])
        chunk = items[(page - 1) * per_page : page * per_page]
        last = max(1, -(-len(items) // per_page))
        links = []
        for rel, number in (("next", page + 1), ("last", last)):
            if page < last:
                params = {k: v[0] for k, v in query.items()} | {
                    "page": str(number),
                    "per_page": str(per_page),
                }
                links.append(f'<{self.url}{request.path}?{urlencode(params)}>; rel="{rel}"')
        return chunk, ({"Link": ", ".join(links)} if links else {})

    def _state(self, route: Route) -> RepoState | None:
        return self.repos.get(f"{route.params['owner']}/{route.params['repo']}")

    # --- operations (named after operation ids: "/" -> "__", "-" -> "_") -----------------------
    NOT_FOUND = (404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}, {})

    def op_apps__create_installation_access_token(self, request, route, query, body):
        installation = int(route.params["installation_id"])
        if not any(s.installation_id == installation for s in self.repos.values()):
            return self.NOT_FOUND
        token = "ghs_" + secrets.token_hex(18)
        expires = time.time() + self.token_ttl
        self.tokens[token] = (installation, expires)
        self.tokens_issued += 1
        answer = self.spec.example("installation-token")
        answer.update(token=token, expires_at=iso(expires), repository_selection="all")
        answer.pop("repositories", None)
        answer["permissions"] = {
            "actions": "write",
            "checks": "read",
            "contents": "read",
            "issues": "write",
            "metadata": "read",
            "pull_requests": "write",
        }
        return 201, answer, {}

    def op_apps__get_authenticated(self, request, route, query, body):
        app = self.spec.example("integration")
        app.update(id=self.app_id, slug=self.app_slug, name="flakebot (test)")
        return 200, app, {}

    def op_users__get_authenticated(self, request, route, query, body):
        if request.headers.get("Authorization", "").partition(" ")[2] in self.tokens:
            return (
                403,
                {
                    "message": "Resource not accessible by integration",
                    "documentation_url": DOCS,
                    "status": "403",
                },
                {},
            )
        user = self.spec.example("private-user-response-with-public-and-private-profile-information")
        user.update(login=self.user_login, user_view_type="private")
        return 200, user, {}

    def _run_fields(self, repo: str, run_id: int) -> dict[str, Any]:
        """What a run's payload and its API answer say alike: ids, state and URLs."""
        run = self.repo(repo).runs[run_id]
        base = f"{self.url}/repos/{repo}/actions/runs/{run_id}"
        return {"id": run_id, "head_sha": run["head_sha"], "head_branch": run["head_branch"], "status": run["status"],
                "run_attempt": run["attempt"], "html_url": f"{HTML}/{repo}/actions/runs/{run_id}", "url": base,
                "jobs_url": f"{base}/jobs", "logs_url": f"{base}/logs", "artifacts_url": f"{base}/artifacts"}  # fmt: skip

    def run_json(self, repo: str, run_id: int) -> dict[str, Any]:
        """A seeded run as ``GET .../actions/runs`` answers it (GitHub's example, pointed at the state)."""
        state, run = self.repo(repo), self.repo(repo).runs[run_id]
        data = self.spec.example("workflow-run-paginated")["workflow_runs"][0]
        pulls = [
            {"url": p["url"], "id": p["id"], "number": n,
             "head": {"ref": p["head"]["ref"], "sha": p["head"]["sha"],
                      "repo": {"id": state.data["id"], "url": state.data["url"], "name": state.data["name"]}},
             "base": {"ref": "main", "sha": p["base"]["sha"],
                      "repo": {"id": state.data["id"], "url": state.data["url"], "name": state.data["name"]}}}
            for n, p in state.pulls.items()
            if p["head"]["sha"] == run["head_sha"] and not p["head"]["repo"]["fork"]
        ]  # fmt: skip
        data.update(
            **self._run_fields(repo, run_id),
            name=run["name"],
            event=run["event"],
            conclusion=run["conclusion"] if run["status"] == "completed" else None,
            created_at=run["created_at"],
            updated_at=run["created_at"],
            run_started_at=run["created_at"],
            pull_requests=pulls,
        )
        data["head_commit"]["id"] = run["head_sha"]
        return data

    def op_actions__list_workflow_runs_for_repo(self, request, route, query, body):
        state = self._state(route)
        if state is None:
            return self.NOT_FOUND
        runs = list(state.runs.items())
        if "created" in query:
            start, _, end = query["created"][0].partition("..")
            runs = [(i, r) for i, r in runs if start <= r["created_at"] <= (end or "9999")]
        if "status" in query:
            wanted = query["status"][0]
            runs = [(i, r) for i, r in runs if wanted in (r["status"], r["conclusion"])]
        if "branch" in query:
            runs = [(i, r) for i, r in runs if r["head_branch"] == query["branch"][0]]
        runs.sort(key=lambda item: (item[1]["created_at"], item[0]), reverse=True)  # newest first
        total = len(runs)
        if any(k in query for k in ("created", "status", "branch", "event", "actor", "head_sha")):
            runs = runs[: self.listing_cap]  # "up to 1,000 results for each search" with these filters
        repo = f"{route.params['owner']}/{route.params['repo']}"
        chunk, headers = self._page(request, query, runs)
        return (
            200,
            {"total_count": total, "workflow_runs": [self.run_json(repo, i) for i, _ in chunk]},
            headers,
        )

    def op_repos__get(self, request, route, query, body):
        state = self._state(route)
        if state is None:
            return self.NOT_FOUND
        data = self.spec.example("full-repository-default-response")
        data.update({k: state.data[k] for k in ("id", "name", "full_name", "html_url", "url", "fork",
                                                 "default_branch")})  # fmt: skip
        data["owner"] = state.data["owner"]
        data.setdefault("language", "Python")  # required by the schema, missing from GitHub's own example
        for key in ("source", "parent", "template_repository"):  # of forks and templates only
            data.pop(key, None)
        return 200, data, {}

    def op_apps__get_repo_installation(self, request, route, query, body):
        state = self._state(route)
        if state is None or state.installation_id is None:
            return self.NOT_FOUND
        data = self.spec.example("installation")
        data.update(id=state.installation_id, app_id=self.app_id, app_slug=self.app_slug)
        return 200, data, {}

    def op_actions__list_jobs_for_workflow_run(self, request, route, query, body):
        state = self._state(route)
        run_id = int(route.params["run_id"])
        if state is None or run_id not in state.runs:
            return self.NOT_FOUND
        jobs = [j for j in state.jobs.values() if j["run_id"] == run_id]
        if query.get("filter", ["latest"])[0] == "latest":
            latest: dict[str, dict[str, Any]] = {}
            for job in jobs:
                if job["name"] not in latest or job["run_attempt"] >= latest[job["name"]]["run_attempt"]:
                    latest[job["name"]] = job
            jobs = list(latest.values())
        chunk, headers = self._page(request, query, jobs)
        return 200, {"total_count": len(jobs), "jobs": chunk}, headers

    def _redirect(self, data: bytes, kind: str) -> tuple[int, None, dict[str, str]]:
        key = secrets.token_urlsafe(16)
        expires = time.time() + self.blob_ttl
        self._blobs[key] = (data, expires, "text/plain" if kind == "logs" else "application/zip")
        signed = urlencode({"sv": "2021-08-06", "se": iso(expires), "sig": secrets.token_urlsafe(24)})
        return 302, None, {"Location": f"{self.blob_url}/{kind}/{key}?{signed}"}

    def op_actions__download_job_logs_for_workflow_run(self, request, route, query, body):
        state = self._state(route)
        job_id = int(route.params["job_id"])
        if state is None or job_id not in state.jobs:
            return self.NOT_FOUND
        log = state.logs[job_id]
        if log is None:
            return 410, {"message": "Gone", "documentation_url": DOCS, "status": "410"}, {}
        return self._redirect(log, "logs")

    def op_actions__list_workflow_run_artifacts(self, request, route, query, body):
        state = self._state(route)
        run_id = int(route.params["run_id"])
        if state is None or run_id not in state.runs:
            return self.NOT_FOUND
        items = [a for a, _ in state.artifacts.values() if a["workflow_run"]["id"] == run_id]
        chunk, headers = self._page(request, query, items)
        return 200, {"total_count": len(items), "artifacts": chunk}, headers

    def op_actions__download_artifact(self, request, route, query, body):
        state = self._state(route)
        artifact_id = int(route.params["artifact_id"])
        if state is None or artifact_id not in state.artifacts:
            return self.NOT_FOUND
        artifact, data = state.artifacts[artifact_id]
        if artifact["expired"]:
            return 410, {"message": "Artifact has expired", "documentation_url": DOCS, "status": "410"}, {}
        return self._redirect(data, "artifacts")

    def op_actions__get_workflow_run(self, request, route, query, body):
        state = self._state(route)
        run_id = int(route.params["run_id"])
        if state is None or run_id not in state.runs:
            return self.NOT_FOUND
        run = state.runs[run_id]
        answer = self.spec.example("workflow-run")
        answer.update(id=run_id, head_sha=run["head_sha"], head_branch=run["head_branch"], status=run["status"],
                      conclusion=run["conclusion"] if run["status"] == "completed" else None,
                      run_attempt=run["attempt"])  # fmt: skip
        return 200, answer, {}

    def op_actions__re_run_workflow_failed_jobs(self, request, route, query, body):
        state = self._state(route)
        run_id = int(route.params["run_id"])
        if state is None or run_id not in state.runs:
            return self.NOT_FOUND
        run = state.runs[run_id]
        if run["status"] != "completed":
            return (
                403,
                {"message": "This workflow is already running", "documentation_url": DOCS, "status": "403"},
                {},
            )
        self.rerun_failed_jobs(route.params["owner"] + "/" + route.params["repo"], run_id)
        return 201, {}, {}

    def rerun_failed_jobs(self, repo: str, run_id: int) -> None:
        """What GitHub does on a re-run of a run's failed jobs: its next attempt, queued, with a new job
        (queued) for each failed or cancelled job of the attempt before, at once. Listed as the run's
        latest jobs from then on; those that passed keep their own attempt's job."""
        run = self.repo(repo).runs[run_id]
        latest: dict[str, dict[str, Any]] = {}
        for job in self.repo(repo).jobs.values():
            mine = job["run_id"] == run_id and job["run_attempt"] <= run["attempt"]
            if mine and (
                job["name"] not in latest or job["run_attempt"] >= latest[job["name"]]["run_attempt"]
            ):
                latest[job["name"]] = job
        run.update(status="queued", attempt=run["attempt"] + 1, reruns=run["reruns"] + 1)
        for name, job in latest.items():
            if job["conclusion"] in ("failure", "timed_out", "cancelled", "startup_failure"):
                new = self.add_job(repo, run_id, name, conclusion="failure", log=b"")
                new.update(status="queued", conclusion=None, completed_at=None)

    def op_checks__list_for_suite(self, request, route, query, body):
        state = self._state(route)
        suite_id = int(route.params["check_suite_id"])
        if state is None:
            return self.NOT_FOUND
        items = [c for c in state.check_runs.values() if c["check_suite"]["id"] == suite_id]
        chunk, headers = self._page(request, query, items)
        return 200, {"total_count": len(items), "check_runs": chunk}, headers

    def op_pulls__list(self, request, route, query, body):
        state = self._state(route)
        if state is None:
            return self.NOT_FOUND
        wanted = query.get("state", ["open"])[0]
        items = [p for p in state.pulls.values() if wanted in ("all", p["state"])]
        if "head" in query:
            head = query["head"][0]
            if ":" not in head:
                head = f"{state.data['owner']['login']}:{head}"
            items = [p for p in items if p["head"]["label"] == head]
        items.sort(key=lambda p: -p["number"])
        chunk, headers = self._page(request, query, items)
        return 200, chunk, headers

    def op_pulls__get(self, request, route, query, body):
        state = self._state(route)
        number = int(route.params["pull_number"])
        if state is None or number not in state.pulls:
            return self.NOT_FOUND
        return 200, state.pulls[number], {}

    def op_repos__get_content(self, request, route, query, body):
        state = self._state(route)
        path, ref = route.params["path"], query.get("ref", [None])[0]
        if state is None:
            return self.NOT_FOUND
        data = state.files.get((path, ref), state.files.get((path, None)) if ref is None else None)
        if data is None:
            return self.NOT_FOUND
        content = self.spec.example("content-file-response-if-content-is-a-file")
        sha = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324 - git's object id
        content.update(
            size=len(data),
            name=path.rsplit("/", 1)[-1],
            path=path,
            sha=sha,
            content=base64.encodebytes(data).decode(),
            url=f"{self.url}/repos/{route.params['owner']}/{route.params['repo']}/contents/{path}",
        )
        return 200, content, {}

    def op_issues__list_comments(self, request, route, query, body):
        state = self._state(route)
        number = int(route.params["issue_number"])
        if state is None or number not in state.issues:
            return self.NOT_FOUND
        chunk, headers = self._page(
            request, query, self.comments_on(f"{route.params['owner']}/{route.params['repo']}", number)
        )
        return 200, chunk, headers

    def op_issues__create_comment(self, request, route, query, body):
        state = self._state(route)
        number = int(route.params["issue_number"])
        if state is None or number not in state.issues:
            return self.NOT_FOUND
        repo = f"{route.params['owner']}/{route.params['repo']}"
        return 201, self._new_comment(repo, number, body["body"], self._identity(request)), {}

    def op_issues__update_comment(self, request, route, query, body):
        state = self._state(route)
        comment = state.comments.get(int(route.params["comment_id"])) if state else None
        if comment is None:
            return self.NOT_FOUND
        me = self._identity(request)["login"]
        if comment["user"]["login"] != me and state.roles.get(me) != "admin":
            return (
                403,
                {
                    "message": "Resource not accessible by integration",
                    "documentation_url": DOCS,
                    "status": "403",
                },
                {},
            )
        comment.update(body=body["body"], updated_at=iso())
        return 200, comment, {}

    def op_reactions__create_for_issue_comment(self, request, route, query, body):
        state = self._state(route)
        comment_id = int(route.params["comment_id"])
        if state is None or comment_id not in state.comments:
            return self.NOT_FOUND
        me = self._identity(request)
        for reaction in state.reactions:
            if (reaction["comment_id"], reaction["content"], reaction["user"]["login"]) == (
                comment_id,
                body["content"],
                me["login"],
            ):
                return 200, {k: v for k, v in reaction.items() if k != "comment_id"}, {}
        reaction = self.spec.example("reaction")
        reaction.update(id=self._id(), content=body["content"], user=me, created_at=iso())
        state.reactions.append({**reaction, "comment_id": comment_id})
        return 201, reaction, {}

    def op_issues__get_label(self, request, route, query, body):
        state = self._state(route)
        label = state.labels.get(route.params["name"]) if state else None
        return (200, label, {}) if label else self.NOT_FOUND

    def op_issues__create_label(self, request, route, query, body):
        state = self._state(route)
        if state is None:
            return self.NOT_FOUND
        if body["name"] in state.labels:
            return (
                422,
                {
                    "message": "Validation Failed",
                    "errors": [{"resource": "Label", "code": "already_exists", "field": "name"}],
                    "documentation_url": DOCS,
                },
                {},
            )
        label = self.add_label(f"{route.params['owner']}/{route.params['repo']}", body["name"])
        label["color"] = body.get("color", "ededed")
        return 201, label, {}

    def op_issues__list_for_repo(self, request, route, query, body):
        state = self._state(route)
        if state is None:
            return self.NOT_FOUND
        wanted = query.get("state", ["open"])[0]
        items = [i for i in state.issues.values() if wanted in ("all", i["state"])]
        if "labels" in query:
            names = {n.strip() for n in query["labels"][0].split(",") if n.strip()}
            items = [i for i in items if names <= {label["name"] for label in i["labels"]}]
        items.sort(key=lambda i: i["number"], reverse=query.get("direction", ["desc"])[0] == "desc")
        chunk, headers = self._page(request, query, items)
        return 200, chunk, headers

    def op_issues__create(self, request, route, query, body):
        state = self._state(route)
        if state is None:
            return self.NOT_FOUND
        labels = [name if isinstance(name, str) else name.get("name") for name in body.get("labels", [])]
        self.dropped_labels += [name for name in labels if name not in state.labels]
        repo = f"{route.params['owner']}/{route.params['repo']}"
        issue = self._new_issue(
            repo, str(body["title"]), body.get("body") or "", self._identity(request), labels
        )
        return 201, issue, {}

    def op_issues__get(self, request, route, query, body):
        state = self._state(route)
        issue = state.issues.get(int(route.params["issue_number"])) if state else None
        return (200, issue, {}) if issue else self.NOT_FOUND

    def op_issues__update(self, request, route, query, body):
        state = self._state(route)
        issue = state.issues.get(int(route.params["issue_number"])) if state else None
        if issue is None:
            return self.NOT_FOUND
        body = body or {}
        if "assignees" in body:
            # GitHub refuses the whole list when one login cannot be assigned (not a collaborator)
            refused = [login for login in body["assignees"] if state.roles.get(login, "none") == "none"]
            if refused:
                errors = [{"value": refused[0], "resource": "Issue", "field": "assignees", "code": "invalid"}]
                return 422, {"message": "Validation Failed", "errors": errors, "documentation_url": DOCS}, {}
            issue["assignees"] = [self._user(login) for login in body["assignees"]]
            issue["assignee"] = issue["assignees"][0] if issue["assignees"] else None
        if "body" in body:
            issue["body"] = body["body"]
        if body.get("state") == "closed" and issue["state"] != "closed":
            issue.update(
                state="closed", state_reason="completed", closed_at=iso(), closed_by=self._identity(request)
            )
        elif body.get("state") == "open" and issue["state"] != "open":
            issue.update(state="open", state_reason="reopened", closed_at=None, closed_by=None)
        issue["updated_at"] = iso()
        return 200, issue, {}

    def op_repos__get_collaborator_permission_level(self, request, route, query, body):
        state = self._state(route)
        user = route.params["username"]
        if state is None or user not in state.roles:
            return self.NOT_FOUND
        role = state.roles[user]
        legacy = {"maintain": "write", "triage": "read"}.get(role, role)
        answer = self.spec.example(
            "repository-collaborator-permission-response-if-user-has-admin-permissions"
        )
        answer.update(permission=legacy, role_name=role)
        answer["user"].update(login=user, role_name=role)
        return 200, answer, {}

    # --- the blob host ---------------------------------------------------------------------------
    async def _blob(self, request: web.Request) -> web.StreamResponse:
        kind, _, key = request.path.strip("/").partition("/")
        auth = request.headers.get("Authorization")
        self.requests.append(
            Recorded(
                "blob",
                request.method,
                request.path,
                {},
                None,
                operation=f"blob:{kind}",
                auth=auth.split(" ")[0].lower() if auth else None,
            )
        )
        if auth:
            self.violations.append(f"the Authorization header reached the blob host ({request.path})")
        fault = self._next_fault(f"blob:{kind}")
        response = await self._apply_fault(f"blob:{kind}", request, fault)
        if response is not None:
            return response
        data, expires, content_type = self._blobs.get(key, (b"", 0.0, ""))
        if expires < time.time() or "sig" not in request.query:
            return web.Response(
                status=403, text="AuthenticationFailed: the signed URL has expired or is wrong"
            )
        response = web.StreamResponse(headers={"Content-Type": content_type})
        response.content_length = len(data)
        await response.prepare(request)
        step, pause, end = 64 * 1024, 0.0, len(data)
        if fault is not None and fault.kind == "trickle":
            step, pause = fault.chunk_bytes, fault.seconds
        if fault is not None and fault.kind == "cut":
            end = min(end, fault.after_bytes)
        try:
            for start in range(0, end, step):
                await response.write(data[start : min(start + step, end)])
                if pause:
                    await asyncio.sleep(pause)
            if end < len(data):  # the connection closes before the announced length
                assert request.transport is not None
                request.transport.close()
                return response
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client stopped reading (a byte cap, a deadline): fine
        return response
