"""vLLM profiles: 0.6 (V0 engine), V1 (>= 0.8) and V1 with async scheduling (0.10+ flag,
default in recent releases), and the ``vllm serve`` launch line."""

from __future__ import annotations

from servesim.engine.profiles.base import (
    ENGINES,
    WEIGHT_ONLY_QUANTIZATION,
    EngineProfile,
    Launcher,
    LaunchSettings,
    flag_values,
)

_DTYPE_FLAGS = {"bf16": "bfloat16", "fp16": "float16"}


class VLLMLauncher(Launcher):
    """``vllm serve MODEL --tensor-parallel-size ...`` (vLLM's CLI flag names).

    Args:
        async_scheduling: add ``--async-scheduling`` (V1, 0.10+).
        is_v1: V1 always chunks prefills and caches prefixes by default, so only the
            opposite of the default is written (``--no-enable-prefix-caching``).
    """

    def __init__(self, *, is_v1: bool, async_scheduling: bool = False) -> None:
        self.is_v1 = is_v1
        self.async_scheduling = async_scheduling

    def args(self, settings: LaunchSettings, version: str) -> list[str]:
        s = settings
        args = ["vllm", "serve", s.model, "--tensor-parallel-size", str(s.tp),
                "--pipeline-parallel-size", str(s.pp), "--max-num-seqs", str(s.max_num_seqs),
                "--gpu-memory-utilization", str(s.gpu_memory_utilization),
                "--block-size", str(s.block_size)]  # fmt: skip
        if s.dp_attention > 1:
            # vLLM >= 0.9 (V1): D engine ranks of tp GPUs, experts over TP x DP GPUs
            # (docs/serving/data_parallel_deployment.md)
            args += ["--data-parallel-size", str(s.dp_attention)]
        if s.ep > 1:
            # vLLM has no separate EP size: --enable-expert-parallel spreads the experts over
            # the TP (x DP) ranks instead of sharding each expert.
            args.append("--enable-expert-parallel")
        if s.all2all_backend != "allgather_reducescatter" and self.async_scheduling:
            # the flag since vLLM 0.11 (PR #26732); earlier ones read the env var (command())
            args += ["--all2all-backend", s.all2all_backend]
        if s.max_num_batched_tokens is not None:
            args += ["--max-num-batched-tokens", str(s.max_num_batched_tokens)]
        if not self.is_v1 and s.enable_chunked_prefill is not None:
            args += ["--enable-chunked-prefill", str(s.enable_chunked_prefill)]
        if s.dtype == "fp8":
            args += ["--quantization", "fp8"]
        elif s.dtype in ("int8", "int4"):
            args += ["--quantization", WEIGHT_ONLY_QUANTIZATION]
        else:
            args += ["--dtype", _DTYPE_FLAGS.get(s.dtype, s.dtype)]
        if s.kv_dtype == "fp8":
            args += ["--kv-cache-dtype", "fp8"]
        if self.is_v1 and not s.enable_prefix_caching:
            args.append("--no-enable-prefix-caching")
        elif not self.is_v1 and s.enable_prefix_caching:
            args.append("--enable-prefix-caching")
        if self.async_scheduling:
            args.append("--async-scheduling")
        return args

    def command(self, settings: LaunchSettings, version: str) -> str:
        """The launch line; before vLLM 0.11 a non-default all2all backend is the
        ``VLLM_ALL2ALL_BACKEND`` environment variable (``vllm/envs.py``)."""
        line = super().command(settings, version)
        if settings.all2all_backend != "allgather_reducescatter" and not self.async_scheduling:
            line = f"VLLM_ALL2ALL_BACKEND={settings.all2all_backend} {line}"
        return line

    def parse(self, argv: list[str]) -> LaunchSettings:
        words, f = flag_values(argv)
        dtypes = {v: k for k, v in _DTYPE_FLAGS.items()}
        dtype = (
            "fp8"
            if f.get("--quantization") == "fp8"
            else dtypes.get(f.get("--dtype") or "", "bf16")
        )
        chunked = f.get("--enable-chunked-prefill")
        budget = f.get("--max-num-batched-tokens")
        dp = int(f.get("--data-parallel-size") or 1)
        return LaunchSettings(
            model=words[2],
            tp=int(f["--tensor-parallel-size"] or 1),
            pp=int(f["--pipeline-parallel-size"] or 1),
            dtype=dtype,
            max_num_seqs=int(f["--max-num-seqs"] or 256),
            max_num_batched_tokens=int(budget) if budget else None,
            enable_chunked_prefill=True
            if self.is_v1
            else (None if chunked is None else chunked == "True"),
            enable_prefix_caching=(
                "--no-enable-prefix-caching" not in f
                if self.is_v1
                else "--enable-prefix-caching" in f
            ),
            gpu_memory_utilization=float(f["--gpu-memory-utilization"] or 0.9),
            block_size=int(f["--block-size"] or 16),
            ep=int(f["--tensor-parallel-size"] or 1) * dp if "--enable-expert-parallel" in f else 1,
            kv_dtype="fp8" if f.get("--kv-cache-dtype") == "fp8" else None,
            dp_attention=dp,
            all2all_backend=f.get("--all2all-backend") or "allgather_reducescatter",
        )


