"""Finding bundles (by name or path), reading their conditions, and running their configs as MONAI workflows.

``monai-gen`` and ``python -m monai.bundle run`` do the same thing because both end in
:func:`run_bundle_workflow`, a MONAI :class:`~monai.bundle.ConfigWorkflow` over the bundle's own config files.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monai_gen.transforms.conditions import ConditionSet

if TYPE_CHECKING:
    from monai.bundle import ConfigParser, ConfigWorkflow

# monai.bundle is imported where a config is parsed or run, so listing bundles (`monai-gen bundles`, --help) is fast.

__all__ = [
    "BUNDLE_PATH_ENV",
    "BundleInfo",
    "bundle_search_path",
    "find_bundle",
    "list_bundles",
    "read_bundle_info",
    "bundle_component",
    "run_bundle_workflow",
    "workflow_config_names",
    "training_stages",
    "check_run_arguments",
]

BUNDLE_PATH_ENV = "MONAI_GEN_BUNDLE_PATH"
"""Environment variable: extra folders (``os.pathsep``-separated) holding bundles, searched first."""

_SHIPPED = Path(__file__).resolve().parents[2] / "bundles"
_COMMON = "common"  # configs/common.json: what every workflow of a bundle shares, layered under each
_MULTI_GPU = "multi_gpu_"  # configs/multi_gpu_<stage>.json: applied on top of <stage>.json (run under torchrun)


@dataclass(frozen=True)
class BundleInfo:
    """What ``monai-gen bundles`` prints about one bundle.

    Args:
        name: folder name.
        root: bundle folder.
        version, task: from ``configs/metadata.json``.
        conditions: the phenotypes it is conditioned on (with trained statistics when the weights ship them).
    """

    name: str
    root: Path
    version: str
    task: str
    conditions: ConditionSet


def bundle_search_path() -> list[Path]:
    """Folders searched for bundles: ``$MONAI_GEN_BUNDLE_PATH`` entries, then the shipped ``bundles/``."""
    extra = [Path(p) for p in os.environ.get(BUNDLE_PATH_ENV, "").split(os.pathsep) if p]
    return [*extra, _SHIPPED]


def find_bundle(name_or_path: str | os.PathLike) -> Path:
    """The root folder of a bundle given by path or by name.

    Raises:
        FileNotFoundError: no such bundle; the message lists the bundles that exist.
    """
    candidate = Path(name_or_path).expanduser()
    if (candidate / "configs" / "metadata.json").is_file():
        return candidate.resolve()
    for folder in bundle_search_path():
        if (folder / str(name_or_path) / "configs" / "metadata.json").is_file():
            return (folder / str(name_or_path)).resolve()
    known = [info.name for info in list_bundles()]
    raise FileNotFoundError(
        f"no bundle {str(name_or_path)!r}: not a folder with configs/metadata.json and not a known bundle name "
        f"(known: {known}; searched {[str(p) for p in bundle_search_path()]})."
    )


def list_bundles() -> list[BundleInfo]:
    """Every bundle on :func:`bundle_search_path`, sorted by name (the first of equal names wins)."""
    found: dict[str, BundleInfo] = {}
    for folder in bundle_search_path():
        for meta in sorted(folder.glob("*/configs/metadata.json")):
            root = meta.parent.parent
            if root.name not in found:
                found[root.name] = read_bundle_info(root)
    return [found[name] for name in sorted(found)]


def read_bundle_info(root: Path) -> BundleInfo:
    """Read a bundle's metadata and conditions (trained ``models/conditions.json`` if present, else metadata)."""
    meta_file = root / "configs" / "metadata.json"
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"bundle metadata {meta_file} cannot be read: {err}.") from err
    trained = root / "models" / "conditions.json"
    if trained.is_file():
        conditions = ConditionSet.load(trained)
    else:
        conditions = ConditionSet.from_dict(meta.get("conditions", []), source=str(meta_file))
    return BundleInfo(root.name, root, str(meta.get("version", "")), str(meta.get("task", "")), conditions)


@lru_cache(maxsize=8)
def _common_parser(bundle_root: str, config: str) -> ConfigParser:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_meta(Path(bundle_root) / "configs" / "metadata.json")
    parser.read_config(Path(bundle_root) / config)
    parser["bundle_root"] = bundle_root
    return parser


def bundle_component(bundle_root: str | os.PathLike, component_id: str, *, config: str = "configs/common.json") -> Any:
    """Instantiate ``component_id`` of the bundle's shared config from Python (tutorials, benchmarks, tests).

    The bundle's own workflows do not need it: they layer ``common.json`` under their config
    (:func:`workflow_config_names`). Each call builds a fresh object.
    """
    parser = _common_parser(str(Path(bundle_root).resolve()), config)
    if component_id not in parser:
        raise KeyError(f"{Path(bundle_root) / config} has no id {component_id!r}.")
    return parser.get_parsed_content(component_id, instantiate=True, lazy=False)


