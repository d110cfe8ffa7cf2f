"""write_dicom_series: SimpleITK / pydicom read back the geometry and intensities; fresh UIDs; no source identifier;
a cine of real ACDC frames as one MR series with its temporal tags."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor

from monai_gen.data import dicom_writer
from monai_gen.data.dicom_series import LoadDICOMSeries
from monai_gen.data.dicom_writer import write_dicom_series
from monai_gen.transforms.image import VolumeToSlices

TCIA = "brain_mri/tcia_vs_seg_001_t1c"


def _sitk_series(folder):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _assert_same_geometry(written, ref):
    assert written.GetSize() == ref.GetSize()
    np.testing.assert_allclose(written.GetSpacing(), ref.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(written.GetOrigin(), ref.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(written.GetDirection(), ref.GetDirection(), atol=1e-6)


_IDENTIFYING = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "OtherPatientIDs",
    "StudyID",
    "AccessionNumber",
    "StudyDate",
    "InstitutionName",
    "InstitutionAddress",
    "ReferringPhysicianName",
    "StationName",
    "DeviceSerialNumber",
)


def _source_identifiers(folder):
    """Every instance UID (not the standard's class / syntax UIDs) and identifying value of the source series."""
    values = set()
    for path in sorted(folder.iterdir())[:5]:
        for elem in pydicom.dcmread(path, stop_before_pixels=True).iterall():
            text = str(elem.value).strip()
            if elem.VR == "UI" and not text.startswith("1.2.840.10008."):
                values.add(text)
            elif elem.keyword in _IDENTIFYING and len(text) > 2:
                values.add(text)
    return values


def test_tcia_round_trip_geometry_intensity_and_no_source_identifier(shared_data, tmp_path):
    source = shared_data / TCIA
    volume = LoadDICOMSeries()(source)
    out = tmp_path / "synth"
    files = write_dicom_series(volume, out, provenance={"model_id": "vae-1", "seed": 3, "conditions": {"age": 50}})
    ref, written = _sitk_series(source), _sitk_series(out)
    _assert_same_geometry(written, ref)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(ref))  # integer: exact
    sidecar = files[-1]
    assert sidecar == tmp_path / "synth.json"
    record = json.loads(sidecar.read_text())
    assert record["model_id"] == "vae-1" and record["seed"] == 3 and record["conditions"] == {"age": 50}
    forbidden = _source_identifiers(source)
    assert len(forbidden) > 5
    for path in files[:-1]:
        raw = path.read_bytes()
        leaked = [v for v in forbidden if v.encode() in raw]
        assert not leaked, f"{path.name} holds source values {leaked}"
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in files[:-1]]  # no staging folder left


def test_fresh_uids_and_synthetic_marks(tmp_path):
    vol = torch.arange(4 * 3 * 2, dtype=torch.float32).reshape(1, 4, 3, 2)
    first = write_dicom_series(vol, tmp_path / "a", modality="CT", series_description="brain")[:-1]
    second = write_dicom_series(vol, tmp_path / "b")[:-1]
    a = [pydicom.dcmread(p) for p in first]
    b = pydicom.dcmread(second[0])
    assert len({ds.SOPInstanceUID for ds in a}) == 2
    assert len({ds.SeriesInstanceUID for ds in a}) == 1 and a[0].SeriesInstanceUID != b.SeriesInstanceUID
    assert a[0].StudyInstanceUID != b.StudyInstanceUID and a[0].FrameOfReferenceUID != b.FrameOfReferenceUID
    assert list(a[0].ImageType) == ["DERIVED", "SECONDARY", "AXIAL"] and list(b.ImageType) == ["DERIVED", "SECONDARY"]
    assert a[0].SeriesDescription == "SYNTHETIC brain" and "SYNTHETIC" in a[0].ImageComments
    assert a[0].SOPClassUID == dicom_writer.SOP_CLASSES["CT"] and b.SOPClassUID == dicom_writer.SOP_CLASSES["MR"]
    assert a[0].PatientIdentityRemoved == "YES" and str(a[0].PatientName) == "SYNTHETIC^DATA"


