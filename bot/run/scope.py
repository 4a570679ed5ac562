"""What every stage of one run needs, gathered once per run and passed down: :class:`RunScope`.

The forge, the run and its latest jobs, the repository's settings (``.github/flakebot.yml`` /
``.flakebot.yml``), and, fetched the first time a stage asks and then kept, the run's changes (open
PRs/MRs) and the repository's flake model. Chat-ops builds one for each run it re-runs.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.context_managers import Timer

from bot.config import CONFIG_PATHS, RepoConfig, parse_repo_config
from bot.context import Context
from bot.forge.base import Change, Forge, ForgeError, Job, RateLimited, Repo, Run

log = logging.getLogger(__name__)


async def load_repo_config(ctx: Context, forge: Forge, repo: Repo) -> RepoConfig:
    """The repository's flakebot settings (safe mode, with the error, when they are invalid:
    ``bot.config.parse_repo_config``). When the file cannot be read (the forge failed), the settings
    last read for the repository apply; when none were ever read, flakebot comments only (safe mode):
    never the defaults, which re-run and quarantine what the repository may have switched off."""
    path = CONFIG_PATHS[repo.forge]
    try:
        text = await forge.read_file(repo, path)
    except RateLimited:
        raise  # the delivery waits in the queue: nothing is decided on settings not read
    except ForgeError as exc:
        last = await ctx.store.last_config(repo.key)
        if last is not None:
            log.warning("%s: cannot read %s (%s): using the settings read at %s", repo.full_name, path, exc,
                        last["read_at"])  # fmt: skip
            return parse_repo_config(last["text"], where=path)
        log.warning("%s: cannot read %s (%s), and never could: commenting only", repo.full_name, path, exc)
        return RepoConfig(
            error=f"{path} could not be read ({exc}) and has not been read before, so flakebot comments only: "
            "it re-runs nothing and opens no issue until it can read it",
            unread=True,
        )
    await ctx.store.remember_config(repo.key, text)
    return parse_repo_config(text, where=path)


@dataclass
class RunScope:
    ctx: Context
    forge: Forge
    run: Run
    jobs: list[Job]
    config: RepoConfig
    _changes: list[Change] | None = field(default=None, repr=False)
    _model: tuple[Any] | None = field(default=None, repr=False)  # (model or None,) once asked
    model_problem: str | None = None  # why the active model is not the one judging (a note for the comment)
    _jobs_by_name: dict[str, Job] | None = field(default=None, repr=False)

    @classmethod
    async def open(cls, ctx: Context, forge: Forge, run: Run, config: RepoConfig | None = None) -> RunScope:
        """The scope of ``run``: its settings (read unless given) and its latest jobs."""
        if config is None:
            config = await load_repo_config(ctx, forge, run.repo)
        return cls(ctx, forge, run, await forge.list_jobs(run), config)

    @property
    def repo(self) -> str:
        """The repository's key in the store ("forge:owner/name")."""
        return self.run.repo.key

    @property
    def dry_run(self) -> bool:
        """Decide and log only (the service's or the repository's setting)."""
        return self.ctx.settings.dry_run or self.config.dry_run

    @property
    def failed_jobs(self) -> list[Job]:
        return [job for job in self.jobs if job.failed]

    @property
    def attempt(self) -> int:
        """The attempt that ran: the run's, or its jobs' when higher (GitLab counts attempts per job
        only); of a failed run, its failed jobs'."""
        jobs = self.failed_jobs if self.run.failed else self.jobs
        return max([self.run.attempt, *(job.attempt for job in jobs)])

    def job(self, name: str) -> Job | None:
        """The run's job of that name (None for a test report's name that is no job's)."""
        if self._jobs_by_name is None:
            self._jobs_by_name = {job.name: job for job in self.jobs}
        return self._jobs_by_name.get(name)

    def step(self, name: str) -> Timer:
        """Time a step of the run into ``flakebot_step_seconds`` (``with scope.step("score"): ...``)."""
        return self.ctx.metrics.step_seconds.labels(name).time()

    async def changes(self) -> list[Change]:
        """The open PRs/MRs of the run, asked of the forge once."""
        if self._changes is None:
            self._changes = await self.forge.changes_for_run(self.run)
        return self._changes

    async def model(self) -> Any:
        """The flake model that judges this repository (its own, else the shared one), loaded once;
        None when there is none. When the active version cannot be loaded, the one before it judges and
        :attr:`model_problem` says so (``ModelProvider.load``)."""
        if self._model is None:
            loaded = await asyncio.to_thread(self.ctx.models.load, self.repo)
            self._model, self.model_problem = (loaded.model,), loaded.problem
        return self._model[0]

    async def rerun_failed_jobs(self) -> bool:
        """Re-run the run's failed jobs, once per attempt whatever happens to this process: the intent
        is recorded before the forge is asked and the outcome after, so a delivery resumed after a
        crash between the two checks the run's attempt instead of asking again. True when the re-run
        was made now, False when an earlier processing made it (ForgeError when the forge refuses)."""
        store, repo, attempt = self.ctx.store, self.repo, self.attempt
        earlier = await store.begin_rerun(repo, self.run.id, attempt)
        if earlier == "made" or (earlier == "asked" and await self.forge.run_attempt(self.run) > attempt):
            await store.end_rerun(repo, self.run.id, attempt, "made")
            log.info("%s run %s attempt %s was re-run already (before an interruption): not again",
                     self.run.repo.full_name, self.run.id, attempt)  # fmt: skip
            return False
        try:
            await self.forge.retry_jobs(self.run, self.failed_jobs)
        except ForgeError:
            await store.end_rerun(repo, self.run.id, attempt, "refused")
            raise
        await store.end_rerun(repo, self.run.id, attempt, "made")
        self.ctx.metrics.retries.labels(self.run.repo.forge).inc()
        return True
