"""Each step of the data path is timed in ``flakebot_step_seconds`` (end to end, real HTTP and SQLite)."""

from __future__ import annotations

import random

from prometheus_client.parser import text_string_to_metric_families

from tests.ci_logs import cause, real_bug
from tests.test_e2e_github import REPO, bot, model_dir, seed_run, send, settings, settle  # noqa: F401 - fixtures used below

STEPS = ("fetch", "split", "classify", "score", "act")


async def step_metrics(client) -> tuple[dict[str, float], dict[str, float], float]:
    """Observations and seconds per step, and the pipeline's total seconds."""
    text = await (await client.get("/metrics")).text()
    counts: dict[str, float] = {}
    sums: dict[str, float] = {}
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "flakebot_step_seconds_count":
                counts[sample.labels["step"]] = sample.value
            elif sample.name == "flakebot_step_seconds_sum":
                sums[sample.labels["step"]] = sample.value
            elif sample.name == "flakebot_pipeline_seconds_sum":
                total = sample.value
    return counts, sums, total


async def test_every_step_of_a_failed_and_then_a_green_run_is_timed(bot, fake_github):  # noqa: F811
    rng = random.Random(21)
    failures = [
        ("tests/test_new.py::test_fetch", cause("reset", rng)),
        ("tests/test_cart.py::test_sum", real_bug(rng)),
    ]
    run = seed_run(fake_github, failures, passes=["tests/test_new.py::test_ok"])
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    await settle(bot)

    counts, sums, total = await step_metrics(bot)
    # one failed job: its log is fetched and split; the test reports are looked for once
    assert counts == {"fetch": 2, "split": 1, "classify": 1, "score": 1, "act": 1}
    assert all(sums[step] > 0 for step in STEPS)
    assert sum(sums.values()) <= total  # the steps are parts of the pipeline's time, never more

    seed_run(
        fake_github, [], attempt=2, conclusion="success", run_id=run, passes=["tests/test_new.py::test_fetch"]
    )
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    await settle(bot)
    counts, _, _ = await step_metrics(bot)
    # a green run: no failed job log to fetch or split, nothing to classify
    assert counts == {"fetch": 3, "split": 1, "classify": 1, "score": 2, "act": 2}
