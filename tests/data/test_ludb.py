"""LUDB's expert delineation reader on real LUDB files (record 1, lead II checked by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from monai_gen.data.ludb import LUDB_LEADS, expert_intervals, read_ludb_delineation, read_ludb_signal


@pytest.fixture(scope="module")
def record_1(shared_data):
    return shared_data / "ecg" / "ludb" / "data" / "1"


def test_marks_of_lead_ii(record_1):
    marks = read_ludb_delineation(record_1, leads=("ii",))["ii"]
    # the file reads "(644 N662 )682 (776 t843 )878 (1250 p1278 )1302 (1324 N1342 )1374 ... (3950 N3969 )3996"
    np.testing.assert_array_equal(marks.qrs[0], [644, 662, 682])
    np.testing.assert_array_equal(marks.t[0], [776, 843, 878])
    np.testing.assert_array_equal(marks.p[0], [1250, 1278, 1302])
    np.testing.assert_array_equal(marks.qrs[:, 1], [662, 1342, 2000, 2642, 3314, 3969])
    assert marks.t.shape == (5, 3) and marks.p.shape == (5, 3)  # the last beat has no T, the first no P


def test_expert_intervals_of_lead_ii_by_hand(record_1):
    # QRS 38 50 49 44 61 46 samples -> median 47.5 = 95 ms; QT 234 248 245 247 253 (last beat: no T) -> 494 ms;
    # PR (first beat: no P) 74 68 78 63 71 -> 142 ms; RR 680 658 642 672 655 -> 1316 ms
    lead_ii = expert_intervals(read_ludb_delineation(record_1, leads=("ii",)), fs=500.0)
    assert lead_ii == pytest.approx(
        {"qrs_ms": 95.0, "qt_ms": 494.0, "pr_ms": 142.0, "rr_ms": 1316.0, "heart_rate_bpm": 60000 / 1316}
    )


def test_expert_intervals_are_the_median_over_the_twelve_leads(record_1):
    delineation = read_ludb_delineation(record_1)
    assert tuple(delineation) == LUDB_LEADS
    record = expert_intervals(delineation, fs=500.0)
    per_lead = [expert_intervals({lead: marks}, fs=500.0) for lead, marks in delineation.items()]
    for key in ("qrs_ms", "qt_ms", "pr_ms", "rr_ms"):
        assert record[key] == pytest.approx(np.nanmedian([lead[key] for lead in per_lead]))
    assert record["qrs_ms"] == pytest.approx(81.5) and record["heart_rate_bpm"] == pytest.approx(45.6, abs=0.1)


def test_signal_and_missing_files(record_1, tmp_path):
    signal, fs = read_ludb_signal(record_1)
    assert signal.shape == (12, 5000) and fs == 500.0
    assert 0.5 < np.ptp(signal[1]) < 5  # mV
    with pytest.raises(FileNotFoundError, match=r"1\.v7.*'v7'"):
        read_ludb_delineation(record_1, leads=("v7",))
    with pytest.raises(FileNotFoundError, match="no WFDB header"):
        read_ludb_signal(tmp_path / "1")
