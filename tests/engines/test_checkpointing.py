"""Atomic checkpoints and exact resume: a SIGKILLed diffusion run, restarted, ends bitwise equal to an uninterrupted one."""

from __future__ import annotations

import os
import random
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import wfdb
from ignite.engine import Engine
from monai.transforms import Compose, RandFlipd, RandGaussianNoised, RandScaleIntensityd

from monai_gen.bundle.registry import find_bundle, run_bundle_workflow
from monai_gen.engines.checkpointing import (
    AtomicCheckpointSaver,
    RandomStates,
    ResumeFromLatest,
    TransformRandomStates,
    find_latest_checkpoint,
    list_checkpoints,
)

# The training script run in a subprocess (and, for the reference run, in this process through runpy).
SCRIPT = '''
import sys, time
import numpy as np, torch, wfdb
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai_gen.diffusion.objectives import DiffusionObjective
from monai_gen.diffusion.schedules import CosineSchedule
from monai_gen.engines.distributed import seeded_sampler
from monai_gen.engines.training import build_diffusion_trainer
from monai_gen.networks.nets import DenoisingUNet


def train(data_dir, ckpt_dir, epochs, delay=0.0, every=3, stop_at=None):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    signal = wfdb.rdrecord(f"{data_dir}/ecg/cinc2021/E07500").p_signal.T.astype(np.float32)
    items = [{"image": torch.from_numpy(signal[:, i * 256:(i + 1) * 256].copy())} for i in range(6)]
    network = DenoisingUNet(1, 12, 12, channels=(8, 8), attention_levels=(False, False), num_res_blocks=1,
                            norm_num_groups=4)
    dataset = Dataset(items)
    loader = DataLoader(dataset, batch_size=2, sampler=seeded_sampler(dataset, seed=3))
    optimizer = torch.optim.Adam(network.parameters(), 1e-3)
    setup = build_diffusion_trainer(
        network, DiffusionObjective(CosineSchedule(0.05), prediction_type="v_prediction"), loader,
        optimizer=optimizer, max_epochs=epochs, ema_momentum=0.1, seed=5, checkpoint_dir=ckpt_dir,
        checkpoint_every=every, n_saved=2, lr_scheduler=torch.optim.lr_scheduler.StepLR(optimizer, 4, 0.5),
    )
    if delay:
        setup.trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: time.sleep(delay))
    if stop_at:
        setup.trainer.add_event_handler(Events.ITERATION_COMPLETED(once=stop_at), lambda e: e.terminate())
    setup.trainer.run()
    return setup


if __name__ == "__main__":
    train(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
'''
EPOCHS = 4  # epoch length 3 (6 items, batch 2): 12 iterations, checkpoints at 3, 6, 9, 12


def _flat(setup) -> dict[str, torch.Tensor]:
    state = {f"net.{k}": v for k, v in setup.trainer.network.state_dict().items()}
    state |= {f"ema.{k}": v for k, v in setup.ema.ema_model.state_dict().items()}
    for i, s in setup.trainer.optimizer.state_dict()["state"].items():
        state |= {f"opt.{i}.{k}": torch.as_tensor(v) for k, v in s.items()}
    return state


@pytest.mark.slow
def test_sigkill_and_resume_equals_uninterrupted_run(shared_data, tmp_path):
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    reference = runpy.run_path(str(script), run_name="reference")["train"](str(shared_data), tmp_path / "ref", EPOCHS)
    assert reference.trainer.state.iteration == 12
    assert [i for i, _ in list_checkpoints(tmp_path / "ref")] == [9, 12]  # n_saved=2

    ckpt = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(shared_data), str(ckpt), str(EPOCHS), "1.0"], env=env)
    try:
        deadline = time.monotonic() + 120
        while not list_checkpoints(ckpt) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert list_checkpoints(ckpt), "the killed run never wrote a checkpoint"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    killed_at = [i for i, _ in list_checkpoints(ckpt)]
    assert proc.returncode == -signal.SIGKILL and max(killed_at) < 12, killed_at

    resumed = runpy.run_path(str(script), run_name="resumed")["train"](str(shared_data), ckpt, EPOCHS)
    assert resumed.resume.loaded_from is not None and resumed.resume.loaded_from.name.startswith("checkpoint_")
    assert resumed.trainer.state.iteration == reference.trainer.state.iteration == 12
    assert resumed.trainer.state.epoch == EPOCHS
    for _, path in list_checkpoints(ckpt):
        assert {"network", "ema", "optimizer", "trainer", "rng", "lr_scheduler"} <= set(
            torch.load(path, weights_only=True)
        )
    assert sorted(p.name for p in ckpt.iterdir()) == ["checkpoint_12.pt", "checkpoint_9.pt"]  # no temp files
    expected, got = _flat(reference), _flat(resumed)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert any(not torch.equal(got[k], got[f"ema.{k[4:]}"]) for k in got if k.startswith("net."))
    assert resumed.trainer.optimizer.param_groups[0]["lr"] == reference.trainer.optimizer.param_groups[0]["lr"]


