"""Where the per-block tasks of a whole-volume run execute: in this process, or as dask.distributed tasks.

A run is a few stages, each a function applied to every block (segment, match, write). The stage functions are
the same for both runners; only their arguments' travel differs: :class:`InProcessRunner` calls them in order
here, :class:`DaskRunner` sends the arguments shared by a stage once to every worker (a broadcast ``scatter``) and
submits one small task per block, at most ``max_in_flight`` at a time, whose result (a few numbers or a small
array) comes back to the client.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch
from tqdm import tqdm


class TaskRunner(ABC):
    """Applies a function to many argument tuples, with the same shared keyword arguments for all."""

    @abstractmethod
    def map(
        self,
        function: Callable[..., Any],
        arguments: Sequence[tuple],
        description: str,
        calls_per_task: int = 1,
        **shared: Any,
    ) -> list[Any]:
        """``[function(*args, **shared) for args in arguments]``, with a progress bar named ``description``.

        ``calls_per_task`` calls go in one task where tasks are sent elsewhere: more than one for calls that take
        milliseconds, whose cost would otherwise be the scheduler's.

        Raises:
            the first exception a call raises (the calls not yet finished are cancelled).
        """

    @property
    @abstractmethod
    def in_process(self) -> bool:
        """Whether the calls run in this process (arguments need not be sent anywhere)."""


class InProcessRunner(TaskRunner):
    """Calls the function here, in order (the runner of a run without dask).

    Args:
        progress: show a progress bar per stage.
    """

    def __init__(self, progress: bool = False) -> None:
        self.progress = progress

    @property
    def in_process(self) -> bool:
        return True

    def map(
        self,
        function: Callable[..., Any],
        arguments: Sequence[tuple],
        description: str,
        calls_per_task: int = 1,
        **shared: Any,
    ) -> list[Any]:
        return [
            function(*args, **shared)
            for args in tqdm(arguments, desc=description, unit="block", disable=not self.progress)
        ]


class DaskRunner(TaskRunner):
    """Submits one task per argument tuple to a dask.distributed cluster and gathers the results as they finish.

    A task whose worker dies is run again on another worker by the scheduler (up to its ``allowed-failures``);
    the stage functions write their results atomically, so a task run twice leaves what it leaves once.

    Args:
        client: a connected ``distributed.Client``.
        torch_threads: torch threads of every task (``torch.set_num_threads`` on the worker); ``None`` keeps the
            workers' setting.
        progress: show a progress bar per stage (over finished tasks).
        max_in_flight: most tasks submitted and not yet finished: enough to keep a large cluster busy, few enough
            that the client's bookkeeping does not grow with the number of blocks.
    """

    def __init__(
        self, client: Any, torch_threads: int | None = None, progress: bool = False, max_in_flight: int = 1000
    ) -> None:
        self.client = client
        self.torch_threads = torch_threads
        self.progress = progress
        self.max_in_flight = max_in_flight

    @property
    def in_process(self) -> bool:
        return False

    def map(
        self,
        function: Callable[..., Any],
        arguments: Sequence[tuple],
        description: str,
        calls_per_task: int = 1,
        **shared: Any,
    ) -> list[Any]:
        from distributed import as_completed

        if not arguments:
            return []
        groups = [arguments[start : start + calls_per_task] for start in range(0, len(arguments), calls_per_task)]
        # one copy of the shared arguments (the network, the input's reader) per worker, not one per task
        scattered = {name: self.client.scatter(value, broadcast=True, hash=False) for name, value in shared.items()}
        position: dict[str, int] = {}
        running = as_completed()

        def submit(number: int) -> None:
            future = self.client.submit(
                _run_task, function, groups[number], self.torch_threads, pure=False, **scattered
            )
            position[future.key] = number
            running.add(future)

        results: list[list[Any]] = [[] for _ in groups]
        submitted = min(len(groups), self.max_in_flight)
        try:
            for number in range(submitted):
                submit(number)
            with tqdm(total=len(arguments), desc=description, unit="block", disable=not self.progress) as bar:
                for future in running:
                    number = position.pop(future.key)
                    results[number] = future.result()
                    future.release()
                    bar.update(len(groups[number]))
                    if submitted < len(groups):
                        submit(submitted)
                        submitted += 1
        finally:
            # after a failure, the tasks not yet run are dropped (a running one finishes its block)
            self.client.cancel([*running.futures, *scattered.values()])
        return [result for group in results for result in group]


def _run_task(
    function: Callable[..., Any], arguments: Sequence[tuple], torch_threads: int | None, **shared: Any
) -> list[Any]:
    if torch_threads is not None and torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)
    return [function(*args, **shared) for args in arguments]
