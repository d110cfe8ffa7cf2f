"""Training objectives of the latent-diffusion autoencoders (stage 1): generator and patch-discriminator losses.

The generator loss is ``reconstruction (L1 / L2) + latent penalty (KL for AutoencoderKL, the VQ commitment term for
VQVAE) + adversarial_weight * patch-adversarial + perceptual_weight * perceptual``; the adversarial terms switch on
at ``adversarial_start`` iterations. Everything works offline: the perceptual term is off by default and, when
requested, loads its network only from a local weights file. The loop that alternates the two optimisers belongs to
the engines; these classes are the callables it uses.

See:
    Rombach et al. 2022 (LDM; not in shared/papers): autoencoder trained with L1 + LPIPS + patch-GAN + small KL.
    Medical Diffusion (Khader et al. 2023), §2.3 "VQ-GAN": commitment (EMA codebook) and patch-adversarial losses.
    Medfusion (Müller-Franzes et al. 2023), Methods: VAE with reconstruction, KL and perceptual losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from monai.losses import PatchAdversarialLoss, PerceptualLoss
from monai.utils import look_up_option, optional_import
from torch import nn

__all__ = ["ADVERSARIAL_CRITERIA", "RECONSTRUCTION_LOSSES", "AutoencoderDiscriminatorLoss", "AutoencoderGeneratorLoss"]

RECONSTRUCTION_LOSSES = ("l1", "l2")
ADVERSARIAL_CRITERIA = ("least_squares", "hinge", "bce")
_, _has_torchvision = optional_import("torchvision")


def _logits(discriminator: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Last output of a (MONAI Patch-)discriminator: it returns every layer's features, the logits last."""
    out = discriminator(images)
    return out[-1] if isinstance(out, (list, tuple)) else out


def _check_iteration(iteration: int) -> None:
    if iteration < 0:
        raise ValueError(f"iteration must be >= 0, got {iteration}.")


