"""The settings of a whole-volume segmentation, in one frozen object.

Python (:func:`~.segment_volume.segment_volume`), the MONAI inferer
(:class:`~.sliding_window.SpocoSlidingWindowInferer`), the command line and the bundle's ``inference.json`` (its
``segmentation`` entry) all take a :class:`SegmentationSettings`, so the same input and settings give the same
labels on every path. What does not
change the labels (where the output goes, progress bars, timings, several processes) is an argument of the run.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

import torch

from ..clustering import (
    default_offsets,
    hdbscan_clustering,
    mutex_watershed_from_affinities,
    point_clustering,
    seeded_watershed_from_affinities,
)
from ..clustering.hdbscan_clustering import HDBSCAN_MISSING, hdbscan_installed
from ..validation import check_open_unit_interval, check_positive
from .block_grid import positive_ints

BLENDS = ("affinities", "embeddings")
CLUSTERINGS = ("mws", "watershed", "hdbscan", "points")
# the clusterings that work on blended affinities
AFFINITY_CLUSTERINGS = ("mws", "watershed")


def _options(function: Any, given_by_the_block: set[str]) -> frozenset[str]:
    return frozenset(inspect.signature(function).parameters) - given_by_the_block


# the keyword arguments clustering_kwargs may hold for each clustering (the rest comes from the block)
CLUSTERING_OPTIONS = {
    "mws": _options(mutex_watershed_from_affinities, {"affinities", "offsets", "mask", "overwrite_input"}),
    "watershed": _options(seeded_watershed_from_affinities, {"affinities", "offsets", "mask"}),
    "hdbscan": _options(hdbscan_clustering, {"embeddings", "mask"}),
    "points": _options(point_clustering, {"embeddings", "localization", "mask", "affinity_delta_dist"}),
}
FOREGROUNDS = ("network", "intensity")


@dataclass(frozen=True)
class SegmentationSettings:
    """Everything that decides the labels of a whole-volume segmentation, checked once at construction.

    Blending. ``"affinities"`` (default) turns every window's embeddings into affinities inside that window,
    blends the affinities and clusters them (Mutex Watershed or seeded watershed); it is insensitive to the
    network placing different windows' embeddings differently, and is the choice for large volumes.
    ``"embeddings"`` blends the embeddings themselves and clusters them per block (Mutex Watershed or seeded
    watershed on the blended embeddings' affinities, or HDBSCAN); use it for HDBSCAN, and prefer blocks whose
    extent fits in one window (blending embeddings of windows that place them differently mixes unrelated
    vectors).

    Args:
        roi_size: sliding-window size, one value per spatial axis (this also sets the spatial dimension, 2 or 3).
        overlap: overlap of neighbouring windows, in [0, 1).
        block_shape: approximate core size of a block per axis, rounded to whole window steps; ``None`` for
            about 2^21 voxels per block. Larger blocks need more memory, smaller ones stitch more.
        halo: minimum block halo per side in voxels (>= 1); see :class:`~.block_grid.BlockGrid`.
        blend: what the windows blend, ``"affinities"`` or ``"embeddings"`` (see above).
        clustering: the per-block clustering: ``"mws"`` (the Mutex Watershed), ``"watershed"`` (seeds at the maxima
            of the foreground's distance map grown over the borders of the embeddings, see
            :func:`~spoco_monai.clustering.seeded_watershed_from_affinities`; needs
            ``clustering_kwargs["min_distance"]``; for compact objects: nuclei in a foreground, cells in dense
            tissue with a ``boundary_threshold``) or, with ``blend="embeddings"`` only, ``"hdbscan"`` or
            ``"points"``: for a network trained from clicks, whose last output channel is a localisation logit (not
            a foreground): seeds at the peaks of its probability above ``clustering_kwargs["threshold"]`` at least
            ``min_distance`` apart, grown over the borders of the embeddings, each object keeping the pixels whose
            embedding lies within ``embedding_radius`` of its seed's (see
            :func:`~spoco_monai.clustering.point_clustering`; ``embedding_radius`` is needed without a
            foreground).
        clustering_kwargs: extra keyword arguments of the clustering function (``strides``, ``min_size``, ... for
            the Mutex Watershed; ``min_distance``, ``boundary_threshold``, ``distance_weight``, ``min_size``,
            ``element_size`` for the seeded watershed; ``min_size`` is required by HDBSCAN; ``threshold``,
            ``min_distance``, ``embedding_radius``, ``min_size`` for ``"points"``); no per-voxel arrays
            such as ``mask``, since each block is clustered on its own. Lists are stored as tuples.
        offsets: Mutex Watershed offsets, the first ``len(roi_size)`` attractive; ``None`` for
            :func:`~spoco_monai.clustering.default_offsets`. With ``"affinities"`` each must be shorter than the
            window.
        affinity_delta_dist: the width ``delta_d`` of the affinity kernel, see
            :func:`~spoco_monai.clustering.embeddings_to_affinities` (the bundle's ``affinity_delta_dist``, by default
            the loss's push margin ``delta_dist``).
        foreground: where the objects may be; the clustering labels only these voxels (a mask inside the
            clustering): ``None`` everywhere; ``"network"`` where the probability of the network's last output
            channel (a foreground logit, see ``SpocoLoss``'s ``foreground_weight``) is above
            ``foreground_threshold`` (not with ``clustering="points"``, whose last channel is its localisation map);
            ``"intensity"``
            where the image (mean over channels) is above its Otsu threshold over the whole volume (bright objects
            on a dark background). Isolated pieces smaller than ``min_size`` are dropped.
        foreground_threshold: the foreground probability above which a voxel belongs to the objects with
            ``foreground="network"``, in (0, 1). 0.5 is the classifier's own boundary; a model whose foreground
            channel spreads into the background is better cut higher (chosen per model on validation data).
        whole_image_max_voxels: when the image, rounded up to a multiple of 32 voxels per axis, has at most this
            many voxels, the network sees it as one window of that size (no window seams); ``None`` always uses
            ``roi_size`` windows.
        normalize: feed the network ``(image - mean) / std`` with the whole volume's mean and standard deviation
            (MONAI's ``NormalizeIntensity`` defaults: all voxels and channels); ``False`` feeds the values as given.
        sw_batch_size: windows per forward pass.
        sigma_scale: Gaussian sigma of the window importance map relative to the window size.
        iou_threshold: two blocks' labels in their overlap are the same object above this IoU, in [0.5, 1).
        test_time_flips: also run every window mirrored along each combination of its axes and average the
            passes' affinities (``blend="affinities"`` only; see :func:`~.window_blending.blend_windows`). It costs
            4 (2D) or 8 (3D) times the network's time; on generated membrane volumes it placed cell borders
            more exactly (``bench/RESULTS.md``, "Default model").
        device: device of the network's input and the blending buffers; ``None`` for the device of the network's
            parameters (CPU for a network without any).
        localization: the network's last output channel is a localisation logit (a network trained from clicks,
            ``points_model.json``): the windows blend its probability as one more channel, which ``"points"`` seeds
            from and the other clusterings leave out (``"watershed"`` then seeds at the foreground's distance
            maxima instead). ``clustering="points"`` implies it.

    Raises:
        ValueError: for an invalid value; the message names the setting and the value.
    """

    roi_size: Sequence[int]
    overlap: float = 0.5
    block_shape: Sequence[int] | int | None = None
    halo: Sequence[int] | int | None = None
    blend: str = "affinities"
    clustering: str = "mws"
    clustering_kwargs: Mapping[str, Any] | None = None
    offsets: Sequence[Sequence[int]] | None = None
    affinity_delta_dist: float = 2.0
    foreground: str | None = None
    foreground_threshold: float = 0.5
    whole_image_max_voxels: int | None = None
    normalize: bool = False
    sw_batch_size: int = 1
    sigma_scale: float = 0.125
    iou_threshold: float = 0.5
    test_time_flips: bool = False
    device: str | torch.device | None = None
    localization: bool = False

    def __post_init__(self) -> None:
        dims = len(self.roi_size)
        if dims not in (2, 3):
            raise ValueError(f"roi_size must have 2 or 3 values (the spatial dimensions), got {tuple(self.roi_size)}.")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}.")
        if self.blend not in BLENDS:
            raise ValueError(f"blend must be one of {BLENDS}, got {self.blend!r}.")
        if self.clustering not in CLUSTERINGS:
            raise ValueError(f"clustering must be one of {CLUSTERINGS}, got {self.clustering!r}.")
        if self.blend == "affinities" and self.clustering not in AFFINITY_CLUSTERINGS:
            raise ValueError(
                f"blend 'affinities' clusters with one of {AFFINITY_CLUSTERINGS}; got clustering={self.clustering!r}."
            )
        unknown = sorted(set(dict(self.clustering_kwargs or {})) - CLUSTERING_OPTIONS[self.clustering])
        if unknown:
            raise ValueError(
                f"clustering_kwargs {unknown} are not options of clustering {self.clustering!r}; its options are "
                f"{sorted(CLUSTERING_OPTIONS[self.clustering])}."
            )
        if self.clustering == "hdbscan" and not hdbscan_installed():
            raise ValueError(HDBSCAN_MISSING)
        if self.clustering == "watershed" and "min_distance" not in dict(self.clustering_kwargs or {}):
            raise ValueError(
                "clustering 'watershed' needs clustering_kwargs['min_distance'] (about the objects' radius in voxels)."
            )
        if self.foreground is not None and self.foreground not in FOREGROUNDS:
            raise ValueError(f"foreground must be None or one of {FOREGROUNDS}, got {self.foreground!r}.")
        if not isinstance(self.localization, bool):
            raise ValueError(f"localization must be True or False, got {self.localization!r}.")
        if self.localization and self.foreground == "network":
            raise ValueError(
                "a localisation channel is the network's last channel, which foreground 'network' would read as a "
                "foreground; use foreground None or 'intensity'."
            )
        if self.clustering == "points":
            _check_point_options(dict(self.clustering_kwargs or {}), self.foreground)
        if not 0 < self.foreground_threshold < 1:
            raise ValueError(f"foreground_threshold must be in (0, 1), got {self.foreground_threshold!r}.")
        if self.whole_image_max_voxels is not None and not self.whole_image_max_voxels >= 1:
            raise ValueError(f"whole_image_max_voxels must be None or >= 1, got {self.whole_image_max_voxels!r}.")
        if not isinstance(self.normalize, bool):
            raise ValueError(f"normalize must be True or False, got {self.normalize!r}.")
        if not isinstance(self.test_time_flips, bool):
            raise ValueError(f"test_time_flips must be True or False, got {self.test_time_flips!r}.")
        if self.test_time_flips and self.blend != "affinities":
            raise ValueError("test_time_flips averages affinities; it needs blend 'affinities', got 'embeddings'.")
        if not (isinstance(self.sw_batch_size, int) and self.sw_batch_size >= 1):
            raise ValueError(f"sw_batch_size must be a positive integer, got {self.sw_batch_size!r}.")
        if not self.sigma_scale > 0:
            raise ValueError(f"sigma_scale must be positive, got {self.sigma_scale!r}.")
        if not 0.5 <= self.iou_threshold < 1:
            raise ValueError(
                f"iou_threshold must be in [0.5, 1) so that matches are one-to-one, got {self.iou_threshold}."
            )
        offsets = default_offsets(dims) if self.offsets is None else self.offsets
        offsets = tuple(tuple(int(v) for v in offset) for offset in offsets)
        if not offsets or any(len(offset) != dims for offset in offsets):
            raise ValueError(f"offsets must be a non-empty list of offsets with {dims} values each, got {offsets}.")
        options = {
            key: tuple(value) if isinstance(value, list) else value
            for key, value in dict(self.clustering_kwargs or {}).items()
        }
        if "min_distance" in options and self.clustering == "points":
            # the command line gives numbers as floats; the peak search takes whole pixels
            options["min_distance"] = int(options["min_distance"])
        normalised = {
            "roi_size": positive_ints(self.roi_size, dims, "roi_size"),
            "block_shape": None if self.block_shape is None else positive_ints(self.block_shape, dims, "block_shape"),
            "halo": None if self.halo is None else positive_ints(self.halo, dims, "halo"),
            "overlap": float(self.overlap),
            "affinity_delta_dist": float(self.affinity_delta_dist),
            "foreground_threshold": float(self.foreground_threshold),
            "sigma_scale": float(self.sigma_scale),
            "iou_threshold": float(self.iou_threshold),
            "offsets": offsets,
            "clustering_kwargs": MappingProxyType(options),
            "device": None if self.device is None else torch.device(self.device),
        }
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        # the read-only view of clustering_kwargs cannot be pickled (nor deep-copied); its dict can
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["clustering_kwargs"] = dict(self.clustering_kwargs)
        return _from_values, (values,)

    @property
    def spatial_dims(self) -> int:
        """2 or 3."""
        return len(self.roi_size)

    @property
    def logit_channel(self) -> bool:
        """Whether the network's last output channel is a logit, not an embedding.

        It is a foreground (``foreground="network"``) or a localisation map (``localization``, or
        ``clustering="points"``); the windows blend its sigmoid as one more, last channel of the prediction.
        """
        return self.foreground == "network" or self.has_localization

    @property
    def has_localization(self) -> bool:
        """Whether the network's last output channel is a localisation map."""
        return self.localization or self.clustering == "points"

    def fingerprint(self) -> dict[str, Any]:
        """The settings that decide the labels, JSON-serialisable (the device is left out: it does not)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "device"}
        values["clustering_kwargs"] = repr(sorted(self.clustering_kwargs.items()))
        return values


def _check_point_options(options: dict[str, Any], foreground: str | None) -> None:
    if foreground == "network":
        raise ValueError(
            "clustering 'points' reads the network's last channel as its localisation map, which foreground "
            "'network' would read as a foreground; use foreground None or 'intensity'."
        )
    if foreground is None and "embedding_radius" not in options:
        raise ValueError(
            "clustering 'points' without a foreground needs clustering_kwargs['embedding_radius'] (about delta_var "
            "of the loss), or every pixel joins the object of some seed."
        )
    if "threshold" in options:
        check_open_unit_interval("clustering_kwargs['threshold']", options["threshold"])
    if "embedding_radius" in options:
        check_positive("clustering_kwargs['embedding_radius']", options["embedding_radius"])
    distance = options.get("min_distance", 1)
    whole = not isinstance(distance, bool) and isinstance(distance, (int, float)) and distance == int(distance)
    if not (whole and distance >= 1):
        raise ValueError(f"clustering_kwargs['min_distance'] must be a whole number >= 1, got {distance!r}.")


def _from_values(values: dict[str, Any]) -> SegmentationSettings:
    return SegmentationSettings(**values)
