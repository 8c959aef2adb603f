"""Paper-style results tables: agreement of continuous scores, detection, segmentation overlap.

Each ``*_report`` function computes every statistic for every method and returns a frozen report
holding the full results (for JSON) and a formatted :class:`ResultsTable` (for the terminal,
Markdown and CSV). Nothing here computes a statistic itself; it only calls the modules of
:mod:`vascalc.stats` and lays the numbers out.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from vascalc.errors import InputError
from vascalc.stats._common import ResultMixin, as_float_array
from vascalc.stats.bland_altman import BlandAltmanResult, bland_altman
from vascalc.stats.continuous import CorrelationResult, ErrorMetrics, error_metrics, pearson, spearman
from vascalc.stats.diagnostic import (DiagnosticResult, MulticlassResult, RocAucResult, delong_components,
                                      diagnostic_accuracy, multiclass_metrics, roc_auc)
from vascalc.stats.icc import ICCResult, icc_two_methods
from vascalc.stats.kappa import CohenKappaResult, MultiraterKappaResult, cohen_kappa
from vascalc.stats.ordinal import OrdinalResult
from vascalc.stats.overlap import OverlapResult, SurfaceDistanceResult
from vascalc.stats.tests_paired import PairedComparison, compare_methods


@dataclass(frozen=True)
class ResultsTable(ResultMixin):
    """A formatted table: header, rows of strings, and footnotes (flags, conventions)."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...]

    def to_markdown(self) -> str:
        """GitHub-flavoured Markdown with the title as a heading and notes as a list."""
        escape = lambda text: str(text).replace("|", "\\|")  # noqa: E731 - tiny local helper
        lines = [f"### {self.title}", "", "| " + " | ".join(map(escape, self.columns)) + " |",
                 "|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.columns))) + "|"]
        lines += ["| " + " | ".join(map(escape, row)) + " |" for row in self.rows]
        if self.notes:
            lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        """CSV with the header row (notes are not part of the CSV)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self.rows)
        return buffer.getvalue()


def fmt(value: float | None, digits: int = 3) -> str:
    """Fixed decimals; NaN/None as an em dash (the notes say why)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def fmt_ci(value: float, low: float, high: float, digits: int = 3) -> str:
    """``value (low to high)``, or just the value when the CI is undefined."""
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (low, high)):
        return fmt(value, digits)
    return f"{fmt(value, digits)} ({fmt(low, digits)} to {fmt(high, digits)})"


def fmt_p(p: float) -> str:
    """p-values as papers print them: < 0.001 below a thousandth."""
    if p is None or not math.isfinite(p):
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def parse_bands(text: str | Sequence[float]) -> tuple[float, ...]:
    """Lower edges of the category bands, e.g. ``"0,1,100,400"`` → (0, 1, 100, 400), strictly increasing."""
    try:
        edges = tuple(float(v) for v in (text.split(",") if isinstance(text, str) else text))
    except ValueError:
        raise InputError(f"category bands {text!r} must be comma-separated numbers, e.g. '0,1,100,400'") from None
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise InputError(f"category bands {text!r} must be at least 2 strictly increasing lower edges")
    return edges


def band_labels(edges: Sequence[float]) -> tuple[str, ...]:
    """Readable band names: ``[0, 1)``, ``[1, 100)``, ``≥ 400``."""
    g = lambda v: f"{v:g}"  # noqa: E731
    return tuple(f"[{g(a)}, {g(b)})" for a, b in zip(edges, edges[1:])) + (f"≥ {g(edges[-1])}",)


def categorise(values: Any, edges: Sequence[float]) -> list:
    """Band label of each value (missing stays None); a value below the lowest edge is an InputError."""
    x = as_float_array(values, "scores")
    labels = band_labels(edges)
    index = np.digitize(x, edges) - 1
    below = ~np.isnan(x) & (index < 0)
    if below.any():
        raise InputError(f"{int(below.sum())} score(s) lie below the lowest category band edge {edges[0]:g}")
    return [None if np.isnan(v) else labels[i] for v, i in zip(x, index)]


@dataclass(frozen=True)
class MethodAgreement(ResultMixin):
    """Every agreement statistic of one method against the reference."""

    name: str
    errors: ErrorMetrics
    bland_altman: BlandAltmanResult
    bland_altman_percent: BlandAltmanResult | None
    pearson: CorrelationResult
    spearman: CorrelationResult
    icc_agreement: ICCResult
    icc_consistency: ICCResult
    kappa_linear: CohenKappaResult | None
    categories: MulticlassResult | None


