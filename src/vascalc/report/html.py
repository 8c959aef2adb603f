"""A one-page, human-readable HTML report of a CT calcium result.

:func:`write_ct_html` reads the ``result.json`` content (the dict of ``CtResult.to_dict()``; see
``docs/result-schema.md``) and writes ``report.html`` next to it: the headline totals, one table row
per structure (vessels, then their region parts, then the total), the scan and the method, every
warning, and the QC images (:mod:`vascalc.report.qc`) linked by relative file name, so the folder
can be moved or zipped as it is. The page is static (no script, no external resource), carries no
date, and every value is HTML-escaped; the same result gives the same bytes. It shows only what the
result holds, which by design carries no patient identifier.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from vascalc.errors import OutputError

#: (key in a structure record, column header, number of decimals) of the structure table.
STRUCTURE_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("vessel_volume_mm3", "vessel volume (mm³)", 0),
    ("n_clusters_3d", "lesions (3-D)", 0),
    ("calcium_volume_mm3", "calcium volume (mm³)", 1),
    ("agatston_raw", "Agatston", 1),
    ("agatston_3mm", "Agatston (3 mm equiv.)", 1),
    ("mass_mg", "mass (mg)", 1),
    ("integrated_mass_mg", "mass, PV-integrated (mg)", 1),
    ("calcium_hu_peak", "peak (HU)", 0),
    ("burden_percent", "burden (% of vessel)", 2),
)

#: Captions of the QC images, by file name.
QC_CAPTIONS = {
    "qc_coronal_mip.png": "Coronal maximum-intensity projection around the vessels; calcium in red.",
    "qc_sagittal_mip.png": "Sagittal maximum-intensity projection around the vessels; calcium in red.",
    "qc_axial_mosaic.png": "Axial slices with the most calcium (soft-tissue window); calcium in red.",
}

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1250px;color:#1b1b1b;line-height:1.4;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
.headline{display:flex;gap:1.2em;flex-wrap:wrap;margin:1em 0}
.card{border:1px solid #ccc;border-radius:6px;padding:.6em 1em;min-width:9em}
.card .v{font-size:1.5em;font-weight:600}.card .k{color:#555;font-size:.85em}
table{border-collapse:collapse;font-size:.9em;margin:.4em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child,table.kv td{text-align:left}
tr.region td:first-child{padding-left:1.8em;color:#444}tr.total td{font-weight:600;background:#f3f3f3}
tr.absent td{color:#999}
.warn{background:#fff4d6;border:1px solid #e0b040;border-radius:6px;padding:.5em 1em}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #333}
figcaption{color:#444;font-size:.9em}.muted{color:#666;font-size:.85em}
""".strip()


def _fmt(value: Any, decimals: int = 2) -> str:
    """A table cell: fixed decimals for numbers, '—' for missing or non-finite, yes/no for booleans."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        return f"{value:,.{decimals}f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v, decimals) for v in value)
    return str(value)


def _esc(value: Any, decimals: int = 2) -> str:
    return html.escape(_fmt(value, decimals))


def _flatten(record: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dict → sorted-by-insertion (key path, value) pairs; long lists are summarised."""
    rows: list[tuple[str, Any]] = []
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flatten(value, prefix=f"{name}.")
        elif isinstance(value, (list, tuple)) and len(value) > 12:
            rows.append((name, f"{len(value)} values"))
        else:
            rows.append((name, value))
    return rows


def _kv_table(record: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{_esc(v, 3)}</td></tr>" for k, v in _flatten(record))
    return f'<table class="kv">{rows}</table>' if rows else '<p class="muted">none</p>'


def _structure_row(record: dict, css: str) -> str:
    name = record.get("name", "?")
    if record.get("agatston_like"):
        name = f"{name} *"
    cells = "".join(f"<td>{_esc(record.get(key), decimals)}</td>" for key, _, decimals in STRUCTURE_COLUMNS)
    return f'<tr class="{css}"><td>{html.escape(str(name))}</td>{cells}</tr>'


def _structure_table(structures: list[dict], total: dict | None) -> str:
    header = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in STRUCTURE_COLUMNS)
    rows = []
    vessels = [s for s in structures if s.get("kind", "vessel") != "region"]
    regions = [s for s in structures if s.get("kind") == "region"]
    for vessel in vessels:
        rows.append(_structure_row(vessel, "vessel" if vessel.get("present", True) else "vessel absent"))
        # region parts (e.g. thoracic / abdominal aorta) right under their vessel
        rows += [_structure_row(r, "region") for r in regions if r.get("parent") == vessel.get("name")]
    parents = {v.get("name") for v in vessels}
    rows += [_structure_row(r, "region") for r in regions if r.get("parent") not in parents]
    if total:
        rows.append(_structure_row({**total, "name": total.get("name") or "total"}, "total"))
    return f"<table><tr><th>structure</th>{header}</tr>{''.join(rows)}</table>"


