"""Runtime formulas of the cost model's operator families, one module per family.

Each module holds a frozen parameter dataclass (loaded from ``calibration.json``) and a pure
function from a shape to seconds. Fitting them is offline (``servesim.perf.fitting``); nothing
here imports pyarrow or scipy.
"""
