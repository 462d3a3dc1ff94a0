"""Sparse overlap (contingency) table of two label images: the one pass over the pixels behind every metric."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np
import torch
from monai.utils import convert_to_tensor

LabelArray = Union[np.ndarray, torch.Tensor]

IGNORE_LABEL = -1
_INT64_MAX = int(np.iinfo(np.int64).max)


@dataclass(frozen=True)
class LabelOverlap:
    """Non-empty cells of the contingency table of a ground-truth and a predicted label image.

    Label 0 is kept as an ordinary row/column; each metric decides how to treat it.

    Attributes:
        gt_ids: (G,) int64, sorted ids present in the ground truth (may include 0).
        pred_ids: (P,) int64, sorted ids present in the prediction (may include 0).
        gt_sizes: (G,) float64, pixels per ground-truth id.
        pred_sizes: (P,) float64, pixels per predicted id.
        gt_index: (K,) int64, row (index into ``gt_ids``) of each non-empty cell.
        pred_index: (K,) int64, column (index into ``pred_ids``) of each non-empty cell.
        counts: (K,) float64, pixels in each non-empty cell (intersection sizes).
    """

    gt_ids: np.ndarray
    pred_ids: np.ndarray
    gt_sizes: np.ndarray
    pred_sizes: np.ndarray
    gt_index: np.ndarray
    pred_index: np.ndarray
    counts: np.ndarray

    @property
    def n_gt_objects(self) -> int:
        """Number of ground-truth objects (ids other than 0)."""
        return int(np.count_nonzero(self.gt_ids))

    @property
    def n_pred_objects(self) -> int:
        """Number of predicted objects (ids other than 0)."""
        return int(np.count_nonzero(self.pred_ids))

    def object_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cells where both ids are objects (not 0).

        Returns:
            ``(gt_index, pred_index, counts)``, each of shape (K',).
        """
        keep = (self.gt_ids[self.gt_index] != 0) & (self.pred_ids[self.pred_index] != 0)
        return self.gt_index[keep], self.pred_index[keep], self.counts[keep]

    def object_iou(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Intersection over union of every overlapping (ground-truth object, predicted object) pair.

        Returns:
            ``(gt_index, pred_index, iou)``, each of shape (K',).
        """
        gt_index, pred_index, counts = self.object_pairs()
        union = self.gt_sizes[gt_index] + self.pred_sizes[pred_index] - counts
        return gt_index, pred_index, counts / union


def as_label_tensor(labels: LabelArray, name: str) -> torch.Tensor:
    """Check that ``labels`` is an integer label array and return it as a plain int64 tensor on its device.

    Args:
        labels: integer ``np.ndarray`` or ``torch.Tensor`` of any shape.
        name: argument name used in error messages.

    Raises:
        TypeError: when ``labels`` is not a numpy array / torch tensor or not integer-typed.
        ValueError: when an unsigned 64-bit id does not fit into int64.
    """
    if isinstance(labels, torch.Tensor):
        tensor = convert_to_tensor(labels, track_meta=False).detach()
        if tensor.dtype == torch.bool or tensor.dtype.is_floating_point or tensor.dtype.is_complex:
            raise TypeError(
                f"{name} must be an integer label tensor, got dtype {tensor.dtype}; cast label images to an integer "
                "dtype, e.g. with monai.transforms.CastToTyped(keys, dtype=torch.int64)."
            )
        return tensor.to(torch.int64)
    if isinstance(labels, np.ndarray):
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"{name} must be an integer label array, got dtype {labels.dtype}.")
        if labels.dtype == np.uint64 and labels.size and int(labels.max()) > _INT64_MAX:
            raise ValueError(f"{name} ids must fit into int64, got a maximum id of {int(labels.max())}.")
        # a private copy: torch.from_numpy warns on read-only arrays (memory maps, zarr/HDF5 reads)
        return torch.from_numpy(np.array(labels, dtype=np.int64, order="C"))
    raise TypeError(f"{name} must be a numpy array or torch tensor of integer labels, got {type(labels).__name__}.")


def _unique_with_counts(values: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    # on CPU numpy's sort-based unique is about 3x faster than torch.unique; on CUDA the sort stays on the device
    if values.is_cuda:
        unique, counts = torch.unique(values, return_counts=True)
        return unique.cpu().numpy(), counts.cpu().numpy()
    return np.unique(values.numpy(), return_counts=True)


def label_overlap(pred: LabelArray, gt: LabelArray) -> LabelOverlap:
    """Build the sparse contingency table of ``gt`` (rows) against ``pred`` (columns).

    One sort of the joint (gt, pred) ids (on the input's device) gives every non-empty cell;
    object sizes are then sums over the small table, so the cost does not grow with the number of objects.
    Pixels where ``gt`` is ``-1`` (the ignore label) are left out entirely, from both images.

    Args:
        pred: predicted labels, integer array/tensor of shape S (any dimensionality); ids >= 0.
        gt: ground-truth labels of the same shape S; ids >= 0, or -1 for ignored pixels.

    Raises:
        TypeError: when an input is not an integer numpy array / torch tensor.
        ValueError: when the shapes differ, ``pred`` has negative ids or ``gt`` has negative ids other than -1.
    """
    pred_t = as_label_tensor(pred, "pred")
    gt_t = as_label_tensor(gt, "gt").to(pred_t.device)
    if pred_t.shape != gt_t.shape:
        raise ValueError(
            f"pred and gt must have the same shape, got pred {tuple(pred_t.shape)} and gt {tuple(gt_t.shape)}."
        )
    pred_t, gt_t = pred_t.reshape(-1), gt_t.reshape(-1)
    if pred_t.numel() and int(pred_t.min()) < 0:
        raise ValueError(f"pred ids must be >= 0, got a minimum id of {int(pred_t.min())}.")
    if gt_t.numel() and int(gt_t.min()) < 0:
        if int(gt_t.min()) < IGNORE_LABEL:
            raise ValueError(f"gt ids must be >= 0 or {IGNORE_LABEL} (ignore), got a minimum id of {int(gt_t.min())}.")
        keep = gt_t != IGNORE_LABEL
        pred_t, gt_t = pred_t[keep], gt_t[keep]
    if pred_t.numel() == 0:
        no_ids, no_sizes = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        return LabelOverlap(no_ids, no_ids, no_sizes, no_sizes, no_ids, no_ids, no_sizes)

    pred_base = int(pred_t.max()) + 1
    pred_lookup = gt_lookup = None
    if int(gt_t.max()) + 1 > _INT64_MAX // pred_base:
        # ids too large for a joint int64 code: code their ranks instead (two extra sorts, only in this case)
        pred_lookup, pred_t = torch.unique(pred_t, return_inverse=True)
        gt_lookup, gt_t = torch.unique(gt_t, return_inverse=True)
        pred_base = len(pred_lookup)
    codes, counts = _unique_with_counts(gt_t * pred_base + pred_t)
    counts = counts.astype(np.float64)
    cell_gt, cell_pred = np.divmod(codes, pred_base)
    if pred_lookup is not None:
        cell_gt, cell_pred = gt_lookup.cpu().numpy()[cell_gt], pred_lookup.cpu().numpy()[cell_pred]

    gt_ids, gt_index = np.unique(cell_gt, return_inverse=True)
    pred_ids, pred_index = np.unique(cell_pred, return_inverse=True)
    return LabelOverlap(
        gt_ids=gt_ids,
        pred_ids=pred_ids,
        gt_sizes=np.bincount(gt_index, weights=counts, minlength=len(gt_ids)),
        pred_sizes=np.bincount(pred_index, weights=counts, minlength=len(pred_ids)),
        gt_index=gt_index,
        pred_index=pred_index,
        counts=counts,
    )
