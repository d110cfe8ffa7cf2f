"""Explorer test fixtures: one explorer server over the shipped ECG bundle (its network loads once, other bundles are
asked of it by name or folder), and the tiny CT test bundle with weights trained for one epoch per stage."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

TINY_CT_BUNDLE = Path(__file__).resolve().parents[1] / "bundle" / "tiny_ct_bundle"  # configuration only


@pytest.fixture(scope="package")
def explorer(tmp_path_factory, shared_data):
    """``(server, base_url)``: a running :class:`ExplorerServer` on 127.0.0.1 with exports and caches under tmp, and
    the 10 CPSC 2018 records as the nearest-neighbour reference (a small real cohort)."""
    from monai_gen.explore.server import make_server

    root = tmp_path_factory.mktemp("explore")
    server = make_server("ecg_generative_diffusion", port=0, output_dir=root / "exports", cache_dir=root / "cache",
                         device="cpu", reference_dir=shared_data / "ecg" / "cpsc2018")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, server.url
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture(scope="package")
def tiny_ct_bundle(tmp_path_factory, shared_data) -> Path:
    """A copy of ``tests/bundle/tiny_ct_bundle`` under tmp with ``models/`` trained there: one epoch of each stage on
    16^3 patches of three real TotalSegmentator CTs (one a DICOM series, two with label maps), about 10 s on one
    thread. The repository's bundle folder is never written."""
    from monai_gen.bundle.registry import run_bundle_workflow, training_stages

    source = shared_data / "ct" / "totalsegmentator"
    if not (source / "example_ct_dicom").is_dir():
        pytest.skip(f"{source} is absent")
    root = tmp_path_factory.mktemp("tiny_ct")
    cts, labels = root / "cohort" / "ct", root / "cohort" / "labels"
    cts.mkdir(parents=True)
    labels.mkdir()
    for name, target in {"abdomen.nii.gz": "example_ct_sm.nii.gz", "thorax": "example_ct_dicom",
                         "aorta.nii.gz": "aorta_report/test_result/models/ct_cropped.nii.gz"}.items():
        (cts / name).symlink_to(source / target, target_is_directory=(source / target).is_dir())
    (labels / "abdomen_seg.nii.gz").symlink_to(source / "example_seg.nii.gz")
    (labels / "thorax_seg.nii.gz").symlink_to(source / "example_seg_dicom.nii.gz")
    train = {"dataset_dir": str(cts), "label_dir": str(labels), "batch_size": 2, "max_epochs": 1,
             "output_dir": str(root / "train")}
    for stage in training_stages(TINY_CT_BUNDLE):
        run_bundle_workflow(TINY_CT_BUNDLE, stage, train)
    bundle = root / "tiny_ct_bundle"
    shutil.copytree(TINY_CT_BUNDLE / "configs", bundle / "configs")
    shutil.copytree(root / "train" / "models", bundle / "models")
    return bundle


def call(url: str, body: dict | None = None, *, headers: dict | None = None) -> tuple[int, dict | bytes]:
    """``(HTTP status, JSON or bytes)`` of a GET (``body`` None) or a JSON POST."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            status, kind, payload = response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as error:
        status, kind, payload = error.code, error.headers.get_content_type(), error.read()
    return status, json.loads(payload) if kind == "application/json" else payload
