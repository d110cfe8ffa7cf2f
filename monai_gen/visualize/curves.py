"""Training curves: losses and validation metrics against iteration, from TensorBoard logs, CSV or lists.

Sources, all read into ``{tag: (iterations, values)}`` by :func:`read_scalars`:

- a TensorBoard log folder or event file written by MONAI / Ignite handlers (``TensorBoardStatsHandler``) or
  ``torch.utils.tensorboard.SummaryWriter`` (every ``events.out.tfevents.*`` file of the folder, not subfolders);
- a CSV file whose first column is the iteration and whose other columns are one series each (empty cells skipped);
- a sequence of ``(iteration, value)`` pairs, or a mapping ``{tag: [(iteration, value), ...]}``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from monai_gen.visualize.figure import new_figure, save_figure

__all__ = ["ScalarSource", "read_scalars", "smooth_ema", "plot_training_curves"]

ScalarSource = str | os.PathLike | Sequence[tuple[float, float]] | Mapping[str, Sequence[tuple[float, float]]]
"""What :func:`read_scalars` accepts."""
Series = dict[str, tuple[np.ndarray, np.ndarray]]


def read_scalars(source: ScalarSource, *, tags: Sequence[str] | None = None) -> Series:
    """Read scalar series as ``{tag: (iterations, values)}`` float arrays, ordered by iteration.

    Args:
        source: see the module docstring. A bare sequence of pairs is returned under the tag ``"value"``.
        tags: keep only these tags, in this order; every tag when None.

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: no scalars in the source, a requested tag missing, or malformed pairs / CSV.
    """
    if isinstance(source, str | os.PathLike):
        series = _read_path(Path(source))
    elif isinstance(source, Mapping):
        series = {str(tag): _pairs(pairs, str(tag)) for tag, pairs in source.items()}
    else:
        series = {"value": _pairs(source, "value")}
    if not series:
        raise ValueError(f"no scalar series found in {source}.")
    if tags is not None:
        missing = [tag for tag in tags if tag not in series]
        if missing:
            raise ValueError(f"tags {missing} are not in {source}; available: {sorted(series)}.")
        series = {tag: series[tag] for tag in tags}
    return series


def smooth_ema(values: np.ndarray | Sequence[float], weight: float) -> np.ndarray:
    """TensorBoard's debiased exponential moving average: ``s_n = m_n / (1 - w^n)``, ``m_n = w m_{n-1} + (1 - w) v_n``.

    Args:
        values: the series, in iteration order.
        weight: ``w`` in ``[0, 1)``; 0 returns the values unchanged.

    Raises:
        ValueError: ``weight`` outside ``[0, 1)``.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}.")
    values = np.asarray(values, dtype=np.float64)
    smoothed, moving = np.empty_like(values), 0.0
    for n, value in enumerate(values, start=1):
        moving = weight * moving + (1.0 - weight) * value
        smoothed[n - 1] = moving / (1.0 - weight**n)
    return smoothed


def plot_training_curves(
    source: ScalarSource,
    *,
    tags: Sequence[str] | None = None,
    smoothing: float = 0.0,
    log_scale: bool = False,
    title: str = "",
    size_inches: tuple[float, float] = (6.0, 3.5),
    dpi: float = 100,
    path: str | Path | None = None,
) -> Figure:
    """Plot losses (tags containing ``loss``) and other metrics (validation Dice, SSIM...) against iteration.

    Losses and metrics go on two side-by-side panels (one when only one kind is present), since their scales
    differ. With smoothing, the raw series is drawn faint behind its smoothed version.

    Args:
        source: TensorBoard folder / event file, CSV, or pairs; see :func:`read_scalars`.
        tags: series to plot; all when None.
        smoothing: weight of :func:`smooth_ema` in ``[0, 1)`` (TensorBoard's slider); 0 draws the raw series only.
        log_scale: logarithmic y axis for the loss panel (losses must then be positive).
        title: figure title.
        size_inches: width and height of the whole figure in inches.
        dpi: dots per inch of the figure and of the PNG.
        path: also write the figure as a PNG here (atomically).

    Returns:
        The figure. Each series' smoothed (or only) line has ``get_label() == tag``; raw lines behind smoothed
        ones have the gid ``"raw"``.

    Raises:
        FileNotFoundError, ValueError: as in :func:`read_scalars`; a bad smoothing weight; non-positive losses
        on a log scale.
    """
    series = read_scalars(source, tags=tags)
    smooth_ema([], smoothing)  # check the weight before drawing anything
    groups = {
        "loss": {t: s for t, s in series.items() if "loss" in t.lower()},
        "metric": {t: s for t, s in series.items() if "loss" not in t.lower()},
    }
    groups = {kind: group for kind, group in groups.items() if group}
    if log_scale and "loss" in groups:
        bad = [tag for tag, (_, values) in groups["loss"].items() if np.any(values <= 0)]
        if bad:
            raise ValueError(f"log_scale needs positive losses; {bad} have values <= 0.")
    figure = new_figure(*size_inches, dpi=dpi)
    for index, (kind, group) in enumerate(groups.items()):
        ax = figure.add_subplot(1, len(groups), index + 1)
        _draw_group(ax, group, smoothing)
        ax.set_ylabel(kind)
        if kind == "loss" and log_scale:
            ax.set_yscale("log")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return save_figure(figure, path, dpi=dpi)


def _draw_group(ax: Axes, group: Series, smoothing: float) -> None:
    for colour, (tag, (steps, values)) in enumerate(group.items()):
        if smoothing > 0:
            ax.plot(steps, values, color=f"C{colour}", alpha=0.25, linewidth=0.8, gid="raw")
        ax.plot(steps, smooth_ema(values, smoothing), color=f"C{colour}", linewidth=1.2, label=tag)
    ax.set_xlabel("iteration")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _read_path(path: Path) -> Series:
    if not path.exists():
        raise FileNotFoundError(f"training log {path} does not exist.")
    if path.suffix.lower() == ".csv":
        return _read_csv(path)
    accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0})  # 0 keeps every point
    try:
        accumulator.Reload()
    except Exception as err:  # tensorboard raises its own errors for corrupt or foreign files
        raise ValueError(f"{path} is not a readable TensorBoard event file or folder: {err}") from err
    return {
        tag: _pairs([(event.step, event.value) for event in accumulator.Scalars(tag)], f"{path}:{tag}")
        for tag in accumulator.Tags()["scalars"]
    }


def _read_csv(path: Path) -> Series:
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a readable CSV file: {err}") from err
    if table.shape[1] < 2:
        raise ValueError(f"{path} needs an iteration column and at least one value column; got {list(table.columns)}.")
    steps = table.columns[0]
    series = {}
    for column in table.columns[1:]:
        rows = table[[steps, column]].dropna()
        series[str(column)] = _pairs(rows.to_numpy(), f"{path}:{column}")
    return series


def _pairs(pairs: Sequence[tuple[float, float]] | np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(iterations, values)`` sorted by iteration from ``(iteration, value)`` pairs, checked numeric."""
    try:
        array = np.asarray(pairs, dtype=np.float64) if len(pairs) else np.zeros((0, 2))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: expected numeric (iteration, value) pairs: {err}") from err
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{where}: expected (iteration, value) pairs, got an array of shape {array.shape}.")
    order = np.argsort(array[:, 0], kind="stable")
    return array[order, 0], array[order, 1]
