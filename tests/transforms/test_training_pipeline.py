from __future__ import annotations

import json

import numpy as np
import torch
from monai.data import DataLoader, Dataset, MetaTensor
from monai.transforms import Compose

from spoco_monai.transforms import RandCropByLabeledInstancesd, SparseInstanceSamplingd, TwoViewIntensityAugmentd


def test_transforms_compose_into_batches_for_the_trainer() -> None:
    rng = np.random.default_rng(0)
    items = []
    for index in range(4):
        label = np.repeat(np.arange(1, 11), 40).reshape(1, 20, 20).astype(np.float32)  # as LoadImaged gives
        image = rng.normal(size=(1, 20, 20)).astype(np.float32)
        meta = {"filename_or_obj": f"/data/case_{index}.tif"}
        items.append({"image": MetaTensor(image, meta=dict(meta)), "label": MetaTensor(label, meta=dict(meta))})
    pipeline = Compose(
        [
            SparseInstanceSamplingd("label", 0.2, seed=1),
            RandCropByLabeledInstancesd(["image", "label"], "label", (8, 8), num_samples=2, pos=1.0),
            TwoViewIntensityAugmentd("image", prob=1.0),
        ]
    ).set_random_state(0)
    batch = next(iter(DataLoader(Dataset(items, transform=pipeline), batch_size=4)))
    assert batch["image"].shape == batch["image_view2"].shape == batch["label"].shape == (8, 1, 8, 8)
    kept = [json.loads(ids) for ids in batch["label"].meta["spoco_kept_ids"]]
    assert all(len(ids) == 2 for ids in kept)
    for label, ids in zip(batch["label"], kept):
        assert set(torch.unique(label).tolist()) <= {0, *ids} and torch.isin(label, torch.tensor(ids)).any()
