"""Risk categories of an Agatston score (SCORING.md A.9)."""

from __future__ import annotations

from collections.abc import Mapping

from vascalc.calcium.results import RiskCategories

#: coronary territories counted by the CAC-DRS N modifier (A.9); LM merged into LAD when absent.
CORONARY_VESSELS = ("left_main", "lad", "lcx", "rca")


def classic_band(agatston: float, extended: bool = False) -> str:
    """Rumberger bands: 0 none, (0,10] minimal, (10,100] mild, (100,400] moderate, >400 severe.

    ``extended`` splits severe into (400, 1000] ``significant`` and > 1000 ``very_significant``.
    """
    a = float(agatston)
    if a <= 0:
        return "none"
    if a <= 10:
        return "minimal"
    if a <= 100:
        return "mild"
    if a <= 400:
        return "moderate"
    if not extended:
        return "severe"
    return "significant" if a <= 1000 else "very_significant"


def cac_drs_class(agatston: float) -> str:
    """CAC-DRS A class: 0 → A0, (0,100) → A1, [100,300) → A2, ≥ 300 → A3."""
    a = float(agatston)
    if a <= 0:
        return "A0"
    if a < 100:
        return "A1"
    if a < 300:
        return "A2"
    return "A3"


def risk_categories(agatston: float, vessel_agatston: Mapping[str, float] | None = None) -> RiskCategories:
    """Classic band and CAC-DRS of a total Agatston score (A.9).

    ``vessel_agatston`` maps coronary names (``left_main``, ``lad``, ``lcx``, ``rca``) to their
    scores; N counts those > 0 (``lm_separate`` false when no ``left_main`` score is given, so N ≤ 3).
    Non-coronary totals get ``cac_drs_n=None``.
    """
    n = None
    lm_separate = None
    if vessel_agatston is not None:
        coronary = {k: float(v) for k, v in vessel_agatston.items() if k in CORONARY_VESSELS}
        if coronary:
            n = sum(1 for v in coronary.values() if v > 0)
            lm_separate = "left_main" in coronary
    return RiskCategories(
        agatston=float(agatston),
        classic_band=classic_band(agatston),
        classic_band_extended=classic_band(agatston, extended=True),
        cac_drs_a=cac_drs_class(agatston),
        cac_drs_n=n,
        lm_separate=lm_separate,
    )
