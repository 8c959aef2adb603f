"""Bland–Altman against the published PEFR example (§E.4)."""

import numpy as np
import pytest
from stats_data import MINI_1, WRIGHT_1

from vascalc.errors import InputError
from vascalc.stats import bland_altman


def test_pefr_two_sd_as_published():
    r = bland_altman(MINI_1, WRIGHT_1, multiplier=2)  # d = W1 − M1, as in the paper
    assert r.bias == pytest.approx(-2.117647, abs=5e-7) and r.sd == pytest.approx(38.765130, abs=5e-7)
    assert (round(r.bias, 1), round(r.sd, 1)) == (-2.1, 38.8)
    assert (r.loa_lower, r.loa_upper) == pytest.approx((-79.7, 75.5), abs=0.1)
    assert (r.loa_lower, r.loa_upper) == pytest.approx((-79.647907, 75.412613), abs=5e-7)
    assert (r.bias_ci_low, r.bias_ci_high) == pytest.approx((-22.048838, 17.813544), abs=5e-7)
    assert (r.loa_lower_ci_low, r.loa_lower_ci_high) == pytest.approx((-114.169742, -45.126072), abs=5e-7)
    assert (r.loa_upper_ci_low, r.loa_upper_ci_high) == pytest.approx((40.890778, 109.934448), abs=5e-7)
    assert r.difference == "predicted - reference"


def test_pefr_default_and_percentage():
    r = bland_altman(MINI_1, WRIGHT_1)
    assert (r.loa_lower, r.loa_upper) == pytest.approx((-78.097302, 73.862007), abs=5e-7)
    p = bland_altman(MINI_1, WRIGHT_1, percentage=True)
    assert (p.bias, p.sd) == pytest.approx((-1.158314, 12.098395), abs=5e-7)


def test_variance_1999_interval_and_proportional_bias():
    r = bland_altman(MINI_1, WRIGHT_1, loa_ci="variance_1999")
    from scipy import stats as st

    se = r.sd * np.sqrt(1 / 17 + 1.96 ** 2 / 32)
    assert r.loa_upper_ci_high - r.loa_upper == pytest.approx(st.t.ppf(0.975, 16) * se)
    y = np.arange(1.0, 21.0)
    proportional = bland_altman(y, 1.2 * y + np.tile([0.1, -0.1], 10))
    assert proportional.proportional_bias_p < 1e-6 and proportional.proportional_bias_slope > 0


def test_edge_cases():
    with pytest.raises(InputError, match="at least 3"):
        bland_altman([1, 2], [1, 2])
    with pytest.raises(InputError, match="different lengths"):
        bland_altman([1, 2, 3], [1, 2])
    same = bland_altman([1, 2, 3, 4], [2, 3, 4, 5])
    assert same.bias == 1 and same.sd == 0 and "identical_differences" in same.flags
    zero = bland_altman([0, 1, 2, 3, 4], [0, 1.1, 2.2, 2.9, 4.1], percentage=True)
    assert zero.n == 4 and zero.n_excluded_zero_mean == 1 and "zero_mean_excluded:1" in zero.flags
    gaps = bland_altman([1, 2, np.nan, 4, 5], [1, 2, 3, 4.5, 5.5])
    assert gaps.n == 4 and gaps.n_dropped_missing == 1
