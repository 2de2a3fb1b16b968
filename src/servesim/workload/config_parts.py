"""The parts of a ``WorkloadConfig``: trace, sessions, groups, tags, client and shared prefixes.

Each is a strict pydantic model at the user boundary with an ``options()`` (or ``load()``) that
returns the plain object the workload code takes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from servesim.core.domains import (
    GroupSize,
    MaxConcurrency,
    MeanTurns,
    NumWarmups,
    RateScale,
    Tokens,
    TokensOrZero,
)
from servesim.workload.clients import ClientOptions
from servesim.workload.config_base import StrictConfig
from servesim.workload.length_config import LengthDist

if TYPE_CHECKING:  # imported where used: a run without traces, tags or shared prefixes skips them
    from servesim.workload.shared_prefix import SharedPrefixOptions
    from servesim.workload.tags import TagOptions


class TraceConfig(StrictConfig):
    """A trace file and how to read it (see ``servesim.workload.traces.TraceOptions``)."""

    path: Path = Field(description="CSV or JSONL trace file.")
    format: str | None = Field(None, description="Format name; None detects it.")
    columns: dict[str, str] | None = Field(
        None, description="Generic csv/jsonl: prompt/output/arrival/hashes/session -> column."
    )
    arrival_unit: str = Field("s", description="Generic formats: s, ms, us, ns or datetime.")
    block_size: int = Field(0, ge=0, description="Generic formats: tokens per hash block.")
    skip_bad_rows: bool = Field(False, description="Skip and count malformed rows.")
    rate_scale: RateScale = Field(1.0, description="Divide arrival times by this factor.")
    start_s: float | None = Field(None, ge=0, description="Window start (s from first row).")
    end_s: float | None = Field(None, gt=0, description="Window end (s from first row).")
    max_context_tokens: int | None = Field(None, ge=2, description="Context limit.")
    over_limit: Literal["cap", "skip", "error"] = Field("cap", description="Over-limit action.")
    normalize_start: bool = Field(True, description="Move the first arrival to t=0.")

    def load(self, max_requests: int | None = None, end_s: float | None = None) -> Any:
        """Read the trace (a ``Trace``)."""
        from servesim.workload.traces import load_trace

        extra: dict[str, Any] = {}
        if self.columns is not None:
            extra = {
                "columns": self.columns,
                "arrival_unit": self.arrival_unit,
                "block_size": self.block_size,
            }
        ends = [e for e in (self.end_s, end_s) if e is not None]
        return load_trace(
            self.path,
            self.format,
            skip_bad_rows=self.skip_bad_rows,
            rate_scale=self.rate_scale,
            start_s=self.start_s,
            end_s=min(ends) if ends else None,
            max_requests=max_requests,
            max_context_tokens=self.max_context_tokens,
            over_limit=self.over_limit,
            normalize_start=self.normalize_start,
            **extra,
        )


class SessionConfig(StrictConfig):
    """Multi-turn conversations: each turn's prompt holds the whole conversation so far."""

    mean_turns: MeanTurns = Field(4.0, description="Mean turns per session (geometric).")
    fixed_turns: bool = Field(False, description="Every session has round(mean_turns) turns.")
    mean_think_time_s: float = Field(
        10.0, ge=0, description="Mean (exponential) gap between a turn's arrival and the next's."
    )
    block_size: int = Field(16, ge=1, description="Tokens per prefix block (vLLM default 16).")
    max_context_tokens: int = Field(
        32768, ge=2, description="A session ends before a turn would exceed this context."
    )
    system_prompt_tokens: TokensOrZero = Field(
        0, description="System prompt opening every session (shared blocks)."
    )
    followup: LengthDist | None = Field(
        None, description="New-input length of turns 2+ (None: the first turn's lengths)."
    )


class GroupConfig(StrictConfig):
    """Parallel sampling: ``group_size`` samples of one prompt arrive together."""

    group_size: GroupSize = Field(2, description="Samples per group (n).")
    group_fraction: float = Field(1.0, ge=0, le=1, description="Fraction of prompts grouped.")


