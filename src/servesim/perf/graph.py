"""The op graph of one replica plan: per-stage op costs as a function of the batch.

``PlanGraph`` is built once per ``ReplicaPlan``. Its ops split by what they depend on, so the
perf model can cache the expensive part by a small key:
- ``token_ops(T)``: GEMMs, norms, MoE, collectives, PP sends — depend only on the token count;
- ``head_ops(S)``: LM head and sampling — only on the number of sampling sequences;
- ``attention(batch)``: closed-form arithmetic on the batch aggregates (cheap, not cached).
"""

from __future__ import annotations

from servesim.perf.attention import AttnCost
from servesim.perf.calibration import Calibration
from servesim.perf.graph_kinds import GroupKernels, group_kernels, linear_attention, weighted
from servesim.perf.kernel_set import GemmShape, KernelSet, MoeShape, gemm_label
from servesim.perf.kernels import elementwise_time_s, gemm_compute_eff
from servesim.perf.moe import busiest_device, expert_frequencies
from servesim.perf.shapes import (
    attention_shapes,
    is_moe_layer,
    kv_elements_per_token_layer,
    layer_shapes,
    stage_layer_ranges,
)
from servesim.perf.types import BatchShape, OpCost, ReplicaPlan
from servesim.specs.dtypes import DType
from servesim.specs.quant import MODULE_GROUPS, module_formats

ACT_BYTES = 2.0  # activations stay 16-bit between kernels (bf16/fp16), also under FP8 GEMMs
INDEXER_KEY_BYTES = 1.0  # DeepSeek-V3.2's indexer keys and queries run in fp8


