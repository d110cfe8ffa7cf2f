"""``monai-gen explore``: bad options are one line (exit 2) before any weights load; parsing imports no torch."""

from __future__ import annotations

import subprocess
import sys


def test_non_loopback_host_is_refused_before_loading(run_cli, tmp_path):
    code, out = run_cli(["explore", "ecg_generative_diffusion", "--host", "0.0.0.0", "--output-dir", str(tmp_path)])
    assert code == 2 and "--host '0.0.0.0': the explorer serves this machine only" in out
    assert "loading" not in out and "Traceback" not in out


def test_unknown_bundle_is_one_line(run_cli, tmp_path):
    code, out = run_cli(["explore", "no_such_bundle", "--output-dir", str(tmp_path)])
    assert code == 2 and "no bundle 'no_such_bundle'" in out and "Traceback" not in out


def test_bad_port_is_an_argument_error(run_cli):
    code, out = run_cli(["explore", "--port", "70000"])
    assert code == 2 and "must be a port number from 0 to 65535" in out


def test_parsing_explore_imports_no_torch():
    script = ("import sys; from monai_gen.cli.main import build_parser; "
              "args = build_parser().parse_args(['explore']); print(args.bundle, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["ecg_generative_diffusion", "False"]
