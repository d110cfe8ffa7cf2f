"""``monai-gen``: the command line. Parse and validate arguments, then run the bundle's own config.

Every sub-command ends in :func:`monai_gen.bundle.registry.run_bundle_workflow`, so
``monai-gen generate ecg_generative_diffusion --heart_rate 75`` and
``python -m monai.bundle run --config_file "['configs/common.json','configs/inference.json']" --heart_rate 75`` (from the
bundle folder) do the same thing. Phenotype options are read from the chosen bundle, so
``monai-gen generate <bundle> --help`` lists that bundle's phenotypes with their units and valid ranges.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monai_gen.bundle.registry import find_bundle, list_bundles, read_bundle_info, run_bundle_workflow, training_stages
from monai_gen.transforms.conditions import ConditionSet, ConditionSpec

__all__ = ["main", "build_parser"]

_DESCRIPTION = "monai_gen: conditional generative synthesis of medical data with MONAI bundles."


_USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, KeyError)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``monai-gen``; returns the process exit status (2 for bad input, 130 when interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        conditions = _bundle_conditions(argv)
    except _USER_ERRORS as err:  # a misspelled bundle: say so, not "unrecognized arguments: --heart_rate"
        build_parser().exit(2, f"monai-gen {argv[0]}: error: {_message(err)}\n")
    parser = build_parser(conditions)
    args = parser.parse_args(argv)
    args.argv = argv  # what --nproc relaunches under torchrun
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print(f"monai-gen {args.command}: interrupted; finished outputs are kept, run it again to resume.", file=sys.stderr)
        return 130
    except Exception as err:  # config workflows wrap the cause in RuntimeErrors: report the user's error itself
        cause = _user_cause(err)
        if cause is None:
            raise
        parser.exit(2, f"monai-gen {args.command}: error: {_message(cause)}\n")


def _user_cause(err: BaseException) -> BaseException | None:
    """The first bad-input error (ValueError, FileNotFoundError, ...) in ``err``'s chain of causes, if any."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, _USER_ERRORS):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _message(err: BaseException) -> str:
    return str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)


