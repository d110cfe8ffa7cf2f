"""The explorer's cine view over the shipped cardiac bundle: one seed, the frames of ``monai-gen generate --cine`` over
the cardiac cycle as a looping GIF at the page's window, with estimates and contraction; its export is the bundle's
own cine (bit for bit); the step progress of a cine generated in batches."""

from __future__ import annotations

import base64
import io

import nibabel as nib
import numpy as np
import pytest
from PIL import Image, ImageSequence

from .conftest import call

pytestmark = pytest.mark.slow  # loads the cardiac bundle's networks in the package's server and generates cines

CARDIAC = "cardiac_mri_generative_diffusion"


def _frames(gif: bytes) -> list[np.ndarray]:
    image = Image.open(io.BytesIO(gif))
    assert image.format == "GIF" and image.info["loop"] == 0  # loops for ever
    return [np.asarray(frame.convert("L")) for frame in ImageSequence.Iterator(image)]


def test_controls_offer_a_cine_over_the_cardiac_phase(explorer):
    _, url = explorer
    status, controls = call(url + f"api/controls?bundle={CARDIAC}")
    assert status == 200 and controls["cine"] == {"phase": "phase", "min": 2, "max": 64, "value": 20}
    _, ecg = call(url + "api/controls?bundle=ecg_generative_diffusion")
    assert ecg["cine"] is None


def test_cine_loops_at_the_window_and_is_what_generate_cine_writes(explorer, run_cli, tmp_path):
    _, url = explorer
    body = {"bundle": CARDIAC, "conditions": {"group": "NOR", "slice_position": 0.5}, "seed": 2, "cine_frames": 4}
    status, shown = call(url + "api/sample", body)
    assert status == 200, shown
    assert shown["figure"].startswith("data:image/gif;base64,") and shown["cine_frames"] == 4
    assert shown["frame_time_ms"] == 250.0 and shown["requested"] == {"group": "NOR", "slice_position": 0.5}
    frames = _frames(base64.b64decode(shown["figure"].split(",", 1)[1]))
    assert len(frames) == 4 and frames[0].shape == (96, 96) and len({f.tobytes() for f in frames}) == 4  # it beats
    assert 0 < shown["measured"]["contraction"] < 1 and shown["measured"]["group"] in ("NOR", "DCM", "HCM", "MINF", "RV")
    # the estimates are the frames' mean: a basal cine reads more basal than an apical one of the same seed
    basal, apical = (call(url + "api/sample", {**body, "conditions": {"slice_position": p}, "cine_frames": 2})[1]
                     ["measured"] for p in (0.15, 0.85))
    assert basal["slice_position"] + 0.2 < apical["slice_position"]

    query = f"api/figure?bundle={CARDIAC}&id={shown['sample_id']}"
    status, narrow = call(url + query + "&low=0&high=0.4")
    assert status == 200 and isinstance(narrow, bytes)
    assert np.mean(_frames(narrow)[0] == 255) > np.mean(frames[0] == 255)  # a lower white point saturates more

    status, exported = call(url + "api/export", {"bundle": CARDIAC, "sample_id": shown["sample_id"]})
    assert status == 200, exported
    names = {f.rsplit("/", 1)[-1] for f in exported["files"]}
    assert {"cine.nii.gz", "cine.gif", "cine_contraction.png", "cine.json", "manifest.csv"} <= names
    ours = nib.load(next(f for f in exported["files"] if f.endswith("/cine.nii.gz")))
    code, out = run_cli(["generate", CARDIAC, "--cine", "--cine-frames", "4", "--group", "NOR", "--slice_position",
                         "0.5", "--seed", "2", "--batch-size", "4", "--device", "cpu", "--output-dir", str(tmp_path)])
    assert code == 0, out
    theirs = nib.load(tmp_path / "cine.nii.gz")
    assert ours.shape == theirs.shape == (96, 96, 1, 4)
    np.testing.assert_array_equal(ours.get_fdata(), theirs.get_fdata())
    assert ours.header.get_zooms()[3] == theirs.header.get_zooms()[3] == 250.0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"bundle": CARDIAC, "cine_frames": 4, "conditions": {"phase": 0.3}}, "'phase' is what a cine sweeps"),
        ({"bundle": CARDIAC, "cine_frames": 1}, "cine_frames must be from 2 to 64"),
        ({"cine_frames": 4}, "ecg_generative_diffusion makes no cines"),
    ],
)
def test_impossible_cines_are_one_line(explorer, body, message):
    _, url = explorer
    status, answer = call(url + "api/sample", body)
    assert status == 400 and message in answer["error"], answer


def test_cine_progress_counts_the_steps_of_every_batch_and_batching_keeps_the_frames():
    """Ten frames in batches of 4 (4 + 4 + 2) at 5 steps: 15 steps reported in order, each batch's last one decoding;
    the frames are those of the whole cine in one batch, to float rounding."""
    from monai_gen.explore.controls import parse_request
    from monai_gen.explore.session import ExplorerSession

    session = ExplorerSession(CARDIAC, device="cpu", batch_size=4)
    request = parse_request({"conditions": {"group": "DCM"}, "seed": 7, "steps": 5, "cine_frames": 10},
                            session.conditions)
    seen = []
    batched = session.generate(request, progress=lambda *report: seen.append(report))
    assert seen == [(k, 15, "decoding" if k % 5 == 0 else "sampling") for k in range(1, 16)]
    session.batch_size = None
    whole = session.generate(parse_request({"conditions": {"group": "DCM"}, "seed": 7, "steps": 5, "cine_frames": 10,
                                            "guidance_scale": 1.0}, session.conditions))  # another id: generated anew
    assert whole.frames.shape == batched.frames.shape == (10, 1, 96, 96)
    np.testing.assert_allclose(whole.frames.numpy(), batched.frames.numpy(), atol=1e-4)
