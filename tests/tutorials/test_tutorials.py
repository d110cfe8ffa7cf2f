"""The tutorials run as users run them (a fresh interpreter, from the repository root) and do what they say."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str, data: Path) -> str:
    env = {**os.environ, "MONAI_GEN_SHARED_DATA": str(data), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tutorials" / script), *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_ecg_transforms_tutorial_measures_the_real_record(shared_data, tmp_path):
    out = _run("01_ecg_transforms.py", "--output-dir", str(tmp_path), data=shared_data)
    assert "(12, 5000) at 500 Hz" in out
    heart_rate = float(re.search(r"heart_rate_bpm (\d+)", out).group(1))
    qt = float(re.search(r"qt_ms (\d+)", out).group(1))
    assert 50 <= heart_rate <= 65 and 380 <= qt <= 480  # E07500: sinus rhythm near 57 bpm, QT near 450 ms
    assert sorted(p.name for p in tmp_path.iterdir()) == ["median_beats.png", "rhythm.png"]


@pytest.mark.slow
def test_generation_tutorial_sweeps_the_shipped_bundle(shared_data, tmp_path):
    out = _run("02_generate_ecg_sweep.py", "--output-dir", str(tmp_path), "--steps", "8", "--heart-rates", "60", "100",
               data=shared_data)
    lines = re.findall(r"requested HR (\d+) bpm -> QRS (\S+) ms, QT (\S+) ms", out)
    assert [int(hr) for hr, _, _ in lines] == [60, 60, 100, 100]
    assert (tmp_path / "heart_rate_sweep.png").stat().st_size > 10_000


@pytest.mark.slow
def test_ct_tutorial_trains_on_a_user_folder_and_generates_for_a_segmentation(shared_data, tmp_path):
    if not (shared_data / "ct" / "totalsegmentator" / "example_ct_dicom").is_dir():
        pytest.skip("the TotalSegmentator CTs are absent")
    out = _run("03_train_ct_on_your_folder.py", "--output-dir", str(tmp_path), data=shared_data)
    trained = re.findall(r"(train_\w+): trained on \[(.*?)\] \((\d+) patches\), held out \[(.*?)\]", out)
    assert [stage for stage, *_ in trained] == ["train_autoencoder", "train_diffusion"]
    assert all(int(n) == 12 for _, _, n, _ in trained)  # abdomen + two crops, 4 patches each; the thorax held out
    shape, low, high = re.search(r"\((\d+), (\d+), (\d+)\) voxels at .* HU (-?\d+) \.\. (-?\d+)", out).group(1, 4, 5)
    assert int(shape) == 16 and -1000 <= int(low) < int(high) <= 1000  # HU inside the bundle's window
    assert "label map " + str(tmp_path / "example_folder" / "labels" / "abdomen_seg.nii.gz") in out
    assert re.search(r"DICOM series: 16 files", out)