def test_resume_from_mid_epoch_checkpoint_equals_uninterrupted_run(shared_data, tmp_path):
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    train = runpy.run_path(str(script), run_name="mid_epoch")["train"]
    reference = train(str(shared_data), tmp_path / "ref", 2, every=2)  # epoch length 3: saves at 2, 4, 6
    stopped = train(str(shared_data), tmp_path / "run", 2, every=2, stop_at=4)
    assert stopped.trainer.state.iteration == 4 and stopped.resume.loaded_from is None
    resumed = train(str(shared_data), tmp_path / "run", 2, every=2)
    assert resumed.resume.loaded_from.name == "checkpoint_4.pt"  # one iteration into the second epoch
    assert resumed.trainer.state.iteration == 6
    expected, got = _flat(reference), _flat(resumed)
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


# Writes a ~12 MB checkpoint every iteration, each holding weights equal to its iteration number.
WRITER = """
import sys, torch
from ignite.engine import Engine
from monai_gen.engines.checkpointing import AtomicCheckpointSaver
layer = torch.nn.Linear(2048, 1536, bias=False)
saver = AtomicCheckpointSaver(sys.argv[1], {"layer": layer}, every=1, n_saved=2)
engine = Engine(lambda e, b: torch.nn.init.constant_(layer.weight, float(e.state.iteration)))
saver.attach(engine)
engine.run(range(100000), max_epochs=1)
"""


