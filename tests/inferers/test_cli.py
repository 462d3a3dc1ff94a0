from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import socket
from pathlib import Path
from types import SimpleNamespace

import dask
import h5py
import numpy as np
import pytest
import tifffile
import torch
import zarr
from PIL import Image
from inference_fakes import voronoi_labels
from skimage.metrics import adapted_rand_error

from spoco_monai.cli import build_parser, bundle_settings, command_line_settings, load_bundle_network, main
from spoco_monai.data import hdf5_writing
from spoco_monai.data.volume_io import open_volume, write_volume
from spoco_monai.inferers import DirectoryBlockStore, block_store, dask_cluster

# a 1x1x1 convolution that scales the (z-scored) label id into a 4-dim embedding: with ids 1..10 (std < 3)
# objects lie more than 50 / 3 > 2 delta_d apart
NETWORK_DEF = {"_target_": "torch.nn.Conv3d", "in_channels": 1, "out_channels": 4, "kernel_size": 1, "bias": False}
WEIGHT = torch.tensor([50.0, 0.0, 0.0, 0.0]).view(4, 1, 1, 1, 1)


SETTINGS = {"_target_": "spoco_monai.inferers.SegmentationSettings", "roi_size": [32, 32, 32], "normalize": True}


def make_bundle(root, config, checkpoint):
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "configs" / "common.json").write_text(json.dumps(config))
    (root / "configs" / "inference.json").write_text("{}")
    torch.save(checkpoint, root / "models" / "model.pt")
    return root


@pytest.fixture()
def bundle(tmp_path):
    return make_bundle(tmp_path / "bundle", {"segmentation": SETTINGS, "network_def": NETWORK_DEF}, {"weight": WEIGHT})


@pytest.fixture()
def volume(tmp_path):
    labels = voronoi_labels((40, 48, 48), 10, seed=5)
    path = f"{tmp_path / 'image.h5'}:raw"
    write_volume(path, labels.astype(np.float32))
    return path, labels


def test_segment_command_writes_labels(tmp_path, bundle, volume, capsys):
    path, labels = volume
    output = tmp_path / "labels.zarr"
    status = main(
        ["segment", path, str(output), "--bundle", str(bundle), "--block-shape", "16", "--overlap", "0.5",
         "--device", "cpu", "--no-progress"]
    )
    assert status == 0
    assert capsys.readouterr().out.strip() == str(output)
    with open_volume(output) as result:
        assert adapted_rand_error(labels, result[:])[0] == 0.0


def test_segment_command_refuses_existing_output(tmp_path, bundle, volume, capsys):
    path, _ = volume
    output = tmp_path / "labels.tif"
    output.write_bytes(b"keep")
    status = main(["segment", path, str(output), "--bundle", str(bundle), "--device", "cpu", "--no-progress"])
    assert status == 1
    assert capsys.readouterr().err == (
        f"spoco-monai segment: error: {output} already exists; choose another output path or pass --overwrite to "
        "replace it.\n"
    )
    assert output.read_bytes() == b"keep"


def test_nested_checkpoint_and_explicit_roi(tmp_path, volume):
    config = {"network_def": NETWORK_DEF}
    bundle = make_bundle(tmp_path / "nested", config, {"network": {"weight": WEIGHT}, "epoch": 3})
    network, _ = load_bundle_network(bundle)
    assert not network.training
    torch.testing.assert_close(network.weight, WEIGHT)
    path, _ = volume
    output = f"{tmp_path / 'labels.h5'}:seg"
    arguments = ["segment", path, output, "--bundle", str(bundle), "--roi-size", "32", "32", "32", "--no-progress"]
    assert main([*arguments, "--normalize", "none"]) == 0
    with pytest.raises(SystemExit):
        main([*arguments, "--blend", "pixels"])


