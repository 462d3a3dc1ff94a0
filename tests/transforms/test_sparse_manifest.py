from __future__ import annotations

import json
import multiprocessing

import pytest

from spoco_monai.transforms import SparseAnnotationManifest


def test_record_and_read(tmp_path) -> None:
    manifest = SparseAnnotationManifest(tmp_path / "nested" / "kept.json")
    assert manifest.read() == {}
    manifest.record("b.tif", [2, 7])
    manifest.record("a.tif", [])
    manifest.record("b.tif", [2, 7])
    assert json.loads((tmp_path / "nested" / "kept.json").read_text()) == {"a.tif": [], "b.tif": [2, 7]}
    assert SparseAnnotationManifest(tmp_path / "nested" / "kept.json").read() == {"a.tif": [], "b.tif": [2, 7]}


def test_merges_entries_written_by_another_writer(tmp_path) -> None:
    path = tmp_path / "kept.json"
    first, second = SparseAnnotationManifest(path), SparseAnnotationManifest(path)
    first.record("a.tif", [1])
    second.record("b.tif", [3])
    first.record("c.tif", [5])
    assert first.read() == {"a.tif": [1], "b.tif": [3], "c.tif": [5]}


def test_conflicting_entry_is_refused(tmp_path) -> None:
    path = tmp_path / "kept.json"
    SparseAnnotationManifest(path).record("a.tif", [1, 2])
    with pytest.raises(ValueError, match="already records identity 'a.tif' with kept ids \\[1, 2\\], now \\[1, 3\\]"):
        SparseAnnotationManifest(path).record("a.tif", [1, 3])
    assert SparseAnnotationManifest(path).read() == {"a.tif": [1, 2]}


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"a.tif": [1, "x"]}'])
def test_invalid_file_is_a_clear_error(tmp_path, content: str) -> None:
    path = tmp_path / "kept.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="sparse annotation manifest"):
        SparseAnnotationManifest(path).read()


def record_many(path: str, worker: int) -> None:
    manifest = SparseAnnotationManifest(path)
    for index in range(25):
        manifest.record(f"w{worker}_{index}.tif", [worker, index])


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method")
def test_concurrent_writers_lose_nothing(tmp_path) -> None:
    path = tmp_path / "kept.json"
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=record_many, args=(str(path), worker)) for worker in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [process.exitcode for process in processes] == [0, 0, 0]
    expected = {f"w{worker}_{index}.tif": [worker, index] for worker in range(3) for index in range(25)}
    assert SparseAnnotationManifest(path).read() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.json", "kept.json.lock"]
