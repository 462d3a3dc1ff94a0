"""JSON record of which objects a simulated sparse annotation kept, safe to share between processes."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from spoco_monai.data.atomic import write_atomically

__all__ = ["SparseAnnotationManifest"]


class SparseAnnotationManifest:
    """A JSON file ``{identity: [kept ids, ascending], ...}`` that many processes may append to.

    Each :meth:`record` takes an exclusive ``fcntl`` lock on a sibling file ``<path>.lock``, re-reads the
    manifest, merges the new entry and replaces the file atomically (:func:`spoco_monai.data.atomic.write_atomically`),
    so data-loader workers and distributed ranks writing at the same time neither lose entries nor leave a
    half-written file behind. The lock is advisory and POSIX-only.

    Entries are immutable: recording an identity again with different ids raises, because the manifest
    must describe the single annotation that training used (a different subset means another seed or
    fraction, or two images that share an identity).

    Args:
        path: the JSON file; its folder is created if needed.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        # Entries known to be on disk already: each process then writes an identity at most once.
        self._known: dict[str, list[int]] | None = None

    def read(self) -> dict[str, list[int]]:
        """Return the manifest's content, empty if the file does not exist yet.

        Raises:
            ValueError: if the file is not a JSON object mapping names to lists of integers.
        """
        if not self.path.exists():
            return {}
        try:
            content = json.loads(self.path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"sparse annotation manifest {self.path} is not valid JSON: {error}") from error
        if not isinstance(content, dict) or not all(
            isinstance(ids, list) and all(isinstance(i, int) for i in ids) for ids in content.values()
        ):
            raise ValueError(
                f"sparse annotation manifest {self.path} must be a JSON object {{identity: [int, ...]}}, "
                f"found {type(content).__name__} content."
            )
        return content

    def record(self, identity: str, kept_ids: list[int]) -> None:
        """Add ``identity -> kept_ids`` to the manifest, writing only if the entry is new.

        Raises:
            ValueError: if the manifest already holds ``identity`` with different ids.
        """
        if self._known is None:
            self._known = self.read()
        if self._is_recorded(self._known, identity, kept_ids):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._known = self.read()
                if self._is_recorded(self._known, identity, kept_ids):
                    return
                self._known[identity] = list(kept_ids)
                with write_atomically(self.path) as temporary:
                    temporary.write_text(json.dumps(dict(sorted(self._known.items())), indent=1))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _is_recorded(self, content: dict[str, list[int]], identity: str, kept_ids: list[int]) -> bool:
        """Whether ``content`` holds ``identity`` with exactly ``kept_ids``; raise if it holds other ids."""
        known = content.get(identity)
        if known is None:
            return False
        if known != kept_ids:
            raise ValueError(
                f"sparse annotation manifest {self.path} already records identity {identity!r} with kept ids "
                f"{known}, now {kept_ids}: the seed or fraction changed, or two images share this identity "
                "(give each a unique identity with `id_key`, or use a new manifest path)."
            )
        return True
