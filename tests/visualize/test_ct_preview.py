"""CT previews on TotalSegmentator's real CT and its organ labels: planes as a radiology viewer shows them (the liver on
the left of an axial image, the spine at the bottom), soft-tissue and lung windows, physical aspect, three PNGs per
sample from the writer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import LoadImage
from PIL import Image

from monai_gen.visualize.ct_preview import CTPreviewWriter, ct_plane, plot_ct_plane

CT = "ct/totalsegmentator"


@pytest.fixture(scope="module")
def abdomen(shared_data):
    load = LoadImage(image_only=True, ensure_channel_first=True)
    return load(shared_data / CT / "example_ct_sm.nii.gz"), load(shared_data / CT / "example_seg.nii.gz")  # RAS


def _centroid(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0) / np.asarray(mask.shape)  # (row, column) as fractions of the image


def test_axial_plane_shows_the_patients_right_on_the_left_and_anterior_up(abdomen):
    _, labels = abdomen
    axial = ct_plane(labels, "axial", index=15)
    liver_row, liver_column = _centroid(axial == 5)  # TotalSegmentator 5: liver, in the patient's right upper abdomen
    spine_row, spine_column = _centroid(np.isin(axial, [29, 30, 31, 32]))  # lumbar / thoracic vertebrae
    assert liver_column < 0.45 and spine_row > 0.6 and 0.4 < spine_column < 0.6
    sagittal = ct_plane(labels, "sagittal", index=int(np.argwhere(labels[0].numpy() == 31)[:, 0].mean()))
    assert _centroid(np.isin(sagittal, [29, 30, 31, 32]))[1] > 0.6  # spine posterior: on the right of a sagittal view


def test_coronal_and_sagittal_planes_put_superior_at_the_top():
    ramp = torch.arange(5.0).reshape(1, 1, 1, 5).expand(1, 4, 3, 5)  # value = z (inferior 0 -> superior 4)
    for plane in ("coronal", "sagittal"):
        image = ct_plane(ramp, plane)
        assert image[0, 0] == 4 and image[-1, 0] == 0
    with pytest.raises(ValueError, match=r"axial slice index 7 is outside the volume's 0..4"):
        ct_plane(ramp, "axial", index=7)
    with pytest.raises(ValueError, match=r"needs a volume \(x, y, z\) or \(1, x, y, z\), got shape \(4, 3\)"):
        ct_plane(torch.zeros(4, 3), "axial")


def test_each_window_panel_shows_the_plane_in_hu_with_its_physical_aspect(abdomen):
    ct, _ = abdomen
    figure = plot_ct_plane(ct, "coronal")
    soft, lung = figure.axes
    shown = soft.get_images()[0]
    np.testing.assert_array_equal(shown.get_array(), ct_plane(ct, "coronal"))
    assert shown.get_clim() == (-160.0, 240.0) and lung.get_images()[0].get_clim() == (-1350.0, 150.0)
    assert "soft tissue W400 L40" in soft.get_title() and "lung W1500 L-600" in lung.get_title()
    assert soft.get_aspect() == 1.0  # 3 mm isotropic
    anisotropic = plot_ct_plane(ct, "coronal", spacing_mm=(1.0, 1.0, 4.0))
    assert anisotropic.axes[0].get_aspect() == 4.0  # 4 mm slices drawn 4 times as tall as 1 mm pixels are wide


def test_the_writer_draws_three_pngs_per_volume(abdomen, tmp_path):
    ct, _ = abdomen
    files = CTPreviewWriter()(ct, tmp_path / "ct_0", {"conditions": {"craniocaudal_position": 0.4}})
    assert [f.name for f in files] == ["ct_0_axial.png", "ct_0_coronal.png", "ct_0_sagittal.png"]
    for f in files:
        image = np.asarray(Image.open(f).convert("L"))
        assert image.shape[1] == 600 and image.std() > 20  # two 3-inch panels at 100 dpi, an image not a blank
