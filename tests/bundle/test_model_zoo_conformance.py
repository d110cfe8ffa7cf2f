"""Every bundle under bundles/ passes the checks Project-MONAI/model-zoo's CI runs on a contributed bundle.

model-zoo's ``ci/verify_bundle.py`` checks the layout (``LICENSE``, ``configs/metadata.json``, ``models/model.pt``,
an inference config), that the version is in the changelog, the metadata against its schema, the network's input /
output shapes and the TorchScript export with MONAI's own tools; its unit tests check the workflows' properties;
its contributing rules cap files at 25 MB, and its pre-commit formats JSON with
``pretty-format-json --indent=4 --no-sort-keys``. The same checks run here with MONAI's functions, offline: the
metadata schema comes from ``../shared/schemas`` (the copy of the release asset the ``schema`` URL names).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export, verify_metadata, verify_net_in_out
from safetensors.torch import load_file

from monai_gen.bundle.registry import training_stages, workflow_config_names
from monai_gen.bundle.runs import export_bundle, torch_state_dict_bytes

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO.parent / "shared" / "schemas"
BUNDLES = sorted(p for p in (REPO / "bundles").iterdir() if (p / "configs" / "metadata.json").is_file())
MAX_FILE_BYTES = 25 * 1024 * 1024  # model-zoo CONTRIBUTING.md: no file over 25 MB
REQUIRED_FILES = ("LICENSE", "configs/metadata.json", "models/model.pt", "configs/inference.json")

pytestmark = pytest.mark.parametrize("bundle", BUNDLES, ids=[p.name for p in BUNDLES])


def _pretty_json(text: str) -> str:
    """What pre-commit's ``pretty-format-json --indent=4 --no-sort-keys`` makes of ``text`` (it escapes non-ASCII)."""
    return json.dumps(json.loads(text, object_pairs_hook=dict), indent=4) + "\n"


def _meta(bundle: Path) -> dict:
    return json.loads((bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))


def _net_config(bundle: Path) -> list[str]:
    """The config files of the inference workflow, layered as the bundle runs them (common.json first)."""
    return [str(bundle / "configs" / f"{name}.json") for name in workflow_config_names(bundle, "inference")]


def _forward_inputs(bundle: Path) -> tuple[torch.Tensor, ...]:
    """Random inputs as ``network_data_format`` declares them: ``image`` (1, C, *spatial), then ``timesteps`` (1,)."""
    inputs = _meta(bundle)["network_data_format"]["inputs"]
    image = inputs["image"]
    torch.manual_seed(0)
    x = torch.randn(1, image["num_channels"], *image["spatial_shape"])
    if "timesteps" not in inputs:
        return (x,)
    low, high = inputs["timesteps"]["value_range"]
    return x, low + (high - low) * torch.rand(1)


def test_layout_version_sizes_and_json_format(bundle):
    missing = [name for name in REQUIRED_FILES if not (bundle / name).is_file()]
    assert not missing, f"{bundle.name} lacks {missing}"
    meta = _meta(bundle)
    assert meta["version"] in meta["changelog"], "the version must have a changelog entry"
    files = [p for p in bundle.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert not [p for p in files if p.stat().st_size > MAX_FILE_BYTES]
    unformatted = [
        str(p.relative_to(bundle)) for p in files if p.suffix == ".json" and _pretty_json(p.read_text()) != p.read_text()
    ]
    assert not unformatted, f"not 4-space pretty-printed JSON with a final newline: {unformatted}"


def test_metadata_matches_its_schema(bundle):
    schema = SCHEMAS / _meta(bundle)["schema"].rsplit("/", 1)[-1]
    if not schema.is_file():
        pytest.skip(f"offline schema copy {schema} is absent")
    verify_metadata(meta_file=str(bundle / "configs" / "metadata.json"), filepath=str(schema))


def test_model_pt_is_the_safetensors_weights_in_pytorch_format(bundle):
    models = bundle / "models"
    state = torch.load(models / "model.pt", weights_only=True)
    shipped = load_file(models / "model.safetensors")
    assert list(state) == sorted(shipped)
    for name, tensor in shipped.items():
        assert torch.equal(state[name], tensor) and state[name].dtype == tensor.dtype, name
    assert (models / "model.pt").read_bytes() == torch_state_dict_bytes(models / "model.safetensors")  # reproducible


def test_network_inputs_and_outputs_match_the_metadata(bundle):
    # no extra_forward_args: the time input (declared as timesteps) has a default, as model-zoo's CI passes only x
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=_net_config(bundle),
        bundle_root=str(bundle),
        device="cpu",
    )


def test_ckpt_export_gives_a_torchscript_equal_to_the_eager_network(bundle, tmp_path):
    ts_file = tmp_path / "model.ts"
    config = _net_config(bundle)
    ckpt_export(
        net_id="network_def",
        filepath=str(ts_file),
        ckpt_file=str(bundle / "models" / "model.pt"),
        meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=config,
        bundle_root=str(bundle),
    )
    scripted = torch.jit.load(str(ts_file)).eval()
    parser = ConfigParser()
    parser.read_config(config)
    parser.read_meta(str(bundle / "configs" / "metadata.json"))
    parser["bundle_root"] = str(bundle)
    eager = parser.get_parsed_content("network_def")
    eager.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))
    eager.eval()
    inputs = _forward_inputs(bundle)
    with torch.no_grad():
        torch.testing.assert_close(scripted(*inputs), eager(*inputs), rtol=0, atol=0)


