"""CPU-GPU hybrid execution: the split of each iteration's decodes between GPU and host CPU.

On memory-constrained GPUs (T4, A10, L4) the weights leave little room for KV, so GPU-only
serving runs small batches of a weight-bandwidth-bound decode. Hybrid engines (APEX, Fan et
al. 2025; NEO, Jiang et al. 2025; FastDecode) keep the KV of some sequences in host memory
and run their decode attention on the CPU, overlapped with the GPU's work:

- the KV pool is the GPU's blocks plus ``HybridConfig.host_kv_bytes`` of host blocks; each
  iteration the CPU attends at least the decodes whose KV the GPU cannot hold;
- the GPU runs every layer's GEMMs for all sequences and the attention of its own decodes
  (the perf model prices that shape: the CPU decodes' contexts leave its attention);
- the CPU reads its decodes' KV at its effective bandwidth (``servesim.perf.cpu``);
- per layer, the CPU decodes' q/k/v go to the host and their attention output comes back
  over the GPU's host link.

With the two sub-batches pipelined (APEX's and NEO's asymmetric pipelining), an iteration
takes ``max(GPU part, CPU part) + host-link transfers + KV moves``. A policy picks how many
decodes the CPU attends: ``apex`` the most for which the CPU part stays under the GPU part
(APEX's overlap rule, against the GPU's decode part: the host set outlives the step, so
a step's prefill chunks do not size it), ``fixed`` a fraction of them.

Which decodes: the executor remembers whose KV is in host memory (by sequence id). The ones
already there are taken first, longest KV first, then the GPU's from the end of the batch's
decode list (the latest to start decoding, the shortest KV); when the CPU takes fewer than
it holds, the shortest go back first, and under ``apex`` only once the CPU's overrun since
it stopped fitting would pay for the copy (ski rental). So a sequence changes side only when
the count does, and the cheapest KV moves. A sequence that changes side moves its whole KV
(its pool blocks) over the host link, one copy stream per direction (PCIe is full duplex;
the catalog's bandwidth is per direction): ``max(to host, to GPU) / bandwidth + latency``,
added to the step (not overlapped with its compute: an upper bound). A new decode whose
prefill ran on the GPU pays its move to the host too. Prefill stays on the GPU: the hybrid
APEX policy offloads decode attention only (docs PAPERS.md #55), so no prefill offload.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace

from servesim.core.errors import ConfigError
from servesim.engine.config import HybridConfig
from servesim.perf.cpu import cpu_decode_attention, host_link_transfer_s, kv_move_s
from servesim.perf.kv_groups import kv_layout, page_bytes_per_token
from servesim.perf.kv_layout import KVLayout
from servesim.perf.types import BatchShape, ReplicaPlan, StageTimes
from servesim.specs.catalog.cpus import get_cpu


@dataclass(frozen=True, slots=True)
class HybridStep:
    """One iteration's split and its parts.

    Attributes:
        num_cpu_decodes: decodes whose attention the CPU ran.
        gpu: the GPU's part (its stage time excludes the CPU decodes' attention).
        cpu_s: the CPU's attention time.
        transfer_s: the q/k/v and output copies over the host link, all layers.
        times: the iteration as the engine books it.
        num_moved: sequences whose KV crossed the host link because they changed side.
        move_s: the time of those KV copies (part of ``times``).
    """

    num_cpu_decodes: int
    gpu: StageTimes
    cpu_s: float
    transfer_s: float
    times: StageTimes
    num_moved: int = 0
    move_s: float = 0.0


class HybridExecutor:
    """Prices hybrid iterations of one single-GPU replica and picks their split."""

    def __init__(self, config: HybridConfig, plan: ReplicaPlan, block_size: int) -> None:
        if plan.num_gpus != 1:
            raise ConfigError(
                "hybrid", f"{plan.num_gpus} GPUs", "hybrid execution models single-GPU replicas"
            )
        self.config = config
        self.plan = plan
        self.cpu = get_cpu(config.cpu)
        self.block_size = block_size
        self.num_gpu_blocks = 0  # set by the replica once its GPU pool is known
        # The GPU's decode-only part of the last step with decodes (its prefill chunks
        # left out): how long the CPU may work on host KV unseen (admission "overlap").
        self.last_decode_gpu_s = 0.0
        # pool blocks are pages of the KV cache groups (perf/kv_layout.py)
        self.layout = kv_layout(plan, block_size)
        kv_bytes_per_block = block_size * plan.model.kv_bytes_per_token(plan.kv_dtype)
        if not self.layout.plain:
            kv_bytes_per_block = block_size * page_bytes_per_token(plan, 0, block_size)
        self.cpu_s_per_block = self._cpu_s_per_block(kv_bytes_per_block)
        self.kv_bytes_per_block = kv_bytes_per_block
        # ids of the sequences whose KV is in host memory after the last step with decodes
        self.cpu_side: frozenset[Hashable] = frozenset()
        # overrun paid since the host set stopped fitting under the GPU part (ski rental)
        self.overrun_s = 0.0

    def _cpu_s_per_block(self, kv_bytes_per_block: float) -> float:
        """CPU attention seconds per KV block (bandwidth term; the FLOP term is far below)."""
        cfg = self.config
        bandwidth = self.cpu.memory_bandwidth_bytes_per_s * cfg.bandwidth_efficiency
        return kv_bytes_per_block / (bandwidth * cfg.num_sockets)

    def can_admit(self, num_used_blocks_after: int, num_running: int) -> bool:
        """Admission ``overlap``: True while the blocks beyond the GPU's, after admitting,
        are ones the CPU attends within the GPU's last decode part (always True under
        ``memory``, and for a first request so an idle engine never stalls)."""
        if self.config.admission == "memory" or num_running == 0:
            return True
        num_host = num_used_blocks_after - self.num_gpu_blocks
        return num_host <= 0 or num_host * self.cpu_s_per_block <= self.last_decode_gpu_s

    def num_host_blocks(self, block_bytes: int) -> int:
        """KV blocks the host memory given to KV holds."""
        return int(self.config.host_kv_bytes // block_bytes) if block_bytes > 0 else 0

    def cpu_s(self, context_tokens: int) -> float:
        """The CPU's decode-attention time over ``context_tokens`` keys (all its sockets)."""
        cfg = self.config
        cost = cpu_decode_attention(
            self.cpu,
            self.plan.model,
            self.plan.kv_dtype,
            context_tokens,
            bandwidth_efficiency=cfg.bandwidth_efficiency,
            flop_efficiency=cfg.flop_efficiency,
        )
        return cost.time_s / cfg.num_sockets

    def transfer_s(self, num_cpu_decodes: int) -> float:
        """Host-link time of the CPU decodes' per-layer activations."""
        plan = self.plan
        return host_link_transfer_s(
            plan.model, plan.activation_dtype, num_cpu_decodes, plan.gpu.host_link
        )

    def step(
        self,
        shape: BatchShape,
        contexts: Sequence[int],
        num_used_blocks: int,
        perf: Callable[[BatchShape], StageTimes],
        seq_ids: Sequence[Hashable] | None = None,
    ) -> HybridStep:
        """The split and time of an iteration of ``shape`` whose decodes attend ``contexts``
        (in the batch's decode order), with ``num_used_blocks`` of the pool in use.

        ``seq_ids`` (the decodes' ids, in the same order) let the executor keep the CPU set
        across steps and charge the KV of the sequences that change side; without them every
        step splits afresh and moves are free (the split alone, as unit tests price it).
        """
        order, num_resident = self._order(contexts, seq_ids)
        ordered = [contexts[i] for i in order]
        split = _Split(ordered, self.layout, shape, perf)
        n_min = split.min_cpu(num_used_blocks - self.num_gpu_blocks)
        n = max(n_min, self._policy_n(split, n_min, num_resident))
        gpu = split.gpu(n)
        if contexts:
            self.last_decode_gpu_s = split.gpu(n, decode_only=True).stage_s[0]
        num_moved, move_s = self._moves(order, ordered, seq_ids, n)
        cpu_s = self.cpu_s(split.cpu_context(n))
        transfer_s = self.transfer_s(n)
        if n == 0 and num_moved == 0:
            return HybridStep(0, gpu, 0.0, 0.0, gpu)
        stage_s = max(gpu.stage_s[0], cpu_s) + transfer_s + move_s
        times = replace(gpu, stage_s=(stage_s,))
        return HybridStep(n, gpu, cpu_s, transfer_s, times, num_moved, move_s)

    def _order(
        self, contexts: Sequence[int], seq_ids: Sequence[Hashable] | None
    ) -> tuple[list[int], int]:
        """Decode indices with the host-resident ones last, shortest first (the CPU takes a
        suffix: the longest host KV stays, the GPU's latest decodes join next), and how
        many are host-resident."""
        plain = list(range(len(contexts)))
        if seq_ids is None or not self.cpu_side:
            return plain, 0
        on_cpu = [i for i, sid in enumerate(seq_ids) if sid in self.cpu_side]
        if not on_cpu:
            return plain, 0
        on_gpu = [i for i, sid in enumerate(seq_ids) if sid not in self.cpu_side]
        return on_gpu + sorted(on_cpu, key=lambda i: (contexts[i], i)), len(on_cpu)

    def _moves(
        self,
        order: Sequence[int],
        ordered: Sequence[int],
        seq_ids: Sequence[Hashable] | None,
        n: int,
    ) -> tuple[int, float]:
        """(sequences moved, seconds) for the CPU taking the last ``n`` of ``order``; records
        the new CPU set. A step without decodes changes no side."""
        if seq_ids is None or not order:
            return 0, 0.0
        first_cpu = len(order) - n
        moved = [0.0, 0.0]  # KV bytes to the GPU, to the host
        num_moved = 0
        for j, i in enumerate(order):
            is_cpu = j >= first_cpu
            if is_cpu != (seq_ids[i] in self.cpu_side):
                moved[is_cpu] += self.layout.pages(ordered[j]) * self.kv_bytes_per_block
                num_moved += 1
        self.cpu_side = frozenset(seq_ids[i] for i in order[first_cpu:])
        return num_moved, kv_move_s(moved[1], moved[0], self.plan.gpu.host_link)

    def _policy_n(self, split: _Split, n_min: int, num_resident: int = 0) -> int:
        num = len(split.contexts)
        if self.config.policy == "fixed":
            return math.floor(self.config.cpu_fraction * num)
        n = self._apex_n(split, n_min)
        if n < num_resident:
            return self._keep_or_shrink(split, n, num_resident)
        self.overrun_s = 0.0
        return n

    def _apex_n(self, split: _Split, n_min: int) -> int:
        """APEX's overlap rule: the CPU part grows and the GPU part shrinks with n; the
        largest n whose CPU part still fits under the GPU part (binary search: O(log n)
        perf calls)."""
        lo, hi = n_min, len(split.contexts)
        if not self._fits(split, lo):
            return n_min
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._fits(split, mid):
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _keep_or_shrink(self, split: _Split, n: int, num_resident: int) -> int:
        """The overlap rule would send ``num_resident - n`` host KVs back to the GPU: a copy
        paid once, against the CPU's overrun, paid every step the set is kept. Ski rental
        (Karlin, Manasse, Rudolph & Sleator, 1988: the deterministic rule within 2x of the
        best in hindsight): keep the host set until the overrun paid since it began would
        reach the copy's time, then shrink (A10 example at 0.5 req/s: 677 -> 485 KV moves)."""
        back_blocks = split.suffix_blocks[num_resident] - split.suffix_blocks[n]
        link = self.plan.gpu.host_link
        move_s = kv_move_s(0.0, back_blocks * self.kv_bytes_per_block, link)
        overrun_s = self.overrun_s + self._step_s(split, num_resident) - self._step_s(split, n)
        if overrun_s < move_s:
            self.overrun_s = overrun_s
            return num_resident
        self.overrun_s = 0.0
        return n

    def _step_s(self, split: _Split, n: int) -> float:
        """The step's time with the CPU on the last ``n`` decodes, before KV moves."""
        cpu_s = self.cpu_s(split.cpu_context(n))
        return max(split.gpu(n).stage_s[0], cpu_s) + self.transfer_s(n)

    def _fits(self, split: _Split, n: int) -> bool:
        # against the GPU's decode part: the host set outlives this step, and a step's
        # prefill chunks would size it for one step (it then shrinks back at a KV copy each)
        return self.cpu_s(split.cpu_context(n)) <= split.gpu(n, decode_only=True).stage_s[0]


