"""The leaderboard as one self-contained web page (`leaderboard/index.html`): no CDN, no other
file, works from file:// and GitHub Pages. A table per dataset and protocol that sorts by any
column and filters by method, paradigm and recipe, the figures, and a row's details on click
(settings, per-fold numbers, a link to its result JSON).

Everything from result files reaches the page as JSON data and is put into the document with
`textContent`, never as HTML, so a name in a contributed result cannot inject markup."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from urllib.parse import quote

from msde_bench.balance import describe as describe_balance
from msde_bench.board import Board, Cell, Row, Table, columns, dataset_note
from msde_bench.figures import figure_paths
from msde_bench.mdtext import plain
from msde_bench.metrics import metrics_in


def _fold_keys() -> tuple[str, ...]:
    """What a row's details show per fold of each seed (the metrics of view `fold`)."""
    return ("seed", "fold", "n_test_pairs", *(m.key for m in metrics_in("fold")))

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; max-width: 100%; }
table.board td, table.board th { overflow-wrap: normal; }
table.settings td { padding: 0.1em 0.6em 0.1em 0; vertical-align: top; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; }
.note { color: #555; max-width: 70em; }
table.board { border-collapse: collapse; font-size: 0.85em; margin-top: 0.6em; }
table.board th, table.board td { border-bottom: 1px solid #ddd; padding: 0.3em 0.5em; text-align: left; }
table.board th { cursor: pointer; background: #f3f3f3; user-select: none; white-space: nowrap; }
table.board th.sorted-asc::after { content: " ▲"; } table.board th.sorted-desc::after { content: " ▼"; }
table.board tr.row:hover { background: #f6f9ff; cursor: pointer; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.details td { background: #fafafa; font-size: 0.95em; }
.filters select { margin-right: 1em; }
img.figure { max-width: 48%; margin: 0.5em 1% 0 0; border: 1px solid #eee; }
@media (max-width: 700px) { body { margin: 0.6em; } img.figure { max-width: 100%; } }
"""

_SCRIPT = r"""
const DATA = JSON.parse(document.getElementById("data").textContent);
function el(tag, text, cls) { const e = document.createElement(tag); if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls; return e; }
function fmt(v) { return (v === null || v === undefined) ? "–" :
  (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : String(v)); }
function cell(row, i) {
  const c = row.cells[i]; const td = el("td", undefined, i === 1 ? "" : "num");
  if (c.bold) td.appendChild(el("strong", c.text)); else td.appendChild(document.createTextNode(c.text));
  if (c.tail) td.appendChild(document.createTextNode(c.tail));
  for (const n of c.notes) { td.appendChild(document.createTextNode(" ")); td.appendChild(el("sup", String(n))); }
  return td;
}
function sortValue(row, key) { return key in row ? row[key] : row.cells[DATA.columns.findIndex(c => c[0] === key)].text; }
function buildTable(table, section) {
  const filters = el("div", undefined, "filters");
  const selects = {};
  for (const key of ["model", "paradigm", "recipe"]) {
    const s = el("select"); s.dataset.filter = key; s.appendChild(el("option", "every " + key));
    s.options[0].value = "";
    for (const v of [...new Set(table.rows.map(r => r[key]))].sort()) { const o = el("option", v); o.value = v;
      s.appendChild(o); }
    s.addEventListener("change", render); selects[key] = s; filters.appendChild(s);
  }
  section.appendChild(filters);
  const t = el("table", undefined, "board"); const head = el("tr"); const body = el("tbody");
  let sortKey = null, sortDir = 1;
  for (const [key, title] of DATA.columns) {
    const th = el("th", title); th.dataset.key = key;
    th.addEventListener("click", () => { sortDir = (sortKey === key) ? -sortDir : (key === "rank" ? 1 : -1);
      sortKey = key; for (const h of head.children) h.className = "";
      th.className = sortDir > 0 ? "sorted-asc" : "sorted-desc"; render(); });
    head.appendChild(th);
  }
  const thead = el("thead"); thead.appendChild(head); t.appendChild(thead); t.appendChild(body);
  const wrap = el("div", undefined, "scroll"); wrap.appendChild(t); section.appendChild(wrap);
  function details(row) {
    const tr = el("tr", undefined, "details"); const td = el("td"); td.colSpan = DATA.columns.length;
    td.appendChild(el("div", "runs: " + row.run_ids.join(", ")));
    const link = el("a", "result JSON"); link.href = row.result_file; td.appendChild(link);
    for (const line of row.balance || []) td.appendChild(el("div", line));
    const st = el("table", undefined, "settings");
    for (const [k, v] of Object.entries(row.settings)) {
      const entries = (v && typeof v === "object" && !Array.isArray(v)) ? Object.entries(v).map(([o, x]) => [k + "." + o, x])
        : [[k, v]];
      for (const [name, value] of entries) { const sr = el("tr"); sr.appendChild(el("td", name));
        sr.appendChild(el("td", Array.isArray(value) ? value.join(", ") : String(value))); st.appendChild(sr); }
    }
    const sw = el("div", undefined, "scroll"); sw.appendChild(el("div", "settings:")); sw.appendChild(st);
    td.appendChild(sw);
    const ft = el("table", undefined, "folds"); const fh = el("tr");
    for (const k of DATA.fold_keys) fh.appendChild(el("th", k)); ft.appendChild(fh);
    for (const f of row.folds) { const fr = el("tr"); for (const k of DATA.fold_keys) fr.appendChild(el("td",
      fmt(f[k]), "num")); ft.appendChild(fr); }
    const fw = el("div", undefined, "scroll"); fw.appendChild(ft); td.appendChild(fw); tr.appendChild(td); return tr;
  }
  function render() {
    body.textContent = "";
    let rows = table.rows.filter(r => Object.entries(selects).every(([k, s]) => !s.value || r[k] === s.value));
    if (sortKey) rows = rows.slice().sort((a, b) => { const x = sortValue(a, sortKey), y = sortValue(b, sortKey);
      return (x < y ? -1 : x > y ? 1 : 0) * sortDir; });
    for (const row of rows) {
      const tr = el("tr", undefined, "row"); tr.dataset.model = row.model; tr.dataset.paradigm = row.paradigm;
      DATA.columns.forEach((_, i) => tr.appendChild(cell(row, i)));
      tr.addEventListener("click", () => { const next = tr.nextSibling;
        if (next && next.className === "details") next.remove(); else tr.after(details(row)); });
      body.appendChild(tr);
    }
  }
  render();
}
const main = document.getElementById("tables");
for (const table of DATA.tables) {
  const section = el("section"); section.appendChild(el("h2", table.title));
  section.appendChild(el("p", table.note, "note"));
  buildTable(table, section);
  for (const n of table.notes) section.appendChild(el("p", n, "note"));
  for (const fig of table.figures) { const img = el("img", undefined, "figure"); img.src = fig.src; img.alt = fig.alt;
    section.appendChild(img); }
  main.appendChild(section);
}
"""


def _html_safe(text: str) -> str:
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _svg_data(data: bytes) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(data).decode()


def page(board: Board, svgs: dict[str, bytes], intro: str, result_dir: Path) -> str:
    """The HTML page of the board: a table per board table, each with its figures from `svgs`
    ({path relative to the markdown: SVG bytes}: figures.figure_paths), its result files linked
    relative to `result_dir`."""
    tables = [_table_data(t, svgs, result_dir) for t in board.tables]
    data = dict(columns=columns(), fold_keys=_fold_keys(),
                tables=[dict(title=t["title"], note=t["note"], rows=t["rows"], notes=t["notes"],
                             figures=[dict(alt=f["alt"], src=_svg_data(f["svg"])) for f in t["figures"]])
                        for t in tables])
    # JSON inside HTML: < > & as \u escapes, so no text from a result file can close the element
    blob = _html_safe(json.dumps(data, sort_keys=True, ensure_ascii=True))
    intro_text = _html_safe(json.dumps(intro)[1:-1])
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<meta name=\"generator\" content=\"msde-bench leaderboard\">\n<title>msde-bench leaderboard</title>\n"
        f"<style>{_STYLE}</style>\n</head>\n<body>\n<h1>msde-bench leaderboard</h1>\n"
        f"<p class=\"note\" id=\"intro\"></p>\n<div id=\"tables\"></div>\n"
        f"<script type=\"application/json\" id=\"data\">{blob}</script>\n"
        f"<script>document.getElementById(\"intro\").textContent = \"{intro_text}\";\n{_SCRIPT}</script>\n"
        "</body>\n</html>\n")


def row_data(rec: dict, row: Row, cells: list[Cell], rank: int | None, result_dir: Path) -> dict:
    """One row of the page from board.frame's record, its Row, its cells (board.table_view, as the
    markdown shows them) and its rank (None unranked): what each column shows in `cells`, the numbers
    it sorts by under the column's key, and the row's details."""
    out = {"rank": rank, "model": rec["model"], "paradigm": cells[2].text, "recipe": rec["recipe"],
           "params": int(rec["params"]), "train_seconds": round(float(rec["train_seconds"]), 1),
           "run_ids": [r["run_id"] for r in row.runs],
           "cells": [dict(text=c.text, bold=c.bold, tail=c.tail, notes=list(c.notes)) for c in cells]}
    for key in (m.key for m in metrics_in("table")):
        out[key] = round(float(rec[f"{key}_mean"]), 6) if rec[f"{key}_n"] else None  # not recorded: none
    run = row.runs[0]
    out["balance"] = [f"seed {r['spec']['seed']}: {line}" for r in row.runs if (line := describe_balance(r))]
    out["settings"] = run["spec"]
    out["folds"] = [{k: (round(f[k], 6) if isinstance(f.get(k), float) else f.get(k))
                     for k in _fold_keys()} | {"seed": r["spec"]["seed"]} for r in row.runs for f in r["folds"]]
    # a relative URL that stays one whatever the file is called (`javascript:...json` included)
    out["result_file"] = "./" + quote(os.path.relpath(run["_path"], result_dir).replace(os.sep, "/"), safe="/")
    return out


def _table_data(table: Table, svgs: dict[str, bytes], result_dir: Path) -> dict:
    """A table of the board as the page's data: title, note (what the dataset is), rows (with the cells
    the markdown shows), the notes under the table (the markdown's, as text: the marks' meanings, the
    power, the budget, the row notes) and the figures."""
    rows, notes = [], []
    for group in (table.complete, table.incomplete):
        if group is not None:
            view = group.view
            rows += [row_data(rec, row, cells, i + 1 if group.ranked else None, result_dir)
                     for i, (rec, row, cells) in enumerate(zip(group.frame.to_dict("records"), group.rows, view.cells))]
            if group is table.complete:  # the markdown, too, shows the notes of the complete rows only
                notes = [plain(n) for n in view.notes] + [f"{k}. {plain(t)}" for k, t in enumerate(view.row_notes, 1)]
    note = plain(" ".join([dataset_note(table.rows), *table.about]))
    mine = sorted(f"{base}.svg" for base, _ in figure_paths(table.slug))
    figs = [dict(alt=rel.rsplit("/", 1)[-1], svg=svgs[rel]) for rel in mine if rel in svgs]
    title = (f"{table.name} · fingerprint {table.fingerprint} · protocol {table.protocol} v{table.version} "
             f"({table.split}, {table.folds} fold{'' if table.folds == 1 else 's'})")
    return dict(title=title, note=note, rows=rows, notes=notes, figures=figs)
