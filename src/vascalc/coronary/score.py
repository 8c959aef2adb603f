"""Per-artery coronary scores from assigned clusters: Agatston (with the slice convention), volume,
relative and calibrated mass, lesion counts, risk bands and CAC-DRS (SCORING.md A.4–A.6, A.9).

The 2-D lesion rule, density weights and slice conventions are those of :mod:`vascalc.calcium`
(``agatston_parts``, ``resolve_normalisation``), so a coronary Agatston equals the CT job's.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from vascalc.calcium.categories import risk_categories
from vascalc.calcium.score import agatston_parts, resolve_normalisation
from vascalc.coronary.results import ARTERIES, ArteryScore
from vascalc.errors import MethodError

#: coronary risk bands of the issue / S5 (Agatston 0, 1–99, 100–399, ≥ 400)
RISK_BANDS = ("0", "1-99", "100-399", ">=400")


def risk_band(agatston: float) -> str:
    """Coronary risk band of an Agatston score: 0 | 1-99 | 100-399 | >=400 (upper edges exclusive;
    a score in (0, 1) counts as 1-99, there being calcium)."""
    a = float(agatston)
    if a <= 0:
        return "0"
    if a < 100:
        return "1-99"
    if a < 400:
        return "100-399"
    return ">=400"


def slice_convention(mode: str, dz_mm: float, thickness_mm: float | None) -> str:
    """A.4.3 convention actually used (``auto`` resolved); ``resample3mm`` is not offered here."""
    norm = resolve_normalisation(mode, dz_mm, thickness_mm)
    if norm == "resample3mm":
        raise MethodError("coronary scoring offers slice normalisation auto, none or increment, not resample3mm")
    return norm


def cluster_scores(clusters: np.ndarray, lesions_2d: np.ndarray, n: int, hu_crop: np.ndarray,
                   spacing_mm: tuple[float, float, float], bands: tuple[float, float, float, float]) -> dict:
    """Per cluster (index 1…n; 0 unused): voxels, raw Agatston, peak/summed HU and 2-D lesion count."""
    z, y, x = np.nonzero(clusters)
    c = clusters[z, y, x].astype(np.int64)
    l2 = lesions_2d[z, y, x].astype(np.int64)
    hu = hu_crop[z, y, x].astype(np.float64)
    pixel = spacing_mm[1] * spacing_mm[2]
    m = n + 1
    _, _, _, score = agatston_parts(l2, hu, z, pixel, bands)
    # every 2-D lesion lies inside one cluster: map lesion → cluster through its voxels
    l2_cluster = np.zeros(int(l2.max()) + 1 if l2.size else 1, dtype=np.int64)
    l2_cluster[l2] = c
    l2_ids = np.unique(l2)
    agatston = np.bincount(l2_cluster[l2_ids], weights=score, minlength=m)
    n_2d = np.bincount(l2_cluster[l2_ids], minlength=m)
    peak = np.full(m, -np.inf)
    np.maximum.at(peak, c, hu)
    return {"n_voxels": np.bincount(c, minlength=m), "agatston_raw": agatston, "n_2d": n_2d, "peak_hu": peak,
            "hu_sum": np.bincount(c, weights=hu, minlength=m)}


def artery_scores(per_cluster: dict, artery_of_cluster: np.ndarray, spacing_mm: tuple[float, float, float],
                  normalisation: str, agatston_like: bool, mass_factor: float | None
                  ) -> tuple[tuple[ArteryScore, ...], ArteryScore]:
    """Sum cluster scores per artery (``artery_of_cluster``: 0 none, 1 RCA, 2 LAD, 3 LCX; index 0
    unused) and in total; total carries the classic band and CAC-DRS (A.9)."""
    voxel = float(np.prod(spacing_mm))
    dz = float(spacing_mm[0])

    def make(name: str, sel: np.ndarray) -> ArteryScore:
        raw = float(per_cluster["agatston_raw"][sel].sum())
        norm_score = raw if normalisation == "none" else raw * dz / 3.0
        n_vox = int(per_cluster["n_voxels"][sel].sum())
        rel = float(per_cluster["hu_sum"][sel].sum() * voxel)
        peaks = per_cluster["peak_hu"][sel]
        return ArteryScore(
            name=name, present=bool(n_vox > 0), agatston_raw=raw, agatston_3mm=float(norm_score),
            agatston_normalisation=normalisation, agatston_like=agatston_like, n_lesions=int(sel.sum()),
            n_lesions_2d=int(per_cluster["n_2d"][sel].sum()), n_calcium_voxels=n_vox,
            calcium_volume_mm3=float(n_vox * voxel), calcium_volume_ml=float(n_vox * voxel / 1000.0),
            relative_mass_hu_mm3=rel, mass_mg=None if mass_factor is None else float(mass_factor * rel / 1000.0),
            calcium_hu_peak=float(peaks.max()) if peaks.size else None, risk_band=risk_band(norm_score))

    index = np.arange(artery_of_cluster.size)
    arteries = tuple(make(name, (artery_of_cluster == k) & (index > 0)) for k, name in enumerate(ARTERIES, start=1))
    total = make("total", (artery_of_cluster > 0) & (index > 0))
    risk = risk_categories(total.agatston_3mm, {a.name: a.agatston_3mm for a in arteries})
    return arteries, replace(total, risk=risk)
