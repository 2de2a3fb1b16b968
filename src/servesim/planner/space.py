"""The deployment search space: candidate plans built from the user's hardware and options.

A ``PlanSpec`` is one candidate deployment (GPU type, parallelism, replicas, formats,
scheduler knobs). ``SearchSpace`` holds what the user offers (GPU types and how many of each,
a GPU or dollar budget, dtypes, scheduler variants) and ``enumerate_plans`` expands it into
every combination that divides the model and fits the budget. Disaggregated plans are an
extension point: ``PlanSpec.mode`` is ``"colocated"`` today.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from servesim.cluster import ROUTERS
from servesim.core.errors import ConfigError, UnknownNameError
from servesim.specs.catalog import get_gpu
from servesim.specs.model import ModelSpec


@dataclass(frozen=True, slots=True)
class SchedulerVariant:
    """Scheduler knobs searched over (vLLM's names; see ``engine.config``).

    Attributes:
        kind: scheduler registry key (``vllm``, ``sarathi``).
        max_num_seqs: sequences per batch.
        max_num_batched_tokens: token budget per iteration (None: the scheduler's default).
        enable_chunked_prefill: vLLM V0 chunked prefill; None is vLLM's own default (on
            above a 32K-token context, with a 512-token budget; see ``engine.config``).
    """

    kind: str = "vllm"
    max_num_seqs: int = 256
    max_num_batched_tokens: int | None = None
    enable_chunked_prefill: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``scheduler:`` mapping of a SimConfig."""
        out: dict[str, Any] = {"kind": self.kind, "max_num_seqs": self.max_num_seqs}
        if self.max_num_batched_tokens is not None:
            out["max_num_batched_tokens"] = self.max_num_batched_tokens
        if self.kind == "vllm":
            out["enable_chunked_prefill"] = self.enable_chunked_prefill
        elif self.kind == "sarathi" and self.max_num_batched_tokens is not None:
            out["chunk_size"] = self.max_num_batched_tokens
        return out


@dataclass(frozen=True, slots=True)
class PlanSpec:
    """One candidate deployment.

    Attributes:
        gpu: GPU catalog name.
        tp: tensor-parallel degree.
        pp: pipeline-parallel degree.
        replicas: identical replicas behind a round-robin router.
        dtype: weight format.
        kv_dtype: KV-cache format (None: the engine's default for ``dtype``).
        scheduler: the scheduler knobs.
        mode: ``colocated`` (prefill and decode on the same replicas) or ``disaggregated``
            (``prefill_replicas`` prefill replicas hand KV to ``replicas`` decode replicas,
            DistServe/Splitwise; both pools use the same hardware and formats).
        prefill_replicas: prefill replicas (disaggregated only; 0 when colocated).
        router: entry router (``servesim.cluster.ROUTERS`` name).
    """

    gpu: str
    tp: int = 1
    pp: int = 1
    replicas: int = 1
    dtype: str = "bf16"
    kv_dtype: str | None = None
    scheduler: SchedulerVariant = field(default_factory=SchedulerVariant)
    mode: str = "colocated"
    prefill_replicas: int = 0
    router: str = "round_robin"

    @property
    def num_replicas(self) -> int:
        """Replicas of every role."""
        return self.replicas + self.prefill_replicas

    @property
    def gpus_per_replica(self) -> int:
        """GPUs one replica uses."""
        return self.tp * self.pp

    @property
    def num_gpus(self) -> int:
        """GPUs the whole deployment uses."""
        return self.gpus_per_replica * self.num_replicas

    @property
    def price_per_hour_usd(self) -> float:
        """Rent of every GPU of the deployment for one hour."""
        return get_gpu(self.gpu).price_per_hour_usd * self.num_gpus

    def key(self) -> str:
        """A stable, human-readable identity (the store's plan key)."""
        s = self.scheduler
        parts = [
            self.mode,
            self.gpu,
            f"tp{self.tp}",
            f"pp{self.pp}",
            f"x{self.replicas}" + (f"p{self.prefill_replicas}" if self.prefill_replicas else ""),
            self.dtype,
            f"kv-{self.kv_dtype or 'auto'}",
            s.kind,
            f"seqs{s.max_num_seqs}",
            f"mbt{s.max_num_batched_tokens or 'default'}",
            {True: "chunked", False: "whole", None: "chunk-auto"}[s.enable_chunked_prefill],
        ]
        if self.router != "round_robin":
            parts.append(self.router)
        return "/".join(parts)

    def label(self) -> str:
        """A short label for tables."""
        s = self.scheduler
        if self.mode == "disaggregated":
            text = f"{self.prefill_replicas}P:{self.replicas}D {self.gpu} tp{self.tp}"
        else:
            text = f"{self.replicas}x {self.gpu} tp{self.tp}"
        text += f" pp{self.pp}" if self.pp > 1 else ""
        text += f" {self.dtype}" + (f"/kv-{self.kv_dtype}" if self.kv_dtype else "")
        text += f" {s.kind} seqs={s.max_num_seqs}"
        if s.max_num_batched_tokens is not None:
            text += f" mbt={s.max_num_batched_tokens}"
        text += {True: " chunked", False: " no-chunk", None: ""}[s.enable_chunked_prefill]
        return text + (f" {self.router}" if self.router != "round_robin" else "")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able mapping (stored with the result)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlanSpec:
        """Inverse of ``to_dict``."""
        values = dict(data)
        values["scheduler"] = SchedulerVariant(**values.get("scheduler", {}))
        return cls(**values)


@dataclass(frozen=True, slots=True)
class SearchSpace:
    """What the user offers the planner.

    Attributes:
        gpus: ``(gpu name, GPUs available)`` pairs.
        max_total_gpus: cap on GPUs per deployment (None: the availability only).
        max_price_per_hour_usd: cap on a deployment's rent (None: no cap).
        tp_options: tensor-parallel degrees to try (those not dividing the model are skipped).
        pp_options: pipeline-parallel degrees to try.
        max_replicas: cap on replicas (None: as many as the GPUs allow).
        dtypes: weight formats to try.
        kv_dtypes: KV-cache formats to try (None entry: the default for the weights).
        schedulers: scheduler variants to try.
        disaggregated: also try prefill/decode disaggregation (every P:D split of the
            replica count, same hardware per pool).
        routers: entry routers to try when there is more than one replica to route to.
    """

    gpus: tuple[tuple[str, int], ...]
    max_total_gpus: int | None = None
    max_price_per_hour_usd: float | None = None
    tp_options: tuple[int, ...] = (1, 2, 4, 8)
    pp_options: tuple[int, ...] = (1, 2)
    max_replicas: int | None = None
    dtypes: tuple[str, ...] = ("bf16",)
    kv_dtypes: tuple[str | None, ...] = (None,)
    schedulers: tuple[SchedulerVariant, ...] = (SchedulerVariant(),)
    disaggregated: bool = False
    routers: tuple[str, ...] = ("round_robin",)

    def __post_init__(self) -> None:
        known = ROUTERS.names()
        for router in self.routers:
            if router not in known:
                raise UnknownNameError("router", router, known)
        if not self.gpus:
            raise ConfigError("gpus", "", "give at least one GPU type, e.g. h100-sxm:8")
        for name, count in self.gpus:
            get_gpu(name)  # unknown names fail here, with "did you mean"
            if count < 1:
                raise ConfigError("gpus", f"{name}:{count}", "the count must be >= 1")


def parse_gpus(text: str) -> tuple[tuple[str, int], ...]:
    """Parse ``h100-sxm:8,a100-80gb:4`` into ``(("h100-sxm", 8), ("a100-80gb", 4))``."""
    out: list[tuple[str, int]] = []
    for item in (p.strip() for p in text.split(",") if p.strip()):
        name, _, count = item.partition(":")
        try:
            num = int(count) if count else 1
        except ValueError:
            raise ConfigError("gpus", item, "expected NAME:COUNT, e.g. h100-sxm:8") from None
        out.append((get_gpu(name).name, num))
    if not out:
        raise ConfigError("gpus", text, "expected NAME:COUNT[,NAME:COUNT...]")
    return tuple(out)


def parse_ints(text: str, name: str) -> tuple[int, ...]:
    """Parse ``1,2,4,8`` (a CLI list) into integers; ``name`` is the flag for errors."""
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(name, text, "expected comma-separated integers, e.g. 1,2,4,8") from None


def divides_model(model: ModelSpec, tp: int, pp: int) -> str | None:
    """Why ``tp``/``pp`` cannot split ``model`` (vLLM's checks), or None when they can."""
    if model.num_attention_heads % tp:
        return f"tp={tp} does not divide the {model.num_attention_heads} attention heads"
    kv = model.num_kv_heads
    if model.mla is None and ((tp <= kv and kv % tp) or (tp > kv and tp % kv)):
        return f"tp={tp} neither divides nor is a multiple of the {kv} KV heads"
    if model.ffn_size % tp:
        return f"tp={tp} does not divide the FFN size {model.ffn_size}"
    if pp > model.num_layers:
        return f"pp={pp} exceeds the {model.num_layers} layers"
    return None


def _replica_counts(space: SearchSpace, available: int, per_replica: int) -> range:
    limit = available // per_replica
    if space.max_total_gpus is not None:
        limit = min(limit, space.max_total_gpus // per_replica)
    if space.max_replicas is not None:
        limit = min(limit, space.max_replicas)
    return range(1, limit + 1)


def enumerate_plans(space: SearchSpace, model: ModelSpec) -> Iterator[PlanSpec]:
    """Every plan of ``space`` that fits the GPUs available and the budgets.

    Parallel degrees that do not divide ``model`` are still listed (the pre-filter records
    them as infeasible with vLLM's reason, so nothing disappears silently), but with one
    replica only: more replicas of an impossible replica add nothing. Order is deterministic:
    GPU types as given, then tp, pp, replicas, prefill/decode splits, dtypes, schedulers.
    """
    for gpu, available in space.gpus:
        price = get_gpu(gpu).price_per_hour_usd
        for tp in space.tp_options:
            for pp in space.pp_options:
                if tp * pp > available:
                    continue
                counts = _replica_counts(space, available, tp * pp)
                if divides_model(model, tp, pp) is not None:
                    counts = counts[:1]
                for replicas in counts:
                    cap = space.max_price_per_hour_usd
                    if cap is not None and price * tp * pp * replicas > cap:
                        continue
                    yield from _variants(space, gpu, tp, pp, replicas, 0)
                    if space.disaggregated:
                        for prefill in range(1, replicas):
                            yield from _variants(space, gpu, tp, pp, replicas - prefill, prefill)


def _variants(
    space: SearchSpace, gpu: str, tp: int, pp: int, replicas: int, prefill: int
) -> Iterator[PlanSpec]:
    mode = "disaggregated" if prefill else "colocated"
    # With one replica to route to (colocated x1, or a single prefill replica), routers agree.
    entry_replicas = prefill or replicas
    routers = space.routers if entry_replicas > 1 else space.routers[:1]
    for dtype in space.dtypes:
        for kv_dtype in space.kv_dtypes:
            for sched in space.schedulers:
                for router in routers:
                    yield PlanSpec(
                        gpu, tp, pp, replicas, dtype, kv_dtype, sched, mode, prefill, router
                    )


def scheduler_grid(
    max_num_seqs: Sequence[int] = (256,),
    max_num_batched_tokens: Sequence[int | None] = (None,),
    chunked_prefill: Sequence[bool | None] = (None,),
) -> tuple[SchedulerVariant, ...]:
    """vLLM scheduler variants: every combination of the given knob values."""
    return tuple(
        SchedulerVariant("vllm", seqs, mbt, chunked)
        for seqs in max_num_seqs
        for mbt in max_num_batched_tokens
        for chunked in chunked_prefill
        # Without chunked prefill the budget must hold a whole prompt and vLLM's default
        # rule sets its own, so only explicitly chunked variants vary the budget.
        if chunked is True or mbt is None
    )