# vLLM 0.6.0 (the APEX runs): V0 engine, async output processing on, chunked prefill only for
# max_model_len > 32K (then a 512-token budget), prefix caching off, max_num_seqs 256
# (EngineArgs), preemption by recompute, CUDA graphs for decode-only batches up to 256
# sequences (model_runner _BATCH_SIZES_TO_CAPTURE).
VLLM_06 = ENGINES.register("vllm-0.6")(
    EngineProfile(
        name="vllm-0.6",
        engine="vllm",
        version="vLLM 0.6.0 (V0 engine)",
        description="V0 scheduler (prefill-first; chunked only past 32K context), async "
        "output processing, decode-only CUDA graphs <= 256 sequences",
        host_profile="vllm-v0",
        kernel_stack="vllm-0.6",
        scheduler={"kind": "vllm", "version": "v0", "max_num_seqs": 256},
        cache={"enable_prefix_caching": False, "preemption_mode": "recompute", "block_size": 16},
        cuda_graph_max_tokens=256,
        cuda_graphs_with_prefill=False,
        overlap="output processing of step N runs during step N+1 (async output processing)",
        launcher=VLLMLauncher(is_v1=False),
    )
)

# The V1 front end (vllm/v1/engine/async_llm.py + core_client.py): the API server process
# parses the HTTP request, tokenises the prompt and sends it to the engine-core process over
# ZMQ (msgpack); the engine core's input thread queues it and the busy loop adds it to the
# scheduler between steps. Outputs go back the same way: engine core -> ZMQ -> the API
# server's output handler, which detokenises incrementally and writes the SSE chunk the
# client timestamps (vllm bench serve / inference-perf measure TTFT and E2E at the client).
# So both sides add to TTFT and E2E; only the input side can change which step a request
# joins. Set on BLIS (the sum, 3 ms: see vllm-v1-async); the split is by the published
# scale of each side's work: tokenising a 500-1,000-token prompt with a HF fast tokenizer is
# ~1-2 us/token, i.e. 1-2 ms (tenstorrent/tt-inference-server#2173: 1.3-2.8 ms for 131
# tokens with a chat template), plus HTTP parsing and the ZMQ hop; the output side per step
# is one ZMQ hop, incremental detokenisation (~30 us/token, vLLM PR #121) and one SSE write.
V1_FRONTEND_IN_S = 2e-3
V1_FRONTEND_OUT_S = 1e-3
# Front-end time per output ahead of a first token (EngineTiming.output_per_seq_s). Order:
# the scheduler's update_from_output walks the step's requests in scheduling order, running
# ones first and the newly scheduled ones last (vllm/v1/core/sched/scheduler.py), and the API
# server's output handler (AsyncLLM.output_handler -> OutputProcessor.process_outputs)
# detokenises them in that order before each request's stream task formats and writes its
# SSE chunk; so a new request's first token waits for every running request's output of
# that step. Scale per output: incremental detokenisation (~30 us, vLLM PR #121) plus a
# CompletionStreamResponse built, JSON-encoded and written (tens of us of Python).
# Value: fitted on the BLIS V1 dev set's median TTFT (the tail-robust statistic; one
# parameter over 20 stages of 4 models, 9-112 requests in flight): 80 us zeroes the median
# signed error (0 us: -6.9%; 40: -3.5%; 60: -1.9%; 80: -0.2%). Its effect grows with the
# number of requests in flight, which is how the measured TTFT excess grows (1-2 ms at 10-20
# in flight, 6-10 ms at 80-110), while TPOT stays as it was (the wait is the same along a
# stream). The APEX runs (vLLM 0.6, one process) have no such front end.
V1_FRONTEND_PER_OUTPUT_S = 80e-6

