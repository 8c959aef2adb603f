"""Intraclass correlation in the Shrout–Fleiss / McGraw–Wong forms with F-based CIs (SCORING.md §D.4).

Hand-written: no maintained library among vascalc's dependencies computes ICCs (pingouin is not a
dependency; statsmodels has none). The mean squares are plain two-way ANOVA sums of squares (tests
cross-check them against statsmodels' ``anova_lm``); F quantiles and p-values come from
:mod:`scipy.stats`. Every formula is §D.4's, checked against Shrout & Fleiss' example (§E.1).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from scipy import stats as st

from vascalc.errors import InputError
from vascalc.stats._common import ResultMixin, check_confidence, paired

ICCForm = Literal["ICC(1)", "ICC(k)", "ICC(C,1)", "ICC(C,k)", "ICC(A,1)", "ICC(A,k)"]

# McGraw–Wong name → (Shrout–Fleiss name, model, type, unit)
FORMS: dict[str, tuple[str, str, str, str]] = {
    "ICC(A,1)": ("ICC(2,1)", "two-way", "absolute agreement", "single"),
    "ICC(C,1)": ("ICC(3,1)", "two-way", "consistency", "single"),
    "ICC(1)": ("ICC(1,1)", "one-way random", "absolute agreement", "single"),
    "ICC(A,k)": ("ICC(2,k)", "two-way", "absolute agreement", "average"),
    "ICC(C,k)": ("ICC(3,k)", "two-way", "consistency", "average"),
    "ICC(k)": ("ICC(1,k)", "one-way random", "absolute agreement", "average"),
}


@dataclass(frozen=True)
class ICCAnova(ResultMixin):
    """Sums of squares and mean squares of an n targets × k raters table (§D.4 notation)."""

    n_targets: int
    k_raters: int
    sst: float
    ssr: float
    ssc: float
    sse: float
    ssw: float
    msr: float
    msc: float
    mse: float
    msw: float


@dataclass(frozen=True)
class ICCResult(ResultMixin):
    """One ICC form with its F test (H0: ICC = 0) and confidence interval.

    ``form`` is the McGraw–Wong name, ``shrout_fleiss`` the equivalent name; two-way random and
    mixed models give the same numbers, so ``model`` reads "two-way". ``df2`` may be non-integer
    only in ``ci_df2`` (Satterthwaite v of the absolute-agreement CI).
    """

    form: str
    shrout_fleiss: str
    model: str
    type: str
    unit: str
    icc: float
    ci_low: float
    ci_high: float
    confidence: float
    f_value: float
    df1: int
    df2: int
    p_value: float
    ci_df2: float
    n_targets: int
    k_raters: int
    n_dropped_missing: int
    flags: tuple[str, ...]

    @property
    def interpretation(self) -> str:
        """Koo & Li [R51] band of the point estimate (see :func:`koo_li`)."""
        return koo_li(self.icc)


def koo_li(value: float) -> str:
    """Koo & Li (2016) reading: < 0.5 poor, 0.5–0.75 moderate, 0.75–0.9 good, > 0.9 excellent."""
    if not np.isfinite(value):
        return "undefined"
    return "poor" if value < 0.5 else "moderate" if value < 0.75 else "good" if value <= 0.9 else "excellent"


def _matrix(ratings: Any) -> tuple[np.ndarray, int]:
    try:
        x = np.asarray(ratings, dtype=float)
    except (TypeError, ValueError):
        raise InputError("ICC ratings must be numbers (a targets × raters table)") from None
    if x.ndim != 2 or x.shape[1] < 2:
        raise InputError(f"ICC needs a targets × raters table with at least 2 raters, got shape {x.shape}")
    if np.isinf(x).any():
        raise InputError("ICC ratings contain an infinite value")
    complete = ~np.isnan(x).any(axis=1)
    dropped = int(x.shape[0] - complete.sum())
    x = x[complete]
    if x.shape[0] < 3:
        raise InputError(f"ICC needs at least 3 targets rated by every rater, got {x.shape[0]} complete rows")
    return x, dropped


def icc_anova(ratings: Any) -> ICCAnova:
    """ANOVA decomposition of a complete n × k table (rows with a missing cell dropped)."""
    x, _ = _matrix(ratings)
    return _anova(x)


def _anova(x: np.ndarray) -> ICCAnova:
    n, k = x.shape
    grand = x.mean()
    sst = float(((x - grand) ** 2).sum())
    ssr = float(k * ((x.mean(axis=1) - grand) ** 2).sum())
    ssc = float(n * ((x.mean(axis=0) - grand) ** 2).sum())
    sse = sst - ssr - ssc
    ssw = sst - ssr
    return ICCAnova(n, k, sst, ssr, ssc, sse, ssw, msr=ssr / (n - 1), msc=ssc / (k - 1),
                    mse=sse / ((n - 1) * (k - 1)), msw=ssw / (n * (k - 1)))


def icc(ratings: Any, form: ICCForm = "ICC(A,1)", *, confidence: float = 0.95) -> ICCResult:
    """One ICC form of an n targets × k raters table (McGraw–Wong names; §D.4).

    Rows with a missing cell are dropped (counted in ``n_dropped_missing``); fewer than 3 complete
    rows raise :class:`InputError`. Constant data (MSR = 0 and no error) → NaN with ``constant_data``.
    """
    if form not in FORMS:
        raise InputError(f"unknown ICC form {form!r}; use one of {', '.join(FORMS)}")
    x, dropped = _matrix(ratings)
    return _icc_form(_anova(x), form, confidence, dropped)


def icc_all(ratings: Any, *, confidence: float = 0.95) -> tuple[ICCResult, ...]:
    """All six forms, ICC(A,1) first (vascalc's headline form for model-vs-expert agreement [T])."""
    x, dropped = _matrix(ratings)
    anova = _anova(x)
    return tuple(_icc_form(anova, form, confidence, dropped) for form in FORMS)


def _icc_form(a: ICCAnova, form: str, confidence: float, dropped: int) -> ICCResult:
    check_confidence(confidence)
    alpha = 1.0 - confidence
    n, k = a.n_targets, a.k_raters
    sf, model, kind, unit = FORMS[form]
    flags = [f"missing_dropped:{dropped}"] if dropped else []
    nan = float("nan")
    one_way = form in ("ICC(1)", "ICC(k)")
    df1 = n - 1
    df2 = n * (k - 1) if one_way else (n - 1) * (k - 1)
    error_ms = a.msw if one_way else a.mse
    if a.msr == 0 or error_ms == 0:
        flags.append("constant_data" if a.sst == 0 else "zero_variance_component")
        return ICCResult(form, sf, model, kind, unit, nan, nan, nan, confidence, nan, df1, df2, nan, nan,
                         n, k, dropped, tuple(flags))
    f_obs = a.msr / error_ms
    p = float(st.f.sf(f_obs, df1, df2))
    ci_df2 = float(df2)
    if form in ("ICC(1)", "ICC(C,1)", "ICC(k)", "ICC(C,k)"):
        value = ((a.msr - error_ms) / (a.msr + (k - 1) * error_ms) if unit == "single"
                 else (a.msr - error_ms) / a.msr)
        f_low = f_obs / st.f.ppf(1 - alpha / 2, df1, df2)
        f_high = f_obs * st.f.ppf(1 - alpha / 2, df2, df1)
        if unit == "single":
            low, high = (f_low - 1) / (f_low + k - 1), (f_high - 1) / (f_high + k - 1)
        else:
            low, high = 1 - 1 / f_low, 1 - 1 / f_high
    else:
        msr, msc, mse = a.msr, a.msc, a.mse
        rho1 = (msr - mse) / (msr + (k - 1) * mse + (k / n) * (msc - mse))
        value = rho1 if unit == "single" else (msr - mse) / (msr + (msc - mse) / n)
        # Satterthwaite df of the absolute-agreement CI is built from ICC(A,1) for both units (§D.4).
        aa = k * rho1 / (n * (1 - rho1))
        bb = 1 + k * rho1 * (n - 1) / (n * (1 - rho1))
        v = (aa * msc + bb * mse) ** 2 / ((aa * msc) ** 2 / (k - 1) + (bb * mse) ** 2 / ((n - 1) * (k - 1)))
        ci_df2 = float(v)
        f_star = st.f.ppf(1 - alpha / 2, n - 1, v)
        f_star_low = st.f.ppf(1 - alpha / 2, v, n - 1)
        if unit == "single":
            low = n * (msr - f_star * mse) / (f_star * (k * msc + (k * n - k - n) * mse) + n * msr)
            high = n * (f_star_low * msr - mse) / (k * msc + (k * n - k - n) * mse + n * f_star_low * msr)
        else:
            low = n * (msr - f_star * mse) / (f_star * (msc - mse) + n * msr)
            high = n * (f_star_low * msr - mse) / (msc - mse + n * f_star_low * msr)
    return ICCResult(form, sf, model, kind, unit, float(value), float(low), float(high), confidence,
                     float(f_obs), df1, df2, p, ci_df2, n, k, dropped, tuple(flags))


def icc_two_methods(reference: Any, predicted: Any, form: ICCForm = "ICC(A,1)", *,
                    confidence: float = 0.95) -> ICCResult:
    """ICC of two columns (reference and one method) as an n × 2 table."""
    y, yhat, dropped = paired(reference, predicted, min_n=3, what="ICC")
    result = icc(np.column_stack([y, yhat]), form, confidence=confidence)
    if dropped:
        result = replace(result, n_dropped_missing=dropped,
                         flags=result.flags + (f"missing_dropped:{dropped}",))
    return result
