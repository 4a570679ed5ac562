from bot.render import md_cell, render, templates_dir, truncate_middle


def test_truncate_middle_keeps_head_and_tail_and_says_so():
    text = "HEAD" + "x" * 1000 + "TAIL"
    out = truncate_middle(text, 200)
    assert len(out) <= 200
    assert out.startswith("HEAD") and out.endswith("TAIL")
    assert "characters cut" in out
    assert truncate_middle("short", 200) == "short"


def test_md_cell_cannot_break_a_table_row():
    assert md_cell("a|b\nc") == "a\\|b c"


def test_rendered_text_has_secrets_masked(tmp_path, monkeypatch):
    probe = templates_dir() / "_probe_test.md.j2"
    probe.write_text("log: {{ log }}\n")
    try:
        monkeypatch.setenv("GITHUB_TOKEN", "s3cr3t-value-123")
        out = render("_probe_test.md.j2", log="token s3cr3t-value-123 and ghp_" + "a" * 36)
    finally:
        probe.unlink()
    assert "s3cr3t-value-123" not in out and "ghp_" not in out
    assert out.count("***") == 2
