"""Coronary calcium on (non-gated) chest CT: heart region, candidates, heart frame, artery assignment
(groove rules and a learned lesion classifier), per-artery scores. The end-to-end job is
:func:`vascalc.workflows.coronary.score_coronary`; see ``docs/coronary.md``."""

from vascalc.coronary.anatomy import HeartFrame, heart_frame
from vascalc.coronary.assign import BASE_FEATURES, CLASSES, FEATURES, LesionFeatures, LesionModel, RuleSettings, \
    assign_rules, lesion_features
from vascalc.coronary.candidates import Candidates, find_candidates
from vascalc.coronary.context import CONTEXT_FEATURES, FatEnvelope, context_features, fat_envelope, fit_ellipsoid, \
    shape_axes
from vascalc.coronary.heart import HeartRegion, builtin_heart, find_heart
from vascalc.coronary.options import CoronaryOptions
from vascalc.coronary.results import ARTERIES, ArteryScore, CoronaryLesion, CoronaryResult
from vascalc.coronary.score import RISK_BANDS, artery_scores, cluster_scores, risk_band

__all__ = ["ARTERIES", "ArteryScore", "BASE_FEATURES", "CLASSES", "CONTEXT_FEATURES", "Candidates", "CoronaryLesion", "CoronaryOptions", "CoronaryResult",
           "FEATURES", "FatEnvelope", "HeartFrame", "HeartRegion", "LesionFeatures", "LesionModel", "RISK_BANDS", "RuleSettings",
           "artery_scores", "assign_rules", "builtin_heart", "cluster_scores", "context_features", "fat_envelope",
           "find_candidates", "find_heart", "fit_ellipsoid", "heart_frame", "lesion_features", "risk_band",
           "shape_axes"]
