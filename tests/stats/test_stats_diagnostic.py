"""Diagnostic accuracy (§E.6), proportion CIs (Newcombe), DeLong AUC (§E.5) and multiclass metrics."""

import numpy as np
import pytest
from scipy import stats as st
from sklearn.metrics import confusion_matrix, roc_auc_score
from stats_data import hanley_mcneil_data

from vascalc.errors import InputError
from vascalc.stats import (delong_components, diagnostic_accuracy, diagnostic_from_counts, multiclass_metrics,
                           proportion_ci, roc_auc)

LIVER = {  # measure: (x, n, wilson, clopper–pearson)
    "sensitivity": (231, 258, (0.8520, 0.9271), (0.8514, 0.9299)),
    "specificity": (54, 86, (0.5223, 0.7225), (0.5170, 0.7298)),
    "ppv": (231, 263, (0.8333, 0.9125), (0.8326, 0.9153)),
    "npv": (54, 81, (0.5585, 0.7597), (0.5532, 0.7676)),
}


@pytest.mark.parametrize("method,index", [("wilson", 2), ("clopper_pearson", 3)])
def test_liver_scan(method, index):
    r = diagnostic_from_counts(tp=231, fn=27, fp=32, tn=54, method=method)
    assert round(r.sensitivity.estimate, 4) == 0.8953 and r.n == 344
    for name, row in LIVER.items():
        p = getattr(r, name)
        assert (p.numerator, p.denominator) == row[:2]
        assert (p.ci_low, p.ci_high) == pytest.approx(row[index], abs=5e-5)


@pytest.mark.parametrize("x,n,wilson,exact", [(81, 263, (0.2553, 0.3662), (0.2527, 0.3676)),
                                              (15, 148, (0.0624, 0.1605), (0.0578, 0.1617)),
                                              (0, 20, (0.0, 0.1611), (0.0, 0.1684)),
                                              (1, 29, (0.0061, 0.1718), (0.0009, 0.1776))])
def test_newcombe_examples(x, n, wilson, exact):
    w = proportion_ci(x, n)
    assert (w.ci_low, w.ci_high) == pytest.approx(wilson, abs=5e-5)
    # Wilson typed from §D.8
    z, p = st.norm.ppf(0.975), x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (w.ci_low, w.ci_high) == pytest.approx((centre - half, centre + half), abs=1e-12)
    c = proportion_ci(x, n, method="clopper_pearson")
    assert (c.ci_low, c.ci_high) == pytest.approx(exact, abs=5e-5)


def test_hanley_mcneil_delong():
    labels, ratings = hanley_mcneil_data()
    r = roc_auc(labels, ratings)
    assert r.auc == pytest.approx(0.893171, abs=5e-7) and round(r.auc, 3) == 0.893
    assert r.auc == pytest.approx(roc_auc_score(labels, ratings))
    assert r.se == pytest.approx(0.030724, abs=5e-7)
    assert (r.ci_low, r.ci_high) == pytest.approx((0.832952, 0.953390), abs=5e-7)
    logit = roc_auc(labels, ratings, ci_method="logit")
    assert (logit.ci_low, logit.ci_high) == pytest.approx((0.816443, 0.940176), abs=5e-7)
    assert roc_auc(labels, ratings, se_method="hanley_mcneil").se == pytest.approx(0.032487, abs=5e-7)


def test_delong_against_brute_force_psi_matrix():
    rng = np.random.default_rng(5)
    x = np.round(rng.normal(1, 1, 23), 1)  # rounding makes ties
    y = np.round(rng.normal(0, 1, 31), 1)
    psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
    auc, v10, v01 = delong_components(x, y)
    assert auc == pytest.approx(psi.mean())
    assert v10 == pytest.approx(psi.mean(axis=1)) and v01 == pytest.approx(psi.mean(axis=0))
    r = roc_auc(np.r_[np.ones(23), np.zeros(31)], np.r_[x, y])
    var = ((psi.mean(1) - auc) ** 2).sum() / 22 / 23 + ((psi.mean(0) - auc) ** 2).sum() / 30 / 31
    assert r.se == pytest.approx(np.sqrt(var))


def test_binary_auc_equals_mean_of_se_and_sp():
    ref = np.r_[np.ones(239), np.zeros(234)]
    pred = np.r_[np.ones(211), np.zeros(28), np.ones(15), np.zeros(219)]
    d = diagnostic_accuracy(ref, pred)
    assert (d.tp, d.fn, d.fp, d.tn) == (211, 28, 15, 219)
    assert roc_auc(ref, pred).auc == pytest.approx((d.sensitivity.estimate + d.specificity.estimate) / 2)


def test_diagnostic_edge_cases():
    r = diagnostic_from_counts(0, 0, 3, 7)
    assert np.isnan(r.sensitivity.estimate) and "sensitivity_undefined" in r.flags
    assert r.specificity.estimate == pytest.approx(0.7)
    with pytest.raises(InputError, match="binary"):
        diagnostic_accuracy([0, 1, 2], [0, 1, 1])
    with pytest.raises(InputError, match="both positive and negative"):
        roc_auc([1, 1, 1], [0.2, 0.5, 0.9])
    gaps = diagnostic_accuracy([1, 0, np.nan, 1], [1, 0, 1, 0])
    assert gaps.n == 3 and "missing_dropped:1" in gaps.flags
    perfect = roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert perfect.auc == 1 and "degenerate_auc" in perfect.flags


def test_multiclass_against_sklearn():
    rng = np.random.default_rng(2)
    ref = rng.integers(0, 3, 80)
    pred = np.where(rng.random(80) < 0.7, ref, rng.integers(0, 3, 80))
    r = multiclass_metrics(ref, pred, labels=(0, 1, 2, 3))
    expected = confusion_matrix(ref, pred, labels=[0, 1, 2, 3])
    assert np.array_equal(np.array(r.confusion), expected)
    assert r.accuracy.estimate == pytest.approx(np.trace(expected) / 80)
    c1 = r.per_class[1]
    assert c1.sensitivity.estimate == pytest.approx(expected[1, 1] / expected[1].sum())
    tn = expected.sum() - expected[1].sum() - expected[:, 1].sum() + expected[1, 1]
    assert c1.specificity.estimate == pytest.approx(tn / (expected.sum() - expected[1].sum()))
    assert np.isnan(r.per_class[3].sensitivity.estimate)  # declared, never in the reference
    assert r.macro_sensitivity == pytest.approx(np.mean([expected[i, i] / expected[i].sum() for i in range(3)]))
