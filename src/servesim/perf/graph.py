"""The op graph of one replica plan: per-stage op costs as a function of the batch.

``PlanGraph`` is built once per ``ReplicaPlan`` on ``graph_ops.OpPricer`` (the primitive op
prices; the MoE block is in ``graph_moe``). Its ops split by what they depend on, so the perf
model can cache the expensive part by a small key:
- ``token_ops(T)``: GEMMs, norms, MoE, collectives, PP sends — depend only on the token count;
- ``head_ops(S)``: LM head and sampling — only on the number of sampling sequences;
- ``attention(batch)``: closed-form arithmetic on the batch aggregates (cheap, not cached).
"""

from __future__ import annotations

from servesim.perf.attention import AttnCost
from servesim.perf.calibration import Calibration
from servesim.perf.graph_kinds import linear_attention, weighted
from servesim.perf.graph_moe import moe_mlp
from servesim.perf.graph_ops import ACT_BYTES, OpPricer
from servesim.perf.moe import expert_frequencies
from servesim.perf.shapes import (
    attention_shapes,
    is_moe_layer,
    kv_elements_per_token_layer,
    layer_shapes,
)
from servesim.perf.types import BatchShape, OpCost, ReplicaPlan

INDEXER_KEY_BYTES = 1.0  # DeepSeek-V3.2's indexer keys and queries run in fp8


