"""Documented figures the calibration starts from: reference peaks, attention kernel curves,
default efficiencies for unmeasured GPUs and the host overhead of a vLLM 0.6-style engine.

Each figure names its source; they are written into ``calibration.json`` by the calibrate step.
"""

from __future__ import annotations

# Dense bf16 tensor peak and HBM bandwidth assumed while fitting (vendor data sheets):
# H100 SXM5 989.4 TFLOP/s, 3.35 TB/s (NVIDIA H100 datasheet); A100 SXM 80GB 312 TFLOP/s,
# 2.039 TB/s (NVIDIA A100 datasheet); A40 149.7 TFLOP/s, 696 GB/s (NVIDIA A40 datasheet).
REFERENCE_GPUS: dict[str, tuple[float, float]] = {
    "h100": (989.4e12, 3.35e12),
    "a100": (312e12, 2.039e12),
    "a40": (149.7e12, 696e9),
}

# No attention table was measured (vidur's attention.csv is absent; no device in this task).
# Prefill: FlashAttention-2 forward, causal, head dim 128 reaches ~330-370 TFLOP/s on H100
# (Shah et al. 2024, FlashAttention-3, Fig. 5; ~35-38% of peak) and ~190 TFLOP/s on A100
# (Dao 2023, FlashAttention-2, Fig. 5; ~62%), falling at short sequences.
# Decode: paged attention reads KV at ~70% of HBM bandwidth for long contexts (FlashInfer,
# Ye et al. 2025, Fig. 7, vLLM/FA2 baselines), less for short ones.
ATTENTION_DEFAULTS: dict[str, dict[str, float | str]] = {
    "h100": {
        "prefill_e_max": 0.40,
        "prefill_len_half": 384.0,
        "decode_mem_eff": 0.70,
        "decode_ctx_half": 192.0,
        "launch_s": 6e-6,
        "source": "documented: FlashAttention-3 paper Fig.5 (FA2 on H100); FlashInfer paper",
    },
    "a100": {
        "prefill_e_max": 0.66,
        "prefill_len_half": 384.0,
        "decode_mem_eff": 0.70,
        "decode_ctx_half": 192.0,
        "launch_s": 6e-6,
        "source": "documented: FlashAttention-2 paper Fig.5 (A100); FlashInfer paper",
    },
}

# A GPU without measurements: the mean of the fitted H100/A100 curves, rounded (uncalibrated).
DEFAULT_GPU: dict = {
    "calibrated": False,
    "gemm": {
        "e_max": 0.75,
        "m_half": 24.0,
        "kn_half": 60.0,
        "mem_eff": 0.88,
        "launch_s": 4e-6,
        "blend": 1.6,
    },
    "elementwise": {
        "norm": {"mem_eff": 0.5, "launch_s": 4e-6},
        # fused add + RMSNorm: the norm's fixed cost, the add's streaming efficiency
        "fused_add_norm": {"mem_eff": 0.6, "launch_s": 4e-6},
        "rope": {"mem_eff": 0.5, "launch_s": 4e-6},
        "activation": {"mem_eff": 0.6, "launch_s": 4e-6},
        "add": {"mem_eff": 0.6, "launch_s": 3e-6},
        "embedding": {"mem_eff": 0.5, "launch_s": 4e-6},
    },
    "attention": {
        "prefill_e_max": 0.40,
        "prefill_len_half": 384.0,
        "decode_mem_eff": 0.65,
        "decode_ctx_half": 192.0,
        "launch_s": 6e-6,
        "source": "documented defaults (see h100/a100 entries)",
    },
    "source": "uncalibrated: roofline with default efficiencies",
}

