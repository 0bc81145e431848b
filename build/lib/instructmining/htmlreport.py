"""Self-contained HTML pages for the Snakemake report: tables (TSV) and JSON that a browser
would otherwise download instead of showing (the report opens text/html and images inline)."""

from __future__ import annotations

import html
import json
import math
from typing import Any

CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:1.2em;color:#222}
table{border-collapse:collapse;margin:.4em 0 1.2em}th,td{border:1px solid #ccc;padding:3px 8px}
th{background:#f3f3f3;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f7f7f7;padding:.8em;max-width:100%;overflow:auto;white-space:pre-wrap;word-break:break-all}
p.note{color:#555;max-width:60em}"""


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "<td></td>"  # undefined stays empty, never a made-up 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"<td>{html.escape(str(value))}</td>"
    text = f"{value:d}" if isinstance(value, int) else f"{value:.4g}"
    return f'<td class="num">{text}</td>'


def frame_html(frame: Any) -> str:
    """A DataFrame as an HTML table: numbers to 4 significant digits, right-aligned."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(_cell(v.item() if hasattr(v, "item") else v) for v in row) + "</tr>"
                   for row in frame.itertuples(index=False, name=None))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def json_html(obj: Any) -> str:
    """JSON, pretty-printed and wrapped (long model specs do not overflow the page)."""
    return f"<pre>{html.escape(json.dumps(obj, indent=2, ensure_ascii=False))}</pre>"


def write_page(title: str, sections: list[tuple[str, str, str]], out: str) -> None:
    """Write an HTML page atomically: a title, then (heading, note, html) per section."""
    from .io import atomic_path

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{CSS}</style></head><body><h2>{html.escape(title)}</h2>"]
    for heading, note, content in sections:
        parts.append(f"<h3>{html.escape(heading)}</h3>")
        if note:
            parts.append(f"<p class='note'>{html.escape(note)}</p>")
        parts.append(content)
    parts.append("</body></html>\n")
    with atomic_path(out) as tmp:
        tmp.write_text("".join(parts), encoding="utf-8")