def build_parser(conditions: ConditionSet | None = None) -> argparse.ArgumentParser:
    """The argument parser; ``conditions`` (of the bundle named on the command line) adds phenotype options."""
    parser = argparse.ArgumentParser(prog="monai-gen", description=_DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("bundles", help="list the shipped bundles with their conditions and ranges")
    listing.set_defaults(handler=_list_bundles)

    generate = commands.add_parser("generate", help="generate samples for given phenotypes or a condition table")
    _add_generation_options(generate, conditions)
    generate.add_argument(
        "--num-samples", type=_positive_int, default=None,
        help="samples to generate (default 4); with --conditions-csv: samples per row (default 1)",
    )
    generate.add_argument(
        "--conditions-csv", type=Path, default=None,
        help="UTF-8 CSV, one row per subject: columns are phenotypes (an empty cell leaves one unconditioned) and an "
        "optional seed; any other column is an error unless named by --pass-through",
    )
    generate.add_argument(
        "--pass-through", action="append", default=[], metavar="COLUMN",
        help="a --conditions-csv column (e.g. a subject id) copied unchanged into manifest.csv and each sidecar "
        "(repeatable); no other column reaches an output",
    )
    generate.add_argument(
        "--cine", action="store_true",
        help="one synthetic cine instead of separate samples: one seed, the bundle's periodic condition (e.g. the "
        "cardiac phase) swept over its cycle, the other phenotypes fixed; writes the frames and cine.nii.gz (x, y, 1, "
        "t, with the frame time), cine.gif and the contraction curve cine_contraction.png",
    )
    generate.add_argument(
        "--cine-frames", type=_positive_int, default=None, help="frames of the --cine (default: the bundle's cine_frames)"
    )
    generate.add_argument(
        "--label-map", type=Path, default=None, metavar="FILE",
        help="3D bundles with organ conditioning (e.g. the CT bundle): generate a volume for this segmentation (a "
        "NIfTI label map in the bundle's label scheme, resampled to the bundle's spacing and centre-cropped / padded "
        "to the volume size)",
    )
    generate.add_argument(
        "--label-values", type=_label_value, nargs="+", default=None, metavar="FILE_VALUE=SCHEME_VALUE",
        help="with --label-map in another label scheme: what its values mean in the bundle's, e.g. --label-values 1=52 "
        "for TotalSegmentator's per-class aorta.nii.gz mask (every non-zero value of the map must be named)",
    )
    generate.add_argument(
        "--volume-size", type=_positive_int, nargs=3, default=None, metavar=("X", "Y", "Z"),
        help="3D bundles: voxels of the generated volume (default: the training patch size; each a multiple of the "
        "autoencoder's compression, e.g. 128 128 128)",
    )
    generate.set_defaults(handler=_generate)

    sweep = commands.add_parser(
        "sweep", help="sweep one phenotype from --start to --stop with fixed seeds (xMADD Fig. 5)",
        description="Generate the same seeds at --num-values values of one phenotype, every other condition held "
        "fixed, and draw sweep_<phenotype>.png: rows are values, columns are seeds, so a column shows what the "
        "phenotype alone changes in one synthetic subject. An image bundle draws one slice per cell (e.g. "
        "--phenotype slice-position, or age). The ECG bundle labels each cell with its measured QT and T-wave "
        "amplitude. What a median-beat model can show: the ECG bundle generates one R-aligned median beat "
        "(1.152 s, R at 0.4 s), so a sweep shows what a condition does to the shape of the beat (QRS width, QT, "
        "ST-T, amplitudes). What it cannot show: the rhythm. Below ~90 bpm the next beat lies outside the window, "
        "so heart rate is visible only through its effect on the beat (e.g. a shorter QT when faster); there is no "
        "beat-to-beat variation and no arrhythmia. When the requests set a heart rate, the strip adds a rhythm "
        "assembled from the generated beat, repeated at the requested RR interval and labelled so: it displays the "
        "RR, it is not a generated rhythm.",
    )
    _add_generation_options(sweep, conditions)
    sweep.add_argument("--phenotype", required=True, help="the phenotype to sweep")
    sweep.add_argument("--start", type=float, required=True, help="first value, in the phenotype's unit")
    sweep.add_argument("--stop", type=float, required=True, help="last value, in the phenotype's unit")
    sweep.add_argument("--num-values", type=_positive_int, default=5, help="values from start to stop (default 5)")
    sweep.add_argument("--num-seeds", type=_positive_int, default=3, help="samples (columns) per value (default 3)")
    sweep.set_defaults(handler=_sweep)

    train = commands.add_parser(
        "train", help="train the bundle's model into an output folder (the bundle itself is never written)",
        description="Train the bundle's model. Everything (cohort cache, checkpoints, logs, models/) is written under "
        "--output-dir; the bundle's shipped files change only through `monai-gen export` (or --export-to). Re-running "
        "the same command resumes from the newest checkpoint; Ctrl-C stops after the current iteration (exit 130).",
    )
    _add_bundle_options(train)
    train.add_argument("--dataset-dir", type=Path, default=None, help="folder of training records")
    train.add_argument(
        "--output-dir", type=Path, default=None,
        help="run folder: cohort cache, checkpoints, logs and the trained models/ (default ./runs/<bundle>/train; "
        "never inside the bundle)",
    )
    train.add_argument("--max-epochs", type=_positive_int, default=None, help="training epochs")
    train.add_argument("--max-train-seconds", type=_positive_int, default=None,
                       help="stop cleanly after this many seconds of training (final checkpoint and models/ written)")
    train.add_argument("--export-to", type=Path, default=None,
                       help="after training, write a new bundle folder with the trained models/ and a new version")
    train.add_argument(
        "--stage", default=None,
        help="run only this training stage (default: every stage metadata.json's training_stages lists, in order)",
    )
    train.add_argument(
        "--distributed", action="store_true",
        help="layer configs/multi_gpu_<stage>.json on each stage (run under torchrun)",
    )
    train.set_defaults(handler=_train)

    export = commands.add_parser(
        "export", help="write a trained run as a new bundle version (a copy of the bundle with the run's models/)",
        description="Copy BUNDLE to --to with the trained files of RUN_DIR/models and a new version in "
        "configs/metadata.json (default: patch + 1, tagged with the weights' digest), so the model id written into "
        "every generated file changes with the weights. The copy appears complete or not at all.",
    )
    export.add_argument("bundle", help="the bundle that was trained (name or folder)")
    export.add_argument("run_dir", type=Path, help="the training output folder (holds models/)")
    export.add_argument("--to", type=Path, required=True, help="new bundle folder to write (must not exist)")
    export.add_argument("--version", default=None, help="version of the exported bundle (default: patch + 1 + digest)")
    export.add_argument("--weights-dtype", choices=["float16", "bfloat16"], default=None,
                        help="store the weights' floating tensors in this type (half the bytes, e.g. under model-zoo's "
                        "25 MB file cap; the configs load them into float32 networks); default: as trained")
    export.add_argument("--replace-bundle", action="store_true",
                        help="allow --to to be BUNDLE itself: overwrite its shipped models and version in place")
    export.set_defaults(handler=_export)

    evaluate = commands.add_parser("evaluate", help="fidelity, realism and memorisation report of the bundle's weights")
    _add_bundle_options(evaluate)
    evaluate.add_argument("--dataset-dir", type=Path, default=None, help="folder of real records to evaluate against")
    evaluate.add_argument(
        "--output-dir", type=Path, default=None,
        help="folder for the report and the cohort cache (default ./runs/<bundle>/evaluate; never inside the bundle)",
    )
    evaluate.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0")
    evaluate.set_defaults(handler=_evaluate)

    plot = commands.add_parser(
        "plot", help="plot ECG records on the clinical grid (one PNG each), or images as one grid",
        description="ECG records are drawn on ECG paper (25 mm/s, 10 mm/mV), median beats when at most 2 s long, "
        "else the 3 x 4 + rhythm-strip print-out: one PNG per record. Several images of one shape are drawn as "
        "one grid of middle slices. A synthetic file (monai_gen's JSON sidecar or a SYNTHETIC header comment) "
        "says 'synthetic' in its title, with the model, seed and conditions it was generated with.",
    )
    plot.add_argument(
        "files", nargs="+", type=Path, help="ECG records (WFDB .hea, ECG DICOM, CPSC .mat) or NIfTI / DICOM images",
    )
    plot.add_argument(
        "--output", type=Path, required=True,
        help="the PNG for one record or for the image grid; for several records a folder (created when missing) "
        "that receives <record>.png for each",
    )
    plot.set_defaults(handler=_plot)

    explore = commands.add_parser(
        "explore", help="a local web page: a slider per phenotype, the synthetic sample redrawn live",
        description="Serve a local page (this machine only) over a bundle: one control per condition (slider with "
        "unit and trained range, a choice for categories, unset = the null token), seed, guidance scale and steps; "
        "the sample redrawn after each change with its measured values beside the requested ones, a counterfactual "
        "sweep, the nearest real training sample and export with the bundle's writer and provenance sidecar; a cine "
        "loop for a bundle with a periodic condition (the cardiac phase), axial / coronal / sagittal views with HU "
        "windows for a CT bundle, and a step-by-step progress bar. "
        "Nothing is downloaded; the page loads nothing from the internet. Ctrl-C stops the server.",
    )
    explore.add_argument("bundle", nargs="?", default="ecg_generative_diffusion",
                         help="bundle the page opens with (default ecg_generative_diffusion; others can be chosen there)")
    explore.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1; no other)")
    explore.add_argument("--port", type=_port, default=8765, help="port (default 8765; 0 picks a free one)")
    explore.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0")
    explore.add_argument("--output-dir", type=Path, default=Path("explore_output"),
                         help="folder for exported samples (default ./explore_output; never inside a bundle)")
    explore.add_argument(
        "--reference-dir", type=Path, default=None,
        help="real data folder for the nearest-training-sample panel (default: the bundle evaluation's dataset_dir)",
    )
    explore.add_argument("--cache-dir", type=Path, default=None,
                         help="folder for the reference cohort caches (default ./runs/explore)")
    explore.set_defaults(handler=_explore)
    return parser


