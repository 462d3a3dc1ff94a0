from __future__ import annotations

import copy
import dataclasses
import fcntl
import pickle
import time

import h5py
import numpy as np
import pytest
import torch
import zarr
from inference_fakes import NUM_OBJECTS, OFFSETS_3D, VOLUME_SHAPE, LabelLookupNetwork, label_image, voronoi_labels
from skimage.metrics import adapted_rand_error

from spoco_monai.clustering import default_offsets
from spoco_monai.data.volume_io import open_volume, write_volume
from spoco_monai.inferers import BlockGrid, SegmentationSettings, WorkDirectoryLockedError, segment_volume
from spoco_monai.inferers.segment_volume import WORK_DIRECTORY_SUFFIX

ROI = (16, 32, 32)
NOISE = 0.1  # within-object embedding jitter, so that the affinities are not all 0 or 1
BLOCK = (16, 32, 32)
PAUSE_S = 0.005


def arand(reference: np.ndarray, labels: np.ndarray) -> float:
    return adapted_rand_error(reference, labels)[0]


RUN_OPTIONS = ("output", "overwrite", "progress", "timings", "workers", "scheduler", "torch_threads", "in_channels")


def segment(image, network, **kwargs):
    """``segment_volume`` with the test's settings, ``kwargs`` overriding settings and run options alike."""
    settings = dict(roi_size=ROI, overlap=0.5, block_shape=BLOCK, offsets=OFFSETS_3D)
    settings.update({key: value for key, value in kwargs.items() if key not in RUN_OPTIONS})
    run = {"progress": False, **{key: value for key, value in kwargs.items() if key in RUN_OPTIONS}}
    return segment_volume(image, network, SegmentationSettings(**settings), **run)


@pytest.fixture(scope="module")
def whole_volume_labels(image_3d):
    """One window over the whole volume: the reference for the seams."""
    network = LabelLookupNetwork(NUM_OBJECTS, noise_scale=NOISE)
    return segment(image_3d, network, roi_size=VOLUME_SHAPE, block_shape=VOLUME_SHAPE)


@pytest.mark.slow
def test_reference_recovers_the_objects(whole_volume_labels, labels_3d):
    assert arand(labels_3d, whole_volume_labels) == 0.0
    assert whole_volume_labels.dtype == np.int32
    assert set(np.unique(whole_volume_labels)) == set(range(1, NUM_OBJECTS + 1))


def test_objects_cross_windows_and_blocks(labels_3d):
    grid = BlockGrid(VOLUME_SHAPE, ROI, 0.5, BLOCK)
    assert len(grid) == 8
    crossing = [
        np.intersect1d(labels_3d[block.core], labels_3d[other.core]).size
        for block in grid.blocks
        for other in grid.overlapping_cores(block)
    ]
    assert sum(crossing) > NUM_OBJECTS


@pytest.mark.slow
@pytest.mark.parametrize("blend", ["affinities", "embeddings"])
def test_seams_match_whole_volume(image_3d, whole_volume_labels, blend):
    labels = segment(image_3d, LabelLookupNetwork(NUM_OBJECTS, noise_scale=NOISE), blend=blend)
    assert arand(whole_volume_labels, labels) < 0.01
    assert labels.max() == NUM_OBJECTS  # consecutive ids, one per object


def test_test_time_flips_run_every_window_eight_times_and_keep_the_objects(image_3d, labels_3d):
    plain_network = LabelLookupNetwork(NUM_OBJECTS)
    plain = segment(image_3d, plain_network)
    flipped_network = LabelLookupNetwork(NUM_OBJECTS)
    flipped = segment(image_3d, flipped_network, test_time_flips=True)
    assert flipped_network.calls == 8 * plain_network.calls
    assert arand(labels_3d, flipped) == 0.0 and arand(plain, flipped) == 0.0


