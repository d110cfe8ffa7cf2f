from __future__ import annotations

import numpy as np
import pytest
import torch
import wfdb
from matplotlib import pyplot as plt
from matplotlib.image import imread
from monai.transforms import LoadImage

from monai_gen.data.ecg_meta import STANDARD_LEADS, make_ecg
from monai_gen.data.ecg_readers import WFDBReader
from monai_gen.visualize.ecg import RHYTHM_LAYOUT, median_beats_caption, plot_ecg, plot_median_beats, standard_leads

FS = 500


@pytest.fixture(scope="module")
def record(shared_data):
    """CinC 2021 record E07500: (12, 5000) mV at 500 Hz."""
    rec = wfdb.rdrecord(str(shared_data / "ecg/cinc2021/E07500"))
    assert rec.fs == FS and list(rec.sig_name) == list(STANDARD_LEADS)
    return rec.p_signal.T.astype(np.float64)


@pytest.fixture(scope="module")
def page(record):
    return plot_ecg(record, FS, record_id="E07500", caption="HR 75 bpm · synthetic")


def _trace(ax):
    lines = [line for line in ax.get_lines() if line.get_gid() is None]  # not calibration / separator marks
    assert len(lines) == 1
    return lines[0]


def test_layout_has_standard_panels_in_position(page):
    labels = [ax.get_label() for ax in page.axes]
    assert labels == [name for row in RHYTHM_LAYOUT for name in row] + ["II"]
    boxes = [ax.get_position() for ax in page.axes]
    for row in range(3):  # same row: same height on the page, left to right
        row_boxes = boxes[4 * row : 4 * row + 4]
        assert len({round(b.y0, 6) for b in row_boxes}) == 1
        assert all(a.x1 == pytest.approx(b.x0) for a, b in zip(row_boxes[:-1], row_boxes[1:], strict=True))
    assert boxes[0].y0 > boxes[4].y0 > boxes[8].y0 > boxes[12].y0  # rows top to bottom, rhythm strip last
    visible = [[t.get_text() for t in ax.texts] for ax in page.axes]
    assert visible == [[label] for label in labels]
    caption = page.texts[0].get_text()
    assert "E07500" in caption and "500 Hz" in caption and "HR 75 bpm · synthetic" in caption


def test_v4_column_is_the_last_quarter_in_grid_units(page, record):
    v4 = _trace(page.axes[3])  # row 0, column 4
    np.testing.assert_allclose(v4.get_xdata() / 25.0 * FS, np.arange(3750, 5000), atol=1e-9)
    np.testing.assert_allclose(v4.get_ydata(), 10.0 * record[STANDARD_LEADS.index("V4")][3750:5000])
    aVR = _trace(page.axes[1])  # column 2 is seconds 2.5-5
    np.testing.assert_allclose(aVR.get_xdata()[[0, -1]], [2.5 * 25, (5.0 - 1 / FS) * 25])
    rhythm = _trace(page.axes[12])
    np.testing.assert_allclose(rhythm.get_ydata(), 10.0 * record[1])


def test_paper_grid_is_40_ms_by_100_uv_and_true_to_scale(page):
    ax = page.axes[5]
    grid = {c.get_gid(): c.get_segments() for c in ax.collections}
    for axis, (low, high) in ((0, ax.get_xlim()), (1, ax.get_ylim())):  # lines every 1 mm (0.04 s; 0.1 mV), bold every 5
        other = 1 - axis
        positions = {
            gid: np.unique([seg[0][axis] for seg in segments if seg[0][axis] == seg[1][axis]]) for gid, segments in grid.items()
        }
        minor, major = positions["minor_grid"], positions["major_grid"]
        assert len(minor) > 20 and np.diff(minor) == pytest.approx(1.0) and low <= minor[0] < low + 1 and high - 1 < minor[-1] <= high
        assert np.diff(major) == pytest.approx(5.0) and np.all(np.mod(major, 5.0) == 0.0)
        spans = [sorted((seg[0][other], seg[1][other])) for seg in grid["minor_grid"] if seg[0][axis] == seg[1][axis]]
        assert spans and all(span == pytest.approx(sorted(ax.get_ylim() if axis == 0 else ax.get_xlim())) for span in spans)
    width_in, height_in = page.get_size_inches()
    box = ax.get_position()
    x_mm_per_unit = box.width * width_in * 25.4 / np.ptp(ax.get_xlim())
    y_mm_per_unit = box.height * height_in * 25.4 / np.ptp(ax.get_ylim())
    assert x_mm_per_unit == pytest.approx(1.0) and y_mm_per_unit == pytest.approx(1.0)


