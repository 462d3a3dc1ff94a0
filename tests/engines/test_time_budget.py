"""TimeBudget: the training ends when its seconds, counted over resumed runs, reach the budget."""

from __future__ import annotations

import pytest
from ignite.engine import Engine, Events

from spoco_monai.engines import TimeBudget
from spoco_monai.engines import time_budget as module


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    """A fake ``time.perf_counter`` that every iteration moves on by one second."""
    now = [100.0]
    monkeypatch.setattr(module.time, "perf_counter", lambda: now[0])
    return now


def _trainer(clock: list[float], seconds: float) -> tuple[Engine, list[str]]:
    def step(engine, batch):
        clock[0] += 1.0

    engine = Engine(step)
    TimeBudget(seconds).attach(engine)
    events = []
    engine.add_event_handler(Events.COMPLETED, lambda _: events.append("completed"))
    return engine, events


def test_the_run_ends_at_the_first_iteration_that_reaches_the_budget(clock):
    engine, events = _trainer(clock, 3.5)
    engine.run(range(10), max_epochs=100)
    assert engine.state.iteration == 4 and engine.state.elapsed_s == 4.0
    assert events == ["completed"]  # the final checkpoint of a finished training is written


def test_a_resumed_run_spends_only_what_is_left(clock):
    first, _ = _trainer(clock, 3.0)
    first.run(range(10), max_epochs=100)
    saved = first.state_dict()
    assert saved["elapsed_s"] == 3.0
    clock[0] += 1000.0  # time between the runs does not count
    resumed, _ = _trainer(clock, 5.0)
    resumed.load_state_dict(saved)
    resumed.run(range(10))
    assert resumed.state.iteration == 5 and resumed.state.elapsed_s == 5.0


def test_a_spent_budget_runs_nothing_and_does_not_complete_again(clock):
    first, _ = _trainer(clock, 2.0)
    first.run(range(10), max_epochs=100)
    again, events = _trainer(clock, 2.0)
    again.load_state_dict(first.state_dict())
    again.run(range(10))
    assert again.state.iteration == 2 and events == []


@pytest.mark.parametrize("seconds", [0, -1.0])
def test_a_budget_that_is_not_positive_is_refused(seconds):
    with pytest.raises(ValueError, match="seconds must be positive"):
        TimeBudget(seconds)
