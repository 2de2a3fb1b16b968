"""``WorkloadConfig``: the user-facing description of a workload (pydantic v2, the boundary).

Arrival processes and length distributions are discriminated unions on ``kind`` (the
registry key). ``WorkloadConfig(...).build(streams)`` returns a lazy ``Workload``. With no
fields set, it is the ``sharegpt-vidur`` preset at its default rate, 1,000 requests.
``client`` says how the requests are sent (``vllm bench serve``'s traffic flags,
``servesim.workload.clients``); ``shared_prefix`` replaces the lengths with the shared-prefix
prompt groups of inference-perf / the BLIS V1 dev set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from servesim.core.domains import (
    DurationS,
    GroupSize,
    MaxConcurrency,
    MeanTurns,
    NumRequests,
    NumWarmups,
    RatePerS,
    RateScale,
    Tokens,
    TokensOrZero,
)
from servesim.core.errors import ConfigError
from servesim.core.rng import RandomStreams
from servesim.workload.arrival_config import (
    ArrivalConfig,
    ImmediateConfig,
    OnOffConfig,
    TimeVaryingConfig,
    TraceArrivalConfig,
    TraceRateConfig,
)
from servesim.workload.arrivals import ConstantArrivals, PoissonArrivals
from servesim.workload.clients import ClientOptions
from servesim.workload.config_base import StrictConfig
from servesim.workload.datasets import EOSStoppedLengths
from servesim.workload.length_config import LengthDist, LengthsConfig, RandomLengthsConfig
from servesim.workload.presets import get_preset
from servesim.workload.sessions import SessionOptions, SessionWorkload
from servesim.workload.shared_prefix import SharedPrefixOptions, SharedPrefixStream
from servesim.workload.tags import RequestClass, TaggedWorkload, TagOptions
from servesim.workload.traces import load_trace
from servesim.workload.workload import GroupOptions, PrefixOptions, SyntheticWorkload, Workload

DEFAULT_PRESET = "sharegpt-vidur"
DEFAULT_NUM_REQUESTS = 1000


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
        return SharedPrefixOptions(
            self.num_groups,
            self.prompts_per_group,
            self.system_prompt_tokens,
            self.question_tokens,
            self.output_tokens,
            self.block_size,
        )


class WorkloadConfig(StrictConfig):
    """A workload: a preset, a trace, or an arrival process plus lengths.

    ``arrival``/``lengths`` override the preset's; a trace with arrivals is replayed as is
    unless ``arrival`` is given (then its rows are replayed at synthetic times); a length-only
    trace needs ``arrival``. With sessions, ``arrival`` gives session starts.
    """

    name: str | None = Field(None, description="Label; defaults to the preset or trace name.")
    preset: str | None = Field(None, description="Preset name (servesim workload list).")
    arrival: ArrivalConfig | None = Field(None, description="Arrival process.")
    lengths: LengthsConfig | None = Field(None, description="Prompt/output length distribution.")
    trace: TraceConfig | None = Field(None, description="Replay a trace file.")
    rate_per_s: RatePerS | None = Field(
        None,
        description="Mean rate: overrides a preset's default rate, rescales a timed trace to "
        "it, or replays a length-only trace as Poisson at it.",
    )
    num_requests: NumRequests | None = Field(None, description="Stop after this many requests.")
    duration_s: DurationS | None = Field(None, description="Stop at this arrival time (s).")
    sessions: SessionConfig | None = Field(None, description="Multi-turn sessions.")
    groups: GroupConfig | None = Field(None, description="Parallel-sampling groups.")
    prefix_block_size: int = Field(
        0, ge=0, description="Give synthetic requests prefix-block ids of this size (0: none)."
    )
    shared_prefix_tokens: TokensOrZero = Field(
        0, description="Leading tokens shared by all synthetic requests (system prompt)."
    )
    tags: TagsConfig | None = Field(None, description="SLO classes, tenants, LoRA adapters.")
    shared_prefix: SharedPrefixConfig | None = Field(
        None, description="Shared-prefix prompt groups (replace preset/lengths)."
    )
    client: ClientConfig | None = Field(
        None, description="How requests are sent (max concurrency, warm-ups, closed sessions)."
    )

    @model_validator(mode="after")
    def _check(self) -> WorkloadConfig:
        if self.trace is not None and self.preset is not None:
            raise ValueError("give either preset or trace, not both")
        if self.shared_prefix is not None and (
            self.preset or self.lengths or self.trace or self.sessions or self.groups
        ):
            raise ValueError("shared_prefix replaces preset, lengths, trace, sessions, groups")
        is_exact = self.trace is not None or self.shared_prefix is not None
        if self.client is not None and not self.client.ignore_eos and is_exact:
            raise ValueError(
                "client.ignore_eos false applies to sampled lengths, not trace or "
                "shared_prefix outputs (those are exact)"
            )
        is_immediate = isinstance(self.arrival, ImmediateConfig)
        if is_immediate and self.num_requests is None and self.duration_s is not None:
            raise ValueError("immediate arrivals (request rate inf) need num_requests")
        if self.trace is not None and (self.sessions or self.groups):
            raise ValueError("sessions/groups apply to synthetic workloads, not trace replay")
        if self.rate_per_s is not None and self.arrival is not None:
            raise ValueError("rate_per_s overrides a preset's rate; set arrival.rate_per_s instead")
        return self

    def with_rate(self, rate_per_s: float) -> WorkloadConfig:
        """A copy whose mean arrival rate is ``rate_per_s`` (what a capacity search varies).

        Sets ``arrival.rate_per_s``; on/off and time-varying rates, and a trace arrival's
        ``rate_scale``, are scaled so the mean is ``rate_per_s``; presets and traces get
        ``rate_per_s`` (a trace's own ``rate_scale`` is then reset to 1).
        """
        if not rate_per_s > 0:
            raise ConfigError("rate_per_s", rate_per_s, "must be > 0")
        data = self.model_dump()
        arrival = self.arrival
        if isinstance(arrival, ImmediateConfig):
            raise ConfigError("arrival", "immediate", "all requests at t=0 have no rate to vary")
        if arrival is None:
            data["rate_per_s"] = rate_per_s
            if data["trace"] is not None:
                data["trace"]["rate_scale"] = 1.0
        elif isinstance(
            arrival, OnOffConfig | TimeVaryingConfig | TraceArrivalConfig | TraceRateConfig
        ):
            factor = rate_per_s / arrival.build().mean_rate_per_s
            if isinstance(arrival, OnOffConfig):
                data["arrival"]["rate_on_per_s"] *= factor
                data["arrival"]["rate_off_per_s"] *= factor
            elif isinstance(arrival, TimeVaryingConfig):
                data["arrival"]["rates_per_s"] = [r * factor for r in arrival.rates_per_s]
            else:  # trace and trace_rate arrivals
                data["arrival"]["rate_scale"] *= factor
        else:
            data["arrival"]["rate_per_s"] = rate_per_s
        return WorkloadConfig.model_validate(data)

    def build(self, streams: RandomStreams) -> Workload:
        """The lazy workload; ``streams`` supplies every random number (``workload.*``)."""
        workload = self._build_trace(streams) if self.trace is not None else self._build(streams)
        if self.tags is not None and self.tags.options().is_active:
            return TaggedWorkload(workload, self.tags.options(), streams)
        return workload

    def _build_shared_prefix(self, streams: RandomStreams) -> Workload:
        assert self.shared_prefix is not None
        if self.arrival is not None:
            arrivals = self.arrival.build()
        elif self.rate_per_s is not None:
            arrivals = ConstantArrivals(self.rate_per_s)  # inference-perf's constant load
        else:
            raise ConfigError("arrival", None, "shared_prefix needs an arrival or rate_per_s")
        num = self.num_requests
        if num is None and self.duration_s is None:
            num = DEFAULT_NUM_REQUESTS
        workload = SharedPrefixStream(
            self.shared_prefix.options(), arrivals, streams, num, self.duration_s
        )
        if self.name:
            workload.name = self.name
        return workload

    def _build(self, streams: RandomStreams) -> Workload:
        if self.shared_prefix is not None:
            return self._build_shared_prefix(streams)
        preset = None
        if self.preset is not None or (self.arrival is None and self.lengths is None):
            preset = get_preset(self.preset or DEFAULT_PRESET)
        if self.arrival is not None:
            arrivals = self.arrival.build()
        elif preset is not None:
            arrivals = preset.arrivals(self.rate_per_s)
        elif self.rate_per_s is not None:
            # a rate alone is a Poisson process, as vllm bench serve's --request-rate (burstiness 1)
            arrivals = PoissonArrivals(self.rate_per_s)
        else:
            raise ConfigError("arrival", None, "needed without a preset or a timed trace")
        if self.lengths is not None:
            lengths = self.lengths.build(streams)
        elif preset is not None:
            lengths = preset.lengths
        else:
            raise ConfigError(
                "lengths",
                None,
                "needed without a preset (CLI: --lengths PRESET or --prompt-lengths)",
            )
        if self.client is not None and self.client.eos_output is not None:
            lengths = EOSStoppedLengths(lengths, self.client.eos_output.build())
        name = self.name or (preset.name if preset else "synthetic")
        if isinstance(self.lengths, RandomLengthsConfig) and self.name is None:
            name = "random"
        num = self.num_requests
        if num is None and self.duration_s is None:
            num = DEFAULT_NUM_REQUESTS
        if self.sessions is not None:
            s = self.sessions
            options = SessionOptions(
                s.mean_turns,
                s.fixed_turns,
                s.mean_think_time_s,
                s.block_size,
                s.max_context_tokens,
                s.system_prompt_tokens,
                s.followup.build() if s.followup is not None else None,
            )
            return SessionWorkload(arrivals, lengths, streams, options, num, self.duration_s, name)
        groups = (
            GroupOptions(self.groups.group_size, self.groups.group_fraction)
            if self.groups
            else None
        )
        shared_tokens = self.shared_prefix_tokens
        if isinstance(self.lengths, RandomLengthsConfig) and not shared_tokens:
            shared_tokens = self.lengths.prefix_len  # vllm's random prefix opens every prompt
        prefix = PrefixOptions(self.prefix_block_size, shared_tokens)
        return SyntheticWorkload(
            arrivals, lengths, streams, num, self.duration_s, groups, prefix, name
        )

    def _build_trace(self, streams: RandomStreams) -> Workload:
        assert self.trace is not None
        trace = self.trace.load(self.num_requests)
        if self.arrival is None and self.rate_per_s is None and not trace.has_arrivals:
            raise ConfigError(
                "arrival", None, f"trace {self.trace.path} has lengths only: give an arrival"
            )
        if self.arrival is None and trace.has_arrivals:
            if self.rate_per_s is not None:
                if self.trace.rate_scale != 1.0:
                    raise ConfigError("rate_per_s", self.rate_per_s, "give it or rate_scale")
                trace.set_mean_rate(self.rate_per_s)
            if self.duration_s is not None:
                trace.cut_after(self.duration_s)
            if self.name:
                trace.name = self.name
            return trace
        # Rows replayed at synthetic times: the given process, or Poisson at rate_per_s.
        arrivals = (
            self.arrival.build() if self.arrival is not None else PoissonArrivals(self.rate_per_s)
        )
        replay = trace.with_arrivals(arrivals, streams, self.num_requests, self.duration_s)
        if self.name:
            replay.name = self.name
        return replay
