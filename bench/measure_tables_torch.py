"""The PyTorch side of bench/measure_tables.py: build each op on the GPU and time it.

Imported only when measuring (never by ``--dry-run`` or the tests). Needs PyTorch >= 2.3
(``torch.nn.attention.sdpa_kernel``) and a CUDA GPU; flash_attn (FA2) or flash_attn_interface
(FA3) are used for attention when importable, vLLM's fused fp8 quantiser when vLLM is.
Every kernel actually used is written to ``kernel_source``; ``_eager`` marks a row timed
without a CUDA graph (capture failed or ``--no-graph``), whose latency includes launch cost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from measure_tables_io import Stamp
from measure_tables_plan import AttentionCase, CommCase, GemmCase
from measure_tables_timing import Run, Timing, time_op

logger = logging.getLogger(__name__)

# aiconfigurator's vLLM GEMM collector times 6 layers with distinct weights per graph and
# divides by 6, so a call never reads its weight from L2 left by the call before.
GEMM_COPIES = 6
FP8_E4M3_MAX = 448.0  # largest finite float8_e4m3fn
COMM_RUNS = 20  # fixed, so every rank of a group runs the same number of collectives
BF16 = torch.bfloat16


class CudaTimer:
    """CUDA events and graphs behind ``measure_tables_timing.Timer``."""

    def __init__(self, use_graphs: bool) -> None:
        self.use_graphs = use_graphs

    def warmup(self, run: Run, num_iters: int) -> None:
        """Warm up on a side stream, as torch.cuda.graph asks (lazy cuBLAS/NCCL setup)."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(num_iters):
                run()
        torch.cuda.current_stream().wait_stream(stream)
        torch.cuda.synchronize()

    def capture(self, run: Run) -> Run | None:
        """The graph's replay, or None (eager) when capture is off or fails."""
        if not self.use_graphs:
            return None
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                run()
        except RuntimeError as error:
            logger.warning("CUDA graph capture failed, timing eagerly: %s", error)
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            return None
        return graph.replay  # the bound method keeps the graph alive

    def elapsed_ms(self, step: Run, num_iters: int) -> float:
        """CUDA-event time of ``num_iters`` back-to-back steps."""
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(num_iters):
            step()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)


def device_facts(device: torch.device) -> dict[str, str]:
    """Device name, compute capability, torch and NCCL versions (for rows and notes)."""
    major, minor = torch.cuda.get_device_capability(device)
    nccl = torch.cuda.nccl.version()
    if isinstance(nccl, int):  # older torch: 2708 means 2.7.8
        nccl = (nccl // 1000, nccl // 100 % 10, nccl % 100)
    return {
        "device": torch.cuda.get_device_name(device),
        "compute_capability": f"{major}.{minor}",
        "torch_version": torch.__version__,
        "cuda_version": str(torch.version.cuda),
        "nccl_version": ".".join(str(part) for part in nccl),
    }


def supports_fp8(device: torch.device) -> bool:
    """fp8 tensor cores: Ada (8.9) and Hopper (9.0) onwards."""
    return torch.cuda.get_device_capability(device) >= (8, 9)


def _label(kernel: str, timing: Timing) -> str:
    return kernel if timing.used_cuda_graph else f"{kernel}_eager"


def _guarded(what: object, measure: Callable[[], dict | None]) -> dict | None:
    """Run one case; a shape a kernel refuses (or OOM) is skipped with a message, not fatal."""
    try:
        return measure()
    except (RuntimeError, ValueError, TypeError) as error:  # OOM is a RuntimeError
        logger.warning("skipped %s: %s", what, str(error).splitlines()[0] if str(error) else "")
        return None
    finally:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def _fp8_quantiser() -> tuple[str, Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]]:
    """Dynamic per-tensor activation quantisation: vLLM's fused kernel, else plain torch."""
    try:
        from vllm import _custom_ops as vllm_ops

        return "vllm_dynamic_scaled_fp8_quant", lambda x: vllm_ops.scaled_fp8_quant(x)
    except ImportError:
        pass

    def quantise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # scale = amax / 448 as vLLM's dynamic_scaled_fp8_quant; x / scale <= 448 by
        # construction, so no clamp kernel is needed before the cast.
        scale = torch.linalg.vector_norm(x, ord=float("inf"), dtype=torch.float32)
        scale = scale / FP8_E4M3_MAX
        return (x / scale).to(torch.float8_e4m3fn), scale

    return "torch_dynamic_per_tensor_quant", quantise


