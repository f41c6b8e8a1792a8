"""``leaderboard.md`` (a table ready for a README) and ``leaderboard.html`` (one static, sortable page).

Both show the ``board`` section of leaderboard.json: one row per model in rank order, one column per
headline score (value and [95% CI]; percent for mIoU-like scores, a plain number for ratios), the paired
test against the next-ranked model, failed rows, and provenance. The HTML page needs no server and no
network: inline CSS, a few lines of inline JavaScript sort the table when a header is clicked (numbers by
value, missing values last either way), and ``#sort=<column id>:asc|desc`` in the address sorts on load.
Each model links to its card, its weights (the card's checkpoint URL, the hash as text) and the manifest of
every run it comes from, by paths relative to the page.
"""

from __future__ import annotations

import html
import re
from typing import Optional

URL = re.compile(r"https?://[^\s)\"'<>]+")


def fmt_value(value: Optional[float], unit: str) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f}" if unit == "percent" else f"{value:.2f}"


def fmt_cell(cell: Optional[dict], unit: str) -> str:
    """``85.8 [75.3, 94.3]`` (or ``–``)."""
    if not cell or cell.get("value") is None:
        return "–"
    lo, hi = cell.get("ci") or [None, None]
    ci = f" [{fmt_value(lo, unit)}, {fmt_value(hi, unit)}]" if lo is not None and hi is not None else ""
    return fmt_value(cell["value"], unit) + ci


def column_title(col: dict) -> str:
    return f"{col['title']} ({col['protocol']})"


def rank_text(e: dict) -> str:
    if e["rank"] is None:
        return "–"
    return f"{e['rank']}=" if e["tie"] else str(e["rank"])


def fmt_delta(value: Optional[float], unit: str) -> str:
    if value is None:
        return "–"
    return f"{100 * value:+.1f}" if unit == "percent" else f"{value:+.2f}"


def vs_next_text(e: dict, unit: str) -> str:
    """``> box-fill (Δ +9.9 [+4.1, +15.8], p=0.002)``; ``≈`` when the paired CI includes 0."""
    t = e.get("vs_next")
    if not t:
        return ""
    lo, hi = t["ci"]
    ci = "" if lo is None or hi is None else f" [{fmt_delta(lo, unit)}, {fmt_delta(hi, unit)}]"
    p = "" if t.get("p_value") is None else f", p={t['p_value']:.2g}"
    return f"{'>' if t['separable'] else '≈'} {t['model']} (Δ {fmt_delta(t['delta'], unit)}{ci}{p})"


def _short_hash(h: Optional[str]) -> str:
    """A sha256 cut to 12 hex digits for a page; anything else (``random-init:0``, an ``hf:`` identity) whole."""
    if not h:
        return "none"
    return str(h)[:12] if re.fullmatch(r"[0-9a-f]{64}", str(h)) else str(h)


def _rank_col(board: dict) -> dict:
    return next(c for c in board["columns"] if c["id"] == board["rank_by"])


def scope_text(board: dict) -> str:
    col = _rank_col(board)
    ds = col["datasets"]
    where = f"dataset {ds[0]}" if len(ds) == 1 else f"the plain mean of {len(ds)} dataset means ({', '.join(ds)})"
    return f"Ranked by **{column_title(col)}** over {where}."


