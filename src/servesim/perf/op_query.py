"""The public op-level query: one operator's predicted time on one GPU under one kernel stack.

``op_time_s("h100-sxm", "gemm", dtype="fp8", m=64, n=8192, k=8192)`` prices exactly what the
simulator charges for that kernel (the same ``KernelSet``), and says which calibration and
kernel stack the figure came from. Ops and their shape arguments:

- ``gemm``: ``m`` tokens, ``n`` x ``k`` weight (output x input); ``dtype`` bf16, fp8 (W8A8
  per-tensor), fp8_block, int8/int4 (weight-only).
- ``prefill-attention``: ``batch`` sequences of ``isl`` new tokens over ``context`` cached ones;
  ``num_heads``, ``num_kv_heads``, ``head_dim`` per GPU; ``kv_dtype``; ``window`` (0: full).
- ``decode-attention``: ``batch`` sequences attending ``context`` tokens each; heads as above.
- ``all-reduce`` (and ``all-gather``, ``reduce-scatter``, ``all-to-all``): ``num_gpus``,
  ``num_bytes`` of the full tensor; ``custom`` (vLLM's custom all-reduce where it applies);
  ``eager`` (not graph-captured: the custom kernel's input copy is added).
- ``moe``: ``num_tokens``, ``hidden``, ``inter`` (expert FFN width per rank), ``topk``,
  ``num_experts``, ``ep``, ``zipf`` (routing skew; 0 = balanced); the busiest rank's expert work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from servesim.core.errors import ConfigError, UnknownNameError
from servesim.perf.calibration import Calibration, load_calibration
from servesim.perf.kernel_set import KernelSet
from servesim.perf.kernel_shapes import GemmShape, MoeShape, gemm_label, moe_label
from servesim.perf.moe import busiest_device, expert_frequencies
from servesim.perf.shapes import attention_shapes
from servesim.perf.stacks import get_stack
from servesim.perf.types import BatchShape
from servesim.specs.catalog import get_gpu
from servesim.specs.dtypes import DType, gemm_activation
from servesim.specs.gpu import GPUSpec
from servesim.specs.model import MoESpec
from servesim.specs.quant import FORMATS

OPS: tuple[str, ...] = (
    "gemm",
    "prefill-attention",
    "decode-attention",
    "all-reduce",
    "all-gather",
    "reduce-scatter",
    "all-to-all",
    "moe",
)
_FAMILY = {
    "gemm": "gemm",
    "prefill-attention": "attention",
    "decode-attention": "attention",
    "moe": "moe",
}


@dataclass(frozen=True, slots=True)
class OpTime:
    """One operator's predicted time and where the figure came from.

    Attributes:
        op: the operator (``gemm``, ``decode-attention``, ...).
        time_s: predicted kernel time in seconds (no host overhead).
        gpu: catalog GPU name.
        stack: the kernel stack asked for.
        source: which calibration priced it (stack, GPU it was measured on, measured /
            stand-in / borrowed, tables), or the legacy formula.
        calibrated: False when the figure is borrowed from another GPU or uncalibrated.
        calibration_file: the calibration file used.
        shape: the shape arguments, as given.
    """

    op: str
    time_s: float
    gpu: str
    stack: str
    source: str
    calibrated: bool
    calibration_file: str
    shape: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "op": self.op,
            "time_s": self.time_s,
            "gpu": self.gpu,
            "stack": self.stack,
            "source": self.source,
            "calibrated": self.calibrated,
            "calibration_file": self.calibration_file,
            "shape": dict(self.shape),
        }


def op_time_s(
    gpu: str | GPUSpec,
    op: str,
    *,
    stack: str = "vllm-0.24",
    dtype: str = "bf16",
    calibration: Calibration | None = None,
    **shape: Any,
) -> OpTime:
    """Predicted time of one operator (see the module docstring for ``op`` and ``shape``).

    Raises:
        UnknownNameError: unknown GPU, op, stack or dtype.
        ConfigError: a missing or nonsensical shape argument (named, with the rule).
    """
    spec = get_gpu(gpu)
    if op not in OPS:
        raise UnknownNameError("op", op, OPS)
    get_stack(stack)
    cal = calibration if calibration is not None else load_calibration()
    kernels = KernelSet(cal, stack, spec)
    time_s = _PRICERS[op](kernels, spec, op, dtype, shape)
    family = _FAMILY.get(op, "collectives")
    described = kernels.describe()[family]
    found = kernels.sources.get(family)
    calibrated = found.is_calibrated if found is not None else kernels.legacy.calibrated
    return OpTime(op, time_s, spec.name, stack, described, calibrated, cal.path, dict(shape))


def _need(shape: dict[str, Any], name: str, default: Any = None, minimum: float = 1) -> Any:
    value = shape.get(name, default)
    if value is None:
        raise ConfigError(name, None, "is required for this op")
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ConfigError(name, value, "must be a number")
    if value < minimum:
        raise ConfigError(name, value, f"must be >= {minimum}")
    return value


def _gemm(kernels: KernelSet, gpu: GPUSpec, op: str, dtype: str, shape: dict[str, Any]) -> float:
    m = _need(shape, "m")
    n, k = int(_need(shape, "n")), int(_need(shape, "k"))
    if dtype == "fp8_block":
        label, weight, act = "fp8_block", DType.FP8, DType.FP8
    else:
        # the format's kernel and activations, as the op graph runs it (W4A8: the fp8 kernel
        # with int4-packed weights; weight-only formats: the legacy roofline)
        weight = DType.parse(dtype)
        spec = weight.spec
        has_fp8 = gpu.supports(DType.FP8)
        act = gemm_activation(weight, gpu.architecture, gpu.peak_flops_per_s)
        label = gemm_label(spec.kernel_dtype if has_fp8 else weight, act)
    peak = gpu.peak_flops_per_s.get(act) or gpu.peak_flops(DType.BF16)
    in_bytes = min(2.0, act.num_bytes)
    weight_bytes = FORMATS[weight].bytes_per_weight if weight == DType.W4A8 else weight.num_bytes
    return kernels.gemm_s(GemmShape(m, n, k, label, weight_bytes, in_bytes), peak)


def _attention(
    kernels: KernelSet, gpu: GPUSpec, op: str, dtype: str, shape: dict[str, Any]
) -> float:
    batch = int(_need(shape, "batch", 1))
    heads = int(_need(shape, "num_heads"))
    kv_heads = int(_need(shape, "num_kv_heads", heads))
    head_dim = int(_need(shape, "head_dim", 128))
    window = int(_need(shape, "window", 0, minimum=0)) or None
    kv_bytes = DType.parse(str(shape.get("kv_dtype", "bf16"))).num_bytes
    layer = attention_shapes(heads, kv_heads, head_dim)
    if op == "prefill-attention":
        isl = int(_need(shape, "isl"))
        context = int(_need(shape, "context", 0, minimum=0))
        batch_shape = BatchShape.from_lists(prefill=[(isl, context)] * batch)
        return kernels.attention_s(layer, batch_shape, window, kv_bytes)[0].time_s
    context = int(_need(shape, "context"))
    batch_shape = BatchShape.from_lists(decode_contexts=[context] * batch)
    return kernels.attention_s(layer, batch_shape, window, kv_bytes)[1].time_s


def _collective(
    kernels: KernelSet, gpu: GPUSpec, op: str, dtype: str, shape: dict[str, Any]
) -> float:
    num_gpus = int(_need(shape, "num_gpus", 2, minimum=2))
    num_bytes = float(_need(shape, "num_bytes"))
    custom = bool(shape.get("custom", True)) and op == "all-reduce"
    collective = op.replace("-", "_")
    graph = not bool(shape.get("eager", False))
    link = gpu.intra_node_link
    return kernels.collective_s(link, collective, num_gpus, num_bytes, custom, graph)[0]


def _moe(kernels: KernelSet, gpu: GPUSpec, op: str, dtype: str, shape: dict[str, Any]) -> float:
    tokens = int(_need(shape, "num_tokens"))
    hidden, inter = int(_need(shape, "hidden")), int(_need(shape, "inter"))
    topk, experts = int(_need(shape, "topk")), int(_need(shape, "num_experts"))
    ep = int(_need(shape, "ep", 1))
    if experts % ep:
        raise ConfigError("ep", ep, f"must divide num_experts={experts}")
    zipf = float(_need(shape, "zipf", 0.0, minimum=0))
    spec = MoESpec(num_experts=experts, num_experts_per_token=topk, expert_ffn_size=inter)
    load = busiest_device(expert_frequencies(spec, (), zipf), tokens, topk, ep)
    # the format's kernel, activations and packed bytes exactly as the op graph's expert group
    # runs them (``graph_kinds.group_kernels``: a checkpoint in this format)
    weight = DType.parse(dtype)
    act = gemm_activation(weight, gpu.architecture, gpu.peak_flops_per_s)
    moe = MoeShape(
        num_tokens=tokens,
        hidden=hidden,
        inter=inter,
        topk=topk,
        num_experts=experts,
        ep=ep,
        assignments=load.assignments,
        experts_touched=load.experts_touched,
        label=(
            "fp8_block"  # block-scaled fp8 has its own MoE tables, as in graph_kinds
            if weight == DType.FP8_BLOCK and act == DType.FP8
            else moe_label(weight.spec.kernel_dtype, act)
        ),
        weight_bytes=FORMATS[weight].bytes_per_weight,
    )
    peak = gpu.peak_flops_per_s.get(act) or gpu.peak_flops(DType.BF16)
    return kernels.moe_experts_s(moe, peak)


_PRICERS = {
    "gemm": _gemm,
    "prefill-attention": _attention,
    "decode-attention": _attention,
    "all-reduce": _collective,
    "all-gather": _collective,
    "reduce-scatter": _collective,
    "all-to-all": _collective,
    "moe": _moe,
}
