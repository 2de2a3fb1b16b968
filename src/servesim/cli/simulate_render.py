"""Rich rendering of a ``servesim simulate`` result: overview, latency and SLO tables.

``settings_rows`` says what ran (deployment with its router, engine, the scheduler with its
effective settings, workload); the terminal overview and the HTML report show the same rows.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from servesim.api import Result
from servesim.cli.common import console, err_console
from servesim.cli.overrides import display_name
from servesim.cluster.deployment import pool_engine
from servesim.engine.scheduler_setup import make_scheduler
from servesim.engine.schedulers.vllm import LONG_CONTEXT_TOKENS
from servesim.metrics.stats import LatencyStats
from servesim.metrics.summary import EngineLine, engine_line
from servesim.specs.catalog import resolve_model


def _router_name(result: Result) -> str:
    dep = result.config.effective_deployment()
    return display_name(dep.router.kind if dep.router is not None else "round_robin")


def _deployment_row(result: Result) -> str:
    c, hw = result.config, result.config.hardware
    router = f"; router {_router_name(result)}"
    if c.deployment is None and c.disagg is None:
        return (
            f"{c.model} on {c.replicas} replica(s) of {hw.tp * hw.pp} x {hw.gpu} "
            f"(tp {hw.tp}, pp {hw.pp}, {hw.dtype})" + (router if c.replicas > 1 else "")
        )
    dep = c.effective_deployment()
    pools = "; ".join(
        f"{p.name} ({p.role}): {p.replicas} x {p.tp * p.pp} {p.gpu}" for p in dep.pools
    )
    return f"{c.model}: {pools}{router}"


def _chunking(config: Any, scheduler: Any, max_model_len: int) -> str:
    """Whether a vLLM scheduler chunks prefills, and why (the rule that decided it)."""
    if getattr(scheduler, "is_v1", False):
        return "chunked prefill on (V1: always)"
    explicit = getattr(config, "enable_chunked_prefill", None)
    if explicit is not None:
        return "chunked prefill " + ("on" if explicit else "off")
    if scheduler.is_chunked:
        return (
            f"chunked prefill on (automatic: max_model_len {max_model_len:,} > "
            f"{LONG_CONTEXT_TOKENS:,}, as vLLM 0.6)"
        )
    return "chunked prefill off (vLLM 0.6 default)"


def scheduler_text(config: Any, max_model_len: int) -> str:
    """The scheduler a pool ran, as built: its rules, chunking, budget and batch cap."""
    scheduler = make_scheduler(config, max_model_len=max_model_len)
    budget = "" if getattr(config, "max_num_batched_tokens", None) is not None else " (default)"
    parts = [f"budget {scheduler.token_budget:,} tokens{budget}"]
    parts.append(f"max_num_seqs {scheduler.max_num_seqs:,}")
    if config.kind == "vllm":
        rules = "vLLM V1 rules" if scheduler.is_v1 else "vLLM 0.6 (V0) rules"
        head = f"vllm {config.version}: {rules}"
        parts.insert(0, _chunking(config, scheduler, max_model_len))
    elif config.kind == "custom":
        head = f"{type(scheduler).__name__} from {config.path}"
    else:
        head = config.kind
        if getattr(config, "chunk_size", None) is not None:
            parts.insert(0, f"chunk {config.chunk_size:,} tokens")
    return f"{head}; " + ", ".join(parts)


def _scheduler_rows(result: Result) -> list[tuple[str, str]]:
    pools = result.config.effective_deployment().pools
    max_len = resolve_model(result.config.model).max_context_tokens
    texts = [(p.name, scheduler_text(p.scheduler, max_len)) for p in pools]
    if len(texts) == 1:
        return [("scheduler", texts[0][1])]
    return [(f"scheduler ({name})", text) for name, text in texts]


def _workload_row(result: Result) -> tuple[str, str]:
    s, c = result.summary, result.config
    return (
        "workload",
        f"{result.workload_name}, {_num(s.offered_rate_per_s)} req/s offered, seed {c.seed}",
    )


def settings_rows(result: Result) -> list[tuple[str, str]]:
    """What ran: deployment (router), engine per pool, effective scheduler, workload."""
    rows = [("deployment", _deployment_row(result)), *_engine_rows(result)]
    rows += _scheduler_rows(result)
    rows.append(_workload_row(result))
    return rows


def _engine_rows(result: Result) -> list[tuple[str, str]]:
    """One row per pool: engine, version and effective scheduler settings."""
    lines: tuple[EngineLine, ...] = result.summary.engines
    if not lines:  # a summary made without them: the same lines from the config
        pools = result.config.effective_deployment().pools
        lines = tuple(engine_line(p.name, pool_engine(p), p.scheduler, p.cache) for p in pools)
    if len(lines) == 1:
        return [("engine", lines[0].text())]
    return [(f"engine ({line.pool})", line.text()) for line in lines]


def _cluster_row(result: Result) -> tuple[str, str] | None:
    stats = result.cluster
    if stats is None:
        return None
    kv = stats.transfer_summary(result.records)
    text = f"{stats.num_gpus} GPUs, {stats.gpu_hours:,.3f} GPU-h up"
    if kv.get("num_transfers"):
        text += (
            f"; KV transfers {kv['num_transfers']:,.0f}, mean {kv['mean_transfer_s'] * 1e3:.2f}"
            f" ms ({kv['mean_share_of_ttft']:.1%} of TTFT)"
        )
    if stats.num_scale_ups or stats.num_scale_downs:
        text += f"; scaled up {stats.num_scale_ups}, down {stats.num_scale_downs}"
    slo = result.summary.slo
    if slo is not None and stats.num_gpus:
        # DistServe's per-GPU view of goodput (at this rate; the max rate is `capacity`)
        text += f"; goodput {slo.overall.goodput_per_s / stats.num_gpus:,.2f} req/s/GPU"
    if stats.num_migrations:
        gb = stats.migration_bytes / 1e9
        text += f"; migrations {stats.num_migrations} ({gb:,.1f} GB of KV)"
    return ("cluster", text)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:,.1f}"


def _num(value: float | None, fmt: str = ",.2f") -> str:
    return "-" if value is None else format(value, fmt)


def _latency_table(result: Result) -> Table:
    s = result.summary
    table = Table(title="Latency (ms; percentiles: numpy linear, as vllm bench serve)")
    for header in ("metric", "mean", "p50", "p90", "p95", "p99", "max", "count"):
        table.add_column(header, justify="left" if header == "metric" else "right")
    rows: list[tuple[str, LatencyStats]] = [
        ("TTFT", s.ttft),
        ("TPOT", s.tpot),
        ("ITL", s.itl),
        ("E2E", s.e2e),
        ("queueing", s.queueing),
    ]
    for name, st in rows:
        table.add_row(
            name,
            *(_ms(v) for v in (st.mean_s, st.p50_s, st.p90_s, st.p95_s, st.p99_s, st.max_s)),
            f"{st.count:,}",
        )
    return table


def _overview_rows(result: Result) -> list[tuple[str, str]]:
    s, e = result.summary, result.summary.efficiency
    rejected = ", ".join(f"{k} {v}" for k, v in s.rejected_by_reason.items() if v) or "none"
    # Nothing is dropped silently: rows skipped with --skip-bad-rows and lengths capped to the
    # context window are counted here.
    trace_notes = "".join(
        f"; {label}: {count:,}"
        for label, count in (
            ("trace rows skipped", result.num_skipped_rows),
            ("requests capped", result.num_capped_requests),
        )
        if count
    )
    return [
        *settings_rows(result),
        (
            "requests",
            f"{s.num_completed:,} completed of {s.num_requests:,}; rejected: {rejected}"
            + trace_notes,
        ),
        ("duration", f"{s.duration_s:,.2f} s simulated"),
        (
            "throughput",
            f"{s.request_throughput_per_s:,.2f} req/s, "
            f"{s.output_throughput_tokens_per_s:,.0f} output tok/s, "
            f"{s.total_throughput_tokens_per_s:,.0f} total tok/s",
        ),
        ("KV cache use", f"mean {s.kv_utilization.mean:.1%}, max {s.kv_utilization.max:.1%}"),
        ("batch size", f"mean {s.batch_size.mean:,.1f}, max {s.batch_size.max:,.0f}"),
        (
            "MFU / MBU",
            f"{_num(e.mfu, '.1%')} / {_num(e.mbu, '.1%')} of busy time "
            f"(busy {e.busy_fraction:.0%})",
        ),
        (
            "cost",
            f"${e.cost_usd:,.4f} for {e.gpu_hours:,.3f} GPU-h; "
            f"${_num(e.cost_per_million_output_tokens_usd)} per M output tokens",
        ),
        (
            "energy",
            f"{e.energy_j / 3.6e6:,.4f} kWh; {_num(e.energy_per_output_token_j, ',.3f')} "
            f"J per output token",
        ),
        ("preemptions", f"{s.num_preemptions:,}"),
        ("prefix cache hits", _num(s.prefix_cache_hit_rate, ".1%")),
    ]


def _slo_table(result: Result) -> Table | None:
    slo = result.summary.slo
    if slo is None:
        return None
    table = Table(title=f"SLO (attainment goal {slo.attainment_target:.0%})")
    for header in ("class", "TTFT target", "TPOT target", "met", "attainment", "goodput req/s"):
        table.add_column(header, justify="left" if header == "class" else "right")
    for row in (*slo.per_class, slo.overall):
        ok = "" if row.attainment is None else (" ok" if row.meets_attainment_target else " MISS")
        table.add_row(
            row.slo_class,
            _ms(row.ttft_target_s),
            _ms(row.tpot_target_s),
            f"{row.num_met:,}/{row.num_requests:,}",
            _num(row.attainment, ".1%") + ok,
            f"{row.goodput_per_s:,.2f}",
        )
    return table


def render(result: Result) -> None:
    """Print the summary as rich tables."""
    overview = Table(title="servesim simulate", show_header=False)
    overview.add_column("field", style="bold")
    overview.add_column("value")
    rows = _overview_rows(result)
    cluster = _cluster_row(result)
    if cluster is not None:
        rows.insert(1, cluster)
    for key, value in rows:
        overview.add_row(key, value)
    console.print(overview)
    console.print(_latency_table(result))
    slo = _slo_table(result)
    if slo is not None:
        console.print(slo)
    if result.uncalibrated_gpus:
        err_console.print(
            f"warning: no measured kernel tables for {', '.join(result.uncalibrated_gpus)}: "
            "iteration times are an UNCALIBRATED roofline with default efficiencies",
            markup=False,
            highlight=False,
        )
