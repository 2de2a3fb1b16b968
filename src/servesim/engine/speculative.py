"""Speculative decoding: what a step verifies, how many tokens it keeps, what drafting costs.

A draft (an EAGLE-style head, DeepSeek's MTP module or a separate small model) proposes ``k``
tokens per decoding sequence; the target then runs one forward pass over ``k + 1`` positions
per sequence (the last emitted token and the ``k`` drafts) and keeps the longest accepted
prefix plus one token of its own (the correction, or the bonus token when all ``k`` pass).
With a per-position acceptance rate ``alpha`` a step emits on average
``(1 - alpha^(k+1)) / (1 - alpha)`` tokens (Leviathan et al. 2023, eq. 1).

Modelling choices (and why):

- The verify pass is priced as a prefill chunk of ``k + 1`` tokens over the sequence's cached
  context: vLLM V1 and SGLang run it through the same varlen attention kernel as chunked
  prefill, its GEMMs see ``k + 1`` tokens per sequence, and the LM head computes logits at all
  ``k + 1`` positions (``BatchShape.num_extra_logits``).
- Drafting is ``k`` forward passes of the draft over the decoding sequences (EAGLE and MTP
  chain drafting reuse their one-layer module ``k`` times; a draft model runs ``k`` decode
  steps); the first pass also covers the batch's prefill tokens, which the draft must see.
  Draft passes run on the GPU in the same step (CUDA graphs), so they add stage time, not host
  time.
- Verification writes KV for all ``k + 1`` positions, so a step needs blocks for them (vLLM's
  lookahead slots); KV then grows by the tokens kept. Rejected slots stay allocated and are
  reused by the next step. The lookahead is capped at the tokens a request still needs, so
  its peak KV is that of plain decoding.
- Accepted tokens are drawn per request from its own stream (``seed`` and the request id), so
  a request's acceptances do not depend on what it was batched with; ``expected`` mode emits
  the mean instead, carrying the fraction to the next step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import numpy as np

from servesim.core.errors import ConfigError, InfeasibleError, ServesimError
from servesim.engine.config import SpeculativeConfig
from servesim.engine.sequence import Seq
from servesim.perf.types import BatchShape, MemoryPlan, PerfModel, ReplicaPlan, StageTimes
from servesim.specs.catalog.models import resolve_model
from servesim.specs.dtypes import weight_bytes_per_param

# Published per-position acceptance rates (defaults when the config leaves alpha unset). A
# constant alpha reproduces a measured mean acceptance length L at k drafts by solving
# (1 - alpha^(k+1)) / (1 - alpha) = L; measured per-position rates fall with position, so a
# constant rate matches the mean only.
# - eagle: vLLM's own measurement of an EAGLE-1 head on Llama-3-8B-Instruct, MT-bench (vLLM PR
#   #16035): mean acceptance length 1.89 at k=2 and 2.08 at k=4, i.e. alpha 0.57 and 0.53; we
#   take 0.57 (we model vLLM serving; the EAGLE paper's own implementation reports higher
#   rates on LLaMA2-chat, ICML 2024 table 7).
# - eagle3: vLLM issue #26191 / PR #17504, Llama-3.1-8B-Instruct with the EAGLE-3 head
#   (yuhuili/EAGLE3-LLaMA3.1-Instruct-8B), MT-bench, temperature 0, k=7: mean acceptance
#   length 3.53 (12,208 accepted of 4,816 drafts), i.e. alpha 0.744; we take 0.74.
# - mtp: DeepSeek-V3 technical report (arXiv:2412.19437, sec. 5.4.3): "the acceptance rate of
#   the second token prediction ranges between 85% and 90%"; we take the low end, 0.85. It
#   publishes one MTP module (k=1): longer chains extrapolate.
# - draft: Leviathan et al. 2023 (table 3) measure alpha 0.5-0.8 for small drafts of T5-XXL
#   and LaMDA depending on task; we take 0.6.
DEFAULT_ACCEPTANCE = {"eagle": 0.57, "eagle3": 0.74, "mtp": 0.85, "draft": 0.6}


def expected_tokens_per_step(alpha: float, num_verify: int) -> float:
    """Mean tokens one step keeps when it verifies ``num_verify`` positions (``k + 1``):
    ``sum_{i<num_verify} alpha^i = (1 - alpha^num_verify) / (1 - alpha)``."""
    if alpha >= 1.0:
        return float(num_verify)
    return (1.0 - alpha**num_verify) / (1.0 - alpha)


def draft_plan(plan: ReplicaPlan, config: SpeculativeConfig) -> ReplicaPlan:
    """The plan the draft passes run on: the target's first layer (with its embedding and LM
    head) for a head (EAGLE, MTP), or the draft model on the target's GPUs and formats."""
    model = plan.model
    if config.method == "draft":
        if not config.draft_model:
            raise ConfigError("speculative.draft_model", None, "method draft needs a model")
        draft = resolve_model(config.draft_model)
        if draft.vocab_size != model.vocab_size:
            raise ConfigError(
                "speculative.draft_model",
                config.draft_model,
                f"vocabulary {draft.vocab_size:,} differs from the target's {model.vocab_size:,}",
            )
        return dataclasses.replace(plan, model=draft)
    layers = model.layer_types[:1]
    if layers == ("linear",):
        # A head keeps no linear-attention state: vLLM's Qwen3-Next MTP layer is a full
        # attention layer (qwen3_next_mtp.py: Qwen3NextDecoderLayer(layer_type=
        # "full_attention")), so the head's KV grows per token like the target's full layers.
        layers = ("full",)
    moe = model.moe
    if moe is not None:  # the head is the target's first layer: MoE only if that one is
        moe = dataclasses.replace(moe, moe_layer_indices=tuple(moe.moe_layer_indices[:1]))
        moe = moe if moe.moe_layer_indices == (0,) else None
    head = dataclasses.replace(
        model,
        name=f"{model.name}-{config.method}-head",
        num_layers=1,
        layer_types=layers,
        moe=moe,
    )
    return dataclasses.replace(plan, model=head)


