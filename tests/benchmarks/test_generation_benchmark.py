"""The generation benchmark runs in its tiny mode, so it cannot rot (timings are printed, never asserted)."""

from __future__ import annotations

import json

import pytest

from benchmarks.generation import main


@pytest.mark.slow
def test_tiny_benchmark_prints_and_writes_every_section(tmp_path, capsys):
    results = main(["--tiny", "--output", str(tmp_path / "bench.json")])
    printed = capsys.readouterr().out
    for section in ("machine", "denoiser", "reference", "ours", "ratio"):
        assert section in printed
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["reference"]["extrapolated_from_steps"] is not None
    assert results["denoiser_forward"]["gflop_per_forward"] > 0 and results["ours"]["samples"] == 2
