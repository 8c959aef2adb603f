"""Calcium detection and scores on CT/CTA (SCORING.md A): policies, lesions, Agatston, volume,
mass, partial-volume-aware mass, burden, clusters, profiles, regions and risk categories."""

from vascalc.calcium.categories import cac_drs_class, classic_band, risk_categories
from vascalc.calcium.options import CalibrationReference, ScoringOptions
from vascalc.calcium.policies import (KV_TABLE, AdaptivePolicy, AgatstonPolicy, FixedHUPolicy, Policy,
                                      Window8bitPolicy, adaptive_threshold, density_weight, parse_method,
                                      window8bit_equivalent_hu)
from vascalc.calcium.pv import integrated_intensity, volume_fraction_mass
from vascalc.calcium.results import CalciumResult, Lesion, RiskCategories, StructureScore
from vascalc.calcium.score import resolve_normalisation, score_calcium

__all__ = [
    "KV_TABLE", "AdaptivePolicy", "AgatstonPolicy", "CalciumResult", "CalibrationReference", "FixedHUPolicy",
    "Lesion", "Policy", "RiskCategories", "ScoringOptions", "StructureScore", "Window8bitPolicy",
    "adaptive_threshold", "cac_drs_class", "classic_band", "density_weight", "integrated_intensity",
    "parse_method", "resolve_normalisation", "risk_categories", "score_calcium", "volume_fraction_mass",
    "window8bit_equivalent_hu",
]
