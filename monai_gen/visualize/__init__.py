"""Plots people look at: ECG paper print-outs, image grids, CT planes in HU windows, phenotype sweeps, training curves."""

from __future__ import annotations

from monai_gen.visualize.ct_preview import CTPreviewWriter, ct_plane, plot_ct_plane
from monai_gen.visualize.curves import plot_training_curves, read_scalars
from monai_gen.visualize.ecg import plot_ecg, plot_median_beats
from monai_gen.visualize.figure import new_figure, save_figure
from monai_gen.visualize.images import plot_image_grid
from monai_gen.visualize.sweep import plot_image_sweep, plot_signal_grid, plot_signal_sweep, plot_sweep

__all__ = [
    "CTPreviewWriter",
    "ct_plane",
    "new_figure",
    "plot_ct_plane",
    "plot_ecg",
    "plot_image_grid",
    "plot_image_sweep",
    "plot_median_beats",
    "plot_signal_grid",
    "plot_signal_sweep",
    "plot_sweep",
    "plot_training_curves",
    "read_scalars",
    "save_figure",
]
