from __future__ import annotations

import json

import pytest

from spoco_monai.data import load_datalist, split_items


def _touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


def test_json_datalist_resolves_relative_paths(tmp_path):
    content = {
        "name": "toy",
        "training": [{"image": "images/a.tif", "label": "labels/a.tif"}],
        "validation": [{"image": "v.h5:raw", "label": "v.h5:label"}],
    }
    (tmp_path / "datalist.json").write_text(json.dumps(content))
    datalist = load_datalist(tmp_path / "datalist.json")
    assert datalist == {
        "training": [{"image": str(tmp_path / "images/a.tif"), "label": str(tmp_path / "labels/a.tif")}],
        "validation": [{"image": f"{tmp_path}/v.h5:raw", "label": f"{tmp_path}/v.h5:label"}],
    }
    other = tmp_path / "elsewhere"
    assert load_datalist(tmp_path / "datalist.json", data_dir=other, split="training") == [
        {"image": str(other / "images/a.tif"), "label": str(other / "labels/a.tif")}
    ]


def test_json_without_validation_gives_an_empty_split(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps({"training": [{"image": "a.nii.gz", "label": "b.nii.gz"}]}))
    assert load_datalist(tmp_path / "d.json", split="validation") == []


def test_folder_of_pairs_is_matched_by_name(tmp_path):
    _touch(tmp_path / "images", "b.tif", "a.tif", ".hidden")
    _touch(tmp_path / "labels", "a.tif", "b.tif")
    datalist = load_datalist(tmp_path)
    assert datalist["validation"] == []
    assert datalist["training"] == [
        {"image": str(tmp_path / "images" / name), "label": str(tmp_path / "labels" / name)}
        for name in ("a.tif", "b.tif")
    ]


def test_folder_with_split_subfolders(tmp_path):
    for split, name in (("train", "t.tif"), ("val", "v.tif")):
        _touch(tmp_path / split / "images", name)
        _touch(tmp_path / split / "labels", name)
    datalist = load_datalist(tmp_path)
    assert [item["image"] for item in datalist["training"]] == [str(tmp_path / "train/images/t.tif")]
    assert [item["label"] for item in datalist["validation"]] == [str(tmp_path / "val/labels/v.tif")]


def test_unpaired_files_are_named(tmp_path):
    _touch(tmp_path / "images", "a.tif", "b.tif")
    _touch(tmp_path / "labels", "a.tif", "c.tif")
    with pytest.raises(ValueError, match=r"images without label: \['b.tif'\], labels without image: \['c.tif'\]"):
        load_datalist(tmp_path)


def test_invalid_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_datalist(tmp_path / "absent.json")
    with pytest.raises(ValueError, match="not a dataset folder"):
        load_datalist(tmp_path)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_datalist(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ValueError, match="JSON object"):
        load_datalist(tmp_path / "list.json")
    with pytest.raises(ValueError, match="split must be one of"):
        load_datalist(tmp_path / "list.json", split="test")


def test_real_dsb2018_folder(shared_data):
    datalist = load_datalist(shared_data / "dsb2018_fluo")
    assert len(datalist["training"]) == 357 and len(datalist["validation"]) == 68
    first = datalist["training"][0]
    assert first["image"].endswith("images/003cee89357d9fe1.tif")
    assert first["label"].endswith("labels/003cee89357d9fe1.tif")


def test_split_items_keeps_the_first_items_of_a_split():
    datalist = {"training": [{"image": "a"}, {"image": "b"}], "validation": [{"image": "c"}, {"image": "d"}]}
    assert split_items(datalist, "validation") == [{"image": "c"}, {"image": "d"}]
    assert split_items(datalist, "validation", limit=1) == [{"image": "c"}]
    assert split_items(datalist, "training", limit=5) == datalist["training"]


@pytest.mark.parametrize("datalist", [{"training": [{"image": "a"}], "validation": []}, {"training": [{"image": "a"}]}])
def test_split_items_refuses_an_empty_split_rather_than_borrow_training_items(datalist):
    with pytest.raises(ValueError, match=r"no validation items: .* 'validation' .* val/ sub-folder"):
        split_items(datalist, "validation")


def test_split_items_rejects_an_unknown_split():
    with pytest.raises(ValueError, match="split must be one of"):
        split_items({"training": []}, "test")
