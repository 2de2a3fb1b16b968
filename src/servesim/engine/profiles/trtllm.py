"""TensorRT-LLM profile (``trtllm-serve``, PyTorch backend, 1.0) and its launch line.

Defaults from ``tensorrt_llm/llmapi/llm_args.py`` / ``trtllm-serve --help`` (1.0): in-flight
batching with ``max_batch_size`` 2048 and ``max_num_tokens`` 8192, context and generation
requests in one batch, chunked context off, the overlap scheduler on (``disable_overlap_scheduler``
False: the host work of step N+1 runs during step N), KV cache at
``kv_cache_free_gpu_memory_fraction`` 0.9 of the memory left after the weights, KV reuse
(prefix caching) on, CUDA graphs for generation-only batches (``cuda_graph_config`` default
batch sizes up to 128).

Scheduling rules: servesim's unified-budget (V1-style) scheduler with the budget
``max_num_tokens``. Kernels: no TensorRT-LLM tables exist in the shared data, so the vLLM 0.24
stack (FlashAttention 3 / cutlass on Hopper, the nearest measured stack) stands in.
"""

from __future__ import annotations

from servesim.engine.profiles.base import (
    ENGINES,
    EngineProfile,
    Launcher,
    LaunchSettings,
    flag_values,
)
from servesim.engine.profiles.vllm import (
    V1_FRONTEND_IN_S,
    V1_FRONTEND_OUT_S,
    V1_FRONTEND_PER_OUTPUT_S,
)


class TRTLLMLauncher(Launcher):
    """``trtllm-serve MODEL --tp_size ... --max_batch_size ... --max_num_tokens ...``."""

    def args(self, settings: LaunchSettings, version: str) -> list[str]:
        s = settings
        args = ["trtllm-serve", s.model, "--backend", "pytorch", "--tp_size", str(s.tp),
                "--pp_size", str(s.pp), "--max_batch_size", str(s.max_num_seqs),
                "--kv_cache_free_gpu_memory_fraction", str(s.gpu_memory_utilization)]  # fmt: skip
        if s.ep > 1:
            args += ["--ep_size", str(s.ep)]
        if s.max_num_batched_tokens is not None:
            args += ["--max_num_tokens", str(s.max_num_batched_tokens)]
        # dtype, KV format and KV reuse have no trtllm-serve flag: they come from the
        # checkpoint and --extra_llm_api_options (kv_cache_config); said in a comment.
        return args

    def command(self, settings: LaunchSettings, version: str) -> str:
        extra = (
            "" if settings.enable_prefix_caching else ", kv_cache_config.enable_block_reuse: false"
        )
        if settings.kv_dtype is not None:
            extra += f", kv_cache_config.dtype: {settings.kv_dtype}"
        return super().command(settings, version) + f" ({settings.dtype} checkpoint{extra})"

    def parse(self, argv: list[str]) -> LaunchSettings:
        words, f = flag_values(argv)
        tokens = f.get("--max_num_tokens")
        return LaunchSettings(
            model=words[1],
            tp=int(f["--tp_size"] or 1),
            pp=int(f["--pp_size"] or 1),
            max_num_seqs=int(f["--max_batch_size"] or 2048),
            max_num_batched_tokens=int(tokens) if tokens else None,
            enable_chunked_prefill=False,
            enable_prefix_caching=True,
            gpu_memory_utilization=float(f["--kv_cache_free_gpu_memory_fraction"] or 0.9),
            ep=int(f.get("--ep_size") or 1),
        )


TRTLLM = ENGINES.register("trtllm")(
    EngineProfile(
        name="trtllm",
        engine="trtllm",
        version="TensorRT-LLM 1.0 (trtllm-serve, PyTorch backend)",
        description="in-flight batching (context + generation in one batch, max_num_tokens "
        "8192), overlap scheduler, KV reuse; unified-budget scheduler",
        host_profile="trtllm",
        kernel_stack="vllm-0.24",
        kernel_stack_note="no TensorRT-LLM tables: vllm-0.24 (FA3/cutlass on Hopper) stands in",
        scheduler={
            "kind": "vllm",
            "version": "v1",
            "max_num_seqs": 2048,
            "max_num_batched_tokens": 8192,
        },
        cache={"enable_prefix_caching": True, "preemption_mode": "recompute", "block_size": 32},
        cuda_graph_max_tokens=128,
        cuda_graphs_with_prefill=False,
        overlap="host work of step N+1 during GPU step N (overlap scheduler)",
        launcher=TRTLLMLauncher(),
        admission_lag_steps=1,  # overlap scheduler: step N+1 formed during step N
        # vLLM V1's front end (trtllm-serve's OpenAI server tokenises and detokenises in its
        # own process as well); not fitted to TensorRT-LLM runs.
        frontend_latency_s=V1_FRONTEND_IN_S,
        output_latency_s=V1_FRONTEND_OUT_S,
        output_per_seq_s=V1_FRONTEND_PER_OUTPUT_S,
    )
)
