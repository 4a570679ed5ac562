"""The quarantine list between the service and pytest-flakebot (hardening 17).

The service writes it (``flakebot quarantine-list --json``, ``GET /quarantine.json``), the plugin, a
separate distribution, reads it: what one writes the other reads, and the plugin's wheel is small,
depends on pytest only, and works in a project that has its own ``bot`` package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from pytest_flakebot import QuarantinedTest as PluginEntry
from pytest_flakebot import loads

from bot.quarantine_list import QuarantinedTest, quarantine_list

PLUGIN = Path(__file__).parent.parent / "plugins" / "pytest-flakebot"


def test_what_the_service_writes_the_plugin_reads():
    entries = [
        QuarantinedTest(
            "tests/b.py::test_b", "o/r", "https://github.com/o/r/issues/2", "2024-05-01T00:00:00Z"
        ),
        QuarantinedTest("tests/a.py::test_a"),
        QuarantinedTest(
            "tests/c.py::test_c", scope={"jobs": ["tests (windows)"]}, expires_at="2999-01-01T00:00:00Z"
        ),
    ]
    document = quarantine_list(entries, generated_at="2024-06-01T00:00:00Z")
    assert document["version"] == 1 and [t["test"] for t in document["tests"]] == [
        "tests/a.py::test_a",
        "tests/b.py::test_b",
        "tests/c.py::test_c",
    ]
    assert document["tests"][0] == {"test": "tests/a.py::test_a"}
    parsed, problems = loads(json.dumps(document))
    assert problems == []
    assert parsed == [
        PluginEntry("tests/a.py::test_a"),
        PluginEntry(*(getattr(entries[0], f) for f in ("test", "repo", "issue_url", "since"))),
        PluginEntry("tests/c.py::test_c", jobs=("tests (windows)",), expires_at="2999-01-01T00:00:00Z"),
    ]
    assert parsed[2].applies_in("tests (windows)") and not parsed[2].applies_in("tests (ubuntu)")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """pytest-flakebot built from this repository, offline (hatchling, the backend it names)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-c", f"import hatchling.build as b; print(b.build_wheel({str(out)!r}))"],
        cwd=PLUGIN, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (built,) = out.glob("pytest_flakebot-*.whl")
    return built


def test_the_service_no_longer_registers_a_pytest_plugin():
    from importlib.metadata import distribution

    assert [ep for ep in distribution("flakebot").entry_points if ep.group == "pytest11"] == []


def test_the_wheel_is_one_module_that_needs_pytest_only(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert [n for n in names if ".dist-info/" not in n] == ["pytest_flakebot.py"]  # no `bot` package
    requires = [
        line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")
    ]
    assert requires == ["pytest>=7"]  # no scikit-learn, scipy, numpy, aiohttp...
    assert "Name: pytest-flakebot" in meta and "Requires-Python: >=3.9" in meta
    assert "[pytest11]\nflakebot = pytest_flakebot:entry_point" in entry_points


def test_the_installed_wheel_leaves_a_projects_own_bot_package_alone(wheel, tmp_path):
    """A project with its own ``bot`` package, flakebot not installed: pytest with only the wheel."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)  # a pure-Python wheel installs by unpacking
    project = tmp_path / "project"
    (project / "bot").mkdir(parents=True)
    (project / "bot" / "__init__.py").write_text("NAME = 'the project s own bot'\n")
    (project / "tests").mkdir()
    (project / "tests" / "test_app.py").write_text(
        "import sys\n\nimport bot\n\n"
        "def test_own_bot():\n"
        "    assert bot.NAME == 'the project s own bot'\n"
        "    assert not {'sklearn', 'scipy', 'numpy'} & set(sys.modules)\n"
        f"    assert sys.modules['pytest_flakebot'].__file__.startswith({str(site)!r})\n\n"
        "def test_flaky():\n    assert False\n"
    )
    (project / "quarantine.json").write_text(
        json.dumps({"version": 1, "tests": [{"test": "tests/test_app.py::test_flaky"}]})
    )
    # -S: no site-packages .pth files, so neither flakebot nor this repository's plugin is importable;
    # pytest itself comes from this environment's site-packages
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), sysconfig.get_paths()["purelib"]])}
    env.pop("FLAKEBOT_QUARANTINE", None)
    result = subprocess.run(
        [sys.executable, "-S", "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
         "-p", "no:asyncio", "-p", "no:aiohttp", "--flakebot-quarantine=quarantine.json", "-rx", "tests"],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 passed, 1 xfailed" in result.stdout
    assert "flakebot quarantine: 1 tests from quarantine.json" in result.stdout
    assert "plugins: flakebot-0.1.0" in result.stdout  # the entry point loaded it