def _small_ecg_folder(shared_data: Path, folder: Path) -> Path:
    folder.mkdir()
    for name in ("E07500", "E07501", "JS20000", "HR06003"):
        for suffix in (".hea", ".mat"):
            (folder / f"{name}{suffix}").symlink_to(shared_data / "ecg" / "cinc2021" / f"{name}{suffix}")
    return folder


def _small_ixi_folder(shared_data: Path, folder: Path) -> Path:
    ixi = shared_data / "brain_mri" / "ixi_t1_2mm"
    lines = (ixi / "participants.csv").read_text().splitlines()[:5]  # header + 4 subjects
    (folder / "t1").mkdir(parents=True)
    for line in lines[1:]:
        name = f"{line.split(',')[0]}_T1.nii.gz"
        (folder / "t1" / name).symlink_to(ixi / "t1" / name)
    (folder / "participants.csv").write_text("\n".join(lines) + "\n")
    return folder


_BRAIN_AUTOENCODER = REPO / "bundles" / "brain_mri_generative_diffusion" / "models" / "autoencoder.safetensors"
_CARDIAC_AUTOENCODER = REPO / "bundles" / "cardiac_mri_generative_diffusion" / "models" / "autoencoder.safetensors"


def _acdc_folder(shared: Path, folder: Path) -> Path:
    return shared / "cardiac_mri" / "acdc_subset"  # read only; the cohort cache goes to the run's output folder


_CT_AUTOENCODER = REPO / "bundles" / "ct_generative_diffusion" / "models" / "autoencoder.safetensors"


def _small_ct_folder(shared: Path, folder: Path) -> Path:
    """Two CTs (two subjects) as a user's folder: the 30-slice abdomen and the aorta crop."""
    source = shared / "ct" / "totalsegmentator"
    folder.mkdir(parents=True)
    (folder / "abdomen.nii.gz").symlink_to(source / "example_ct_sm.nii.gz")
    (folder / "aorta.nii.gz").symlink_to(source / "aorta_report" / "test_result" / "models" / "ct_cropped.nii.gz")
    return folder


TRAIN_DATA = {
    "ecg_generative_diffusion": (_small_ecg_folder, {"max_beats_per_record": 2, "batch_size": 4}),
    # its last stage (train_diffusion) needs stage 1's autoencoder: the shipped one
    "brain_mri_generative_diffusion": (
        _small_ixi_folder, {"slice_indices": [50, 70], "batch_size": 4, "autoencoder_file": str(_BRAIN_AUTOENCODER)}
    ),
    "cardiac_mri_generative_diffusion": (
        _acdc_folder, {"patients": ["patient001", "patient002", "patient061", "patient062"], "slice_indices": [3],
                       "batch_size": 4, "autoencoder_file": str(_CARDIAC_AUTOENCODER)}
    ),
    "ct_generative_diffusion": (
        _small_ct_folder, {"patch_size": [16, 16, 16], "patches_per_volume": 2, "batch_size": 2,
                           "autoencoder_file": str(_CT_AUTOENCODER)}
    ),
}
"""Per bundle: a small real training set (a function of the shared data folder and a new folder) and overrides."""


@pytest.mark.parametrize("workflow_type", ["train", "inference"])
def test_workflow_has_every_monai_property(bundle, workflow_type, tmp_path, request):
    """``check_properties`` after ``initialize`` (as model-zoo's tests and CI do): no missing or misnamed property."""
    overrides = {"bundle_root": str(bundle), "output_dir": str(tmp_path / "out")}
    if workflow_type == "train" and bundle.name in TRAIN_DATA:
        make_folder, extra = TRAIN_DATA[bundle.name]
        data = make_folder(request.getfixturevalue("shared_data"), tmp_path.joinpath("data"))
        overrides.update(dataset_dir=str(data), **extra)
    stage = training_stages(bundle)[-1] if workflow_type == "train" else "inference"
    workflow = ConfigWorkflow(
        config_file=[str(bundle / "configs" / f"{name}.json") for name in workflow_config_names(bundle, stage)],
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=str(bundle / "configs" / "logging.conf"),
        workflow_type=workflow_type,
        **overrides,
    )
    workflow.initialize()
    assert workflow.check_properties() == []


def test_an_exported_bundle_ships_model_pt_from_its_safetensors(bundle, tmp_path):
    run_models = tmp_path / "run" / "models"  # a training run's models/ folder: no model.pt
    run_models.mkdir(parents=True)
    for path in (bundle / "models").iterdir():
        if path.name != "model.pt":
            run_models.joinpath(path.name).write_bytes(path.read_bytes())
    exported = export_bundle(bundle, run_models, tmp_path / "exported", version="9.9.9")
    assert (exported / "models" / "model.pt").read_bytes() == (bundle / "models" / "model.pt").read_bytes()
    meta_text = (exported / "configs" / "metadata.json").read_text()
    assert meta_text == _pretty_json(meta_text) and "9.9.9" in json.loads(meta_text)["changelog"]


def test_every_declared_condition_is_an_inference_option(bundle):
    # a condition missing from inference.json's requested_values would be accepted by monai-gen and then left
    # unconditioned without a word (the v0.3 ECG configs first lacked the three diagnoses)
    names = [c["name"] for c in _meta(bundle)["conditions"]]
    config = json.loads((bundle / "configs" / "inference.json").read_text(encoding="utf-8"))
    assert list(config["requested_values"]) == names
    assert all(config["requested_values"][n] == f"@{n}" and n in config for n in names)
