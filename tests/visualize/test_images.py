from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from matplotlib.image import imread
from monai.data import MetaTensor

from monai_gen.visualize.images import image_slices, intensity_window, plot_image_grid


@pytest.fixture(scope="module")
def volumes(shared_data):
    """Five real IXI T1 volumes (2 mm), as a (5, 1, H, W, D) batch."""
    files = sorted((shared_data / "brain_mri/ixi10_2mm/nifti").glob("*.nii.gz"))[:5]
    assert len(files) == 5
    return np.stack([nib.load(f).get_fdata(dtype=np.float32) for f in files])[:, None]


def test_image_i_lands_at_row_i_div_ncols_with_its_own_middle_slice(volumes):
    titles = [f"subject {i}" for i in range(5)]
    figure = plot_image_grid(volumes, titles=titles, ncols=3)
    assert len(figure.axes) == 5
    depth = volumes.shape[-1]
    for i, ax in enumerate(figure.axes):
        spec = ax.get_subplotspec()
        assert (spec.rowspan.start, spec.colspan.start) == (i // 3, i % 3)
        (shown,) = ax.get_images()
        np.testing.assert_array_equal(shown.get_array(), volumes[i, 0, :, :, depth // 2])  # no transpose
        assert shown.origin == "upper" and shown.get_cmap().name == "gray"
        assert ax.get_title() == titles[i]


def test_chosen_slice_axis_and_index(volumes):
    torch_batch = MetaTensor(torch.as_tensor(volumes[:2]))
    slices = image_slices(torch_batch, slice_axis=0, slice_index=7)
    np.testing.assert_array_equal(slices, volumes[:2, 0, 7])
    figure = plot_image_grid(torch.as_tensor(volumes[:2, :, :, :, 40]))  # a 2D batch is shown as is
    np.testing.assert_array_equal(figure.axes[1].get_images()[0].get_array(), volumes[1, 0, :, :, 40])


def test_shared_and_per_image_windows(volumes):
    batch = volumes[:2, :, :, :, 45].copy()
    # the same image brighter: the shared window shows it brighter, per-image windows hide the difference
    batch[1] = 3.0 * batch[0]
    shared = [ax.get_images()[0].get_clim() for ax in plot_image_grid(batch).axes]
    assert shared[0] == shared[1]
    assert shared[0] == pytest.approx(tuple(np.percentile(batch[:, 0], [0.5, 99.5])))
    per_image = [ax.get_images()[0].get_clim() for ax in plot_image_grid(batch, window="per_image").axes]
    assert per_image[1] == pytest.approx(tuple(3.0 * np.array(per_image[0])), rel=1e-5)
    fixed = plot_image_grid(batch, window=(0.0, 100.0))
    assert all(ax.get_images()[0].get_clim() == (0.0, 100.0) for ax in fixed.axes)


def test_png_size(tmp_path, volumes):
    plot_image_grid(volumes[:3], ncols=2, panel_inches=1.5, dpi=40, path=tmp_path / "grid.png")
    pixels = imread(tmp_path / "grid.png")
    assert pixels.shape[:2] == (2 * 60, 2 * 60)  # 2 rows x 2 columns of 1.5 in at 40 dpi
    assert pixels[..., :3].std() > 0.05


def test_errors(volumes):
    with pytest.raises(ValueError, match="empty batch"):
        plot_image_grid(np.zeros((0, 1, 8, 8)))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\).*\(8, 8\)"):
        plot_image_grid(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="titles has 1 entries for 5 images"):
        plot_image_grid(volumes, titles=["a"])
    with pytest.raises(ValueError, match="slice_index=500 is out of range"):
        plot_image_grid(volumes, slice_index=500)
    with pytest.raises(ValueError, match="window must be one of"):
        intensity_window(volumes[:, 0, :, :, 0], mode="auto")
    with pytest.raises(ValueError, match="NaN"):
        plot_image_grid(np.full((1, 1, 4, 4), np.nan))
