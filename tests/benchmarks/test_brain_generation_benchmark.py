"""The brain MRI generation benchmark runs in its tiny mode, so it cannot rot (timings are printed, never asserted)."""

from __future__ import annotations

import json

import pytest

from benchmarks.brain_generation import main


@pytest.mark.slow
def test_tiny_brain_benchmark_times_both_pipelines_and_writes_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the end-to-end run writes under its own temporary folder, nothing here
    results = main(["--tiny", "--threads", "1", "--output", str(tmp_path / "bench.json")])
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert results["slices"] == 2 and results["reference"]["extrapolated_from_steps"] == 10
    assert results["ours"]["seconds_per_slice_end_to_end"] > 0 and results["reference"]["sampling_seconds_per_slice"] > 0
    assert results["ours"]["peak_rss_mb"] > 0 and "fidelity" not in results
