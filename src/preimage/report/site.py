"""The atlas as a static site: an index of layers, a page per layer with a grid of its units, a page per
unit. Pages are plain HTML with relative links (they open from disk, no server, no script); images load
lazily and thumbnails are small, so a layer of thousands of units stays quick.

The functions here only render what they are given (dicts of names, numbers and relative paths); what goes
on the pages is decided in ``preimage.sweep.atlas``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..images import atomic_write_bytes

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1400px;color:#222}
a{color:#0b5fa5;text-decoration:none}a:hover{text-decoration:underline}
nav{margin:.5em 0 1em;font-size:14px}nav a{margin-right:1.2em}
table{border-collapse:collapse;font-size:14px}td,th{border-bottom:1px solid #ddd;padding:3px 10px;text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:6px}
.cell{width:76px;text-align:center;font-size:11px}
.cell img{width:64px;height:64px;object-fit:contain;image-rendering:pixelated;border:1px solid #ccc;background:#eee}
.failed{color:#b00}
figure{display:inline-block;margin:6px;text-align:center;vertical-align:top}
figure img{image-rendering:pixelated;border:1px solid #ccc;min-width:96px;max-width:448px}
figcaption{font-size:12px;max-width:300px}
.muted{color:#777;font-size:13px}
"""


def _e(s: Any) -> str:
    return html.escape(str(s))


def shell(title: str, body: str) -> str:
    """A whole page: title, inline style, no external resources (the icon is inline too: no request)."""
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
            "<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<link rel='icon' href='data:,'><style>{_CSS}</style></head><body>{body}</body></html>\n")


def write_page(path: str | Path, title: str, body: str) -> Path:
    atomic_write_bytes(Path(path), shell(title, body).encode())
    return Path(path)


def nav(links: Sequence[tuple[str | None, str]]) -> str:
    """A bar of links; a None target is shown greyed (e.g. no previous unit)."""
    parts = [f"<a href='{_e(h)}'>{_e(t)}</a>" if h else f"<span class='muted'>{_e(t)}</span>&nbsp;&nbsp;"
             for h, t in links]
    return f"<nav>{''.join(parts)}</nav>"


