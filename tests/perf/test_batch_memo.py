"""The per-plan batch memo of ``RooflinePerfModel`` stays bounded and never changes an answer."""

from __future__ import annotations

from factories import h100, llama31_8b

from servesim.perf.roofline import RooflinePerfModel
from servesim.perf.types import BatchShape, ReplicaPlan


def _shapes(n: int) -> list[BatchShape]:
    return [
        BatchShape(
            num_decode_seqs=1 + i % 7,
            decode_context_tokens=100 * (1 + i % 7) + i,
            max_decode_context_tokens=100 + i,
        )
        for i in range(n)
    ]


def test_memo_is_bounded_and_answers_match_an_uncached_model() -> None:
    plan = ReplicaPlan(model=llama31_8b(), gpu=h100())
    small = RooflinePerfModel(max_cached_batches=10)
    shapes = _shapes(200)
    first = [small.iteration_time(plan, s) for s in shapes]
    entry = small._cache(plan)
    assert len(entry.by_batch) + len(entry.old_batches) <= 10
    fresh = [RooflinePerfModel(max_cached_batches=1).iteration_time(plan, s) for s in shapes]
    again = [small.iteration_time(plan, s) for s in reversed(shapes)]
    assert first == fresh == list(reversed(again))


def test_recent_shapes_survive_a_generation_change() -> None:
    plan = ReplicaPlan(model=llama31_8b(), gpu=h100())
    perf = RooflinePerfModel(max_cached_batches=4)
    a, b, c, d = _shapes(4)
    for shape in (a, b, c):  # a, b fill the first generation; c starts the next
        perf.iteration_time(plan, shape)
    entry = perf._cache(plan)
    assert set(entry.old_batches) == {a, b} and set(entry.by_batch) == {c}
    perf.iteration_time(plan, a)  # a hit in the old generation is promoted
    assert set(entry.by_batch) == {c, a}
    perf.iteration_time(plan, d)  # the next change drops b, never asked for again
    assert set(entry.old_batches) == {c, a} and set(entry.by_batch) == {d}
