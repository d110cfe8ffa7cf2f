"""Dictionary versions of the ECG transforms in :mod:`monai_gen.transforms.ecg.array`: each loops over ``keys``.

Examples:
    >>> from monai.transforms import Compose, LoadImaged
    >>> from monai_gen.data.ecg_readers import WFDBReader
    >>> chain = Compose([LoadImaged(keys="ecg", reader=WFDBReader()), StandardiseLeadsd("ecg"),
    ...                  ResampleECGd("ecg", target_fs=500), MedianBeatd("ecg"), MeasureECGd("ecg")])
    >>> out = chain({"ecg": "E07500.hea"})  # out["ecg"]: (12, 576); out["ecg_measurements"]: dict
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import ImageReader
from monai.transforms.inverse import InvertibleTransform
from monai.transforms.transform import MapTransform

from monai_gen.transforms.ecg.array import (
    BandPassECG,
    DeriveLimbLeads,
    FixedLengthECG,
    LoadECG,
    MeasureECG,
    MedianBeat,
    NormaliseAmplitude,
    RemoveBaselineWander,
    ResampleECG,
    StandardiseLeads,
)

__all__ = [
    "LoadECGd",
    "StandardiseLeadsd",
    "DeriveLimbLeadsd",
    "ResampleECGd",
    "RemoveBaselineWanderd",
    "BandPassECGd",
    "FixedLengthECGd",
    "MedianBeatd",
    "NormaliseAmplituded",
    "MeasureECGd",
]


class _ApplyToKeys(MapTransform):
    """Apply ``self.transform`` (an array transform) to every key."""

    transform: (
        LoadECG | StandardiseLeads | DeriveLimbLeads | ResampleECG | BandPassECG | FixedLengthECG | MedianBeat
        | NormaliseAmplitude
    )

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d


class _InvertibleApplyToKeys(_ApplyToKeys, InvertibleTransform):
    """Apply an invertible array transform to every key; ``inverse`` undoes it key by key."""

    transform: FixedLengthECG | NormaliseAmplitude

    def inverse(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform.inverse(d[key])
        return d


class LoadECGd(_ApplyToKeys):
    """Dictionary :class:`~monai_gen.transforms.ecg.array.LoadECG`: each key's file name becomes its ECG MetaTensor."""

    def __init__(self, keys: KeysCollection, readers: Sequence[ImageReader] | None = None, *,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = LoadECG(readers)


class StandardiseLeadsd(_ApplyToKeys):
    """Dictionary :class:`~monai_gen.transforms.ecg.array.StandardiseLeads`."""

    backend = StandardiseLeads.backend

    def __init__(self, keys: KeysCollection, lead_names: Sequence[str] | None = None, *,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = StandardiseLeads(lead_names)


class DeriveLimbLeadsd(_ApplyToKeys):
    """Dictionary :class:`~monai_gen.transforms.ecg.array.DeriveLimbLeads`."""

    backend = DeriveLimbLeads.backend

    def __init__(self, keys: KeysCollection, *, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = DeriveLimbLeads()


class ResampleECGd(_ApplyToKeys):
    """Dictionary :class:`~monai_gen.transforms.ecg.array.ResampleECG`."""

    backend = ResampleECG.backend

    def __init__(self, keys: KeysCollection, target_fs: float, *, fs: float | None = None,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = ResampleECG(target_fs, fs=fs)


class BandPassECGd(_ApplyToKeys):
    """Dictionary :class:`~monai_gen.transforms.ecg.array.BandPassECG`."""

    backend = BandPassECG.backend

    def __init__(self, keys: KeysCollection, low_hz: float | None = 0.5, high_hz: float | None = 40.0, *,
                 order: int = 2, fs: float | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = BandPassECG(low_hz, high_hz, order=order, fs=fs)


class RemoveBaselineWanderd(_ApplyToKeys):
    """Dictionary :class:`~monai_gen.transforms.ecg.array.RemoveBaselineWander`."""

    backend = RemoveBaselineWander.backend

    def __init__(self, keys: KeysCollection, cutoff_hz: float = 0.5, *, order: int = 2, fs: float | None = None,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = RemoveBaselineWander(cutoff_hz, order=order, fs=fs)


class FixedLengthECGd(_InvertibleApplyToKeys):
    """Dictionary :class:`~monai_gen.transforms.ecg.array.FixedLengthECG`; ``inverse`` / ``Invertd`` undo it."""

    backend = FixedLengthECG.backend

    def __init__(self, keys: KeysCollection, n_samples: int, *, align: str = "center", pad_mode: str = "constant",
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = FixedLengthECG(n_samples, align=align, pad_mode=pad_mode)


class MedianBeatd(_ApplyToKeys):
    """Dictionary :class:`~monai_gen.transforms.ecg.array.MedianBeat`."""

    backend = MedianBeat.backend

    def __init__(self, keys: KeysCollection, *, n_samples: int | None = None, r_index: int | None = None,
                 min_beats: int = 3, fs: float | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = MedianBeat(n_samples=n_samples, r_index=r_index, min_beats=min_beats, fs=fs)


class NormaliseAmplituded(_InvertibleApplyToKeys):
    """Dictionary :class:`~monai_gen.transforms.ecg.array.NormaliseAmplitude`; ``inverse`` / ``Invertd`` give mV."""

    backend = NormaliseAmplitude.backend

    def __init__(self, keys: KeysCollection, method: str = "max_abs", *, scale: float | None = None,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = NormaliseAmplitude(method, scale=scale)


class MeasureECGd(MapTransform):
    """Dictionary :class:`~monai_gen.transforms.ecg.array.MeasureECG`: the measurements dict of each key goes to
    ``data[f"{key}_{postfix}"]`` (works for numpy / torch too), the ECG itself is left unchanged."""

    backend = MeasureECG.backend

    def __init__(self, keys: KeysCollection, *, postfix: str = "measurements", r_index: int | None = None,
                 qtc_formula: str = "bazett", fs: float | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.postfix = postfix
        self.measurer = MeasureECG(r_index=r_index, qtc_formula=qtc_formula, fs=fs)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, object]:
        d: dict[Hashable, object] = dict(data)
        for key in self.key_iterator(d):
            d[f"{key}_{self.postfix}"] = self.measurer.measure(d[key])
        return d
