"""One diffusion training iteration for MONAI's ``SupervisedTrainer`` (``iteration_update``).

MONAI's trainer runs ``inferer(inputs, network)`` then ``loss_function(pred, label)``; a diffusion step instead
samples a time and noise, noises the data and weights the error by the noise level, all inside
:class:`monai_gen.diffusion.objectives.DiffusionObjective`. :class:`DiffusionIteration` is that step in the shape
``SupervisedTrainer(iteration_update=...)`` expects, so everything else — data loading, optimiser, AMP,
handlers (stats, TensorBoard, checkpoints, EMA, LR schedules) — stays MONAI / Ignite.

Randomness is drawn from generators seeded by ``(seed, iteration, rank)``, so iteration ``k`` is the same in an
interrupted-and-resumed run as in an uninterrupted one (given the same data order and weights), and the ranks
of a distributed run draw different noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ignite.distributed as idist
import torch
from monai.utils import CommonKeys

__all__ = ["DiffusionIteration"]


class DiffusionIteration:
    """``iteration_update(engine, batch) -> {"loss": ...}`` for a diffusion objective.

    Args:
        objective: ``objective(network, x0, *, generator, **cond) -> loss``.
        image_key: batch key of the clean data ``(B, C, *spatial)``.
        condition_keys: batch keys passed to the network as keyword arguments when present.
        max_grad_norm: gradient clipping norm (None = no clipping).
        seed: base seed of the per-iteration generators.
    """

    def __init__(
        self,
        objective,
        *,
        image_key: str = "image",
        condition_keys: Sequence[str] = (
            "conditions", "condition_mask", "embedding", "embedding_mask", "class_labels", "spatial_condition",
            "spatial_condition_mask",
        ),
        max_grad_norm: float | None = 1.0,
        seed: int = 0,
    ) -> None:
        self.objective, self.image_key = objective, image_key
        self.condition_keys, self.max_grad_norm, self.seed = tuple(condition_keys), max_grad_norm, int(seed)

    def __call__(self, engine: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.image_key not in batch:
            raise KeyError(f"training batch has no {self.image_key!r}; keys: {sorted(batch)}.")
        device = engine.state.device
        x0 = batch[self.image_key].to(device, non_blocking=engine.non_blocking)
        cond = {k: batch[k].to(device) for k in self.condition_keys if k in batch}
        step_seed = (self.seed * 1_000_003 + engine.state.iteration) * idist.get_world_size() + idist.get_rank()
        torch.manual_seed(step_seed)  # condition dropout inside the network draws from the global RNG
        generator = torch.Generator(device=device).manual_seed(step_seed)
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        with torch.autocast(device.type, enabled=bool(engine.amp)):
            loss = self.objective(engine.network, x0, generator=generator, **cond)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"diffusion loss became {loss.item()} at iteration {engine.state.iteration}.")
        if engine.amp and engine.scaler is not None:
            engine.scaler.scale(loss).backward()
            engine.scaler.unscale_(engine.optimizer)
            self._clip(engine)
            engine.scaler.step(engine.optimizer)
            engine.scaler.update()
        else:
            loss.backward()
            self._clip(engine)
            engine.optimizer.step()
        return {CommonKeys.IMAGE: x0, CommonKeys.LOSS: loss.detach()}

    def _clip(self, engine: Any) -> None:
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(engine.network.parameters(), self.max_grad_norm)
