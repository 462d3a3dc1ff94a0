"""Point-level localisation loss of LCFCN (Laradji et al.): learn a blob per object from one click per object.

A localisation map is trained from clicks alone: it must be high at every click, low at background clicks, say
whether the image holds objects at all, split blobs that cover several clicks and remove blobs that cover none.
The blobs are the connected components of the map above 0.5; where they are and how they are split comes from
the current prediction (no gradient flows through those choices), and the terms then are cross-entropies of the
map at the chosen pixels, so the map's gradient is that of a per-pixel loss on targets that follow training.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.measure import label as connected_components
from skimage.segmentation import watershed
from torch import nn

from spoco_monai.validation import check_non_negative

__all__ = ["POINT_LOSS_TERMS", "SPLIT_MODES", "PointLocalizationLoss", "line_split", "watershed_split"]

#: keys of :attr:`PointLocalizationLoss.last_terms`
POINT_LOSS_TERMS = ("image", "point", "split", "false_positive")
#: how :class:`PointLocalizationLoss` separates the clicks of one blob
SPLIT_MODES = ("line", "watershed", "both")


def line_split(blobs: np.ndarray, clicks: np.ndarray) -> np.ndarray:
    """Weights of the pixels on the lines that split each blob between its clicks (LCFCN's line split).

    In every blob with n >= 2 clicks, each click is paired with the nearest other click of the blob (the first in
    raster order on a tie); for each pair, the blob's pixels within half a pixel of the perpendicular bisector of
    the two clicks (a line in 2D, a plane in 3D) get the weight n - 1 (the number of objects merged into the blob
    beyond the first). Pixels on several bisectors keep the largest weight.

    Args:
        blobs: ``S`` int blob labels (0 outside blobs).
        clicks: ``(N, ndim)`` int coordinates of the object clicks.

    Returns:
        ``S`` float64 weights, 0 off the split lines.
    """
    weights = np.zeros(blobs.shape, dtype=np.float64)
    click_blobs = blobs[tuple(clicks.T)] if len(clicks) else np.zeros(0, dtype=blobs.dtype)
    # bounded by the number of blobs with several clicks, and the pairs inside each
    for blob in np.unique(click_blobs[click_blobs > 0]):
        inside = clicks[click_blobs == blob].astype(np.float64)
        if len(inside) < 2:
            continue
        pixels = np.argwhere(blobs == blob)
        distances = np.linalg.norm(inside[:, None] - inside[None], axis=-1)
        np.fill_diagonal(distances, np.inf)
        pairs = {tuple(sorted((a, int(np.argmin(distances[a]))))) for a in range(len(inside))}
        for a, b in sorted(pairs):
            direction = (inside[b] - inside[a]) / distances[a, b]
            on_line = np.abs((pixels - (inside[a] + inside[b]) / 2) @ direction) <= 0.5
            where = tuple(pixels[on_line].T)
            weights[where] = np.maximum(weights[where], len(inside) - 1)
    return weights


def watershed_split(probabilities: np.ndarray, clicks: np.ndarray) -> np.ndarray:
    """The pixels where the basins of different clicks meet (LCFCN's watershed split), as 0/1 weights.

    A watershed of ``1 - probabilities`` over the whole image, one marker per object click, with watershed lines:
    the line pixels separate the clicks' regions along the valleys of the localisation map. Fewer than two clicks
    give no line.

    Args:
        probabilities: ``S`` localisation probabilities.
        clicks: ``(N, ndim)`` int coordinates of the object clicks.

    Returns:
        ``S`` float64 weights, 1 on the watershed lines.
    """
    if len(clicks) < 2:
        return np.zeros(probabilities.shape, dtype=np.float64)
    markers = np.zeros(probabilities.shape, dtype=np.int64)
    markers[tuple(clicks.T)] = np.arange(1, len(clicks) + 1)
    regions = watershed(1.0 - probabilities, markers, watershed_line=True)
    return (regions == 0).astype(np.float64)


class PointLocalizationLoss(nn.Module):
    """LCFCN's localisation loss: image-level, point-level, split-level and false-positive terms.

    Input: a localisation logit z per pixel (p = sigmoid(z)) and a point annotation image (object id > 0 at an
    object click, -1 at a background click, 0 elsewhere; :mod:`~spoco_monai.transforms.simulated_annotator`).
    Blobs are the connected components (full connectivity) of p > 0.5. Per sample, with BCE(z, 1) = -log p and
    BCE(z, 0) = -log(1 - p):

    - image: with object clicks, mean of BCE(max z, 1) and BCE(min z, 0) (some pixel is an object, some is not);
      without, BCE(max z, 0) (no pixel is an object);
    - point: mean over the clicks of BCE(z, 1) at object clicks and BCE(z, 0) at background clicks;
    - split: sum_i w_i BCE(z_i, 0) / #{i: w_i > 0}, over the pixels that separate clicks: :func:`line_split`
      (weight: the blob's clicks - 1), :func:`watershed_split` (weight 1), or both (the weights add up);
    - false_positive: mean of BCE(z, 0) over the pixels of the blobs without an object click.

    A term without target pixels in a sample is left out of that sample; each term is the mean over the samples
    that have it (0 when none has), and the loss is the weighted sum of the four. The paper sums the
    cross-entropies over pixels; the means here keep every term near the scale of the embedding terms whatever the
    patch and blob sizes. Computed in float32 (float64 for float64 logits), also under autocast.

    Laradji, Rostamzadeh, Pinheiro, Vazquez, Schmidt, "Where are the Blobs: Counting by Localization with Point
    Supervision", ECCV 2018; used for instance segmentation from points in WISE (Laradji et al., "Instance
    Segmentation with Point Supervision", 2019).

    Args:
        image_weight, point_weight, split_weight, false_positive_weight: weights of the terms, >= 0.
        split: ``"line"``, ``"watershed"`` or ``"both"``.

    Raises:
        TypeError, ValueError: a weight that is not a real number >= 0, or an unknown ``split``.
    """

    def __init__(
        self,
        image_weight: float = 1.0,
        point_weight: float = 1.0,
        split_weight: float = 1.0,
        false_positive_weight: float = 1.0,
        split: str = "both",
    ) -> None:
        super().__init__()
        if split not in SPLIT_MODES:
            raise ValueError(f"split must be one of {SPLIT_MODES}, found {split!r}.")
        self.weights = {
            name: check_non_negative(f"{name}_weight", value)
            for name, value in zip(POINT_LOSS_TERMS, (image_weight, point_weight, split_weight, false_positive_weight))
        }
        self.split = split
        self.last_terms: dict[str, float] = dict.fromkeys(POINT_LOSS_TERMS, 0.0)

    def forward(self, logits: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            logits: (B, 1, *S) or (B, *S) localisation logits, S with 2 or 3 axes.
            points: (B, 1, *S) or (B, *S) integer point annotation (> 0 object click, -1 background, 0 none).

        Returns:
            Scalar loss in float32 (float64 for float64 logits).

        Raises:
            TypeError: non-floating logits or non-integer points.
            ValueError: shapes that do not match, or point values below -1.
        """
        logits, points = self._check(logits, points)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits = logits if logits.dtype == torch.float64 else logits.float()
            per_sample: dict[str, list[torch.Tensor]] = {name: [] for name in POINT_LOSS_TERMS}
            # one sample at a time: blobs and splits are connected components and watersheds on the CPU
            for z, annotation in zip(logits, points):
                for name, value in self._sample_terms(z, annotation).items():
                    per_sample[name].append(value)
            zero = logits.sum() * 0.0
            terms = {name: torch.stack(values).mean() if values else zero for name, values in per_sample.items()}
        self.last_terms = {name: float(value.detach()) for name, value in terms.items()}
        return sum(self.weights[name] * terms[name] for name in POINT_LOSS_TERMS)

    def _sample_terms(self, z: torch.Tensor, annotation: torch.Tensor) -> dict[str, torch.Tensor]:
        """The terms one sample has, from its ``S`` logits and annotation."""
        terms = {}
        objects = annotation > 0
        has_objects = bool(objects.any())
        if has_objects:
            terms["image"] = (F.softplus(-z.max()) + F.softplus(z.min())) / 2
        else:
            terms["image"] = F.softplus(z.max())
        background = annotation == -1
        clicked = objects | background
        if bool(clicked.any()):
            terms["point"] = torch.where(objects, F.softplus(-z), F.softplus(z))[clicked].mean()
        probabilities = torch.sigmoid(z.detach()).cpu().numpy()
        labels = annotation.cpu().numpy()
        blobs = connected_components(probabilities > 0.5, connectivity=labels.ndim)
        clicks = np.argwhere(labels > 0)
        weights = np.zeros(labels.shape, dtype=np.float64)
        if self.split in ("line", "both"):
            weights += line_split(blobs, clicks)
        if self.split in ("watershed", "both"):
            weights += watershed_split(probabilities, clicks)
        if bool((weights > 0).any()):
            w = torch.from_numpy(weights).to(z)
            terms["split"] = (w * F.softplus(z)).sum() / (w > 0).sum()
        clicked_blobs = np.unique(blobs[labels > 0])
        unclicked = (blobs > 0) & ~np.isin(blobs, clicked_blobs[clicked_blobs > 0])
        if bool(unclicked.any()):
            terms["false_positive"] = F.softplus(z)[torch.from_numpy(unclicked).to(z.device)].mean()
        return terms

    @staticmethod
    def _check(logits: object, points: object) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, *S) logits and int64 points, validated."""
        if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
            raise TypeError(f"logits must be a floating point tensor, found {getattr(logits, 'dtype', type(logits))}.")
        if not isinstance(points, torch.Tensor) or points.is_floating_point() or points.dtype == torch.bool:
            raise TypeError(
                "points must be an integer tensor (> 0 object click, -1 background click, 0 none), found "
                f"{getattr(points, 'dtype', type(points).__name__)}."
            )
        if logits.ndim in (4, 5) and logits.shape[1] == 1:
            logits = logits[:, 0]
        if points.ndim in (4, 5) and points.shape[1] == 1:
            points = points[:, 0]
        if logits.ndim not in (3, 4) or points.shape != logits.shape:
            raise ValueError(
                f"expected logits and points of shape (B, 1, *S) or (B, *S) with 2 or 3 spatial axes and equal, "
                f"found logits {tuple(logits.shape)} and points {tuple(points.shape)}."
            )
        if points.numel() and int(points.min()) < -1:
            raise ValueError(f"point values must be >= -1 (-1 = background click), found {int(points.min())}.")
        return logits, points.to(torch.int64)
