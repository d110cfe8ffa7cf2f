"""ECG readers for MONAI's ``LoadImage``: WFDB, DICOM 12-lead waveform, the CPSC 2018 MATLAB struct, HL7 aECG.

Each reader is a MONAI :class:`~monai.data.ImageReader`, so ``LoadImage(reader=WFDBReader())`` and
``LoadImaged(keys="ecg", reader=...)`` return the ECG contract of :mod:`monai_gen.data.ecg_meta`:
a channel-first ``(leads, samples)`` float32 MetaTensor in mV, the rate in ``affine[0, 0] = 1 / fs``, and
``lead_names`` / ``units`` / ``record_id`` / ``age`` / ``sex`` / ``dx_codes`` in the meta when known.
``verify_suffix`` claims only files a reader can decode (the DICOM reader checks the SOP class, so CT / MR
DICOM files are left to MONAI's image readers).

Errors name the file and the problem, and reach the caller of ``LoadImage(reader=WFDBReader())`` unchanged:
for a file a reader recognises (``verify_suffix``) or that does not exist, ``read`` defers its error to
``get_data`` (see :mod:`monai_gen.data.deferred_errors`), because ``LoadImage`` swallows exceptions from a
designated reader's ``read`` and retries its default readers. :class:`monai_gen.transforms.ecg.LoadECG` also picks
the reader by content first and names every format when none recognises the file.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import scipy.io
import wfdb
from monai.data import ImageReader, MetaTensor
from monai.utils import ensure_tuple

from monai_gen.data.deferred_errors import UnreadableFile, raise_deferred, read_or_defer
from monai_gen.data.ecg_meta import STANDARD_LEADS, make_ecg

__all__ = ["canonical_lead_name", "WFDBReader", "DICOMECGReader", "CPSCMatReader", "HL7aECGReader"]

_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "μv": 1e-3, "µv": 1e-3, "v": 1e3, "nv": 1e-6}
_CANONICAL = {name.lower(): name for name in STANDARD_LEADS}
_ECG_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.9.1.1",  # 12-lead ECG Waveform Storage
    "1.2.840.10008.5.1.4.1.1.9.1.2",  # General ECG Waveform Storage
    "1.2.840.10008.5.1.4.1.1.9.1.3",  # Ambulatory ECG Waveform Storage
}


def canonical_lead_name(name: str) -> str:
    """Standard spelling of a lead name: ``"avr"`` -> ``"aVR"``, ``"Lead I (Einthoven)"`` -> ``"I"``."""
    stripped = re.sub(r"\(.*?\)", "", str(name)).strip()
    stripped = re.sub(r"^lead\s+", "", stripped, flags=re.IGNORECASE).strip()
    return _CANONICAL.get(stripped.lower(), stripped)


def _to_mv(unit: str, where: str) -> float:
    factor = _UNIT_TO_MV.get(str(unit).strip().lower())
    if factor is None:
        raise ValueError(f"{where}: unsupported signal unit {unit!r}; expected one of mV, uV, V.")
    return factor


class _ECGReader(ImageReader):
    """Shared ``read`` / ``get_data`` plumbing: ``_load(path) -> MetaTensor`` is the only per-format part."""

    suffixes: tuple[str, ...] = ()

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        return all(str(f).lower().endswith(self.suffixes) for f in ensure_tuple(filename))

    def read(
        self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any
    ) -> list[MetaTensor | UnreadableFile]:
        """One ECG MetaTensor per file.

        A file this reader recognises (``verify_suffix``), or one that does not exist, gives an
        :class:`~monai_gen.data.deferred_errors.UnreadableFile` when it cannot be loaded, and ``get_data`` raises
        its error: ``LoadImage`` would swallow it here. Any other file raises here, so ``LoadImage`` tries its
        other readers.
        """
        records = []
        for name in ensure_tuple(data):
            path = Path(name)
            if path.exists() and not self.verify_suffix(path):
                records.append(self._load_file(path))  # not this reader's format: raise now
            else:
                records.append(read_or_defer(lambda p=path: self._load_file(p), path))
        return records

    def get_data(self, img: MetaTensor | UnreadableFile | list[MetaTensor | UnreadableFile]) -> tuple[np.ndarray, dict]:
        """Array ``(leads, samples)`` (records of equal shape concatenated along leads) and the first's meta.

        Raises:
            the error of a file ``read`` could not load (names the file and the problem).
        """
        raise_deferred(img)
        records = ensure_tuple(img)
        shapes = {tuple(r.shape[1:]) for r in records}
        if len(shapes) != 1:
            raise ValueError(f"cannot stack ECG records of different lengths {sorted(shapes)}.")
        meta = dict(records[0].meta)
        meta["affine"] = records[0].affine.clone()
        meta["spatial_shape"] = np.asarray(records[0].shape[1:])
        meta["original_channel_dim"] = 0
        if len(records) > 1:
            meta["lead_names"] = [n for r in records for n in r.meta["lead_names"]]
        return np.concatenate([r.numpy() for r in records], axis=0), meta

    def _load_file(self, path: Path) -> MetaTensor:
        if not path.is_file():
            raise FileNotFoundError(f"ECG file {path} {'is a folder' if path.is_dir() else 'does not exist'}.")
        return self._load(path)

    def _load(self, path: Path) -> MetaTensor:
        raise NotImplementedError


class WFDBReader(_ECGReader):
    """WFDB records (``.hea`` header with ``.dat`` / ``.mat`` signal files), read with ``wfdb.rdrecord``.

    Header comments ``Age:``, ``Sex:`` and ``Dx:`` (PhysioNet/CinC 2020-2021 convention, case-insensitive;
    LUDB's ``<age>:`` / ``<sex>:`` too) become ``age``, ``sex`` and ``dx_codes``; LUDB's diagnosis statements
    ``diagnoses``. Lead names are given their standard spelling (``avr`` -> ``aVR``).
    Pass the ``.hea`` file; a ``.dat`` / ``.mat`` signal file with its ``.hea`` beside it is read as its record.
    """

    suffixes = (".hea",)

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        """True for ``.hea`` headers and for ``.dat`` / ``.mat`` signal files whose header sits beside them."""
        return all(
            str(f).lower().endswith(".hea")
            or (str(f).lower().endswith((".dat", ".mat")) and Path(f).with_suffix(".hea").is_file())
            for f in ensure_tuple(filename)
        )

    def _load(self, path: Path) -> MetaTensor:
        record_path = str(path.with_suffix(""))
        try:
            header = wfdb.rdheader(record_path)
        except Exception as err:  # wfdb raises bare ValueError / IndexError on a malformed header
            raise ValueError(f"WFDB header {path} cannot be parsed: {err}") from err
        for signal_file in sorted(set(header.file_name or [])):
            if not (path.parent / signal_file).is_file():
                raise FileNotFoundError(f"WFDB record {path}: signal file {path.parent / signal_file} is missing.")
        try:
            record = wfdb.rdrecord(record_path, physical=True)
        except (ValueError, OSError, IndexError) as err:
            raise ValueError(
                f"WFDB record {path}: its signal file is truncated or corrupt ({err}); the header promises "
                f"{header.sig_len} samples x {header.n_sig} leads."
            ) from err
        signal = record.p_signal.T * np.array([[_to_mv(u, str(path))] for u in record.units])
        fields = _header_fields(record.comments or [])
        return make_ecg(
            signal, float(record.fs), [canonical_lead_name(n) for n in record.sig_name],
            record_id=record.record_name, header=fields, source=str(path),
        )


def _header_fields(comments: Sequence[str]) -> dict[str, Any]:
    """``age`` / ``sex`` / ``dx_codes`` / ``diagnoses`` from WFDB header comments such as ``Age: 78``
    (PhysioNet/CinC) or ``<age>: 51`` (LUDB writes its keys in angle brackets); keys are case-insensitive.

    LUDB lists its diagnosis statements after a ``<diagnoses>:`` line, one per comment (``Rhythm: Sinus rhythm.``,
    ``Left ventricular hypertrophy.``); they are kept verbatim as ``diagnoses``.
    """
    fields: dict[str, Any] = {}
    statements: list[str] | None = None
    for line in comments:
        key, sep, value = line.partition(":")
        key, value = key.strip().strip("<>").strip().lower(), value.strip()
        if statements is not None:
            statements.append(line.strip())
            continue
        if key == "diagnoses" and sep:
            statements = [value] if value else []
            continue
        if not sep or not value:
            continue
        if key == "age":
            try:
                fields["age"] = float(value)
            except ValueError:
                pass  # "Unknown" / "NaN": age stays unknown
        elif key == "sex":
            fields["sex"] = value
        elif key == "dx":
            fields["dx_codes"] = [c.strip() for c in value.split(",") if c.strip()]
    if statements:
        fields["diagnoses"] = [s for s in statements if s]
    return fields


class DICOMECGReader(_ECGReader):
    """DICOM waveform ECGs (12-lead, general and ambulatory ECG SOP classes), read with pydicom.

    The multiplex group labelled ``RHYTHM`` (or the first group) is read and converted to mV with each
    channel's sensitivity, correction factor and baseline (pydicom's ``waveform_array``) and unit.

    Args:
        group: index of the multiplex group to read; ``None`` picks the rhythm group.
    """

    suffixes = (".dcm", ".dicom")

    def __init__(self, group: int | None = None) -> None:
        super().__init__()
        self.group = group

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        """True only for DICOM files whose SOP class is an ECG waveform (CT / MR files are not claimed)."""
        if not super().verify_suffix(filename):
            return False
        try:
            return all(
                str(pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SOPClassUID"]).get("SOPClassUID", ""))
                in _ECG_SOP_CLASSES
                for f in ensure_tuple(filename)
            )
        except (OSError, pydicom.errors.InvalidDicomError):
            return False

    def _load(self, path: Path) -> MetaTensor:
        try:
            ds = pydicom.dcmread(path)
        except (pydicom.errors.InvalidDicomError, OSError, ValueError) as err:
            raise ValueError(f"DICOM ECG {path} cannot be read: {err}") from err
        if "WaveformSequence" not in ds:
            raise ValueError(f"DICOM file {path} holds no waveform data (no WaveformSequence, SOP class {ds.get('SOPClassUID', '?')}).")
        index = self._group_index(ds)
        group = ds.WaveformSequence[index]
        try:
            samples = ds.waveform_array(index)  # (samples, channels) in each channel's sensitivity unit
        except (ValueError, AttributeError, KeyError) as err:
            raise ValueError(f"DICOM ECG {path}: waveform group {index} cannot be decoded: {err}") from err
        channels = group.ChannelDefinitionSequence
        names = [canonical_lead_name(ch.ChannelSourceSequence[0].CodeMeaning) for ch in channels]
        units = [_channel_unit(ch) for ch in channels]
        signal = samples.T * np.array([[_to_mv(u, f"{path} channel {n}")] for u, n in zip(units, names, strict=True)])
        header = {"age": _dicom_age(ds.get("PatientAge")), "sex": ds.get("PatientSex")}
        return make_ecg(
            signal, float(group.SamplingFrequency), names,
            record_id=str(ds.get("SOPInstanceUID", path.stem)), header=header, source=str(path),
        )

    def _group_index(self, ds: pydicom.Dataset) -> int:
        groups = ds.WaveformSequence
        if self.group is not None:
            if not 0 <= self.group < len(groups):
                raise ValueError(f"waveform group {self.group} requested but the file has {len(groups)} groups.")
            return self.group
        labels = [str(g.get("MultiplexGroupLabel", "")).upper() for g in groups]
        return labels.index("RHYTHM") if "RHYTHM" in labels else 0


def _channel_unit(channel: pydicom.Dataset) -> str:
    units = channel.get("ChannelSensitivityUnitsSequence")
    return str(units[0].CodeValue) if units else "uV"  # PS3.3: ECG sensitivity is in uV unless coded otherwise


def _dicom_age(age: Any) -> float | None:
    """DICOM Age String (e.g. ``"072Y"``, ``"006M"``) in years."""
    match = re.fullmatch(r"(\d{1,3})([DWMY])", str(age or "").strip())
    if not match:
        return None
    return int(match.group(1)) / {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0}[match.group(2)]


class CPSCMatReader(_ECGReader):
    """The China Physiological Signal Challenge 2018 MATLAB format: a struct ``ECG`` with ``sex``, ``age`` and
    ``data`` (12 x samples, mV). The file has no rate or lead names: the rate is ``fs`` (500 Hz in CPSC 2018)
    and the standard lead order I, II, III, aVR, aVL, aVF, V1-V6 is assumed, as the challenge documents.

    ``verify_suffix`` claims a ``.mat`` file only when it holds that struct and no WFDB header sits beside it
    (PhysioNet/CinC ``.mat`` signals belong to :class:`WFDBReader`).
    """

    suffixes = (".mat",)

    def __init__(self, fs: float = 500.0) -> None:
        super().__init__()
        self.fs = float(fs)

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        if not super().verify_suffix(filename):
            return False
        return all(not Path(f).with_suffix(".hea").exists() and _has_ecg_struct(Path(f)) for f in ensure_tuple(filename))

    def _load(self, path: Path) -> MetaTensor:
        try:
            ecg = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)["ECG"]
            signal = np.asarray(ecg.data, dtype=np.float64)
        except (ValueError, OSError, KeyError, AttributeError, TypeError) as err:
            raise ValueError(f"CPSC MATLAB ECG {path} cannot be read (expected a struct ECG with field data): {err}") from err
        if signal.ndim != 2 or signal.shape[0] != len(STANDARD_LEADS):
            raise ValueError(f"CPSC MATLAB ECG {path}: data must be 12 x samples, got shape {signal.shape}.")
        header = {"age": _number_or_none(getattr(ecg, "age", None)), "sex": getattr(ecg, "sex", None)}
        return make_ecg(signal, self.fs, STANDARD_LEADS, record_id=path.stem, header=header, source=str(path))


def _has_ecg_struct(path: Path) -> bool:
    try:
        return "ECG" in {name for name, _, _ in scipy.io.whosmat(path)}
    except (ValueError, OSError, TypeError):
        return False


def _number_or_none(value: Any) -> float | None:
    try:
        number = float(np.asarray(value).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        return None
    return number if np.isfinite(number) else None


_HL7 = "{urn:hl7-org:v3}"
_TIME_UNIT_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


class HL7aECGReader(_ECGReader):
    """HL7 v3 annotated ECG (aECG, FDA XML) rhythm waveforms, parsed with the standard library.

    The first ``series`` is read: its time sequence (``TIME_ABSOLUTE`` / ``TIME_RELATIVE``, a ``GLIST``
    whose ``increment`` gives ``1 / fs``) and one ``SLIST_PQ`` sequence per lead (``MDC_ECG_LEAD_*`` codes),
    each sample ``origin + scale * digit`` in the ``scale`` unit, converted to mV. ``administrativeGenderCode``
    gives the sex. ``verify_suffix`` claims ``.xml`` files whose root element is ``AnnotatedECG``.
    """

    suffixes = (".xml",)

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        if not super().verify_suffix(filename):
            return False
        try:
            return all(next(ElementTree.iterparse(f, events=("start",)))[1].tag == f"{_HL7}AnnotatedECG"
                       for f in ensure_tuple(filename))
        except (OSError, ElementTree.ParseError, StopIteration):
            return False

    def _load(self, path: Path) -> MetaTensor:
        try:
            root = ElementTree.parse(path).getroot()
        except ElementTree.ParseError as err:
            raise ValueError(f"HL7 aECG {path} is not well-formed XML: {err}") from err
        series = root.find(f"{_HL7}component/{_HL7}series")
        if root.tag != f"{_HL7}AnnotatedECG" or series is None:
            raise ValueError(f"HL7 aECG {path}: no AnnotatedECG/component/series element (root {root.tag}).")
        fs, names, leads = None, [], []
        for seq in series.findall(f"{_HL7}component/{_HL7}sequenceSet/{_HL7}component/{_HL7}sequence"):
            code = getattr(seq.find(f"{_HL7}code"), "attrib", {}).get("code", "")
            if code.startswith("TIME_") and fs is None:
                fs = _aecg_rate(seq, path)
            elif code.startswith("MDC_ECG_LEAD_"):
                names.append(canonical_lead_name(code[len("MDC_ECG_LEAD_"):]))
                leads.append(_aecg_lead(seq, path, names[-1]))
        if fs is None or not leads:
            raise ValueError(f"HL7 aECG {path}: the first series needs a TIME_* sequence and MDC_ECG_LEAD_* sequences.")
        if len({lead.size for lead in leads}) != 1:
            raise ValueError(f"HL7 aECG {path}: leads {names} have different lengths {[lead.size for lead in leads]}.")
        sex = root.find(f".//{_HL7}administrativeGenderCode")
        header = {"sex": sex.get("code") if sex is not None else None}
        record_id = root.find(f"{_HL7}id")
        return make_ecg(np.stack(leads), fs, names, header=header, source=str(path),
                        record_id=record_id.get("root", path.stem) if record_id is not None else path.stem)


def _aecg_rate(sequence: ElementTree.Element, path: Path) -> float:
    increment = sequence.find(f"{_HL7}value/{_HL7}increment")
    try:
        step = float(increment.get("value")) * _TIME_UNIT_S[increment.get("unit", "s")]
    except (AttributeError, TypeError, ValueError, KeyError) as err:
        raise ValueError(f"HL7 aECG {path}: time sequence increment missing or not in s / ms / us.") from err
    if not step > 0:
        raise ValueError(f"HL7 aECG {path}: time increment must be positive, got {step} s.")
    return 1.0 / step


def _aecg_lead(sequence: ElementTree.Element, path: Path, name: str) -> np.ndarray:
    where = f"HL7 aECG {path} lead {name}"
    origin, scale, digits = (sequence.find(f"{_HL7}value/{_HL7}{tag}") for tag in ("origin", "scale", "digits"))
    if origin is None or scale is None or digits is None or not (digits.text or "").strip():
        raise ValueError(f"{where}: an SLIST_PQ value needs origin, scale and digits.")
    scale_mv, origin_mv = (_to_mv(e.get("unit", "uV"), where) for e in (scale, origin))
    try:
        samples = np.array(digits.text.split(), dtype=np.float64)
        return float(origin.get("value", 0)) * origin_mv + float(scale.get("value")) * scale_mv * samples
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: digits, origin or scale are not numbers ({err}).") from err
