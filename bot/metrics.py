"""Prometheus metrics of one flakebot process (``GET /metrics``), in the registry of its app."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

CONTENT_TYPE = CONTENT_TYPE_LATEST


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.events = Counter(
            "flakebot_webhook_events",
            "Webhook deliveries received",
            ["forge", "event", "outcome"],
            registry=r,
        )
        self.failures = Counter(
            "flakebot_failures_judged", "Test failures judged", ["forge", "verdict"], registry=r
        )
        self.retries = Counter(
            "flakebot_retries", "Runs re-run because every failure was a flake", ["forge"], registry=r
        )
        self.comments = Counter(
            "flakebot_comments", "PR/MR comments written (created or edited)", ["forge"], registry=r
        )
        self.issues = Counter(
            "flakebot_quarantine_actions", "Quarantine issue actions", ["forge", "action"], registry=r
        )
        self.queue_depth = Gauge("flakebot_queue_depth", "Deliveries waiting or being processed", registry=r)
        self.unauthenticated_bytes = Gauge(
            "flakebot_webhook_unauthenticated_bytes",
            "Bytes held of webhook bodies whose signature is not checked yet (all requests)",
            registry=r,
        )
        self.classify_seconds = Histogram(
            "flakebot_classification_seconds",
            "Time to classify the failures of one job",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.pipeline_seconds = Histogram(
            "flakebot_pipeline_seconds",
            "Time from claiming a delivery to finishing it",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.commands = Counter(
            "flakebot_chatops_commands",
            "/flake commands by outcome (done, denied, error)",
            ["forge", "command", "outcome"],
            registry=r,
        )
        self.retrains = Counter(
            "flakebot_retrains",
            "Retrains by outcome (promoted, kept, refused, failed)",
            ["outcome"],
            registry=r,
        )
        self.backfills = Counter(
            "flakebot_backfills",
            "Backfills (reading a repository's CI history) by outcome (done, stopped)",
            ["outcome"],
            registry=r,
        )
        self.step_seconds = Histogram(
            "flakebot_step_seconds",
            "Time spent in each step of the data path (fetch, split, classify, score, act)",
            ["step"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.errors = Counter(
            "flakebot_delivery_errors", "Delivery processing attempts that failed", ["forge"], registry=r
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
