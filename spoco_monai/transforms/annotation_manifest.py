"""JSON record of what a simulated annotator marked in each image, safe to share between processes."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from spoco_monai.data.atomic import write_atomically

__all__ = ["AnnotationManifest"]


class AnnotationManifest:
    """A JSON file ``{identity: entry, ...}`` that many processes may append to; an entry is any JSON value.

    Each :meth:`record` takes an exclusive ``fcntl`` lock on a sibling file ``<path>.lock``, re-reads the
    manifest, merges the new entry and replaces the file atomically (:func:`spoco_monai.data.atomic.write_atomically`),
    so data-loader workers and distributed ranks writing at the same time neither lose entries nor leave a
    half-written file behind. The lock is advisory and POSIX-only.

    Entries are immutable: recording an identity again with another entry raises, because the manifest must
    describe the single annotation that training used (another entry means another seed or setting, or two images
    that share an identity). Subclasses name what they record (:attr:`kind`, :attr:`entry_name`) and check the
    entries they read (:meth:`is_valid_entry`).

    Args:
        path: the JSON file; its folder is created if needed.
    """

    #: how messages name the file
    kind = "annotation manifest"
    #: how messages name an entry
    entry_name = "entry"
    #: the expected content, for the message about a malformed file
    expected_content = "{identity: entry, ...}"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        # Entries known to be on disk already: each process then writes an identity at most once.
        self._known: dict[str, Any] | None = None

    @staticmethod
    def is_valid_entry(entry: Any) -> bool:
        """Whether ``entry`` (read from the file) is one this manifest can hold."""
        return True

    def read(self) -> dict[str, Any]:
        """Return the manifest's content, empty if the file does not exist yet.

        Raises:
            ValueError: if the file is not a JSON object mapping names to valid entries.
        """
        if not self.path.exists():
            return {}
        try:
            content = json.loads(self.path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{self.kind} {self.path} is not valid JSON: {error}") from error
        if not isinstance(content, dict) or not all(self.is_valid_entry(entry) for entry in content.values()):
            raise ValueError(
                f"{self.kind} {self.path} must be a JSON object {self.expected_content}, "
                f"found {type(content).__name__} content."
            )
        return content

    def record(self, identity: str, entry: Any) -> None:
        """Add ``identity -> entry`` (a JSON value: lists, not tuples) to the manifest, writing only if it is new.

        Raises:
            ValueError: if the manifest already holds ``identity`` with another entry.
        """
        if self._known is None:
            self._known = self.read()
        if self._is_recorded(self._known, identity, entry):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._known = self.read()
                if self._is_recorded(self._known, identity, entry):
                    return
                self._known[identity] = entry
                with write_atomically(self.path) as temporary:
                    temporary.write_text(json.dumps(dict(sorted(self._known.items())), indent=1))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _is_recorded(self, content: dict[str, Any], identity: str, entry: Any) -> bool:
        """Whether ``content`` holds ``identity`` with exactly ``entry``; raise if it holds another one."""
        known = content.get(identity)
        if known is None:
            return False
        if known != entry:
            raise ValueError(
                f"{self.kind} {self.path} already records identity {identity!r} with {self.entry_name} "
                f"{known}, now {entry}: the seed or settings changed, or two images share this identity "
                "(give each a unique identity with `id_key`, or use a new manifest path)."
            )
        return True
