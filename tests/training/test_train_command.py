"""``spoco-monai train``: from a volume with a few annotated objects to a model folder that ``segment`` uses."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from spoco_monai.bundle import bundle_model
from spoco_monai.cli import main
from spoco_monai.data import make_synthetic_volume, open_volume, write_synthetic_dataset
from spoco_monai.training import read_model_folder

BUNDLE = Path(__file__).resolve().parents[2] / "bundle"
ANNOTATED = (3, 8, 11, 20, 27)


@pytest.fixture(scope="module")
def annotated_volume(tmp_path_factory) -> tuple[Path, Path]:
    """A 32x64x64 TIFF image and its label as napari saves a Labels layer: 5 cells annotated, the rest 0."""
    folder = tmp_path_factory.mktemp("annotated")
    image, dense = make_synthetic_volume((32, 64, 64), seed=3, mean_cell_size=16.0)
    label = np.where(np.isin(dense[0], ANNOTATED), dense[0], 0).astype(np.uint16)
    tifffile.imwrite(folder / "image.tif", image[0])
    tifffile.imwrite(folder / "image_labels.tif", label)
    return folder / "image.tif", folder / "image_labels.tif"


@pytest.fixture(scope="module")
def trained(annotated_volume, tmp_path_factory) -> tuple[Path, str]:
    image, label = annotated_volume
    output = tmp_path_factory.mktemp("trained") / "my_model"
    argv = ["train", "--images", str(image), "--labels", str(label), "--output", str(output), "--from", "model",
            "--iterations", "2", "--bundle", str(BUNDLE), "--no-progress"]
    messages = io.StringIO()
    with contextlib.redirect_stderr(messages):
        assert main(argv) == 0
    return output, messages.getvalue()


def test_train_reports_the_volumes_and_their_annotated_objects_before_training(trained, annotated_volume):
    output, messages = trained
    image, label = annotated_volume
    assert f"{image}: 32x64x64 voxels, 5 annotated object(s) in {label}" in messages
    assert "real annotations, used whole: all 5 annotated object(s) in 1 volume(s)" in messages
    assert "starting from model" in messages
    assert "validation: none given" in messages
    assert "warning: nothing will check that training improves model" in messages
    assert "training 2 iterations of 2 patch(es) of 32x64x64" in messages
    assert messages.index("annotated object(s) in") < messages.index("trained 2 of 2 iterations")


def test_a_fine_tune_says_how_many_objects_the_starting_and_trained_weights_find(trained):
    output, messages = trained
    counts = read_model_folder(output)["object_counts"]
    assert set(counts) == {"starting", "trained"} and min(counts.values()) > 0
    assert "segmenting the training image(s) with the starting and the trained weights" in messages
    assert (
        f"objects found in the training image(s) (the central 128^3 voxels of larger ones): {counts['starting']} with "
        f"the starting weights of model, {counts['trained']} with the trained ones"
    ) in messages


def test_real_sparse_labels_are_used_whole(trained):
    output, _ = trained
    manifest = json.loads((output / "training" / "sparse_annotation.json").read_text())
    assert manifest == {"image_labels.tif": list(ANNOTATED)}


def test_the_model_folder_records_data_objects_iterations_and_seed(trained):
    output, _ = trained
    record = read_model_folder(output)
    assert record["annotated_objects"] == 5 and record["iterations"] == 2 and record["seed"] == 0
    assert record["labels"] == "real sparse annotations" and record["sparse_fraction"] is None
    assert record["started_from"] == "model" and record["base_model"] == "model"
    assert record["training_data"][0]["objects"] == 5 and record["training_data"][0]["shape"] == [32, 64, 64]
    assert record["description"].startswith("fine-tuned from model on 5 annotated object(s) in 1 volume(s)")
    assert "affinity_delta_dist_scores" not in record and "held_out_objects" not in record
    weights = torch.load(output / "model.pt", weights_only=True)
    shipped = torch.load(BUNDLE / "models" / "model.pt", weights_only=True)
    assert weights.keys() == shipped.keys()
    assert any(not torch.equal(weights[name], shipped[name]) for name in shipped)


def test_a_fine_tune_that_finds_far_fewer_objects_is_warned_about(annotated_volume, tmp_path, monkeypatch):
    image, label = annotated_volume

    def fewer_objects(volumes, networks, settings):
        return {"trained": 50, "starting": 100}

    monkeypatch.setattr("spoco_monai.training.train_on_annotations.count_objects", fewer_objects)
    argv = ["train", "--images", str(image), "--labels", str(label), "--output", str(tmp_path / "merging"),
            "--from", "model", "--iterations", "1", "--bundle", str(BUNDLE), "--no-progress"]
    messages = io.StringIO()
    with contextlib.redirect_stderr(messages):
        assert main(argv) == 0
    assert "warning: the fine-tuned network finds 50% fewer objects in your images than model (50 against 100)" in (
        messages.getvalue()
    )
    assert f"spoco-monai segment {image} starting.tif --model model" in messages.getvalue()
    assert read_model_folder(tmp_path / "merging")["object_counts"] == {"trained": 50, "starting": 100}


def test_a_rerun_of_a_finished_training_keeps_the_model_and_its_record(trained, annotated_volume):
    output, _ = trained
    image, label = annotated_volume
    before = read_model_folder(output)
    weights = torch.load(output / "model.pt", weights_only=True)
    argv = ["train", "--images", str(image), "--labels", str(label), "--output", str(output), "--from", "model",
            "--iterations", "2", "--bundle", str(BUNDLE), "--no-progress"]
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(argv) == 0
    after = read_model_folder(output)
    assert after["iterations"] == 2 and after["seconds"] == before["seconds"]
    rewritten = torch.load(output / "model.pt", weights_only=True)
    assert all(torch.equal(rewritten[name], weights[name]) for name in weights)


def test_segment_uses_the_model_folder_and_describes_it(trained, annotated_volume, tmp_path, capsys):
    output, _ = trained
    image, _ = annotated_volume
    labels = tmp_path / "labels.tif"
    assert main(["segment", str(image), str(labels), "--model", str(output), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"model {output} ({output / 'model.pt'}): fine-tuned from model on 5 annotated object(s)" in err
    found = int(err.split(" objects found")[0].rsplit("spoco-monai segment: ", 1)[1])
    with open_volume(labels) as volume:
        assert volume.shape == (32, 64, 64) and int(np.max(volume[...])) == found > 0
    assert bundle_model(BUNDLE, output)["model_path"] == str(output.resolve() / "model.pt")


def test_a_model_folder_written_before_head_channels_existed_is_fine_tuned(trained, annotated_volume, tmp_path):
    output, _ = trained
    image, label = annotated_volume
    older = tmp_path / "older_model"
    shutil.copytree(output, older, ignore=shutil.ignore_patterns("training"))
    inference = json.loads((older / "inference.json").read_text())
    del inference["head_channels"], inference["network_def"]["head_channels"]
    (older / "inference.json").write_text(json.dumps(inference))
    tuned = tmp_path / "tuned"
    argv = ["train", "--images", str(image), "--labels", str(label), "--output", str(tuned), "--from", str(older),
            "--iterations", "1", "--bundle", str(BUNDLE), "--no-progress"]
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(argv) == 0
    assert json.loads((tuned / "inference.json").read_text())["head_channels"] is None
    assert torch.load(tuned / "model.pt", weights_only=True).keys() == torch.load(older / "model.pt").keys()


def test_a_simulated_annotator_is_named_as_such(annotated_volume, tmp_path, capsys):
    image, _ = annotated_volume
    dense = tmp_path / "dense.tif"
    tifffile.imwrite(dense, make_synthetic_volume((32, 64, 64), seed=3, mean_cell_size=16.0)[1][0].astype(np.uint16))
    output = tmp_path / "simulated"
    argv = ["train", "--images", str(image), "--labels", str(dense), "--output", str(output), "--iterations", "1",
            "--sparse-fraction", "0.25", "--bundle", str(BUNDLE), "--no-progress"]
    assert main(argv) == 0
    assert "simulated annotator: 0.25 of the" in capsys.readouterr().err
    record = read_model_folder(output)
    assert record["labels"] == "simulated annotator (fraction 0.25)" and record["started_from"] == "scratch"
    manifest = json.loads((output / "training" / "sparse_annotation.json").read_text())
    total = record["training_data"][0]["objects"]
    assert len(manifest["dense.tif"]) == max(1, int(np.floor(0.25 * total + 0.5)))


def test_a_label_without_annotations_stops_before_training(annotated_volume, tmp_path, capsys):
    image, _ = annotated_volume
    empty = tmp_path / "empty_labels.tif"
    tifffile.imwrite(empty, np.zeros((32, 64, 64), np.uint16))
    argv = ["train", "--images", str(image), "--labels", str(empty), "--output", str(tmp_path / "out"),
            "--bundle", str(BUNDLE), "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        f"spoco-monai train: error: {empty}: expected at least one annotated object (an id > 0), found none."
    )
    assert not (tmp_path / "out").exists()


def test_ctrl_c_says_how_to_resume_instead_of_a_traceback(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("spoco_monai.cli.train_on_annotations", interrupted)
    assert main(["train", "--images", "a.tif", "--labels", "b.tif", "--output", "out"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "spoco-monai train: interrupted; run the same command again to resume where it stopped."


def test_a_holdout_keeps_objects_out_of_training_and_chooses_the_clustering_scale_on_them(annotated_volume, tmp_path):
    image, label = annotated_volume
    output = tmp_path / "held_out"
    messages = io.StringIO()
    argv = ["train", "--images", str(image), "--labels", str(label), "--output", str(output), "--from", "model",
            "--iterations", "1", "--holdout", "0.4", "--bundle", str(BUNDLE), "--no-progress"]
    with contextlib.redirect_stderr(messages):
        assert main(argv) == 0
    assert "hold-out: 0.4 of each volume's 5 annotated object(s) are kept out of training" in messages.getvalue()
    # 0.6 x 5 objects = 3 trained on, the 2 others judge the clustering scale
    trained = json.loads((output / "training" / "sparse_annotation.json").read_text())["image_labels.tif"]
    record = read_model_folder(output)
    held_out = record["held_out_objects"][str(label)]
    assert len(trained) == 3 and sorted(trained + held_out) == list(ANNOTATED)
    # the trained and the starting weights are judged at every candidate scale, and the best pair is kept
    scores = {
        (weights, float(scale)): score
        for weights, table in record["held_out_scores"].items()
        for scale, score in table.items()
    }
    assert sorted(scores) == [(weights, scale) for weights in ("starting", "trained")
                              for scale in (1.34, 1.66, 2.0, 2.34, 2.66)]
    chosen = json.loads((output / "inference.json").read_text())["affinity_delta_dist"]
    assert scores[(record["kept_weights"], chosen)] == min(scores.values())
    assert "clustering scale affinity_delta_dist chosen on the held-out objects" in messages.getvalue()
    assert "held-out objects' Rand error with the starting weights" in messages.getvalue()


def test_a_holdout_that_would_keep_no_object_out_trains_on_all_and_says_so(annotated_volume, tmp_path):
    image, label = annotated_volume
    output = tmp_path / "too_few"
    messages = io.StringIO()
    argv = ["train", "--images", str(image), "--labels", str(label), "--output", str(output), "--from", "model",
            "--iterations", "1", "--holdout", "0.1", "--bundle", str(BUNDLE), "--no-progress"]
    with contextlib.redirect_stderr(messages):
        assert main(argv) == 0
    # 0.9 x 5 objects rounds to 5: none is left to judge by
    assert "hold-out: 0.1 of 5 annotated object(s) keeps none out of training" in messages.getvalue()
    assert json.loads((output / "training" / "sparse_annotation.json").read_text())["image_labels.tif"] == list(ANNOTATED)
    assert "kept_weights" not in read_model_folder(output)


def test_a_second_training_into_one_model_folder_stops_in_one_line(annotated_volume, tmp_path, capsys):
    image, label = annotated_volume
    output = tmp_path / "my_model"
    (output / "training").mkdir(parents=True)
    argv = ["train", "--images", str(image), "--labels", str(label), "--output", str(output), "--iterations", "1",
            "--bundle", str(BUNDLE), "--no-progress"]
    # the lock as another process holds it (a lock of this process would be re-entrant)
    with open(output / "training.lock", "w") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        other.write("pid 4242 on elsewhere")
        other.flush()
        assert main(argv) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"spoco-monai train: error: another run (pid 4242 on elsewhere) is writing this output: its work directory "
        f"{output / 'training'} is locked by {output / 'training.lock'}; wait for it to finish or choose another "
        "output."
    )
    assert sorted(path.name for path in (output / "training").iterdir()) == []


def test_fine_tuning_the_em_model_leaves_the_annotated_objects_borders_unlabeled(tmp_path):
    image, dense = make_synthetic_volume((40, 64, 64), seed=4, mean_cell_size=16.0)
    tifffile.imwrite(tmp_path / "em.tif", image[0])
    tifffile.imwrite(tmp_path / "em_labels.tif", np.where(np.isin(dense[0], (2, 5)), dense[0], 0).astype(np.uint16))
    output = tmp_path / "em_model"
    messages = io.StringIO()
    argv = ["train", "--images", str(tmp_path / "em.tif"), "--labels", str(tmp_path / "em_labels.tif"), "--output",
            str(output), "--from", "em3d_neurons", "--iterations", "1", "--bundle", str(BUNDLE), "--no-progress"]
    with contextlib.redirect_stderr(messages):
        assert main(argv) == 0
    assert "the outer 1 voxel(s) of every annotated object are left unlabeled in training" in messages.getvalue()
    record = read_model_folder(output)
    assert record["finetune_settings"] == {"unlabeled_border": 1}
    # a model fine-tuned from it is fine-tuned the same way
    assert bundle_model(BUNDLE, output)["finetune_settings"] == {"unlabeled_border": 1}


@pytest.mark.parametrize("start", ["scratch", "dsb2018_nuclei_2d"])
def test_a_2d_model_folder_describes_the_network_it_holds(start, tmp_path):
    # dsb2018_nuclei_2d's foreground channel is set by its inference overlay, not by its training configs
    write_synthetic_dataset(tmp_path, n_volumes=1, shape=(128, 128), seed=5, format="tif", mean_cell_size=16.0)
    image, label = tmp_path / "images" / "synthetic_000.tif", tmp_path / "labels" / "synthetic_000.tif"
    output = tmp_path / "model"
    argv = ["train", "--images", str(image), "--labels", str(label), "--output", str(output), "--from", start,
            "--iterations", "1", "--bundle", str(BUNDLE), "--no-progress"]
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(argv) == 0
        assert main(["segment", str(image), str(tmp_path / "labels.tif"), "--model", str(output), "--no-progress"]) == 0
    inference = json.loads((output / "inference.json").read_text())
    assert inference["foreground_head"] is (start != "scratch")


def test_validation_keeps_the_starting_weights_when_the_fine_tune_is_worse(annotated_volume, tmp_path):
    image, label = annotated_volume
    _, dense = make_synthetic_volume((32, 64, 64), seed=3, mean_cell_size=16.0)
    dense_path = tmp_path / "dense.tif"
    tifffile.imwrite(dense_path, dense[0].astype(np.uint16))
    output = tmp_path / "ruined"
    # a thousand times the training's learning rate wrecks the network in two steps
    argv = ["train", "--images", str(image), "--labels", str(label), "--output", str(output), "--from", "model",
            "--val-images", str(image), "--val-labels", str(dense_path), "--iterations", "2",
            "--learning-rate-factor", "1000", "--bundle", str(BUNDLE), "--no-progress"]
    messages = io.StringIO()
    with contextlib.redirect_stderr(messages):
        assert main(argv) == 0
    assert "select the best weights, the starting ones included" in messages.getvalue()
    assert "validation: the starting weights of model scored best (val_sbd" in messages.getvalue()
    record = read_model_folder(output)
    assert record["validation_best"]["iteration"] == 0 and record["validation_best"]["metric"] == "val_sbd"
    assert record["description"].endswith("; the validation data kept the starting weights of model")
    kept = torch.load(output / "model.pt", weights_only=True)
    shipped = torch.load(BUNDLE / bundle_model(BUNDLE, "model")["model_path"], weights_only=True)
    assert all(torch.equal(kept[name], shipped[name]) for name in shipped)
