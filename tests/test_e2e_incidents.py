"""Infrastructure incidents end to end, on the fake GitHub and the fake GitLab (issue 13).

The service runs as in production (aiohttp app, SQLite store, queue workers, a trained model on disk);
failed runs of several pull/merge requests arrive as signed webhooks. The same network failure in
three changes within the window (``min_changes: 3``) is one incident: one labelled issue, updated as
more changes fail that way; those changes' comments say "infrastructure incident" with a link instead
of "flake"; their jobs are not re-run (the earlier ones, still called flakes, were); their failures
are set aside in the tests' histories; the history page shows the incident; and once no failure of
its kind arrived for the quiet period, the next run closes its issue.
"""

from __future__ import annotations

import random
import time
import uuid

import pytest

from bot.config import Settings
from bot.modelstore import ModelStore
from bot.split import split_log
from bot.training import interleave, train_and_save
from bot.web import CTX, create_app
from tests.ci_logs import actions_pytest_log, cause, gitlab_pytest_log, real_bug
from tests.fakes.github import delivery, iso
from tests.test_e2e_github import SECRET, settle
from tests.test_e2e_gitlab import PROJECT_ID, hook, mr_of, retried, seed_pipeline

CONFIG = "incidents:\n  min_changes: 3\n  window_minutes: 30\n  quiet_minutes: 60\n"
JOB = "tests (ubuntu)"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A model trained on earlier failures: network resets and timeouts were flakes, one-off bugs real."""
    rng = random.Random(3)
    records = []
    for i in range(40):
        flaky = i % 2 == 0
        message = cause(("reset", "timeout", "dns")[i % 3], rng) if flaky else real_bug(rng)
        test = f"tests/test_old{i}.py::test_thing_{i}"
        for make, job in ((actions_pytest_log, JOB), (gitlab_pytest_log, "pytest")):
            (record,) = split_log([make([(test, message)], seed=i)], job=job)
            records.append({**record, "label": "flake" if flaky else "real"})
    path = tmp_path_factory.mktemp("model")
    train_and_save(ModelStore(path), interleave(records), {"trained_on": {"failures": len(records)}})
    return path


class GitHub:
    name, full_name, mark = "github", "octo-org/octo-repo", "#"

    def __init__(self, fake, app_key):
        self.fake, self.app_key = fake, app_key
        fake.add_repo(self.full_name)
        fake.add_file(self.full_name, ".github/flakebot.yml", CONFIG)

    def settings(self, data_dir, model_dir) -> Settings:
        return Settings(github_webhook_secret=SECRET, github_app_id=str(self.app_key.app_id),
                        github_private_key=self.app_key.private_pem, github_api_url=self.fake.url,
                        data_dir=data_dir, model_dir=model_dir, workers=2)  # fmt: skip

    async def change_fails(self, client, failures, seed: int) -> int:
        """A new pull request whose run failed with ``failures``; its number."""
        sha = uuid.uuid4().hex + "0" * 8
        pull = self.fake.add_pull(self.full_name, head_sha=sha, head_ref=f"feature-{seed}")
        run = self.fake.add_run(self.full_name, head_sha=sha, head_branch=f"feature-{seed}")
        log = actions_pytest_log(failures, ["tests/test_ok.py::test_fine"], seed=seed)
        job = self.fake.add_job(self.full_name, run, JOB, conclusion="failure", log=log)
        job.update(started_at=iso(time.time() - 60), completed_at=iso())  # it failed just now
        await self._send(client, run)
        return pull["number"]

    async def main_passes(self, client) -> None:
        sha = uuid.uuid4().hex + "0" * 8
        run = self.fake.add_run(self.full_name, head_sha=sha, head_branch="main", conclusion="success")
        self.fake.add_job(self.full_name, run, JOB, conclusion="success", log=b"all passed\n")
        await self._send(client, run)

    async def _send(self, client, run) -> None:
        headers, body = delivery("workflow_run", self.fake.workflow_run_payload(self.full_name, run), SECRET)
        assert (await client.post("/github", data=body, headers=headers)).status == 202
        await settle(client)

    def comment(self, number: int) -> str:
        (body,) = [c["body"] for c in self.fake.comments_on(self.full_name, number)]
        return body

    def retries(self) -> int:
        return len(self.fake.calls("actions/re-run-workflow-failed-jobs"))

    def issues(self) -> list[dict]:
        return [{"number": i["number"], "state": i["state"], "title": i["title"], "body": i["body"],
                 "labels": [label["name"] for label in i["labels"]], "url": i["html_url"]}
                for i in self.fake.repo(self.full_name).issues.values() if "pull_request" not in i]  # fmt: skip

    def notes(self, number: int) -> list[str]:
        return [c["body"] for c in self.fake.comments_on(self.full_name, number)]


class GitLab:
    name, full_name, mark = "gitlab", "shop/api", "!"

    def __init__(self, fake):
        self.fake = fake
        self.project = fake.add_project(self.full_name, id=PROJECT_ID)
        fake.add_file(self.project, ".flakebot.yml", CONFIG.encode())

    def settings(self, data_dir, model_dir) -> Settings:
        return Settings(gitlab_url=self.fake.url, gitlab_token=self.fake.token,
                        gitlab_webhook_secret=self.fake.webhook_secret, data_dir=data_dir, model_dir=model_dir,
                        workers=2)  # fmt: skip

    async def change_fails(self, client, failures, seed: int) -> int:
        branch = f"feature-{seed}"
        _, pipeline = seed_pipeline(self.fake, {"pytest": failures}, passes=("tests/test_ok.py::test_fine",),
                                    branch=branch, sha=uuid.uuid4().hex + "0" * 8)  # fmt: skip
        for job in self.project.jobs.values():
            if job["pipeline"]["id"] == pipeline["id"]:  # it failed just now
                job.update(
                    started_at=iso(time.time() - 60).replace("Z", ".000Z"),
                    finished_at=iso().replace("Z", ".000Z"),
                )
        await self._send(client, hook(self.fake, self.project, pipeline, branch))
        return mr_of(self.project, branch)

    async def main_passes(self, client) -> None:
        pipeline = self.fake.add_pipeline(self.project, sha=uuid.uuid4().hex + "0" * 8, ref="main",
                                          status="success", source="push")  # fmt: skip
        self.fake.add_job(self.project, pipeline, "pytest", status="success", trace=b"all passed\n")
        await self._send(client, self.fake.pipeline_hook(self.project, pipeline["id"]))

    async def _send(self, client, payload) -> None:
        headers, body = self.fake.delivery("Pipeline Hook", payload)
        assert (await client.post("/gitlab", data=body, headers=headers)).status == 202
        await settle(client)

    def comment(self, number: int) -> str:
        (note,) = self.project.mr_notes[number]
        return note["body"]

    def retries(self) -> int:
        return len(retried(self.fake))

    def issues(self) -> list[dict]:
        return [{"number": i["iid"], "state": "closed" if i["state"] == "closed" else "open", "title": i["title"],
                 "body": i["description"], "labels": list(i["labels"]), "url": i["web_url"]}
                for i in self.project.issues.values()]  # fmt: skip

    def notes(self, number: int) -> list[str]:
        return [n["body"] for n in self.project.issue_notes[number]]


@pytest.fixture(params=["github", "gitlab"])
def forge(request):
    if request.param == "github":
        return GitHub(request.getfixturevalue("fake_github"), request.getfixturevalue("github_app_key"))
    return GitLab(request.getfixturevalue("fake_gitlab"))


@pytest.fixture
async def client(aiohttp_client, forge, model_dir, tmp_path):
    return await aiohttp_client(create_app(forge.settings(tmp_path / "data", model_dir)))


async def test_many_changes_failing_the_same_way_are_one_incident(forge, client):
    rng = random.Random(5)
    repo = f"{forge.name}:{forge.full_name}"
    store = client.server.app[CTX].store

    # two changes fail with a connection reset: flakes, re-run as usual
    first = await forge.change_fails(client, [("tests/test_a.py::test_pay", cause("reset", rng))], seed=1)
    await forge.change_fails(client, [("tests/test_b.py::test_refund", cause("reset", rng))], seed=2)
    assert ":repeat: **flake**" in forge.comment(first) and forge.retries() == 2
    assert forge.issues() == []

    # a third change within the window, another test, the same cause: an incident
    third = await forge.change_fails(client, [("tests/test_c.py::test_cart", cause("reset", rng))], seed=3)
    (issue,) = forge.issues()
    assert issue["state"] == "open" and issue["labels"] == ["infra-incident"]
    assert (
        issue["title"]
        == "Infrastructure incident: ConnectionResetError: [Errno 000] Connection reset by peer"
    )
    body = issue["body"]
    assert body.startswith("<!-- flakebot:incident sig=") and "**Open.** 3 changes" in body
    for test in ("test_a.py::test_pay", "test_b.py::test_refund", "test_c.py::test_cart"):
        assert test in body
    comment = forge.comment(third)
    link = f"[\\#{issue['number']}](<{issue['url']}>)"
    assert f"| :rotating_light: **incident** {link} |" in comment
    assert f"infrastructure incident #{issue['number']}: 3 changes failed the same way since" in comment
    assert (
        f"Opened infrastructure incident #{issue['number']}: 3 changes failed this way within 30 minutes."
        in comment
    )
    assert f"part of an open infrastructure incident (#{issue['number']}): retries pause" in comment
    assert forge.retries() == 2  # not re-run: it would fail again
    # the changes that failed this way before it opened say so now too (they were re-run then)
    earlier = forge.comment(first)
    assert f"| :rotating_light: **incident** {link} |" in earlier and ":repeat: **flake**" not in earlier
    # none of the three counts against its test's score: set aside in the history, the first two too
    for test in ("tests/test_a.py::test_pay", "tests/test_b.py::test_refund", "tests/test_c.py::test_cart"):
        (row,) = [r for r in await store.scores(repo) if r["test"] == test]
        assert row["score"]["failures"] == 0 and row["recent"][-1] == "skipped", (test, row)

    # a fourth change: the same failure joins the incident, a real bug beside it is judged as usual
    fourth = await forge.change_fails(client, [("tests/test_d.py::test_stock", cause("reset", rng)),
                                               ("tests/test_e.py::test_total", real_bug(rng))], seed=4)  # fmt: skip
    (issue,) = forge.issues()
    assert "**Open.** 4 changes" in issue["body"] and f"{forge.mark}{fourth}" in issue["body"]
    comment = forge.comment(fourth)
    assert "`tests/test_d.py::test_stock` | :rotating_light: **incident**" in comment
    assert "`tests/test_e.py::test_total` | :x: **real**" in comment and forge.retries() == 2

    # the history page shows it
    page = await (await client.get("/", params={"repo": repo})).text()
    assert "Infrastructure incidents" in page and f'<a href="{issue["url"]}">#{issue["number"]}</a>' in page
    assert "4 changes" in page and "ConnectionResetError" in page

    # an hour without a failure of its kind (its times dated back): the next run closes it
    with store.store.db.conn:
        for table, column in (
            ("incidents", "opened_at"),
            ("incidents", "last_seen"),
            ("incident_occurrences", "at"),
        ):
            store.store.db.execute(f"UPDATE {table} SET {column} = datetime({column}, '-2 hours')")  # noqa: S608
    await forge.main_passes(client)
    (issue,) = forge.issues()
    assert issue["state"] == "closed" and "**Over** since" in issue["body"]
    assert forge.notes(issue["number"])[-1].startswith("No new failure with this signature for 60 minutes")
    page = await (await client.get("/", params={"repo": repo})).text()
    assert "closed" in page.split("Infrastructure incidents", 1)[1]
    # over: the same failure is a flake again, and re-run
    fifth = await forge.change_fails(client, [("tests/test_f.py::test_ship", cause("reset", rng))], seed=5)
    assert ":repeat: **flake**" in forge.comment(fifth) and forge.retries() == 3
