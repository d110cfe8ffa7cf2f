"""Latent scaling and the encode / tiled-decode wrapper, on latents of real brain MRI."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
import wfdb

from monai_gen.diffusion.latent import LatentScaler, LatentSpace
from monai_gen.networks.autoencoders import kl_autoencoder, vq_autoencoder


@pytest.fixture(scope="module")
def volume(shared_data) -> torch.Tensor:
    """One real T1 volume (1, 1, 96, 80, 64), centre crop of a 2 mm IXI scan, scaled to [0, 1]."""
    path = sorted((shared_data / "brain_mri" / "ixi10_2mm" / "nifti").glob("*.nii.gz"))[0]
    vol = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    vol = np.clip(vol / np.percentile(vol, 99), 0, 1)
    return torch.from_numpy(np.ascontiguousarray(vol[12:108, 20:100, 13:77]))[None, None]


def _kl(spatial_dims: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return kl_autoencoder(spatial_dims, 1, channels=(8, 8, 16), latent_channels=4, norm_num_groups=4).eval()


def _vq(spatial_dims: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return vq_autoencoder(spatial_dims, 1, channels=(8, 16), num_embeddings=32, embedding_dim=4).eval()


@torch.no_grad()
def test_std_scaling_fit_gives_unit_std_and_inverts(volume):
    z = _kl().encode(volume)[0]  # posterior mean of a real volume, (1, 4, 24, 20, 16)
    scaler = LatentScaler("std").fit(z)
    assert scaler.shift.item() == 0.0  # LDM: scale only
    torch.testing.assert_close(scaler(z).std(), torch.tensor(1.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(scaler.inverse(scaler(z)), z, atol=1e-6, rtol=1e-6)


@torch.no_grad()
def test_minmax_scaling_maps_onto_minus_one_one_and_inverts(volume):
    z = _kl().encode(volume)[0]
    scaler = LatentScaler("minmax").fit(z)
    scaled = scaler(z)
    torch.testing.assert_close(scaled.min(), torch.tensor(-1.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(scaled.max(), torch.tensor(1.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(scaler.inverse(scaled), z, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("mode", ["std", "minmax"])
def test_streamed_fit_equals_one_batch_fit_and_state_dict_round_trip(mode):
    z = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 3 + 2
    whole = LatentScaler(mode).fit(z)
    streamed = LatentScaler(mode).fit(iter(z.split(2)))
    torch.testing.assert_close(streamed.scale, whole.scale)
    torch.testing.assert_close(streamed.shift, whole.shift)
    restored = LatentScaler(mode)
    restored.load_state_dict(whole.state_dict())
    torch.testing.assert_close(restored(z), whole(z))


def test_scaler_rejects_bad_input():
    with pytest.raises(ValueError, match="minmax"):
        LatentScaler("min-max")
    with pytest.raises(ValueError, match="scale must be > 0, got -1"):
        LatentScaler(scale=-1.0)
    with pytest.raises(ValueError, match="at least 2 distinct values"):
        LatentScaler().fit(torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"shape \(2, 2\) has NaN"):
        LatentScaler().fit(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]))


@torch.no_grad()
def test_latent_space_encode_is_scaled_posterior_mean_unless_sampling(volume):
    ae = _kl()
    space = LatentSpace(ae, LatentScaler("std"))
    space.fit_scaler([volume[..., :32], volume[..., 32:]])
    z = space.encode(volume)
    torch.testing.assert_close(z, space.scaler(ae.encode(volume)[0]))
    torch.testing.assert_close(space.encode(volume), z)  # deterministic
    assert 0.9 < z.std().item() < 1.1  # fitted on the two halves of the same volume
    sampled = LatentSpace(ae, space.scaler, sample_posterior=True).encode(volume)
    assert not torch.equal(sampled, z)
    assert space.decode(z).shape == volume.shape


@torch.no_grad()
def test_vq_latents_are_pre_quantisation_features_scaled_by_the_codebook_range(volume):
    """Medical Diffusion: diffuse the unquantised features, min-max scaled by the codebook's range; decode quantises."""
    ae = _vq()
    codebook = ae.quantizer.quantizer.embedding.weight
    space = LatentSpace(ae, LatentScaler("minmax").fit(codebook))
    z = space.encode(volume)
    torch.testing.assert_close(space.scaler.inverse(z), ae.encode(volume))
    torch.testing.assert_close(space.scaler(codebook).aminmax(), (torch.tensor(-1.0), torch.tensor(1.0)))
    torch.testing.assert_close(space.decode(z), ae(volume)[0])  # eval mode: decode quantises like forward
    quantised = LatentSpace(ae, space.scaler, sample_posterior=True).encode(volume)
    torch.testing.assert_close(space.scaler.inverse(quantised), ae.encode_stage_2_inputs(volume))


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@torch.no_grad()
def test_tiled_decode_equals_full_decode_for_convolutional_decoder(volume, spatial_dims):
    """VQ decoder (convolutions only, receptive radius ~5 latent voxels): with a 6-voxel halo the tiled decode is the
    full decode to float32 round-off, borders included; with a 1-voxel halo it is visibly wrong."""
    image = volume[(Ellipsis, *(40, 32)[spatial_dims - 1 :])]  # a central line / axial slice / the whole crop
    assert image.std() > 0.1
    space = LatentSpace(_vq(spatial_dims))
    z = space.encode(image)  # latent grid (24, 20, 16)[-spatial_dims:]
    full = space.decode(z)
    tiled = LatentSpace(space.autoencoder, tile_size=16, tile_overlap=0.75, halo=6).decode(z)
    assert tiled.shape == full.shape == image.shape
    assert (tiled - full).abs().max().item() <= 1e-5 * full.abs().max().item()
    too_thin = LatentSpace(space.autoencoder, tile_size=16, tile_overlap=0.75, halo=1).decode(z)
    assert (too_thin - full).abs().max().item() > 1e-3 * full.abs().max().item()


