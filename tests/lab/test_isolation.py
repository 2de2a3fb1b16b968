"""Each run is isolated: limits stop bad policies with a structured failure, and the next
evaluation runs normally."""

from __future__ import annotations

import time

import pytest

from servesim.lab import Limits, evaluate


def test_a_sleeping_policy_times_out_and_the_next_evaluation_runs(tiny: str, pol: str) -> None:
    start = time.monotonic()
    score = evaluate(pol + "Sleeper", tiny, seeds=[0], limits=Limits(wall_s=2.0))
    assert time.monotonic() - start < 15  # two runs, each stopped at ~2 s
    assert score.value is None and not score.is_valid
    assert {f.category for f in score.failures} == {"timeout"}
    first = score.failures[0]
    assert first.scenario == "chat-small" and first.seed == 0
    assert "wall-clock limit of 2 s in hook schedule" in first.message
    assert first.sim_time_s > 0
    after = evaluate(pol + "Fcfs", tiny, seeds=[0])
    assert after.is_valid and after.value is not None and after.value > 0


def test_a_spinning_hook_hits_the_per_call_cpu_limit(tiny: str, pol: str) -> None:
    score = evaluate(pol + "Spinner", tiny, seeds=[0])
    assert score.failures[0].category == "timeout"
    assert "hook schedule exceeded its 20 ms CPU limit" in score.failures[0].message


def test_a_raising_policy_yields_error_with_its_message(tiny: str, pol: str) -> None:
    score = evaluate(pol + "Raiser", tiny, seeds=[0])
    failure = score.failures[0]
    assert failure.category == "error"
    assert failure.message == "schedule raised ValueError: boom after one second"
    assert 1.0 < failure.sim_time_s < 2.0  # where it raised, in simulated time


def test_a_wrong_return_type_breaks_the_contract(tiny: str, pol: str) -> None:
    failure = evaluate(pol + "WrongType", tiny, seeds=[0]).failures[0]
    assert failure.category == "contract"
    assert failure.message.startswith("batch-type: schedule returned [Batch(")
    assert failure.message.endswith("not a Batch or None")


def test_a_router_index_out_of_range_breaks_the_contract(tiny: str, pol: str) -> None:
    score = evaluate(pol + "OutOfRangeRouter", tiny, seeds=[0])
    # chat-small has one replica (index 1 is out of range too), routed has two
    messages = {f.scenario: f.message for f in score.failures}
    assert messages["routed"] == "router-index: route returned 2, outside 0..1"
    assert {f.category for f in score.failures} == {"contract"}


def test_a_memory_hog_is_stopped_by_the_memory_limit(tiny: str, pol: str) -> None:
    score = evaluate(pol + "Hog", tiny, seeds=[0], limits=Limits(memory_bytes=256 * 2**20))
    assert {f.category for f in score.failures} == {"memory"}
    assert "in hook schedule" in score.failures[0].message


def test_in_process_runs_still_turn_exceptions_into_failures(tiny: str, pol: str) -> None:
    score = evaluate(pol + "Raiser", tiny, seeds=[0], isolate=False)
    assert score.failures[0].category == "error"
    assert evaluate(pol + "Fcfs", tiny, seeds=[0], isolate=False).is_valid


@pytest.mark.parametrize("bad", ["Missing", "NotAPolicy"])
def test_a_bad_policy_reference_is_a_config_error(tiny: str, pol: str, bad: str) -> None:
    from servesim.core.errors import ConfigError

    with pytest.raises(ConfigError):
        evaluate(pol + bad, tiny, seeds=[0])


def test_a_policy_deaf_to_the_alarm_is_killed_by_the_parent(tiny: str, pol: str) -> None:
    start = time.monotonic()
    # 3 s: room for the set-up on a loaded machine, so the hang is what the limit meets
    score = evaluate(pol + "Deaf", tiny, seeds=[0], limits=Limits(wall_s=3.0))
    assert time.monotonic() - start < 25  # two runs, each killed 2 s after its limit
    assert [(f.category, f.message) for f in score.failures] == [
        ("timeout", "killed after the 3 s limit")
    ] * 2


def test_a_policy_that_exits_its_worker_is_an_error(tiny: str, pol: str) -> None:
    failure = evaluate(pol + "Exiter", tiny, seeds=[0]).failures[0]
    assert failure.category == "error" and failure.message.startswith("worker died (status")
