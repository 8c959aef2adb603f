"""Agreement of continuous scores: errors, R² (two kinds) and correlations with CIs (SCORING.md §D.3).

Library versus hand-written: MAE, RMSE and ``r2_identity`` come from scikit-learn; Pearson r, its
p-value and Fisher CI from :func:`scipy.stats.pearsonr`; Spearman ρ and its p-value from
:func:`scipy.stats.spearmanr`. Hand-written: APE/MAPE with the zero-reference policy, and the
Bonett–Wright / Fieller CIs of Spearman ρ (no maintained library offers them).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats as st
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from vascalc.errors import InputError
from vascalc.stats._common import ResultMixin, paired, z_quantile

ZeroPolicy = Literal["exclude", "epsilon", "smape"]


@dataclass(frozen=True)
class ErrorMetrics(ResultMixin):
    """Error of ``predicted`` against ``reference`` (SCORING.md §D.3).

    ``mae`` and ``rmse`` are in the unit of the scores; ``mape_percent`` in % under the policy named
    in ``mape_policy`` (``exclude`` zero references, ``epsilon`` or ``smape``).
    ``r2_identity`` = 1 − RSS/TSS about the identity line (scikit-learn ``r2_score``; can be
    negative); ``r2_pearson`` = squared Pearson r (R² of an OLS line with intercept).
    """

    n: int
    n_dropped_missing: int
    mae: float
    rmse: float
    mape_percent: float
    mape_policy: str
    n_excluded_zero_reference: int
    r2_identity: float
    r2_pearson: float
    flags: tuple[str, ...]


@dataclass(frozen=True)
class CorrelationResult(ResultMixin):
    """A correlation coefficient with its two-sided p-value (H0: 0) and confidence interval.

    ``ci_method`` names the interval: ``fisher`` (Pearson), ``bonett_wright`` or ``fieller``
    (Spearman). ``se_z`` is the standard error on the Fisher-z scale. No CI (NaN) for n ≤ 3.
    """

    method: str
    r: float
    p_value: float
    ci_low: float
    ci_high: float
    confidence: float
    ci_method: str
    se_z: float
    n: int
    n_dropped_missing: int
    flags: tuple[str, ...]


def absolute_percentage_errors(reference: Any, predicted: Any, *, zero_reference: ZeroPolicy = "exclude",
                               epsilon: float = float(np.finfo(float).eps)) -> tuple[np.ndarray, int]:
    """Per-case APE_i = 100·|y_i − ŷ_i|/|y_i| (S4 eq. 4) and the number of cases left out.

    ``zero_reference``: ``exclude`` (default [T]) drops cases with y_i = 0 and counts them; all
    references zero raises :class:`InputError`. ``epsilon`` divides by max(ε, |y_i|) as scikit-learn
    does (its mean is 100 × ``mean_absolute_percentage_error``: vascalc keeps percent, scikit-learn
    returns a fraction); ``smape`` gives 200|ŷ − y|/(|y| + |ŷ|) with 0/0 := 0.
    Pairs with a missing value are dropped first.
    """
    y, yhat, _ = paired(reference, predicted, what="APE")
    error = np.abs(yhat - y)
    if zero_reference == "exclude":
        zero = y == 0
        if zero.all():
            raise InputError("every reference value is 0, so the percentage error is undefined for all "
                             "cases; use zero_reference='smape' or 'epsilon', or report MAE instead")
        return 100.0 * error[~zero] / np.abs(y[~zero]), int(zero.sum())
    if zero_reference == "epsilon":
        return 100.0 * error / np.maximum(epsilon, np.abs(y)), 0
    if zero_reference == "smape":
        denominator = np.abs(y) + np.abs(yhat)
        safe = np.where(denominator == 0, 1.0, denominator)
        return np.where(denominator == 0, 0.0, 200.0 * error / safe), 0
    raise InputError(f"unknown zero-reference policy {zero_reference!r}; use 'exclude', 'epsilon' or 'smape'")


def error_metrics(reference: Any, predicted: Any, *, zero_reference: ZeroPolicy = "exclude") -> ErrorMetrics:
    """MAE, RMSE, MAPE, ``r2_identity`` and ``r2_pearson`` of ``predicted`` vs ``reference`` (§D.3).

    Needs 2 complete pairs. Constant reference → R² undefined (NaN, ``constant_reference``);
    constant prediction → ``r2_pearson`` NaN (``constant_predicted``).
    """
    y, yhat, dropped = paired(reference, predicted, min_n=2, what="error metrics")
    flags: list[str] = []
    if dropped:
        flags.append(f"missing_dropped:{dropped}")
    try:
        ape, n_zero = absolute_percentage_errors(y, yhat, zero_reference=zero_reference)
        mape = float(np.mean(ape))
    except InputError:
        ape, n_zero, mape = np.empty(0), int(y.size), float("nan")
        flags.append("mape_undefined_all_reference_zero")
    if n_zero and zero_reference == "exclude":
        flags.append(f"zero_reference_excluded:{n_zero}")
    if np.ptp(y) == 0:
        flags.append("constant_reference")
        r2_identity = r2_pearson = float("nan")
    else:
        r2_identity = float(r2_score(y, yhat))
        if np.ptp(yhat) == 0:
            flags.append("constant_predicted")
            r2_pearson = float("nan")
        else:
            r2_pearson = float(st.pearsonr(y, yhat).statistic ** 2)
    return ErrorMetrics(
        n=int(y.size), n_dropped_missing=dropped, mae=float(mean_absolute_error(y, yhat)),
        rmse=float(np.sqrt(mean_squared_error(y, yhat))), mape_percent=mape, mape_policy=zero_reference,
        n_excluded_zero_reference=n_zero if zero_reference == "exclude" else 0,
        r2_identity=r2_identity, r2_pearson=r2_pearson, flags=tuple(flags))


def _constant_flags(y: np.ndarray, yhat: np.ndarray) -> list[str]:
    flags = []
    if np.ptp(y) == 0:
        flags.append("constant_reference")
    if np.ptp(yhat) == 0:
        flags.append("constant_predicted")
    return flags


def pearson(reference: Any, predicted: Any, *, confidence: float = 0.95) -> CorrelationResult:
    """Pearson r, t-test p-value and Fisher-z CI tanh(atanh r ± z·1/√(n−3)) (§D.3; scipy).

    Needs 3 complete pairs; n = 3 → no CI (``ci_needs_n_gt_3``); |r| = 1 → CI [r, r] (``perfect_correlation``); a constant
    column → r undefined (NaN with flag).
    """
    y, yhat, dropped = paired(reference, predicted, min_n=3, what="Pearson correlation")
    return _correlation("pearson", y, yhat, dropped, confidence)


def spearman(reference: Any, predicted: Any, *, confidence: float = 0.95,
             ci_method: Literal["bonett_wright", "fieller"] = "bonett_wright") -> CorrelationResult:
    """Spearman ρ (Pearson r of average ranks), t-based p-value and Fisher-z CI (§D.3, [R48]).

    SE on the z scale: √((1 + ρ²/2)/(n − 3)) (Bonett & Wright, default) or √(1.06/(n − 3))
    (Fieller, Hartley & Pearson). Ties get average ranks. Needs 3 complete pairs; no CI for n = 3.
    """
    if ci_method not in ("bonett_wright", "fieller"):
        raise InputError(f"unknown Spearman CI method {ci_method!r}; use 'bonett_wright' or 'fieller'")
    y, yhat, dropped = paired(reference, predicted, min_n=3, what="Spearman correlation")
    return _correlation("spearman", y, yhat, dropped, confidence, ci_method)


def _correlation(method: str, y: np.ndarray, yhat: np.ndarray, dropped: int, confidence: float,
                 ci_method: str = "fisher") -> CorrelationResult:
    z = z_quantile(confidence)
    n = int(y.size)
    flags = _constant_flags(y, yhat)
    if dropped:
        flags.append(f"missing_dropped:{dropped}")
    nan = float("nan")
    if "constant_reference" in flags or "constant_predicted" in flags:
        return CorrelationResult(method, nan, nan, nan, nan, confidence, ci_method, nan, n, dropped, tuple(flags))
    with warnings.catch_warnings():
        # |r| = 1 makes scipy warn about the p-value; the flag below says it instead.
        warnings.simplefilter("ignore")
        result = st.pearsonr(y, yhat) if method == "pearson" else st.spearmanr(y, yhat)
    r, p = float(result.statistic), float(result.pvalue)
    if n <= 3:
        flags.append("ci_needs_n_gt_3")
        return CorrelationResult(method, r, p, nan, nan, confidence, ci_method, nan, n, dropped, tuple(flags))
    if abs(r) >= 1.0:
        flags.append("perfect_correlation")
        return CorrelationResult(method, r, p, r, r, confidence, ci_method, 0.0, n, dropped, tuple(flags))
    if method == "pearson":
        se = 1.0 / np.sqrt(n - 3)
        interval = result.confidence_interval(confidence_level=confidence)
        low, high = float(interval.low), float(interval.high)
    else:
        se = np.sqrt((1.0 + r * r / 2.0) / (n - 3)) if ci_method == "bonett_wright" else np.sqrt(1.06 / (n - 3))
        low, high = (float(v) for v in np.tanh(np.arctanh(r) + np.array([-z, z]) * se))
    return CorrelationResult(method, r, p, low, high, confidence, ci_method, float(se), n, dropped, tuple(flags))
