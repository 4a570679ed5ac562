import json
from pathlib import Path

import pytest

from bot.normalize import (
    LINE_CHARS,
    PART_LINES,
    StopLines,
    failing_part,
    failure_lines,
    is_failure_marker,
    mask_test_name,
    name_parts,
    normalize_line,
    normalize_log,
    visible_line,
)

VELOREN = Path(__file__).parent / "fixtures" / "veloren"


def test_cockpit_substitutions_in_cockpit_order():
    sha = "876b7f05cd8688650eef2d2cc4263f976288545d"
    guid = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    line = f"  commit {sha} guid {guid} took 684s in /build/cockpit/test/common/testvm.py line 253  "
    out = normalize_line(line, "cockpit")
    # hashes before digits (else the 40-hex hash would become 000 fragments), GUID before digits,
    # digit runs to 000, then paths to their base name; the line is stripped
    assert (
        out
        == "commit " + "x" * 40 + " guid xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx took 000s in testvm.py line 000"
    )


def test_uppercase_hashes_and_longest_first():
    assert normalize_line("A" * 64 + " " + "b" * 128, "cockpit") == "X" * 64 + " " + "x" * 128


def test_extended_flavour_strips_ansi_timestamps_addresses_and_short_ids():
    line = "2024-05-01T10:00:00.1234567Z \x1b[31mSegfault at 0x7ffd1234abcd in container 3f2a9c1b7d\x1b[0m"
    assert normalize_line(line) == "Segfault at ADDRESS in container xxxxxxx"
    # Cockpit's flavour leaves ANSI codes and address letters in place
    assert "\x1b" in normalize_line(line, "cockpit")


def test_cr_and_crlf_are_line_ends():
    assert normalize_log("a\r\nb\rc\n") == ["a", "b", "c", ""]


def test_stop_lines_by_document_frequency_keep_error_lines():
    logs = [["boot ok", "Error: timeout", f"step {i}"] for i in range(10)] + [["other"]] * 2
    stop = StopLines(max_df=0.17).fit(logs)
    assert "boot ok" in stop.lines  # in 10 of 12 logs
    assert "Error: timeout" not in stop.lines  # common, but it says what failed
    assert "step 3" not in stop.lines
    cockpit = StopLines(max_df=0.17, keep_errors=False).fit(logs)
    assert "Error: timeout" in cockpit.lines


def test_failure_lines_keep_what_and_where_not_output():
    region = [
        "Traceback (most recent call last):",
        '  File "check-journal", line 000, in TEST',
        "INFO server listening on 000.000.000.000:000",
        "    m.wait_reboot()",
        "Failure: Timeout waiting for system to reboot properly",
        "FAILED TEST - ConnectionResetError: [Errno 000] reset by peer",
        "x_test.go:000: GetUser() = 000, want 000",
        "not ok 000 TEST duration: 000s",
        "Failure: Timeout waiting for system to reboot properly",
    ]
    stop = StopLines().fit([])
    assert failure_lines(region, stop) == [
        '  File "check-journal", line 000, in TEST',
        "Failure: Timeout waiting for system to reboot properly",
        "ConnectionResetError: [Errno 000] reset by peer",
        "x_test.go:000: GetUser() = 000, want 000",
    ]


def test_common_harness_frames_are_dropped_but_not_common_errors():
    frame = '  File "testlib.py", line 000, in _invoke'
    stop = StopLines().fit([[frame, "Error: timeout"]] * 5 + [["x"]])
    assert failure_lines([frame, "Error: timeout"], stop) == ["Error: timeout"]


def test_failure_lines_fall_back_to_the_last_lines():
    region = ["=== RUN   TEST"] + [f"line {i}" for i in range(20)] + ["--- FAIL: TEST (000.000s)"]
    assert failure_lines(region, StopLines().fit([])) == [f"line {i}" for i in range(10, 20)]


def test_name_masking_covers_identifiers_not_sentence_words():
    assert set(name_parts("testBasic (check_journal.TestJournal)")) >= {
        "testBasic",
        "check_journal",
        "TestJournal",
    }
    assert "user" not in name_parts("UserService › creates the user")
    log = "not ok 5 testBasic (check_journal.TestJournal)\nin testBasic: reading 'user'"
    assert mask_test_name(log, "testBasic (check_journal.TestJournal)") == (
        "not ok 5 TEST\nin TEST: reading 'user'"
    )
    assert mask_test_name("reading 'user'", "UserService › creates the user") == "reading 'user'"


