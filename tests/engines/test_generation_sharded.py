"""Sharded generation under torchrun (2 gloo ranks): the files and manifest of one process, and resume after a
rank dies."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from monai_gen.engines.generation import read_manifest

JOB = Path(__file__).with_name("sharded_generation_job.py")


def _run(
    output_dir: Path, *args: int, ranks: int = 1, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    command = [sys.executable, str(JOB), str(output_dir), *map(str, args)]
    if ranks > 1:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = str(probe.getsockname()[1])
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
                   "--master_port", port, *command[1:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.npy"))}


@pytest.mark.slow
def test_two_ranks_resumed_after_one_dies_write_what_one_process_writes(tmp_path):
    single = _run(tmp_path / "single")
    assert single.returncode == 0, single.stderr[-2000:]
    expected = _files(tmp_path / "single")
    assert len(expected) == 10

    # rank 1 dies after its first batch (batches 1 and 3 of 4 are its share): torchrun fails the job
    crashed = _run(tmp_path / "resumed", 1, 1, ranks=2)
    assert crashed.returncode != 0 and "rank 1 stops after 1 batches" in crashed.stderr
    left = _files(tmp_path / "resumed")
    assert 0 < len(left) < 10 and all(left[name] == expected[name] for name in left)
    resumed = _run(tmp_path / "resumed", ranks=2)  # the same command again: only the missing samples
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _files(tmp_path / "resumed") == expected
    columns = ("name", "files", "seed", "heart_rate", "model_id")
    rows = [tuple(r[c] for c in columns) for r in read_manifest(tmp_path / "resumed" / "manifest.csv")]
    assert rows == [tuple(r[c] for c in columns) for r in read_manifest(tmp_path / "single" / "manifest.csv")]
    assert not list((tmp_path / "resumed").glob("manifest.rank*.csv"))  # merged, then removed


@pytest.mark.slow
def test_two_ranks_agree_on_an_automatic_batch_size_and_write_every_sample_once(tmp_path):
    """Each rank measures its own probe; the ranks share this machine's RAM and take the smallest size any can hold,
    so they deal out the batches of one plan: all 10 samples, each written once, as one process writes them."""
    auto = {"JOB_BATCH_SIZE": "auto", "JOB_MAX_BATCH_SIZE": "4"}
    single = _run(tmp_path / "single")
    sharded = _run(tmp_path / "auto", ranks=2, env=auto)
    assert sharded.returncode == 0, sharded.stderr[-2000:]
    assert "shared by 2 processes" in sharded.stdout + sharded.stderr  # each rank's share of the free RAM
    # the probe (1 sample), then ceil(10 / 2) = 5 capped at 4: batches of 4, 4, 2 dealt to ranks 0, 1, 0
    assert set(re.findall(r"rank \d batches \[[\d, ]*\]", sharded.stdout)) == {
        "rank 0 batches [1, 4, 2]", "rank 1 batches [1, 4]"}
    assert _files(tmp_path / "auto") == _files(tmp_path / "single")  # this generator is exact per sample
    assert [r["name"] for r in read_manifest(tmp_path / "auto" / "manifest.csv")] == [
        r["name"] for r in read_manifest(tmp_path / "single" / "manifest.csv")]
    assert single.returncode == 0
