"""Proportional-odds regression (§D.10): sign convention and an independent logistic fit."""

import numpy as np
import pytest
import statsmodels.api as sm

from vascalc.errors import InputError
from vascalc.stats import proportional_odds


def simulated(n=300, beta=1.5, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    latent = beta * x + rng.logistic(size=n)
    return x, latent


def test_two_categories_equal_logistic_regression():
    x, latent = simulated()
    y = np.where(latent > 0.3, "severe", "mild")
    r = proportional_odds(y, {"volume": x}, units={"volume": "mL"}, categories=("mild", "severe"))
    logit = sm.Logit((y == "severe").astype(int), sm.add_constant(x)).fit(disp=0)
    c = r.coefficients[0]
    assert c.b == pytest.approx(logit.params[1], rel=1e-4) and c.se == pytest.approx(logit.bse[1], rel=1e-3)
    assert r.thresholds[0] == pytest.approx(-logit.params[0], rel=1e-4)
    assert c.wald_chi2 == pytest.approx((c.b / c.se) ** 2) and c.odds_ratio == pytest.approx(np.exp(c.b))
    assert c.unit == "mL" and r.converged


def test_three_categories_recover_positive_beta_and_unit_scaling():
    x, latent = simulated(n=600, beta=2.0, seed=4)
    y = np.digitize(latent, [-1.0, 1.0]) + 1  # 1 mild, 2 moderate, 3 severe
    per_ml = proportional_odds(y, {"volume": x})
    c = per_ml.coefficients[0]
    assert c.b > 0 and c.ci_low < 2.0 < c.ci_high and c.p_value < 1e-10
    per_mm3 = proportional_odds(y, {"volume": x * 1000}, units={"volume": "mm³"})
    assert per_mm3.coefficients[0].b == pytest.approx(c.b / 1000, rel=1e-3)
    assert per_ml.thresholds[0] < per_ml.thresholds[1]


def test_edge_cases():
    with pytest.raises(InputError, match="2 different outcome categories"):
        proportional_odds([1, 1, 1, 1], {"x": [1, 2, 3, 4]})
    with pytest.raises(InputError, match="constant"):
        proportional_odds([1, 2, 1, 2, 1], {"x": [3, 3, 3, 3, 3]})
    with pytest.raises(InputError, match="more than"):
        proportional_odds([1, 2], {"x": [1, 2]})
    x, latent = simulated(n=60)
    y = (latent > 0).astype(float) + 1
    y[0] = np.nan
    r = proportional_odds(y, {"x": x})
    assert r.n == 59 and r.n_dropped_missing == 1
