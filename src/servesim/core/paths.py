"""Where the shared real data lives (traces, profiling tables, validation runs).

The data is never shipped in the package: it sits in ``shared/data`` beside the checkout, or
wherever ``$SERVESIM_SHARED_DATA`` points.
"""

from __future__ import annotations

import os
from pathlib import Path

_SOURCE_CHECKOUT = Path(__file__).resolve().parents[3]  # <checkout>/src/servesim/core/paths.py


def shared_data_dir() -> Path | None:
    """``$SERVESIM_SHARED_DATA``, else ``../shared/data`` beside the current directory or beside
    the source checkout, whichever exists first; None when none does."""
    env = os.environ.get("SERVESIM_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates += [
        Path.cwd().parent / "shared" / "data",
        _SOURCE_CHECKOUT.parent / "shared" / "data",
    ]
    return next((c for c in candidates if c.is_dir()), None)
