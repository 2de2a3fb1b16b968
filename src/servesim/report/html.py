"""A run's self-contained HTML report: one file that opens offline, no server.

The page holds the summary (what ran: engine, scheduler with its effective settings, router,
hardware, workload; and the headline figures) and the charts of ``servesim.report.figures``.
plotly's JavaScript is embedded once, so the file works without a network; element ids are
fixed, so the same run gives a byte-identical report.

Needs plotly (a core dependency); ``write_html_report`` raises ``ServesimError`` naming the
package if it is missing rather than writing a page that cannot draw.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from servesim.core.errors import ServesimError
from servesim.report.figures import run_figures
from servesim.report.run_data import RunData, load_run

REPORT_FILE = "report.html"
SETTINGS_FILE = "settings.json"

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.chart { margin: 1em 0; }
"""


def _plotly_js() -> str:
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise ServesimError(
            "the HTML report needs plotly: pip install plotly (a servesim dependency)"
        ) from None
    return str(get_plotlyjs())


def _rows_table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _ms(value: Any) -> str:
    return "-" if value is None else f"{float(value) * 1e3:,.1f}"


def _latency_table(summary: dict[str, Any]) -> str:
    cols = ("mean_s", "p50_s", "p90_s", "p95_s", "p99_s", "max_s")
    head = "".join(f"<th>{c[:-2]}</th>" for c in cols)
    rows = []
    for label, key in (("TTFT", "ttft"), ("TPOT", "tpot"), ("ITL", "itl"), ("E2E", "e2e"),
                       ("queueing", "queueing")):  # fmt: skip
        stats = summary.get(key) or {}
        cells = "".join(f'<td class="num">{_ms(stats.get(c))}</td>' for c in cols)
        rows.append(
            f"<tr><th>{label}</th>{cells}<td class='num'>{stats.get('count', 0):,}</td></tr>"
        )
    return f"<table><tr><th>ms</th>{head}<th>count</th></tr>{''.join(rows)}</table>"


def _figure_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    s = summary
    eff = s.get("efficiency") or {}
    done, total = s.get("num_completed", 0), s.get("num_requests", 0)
    rejected = ", ".join(f"{k} {v}" for k, v in (s.get("rejected_by_reason") or {}).items() if v)
    rate = s.get("offered_rate_per_s")
    return [
        ("requests", f"{done:,} completed of {total:,}; rejected: {rejected or 'none'}"),
        ("offered rate", "-" if rate is None else f"{rate:,.2f} req/s"),
        ("duration", f"{s.get('duration_s', 0.0):,.2f} s simulated"),
        (
            "throughput",
            f"{s.get('request_throughput_per_s', 0.0):,.2f} req/s, "
            f"{s.get('output_throughput_tokens_per_s', 0.0):,.0f} output tok/s, "
            f"{s.get('total_throughput_tokens_per_s', 0.0):,.0f} total tok/s",
        ),
        ("preemptions", f"{s.get('num_preemptions', 0):,}"),
        ("cost", f"${eff.get('cost_usd', 0.0):,.4f} for {eff.get('gpu_hours', 0.0):,.3f} GPU-h"),
        ("energy", f"{eff.get('energy_j', 0.0) / 3.6e6:,.4f} kWh"),
    ]


def _settings_rows(run: RunData, settings: list[list[str]] | None) -> list[tuple[str, str]]:
    """What ran: the CLI's own lines when it wrote them, else what summary.json says."""
    if settings:
        return [(str(k), str(v)) for k, v in settings]
    cfg = run.summary.get("config") or {}
    hw = cfg.get("hardware") or {}
    rows = [
        ("model", str(cfg.get("model"))),
        ("hardware", f"{hw.get('gpu')} tp {hw.get('tp')} pp {hw.get('pp')} {hw.get('dtype')}"),
    ]
    for line in (run.summary.get("summary") or {}).get("engines", []):
        rows.append((f"engine ({line['pool']})", f"{line['engine']} ({line['version']}): "
                     f"{line['settings']}"))  # fmt: skip
    rows.append(("workload", str((run.summary.get("workload") or {}).get("name"))))
    return rows


def render_html(run: RunData, settings: list[list[str]] | None = None) -> str:
    """The report page for ``run`` (``settings``: ``[label, text]`` rows of what ran)."""
    js = _plotly_js()
    summary = run.summary.get("summary") or {}
    charts = []
    for element_id, fig in run_figures(run):
        div = fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=f"fig-{element_id}",
            config={"displaylogo": False, "responsive": True},
        )
        charts.append(f'<div class="chart">{div}</div>')
    version = html.escape(str(run.summary.get("servesim_version", "")))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>servesim report</title>"
        f'<style>{_CSS}</style><script type="text/javascript">{js}</script></head><body>'
        f"<h1>servesim simulate report</h1><p>servesim {version}; all times simulated.</p>"
        f"<h2>What ran</h2>{_rows_table(_settings_rows(run, settings))}"
        f"<h2>Figures</h2>{_rows_table(_figure_rows(summary))}"
        f"<h2>Latency</h2>{_latency_table(summary)}"
        f"<h2>Charts</h2>{''.join(charts)}"
        "</body></html>\n"
    )


def write_html_report(out_dir: str | Path, path: str | Path | None = None) -> Path:
    """Read ``out_dir`` (``load_run``) and write its report (default ``out_dir/report.html``)."""
    folder = Path(out_dir)
    run = load_run(folder)
    settings_path = folder / SETTINGS_FILE
    settings = None
    if settings_path.is_file():
        settings = json.loads(settings_path.read_text(encoding="utf-8")).get("rows")
    target = Path(path) if path is not None else folder / REPORT_FILE
    text = render_html(run, settings)
    target.write_text(text, encoding="utf-8")
    return target


def write_settings(out_dir: str | Path, rows: list[tuple[str, str]]) -> Path:
    """``settings.json``: the ``(label, text)`` rows of what ran, as the terminal shows them."""
    path = Path(out_dir) / SETTINGS_FILE
    doc = {"rows": [[k, v] for k, v in rows]}
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