def _headline(total: dict, categories: dict) -> str:
    cards: list[tuple[str, str]] = [
        (_fmt(total.get("agatston_raw"), 1), "Agatston" + (" (like)" if total.get("agatston_like") else "")),
        (_fmt(total.get("calcium_volume_mm3"), 1), "calcium volume (mm³)"),
    ]
    if total.get("mass_mg") is not None:
        cards.append((_fmt(total.get("mass_mg"), 1), "mass (mg)"))
    cards.append((_fmt(total.get("n_clusters_3d"), 0), "lesions"))
    if categories.get("classic_band"):
        cards.append((str(categories["classic_band"]), "Agatston band (coronary scale)"))
    return '<div class="headline">' + "".join(
        f'<div class="card"><div class="v">{html.escape(v)}</div><div class="k">{html.escape(k)}</div></div>'
        for v, k in cards) + "</div>"


def render_ct_html(result: dict, images: list[str] | None = None) -> str:
    """The report page of one CT result dict (``CtResult.to_dict()``) as an HTML string.

    ``images`` are file names (relative to the page) of QC images to show, in order.
    """
    total = result.get("total") or {}
    structures = list(result.get("structures") or [])
    tool = result.get("tool") or {}
    case = result.get("case_id", "")
    title = f"Arterial calcium — {case}" if case else "Arterial calcium"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="muted">{html.escape(str(tool.get("name", "vascalc")))} '
        f'{html.escape(str(tool.get("version", "")))} · result schema '
        f'{html.escape(str(result.get("schema_version", "?")))} · method '
        f'{html.escape(str((result.get("method") or {}).get("policy", "?")))}</p>',
        _headline(total, result.get("categories") or {}),
    ]
    warnings = list(result.get("warnings") or [])
    if warnings:
        items = "".join(f"<li>{html.escape(str(w))}</li>" for w in warnings)
        parts.append(f'<div class="warn"><strong>Warnings</strong><ul>{items}</ul></div>')
    parts += ["<h2>Per structure</h2>", _structure_table(structures, total)]
    if any(s.get("agatston_like") for s in structures + [total]):
        parts.append('<p class="muted">* Agatston-like: the threshold is not the clinical 130 HU rule, '
                     "so the value is not comparable with clinical Agatston scores.</p>")
    if images:
        parts.append("<h2>Quality control images</h2>")
        for name in images:
            caption = QC_CAPTIONS.get(name, name)
            parts.append(f'<figure><img src="{html.escape(name, quote=True)}" alt="{html.escape(caption, quote=True)}">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    scan = (result.get("input") or {})
    parts += ["<h2>Scan</h2>", _kv_table({k: v for k, v in scan.items() if k != "vessels"})]
    if scan.get("vessels"):
        parts += ["<h2>Vessel masks</h2>", _kv_table(scan["vessels"])]
    parts += ["<h2>Method</h2>", _kv_table(result.get("method") or {})]
    if result.get("thresholds"):
        parts += ["<h2>Thresholds</h2>", _kv_table(result["thresholds"])]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_ct_html(result: dict, out_dir: Path, images: list[Path] | None = None,
                  filename: str = "report.html") -> Path:
    """Write ``report.html`` for one CT result dict into the existing folder ``out_dir``.

    ``images`` (e.g. the paths returned by :func:`vascalc.report.qc.write_ct_qc`) must lie in
    ``out_dir``; they are linked by file name. Returns the page's path. Raises
    :class:`OutputError` if the folder does not exist or an image lies elsewhere.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise OutputError(f"the report folder {out_dir} does not exist; create it first")
    names = []
    for image in images or []:
        image = Path(image)
        if image.parent.resolve() != out_dir.resolve():
            raise OutputError(f"the QC image {image.name} is not in the report folder {out_dir}; "
                              "write the images there first")
        names.append(image.name)
    path = out_dir / filename
    path.write_text(render_ct_html(result, names), encoding="utf-8")
    return path


