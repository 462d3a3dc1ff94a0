"""The points overlays (points_model.json and points.json on dsb2018_2d.json) train from simulated clicks on a tiny
2D data set and validate with the points clustering."""

from __future__ import annotations

import json

import pytest
import torch
from bundle_workflow import workflow
from ignite.engine import Events

from spoco_monai.data import write_synthetic_dataset
from spoco_monai.losses import AnchorSimilarityLoss, PointSupervisedLoss


@pytest.fixture(scope="module")
def tiny_2d(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_2d")
    write_synthetic_dataset(folder, n_volumes=2, shape=(48, 48), seed=5, format="tif", mean_cell_size=10.0)
    return folder


def test_points_overlay_trains_two_iterations_from_clicks(tiny_2d, tmp_path):
    flow = workflow(
        ("train", "dsb2018_2d", "points_model", "points"), dataset_dir=str(tiny_2d),
        datalist_source="$os.path.join(@dataset_dir, 'datalist.json')",
        output_dir=str(tmp_path), patch_size=[32, 32], norm="batch",
        clustering="points", clustering_kwargs={"min_distance": 3, "min_size": 4}, patches_per_volume=2,
        network_channels=[8, 16], network_strides=[2], whole_image_max_voxels=None,
        **{"segmentation#roi_size": [48, 48]},
    )
    settings = flow.parser.get_parsed_content("validate#inferer").settings
    assert settings.clustering == "points" and settings.blend == "embeddings" and settings.logit_channel
    trainer = flow.parser.get_parsed_content("train#trainer")
    assert isinstance(trainer.loss_function, PointSupervisedLoss)
    assert flow.parser.get_parsed_content("network_def").out_channels == 17
    seen = []
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda engine: seen.append(dict(engine.state.output["loss_terms"]))
    )
    flow.run()
    assert trainer.state.iteration == 2
    assert all(torch.isfinite(torch.tensor(terms["localization"])) for terms in seen)
    assert all(terms["localization_point"] > 0 for terms in seen)
    recorded = json.loads((tmp_path / "point_annotation.json").read_text())
    assert len(recorded) == 1 and all(entry["objects"] for entry in recorded.values())


def test_points_wise_overlay_trains_the_embeddings_with_the_anchor_similarity(tiny_2d, tmp_path):
    flow = workflow(
        ("train", "dsb2018_2d", "points_model", "points", "points_wise"), dataset_dir=str(tiny_2d),
        datalist_source="$os.path.join(@dataset_dir, 'datalist.json')",
        output_dir=str(tmp_path), patch_size=[32, 32], norm="batch", patches_per_volume=2,
        network_channels=[8, 16], network_strides=[2], whole_image_max_voxels=None, run_validation=False,
        **{"segmentation#roi_size": [48, 48]},
    )
    trainer = flow.parser.get_parsed_content("train#trainer")
    assert isinstance(trainer.loss_function.embedding_loss, AnchorSimilarityLoss)
    assert flow.parser.get_parsed_content("training_settings")["points"]["embedding_loss"] == "anchor_similarity"
    seen = []
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda engine: seen.append(dict(engine.state.output["loss_terms"]))
    )
    flow.run()
    assert trainer.state.iteration == 2
    # WISE's terms and the localisation terms, none of SPOCO's
    assert all({"similar", "dissimilar", "localization"} <= set(terms) and "instance" not in terms for terms in seen)
    assert all(terms["similar"] > 0 for terms in seen)


@pytest.mark.parametrize(("overlay", "manifest"), [("scribbles", "scribble_annotation.json"), ("boxes", "box_annotation.json")])
def test_scribbles_and_boxes_overlays_train_on_masks_grown_from_the_simulated_annotation(tiny_2d, tmp_path, overlay, manifest):
    flow = workflow(
        ("train", "dsb2018_2d", overlay), dataset_dir=str(tiny_2d),
        datalist_source="$os.path.join(@dataset_dir, 'datalist.json')",
        output_dir=str(tmp_path), patch_size=[32, 32], norm="batch", patches_per_volume=2,
        network_channels=[8, 16], network_strides=[2], whole_image_max_voxels=None, run_validation=False,
        **{"segmentation#roi_size": [48, 48]},
    )
    trainer = flow.parser.get_parsed_content("train#trainer")
    labels = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: labels.append(engine.state.batch["label"]))
    flow.run()
    assert trainer.state.iteration == 2
    # the grown masks are the labels: objects, and unlabeled pixels around them
    assert all((batch > 0).any() and (batch == 0).any() for batch in labels)
    recorded = json.loads((tmp_path / manifest).read_text())
    # one image annotated, with what the annotator drew recorded
    assert len(recorded) == 1 and all(recorded.values())


def test_scribbles_overlay_adds_the_pixel_to_segment_contrast_on_superpixels(tiny_2d, tmp_path):
    flow = workflow(
        ("train", "dsb2018_2d", "scribbles"), dataset_dir=str(tiny_2d),
        datalist_source="$os.path.join(@dataset_dir, 'datalist.json')",
        output_dir=str(tmp_path), patch_size=[32, 32], norm="batch", patches_per_volume=2,
        network_channels=[8, 16], network_strides=[2], whole_image_max_voxels=None, run_validation=False,
        pixel_to_segment_weight=1.0, segment_size=20.0, **{"segmentation#roi_size": [48, 48]},
    )
    trainer = flow.parser.get_parsed_content("train#trainer")
    seen = []
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED,
        lambda engine: seen.append((engine.state.batch["segments"], engine.state.output["loss_terms"])),
    )
    flow.run()
    # the superpixels were cropped with the patch (several per patch) and the contrast trained on them
    assert all(segments.shape[-2:] == (32, 32) and len(torch.unique(segments)) > 5 for segments, _ in seen)
    assert all(terms["pixel_to_segment"] > 0 for _, terms in seen)


@pytest.mark.parametrize("overlays", [("points_model", "points"), ("scribbles",), ("boxes",)])
def test_a_training_from_simulated_annotations_resumes(tiny_2d, tmp_path, overlays):
    # the start-up check of the sparse manifest sees the labels the annotation made, not the dense ones
    settings = dict(
        dataset_dir=str(tiny_2d), datalist_source="$os.path.join(@dataset_dir, 'datalist.json')",
        output_dir=str(tmp_path), patch_size=[32, 32], norm="batch", patches_per_volume=1, network_channels=[8, 16],
        network_strides=[2], whole_image_max_voxels=None, run_validation=False, **{"segmentation#roi_size": [48, 48]},
    )
    names = ("train", "dsb2018_2d", *overlays)
    workflow(names, point_fraction=0.5, box_fraction=0.5, **settings).run()
    # the rerun checks its manifest against the recorded one at start-up, then finds the training complete
    rerun = workflow(names, point_fraction=0.5, box_fraction=0.5, **settings)
    trainer = rerun.parser.get_parsed_content("train#trainer")
    rerun.run()
    assert trainer.state.iteration == 2
