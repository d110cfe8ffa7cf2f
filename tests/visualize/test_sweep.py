from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
import wfdb
from matplotlib.image import imread
from scipy.signal import find_peaks

from monai_gen.data.ecg_meta import STANDARD_LEADS
from monai_gen.transforms.ecg.measurements import measure_median_beat
from monai_gen.visualize.rhythm import assemble_rhythm, t_wave_amplitude
from monai_gen.visualize.sweep import plot_image_sweep, plot_signal_sweep, plot_sweep, sweep_row_label

FS = 500
R_INDEX = 200
SWEPT_RATES = (50.0, 70.0)  # the heart_rate_sweep fixture's rows


@pytest.fixture(scope="module")
def beats(shared_data):
    """(3 values, 2 seeds, 12, 576) windows of the real record E07500, the third row at twice the amplitude."""
    signal = wfdb.rdrecord(str(shared_data / "ecg/cinc2021/E07500")).p_signal.T
    cells = [[signal[:, 1000 * s + 100 * r : 1000 * s + 100 * r + 576] for s in range(2)] for r in range(3)]
    array = np.asarray(cells)
    array[2] *= 2.0
    return array


@pytest.fixture(scope="module")
def volumes(shared_data):
    files = sorted((shared_data / "brain_mri/ixi10_2mm/nifti").glob("*.nii.gz"))[:2]
    return np.stack([nib.load(f).get_fdata(dtype=np.float32) for f in files])[:, None]


