"""Load a DICOM series folder (or one single / multi-frame / compressed DICOM file) as one volume.

:class:`DICOMSeriesReader` is a MONAI :class:`~monai.data.ImageReader`; use it through :class:`LoadDICOMSeries`
/ :class:`LoadDICOMSeriesd` (``LoadImage(d)`` with it as the runtime reader and channel-first output) or as
``LoadImage(reader=DICOMSeriesReader())``::

    volume = LoadDICOMSeries()(series_folder)  # MetaTensor (1, x, y, z)

Either way a validation error reaches the caller unchanged: when a designated reader's ``read`` raises, MONAI's
``LoadImage`` falls back to its other readers (ITK, pydicom), which would load a series with a missing slice or
one of several series without complaint, so ``read`` defers the error of a folder / DICOM file to ``get_data``
(see :mod:`monai_gen.data.deferred_errors`).

It first checks the headers with pydicom (what MONAI's readers do not: one series per folder, consistent
orientation and slice spacing, geometry tags present, a decoder for the transfer syntax, no truncated pixel
data) and raises an error naming the file, tag or series; then it hands the validated, position-sorted file
list to MONAI's :class:`~monai.data.ITKReader` (GDCM), so array, spacing, origin and direction are exactly
those of ``SimpleITK.ImageSeriesReader``. The affine is converted to RAS as MONAI's readers do
(``affine_lps_to_ras=True``); pass ``False`` to keep DICOM's LPS.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import itk
import numpy as np
import pydicom
from monai.config import DtypeLike, KeysCollection
from monai.data import ImageReader, ITKReader
from monai.transforms import LoadImage, MapTransform, Transform
from monai.utils import ensure_tuple
from pydicom.pixels import get_decoder

from monai_gen.data.deferred_errors import UnreadableFile, raise_deferred, read_or_defer

__all__ = ["DICOMSeriesReader", "LoadDICOMSeries", "LoadDICOMSeriesd", "dicom_series_files"]

_GEOMETRY_TAGS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
_ORIENTATION_ATOL = 1e-4  # direction cosines
_SPACING_RTOL = 0.01  # allowed deviation of a slice gap from the median gap


def dicom_series_files(path: str | os.PathLike, *, series_uid: str | None = None) -> list[Path]:
    """Validate a DICOM series folder (or file) and return its files sorted along the slice normal.

    Args:
        path: a folder holding one DICOM series (non-DICOM files are ignored), or one DICOM file.
        series_uid: the SeriesInstanceUID to pick when the folder holds several series.

    Returns:
        The files of the series, ordered by position along the slice normal (ascending, as GDCM sorts).

    Raises:
        FileNotFoundError: ``path`` does not exist or the folder holds no DICOM file.
        ValueError: several series and no ``series_uid`` (all are listed), unknown ``series_uid``, unreadable or
            truncated file, transfer syntax without an installed decoder, missing geometry tag, mixed
            orientation or image size, duplicate slice positions or inconsistent slice spacing (a missing slice).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"DICOM path {path} does not exist.")
    files = sorted(f for f in path.iterdir() if f.is_file() and pydicom.misc.is_dicom(f)) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"DICOM folder {path} holds no DICOM file.")
    headers = {f: _read_checked(f) for f in files}
    chosen = _pick_series(headers, path, series_uid)
    if len(chosen) == 1:
        return chosen
    return _sort_and_check_spacing({f: headers[f] for f in chosen}, path)


def _read_checked(path: Path) -> pydicom.Dataset:
    """Read one file (pixel bytes kept undecoded) and check its transfer syntax and pixel-data length."""
    try:
        ds = pydicom.dcmread(path)
    except Exception as err:  # pydicom raises many types on a corrupt file
        raise ValueError(f"DICOM file {path} is corrupt or not DICOM: {err}") from err
    if "PixelData" not in ds:
        raise ValueError(f"DICOM file {path} holds no image (no PixelData; SOP class {ds.get('SOPClassUID', '?')}).")
    syntax = ds.file_meta.get("TransferSyntaxUID", pydicom.uid.ImplicitVRLittleEndian)
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as err:
        raise ValueError(f"DICOM file {path}: transfer syntax {syntax} ({syntax.name}) is not supported.") from err
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies)
        raise ValueError(f"DICOM file {path}: no decoder installed for transfer syntax {syntax.name} ({missing}).")
    if not syntax.is_compressed:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * frames * int(ds.BitsAllocated)
        if len(ds.PixelData) * 8 < expected:
            raise ValueError(
                f"DICOM file {path} is truncated: {len(ds.PixelData)} bytes of pixel data, {expected // 8} expected."
            )
    return ds


