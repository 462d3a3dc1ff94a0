"""spoco-monai: instance segmentation from sparse object annotations (SPOCO) for MONAI.

Subpackages: :mod:`~spoco_monai.losses`, :mod:`~spoco_monai.transforms`, :mod:`~spoco_monai.clustering`,
:mod:`~spoco_monai.metrics`, :mod:`~spoco_monai.inferers`, :mod:`~spoco_monai.engines`,
:mod:`~spoco_monai.networks` and :mod:`~spoco_monai.data`. The most used classes and functions are re-exported here.
"""

from __future__ import annotations

from spoco_monai import clustering, data, engines, inferers, losses, metrics, networks, transforms
from spoco_monai.clustering import hdbscan_clustering, mutex_watershed
from spoco_monai.engines import SpocoTrainer
from spoco_monai.inferers import SegmentationSettings, SpocoSlidingWindowInferer, segment_volume
from spoco_monai.losses import SpocoLoss
from spoco_monai.transforms import (
    Clusterd,
    RandCropByLabeledInstancesd,
    SparseInstanceSamplingd,
    TwoViewIntensityAugmentd,
)

__version__ = "0.1.0"

__all__ = [
    "Clusterd",
    "RandCropByLabeledInstancesd",
    "SparseInstanceSamplingd",
    "SegmentationSettings",
    "SpocoLoss",
    "SpocoSlidingWindowInferer",
    "SpocoTrainer",
    "TwoViewIntensityAugmentd",
    "clustering",
    "data",
    "engines",
    "hdbscan_clustering",
    "inferers",
    "losses",
    "metrics",
    "mutex_watershed",
    "networks",
    "segment_volume",
    "transforms",
]