# ------------------------------------------------------------------------------------------ markdown


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def verification_lines(doc: dict) -> list[str]:
    """The page's account of ``doc["verification"]`` (``--verify [--rerun N]``): a head line, then one line per
    re-run entry (run, model, status, images, device, date, worst IoU); [] for a board built without ``--verify``."""
    v = doc.get("verification")
    if not isinstance(v, dict):
        return []
    head = (f"--verify: {v.get('rescored_masks')} stored mask(s) re-scored against the ground truth and their prompts "
            f"regenerated ({v.get('rescore_mismatches')} mismatch(es)).")
    if not v.get("rerun_images"):
        return [head + " The models were not re-run (no --rerun): the masks are consistent, not proven to be the "
                       "models'."]
    head += (f" --rerun {v['rerun_images']}: each model re-run on {v['rerun_images']} keyed image(s) and its masks "
             f"compared with the stored ones, prompt by prompt.")
    out = [head]
    for c in v.get("rerun") or []:
        if c["status"] == "not re-run":
            out.append(f"{c['model']} ({c['run']}): {c['reason']}")
            continue
        worst = "-" if c.get("worst_iou") is None else f"{c['worst_iou']:.6f}"
        out.append(f"{c['model']} ({c['run']}): {c['status']}; {len(c['images'])} image(s), {c['prompts']} prompt(s) "
                   f"on {c['device']} ({c['dtype']}), {c['date']}; worst mask IoU {worst} (tolerance {c['min_iou']:g})")
    return out


