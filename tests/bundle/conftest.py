"""Shared helpers of the bundle tests."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tree_digest() -> Callable[[Path], str]:
    """``digest(folder)``: SHA-256 over every file's relative path and bytes under ``folder`` (to prove a test
    wrote nothing into a bundle)."""

    def digest(folder: Path) -> str:
        sha = hashlib.sha256()
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            sha.update(str(path.relative_to(folder)).encode() + path.read_bytes())
        return sha.hexdigest()

    return digest
