"""CODEOWNERS read as GitHub and GitLab read it (pure): who a quarantine issue is assigned to."""

from bot.codeowners import PATHS, code_owners, owners_of, parse, test_file

GITHUB = r"""
# the default owner of everything
*                   @octo-org/core
*.py                @alice
/tests/             @bob @octo-org/qa
docs/*              @docs-writer
apps/               @carol
tests/unit/test_no_owner.py
path\ with\ space/  @dave
\#hash.py           @erin
tests/e2e/**/*.py   @frank  # an inline comment @nobody
"""

GITLAB = r"""
* @everyone-group

[Tests] @qa-group/testers
tests/
tests/test_pay.py @alice @@maintainer

^[Payments][2] @pay-team
tests/test_pay.py @bob
!tests/test_pay_stub.py

[tests]
ee/tests/ @carol
"""


def test_github_last_match_wins_and_anchoring_is_gitignores():
    rules = parse(GITHUB, "github")
    own = lambda path: owners_of(rules, path, "github")  # noqa: E731
    assert own("README.md") == ("@octo-org/core",)
    assert own("bot/x.py") == ("@alice",)  # *.py anywhere
    assert own("tests/test_x.py") == ("@bob", "@octo-org/qa")  # later rule wins over *.py
    assert own("src/tests/test_x.py") == ("@alice",)  # /tests/ is anchored at the root
    assert own("docs/a.md") == ("@docs-writer",) and own("docs/sub/a.md") == ("@octo-org/core",)
    assert own("x/docs/a.md") == ("@octo-org/core",)  # docs/* has a slash in the middle: anchored
    assert own("deep/apps/a/b.txt") == ("@carol",)  # apps/ matches a directory at any depth
    assert own("tests/unit/test_no_owner.py") == ()  # a pattern without owners un-owns
    assert own("path with space/x.txt") == ("@dave",) and own("#hash.py") == ("@erin",)
    assert own("tests/e2e/a/b/test_c.py") == ("@frank",)  # ** crosses directories; the comment is no owner


def test_gitlab_sections_combine_and_default_owners_fill_empty_rules():
    rules = parse(GITLAB, "gitlab")
    own = lambda path: owners_of(rules, path, "gitlab")  # noqa: E731
    # the default section, Tests (named twice, any case: one section) and Payments all match
    assert own("tests/test_pay.py") == ("@everyone-group", "@alice", "@@maintainer", "@bob")
    assert own("tests/test_cart.py") == ("@everyone-group", "@qa-group/testers")
    assert own("tests/test_pay_stub.py") == ("@everyone-group", "@qa-group/testers")  # Payments un-owns it
    assert own("x/ee/tests/a.py") == ("@everyone-group", "@carol")  # unanchored on GitLab, even with a slash


def test_a_tests_owners_are_users_to_assign_and_teams_to_show():
    owners = code_owners(GITLAB, "CODEOWNERS", "tests/test_pay.py::test_card[visa]", "gitlab")
    assert owners.file == "tests/test_pay.py" and owners.path == "CODEOWNERS"
    assert owners.users == (
        "everyone-group",
        "alice",
        "bob",
    )  # a GitLab @name may be a group: the adapter checks
    assert owners.teams == ("maintainer role",)  # roles are not users; shown without "@"
    github = code_owners(
        GITHUB + "\nsecurity.py sec@example.org\n", ".github/CODEOWNERS", "security.py::test_x"
    )
    assert (github.users, github.teams) == ((), ())  # an e-mail address is neither assigned nor shown
    assert not github
    assert code_owners(GITHUB, "CODEOWNERS", "com.example.PayTest.testCard") is None  # no file to look up


def test_which_file_a_test_name_points_at():
    assert test_file("tests/test_x.py::TestC::test_m[a-b]") == "tests/test_x.py"
    assert test_file("src/app.test.js > renders the cart") == "src/app.test.js"
    assert test_file("spec/models/user_spec.rb:12") == "spec/models/user_spec.rb"
    assert test_file("tests.test_x.TestC.test_m") is None and test_file("TestParse") is None
    assert PATHS["github"][0] == ".github/CODEOWNERS" and PATHS["gitlab"][-1] == ".gitlab/CODEOWNERS"
