"""The CT generation benchmark in its tiny mode: the configuration-only tiny CT bundle trained for one epoch per stage,
one volume larger than its patches and one at the patch size generated end to end in child processes (the large one
also decoded whole), its sampler and MONAI's 1000-step pipeline on the same networks and inputs, both scored. Timings
and memory are printed; only what holds on any machine is asserted."""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks.ct_generation import MEMORY_TARGET_GB, PROBED, TINY_BUNDLE, distribution_scores, main
from benchmarks.image_generation import (
    ProbeSetup,
    condition_rows,
    generator_inputs,
    load_image_bundle,
    probes_for,
    reference_network,
)


def _files(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """``(folder, results)`` of one ``--tiny --compare-full-decode --fewer-steps 10`` run in a fresh working folder."""
    folder = tmp_path_factory.mktemp("tiny_ct_benchmark")
    bundle_files = _files(TINY_BUNDLE)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # every default folder (runs/...) lands here
        results = main(["--tiny", "--compare-full-decode", "--fewer-steps", "10", "--cache-dir", str(folder / "cache"),
                        "--output", str(folder / "bench.json")])
    assert _files(TINY_BUNDLE) == bundle_files  # trained and written outside the bundle
    return folder, results


@pytest.fixture(scope="module")
def tiny_bundle(tiny_run):
    folder, _ = tiny_run
    return load_image_bundle(TINY_BUNDLE, cache_dir=folder / "cache", models_dir=folder / "tiny_train" / "models")


@pytest.mark.slow
def test_each_volume_runs_the_inference_workflow_in_its_own_process(tiny_run):
    folder, results = tiny_run
    assert json.dumps(json.loads((folder / "bench.json").read_text())) == json.dumps(results)  # NaN-safe comparison
    assert (results["bundle"], results["threads"], results["memory_target_gb"]) == ("tiny_ct_bundle", 1, MEMORY_TARGET_GB)
    large, patch, whole = results["end_to_end"]
    assert [run["volume_size"] for run in (large, patch, whole)] == [[32] * 3, [16] * 3, [32] * 3]
    # the bundle's streamed decoding (its decode_slab_size 8), and the comparison run decoded whole
    assert large["decode_slab_size"] == patch["decode_slab_size"] == 8 and whole["decode_slab_size"] is None
    for run in (large, patch, whole):
        edge = run["volume_size"][0]
        # what the workflow wrote: one NIfTI of the requested size at the bundle's 4 mm, a DICOM file per axial slice,
        # three previews and the job's contact sheet
        assert (run["nifti_files"], run["dicom_files"]) == (1, edge)
        assert run["preview_files"] == ["contact_sheet.png", "ct_0_axial.png", "ct_0_coronal.png", "ct_0_sagittal.png"]
        assert run["nifti_shape"] == run["volume_size"] and run["nifti_spacing_mm"] == [4.0] * 3
        # the child's own peak (torch and the networks included), never below what it held before the workflow ran
        assert run["peak_rss_mb"] >= run["baseline_rss_mb"] > 100
        assert run["peak_rss_gb"] == pytest.approx(run["peak_rss_mb"] * 2**20 / 1e9)
        assert 0 < run["seconds_per_volume"] < run["process_seconds"]  # the process also starts Python and imports
        assert ("peak_gpu_memory_mb" in run) == torch.cuda.is_available()
    assert results["meets_memory_target"] is (large["peak_rss_gb"] <= MEMORY_TARGET_GB) is True


@pytest.mark.slow
def test_the_sampler_is_faster_than_the_reference_and_both_are_scored(tiny_run):
    _, results = tiny_run
    assert (results["patches"], results["patch_size"], results["conditions_from"]) == (8, [16] * 3, "train")
    ours, reference = results["ours"], results["reference"]
    assert reference["extrapolated_from_steps"] is None  # all 1000 steps ran, so the reference is scored too
    assert results["speedup_sampling"] == pytest.approx(
        reference["sampling_seconds_per_patch"] / ours["sampling_seconds_per_patch"])
    assert results["speedup_sampling"] > 5  # 25 solver steps against 1000 DDPM steps of the same networks
    assert results["speedup_end_to_end"] == pytest.approx(
        reference["sampling_seconds_per_patch"] / results["end_to_end"][1]["seconds_per_volume"])
    assert ours["sampling_peak_rss_mb"] > 0 and reference["sampling_peak_rss_mb"] >= ours["sampling_peak_rss_mb"]
    # decoding timed apart: part of each pipeline's seconds, and the rest (the denoising steps) still faster in ours
    assert 0 < ours["decode_seconds_per_patch"] < ours["sampling_seconds_per_patch"]
    assert 0 < reference["decode_seconds_per_patch"] < reference["sampling_seconds_per_patch"]
    assert results["speedup_without_decoding"] > 5
    fast = results["ours_fewer_steps"]
    assert (ours["num_inference_steps"], fast["num_inference_steps"]) == (25, 10)
    assert results["speedup_sampling_fewer_steps"] == pytest.approx(
        reference["sampling_seconds_per_patch"] / fast["sampling_seconds_per_patch"])

    fidelity = results["fidelity"]
    assert set(fidelity) == {"ours", "ours_fewer_steps", "reference", "real"} and all(set(f) == {"craniocaudal_position_r"}
                                                                   for f in fidelity.values())
    # the probe, trained on the real training patches, reads those patches' own positions back (in sample; 0.79 with
    # the tiny cohort's 9 training patches and 4 PCA components: it does not depend on the trained weights)
    assert fidelity["real"]["craniocaudal_position_r"] > 0.5
    assert all(-1 <= fidelity[p]["craniocaudal_position_r"] <= 1 for p in ("ours", "ours_fewer_steps", "reference"))
    distribution = results["distribution"]
    assert list(distribution) == ["feature_space", "ours", "ours_fewer_steps", "reference", "real_train",
                                  "ours_vs_reference"]
    for name in ("ours", "ours_fewer_steps", "reference", "real_train"):
        scores = distribution[name]
        assert scores["frechet"] > 0 and math.isfinite(scores["mmd"]) and 0 < scores["hu_wasserstein"] <= 2000
    assert 0 < distribution["ours_vs_reference"]["hu_wasserstein"] <= 2000  # different noise paths, same model


@pytest.mark.slow
def test_real_patches_scored_as_a_pipeline_are_at_distance_zero(tiny_run, tiny_bundle):
    """The distances are measured against the requested real patches: those patches themselves score 0 (and a
    shuffled copy the same, the distances being of distributions), the training patches do not."""
    train = tiny_bundle.cohorts().train
    rows, picked = condition_rows(train, tiny_bundle.conditions.names, 6, seed=2)
    requested = train.subset(picked)
    setup = ProbeSetup(probes_for(tiny_bundle.conditions, PROBED, n_components=4), train, requested)
    scores = distribution_scores(setup, {"same": requested.items, "shuffled": requested.items.flip(0)},
                                 n_components=4, hu_window=[-1000.0, 1000.0], seed=0)
    for name in ("same", "shuffled"):
        assert scores[name]["hu_wasserstein"] == 0 and scores[name]["frechet"] == pytest.approx(0, abs=1e-6)
    assert scores["real_train"]["hu_wasserstein"] > 1 and scores["real_train"]["frechet"] > 1e-3


@pytest.mark.slow
def test_the_reference_network_sees_the_organ_channels_the_generator_adds(tiny_bundle):
    """Without a label map the organ channels are zeros with presence 0, as the sampler's; with one (a training
    patch's, by reference) they reach every reference step, as they reach the sampler's steps."""
    train = tiny_bundle.cohorts().train
    labelled = next(r for r in train.rows if r.get("organ_label_file"))
    rows = [{"craniocaudal_position": 0.5}, {"craniocaudal_position": labelled["craniocaudal_position"],
                                             "organ_label_file": labelled["organ_label_file"],
                                             "patch_start": labelled["patch_start"]}]
    inputs = generator_inputs(tiny_bundle, rows, [0, 1])
    assert set(inputs) == {"spatial_condition", "spatial_condition_mask"}
    assert inputs["spatial_condition_mask"].tolist() == [0.0, 1.0]
    assert float(inputs["spatial_condition"][0].abs().sum()) == 0 and float(inputs["spatial_condition"][1].sum()) > 0
    x, step = torch.randn(2, *tiny_bundle.shape), torch.tensor([499])
    values, mask = tiny_bundle.conditions.encode_rows(rows)
    with torch.inference_mode():
        called = reference_network(tiny_bundle, rows, [0, 1])(x, step)
        direct = tiny_bundle.network(x, torch.full((2,), 0.5), conditions=values, condition_mask=mask, **inputs)
        unconditioned = tiny_bundle.network(x, torch.full((2,), 0.5), conditions=values, condition_mask=mask)
    scale = float(unconditioned.abs().max())  # a one-epoch network's outputs are small (about 1e-4)
    assert scale > 0
    assert float((called - direct).abs().max()) <= 1e-4 * scale  # MONAI step k = 499 is our t = 0.5
    # no label map = the network's own missing input; a label map reached the network
    assert float((called[0] - unconditioned[0]).abs().max()) <= 1e-4 * scale
    assert float((called[1] - unconditioned[1]).abs().max()) > 1e-2 * scale


@pytest.mark.slow
def test_a_volume_size_off_the_latent_grid_is_refused_naming_the_compression(tiny_run, tmp_path, monkeypatch):
    folder, _ = tiny_run
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"--volume-size must be a multiple of the autoencoder's compression 4, got 30"):
        main(["--bundle", str(TINY_BUNDLE), "--models-dir", str(folder / "tiny_train" / "models"), "--cache-dir",
              str(folder / "cache"), "--volume-size", "30"])


def test_missing_weights_name_the_file_and_the_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"autoencoder_file .*none.*autoencoder\.safetensors.*--models-dir"):
        main(["--bundle", str(TINY_BUNDLE), "--models-dir", str(tmp_path / "none")])


@pytest.mark.parametrize("argv, message", [
    (["--patches", "0"], "--patches must be at least 1, got 0"),
    (["--volume-size", "0"], "--volume-size must be at least 1, got 0"),
    (["--fewer-steps", "1"], "--fewer-steps must be at least 2"),
    (["--reference-steps", "1001"], "--reference-steps must be in [1, 1000], got 1001"),
    (["--conditions-from", "validation"], "invalid choice: 'validation'"),
])
def test_bad_options_are_refused_before_anything_runs(argv, message, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err
