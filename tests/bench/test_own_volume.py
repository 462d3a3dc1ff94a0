"""``bench/own_volume.py``: the boundary peer's masked target, the annotator's split, a short run on real EM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench import own_volume

REPOSITORY = Path(__file__).resolve().parents[2]


def test_the_boundary_target_is_known_inside_annotated_objects_and_on_their_borders_only():
    sparse = np.array([[0, 0, 0, 0, 0, 0], [0, 1, 1, 0, 0, -1], [0, 1, 1, 0, 2, 2], [0, 0, 0, 0, 2, 2]])
    target, known = own_volume.boundary_target(sparse)
    # thick boundaries (4-neighbourhood): every voxel with a neighbour of another id, on both sides
    expected_border = np.array(
        [[0, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 0]], dtype=np.float32
    )
    np.testing.assert_array_equal(target, expected_border)
    # known: the annotated objects and their borders, never an ignored voxel
    expected_known = expected_border.astype(bool) | (sparse > 0)
    expected_known[1, 5] = False
    np.testing.assert_array_equal(known, expected_known)


def test_the_datasets_split_their_volumes_without_overlap():
    em = own_volume.DATASETS["em"]
    if not em.file.is_file():
        pytest.skip(f"real data not found at {em.file} (the shared data folder ../shared/data is absent)")
    train_image, train_label, test_image, test_label, element_size = em.parts()
    assert train_image.shape == (63, 125, 250) and test_image.shape == (62, 125, 250)
    assert train_label.shape == train_image.shape and test_label.shape == test_image.shape
    assert element_size == (0.01, 0.01, 0.01)


def test_a_zoomed_dataset_stretches_both_parts_and_keeps_the_label_ids():
    plain, zoomed = own_volume.DATASETS["nuclei"], own_volume.DATASETS["nuclei_zoomed"]
    if not plain.file.is_file():
        pytest.skip(f"real data not found at {plain.file} (the shared data folder ../shared/data is absent)")
    train_image, train_label, test_image, test_label, element_size = plain.parts()
    big_train_image, big_train_label, big_test_image, big_test_label, big_element_size = zoomed.parts()
    assert big_train_image.shape == tuple(2 * n for n in train_image.shape) == big_train_label.shape
    assert big_test_image.shape == tuple(2 * n for n in test_image.shape) == big_test_label.shape
    assert set(np.unique(big_train_label)) == set(np.unique(train_label))
    # nearest-neighbour labels: every voxel becomes a 2x2x2 block of its id
    assert np.array_equal(big_test_label[::2, ::2, ::2], test_label)
    assert big_element_size == element_size


def test_a_short_run_writes_its_rows_and_resumes(tmp_path, capsys, monkeypatch):
    if not own_volume.DATASETS["membranes"].file.is_file():
        pytest.skip("real data not found (the shared data folder ../shared/data is absent)")
    monkeypatch.setattr(own_volume, "MIN_DISTANCES", (6, 12))
    argv = ["--dataset", "membranes", "--fractions", "0.2", "--rows", "classical", "--output-dir", str(tmp_path)]
    own_volume.main(argv)
    first = capsys.readouterr().out
    result = json.loads((tmp_path / "membranes_0.2_0" / "classical.json").read_text())
    assert result["objects"] > 0 and 0.0 <= result["arand"] <= 1.0 and result["annotated"] >= 1
    assert "| membranes | 0.2 (" in first and "| classical |" in first
    own_volume.main(argv)
    assert capsys.readouterr().out.splitlines()[-1] == first.splitlines()[-1]


def test_a_row_measured_with_other_data_is_refused_not_reused(tmp_path, monkeypatch):
    if not own_volume.DATASETS["membranes"].file.is_file():
        pytest.skip("real data not found (the shared data folder ../shared/data is absent)")
    monkeypatch.setattr(own_volume, "MIN_DISTANCES", (6, 12))
    argv = ["--dataset", "membranes", "--fractions", "0.2", "--rows", "classical", "--output-dir", str(tmp_path)]
    own_volume.main(argv)
    stored = tmp_path / "membranes_0.2_0" / "classical.json"
    result = json.loads(stored.read_text())
    assert result["setup"] == own_volume.measurement_setup(own_volume.DATASETS["membranes"], "classical")
    result["setup"]["shipped_weights"] = "another model"
    stored.write_text(json.dumps(result))
    with pytest.raises(SystemExit, match="choose another --output-dir"):
        own_volume.main(argv)


def test_a_fine_tune_row_lists_the_objects_its_starting_and_trained_weights_find():
    scores = {"arand": 0.444, "voi_split": 1.1, "voi_merge": 2.18, "sbd": 0.08, "ap50": 0.012, "segments": 63,
              "objects": 100, "training_s": 233.3, "annotated": 8}
    results = {
        ("em", 0.1, 2, "finetune"): {**scores, "object_counts": {"starting": 86, "trained": 57}},
        ("em", 0.1, 2, "shipped"): {**scores, "training_s": 0.0},
    }
    lines = own_volume.markdown_table(results).splitlines()
    assert lines[0].endswith("| objects in the annotated part, starting -> trained |")
    assert lines[2] == ("| em | 0.1 (8) | 2 | finetune | 0.444 | 1.100 | 2.180 | 0.080 | 0.012 | 63 / 100 | 233 "
                        "| 86 -> 57 (-34%) |")
    assert lines[3].endswith("| 0 | - |")


def test_a_training_row_is_stored_with_its_recipe_so_a_changed_default_is_not_reused():
    dataset = own_volume.DATASETS["em"]
    assert "recipe" not in own_volume.measurement_setup(dataset, "classical")
    assert own_volume.measurement_setup(dataset, "finetune")["recipe"] == repr(own_volume.FineTuneRecipe())
    frozen = own_volume.measurement_setup(dataset, "finetune:frozen-teacher")["recipe"]
    assert "'ema_momentum': 1.0" in frozen and frozen != own_volume.measurement_setup(dataset, "finetune")["recipe"]
