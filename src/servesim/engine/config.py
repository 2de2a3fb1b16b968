"""User-facing configuration of a replica's scheduler and KV cache (pydantic, at the boundary).

``SchedulerConfig`` is a discriminated union on ``kind``; ``kind`` is the scheduler registry key
(``custom`` loads a user class from ``path/to/file.py:ClassName``). Each scheduler receives only
its own sub-config.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from servesim.core.errors import ServesimError
from servesim.specs.catalog.cpus import get_cpu


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CacheConfig(_Config):
    """Paged KV cache of one replica (vLLM's ``CacheConfig`` knobs)."""

    block_size: int = Field(16, ge=1, description="Tokens per KV block (vLLM default 16).")
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="Fraction of GPU memory vLLM may use (default 0.9)."
    )
    enable_prefix_caching: bool | None = Field(
        None,
        description="Reuse KV of identical prompt prefixes. None: the engine's default "
        "(vLLM 0.6 / V0 off, V1 >= 0.8 on).",
    )
    preemption_mode: Literal["recompute", "swap"] = Field(
        "recompute", description="On KV exhaustion: drop and recompute (vLLM default) or swap."
    )
    preemption_choice: Literal["fixed", "cheaper"] = Field(
        "fixed",
        description="Per preempted request: 'fixed' applies preemption_mode to all (vLLM); "
        "'cheaper' swaps when copying its KV over the host link out and back takes less than "
        "recomputing it, else recomputes (engine/preemption.py).",
    )
    swap_space_bytes: int = Field(
        4 * 2**30, ge=0, description="Host memory per GPU for swapped KV (vLLM default 4 GiB)."
    )
    watermark: float = Field(
        0.01, ge=0, lt=1, description="Blocks kept free when admitting prompts (vLLM 1%)."
    )
    num_kv_blocks: int | None = Field(
        None, ge=1, description="Override the perf model's block count (tests, what-ifs)."
    )
    eviction: str = Field(
        "lru",
        description="Which cached prefix block to evict when blocks run out: a built-in policy "
        "name or a plug-in path file.py:Class (engine/eviction.py).",
    )


class _SchedulerBase(_Config):
    max_num_seqs: int = Field(256, ge=1, description="Sequences per batch (vLLM default 256).")
    max_num_batched_tokens: int | None = Field(
        None, ge=1, description="Token budget per iteration (None: the scheduler's default)."
    )


class VLLMSchedulerConfig(_SchedulerBase):
    """vLLM's scheduler; ``version`` picks V0 (0.6 rules) or V1 (>= 0.8 rules)."""

    kind: Literal["vllm"] = "vllm"
    version: Literal["v0", "v1"] = Field("v0", description="v0: vLLM 0.6 engine; v1: >= 0.8.")
    enable_chunked_prefill: bool | None = Field(
        None,
        description="V0 only (V1 always chunks). None: vLLM 0.6's rule, on when the model's "
        "context exceeds 32K tokens (then a 512-token budget), else off.",
    )
    disable_async_output_proc: bool = Field(
        False,
        description="V0 only: vLLM 0.6's flag; by default the output of step N is processed "
        "(and its tokens time-stamped) during step N+1.",
    )


class SarathiSchedulerConfig(_SchedulerBase):
    """Sarathi-Serve: decodes first, then prefill chunks filling the token budget."""

    kind: Literal["sarathi"] = "sarathi"
    chunk_size: int = Field(512, ge=1, description="Token budget per iteration (paper: 512+).")


class OrcaSchedulerConfig(_SchedulerBase):
    """Orca: iteration-level batching, whole-request KV reservation (no paging)."""

    kind: Literal["orca"] = "orca"
    reserve: Literal["request", "max_context"] = Field(
        "request",
        description="Reserve prompt+max output ('request') or the model's context per request.",
    )


class StaticSchedulerConfig(_SchedulerBase):
    """Request-level batching (FasterTransformer): a batch runs until all its requests end."""

    kind: Literal["static"] = "static"
    max_num_seqs: int = Field(8, ge=1, description="Requests per static batch.")


class PrioritySchedulerConfig(_SchedulerBase):
    """Preemptive priority scheduling by ``Request.priority`` (larger is more urgent)."""

    kind: Literal["priority"] = "priority"
    chunk_size: int = Field(2048, ge=1, description="Token budget per iteration.")


class FairSchedulerConfig(_SchedulerBase):
    """Virtual token counter fairness across ``Request.user_id`` (VTC, Sheng et al. 2024)."""

    kind: Literal["fair"] = "fair"
    chunk_size: int = Field(2048, ge=1, description="Token budget per iteration.")
    input_weight: float = Field(1.0, ge=0, description="Counter cost of one prompt token.")
    output_weight: float = Field(2.0, ge=0, description="Counter cost of one output token.")


class CustomSchedulerConfig(_SchedulerBase):
    """A user scheduler class loaded from ``path/to/file.py:ClassName``."""

    kind: Literal["custom"] = "custom"
    path: str = Field(description="``path/to/file.py:ClassName`` of a ReplicaScheduler subclass.")
    options: dict[str, Any] = Field(default_factory=dict, description="Passed to the class.")


