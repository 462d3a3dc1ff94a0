from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from skimage.metrics import adapted_rand_error

from spoco_monai.clustering import make_synthetic_embeddings
from spoco_monai.transforms.cluster import Cluster, Clusterd


@pytest.fixture
def sample() -> tuple[np.ndarray, np.ndarray]:
    return make_synthetic_embeddings((32, 32), 4, noise_std=0.1, seed=0)


@pytest.mark.parametrize(
    "method, options", [("mws", {}), ("hdbscan", {"min_size": 50}), ("mean_shift", {"bandwidth": 0.5})]
)
def test_clusterd_on_a_dict_keeps_metadata(sample, method, options):
    embeddings, labels = sample
    affine = torch.diag(torch.tensor([2.0, 3.0, 1.0]))
    data = {"pred": MetaTensor(torch.from_numpy(embeddings), affine=affine), "image": "untouched"}
    out = Clusterd("pred", method=method, output_key="instances", **options)(data)
    segmentation = out["instances"]
    assert isinstance(segmentation, MetaTensor) and segmentation.dtype == torch.int64
    assert segmentation.shape == (1, 32, 32)
    assert torch.equal(segmentation.affine, affine)
    assert adapted_rand_error(labels, segmentation[0].numpy())[0] < 0.01
    assert out["pred"] is data["pred"] and out["image"] == "untouched"


def test_clusterd_in_place_with_numpy(sample):
    embeddings, labels = sample
    out = Clusterd("pred", min_size=5)({"pred": embeddings})
    assert isinstance(out["pred"], np.ndarray) and out["pred"].shape == (1, 32, 32)
    assert out["pred"].dtype == np.int64


def test_clusterd_consistency_with_teacher_key(sample):
    embeddings, labels = sample
    data = {"pred": torch.from_numpy(embeddings), "teacher": torch.from_numpy(embeddings.copy())}
    out = Clusterd("pred", method="consistency", teacher_key="teacher", output_key="seg")(data)
    assert adapted_rand_error(labels, out["seg"][0].numpy())[0] < 0.01


def test_clusterd_mask_key(sample):
    embeddings, labels = sample
    mask = torch.from_numpy(labels != 1)[None]
    out = Clusterd("pred", method="mean_shift", mask_key="fg")({"pred": torch.from_numpy(embeddings), "fg": mask})
    assert (out["pred"][~mask] == 0).all() and (out["pred"][mask] > 0).all()
    with pytest.raises(ValueError, match="either mask_key or a fixed mask"):
        Clusterd("pred", mask_key="fg", mask=mask[0])


def test_clusterd_missing_keys_allowed(sample):
    out = Clusterd(["pred", "other"], allow_missing_keys=True)({"pred": sample[0]})
    assert "other" not in out and out["pred"].shape == (1, 32, 32)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"method": "kmeans"}, ValueError, "method must be one of"),
        ({"method": "hdbscan"}, TypeError, "min_size"),
        ({"method": "mws", "bandwidth": 0.5}, TypeError, "do not fit method 'mws'"),
        ({"method": "consistency"}, ValueError, "needs teacher_key"),
        ({"method": "mws", "teacher_key": "teacher"}, ValueError, "takes no teacher_key"),
    ],
)
def test_invalid_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        Clusterd("pred", **kwargs)


def test_cluster_requires_teacher_only_for_consistency(sample):
    with pytest.raises(ValueError, match="needs teacher embeddings"):
        Cluster("consistency")(sample[0])
    with pytest.raises(ValueError, match="takes no teacher embeddings"):
        Cluster("mws")(sample[0], sample[0])
