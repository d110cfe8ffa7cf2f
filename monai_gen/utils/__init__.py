"""Small helpers shared by every layer (atomic writes)."""

from __future__ import annotations

from .atomic import atomic_output_dir, atomic_output_path, atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["atomic_output_path", "atomic_output_dir", "atomic_write_bytes", "atomic_write_text", "atomic_write_json"]
