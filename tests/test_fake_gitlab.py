"""The fake GitLab behaves like GitLab where the adapter depends on it (checked with a plain HTTP client)."""

from __future__ import annotations

import aiohttp

from tests.fakes.gitlab import FakeGitLab, load_webhook


async def get(fake: FakeGitLab, path: str, token: str | None = None, **params: str):
    headers = {"PRIVATE-TOKEN": fake.token if token is None else token}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{fake.url}/api/v4{path}", headers=headers, params=params) as response,
    ):
        return response.status, response.headers, await response.json()


async def test_lists_are_paginated_like_gitlab(fake_gitlab: FakeGitLab):
    proj = fake_gitlab.seed_from_pipeline_hook(load_webhook("pipeline_failed_mr"))
    status, headers, body = await get(fake_gitlab, f"/projects/{proj.id}/pipelines/31/jobs", per_page="2")
    assert status == 200 and len(body) == 2
    assert (headers["X-Page"], headers["X-Next-Page"], headers["X-Total"], headers["X-Total-Pages"]) == (
        "1",
        "2",
        "5",
        "3",
    )
    assert (
        'rel="next"' in headers["Link"]
        and f"{fake_gitlab.url}/api/v4/projects/1/pipelines/31/jobs?" in (headers["Link"])
    )
    assert [job["id"] for job in body] == [380, 379]  # newest first

    status, headers, body = await get(fake_gitlab, "/projects/1/pipelines/31/jobs", per_page="2", page="3")
    assert len(body) == 1 and headers["X-Next-Page"] == "" and 'rel="next"' not in headers["Link"]


async def test_project_is_found_by_id_or_encoded_path(fake_gitlab: FakeGitLab):
    fake_gitlab.add_project("group/sub/proj", id=7)
    assert (await get(fake_gitlab, "/projects/7/labels"))[0] == 200
    assert (await get(fake_gitlab, "/projects/group%2Fsub%2Fproj/labels"))[0] == 200
    assert (await get(fake_gitlab, "/projects/8/labels"))[0] == 404


async def test_wrong_token_gets_401(fake_gitlab: FakeGitLab):
    status, _, body = await get(fake_gitlab, "/user", token="nope")
    assert (status, body) == (401, {"message": "401 Unauthorized"})
    assert fake_gitlab.requests[-1].headers["PRIVATE-TOKEN-present"] == "True"


async def test_unknown_routes_and_unused_faults_are_reported(fake_gitlab: FakeGitLab):
    status, _, _ = await get(fake_gitlab, "/projects/1/environments")
    assert status == 404
    fake_gitlab.fail("GET", r"/never")
    assert fake_gitlab.problems() == [
        "GET /projects/1/environments: no such route in the fake",
        "fault status on GET /never fired 0 of 1 times",
    ]
    fake_gitlab.violations.clear()
    fake_gitlab.faults.clear()


async def test_seeding_from_a_pipeline_hook_matches_the_payload(fake_gitlab: FakeGitLab):
    payload = load_webhook("pipeline_failed_mr")
    proj = fake_gitlab.seed_from_pipeline_hook(payload, traces={"test-build": b"boom"})
    assert proj.data["path_with_namespace"] == "gitlab-org/gitlab-test"
    assert {job["name"]: job["status"] for job in proj.jobs.values()} == {
        build["name"]: build["status"] for build in payload["builds"]
    }
    assert proj.jobs[378]["started_at"] == "2016-08-12T15:26:12.000Z"
    assert proj.traces[378] == b"boom" and proj.mrs[1]["sha"] == payload["object_attributes"]["sha"]
