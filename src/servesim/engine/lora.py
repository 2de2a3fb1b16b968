"""``AdapterCache``: a replica's GPU LoRA slots, backed by host memory (S-LoRA / vLLM).

Every adapter lives in host memory; ``max_loras`` of them fit in GPU slots (vLLM reserves
that many slots of the largest rank at start-up, so the KV pool shrinks by them). An
adapter used by a running request is pinned; loading another evicts the least recently used
unpinned adapter and copies the new one over the host link (PCIe) before the step that
admits the request: ``bytes / tp / host bandwidth + latency`` (each GPU loads its TP slice
in parallel). A request whose adapter cannot get a slot (all pinned) waits, and the
scheduler admits others behind it (vLLM's scheduler skips such requests; ``max_loras``
bounds the distinct adapters in a batch). The batched LoRA products are priced by
``servesim.perf.lora.sgmv_cost`` over the step's tokens and distinct adapters.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from servesim.core.errors import ServesimError
from servesim.engine.config import LoRAConfig
from servesim.engine.sequence import Seq
from servesim.perf.lora import LoRACost, adapter_bytes, peak_16bit_flops, sgmv_cost
from servesim.perf.types import ReplicaPlan


class AdapterCache:
    """GPU adapter slots of one replica, LRU over unpinned adapters."""

    def __init__(self, config: LoRAConfig, plan: ReplicaPlan) -> None:
        self.config = config
        self.plan = plan
        self.num_slots = config.max_loras
        link = plan.gpu.host_link
        self.host_bytes_per_s = link.bandwidth_bytes_per_s
        self.host_latency_s = link.latency_s
        self.tp = max(plan.tp, 1) * max(plan.pp, 1)  # GPUs holding a slice of each adapter
        # adapter -> running requests using it, oldest use first
        self.slots: OrderedDict[str, int] = OrderedDict()
        self.num_loads_step = 0  # loads decided in the current scheduling step
        self.load_bytes_step = 0
        self.num_loads = 0
        self.load_bytes = 0

    # ---- facts ---------------------------------------------------------------------------
    def rank(self, adapter: str) -> int:
        """Rank of ``adapter`` (``rank_by_adapter``, else the config's rank)."""
        return self.config.rank_by_adapter.get(adapter, self.config.rank)

    def bytes_of(self, adapter: str) -> int:
        """Bytes of ``adapter`` (all GPUs together)."""
        return adapter_bytes(self.plan.model, self.rank(adapter), self.config.target_modules)

    def slot_bytes_per_gpu(self) -> float:
        """GPU memory the slots reserve per GPU (every slot sized for the largest rank)."""
        ranks = [self.config.rank, *self.config.rank_by_adapter.values()]
        one = adapter_bytes(self.plan.model, max(ranks), self.config.target_modules)
        return self.num_slots * one / self.tp

    def load_time_s(self, num_bytes: int, num_loads: int) -> float:
        """Host -> GPU copy time of ``num_loads`` adapters of ``num_bytes`` in all."""
        if not num_loads:
            return 0.0
        bw = self.host_bytes_per_s
        return (num_bytes / self.tp / bw if bw > 0 else 0.0) + self.host_latency_s

    def resident(self) -> frozenset[str]:
        """Adapters in GPU slots now."""
        return frozenset(self.slots)

    # ---- pinning -------------------------------------------------------------------------
    def can_acquire(self, adapter: str | None) -> bool:
        """True when ``adapter`` is resident or a slot is free or evictable."""
        if adapter is None or adapter in self.slots or len(self.slots) < self.num_slots:
            return True
        return any(n == 0 for n in self.slots.values())

    def acquire(self, adapter: str) -> None:
        """Pin ``adapter`` for one more running request, loading it if needed (caller checked
        ``can_acquire``)."""
        slots = self.slots
        if adapter in slots:
            slots[adapter] += 1
            slots.move_to_end(adapter)
            return
        if len(slots) >= self.num_slots:
            victim = next((a for a, n in slots.items() if n == 0), None)
            if victim is None:
                raise ServesimError(
                    f"LoRA adapter {adapter!r} admitted with all {self.num_slots} GPU slots "
                    "pinned by running requests (a scheduler must check state.can_pin(seq) "
                    "before state.admit)"
                )
            del slots[victim]
        slots[adapter] = 1
        num_bytes = self.bytes_of(adapter)
        self.num_loads_step += 1
        self.load_bytes_step += num_bytes
        self.num_loads += 1
        self.load_bytes += num_bytes

    def release(self, adapter: str) -> None:
        """Unpin ``adapter`` for one request that left the GPU."""
        self.slots[adapter] -= 1

    def take_step_loads(self) -> tuple[int, int]:
        """(loads, bytes) decided since the last call; resets them."""
        loads = (self.num_loads_step, self.load_bytes_step)
        self.num_loads_step = self.load_bytes_step = 0
        return loads

    # ---- kernel cost ---------------------------------------------------------------------
    def batch_cost(self, entries: Iterable[tuple[Seq, int]]) -> LoRACost:
        """SGMV cost of a step computing ``(sequence, tokens)`` entries."""
        tokens_by_rank: dict[int, int] = {}
        seen: dict[str, int] = {}
        for seq, tokens in entries:
            adapter = seq.request.adapter_id
            if adapter is None:
                continue
            rank = seen.get(adapter)
            if rank is None:
                rank = seen[adapter] = self.rank(adapter)
            tokens_by_rank[rank] = tokens_by_rank.get(rank, 0) + tokens
        if not seen:
            return LoRACost(0.0, 0.0, 0.0)
        adapters_by_rank: dict[int, int] = {}
        for rank in seen.values():
            adapters_by_rank[rank] = adapters_by_rank.get(rank, 0) + 1
        gpu = self.plan.gpu
        return sgmv_cost(
            self.plan.model,
            tp=max(self.plan.tp, 1),  # all layers on one TP group; the engine splits by stage
            peak_flops_per_s=peak_16bit_flops(gpu.peak_flops_per_s),
            hbm_bytes_per_s=gpu.hbm_bandwidth_bytes_per_s,
            modules=self.config.target_modules,
            tokens_by_rank=tokens_by_rank,
            adapters_by_rank=adapters_by_rank,
        )
