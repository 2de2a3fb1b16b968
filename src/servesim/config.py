"""``SimConfig``: the user-facing description of one simulation (YAML, CLI flags, Python dicts).

This is the pydantic boundary: every value a user types is checked here, with the field path in
the error, and unknown keys are errors (a typo never silently falls back to a default). The
defaults describe the built-in scenario ``servesim simulate`` runs with no arguments.

Example YAML::

    model: llama-3.1-8b            # catalog name, HF repo id, or path to config.json / its dir
    hardware: {gpu: h100-sxm, tp: 1, dtype: bf16}
    scheduler: {kind: vllm, max_num_seqs: 256}
    workload: {preset: sharegpt-vidur, rate_per_s: 12}
    slo: {ttft_s: 1.0, tpot_s: 0.1}
    num_requests: 1000             # the workload's default
    seed: 0
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    field_validator,
    model_validator,
)

from servesim.cluster.config import (
    DeploymentConfig,
    PoolConfig,
    RouterConfig,
    apply_engine_defaults,
    check_engine,
    check_host_overhead,
    check_kernel_stack,
)
from servesim.core.domains import (
    DurationS,
    Fraction,
    NumExperts,
    NumRequests,
    ParallelDegree,
    Replicas,
    Seed,
    SloS,
    refuse_bool_coercion,
)
from servesim.core.errors import ConfigError, ServesimError
from servesim.engine.config import (
    CacheConfig,
    HybridConfig,
    LoRAConfig,
    SchedulerConfig,
    SpeculativeConfig,
    VLLMSchedulerConfig,
)
from servesim.metrics.slo import DEFAULT_ATTAINMENT_TARGET, SLOSpec, SLOTargets
from servesim.specs.catalog import get_gpu, resolve_model
from servesim.specs.dtypes import DType, serving_formats
from servesim.workload.config import WorkloadConfig

_STRICT = ConfigDict(extra="forbid", validate_assignment=True)

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


def _default_workload() -> WorkloadConfig:
    return WorkloadConfig(preset="sharegpt-vidur", rate_per_s=DEFAULT_RATE_PER_S)


class HardwareConfig(BaseModel):
    """What one replica runs on and in which formats."""

    model_config = _STRICT

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
    engine: str = Field(
        "auto",
        description="Serving engine profile: vllm-0.6, vllm-v1, vllm-v1-async, sglang, trtllm "
        "(its scheduler defaults, host time and kernel stack; `servesim.engine.profiles`); "
        "auto: vllm-v1 for a vLLM v1 scheduler, vllm-0.6 otherwise.",
    )
    host_overhead: str = Field(
        "auto",
        description="Host (CPU) time profile per step, overriding the engine's: vllm-v0 (vLLM "
        "0.6), vllm-v0-multistep, vllm-v1, vllm-v1-async, sglang, trtllm, none (GPU time "
        "only); auto: the engine's.",
    )
    kernel_stack: str = Field(
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

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        return check_engine(value)

    @field_validator("host_overhead")
    @classmethod
    def _known_host(cls, value: str) -> str:
        return check_host_overhead(value)

    @field_validator("kernel_stack")
    @classmethod
    def _known_stack(cls, value: str) -> str:
        return check_kernel_stack(value)

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

    model_config = _STRICT

    ttft_s: SloS | None = Field(None, description="TTFT target in seconds.")
    tpot_s: SloS | None = Field(None, description="TPOT target in seconds.")


class SLOConfig(BaseModel):
    """Latency targets for attainment and goodput (DistServe; vllm bench --goodput)."""

    model_config = _STRICT

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


class SimConfig(BaseModel):
    """One simulation: model, hardware, serving policy, workload, SLO and run length."""

    model_config = _STRICT

    model: str = Field(
        DEFAULT_MODEL, description="Catalog name, HF repo id, or path to a config.json or its dir."
    )
    hardware: HardwareConfig = Field(default_factory=HardwareConfig)
    scheduler: SchedulerConfig = Field(
        default_factory=VLLMSchedulerConfig, description="Replica scheduler (kind: vllm, ...)."
    )
    cache: CacheConfig = Field(default_factory=CacheConfig, description="Paged KV cache.")
    workload: WorkloadConfig = Field(default_factory=_default_workload)
    slo: SLOConfig | None = Field(None, description="Latency targets (None: no SLO figures).")
    seed: Seed = Field(0, description="Root seed of every random stream.")
    num_requests: NumRequests | None = Field(
        None, description="Requests to simulate (overrides workload.num_requests)."
    )
    duration_s: DurationS | None = Field(
        None,
        description="Arrivals stop at this time (overrides workload.duration_s); requests "
        "already in the system still run to completion.",
    )
    max_time_s: DurationS | None = Field(
        None,
        description="Hard stop of the simulated clock; unfinished requests are reported.",
    )
    replicas: Replicas = Field(1, description="Identical replicas (one pool).")
    router: str | None = Field(
        None, description="Router name or file.py:Class (None: round_robin / the deployment's)."
    )
    disagg: str | None = Field(
        None,
        pattern=r"^\s*[1-9][0-9]*\s*[Pp]\s*:\s*[1-9][0-9]*\s*[Dd]\s*$",
        description="Prefill/decode disaggregation shorthand, e.g. 2P:6D (hardware per pool).",
    )
    deployment: DeploymentConfig | None = Field(
        None, description="Replica pools, router, cluster (None: `replicas` x `hardware`)."
    )
    speculative: SpeculativeConfig | None = Field(
        None, description="Speculative decoding on every replica (None: off)."
    )
    lora: LoRAConfig | None = Field(
        None, description="Multi-LoRA serving on every replica (None: adapter ids ignored)."
    )
    hybrid: HybridConfig | None = Field(
        None, description="CPU-GPU hybrid execution on every replica (None: GPU only)."
    )

    @model_validator(mode="wrap")
    @classmethod
    def _no_boolean_numbers(cls, data: Any, handler: ModelWrapValidatorHandler[SimConfig]) -> Any:
        """``hardware: {tp: true}`` is refused, in every nested model (not read as tp=1)."""
        cfg = handler(data)
        if isinstance(data, Mapping):
            refuse_bool_coercion(data, cfg.model_dump())
        return cfg

    @model_validator(mode="before")
    @classmethod
    def _engine_defaults(cls, data: Any) -> Any:
        """``hardware.engine`` fills the scheduler and cache fields the user left unset."""
        return apply_engine_defaults(data)

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        try:
            resolve_model(value)
        except ServesimError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _one_memory_fraction(self) -> SimConfig:
        hw = self.hardware.gpu_memory_utilization
        cache = self.cache.gpu_memory_utilization
        if (
            hw is not None
            and "gpu_memory_utilization" in self.cache.model_fields_set
            and hw != cache
        ):
            raise ValueError(
                f"hardware.gpu_memory_utilization={hw} and cache.gpu_memory_utilization={cache} "
                "disagree: set it in one place"
            )
        return self

    @model_validator(mode="after")
    def _one_deployment(self) -> SimConfig:
        if self.deployment is not None:
            for name in ("replicas", "disagg"):
                if name in self.model_fields_set:
                    raise ValueError(f"{name} and deployment both describe the pools: use one")
        if self.disagg is not None and "replicas" in self.model_fields_set:
            raise ValueError("replicas and disagg both describe the pools: use one")
        return self

    def effective_deployment(self) -> DeploymentConfig:
        """The deployment: as given, else ``disagg`` (two pools) or ``replicas`` x
        ``hardware`` (one unified pool), with the ``router`` shorthand applied."""
        router = RouterConfig(kind=self.router) if self.router is not None else None
        if self.deployment is not None:
            if router is None:
                return self.deployment
            return self.deployment.model_copy(update={"router": router})
        hw = self.hardware
        base: dict[str, Any] = {
            "gpu": hw.gpu,
            "tp": hw.tp,
            "pp": hw.pp,
            "dtype": hw.dtype,
            "kv_dtype": hw.kv_dtype,
            "cuda_graphs": hw.cuda_graphs,
            "custom_all_reduce": hw.custom_all_reduce,
            "engine": hw.engine,
            "host_overhead": hw.host_overhead,
            "kernel_stack": hw.kernel_stack,
            "scheduler": self.scheduler,
            "cache": self.effective_cache(),
        }
        if self.disagg is not None:
            p, d = (int(x.strip()[:-1]) for x in self.disagg.split(":"))
            pools = [
                PoolConfig(name="prefill", role="prefill", replicas=p, **base),
                PoolConfig(name="decode", role="decode", replicas=d, **base),
            ]
        else:
            pools = [PoolConfig(name="default", replicas=self.replicas, **base)]
        return DeploymentConfig(pools=pools, router=router or RouterConfig())

    def effective_workload(self) -> WorkloadConfig:
        """The workload with the top-level ``num_requests`` / ``duration_s`` applied."""
        update: dict[str, Any] = {}
        if self.num_requests is not None:
            update["num_requests"] = self.num_requests
        if self.duration_s is not None:
            update["duration_s"] = self.duration_s
        if not update:
            return self.workload
        return WorkloadConfig.model_validate(
            {**self.workload.model_dump(exclude_unset=True), **update}
        )

    def effective_cache(self) -> CacheConfig:
        """The cache config with ``hardware.gpu_memory_utilization`` applied."""
        hw = self.hardware.gpu_memory_utilization
        if hw is None:
            return self.cache
        return CacheConfig.model_validate(
            {**self.cache.model_dump(exclude_unset=True), "gpu_memory_utilization": hw}
        )

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Mapping[str, Any] | None = None) -> SimConfig:
        """Load a YAML file, apply dotted-path ``overrides`` (e.g. ``{"hardware.tp": 2}``)."""
        return cls.from_dict(load_yaml(path), overrides, base_dir=Path(path).parent)

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        overrides: Mapping[str, Any] | None = None,
        *,
        base_dir: Path | None = None,
    ) -> SimConfig:
        """Validate ``data`` after applying dotted-path ``overrides``.

        Args:
            data: the raw mapping (as in the YAML file).
            overrides: ``{"dotted.path": value}``; they replace what ``data`` says.
            base_dir: directory that relative model paths in ``data`` are relative to.
        """
        raw = _deep_copy(data)
        if base_dir is not None:
            _rebase_model_path(raw, base_dir)
        for dotted, value in (overrides or {}).items():
            set_dotted(raw, dotted, value)
        return cls.model_validate(raw)

    def with_overrides(self, overrides: Mapping[str, Any]) -> SimConfig:
        """A copy with dotted-path overrides applied (fields you set explicitly are kept)."""
        return SimConfig.from_dict(self.model_dump(mode="json", exclude_unset=True), overrides)

    def to_yaml(self) -> str:
        """The full config as YAML (every default spelled out)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or a non-mapping is a ``ConfigError``."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError("config", str(path), "file not found")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "config", str(path), f"not a YAML text file (byte {exc.start} is not UTF-8)"
        ) from None
    except OSError as exc:
        raise ConfigError("config", str(path), f"cannot be read: {exc.strerror}") from None
    if "\x00" in text:
        raise ConfigError("config", str(path), "not a YAML text file (it holds NUL bytes)")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError("config", str(path), f"not valid YAML{where}") from None
    except (ValueError, RecursionError) as exc:  # e.g. a date like 2024-13-45
        raise ConfigError("config", str(path), f"not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("config", str(path), "the top level must be a mapping of keys")
    return data


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """``data["a"]["b"] = value`` for ``dotted == "a.b"``, creating mappings on the way."""
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[leaf] = value


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def _rebase_model_path(raw: dict[str, Any], base_dir: Path) -> None:
    """A relative model path in a YAML file is relative to that file, not to the cwd."""
    model = raw.get("model")
    if isinstance(model, str) and not Path(model).is_absolute():
        candidate = base_dir / model
        if candidate.exists():
            raw["model"] = str(candidate)
    workload = raw.get("workload")
    if isinstance(workload, dict) and isinstance(workload.get("trace"), str):
        trace = Path(workload["trace"])
        if not trace.is_absolute() and (base_dir / trace).exists():
            workload["trace"] = str(base_dir / trace)
