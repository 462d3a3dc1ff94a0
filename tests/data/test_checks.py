from __future__ import annotations

from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import tifffile
from scipy import ndimage

from monai.bundle import ConfigParser

from spoco_monai.data import (
    HDF5Reader,
    TiffReader,
    check_dataset,
    check_new_outputs,
    load_datalist,
    write_synthetic_dataset,
)
from spoco_monai.data.checks import neighbour_correlation

BUNDLE_CONFIGS = Path(__file__).parents[2] / "bundle" / "configs"


def _tif(path, array):
    tifffile.imwrite(path, array, photometric="minisblack", metadata={"axes": "ZYX"[3 - array.ndim:]})
    return str(path)


def _objects(shape):
    label = np.zeros(shape, np.int32)
    label[(slice(0, 2),) * len(shape)] = 1
    return label


@pytest.fixture
def good_2d(tmp_path):
    image = _tif(tmp_path / "i.tif", np.ones((8, 9), np.float32))
    return {"image": image, "label": _tif(tmp_path / "l.tif", _objects((8, 9)))}


def test_valid_items_are_returned_unchanged(good_2d):
    items = [good_2d]
    assert check_dataset(items, spatial_dims=2) is items
    assert check_dataset(items, spatial_dims=2, reader=TiffReader()) is items
    assert check_dataset(items, 2, reader="spoco_monai.data.TiffReader") is items


def test_empty_datalist():
    with pytest.raises(ValueError, match="empty or invalid datalist"):
        check_dataset([], spatial_dims=3)
    with pytest.raises(ValueError, match="empty or invalid datalist"):
        check_dataset({"training": []}, spatial_dims=3)


def test_missing_file_is_named(tmp_path, good_2d):
    items = [good_2d, {"image": str(tmp_path / "gone.tif"), "label": good_2d["label"]}]
    with pytest.raises(ValueError, match=r"item 1: file not found: .*gone\.tif"):
        check_dataset(items, spatial_dims=2)
    with pytest.raises(ValueError, match=r"file not found: .*absent\.h5:raw"):
        check_dataset([{"image": str(tmp_path / "absent.h5:raw"), "label": good_2d["label"]}], 2)


def test_missing_label_entry_and_non_dict_item(good_2d):
    with pytest.raises(ValueError, match="no 'label' entry"):
        check_dataset([{"image": good_2d["image"]}], 2)
    assert check_dataset([{"image": good_2d["image"]}], 2, label_key=None)
    with pytest.raises(ValueError, match="expected a dict with key 'image'"):
        check_dataset(["a.tif"], 2)


def test_shape_mismatch_names_both_files(tmp_path, good_2d):
    items = [{"image": good_2d["image"], "label": _tif(tmp_path / "wide.tif", _objects((8, 10)))}]
    with pytest.raises(ValueError, match=r"wide\.tif: label spatial shape \(8, 10\) differs from image .*i\.tif"):
        check_dataset(items, spatial_dims=2)


def test_2d_config_on_3d_data_and_vice_versa(tmp_path, good_2d):
    volume = {"image": _tif(tmp_path / "v.tif", np.ones((3, 8, 9))),
              "label": _tif(tmp_path / "vl.tif", _objects((3, 8, 9)))}
    with pytest.raises(ValueError, match=r"v\.tif: image is 3D .* spatial_dims=2"):
        check_dataset([volume], spatial_dims=2)
    with pytest.raises(ValueError, match=r"i\.tif: image is 2D .* spatial_dims=3"):
        check_dataset([good_2d], spatial_dims=3)
    assert check_dataset([volume], spatial_dims=3)


def test_label_without_objects(tmp_path, good_2d):
    items = [{"image": good_2d["image"], "label": _tif(tmp_path / "empty.tif", np.zeros((8, 9), np.int32))}]
    with pytest.raises(ValueError, match=r"empty\.tif: label has no object \(no id > 0\)"):
        check_dataset(items, spatial_dims=2)
    assert check_dataset(items, spatial_dims=2, require_objects=False)
    ignore_only = [{"image": good_2d["image"], "label": _tif(tmp_path / "ignore.tif", -np.ones((8, 9), np.int32))}]
    with pytest.raises(ValueError, match="ignore.tif: label has no object"):
        check_dataset(ignore_only, spatial_dims=2)


