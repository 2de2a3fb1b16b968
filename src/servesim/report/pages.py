"""Building blocks of the result pages of ``capacity``, ``plan`` and ``compare``.

Each page is one self-contained HTML file, laid out like the ``simulate`` report
(``servesim.report.html``): plotly's JavaScript embedded once in the head, every chart a
``div`` with a fixed element id, tables of plain text. Nothing depends on the clock or on
random ids, so the same inputs give byte-identical pages.

Each page has a result file beside it (``write_result``): the page's inputs as JSON, from
which ``servesim report`` redraws the same bytes (the page is drawn from the data as it
reads back, ``round_trip``).
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from servesim.report.html import _CSS, _plotly_js

# Colours shared by the pages: feasible/held (blue), the front or chosen one (orange),
# failing/SLO lines (red), the second policy (green).
BLUE = "#1f77b4"
ORANGE = "#ff7f0e"
RED = "#d62728"
GREEN = "#2ca02c"
GREY = "#7f7f7f"


def num(value: Any, fmt: str = ".4g") -> str:
    """``value`` formatted, ``-`` for None, NaN or infinity."""
    if value is None:
        return "-"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "-" if not math.isfinite(x) else format(x, fmt)


def finite(value: Any) -> float | None:
    """``value`` as a float, None when missing or not finite (plotly leaves a gap)."""
    if value is None:
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], element_id: str = "") -> str:
    """An HTML table of text cells (escaped); numbers right-aligned."""
    attr = f' id="{element_id}"' if element_id else ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{html.escape(c)}</td>'
            if _is_number(c)
            else f"<td>{html.escape(c)}</td>"
            for c in row
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table{attr}><tr>{head}</tr>{''.join(body)}</table>"


def _is_number(text: str) -> bool:
    cleaned = text.replace(",", "").replace("%", "").replace("$", "").lstrip("+-")
    try:
        float(cleaned)
    except ValueError:
        return False
    return True


def pairs(rows: Sequence[tuple[str, str]]) -> str:
    """A two-column table of ``(label, text)`` rows."""
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def chart(element_id: str, fig: Any) -> str:
    """A plotly figure as a ``div`` with the fixed id ``fig-ELEMENT_ID`` (no JS inside)."""
    div = fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=f"fig-{element_id}",
        config={"displaylogo": False, "responsive": True},
    )
    return f'<div class="chart">{div}</div>'


def layout(fig: Any, title: str, height: int = 420) -> Any:
    """The pages' common look (white template, legend below)."""
    fig.update_layout(
        title=title,
        template="plotly_white",
        height=height,
        margin={"l": 60, "r": 20, "t": 60, "b": 45},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def page(title: str, intro: str, sections: Sequence[tuple[str, str]]) -> str:
    """The whole page: ``sections`` are ``(heading, HTML body)`` in order."""
    from servesim import __version__

    body = "".join(f"<h2>{html.escape(h)}</h2>{content}" for h, content in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        f'<style>{_CSS}</style><script type="text/javascript">{_plotly_js()}</script></head>'
        f"<body><h1>{html.escape(title)}</h1><p>servesim {html.escape(__version__)}; "
        f"{html.escape(intro)}</p>{body}</body></html>\n"
    )


def write_page(text: str, path: str | Path) -> Path:
    """Write ``text`` to ``path`` (its folder made if missing); the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


# --- Result files: the data beside a page, so ``servesim report`` can rebuild it ----------

RESULT_KEY = "servesim_result"  # first key of every result file: which page it rebuilds
RESULT_FORMAT_VERSION = 1
RESULT_KINDS = ("capacity", "plan", "compare")
_KIND_PATTERN = re.compile(rf'"{RESULT_KEY}"\s*:\s*"([a-z_]+)"')


def result_path(page_path: str | Path) -> Path:
    """The result file beside ``page_path``: same stem, ``.json`` (``cap.html`` -> ``cap.json``)."""
    target = Path(page_path)
    data = target.with_suffix(".json")
    return data if data != target else target.with_name(target.name + ".data.json")


def write_result(kind: str, data: dict[str, Any], text: str, page_path: str | Path) -> Path:
    """Write the page ``text`` at ``page_path`` and ``data`` beside it (``result_path``).

    The file is ``{"servesim_result": KIND, "format_version": 1, "page": NAME, "data": DATA}``
    (Python's JSON: a non-finite float is written as NaN/Infinity, as the plan store does).
    Returns the page's path.
    """
    page_file = write_page(text, page_path)
    doc = {
        RESULT_KEY: kind,
        "format_version": RESULT_FORMAT_VERSION,
        "page": page_file.name,
        "data": data,
    }
    result_path(page_file).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return page_file


def result_kind(path: str | Path) -> str | None:
    """The kind of the result file at ``path`` (None: not one). Reads only its head, so a big
    JSON beside it (a Chrome trace) is not parsed."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        match = _KIND_PATTERN.search(handle.read(200))
    return match.group(1) if match and match.group(1) in RESULT_KINDS else None


def find_results(folder: str | Path) -> list[Path]:
    """The result files in ``folder`` (not its subfolders), sorted by name."""
    return [p for p in sorted(Path(folder).glob("*.json")) if p.is_file() and result_kind(p)]


def read_result(path: str | Path) -> tuple[str, str, dict[str, Any]]:
    """``(kind, page file name, data)`` of a result file (``write_result``)."""
    from servesim.core.errors import ServesimError

    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ServesimError(f"{path}: not a readable result file ({exc})") from None
    version = doc.get("format_version") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or doc.get(RESULT_KEY) not in RESULT_KINDS:
        raise ServesimError(f"{path}: not a servesim result file (no {RESULT_KEY} key)")
    if version != RESULT_FORMAT_VERSION:
        raise ServesimError(
            f"{path}: result format {version}, this servesim reads {RESULT_FORMAT_VERSION}"
        )
    return str(doc[RESULT_KEY]), str(doc["page"]), dict(doc["data"])


def round_trip(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as it reads back from its result file (lists for tuples, float keys...):
    pages are drawn from this, so the first page and a rebuilt one are the same bytes."""
    loaded: dict[str, Any] = json.loads(json.dumps(data))
    return loaded
