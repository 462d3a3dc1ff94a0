"""Classical instance segmentations, the baselines a user would try before a learned model."""

from __future__ import annotations

from spoco_monai.baselines.watershed import membrane_watershed, nuclei_watershed

__all__ = ["membrane_watershed", "nuclei_watershed"]
