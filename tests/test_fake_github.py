"""The fake GitHub itself: it must refuse what GitHub refuses and answer what GitHub answers."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import aiohttp
import gidgethub.sansio
import jwt
import pytest

from tests.fakes.github import delivery, load_webhook, sign
from tests.fakes.openapi import OpenAPI, pointer

HEADERS = {"User-Agent": "test", "Accept": "application/vnd.github+json"}
REPO = "octo-org/octo-repo"


def app_jwt(key, **claims) -> str:
    now = int(time.time())
    payload = {"iat": now - 60, "exp": now + 540, "iss": str(key.app_id), **claims}
    return jwt.encode(payload, key.private_pem, algorithm="RS256")


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def call(http, method, url, *, token=None, headers=HEADERS, **kwargs):
    headers = dict(headers)
    if token:
        headers["Authorization"] = f"token {token}"
    async with http.request(method, url, headers=headers, allow_redirects=False, **kwargs) as response:
        body = await response.read()
        return (
            response.status,
            response.headers,
            (json.loads(body) if body and response.content_type.endswith("json") else body),
        )


def operations(api: OpenAPI) -> set[str]:
    return {
        op["operationId"]
        for item in api.spec["paths"].values()
        for m, op in item.items()
        if m != "parameters"
    }


def test_every_operation_of_the_trimmed_description_has_a_handler(fake_github):
    for operation in operations(fake_github.spec):
        name = "op_" + operation.replace("/", "__").replace("-", "_")
        assert callable(getattr(fake_github, name, None)), f"the fake does not serve {operation}"


async def test_requests_off_the_description_are_refused_and_recorded(fake_github, http):
    fake = fake_github
    fake.add_repo(REPO)
    token = fake.personal_token
    cases = [
        (("GET", f"{fake.url}/repos/{REPO}/actions/runz/1/jobs"), 404, "no such path"),
        (("DELETE", f"{fake.url}/repos/{REPO}/labels"), 404, "method not allowed"),
        (("GET", f"{fake.url}/repos/{REPO}/actions/runs/abc/jobs"), 404, "is not integer"),
        (("GET", f"{fake.url}/repos/{REPO}/actions/runs/1/jobs?filter=newest"), 422, "filter"),
        (("GET", f"{fake.url}/repos/{REPO}/issues?state=all&labelz=flaky"), 422, "unknown query parameter"),
        (("POST", f"{fake.url}/repos/{REPO}/issues"), 422, "request body is required"),
    ]
    for (method, url), status, needle in cases:
        fake.violations.clear()
        got, _, body = await call(http, method, url, token=token)
        assert got == status, (url, body)
        assert len(fake.violations) >= 1 and needle in fake.violations[0], fake.violations
    fake.violations.clear()
    got, _, body = await call(
        http, "POST", f"{fake.url}/repos/{REPO}/issues", token=token, json={"body": "no title"}
    )
    assert got == 422 and "'title' is a required property" in body["message"]
    got, _, body = await call(
        http,
        "POST",
        f"{fake.url}/repos/{REPO}/issues",
        token=token,
        data=b"{oops",
        headers={**HEADERS, "Content-Type": "application/json"},
    )
    assert got == 400 and body["message"] == "Problems parsing JSON"
    bare = {"headers": {}, "skip_auto_headers": ("User-Agent", "Accept")}
    got, _, _ = await call(http, "GET", f"{fake.url}/repos/{REPO}/issues", **bare)
    assert got == 403
    assert any("User-Agent" in v for v in fake.violations) and any("Accept" in v for v in fake.violations)
    assert any("Authorization" in v for v in fake.violations)
    fake.violations.clear()
    assert fake.repo(REPO).issues == {}  # nothing refused changed the state


async def test_valid_requests_get_answers_that_match_the_response_schemas(fake_github, http):
    fake = fake_github
    fake.page_size = 1
    fake.add_repo(REPO)
    run = fake.add_run(REPO)
    fake.add_job(REPO, run, "a")
    fake.add_job(REPO, run, "b")
    token = fake.personal_token
    status, headers, body = await call(
        http, "GET", f"{fake.url}/repos/{REPO}/actions/runs/{run}/jobs?per_page=100", token=token
    )
    assert status == 200 and body["total_count"] == 2 and len(body["jobs"]) == 1
    assert 'rel="next"' in headers["Link"] and "page=2" in headers["Link"]
    issue = fake.add_issue(REPO, "flaky: test_x", labels=("flaky",), state="closed", closed_by="maintainer")
    status, _, body = await call(
        http, "GET", f"{fake.url}/repos/{REPO}/issues/{issue['number']}", token=token
    )
    assert status == 200 and body["closed_by"]["login"] == "maintainer"
    assert fake.response_violations == []


def test_the_response_check_can_fail(fake_github):
    api = fake_github.spec
    route = api.route("GET", "/repos/o/r/pulls/1")
    assert api.check_response(route, 200, "application/json", {"number": "one"})
    assert api.check_response(route, 299, "application/json", {})  # undocumented status
    assert api.check_response(route, 404, "application/json", {"message": "Not Found"}) == []


async def test_app_tokens_need_a_jwt_signed_by_the_app_key(fake_github, github_app_key, http):
    fake = fake_github
    fake.add_repo(REPO, installation_id=77)
    url = f"{fake.url}/app/installations/77/access_tokens"
    bearer = {**HEADERS, "Authorization": f"Bearer {app_jwt(github_app_key)}"}
    status, _, body = await call(http, "POST", url, headers=bearer)
    assert status == 201 and body["token"].startswith("ghs_") and fake.tokens_issued == 1
    # the token works on the installation's repository, not elsewhere, and stops working when expired
    fake.add_repo("someone/else", installation_id=78)
    assert (await call(http, "GET", f"{fake.url}/repos/{REPO}/issues", token=body["token"]))[0] == 200
    assert (await call(http, "GET", f"{fake.url}/repos/someone/else/issues", token=body["token"]))[0] == 404
    fake.expire_tokens()
    assert (await call(http, "GET", f"{fake.url}/repos/{REPO}/issues", token=body["token"]))[0] == 401
    # a JWT that is too long-lived or signed by another key is refused
    too_long = app_jwt(github_app_key, exp=int(time.time()) + 3600)
    status, _, body = await call(
        http, "POST", url, headers={**HEADERS, "Authorization": f"Bearer {too_long}"}
    )
    assert status == 401 and "too far in the future" in body["message"]
    forged = jwt.encode(
        {"iat": int(time.time()), "exp": int(time.time()) + 60, "iss": "4242"},
        "not-the-app-key-but-a-long-enough-hmac-secret",
        algorithm="HS256",
    )
    assert (await call(http, "POST", url, headers={**HEADERS, "Authorization": f"Bearer {forged}"}))[0] == 401
    assert fake.violations == []
    # the JWT itself is no token for repository endpoints
    await call(http, "GET", f"{fake.url}/repos/{REPO}/issues", token=app_jwt(github_app_key))
    assert fake.violations and "JWT" in fake.violations[0]
    fake.violations.clear()


async def test_blob_host_flags_authorization_and_expired_urls(fake_github, http):
    fake = fake_github
    fake.add_repo(REPO)
    job = fake.add_job(REPO, fake.add_run(REPO), "build", log=b"hello log")
    status, headers, _ = await call(
        http, "GET", f"{fake.url}/repos/{REPO}/actions/jobs/{job['id']}/logs", token=fake.personal_token
    )
    assert status == 302 and headers["Location"].startswith(fake.blob_url + "/logs/")
    location = headers["Location"]
    assert (await call(http, "GET", location))[2] == b"hello log"
    assert fake.violations == []
    await call(http, "GET", location, headers={**HEADERS, "Authorization": "token leaked"})
    path = location.split("?")[0].removeprefix(fake.blob_url)
    assert fake.violations == [f"the Authorization header reached the blob host ({path})"]
    fake.violations.clear()
    assert (await call(http, "GET", location.split("?")[0]))[0] == 403  # unsigned


async def test_faults_are_applied_in_order_then_cleared(fake_github, http):
    fake = fake_github
    fake.add_repo(REPO)
    url = f"{fake.url}/repos/{REPO}/labels/flaky"
    fake.fail("issues/get-label", 502, times=2)
    fake.rate_limit("issues/get-label", retry_after=9)
    statuses = [(await call(http, "GET", url, token=fake.personal_token))[:2] for _ in range(4)]
    assert [s for s, _ in statuses] == [502, 502, 403, 404]
    assert statuses[2][1]["Retry-After"] == "9"
    # aiohttp itself may retry an idempotent request once on a dropped connection: drop a few
    fake.drop("issues/get-label", times=3)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call(http, "GET", url, token=fake.personal_token)
    assert [r.status for r in fake.requests][4:] in ([None], [None, None])
    fake.clear_faults()
    assert (await call(http, "GET", url, token=fake.personal_token))[0] == 404


@pytest.mark.parametrize(
    "path",
    sorted(
        p.name
        for p in (__import__("pathlib").Path(__file__).parent / "fixtures/github/webhooks").glob("*.json")
    ),
)
def test_webhook_fixtures_match_githubs_payload_schemas(fake_github, path):
    api = fake_github.spec
    name = path.removesuffix(".json")
    event, _, rest = name.partition(".")
    action = rest.split(".")[0] if rest else ""
    key = "-".join(filter(None, [event.replace("_", "-"), action]))
    ref = pointer("x-webhooks", key, "post", "requestBody", "content", "application/json", "schema")
    payload = load_webhook(name)
    assert api.errors(ref, payload) == []
    broken = {**payload}
    broken.pop("repository" if event != "ping" else "hook_id", None)
    broken["sender"] = None
    assert api.errors(ref, broken)


def test_deliveries_are_signed_like_github_signs_them():
    payload = load_webhook("ping")
    headers, body = delivery("ping", payload, "s3cret", delivery_id="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    event = gidgethub.sansio.Event.from_http(
        {k.lower(): v for k, v in headers.items()}, body, secret="s3cret"
    )
    assert event.event == "ping" and event.delivery_id == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert event.data["zen"] == payload["zen"]
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Hub-Signature-256"] == sign(body, "s3cret") == f"sha256={expected}"
    with pytest.raises(gidgethub.ValidationFailure):
        gidgethub.sansio.Event.from_http({k.lower(): v for k, v in headers.items()}, body, secret="other")


async def test_payload_helpers_point_real_payloads_at_the_fake_state(fake_github):
    fake = fake_github
    fake.add_repo(REPO, installation_id=31)
    run = fake.add_run(REPO, head_sha="b" * 40, head_branch="topic")
    own = fake.add_pull(REPO, head_sha="b" * 40, head_ref="topic")
    fake.add_pull(REPO, head_sha="b" * 40, head_ref="topic", head_owner="forker")
    payload = fake.workflow_run_payload(REPO, run)
    assert payload["installation"]["id"] == 31
    assert [pr["number"] for pr in payload["workflow_run"]["pull_requests"]] == [own["number"]]
    assert payload["workflow_run"]["id"] == run and payload["repository"]["full_name"] == REPO
    ref = pointer(
        "x-webhooks", "workflow-run-completed", "post", "requestBody", "content", "application/json", "schema"
    )
    assert fake.spec.errors(ref, payload) == []
    comment = fake.issue_comment_payload(REPO, own["number"], "/flakebot retry", user="maintainer")
    assert comment["issue"]["pull_request"]["html_url"].endswith(f"/pull/{own['number']}")
    assert comment["comment"]["body"] == "/flakebot retry" and comment["sender"]["login"] == "maintainer"
    assert len(fake.comments_on(REPO, own["number"])) == 1
    ref = pointer(
        "x-webhooks", "issue-comment-created", "post", "requestBody", "content", "application/json", "schema"
    )
    assert fake.spec.errors(ref, comment) == []