def _add_bundle_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle name (see `monai-gen bundles`) or bundle folder")
    parser.add_argument(
        "--override", action="append", default=[], metavar="ID=VALUE",
        help="any other config id of the bundle, e.g. --override batch_size=8 or 'phenotype_guidance={\"qrs\": 6}' "
             "(a JSON list / object; ID#KEY=VALUE sets one entry; repeatable)",
    )


def _add_generation_options(parser: argparse.ArgumentParser, conditions: ConditionSet | None) -> None:
    _add_bundle_options(parser)
    parser.add_argument("--output-dir", type=Path, default=None, help="folder for outputs, previews and manifest.csv")
    parser.add_argument("--seed", type=int, default=None, help="seed of the first sample (sample i uses seed + i)")
    parser.add_argument("--sampler", default=None, help="ddpm, ddim, dpmpp_2m or dpmpp_3m (default: the bundle's, dpmpp_2m)")
    parser.add_argument("--steps", type=_positive_int, default=None, help="sampling steps")
    parser.add_argument("--guidance-scale", type=float, default=None, help="classifier-free guidance scale (1 = none)")
    parser.add_argument(
        "--phenotype-guidance", action="append", type=_name_scale, default=None, metavar="NAME=SCALE",
        help="guidance of one condition on top of --guidance-scale (repeatable; 1 = none), e.g. qrs=8 steers the "
        "QRS duration harder toward the asked value; replaces that condition's default (the bundle's "
        "phenotype_guidance), the others keep theirs",
    )
    parser.add_argument(
        "--batch-size", type=_batch_size, default=None,
        help="samples per forward pass, or auto: the most that fit in half the device's free memory, measured on a "
        "probe batch, at most the bundle's max_batch_size (default: the bundle's batch_size, auto in the shipped "
        "ones); a sample is the same at any batch size up to float rounding",
    )
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0")
    parser.add_argument(
        "--overwrite", action="store_true",
        help="regenerate samples the output folder holds for a different request (default: stop and say what differs)",
    )
    parser.add_argument(
        "--nproc", type=_positive_int, default=1,
        help="generate with N processes under torchrun (one per GPU, or N CPU processes): process k takes every "
        "N-th batch, the files are those of one process; a job stopped midway resumes with any N",
    )
    parser.add_argument(
        "--previews", action="store_true",
        help="also draw a PNG preview of every sample (default: one contact_sheet.png of the job's first samples, or "
        "a sweep's strip)",
    )
    parser.add_argument(
        "--output-format", default=None, metavar="FORMAT",
        help="the bundle's clinical files (its default: wfdb for ECG, nifti for images) or array: one safetensors "
        "shard of each batch's samples and its JSON sidecar, listed in manifest.csv, for training models",
    )
    parser.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)  # set by --nproc under torchrun
    group = parser.add_argument_group("phenotypes" if conditions else "phenotypes (name a bundle to list them)")
    for spec in conditions.specs if conditions else ():
        spellings = dict.fromkeys([f"--{spec.name}", f"--{spec.name.replace('_', '-')}"])  # --slice-position too
        group.add_argument(*spellings, dest=spec.name, default=None, metavar=_metavar(spec), help=_describe(spec))


