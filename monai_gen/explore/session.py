"""One bundle held open for the explorer: its networks loaded once, samples generated, measured, swept and exported.

:class:`ExplorerSession` parses the bundle's own inference configs (``common.json`` under ``inference.json``, as
``monai-gen generate`` runs them) once and keeps the instantiated ``sample_generator`` (network, schedule, condition
statistics, normalisation, decoder). Everything else is the bundle's own too: a sweep is the bundle's ``evaluator``
(a :class:`~monai_gen.engines.generation.GenerationJob`, with its writer and sweep preview) run into a scratch folder
with that kept generator pinned in the config; an export is the bundle's writer (WFDB, NIfTI, DICOM...) with its
provenance sidecar. A bundle whose inference config makes cines (``cine`` / ``cine_frames``, as ``monai-gen generate
--cine`` runs it) also generates a cine: one seed, the frames of
:func:`~monai_gen.engines.requests.cine_requests` in batches of the config's ``batch_size`` (the whole cine at once
when it is ``"auto"``); its export is the bundle's cine job (frames,
``cine.nii.gz``, GIF, contraction curve) fed with the shown frames. Generation reports each sampler step to a
``progress(step, total, stage)`` callable. Calls are not thread-safe: the server runs them one at a time
(:mod:`monai_gen.explore.jobs`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monai_gen.bundle.registry import find_bundle, read_bundle_info, workflow_config_names
from monai_gen.explore.controls import MAX_CINE_FRAMES, ExploreRequest, control_specs
from monai_gen.explore.views import view_for

if TYPE_CHECKING:
    import torch
    from monai.bundle import ConfigParser

__all__ = ["ExploredSample", "ExplorerSession"]

_KEPT_SAMPLES = 32  # recent samples kept for export / neighbour / window changes (an ECG is 28 kB, a slice 46 kB)
_KEPT_BYTES = 512 << 20  # and at most this much of them (a 128^3 CT is 8 MB, a 20-frame cine 0.7 MB)
_CINE_PREFIX = "cine"  # the frame names of monai-gen generate --cine (cine_frame_000...)

Progress = Callable[[int, int, str], None]
"""``progress(step, total, stage)``: ``step`` of ``total`` sampler steps done, in ``"sampling"`` or ``"decoding"``."""


@dataclass
class ExploredSample:
    """A generated sample the page shows.

    Attributes:
        sample_id: its key (the digest of its request: the same request gives the same id and the same sample).
        request: what was asked for.
        sample: ``(C, *spatial)`` in physical units (a cine's first frame, phase 0).
        measured: what the view measured on it (``{name: value or None}``, e.g. QRS / QT / heart rate).
        seconds: generation time.
        frames: a cine's frames ``(T, C, *spatial)`` in phase order; None for one sample.
        frame_time_ms: the time between a cine's frames.
    """

    sample_id: str
    request: ExploreRequest
    sample: torch.Tensor
    measured: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    frames: torch.Tensor | None = None
    frame_time_ms: float | None = None

    @property
    def nbytes(self) -> int:
        kept = self.sample if self.frames is None else self.frames
        return kept.element_size() * kept.numel()


class ExplorerSession:
    """A bundle's generator, loaded once, behind the explorer's calls.

    Args:
        bundle: bundle name or folder (see :func:`monai_gen.bundle.registry.find_bundle`).
        device: a config expression or device string for the config's ``device`` id (None: the bundle's default).
        batch_size: frames per sampler call of a cine; None: the inference config's ``batch_size`` when it is a
            number (so a frame is the one ``monai-gen generate --cine`` writes), else (``"auto"``) the whole cine.

    Raises:
        FileNotFoundError: no such bundle, or its weights are missing (the bundle config's own error).
        ValueError: the bundle cannot be read.
    """

    def __init__(self, bundle: str | os.PathLike, *, device: str | None = None, batch_size: int | None = None) -> None:
        from monai.bundle import ConfigParser

        self.root = find_bundle(bundle)
        self.info = read_bundle_info(self.root)
        self.conditions = self.info.conditions
        parser = ConfigParser()
        parser.read_meta(self.root / "configs" / "metadata.json")
        parser.read_config([str(self.root / "configs" / f"{n}.json") for n in workflow_config_names(self.root, "inference")])
        parser["bundle_root"] = str(self.root)
        if device is not None:
            parser["device"] = device if device.startswith("$") else f"$torch.device('{device}')"
        self.parser: ConfigParser = parser
        self.generator = parser.get_parsed_content("sample_generator")
        parser["sample_generator"] = self.generator  # pinned: later config resolutions reuse it, never reload weights
        self.default_steps = int(parser["num_inference_steps"])
        self.default_guidance = float(parser["guidance_scale"])
        configured = parser.get_parsed_content("batch_size") if "batch_size" in parser else None
        if batch_size is None and isinstance(configured, int) and not isinstance(configured, bool):
            batch_size = configured
        self.batch_size = None if batch_size is None else int(batch_size)
        self.cine_phase, self.default_cine_frames = _cine_settings(parser, self.conditions)
        self.view = view_for(parser, self.root)
        self._inferers: dict[tuple[int, float], Any] = {}
        self._samples: OrderedDict[str, ExploredSample] = OrderedDict()

    def controls(self) -> dict[str, Any]:
        """The page's controls for this bundle (:func:`monai_gen.explore.controls.control_specs`) and its view."""
        cine = None
        if self.cine_phase is not None:
            cine = {"phase": self.cine_phase, "min": 2, "max": MAX_CINE_FRAMES, "value": self.default_cine_frames}
        return {
            "bundle": self.info.name, "version": self.info.version, "task": self.info.task, "view": self.view.describe(),
            **control_specs(self.conditions, default_steps=self.default_steps, default_guidance=self.default_guidance),
            "cine": cine,
        }

    def generate(self, request: ExploreRequest, *, progress: Progress | None = None) -> ExploredSample:
        """The sample (or cine) of ``request``, measured; the same request gives the same sample (noise from its own
        seed) and is answered from the kept ones.

        Raises:
            ValueError: a cine asked of a bundle that makes none, or one :func:`cine_requests` refuses (the swept
                condition also given).
        """
        import time

        from monai_gen.engines.requests import SampleRequest

        sample_id = _request_id(request)
        if sample_id in self._samples:
            self._samples.move_to_end(sample_id)
            return self._samples[sample_id]
        started = time.perf_counter()
        self._use_settings(request)
        if request.cine_frames is not None:
            explored = self._generate_cine(sample_id, request, progress)
        else:
            requests = [SampleRequest(f"explore_{sample_id}", request.seed, dict(request.conditions))]
            batch = self._sample_batches(requests, progress)
            explored = ExploredSample(sample_id, request, batch[0], self.view.measure(batch)[0])
        explored.seconds = time.perf_counter() - started
        self._keep(explored)
        return explored

    def _generate_cine(self, sample_id: str, request: ExploreRequest, progress: Progress | None) -> ExploredSample:
        """The frames of ``monai-gen generate --cine`` for ``request`` (its requests, in batches of :attr:`batch_size`)."""
        frames = self._sample_batches(self._cine_requests(request), progress)
        cycle_ms = float(self.parser["cine_cycle_ms"]) if "cine_cycle_ms" in self.parser else 1000.0
        return ExploredSample(sample_id, request, frames[0], self.view.measure_cine(frames), frames=frames,
                              frame_time_ms=cycle_ms / len(frames))

    def _cine_requests(self, request: ExploreRequest) -> list[Any]:
        from monai_gen.engines.requests import cine_requests

        if self.cine_phase is None:
            raise ValueError(f"{self.info.name} makes no cines: its configs/inference.json has no cine / cine_frames "
                             "option and the model no periodic condition.")
        return cine_requests(self.conditions, phase=self.cine_phase, num_frames=int(request.cine_frames),
                             values=dict(request.conditions), seed=request.seed, prefix=_CINE_PREFIX)

    def _sample_batches(self, requests: Sequence[Any], progress: Progress | None) -> torch.Tensor:
        """The kept generator over ``requests`` in batches of :attr:`batch_size` (all at once when None), each sampler
        step reported to ``progress``."""
        import torch

        size = self.batch_size or len(requests)
        starts = range(0, len(requests), size)
        decodes = self.generator.decoder is not None
        outputs = []
        for k, start in enumerate(starts):
            callback = None
            if progress is not None:
                def callback(step: int, total: int, x: Any, batch: int = k) -> None:  # the sampler's hook
                    stage = "decoding" if step == total and decodes else "sampling"
                    progress(batch * total + step, total * len(starts), stage)
            outputs.append(self.generator(requests[start : start + size], callback=callback))
        return torch.cat(outputs)

    def _keep(self, explored: ExploredSample) -> None:
        self._samples[explored.sample_id] = explored
        while len(self._samples) > _KEPT_SAMPLES or (
                len(self._samples) > 1 and sum(e.nbytes for e in self._samples.values()) > _KEPT_BYTES):
            self._samples.popitem(last=False)

    def sample(self, sample_id: str) -> ExploredSample:
        """A recently generated sample.

        Raises:
            KeyError: no sample of that id is kept (generate it again).
        """
        if sample_id not in self._samples:
            raise KeyError(f"no recent sample {sample_id!r}: generate it again (the explorer keeps the last {_KEPT_SAMPLES}).")
        return self._samples[sample_id]

    def sweep(self, request: ExploreRequest, name: str, *, start: float, stop: float, num_values: int = 5,
              num_seeds: int = 1) -> bytes:
        """The bundle's own sweep strip (``sweep_<name>.png``): ``name`` from ``start`` to ``stop``, the request's
        other conditions fixed, seeds ``request.seed, +1, ...``; generated with the kept generator into a scratch
        folder that is removed afterwards.

        Raises:
            ValueError: as ``monai-gen sweep`` (a categorical or unknown condition, an end out of range...).
        """
        from monai_gen.engines.requests import build_requests

        fixed = {k: v for k, v in request.conditions.items() if k != self.conditions.resolve_name(name)}
        settings = {"sweep": name, "sweep_start": float(start), "sweep_stop": float(stop),
                    "sweep_num_values": int(num_values), "sweep_num_seeds": int(num_seeds), "seed": request.seed}
        build_requests(self.conditions, values=fixed, **settings)  # the library's checks, before anything is set
        self._use_settings(request)
        scratch = Path(tempfile.mkdtemp(prefix="monai-gen-explore-sweep-"))
        try:
            self._set_ids({**{s.name: fixed.get(s.name) for s in self.conditions.specs}, **settings,
                           "output_dir": str(scratch), "preview": True, "progress": False, "overwrite": True,
                           "num_samples": int(num_values) * int(num_seeds), "cine": False})
            self.parser.get_parsed_content("evaluator").run()
            strip = scratch / f"sweep_{self.conditions.resolve_name(name)}.png"
            if not strip.is_file():
                raise ValueError(f"the bundle {self.info.name} drew no sweep strip for {name!r}.")
            return strip.read_bytes()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def export(self, sample_id: str, output_dir: str | os.PathLike) -> list[Path]:
        """Write a recent sample with the bundle's own writer (WFDB, NIfTI, DICOM...) and its provenance sidecar; a
        cine as the bundle's cine job writes it, into ``<output_dir>/<bundle>_<id>/`` (see :meth:`_export_cine`).

        Raises:
            KeyError: no recent sample of that id.
            ValueError: ``output_dir`` is inside the bundle.
        """
        from monai_gen.bundle.runs import check_outside_bundle

        explored = self.sample(sample_id)
        check_outside_bundle(self.root, output_dir=output_dir)
        self._use_settings(explored.request)
        if explored.frames is not None:
            return self._export_cine(explored, Path(output_dir) / f"{self.info.name}_{sample_id}")
        # an image bundle that can write a DICOM series and a PNG preview per sample does, beside its NIfTI
        self._set_ids({"write_dicom": True, "per_sample_previews": True})
        writer = self.parser.get_parsed_content("evaluator#writer")
        provenance = {**self.parser.get_parsed_content("evaluator#provenance"), "seed": explored.request.seed,
                      "conditions": dict(explored.request.conditions), "generated_by": "monai-gen explore"}
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        stem = Path(output_dir) / f"{self.info.name}_{sample_id}"
        return [Path(f) for f in writer(explored.sample, stem, provenance)]

    def _export_cine(self, explored: ExploredSample, folder: Path) -> list[Path]:
        """The bundle's own cine job (``monai-gen generate --cine``: its writer, provenance, manifest and cine
        preview) run into ``folder`` with the shown frames in place of a new generation."""
        frames = dict(zip((r.name for r in self._cine_requests(explored.request)), explored.frames, strict=True))

        def replay(batch: Sequence[Any]) -> torch.Tensor:
            import torch

            return torch.stack([frames[r.name] for r in batch])

        self._set_ids({**{s.name: explored.request.conditions.get(s.name) for s in self.conditions.specs},
                       "cine": True, "cine_frames": len(frames), "seed": explored.request.seed, "output_dir": str(folder),
                       "preview": True, "progress": False, "overwrite": True, "write_dicom": True})
        self.parser["sample_generator"] = replay
        try:
            self.parser.get_parsed_content("evaluator").run()
        finally:
            self.parser["sample_generator"] = self.generator
        return sorted(p for p in folder.rglob("*") if p.is_file())

    def guidance_of(self, request: ExploreRequest) -> float:
        """The guidance scale ``request`` is generated with: its own, or the bundle's default."""
        return self.default_guidance if request.guidance_scale is None else float(request.guidance_scale)

    def _use_settings(self, request: ExploreRequest) -> None:
        """Point the kept generator at an inferer for the request's steps and guidance (built once per pair)."""
        key = (request.steps or self.default_steps, self.guidance_of(request))
        self._set_ids({"num_inference_steps": key[0], "guidance_scale": key[1]})
        if key not in self._inferers:
            self._inferers[key] = self.parser.get_parsed_content("inferer")
        self.generator.inferer = self._inferers[key]

    def _set_ids(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if key in self.parser and self.parser[key] != value:
                self.parser[key] = value


def _cine_settings(parser: ConfigParser, conditions: Any) -> tuple[str | None, int | None]:
    """``(periodic condition, default frames)`` of a bundle that makes cines (its inference config has ``cine`` and
    ``cine_frames``, and the model one periodic condition, as ``monai-gen generate --cine`` requires), else Nones."""
    periodic = [s.name for s in conditions.specs if s.is_periodic]
    if "cine" not in parser or "cine_frames" not in parser or len(periodic) != 1:
        return None, None
    return periodic[0], int(parser["cine_frames"])


def _request_id(request: ExploreRequest) -> str:
    text = json.dumps([sorted(request.conditions.items()), request.seed, request.guidance_scale, request.steps,
                       request.cine_frames])
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]
