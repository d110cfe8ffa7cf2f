"""Autoencoder builders: 1D/2D/3D KL and VQ models train on real MRI crops and ECG windows."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
import wfdb

from monai_gen.networks.autoencoders import kl_autoencoder, vq_autoencoder


def _mri_crops(shared_data, spatial_dims: int, size: int) -> torch.Tensor:
    """Four real T1 crops (4, 1, size[, size[, size]]) scaled to [0, 1] by the 99th percentile."""
    path = sorted((shared_data / "brain_mri" / "ixi10_2mm" / "nifti").glob("*.nii.gz"))[0]
    vol = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    vol = np.clip(vol / np.percentile(vol, 99), 0, 1)
    centre = np.array(vol.shape) // 2
    crops = []
    for shift in (-12, -4, 4, 12):
        lo = centre - size // 2 + shift
        crop = vol[lo[0] : lo[0] + size, lo[1] : lo[1] + size, lo[2] : lo[2] + size]
        crops.append(crop if spatial_dims == 3 else crop[..., size // 2])
    return torch.from_numpy(np.stack(crops))[:, None]


def _ecg_windows(shared_data, length: int = 256) -> torch.Tensor:
    """Four real 12-lead windows (4, 12, length) in mV from the CinC 2021 sample."""
    record = wfdb.rdrecord(str(shared_data / "ecg" / "cinc2021" / "E07500"))
    signal = torch.from_numpy(np.nan_to_num(record.p_signal.T).astype(np.float32))
    return torch.stack([signal[:, s : s + length] for s in (0, 1000, 2000, 3000)])


def _build(kind: str, spatial_dims: int, in_channels: int) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "kl":
        return kl_autoencoder(spatial_dims, in_channels, channels=(8, 8, 16), latent_channels=4, norm_num_groups=4)
    return vq_autoencoder(spatial_dims, in_channels, channels=(8, 16), num_embeddings=32, embedding_dim=4)


def _loss(kind: str, model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss, L1 reconstruction error) — plain MONAI outputs, no objective classes involved."""
    if kind == "kl":
        recon, mu, sigma = model(x)
        kl = 0.5 * (mu.square() + sigma.square() - torch.log(sigma.square()) - 1).mean()
        l1 = (recon - x).abs().mean()
        return l1 + 1e-6 * kl, l1
    recon, q_loss = model(x)
    l1 = (recon - x).abs().mean()
    return l1 + q_loss, l1


@pytest.mark.parametrize("kind", ["kl", "vq"])
@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_forward_backward_shapes_and_compression(kind, spatial_dims):
    model = _build(kind, spatial_dims, 2)
    x = torch.randn(2, 2, *([16] * spatial_dims))
    total, _ = _loss(kind, model, x)
    total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.encoder.parameters())
    assert any(p.grad.abs().sum() > 0 for p in model.decoder.parameters())
    model.eval()
    z = model.encode_stage_2_inputs(x)
    assert z.shape == (2, 4, *([4] * spatial_dims))  # both configs compress 4x per axis
    assert model.decode_stage_2_outputs(z).shape == x.shape


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_vq_latents_are_codebook_vectors(spatial_dims):
    """The quantiser (incl. the 1D adapter) snaps each latent position to its nearest codebook vector."""
    model = _build("vq", spatial_dims, 1).eval()
    x = torch.randn(3, 1, *([16] * spatial_dims))
    pre = model.encode(x)
    q = model.encode_stage_2_inputs(x)
    codebook = model.quantizer.quantizer.embedding.weight  # (K, D)
    pre_flat = pre.movedim(1, -1).reshape(-1, codebook.shape[1])
    q_flat = q.movedim(1, -1).reshape(-1, codebook.shape[1])
    nearest = codebook[torch.cdist(pre_flat, codebook).argmin(1)]
    torch.testing.assert_close(q_flat, nearest)
    # in eval mode the stage-2 round trip is the forward pass
    torch.testing.assert_close(model.decode_stage_2_outputs(q), model(x)[0])


def test_vq_1d_adapter_is_the_2d_architecture_on_one_axis():
    """The 1D VQ model has the 2D model's layers (same state-dict keys) with 1D kernels: each conv weight loses its
    last kernel axis, every other tensor keeps its shape."""
    one, two = _build("vq", 1, 3).state_dict(), _build("vq", 2, 3).state_dict()
    assert one.keys() == two.keys()
    for key, value in two.items():
        expected = value.shape[:-1] if value.ndim >= 4 else value.shape
        assert one[key].shape == expected, key
    assert not any(isinstance(m, torch.nn.Conv2d) for m in _build("vq", 1, 3).modules())


@pytest.mark.parametrize(
    "kind, spatial_dims, source",
    [("kl", 2, "mri"), ("vq", 2, "mri"), ("kl", 3, "mri"), ("vq", 3, "mri"), ("kl", 1, "ecg"), ("vq", 1, "ecg")],
)
def test_few_steps_on_real_data_lower_reconstruction_error(shared_data, kind, spatial_dims, source):
    x = (
        _ecg_windows(shared_data)
        if source == "ecg"
        else _mri_crops(shared_data, spatial_dims, 32 if spatial_dims == 2 else 16)
    )
    model = _build(kind, spatial_dims, x.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2 if kind == "kl" else 3e-3)
    with torch.no_grad():
        before = _loss(kind, model.eval(), x)[1].item()
    model.train()
    for _ in range(30):
        opt.zero_grad()
        _loss(kind, model, x)[0].backward()
        opt.step()
    with torch.no_grad():
        after = _loss(kind, model.eval(), x)[1].item()
    # seeded; observed ratios 0.26-0.76 (the 12-lead VQ bottleneck, 48 values per code, learns slowest)
    assert after < 0.85 * before, (before, after)


@pytest.mark.parametrize(
    "builder, kwargs, match",
    [
        (kl_autoencoder, {"spatial_dims": 4}, "spatial_dims must be one of"),
        (
            kl_autoencoder,
            {"spatial_dims": 2, "channels": (8, 12), "norm_num_groups": 8},
            r"multiples of norm_num_groups=8",
        ),
        (kl_autoencoder, {"spatial_dims": 2, "channels": ()}, "channels must be a non-empty"),
        (vq_autoencoder, {"spatial_dims": 0}, "got 0"),
        (vq_autoencoder, {"spatial_dims": 1, "in_channels": 0}, "in_channels must be a positive integer, got 0"),
        (vq_autoencoder, {"spatial_dims": 3, "num_embeddings": 1}, "num_embeddings must be >= 2"),
    ],
)
def test_bad_configuration_fails_before_building(builder, kwargs, match):
    with pytest.raises(ValueError, match=match):
        builder(**kwargs)
