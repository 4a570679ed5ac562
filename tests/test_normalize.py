from bot.normalize import (
    StopLines,
    error_region,
    failure_lines,
    mask_test_name,
    name_parts,
    normalize_line,
    normalize_log,
    tail_bytes,
)


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


def test_error_region_is_the_last_run_of_markers_to_the_end():
    lines = ["setup"] * 100 + ["Error: early retry"] + ["noise"] * 100 + ["tail context"] * 3
    lines += ["Traceback (most recent call last):", "  File x", "Error: boom", "not ok 1 t", "Wrote x.png"]
    region = error_region(lines, context=2)
    assert region[0] == "tail context" and region[-1] == "Wrote x.png"
    assert "Error: early retry" not in region
    assert error_region(["a", "b"]) == ["a", "b"]  # no marker: the whole log


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


def test_tail_bytes_keeps_the_end():
    assert tail_bytes(["aaaa", "bbbb", "cccc"], 10) == ["bbbb", "cccc"]
    assert tail_bytes(["x" * 50], 10) == ["x" * 10]


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
