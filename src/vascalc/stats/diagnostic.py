"""Diagnostic accuracy, multiclass classification and ROC AUC with DeLong CI (SCORING.md §D.8–D.9).

Library: proportion CIs from statsmodels ``proportion_confint`` (``wilson``, ``beta`` =
Clopper–Pearson); κ from statsmodels (:mod:`vascalc.stats.kappa`). The confusion matrix (rows =
reference, scikit-learn's convention) and the AUC are checked against scikit-learn in the tests. Hand-written: DeLong's variance (no maintained Python
library exposes it), computed with the O(N log N) mid-rank algorithm of Sun & Xu [R69], and the
Hanley–McNeil SE option.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
from scipy import stats as st
from statsmodels.stats.proportion import proportion_confint

from vascalc.errors import InputError
from vascalc.stats._common import ResultMixin, as_float_array, check_confidence, require_n, z_quantile
from vascalc.stats.kappa import cohen_kappa_table, contingency_table

ProportionMethod = Literal["wilson", "clopper_pearson"]


@dataclass(frozen=True)
class Proportion(ResultMixin):
    """x/n with its CI; ``estimate`` NaN and flag ``zero_denominator`` when n = 0."""

    estimate: float
    ci_low: float
    ci_high: float
    numerator: int
    denominator: int
    method: str
    confidence: float
    flags: tuple[str, ...]


@dataclass(frozen=True)
class DiagnosticResult(ResultMixin):
    """Se, Sp, PPV, NPV and accuracy of a binary test against the reference, with CIs (§D.8)."""

    tp: int
    fn: int
    fp: int
    tn: int
    n: int
    n_dropped_missing: int
    sensitivity: Proportion
    specificity: Proportion
    ppv: Proportion
    npv: Proportion
    accuracy: Proportion
    flags: tuple[str, ...]


@dataclass(frozen=True)
class ClassMetrics(ResultMixin):
    """One-vs-rest sensitivity and specificity of one class."""

    label: Any
    sensitivity: Proportion
    specificity: Proportion


@dataclass(frozen=True)
class MulticlassResult(ResultMixin):
    """Confusion matrix (rows reference, columns prediction, order ``labels``) and derived metrics."""

    labels: tuple
    confusion: tuple[tuple[int, ...], ...]
    accuracy: Proportion
    per_class: tuple[ClassMetrics, ...]
    macro_sensitivity: float
    macro_specificity: float
    kappa_linear: float
    n: int
    n_dropped_missing: int
    flags: tuple[str, ...]


@dataclass(frozen=True)
class RocAucResult(ResultMixin):
    """ROC AUC (higher score = positive) with its SE and CI (§D.9).

    ``se_method``: ``delong`` or ``hanley_mcneil``; ``ci_method``: ``wald`` (AUC ± z·SE, clipped to
    [0, 1]) or ``logit``.
    """

    auc: float
    se: float
    ci_low: float
    ci_high: float
    confidence: float
    se_method: str
    ci_method: str
    n_positive: int
    n_negative: int
    n_dropped_missing: int
    flags: tuple[str, ...]


def proportion_ci(x: int, n: int, *, method: ProportionMethod = "wilson", confidence: float = 0.95) -> Proportion:
    """x/n with a Wilson (default) or Clopper–Pearson CI (statsmodels ``proportion_confint``)."""
    check_confidence(confidence)
    if method not in ("wilson", "clopper_pearson"):
        raise InputError(f"unknown proportion CI {method!r}; use 'wilson' or 'clopper_pearson'")
    x, n = int(x), int(n)
    if n < 0 or x < 0 or x > n:
        raise InputError(f"a proportion needs 0 ≤ x ≤ n, got {x}/{n}")
    if n == 0:
        nan = float("nan")
        return Proportion(nan, nan, nan, x, n, method, confidence, ("zero_denominator",))
    low, high = proportion_confint(x, n, alpha=1 - confidence, method="beta" if method == "clopper_pearson" else "wilson")
    # statsmodels' Clopper–Pearson gives NaN-free but x = 0 / x = n edges as 0 / 1 already; clip float noise.
    return Proportion(x / n, float(max(low, 0.0)), float(min(high, 1.0)), x, n, method, confidence, ())


def diagnostic_from_counts(tp: int, fn: int, fp: int, tn: int, *, method: ProportionMethod = "wilson",
                           confidence: float = 0.95) -> DiagnosticResult:
    """Se = TP/(TP+FN), Sp = TN/(TN+FP), PPV, NPV, accuracy with CIs from a 2×2 table (§D.8)."""
    counts = [int(v) for v in (tp, fn, fp, tn)]
    if min(counts) < 0:
        raise InputError("2×2 counts must be non-negative")
    tp, fn, fp, tn = counts
    parts = {
        "sensitivity": proportion_ci(tp, tp + fn, method=method, confidence=confidence),
        "specificity": proportion_ci(tn, tn + fp, method=method, confidence=confidence),
        "ppv": proportion_ci(tp, tp + fp, method=method, confidence=confidence),
        "npv": proportion_ci(tn, tn + fn, method=method, confidence=confidence),
        "accuracy": proportion_ci(tp + tn, sum(counts), method=method, confidence=confidence),
    }
    flags = tuple(f"{name}_undefined" for name, value in parts.items() if value.denominator == 0)
    return DiagnosticResult(tp, fn, fp, tn, sum(counts), 0, flags=flags, **parts)


def _binary(values: Any, name: str) -> np.ndarray:
    array = as_float_array(values, name)
    present = array[~np.isnan(array)]
    if not np.isin(present, (0.0, 1.0)).all():
        raise InputError(f"{name} must be binary (0 = negative, 1 = positive); threshold scores first")
    return array


def diagnostic_accuracy(reference: Any, predicted: Any, *, method: ProportionMethod = "wilson",
                        confidence: float = 0.95) -> DiagnosticResult:
    """:func:`diagnostic_from_counts` from two binary columns (1 = positive); pairs with a gap dropped."""
    y, yhat = _binary(reference, "reference"), _binary(predicted, "predicted")
    if y.shape != yhat.shape:
        raise InputError(f"reference and predicted have different lengths ({y.size} and {yhat.size})")
    keep = ~(np.isnan(y) | np.isnan(yhat))
    y, yhat = y[keep].astype(bool), yhat[keep].astype(bool)
    require_n(y.size, 1, "diagnostic accuracy")
    result = diagnostic_from_counts(int((y & yhat).sum()), int((y & ~yhat).sum()), int((~y & yhat).sum()),
                                    int((~y & ~yhat).sum()), method=method, confidence=confidence)
    dropped = int((~keep).sum())
    if not dropped:
        return result
    return DiagnosticResult(**{**result.__dict__, "n_dropped_missing": dropped,
                               "flags": result.flags + (f"missing_dropped:{dropped}",)})


def multiclass_metrics(reference: Any, predicted: Any, *, labels: Sequence | None = None,
                       method: ProportionMethod = "wilson", confidence: float = 0.95) -> MulticlassResult:
    """Confusion matrix, accuracy, one-vs-rest Se/Sp per class, macro means and linear κ (§D.8).

    ``labels`` declares the classes in order (unobserved ones kept); ordinal classes should be
    given in their natural order for κ.
    """
    table, labels, dropped = contingency_table(reference, predicted, labels)
    require_n(int(table.sum()), 1, "multiclass accuracy")
    # Same convention as scikit-learn's confusion_matrix (rows = reference), which the tests check.
    cm = table
    n = int(cm.sum())
    per_class = []
    for i, label in enumerate(labels):
        tp = int(cm[i, i])
        fn = int(cm[i].sum() - tp)
        fp = int(cm[:, i].sum() - tp)
        tn = n - tp - fn - fp
        per_class.append(ClassMetrics(label, proportion_ci(tp, tp + fn, method=method, confidence=confidence),
                                      proportion_ci(tn, tn + fp, method=method, confidence=confidence)))
    sens = [c.sensitivity.estimate for c in per_class if c.sensitivity.denominator]
    spec = [c.specificity.estimate for c in per_class if c.specificity.denominator]
    flags = [f"missing_dropped:{dropped}"] if dropped else []
    kappa = float("nan")
    if len(labels) >= 2 and n >= 3:
        kappa = cohen_kappa_table(cm, weights="linear", categories=labels).kappa
    return MulticlassResult(
        labels=tuple(labels), confusion=tuple(tuple(int(v) for v in row) for row in cm),
        accuracy=proportion_ci(int(np.trace(cm)), n, method=method, confidence=confidence),
        per_class=tuple(per_class), macro_sensitivity=float(np.mean(sens)) if sens else float("nan"),
        macro_specificity=float(np.mean(spec)) if spec else float("nan"), kappa_linear=float(kappa), n=n,
        n_dropped_missing=dropped, flags=tuple(flags))


def delong_components(positive_scores: np.ndarray, negative_scores: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and DeLong's structural components V10 (per positive) and V01 (per negative).

    Mid-ranks (Sun & Xu [R69]): V10_i = (R_i − R^X_i)/n with R the rank among all scores and R^X
    the rank among positives; ties count ½ through the average ranks. O(N log N).
    """
    x = np.asarray(positive_scores, dtype=float)
    y = np.asarray(negative_scores, dtype=float)
    m, n = x.size, y.size
    combined = st.rankdata(np.concatenate([x, y]))
    v10 = (combined[:m] - st.rankdata(x)) / n
    v01 = 1.0 - (combined[m:] - st.rankdata(y)) / m
    return float(v10.mean()), v10, v01


