"""The CT decoding memory benchmark runs in its tiny mode, so it cannot rot: each decode in its own child process, on
the shipped bundle's autoencoder (VQVAE: tiled and full decodes) and on a KL one (tiled, streamed equal to MONAI's full
decode, full). Memory and time are printed, never asserted: they depend on the machine."""

from __future__ import annotations

import json

import pytest

from benchmarks.ct_memory import MODES, main


@pytest.mark.slow
def test_tiny_ct_memory_benchmark_measures_each_kl_decode_in_its_own_process(tmp_path, capsys):
    results = main(["--tiny", "--autoencoder", "kl", "--threads", "1", "--output", str(tmp_path / "ct_memory.json")])
    saved = json.loads((tmp_path / "ct_memory.json").read_text())
    assert saved == json.loads(json.dumps(results, default=str))
    for mode in MODES:
        run = results[mode]
        assert run["mode"] == mode and run["autoencoder"] == "AutoencoderKL"
        assert run["volume_shape"] == [32, 32, 32] and run["latent_shape"] == [2, 16, 16, 16]
        assert run["peak_rss_mb"] >= run["baseline_rss_mb"] > 0 and run["seconds"] > 0
    assert results["streamed_vs_full_hu"]["max"] < 0.5  # exact to float round-off (HU = 1000 x model units)
    assert results["tiled_vs_full_hu"]["max"] >= results["streamed_vs_full_hu"]["max"]
    printed = capsys.readouterr().out
    assert "streamed decode of a 32x32x32 volume" in printed and "tiled vs full" in printed


@pytest.mark.slow
def test_tiny_ct_memory_benchmark_decodes_the_shipped_vq_autoencoder_by_default(capsys):
    results = main(["--tiny", "--threads", "1"])
    assert "streamed" not in results and "streamed_vs_full_hu" not in results  # streaming is for AutoencoderKL only
    for mode in ("tiled", "full"):
        run = results[mode]
        assert run["autoencoder"] == "VQVAE" and run["compression"] == 4  # the bundle's 32/64 channels: 4x per axis
        assert run["volume_shape"] == [32, 32, 32] and run["latent_shape"] == [4, 8, 8, 8]  # its 4 latent channels
    # halo 1 < the decoder's receptive field: the tiles' seams differ from the full decode, and the report says so
    assert results["tiled_vs_full_hu"]["max"] > 0.5
    assert "tiled vs full" in capsys.readouterr().out