def _pick_series(headers: dict[Path, pydicom.Dataset], path: Path, series_uid: str | None) -> list[Path]:
    groups: dict[str, list[Path]] = defaultdict(list)
    for f, ds in headers.items():
        groups[str(ds.get("SeriesInstanceUID", ""))].append(f)
    if series_uid is not None:
        if series_uid not in groups:
            raise ValueError(f"DICOM folder {path} has no series {series_uid!r}; it holds {sorted(groups)}.")
        return groups[series_uid]
    if len(groups) > 1:
        listing = "; ".join(
            f"{uid} ({len(fs)} files, {headers[fs[0]].get('SeriesDescription', '')!r})" for uid, fs in groups.items()
        )
        raise ValueError(f"DICOM folder {path} holds {len(groups)} series: {listing}. Pick one with series_uid.")
    return next(iter(groups.values()))


def _sort_and_check_spacing(headers: dict[Path, pydicom.Dataset], path: Path) -> list[Path]:
    for f, ds in headers.items():
        for tag in _GEOMETRY_TAGS:
            if tag not in ds:
                raise ValueError(f"DICOM file {f} has no {tag} tag; a series needs it to place the slice.")
    first, first_ds = next(iter(headers.items()))
    orientation = np.asarray(first_ds.ImageOrientationPatient, dtype=float)
    size = (first_ds.Rows, first_ds.Columns)
    for f, ds in headers.items():
        if not np.allclose(np.asarray(ds.ImageOrientationPatient, dtype=float), orientation, atol=_ORIENTATION_ATOL):
            raise ValueError(
                f"DICOM series {path} mixes orientations: {f} has {list(ds.ImageOrientationPatient)}, "
                f"{first} has {list(orientation)}."
            )
        if (ds.Rows, ds.Columns) != size:
            raise ValueError(f"DICOM series {path} mixes image sizes: {f} is {(ds.Rows, ds.Columns)}, {first} {size}.")
    normal = np.cross(orientation[:3], orientation[3:])
    position = {f: float(np.dot(normal, np.asarray(ds.ImagePositionPatient, dtype=float))) for f, ds in headers.items()}
    ordered = sorted(headers, key=position.__getitem__)
    gaps = np.diff([position[f] for f in ordered])
    median = float(np.median(gaps))
    bad = np.flatnonzero(np.abs(gaps - median) > _SPACING_RTOL * median + 1e-3)
    if median <= 1e-6:
        times = {int(getattr(ds, "TemporalPositionIdentifier", 0) or 0) for ds in headers.values()}
        what = (f"a cine ({len(times)} temporal positions of one slice): read it as (x, y, t), e.g. with MONAI's "
                "LoadImage(reader='PydicomReader')" if len(times) > 1 else "several series with the same UID?")
        raise ValueError(
            f"DICOM series {path} is not a stack of slices: its {len(ordered)} images share slice positions ({what})."
        )
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"DICOM series {path} has inconsistent slice spacing: {gaps[i]:.4g} mm between {ordered[i].name} and "
            f"{ordered[i + 1].name}, but {median:.4g} mm elsewhere (a missing or duplicate slice?)."
        )
    return ordered


