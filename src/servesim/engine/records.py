"""Columnar records a simulation produces; ``servesim.metrics`` turns them into summaries.

The engine appends to these while it runs; nothing here keeps one Python object per token.
Per-token timings are kept as streaming aggregates per request (sum and max of gaps) plus a
global list of weighted gap samples (``TokenGapSamples``), so the TBT distribution over all
tokens is exact without storing every token: when ``n`` requests all see the same gap in one
iteration, that is one sample of weight ``n``.

Memory is bounded for any run length: past fixed budgets (``columns.REQUEST_BUDGET_ROWS``,
``columns.ITERATION_BUDGET_ROWS``, ``TOKEN_GAP_BUDGET``) finished request chunks, full
iteration chunks and token-gap buffers move to disk (``servesim.engine.spill``); each table's
``is_spilled`` says so and ``chunks()`` reads it back a chunk at a time. Small runs never
spill, so their records (and summaries) are exactly what they always were.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from servesim.engine.columns import (  # noqa: F401  (_Columns: tests and older callers)
    RequestTable,
    _ChunkedColumns,
    _Columns,
)
from servesim.engine.spill import ChunkStore


class RejectReason(IntEnum):
    """Why a request never ran to completion (0: it completed)."""

    NONE = 0
    PROMPT_EXCEEDS_CONTEXT = 1  # prompt + output longer than the model's context window
    EXCEEDS_KV_CAPACITY = 2  # the request alone needs more KV blocks than the replica has
    NOT_FINISHED = 3  # still running or queued when the simulation stopped (duration limit)
    PROMPT_EXCEEDS_BATCH_TOKENS = 4  # prefill-first without chunking: prompt > token budget
    REJECTED_BY_ADMISSION = 5  # refused at the cluster entry by the admission policy


REQUEST_COLUMNS: dict[str, type] = {
    "request_id": np.int64,
    "replica_id": np.int32,
    "arrival_s": np.float64,
    "first_scheduled_s": np.float64,  # NaN until scheduled
    "first_token_s": np.float64,  # NaN until the prompt is done
    "completion_s": np.float64,  # NaN until finished
    "num_prompt_tokens": np.int64,
    "num_output_tokens": np.int64,  # requested
    "num_emitted_tokens": np.int64,  # produced so far (== requested when completed)
    "sum_tbt_s": np.float64,  # sum of gaps between consecutive output tokens (excl. first)
    "max_tbt_s": np.float64,  # largest such gap
    "num_preemptions": np.int32,
    "num_prefix_hit_tokens": np.int64,  # prompt tokens served from the prefix cache
    "priority": np.int32,
    "user_id": np.int64,
    "slo_class_index": np.int32,  # index into SimulationRecords.slo_classes
    "reject_reason": np.int8,  # RejectReason
    # replica that decoded it after a disaggregated prefill on ``replica_id`` (-1: none)
    "decode_replica_id": np.int32,
}

ITERATION_COLUMNS: dict[str, type] = {
    "replica_id": np.int32,
    "start_s": np.float64,
    "duration_s": np.float64,
    "num_prefill_tokens": np.int64,
    "num_decode_seqs": np.int64,
    "num_seqs": np.int64,  # sequences in the batch
    "num_kv_blocks_used": np.int64,  # after the iteration's allocations
    "num_queued": np.int64,  # requests waiting when the batch was formed
    "flops": np.float64,
    "hbm_bytes": np.float64,
    "energy_j": np.float64,  # GPU energy of the row, all GPUs of the replica
    "repeat": np.int64,  # >1 when decode-only iterations were advanced together
    "host_s": np.float64,  # host (CPU) time of the row no GPU stage overlaps (StageTimes)
    "comm_s": np.float64,  # of the GPU time, collectives (StageTimes.comm_s; the trace's comm)
    "num_preempted": np.int64,  # sequences preempted while this batch was formed
    # A skipped-ahead run's (engine/rows.py DecodeRun): the sum over its ticks of KV blocks
    # used / sequences x the tick's span (timeseries.iteration_spans), so the summary's KV and
    # batch series equal those of its ticks; 0 for a single iteration (spanned by the summary;
    # a run's seq_s is > 0: it decodes at least one sequence for a positive time)
    "kv_block_s": np.float64,
    "seq_s": np.float64,
    # and its KV use's first moment about the row's start (block s^2: blocks x span x the
    # span's middle from the start, summed over its ticks; 0 for a single iteration), the
    # line a plot bin that cuts the row splits it by (timeseries.row_states)
    "kv_block_s2": np.float64,
}


# Token-gap samples kept in memory before they go to disk in chunks (16 bytes a sample: 16 MB).
TOKEN_GAP_BUDGET = 1 << 20

_GAP_DTYPES = {"value_s": np.dtype(np.float64), "weight": np.dtype(np.int64)}


class TokenGapSamples:
    """Weighted samples of inter-token gaps (TBT/ITL), exact and compact.

    Stored in typed arrays (8 bytes a value). Past ``budget`` samples in memory the buffer
    moves to disk as one chunk (``servesim.engine.spill``) and starts again, so a long run
    holds at most ``budget`` samples; ``chunks()`` reads them all back in order. Samples keep
    their index either way (``num_samples``; ``len(values_s)`` says the same), so the warm-up
    cut (``tail``) stays exact.
    """

    __slots__ = ("_budget", "_store", "_values", "_weights")

    def __init__(self, budget: int | None = None) -> None:
        self._values = array("d")
        self._weights = array("q")
        self._budget = TOKEN_GAP_BUDGET if budget is None else budget
        self._store: ChunkStore | None = None

    def add(self, gap_s: float, weight: int = 1) -> None:
        """Record ``weight`` tokens that each followed their previous token by ``gap_s``."""
        if weight > 0:
            self._values.append(gap_s)
            self._weights.append(weight)
            if len(self._values) >= self._budget:
                self._spill()

    def _spill(self) -> None:
        if self._store is None:
            self._store = ChunkStore(_GAP_DTYPES)
        self._store.append(self._buffer_arrays(copy=True))
        self._values, self._weights = array("d"), array("q")

    def _buffer_arrays(self, copy: bool) -> dict[str, np.ndarray]:
        values = np.frombuffer(self._values, dtype=np.float64)
        weights = np.frombuffer(self._weights, dtype=np.int64)
        if copy:
            values, weights = values.copy(), weights.copy()
        return {"value_s": values, "weight": weights}

    @property
    def is_spilled(self) -> bool:
        """Whether some samples live on disk (read them with ``chunks()``)."""
        return self._store is not None

    @property
    def num_samples(self) -> int:
        """Samples recorded so far (the index the next one gets)."""
        on_disk = self._store.num_rows if self._store is not None else 0
        return on_disk + len(self._values)

    @property
    def values_s(self) -> array | _SampleCount:
        """The sample values while all are in memory; once some are on disk, an object whose
        ``len()`` is still ``num_samples`` (what callers take as the next sample's index)."""
        if self._store is None:
            return self._values
        return _SampleCount(self.num_samples)

    @property
    def weights(self) -> array:
        """The weights of the samples in memory."""
        return self._weights

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(values, weights) a chunk at a time, in sample order (disk chunks read back).
        The last chunk is a read-only view, valid while nothing is added."""
        if self._store is not None:
            for chunk in self._store:
                yield chunk["value_s"], chunk["weight"]
        if len(self._values):
            buffer = self._buffer_arrays(copy=False)
            yield buffer["value_s"], buffer["weight"]

    def arrays(self, copy: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(values, weights) as numpy arrays; ``copy=False``: read-only views, valid only
        while nothing is added (summaries of a finished run). Spilled samples are read back
        whole (new arrays)."""
        if self._store is None:
            buffer = self._buffer_arrays(copy)
            return buffer["value_s"], buffer["weight"]
        parts = list(self.chunks())
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def __eq__(self, other: object) -> bool:
        """Same samples, in the same order (wherever they are kept)."""
        if not isinstance(other, TokenGapSamples):
            return NotImplemented
        mine, theirs = self.arrays(), other.arrays()
        return all(a.tobytes() == b.tobytes() for a, b in zip(mine, theirs, strict=True))

    # unhashable: mutable
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TokenGapSamples(num_samples={self.num_samples}, is_spilled={self.is_spilled})"

    def tail(self, first: int) -> TokenGapSamples:
        """A new set of the samples from index ``first`` on (in memory while they fit)."""
        out = TokenGapSamples(self._budget)
        start = 0
        for values, weights in self.chunks():
            end = start + values.size
            lo = max(first - start, 0)
            if lo < values.size:
                out._extend(values[lo:], weights[lo:])
            start = end
        return out

    def _extend(self, values: np.ndarray, weights: np.ndarray) -> None:
        room = self._budget - len(self._values)
        while values.size:
            self._values.extend(values[:room].tolist())
            self._weights.extend(weights[:room].tolist())
            values, weights = values[room:], weights[room:]
            if len(self._values) >= self._budget:
                self._spill()
            room = self._budget


class _SampleCount:
    """Stands for a sample array that is partly on disk: only its length is known here."""

    __slots__ = ("_n",)

    def __init__(self, n: int) -> None:
        self._n = n

    def __len__(self) -> int:
        return self._n


def _request_left(chunk: dict[str, np.ndarray]) -> np.ndarray:
    """Rows whose request left (completed, or rejected for a reason): final from now on."""
    return np.isfinite(chunk["completion_s"]) | (chunk["reject_reason"] != RejectReason.NONE)


@dataclass(slots=True)
class ReplicaInfo:
    """Static facts about a replica that metrics need (cost, energy, MFU/MBU)."""

    replica_id: int
    gpu_name: str
    num_gpus: int
    num_kv_blocks: int
    block_size_tokens: int
    price_per_gpu_hour_usd: float
    tdp_w: float
    idle_w: float
    peak_flops_per_s: float  # per GPU, in the dtype the GEMMs run in
    hbm_bandwidth_bytes_per_s: float  # per GPU
    pool: str = "default"
    role: str = "unified"


@dataclass(slots=True)
class SimulationRecords:
    """Everything a run recorded.

    Attributes:
        requests: one row per request (see ``REQUEST_COLUMNS``).
        iterations: one row per executed iteration (or run of identical decode iterations).
        token_gaps: the TBT distribution over all tokens.
        replicas: static facts per replica.
        slo_classes: names indexed by ``slo_class_index``.
        end_s: simulated time when the run stopped.
        counters: named integer counters (preemptions, swaps, prefix-cache lookups/hits, ...).
    """

    requests: RequestTable = field(
        default_factory=lambda: RequestTable(REQUEST_COLUMNS, is_finished=_request_left)
    )
    iterations: _ChunkedColumns = field(default_factory=lambda: _ChunkedColumns(ITERATION_COLUMNS))
    token_gaps: TokenGapSamples = field(default_factory=TokenGapSamples)
    replicas: list[ReplicaInfo] = field(default_factory=list)
    slo_classes: list[str] = field(default_factory=lambda: ["default"])
    end_s: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name``."""
        self.counters[name] = self.counters.get(name, 0) + amount