def test_float_volume_left_handed_affine_round_trip_within_stated_tolerance(tmp_path):
    """RAS affine with a flipped slice axis, float intensities: geometry and values within (max - min) / 131070."""
    rng = np.random.default_rng(0)
    data = rng.normal(100.0, 30.0, size=(1, 6, 5, 4))
    affine = np.array([[-0.8, 0, 0, 20.0], [0, 0.9, 0, -7.0], [0, 0, -2.5, 33.0], [0, 0, 0, 1]])
    ref_volume = MetaTensor(torch.as_tensor(data), affine=torch.as_tensor(affine))
    write_dicom_series(ref_volume, tmp_path / "f")
    back = LoadDICOMSeries()(tmp_path / "f")  # RAS, as MONAI loads
    # voxel (0, 0, 0) read back lies on a voxel centre of the reference grid; the axes differ only by flips
    world = back.affine.numpy() @ np.array([0, 0, 0, 1.0])
    ref_index = np.linalg.solve(affine, world)
    np.testing.assert_allclose(ref_index[:3], np.round(ref_index[:3]), atol=1e-4)
    flips = np.sign(np.diag(np.linalg.solve(affine, back.affine.numpy()))[:3])
    expected = data[0][:: int(flips[0]), :: int(flips[1]), :: int(flips[2])]
    tol = (data.max() - data.min()) / 131070 + 1e-6
    np.testing.assert_allclose(back[0].numpy(), expected, atol=tol)
    np.testing.assert_allclose(np.abs(back.affine.numpy()[:3, :3]), np.abs(affine[:3, :3]), atol=1e-5)


def test_crash_mid_write_leaves_no_partial_series(tmp_path, monkeypatch):
    calls = []
    real = dicom_writer._slice_dataset

    def failing(shared, pixels, k, lps, **kwargs):
        calls.append(k)
        if k == 2:
            raise OSError("disk full")
        return real(shared, pixels, k, lps, **kwargs)

    monkeypatch.setattr(dicom_writer, "_slice_dataset", failing)
    with pytest.raises(OSError, match="disk full"):
        write_dicom_series(np.zeros((1, 3, 3, 5)), tmp_path / "crash", provenance={"seed": 1})
    assert calls == [0, 1, 2]
    assert list((tmp_path / "crash").iterdir()) == [] and not (tmp_path / "crash.json").exists()


@pytest.mark.parametrize(
    ("kwargs", "volume", "match"),
    [
        ({}, np.zeros((2, 3, 3, 3)), r"\(1, x, y, z\) volume, got shape \(2, 3, 3, 3\)"),
        ({}, np.full((1, 2, 2, 2), np.nan), "NaN or infinite"),
        ({"affine": np.diag([1.0, 0.0, 1.0, 1.0])}, np.zeros((1, 2, 2, 2)), "orthogonal non-zero axes"),
        ({"modality": "PET"}, np.zeros((1, 2, 2, 2)), "PET"),
    ],
)
def test_bad_input_named(tmp_path, kwargs, volume, match):
    with pytest.raises(ValueError, match=match):
        write_dicom_series(volume, tmp_path / "bad", **kwargs)
    assert not (tmp_path / "bad.json").exists()


def test_bad_provenance_and_occupied_folder(tmp_path):
    with pytest.raises(TypeError, match="seed"):
        write_dicom_series(np.zeros((1, 2, 2, 2)), tmp_path / "p", provenance={"seed": object()})
    assert not (tmp_path / "p").exists()
    write_dicom_series(np.zeros((1, 2, 2, 2)), tmp_path / "q")
    with pytest.raises(ValueError, match="already holds .dcm files"):
        write_dicom_series(np.zeros((1, 2, 2, 2)), tmp_path / "q")


def test_end_to_end_load_slice_write_back(shared_data, tmp_path):
    """The issue's "done when": load TCIA, slice with positions, write back synthetic, SimpleITK geometry identical."""
    source = shared_data / TCIA
    volume = LoadDICOMSeries()(source)
    slices = VolumeToSlices(2)(volume)
    assert slices[0].meta["slice_position"] == 0.0 and slices[-1].meta["slice_position"] == 1.0
    restacked = MetaTensor(torch.stack([s.as_tensor() for s in slices], dim=-1), affine=slices[0].affine)
    files = write_dicom_series(restacked, tmp_path / "synthetic", provenance={"model_id": "identity", "seed": 0})
    written, ref = _sitk_series(tmp_path / "synthetic"), _sitk_series(source)
    _assert_same_geometry(written, ref)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(ref))
    first = pydicom.dcmread(files[0])
    assert first.SeriesDescription.startswith("SYNTHETIC") and "DERIVED" in first.ImageType


