import io
import zipfile

import pytest

from bot.forge.artifacts import ArchiveError, is_test_report_artifact, junit_members, looks_like_junit

JUNIT = b'<?xml version="1.0" encoding="utf-8"?>\n<testsuites><testsuite name="t" tests="1"/></testsuites>\n'


def make_zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize(
    "name",
    [
        "junit",
        "junit-xml",
        "test-results",
        "test-results-ubuntu-3.12",
        "Test output",
        "pytest-report",
        "surefire-reports",
        "TestResults",
        "results.xml",
        "unit_test_reports",
    ],
)
def test_report_artifact_names(name):
    assert is_test_report_artifact(name)


@pytest.mark.parametrize("name", ["coverage", "dist", "wheels", "Rails", "build-logs", "latest"])
def test_other_artifact_names(name):
    assert not is_test_report_artifact(name)


def test_junit_sniffing_skips_prolog_comments_and_bom():
    assert looks_like_junit(JUNIT)
    assert looks_like_junit(b"\xef\xbb\xbf<!-- generated -->\n<!DOCTYPE x>\n<testsuite name='a'>")
    assert looks_like_junit(b"<testsuite/>")
    assert not looks_like_junit(b'<?xml version="1.0"?><coverage line-rate="1"/>')
    assert not looks_like_junit(b"<testsuitesX>")
    assert not looks_like_junit(b"\x00\x01binary")


def test_junit_members_keeps_junit_xml_only():
    archive = make_zip(
        {"a/report.xml": JUNIT, "coverage.xml": b"<coverage/>", "log.txt": b"x", "b.XML": JUNIT}
    )
    extracted = junit_members(archive, max_total=10_000)
    assert extracted.members == [("a/report.xml", JUNIT), ("b.XML", JUNIT)]
    assert extracted.skipped == ["coverage.xml: not JUnit XML"]


def test_total_size_cap_skips_what_does_not_fit():
    archive = make_zip({"one.xml": JUNIT, "two.xml": JUNIT})
    extracted = junit_members(archive, max_total=len(JUNIT) + 10)
    assert [name for name, _ in extracted.members] == ["one.xml"]
    assert extracted.skipped[0].startswith("two.xml:") and "size cap" in extracted.skipped[0]


def test_zip_bomb_is_refused_before_decompressing():
    bomb = b"<testsuite>" + b" " * 50_000_000 + b"</testsuite>"
    archive = make_zip({"bomb.xml": bomb})
    assert len(archive.getvalue()) < 100_000  # 50 MB squeezed into a few dozen KB
    extracted = junit_members(archive, max_total=10**9)
    assert extracted.members == []
    assert "zip bomb" in extracted.skipped[0]
    extracted = junit_members(make_zip({"bomb.xml": bomb}), max_total=1_000_000)
    assert extracted.members == [] and "size cap" in extracted.skipped[0]


def test_member_lying_about_its_size_is_not_trusted():
    archive = make_zip({"report.xml": JUNIT * 100}, compression=zipfile.ZIP_STORED)
    raw = bytearray(archive.getvalue())
    # shrink the declared uncompressed size in the central directory: the read must not run past it
    central = raw.rindex(b"PK\x01\x02")
    declared = len(JUNIT * 100).to_bytes(4, "little")
    assert raw[central + 24 : central + 28] == declared
    raw[central + 24 : central + 28] = (200).to_bytes(4, "little")
    extracted = junit_members(io.BytesIO(bytes(raw)), max_total=10_000)
    assert extracted.members == []
    assert "report.xml" in extracted.skipped[0]


def test_not_a_zip_is_a_clear_error():
    with pytest.raises(ArchiveError, match="not a readable zip"):
        junit_members(io.BytesIO(b"<html>expired</html>"), max_total=1000)
