"""The self-contained HTML page of a report: one file, no network, figures inlined as base64 PNG.

``index.html`` holds inline CSS, every figure as ``<img src="data:image/png;base64,...">`` inside a
``<figure id="fig-<name>">`` (with links to the PNG/PDF files written beside it), the tables as HTML
tables (bold as ``<b>``), notes (what is missing and why) and the provenance of the runs.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from typing import Sequence

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1180px;color:#222;
padding:0 16px;line-height:1.4}
h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:32px}
table.table{border-collapse:collapse;font-size:12.5px;margin:8px 0}
table.table th{border-bottom:2px solid #444;padding:3px 8px;text-align:left;background:#f5f5f5}
table.table td{padding:2px 8px;border-bottom:1px solid #eee}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.table tr.group td{border-top:1.5px solid #999}caption{caption-side:top;text-align:left;color:#555;padding:4px 0}
table.meta td{padding:1px 10px 1px 0;font-size:13px;vertical-align:top}table.meta td:first-child{color:#666}
figure{margin:12px 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:12.5px;color:#555}
.notes{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 12px;font-size:13px}
.note{font-size:12px;color:#666}.swatch{display:inline-block;width:11px;height:11px;margin-right:4px;
vertical-align:middle;border-radius:2px}.legend span.item{margin-right:14px;font-size:13px}
pre{background:#f7f7f7;padding:8px;font-size:11.5px;overflow-x:auto}
"""


@dataclass
class Section:
    """One ``<section>`` of the page: anchor id, heading and body HTML."""

    id: str
    heading: str
    body: str


def figure_html(name: str, png: bytes, caption: str, files: Sequence[str] = ()) -> str:
    """A ``<figure id="fig-<name>">`` with the PNG inlined and links to the written files."""
    data = base64.b64encode(png).decode("ascii")
    links = " ".join(f'<a href="{html.escape(f)}">{html.escape(f)}</a>' for f in files)
    return (f'<figure id="fig-{html.escape(name)}" data-figure="{html.escape(name)}">'
            f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}{' — ' + links if links else ''}</figcaption></figure>")


def legend_html(colors: dict[str, str]) -> str:
    """The model → colour legend shared by every figure."""
    items = "".join(f'<span class="item"><span class="swatch" style="background:{c}"></span>{html.escape(m)}</span>'
                    for m, c in colors.items())
    return f'<p class="legend">{items}</p>'


def meta_table(rows: Sequence[tuple[str, str]]) -> str:
    """Key/value provenance table."""
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="meta">{body}</table>'


def render_page(title: str, meta: Sequence[tuple[str, str]], notes: Sequence[str], sections: Sequence[Section]) -> str:
    """The whole page as one string."""
    toc = " · ".join(f'<a href="#{html.escape(s.id)}">{html.escape(s.heading)}</a>' for s in sections)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", meta_table(meta)]
    if notes:
        parts.append('<div class="notes"><b>Notes</b><ul>' + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul></div>")
    parts.append(f"<p>{toc}</p>")
    for s in sections:
        parts.append(f'<section id="{html.escape(s.id)}"><h2>{html.escape(s.heading)}</h2>{s.body}</section>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
