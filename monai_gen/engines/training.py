"""A MONAI ``SupervisedTrainer`` set up for diffusion training, from plain arguments.

:func:`build_diffusion_trainer` composes MONAI / Ignite pieces only — ``SupervisedTrainer`` with the
:class:`~monai_gen.engines.diffusion_trainer.DiffusionIteration` step (per-iteration seeding, AMP, gradient
clipping), ignite's ``EMAHandler``, MONAI's ``LrScheduleHandler`` and ``TensorBoardStatsHandler``, and the
atomic checkpoint / resume handlers of :mod:`monai_gen.engines.checkpointing` — so a bundle config may call it
or list the same pieces itself. Pixel-space and latent-space (cached latents,
:class:`~monai_gen.engines.latent_cache.LatentCacheDataset`) training differ only in the data loader.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ignite.distributed as idist
import torch
from ignite.handlers import EMAHandler
from monai.engines import SupervisedTrainer
from monai.handlers import LrScheduleHandler, TensorBoardStatsHandler
from monai.utils import CommonKeys

from monai_gen.engines.checkpointing import AtomicCheckpointSaver, RandomStates, ResumeFromLatest
from monai_gen.engines.diffusion_trainer import DiffusionIteration

__all__ = ["DiffusionTraining", "build_diffusion_trainer"]


@dataclass
class DiffusionTraining:
    """What :func:`build_diffusion_trainer` assembled.

    Attributes:
        trainer: the MONAI ``SupervisedTrainer``; ``trainer.run()`` trains (resuming first if set up).
        ema: ignite ``EMAHandler`` (``ema.ema_model`` holds the averaged weights), or None.
        checkpoint_dict: ``{name: object}`` saved in every checkpoint and restored on resume.
        saver: the checkpoint writer, or None.
        resume: the resume handler (``resume.loaded_from`` is the checkpoint used, if any), or None.
    """

    trainer: SupervisedTrainer
    ema: EMAHandler | None
    checkpoint_dict: dict[str, Any] = field(default_factory=dict)
    saver: AtomicCheckpointSaver | None = None
    resume: ResumeFromLatest | None = None


def build_diffusion_trainer(
    network: torch.nn.Module,
    objective: Any,
    train_loader: Any,
    *,
    optimizer: torch.optim.Optimizer,
    max_epochs: int,
    device: str | torch.device = "cpu",
    lr_scheduler: Any = None,
    ema_momentum: float | None = None,
    max_grad_norm: float | None = 1.0,
    amp: bool = False,
    seed: int = 0,
    image_key: str = "image",
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    n_saved: int | None = 2,
    resume: bool = True,
    log_dir: str | os.PathLike | None = None,
    handlers: Sequence[Any] = (),
) -> DiffusionTraining:
    """Build a diffusion ``SupervisedTrainer`` with EMA, LR schedule, TensorBoard, atomic checkpoints and resume.

    Args:
        network: the denoiser ``network(x_t, t, **conditions)`` (DDP-wrapped in a multi-process run).
        objective: ``objective(network, x0, *, generator, **conditions) -> loss``
            (:class:`monai_gen.diffusion.objectives.DiffusionObjective`).
        train_loader: batches of dicts with ``image_key`` ``(B, C, *spatial)`` and optional condition keys; for
            exact resume use a :func:`~monai_gen.engines.distributed.seeded_sampler`.
        optimizer: optimizer over ``network``'s parameters.
        max_epochs: total epochs (a resumed run continues up to this count).
        device: training device.
        lr_scheduler: a ``torch.optim.lr_scheduler`` stepped every iteration, checkpointed.
        ema_momentum: ignite EMA momentum (weight of the new parameters per iteration); None = no EMA.
        max_grad_norm: gradient-clipping norm; None = no clipping.
        amp: mixed precision (worth it on GPUs; on CPU bf16 autocast is usually slower than fp32).
        seed: base seed of the per-iteration noise / time draws (``seed * world_size + rank`` on each rank, so
            DDP ranks draw independent noise; a single process uses ``seed`` itself).
        image_key: batch key of the clean data.
        checkpoint_dir: folder of atomic checkpoints; None = no checkpoints, no resume.
        checkpoint_every: checkpoint interval in iterations (0 = only the final one); use a multiple of the
            epoch length for bitwise-exact resume.
        n_saved: newest checkpoints kept.
        resume: load the newest complete checkpoint of ``checkpoint_dir`` before training.
        log_dir: TensorBoard folder for the loss (rank 0 only); None = no TensorBoard.
        handlers: further MONAI / Ignite handlers (validation, MLflow, ...), attached after the built-in ones.

    Raises:
        ValueError: ``max_epochs`` < 1, ``checkpoint_every`` < 0, or ``ema_momentum`` outside (0, 1].
    """
    if int(max_epochs) < 1:
        raise ValueError(f"max_epochs must be >= 1, got {max_epochs!r}.")
    if int(checkpoint_every) < 0:
        raise ValueError(f"checkpoint_every must be >= 0 iterations, got {checkpoint_every!r}.")
    if ema_momentum is not None and not 0.0 < float(ema_momentum) <= 1.0:
        raise ValueError(f"ema_momentum must be in (0, 1], got {ema_momentum!r}.")
    ema = None if ema_momentum is None else EMAHandler(network, momentum=float(ema_momentum))
    built = _handlers(ema, lr_scheduler, log_dir) + list(handlers)
    rank_seed = int(seed) * idist.get_world_size() + idist.get_rank()  # ranks draw different noise / times
    step = DiffusionIteration(objective, image_key=image_key, max_grad_norm=max_grad_norm, seed=rank_seed)
    trainer = SupervisedTrainer(
        device=torch.device(device), max_epochs=int(max_epochs), train_data_loader=train_loader, network=network,
        optimizer=optimizer, loss_function=torch.nn.MSELoss(), iteration_update=step, train_handlers=built, amp=amp,
        decollate=False,  # the output stays {"image": x0, "loss": scalar}
    )
    setup = DiffusionTraining(trainer, ema, _checkpoint_dict(trainer, ema, lr_scheduler))
    if checkpoint_dir is not None:
        if resume:
            setup.resume = ResumeFromLatest(checkpoint_dir, setup.checkpoint_dict, map_location=torch.device(device))
            setup.resume.attach(trainer)
        every = int(checkpoint_every) or trainer.state.epoch_length * int(max_epochs)
        setup.saver = AtomicCheckpointSaver(checkpoint_dir, setup.checkpoint_dict, every=every, n_saved=n_saved)
        setup.saver.attach(trainer)
    return setup


def _handlers(ema: EMAHandler | None, lr_scheduler: Any, log_dir: str | os.PathLike | None) -> list[Any]:
    out: list[Any] = [] if ema is None else [ema]
    if lr_scheduler is not None:
        out.append(LrScheduleHandler(lr_scheduler, print_lr=False, epoch_level=False))
    if log_dir is not None and idist.get_rank() == 0:
        out.append(TensorBoardStatsHandler(
            log_dir=str(log_dir), tag_name="train_loss", output_transform=_loss_value,
        ))
    return out


def _loss_value(output: dict[str, torch.Tensor]) -> float:
    return float(output[CommonKeys.LOSS])


def _checkpoint_dict(trainer: SupervisedTrainer, ema: EMAHandler | None, lr_scheduler: Any) -> dict[str, Any]:
    out = {"network": trainer.network, "optimizer": trainer.optimizer, "trainer": trainer, "rng": RandomStates()}
    if ema is not None:
        out["ema"] = ema.ema_model
    if lr_scheduler is not None:
        out["lr_scheduler"] = lr_scheduler
    return out