class PlanGraph:
    """Op costs of one replica plan (per GPU of each pipeline stage)."""

    def __init__(self, plan: ReplicaPlan, calibration: Calibration) -> None:
        self.plan = plan
        self.model = plan.model
        self.cal = calibration.for_gpu(plan.gpu.name)
        self.calibration = calibration
        self.kernels = KernelSet(calibration, plan.kernel_stack, plan.gpu)
        self.is_calibrated = self.kernels.is_calibrated
        self.gemm_label = gemm_label(plan.weight_dtype, plan.activation_dtype)
        self.gpu_name = plan.gpu.name
        peaks = plan.gpu.peak_flops_per_s
        self.peak = peaks.get(plan.activation_dtype) or peaks.get(DType.BF16) or peaks[DType.FP16]
        self.peak16 = peaks.get(DType.BF16) or peaks.get(DType.FP16) or self.peak
        self.bw = plan.gpu.hbm_bandwidth_bytes_per_s
        self.w_bytes = plan.weight_dtype.num_bytes
        self.in_bytes = min(ACT_BYTES, plan.activation_dtype.num_bytes)
        self.kv_bytes = plan.kv_dtype.num_bytes
        self.shapes = layer_shapes(self.model, plan.tp)
        self.tp_link = plan.tp_link or plan.gpu.intra_node_link
        self.pp_link = plan.pp_link or plan.gpu.intra_node_link
        self.stages = stage_layer_ranges(self.model.num_layers, plan.pp)
        self.num_moe = [sum(is_moe_layer(self.model, i) for i in r) for r in self.stages]
        self.freq = None
        if self.model.moe is not None:
            moe = self.model.moe
            self.freq = expert_frequencies(moe, plan.expert_popularity, plan.expert_zipf_exponent)
        self.kv_elems = kv_elements_per_token_layer(self.model, plan.tp)
        self.any_uncalibrated_comm = False
        formats = module_formats(self.model.quantization, plan.weight_dtype)
        plain = GroupKernels(self.w_bytes, self.in_bytes, None, None, self.peak)
        self.groups = {
            g: group_kernels(plan, formats[g], plain, self.peak16) for g in MODULE_GROUPS
        }
        self.num_linear = [
            sum(self.model.layer_kind(i) == "linear" for i in r) for r in self.stages
        ]
        self.kind_counts = self.model.layer_kind_counts()

    # ---- primitives -------------------------------------------------------------------
    def scope(self, stage: int, count: int = 0) -> str:
        """Human-readable location: the stage's layers for per-layer ops, else the stage."""
        r = self.stages[stage]
        if count < len(r) // 2 or count == 1:
            return f"stage{stage}"
        return f"stage{stage} layers {r.start}-{r.stop - 1}"

    def gemm(
        self,
        name: str,
        stage: int,
        count: int,
        m: float,
        k: int,
        n: int,
        *,
        quantised: bool = True,
        group: str = "attention",
    ) -> OpCost:
        """A GEMM of m tokens by a k x n weight of module ``group`` (16-bit when not
        ``quantised``)."""
        g = self.groups[group]
        w = g.weight_bytes if quantised else ACT_BYTES
        in_bytes = g.in_bytes if quantised else ACT_BYTES
        flops = 2.0 * m * k * n
        nbytes = k * n * w + m * k * in_bytes + m * n * ACT_BYTES
        label = g.gemm_label if quantised else "bf16"
        peak = g.peak_flops_per_s if quantised else self.peak16
        t = self.kernels.gemm_s(GemmShape(m, n, k, label, w, in_bytes), peak)
        t_c = flops / (peak * gemm_compute_eff(self.cal.gemm, m, k, n))
        bound = "compute" if t_c >= nbytes / (self.bw * self.cal.gemm.mem_eff) else "memory"
        return OpCost(
            name,
            self.scope(stage, count),
            count,
            flops * count,
            nbytes * count,
            bound,
            t * count,
            stage,
        )

    def elementwise(self, name: str, cls: str, stage: int, count: int, nbytes: float) -> OpCost:
        """A memory-bound kernel of op class ``cls`` (norm, rope, activation, add, embedding)."""
        curve = self.cal.elementwise.get(cls) or self.calibration.default_gpu.elementwise[cls]
        t = elementwise_time_s(curve, nbytes, self.bw)
        return OpCost(
            name, self.scope(stage, count), count, 0.0, nbytes * count, "memory", t * count, stage
        )

    def comm(
        self,
        name: str,
        collective: str,
        stage: int,
        count: int,
        n: int,
        nbytes: float,
        pp: bool = False,
    ) -> OpCost:
        """A collective over ``n`` GPUs of the TP group (or a PP send when ``pp``)."""
        link = self.pp_link if pp else self.tp_link
        custom = collective == "all_reduce" and not pp and self.plan.custom_all_reduce
        t, ok = self.kernels.collective_s(link, collective, n, nbytes, custom)
        self.any_uncalibrated_comm |= not ok
        return OpCost(
            name, self.scope(stage, count), count, 0.0, nbytes * count, "comm", t * count, stage
        )

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
                ops.extend(self._moe_mlp(stage, self.num_moe[stage], tokens))
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

    def _attention_block(self, stage: int, count: int, tokens: int) -> list[OpCost]:
        s = self.shapes
        h = s.hidden
        # vLLM fuses the residual add into the norms (fused_add_rms_norm): read x and the
        # residual, write both -> 8 bytes per element instead of a separate add kernel
        ops = [self.elementwise("input_norm", "norm", stage, count, 8.0 * tokens * h)]
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
        ops.append(self.elementwise("post_attn_norm", "norm", stage, count, 8.0 * tokens * h))
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
            self.elementwise("input_norm", "norm", stage, count, 8.0 * tokens * h),
            self.gemm("in_proj_qkvz", stage, count, tokens, h, qkvz // tp),
            self.gemm("in_proj_ba", stage, count, tokens, h, ba // tp, quantised=False),
            self.elementwise("short_conv", "activation", stage, count, conv_bytes),
            self.elementwise("gated_norm", "norm", stage, count, 6.0 * tokens * value),
            self.gemm("out_proj", stage, count, tokens, value, h),
            self.comm("all_reduce_attn", "all_reduce", stage, count, tp, tokens * h * ACT_BYTES),
            self.elementwise("post_attn_norm", "norm", stage, count, 8.0 * tokens * h),
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

    def _moe_mlp(self, stage: int, count: int, tokens: int) -> list[OpCost]:
        moe = self.model.moe
        assert moe is not None and self.freq is not None  # only called for MoE layers
        h = self.model.hidden_size
        tp, ep = self.plan.tp, self.plan.ep
        ffn = moe.expert_ffn_size // (tp // ep)
        mats = 3 if self.model.is_gated_mlp else 2
        ops = [self.gemm("moe_router", stage, count, tokens, h, moe.num_experts, quantised=False)]
        load = busiest_device(self.freq, tokens, moe.num_experts_per_token, ep)
        if load.assignments > 0:
            ops.append(
                self._experts(
                    stage, count, tokens, load.assignments, load.experts_touched, h, ffn, mats
                )
            )
        if moe.num_shared_experts:
            width = moe.num_shared_experts * moe.shared_expert_ffn_size // tp
            up = width * (mats - 1)
            ops.append(
                self.gemm("shared_up_gate", stage, count, tokens, h, up, group="shared_experts")
            )
            ops.append(
                self.gemm("shared_down", stage, count, tokens, width, h, group="shared_experts")
            )
        if ep == 1:
            ops.append(
                self.comm("all_reduce_moe", "all_reduce", stage, count, tp, tokens * h * ACT_BYTES)
            )
        else:
            a2a = tokens * moe.num_experts_per_token * h * ACT_BYTES / ep
            ops.append(self.comm("ep_dispatch", "all_to_all", stage, count, ep, a2a))
            ops.append(self.comm("ep_combine", "all_to_all", stage, count, ep, a2a))
            ops.append(
                self.comm("ep_all_gather", "all_gather", stage, count, ep, tokens * h * ACT_BYTES)
            )
        return ops

    def _experts(
        self,
        stage: int,
        count: int,
        tokens: int,
        pairs: float,
        touched: float,
        h: int,
        ffn: int,
        mats: int,
    ) -> OpCost:
        """Grouped expert GEMMs on the busiest device: FLOPs of its token-expert pairs, bytes
        of the experts it touches, efficiency of the per-expert token count."""
        g = self.groups["experts"]
        flops = 2.0 * pairs * mats * h * ffn
        weights = touched * mats * h * ffn * g.weight_bytes
        acts = pairs * (2 * h + (mats - 1) * ffn + ffn) * ACT_BYTES
        per_expert = max(1.0, pairs / max(touched, 1.0))
        curve = self.cal.gemm
        t_c = flops / (g.peak_flops_per_s * gemm_compute_eff(curve, per_expert, h, ffn))
        bound = "compute" if t_c >= (weights + acts) / (self.bw * curve.mem_eff) else "memory"
        moe = self.model.moe
        assert moe is not None  # only called for MoE layers
        shape = MoeShape(
            num_tokens=int(tokens),
            hidden=h,
            inter=ffn,
            topk=moe.num_experts_per_token,
            num_experts=moe.num_experts,
            ep=self.plan.ep,
            assignments=pairs,
            experts_touched=touched,
            num_matrices=mats,
            label=g.moe_label,
            weight_bytes=g.weight_bytes,
        )
        t = self.kernels.moe_experts_s(shape, g.peak_flops_per_s)
        return OpCost(
            "moe_experts",
            self.scope(stage, count),
            count,
            flops * count,
            (weights + acts) * count,
            bound,
            t * count,
            stage,
        )

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
