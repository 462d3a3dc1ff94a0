from __future__ import annotations

import errno
import os

import pytest

from spoco_monai.data.disk_errors import describe_os_error, naming_path


@pytest.mark.parametrize(
    "number, cause",
    [
        (errno.ENOSPC, "no space left on the device"),
        (errno.EDQUOT, "the disk quota is exceeded"),
        (errno.EROFS, "the file system is read-only"),
        (errno.ENOTDIR, "a part of the path is a file, not a folder"),
        (errno.EACCES, "permission denied"),
        (errno.EPERM, "operation not permitted"),
        (errno.ENOENT, "no such file or folder"),
        (errno.EIO, "input/output error"),
    ],
)
def test_an_error_on_a_path_is_the_path_and_its_cause(number, cause):
    error = OSError(number, os.strerror(number), "/data/labels.zarr")
    assert describe_os_error(error) == f"/data/labels.zarr: {cause}."


def test_an_error_without_a_path_is_its_message_on_one_line():
    assert describe_os_error(FileExistsError("out.zarr already exists; choose another")) == (
        "out.zarr already exists; choose another"
    )
    error = OSError("write failed: time = Mon\n, errno = 28")
    assert describe_os_error(error) == "write failed: time = Mon , errno = 28"


def test_naming_path_names_an_error_without_a_path_and_keeps_its_kind():
    with pytest.raises(PermissionError) as raised:
        with naming_path("/data/block.npy"):
            raise OSError(errno.EACCES, "Permission denied")
    assert (raised.value.errno, raised.value.filename) == (errno.EACCES, "/data/block.npy")
    assert isinstance(raised.value.__cause__, PermissionError)


@pytest.mark.parametrize(
    "error", [OSError(errno.ENOSPC, "No space left on device", "/other"), FileExistsError("exists"), KeyError("k")]
)
def test_naming_path_leaves_other_errors_as_they_are(error):
    with pytest.raises(type(error)) as raised:
        with naming_path("/data/block.npy"):
            raise error
    assert raised.value is error