def figure(src: str, caption: str, width: int | None = None, lazy: bool = False) -> str:
    w = f" width='{width}'" if width else ""
    lz = " loading='lazy'" if lazy else ""
    return (f"<figure><img src='{_e(src)}' alt='{_e(caption)}'{w}{lz}>"
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def table(head: Sequence[str], rows: Sequence[Sequence[Any]], raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (for cells that hold links)."""
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c if raw else _e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def link(href: str, text: str) -> str:
    return f"<a href='{_e(href)}'>{_e(text)}</a>"


def histogram_svg(edges: Sequence[float], counts: Sequence[int], marks: Sequence[tuple[str, float]] = (),
                  width: int = 360, height: int = 110) -> str:
    """Bars of ``counts`` over ``edges`` as inline SVG, with labelled vertical marks (clamped to the axis)."""
    if not counts:
        return ""
    lo, hi = edges[0], edges[-1]
    span = (hi - lo) or 1.0
    top = max(max(counts), 1)
    plot_h, bw = height - 30, width / len(counts)
    bars = "".join(f"<rect x='{i * bw + 1:.1f}' y='{plot_h - c / top * plot_h:.1f}' width='{bw - 2:.1f}' "
                   f"height='{c / top * plot_h:.1f}' fill='#7aa6d6'><title>{c}</title></rect>"
                   for i, c in enumerate(counts))
    lines = ""
    for label, v in marks:
        x = min(max((v - lo) / span, 0.0), 1.0) * (width - 2) + 1
        lines += (f"<line x1='{x:.1f}' x2='{x:.1f}' y1='0' y2='{plot_h}' stroke='#c33' stroke-width='2'/>"
                  f"<text x='{min(x + 3, width - 80):.1f}' y='12' font-size='11' fill='#c33'>{_e(label)}</text>")
    axis = (f"<text x='0' y='{height - 8}' font-size='11'>{lo:.3g}</text>"
            f"<text x='{width}' y='{height - 8}' font-size='11' text-anchor='end'>{hi:.3g}</text>")
    return (f"<svg width='{width}' height='{height}' role='img' aria-label='histogram'>{bars}{lines}{axis}"
            f"<line x1='0' x2='{width}' y1='{plot_h}' y2='{plot_h}' stroke='#999'/></svg>")


def unit_grid(cells: Sequence[dict[str, Any]]) -> str:
    """Links to units, each a small lazily loaded thumbnail: {href, thumb (or None), label, failed}."""
    out = []
    for c in cells:
        img = (f"<img src='{_e(c['thumb'])}' loading='lazy' decoding='async' width='64' height='64' "
               f"alt='{_e(c['label'])}'>" if c.get("thumb") else "<div class='failed'>failed</div>")
        out.append(f"<div class='cell'><a href='{_e(c['href'])}'>{img}<br>{_e(c['label'])}</a></div>")
    return f"<div class='grid'>{''.join(out)}</div>"


# --- the three kinds of page ----------------------------------------------------------------------------------


def index_page(path: str | Path, title: str, intro: str, layers: Sequence[dict[str, Any]],
               failures: Sequence[str] = ()) -> Path:
    """The atlas's front page: a table of layers {name, href, type, shape, stride, field, units, of}."""
    rows = [[link(r["href"], r["name"]), _e(r["type"]), _e(r["shape"]), _e(r["stride"]), _e(r["field"]),
             _e(f"{r['units']} of {r['of']}")] for r in layers]
    body = (f"<h1>{_e(title)}</h1><p>{_e(intro)}</p>"
            + table(["layer", "type", "output shape", "stride", "receptive field", "units"], rows, raw=True))
    if failures:
        body += (f"<h2 class='failed'>{len(failures)} jobs failed</h2><ul>"
                 + "".join(f"<li class='failed'>{_e(f)}</li>" for f in failures) + "</ul>")
    return write_page(path, title, body)


def layer_page(path: str | Path, title: str, links: Sequence[tuple[str | None, str]], facts: str,
               sections: Sequence[tuple[str, Sequence[tuple[str, str]]]], cells: Sequence[dict[str, Any]]) -> Path:
    """One layer: its facts, figure sections [(heading, [(src, caption)])] and the grid of its units."""
    body = f"<h1>{_e(title)}</h1>{nav(links)}<p>{_e(facts)}</p>"
    for heading, figs in sections:
        body += f"<h2>{_e(heading)}</h2><div>" + "".join(figure(s, c) for s, c in figs) + "</div>"
    body += f"<h2>Units ({len(cells)})</h2>" + unit_grid(cells)
    return write_page(path, title, body)


def unit_page(path: str | Path, title: str, links: Sequence[tuple[str | None, str]],
              pre_images: Sequence[tuple[str, str]], display: int, error: str | None,
              examples: dict[str, Any] | None, stats: Sequence[tuple[str, str]],
              hist: dict[str, Any] | None) -> Path:
    """One unit: its pre-images (shown ``display`` px wide), dataset examples {src, rows, note}, statistics
    [(name, value)] and the histogram of its per-image maxima {edges, counts, marks}."""
    body = f"<h1>{_e(title)}</h1>{nav(links)}<h2>Pre-images</h2>"
    if error:
        body += f"<p class='failed'>failed: {_e(error)}</p>"
    body += "<div>" + "".join(figure(s, c, width=display) for s, c in pre_images) + "</div>"
    body += "<h2>Dataset examples</h2>"
    if examples:
        fig = figure(examples["src"], "top examples, best first (left to right, top to bottom)")
        body += (f"<p class='muted'>{_e(examples['note'])}</p><div>{fig}</div>"
                 + table(["rank", "image", "activation"], examples["rows"]))
    else:
        body += "<p class='muted'>none (the examples of this layer failed or were not computed)</p>"
    body += "<h2>Activation statistics</h2>" + table(["", ""], stats)
    if hist:
        body += ("<p class='muted'>Distribution of the unit's largest response in each image:</p>"
                 + histogram_svg(hist["edges"], hist["counts"], hist.get("marks", ())))
    return write_page(path, title, body)


def tour_page(path: str | Path, title: str, sections: Sequence[tuple[str, str, Sequence[tuple[str, str]]]],
              atlas: tuple[str, str, str, Sequence[dict[str, Any]]]) -> Path:
    """The demo's page: sections (heading, text, [(src, caption)]) and a last one that links to an atlas
    (heading, text, href, unit cells as for ``unit_grid``)."""
    body = f"<h1>{_e(title)}</h1>"
    for heading, text, figs in sections:
        body += f"<h2>{_e(heading)}</h2><p>{_e(text)}</p><div>" + "".join(figure(s, c) for s, c in figs) + "</div>"
    heading, text, href, cells = atlas
    body += (f"<h2>{_e(heading)}</h2><p>{_e(text)} {link(href, 'Open the atlas →')}</p>" + unit_grid(cells))
    return write_page(path, title, body)
