"""Batch size from free memory: the arithmetic, the memory measurements on this machine, and a generation job on the
shipped ECG network whose automatic batch size writes what the logged size writes (and, at any batch size, the same
samples up to float rounding)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_gen.bundle.registry import bundle_component, find_bundle
from monai_gen.data.provenance import write_provenance
from monai_gen.engines.batching import (
    PeakMemory,
    batch_size_from_memory,
    free_memory,
    is_auto,
    probe_batch_size,
)
from monai_gen.engines.generation import GenerationJob, read_manifest
from monai_gen.engines.requests import requests_from_rows
from monai_gen.engines.sampling import ConditionalSampleGenerator, DiffusionSamplingInferer
from monai_gen.engines.weights import load_weights
from monai_gen.transforms.conditions import ConditionSet
from monai_gen.transforms.normalisation import LinearNormalisation
from monai_gen.utils.atomic import atomic_output_path

MIB, GIB = 1024**2, 1024**3


def _meminfo_bytes(key: str) -> int:
    line = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith(f"{key}:"))
    return int(line.split()[1]) * 1024


def test_the_largest_power_of_two_that_fits_in_the_share_of_free_memory_capped():
    assert batch_size_from_memory(100 * MIB, 20 * GIB) == 64  # 0.5 * 20 GiB / 100 MiB = 102 samples -> 64
    assert batch_size_from_memory(100 * MIB, 20 * GIB, memory_fraction=1.0) == 128  # 204 -> 128
    assert batch_size_from_memory(1 * MIB, 20 * GIB) == 256  # 10240 fit; the default cap
    assert batch_size_from_memory(1 * MIB, 20 * GIB, max_batch_size=100) == 100  # a cap need not be a power of two
    assert batch_size_from_memory(3 * MIB, 24 * MIB) == 4  # exactly 4 fit in 12 MiB
    assert batch_size_from_memory(3 * MIB, 23 * MIB) == 2  # 3.8 -> 2
    assert batch_size_from_memory(5 * GIB, 1 * GIB) == 1  # not one fits by the estimate, but the probe ran one


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"per_sample_bytes": 0, "free_bytes": GIB}, "per_sample_bytes must be > 0"),
        ({"per_sample_bytes": MIB, "free_bytes": -1}, "free_bytes must be >= 0"),
        ({"per_sample_bytes": MIB, "free_bytes": GIB, "max_batch_size": 0}, "max_batch_size must be >= 1"),
        ({"per_sample_bytes": MIB, "free_bytes": GIB, "memory_fraction": 1.5}, r"memory_fraction must be in \(0, 1\]"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        batch_size_from_memory(**kwargs)


def test_auto_is_none_or_the_word_and_anything_else_must_be_a_positive_integer():
    assert is_auto(None) and is_auto("auto") and is_auto(" AUTO ")
    assert not is_auto(1) and not is_auto(64)
    for bad in (0, -3, "big", 2.5, True):
        with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1, or null / 'auto'"):
            is_auto(bad)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        GenerationJob([], generate_batch=lambda r: r, writer=lambda *a: [], output_dir="unused", batch_size=0)


def test_free_cpu_memory_is_what_the_kernel_says_is_available():
    free = free_memory("cpu")
    assert 0 < free <= _meminfo_bytes("MemTotal")
    assert abs(free - _meminfo_bytes("MemAvailable")) < 0.1 * _meminfo_bytes("MemTotal")  # others' jobs move it
    with pytest.raises(ValueError, match="free_memory measures cpu and cuda devices, got meta"):
        free_memory("meta")


def test_the_cpu_peak_is_the_block_s_own_allocation_even_where_it_reuses_freed_heap():
    with PeakMemory("cpu") as idle:
        pass
    with PeakMemory("cpu") as peak:
        block = torch.ones(256, MIB // 4)  # 256 MiB of float32, every page written
        del block
    assert idle.peak_bytes < 32 * MIB
    assert 248 * MIB <= peak.peak_bytes < 320 * MIB  # freed inside the block: the peak still counts it (to pages)
    # 2400 x 64 KiB freed between small tensors that stay alive: glibc keeps the holes in its heap and hands them to
    # the next block, whose resident set then grows by half its need (measured: 74-80 of 150 MiB without the heap
    # trim); trimmed first, the block's own 150 MiB are seen
    pairs = [(torch.ones(MIB // 64), torch.ones(16)) for _ in range(2400)]
    pins = [pin for _, pin in pairs]
    del pairs
    with PeakMemory("cpu") as reused:
        pieces = [torch.ones(MIB // 64) for _ in range(2400)]
    del pieces, pins
    assert reused.peak_bytes >= 140 * MIB, reused.peak_bytes / MIB


@pytest.mark.gpu
def test_the_cuda_peak_and_free_memory_follow_an_allocation():
    device = torch.device("cuda")
    before = free_memory(device)
    with PeakMemory(device) as peak:
        block = torch.ones(1024, MIB // 4, device=device)  # 1 GiB of float32
    assert GIB <= peak.peak_bytes < GIB + 64 * MIB
    assert before - free_memory(device) >= GIB - 64 * MIB
    del block


@pytest.fixture(scope="module")
def ecg_generator():
    """The shipped ECG network at 3 sampler steps and the bundle's guidance scale 3 (two passes per step)."""
    bundle = find_bundle("ecg_generative_diffusion")
    conditions = ConditionSet.load(bundle / "models/conditions.json")
    inferer = DiffusionSamplingInferer(bundle_component(bundle, "schedule"), num_steps=3, guidance_scale=3.0,
                                       condition_names=conditions.names)
    network = load_weights(bundle_component(bundle, "network_def"), bundle / "models/model.safetensors")
    return ConditionalSampleGenerator(network, inferer, conditions, (12, 640), normalisation=LinearNormalisation(0.25))