@torch.no_grad()
def test_tiled_decode_of_a_whole_real_ecg_record(shared_data):
    """A 10 s, 12-lead record (12, 5000) at 500 Hz decoded from 64-sample latent tiles equals the one-shot decode."""
    record = wfdb.rdrecord(str(shared_data / "ecg" / "cinc2021" / "HR06000"))
    ecg = torch.from_numpy(np.nan_to_num(record.p_signal.T.astype(np.float32)))[None]
    torch.manual_seed(0)
    space = LatentSpace(vq_autoencoder(1, 12, channels=(16, 16), num_embeddings=64, embedding_dim=4).eval())
    z = space.encode(ecg)  # (1, 4, 1250)
    full = space.decode(z)
    tiled = LatentSpace(space.autoencoder, tile_size=64, tile_overlap=0.25, halo=6).decode(z)
    assert tiled.shape == ecg.shape
    assert (tiled - full).abs().max().item() <= 1e-5 * full.abs().max().item()


@torch.no_grad()
def test_tiled_kl_decode_is_exact_for_one_tile_and_approximate_otherwise(volume):
    """GroupNorm normalises each tile with its own statistics, so a KL decoder's tiled output only approximates the
    full decode (a documented limitation), while a tile covering the whole latent reproduces it exactly."""
    space = LatentSpace(_kl())
    z = space.encode(volume)
    full = space.decode(z)
    whole = LatentSpace(space.autoencoder, tile_size=(24, 20, 16), halo=0).decode(z)
    torch.testing.assert_close(whole, full)
    tiled = LatentSpace(space.autoencoder, tile_size=16, tile_overlap=0.75, halo=6).decode(z)
    assert torch.isfinite(tiled).all() and tiled.shape == full.shape


def test_latent_space_rejects_bad_configuration():
    with pytest.raises(TypeError, match=r"must have the method encode\(\) \(MONAI AutoencoderKL / VQVAE\), got Conv2d"):
        LatentSpace(torch.nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match=r"tile_overlap \* tile_size must be >= 2 \* halo"):
        LatentSpace(_vq(), tile_size=16, tile_overlap=0.5, halo=6)
    with pytest.raises(ValueError, match=r"tile_overlap must be in \[0, 1\), got 1.0"):
        LatentSpace(_vq(), tile_size=16, tile_overlap=1.0)


def test_compression_factor_and_indivisible_input(volume):
    assert LatentSpace(_kl()).compression == 4 and LatentSpace(_vq(1)).compression == 4
    assert LatentSpace(kl_autoencoder(2, 1, channels=(8, 8, 8, 8), norm_num_groups=4)).compression == 8
    with pytest.raises(ValueError, match=r"spatial size \(96, 80, 62\) must be divisible by the compression factor 4"):
        LatentSpace(_kl()).encode(volume[..., :62])


@pytest.mark.gpu
@torch.no_grad()
def test_tiles_decoded_on_gpu_are_assembled_on_cpu(volume):
    """Bounded device memory: each tile is decoded on the GPU, the full volume is assembled in host memory."""
    ae = _vq()
    z = LatentSpace(ae).encode(volume)
    full = LatentSpace(ae).decode(z)
    tiled = LatentSpace(ae.to("cuda"), tile_size=16, tile_overlap=0.75, halo=6, tile_device="cuda", output_device="cpu")
    out = tiled.decode(z)
    assert out.device.type == "cpu"
    torch.testing.assert_close(out, full, atol=1e-4 * full.abs().max().item(), rtol=0)  # GPU vs CPU convolutions


def test_latent_space_builds_from_a_bundle_config():
    """Config first: autoencoder, scaler and wrapper come from plain `_target_` entries, as a bundle would write them."""
    from monai.bundle import ConfigParser

    config = {
        "autoencoder": {
            "_target_": "monai_gen.networks.autoencoders.vq_autoencoder",
            "spatial_dims": 2,
            "in_channels": 1,
            "channels": [8, 16],
            "num_embeddings": 32,
            "embedding_dim": 4,
        },
        "latent_space": {
            "_target_": "monai_gen.diffusion.latent.LatentSpace",
            "autoencoder": "@autoencoder",
            "scaler": {"_target_": "monai_gen.diffusion.latent.LatentScaler", "mode": "minmax"},
            "tile_size": [16, 16],
            "tile_overlap": 0.75,
        },
    }
    space = ConfigParser(config).get_parsed_content("latent_space")
    assert isinstance(space, LatentSpace) and space.scaler.mode == "minmax" and space.compression == 4
    image = torch.rand(1, 1, 96, 80)
    with torch.no_grad():
        space.autoencoder.eval()
        space.fit_scaler(image)
        z = space.encode(image)
        assert z.min() >= -1 - 1e-6 and z.max() <= 1 + 1e-6
        torch.testing.assert_close(space.decode(z), LatentSpace(space.autoencoder, space.scaler).decode(z))
