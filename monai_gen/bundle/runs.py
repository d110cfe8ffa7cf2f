"""Where bundle workflows write: run folders outside the bundle, and the explicit export of a run as a new bundle.

A bundle's shipped files (``configs/``, ``models/``, ``docs/``) change only through :func:`export_bundle`. Training
and evaluation write under their output folder, by default ``./runs/<bundle name>/<workflow>`` relative to the
working directory (:func:`default_output_dir`), and the configs refuse any output folder inside the bundle
(:func:`check_outside_bundle`). A trained run holds the bundle's model files in ``<run>/models/``;
:func:`export_bundle` writes a complete copy of the bundle with those files and a new ``version`` in
``configs/metadata.json``, so the model id (``<name>-<version>``) written into every output changes with the
weights.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import ignite.distributed as idist
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from monai_gen.utils.atomic import atomic_output_path, atomic_write_bytes, atomic_write_text

__all__ = [
    "BUNDLE_PARTS",
    "default_output_dir",
    "check_outside_bundle",
    "check_export_target",
    "next_version",
    "export_bundle",
    "DERIVED_MODEL_FILES",
    "torch_state_dict_bytes",
    "write_derived_model_files",
]

HALF_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
"""What :func:`export_bundle` ``weights_dtype`` may store the weights in."""

BUNDLE_PARTS = ("configs", "docs", "scripts")
"""Folders of a MONAI bundle copied by :func:`export_bundle` (besides its top-level files and ``models/``)."""

DERIVED_MODEL_FILES = {"model.pt": "model.safetensors"}
"""Model files written from another one by :func:`write_derived_model_files` (derived -> source, in ``models/``).

