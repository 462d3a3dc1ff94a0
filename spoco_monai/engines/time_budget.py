"""End a training once its iterations have taken a wall-clock budget, counted over every run that resumes it."""

from __future__ import annotations

import time

from ignite.engine import Engine, Events

__all__ = ["ELAPSED_KEY", "TimeBudget"]

# the engine state's attribute (and ``state_dict`` entry) holding the seconds the training has taken so far
ELAPSED_KEY = "elapsed_s"


class TimeBudget:
    """Terminate a trainer when the seconds its runs have taken reach ``seconds``, across resumed runs.

    ignite's ``TimeLimit`` counts from its own creation, so a resumed run would get the whole limit again. This
    handler keeps the seconds taken in the trainer's state (``engine.state.elapsed_s``, one of its
    ``state_dict_user_keys``): they are saved with the trainer in every checkpoint, a checkpoint loader restores them,
    and the clock goes on from there. The time counted runs from ``STARTED`` to the end of the last iteration, data
    loading and the handlers of each iteration included. A run restored from a checkpoint whose budget is spent ends
    at ``STARTED`` without ``COMPLETED``, so its final checkpoint is not written again.

    Attach it after the checkpoint loader (both act at ``STARTED``, and the loader must restore the seconds first).

    Args:
        seconds: the wall-clock budget of the whole training, > 0.

    Raises:
        ValueError: ``seconds`` is not positive.
    """

    def __init__(self, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(f"seconds must be positive, got {seconds}.")
        self.seconds = float(seconds)
        self._began = 0.0

    def attach(self, engine: Engine) -> None:
        if ELAPSED_KEY not in engine.state_dict_user_keys:
            engine.state_dict_user_keys.append(ELAPSED_KEY)
        setattr(engine.state, ELAPSED_KEY, 0.0)
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)

    def spent(self, engine: Engine) -> bool:
        """Whether the training of ``engine`` has taken its whole budget."""
        return getattr(engine.state, ELAPSED_KEY) >= self.seconds

    def _started(self, engine: Engine) -> None:
        if self.spent(engine):
            engine.terminate(skip_completed=True)
            return
        self._began = time.perf_counter() - getattr(engine.state, ELAPSED_KEY)

    def _iteration_completed(self, engine: Engine) -> None:
        setattr(engine.state, ELAPSED_KEY, time.perf_counter() - self._began)
        if self.spent(engine):
            engine.terminate()
