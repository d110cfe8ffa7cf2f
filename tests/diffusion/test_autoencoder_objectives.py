"""Autoencoder generator / discriminator losses: analytic terms, delayed adversarial start, offline perceptual path."""

from __future__ import annotations

import importlib.util

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.networks.nets import PatchDiscriminator

from monai_gen.diffusion.autoencoder_objectives import AutoencoderDiscriminatorLoss, AutoencoderGeneratorLoss
from monai_gen.networks.autoencoders import kl_autoencoder, vq_autoencoder


def _mri(shared_data, spatial_dims: int) -> torch.Tensor:
    """Four real T1 crops (4, 1, 32, 32) or (4, 1, 16, 16, 16) scaled to [0, 1]."""
    path = sorted((shared_data / "brain_mri" / "ixi10_2mm" / "nifti").glob("*.nii.gz"))[1]
    vol = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    vol = np.clip(vol / np.percentile(vol, 99), 0, 1)
    size = 32 if spatial_dims == 2 else 16
    crops = [vol[c : c + size, c : c + size, 40 : 40 + size] for c in (40, 46, 52, 58)]
    crops = [crop[..., size // 2] if spatial_dims == 2 else crop for crop in crops]
    return torch.from_numpy(np.stack(crops))[:, None]


def _disc(spatial_dims: int = 2) -> PatchDiscriminator:
    torch.manual_seed(1)
    return PatchDiscriminator(spatial_dims=spatial_dims, num_layers_d=2, channels=8, in_channels=1)


def test_reconstruction_and_latent_terms_are_analytic():
    images = torch.rand(2, 1, 8, 8)
    mu, sigma = torch.ones(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    l1 = AutoencoderGeneratorLoss(kl_weight=0.1, adversarial_weight=0.0)
    terms = l1.terms(images, (images + 0.5, mu, sigma))
    torch.testing.assert_close(terms["reconstruction"], torch.tensor(0.5))
    # KL(N(1, 1) || N(0, 1)) = 1/2 per latent element, summed over 3*4*4 elements
    torch.testing.assert_close(terms["latent"], torch.tensor(0.1 * 0.5 * 48))
    torch.testing.assert_close(l1.terms(images, (images, 0 * mu, sigma))["latent"], torch.tensor(0.0))
    l2 = AutoencoderGeneratorLoss(reconstruction="l2", quantisation_weight=2.0, adversarial_weight=0.0)
    total = l2(images, (images - 0.5, torch.tensor(0.25)))
    torch.testing.assert_close(total, torch.tensor(0.25 + 2.0 * 0.25))


def test_adversarial_terms_are_zero_and_discriminator_unused_before_start():
    images, disc = torch.rand(2, 1, 16, 16), _disc()
    recon = images.flip(-1).requires_grad_(True)
    g_loss = AutoencoderGeneratorLoss(adversarial_weight=0.5, adversarial_start=10)
    terms = g_loss.terms(images, (recon, torch.tensor(0.0)), discriminator=disc, iteration=9)
    assert terms["adversarial"].item() == 0.0 and not g_loss.adversarial_active(9)
    sum(terms.values()).backward()
    assert all(p.grad is None for p in disc.parameters())  # the discriminator was not even called
    d_loss = AutoencoderDiscriminatorLoss(start=10)
    before = d_loss(images, recon, disc, iteration=9)
    assert before.item() == 0.0 and not before.requires_grad and not d_loss.active(9)


@pytest.mark.parametrize("criterion", ["least_squares", "hinge", "bce"])
def test_generator_adversarial_term_pushes_fakes_towards_real(criterion):
    images, disc = torch.rand(2, 1, 16, 16), _disc().eval()  # eval: BatchNorm uses fixed statistics
    recon = torch.rand(2, 1, 16, 16, requires_grad=True)
    g_loss = AutoencoderGeneratorLoss(adversarial_weight=0.5, adversarial_start=10, adversarial_criterion=criterion)
    adv = g_loss.terms(images, (recon, torch.tensor(0.0)), discriminator=disc, iteration=10)["adversarial"]
    logits = disc(recon)[-1]
    if criterion == "least_squares":
        torch.testing.assert_close(adv, 0.5 * (logits - 1).square().mean())  # fakes pushed to "real" (1)
    adv.backward()
    with torch.no_grad():  # a small step against the gradient makes the critic call the fake more real
        moved = disc(recon - 1e-2 * recon.grad / recon.grad.norm())[-1]
    assert moved.mean() > logits.mean()


def test_discriminator_loss_after_start_has_the_right_value_and_trains_the_critic_only():
    images, disc = torch.rand(2, 1, 16, 16), _disc().eval()
    recon = torch.rand(2, 1, 16, 16, requires_grad=True)
    d_loss = AutoencoderDiscriminatorLoss(weight=2.0, start=10)
    loss = d_loss(images, recon, disc, iteration=10)
    expected = 2.0 * 0.5 * ((disc(images)[-1] - 1).square().mean() + disc(recon)[-1].square().mean())
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert recon.grad is None  # the reconstruction is detached: only the critic learns from this loss
    opt = torch.optim.SGD(disc.parameters(), lr=1e-2)
    opt.step()
    assert d_loss(images, recon, disc, iteration=11) < loss


@pytest.mark.parametrize("kind, spatial_dims", [("kl", 2), ("vq", 3)])
def test_few_adversarial_training_steps_on_real_mri_lower_reconstruction_error(shared_data, kind, spatial_dims):
    images = _mri(shared_data, spatial_dims)
    torch.manual_seed(0)
    if kind == "kl":
        model = kl_autoencoder(spatial_dims, 1, channels=(8, 8, 16), latent_channels=4, norm_num_groups=4)
    else:
        model = vq_autoencoder(spatial_dims, 1, channels=(8, 16), num_embeddings=32, embedding_dim=4)
    disc = _disc(spatial_dims)
    g_loss = AutoencoderGeneratorLoss(adversarial_weight=0.01, adversarial_start=10)
    d_loss = AutoencoderDiscriminatorLoss(start=10)
    g_opt = torch.optim.Adam(model.parameters(), lr=1e-2 if kind == "kl" else 3e-3)
    d_opt = torch.optim.Adam(disc.parameters(), lr=1e-3)
    with torch.no_grad():
        before = g_loss.terms(images, model.eval()(images))["reconstruction"].item()
    model.train()
    for step in range(30):
        g_opt.zero_grad()
        outputs = model(images)
        g_loss(images, outputs, discriminator=disc, iteration=step).backward()
        g_opt.step()
        if d_loss.active(step):
            d_opt.zero_grad()
            d_loss(images, outputs[0], disc, iteration=step).backward()
            d_opt.step()
    with torch.no_grad():
        after = g_loss.terms(images, model.eval()(images))["reconstruction"].item()
    assert after < 0.8 * before, (before, after)  # seeded; observed 0.24 (KL 2D) and 0.63 (VQ 3D)


def test_perceptual_term_is_off_by_default_and_never_downloads(tmp_path):
    default = AutoencoderGeneratorLoss()
    assert default.perceptual is None
    x = torch.rand(2, 1, 16, 16)
    assert "perceptual" not in default.terms(x, (x, torch.tensor(0.0)), discriminator=_disc())
    with pytest.raises(ValueError, match="needs perceptual_weights, a local ResNet-50 state-dict file"):
        AutoencoderGeneratorLoss(perceptual_weight=0.1)
    missing = tmp_path / "resnet50.pth"
    with pytest.raises(FileNotFoundError, match="resnet50.pth' does not exist"):
        AutoencoderGeneratorLoss(perceptual_weight=0.1, perceptual_weights=missing)
    with pytest.raises(ValueError, match="spatial_dims 2 or 3, got 1"):
        AutoencoderGeneratorLoss(perceptual_weight=0.1, perceptual_weights=missing, spatial_dims=1)
    if importlib.util.find_spec("torchvision") is None:
        missing.write_bytes(b"not used")
        with pytest.raises(ImportError, match="needs torchvision"):
            AutoencoderGeneratorLoss(perceptual_weight=0.1, perceptual_weights=missing)


def test_bad_options_and_inputs_are_rejected():
    with pytest.raises(ValueError, match="l2"):
        AutoencoderGeneratorLoss(reconstruction="l3")
    with pytest.raises(ValueError, match="least_squares"):
        AutoencoderDiscriminatorLoss(criterion="wasserstein")
    with pytest.raises(ValueError, match="kl_weight must be >= 0, got -1"):
        AutoencoderGeneratorLoss(kl_weight=-1)
    with pytest.raises(ValueError, match="adversarial_start must be >= 0, got -5"):
        AutoencoderGeneratorLoss(adversarial_start=-5)
    g_loss = AutoencoderGeneratorLoss(adversarial_start=3)
    x = torch.zeros(1, 1, 8, 8)
    with pytest.raises(ValueError, match="got Tensor"):
        g_loss(x, x)
    with pytest.raises(ValueError, match=r"reconstruction shape \(1, 1, 4, 4\) differs from images \(1, 1, 8, 8\)"):
        g_loss(x, (torch.zeros(1, 1, 4, 4), torch.tensor(0.0)))
    with pytest.raises(ValueError, match="discriminator is required from iteration 3"):
        g_loss(x, (x, torch.tensor(0.0)), iteration=3)
    with pytest.raises(ValueError, match="iteration must be >= 0, got -1"):
        g_loss(x, (x, torch.tensor(0.0)), iteration=-1)