def roc_auc(labels: Any, scores: Any, *, se_method: Literal["delong", "hanley_mcneil"] = "delong",
            ci_method: Literal["wald", "logit"] = "wald", confidence: float = 0.95) -> RocAucResult:
    """ROC AUC of ``scores`` for binary ``labels`` (1 = positive) with a DeLong CI (§D.9, §E.5).

    Wald CI: AUC ± z·SE clipped to [0, 1]; logit CI: expit(logit AUC ± z·SE/(AUC(1 − AUC))).
    No positives or no negatives → InputError; AUC of 0 or 1 → SE 0 and ``degenerate_auc``.
    """
    if se_method not in ("delong", "hanley_mcneil") or ci_method not in ("wald", "logit"):
        raise InputError("se_method must be 'delong' or 'hanley_mcneil' and ci_method 'wald' or 'logit'")
    y = _binary(labels, "reference labels")
    s = as_float_array(scores, "scores")
    if y.shape != s.shape:
        raise InputError(f"labels and scores have different lengths ({y.size} and {s.size})")
    keep = ~(np.isnan(y) | np.isnan(s))
    dropped = int((~keep).sum())
    y, s = y[keep].astype(bool), s[keep]
    m, n = int(y.sum()), int((~y).sum())
    if m == 0 or n == 0:
        raise InputError(f"ROC AUC needs both positive and negative reference cases, got {m} positive and {n} negative")
    z = z_quantile(confidence)
    auc, v10, v01 = delong_components(s[y], s[~y])
    flags = [f"missing_dropped:{dropped}"] if dropped else []
    if se_method == "delong":
        if m < 2 or n < 2:
            raise InputError("the DeLong variance needs at least 2 positive and 2 negative cases")
        var = v10.var(ddof=1) / m + v01.var(ddof=1) / n
    else:
        q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
        var = (auc * (1 - auc) + (m - 1) * (q1 - auc ** 2) + (n - 1) * (q2 - auc ** 2)) / (m * n)
    se = float(np.sqrt(max(var, 0.0)))
    if auc in (0.0, 1.0) or se == 0:
        flags.append("degenerate_auc")
        low = high = auc
    elif ci_method == "wald":
        low, high = max(auc - z * se, 0.0), min(auc + z * se, 1.0)
    else:
        logit, half = np.log(auc / (1 - auc)), z * se / (auc * (1 - auc))
        low, high = (float(1 / (1 + np.exp(-v))) for v in (logit - half, logit + half))
    return RocAucResult(float(auc), se, float(low), float(high), confidence, se_method, ci_method, m, n, dropped,
                        tuple(flags))
