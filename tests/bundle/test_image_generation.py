"""The image bundle's figures: the contact sheet of a plain run's first samples and the sweep strip, drawn from the
written NIfTI files (or array shards) of real IXI slices (no model needed), oriented as the per-sample PNGs are."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import LoadImage, Orientation, ScaleIntensityRangePercentiles
from PIL import Image

from monai_gen.bundle.contact_sheet import CONTACT_SHEET_NAME
from monai_gen.bundle.image_generation import image_preview
from monai_gen.data.sample_writers import (
    ArrayShardWriter,
    DicomSeriesSampleWriter,
    NiftiSampleWriter,
    PNGSampleWriter,
    SampleWriters,
)
from monai_gen.engines.requests import SampleRequest, sweep_requests

WRITER = SampleWriters([NiftiSampleWriter(spacing_mm=(2.0, 2.0, 2.0)), PNGSampleWriter(window=(0.0, 1.0))])


@pytest.fixture(scope="module")
def slices(shared_data):
    """Six axial slices ``(6, 1, x, y)`` of a real IXI volume in RAS, scaled to [0, 1] as the tiny bundle does."""
    path = shared_data / "brain_mri/ixi_t1_2mm/t1/IXI052-HH-1343_T1.nii.gz"
    volume = Orientation("RAS")(LoadImage(image_only=True, ensure_channel_first=True)(path))
    volume = ScaleIntensityRangePercentiles(0.5, 99.5, 0.0, 1.0, clip=True)(volume).as_tensor()
    return torch.stack([volume[..., k] for k in (30, 38, 46, 54, 62, 70)])


def test_the_sweep_strip_waits_for_every_sample_then_shows_each_as_its_png(slices, tmp_path):
    requests = sweep_requests("slice_position", [0.3, 0.5, 0.7], seeds=[4, 9], fixed={"sex": "F"})
    preview = image_preview(requests=requests, sweep="slice_position", window=[0.0, 1.0])
    for request, sample in zip(requests[:3], slices[:3], strict=True):
        WRITER(sample, tmp_path / request.name, {"conditions": dict(request.conditions)})
    assert preview(slices[:3], requests[:3], tmp_path) is None and not (tmp_path / "sweep_slice_position.png").exists()
    for request, sample in zip(requests[3:], slices[3:], strict=True):
        WRITER(sample, tmp_path / request.name, {"conditions": dict(request.conditions)})
    figure = preview(slices[3:], requests[3:], tmp_path)
    assert (tmp_path / "sweep_slice_position.png").is_file() and len(figure.axes) == 6
    assert [figure.axes[r * 2].get_ylabel() for r in range(3)] == [f"slice_position = {v}" for v in (0.3, 0.5, 0.7)]
    assert [ax.get_title() for ax in figure.axes[:2]] == ["seed 4", "seed 9"]
    for index, request in enumerate(requests):  # sweep_requests: value-major, so cell r * S + s is request index
        png = np.asarray(Image.open(tmp_path / f"{request.name}.png"), dtype=np.float64) / 255
        np.testing.assert_allclose(figure.axes[index].images[0].get_array(), png, atol=0.5 / 255 + 1e-6)


def test_a_plain_run_draws_its_first_samples_titled_with_names_seeds_and_conditions_once(slices, tmp_path):
    requests = [SampleRequest(f"slice_{i}", i, {"age": 70.0, "sex": "F", "slice_position": 0.6}) for i in range(5)]
    nifti = NiftiSampleWriter(spacing_mm=(2.0, 2.0, 2.0))
    preview = image_preview(requests=requests, contact_sheet_size=3)
    for request, sample in zip(requests[:2], slices[:2], strict=True):
        nifti(sample, tmp_path / request.name, {"conditions": dict(request.conditions)})
    assert preview(slices[:2], requests[:2], tmp_path) is None  # the third is not written yet
    for request, sample in zip(requests[2:4], slices[2:4], strict=True):
        nifti(sample, tmp_path / request.name, {"conditions": dict(request.conditions)})
    figure = preview(slices[2:4], requests[2:4], tmp_path)
    assert (tmp_path / CONTACT_SHEET_NAME).is_file() and len(figure.axes) == 3
    assert [ax.get_title() for ax in figure.axes] == [
        f"slice_{i} · seed {i}\nage 70, sex F, slice_position 0.6" for i in range(3)]
    shown = [np.rot90(slices[i, 0].numpy()) for i in range(3)]  # anterior up, as the PNG writer shows it
    for ax, image in zip(figure.axes, shown, strict=True):
        np.testing.assert_allclose(ax.images[0].get_array(), image, atol=1e-6)
    nifti(slices[4], tmp_path / requests[4].name, {"conditions": dict(requests[4].conditions)})
    assert preview(slices[4:], requests[4:], tmp_path) is None  # later batches draw no figure
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [CONTACT_SHEET_NAME]
    with pytest.raises(ValueError, match="draws 2D samples"):
        image_preview(requests=requests)(slices[:2, :, :, :, None, None], requests, tmp_path)


def test_a_volume_job_shows_each_volume_by_its_central_axial_slice(slices, tmp_path):
    requests = [SampleRequest(f"ct_{i}", i, {}) for i in range(2)]
    volumes = torch.zeros(2, 1, *slices.shape[2:], 5)
    volumes[..., 2] = slices[:2]  # only the central slice (z = 2 of 5) holds the image
    nifti = NiftiSampleWriter(spacing_mm=(3.0, 3.0, 3.0))
    for request, volume in zip(requests, volumes, strict=True):
        nifti(volume, tmp_path / request.name, {"conditions": {}})
    figure = image_preview(requests=requests, window=[0.0, 1.0])(volumes, requests, tmp_path)
    for ax, image in zip(figure.axes, slices[:2], strict=True):
        np.testing.assert_allclose(ax.images[0].get_array(), np.rot90(image[0].numpy()), atol=1e-6)


def test_array_shards_of_two_ranks_show_as_their_nifti_files_do_slices_and_volumes(slices, tmp_path):
    volumes = torch.zeros(4, 1, *slices.shape[2:], 5)
    volumes[..., 2] = slices[:4]  # only the central slice (z = 2 of 5) holds the image
    for samples, kind in ((slices[:4], "slice"), (volumes, "ct")):
        requests = [SampleRequest(f"{kind}_{i}", i, {"sex": "F"}) for i in range(4)]
        shards, files = tmp_path / kind / "shards", tmp_path / kind / "nifti"
        shards.mkdir(parents=True), files.mkdir()
        for rank in (1, 0):  # the second rank's batch lands first: the sheet waits for both shards
            batch = slice(2 * rank, 2 * rank + 2)
            provenances = [{"seed": r.seed, "conditions": dict(r.conditions)} for r in requests[batch]]
            ArrayShardWriter().write_batch(samples[batch], requests[batch], provenances, shards)
            if rank == 1:
                assert image_preview(requests=requests)(samples[batch], requests[batch], shards) is None
        for request, sample in zip(requests, samples, strict=True):
            NiftiSampleWriter(spacing_mm=(2.0, 2.0, 2.0))(sample, files / request.name, {"conditions": {}})
        from_shards = image_preview(requests=requests, window=[0.0, 1.0])(samples[:2], requests[:2], shards)
        from_files = image_preview(requests=requests, window=[0.0, 1.0])(samples[:2], requests[:2], files)
        assert (shards / CONTACT_SHEET_NAME).is_file() and len(from_shards.axes) == 4
        for ax, reference, image in zip(from_shards.axes, from_files.axes, slices[:4], strict=True):
            np.testing.assert_allclose(ax.images[0].get_array(), reference.images[0].get_array(), atol=1e-6)
            np.testing.assert_allclose(ax.images[0].get_array(), np.rot90(image[0].numpy()), atol=1e-6)


def test_a_cine_job_assembles_its_frames_into_a_nifti_loop_gif_and_contraction_curve(shared_data, tmp_path):
    import json

    import nibabel as nib

    from monai_gen.bundle.image_generation import CINE_NAME, cine_preview
    from monai_gen.data.acdc import acdc_records
    from monai_gen.engines.requests import cine_requests
    from monai_gen.metrics.cardiac import bright_area_curve, contraction_ratio
    from monai_gen.transforms.conditions import ConditionSet

    record = acdc_records(shared_data / "cardiac_mri/acdc_subset", patients=["patient061"])[0]  # a normal heart
    cine = np.asarray(nib.load(record["image"]).dataobj, dtype=np.float32)[:, :, 4].transpose(2, 0, 1)  # (30, x, y)
    conditions = ConditionSet([{"name": "phase", "kind": "periodic", "period": 1.0, "valid_range": [0, 1]},
                               {"name": "group", "kind": "categorical", "categories": ["NOR", "DCM"]}])
    requests = cine_requests(conditions, phase="phase", num_frames=30, values={"group": "NOR"}, seed=5)
    assert [r.conditions["phase"] for r in requests[:3]] == [0.0, 1 / 30, 2 / 30] and {r.seed for r in requests} == {5}
    writer = SampleWriters([NiftiSampleWriter(spacing_mm=(1.37, 1.37, 10.0)),
                            DicomSeriesSampleWriter(spacing_mm=(1.37, 1.37, 10.0))])
    preview = cine_preview(requests=requests, phase="phase", frame_time_ms=33.3, dicom_description="cine MRI")
    # the frames arrive out of order, as batches of a resumed job may: here the real frame of each requested phase
    for request in reversed(requests):
        frame = torch.as_tensor(cine[round(request.conditions["phase"] * 30)])[None]
        writer(frame, tmp_path / request.name, {"model_id": "test", "seed": request.seed,
                                                "conditions": dict(request.conditions)})
        figure = preview(frame[None], [request], tmp_path)
        assert (figure is None) == (request is not requests[0])
    written = nib.load(tmp_path / f"{CINE_NAME}.nii.gz")
    assert written.shape == (100, 95, 1, 30) and written.header.get_zooms()[3] == pytest.approx(33.3)
    np.testing.assert_array_equal(np.asarray(written.dataobj)[:, :, 0].transpose(2, 0, 1), cine)  # in phase order
    assert written.header["descrip"].tobytes().rstrip(b"\0") == b"SYNTHETIC cine=30 group=NOR"
    sidecar = json.loads((tmp_path / f"{CINE_NAME}.json").read_text())
    assert sidecar["synthetic"] is True and sidecar["model_id"] == "test" and sidecar["conditions"] == {"group": "NOR"}
    assert sidecar["phase_per_frame"][:2] == [0.0, 1 / 30] and sidecar["frames"][0] == requests[0].name
    gif = Image.open(tmp_path / f"{CINE_NAME}.gif")
    assert gif.n_frames == 30 and gif.size == (100, 95)  # rotated as the PNGs show a slice: width x, height y
    curve = figure.axes[0].lines[-1].get_ydata()
    np.testing.assert_allclose(curve, bright_area_curve(cine))
    assert contraction_ratio(curve, 0, record["es_frame"]) > 0.4  # the loop contracts like the real heart
    series = _assert_cine_dicom(tmp_path, cine, requests, sidecar)
    preview(frame[None], [requests[0]], tmp_path)  # frames regenerated (overwrite): the series is replaced
    assert _assert_cine_dicom(tmp_path, cine, requests, sidecar) != series
    with pytest.raises(ValueError, match=r"a cine sweeps a periodic condition of the model \(\['phase'\]\), not 'group'"):
        cine_requests(conditions, phase="group", num_frames=30)
    with pytest.raises(ValueError, match="'phase' is what a cine sweeps; it cannot also be held fixed"):
        cine_requests(conditions, phase="phase", num_frames=30, values={"phase": 0.2})
    with pytest.raises(ValueError, match="at least 2 frames"):
        cine_requests(conditions, phase="phase", num_frames=1)


def _assert_cine_dicom(folder, cine, requests, cine_record):
    """``cine_dicom/``: one MR series of the frames in phase order, each where its own frame's DICOM lies, timed;
    returns its SeriesInstanceUID."""
    import json

    import pydicom

    instances = [pydicom.dcmread(f) for f in sorted((folder / "cine_dicom").iterdir())]
    assert len(instances) == 30 and len({ds.SeriesInstanceUID for ds in instances}) == 1
    frame_dicom = pydicom.dcmread(folder / f"{requests[0].name}_dicom" / "slice_0001.dcm")
    tol = (cine.max() - cine.min()) / 131070 + 1e-4
    for k, ds in enumerate(instances):
        assert ds.InstanceNumber == ds.TemporalPositionIdentifier == k + 1 and ds.NumberOfTemporalPositions == 30
        assert float(ds.TriggerTime) == pytest.approx(k * 33.3) and ds.NominalInterval == 999
        assert ds.SeriesDescription == "SYNTHETIC cine MRI" and str(ds.PatientName) == "SYNTHETIC^DATA"
        for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness"):
            # the cine's affine is read from the frames' NIfTI header (float32): 1.37 mm comes back as 1.3700000047
            np.testing.assert_allclose(np.asarray(ds[tag].value, float), np.asarray(frame_dicom[tag].value, float),
                                       rtol=1e-7, err_msg=tag)
        values = ds.pixel_array.T * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_allclose(values, cine[k], atol=tol)
    record = json.loads((folder / "cine_dicom.json").read_text())
    unstamped = [{k: v for k, v in r.items() if k not in ("created_utc", "output")} for r in (record, cine_record)]
    assert unstamped[0] == unstamped[1]
    return instances[0].SeriesInstanceUID
