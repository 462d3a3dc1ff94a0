"""Choosing the weights and the clustering scale on annotated objects kept out of training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spoco_monai.inferers import SegmentationSettings
from spoco_monai.training.annotations import AnnotatedVolume
from spoco_monai.training.held_out_choice import choose_on_held_out

SHAPE = (16, 32)
# four vertical stripes, objects 1 to 4
LABELS = np.repeat(np.arange(1, 5), 8)[None, :].repeat(SHAPE[0], axis=0)


def separates(lookup):
    return lookup(10.0 * torch.eye(5))  # different objects 14 apart, far beyond 2 delta_d


def merges(lookup):
    return lookup(torch.zeros(5, 5))  # every voxel at one point


def volume() -> AnnotatedVolume:
    return AnnotatedVolume(LABELS.astype(np.float32), "labels", SHAPE, 1, 4, LABELS.size, 0, None)


def settings(clustering: str = "mws") -> SegmentationSettings:
    kwargs = {"min_size": 1} if clustering == "mws" else {"min_size": 4}
    blend = "affinities" if clustering == "mws" else "embeddings"
    return SegmentationSettings(
        SHAPE, blend=blend, clustering=clustering, clustering_kwargs=kwargs, normalize=False,
        offsets=((-1, 0), (0, -1), (-3, 0), (0, -3)), affinity_delta_dist=1.5,
    )


def test_the_network_that_keeps_the_held_out_object_whole_and_apart_is_chosen(lookup):
    judge = np.where(LABELS == 2, 2, 0)
    networks = {"trained": merges(lookup), "starting": separates(lookup)}
    choice = choose_on_held_out(networks, settings(), [volume()], [judge])
    assert choice.weights == "starting"
    # merged with its three neighbours: precision 1/4, recall 1, error 1 - 2 (1/4) / (5/4) = 0.6 at every scale
    assert choice.scores["trained"] == pytest.approx({1.005: 0.6, 1.245: 0.6, 1.5: 0.6, 1.755: 0.6, 1.995: 0.6})
    assert choice.scores["starting"] == {1.005: 0.0, 1.245: 0.0, 1.5: 0.0, 1.755: 0.0, 1.995: 0.0}
    # all scales tie: the model's own one (1.5) is kept
    assert choice.affinity_delta_dist == 1.5 and choice.error == 0.0


def test_a_tie_between_networks_keeps_the_first(lookup):
    judge = np.where(LABELS == 3, 3, 0)
    networks = {"trained": separates(lookup), "starting": separates(lookup)}
    choice = choose_on_held_out(networks, settings(), [volume()], [judge])
    assert choice.weights == "trained"


def test_a_clustering_without_affinities_compares_the_networks_at_its_own_settings(lookup):
    judge = np.where(LABELS == 1, 1, 0)
    networks = {"trained": merges(lookup), "starting": separates(lookup)}
    choice = choose_on_held_out(networks, settings("hdbscan"), [volume()], [judge])
    assert list(choice.scores["trained"]) == [1.5] and choice.weights == "starting"


def test_without_a_held_out_object_nothing_is_judged(lookup):
    with pytest.raises(ValueError, match="no volume holds an object to judge"):
        choose_on_held_out({"trained": separates(lookup)}, settings(), [volume()], [np.zeros(SHAPE, int)])
