"""Building blocks of the result pages of ``capacity``, ``plan`` and ``compare``.

Each page is one self-contained HTML file, laid out like the ``simulate`` report
(``servesim.report.html``): plotly's JavaScript embedded once in the head, every chart a
``div`` with a fixed element id, tables of plain text. Nothing depends on the clock or on
random ids, so the same inputs give byte-identical pages.
"""

from __future__ import annotations

import html
import math
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