def test_masking_leaves_plain_word_job_names_alone():
    # a job called "docker" or "security" is also an image's, a service's or a tool's name
    log = "Pulling docker image registry.gitlab.com/x/docker:1\nCannot connect to the Docker daemon"
    assert mask_test_name(log, "docker") == log
    assert name_parts("linux-x86_64") == [] and name_parts("code-quality") == []
    assert "tests" not in name_parts("tests::validate_all_localizations")
    assert mask_test_name("thread 'tests::validate_all' panicked", "tests::validate_all") == (
        "thread 'TEST' panicked"
    )


def test_visible_line_is_what_the_job_page_shows():
    gitlab = "section_end:1656924660:cleanup_file_variables\r\x1b[0K\x1b[31;1mERROR: Job failed: exit code 1"
    assert visible_line(gitlab) == "ERROR: Job failed: exit code 1"
    assert visible_line("Downloading 10%\rDownloading 55%\rDownloading 100%\r") == "Downloading 100%"
    assert visible_line("2024-05-01T10:00:00.1234567Z ##[group]Run pytest") == "Run pytest"
    assert visible_line("##[endgroup]") == ""
    assert visible_line("2024-05-01T10:00:00Z ##[error]Process completed with exit code 1.") == (
        "##[error]Process completed with exit code 1."
    )


@pytest.mark.parametrize(
    "line",
    [
        "error[E0425]: cannot find value `x` in this scope",
        "error: could not compile `veloren-voxygen` due to 2 previous errors",
        "thread 'main' panicked at 'index out of bounds', src/lib.rs:10:5",
        "ERROR: Job failed: exit code 1",
        "--- FAIL: TestConnect (0.01s)",
        "[ERROR] Failed to execute goal org.apache.maven.plugins:maven-surefire-plugin",
        "FAILURE: Build failed with an exception.",
        "npm ERR! code ELIFECYCLE",
        "Traceback (most recent call last):",
        "E       AssertionError: assert 1 == 2",
        "test result: FAILED. 3 passed; 1 failed; 0 ignored",
        "bash: line 29: /tmp/ca: No space left on device",
        "    at Object.<anonymous> (src/app.test.js:12:5) TypeError: x is undefined",
    ],
)
def test_failure_markers_cover_the_usual_toolchains(line):
    assert is_failure_marker(line)


@pytest.mark.parametrize(
    "line",
    ["   Compiling thiserror v1.0.30", "Downloading crates ...", "test slowjob::tests::simple ... ok",
     "warning: 8 allowed warnings found", "Running on runner-abc via host..."],
)  # fmt: skip
def test_progress_lines_are_not_failure_markers(line):
    assert not is_failure_marker(line)


def _veloren():
    for entry in json.loads((VELOREN / "index.json").read_text()):
        with open(VELOREN / entry["file"], newline="") as fh:  # keep the \r of the traces
            yield entry, fh.read()


def test_failing_part_of_real_gitlab_traces():
    """Real Veloren GitLab jobs: the part names the cause, ends with the runner's line, and is bounded."""
    causes = {
        "Insufficient cpu": "code-quality-flake",
        "Cannot connect to the Docker daemon": "linux-x86_64-flake",
        "failed to pull image": "unittests-flake-3051507026",
        "execution took longer than": "unittests-flake-2904892551",
        "No space left on device": "macos-aarch64-flake",
        "could not compile `veloren-voxygen`": "code-quality-real",
        "panicked at": "unittests-real",
        "Failed to compile tests!": "coverage-real",
    }
    for entry, log in _veloren():
        part = failing_part(log)
        assert 1 < len(part) <= PART_LINES, entry["file"]
        assert part[-1].startswith("ERROR: Job failed"), entry["file"]
        assert all(
            len(line) <= LINE_CHARS + 2 and "\x1b" not in line and "section_" not in line for line in part
        )
        for cause, name in causes.items():
            if entry["file"].startswith(name):
                assert any(cause in line for line in part), (entry["file"], part[-5:])


def test_failing_part_falls_back_to_windows_or_the_last_lines():
    lines = [f"step {i} done" for i in range(300)]
    assert failing_part("\n".join(lines)) == lines[-50:]
    lines[280] = "could not resolve host: gitlab.com"  # an error line, no marker
    part = failing_part("\n".join(lines))
    assert part == lines[278:283]
    # a marker long before the end: the region runs to the end, capped by lines (first and last halves)
    lines = ["error: boom", *(f"line {i}" for i in range(500))]
    part = failing_part("\n".join(lines))
    assert len(part) == PART_LINES and part[0] == "error: boom" and part[-1] == "line 499"


def test_failing_part_is_idempotent_so_slim_records_keep_their_verdict():
    for _, log in _veloren():
        part = failing_part(log)
        assert failing_part("\n".join(part)) == part
