"""Consistency clustering: mean-shift clusters kept only when a second view's embeddings agree."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from bioimage_cpp.segmentation import relabel_sequential

from spoco_monai.validation import check_positive, check_unit_interval

from .background import drop_background_segment
from .inputs import check_background_embedding, check_embeddings, check_mask
from .mean_shift import mean_shift_clustering
from .points import MAX_BLOCK_ELEMENTS, foreground_points


def consistency_clustering(
    embeddings_f: np.ndarray | torch.Tensor,
    embeddings_g: np.ndarray | torch.Tensor,
    bandwidth: float = 0.5,
    iou_threshold: float = 0.6,
    n_anchors: int = 10,
    max_iou_samples: int | None = 100000,
    mask: np.ndarray | torch.Tensor | None = None,
    background_embedding: np.ndarray | torch.Tensor | None = None,
    seed: int = 0,
    **mean_shift_options: Any,
) -> np.ndarray:
    """Mean-shift clusters of ``f`` that the embeddings of ``g`` (a second network or view) confirm.

    As in SPOCO (method.md): mean-shift with ``bandwidth = delta_v`` on ``embeddings_f``; for each cluster,
    ``n_anchors`` of its pixels are drawn (seeded) and each anchor's ``delta_v``-neighbourhood in
    ``embeddings_g`` (pixels whose g-embedding lies within ``bandwidth`` of the anchor's) is compared with
    the cluster. Clusters whose median IoU over their anchors is below ``iou_threshold`` are set to 0.
    The IoUs are counted on a seeded uniform subsample of at most ``max_iou_samples`` pixels (a ratio of
    counts, so the subsample estimates it without bias), which keeps 3D volumes tractable; a cluster
    without any pixel in the subsample has no evidence against it and is kept.

    Args:
        embeddings_f: ``(E, *S)`` embeddings of the student network f (float array or tensor).
        embeddings_g: ``(E', *S)`` embeddings of the teacher g on a second view, same spatial shape.
        bandwidth: ``delta_v``: mean-shift bandwidth and neighbourhood radius in g.
        iou_threshold: minimum median IoU for a cluster to be kept, in [0, 1].
        n_anchors: anchors per cluster (fewer for clusters with fewer pixels).
        max_iou_samples: pixels the IoUs are counted on, or None for all of them.
        mask: optional ``S`` boolean foreground mask; other pixels are 0.
        background_embedding: optional ``(E,)`` background reference in f's space; the closest segment
            is set to 0 (:func:`drop_background_segment`). Off by default.
        seed: seed of mean-shift and of the anchors.
        **mean_shift_options: further options of :func:`mean_shift_clustering` (kernel, max_iter, ...).

    Returns:
        int64 labels of shape ``S``, consecutive from 1, 0 for dropped clusters and outside ``mask``.

    Raises:
        TypeError, ValueError: for invalid embeddings, mismatching shapes, mask or parameters.
    """
    check_embeddings(embeddings_f, "embeddings_f")
    check_embeddings(embeddings_g, "embeddings_g")
    if tuple(embeddings_f.shape[1:]) != tuple(embeddings_g.shape[1:]):
        raise ValueError(
            "embeddings_f and embeddings_g must have the same spatial shape, got "
            f"{tuple(embeddings_f.shape[1:])} and {tuple(embeddings_g.shape[1:])}."
        )
    check_unit_interval("iou_threshold", iou_threshold)
    check_positive("n_anchors", n_anchors)
    if max_iou_samples is not None:
        check_positive("max_iou_samples", max_iou_samples)
    mask = check_mask(mask, embeddings_f.shape[1:])
    check_background_embedding(background_embedding, embeddings_f.shape[0])
    labels = mean_shift_clustering(embeddings_f, bandwidth, mask=mask, seed=seed, **mean_shift_options)
    points_g, flat_index = foreground_points(embeddings_g, mask)
    point_labels = torch.from_numpy(labels.reshape(-1)).to(points_g.device)[flat_index]
    sample = torch.randperm(flat_index.numel(), generator=torch.Generator().manual_seed(seed))[:max_iou_samples]
    sample = sample.to(points_g.device)
    median_iou = _median_anchor_iou(
        points_g[sample], point_labels[sample], int(labels.max()), bandwidth, n_anchors, seed
    )
    # index 0 (unlabeled) always maps to 0; a NaN median (no anchor) does not drop the cluster
    keep = torch.cat([median_iou.new_zeros(1, dtype=torch.bool), ~(median_iou < iou_threshold)]).cpu().numpy()
    labels = relabel_sequential(np.where(keep[labels], labels, 0))[0]
    if background_embedding is not None:
        labels = drop_background_segment(labels, embeddings_f, background_embedding)
    return labels


def _median_anchor_iou(
    points: torch.Tensor, point_labels: torch.Tensor, n_clusters: int, radius: float, n_anchors: int, seed: int
) -> torch.Tensor:
    """Median over each cluster's anchors of IoU(neighbourhood of the anchor in ``points``, cluster).

    Returns:
        ``(n_clusters,)`` medians for the labels ``1..n_clusters``; NaN for a cluster without points.
    """
    if n_clusters == 0:
        return points.new_zeros(0)
    generator = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(point_labels.numel(), generator=generator).to(points.device)
    # a stable sort by label of a random permutation lists each cluster's pixels in random order
    by_cluster = shuffled[torch.argsort(point_labels[shuffled], stable=True)]
    sorted_labels = point_labels[by_cluster]
    cluster_sizes = torch.bincount(point_labels, minlength=n_clusters + 1)
    cluster_start = torch.cumsum(cluster_sizes, 0) - cluster_sizes
    rank = torch.arange(by_cluster.numel(), device=points.device) - cluster_start[sorted_labels]
    chosen = (rank < n_anchors) & (sorted_labels > 0)
    anchors, anchor_labels, anchor_rank = by_cluster[chosen], sorted_labels[chosen], rank[chosen]
    anchor_points = points[anchors]
    neighbourhood = torch.zeros(anchors.numel(), device=points.device)
    intersection = torch.zeros_like(neighbourhood)
    block = max(1, MAX_BLOCK_ELEMENTS // max(1, anchors.numel()))
    for start in range(0, points.shape[0], block):
        within = torch.cdist(anchor_points, points[start : start + block]) < radius
        neighbourhood += within.sum(dim=1)
        intersection += (within & (point_labels[start : start + block][None] == anchor_labels[:, None])).sum(dim=1)
    iou = intersection / (neighbourhood + cluster_sizes[anchor_labels] - intersection)
    per_cluster = torch.full((n_clusters, n_anchors), torch.nan, device=points.device)
    per_cluster[anchor_labels - 1, anchor_rank] = iou
    return torch.nanmedian(per_cluster, dim=1).values
