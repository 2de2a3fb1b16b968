"""``load_trace``: read a real trace into a ``Trace`` workload (columns plus honest counts).

Options are applied in this order: parse (bad rows raise, or are skipped and counted), time
window ``[start_s, end_s)`` in the trace's own seconds from its first row, first
``max_requests``, context limit (cap, skip or error, counted), then the first arrival is moved
to 0 (``normalize_start``) and times are divided by ``rate_scale`` (2.0 = twice the rate).
A length-only trace has no arrivals; pair it with a synthetic process via ``with_arrivals``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from servesim.core.errors import ConfigError, TraceError
from servesim.core.rng import RandomStreams
from servesim.workload.arrivals import DEFAULT_CHUNK, ArrivalProcess
from servesim.workload.lengths import JointEmpiricalLengths
from servesim.workload.native import Extras
from servesim.workload.request import Request
from servesim.workload.trace_formats import TraceFormat
from servesim.workload.trace_reader import (
    RowError,
    RowParser,
    TraceColumns,
    csv_rows,
    jsonl_rows,
    resolve_trace_format,
)
from servesim.workload.workload import Workload

logger = logging.getLogger(__name__)

OVER_LIMIT_ACTIONS = ("cap", "skip", "error")


@dataclass(frozen=True, slots=True)
class TraceOptions:
    """How to read a trace (see the module docstring for the order they apply in).

    Attributes:
        skip_bad_rows: skip malformed rows and count them instead of raising ``TraceError``.
        rate_scale: divide arrival times by this (time compression); 2.0 doubles the rate.
        start_s: keep rows at or after this many seconds from the trace's first row.
        end_s: keep rows before this many seconds from the trace's first row.
        max_requests: keep at most this many rows (the first ones after the window).
        max_context_tokens: context limit on prompt + output tokens.
        over_limit: what to do with a row over ``max_context_tokens``: ``"cap"`` (prompt to at
            most limit-1, output to what is left, as vLLM stops generation at max_model_len),
            ``"skip"`` (count it) or ``"error"``.
        normalize_start: move the first kept arrival to t=0 (apex traces start at 0.198 s).
    """

    skip_bad_rows: bool = False
    rate_scale: float = 1.0
    start_s: float | None = None
    end_s: float | None = None
    max_requests: int | None = None
    max_context_tokens: int | None = None
    over_limit: str = "cap"
    normalize_start: bool = True

    def check(self) -> None:
        """Raise ``ConfigError`` on an impossible option."""
        if not self.rate_scale > 0:
            raise ConfigError("rate_scale", self.rate_scale, "must be > 0")
        if self.max_requests is not None and self.max_requests < 1:
            raise ConfigError("max_requests", self.max_requests, "must be >= 1")
        if self.max_context_tokens is not None and self.max_context_tokens < 2:
            raise ConfigError("max_context_tokens", self.max_context_tokens, "must be >= 2")
        if self.over_limit not in OVER_LIMIT_ACTIONS:
            raise ConfigError("over_limit", self.over_limit, f"must be one of {OVER_LIMIT_ACTIONS}")
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise ConfigError("end_s", self.end_s, f"must be > start_s={self.start_s}")


class Trace(Workload):
    """A trace read into columns; iterates as ``Request`` objects in arrival order.

    Attributes:
        path: the file read.
        format: the ``TraceFormat`` used (detected or given).
        arrival_s: float64 arrival times after the options, or None for a length-only trace.
        prompt_tokens, output_tokens: int64 arrays.
        block_size: tokens per prefix block (0 when the trace has no block ids).
        num_rows_read: data rows looked at (before window / first-N cut-offs stop reading).
        skipped_by_problem: {problem: count} of rows skipped (bad rows and over-limit rows).
        first_skipped: locations of the first few skipped rows (file:line column: problem).
        num_capped_requests: rows whose lengths were capped to ``max_context_tokens``.
    """

    def __init__(self, path: Path, fmt: TraceFormat, options: TraceOptions, cols: TraceColumns):
        self.path, self.format, self.options = path, fmt, options
        self.name = path.name
        # Views on the parse buffers (no copy: a million-row trace is not held twice).
        self.prompt_tokens = np.frombuffer(cols.prompt, dtype=np.int64)
        self.output_tokens = np.frombuffer(cols.output, dtype=np.int64)
        self.arrival_s: np.ndarray | None = None
        if fmt.arrival_column:
            times = np.frombuffer(cols.arrival_s, dtype=np.float64)
            start = times[0] if options.normalize_start else 0.0
            self.arrival_s = (times - start) / options.rate_scale
        self.block_size = cols.block_size
        self.request_fields = cols.request_fields
        self.hash_values = np.frombuffer(cols.hash_values, dtype=np.int64)
        self.hash_offsets = np.frombuffer(cols.hash_offsets, dtype=np.int64)
        self.session_ids = (
            np.frombuffer(cols.session, dtype=np.int64) if fmt.session_column else None
        )
        self.num_rows_read = cols.num_rows_read
        self._skipped = dict(cols.skipped)
        self.first_skipped = list(cols.first_skipped)
        self._num_capped = 0

    def __len__(self) -> int:
        return int(self.prompt_tokens.size)

    @property
    def has_arrivals(self) -> bool:
        """False for length-only traces (pair them with ``with_arrivals``)."""
        return self.arrival_s is not None

    @property
    def num_skipped_rows(self) -> int:
        return sum(self._skipped.values())

    @property
    def skipped_by_problem(self) -> dict[str, int]:
        return dict(self._skipped)

    @property
    def num_capped_requests(self) -> int:
        return self._num_capped

    def block_hashes(self, index: int) -> tuple[int, ...]:
        """Prefix-block ids of row ``index`` (empty when the trace has none)."""
        if not self.block_size:
            return ()
        lo, hi = self.hash_offsets[index], self.hash_offsets[index + 1]
        return tuple(self.hash_values[lo:hi].tolist())

    def set_mean_rate(self, rate_per_s: float) -> None:
        """Rescale arrival times so the mean rate ((n-1) / span) is ``rate_per_s``."""
        if self.arrival_s is None or len(self) < 2 or self.arrival_s[-1] <= self.arrival_s[0]:
            raise ConfigError("rate_per_s", rate_per_s, f"{self.name} has no arrival span to scale")
        if not rate_per_s > 0:
            raise ConfigError("rate_per_s", rate_per_s, "must be > 0")
        native = (len(self) - 1) / float(self.arrival_s[-1] - self.arrival_s[0])
        self.arrival_s = self.arrival_s * (native / rate_per_s)

    def cut_after(self, end_s: float) -> None:
        """Keep only the requests arriving at or before ``end_s`` (simulation time)."""
        if self.arrival_s is None:
            return
        keep = int(np.searchsorted(self.arrival_s, end_s, side="right"))
        if keep == 0:
            raise ConfigError("duration_s", end_s, f"no request of {self.name} arrives by then")
        self.arrival_s = self.arrival_s[:keep]
        self.prompt_tokens = self.prompt_tokens[:keep]
        self.output_tokens = self.output_tokens[:keep]
        self.hash_values = (
            self.hash_values[: self.hash_offsets[keep]] if self.block_size else (self.hash_values)
        )
        self.hash_offsets = self.hash_offsets[: keep + 1] if self.block_size else self.hash_offsets
        if self.session_ids is not None:
            self.session_ids = self.session_ids[:keep]
        if self.request_fields is not None:
            self.request_fields.truncate(keep)

    def lengths(self) -> JointEmpiricalLengths:
        """Joint (prompt, output) row sampler over this trace (keeps their correlation)."""
        return JointEmpiricalLengths(self.prompt_tokens, self.output_tokens)

    def with_arrivals(
        self,
        arrivals: ArrivalProcess,
        streams: RandomStreams,
        num_requests: int | None = None,
        duration_s: float | None = None,
    ) -> TraceReplay:
        """Replay the rows in file order at synthetic times (stream ``workload.arrivals``)."""
        return TraceReplay(self, arrivals, streams, num_requests, duration_s)

    def __iter__(self) -> Iterator[Request]:
        if self.arrival_s is None:
            raise ConfigError(
                "trace",
                str(self.path),
                f"format {self.format.name!r} has lengths only: pair it with an arrival process",
            )
        return self._requests(self.arrival_s, len(self))

    def _requests(self, times: np.ndarray, num: int) -> Iterator[Request]:
        sessions = self.session_ids
        extras = self.request_fields
        for start in range(0, num, DEFAULT_CHUNK):
            stop = min(num, start + DEFAULT_CHUNK)
            # tolist() per chunk: plain ints/floats without holding the whole trace as objects.
            chunk_t = times[start:stop].tolist()
            chunk_p = self.prompt_tokens[start:stop].tolist()
            chunk_o = self.output_tokens[start:stop].tolist()
            for k in range(stop - start):
                i = start + k
                hashes = self.block_hashes(i)
                session = int(sessions[i]) if sessions is not None else -1
                yield Request(
                    request_id=i,
                    arrival_s=chunk_t[k],
                    num_prompt_tokens=chunk_p[k],
                    num_output_tokens=chunk_o[k],
                    session_id=session if session >= 0 else None,
                    prefix_block_hashes=hashes,
                    prefix_block_size=self.block_size if hashes else 0,
                    **(extras.fields(i) if extras is not None else {}),
                )


class TraceReplay(Workload):
    """A trace's rows, in file order, at arrival times drawn from a synthetic process."""

    def __init__(
        self,
        trace: Trace,
        arrivals: ArrivalProcess,
        streams: RandomStreams,
        num_requests: int | None = None,
        duration_s: float | None = None,
    ) -> None:
        self.trace, self.arrivals, self.streams = trace, arrivals, streams
        self.num = len(trace) if num_requests is None else min(num_requests, len(trace))
        self.duration_s = duration_s
        self.name = f"{trace.name}+{type(arrivals).__name__}"

    @property
    def num_skipped_rows(self) -> int:
        return self.trace.num_skipped_rows

    @property
    def num_capped_requests(self) -> int:
        return self.trace.num_capped_requests

    @property
    def skipped_by_problem(self) -> dict[str, int]:
        return self.trace.skipped_by_problem

    def __iter__(self) -> Iterator[Request]:
        rng = self.streams.generator("workload.arrivals")
        parts: list[np.ndarray] = []
        have = 0
        for chunk in self.arrivals.stream(rng):
            parts.append(chunk[: self.num - have])
            have += parts[-1].size
            if have >= self.num:
                break
        times = np.concatenate(parts) if parts else np.empty(0)
        if self.duration_s is not None:
            times = times[times <= self.duration_s]
        return self.trace._requests(times, int(times.size))


