"""A MONAI ``SupervisedTrainer`` set up for diffusion training, from plain arguments.

:func:`build_diffusion_trainer` composes MONAI / Ignite pieces only — ``SupervisedTrainer`` with the
:class:`~monai_gen.engines.diffusion_trainer.DiffusionIteration` step (per-iteration seeding, AMP, gradient
clipping), ignite's ``EMAHandler``, MONAI's ``LrScheduleHandler`` and ``TensorBoardStatsHandler``, and the
atomic checkpoint / resume handlers of :mod:`monai_gen.engines.checkpointing` — so a bundle config may call it
or list the same pieces itself. Pixel-space and latent-space (cached latents,
:class:`~monai_gen.engines.latent_cache.LatentCacheDataset`) training differ only in the data loader;
:func:`build_autoencoder_trainer` is the stage-1 counterpart.

Mixed precision (``amp``) is off by default: measured on the 2-core CPU of the development machine, bf16 autocast
made a diffusion iteration about 4x slower than fp32 (``DenoisingUNet`` channels 32/64, batch 8 x 12 x 512:
1.1-1.4 s vs 4.3-6.2 s). Turn it on for GPUs.

Resume is bitwise exact, also from a checkpoint in the middle of an epoch, when the loader samples with
:func:`~monai_gen.engines.distributed.seeded_sampler` (``num_workers=0`` or deterministic workers) and the
transforms draw no randomness of their own outside the checkpointed global RNGs.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Events
from ignite.handlers import EMAHandler
from monai.engines import SupervisedTrainer
from monai.handlers import LrScheduleHandler, MLFlowHandler, TensorBoardStatsHandler
from monai.utils import CommonKeys

from monai_gen.engines.checkpointing import AtomicCheckpointSaver, RandomStates, ResumeFromLatest
from monai_gen.engines.diffusion_trainer import DiffusionIteration

__all__ = [
    "AutoencoderIteration",
    "DistributedTimeLimit",
    "TrainingInterrupted",
    "TrainingSetup",
    "build_autoencoder_trainer",
    "build_diffusion_trainer",
    "run_interruptible",
]


@dataclass
class TrainingSetup:
    """What :func:`build_diffusion_trainer` / :func:`build_autoencoder_trainer` assembled.

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
    mlflow_tracking_uri: str | None = None,
    handlers: Sequence[Any] = (),
) -> TrainingSetup:
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
        checkpoint_every: checkpoint interval in iterations (0 = only the final one).
        n_saved: newest checkpoints kept.
        resume: load the newest complete checkpoint of ``checkpoint_dir`` before training.
        log_dir: TensorBoard folder for the loss (rank 0 only); None = no TensorBoard.
        mlflow_tracking_uri: also log the loss with MONAI's ``MLFlowHandler`` (rank 0 only; needs ``mlflow``).
        handlers: further MONAI / Ignite handlers (validation, MLflow, ...), attached after the built-in ones.

    Raises:
        ValueError: ``max_epochs`` < 1, ``checkpoint_every`` < 0, ``ema_momentum`` outside (0, 1], or an MLflow
            URI without ``mlflow`` installed.
    """
    rank_seed = int(seed) * idist.get_world_size() + idist.get_rank()  # ranks draw different noise / times
    step = DiffusionIteration(objective, image_key=image_key, max_grad_norm=max_grad_norm, seed=rank_seed)
    return _assemble(
        network, step, train_loader, optimizer=optimizer, max_epochs=max_epochs, device=device,
        lr_scheduler=lr_scheduler, ema_momentum=ema_momentum, amp=amp, checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every, n_saved=n_saved, resume=resume, log_dir=log_dir, handlers=handlers,
        mlflow_tracking_uri=mlflow_tracking_uri,
    )


def _assemble(
    network: torch.nn.Module, step: Any, train_loader: Any, *, optimizer: torch.optim.Optimizer, max_epochs: int,
    device: str | torch.device, lr_scheduler: Any, ema_momentum: float | None, amp: bool,
    checkpoint_dir: str | os.PathLike | None, checkpoint_every: int, n_saved: int | None, resume: bool,
    log_dir: str | os.PathLike | None, handlers: Sequence[Any], mlflow_tracking_uri: str | None = None,
    extra_state: dict[str, Any] | None = None,
) -> TrainingSetup:
    """``SupervisedTrainer(iteration_update=step)`` with the EMA / LR / TensorBoard / checkpoint handlers."""
    if int(max_epochs) < 1:
        raise ValueError(f"max_epochs must be >= 1, got {max_epochs!r}.")
    if int(checkpoint_every) < 0:
        raise ValueError(f"checkpoint_every must be >= 0 iterations, got {checkpoint_every!r}.")
    if ema_momentum is not None and not 0.0 < float(ema_momentum) <= 1.0:
        raise ValueError(f"ema_momentum must be in (0, 1], got {ema_momentum!r}.")
    ema = None if ema_momentum is None else EMAHandler(network, momentum=float(ema_momentum))
    trainer = SupervisedTrainer(
        device=torch.device(device), max_epochs=int(max_epochs), train_data_loader=train_loader, network=network,
        optimizer=optimizer, loss_function=torch.nn.MSELoss(), iteration_update=step, amp=amp,
        train_handlers=_handlers(ema, lr_scheduler, log_dir, mlflow_tracking_uri) + list(handlers),
        decollate=False,  # the output stays a dict of batch tensors and scalar losses
    )
    setup = TrainingSetup(trainer, ema, _checkpoint_dict(trainer, ema, lr_scheduler) | (extra_state or {}))
    if checkpoint_dir is not None:
        if resume:
            setup.resume = ResumeFromLatest(checkpoint_dir, setup.checkpoint_dict, map_location=torch.device(device))
            setup.resume.attach(trainer)
        every = int(checkpoint_every) or trainer.state.epoch_length * int(max_epochs)
        setup.saver = AtomicCheckpointSaver(checkpoint_dir, setup.checkpoint_dict, every=every, n_saved=n_saved)
        setup.saver.attach(trainer)
    return setup


class AutoencoderIteration:
    """``iteration_update(engine, batch)`` for stage 1: an autoencoder step, then an optional discriminator step.

    The generator loss sees the autoencoder's forward output (``(x_hat, mu, sigma)`` of ``AutoencoderKL`` or
    ``(x_hat, vq_loss)`` of ``VQVAE``); the discriminator trains on real images and detached reconstructions once
    ``discriminator_loss.active(iteration)``. Randomness (the KL posterior sample) is seeded by
    ``(seed, iteration)`` as in :class:`~monai_gen.engines.diffusion_trainer.DiffusionIteration`.

    Args:
        generator_loss: ``generator_loss(x, outputs, *, discriminator, iteration) -> loss``
            (:class:`monai_gen.diffusion.autoencoder_objectives.AutoencoderGeneratorLoss`).
        discriminator: MONAI ``PatchDiscriminator`` (or None: no adversarial training).
        discriminator_loss: :class:`~monai_gen.diffusion.autoencoder_objectives.AutoencoderDiscriminatorLoss`.
        discriminator_optimizer: optimizer over the discriminator's parameters.
        image_key: batch key of the images ``(B, C, *spatial)``.
        max_grad_norm: gradient-clipping norm for both networks (None = none).
        seed: base seed of the per-iteration generators.

    See: Medical Diffusion (shared/papers 001), §2.3: VQ-GAN autoencoder with a patch-based discriminator at its
    output; Medfusion (shared/papers 003): the first training phase, autoencoder alone.

    Examples:
        >>> step = AutoencoderIteration(AutoencoderGeneratorLoss(adversarial_start=1000), discriminator=disc,
        ...                             discriminator_loss=AutoencoderDiscriminatorLoss(start=1000),
        ...                             discriminator_optimizer=d_opt)
        >>> trainer = SupervisedTrainer(..., iteration_update=step)
    """

    def __init__(
        self,
        generator_loss: Any,
        *,
        discriminator: torch.nn.Module | None = None,
        discriminator_loss: Any = None,
        discriminator_optimizer: torch.optim.Optimizer | None = None,
        image_key: str = "image",
        max_grad_norm: float | None = 1.0,
        seed: int = 0,
    ) -> None:
        parts = (discriminator, discriminator_loss, discriminator_optimizer)
        if any(p is None for p in parts) and any(p is not None for p in parts):
            given = [n for n, p in zip(("discriminator", "discriminator_loss", "discriminator_optimizer"), parts, strict=True)
                     if p is not None]
            raise ValueError(f"give all of discriminator, discriminator_loss, discriminator_optimizer or none; got {given}.")
        self.generator_loss, self.image_key, self.max_grad_norm, self.seed = generator_loss, image_key, max_grad_norm, seed
        self.discriminator, self.discriminator_loss, self.discriminator_optimizer = parts

    def __call__(self, engine: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.image_key not in batch:
            raise KeyError(f"training batch has no {self.image_key!r}; keys: {sorted(batch)}.")
        x, iteration = batch[self.image_key].to(engine.state.device), engine.state.iteration
        torch.manual_seed(int(self.seed) * 1_000_003 + iteration)  # MONAI's KL sampling uses the global RNG
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        with torch.autocast(x.device.type, enabled=bool(engine.amp)):
            outputs = engine.network(x)
            loss = self.generator_loss(x, outputs, discriminator=self.discriminator, iteration=iteration)
        self._step(engine, loss, engine.optimizer, engine.network, iteration)
        result = {CommonKeys.IMAGE: x, CommonKeys.PRED: outputs[0].detach(), CommonKeys.LOSS: loss.detach()}
        if self.discriminator is not None and self.discriminator_loss.active(iteration):
            self.discriminator.train()
            self.discriminator_optimizer.zero_grad(set_to_none=True)
            with torch.autocast(x.device.type, enabled=bool(engine.amp)):
                d_loss = self.discriminator_loss(x, outputs[0], self.discriminator, iteration=iteration)
            self._step(engine, d_loss, self.discriminator_optimizer, self.discriminator, iteration)
            result["discriminator_loss"] = d_loss.detach()
        if engine.amp and engine.scaler is not None:
            engine.scaler.update()
        return result

    def _step(self, engine: Any, loss: torch.Tensor, optimizer: Any, network: torch.nn.Module, iteration: int) -> None:
        if not torch.isfinite(loss):
            raise FloatingPointError(f"autoencoder loss became {loss.item()} at iteration {iteration}.")
        scaler = engine.scaler if engine.amp and engine.scaler is not None else None
        (loss if scaler is None else scaler.scale(loss)).backward()
        if scaler is not None:
            scaler.unscale_(optimizer)
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(network.parameters(), self.max_grad_norm)
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)  # scaler.update() once per iteration, after both steps


def build_autoencoder_trainer(
    autoencoder: torch.nn.Module,
    generator_loss: Any,
    train_loader: Any,
    *,
    optimizer: torch.optim.Optimizer,
    max_epochs: int,
    discriminator: torch.nn.Module | None = None,
    discriminator_loss: Any = None,
    discriminator_optimizer: torch.optim.Optimizer | None = None,
    max_grad_norm: float | None = 1.0,
    seed: int = 0,
    image_key: str = "image",
    **options: Any,
) -> TrainingSetup:
    """Build a stage-1 autoencoder ``SupervisedTrainer`` (:class:`AutoencoderIteration`) with the same handlers.

    Args:
        autoencoder: MONAI ``AutoencoderKL`` / ``VQVAE`` (e.g. from :mod:`monai_gen.networks.autoencoders`).
        generator_loss, discriminator, discriminator_loss, discriminator_optimizer, max_grad_norm, seed, image_key:
            see :class:`AutoencoderIteration`.
        train_loader, optimizer, max_epochs: as in :func:`build_diffusion_trainer`.
        options: ``device``, ``lr_scheduler``, ``ema_momentum``, ``amp``, ``checkpoint_dir``, ``checkpoint_every``,
            ``n_saved``, ``resume``, ``log_dir``, ``mlflow_tracking_uri``, ``handlers`` of :func:`build_diffusion_trainer`. The
            discriminator and its optimizer are checkpointed too.
    """
    step = AutoencoderIteration(
        generator_loss, discriminator=discriminator, discriminator_loss=discriminator_loss,
        discriminator_optimizer=discriminator_optimizer, image_key=image_key, max_grad_norm=max_grad_norm,
        seed=int(seed) * idist.get_world_size() + idist.get_rank(),
    )
    extra = {} if discriminator is None else {"discriminator": discriminator, "d_optimizer": discriminator_optimizer}
    settings = {"device": "cpu", "lr_scheduler": None, "ema_momentum": None, "amp": False, "checkpoint_dir": None,
                "checkpoint_every": 0, "n_saved": 2, "resume": True, "log_dir": None, "mlflow_tracking_uri": None,
                "handlers": ()}
    unknown = set(options) - set(settings)
    if unknown:
        raise TypeError(f"build_autoencoder_trainer got unknown options {sorted(unknown)}; allowed: {sorted(settings)}.")
    return _assemble(autoencoder, step, train_loader, optimizer=optimizer, max_epochs=max_epochs,
                     extra_state=extra, **(settings | options))


def _handlers(
    ema: EMAHandler | None, lr_scheduler: Any, log_dir: str | os.PathLike | None, mlflow_tracking_uri: str | None
) -> list[Any]:
    out: list[Any] = [] if ema is None else [ema]
    if lr_scheduler is not None:
        out.append(LrScheduleHandler(lr_scheduler, print_lr=False, epoch_level=False))
    if log_dir is not None and idist.get_rank() == 0:
        out.append(TensorBoardStatsHandler(
            log_dir=str(log_dir), tag_name="train_loss", output_transform=_loss_value,
        ))
    if mlflow_tracking_uri is not None:
        if importlib.util.find_spec("mlflow") is None:
            raise ValueError(f"mlflow_tracking_uri={mlflow_tracking_uri!r} given, but mlflow is not installed.")
        if idist.get_rank() == 0:
            out.append(MLFlowHandler(tracking_uri=mlflow_tracking_uri, tag_name="train_loss",
                                     output_transform=_loss_value))
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


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by :func:`run_interruptible` after a Ctrl-C ended training cleanly; ``iteration`` is the last one run."""

    def __init__(self, message: str, iteration: int) -> None:
        super().__init__(message)
        self.iteration = iteration


