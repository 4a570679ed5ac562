"""Test reports inside CI artifacts: which artifacts to fetch, and JUnit XML out of a zip, safely.

Pure decisions (``is_test_report_artifact``, ``looks_like_junit``) and one reader of a local zip file
(``junit_members``) that never trusts the archive: the number of members, each member's declared size,
the total and the compression ratio are checked before anything is decompressed, and every read is
bounded again in case the archive lies about its sizes.
"""

from __future__ import annotations

import logging
import re
import zipfile
from dataclasses import dataclass
from typing import IO

log = logging.getLogger(__name__)

# Artifact names that suggest test results; matched on the lower-cased name with "-", "_" and "."
# read as spaces: "junit", "test-results-ubuntu", "pytest-report", "Test output", "surefire-reports",
# "results.xml".
_REPORT_NAME = re.compile(
    r"\b(?:junit|xunit|nunit|surefire|pytest|tests?\s*(?:results?|reports?|output|xml))\b|xml$"
)
_PROLOG = re.compile(rb"\s*(?:<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>]*>)", re.S)
_JUNIT_ROOT = re.compile(rb"\s*<(?:testsuites|testsuite)[\s/>]")

SNIFF_BYTES = 4096
MAX_MEMBERS = 10_000  # members listed in one archive before it is refused
MAX_RATIO = 250  # uncompressed/compressed size above which a member is taken for a zip bomb (JUnit: ~5-50)


class ArchiveError(ValueError):
    """The archive is unreadable or refused (too many members); nothing was extracted."""


@dataclass
class Extracted:
    members: list[tuple[str, bytes]]  # (member name, XML bytes)
    skipped: list[str]  # "name: reason", for the log


def is_test_report_artifact(name: str) -> bool:
    """Whether an artifact's name suggests JUnit-style test results."""
    normalized = re.sub(r"[-_.]+", " ", name.lower()).strip()
    return bool(_REPORT_NAME.search(normalized)) or name.lower().endswith(".xml")


def looks_like_junit(head: bytes) -> bool:
    """Whether the first bytes of an XML document open a ``<testsuites>`` or ``<testsuite>`` root."""
    text = head.removeprefix(b"\xef\xbb\xbf")
    while True:
        match = _PROLOG.match(text)
        if not match or not match.group(0).strip():
            break
        text = text[match.end() :]
    return bool(_JUNIT_ROOT.match(text))


def junit_members(archive: IO[bytes], max_total: int) -> Extracted:
    """The JUnit XML members of a zip archive, at most ``max_total`` uncompressed bytes in all.

    Members that are not ``*.xml``, not JUnit, too large for what is left of ``max_total``, or
    compressed suspiciously well are skipped and named in ``Extracted.skipped``. Raises
    :class:`ArchiveError` when the archive itself is unreadable or has too many members.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise ArchiveError(f"archive has {len(infos)} members, more than {MAX_MEMBERS}")
            result = Extracted([], [])
            left = max_total
            for info in infos:
                if info.is_dir() or not info.filename.lower().endswith(".xml"):
                    continue
                reason = _refuse(info, left)
                if reason is None:
                    try:
                        data = _read_junit(zf, info, left)
                    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                        data, reason = None, f"unreadable ({exc})"
                    if data is None:
                        reason = reason or "not JUnit XML"
                    else:
                        result.members.append((info.filename, data))
                        left -= len(data)
                if reason:
                    result.skipped.append(f"{info.filename}: {reason}")
            return result
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise ArchiveError(f"not a readable zip archive: {exc}") from exc


def _refuse(info: zipfile.ZipInfo, left: int) -> str | None:
    if info.file_size > left:
        return f"{info.file_size} bytes uncompressed, over the {left} bytes left of the size cap"
    if info.file_size > MAX_RATIO * max(info.compress_size, 1) and info.file_size > SNIFF_BYTES:
        return f"compression ratio over {MAX_RATIO} (zip bomb?)"
    return None


def _read_junit(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes | None:
    with zf.open(info) as member:
        head = member.read(min(SNIFF_BYTES, limit + 1))
        if not looks_like_junit(head):
            return None
        data = head + member.read(limit + 1 - len(head))
    if len(data) > limit or len(data) != info.file_size:
        raise ValueError(f"member is not the {info.file_size} bytes its header declares")
    return data