def _cap(prompt: int, output: int, limit: int) -> tuple[int, int]:
    prompt = min(prompt, limit - 1)
    return prompt, min(output, limit - prompt)


def _read(path: Path, fmt: TraceFormat, opts: TraceOptions) -> tuple[TraceColumns, int]:
    rows = csv_rows(path) if fmt.file_type == "csv" else jsonl_rows(path)
    parser = RowParser(fmt)
    cols = TraceColumns(request_fields=Extras() if fmt.has_request_fields else None)
    num_capped = 0
    first_t: float | None = None
    for line, row in rows:
        cols.num_rows_read += 1
        try:
            if isinstance(row, RowError):
                raise row
            parser.check_row(row, line)
            t, prompt, output, hashes, session = parser.parse(row)
        except RowError as exc:
            if not opts.skip_bad_rows:
                raise TraceError(path, line, exc.column, exc.problem) from None
            _note_skip(cols, path, line, exc.column, exc.kind, exc.problem)
            continue
        if fmt.arrival_column:
            first_t = t if first_t is None else first_t
            if opts.start_s is not None and t - first_t < opts.start_s:
                continue
            if opts.end_s is not None and t - first_t >= opts.end_s:
                break
        limit = opts.max_context_tokens
        if limit is not None and prompt + output > limit:
            problem = f"{prompt}+{output} tokens over the context limit {limit}"
            if opts.over_limit == "error":
                raise TraceError(path, line, None, problem)
            if opts.over_limit == "skip":
                _note_skip(cols, path, line, None, "over the context limit", problem)
                continue
            prompt, output = _cap(prompt, output, limit)
            num_capped += 1
            if hashes:
                hashes = hashes[: -(-prompt // parser.block_size)]
        cols.arrival_s.append(t)
        cols.prompt.append(prompt)
        cols.output.append(output)
        if fmt.session_column:
            cols.session.append(session)
        if hashes is not None:
            cols.hash_values.extend(hashes)
            cols.hash_offsets.append(len(cols.hash_values))
        if cols.request_fields is not None and parser.request_fields is not None:
            cols.request_fields.append(parser.request_fields)
        if opts.max_requests is not None and len(cols.prompt) >= opts.max_requests:
            break
    cols.block_size = parser.block_size
    return cols, num_capped


def _note_skip(
    cols: TraceColumns, path: Path, line: int, column: str | None, kind: str, problem: str
) -> None:
    cols.skipped[kind] += 1
    if len(cols.first_skipped) < 5:
        where = f"{path}:{line}" + (f" column {column!r}" if column else "")
        cols.first_skipped.append(f"{where}: {problem}")


def load_trace(
    path: str | Path,
    format: str | None = None,
    *,
    columns: dict[str, str] | None = None,
    arrival_unit: str = "s",
    block_size: int = 0,
    **options: Any,
) -> Trace:
    """Read a trace file.

    Args:
        path: CSV or JSONL file.
        format: a format name (``servesim.workload.trace_formats.format_names()``); None
            detects it from the header / first record.
        columns: for the generic ``csv``/``jsonl`` formats, {"prompt", "output", optional
            "arrival", "hashes", "session"} -> column name.
        arrival_unit: generic formats: ``s``, ``ms``, ``us``, ``ns`` or ``datetime``.
        block_size: generic formats with a hashes column: tokens per block.
        **options: ``TraceOptions`` fields (skip_bad_rows, rate_scale, start_s, end_s,
            max_requests, max_context_tokens, over_limit, normalize_start).

    Raises:
        TraceError: malformed file (names file, line and column); ConfigError: bad options.
    """
    path = Path(path)
    try:
        opts = TraceOptions(**options)
    except TypeError as exc:
        raise ConfigError("options", sorted(options), str(exc)) from None
    opts.check()
    if not path.is_file():
        raise TraceError(path, None, None, "no such file")
    extra = {"arrival_unit": arrival_unit, "block_size": block_size} if columns else {}
    fmt = resolve_trace_format(path, format, columns, **extra)
    cols, num_capped = _read(path, fmt, opts)
    if cols.num_rows_read == 0:
        raise TraceError(path, None, None, "no data rows")
    if len(cols.prompt) == 0:
        skipped = sum(cols.skipped.values())
        raise TraceError(path, None, None, f"no usable rows ({skipped} skipped, window empty?)")
    trace = Trace(path, fmt, opts, cols)
    trace._num_capped = num_capped
    if trace.num_skipped_rows:
        logger.info(
            "%s: skipped %d rows: %s", path, trace.num_skipped_rows, trace.skipped_by_problem
        )
    return trace
