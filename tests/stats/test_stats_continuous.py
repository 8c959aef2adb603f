"""Errors, R², correlations (§D.3) against §E.4 and §E.8, and the edge cases."""

import numpy as np
import pytest
from scipy import stats as st
from sklearn.metrics import mean_absolute_percentage_error
from stats_data import E8_X, E8_Y, MINI_1, WRIGHT_1

from vascalc.errors import InputError
from vascalc.stats import absolute_percentage_errors, error_metrics, pearson, spearman


def test_pefr_regression_metrics():
    m = error_metrics(WRIGHT_1, MINI_1)
    assert (m.mae, m.rmse, m.mape_percent) == pytest.approx((28.941176, 37.667274, 8.041349), abs=5e-7)
    assert (m.r2_identity, m.r2_pearson) == pytest.approx((0.888570, 0.889776), abs=5e-7)
    assert error_metrics(MINI_1, WRIGHT_1).r2_identity == pytest.approx(0.882181, abs=5e-7)
    assert m.n == 17 and m.flags == () and m.r2_pearson >= m.r2_identity


def test_hand_mape_and_ape():
    ape, excluded = absolute_percentage_errors([10, 20, 0, 50], [11, 15, 3, 50])
    assert excluded == 1 and ape.tolist() == pytest.approx([10.0, 25.0, 0.0])
    m = error_metrics([10, 20, 0, 50], [11, 15, 3, 50])
    assert m.mape_percent == pytest.approx(35 / 3) and m.n_excluded_zero_reference == 1
    assert "zero_reference_excluded:1" in m.flags
    smape, _ = absolute_percentage_errors([0, 10], [0, 30], zero_reference="smape")
    assert smape.tolist() == pytest.approx([0.0, 100.0])
    eps, _ = absolute_percentage_errors([0.5, 2], [1, 1], zero_reference="epsilon")
    assert eps.tolist() == pytest.approx([100.0, 50.0])
    y, yhat = [0.0, 2.0, 5.0], [1e-3, 1.0, 6.0]
    m_eps = error_metrics(y, yhat, zero_reference="epsilon")
    assert m_eps.mape_percent == pytest.approx(100 * mean_absolute_percentage_error(y, yhat))


def test_all_zero_reference():
    with pytest.raises(InputError, match="every reference value is 0"):
        absolute_percentage_errors([0, 0, 0], [1, 2, 3])
    m = error_metrics([0, 0, 0], [1, 2, 3])
    assert np.isnan(m.mape_percent) and "mape_undefined_all_reference_zero" in m.flags
    assert "constant_reference" in m.flags and np.isnan(m.r2_identity) and m.mae == pytest.approx(2.0)


def test_statpsych_spearman_and_pearson():
    s = spearman(E8_Y, E8_X)
    assert s.r == pytest.approx(0.8699639, abs=5e-8)
    assert (s.ci_low, s.ci_high) == pytest.approx((0.5840951, 0.9638297), abs=5e-8)
    assert s.se_z == pytest.approx(0.338922, abs=5e-7)
    assert (1 - s.r ** 2) * s.se_z == pytest.approx(0.08241326, abs=5e-9)  # statpsych's correlation-scale SE
    f = spearman(E8_Y, E8_X, ci_method="fieller")
    assert (f.ci_low, f.ci_high) == pytest.approx((0.635395, 0.957541), abs=5e-7)
    p = pearson(E8_Y, E8_X)
    assert p.r == pytest.approx(0.8107739, abs=5e-8)
    assert (p.ci_low, p.ci_high) == pytest.approx((0.5105628, 0.9347907), abs=5e-8)
    # independent Fisher interval typed from §D.3
    z = st.norm.ppf(0.975)
    assert p.ci_low == pytest.approx(np.tanh(np.arctanh(p.r) - z / np.sqrt(12)))


def test_spearman_p_is_t_based_with_average_ranks():
    y = [1, 2, 2, 3, 5, 4, 7, 6]
    x = [2, 1, 3, 3, 4, 6, 5, 8]
    s = spearman(y, x)
    rho = np.corrcoef(st.rankdata(y), st.rankdata(x))[0, 1]
    t = rho * np.sqrt(6 / (1 - rho ** 2))
    assert s.r == pytest.approx(rho) and s.p_value == pytest.approx(2 * st.t.sf(abs(t), 6))


def test_pearson_pefr():
    assert pearson(WRIGHT_1, MINI_1).r == pytest.approx(0.943279, abs=5e-7)


def test_correlation_edge_cases():
    small = pearson([1, 2, 4], [1, 3, 2])
    assert np.isnan(small.ci_low) and "ci_needs_n_gt_3" in small.flags and np.isfinite(small.r)
    perfect = pearson([1, 2, 3, 4, 5], [2, 4, 6, 8, 10])
    assert perfect.ci_low == perfect.ci_high == pytest.approx(1.0) and "perfect_correlation" in perfect.flags
    constant = spearman([1, 2, 3, 4], [5, 5, 5, 5])
    assert np.isnan(constant.r) and "constant_predicted" in constant.flags
    missing = pearson([1, 2, np.nan, 4, 5, 7], [1.5, 2, 3, np.nan, 5, 6])
    assert missing.n == 4 and missing.n_dropped_missing == 2 and "missing_dropped:2" in missing.flags
    with pytest.raises(InputError, match="different lengths"):
        pearson([1, 2, 3], [1, 2])
    with pytest.raises(InputError, match="not numbers"):
        error_metrics(["1", "x", "3"], [1, 2, 3])
    with pytest.raises(InputError, match="at least 3"):
        spearman([1, np.nan, 3], [2, 3, 4])
