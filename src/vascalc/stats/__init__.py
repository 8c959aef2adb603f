"""Agreement statistics of a validation study (SCORING.md §D): overlap and surface distances of
masks, continuous agreement, ICC, Bland–Altman, Wilcoxon/Bonferroni, κ, diagnostic accuracy, ROC AUC
with DeLong CI and proportional-odds regression, plus paper-style tables and plots.

Results are frozen dataclasses with ``to_dict()``; undefined values are NaN *with a flag* in
``flags``; unusable input raises :class:`vascalc.errors.InputError`.
"""

from vascalc.stats.bland_altman import BlandAltmanResult, bland_altman
from vascalc.stats.continuous import (CorrelationResult, ErrorMetrics, absolute_percentage_errors, error_metrics,
                                      pearson, spearman)
from vascalc.stats.diagnostic import (ClassMetrics, DiagnosticResult, MulticlassResult, Proportion, RocAucResult,
                                      delong_components, diagnostic_accuracy, diagnostic_from_counts,
                                      multiclass_metrics, proportion_ci, roc_auc)
from vascalc.stats.icc import ICCAnova, ICCResult, icc, icc_all, icc_anova, icc_two_methods, koo_li
from vascalc.stats.kappa import (CohenKappaResult, MultiraterKappaResult, category_counts, cohen_kappa,
                                 cohen_kappa_table, contingency_table, landis_koch, multirater_kappa)
from vascalc.stats.ordinal import OrdinalCoefficient, OrdinalResult, proportional_odds
from vascalc.stats.overlap import (OverlapResult, SurfaceDistanceResult, directed_surface_distances,
                                   overlap_metrics, surface_distances, surface_voxels)
from vascalc.stats.tables import (AgreementReport, DetectionReport, MethodAgreement, MethodDetection, ResultsTable,
                                  SegmentationReport, StructureSegmentation, agreement_report, band_labels,
                                  categorise, detection_report, multirater_table, ordinal_table,
                                  parse_bands)
from vascalc.stats.tests_paired import (PairedComparison, WilcoxonResult, bonferroni, compare_methods,
                                        wilcoxon_signed_rank)

__all__ = [
    "AgreementReport", "BlandAltmanResult", "ClassMetrics", "CohenKappaResult", "CorrelationResult", "DetectionReport",
    "DiagnosticResult", "ErrorMetrics", "ICCAnova", "ICCResult", "MethodAgreement", "MethodDetection",
    "MulticlassResult", "MultiraterKappaResult", "OrdinalCoefficient", "OrdinalResult", "OverlapResult",
    "PairedComparison", "Proportion", "ResultsTable", "RocAucResult", "SegmentationReport", "StructureSegmentation",
    "SurfaceDistanceResult", "WilcoxonResult", "absolute_percentage_errors", "agreement_report", "band_labels",
    "bland_altman", "bonferroni", "categorise", "category_counts", "cohen_kappa", "cohen_kappa_table",
    "compare_methods", "contingency_table", "delong_components", "detection_report", "diagnostic_accuracy",
    "diagnostic_from_counts", "directed_surface_distances", "error_metrics", "icc", "icc_all", "icc_anova",
    "icc_two_methods", "koo_li", "landis_koch", "multiclass_metrics", "multirater_kappa", "multirater_table", "ordinal_table", "overlap_metrics",
    "pearson", "proportion_ci", "proportional_odds", "roc_auc", "spearman", "surface_distances", "surface_voxels",
    "wilcoxon_signed_rank",
]
