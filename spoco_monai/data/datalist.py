"""Datalists: the image/label items of a dataset, from a MONAI datalist JSON file or a folder.

Two sources are accepted:

* A MONAI (Decathlon-style) datalist JSON file, ``{"training": [{"image": ..., "label": ...}, ...],
  "validation": [...]}``. Relative paths are resolved against ``data_dir`` (default: the JSON file's
  folder) by :func:`monai.data.load_decathlon_datalist`. Paths may name a dataset inside an HDF5 or zarr
  container, e.g. ``"volume.h5:raw"``.
* A folder of image/label pairs. ``folder/images/<name>`` is paired with ``folder/labels/<name>``
  (same file name, e.g. ``images/003cee89357d9fe1.tif`` and ``labels/003cee89357d9fe1.tif``); all pairs
  form the training split. A folder without ``images/`` but with split sub-folders, ``train`` (or
  ``training``) and ``val`` (or ``validation``), each laid out as above, gives both splits. Entries whose
  name starts with ``.`` are ignored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from monai.data import load_decathlon_datalist

__all__ = ["load_datalist", "split_items", "DATALIST_SPLITS"]

DATALIST_SPLITS = ("training", "validation")
_SPLIT_FOLDERS = {"training": ("train", "training"), "validation": ("val", "validation")}


def _visible_entries(folder: Path) -> dict[str, Path]:
    return {entry.name: entry for entry in sorted(folder.iterdir()) if not entry.name.startswith(".")}


def _pairs_in_folder(folder: Path) -> list[dict[str, str]]:
    images, labels = _visible_entries(folder / "images"), _visible_entries(folder / "labels")
    unmatched_images, unmatched_labels = sorted(images.keys() - labels), sorted(labels.keys() - images)
    if unmatched_images or unmatched_labels:
        raise ValueError(
            f"{folder}: every file in images/ needs a label of the same name in labels/ and vice versa; "
            f"images without label: {unmatched_images[:10]}, labels without image: {unmatched_labels[:10]}"
        )
    return [{"image": str(images[name]), "label": str(labels[name])} for name in images]


def _datalist_from_folder(folder: Path) -> dict[str, list[dict[str, str]]]:
    if (folder / "images").is_dir() and (folder / "labels").is_dir():
        return {"training": _pairs_in_folder(folder), "validation": []}
    datalist: dict[str, list[dict[str, str]]] = {}
    for split, names in _SPLIT_FOLDERS.items():
        found = [folder / name for name in names if (folder / name / "images").is_dir()]
        datalist[split] = _pairs_in_folder(found[0]) if found else []
    if not datalist["training"] and not datalist["validation"]:
        raise ValueError(
            f"{folder} is not a dataset folder: expected images/ and labels/ sub-folders, or split "
            f"sub-folders {_SPLIT_FOLDERS['training']} / {_SPLIT_FOLDERS['validation']} holding them"
        )
    return datalist


def _datalist_from_json(path: Path, data_dir: str | os.PathLike | None) -> dict[str, list[dict]]:
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"datalist {path} is not valid JSON: {error}") from error
    if not isinstance(content, dict):
        raise ValueError(f"datalist {path} must hold a JSON object with 'training'/'validation' lists")
    # load_decathlon_datalist resolves the relative paths; it raises for a missing key, hence the filter.
    return {
        split: load_decathlon_datalist(path, data_list_key=split, base_dir=data_dir) if split in content else []
        for split in DATALIST_SPLITS
    }


def load_datalist(
    source: str | os.PathLike, data_dir: str | os.PathLike | None = None, split: str | None = None
) -> dict[str, list[dict]] | list[dict]:
    """Load a dataset's items from a MONAI datalist JSON file or a folder of image/label pairs.

    See the module docstring for the two layouts.

    Args:
        source: path to a ``.json`` datalist or to a dataset folder.
        data_dir: folder that relative paths in a JSON datalist refer to; default: the JSON file's
            folder. Not used for a folder source.
        split: ``"training"`` or ``"validation"`` to return that split's list; None returns both.

    Returns:
        ``{"training": [...], "validation": [...]}`` (a missing split is an empty list), or the list of
        the requested split. Items are dicts such as ``{"image": "/abs/a.tif", "label": "/abs/a.tif"}``.

    Raises:
        FileNotFoundError: when ``source`` does not exist.
        ValueError: for an unknown split, a JSON file without a JSON object, a folder without the
            expected layout, or images and labels that do not pair up.
    """
    if split is not None and split not in DATALIST_SPLITS:
        raise ValueError(f"split must be one of {DATALIST_SPLITS} or None, got {split!r}")
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"datalist source {path} does not exist (expected a .json file or a folder)")
    datalist = _datalist_from_folder(path) if path.is_dir() else _datalist_from_json(path, data_dir)
    return datalist if split is None else datalist[split]


def split_items(datalist: Mapping[str, Sequence[dict]], split: str, limit: int | None = None) -> list[dict]:
    """The items of one split of a datalist, refusing an empty split rather than borrowing from another.

    Training selects its best network (``model.pt``) by the validation score, so a validation split made of
    training images would pick it by how well the network fits its own training data.

    Args:
        datalist: ``{"training": [...], "validation": [...]}`` as :func:`load_datalist` returns it.
        split: ``"training"`` or ``"validation"``.
        limit: keep only the first ``limit`` items; None keeps all.

    Returns:
        the split's first ``limit`` items (all for None).

    Raises:
        ValueError: for an unknown split, or a split the datalist lacks or leaves empty.
    """
    if split not in DATALIST_SPLITS:
        raise ValueError(f"split must be one of {DATALIST_SPLITS}, got {split!r}")
    items = list(datalist.get(split) or [])[:limit]
    if not items:
        raise ValueError(
            f"the dataset has no {split} items: list them under '{split}' in the datalist JSON or in a "
            f"{_SPLIT_FOLDERS[split][0]}/ sub-folder of the dataset folder (to hold out training items instead, "
            "override train#datalist and validate#datalist, see the bundle docs)"
        )
    return items