def render_markdown(doc: dict, note: str = "") -> str:
    """The Markdown page: ranked table, definitions, provenance."""
    board = doc["board"]
    cols = board["columns"]
    unit = _rank_col(board)["unit"]
    lines = ["# sambench leaderboard", "", scope_text(board) + " Percent for mIoU- and J&F-like scores, [95% bootstrap CI "
             "over objects]; `>`: separable from the next-ranked model (paired bootstrap CI of the difference "
             "excludes 0, Wilcoxon p), `≈`: not separable; `2=`: tied as printed.", ""]
    head = ["Rank", "Model"] + [column_title(c) for c in cols] + ["vs next", "Failed rows"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for e in board["entries"]:
        cells = [rank_text(e), f"**{e['model']}**" if e["rank"] == 1 else e["model"]]
        cells += [fmt_cell(e["scores"].get(c["id"]), c["unit"]) for c in cols]
        cells += [vs_next_text(e, unit), str(e["failed_rows"])]
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    if board["notes"]:
        lines += [""] + [f"- {_md(n)}" for n in board["notes"]]
    if doc.get("video_headline"):
        lines += ["", "## Video", "", VIDEO_CAPTION, "", "| " + " | ".join(VIDEO_HEAD) + " |", "|" + "---|" * len(VIDEO_HEAD)]
        lines += ["| " + " | ".join(_md(c) for c in _video_cells(v)) + " |" for v in doc["video_headline"]]
    lines += ["", "## Scores", ""]
    for c in cols:
        lines.append(f"- **{_md(column_title(c))}** (`{c['id']}`): {_md(c['definition'])}")
    lines.append(f"- Every score: {_md(board['failures'])}; CI: {_md(board['ci'])}; across datasets, the plain "
                 "mean of the dataset values. docs/metrics.md defines each.")
    lines += ["", "## Provenance", "", "| Model | Paper | Weights (sha256) | Protocols | Datasets | sambench | Date | Runs |",
              "|---|---|---|---|---|---|---|---|"]
    for e in board["entries"]:
        p = e["provenance"]
        protos = ", ".join(f"{k} v{v}" for k, v in sorted(p["protocol_versions"].items()))
        dsets = ", ".join(f"{k} {_short_hash(v)}" for k, v in sorted(p["dataset_hashes"].items()))
        runs = ", ".join(f"[{r['run_dir']}]({r['manifest']})" for r in p["runs"])
        model = f"[{e['model']}]({p['card_link']})" if p.get("card_link") else e["model"]
        weights = _short_hash(p["weights_sha256"]) if p["weights_sha256"] else "no weights"
        if p.get("plugin_id"):
            weights += f" + plug-in {_short_hash(p['plugin_id'])}"
        cells = [model, p.get("paper") or "–", weights, protos, dsets, ", ".join(p["sambench_versions"]) or "?",
                 p.get("date") or "?", runs]
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    checked = verification_lines(doc)
    if checked:
        lines += ["", "## Verification", "", _md(checked[0])]
        lines += [""] + [f"- {_md(t)}" for t in checked[1:]] if len(checked) > 1 else []
    lines += ["", f"sambench {doc['sambench_version']}, board built {doc['date']}; every number at full precision "
              "in leaderboard.json."]
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


VIDEO_HEAD = ["Model", "Dataset", "Protocol", "First level", "J&F there", "Mean J&F over levels", "Levels",
              "Failed rows"]
VIDEO_CAPTION = ("J&F (percent, clean frames) of the video protocols: mean over tracks of the mean over draws, the "
                 "prompt frame excluded (docs/video.md); the first level is the GT mask, the GT box, 1 point or "
                 "1 click. Each protocol's models are listed by their mean J&F; the ranked table above scores video protocols "
                 "by the same J&F (the *J&F* columns).")


def _video_cells(v: dict) -> list[str]:
    return [v["model"], v["dataset"], v["protocol"], v["first_level"], fmt_value(_frac(v["jf_first"]), "percent"),
            fmt_value(_frac(v["jf_mean"]), "percent"), str(v["levels"]), str(v["failed"])]


def _frac(v: Optional[float]) -> Optional[float]:
    return None if v is None else v / 100.0  # the video headline is in percent, fmt_value prints fractions x 100


# ------------------------------------------------------------------------------------------ html

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1400px;color:#222;
padding:0 16px;line-height:1.4}h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:1px solid #ddd;margin-top:28px}
table.board{border-collapse:collapse;font-size:13px;margin:10px 0}
table.board th{border-bottom:2px solid #444;padding:4px 8px;text-align:left;background:#f3f3f3;cursor:pointer;
user-select:none;vertical-align:bottom}table.board th:hover{background:#e6eefc}
table.board th[aria-sort=descending]::after{content:" \\25BC"}table.board th[aria-sort=ascending]::after{content:" \\25B2"}
table.board th.rankby{background:#fff3c4}table.board td{padding:3px 8px;border-bottom:1px solid #eee;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}td.num .ci{color:#777;font-size:11px}
td.sep{white-space:nowrap;font-size:12px}td.links{font-size:12px}.tie{color:#b35c00;font-weight:bold}
table.prov{border-collapse:collapse;font-size:12px}table.prov td,table.prov th{padding:2px 8px;border-bottom:1px solid #eee;
text-align:left;vertical-align:top}code{font-size:11.5px}.note{color:#555;font-size:13px}
.notes{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 12px;font-size:13px}
"""

JS = """
(function(){
  var table=document.getElementById('board');
  function key(td){var v=td.getAttribute('data-sort');return v===null||v===''?null:v;}
  function sortBy(i,dir){
    var tb=table.tBodies[0],rows=Array.prototype.slice.call(tb.rows),th=table.tHead.rows[0].cells[i];
    var numeric=th.getAttribute('data-type')==='number';
    rows.sort(function(a,b){
      var x=key(a.cells[i]),y=key(b.cells[i]);
      if(x===null&&y===null)return 0; if(x===null)return 1; if(y===null)return -1;
      var c=numeric?(parseFloat(x)-parseFloat(y)):x.localeCompare(y);
      return dir==='asc'?c:-c;});
    rows.forEach(function(r){tb.appendChild(r);});
    Array.prototype.forEach.call(table.tHead.rows[0].cells,function(h){h.removeAttribute('aria-sort');});
    th.setAttribute('aria-sort',dir==='asc'?'ascending':'descending');
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,i){
    th.addEventListener('click',function(){
      var cur=th.getAttribute('aria-sort'),first=th.getAttribute('data-first')||'asc';
      sortBy(i,cur?(cur==='ascending'?'desc':'asc'):first);});
  });
  var m=/#sort=([^:&]+)(?::(asc|desc))?/.exec(decodeURIComponent(location.hash||''));
  if(m){Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,i){
    if(th.getAttribute('data-col')===m[1])sortBy(i,m[2]||th.getAttribute('data-first')||'asc');});}
})();
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _linkify(text: Optional[str]) -> str:
    """Escaped text with URLs as links and `backticked` spans as <code> (the note may be Markdown-ish)."""
    if not text:
        return "–"
    out = []
    for i, part in enumerate(str(text).split("`")):
        if i % 2:
            out.append(f"<code>{_e(part)}</code>")
            continue
        last = 0
        for m in URL.finditer(part):
            out.append(_e(part[last:m.start()]))
            out.append(f'<a href="{_e(m.group(0))}">{_e(m.group(0))}</a>')
            last = m.end()
        out.append(_e(part[last:]))
    return "".join(out)


def _num_td(cell: Optional[dict], unit: str, higher_is_better: bool = True) -> str:
    if not cell or cell.get("value") is None:
        return '<td class="num" data-sort="">–</td>'
    lo, hi = cell.get("ci") or [None, None]
    ci = (f'<br><span class="ci">[{fmt_value(lo, unit)}, {fmt_value(hi, unit)}]</span>'
          if lo is not None and hi is not None else "")
    return f'<td class="num" data-sort="{cell["value"]!r}">{fmt_value(cell["value"], unit)}{ci}</td>'


def render_html(doc: dict, note: str = "") -> str:
    """The static sortable page (see the module docstring)."""
    board = doc["board"]
    cols = board["columns"]
    unit = _rank_col(board)["unit"]
    th = ['<th data-col="rank" data-type="number" data-first="asc" aria-sort="ascending">Rank</th>',
          '<th data-col="model" data-type="text" data-first="asc">Model</th>']
    for c in cols:
        cls = ' class="rankby"' if c["id"] == board["rank_by"] else ""
        first = "desc" if c["higher_is_better"] else "asc"
        th.append(f'<th data-col="{_e(c["id"])}" data-type="number" data-first="{first}"{cls} '
                  f'title="{_e(c["definition"])}">{_e(c["title"])}<br><small>{_e(c["protocol"])}</small></th>')
    th += ['<th data-col="vs-next" data-type="text" data-first="asc">vs next</th>',
           '<th data-col="failed" data-type="number" data-first="asc">Failed rows</th>',
           '<th data-col="links" data-type="text" data-first="asc">Card · paper · weights · runs</th>']
    body = []
    for e in board["entries"]:
        p = e["provenance"]
        rank = "" if e["rank"] is None else str(e["rank"])
        rank_html = _e(rank_text(e)) + (' <span class="tie" title="tied as printed">tie</span>' if e["tie"] else "")
        model = (f'<a class="card" href="{_e(p["card_link"])}">{_e(e["model"])}</a>' if p.get("card_link")
                 else _e(e["model"]))
        tds = [f'<td data-sort="{rank}">{rank_html}</td>', f'<td data-sort="{_e(e["model"])}"><b>{model}</b></td>']
        tds += [_num_td(e["scores"].get(c["id"]), c["unit"]) for c in cols]
        tds.append(f'<td class="sep" data-sort="{_e(vs_next_text(e, unit))}">{_e(vs_next_text(e, unit))}</td>')
        tds.append(f'<td class="num" data-sort="{e["failed_rows"]}">{e["failed_rows"]}</td>')
        tds.append(f'<td class="links" data-sort="{_e(e["model"])}">{_links(p)}</td>')
        body.append(f'<tr data-model="{_e(e["model"])}">' + "".join(tds) + "</tr>")
    notes = "".join(f"<li>{_e(n)}</li>" for n in board["notes"])
    defs = "".join(f"<li><b>{_e(column_title(c))}</b> (<code>{_e(c['id'])}</code>): {_e(c['definition'])}</li>"
                   for c in cols)
    scope = scope_text(board).replace("**", "")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>sambench leaderboard</title><style>{CSS}</style></head><body>",
        "<h1>sambench leaderboard</h1>",
        f'<p class="note">{_e(scope)} Percent for mIoU- and J&F-like scores, with the 95% bootstrap CI over objects below '
        "each value. <b>vs next</b>: &gt; separable from the next-ranked model (paired bootstrap CI of the "
        "difference excludes 0; Wilcoxon p), ≈ not separable. Click a column header to sort.</p>",
        '<table id="board" class="board"><thead><tr>' + "".join(th) + "</tr></thead><tbody>" + "".join(body) +
        "</tbody></table>",
    ]
    if notes:
        parts.append(f'<div class="notes"><b>Notes</b><ul>{notes}</ul></div>')
    if doc.get("video_headline"):
        rows = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in _video_cells(v)) + "</tr>"
                       for v in doc["video_headline"])
        parts += ["<h2>Video</h2>", f'<p class="note">{_e(VIDEO_CAPTION)}</p>',
                  '<table class="board"><thead><tr>' + "".join(f"<th>{_e(h)}</th>" for h in VIDEO_HEAD) +
                  f"</tr></thead><tbody>{rows}</tbody></table>"]
    parts += ["<h2>Scores</h2>", f"<ul>{defs}<li>{_e(board['failures'])}; CI: {_e(board['ci'])}.</li></ul>",
              "<h2>Provenance</h2>", _provenance_table(board)]
    checked = verification_lines(doc)
    if checked:
        parts += ["<h2>Verification</h2>", f'<p class="note">{_e(checked[0])}</p>',
                  "<ul>" + "".join(f"<li>{_e(t)}</li>" for t in checked[1:]) + "</ul>"]
    if note:
        parts.append(f'<p class="note">{_linkify(note)}</p>')
    parts += [f'<p class="note">sambench {_e(doc["sambench_version"])}, board built {_e(doc["date"])}; every number '
              'at full precision in <a href="leaderboard.json">leaderboard.json</a>.</p>',
              f"<script>{JS}</script></body></html>"]
    return "\n".join(parts) + "\n"


