from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor

from spoco_monai.transforms import SparseInstanceSampling, SparseInstanceSamplingd


def object_label(num_objects: int, shape: tuple[int, ...] = (1, 12, 12)) -> np.ndarray:
    """(1, *S) int32 label: ids 1..num_objects in consecutive pixel runs, background 0 in the rest."""
    flat = np.zeros(int(np.prod(shape)), dtype=np.int32)
    flat[1 : 1 + 2 * num_objects] = np.repeat(np.arange(1, num_objects + 1), 2)
    return flat.reshape(shape)


def as_meta(label: np.ndarray, filename: str) -> MetaTensor:
    return MetaTensor(torch.as_tensor(label), meta={"filename_or_obj": filename})


def kept_ids(out: MetaTensor) -> list[int]:
    return json.loads(out.meta["spoco_kept_ids"])


@pytest.mark.parametrize(
    "fraction, num_objects, expected",
    [
        (0.1, 10, 1),
        (0.25, 10, 3),  # 2.5 rounds half up
        (0.5, 7, 4),  # 3.5 rounds half up
        (0.01, 5, 1),  # at least one object
        (0.29, 50, 15),  # 14.5 although 0.29 * 50 == 14.499999999999998 in floating point
        (1.0, 6, 6),
        (0.4, 0, 0),
    ],
)
def test_keeps_rounded_fraction_of_objects(fraction: float, num_objects: int, expected: int) -> None:
    label = object_label(num_objects)
    out = SparseInstanceSamplingd("label", fraction)({"label": as_meta(label, "/data/a.tif")})["label"]
    kept = kept_ids(out)
    assert len(kept) == expected
    assert set(kept) <= set(range(1, num_objects + 1))
    result = out.numpy()
    np.testing.assert_array_equal(result, np.where(np.isin(label, kept), label, 0))


def test_array_transform_gives_the_dictionary_labels() -> None:
    label = object_label(10)
    named = SparseInstanceSampling(0.3, seed=2)(label, identity="case")
    by_file = SparseInstanceSampling(0.3, seed=2)(as_meta(label, "/elsewhere/case"))
    keyed = SparseInstanceSamplingd("label", 0.3, seed=2, id_key="name")({"label": label, "name": "case"})["label"]
    np.testing.assert_array_equal(named, keyed)
    np.testing.assert_array_equal(by_file.numpy(), keyed)
    assert kept_ids(by_file) == sorted(set(np.unique(keyed).tolist()) - {0}) and len(kept_ids(by_file)) == 3


def test_hand_made_label_keeps_whole_objects() -> None:
    label = np.array([[[0, 1, 1, 2], [3, 3, -1, 4], [-1, 0, 4, 0]]], dtype=np.int64)
    out = SparseInstanceSamplingd("label", 0.5, id_key="name")({"label": label, "name": "case"})["label"]
    kept = sorted(set(np.unique(out).tolist()) - {0, -1})
    assert len(kept) == 2
    np.testing.assert_array_equal(out, np.where(np.isin(label, kept) | (label == -1), label, 0))
    assert isinstance(out, np.ndarray) and out.dtype == np.int64


def test_background_never_kept_and_ignore_preserved() -> None:
    label = np.full((1, 8, 8), 7, dtype=np.int32)  # background id 7
    label[0, :2] = -1
    label[0, 3, 1:4] = 1
    label[0, 5, 1:4] = 2
    label[0, 6, 5:8] = 3
    sampler = SparseInstanceSamplingd("label", 0.3, background_id=7)
    out = sampler({"label": as_meta(label, "b.tif")})["label"].numpy()
    assert len(np.setdiff1d(np.unique(out), [-1, 0])) == 1  # round(0.3 * 3) = 1, the background not counted
    np.testing.assert_array_equal(out == -1, label == -1)
    assert np.all(out[label == 7] == 0)


def test_meta_records_kept_ids_and_identity_from_file_name() -> None:
    label = object_label(9)
    sampler = SparseInstanceSamplingd("label", 0.5, seed=3)
    out_a = sampler({"label": as_meta(label, "/first/folder/img_07.tif")})["label"]
    out_b = sampler({"label": as_meta(label, "/moved/elsewhere/img_07.tif")})["label"]
    assert out_a.meta["spoco_identity"] == "img_07.tif"
    assert kept_ids(out_a) == kept_ids(out_b)
    assert kept_ids(out_a) == sorted(set(np.unique(out_a.numpy()).tolist()) - {0})
    assert out_a.meta["filename_or_obj"] == "/first/folder/img_07.tif"


