"""Bland–Altman bias and limits of agreement with confidence intervals (SCORING.md §D.5, [R55, R56]).

Hand-written arithmetic (mean, SD, t quantile from :mod:`scipy.stats`); statsmodels'
``mean_diff_plot`` draws the plot but computes no intervals. The proportional-bias check (regression
of the difference on the pair mean) uses :func:`scipy.stats.linregress`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats as st

from vascalc.errors import InputError
from vascalc.stats._common import ResultMixin, check_confidence, paired, require_n

LoaCI = Literal["bland_altman_1986", "variance_1999"]


@dataclass(frozen=True)
class BlandAltmanResult(ResultMixin):
    """Bias, limits of agreement and their CIs of d = predicted − reference (§D.5).

    Values are in the unit of the scores, or in % of the pair mean when ``percentage`` is true.
    ``multiplier`` is 1.96 (default) or 2 (Bland & Altman 1986). ``proportional_bias_slope`` and
    ``proportional_bias_p`` come from regressing d on the pair mean.
    """

    n: int
    n_dropped_missing: int
    n_excluded_zero_mean: int
    difference: str
    percentage: bool
    bias: float
    sd: float
    multiplier: float
    loa_lower: float
    loa_upper: float
    confidence: float
    bias_ci_low: float
    bias_ci_high: float
    loa_lower_ci_low: float
    loa_lower_ci_high: float
    loa_upper_ci_low: float
    loa_upper_ci_high: float
    loa_ci_method: str
    proportional_bias_slope: float
    proportional_bias_p: float
    flags: tuple[str, ...]


def bland_altman(reference: Any, predicted: Any, *, multiplier: float = 1.96, percentage: bool = False,
                 confidence: float = 0.95, loa_ci: LoaCI = "bland_altman_1986") -> BlandAltmanResult:
    """Bland–Altman analysis of ``predicted`` against ``reference`` with d = ŷ − y (§D.5).

    CI(bias) = d̄ ± t_{n−1}·s/√n. CI of each limit: ``bland_altman_1986`` uses SE = √(3s²/n);
    ``variance_1999`` uses SE² = s²(1/n + m²/(2(n−1))) with m the multiplier. With ``percentage``
    the differences are 100·(ŷ − y)/((ŷ + y)/2); pairs whose mean is 0 are excluded and flagged.
    Needs 3 complete pairs (:class:`~vascalc.errors.InputError` otherwise).
    """
    check_confidence(confidence)
    y, yhat, dropped = paired(reference, predicted, min_n=3, what="Bland–Altman analysis")
    flags = [f"missing_dropped:{dropped}"] if dropped else []
    mean_pair = (y + yhat) / 2.0
    d = yhat - y
    n_zero = 0
    if percentage:
        zero = mean_pair == 0
        n_zero = int(zero.sum())
        if n_zero:
            flags.append(f"zero_mean_excluded:{n_zero}")
        d = 100.0 * d[~zero] / mean_pair[~zero]
        mean_pair = mean_pair[~zero]
        require_n(d.size, 3, "percentage Bland–Altman analysis")
    n = d.size
    bias = float(d.mean())
    sd = float(d.std(ddof=1))
    t = float(st.t.ppf(0.5 + confidence / 2.0, n - 1))
    lower, upper = bias - multiplier * sd, bias + multiplier * sd
    se_bias = sd / np.sqrt(n)
    if loa_ci == "bland_altman_1986":
        se_loa = np.sqrt(3.0 * sd * sd / n)
    elif loa_ci == "variance_1999":
        se_loa = sd * np.sqrt(1.0 / n + multiplier ** 2 / (2.0 * (n - 1)))
    else:
        raise InputError(f"unknown limits-of-agreement CI {loa_ci!r}; use 'bland_altman_1986' or 'variance_1999'")
    if sd == 0:
        flags.append("identical_differences")
        slope, slope_p = float("nan"), float("nan")
    elif np.ptp(mean_pair) == 0:
        flags.append("constant_pair_mean")
        slope, slope_p = float("nan"), float("nan")
    else:
        fit = st.linregress(mean_pair, d)
        slope, slope_p = float(fit.slope), float(fit.pvalue)
    return BlandAltmanResult(
        n=int(n), n_dropped_missing=dropped, n_excluded_zero_mean=n_zero, difference="predicted - reference",
        percentage=percentage, bias=bias, sd=sd, multiplier=float(multiplier), loa_lower=float(lower),
        loa_upper=float(upper), confidence=confidence, bias_ci_low=float(bias - t * se_bias),
        bias_ci_high=float(bias + t * se_bias), loa_lower_ci_low=float(lower - t * se_loa),
        loa_lower_ci_high=float(lower + t * se_loa), loa_upper_ci_low=float(upper - t * se_loa),
        loa_upper_ci_high=float(upper + t * se_loa), loa_ci_method=loa_ci,
        proportional_bias_slope=slope, proportional_bias_p=slope_p, flags=tuple(flags))
