"""Where a long run's records go once they outgrow memory: chunks of columns on disk.

A table of a million-request run (its request rows, ~7M iteration rows, ~15M token gaps) does
not fit a small memory budget, so the tables of ``servesim.engine.records`` move finished
chunks here: one ``.npy`` file of a structured array per chunk, in a private temporary folder
(under ``$SERVESIM_SPILL_DIR`` when set, the system's temporary folder otherwise) that is
removed when the last table using it is garbage-collected. Summaries then read the chunks back
one at a time (``servesim.metrics.streaming``), so memory stays O(chunk), not O(run).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from servesim.engine.columns import RequestTable

SPILL_DIR_ENV = "SERVESIM_SPILL_DIR"

Chunk = dict[str, np.ndarray]


class SpillDir:
    """A private temporary folder, made on first use and removed with this object."""

    __slots__ = ("__weakref__", "_num_files", "_path")

    def __init__(self) -> None:
        self._path: Path | None = None
        self._num_files = 0

    def new_file(self) -> Path:
        """A fresh file name in the folder (made now if needed)."""
        if self._path is None:
            parent = os.environ.get(SPILL_DIR_ENV) or None
            self._path = Path(tempfile.mkdtemp(prefix="servesim-spill-", dir=parent))
            weakref.finalize(self, shutil.rmtree, self._path, ignore_errors=True)
        self._num_files += 1
        return self._path / f"chunk-{self._num_files:08d}.npy"


class ChunkStore:
    """Chunks of equal-named columns in row order, each in memory or in a file.

    Args:
        dtypes: the columns and their types.
        spill_dir: the folder to write to (shared with tables cut from this one).
    """

    __slots__ = ("_chunks", "_dir", "_dtypes", "_sizes")

    def __init__(self, dtypes: dict[str, np.dtype], spill_dir: SpillDir | None = None) -> None:
        self._dtypes = dtypes
        self._dir = spill_dir if spill_dir is not None else SpillDir()
        self._chunks: list[Chunk | Path] = []
        self._sizes: list[int] = []

    @property
    def num_rows(self) -> int:
        """Rows over all chunks."""
        return sum(self._sizes)

    @property
    def spill_dir(self) -> SpillDir:
        """The folder chunks are written to."""
        return self._dir

    def append(self, chunk: Chunk, *, to_disk: bool = True) -> None:
        """Add ``chunk`` (every column the same length) after the others."""
        size = len(next(iter(chunk.values()))) if chunk else 0
        if size == 0:
            return
        self._sizes.append(size)
        self._chunks.append(self._write(chunk, size) if to_disk else chunk)

    def _write(self, chunk: Chunk, size: int) -> Path:
        table = np.empty(size, dtype=[(name, dt) for name, dt in self._dtypes.items()])
        for name in self._dtypes:
            table[name] = chunk[name][:size]
        path = self._dir.new_file()
        np.save(path, table, allow_pickle=False)
        return path

    def __getstate__(self) -> dict[str, object]:
        # A copy in another process must not point at files this one deletes: it carries
        # the chunks' data (and spills again only if it grows).
        chunks = [dict(self.load(i)) for i in range(len(self._chunks))]
        return {"dtypes": self._dtypes, "chunks": chunks, "sizes": list(self._sizes)}

    def __setstate__(self, state: dict[str, object]) -> None:
        self._dtypes = state["dtypes"]  # type: ignore[assignment]
        self._chunks = state["chunks"]  # type: ignore[assignment]
        self._sizes = state["sizes"]  # type: ignore[assignment]
        self._dir = SpillDir()

    def load(self, index: int) -> Chunk:
        """Chunk ``index`` as arrays (read from disk when it was spilled)."""
        item = self._chunks[index]
        if isinstance(item, Path):
            table = np.load(item, allow_pickle=False)
            return {name: table[name] for name in self._dtypes}
        return item

    def __iter__(self) -> Iterator[Chunk]:
        for index in range(len(self._chunks)):
            yield self.load(index)

    def bounds(self) -> np.ndarray:
        """First row of every chunk, then the row count (``len = num_chunks + 1``)."""
        return np.concatenate(([0], np.cumsum(self._sizes, dtype=np.int64)))


def concat_chunks(chunks: Iterable[Chunk], dtypes: dict[str, np.dtype]) -> Chunk:
    """All chunks joined into one array per column (empty columns for no chunks)."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in dtypes}
    for chunk in chunks:
        for name in dtypes:
            parts[name].append(np.asarray(chunk[name]))
    return {
        name: np.concatenate(p) if p else np.empty(0, dtype=dt)
        for (name, dt), p in zip(dtypes.items(), parts.values(), strict=True)
    }


def gather(store: ChunkStore, name: str, rows: np.ndarray) -> np.ndarray:
    """Values of column ``name`` at global ``rows`` of the chunks in ``store``."""
    rows = np.asarray(rows, dtype=np.int64)
    bounds = store.bounds()
    out = np.empty(rows.shape, dtype=store._dtypes[name])
    which = np.searchsorted(bounds, rows, side="right") - 1
    for index in np.unique(which):
        mask = which == index
        out[mask] = store.load(int(index))[name][rows[mask] - bounds[index]]
    return out


class RowColumn:
    """One column of a chunked ``RequestTable`` (engine/columns.py), indexed by global row
    like an array: reads gather from disk and memory, writes reach rows in memory."""

    __slots__ = ("_name", "_table")

    def __init__(self, table: RequestTable, name: str) -> None:
        self._table, self._name = table, name

    def __len__(self) -> int:
        return self._table.size

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        values = self._table.read(self._name, np.arange(self._table.size))
        return values if dtype is None else values.astype(dtype)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, np.integer)):
            return self._table.read(self._name, np.asarray([key]))[0]
        if isinstance(key, slice):
            key = np.arange(*key.indices(self._table.size))
        return self._table.read(self._name, np.asarray(key))

    def __setitem__(self, key: int, value: float | int) -> None:
        chunk, j = self._table.locate(int(key))
        chunk[self._name][j] = value