@pytest.mark.parametrize(
    "config, checkpoint, message",
    [
        ({"segmentation": SETTINGS}, {"weight": WEIGHT}, "define no 'network_def'"),
        ({"network_def": NETWORK_DEF}, {"weight": WEIGHT}, "defines no 'segmentation'"),
        ({"network_def": NETWORK_DEF, "segmentation": [32]}, {"weight": WEIGHT}, "expected a spoco_monai"),
        ({"segmentation": SETTINGS, "network_def": NETWORK_DEF}, {"epoch": 3, "optimizer": {}}, "holds no state dict"),
    ],
)
def test_invalid_bundle_reports_error(tmp_path, volume, capsys, config, checkpoint, message):
    bundle = make_bundle(tmp_path / "bad", config, checkpoint)
    path, _ = volume
    assert main(["segment", path, str(tmp_path / "out.zarr"), "--bundle", str(bundle), "--no-progress"]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.zarr").exists()


def error_line(stderr: str) -> str:
    """The one error line, last on stderr; a run that got as far as the model prints only its model line before."""
    lines = stderr.splitlines()
    assert lines[-1].startswith("spoco-monai segment: error: ")
    assert len(lines) == 1 or (len(lines) == 2 and lines[0].startswith("spoco-monai segment: model ")), stderr
    return lines[-1]


def _segment(tmp_path, bundle, path, output, *options):
    return main(["segment", path, str(output), "--bundle", str(bundle), "--block-shape", "16", "--device", "cpu",
                 "--no-progress", *options])


def test_overwrite_replaces_only_the_output_dataset(tmp_path, bundle, volume):
    path, labels = volume
    output = tmp_path / "results.h5"
    with h5py.File(output, "w") as file:
        file["keep"] = np.arange(5)
        file["seg"] = np.zeros(3)
    assert _segment(tmp_path, bundle, path, f"{output}:seg", "--overwrite") == 0
    with h5py.File(output, "r") as file:
        assert sorted(file) == ["keep", "seg"]
        np.testing.assert_array_equal(file["keep"][:], np.arange(5))
        assert adapted_rand_error(labels, file["seg"][:])[0] == 0.0


@pytest.mark.parametrize("normalize", ["zscore", "none"])
def test_non_finite_input_is_refused_before_work(tmp_path, bundle, capsys, normalize):
    image = voronoi_labels((40, 48, 48), 10, seed=5).astype(np.float32)
    image[3, 4, 5] = np.nan
    path = f"{tmp_path / 'nan.h5'}:raw"
    write_volume(path, image)
    assert _segment(tmp_path, bundle, path, tmp_path / "out.zarr", "--normalize", normalize) == 1
    error = capsys.readouterr().err
    assert "nan.h5:raw holds NaN or infinite values" in error_line(error)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "nan.h5"]