@dataclass(frozen=True)
class AgreementReport(ResultMixin):
    """Agreement of one or more methods with a reference; ``table`` and ``comparisons_table`` are formatted."""

    reference: str
    unit: str
    methods: tuple[MethodAgreement, ...]
    versus_reference: tuple[PairedComparison, ...]
    between_methods: tuple[PairedComparison, ...]
    category_bands: tuple[float, ...] | None
    table: ResultsTable
    comparisons_table: ResultsTable | None


def agreement_report(reference: Any, predicted: Mapping[str, Any], *, reference_name: str = "reference",
                     unit: str = "", category_bands: Sequence[float] | str | None = None, loa_multiplier: float = 1.96,
                     confidence: float = 0.95, alpha: float = 0.05) -> AgreementReport:
    """All continuous-agreement statistics of each predicted column vs the reference (§D.3–D.7).

    Per method: MAE, RMSE, MAPE (zero references excluded, counted), r2_identity, r2_pearson,
    Bland–Altman bias and LoA with CIs (absolute and %), Pearson and Spearman with CIs, ICC(A,1) and
    ICC(C,1) with CIs; with ``category_bands`` also linear-weighted κ and accuracy over the bands.
    Wilcoxon tests vs the reference and between methods are Bonferroni-corrected (§D.6). ``unit``
    (e.g. "mm³", "AAC-24 points") is the unit of MAE, RMSE, bias and limits, recorded and shown.
    """
    if not predicted:
        raise InputError("give at least one predicted column")
    if not (math.isfinite(loa_multiplier) and loa_multiplier > 0):
        raise InputError(f"the limits-of-agreement multiplier must be a positive number (1.96 or 2), got {loa_multiplier}")
    edges = parse_bands(category_bands) if category_bands is not None else None
    methods = []
    for name, values in predicted.items():
        ba_pct = None
        try:
            ba_pct = bland_altman(reference, values, multiplier=loa_multiplier, percentage=True, confidence=confidence)
        except InputError:
            ba_pct = None  # fewer than 3 pairs with a non-zero mean: the absolute analysis still stands
        kappa = classes = None
        if edges is not None:
            labels = band_labels(edges)
            ref_c, pred_c = categorise(reference, edges), categorise(values, edges)
            kappa = cohen_kappa(ref_c, pred_c, weights="linear", categories=labels, confidence=confidence)
            classes = multiclass_metrics(ref_c, pred_c, labels=labels, confidence=confidence)
        methods.append(MethodAgreement(
            name=name, errors=error_metrics(reference, values),
            bland_altman=bland_altman(reference, values, multiplier=loa_multiplier, confidence=confidence),
            bland_altman_percent=ba_pct, pearson=pearson(reference, values, confidence=confidence),
            spearman=spearman(reference, values, confidence=confidence),
            icc_agreement=icc_two_methods(reference, values, "ICC(A,1)", confidence=confidence),
            icc_consistency=icc_two_methods(reference, values, "ICC(C,1)", confidence=confidence),
            kappa_linear=kappa, categories=classes))
    versus, between = compare_methods(reference, predicted, alpha=alpha)
    table = _agreement_table(reference_name, methods, versus, edges, confidence, unit)
    comparisons = _comparisons_table(between) if between else None
    return AgreementReport(reference_name, unit, tuple(methods), versus, between, edges, table, comparisons)


