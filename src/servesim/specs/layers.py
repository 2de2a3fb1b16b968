"""Attention patterns per layer: which tokens a layer attends to and what it caches.

Models of 2025-26 mix layer kinds: gpt-oss alternates sliding-window (128 tokens) and full
attention, Llama 4 runs chunked local attention on three layers of four, Qwen3-Next replaces
three of four attention layers by gated DeltaNet (a fixed recurrent state instead of a KV
cache), DeepSeek-V3.2 attends to the top-k tokens its lightning indexer selects. A layer kind
decides the attention context (``attended_tokens``) and the cache it keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

from servesim.core.errors import ConfigError

#: ``full``: every earlier token; ``sliding``: the last ``sliding_window``; ``chunked``: the
#: tokens of the current ``attention_chunk_tokens`` chunk; ``linear``: a recurrent state;
#: ``sparse``: the ``index_topk`` tokens a learned indexer selects (it scores all of them).
LAYER_KINDS = ("full", "sliding", "chunked", "linear", "sparse")
#: Kinds whose cache grows with the context (the others hold a bounded amount per sequence).
GROWING_KINDS = ("full", "sparse")
#: HF ``layer_types`` spellings (transformers' gpt-oss, Qwen3-Next, Gemma configs).
HF_LAYER_TYPES = {
    "full_attention": "full",
    "sliding_attention": "sliding",
    "chunked_attention": "chunked",
    "linear_attention": "linear",
}
#: Recurrent state is kept in the model's 16-bit dtype (vLLM's ``mamba_ssm_cache_dtype`` auto).
STATE_BYTES = 2.0
#: Gated DeltaNet's chunked (WY) prefill form works on chunks of 64 tokens (Yang et al.,
#: Gated Delta Networks, arXiv:2412.06464, sec. 3.3; fla's chunk_gated_delta_rule).
DELTANET_CHUNK_TOKENS = 64


@dataclass(frozen=True, slots=True)
class LinearAttentionSpec:
    """Gated DeltaNet layer dimensions (Qwen3-Next ``linear_*`` config fields).

    Attributes:
        num_key_heads: query/key heads.
        num_value_heads: value heads (each carries one key_head_dim x value_head_dim state).
        key_head_dim: width of one key head.
        value_head_dim: width of one value head.
        conv_kernel_size: the causal short convolution's width over q, k and v.
    """

    num_key_heads: int
    num_value_heads: int
    key_head_dim: int
    value_head_dim: int
    conv_kernel_size: int

    @property
    def key_dim(self) -> int:
        """Total query (and key) width."""
        return self.num_key_heads * self.key_head_dim

    @property
    def value_dim(self) -> int:
        """Total value width."""
        return self.num_value_heads * self.value_head_dim

    @property
    def conv_dim(self) -> int:
        """Channels of the short convolution (q, k and v)."""
        return 2 * self.key_dim + self.value_dim

    def projection_widths(self) -> tuple[int, int]:
        """Output widths of in_proj_qkvz (q, k, v, output gate z) and in_proj_ba (beta, alpha)."""
        return 2 * self.key_dim + 2 * self.value_dim, 2 * self.num_value_heads

    def gemm_params(self, hidden: int) -> int:
        """Weights of the layer's GEMMs: the two input projections and out_proj."""
        qkvz, ba = self.projection_widths()
        return hidden * (qkvz + ba) + self.value_dim * hidden

    def params(self, hidden: int) -> int:
        """All weights of one layer (modeling_qwen3_next.Qwen3NextGatedDeltaNet)."""
        conv = self.conv_dim * self.conv_kernel_size  # depthwise conv1d, no bias
        per_head = 2 * self.num_value_heads  # dt_bias and A_log
        return self.gemm_params(hidden) + conv + per_head + self.value_head_dim  # gated norm

    def state_elements(self) -> int:
        """Elements one sequence keeps in one layer: the delta-rule state plus conv history."""
        recurrent = self.num_value_heads * self.key_head_dim * self.value_head_dim
        return recurrent + self.conv_dim * (self.conv_kernel_size - 1)


@dataclass(frozen=True, slots=True)
class SparseAttentionSpec:
    """DeepSeek Sparse Attention (DeepSeek-V3.2-Exp): the lightning indexer's dimensions.

    Attributes:
        index_topk: tokens each query attends to (the indexer's top-k).
        index_num_heads: indexer query heads.
        index_head_dim: indexer head width (one shared key per token, cached in fp8).
    """

    index_topk: int
    index_num_heads: int
    index_head_dim: int

    def params(self, hidden: int, q_lora_rank: int) -> int:
        """Indexer weights: wq_b from the query latent, wk, its LayerNorm, weights_proj."""
        heads, dim = self.index_num_heads, self.index_head_dim
        return q_lora_rank * heads * dim + hidden * dim + 2 * dim + hidden * heads

    def key_bytes_per_token(self) -> int:
        """Indexer key bytes per token per layer: fp8 elements plus one fp32 scale per 128
        (vLLM's DeepseekV32IndexerCache: head_dim + head_dim // 128 * 4)."""
        return self.index_head_dim + self.index_head_dim // 128 * 4


def attended_tokens(kind: str, context_tokens: int, window: int | None) -> int:
    """Keys one query of ``kind`` attends to at ``context_tokens`` of context.

    ``window`` is the layer's bound: the sliding window, the chunk (priced as a window of the
    chunk size, an upper bound: a chunked query sees on average half a chunk) or the sparse
    top-k. Linear layers attend to no keys (their cost is the state update).
    """
    if kind == "linear":
        return 0
    if window is None:
        return context_tokens
    return min(context_tokens, window)


def parse_layer_types(values: object, num_layers: int, where: str) -> tuple[str, ...]:
    """HF ``layer_types`` (``sliding_attention``...) as ``LAYER_KINDS`` names, one per layer."""
    if not isinstance(values, list | tuple) or len(values) != num_layers:
        raise ConfigError(f"{where}.layer_types", values, f"must list {num_layers} layer types")
    kinds = []
    for value in values:
        kind = HF_LAYER_TYPES.get(str(value), str(value))
        if kind not in LAYER_KINDS:
            raise ConfigError(
                f"{where}.layer_types", value, f"must be one of {', '.join(HF_LAYER_TYPES)}"
            )
        kinds.append(kind)
    return tuple(kinds)