def _links(p: dict) -> str:
    out = []
    if p.get("card_link"):
        out.append(f'<a href="{_e(p["card_link"])}">card</a>')
    urls = URL.findall(p.get("paper") or "")
    if urls:
        out.append(f'<a class="paper" href="{_e(urls[0])}" title="{_e(p["paper"])}">paper</a>')
    w = p.get("weights_sha256")
    if w:
        label = f"weights {_e(_short_hash(w))}"
        out.append(f'<a class="weights" href="{_e(p["checkpoint_url"])}" title="sha256 {_e(w)}">{label}</a>'
                   if p.get("checkpoint_url") else f'<span class="weights" title="sha256 {_e(w)}">{label}</span>')
    else:
        out.append('<span class="weights">no weights</span>')
    for r in p["runs"]:
        out.append(f'<a class="manifest" href="{_e(r["manifest"])}">run {_e(r["run_dir"])}</a>')
    return " · ".join(out)


def _provenance_table(board: dict) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("Model", "Paper", "Weights sha256", "Protocols", "Datasets (content hash)",
                                              "sambench", "Date", "Runs (git commit)"))
    rows = []
    for e in board["entries"]:
        p = e["provenance"]
        protos = "<br>".join(f"{_e(k)} v{_e(v)}" for k, v in sorted(p["protocol_versions"].items()))
        dsets = "<br>".join(f"{_e(k)} <code>{_e(_short_hash(v))}</code>" for k, v in sorted(p["dataset_hashes"].items()))
        w = f"<code>{_e(p['weights_sha256'])}</code>" if p.get("weights_sha256") else "no weights"
        if p.get("plugin_id"):
            w += f"<br>plug-in <code>{_e(p['plugin_id'])}</code>"
        runs = "<br>".join(f'<a href="{_e(r["manifest"])}">{_e(r["run_dir"])}</a> '
                           f'<code>{_e(str(r.get("git_commit") or "?")[:12])}</code>' for r in p["runs"])
        rows.append(f"<tr><td>{_e(e['model'])}</td><td>{_linkify(p.get('paper'))}</td><td>{w}</td><td>{protos}</td>"
                    f"<td>{dsets}</td><td>{_e(', '.join(p['sambench_versions']) or '?')}</td>"
                    f"<td>{_e(p.get('date') or '?')}</td><td>{runs}</td></tr>")
    return f'<table class="prov"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
