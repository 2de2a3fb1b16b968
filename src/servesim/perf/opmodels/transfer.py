"""How a calibrated GPU's kernel fits price a GPU without tables: the donor and the stated rules.

A GPU without measured tables borrows one calibrated GPU's fitted parameters per operator
family, and the opmodels apply them to its own data sheet (peaks, bandwidth, SMs, L2, link).
Leaving one calibrated GPU out and predicting it this way (``servesim calibration``) measures
every rule below; none is a factor fitted to the GPU it predicts.

**Donor per family** (``choose_donor``), by the architecture trait the family's kernels depend on:

* prefill attention: a GPU running the same attention kernel generation (FlashAttention 2 on
  Ampere and Ada, FlashAttention 3 on Hopper). Evidence: the fitted per-CTA fixed cost of FA2
  is the same on A100 and L40S (0.401 / 0.405 tile visits) and a quarter of it under FA3
  (0.11 on H100/H200). Leaving L40S out: 94% -> 43% MAPE.
* decode attention (a KV stream plus per-row work, carried by the clock / SM rules) and GEMM
  and MoE: the nearest rule of ``stacks.nearest_calibrated`` (same architecture, nearest
  bandwidth; else release years + log2 bandwidth ratio). Attention may so come from two GPUs.
* collectives: a GPU on the same link class (NVLink vs PCIe), else the nearest.

**Adaptation** (``adapt_params``), each rule a mechanism:

* SM clock (``clock_ratio``, data-sheet boost clocks): latency-bound fixed costs are a number
  of clock cycles, so they scale with donor clock / target clock: the GEMM per-call floor,
  memory latency and serial K loop, the attention launch floors, the prefill per-CTA fixed
  cost (held in tile-visit units, so also rescaled by the per-SM tensor peak), the
  collectives' fixed cost alpha (flag exchange and launch, beside the link latency ratio the
  opmodel applies). Evidence: the decode attention floor is 16.0 us on A100 (1410 MHz),
  11.9 us on H100 (1980 MHz), 8.8 us on L40S (2520 MHz), within 6% of the clock ratio; NCCL
  small messages on A100 take 1.4x H100's.
* per-row work (decode attention's Q load / split combine, GEMM epilogues per token) runs on
  the SMs' CUDA cores, not the tensor cores: it scales with SMs x clock, not with the tensor
  peak it is expressed in. Evidence: A100 decode at 256+ sequences was priced +87% slow from
  H100 (tensor peak ratio 3.2 against SMs x clock 1.7).
* attention between GPUs of one kernel generation (H100 / H200 on FA3, A100 / L40S on FA2):
  the prefill's traffic term keeps the donor's absolute rate per SM (it is bound on the SMs:
  H100 and H200 measure the same prefill times for 1.43x the HBM bandwidth; A100 and L40S
  the same rate per SM, 4.9 / 4.5 GB/s fitted alone); FA2's per-CTA fixed cost stays in
  seconds (memory round trips, ``attention_tiles``); an fp8 KV cache's SM-side cap on the
  decode stream is a rate per SM cycle; whether decode drops GQA packing under a sliding
  window is the target's kernel's (FlashAttention 2 on Ampere / Ada does;
  ``_adapt_attention``); so is whether MHA and windowed decode run without split-KV (FA2),
  at a rate per CTA taken from a donor of that kernel generation, in bytes/s
  (``_carry_unsplit_rate``: latency-bound, 22 / 26 GB/s on A100 / L40S); so is the KV
  stream's fraction of the HBM bandwidth (``_carry_stream_eff``: FA3 0.86-0.89 on H100 /
  H200, FA2 0.70-0.77 on A100 / L40S, whatever the memory).
* collective regimes slower than the bulk one (NCCL's LL protocol for small messages) are
  bound by the protocol, not the link: they keep the donor's absolute bus bandwidth (clock
  scaled), capped by the target link at the donor's bulk efficiency. A PCIe target would
  otherwise price a 64 KB all-reduce 14x slower than NVLink's, where it is ~2x.
* PCIe groups larger than a pair: the ring leaves the PCIe switch and crosses the host's root
  complex; its bus bandwidth is capped at ``PCIE_HOST_RING_BUS_BYTES_PER_S`` (measured on
  the only other PCIe server in the data, APEX+ V100-PCIE at 4 GPUs: 4.5 GB/s, 29% of its
  link, so host-bound and carried absolute; L40S at 4 GPUs measures 4.7-5.1 GB/s), and vLLM's
  custom all-reduce is off there (NCCL runs). A group larger than one socket's GPUs
  (``cluster.PCIE_GPUS_PER_SOCKET`` on the default PCIe server) crosses the sockets through
  host memory, and the socket's GPUs share that one host path (``host_ring_bus_bytes_per_s``).
* GEMM wave tail (``opmodels.gemm.bf16_wave_waste``): Hopper's cuBLAS bf16 kernels are
  persistent and hide the last wave's idle SMs; sm_80 / sm_89 cuBLAS launches a CTA per tile
  and loses them, so a bf16 fit crossing that line takes the target family's wave waste.
* NVLS (NVLink SHARP, Hopper+ on NVSwitch) has no 8-bit types, so a donor's int8 all-reduce
  fit is its ring: a target without NVLS (A100) gets that ring's bulk regime where the donor's
  16-bit one ran NVLS (A100 from H100, all-reduce >= 16 MB: 14.0 -> 9.7% MAPE).

MoE parameters pass unchanged (the MoE transfer is owned with the MoE model,
``opmodels.moe_carry``: fixed costs by the clock ratio; a Hopper-only FlashInfer CUTLASS fp8
fit runs its portable Triton fit on Ampere / Ada and its ``blackwell`` stand-in, the stack's
bf16 fit at fp8 bytes and the fp8 peak, on Blackwell, where vLLM runs FlashInfer TRTLLM-gen).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from servesim.perf.opmodels.attention_fit import gpu_sms_l2, window_unpacks_gqa
from servesim.perf.opmodels.collectives import PCIE_HOST_RING_BUS_BYTES_PER_S
from servesim.perf.opmodels.collectives_transfer import (  # noqa: F401 (re-exported)
    NVLS_ARCHITECTURES,
    NVLS_MIN_GAIN,
    adapt_collectives,
    has_nvls,
    host_ring_bus_bytes_per_s,
    link_class,
)
from servesim.perf.opmodels.gemm import bf16_wave_waste
from servesim.perf.stacks import nearest_calibrated
from servesim.specs.dtypes import DType
from servesim.specs.gpu import GPUSpec

#: Maximum boost clock (MHz) of the SMs, from the vendors' data sheets / whitepapers. A GPU not
#: listed gets no clock rule (ratio 1).
BOOST_CLOCK_MHZ: dict[str, float] = {
    "a100-40gb": 1410.0,  # NVIDIA A100 Tensor Core GPU Architecture whitepaper, Table 1
    "a100-80gb": 1410.0,  # same GA100 SXM4 part
    "a100-pcie-80gb": 1410.0,  # same GA100 (A100 whitepaper Table 1: PCIe boost 1410 MHz)
    "h100-sxm": 1980.0,  # NVIDIA H100 SXM5 max boost clock (H100 product brief)
    "h100-pcie": 1755.0,  # NVIDIA H100 PCIe product brief, max boost
    "h200": 1980.0,  # the H100 SXM5 GH100 with HBM3e (same clocks)
    "gh200": 1980.0,  # Grace Hopper superchip: the H100 SXM5 GPU configuration
    "l40s": 2520.0,  # NVIDIA L40S product brief, max boost clock
    "l4": 2040.0,  # NVIDIA L4 product brief, max boost clock
    "a40": 1740.0,  # NVIDIA A40 product brief, max boost clock
    "a10": 1695.0,  # NVIDIA A10 product brief, max boost clock
}
#: Attention kernel generation per architecture (vLLM / SGLang pick FlashAttention 3 only on
#: Hopper, FlashAttention 2 on Ampere and Ada).
ATTENTION_KERNEL: dict[str, str] = {"ampere": "fa2", "ada": "fa2", "hopper": "fa3"}

FAMILIES_WITH_RULES = ("gemm", "attention", "collectives")


def sm_clock_hz(gpu: GPUSpec) -> float | None:
    """The GPU's data-sheet max boost clock in Hz (None when not listed)."""
    mhz = BOOST_CLOCK_MHZ.get(gpu.name)
    return mhz * 1e6 if mhz else None


