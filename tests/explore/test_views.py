"""The explorer's views on real data: a CT in three planes at HU window presets (TotalSegmentator's abdominal CT), a
cine as a looping GIF with its contraction (ACDC cines)."""

from __future__ import annotations

import io

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from monai_gen.explore.views import CT_WINDOW_PRESETS, CTView, ImageView
from monai_gen.metrics.cardiac import bright_area_curve, contraction_ratio

ACDC = "cardiac_mri/acdc_subset"


@pytest.fixture(scope="module")
def abdomen(shared_data):
    """TotalSegmentator's abdominal CT in RAS, ``(1, 122, 101, 30)`` at 3 mm, HU."""
    from monai.transforms import Compose, EnsureChannelFirst, LoadImage, Orientation

    path = shared_data / "ct" / "totalsegmentator" / "example_ct_sm.nii.gz"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return Compose([LoadImage(image_only=True), EnsureChannelFirst(), Orientation("RAS", labels=None)])(path)


def _grey(png: bytes) -> np.ndarray:
    assert png.startswith(b"\x89PNG")
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"))


def _hu_window(name: str) -> tuple[float, float]:
    centre, width = CT_WINDOW_PRESETS[name]
    return centre - width / 2, centre + width / 2


def test_ct_view_describes_the_planes_and_the_three_hu_presets():
    described = CTView(spacing_mm=[4, 4, 4]).describe()
    assert described["kind"] == "ct" and described["planes"] == ["axial", "coronal", "sagittal"]
    assert described["presets"] == {"soft tissue": [40.0, 400.0], "lung": [-600.0, 1500.0], "bone": [400.0, 1800.0]}
    assert described["preset"] == "soft tissue" and described["window"] == [-160.0, 240.0]  # L40 W400 as low / high


def test_ct_planes_through_any_slice_at_each_window(abdomen):
    view = CTView(spacing_mm=abdomen.pixdim.tolist())
    assert view.plane_sizes(abdomen) == {"axial": 30, "coronal": 101, "sagittal": 122}  # z, y, x of RAS
    soft, lung, bone = (_grey(view.figure(abdomen, plane="axial", window=_hu_window(n))) for n in CT_WINDOW_PRESETS)
    # the air around the body and in the bowel (-1000 HU) is black at soft tissue (below -160) and bone (below -500),
    # but grey at the lung window, which reaches down to -1350 HU
    assert (soft == 0).mean() > 0.2 and (bone == 0).mean() > 0.2 and (lung == 0).mean() < 0.01
    assert np.abs(soft.astype(int) - bone).mean() > 5  # fat and muscle are told apart at soft tissue only
    middle = view.figure(abdomen, plane="coronal")
    assert middle == view.figure(abdomen, plane="coronal", index=50)  # the default is the central slice
    assert middle != view.figure(abdomen, plane="coronal", index=20)
    # pixels keep their physical aspect: a 3 mm grid drawn as 4 mm by 1 mm pixels is four times as tall
    tall = _grey(CTView(spacing_mm=[3, 3, 12]).figure(abdomen, plane="coronal"))
    assert tall.shape[0] > 2.5 * _grey(middle).shape[0]
    with pytest.raises(ValueError, match="outside the volume"):
        view.figure(abdomen, plane="axial", index=30)
    with pytest.raises(ValueError, match="axial"):
        view.figure(abdomen, plane="transverse")


def _acdc_cine(shared_data, patient: str) -> torch.Tensor:
    """The middle slice of an ACDC cine as ``(T, 1, x, y)`` frames."""
    path = shared_data / ACDC / patient / f"{patient}_4d.nii.gz"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    volume = np.asarray(nib.load(path).dataobj, dtype=np.float32)  # (x, y, z, t)
    return torch.from_numpy(np.moveaxis(volume[:, :, volume.shape[2] // 2], -1, 0)[:, None].copy())


def test_cine_is_a_looping_gif_of_every_frame_at_the_window(shared_data):
    frames = _acdc_cine(shared_data, "patient061")
    low, high = np.percentile(frames.numpy(), [1, 99])
    gif = Image.open(io.BytesIO(ImageView().cine_figure(frames, frame_time_ms=50.0, window=(low, high))))
    shown = [np.asarray(f.convert("L")) for f in ImageSequence.Iterator(gif)]
    assert gif.format == "GIF" and gif.info["loop"] == 0 and gif.info["duration"] == 50 and len(shown) == 30
    # anterior up, as the PNG writer shows a slice: displayed row r, column c is voxel (x=c, y=last - r)
    expected = np.clip((frames[7, 0].numpy().T[::-1] - low) / (high - low), 0, 1) * 255
    assert np.abs(shown[7].astype(float) - expected).max() <= 1.0


def test_cine_contraction_follows_the_heart(shared_data):
    """ACDC's normal hearts contract more than its dilated ones (bright blood-pool area at end-diastole vs its least)."""
    view = ImageView()
    normal = [view.measure_cine(_acdc_cine(shared_data, p))["contraction"] for p in ("patient061", "patient062")]
    dilated = [view.measure_cine(_acdc_cine(shared_data, p))["contraction"] for p in ("patient001", "patient002")]
    assert min(normal) > max(dilated) > 0
    frames = _acdc_cine(shared_data, "patient061")
    curve = bright_area_curve(np.rot90(frames[:, 0].numpy(), axes=(1, 2)))
    assert normal[0] == pytest.approx(contraction_ratio(curve, 0, int(np.argmin(curve))), abs=1e-3)
    still = frames[:1].repeat(5, 1, 1, 1)  # a heart that does not move
    assert view.measure_cine(still) == {"contraction": 0.0}
