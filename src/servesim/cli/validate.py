"""``servesim validate``: replay real measured deployments and report the prediction error."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from servesim.cli.common import console, print_json
from servesim.core.errors import ConfigError
from servesim.core.paths import shared_data_dir
from servesim.validate import RunComparison, mape, validate_apex


def _table(comparisons: list[RunComparison]) -> Table:
    table = Table(title="Predicted vs measured (vLLM 0.6, Llama-3.1-70B, H100-SXM)")
    for name in ("run", "TTFT ms pred", "meas", "err", "ITL ms pred", "meas", "err"):
        table.add_column(name, justify="left" if name == "run" else "right")
    for name in ("E2E s pred", "meas", "err", "self-consistent"):
        table.add_column(name, justify="right")
    for c in comparisons:
        r, e = c.run, c.errors()
        table.add_row(
            r.name,
            f"{c.predicted_mean_ttft_s * 1e3:.1f}",
            f"{r.measured_mean_ttft_s * 1e3:.1f}",
            f"{e['ttft'] * 100:+.1f}%",
            f"{c.predicted_mean_itl_s * 1e3:.2f}",
            f"{r.measured_mean_itl_s * 1e3:.2f}",
            f"{e['itl'] * 100:+.1f}%",
            f"{c.predicted_mean_e2e_s:.2f}",
            f"{r.measured_mean_e2e_s:.2f}",
            f"{e['e2e'] * 100:+.1f}%",
            "yes" if r.is_consistent else f"no ({r.consistency_error * 100:+.0f}%)",
        )
    return table


def register(app: typer.Typer) -> None:
    """Add ``servesim validate``."""

    @app.command("validate")
    def validate(
        data: Path = typer.Option(
            None,
            "--data",
            help="The shared data folder (default: $SERVESIM_SHARED_DATA or ../shared/data).",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    ) -> None:
        """Replay the measured vLLM runs (apex_vllm_llama70b) and print the error per metric."""
        data_dir = data or shared_data_dir()
        if data_dir is None or not data_dir.is_dir():
            raise ConfigError("--data", str(data_dir), "is not a folder (give --data)")
        with console.status("replaying measured runs..."):
            comparisons = validate_apex(data_dir)
        all_runs = mape(comparisons)
        consistent = mape(comparisons, consistent_only=True)
        if as_json:
            print_json(
                {
                    "runs": [
                        {
                            "name": c.run.name,
                            "predicted": {
                                "ttft_s": c.predicted_mean_ttft_s,
                                "itl_s": c.predicted_mean_itl_s,
                                "e2e_s": c.predicted_mean_e2e_s,
                            },
                            "measured": {
                                "ttft_s": c.run.measured_mean_ttft_s,
                                "itl_s": c.run.measured_mean_itl_s,
                                "e2e_s": c.run.measured_mean_e2e_s,
                            },
                            "errors": c.errors(),
                            "self_consistent": c.run.is_consistent,
                        }
                        for c in comparisons
                    ],
                    "mape_all_runs": all_runs,
                    "mape_consistent_runs": consistent,
                }
            )
            return
        console.print(_table(comparisons))
        fmt = ", ".join
        console.print(
            "MAPE over self-consistent runs: "
            + fmt(f"{k} {v * 100:.1f}%" for k, v in consistent.items())
        )
        console.print(
            "MAPE over all runs: " + fmt(f"{k} {v * 100:.1f}%" for k, v in all_runs.items())
        )
