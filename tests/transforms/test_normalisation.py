"""LinearNormalisation on a real ECG beat: forward then inverse is the identity, errors name the problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import wfdb

from monai_gen.transforms.normalisation import LinearNormalisation


def test_a_real_beat_round_trips_and_the_offset_broadcasts(shared_data):
    signal = torch.as_tensor(wfdb.rdrecord(str(shared_data / "ecg/cinc2021/E07500")).p_signal.T[:, :576], dtype=torch.float32)
    offset = signal.mean(dim=1, keepdim=True).expand(12, 576).contiguous()
    norm = LinearNormalisation(0.25, offset=offset)
    model_space = norm(torch.stack([signal, 2 * signal]))
    torch.testing.assert_close(model_space[0], (signal - offset) / 0.25)
    torch.testing.assert_close(norm.inverse(model_space), torch.stack([signal, 2 * signal]), atol=1e-5, rtol=1e-5)
    as_numpy = norm(signal.numpy())
    assert isinstance(as_numpy, np.ndarray) and np.allclose(as_numpy, model_space[0].numpy())


@pytest.mark.parametrize("scale", [0, -1, float("nan")])
def test_scale_must_be_positive(scale):
    with pytest.raises(ValueError, match="scale must be a positive number"):
        LinearNormalisation(scale)
