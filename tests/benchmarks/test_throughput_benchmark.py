"""The throughput benchmark's bound counts the guided passes the shipped ECG bundle really runs for a request."""

from __future__ import annotations

import argparse

import pytest
import torch

from benchmarks.generation import load_bundle_model
from benchmarks.throughput import _phenotype_setting, guided_passes


def test_guided_passes_follow_the_bundle_guidance_and_the_request():
    model = load_bundle_model(torch.device("cpu"))  # guidance 3 + heart rate, QRS, QT and sex each guided on their own
    assert guided_passes(model, {}) == 1  # nothing set: the conditional estimate is the unconditional one
    assert guided_passes(model, {"age": 60.0}) == 2  # full + all dropped
    assert guided_passes(model, {"sex": "female"}) == 3  # + sex dropped
    assert guided_passes(model, {"qrs": 140.0}) == 3  # + QRS dropped
    assert guided_passes(model, {"heart_rate": 70.0, "qrs": 100.0, "qt": 400.0, "age": 60.0}) == 5
    assert guided_passes(model, {"heart_rate": 70.0, "qrs": 100.0, "qt": 400.0, "sex": "male"}) == 6


def test_phenotype_settings_parse():
    assert _phenotype_setting("qrs=100") == ("qrs", 100.0)
    assert _phenotype_setting("sex=female") == ("sex", "female")
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=VALUE"):
        _phenotype_setting("qrs")