def _agreement_table(reference_name: str, methods: list[MethodAgreement], versus: tuple[PairedComparison, ...],
                     edges: tuple[float, ...] | None, confidence: float, unit: str = "") -> ResultsTable:
    pct = f"{confidence * 100:g} % CI"
    columns = ["method", "n", "MAE", "RMSE", "MAPE %", f"bias ({pct})", "limits of agreement",
               "bias % of mean", "r2_identity", "r2_pearson", f"Pearson r ({pct})", f"Spearman ρ ({pct})",
               f"ICC(A,1) ({pct})", f"ICC(C,1) ({pct})", "Wilcoxon p (Bonferroni)"]
    if edges is not None:
        columns += [f"κ linear ({pct})", f"accuracy ({pct})"]
    rows, notes = [], []
    by_name = {c.first: c for c in versus}
    for m in methods:
        e, ba, bp = m.errors, m.bland_altman, m.bland_altman_percent
        test = by_name[m.name]
        row = [m.name, str(e.n), fmt(e.mae, 2), fmt(e.rmse, 2), fmt(e.mape_percent, 1),
               fmt_ci(ba.bias, ba.bias_ci_low, ba.bias_ci_high, 2), f"{fmt(ba.loa_lower, 2)} to {fmt(ba.loa_upper, 2)}",
               fmt(bp.bias, 1) if bp else "—", fmt(e.r2_identity), fmt(e.r2_pearson),
               fmt_ci(m.pearson.r, m.pearson.ci_low, m.pearson.ci_high),
               fmt_ci(m.spearman.r, m.spearman.ci_low, m.spearman.ci_high),
               fmt_ci(m.icc_agreement.icc, m.icc_agreement.ci_low, m.icc_agreement.ci_high),
               fmt_ci(m.icc_consistency.icc, m.icc_consistency.ci_low, m.icc_consistency.ci_high),
               f"{fmt_p(test.test.p_value)} ({fmt_p(test.p_adjusted)})"]
        if m.kappa_linear is not None and m.categories is not None:
            k, acc = m.kappa_linear, m.categories.accuracy
            row += [fmt_ci(k.kappa, k.ci_low, k.ci_high), fmt_ci(acc.estimate, acc.ci_low, acc.ci_high)]
        rows.append(tuple(row))
        flags = sorted(set(e.flags + ba.flags + m.pearson.flags + m.spearman.flags + m.icc_agreement.flags
                           + tuple(f"wilcoxon {f} (normal approximation)" if f == "ties" else f"wilcoxon {f}"
                                   for f in test.test.flags)
                           + tuple(f"kappa {f}" for f in (m.kappa_linear.flags if m.kappa_linear else ()))))
        if flags:
            notes.append(f"{m.name}: " + ", ".join(flags))
    if unit:
        notes.append(f"MAE, RMSE, bias and limits of agreement in {unit}.")
    notes += [f"Differences are predicted − {reference_name}; limits of agreement = bias ± "
              f"{methods[0].bland_altman.multiplier:g} SD; MAPE excludes zero reference values.",
              "r2_identity = 1 − RSS/TSS about the identity line; r2_pearson = squared Pearson r.",
              f"Wilcoxon signed-rank vs {reference_name} (zeros dropped), Bonferroni over {len(methods)} method(s)."]
    if edges is not None:
        notes.append("Categories: " + ", ".join(band_labels(edges)) + "; κ with linear weights.")
    return ResultsTable(f"Agreement with {reference_name}", tuple(columns), tuple(rows), tuple(notes))


def _comparisons_table(between: tuple[PairedComparison, ...]) -> ResultsTable:
    rows = tuple((c.first, c.second, fmt(c.test.median_difference, 2), str(c.test.n), fmt_p(c.test.p_value),
                  fmt_p(c.p_adjusted), "yes" if c.significant else "no") for c in between)
    m = between[0].m_comparisons
    notes = (f"Wilcoxon signed-rank on absolute errors |predicted − reference|, difference first − second; "
             f"Bonferroni over m = {m} comparisons (α = {between[0].alpha:g}, i.e. p < {between[0].alpha / m:.4f}).",)
    return ResultsTable("Pairwise comparison of methods (absolute errors)",
                        ("first", "second", "median difference", "n", "p", "p Bonferroni", "significant"), rows, notes)


@dataclass(frozen=True)
class MethodDetection(ResultMixin):
    """Detection statistics of one method: 2×2 accuracy, κ and ROC AUC."""

    name: str
    threshold: float | None
    diagnostic: DiagnosticResult
    kappa: CohenKappaResult
    auc: RocAucResult


@dataclass(frozen=True)
class DetectionReport(ResultMixin):
    """Detection of a binary reference by one or more methods."""

    reference: str
    methods: tuple[MethodDetection, ...]
    table: ResultsTable


