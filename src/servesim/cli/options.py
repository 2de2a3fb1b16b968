"""Option declarations shared by the CLI commands (simulate, capacity, plan, perf).

Each factory returns the ``typer.Option`` for one flag, so its name and help text are written
once; the caller picks the help panel and puts the type and default in its own signature
(``tp: Annotated[int | None, options.tp(HARDWARE)] = None``). Override flags default to
``None`` ("keep what the config says"), so their help does not show a default; ``perf`` passes
``show_default=True`` because its defaults are real values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import typer

from servesim.core import domains as dom
from servesim.core.domains import Domain

CONFIG_HELP = "YAML config; flags override it."


def option(
    flag: str,
    help_text: str,
    panel: str | None = None,
    show_default: bool = False,
    aliases: tuple[str, ...] = (),
    hidden: bool = False,
) -> Any:
    """A ``typer.Option`` named ``flag`` (and its old spellings ``aliases``) in ``panel``."""
    return typer.Option(
        flag,
        *aliases,
        help=help_text,
        rich_help_panel=panel,
        show_default=show_default,
        hidden=hidden,
    )


def config(panel: str | None = None, help_text: str = CONFIG_HELP) -> Any:
    """``--config``: the SimConfig YAML the other flags override."""
    return option("--config", help_text, panel)


def engine(panel: str | None = None, show_default: bool = False) -> Any:
    """``--engine``: a serving-engine profile (``hardware.engine`` / a pool's ``engine``)."""
    return option(
        "--engine",
        "Serving engine profile: vllm-0.6, vllm-v1, vllm-v1-async, sglang, trtllm (scheduler "
        "defaults, host time, kernel stack); auto: from the scheduler. --host-overhead and "
        "--kernel-stack override its parts.",
        panel,
        show_default,
    )


def model(panel: str | None = None, show_default: bool = False) -> Any:
    """``--model``: catalog name, HF id or config.json path."""
    return option("--model", "Catalog name, HF id, or config.json path.", panel, show_default)


def gpu(panel: str | None = None, show_default: bool = False) -> Any:
    """``--gpu``: a catalog GPU name."""
    return option("--gpu", "GPU name (servesim gpus), e.g. h100-sxm.", panel, show_default)


def tp(panel: str | None = None, show_default: bool = False) -> Any:
    """``--tp``: one tensor-parallel degree."""
    return option("--tp", dom.PARALLEL_DEGREE.help("Tensor-parallel degree."), panel, show_default)


def pp(panel: str | None = None, show_default: bool = False) -> Any:
    """``--pp``: one pipeline-parallel degree."""
    return option(
        "--pp", dom.PARALLEL_DEGREE.help("Pipeline-parallel degree."), panel, show_default
    )


def dtype(panel: str | None = None, show_default: bool = False) -> Any:
    """``--dtype``: the weight format."""
    return option(
        "--dtype",
        "Weights: bf16, fp16, fp8, fp8-block, int8, int4 (awq/gptq), w4a8, nvfp4 (W4A4 on "
        "Blackwell), nvfp4-a16, mxfp4, mxfp4-w4a4 (W4A4 on CDNA 4 / Blackwell) "
        "(docs/formats.md).",
        panel,
        show_default,
    )


def kv_dtype(panel: str | None = None, show_default: bool = False) -> Any:
    """``--kv-dtype``: the KV cache format."""
    return option("--kv-dtype", "KV cache format.", panel, show_default)


def gpu_memory_utilization(panel: str | None = None, show_default: bool = False) -> Any:
    """``--gpu-memory-utilization``: vLLM's fraction of GPU memory."""
    return option(
        "--gpu-memory-utilization",
        dom.FRACTION.help("Fraction of GPU memory to use (0.9)."),
        panel,
        show_default,
    )


def cuda_graphs(panel: str | None = None, show_default: bool = False) -> Any:
    """``--cuda-graphs/--no-cuda-graphs``: decode steps replay CUDA graphs."""
    return option("--cuda-graphs/--no-cuda-graphs", "Decode with CUDA graphs.", panel, show_default)


def replicas(panel: str | None = None) -> Any:
    """``--replicas``: identical replicas of one deployment."""
    return option(
        "--replicas",
        dom.REPLICAS.help("Identical replicas, spread by the router (--router)."),
        panel,
    )


ROUTER_NAMES = (
    "round-robin, random, least-outstanding-requests, least-outstanding-tokens, least-kv-usage, "
    "power-of-two, prefix-affinity, slo-aware"
)


def router(panel: str | None = None) -> Any:
    """``--router``: a built-in router (kebab-case; snake_case still works) or a plug-in."""
    return option(
        "--router",
        f"Router: {ROUTER_NAMES}, or file.py:Class (default round-robin).",
        panel,
    )


def admission(panel: str | None = None) -> Any:
    """``--admission``: the cluster's admission policy, with its options."""
    return option(
        "--admission",
        "Admission control: accept-all, token-bucket:rate-per-s=R,burst=B, slo-ttft:ttft-s=S, "
        "or file.py:Class[:key=value,...] (default accept-all).",
        panel,
    )


def scheduler(panel: str | None = None) -> Any:
    """``--scheduler``: a built-in replica scheduler or a plug-in class."""
    return option(
        "--scheduler",
        "vllm, sarathi, orca, static, priority, fair, or path/to/file.py:Class.",
        panel,
    )


def chunk_size(panel: str | None = None) -> Any:
    """``--chunk-size``: the chunk of the chunking schedulers."""
    return option(
        "--chunk-size", dom.BATCH_TOKENS.help("Chunk size (sarathi, priority, fair)."), panel
    )


def duration_s(panel: str | None = None) -> Any:
    """``--duration-s`` (old spelling ``--duration``): arrivals stop at this time."""
    return option(
        "--duration-s",
        dom.DURATION_S.help("Stop arrivals after this many seconds."),
        panel,
        aliases=("--duration",),
    )


def prompt_lengths(panel: str | None = None) -> Any:
    """``--prompt-lengths``: a prompt length distribution (with ``--output-lengths``)."""
    return option(
        "--prompt-lengths",
        "Prompt tokens, e.g. 512 or uniform:min_tokens=10,max_tokens=100.",
        panel,
    )


def output_lengths(panel: str | None = None) -> Any:
    """``--output-lengths``: an output length distribution (with ``--prompt-lengths``)."""
    return option(
        "--output-lengths", "Output tokens, e.g. lognormal:median_tokens=200,sigma=1.", panel
    )


def rate_scale(panel: str | None = None) -> Any:
    """``--rate-scale``: a trace's arrivals sped up by this factor."""
    return option(
        "--rate-scale", dom.RATE_SCALE.help("Trace: speed up arrivals by this factor."), panel
    )


def turns(panel: str | None = None) -> Any:
    """``--turns``: multi-turn sessions with this mean number of turns."""
    return option(
        "--turns",
        dom.MEAN_TURNS.help("Multi-turn: mean turns per session (arrivals = session starts)."),
        panel,
    )


def group_size(panel: str | None = None) -> Any:
    """``--group-size``: parallel samples per prompt."""
    return option("--group-size", dom.GROUP_SIZE.help("Parallel samples per prompt (n)."), panel)


def disagg(panel: str | None = None) -> Any:
    """``--disagg``: one prefill/decode split (the planner's ``--disagg`` is a switch)."""
    return option("--disagg", "Prefill/decode pools, e.g. 2P:6D.", panel)


def max_num_seqs(panel: str | None = None) -> Any:
    """``--max-num-seqs``: one batch-size cap."""
    return option("--max-num-seqs", dom.MAX_NUM_SEQS.help("Sequences per batch."), panel)


def max_num_batched_tokens(
    panel: str | None = None, show_default: bool = False, help_text: str = ""
) -> Any:
    """``--max-num-batched-tokens``: one per-iteration token budget."""
    text = dom.BATCH_TOKENS.help(help_text or "Token budget per iteration.")
    return option("--max-num-batched-tokens", text, panel, show_default)


def chunked_prefill(panel: str | None = None) -> Any:
    """``--chunked-prefill/--no-chunked-prefill``: vLLM's chunked prefill on or off."""
    return option("--chunked-prefill/--no-chunked-prefill", "vLLM chunked prefill.", panel)


def num_requests(help_text: str, panel: str | None = None) -> Any:
    """``--num-requests``: how many requests one run simulates (help says which run)."""
    return option("--num-requests", dom.NUM_REQUESTS.help(help_text), panel)


def seed(panel: str | None = None) -> Any:
    """``--seed``: the random seed of every stream."""
    return option("--seed", dom.SEED.help("Random seed."), panel)


def workload(panel: str | None = None) -> Any:
    """``--workload`` (also ``--preset``): a workload preset, the same flag in every command."""
    return option(
        "--workload",
        "Workload preset (servesim workload list; default sharegpt-vidur).",
        panel,
        aliases=("--preset",),
    )


def slo_ttft_p99(panel: str | None = None) -> Any:
    """``--slo-ttft-p99``: the p99 TTFT target."""
    return option("--slo-ttft-p99", dom.SLO_S.help("p99 TTFT target."), panel)


def slo_tpot_p99(panel: str | None = None) -> Any:
    """``--slo-tpot-p99``: the p99 TPOT target."""
    return option("--slo-tpot-p99", dom.SLO_S.help("p99 TPOT target."), panel)


def min_attainment(panel: str | None = None) -> Any:
    """``--min-attainment``: the share of requests that must meet the SLO."""
    return option(
        "--min-attainment", dom.FRACTION.help("Fraction of requests within SLO, e.g. 0.9."), panel
    )


def tol(panel: str | None = None) -> Any:
    """``--tol``: relative tolerance of the capacity bisection."""
    return option("--tol", "Relative tolerance of the capacity search (0.05).", panel)


def as_json(help_text: str, panel: str | None = None) -> Any:
    """``--json``: print JSON instead of tables (help says what)."""
    return typer.Option("--json", help=help_text, rich_help_panel=panel)


def calibration(panel: str | None = None) -> Any:
    """``--calibration``: a calibration JSON from ``servesim calibrate``."""
    return option(
        "--calibration",
        "Calibration JSON written by `servesim calibrate` (default: the packaged one).",
        panel,
    )


def apply_calibration(path: str | None) -> None:
    """Make ``path`` the calibration of this run and its worker processes (None: keep)."""
    if path is not None:
        from servesim.perf.calibration import use_calibration_file

        use_calibration_file(path)


# The domain of every numeric flag of simulate, workload describe/generate and perf, by
# parameter name: checked before any work starts (``check_flags``), and the same objects type
# the config fields the flags set (``servesim.config``, ``servesim.workload``).
FLAG_DOMAINS: dict[str, Domain] = {
    "tp": dom.PARALLEL_DEGREE,
    "pp": dom.PARALLEL_DEGREE,
    "ep": dom.EXPERT_PARALLEL,
    "gpu_memory_utilization": dom.FRACTION,
    "offload_cached_experts": dom.NUM_EXPERTS,
    "replicas": dom.REPLICAS,
    "max_num_seqs": dom.MAX_NUM_SEQS,
    "max_num_batched_tokens": dom.BATCH_TOKENS,
    "chunk_size": dom.BATCH_TOKENS,
    "block_size": dom.BLOCK_SIZE,
    "rate": dom.RATE_PER_S,
    "cv": dom.CV,
    "rate_scale": dom.RATE_SCALE,
    "turns": dom.MEAN_TURNS,
    "group_size": dom.GROUP_SIZE,
    "num_requests": dom.NUM_REQUESTS,
    "duration_s": dom.DURATION_S,
    "seed": dom.SEED,
    "slo_ttft_p99": dom.SLO_S,
    "slo_tpot_p99": dom.SLO_S,
    "slo_ttft": dom.SLO_S,
    "slo_tpot": dom.SLO_S,
    "min_attainment": dom.FRACTION,
    "burstiness": dom.BURSTINESS,
    "max_concurrency": dom.MAX_CONCURRENCY,
    "num_warmups": dom.NUM_WARMUPS,
    "input_len": dom.TOKENS_OR_ZERO,
    "output_len": dom.TOKENS,
    "prefix_len": dom.TOKENS_OR_ZERO,
    "max_context_tokens": dom.TOKENS,
}


def flag_name(param: str) -> str:
    """``max_num_seqs`` -> ``--max-num-seqs`` (how the user typed it)."""
    return "--" + param.replace("_", "-")


def check_flags(params: Mapping[str, Any]) -> None:
    """Refuse any numeric flag outside its domain, naming the flag, the value and the rule."""
    for name, domain in FLAG_DOMAINS.items():
        if params.get(name) is not None:
            domain.check(flag_name(name), params[name])