def test_truncated_inputs_are_one_line(tmp_path, bundle, capsys):
    image = np.random.default_rng(0).random((40, 48, 48)).astype(np.float32)
    tifffile.imwrite(tmp_path / "cut.tif", image, compression="zlib")
    content = (tmp_path / "cut.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(content[: len(content) // 2])
    # compressed data of the first plane overwritten: the structure is intact, decompression fails
    (tmp_path / "bad.tif").write_bytes(content[:300] + bytes(200) + content[500:])
    write_volume(f"{tmp_path / 'cut.h5'}:raw", image)
    content = (tmp_path / "cut.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(content[: len(content) // 2])
    for path in (str(tmp_path / "cut.tif"), str(tmp_path / "bad.tif"), f"{tmp_path / 'cut.h5'}:raw"):
        assert _segment(tmp_path, bundle, path, tmp_path / "out.zarr") == 1
        error = capsys.readouterr().err
        line = error_line(error)
        assert path in line and "truncated or corrupt" in line, error


def test_bad_checkpoints_are_one_line(tmp_path, bundle, volume, capsys):
    path, _ = volume
    (tmp_path / "notes.pt").write_text("hello\n")
    torch.save(torch.nn.Conv2d(1, 4, 1, bias=False).state_dict(), tmp_path / "two_d.pt")
    cases = (("notes.pt", "is not a PyTorch checkpoint"), ("two_d.pt", "for a 2D network, this run builds a 3D one"))
    for checkpoint, message in cases:
        assert _segment(tmp_path, bundle, path, tmp_path / "out.zarr", "--checkpoint", str(tmp_path / checkpoint)) == 1
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and checkpoint in error and message in error, error


def test_concurrent_run_on_one_output_stops_at_once(tmp_path, bundle, volume, capsys):
    path, labels = volume
    output = tmp_path / "labels.zarr"
    # the lock as another process holds it (a lock of this process would be re-entrant)
    with open(f"{output}.spoco-work.lock", "w") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        other.write("pid 4242 on elsewhere")
        other.flush()
        assert _segment(tmp_path, bundle, path, output) == 1
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "another run (pid 4242 on elsewhere) is writing this output" in error
        assert not output.exists()
    assert _segment(tmp_path, bundle, path, output) == 0
    with open_volume(output) as result:
        assert adapted_rand_error(labels, result[:])[0] == 0.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "image.h5", "labels.zarr"]


def _add_model(bundle, name, weight_scale, spatial_dims=3, element_size=None):
    """A second model in the bundle's metadata, with its own weights and an overlay config."""
    torch.save({"weight": weight_scale * WEIGHT}, bundle / "models" / f"{name}.pt")
    overlay = {"spatial_dims": spatial_dims, "in_channels": 1, "element_size": element_size}
    (bundle / "configs" / f"{name}.json").write_text(json.dumps(overlay))
    metadata = {
        "description": "default",
        "additional_models": {
            name: {
                "model_path": f"models/{name}.pt",
                "inference_config": f"configs/{name}.json",
                "description": f"the {name} model.",
                "data_source": "hand-made volumes",
            }
        },
    }
    (bundle / "configs" / "metadata.json").write_text(json.dumps(metadata))


def test_model_by_name_picks_its_weights_and_says_what_runs(tmp_path, bundle, volume, capsys):
    path, labels = volume
    # weights of zero put every voxel on one embedding: one object, unlike the default model
    _add_model(bundle, "flat", 0.0)
    assert main(["segment", path, str(tmp_path / "a.zarr"), "--bundle", str(bundle), "--model", "flat",
                 "--device", "cpu", "--no-progress"]) == 0
    error = capsys.readouterr().err
    assert "model flat (models/flat.pt): the flat model." in error
    assert "warning" not in error and "test-time flips" not in error
    with open_volume(str(tmp_path / "a.zarr")) as result:
        assert np.unique(result[...]).tolist() == [1]
    assert main(["segment", path, str(tmp_path / "b.zarr"), "--bundle", str(bundle), "--model", "flat",
                 "--device", "cpu", "--no-progress", "--test-time-flips", "on"]) == 0
    assert "test-time flips on: every window runs 8 times (mirrored)" in capsys.readouterr().err
    with open_volume(str(tmp_path / "b.zarr")) as result:
        assert np.unique(result[...]).tolist() == [1]


def test_unknown_model_lists_the_shipped_ones(tmp_path, bundle, volume, capsys):
    _add_model(bundle, "flat", 0.0)
    assert main(["segment", volume[0], str(tmp_path / "a.zarr"), "--bundle", str(bundle), "--model", "nope"]) == 1
    assert "ships no model named 'nope' and no model folder is there; choose one of ['model', 'flat']" in capsys.readouterr().err


def test_input_unlike_the_training_data_is_warned_about_before_work(tmp_path, bundle, capsys):
    _add_model(bundle, "flat", 1.0)
    path = f"{tmp_path / 'two_channels.h5'}:raw"
    write_volume(path, np.ones((2, 40, 48, 48), dtype=np.float32))
    main(["segment", path, str(tmp_path / "a.zarr"), "--bundle", str(bundle), "--model", "flat", "--no-progress"])
    assert "warning: the input has 2 channel(s), the model was trained on 1." in capsys.readouterr().err
    path = f"{tmp_path / 'flat_image.h5'}:raw"
    write_volume(path, np.ones((48, 48), dtype=np.float32))
    main(["segment", path, str(tmp_path / "b.zarr"), "--bundle", str(bundle), "--model", "flat", "--no-progress"])
    assert "warning: the input has shape (48, 48), the model segments 3D images" in capsys.readouterr().err


def test_flags_replace_single_settings_and_default_to_the_bundle(bundle):
    _, config = load_bundle_network(bundle)
    parser = build_parser()
    plain = parser.parse_args(["segment", "in.h5", "out.zarr", "--bundle", str(bundle)])
    assert command_line_settings(plain, config, "cpu") == dataclasses.replace(bundle_settings(config), device="cpu")
    flags = ["--overlap", "0.5", "--min-size", "7", "--foreground", "intensity", "--normalize", "none",
             "--block-shape", "16", "--blend", "embeddings", "--clustering", "hdbscan", "--foreground-threshold", "0.7",
             "--affinity-delta-dist", "3"]
    given = parser.parse_args(["segment", "in.h5", "out.zarr", "--bundle", str(bundle), *flags])
    expected = dataclasses.replace(
        bundle_settings(config), overlap=0.5, clustering_kwargs={"min_size": 7}, foreground="intensity",
        normalize=False, block_shape=16, blend="embeddings", clustering="hdbscan", device="cpu",
        foreground_threshold=0.7, affinity_delta_dist=3.0,
    )
    assert command_line_settings(given, config, "cpu") == expected


def test_the_affinity_kernel_has_its_own_name_and_the_loss_margin_is_no_option(tmp_path, bundle, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["segment", "in.h5", "out.zarr", "--delta-dist", "3"])
    assert "unrecognized arguments: --delta-dist 3" in capsys.readouterr().err
    old = make_bundle(
        tmp_path / "old", {"segmentation": {**SETTINGS, "delta_dist": 3.0}, "network_def": NETWORK_DEF}, {"weight": WEIGHT}
    )
    _, config = load_bundle_network(old)
    with pytest.raises(ValueError, match="'delta_dist', now 'affinity_delta_dist'"):
        bundle_settings(config)


def test_test_time_flips_flag_turns_the_averaging_on_and_off(bundle):
    _, config = load_bundle_network(bundle)
    parser = build_parser()
    for flag, expected in (("on", True), ("off", False)):
        args = parser.parse_args(["segment", "in.h5", "out.zarr", "--bundle", str(bundle), "--test-time-flips", flag])
        assert command_line_settings(args, config, "cpu").test_time_flips is expected


def test_switching_the_clustering_keeps_only_its_own_options(tmp_path, capsys):
    watershed = {**SETTINGS, "clustering": "watershed", "clustering_kwargs": {"min_distance": 6, "min_size": 20}}
    bundle = make_bundle(tmp_path / "b", {"segmentation": watershed, "network_def": NETWORK_DEF}, {"weight": WEIGHT})
    _, config = load_bundle_network(bundle)
    parser = build_parser()
    to_mws = parser.parse_args(["segment", "in.h5", "out.zarr", "--bundle", str(bundle), "--clustering", "mws"])
    settings = command_line_settings(to_mws, config, "cpu")
    assert settings.clustering == "mws" and dict(settings.clustering_kwargs) == {"min_size": 20}
    assert "the bundle's clustering options ['min_distance'] belong to watershed and are left out" in (
        capsys.readouterr().err
    )
    # and back: the seeded watershed's own options from the command line
    mws_bundle = make_bundle(tmp_path / "m", {"segmentation": SETTINGS, "network_def": NETWORK_DEF}, {"weight": WEIGHT})
    _, config = load_bundle_network(mws_bundle)
    flags = ["--clustering", "watershed", "--min-distance", "5", "--boundary-threshold", "0.4"]
    to_watershed = parser.parse_args(["segment", "in.h5", "out.zarr", "--bundle", str(mws_bundle), *flags])
    settings = command_line_settings(to_watershed, config, "cpu")
    assert dict(settings.clustering_kwargs) == {"min_distance": 5.0, "boundary_threshold": 0.4}


def test_voxel_size_unlike_the_training_data_is_warned_about_before_work(tmp_path, bundle, capsys):
    _add_model(bundle, "fine", 1.0, element_size=[1.0, 0.25, 0.25])
    path = f"{tmp_path / 'image.h5'}:raw"
    write_volume(path, voronoi_labels((40, 48, 48), 10, seed=5).astype(np.float32))
    arguments = ["--bundle", str(bundle), "--model", "fine", "--no-progress", "--device", "cpu"]
    for element_size, output, warned in (((1.0, 0.25, 0.25), "a.zarr", False), ((1.0, 1.0, 1.0), "b.zarr", True)):
        with h5py.File(tmp_path / "image.h5", "a") as file:
            file["raw"].attrs["element_size_um"] = element_size
        assert main(["segment", path, str(tmp_path / output), *arguments]) == 0
        error = capsys.readouterr().err
        message = (
            "warning: the input's voxel size (1.0, 1.0, 1.0) differs from the model's training voxel size "
            "(1.0, 0.25, 0.25) (its config's element_size)"
        )
        assert (message in error) == warned, error


def test_an_input_of_noise_is_warned_about_before_work(tmp_path, bundle, capsys):
    arguments = ["--bundle", str(bundle), "--no-progress", "--device", "cpu"]
    picture = voronoi_labels((24, 48, 48), 10, seed=5).astype(np.float32)
    noise = np.random.default_rng(0).integers(0, 256, picture.shape).astype(np.float32)
    for image, output, warned in ((picture, "a.zarr", False), (noise, "b.zarr", True)):
        path = f"{tmp_path / output}.h5:raw"
        write_volume(path, image)
        assert main(["segment", path, str(tmp_path / output), *arguments]) == 0
        error = capsys.readouterr().err
        assert ("warning: the input looks like noise: neighbouring values are uncorrelated" in error) == warned, error


def _stop_after_saves(monkeypatch, count: int) -> None:
    """Make a run stop, as a kill would, right after it has saved ``count`` blocks."""
    save = DirectoryBlockStore.save
    saved = []

    def save_then_stop(store, index, core_labels, record):
        save(store, index, core_labels, record)
        saved.append(index)
        if len(saved) == count:
            raise KeyboardInterrupt

    monkeypatch.setattr(DirectoryBlockStore, "save", save_then_stop)


def test_resumed_segment_says_what_it_reuses_and_equals_an_uninterrupted_run(tmp_path, bundle, volume, monkeypatch,
                                                                            capsys):
    path, _ = volume
    output = tmp_path / "labels.zarr"
    _stop_after_saves(monkeypatch, 3)
    assert _segment(tmp_path, bundle, path, output) == 130
    monkeypatch.undo()
    capsys.readouterr()
    assert _segment(tmp_path, bundle, path, output) == 0
    assert f"spoco-monai segment: resuming the interrupted run in {output}.spoco-work: 3 of 8 blocks reused.\n" in (
        capsys.readouterr().err
    )
    assert _segment(tmp_path, bundle, path, tmp_path / "whole.zarr") == 0
    assert "resuming" not in capsys.readouterr().err
    with open_volume(output) as resumed, open_volume(tmp_path / "whole.zarr") as whole:
        np.testing.assert_array_equal(resumed[:], whole[:])


def test_resumed_segment_of_a_changed_input_segments_its_finished_blocks_again(tmp_path, bundle, volume, monkeypatch,
                                                                             capsys):
    path, labels = volume
    output = tmp_path / "labels.zarr"
    _stop_after_saves(monkeypatch, 1)
    assert _segment(tmp_path, bundle, path, output) == 130
    monkeypatch.undo()
    # other values of the same shape, mean and standard deviation: the input mirrored along Y
    mirrored = labels[:, ::-1].copy()
    write_volume(path, mirrored.astype(np.float32), overwrite=True)
    capsys.readouterr()
    assert _segment(tmp_path, bundle, path, output) == 0
    assert (
        f"spoco-monai segment: resuming the interrupted run in {output}.spoco-work: 0 of 8 blocks reused, 1 finished "
        "block(s) discarded and segmented again (the image values they read have changed since).\n"
    ) in capsys.readouterr().err
    assert _segment(tmp_path, bundle, path, tmp_path / "fresh.zarr") == 0
    with open_volume(output) as resumed, open_volume(tmp_path / "fresh.zarr") as fresh:
        np.testing.assert_array_equal(resumed[:], fresh[:])
        assert adapted_rand_error(mirrored, resumed[:])[0] == 0.0


def _fill_disk_for_hdf5(monkeypatch, full_disk) -> None:
    monkeypatch.setattr(hdf5_writing, "open", full_disk(4096), raising=False)


def _fill_disk_for_zarr(monkeypatch, full_disk) -> None:
    set_value = zarr.storage.LocalStore.set

    async def set_metadata_only(store, key, value, *args, **kwargs):
        if key.rsplit("/", 1)[-1] not in ("zarr.json", ".zarray", ".zattrs", ".zgroup"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return await set_value(store, key, value, *args, **kwargs)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", set_metadata_only)


def _fill_disk_for_tiff(monkeypatch, full_disk) -> None:
    def write_part(file, *args, **kwargs):
        with open(file, "wb") as handle:
            handle.write(b"II*\x00" + bytes(100))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tifffile, "imwrite", write_part)


@pytest.mark.parametrize(
    "output, fill_disk",
    [("labels.h5:seg", _fill_disk_for_hdf5), ("labels.zarr", _fill_disk_for_zarr), ("labels.tif", _fill_disk_for_tiff)],
)
def test_full_disk_at_the_output_is_one_line_and_loses_no_block(tmp_path, bundle, volume, monkeypatch, capsys,
                                                              full_disk, output, fill_disk):
    path, labels = volume
    file = tmp_path / output.split(":")[0]
    fill_disk(monkeypatch, full_disk)
    assert _segment(tmp_path, bundle, path, tmp_path / output) == 1
    monkeypatch.undo()
    assert error_line(capsys.readouterr().err) == (
        f"spoco-monai segment: error: {file}: no space left on the device. Free space, then run the same command "
        "again: it resumes."
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "image.h5", f"{file.name}.spoco-work"]
    assert len(list((tmp_path / f"{file.name}.spoco-work").glob("*.json"))) == 9  # the run's record and 8 blocks
    assert _segment(tmp_path, bundle, path, tmp_path / output) == 0
    assert f"in {file}.spoco-work: 8 of 8 blocks reused.\n" in capsys.readouterr().err
    with open_volume(tmp_path / output) as result:
        assert adapted_rand_error(labels, result[:])[0] == 0.0


def test_full_disk_at_a_block_is_one_line_and_keeps_the_finished_blocks(tmp_path, bundle, volume, monkeypatch, capsys,
                                                                       full_disk):
    path, labels = volume
    output = tmp_path / "labels.zarr"

    def open_on_full_disk(file, *args, **kwargs):
        # the fourth block's labels meet a full disk
        return (full_disk(100) if Path(file).name == ".partial-0000003.npy" else open)(file, *args, **kwargs)

    monkeypatch.setattr(block_store, "open", open_on_full_disk, raising=False)
    assert _segment(tmp_path, bundle, path, output) == 1
    monkeypatch.undo()
    work = tmp_path / "labels.zarr.spoco-work"
    assert error_line(capsys.readouterr().err) == (
        f"spoco-monai segment: error: {work / '0000003.npy'}: no space left on the device. Free space, then run the "
        "same command again: it resumes."
    )
    assert sorted(p.name for p in work.iterdir()) == [
        "0000000.json", "0000000.npy", "0000001.json", "0000001.npy", "0000002.json", "0000002.npy", "run.json"
    ]
    assert _segment(tmp_path, bundle, path, output) == 0
    assert f"in {work}: 3 of 8 blocks reused.\n" in capsys.readouterr().err
    with open_volume(output) as result:
        assert adapted_rand_error(labels, result[:])[0] == 0.0


def _deny_writing(monkeypatch, folder, read_only: bool) -> None:
    """``folder`` as on a read-only file system, or without write permission for this user."""
    access, statvfs = os.access, os.statvfs

    def denied(path, mode, *args, **kwargs):
        return False if Path(path) == folder and mode & os.W_OK else access(path, mode, *args, **kwargs)

    def flags(path):
        return SimpleNamespace(f_flag=os.ST_RDONLY if read_only else 0) if Path(path) == folder else statvfs(path)

    monkeypatch.setattr(os, "access", denied)
    monkeypatch.setattr(os, "statvfs", flags)


@pytest.mark.parametrize("case", ["parent is a file", "below a file", "missing folder", "read-only", "no permission"])
def test_unwritable_output_locations_are_one_line_before_any_work(tmp_path, bundle, volume, monkeypatch, capsys, case):
    path, _ = volume
    (tmp_path / "notes.txt").write_text("keep")
    (tmp_path / "out").mkdir()
    output, message = {
        "parent is a file": ("notes.txt/labels.zarr", "cannot write {tmp}/notes.txt/labels.zarr: {tmp}/notes.txt is a "
                             "file, not a folder."),
        "below a file": ("notes.txt/a/labels.zarr", "cannot write {tmp}/notes.txt/a/labels.zarr: {tmp}/notes.txt is "
                         "a file, not a folder."),
        "missing folder": ("missing/labels.zarr", "the directory {tmp}/missing for {tmp}/missing/labels.zarr does "
                           "not exist."),
        "read-only": ("out/labels.zarr", "cannot write {tmp}/out/labels.zarr: {tmp}/out is on a read-only file "
                      "system."),
        "no permission": ("out/labels.zarr", "cannot write {tmp}/out/labels.zarr: {tmp}/out is not writable for this "
                          "user."),
    }[case]
    if case in ("read-only", "no permission"):
        _deny_writing(monkeypatch, tmp_path / "out", read_only=case == "read-only")
    assert _segment(tmp_path, bundle, path, tmp_path / output) == 1
    assert capsys.readouterr().err == f"spoco-monai segment: error: {message.format(tmp=tmp_path)}\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        ["bundle", "configs", "common.json", "inference.json", "models", "model.pt", "image.h5", "notes.txt", "out"]
    )


