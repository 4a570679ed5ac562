"""``python -m bench``: which modules are benchmarks, choosing them by name, and finding ../shared."""

from __future__ import annotations

from pathlib import Path

import pytest

import bench._shared
from bench.__main__ import Benchmark, discover, main, select


def test_a_benchmark_is_a_module_with_a_top_level_main(tmp_path: Path):
    (tmp_path / "fast.py").write_text('"""Fast thing.\n\nMore words."""\n\ndef main():\n    pass\n')
    (tmp_path / "slow.py").write_text("async def main():\n    pass\n")
    (tmp_path / "corpus.py").write_text('"""Data, no main."""\nif __name__ == "__main__":\n    print(1)\n')
    (tmp_path / "nested.py").write_text("class A:\n    def main(self):\n        pass\n")
    (tmp_path / "_helper.py").write_text("def main():\n    pass\n")
    assert discover(tmp_path) == [Benchmark("fast", "Fast thing."), Benchmark("slow", "")]


def test_the_project_benchmarks_are_found():
    names = [b.name for b in discover()]
    assert {"webhook_latency", "webhook_to_comment", "split_throughput", "model_modes"} <= set(names)
    assert {"scoring_illinois", "scoring_main_branch"} <= set(names)
    assert "ci_corpus" not in names and "_shared" not in names and "__main__" not in names
    assert all(b.summary for b in discover())  # every benchmark says what it measures


def test_benchmarks_are_chosen_by_name_in_the_order_given():
    found = [Benchmark("a", ""), Benchmark("b", ""), Benchmark("c", "")]
    assert select(found, []) == found
    assert [b.name for b in select(found, ["c", "bench/a.py"])] == ["c", "a"]
    with pytest.raises(SystemExit, match=r"no such benchmark: x \(there are: a, b, c"):
        select(found, ["a", "x"])


def test_list_prints_each_benchmark_with_what_it_measures(capsys):
    assert main(["--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("webhook_to_comment ") and "posted PR comment" in line for line in lines)


def test_missing_shared_data_is_a_clear_message(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(bench._shared, "CANDIDATES", [None, tmp_path / "nowhere"])
    with pytest.raises(SystemExit, match=r"shared/data/treeherder-logs was not found .*FLAKEBOT_SHARED"):
        bench._shared.shared("data", "treeherder-logs")
    (tmp_path / "here" / "data").mkdir(parents=True)
    monkeypatch.setattr(bench._shared, "CANDIDATES", [tmp_path / "nowhere", tmp_path / "here"])
    assert bench._shared.shared("data") == tmp_path / "here" / "data"
