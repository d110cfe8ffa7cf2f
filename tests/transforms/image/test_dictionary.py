"""Dictionary image transforms in MONAI pipelines: Dataset + list_data_collate, keys split together."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor, list_data_collate
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from monai_gen.transforms.image import CineToFramesd, HounsfieldWindowd, VolumeToSlicesd

IXI = "brain_mri/ixi10_2mm/nifti"
ACDC = "cardiac_mri/acdc_subset"


def test_ixi_slices_batched_with_positions(shared_data):
    path = sorted((shared_data / IXI).glob("*.nii.gz"))[0]
    pipeline = Compose(
        [
            LoadImaged(["image", "mask"], image_only=True),
            EnsureChannelFirstd(["image", "mask"]),
            VolumeToSlicesd(["image", "mask"], indices=[0, 10, 20, 30]),
        ]
    )
    loader = DataLoader(
        Dataset([{"image": path, "mask": path, "age": 42.5}], pipeline), batch_size=1, collate_fn=list_data_collate
    )
    batch = next(iter(loader))
    volume = pipeline.transforms[1](pipeline.transforms[0]({"image": path, "mask": path}))["image"]
    depth = volume.shape[-1]
    assert batch["image"].shape == (4, 1, *volume.shape[1:3])
    torch.testing.assert_close(
        batch["slice_position"].double(), torch.tensor([0, 10, 20, 30], dtype=torch.float64) / (depth - 1)
    )
    assert batch["slice_index"].tolist() == [0, 10, 20, 30] and batch["age"].tolist() == [42.5] * 4
    torch.testing.assert_close(batch["image"][2, 0].as_tensor(), volume[0, :, :, 20].as_tensor())
    torch.testing.assert_close(batch["mask"].as_tensor(), batch["image"].as_tensor())


def test_acdc_frames_with_ed_es_from_the_dictionary(shared_data):
    path = shared_data / ACDC / "patient002" / "patient002_4d.nii.gz"
    info = dict(line.split(": ") for line in (path.parent / "Info.cfg").read_text().splitlines())
    item = {"cine": path, "ed": int(info["ED"]) - 1, "es": int(info["ES"]) - 1}
    load = Compose([LoadImaged("cine", image_only=True), EnsureChannelFirstd("cine")])
    data = load(item)
    samples = CineToFramesd("cine", ed_key="ed", es_key="es", slices=[0, 6])(data)
    frames = data["cine"].shape[0]
    assert len(samples) == 2 * frames
    assert [s["slice_index"] for s in samples] == [0] * frames + [6] * frames
    assert [s["frame_index"] for s in samples[:frames]] == list(range(frames))
    assert [i for i, s in enumerate(samples[:frames]) if s["is_es"]] == [item["es"]]
    assert [i for i, s in enumerate(samples[frames:]) if s["is_ed"]] == [item["ed"]]
    assert samples[frames + 3]["phase"] == pytest.approx(3 / frames)
    np.testing.assert_array_equal(samples[frames + 3]["cine"][0].numpy(), data["cine"][3, :, :, 6].numpy())
    assert samples[0]["ed"] == item["ed"] and samples[0]["cine"].meta["is_ed"] == (item["ed"] == 0)


def test_hounsfield_window_dict_and_split_mismatch():
    ct = MetaTensor(torch.tensor([[[[-2000.0, 0.0], [500.0, 4000.0]]]]))
    out = HounsfieldWindowd("ct", -1000, 1000)({"ct": ct, "label": 1})
    torch.testing.assert_close(out["ct"].as_tensor(), torch.tensor([[[[-1.0, 0.0], [0.5, 1.0]]]]))
    assert out["label"] == 1 and isinstance(out["ct"], MetaTensor)
    with pytest.raises(ValueError, match=r"different numbers of samples: \{'a': 2, 'b': 3\}"):
        VolumeToSlicesd(["a", "b"])({"a": np.zeros((1, 2, 2, 2)), "b": np.zeros((1, 2, 2, 3))})
    assert VolumeToSlicesd("a", allow_missing_keys=True)({"b": 1}) == []
