"""The main job on shipped sample data, for a machine without forge credentials.

``flakebot run`` without credentials replays Cockpit's 200 real failures of July 2017
(``bot/samples/cockpit-failures.jsonl.gz``) through the real pipeline: a model is trained on the older
60%, and the newer 40% arrive as CI runs of their pull requests, one run per revision with a job per
OS image, from :class:`SampleForge`, an in-memory forge. Every step runs as in production (split,
classify, score, decide, comment, retry, quarantine) and the store is real SQLite; only the forge is
local, and what the bot would have written to GitHub lands in files.
"""

from __future__ import annotations

import collections
import gzip
import json
import shutil
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from bot.config import Settings
from bot.context import Context, ModelProvider
from bot.forge.base import Change, Forge, Identity, Issue, Job, Note, Permission, Repo, Run, TestReport
from bot.model import FlakeClassifier
from bot.modelstore import ModelStore
from bot.run.flow import handle_run
from bot.store import open_store
from bot.store.adapters import ThreadedStore
from bot.training import train_and_save

SAMPLE = "cockpit-failures.jsonl.gz"
REPO = Repo(
    "github",
    "cockpit-project/cockpit",
    id=1,
    html_url="https://github.com/cockpit-project/cockpit",
    default_branch="main",
)


def sample_records() -> list[dict[str, Any]]:
    with resources.files("bot.samples").joinpath(SAMPLE).open("rb") as raw, gzip.open(raw, "rt") as fh:
        return sorted((json.loads(line) for line in fh), key=lambda r: r["date"])


