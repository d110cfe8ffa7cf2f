"""Validation during diffusion training: a seeded validation loss and, optionally, a grid of samples.

:class:`DiffusionValidation` is an Ignite handler for the trainer. Every ``every`` epochs it evaluates the training
objective on a validation loader with the network in eval mode (usually the EMA model) and fixed noise and times,
so the numbers of different epochs compare like for like; the mean goes to ``engine.state.metrics["val_loss"]``
and to TensorBoard. With ``sample_fn`` it also draws samples and hands them to ``on_samples`` (e.g. a closure over
:func:`monai_gen.visualize.ecg.plot_ecg` or the image grid of :mod:`monai_gen.visualize.images`); 2D / 3D image
samples are also logged to TensorBoard with MONAI's ``plot_2d_or_3d_image``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from monai.visualize import plot_2d_or_3d_image

__all__ = ["DiffusionValidation"]


class DiffusionValidation:
    """Seeded validation loss (and optional samples) every ``every`` epochs of a trainer.

    Args:
        objective: ``objective(network, x0, *, generator, **conditions) -> loss``, as in training.
        val_loader: batches of dicts with ``image_key`` ``(B, C, *spatial)`` and optional condition keys.
        network: the network evaluated (e.g. ``ema_handler.ema_model``); default the trainer's network.
        every: validate every this many epochs.
        seed: seed of the validation noise / times (the same at every validation).
        image_key: batch key of the clean data.
        condition_keys: batch keys passed to the network when present.
        summary_writer: a TensorBoard ``SummaryWriter`` (rank 0 only); None = no TensorBoard.
        sample_fn: ``sample_fn(network, generator) -> samples (N, C, *spatial)``; None = no samples.
        on_samples: ``on_samples(samples, engine)`` called with the samples (e.g. writes a figure).

    Examples:
        >>> validation = DiffusionValidation(objective, val_loader, network=ema.ema_model, every=5)
        >>> setup = build_diffusion_trainer(net, objective, loader, optimizer=opt, max_epochs=50, handlers=[validation])
    """

    def __init__(
        self,
        objective: Any,
        val_loader: Iterable[dict[str, torch.Tensor]],
        *,
        network: torch.nn.Module | None = None,
        every: int = 1,
        seed: int = 1234,
        image_key: str = "image",
        condition_keys: Sequence[str] = ("conditions", "condition_mask"),
        summary_writer: Any = None,
        sample_fn: Callable[[torch.nn.Module, torch.Generator], torch.Tensor] | None = None,
        on_samples: Callable[[torch.Tensor, Engine], None] | None = None,
    ) -> None:
        if int(every) < 1:
            raise ValueError(f"validation interval 'every' must be >= 1 epochs, got {every!r}.")
        self.objective, self.val_loader, self.network, self.every = objective, val_loader, network, int(every)
        self.seed, self.image_key, self.condition_keys = int(seed), image_key, tuple(condition_keys)
        self.summary_writer, self.sample_fn, self.on_samples = summary_writer, sample_fn, on_samples
        self.history: list[tuple[int, float]] = []

    def attach(self, engine: Engine) -> None:
        """Run at ``EPOCH_COMPLETED(every=...)``."""
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.every), self)

    def __call__(self, engine: Engine) -> None:
        network = self.network if self.network is not None else engine.network
        device = engine.state.device
        was_training = network.training
        network.eval()
        try:
            loss = self.validation_loss(network, device)
            samples = None
            if self.sample_fn is not None:
                with torch.no_grad():
                    samples = self.sample_fn(network, torch.Generator(device=device).manual_seed(self.seed))
        finally:
            network.train(was_training)
        engine.state.metrics["val_loss"] = loss
        self.history.append((engine.state.iteration, loss))
        self._log(engine, loss, samples)

    def validation_loss(self, network: torch.nn.Module, device: torch.device) -> float:
        """Mean objective over the validation loader with this handler's fixed seed (no gradients)."""
        generator = torch.Generator(device=device).manual_seed(self.seed)
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in self.val_loader:
                if self.image_key not in batch:
                    raise KeyError(f"validation batch has no {self.image_key!r}; keys: {sorted(batch)}.")
                x0 = batch[self.image_key].to(device)
                cond = {k: batch[k].to(device) for k in self.condition_keys if k in batch}
                total += float(self.objective(network, x0, generator=generator, **cond)) * x0.shape[0]
                count += x0.shape[0]
        if count == 0:
            raise ValueError("validation loader yielded no samples.")
        return total / count

    def _log(self, engine: Engine, loss: float, samples: torch.Tensor | None) -> None:
        step = engine.state.iteration
        if self.summary_writer is not None and idist.get_rank() == 0:
            self.summary_writer.add_scalar("val_loss", loss, step)
            if samples is not None and samples.ndim in (4, 5):
                for i in range(samples.shape[0]):
                    plot_2d_or_3d_image(samples, step, self.summary_writer, index=i, tag=f"samples/{i}")
            self.summary_writer.flush()
        if samples is not None and self.on_samples is not None:
            self.on_samples(samples.detach().cpu(), engine)