def run_interruptible(engine: Any) -> None:
    """``engine.run()`` where a first Ctrl-C (SIGINT) ends training after the current iteration, cleanly.

    The interrupted run finishes as a time limit would (ignite ``terminate()``: its ``COMPLETED`` handlers save the
    final checkpoint, so re-running the same command resumes there), then :class:`TrainingInterrupted` (a
    ``KeyboardInterrupt``) is raised instead of returning. A second Ctrl-C interrupts at once. In a
    multi-process run, or off the main thread, this is plain ``engine.run()`` (the launcher handles signals).

    Raises:
        TrainingInterrupted: the run was stopped by Ctrl-C.
    """
    if idist.get_world_size() > 1 or threading.current_thread() is not threading.main_thread():
        engine.run()
        return
    received: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        received.append(signum)
        signal.signal(signal.SIGINT, previous)  # a second Ctrl-C is not delayed
        engine.terminate()

    previous = signal.signal(signal.SIGINT, stop)
    try:
        engine.run()
    finally:
        if signal.getsignal(signal.SIGINT) is stop:
            signal.signal(signal.SIGINT, previous)
    if received:
        iteration = int(engine.state.iteration)
        raise TrainingInterrupted(f"training interrupted by Ctrl-C after iteration {iteration}", iteration)


class DistributedTimeLimit:
    """Ignite handler: end training cleanly once ``seconds`` have passed since the run started, on every rank at once.

    Like ignite's ``TimeLimit``, but the clock starts at ``STARTED`` (after data preparation) and, in a
    multi-process run, the ranks agree after each iteration (``all_reduce`` of the decision), so all of them
    stop at the same iteration; ranks that stopped apart would wait for each other's gradients forever. A
    stopped run completes as usual (final checkpoint, exported weights).

    Args:
        seconds: the training time limit (> 0).

    Raises:
        ValueError: ``seconds`` is not positive.
    """

    def __init__(self, seconds: float) -> None:
        if not float(seconds) > 0:
            raise ValueError(f"max_train_seconds must be > 0 seconds, got {seconds!r}.")
        self.seconds, self.start = float(seconds), 0.0

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def _start(self, engine: Any) -> None:
        self.start = time.monotonic()

    def __call__(self, engine: Any) -> None:
        expired = torch.tensor(float(time.monotonic() - self.start > self.seconds))
        if idist.get_world_size() > 1:
            expired = idist.all_reduce(expired, op="MAX")
        if float(expired) > 0:
            engine.logger.info("training time limit of %g s reached; stopping.", self.seconds)
            engine.terminate()
