"""``monai-gen generate --cine``: refused, in one line and before any weights load, where it cannot mean anything.

A cine with shipped weights is tested with the cardiac bundle (tests/bundle/test_cardiac_mri_bundle.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
CARDIAC = TESTS / "bundle" / "tiny_cardiac_bundle"  # configs only: no weights, so any success would fail loading
BRAIN = TESTS / "bundle" / "tiny_brain_bundle"


@pytest.mark.parametrize(
    ("bundle", "options", "message"),
    [
        (CARDIAC, ["--cine", "--phase", "0.3"], "--cine makes one cine over the whole phase cycle; drop --phase"),
        (CARDIAC, ["--cine", "--num-samples", "3"], "drop --num-samples"),
        (CARDIAC, ["--cine-frames", "12"], "--cine-frames sets the frames of a --cine; add --cine"),
        (CARDIAC, ["--cine", "--cine-frames", "1"], "a cine needs at least 2 frames, got num_frames=1"),
        (CARDIAC, ["--cine", "--group", "XYZ"], "condition 'group' = 'XYZ' is not one of its categories"),
        (BRAIN, ["--cine"], "--cine sweeps the bundle's one periodic condition (e.g. a cardiac phase); "),
    ],
)
def test_bad_cine_requests_exit_2_before_loading_any_weights(bundle, options, message, run_cli, tmp_path):
    code, text = run_cli(["generate", str(bundle), *options, "--output-dir", str(tmp_path / "out")])
    assert code == 2 and message in text, text
    assert "Traceback" not in text and not (tmp_path / "out").exists()
