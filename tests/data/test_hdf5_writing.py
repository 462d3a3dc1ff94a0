from __future__ import annotations

import errno
import gc

import h5py
import numpy as np
import pytest

from spoco_monai.data import hdf5_writing
from spoco_monai.data.hdf5_writing import open_hdf5_for_writing

VALUES = np.arange(64 * 64 * 16, dtype=np.int64).reshape(16, 64, 64)


def test_written_file_reads_back(tmp_path):
    with open_hdf5_for_writing(tmp_path / "v.h5", "w") as handle:
        handle.create_dataset("raw", data=VALUES, chunks=(8, 32, 32), compression="gzip")
    with open_hdf5_for_writing(tmp_path / "v.h5", "r+") as handle:
        handle["seg"] = VALUES[:2]
    with h5py.File(tmp_path / "v.h5", "r") as handle:
        np.testing.assert_array_equal(handle["raw"][:], VALUES)
        np.testing.assert_array_equal(handle["seg"][:], VALUES[:2])


@pytest.mark.parametrize("free", [4096, 4 * 2**16 + 100])
def test_full_disk_raises_once_every_object_is_closed(tmp_path, monkeypatch, full_disk, free):
    # the chunks stay in HDF5's cache until the dataset object is deleted (right after the assignment): its close
    # writes them, and fails (4096 bytes), or the four chunks of 64 KiB fit and the file's close fails writing the
    # metadata
    monkeypatch.setattr(hdf5_writing, "open", full_disk(free), raising=False)
    with pytest.raises(OSError) as raised:
        with open_hdf5_for_writing(tmp_path / "v.h5", "w") as handle:
            handle.create_dataset("raw", shape=VALUES.shape, dtype=VALUES.dtype, chunks=(8, 32, 32))
            handle["raw"][:8] = VALUES[:8]
    assert raised.value.errno == errno.ENOSPC
    # no file, group or dataset is left open for h5py to close at exit, where a failing close crashed the process
    gc.collect()
    objects = h5py.h5f.OBJ_FILE | h5py.h5f.OBJ_GROUP | h5py.h5f.OBJ_DATASET
    assert h5py.h5f.get_obj_ids(h5py.h5f.OBJ_ALL, objects) == []


def test_full_disk_while_adding_a_dataset_keeps_the_others(tmp_path, monkeypatch, full_disk):
    with h5py.File(tmp_path / "v.h5", "w") as handle:
        handle["keep"] = VALUES[:1]
    monkeypatch.setattr(hdf5_writing, "open", full_disk(4096), raising=False)
    with pytest.raises(OSError, match="No space left on device"):
        with open_hdf5_for_writing(tmp_path / "v.h5", "r+") as handle:
            handle.create_dataset("seg", data=VALUES, chunks=(8, 32, 32))
    monkeypatch.undo()
    with h5py.File(tmp_path / "v.h5", "r") as handle:
        np.testing.assert_array_equal(handle["keep"][:], VALUES[:1])


def test_other_modes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="mode must be 'w' or 'r\\+', got 'a'"):
        with open_hdf5_for_writing(tmp_path / "v.h5", "a"):
            pass
    assert not (tmp_path / "v.h5").exists()