# vLLM >= 0.8 V1 engine (vllm/v1/core/sched/scheduler.py): chunked prefill always, one token
# budget, prefix caching on by default, recompute preemption. EngineArgs._set_default_args_v1
# (0.8+): the OpenAI server on GPUs with >= 70 GiB defaults to max_num_batched_tokens 8192 and
# max_num_seqs 1024 (2048 / 256 on smaller GPUs). Piecewise CUDA graphs (attention outside)
# for batches up to 512 tokens, prefill included (CompilationConfig capture sizes).
_V1_SCHEDULER = {
    "kind": "vllm",
    "version": "v1",
    "max_num_seqs": 256,
    "max_num_batched_tokens": 2048,
}
_V1_LARGE = {"max_num_seqs": 1024, "max_num_batched_tokens": 8192}
_V1_CACHE = {"enable_prefix_caching": True, "preemption_mode": "recompute", "block_size": 16}

VLLM_V1 = ENGINES.register("vllm-v1")(
    EngineProfile(
        name="vllm-v1",
        engine="vllm",
        version="vLLM 0.8-0.10 (V1 engine, synchronous scheduling)",
        description="V1 scheduler (chunked prefill always, unified token budget), prefix "
        "caching on, piecewise CUDA graphs <= 512 tokens",
        host_profile="vllm-v1",
        kernel_stack="vllm-0.24",
        kernel_stack_note="vllm-0.24 tables (FlashAttention 3); without them vllm-0.6 stands in",
        scheduler=_V1_SCHEDULER,
        large_gpu_scheduler=_V1_LARGE,
        cache=_V1_CACHE,
        cuda_graph_max_tokens=512,
        cuda_graphs_with_prefill=True,
        overlap="detokenisation and the API server in other processes; scheduling serial",
        launcher=VLLMLauncher(is_v1=True),
        # Same API server and engine-core IPC as vllm-v1-async (see there); no lag: the
        # next step is formed when the current one ends (EngineCore.step).
        frontend_latency_s=V1_FRONTEND_IN_S,
        output_latency_s=V1_FRONTEND_OUT_S,
        output_per_seq_s=V1_FRONTEND_PER_OUTPUT_S,
    )
)

# --async-scheduling (PR #19970, 0.10; on by default since PR #27614, late 2025): the
# scheduler runs one step ahead, so step N+1's CPU work overlaps step N's GPU work and a
# request arriving during step N is first scheduled in step N+2.
VLLM_V1_ASYNC = ENGINES.register("vllm-v1-async")(
    EngineProfile(
        name="vllm-v1-async",
        engine="vllm",
        version="vLLM >= 0.11 (V1 engine, async scheduling)",
        description="vllm-v1 with async scheduling: CPU work of step N+1 under GPU step N",
        host_profile="vllm-v1-async",
        kernel_stack="vllm-0.24",
        kernel_stack_note=VLLM_V1.kernel_stack_note,
        scheduler=_V1_SCHEDULER,
        large_gpu_scheduler=_V1_LARGE,
        cache=_V1_CACHE,
        cuda_graph_max_tokens=512,
        cuda_graphs_with_prefill=True,
        overlap="scheduling and input preparation of step N+1 during GPU step N",
        launcher=VLLMLauncher(is_v1=True, async_scheduling=True),
        # Lag 1 (vllm/v1/engine/core.py, step_with_batch_queue with batch_queue_size 2 under
        # async scheduling, PR #19970): right after launching step N the engine core
        # schedules step N+1 ("filling the batch queue has a higher priority than getting
        # model outputs"), so a request that reaches the scheduler during step N first
        # joins step N+2.
        # Set on the BLIS V1 dev set (by the first engines helper; not retuned): measured
        # low-load TTFT exceeds the synchronous replay by ~1 step + ~3 ms in all four models
        # (7B: 13 ms at a 7 ms step; 70B TP4: 30 ms at an 18 ms step). Independent scale of
        # the 3 ms: vLLM PR #17866's V1 serving run, 21 ms TTFT for 500-token prompts on a
        # 1B model whose prefill is ~2 ms; split in/out as V1_FRONTEND_IN_S/_OUT_S say.
        admission_lag_steps=1,
        frontend_latency_s=V1_FRONTEND_IN_S,
        output_latency_s=V1_FRONTEND_OUT_S,
        output_per_seq_s=V1_FRONTEND_PER_OUTPUT_S,
    )
)