def _metavar(spec: ConditionSpec) -> str:
    return "{" + ",".join(spec.categories) + "}" if spec.is_categorical else (spec.unit or "VALUE").upper()


def _describe(spec: ConditionSpec) -> str:
    parts = [spec.description or spec.name]
    if spec.is_categorical:
        parts.append(f"one of {', '.join(spec.categories)}")
    else:
        if spec.valid_range:
            parts.append(f"valid {spec.valid_range[0]:g}-{spec.valid_range[1]:g} {spec.unit}".rstrip())
        if spec.observed_range:
            parts.append(f"trained on {spec.observed_range[0]:g}-{spec.observed_range[1]:g} {spec.unit}".rstrip())
    return "; ".join(parts) + "; unset = unconditioned"


def _bundle_conditions(argv: list[str]) -> ConditionSet | None:
    """Conditions of the bundle named after ``generate`` / ``sweep`` (None when no bundle is named).

    Raises:
        FileNotFoundError, ValueError: the named bundle does not exist or cannot be read.
    """
    if len(argv) < 2 or argv[0] not in ("generate", "sweep") or argv[1].startswith("-"):
        return None
    return read_bundle_info(find_bundle(argv[1])).conditions


def _name_scale(text: str) -> tuple[str, float]:
    """``NAME=SCALE`` (a condition and a guidance scale) -> the pair."""
    name, sep, scale = text.partition("=")
    name = name.strip().replace("-", "_")
    try:
        value = float(scale)
    except ValueError:
        value = None
    if not (sep and name) or value is None:
        raise argparse.ArgumentTypeError(f"expected NAME=SCALE (e.g. qrs=6), got {text!r}")
    return name, value