# Host time per iteration of vLLM 0.6 (V0 engine, async output processing on).
# - base_s: the GPU bubble between two decode steps (sampled-token copy to the host, sampler
#   pythonization, scheduler, input preparation and broadcast to the TP workers), ~4 ms per
#   decode step in the profiles of vLLM RFC #6854 (multi-step scheduling, H100 traces:
#   https://github.com/vllm-project/vllm/issues/6854); the vLLM v0.6.0 release post
#   (blog.vllm.ai/2024/09/05/perf-update.html) attributes ~29% of step time to this work.
# - per_seq_s: host work per running decode sequence per step that async output processing
#   does not hide: the scheduler's per-group pass (block appends, SequenceGroupMetadata with its
#   block table), _prepare_model_input's per-sequence lists, sampler pythonization, and one
#   RequestOutput per request per step through AsyncLLMEngine and the 0.6 RPC front end.
#   Scale of one such component: _process_model_outputs alone costs ~0.1 ms per sequence for
#   Llama-3-70B on 4x H100 (3.4 ms at batch 32, vLLM RFC #6913). The value 0.3 ms is set on the
#   apex_plus Llama-3.1-70B TP8 creation runs only (ITL within 2%); TP4 and TP2 runs and the
#   lmsys/summarization workloads are held out (see bench/validate_apex.py).
HOST_OVERHEAD: dict[str, float | str | bool] = {
    "base_s": 4.0e-3,
    "per_seq_s": 3.0e-4,
    "per_prefill_seq_s": 6.0e-5,
    # Eager host time per kernel in steps vLLM 0.6 cannot replay as a CUDA graph (any step with
    # a prefill or more than 256 sequences; model_runner captures decode-only batches): Python
    # module call, PyTorch dispatch and launch, paid in lock-step by every TP worker (the
    # all-reduces join them). Scale: Llama-3.1-8B decode on one H100 takes 8.4 ms eager vs
    # 5.1 ms as a CUDA graph (cloudai.pt/cuda-graphs-torch-compile-1-65x-llm-decode-speedup),
    # ~19 us per kernel at 14 kernels per layer. The value 26 us is set on the apex_plus
    # Llama-3.1-70B TP8 lmsys runs only (TTFT of one short eager prefill step); TP4/TP2 and
    # the other workloads are held out.
    "cpu_launch_s": 2.6e-5,
    "graph_kernel_gap_s": 1.5e-6,
    # vLLM 0.6 captures CUDA graphs for decode-only batches of up to 256 sequences
    # (model_runner ``_BATCH_SIZES_TO_CAPTURE``); every other step launches eagerly.
    "max_graph_tokens": 256,
    "graphs_with_prefill": False,
    "source": "base_s: vLLM RFC #6854 (~4 ms decode-step bubble); per_seq_s: set on apex_plus "
    "vLLM 0.6 Llama-3.1-70B TP8 creation ITL (scale: RFC #6913); cpu_launch_s: set on its TP8 "
    "lmsys TTFT (scale: 8B eager vs graph decode); TP4/TP2 held out",
}
# vLLM >= 0.8 (V1 engine), synchronous scheduling (0.8-0.10 default): schedule -> execute ->
# update_from_output each step in the EngineCore busy loop; API server, tokenisation and
# detokenisation run in other processes (V1 alpha post, blog.vllm.ai/2025/01/27), so the
# per-request work left in the loop is the scheduler pass, the persistent-batch diff in
# gpu_model_runner._prepare_inputs and sampling/output collection.
# - base_s 0.6 ms: the per-step loop at small batch. Scale: vLLM PR #17866 (a fast decode path
#   for _prepare_inputs) cuts Llama-3.2-1B serving TPOT from 2.73 ms by ~10%, i.e. ~0.27 ms of
#   input preparation alone per step; scheduler + output update are of the same order.
# - per_seq_s 25 us: Scheduler.schedule costs ~12.7 us per running request at the cap in a
#   cProfile of the V1 loop (openfabric-systems/simllm PR #204, vLLM 0.27 CPU build); output
#   update and the per-request EngineCoreOutput roughly double it.
# - per_prefill_seq_s 50 us: a new request's block allocation, prefix-cache lookup and
#   CachedRequestData, V0's per-prefill figure (the same work) kept.
# - cpu_launch_s: V0's (same PyTorch dispatch); piecewise CUDA graphs (attention outside)
#   cover any batch, prefill included, up to 512 tokens (CompilationConfig capture sizes).
# These CPU figures are documented scales, not fitted: BLIS (the V1 dev set) ran with async
# scheduling (below), where they are hidden under GPU time.
_V1_CPU: dict[str, float | str | bool] = {
    "base_s": 6.0e-4,
    "per_seq_s": 2.5e-5,
    "per_prefill_seq_s": 5.0e-5,
    "per_token_s": 0.0,
    "cpu_launch_s": 2.6e-5,
    "graph_kernel_gap_s": 1.5e-6,
    "max_graph_tokens": 512,
    "graphs_with_prefill": True,
}
HOST_OVERHEAD_V1: dict[str, float | str | bool] = {
    **_V1_CPU,
    "overlap": "none",
    "source": "vllm-v1 (0.8-0.10, synchronous scheduling): base 0.6 ms (scale: PR #17866 "
    "_prepare_inputs ~0.27 ms/step), 25 us per running request (scheduler ~12.7 us/request, "
    "simllm PR #204), piecewise CUDA graphs <= 512 tokens; documented scales, not fitted",
}
# vLLM V1 with async scheduling (--async-scheduling, PR #19970 in 0.10; on by default since
# PR #27614): the scheduler runs one step ahead ("output placeholders"), so step N+1's
# scheduling and input preparation overlap GPU step N (NanoFlow-style): a step takes
# max(GPU, CPU) + exposed_s. exposed_s is the serial hand-off that remains (copying the
# sampled tokens back, launching the next graph); 0.2 ms set on the BLIS V1 dev set's
# low-load stages (TPOT), checked on every stage (servesim validate --dataset blis).
# Independent scale: vLLM PR #23569 ("fully overlap model execution", 0.11) expected 5-10%
# over the async scheduling before it by hiding input preparation and sampled-token
# pythonisation too, i.e. ~0.3-0.7 ms of a 7 ms small-model step was still serial then; what
# it leaves (a device-to-host copy of the token ids and a graph launch) is ~0.1-0.2 ms.
HOST_OVERHEAD_V1_ASYNC: dict[str, float | str | bool] = {
    **_V1_CPU,
    "overlap": "step",
    "exposed_s": 2.0e-4,
    "source": "vllm-v1-async: vllm-v1's CPU work hidden under the previous GPU step (async "
    "scheduling, PR #19970); exposed 0.2 ms set on blis_vllm_v1_h100 low-load TPOT",
}
# SGLang 0.4/0.5 overlap scheduler (on by default since 0.4; "zero-overhead batch scheduler",
# LMSYS blog 2024-12-04: CPU scheduling of batch N+1 runs while the GPU runs batch N, result
# processing deferred one step; python/sglang/srt/managers/scheduler.py
# event_loop_overlap). The CPU work per request is of V1's order (Python scheduler, radix
# tree match); no SGLang dev set exists, so V1's figures are used, not fitted.
HOST_OVERHEAD_SGLANG: dict[str, float | str | bool] = {
    **_V1_CPU,
    "max_graph_tokens": 160,
    "graphs_with_prefill": False,
    "overlap": "step",
    "exposed_s": 2.0e-4,
    "source": "sglang: overlap scheduler (CPU of batch N+1 under GPU batch N, LMSYS blog "
    "2024-12-04); CPU figures and exposed time borrowed from vllm-v1(-async), not fitted; "
    "CUDA graphs for decode batches <= 160 (cuda_graph_max_bs)",
}
# TensorRT-LLM 1.0 (PyTorch backend): C++ batch manager and overlap scheduler
# (disable_overlap_scheduler=False by default: host work of step N+1 during step N);
# per-request host work is smaller than the Python engines' but not published; V1's figures
# halved stand in (a documented guess, not fitted: no TensorRT-LLM dev set).
HOST_OVERHEAD_TRTLLM: dict[str, float | str | bool] = {
    **_V1_CPU,
    "base_s": 3.0e-4,
    "per_seq_s": 1.25e-5,
    "per_prefill_seq_s": 2.5e-5,
    "max_graph_tokens": 128,
    "graphs_with_prefill": False,
    "overlap": "step",
    "exposed_s": 2.0e-4,
    "source": "trtllm: overlap scheduler; V1 CPU figures halved (C++ runtime; a guess, not "
    "fitted); CUDA graphs for generation batches <= 128",
}

