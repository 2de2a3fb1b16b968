"""SGLang 0.4/0.5 profile and its ``python -m sglang.launch_server`` line.

Defaults from ``sglang/srt/server_args.py`` (0.4.x-0.5.x): ``chunked_prefill_size`` 8192 on
GPUs with more than ~60 GB (2048 on small ones), radix prefix cache on (``--disable-radix-cache``
turns it off), ``mem_fraction_static`` ~0.88 on H100-class GPUs, ``cuda_graph_max_bs`` 160 at
small TP, the overlap scheduler on (``--disable-overlap-schedule``: the CPU work of batch N+1,
scheduling and result processing, runs while the GPU runs batch N), retraction (recompute) when
KV runs out. ``max_running_requests`` is sized from the KV pool; 1024 stands for "rarely binding".

Scheduling rules: SGLang runs prefill batches and decode batches separately unless
``--enable-mixed-chunk``; servesim runs it with the V1-style unified-budget scheduler (its
closest built-in; prefill and decode then share steps), stated in every summary.
"""

from __future__ import annotations

from servesim.engine.profiles.base import (
    ENGINES,
    WEIGHT_ONLY_QUANTIZATION,
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

_DTYPE = {"bf16": "bfloat16", "fp16": "float16"}
# vLLM's all2all backends in SGLang 0.5's flags (server_args.py: --moe-a2a-backend,
# --deepep-mode normal|low_latency); its default gathers the DP ranks' tokens (dp_gather) as
# vLLM's allgather_reducescatter does; pplx has no SGLang 0.5 flag (the default is written)
_A2A_FLAGS = {
    "deepep_high_throughput": ["--moe-a2a-backend", "deepep", "--deepep-mode", "normal"],
    "deepep_low_latency": ["--moe-a2a-backend", "deepep", "--deepep-mode", "low_latency"],
}


class SGLangLauncher(Launcher):
    """``python -m sglang.launch_server --model-path ... --tp ...``."""

    def args(self, settings: LaunchSettings, version: str) -> list[str]:
        s = settings
        # with --enable-dp-attention --tp is the whole group (attention TP = tp / dp-size,
        # sglang/srt/layers/dp_attention.py compute_dp_attention_world_info)
        tp = s.tp * s.dp_attention
        args = ["python", "-m", "sglang.launch_server", "--model-path", s.model, "--tp", str(tp),
                "--max-running-requests", str(s.max_num_seqs),
                "--mem-fraction-static", str(s.gpu_memory_utilization),
                "--page-size", str(s.block_size)]  # fmt: skip
        if s.pp > 1:
            args += ["--pp-size", str(s.pp)]
        if s.dp_attention > 1:
            args += ["--dp-size", str(s.dp_attention), "--enable-dp-attention"]
        if s.ep > 1:
            args += ["--ep-size", str(s.ep)]
        args += _A2A_FLAGS.get(s.all2all_backend, [])
        if s.dense_mlp == "replicated":  # the only value SGLang takes besides its default
            args += ["--moe-dense-tp-size", "1"]
        if s.max_num_batched_tokens is not None:
            args += ["--chunked-prefill-size", str(s.max_num_batched_tokens)]
        if s.dtype == "fp8":
            args += ["--quantization", "fp8"]
        elif s.dtype in ("int8", "int4"):
            args += ["--quantization", WEIGHT_ONLY_QUANTIZATION]
        else:
            args += ["--dtype", _DTYPE.get(s.dtype, s.dtype)]
        if s.kv_dtype == "fp8":
            args += ["--kv-cache-dtype", "fp8_e4m3"]
        if not s.enable_prefix_caching:
            args.append("--disable-radix-cache")
        return args

    def parse(self, argv: list[str]) -> LaunchSettings:
        _, f = flag_values(argv)
        dtypes = {v: k for k, v in _DTYPE.items()}
        dtype = (
            "fp8"
            if f.get("--quantization") == "fp8"
            else dtypes.get(f.get("--dtype") or "", "bf16")
        )
        chunk = f.get("--chunked-prefill-size")
        dp = int(f.get("--dp-size") or 1) if "--enable-dp-attention" in f else 1
        a2a = [k for k, v in _A2A_FLAGS.items() if v and v[-1] == f.get("--deepep-mode")]
        return LaunchSettings(
            model=f["--model-path"] or "",
            tp=int(f["--tp"] or 1) // dp,
            pp=int(f.get("--pp-size") or 1),
            dtype=dtype,
            max_num_seqs=int(f["--max-running-requests"] or 1024),
            max_num_batched_tokens=int(chunk) if chunk else None,
            enable_chunked_prefill=True,
            enable_prefix_caching="--disable-radix-cache" not in f,
            gpu_memory_utilization=float(f["--mem-fraction-static"] or 0.88),
            block_size=int(f["--page-size"] or 1),
            ep=int(f.get("--ep-size") or 1),
            kv_dtype="fp8" if f.get("--kv-cache-dtype") == "fp8_e4m3" else None,
            dp_attention=dp,
            all2all_backend=a2a[0] if a2a else "allgather_reducescatter",
            dense_mlp="replicated" if f.get("--moe-dense-tp-size") == "1" else "auto",
        )


SGLANG = ENGINES.register("sglang")(
    EngineProfile(
        name="sglang",
        engine="sglang",
        version="SGLang 0.4/0.5",
        description="chunked prefill (8192 tokens on large GPUs), radix prefix cache, "
        "overlap scheduler; run with servesim's unified-budget (V1-style) scheduler",
        host_profile="sglang",
        kernel_stack="sglang-0.5",
        kernel_stack_note="sglang-0.5 tables (H100/H200); vllm-0.24 stands in elsewhere",
        scheduler={
            "kind": "vllm",
            "version": "v1",
            "max_num_seqs": 1024,
            "max_num_batched_tokens": 2048,
        },
        large_gpu_scheduler={"max_num_batched_tokens": 8192},
        cache={
            "enable_prefix_caching": True,
            "preemption_mode": "recompute",
            "block_size": 16,
            "gpu_memory_utilization": 0.88,
        },
        cuda_graph_max_tokens=160,
        cuda_graphs_with_prefill=False,
        overlap="scheduling and result processing of batch N+1 during GPU batch N",
        launcher=SGLangLauncher(),
        admission_lag_steps=1,  # overlap scheduler: batch N+1 formed during batch N
        # vLLM V1's front end (tokenizer manager and detokenizer are processes of their own,
        # talking to the scheduler over ZMQ as in vLLM V1); not fitted to SGLang runs.
        frontend_latency_s=V1_FRONTEND_IN_S,
        output_latency_s=V1_FRONTEND_OUT_S,
        output_per_seq_s=V1_FRONTEND_PER_OUTPUT_S,
    )
)
