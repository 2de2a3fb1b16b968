"""Columnar records a simulation produces; ``servesim.metrics`` turns them into summaries.

The engine appends to these while it runs; nothing here keeps one Python object per token.
Per-token timings are kept as streaming aggregates per request (sum and max of gaps) plus a
global list of weighted gap samples (``TokenGapSamples``), so the TBT distribution over all
tokens is exact without storing every token: when ``n`` requests all see the same gap in one
iteration, that is one sample of weight ``n``.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np


class RejectReason(IntEnum):
    """Why a request never ran to completion (0: it completed)."""

    NONE = 0
    PROMPT_EXCEEDS_CONTEXT = 1  # prompt + output longer than the model's context window
    EXCEEDS_KV_CAPACITY = 2  # the request alone needs more KV blocks than the replica has
    NOT_FINISHED = 3  # still running or queued when the simulation stopped (duration limit)
    PROMPT_EXCEEDS_BATCH_TOKENS = 4  # prefill-first without chunking: prompt > token budget


class _Columns:
    """Growable numpy columns (amortised doubling); ``view()`` returns the filled prefix."""

    def __init__(self, dtypes: dict[str, np.dtype | type], capacity: int = 1024) -> None:
        self._dtypes = {k: np.dtype(v) for k, v in dtypes.items()}
        self._data = {k: np.empty(capacity, dtype=dt) for k, dt in self._dtypes.items()}
        self.size = 0

    def _grow(self, need: int) -> None:
        cap = len(next(iter(self._data.values())))
        if need <= cap:
            return
        new_cap = max(need, cap * 2)
        for k, arr in self._data.items():
            grown = np.empty(new_cap, dtype=arr.dtype)
            grown[: self.size] = arr[: self.size]
            self._data[k] = grown

    def append_row(self, **values: float | int) -> int:
        """Append one row; returns its index. Missing columns must not exist."""
        self._grow(self.size + 1)
        i = self.size
        for k, v in values.items():
            self._data[k][i] = v
        self.size += 1
        return i

    def column(self, name: str) -> np.ndarray:
        """The full backing array of ``name`` (write through it by row index)."""
        return self._data[name]

    def view(self, copy: bool = True) -> dict[str, np.ndarray]:
        """Filled prefix of every column: copies, safe to keep; with ``copy=False`` views of
        the backing arrays, valid only until the next append (summaries of a finished run)."""
        return {k: v[: self.size].copy() if copy else v[: self.size] for k, v in self._data.items()}


class _ChunkedColumns:
    """Append-only columns stored in fixed-size chunks, for tables of millions of rows.

    Growing never copies what is there (doubling a 7M-row table would briefly hold it three
    times) and the unused slack is under one chunk. Same interface as ``_Columns``;
    ``column()`` first joins the chunks into one array, so writes through it persist.
    """

    def __init__(self, dtypes: dict[str, np.dtype | type], chunk_rows: int = 1 << 16) -> None:
        self._dtypes = {k: np.dtype(v) for k, v in dtypes.items()}
        self._chunk_rows = chunk_rows
        self._chunks: list[dict[str, np.ndarray]] = []
        self._offset = 0  # rows in the chunks before the last one
        self.size = 0

    def _new_chunk(self, rows: int) -> dict[str, np.ndarray]:
        chunk = {k: np.empty(rows, dtype=dt) for k, dt in self._dtypes.items()}
        self._chunks.append(chunk)
        return chunk

    def append_row(self, **values: float | int) -> int:
        """Append one row; returns its index. Missing columns must not exist."""
        i = self.size
        last = self._chunks[-1] if self._chunks else None
        if last is None or i - self._offset >= len(next(iter(last.values()))):
            if last is not None:
                self._offset = i
            last = self._new_chunk(self._chunk_rows)
        j = i - self._offset
        for k, v in values.items():
            last[k][j] = v
        self.size += 1
        return i

    def _filled(self) -> list[dict[str, np.ndarray]]:
        """Each chunk cut to its filled rows."""
        out = []
        for index, chunk in enumerate(self._chunks):
            if index < len(self._chunks) - 1:
                out.append(chunk)
            else:
                out.append({k: v[: self.size - self._offset] for k, v in chunk.items()})
        return out

    def view(self, copy: bool = True) -> dict[str, np.ndarray]:
        """Filled rows of every column as one array each: new arrays, or with ``copy=False``
        views of the storage after joining the chunks in place (valid until the next append)."""
        if not copy:
            self._join()
        filled = self._filled()
        if not filled:
            return {k: np.empty(0, dtype=dt) for k, dt in self._dtypes.items()}
        if len(filled) == 1:
            return {k: v.copy() if copy else v for k, v in filled[0].items()}
        return {k: np.concatenate([c[k] for c in filled]) for k in self._dtypes}

    def _join(self) -> None:
        """Make the chunks one exact-size chunk, a column at a time, freeing each column's
        chunks as it goes: joining costs one column of extra memory, not the whole table."""
        if len(self._chunks) <= 1:
            return
        filled = self._filled()
        joined: dict[str, np.ndarray] = {}
        for name in self._dtypes:
            joined[name] = np.concatenate([c[name] for c in filled])
            for chunk, part in zip(self._chunks, filled, strict=True):
                chunk.pop(name, None)  # ``part`` is the chunk itself or a cut of it
                part.pop(name, None)
        self._chunks = [joined]
        self._offset = 0

    def column(self, name: str) -> np.ndarray:
        """The full array of ``name`` (write through it by row index): joins the chunks."""
        self._join()
        if not self._chunks:
            self._new_chunk(self._chunk_rows)
        return self._chunks[0][name]


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
    "num_preempted": np.int64,  # sequences preempted while this batch was formed
}


@dataclass(slots=True)
class TokenGapSamples:
    """Weighted samples of inter-token gaps (TBT/ITL), exact and compact.

    Stored in typed arrays (8 bytes a value) so a million-request run stays small.
    """

    values_s: array = field(default_factory=lambda: array("d"))
    weights: array = field(default_factory=lambda: array("q"))

    def add(self, gap_s: float, weight: int = 1) -> None:
        """Record ``weight`` tokens that each followed their previous token by ``gap_s``."""
        if weight > 0:
            self.values_s.append(gap_s)
            self.weights.append(weight)

    def arrays(self, copy: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(values, weights) as numpy arrays; ``copy=False``: read-only views, valid only
        while nothing is added (summaries of a finished run)."""
        values = np.frombuffer(self.values_s, dtype=np.float64)
        weights = np.frombuffer(self.weights, dtype=np.int64)
        return (values.copy(), weights.copy()) if copy else (values, weights)


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

    requests: _Columns = field(default_factory=lambda: _Columns(REQUEST_COLUMNS))
    iterations: _ChunkedColumns = field(default_factory=lambda: _ChunkedColumns(ITERATION_COLUMNS))
    token_gaps: TokenGapSamples = field(default_factory=TokenGapSamples)
    replicas: list[ReplicaInfo] = field(default_factory=list)
    slo_classes: list[str] = field(default_factory=lambda: ["default"])
    end_s: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name``."""
        self.counters[name] = self.counters.get(name, 0) + amount
