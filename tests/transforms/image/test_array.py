"""VolumeToSlices, CineToFrames, HounsfieldWindow on real volumes: positions, affines, phases, HU mapping."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImage

from monai_gen.data.dicom_series import LoadDICOMSeries
from monai_gen.transforms.image import CineToFrames, HounsfieldWindow, VolumeToSlices

TCIA = "brain_mri/tcia_vs_seg_001_t1c"
ACDC = "cardiac_mri/acdc_subset"
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def test_tcia_slices_positions_and_physical_placement(shared_data):
    folder = shared_data / TCIA
    volume = LoadDICOMSeries()(folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    ref = reader.Execute()
    slices = VolumeToSlices(2)(volume)
    assert len(slices) == 120
    positions = [s.meta["slice_position"] for s in slices]
    assert positions[0] == 0.0 and positions[-1] == 1.0 and np.all(np.diff(positions) > 0)
    np.testing.assert_allclose(np.diff(positions), 1 / 119)
    ref_array = sitk.GetArrayFromImage(ref)  # (z, y, x)
    for k in (0, 37, 119):
        s = slices[k]
        assert s.shape == (1, 512, 512) and s.meta["slice_index"] == k
        np.testing.assert_array_equal(s[0].numpy(), ref_array[k].T)
        for i, j in ((0, 0), (511, 0), (100, 400)):
            world = RAS_TO_LPS @ s.affine.numpy() @ np.array([i, j, 0, 1.0])
            np.testing.assert_allclose(world[:3], ref.TransformIndexToPhysicalPoint((i, j, k)), atol=1e-3)


def test_slices_along_other_axes_numpy_and_torch():
    data = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    affine = torch.tensor([[0, 0, 2.0, 5], [0, -1.5, 0, 1], [3.0, 0, 0, -2], [0, 0, 0, 1]])
    image = MetaTensor(torch.as_tensor(data), affine=affine, meta={"filename_or_obj": "x.nii"})
    slices = VolumeToSlices(1, indices=[0, 3])(image)
    assert [s.meta["slice_position"] for s in slices] == [0.0, 1.0]
    assert slices[1].meta["filename_or_obj"] == "x.nii" and "slice_index" not in image.meta
    np.testing.assert_array_equal(slices[1].numpy(), data[:, :, 3, :])
    expected = affine.double() @ torch.tensor(
        [2.0, 3, 4, 1], dtype=torch.float64
    )  # voxel (i=2, j=3, k=4) of the volume
    np.testing.assert_allclose(slices[1].affine @ torch.tensor([2.0, 4, 0, 1], dtype=torch.float64), expected)
    as_numpy = VolumeToSlices(0)(data)
    assert len(as_numpy) == 3 and isinstance(as_numpy[2], np.ndarray)
    np.testing.assert_array_equal(as_numpy[2], data[:, 2])
    as_torch = VolumeToSlices(2)(torch.as_tensor(data))
    assert type(as_torch[4]) is torch.Tensor and torch.equal(as_torch[4], torch.as_tensor(data[..., 4]))


@pytest.mark.parametrize(
    ("kwargs", "shape", "match"),
    [
        ({"axis": 3}, (1, 2, 2, 2), "axis must be a spatial axis 0, 1 or 2, got 3"),
        ({}, (2, 2, 2), r"\(C, x, y, z\), got shape \(2, 2, 2\)"),
        ({"indices": [0, 5]}, (1, 2, 2, 3), r"slice indices \[5\] are outside 0..2"),
    ],
)
def test_volume_to_slices_errors(kwargs, shape, match):
    with pytest.raises(ValueError, match=match):
        VolumeToSlices(**kwargs)(np.zeros(shape))


def test_acdc_cine_frames_with_phase_and_ed_es(shared_data):
    path = shared_data / ACDC / "patient001" / "patient001_4d.nii.gz"
    cine = LoadImage(image_only=True, ensure_channel_first=True)(path)  # (T=30, x, y, z=7)
    info = dict(line.split(": ") for line in (path.parent / "Info.cfg").read_text().splitlines())
    ed, es = int(info["ED"]) - 1, int(info["ES"]) - 1  # Info.cfg counts from 1
    frames = CineToFrames(ed, es, slices=[3])(cine)
    assert len(frames) == 30
    assert [f.meta["frame_index"] for f in frames] == list(range(30))
    np.testing.assert_allclose([f.meta["phase"] for f in frames], np.arange(30) / 30)
    assert [f.meta["is_ed"] for f in frames].index(True) == ed and sum(f.meta["is_es"] for f in frames) == 1
    assert frames[es].meta["is_es"] and frames[0].meta["slice_index"] == 3
    assert frames[5].shape == (1, 100, 95)
    np.testing.assert_array_equal(frames[5][0].numpy(), cine[5, :, :, 3].numpy())
    np.testing.assert_allclose(
        frames[5].affine @ torch.tensor([1.0, 2, 0, 1], dtype=torch.float64),
        cine.affine.double() @ torch.tensor([1.0, 2, 3, 1], dtype=torch.float64),
    )


def test_acdc_lost_spacing_is_noticed(shared_data):
    path = shared_data / ACDC / "patient041" / "patient041_4d.nii.gz"
    cine = LoadImage(image_only=True, ensure_channel_first=True)(path)
    with pytest.warns(UserWarning, match=r"patient041_4d.nii.gz has a voxel spacing of 1 mm"):
        CineToFrames(slices=[0])(cine)
    with pytest.raises(ValueError, match="spacing was probably lost"):
        CineToFrames(unit_spacing="raise")(cine)
    assert len(CineToFrames(unit_spacing="ignore")(cine)) == cine.shape[0] * cine.shape[-1]
    with pytest.raises(ValueError, match=r"es_frame=99 is outside the cine's frames 0..16"):
        CineToFrames(0, 99, unit_spacing="ignore")(cine)


def test_hounsfield_window_on_real_ct(shared_data):
    path = shared_data / "ct/totalsegmentator/example_ct.nii.gz"
    ct = LoadImage(image_only=True, ensure_channel_first=True)(path)
    out = HounsfieldWindow()(ct)
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == ct.meta["filename_or_obj"]
    assert out.min() == -1.0 and out.max() == 1.0  # the CT holds air below -1000 HU and bone above 1000 HU
    expected = np.clip(ct.numpy(), -1000, 1000) / 1000.0
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)
    narrow = HounsfieldWindow(-160, 240)(np.array([-1000.0, -160, 40, 240, 3000]))
    np.testing.assert_allclose(narrow, [-1, -1, 0, 1, 1], atol=1e-7)
    with pytest.raises(ValueError, match="hu_max must exceed hu_min, got hu_min=100, hu_max=100"):
        HounsfieldWindow(100, 100)
