"""CT previews: the three orthogonal mid-planes of a volume in Hounsfield units, each in a soft-tissue and a lung window.

Planes are shown as a radiology viewer shows them (for a volume in RAS, MONAI's default): axial seen from the feet with
anterior up and the patient's right on the left of the image; coronal seen from the front, superior up, the patient's
right on the left; sagittal seen from the patient's left, superior up, anterior on the left. Each panel's pixels keep
their physical aspect ratio (from the voxel spacing), so a 4 mm slice does not look like a 1 mm one.

:class:`CTPreviewWriter` is the sample writer a CT bundle's ``inference.json`` lists beside its NIfTI and DICOM writers:
``<stem>_axial.png``, ``<stem>_coronal.png``, ``<stem>_sagittal.png``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from monai.data import MetaTensor
from monai.utils import look_up_option

from monai_gen.data.dicom_writer import CT_WINDOWS
from monai_gen.visualize.figure import new_figure, save_figure
from monai_gen.visualize.images import show_image

__all__ = ["CT_PLANES", "ct_plane", "plot_ct_plane", "CTPreviewWriter"]

CT_PLANES = ("axial", "coronal", "sagittal")
# per plane: (voxel axis held fixed, voxel axis down the page, voxel axis across the page)
_AXES = {"axial": (2, 1, 0), "coronal": (1, 2, 0), "sagittal": (0, 2, 1)}


def _volume(volume: np.ndarray | torch.Tensor) -> np.ndarray:
    array = np.asarray(torch.as_tensor(volume).detach().cpu(), dtype=np.float32)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3:
        raise ValueError(f"a CT preview needs a volume (x, y, z) or (1, x, y, z), got shape {tuple(array.shape)}.")
    return array


def ct_plane(volume: np.ndarray | torch.Tensor, plane: str, *, index: int | None = None) -> np.ndarray:
    """One plane of an RAS volume ``(x, y, z)`` (or ``(1, x, y, z)``) in display order (see the module docstring).

    Args:
        volume: the CT (or any map on its grid, e.g. a label map).
        plane: ``"axial"``, ``"coronal"`` or ``"sagittal"``.
        index: the slice along the plane's fixed axis; the middle one when None.

    Returns:
        ``(rows, columns)``: row 0 is the top of the displayed image.

    Raises:
        ValueError: not a volume, an unknown plane, an index outside the volume.
    """
    array = _volume(volume)
    fixed, down, across = _AXES[look_up_option(plane, CT_PLANES)]
    size = array.shape[fixed]
    index = size // 2 if index is None else int(index)
    if not 0 <= index < size:
        raise ValueError(f"{plane} slice index {index} is outside the volume's 0..{size - 1}.")
    image = np.take(array, index, axis=fixed)
    remaining = [a for a in range(3) if a != fixed]
    image = image.transpose(remaining.index(down), remaining.index(across))
    # RAS voxel axes grow towards right, anterior, superior: the top of the page is superior (anterior for axial), and
    # the left of the page the patient's right (anterior for sagittal), so both page axes run against their voxel axis
    return image[::-1, ::-1]


def _spacing(volume: Any, spacing_mm: Sequence[float] | None) -> np.ndarray:
    if spacing_mm is not None:
        return np.asarray(spacing_mm, dtype=np.float64)
    if isinstance(volume, MetaTensor):
        return np.asarray(volume.pixdim[:3], dtype=np.float64)
    return np.ones(3)


def plot_ct_plane(
    volume: np.ndarray | torch.Tensor,
    plane: str,
    *,
    spacing_mm: Sequence[float] | None = None,
    windows: Mapping[str, Sequence[float]] | None = None,
    index: int | None = None,
    title: str = "",
    panel_inches: float = 3.0,
    dpi: float = 100,
    path: str | os.PathLike | None = None,
) -> Figure:
    """One plane of a CT in HU, one panel per window side by side.

    Args:
        volume: ``(x, y, z)`` or ``(1, x, y, z)`` in HU, RAS; a MetaTensor gives its voxel spacing.
        plane: ``"axial"``, ``"coronal"`` or ``"sagittal"``.
        spacing_mm: voxel size per axis (mm), overriding a MetaTensor's; 1 mm when neither is known.
        windows: name -> ``(centre, width)`` in HU; default the soft-tissue (40, 400) and lung (-600, 1500) windows.
        index: the slice; the middle one when None.
        title: a line above the panels (e.g. the requested conditions).
        panel_inches: width of each panel.
        dpi: of the figure and the PNG.
        path: also write the figure as a PNG here (atomically).

    Returns:
        The figure: ``figure.axes[k]`` shows window ``k`` (its image's ``get_array()`` is the plane in HU).

    Raises:
        ValueError: as :func:`ct_plane`, or a window whose width is not positive.
    """
    image = ct_plane(volume, plane, index=index)
    windows = dict(CT_WINDOWS if windows is None else windows)
    spacing = _spacing(volume, spacing_mm)
    _, down, across = _AXES[plane]
    aspect = float(spacing[down] / spacing[across])  # height / width of one pixel
    height = panel_inches * aspect * image.shape[0] / image.shape[1]
    figure = new_figure(panel_inches * len(windows), height + (0.5 if title else 0.3), dpi=dpi)
    for k, (name, (centre, width)) in enumerate(windows.items()):
        if not float(width) > 0:
            raise ValueError(f"window {name!r} must have a positive width, got {width}.")
        ax = figure.add_subplot(1, len(windows), k + 1)
        show_image(ax, image, float(centre) - float(width) / 2, float(centre) + float(width) / 2)
        ax.set_aspect(aspect)
        ax.set_title(f"{plane}, {name.lower()} W{float(width):g} L{float(centre):g}", fontsize=7)
        if plane != "sagittal":  # radiological convention: say which side is the patient's right
            ax.text(0.01, 0.5, "R", transform=ax.transAxes, color="yellow", fontsize=7, va="center")
    if title:
        figure.suptitle(title, fontsize=7)
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.85 if title else 0.9, wspace=0.04)
    return save_figure(figure, path, dpi=dpi)


class CTPreviewWriter:
    """Sample writer: ``<stem>_axial.png``, ``<stem>_coronal.png``, ``<stem>_sagittal.png`` per CT sample in HU.

    Each PNG is :func:`plot_ct_plane` of the sample's middle slice in the soft-tissue and lung windows (or
    ``windows``), titled with the requested conditions.

    Args:
        spacing_mm: voxel size (mm); None takes the sample's own (a MetaTensor) or 1 mm.
        windows: name -> ``(centre, width)`` in HU; default the soft-tissue and lung windows.
        dpi: of the PNGs.
    """

    def __init__(
        self,
        spacing_mm: Sequence[float] | None = None,
        windows: Mapping[str, Sequence[float]] | None = None,
        dpi: float = 100,
    ) -> None:
        self.spacing_mm = None if spacing_mm is None else [float(s) for s in spacing_mm]
        self.windows, self.dpi = windows, float(dpi)

    def __call__(self, sample: torch.Tensor, stem: Path, provenance: Mapping[str, Any]) -> list[Path]:
        conditions = provenance.get("conditions", {})
        title = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in conditions.items()
                         if not isinstance(v, (list, tuple)))
        paths = []
        for plane in CT_PLANES:
            path = Path(f"{stem}_{plane}.png")
            plot_ct_plane(sample, plane, spacing_mm=self.spacing_mm, windows=self.windows, title=f"SYNTHETIC {title}",
                          dpi=self.dpi, path=path)
            paths.append(path)
        return paths
