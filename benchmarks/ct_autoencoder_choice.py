"""Stage-1 choice for the CT bundle, by reconstruction measured in HU: the trained autoencoders side by side.

``python -m benchmarks.ct_autoencoder_choice --candidate kl runs/ct_v01/models --candidate vq runs/ct_vq/models
'$monai_gen.networks.autoencoders.vq_autoencoder(3, 1, channels=(32, 64), num_embeddings=512, embedding_dim=4)'``

Each candidate is a name, the models folder its stage-1 training wrote (``autoencoder.safetensors``) and, unless it
is the bundle's own ``autoencoder_def``, the config expression that builds its network (the ``--override
autoencoder_def=...`` it was trained with). Every candidate reconstructs the same real patches of the bundle's cohort
(``common.json``: the held-out subject's patches, and a seeded subsample of as many training patches) through the
bundle's HU normalisation; scored by :func:`~monai_gen.metrics.image.reconstruction_scores` (MS-SSIM, PSNR, MAE in HU)
and by the MAE within three bands of the real HU (air / lung below -500, soft tissue -200 to 200, contrast / bone above
200), with the seconds per decoded patch (whole decode, batch 1) and the parameter count.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import monai
import torch
from monai.bundle import ConfigParser

from benchmarks.image_generation import add_run_arguments, write_results
from monai_gen.bundle.registry import find_bundle
from monai_gen.diffusion.latent import LatentSpace
from monai_gen.engines.weights import load_weights
from monai_gen.metrics.image import reconstruction_scores

HU_BANDS = {"air_lung": (-1e9, -500.0), "soft_tissue": (-200.0, 200.0), "contrast_bone": (200.0, 1e9)}
"""Bands of the real patch's HU in which the MAE is also given (a voxel counts in the band its real value is in)."""


def band_errors(real: torch.Tensor, reconstruction: torch.Tensor) -> dict[str, dict[str, float]]:
    """MAE (HU) of ``reconstruction`` over the voxels of ``real`` in each :data:`HU_BANDS` band, with the voxel share."""
    errors = (reconstruction - real).abs()
    out = {}
    for name, (low, high) in HU_BANDS.items():
        inside = (real >= low) & (real < high)
        out[name] = {"mae_hu": float(errors[inside].mean()) if inside.any() else float("nan"),
                     "voxel_fraction": float(inside.float().mean())}
    return out


def score_candidate(parser: ConfigParser, models_dir: Path, definition: str | None,
                    patches: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Reconstruct each set of ``patches`` (HU, ``(N, 1, x, y, z)``) with one candidate; its scores per set."""
    bundle_definition = parser.get("autoencoder_def")
    parser["autoencoder_def"] = bundle_definition if definition is None else definition  # the bundle's imports apply
    network = parser.get_parsed_content("autoencoder_def", instantiate=True)
    parser["autoencoder_def"] = bundle_definition
    autoencoder = load_weights(network, models_dir / "autoencoder.safetensors").eval()
    space = LatentSpace(autoencoder)  # whole decode; the latent scale is linear and cancels in a reconstruction
    normalisation = parser.get_parsed_content("normalisation", instantiate=True)
    hu_window = parser.get_parsed_content("hu_window")
    result: dict[str, Any] = {"parameters": sum(p.numel() for p in autoencoder.parameters()),
                              "definition": definition or "the bundle's autoencoder_def"}
    with torch.inference_mode():
        for name, real in patches.items():
            started, reconstructions = time.perf_counter(), []
            for patch in real.split(1):
                latent = space.encode(normalisation(patch))
                reconstructions.append(normalisation.inverse(space.decode(latent)).clamp(*hu_window))
            seconds = (time.perf_counter() - started) / len(real)
            reconstruction = torch.cat(reconstructions)
            scores = reconstruction_scores(real, reconstruction, data_range=float(hu_window[1] - hu_window[0]))
            result[name] = {**scores, "bands": band_errors(real, reconstruction), "seconds_per_patch": seconds}
    return result


def cohort_patches(parser: ConfigParser, seed: int) -> dict[str, torch.Tensor]:
    """The held-out patches and a seeded subsample of as many training patches, in HU."""
    cohorts = parser.get_parsed_content("cohorts", instantiate=True)
    test = cohorts.test.items
    generator = torch.Generator().manual_seed(seed)
    train = cohorts.train.items[torch.randperm(len(cohorts.train.items), generator=generator)[: len(test)]]
    return {"test": test, "train": train}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="ct_generative_diffusion")
    parser.add_argument("--candidate", nargs="+", action="append", required=True,
                        metavar=("NAME MODELS_DIR", "DEFINITION"),
                        help="a name, its models folder and (unless the bundle's autoencoder_def) its definition")
    add_run_arguments(parser, threads=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for candidate in args.candidate:
        if len(candidate) not in (2, 3):
            parser.error(f"--candidate takes NAME MODELS_DIR [DEFINITION], got {candidate}")
    root = find_bundle(args.bundle)
    config = ConfigParser()
    config.read_meta(root / "configs" / "metadata.json")
    config.read_config(root / "configs" / "common.json")
    config.update({"bundle_root": str(root), "seed": args.seed,
                   "cache_dir": str(args.cache_dir or Path("runs") / root.name / "benchmark" / "cache")})
    patches = cohort_patches(config, args.seed)
    environment = {"torch": torch.__version__, "monai": monai.__version__, "threads": args.threads,
                   "cpu": platform.processor(), "load_average_1min": os.getloadavg()[0]}
    results = {"environment": environment,
               "patches": {name: list(items.shape) for name, items in patches.items()},
               "hu_bands": {k: list(v) for k, v in HU_BANDS.items()},
               "candidates": {c[0]: score_candidate(config, Path(c[1]), c[2] if len(c) == 3 else None, patches)
                              for c in args.candidate}}
    write_results(results, args.output)
    return results


if __name__ == "__main__":
    main()
