"""pytest-flakebot, through real pytest runs (pytester) and a real HTTP server on loopback.

The plugin is the installed distribution (flakebot's ``make test`` installs ``plugins/pytest-flakebot``
in development mode), so its ``flakebot`` pytest11 entry point is tested as users get it."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pytest_flakebot import entry_key, item_keys, loads, masked

pytest_plugins = ["pytester"]

TESTS = """
import unittest
import pytest

def test_flaky():
    assert False

@pytest.mark.parametrize("x", [1, 2])
def test_param(x):
    assert x == 1

class TestC:
    def test_m(self):
        assert False

class U(unittest.TestCase):
    def test_u(self):
        self.assertTrue(False)

def test_other_failure():
    assert False

def test_ok():
    pass
"""

QUARANTINE = {
    "version": 1,
    "generated_at": "2024-06-01T12:00:00Z",
    "tests": [
        {"test": "tests/test_demo.py::test_flaky", "issue_url": "https://github.com/o/r/issues/12"},
        {"test": "test_demo.py::test_param", "repo": "o/r"},  # fewer leading directories, all params
        {"test": "TestC.test_m"},  # Class.method
        {"test": "test_u (tests.test_demo.U)"},  # unittest's shape
        {"test": "test_ok"},  # bare name: too ambiguous, ignored
        {"test": 12},  # malformed entry: reported, the rest still applies
    ],
}


# plugins of this environment that have nothing to do with the runs below, left out to keep them fast
UNRELATED = ("-p", "no:hypothesispytest", "-p", "no:asyncio", "-p", "no:aiohttp", "-p", "no:cacheprovider")


def run(pytester, *args):
    return pytester.runpytest(*UNRELATED, *args)


@pytest.fixture
def project(pytester):
    pytester.mkdir("tests")
    (pytester.path / "tests" / "test_demo.py").write_text(TESTS)
    return pytester


def write_list(pytester, data, name="quarantine.json"):
    path = pytester.path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.fixture
def server():
    """A real HTTP server on loopback answering GET with the configured status and body."""
    answers = {"status": 200, "body": json.dumps(QUARANTINE).encode()}
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(answers["status"])
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(answers["body"])

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", answers, hits
    httpd.shutdown()
    httpd.server_close()


def test_quarantined_tests_xfail_and_still_run(project):
    path = write_list(project, QUARANTINE)
    result = run(project, "-p", "pytest_flakebot", f"--flakebot-quarantine={path}", "-rxX")
    result.assert_outcomes(passed=1, failed=1, xfailed=4, xpassed=1)
    result.stdout.fnmatch_lines(
        [
            f"flakebot quarantine: 4 tests from {path} (mode xfail, 2 entries unusable)",
            "*unusable entry: entry 5: needs a non-empty 'test' string",
            "*unusable entry: 1 bare test names (no module or class) were ignored",
            "5 tests quarantined (xfail): tests/test_demo.py::test_flaky, *",
            "XFAIL tests/test_demo.py::test_flaky - quarantined by flakebot: https://github.com/o/r/issues/12",
            "XPASS tests/test_demo.py::test_param[[]1[]] - quarantined by flakebot",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # test_other_failure is not quarantined


def test_skip_mode_and_the_environment_variable(project, monkeypatch):
    monkeypatch.setenv("FLAKEBOT_QUARANTINE", str(write_list(project, QUARANTINE)))
    result = run(project, "-p", "pytest_flakebot", "--flakebot-quarantine-mode=skip", "-rs")
    result.assert_outcomes(passed=1, failed=1, skipped=5)
    result.stdout.fnmatch_lines(["SKIPPED * quarantined by flakebot: https://github.com/o/r/issues/12"])


def test_the_list_is_fetched_from_the_bots_url(project, server):
    url, _, hits = server
    result = run(project, "-p", "pytest_flakebot", f"--flakebot-quarantine={url}/quarantine.json?repo=o/r")
    result.assert_outcomes(passed=1, failed=1, xfailed=4, xpassed=1)
    assert hits == ["/quarantine.json?repo=o/r"]


@pytest.mark.parametrize(
    ("status", "body", "words"),
    [
        (500, b"oops", "HTTP 500"),
        (200, b"<html>not json</html>", "not JSON"),
        (200, json.dumps({"version": 2, "tests": []}).encode(), "unsupported quarantine list version 2"),
        (200, bytes(range(256)), "not JSON"),
    ],
)
def test_a_broken_answer_runs_everything_and_says_so(project, server, status, body, words):
    url, answers, _ = server
    answers.update(status=status, body=body)
    result = run(project, "-p", "pytest_flakebot", f"--flakebot-quarantine={url}/q.json")
    result.assert_outcomes(passed=2, failed=5)
    result.stdout.fnmatch_lines(
        [f"flakebot quarantine: NOT APPLIED, running every test: {url}/q.json: *{words}*", "*every test ran*"]
    )


def test_an_unreachable_url_or_missing_file_runs_everything_and_hides_secrets(project, server):
    url, _, _ = server
    closed = url.rsplit(":", 1)[0] + ":9"  # nothing listens on the discard port
    result = run(project, "-p", "pytest_flakebot", f"--flakebot-quarantine={closed}/q.json?token=s3cr3tvalue")
    result.assert_outcomes(passed=2, failed=5)
    result.stdout.fnmatch_lines(["*NOT APPLIED*unreachable*"])
    assert "s3cr3tvalue" not in result.stdout.str()
    missing = run(project, "-p", "pytest_flakebot", "--flakebot-quarantine=nowhere.json")
    missing.assert_outcomes(passed=2, failed=5)
    missing.stdout.fnmatch_lines(["*NOT APPLIED*nowhere.json*No such file*"])
    broken = write_list(project, '{"version": 1, "tests": [')
    result = run(project, "-p", "pytest_flakebot", f"--flakebot-quarantine={broken}")
    result.assert_outcomes(passed=2, failed=5)
    result.stdout.fnmatch_lines(["*NOT APPLIED*not JSON*"])


def test_the_entry_point_is_inert_until_enabled_and_coexists_with_dash_p(project):
    plain = run(
        project,
    )
    plain.assert_outcomes(passed=2, failed=5)
    assert "flakebot" not in plain.stdout.str().replace("flakebot-0.1.0", "")
    path = write_list(project, QUARANTINE)
    # the installed entry point alone, the module alone, and both at once all apply the list once
    for args in ([], ["-p", "no:flakebot", "-p", "pytest_flakebot"], ["-p", "pytest_flakebot"]):
        result = run(project, *args, f"--flakebot-quarantine={path}")
        result.assert_outcomes(passed=1, failed=1, xfailed=4, xpassed=1)
        assert result.stdout.str().count("flakebot quarantine: 4 tests from") == 1


def test_matching_rules():
    keys = item_keys("tests/unit/test_x.py::TestC::test_m[a.b-1]")
    for name in [
        "tests/unit/test_x.py::TestC::test_m[a.b-1]",
        "tests/unit/test_x.py::TestC::test_m",
        "unit/test_x.py::TestC::test_m",
        "test_x.py::TestC::test_m[a.b-1]",
        "tests.unit.test_x.TestC.test_m",
        "test_x.TestC.test_m",
        "TestC.test_m",
        "TestC.test_m[a.b-1]",
        "test_m (tests.unit.test_x.TestC)",
    ]:
        assert entry_key(name) in keys, name
    for name in ["tests/unit/test_x.py::TestC::test_m[other]", "OtherC.test_m", "x/test_x.py::TestC::test_m"]:
        assert entry_key(name) not in keys, name
    assert entry_key("test_m") is None


def test_the_format_is_checked_and_unknown_fields_are_ignored():
    # a newer service may add fields, of the document or of an entry (a per-job "scope"), of any type
    newer = {"version": 1, "generated_at": "2024-06-01T00:00:00Z", "origin": {"service": "flakebot"},
             "tests": [{"test": "tests/a.py::test_a", "scope": {"jobs": ["tests (ubuntu)"]}, "weight": 0.5},
                       {"test": "tests/b.py::test_b", "issue_url": "https://x/1", "scope": None}]}  # fmt: skip
    parsed, problems = loads(json.dumps(newer))
    assert [(e.test, e.issue_url) for e in parsed] == [
        ("tests/a.py::test_a", None),
        ("tests/b.py::test_b", "https://x/1"),
    ]
    assert problems == []
    for bad, words in [
        ("[]", "JSON object"),
        ('{"version": 1}', "'tests' must be a list"),
        ("{", "not JSON"),
        ('{"version": 2, "tests": []}', "unsupported quarantine list version 2"),
    ]:
        with pytest.raises(ValueError, match=words):
            loads(bad)
    _, problems = loads(json.dumps({"version": 1, "tests": [{"test": "a.b", "since": 5}]}))
    assert problems == ["entry 0: since must be strings"]


@pytest.fixture(autouse=True)
def no_job(monkeypatch):
    """The test runs' own CI job (this suite may run in GitLab CI) is not theirs."""
    for name in ("FLAKEBOT_JOB", "CI_JOB_NAME"):
        monkeypatch.delenv(name, raising=False)


