"""The explorer's views on real data: a CT in three planes at HU window presets (TotalSegmentator's abdominal CT) and
the shipped CT bundle's estimate of its craniocaudal position along real CTs, a cine as a looping GIF with its
contraction (ACDC cines), 12-lead ECG windows (CinC 2021) redrawn on a kept page as a fresh figure draws them."""

from __future__ import annotations

import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from monai_gen.data.ecg_meta import STANDARD_LEADS
from monai_gen.explore.views import CT_WINDOW_PRESETS, CTView, ECGView, ImageView, view_for
from monai_gen.metrics.cardiac import bright_area_curve, contraction_ratio
from monai_gen.visualize.ecg import plot_median_beats

ACDC = "cardiac_mri/acdc_subset"
CT_BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "ct_generative_diffusion"


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


@pytest.fixture(scope="module")
def ct_bundle():
    """The shipped CT bundle's inference configs (common + inference, as the explorer reads them) and its view."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_meta(CT_BUNDLE / "configs" / "metadata.json")
    parser.read_config([str(CT_BUNDLE / "configs" / f"{n}.json") for n in ("common", "inference")])
    parser["bundle_root"] = str(CT_BUNDLE)
    return parser, view_for(parser, CT_BUNDLE)


def _z_sweep(parser, shared_data, name: str) -> tuple[torch.Tensor, np.ndarray]:
    """Patches of the bundle's size through the centre of a TotalSegmentator CT loaded as the bundle loads it (its
    ``volume_preprocessing``: RAS, 3 mm, HU window), 2 voxels apart from its inferior to its superior end, and the
    craniocaudal position of each (the library's definition, that the bundle's training rows carry)."""
    from monai.transforms import SpatialCrop

    from monai_gen.transforms.ct.array import craniocaudal_position

    path = shared_data / "ct" / "totalsegmentator" / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    volume = parser.get_parsed_content("volume_preprocessing")({"image": str(path)})["image"]
    size = parser.get_parsed_content("patch_size")
    corner = [(n - s) // 2 for n, s in zip(volume.shape[1:3], size[:2], strict=True)]
    patches = [SpatialCrop(roi_start=[*corner, z], roi_end=[corner[0] + size[0], corner[1] + size[1], z + size[2]])(volume)
               for z in range(0, volume.shape[3] - size[2] + 1, 2)]
    positions = [craniocaudal_position(p.affine, p.shape[1:], volume.affine, volume.shape[1:]) for p in patches]
    return torch.stack([p.as_tensor() for p in patches]), np.array(positions)


def test_ct_bundle_view_estimates_its_position_condition_with_the_shipped_extractor(ct_bundle):
    """The explorer's CT view of the shipped bundle reads its feature extractor on the slices it was trained on."""
    _, view = ct_bundle
    assert isinstance(view, CTView) and view.extractor is not None
    assert view.extractor.image_shape == (1, 48, 48)  # 2D slices of the 48^3 training patches
    assert view.slices == {"planes": ["axial", "coronal", "sagittal"], "n_slices": 8, "pad_value": -1000.0}
    assert view.measures == {"craniocaudal_position": ""}  # the slice's own targets (plane, offset) are not shown
    assert "slice feature extractor" in view.describe()["note"]
    assert view.measure(torch.full((2, 1, 48, 48, 4), -1000.0)) == [{}, {}]  # 4 axial slices: fewer than 8


def test_shipped_ct_estimate_follows_position_along_a_training_ct(ct_bundle, shared_data):
    """Along the abdominal CT the extractor was trained on (a training record of the bundle): 33 patches, R 0.91
    when measured (README). Checks the view reads the file as it was trained (planes, slices, padding, head)."""
    parser, view = ct_bundle
    patches, positions = _z_sweep(parser, shared_data, "example_ct.nii.gz")
    estimates = np.array([m["craniocaudal_position"] for m in view.measure(patches)])
    assert len(estimates) == 33 and np.corrcoef(estimates, positions)[0, 1] > 0.8
    assert np.polyfit(positions, estimates, 1)[0] > 0  # higher up the body reads higher


