"""The shapes bench/measure_tables.py measures: GEMM, attention and all-reduce grids.

Pure Python (no torch), so ``--dry-run`` and the tests can plan without a GPU. The full grids
follow NVIDIA aiconfigurator's collector cases (``collector/cases/base_ops/*.yaml``) cut to the
shapes dense LLM serving uses; the quick grids are a small subset that finishes in about two
minutes on one GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

# Families and the tables each writes (file stems of the aiconfigurator layout).
FAMILY_TABLES: dict[str, tuple[str, ...]] = {
    "gemm": ("gemm_perf",),
    "attention": ("context_attention_perf", "generation_attention_perf"),
    "comm": ("nccl_perf",),
}
FAMILIES: tuple[str, ...] = tuple(FAMILY_TABLES)

# Common model dims beside the powers of two: TP shards of Llama-3 MLPs (14336/8 = 1792,
# 28672/8 = 3584), Llama-2 7B/13B MLPs (11008, 13824), Llama-3-70B MLP (28672), fused QKV
# of 8B/70B (6144, 10240).
_MODEL_DIMS = (1792, 11008, 13824, 28672)
_POW2_AND_HALVES = (128, 256, 512, 768, 1024, 1536, 2048, 2560, 3072, 3584, 4096, 5120,
                    6144, 7168, 8192, 10240, 12288, 14336, 16384)  # fmt: skip


@dataclass(frozen=True, slots=True)
class GemmCase:
    """One GEMM: ``y[m, n] = x[m, k] @ w[n, k]^T``."""

    dtype: str  # gemm_dtype label: bfloat16, or fp8 (per-tensor W8A8 with activation quant)
    m: int  # tokens
    n: int  # output features
    k: int  # input features


@dataclass(frozen=True, slots=True)
class AttentionCase:
    """One attention call over ``batch_size`` equal sequences."""

    phase: str  # "context" (prefill, causal) or "generation" (decode, one new token)
    batch_size: int
    seq_len: int  # context: prompt tokens; generation: KV tokens attended (incl. the new one)
    num_heads: int
    num_kv_heads: int
    head_dim: int


@dataclass(frozen=True, slots=True)
class CommCase:
    """One NCCL all-reduce of ``message_size`` bf16 elements over ``num_gpus`` GPUs."""

    num_gpus: int
    message_size: int  # elements, not bytes (aiconfigurator convention)


@dataclass(frozen=True, slots=True)
class Grid:
    """The axes of every family's grid."""

    gemm_m: tuple[int, ...]
    gemm_nk: tuple[int, ...]
    attn_heads: tuple[tuple[int, int, int], ...]  # (num_heads, num_kv_heads, head_dim)
    context_batch: tuple[int, ...]
    context_seq: tuple[int, ...]
    generation_batch: tuple[int, ...]
    generation_seq: tuple[int, ...]
    comm_sizes: tuple[int, ...]
    max_context_tokens: int = 131072  # batch x isl cap of aiconfigurator's context cases
    max_kv_bytes: int = 8 << 30  # decode KV (K and V) cap: fits every 48-80 GB GPU


def _head_configs(head_dims: tuple[int, ...], num_heads: tuple[int, ...]) -> tuple:
    """MHA and GQA/MQA per-GPU head configurations (a model's heads divided by its TP)."""
    configs = []
    for head_dim in head_dims:
        for heads in num_heads:
            for kv_heads in sorted({1, 2, 4, 8, heads}):
                if kv_heads <= heads and heads % kv_heads == 0:
                    configs.append((heads, kv_heads, head_dim))
    return tuple(configs)


FULL = Grid(
    gemm_m=(1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256,
            384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 12288, 16384),
    gemm_nk=tuple(sorted(_POW2_AND_HALVES + _MODEL_DIMS)),
    attn_heads=_head_configs((64, 128, 256), (1, 2, 4, 8, 12, 16, 24, 32, 40, 48, 64)),
    context_batch=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    context_seq=(16, 32, 64, 128, 256, 512, 1024, 1536, 2048, 3072, 4096, 6144, 8192,
                 10240, 12288, 16384),
    generation_batch=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
    generation_seq=tuple(2**p for p in range(1, 18)),  # 2 .. 131072 as aiconfigurator
    comm_sizes=tuple(2**p for p in range(7, 29)),  # 128 .. 2^28 elements (512 MiB bf16)
)  # fmt: skip

QUICK = Grid(
    gemm_m=(1, 8, 32, 128, 512, 2048, 8192),
    gemm_nk=(1024, 4096, 8192, 14336),
    attn_heads=((32, 8, 128), (8, 1, 128)),  # Llama-3-8B at TP1, Llama-3-70B at TP8
    context_batch=(1, 4),
    context_seq=(128, 1024, 4096),
    generation_batch=(1, 16, 128),
    generation_seq=(128, 2048, 16384),
    comm_sizes=tuple(4**p for p in range(5, 13)),  # 1024 .. 2^24 elements
)


def gemm_cases(grid: Grid, dtypes: tuple[str, ...]) -> list[GemmCase]:
    """Every (dtype, n, k, m) of the grid, m innermost (one weight shape at a time)."""
    return [
        GemmCase(dtype, m, n, k)
        for dtype in dtypes
        for n in grid.gemm_nk
        for k in grid.gemm_nk
        for m in grid.gemm_m
    ]


def context_cases(grid: Grid) -> list[AttentionCase]:
    """Prefill cases; MHA keeps half the token budget (aiconfigurator caps MHA at 65536)."""
    cases = []
    for heads, kv_heads, head_dim in grid.attn_heads:
        budget = grid.max_context_tokens // (2 if kv_heads == heads else 1)
        for batch in grid.context_batch:
            for seq in grid.context_seq:
                if batch * seq <= budget:
                    cases.append(AttentionCase("context", batch, seq, heads, kv_heads, head_dim))
    return cases


def generation_cases(grid: Grid) -> list[AttentionCase]:
    """Decode cases whose K and V caches (bf16) fit ``max_kv_bytes``."""
    cases = []
    for heads, kv_heads, head_dim in grid.attn_heads:
        for batch in grid.generation_batch:
            for seq in grid.generation_seq:
                kv_bytes = 2 * batch * seq * kv_heads * head_dim * 2
                if kv_bytes <= grid.max_kv_bytes:
                    cases.append(AttentionCase("generation", batch, seq, heads, kv_heads, head_dim))
    return cases


def comm_gpu_counts(world_size: int) -> tuple[int, ...]:
    """The group sizes measured with ``world_size`` ranks: 2, 4, 8, ... up to the world."""
    counts = []
    num_gpus = 2
    while num_gpus <= world_size:
        counts.append(num_gpus)
        num_gpus *= 2
    if world_size >= 2 and world_size not in counts:
        counts.append(world_size)
    return tuple(counts)


def comm_cases(grid: Grid, world_size: int) -> list[CommCase]:
    """All-reduce cases for every group size that ``world_size`` ranks allow."""
    return [CommCase(g, size) for g in comm_gpu_counts(world_size) for size in grid.comm_sizes]
