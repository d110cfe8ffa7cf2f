"""CineContraction on real ACDC cines: a generator that returns real frames contracts like the real test cines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, ScaleIntensityRangePercentilesd, SpatialPadd

from monai_gen.bundle.cardiac_evaluation import CineContraction
from monai_gen.data.acdc import acdc_records
from monai_gen.engines.cohort import build_cohort
from monai_gen.metrics.evaluation import EvaluationData
from monai_gen.transforms.image import CineToFramesd

FIELDS = ["group", "phase", "slice_position", "is_es"]


@pytest.fixture(scope="module")
def frames(shared_data):
    """Every frame of four ACDC patients (two normal, two dilated), (N, 1, 100, 96) scaled to [0, 1] per cine."""
    records = acdc_records(shared_data / "cardiac_mri/acdc_subset",
                           patients=["patient001", "patient002", "patient061", "patient062"])
    prepare = Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image", channel_dim=-1),
                       ScaleIntensityRangePercentilesd("image", 0.5, 99.5, 0.0, 1.0, clip=True),
                       CineToFramesd("image", ed_key="ed_frame", es_key="es_frame"),
                       SpatialPadd("image", [100, 96])])
    return build_cohort(records, prepare, fields=FIELDS)


def test_real_frames_as_the_generator_contract_like_the_real_cines_of_their_group(frames):
    train = frames.subset([i for i, r in enumerate(frames.rows) if r["subject_id"] in ("patient001", "patient061")])
    test = frames.subset([i for i, r in enumerate(frames.rows) if r["subject_id"] in ("patient002", "patient062")])
    by_key = {(r["group"], round(r["slice_position"], 3), round(r["phase"], 4)): i for i, r in enumerate(test.rows)}
    positions = sorted({round(r["slice_position"], 3) for r in test.rows})
    requests = []

    def generate(rows, seeds):  # the test patient's own frame nearest each requested slice position and phase
        requests.extend(zip(rows, seeds, strict=True))
        picked = []
        for row in rows:
            position = min(positions, key=lambda p: abs(p - row["slice_position"]))
            candidates = [k for k in by_key if k[0] == row["group"] and k[1] == position]
            key = min(candidates, key=lambda k: min(abs(k[2] - row["phase"]), 1 - abs(k[2] - row["phase"])))
            picked.append(by_key[key])
        return test.items[picked]

    data = EvaluationData(test.items[:1], [{}], train, test, seed=3, generate=generate)
    section = CineContraction(n_seeds=2, n_frames=15)(data)
    groups = section["groups"]
    assert sorted(groups) == ["DCM", "NOR"]
    assert groups["NOR"]["synthetic"]["median"] > groups["DCM"]["synthetic"]["median"] + 0.15
    # real: every slice of each test cine, base and apex included (NOR 0.40, DCM 0.32); synthetic: mid-ventricle
    assert groups["NOR"]["real"]["median"] > groups["DCM"]["real"]["median"] and groups["DCM"]["real"]["n"] == 7
    assert abs(groups["DCM"]["synthetic"]["median"] - groups["DCM"]["real"]["median"]) < 0.1
    assert 0.2 < groups["DCM"]["es_phase"] < 0.5  # ES about a third into the cycle, from the training rows
    assert len(requests) == 2 * 2 * 15 and {s for _, s in requests} == {3, 4}
    assert {r["group"] for r, _ in requests} == {"DCM", "NOR"} and all(set(r) == {"group", "slice_position", "phase"}
                                                                       for r, _ in requests)
    # the real training cines (patients 001 and 061, seven slices each) beside the test ones
    assert groups["DCM"]["real_train"]["n"] == 7 and groups["NOR"]["real_train"]["n"] == 7
    assert groups["NOR"]["real_train"]["median"] > groups["DCM"]["real_train"]["median"]
    markdown = "\n".join(CineContraction().markdown(section))
    assert "| NOR |" in markdown and "synthetic median [IQR]" in markdown and "cine contraction" in section["summary"]
    assert "real training cines median [IQR]" in markdown

    # a group with training cines but none among the test subjects is still generated, its test cell "none"
    dcm_test = test.subset([i for i, r in enumerate(test.rows) if r["group"] == "DCM"])
    section = CineContraction(n_seeds=1, n_frames=15)(EvaluationData(test.items[:1], [{}], train, dcm_test, seed=3,
                                                                     generate=generate))
    assert sorted(section["groups"]) == ["DCM", "NOR"] and section["groups"]["NOR"]["real"]["n"] == 0
    assert section["groups"]["NOR"]["synthetic"]["n"] == 1
    assert "| NOR | " in "\n".join(CineContraction().markdown(section)).split("none")[0]
    with pytest.raises(ValueError, match="EvaluationData.generate must be given"):
        CineContraction()(EvaluationData(test.items[:1], [{}], train, test, seed=0))
    with pytest.raises(ValueError, match="n_frames >= 4"):
        CineContraction(n_frames=2)
    assert torch.isfinite(frames.items).all() and np.isclose(float(frames.items.max()), 1.0)