class SampleForge(Forge):
    """A forge in memory: runs made from sample failures; notes and issues written to files."""

    name = "github"
    max_body_chars = 65_536

    def __init__(self, records: list[dict[str, Any]], out: Path):
        self.out = out
        self.notes: dict[int, Note] = {}
        self.issues: list[Issue] = []
        self.retried: list[int] = []
        self.runs: list[Run] = []
        self._jobs: dict[int, list[tuple[Job, bytes]]] = {}
        groups: dict[tuple[int, str], dict[str, list[dict[str, Any]]]] = collections.defaultdict(
            lambda: collections.defaultdict(list)
        )
        for r in records:
            groups[(r["pull"], r["revision"])][r["context"]].append(r)
        for number, ((pull, sha), contexts) in enumerate(groups.items(), start=1):
            run = Run(repo=REPO, id=number, sha=sha, branch=f"pull/{pull}", attempt=1, conclusion="failure",
                      html_url=f"{REPO.html_url}/pull/{pull}/checks", name="verify", event="pull_request",
                      change_numbers=[pull])  # fmt: skip
            jobs = []
            for index, (context, failures) in enumerate(sorted(contexts.items())):
                # Cockpit's TAP output: a header per test, its output, then "not ok N test"
                log = "\n".join(f"# {'-' * 70}\n# {f['test']}\n#\n{f['log']}" for f in failures)
                job = Job(
                    id=number * 100 + index,
                    name=context,
                    conclusion="failure",
                    html_url=f"{run.html_url}#{context}",
                    completed_at=max(f.get("date") or "" for f in failures) or None,  # when it ran, not now
                )
                jobs.append((job, log.encode()))
            self.runs.append(run)
            self._jobs[number] = jobs

    async def identity(self, repo: Repo) -> Identity:
        return Identity("flakebot[bot]")

    async def list_jobs(self, run: Run) -> list[Job]:
        return [job for job, _ in self._jobs[run.id]]

    async def job_log(self, job: Job, repo: Repo, max_bytes: int) -> AsyncIterator[bytes]:
        for candidate, log in self._jobs[job.id // 100]:
            if candidate.id == job.id:
                yield log[:max_bytes]

    async def test_reports(self, run: Run, max_bytes: int) -> list[TestReport]:
        return []

    async def changes_for_run(self, run: Run) -> list[Change]:
        return [
            Change(number=n, html_url=f"{REPO.html_url}/pull/{n}", head_sha=run.sha, head_ref=run.branch)
            for n in run.change_numbers
        ]

    async def read_file(self, repo: Repo, path: str, ref: str | None = None) -> str | None:
        return None

    async def upsert_note(self, repo: Repo, change: Change, marker: str, body: str) -> Note:
        note = self.notes.get(change.number) or Note(id=len(self.notes) + 1, body="", author="flakebot[bot]")
        note.body = body
        self.notes[change.number] = note
        (self.out / "comments").mkdir(parents=True, exist_ok=True)
        (self.out / "comments" / f"pull-{change.number}.md").write_text(body)
        return note

    async def reply(self, repo: Repo, change_number: int, body: str) -> Note:
        return await self.upsert_note(repo, Change(change_number, "", "", ""), "", body)

    async def acknowledge(self, repo: Repo, change_number: int, note_id: int) -> None:
        return None

    async def retry_jobs(self, run: Run, jobs: list[Job]) -> None:
        self.retried.append(run.id)

    async def ensure_labels(self, repo: Repo, labels: list[str]) -> None:
        return None

    async def find_issues(self, repo: Repo, label: str) -> list[Issue]:
        return [i for i in self.issues if label in i.labels]

    async def create_issue(self, repo: Repo, title: str, body: str, labels: list[str]) -> Issue:
        issue = Issue(
            len(self.issues) + 1,
            title,
            "open",
            f"{REPO.html_url}/issues/{len(self.issues) + 1}",
            list(labels),
            body,
        )
        self.issues.append(issue)
        (self.out / "issues").mkdir(parents=True, exist_ok=True)
        (self.out / "issues" / f"issue-{issue.number}.md").write_text(f"# {title}\n\n{body}")
        return issue

    async def update_issue(self, repo: Repo, number: int, *, body: str | None = None, state: str | None = None,
                           comment: str | None = None) -> Issue:  # fmt: skip
        issue = self.issues[number - 1]
        issue.body, issue.state = body or issue.body, state or issue.state
        return issue

    async def assign_issue(self, repo: Repo, number: int, users: list[str]) -> list[str]:
        return []  # the sample repository has no code owners

    async def permission(self, repo: Repo, user: str | int) -> Permission:
        return "admin"


async def replay(data_dir: Path, echo: TextIO) -> dict[str, Any]:
    """Train on the older 60% of the sample and replay the newer 40% as CI runs. Returns a summary."""
    demo = data_dir / "demo"
    shutil.rmtree(demo, ignore_errors=True)  # a fresh replay every time
    demo.mkdir(parents=True)
    records = sample_records()
    cut = int(len(records) * 0.6)
    train, later = records[:cut], records[cut:]
    model = FlakeClassifier()
    # as `flakebot train` does: a trial on the newest labelled failures chooses the retry threshold
    _, trained = train_and_save(
        ModelStore(demo / "model"),
        [model.slim(r) for r in train],
        {"trained_on": {"sources": [SAMPLE], "failures": len(train)}},
        model=model,
    )
    assert trained.trial is not None
    echo.write(
        f"trained a flake model on Cockpit's {len(train)} oldest sample failures: {model.n_clusters_} clusters, "
        f"{model.n_noise_} unclustered, {model.fit_seconds_:.1f}s\n"
        f"{trained.trial.retry_text()}\n"
        f"replaying the {len(later)} newer failures as CI runs of their pull requests...\n\n"
    )
    settings = Settings(data_dir=demo, model_dir=demo / "model")
    store = ThreadedStore(open_store(demo))
    ctx = Context(settings, store, ModelProvider(settings.model_dir))
    forge = SampleForge(later, demo)
    verdicts: collections.Counter[str] = collections.Counter()
    truth: collections.Counter[tuple[str, bool]] = collections.Counter()
    merged = {(r["revision"], r["test"]): r["merged"] for r in later}
    try:
        for run in forge.runs:
            decision = await handle_run(ctx, forge, run)
            assert decision is not None
            verdicts.update(decision.counts)
            for f in await store.failures_of_change(f"github:{REPO.full_name}", run.change_numbers[0]):
                if f["revision"] == run.sha:
                    truth[(f["verdict"], bool(merged.get((run.sha, f["test"]))))] += 1
            counts = ", ".join(f"{n} {v}" for v, n in sorted(decision.counts.items()))
            action = "re-run" if decision.retry else "no re-run"
            echo.write(
                f"  PR #{run.change_numbers[0]} {run.sha[:7]}: {counts or 'no failure found'} → {action}\n"
            )
    finally:
        await store.aclose()
    echo.write(
        f"\n{sum(verdicts.values())} failures judged: "
        + ", ".join(f"{n} {v}" for v, n in verdicts.most_common())
        + f"; {len(forge.retried)} of {len(forge.runs)} runs would have been re-run.\n"
        "Cockpit's own label (merged anyway = flake evidence) for each verdict: "
        + ", ".join(
            f"{v}: {truth[(v, True)]} merged / {truth[(v, False)]} not" for v in sorted({v for v, _ in truth})
        )
        + "\n"
        f"The comments flakebot would have written: {demo / 'comments'}/ (one per pull request)\n"
        f"The test history it recorded: flakebot scores --data-dir {demo}\n"
    )
    return {
        "verdicts": dict(verdicts),
        "retried": len(forge.retried),
        "runs": len(forge.runs),
        "comments": len(forge.notes),
        "retry_threshold": model.retry_threshold_,
    }
