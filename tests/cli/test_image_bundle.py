"""monai-gen on an image bundle (the tiny brain test bundle, trained here for one epoch on real IXI slices): train,
export, generate with --age / --sex / --slice-position, sweep, DICOM on request; bad tables and values are one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from monai_gen.engines.generation import read_manifest

BUNDLE = Path(__file__).resolve().parents[1] / "bundle" / "tiny_brain_bundle"
SMALL = ["--override", "max_subjects=6", "--override", "slice_indices=$[35, 45, 55]", "--override",
         "image_size=$[64, 64]", "--override", "test_fraction=0.3", "--override", "batch_size=4"]
FAST = ["--steps", "2", "--override", "image_size=$[64, 64]", "--override", "progress=false"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_bundle(ixi, tmp_path_factory):
    """The tiny bundle trained one epoch per stage by ``monai-gen train``, exported by ``monai-gen export``."""
    from monai_gen.cli.main import main

    folder = tmp_path_factory.mktemp("image_cli")
    train = ["train", str(BUNDLE), "--dataset-dir", str(ixi), "--output-dir", str(folder / "run"), "--max-epochs", "1"]
    assert main([*train, *SMALL]) == 0
    assert main(["export", str(BUNDLE), str(folder / "run"), "--to", str(folder / "bundle")]) == 0
    return folder / "bundle"


def test_generate_writes_2mm_nifti_pngs_on_request_and_the_sheet_and_warns_about_extrapolation(
    trained_bundle, tmp_path, run_cli, caplog
):
    out = tmp_path / "generated"
    argv = ["generate", str(trained_bundle), "--age", "70", "--sex", "F", "--slice-position", "0.6", "--num-samples",
            "2", "--output-dir", str(out), "--previews", *FAST]
    code, text = run_cli(argv)
    assert code == 0, text
    warned = caplog.text  # trained on 4 subjects of 25.9-68.6 years: 70 is valid but outside, so generated with a warning
    assert "age = 70 years is outside the range the weights were trained on (25.94-68.6 years)" in warned
    assert "the model extrapolates there" in warned
    rows = read_manifest(out / "manifest.csv")
    assert [(r["age"], r["sex"], r["slice_position"]) for r in rows] == [("70.0", "F", "0.6")] * 2
    image = nib.load(out / "slice_0.nii.gz")
    assert image.shape == (64, 64, 1) and image.header.get_zooms() == (2.0, 2.0, 2.0)
    np.testing.assert_array_equal(image.affine, np.diag([2.0, 2.0, 2.0, 1.0]))
    assert image.header["descrip"].item() == b"SYNTHETIC age=70 sex=F slice_position=0.6"
    assert np.isfinite(image.get_fdata()).all()
    sidecar = json.loads((out / "slice_1.json").read_text())
    assert sidecar["conditions"] == {"age": 70.0, "sex": "F", "slice_position": 0.6} and sidecar["seed"] == 1
    assert sorted(p.name for p in out.glob("*.png")) == ["contact_sheet.png", "slice_0.png", "slice_1.png"]
    assert "slice_0.png" in rows[0]["files"]  # a per-sample PNG is one of the sample's files


def test_sweep_of_the_slice_position_draws_the_strip_and_writes_dicom_when_asked(trained_bundle, tmp_path, run_cli):
    out = tmp_path / "sweep"
    argv = ["sweep", str(trained_bundle), "--phenotype", "slice-position", "--start", "0.3", "--stop", "0.45",
            "--num-values", "2", "--num-seeds", "2", "--sex", "M", "--output-dir", str(out), *FAST,
            "--override", "write_dicom=true"]
    code, text = run_cli(argv)
    assert code == 0, text
    rows = read_manifest(out / "manifest.csv")
    assert [(r["slice_position"], r["seed"]) for r in rows] == [("0.3", "0"), ("0.3", "1"), ("0.45", "0"), ("0.45", "1")]
    assert (out / "sweep_slice_position.png").is_file()
    ds = pydicom.dcmread(out / f"{rows[0]['name']}_dicom" / "slice_0001.dcm")
    assert [float(v) for v in ds.PixelSpacing] == [2.0, 2.0] and float(ds.SliceThickness) == 2.0
    assert ds.SeriesDescription.startswith("SYNTHETIC") and ds.PatientName == "SYNTHETIC^DATA"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--slice-position", "1.5"], "condition 'slice_position' = 1.5 is outside its valid range [0, 1]"),
        (["--sex", "X"], "condition 'sex' = 'X' is not one of its categories ['F', 'M']"),
        (["--age", "abc"], "condition 'age' must be a number, got 'abc'"),
    ],
)
def test_bad_values_exit_2_before_loading_any_weights(options, message, run_cli, tmp_path):
    code, text = run_cli(["generate", str(BUNDLE), *options, "--output-dir", str(tmp_path / "out"), *FAST])
    assert code == 2 and message in text and "Traceback" not in text and not (tmp_path / "out").exists()


def test_training_on_a_participants_table_with_bad_values_is_one_line_naming_file_row_subject_column(
    ixi, tmp_path, run_cli
):
    lines = (ixi / "participants.csv").read_text().splitlines()
    first, second = lines[1].split(","), lines[2].split(",")
    lines[1] = f"{first[0]},abc,{first[2]}"
    lines[2] = f"{second[0]},{second[1]},X"
    dataset = tmp_path / "ixi"
    dataset.mkdir()
    os.symlink(ixi / "t1", dataset / "t1")
    table = dataset / "participants.csv"
    train = ["train", str(BUNDLE), "--dataset-dir", str(dataset), "--output-dir", str(tmp_path / "run"), *SMALL]
    table.write_text("\n".join(lines) + "\n")
    code, text = run_cli(train)
    assert code == 2 and "Traceback" not in text, text
    assert f"{table}, row 1 (MRID '{first[0]}'), column 'Age': condition 'age' must be a number, got 'abc'." in text
    table.write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")
    code, text = run_cli(train)
    assert code == 2 and f"row 2 (MRID '{second[0]}'), column 'Sex': condition 'sex' = 'X' is not one of" in text
