"""HounsfieldWindow(d).inverse on TotalSegmentator's real CT: model space back to HU, the window's values exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImage

from monai_gen.transforms.image import HounsfieldWindow, HounsfieldWindowd


@pytest.fixture(scope="module")
def ct(shared_data):
    return LoadImage(image_only=True, ensure_channel_first=True)(shared_data / "ct/totalsegmentator/example_ct.nii.gz")


def test_inverse_of_the_window_gives_back_the_ct_clipped_to_the_window(ct):
    window = HounsfieldWindow(-1000, 1000)
    back = window.inverse(window(ct))
    assert isinstance(back, MetaTensor) and torch.equal(back.affine, ct.affine)  # metadata kept both ways
    np.testing.assert_allclose(back.numpy(), np.clip(ct.numpy(), -1000, 1000), atol=1e-3)  # float32 round-off
    narrow = HounsfieldWindow(-160, 240)  # a soft-tissue window: 400 HU over [-1, 1]
    np.testing.assert_allclose(narrow.inverse(np.array([-1.0, 0.0, 0.5, 1.0])), [-160, 40, 140, 240], atol=1e-4)


def test_inverse_clips_model_values_outside_minus_one_to_one_to_the_window():
    window = HounsfieldWindow(-1000, 1000)
    generated = torch.tensor([[-1.3, -1.0, 0.04, 1.0, 1.7]])  # a sampler may overshoot [-1, 1]
    np.testing.assert_allclose(window.inverse(generated), [[-1000, -1000, 40, 1000, 1000]], atol=1e-3)
    assert isinstance(window.inverse(np.zeros(3)), np.ndarray)  # numpy in, numpy out


def test_dictionary_inverse_maps_each_key_back(ct):
    window = HounsfieldWindowd(["image"], -1000, 1000)
    data = window({"image": ct, "label": 3})
    assert float(data["image"].min()) == -1.0 and data["label"] == 3
    back = window.inverse(data)
    np.testing.assert_allclose(back["image"].numpy(), np.clip(ct.numpy(), -1000, 1000), atol=1e-3)
    assert back["label"] == 3
