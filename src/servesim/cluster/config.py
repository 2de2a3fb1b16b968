"""``DeploymentConfig``: the user-facing description of a deployment (YAML ``deployment:`` key).

A deployment is a list of replica pools behind a router. Each pool is N identical replicas of
one (GPU type, TP, PP, EP, formats, scheduler, cache, role). Example::

    deployment:
      router: {kind: least_outstanding_requests}
      nodes: [{gpu: h100-sxm, count: 1}]          # optional: the cluster the pools are placed on
      pools:
        - {name: prefill, role: prefill, replicas: 2, gpu: h100-sxm}
        - {name: decode, role: decode, replicas: 6, gpu: h100-sxm}

Pools are placed on the nodes in order (a replica's GPUs in one node when they fit), which
decides the link a KV transfer crosses: NVLink inside a node, the network between nodes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from servesim.core.errors import ServesimError
from servesim.engine.config import CacheConfig, SchedulerConfig, VLLMSchedulerConfig
from servesim.engine.profiles import AUTO, engine_names, with_engine_defaults
from servesim.perf.host import HOST_OVERHEAD_CHOICES
from servesim.perf.stacks import KERNEL_STACK_CHOICES
from servesim.specs.catalog import get_gpu

_STRICT = ConfigDict(extra="forbid", frozen=True)


def check_engine(value: str) -> str:
    """``value`` if it is ``auto`` or a registered engine profile."""
    if value != AUTO and value not in engine_names():
        raise ValueError(f"unknown engine {value!r}; valid: {', '.join([AUTO, *engine_names()])}")
    return value


def check_kernel_stack(value: str) -> str:
    """``value`` if it is ``auto`` or a registered kernel stack (``servesim.perf.stacks``)."""
    if value not in KERNEL_STACK_CHOICES:
        raise ValueError(
            f"unknown kernel stack {value!r}; valid: {', '.join(KERNEL_STACK_CHOICES)}"
        )
    return value


def check_host_overhead(value: str) -> str:
    """``value`` if it is a host-overhead choice."""
    if value not in HOST_OVERHEAD_CHOICES:
        raise ValueError(
            f"unknown host overhead {value!r}; valid: {', '.join(HOST_OVERHEAD_CHOICES)}"
        )
    return value


# The three names every pool and the top-level hardware section take, checked where declared.
EngineName = Annotated[str, AfterValidator(check_engine)]
HostOverheadName = Annotated[str, AfterValidator(check_host_overhead)]
KernelStackName = Annotated[str, AfterValidator(check_kernel_stack)]


class RouterConfig(BaseModel):
    """A router: ``kind`` is a registry name or ``path/to/file.py:ClassName``."""

    model_config = _STRICT

    kind: str = Field("round_robin", description="Router name (`ROUTERS`) or file.py:Class.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of the router's constructor."
    )


class AutoscaleConfig(BaseModel):
    """Scale a pool between ``min_replicas`` and its ``replicas`` (the maximum)."""

    model_config = _STRICT

    min_replicas: int = Field(1, ge=1, description="Replicas up at the start and at least.")
    metric: Literal["queue_length", "kv_usage"] = Field(
        "queue_length", description="Signal: queued requests per up replica, or mean KV usage."
    )
    scale_up_threshold: float = Field(8.0, gt=0, description="Start a replica above this.")
    scale_down_threshold: float = Field(1.0, ge=0, description="Stop a replica below this.")
    interval_s: float = Field(5.0, gt=0, description="Policy evaluation period.")
    # Cold start: weights read from storage at this bandwidth (per replica) plus a fixed
    # start-up (container, CUDA context, graph capture). 2 GB/s is a local NVMe SSD.
    storage_bandwidth_bytes_per_s: float = Field(2e9, gt=0, description="Weight load rate.")
    startup_s: float = Field(30.0, ge=0, description="Fixed start-up time of a new replica.")
    policy: str = Field(
        "threshold",
        description="Scaling policy (cluster/scaling.py: threshold, target) or file.py:Class.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of the policy's constructor."
    )


class PoolConfig(BaseModel):
    """N identical replicas with one role."""

    model_config = _STRICT

    name: str = Field("default", min_length=1, description="Pool name (unique).")
    role: Literal["unified", "prefill", "decode"] = Field(
        "unified", description="unified: prefill and decode; prefill/decode: disaggregated."
    )
    replicas: int = Field(1, ge=1, le=4096, description="Replicas (the maximum if autoscaled).")
    model: str | None = Field(None, description="Model (None: the config's top-level model).")
    gpu: str = Field("h100-sxm", description="GPU catalog name.")
    tp: int = Field(1, ge=1, le=64, description="Tensor-parallel degree.")
    pp: int = Field(1, ge=1, le=64, description="Pipeline-parallel degree.")
    ep: int = Field(1, ge=1, le=1024, description="Expert-parallel degree (MoE).")
    dp_attention: int = Field(
        1,
        ge=1,
        le=256,
        description="Data-parallel attention ranks per replica (vLLM --data-parallel-size "
        "with --enable-expert-parallel, SGLang --enable-dp-attention): each replica is this "
        "many lockstep ranks of tp GPUs with their own queues and KV cache, sharing the "
        "experts over tp x dp_attention GPUs (ep: 1 or tp x dp_attention); MoE models only.",
    )
    all2all_backend: Literal[
        "allgather_reducescatter", "naive", "deepep_high_throughput", "deepep_low_latency", "pplx"
    ] = Field(
        "allgather_reducescatter",
        description="dp_attention: how tokens reach the experts (vLLM's VLLM_ALL2ALL_BACKEND; "
        "its default gathers every rank's tokens to every GPU, deepep/pplx send each GPU only "
        "its token-expert pairs).",
    )
    dense_mlp: Literal["auto", "rank", "group", "replicated"] = Field(
        "auto",
        description="dp_attention: where a MoE model's dense MLP layers run. rank: at the "
        "rank's tp (vLLM); group: at tp x dp_attention on the gathered tokens (SGLang's "
        "default); replicated: whole on every GPU (SGLang --moe-dense-tp-size 1); auto: the "
        "engine's (SGLang: group, else rank).",
    )
    dtype: str = Field("bf16", description="Weight format.")
    kv_dtype: str | None = Field(None, description="KV format (None: as the activations).")
    cuda_graphs: bool = Field(True, description="Decode replays CUDA graphs.")
    custom_all_reduce: bool = Field(True, description="vLLM custom all-reduce on NVLink.")
    engine: EngineName = Field(
        AUTO,
        description="Serving engine profile (servesim.engine.profiles: vllm-0.6, vllm-v1, "
        "vllm-v1-async, sglang, trtllm): its scheduler defaults, host time and kernel stack; "
        "auto: vllm-v1 for a vLLM v1 scheduler, vllm-0.6 otherwise.",
    )
    host_overhead: HostOverheadName = Field(
        AUTO, description="Host (CPU) time profile (override); auto: the engine's."
    )
    kernel_stack: KernelStackName = Field(
        "auto", description="Kernel stack (servesim.perf.stacks); auto: the host profile's."
    )
    expert_zipf_exponent: float = Field(0.0, ge=0, description="MoE routing skew (Zipf).")
    expert_popularity: tuple[float, ...] = Field((), description="MoE per-expert frequencies.")
    eplb_redundant_experts: int = Field(
        0, ge=0, description="EPLB: extra copies of hot experts per MoE layer (multiple of ep)."
    )
    expert_placement: str = Field(
        "eplb",
        description="MoE expert placement (cluster/placement.py: eplb, greedy) or file.py:Class; "
        "eplb places only with eplb_redundant_experts > 0 (else contiguous).",
    )
    scheduler: SchedulerConfig = Field(default_factory=VLLMSchedulerConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    autoscale: AutoscaleConfig | None = Field(None, description="Autoscaling (None: fixed).")

    @model_validator(mode="before")
    @classmethod
    def _engine_defaults(cls, data: Any) -> Any:
        """An explicit engine fills the scheduler and cache fields the user left unset."""
        return apply_engine_defaults(data)


def apply_engine_defaults(data: Any) -> Any:
    """A raw pool/simulation mapping with its engine's scheduler and cache defaults filled in
    (fields the user set are kept; ``engine: auto`` changes nothing)."""
    if not isinstance(data, dict):
        return data
    hardware = data.get("hardware") if isinstance(data.get("hardware"), dict) else data
    engine = hardware.get("engine", AUTO)
    if engine == AUTO or engine not in engine_names():
        return data
    scheduler, cache = data.get("scheduler"), data.get("cache")
    if isinstance(scheduler, BaseModel):
        scheduler = scheduler.model_dump(exclude_unset=True) | {"kind": scheduler.kind}
    if isinstance(cache, BaseModel):
        cache = cache.model_dump(exclude_unset=True)
    try:
        memory = get_gpu(hardware.get("gpu", "h100-sxm")).memory_bytes
    except ServesimError:  # an unknown GPU is reported by the GPU field's own check
        memory = None
    scheduler, cache = with_engine_defaults(scheduler, cache, engine, memory)
    return {**data, "scheduler": scheduler, "cache": cache}


class NodeGroupConfig(BaseModel):
    """``count`` identical servers of one GPU type."""

    model_config = _STRICT

    gpu: str = Field(description="GPU catalog name.")
    count: int = Field(1, ge=1, description="Servers.")
    gpus_per_node: int | None = Field(None, ge=1, description="None: the usual server's.")
    network: str | None = Field(None, description="Inter-node network (None: usual one).")


class TransferConfig(BaseModel):
    """How prompt KV moves from a prefill replica to a decode replica."""

    model_config = _STRICT

    layerwise_overlap: bool = Field(
        False, description="Send each layer's KV as soon as it is computed (DistServe/Mooncake)."
    )
    first_token_at: Literal["prefill", "decode"] = Field(
        "prefill",
        description="prefill: the prefill replica streams the first token (DistServe); "
        "decode: the user's stream starts at the decode replica (vLLM/Dynamo proxy).",
    )


class MigrationConfig(BaseModel):
    """Llumnix-style live migration of decoding requests inside a pool."""

    model_config = _STRICT

    interval_s: float = Field(1.0, gt=0, description="How often the balancer looks.")
    kv_usage_gap: float = Field(
        0.3, gt=0, le=1, description="Migrate when max - min KV usage in a pool exceeds this."
    )
    max_per_round: int = Field(1, ge=1, description="Migrations started per look and pool.")


class AdmissionConfig(BaseModel):
    """Admission control at the cluster entry: accept or reject each arriving request."""

    model_config = _STRICT

    kind: str = Field(
        "accept_all",
        description="Admission policy (cluster/admission.py: accept_all, token_bucket, "
        "slo_ttft) or file.py:Class.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of the policy's constructor."
    )


class DeploymentConfig(BaseModel):
    """Replica pools behind a router, placed on a cluster."""

    model_config = _STRICT

    pools: list[PoolConfig] = Field(min_length=1, description="The replica pools.")
    router: RouterConfig = Field(default_factory=RouterConfig, description="Entry router.")
    decode_router: RouterConfig = Field(
        default_factory=lambda: RouterConfig(kind="least_kv_usage"),
        description="Picks the decode replica for a prefilled request (disaggregation).",
    )
    nodes: list[NodeGroupConfig] | None = Field(
        None, description="The cluster (None: enough default servers for every pool)."
    )
    transfer: TransferConfig = Field(default_factory=TransferConfig)
    migration: MigrationConfig | None = Field(None, description="Live migration (None: off).")
    admission: AdmissionConfig = Field(
        default_factory=AdmissionConfig, description="Admission control (default: accept all)."
    )
