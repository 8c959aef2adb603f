"""Wilcoxon signed-rank (§E.7) and Bonferroni (§D.6)."""

import numpy as np
import pytest
from scipy import stats as st
from stats_data import MPG1, MPG2

from vascalc.errors import InputError
from vascalc.stats import bonferroni, compare_methods, wilcoxon_signed_rank


def test_stata_fuel_example():
    pratt = wilcoxon_signed_rank(MPG2, MPG1, zero_method="pratt")  # d = mpg1 − mpg2
    assert pratt.statistic == 13.5 and pratt.z == pytest.approx(-1.972575, abs=5e-7)
    assert pratt.p_value == pytest.approx(0.048544, abs=5e-7) and round(pratt.p_value, 4) == 0.0485
    assert (pratt.n_positive, pratt.n_negative, pratt.n_zero) == (3, 8, 1) and pratt.p_method == "approx"
    wilcox = wilcoxon_signed_rank(MPG2, MPG1)
    assert wilcox.statistic == 10.5 and wilcox.z == pytest.approx(-2.013468, abs=5e-7)
    assert wilcox.p_value == pytest.approx(0.044065, abs=5e-7)
    assert "ties" in wilcox.flags and "zero_differences:1" in wilcox.flags


def test_independent_normal_approximation():
    """§D.6 typed directly: T+, E, tie-corrected Var, z (zeros dropped)."""
    d = MPG1 - MPG2
    d = d[d != 0]
    ranks = st.rankdata(np.abs(d))
    t_plus = ranks[d > 0].sum()
    n = d.size
    _, counts = np.unique(np.abs(d), return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24 - ((counts ** 3 - counts).sum()) / 48
    z = (t_plus - n * (n + 1) / 4) / np.sqrt(var)
    r = wilcoxon_signed_rank(MPG2, MPG1)
    assert abs(r.z) == pytest.approx(abs(z)) and r.p_value == pytest.approx(2 * st.norm.sf(abs(z)))


def test_exact_without_ties_or_zeros():
    y = np.arange(10.0)
    yhat = y + np.array([0.5, -1.5, 2.5, 3.5, 4.5, -5.5, 6.5, 7.5, 8.5, 9.5])
    r = wilcoxon_signed_rank(y, yhat)
    assert r.p_method == "exact" and r.p_value == pytest.approx(st.wilcoxon(yhat - y, method="exact").pvalue)
    # T− = 2 + 6 = 8 of 55: exact two-sided p from the enumerated null distribution
    signs = np.array(np.meshgrid(*[[0, 1]] * 10)).reshape(10, -1)
    t_plus = (signs * np.arange(1, 11)[:, None]).sum(0)
    assert r.p_value == pytest.approx(2 * np.mean(t_plus <= 8))


def test_edge_cases():
    zero = wilcoxon_signed_rank([1, 2, 3], [1, 2, 3])
    assert zero.p_value == 1.0 and "all_differences_zero" in zero.flags
    with pytest.raises(InputError, match="at least 3"):
        wilcoxon_signed_rank([1, 2], [2, 3])
    with pytest.raises(InputError, match="unknown zero method"):
        wilcoxon_signed_rank([1, 2, 3], [2, 3, 4], zero_method="drop")


def test_bonferroni_and_method_families():
    adjusted, reject = bonferroni([0.01, 0.02, 0.5], alpha=0.05)
    assert adjusted.tolist() == pytest.approx([0.03, 0.06, 1.0]) and reject.tolist() == [True, False, False]
    rng = np.random.default_rng(0)
    y = rng.normal(100, 10, 40)
    methods = {"good": y + rng.normal(0, 1, 40), "biased": y + 5 + rng.normal(0, 1, 40), "noisy": y + rng.normal(0, 8, 40)}
    versus, between = compare_methods(y, methods)
    assert [c.first for c in versus] == ["good", "biased", "noisy"] and all(c.m_comparisons == 3 for c in versus)
    assert versus[1].significant and versus[1].p_adjusted == pytest.approx(min(1, 3 * versus[1].test.p_value))
    assert len(between) == 3 and between[0].quantity == "absolute_error"
    good_vs_noisy = next(c for c in between if (c.first, c.second) == ("good", "noisy"))
    assert good_vs_noisy.test.median_difference < 0 and good_vs_noisy.significant
