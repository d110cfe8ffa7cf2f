"""Latent cache: real 12-lead ECG windows encoded once by a tiny MONAI AutoencoderKL; reuse, rebuild, item equality."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import wfdb
from monai.data import DataLoader

from monai_gen.diffusion.latent import LatentSpace
from monai_gen.diffusion.objectives import DiffusionObjective
from monai_gen.diffusion.schedules import CosineSchedule
from monai_gen.engines.latent_cache import LatentCacheDataset, build_latent_cache, encoder_fingerprint
from monai_gen.engines.training import build_diffusion_trainer
from monai_gen.networks.autoencoders import kl_autoencoder
from monai_gen.networks.conditioning import ConditionalDenoiser, PhenotypeEncoder
from monai_gen.networks.nets import DenoisingUNet


class CountingEncoder(torch.nn.Module):
    """Wraps a real LatentSpace and counts the batches it encodes."""

    def __init__(self, space: LatentSpace) -> None:
        super().__init__()
        self.space, self.calls = space, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.space.encode(x)


@pytest.fixture
def items(shared_data):
    signal = wfdb.rdrecord(str(shared_data / "ecg/cinc2021/E07501")).p_signal.T.astype(np.float32)
    return [
        {"image": torch.from_numpy(signal[:, i * 128:(i + 1) * 128].copy()),
         "conditions": torch.tensor([(i - 2) / 2, i % 2], dtype=torch.float32),  # z-score, binary class
         "condition_mask": torch.tensor([True, i % 2 == 0]),
         "record": "E07501"}
        for i in range(5)
    ]


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    autoencoder = kl_autoencoder(1, 12, channels=(8, 8), latent_channels=4, norm_num_groups=4)
    return CountingEncoder(LatentSpace(autoencoder))


def test_cache_is_built_once_and_items_equal_the_encoder_output(items, encoder, tmp_path):
    path = build_latent_cache(items, encoder, tmp_path, batch_size=2)
    assert encoder.calls == 3  # 5 items in batches of 2
    assert build_latent_cache(items, encoder, tmp_path, batch_size=2) == path
    assert encoder.calls == 3  # complete, current cache reused
    assert encoder.training  # mode restored after encoding
    cache = LatentCacheDataset(tmp_path)
    assert len(cache) == 5 and set(cache[0]) == {"image", "conditions", "condition_mask"}
    with torch.no_grad():
        images = torch.stack([item["image"] for item in items])
        expected = torch.cat([encoder.eval()(images[i:i + 2]) for i in range(0, 5, 2)])  # the cache's batches
    assert expected.shape == (5, 4, 64)
    got = torch.stack([cache[i]["image"] for i in range(5)])
    assert torch.equal(got, expected)
    assert torch.equal(cache[3]["conditions"], items[3]["conditions"])
    assert cache[3]["condition_mask"].tolist() == [True, False]
    batch = next(iter(DataLoader(cache, batch_size=5)))
    assert batch["image"].shape == (5, 4, 64)


def test_truncated_cache_is_detected_and_rebuilt(items, encoder, tmp_path):
    path = build_latent_cache(items, encoder, tmp_path, batch_size=5)
    good = {k: v.clone() for k, v in LatentCacheDataset(path).tensors.items()}  # the file is memory-mapped
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match="incomplete or not a latent cache"):
        LatentCacheDataset(path)
    build_latent_cache(items, encoder, tmp_path, batch_size=5)
    assert encoder.calls == 2
    rebuilt = LatentCacheDataset(path).tensors
    assert rebuilt.keys() == good.keys() and all(torch.equal(rebuilt[k], good[k]) for k in good)
    assert not [p for p in tmp_path.iterdir() if p.name != path.name]  # no temporary files left


def test_cache_of_other_encoder_weights_or_data_size_is_rebuilt(items, encoder, tmp_path):
    build_latent_cache(items, encoder, tmp_path, batch_size=5)
    before = encoder_fingerprint(encoder)
    with torch.no_grad():
        next(encoder.parameters()).add_(0.1)
    assert encoder_fingerprint(encoder) != before
    build_latent_cache(items, encoder, tmp_path, batch_size=5)
    assert encoder.calls == 2
    build_latent_cache(items[:3], encoder, tmp_path, batch_size=5)
    assert encoder.calls == 3 and len(LatentCacheDataset(tmp_path)) == 3


def test_cache_of_other_data_of_the_same_size_is_rebuilt(items, encoder, tmp_path):
    build_latent_cache(items, encoder, tmp_path, batch_size=5)
    shifted = [{**item, "image": item["image"].roll(1, dims=-1)} for item in items]  # e.g. another windowing
    build_latent_cache(shifted, encoder, tmp_path, batch_size=5)
    assert encoder.calls == 2
    with torch.no_grad():
        expected = encoder.space.encode(torch.stack([item["image"] for item in shifted]))  # the cache's one batch
    assert torch.equal(LatentCacheDataset(tmp_path)[4]["image"], expected[4])
    relabelled = [{**item, "conditions": item["conditions"] + 1} for item in shifted]  # same signals, new conditions
    build_latent_cache(relabelled, encoder, tmp_path, batch_size=5)
    assert encoder.calls == 3 and torch.equal(LatentCacheDataset(tmp_path)[0]["conditions"], relabelled[0]["conditions"])
    build_latent_cache([dict(item) for item in relabelled], encoder, tmp_path, batch_size=5)
    assert encoder.calls == 3  # equal content (new objects) reuses the cache


def test_bad_inputs_are_named(items, encoder, tmp_path):
    with pytest.raises(ValueError, match="empty data set"):
        build_latent_cache([], encoder, tmp_path)
    with pytest.raises(ValueError, match=r"items have no 'latent'.*'image'"):
        build_latent_cache(items, encoder, tmp_path, image_key="latent")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LatentCacheDataset(tmp_path / "nowhere")
    build_latent_cache(items, encoder, tmp_path)
    with pytest.raises(IndexError, match="has 5 items, got index 5"):
        LatentCacheDataset(tmp_path)[5]


def test_stage_two_trains_a_conditional_denoiser_on_cached_latents(items, encoder, tmp_path):
    build_latent_cache(items, encoder, tmp_path, batch_size=5)
    torch.manual_seed(0)
    phenotypes = PhenotypeEncoder([0, 2], embed_dim=8)
    network = ConditionalDenoiser(
        DenoisingUNet(1, 4, 4, channels=(8, 8), attention_levels=(False, True), num_res_blocks=1, norm_num_groups=4,
                      with_conditioning=True, cross_attention_dim=8, num_head_channels=8),
        phenotype_encoder=phenotypes)
    before = [p.detach().clone() for p in phenotypes.parameters()]
    setup = build_diffusion_trainer(
        network, DiffusionObjective(CosineSchedule(0.05)), DataLoader(LatentCacheDataset(tmp_path), batch_size=5),
        optimizer=torch.optim.Adam(network.parameters(), 1e-3), max_epochs=3,
    )
    setup.trainer.run()
    assert setup.trainer.state.iteration == 3 and torch.isfinite(setup.trainer.state.output["loss"])
    # the cached conditions reached the network: the phenotype encoder was trained
    assert any(not torch.equal(b, p) for b, p in zip(before, phenotypes.parameters(), strict=True))