def test_ct_loaded_in_lps_written_as_ct(shared_data, tmp_path):
    """An LPS MetaTensor (meta["space"] == "LPS") keeps its geometry; CT Image Storage with HU rescale type."""
    source = shared_data / "ct/totalsegmentator/example_ct_dicom"
    volume = LoadDICOMSeries(affine_lps_to_ras=False)(source)
    files = write_dicom_series(volume, tmp_path / "ct", modality="CT")
    written, ref = _sitk_series(tmp_path / "ct"), _sitk_series(source)
    _assert_same_geometry(written, ref)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(ref))
    first = pydicom.dcmread(files[0])
    assert first.SOPClassUID == dicom_writer.SOP_CLASSES["CT"] and first.RescaleType == "HU"


# --- cine: one slice over time -------------------------------------------------------------------------------------

ACDC_NORMAL = "cardiac_mri/acdc_subset/patient061/patient061_4d.nii.gz"
_TEMPORAL = {"TriggerTime", "TemporalPositionIdentifier", "NominalInterval", "CardiacNumberOfImages",
             "NumberOfTemporalPositions", "TemporalResolution"}


@pytest.fixture(scope="module")
def acdc_cine(shared_data):
    """A real cine: slice 4 of an ACDC 4D short-axis NIfTI, ``(1, x, y, 30)``, and its RAS affine (left-handed)."""
    import nibabel as nib

    image = nib.load(shared_data / ACDC_NORMAL)
    return np.asarray(image.dataobj, dtype=np.float32)[None, :, :, 4], image.affine


def _instances(files):
    return [pydicom.dcmread(f) for f in files if f.suffix == ".dcm"]


def _values(ds):
    return ds.pixel_array.T * float(ds.RescaleSlope) + float(ds.RescaleIntercept)  # rows = y: back to (x, y)


@pytest.mark.parametrize("handed", ["left (ACDC's own)", "right (the bundle's diag spacing)"])
def test_cine_is_one_mr_series_in_time_order_with_temporal_tags_and_the_frames_geometry(acdc_cine, tmp_path, handed):
    from monai.transforms import LoadImage

    cine, affine = acdc_cine
    if handed.startswith("right"):
        affine = np.diag([1.5, 1.5, 10.0, 1.0])
    files = write_dicom_series(cine, tmp_path / "cine", affine=affine, frame_time_ms=33.3, provenance={"seed": 5})
    assert [f.name for f in files] == [f"frame_{k:04d}.dcm" for k in range(1, 31)] + ["cine.json"]
    assert sorted(p.name for p in (tmp_path / "cine").iterdir()) == [f.name for f in files[:-1]]  # no staging left
    frames = _instances(files)
    one_frame = pydicom.dcmread(write_dicom_series(cine[..., :1], tmp_path / "frame", affine=affine)[0])
    assert len({ds.SeriesInstanceUID for ds in frames}) == 1 and len({ds.SOPInstanceUID for ds in frames}) == 30
    tol = (cine.max() - cine.min()) / 131070 + 1e-4
    for k, ds in enumerate(frames):
        assert ds.SOPClassUID == dicom_writer.SOP_CLASSES["MR"] and ds.Modality == "MR"
        assert ds.InstanceNumber == ds.TemporalPositionIdentifier == k + 1
        assert float(ds.TriggerTime) == pytest.approx(k * 33.3)
        assert ds.NominalInterval == 999 and float(ds.TemporalResolution) == pytest.approx(33.3)  # round(30 x 33.3)
        assert ds.CardiacNumberOfImages == ds.NumberOfTemporalPositions == 30
        assert "FrameTime" not in ds and "SpacingBetweenSlices" not in ds  # single-frame IOD; one slice, not a stack
        for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
                    "SliceLocation"):
            assert ds[tag].value == one_frame[tag].value, tag  # each frame where a one-frame series puts it
        np.testing.assert_allclose(_values(ds), cine[0, :, :, k], atol=tol)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    np.testing.assert_allclose([float(v) for v in frames[0].ImagePositionPatient], lps[:3, 3], atol=1e-4)
    # MONAI's readers stack the frames on the last axis in time order, each in the plane of the affine's first two axes
    for reader in ("PydicomReader", "ITKReader"):
        loaded = LoadImage(reader=reader, image_only=True)(str(tmp_path / "cine"))
        np.testing.assert_allclose(loaded.numpy(), cine[0], atol=tol, err_msg=reader)
        np.testing.assert_allclose(loaded.affine.numpy()[:3, [0, 1, 3]], affine[:3, [0, 1, 3]], atol=1e-4)
    with pytest.raises(ValueError, match=r"is not a stack of slices: its 30 images share slice positions \(a cine \(30 temporal positions"):  # the project's volume reader: frames are not slices
        LoadDICOMSeries()(tmp_path / "cine")


