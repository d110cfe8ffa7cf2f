"""Generation jobs: batching, per-sample seeds, manifest, resume after a crash."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_gen.data.provenance import write_provenance
from monai_gen.engines.generation import GenerationJob, read_manifest
from monai_gen.engines.requests import requests_from_rows, sweep_requests
from monai_gen.engines.sampling import ConditionalSampleGenerator
from monai_gen.transforms.normalisation import LinearNormalisation
from monai_gen.utils.atomic import atomic_output_path


def seeded_samples(requests):
    """Noise drawn from each request's seed, shifted by its requested heart rate: (B, 2, 8)."""
    out = []
    for r in requests:
        g = torch.Generator().manual_seed(r.seed)
        out.append(torch.randn(2, 8, generator=g) + float(r.conditions.get("heart_rate_bpm", 0.0)))
    return torch.stack(out)


def npy_writer(sample, stem: Path, provenance):
    path = stem.with_suffix(".npy")
    with atomic_output_path(path) as tmp:
        np.save(tmp, sample.numpy())
    return [path, write_provenance(path, provenance)]


class CrashAfter:
    def __init__(self, calls):
        self.calls, self.seen = calls, 0

    def __call__(self, requests):
        self.seen += 1
        if self.seen > self.calls:
            raise KeyboardInterrupt("simulated kill")
        return seeded_samples(requests)


def make_job(tmp_path, requests, generate=seeded_samples, batch_size=3):
    return GenerationJob(
        requests, generate_batch=generate, writer=npy_writer, output_dir=tmp_path, batch_size=batch_size,
        provenance={"model_id": "unit", "sampler": "none", "steps": 0}, progress=False,
    )


def test_requests_from_rows_assigns_consecutive_seeds_and_row_seeds():
    requests = requests_from_rows([{"heart_rate_bpm": 60}, {"heart_rate_bpm": 80, "seed": 100}], seed=7, samples_per_row=2)
    assert [r.seed for r in requests] == [7, 8, 100, 101]
    assert [r.name for r in requests] == ["sample_0", "sample_1", "sample_2", "sample_3"]
    assert "seed" not in requests[2].conditions


def test_sweep_reuses_seeds_across_values():
    requests = sweep_requests("heart_rate_bpm", [50, 70, 90], seeds=[1, 2], fixed={"sex": "female"})
    assert len(requests) == 6
    assert [r.seed for r in requests] == [1, 2, 1, 2, 1, 2]
    assert [r.conditions["heart_rate_bpm"] for r in requests] == [50, 50, 70, 70, 90, 90]
    assert all(r.conditions["sex"] == "female" for r in requests)
    with pytest.raises(ValueError, match="at least one value"):
        sweep_requests("heart_rate_bpm", [], seeds=[1])


def test_manifest_matches_outputs_and_sample_independent_of_batch(tmp_path):
    requests = requests_from_rows([{"heart_rate_bpm": hr} for hr in (50, 60, 70, 80, 90)], seed=3)
    make_job(tmp_path / "b3", requests, batch_size=3).run()
    manifest = make_job(tmp_path / "b1", requests, batch_size=1).run()
    rows = read_manifest(manifest)
    assert [r["name"] for r in rows] == [r.name for r in requests]
    for row, request in zip(rows, requests, strict=True):
        files = row["files"].split(";")
        assert files == [f"{request.name}.npy", f"{request.name}.json"]
        assert int(row["seed"]) == request.seed and float(row["heart_rate_bpm"]) == request.conditions["heart_rate_bpm"]
        assert row["model_id"] == "unit" and row["sampler"] == "none"
        one = np.load(tmp_path / "b1" / files[0])
        np.testing.assert_array_equal(one, np.load(tmp_path / "b3" / files[0]))
        np.testing.assert_array_equal(one, seeded_samples([request])[0].numpy())
        sidecar = json.loads((tmp_path / "b1" / files[1]).read_text())
        assert sidecar["seed"] == request.seed and sidecar["synthetic"] is True