def test_seams_2d_default_offsets():
    labels = voronoi_labels((96, 128), 12, seed=3)
    image = label_image(labels, seed=3)
    network = LabelLookupNetwork(12, noise_scale=NOISE)
    whole = segment_volume(image, network, SegmentationSettings((96, 128), block_shape=(96, 128)), progress=False)
    tiled = segment_volume(
        image, network, SegmentationSettings((48, 48), overlap=0.5, block_shape=(24, 24)), progress=False
    )
    assert arand(labels, whole) == 0.0
    assert arand(whole, tiled) < 0.01


def test_embedding_shift_per_window_is_seamless_with_affinities(image_3d, labels_3d):
    network = LabelLookupNetwork(NUM_OBJECTS, shift_scale=20.0)
    labels = segment(image_3d, network, blend="affinities")
    assert network.calls > 8  # several windows, each with its own shift
    assert arand(labels_3d, labels) < 0.01


@pytest.mark.slow
def test_embedding_shift_per_window_breaks_blended_embeddings(image_3d, labels_3d):
    # the control for the test above: blending shifted embeddings mixes unrelated vectors
    labels = segment(image_3d, LabelLookupNetwork(NUM_OBJECTS, shift_scale=20.0), blend="embeddings")
    assert arand(labels_3d, labels) > 0.1


def test_blended_embeddings_with_hdbscan():
    labels = voronoi_labels((64, 64), 5, seed=2)
    settings = SegmentationSettings(
        (32, 32), block_shape=(32, 32), blend="embeddings", clustering="hdbscan", clustering_kwargs={"min_size": 50}
    )
    result = segment_volume(label_image(labels), LabelLookupNetwork(5), settings, progress=False)
    assert arand(labels, result) < 0.01


@pytest.mark.slow
def test_volume_path_input_and_channelless_image(tmp_path, labels_3d):
    path = f"{tmp_path / 'image.h5'}:raw"
    write_volume(path, label_image(labels_3d))
    from_file = segment(path, LabelLookupNetwork(NUM_OBJECTS))
    assert arand(labels_3d, from_file) < 0.01
    single_channel = segment(labels_3d.astype(np.float32), LabelLookupNetwork(NUM_OBJECTS))
    assert arand(labels_3d, single_channel) < 0.01