SchedulerConfig = Annotated[
    VLLMSchedulerConfig
    | SarathiSchedulerConfig
    | OrcaSchedulerConfig
    | StaticSchedulerConfig
    | PrioritySchedulerConfig
    | FairSchedulerConfig
    | CustomSchedulerConfig,
    Field(discriminator="kind"),
]


class SpeculativeConfig(_Config):
    """Speculative decoding: a draft proposes ``num_speculative_tokens`` tokens per decode
    step and the target verifies them (plus one bonus position) in the same step
    (``servesim.engine.speculative``)."""

    method: Literal["eagle", "eagle3", "mtp", "draft"] = Field(
        "eagle",
        description="eagle: an EAGLE-style one-layer head on the target's hidden states; "
        "eagle3: the EAGLE-3 head (one layer, as eagle; a higher published acceptance); "
        "mtp: DeepSeek's multi-token-prediction module (one layer); draft: a separate small "
        "model (``draft_model``).",
    )
    num_speculative_tokens: int = Field(
        3, ge=1, le=15, description="Draft tokens per step k (vLLM num_speculative_tokens)."
    )
    acceptance_rate: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Per-position acceptance rate alpha (None: the method's published default).",
    )
    acceptance: Literal["sampled", "expected"] = Field(
        "sampled",
        description="sampled: accepted tokens per sequence and step drawn from ``seed``; "
        "expected: the mean (1 - alpha^(k+1)) / (1 - alpha) per step, with the fraction "
        "carried to the next step (no randomness).",
    )
    draft_model: str | None = Field(
        None, description="Catalog name, HF id or config path of the draft (method draft)."
    )
    seed: int = Field(0, ge=0, description="Seed of the acceptance draws (sampled mode).")

    @model_validator(mode="after")
    def _draft_model_iff_draft(self) -> SpeculativeConfig:
        if (self.method == "draft") != (self.draft_model is not None):
            raise ValueError("draft_model is needed by method draft, and only by it")
        return self


class LoRAConfig(_Config):
    """Multi-LoRA serving (S-LoRA / Punica): adapters in a GPU cache backed by host memory
    (``servesim.engine.lora``)."""

    rank: int = Field(16, ge=1, le=1024, description="LoRA rank r of every adapter.")
    target_modules: tuple[
        Literal["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], ...
    ] = Field(
        ("q_proj", "k_proj", "v_proj", "o_proj"),
        description="Projections carrying adapters: q_proj k_proj v_proj o_proj gate_proj "
        "up_proj down_proj (vLLM/PEFT names).",
    )
    max_loras: int = Field(
        8,
        ge=1,
        description="GPU adapter slots (vLLM --max-loras, whose default is 1; 8 here so a "
        "mix of adapters can batch).",
    )
    rank_by_adapter: dict[str, int] = Field(
        default_factory=dict, description="Per-adapter rank overrides (adapter id -> rank)."
    )


class HybridConfig(_Config):
    """CPU-GPU hybrid execution (APEX / NEO / FastDecode): the KV of some decoding sequences
    lives in host memory and their decode attention runs on the host CPU, overlapped with the
    GPU's work on the others (``servesim.engine.hybrid``). Single-GPU replicas only."""

    cpu: str = Field(
        "xeon-8259cl",
        description="Host CPU (``specs/catalog/cpus.yaml``; default: the AWS g4dn T4 host).",
    )
    num_sockets: int = Field(1, ge=1, le=8, description="Host CPU sockets serving attention.")
    host_kv_bytes: int = Field(
        32 * 2**30,
        ge=0,
        description="Host memory given to the KV cache; the replica's KV pool grows by it.",
    )
    policy: Literal["apex", "fixed"] = Field(
        "apex",
        description="apex: offload decodes to the CPU while its part stays under the GPU's "
        "(APEX's overlap rule); fixed: a fixed fraction of the decodes (a simple baseline). "
        "Both offload at least what the GPU's KV memory cannot hold.",
    )
    cpu_fraction: float = Field(
        0.5, ge=0, le=1, description="Fraction of decodes on the CPU under policy fixed."
    )
    admission: Literal["overlap", "memory"] = Field(
        "overlap",
        description="overlap: admit a request only while the KV held in host memory after it "
        "can be attended by the CPU within the GPU's last decode part (APEX keeps the CPU's "
        "work hidden); memory: admit while GPU + host blocks last.",
    )
    bandwidth_efficiency: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Fraction of the CPU's theoretical DRAM bandwidth its decode attention "
        "reaches (assumption: STREAM triad reaches ~70-80% of peak on server CPUs, and "
        "paged attention kernels on the host some two thirds of STREAM).",
    )
    flop_efficiency: float = Field(
        0.5, gt=0, le=1, description="Fraction of the CPU's fp32 peak its attention reaches."
    )

    @field_validator("cpu")
    @classmethod
    def _known_cpu(cls, value: str) -> str:
        try:
            get_cpu(value)
        except ServesimError as exc:
            raise ValueError(str(exc)) from None
        return value
