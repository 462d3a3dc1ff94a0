"""``spoco-monai train --points``, ``--scribbles`` and ``--boxes``: a model from clicks, strokes or boxes instead of
masks."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage
from skimage.morphology import skeletonize

from spoco_monai.cli import main
from spoco_monai.data import write_boxes_csv, write_points_csv, write_synthetic_dataset
from spoco_monai.training import read_model_folder
from spoco_monai.transforms import GrowFromBoxes, SimulateBoxes

BUNDLE = Path(__file__).resolve().parents[2] / "bundle"
CLICKED = (2, 5, 7, 9, 12, 15)
# the smallest networks that train in a second: the annotation path, not the accuracy, is under test
SMALL = ["--set", "network_channels=[8,16]", "network_strides=[2]", "norm=\"batch\"", "patches_per_volume=1"]


@pytest.fixture(scope="module")
def nuclei_image(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A 2D 128x128 image of cells and its dense labels (the annotator's truth, not given to the training)."""
    folder = tmp_path_factory.mktemp("clicks")
    write_synthetic_dataset(folder, n_volumes=1, shape=(128, 128), seed=5, format="tif", mean_cell_size=16.0)
    return folder / "images" / "synthetic_000.tif", tifffile.imread(folder / "labels" / "synthetic_000.tif")


def run(argv: list[str]) -> tuple[int, str]:
    messages = io.StringIO()
    with contextlib.redirect_stderr(messages):
        code = main(argv)
    return code, messages.getvalue()


def test_clicks_in_a_napari_points_file_train_a_click_model_that_segment_uses(nuclei_image, tmp_path):
    image, dense = nuclei_image
    centres = ndimage.center_of_mass(np.ones_like(dense), dense, CLICKED)
    clicks = tmp_path / "clicks.csv"
    write_points_csv(clicks, np.array(centres), np.array(CLICKED))
    output = tmp_path / "click_model"
    code, messages = run(["train", "--images", str(image), "--points", str(clicks), "--output", str(output),
                          "--iterations", "2", "--grow-radius", "6", "--bundle", str(BUNDLE), "--no-progress", *SMALL])
    assert code == 0, messages
    assert "labels: clicks on 6 object(s) in 1 image(s)" in messages
    assert "within 6 pixels of its clicks" in messages
    assert "WISE's anchor similarity loss trains the embeddings on the masks" in messages
    # the clicks became a point label image in the training folder; the CSV file is untouched
    converted = output / "training" / "annotations" / "clicks_points.tif"
    points = tifffile.imread(converted)
    assert sorted(np.unique(points[points > 0]).tolist()) == list(CLICKED)
    assert np.count_nonzero(points) == len(CLICKED)
    record = read_model_folder(output)
    assert record["annotation"] == "points" and record["grow_radius"] == 6.0
    assert record["training_configs"][-1] == "configs/points_wise.json"
    assert record["training_data"][0]["label"] == str(converted)
    assert json.loads((output / "inference.json").read_text())["clustering"] == "points"
    code, messages = run(["segment", str(image), str(tmp_path / "labels.tif"), "--model", str(output), "--no-progress"])
    assert code == 0, messages
    assert tifffile.imread(tmp_path / "labels.tif").shape == dense.shape
    # the seeded watershed leaves the localisation channel out
    code, messages = run(["segment", str(image), str(tmp_path / "watershed.tif"), "--model", str(output),
                          "--clustering", "watershed", "--min-distance", "4", "--no-progress"])
    assert code == 0, messages


def test_clicks_cannot_fine_tune_a_model_without_a_localisation_channel(nuclei_image, tmp_path):
    image, _ = nuclei_image
    clicks = tmp_path / "clicks.csv"
    write_points_csv(clicks, np.array([[10.0, 12.0]]))
    code, messages = run(["train", "--images", str(image), "--points", str(clicks), "--output", str(tmp_path / "m"),
                          "--from", "dsb2018_nuclei_2d", "--bundle", str(BUNDLE), "--no-progress"])
    assert code == 1
    assert messages.strip().splitlines()[-1] == (
        "spoco-monai train: error: training from clicks needs a model with a localisation channel, which "
        "dsb2018_nuclei_2d has not: start from scratch (--from scratch) or from a model folder trained from clicks."
    )


