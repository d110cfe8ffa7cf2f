"""monai-gen: listing, argument validation with clear messages, plotting, generation with resume."""

from __future__ import annotations

import pytest

from monai_gen.cli.main import main
from monai_gen.engines.generation import read_manifest


def run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out + out.err


def test_bundles_lists_conditions_with_units_and_ranges(capsys):
    code, text = run(["bundles"], capsys)
    assert code == 0
    assert "ecg_generative_diffusion" in text and "--heart_rate" in text and "bpm" in text and "male, female" in text


def test_generate_help_documents_the_bundle_phenotypes(capsys):
    code, text = run(["generate", "ecg_generative_diffusion", "--help"], capsys)
    assert code == 0 and "--qt MS" in text and "valid 200-700 ms" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate", "ecg_generative_diffusion", "--heart_rate", "500"], "'heart_rate' = 500 bpm is outside its valid range"),
        (["generate", "ecg_generative_diffusion", "--sex", "unknown-value"], "sex"),
        (["generate", "no_such_bundle"], "no bundle 'no_such_bundle'"),
        (["sweep", "ecg_generative_diffusion", "--phenotype", "bmi", "--start", "1", "--stop", "2"], "not a condition"),
        (["sweep", "ecg_generative_diffusion", "--phenotype", "qt", "--start", "100", "--stop", "400"], "'qt' = 100 ms"),
        (["generate", "ecg_generative_diffusion", "--override", "novalue"], "ID=VALUE"),
        (["generate", "ecg_generative_diffusion", "--steps", "0"], "positive integer"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(argv, message, capsys):
    code, text = run(argv, capsys)
    assert code == 2 and message in text and "Traceback" not in text


def test_plot_a_real_record_and_reject_two(shared_data, tmp_path, capsys):
    code, _ = run(["plot", str(shared_data / "ecg/cinc2021/E07500.hea"), "--output", str(tmp_path / "e.png")], capsys)
    assert code == 0 and (tmp_path / "e.png").stat().st_size > 10_000
    records = [str(shared_data / "ecg/cinc2021/E07500.hea"), str(shared_data / "ecg/cinc2021/E07501.hea")]
    code, text = run(["plot", *records, "--output", str(tmp_path / "two.png")], capsys)
    assert code == 2 and "one ECG record at a time" in text


@pytest.mark.slow
def test_generate_with_shipped_weights_then_resume_skips_finished(tmp_path, capsys):
    argv = ["generate", "ecg_generative_diffusion", "--num-samples", "2", "--steps", "4", "--heart_rate", "80",
            "--sex", "female", "--output-dir", str(tmp_path), "--override", "progress=false"]
    code, text = run(argv, capsys)
    assert code == 0, text
    rows = read_manifest(tmp_path / "manifest.csv")
    assert [r["sex"] for r in rows] == ["female", "female"] and rows[0]["steps"] == "4"
    stamp = (tmp_path / "ecg_0.dat").stat().st_mtime_ns
    assert run(argv, capsys)[0] == 0
    assert (tmp_path / "ecg_0.dat").stat().st_mtime_ns == stamp
