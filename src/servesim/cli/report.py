"""``servesim report DIR`` and the files ``simulate --out/--trace-out`` write.

``check_outputs`` runs before a simulation: it resolves the table format (parquet with
pyarrow, CSV on the plain install), checks that the output folder can be made and that
plotly (the HTML report) imports, so a missing writer is reported before minutes of
simulation rather than after. ``write_files`` then writes everything and returns one note
per file, the last one saying where the HTML report is.

Every ``simulate`` imports this module for ``check_outputs``; the writers (the HTML page and
its charts, the trace, the page rebuilders, even ``report/outputs.py`` and its table writers)
load only when a run writes files or ``servesim report`` runs (5 ms of start-up a plain run
does not pay, bytecode cached; 560 more lines it does not compile when bytecode is off).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from servesim.cli import options as opts
from servesim.cli.common import err_console
from servesim.core.errors import ConfigError, ServesimError

if TYPE_CHECKING:
    from servesim.api import Result

PERFETTO_URL = "https://ui.perfetto.dev"
# ``report.outputs.TABLE_FORMATS``, repeated so that a run without --out need not import the
# table writers to check --format (tests/test_cli_lazy.py keeps the two equal).
TABLE_FORMATS = ("auto", "parquet", "csv")


def _out_help() -> str:
    """``report --out``'s help (evaluated with the command's annotations, when typer reads
    them: the page module loads only for ``servesim report``)."""
    from servesim.report.html import REPORT_FILE

    return (
        f"Write the page here (default: FOLDER/{REPORT_FILE}, the page name the result file "
        "records, or the store's name with .html)."
    )


@dataclass(frozen=True, slots=True)
class Outputs:
    """What a run will write, checked before it starts.

    Attributes:
        out_dir: the ``--out`` folder (None: no files).
        table_format: ``parquet`` or ``csv`` (resolved from ``auto``).
        has_plotly: whether the HTML report can be drawn.
        trace_path: the ``--trace-out`` file (None: no trace).
    """

    out_dir: Path | None
    table_format: str
    has_plotly: bool
    trace_path: Path | None


def _has_plotly() -> bool:
    try:
        import plotly  # noqa: F401
    except ImportError:
        return False
    return True


def _check_folder(path: Path, flag: str) -> None:
    if path.exists() and not path.is_dir():
        raise ConfigError(flag, str(path), "exists and is not a folder")
    parent = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not parent.is_dir():
        raise ConfigError(flag, str(path), f"{parent} is not a folder")


def check_outputs(out: Path | None, table_format: str, trace_out: Path | None) -> Outputs:
    """Resolve and check every writer before the run (module docstring)."""
    # without --out no table or page is written: pyarrow and plotly stay unimported (start-up)
    if out is None and table_format in TABLE_FORMATS:
        resolved = table_format
    else:
        from servesim.report.outputs import resolve_table_format

        resolved = resolve_table_format(table_format)
    if out is not None:
        _check_folder(out, "--out")
    if trace_out is not None:
        if trace_out.is_dir():
            raise ConfigError("--trace-out", str(trace_out), "is a folder; give a file name")
        _check_folder(trace_out.parent, "--trace-out")
    return Outputs(out, resolved, out is not None and _has_plotly(), trace_out)


def check_report_file(path: Path | None, flag: str = "--report") -> None:
    """Before a search: the page ``path`` can be written (its folder, plotly); None: no page."""
    if path is None:
        return
    if path.is_dir():
        raise ConfigError(flag, str(path), "is a folder; give a file name, e.g. report.html")
    _check_folder(path.parent, flag)
    if not _has_plotly():
        raise ServesimError(f"{flag} needs plotly: pip install plotly (a servesim dependency)")


def note_report(path: Path) -> None:
    """Tell the user (stderr) where the page is."""
    err_console.print(
        f"HTML report: {path.resolve()} (open it in a browser; works offline)",
        markup=False,
        highlight=False,
    )


def write_files(result: Result, outputs: Outputs) -> list[str]:
    """Write the run's files; one note per file, the report's location last."""
    notes: list[str] = []
    if outputs.trace_path is not None:
        from servesim.report.trace import write_chrome_trace

        path = write_chrome_trace(result.records, outputs.trace_path)
        notes.append(f"wrote {path} (open it in {PERFETTO_URL} or chrome://tracing)")
    out = outputs.out_dir
    if out is None:
        return notes
    from servesim.api import write_outputs
    from servesim.cli.simulate_render import settings_rows
    from servesim.report.html import REPORT_FILE, write_html_report, write_settings
    from servesim.report.run_data import write_run_data

    notes += write_outputs(result, out, table_format=outputs.table_format)
    notes += write_run_data(out, result.records, result.cluster, outputs.table_format)
    write_settings(out, settings_rows(result))
    if not outputs.has_plotly:
        notes.append(f"skipped {REPORT_FILE}: plotly is not installed (pip install plotly)")
        return notes
    report = write_html_report(out)
    notes.append(f"HTML report: {report.resolve()} (open it in a browser; works offline)")
    return notes


def _render_result(kind: str, data: dict[str, Any]) -> str:
    """The page of one result file (the page modules load lazily: plotly, the planner)."""
    if kind == "capacity":
        from servesim.cli.capacity_page import render_capacity_data

        return render_capacity_data(data)
    if kind == "plan":
        from servesim.report.plan_html import render_plan_data

        return render_plan_data(data)
    from servesim.cli.compare_page import render_compare_data

    return render_compare_data(data)


def rebuild_result(path: Path, out: Path | None = None) -> Path:
    """Redraw the page of the result file ``path`` (default: the page name it records, beside
    it); the same bytes as the page its command wrote."""
    from servesim.report.pages import read_result, write_page

    kind, page_name, data = read_result(path)
    target = out if out is not None else path.parent / page_name
    return write_page(_render_result(kind, data), target)


def rebuild_folder(folder: Path, out: Path | None = None, search: str | None = None) -> list[Path]:
    """Redraw every page of ``folder``: a ``simulate --out`` run (``summary.json``) and each
    ``capacity``/``plan``/``compare --report`` result file; ``out`` only for a single page.
    ``folder`` may also be one result file, or a ``plan --store`` file: the plan page of its
    search ``search`` (a hash or its prefix; default: the one with the most plans)."""
    from servesim.report.html import write_html_report
    from servesim.report.pages import find_results, result_kind
    from servesim.report.plan_store import is_store_file, write_store_page
    from servesim.report.run_data import SUMMARY_FILE

    if is_store_file(folder):
        return [write_store_page(folder, out, search)]
    if search is not None:
        raise ConfigError("--search", search, f"only for a plan --store file, not {folder}")
    if not folder.is_dir():
        if folder.is_file() and result_kind(folder):
            return [rebuild_result(folder, out)]
        raise ConfigError(
            "FOLDER", str(folder), "is not a folder (nor a result .json or --store file)"
        )
    results = find_results(folder)
    is_run = (folder / SUMMARY_FILE).is_file()
    if not results and not is_run:
        raise ServesimError(
            f"{folder}: no {SUMMARY_FILE} (simulate --out) and no result file (the .json "
            "capacity, plan or compare --report writes beside its page)"
        )
    if out is not None and len(results) + is_run > 1:
        raise ConfigError("--out", str(out), f"{folder} holds several pages; drop --out")
    written = [write_html_report(folder, out)] if is_run else []
    return written + [rebuild_result(path, out) for path in results]


def report_cmd(
    folder: Annotated[
        Path,
        typer.Argument(
            help="A `simulate --out` folder, the folder (or .json) of a capacity, plan or "
            "compare --report page, or a `plan --store` file (its search's plan page, "
            "finished or not).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        opts.option("--out", _out_help()),
    ] = None,
    search: Annotated[
        str | None,
        opts.option("--search", "With a --store file: the search's hash or a prefix of it."),
    ] = None,
) -> None:
    """Rebuild the self-contained HTML page of a result folder (opens offline)."""
    if not _has_plotly():
        raise ServesimError("the HTML report needs plotly: pip install plotly")
    for path in rebuild_folder(folder, out, search):
        err_console.print(f"HTML report: {path.resolve()}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``servesim report`` to the app."""
    app.command("report")(report_cmd)
