"""The bundle's config layers: every documented list composes, no file repeats what the files below it give,
the data location is one override, and training refuses to validate on training images."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from bundle_workflow import CONFIGS, TINY, config
from monai.bundle import ConfigParser, ConfigWorkflow

from spoco_monai.data import write_synthetic_dataset
from spoco_monai.metrics import instance_scores

DATA_OVERLAYS = ("dsb2018_2d", "lm3d_nuclei", "lm3d_membranes", "em3d_neurons")
# every model the bundle ships: its configs after common.json and inference.json
SHIPPED_MODELS = {
    "model": (),
    "dsb2018_nuclei_2d": ("dsb2018_2d", "dsb2018_inference"),
    "dsb2018_nuclei_2d_sparse": ("dsb2018_2d", "dsb2018_inference", "dsb2018_sparse_inference"),
    "lm3d_nuclei": ("lm3d_nuclei", "lm3d_nuclei_inference"),
    "lm3d_membranes": ("lm3d_membranes", "lm3d_membranes_inference"),
    "em3d_neurons": ("em3d_neurons", "em3d_neurons_inference"),
}
# the metrics evaluate.json reports, by the instance_scores key each is the mean of
EVALUATED_SCORES = {
    "val_sbd": "sbd", "val_adapted_rand_error": "arand", "val_count_difference": "dic", "val_ap50": "ap50",
    "val_map": "map",
}
# the lists of the documented commands (each after common.json)
COMMANDS = [
    ("train",), ("train", "finetune"), ("train", "evaluate"), ("train", "adversarial"), ("train", "multi_gpu_train"),
    *[("train", overlay) for overlay in DATA_OVERLAYS],
    *[("train", overlay, "evaluate") for overlay in DATA_OVERLAYS],
    ("train", "lm3d_membranes", "finetune"), ("train", "lm3d_membranes", "adversarial"),
    ("train", "dsb2018_2d", "points_model", "points"), ("train", "dsb2018_2d", "points_model", "points", "evaluate"),
    ("inference", "inference_volume"), ("inference", "dsb2018_2d", "points_model", "points_inference"),
    *[("inference", *overlays) for overlays in SHIPPED_MODELS.values()],
]


@pytest.mark.parametrize("names", COMMANDS, ids="+".join)
def test_no_config_repeats_a_value_of_the_configs_below_it(names):
    paths = config(*names)
    for index, path in enumerate(paths[1:], start=1):
        below = ConfigParser(ConfigParser.load_config_files(paths[:index]))
        layer = json.loads(Path(path).read_text())
        repeated = sorted(key for key, value in layer.items() if key in below and below[key] == value)
        assert not repeated, f"{Path(path).name} repeats {repeated} of the configs layered below it"


def test_shared_pieces_live_in_common_json_only():
    common = json.loads((CONFIGS / "common.json").read_text())
    for path in sorted(CONFIGS.glob("*.json")):
        if path.name in ("common.json", "metadata.json"):
            continue
        layer = json.loads(path.read_text())
        for key in ("imports", "bundle_root", "data_root", "network_def", "segmentation", "mws_offsets"):
            assert key not in layer, f"{path.name} defines {key!r}, which common.json holds"
    assert {"network_def", "reader", "segmentation", "clustering_kwargs"} <= set(common)


@pytest.mark.parametrize("model, overlays", sorted(SHIPPED_MODELS.items()))
def test_shipped_model_configs_compose(model, overlays):
    parser = ConfigParser()
    parser.read_config(config("inference", *overlays))
    parser["bundle_root"] = str(CONFIGS.parent)
    network = parser.get_parsed_content("network_def")
    assert network.out_channels == parser.get_parsed_content("embedding_dim") + parser["foreground_head"]
    assert Path(parser.get_parsed_content("model_path")).name == ("model.pt" if model == "model" else f"{model}.pt")
    settings = parser.get_parsed_content("segmentation")
    assert settings.normalize and list(settings.roi_size) == parser["patch_size"]


@pytest.mark.parametrize("overlay", DATA_OVERLAYS)
def test_data_overlays_find_their_data_under_data_root(overlay, tmp_path):
    parser = ConfigParser()
    parser.read_config(config("train", overlay))
    parser["data_root"] = str(tmp_path)
    assert Path(parser.get_parsed_content("dataset_dir")).parent == tmp_path
    default = ConfigParser()
    default.read_config(config("train", overlay))
    default["bundle_root"] = "bundle"
    assert Path(default.get_parsed_content("data_root")) == Path("bundle", "..", "..", "shared", "data")


def test_validation_and_inference_share_the_segmentation_entry():
    train = ConfigParser()
    train.read_config(config("train", "dsb2018_2d"))
    sparse_model = ConfigParser()
    sparse_model.read_config(config("inference", "dsb2018_2d", "dsb2018_inference", "dsb2018_sparse_inference"))
    validation_settings = train.get_parsed_content("validate#inferer").settings
    # validation reads z-scored images from its pipeline, inference z-scores inside the segmentation
    assert validation_settings.normalize is False
    # the data overlay sets the clustering (seeded watershed) and the foreground threshold for both paths
    assert validation_settings.clustering == "watershed" and validation_settings.foreground_threshold == 0.6
    expected = dataclasses.replace(validation_settings, normalize=True)
    assert sparse_model.get_parsed_content("segmentation") == expected
    # the dense model clusters inside its own foreground channel, cut at its threshold
    dense_model = ConfigParser()
    dense_model.read_config(config("inference", "dsb2018_2d", "dsb2018_inference"))
    # its learned mask drops specks under 30 pixels; the Otsu mask of the sparse model keeps small nuclei (15)
    assert expected.clustering_kwargs["min_size"] == 15
    dense_options = {**expected.clustering_kwargs, "min_size": 30}
    assert dense_model.get_parsed_content("segmentation") == dataclasses.replace(
        expected, foreground="network", clustering_kwargs=dense_options
    )


def test_a_model_trained_from_clicks_validates_and_infers_with_the_points_clustering():
    train = ConfigParser()
    train.read_config(config("train", "dsb2018_2d", "points_model", "points"))
    inference = ConfigParser()
    inference.read_config(config("inference", "dsb2018_2d", "points_model", "points_inference"))
    validation_settings = train.get_parsed_content("validate#inferer").settings
    assert validation_settings.clustering == "points" and validation_settings.logit_channel
    assert validation_settings.foreground == "intensity" and validation_settings.blend == "embeddings"
    assert inference.get_parsed_content("segmentation") == dataclasses.replace(validation_settings, normalize=True)
    assert inference.get_parsed_content("network_def").out_channels == 17


def test_the_affinity_side_term_takes_its_weight_offsets_and_kernel_from_the_settings():
    parser = ConfigParser()
    parser.read_config(config("train"))
    defaults = parser.get_parsed_content("loss")
    assert defaults.affinity_weight == 0.0 and defaults.affinity_side.max_offset == 18
    parser = ConfigParser()
    parser.read_config(config("train"))
    parser["affinity_weight"] = 5.0
    parser["affinity_max_offset"] = 1
    parser["affinity_delta_dist"] = 3.0
    loss = parser.get_parsed_content("loss")
    assert loss.affinity_weight == 5.0
    assert (loss.affinity_side.max_offset, loss.affinity_side.affinity_delta_dist) == (1, 3.0)


@pytest.mark.parametrize("model", ["model", "dsb2018_nuclei_2d"])
def test_the_affinity_kernel_and_the_loss_margin_are_set_apart_under_every_overlay(model):
    def segmentation(**overrides):
        parser = ConfigParser()
        parser.read_config(config("inference", *SHIPPED_MODELS[model]))
        parser.update(overrides)
        return parser.get_parsed_content("segmentation")

    shipped = segmentation()
    assert segmentation(affinity_delta_dist=7.0).affinity_delta_dist == 7.0
    # the loss's margin is the kernel's default only where no overlay sets the kernel (dsb2018_2d.json does: 5.0)
    assert segmentation(delta_dist=3.0).affinity_delta_dist == (3.0 if model == "model" else shipped.affinity_delta_dist)
    assert segmentation(**{"segmentation#roi_size": [16] * shipped.spatial_dims}).roi_size == (16,) * shipped.spatial_dims


@pytest.fixture(scope="module")
def training_only_dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("training_only")
    write_synthetic_dataset(folder, n_volumes=2, shape=(32, 48, 48), seed=3, mean_cell_size=14.0,
                            validation_fraction=0.0)
    return folder


def test_training_without_a_validation_split_stops_with_a_message(training_only_dataset, tmp_path):
    flow = ConfigWorkflow(config_file=config("train"), workflow_type=None,
                          **{**TINY, "dataset_dir": str(training_only_dataset), "output_dir": str(tmp_path)})
    with pytest.raises(RuntimeError) as error:
        flow.initialize()
    causes = []
    cause = error.value
    while cause is not None:
        causes.append(cause)
        cause = cause.__cause__
    assert any(isinstance(c, ValueError) and "the dataset has no validation items" in str(c) for c in causes)


def test_a_held_out_training_image_validates_when_asked_for(training_only_dataset, tmp_path):
    flow = ConfigWorkflow(
        config_file=config("train"), workflow_type=None,
        **{**TINY, "dataset_dir": str(training_only_dataset), "output_dir": str(tmp_path),
           "train#datalist": "$@datalist['training'][:-1]", "validate#datalist": "$@datalist['training'][-1:]"},
    )
    flow.initialize()
    training, validation = flow.parser.get_parsed_content("train#datalist"), flow.parser.get_parsed_content(
        "validate#datalist"
    )
    assert len(training) == len(validation) == 1 and training[0] != validation[0]


@pytest.mark.parametrize("overlay, key_metric, lower_is_better", [
    ("lm3d_membranes", "val_adapted_rand_error", True), ("lm3d_nuclei", "val_sbd", False),
])
def test_key_metric_selects_model_pt_and_the_others_are_reported(overlay, key_metric, lower_is_better):
    parser = ConfigParser()
    parser.read_config(config("train", overlay, "evaluate"))
    assert list(parser.get_parsed_content("validate#key_metric")) == [key_metric]
    reported = {"val_sbd", "val_adapted_rand_error", "val_count_difference", "val_ap50", "val_map"} - {key_metric}
    assert set(parser.get_parsed_content("validate#additional_metrics")) == reported
    assert parser.get_parsed_content("validate#best_model_saver#key_metric_negative_sign") is lower_is_better
    better = parser.get_parsed_content("validate#evaluator#metric_cmp_fn")
    assert better(0.1, 0.2) is lower_is_better and better(0.3, 0.2) is not lower_is_better


def test_evaluate_reports_the_means_of_instance_scores():
    parser = ConfigParser()
    parser.read_config(config("train", "evaluate"))
    metrics = parser.get_parsed_content("validate#metrics")
    assert set(metrics) == set(EVALUATED_SCORES)
    # two images, as the evaluator gives them: (1, *S) label tensors, ids not consecutive, -1 ignored in the truth
    predictions = [torch.tensor([[[1, 1, 2, 2], [0, 5, 5, 0]]]), torch.tensor([[[3, 3, 0, 0], [0, 0, 0, 0]]])]
    truths = [torch.tensor([[[1, 1, 1, 2], [0, 4, 4, -1]]]), torch.tensor([[[1, 1, 2, 2], [0, 0, 0, 0]]])]
    scores = [instance_scores(p[0].numpy(), t[0].numpy()) for p, t in zip(predictions, truths)]
    for name, handler in metrics.items():
        handler.metric_fn.reset()
        handler.metric_fn(predictions, truths)
        key = EVALUATED_SCORES[name]
        assert handler.metric_fn.aggregate().item() == pytest.approx(sum(s[key] for s in scores) / 2), name
