"""Tutorial 3: train the CT bundle on your own folder of CTs, then generate a CT for a segmentation.

Run it from the repository root (``make venv`` first)::

    python tutorials/03_train_ct_on_your_folder.py --ct-dir my_cts --label-dir my_labels --output-dir ct_run

``--ct-dir`` holds one CT per NIfTI file (``.nii`` / ``.nii.gz``, in Hounsfield units) or per subfolder of DICOM files
(one series); ``--label-dir`` (optional) holds TotalSegmentator-style label maps named ``<ct name>_seg.nii.gz`` on
their CT's voxel grid. Without ``--ct-dir`` the tutorial builds such a folder from the TotalSegmentator files in
``../shared/data/ct/totalsegmentator`` (a NIfTI abdomen, a DICOM thorax series, two crops of a third subject, and an MR
file put there by mistake, which training skips with a message naming it).

It runs the bundle's own configs (``bundles/ct_generative_diffusion``) through MONAI's bundle tooling, exactly what
``monai-gen train ct_generative_diffusion --dataset-dir my_cts --override label_dir=my_labels`` runs, but at
``--patch`` voxels per patch edge and ``--epochs`` epochs per stage so that it finishes in minutes on a laptop CPU:
the point is the path, not the model. Everything is written under ``--output-dir`` (the bundle folder is never
touched). For a real model leave out the size overrides and give the stages hours (see the bundle's README).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from monai_gen.bundle.registry import find_bundle, run_bundle_workflow

SHARED_CT = Path(os.environ.get("MONAI_GEN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "ct" / "totalsegmentator"


def example_folder(root: Path) -> tuple[Path, Path, dict[str, str]]:
    """A user-style folder (symlinks into the shared TotalSegmentator files): CTs, label maps, subjects of the crops."""
    cts, labels = root / "cts", root / "labels"
    cts.mkdir(parents=True, exist_ok=True)
    labels.mkdir(exist_ok=True)
    links = {
        cts / "abdomen.nii.gz": SHARED_CT / "example_ct_sm.nii.gz",
        cts / "thorax": SHARED_CT / "example_ct_dicom",
        cts / "aorta.nii.gz": SHARED_CT / "aorta_report" / "test_result" / "models" / "ct_cropped.nii.gz",
        cts / "pulmonary.nii.gz": SHARED_CT / "pulmonary_report" / "models" / "ct_cropped.nii.gz",
        cts / "mr_by_mistake.nii.gz": SHARED_CT / "example_mr_sm.nii.gz",
        labels / "abdomen_seg.nii.gz": SHARED_CT / "example_seg.nii.gz",
        labels / "thorax_seg.nii.gz": SHARED_CT / "example_seg_dicom.nii.gz",
    }
    for link, target in links.items():
        if not target.exists():
            raise FileNotFoundError(f"{target} is absent: give --ct-dir with your own CTs.")
        if not link.exists():
            link.symlink_to(target, target_is_directory=target.is_dir())
    return cts, labels, {"aorta": "crops", "pulmonary": "crops"}  # two crops of one subject stay on one side


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ct-dir", type=Path, default=None, help="your CTs (default: an example folder)")
    parser.add_argument("--label-dir", type=Path, default=None, help="their label maps <ct name>_seg.nii.gz")
    parser.add_argument("--output-dir", type=Path, default=Path("ct_tutorial_output"))
    parser.add_argument("--patch", type=int, default=16, help="patch edge in voxels, a multiple of 4 (bundle: 48)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per stage")
    args = parser.parse_args(argv)
    out = args.output_dir.resolve()
    subjects = None
    if args.ct_dir is None:
        ct_dir, label_dir, subjects = example_folder(out / "example_folder")
    else:
        ct_dir, label_dir = args.ct_dir.resolve(), args.label_dir.resolve() if args.label_dir else None

    bundle = find_bundle("ct_generative_diffusion")
    small = {"patch_size": [args.patch] * 3, "patches_per_volume": 4, "batch_size": 2, "max_epochs": args.epochs}
    data = {"dataset_dir": str(ct_dir), "label_dir": str(label_dir) if label_dir else None, "subjects": subjects,
            "output_dir": str(out / "train"), **small}
    for stage in ("train_autoencoder", "train_diffusion"):
        workflow = run_bundle_workflow(bundle, stage, data)
        cohorts = workflow.parser.get_parsed_content("cohorts")
        print(f"{stage}: trained on {cohorts.train.subjects()} ({len(cohorts.train)} patches), "
              f"held out {cohorts.test.subjects()}")

    models = out / "train" / "models"
    print("models:", sorted(p.name for p in models.iterdir()))
    label_map = next(iter(sorted(label_dir.glob("*_seg.nii*"))), None) if label_dir else None
    generated = out / "generated"
    run_bundle_workflow(bundle, "inference", {
        **data, "models_dir": str(models), "output_dir": str(generated), "craniocaudal_position": 0.5,
        "num_inference_steps": 10, "label_map": str(label_map) if label_map else None, "progress": False,
    })
    volume = nib.load(generated / "ct_0.nii.gz")
    hu = volume.get_fdata()
    sidecar = json.loads((generated / "ct_0.json").read_text())
    print(f"generated {generated / 'ct_0.nii.gz'}: {volume.shape} voxels at {volume.header.get_zooms()} mm, "
          f"HU {hu.min():.0f} .. {hu.max():.0f} (median {np.median(hu):.0f}), label map {label_map} "
          f"(sidecar: sha256 {str(sidecar.get('label_map_sha256'))[:12]}...)")
    print("DICOM series:", len(list((generated / "ct_0_dicom").glob("*.dcm"))), "files")
    return {"models": models, "generated": generated, "shape": volume.shape}


if __name__ == "__main__":
    main()