``models/model.pt`` is the state dict in PyTorch's format for MONAI's bundle tools (``ckpt_export``, model-zoo CI);
the configs load ``models/model.safetensors``, which no pickle is involved in reading."""

_SEMVER = re.compile(r"^(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)(?:\+.*)?$")


def default_output_dir(bundle_root: str | os.PathLike, workflow: str) -> str:
    """``<working directory>/runs/<bundle name>/<workflow>``: the default output folder of a bundle workflow."""
    return str(Path.cwd() / "runs" / Path(bundle_root).resolve().name / workflow)


def check_outside_bundle(bundle_root: str | os.PathLike, **folders: str | os.PathLike | None) -> None:
    """Raise if any of ``folders`` (config id -> path; None is skipped) is the bundle folder or inside it.

    Raises:
        ValueError: naming the config id, the path and where to write instead.
    """
    root = Path(bundle_root).resolve()
    for name, folder in folders.items():
        if folder is None:
            continue
        resolved = Path(folder).resolve()
        if resolved == root or root in resolved.parents:
            raise ValueError(
                f"{name} {folder} is inside the bundle folder {root}; workflows write only outside the bundle so "
                f"its shipped files stay as released: choose a folder elsewhere (the default is "
                f"./runs/{root.name}/... under the working directory); to change the bundle itself, export a "
                f"trained run with `monai-gen export`."
            )


def next_version(version: str, model_file: str | os.PathLike) -> str:
    """The bundle version after exporting new weights: patch + 1, tagged with the weights' digest.

    ``"0.2.0"`` -> ``"0.2.1+<first 8 hex digits of the SHA-256 of model_file>"``, so two exports of different
    weights never share a model id.

    Raises:
        ValueError: ``version`` is not ``major.minor.patch`` (pass the new version explicitly).
    """
    match = _SEMVER.match(str(version))
    if match is None:
        raise ValueError(f"bundle version {version!r} is not major.minor.patch; give the exported version explicitly.")
    digest = hashlib.sha256(Path(model_file).read_bytes()).hexdigest()[:8]
    return f"{match['major']}.{match['minor']}.{int(match['patch']) + 1}+{digest}"


def export_bundle(
    bundle_root: str | os.PathLike,
    models_dir: str | os.PathLike,
    to: str | os.PathLike,
    *,
    version: str | None = None,
    replace_bundle: bool = False,
    note: str | None = None,
    weights_dtype: str | None = None,
) -> Path:
    """Write the bundle with the trained files of ``models_dir`` and a new version; return the bundle folder.

    ``to`` must be a new (or empty) folder: the copy is assembled in a staging folder beside it and renamed into
    place, so ``to`` is either absent or complete. ``models/model.pt`` is written from the exported
    ``model.safetensors`` (:func:`write_derived_model_files`). Only with ``replace_bundle`` may ``to`` be the source bundle
    itself; then each model file is replaced atomically and ``configs/metadata.json`` last. In a multi-process
    run only rank 0 exports.

    Args:
        bundle_root: the bundle that was trained.
        models_dir: the run's trained files (``<run>/models``); it must hold every file the bundle ships in
            ``models/``.
        to: the exported bundle folder.
        version: the new ``version`` in ``metadata.json``; default :func:`next_version`.
        replace_bundle: allow ``to`` to be ``bundle_root`` (overwrite the bundle in place).
        note: the changelog entry of the new version.
        weights_dtype: ``"float16"`` or ``"bfloat16"``: store every floating tensor of the ``.safetensors`` files in
            that type (half the bytes; e.g. to keep a file under model-zoo's 25 MB cap); the configs load them into
            their float32 networks (``load_state_dict`` casts). None copies the files as trained.

    Raises:
        FileNotFoundError: ``models_dir`` lacks a model file (the message lists them).
        ValueError: ``to`` exists and is not empty, is inside the bundle, or is the bundle without
            ``replace_bundle``; a model file does not read back; ``weights_dtype`` is not a half type.
    """
    if weights_dtype not in (None, *HALF_DTYPES):
        raise ValueError(f"weights_dtype must be one of {sorted(HALF_DTYPES)} or None, got {weights_dtype!r}.")
    root, models, target = Path(bundle_root).resolve(), Path(models_dir), Path(to).resolve()
    files = _trained_files(root, models)
    in_place = check_export_target(root, target, replace_bundle=replace_bundle)
    metadata = _exported_metadata(root, models, version, note)
    if idist.get_rank() != 0:
        return target
    if in_place:
        for source in files:
            with atomic_output_path(root / "models" / source.name) as tmp:
                _copy_model_file(source, tmp, weights_dtype)
        write_derived_model_files(root / "models")
        atomic_write_text(root / "configs" / "metadata.json", metadata)
        return root
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    try:
        _copy_bundle(root, staging / "bundle", files, metadata, weights_dtype)
        os.replace(staging / "bundle", target)  # atomic; succeeds only onto an absent or empty folder
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _trained_files(root: Path, models: Path) -> list[Path]:
    """The files of ``models`` (each one the bundle ships in ``models/`` must be there), checked readable.

    :data:`DERIVED_MODEL_FILES` are neither required nor taken: the export writes them from their sources.
    """
    shipped = sorted(p.name for p in (root / "models").glob("*") if p.is_file() and p.name not in DERIVED_MODEL_FILES)
    missing = [name for name in shipped if not (models / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"trained model folder {models} lacks {missing} (the bundle {root.name} ships {shipped}); "
            "point at a finished training run's models/ folder."
        )
    files = sorted(
        p for p in models.glob("*") if p.is_file() and not p.name.startswith(".") and p.name not in DERIVED_MODEL_FILES
    )
    for path in files:
        _check_readable(path)
    return files


def _check_readable(path: Path) -> None:
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as handle:
                handle.keys()
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"trained file {path} does not read back ({err}); it cannot be exported.") from err


def check_export_target(bundle_root: str | os.PathLike, to: str | os.PathLike, *, replace_bundle: bool = False) -> bool:
    """Whether exporting to ``to`` replaces the bundle in place; raise if ``to`` may not be written (before training).

    Raises:
        ValueError: see :func:`export_bundle`.
    """
    root, target = Path(bundle_root).resolve(), Path(to).resolve()
    if target == root:
        if not replace_bundle:
            raise ValueError(
                f"export target {target} is the bundle itself; export to a new folder, or pass the replace-bundle "
                "flag (monai-gen export --replace-bundle) to overwrite its shipped files."
            )
        return True
    if root in target.parents:
        raise ValueError(f"export target {target} is inside the bundle folder {root}; choose a folder outside it.")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ValueError(f"export target {target} already exists and is not empty; choose a new folder.")
    return False


def _exported_metadata(root: Path, models: Path, version: str | None, note: str | None) -> str:
    """``configs/metadata.json`` with the new version first in its changelog, as 4-space JSON text."""
    meta_file = root / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    old = str(meta.get("version", ""))
    new = version or next_version(old, models / "model.safetensors")
    if new == old:
        raise ValueError(f"the exported version must differ from the bundle's {old!r}, so the model id changes.")
    entry = note or (
        f"weights trained with the bundle's train.json ({models.resolve()}), exported from {root.name} {old}; "
        "eval_metrics removed (they described the earlier weights): run `monai-gen evaluate` on this bundle"
    )
    meta.pop("eval_metrics", None)
    meta["version"] = new
    meta["changelog"] = {new: entry, **meta.get("changelog", {})}
    return json.dumps(meta, indent=4) + "\n"  # pre-commit's pretty-format-json --indent=4 --no-sort-keys


def _copy_model_file(source: Path, dest: Path, weights_dtype: str | None) -> None:
    """``source`` to ``dest``; a ``.safetensors`` file with its floating tensors in ``weights_dtype`` when given, its
    header metadata (e.g. a feature extractor's format and architecture) kept."""
    if weights_dtype is None or source.suffix != ".safetensors":
        shutil.copyfile(source, dest)
        return
    dtype = HALF_DTYPES[weights_dtype]
    tensors = load_file(str(source))
    with safe_open(str(source), framework="pt") as handle:
        header = handle.metadata()
    mode = (dest if dest.exists() else source).stat().st_mode  # the atomic writer's temporary file, or as copied
    save_file({k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}, str(dest), metadata=header)
    os.chmod(dest, mode)  # safetensors writes a new file, 0600


def _copy_bundle(root: Path, dest: Path, files: list[Path], metadata: str, weights_dtype: str | None = None) -> None:
    """The bundle's top-level files and :data:`BUNDLE_PARTS`, the trained ``models/`` and the new metadata."""
    dest.mkdir()
    for item in sorted(root.iterdir()):
        if item.is_file() and not item.name.startswith("."):
            shutil.copy2(item, dest / item.name)
        elif item.is_dir() and item.name in BUNDLE_PARTS:
            shutil.copytree(item, dest / item.name, ignore=shutil.ignore_patterns("__pycache__", ".*"))
    (dest / "models").mkdir()
    for source in files:
        _copy_model_file(source, dest / "models" / source.name, weights_dtype)
    write_derived_model_files(dest / "models")
    (dest / "configs" / "metadata.json").write_text(metadata, encoding="utf-8")
    for path in dest.rglob("*"):  # on disk before the rename makes the copy visible
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def torch_state_dict_bytes(safetensors_file: str | os.PathLike) -> bytes:
    """The tensors of ``safetensors_file`` as ``torch.save`` bytes of a plain state dict (name -> tensor).

    The same safetensors file always gives the same bytes: keys in the file's (sorted) order, saved to memory so the
    archive name inside does not depend on a file name. ``torch.load(..., weights_only=True)`` reads it.
    """
    tensors = load_file(str(safetensors_file))
    buffer = io.BytesIO()
    torch.save({name: tensors[name] for name in sorted(tensors)}, buffer)
    return buffer.getvalue()


def write_derived_model_files(models_dir: str | os.PathLike) -> list[Path]:
    """Write each :data:`DERIVED_MODEL_FILES` entry of ``models_dir`` from its source there, atomically.

    Returns:
        The files written (none when the sources are absent).
    """
    models = Path(models_dir)
    written = []
    for derived, source in DERIVED_MODEL_FILES.items():
        if (models / source).is_file():
            written.append(atomic_write_bytes(models / derived, torch_state_dict_bytes(models / source)))
    return written
