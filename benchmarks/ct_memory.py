"""CT decoding memory: peak resident memory and seconds to decode the latent of one 128^3 CT volume.

Run ``python -m benchmarks.ct_memory`` (``--tiny`` for a seconds-long smoke run). It builds the CT bundle's own
autoencoder (``--autoencoder bundle``, the default: ``autoencoder_def`` of the bundle's ``common.json``, the MONAI
``VQVAE`` that ships) or a 3D KL autoencoder (``--autoencoder kl``: MONAI ``AutoencoderKL`` through
:func:`monai_gen.networks.autoencoders.kl_autoencoder`, sized by ``--channels`` and the options after it), untrained
(memory and time do not depend on the weights), and decodes one random latent of a ``--size``^3 volume

- **tiled**: :class:`monai_gen.diffusion.latent.LatentSpace` ``(tile_size=...)``, overlapping latent tiles decoded one
  at a time, each output voxel the mean of the tile cores that hold it (exact for the VQ decoder, which is purely
  convolutional, when ``--halo`` covers its receptive field; GroupNorm in a KL decoder sees one tile: approximate);
- **streamed** (KL only: ``LatentSpace`` streams MONAI ``AutoencoderKL`` decoders): ``LatentSpace(slab_size=...)``, the
  decoder layer by layer over the whole volume, each convolution in slabs of output slices, each GroupNorm with the
  whole volume's statistics (exact);
- **full**: MONAI's own full decode of the same network (``decode_stage_2_outputs`` on the whole latent, what
  ``LatentDiffusionInferer.sample`` ends with and the bundle's default ``decode_tile_size: null`` does);

each in a child process of its own, so the peaks are separate (``ru_maxrss`` of the child: its whole peak, torch
and the network included; ``baseline_rss_mb`` is the child's resident memory just before decoding). All run under
``torch.inference_mode`` as generation does, and map the decoded volume to HU with the bundle's Hounsfield window;
the parent compares the volumes with the full decode's (in HU). On CUDA (``--device cuda``) each
child also reports its peak GPU memory. Results are printed and written as JSON (``--output``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.machine import rss_mb

MODES = ("tiled", "streamed", "full")
AUTOENCODERS = ("bundle", "kl")
TINY = ["--size", "32", "--channels", "8", "16", "--latent-channels", "2", "--tile-size", "4", "--halo", "1",
        "--norm-groups", "8"]  # the KL options change nothing with --autoencoder bundle


def modes(autoencoder: str) -> tuple[str, ...]:
    """The decodes measured for an ``--autoencoder`` choice (streaming needs a MONAI ``AutoencoderKL``)."""
    return MODES if autoencoder == "kl" else ("tiled", "full")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="volume edge in voxels (default 128)")
    parser.add_argument("--autoencoder", choices=AUTOENCODERS, default="bundle",
                        help="bundle: the --bundle's autoencoder_def (default); kl: an AutoencoderKL of --channels")
    parser.add_argument("--bundle", default="ct_generative_diffusion", help="bundle name or folder (--autoencoder bundle)")
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64, 64],
                        help="KL autoencoder channels per level; compression 2 ** (levels - 1)")
    parser.add_argument("--latent-channels", type=int, default=4)
    parser.add_argument("--res-blocks", type=int, default=1)
    parser.add_argument("--norm-groups", type=int, default=16)
    parser.add_argument("--tile-size", type=int, default=24,
                        help="latent tile edge of the tiled decode (tile-overlap x tile-size >= 2 x halo)")
    parser.add_argument("--tile-overlap", type=float, default=0.5)
    parser.add_argument("--halo", type=int, default=6,
                        help="latent voxels discarded at inner tile cuts (6 covers the VQ decoder's receptive field)")
    parser.add_argument("--slab-size", type=int, default=8, help="output slices per convolution slab (streamed)")
    parser.add_argument("--hu-window", type=float, nargs=2, default=[-1000.0, 1000.0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="a 32^3 volume and a small network (tests)")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--child", choices=MODES, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--save", type=Path, default=None, help=argparse.SUPPRESS)
    return parser



def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def build_autoencoder(args: argparse.Namespace) -> tuple[torch.nn.Module, int]:
    """The autoencoder ``args.autoencoder`` names and its latent channels."""
    if args.autoencoder == "kl":
        from monai_gen.networks.autoencoders import kl_autoencoder

        return kl_autoencoder(3, 1, channels=args.channels, latent_channels=args.latent_channels,
                              num_res_blocks=args.res_blocks, norm_num_groups=args.norm_groups), args.latent_channels
    from monai.bundle import ConfigParser

    from monai_gen.bundle.registry import find_bundle

    config = ConfigParser()
    config.read_config(find_bundle(args.bundle) / "configs" / "common.json")
    return config.get_parsed_content("autoencoder_def"), int(config.get_parsed_content("latent_channels"))


def run_child(args: argparse.Namespace) -> dict[str, Any]:
    """Build the network, decode once in ``args.child`` mode, report memory and time (and save the HU volume)."""
    from monai_gen.diffusion.latent import LatentSpace
    from monai_gen.transforms.image import HounsfieldWindow

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    network, latent_channels = build_autoencoder(args)
    autoencoder = network.to(device).eval()
    tiled, streamed = args.child == "tiled", args.child == "streamed"
    space = LatentSpace(autoencoder, tile_size=args.tile_size if tiled else None, tile_overlap=args.tile_overlap,
                        halo=args.halo, slab_size=args.slab_size if streamed else None)
    factor = space.compression
    latent = torch.randn(1, latent_channels, *[args.size // factor] * 3, device=device)
    window = HounsfieldWindow(*args.hu_window)
    baseline = rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    with torch.inference_mode():
        decoded = space.decode(latent) if tiled or streamed else autoencoder.decode_stage_2_outputs(latent)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    volume = window.inverse(decoded.float().cpu())
    result = {
        "mode": args.child, "autoencoder": type(autoencoder).__name__, "device": str(device), "threads": args.threads,
        "volume_shape": list(volume.shape[2:]), "latent_shape": list(latent.shape[1:]), "compression": factor, "seconds": seconds,
        "peak_rss_mb": _peak_rss_mb(), "baseline_rss_mb": baseline,
        "parameters": sum(p.numel() for p in autoencoder.parameters()),
    }
    if tiled:
        result.update(tile_size=args.tile_size, tile_overlap=args.tile_overlap, halo=args.halo)
    if streamed:
        result.update(slab_size=args.slab_size)
    if device.type == "cuda":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    if args.save is not None:
        np.save(args.save, volume.numpy()[0, 0])
    return result


def _child_command(argv: list[str], mode: str, save: Path) -> list[str]:
    return [sys.executable, "-m", "benchmarks.ct_memory", *argv, "--child", mode, "--save", str(save)]


def run(argv: list[str]) -> dict[str, Any]:
    """Run each of the autoencoder's modes in a child process, compare their volumes, return everything."""
    args = _parser().parse_args(argv)
    argv = [a for a in argv if a not in ("--tiny",)]
    argv = [*TINY, *argv] if args.tiny else argv
    argv = _without_output(argv)
    results: dict[str, Any] = {"settings": vars(_parser().parse_args(argv)) | {"output": None, "child": None,
                                                                                "save": None}}
    measured = modes(args.autoencoder)
    with tempfile.TemporaryDirectory() as tmp:
        for mode in measured:
            save = Path(tmp) / f"{mode}.npy"
            done = subprocess.run(_child_command(argv, mode, save), capture_output=True, text=True, check=False,
                                  env={**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": os.pathsep.join(
                                      [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])})
            if done.returncode != 0:
                raise RuntimeError(f"the {mode} decode failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
            results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        volumes = {m: np.load(Path(tmp) / f"{m}.npy") for m in measured}
    for mode in measured[:-1]:
        difference = np.abs(volumes[mode] - volumes["full"])
        results[f"{mode}_vs_full_hu"] = {"max": float(difference.max()), "mean": float(difference.mean()),
                                         "p99": float(np.percentile(difference, 99))}
    results["settings"]["size"] = results["full"]["volume_shape"][0]
    return results


def _without_output(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--output":
            skip = True
            continue
        if a.startswith("--output="):
            continue
        out.append(a)
    return out


def _print(results: dict[str, Any]) -> None:
    measured = modes(results["settings"]["autoencoder"])
    for mode in measured:
        r = results[mode]
        gpu = f", peak GPU {r['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in r else ""
        print(f"{mode:8s} decode of a {'x'.join(map(str, r['volume_shape']))} volume ({r['autoencoder']}, {r['device']}, "
              f"{r['threads']} thread(s)): {r['seconds']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB (before decoding "
              f"{r['baseline_rss_mb']:.0f} MB){gpu}")
    for mode in measured[:-1]:
        d = results[f"{mode}_vs_full_hu"]
        print(f"{mode} vs full: max {d['max']:.3g} HU, 99th percentile {d['p99']:.3g} HU, mean {d['mean']:.3g} HU")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.child is not None:
        result = run_child(args)
        print(json.dumps(result))
        return result
    results = run(argv)
    _print(results)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return results


if __name__ == "__main__":
    main()
