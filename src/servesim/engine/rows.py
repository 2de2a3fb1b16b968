"""Rows of the simulation records an engine writes: one per iteration (or per run of identical
decode iterations advanced together) and one per request when it leaves."""

from __future__ import annotations

from servesim.engine.batch import Batch
from servesim.engine.records import SimulationRecords
from servesim.engine.sequence import Seq
from servesim.perf.types import StageTimes


class DecodeRun:
    """Accumulates a run of decode iterations with the same sequences.

    Besides the totals, it keeps what the summary's time series need of the ticks it stands
    for (``metrics.timeseries``: each iteration's state holds over its span, from its start to
    its replica's next iteration start or its own end): ``kv_block_s`` and ``seq_s``, the sum
    over its ticks of blocks used (sequences) x the tick's span, and ``kv_peak``, the most
    blocks any tick used, so one row gives the KV and batch figures of its ticks exactly;
    ``kv_block_s2``, the first moment of its KV use about its start (the sum over its ticks of
    blocks x span x the span's middle, from the run's start), so a plot bin that cuts the row
    splits it by the line through its ticks' KV use (``timeseries.row_states``).
    """

    __slots__ = (
        "comm_s",
        "energy_j",
        "flops",
        "hbm_bytes",
        "host_s",
        "kv_block_s",
        "kv_block_s2",
        "kv_peak",
        "num_queued",
        "num_seqs",
        "num_ticks",
        "seq_s",
        "start_s",
    )

    def __init__(self, start_s: float, num_seqs: int, num_queued: int) -> None:
        self.start_s = start_s
        self.num_seqs = num_seqs
        self.num_queued = num_queued
        self.num_ticks = 0
        self.flops = self.hbm_bytes = self.energy_j = self.host_s = self.comm_s = 0.0
        self.kv_block_s = self.seq_s = self.kv_block_s2 = 0.0
        self.kv_peak = 0

    def add(
        self, times: StageTimes, kv_blocks_used: int, span_s: float, offset_s: float = 0.0
    ) -> None:
        """One more iteration, which used ``kv_blocks_used`` blocks (after its allocations),
        started ``offset_s`` after the run, and whose state held for ``span_s`` (its span in
        ``timeseries.iteration_spans``)."""
        self.num_ticks += 1
        block_s = kv_blocks_used * span_s
        self.kv_block_s += block_s
        self.kv_block_s2 += block_s * (offset_s + 0.5 * span_s)
        self.seq_s += self.num_seqs * span_s
        if kv_blocks_used > self.kv_peak:
            self.kv_peak = kv_blocks_used
        self.flops += times.flops
        self.hbm_bytes += times.hbm_bytes
        self.energy_j += times.energy_j
        self.host_s += times.overhead_s
        self.comm_s += times.comm_s


def append_run_row(
    records: SimulationRecords, replica_id: int, run: DecodeRun, end_s: float, kv_blocks_used: int
) -> None:
    """One row for ``run``'s decode iterations (``repeat`` = how many), ending at ``end_s``,
    with ``kv_blocks_used`` its ticks' most (``DecodeRun.kv_peak``); a skipped-ahead run has
    no preemptions (nothing can change)."""
    # the values in records.ITERATION_COLUMNS order (tests/engine/test_rows.py)
    records.iterations.append_values(
        (
            replica_id,
            run.start_s,
            end_s - run.start_s,  # duration_s
            0,  # num_prefill_tokens
            run.num_seqs,  # num_decode_seqs
            run.num_seqs,  # num_seqs
            kv_blocks_used,
            run.num_queued,
            run.flops,
            run.hbm_bytes,
            run.energy_j,
            run.num_ticks,  # repeat
            run.host_s,
            run.comm_s,
            0,  # num_preempted
            run.kv_block_s,
            run.seq_s,
            run.kv_block_s2,
        )
    )


def append_batch_row(
    records: SimulationRecords,
    replica_id: int,
    batch: Batch,
    times: StageTimes,
    duration_s: float,
    num_preempted: int,
) -> None:
    """One row for one iteration."""
    prefills, num_decodes = batch.prefills, len(batch.decodes)
    num_prefill_tokens = 0
    for _, chunk in prefills:
        num_prefill_tokens += chunk
    # the values in records.ITERATION_COLUMNS order (tests/engine/test_rows.py)
    records.iterations.append_values(
        (
            replica_id,
            batch.start_s,
            duration_s,
            num_prefill_tokens,
            num_decodes,
            len(prefills) + num_decodes,  # num_seqs
            batch.num_kv_blocks_used,
            batch.num_queued,
            times.flops,
            times.hbm_bytes,
            times.energy_j,
            1,  # repeat
            times.overhead_s,  # host_s
            times.comm_s,
            num_preempted,
            # a single iteration leaves its state integrals to the summary (its span needs
            # the replica's next row): 0 says so (ITERATION_COLUMNS)
            0.0,  # kv_block_s
            0.0,  # seq_s
            0.0,  # kv_block_s2
        )
    )


def write_request(
    records: SimulationRecords, seq: Seq, *, completion_s: float, reason: int = 0
) -> None:
    """Write a request's final figures into its row of ``records.requests``."""
    # The row's arrays and index (a long run's table keeps in-flight rows in chunks).
    cols, row = records.requests.locate(seq.row)
    cols["first_scheduled_s"][row] = seq.first_scheduled_s
    cols["first_token_s"][row] = seq.first_token_s
    first_s = seq.first_token_s
    # A stream reaches the client in order: its end is never before its first token, which
    # the front end may deliver after later steps have ended (EngineTiming.output_per_seq_s).
    if completion_s < first_s:
        completion_s = first_s
    cols["completion_s"][row] = completion_s
    cols["num_emitted_tokens"][row] = seq.num_emitted
    gaps_s = max(seq.last_token_s - first_s, 0.0) if seq.num_emitted > 1 else 0.0
    cols["sum_tbt_s"][row] = gaps_s
    cols["max_tbt_s"][row] = seq.max_gap_s
    cols["num_preemptions"][row] = seq.num_preemptions
    cols["num_prefix_hit_tokens"][row] = seq.num_hit_tokens
    cols["reject_reason"][row] = reason
