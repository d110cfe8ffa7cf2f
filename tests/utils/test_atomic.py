from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from monai_gen.utils import atomic_output_dir, atomic_output_path, atomic_write_json
from monai_gen.utils.atomic import atomic_write_text


def test_failed_write_keeps_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.nii.gz"
    target.write_bytes(b"old complete file")
    with pytest.raises(RuntimeError, match="writer crashed"):
        with atomic_output_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer crashed")
    assert target.read_bytes() == b"old complete file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz"]


def test_temporary_keeps_suffixes_so_writers_pick_the_format(tmp_path):
    with atomic_output_path(tmp_path / "sub" / "vol.nii.gz") as tmp:
        assert tmp.name.endswith(".nii.gz")
        tmp.write_bytes(b"x")
    assert (tmp_path / "sub" / "vol.nii.gz").read_bytes() == b"x"


def test_json_round_trip(tmp_path):
    path = atomic_write_json(tmp_path / "prov.json", {"seed": 3, "model": "ecg"})
    assert json.loads(path.read_text()) == {"model": "ecg", "seed": 3}


def test_dir_commits_named_files_last_and_cleans_staging(tmp_path):
    with atomic_output_dir(tmp_path, commit_last=(".hea",)) as staging:
        (staging / "r1.hea").write_text("header")
        (staging / "r1.dat").write_bytes(b"\x00\x01")
    assert {p.name for p in tmp_path.iterdir()} == {"r1.hea", "r1.dat"}


def test_dir_failure_commits_nothing(tmp_path):
    with pytest.raises(ValueError):
        with atomic_output_dir(tmp_path) as staging:
            (staging / "r1.dat").write_bytes(b"\x00")
            raise ValueError("bad signal")
    assert list(tmp_path.iterdir()) == []


def test_sigkill_mid_write_never_leaves_a_partial_destination(tmp_path):
    """A process killed while writing leaves either nothing or the old complete file at the destination."""
    target = tmp_path / "ckpt.bin"
    target.write_bytes(b"A" * 1000)
    script = textwrap.dedent(
        f"""
        import sys, time
        from monai_gen.utils import atomic_output_path
        with atomic_output_path({str(target)!r}) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"B" * 500)
                f.flush()
                print("writing", flush=True)
                time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    time.sleep(0.05)
    assert target.read_bytes() == b"A" * 1000


def test_outputs_get_the_umask_mode_not_the_private_temp_mode(tmp_path):
    umask = os.umask(0o022)
    try:
        written = atomic_write_text(tmp_path / "out.json", "{}")
    finally:
        os.umask(umask)
    assert (written.stat().st_mode & 0o777) == 0o644