def test_calibration_pulse_is_one_millivolt_at_each_row_start(page):
    for index in (0, 4, 8, 12):
        (pulse,) = [line for line in page.axes[index].get_lines() if line.get_gid() == "calibration"]
        assert np.ptp(pulse.get_ydata()) == pytest.approx(10.0)
        assert pulse.get_xdata().max() <= 0.0  # before the first sample
    assert [line.get_gid() for line in page.axes[1].get_lines()] == [None, "separator"]  # lead change, no pulse
    (mark,) = [line for line in page.axes[1].get_lines() if line.get_gid() == "separator"]
    np.testing.assert_array_equal(mark.get_xdata(), [2.5 * 25, 2.5 * 25])  # where aVR takes over from I


def test_png_has_requested_pixel_size(tmp_path, record):
    figure = plot_ecg(record, FS, dpi=50, path=tmp_path / "out" / "ecg.png")
    pixels = imread(tmp_path / "out" / "ecg.png")
    width_in, height_in = figure.get_size_inches()
    assert pixels.shape[:2] == (int(height_in * 50), int(width_in * 50))  # Agg truncates
    assert pixels[..., :3].std() > 0.05  # something drawn
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["ecg.png"]  # no temporary left behind


def test_metatensor_rate_names_and_order_from_meta(record):
    order = [11 - i for i in range(12)]  # stored V6 ... I
    ecg = make_ecg(torch.as_tensor(record[order]), 250.0, [STANDARD_LEADS[i].upper() for i in order], record_id="r")
    np.testing.assert_allclose(standard_leads(ecg), record.astype(np.float32))
    figure = plot_ecg(ecg, duration=4.0)  # 250 Hz read from the affine: 4 s = 1000 samples, 1 s per column
    v4 = _trace(figure.axes[3])
    np.testing.assert_allclose(v4.get_xdata()[[0, -1]], [3.0 * 25, (4.0 - 1 / 250) * 25])
    assert figure.texts[0].get_text().startswith("r · 250 Hz")


def test_loaded_record_with_extra_leads_at_1000_hz(shared_data):
    ecg = LoadImage(reader=WFDBReader(), image_only=True)(shared_data / "ecg/ptb_s0010_re/s0010_re.hea")
    assert ecg.shape[0] == 15  # 12 standard leads + Frank vx, vy, vz
    figure = plot_ecg(ecg, duration=2.0)
    assert len(figure.axes) == 13
    v6 = _trace(figure.axes[11])  # last column: samples 1500-2000 at 1000 Hz
    np.testing.assert_allclose(v6.get_ydata(), 10.0 * ecg[11, 1500:2000].numpy(), rtol=1e-6)
    np.testing.assert_allclose(v6.get_xdata()[[0, -1]], [1.5 * 25, 1.999 * 25])
    assert "s0010_re · 1000 Hz" in figure.texts[0].get_text()
    assert plt.get_fignums() == []  # nothing leaked into pyplot's registry


