"""ICC forms against Shrout & Fleiss' published example (§E.1) and an independent ANOVA."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from statsmodels.stats.anova import anova_lm
from stats_data import SHROUT_FLEISS

from vascalc.errors import InputError
from vascalc.stats import icc, icc_all, icc_anova, icc_two_methods, koo_li

# form: (published 2 decimals, computed, F, df1, df2, p, ci_low, ci_high)
E1 = {
    "ICC(1)": (0.17, 0.165742, 1.794678, 5, 18, 0.164769, -0.132932, 0.722560),
    "ICC(A,1)": (0.29, 0.289764, 11.027248, 5, 15, 0.000135, 0.018787, 0.761084),
    "ICC(C,1)": (0.71, 0.714841, 11.027248, 5, 15, 0.000135, 0.342465, 0.945858),
    "ICC(k)": (0.44, 0.442797, 1.794678, 5, 18, 0.164769, -0.884442, 0.912415),
    "ICC(A,k)": (0.62, 0.620051, 11.027248, 5, 15, 0.000135, 0.071137, 0.927232),
    "ICC(C,k)": (0.91, 0.909316, 11.027248, 5, 15, 0.000135, 0.675675, 0.985892),
}


@pytest.mark.parametrize("form", list(E1))
def test_shrout_fleiss_six_forms(form):
    published, value, f, df1, df2, p, low, high = E1[form]
    r = icc(SHROUT_FLEISS, form)
    assert round(r.icc, 2) == published
    assert r.icc == pytest.approx(value, abs=5e-7)
    assert r.f_value == pytest.approx(f, abs=5e-7)
    assert (r.df1, r.df2) == (df1, df2)
    assert r.p_value == pytest.approx(p, abs=5e-7)
    assert r.ci_low == pytest.approx(low, abs=5e-7)
    assert r.ci_high == pytest.approx(high, abs=5e-7)


def test_absolute_agreement_satterthwaite_df_and_names():
    r = icc(SHROUT_FLEISS, "ICC(A,1)")
    assert r.ci_df2 == pytest.approx(4.7851, abs=5e-5)
    assert (r.shrout_fleiss, r.model, r.type, r.unit) == ("ICC(2,1)", "two-way", "absolute agreement", "single")
    forms = [x.form for x in icc_all(SHROUT_FLEISS)]
    assert forms[0] == "ICC(A,1)" and sorted(forms) == sorted(E1)


def test_anova_against_statsmodels_two_way_anova():
    a = icc_anova(SHROUT_FLEISS)
    n, k = SHROUT_FLEISS.shape
    frame = pd.DataFrame({"y": SHROUT_FLEISS.ravel(), "target": np.repeat(np.arange(n), k).astype(str),
                          "judge": np.tile(np.arange(k), n).astype(str)})
    table = anova_lm(smf.ols("y ~ C(target) + C(judge)", frame).fit())
    assert a.ssr == pytest.approx(table.loc["C(target)", "sum_sq"])
    assert a.ssc == pytest.approx(table.loc["C(judge)", "sum_sq"])
    assert a.sse == pytest.approx(table.loc["Residual", "sum_sq"])
    assert (a.msr, a.msc, a.mse, a.msw) == pytest.approx((11.241667, 32.486111, 1.019444, 6.263889), abs=5e-7)


def test_missing_rows_dropped_and_counted():
    x = np.vstack([SHROUT_FLEISS, [np.nan, 1, 2, 3]])
    r = icc(x, "ICC(C,1)")
    assert r.n_targets == 6 and r.n_dropped_missing == 1 and "missing_dropped:1" in r.flags
    assert r.icc == pytest.approx(0.714841, abs=5e-7)


def test_edge_cases_are_clear():
    with pytest.raises(InputError, match="at least 3 targets"):
        icc(SHROUT_FLEISS[:2])
    with pytest.raises(InputError, match="2 raters"):
        icc(SHROUT_FLEISS[:, :1])
    with pytest.raises(InputError, match="unknown ICC form"):
        icc(SHROUT_FLEISS, "ICC(9)")
    constant = icc(np.full((5, 2), 3.0))
    assert np.isnan(constant.icc) and "constant_data" in constant.flags
    with pytest.raises(InputError, match="different lengths"):
        icc_two_methods([1, 2, 3], [1, 2])


def test_perfect_two_method_agreement_and_koo_li():
    r = icc_two_methods([1, 2, 3, 4, 5], [1.1, 2.0, 2.9, 4.2, 5.0])
    assert 0.98 < r.icc < 1 and r.ci_low < r.icc < r.ci_high <= 1
    assert [koo_li(v) for v in (0.4, 0.6, 0.8, 0.95)] == ["poor", "moderate", "good", "excellent"]
