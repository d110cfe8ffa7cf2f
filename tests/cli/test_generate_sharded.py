"""``monai-gen generate --nproc 2``: the shipped ECG and brain bundles under torchrun (gloo) write what one process
writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from monai_gen.cli.main import main
from monai_gen.engines.generation import read_manifest

TINY_BUNDLE = Path(__file__).parents[1] / "bundle" / "tiny_brain_bundle"


def _generate(output_dir: Path, *extra: str, bundle: str = "ecg_generative_diffusion") -> subprocess.CompletedProcess:
    phenotype = ["--heart_rate", "80"] if bundle == "ecg_generative_diffusion" else ["--age", "50"]
    command = [sys.executable, "-m", "monai_gen.cli.main", "generate", bundle, *phenotype,
               "--num-samples", "4", "--steps", "2", "--batch-size", "1", "--output-dir", str(output_dir), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # torchrun gives each rank one thread; so does the reference
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_two_processes_write_the_files_and_manifest_of_one(tmp_path):
    one = _generate(tmp_path / "one")
    assert one.returncode == 0, one.stderr[-2000:]
    two = _generate(tmp_path / "two", "--nproc", "2")
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("wrote ") == 1  # rank 0 reports, once
    for name in ("ecg_0.dat", "ecg_1.dat", "ecg_2.dat", "ecg_3.dat", "ecg_3.hea"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    keep = ("name", "files", "seed", "heart_rate", "model_id", "steps")
    assert [{k: r[k] for k in keep} for r in read_manifest(tmp_path / "two" / "manifest.csv")] == [
        {k: r[k] for k in keep} for r in read_manifest(tmp_path / "one" / "manifest.csv")]


@pytest.mark.slow
@pytest.mark.parametrize("output_format", ["nifti", "array"])
def test_an_image_bundle_under_two_ranks_writes_the_samples_of_one_process(output_format, tmp_path):
    runs = {}
    for nproc in (1, 2):
        folder = tmp_path / str(nproc)
        done = _generate(folder, "--nproc", str(nproc), "--output-format", output_format,
                         bundle="brain_mri_generative_diffusion")
        assert done.returncode == 0, done.stderr[-2000:]
        runs[nproc] = folder
    rows = {n: read_manifest(folder / "manifest.csv") for n, folder in runs.items()}
    keep = ("name", "files", "seed", "age", "model_id")
    assert [{k: r[k] for k in keep} for r in rows[2]] == [{k: r[k] for k in keep} for r in rows[1]]
    assert len(rows[2]) == 4 and (runs[2] / "contact_sheet.png").is_file()
    for row in rows[1]:
        first = row["files"].split(";")[0]
        if output_format == "array":  # one shard per batch of 1, same bytes
            assert (runs[2] / first).read_bytes() == (runs[1] / first).read_bytes(), first
        else:
            np.testing.assert_array_equal(nib.load(runs[2] / first).get_fdata(), nib.load(runs[1] / first).get_fdata())


def test_nproc_needs_the_bundles_multi_gpu_inference_config(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["generate", str(TINY_BUNDLE), "--age", "60", "--nproc", "2", "--output-dir", str(tmp_path)])
    assert stopped.value.code == 2 and not any(tmp_path.iterdir())
    assert "tiny_brain_bundle has no configs/multi_gpu_inference.json: it cannot generate with --nproc" in capsys.readouterr().err