class _Split:
    """Prefix/suffix aggregates of one batch's decode contexts (the CPU takes a suffix)."""

    __slots__ = (
        "contexts",
        "perf",
        "prefix_max",
        "shape",
        "suffix_blocks",
        "suffix_ctx",
    )

    def __init__(
        self,
        contexts: Sequence[int],
        layout: KVLayout,
        shape: BatchShape,
        perf: Callable[[BatchShape], StageTimes],
    ) -> None:
        self.contexts = contexts
        self.shape = shape
        self.perf = perf
        num = len(contexts)
        # suffix_*[n]: the last n decodes; prefix_max[k]: the longest of the first k
        self.suffix_ctx = [0] * (num + 1)
        self.suffix_blocks = [0] * (num + 1)
        for n in range(1, num + 1):
            ctx = contexts[num - n]
            self.suffix_ctx[n] = self.suffix_ctx[n - 1] + ctx
            self.suffix_blocks[n] = self.suffix_blocks[n - 1] + layout.pages(ctx)
        self.prefix_max = [0] * (num + 1)
        for k in range(1, num + 1):
            self.prefix_max[k] = max(self.prefix_max[k - 1], contexts[k - 1])

    def min_cpu(self, num_excess_blocks: int) -> int:
        """Fewest decodes (from the end) whose blocks cover the GPU's excess (all of them
        when even that falls short: prefill KV over the GPU's share is not modelled)."""
        if num_excess_blocks <= 0:
            return 0
        for n, blocks in enumerate(self.suffix_blocks):
            if blocks >= num_excess_blocks:
                return n
        return len(self.contexts)

    def cpu_context(self, n: int) -> int:
        """Keys the CPU attends when it takes the last ``n`` decodes."""
        return self.suffix_ctx[n]

    def gpu(self, n: int, *, decode_only: bool = False) -> StageTimes:
        """The GPU's part: every token through the GEMMs, attention for the first decodes
        (``decode_only``: without the step's prefill chunks)."""
        shape = (
            BatchShape(
                num_decode_seqs=self.shape.num_decode_seqs,
                decode_context_tokens=self.shape.decode_context_tokens,
                max_decode_context_tokens=self.shape.max_decode_context_tokens,
            )
            if decode_only
            else self.shape
        )
        if n == 0:
            return self.perf(shape)
        shape = replace(
            shape,
            decode_context_tokens=shape.decode_context_tokens - self.suffix_ctx[n],
            max_decode_context_tokens=self.prefix_max[len(self.contexts) - n],
        )
        return self.perf(shape)