class Speculator:
    """One replica's speculation: verify shapes, kept tokens and draft cost."""

    def __init__(self, config: SpeculativeConfig, plan: ReplicaPlan, block_size: int) -> None:
        k = config.num_speculative_tokens
        if k + 1 > block_size:
            raise ConfigError(
                "speculative.num_speculative_tokens",
                k,
                f"k + 1 must fit in one KV block ({block_size} tokens)",
            )
        if plan.pp > 1:
            # vLLM rejects speculative decoding with pipeline parallelism, and so do we.
            raise ConfigError("speculative", config.method, "needs pp = 1")
        alpha = config.acceptance_rate
        self.alpha = DEFAULT_ACCEPTANCE[config.method] if alpha is None else alpha
        self.num_speculative_tokens = k
        # vLLM's SpeculativeConfig.use_eagle(): methods drafting from the target's hidden
        # states (eagle, eagle3, mtp; vllm/config/speculative.py), not a draft model; a
        # prefix hit then drops its last block (engine/prefix_hits.py)
        self.use_eagle = config.method in ("eagle", "eagle3", "mtp")
        self.is_sampled = config.acceptance == "sampled"
        self.seed = config.seed
        self.draft = draft_plan(plan, config)
        self._draft_cache: dict[BatchShape, StageTimes] = {}

    def num_verify(self, seq: Seq, num_emitted: int) -> int:
        """Positions the target verifies for ``seq`` this step: ``k + 1``, capped at the
        tokens the request still needs."""
        return min(self.num_speculative_tokens + 1, seq.num_output_tokens - num_emitted)

    def num_kept(self, seq: Seq, num_verify: int) -> int:
        """Tokens ``seq`` keeps from a step that verified ``num_verify`` positions (>= 1)."""
        if num_verify <= 1:
            return 1
        if not self.is_sampled:
            credit = seq.spec_credit + expected_tokens_per_step(self.alpha, num_verify)
            kept = min(int(credit + 1e-9), num_verify)
            seq.spec_credit = credit - kept
            return kept
        if self.alpha >= 1.0:
            return num_verify
        if self.alpha <= 0.0:
            return 1
        rng = seq.spec_rng
        if rng is None:
            rng = seq.spec_rng = np.random.default_rng(
                np.random.SeedSequence(self.seed, spawn_key=(seq.sid,))
            )
        # leading accepted drafts: successes before the first rejection, at most num_verify - 1
        accepted = int(rng.geometric(1.0 - self.alpha)) - 1
        return 1 + min(accepted, num_verify - 1)

    @staticmethod
    def verify_shape(base: BatchShape, decodes: Iterable[tuple[int, int]]) -> BatchShape:
        """``base`` (the batch's prefill chunks) plus one verify chunk per decode, given as
        (context the plain decode would read, positions verified)."""
        num = tokens = cxk = csq = longest = 0
        for context, q in decodes:
            num += 1
            tokens += q
            cxk += q * (context - 1)  # the chunk attends over the cached tokens before it
            csq += q * q
            longest = max(longest, q)
        return dataclasses.replace(
            base,
            num_prefill_seqs=base.num_prefill_seqs + num,
            num_prefill_tokens=base.num_prefill_tokens + tokens,
            prefill_chunk_x_context=base.prefill_chunk_x_context + cxk,
            prefill_chunk_sq=base.prefill_chunk_sq + csq,
            max_prefill_chunk_tokens=max(base.max_prefill_chunk_tokens, longest),
            num_extra_logits=tokens - num,
            num_verify_seqs=num,
        )

    def with_draft(
        self,
        times: StageTimes,
        prefill: BatchShape,
        decode: BatchShape,
        perf: Callable[[ReplicaPlan, BatchShape], StageTimes],
    ) -> StageTimes:
        """``times`` (the verify pass) plus the ``k`` draft passes: the first over the
        prefill chunks and the decodes, the others over the decodes, one token further on."""
        n = decode.num_decode_seqs
        stage = flops = nbytes = joules = 0.0
        for i in range(self.num_speculative_tokens if n else 1):
            shape = dataclasses.replace(
                prefill if i == 0 else BatchShape(),
                num_decode_seqs=n,
                decode_context_tokens=decode.decode_context_tokens + i * n,
                max_decode_context_tokens=decode.max_decode_context_tokens + i if n else 0,
            )
            if shape.is_empty:
                continue
            part = self._draft_cache.get(shape)
            if part is None:
                part = self._draft_cache[shape] = perf(self.draft, shape)
                if len(self._draft_cache) > 65_536:
                    self._draft_cache.clear()
            stage += sum(part.stage_s)
            flops += part.flops
            nbytes += part.hbm_bytes
            joules += part.energy_j
        return StageTimes(
            stage_s=(times.stage_s[0] + stage, *times.stage_s[1:]),
            overhead_s=times.overhead_s,
            flops=times.flops + flops,
            hbm_bytes=times.hbm_bytes + nbytes,
            energy_j=times.energy_j + joules,
            comm_s=times.comm_s,  # the target's collectives (a draft step's are not split out)
        )