def test_five_dimensional_input_is_told_that_no_model_segments_it(tmp_path, bundle, capsys):
    _add_model(bundle, "flat", 1.0)
    path = f"{tmp_path / 'movie.h5'}:raw"
    write_volume(path, np.ones((1, 2, 8, 48, 48), dtype=np.float32))
    assert main(["segment", path, str(tmp_path / "a.zarr"), "--bundle", str(bundle), "--model", "flat",
                 "--no-progress"]) == 1
    assert (
        "warning: the input has shape (1, 2, 8, 48, 48), the model segments 3D images ((C, Z, Y, X)): no model "
        "segments 5-axis images; remove the axes of length 1 or choose one channel or time point first."
    ) in capsys.readouterr().err


def _add_models_of_both_dimensionalities(bundle):
    """Models ``flat2d`` (2D) and ``flat3d`` (3D) in the bundle's metadata, each with its overlay config."""
    models = {}
    for name, dims in (("flat2d", 2), ("flat3d", 3)):
        torch.save({"weight": WEIGHT}, bundle / "models" / f"{name}.pt")
        (bundle / "configs" / f"{name}.json").write_text(json.dumps({"spatial_dims": dims, "in_channels": 1}))
        models[name] = {"model_path": f"models/{name}.pt", "inference_config": f"configs/{name}.json",
                        "description": f"the {name} model."}
    (bundle / "configs" / "metadata.json").write_text(json.dumps({"additional_models": models}))


