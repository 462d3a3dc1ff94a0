from __future__ import annotations

import errno
from pathlib import Path

import pytest

from spoco_monai.data.atomic import remove_after_failure, write_atomically


def test_file_is_replaced_and_no_temporary_remains(tmp_path) -> None:
    path = tmp_path / "list.json"
    path.write_text("old")
    (tmp_path / ".partial-list.json").write_text("left by an interrupted writer")
    with write_atomically(path) as temporary:
        assert temporary == tmp_path / ".partial-list.json" and not temporary.exists()
        temporary.write_text("new")
        assert path.read_text() == "old"
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.json"]


@pytest.mark.parametrize("existing", [True, False])
def test_error_keeps_the_old_content(tmp_path, existing: bool) -> None:
    path = tmp_path / "list.json"
    if existing:
        path.write_text("old")
    with pytest.raises(RuntimeError, match="interrupted"):
        with write_atomically(path) as temporary:
            temporary.write_text("half")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == (["list.json"] if existing else [])
    if existing:
        assert path.read_text() == "old"


def test_folder_is_replaced_as_a_whole(tmp_path) -> None:
    path = tmp_path / "volume.zarr"
    path.mkdir()
    (path / "old_chunk").write_text("old")
    with write_atomically(path) as temporary:
        temporary.mkdir()
        (temporary / "new_chunk").write_text("new")
    assert [p.name for p in path.iterdir()] == ["new_chunk"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["volume.zarr"]


def test_failed_write_names_the_file_and_leaves_no_temporary(tmp_path) -> None:
    path = tmp_path / "list.json"
    with pytest.raises(OSError) as raised:
        with write_atomically(path) as temporary:
            temporary.write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(path))
    assert list(tmp_path.iterdir()) == []


def test_removal_after_a_failure_removes_what_it_can_and_never_raises(tmp_path, monkeypatch) -> None:
    (tmp_path / "partial.zarr" / "0").mkdir(parents=True)
    (tmp_path / "partial.zarr" / "0" / "chunk").write_text("1")
    remove_after_failure(tmp_path / "partial.zarr")
    (tmp_path / "partial.json").write_text("half")

    def refuse(path, missing_ok=False):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(Path, "unlink", refuse)
    remove_after_failure(tmp_path / "partial.json")
    assert [p.name for p in tmp_path.iterdir()] == ["partial.json"]
