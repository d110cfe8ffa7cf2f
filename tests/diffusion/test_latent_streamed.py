"""LatentSpace(slab_size=...): MONAI AutoencoderKL's decoder streamed layer by layer, each convolution in slabs and each
GroupNorm with the whole volume's statistics, equals MONAI's full decode to float round-off (3D on the latent of a real
CT, and 2D); tiling, by contrast, changes a GroupNorm decoder's output; bad settings are named."""

from __future__ import annotations

import pytest
import torch
from monai.transforms import LoadImage

from monai_gen.diffusion.latent import LatentScaler, LatentSpace
from monai_gen.networks.autoencoders import kl_autoencoder, vq_autoencoder
from monai_gen.transforms.image import HounsfieldWindow


def _perturbed(autoencoder):
    """MONAI zero-initialises nothing here, but random weights a little off their init exercise every layer."""
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in autoencoder.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return autoencoder.eval()


@pytest.fixture(scope="module")
def ct_patch(shared_data):
    ct = LoadImage(image_only=True, ensure_channel_first=True)(shared_data / "ct/totalsegmentator/example_ct.nii.gz")
    return HounsfieldWindow()(ct[None, :, 20:84, 10:74, 30:90]).as_tensor()  # (1, 1, 64, 64, 60) in [-1, 1]


@pytest.mark.parametrize("slab_size", [1, 5, 64])
def test_streamed_decode_of_a_real_ct_latent_equals_monais_full_decode(ct_patch, slab_size):
    autoencoder = _perturbed(kl_autoencoder(3, 1, channels=(8, 16, 16), latent_channels=3, num_res_blocks=2,
                                            norm_num_groups=8))
    space = LatentSpace(autoencoder, LatentScaler(scale=0.7, shift=0.1), slab_size=slab_size)
    with torch.no_grad():
        z = space.encode(ct_patch)
        full = autoencoder.decode_stage_2_outputs(space.scaler.inverse(z))
    streamed = space.decode(z)
    assert streamed.shape == full.shape == (1, 1, 64, 64, 60)
    torch.testing.assert_close(streamed, full, rtol=1e-4, atol=1e-4 * float(full.abs().max()))


def test_tiling_changes_a_groupnorm_decoder_and_streaming_does_not(ct_patch):
    autoencoder = _perturbed(kl_autoencoder(3, 1, channels=(8, 16, 16), latent_channels=3, norm_num_groups=8))
    z = LatentSpace(autoencoder).encode(ct_patch).detach()
    with torch.no_grad():
        full = autoencoder.decode_stage_2_outputs(z)
        tiled = LatentSpace(autoencoder, tile_size=8, halo=2).decode(z)
    streamed = LatentSpace(autoencoder, slab_size=4).decode(z)
    assert (tiled - full).abs().max() > 100 * (streamed - full).abs().max()  # each tile normalised on its own


def test_streamed_decode_is_rank_agnostic_and_handles_a_channel_changing_resblock():
    autoencoder = _perturbed(kl_autoencoder(2, 1, channels=(8, 16), latent_channels=2, num_res_blocks=1,
                                            norm_num_groups=4))
    z = torch.randn(2, 2, 12, 7)
    with torch.no_grad():
        full = autoencoder.decode_stage_2_outputs(z)
    torch.testing.assert_close(LatentSpace(autoencoder, slab_size=3).decode(z), full, rtol=1e-4, atol=1e-5)


def test_bad_streaming_settings_are_named():
    autoencoder = kl_autoencoder(3, 1, channels=(8, 16), latent_channels=2, norm_num_groups=8)
    with pytest.raises(ValueError, match=r"tiled \(tile_size\) or streamed \(slab_size\), not both"):
        LatentSpace(autoencoder, tile_size=16, halo=4, slab_size=4)
    with pytest.raises(ValueError, match="slab_size must be a positive number of slices, got 0"):
        LatentSpace(autoencoder, slab_size=0)
    with pytest.raises(TypeError, match="needs a MONAI AutoencoderKL, got VQVAE"):
        LatentSpace(vq_autoencoder(3, 1, channels=(8, 8)), slab_size=4)