# Pure GPU time: no host work between steps and kernels never wait for the CPU (the hardware
# bound researchers compare engines against).
HOST_OVERHEAD_NONE: dict[str, float | str | bool] = {
    "base_s": 0.0,
    "per_seq_s": 0.0,
    "per_prefill_seq_s": 0.0,
    "cpu_launch_s": 0.0,
    "graph_kernel_gap_s": 0.0,
    "max_graph_tokens": 0,
    "graphs_with_prefill": False,
    "source": "none: GPU time only (no host overhead, no CPU launch bound)",
}

# vLLM 0.6 V0 with ``--num-scheduler-steps 8`` (multi-step scheduling, RFC #6854 and PR #7000,
# whose example and benchmarks use 8 steps). The RFC's traces show the ~4 ms per-step bubble
# (token copy to the host, pythonisation, input preparation, scheduler) "incurred once for
# every 8 decode steps": the sampled-token copy runs on a side stream while the GPU advances
# the inputs itself, so decode-only steps pay V0's base and per-sequence costs divided by 8.
# vLLM 0.6.0 runs any step with a prefill as a single step ("Force Single Step", tracking issue
# #7528), so those pay V0's full costs. Amortised per step: the engine still schedules every
# step (requests finishing inside a group, and arrivals waiting for its end, are not modelled).
HOST_OVERHEAD_MULTISTEP: dict[str, float | str | bool] = {
    **HOST_OVERHEAD,
    "num_scheduler_steps": 8,
    "source": "vllm-v0-multistep: vllm-v0 with --num-scheduler-steps 8; decode-only steps pay "
    "base and per-sequence costs / 8 (RFC #6854: the ~4 ms bubble once per 8 decode steps); "
    "prefill steps single-step (issue #7528)",
}

# Host-overhead profiles by serving engine (``ReplicaPlan.host_profile``).
HOST_PROFILES: dict[str, dict[str, float | str | bool]] = {
    "vllm-v0": HOST_OVERHEAD,
    "vllm-v0-multistep": HOST_OVERHEAD_MULTISTEP,
    "vllm-v1": HOST_OVERHEAD_V1,
    "vllm-v1-async": HOST_OVERHEAD_V1_ASYNC,
    "sglang": HOST_OVERHEAD_SGLANG,
    "trtllm": HOST_OVERHEAD_TRTLLM,
    "none": HOST_OVERHEAD_NONE,
}
