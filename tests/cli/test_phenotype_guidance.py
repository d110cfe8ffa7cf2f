"""``monai-gen generate --phenotype-guidance NAME=SCALE``: guidance of one condition on top of the global scale, over
the bundle's defaults. On the shipped ECG bundle the default ``qrs`` 6 moves the QRS that the LUDB-validated
measurement reads toward an asked 140 ms (``qrs=1`` turns it off and keeps the other defaults), and every sidecar
records the scales; bad names, scales and bundles without the option are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from monai_gen.bundle.ecg_evaluation import measure_beats
from monai_gen.engines.generation import read_manifest

TINY_BRAIN = Path(__file__).resolve().parents[1] / "bundle" / "tiny_brain_bundle"


def _measured_qrs(run_cli, out: Path, *extra: str) -> np.ndarray:
    code, text = run_cli(["generate", "ecg_generative_diffusion", "--qrs", "140", "--num-samples", "12", "--output-dir",
                          str(out), "--output-format", "array", "--override", "progress=false", *extra])
    assert code == 0, text
    (shard,) = out.glob("shard_*.safetensors")
    return measure_beats(load_file(shard)["samples"])["qrs"]


@pytest.mark.slow
def test_qrs_guidance_moves_the_measured_qrs_toward_the_asked_value_and_is_recorded(run_cli, tmp_path):
    guided = _measured_qrs(run_cli, tmp_path / "guided")  # the bundle's default: qrs 6
    plain = _measured_qrs(run_cli, tmp_path / "plain", "--phenotype-guidance", "qrs=1")
    assert np.isfinite(plain).all() and np.isfinite(guided).all()
    assert np.median(guided) > np.median(plain) + 10, (np.median(plain), np.median(guided))  # 106 -> 129 ms at writing
    records = {name: json.loads(next((tmp_path / name).glob("shard_*.json")).read_text()) for name in ("guided", "plain")}
    assert records["guided"]["phenotype_guidance"] == {"heart_rate": 3.0, "qrs": 6.0, "qt": 6.0, "sex": 3.0}
    assert records["plain"]["phenotype_guidance"] == {"heart_rate": 3.0, "qrs": 1.0, "qt": 6.0, "sex": 3.0}
    assert records["plain"]["guidance_scale"] == 3.0
    row = read_manifest(tmp_path / "plain" / "manifest.csv")[0]
    assert json.loads(row["phenotype_guidance"]) == {"heart_rate": 3.0, "qrs": 1.0, "qt": 6.0, "sex": 3.0}


@pytest.mark.parametrize(
    ("bundle", "option", "message"),
    [
        ("ecg_generative_diffusion", "qrs", "argument --phenotype-guidance: expected NAME=SCALE (e.g. qrs=6), got 'qrs'"),
        ("ecg_generative_diffusion", "qrs=strong", "expected NAME=SCALE (e.g. qrs=6), got 'qrs=strong'"),
        ("ecg_generative_diffusion", "qrss=3", "--phenotype-guidance qrss: not a condition of ecg_generative_diffusion"),
        (str(TINY_BRAIN), "age=3", "--phenotype-guidance: tiny_brain_bundle has no 'phenotype_guidance' option"),
    ],
)
def test_bad_phenotype_guidance_is_a_one_line_error(bundle, option, message, run_cli, tmp_path):
    code, text = run_cli(["generate", bundle, "--phenotype-guidance", option, "--output-dir", str(tmp_path / "out")])
    assert code == 2 and message in text, text
    assert "Traceback" not in text and not (tmp_path / "out").exists()


def test_a_json_override_replaces_the_whole_guidance_table(run_cli, tmp_path):
    code, text = run_cli(["generate", "ecg_generative_diffusion", "--qrs", "120", "--num-samples", "1", "--steps", "2",
                          "--output-format", "array", "--output-dir", str(tmp_path), "--override", "progress=false",
                          "--override", 'phenotype_guidance={"qrs": 4.5}'])
    assert code == 0, text
    assert json.loads(next(tmp_path.glob("shard_*.json")).read_text())["phenotype_guidance"] == {"qrs": 4.5}


def test_an_override_that_is_not_json_is_a_one_line_error(run_cli, tmp_path):
    code, text = run_cli(["generate", "ecg_generative_diffusion", "--output-dir", str(tmp_path / "out"),
                          "--override", "phenotype_guidance={qrs: 6}"])
    assert code == 2 and "--override phenotype_guidance: '{qrs: 6}' starts like a JSON list / object but is not one" in text
    assert "Traceback" not in text and not (tmp_path / "out").exists()
