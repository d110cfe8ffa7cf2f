"""Atomic file writes: a crash (even SIGKILL) never leaves a half-written output behind.

Every writer in monai_gen writes into a temporary file (or staging folder) beside the destination and
renames it into place with :func:`os.replace`, which is atomic on POSIX and Windows file systems when source
and destination are on the same volume. Readers therefore see either the previous complete file or the
new complete file, never a partial one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_output_path", "atomic_output_dir", "atomic_write_bytes", "atomic_write_text", "atomic_write_json"]


@contextmanager
def atomic_output_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path``, on error delete it.

    Use it with libraries that write by file name (nibabel, SimpleITK, pydicom, torch.save, matplotlib).
    The temporary name keeps the destination's suffixes (``.nii.gz``, ``.dcm``...) because some writers
    choose the format from them.

    Args:
        path: the final destination. Its parent folder is created if missing.

    Raises:
        Whatever the body raises; the temporary file is removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, _default_file_mode())  # mkstemp creates 0600; outputs get the usual umask-derived mode
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_output_dir(folder: str | os.PathLike, *, commit_last: Sequence[str] = ()) -> Iterator[Path]:
    """Yield an empty staging folder; on success move every file in it into ``folder``.

    For writers that produce several files at once (a WFDB record is a ``.hea`` header plus ``.dat``
    signal files; a DICOM series is many files). Each file is moved with :func:`os.replace`; files whose
    names end with one of ``commit_last`` are moved after all others, so a reader that looks for them
    (e.g. the WFDB header) only finds a record once its signal files are complete.

    Args:
        folder: destination folder, created if missing.
        commit_last: file-name endings moved last, in the given order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
    try:
        yield staging
        files = sorted(p for p in staging.rglob("*") if p.is_file())
        order = {p: _commit_rank(p.name, commit_last) for p in files}
        for src in sorted(files, key=lambda p: (order[p], str(p))):
            dst = folder / src.relative_to(staging)
            dst.parent.mkdir(parents=True, exist_ok=True)
            _fsync_file(src)
            os.replace(src, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_output_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Serialise ``obj`` as JSON (keys sorted, UTF-8) and write it to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False) + "\n")


def _default_file_mode() -> int:
    """``0o666`` minus the process umask: the mode ``open(path, "w")`` would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _commit_rank(name: str, commit_last: Sequence[str]) -> int:
    for rank, ending in enumerate(commit_last, start=1):
        if name.endswith(ending):
            return rank
    return 0


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
