"""The database file: a new one is made, an empty or corrupt one is refused (hardening 13).

A zero-byte ``flakebot.db`` is what a failed copy, restore or a full disk leaves; SQLite would take
it for a new database and flakebot would go on with all history, quarantine state and deduplication
silently gone. flakebot refuses it and says how to start afresh on purpose.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.store import HistoryRun, StoreError, open_store


def test_a_new_data_directory_gets_a_new_database_that_opens_again(tmp_path):
    store = open_store(tmp_path / "data")
    store.record_runs("github:o/r", [HistoryRun(test="t", status="passed", run_id=1)])
    store.close()
    again = open_store(tmp_path / "data")
    assert again.summary("github:o/r", "t", "").runs == 1
    again.close()


def test_an_empty_database_file_is_refused_and_left_as_it_is(tmp_path):
    path = tmp_path / "flakebot.db"
    path.touch()
    with pytest.raises(StoreError) as refused:
        open_store(tmp_path)
    message = str(refused.value)
    assert str(path) in message and "empty" in message
    assert f"rm {path}" in message  # how to start afresh on purpose
    assert path.stat().st_size == 0  # nothing was written into it


def test_a_corrupt_database_file_gets_a_clear_error(tmp_path):
    (tmp_path / "flakebot.db").write_bytes(b"\x00\x01not sqlite at all" * 100)
    with pytest.raises(StoreError, match="is not a readable flakebot database"):
        open_store(tmp_path)


def test_the_history_commands_refuse_an_empty_database(tmp_path):
    (tmp_path / "flakebot.db").touch()
    result = CliRunner().invoke(cli, ["scores", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1 and "is empty" in result.output and "Traceback" not in result.output


def test_serve_refuses_to_start_on_an_empty_database(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "flakebot.db").touch()
    env = {**os.environ, "GITHUB_WEBHOOK_SECRET": "s" * 20, "GITHUB_TOKEN": "t" * 20,
           "FLAKEBOT_DATA_DIR": str(data), "FLAKEBOT_MODEL": str(tmp_path / "model")}  # fmt: skip
    served = subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", "0"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert served.returncode == 1, served.stderr[-2000:]
    assert "is empty" in served.stderr and "Traceback" not in served.stderr
    assert (data / "flakebot.db").stat().st_size == 0
