"""Known-issue patterns: Cockpit's normalisation and glob semantics, safely and fast."""

import json
from pathlib import Path

import pytest

from bot.known_issues import KnownIssues, KnownIssuesError, Pattern, glob_in, normalize

SAMPLE = Path(__file__).parent / "fixtures" / "known_issues" / "naughty-sample.jsonl"
TAP = Path(__file__).parent / "fixtures" / "logs" / "tap-cockpit.txt"


def test_real_patterns_load_and_match_a_trace_with_variable_parts():
    known = KnownIssues.load(SAMPLE)
    assert len(known) == 12
    trace = (
        "# testBasicWheelUserUnprivileged (__main__.TestMachinesLifecycle)\n"
        "Process 4242 (libvirtd) of user 0 dumped core.\n"
        "#0  0x00007f3a n/a (libvirt_driver_qemu.so + 0x9c5e1)\n"
        "#1  0x00007f3b virStateShutdownPrepare (libvirt.so.0 + 0x1a2b3)\n"
        "#2  0x00007f3c virNetDaemonRun (libvirt.so.0 + 0x1c2d3)\n"
        "not ok 7 testBasicWheelUserUnprivileged\n"
    )
    hit = known.match(trace)
    assert hit is not None and hit.issue == 2220 and hit.image == "debian-testing"
    assert hit.path.startswith("naughty/debian-testing/2220-") and hit.pattern.startswith("# testBasicWheel")
    assert known.match("all fine here") is None


def test_brackets_and_question_marks_are_literal_text():
    known = KnownIssues([{"pattern": "a[href='x']?*done", "issue": 1}])
    assert known.match("click a[href='x']? and then done") is not None
    assert known.match("click ahref='x'] and then done") is None  # '[' is not a character class
    assert known.match("click a[href='x']! and then done") is None  # '?' is not "any character"


def test_normalisation_matches_cockpit():
    assert (
        normalize('  File "/build/cockpit/test/verify/check-journal", line 3\n')
        == 'File "check-journal", line 3'
    )
    assert normalize("audit(1563266431.141:423): pid=1234 ino=99 x") == "audit(0): pid=0 ino=0 x"
    assert normalize("testlib.Error: timeout") == "Error: timeout"
    known = KnownIssues(
        [{"pattern": '  File "check-journal", line *, in testBinary\n*Error: timeout\n', "issue": 9}]
    )
    hit = known.match(TAP.read_text())  # absolute paths and testlib.Error in the log, not in the pattern
    assert hit is not None and hit.issue == 9


def test_glob_pieces_must_appear_in_order_without_overlap():
    assert glob_in(("abc", "cde"), "abcde") is False
    assert glob_in(("abc", "cde"), "abc cde") is True
    assert glob_in(("b", "a"), "ab") is False
    assert glob_in((), "anything") is True


def test_image_filter_and_first_pattern_wins():
    known = KnownIssues(
        [
            {"pattern": "disk full", "issue": 1, "image": "fedora-40"},
            {"pattern": "disk*full", "issue": 2},
            {"pattern": "disk full", "issue": 3, "image": "rhel-9"},
        ]
    )
    assert known.match("error: disk full", image="rhel-9").issue == 2
    assert known.match("error: disk full", image="fedora-40").issue == 1
    assert known.match("error: disk full").issue == 1


def test_patterns_without_a_whole_word_are_still_checked():
    known = KnownIssues([{"pattern": "*ab*", "issue": 5}, {"pattern": "x=1;*", "issue": 6}])
    assert known.match("..ab..").issue == 5
    assert known.match("y=0; x=1;").issue == 6


def test_prefilter_only_drops_patterns_that_cannot_match():
    patterns = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    known = KnownIssues(patterns)
    for index, pattern in enumerate(known.patterns):
        # a text made of the pattern itself (stars filled in) must reach the full check and match
        text = "prefix " + pattern.pattern.replace("*", " something ") + " suffix"
        assert index in known.candidates(normalize(text))
        assert known.match(text) is not None


def test_pathological_patterns_are_linear():
    pattern = "*a" * 500 + "*b"
    known = KnownIssues([{"pattern": pattern, "issue": 1}])
    assert known.match("a" * 100_000) is None  # fnmatch's regex would backtrack for a very long time


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "Expecting"),
        ('{"issue": 3}', "'pattern'"),
        ('{"pattern": "***", "issue": 3}', "literal text"),
        ('{"pattern": "x", "issue": "three"}', "'issue'"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_bad_pattern_files_name_the_line(tmp_path, line, reason):
    path = tmp_path / "p.jsonl"
    path.write_text('{"pattern": "ok", "issue": 1}\n\n' + line + "\n")
    with pytest.raises(KnownIssuesError, match=reason) as info:
        KnownIssues.load(path)
    assert f"{path}:3:" in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(KnownIssuesError, match="cannot read"):
        KnownIssues.load(tmp_path / "nope.jsonl")


def test_issue_numbers_given_as_text_are_accepted():
    assert Pattern.from_dict({"pattern": "x", "issue": "#12"}).issue == 12
