"""vLLM V0 async output processing: tokens are stamped one host overhead after their step."""

from __future__ import annotations

import numpy as np
import pytest

from servesim.engine import SarathiSchedulerConfig, VLLMSchedulerConfig
from servesim.perf.types import BatchShape, ReplicaPlan, StageTimes
from tests.engine.fakes import LinearPerf, assert_all_served, poisson_requests, req, rows, run
from tests.engine.fakes import setup as make_setup


class OverheadPerf(LinearPerf):
    """GPU time ``gpu_s`` per iteration plus a host overhead ``host_s`` before it."""

    def __init__(self, gpu_s: float, host_s: float) -> None:
        super().__init__(a=gpu_s, b=0.0, c=0.0)
        self.host_s = host_s

    def iteration_time(self, plan: ReplicaPlan, batch: BatchShape) -> StageTimes:
        """Constant stage time and host overhead."""
        return StageTimes(stage_s=(self.a,), overhead_s=self.host_s)


def _one_request(config: object, *, skip_ahead: bool = True) -> dict[str, np.ndarray]:
    perf = OverheadPerf(gpu_s=0.010, host_s=0.004)
    recs = run([req(0, 0.0, 100, 5)], perf, make_setup(config), skip_ahead=skip_ahead)
    assert_all_served(recs)
    return rows(recs)


@pytest.mark.parametrize("skip_ahead", [True, False])
def test_v0_stamps_after_next_steps_host_work(skip_ahead: bool) -> None:
    cols = _one_request(VLLMSchedulerConfig(), skip_ahead=skip_ahead)
    step_s = 0.014  # host 4 ms + GPU 10 ms
    # prefill step ends at 14 ms; its token is recorded after the next step's 4 ms host work
    assert cols["first_token_s"][0] == pytest.approx(step_s + 0.004)
    # 4 more decode steps; the last token is recorded the same 4 ms late
    assert cols["completion_s"][0] == pytest.approx(5 * step_s + 0.004)
    # gaps between tokens are unchanged: one step each
    assert cols["sum_tbt_s"][0] == pytest.approx(4 * step_s)


def test_flag_and_other_engines_stamp_at_step_end() -> None:
    for config in (
        VLLMSchedulerConfig(disable_async_output_proc=True),
        VLLMSchedulerConfig(version="v1"),
        SarathiSchedulerConfig(),
    ):
        cols = _one_request(config)
        assert cols["first_token_s"][0] == pytest.approx(0.014)
        assert cols["completion_s"][0] == pytest.approx(5 * 0.014)


class SeqOverheadPerf(LinearPerf):
    """Linear GPU time plus a host overhead that grows with the decode batch."""

    def iteration_time(self, plan: ReplicaPlan, batch: BatchShape) -> StageTimes:
        """GPU part from ``LinearPerf``, host part 4 ms + 0.3 ms per decode sequence."""
        gpu = super().iteration_time(plan, batch)
        return StageTimes(stage_s=gpu.stage_s, overhead_s=4e-3 + 3e-4 * batch.num_decode_seqs)


def test_skip_ahead_stamps_like_stepping() -> None:
    requests = poisson_requests(300, 20.0, (16, 600), (1, 200), seed=5)
    skipped = run(requests, SeqOverheadPerf(), make_setup(), skip_ahead=True)
    assert skipped.counters["num_skipped_iterations"] > 0
    on = rows(skipped)
    off = rows(run(requests, SeqOverheadPerf(), make_setup(), skip_ahead=False))
    for column in ("first_token_s", "completion_s", "sum_tbt_s", "max_tbt_s"):
        np.testing.assert_allclose(on[column], off[column], rtol=1e-9, atol=1e-12)
