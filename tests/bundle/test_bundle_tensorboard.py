from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bundle_workflow import workflow

pytestmark = pytest.mark.slow


def test_training_logs_loss_terms_learning_rate_and_embedding_pictures(tiny_dataset, tmp_path):
    flow = workflow(
        ("train",), dataset_dir=str(tiny_dataset), output_dir=str(tmp_path), run_validation=False, learning_rate=0.003
    )
    flow.run()
    scalars, images = {}, {}
    for path in sorted(tmp_path.glob("events.out.tfevents.*")):
        events = EventAccumulator(str(path)).Reload()
        scalars.update({tag: events.Scalars(tag) for tag in events.Tags()["scalars"]})
        images.update({tag: events.Images(tag) for tag in events.Tags()["images"]})
    assert {"loss", "loss_pull", "loss_consistency", "learning_rate"} <= set(scalars)
    # one epoch of two iterations: the cosine schedule steps after the last one
    assert [(event.step, event.value) for event in scalars["learning_rate"]] == [
        (1, pytest.approx(0.003)), (2, pytest.approx(0.003))
    ]
    assert set(images) == {"embedding_pca", "embedding_pca_input"}
    # image_log_interval defaults to val_interval (2); the picture is the middle Z slice of a (16, 24, 24) patch
    for tag in images:
        assert [(event.step, event.height, event.width) for event in images[tag]] == [(2, 24, 24)]