def _phenotype_guidance(args: argparse.Namespace, info: Any) -> dict[str, float] | None:
    """``--phenotype-guidance`` over the bundle's default ``phenotype_guidance`` (condition names resolved), or None.

    A given scale replaces that condition's default; the other conditions keep the bundle's (``qrs=1`` turns one off).
    """
    if not args.phenotype_guidance:
        return None
    _refused_unless_option(info.root, "phenotype_guidance", "--phenotype-guidance", True)
    default = _inference_config(info.root)["phenotype_guidance"]
    scales = dict(default) if isinstance(default, dict) else {}
    for name, scale in args.phenotype_guidance:
        resolved = info.conditions.resolve_name(name)
        if resolved is None:
            raise ValueError(f"--phenotype-guidance {name}: not a condition of {info.root.name} "
                             f"({', '.join(info.conditions.names)}).")
        scales[resolved] = scale
    return scales


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _batch_size(text: str) -> int | str:
    return "auto" if text.strip().lower() == "auto" else _positive_int(text)


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, got {text}")
    return value


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in args.override:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--override expects ID=VALUE, got {item!r}.")
        try:
            overrides[key] = _literal(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"--override {key}: {value!r} starts like a JSON list / object but is not one "
                             f"({error.msg} at character {error.pos}).") from None
    return overrides


def _literal(text: str) -> Any:
    """A command-line value as the config would hold it: number, bool, null, a JSON list / object
    (``{"qrs": 6.0}``) or string; ``json.JSONDecodeError`` for text that starts like JSON and is not."""
    if text.strip()[:1] in ("{", "["):
        return json.loads(text)
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _generation_overrides(args: argparse.Namespace, info: Any) -> dict[str, Any]:
    from monai_gen.engines.requests import checked_values

    if args.sampler is not None:
        from monai_gen.diffusion.samplers import SAMPLERS

        if args.sampler not in SAMPLERS:
            raise ValueError(f"--sampler {args.sampler!r} is not a sampler; choose from {sorted(SAMPLERS)}.")
    chosen = {
        "output_dir": str(args.output_dir) if args.output_dir else None,
        "seed": args.seed,
        "sampler": args.sampler,
        "num_inference_steps": args.steps,
        "guidance_scale": args.guidance_scale,
        "phenotype_guidance": _phenotype_guidance(args, info),
        "batch_size": args.batch_size,
        "device": _device_expression(args.device),
        "overwrite": args.overwrite or None,
        "per_sample_previews": _refused_unless_option(info.root, "per_sample_previews", "--previews", args.previews),
        "output_format": args.output_format if _refused_unless_option(
            info.root, "output_format", "--output-format", args.output_format is not None) else None,
    }
    values = {spec.name: getattr(args, spec.name, None) for spec in info.conditions.specs}
    chosen.update(checked_values(info.conditions, values))
    return {**{k: v for k, v in chosen.items() if v is not None}, **_overrides(args)}


