"""``servesim validate``: replay real measured deployments and report the prediction error."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from servesim.cli.common import console, print_json
from servesim.config import load_yaml
from servesim.core.errors import ConfigError, ServesimError
from servesim.core.paths import shared_data_dir
from servesim.validate import (
    PlanComparison,
    ServedMeans,
    StageComparison,
    blis_mape,
    mape_by_subset,
    validate_apex,
    validate_blis,
)
from servesim.validate.vllm_bench import (
    VllmBenchComparison,
    load_vllm_bench,
    replay_vllm_bench,
)

DATASETS = ("all", "apex", "blis")


def _replicas_cell(c: PlanComparison) -> str:
    p = c.plan
    if p.num_missing_replicas:
        return f"{len(p.replicas)}/{p.dp} MISSING"
    return f"{len(p.replicas)}/{p.dp}"


def _apex_table(comparisons: list[PlanComparison]) -> Table:
    table = Table(title="Predicted vs measured (vLLM 0.6, Llama-3.1-70B, H100-SXM), every plan")
    for name in ("plan", "replicas", "TTFT ms pred", "meas", "err", "ITL ms pred", "meas", "err"):
        table.add_column(name, justify="left" if name == "plan" else "right")
    for name in ("E2E s pred", "meas", "err", "self-consistent"):
        table.add_column(name, justify="right")
    for c in comparisons:
        p, pred, meas, e = c.plan, c.predicted, c.plan.measured, c.errors()
        table.add_row(
            p.name,
            _replicas_cell(c),
            f"{pred.mean_ttft_s * 1e3:.1f}",
            f"{meas.mean_ttft_s * 1e3:.1f}",
            f"{e['ttft'] * 100:+.1f}%",
            f"{pred.mean_itl_s * 1e3:.2f}",
            f"{meas.mean_itl_s * 1e3:.2f}",
            f"{e['itl'] * 100:+.1f}%",
            f"{pred.mean_e2e_s:.2f}",
            f"{meas.mean_e2e_s:.2f}",
            f"{e['e2e'] * 100:+.1f}%",
            "yes" if p.is_consistent else f"no ({p.consistency_error * 100:+.0f}%)",
        )
    return table


def _means_json(means: ServedMeans) -> dict[str, float | int]:
    return {
        "ttft_s": means.mean_ttft_s,
        "itl_s": means.mean_itl_s,
        "e2e_s": means.mean_e2e_s,
        "num_requests": means.num_requests,
        "num_decode_gaps": means.num_decode_gaps,
    }


def _apex_json(comparisons: list[PlanComparison]) -> dict[str, object]:
    plans = [
        {
            "name": c.plan.name,
            "plan": c.plan.plan,
            "tp": c.plan.tp,
            "dp": c.plan.dp,
            "num_replicas_replayed": len(c.replicas),
            "num_missing_replicas": c.plan.num_missing_replicas,
            "note": c.plan.note,
            "predicted": _means_json(c.predicted),
            "measured": _means_json(c.plan.measured),
            "errors": c.errors(),
            "self_consistent": c.plan.is_consistent,
            "replicas": [
                {
                    "name": r.run.name,
                    "dp_rank": r.run.dp_rank,
                    "predicted": _means_json(r.predicted),
                    "measured": _means_json(r.run.measured),
                    "errors": r.errors(),
                    "self_consistent": r.run.is_consistent,
                }
                for r in c.replicas
            ],
        }
        for c in comparisons
    ]
    return {"plans": plans, "mape": mape_by_subset(comparisons)}


def _print_apex(comparisons: list[PlanComparison]) -> None:
    console.print(_apex_table(comparisons))
    labels = {
        "consistent_plans": "MAPE over self-consistent plans",
        "consistent_single_server": "  single-server (8TP, 4TP, 2TP)",
        "consistent_data_parallel": "  data-parallel (2DP4TP, 4DP2TP)",
        "all_plans": "MAPE over all plans",
    }
    for key, errors in mape_by_subset(comparisons).items():
        shown = ", ".join(f"{k} {v * 100:.1f}%" for k, v in errors.items())
        console.print(f"{labels[key]}: {shown}")
    if any(c.plan.num_missing_replicas for c in comparisons):
        console.print(
            "MISSING replica(s): those plans are compared over the present replicas only, "
            "as plans.csv's aggregate is."
        )


def _ms(value_s: float | None, digits: int = 1) -> str:
    return "-" if value_s is None else f"{value_s * 1e3:.{digits}f}"


def _pct(error: float) -> str:
    return "-" if error != error else f"{error * 100:+.0f}%"  # NaN: nothing completed


def _blis_table(comparisons: list[StageComparison]) -> Table:
    table = Table(title="Predicted vs measured (vLLM V1, H100-SXM, shared-prefix constant rate)")
    table.add_column("stage", no_wrap=True)
    for name in ("req/s", "TTFT ms pred", "meas", "err", "TPOT ms pred", "meas", "err"):
        table.add_column(name, justify="right")
    for name in ("E2E s pred", "meas", "err", "overload pred/meas"):
        table.add_column(name, justify="right")
    for c in comparisons:
        s, e = c.stage, c.errors()
        e2e_s = c.predicted_mean_e2e_s
        overload = f"{'yes' if c.is_predicted_overloaded else 'no'}/"
        overload += f"{'yes' if s.is_overloaded else 'no'}{'' if c.overload_agrees else ' !'}"
        table.add_row(
            s.name,
            f"{s.rate_req_per_s:g}",
            _ms(c.predicted_mean_ttft_s),
            _ms(s.measured_mean_ttft_s),
            _pct(e["ttft"]),
            _ms(c.predicted_tpot_s, 2),
            _ms(s.measured_tpot_s, 2),
            _pct(e["tpot"]),
            "-" if e2e_s is None else f"{e2e_s:.2f}",
            f"{s.measured_mean_e2e_s:.2f}",
            _pct(e["e2e"]),
            overload,
        )
    return table


def _blis_json(comparisons: list[StageComparison]) -> dict[str, object]:
    stages = [
        {
            "name": c.stage.name,
            "rate_req_per_s": c.stage.rate_req_per_s,
            "num_requests": c.num_requests,
            "num_completed": c.num_completed,
            "prefix_cache_hit_rate": c.prefix_cache_hit_rate,
            "predicted": {
                "ttft_s": c.predicted_mean_ttft_s,
                "tpot_s": c.predicted_tpot_s,
                "e2e_s": c.predicted_mean_e2e_s,
                "overloaded": c.is_predicted_overloaded,
            },
            "measured": {
                "ttft_s": c.stage.measured_mean_ttft_s,
                "tpot_s": c.stage.measured_tpot_s,
                "e2e_s": c.stage.measured_mean_e2e_s,
                "overloaded": c.stage.is_overloaded,
            },
            "errors": {k: (None if v != v else v) for k, v in c.errors().items()},
        }
        for c in comparisons
    ]
    return {
        "stages": stages,
        "mape_not_overloaded": blis_mape(comparisons),
        "mape_both_not_overloaded": blis_mape(comparisons, both_not_overloaded=True),
        "num_overload_agreements": sum(c.overload_agrees for c in comparisons),
    }


def _print_blis(comparisons: list[StageComparison]) -> None:
    console.print(_blis_table(comparisons))
    for label, both in (("measured", False), ("measured and predicted", True)):
        errors = blis_mape(comparisons, both_not_overloaded=both)
        shown = ", ".join(f"{k} {v * 100:.1f}%" for k, v in errors.items())
        console.print(f"MAPE over the stages {label} as not overloaded: {shown}")
    num_agree = sum(c.overload_agrees for c in comparisons)
    console.print(
        f"Overload (mean TTFT > 10 s or > 1% unfinished) predicted as measured: "
        f"{num_agree}/{len(comparisons)} stages"
    )


def _vllm_bench_table(c: VllmBenchComparison) -> Table:
    run = c.run
    rate = "inf" if run.request_rate == float("inf") else f"{run.request_rate:g}"
    table = Table(
        title=f"{run.path.name}: predicted vs measured (request rate {rate}, burstiness "
        f"{run.burstiness:g}, max concurrency {run.max_concurrency}, "
        f"{len(run.input_lens)} requests replayed, {run.num_failed} failed not replayed)"
    )
    for name in ("metric", "unit", "predicted", "measured", "error"):
        table.add_column(name, justify="left" if name in ("metric", "unit") else "right")
    for key, unit, pred, meas, err in c.rows():
        table.add_row(
            key,
            unit,
            f"{pred:.2f}",
            "-" if meas is None else f"{meas:.2f}",
            "-" if err is None else f"{err * 100:+.1f}%",
        )
    return table


def _vllm_bench_json(c: VllmBenchComparison) -> dict[str, object]:
    return {
        "file": str(c.run.path),
        "request_rate": "inf" if c.run.request_rate == float("inf") else c.run.request_rate,
        "burstiness": c.run.burstiness,
        "max_concurrency": c.run.max_concurrency,
        "num_replayed": len(c.run.input_lens),
        "num_failed": c.run.num_failed,
        "metrics": [
            {"metric": k, "unit": u, "predicted": p, "measured": m, "error": e}
            for k, u, p, m, e in c.rows()
        ],
    }


def _validate_vllm_bench(
    path: Path, config: Path | None, model: str | None, gpu: str | None, tp: int | None
) -> VllmBenchComparison:
    raw: dict[str, object] = dict(load_yaml(config)) if config is not None else {}
    raw.pop("workload", None)
    if model is not None:
        raw["model"] = model
    hardware = dict(raw.get("hardware") or {})  # type: ignore[call-overload]
    if gpu is not None:
        hardware["gpu"] = gpu
    if tp is not None:
        hardware["tp"] = tp
    raw["hardware"] = hardware
    if "model" not in raw:
        raise ConfigError("--model", None, "give the model the benchmark ran (or --config)")
    run = load_vllm_bench(path)
    with console.status(f"replaying {path.name}..."):
        return replay_vllm_bench(run, raw)


def register(app: typer.Typer) -> None:
    """Add ``servesim validate``."""
    app.command("validate")(validate_cmd)


def validate_cmd(
    data: Path = typer.Option(
        None,
        "--data",
        help="The shared data folder (default: $SERVESIM_SHARED_DATA or ../shared/data).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    dataset: str = typer.Option(
        "all", "--dataset", help="all | apex (vLLM 0.6, Llama-3.1-70B) | blis (vLLM V1)."
    ),
    vllm_bench: Path = typer.Option(
        None,
        "--vllm-bench",
        help="Replay your own vllm bench serve result JSON (--save-detailed) instead.",
    ),
    config: Path = typer.Option(
        None, "--config", help="--vllm-bench: the deployment YAML (its workload is ignored)."
    ),
    model: str = typer.Option(None, "--model", help="--vllm-bench: the model served."),
    gpu: str = typer.Option(None, "--gpu", help="--vllm-bench: the GPU."),
    tp: int = typer.Option(None, "--tp", help="--vllm-bench: tensor parallelism."),
) -> None:
    """Replay measured vLLM runs (apex_vllm_llama70b, blis_vllm_v1_h100, or your own
    vllm bench serve result with --vllm-bench); print predicted vs measured."""
    if vllm_bench is not None:
        comparison = _validate_vllm_bench(vllm_bench, config, model, gpu, tp)
        if as_json:
            print_json(_vllm_bench_json(comparison))
        else:
            console.print(_vllm_bench_table(comparison))
        return
    if dataset not in DATASETS:
        raise ConfigError("--dataset", dataset, f"must be one of {', '.join(DATASETS)}")
    data_dir = data or shared_data_dir()
    if data_dir is None:
        raise ServesimError(
            "no shared data folder found ($SERVESIM_SHARED_DATA, ../shared/data beside this "
            "directory or beside the checkout): give --data DIR"
        )
    if not data_dir.is_dir():
        raise ConfigError("--data", str(data_dir), "is not a folder")
    apex = blis = None
    with console.status("replaying measured runs..."):
        if dataset in ("all", "apex"):
            apex = validate_apex(data_dir)
        if dataset in ("all", "blis"):
            blis = validate_blis(data_dir)
    _print_shared(apex, blis, as_json)


def _print_shared(
    apex: list[PlanComparison] | None, blis: list[StageComparison] | None, as_json: bool
) -> None:
    """The replays of the shared data's runs: JSON, or a table per data set."""
    if as_json:
        output: dict[str, object] = {}
        if apex is not None:
            output["apex"] = _apex_json(apex)
        if blis is not None:
            output["blis"] = _blis_json(blis)
        print_json(output)
        return
    if apex is not None:
        _print_apex(apex)
    if blis is not None:
        _print_blis(blis)
