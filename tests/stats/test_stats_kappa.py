"""Cohen's, Fleiss' and Randolph's κ against §E.2–E.3 and independent computations."""

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from stats_data import FLEISS_1971, SAS_TABLE

from vascalc.errors import InputError
from vascalc.stats import (category_counts, cohen_kappa, cohen_kappa_table, contingency_table, landis_koch,
                           multirater_kappa)

# weights: (κ, ASE, CI low, CI high, ASE0, z, p, p_o, p_e, tolerance)
SAS = {
    "none": (0.4842, 0.1380, 0.2137, 0.7547, 0.1484, 3.2626, 0.0011, 0.684211, 0.387812, 5e-5),
    "linear": (0.4701, 0.1457, 0.1845, 0.7558, 0.1426, 3.2971, 0.0010, 0.815789, 0.652355, 5e-5),
    "quadratic": (0.450161, 0.192233, 0.073392, 0.826930, 0.187919, 2.3955, 0.016598, 0.881579, 0.784626, 5e-7),
}


def fce_variance(table: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
    """Independent Fleiss–Cohen–Everitt variances (κ, Var, Var0), typed from §D.7.1."""
    p = table / table.sum()
    pr, pc = p.sum(1), p.sum(0)
    po, pe = (w * p).sum(), (w * np.outer(pr, pc)).sum()
    k = (po - pe) / (1 - pe)
    wi, wj = w @ pc, pr @ w
    var = ((p * (w - np.add.outer(wi, wj) * (1 - k)) ** 2).sum() - (k - pe * (1 - k)) ** 2) / (table.sum() * (1 - pe) ** 2)
    var0 = ((np.outer(pr, pc) * (w - np.add.outer(wi, wj)) ** 2).sum() - pe ** 2) / (table.sum() * (1 - pe) ** 2)
    return k, var, var0


@pytest.mark.parametrize("weights", list(SAS))
def test_sas_example(weights):
    kappa, ase, low, high, ase0, z, p, po, pe, tol = SAS[weights]
    r = cohen_kappa_table(SAS_TABLE, weights=weights)
    assert (r.kappa, r.se, r.ci_low, r.ci_high, r.se0) == pytest.approx((kappa, ase, low, high, ase0), abs=tol)
    assert r.z == pytest.approx(z, abs=5e-5)  # printed to 4 decimals in every row
    assert r.p_value == pytest.approx(p, abs=5e-5 if tol > 1e-6 else 5e-7)
    assert (r.p_observed, r.p_expected) == pytest.approx((po, pe), abs=5e-7)
    i = np.arange(3)
    w = {"none": np.eye(3), "linear": 1 - abs(i[:, None] - i) / 2, "quadratic": 1 - (i[:, None] - i) ** 2 / 4}[weights]
    k2, var, var0 = fce_variance(SAS_TABLE.astype(float), w)
    assert r.kappa == pytest.approx(k2) and r.se == pytest.approx(np.sqrt(var)) and r.se0 == pytest.approx(np.sqrt(var0))


@pytest.mark.parametrize("cells,kappa,ase,low,high", [
    ((211, 28, 15, 219), 0.8183, 0.0264, 0.767, 0.870), ((320, 9, 5, 139), 0.9307, 0.0182, 0.895, 0.966),
    ((187, 25, 17, 244), 0.8198, 0.0265, 0.768, 0.872), ((329, 17, 3, 124), 0.8960, 0.0227, 0.852, 0.940)])
def test_s5_reconstructed_tables(cells, kappa, ase, low, high):
    tp, fn, fp, tn = cells
    r = cohen_kappa_table([[tp, fn], [fp, tn]])
    assert round(r.kappa, 4) == kappa and round(r.se, 4) == ase
    assert (round(r.ci_low, 3), round(r.ci_high, 3)) == (low, high)


@pytest.mark.parametrize("weights,sk", [("none", None), ("linear", "linear"), ("quadratic", "quadratic")])
def test_kappa_from_labels_matches_sklearn(weights, sk):
    rng = np.random.default_rng(3)
    a = rng.integers(0, 4, 60)
    b = np.clip(a + rng.integers(-1, 2, 60), 0, 3)
    r = cohen_kappa(a, b, weights=weights)
    assert r.kappa == pytest.approx(cohen_kappa_score(a, b, weights=sk))
    assert r.n == 60 and r.categories == (0, 1, 2, 3)


def test_declared_categories_include_unobserved_and_missing_dropped():
    table, cats, dropped = contingency_table(["low", "high", None, "low"], ["low", "high", "low", "high"],
                                             categories=("low", "mid", "high"))
    assert cats == ("low", "mid", "high") and dropped == 1
    assert table.tolist() == [[1, 0, 1], [0, 0, 0], [0, 0, 1]]
    r = cohen_kappa([0, 0, 2, 2, None], [0, 0, 2, 2, 1], weights="linear", categories=(0, 1, 2))
    assert r.kappa == pytest.approx(1.0) and "missing_dropped:1" in r.flags and "ci_clipped" not in r.flags


def test_kappa_edge_cases():
    undefined = cohen_kappa_table([[5, 0], [0, 0]])
    assert np.isnan(undefined.kappa) and undefined.flags == ("chance_agreement_is_1",)
    with pytest.raises(InputError, match="not among the declared categories"):
        cohen_kappa([1, 2, 3], [1, 2, 4], categories=(1, 2, 3))
    with pytest.raises(InputError, match="at least 3"):
        cohen_kappa_table([[1, 0], [0, 1]])
    with pytest.raises(InputError, match="different lengths"):
        cohen_kappa([1, 2], [1])
    assert [landis_koch(v) for v in (-0.1, 0.1, 0.3, 0.5, 0.7, 0.9)] == [
        "poor", "slight", "fair", "moderate", "substantial", "almost perfect"]


def test_fleiss_1971_and_randolph():
    counts, cats = category_counts(FLEISS_1971, categories=(1, 2, 3, 4, 5))
    assert counts.shape == (30, 5) and (counts.sum(1) == 6).all()
    fleiss = multirater_kappa(counts, method="fleiss", n_bootstrap=500)
    assert fleiss.kappa == pytest.approx(0.4302445, abs=5e-8)
    assert fleiss.p_bar == pytest.approx(0.555556, abs=5e-7)
    assert fleiss.ci_low < fleiss.kappa < fleiss.ci_high
    randolph = multirater_kappa(counts, method="randolph", n_bootstrap=0)
    assert randolph.kappa == pytest.approx(0.4444444, abs=5e-8) and randolph.p_expected == pytest.approx(0.2)
    # independent: P̄ of §D.7.2 typed directly
    p_i = (counts * (counts - 1)).sum(1) / 30
    assert randolph.kappa == pytest.approx((p_i.mean() - 0.2) / 0.8)


@pytest.mark.parametrize("table,fleiss,free", [([[7, 1], [3, 5]], 0.161905, 0.214286),
                                               ([[6, 1, 0], [0, 7, 0]], 0.708333, 0.785714),
                                               ([[7, 0], [0, 7]], 1.0, 1.0)])
def test_randolph_calculator_examples(table, fleiss, free):
    r_f = multirater_kappa(table, method="fleiss")
    r_r = multirater_kappa(table, method="randolph")
    assert r_f.kappa == pytest.approx(fleiss, abs=5e-7) and r_r.kappa == pytest.approx(free, abs=5e-7)
    assert r_r.kappa >= r_f.kappa  # Warrens: free-marginal κ is never below Fleiss' κ
    # two subjects give a point estimate but no bootstrap interval
    assert np.isnan(r_f.ci_low) and "ci_needs_3_subjects" in r_f.flags


def test_bootstrap_is_seeded_and_deterministic():
    counts, _ = category_counts(FLEISS_1971)
    a = multirater_kappa(counts, method="randolph", n_bootstrap=300, seed=7)
    b = multirater_kappa(counts, method="randolph", n_bootstrap=300, seed=7)
    c = multirater_kappa(counts, method="randolph", n_bootstrap=300, seed=8)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high) != (c.ci_low, c.ci_high)
    assert a.seed == 7 and a.ci_method == "percentile_bootstrap"


def test_multirater_input_errors():
    with pytest.raises(InputError, match="same number"):
        multirater_kappa([[2, 1], [3, 0], [1, 1]])
    with pytest.raises(InputError, match="missing ratings"):
        category_counts([[1, None], [1, 2], [2, 2]])


def test_two_rater_free_marginal_analytic_interval():
    # two raters, 3 categories: 8 subjects agree, 2 disagree → P̄ = 0.8, κ_free = (0.8 − 1/3)/(2/3) = 0.7
    counts = [[2, 0, 0]] * 4 + [[0, 2, 0]] * 2 + [[0, 0, 2]] * 2 + [[1, 1, 0], [0, 1, 1]]
    r = multirater_kappa(counts, method="randolph", ci="two_rater_analytic")
    assert r.kappa == pytest.approx(0.7)
    half = 1.959964 * np.sqrt(0.8 * 0.2 / 10) / (2 / 3)
    assert (r.ci_low, r.ci_high) == pytest.approx((0.7 - half, 0.7 + half), abs=1e-6)
    with pytest.raises(InputError, match="exactly 2 raters"):
        multirater_kappa(counts, method="fleiss", ci="two_rater_analytic")