def _gemm_run(case: GemmCase, device: torch.device) -> tuple[str, Run]:
    """The kernel label and one step (GEMM_COPIES calls on distinct weights)."""
    x = torch.randn(case.m, case.k, device=device, dtype=BF16)
    if case.dtype == "bfloat16":
        weights = [
            torch.randn(case.n, case.k, device=device, dtype=BF16) for _ in range(GEMM_COPIES)
        ]

        def run_bf16() -> None:
            for weight in weights:
                F.linear(x, weight)

        return "torch.nn.functional.linear", run_bf16
    quant_name, quantise = _fp8_quantiser()
    weights = [
        torch.randn(case.n, case.k, device=device, dtype=BF16).to(torch.float8_e4m3fn)
        for _ in range(GEMM_COPIES)
    ]
    weight_scale = torch.ones((), device=device, dtype=torch.float32)

    def run_fp8() -> None:
        for weight in weights:
            x_fp8, x_scale = quantise(x)  # per call: every layer quantises its own input
            # weight.t() is column-major, the layout _scaled_mm (cuBLASLt fp8) requires
            torch._scaled_mm(
                x_fp8, weight.t(), scale_a=x_scale, scale_b=weight_scale, out_dtype=BF16
            )

    return f"torch._scaled_mm+{quant_name}", run_fp8


def measure_gemm(
    cases: list[GemmCase], stamp: Stamp, timer: CudaTimer, device: torch.device
) -> Iterator[tuple[str, dict | None]]:
    """One ``gemm_perf`` row per case (None for a skipped case, so progress can count it)."""
    for case in cases:

        def measure(case: GemmCase = case) -> dict:
            kernel, run = _gemm_run(case, device)
            timing = time_op(run, timer, ops_per_step=GEMM_COPIES)
            return stamp.row(
                "gemm",
                _label(kernel, timing),
                gemm_dtype=case.dtype,
                m=case.m,
                n=case.n,
                k=case.k,
                latency=timing.latency_ms,
            )

        yield "gemm_perf", _guarded(case, measure)


def _flash_modules() -> list[tuple[str, object]]:
    """FlashAttention packages present, newest first (FA3 is Hopper's)."""
    found = []
    for label, name in (
        ("flash_attn_fa3", "flash_attn_interface"),
        ("flash_attn_fa2", "flash_attn"),
    ):
        try:
            found.append((label, __import__(name)))
        except ImportError:
            continue
    return found