def clock_ratio(source: GPUSpec, target: GPUSpec) -> float:
    """Donor clock / target clock: the factor on a fixed cost in cycles (1 if either unknown)."""
    a, b = sm_clock_hz(source), sm_clock_hz(target)
    return a / b if a and b else 1.0


def attention_kernel(gpu: GPUSpec) -> str:
    """``fa2`` / ``fa3`` for the GPU's architecture ("" when not known)."""
    return ATTENTION_KERNEL.get(gpu.architecture, "")


#: (sub-)family -> the trait a donor should share with the target. Prefill attention is where
#: the kernel generation shows (per-CTA cost, tiles); decode attention is a KV stream plus
#: per-row work, which the clock / SM rules carry from the nearest GPU.
DONOR_TRAITS = {"prefill_attention": attention_kernel, "collectives": link_class}


def choose_donor(family: str, target: GPUSpec, candidates: Mapping[str, GPUSpec]) -> str | None:
    """The calibration key whose fit of ``family`` prices ``target`` (None: no donor).

    ``family`` is an operator family or ``prefill_attention`` / ``decode_attention``.
    Candidates sharing the family's trait (``DONOR_TRAITS``) come first; among them, and
    otherwise, ``stacks.nearest_calibrated``'s rule.
    """
    trait = DONOR_TRAITS.get(family)
    pool = dict(candidates)
    if trait is not None and trait(target):
        same = {k: g for k, g in candidates.items() if trait(g) == trait(target)}
        pool = same or pool
    specs = {k: (g.architecture, g.hbm_bandwidth_bytes_per_s) for k, g in pool.items()}
    return nearest_calibrated(target.architecture, target.hbm_bandwidth_bytes_per_s, specs)


