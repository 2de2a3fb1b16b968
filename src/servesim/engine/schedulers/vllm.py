"""vLLM's replica scheduler (V0 engine of vLLM 0.6, and the V1 scheduler of vLLM >= 0.8)."""

from __future__ import annotations

from typing import ClassVar

from servesim._mypyc import mypyc_attr
from servesim.engine.batch import Batch
from servesim.engine.config import VLLMSchedulerConfig
from servesim.engine.schedulers.base import SCHEDULERS, ReplicaScheduler
from servesim.engine.sequence import Seq
from servesim.engine.state import ReplicaState

# vLLM 0.6 EngineArgs.create_engine_config: with --enable-chunked-prefill unset, chunked
# prefill is turned on for max_model_len > 32K (on GPU, without sliding window, speculative
# decoding, LoRA or prompt adapters -- those exceptions are not modelled); SchedulerConfig then
# defaults max_num_batched_tokens to 512.
LONG_CONTEXT_TOKENS = 32_768


def chunked_prefill_default(config: VLLMSchedulerConfig, max_model_len: int) -> bool:
    """Whether a V0 scheduler chunks prefills: the explicit flag, else vLLM 0.6's rule."""
    if config.enable_chunked_prefill is not None:
        return config.enable_chunked_prefill
    return max_model_len > LONG_CONTEXT_TOKENS


def prefix_caching_default(config: object) -> bool:
    """vLLM's default for ``enable_prefix_caching`` when unset: on in V1 (>= 0.8), off in V0."""
    return getattr(config, "kind", "") == "vllm" and getattr(config, "version", "") == "v1"


@mypyc_attr(allow_interpreted_subclasses=True)
class VLLMScheduler(ReplicaScheduler):
    """vLLM's continuous-batching scheduler.

    ``version="v0"`` models ``vllm/core/scheduler.py`` of vLLM 0.6.0 (our validation data):

    - chunked prefill off (``_schedule_default``): if nothing is swapped, waiting prompts are
      admitted FCFS while the token budget (default ``max(max_model_len, 2048)``), the
      sequence limit (``max_num_seqs``, counting running ones) and the KV blocks above the
      watermark allow; a step with any prompt is prefill-only. Otherwise every running
      sequence decodes; when its next block does not fit, the most recently admitted
      running sequence is preempted (recompute: freed and put back at the front of the
      queue; swap: KV copied to host) until it does. Swapped sequences return (FCFS, above
      the watermark) in steps without preemption.
    - chunked prefill on (``_schedule_chunked_prefill``, default budget 512): running decodes,
      then running prefill chunks, then swapped, then new prompts, under one budget.

    ``version="v1"`` models ``vllm/v1/core/sched/scheduler.py`` (>= 0.8): chunked prefill
    always, unified budget (default 8192), running requests first, then waiting ones only
    when nothing was preempted in the step; preemption by recompute only; no watermark.

    Simplified: a decode step allocates exactly the blocks sequences cross into (V0's block
    manager v1 asks one free block per sequence); running decodes are served before running
    prefill chunks (vLLM walks its running queue in order, where prefilling requests are the
    most recent); prefix-cache hits reduce the prefill tokens counted against the budget;
    no LoRA, beam search or multi-step; scheduler delay factor 0. Async output processing
    (V0 default) is modelled by the engine: tokens are stamped one host overhead late.
    """

    config: VLLMSchedulerConfig
    supports_skip = True
    is_builtin: ClassVar[bool] = True

    def __init__(self, config: VLLMSchedulerConfig, *, max_model_len: int) -> None:
        self.is_v1 = config.version == "v1"
        self.is_chunked = self.is_v1 or chunked_prefill_default(config, max_model_len)
        # V0 (0.6) processes step N's output inside step N+1 (vLLM RFC #6913); V1 moves
        # output processing to the front-end process, off the step.
        self.async_output_processing = not self.is_v1 and not config.disable_async_output_proc
        # vLLM V1's KV cache manager admits without a watermark, and preempts by
        # recompute only.
        self.keep_watermark = not self.is_v1
        if self.is_v1:
            self.preemption_mode = "recompute"
        super().__init__(config, max_model_len=max_model_len)

    def default_budget(self) -> int:
        """vLLM 0.6 defaults: 512 with chunked prefill, else max(max_model_len, 2048);
        V1: 8192 (the OpenAI server's default on large GPUs)."""
        if self.is_v1:
            return 8192
        if self.is_chunked:
            return 512
        return max(self.max_model_len, 2048)

    def schedule(self, now: float, state: ReplicaState) -> Batch | None:
        """One vLLM scheduling step."""
        if self.is_v1:
            return self.decodes_first(now, state, allow_swap=False, admit_after_preempt=False)
        if self.is_chunked:
            return self.decodes_first(now, state, allow_swap=True, admit_after_preempt=True)
        return self._prefill_first(now, state)

    def _prefill_first(self, now: float, state: ReplicaState) -> Batch | None:
        prefills: list[tuple[Seq, int]] = []
        if not state.swapped:
            self.admit_waiting(now, state, self.token_budget, prefills)
            if prefills:
                return self.make_batch(state, prefills, [])
        else:
            self.admission_blocked = False
        preempted = self.preempt_for_decode(state)
        decodes = self.decode_step(state, state.num_decoding * self.num_tokens_per_decode)
        if not preempted:
            self.swap_in_waiting(state, self.max_num_seqs, decodes)
        return self.make_batch(state, prefills, decodes)


# registered after the class statement: a compiled class takes no other decorator
SCHEDULERS.register("vllm")(VLLMScheduler)
