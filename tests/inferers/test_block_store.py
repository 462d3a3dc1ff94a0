from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from spoco_monai.inferers import BlockRecord, DirectoryBlockStore, MemoryBlockStore

LABELS = np.array([[1, 2], [0, 3]], dtype=np.int64)


@pytest.mark.parametrize("directory", [True, False])
def test_saved_block_reads_back_and_discarded_block_is_unfinished(tmp_path, directory):
    store = DirectoryBlockStore(tmp_path / "work", {"run": 1}) if directory else MemoryBlockStore()
    store.save(0, LABELS, BlockRecord(3, 4, "00ff"))
    store.save(1, LABELS, BlockRecord(3, 3))
    assert store.finished() == {0, 1}
    record = store.record(0)
    assert (record.num_core_labels, record.num_labels, record.input_digest) == (3, 4, "00ff")
    assert store.record(1).input_digest is None
    np.testing.assert_array_equal(store.labels(0), LABELS)
    store.discard(0)
    assert store.finished() == {1}
    if directory:
        assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["0000001.json", "0000001.npy", "run.json"]


def test_directory_store_writes_the_labels_as_npy(tmp_path):
    store = DirectoryBlockStore(tmp_path / "work", {"run": 1})
    store.save(2, LABELS, BlockRecord(3, 3, "ab"))
    saved = np.load(tmp_path / "work" / "0000002.npy")
    assert saved.dtype == np.uint32 and saved.tolist() == LABELS.tolist()
    assert json.loads((tmp_path / "work" / "0000002.json").read_text()) == {
        "num_core_labels": 3, "num_labels": 3, "input_digest": "ab"
    }


def test_directory_store_pickles_as_its_path(tmp_path):
    store = DirectoryBlockStore(tmp_path / "work", {"run": 1})
    store.save(0, LABELS, BlockRecord(3, 3))
    copy = pickle.loads(pickle.dumps(store))
    assert copy.directory == store.directory and copy.finished() == {0}
