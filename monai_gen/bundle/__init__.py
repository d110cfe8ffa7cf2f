"""Helpers that bundle configs and the CLI call: bundle lookup and running, ECG cohort, generation, evaluation."""

from __future__ import annotations

from .registry import BundleInfo, bundle_component, find_bundle, list_bundles, read_bundle_info, run_bundle_workflow

__all__ = ["BundleInfo", "bundle_component", "find_bundle", "list_bundles", "read_bundle_info", "run_bundle_workflow"]
