"""monai-gen: listing, argument validation with clear messages, plotting, generation with resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from monai_gen.bundle.registry import find_bundle
from monai_gen.engines.generation import read_manifest

FAST = ["--steps", "2", "--override", "progress=false", "--override", "preview=false"]



def test_bundles_lists_conditions_with_units_and_ranges(run_cli):
    code, text = run_cli(["bundles"])
    assert code == 0
    assert "ecg_generative_diffusion" in text and "--heart_rate" in text and "bpm" in text and "male, female" in text


def test_generate_help_documents_the_bundle_phenotypes(run_cli):
    code, text = run_cli(["generate", "ecg_generative_diffusion", "--help"])
    text = " ".join(text.split())  # argparse wraps the help text
    assert code == 0 and "--qt MS" in text and "valid 200-700 ms" in text and "--lvh {no,yes}" in text


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
        (["generate", "ecg_generative_diffusion", "--batch-size", "0"], "must be a positive integer, got 0"),
        (["generate", "ecg_generative_diffusion", "--sampler", "foo"], "--sampler 'foo' is not a sampler; choose from ['ddim', 'ddpm', 'dpmpp_2m', 'dpmpp_3m']"),
        (["generate", "ecg_generative_diffusion", "--device", "gpu7"], "--device 'gpu7' is not a torch device"),
        (["generate", "ecg_generative_diffusion", "--qt", "nan"], "'qt' = 'nan' is not a value"),
        (["generate", "ecg_generative_diffusion", "--qt", "NaN"], "'qt' = 'NaN' is not a value"),
        (["generate", "ecg_generative_diffusion", "--qt", "unknown"], "'qt' = 'unknown' is not a value"),
        (["generate", "ecg_generative_diffusion", "--qt", ""], "'qt' = '' is not a value"),
        (["generate", "ecg_generative_diffusion", "--sex", "1"], "'sex' = '1' is not one of its categories ['male', 'female'] (aliases: ['f', 'm'])."),
        (["generate", "ecg_generatve_diffusion", "--heart_rate", "75"], "no bundle 'ecg_generatve_diffusion'"),
        (["sweep", "ecg_generatve_diffusion", "--phenotype", "qt", "--start", "1", "--stop", "2"], "no bundle"),
        (["generate", "ecg_generative_diffusion", "--pass-through", "subject_id"], "--pass-through names columns of --conditions-csv"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(argv, message, run_cli):
    code, text = run_cli(argv)
    assert code == 2 and message in text and "Traceback" not in text


def test_sweeping_a_categorical_condition_names_only_the_continuous_ones(run_cli):
    argv = ["sweep", "ecg_generative_diffusion", "--phenotype", "sex", "--start", "0", "--stop", "1"]
    code, text = run_cli(argv)
    assert code == 2 and "'sex' is a categorical condition" in text
    assert "['heart_rate', 'qrs', 'qt', 'age']" in text and "Traceback" not in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_a_cuda_device_on_a_machine_without_one_is_a_clear_error(run_cli):
    code, text = run_cli(["generate", "ecg_generative_diffusion", "--device", "cuda"])
    assert code == 2 and "no CUDA device is available on this machine; use --device cpu" in text


def test_help_and_bundles_start_without_importing_torch_or_monai():
    code = "import sys; from monai_gen.cli.main import main; main(['bundles']); print(sorted({'torch', 'monai'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("[]"), out


def test_identifier_columns_never_reach_an_output(tmp_path, run_cli):
    table = tmp_path / "cohort.csv"
    table.write_text("heart_rate,PatientName,patient_id\n75,DOE^JOHN,MRN12345\n")
    out = tmp_path / "out"
    code, text = run_cli(["generate", "ecg_generative_diffusion", "--conditions-csv", str(table), "--output-dir", str(out), *FAST])
    assert code == 2 and "['PatientName', 'patient_id'] that are not conditions" in text and not out.exists()

    argv = ["generate", "ecg_generative_diffusion", "--conditions-csv", str(table), "--pass-through", "patient_id",
            "--output-dir", str(out), *FAST]
    code, text = run_cli(argv)
    assert code == 2 and "'PatientName'" in text and "'patient_id'" not in text.split("Valid columns")[0].split("column(s)")[1]
    table.write_text("heart_rate,patient_id\n75,MRN12345\n60,MRN777\n")
    code, text = run_cli(argv)
    assert code == 0, text
    rows = read_manifest(out / "manifest.csv")
    assert [r["patient_id"] for r in rows] == ["MRN12345", "MRN777"] and [r["heart_rate"] for r in rows] == ["75.0", "60.0"]
    assert len(rows) == 2  # one sample per row: a row is a subject
    assert json.loads((out / f"{rows[0]['name']}.json").read_text())["pass_through"] == {"patient_id": "MRN12345"}
    assert "MRN" not in (out / f"{rows[0]['name']}.hea").read_text()  # the clinical file carries conditions only


def test_rerunning_with_other_conditions_is_an_error_unless_overwrite(tmp_path, run_cli):
    base = ["generate", "ecg_generative_diffusion", "--num-samples", "2", "--output-dir", str(tmp_path), *FAST]
    assert run_cli([*base, "--heart_rate", "75", "--sex", "Male"])[0] == 0
    assert [r["sex"] for r in read_manifest(tmp_path / "manifest.csv")] == ["male", "male"]  # recorded normalised
    code, text = run_cli([*base, "--heart_rate", "120", "--sex", "male"])
    assert code == 2 and "made for a different request" in text and "heart_rate 75.0 vs 120.0" in text
    assert run_cli([*base, "--heart_rate", "120", "--sex", "male", "--overwrite"])[0] == 0
    assert [r["heart_rate"] for r in read_manifest(tmp_path / "manifest.csv")] == ["120.0", "120.0"]


@pytest.mark.slow
def test_monai_bundle_run_refuses_unknown_options_missing_values_and_outputs_inside_the_bundle(tmp_path):
    bundle = find_bundle("ecg_generative_diffusion")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def monai_run(*options, cwd=tmp_path):
        command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str([str(bundle / "configs" / f) for f in ("common.json", "inference.json")]),
                   "--meta_file", str(bundle / "configs/metadata.json"), "--bundle_root", str(bundle),
                   "--num_samples", "1", "--num_inference_steps", "2", "--preview", "False", "--progress", "False", *options]
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)

    done = monai_run("--hr", "75", "--output_dir", str(tmp_path / "a"))
    assert done.returncode != 0 and "unknown option(s) ['--hr'] for this bundle" in done.stderr
    done = monai_run("--qt", "nan", "--output_dir", str(tmp_path / "b"))
    assert done.returncode != 0 and "'qt' = 'nan' is not a value" in done.stderr
    before = sorted(p.name for p in bundle.iterdir())
    done = monai_run(cwd=bundle)  # the default, relative output folder would land in the bundle
    assert done.returncode != 0 and "is inside the bundle folder" in done.stderr
    assert sorted(p.name for p in bundle.iterdir()) == before
    done = monai_run("--heart_rate", "70", "--output_dir", str(tmp_path / "c"))
    assert done.returncode == 0, done.stderr
    assert read_manifest(tmp_path / "c" / "manifest.csv")[0]["heart_rate"] == "70.0"


def test_plot_a_real_record_and_reject_two(shared_data, tmp_path, run_cli):
    code, _ = run_cli(["plot", str(shared_data / "ecg/cinc2021/E07500.hea"), "--output", str(tmp_path / "e.png")])
    assert code == 0 and (tmp_path / "e.png").stat().st_size > 10_000
    records = [str(shared_data / "ecg/cinc2021/E07500.hea"), str(shared_data / "ecg/cinc2021/E07501.hea")]
    code, text = run_cli(["plot", *records, "--output", str(tmp_path / "two.png")])
    assert code == 2 and "one ECG record at a time" in text


@pytest.mark.slow
def test_generate_with_shipped_weights_then_resume_skips_finished(tmp_path, run_cli):
    argv = ["generate", "ecg_generative_diffusion", "--num-samples", "2", "--steps", "4", "--heart_rate", "80",
            "--sex", "female", "--output-dir", str(tmp_path), "--override", "progress=false"]
    code, text = run_cli(argv)
    assert code == 0, text
    rows = read_manifest(tmp_path / "manifest.csv")
    assert [r["sex"] for r in rows] == ["female", "female"] and rows[0]["steps"] == "4"
    stamp = (tmp_path / "ecg_0.dat").stat().st_mtime_ns
    assert run_cli(argv)[0] == 0
    assert (tmp_path / "ecg_0.dat").stat().st_mtime_ns == stamp


def test_a_job_draws_one_contact_sheet_unless_previews_are_asked_for(tmp_path, run_cli):
    import shutil

    argv = ["generate", "ecg_generative_diffusion", "--num-samples", "2", "--steps", "2", "--override", "progress=false"]
    code, text = run_cli([*argv, "--output-dir", str(tmp_path / "plain"), "--batch-size", "auto"])
    assert code == 0, text
    assert sorted(p.name for p in (tmp_path / "plain").glob("*.png")) == ["contact_sheet.png"]
    code, text = run_cli([*argv, "--output-dir", str(tmp_path / "previews"), "--previews"])
    assert code == 0, text
    assert sorted(p.name for p in (tmp_path / "previews").glob("*.png")) == ["contact_sheet.png", "ecg_0.png", "ecg_1.png"]

    bundle = tmp_path / "old_bundle"  # a bundle whose inference config predates per-sample previews
    shutil.copytree(find_bundle("ecg_generative_diffusion"), bundle)
    config = json.loads((bundle / "configs" / "inference.json").read_text(encoding="utf-8"))
    del config["per_sample_previews"]
    (bundle / "configs" / "inference.json").write_text(json.dumps(config, indent=4) + "\n", encoding="utf-8")
    code, text = run_cli(["generate", str(bundle), "--previews", "--output-dir", str(tmp_path / "refused")])
    assert code == 2 and "--previews: old_bundle has no 'per_sample_previews' option" in text, text
    assert not (tmp_path / "refused").exists()