def test_hdf5_and_nifti_items(tmp_path):
    with h5py.File(tmp_path / "v.h5", "w") as file:
        file["raw"] = np.ones((3, 4, 5), np.uint8)
        file["label"] = _objects((3, 4, 6))
    h5_item = {"image": f"{tmp_path}/v.h5:raw", "label": f"{tmp_path}/v.h5:label"}
    with pytest.raises(ValueError, match=r"v\.h5:label: label spatial shape \(3, 4, 6\)"):
        check_dataset([h5_item], spatial_dims=3, reader=HDF5Reader())
    nib.save(nib.Nifti1Image(np.ones((3, 4, 5), np.float32), np.eye(4)), tmp_path / "i.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((3, 4, 5), np.int16), np.eye(4)), tmp_path / "l.nii.gz")
    with pytest.raises(ValueError, match=r"l\.nii\.gz: label has no object"):
        check_dataset([{"image": str(tmp_path / "i.nii.gz"), "label": str(tmp_path / "l.nii.gz")}], 3)


def test_ambiguous_container_is_reported_not_crashing(tmp_path):
    with h5py.File(tmp_path / "two.h5", "w") as file:
        file["raw"] = np.ones((3, 4), np.uint8)
        file["label"] = _objects((3, 4))
    with pytest.raises(ValueError, match=r"cannot read .*two\.h5: .*holds 2 datasets"):
        check_dataset([{"image": str(tmp_path / "two.h5"), "label": f"{tmp_path}/two.h5:label"}], 2)


def test_all_problems_are_listed_in_one_message(tmp_path, good_2d):
    items = [{"image": str(tmp_path / f"gone{i}.tif"), "label": good_2d["label"]} for i in range(25)]
    with pytest.raises(ValueError, match=r"25 problem\(s\)(.|\n)*gone19\.tif\n  \.\.\. and 5 more"):
        check_dataset(items, spatial_dims=2)


def test_unreadable_label_is_named(tmp_path, good_2d):
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not a tiff")
    with pytest.raises(ValueError, match=r"item 0: cannot read .*broken\.tif"):
        check_dataset([{"image": good_2d["image"], "label": str(broken)}], spatial_dims=2)


def _evaluate_in_config(items, expression):
    imports = ["$from spoco_monai.data import check_dataset"]
    parser = ConfigParser({"imports": imports, "items": items, "checked": expression})
    parser.get_parsed_content("imports")  # as ConfigWorkflow.initialize does first
    return parser.get_parsed_content("checked")


def test_callable_from_a_bundle_config_expression(good_2d):
    assert _evaluate_in_config([good_2d], "$check_dataset(@items, 2)") == [good_2d]
    # MONAI wraps errors raised in config expressions; the check's message is the cause.
    with pytest.raises(RuntimeError) as raised:
        _evaluate_in_config([good_2d], "$check_dataset(@items, 3)")
    assert isinstance(raised.value.__cause__, ValueError) and "spatial_dims=3" in str(raised.value.__cause__)


def test_synthetic_hdf5_folder_passes(tmp_path):
    write_synthetic_dataset(tmp_path, n_volumes=2, shape=(6, 16, 16), format="h5", mean_cell_size=6.0)
    items = load_datalist(tmp_path, split="training")
    assert items[0]["image"].endswith("images/synthetic_000.h5")
    assert check_dataset(items, spatial_dims=3, reader=HDF5Reader()) is items


def test_invalid_spatial_dims(good_2d):
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3"):
        check_dataset([good_2d], spatial_dims=4)


def test_real_dsb2018_items_pass(shared_data):
    folder = shared_data / "dsb2018_fluo" / "val"
    names = sorted(path.name for path in (folder / "images").iterdir())[:5]
    items = [{"image": str(folder / "images" / n), "label": str(folder / "labels" / n)} for n in names]
    assert check_dataset(items, spatial_dims=2, reader=TiffReader()) is items


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_image_is_named(tmp_path, good_2d, value):
    image = np.ones((8, 9), np.float32)
    image[2, 3] = value
    item = {"image": _tif(tmp_path / "bad.tif", image), "label": good_2d["label"]}
    with pytest.raises(ValueError, match=r"bad\.tif: image holds 1 NaN or infinite value"):
        check_dataset([item], spatial_dims=2)
    with pytest.raises(ValueError, match=r"bad\.tif: image holds 1 NaN"):
        check_dataset([{"image": item["image"]}], spatial_dims=2, label_key=None)


@pytest.mark.parametrize(
    "label, message",
    [
        (
            np.where(_objects((8, 9)) > 0, 1.5, 0.0).astype(np.float32),
            r"l2\.tif: label holds non-integer values \(e\.g\. 1\.5",
        ),
        (_objects((8, 9)) - 3, r"l2\.tif: label holds values below -1 \(minimum -3\)"),
    ],
)
def test_bad_label_values_are_named(tmp_path, good_2d, label, message):
    item = {"image": good_2d["image"], "label": _tif(tmp_path / "l2.tif", label)}
    with pytest.raises(ValueError, match=message):
        check_dataset([item], spatial_dims=2)


def test_integer_valued_float_labels_pass(tmp_path, good_2d):
    item = {"image": good_2d["image"], "label": _tif(tmp_path / "l2.tif", _objects((8, 9)).astype(np.float32))}
    assert check_dataset([item], spatial_dims=2)


def test_channel_mismatch_is_named(good_2d):
    with pytest.raises(ValueError, match=r"i\.tif: image has 1 channel\(s\) but the network expects in_channels=2"):
        check_dataset([good_2d], spatial_dims=2, in_channels=2)
    assert check_dataset([good_2d], spatial_dims=2, in_channels=1)


def test_truncated_files_are_named(tmp_path, good_2d):
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    tifffile.imwrite(tmp_path / "t.tif", image, compression="zlib")
    content = (tmp_path / "t.tif").read_bytes()
    (tmp_path / "t.tif").write_bytes(content[:200] + bytes(len(content) - 200))
    label = _tif(tmp_path / "l64.tif", _objects((64, 64)))
    with pytest.raises(ValueError, match=r"cannot read .*t\.tif .*truncated or corrupt"):
        check_dataset([{"image": str(tmp_path / "t.tif"), "label": label}], spatial_dims=2)
    with h5py.File(tmp_path / "v.h5", "w") as file:
        file["raw"] = image
    content = (tmp_path / "v.h5").read_bytes()
    (tmp_path / "v.h5").write_bytes(content[: len(content) // 2])
    with pytest.raises(ValueError, match=r"cannot read .*v\.h5"):
        check_dataset([{"image": f"{tmp_path}/v.h5:raw", "label": label}], spatial_dims=2)


def test_existing_inference_outputs_name_the_bundle_option(tmp_path, good_2d):
    (tmp_path / "i_instances.nii.gz").write_bytes(b"keep")
    with pytest.raises(FileExistsError, match=r"already exist: .*i_instances.nii.gz; pass --overwrite True to replace"):
        check_new_outputs([good_2d], str(tmp_path), "instances", ".nii.gz")
    assert check_new_outputs([good_2d], str(tmp_path), "instances", ".nii.gz", overwrite=True) == [good_2d]


def test_existing_volume_output_of_the_bundle_names_its_option(tmp_path):
    parser = ConfigParser()
    parser.read_config([str(BUNDLE_CONFIGS / name) for name in ("common.json", "inference.json", "inference_volume.json")])
    (tmp_path / "labels.zarr").mkdir()
    parser["output_path"] = str(tmp_path / "labels.zarr")
    with pytest.raises(RuntimeError) as error:
        parser.get_parsed_content("initialize")
    assert "labels.zarr already exists; choose another output path or pass --overwrite True to replace it." in str(
        error.value.__cause__
    )


def test_colour_image_for_a_grey_network_is_told_how_to_convert(tmp_path):
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 9, 3), np.uint8), photometric="rgb")
    with pytest.raises(ValueError, match=r"rgb\.tif: image has 3 channel\(s\) but the network expects in_channels=1; "
                                         r"it looks like a colour \(RGB\) image; .*convert\('L'\)"):
        check_dataset([{"image": str(tmp_path / "rgb.tif")}], spatial_dims=2, label_key=None, in_channels=1)


