"""The page of a dictionary of concepts (``experiments.concepts``): an index with the dictionary's measures and a
grid of every concept's picture, and one page per concept (picture, exemplar patches, heatmaps over the
exemplar images, statistics, trust figures). Built from plain data with the atlas's page parts (``site``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..images import image_name
from .site import _e, _fmt, _rel, figure, histogram_svg, nav, table, unit_grid, write_page
from .store import Store


def _num(v: Any, digits: str = ".3f") -> str:
    return "–" if v is None else format(v, digits) if isinstance(v, float) else str(v)


def _selectivity(c: dict[str, Any]) -> str:
    if c.get("selectivity_inf"):
        return "∞ (the others silent)"
    return _num(c.get("selectivity"), ".2f")


def write_concepts(out: Path, site: dict[str, Any], store: Store) -> dict[str, Any]:
    """Write ``index.html`` and ``concepts/<k>.html``; returns {page, pages}."""
    out = Path(out)
    folder = out / "concepts"
    fig = site["figures"]
    title = f"{site['model']} · {site['layer']} · {site['method']} dictionary, K={site['k']}"
    cells, rows = [], []
    concepts = site["concepts"]
    for i, c in enumerate(concepts):
        k = c["concept"]
        page = folder / f"{k}.html"
        thumb = _rel(store.file(c["key"], "thumb.png"), out) if c["picture"] else None
        cells.append({"href": _rel(page, out), "thumb": thumb, "label": str(k), "failed": not c["picture"]})
        e = c.get("exemplars") or {}
        rows.append([f"<a href='{_e(_rel(page, out))}'>{k}</a>", _e(_num(c.get("activation"), ".3g")),
                     _e(_num(c.get("ratio"), ".2f")), _e(_selectivity(c)), _e(_num(e.get("frequency"), ".4f")),
                     _e(_num(e.get("max"), ".3g")), _e(f"{e.get('images_active', '–')}/{site['images']}")])
        body = [nav([("../index.html", "dictionary"),
                     (f"{concepts[i - 1]['concept']}.html" if i else None, "← previous concept"),
                     (f"{concepts[i + 1]['concept']}.html" if i + 1 < len(concepts) else None, "next concept →")]),
                f"<h1>{_e(title)} · concept {k}</h1>"]
        if c["picture"]:
            body.append("<h2>Natural pre-image</h2>" + figure(
                _rel(store.file(c["key"], "picture.png"), folder),
                f"maximizes concept {k}'s encoder pre-activation at the map's {site['position']} "
                f"(activation {_num(c.get('activation'), '.3g')})", width=224))
        else:
            body.append(f"<p class='failed'>picture failed: {_e(c.get('failed') or 'not computed')}</p>")
        if c.get("patches"):
            body.append("<h2>Top exemplars</h2><p class='muted'>The images of the folder where the concept's code is "
                        "largest: the receptive field around its strongest position, then the concept's heatmap over "
                        "the whole image (red: high).</p>")
            body.append(figure(_rel(store.file(c["ex_key"], f"patches_{k}.png"), folder), "patches"))
            body.append("<br>" + figure(_rel(store.file(c["ex_key"], f"heatmaps_{k}.png"), folder), "heatmaps"))
            body.append(table(["#", "image", "code", "position"],
                              [[j + 1, image_name(t["image"]), _fmt(t["value"]), tuple(t["position"])]
                               for j, t in enumerate(e.get("top", []))]))
        elif site.get("exemplar_failed"):
            body.append(f"<p class='failed'>exemplars failed: {_e(site['exemplar_failed'])}</p>")
        else:
            body.append("<p class='muted'>The concept never fires on these images (a dead concept).</p>")
        stats = [("fires at (share of positions)", _num(e.get("frequency"), ".4f")),
                 ("mean code over positions", _num(e.get("mean"), ".4g")),
                 ("max code over the images", _num(e.get("max"), ".4g")),
                 ("images where it fires", f"{e.get('images_active', '–')} of {site['images']}"),
                 ("picture: pre-activation", _num(c.get("activation"), ".4g")),
                 ("natural maximum M_k (pre-activation, training rows)", _num(c.get("reference_max"), ".4g")),
                 ("trust: picture ÷ natural maximum", _num(c.get("ratio"), ".2f")),
                 ("trust: selectivity of the picture (its code ÷ mean code of the others)", _selectivity(c))]
        body.append("<h2>Statistics</h2>" + table(["", ""], stats))
        if e.get("histogram"):
            body.append("<p class='muted'>Its largest code in each image:</p>"
                        + histogram_svg(e["histogram"]["edges"], e["histogram"]["counts"]))
        write_page(page, f"{title} · concept {k}", "".join(body))
    cfg = site.get("config", {})
    facts = [("model", f"{site['model']} ({site['weights']})"), ("layer", site["layer"]),
             ("method", site["method"] + (f", top_k {site['top_k']}" if site.get("top_k") else "")),
             ("concepts K × channels D", f"{site['k']} × {site['d']}"),
             ("rows fit (sample of the positions/tokens)", f"{_num(fig.get('rows'))} of {_num(cfg.get('rows_seen'))}"),
             ("images", site["images"]), ("reconstruction r²", _num(fig.get("r2"))),
             ("mean L0 (active concepts per row)", _num(fig.get("l0"), ".2f")),
             ("dead concepts", _num(fig.get("dead"))),
             ("stability (two seeds, Hungarian-matched atom cosine)", _num(site.get("stability"))),
             ("fit seconds", _num(fig.get("seconds"), ".1f"))]
    if fig.get("clipped") is not None:
        facts.append(("energy clipped for NMF (negative part)", _num(fig["clipped"])))
    body = (f"<h1>{_e(title)}</h1>" + table(["", ""], facts)
            + "<h2>Concepts</h2><p class='muted'>Each concept's natural pre-image; click for its exemplars, heatmaps "
              "and statistics.</p>" + unit_grid(cells)
            + "<h2>Table</h2>" + table(["concept", "picture activation", "÷ natural max", "selectivity", "fires at",
                                        "max code", "images"], rows, raw=True))
    if site["failures"]:
        body += "<h2>Failures</h2>" + table(["job"], [[f] for f in site["failures"]])
    index = write_page(out / "index.html", title, body)
    return {"page": str(index), "pages": len(concepts) + 1}