@pytest.mark.xfail(strict=True, reason="known limitation (bundle README, 'Feature extractor'): learnt from the one "
                   "training CT whose patches span positions, it reads the held-out subject's crops the wrong way "
                   "round (R -0.88 and -0.86 along their centres when measured); a generalising extractor passes")
def test_shipped_ct_estimate_follows_position_along_held_out_cts(ct_bundle, shared_data):
    """Along the centres of the held-out subject's two crops (the bundle's test subject, never trained on)."""
    parser, view = ct_bundle
    for name in ("aorta_report/test_result/models/ct_cropped.nii.gz", "pulmonary_report/models/ct_cropped.nii.gz"):
        patches, positions = _z_sweep(parser, shared_data, name)
        estimates = np.array([m["craniocaudal_position"] for m in view.measure(patches)])
        assert np.corrcoef(estimates, positions)[0, 1] > 0.5, name


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


@pytest.fixture(scope="module")
def ecg_windows(shared_data) -> list[torch.Tensor]:
    """Eight 1.152 s windows ``(12, 576)`` in mV at 500 Hz of CinC 2021 records E07500 and E07501 (the explorer's
    beat length and rate)."""
    wfdb = pytest.importorskip("wfdb")
    windows = []
    for name in ("E07500", "E07501"):
        path = shared_data / "ecg" / "cinc2021" / name
        if not path.with_suffix(".hea").is_file():
            pytest.skip(f"{path} is absent")
        record = wfdb.rdrecord(str(path))
        assert record.fs == 500 and list(record.sig_name) == list(STANDARD_LEADS)
        windows += [torch.from_numpy(record.p_signal.T[:, k * 576 : (k + 1) * 576].copy()) for k in range(4)]
    return windows


def _rgb(png: bytes) -> np.ndarray:
    assert png.startswith(b"\x89PNG")
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def _fresh(beats: torch.Tensor, caption: str, record_id: str = "synthetic") -> np.ndarray:
    figure = plot_median_beats(beats, 500.0, lead_names=STANDARD_LEADS, record_id=record_id, caption=caption)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi)
    return _rgb(buffer.getvalue())


def _differing(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float((np.abs(a - b).max(-1) > 0).mean())


def test_ecg_redrawn_on_the_kept_page_as_a_fresh_figure(ecg_windows):
    view = ECGView(fs=500.0, lead_names=STANDARD_LEADS)
    drawn = [view.figure(w, caption=f"heart_rate {60 + k} · qrs 90 · seed {k}") for k, w in enumerate(ecg_windows)]
    assert len(view._pages) == 1  # one layout: every window after the first drawn on the kept page
    for k, (window, png) in enumerate(zip(ecg_windows, drawn, strict=True)):
        fresh = _fresh(window, f"heart_rate {60 + k} · qrs 90 · seed {k}")
        # only where a trace crosses its lead label, its lead-change mark or a neighbouring panel's grid is it drawn
        # in another order (measured: at most 0.014 % of the pixels on generated beats)
        assert _differing(_rgb(png), fresh) < 1e-3
        if k:
            assert _differing(_rgb(png), _rgb(drawn[k - 1])) > 5e-3  # the traces (and the caption) are the new ones
    assert view.figure(ecg_windows[0], caption="heart_rate 60 · qrs 90 · seed 0") == drawn[0]  # nothing left over


def test_ecg_pages_per_layout_and_errors_on_a_kept_page(ecg_windows):
    view = ECGView(fs=500.0, lead_names=STANDARD_LEADS)
    view.figure(ecg_windows[0], caption="seed 0")
    long = " · ".join(f"condition_{k} {k}.5" for k in range(12))  # a caption of three lines: a taller page
    for beats, caption in ((ecg_windows[1], long), (ecg_windows[2][:, :500], "seed 2"), (ecg_windows[3], long)):
        png = view.reference_figure(beats, caption=caption)
        fresh = _fresh(beats, caption, record_id="real")
        assert _differing(_rgb(png), fresh) < 1e-3  # same size, caption lines and traces as a fresh figure
    assert len(view._pages) == 3  # 576 samples with one and three caption lines, 500 samples
    broken = ecg_windows[4].clone()
    broken[7, 100] = float("nan")
    with pytest.raises(ValueError, match=r"leads \['V2'\] contain NaN"):
        view.figure(broken, caption="seed 0")