def _perceptual_loss(spatial_dims: int, weights: str | Path | None, state_dict_key: str | None) -> PerceptualLoss:
    """MONAI's ResNet-50 perceptual loss (2D, or 2.5D for 3D) from a local weights file; never downloads."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"the perceptual loss needs spatial_dims 2 or 3, got {spatial_dims}.")
    if weights is None:
        raise ValueError(
            "perceptual_weight > 0 needs perceptual_weights, a local ResNet-50 state-dict file: monai_gen never "
            "downloads weights at run time."
        )
    if not Path(weights).is_file():
        raise FileNotFoundError(f"perceptual_weights file {str(weights)!r} does not exist (nothing is downloaded).")
    if not _has_torchvision:
        raise ImportError(
            "the perceptual loss needs torchvision (MONAI's ResNet-50 feature extractor): pip install torchvision."
        )
    return PerceptualLoss(
        spatial_dims=spatial_dims,
        network_type="resnet50",
        is_fake_3d=spatial_dims == 3,
        pretrained=True,
        pretrained_path=str(weights),
        pretrained_state_dict_key=state_dict_key,
    )


class AutoencoderGeneratorLoss(nn.Module):
    """Autoencoder (generator) loss: reconstruction + latent penalty + delayed patch-adversarial (+ perceptual) terms.

    ``outputs`` is the autoencoder's forward output: ``(reconstruction, z_mu, z_sigma)`` from ``AutoencoderKL`` (the
    penalty is the KL divergence to N(0, I), summed over latent channels and positions, averaged over the batch) or
    ``(reconstruction, quantisation_loss)`` from ``VQVAE`` (the penalty is that commitment loss).

    Args:
        reconstruction: ``"l1"`` or ``"l2"`` (mean over all voxels).
        kl_weight: weight of the KL term (LDM: 1e-6).
        quantisation_weight: weight of the VQ commitment term.
        adversarial_weight: weight of the generator's patch-adversarial term; 0 disables it.
        adversarial_start: iteration from which the adversarial term counts (before it, the discriminator is not
            even called).
        adversarial_criterion: ``"least_squares"``, ``"hinge"`` or ``"bce"`` (MONAI ``PatchAdversarialLoss``).
        perceptual_weight: weight of the perceptual term; 0 (default) disables it and loads nothing.
        perceptual_weights: local ResNet-50 state-dict file for MONAI's ``PerceptualLoss`` (needed when
            ``perceptual_weight > 0``; never downloaded; needs torchvision; expects images in [0, 1], 2D or 2.5D).
        perceptual_state_dict_key: key of the state dict inside that file, if nested.
        spatial_dims: spatial dims of the images; only needed for the perceptual term.

    Raises:
        ValueError: an unknown option, a negative weight, or a perceptual term without a local weights file.
        FileNotFoundError: ``perceptual_weights`` does not exist.

    Examples:
        >>> g_loss = AutoencoderGeneratorLoss(adversarial_weight=0.01, adversarial_start=1000)
        >>> loss = g_loss(images, autoencoder(images), discriminator=disc, iteration=step)
    """

    def __init__(
        self,
        *,
        reconstruction: str = "l1",
        kl_weight: float = 1e-6,
        quantisation_weight: float = 1.0,
        adversarial_weight: float = 0.01,
        adversarial_start: int = 0,
        adversarial_criterion: str = "least_squares",
        perceptual_weight: float = 0.0,
        perceptual_weights: str | Path | None = None,
        perceptual_state_dict_key: str | None = None,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        weights = {"kl_weight": kl_weight, "quantisation_weight": quantisation_weight}
        weights |= {"adversarial_weight": adversarial_weight, "perceptual_weight": perceptual_weight}
        for name, value in weights.items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}.")
        if adversarial_start < 0:
            raise ValueError(f"adversarial_start must be >= 0, got {adversarial_start}.")
        self.reconstruction = look_up_option(reconstruction, RECONSTRUCTION_LOSSES)
        self.kl_weight, self.quantisation_weight = kl_weight, quantisation_weight
        self.adversarial_weight, self.adversarial_start = adversarial_weight, adversarial_start
        self.adversarial = PatchAdversarialLoss(criterion=look_up_option(adversarial_criterion, ADVERSARIAL_CRITERIA))
        self.perceptual_weight = perceptual_weight
        self.perceptual = (
            _perceptual_loss(spatial_dims, perceptual_weights, perceptual_state_dict_key) if perceptual_weight else None
        )

    def adversarial_active(self, iteration: int) -> bool:
        """Whether the adversarial terms count at ``iteration`` (the discriminator step can be skipped otherwise)."""
        _check_iteration(iteration)
        return self.adversarial_weight > 0 and iteration >= self.adversarial_start

    def _latent_penalty(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        # The one place the two MONAI output conventions differ: (x_hat, mu, sigma) vs (x_hat, commitment loss).
        if len(outputs) == 3:
            mu, sigma = outputs[1], outputs[2]
            kl = 0.5 * (mu.square() + sigma.square() - torch.log(sigma.square()) - 1)
            return self.kl_weight * kl.flatten(1).sum(1).mean()
        return self.quantisation_weight * outputs[1].mean()

    def terms(
        self,
        images: torch.Tensor,
        outputs: Sequence[torch.Tensor],
        *,
        discriminator: nn.Module | None = None,
        iteration: int = 0,
    ) -> dict[str, torch.Tensor]:
        """The weighted loss terms (scalars): ``reconstruction``, ``latent``, ``adversarial`` [, ``perceptual``].

        Args:
            images: targets ``(B, C, *spatial)``.
            outputs: the autoencoder's forward output (see the class docstring).
            discriminator: the critic; needed once the adversarial term is active.
            iteration: the current training iteration (>= 0).
        """
        if not isinstance(outputs, (tuple, list)) or len(outputs) not in (2, 3):
            got = f"a {len(outputs)}-tuple" if isinstance(outputs, (tuple, list)) else type(outputs).__name__
            raise ValueError(
                "outputs must be the autoencoder's forward output, (reconstruction, z_mu, z_sigma) or "
                f"(reconstruction, quantisation_loss), got {got}."
            )
        recon = outputs[0]
        if recon.shape != images.shape:
            raise ValueError(f"reconstruction shape {tuple(recon.shape)} differs from images {tuple(images.shape)}.")
        error = recon - images
        terms = {"reconstruction": (error.abs() if self.reconstruction == "l1" else error.square()).mean()}
        terms["latent"] = self._latent_penalty(outputs)
        terms["adversarial"] = recon.new_zeros(())
        if self.adversarial_active(iteration):
            if discriminator is None:
                raise ValueError(f"discriminator is required from iteration {self.adversarial_start}, got None.")
            fake = _logits(discriminator, recon.contiguous().float())
            terms["adversarial"] = self.adversarial_weight * self.adversarial(fake, True, for_discriminator=False)
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual_weight * self.perceptual(recon.float(), images.float())
        return terms

    def forward(
        self,
        images: torch.Tensor,
        outputs: Sequence[torch.Tensor],
        *,
        discriminator: nn.Module | None = None,
        iteration: int = 0,
    ) -> torch.Tensor:
        """Total generator loss (scalar): the sum of :meth:`terms`."""
        return torch.stack(
            list(self.terms(images, outputs, discriminator=discriminator, iteration=iteration).values())
        ).sum()


class AutoencoderDiscriminatorLoss(nn.Module):
    """Patch-discriminator loss on real images and detached reconstructions, active from ``start``.

    ``weight * (L(D(x), real) + L(D(x_hat.detach()), fake)) / 2`` with MONAI's ``PatchAdversarialLoss``; gradients
    reach the discriminator only. Before ``start`` it returns a zero that does not require grad (check
    ``loss.requires_grad``, or :meth:`active`, to skip the discriminator step).

    Args:
        weight: loss weight.
        start: first iteration at which the discriminator trains; use the generator's ``adversarial_start``.
        criterion: ``"least_squares"``, ``"hinge"`` or ``"bce"``.

    Examples:
        >>> d_loss = AutoencoderDiscriminatorLoss(start=1000)
        >>> loss = d_loss(images, reconstruction, disc, iteration=step)
    """

    def __init__(self, *, weight: float = 1.0, start: int = 0, criterion: str = "least_squares") -> None:
        super().__init__()
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}.")
        self.weight, self.start = weight, start
        self.adversarial = PatchAdversarialLoss(criterion=look_up_option(criterion, ADVERSARIAL_CRITERIA))

    def active(self, iteration: int) -> bool:
        """Whether the discriminator trains at ``iteration``."""
        _check_iteration(iteration)
        return self.weight > 0 and iteration >= self.start

    def forward(
        self, images: torch.Tensor, reconstruction: torch.Tensor, discriminator: nn.Module, *, iteration: int = 0
    ) -> torch.Tensor:
        """Discriminator loss (scalar) for real ``images`` and generated ``reconstruction``, both ``(B, C, *spatial)``."""
        if not self.active(iteration):
            return images.new_zeros(())
        real = _logits(discriminator, images.contiguous().float())
        fake = _logits(discriminator, reconstruction.detach().contiguous().float())
        loss_real = self.adversarial(real, True, for_discriminator=True)
        loss_fake = self.adversarial(fake, False, for_discriminator=True)
        return self.weight * 0.5 * (loss_real + loss_fake)