@dataclass(frozen=True, slots=True)
class Borrowed:
    """A family's parameters carried to a GPU without tables.

    Attributes:
        params: JSON-ready parameters, the rules applied (priced on the target's data sheet).
        donor: the calibration key of the donor, or ``"<prefill>+<decode>"`` for attention when
            its phases come from two GPUs.
        donors: part -> calibration key (``prefill`` / ``decode`` for attention, else the family).
    """

    params: dict[str, Any]
    donor: str
    donors: dict[str, str] = field(default_factory=dict)


def borrow(
    family: str,
    target: GPUSpec,
    donors: Mapping[str, tuple[GPUSpec, Mapping[str, Any]]],
) -> Borrowed | None:
    """``family``'s parameters for ``target`` from the calibrated ``donors`` (key -> (spec,
    params)) by the donor rule and ``adapt_params`` (None: no donor qualifies)."""
    specs = {key: spec for key, (spec, _) in donors.items()}
    if family != "attention":
        key = choose_donor(family, target, specs)
        if key is None:
            return None
        spec, params = donors[key]
        return Borrowed(adapt_params(family, params, spec, target), key, {family: key})
    chosen: dict[str, str] = {}
    out: dict[str, Any] = {}
    for phase in ("prefill", "decode"):
        pool = {k: g for k, g in specs.items() if donors[k][1].get(phase)}
        key = choose_donor(f"{phase}_attention", target, pool)
        if key is None:
            continue
        spec, params = donors[key]
        out[phase] = adapt_params(family, {phase: params[phase]}, spec, target)[phase]
        chosen[phase] = key
    if "prefill" not in out or "decode" not in out:
        return None
    _carry_unsplit_rate(out["decode"], target, donors)
    _carry_stream_eff(out["decode"], target, donors)
    keys = sorted(set(chosen.values()), key=list(chosen.values()).index)
    return Borrowed(out, "+".join(keys), chosen)


def _carry_unsplit_rate(
    decode: dict[str, Any],
    target: GPUSpec,
    donors: Mapping[str, tuple[GPUSpec, Mapping[str, Any]]],
) -> None:
    """Give a FlashAttention 2 target's decode fits the rate one CTA streams at without
    split-KV (``attention_stream``: MHA and windowed decode run one CTA per sequence and
    query head) from a donor of the same kernel generation when the decode donor has none
    (FA3 always splits). Carried in bytes/s: a latency-bound rate, 22 GB/s on A100 and 26 on
    L40S fitted alone, 1.79x apart in clock."""
    same = _same_kernel_decode_donors(target, donors)
    for dtype, fit in decode.items():
        if not fit.get("window_unpacks_gqa"):  # not FA2's bf16 path: the kernel splits
            fit["cta_bw"] = 0.0
            continue
        pool = {k: g for k, g in same.items() if _cta_bw(donors[k][1], dtype)}
        key = choose_donor("decode_attention", target, pool) if pool else None
        if not fit.get("cta_bw") and key is not None:
            fit["cta_bw"] = _cta_bw(donors[key][1], dtype)