def test_subset_depends_on_seed_and_identity_and_is_nested_across_fractions() -> None:
    label = object_label(30)

    def subset(fraction: float, seed: int, name: str) -> list[int]:
        sampler = SparseInstanceSamplingd("label", fraction, seed=seed)
        return kept_ids(sampler({"label": as_meta(label, name)})["label"])

    assert subset(0.3, 0, "a.tif") == subset(0.3, 0, "a.tif")
    assert subset(0.3, 0, "a.tif") != subset(0.3, 1, "a.tif")
    assert subset(0.3, 0, "a.tif") != subset(0.3, 0, "b.tif")
    assert set(subset(0.1, 5, "c.tif")) <= set(subset(0.3, 5, "c.tif")) <= set(subset(0.7, 5, "c.tif"))


def test_dense_mode_gives_background_its_own_id() -> None:
    label = np.array([[[0, 0, 2], [5, -1, 2], [5, 0, 0]]], dtype=np.int32)
    out = SparseInstanceSamplingd("label", 1.0, keep_background=True)({"label": as_meta(label, "d.tif")})["label"]
    expected = np.array([[[6, 6, 2], [5, -1, 2], [5, 6, 6]]], dtype=np.int32)
    np.testing.assert_array_equal(out.numpy(), expected)
    assert kept_ids(out) == [2, 5, 6]


def test_dense_mode_keeps_positive_background_id_and_needs_no_identity() -> None:
    label = torch.tensor([[[1, 1, 3], [2, 2, 1]]], dtype=torch.int16)
    out = SparseInstanceSamplingd("label", 1.0, keep_background=True, background_id=1)({"label": label})["label"]
    assert torch.equal(out, label) and out.dtype == torch.int16


def test_label_types_are_preserved() -> None:
    label = object_label(4)
    sampler = SparseInstanceSamplingd("label", 0.5, id_key="name")
    for array in (label.astype(np.uint16), torch.as_tensor(label).float(), torch.as_tensor(label).long()):
        out = sampler({"label": array, "name": "same"})["label"]
        assert type(out) is type(array) and out.dtype == array.dtype
        assert len(np.setdiff1d(np.unique(np.asarray(out)), [0])) == 2


def test_nothing_to_keep() -> None:
    label = np.array([[[0, -1], [0, 0]]], dtype=np.int32)
    out = SparseInstanceSamplingd("label", 0.2)({"label": as_meta(label, "empty.tif")})["label"]
    np.testing.assert_array_equal(out.numpy(), label)
    assert kept_ids(out) == []


def test_other_keys_untouched_and_missing_keys_allowed() -> None:
    label = object_label(3)
    data = {"label": as_meta(label, "x.tif"), "image": np.ones((1, 12, 12))}
    out = SparseInstanceSamplingd(["label", "label_extra"], 0.5, allow_missing_keys=True)(data)
    assert out["image"] is data["image"]
    with pytest.raises(KeyError):
        SparseInstanceSamplingd(["label", "label_extra"], 0.5)(data)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, float("nan")])
def test_invalid_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction must be in"):
        SparseInstanceSamplingd("label", fraction)


@pytest.mark.parametrize("fraction", ["0.5", True, None])
def test_fraction_of_wrong_type(fraction: object) -> None:
    with pytest.raises(TypeError, match="fraction"):
        SparseInstanceSamplingd("label", fraction)  # type: ignore[arg-type]


def test_invalid_options() -> None:
    with pytest.raises(ValueError, match="requires fraction=1.0"):
        SparseInstanceSamplingd("label", 0.5, keep_background=True)
    with pytest.raises(ValueError, match="background_id must be >= 0"):
        SparseInstanceSamplingd("label", 0.5, background_id=-1)
    with pytest.raises(TypeError, match="seed"):
        SparseInstanceSamplingd("label", 0.5, seed=1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        {"label": torch.as_tensor(object_label(3))},
        {"label": object_label(3)},
        {"label": MetaTensor(torch.as_tensor(object_label(3)))},
    ],
)
def test_missing_identity_is_a_clear_error(data: dict) -> None:
    with pytest.raises(ValueError, match="has no identity"):
        SparseInstanceSamplingd("label", 0.5)(data)


def test_missing_id_key_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="id_key 'case' is missing"):
        SparseInstanceSamplingd("label", 0.5, id_key="case")({"label": object_label(3)})
    with pytest.raises(ValueError, match="has no identity"):
        SparseInstanceSamplingd("label", 1.0, manifest_path=tmp_path / "m.json")({"label": object_label(3)})


def test_full_fraction_without_manifest_needs_no_identity() -> None:
    label = object_label(3)
    out = SparseInstanceSamplingd("label", 1.0)({"label": label})["label"]
    np.testing.assert_array_equal(out, label)