def test_a_click_outside_the_image_names_the_file(nuclei_image, tmp_path):
    image, _ = nuclei_image
    clicks = tmp_path / "clicks.csv"
    write_points_csv(clicks, np.array([[10.0, 12.0], [130.0, 5.0]]))
    code, messages = run(["train", "--images", str(image), "--points", str(clicks), "--output", str(tmp_path / "m"),
                          "--bundle", str(BUNDLE), "--no-progress"])
    assert code == 1
    assert f"points file {clicks} does not fit the image {image}: point 1 at [130.0, 5.0] lies outside" in messages


def test_strokes_fine_tune_a_shipped_model(nuclei_image, tmp_path):
    image, dense = nuclei_image
    strokes = np.zeros(dense.shape, np.int32)
    for object_id in CLICKED:
        strokes[skeletonize(dense == object_id)] = object_id
    background = np.zeros(dense.shape, bool)
    background[0, :20] = True
    strokes[background & (strokes == 0)] = -1  # a background stroke
    path = tmp_path / "strokes.tif"
    tifffile.imwrite(path, strokes)
    output = tmp_path / "stroke_model"
    code, messages = run(["train", "--images", str(image), "--scribbles", str(path), "--output", str(output),
                          "--from", "dsb2018_nuclei_2d", "--iterations", "1", "--bundle", str(BUNDLE), "--no-progress"])
    assert code == 0, messages
    marked = int((strokes == -1).sum())
    assert f"labels: strokes on 6 object(s) in 1 image(s) ({marked} background pixel(s) marked -1)" in messages
    assert "within 8 pixels of its strokes" in messages
    record = read_model_folder(output)
    assert record["annotation"] == "scribbles" and record["started_from"] == "dsb2018_nuclei_2d"


def test_a_grow_radius_needs_clicks_or_strokes(nuclei_image, tmp_path):
    image, dense = nuclei_image
    code, messages = run(["train", "--images", str(image), "--labels", str(image), "--output", str(tmp_path / "m"),
                          "--grow-radius", "5", "--bundle", str(BUNDLE), "--no-progress"])
    assert code == 1
    assert "a grow radius applies to clicks and strokes (--points, --scribbles), not to masks." in messages


def test_boxes_grow_into_masks_saved_for_checking_and_train_as_masks(nuclei_image, tmp_path):
    image, dense = nuclei_image
    boxes = SimulateBoxes(1.0)(np.where(np.isin(dense, CLICKED), dense, 0)[None])
    path = tmp_path / "boxes.csv"
    write_boxes_csv(path, boxes)
    output = tmp_path / "box_model"
    code, messages = run(["train", "--images", str(image), "--boxes", str(path), "--output", str(output),
                          "--from", "dsb2018_nuclei_2d", "--iterations", "1", "--bundle", str(BUNDLE), "--no-progress"])
    assert code == 0, messages
    masks = output / "training" / "annotations" / "boxes_masks.tif"
    assert "labels: boxes around 6 object(s) in 1 image(s); each grew into a mask inside its box" in messages
    assert f"saved as {masks}: open them in napari to check" in messages
    expected = GrowFromBoxes()(tifffile.imread(image)[None].astype(np.float32), boxes)[0]
    np.testing.assert_array_equal(tifffile.imread(masks), expected)
    record = read_model_folder(output)
    assert record["annotation"] == "boxes" and record["training_data"][0]["label"] == str(masks)


def test_boxes_outside_the_image_name_the_file(nuclei_image, tmp_path):
    image, _ = nuclei_image
    path = tmp_path / "boxes.csv"
    write_boxes_csv(path, np.array([[1, 120, 120, 140, 130]]))
    code, messages = run(["train", "--images", str(image), "--boxes", str(path), "--output", str(tmp_path / "m"),
                          "--bundle", str(BUNDLE), "--no-progress"])
    assert code == 1
    assert f"boxes file {path} does not fit the image {image}: box [1, 120, 120, 140, 130] must" in messages
