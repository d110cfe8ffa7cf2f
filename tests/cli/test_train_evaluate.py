"""monai-gen train / export / evaluate: outputs only under the output folder, the bundle byte-identical, clear errors.

Every test that runs a workflow hashes the bundle folder before and after and checks that ``git status`` shows
nothing new under ``bundles/``. Training is tiny: 4 real records, 3 beats each, batch 2, a few iterations; the
cohort is built once per module and copied into each run folder (same inputs, same cache key: reused).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from monai.bundle import ConfigParser
from safetensors.torch import load_file

from monai_gen.bundle.ecg_cohort import load_split_cohort
from monai_gen.bundle.registry import find_bundle, read_bundle_info
from monai_gen.engines.checkpointing import list_checkpoints

BUNDLE = find_bundle("ecg_generative_diffusion")
REPO = BUNDLE.parents[1]
SHIPPED_VERSION = read_bundle_info(BUNDLE).version
_MAJOR, _MINOR, _PATCH = SHIPPED_VERSION.split(".")
NEXT_PATCH = f"{_MAJOR}.{_MINOR}.{int(_PATCH) + 1}"  # what an export after training calls the new weights
RECORDS = ("E07500", "E07501", "JS20000", "HR06003")
TINY = ["--override", "batch_size=2", "--override", "max_beats_per_record=3"]
MODEL_FILES = ("conditions.json", "mean_beat.safetensors", "model.safetensors")



def _bundle_state() -> tuple[dict[str, str], str]:
    """SHA-256 of every file in the bundle folder, and ``git status --porcelain bundles/``."""
    hashes = {str(p.relative_to(BUNDLE)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(BUNDLE.rglob("*"))
              if p.is_file()}
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "bundles/"], cwd=REPO,
                            capture_output=True, text=True, check=False).stdout
    return hashes, status


@pytest.fixture()
def bundle_untouched():
    """Fails the test if it changed, added or removed any file of the shipped bundle."""
    before = _bundle_state()
    yield
    after = _bundle_state()
    assert after[0] == before[0], "the bundle folder changed"
    assert after[1] == before[1], f"git status of bundles/ changed:\n{before[1]}->\n{after[1]}"


def _link_records(folder: Path, source: Path, names) -> Path:
    folder.mkdir(parents=True)
    for name in names:
        for suffix in (".hea", ".mat"):
            (folder / f"{name}{suffix}").symlink_to(source / f"{name}{suffix}")
    return folder


@pytest.fixture(scope="module")
def ecg_folder(shared_data, tmp_path_factory):
    return _link_records(tmp_path_factory.mktemp("data") / "ecg", shared_data / "ecg" / "cinc2021", RECORDS)


@pytest.fixture(scope="module")
def cohort_cache(ecg_folder, ecg_preparation, tmp_path_factory):
    """A folder holding the cohort cache of ``ecg_folder`` with 3 beats per record (as TINY asks)."""
    folder = tmp_path_factory.mktemp("cohort_cache")
    load_split_cohort(ecg_folder, folder, **ecg_preparation, max_beats_per_record=3)
    return folder


def _run_folder(cohort_cache: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for path in cohort_cache.glob("cohort_*"):
        shutil.copy(path, folder / path.name)
    return folder


def test_train_writes_only_under_its_default_output_folder_and_export_makes_a_new_version(
    ecg_folder, cohort_cache, tmp_path, monkeypatch, run_cli, bundle_untouched
):
    monkeypatch.chdir(tmp_path)
    run_dir = _run_folder(cohort_cache, tmp_path / "runs" / "ecg_generative_diffusion" / "train")
    code, text = run_cli(["train", "ecg_generative_diffusion", "--dataset-dir", str(ecg_folder), "--max-epochs", "1", *TINY])
    assert code == 0, text
    assert sorted(p.name for p in (run_dir / "models").iterdir()) == list(MODEL_FILES)
    assert len(list_checkpoints(run_dir)) == 1  # the final one (one epoch of a few iterations)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]

    code, text = run_cli(["export", "ecg_generative_diffusion", str(run_dir), "--to", str(tmp_path / "mine")])
    assert code == 0, text
    exported = read_bundle_info(tmp_path / "mine")
    weights = (run_dir / "models" / "model.safetensors").read_bytes()
    assert exported.version == f"{NEXT_PATCH}+{hashlib.sha256(weights).hexdigest()[:8]}" and exported.version in text
    for name in MODEL_FILES:
        assert (tmp_path / "mine" / "models" / name).read_bytes() == (run_dir / "models" / name).read_bytes()
    for name in ("configs/inference.json", "configs/common.json", "docs/README.md", "LICENSE"):
        assert (tmp_path / "mine" / name).read_bytes() == (BUNDLE / name).read_bytes()
    parser = ConfigParser()
    parser.read_meta(tmp_path / "mine" / "configs" / "metadata.json")
    parser.read_config(tmp_path / "mine" / "configs" / "inference.json")
    assert parser.get_parsed_content("model_id") == f"ecg_generative_diffusion-{exported.version}"
    meta = json.loads((tmp_path / "mine" / "configs" / "metadata.json").read_text())
    assert list(meta["changelog"])[:2] == [exported.version, SHIPPED_VERSION] and "eval_metrics" not in meta

    code, text = run_cli(["export", "ecg_generative_diffusion", str(run_dir), "--to", str(tmp_path / "mine")])
    assert code == 2 and "already exists" in text
    code, text = run_cli(["export", "ecg_generative_diffusion", str(run_dir), "--to", str(BUNDLE)])
    assert code == 2 and "is the bundle itself" in text and "--replace-bundle" in text
    code, text = run_cli(["export", str(tmp_path / "mine"), str(run_dir), "--to", str(tmp_path / "mine"),
                      "--replace-bundle", "--version", "0.3.0"])
    assert code == 0, text
    assert read_bundle_info(tmp_path / "mine").version == "0.3.0"
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]  # no staging or temporary files left

    # the run folder holds a cohort cache, but of other inputs: a missing data folder is an error, not a rerun
    code, text = run_cli(["train", "ecg_generative_diffusion", "--dataset-dir", str(tmp_path / "absent"), *TINY])
    assert code == 2 and "absent does not exist" in text and "Traceback" not in text


def test_output_folders_inside_the_bundle_are_refused(monkeypatch, tmp_path, run_cli, bundle_untouched):
    monkeypatch.chdir(BUNDLE)  # the default ./runs/... would land inside the bundle
    code, text = run_cli(["train", "ecg_generative_diffusion"])
    assert code == 2 and "is inside the bundle folder" in text and "Traceback" not in text
    monkeypatch.chdir(tmp_path)
    for argv in (["train", "ecg_generative_diffusion", "--output-dir", str(BUNDLE / "models")],
                 ["train", "ecg_generative_diffusion", "--output-dir", str(tmp_path), "--override",
                  f"models_dir={BUNDLE / 'models'}"],
                 ["train", "ecg_generative_diffusion", "--output-dir", str(tmp_path / "t"), "--export-to", str(BUNDLE)],
                 ["evaluate", "ecg_generative_diffusion", "--output-dir", str(BUNDLE / "runs" / "evaluate")]):
        code, text = run_cli(argv)
        assert code == 2 and "bundle" in text and "Traceback" not in text, (argv, text)


def test_train_on_a_missing_empty_or_unusable_folder_is_a_clear_error(shared_data, tmp_path, run_cli, bundle_untouched):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no records here\n")
    two_lead = sorted((shared_data / "ecg" / "cpsc2021_af").glob("*.hea"))[:2]
    unusable = _link_records(tmp_path / "two_lead", two_lead[0].parent, [p.stem for p in two_lead])
    for folder, message in ((tmp_path / "absent", "does not exist"), (tmp_path / "empty", "holds no ECG records"),
                            (unusable, "no usable ECG beats")):
        code, text = run_cli(["train", "ecg_generative_diffusion", "--dataset-dir", str(folder), "--output-dir",
                          str(tmp_path / "run")])
        assert code == 2 and str(folder) in text and message in text and "Traceback" not in text, text
        assert text.strip().splitlines()[-1].startswith("monai-gen train: error:")


def test_max_train_seconds_stops_training_cleanly(ecg_folder, cohort_cache, tmp_path, run_cli, bundle_untouched):
    run_dir = _run_folder(cohort_cache, tmp_path / "run")
    started = time.monotonic()
    code, text = run_cli(["train", "ecg_generative_diffusion", "--dataset-dir", str(ecg_folder), "--output-dir",
                      str(run_dir), "--max-epochs", "100000", "--max-train-seconds", "2", "--export-to",
                      str(tmp_path / "exported"), *TINY])
    assert code == 0, text
    assert time.monotonic() - started < 120
    (iteration, _), = list_checkpoints(run_dir)  # the final checkpoint, far short of 100000 epochs
    assert 1 <= iteration < 3 * 100000
    for name in MODEL_FILES:  # a run stopped by its time limit completes, and --export-to exports it
        assert (tmp_path / "exported" / "models" / name).read_bytes() == (run_dir / "models" / name).read_bytes()
    assert read_bundle_info(tmp_path / "exported").version.startswith(f"{NEXT_PATCH}+")
    code, text = run_cli(["train", "ecg_generative_diffusion", "--max-train-seconds", "0"])
    assert code == 2 and "positive integer" in text


@pytest.mark.slow
def test_ctrl_c_stops_training_with_exit_130_and_a_resumable_checkpoint(ecg_folder, cohort_cache, tmp_path,
                                                                        bundle_untouched):
    run_dir = _run_folder(cohort_cache, tmp_path / "run")
    command = [sys.executable, "-m", "monai_gen.cli.main", "train", "ecg_generative_diffusion", "--dataset-dir",
               str(ecg_folder), "--output-dir", str(run_dir), "--max-epochs", "100000", *TINY,
               "--override", "checkpoint_every_iterations=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not list_checkpoints(run_dir) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list_checkpoints(run_dir), "training never wrote its first checkpoint"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, err[-2000:]
    assert "Traceback" not in out + err
    assert "interrupted" in err and str(run_dir) in err and "resume" in err
    last, path = list_checkpoints(run_dir)[-1]
    assert set(load_file(run_dir / "models" / "model.safetensors")) and last >= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing written outside the output folder
    assert not [p for p in run_dir.rglob(".*") if p.is_file()]  # no temporary files of interrupted writes
    import torch

    assert "trainer" in torch.load(path, map_location="cpu", weights_only=True)  # complete: the resume point


@pytest.fixture(scope="module")
def evaluation_folders(shared_data, tmp_path_factory):
    """Two record folders that differ: 4 records plus two unusable 2-lead ones, and 3 of the 4 (one of them male)."""
    root = tmp_path_factory.mktemp("evaluation_data")
    first = _link_records(root / "first", shared_data / "ecg" / "cinc2021", RECORDS)
    for header in sorted((shared_data / "ecg" / "cpsc2021_af").glob("*.hea"))[:2]:
        for path in header.parent.glob(f"{header.stem}.*"):
            (first / path.name).symlink_to(path)
    return first, _link_records(root / "second", shared_data / "ecg" / "cinc2021", RECORDS[1:])


@pytest.mark.slow
def test_evaluate_reads_dataset_dir_writes_only_its_output_folder_and_prints_a_summary(
    evaluation_folders, tmp_path, monkeypatch, run_cli, bundle_untouched
):
    monkeypatch.chdir(tmp_path)
    options = ["--override", "max_samples=2", "--override", "num_inference_steps=2", "--override",
               "max_beats_per_record=3", "--override", "batch_size=8", "--override", "sweep_seeds=1",
               "--override", "category_sweep_seeds=2"]
    reports = []
    for folder, output in ((evaluation_folders[0], None), (evaluation_folders[1], tmp_path / "second")):
        argv = ["evaluate", "ecg_generative_diffusion", "--dataset-dir", str(folder), *options]
        code, text = run_cli(argv + (["--output-dir", str(output)] if output else []))
        assert code == 0, text
        output = output or tmp_path / "runs" / "ecg_generative_diffusion" / "evaluate"
        reports.append(json.loads((output / "evaluation.json").read_text()))
        assert len(list(output.glob("cohort_*.safetensors"))) == 1  # the cohort cache lives with the report
        assert "fidelity (measured): qrs R" in text and "QRS at R" in text and str(output / "evaluation.md") in text
        assert str(output / "examples.png") in text and "| qt |" in (output / "evaluation.md").read_text()
        assert reports[-1]["measures"] == [
            "measured_fidelity", "sweep_fidelity", "probe_fidelity", "category_sweep_fidelity", "distribution",
            "qrs_alignment", "limb_lead_residual", "edge_artefacts", "high_frequency_power", "t_wave_amplitude",
            "p_wave_presence", "edge_deviation", "memorisation"]
    assert [r["train_subjects"] + r["test_subjects"] for r in reports] == [4, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "second"]


def test_evaluate_on_a_missing_or_empty_folder_is_a_clear_error(tmp_path, run_cli, bundle_untouched):
    (tmp_path / "empty").mkdir()
    for folder, message in ((tmp_path / "absent", "does not exist"), (tmp_path / "empty", "holds no ECG records")):
        code, text = run_cli(["evaluate", "ecg_generative_diffusion", "--dataset-dir", str(folder), "--output-dir",
                          str(tmp_path / "eval")])
        assert code == 2 and str(folder) in text and message in text and "Traceback" not in text, text
