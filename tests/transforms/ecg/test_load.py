"""LoadECG / LoadECGd: the reader is chosen by file (WFDB, CPSC .mat, DICOM ECG) and its errors reach the caller."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose
from pydicom.data import get_testdata_file

from monai_gen.data.ecg_meta import STANDARD_LEADS, ecg_sampling_rate
from monai_gen.data.ecg_readers import CPSCMatReader, WFDBReader
from monai_gen.transforms.ecg import LoadECG, LoadECGd, MedianBeatd, ResampleECGd, StandardiseLeadsd


def test_each_format_loads_with_its_reader(shared_data):
    load = LoadECG()
    cinc = load(shared_data / "ecg/cinc2021/E07500.hea")
    assert cinc.shape == (12, 5000) and cinc.dtype == torch.float32 and ecg_sampling_rate(cinc) == 500.0
    via_signal_file = load(shared_data / "ecg/cinc2021/E07500.mat")  # the WFDB .mat signal, header beside it
    torch.testing.assert_close(via_signal_file, cinc, rtol=0, atol=0)
    assert via_signal_file.meta["dx_codes"] == cinc.meta["dx_codes"]
    cpsc = load(sorted((shared_data / "ecg/cpsc2018").glob("*.mat"))[0])
    assert cpsc.meta["lead_names"] == list(STANDARD_LEADS) and ecg_sampling_rate(cpsc) == 500.0
    assert load.select_reader(sorted((shared_data / "ecg/cpsc2018").glob("*.mat"))[0]).__class__ is CPSCMatReader
    dicom = load(get_testdata_file("waveform_ecg.dcm"))
    assert dicom.shape == (12, 10000) and ecg_sampling_rate(dicom) == 1000.0
    ptb = load(shared_data / "ecg/ptb_s0010_re/s0010_re.hea")
    assert ptb.shape == (15, 38400) and ecg_sampling_rate(ptb) == 1000.0


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ECG file .*missing\.dcm does not exist"):
        LoadECG()(tmp_path / "missing.dcm")
    with pytest.raises(ValueError, match=r"CT_small\.dcm: not an ECG file"):
        LoadECG()(get_testdata_file("CT_small.dcm"))
    (tmp_path / "broken.hea").write_text("this is not a WFDB header\n")
    with pytest.raises(ValueError, match=r"broken\.hea cannot be parsed"):
        LoadECG()(tmp_path / "broken.hea")
    with pytest.raises(ValueError, match=r"cpsc\.mat: not an ECG file that \['WFDBReader'\]"):
        (tmp_path / "cpsc.mat").write_bytes(b"")
        LoadECG([WFDBReader()])(tmp_path / "cpsc.mat")


def test_dictionary_chain_gives_median_beats(shared_data):
    chain = Compose([LoadECGd("ecg"), StandardiseLeadsd("ecg"), ResampleECGd("ecg", 500), MedianBeatd("ecg")])
    out = chain({"ecg": shared_data / "ecg/ptb_s0010_re/s0010_re.hea", "label": 1})
    beat = out["ecg"]
    assert isinstance(beat, MetaTensor) and beat.shape == (12, 576) and ecg_sampling_rate(beat) == 500.0
    assert beat.meta["n_beats"] >= 5 and out["label"] == 1
    assert np.argmax(np.abs(beat[1].numpy())) == pytest.approx(beat.meta["r_peak_index"], abs=30)
