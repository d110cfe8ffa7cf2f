"""The explorer's controls, read from a bundle's conditions, and the check of what the page sends back.

:func:`control_specs` describes one control per condition (a slider over the valid range with its unit and trained
range for a continuous or periodic one, a choice for a categorical one; every control can be "unspecified", the
network's null token) plus the generation knobs (seed, guidance scale, sampler steps) and, for a bundle that makes
cines, the cine's frame count. :func:`parse_request` checks a page's JSON with :func:`monai_gen.engines.requests.checked_values`, so a typed value outside its range gets the
library's own one-line message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from monai_gen.transforms.conditions import ConditionSet, ConditionSpec

__all__ = ["MAX_STEPS", "MAX_GUIDANCE_SCALE", "MAX_SEED", "MAX_CINE_FRAMES", "ExploreRequest", "control_specs",
           "parse_request"]

MAX_STEPS = 200
"""Most sampler steps the page may ask for (a slider position should redraw in seconds, not minutes)."""
MAX_GUIDANCE_SCALE = 20.0
MAX_SEED = 2**31 - 1
MAX_CINE_FRAMES = 64
"""Most frames the page may ask a cine for (ACDC cines have 12-35 frames; each costs one sample's generation)."""


@dataclass(frozen=True)
class ExploreRequest:
    """One sample the page asks for.

    Args:
        conditions: the set phenotypes under their condition names with canonical values (unset ones are absent).
        seed: the noise seed.
        guidance_scale: classifier-free guidance scale (1 = none); None keeps the bundle's default.
        steps: sampler steps; None keeps the bundle's default.
        cine_frames: a cine of this many frames over the bundle's periodic condition (one seed); None: one sample.
    """

    conditions: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    guidance_scale: float | None = None
    steps: int | None = None
    cine_frames: int | None = None


def control_specs(conditions: ConditionSet, *, default_steps: int, default_guidance: float) -> dict[str, Any]:
    """The page's controls as JSON: ``{"conditions": [...], "seed": ..., "guidance_scale": ..., "steps": ...}``.

    A fitted continuous condition starts set at its training mean (rounded to its slider step); an unfitted one, and
    every categorical one, starts unspecified.
    """
    return {
        "conditions": [_condition_control(spec) for spec in conditions.specs],
        "seed": {"min": 0, "max": MAX_SEED, "value": 0},
        "guidance_scale": {"min": 0.0, "max": MAX_GUIDANCE_SCALE, "step": 0.5, "value": float(default_guidance)},
        "steps": {"min": 1, "max": MAX_STEPS, "value": int(default_steps)},
    }


def _condition_control(spec: ConditionSpec) -> dict[str, Any]:
    control: dict[str, Any] = {"name": spec.name, "kind": spec.kind, "unit": spec.unit, "description": spec.description}
    if spec.is_categorical:
        trained = list(spec.observed_categories) if spec.observed_categories is not None else list(spec.categories)
        return {**control, "categories": list(spec.categories), "trained_categories": trained, "value": None}
    low, high = spec.valid_range if spec.valid_range else (0.0, spec.period or 1.0)
    if spec.is_periodic:
        low, high = 0.0, float(spec.period)
    step = _slider_step(high - low)
    fitted = spec.observed_range is not None
    start = spec.mean if fitted and not spec.is_periodic else (low + high) / 2
    return {
        **control, "min": low, "max": high, "step": step, "trained_range": list(spec.observed_range) if fitted else None,
        "value": round(round(start / step) * step, 6) if fitted else None, "default": round(round(start / step) * step, 6),
    }


def _slider_step(span: float) -> float:
    """A power-of-ten step giving 100 to 1000 slider positions: 1 for a 30-200 bpm range, 0.01 for a 0-1 position."""
    return 10.0 ** math.floor(math.log10(span / 100)) if span > 0 else 1.0


def parse_request(payload: Mapping[str, Any], conditions: ConditionSet) -> ExploreRequest:
    """Check the page's JSON ``{"conditions": {name: value or null}, "seed", "guidance_scale", "steps", "cine_frames"}``.

    Raises:
        ValueError: an unknown condition, a value out of its valid range or an unknown category (the library's
            message), a seed, guidance scale, step or frame count that is not a number in its range.
    """
    from monai_gen.engines.requests import checked_values

    if not isinstance(payload, Mapping):
        raise ValueError(f"a request is a JSON object, got {type(payload).__name__}.")
    given = payload.get("conditions") or {}
    if not isinstance(given, Mapping):
        raise ValueError(f"conditions must be an object {{name: value}}, got {given!r}.")
    values = checked_values(conditions, {str(k): (None if v == "" else v) for k, v in given.items()})
    seed = _number(payload.get("seed", 0), "seed", int, 0, MAX_SEED)
    scale = payload.get("guidance_scale")
    scale = None if scale in (None, "") else _number(scale, "guidance_scale", float, 0.0, MAX_GUIDANCE_SCALE)
    steps = payload.get("steps")
    steps = None if steps in (None, "") else _number(steps, "steps", int, 1, MAX_STEPS)
    frames = payload.get("cine_frames")
    frames = None if frames in (None, "") else _number(frames, "cine_frames", int, 2, MAX_CINE_FRAMES)
    return ExploreRequest(values, seed, scale, steps, frames)


def _number(value: Any, name: str, kind: type, low: float, high: float) -> Any:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}, got {value!r}.") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise ValueError(f"{name} must be from {low:g} to {high:g}, got {value!r}.")
    if kind is int and not number.is_integer():
        raise ValueError(f"{name} must be a whole number, got {value!r}.")
    return kind(number)