def _carry_stream_eff(
    decode: dict[str, Any],
    target: GPUSpec,
    donors: Mapping[str, tuple[GPUSpec, Mapping[str, Any]]],
) -> None:
    """Give the target's decode fits the HBM efficiency of the KV stream (``hbm_eff``) of a
    donor running the same attention kernel generation, when one exists: the fraction of the
    bandwidth the stream reaches is the kernel's pipeline (FlashAttention 3's TMA loads on
    Hopper, FlashAttention 2's cp.async on Ampere / Ada), not the memory. Fitted alone: H100 /
    H200 (FA3, HBM3 / HBM3e) 0.887 / 0.862, A100 / L40S (FA2, HBM2e / GDDR6) 0.702 / 0.769.
    One value per GPU serves every KV format (the fits share it), so a format the donor has
    no decode fit for takes its bf16 one. Leaving A100 out: kv > L2 15.7 / -11.2 -> 11.8 /
    -0.9 (MAPE / median %), L40S fp8 27.1 / -19.3 -> 25.5 / -0.3."""
    same = _same_kernel_decode_donors(target, donors)
    key = choose_donor("decode_attention", target, same) if same else None
    if key is None:
        return
    fitted = donors[key][1]["decode"]
    for dtype, fit in decode.items():
        source = fitted.get(dtype) or fitted.get("bf16")
        if source is not None and "hbm_eff" in source:
            fit["hbm_eff"] = float(source["hbm_eff"])


def _same_kernel_decode_donors(
    target: GPUSpec, donors: Mapping[str, tuple[GPUSpec, Mapping[str, Any]]]
) -> dict[str, GPUSpec]:
    """The donors with decode fits that run the target's attention kernel generation."""
    return {
        k: spec
        for k, (spec, params) in donors.items()
        if attention_kernel(spec) == attention_kernel(target) != "" and params.get("decode")
    }


def _cta_bw(params: Mapping[str, Any], dtype: str) -> float:
    """A donor's fitted unsplit-CTA rate for ``dtype`` decode (0: none)."""
    return float(params.get("decode", {}).get(dtype, {}).get("cta_bw", 0.0))


def adapt_params(
    family: str, params: Mapping[str, Any], source: GPUSpec, target: GPUSpec
) -> dict[str, Any]:
    """``params`` (fitted on ``source``) with the stated rules applied for ``target``.

    Returns a new JSON-ready dict; ``params`` is not changed. Same GPU or a family without
    rules (MoE): an unchanged copy.
    """
    out = copy.deepcopy(dict(params))
    if source.name == target.name or family not in FAMILIES_WITH_RULES:
        return out
    if family == "gemm":
        _adapt_gemm(out, source, target)
    elif family == "attention":
        _adapt_attention(out, source, target)
    else:
        adapt_collectives(out, source, target, clock_ratio(source, target))
    return out


def _adapt_gemm(params: dict[str, Any], source: GPUSpec, target: GPUSpec) -> None:
    clock = clock_ratio(source, target)
    issue = _issue_ratio(source, target)
    waste = bf16_wave_waste(source.architecture, target.architecture)
    if waste is not None and "bf16" in params:
        params["bf16"]["wave_waste"] = waste
    for fit in params.values():
        fit["floor_s"] *= clock
        fit["mem_latency_s"] *= clock
        fit["kloop_s"] *= clock
        fit["row_s"] *= issue
        if fit.get("quant"):
            fit["quant"]["floor_s"] *= clock
            fit["quant"]["k_s"] *= clock
            fit["quant"]["row_s"] *= issue
            # L2-resident elements stream at the SMs' rate, not HBM's: fitted alone on H100 and
            # on H200 (same SMs and clock, 1.43x the bandwidth) it lands at 8.85e-13 and
            # 8.86e-13 s per element (vLLM 0.24 quantize tables), so it goes by SMs x clock
            fit["quant"]["sm_elem_s"] = fit["quant"].get("sm_elem_s", 0.0) * issue


def _tensor_peak(gpu: GPUSpec) -> float:
    """The 16-bit tensor peak the attention opmodel expresses its costs in (fp16 on a GPU
    without bf16, such as Turing; 0 when neither: the rules then leave those costs alone)."""
    peaks = gpu.peak_flops_per_s
    return float(peaks.get(DType.BF16) or peaks.get(DType.FP16) or 0.0)