def _warnings(tmp_path, bundle, path, model, capsys):
    main(["segment", path, str(tmp_path / "out.zarr"), "--bundle", str(bundle), "--model", model, "--no-progress",
          "--overwrite"])
    return [line for line in capsys.readouterr().err.splitlines() if "warning" in line]


def test_colour_image_given_to_a_grey_model_is_told_how_to_convert(tmp_path, bundle, capsys):
    _add_models_of_both_dimensionalities(bundle)
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(tmp_path / "rgb.png")
    assert _warnings(tmp_path, bundle, str(tmp_path / "rgb.png"), "flat2d", capsys) == [
        "spoco-monai segment: warning: the input has 3 channels: it looks like a colour (RGB) image; the model takes "
        "1 channel(s): keep the channel that shows the objects, or convert the image to grey (Fiji: Image > Type > "
        "8-bit; Python: PIL.Image.open(path).convert('L').save(new_path))."
    ]
    path = f"{tmp_path / 'rgb_last.h5'}:raw"
    write_volume(path, np.zeros((40, 48, 3), np.float32))
    (warning,) = _warnings(tmp_path, bundle, path, "flat2d", capsys)
    assert "the input has shape (40, 48, 3), colour samples last: it looks like a colour (RGB) image" in warning


def test_volume_given_to_a_2d_model_is_told_to_choose_a_3d_one(tmp_path, bundle, capsys):
    _add_models_of_both_dimensionalities(bundle)
    path = f"{tmp_path / 'stack.h5'}:raw"
    write_volume(path, np.zeros((100, 48, 48), np.float32))
    assert _warnings(tmp_path, bundle, path, "flat2d", capsys) == [
        "spoco-monai segment: warning: the input has shape (100, 48, 48), read as 100 channels of a 2D image: this "
        "looks like a 3D volume; choose a 3D model with --model (flat3d)."
    ]


