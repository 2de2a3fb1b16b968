"""``SimConfig``: the user-facing description of one simulation (YAML, CLI flags, Python dicts).

This is the pydantic boundary: every value a user types is checked here, with the field path in
the error, and unknown keys are errors (a typo never silently falls back to a default). The
defaults describe the built-in scenario ``servesim simulate`` runs with no arguments. The
``hardware:`` and ``slo:`` sections live in ``servesim.config.sections``, file reading and raw
mapping edits in ``servesim.config.loading``; the names are importable from here.

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

from pydantic import (
    BaseModel,
    Field,
    ModelWrapValidatorHandler,
    field_validator,
    model_validator,
)

from servesim.cluster.config import (
    AdmissionConfig,
    DeploymentConfig,
    PoolConfig,
    RouterConfig,
    apply_engine_defaults,
)
from servesim.config.kebab import snake_case_keys
from servesim.config.loading import deep_copy, load_yaml, rebase_model_path, set_dotted
from servesim.config.sections import (
    DEFAULT_GPU,
    DEFAULT_MODEL,
    DEFAULT_RATE_PER_S,
    STRICT,
    HardwareConfig,
    SLOClassConfig,
    SLOConfig,
)
from servesim.core.domains import DurationS, NumRequests, Replicas, Seed, refuse_bool_coercion
from servesim.core.errors import ServesimError
from servesim.engine.config import (
    CacheConfig,
    HybridConfig,
    LoRAConfig,
    SchedulerConfig,
    SpeculativeConfig,
    VLLMSchedulerConfig,
)
from servesim.specs.catalog import resolve_model
from servesim.workload.config import WorkloadConfig

__all__ = [
    "DEFAULT_GPU",
    "DEFAULT_MODEL",
    "DEFAULT_RATE_PER_S",
    "HardwareConfig",
    "SLOClassConfig",
    "SLOConfig",
    "SimConfig",
    "load_yaml",
    "set_dotted",
]


def _default_workload() -> WorkloadConfig:
    return WorkloadConfig(preset="sharegpt-vidur", rate_per_s=DEFAULT_RATE_PER_S)


class SimConfig(BaseModel):
    """One simulation: model, hardware, serving policy, workload, SLO and run length."""

    model_config = STRICT

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
    admission: AdmissionConfig | None = Field(
        None,
        description="Admission control at the cluster entry (None: accept all / the deployment's).",
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
        update: dict[str, Any] = {"router": router, "admission": self.admission}
        update = {k: v for k, v in update.items() if v is not None}
        if self.deployment is not None:
            return self.deployment.model_copy(update=update) if update else self.deployment
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
        return DeploymentConfig(pools=pools, **{"router": RouterConfig(), **update})

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
            data: the raw mapping (as in the YAML file); keys may be kebab-case
                (``max-num-seqs``) as well as snake_case (``servesim.config.kebab``).
            overrides: ``{"dotted.path": value}``; they replace what ``data`` says.
            base_dir: directory that relative model paths in ``data`` are relative to.
        """
        # kebab-case keys as the CLI spells them (max-num-seqs), before the snake_case overrides
        raw = snake_case_keys(deep_copy(data), cls)
        if base_dir is not None:
            rebase_model_path(raw, base_dir)
        for dotted, value in (overrides or {}).items():
            set_dotted(raw, dotted, value)
        return cls.model_validate(raw)

    def with_overrides(self, overrides: Mapping[str, Any]) -> SimConfig:
        """A copy with dotted-path overrides applied (fields you set explicitly are kept)."""
        return SimConfig.from_dict(self.model_dump(mode="json", exclude_unset=True), overrides)

    def to_yaml(self) -> str:
        """The full config as YAML (every default spelled out)."""
        import yaml  # only here and for --config files: not a run's start-up

        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