class RequestClassConfig(StrictConfig):
    """One SLO class of a mix (e.g. interactive vs batch)."""

    name: str = Field(min_length=1, description="SLO class name (Request.slo_class).")
    weight: float = Field(gt=0, description="Relative share of requests (or sessions).")
    priority: int = Field(0, description="Request.priority (larger is more urgent).")


class TagsConfig(StrictConfig):
    """SLO classes, tenants and LoRA adapters; a session's turns share them."""

    classes: list[RequestClassConfig] = Field(default_factory=list, description="SLO mix.")
    num_users: int = Field(0, ge=0, description="Tenants (Request.user_id 0..n-1).")
    user_skew: float = Field(0.0, ge=0, description="Zipf exponent over tenants (0: uniform).")
    num_adapters: int = Field(0, ge=0, description="LoRA adapters (0: base model only).")
    adapter_skew: float = Field(0.0, ge=0, description="Zipf exponent over adapters.")
    adapter_fraction: float = Field(1.0, ge=0, le=1, description="Share using an adapter.")

    def options(self) -> TagOptions:
        """The plain options object."""
        from servesim.workload.tags import RequestClass, TagOptions

        classes = tuple(RequestClass(c.name, c.weight, c.priority) for c in self.classes)
        return TagOptions(
            classes,
            self.num_users,
            self.user_skew,
            self.num_adapters,
            self.adapter_skew,
            self.adapter_fraction,
        )


class ClientConfig(StrictConfig):
    """How requests are sent: ``vllm bench serve``'s traffic flags (``servesim.workload.clients``).

    The pacing is the workload's arrival process (``--request-rate inf``: ``immediate``;
    ``--burstiness b``: ``gamma`` with ``cv = 1/sqrt(b)``); this adds the rest.
    """

    max_concurrency: MaxConcurrency | None = Field(
        None, description="At most this many requests in flight (--max-concurrency)."
    )
    num_warmups: NumWarmups = Field(
        0, description="Warm-up copies of the first request, excluded from metrics."
    )
    session_turns: Literal["closed", "open"] = Field(
        "closed",
        description="closed: a session's next turn is sent its think time after the previous "
        "response; open: at the workload's own turn times.",
    )
    ignore_eos: bool = Field(
        True, description="Outputs run to the requested length (vllm's default for random)."
    )
    eos_output: LengthDist | None = Field(
        None,
        description="With ignore_eos false: the model's natural output lengths; each request "
        "generates min(requested, natural).",
    )

    @model_validator(mode="after")
    def _check(self) -> ClientConfig:
        if not self.ignore_eos and self.eos_output is None:
            raise ValueError("ignore_eos false needs eos_output (the natural output lengths)")
        if self.ignore_eos and self.eos_output is not None:
            raise ValueError("eos_output applies only with ignore_eos false")
        return self

    def options(self) -> ClientOptions:
        """The plain options object."""
        return ClientOptions(self.max_concurrency, self.num_warmups, self.session_turns == "closed")


class SharedPrefixConfig(StrictConfig):
    """Groups of prompts sharing a system prompt (inference-perf's ``shared_prefix`` data).

    Defaults are the BLIS V1 dev set's ``codegen`` profile (../shared/data/validation/
    blis_vllm_v1_h100/stages.csv): 10 groups x 10 prompts, 100-token system prompts,
    466-token questions, 247 output tokens.
    """

    num_groups: int = Field(10, ge=1, description="Groups, each with its own system prompt.")
    prompts_per_group: int = Field(10, ge=1, description="Prompts (questions) per group.")
    system_prompt_tokens: TokensOrZero = Field(100, description="Tokens of each system prompt.")
    question_tokens: TokensOrZero = Field(466, description="Tokens of each question.")
    output_tokens: Tokens = Field(247, description="Output tokens per request.")
    block_size: int = Field(16, ge=1, description="Tokens per prefix block (vLLM default 16).")

    def options(self) -> SharedPrefixOptions:
        """The plain options object."""
        from servesim.workload.shared_prefix import SharedPrefixOptions

        return SharedPrefixOptions(
            self.num_groups,
            self.prompts_per_group,
            self.system_prompt_tokens,
            self.question_tokens,
            self.output_tokens,
            self.block_size,
        )