@pytest.mark.slow
def test_segment_on_dask_workers_equals_one_process(tmp_path, bundle, volume):
    path, _ = volume
    assert _segment(tmp_path, bundle, path, tmp_path / "one.zarr") == 0
    assert _segment(tmp_path, bundle, path, tmp_path / "workers.zarr", "--workers", "2") == 0
    with open_volume(tmp_path / "one.zarr") as one, open_volume(tmp_path / "workers.zarr") as workers:
        np.testing.assert_array_equal(workers[:], one[:])


def test_segment_with_an_unreachable_scheduler_is_one_line(tmp_path, bundle, volume, capsys):
    path, _ = volume
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        assert _segment(tmp_path, bundle, path, tmp_path / "labels.zarr", "--scheduler", address) == 1
    assert error_line(capsys.readouterr().err).startswith(
        f"spoco-monai segment: error: cannot reach the dask scheduler at {address} ("
    )
    assert not (tmp_path / "labels.zarr").exists()


def test_segment_on_workers_without_dask_says_what_to_install(tmp_path, bundle, volume, capsys, monkeypatch):
    path, _ = volume
    monkeypatch.setattr(dask_cluster, "has_distributed", False)
    assert _segment(tmp_path, bundle, path, tmp_path / "labels.zarr", "--workers", "2") == 1
    assert error_line(capsys.readouterr().err) == (
        "spoco-monai segment: error: workers and schedulers need dask.distributed, which is not installed: "
        "pip install 'spoco-monai[distributed]'"
    )
