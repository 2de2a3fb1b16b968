"""Growable numpy tables for the simulation records, bounded in memory for long runs.

- ``_Columns``: amortised-doubling columns, written through by row index (small tables).
- ``_ChunkedColumns``: append-only fixed-size chunks (the iteration log); past
  ``budget_rows`` rows every full chunk moves to disk (``servesim.engine.spill``).
- ``RequestTable``: ``_Columns`` until it holds ``budget_rows`` rows; then rows live in
  fixed-size chunks, and a chunk whose requests have all left moves to disk, so only the
  chunks of requests still in flight stay in memory.

Below their budgets the tables behave exactly as before (same arrays, same figures); above,
``chunks()`` reads them back one chunk at a time and ``view()`` still joins everything
(costing the whole table's memory: summaries and writers use ``chunks()``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from servesim.engine.spill import Chunk, ChunkStore, RowColumn, concat_chunks, gather

# Rows a request table holds in memory before finished chunks go to disk (about 130 bytes a
# row: 17 MB), and the chunk size after (2 MB; requests in flight span a few chunks).
REQUEST_BUDGET_ROWS = 1 << 17
REQUEST_CHUNK_ROWS = 1 << 14
# Iteration rows kept in memory before full chunks go to disk (about 110 bytes a row: 29 MB).
ITERATION_BUDGET_ROWS = 1 << 18
# Iteration rows buffered as tuples before they are written out a column at a time.
_PENDING_ROWS = 4096


class _Columns:
    """Growable numpy columns (amortised doubling); ``view()`` returns the filled prefix."""

    def __init__(self, dtypes: Mapping[str, np.dtype | type], capacity: int = 1024) -> None:
        self._dtypes = {k: np.dtype(v) for k, v in dtypes.items()}
        self._data = {k: np.empty(capacity, dtype=dt) for k, dt in self._dtypes.items()}
        self._capacity = capacity  # the arrays' length
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
        self._capacity = new_cap

    def append_row(self, **values: float | int) -> int:
        """Append one row; returns its index. Missing columns must not exist."""
        i = self.size
        if i >= self._capacity:
            self._grow(i + 1)
        data = self._data
        for k, v in values.items():
            data[k][i] = v
        self.size = i + 1
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
    ``column()`` first joins the chunks into one array, so writes through it persist. Once
    the table holds ``budget_rows`` rows, every full chunk is written to disk (``is_spilled``).

    Rows are buffered as tuples (``append_values``) and written a column at a time, at most
    ``_PENDING_ROWS`` at once (one numpy store per column, not one per value): every reader
    writes the buffer out first, so what it sees is the same as row-by-row stores.
    """

    def __init__(
        self,
        dtypes: Mapping[str, np.dtype | type],
        chunk_rows: int = 1 << 16,
        budget_rows: int | None = None,
    ) -> None:
        self._dtypes = {k: np.dtype(v) for k, v in dtypes.items()}
        self._names = tuple(self._dtypes)
        # one row as one record: the buffered rows are converted in one numpy call
        self._record = np.dtype([(k, dt) for k, dt in self._dtypes.items()])
        self._chunk_rows = chunk_rows
        self._budget_rows = ITERATION_BUDGET_ROWS if budget_rows is None else budget_rows
        self._chunks: list[dict[str, np.ndarray]] = []
        self._offset = 0  # rows in the chunks before the last one
        self._store: ChunkStore | None = None  # chunks on disk, before ``_chunks``
        self._pending: list[tuple[float | int, ...]] = []  # rows not yet in the chunks
        self.size = 0

    @property
    def is_spilled(self) -> bool:
        """Whether some rows live on disk (read them with ``chunks()``)."""
        self._flush()
        return self._store is not None

    def _new_chunk(self, rows: int) -> dict[str, np.ndarray]:
        chunk = {k: np.empty(rows, dtype=dt) for k, dt in self._dtypes.items()}
        self._chunks.append(chunk)
        return chunk

    def append_row(self, **values: float | int) -> int:
        """Append one row; returns its index. A column left out reads 0."""
        unknown = values.keys() - self._dtypes.keys()
        if unknown:
            raise KeyError(f"no column {sorted(unknown)[0]!r} in the table")
        i = self.size
        self.append_values(tuple(values.get(k, 0) for k in self._names))
        return i

    def append_values(self, row: tuple[float | int, ...]) -> None:
        """Append one row given as every column's value in the table's column order."""
        pending = self._pending
        pending.append(row)
        self.size += 1
        if len(pending) >= _PENDING_ROWS:
            self._flush()

    def _flush(self) -> None:
        """Write the buffered rows into the chunks, a column slice at a time (starting new
        chunks, and spilling full ones past the budget, exactly where row-by-row appends
        would)."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        columns = np.array(pending, dtype=self._record)  # each value cast as its column's
        i = self.size - len(pending)  # the first buffered row's index
        done = 0
        while done < len(pending):
            last = self._chunks[-1] if self._chunks else None
            if last is None or i - self._offset >= len(next(iter(last.values()))):
                if last is not None:
                    if i >= self._budget_rows:
                        self._spill_full_chunks()
                    self._offset = i
                last = self._new_chunk(self._chunk_rows)
            j = i - self._offset
            n = min(len(pending) - done, len(next(iter(last.values()))) - j)
            for name in self._names:
                last[name][j : j + n] = columns[name][done : done + n]
            done += n
            i += n

    def _spill_full_chunks(self) -> None:
        """Every chunk in memory is full here: move them all to disk."""
        if self._store is None:
            self._store = ChunkStore(self._dtypes)
        for chunk in self._chunks:
            self._store.append(chunk)
        self._chunks = []

    def _filled(self) -> list[dict[str, np.ndarray]]:
        """Each chunk in memory cut to its filled rows."""
        self._flush()
        out = []
        for index, chunk in enumerate(self._chunks):
            if index < len(self._chunks) - 1:
                out.append(chunk)
            else:
                out.append({k: v[: self.size - self._offset] for k, v in chunk.items()})
        return out

    def chunks(self) -> Iterator[Chunk]:
        """The filled rows, a chunk at a time in row order (disk chunks read back)."""
        self._flush()
        if self._store is not None:
            yield from self._store
        for chunk in self._filled():
            if len(next(iter(chunk.values()))):
                yield chunk

    def view(self, copy: bool = True) -> dict[str, np.ndarray]:
        """Filled rows of every column as one array each: new arrays, or with ``copy=False``
        views of the storage after joining the chunks in place (valid until the next append).
        A spilled table is read back whole (new arrays either way)."""
        self._flush()
        if self._store is not None:
            return concat_chunks(self.chunks(), self._dtypes)
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
        self._flush()
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
        """The full array of ``name`` (write through it by row index): joins the chunks. A
        spilled table is first read back into memory whole (and stays there)."""
        self._flush()
        if self._store is not None:
            whole = self.view()
            self._store, self._chunks, self._offset = None, [whole], 0
            self._budget_rows = max(self._budget_rows, self.size + 1)
        self._join()
        if not self._chunks:
            self._new_chunk(self._chunk_rows)
        return self._chunks[0][name]

    @classmethod
    def from_chunks(
        cls, dtypes: Mapping[str, np.dtype | type], chunks: Iterable[Chunk]
    ) -> _ChunkedColumns:
        """A spilled table holding ``chunks`` (rows in order), for tables cut from others."""
        table = cls(dtypes)
        table._store = ChunkStore(table._dtypes)
        for chunk in chunks:
            table._store.append(chunk)
        table.size = table._store.num_rows
        table._offset = table.size
        return table


class RequestTable(_Columns):
    """Per-request rows, written by row index while the request is in flight.

    Like ``_Columns`` up to ``budget_rows`` rows. Past it, rows live in chunks of
    ``chunk_rows`` (chunk ``k`` holds rows ``[k C, (k + 1) C)``); when a new chunk starts, the
    oldest chunks whose requests have all left (``is_finished``) move to disk in row order.
    A row on disk is final: ``column()`` still reads it (from disk) but writes only reach rows
    in memory, which every request still in flight is.
    """

    def __init__(
        self,
        dtypes: Mapping[str, np.dtype | type],
        capacity: int = 1024,
        budget_rows: int | None = None,
        chunk_rows: int | None = None,
        is_finished: Callable[[Chunk], np.ndarray] | None = None,
    ) -> None:
        super().__init__(dtypes, capacity)
        self._budget_rows = REQUEST_BUDGET_ROWS if budget_rows is None else budget_rows
        self._chunk_rows = REQUEST_CHUNK_ROWS if chunk_rows is None else chunk_rows
        self._is_finished = is_finished
        self._store: ChunkStore | None = None  # chunks 0 .. len(store) - 1, on disk
        self._live: dict[int, Chunk] = {}  # chunk index -> arrays, from the first live one
        self._first_live = 0

    @property
    def is_spilled(self) -> bool:
        """Whether rows are kept in chunks (some perhaps on disk): read with ``chunks()``."""
        return self._store is not None

    def append_row(self, **values: float | int) -> int:
        """Append one row; returns its index."""
        if self._store is None:
            i = super().append_row(**values)
            if self.size >= self._budget_rows and self._is_finished is not None:
                self._start_chunks()
            return i
        i = self.size
        chunk, j = self._live_chunk(i)
        for k, v in values.items():
            chunk[k][j] = v
        self.size += 1
        return i

    def append_values(self, row: tuple[float | int, ...]) -> int:
        """``append_row`` with every column's value in the table's column order."""
        i = self.size
        if self._store is not None or (i + 1 >= self._budget_rows and self._is_finished):
            return self.append_row(**dict(zip(self._dtypes, row, strict=True)))
        if i >= self._capacity:
            self._grow(i + 1)
        for array, value in zip(self._data.values(), row, strict=True):  # column order
            array[i] = value
        self.size = i + 1
        return i

    def _live_chunk(self, row: int) -> tuple[Chunk, int]:
        index, j = divmod(row, self._chunk_rows)
        chunk = self._live.get(index)
        if chunk is None:
            self._retire()
            chunk = {k: np.empty(self._chunk_rows, dtype=dt) for k, dt in self._dtypes.items()}
            self._live[index] = chunk
        return chunk, j

    def _start_chunks(self) -> None:
        """Move the rows into chunks, then retire the finished ones."""
        self._store = ChunkStore(self._dtypes)
        rows = self._chunk_rows
        for index, start in enumerate(range(0, self.size, rows)):
            chunk = {k: np.empty(rows, dtype=dt) for k, dt in self._dtypes.items()}
            n = min(rows, self.size - start)
            for name, arr in self._data.items():
                chunk[name][:n] = arr[start : start + n]
            self._live[index] = chunk
        self._data = {k: np.empty(0, dtype=dt) for k, dt in self._dtypes.items()}
        self._retire()

    def _retire(self) -> None:
        """Write the oldest full chunks whose requests all left to disk, in row order."""
        assert self._store is not None and self._is_finished is not None
        num_full = self.size // self._chunk_rows
        while self._first_live < num_full:
            chunk = self._live[self._first_live]
            if not bool(np.all(self._is_finished(chunk))):
                return
            self._store.append(chunk)
            del self._live[self._first_live]
            self._first_live += 1

    def locate(self, row: int) -> tuple[Chunk, int]:
        """(arrays, index in them) of ``row``, for writing its fields in place."""
        if self._store is None:
            return self._data, row
        chunk = self._live.get(row // self._chunk_rows)
        if chunk is None:
            raise IndexError(f"request row {row} is final (on disk): it cannot be written")
        return chunk, row % self._chunk_rows

    def column(self, name: str) -> Any:
        """The full backing array of ``name`` (write through it by row index); once rows
        are chunked, an object indexed the same way (reads may come from disk)."""
        if self._store is None:
            return self._data[name]
        return RowColumn(self, name)

    def chunks(self) -> Iterator[Chunk]:
        """The rows, a chunk at a time in row order (disk chunks read back)."""
        if self._store is None:
            if self.size:
                yield self.view(copy=False)
            return
        yield from self._store
        for index in range(self._first_live, self._first_live + len(self._live)):
            n = min(self._chunk_rows, self.size - index * self._chunk_rows)
            if n > 0:
                yield {k: v[:n] for k, v in self._live[index].items()}

    def view(self, copy: bool = True) -> dict[str, np.ndarray]:
        """Every row as one array per column (a chunked table is read back whole)."""
        if self._store is None:
            return super().view(copy)
        return concat_chunks(self.chunks(), self._dtypes)

    def read(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Column ``name`` at ``rows`` (any order), wherever the rows are."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._store is None:
            return self._data[name][rows]
        out = np.empty(rows.shape, dtype=self._dtypes[name])
        on_disk = rows < self._store.num_rows
        if on_disk.any():
            out[on_disk] = gather(self._store, name, rows[on_disk])
        for i in np.flatnonzero(~on_disk):
            chunk, j = self.locate(int(rows[i]))
            out[i] = chunk[name][j]
        return out

    @classmethod
    def from_chunks(
        cls, dtypes: Mapping[str, np.dtype | type], chunks: Iterable[Chunk]
    ) -> RequestTable:
        """A finished, chunked table holding ``chunks`` (rows in order), all on disk."""
        table = cls(dtypes)
        table._store = ChunkStore(table._dtypes)
        for chunk in chunks:
            table._store.append(chunk)
        table.size = table._store.num_rows
        table._first_live = -1  # no live chunks: every row is on disk
        table._data = {k: np.empty(0, dtype=dt) for k, dt in table._dtypes.items()}
        return table
