"""Choose a trained model's weights and clustering scale on the user's own annotated objects kept out of training.

Dense labels to tune on are exactly what a user of sparse labels does not have, so both choices are scored on
annotated objects the training did not see (a hold-out): each should come out as one segment of its own
(:func:`~spoco_monai.metrics.annotated_rand_error`), which penalises splitting it and merging it with its unlabeled
neighbours alike. Objects the network was trained on are no judges: it fits them, so they stay whole even at scales
that split every other object.

- **The scale.** The affinity of two voxels, ``[1 - ||e_i - e_j|| / (2 delta_d)]_+^2``, depends on how far apart the
  network places different objects; fine-tuning moves them, and the Mutex Watershed is sensitive to the scale (on
  the EM volume of ``bench/own_volume.py`` the shipped model scores adapted Rand error 0.28 with its ``delta_d``
  2.5, 0.63 with 2.0 and 0.43 with 3.0).
- **The weights.** A few annotated objects can also make a fine-tune worse than the model it started from (on that
  volume one annotator's 8 neurons took the shipped model from 0.28 to 0.45, split at every scale). The starting
  weights are judged with the trained ones, and the better of the two is kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from spoco_monai.inferers.segment_volume import segment_volume
from spoco_monai.inferers.settings import AFFINITY_CLUSTERINGS, SegmentationSettings
from spoco_monai.metrics.annotated_objects import annotated_rand_error
from spoco_monai.training.annotations import AnnotatedVolume

__all__ = ["AFFINITY_DELTA_DIST_FACTORS", "HeldOutChoice", "choose_on_held_out"]

# the candidate scales, as factors of the model's own delta_d
AFFINITY_DELTA_DIST_FACTORS = (0.67, 0.83, 1.0, 1.17, 1.33)


@dataclass(frozen=True)
class HeldOutChoice:
    """What the held-out objects chose.

    Attributes:
        weights: the name of the chosen network.
        affinity_delta_dist: the chosen scale (the settings' own for a clustering without affinities).
        scores: per network name, per candidate scale, the held-out objects' mean annotated Rand error.
    """

    weights: str
    affinity_delta_dist: float
    scores: dict[str, dict[float, float]]

    @property
    def error(self) -> float:
        """The chosen candidate's score."""
        return self.scores[self.weights][self.affinity_delta_dist]


def choose_on_held_out(
    networks: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
    settings: SegmentationSettings,
    volumes: Sequence[AnnotatedVolume],
    judges: Sequence[np.ndarray],
    factors: Sequence[float] = AFFINITY_DELTA_DIST_FACTORS,
) -> HeldOutChoice:
    """The network and ``affinity_delta_dist`` (among ``factors`` x the settings') under which the judging objects
    come out best.

    Args:
        networks: candidate networks by name, in eval mode; on a tie the earlier one wins.
        settings: the model's segmentation settings.
        volumes: the annotated volumes (their whole images are segmented once per candidate).
        judges: per volume, labels of its spatial shape holding only the objects to judge by (id > 0), e.g. the
            annotated objects held out of training; a volume without any is skipped.
        factors: candidate scales as factors of ``settings.affinity_delta_dist``; on a tie the one nearest to 1
            wins. A clustering without affinities (HDBSCAN clusters embeddings directly) keeps its settings and
            only the networks are compared.

    Returns:
        the choice, with every candidate's score.

    Raises:
        ValueError: no network is given, or no volume holds an object to judge by.
    """
    if not networks:
        raise ValueError("no network to choose from.")
    judged = [(volume, judge) for volume, judge in zip(volumes, judges) if (judge > 0).any()]
    if not judged:
        raise ValueError("no volume holds an object to judge the weights and the clustering scale by.")
    own = settings.affinity_delta_dist
    scales = sorted({round(own * factor, 3) for factor in factors}, key=lambda scale: abs(scale - own))
    if settings.clustering not in AFFINITY_CLUSTERINGS:
        scales = [own]
    scores: dict[str, dict[float, float]] = {}
    for name, network in networks.items():
        scores[name] = {}
        for scale in scales:
            trial = dataclasses.replace(settings, affinity_delta_dist=scale)
            errors = [
                annotated_rand_error(segment_volume(volume.image, network, trial, progress=False), judge)
                for volume, judge in judged
            ]
            scores[name][scale] = float(np.mean(errors))
    # min keeps the first of equal scores: the earlier network, then the scale nearest the model's
    weights, scale = min(((name, scale) for name in scores for scale in scales), key=lambda pair: scores[pair[0]][pair[1]])
    return HeldOutChoice(weights, scale, {name: dict(sorted(table.items())) for name, table in scores.items()})