@pytest.mark.slow
def test_sigkill_while_writing_leaves_only_complete_checkpoints(tmp_path):
    script, folder = tmp_path / "writer.py", tmp_path / "ckpt"
    script.write_text(WRITER)
    interrupted = []
    for _ in range(5):  # kill as soon as a write is seen in progress; retry if that write finished first
        proc = subprocess.Popen([sys.executable, str(script), str(folder)], env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.monotonic() + 60
        while len(list_checkpoints(folder)) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        while not list(folder.glob(".checkpoint_*.tmp*")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.0005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        interrupted = list(folder.glob(".checkpoint_*.tmp*"))
        if interrupted:
            break
    assert interrupted, "no kill landed during a write"
    saved = list_checkpoints(folder)
    assert saved
    for iteration, path in saved:  # every visible checkpoint is complete and holds its own iteration's weights
        weight = torch.load(path, weights_only=True)["layer"]["weight"]
        assert weight.shape == (1536, 2048) and weight.eq(iteration).all(), path
    assert find_latest_checkpoint(folder) == saved[-1][1]
    AtomicCheckpointSaver(folder, {"layer": torch.nn.Linear(1, 1)}, every=1).attach(Engine(lambda e, b: None))
    assert not list(folder.glob(".*"))  # the next run's saver clears the interrupted temporary file


def test_random_states_round_trip_through_weights_only_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    torch.save({"rng": RandomStates().state_dict()}, tmp_path / "rng.pt")
    expected = (random.random(), random.gauss(0, 1), np.random.rand(3), np.random.randn(), torch.rand(4))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    RandomStates().load_state_dict(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    got = (random.random(), random.gauss(0, 1), np.random.rand(3), np.random.randn(), torch.rand(4))
    assert got[:2] == expected[:2]
    np.testing.assert_array_equal(got[2], expected[2])
    assert got[3] == expected[3]
    assert torch.equal(got[4], expected[4])


def test_random_states_rejects_incomplete_entry():
    with pytest.raises(ValueError, match=r"lacks \['numpy_extra'"):
        RandomStates().load_state_dict({"torch": torch.get_rng_state(), "numpy_keys": torch.zeros(624)})


def test_transform_random_states_continue_the_augmentation_stream(shared_data, tmp_path):
    signal = wfdb.rdrecord(str(shared_data / "ecg/cinc2021/E07500")).p_signal.T.astype(np.float32)
    item = {"image": torch.from_numpy(signal[:, :256].copy())}
    pipeline = Compose([RandGaussianNoised("image", prob=1.0, std=0.05), RandFlipd("image", prob=0.5, spatial_axis=0),
                        RandScaleIntensityd("image", factors=0.2, prob=1.0)])
    pipeline.set_random_state(0)
    states = TransformRandomStates(pipeline)
    # Compose, the three dictionary transforms, the random array transforms inside two of them (Flip is not random)
    assert len(states.randomizables) == 6
    [pipeline(item) for _ in range(3)]  # part-way through the stream
    torch.save({"augmentation": states.state_dict()}, tmp_path / "ckpt.pt")
    expected = [pipeline(item)["image"] for _ in range(4)]
    pipeline.set_random_state(123)
    assert not torch.equal(pipeline(item)["image"], expected[0])
    TransformRandomStates(pipeline).load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True)["augmentation"])
    got = [pipeline(item)["image"] for _ in range(4)]
    assert all(torch.equal(g, e) for g, e in zip(got, expected, strict=True))
    assert not torch.equal(expected[0], expected[1])  # the stream moves on
    with pytest.raises(ValueError, match="random states of 6 transforms, but the pipeline has 2"):
        TransformRandomStates(RandGaussianNoised("image")).load_state_dict(states.state_dict())


def _engine(n_iterations: int) -> Engine:
    engine = Engine(lambda e, b: None)
    engine.run(range(n_iterations), max_epochs=1)
    return engine


def test_saver_keeps_newest_and_latest_skips_truncated_file(tmp_path):
    layer = torch.nn.Linear(3, 2)
    saver = AtomicCheckpointSaver(tmp_path, {"layer": layer}, every=2, n_saved=2)
    (tmp_path / ".checkpoint_4.pt.abc.tmp.pt").write_bytes(b"partial")  # left by a killed writer
    engine = Engine(lambda e, b: torch.nn.init.constant_(layer.weight, float(e.state.iteration)))
    saver.attach(engine)
    engine.run(range(5), max_epochs=1)  # saves at 2, 4 and final 5; keeps 4 and 5
    assert [i for i, _ in list_checkpoints(tmp_path)] == [4, 5]
    assert not list(tmp_path.glob(".*"))
    assert torch.load(tmp_path / "checkpoint_5.pt", weights_only=True)["layer"]["weight"].eq(5).all()
    # a truncated newest file (from a non-atomic writer) is skipped in favour of the previous complete one
    data = (tmp_path / "checkpoint_5.pt").read_bytes()
    (tmp_path / "checkpoint_7.pt").write_bytes(data[: len(data) // 2])
    assert find_latest_checkpoint(tmp_path) == tmp_path / "checkpoint_5.pt"
    assert find_latest_checkpoint(tmp_path, required_keys=("layer", "optimizer")) is None
    assert find_latest_checkpoint(tmp_path / "missing") is None


def test_resume_from_latest_restores_objects_and_iteration(tmp_path):
    source = torch.nn.Linear(3, 2)
    saver = AtomicCheckpointSaver(tmp_path, {"layer": source, "trainer": _engine(6)}, every=1)
    saver(_engine(6))
    target = torch.nn.Linear(3, 2)
    engine = Engine(lambda e, b: None)
    resume = ResumeFromLatest(tmp_path, {"layer": target, "trainer": engine})
    resume.attach(engine)
    engine.run(range(6), max_epochs=2)
    assert resume.loaded_from == tmp_path / "checkpoint_6.pt"
    assert engine.state.iteration == 12  # 6 restored + 6 of the second epoch
    assert torch.equal(target.weight, source.weight)


@pytest.mark.parametrize(("kwargs", "match"), [({"every": 0}, "'every' must be >= 1, got 0"),
                                               ({"every": 1, "n_saved": 0}, "n_saved must be >= 1 or None, got 0")])
def test_saver_rejects_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        AtomicCheckpointSaver(tmp_path, {"x": torch.nn.Linear(1, 1)}, **kwargs)


def test_saver_rejects_empty_save_dict(tmp_path: Path):
    with pytest.raises(ValueError, match="save_dict is empty"):
        AtomicCheckpointSaver(tmp_path, {}, every=1)


# The bundle's own train.json (AtomicCheckpointSaver, ResumeFromLatest, seeded_sampler), checkpointing every iteration.
EVERY_ITERATION = {"checkpoint_every_iterations": 1, "train#checkpoint_saver#n_saved": None}


@pytest.mark.slow
def test_bundle_train_config_resumes_mid_epoch_exactly(shared_data, tmp_path):
    records = tmp_path / "records"
    records.mkdir()
    for name in ("E07500", "E07501", "JS20000", "HR06003"):
        for suffix in (".hea", ".mat"):
            (records / f"{name}{suffix}").symlink_to(shared_data / "ecg" / "cinc2021" / f"{name}{suffix}")
    out = tmp_path / "train"
    overrides = EVERY_ITERATION | {
        "dataset_dir": str(records), "output_dir": str(out), "max_epochs": 2,
        "batch_size": 4, "max_beats_per_record": 4,
    }
    first = run_bundle_workflow(find_bundle("ecg_generative_diffusion"), "train", overrides)
    assert first.parser.get_parsed_content("train#resume_handler").loaded_from is None
    assert [i for i, _ in list_checkpoints(out)] == [1, 2, 3, 4, 5, 6]  # 12 beats, batch 4: 3 iterations per epoch
    reference = torch.load(out / "checkpoint_6.pt", weights_only=True)
    exported = (out / "models" / "model.safetensors").read_bytes()

    # leave only what a run killed during iteration 5 (mid epoch 2) would have kept of the newest checkpoints
    for iteration, path in list_checkpoints(out):
        if iteration != 4:
            path.unlink()
    (out / "models" / "model.safetensors").unlink()
    second = run_bundle_workflow(find_bundle("ecg_generative_diffusion"), "train", overrides)
    assert second.parser.get_parsed_content("train#resume_handler").loaded_from == out / "checkpoint_4.pt"
    assert [i for i, _ in list_checkpoints(out)] == [4, 5, 6]  # iterations 1-3 were not trained again
    resumed = torch.load(out / "checkpoint_6.pt", weights_only=True)
    assert resumed["trainer"] == reference["trainer"]
    for part in ("model", "ema"):
        assert all(torch.equal(resumed[part][k], v) for k, v in reference[part].items()), part
    assert (out / "models" / "model.safetensors").read_bytes() == exported  # the exported EMA weights too
