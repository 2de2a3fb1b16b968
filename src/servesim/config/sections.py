"""The hardware and SLO sections of ``SimConfig`` (``hardware:``, ``slo:``), and the defaults
of the built-in scenario ``servesim simulate`` runs with no arguments."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from servesim.cluster.config import EngineName, HostOverheadName, KernelStackName
from servesim.core.domains import Fraction, NumExperts, ParallelDegree, SloS
from servesim.core.errors import ServesimError
from servesim.metrics.slo import DEFAULT_ATTAINMENT_TARGET, SLOSpec, SLOTargets
from servesim.specs.catalog import get_gpu
from servesim.specs.dtypes import DType, serving_formats

STRICT = ConfigDict(extra="forbid", validate_assignment=True)

# The default scenario: Llama-3.1-8B on one H100 SXM at bf16 (the most common open-model
# serving setup), vLLM's scheduler and defaults, ShareGPT-like chat traffic.
DEFAULT_MODEL = "llama-3.1-8b"
DEFAULT_GPU = "h100-sxm"
# The sharegpt-vidur preset (formerly `sharegpt`, now a deprecated alias: Sarathi-Serve's
# 8k-filtered ShareGPT conversations, median prompt 1,723 tokens, median output 415)
# saturates this deployment at ~3 req/s in servesim once vLLM 0.6's host costs are charged
# (bench/bench_engine.py: queues grow at 3 req/s). 2.5 req/s is ~80% of that: KV cache ~17%
# full on average, p50 TTFT ~0.27 s, p99 ~1.2 s (`servesim simulate`).
DEFAULT_RATE_PER_S = 2.5


class HardwareConfig(BaseModel):
    """What one replica runs on and in which formats."""

    model_config = STRICT

    gpu: str = Field(DEFAULT_GPU, description="GPU catalog name (`servesim gpus`).")
    tp: ParallelDegree = Field(1, description="Tensor-parallel degree (GPUs per stage).")
    pp: ParallelDegree = Field(1, description="Pipeline-parallel degree (stages).")
    dtype: str = Field(
        "bf16",
        description="Weight format: bf16/fp16; fp8 (W8A8, GEMMs in fp8), fp8-block, w4a8 "
        "(GEMMs in fp8); int8, int4 (awq/gptq), fp4 (nvfp4), mxfp4 (weight-only, GEMMs in bf16). "
        "A checkpoint's quantization_config keeps its own formats (servesim models NAME).",
    )
    kv_dtype: str | None = Field(None, description="KV-cache format (default: bf16/fp16 as dtype).")
    gpu_memory_utilization: Fraction | None = Field(
        None,
        description="Fraction of GPU memory the engine may use (None: cache's, vLLM's 0.9).",
    )
    cuda_graphs: bool = Field(True, description="Decode replays CUDA graphs (vLLM default).")
    custom_all_reduce: bool = Field(
        True,
        description="vLLM's custom all-reduce for small TP messages on NVLink "
        "(vLLM default; false = --disable-custom-all-reduce, NCCL only).",
    )
    engine: EngineName = Field(
        "auto",
        description="Serving engine profile: vllm-0.6, vllm-v1, vllm-v1-async, sglang, trtllm "
        "(its scheduler defaults, host time and kernel stack; `servesim.engine.profiles`); "
        "auto: vllm-v1 for a vLLM v1 scheduler, vllm-0.6 otherwise.",
    )
    host_overhead: HostOverheadName = Field(
        "auto",
        description="Host (CPU) time profile per step, overriding the engine's: vllm-v0 (vLLM "
        "0.6), vllm-v0-multistep, vllm-v1, vllm-v1-async, sglang, trtllm, none (GPU time "
        "only); auto: the engine's.",
    )
    kernel_stack: KernelStackName = Field(
        "auto",
        description="Kernel stack whose measured tables price each operator: vllm-0.6 (cuBLAS, "
        "FlashAttention 2), vllm-0.24 (FlashAttention 3, cutlass fp8), sglang-0.5; auto: "
        "vllm-0.24 for the vllm-v1 host profile, vllm-0.6 otherwise.",
    )
    offload_cached_experts: NumExperts | None = Field(
        None,
        description="MoE expert offloading: keep this many experts per MoE layer in GPU memory "
        "and the rest in host memory, fetched over the host link on a miss (None: all on GPU).",
    )

    @field_validator("gpu")
    @classmethod
    def _known_gpu(cls, value: str) -> str:
        try:
            return get_gpu(value).name
        except ServesimError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("dtype", "kv_dtype")
    @classmethod
    def _known_dtype(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return DType.parse(value).value
        except ServesimError as exc:
            raise ValueError(str(exc)) from None

    def weight_dtype(self) -> DType:
        """Storage format of the weights."""
        return DType(self.dtype)

    def activation_dtype(self) -> DType:
        """Format the GEMMs compute in: fp8 for W8A8 fp8, else the 16-bit format."""
        return serving_formats(self.weight_dtype())[1]

    def kv_cache_dtype(self) -> DType:
        """KV-cache format: explicit, else the activation format (vLLM's ``auto``)."""
        kv = DType(self.kv_dtype) if self.kv_dtype is not None else None
        return serving_formats(self.weight_dtype(), kv)[2]


class SLOClassConfig(BaseModel):
    """Targets for one SLO class; a missing target falls back to the default one."""

    model_config = STRICT

    ttft_s: SloS | None = Field(None, description="TTFT target in seconds.")
    tpot_s: SloS | None = Field(None, description="TPOT target in seconds.")


class SLOConfig(BaseModel):
    """Latency targets for attainment and goodput (DistServe; vllm bench --goodput)."""

    model_config = STRICT

    ttft_s: SloS | None = Field(None, description="TTFT target in seconds.")
    tpot_s: SloS | None = Field(None, description="TPOT target in seconds.")
    attainment_target: Fraction = Field(
        DEFAULT_ATTAINMENT_TARGET,
        description="Fraction of requests that must meet the SLO (DistServe uses 0.9).",
    )
    classes: dict[str, SLOClassConfig] = Field(
        default_factory=dict, description="Per-class overrides, keyed by Request.slo_class."
    )

    def to_spec(self) -> SLOSpec:
        """The metrics-layer form (classes sorted by name, for determinism)."""
        return SLOSpec(
            ttft_s=self.ttft_s,
            tpot_s=self.tpot_s,
            attainment_target=self.attainment_target,
            classes=tuple(
                (name, SLOTargets(c.ttft_s, c.tpot_s)) for name, c in sorted(self.classes.items())
            ),
        )