def workflow_config_names(bundle_root: str | os.PathLike, workflow: str) -> list[str]:
    """The config files (names without ``.json``) a workflow layers, in MONAI's order: later files win.

    ``common`` first when the bundle has it, then ``<workflow>``; ``multi_gpu_<stage>`` goes on top of ``<stage>``
    (``["common", "train", "multi_gpu_train"]``), as model-zoo bundles layer them.

    Raises:
        FileNotFoundError: a config of the chain is missing (the message lists the bundle's configs).
    """
    configs = Path(bundle_root) / "configs"
    chain = [workflow[len(_MULTI_GPU):], workflow] if workflow.startswith(_MULTI_GPU) else [workflow]
    names = ([_COMMON] if (configs / f"{_COMMON}.json").is_file() else []) + chain
    missing = [n for n in names if not (configs / f"{n}.json").is_file()]
    if missing:
        present = sorted(p.stem for p in configs.glob("*.json") if p.stem not in ("metadata", _COMMON))
        raise FileNotFoundError(
            f"bundle {Path(bundle_root).name} has no configs/{missing[0]}.json; its workflows are {present}."
        )
    return names


def training_stages(bundle_root: str | os.PathLike) -> list[str]:
    """The bundle's training configs in the order they run, from ``metadata.json``'s ``training_stages``
    (e.g. ``["train_autoencoder", "train_diffusion"]`` for a latent model); ``["train"]`` when not declared."""
    meta = json.loads((Path(bundle_root) / "configs" / "metadata.json").read_text(encoding="utf-8"))
    return [str(stage) for stage in meta.get("training_stages", ["train"])]


def run_bundle_workflow(
    bundle: str | os.PathLike, config: str = "inference", overrides: Mapping[str, Any] | None = None
) -> ConfigWorkflow:
    """Run a bundle workflow as ``python -m monai.bundle run --config_file "[...]"`` would, and return it.

    Args:
        bundle: bundle name or folder.
        config: the workflow, e.g. ``"inference"``, ``"evaluate"``, a training stage (``"train"``,
            ``"train_autoencoder"``...) or ``"multi_gpu_<workflow>"`` (run the process under ``torchrun``); its
            configs are layered by :func:`workflow_config_names`. A workflow whose name (after ``multi_gpu_``) starts
            with ``train`` is a MONAI ``train`` workflow, any other an ``inference`` one.
        overrides: config ids to override, e.g. ``{"heart_rate": 75, "num_samples": 4}``.
    """
    from monai.bundle import ConfigWorkflow

    root = find_bundle(bundle)
    config_files = [root / "configs" / f"{name}.json" for name in workflow_config_names(root, config)]
    logging_file = root / "configs" / "logging.conf"
    workflow = ConfigWorkflow(
        config_file=[str(f) for f in config_files],
        meta_file=str(root / "configs" / "metadata.json"),
        logging_file=str(logging_file) if logging_file.is_file() else None,
        workflow_type="train" if config.removeprefix(_MULTI_GPU).startswith("train") else "inference",
        bundle_root=str(root),
        **dict(overrides or {}),
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return workflow


def check_run_arguments(bundle_root: str | os.PathLike, configs: Sequence[str], argv: Sequence[str] | None = None) -> None:
    """Refuse ``python -m monai.bundle run`` options that name no config id of the bundle (``--hr 75``).

    MONAI stores any ``--key value`` as a new config id, so a misspelled option would be ignored silently. Called
    from a config's ``run`` list; does nothing when the process is not ``python -m monai.bundle`` (``monai-gen``
    validates its own options).

    Args:
        bundle_root: the bundle folder.
        configs: the config names the run layers (e.g. ``["inference"]``).
        argv: the command line (default ``sys.argv``).

    Raises:
        ValueError: options that are neither config ids (first part of an ``a#b`` id) nor arguments of MONAI's run.
    """
    argv = list(sys.argv if argv is None else argv)
    if not argv or Path(argv[0]).parent.name != "bundle" or Path(argv[0]).parent.parent.name != "monai":
        return
    from monai.bundle import ConfigWorkflow
    from monai.bundle.scripts import run

    known = {*inspect.signature(run).parameters, *inspect.signature(ConfigWorkflow.__init__).parameters, "_meta_"}
    for name in configs:
        known.update(json.loads((Path(bundle_root) / "configs" / f"{name}.json").read_text(encoding="utf-8")))
    given = [a[2:].split("=", 1)[0] for a in argv[1:] if a.startswith("--") and len(a) > 2]
    unknown = sorted({g for g in given if g.split("#", 1)[0] not in known})
    if unknown:
        options = sorted(k for k in known if not k.startswith("_") and k not in ("self", "override"))
        raise ValueError(f"unknown option(s) {['--' + u for u in unknown]} for this bundle; its config ids are {options}.")