def test_resume_after_crash_generates_only_missing_and_matches_uninterrupted(tmp_path):
    requests = requests_from_rows([{"heart_rate_bpm": hr} for hr in range(40, 48)], seed=11)
    crashing = CrashAfter(calls=2)
    with pytest.raises(KeyboardInterrupt):
        make_job(tmp_path / "run", requests, generate=crashing).run()
    assert len(read_manifest(tmp_path / "run" / "manifest.csv")) == 6  # two batches of 3 were finished

    (tmp_path / "run" / "sample_1.npy").unlink()  # a lost file is generated again
    seen = []

    def counting(batch):
        seen.extend(r.name for r in batch)
        return seeded_samples(batch)

    make_job(tmp_path / "run", requests, generate=counting).run()
    assert seen == ["sample_1", "sample_6", "sample_7"]
    make_job(tmp_path / "straight", requests).run()
    for request in requests:
        np.testing.assert_array_equal(
            np.load(tmp_path / "run" / f"{request.name}.npy"), np.load(tmp_path / "straight" / f"{request.name}.npy")
        )
    with open(tmp_path / "run" / "manifest.csv", newline="") as handle:
        assert [r["name"] for r in csv.DictReader(handle)] == [r.name for r in requests]
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]


def test_bad_requests_and_bad_generator_output_are_reported(tmp_path):
    requests = requests_from_rows([{"x": 1}, {"x": 2}])
    with pytest.raises(ValueError, match="unique names"):
        make_job(tmp_path, requests + requests[:1])
    with pytest.raises(RuntimeError, match="non-finite"):
        make_job(tmp_path, requests, generate=lambda b: torch.full((len(b), 2, 8), float("nan"))).run()
    with pytest.raises(RuntimeError, match="returned 1 samples for a batch of 2"):
        make_job(tmp_path, requests, generate=lambda b: torch.zeros(1, 2, 8)).run()


def tiny_model():
    from monai_gen.networks.conditioning import ConditionalDenoiser, PhenotypeEncoder
    from monai_gen.networks.nets import DenoisingUNet

    torch.manual_seed(0)
    backbone = DenoisingUNet(
        1, 2, 2, channels=(8, 8), attention_levels=(False, True), num_res_blocks=1, norm_num_groups=8,
        num_head_channels=8, with_conditioning=True, cross_attention_dim=8,
    )
    model = ConditionalDenoiser(backbone, phenotype_encoder=PhenotypeEncoder([0, 2], embed_dim=8))
    with torch.no_grad():  # MONAI zero-initialises the attention output: give the conditions an effect
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def make_generator(**inferer_options):
    from monai_gen.diffusion.schedules import CosineSchedule
    from monai_gen.engines.sampling import DiffusionSamplingInferer
    from monai_gen.transforms.conditions import ConditionSet

    conditions = ConditionSet(
        [
            {"name": "heart_rate", "unit": "bpm", "valid_range": [30, 200], "mean": 70, "std": 15},
            {"name": "sex", "kind": "categorical", "categories": ["male", "female"]},
        ]
    )
    inferer = DiffusionSamplingInferer(CosineSchedule(0.05), num_steps=4, condition_names=conditions.names, **inferer_options)
    return ConditionalSampleGenerator(tiny_model(), inferer, conditions, (2, 16), normalisation=LinearNormalisation(0.25))


