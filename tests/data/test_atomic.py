from __future__ import annotations

import pytest

from spoco_monai.data.atomic import write_atomically


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
