"""A generation job run by ``tests/engines/test_generation_sharded.py``, alone or under ``torchrun`` (gloo).

``python sharded_generation_job.py OUTPUT_DIR [CRASH_RANK CRASH_AFTER_BATCHES]``: 10 samples of real ECG windows
(CinC record E07500, one window per seed, scaled by the requested heart rate) in batches of 3 (``JOB_BATCH_SIZE=auto``:
chosen from free memory, at most ``JOB_MAX_BATCH_SIZE``), written as ``.npy`` + sidecar; each rank prints the sizes of
the batches it generated. With a crash rank, that rank raises after its given number of batches, as a killed process
would stop.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import wfdb

from monai_gen.data.provenance import write_provenance
from monai_gen.engines.distributed import init_distributed
from monai_gen.engines.generation import GenerationJob
from monai_gen.engines.requests import requests_from_rows
from monai_gen.utils.atomic import atomic_output_path

RECORD = Path(__file__).resolve().parents[3] / "shared" / "data" / "ecg" / "cinc2021" / "E07500"


def main(output_dir: str, crash_rank: int = -1, crash_after: int = 0) -> None:
    logging.basicConfig(level=logging.INFO)  # the job's batch-size choice, on stderr
    init_distributed(backend="gloo")
    signal = torch.as_tensor(wfdb.rdrecord(str(RECORD)).p_signal.T, dtype=torch.float32)
    rank = dist.get_rank() if dist.is_initialized() else 0
    calls = []

    def generate(requests):
        if rank == crash_rank and len(calls) >= crash_after:
            raise RuntimeError(f"rank {rank} stops after {crash_after} batches")
        calls.append(len(requests))
        noise = [torch.randn(12, 64, generator=torch.Generator().manual_seed(r.seed)) for r in requests]
        windows = [signal[:, 100 * r.seed : 100 * r.seed + 64] for r in requests]
        return torch.stack([w * r.conditions["heart_rate"] / 60 + 0.01 * n for r, w, n in zip(requests, windows, noise, strict=True)])

    def writer(sample, stem, provenance):
        path = stem.with_suffix(".npy")
        with atomic_output_path(path) as tmp:
            np.save(tmp, sample.numpy())
        return [path, write_provenance(path, provenance)]

    requests = requests_from_rows([{"heart_rate": 60 + 5 * k} for k in range(10)], seed=0, prefix="ecg")
    batch_size = os.environ.get("JOB_BATCH_SIZE", "3")
    GenerationJob(requests, generate_batch=generate, writer=writer, output_dir=output_dir,
                  batch_size=batch_size if batch_size == "auto" else int(batch_size),
                  max_batch_size=int(os.environ.get("JOB_MAX_BATCH_SIZE", "256")),
                  provenance={"model_id": "sharded-test"}, progress=False).run()
    # one write per line: the ranks share one stdout, and print's text and newline are two writes when unbuffered
    sys.stdout.write(f"rank {rank} batches {calls}\n")
    sys.stdout.flush()
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:]))
