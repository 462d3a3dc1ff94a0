"""Re-choose a trained model's clustering scale on the user's own annotated objects.

The affinity of two voxels, ``[1 - ||e_i - e_j|| / (2 delta_d)]_+^2``, depends on how far apart the network places
different objects; fine-tuning moves them, and the Mutex Watershed is sensitive to the scale (on the EM volume of
``bench/own_volume.py`` a shipped model scores adapted Rand error 0.32 with its ``delta_d`` 3.0, 0.60 with 2.0 and
0.56 with 4.0). Dense labels to re-tune it on are exactly what a user of sparse labels does not have, so the
choice is scored on annotated objects the training did not see (a hold-out): each should come out as one segment of
its own (:func:`~spoco_monai.metrics.annotated_rand_error`), which penalises splitting it and merging it with its
unlabeled neighbours alike. Objects the network was trained on are no judges: it fits them, so they stay whole even
at scales that split every other object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import torch

from spoco_monai.inferers.segment_volume import segment_volume
from spoco_monai.inferers.settings import AFFINITY_CLUSTERINGS, SegmentationSettings
from spoco_monai.metrics.annotated_objects import annotated_rand_error
from spoco_monai.training.annotations import AnnotatedVolume

__all__ = ["AFFINITY_DELTA_DIST_FACTORS", "choose_affinity_delta_dist"]

# the candidates, as factors of the model's own delta_d
AFFINITY_DELTA_DIST_FACTORS = (0.67, 0.83, 1.0, 1.17, 1.33)


def choose_affinity_delta_dist(
    network: Callable[[torch.Tensor], torch.Tensor],
    settings: SegmentationSettings,
    volumes: Sequence[AnnotatedVolume],
    judges: Sequence[np.ndarray],
    factors: Sequence[float] = AFFINITY_DELTA_DIST_FACTORS,
) -> tuple[float, dict[float, float]]:
    """The ``affinity_delta_dist`` among ``factors`` x the settings' under which the judging objects come out best.

    Args:
        network: the trained network, in eval mode.
        settings: the model's segmentation settings (an affinity clustering).
        volumes: the annotated volumes (their whole images are segmented once per candidate).
        judges: per volume, labels of its spatial shape holding only the objects to judge by (id > 0), e.g. the
            annotated objects held out of training; a volume without any is skipped.
        factors: candidates as factors of ``settings.affinity_delta_dist``; ties keep the one nearest to 1.

    Returns:
        the chosen ``affinity_delta_dist`` and every candidate's mean annotated-object Rand error over the judged
        volumes.

    Raises:
        ValueError: the settings' clustering does not use affinities (HDBSCAN clusters embeddings directly).
    """
    if settings.clustering not in AFFINITY_CLUSTERINGS:
        raise ValueError(
            f"only the affinity clusterings {AFFINITY_CLUSTERINGS} have a affinity_delta_dist to choose, found "
            f"{settings.clustering!r}."
        )
    judged = [(volume, judge) for volume, judge in zip(volumes, judges) if (judge > 0).any()]
    if not judged:
        raise ValueError("no volume holds an object to judge the clustering scale by.")
    scores = {}
    for factor in sorted(factors, key=lambda f: abs(f - 1.0)):
        candidate = round(settings.affinity_delta_dist * factor, 3)
        trial = dataclasses.replace(settings, affinity_delta_dist=candidate)
        scores[candidate] = float(
            np.mean(
                [
                    annotated_rand_error(segment_volume(volume.image, network, trial, progress=False), judge)
                    for volume, judge in judged
                ]
            )
        )
    best = min(scores, key=scores.get)
    return best, dict(sorted(scores.items()))
