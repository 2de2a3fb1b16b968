"""Fitted efficiency curves and collective alpha-beta figures, loaded from ``calibration.json``.

The JSON file is written by ``python -m servesim.perf.calibrate`` from the measured tables in
``../shared/data/profiling`` (vidur and apex_plus, MIT) and is shipped as package data; the
numbers inside name their source. A GPU absent from it runs on the documented defaults of
``DEFAULT_GPU`` and its predictions are flagged uncalibrated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from servesim.core.errors import ConfigError, UnknownNameError
from servesim.perf.calibration.packaged import LazyMember, parse_packaged

CALIBRATION_PATH = Path(__file__).with_name("calibration.json")
# The profile of the engine the validation runs measured (vLLM 0.6, V0 engine).
DEFAULT_HOST_PROFILE = "vllm-v0"
# HostOverhead.overlap: host time added to the GPU time, or hidden under the previous step.
HOST_OVERLAP_MODES: tuple[str, ...] = ("none", "step")


@dataclass(frozen=True, slots=True)
class GemmCurve:
    """GEMM time = launch + (t_c^s + t_m^s)^(1/s) (a smoothed roofline max).

    ``t_c`` = FLOPs / (peak x e_max x M/(M+m_half) x K/(K+kn_half) x N/(N+kn_half)): small
    token counts and thin weight shards stay far from peak; ``t_m`` = bytes / (bw x mem_eff).
    """

    e_max: float = 0.75
    m_half: float = 120.0
    kn_half: float = 60.0
    mem_eff: float = 0.85
    launch_s: float = 4e-6
    blend: float = 4.0


@dataclass(frozen=True, slots=True)
class ElementwiseCurve:
    """Memory-bound kernel time = launch + bytes / (bw x mem_eff)."""

    mem_eff: float = 0.6
    launch_s: float = 4e-6


# vLLM's fused residual add + RMSNorm (``fused_add_rms_norm``, csrc/layernorm_kernels.cu since
# v0.4.1, PR #3662): one kernel per norm that reads x and the residual and writes both (8 bytes
# per element), with 16-byte vector loads and, from 256 tokens, 256-thread blocks (one row
# each) so many rows share an SM. No table times it; its curve is derived from two Vidur
# classes by what it does: the norm class's fixed cost (a one-row-per-block launch and block
# reduction) and the add class's streaming efficiency (vectorised loads of contiguous rows).
# Vidur's own norm kernel is the older scalar one (1024-thread blocks, 1.2-1.7 TB/s on H100).
FUSED_NORM = "fused_add_norm"


def fused_add_norm_curve(elementwise: Mapping[str, Any]) -> dict[str, float]:
    """The fused add+RMSNorm curve from the ``norm`` and ``add`` curves (dicts or curves)."""

    def get(name: str, attr: str) -> float:
        curve = elementwise[name]
        return float(curve[attr] if isinstance(curve, Mapping) else getattr(curve, attr))

    return {"mem_eff": get("add", "mem_eff"), "launch_s": get("norm", "launch_s")}


@dataclass(frozen=True, slots=True)
class AttentionCurve:
    """Attention kernel efficiencies (no measured attention table: documented defaults).

    Prefill (FlashAttention): compute efficiency e_max x L/(L + len_half) with L the mean
    chunk length. Decode (paged attention): HBM efficiency mem_eff x C/(C + ctx_half) with C
    the mean context per sequence, because short contexts leave the kernel latency-bound.
    """

    prefill_e_max: float = 0.45
    prefill_len_half: float = 384.0
    decode_mem_eff: float = 0.75
    decode_ctx_half: float = 128.0
    launch_s: float = 6e-6
    source: str = ""


@dataclass(frozen=True, slots=True)
class GpuCalibration:
    """Everything fitted for one GPU family (``h100`` matches ``h100-sxm`` etc.)."""

    key: str
    calibrated: bool
    ref_peak_flops_per_s: float  # bf16 dense peak assumed while fitting
    ref_hbm_bytes_per_s: float  # HBM bandwidth assumed while fitting
    gemm: GemmCurve
    elementwise: Mapping[str, ElementwiseCurve]
    attention: AttentionCurve
    source: str = ""
    heldout_mape: Mapping[str, float] = field(default_factory=dict)
    # The structured bf16 GEMM model (``opmodels.gemm.GemmFit.to_dict``: tiles, waves, overlap)
    # fitted to this GPU's Vidur GEMM rows; when present the legacy stack prices 16-bit GEMMs
    # with it and ``gemm`` (the smoothed roofline) only prices the other formats.
    gemm_fit: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CollectiveFit:
    """t = min over lines (alpha_s + bytes / bytes_per_s): NCCL picks the fastest protocol."""

    gpu: str
    topology: str  # nvswitch, nvlink-pairs, pcie, ib, ethernet
    collective: str  # all_reduce, all_gather, reduce_scatter, all_to_all, send_recv
    num_gpus: int
    lines: tuple[tuple[float, float], ...]
    source: str = ""
    mape: float = 0.0

    def time_s(self, num_bytes: float) -> float:
        """Predicted time of one collective moving ``num_bytes`` (the tensor size)."""
        return min(alpha + num_bytes / bw for alpha, bw in self.lines)


@dataclass(frozen=True, slots=True)
class HostOverhead:
    """Host (CPU) time per engine step, as mechanisms (constants and their evidence:
    ``calibrate_defaults.HOST_PROFILES``; engines choose one: ``servesim.engine.profiles``).

    CPU work of one step = ``base_s`` (scheduler pass, input hand-off, the sync that collects
    sampled tokens) + ``per_seq_s`` x decode sequences + ``per_prefill_seq_s`` x prefill
    sequences (scheduling, block tables, sampling and detokenising each running request) +
    ``per_token_s`` x tokens (per-token input preparation: positions, slot mapping), divided
    by ``cpu_speed`` (the host CPU relative to the one the constants were measured on).

    What the GPU waits for depends on what the engine overlaps (``overlap``):

    - ``none``: the CPU work runs between GPU steps; the step takes GPU + CPU.
    - ``step``: the CPU work of step N+1 runs while the GPU executes step N (vLLM V1 async
      scheduling, SGLang's overlap scheduler, TensorRT-LLM's overlap): the step takes
      max(GPU, CPU) + ``exposed_s`` (the hand-off the overlap cannot hide).

    Steps without a CUDA graph cannot run faster than ``cpu_launch_s`` per kernel (also
    divided by ``cpu_speed``). A step replays a graph when it has at most
    ``max_graph_tokens`` tokens and, unless ``graphs_with_prefill``, no prefill.
    """

    base_s: float = 2.5e-3
    per_seq_s: float = 1.5e-5
    per_prefill_seq_s: float = 5e-5
    per_token_s: float = 0.0  # per scheduled token (input preparation)
    overlap: str = "none"  # "none" | "step" (see the class docstring)
    exposed_s: float = 0.0  # under overlap: the part of every step that stays serial
    cpu_speed: float = 1.0  # host CPU speed factor; CPU times are divided by it
    cpu_launch_s: float = 5e-6  # per kernel when not replaying a CUDA graph
    graph_kernel_gap_s: float = 1.5e-6  # per kernel inside a CUDA graph replay
    max_graph_tokens: int = 256
    graphs_with_prefill: bool = False
    num_scheduler_steps: int = 1  # V0 multi-step: decode-only steps share one host pass
    source: str = ""

    def __post_init__(self) -> None:
        if self.overlap not in HOST_OVERLAP_MODES:
            raise ConfigError("host overlap", self.overlap, f"must be one of {HOST_OVERLAP_MODES}")
        if not self.cpu_speed > 0:
            raise ConfigError("host cpu_speed", str(self.cpu_speed), "must be > 0")

    @property
    def launch_s(self) -> float:
        """CPU time to launch one kernel eagerly on this host."""
        return self.cpu_launch_s / self.cpu_speed

    def cpu_time_s(self, num_decode_seqs: int, num_prefill_seqs: int, num_tokens: int = 0) -> float:
        """CPU work of one step (before any overlap with GPU time)."""
        time_s = (
            self.base_s
            + self.per_seq_s * num_decode_seqs
            + self.per_prefill_seq_s * num_prefill_seqs
            + self.per_token_s * num_tokens
        ) / self.cpu_speed
        if num_prefill_seqs == 0 and self.num_scheduler_steps > 1:
            return time_s / self.num_scheduler_steps
        return time_s

    def host_time_s(
        self,
        num_decode_seqs: int,
        num_prefill_seqs: int,
        num_tokens: int = 0,
        gpu_s: float | None = None,
    ) -> float:
        """Host time of one step that no GPU work hides (added to the GPU time).

        Args:
            num_decode_seqs, num_prefill_seqs, num_tokens: the step's batch.
            gpu_s: the step's GPU time. With ``overlap="step"`` the step takes
                max(gpu_s, CPU) + exposed_s, so max(0, CPU - gpu_s) + exposed_s is returned;
                None (a caller that does not know the GPU time) hides nothing.
        """
        cpu_s = self.cpu_time_s(num_decode_seqs, num_prefill_seqs, num_tokens)
        if self.overlap == "none" or gpu_s is None:
            return cpu_s + (self.exposed_s / self.cpu_speed if self.overlap != "none" else 0.0)
        return max(0.0, cpu_s - gpu_s) + self.exposed_s / self.cpu_speed

    def step_time_s(
        self, gpu_s: float, num_decode_seqs: int, num_prefill_seqs: int, num_tokens: int = 0
    ) -> float:
        """Duration of a step whose GPU work takes ``gpu_s`` (GPU + exposed host time)."""
        return gpu_s + self.host_time_s(num_decode_seqs, num_prefill_seqs, num_tokens, gpu_s)

    def replays_graph(self, num_tokens: int, num_prefill_seqs: int) -> bool:
        """True when a step of this size replays a captured CUDA graph."""
        if num_prefill_seqs and not self.graphs_with_prefill:
            return False
        return num_tokens <= self.max_graph_tokens


@dataclass(frozen=True, slots=True)
class Calibration:
    """The whole calibration file."""

    gpus: Mapping[str, GpuCalibration]
    default_gpu: GpuCalibration
    collectives: tuple[CollectiveFit, ...]
    host: HostOverhead
    source: str = ""
    host_profiles: Mapping[str, HostOverhead] = field(default_factory=dict)
    # stack -> calibration GPU key -> {"architecture", "hbm_bytes_per_s", "source", family: params}
    kernel_stacks: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    # calibration GPU key -> measured power-model parameters (servesim.perf.opmodels.power)
    power: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    path: str = ""

    def host_profile(self, name: str) -> HostOverhead:
        """The host-overhead profile ``name``; ``vllm-v0`` is ``host`` when the file has none.

        Raises:
            UnknownNameError: no such profile.
        """
        found = self.host_profiles.get(name)
        if found is not None:
            return found
        if name == DEFAULT_HOST_PROFILE:
            return self.host
        raise UnknownNameError(
            "host-overhead profile", name, {DEFAULT_HOST_PROFILE, *self.host_profiles}
        )

    def for_gpu(self, gpu_name: str) -> GpuCalibration:
        """The entry whose key prefixes ``gpu_name`` (longest wins), else the defaults."""
        name = gpu_name.lower()
        best = None
        for key, entry in self.gpus.items():
            if name.startswith(key) and (best is None or len(key) > len(best.key)):
                best = entry
        return best if best is not None else self.default_gpu

    def collective(
        self, gpu_name: str, topology: str, collective: str, num_gpus: int
    ) -> CollectiveFit | None:
        """The fit for this GPU family, topology and collective at the nearest group size."""
        name = gpu_name.lower()
        found = [
            c
            for c in self.collectives
            if name.startswith(c.gpu) and c.topology == topology and c.collective == collective
        ]
        if not found:
            return None
        return min(found, key=lambda c: (abs(c.num_gpus - num_gpus), -c.num_gpus))


def _gpu_from_dict(key: str, data: Mapping[str, Any]) -> GpuCalibration:
    elementwise = {k: ElementwiseCurve(**v) for k, v in data.get("elementwise", {}).items()}
    if FUSED_NORM not in elementwise and {"norm", "add"} <= elementwise.keys():
        # a calibration written before the class existed: the same derivation
        elementwise[FUSED_NORM] = ElementwiseCurve(**fused_add_norm_curve(elementwise))
    return GpuCalibration(
        key=key,
        calibrated=bool(data.get("calibrated", False)),
        ref_peak_flops_per_s=float(data.get("ref_peak_flops_per_s", 0.0)),
        ref_hbm_bytes_per_s=float(data.get("ref_hbm_bytes_per_s", 0.0)),
        gemm=GemmCurve(**data.get("gemm", {})),
        elementwise=elementwise,
        attention=AttentionCurve(**data.get("attention", {})),
        source=data.get("source", ""),
        heldout_mape=dict(data.get("heldout_mape", {})),
        gemm_fit=data.get("gemm_fit"),
    )


def _kernel_stacks(stacks: Mapping[str, Any]) -> Mapping[str, Any]:
    """The kernel stacks as given when still unparsed (``packaged.LazyMember``), else a copy."""
    return stacks if isinstance(stacks, LazyMember) else dict(stacks)


def calibration_from_dict(data: Mapping[str, Any]) -> Calibration:
    """Build a ``Calibration`` from the parsed JSON document."""
    collectives = tuple(
        CollectiveFit(
            gpu=c["gpu"],
            topology=c["topology"],
            collective=c["collective"],
            num_gpus=int(c["num_gpus"]),
            lines=tuple((float(a), float(b)) for a, b in c["lines"]),
            source=c.get("source", ""),
            mape=float(c.get("mape", 0.0)),
        )
        for c in data.get("collectives", [])
    )
    return Calibration(
        gpus={k: _gpu_from_dict(k, v) for k, v in data.get("gpus", {}).items()},
        default_gpu=_gpu_from_dict("default", data.get("default_gpu", {})),
        collectives=collectives,
        host=HostOverhead(**data.get("host", {})),
        source=data.get("source", ""),
        host_profiles={k: HostOverhead(**v) for k, v in data.get("host_profiles", {}).items()},
        kernel_stacks=_kernel_stacks(data.get("kernel_stacks", {})),
        power=dict(data.get("power", {})),
    )


# A user calibration for the whole process and its workers (``servesim --calibration FILE``).
CALIBRATION_ENV = "SERVESIM_CALIBRATION"


def use_calibration_file(path: str) -> Calibration:
    """Check ``path`` and make it the default calibration of this process and its children.

    Raises:
        ConfigError: the file is missing or not a calibration file.
    """
    calibration = load_calibration(str(Path(path).resolve()))
    os.environ[CALIBRATION_ENV] = calibration.path
    _load.cache_clear()
    return calibration


def load_calibration(path: str | None = None) -> Calibration:
    """The calibration in ``path``; default: ``$SERVESIM_CALIBRATION``, else the packaged one."""
    if path is None:
        path = os.environ.get(CALIBRATION_ENV) or None
    return _load(path)


@lru_cache(maxsize=4)
def _load(path: str | None) -> Calibration:
    target = Path(path) if path is not None else CALIBRATION_PATH
    if not target.is_file():
        if path is not None:
            raise ConfigError("calibration", str(path), "is not a file")
        return calibration_from_dict({})
    try:
        text = target.read_text(encoding="utf-8")
        # a user's file is parsed whole, so that a malformed one fails here, on load
        data = parse_packaged(text) if target == CALIBRATION_PATH else json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(
            "calibration", str(target), f"is not a calibration JSON file ({exc})"
        ) from None
    if not isinstance(data, dict) or ("gpus" not in data and "kernel_stacks" not in data):
        raise ConfigError("calibration", str(target), "holds no 'gpus' or 'kernel_stacks'")
    calibration = calibration_from_dict(data)
    return replace(calibration, path=str(target))
