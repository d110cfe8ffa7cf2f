"""The cardiac cine generation benchmark in its tiny mode: the configuration-only tiny cardiac bundle trained for one
epoch per stage, its frames and a cine timed end to end, its sampler and MONAI's 1000-step pipeline timed on the
same networks and both probed. Timings are printed; only what holds on any machine is asserted."""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks.cardiac_generation import PROBED, TINY_BUNDLE, TINY_DATA, main
from benchmarks.image_generation import ProbeSetup, condition_rows, load_image_bundle, probe_fidelity, probes_for

PROBE_KEYS = {"bmi_r", "slice_position_r", "phase_circular_r", "group_auroc_ovr"}


def _files(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """``(folder, results)`` of one ``--tiny`` run in a fresh working folder (it trains the tiny bundle there)."""
    folder = tmp_path_factory.mktemp("tiny_cardiac_benchmark")
    bundle_files = _files(TINY_BUNDLE)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # every default folder (runs/...) lands here
        results = main(["--tiny", "--threads", "1", "--cache-dir", str(folder / "cache"),
                        "--output", str(folder / "bench.json")])
    assert _files(TINY_BUNDLE) == bundle_files  # trained and written outside the bundle
    return folder, results


@pytest.mark.slow
def test_tiny_cardiac_benchmark_times_frames_cines_both_pipelines_and_probes_them(tiny_run):
    folder, results = tiny_run
    assert json.dumps(json.loads((folder / "bench.json").read_text())) == json.dumps(results)  # NaN-safe comparison
    assert (results["bundle"], results["frames"], results["conditions_from"]) == ("tiny_cardiac_bundle", 8, "train")
    # the tiny mode trained its weights, and the benchmark read the cohort the training cached (same data selection)
    assert (folder / "tiny_train" / "models" / "model.safetensors").is_file()
    assert len(list((folder / "cache").glob("cohort_*.json"))) == 1

    ours, cine, reference = results["ours"], results["cine"], results["reference"]
    assert cine["cines"] == 1 and cine["frames_per_cine"] == 4
    assert cine["seconds_per_frame_end_to_end"] == pytest.approx(cine["seconds_per_cine_end_to_end"] / 4)
    assert reference["extrapolated_from_steps"] is None  # all 1000 steps ran, so the reference frames are probed
    seconds = [ours["seconds_per_frame_end_to_end"], ours["sampling_seconds_per_frame"],
               cine["seconds_per_cine_end_to_end"], reference["sampling_seconds_per_frame"]]
    assert all(math.isfinite(s) and s > 0 for s in seconds)
    per_frame = reference["sampling_seconds_per_frame"] / ours["sampling_seconds_per_frame"]
    assert results["speedup_sampling"] == pytest.approx(per_frame)
    assert results["speedup_sampling"] > 5  # 25 solver steps against 1000 DDPM steps of the same networks (~40x)
    rss = [ours["peak_rss_mb"], cine["peak_rss_mb"], ours["sampling_peak_rss_mb"], reference["peak_rss_mb"]]
    assert rss[0] > 100 and rss == sorted(rss)  # parts in this order; ru_maxrss never decreases
    assert ("peak_gpu_memory_mb" in reference) == torch.cuda.is_available()

    fidelity = results["fidelity"]
    assert set(fidelity) == {"ours", "reference", "real"} and all(set(f) == PROBE_KEYS for f in fidelity.values())
    # the tiny data keep slice 3 of each cine, at slice position 0.5 in all four: a constant request correlates with
    # nothing
    assert all(math.isnan(f["slice_position_r"]) for f in fidelity.values())
    # the probes, trained on the real training frames, read those frames' own labels back (in sample)
    assert min(fidelity["real"][k] for k in ("bmi_r", "phase_circular_r", "group_auroc_ovr")) > 0.9
    for pipeline in ("ours", "reference"):
        f = fidelity[pipeline]
        assert -1 <= f["bmi_r"] <= 1 and -1 <= f["phase_circular_r"] <= 1 and 0 <= f["group_auroc_ovr"] <= 1


@pytest.mark.slow
def test_real_frames_scored_as_a_pipeline_score_as_the_real_ones(tiny_run):
    """The requested conditions line up with the frames they came from: the real frames, scored as if generated for
    the requested rows, get exactly the real frames' own scores."""
    folder, _ = tiny_run
    bundle = load_image_bundle(TINY_BUNDLE, cache_dir=folder / "cache", models_dir=folder / "tiny_train" / "models",
                               overrides=TINY_DATA)
    train = bundle.cohorts().train
    rows, picked = condition_rows(train, bundle.conditions.names, 12, seed=3)
    assert len(rows) == 12 and picked == sorted(set(picked)) and set(rows[0]) == set(PROBED)
    requested = train.subset(picked)
    setup = ProbeSetup(probes_for(bundle.conditions, PROBED, n_components=8), train, requested)
    scores = probe_fidelity(setup, {"frames": requested.items}, rows)
    assert list(scores) == ["frames", "real"] and json.dumps(scores["frames"]) == json.dumps(scores["real"])
    shuffled = probe_fidelity(setup, {"frames": requested.items.flip(0)}, rows)["frames"]
    assert shuffled["phase_circular_r"] < scores["real"]["phase_circular_r"] - 0.1  # a mismatch shows


def test_missing_weights_name_the_file_and_the_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"autoencoder_file .*none.*autoencoder\.safetensors.*--models-dir"):
        main(["--bundle", str(TINY_BUNDLE), "--models-dir", str(tmp_path / "none"), "--threads", "1"])


@pytest.mark.parametrize("argv, message", [
    (["--frames", "0"], "--frames must be at least 1, got 0"),
    (["--cines", "0"], "--cines must be at least 1, got 0"),
    (["--cine-frames", "1"], "--cine-frames must be at least 2"),
    (["--conditions-from", "validation"], "invalid choice: 'validation'"),
])
def test_bad_options_are_refused_before_anything_runs(argv, message, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err
