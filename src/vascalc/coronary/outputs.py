"""Write one coronary result into its output folder.

==========================  ==============================================================
``result.json``             the full result (header of ``workflows/header.py``, units in keys)
``arteries.csv``            one row per artery (RCA, LAD incl. left main, LCX) and ``total``
``lesions.csv``             one row per candidate: artery, method, confidence, scores
``coronary_lesions.nii.gz`` uint8 map: 1 RCA, 2 LAD, 3 LCX, 4 rejected (not coronary)
``heart_mask.nii.gz``       the heart region used
``qc_lesions.png``          an axial slice through each lesion, artery colour
``qc_heart_mip.png``        heart-centred axial and coronal MIPs with the lesions
``report.html``             scores, categories, warnings and the pictures on one page
==========================  ==============================================================
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from vascalc.coronary.qc import heart_mip, lesion_tiles
from vascalc.coronary.results import CoronaryResult
from vascalc.imaging import save_labels_nifti
from vascalc.report.tables import write_csv, write_json


def _title(result: CoronaryResult) -> str:
    t = result.total
    return f"{result.case_id}: coronary Agatston {t.agatston_3mm:.1f} ({t.agatston_normalisation}), {t.calcium_volume_mm3:.1f} mm³"


def write_html(data: dict, out_dir: Path, images: list[Path]) -> Path:
    """A one-page report (no scripts, no external resources)."""
    e = html.escape
    def row(r: dict) -> str:
        mass = "" if r["mass_mg"] is None else f"{r['mass_mg']:.1f}"
        return (f"<tr><td>{e(str(r['name']))}</td><td>{r['agatston_3mm']:.1f}</td><td>{r['agatston_raw']:.1f}</td>"
                f"<td>{r['calcium_volume_mm3']:.1f}</td><td>{mass}</td><td>{r['n_lesions']}</td>"
                f"<td>{e(r['risk_band'])}</td></tr>")

    rows = "".join(row(r) for r in list(data["structures"]) + [data["total"]])
    cat = data.get("categories", {})
    warn = "".join(f"<li>{e(w)}</li>" for w in data["warnings"]) or "<li>none</li>"
    pics = "".join(f'<p><img src="{e(p.name)}" style="max-width:100%"></p>' for p in images)
    method = data["method"]
    text = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>vascalc coronary</title></head><body>"
        f"<h1>Coronary calcium: {e(data['case_id'])}</h1>"
        f"<p>Method {e(str(method.get('policy')))}, threshold {method.get('threshold_hu')} HU, slice convention "
        f"{e(str(method.get('slice_normalisation')))}, assignment {e(str(method.get('assignment')))}; LAD includes the left main.</p>"
        "<table border='1' cellpadding='4'><tr><th>artery</th><th>Agatston (3 mm)</th><th>Agatston raw</th>"
        f"<th>volume mm³</th><th>mass mg</th><th>lesions</th><th>risk band</th></tr>{rows}</table>"
        f"<p>CAC-DRS {e(str(cat.get('cac_drs_a')))}/N{e(str(cat.get('cac_drs_n')))}; classic band "
        f"{e(str(cat.get('classic_band')))}.</p><h2>Warnings</h2><ul>{warn}</ul>{pics}</body></html>")
    path = out_dir / "report.html"
    path.write_text(text, encoding="utf-8")
    return path


def write_coronary_outputs(result: CoronaryResult, out_dir: Path, qc: bool = True) -> list[Path]:
    """Write every output file of one coronary result into the existing folder ``out_dir``."""
    out_dir = Path(out_dir)
    data = result.to_dict()
    grid = result.volume.grid
    written = [write_json(data, out_dir / "result.json")]
    written.append(write_csv(list(data["structures"]) + [data["total"]], out_dir / "arteries.csv",
                             leading={"case_id": result.case_id}))
    written.append(write_csv(data["lesions"], out_dir / "lesions.csv", leading={"case_id": result.case_id}))
    written.append(save_labels_nifti(result.lesion_map, grid, out_dir / "coronary_lesions.nii.gz"))
    written.append(save_labels_nifti(result.heart_mask.astype(np.uint8), grid, out_dir / "heart_mask.nii.gz"))
    if qc:
        spacing = tuple(float(s) for s in grid.spacing_mm)
        images = [lesion_tiles(result.volume.hu, result.lesion_map, spacing, result.lesions, out_dir / "qc_lesions.png",
                               title=_title(result)),
                  heart_mip(result.volume.hu, result.lesion_map, result.heart_mask, spacing, out_dir / "qc_heart_mip.png",
                            title=_title(result))]
        written += images
        written.append(write_html(data, out_dir, images))
    return [Path(p) for p in written]
