"""Figures that never touch pyplot's global state, and their atomic PNG export.

Every plot in :mod:`monai_gen.visualize` builds a standalone :class:`matplotlib.figure.Figure` attached to an
Agg canvas, so calling it from a script, a notebook or a training loop neither opens a window nor leaks a
figure into ``pyplot``'s registry (the figure is freed when the caller drops it).
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from monai_gen.utils.atomic import atomic_output_path

__all__ = ["new_figure", "save_figure"]


def new_figure(width_in: float, height_in: float, *, dpi: float = 100) -> Figure:
    """A white ``width_in`` × ``height_in`` inch figure on an Agg canvas, outside ``pyplot``.

    Raises:
        ValueError: a non-positive size or DPI.
    """
    for name, value in (("width", width_in), ("height", height_in), ("dpi", dpi)):
        if not float(value) > 0:
            raise ValueError(f"figure {name} must be positive, got {value}.")
    figure = Figure(figsize=(width_in, height_in), dpi=dpi, facecolor="white")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: str | os.PathLike | None, *, dpi: float | None = None) -> Figure:
    """Write ``figure`` as a PNG to ``path`` atomically (nothing when ``path`` is None) and return it.

    The PNG is exactly ``figsize × dpi`` pixels (no tight cropping), so paper scales such as 25 mm/s stay true.

    Args:
        figure: the figure to save.
        path: destination ``.png``; its folder is created if missing.
        dpi: dots per inch of the PNG; the figure's own DPI when None.
    """
    if path is not None:
        with atomic_output_path(Path(path)) as tmp:
            figure.savefig(tmp, format="png", dpi=dpi if dpi is not None else figure.dpi)
    return figure
