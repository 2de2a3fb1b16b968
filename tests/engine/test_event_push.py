"""``EventLoop.push`` (the engine's once-per-step call) orders and checks events exactly as
``schedule`` does: same keys, same insertion counter, same refusals."""

from __future__ import annotations

import math

import pytest

from servesim.core.events import EventLoop, EventPriority


def test_push_and_schedule_share_one_order() -> None:
    loop, seen = EventLoop(), []
    loop.push(1.0, EventPriority.STEP_START, seen.append, ("push-start",))
    loop.schedule(1.0, seen.append, "schedule-arrival", priority=EventPriority.ARRIVAL)
    loop.push(1.0, EventPriority.ARRIVAL, seen.append, ("push-arrival",))  # after, same key
    handle = loop.push(0.5, EventPriority.STEP_END, seen.append, ("cancelled",))
    loop.cancel(handle)
    loop.run()
    assert seen == ["schedule-arrival", "push-arrival", "push-start"]
    assert loop.now == 1.0


@pytest.mark.parametrize("time_s", [math.nan, math.inf, -math.inf, 0.5])
def test_push_refuses_what_schedule_refuses(time_s: float) -> None:
    loop = EventLoop(start_s=1.0)
    with pytest.raises(ValueError, match="cannot schedule an event at"):
        loop.push(time_s, EventPriority.ARRIVAL, print, ())
    with pytest.raises(ValueError, match="cannot schedule an event at"):
        loop.schedule(time_s, print)