def test_cine_is_marked_synthetic_and_holds_no_text_the_writer_did_not_put_there(acdc_cine, tmp_path):
    """Every text value of every instance is one of the writer's fixed marks / placeholders (or today's date and time):
    nothing of the source file, its patient or the provenance (which goes to the sidecar only) reaches the DICOM."""
    cine, affine = acdc_cine
    provenance = {"model_id": "cine-ldm", "seed": 5, "conditions": {"group": "NOR", "bmi": 27.2}}
    files = write_dicom_series(cine, tmp_path / "cine", affine=affine, frame_time_ms=40.0,
                               series_description="cine MRI short-axis", provenance=provenance)
    volume = pydicom.dcmread(write_dicom_series(cine[..., :2], tmp_path / "volume", affine=affine)[0])
    texts, uids = set(), set()
    for ds in _instances(files):
        assert ds.SeriesDescription == "SYNTHETIC cine MRI short-axis"
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
        assert str(ds.PatientName) == "SYNTHETIC^DATA" and ds.PatientID == "SYNTHETIC" and ds.PatientBirthDate == ""
        assert ds.PatientIdentityRemoved == "YES" and ds.BurnedInAnnotation == "NO" and "SYNTHETIC" in ds.ImageComments
        # the tags of a volume instance, less its slice spacing, plus the temporal ones: nothing else
        assert {e.keyword for e in ds} == {e.keyword for e in volume} - {"SpacingBetweenSlices"} | _TEMPORAL
        for elem in ds.iterall():
            if elem.VR == "UI":
                uids.add(str(elem.value))
            elif elem.VR in ("PN", "LO", "SH", "ST", "LT", "UT", "UC", "CS"):
                texts.update(str(v) for v in (elem.value if elem.VM > 1 else [elem.value]))
    dates = {ds.StudyDate, ds.StudyTime}
    marks = {"DERIVED", "SECONDARY", "MR", "monai_gen", "", "SYNTHETIC cine MRI short-axis", dicom_writer._SYNTHETIC,
             "SYNTHETIC^DATA", "SYNTHETIC", "SYNTH", "O", "YES", "NO", "RM", "NONE", "MONOCHROME2"}
    assert texts - dates <= marks, texts - dates - marks
    assert len(uids - {dicom_writer.SOP_CLASSES["MR"]}) == 3 + 30  # study, series, frame of reference; one per frame
    record = json.loads(files[-1].read_text())
    assert record["conditions"] == {"group": "NOR", "bmi": 27.2} and record["synthetic"] is True


def test_cine_overwrite_replaces_the_series_and_only_then(acdc_cine, tmp_path):
    cine, affine = acdc_cine
    first = _instances(write_dicom_series(cine, tmp_path / "cine", affine=affine, frame_time_ms=33.3))
    with pytest.raises(ValueError, match="already holds .dcm files"):
        write_dicom_series(cine, tmp_path / "cine", affine=affine, frame_time_ms=33.3)
    files = write_dicom_series(cine[..., :20], tmp_path / "cine", affine=affine, frame_time_ms=50.0, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "cine").iterdir()) == [f"frame_{k:04d}.dcm" for k in range(1, 21)]
    again = _instances(files)
    assert {ds.SeriesInstanceUID for ds in again} == {again[0].SeriesInstanceUID} != {first[0].SeriesInstanceUID}
    assert again[-1].NumberOfTemporalPositions == 20 and again[-1].NominalInterval == 1000


@pytest.mark.parametrize(
    ("volume", "kwargs", "match"),
    [
        (np.zeros((1, 4, 4, 1)), {"frame_time_ms": 40.0}, "at least 2 frames on the last axis, got 1"),
        (np.zeros((1, 4, 4, 3)), {"frame_time_ms": 0.0}, "frame_time_ms must be a positive number"),
        (np.zeros((1, 4, 4, 3)), {"frame_time_ms": float("nan")}, "frame_time_ms must be a positive number"),
        (np.zeros((1, 4, 4, 3)), {"frame_time_ms": True}, "frame_time_ms must be a positive number"),
        (np.zeros((1, 4, 4, 3)), {"frame_time_ms": 40.0, "modality": "CT"}, "MR Image Storage .* got modality 'CT'"),
    ],
)
def test_bad_cine_named_and_nothing_written(tmp_path, volume, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_dicom_series(volume, tmp_path / "bad", **kwargs)
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad.json").exists()
