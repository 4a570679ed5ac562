"""The GitHub adapter: the :class:`~bot.forge.base.Forge` interface over GitHub's REST API.

Built on gidgethub's aiohttp client with one shared ``aiohttp.ClientSession``. Every request goes
through one retry policy (:mod:`bot.forge.retry`): 5xx answers, time-outs, connection errors and rate
limits are retried with bounded back-off; other 4xx answers raise :class:`ForgeError` at once. A rate
limit asking for more than ``max_wait`` seconds (10), or outlasting the attempts, raises
:class:`~bot.forge.base.RateLimited` with the wait GitHub asked for: the queue defers the delivery.

Authentication is either a personal token or a GitHub App: a JWT (gidgethub.apps, ``iat`` a minute in
the past) buys an installation token per ``Repo.installation_id``, cached until five minutes before it
expires; a 401 drops the cached token and the call is tried once more with a fresh one.

Logs and artifact archives answer 302 to a short-lived URL on another host: the adapter follows it
itself, without the Authorization header, and streams the body under a byte cap. Tokens,
Authorization headers and signed download URLs never reach logs or error messages.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any, Literal, Protocol, TypeVar, runtime_checkable
from urllib.parse import urljoin, urlsplit

import aiohttp
import gidgethub
import gidgethub.aiohttp
import gidgethub.apps
import gidgethub.sansio

from bot.forge.artifacts import ArchiveError, is_test_report_artifact, junit_members
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
from bot.forge.github_payloads import (
    CHECK_SUITE_EVENT,
    change_from_pull,
    issue_from_api,
    job_from_api,
    jobs_as_of,
    note_from_comment,
    permission_from_api,
    repo_from_api,
    run_from_api,
)
from bot.forge.pace import Pace
from bot.forge.retry import RetryPolicy, rate_limit_wait, retry_delay
from bot.redact import mask_secrets

log = logging.getLogger(__name__)

T = TypeVar("T")

API_URL = "https://api.github.com"
MAX_BODY_CHARS = 65_536  # GitHub's limit for comment and issue bodies
TOKEN_REFRESH_MARGIN = 300.0  # renew an installation token this many seconds before it expires
CHUNK_BYTES = 64 * 1024
MAX_LIST_ITEMS = 1_000  # the most items one paginated listing reads (10 pages of 100)
MAX_OPEN_PULLS = 500  # the fork fallback scans at most this many open PRs
LABEL_COLOR = "ededed"
ACK_REACTION = "eyes"


@dataclass(frozen=True)
class _Token:
    value: str
    expires_at: float  # epoch seconds


def _where(url: str) -> str:
    """A URL fit for logs: scheme, host and path, never the query (signed URLs carry secrets there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).split("?", 1)[0]  # aiohttp errors may quote a URL with its signed query
    return mask_secrets(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def _same(answer: Any) -> Any:
    return answer


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


@runtime_checkable
class AwaitedCache(Protocol):
    """A conditional-request cache kept where it can only be awaited (a database): gidgethub reads and
    writes its cache synchronously, so the adapter awaits :meth:`load` of a GET's URL before the request
    (the mapping then answers gidgethub's lookup from memory) and :meth:`save` after it (what gidgethub
    wrote goes where it is kept)."""

    async def load(self, url: str) -> None: ...

    async def save(self, url: str) -> None: ...


class _GitHubAPI(gidgethub.aiohttp.GitHubAPI):
    """gidgethub's aiohttp client with the adapter's time-out and retry policy on every request."""

    def __init__(
        self,
        forge: GitHubForge,
        session: aiohttp.ClientSession,
        requester: str,
        base_url: str,
        cache: MutableMapping[str, Any] | None = None,
    ):
        super().__init__(session, requester, base_url=base_url, cache=cache)
        self._forge = forge

    async def _make_request(
        self, method: str, url: str, url_vars: Any, data: Any, *args: Any, **kwargs: Any
    ) -> Any:
        cache = self._cache
        if method != "GET" or data != b"" or not isinstance(cache, AwaitedCache):
            return await super()._make_request(method, url, url_vars, data, *args, **kwargs)
        filled = gidgethub.sansio.format_url(url, url_vars, base_url=self.base_url)  # gidgethub's key
        await cache.load(filled)
        try:
            return await super()._make_request(method, url, url_vars, data, *args, **kwargs)
        finally:
            await cache.save(filled)

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        async def send() -> aiohttp.ClientResponse:
            return await self._session.request(
                method, url, headers=headers, data=body, timeout=self._forge._api_timeout
            )

        response = await self._forge._send(f"{method} {_where(url)}", send, read_body=True)
        try:
            return response.status, response.headers, await response.read()
        finally:
            response.release()

    async def sleep(self, seconds: float) -> None:
        await self._forge._sleep(seconds)


class GitHubForge(Forge):
    """GitHub over REST. Give exactly one of ``token`` or (``app_id`` and ``private_key``, PEM text).

    ``sleep`` and ``clock`` are injectable so tests can run the retry and token-expiry logic quickly.
    A long read of the history (``flakebot backfill``) also gives ``cache``, where gidgethub keeps each
    GET's ETag and answer so that asking again is a conditional request (a 304 costs no rate limit),
    and ``pace`` (:class:`bot.forge.pace.Pace`), which keeps a reserve of the rate limit and slows down
    after a rate limit.
    ``bot_login`` is the login the bot comments as; when None it is asked of GitHub once (``GET /app``
    gives ``<slug>[bot]``, ``GET /user`` the token's user) and, failing that, comments are found again
    by their marker alone.
    """

    name = "github"
    max_body_chars = MAX_BODY_CHARS
    max_listed_runs = 1_000  # GitHub's cap on the results of a filtered listing of workflow runs

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_url: str = API_URL,
        token: str | None = None,
        app_id: int | str | None = None,
        private_key: str | None = None,
        requester: str = "flakebot",
        timeout: float = 30.0,
        max_attempts: int = 4,
        backoff: float = 1.0,
        max_wait: float = 10.0,
        bot_login: str | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        cache: MutableMapping[str, Any] | None = None,
        pace: Pace | None = None,
    ):
        if bool(token) == bool(app_id or private_key):
            raise ValueError("GitHubForge needs exactly one of: a token, or an App's app_id and private_key")
        if not token and not (app_id and private_key):
            raise ValueError("GitHub App authentication needs both app_id and private_key")
        if private_key and "PRIVATE KEY-----" not in private_key:
            raise ValueError("private_key must be the App's PEM text (the config layer reads key files)")
        self._session = session
        self._api_url = api_url.rstrip("/")
        self._personal_token = token
        self._app_id = str(app_id) if app_id else None
        self._private_key = private_key
        self._requester = requester
        self._api_timeout = aiohttp.ClientTimeout(total=timeout)
        # downloads may take longer than one API call: bound connecting and each read instead
        self._stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        self._policy = RetryPolicy(max_attempts=max_attempts, backoff=backoff, max_wait=max_wait)
        self._sleep = sleep
        self._clock = clock
        self._gh = _GitHubAPI(self, session, requester, self._api_url, cache)
        self._pace = pace
        self._tokens: dict[int, _Token] = {}
        self._token_lock = asyncio.Lock()
        self._bot_login = bot_login
        self._bot_login_known = bot_login is not None
        self._known_labels: set[tuple[str, str]] = set()

    @property
    def api_url(self) -> str:
        """The REST API's base URL (the keys of the conditional-request cache start with it)."""
        return self._api_url

    # --- transport ---------------------------------------------------------------------------
    async def _send(
        self, what: str, send: Callable[[], Awaitable[aiohttp.ClientResponse]], *, read_body: bool = False
    ) -> aiohttp.ClientResponse:
        """``send()`` under the retry policy; returns the first final response (the caller releases it).

        Transport failures that outlast the attempts, and rate limits asking for a wait over the cap,
        raise :class:`ForgeError`. A 5xx that outlasts the attempts is returned like any answer.
        """
        attempt = 0
        while True:
            attempt += 1
            if self._pace is not None and (pause := self._pace.wait_before(self._clock())) > 0:
                self._pace.waiting(pause)
                await self._sleep(pause)
            try:
                response = await send()
                if self._pace is not None:
                    self._pace.note(response.status, response.headers, self._clock())
                if read_body:
                    try:
                        await response.read()
                    except BaseException:
                        response.release()
                        raise
            except (TimeoutError, aiohttp.ClientError) as exc:
                reason = _describe(exc)
                delay = retry_delay(self._policy, attempt)
                if delay is None:
                    raise ForgeError(f"{what}: {reason} ({attempt} attempts)") from exc
            else:
                now = self._clock()
                delay = retry_delay(self._policy, attempt, status=response.status, headers=response.headers,
                                    now=now)  # fmt: skip
                limited = rate_limit_wait(response.status, response.headers, now)
                if limited is not None and limited >= 0 and (delay is None or delay > self._policy.max_wait):
                    response.release()  # a wait this adapter does not sleep through: the queue's
                    raise RateLimited(
                        f"{what}: rate limited (HTTP {response.status}); GitHub asks to wait {limited:.0f} s",
                        response.status,
                        wait=limited,
                    )
                if delay is None:
                    return response
                response.release()
                reason = f"HTTP {response.status}"
            log.warning("%s: %s; retrying in %.1f s (attempt %d)", what, reason, delay, attempt + 1)
            await self._sleep(delay)

    async def _token(self, repo: Repo) -> str:
        if self._personal_token:
            return self._personal_token
        installation = repo.installation_id
        if installation is None:
            raise ForgeError(
                f"{repo.full_name}: GitHub App authentication needs the installation id "
                "(the webhook payload's installation.id)"
            )
        async with self._token_lock:
            cached = self._tokens.get(installation)
            if cached and cached.expires_at - TOKEN_REFRESH_MARGIN > self._clock():
                return cached.value
            try:
                answer = await gidgethub.apps.get_installation_access_token(
                    self._gh,
                    installation_id=str(installation),
                    app_id=self._app_id or "",
                    private_key=self._private_key or "",
                )
                token = _Token(answer["token"], _epoch(answer["expires_at"]))
            except gidgethub.HTTPException as exc:
                raise self._error(f"installation token for installation {installation}", exc) from exc
            except (KeyError, TypeError, ValueError) as exc:
                raise ForgeError(f"installation token for installation {installation}: odd answer") from exc
            self._tokens[installation] = token
            log.info("new installation token for installation %s", installation)
            return token.value

    @staticmethod
    def _error(what: str, exc: gidgethub.HTTPException) -> ForgeError:
        status = int(exc.status_code)
        return ForgeError(f"{what}: GitHub answered {status} {mask_secrets(str(exc))}".rstrip(), status)

    async def _call(self, repo: Repo, what: str, call: Callable[[str], Awaitable[T]]) -> T:
        """``call(token)`` with the repository's credentials; a 401 renews an App token once."""
        for renew in (True, False):
            token = await self._token(repo)
            try:
                return await call(token)
            except gidgethub.HTTPException as exc:
                if exc.status_code == 401 and renew and self._app_id and repo.installation_id is not None:
                    log.info("%s: 401, renewing the installation token", what)
                    self._tokens.pop(repo.installation_id, None)
                    continue
                raise self._error(what, exc) from exc
            except (ValueError, KeyError, TypeError) as exc:  # malformed JSON, or a field missing
                raise ForgeError(f"{what}: unreadable answer from GitHub ({exc})") from exc
        raise AssertionError("unreachable")

    @staticmethod
    def _vars(repo: Repo, **values: Any) -> dict[str, Any]:
        owner, _, name = repo.full_name.partition("/")
        return {"owner": owner, "repo": name, **values}

    async def _get(self, repo: Repo, url: str, parse: Callable[[Any], T] = _same, **values: Any) -> T:
        async def call(token: str) -> T:
            return parse(await self._gh.getitem(url, self._vars(repo, **values), oauth_token=token))

        return await self._call(repo, f"GET {url}", call)

    async def _post(
        self, repo: Repo, url: str, data: Any, parse: Callable[[Any], T] = _same, **values: Any
    ) -> T:
        async def call(token: str) -> T:
            return parse(await self._gh.post(url, self._vars(repo, **values), data=data, oauth_token=token))

        return await self._call(repo, f"POST {url}", call)

    async def _patch(
        self, repo: Repo, url: str, data: Any, parse: Callable[[Any], T] = _same, **values: Any
    ) -> T:
        async def call(token: str) -> T:
            return parse(await self._gh.patch(url, self._vars(repo, **values), data=data, oauth_token=token))

        return await self._call(repo, f"PATCH {url}", call)

    async def _list(
        self,
        repo: Repo,
        url: str,
        parse: Callable[[Any], T] = _same,
        *,
        key: str | None = None,
        limit: int = MAX_LIST_ITEMS,
        **values: Any,
    ) -> list[T]:
        """Every item of a paginated listing (100 a page), at most ``limit``, each through ``parse``."""

        async def collect(token: str) -> list[T]:
            items: list[T] = []
            pages = self._gh.getiter(
                url, self._vars(repo, per_page=100, **values), oauth_token=token, iterable_key=key
            )
            try:
                async for item in pages:
                    items.append(parse(item))
                    if len(items) >= limit:
                        log.warning("GET %s: stopping after %d items", url, limit)
                        break
            finally:
                await pages.aclose()
            return items

        return await self._call(repo, f"GET {url}", collect)

    async def _redirected(self, repo: Repo, path: str, what: str) -> aiohttp.ClientResponse:
        """GET an API path that answers 302, then its target without Authorization; the open response.

        Raises :class:`ForgeError` with the status for any answer but 2xx (404 and 410 included).
        """
        url = self._api_url + path
        for renew in (True, False):
            token = await self._token(repo)
            headers = gidgethub.sansio.create_headers(self._requester, oauth_token=token)
            response = await self._send(
                f"GET {path}",
                lambda headers=headers: self._session.get(
                    url, headers=headers, allow_redirects=False, timeout=self._stream_timeout
                ),
            )
            status, location = response.status, response.headers.get("Location")
            if status in (301, 302, 303, 307, 308) and location:
                response.release()
                break
            if status == 200:  # served directly (GitHub Enterprise Server does this at times)
                return response
            response.release()
            if status == 401 and renew and self._app_id and repo.installation_id is not None:
                self._tokens.pop(repo.installation_id, None)
                continue
            raise ForgeError(f"{what}: GitHub answered {status}", status)
        # The blob host gets no credentials: the signed URL is the authorization.
        location = urljoin(url, location)
        blob_headers = {"User-Agent": self._requester}
        response = await self._send(
            f"GET {_where(location)}",
            lambda: self._session.get(location, headers=blob_headers, timeout=self._stream_timeout),
        )
        if response.status != 200:
            response.release()
            raise ForgeError(f"{what}: the download host answered {response.status}", response.status)
        return response

    # --- reading a run -------------------------------------------------------------------------
    async def list_jobs(self, run: Run) -> list[Job]:
        if run.event == CHECK_SUITE_EVENT:
            return await self._list(
                run.repo,
                "/repos/{owner}/{repo}/check-suites/{check_suite_id}/check-runs{?filter,per_page}",
                job_from_api,
                key="check_runs",
                check_suite_id=run.id,
                filter="latest",
            )
        jobs = await self._list(
            run.repo,
            "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs{?filter,per_page}",
            job_from_api,
            key="jobs",
            run_id=run.id,
            filter="latest",
        )
        if any(job.attempt > run.attempt for job in jobs):  # re-run since (a resumed delivery): the jobs
            jobs = jobs_as_of(await self.list_all_jobs(run), run.attempt)  # of the attempt judged
        return jobs

    async def job_log(self, job: Job, repo: Repo, max_bytes: int) -> AsyncIterator[bytes]:
        """The job's log in chunks, at most ``max_bytes`` in all.

        A third-party check run has no log: its output (title, summary, text) stands in for it.
        """
        if "check_suite" in job.raw:
            output = job.raw.get("output") or {}
            text = "\n\n".join(str(output.get(k)) for k in ("title", "summary", "text") if output.get(k))
            if text and max_bytes > 0:
                yield text.encode("utf-8")[:max_bytes]
            return
        what = f"log of job {job.id} ({job.name})"
        try:
            response = await self._redirected(
                repo, f"/repos/{repo.full_name}/actions/jobs/{job.id}/logs", what
            )
        except ForgeError as exc:
            if exc.status in (404, 410):
                raise ForgeError(
                    f"{what}: the log has expired or was deleted ({exc.status})", exc.status
                ) from exc
            raise
        sent = 0
        try:
            async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                if sent + len(chunk) >= max_bytes:
                    if max_bytes > sent:
                        yield chunk[: max_bytes - sent]
                    return
                sent += len(chunk)
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ForgeError(f"{what}: download broke off after {sent} bytes ({_describe(exc)})") from exc
        finally:
            response.release()

    async def test_reports(self, run: Run, max_bytes: int) -> list[TestReport]:
        """JUnit XML files in the run's artifacts whose names suggest test results.

        ``max_bytes`` caps each archive download and the uncompressed XML returned in all. Expired
        artifacts and unreadable archives are skipped with a warning.
        """
        if run.event == CHECK_SUITE_EVENT:
            return []
        repo = run.repo
        artifacts = await self._list(
            repo,
            "/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts{?per_page}",
            key="artifacts",
            run_id=run.id,
        )
        reports: list[TestReport] = []
        left = max_bytes
        for artifact in artifacts:
            name = str(artifact.get("name", ""))
            if artifact.get("expired") or not is_test_report_artifact(name):
                continue
            size = int(artifact.get("size_in_bytes") or 0)
            if size > max_bytes:
                log.warning("artifact %r: %d bytes, over the %d bytes cap; skipped", name, size, max_bytes)
                continue
            with tempfile.TemporaryFile() as archive:
                try:
                    await self._download(repo, int(artifact["id"]), name, archive, max_bytes)
                except ForgeError as exc:
                    if exc.status != 410:
                        raise
                    log.warning("artifact %r has expired; skipped", name)
                    continue
                try:
                    extracted = await asyncio.to_thread(junit_members, archive, left)
                except ArchiveError as exc:
                    log.warning("artifact %r: %s; skipped", name, exc)
                    continue
            for skipped in extracted.skipped:
                log.warning("artifact %r: skipped %s", name, skipped)
            for member, data in extracted.members:
                reports.append(TestReport(kind="junit-xml", name=f"{name}/{member}", data=data))
                left -= len(data)
        return reports

    async def _download(self, repo: Repo, artifact_id: int, name: str, into: IO[bytes], cap: int) -> None:
        what = f"artifact {name!r}"
        response = await self._redirected(
            repo, f"/repos/{repo.full_name}/actions/artifacts/{artifact_id}/zip", what
        )
        written = 0
        try:
            async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                written += len(chunk)
                if written > cap:
                    raise ForgeError(f"{what}: larger than the {cap} bytes cap")
                into.write(chunk)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ForgeError(f"{what}: download broke off after {written} bytes ({_describe(exc)})") from exc
        finally:
            response.release()
        into.seek(0)

    async def _pull(self, repo: Repo, number: int) -> Change | None:
        try:
            return await self._get(
                repo, "/repos/{owner}/{repo}/pulls/{pull_number}", change_from_pull, pull_number=number
            )
        except ForgeError as exc:
            if exc.status != 404:
                raise
            log.warning("%s: pull request #%d not found; skipped", repo.full_name, number)
            return None

    async def changes_for_run(self, run: Run) -> list[Change]:
        """The open PRs of the run: those the payload names, else the PRs whose head is the run's SHA.

        Fork PRs are missing from ``workflow_run.pull_requests``: they are found by ``head=owner:branch``
        and, failing that, among the open PRs (at most ``MAX_OPEN_PULLS``), matching the head SHA.
        """
        repo = run.repo
        if run.change_numbers:
            changes = [await self._pull(repo, number) for number in dict.fromkeys(run.change_numbers)]
            return [change for change in changes if change and change.state == "open"]
        url = "/repos/{owner}/{repo}/pulls{?state,head,per_page}"
        if run.branch:
            owner = run.head_owner or repo.full_name.partition("/")[0]
            pulls = await self._list(repo, url, change_from_pull, state="open", head=f"{owner}:{run.branch}")
            found = [change for change in pulls if change.head_sha == run.sha]
            if found:
                return found
        pulls = await self._list(repo, url, change_from_pull, state="open", limit=MAX_OPEN_PULLS)
        return [change for change in pulls if change.head_sha == run.sha]

    async def read_file(self, repo: Repo, path: str, ref: str | None = None) -> str | None:
        what = f"{repo.full_name}:{path}"
        try:
            data = await self._get(repo, "/repos/{owner}/{repo}/contents/{+path}{?ref}", path=path, ref=ref)
        except ForgeError as exc:
            if exc.status == 404:
                return None
            raise
        if not isinstance(data, dict) or data.get("type") != "file":
            kind = "directory" if isinstance(data, list) else (data or {}).get("type", "unknown")
            raise ForgeError(f"{what} is a {kind}, not a file")
        if data.get("encoding") != "base64":
            raise ForgeError(f"{what}: too large for the contents API (encoding {data.get('encoding')!r})")
        try:
            return base64.b64decode(data.get("content") or "").decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ForgeError(f"{what} is not UTF-8 text") from exc

    # --- acting -------------------------------------------------------------------------------
    async def identity(self, repo: Repo) -> Identity | None:
        """The login the bot's comments carry (asked once), or None when GitHub will not say (a transient
        failure is not remembered: it is asked again next time)."""
        login = await self._login(repo)
        return Identity(login) if login else None

    async def _login(self, repo: Repo) -> str | None:
        if self._bot_login_known:
            return self._bot_login
        try:
            if self._app_id:
                jwt = gidgethub.apps.get_jwt(app_id=self._app_id, private_key=self._private_key or "")
                app = await self._gh.getitem("/app", jwt=jwt)
                self._bot_login = f"{app['slug']}[bot]"
            else:
                self._bot_login = await self._get(repo, "/user", lambda user: user["login"])
        except (ForgeError, gidgethub.HTTPException, KeyError, TypeError, ValueError) as exc:
            status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
            log.warning("cannot tell the bot's login (%s); finding comments by marker only", exc)
            if status not in (401, 403, 404):
                return None  # maybe transient: ask again next time
            self._bot_login = None
        self._bot_login_known = True
        return self._bot_login

    async def upsert_note(self, repo: Repo, change: Change, marker: str, body: str) -> Note:
        if not marker or marker not in body:
            raise ValueError("the comment body must contain its marker, or it cannot be found again")
        body = self.fit_body(body, "comment")
        login = await self._login(repo)
        comments = await self._list(
            repo,
            "/repos/{owner}/{repo}/issues/{issue_number}/comments{?per_page}",
            note_from_comment,
            issue_number=change.number,
        )
        for comment in comments:
            if marker in comment.body and login in (None, comment.author):
                if comment.body == body:
                    return comment
                return await self._patch(
                    repo,
                    "/repos/{owner}/{repo}/issues/comments/{comment_id}",
                    {"body": body},
                    note_from_comment,
                    comment_id=comment.id,
                )
        return await self.reply(repo, change.number, body)

    async def reply(self, repo: Repo, change_number: int, body: str) -> Note:
        return await self._post(
            repo,
            "/repos/{owner}/{repo}/issues/{issue_number}/comments",
            {"body": self.fit_body(body, "comment")},
            note_from_comment,
            issue_number=change_number,
        )

    async def acknowledge(self, repo: Repo, change_number: int, note_id: int) -> None:
        await self._post(
            repo,
            "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
            {"content": ACK_REACTION},
            comment_id=note_id,
        )

    async def retry_jobs(self, run: Run, jobs: list[Job]) -> None:
        """Re-run the run's failed jobs (all of them: rerun-failed-jobs) when ``jobs`` is not empty."""
        if not jobs:
            return
        if run.event == CHECK_SUITE_EVENT:
            raise ForgeError(f"run {run.id} is a third-party check suite: flakebot cannot re-run it")
        try:
            await self._post(
                run.repo, "/repos/{owner}/{repo}/actions/runs/{run_id}/rerun-failed-jobs", {}, run_id=run.id
            )
        except ForgeError as exc:
            if exc.status == 403 and not isinstance(exc, RateLimited):
                raise ForgeError(
                    f"GitHub refused to re-run run {run.id} (403): the run is still in progress, "
                    "or the App lacks actions: write",
                    403,
                ) from exc
            raise

    async def run_attempt(self, run: Run) -> int:
        if run.event == CHECK_SUITE_EVENT:
            return run.attempt  # never re-run by flakebot
        answer = await self._get(run.repo, "/repos/{owner}/{repo}/actions/runs/{run_id}", run_id=run.id)
        return int(answer.get("run_attempt") or run.attempt)

    async def ensure_labels(self, repo: Repo, labels: list[str]) -> None:
        for label in dict.fromkeys(labels):
            if (repo.full_name, label) in self._known_labels:
                continue
            try:
                await self._get(repo, "/repos/{owner}/{repo}/labels/{name}", name=label)
            except ForgeError as exc:
                if exc.status != 404:
                    raise
                try:
                    await self._post(
                        repo, "/repos/{owner}/{repo}/labels", {"name": label, "color": LABEL_COLOR}
                    )
                    log.info("%s: created label %r", repo.full_name, label)
                except ForgeError as create_error:
                    if create_error.status != 422:  # 422: someone created it meanwhile
                        raise
            self._known_labels.add((repo.full_name, label))

    async def find_issues(self, repo: Repo, label: str) -> list[Issue]:
        items = await self._list(
            repo,
            "/repos/{owner}/{repo}/issues{?labels,state,sort,direction,per_page}",
            lambda item: None if "pull_request" in item else issue_from_api(item),  # PRs are issues too
            labels=label,
            state="all",
            sort="created",
            direction="desc",
        )
        return [issue for issue in items if issue is not None]

    async def create_issue(self, repo: Repo, title: str, body: str, labels: list[str]) -> Issue:
        await self.ensure_labels(repo, labels)  # GitHub drops unknown labels silently
        return await self._post(
            repo,
            "/repos/{owner}/{repo}/issues",
            {"title": title, "body": self.fit_body(body, "issue body"), "labels": list(labels)},
            issue_from_api,
        )

    async def update_issue(
        self,
        repo: Repo,
        number: int,
        *,
        body: str | None = None,
        state: Literal["open", "closed"] | None = None,
        comment: str | None = None,
    ) -> Issue:
        body = None if body is None else self.fit_body(body, "issue body")
        url = "/repos/{owner}/{repo}/issues/{issue_number}"
        changes = {key: value for key, value in (("body", body), ("state", state)) if value is not None}
        if changes:
            issue = await self._patch(repo, url, changes, issue_from_api, issue_number=number)
        else:
            issue = await self._get(repo, url, issue_from_api, issue_number=number)
        if comment is not None:
            await self.reply(repo, number, comment)
        return issue

    async def assign_issue(self, repo: Repo, number: int, users: list[str]) -> list[str]:
        """``PATCH`` the issue's assignees. GitHub refuses the whole list (422) when one login cannot be
        assigned (not a collaborator, no such user), so on a 422 the users are added one at a time and
        those refused are left out (at most one call per user)."""
        url = "/repos/{owner}/{repo}/issues/{issue_number}"
        users = list(dict.fromkeys(users))
        if not users:
            return (await self._get(repo, url, issue_from_api, issue_number=number)).assignees
        try:
            return (
                await self._patch(repo, url, {"assignees": users}, issue_from_api, issue_number=number)
            ).assignees
        except ForgeError as exc:
            if exc.status != 422:
                raise
        kept: list[str] = []
        for user in users:
            try:
                await self._patch(
                    repo, url, {"assignees": [*kept, user]}, issue_from_api, issue_number=number
                )
            except ForgeError as exc:
                if exc.status != 422:
                    raise
                log.info("%s#%s: GitHub will not assign %s", repo.full_name, number, user)
                continue
            kept.append(user)
        return kept

    async def permission(self, repo: Repo, user: str | int) -> Permission:
        """The user's role on the repository; ``user`` is a login. Unknown users have "none"."""
        try:
            return await self._get(
                repo,
                "/repos/{owner}/{repo}/collaborators/{username}/permission",
                permission_from_api,
                username=str(user),
            )
        except ForgeError as exc:
            if exc.status == 404:
                return "none"
            raise

    # --- reading the CI history (flakebot backfill) -------------------------------------------
    async def find_repo(self, full_name: str, installation_id: int | None = None) -> Repo:
        """``GET /repos/{owner}/{repo}``; with an App, its installation first (``GET .../installation``
        with the App's JWT) unless given."""
        owner, _, name = full_name.partition("/")
        if self._app_id and installation_id is None:
            jwt = gidgethub.apps.get_jwt(app_id=self._app_id, private_key=self._private_key or "")
            try:
                found = await self._gh.getitem(
                    "/repos/{owner}/{repo}/installation", {"owner": owner, "repo": name}, jwt=jwt
                )
            except gidgethub.HTTPException as exc:
                raise self._error(f"the App's installation on {full_name}", exc) from exc
            installation_id = int(found["id"])
        probe = Repo(forge="github", full_name=full_name, installation_id=installation_id)
        return await self._get(
            probe, "/repos/{owner}/{repo}", lambda data: repo_from_api(data, installation_id)
        )

    async def list_runs(self, repo: Repo, since: datetime, until: datetime) -> AsyncIterator[Run]:
        """Completed workflow runs created in [since, until], newest first (``created`` and
        ``status=completed``, 100 a page). GitHub answers at most 1,000 runs to a filtered listing, so a
        span holding more is halved until each half fits (``total_count`` of its first page says)."""
        url = "/repos/{owner}/{repo}/actions/runs{?created,status,per_page,page}"
        spans = [(since, until)]
        while spans:
            start, end = spans.pop()
            created = f"{_stamp(start)}..{_stamp(end)}"
            first = await self._get(repo, url, created=created, status="completed", per_page=100, page=1)
            total = int(first.get("total_count") or 0)
            if total > self.max_listed_runs and end - start > timedelta(seconds=2):
                middle = start + (end - start) / 2
                spans += [(start, middle), (middle + timedelta(seconds=1), end)]  # newer half first
                continue
            page, seen, runs = 1, 0, first.get("workflow_runs") or []
            while runs:
                for data in runs:
                    yield run_from_api(data, repo)
                seen += len(runs)
                if seen >= min(total, self.max_listed_runs):
                    break
                page += 1
                answer = await self._get(
                    repo, url, created=created, status="completed", per_page=100, page=page
                )
                runs = answer.get("workflow_runs") or []

    async def list_all_jobs(self, run: Run) -> list[Job]:
        """The jobs of every attempt (``filter=all``), each with its ``run_attempt``."""
        return await self._list(
            run.repo,
            "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs{?filter,per_page}",
            job_from_api,
            key="jobs",
            limit=MAX_LIST_ITEMS * 5,
            run_id=run.id,
            filter="all",
        )


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
