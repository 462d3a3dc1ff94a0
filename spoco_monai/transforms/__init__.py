"""Transforms for SPOCO training (array and dictionary versions): sparse annotation simulation, patch sampling,
two views, foreground target; and the clustering post-transform."""

from __future__ import annotations

from spoco_monai.transforms.foreground_target import ForegroundTarget, ForegroundTargetd
from spoco_monai.transforms.item_region import ItemRegionCropd, region_slices
from spoco_monai.transforms.labeled_crop import RandCropByLabeledInstances, RandCropByLabeledInstancesd
from spoco_monai.transforms.sparse_manifest import SparseAnnotationManifest
from spoco_monai.transforms.sparse_sampling import SparseInstanceSampling, SparseInstanceSamplingd
from spoco_monai.transforms.two_view import TwoViewIntensityAugment, TwoViewIntensityAugmentd
from spoco_monai.transforms.unlabeled_border import UnlabeledBorder, UnlabeledBorderd

from .cluster import Clusterd

__all__ = [
    "Clusterd",
    "ForegroundTarget",
    "ForegroundTargetd",
    "ItemRegionCropd",
    "RandCropByLabeledInstances",
    "RandCropByLabeledInstancesd",
    "SparseAnnotationManifest",
    "SparseInstanceSampling",
    "SparseInstanceSamplingd",
    "TwoViewIntensityAugment",
    "TwoViewIntensityAugmentd",
    "UnlabeledBorder",
    "UnlabeledBorderd",
    "region_slices",
]