def _sdpa_flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> None:
    """SDPA pinned to its flash backend (an error, not a silent math fallback, if refused)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    gqa = {"enable_gqa": True} if k.shape[1] != q.shape[1] else {}
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        F.scaled_dot_product_attention(q, k, v, is_causal=causal, **gqa)


def _context_variants(case: AttentionCase, device: torch.device) -> list[tuple[str, Callable]]:
    """Ways to run one prefill, best first: each is (kernel label, builder of a run)."""
    b, s, h, h_kv, d = (
        case.batch_size,
        case.seq_len,
        case.num_heads,
        case.num_kv_heads,
        case.head_dim,
    )
    q = torch.randn(b, s, h, d, device=device, dtype=BF16)
    k = torch.randn(b, s, h_kv, d, device=device, dtype=BF16)
    v = torch.randn_like(k)
    variants: list[tuple[str, Callable]] = [
        (label, lambda m=module: lambda: m.flash_attn_func(q, k, v, causal=True))
        for label, module in _flash_modules()
    ]
    # SDPA wants (b, h, s, d); the transposed views keep the last dimension contiguous.
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    variants.append(("torch_sdpa_flash", lambda: lambda: _sdpa_flash(qt, kt, vt, True)))

    def expanded() -> Run:
        # torch without GQA in its flash backend: repeat K/V heads once, outside the timing
        # (prefill is compute bound; the larger K/V read is recorded in the label)
        ke = kt.repeat_interleave(h // h_kv, dim=1)
        ve = vt.repeat_interleave(h // h_kv, dim=1)
        return lambda: _sdpa_flash(qt, ke, ve, True)

    if h_kv != h:
        variants.append(("torch_sdpa_flash_kv_expanded", expanded))
    return variants


def _generation_variants(case: AttentionCase, device: torch.device) -> list[tuple[str, Callable]]:
    """Ways to run one decode step over a contiguous KV cache, best first."""
    b, s, h, h_kv, d = (
        case.batch_size,
        case.seq_len,
        case.num_heads,
        case.num_kv_heads,
        case.head_dim,
    )
    q = torch.randn(b, 1, h, d, device=device, dtype=BF16)
    k_cache = torch.randn(b, s, h_kv, d, device=device, dtype=BF16)
    v_cache = torch.randn_like(k_cache)
    lengths = torch.full((b,), s, device=device, dtype=torch.int32)
    variants: list[tuple[str, Callable]] = [
        (
            f"{label}_kvcache",
            lambda m=module: (
                lambda: m.flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=lengths)
            ),
        )
        for label, module in _flash_modules()
    ]
    # GQA decode as attention of each KV head's query group (h / h_kv rows) over the cache:
    # the same math and bytes as a GQA decode kernel, without repeating K/V.
    q_groups = torch.randn(b, h_kv, h // h_kv, d, device=device, dtype=BF16)
    kt, vt = k_cache.transpose(1, 2), v_cache.transpose(1, 2)
    variants.append(("torch_sdpa_flash", lambda: lambda: _sdpa_flash(q_groups, kt, vt, False)))
    return variants


def _first_working(variants: list[tuple[str, Callable]]) -> tuple[str, Run]:
    """The first variant that builds and runs once; its label says which kernel it is."""
    errors = []
    for label, build in variants:
        try:
            run = build()
            run()
            torch.cuda.synchronize()
            return label, run
        except (RuntimeError, TypeError, AttributeError) as error:
            errors.append(f"{label}: {str(error).splitlines()[0] if str(error) else error!r}")
    raise RuntimeError("no attention kernel ran (" + "; ".join(errors) + ")")


def measure_attention(
    cases: list[AttentionCase], stamp: Stamp, timer: CudaTimer, device: torch.device
) -> Iterator[tuple[str, dict | None]]:
    """One context or generation attention row per case (bf16 Q/K/V and KV cache)."""
    for case in cases:
        is_context = case.phase == "context"

        def measure(case: AttentionCase = case, is_context: bool = is_context) -> dict:
            builder = _context_variants if is_context else _generation_variants
            kernel, run = _first_working(builder(case, device))
            timing = time_op(run, timer)
            return stamp.row(
                "context_attention" if is_context else "generation_attention",
                _label(kernel, timing),
                batch_size=case.batch_size,
                # aiconfigurator: decode rows have isl 1 and step = KV tokens before the new one
                isl=case.seq_len if is_context else 1,
                num_heads=case.num_heads,
                num_key_value_heads=case.num_kv_heads,
                head_dim=case.head_dim,
                beam_width=1,
                attn_dtype="bfloat16",
                kv_cache_dtype="bfloat16",
                step=0 if is_context else case.seq_len - 1,
                window_size=0,
                latency=timing.latency_ms,
            )

        table = "context_attention_perf" if is_context else "generation_attention_perf"
        yield table, _guarded(case, measure)


def measure_comm(
    cases: list[CommCase], stamp: Stamp, timer: CudaTimer, device: torch.device
) -> Iterator[tuple[str, dict | None]]:
    """NCCL all-reduce rows (yielded on rank 0 only); every rank must iterate this."""
    import torch.distributed as dist

    rank = dist.get_rank()
    for num_gpus in sorted({case.num_gpus for case in cases}):
        group = dist.new_group(list(range(num_gpus)))  # every rank must create every group
        for case in (c for c in cases if c.num_gpus == num_gpus):
            if rank >= num_gpus:
                continue
            buffer = torch.zeros(case.message_size, device=device, dtype=BF16)

            def run(buffer: torch.Tensor = buffer, group: object = group) -> None:
                dist.all_reduce(buffer, group=group)

            timing = time_op(run, timer, min_runs=COMM_RUNS, target_ms=None)
            # the collective ends when its slowest rank does
            worst = torch.tensor([timing.latency_ms], device=device, dtype=torch.float64)
            dist.all_reduce(worst, op=dist.ReduceOp.MAX, group=group)
            if rank == 0:
                yield (
                    "nccl_perf",
                    stamp.row(
                        "all_reduce",
                        _label("NCCL", timing),
                        nccl_dtype="bfloat16",
                        num_gpus=num_gpus,
                        message_size=case.message_size,
                        latency=float(worst.item()),
                    ),
                )
        dist.barrier()
