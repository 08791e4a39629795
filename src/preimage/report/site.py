"""The atlas as a static site: an index of layers, a page per layer with a grid of its units, a page per
unit. Pages are plain HTML with relative links (they open from disk, no server, no script); images load
lazily and thumbnails are small, so a layer of thousands of units stays quick.

The functions here only render what they are given (dicts of names, numbers and relative paths); what goes
on the pages is decided in ``preimage.experiments.atlas`` (``site_data``).
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..images import atomic_write_bytes, image_name
from .store import Store

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


# --- the atlas -------------------------------------------------------------------------------------------------


def _rel(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target, start)).as_posix()


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, (int, float)) else str(v)


def write_atlas(out: Path, site: dict[str, Any], store: Store) -> dict[str, Any]:
    """Write every page of an atlas and its ``manifest.json`` from plain data (``experiments.atlas.site_data``:
    per layer its facts and, per unit, inversion, caricature and examples, each a stored record or a failure)."""
    out = Path(out)
    side, mode = site["side"], site["mode"]
    artefacts: set[str] = set()

    def use(target: Path, start: Path) -> str:
        artefacts.add(_rel(target, out))
        return _rel(target, start)

    plans = site["layers"]
    rows, manifest_layers = [], []
    for li, p in enumerate(plans):
        folder = out / "layers" / p["slug"]
        width, shape = p["width"], p["shape"]
        ex_entry = p["examples"]
        ex = ex_entry["record"]
        ex_units = ex["result"]["units"] if ex else {}
        figs: list[tuple[str, str]] = []
        notes = []
        man_inv, man_car = [], []
        for shown in p["shown"]:
            s = shown["image"]
            figs.append((use(Path(shown["original"]), folder), f"{image_name(s)} ({side} px)"))
            for task, label, man in (("invert", "inversion", man_inv), ("caricature", "caricature", man_car)):
                e = shown[task]
                rec = e["record"]
                if rec is None:
                    notes.append(f"{label} of {image_name(s)} failed: {e['failed'] or 'not computed'}")
                    man.append({"image": s, "failed": e["failed"] or "not computed"})
                    continue
                prob = rec["result"]["problems"][0]
                if task == "invert":
                    caption = f"inversion: error {100 * prob['error']:.1f}%"
                else:
                    caption = f"caricature: score ×{prob['score_end'] / prob['score_start']:.2f}"
                figs.append((use(store.file(e["key"], prob["png"]), folder), caption))
                man.append({"image": s, "file": _rel(store.file(e["key"], prob["png"]), out),
                            **{k: prob[k] for k in ("error", "score_start", "score_end") if k in prob}})
        cells, man_units = [], []
        units = [e["unit"] for e in p["units"]]
        for k, e in enumerate(p["units"]):
            u, rec = e["unit"], e["record"]
            page = folder / f"{u}.html"
            thumb = use(store.file(e["key"], "thumb.png"), folder) if rec else None
            cells.append({"href": f"{u}.html", "thumb": thumb, "label": str(u), "failed": rec is None})
            probs = rec["result"]["problems"] if rec else []
            pre = [(use(store.file(e["key"], q["png"]), folder),
                    f"restart {q['restart']}: activation {_fmt(q['activation'])}"
                    + (f" ({q['ratio']:.2f}× M_c)" if q.get("ratio") is not None else "")) for q in probs]
            # An atlas run with maximize's attribution maps (style={..., "attribution": True}) shows them beside.
            pre += [(use(store.file(e["key"], a), folder), f"restart {q['restart']}: attribution (Σ|∂objective/∂x| "
                     "over the steps)") for q in probs if (a := q["png"][:-4] + "-attribution.png") in rec["files"]]
            exu = ex_units.get(str(u))
            examples = None
            stats_rows: list[tuple[str, str]] = [("unit", f"{u} of {width} channels"),
                                                 ("layer output", "×".join(map(str, shape)))]
            hist = None
            if exu:
                field = ex["result"]["field"]
                examples = {"src": use(store.file(ex_entry["key"], exu["sprite"]), folder),
                            "rows": [[i + 1, e["name"], _fmt(e["activation"])] for i, e in enumerate(exu["examples"])],
                            "note": f"The {len(exu['examples'])} of {ex['result']['images']} images where the unit "
                                    "responds most, each cropped to the receptive field "
                                    + (f"({field[0]}×{field[1]} px) " if field else "(the whole image) ")
                                    + f"around its strongest neuron, at {side} px."}
                stats_rows += [("response", ex["result"]["point"]),
                               ("max over the images", _fmt(exu["max"])),
                               ("mean ± std over all positions", f"{_fmt(exu['mean'])} ± {_fmt(exu['std'])}")]
                marks = [(f"pre-image {_fmt(probs[0]['activation'])}", probs[0]["activation"])] \
                    if probs and mode == "neuron" else []
                hist = dict(exu["per_image_max"], marks=marks)
            if probs:
                stats_rows += [(f"pre-image activation ({mode})", ", ".join(_fmt(q["activation"]) for q in probs)),
                               ("reference max M_c (normalizer)", _fmt(probs[0]["reference_max"]))]
            chk = e.get("check")
            if chk:  # the trust check (tasks.check): the verdict, then each picture's numbers
                cells[-1]["label"] += " ⚑" if chk["flagged"] else ""
                stats_rows.append(("trust check", f"FLAGGED ({chk['reason']})" if chk["flagged"] else "not flagged"))
                for q in chk["pictures"]:
                    stats_rows.append((f"restart {q['restart']}: collapse, natural range, plausibility, path sim.",
                                       ", ".join("n/a" if q.get(m) is None else _fmt(q[m])
                                                 for m in ("collapse", "natural_range", "plausibility",
                                                           "path_similarity"))))
            prev = f"{units[k - 1]}.html" if k > 0 else None
            nxt = f"{units[k + 1]}.html" if k + 1 < len(units) else None
            size = rec["result"]["size"][0] if rec else 0
            unit_page(page, f"{site['model']} · {p['name']} · unit {u}",
                      [("../../index.html", "atlas"), ("index.html", f"layer {p['name']}"),
                       (prev, "← previous unit"), (nxt, "next unit →")],
                      pre, max(128, min(size, 256)), (e["failed"] or "not computed") if rec is None else None,
                      examples, stats_rows, hist)
            artefacts.add(_rel(page, out))
            man_units.append({"unit": u, "page": _rel(page, out), "failed": e["failed"] if not rec else None,
                              "thumbnail": _rel(store.file(e["key"], "thumb.png"), out) if rec else None,
                              "pre_images": [_rel(store.file(e["key"], q["png"]), out) for q in probs],
                              "activation": [q["activation"] for q in probs],
                              "examples": _rel(store.file(ex_entry["key"], exu["sprite"]), out) if exu else None,
                              "stats": {k: exu[k] for k in ("max", "mean", "std")} if exu else None,
                              **({"check": chk} if chk else {})})
        facts = (f"Output {'×'.join(map(str, shape))}, stride {_pair(p['stride'])}, receptive field "
                 f"{_pair(p['receptive_field'])}{' (global)' if p['global_field'] else ''}; {len(units)} of {width} "
                 f"units. Pre-images: activation maximization ({mode} mode).")
        checked = [e["check"] for e in p["units"] if e.get("check")]
        if checked:
            notes.append(f"Trust check: {sum(c['flagged'] for c in checked)} of {len(checked)} units flagged (⚑).")
        if ex is None:
            notes.append(f"dataset examples failed: {ex_entry['failed'] or 'not computed'}")
        if notes:
            facts += " " + " ".join(notes)
        prev_l = f"../{plans[li - 1]['slug']}/index.html" if li > 0 else None
        next_l = f"../{plans[li + 1]['slug']}/index.html" if li + 1 < len(plans) else None
        lp = layer_page(folder / "index.html", f"{site['model']} · {p['name']}",
                        [("../../index.html", "atlas"), (prev_l, "← previous layer"), (next_l, "next layer →")],
                        facts, [("Inversions and caricatures", figs)] if figs else [], cells)
        artefacts.add(_rel(lp, out))
        rows.append({"name": p["name"], "href": _rel(lp, out), "type": p["type"], "shape": "×".join(map(str, shape)),
                     "stride": _pair(p["stride"]),
                     "field": _pair(p["receptive_field"]) + (" (global)" if p["global_field"] else ""),
                     "units": len(units), "of": width})
        manifest_layers.append({"name": p["name"], "type": p["type"], "shape": shape, "stride": p["stride"],
                                "receptive_field": p["receptive_field"], "global_field": p["global_field"],
                                "page": _rel(lp, out), "examples_failed": ex_entry["failed"] if ex is None else None,
                                "inversions": man_inv, "caricatures": man_car, "units": man_units})
    c = site["jobs"]
    n_shown = len(plans[0]["shown"]) if plans else 0
    intro = (f"Every unit of {len(plans)} layers of {site['model']} ({site['weights']}): activation maximization "
             f"({mode} mode) and the top {site['examples']} of {site['images']} dataset examples per unit; "
             f"inversions and caricatures of {n_shown} images per layer. {c['total']} jobs: {c['done']} computed "
             f"now, {c['cached']} from earlier runs, {c['failed']} failed.")
    index = index_page(out / "index.html", f"Atlas of {site['model']}", intro, rows, site["failure_lines"])
    artefacts.add(_rel(index, out))
    manifest = {"model": site["model"], "weights": site["weights"], "model_id": site["model_id"], "mode": mode,
                "images": site["images"], "jobs": c, "failures": site["failures"],
                "layers": manifest_layers, "artefacts": sorted(artefacts | {"manifest.json"})}
    atomic_write_bytes(out / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    return {"out": str(out), "page": str(index), "model": site["model"], "weights": site["weights"],
            "layers": [{"name": r["name"], "units": r["units"], "page": r["href"]} for r in rows], "jobs": c,
            "failures": site["failures"], "manifest": str(out / "manifest.json")}


def _pair(p: Sequence[int] | None) -> str:
    """A stride or field for a page: ``7`` for 7×7, ``7×9`` otherwise, ``–`` for none."""
    if not p:
        return "–"
    return str(p[0]) if p[0] == p[1] else f"{p[0]}×{p[1]}"
