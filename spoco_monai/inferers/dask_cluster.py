"""The dask.distributed cluster a whole-volume run uses: a LocalCluster of N workers, or a running scheduler.

dask and distributed are an optional extra (``pip install 'spoco-monai[distributed]'``); a run in one process does
not need them. Any cluster that a ``distributed.Client`` reaches works, dask-jobqueue's ``SLURMCluster`` included
(pass its ``scheduler_address``, or a client connected to it); its workers need the same Python environment and
the shared file system that holds the input, the output and the work directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from monai.utils import OptionalImportError, optional_import

distributed, has_distributed = optional_import("distributed")

INSTALL_HINT = "pip install 'spoco-monai[distributed]'"


class DaskNotInstalledError(OptionalImportError):
    """Workers or a scheduler were asked for, but dask.distributed is not installed."""


class SchedulerUnreachableError(ConnectionError):
    """No dask scheduler answers at the given address."""


@contextmanager
def dask_client(workers: int | None = None, scheduler: Any = None) -> Iterator[Any]:
    """A ``distributed.Client`` for the run, or ``None`` for a run in this process.

    Args:
        workers: start a LocalCluster of this many worker processes, one thread each (closed at the end).
        scheduler: the address of a running scheduler (e.g. ``tcp://10.0.0.1:8786``), or a connected
            ``distributed.Client`` (kept open at the end).

    Raises:
        ValueError: both or an invalid number of workers are given.
        DaskNotInstalledError: dask.distributed is not installed.
        SchedulerUnreachableError: no scheduler answers at ``scheduler`` within dask's connect timeout
            (``distributed.comm.timeouts.connect``).
    """
    if workers is None and scheduler is None:
        yield None
        return
    if workers is not None and scheduler is not None:
        raise ValueError(f"give workers or a scheduler, not both; got workers={workers} and scheduler={scheduler!r}.")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}.")
    if not has_distributed:
        raise DaskNotInstalledError(
            f"workers and schedulers need dask.distributed, which is not installed: {INSTALL_HINT}"
        )
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler)
        except OSError as error:
            raise SchedulerUnreachableError(
                f"cannot reach the dask scheduler at {scheduler} ({error}); start it or check the address."
            ) from None
        with client:
            yield client
        return
    # processes, not threads: the network and the clustering hold the GIL in parts, and a killed worker
    # takes only its own block with it
    with distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        yield client
