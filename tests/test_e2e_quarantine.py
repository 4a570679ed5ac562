"""The quarantine lifecycle end to end, on the fake GitHub and the fake GitLab.

The service runs as in production (aiohttp app, SQLite store, queue workers); CI runs arrive as signed
webhooks, the forges are real HTTP servers on loopback. A chronically flaky test (its history seeded in
the store: 40 runs on the default branch, alternating) gets one labelled issue, updated on new
evidence and never duplicated, closed after ``stable_runs_to_close`` passes, not reopened by more
passes, reopened when it fails again, left closed for the cool-down after a human closed it (which
ends its quarantine at once), and at most ``max_open`` issues are open.
"""

from __future__ import annotations

import copy
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import Settings
from bot.forge.gitlab import LABEL_COLOR
from bot.store import HistoryRun, open_store
from bot.web import CTX, create_app
from tests.ci_logs import actions_pytest_log
from tests.fakes.github import delivery, iso
from tests.fakes.gitlab import load_webhook
from tests.test_e2e_github import SECRET, settle

FLAKY = "tests/test_checkout.py::test_pay"
STEADY = "tests/test_checkout.py::test_total"
JOB = "tests (ubuntu)"
TIMEOUT = "TimeoutError: timed out waiting for http://127.0.0.1:8125/health after 30s"
CONFIG = "quarantine:\n  stable_runs_to_close: 3\n  max_open: {max_open}\n  cooldown_days: 21\n"


CAUSES = [TIMEOUT, "ConnectionResetError: [Errno 104] Connection reset by peer", "socket.gaierror: [Errno -3] "
          "Temporary failure in name resolution", "OSError: [Errno 16] Device or resource busy",
          "AssertionError: expected 200, got 503"]  # fmt: skip


