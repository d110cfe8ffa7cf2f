"""``monai-gen generate --output-format array``: the shipped brain bundle writes the samples of its NIfTI files, seed
for seed, as one safetensors shard per batch listed in ``manifest.csv``, with the job's contact sheet drawn from the
shards; formats a bundle does not offer, and per-sample extras the shards cannot carry, are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from safetensors import safe_open

from monai_gen.engines.generation import read_manifest

TINY_BRAIN = Path(__file__).resolve().parents[1] / "bundle" / "tiny_brain_bundle"  # configs without output_format
JOB = ["--age", "60", "--sex", "M", "--slice-position", "0.5", "--num-samples", "3", "--batch-size", "2", "--steps",
       "3", "--override", "progress=false"]
pytestmark = pytest.mark.slow


def test_array_shards_hold_what_the_nifti_files_hold_with_the_sheet(run_cli, tmp_path):
    code, text = run_cli(["generate", "brain_mri_generative_diffusion", *JOB, "--output-dir", str(tmp_path / "nifti")])
    assert code == 0, text
    code, text = run_cli(["generate", "brain_mri_generative_diffusion", *JOB, "--output-dir", str(tmp_path / "array"),
                          "--output-format", "array"])
    assert code == 0, text
    rows = read_manifest(tmp_path / "array" / "manifest.csv")
    assert [r["files"].split(";")[0] for r in rows] == ["shard_slice_0.safetensors"] * 2 + ["shard_slice_2.safetensors"]
    assert not list((tmp_path / "array").glob("*.nii.gz"))
    assert (tmp_path / "array" / "contact_sheet.png").is_file()
    for shard in ("shard_slice_0", "shard_slice_2"):
        with safe_open(str(tmp_path / "array" / f"{shard}.safetensors"), framework="np") as handle:
            samples, named = handle.get_tensor("samples"), json.loads(handle.metadata()["samples"])
        assert samples.shape[1:] == (1, 96, 120) and samples.shape[0] == len(named)
        for sample, entry in zip(samples, named, strict=True):
            assert entry["conditions"] == {"age": 60.0, "sex": "M", "slice_position": 0.5}
            nifti = nib.load(tmp_path / "nifti" / f"{entry['name']}.nii.gz").get_fdata(dtype=np.float32)
            np.testing.assert_allclose(sample[0], nifti[:, :, 0], atol=1e-6)
        sidecar = json.loads((tmp_path / "array" / f"{shard}.json").read_text())
        assert sidecar["model_id"].startswith("brain_mri_generative_diffusion-") and sidecar["synthetic"] is True


def test_a_ct_job_into_shards_writes_no_dicom_series_unless_asked(run_cli, tmp_path):
    out = tmp_path / "ct"
    code, text = run_cli(["generate", "ct_generative_diffusion", "--volume-size", "32", "32", "32", "--num-samples",
                          "2", "--steps", "2", "--output-format", "array", "--output-dir", str(out)])
    assert code == 0, text
    assert sorted(p.name for p in out.iterdir()) == [
        "contact_sheet.png", "manifest.csv", "shard_ct_0.json", "shard_ct_0.safetensors"]
    with safe_open(str(out / "shard_ct_0.safetensors"), framework="np") as handle:
        assert handle.get_tensor("samples").shape == (2, 1, 32, 32, 32)
    code, text = run_cli(["generate", "ct_generative_diffusion", "--output-format", "array", "--override",
                          "write_dicom=true", "--output-dir", str(tmp_path / "asked"), "--steps", "1"])
    assert code == 2 and "which write_dicom needs; use output_format 'nifti'" in text, text


@pytest.mark.parametrize(
    ("bundle", "options", "message"),
    [
        ("brain_mri_generative_diffusion", ["--output-format", "dicom"],
         "output_format 'dicom' is not offered; choose from nifti, array"),
        ("brain_mri_generative_diffusion", ["--output-format", "array", "--previews"],
         "output_format 'array' writes one shard per batch and no per-sample files, which per_sample_previews needs"),
        ("cardiac_mri_generative_diffusion", ["--output-format", "array", "--cine"],
         "no per-sample files, which cine needs; use output_format 'nifti'"),
        ("ecg_generative_diffusion", ["--output-format", "nifti"],
         "output_format 'nifti' is not offered; choose from wfdb, array"),
        (str(TINY_BRAIN), ["--output-format", "array"], "--output-format: tiny_brain_bundle has no 'output_format' option"),
    ],
)
def test_formats_a_bundle_cannot_write_are_one_line_errors(bundle, options, message, run_cli, tmp_path):
    code, text = run_cli(["generate", bundle, *options, "--output-dir", str(tmp_path / "out"), "--steps", "1"])
    assert code == 2 and message in text, text
    assert "Traceback" not in text and not list((tmp_path / "out").glob("*.nii.gz"))