def detection_report(reference: Any, predicted: Mapping[str, Any], *, reference_name: str = "reference",
                     threshold: float | None = None, proportion_method: str = "wilson",
                     confidence: float = 0.95) -> DetectionReport:
    """Se, Sp, PPV, NPV, accuracy (CIs), Cohen's κ and ROC AUC with DeLong CI for each method (§D.8–9).

    ``reference`` must be binary (1 = positive). A predicted column that is not binary is a score:
    it gives the AUC directly, and ``score ≥ threshold`` gives the 2×2 table (``threshold`` required).
    """
    if not predicted:
        raise InputError("give at least one predicted column")
    if threshold is not None and not math.isfinite(threshold):
        raise InputError(f"the score threshold must be a finite number, got {threshold}")
    methods = []
    for name, values in predicted.items():
        scores = as_float_array(values, name)
        present = scores[~np.isnan(scores)]
        is_binary = bool(np.isin(present, (0.0, 1.0)).all())
        used_threshold = None
        if is_binary:
            decisions = scores
        else:
            if threshold is None:
                raise InputError(f"column {name!r} holds scores, not 0/1 decisions; give --threshold to turn "
                                 "scores into positive/negative")
            used_threshold = float(threshold)
            decisions = np.where(np.isnan(scores), np.nan, (scores >= threshold).astype(float))
        diag = diagnostic_accuracy(reference, decisions, method=proportion_method, confidence=confidence)
        kappa = cohen_kappa(_labels01(reference), _labels01(decisions), categories=(1, 0), confidence=confidence)
        auc = _auc_or_undefined(reference, scores, confidence)
        methods.append(MethodDetection(name, used_threshold, diag, kappa, auc))
    pct = f"{confidence * 100:g} % CI"
    columns = ("method", "n", "TP", "FN", "FP", "TN", f"sensitivity ({pct})", f"specificity ({pct})",
               f"PPV ({pct})", f"NPV ({pct})", f"accuracy ({pct})", f"Cohen κ ({pct})", f"AUC ({pct}, DeLong)")
    rows, notes = [], []
    for m in methods:
        d = m.diagnostic
        p = lambda prop: fmt_ci(prop.estimate, prop.ci_low, prop.ci_high)  # noqa: E731
        rows.append((m.name, str(d.n), str(d.tp), str(d.fn), str(d.fp), str(d.tn), p(d.sensitivity),
                     p(d.specificity), p(d.ppv), p(d.npv), p(d.accuracy),
                     fmt_ci(m.kappa.kappa, m.kappa.ci_low, m.kappa.ci_high), fmt_ci(m.auc.auc, m.auc.ci_low, m.auc.ci_high)))
        flags = sorted(set(d.flags + m.kappa.flags + m.auc.flags))
        if m.threshold is not None:
            notes.append(f"{m.name}: positive when score ≥ {m.threshold:g}; AUC from the raw scores")
        if flags:
            notes.append(f"{m.name}: " + ", ".join(flags))
    notes.append(f"Proportion CIs: {proportion_method.replace('_', '–')}; κ CI from the Fleiss–Cohen–Everitt SE; "
                 "for 0/1 predictions AUC = (sensitivity + specificity)/2.")
    return DetectionReport(reference_name, tuple(methods),
                           ResultsTable(f"Detection against {reference_name}", columns, tuple(rows), tuple(notes)))


def _auc_or_undefined(reference: Any, scores: np.ndarray, confidence: float) -> RocAucResult:
    """ROC AUC with DeLong CI; where it does not exist, NaN (null in JSON) with the reason as a flag.

    No positive or no negative reference case → AUC undefined (§D.9: m or n = 0); one case of a
    class → AUC defined but the DeLong variance (ddof 1 within each class) is not.
    """
    y = as_float_array(reference, "reference")
    if y.shape == scores.shape:
        keep = ~(np.isnan(y) | np.isnan(scores))
        m, n = int((y[keep] == 1).sum()), int((y[keep] == 0).sum())
        if min(m, n) < 2 and m + n == int(keep.sum()):  # otherwise roc_auc names the bad input
            nan = float("nan")
            dropped = int((~keep).sum())
            if m == 0 or n == 0:
                flag = f"auc_undefined_reference_has_{'no_positive' if m == 0 else 'no_negative'}_cases"
                return RocAucResult(nan, nan, nan, nan, confidence, "delong", "wald", m, n, dropped, (flag,))
            auc, _, _ = delong_components(scores[keep][y[keep] == 1], scores[keep][y[keep] == 0])
            return RocAucResult(float(auc), nan, nan, nan, confidence, "delong", "wald", m, n, dropped,
                                ("auc_ci_undefined_needs_2_positive_and_2_negative",))
    return roc_auc(reference, scores, confidence=confidence)


