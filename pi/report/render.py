"""Writes a report: one self-contained HTML page (inline CSS, base64 PNGs), its Markdown twin with
the PNGs next to it, and the JSON of every number.
"""
from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path

import numpy as np

from pi.report.document import ReportError, Section, fmt

CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 0; color: #1d2430;
       background: #fbfbfd; }
header { background: #1f3b5a; color: white; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 24px; }
nav { background: #e8edf3; padding: 8px 32px; position: sticky; top: 0; }
nav a { margin-right: 16px; color: #1f3b5a; text-decoration: none; font-size: 14px; }
main { padding: 8px 32px 40px 32px; max-width: 1500px; }
section { background: white; border: 1px solid #dde3ea; border-radius: 6px; margin: 18px 0; padding: 6px 20px 14px; }
h2 { border-bottom: 2px solid #1f3b5a; padding-bottom: 4px; }
.status { font-size: 12px; padding: 2px 8px; border-radius: 10px; margin-left: 8px; vertical-align: middle; }
.status-ok { background: #d8f0dc; } .status-partial { background: #fff1c2; } .status-missing { background: #f8d4d4; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #d6dce3; padding: 3px 8px; text-align: right; }
th { background: #eef2f6; } td.text, th.text { text-align: left; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 4px 0; }
pre, code { background: #f1f3f6; font-size: 12.5px; }
pre { padding: 8px; overflow-x: auto; }
figure { margin: 8px 0 18px; } figure img { max-width: 100%; border: 1px solid #e3e7ec; }
figcaption { font-size: 13px; color: #4a5563; }
.todo { background: #fff8e0; border-left: 4px solid #e0b000; padding: 6px 12px; }
"""


def _cell(v, spec):
    text = fmt(v, spec)
    cls = ' class="text"' if spec == "s" else ""
    return f"<td{cls}>{html.escape(text)}</td>"


def render_html(doc: dict, sections: list[Section]) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>pi report</title>", f"<style>{CSS}</style></head><body>",
             ('<header><h1>Private inference under a ReLU budget: report</h1>'
             f'<div>{html.escape(doc["date"])} · <code style="background:none;color:#dfe7f0">'
             f'{html.escape(doc["command"])}</code></div></header>'), "<nav>"]
    parts += [f'<a href="#{s.id}">{html.escape(s.title.split(" (")[0])}</a>' for s in sections]
    parts.append("</nav><main>")
    for s in sections:
        parts.append(f'<section id="{s.id}"><h2>{html.escape(s.title)}'
                     f'<span class="status status-{s.status}">{s.status}</span></h2>')
        for n in s.notes:
            parts.append(f"<p>{_inline_code(n)}</p>")
        if s.todo:
            lead = "To fill this section, run:" if s.status == "missing" else "To add what is missing, run:"
            parts.append(f'<div class="todo"><p>{lead}</p><pre>'
                         + html.escape("\n".join(s.todo)) + "</pre></div>")
        for name, caption, png in s.figures:
            b64 = base64.b64encode(png).decode("ascii")
            parts.append(f'<figure id="fig-{name}"><img alt="{html.escape(name)}" src="data:image/png;base64,{b64}">'
                         f"<figcaption>{_inline_code(caption)}</figcaption></figure>")
        for t in s.tables:
            heads = "".join((f'<th class="text">{html.escape(c[1])}</th>' if c[2] == "s" else
                             f"<th>{html.escape(c[1])}</th>") for c in t.columns)
            parts.append(f"<table><caption>{_inline_code(t.title)}</caption><thead><tr>{heads}</tr></thead><tbody>")
            for r in t.rows:
                parts.append("<tr>" + "".join(_cell(r.get(c[0]), c[2]) for c in t.columns) + "</tr>")
            parts.append("</tbody></table>")
        parts.append("</section>")
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


def _inline_code(text: str) -> str:
    """Escapes text and turns `code` spans into <code>."""
    out, inside = [], False
    for i, chunk in enumerate(str(text).split("`")):
        if i:
            inside = not inside
        out.append(f"<code>{html.escape(chunk)}</code>" if inside else html.escape(chunk))
    return "".join(out)


def render_markdown(doc: dict, sections: list[Section], figure_names: dict[str, str]) -> str:
    lines = ["# Private inference under a ReLU budget: report", "", f"{doc['date']} · `{doc['command']}`", ""]
    for s in sections:
        lines += [f'<a id="{s.id}"></a>', f"## {s.title} ({s.status})", ""]
        for n in s.notes:
            lines += [n, ""]
        if s.todo:
            lead = "To fill this section, run:" if s.status == "missing" else "To add what is missing, run:"
            lines += [lead, "", "```sh", *s.todo, "```", ""]
        for name, caption, _png in s.figures:
            lines += [f"![{name}]({figure_names[name]})", "", f"*{caption}*", ""]
        for t in s.tables:
            lines += [f"**{t.title}**", "", "| " + " | ".join(c[1] for c in t.columns) + " |",
                      "|" + "|".join("---" if c[2] == "s" else "---:" for c in t.columns) + "|"]
            for r in t.rows:
                lines.append("| " + " | ".join(fmt(r.get(c[0]), c[2]).replace("|", "\\|") for c in t.columns) + " |")
            lines.append("")
    return "\n".join(lines) + "\n"


def output_paths(out: str | os.PathLike) -> tuple[Path, Path, Path]:
    p = Path(out)
    if p.suffix.lower() in (".html", ".htm"):
        return p, p.with_suffix(".md"), p.with_suffix(".json")
    if p.suffix:
        raise ReportError(f"--out {out}: give an .html path (the .md and .json twins go next to it) or a directory")
    return p / "report.html", p / "report.md", p / "report.json"


def write_report(doc: dict, sections: list[Section], out) -> tuple[Path, Path, Path]:
    html_path, md_path, json_path = output_paths(out)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    figure_names = {}
    for s in sections:
        for name, _caption, png in s.figures:
            fn = f"{html_path.stem}-{name}.png"
            (html_path.parent / fn).write_bytes(png)
            figure_names[name] = fn
    html_path.write_text(render_html(doc, sections))
    md_path.write_text(render_markdown(doc, sections, figure_names))
    json_path.write_text(json.dumps(doc, indent=1, default=json_default) + "\n")
    return html_path, md_path, json_path


def json_default(x):
    if isinstance(x, set):
        return sorted(x)
    try:
        if isinstance(x, np.generic):
            return x.item()
    except ImportError:
        pass
    return str(x)