def _npy_writer(sample, stem: Path, provenance):
    path = stem.with_suffix(".npy")
    with atomic_output_path(path) as tmp:
        np.save(tmp, sample.numpy())
    return [path, write_provenance(path, provenance)]


def _job(generate, folder: Path, batch_size, **kwargs) -> dict[str, bytes]:
    requests = requests_from_rows([{"heart_rate": 50.0 + 10 * k} for k in range(7)], seed=3, prefix="ecg")
    GenerationJob(requests, generate_batch=generate, writer=_npy_writer, output_dir=folder, batch_size=batch_size,
                  provenance={"model_id": "test"}, progress=False, **kwargs).run()
    assert [r["name"] for r in read_manifest(folder / "manifest.csv")] == [r.name for r in requests]
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.npy"))}


def test_an_automatic_batch_size_is_measured_logged_and_writes_what_that_size_writes(ecg_generator, tmp_path, caplog):
    calls = []

    def generate(requests):
        calls.append(len(requests))
        return ecg_generator(requests)

    with caplog.at_level(logging.INFO, logger="monai_gen.engines.batching"):
        automatic = _job(generate, tmp_path / "auto", "auto", max_batch_size=3)
    logged = re.search(r"batch size (\d+) from ([\d.]+) GiB free on cpu \(([\d.]+) MiB per sample, measured on a "
                       r"probe batch of 1; at most 3", caplog.text)
    assert logged is not None, caplog.text
    assert int(logged[1]) == 3  # far more fit in this machine's memory: the cap
    assert float(logged[2]) > 0.5 and 0.1 < float(logged[3]) < 500  # this network needs a few MiB per beat
    assert calls == [1, 3, 3, 1]  # the probe, then the 7 samples in batches of 3
    assert automatic == _job(ecg_generator, tmp_path / "three", 3)  # the same bytes as batch_size=3

    # any batch size: each sample from its own seed, the same up to float rounding of the batched kernels
    alone = _job(ecg_generator, tmp_path / "one", 1)
    assert alone.keys() == automatic.keys()
    for name in alone:
        difference = np.abs(np.load(tmp_path / "one" / name) - np.load(tmp_path / "auto" / name)).max()
        assert difference < 1e-4, (name, difference)  # mV; a sample of another seed differs by ~0.1-1 mV
    other_seed = np.abs(np.load(tmp_path / "one" / "ecg_0.npy") - np.load(tmp_path / "one" / "ecg_1.npy")).max()
    assert other_seed > 0.05


def test_a_probe_that_is_the_whole_job_is_kept_and_probing_leaves_the_sample_as_it_is(ecg_generator, tmp_path):
    requests = requests_from_rows([{"qt": 400.0}], seed=11)
    size, samples = probe_batch_size(ecg_generator, requests, device="cpu", max_batch_size=8)
    assert size == 8
    torch.testing.assert_close(samples, ecg_generator(requests), rtol=0, atol=0)
    calls = []
    job_requests = requests_from_rows([{"qt": 400.0}], seed=11, prefix="one")

    def generate(batch):
        calls.append(len(batch))
        return ecg_generator(batch)

    GenerationJob(job_requests, generate_batch=generate, writer=_npy_writer, output_dir=tmp_path, batch_size=None,
                  progress=False).run()
    assert calls == [1]  # one sample: the probe is the job
    np.testing.assert_array_equal(np.load(tmp_path / "one_0.npy"), samples[0].numpy())
