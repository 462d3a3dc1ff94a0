"""JSON record of which objects a simulated sparse annotation kept, safe to share between processes."""

from __future__ import annotations

from typing import Any

from spoco_monai.transforms.annotation_manifest import AnnotationManifest

__all__ = ["SparseAnnotationManifest"]


class SparseAnnotationManifest(AnnotationManifest):
    """An :class:`AnnotationManifest` ``{identity: [kept ids, ascending], ...}`` of a simulated sparse annotation.

    Args:
        path: the JSON file; its folder is created if needed.
    """

    kind = "sparse annotation manifest"
    entry_name = "kept ids"
    expected_content = "{identity: [int, ...]}"

    @staticmethod
    def is_valid_entry(entry: Any) -> bool:
        return isinstance(entry, list) and all(isinstance(i, int) for i in entry)
