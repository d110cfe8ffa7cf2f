"""Post-hoc conditioning: a linear probe on autoencoder embeddings of real ECG windows, exact steering, sweeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import wfdb

from monai_gen.diffusion.latent import LatentScaler, LatentSpace
from monai_gen.diffusion.posthoc import LinearProbe
from monai_gen.diffusion.samplers import sample
from monai_gen.diffusion.schedules import CosineSchedule
from monai_gen.networks.autoencoders import kl_autoencoder
from monai_gen.networks.conditioning import ConditionalDenoiser, EmbeddingEncoder
from monai_gen.networks.nets import DenoisingUNet
from monai_gen.networks.precond import make_denoiser


@pytest.fixture(scope="module")
def ecg_space() -> LatentSpace:
    """A tiny 1D KL autoencoder for 12-lead ECG (8x compression, 2 latent channels) with a min-max scaler."""
    torch.manual_seed(0)
    ae = kl_autoencoder(1, 12, channels=(8, 8, 8, 8), latent_channels=2, norm_num_groups=4).eval()
    return LatentSpace(ae, LatentScaler("minmax"))


@pytest.fixture(scope="module")
def embeddings(shared_data, ecg_space) -> torch.Tensor:
    """Embeddings (100, 32) of two 128-sample windows from each of the 50 real CinC 2021 records."""
    windows = []
    for header in sorted((shared_data / "ecg" / "cinc2021").glob("*.hea")):
        signal = np.nan_to_num(wfdb.rdrecord(str(header.with_suffix(""))).p_signal.T.astype(np.float32))
        windows += [signal[:, 1000:1128], signal[:, 3000:3128]]
    x = torch.from_numpy(np.stack(windows))
    with torch.no_grad():
        ecg_space.fit_scaler(x)
        return ecg_space.encode(x).flatten(1)


def test_ridge_probe_recovers_a_linear_relation_on_real_embeddings(embeddings):
    w_true = torch.linspace(-1.0, 1.0, embeddings.shape[1], dtype=torch.float64)
    y = embeddings.double() @ w_true + 3.0
    probe = LinearProbe("regression", alpha=1e-8).fit(embeddings, y)
    cosine = torch.nn.functional.cosine_similarity(probe.weight, w_true, dim=0)
    assert cosine > 0.9999, cosine
    torch.testing.assert_close(probe.predict(embeddings), y, atol=1e-4 * y.abs().max().item(), rtol=0)


def test_logistic_probe_separates_a_linear_binary_phenotype(embeddings):
    direction = torch.randn(embeddings.shape[1], generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    score = embeddings.double() @ direction
    labels = (score > score.median()).double()
    probe = LinearProbe("logistic", alpha=1e-3).fit(embeddings, labels)
    accuracy = ((probe.predict(embeddings) > 0.5).double() == labels).double().mean()
    assert accuracy >= 0.95, accuracy  # the direction itself is not identifiable: the classes are separable


@pytest.mark.parametrize("kind", ["regression", "logistic"])
def test_steering_hits_the_requested_value_with_the_smallest_move(embeddings, kind):
    score = embeddings.double() @ torch.linspace(0.0, 1.0, embeddings.shape[1], dtype=torch.float64)
    targets = (score > score.median()).double() if kind == "logistic" else score
    probe = LinearProbe(kind, alpha=1e-2).fit(embeddings, targets)
    wanted = torch.tensor([0.2, 0.9, 0.5, 0.05]) if kind == "logistic" else torch.tensor([-2.0, 0.0, 1.5, 40.0])
    steered = probe.steer(embeddings[:4], wanted)
    assert steered.dtype == embeddings.dtype and steered.shape == (4, embeddings.shape[1])
    torch.testing.assert_close(probe.predict(steered), wanted.double(), atol=1e-5, rtol=1e-5)
    move = (steered - embeddings[:4]).double()  # parallel to w: nothing orthogonal to the probe direction changes
    orthogonal = move - (move @ probe.weight)[:, None] * probe.weight / probe.weight.square().sum()
    assert orthogonal.abs().max() < 1e-5


def test_steering_keeps_the_trailing_shape_of_spatial_latents(ecg_space):
    latents = torch.randn(20, 2, 16, generator=torch.Generator().manual_seed(0))
    probe = LinearProbe(alpha=1e-3).fit(latents, latents[:, 0, :4].sum(1))
    steered = probe.steer(latents[:3], 7.0)
    assert steered.shape == (3, 2, 16)
    torch.testing.assert_close(probe(steered), torch.full((3,), 7.0, dtype=torch.float64), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind, start, stop", [("regression", 80.0, -20.0), ("logistic", 0.1, 0.9)])
def test_sweep_is_monotone_and_even_in_the_probe_prediction(embeddings, kind, start, stop):
    score = embeddings.double().sum(1)
    probe = LinearProbe(kind, alpha=1e-2).fit(
        embeddings, (score > score.median()).double() if kind == "logistic" else score
    )
    path = probe.sweep(embeddings[5:6], start, stop, steps=7)
    predicted = probe.predict(path)
    torch.testing.assert_close(predicted, torch.linspace(start, stop, 7, dtype=torch.float64), atol=1e-5, rtol=1e-5)
    steps = predicted.diff()
    assert (steps < 0).all() if stop < start else (steps > 0).all()


def test_probe_state_dict_round_trip(embeddings):
    probe = LinearProbe(alpha=0.5).fit(embeddings, embeddings[:, 0] * 2)
    fresh = LinearProbe(alpha=0.5)
    fresh.load_state_dict(probe.state_dict())
    torch.testing.assert_close(fresh.predict(embeddings), probe.predict(embeddings))


def test_steered_embeddings_condition_a_latent_diffusion_model(embeddings, ecg_space):
    """End to end: the swept embeddings are the `embedding` condition of the colleague's ConditionalDenoiser, sampled
    in latent space and decoded to ECG; the same seed with different probe values gives different ECGs."""
    probe = LinearProbe(alpha=1e-2).fit(embeddings, embeddings.double().sum(1))
    path = probe.sweep(embeddings[:1], -1.0, 1.0, steps=3)
    torch.manual_seed(0)
    backbone = DenoisingUNet(
        1, 2, 2, channels=(8, 8), attention_levels=(False, True), norm_num_groups=4,
        with_conditioning=True, cross_attention_dim=8,
    )  # fmt: skip
    model = ConditionalDenoiser(
        backbone, embedding_encoder=EmbeddingEncoder(embeddings.shape[1], 8, num_tokens=2)
    ).eval()
    with torch.no_grad():  # MONAI zero-initialises output and attention projections: give the untrained net a voice
        for p in model.parameters():
            if not p.any():
                p.normal_(std=0.1)
    schedule = CosineSchedule()
    denoise = make_denoiser(model, schedule)
    with torch.no_grad():
        z = sample(denoise, schedule, (3, 2, 16), num_steps=3, seeds=[7, 7, 7], embedding=path)
        alone = sample(denoise, schedule, (1, 2, 16), num_steps=3, seeds=[7], embedding=path[2:])
        ecg = ecg_space.decode(z)
    assert ecg.shape == (3, 12, 128) and torch.isfinite(ecg).all()
    torch.testing.assert_close(alone[0], z[2])  # the condition, not the batch, decides the sample
    assert not torch.allclose(ecg[0], ecg[2])  # same noise, different probe value


def test_bad_probe_input_is_rejected(embeddings):
    with pytest.raises(ValueError, match="logistic"):
        LinearProbe("classifier")
    with pytest.raises(ValueError, match="alpha must be > 0, got 0"):
        LinearProbe(alpha=0)
    with pytest.raises(ValueError, match="not fitted yet"):
        LinearProbe().predict(embeddings)
    with pytest.raises(ValueError, match=r"one value per embedding \(100\), got 99"):
        LinearProbe().fit(embeddings, torch.zeros(99))
    with pytest.raises(ValueError, match="0 / 1 with both classes"):
        LinearProbe("logistic").fit(embeddings, torch.arange(100.0))
    with pytest.raises(ValueError, match="embeddings must be finite"):
        LinearProbe().fit(torch.full((3, 2), float("nan")), torch.zeros(3))
    probe = LinearProbe().fit(embeddings, embeddings[:, 0])
    with pytest.raises(ValueError, match="must have 32 features per sample, got 31"):
        probe.steer(embeddings[:, :31], 1.0)
    with pytest.raises(ValueError, match=r"one value or one per embedding \(4\), got 2"):
        probe.steer(embeddings[:4], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"shape \(1, \*feature\), got \(32,\)"):
        probe.sweep(embeddings[0], 0.0, 1.0, steps=3)
    with pytest.raises(ValueError, match="steps must be >= 2, got 1"):
        probe.sweep(embeddings[:1], 0.0, 1.0, steps=1)
    logistic = LinearProbe("logistic").fit(embeddings, (embeddings[:, 0] > embeddings[:, 0].median()).double())
    with pytest.raises(ValueError, match=r"probabilities in \(0, 1\), got \[1.0\]"):
        logistic.steer(embeddings[:1], 1.0)
