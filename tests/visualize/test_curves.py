from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread
from torch.utils.tensorboard import SummaryWriter

from monai_gen.visualize.curves import plot_training_curves, read_scalars, smooth_ema

LOSS = [(step, 2.0 * 0.9**step) for step in range(0, 50)]
DICE = [(step, 0.5 + 0.01 * step) for step in range(0, 50, 10)]


@pytest.fixture
def log_dir(tmp_path):
    """A TensorBoard log written by SummaryWriter: train loss every iteration, validation Dice every 10."""
    with SummaryWriter(log_dir=str(tmp_path / "runs")) as writer:
        for step, value in LOSS:
            writer.add_scalar("train_loss", value, step)
        for step, value in DICE:
            writer.add_scalar("val_mean_dice", value, step)
    return tmp_path / "runs"


def test_reads_back_summary_writer_scalars(log_dir):
    series = read_scalars(log_dir)
    assert sorted(series) == ["train_loss", "val_mean_dice"]
    steps, values = series["train_loss"]
    np.testing.assert_array_equal(steps, [s for s, _ in LOSS])
    np.testing.assert_allclose(values, [v for _, v in LOSS], rtol=1e-6)  # stored as float32
    event_file = next(log_dir.glob("events.out.tfevents.*"))
    np.testing.assert_allclose(
        read_scalars(event_file, tags=["val_mean_dice"])["val_mean_dice"][1], [0.5, 0.6, 0.7, 0.8, 0.9]
    )


def test_reads_monai_tensorboard_stats_handler(tmp_path):
    from ignite.engine import Engine
    from monai.handlers import TensorBoardStatsHandler

    engine = Engine(lambda engine, batch: float(batch))
    TensorBoardStatsHandler(log_dir=str(tmp_path), output_transform=lambda output: output).attach(engine)
    engine.run([4.0, 3.0, 2.0], max_epochs=1)
    steps, values = read_scalars(tmp_path)["Loss"]  # MONAI's default iteration tag
    np.testing.assert_array_equal(steps, [1, 2, 3])
    np.testing.assert_array_equal(values, [4.0, 3.0, 2.0])


def test_curves_put_losses_and_metrics_on_their_panels(log_dir, tmp_path):
    figure = plot_training_curves(log_dir, log_scale=True, dpi=50, path=tmp_path / "curves.png")
    loss_ax, metric_ax = figure.axes
    assert loss_ax.get_yscale() == "log" and metric_ax.get_yscale() == "linear"
    (loss_line,) = loss_ax.get_lines()
    assert loss_line.get_label() == "train_loss"
    np.testing.assert_allclose(loss_line.get_ydata(), [v for _, v in LOSS], rtol=1e-6)
    (dice_line,) = metric_ax.get_lines()
    np.testing.assert_array_equal(dice_line.get_xdata(), [0, 10, 20, 30, 40])
    assert imread(tmp_path / "curves.png").shape[:2] == (175, 300)  # 6 x 3.5 in at 50 dpi


def test_smoothing_is_tensorboards_debiased_ema():
    np.testing.assert_allclose(smooth_ema([3.0] * 5, 0.9), 3.0)  # a constant is left unchanged
    weight = 0.6
    np.testing.assert_allclose(smooth_ema([1.0, 2.0], weight), [1.0, (weight * 1.0 + 2.0) / (1.0 + weight)])
    np.testing.assert_array_equal(smooth_ema([5.0, 1.0, 7.0], 0.0), [5.0, 1.0, 7.0])
    figure = plot_training_curves({"loss": [(0, 1.0), (1, 2.0)]}, smoothing=weight)
    raw, smoothed = figure.axes[0].get_lines()
    assert raw.get_gid() == "raw" and smoothed.get_label() == "loss"
    np.testing.assert_allclose(smoothed.get_ydata(), smooth_ema([1.0, 2.0], weight))


def test_csv_and_pairs(tmp_path):
    csv = tmp_path / "log.csv"
    csv.write_text("iteration,loss,val_ssim\n0,1.0,\n1,0.5,0.7\n2,0.25,\n")
    series = read_scalars(csv)
    np.testing.assert_array_equal(series["loss"][1], [1.0, 0.5, 0.25])
    np.testing.assert_array_equal(series["val_ssim"][0], [1.0])  # empty cells skipped
    steps, values = read_scalars([(2, 0.1), (1, 0.3)])["value"]  # sorted by iteration
    np.testing.assert_array_equal(steps, [1, 2])
    np.testing.assert_array_equal(values, [0.3, 0.1])


def test_errors(tmp_path, log_dir):
    with pytest.raises(FileNotFoundError, match="missing_runs"):
        read_scalars(tmp_path / "missing_runs")
    with pytest.raises(ValueError, match=r"tags \['val_loss'\] are not in .*available"):
        read_scalars(log_dir, tags=["val_loss"])
    with pytest.raises(ValueError, match="smoothing weight must be in"):
        plot_training_curves(log_dir, smoothing=1.0)
    with pytest.raises(ValueError, match=r"log_scale needs positive losses; \['loss'\]"):
        plot_training_curves({"loss": [(0, 1.0), (1, 0.0)]}, log_scale=True)
    with pytest.raises(ValueError, match=r"expected \(iteration, value\) pairs.*\(4,\)"):
        read_scalars([1, 2, 3, 4])
    with pytest.raises(ValueError, match="no scalar series found"):
        read_scalars(tmp_path)  # a folder without event files
