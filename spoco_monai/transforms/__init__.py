"""Transforms for SPOCO training (array and dictionary versions): sparse annotation simulation, simulated points,
scribbles and boxes, masks grown from points, patch sampling, two views, foreground target; and the clustering
post-transform."""

from __future__ import annotations

from spoco_monai.transforms.annotation_manifest import AnnotationManifest
from spoco_monai.transforms.box_annotation import SimulateBoxes, SimulateBoxesd
from spoco_monai.transforms.box_masks import GrowFromBoxes, GrowFromBoxesd
from spoco_monai.transforms.foreground_target import ForegroundTarget, ForegroundTargetd
from spoco_monai.transforms.grown_masks import GrowFromPoints, GrowFromPointsd
from spoco_monai.transforms.item_region import ItemRegionCropd, region_slices
from spoco_monai.transforms.low_level_segments import LowLevelSegments, LowLevelSegmentsd
from spoco_monai.transforms.labeled_crop import RandCropByLabeledInstances, RandCropByLabeledInstancesd
from spoco_monai.transforms.point_annotation import SimulatePoints, SimulatePointsd
from spoco_monai.transforms.scribble_annotation import SimulateScribbles, SimulateScribblesd
from spoco_monai.transforms.simulated_annotator import BACKGROUND_ANNOTATION
from spoco_monai.transforms.sparse_manifest import SparseAnnotationManifest
from spoco_monai.transforms.sparse_sampling import SparseInstanceSampling, SparseInstanceSamplingd
from spoco_monai.transforms.two_view import TwoViewIntensityAugment, TwoViewIntensityAugmentd
from spoco_monai.transforms.unlabeled_border import UnlabeledBorder, UnlabeledBorderd

from .cluster import Cluster, Clusterd

__all__ = [
    "AnnotationManifest",
    "BACKGROUND_ANNOTATION",
    "Cluster",
    "Clusterd",
    "ForegroundTarget",
    "ForegroundTargetd",
    "GrowFromBoxes",
    "GrowFromBoxesd",
    "GrowFromPoints",
    "GrowFromPointsd",
    "ItemRegionCropd",
    "LowLevelSegments",
    "LowLevelSegmentsd",
    "RandCropByLabeledInstances",
    "RandCropByLabeledInstancesd",
    "SimulateBoxes",
    "SimulateBoxesd",
    "SimulatePoints",
    "SimulatePointsd",
    "SimulateScribbles",
    "SimulateScribblesd",
    "SparseAnnotationManifest",
    "SparseInstanceSampling",
    "SparseInstanceSamplingd",
    "TwoViewIntensityAugment",
    "TwoViewIntensityAugmentd",
    "UnlabeledBorder",
    "UnlabeledBorderd",
    "region_slices",
]
