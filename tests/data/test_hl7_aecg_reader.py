"""HL7 aECG reader on XML files the tests write from a real CinC 2021 record."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
import wfdb
from monai.transforms import LoadImage

from monai_gen.data.ecg_meta import STANDARD_LEADS, ecg_sampling_rate
from monai_gen.data.ecg_readers import HL7aECGReader
from monai_gen.transforms.ecg import LoadECG

V3 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"


def _sequence(parent, code, value_type):
    seq = ElementTree.SubElement(ElementTree.SubElement(parent, f"{{{V3}}}component"), f"{{{V3}}}sequence")
    ElementTree.SubElement(seq, f"{{{V3}}}code", code=code, codeSystem="2.16.840.1.113883.6.24")
    return ElementTree.SubElement(seq, f"{{{V3}}}value", {f"{{{XSI}}}type": value_type})


def _write_aecg(path, digits_uv, *, step="2", step_unit="ms", names=None, origin_uv=10.0, scale_uv=5.0):
    """An aECG with one rhythm series: ``sample_uv = origin_uv + scale_uv * digit`` per lead."""
    root = ElementTree.Element(f"{{{V3}}}AnnotatedECG")
    ElementTree.SubElement(root, f"{{{V3}}}id", root="test-aecg-1")
    person = ElementTree.SubElement(root, f"{{{V3}}}subjectDemographicPerson")
    ElementTree.SubElement(person, f"{{{V3}}}administrativeGenderCode", code="F")
    series = ElementTree.SubElement(ElementTree.SubElement(root, f"{{{V3}}}component"), f"{{{V3}}}series")
    sequence_set = ElementTree.SubElement(ElementTree.SubElement(series, f"{{{V3}}}component"), f"{{{V3}}}sequenceSet")
    time = _sequence(sequence_set, "TIME_RELATIVE", "GLIST_PQ")
    ElementTree.SubElement(time, f"{{{V3}}}head", value="0", unit="s")
    ElementTree.SubElement(time, f"{{{V3}}}increment", value=step, unit=step_unit)
    for name, lead in zip(names or STANDARD_LEADS, digits_uv, strict=True):
        value = _sequence(sequence_set, f"MDC_ECG_LEAD_{name.upper()}", "SLIST_PQ")
        ElementTree.SubElement(value, f"{{{V3}}}origin", value=str(origin_uv), unit="uV")
        ElementTree.SubElement(value, f"{{{V3}}}scale", value=str(scale_uv), unit="uV")
        ElementTree.SubElement(value, f"{{{V3}}}digits").text = " ".join(str(int(d)) for d in lead)
    ElementTree.ElementTree(root).write(path, xml_declaration=True, encoding="utf-8")
    return path


@pytest.fixture
def digits(shared_data):
    signal_mv = wfdb.rdrecord(str(shared_data / "ecg/cinc2021/E07500")).p_signal.T
    return np.round((signal_mv * 1000.0 - 10.0) / 5.0)


def test_aecg_loads_in_mv_with_rate_leads_and_sex(tmp_path, digits):
    path = _write_aecg(tmp_path / "ecg.xml", digits)
    for ecg in (LoadImage(reader=HL7aECGReader(), image_only=True)(path), LoadECG()(path)):
        assert ecg.shape == (12, 5000) and ecg_sampling_rate(ecg) == 500.0
        assert ecg.meta["lead_names"] == list(STANDARD_LEADS) and ecg.meta["units"] == "mV"
        assert ecg.meta["sex"] == "female" and ecg.meta["record_id"] == "test-aecg-1"
        np.testing.assert_allclose(ecg.numpy(), (10.0 + 5.0 * digits) / 1000.0, atol=1e-6)


def test_verify_suffix_claims_only_aecg_xml(tmp_path, digits):
    assert HL7aECGReader().verify_suffix(_write_aecg(tmp_path / "ecg.xml", digits))
    (tmp_path / "other.xml").write_text("<config><a>1</a></config>")
    assert not HL7aECGReader().verify_suffix(tmp_path / "other.xml")
    with pytest.raises(ValueError, match=r"other\.xml: not an ECG file"):
        LoadECG()(tmp_path / "other.xml")


def test_aecg_errors_name_the_file_and_the_problem(tmp_path, digits):
    """Through MONAI's own LoadImage(reader=...), which used to bury them under "cannot find a suitable reader"."""
    (tmp_path / "cut.xml").write_bytes(_write_aecg(tmp_path / "ok.xml", digits).read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"cut\.xml is not well-formed XML"):
        LoadImage(reader=HL7aECGReader())(tmp_path / "cut.xml")
    _write_aecg(tmp_path / "short.xml", [d[: 4000 if i == 3 else 5000] for i, d in enumerate(digits)])
    with pytest.raises(ValueError, match=r"short\.xml: leads .* have different lengths \[5000, 5000, 5000, 4000"):
        LoadImage(reader=HL7aECGReader())(tmp_path / "short.xml")
    _write_aecg(tmp_path / "rate.xml", digits, step="0")
    with pytest.raises(ValueError, match=r"rate\.xml: time increment must be positive, got 0.0 s"):
        LoadImage(reader=HL7aECGReader())(tmp_path / "rate.xml")
    _write_aecg(tmp_path / "unit.xml", digits, step_unit="days")
    with pytest.raises(ValueError, match=r"unit\.xml: time sequence increment missing or not in s / ms / us"):
        LoadImage(reader=HL7aECGReader())(tmp_path / "unit.xml")
    _write_aecg(tmp_path / "three.xml", np.full((3, 100), 4.0), names=["I", "II", "V1"])  # constant in every lead
    with pytest.raises(ValueError, match=r"three\.xml: every lead is flat"):
        LoadImage(reader=HL7aECGReader())(tmp_path / "three.xml")