def test_signal_sweep_cells_labels_and_shared_scale(beats):
    figure = plot_signal_sweep(beats, [350, 400, 450], name="QT", unit="ms", seeds=[7, 11], fs=FS, lead="V2")
    assert len(figure.axes) == 6
    assert [figure.axes[r * 2].get_ylabel() for r in range(3)] == ["QT = 350 ms", "QT = 400 ms", "QT = 450 ms"]
    assert [ax.get_title() for ax in figure.axes[:2]] == ["seed 7", "seed 11"]
    v2 = STANDARD_LEADS.index("V2")
    for index, ax in enumerate(figure.axes):
        (line,) = ax.get_lines()
        np.testing.assert_allclose(line.get_ydata(), beats[index // 2, index % 2, v2])
        np.testing.assert_allclose(line.get_xdata(), np.arange(576) / FS)
    limits = {ax.get_ylim() for ax in figure.axes}
    assert len(limits) == 1  # the doubled row is visibly larger on the common scale
    (low, high) = limits.pop()
    assert low <= beats[:, :, v2].min() and high >= beats[:, :, v2].max()


def test_signal_sweep_all_leads_overlay(beats):
    figure = plot_sweep(torch.as_tensor(beats), [1, 2, 3], name="age", unit="years", lead=None)
    assert figure.axes[4].get_ylabel() == "age = 3 years"
    lines = figure.axes[5].get_lines()
    assert len(lines) == 12
    np.testing.assert_allclose(lines[9].get_ydata(), beats[2, 1, 9])
    np.testing.assert_array_equal(lines[0].get_xdata(), np.arange(576))  # no rate given: sample index
    assert len({line.get_color() for line in lines}) == 12
    assert [t.get_text() for t in figure.legends[0].get_texts()] == list(STANDARD_LEADS)


def test_image_sweep_cells_and_shared_window(volumes):
    samples = np.stack([volumes[..., z] for z in (30, 45, 60)])  # (3 values, 2 seeds, 1, H, W)
    figure = plot_sweep(samples, [30, 45, 60], name="slice", unit="index")
    assert len(figure.axes) == 6
    assert figure.axes[2].get_ylabel() == "slice = 45 index"
    for index, ax in enumerate(figure.axes):
        np.testing.assert_array_equal(ax.get_images()[0].get_array(), samples[index // 2, index % 2, 0])
    assert len({ax.get_images()[0].get_clim() for ax in figure.axes}) == 1
    volume_sweep = plot_image_sweep(np.stack([volumes, volumes]), [0.5, 1.5], name="BMI", unit="kg/m²")
    np.testing.assert_array_equal(volume_sweep.axes[3].get_images()[0].get_array(), volumes[1, 0, :, :, 45])


def test_png_written(tmp_path, beats):
    plot_signal_sweep(beats, [1, 2, 3], name="HR", unit="bpm", cell_inches=(2.0, 1.0), dpi=30, path=tmp_path / "s.png")
    assert imread(tmp_path / "s.png").shape[:2] == (int((3 * 1.0 + 0.6) * 30), int((2 * 2.0 + 1.2) * 30))


def test_errors(beats):
    with pytest.raises(ValueError, match="values has 2 entries but samples has 3 rows"):
        plot_signal_sweep(beats, [1, 2], name="QT")
    with pytest.raises(ValueError, match="seeds has 3 entries"):
        plot_signal_sweep(beats, [1, 2, 3], name="QT", seeds=[0, 1, 2])
    with pytest.raises(ValueError, match="lead 'V7' is not one of the lead names"):
        plot_signal_sweep(beats, [1, 2, 3], name="QT", lead="V7")
    with pytest.raises(ValueError, match="rank"):
        plot_signal_sweep(beats[0], [1, 2], name="QT")
    broken = beats.copy()
    broken[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        plot_signal_sweep(broken, [1, 2, 3], name="QT")
    with pytest.raises(ValueError, match="non-empty"):
        plot_image_sweep(np.zeros((0, 2, 1, 4, 4)), [], name="z")
    assert sweep_row_label("z", 2.0) == "z = 2"


def _generated(folder):
    """The fixture's generated beats as (2 rates, 2 columns, 12, 576) mV: seed 0 twice, read back from WFDB."""
    beats = [wfdb.rdrecord(str(folder / f"sweep_heart_rate_00{row}_seed0")).p_signal.T for row in range(2)]
    return np.asarray([[beat, beat] for beat in beats])


def test_heart_rate_rows_show_their_rr_on_a_rhythm_assembled_from_the_generated_beat(heart_rate_sweep):
    beats = _generated(heart_rate_sweep)
    rr = [60.0 / rate for rate in SWEPT_RATES]
    figure = plot_signal_sweep(beats, SWEPT_RATES, name="heart_rate", unit="bpm", seeds=[0, 0], fs=FS, lead="II",
                               r_index=R_INDEX, rr_s=rr)
    cells, rhythms = figure.axes[:4], figure.axes[4:]
    assert len(rhythms) == 2 and "assembled from the generated beat" in rhythms[0].get_title()
    intervals = []
    for row, (ax, rr_s) in enumerate(zip(rhythms, rr, strict=True)):
        (line,) = ax.get_lines()
        np.testing.assert_allclose(line.get_ydata(), assemble_rhythm(beats[row, 0], FS, r_index=R_INDEX, rr_s=rr_s)[0][1])
        trace = line.get_ydata()
        found, _ = find_peaks(trace, height=0.6 * trace.max(), distance=int(0.3 * FS))  # R peaks of the drawn strip
        intervals.append(np.diff(line.get_xdata()[found]))
        assert f"RR {1000 * rr_s:.0f} ms = {SWEPT_RATES[row]:.0f} bpm" in [t.get_text() for t in ax.texts]
    assert intervals[0] == pytest.approx(1.2, abs=0.01) and intervals[1] == pytest.approx(60 / 70, abs=0.01)
    assert rhythms[0].get_ylim() == cells[0].get_ylim()  # one amplitude scale
    width = figure.get_size_inches()[0]
    seconds_per_inch = [np.ptp(ax.get_xlim()) / (ax.get_position().width * width) for ax in (cells[0], rhythms[0])]
    assert seconds_per_inch[0] == pytest.approx(seconds_per_inch[1], rel=1e-3)  # and one time scale


def test_every_cell_shows_its_measured_qt_and_t_wave(heart_rate_sweep):
    beats = _generated(heart_rate_sweep)[:, :1]
    figure = plot_signal_sweep(beats, SWEPT_RATES, name="heart_rate", unit="bpm", fs=FS, lead="II", r_index=R_INDEX,
                               rr_s=[60.0 / rate for rate in SWEPT_RATES])
    for ax, beat, rate in zip(figure.axes[:2], beats[:, 0], SWEPT_RATES, strict=True):
        qt = measure_median_beat(beat, FS, r_index=R_INDEX, rr_ms=60000.0 / rate).qt_ms
        (note,) = [t.get_text() for t in ax.texts if t.get_gid() == "measurement"]
        if np.isfinite(qt):
            t_wave = t_wave_amplitude(beat[1], FS, r_index=R_INDEX, qt_ms=qt)[0]
            assert note == f"QT {qt:.0f} ms · T {t_wave:+.2f} mV"
        else:
            assert note == "QT not measurable"
    assert "QT measured on each generated beat" in figure.texts[0].get_text()


def test_bundle_sweep_strip_has_the_assembled_rhythm_column(heart_rate_sweep):
    pixels = imread(heart_rate_sweep / "sweep_heart_rate.png")
    rhythm_inches = 2.5 * 3.0 * FS / 576  # 3 s at the 2.5 in per 1.152 s beat cell
    assert pixels.shape[:2] == (int((2 * 1.4 + 0.6) * 100), int((2.5 + 0.35 + rhythm_inches + 1.2) * 100))


def test_rhythm_needs_an_r_index_and_a_rate(beats):
    with pytest.raises(ValueError, match="rr_s has 2 entries"):
        plot_signal_sweep(beats, [1, 2, 3], name="HR", fs=FS, r_index=R_INDEX, rr_s=[1.0, 0.8])
    with pytest.raises(ValueError, match="needs r_index"):
        plot_signal_sweep(beats, [1, 2, 3], name="HR", fs=FS, rr_s=[1.0, 0.8, None])
    with pytest.raises(ValueError, match="sampling rate"):
        plot_signal_sweep(beats, [1, 2, 3], name="HR", r_index=R_INDEX)
