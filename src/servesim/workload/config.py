"""``WorkloadConfig``: the user-facing description of a workload (pydantic v2, the boundary).

Arrival processes and length distributions are discriminated unions on ``kind`` (the
registry key). ``WorkloadConfig(...).build(streams)`` returns a lazy ``Workload``. With no
fields set, it is the ``sharegpt-vidur`` preset at its default rate, 1,000 requests.
``client`` says how the requests are sent (``vllm bench serve``'s traffic flags,
``servesim.workload.clients``); ``shared_prefix`` replaces the lengths with the shared-prefix
prompt groups of inference-perf / the BLIS V1 dev set.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from servesim.core.domains import (
    DurationS,
    NumRequests,
    RatePerS,
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
from servesim.workload.arrivals import ArrivalProcess, ConstantArrivals, PoissonArrivals
from servesim.workload.config_base import StrictConfig
from servesim.workload.config_parts import (
    ClientConfig,
    GroupConfig,
    SessionConfig,
    SharedPrefixConfig,
    TagsConfig,
    TraceConfig,
)
from servesim.workload.datasets import EOSStoppedLengths
from servesim.workload.length_config import LengthsConfig, RandomLengthsConfig
from servesim.workload.lengths import LengthSampler
from servesim.workload.presets import get_preset
from servesim.workload.workload import GroupOptions, PrefixOptions, SyntheticWorkload, Workload

# Sessions, tags, shared prefixes and traces are imported where a workload uses them, so a
# plain preset run (``servesim simulate``) does not load (or, uncached, compile) them.

DEFAULT_PRESET = "sharegpt-vidur"
DEFAULT_NUM_REQUESTS = 1000


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
            from servesim.workload.tags import TaggedWorkload

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
        from servesim.workload.shared_prefix import SharedPrefixStream

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
            return self._build_sessions(arrivals, lengths, streams, num, name)
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

    def _build_sessions(
        self,
        arrivals: ArrivalProcess,
        lengths: LengthSampler,
        streams: RandomStreams,
        num: int | None,
        name: str,
    ) -> Workload:
        from servesim.workload.sessions import SessionOptions, SessionWorkload

        s = self.sessions
        assert s is not None
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
