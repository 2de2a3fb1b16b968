"""One candidate deployment: ``PlanSpec`` and its ``SchedulerVariant`` knobs.

A ``PlanSpec`` names the hardware (GPU type, TP/PP/EP degrees, replicas), the formats and
the scheduler knobs of one deployment, colocated or disaggregated (DistServe/Splitwise);
its key, label, dict form and rent are what the store, the tables and the ranking use.
``servesim.planner.space`` builds these from the user's search space.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from servesim.core.errors import ConfigError
from servesim.specs.catalog import get_gpu

# Replica placements of disaggregated plans (``PlanSpec.placement``).
PLACEMENTS = ("pack", "spread")
# vLLM's default all2all backend (``vllm/envs.py`` VLLM_ALL2ALL_BACKEND; ``--all2all-backend``)
DEFAULT_ALL2ALL = "allgather_reducescatter"


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
            DistServe/Splitwise). ``gpu``/``tp`` are then the decode pool's hardware.
        prefill_replicas: prefill replicas (disaggregated only; 0 when colocated).
        router: entry router (``servesim.cluster.ROUTERS`` name).
        ep: expert-parallel degree of MoE layers (1: experts split by TP), every pool.
        prefill_gpu: the prefill pool's GPU type (None: ``gpu``; disaggregated only).
        prefill_tp: the prefill pool's TP degree (None: ``tp``; disaggregated only).
        prefill_pp: the prefill pool's PP degree (None: ``pp``; disaggregated only).
        prefill_dtype: the prefill pool's weight format (None: ``dtype``).
        prefill_scheduler: the prefill pool's scheduler knobs (None: ``scheduler``); the KV
            format is shared (the decode pool receives the prefill pool's KV as it is).
        placement: where a disaggregated plan's replicas sit (``PLACEMENTS``): ``pack``
            fills each server before the next, so pools that fit share a server and hand KV
            over NVLink; ``spread`` gives every replica its own server, so every handoff
            crosses the inter-node network.
        network: the inter-node network of the plan's servers (``specs.cluster`` name; None:
            the usual one for the GPU).
        dp_attention: data-parallel-attention ranks per replica (colocated MoE plans; 1:
            none): each replica is ``dp_attention`` lockstep ranks of ``tp`` GPUs sharing the
            experts over ``ep = tp x dp_attention`` GPUs (``engine.dp_group``).
        all2all: how a DP-attention group's tokens reach the experts (vLLM's all2all
            backend, ``perf.dp_cost.ALL2ALL_BACKENDS``; DP-attention plans only).
        dense_mlp: where a DP-attention group runs the model's dense MLP layers (the
            attention/FFN split inside a replica: ``cluster`` pool ``dense_mlp``; ``auto``:
            the engine's).
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
    ep: int = 1
    prefill_gpu: str | None = None
    prefill_tp: int | None = None
    prefill_pp: int | None = None
    prefill_dtype: str | None = None
    prefill_scheduler: SchedulerVariant | None = None
    placement: str = "pack"
    network: str | None = None
    dp_attention: int = 1
    all2all: str = DEFAULT_ALL2ALL
    dense_mlp: str = "auto"

    def __post_init__(self) -> None:
        if self.mode != "disaggregated":
            for name in ("prefill_gpu", "prefill_tp", "prefill_pp", "prefill_dtype"):
                if getattr(self, name) is not None:
                    raise ConfigError(
                        name, getattr(self, name), "only disaggregated plans have one"
                    )
            if self.prefill_scheduler is not None:
                raise ConfigError("prefill_scheduler", "", "only disaggregated plans have one")
        if self.dp_attention > 1 and (self.mode != "colocated" or self.pp != 1):
            raise ConfigError("dp_attention", self.dp_attention, "needs a colocated plan with pp=1")
        if self.all2all != DEFAULT_ALL2ALL and self.dp_attention == 1:
            raise ConfigError("all2all", self.all2all, "only DP-attention plans have one")
        if self.dense_mlp != "auto" and self.dp_attention == 1:
            raise ConfigError("dense_mlp", self.dense_mlp, "only DP-attention plans have one")
        if self.placement not in PLACEMENTS:
            raise ConfigError("placement", self.placement, f"must be one of {PLACEMENTS}")

    @property
    def num_replicas(self) -> int:
        """Replicas of every role."""
        return self.replicas + self.prefill_replicas

    @property
    def gpus_per_replica(self) -> int:
        """GPUs one (decode or unified) replica uses (all ranks of a DP-attention group)."""
        return self.tp * self.pp * self.dp_attention

    @property
    def prefill_pool_gpu(self) -> str:
        """GPU type of the prefill pool (``gpu`` unless it has its own)."""
        return self.prefill_gpu or self.gpu

    @property
    def prefill_pool_tp(self) -> int:
        """TP degree of the prefill pool (``tp`` unless it has its own)."""
        return self.prefill_tp or self.tp

    @property
    def prefill_pool_pp(self) -> int:
        """PP degree of the prefill pool (``pp`` unless it has its own)."""
        return self.prefill_pp or self.pp

    @property
    def per_phase(self) -> bool:
        """True when the prefill pool differs from the decode pool (hardware, PP, weight
        format or scheduler knobs)."""
        return (self.prefill_pool_gpu, self.prefill_pool_tp) != (self.gpu, self.tp) or (
            (self.prefill_pp, self.prefill_dtype, self.prefill_scheduler) != (None, None, None)
        )

    @property
    def num_gpus(self) -> int:
        """GPUs the whole deployment uses."""
        prefill = self.prefill_pool_pp * self.prefill_pool_tp * self.prefill_replicas
        return self.gpus_per_replica * self.replicas + prefill

    def gpus_by_type(self) -> dict[str, int]:
        """GPUs of each type the deployment uses."""
        out = {self.gpu: self.gpus_per_replica * self.replicas}
        prefill = self.prefill_pool_tp * self.prefill_pool_pp * self.prefill_replicas
        if prefill:
            out[self.prefill_pool_gpu] = out.get(self.prefill_pool_gpu, 0) + prefill
        return out

    @property
    def price_per_hour_usd(self) -> float:
        """Rent of every GPU of the deployment for one hour."""
        return sum(get_gpu(g).price_per_hour_usd * n for g, n in self.gpus_by_type().items())

    @property
    def tdp_w(self) -> float:
        """Board power (TDP) of every GPU of the deployment, in watts."""
        return sum(get_gpu(g).tdp_w * n for g, n in self.gpus_by_type().items())

    def phase(self, role: str) -> PlanSpec:
        """One pool as a colocated plan: ``prefill`` or ``decode`` (``unified`` for colocated).

        Its hardware, formats and scheduler are the pool's and ``replicas`` its replica
        count; the analytical pre-filter and the deployment builder work per pool with it.
        """
        own: dict[str, Any] = {}
        if role == "prefill":
            own = {
                "gpu": self.prefill_pool_gpu,
                "tp": self.prefill_pool_tp,
                "pp": self.prefill_pool_pp,
                "dtype": self.prefill_dtype or self.dtype,
                "scheduler": self.prefill_scheduler or self.scheduler,
                "replicas": self.prefill_replicas,
            }
        return replace(
            self,
            **own,
            mode="colocated",
            prefill_replicas=0,
            prefill_gpu=None,
            prefill_tp=None,
            prefill_pp=None,
            prefill_dtype=None,
            prefill_scheduler=None,
            placement="pack",
            # a colocated plan's own servers (a DP-attention group wider than one server)
            network=self.network if self.mode == "colocated" else None,
        )

    def key(self) -> str:
        """A stable, human-readable identity (the store's plan key)."""
        s = self.scheduler
        parts = [
            self.mode,
            self.gpu,
            f"tp{self.tp}",
            f"pp{self.pp}",
            *([f"ep{self.ep}"] if self.ep > 1 else []),
            *([f"pre-{self.prefill_pool_gpu}-tp{self.prefill_pool_tp}"] if self.per_phase else []),
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
        parts.extend(self._extra_key_parts())
        return "/".join(parts)

    def _extra_key_parts(self) -> list[str]:
        """Key parts of the per-phase knobs and placement (absent at their defaults, so the
        keys of plans without them, e.g. in an older store, are unchanged)."""
        parts = []
        if self.prefill_pp is not None:
            parts.append(f"pre-pp{self.prefill_pp}")
        if self.prefill_dtype is not None:
            parts.append(f"pre-{self.prefill_dtype}")
        if self.prefill_scheduler is not None:
            p = self.prefill_scheduler
            chunk = {True: "chunked", False: "whole", None: "chunk-auto"}
            parts.append(
                f"pre-{p.kind}-seqs{p.max_num_seqs}-mbt{p.max_num_batched_tokens or 'default'}"
                f"-{chunk[p.enable_chunked_prefill]}"
            )
        if self.placement != "pack":
            parts.append(self.placement)
        if self.network is not None:
            parts.append(f"net-{self.network}")
        if self.dp_attention > 1:
            parts.append(f"dp{self.dp_attention}")
        if self.all2all != DEFAULT_ALL2ALL:
            parts.append(f"a2a-{self.all2all}")
        if self.dense_mlp != "auto":
            parts.append(f"dense-{self.dense_mlp}")
        return parts

    def label(self) -> str:
        """A short label for tables."""
        s = self.scheduler
        if self.mode == "disaggregated" and self.per_phase:
            text = (
                f"{self.prefill_replicas}P {self.prefill_pool_gpu} tp{self.prefill_pool_tp}"
                f"{self._prefill_label()} : {self.replicas}D {self.gpu} tp{self.tp}"
            )
        elif self.mode == "disaggregated":
            text = f"{self.prefill_replicas}P:{self.replicas}D {self.gpu} tp{self.tp}"
        else:
            text = f"{self.replicas}x {self.gpu} tp{self.tp}"
        text += f" pp{self.pp}" if self.pp > 1 else ""
        text += f" dp{self.dp_attention}" if self.dp_attention > 1 else ""
        text += f" ep{self.ep}" if self.ep > 1 else ""
        text += f" {self.all2all}" if self.all2all != DEFAULT_ALL2ALL else ""
        text += f" dense-{self.dense_mlp}" if self.dense_mlp != "auto" else ""
        text += f" {self.dtype}" + (f"/kv-{self.kv_dtype}" if self.kv_dtype else "")
        text += f" {s.kind} seqs={s.max_num_seqs}" + _scheduler_label(s)
        text += f" {self.placement}" if self.placement != "pack" else ""
        text += f" {self.network}" if self.network is not None else ""
        return text + (f" {self.router}" if self.router != "round_robin" else "")

    def _prefill_label(self) -> str:
        """The prefill pool's own PP, format and scheduler knobs (what differs)."""
        text = f" pp{self.prefill_pp}" if self.prefill_pp is not None else ""
        text += f" {self.prefill_dtype}" if self.prefill_dtype is not None else ""
        p = self.prefill_scheduler
        if p is not None:
            text += f" seqs={p.max_num_seqs}" + _scheduler_label(p)
        return text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able mapping (stored with the result)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlanSpec:
        """Inverse of ``to_dict``."""
        values = dict(data)
        values["scheduler"] = SchedulerVariant(**values.get("scheduler", {}))
        if values.get("prefill_scheduler") is not None:
            values["prefill_scheduler"] = SchedulerVariant(**values["prefill_scheduler"])
        return cls(**values)


def _scheduler_label(s: SchedulerVariant) -> str:
    text = f" mbt={s.max_num_batched_tokens}" if s.max_num_batched_tokens is not None else ""
    return text + {True: " chunked", False: " no-chunk", None: ""}[s.enable_chunked_prefill]
