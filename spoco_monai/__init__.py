"""spoco-monai: instance segmentation from sparse object annotations (SPOCO) for MONAI."""

from __future__ import annotations

__version__ = "0.1.0"
