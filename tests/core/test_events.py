"""The event loop: ordering by (time, priority, insertion), cancellation, limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servesim.core.events import EventLoop


def test_orders_by_time_then_priority_then_insertion() -> None:
    loop = EventLoop()
    seen: list[str] = []
    loop.schedule(1.0, seen.append, "t1-p1", priority=1)
    loop.schedule(1.0, seen.append, "t1-p0-a")
    loop.schedule(0.5, seen.append, "t0.5")
    loop.schedule(1.0, seen.append, "t1-p0-b")
    loop.run()
    assert seen == ["t0.5", "t1-p0-a", "t1-p0-b", "t1-p1"]
    assert loop.now == 1.0


def test_events_scheduled_from_callbacks_and_cancel() -> None:
    loop = EventLoop()
    seen: list[float] = []

    def tick(n: int) -> None:
        seen.append(loop.now)
        if n:
            loop.schedule(loop.now + 1.0, tick, n - 1)

    loop.schedule(0.0, tick, 3)
    handle = loop.schedule(1.5, seen.append, -1.0)
    loop.cancel(handle)
    loop.run()
    assert seen == [0.0, 1.0, 2.0, 3.0]


def test_run_until_stops_before_later_events() -> None:
    loop = EventLoop()
    seen: list[int] = []
    loop.schedule(1.0, seen.append, 1)
    loop.schedule(5.0, seen.append, 5)
    loop.run(until_s=2.0)
    assert seen == [1] and loop.now == 2.0 and loop.num_pending == 1
    loop.run()
    assert seen == [1, 5]


def test_refuses_the_past_and_infinity() -> None:
    loop = EventLoop(start_s=1.0)
    with pytest.raises(ValueError, match="cannot schedule"):
        loop.schedule(0.5, print)
    with pytest.raises(ValueError):
        loop.schedule(float("inf"), print)
    with pytest.raises(ValueError):
        loop.schedule(float("nan"), print)


def test_exceptions_propagate() -> None:
    loop = EventLoop()

    def boom() -> None:
        raise RuntimeError("boom")

    loop.schedule(0.0, boom)
    with pytest.raises(RuntimeError, match="boom"):
        loop.run()


def test_stop() -> None:
    loop = EventLoop()
    seen: list[int] = []
    loop.schedule(1.0, loop.stop)
    loop.schedule(2.0, seen.append, 2)
    loop.run()
    assert seen == [] and loop.now == 1.0


@given(st.lists(st.tuples(st.floats(0, 100), st.integers(0, 3)), max_size=50))
def test_time_never_goes_backwards(events: list[tuple[float, int]]) -> None:
    loop = EventLoop()
    seen: list[tuple[float, int, int]] = []
    for i, (t, p) in enumerate(events):
        loop.schedule(t, lambda t=t, p=p, i=i: seen.append((t, p, i)), priority=p)
    loop.run()
    assert seen == sorted(seen)
    assert len(seen) == len(events)


def test_named_priorities_run_arrivals_then_step_ends_then_starts_then_control() -> None:
    from servesim.core.events import EventPriority

    loop = EventLoop()
    seen: list[str] = []
    for name in ("CONTROL", "STEP_START", "STEP_END", "ARRIVAL"):
        loop.schedule(1.0, seen.append, name, priority=EventPriority[name])
    loop.run()
    assert seen == ["ARRIVAL", "STEP_END", "STEP_START", "CONTROL"]
    assert [int(p) for p in EventPriority] == [0, 1, 2, 3]