def _device_expression(device: str | None) -> str | None:
    """``--device`` as a config expression, checked here: an unknown or absent device is a clear error."""
    if device is None:
        return None
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device!r} is not a torch device (e.g. cpu, cuda, cuda:0).") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is available on this machine; use --device cpu.")
    if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s).")
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {device!r}: only cpu and cuda devices are supported.")
    return f"$torch.device('{parsed}')"


def _list_bundles(args: argparse.Namespace) -> int:
    bundles = list_bundles()
    if not bundles:
        print("no bundles found")
    for info in bundles:
        print(f"{info.name} {info.version}: {info.task}")
        for spec in info.conditions.specs:
            print(f"    --{spec.name:<14} {_describe(spec)}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    info = read_bundle_info(find_bundle(args.bundle))
    overrides = _generation_overrides(args, info)
    if args.pass_through and args.conditions_csv is None:
        raise ValueError("--pass-through names columns of --conditions-csv; give the CSV too.")
    if args.conditions_csv is not None:
        overrides.update(conditions_csv=str(args.conditions_csv), pass_through=list(args.pass_through))
        if args.num_samples is not None:
            overrides["samples_per_row"] = args.num_samples
    elif args.num_samples is not None:
        overrides["num_samples"] = args.num_samples
    if args.cine or args.cine_frames is not None:
        overrides.update(_cine_overrides(args, info.conditions))
    overrides.update(_volume_overrides(args, info.root))
    return _run_generation(info, overrides, args)


def _inference_config(root: Path) -> dict[str, Any]:
    """The ids of a bundle's ``common.json`` and ``inference.json``, unparsed (``inference.json`` wins)."""
    import json

    config: dict[str, Any] = {}
    for name in ("common.json", "inference.json"):
        file = root / "configs" / name
        if file.is_file():
            config.update(json.loads(file.read_text(encoding="utf-8")))
    return config


def _refused_unless_option(root: Path, key: str, flag: str, given: bool) -> bool | None:
    """True for a given ``flag`` (None if not given), refused by a bundle whose inference config lacks ``key``."""
    if not given:
        return None
    if key not in _inference_config(root):
        raise ValueError(f"{flag}: {root.name} has no {key!r} option in its inference config.")
    return True


def _volume_overrides(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """``--label-map`` / ``--volume-size`` as inference overrides, refused by a bundle whose configs lack them."""
    wanted = {"label_map": args.label_map, "label_map_values": args.label_values, "volume_size": args.volume_size}
    wanted = {k: v for k, v in wanted.items() if v is not None}
    if not wanted:
        return {}
    if args.label_values is not None and args.label_map is None:
        raise ValueError("--label-values: says what a --label-map's values mean; give --label-map too.")
    config = _inference_config(root)
    for key in wanted:
        if key not in config:
            flag = "--label-values" if key == "label_map_values" else "--" + key.replace("_", "-")
            raise ValueError(f"{flag}: {root.name} has no {key!r} option (only 3D bundles with organ conditioning do).")
    if args.label_map is not None:
        if not args.label_map.is_file():
            raise FileNotFoundError(f"--label-map {args.label_map}: no such file.")
        wanted["label_map"] = str(args.label_map.resolve())
    if args.label_values is not None:
        wanted["label_map_values"] = dict(args.label_values)
    if args.volume_size is not None:
        wanted["volume_size"] = list(args.volume_size)
    return wanted


def _label_value(text: str) -> tuple[int, int]:
    """``FILE_VALUE=SCHEME_VALUE`` (whole non-negative numbers) -> the pair."""
    source, _, target = text.partition("=")
    if not (source.strip().isdigit() and target.strip().isdigit()):
        raise argparse.ArgumentTypeError(f"expected FILE_VALUE=SCHEME_VALUE of whole numbers (e.g. 1=52), got {text!r}")
    return int(source), int(target)


def _inference_cine_frames(root: Path) -> int:
    """The default frame count of a bundle's cine, from its ``configs/inference.json``.

    Raises:
        ValueError: the inference config has no ``cine`` / ``cine_frames`` option (it cannot make a cine).
    """
    import json

    config = json.loads((root / "configs" / "inference.json").read_text(encoding="utf-8"))
    if "cine" not in config or not isinstance(config.get("cine_frames"), int):
        raise ValueError(f"{root.name}'s configs/inference.json has no cine / cine_frames option: it cannot make a cine.")
    return config["cine_frames"]


def _cine_overrides(args: argparse.Namespace, conditions: ConditionSet) -> dict[str, Any]:
    """``--cine`` / ``--cine-frames`` as inference overrides, refused where they cannot mean anything."""
    if not args.cine:
        raise ValueError("--cine-frames sets the frames of a --cine; add --cine.")
    periodic = [spec.name for spec in conditions.specs if spec.is_periodic]
    if len(periodic) != 1:
        raise ValueError(
            f"--cine sweeps the bundle's one periodic condition (e.g. a cardiac phase); {args.bundle} has "
            f"{periodic or 'none'}."
        )
    conflicts = [flag for flag, given in (
        ("--conditions-csv", args.conditions_csv is not None), ("--num-samples", args.num_samples is not None),
        (f"--{periodic[0].replace('_', '-')}", getattr(args, periodic[0], None) is not None),
    ) if given]
    if conflicts:
        raise ValueError(f"--cine makes one cine over the whole {periodic[0]} cycle; drop {', '.join(conflicts)}.")
    return {"cine": True, **({"cine_frames": args.cine_frames} if args.cine_frames is not None else {})}


def _sweep(args: argparse.Namespace) -> int:
    info = read_bundle_info(find_bundle(args.bundle))
    overrides = _generation_overrides(args, info)
    overrides.update(
        sweep=info.conditions.resolve_name(args.phenotype.replace("-", "_")) or args.phenotype, sweep_start=args.start,
        sweep_stop=args.stop, sweep_num_values=args.num_values, sweep_num_seeds=args.num_seeds,
    )
    return _run_generation(info, overrides, args)


def _run_generation(info: Any, overrides: dict[str, Any], args: argparse.Namespace) -> int:
    """Check the requests (options, table, sweep) before any weights load, then run the inference config (under
    ``torchrun`` with ``--nproc``)."""
    from monai_gen.engines.requests import build_requests

    keys = ("conditions_csv", "pass_through", "num_samples", "samples_per_row", "seed", "sweep", "sweep_start",
            "sweep_stop", "sweep_num_values", "sweep_num_seeds")
    given = {k: overrides[k] for k in keys if k in overrides}
    values = {s.name: overrides.get(s.name) for s in info.conditions.specs}
    if overrides.get("cine"):
        from monai_gen.engines.requests import cine_requests

        phase = next(s.name for s in info.conditions.specs if s.is_periodic)
        num_frames = overrides.get("cine_frames", _inference_cine_frames(info.root))
        cine_requests(info.conditions, phase=phase, num_frames=num_frames, values=values, seed=given.get("seed", 0))
    else:
        build_requests(info.conditions, values=values, table=given.pop("conditions_csv", None), **given)
    if args.nproc > 1 or args.distributed:
        sharded = info.root / "configs" / "multi_gpu_inference.json"
        if not sharded.is_file():
            raise FileNotFoundError(f"{info.root.name} has no {sharded.relative_to(info.root)}: it cannot generate with --nproc.")
    if args.nproc > 1:
        return _relaunch_under_torchrun(args.argv, args.nproc)
    workflow = run_bundle_workflow(info.root, "multi_gpu_inference" if args.distributed else "inference", overrides)
    if not args.distributed or int(os.environ.get("RANK", "0")) == 0:
        print(f"wrote {workflow.parser.get_parsed_content('output_dir')}")
    return 0


def _relaunch_under_torchrun(argv: Sequence[str], nproc: int) -> int:
    """Run this same command in ``nproc`` processes (``torchrun --standalone``), each with ``--distributed``."""
    import subprocess

    rest, skip = [], False
    for arg in argv:
        if skip or arg.startswith("--nproc="):
            skip = False
            continue
        skip = arg == "--nproc"
        if not skip:
            rest.append(arg)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               "-m", "monai_gen.cli.main", *rest, "--distributed"]
    return subprocess.run(command, check=False).returncode


def _train(args: argparse.Namespace) -> int:
    from monai_gen.bundle.runs import default_output_dir

    root = find_bundle(args.bundle)
    overrides = {
        "dataset_dir": str(args.dataset_dir) if args.dataset_dir else None,
        "output_dir": str(args.output_dir) if args.output_dir else None,
        "max_epochs": args.max_epochs,
        "max_train_seconds": args.max_train_seconds,
        "export_to": str(args.export_to) if args.export_to else None,
    }
    overrides = {**{k: v for k, v in overrides.items() if v is not None}, **_overrides(args)}
    output_dir = overrides.get("output_dir") or default_output_dir(root, "train")
    stages = training_stages(root)
    if args.stage is not None and args.stage not in stages:
        raise ValueError(f"--stage {args.stage!r} is not a training stage of {root.name}; its stages are {stages}.")
    try:
        for stage in [args.stage] if args.stage else stages:
            workflow = run_bundle_workflow(root, f"multi_gpu_{stage}" if args.distributed else stage, overrides)
    except KeyboardInterrupt as err:
        done = f"{err}; its checkpoint is in" if str(err) else "interrupted; partial run in"
        print(f"monai-gen train: {done} {output_dir} (run the same command again to resume).", file=sys.stderr)
        return 130
    print(f"trained: {workflow.parser.get_parsed_content('models_dir')}")
    if args.export_to:
        print(f"exported the trained bundle to {args.export_to}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from monai_gen.bundle.runs import export_bundle

    root = find_bundle(args.bundle)
    target = export_bundle(root, args.run_dir / "models", args.to, version=args.version, replace_bundle=args.replace_bundle,
                           weights_dtype=args.weights_dtype)
    info = read_bundle_info(target)
    print(f"wrote bundle {target}: version {info.version} (model id {root.name}-{info.version})")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import json

    from monai_gen.metrics.evaluation import REPORT_FILES, report_summary

    overrides = {
        "dataset_dir": str(args.dataset_dir) if args.dataset_dir else None,
        "output_dir": str(args.output_dir) if args.output_dir else None,
        "device": _device_expression(args.device),
    }
    overrides = {**{k: v for k, v in overrides.items() if v is not None}, **_overrides(args)}
    workflow = run_bundle_workflow(args.bundle, "evaluate", overrides)
    output_dir = Path(workflow.parser.get_parsed_content("output_dir"))
    report = json.loads((output_dir / REPORT_FILES[0]).read_text(encoding="utf-8"))
    print(report_summary(report, output_dir))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from monai_gen.cli.plotting import plot_files  # imports matplotlib only when plotting

    for path in plot_files(args.files, args.output):
        print(f"wrote {path}")
    return 0


def _explore(args: argparse.Namespace) -> int:
    from monai_gen.explore.server import check_loopback_host, make_server

    check_loopback_host(args.host)  # before any weights load
    find_bundle(args.bundle)
    device = _device_expression(args.device)
    cache_dir = args.cache_dir or Path.cwd() / "runs" / "explore"
    print(f"loading {args.bundle} ...", flush=True)
    server = make_server(args.bundle, host=args.host, port=args.port, output_dir=args.output_dir, cache_dir=cache_dir,
                         device=device, reference_dir=args.reference_dir)
    print(f"monai-gen explore: serving {server.url} (this machine only; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("monai-gen explore: stopped.", file=sys.stderr)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
