"""``monai-gen generate --label-map / --volume-size``: refused, in one line and before any weights load, where they
cannot mean anything. With shipped weights they are tested with the CT bundle (tests/bundle/test_ct_bundle.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
CT = TESTS / "bundle" / "tiny_ct_bundle"  # configs only: no weights, so any success would fail loading
BRAIN = TESTS / "bundle" / "tiny_brain_bundle"


@pytest.mark.parametrize(
    ("bundle", "options", "message"),
    [
        (BRAIN, ["--volume-size", "64", "64", "64"], "--volume-size: tiny_brain_bundle has no 'volume_size' option"),
        (BRAIN, ["--label-map", "seg.nii.gz"], "--label-map: tiny_brain_bundle has no 'label_map' option"),
        (CT, ["--label-map", "no_such_seg.nii.gz"], "--label-map no_such_seg.nii.gz: no such file"),
        (CT, ["--volume-size", "64", "0", "64"], "argument --volume-size: must be a positive integer"),
        (CT, ["--volume-size", "64", "64"], "argument --volume-size: expected 3 arguments"),
        (CT, ["--label-values", "1=52"], "--label-values: says what a --label-map's values mean; give --label-map too"),
        (CT, ["--label-map", "seg.nii.gz", "--label-values", "1:52"], "expected FILE_VALUE=SCHEME_VALUE of whole numbers"),
        (BRAIN, ["--label-map", "seg.nii.gz", "--label-values", "1=52"], "tiny_brain_bundle has no 'label_map' option"),
    ],
)
def test_bad_volume_requests_exit_2_before_loading_any_weights(bundle, options, message, run_cli, tmp_path):
    code, text = run_cli(["generate", str(bundle), *options, "--output-dir", str(tmp_path / "out")])
    assert code == 2 and message in text, text
    assert "Traceback" not in text and not (tmp_path / "out").exists()