class PlanGraph(OpPricer):
    """Op costs of one replica plan (per GPU of each pipeline stage)."""

    def __init__(self, plan: ReplicaPlan, calibration: Calibration) -> None:
        super().__init__(plan, calibration)
        model = self.model
        self.shapes = layer_shapes(model, plan.tp)
        self.num_moe = [sum(is_moe_layer(model, i) for i in r) for r in self.stages]
        self.freq = None
        if model.moe is not None:
            self.freq = expert_frequencies(
                model.moe, plan.expert_popularity, plan.expert_zipf_exponent
            )
        self.kv_elems = kv_elements_per_token_layer(model, plan.tp)
        self.num_linear = [sum(model.layer_kind(i) == "linear" for i in r) for r in self.stages]
        self.kind_counts = model.layer_kind_counts()

    # ---- token-dependent ops ------------------------------------------------------------
    def token_ops(self, tokens: int) -> list[OpCost]:
        """Every op whose cost depends only on the number of tokens in the batch."""
        ops: list[OpCost] = []
        h = self.model.hidden_size
        tp = self.plan.tp
        for stage, layers in enumerate(self.stages):
            count = len(layers)
            if stage == 0:
                ops.append(self.elementwise("embedding", "embedding", 0, 1, 4.0 * tokens * h))
                # vocab-parallel embedding sums the shards (vLLM VocabParallelEmbedding)
                ops.append(
                    self.comm(
                        "all_reduce_embedding", "all_reduce", 0, 1, tp, tokens * h * ACT_BYTES
                    )
                )
            num_linear = self.num_linear[stage]
            if count > num_linear:
                ops.extend(self._attention_block(stage, count - num_linear, tokens))
            if num_linear:
                ops.extend(self._linear_block(stage, num_linear, tokens))
            dense = count - self.num_moe[stage]
            if dense:
                ops.extend(self._dense_mlp(stage, dense, tokens))
            if self.num_moe[stage]:
                ops.extend(self.moe_block(stage, self.num_moe[stage], tokens))
            if stage < self.plan.pp - 1:
                # vLLM sends hidden states and the residual to the next stage
                ops.append(
                    self.comm(
                        "pp_send", "send_recv", stage, 1, 2, 2 * tokens * h * ACT_BYTES, pp=True
                    )
                )
            else:
                ops.append(self.elementwise("final_norm", "norm", stage, 1, 4.0 * tokens * h))
        return ops

    def moe_block(self, stage: int, count: int, tokens: int) -> list[OpCost]:
        """The MoE FFN of ``count`` layers of ``stage`` (``graph_moe.moe_mlp``); a
        data-parallel-attention rank prices its routed experts with its group instead
        (``servesim.perf.dp_cost``)."""
        assert self.freq is not None  # set for every model with experts
        return moe_mlp(self, self.freq, stage, count, tokens)

    def _attention_block(self, stage: int, count: int, tokens: int) -> list[OpCost]:
        s = self.shapes
        h = s.hidden
        # vLLM fuses the residual add into the norms (fused_add_rms_norm): read x and the
        # residual, write both -> 8 bytes per element instead of a separate add kernel
        ops = [self.elementwise("input_norm", "fused_add_norm", stage, count, 8.0 * tokens * h)]
        if s.is_mla:
            ops.extend(self._mla_projections(stage, count, tokens))
        else:
            qkv = self.gemm("qkv_proj", stage, count, tokens, h, s.qkv_out)
            if self.model.has_qkv_bias:
                extra = tokens * s.qkv_out
                qkv = OpCost(
                    qkv.name + "+bias",
                    qkv.scope,
                    count,
                    qkv.flops + extra * count,
                    qkv.num_bytes,
                    qkv.bound,
                    qkv.time_s,
                    stage,
                )
            ops.append(qkv)
        rope_width = (
            (s.num_q_heads + s.num_kv_heads) * s.head_dim
            if not s.is_mla
            else (s.num_q_heads * s.qk_rope_dim + s.qk_rope_dim)
        )
        ops.append(self.elementwise("rotary", "rope", stage, count, 4.0 * tokens * rope_width))
        kv_write = tokens * self.kv_elems * (ACT_BYTES + self.kv_bytes)
        ops.append(self.elementwise("kv_cache_write", "rope", stage, count, kv_write))
        ops.append(self.gemm("o_proj", stage, count, tokens, s.attn_out_in, h))
        ops.append(
            self.comm(
                "all_reduce_attn", "all_reduce", stage, count, self.plan.tp, tokens * h * ACT_BYTES
            )
        )
        ops.append(
            self.elementwise("post_attn_norm", "fused_add_norm", stage, count, 8.0 * tokens * h)
        )
        return ops

    def _mla_projections(self, stage: int, count: int, tokens: int) -> list[OpCost]:
        s = self.shapes
        h = s.hidden
        ops = []
        if s.q_lora_rank:
            ops.append(self.gemm("q_a_proj", stage, count, tokens, h, s.q_lora_rank))
            ops.append(
                self.elementwise("q_a_norm", "norm", stage, count, 4.0 * tokens * s.q_lora_rank)
            )
            ops.append(self.gemm("q_b_proj", stage, count, tokens, s.q_lora_rank, s.qkv_out))
        else:
            ops.append(self.gemm("q_proj", stage, count, tokens, h, s.qkv_out))
        ops.append(self.gemm("kv_a_proj", stage, count, tokens, h, s.kv_lora_rank + s.qk_rope_dim))
        ops.append(
            self.elementwise("kv_a_norm", "norm", stage, count, 4.0 * tokens * s.kv_lora_rank)
        )
        sparse = self.model.sparse_attention
        if sparse is not None:  # DeepSeek-V3.2's lightning indexer, replicated on every GPU
            heads, dim = sparse.index_num_heads, sparse.index_head_dim
            ops.append(
                self.gemm("indexer_wq_b", stage, count, tokens, s.q_lora_rank or h, heads * dim)
            )
            ops.append(self.gemm("indexer_wk", stage, count, tokens, h, dim))
            ops.append(
                self.gemm("indexer_weights", stage, count, tokens, h, heads, quantised=False)
            )
        return ops

    def _linear_block(self, stage: int, count: int, tokens: int) -> list[OpCost]:
        """Gated DeltaNet projections (Qwen3-Next): in_proj_qkvz, in_proj_ba, the short conv,
        the gated norm and out_proj; the state update itself is priced in ``attention``."""
        lin = self.model.linear_attention
        assert lin is not None  # only called for linear layers
        h, tp = self.model.hidden_size, self.plan.tp
        qkvz, ba = lin.projection_widths()
        value = lin.value_dim // tp
        conv_bytes = 4.0 * tokens * lin.conv_dim // tp  # read and write q, k, v in 16-bit
        return [
            self.elementwise("input_norm", "fused_add_norm", stage, count, 8.0 * tokens * h),
            self.gemm("in_proj_qkvz", stage, count, tokens, h, qkvz // tp),
            self.gemm("in_proj_ba", stage, count, tokens, h, ba // tp, quantised=False),
            self.elementwise("short_conv", "activation", stage, count, conv_bytes),
            self.elementwise("gated_norm", "norm", stage, count, 6.0 * tokens * value),
            self.gemm("out_proj", stage, count, tokens, value, h),
            self.comm("all_reduce_attn", "all_reduce", stage, count, tp, tokens * h * ACT_BYTES),
            self.elementwise("post_attn_norm", "fused_add_norm", stage, count, 8.0 * tokens * h),
        ]

    def _dense_mlp(self, stage: int, count: int, tokens: int) -> list[OpCost]:
        s = self.shapes
        h = s.hidden
        act_bytes = (6.0 if self.model.is_gated_mlp else 4.0) * tokens * s.ffn
        return [
            self.gemm("mlp_up_gate", stage, count, tokens, h, s.up_out, group="dense_mlp"),
            self.elementwise("mlp_act", "activation", stage, count, act_bytes),
            self.gemm("mlp_down", stage, count, tokens, s.ffn, h, group="dense_mlp"),
            self.comm(
                "all_reduce_mlp", "all_reduce", stage, count, self.plan.tp, tokens * h * ACT_BYTES
            ),
        ]

    # ---- sampling-dependent and attention ops -------------------------------------------------
    def head_ops(self, num_sampling: int) -> list[OpCost]:
        """LM head for the sequences that sample, the logits gather, and sampling."""
        if num_sampling == 0:
            return []
        last = self.plan.pp - 1
        vocab = -(-self.model.vocab_size // self.plan.tp)
        logits = num_sampling * vocab * self.plan.tp * ACT_BYTES
        return [
            self.gemm(
                "lm_head", last, 1, num_sampling, self.model.hidden_size, vocab, quantised=False
            ),
            self.comm("gather_logits", "all_gather", last, 1, self.plan.tp, logits),
            # softmax / top-p / top-k passes over fp32 logits (~4 reads + writes)
            self.elementwise(
                "sampling", "activation", last, 1, 16.0 * num_sampling * self.model.vocab_size
            ),
        ]

    def attention(self, batch: BatchShape) -> tuple[AttnCost, AttnCost]:
        """Per-layer (prefill, decode) attention kernel costs on one GPU.

        A model that mixes layer kinds gets the mean over its layers: each kind priced with
        its own context bound (window, chunk, top-k) or, for linear layers, its state update.
        Stages multiply the mean by their layer counts (exact where each stage holds the
        model's mix, as the regular patterns of gpt-oss, Llama 4 and Qwen3-Next do).
        """
        if len(self.kind_counts) == 1 and "linear" not in self.kind_counts:
            (kind,) = self.kind_counts
            return self._attention_of(kind, batch)
        total = sum(self.kind_counts.values())
        parts = [(n / total, self._attention_of(k, batch)) for k, n in self.kind_counts.items()]
        return (
            weighted([(w, pre) for w, (pre, _) in parts]),
            weighted([(w, dec) for w, (_, dec) in parts]),
        )

    def _attention_of(self, kind: str, batch: BatchShape) -> tuple[AttnCost, AttnCost]:
        if kind == "linear":
            lin = self.model.linear_attention
            assert lin is not None  # linear layers carry their dimensions (validated)
            launch = self.cal.attention.launch_s
            return linear_attention(lin, self.plan.tp, batch, self.peak16, self.bw, launch)
        window = self.model.attention_window(kind)
        pre, dec = self.kernels.attention_s(self.shapes, batch, window, self.kv_bytes)
        sparse = self.model.sparse_attention
        if kind == "sparse" and sparse is not None:
            # the lightning indexer scores every cached token (one fp8 key per token, all
            # heads on every GPU); the main attention reads only the top-k (window above)
            # keys only, no values: half-width heads make the kernels' K+V bytes and
            # 4 * heads * head_dim FLOPs per key exactly the indexer's q.k over 128 dims
            idx = attention_shapes(sparse.index_num_heads, 1, sparse.index_head_dim // 2)
            ipre, idec = self.kernels.attention_s(idx, batch, None, INDEXER_KEY_BYTES)
            pre, dec = weighted([(1.0, pre), (1.0, ipre)]), weighted([(1.0, dec), (1.0, idec)])
        return pre, dec

    def extra_mla_decode(self, batch: BatchShape) -> list[OpCost]:
        """MLA absorbed-weight GEMMs (W_UK into q, W_UV out of the latent) for decode tokens,
        and the kv_b expansion GEMM for prefill tokens, per stage."""
        s = self.shapes
        if not s.is_mla:
            return []
        ops = []
        dec, pre = batch.num_decode_seqs, batch.num_prefill_tokens
        heads = s.num_q_heads
        for stage, layers in enumerate(self.stages):
            c = len(layers)
            if dec:
                ops.append(
                    self.gemm("mla_absorb_q", stage, c, dec, s.qk_nope_dim, heads * s.kv_lora_rank)
                )
                ops.append(
                    self.gemm("mla_absorb_o", stage, c, dec, s.kv_lora_rank, heads * s.v_head_dim)
                )
            if pre:
                ops.append(
                    self.gemm(
                        "mla_kv_b_proj",
                        stage,
                        c,
                        pre,
                        s.kv_lora_rank,
                        heads * (s.qk_nope_dim + s.v_head_dim),
                    )
                )
        return ops