def speculative_state_blocks(speculator: Speculator | None) -> int:
    """Extra linear-attention states a sequence holds per state group: ``k`` under
    speculation (vLLM's ``MambaSpec.num_speculative_blocks = num_speculative_tokens``,
    vllm/model_executor/layers/mamba/abstract.py ``get_kv_cache_spec``: one state per draft
    position next to the running one, so a rejected draft's state is never needed), else 0."""
    return 0 if speculator is None else speculator.num_speculative_tokens


def _draft_weight_bytes(
    speculator: Speculator, plan: ReplicaPlan, draft: MemoryPlan, config: SpeculativeConfig
) -> float:
    """One GPU's share of the draft's weights: a draft model's all; a head (EAGLE, MTP)
    shares the target's embedding and LM head, so only its layer's."""
    if config.method == "draft":
        return float(draft.weight_bytes)
    per_param = weight_bytes_per_param(plan.weight_dtype)
    return speculator.draft.model.layer_params(0) * per_param / max(plan.tp, 1)


def num_kv_blocks_with_draft(
    speculator: Speculator,
    plan: ReplicaPlan,
    target: MemoryPlan,
    draft: MemoryPlan,
    config: SpeculativeConfig,
) -> int:
    """KV blocks left once the draft's weights and its own KV are on the GPU.

    ``target`` and ``draft`` are the memory plans of the target and of ``speculator.draft``.
    Every token then holds KV in both models (the head's one layer, or every layer of the
    draft model). Raises ``InfeasibleError`` naming both models' weights when not one block
    of both fits (vLLM loads the draft next to the target, then sizes the KV cache)."""
    draft_weight = _draft_weight_bytes(speculator, plan, draft, config)
    block = target.block_size_tokens
    kv_bytes = target.num_kv_blocks * block * target.kv_bytes_per_token - draft_weight
    per_block = block * (target.kv_bytes_per_token + draft.kv_bytes_per_token)
    blocks = max(int(kv_bytes // per_block), 0)
    if blocks < max(plan.pp, 1):
        raise InfeasibleError(_no_room(speculator, plan, target, draft_weight, per_block))
    return blocks


def _no_room(
    speculator: Speculator,
    plan: ReplicaPlan,
    target: MemoryPlan,
    draft_weight: float,
    per_block: float,
) -> str:
    gib = 1024**3
    left = target.num_kv_blocks * target.block_size_tokens * target.kv_bytes_per_token
    return (
        f"{plan.model.name} + draft {speculator.draft.model.name} on {plan.gpu.name} "
        f"tp={plan.tp} pp={plan.pp}: target weights {target.weight_bytes / gib:.2f} GiB + "
        f"draft weights {draft_weight / gib:.2f} GiB per GPU leave "
        f"{(left - draft_weight) / gib:.2f} GiB of the {target.usable_bytes / gib:.2f} GiB "
        f"usable for KV, under one {target.block_size_tokens}-token block of both models' "
        f"KV ({per_block / 2**20:.2f} MiB)"
    )


def draft_memory_problem(
    plan: ReplicaPlan, config: SpeculativeConfig, perf: PerfModel, **memory: int | float
) -> str | None:
    """Why ``plan`` cannot hold the target, the draft and one KV block of both (None when it
    can): the deployment check's copy of the replica's sizing. ``memory``: the memory-plan
    options (block size, utilization, batched-token budget)."""
    try:
        speculator = Speculator(config, plan, int(memory.get("block_size_tokens", 16)))
        target = perf.memory_plan(plan, **memory)  # type: ignore[arg-type]
        draft = perf.memory_plan(speculator.draft, **memory)  # type: ignore[arg-type]
        num_kv_blocks_with_draft(speculator, plan, target, draft, config)
    except ServesimError as exc:
        return str(exc)
    return None
