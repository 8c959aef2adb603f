"""Wilcoxon signed-rank test and Bonferroni correction (SCORING.md §D.6, [R57, R58]).

Library: :func:`scipy.stats.wilcoxon` (zero handling ``wilcox`` / ``pratt`` / ``zsplit``, tie-corrected
normal approximation, exact distribution) and statsmodels' ``multipletests`` for Bonferroni. Only
the choice of exact vs approximate p (§D.6: exact when n ≤ 50 without ties or zeros) is vascalc's.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Literal, Mapping

import numpy as np
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

from vascalc.errors import InputError
from vascalc.stats._common import ResultMixin, as_float_array, paired

ZeroMethod = Literal["wilcox", "pratt", "zsplit"]


@dataclass(frozen=True)
class WilcoxonResult(ResultMixin):
    """Two-sided Wilcoxon signed-rank test of d = predicted − reference.

    ``statistic`` is scipy's min(T+, T−) (rank sums); ``z`` the tie-corrected normal statistic
    without continuity correction unless ``correction``; ``p_method`` is ``exact`` or ``approx``.
    """

    n: int
    n_dropped_missing: int
    n_positive: int
    n_negative: int
    n_zero: int
    zero_method: str
    statistic: float
    z: float
    p_value: float
    p_method: str
    correction: bool
    median_difference: float
    flags: tuple[str, ...]


@dataclass(frozen=True)
class PairedComparison(ResultMixin):
    """One comparison in a family, with its Bonferroni-adjusted p (min(1, m·p)) over ``m`` tests.

    ``quantity`` is ``score`` (method vs reference: a systematic difference) or ``absolute_error``
    (method A vs method B: which is closer to the reference). In both the tested difference is
    ``first − second`` (so a negative median for ``absolute_error`` means ``first`` errs less).
    """

    first: str
    second: str
    quantity: str
    test: WilcoxonResult
    m_comparisons: int
    p_adjusted: float
    alpha: float
    significant: bool


def wilcoxon_signed_rank(reference: Any, predicted: Any, *, zero_method: ZeroMethod = "wilcox",
                         correction: bool = False, exact: bool | None = None) -> WilcoxonResult:
    """Wilcoxon signed-rank test on d = ŷ − y (§D.6), complete pairs only (≥ 3 needed).

    ``exact=None`` uses the exact distribution when n ≤ 50 and there are no ties and no zero
    differences, the normal approximation otherwise. All differences zero → p = 1 with
    ``all_differences_zero``.
    """
    if zero_method not in ("wilcox", "pratt", "zsplit"):
        raise InputError(f"unknown zero method {zero_method!r}; use 'wilcox', 'pratt' or 'zsplit'")
    y, yhat, dropped = paired(reference, predicted, min_n=3, what="the Wilcoxon signed-rank test")
    d = yhat - y
    flags = [f"missing_dropped:{dropped}"] if dropped else []
    n_pos, n_neg, n_zero = int((d > 0).sum()), int((d < 0).sum()), int((d == 0).sum())
    median = float(np.median(d))
    if n_pos + n_neg == 0:
        flags.append("all_differences_zero")
        return WilcoxonResult(int(d.size), dropped, 0, 0, n_zero, zero_method, 0.0, 0.0, 1.0, "none",
                              correction, median, tuple(flags))
    nonzero = np.abs(d[d != 0])
    ties = np.unique(nonzero).size < nonzero.size
    if ties:
        flags.append("ties")
    if n_zero:
        flags.append(f"zero_differences:{n_zero}")
    use_exact = (d.size <= 50 and not ties and n_zero == 0) if exact is None else exact
    approx = st.wilcoxon(yhat, y, zero_method=zero_method, correction=correction, method="approx")
    p = float(approx.pvalue)
    if use_exact:
        if ties or n_zero:
            raise InputError("the exact Wilcoxon distribution does not allow ties or zero differences; "
                             "use exact=None or False")
        p = float(st.wilcoxon(yhat, y, zero_method=zero_method, method="exact").pvalue)
    return WilcoxonResult(int(d.size), dropped, n_pos, n_neg, n_zero, zero_method, float(approx.statistic),
                          float(approx.zstatistic), p, "exact" if use_exact else "approx", correction,
                          median, tuple(flags))


def bonferroni(p_values: Any, *, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Bonferroni-adjusted p-values min(1, m·p) and reject flags (statsmodels ``multipletests``)."""
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1 or p.size == 0 or np.isnan(p).any():
        raise InputError("Bonferroni correction needs a non-empty list of p-values without NaN")
    reject, adjusted, _, _ = multipletests(p, alpha=alpha, method="bonferroni")
    return adjusted, reject


def compare_methods(reference: Any, predicted: Mapping[str, Any], *, alpha: float = 0.05,
                    zero_method: ZeroMethod = "wilcox") -> tuple[tuple[PairedComparison, ...], tuple[PairedComparison, ...]]:
    """Wilcoxon comparisons of several methods, Bonferroni-corrected within each family.

    Returns ``(versus_reference, between_methods)``: each method's scores against the reference
    (m = number of methods), and each pair of methods on their absolute errors |ŷ − y| (m = number
    of pairs; empty with one method). Cases missing in any column are dropped from every test so
    that all comparisons use the same cases.
    """
    names = list(predicted)
    if not names:
        raise InputError("give at least one predicted column to compare")
    y = as_float_array(reference, "reference")
    columns = {name: as_float_array(predicted[name], name) for name in names}
    for name, column in columns.items():
        if column.shape != y.shape:
            raise InputError(f"column {name!r} has {column.size} values but the reference has {y.size}")
    complete = ~np.isnan(y) & np.all([~np.isnan(c) for c in columns.values()], axis=0)
    y = y[complete]
    columns = {name: column[complete] for name, column in columns.items()}

    def family(pairs: list[tuple[str, str, str, np.ndarray, np.ndarray]]) -> tuple[PairedComparison, ...]:
        if not pairs:
            return ()
        tests = [wilcoxon_signed_rank(a, b, zero_method=zero_method) for *_, a, b in pairs]
        adjusted, reject = bonferroni([t.p_value for t in tests], alpha=alpha)
        return tuple(PairedComparison(first, second, quantity, test, len(tests), float(p_adj), alpha, bool(r))
                     for (first, second, quantity, _, _), test, p_adj, r in zip(pairs, tests, adjusted, reject))

    versus = family([(name, "reference", "score", y, columns[name]) for name in names])
    between = family([(a, b, "absolute_error", np.abs(columns[b] - y), np.abs(columns[a] - y))
                      for a, b in itertools.combinations(names, 2)])
    return versus, between
