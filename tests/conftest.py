"""Shared fixtures: where the real sample data lives, running ``monai-gen`` in process, and GPU test skipping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

# The test models are tiny: one intra-op thread is as fast as two, and it avoids the 10x slow-downs of
# oversubscribed OpenMP threads when tests share a small machine with other processes (CI has 2 cores).
torch.set_num_threads(int(os.environ.get("MONAI_GEN_TEST_THREADS", "1")))


def _shared_data_dir() -> Path:
    """``../shared/data`` beside the checkout (CI has it), or ``$MONAI_GEN_SHARED_DATA``."""
    return Path(os.environ.get("MONAI_GEN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the real sample recordings (see its README for licences); skips when absent."""
    folder = _shared_data_dir()
    if not folder.is_dir():
        pytest.skip(f"real sample data folder {folder} is absent (set MONAI_GEN_SHARED_DATA)")
    return folder


@pytest.fixture(scope="session")
def ixi(shared_data) -> Path:
    """The 150 IXI T1 volumes at 2 mm with their participants table; skips when absent."""
    folder = shared_data / "brain_mri" / "ixi_t1_2mm"
    if not (folder / "participants.csv").is_file():
        pytest.skip(f"{folder} is absent")
    return folder


@pytest.fixture(scope="session")
def ecg_preparation() -> dict:
    """The ECG bundle's record preparation as ``build_beat_cohort`` / ``load_split_cohort`` take it, from its config:
    ``prepare`` (``prepare_record``, a MONAI ``Compose``), ``fs``, the condition names as ``phenotypes`` and the
    beat ``window``."""
    from monai_gen.bundle.registry import bundle_component

    bundle = REPO_ROOT / "bundles" / "ecg_generative_diffusion"
    return {
        "prepare": bundle_component(bundle, "prepare_record"),
        "fs": bundle_component(bundle, "fs"),
        "phenotypes": [spec["name"] for spec in bundle_component(bundle, "condition_specs")],
        "window": {"n_samples": bundle_component(bundle, "num_samples_per_beat"), "r_index": bundle_component(bundle, "r_index")},
    }


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def run_cli(capsys):
    """``run_cli(argv) -> (exit status, stdout + stderr)``: ``monai-gen`` run in process; argparse's ``SystemExit``
    becomes the status."""
    from monai_gen.cli.main import main

    def run(argv):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
        out = capsys.readouterr()
        return code, out.out + out.err

    return run
