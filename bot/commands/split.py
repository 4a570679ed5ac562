"""``flakebot split``: a saved CI job log (or test report) -> per-test failure records as JSONL."""

from __future__ import annotations

import io
import logging
import os
import sys

import click

from bot.split import FORMATS

EXAMPLES = """
\b
Examples:
  flakebot split job.log                              # auto-detect the format
  flakebot split job.log.gz --job "test (ubuntu)"     # gzip is fine; name the job
  flakebot split report.xml                           # JUnit XML works too
  flakebot split --format pytest - < ci-output.txt    # '-' reads stdin
  flakebot split job.log --known-issues naughty.jsonl --image fedora-40
  flakebot split job.log | flakebot classify --model models/ -
\b
Formats: TAP (Cockpit), pytest, unittest, go test, Jest, mozharness (Mozilla's
TEST-UNEXPECTED-* logs), JUnit XML, GitLab's test report JSON; GitHub Actions and
GitLab job-log wrappers (timestamps, sections, colours) are removed first. A log in
no known format becomes one record named after the job with the end of the log.
"""


@click.command("split", epilog=EXAMPLES)
@click.argument("log", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="auto",
    show_default=True,
    help="The log's format; 'auto' tries every log format at once.",
)
@click.option("--job", help="Job name for the records (default: the file name).")
@click.option("--include-passed", is_flag=True, help="Also emit passing tests (status success, empty log).")
@click.option(
    "--flaky-attempts/--no-flaky-attempts",
    default=True,
    show_default=True,
    help="JUnit: a test that failed and passed when the runner re-ran it (Surefire's <flakyFailure>) "
    "also gives a failure record per failed run, with passed_on_retry and the label flake.",
)
@click.option(
    "--known-issues",
    "known_issues_file",
    type=click.Path(dir_okay=False),
    help="JSONL of known-issue patterns (Cockpit style); matches add known_issue: {issue, slug}.",
)
@click.option("--image", help="With --known-issues: only patterns for this OS image (or for none).")
@click.option(
    "--max-record-bytes",
    type=click.IntRange(min=256),
    default=65536,
    show_default=True,
    help="Cap on each record's log; the head and the tail are kept, with a marker where text was cut.",
)
def split(
    log: str,
    fmt: str,
    job: str | None,
    include_passed: bool,
    flaky_attempts: bool,
    known_issues_file: str | None,
    image: str | None,
    max_record_bytes: int,
) -> None:
    """Split a CI job LOG into one JSON record per failing test, on stdout.

    Each record has status, test, log (the failing part, capped), job, format,
    lines ([first, last] in LOG) and truncated; a JUnit test the runner re-ran
    also retries, and passed_on_retry when it failed and then passed. A one-line summary and any
    warnings (invalid UTF-8, binary data, cut lines, truncated log) go to stderr.
    """
    from bot.known_issues import KnownIssues, KnownIssuesError
    from bot.records import write_jsonl
    from bot.split import SplitError, SplitStats, split_log

    known = None
    if known_issues_file:
        try:
            known = KnownIssues.load(known_issues_file)
        except KnownIssuesError as exc:
            raise click.ClickException(str(exc)) from None
    stats = SplitStats()
    matched = 0

    def annotated():
        nonlocal matched
        for record in split_log(
            log,
            fmt=fmt,
            job=job,
            max_record_bytes=max_record_bytes,
            include_passed=include_passed,
            stats=stats,
            flaky_attempts=flaky_attempts,
        ):
            if known is not None and record["status"] in ("failure", "error"):
                hit = known.match(record["log"], image=image)
                if hit is not None:
                    record["known_issue"] = {"issue": hit.issue, "slug": hit.slug}
                    matched += 1
            yield record

    out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", errors="replace", newline="\n")
    split_logger = logging.getLogger("bot.split")
    level = split_logger.level
    split_logger.setLevel(logging.ERROR)  # the warnings are listed once at the end instead
    try:
        write_jsonl(annotated(), out)
        out.flush()
    except SplitError as exc:
        raise click.ClickException(str(exc)) from None
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    finally:
        split_logger.setLevel(level)
        out.detach()
    summary = stats.summary()
    if known is not None:
        summary += f"; {matched} known issue(s) matched"
    for warning in stats.warnings:
        click.echo(f"flakebot split: warning: {warning}", err=True)
    click.echo(f"flakebot split: {summary}", err=True)
