"""Generation jobs: condition rows and seeds -> batches -> a sampling callable -> writers, a manifest and resume.

A job is a list of :class:`~monai_gen.engines.requests.SampleRequest` (output name, seed, requested phenotypes).
:class:`GenerationJob` groups them into batches, asks ``generate_batch`` for the samples, hands each one to ``writer``
with its provenance, and keeps ``manifest.csv`` (one row per finished sample: files, seed, every condition, model id,
sampler, steps) current after every batch. A sample is *finished* when its manifest row records exactly the same
request (conditions, pass-through columns, seed, model id, sampler, steps, guidance...) and all its files are on
disk, so re-running a killed job generates only what is missing; because every sample draws its noise from its own
seed, the resumed output is identical to an uninterrupted run at the same batch size (another batch size, or a
batch whose requests set other phenotypes under per-phenotype guidance, changes only float rounding in the batched
kernels, about 1e-5 of the signal, which can flip one ADC step of a written file). A folder whose finished samples
were made for a different request is an error that says what differs, unless the job is told to ``overwrite`` them.

Under ``torchrun`` (a joined ``torch.distributed`` process group) the job is sharded: the batches of the
single-process run are dealt out in turn, batch ``b`` to rank ``b mod world_size``, so every sample is generated in
the same batch as by one process and the files are the same, byte for byte. Each rank keeps its own
``manifest.rank<k>.csv``; once every rank is done, rank 0 merges them into ``manifest.csv`` and removes them. A rank
that dies leaves its shard manifest, which the resumed job reads like ``manifest.csv``: only what is missing is
generated again.

File writing overlaps sampling: while batch ``b + 1`` is generated, batch ``b`` is written (its samples by
``writer_threads`` threads; compression and PNG encoding release the GIL) and previewed, in batch order, and the
manifest records it once its files are on disk. At most one batch waits to be written, so memory stays bounded; a
write that fails stops the job with that error.

Without a batch size (``None`` or ``"auto"``) the job chooses one from the device's free memory
(:mod:`monai_gen.engines.batching`): its first request is generated once as a probe whose peak memory is measured
(and kept only when it is the whole job), then the job runs as if given the chosen size, which is logged and is the
same on every rank (the smallest any rank chose), so ``batch_size=<the logged size>`` writes the same files.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from monai_gen.data.provenance import to_json_compatible
from monai_gen.engines.batching import MAX_BATCH_SIZE, PROBE_SIZE, is_auto, local_processes, probe_batch_size
from monai_gen.engines.requests import RESERVED_COLUMNS, SampleRequest
from monai_gen.utils.atomic import atomic_write_text

__all__ = ["read_manifest", "GenerationJob"]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.csv"
SHARD_MANIFEST_PATTERN = "manifest.rank*.csv"


def read_manifest(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a manifest written by :class:`GenerationJob` (empty when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


class GenerationJob:
    """Generate ``requests`` in batches, write every sample, keep a manifest, resume after interruption.

    Args:
        requests: the samples to generate (names must be unique).
        generate_batch: ``generate_batch(requests) -> Tensor (B, C, *spatial)``, sample ``i`` for
            ``requests[i]``; it must draw sample ``i``'s noise from ``requests[i].seed`` only.
        writer: ``writer(sample (C, *spatial), output_stem: Path, provenance: dict) -> list[Path]`` writes one
            sample (plus its provenance sidecar) and returns the files written; or an object with
            ``write_batch(samples, requests, provenances, output_dir) -> [files of each sample]`` that writes a
            whole batch at once (e.g. :class:`~monai_gen.data.sample_writers.ArrayShardWriter`: one array file per
            batch for machine learning).
        output_dir: folder for outputs and ``manifest.csv``; created if missing.
        batch_size: samples per call of ``generate_batch``; ``None`` or ``"auto"``: chosen from the free memory of
            ``device`` and a measured probe batch (see the module docstring), at most ``max_batch_size``.
        provenance: fields common to every sample (model id, sampler, steps, guidance...); they go to each
            sample's sidecar and become manifest columns.
        preview: optional ``preview(samples, requests, output_dir)`` called after each batch (e.g. a PNG
            per sample); its failures are errors, not warnings.
        progress: show a tqdm progress bar (rank 0 only, under torchrun).
        overwrite: regenerate samples whose manifest row records a different request (default: raise).
        writer_threads: threads writing one batch's samples while the next batch is generated (the preview runs
            after them, in batch order); 0 = write in the calling thread between batches, with no overlap. The
            files are the same either way.
        device: where ``generate_batch`` runs, whose memory sets an automatic batch size; default: its ``device``
            attribute (a :class:`~monai_gen.engines.sampling.ConditionalSampleGenerator` has one), else the CPU.
        max_batch_size: the cap of an automatic batch size.

    Raises:
        ValueError: repeated names; a batch size that is not a positive integer, None or ``"auto"``; a condition,
            pass-through column or provenance field named like another one or like the manifest's own columns; at
            :meth:`run`, finished samples of a different request (without ``overwrite``).
    """

    def __init__(
        self,
        requests: Sequence[SampleRequest],
        *,
        generate_batch: Callable[[list[SampleRequest]], torch.Tensor],
        writer: Callable[[torch.Tensor, Path, dict[str, Any]], Sequence[os.PathLike | str]],
        output_dir: str | os.PathLike,
        batch_size: int | str | None = 16,
        provenance: Mapping[str, Any] | None = None,
        preview: Callable[[torch.Tensor, list[SampleRequest], Path], Any] | None = None,
        progress: bool = True,
        overwrite: bool = False,
        writer_threads: int = 2,
        device: torch.device | str | None = None,
        max_batch_size: int = MAX_BATCH_SIZE,
    ) -> None:
        duplicates = sorted(name for name, count in Counter(r.name for r in requests).items() if count > 1)
        if duplicates:
            raise ValueError(f"generation requests must have unique names, repeated: {duplicates[:5]}.")
        auto = is_auto(batch_size)
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}.")
        if writer_threads < 0:
            raise ValueError(f"writer_threads must be >= 0, got {writer_threads}.")
        _check_columns(requests, provenance or {})
        self.requests = list(requests)
        self._requested = {r.name for r in self.requests}
        self.generate_batch = generate_batch
        self.writer = writer
        self.output_dir = Path(output_dir)
        self.batch_size = None if auto else int(batch_size)
        self.max_batch_size = int(max_batch_size)
        self.device = torch.device(device if device is not None else getattr(generate_batch, "device", "cpu"))
        self.provenance = dict(provenance or {})
        self.preview = preview
        self.progress = progress
        self.overwrite = bool(overwrite)
        self.writer_threads = int(writer_threads)

    @property
    def manifest_path(self) -> Path:
        return self.output_dir / MANIFEST_NAME

    def _shard_manifest_path(self, rank: int) -> Path:
        return self.output_dir / SHARD_MANIFEST_PATTERN.replace("*", str(rank))

    def _recorded_rows(self) -> list[dict[str, str]]:
        """Rows of ``manifest.csv`` and of any shard manifests a sharded run left (a shard's row wins)."""
        rows = {row["name"]: row for row in read_manifest(self.manifest_path)}
        for shard in sorted(self.output_dir.glob(SHARD_MANIFEST_PATTERN)):
            rows.update((row["name"], row) for row in read_manifest(shard))
        return list(rows.values())

    def finished(self) -> dict[str, dict[str, str]]:
        """Manifest rows (by name) of samples whose files all exist; anything else will be generated again.

        Raises:
            ValueError: a finished sample of one of this job's names was made for a different request (unless
                ``overwrite``: then it is left out, to be generated again).
        """
        done, conflicts = {}, []
        by_name = {r.name: r for r in self.requests}
        for row in self._recorded_rows():
            files = [self.output_dir / f for f in row.get("files", "").split(";") if f]
            if not (files and all(f.is_file() for f in files)):
                continue
            request = by_name.get(row["name"])
            differences = [] if request is None else _differences(row, self._row(request, files=""))
            if differences and not self.overwrite:
                conflicts.append(f"{row['name']}: {'; '.join(differences)}")
            elif not differences:
                done[row["name"]] = row
        if conflicts:
            raise ValueError(
                f"{self.output_dir} already holds {len(conflicts)} sample(s) made for a different request (recorded "
                f"vs requested) - {' | '.join(conflicts[:3])}{' | ...' if len(conflicts) > 3 else ''}. Use another "
                "output folder, or overwrite them (monai-gen --overwrite, config overwrite=true)."
            )
        return done

    def run(self) -> Path:
        """Generate every request not finished yet (this rank's share under torchrun); returns the manifest path."""
        rank, world_size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        if rank == 0:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        _barrier(world_size)
        done = self.finished()  # every rank reads the same rows (and raises alike on a conflict)
        _barrier(world_size)
        if rank == 0 and any(self.output_dir.glob(SHARD_MANIFEST_PATTERN)):
            self._consolidate(done)  # what an interrupted sharded run left, before this run's shards start afresh
        _barrier(world_size)
        todo = [r for r in self.requests if r.name not in done]
        if len(done) and rank == 0:
            logger.info("resuming: %d of %d samples already finished in %s", len(done), len(self.requests), self.output_dir)
        batches, probed = self._plan(todo, world_size)
        mine = batches[rank::world_size]  # batch b to rank b mod world_size: the batches of a single-process run
        rows = dict(done) if world_size == 1 else {}
        manifest = self.manifest_path if world_size == 1 else self._shard_manifest_path(rank)
        lane = ThreadPoolExecutor(max_workers=1, thread_name_prefix="write-batch") if self.writer_threads else None
        sample_pool = ThreadPoolExecutor(self.writer_threads, thread_name_prefix="write") if self.writer_threads else None
        pending: Future | None = None

        def record(written: Mapping[str, dict[str, Any]], count: int) -> None:
            rows.update(written)
            self._write_manifest(rows, manifest)
            bar.update(count * world_size)

        with tqdm(total=len(self.requests), initial=len(self.requests) - len(todo), disable=not self.progress or rank,
                  desc="generating", unit="sample") as bar:
            try:
                for batch in mine:
                    samples = probed if batch is batches[0] and probed is not None else self._generate(batch)
                    if pending is not None:
                        finished, pending = pending, None
                        record(*finished.result())
                    if lane is None:
                        record(*self._write_and_preview(batch, samples, None))
                    else:
                        pending = lane.submit(self._write_and_preview, batch, samples, sample_pool)
                if pending is not None:
                    finished, pending = pending, None
                    record(*finished.result())
            except BaseException:
                if pending is not None:  # the batch being written when generation stopped: keep it if it completes
                    try:
                        record(*pending.result())
                    except Exception as err:  # the error that stopped the job is the one raised
                        logger.warning("the batch being written when the job stopped was not finished: %s", err)
                raise
            finally:
                for pool in (lane, sample_pool):
                    if pool is not None:
                        pool.shutdown(wait=True)
        self._write_manifest(rows, manifest)
        if world_size > 1:
            _barrier(world_size)  # every shard manifest is complete
            if rank == 0:
                self._consolidate(self.finished())
            _barrier(world_size)  # nobody returns before manifest.csv holds every sample
        return self.manifest_path

    def _plan(
        self, todo: list[SampleRequest], world_size: int
    ) -> tuple[list[list[SampleRequest]], torch.Tensor | None]:
        """The batches of ``todo`` (the same on every rank) and, when the probe was the whole job, its samples.

        With an automatic batch size every rank generates the probe (the job's first request) and measures it; the
        smallest size any rank can hold, at most ``ceil(len(todo) / world_size)`` so every rank gets a batch, is used
        by all. The batches are then those of a job given that size (``batch_size=<the logged size>`` writes the
        same files).
        """
        size = self.batch_size
        if size is None and todo:
            probe = todo[:PROBE_SIZE]
            sharing = local_processes() if self.device.type == "cpu" else 1
            size, samples = probe_batch_size(
                self._generate, probe, device=self.device, processes_sharing=sharing,
                max_batch_size=min(self.max_batch_size, -(-len(todo) // world_size)),
            )
            if len(todo) == len(probe):
                return [probe], samples
            if world_size > 1:
                agreed = torch.tensor([size], dtype=torch.int64,
                                      device=self.device if dist.get_backend() == "nccl" else "cpu")
                dist.all_reduce(agreed, op=dist.ReduceOp.MIN)
                if int(agreed.item()) != size:
                    logger.info("batch size %d, the smallest any of the %d ranks can hold", int(agreed.item()),
                                world_size)
                size = int(agreed.item())
        size = size or 1
        return [todo[start : start + size] for start in range(0, len(todo), size)], None

    def _consolidate(self, rows: Mapping[str, Mapping[str, Any]]) -> None:
        """Rank 0: ``manifest.csv`` holds ``rows`` (the finished rows of every manifest); the shard manifests go."""
        self._write_manifest(rows, self.manifest_path)
        for shard in sorted(self.output_dir.glob(SHARD_MANIFEST_PATTERN)):
            shard.unlink()

    def _generate(self, batch: list[SampleRequest]) -> torch.Tensor:
        samples = self.generate_batch(batch)
        if samples.shape[0] != len(batch):
            raise RuntimeError(f"generate_batch returned {samples.shape[0]} samples for a batch of {len(batch)}.")
        if not torch.isfinite(samples).all():
            raise RuntimeError(f"generation produced non-finite values for {[r.name for r in batch]}.")
        return samples

    def _sample_provenance(self, request: SampleRequest) -> dict[str, Any]:
        provenance = {**self.provenance, "seed": request.seed, "conditions": dict(request.conditions)}
        if request.pass_through:
            provenance["pass_through"] = dict(request.pass_through)
        return provenance

    def _write_and_preview(
        self, batch: list[SampleRequest], samples: torch.Tensor, pool: ThreadPoolExecutor | None
    ) -> tuple[dict[str, dict[str, Any]], int]:
        """Write a batch (its samples on ``pool``'s threads, or here), then preview it; its manifest rows and size."""
        rows = self._write(batch, samples, pool)
        if self.preview is not None:
            self.preview(samples, batch, self.output_dir)
        return rows, len(batch)

    def _write(
        self, batch: list[SampleRequest], samples: torch.Tensor, pool: ThreadPoolExecutor | None = None
    ) -> dict[str, dict[str, Any]]:
        """Write a batch; its manifest rows by name."""
        provenances = [self._sample_provenance(r) for r in batch]
        if hasattr(self.writer, "write_batch"):
            files = self.writer.write_batch(samples, batch, provenances, self.output_dir)
        else:
            stems = [self.output_dir / r.name for r in batch]
            mapper = map if pool is None else pool.map
            files = list(mapper(self.writer, samples, stems, provenances))
        return {
            request.name: self._row(request, files=";".join(os.path.relpath(f, self.output_dir) for f in written))
            for request, written in zip(batch, files, strict=True)
        }

    def _row(self, request: SampleRequest, *, files: str) -> dict[str, Any]:
        """The manifest row of ``request``: name, files, seed, its conditions and pass-through columns, provenance."""
        row = {"name": request.name, "files": files, "seed": request.seed}
        row.update({k: _cell(v) for k, v in request.conditions.items()})
        row.update({k: _cell(v) for k, v in request.pass_through.items()})
        row.update({k: _cell(v) for k, v in self.provenance.items()})
        return row

    def _write_manifest(self, rows: Mapping[str, Mapping[str, Any]], path: Path) -> None:
        ordered = [rows[r.name] for r in self.requests if r.name in rows]
        extra = [r for name, r in rows.items() if name not in self._requested]
        columns = list(RESERVED_COLUMNS)
        for row in ordered + extra:
            columns.extend(k for k in row if k not in columns)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(ordered + extra)
        atomic_write_text(path, buffer.getvalue())


def _barrier(world_size: int) -> None:
    if world_size > 1:
        dist.barrier()


def _check_columns(requests: Sequence[SampleRequest], provenance: Mapping[str, Any]) -> None:
    """Manifest columns must not collide: conditions, pass-through columns, provenance and the job's own columns."""
    sources = {"provenance field": set(provenance)}
    sources["condition"] = {k for r in requests for k in r.conditions}
    sources["pass-through column"] = {k for r in requests for k in r.pass_through}
    seen: dict[str, str] = dict.fromkeys(RESERVED_COLUMNS, "manifest column")
    for kind, names in sources.items():
        for name in sorted(names):
            if name in seen:
                raise ValueError(f"{kind} {name!r} has the name of a {seen[name]}; manifest columns must be distinct.")
            seen[name] = kind


def _differences(recorded: Mapping[str, str], requested: Mapping[str, Any]) -> list[str]:
    """What a finished sample's manifest row records differently from a request's row (``files`` aside)."""
    keys = [k for k in dict.fromkeys([*requested, *recorded]) if k != "files"]
    return [
        f"{k} {recorded.get(k) or 'unset'} vs {requested.get(k) if requested.get(k) not in (None, '') else 'unset'}"
        for k in keys
        if str(recorded.get(k) or "") != str("" if requested.get(k) is None else requested.get(k))
    ]


def _cell(value: Any) -> Any:
    """A manifest cell: plain scalars as they are, anything else as JSON text."""
    value = to_json_compatible(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    if isinstance(value, float) and np.isnan(value):
        return ""
    return value
