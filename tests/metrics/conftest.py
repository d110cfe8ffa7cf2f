"""Real ECG windows for the metric tests: (N, 12, 500) in mV from the cinc2021 records."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb


@pytest.fixture(scope="session")
def ecg_windows(shared_data) -> np.ndarray:
    windows = []
    for header in sorted((shared_data / "ecg" / "cinc2021").glob("*.hea"))[:40]:
        signal = wfdb.rdrecord(str(header.with_suffix(""))).p_signal.T.astype(np.float32)
        windows.extend(np.nan_to_num(signal[:, start : start + 500]) for start in (0, 2000, 4000))
    return np.stack(windows)
