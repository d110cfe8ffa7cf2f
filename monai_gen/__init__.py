"""monai_gen: conditional generative synthesis of medical data (MRI, CT, 12-lead ECG) for MONAI."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