def test_sampling_generator_is_seeded_per_sample_and_guidance_one_is_conditional():
    requests = requests_from_rows([{"heart_rate": 60, "sex": "male"}, {"heart_rate": 90}, {"sex": "female"}], seed=5)
    plain = make_generator()
    batch = plain(requests)
    assert batch.shape == (3, 2, 16) and torch.isfinite(batch).all()
    one_by_one = torch.cat([plain([r]) for r in requests])
    torch.testing.assert_close(batch, one_by_one, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(make_generator(guidance_scale=1.0, phenotype_guidance={"sex": 1.0})(requests), batch)
    guided = make_generator(guidance_scale=3.0)(requests)
    assert not torch.allclose(guided, batch)
    with pytest.raises(ValueError, match="outside its valid range"):
        plain(requests_from_rows([{"heart_rate": 500}]))
    with pytest.raises(ValueError, match="not conditions of the model"):
        make_generator(phenotype_guidance={"bmi": 2.0})


def test_a_step_callback_sees_every_sampler_step_and_changes_no_sample():
    requests = requests_from_rows([{"heart_rate": 60}, {"sex": "female"}], seed=2)
    generate = make_generator(guidance_scale=2.0)
    seen = []
    watched = generate(requests, callback=lambda step, total, x: seen.append((step, total, tuple(x.shape))))
    assert seen == [(k, 4, (2, 2, 16)) for k in range(1, 5)]  # num_steps=4, the model-space batch
    torch.testing.assert_close(watched, generate(requests), rtol=0, atol=0)


def test_the_training_normalisation_is_inverted_before_postprocess_and_checked_against_the_shape():
    requests = requests_from_rows([{"heart_rate": 60}, {"heart_rate": 90}], seed=1)
    plain = make_generator()
    raw = ConditionalSampleGenerator(plain.network, plain.inferer, plain.conditions, (2, 16))(requests)  # model space
    offset = torch.linspace(-1.0, 1.0, 16).expand(2, 16)  # (C, L) in physical units
    normalisation = LinearNormalisation(0.25, offset=offset)
    shifted = ConditionalSampleGenerator(plain.network, plain.inferer, plain.conditions, (2, 16), normalisation=normalisation)
    torch.testing.assert_close(shifted(requests), raw * 0.25 + offset)
    torch.testing.assert_close(normalisation(shifted(requests)), raw)  # one object both ways
    flipped = ConditionalSampleGenerator(
        plain.network, plain.inferer, plain.conditions, (2, 16), normalisation=normalisation,
        postprocess=lambda batch: batch.flip(-1),  # applied last, in physical units
    )
    torch.testing.assert_close(flipped(requests), (raw * 0.25 + offset).flip(-1))
    with pytest.raises(ValueError, match=r"normalisation LinearNormalisation does not apply to samples of shape \(2, 16\)"):
        ConditionalSampleGenerator(
            plain.network, plain.inferer, plain.conditions, (2, 16), normalisation=LinearNormalisation(1.0, torch.zeros(3, 16))
        )
    with pytest.raises(TypeError, match="inverse"):
        ConditionalSampleGenerator(plain.network, plain.inferer, plain.conditions, (2, 16), normalisation=lambda x: x)


def test_real_network_same_batch_is_bit_identical_and_another_batch_size_agrees_to_rounding():
    """The documented claim: one seed, one batch size -> the same bits; batch size changes only float rounding."""
    from monai_gen.bundle.registry import bundle_component, find_bundle
    from monai_gen.engines.sampling import DiffusionSamplingInferer
    from monai_gen.engines.weights import load_weights
    from monai_gen.transforms.conditions import ConditionSet

    bundle = find_bundle("ecg_generative_diffusion")
    conditions = ConditionSet.load(bundle / "models/conditions.json")
    generate = ConditionalSampleGenerator(
        load_weights(bundle_component(bundle, "network_def"), bundle / "models/model.safetensors"),
        DiffusionSamplingInferer(bundle_component(bundle, "schedule"), num_steps=3, condition_names=conditions.names),
        conditions, (12, 576), normalisation=LinearNormalisation(0.25),
    )
    requests = requests_from_rows([{"heart_rate": 60.0}, {"heart_rate": 90.0}, {"qt": 400.0}], seed=2)
    together = generate(requests)
    torch.testing.assert_close(generate(requests), together, rtol=0, atol=0)
    alone = torch.cat([generate([r]) for r in requests])
    difference = float((alone - together).abs().max())
    # float rounding (batched kernels sum in another order): ~1e-5 mV, enough to flip one ADC step of a written record
    assert 0 <= difference < 1e-4


def test_a_latent_model_decodes_on_the_device_before_the_inverse_normalisation():
    """With a decoder the generator samples latents of ``sample_shape`` and returns decoded images in physical units."""
    from monai_gen.diffusion.latent import LatentScaler, LatentSpace
    from monai_gen.diffusion.schedules import CosineSchedule
    from monai_gen.engines.sampling import DiffusionSamplingInferer
    from monai_gen.networks.autoencoders import kl_autoencoder
    from monai_gen.networks.conditioning import ConditionalDenoiser, PhenotypeEncoder
    from monai_gen.networks.nets import DenoisingUNet
    from monai_gen.transforms.conditions import ConditionSet, ConditionSpec

    torch.manual_seed(0)
    backbone = DenoisingUNet(2, 4, 4, channels=(8,), attention_levels=(True,), num_res_blocks=1, norm_num_groups=8,
                             num_head_channels=8, with_conditioning=True, cross_attention_dim=8)
    network = ConditionalDenoiser(backbone, phenotype_encoder=PhenotypeEncoder([0], 8))
    space = LatentSpace(kl_autoencoder(2, 1, channels=(8, 8), latent_channels=4, norm_num_groups=4), LatentScaler(scale=2.0))
    conditions = ConditionSet([ConditionSpec("age", unit="years", valid_range=(0, 110), mean=50, std=20)])
    inferer = DiffusionSamplingInferer(CosineSchedule(), num_steps=2, condition_names=conditions.names)
    requests = requests_from_rows([{"age": 30}, {"age": 70}], seed=4)
    latents = ConditionalSampleGenerator(network, inferer, conditions, (4, 8, 8))(requests)
    images = ConditionalSampleGenerator(network, inferer, conditions, (4, 8, 8), decoder=space,
                                        normalisation=LinearNormalisation(3.0, offset=1.0))(requests)
    assert latents.shape == (2, 4, 8, 8) and images.shape == (2, 1, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(images, 3.0 * space.decode(latents) + 1.0)
    with pytest.raises(TypeError, match="decode"):
        ConditionalSampleGenerator(network, inferer, conditions, (4, 8, 8), decoder=torch.nn.Identity())


def test_array_shards_hold_each_batch_and_resume_like_per_sample_files(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from monai_gen.data.sample_writers import ArrayShardWriter

    requests = requests_from_rows([{"heart_rate_bpm": 60 + k} for k in range(10)], seed=3, prefix="ecg")

    def job(folder, generate=seeded_samples):
        return GenerationJob(requests, generate_batch=generate, writer=ArrayShardWriter(), output_dir=folder,
                             batch_size=4, provenance={"model_id": "unit"}, progress=False)

    rows = read_manifest(job(tmp_path / "whole").run())
    assert [r["files"] for r in rows[:5]] == ["shard_ecg_0.safetensors;shard_ecg_0.json"] * 4 + [
        "shard_ecg_4.safetensors;shard_ecg_4.json"]
    shards = sorted((tmp_path / "whole").glob("shard_*.safetensors"))
    assert [p.name for p in shards] == ["shard_ecg_0.safetensors", "shard_ecg_4.safetensors", "shard_ecg_8.safetensors"]
    torch.testing.assert_close(torch.cat([load_file(p)["samples"] for p in shards]), seeded_samples(requests))
    with safe_open(shards[2], "pt") as handle:
        recorded = json.loads(handle.metadata()["samples"])
    assert recorded == [{"name": f"ecg_{k}", "seed": 3 + k, "conditions": {"heart_rate_bpm": 60 + k}} for k in (8, 9)]
    sidecar = json.loads((tmp_path / "whole" / "shard_ecg_8.json").read_text())
    assert sidecar["synthetic"] is True and sidecar["model_id"] == "unit" and sidecar["samples"] == recorded

    with pytest.raises(KeyboardInterrupt):
        job(tmp_path / "resumed", CrashAfter(1)).run()  # killed after the first shard
    assert [p.name for p in (tmp_path / "resumed").glob("shard_*.safetensors")] == ["shard_ecg_0.safetensors"]
    job(tmp_path / "resumed").run()
    resumed = sorted((tmp_path / "resumed").glob("shard_*.safetensors"))
    assert [p.read_bytes() for p in resumed] == [p.read_bytes() for p in shards]  # the same batches, the same files


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _without_created_utc(folder: Path) -> dict[str, bytes]:
    return {name: re.sub(rb'"created_utc": "[^"]*"', b'"created_utc": ""', data)
            for name, data in _folder_bytes(folder).items()}


def test_background_writers_give_the_same_files_and_write_while_the_next_batch_is_generated(tmp_path):
    import threading

    requests = requests_from_rows([{"heart_rate_bpm": hr} for hr in range(50, 120, 10)], seed=3)  # 7: batches 3, 3, 1
    inline = GenerationJob(requests, generate_batch=seeded_samples, writer=npy_writer, output_dir=tmp_path / "inline",
                           batch_size=3, provenance={"model_id": "unit"}, progress=False, writer_threads=0)
    inline.run()

    second_batch_started = threading.Event()
    calls, writer_threads = [], set()

    def generate(batch):
        calls.append(batch[0].name)
        if len(calls) == 2:
            second_batch_started.set()
        return seeded_samples(batch)

    def overlapping_writer(sample, stem, provenance):
        writer_threads.add(threading.current_thread().name)
        if stem.name == "sample_0" and not second_batch_started.wait(timeout=30):
            raise AssertionError("batch 0 was written before batch 1 began: no overlap")
        return npy_writer(sample, stem, provenance)

    threaded = GenerationJob(requests, generate_batch=generate, writer=overlapping_writer,
                             output_dir=tmp_path / "threaded", batch_size=3, provenance={"model_id": "unit"},
                             progress=False, writer_threads=3)
    threaded.run()
    # manifest included; the sidecars' created_utc is the wall clock of each job, which may differ by a second
    assert _without_created_utc(tmp_path / "threaded") == _without_created_utc(tmp_path / "inline")
    assert writer_threads and all(name.startswith("write") for name in writer_threads)
    with pytest.raises(ValueError, match="writer_threads must be >= 0"):
        GenerationJob(requests, generate_batch=generate, writer=npy_writer, output_dir=tmp_path, writer_threads=-1)


def test_a_failing_background_write_stops_the_job_with_its_error_and_the_manifest_keeps_the_written_batches(tmp_path):
    requests = requests_from_rows([{"heart_rate_bpm": hr} for hr in range(50, 110, 10)], seed=0)  # 6: batches 2, 2, 2

    def failing_writer(sample, stem, provenance):
        if stem.name == "sample_3":
            raise OSError(f"{stem}: disk full")
        return npy_writer(sample, stem, provenance)

    job = GenerationJob(requests, generate_batch=seeded_samples, writer=failing_writer, output_dir=tmp_path,
                        batch_size=2, provenance={"model_id": "unit"}, progress=False, writer_threads=2)
    with pytest.raises(OSError, match="sample_3: disk full"):
        job.run()
    assert [r["name"] for r in read_manifest(tmp_path / "manifest.csv")] == ["sample_0", "sample_1"]
    resumed = GenerationJob(requests, generate_batch=seeded_samples, writer=npy_writer, output_dir=tmp_path,
                            batch_size=2, provenance={"model_id": "unit"}, progress=False)
    assert [r["name"] for r in read_manifest(resumed.run())] == [r.name for r in requests]