def test_neighbour_correlation_exact_values():
    rows, columns = np.mgrid[0:101, 0:101]
    assert neighbour_correlation(columns) == pytest.approx(1.0)  # a ramp: each value predicts the next
    assert neighbour_correlation((rows + columns) % 2) == pytest.approx(-1.0)  # a checkerboard along both axes
    assert neighbour_correlation(np.ones((101, 101))) is None  # constant: nothing to correlate
    assert neighbour_correlation(columns[:8, :9]) is None  # too few pairs to judge
    noise = np.random.default_rng(0).integers(0, 256, (200, 200))
    assert abs(neighbour_correlation(noise)) < 0.02


def test_an_image_of_noise_is_named_with_the_likely_cause(tmp_path, good_2d):
    # a smooth 16-bit picture saved as 8 bits keeps only its lowest byte: neighbouring values no longer correlate
    picture = ndimage.gaussian_filter(np.random.default_rng(0).normal(size=(150, 150)), 4)
    picture = ((picture - picture.min()) / np.ptp(picture) * 60000).astype(np.uint16)
    label = _tif(tmp_path / "l.tif", _objects((150, 150)))
    good = {"image": _tif(tmp_path / "picture.tif", picture), "label": label}
    assert check_dataset([good], spatial_dims=2)
    cut = {"image": _tif(tmp_path / "cut.tif", (picture % 256).astype(np.uint8)), "label": label}
    with pytest.raises(ValueError, match=r"cut\.tif: image looks like noise: .* 16-bit intensities cut to 8 bits"):
        check_dataset([cut], spatial_dims=2)


def test_real_volumes_with_a_picture_pass_and_the_noise_volume_is_caught(shared_data):
    def correlation(name):
        with h5py.File(shared_data / "lm3d" / name, "r") as handle:
            return neighbour_correlation(handle["raw"][:])

    # the noisiest real volume here, and one whose raw channel is noise (its nuclei are only in its labels)
    assert correlation("gonuclear_1135.h5") > 0.5
    assert correlation("gonuclear_1137.h5") < 0.01
