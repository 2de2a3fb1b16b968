"""Data passed between the engine and the perf model: batch shapes in, stage times out.

These types are the contract of the ``PerfModel`` protocol; keep them small and hashable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from servesim.specs.dtypes import DType
from servesim.specs.gpu import GPUSpec, LinkSpec
from servesim.specs.model import ModelSpec


@dataclass(frozen=True, slots=True)
class BatchShape:
    """One iteration's work, in aggregate form (no per-request lists).

    A prefill chunk of ``c`` tokens whose sequence already has ``k`` tokens of cached context
    attends over ``k + 1 .. k + c`` keys, so its attention work is ``c*k + c*(c+1)/2`` token
    pairs: the aggregates below are exactly what that sum needs.

    Attributes:
        num_prefill_seqs: sequences with a prefill chunk in this iteration.
        num_prefill_tokens: sum of chunk lengths.
        prefill_chunk_x_context: sum over chunks of chunk_tokens * cached_context_tokens.
        prefill_chunk_sq: sum over chunks of chunk_tokens ** 2.
        max_prefill_chunk_tokens: the longest chunk (kernel efficiency depends on it).
        num_decode_seqs: sequences generating one token each.
        decode_context_tokens: sum over decode sequences of the context they attend to
            (tokens whose K and V are read this step, the new token included).
        max_decode_context_tokens: the longest decode context.
        num_extra_logits: positions beyond one per sequence whose logits the LM head
            computes (speculative decoding's verify positions; 0 otherwise).
        num_verify_seqs: the prefill chunks that are speculative verify passes of decoding
            sequences (decode steps for CUDA graphs and host time; 0 otherwise).
    """

    num_prefill_seqs: int = 0
    num_prefill_tokens: int = 0
    prefill_chunk_x_context: int = 0
    prefill_chunk_sq: int = 0
    max_prefill_chunk_tokens: int = 0
    num_decode_seqs: int = 0
    decode_context_tokens: int = 0
    max_decode_context_tokens: int = 0
    num_extra_logits: int = 0
    num_verify_seqs: int = 0

    @property
    def num_tokens(self) -> int:
        """Tokens that pass through the GEMMs this iteration."""
        return self.num_prefill_tokens + self.num_decode_seqs

    @property
    def is_empty(self) -> bool:
        """True when the batch holds no work."""
        return self.num_tokens == 0

    @classmethod
    def from_lists(
        cls,
        prefill: Iterable[tuple[int, int]] = (),
        decode_contexts: Iterable[int] = (),
    ) -> BatchShape:
        """Build from ``(chunk_tokens, cached_context_tokens)`` pairs and decode contexts."""
        num_p = tok = cxk = csq = maxc = 0
        for chunk, ctx in prefill:
            num_p += 1
            tok += chunk
            cxk += chunk * ctx
            csq += chunk * chunk
            maxc = max(maxc, chunk)
        dec = list(decode_contexts)
        return cls(
            num_prefill_seqs=num_p,
            num_prefill_tokens=tok,
            prefill_chunk_x_context=cxk,
            prefill_chunk_sq=csq,
            max_prefill_chunk_tokens=maxc,
            num_decode_seqs=len(dec),
            decode_context_tokens=sum(dec),
            max_decode_context_tokens=max(dec, default=0),
        )


@dataclass(frozen=True, slots=True)
class ReplicaPlan:
    """What one replica runs on: the model, the GPU, the parallel plan and the formats.

    Attributes:
        model: the architecture.
        gpu: the accelerator (all GPUs of a replica are the same type).
        tp: tensor-parallel degree (GPUs per pipeline stage).
        pp: pipeline-parallel degree (stages).
        ep: expert-parallel degree for MoE layers (1: experts split by TP like dense FFNs).
        weight_dtype: weight storage format; ``int4``/``int8`` with bf16 activations are
            weight-only quantisation.
        activation_dtype: the format GEMMs compute in (fp8 for FP8 W8A8 serving).
        kv_dtype: KV-cache storage format.
        tp_link: link carrying TP collectives (``None``: the GPU's intra-node link).
        pp_link: link carrying PP activations between stages (``None``: intra-node link).
        use_cuda_graphs: decode iterations replay CUDA graphs (lower launch overhead).
        expert_popularity: routing skew as a per-expert frequency vector (any positive
            scale, one entry per routed expert, in expert-index order); empty: see below.
        expert_zipf_exponent: routing skew as a Zipf exponent over expert popularity ranks
            (0: uniform routing, the default); ignored when ``expert_popularity`` is given.
        custom_all_reduce: vLLM's custom one-shot/two-shot all-reduce serves small TP
            all-reduces on NVLink (vLLM's default; ``--disable-custom-all-reduce`` turns it off).
        host_profile: the serving engine's host-overhead profile (``vllm-v0``, ``vllm-v1``,
            ``none``; see ``servesim.perf.host``): per-step CPU time and CUDA-graph coverage.
        kernel_stack: the kernels the engine runs (``vllm-0.6``, ``vllm-0.24``, ``sglang-0.5``;
            see ``servesim.perf.stacks``): which measured tables price each operator.
    """

    model: ModelSpec
    gpu: GPUSpec
    tp: int = 1
    pp: int = 1
    ep: int = 1
    weight_dtype: DType = DType.BF16
    activation_dtype: DType = DType.BF16
    kv_dtype: DType = DType.BF16
    tp_link: LinkSpec | None = None
    pp_link: LinkSpec | None = None
    use_cuda_graphs: bool = True
    expert_popularity: tuple[float, ...] = ()
    expert_zipf_exponent: float = 0.0
    custom_all_reduce: bool = True
    host_profile: str = "vllm-v0"
    kernel_stack: str = "vllm-0.6"

    @property
    def num_gpus(self) -> int:
        """GPUs used by one replica."""
        return self.tp * self.pp


@dataclass(frozen=True, slots=True)
class StageTimes:
    """Predicted duration of one iteration.

    Attributes:
        stage_s: execution time of each pipeline stage for this batch (its layers, its TP
            collectives, and sending its activations to the next stage); one entry when pp=1.
        overhead_s: host-side time per iteration that no stage overlaps (scheduling, input
            preparation, kernel launches not hidden by CUDA graphs, sampling on the host).
        flops: floating-point operations of the whole iteration, all GPUs together.
        hbm_bytes: bytes moved to/from device memory, all GPUs together.
        energy_j: GPU energy of the iteration, all GPUs together (``servesim.perf.energy``:
            each op at the measured power of its own utilisation, host time at static power).
        comm_s: the part of ``stage_s`` spent in collectives (TP all-reduces, EP all-to-alls,
            the logits gather, PP sends), summed over stages: what the iteration's trace
            shows as communication (ops whose bound is ``comm``).
    """

    stage_s: tuple[float, ...]
    overhead_s: float = 0.0
    flops: float = 0.0
    hbm_bytes: float = 0.0
    energy_j: float = 0.0
    comm_s: float = 0.0

    @property
    def total_s(self) -> float:
        """Latency of the iteration through all stages (what one micro-batch waits)."""
        return self.overhead_s + sum(self.stage_s)

    @property
    def bottleneck_s(self) -> float:
        """The slowest stage: the steady-state interval between micro-batches under PP."""
        return max(self.stage_s) + self.overhead_s


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    """How one GPU of a replica spends its memory (all figures per GPU).

    Attributes:
        gpu_memory_bytes: the device's memory.
        usable_bytes: gpu_memory_bytes x gpu_memory_utilization.
        weight_bytes: this GPU's share of the weights.
        activation_bytes: peak activation/workspace reserve for the largest batch.
        overhead_bytes: CUDA context, CUDA graphs, framework buffers.
        kv_cache_bytes: what is left for the KV cache.
        kv_bytes_per_token: KV bytes one token occupies on this GPU (its layers, its heads).
        block_size_tokens: tokens per KV block.
        num_kv_blocks: KV blocks available (per replica: every GPU holds its slice of a block).
    """

    gpu_memory_bytes: int
    usable_bytes: int
    weight_bytes: int
    activation_bytes: int
    overhead_bytes: int
    kv_cache_bytes: int
    kv_bytes_per_token: float
    block_size_tokens: int
    num_kv_blocks: int

    @property
    def max_kv_tokens(self) -> int:
        """Tokens of KV the replica can hold."""
        return self.num_kv_blocks * self.block_size_tokens


@dataclass(frozen=True, slots=True)
class OpCost:
    """One row of ``explain``: an op's cost on one GPU, summed over ``count`` instances.

    Attributes:
        name: op name (``qkv_proj``, ``attn_decode``, ``all_reduce_attn``, ``host_overhead``).
        scope: where it runs (``stage0 layers 0-79``, ``stage0``, ``host``).
        count: instances summed in this row (layers of the stage, or 1).
        flops: floating-point operations, all instances, one GPU.
        num_bytes: bytes moved (HBM for kernels, wire for collectives), all instances, one GPU.
        bound: ``compute``, ``memory``, ``comm`` or ``overhead``.
        time_s: time of all instances.
        stage: pipeline stage (-1 for host-side overhead).
    """

    name: str
    scope: str
    count: int
    flops: float
    num_bytes: float
    bound: str
    time_s: float
    stage: int = 0


class PerfModel(Protocol):
    """Predicts iteration time and memory for a replica; users may plug in their own."""

    def iteration_time(self, plan: ReplicaPlan, batch: BatchShape) -> StageTimes:
        """Duration of one iteration of ``batch`` on a replica running ``plan``."""
        ...

    def memory_plan(
        self,
        plan: ReplicaPlan,
        *,
        block_size_tokens: int = 16,
        gpu_memory_utilization: float = 0.9,
        max_num_batched_tokens: int = 8192,
    ) -> MemoryPlan:
        """Memory breakdown; raises ``InfeasibleError`` when the weights do not fit."""
        ...