def _labels01(values: Any) -> list:
    x = as_float_array(values, "labels")
    return [None if np.isnan(v) else int(v) for v in x]


@dataclass(frozen=True)
class StructureSegmentation(ResultMixin):
    """Overlap and surface distances of one structure."""

    structure: str
    overlap: OverlapResult
    distances: SurfaceDistanceResult


@dataclass(frozen=True)
class SegmentationReport(ResultMixin):
    """Per-structure segmentation agreement."""

    structures: tuple[StructureSegmentation, ...]
    hd95_convention: str
    table: ResultsTable


def segmentation_table(structures: Sequence[StructureSegmentation], hd95_convention: str,
                       extra_notes: Sequence[str] = ()) -> SegmentationReport:
    """Format per-structure overlap and distance results as a paper table (§D.1–D.2)."""
    columns = ("structure", "Dice", "IoU", "volumetric similarity", "sensitivity", "precision", "HD mm",
               f"HD95 mm ({hd95_convention})", "reference voxels", "predicted voxels")
    rows, notes = [], []
    for s in structures:
        o, d = s.overlap, s.distances
        rows.append((s.structure, fmt(o.dice), fmt(o.iou), fmt(o.volumetric_similarity), fmt(o.sensitivity),
                     fmt(o.precision), fmt(d.hausdorff_mm, 2), fmt(d.hd95_mm, 2), str(o.tp_voxels + o.fn_voxels),
                     str(o.tp_voxels + o.fp_voxels)))
        flags = sorted(set(o.flags + d.flags))
        if flags:
            notes.append(f"{s.structure}: " + ", ".join(flags))
    notes.extend(extra_notes)
    notes.append("Distances between boundary voxels in mm using the voxel spacing; HD95 convention "
                 f"'{hd95_convention}' (monai: max of the two directed 95th percentiles; medpy: pooled).")
    return SegmentationReport(tuple(structures), hd95_convention,
                              ResultsTable("Segmentation agreement", columns, tuple(rows), tuple(notes)))


def ordinal_table(result: OrdinalResult, outcome_name: str = "outcome") -> ResultsTable:
    """The coefficient table of a proportional-odds model, as SPSS PLUM prints it (§D.10)."""
    pct = f"{result.confidence * 100:g} % CI"
    rows = tuple((c.name, c.unit, fmt(c.b, 3), fmt(c.se, 3), f"{fmt(c.ci_low, 3)} to {fmt(c.ci_high, 3)}",
                  fmt(c.wald_chi2, 2), fmt_p(c.p_value), f"{c.odds_ratio:.4g}" if math.isfinite(c.odds_ratio) else "—") for c in result.coefficients)
    notes = [f"logit P({outcome_name} ≤ j) = θ_j − B·x; B > 0: higher categories more likely. "
             f"n = {result.n}, categories " + " < ".join(map(str, result.categories)) + "."]
    if result.flags:
        notes.append(", ".join(result.flags))
    return ResultsTable(f"Proportional-odds regression of {outcome_name}",
                        ("predictor", "unit", "B", "SE", f"B ({pct})", "Wald χ²", "p", "odds ratio"), rows, tuple(notes))


def multirater_table(results: Sequence[MultiraterKappaResult]) -> ResultsTable:
    """Fleiss' and Randolph's κ side by side (§D.7.2–3)."""
    rows = tuple((r.method, fmt_ci(r.kappa, r.ci_low, r.ci_high), fmt(r.p_bar), fmt(r.p_expected), str(r.n_subjects),
                  str(r.n_raters), str(r.n_categories), r.ci_method.replace("_", " ")) for r in results)
    notes = tuple(f"{r.method}: " + ", ".join(r.flags) for r in results if r.flags)
    booted = [r for r in results if r.n_bootstrap]  # an undefined κ has no resamples to report
    if booted:
        notes += (f"Bootstrap CIs: {booted[0].n_bootstrap} resamples of subjects, seed {booted[0].seed}.",)
    return ResultsTable("Agreement among raters", ("κ", "κ (95 % CI)", "observed agreement P̄", "chance agreement",
                                                   "subjects", "raters", "categories", "CI"), rows, notes)