def test_median_beats_layouts(record):
    beats = record[:, 1000:1576]
    figure = plot_median_beats(beats, FS, layout="2x6")
    assert [ax.get_label() for ax in figure.axes] == list(STANDARD_LEADS)
    v1 = _trace(figure.axes[6])  # second row, first panel
    np.testing.assert_allclose(v1.get_ydata(), 10.0 * beats[6])
    np.testing.assert_allclose(np.diff(v1.get_xdata()), 25.0 / FS)
    widths = {round(np.ptp(_trace(ax).get_xdata()), 6) for ax in figure.axes}
    assert widths == {round(575 / FS * 25.0, 6)}  # every beat on the same paper scale
    grid = plot_median_beats(beats, FS)
    assert [ax.get_label() for ax in grid.axes] == [name for row in RHYTHM_LAYOUT for name in row]


def test_errors(record):
    with pytest.raises(ValueError, match=r"\(leads, samples\).*\(11, 5000\)"):
        plot_ecg(record[:11], FS)
    with pytest.raises(ValueError, match="do not fit the 12-lead layout"):
        plot_ecg(record, FS, lead_names=["I"] * 12)
    broken = record.copy()
    broken[9, 100] = np.nan
    with pytest.raises(ValueError, match=r"\['V4'\].*NaN"):
        plot_ecg(broken, FS)
    with pytest.raises(ValueError, match="fs .* must be given"):
        plot_ecg(record)
    with pytest.raises(ValueError, match="does not fit a record of 5000 samples"):
        plot_ecg(record, FS, start=5.0, duration=10.0)
    with pytest.raises(ValueError, match="layout must be one of"):
        plot_median_beats(record[:, :576], FS, layout="4x3")


@pytest.mark.parametrize("layout", ["3x4", "2x6"])
def test_long_caption_stays_inside_the_page_above_the_panels(tmp_path, record, layout):
    """The bundle's preview caption (record id, rate, scales, conditions, "synthetic") on a 13.5 cm beat page."""
    caption = "heart_rate 50.0 · qrs 95.0 · qt 420.0 · age 63.0 · sex female · synthetic"
    figure = plot_median_beats(record[:, 1000:1576], FS, layout=layout, record_id="sweep_heart_rate_000_seed0",
                               caption=caption, path=tmp_path / "beats.png")
    renderer = figure.canvas.get_renderer()
    (title,) = figure.texts
    box, page = title.get_window_extent(renderer), figure.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, (box, page)
    top_panel = max(ax.get_window_extent(renderer).y1 for ax in figure.axes)
    assert box.y0 >= top_panel  # the wrapped lines do not run into the first row of paper
    shown = title.get_text().replace("\n", " · ")
    for part in ("sweep_heart_rate_000_seed0", "500 Hz", "10 mm/mV", "heart_rate 50.0", "sex female", "synthetic"):
        assert part in shown
    pixels = imread(tmp_path / "beats.png")[..., :3]
    right_margin = pixels[:, -int(0.9 * 5.0 / 25.4 * figure.dpi) :]  # the page's 5 mm right margin stays blank
    assert right_margin.min() > 0.95


@pytest.mark.parametrize("layout", ["3x4", "2x6"])
@pytest.mark.parametrize("samples", [576, 400])
def test_median_beats_caption_is_the_caption_the_page_draws(record, layout, samples):
    """The explorer redraws a kept page with this text: it must be the wrapped text and font size a fresh page has,
    for one line, several lines and a word too wide for the line (the font shrinks)."""
    for caption in ("seed 0", " · ".join(f"condition_{k} {k}.5" for k in range(12)), "x" * 200):
        beats = record[:, 1000 : 1000 + samples]
        text, fontsize = median_beats_caption(beats, FS, layout=layout, record_id="E07500", caption=caption)
        (drawn,) = plot_median_beats(beats, FS, layout=layout, record_id="E07500", caption=caption).texts
        assert (text, fontsize) == (drawn.get_text(), drawn.get_fontsize())
    assert text.split("\n")[-1] == "x" * 200 and fontsize < 9.0  # the 200-character word: its line, a smaller font
    with pytest.raises(ValueError, match="layout"):
        median_beats_caption(beats, FS, layout="4x3")
