"""Dictionary transforms for SPOCO training: sparse annotation simulation, patch sampling, two views."""

from __future__ import annotations

from spoco_monai.transforms.foreground_target import ForegroundTarget, ForegroundTargetd
from spoco_monai.transforms.labeled_crop import RandCropByLabeledInstancesd
from spoco_monai.transforms.sparse_manifest import SparseAnnotationManifest
from spoco_monai.transforms.sparse_sampling import SparseInstanceSamplingd
from spoco_monai.transforms.two_view import TwoViewIntensityAugmentd

from .cluster import Clusterd

__all__ = [
    "Clusterd",
    "ForegroundTarget",
    "ForegroundTargetd",
    "RandCropByLabeledInstancesd",
    "SparseAnnotationManifest",
    "SparseInstanceSamplingd",
    "TwoViewIntensityAugmentd",
]