class PausingNetwork(LabelLookupNetwork):
    """A network whose every forward call takes at least ``PAUSE_S`` seconds."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(PAUSE_S)
        return super().forward(x)


def test_timings_are_reported(image_3d):
    timings: dict[str, float] = {}
    network = PausingNetwork(NUM_OBJECTS)
    start = time.perf_counter()
    segment(image_3d, network, timings=timings)
    elapsed = time.perf_counter() - start
    assert set(timings) == {"network", "affinities", "clustering", "writing"}
    # every stage did work, the network's time holds its pauses, and the stages are timed one after another
    assert all(value > 0 for value in timings.values())
    assert network.calls > 0 and timings["network"] >= network.calls * PAUSE_S
    assert sum(timings.values()) <= elapsed


def test_progress_covers_every_stage(tmp_path, image_3d, capsys):
    segment(image_3d, LabelLookupNetwork(NUM_OBJECTS), output=tmp_path / "labels.zarr", progress=True)
    shown = capsys.readouterr().err
    assert all(f"{stage}: 100%" in shown for stage in ("segment", "match", "write"))


@pytest.mark.slow
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, image_3d):
    network = LabelLookupNetwork(NUM_OBJECTS, noise_scale=NOISE)
    reference_path = segment(image_3d, network, output=tmp_path / "reference.zarr")
    output = tmp_path / "labels.zarr"
    work = tmp_path / ("labels.zarr" + WORK_DIRECTORY_SUFFIX)
    interrupted = LabelLookupNetwork(NUM_OBJECTS, noise_scale=NOISE, fail_after=10)
    with pytest.raises(RuntimeError, match="interrupted"):
        segment(image_3d, interrupted, output=output)
    assert not output.exists()
    finished = sorted(work.glob("[0-9]*.json"))
    assert 0 < len(finished) < 8

    resumed = LabelLookupNetwork(NUM_OBJECTS, noise_scale=NOISE)
    assert segment(image_3d, resumed, output=output) == str(output)
    assert 0 < resumed.calls < network.calls  # the finished blocks were not run again
    assert not work.exists()
    with open_volume(output) as result, open_volume(reference_path) as reference:
        np.testing.assert_array_equal(result[:], reference[:])


@pytest.mark.slow
def test_resume_with_other_settings_raises(tmp_path, image_3d):
    output = tmp_path / "labels.zarr"
    with pytest.raises(RuntimeError):
        segment(image_3d, LabelLookupNetwork(NUM_OBJECTS, fail_after=10), output=output)
    with pytest.raises(ValueError, match="other settings.*overlap"):
        segment(image_3d, LabelLookupNetwork(NUM_OBJECTS), output=output, overlap=0.25)
    labels = segment(image_3d, LabelLookupNetwork(NUM_OBJECTS), output=output, overlap=0.25, overwrite=True)
    assert labels == str(output)


@pytest.mark.parametrize("suffix", ["labels.zarr", "labels.h5:seg", "labels.nii.gz", "labels.tif", "labels.ome.zarr"])
def test_output_formats(tmp_path, image_3d, labels_3d, suffix):
    output = f"{tmp_path / suffix}"
    segment(image_3d, LabelLookupNetwork(NUM_OBJECTS), output=output)
    with open_volume(output) as result:
        assert result.shape == VOLUME_SHAPE
        assert arand(labels_3d, result[:]) < 0.01
    assert [p.name for p in tmp_path.iterdir()] == [suffix.split(":")[0]]


def test_ome_zarr_labels_carry_the_input_voxel_size(tmp_path, image_3d, labels_3d):
    path = f"{tmp_path / 'image.h5'}:raw"
    write_volume(path, image_3d)
    with h5py.File(tmp_path / "image.h5", "a") as file:
        file["raw"].attrs["element_size_um"] = (2.0, 0.5, 0.5)
    output = tmp_path / "labels.ome.zarr"
    segment(path, LabelLookupNetwork(NUM_OBJECTS), output=output)
    attributes = zarr.open_group(output, mode="r").attrs.asdict()
    assert attributes["image-label"] == {"version": "0.4"}
    (multiscale,) = attributes["multiscales"]
    assert [axis["name"] for axis in multiscale["axes"]] == ["z", "y", "x"]
    # chunks as large as a block core, (16, 32, 32): level 1 fits in one
    assert multiscale["datasets"] == [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [2.0, 0.5, 0.5]}]},
        {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": [4.0, 1.0, 1.0]}]},
    ]
    labels = segment(path, LabelLookupNetwork(NUM_OBJECTS))
    with open_volume(output) as result:
        assert result.element_size == (2.0, 0.5, 0.5)
        np.testing.assert_array_equal(result[:], labels)
    with open_volume(f"{output}:1") as level:
        assert level.element_size == (4.0, 1.0, 1.0)
        np.testing.assert_array_equal(level[:], labels[::2, ::2, ::2])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"roi_size": (16, 0, 32)}, "roi_size must be positive"),
        ({"roi_size": (16, 32), "offsets": None, "block_shape": None}, "spatial axes"),
        ({"roi_size": (16, 32, 32, 8)}, "2 or 3 values"),
        ({"overlap": 1.0}, r"overlap must be in \[0, 1\)"),
        ({"overlap": -0.1}, r"overlap must be in \[0, 1\)"),
        ({"halo": 0}, "halo must be positive"),
        ({"halo": (2, 2)}, "halo must have 3 values"),
        ({"block_shape": (16, -1, 32)}, "block_shape must be positive"),
        ({"blend": "labels"}, "blend must be one of"),
        ({"clustering": "hdbscan"}, "blend 'affinities' clusters with one of"),
        ({"clustering": "watershed", "foreground": "intensity"}, r"needs clustering_kwargs\['min_distance'\]"),
        ({"clustering_kwargs": {"min_distance": 4}}, r"\['min_distance'\] are not options of clustering 'mws'"),
        ({"iou_threshold": 0.3}, "iou_threshold"),
        ({"sw_batch_size": 0}, "sw_batch_size"),
        ({"offsets": [(-1, 0, 0), (0, 0, -40)]}, "shorter than the window"),
        ({"offsets": [(-1, 0)]}, "offsets must be a non-empty list of offsets with 3 values"),
        ({"foreground": "otsu"}, "foreground must be None or one of"),
        ({"foreground_threshold": 1.0}, r"foreground_threshold must be in \(0, 1\)"),
        ({"foreground_threshold": 0.0}, r"foreground_threshold must be in \(0, 1\)"),
        ({"whole_image_max_voxels": 0}, "whole_image_max_voxels"),
        ({"normalize": "zscore"}, "normalize must be True or False"),
        ({"test_time_flips": 1}, "test_time_flips must be True or False"),
        ({"test_time_flips": True, "blend": "embeddings"}, "test_time_flips averages affinities"),
    ],
)
def test_invalid_options_raise(image_3d, options, message):
    with pytest.raises(ValueError, match=message):
        segment(image_3d, LabelLookupNetwork(NUM_OBJECTS), **options)


def test_settings_are_frozen_and_copy_whole():
    settings = SegmentationSettings(ROI, block_shape=16, clustering_kwargs={"strides": [1, 2, 2], "min_size": 5})
    assert settings.block_shape == (16, 16, 16) and settings.clustering_kwargs["strides"] == (1, 2, 2)
    assert settings.offsets == tuple(default_offsets(3))
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.overlap = 0.25
    with pytest.raises(TypeError):
        settings.clustering_kwargs["min_size"] = 7
    assert pickle.loads(pickle.dumps(settings)) == copy.deepcopy(settings) == settings
    assert dataclasses.replace(settings, overlap=0.25).overlap == 0.25


def test_wrong_channel_count_raises(image_3d):
    network = torch.nn.Conv3d(1, 4, kernel_size=1)
    with pytest.raises(ValueError, match="expects 1 input channels, the image has 2"):
        segment(image_3d, network)
    with pytest.raises(ValueError, match="expects 3 input channels, the image has 2"):
        segment(image_3d, LabelLookupNetwork(NUM_OBJECTS), in_channels=3)
    with pytest.raises(ValueError, match="first convolution is 2D"):
        segment(image_3d, torch.nn.Conv2d(2, 4, kernel_size=1))


def test_wrong_network_output_raises(image_3d):
    with pytest.raises(ValueError, match="must map windows"):
        segment(image_3d, torch.nn.Conv3d(2, 4, kernel_size=3))


def test_existing_output_raises_and_is_kept(tmp_path, image_3d):
    output = tmp_path / "labels.tif"
    output.write_bytes(b"keep me")
    network = LabelLookupNetwork(NUM_OBJECTS)
    with pytest.raises(FileExistsError, match="already exists"):
        segment(image_3d, network, output=output)
    assert output.read_bytes() == b"keep me"
    assert network.calls == 0  # refused before any work
    assert [p.name for p in tmp_path.iterdir()] == ["labels.tif"]


def test_output_replacing_input_raises(tmp_path, image_3d):
    path = f"{tmp_path / 'volume.h5'}:raw"
    write_volume(path, image_3d)
    with pytest.raises(ValueError, match="replace the input"):
        segment(path, LabelLookupNetwork(NUM_OBJECTS), output=f"{tmp_path / 'volume.h5'}:labels", overwrite=True)


def test_second_run_on_a_locked_output_stops_before_any_work(tmp_path, image_3d):
    output = tmp_path / "labels.zarr"
    network = LabelLookupNetwork(NUM_OBJECTS)
    # the lock as another process holds it (a lock of this process would be re-entrant)
    with open(f"{output}.spoco-work.lock", "w") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        other.write("pid 4242 on elsewhere")
        other.flush()
        with pytest.raises(WorkDirectoryLockedError, match=r"another run \(pid 4242 on elsewhere\) is writing"):
            segment(image_3d, network, output=output)
    assert network.calls == 0
    assert [p.name for p in tmp_path.iterdir()] == ["labels.zarr.spoco-work.lock"]
    segment(image_3d, network, output=output)
    assert [p.name for p in tmp_path.iterdir()] == ["labels.zarr"]