@pytest.mark.parametrize(
    "label, error, message",
    [
        (np.ones((1, 2, 2), dtype=bool), TypeError, "boolean"),
        (np.full((1, 2, 2), 1.5, dtype=np.float32), ValueError, "non-integral"),
        (np.full((1, 2, 2), -2, dtype=np.int32), ValueError, "must be >= -1"),
    ],
)
def test_invalid_label(label: np.ndarray, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        SparseInstanceSamplingd("label", 0.5, id_key="name")({"label": label, "name": "n"})


def test_manifest_written_merged_and_consistent(tmp_path) -> None:
    manifest = tmp_path / "sub" / "kept.json"
    manifest.parent.mkdir()
    manifest.write_text(json.dumps({"earlier.tif": [4, 9]}))
    sampler = SparseInstanceSamplingd("label", 0.4, seed=2, manifest_path=manifest)
    sizes = {"a.tif": 5, "b.tif": 10, "c.tif": 0}
    outputs = {name: sampler({"label": as_meta(object_label(k), f"/d/{name}")})["label"] for name, k in sizes.items()}
    recorded = json.loads(manifest.read_text())
    assert recorded == {"earlier.tif": [4, 9], **{name: kept_ids(out) for name, out in outputs.items()}}
    assert sorted(os.listdir(manifest.parent)) == ["kept.json", "kept.json.lock"]


def test_same_label_twice_writes_the_same_manifest(tmp_path) -> None:
    manifest = tmp_path / "kept.json"
    data = {"label": as_meta(object_label(6), "a.tif")}
    SparseInstanceSamplingd("label", 0.5, manifest_path=manifest)(data)
    first = manifest.read_text()
    SparseInstanceSamplingd("label", 0.5, manifest_path=manifest)(data)
    assert manifest.read_text() == first


class GeneratedLabels(torch.utils.data.Dataset):
    """Label images with 3..17 objects, generated from the index, named like files on disk."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict:
        label = object_label(3 + 2 * index, shape=(1, 8, 8))
        return {"label": as_meta(label, f"/data/train/label_{index:03d}.tif")}


def sampled_ids(num_workers: int, epochs: int, manifest=None) -> list[list[str]]:
    """The kept-ids meta data of every image, in order, for each epoch of a DataLoader."""
    sampler = SparseInstanceSamplingd("label", 0.3, seed=11, manifest_path=manifest)
    dataset = Dataset(GeneratedLabels(), transform=sampler)
    loader = DataLoader(dataset, batch_size=2, num_workers=num_workers, shuffle=False)
    return [[ids for batch in loader for ids in batch["label"].meta["spoco_kept_ids"]] for _ in range(epochs)]


def test_identical_across_epochs_and_data_loader_workers(tmp_path) -> None:
    single = sampled_ids(num_workers=0, epochs=2)
    parallel = sampled_ids(num_workers=2, epochs=2, manifest=tmp_path / "kept.json")
    assert single[0] == single[1] == parallel[0] == parallel[1]
    assert [len(json.loads(ids)) for ids in single[0]] == [max(1, int(0.3 * k + 0.5)) for k in range(3, 19, 2)]
    recorded = json.loads((tmp_path / "kept.json").read_text())
    assert recorded == {f"label_{i:03d}.tif": json.loads(ids) for i, ids in enumerate(single[0])}


@pytest.mark.slow
def test_identical_across_processes() -> None:
    script = (
        "import json, sys\n"
        f"sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
        "from test_sparse_sampling import GeneratedLabels\n"
        "from spoco_monai.transforms import SparseInstanceSamplingd\n"
        "sampler = SparseInstanceSamplingd('label', 0.3, seed=11)\n"
        "labels = GeneratedLabels()\n"
        "print(json.dumps([sampler(labels[i])['label'].meta['spoco_kept_ids'] for i in range(len(labels))]))\n"
    )
    # A different string-hash salt in the child shows that Python's salted hash() plays no part.
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    sampler = SparseInstanceSamplingd("label", 0.3, seed=11)
    labels = GeneratedLabels()
    here = [sampler(labels[i])["label"].meta["spoco_kept_ids"] for i in range(len(labels))]
    assert json.loads(child.stdout.strip().splitlines()[-1]) == here


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_label_stays_on_device() -> None:
    label = as_meta(object_label(6), "g.tif").cuda()
    out = SparseInstanceSamplingd("label", 0.5)({"label": label})["label"]
    cpu = SparseInstanceSamplingd("label", 0.5)({"label": as_meta(object_label(6), "g.tif")})["label"]
    assert out.is_cuda and torch.equal(out.cpu(), cpu.as_tensor())
