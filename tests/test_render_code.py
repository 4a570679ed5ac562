"""Inline code for names that come from comments and CI logs (the ``code`` template filter)."""

import pytest

from bot.render import environment, md_code


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("tests/a.py::test_b", "`tests/a.py::test_b`"),
        ("a`b", "``a`b``"),
        ("`x`", "`` `x` ``"),  # a leading or trailing backtick needs a space inside the fence
        ("t[```]", "````t[```]````"),
        ("two\nlines\r\n", "`two lines `"),
        ("@everyone <b>", "`@everyone <b>`"),  # inside code: no mention, no HTML
    ],
)
def test_any_text_stays_inside_its_inline_code(text, shown):
    assert md_code(text) == shown


def test_long_names_are_cut_in_the_middle():
    shown = md_code("x" * 1000, limit=50)
    assert len(shown) == 52 and "…" in shown


def test_the_filter_is_available_to_templates():
    assert environment().from_string("{{ name | code }}").render(name="a`b") == "``a`b``"