def seed_flaky_history(
    data_dir,
    repo: str,
    branch: str,
    test: str,
    *,
    causes: int = 1,
    every: int = 2,
    job: str = JOB,
    runs: int = 40,
) -> None:
    """``runs`` earlier runs of ``test`` in ``job`` on the default branch, one every 12 hours; every
    ``every``-th one failed (with ``causes`` different messages in turn: more causes, a higher score)."""
    now = datetime.now(UTC)
    store = open_store(data_dir)
    rows = [
        HistoryRun(
            test=test,
            status="failed" if i % every == every - 1 else "passed",
            run_id=500_000 + i,
            job=job,
            revision=hashlib.sha256(f"{test} {i}".encode()).hexdigest()[:40],
            branch=branch,
            duration=2.5,
            message=CAUSES[(i // every) % causes] if i % every == every - 1 else None,
            url=f"https://ci.example.org/{repo}/runs/{500_000 + i}",
            created_at=(now - timedelta(hours=12 * (runs - i))).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        for i in range(runs)
    ]
    store.record_runs(repo, rows)
    store.close()


class GitHub:
    """Drives the fake GitHub: pushes to main whose workflow run has one job, JOB."""

    name = "github"
    full_name = "octo-org/octo-repo"
    branch = "main"

    def __init__(self, fake, app_key):
        self.fake, self.app_key = fake, app_key
        fake.add_repo(self.full_name)
        self.runs = 0

    def settings(self, data_dir, model_dir) -> Settings:
        return Settings(
            github_webhook_secret=SECRET,
            github_app_id=str(self.app_key.app_id),
            github_private_key=self.app_key.private_pem,
            github_api_url=self.fake.url,
            data_dir=data_dir,
            model_dir=model_dir,
            workers=2,
        )

    def configure(self, text: str) -> None:
        self.fake.add_file(self.full_name, ".github/flakebot.yml", text)

    async def run(
        self, client, failures=(), passes=(), *, again: int | None = None, jobs=None, wait: bool = True
    ) -> int:
        """One finished workflow run of a new commit (``jobs``: job name -> its failures; by default
        JOB with ``failures``), or the same run delivered again (``again``)."""
        if again is None:
            self.runs += 1
            jobs = jobs or {JOB: failures}
            conclusion = "failure" if any(jobs.values()) else "success"
            run_id = self.fake.add_run(
                self.full_name, head_sha=uuid.uuid4().hex + "0" * 8, head_branch="main", conclusion=conclusion
            )
            for name, failed in jobs.items():
                log = actions_pytest_log(failed, passes, seed=self.runs) if failed else b"all passed\n"
                self.fake.add_job(
                    self.full_name, run_id, name, conclusion="failure" if failed else "success", log=log
                )
        else:
            run_id = again
        headers, body = delivery(
            "workflow_run", self.fake.workflow_run_payload(self.full_name, run_id), SECRET
        )
        response = await client.post("/github", data=body, headers=headers)
        assert response.status == 202, await response.text()
        if wait:
            await settle(client)
        return run_id

    def job_url(self, run_id: int) -> str:
        (job,) = [
            j
            for j in self.fake.repo(self.full_name).jobs.values()
            if j["run_id"] == run_id and j["name"] == JOB
        ]
        return job["html_url"]

    def issues(self) -> list[dict]:
        return [
            {
                "number": i["number"],
                "title": i["title"],
                "state": i["state"],
                "body": i["body"],
                "labels": [label["name"] for label in i["labels"]],
                "closed_by": (i.get("closed_by") or {}).get("login"),
                "url": i["html_url"],
                "assignees": [a["login"] for a in i.get("assignees") or []],
            }
            for i in self.fake.repo(self.full_name).issues.values()
            if "pull_request" not in i
        ]

    def add_code_owners(self, text: str, members: list[str]) -> None:
        self.fake.add_file(self.full_name, ".github/CODEOWNERS", text)
        for login in members:
            self.fake.set_role(self.full_name, login, "write")

    def notes(self, number: int) -> list[str]:
        return [c["body"] for c in self.fake.comments_on(self.full_name, number)]

    def close_by_human(self, number: int, when: datetime) -> None:
        issue = self.fake.repo(self.full_name).issues[number]
        issue.update(state="closed", state_reason="completed", closed_at=iso(when.timestamp()))
        issue["closed_by"] = self.fake._user("alice")

    def add_foreign_issue(self, title: str, label: str) -> None:
        self.fake.add_issue(self.full_name, title, labels=(label,))

    def writes(self) -> list[str]:
        """The forge writes in order: label, issue (created), edit (body/state), note."""
        kinds = {"issues/create-label": "label", "issues/create": "issue", "issues/update": "edit",
                 "issues/create-comment": "note"}  # fmt: skip
        return [kinds[r.operation] for r in self.fake.requests if r.operation in kinds]

    def label_made_by_flakebot(self, label: str) -> bool:
        return label in self.fake.repo(self.full_name).labels and not self.fake.dropped_labels

    def bot(self) -> str:
        return f"{self.fake.app_slug}[bot]"

    def slow_issue_list(self, seconds: float, times: int) -> None:
        self.fake.delay("issues/list-for-repo", seconds, times=times)


class GitLab:
    """Drives the fake GitLab: push pipelines on master (the project's default branch), one job."""

    name = "gitlab"
    full_name = "gitlab-org/gitlab-test"
    branch = "master"

    def __init__(self, fake):
        self.fake = fake
        self.project = fake.add_project(self.full_name, id=1, default_branch="master")
        self.human = fake.add_user("alice")
        self.payloads: dict[int, dict] = {}

    def settings(self, data_dir, model_dir) -> Settings:
        return Settings(
            gitlab_url=self.fake.url,
            gitlab_token=self.fake.token,
            gitlab_webhook_secret=self.fake.webhook_secret,
            data_dir=data_dir,
            model_dir=model_dir,
            workers=2,
        )

    def configure(self, text: str) -> None:
        self.fake.add_file(self.project, ".flakebot.yml", text.encode())

    async def run(
        self, client, failures=(), passes=(), *, again: int | None = None, jobs=None, wait: bool = True
    ) -> int:
        if again is None:
            jobs = jobs or {JOB: failures}
            status = "failed" if any(jobs.values()) else "success"
            payload = load_webhook("pipeline_failed_mr")
            del payload["merge_request"], payload["source_pipeline"]
            pipeline_id = self.fake.next_id()
            sha = uuid.uuid4().hex + "0" * 8
            payload["object_attributes"].update(
                id=pipeline_id, iid=pipeline_id, ref="master", sha=sha, before_sha=sha, source="push",
                status=status, name=None, url=f"{self.fake.url}/{self.full_name}/-/pipelines/{pipeline_id}",
            )  # fmt: skip
            template, payload["builds"], traces = payload["builds"][1], [], {}
            for name, failed in jobs.items():
                build = copy.deepcopy(template)
                build.update(id=self.fake.next_id(), name=name, stage="test", failure_reason=None,
                             status="failed" if failed else "success")  # fmt: skip
                payload["builds"].append(build)
                traces[name] = (
                    actions_pytest_log(failed, passes, seed=pipeline_id) if failed else b"all passed\n"
                )
            self.fake.seed_from_pipeline_hook(payload, traces=traces)
            self.payloads[pipeline_id] = payload
        else:
            pipeline_id = again
        headers, body = self.fake.delivery("Pipeline Hook", self.payloads[pipeline_id])
        response = await client.post("/gitlab", data=body, headers=headers)
        assert response.status == 202, await response.text()
        if wait:
            await settle(client)
        return pipeline_id

    def job_url(self, pipeline_id: int) -> str:
        (job,) = [
            j for j in self.project.jobs.values() if j["pipeline"]["id"] == pipeline_id and j["name"] == JOB
        ]
        return job["web_url"]

    def issues(self) -> list[dict]:
        return [
            {
                "number": i["iid"],
                "title": i["title"],
                "state": "closed" if i["state"] == "closed" else "open",
                "body": i["description"],
                "labels": list(i["labels"]),
                "closed_by": (i.get("closed_by") or {}).get("username"),
                "url": i["web_url"],
                "assignees": [a["username"] for a in i.get("assignees") or []],
            }
            for i in self.project.issues.values()
        ]

    def add_code_owners(self, text: str, members: list[str]) -> None:
        self.fake.add_file(self.project, ".gitlab/CODEOWNERS", text.encode())
        self.fake.add_user("ghost")  # a user, but no member of the project: GitLab does not assign them
        users = {user["username"]: user for user in self.fake.users.values()}
        for login in members:
            self.fake.add_member(self.project, users.get(login) or self.fake.add_user(login), 30)

    def notes(self, number: int) -> list[str]:
        return [n["body"] for n in self.project.issue_notes[number]]

    def close_by_human(self, number: int, when: datetime) -> None:
        stamp = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.project.issues[number].update(
            state="closed", closed_at=stamp, closed_by=self.fake._user_brief(self.human)
        )

    def add_foreign_issue(self, title: str, label: str) -> None:
        self.fake.add_issue(self.project, title, labels=(label,))

    def writes(self) -> list[str]:
        out = []
        for r in self.fake.requests:
            if r.method == "POST" and r.path.endswith("/labels"):
                out.append("label")
            elif r.method == "POST" and r.path.endswith("/issues"):
                out.append("issue")
            elif r.method == "PUT" and "/issues/" in r.path:
                out.append("edit")
            elif r.method == "POST" and r.path.endswith("/notes") and "/issues/" in r.path:
                out.append("note")
        return out

    def label_made_by_flakebot(self, label: str) -> bool:
        return any(lb["name"] == label and lb["color"] == LABEL_COLOR for lb in self.project.labels)

    def bot(self) -> str:
        return self.fake.bot["username"]

    def slow_issue_list(self, seconds: float, times: int) -> None:
        self.fake.slow("GET", rf"/projects/{self.project.id}/issues", delay=seconds, times=times)


@pytest.fixture(params=["github", "gitlab"])
def forge(request):
    if request.param == "github":
        return GitHub(request.getfixturevalue("fake_github"), request.getfixturevalue("github_app_key"))
    return GitLab(request.getfixturevalue("fake_gitlab"))


@pytest.fixture
async def start(aiohttp_client, forge, tmp_path):
    """``await start()`` runs the service against ``forge`` (seed the store before)."""

    async def go():
        return await aiohttp_client(create_app(forge.settings(tmp_path / "data", tmp_path / "model")))

    return go


async def quarantine_json(client, forge) -> list[str]:
    return [entry["test"] for entry in await quarantine_entries(client, forge, full=True)]


async def quarantine_entries(client, forge, full=False) -> list[dict]:
    """The entries of GET /quarantine.json (without the fields that change with time, unless ``full``)."""
    response = await client.get("/quarantine.json", params={"repo": f"{forge.name}:{forge.full_name}"})
    assert response.status == 200
    entries = (await response.json())["tests"]
    return entries if full else [{k: e[k] for k in ("test", "scope") if k in e} for e in entries]


async def test_the_quarantine_lifecycle(forge, start, tmp_path):
    repo = f"{forge.name}:{forge.full_name}"
    seed_flaky_history(tmp_path / "data", repo, forge.branch, FLAKY)
    forge.configure(CONFIG.format(max_open=7))
    client = await start()
    fail = ([(FLAKY, TIMEOUT)], [STEADY])

    # a new failure of a chronically flaky test: one labelled issue with the evidence
    first = await forge.run(client, *fail)
    (issue,) = forge.issues()
    assert issue["title"] == f"Flaky test: {FLAKY}" and issue["state"] == "open"
    assert issue["labels"] == ["flaky-test"] and forge.label_made_by_flakebot("flaky-test")
    assert forge.writes()[:2] == ["label", "issue"]  # the label first: GitHub drops unknown ones
    body = issue["body"]
    assert body.startswith("<!-- flakebot:quarantine id=") and f"| Test | `{FLAKY}` |" in body
    assert "| Flakiness score | 0.7" in body and "**quarantine**" in body
    assert "| intermittency | 0.97 |" in body and "| rerun pass rate | not measured |" in body
    assert f"(<{forge.job_url(first)}>)" in body and "TimeoutError: timed out" in body
    assert "(3 close this issue)" in body
    assert await quarantine_json(client, forge) == [FLAKY]
    page = await (await client.get("/", params={"repo": repo})).text()
    assert f'<a href="{issue["url"]}">#{issue["number"]}</a>' in page

    # the same run delivered again changes nothing; a new failure updates the one issue
    await forge.run(client, again=first)
    assert forge.writes() == ["label", "issue"]
    second = await forge.run(client, *fail)
    (issue,) = forge.issues()
    assert forge.writes() == ["label", "issue", "edit"]
    assert f"(<{forge.job_url(second)}>)" in issue["body"] and f"(<{forge.job_url(first)}>)" in issue["body"]

    # stable for stable_runs_to_close runs: closed by flakebot, with a note; further passes do not reopen
    for _ in range(2):
        await forge.run(client, passes=[FLAKY, STEADY])
    assert forge.issues()[0]["state"] == "open"
    await forge.run(client)
    (issue,) = forge.issues()
    assert issue["state"] == "closed" and issue["closed_by"] == forge.bot()
    assert "passed 3 runs in a row" in forge.notes(issue["number"])[-1]
    assert await quarantine_json(client, forge) == []
    await forge.run(client)
    assert forge.issues()[0]["state"] == "closed"

    # flaky again: the same issue is reopened, not filed again
    await forge.run(client, *fail)
    (issue,) = forge.issues()
    assert issue["state"] == "open" and "flaky again" in forge.notes(issue["number"])[-1]
    assert await quarantine_json(client, forge) == [FLAKY]

    # a human closes it: the quarantine ends, and flakebot leaves it closed for the cool-down
    forge.close_by_human(issue["number"], datetime.now(UTC) - timedelta(days=2))
    writes = len(forge.writes())
    await forge.run(client, *fail)
    assert [i["state"] for i in forge.issues()] == ["closed"] and len(forge.writes()) == writes
    assert await quarantine_json(client, forge) == []
    # ... and reopens it once the cool-down is over
    forge.close_by_human(issue["number"], datetime.now(UTC) - timedelta(days=22))
    await forge.run(client, *fail)
    assert [(i["number"], i["state"]) for i in forge.issues()] == [(issue["number"], "open")]
    assert forge.writes().count("issue") == 1  # never a second issue


async def test_at_most_max_open_issues_most_flaky_first(forge, start, tmp_path):
    repo = f"{forge.name}:{forge.full_name}"
    # all three are recommended quarantine; the more causes, the flakier; names sort the other way
    tests = {"tests/test_api.py::test_a": 1, "tests/test_api.py::test_b": 3, "tests/test_api.py::test_c": 5}
    for test, causes in tests.items():
        seed_flaky_history(tmp_path / "data", repo, forge.branch, test, causes=causes)
    forge.configure(CONFIG.format(max_open=2))
    forge.add_foreign_issue(
        "Flaky network in the staging cluster", "flaky-test"
    )  # not flakebot's: not counted
    client = await start()
    await forge.run(client, [(test, TIMEOUT) for test in tests])

    scores = await client.server.app[CTX].store.scores(repo)
    assert {s["test"]: s["score"]["recommendation"]["action"] for s in scores} == dict.fromkeys(
        tests, "quarantine"
    )
    flakiest = [s["test"] for s in scores][:2]
    assert sorted(flakiest) == ["tests/test_api.py::test_b", "tests/test_api.py::test_c"]
    ours = sorted(i["title"] for i in forge.issues() if i["title"].startswith("Flaky test: "))
    assert ours == [f"Flaky test: {t}" for t in sorted(flakiest)]
    assert sorted(await quarantine_json(client, forge)) == sorted(flakiest)
    # a new failure of the third opens nothing while two are open
    await forge.run(client, [("tests/test_api.py::test_a", TIMEOUT)])
    assert len([i for i in forge.issues() if i["title"].startswith("Flaky test: ")]) == 2


async def test_a_test_is_quarantined_in_the_jobs_where_it_is_flaky(forge, start, tmp_path):
    """One issue per test, listing the jobs it is quarantined in (issue 13): a job joins when the test is
    flaky there, leaves once it passed stable_runs_to_close runs there; the list carries the scope."""
    repo = f"{forge.name}:{forge.full_name}"
    windows, macos = "tests (windows)", "tests (macos)"
    seed_flaky_history(tmp_path / "data", repo, forge.branch, FLAKY, causes=5)
    seed_flaky_history(tmp_path / "data", repo, forge.branch, FLAKY, causes=3, job=windows)
    seed_flaky_history(tmp_path / "data", repo, forge.branch, FLAKY, every=10**6, job=macos)  # always passes
    forge.configure(CONFIG.format(max_open=7))
    client = await start()
    await forge.run(
        client, jobs={JOB: [(FLAKY, TIMEOUT)], windows: [(FLAKY, TIMEOUT)], macos: []}, passes=[FLAKY]
    )
    (issue,) = forge.issues()
    assert (
        issue["state"] == "open"
        and f"| Quarantined in | `{JOB}`, `{windows}` (it runs as usual" in issue["body"]
    )
    assert await quarantine_entries(client, forge) == [{"test": FLAKY, "scope": {"jobs": [JOB, windows]}}]
    # passes on ubuntu while it keeps failing on windows: ubuntu leaves the scope, the issue stays open
    for _ in range(3):
        await forge.run(client, jobs={JOB: [], windows: [(FLAKY, TIMEOUT)], macos: []})
    (issue,) = forge.issues()
    assert issue["state"] == "open" and f"| Quarantined in | `{windows}` (it runs as usual" in issue["body"]
    assert await quarantine_entries(client, forge) == [{"test": FLAKY, "scope": {"jobs": [windows]}}]
    page = await (await client.get("/", params={"repo": repo})).text()
    assert (
        page.count(f'>#{issue["number"]}</a> <span class="muted">(other jobs)</span>') == 2
    )  # ubuntu, macos
    for _ in range(3):
        await forge.run(client, jobs={JOB: [], windows: [], macos: []})
    assert forge.issues()[0]["state"] == "closed"
    assert "passed 3 runs in a row in every job it was quarantined in" in forge.notes(issue["number"])[-1]
    assert await quarantine_entries(client, forge) == []


async def test_a_quarantine_expires_without_new_failures(forge, start, tmp_path):
    """Issue 13: a quarantine nothing renewed for expire_days leaves the list at once, and its issue is
    closed at the next run of the repository, whichever tests it ran."""
    repo = f"{forge.name}:{forge.full_name}"
    seed_flaky_history(tmp_path / "data", repo, forge.branch, FLAKY)
    forge.configure(CONFIG.format(max_open=7) + "  expire_days: 10\n")
    client = await start()
    await forge.run(client, [(FLAKY, TIMEOUT)], [STEADY])
    (issue,) = forge.issues()
    expires = (datetime.now(UTC) + timedelta(days=10)).strftime("%Y-%m-%d")
    assert (
        f"| Expires | {expires}, unless it fails again there (each failure renews it for 10 days) |"
        in issue["body"]
    )
    (entry,) = (await (await client.get("/quarantine.json")).json())["tests"]
    assert entry["expires_at"].startswith(expires)
    # eleven days pass without a failure of the test (its history and quarantine dated back)
    store = client.server.app[CTX].store.store
    with store.db.conn:
        store.db.execute("UPDATE runs SET created_at = '2000-01-01T00:00:00Z' WHERE test = ?", [FLAKY])
        store.db.execute("UPDATE quarantine SET since = '2000-01-01T00:00:00Z', "
                         "expires_at = '2000-01-11T00:00:00Z' WHERE test = ?", [FLAKY])  # fmt: skip
    assert await quarantine_json(client, forge) == []  # out of the list at once
    await forge.run(client, passes=[STEADY], jobs={"lint": []})  # a run that does not even run the test
    (issue,) = forge.issues()
    assert issue["state"] == "closed" and issue["closed_by"] == forge.bot()
    assert forge.notes(issue["number"])[-1].startswith(
        "The quarantine expired: no failure in a quarantined job and no renewal since 2000-01-01 (10 days)"
    )


async def test_a_new_quarantine_issue_is_assigned_to_the_code_owners(forge, start, tmp_path):
    repo = f"{forge.name}:{forge.full_name}"
    seed_flaky_history(tmp_path / "data", repo, forge.branch, FLAKY)
    forge.configure(CONFIG.format(max_open=7))
    forge.add_code_owners("*.md @docs-team\n/tests/ @alice @ghost @octo-org/qa\n", ["alice"])
    client = await start()
    await forge.run(client, [(FLAKY, TIMEOUT)], [STEADY])
    (issue,) = forge.issues()
    assert issue["assignees"] == ["alice"]  # @ghost cannot be assigned; a team never is
    assert (
        "| Code owners | `alice`, `ghost` (assigned); `octo-org/qa` (a team or group cannot be assigned)"
        in issue["body"]
    )
    assert "@alice" not in issue["body"] and "@octo-org" not in issue["body"]  # named, never mentioned


async def test_two_runs_finishing_together_open_one_issue(forge, start, tmp_path):
    """Both workers see no issue yet while the forge is slow to list them; only one may open it."""
    seed_flaky_history(tmp_path / "data", f"{forge.name}:{forge.full_name}", forge.branch, FLAKY)
    forge.configure(CONFIG.format(max_open=7))
    client = await start()
    forge.slow_issue_list(0.4, times=2)
    await forge.run(client, [(FLAKY, TIMEOUT)], wait=False)
    await forge.run(client, [(FLAKY, TIMEOUT)])
    await settle(client)
    assert [i["title"] for i in forge.issues()] == [f"Flaky test: {FLAKY}"]