class DICOMSeriesReader(ImageReader):
    """MONAI reader for a DICOM series folder, or one (multi-frame, compressed) DICOM file, as one volume.

    Validates with :func:`dicom_series_files`, then reads the sorted files with ITK (GDCM) through MONAI's
    :class:`~monai.data.ITKReader`, whose ``get_data`` builds the array ``(x, y, z)`` (``(x, y, frames)`` for a
    multi-frame file) and the affine.

    Args:
        series_uid: SeriesInstanceUID to load when a folder holds several series.
        affine_lps_to_ras: convert the affine from DICOM's LPS to RAS (MONAI's default); ``False`` keeps LPS.
        series_meta: keep the first slice's DICOM tags in the meta (ITKReader's ``series_meta``).

    Examples:
        >>> load = LoadImage(image_only=True, ensure_channel_first=True)
        >>> volume = load("tcia_vs_seg_001_t1c", reader=DICOMSeriesReader())  # (1, 512, 512, 120), RAS mm

    See:
        DICOM PS3.3 C.7.6.2 (Image Plane module: position, orientation, spacing).
    """

    def __init__(self, series_uid: str | None = None, *, affine_lps_to_ras: bool = True, series_meta: bool = False):
        super().__init__()
        self.series_uid = series_uid
        self._itk_reader = ITKReader(affine_lps_to_ras=affine_lps_to_ras, series_meta=series_meta)

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        """True for folders and for DICOM files (by content, not suffix)."""
        return all(Path(f).is_dir() or (Path(f).is_file() and pydicom.misc.is_dicom(f)) for f in ensure_tuple(filename))

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any) -> Any:
        """Validate each folder / file and read it with ITK; a list gives a list (stacked as channels).

        A folder, DICOM file or missing path that fails validation gives an
        :class:`~monai_gen.data.deferred_errors.UnreadableFile` that ``get_data`` raises (``LoadImage`` would
        swallow the error here and load the series with another reader). Other files raise here.
        """
        images = []
        for name in ensure_tuple(data):
            if Path(name).exists() and not self.verify_suffix(name):
                raise ValueError(f"{name} is neither a folder nor a DICOM file.")  # LoadImage tries its other readers
            images.append(read_or_defer(lambda n=name: self._read_one(n, **kwargs), name))
        return images if len(images) > 1 else images[0]

    def _read_one(self, name: str | os.PathLike, **kwargs: Any) -> Any:
        files = [str(f) for f in dicom_series_files(name, series_uid=self.series_uid)]
        try:
            return itk.imread(files if len(files) > 1 else files[0], **kwargs)
        except RuntimeError as err:
            raise ValueError(f"DICOM {name}: ITK/GDCM cannot decode the image data: {err}") from err

    def get_data(self, img: Any | UnreadableFile) -> tuple[np.ndarray, dict]:
        """Array and meta (``affine``, ``spacing``, ``spatial_shape``...) as MONAI's ``ITKReader`` builds them.

        Raises:
            the validation error of a folder / file ``read`` could not load (names the file, tag or series).
        """
        raise_deferred(img)
        return self._itk_reader.get_data(img)


class LoadDICOMSeries(Transform):
    """Load a DICOM series folder or file as a channel-first MetaTensor ``(1, x, y, z)``, validated first.

    ``LoadImage`` with :class:`DICOMSeriesReader` as its runtime reader and ``ensure_channel_first``; validation
    errors are raised as they are.

    Args:
        series_uid: SeriesInstanceUID to load when a folder holds several series.
        affine_lps_to_ras: RAS affine (MONAI's default) or DICOM's LPS.
        dtype: output data type (stored values with RescaleSlope / Intercept applied by GDCM).
        image_only: return only the MetaTensor (else ``(image, meta)`` as ``LoadImage``).

    Examples:
        >>> volume = LoadDICOMSeries()("tcia_vs_seg_001_t1c")  # (1, 512, 512, 120), affine in RAS mm
    """

    def __init__(
        self,
        series_uid: str | None = None,
        *,
        affine_lps_to_ras: bool = True,
        dtype: DtypeLike = np.float32,
        image_only: bool = True,
    ) -> None:
        self.reader = DICOMSeriesReader(series_uid, affine_lps_to_ras=affine_lps_to_ras)
        self._load = LoadImage(image_only=image_only, dtype=dtype, ensure_channel_first=True)

    def __call__(self, path: str | os.PathLike) -> Any:
        return self._load(path, reader=self.reader)


class LoadDICOMSeriesd(MapTransform):
    """Dictionary version of :class:`LoadDICOMSeries`: replaces each key's path by its volume.

    Args:
        keys: keys holding DICOM folders / files.
        series_uid, affine_lps_to_ras, dtype: as :class:`LoadDICOMSeries`.
        allow_missing_keys: skip absent keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        series_uid: str | None = None,
        *,
        affine_lps_to_ras: bool = True,
        dtype: DtypeLike = np.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadDICOMSeries(series_uid, affine_lps_to_ras=affine_lps_to_ras, dtype=dtype)

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key])
        return d
