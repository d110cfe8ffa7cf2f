"""Real 12-lead records shared by the ECG transform tests."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb


@pytest.fixture(scope="session")
def cinc_signals(shared_data) -> dict[str, np.ndarray]:
    """Every cinc2021 record as (12, 5000) mV at 500 Hz, keyed by record name (wfdb, independent of our readers)."""
    return {
        h.stem: np.nan_to_num(wfdb.rdrecord(str(h.with_suffix(""))).p_signal.T)
        for h in sorted((shared_data / "ecg" / "cinc2021").glob("*.hea"))
    }
