"""Parsing ``/flake`` commands out of comments (pure)."""

import pytest

from bot.chatops import MAX_COMMANDS, Command, match_test, may_command, parse_commands


def names(body):
    return [(c.name, c.argument, c.error is None) for c in parse_commands(body)]


def test_one_command_a_line_in_order():
    body = "Thanks!\n/flake status\n\nAlso:\n/flake explain tests/test_x.py::test_y\r\n/flake retrain\n"
    assert names(body) == [
        ("status", None, True),
        ("explain", "tests/test_x.py::test_y", True),
        ("retrain", None, True),
    ]


def test_commands_are_whole_lines_not_words_in_a_sentence():
    assert parse_commands("please run /flake retry for me") == []
    assert parse_commands("/flakebot retry") == []
    assert parse_commands("/flakes retry") == []
    assert parse_commands("//flake retry") == []


def test_quotes_and_code_blocks_run_nothing():
    body = "\n".join(
        [
            "> /flake retrain",
            ">> /flake retry",
            "```",
            "/flake quarantine tests/a.py::test_b",
            "```",
            "~~~~text",
            "/flake retry",
            "~~~",  # too short to close a four-tilde fence
            "/flake retrain",
            "~~~~",
            "    /flake status",  # indented code
            "\t/flake status",
            "   /flake help",  # three spaces: still a command
        ]
    )
    assert names(body) == [("help", None, True)]


def test_an_unclosed_fence_hides_the_rest():
    assert parse_commands("```\n/flake retry\n") == []


def test_case_and_trailing_text():
    assert names("/FLAKE Retry please, the runner died") == [("retry", None, True)]
    assert names("/Flake EXPLAIN Tests/Test_X.py::Test_Y") == [("explain", "Tests/Test_X.py::Test_Y", True)]
    assert names("/flake real   `tests/a.py::test_b[param 1]`  ") == [
        ("real", "tests/a.py::test_b[param 1]", True)
    ]
    assert names("/flake flake ``name with ` tick``") == [("flake", "name with ` tick", True)]
    assert names("/flake") == [("help", None, True)]


def test_unknown_and_malformed_commands_say_why():
    unknown, missing, blank = parse_commands("/flake frobnicate now\n/flake explain\n/flake real ``")
    assert unknown.error == "`/flake frobnicate` is not a command"
    assert missing.error.startswith("`/flake explain` needs a test name")
    assert blank.error.startswith("`/flake real` needs a test name")
    (long,) = parse_commands("/flake flake " + "x" * 600)
    assert "longer than 500 characters" in long.error


def test_duplicates_run_once_and_a_comment_runs_a_bounded_number():
    assert names("/flake retrain\n/flake retrain\n/FLAKE RETRAIN") == [("retrain", None, True)]
    body = "\n".join(f"/flake explain t{i}" for i in range(50))
    commands = parse_commands(body)
    assert len(commands) == MAX_COMMANDS + 1  # one more than may run: the caller says the rest were left


def test_binary_and_empty_bodies():
    assert parse_commands("") == [] and parse_commands(None) == []
    assert parse_commands("\x00\xff/flake retry\n\ufffd") == []
    assert names("\x00\n/flake status\n\x1b[31m") == [("status", None, True)]


def test_canonical_text():
    assert Command("explain", "t").text == "/flake explain t"
    assert Command("retry").text == "/flake retry"


@pytest.mark.parametrize(
    ("permission", "allowed"), [("admin", True), ("write", True), ("read", False), ("none", False)]
)
def test_only_people_with_write_access_command(permission, allowed):
    assert may_command(permission) is allowed


def test_a_test_is_found_by_its_full_name_or_a_suffix_at_a_separator():
    known = ["tests/a.py::test_x", "tests/b.py::test_x", "tests/a.py::best_x", "test_x"]
    assert match_test("test_x", known) == ["test_x"]  # exact wins
    known = known[:3]
    assert match_test("test_x", known) == ["tests/a.py::test_x", "tests/b.py::test_x"]
    assert match_test("a.py::test_x", known) == ["tests/a.py::test_x"]
    assert match_test("::best_x", known) == ["tests/a.py::best_x"]
    assert match_test("est_x", known) == []
    assert match_test("testBasic", ["testBasic (check_journal.TestJournal)"]) == []
    assert match_test("TestJournal)", ["testBasic (check_journal.TestJournal)"]) == [
        "testBasic (check_journal.TestJournal)"
    ]


@pytest.mark.parametrize(
    ("body", "visible"),
    [
        ("<!-- /flake quarantine tests/a.py::test_b -->", []),
        ("<!--\n/flake quarantine tests/a.py::test_b\n-->\n/flake help", ["help"]),
        ("Looks good <!-- hidden\n/flake retry\n--> to me\n/flake status", ["status"]),
        ("<!-- one --> text <!-- two\n/flake retry\nstill hidden -->", []),
        ("<!-- never closed\n/flake retry\n/flake retrain", []),
        ("<!-- a comment before it --> /flake retry", ["retry"]),  # the command itself is shown
        ("<!-->\n/flake help", ["help"]),  # an empty comment, closed at once
        ("<!--->\n/flake help", ["help"]),
        ("`<!--` opens a comment in HTML\n/flake help", ["help"]),  # in code: no comment
        ("```\n<!--\n```\n/flake help", ["help"]),
        ("<style>\n/flake retry\n</style>\n/flake help", ["help"]),
        ("<pre>\n/flake retry\n</pre>", []),
        ("<script>/flake retry\n/flake retrain</script>", []),
        ("Run `/flake retry` to re-run", []),  # inline code is no line of its own
    ],
)
def test_commands_a_reader_cannot_see_run_nothing(body, visible):
    """A command inside an HTML comment, or in raw HTML that is code or not shown, is invisible in the
    rendered comment: only what a reader sees as a line of its own runs."""
    assert [c.name for c in parse_commands(body)] == visible
