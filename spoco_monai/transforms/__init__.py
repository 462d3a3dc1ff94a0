"""Transforms for SPOCO training (array and dictionary versions): sparse annotation simulation, patch sampling,
two views, foreground target; and the clustering post-transform."""

from __future__ import annotations

from spoco_monai.transforms.foreground_target import ForegroundTarget, ForegroundTargetd
from spoco_monai.transforms.labeled_crop import RandCropByLabeledInstances, RandCropByLabeledInstancesd
from spoco_monai.transforms.sparse_manifest import SparseAnnotationManifest
from spoco_monai.transforms.sparse_sampling import SparseInstanceSampling, SparseInstanceSamplingd
from spoco_monai.transforms.two_view import TwoViewIntensityAugment, TwoViewIntensityAugmentd
from spoco_monai.transforms.unlabeled_border import UnlabeledBorder, UnlabeledBorderd

from .cluster import Cluster, Clusterd

__all__ = [
    "Cluster",
    "Clusterd",
    "ForegroundTarget",
    "ForegroundTargetd",
    "RandCropByLabeledInstances",
    "RandCropByLabeledInstancesd",
    "SparseAnnotationManifest",
    "SparseInstanceSampling",
    "SparseInstanceSamplingd",
    "TwoViewIntensityAugment",
    "TwoViewIntensityAugmentd",
    "UnlabeledBorder",
    "UnlabeledBorderd",
]