def _issue_ratio(source: GPUSpec, target: GPUSpec) -> float:
    """Donor / target SMs x clock: the factor on per-row work that runs on the SMs' CUDA cores
    (loads, reductions, epilogues), whatever the tensor peak."""
    return clock_ratio(source, target) * gpu_sms_l2(source)[0] / gpu_sms_l2(target)[0]


def _adapt_attention(params: dict[str, Any], source: GPUSpec, target: GPUSpec) -> None:
    clock = clock_ratio(source, target)
    peaks = _tensor_peak(source), _tensor_peak(target)
    scale = peaks[1] / peaks[0] if min(peaks) > 0 else 1.0
    # per-CTA fixed cost in tile visits: cycles -> time at the target clock -> target tiles
    tiles = clock * scale * gpu_sms_l2(source)[0] / gpu_sms_l2(target)[0]
    # per-row decode work in flop-equivalents of the bf16 peak: SM issue -> target flops
    rows = _issue_ratio(source, target) * scale
    # One kernel generation (H100 / H200 on FA3, A100 / L40S on FA2): the prefill's Q/K/V/O
    # traffic is bound on the SMs, not by HBM. H100 and H200 measure within 2% in every prefill
    # regime (median time ratio 0.99-1.03, vLLM and SGLang tables) for 1.43x the HBM
    # bandwidth; A100 and L40S reach about the same rate per SM (fitted alone: 4.9 and
    # 4.5 GB/s; ``attention_tiles``) at 1.79x the clock, so it is latency in time, not cycles
    # (scaled by the clock as well, A100 from L40S goes 21 -> 38%). It keeps the donor's
    # absolute rate per SM (x SMs), re-expressed as a fraction of the target's HBM; the
    # residency is the opmodel's. Across generations no pair measures it; the fraction of HBM
    # carries over.
    same_kernel = attention_kernel(source) == attention_kernel(target) != ""
    hbm = source.hbm_bandwidth_bytes_per_s / target.hbm_bandwidth_bytes_per_s
    sms = gpu_sms_l2(target)[0] / gpu_sms_l2(source)[0]
    traffic = hbm * sms if same_kernel else 1.0
    for phase in ("prefill", "decode"):
        for dtype, fit in params.get(phase, {}).items():
            fit["floor_s"] *= clock
            if phase == "prefill":
                # FA2's per-CTA cost in seconds (``fix_s``) stays: the split-KV kernel's
                # setup and paged Q/K/V loads are memory round trips, a time, not cycles
                fit["fix_tiles"] *= tiles
                fit["mem_eff"] = min(1.0, fit["mem_eff"] * traffic)
            else:
                fit["row_flops"] *= rows
                fit["kv_row_flops"] *= rows
                # the fp8 KV cap is a rate per SM cycle (bytes/s per SM at the target clock)
                if fit.get("kv_bw_per_sm"):
                    fit["kv_bw_per_sm"] /= clock
                # GQA packing under a window is the target's kernel's (FA2 drops it)
                fit["window_unpacks_gqa"] = window_unpacks_gqa(target.architecture, dtype == "fp8")


def describe_rules() -> str:
    """One line naming the rules (stored beside the leave-one-GPU-out report)."""
    return (
        "donor by trait (prefill attention: kernel generation; collectives: link class; else "
        "nearest architecture and bandwidth); fixed costs x SM clock ratio; per-row work x "
        "SMs x clock; FA2 decode's unsplit (MHA, windowed) rate per CTA from a donor of "
        "its kernel generation; decode's KV-stream HBM efficiency from a donor of its kernel "
        "generation; collective protocol regimes keep the donor's bus bandwidth, capped by the "
        "target link; PCIe groups > 2 at a host-routed ring's "
        f"{PCIE_HOST_RING_BUS_BYTES_PER_S / 1e9:g} GB/s bus bandwidth, shared by a socket's GPUs "
        "beyond one socket; custom all-reduce of "
        "> 2 PCIe GPUs priced as NCCL; no NVLS on the target: the donor's ring bulk regime; "
        "MoE: Hopper-only FlashInfer CUTLASS fp8 runs the portable Triton fit on Ampere / Ada "
        "and, on Blackwell (vLLM's FlashInfer TRTLLM-gen), the stack's bf16 fit at fp8 bytes "
        "and fp8 peak; matmul_ogs's one-CTA floor only within its architecture"
    )
