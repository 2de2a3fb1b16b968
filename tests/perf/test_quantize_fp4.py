"""The fp4 activation quantisation kernel's L2 working set: bf16 read + the fp4 bytes written
(NVFP4 2 + 0.5625 = 2.5625 B per element, MXFP4 2 + 0.53125), not fp8's 3 (issue 13)."""

from __future__ import annotations

import pytest

from servesim.perf.opmodels.fp4 import fp4_quant_fit
from servesim.perf.opmodels.quantize import QuantFit

#: Only the HBM term, added linearly, with half the working set reaching HBM at the full L2.
FP8 = QuantFit(floor_s=0.0, k_s=0.0, bytes_per_elem=3.0, row_s=0.0, overlap=1.0, l2_frac=1.0)


def test_nvfp4_working_set_is_2_5625_bytes_per_element() -> None:
    fp4 = fp4_quant_fit(FP8, 0.5625)
    assert fp4.working_bytes == 2.5625
    assert fp4.bytes_per_elem == pytest.approx(2.5625)
    # m k = 1e6 elements of 2.5625 B fill an L2 of 2.5625e6 B: x = 1, half spills to HBM
    m, k, bw, l2 = 1000, 1000, 1.0e12, 2.5625e6
    assert fp4.time_s(m, k, bw, l2_bytes=l2) == pytest.approx(2.5625e6 / bw * 0.5, rel=1e-12)
    # the fp8 kernel's 3 B working set spills more of the same shape: x = 3 / 2.5625
    x4 = (3.0 / 2.5625) ** 4
    assert FP8.time_s(m, k, bw, l2_bytes=l2) == pytest.approx(3.0e6 / bw * x4 / (1 + x4))


def test_mxfp4_working_set_and_round_trip() -> None:
    fp4 = fp4_quant_fit(FP8, 0.53125)
    assert fp4.working_bytes == 2.53125
    assert QuantFit.from_dict(fp4.to_dict()) == fp4
    # a stored fp8 fit keeps its keys (no working_bytes) and reads back at 3 B
    assert "working_bytes" not in FP8.to_dict()
    assert QuantFit.from_dict(FP8.to_dict()).working_bytes == 3.0