SCOPED = {
    "version": 1,
    "tests": [
        {"test": "tests/test_demo.py::test_flaky", "scope": {"jobs": ["tests (windows)"], "os": "ignored"}},
        {"test": "TestC.test_m", "scope": {"jobs": ["tests (ubuntu)", "tests (windows)"]}},
        {"test": "test_u (tests.test_demo.U)"},  # no scope: every job
        {"test": "tests/test_demo.py::test_other_failure", "scope": None},  # every job too
        {"test": "test_demo.py::test_param", "scope": {"jobs": "tests (windows)"}},  # not a list: unusable
        {"test": "tests/test_demo.py::test_ok", "expires_at": "2000-01-01T00:00:00Z"},  # expired: ignored
    ],
}


def test_an_entry_with_a_scope_applies_in_its_jobs_only(project, monkeypatch):
    path = write_list(project, SCOPED)
    monkeypatch.setenv("FLAKEBOT_JOB", "tests (ubuntu)")
    ubuntu = run(project, f"--flakebot-quarantine={path}", "-rxX")
    ubuntu.assert_outcomes(passed=2, failed=2, xfailed=3)  # test_flaky fails: not quarantined on ubuntu
    ubuntu.stdout.fnmatch_lines(
        ["flakebot quarantine: 3 tests from * (mode xfail, 1 entries unusable, job 'tests (ubuntu)': "
         "1 for other jobs, 1 expired)", "*unusable entry: entry 4: scope.jobs must be a non-empty list of job names"]
    )  # fmt: skip
    # GitLab names the job itself; --flakebot-job wins over the environment
    monkeypatch.delenv("FLAKEBOT_JOB")
    monkeypatch.setenv("CI_JOB_NAME", "tests (windows)")
    windows = run(project, f"--flakebot-quarantine={path}")
    windows.assert_outcomes(passed=2, failed=1, xfailed=4)
    macos = run(project, f"--flakebot-quarantine={path}", "--flakebot-job=tests (macos)")
    macos.assert_outcomes(passed=2, failed=3, xfailed=2)
    # no job known: every entry applies, and the header says why
    monkeypatch.delenv("CI_JOB_NAME")
    unknown = run(project, f"--flakebot-quarantine={path}")
    unknown.assert_outcomes(passed=2, failed=1, xfailed=4)
    unknown.stdout.fnmatch_lines(
        [
            "*job unknown: 2 quarantined in some jobs only applied in this one too (set FLAKEBOT_JOB), 1 expired)"
        ]
    )


def test_what_is_shown_of_a_source_has_no_credentials(monkeypatch):
    monkeypatch.setenv("FLAKEBOT_READ_TOKEN", "read-token-value-123")
    shown = masked("https://bot:pw@h/q.json?repo=o/r&access_token=abc&sig=x read-token-value-123")
    assert shown == "https://bot:***@h/q.json?repo=o/r&access_token=***&sig=*** ***"
