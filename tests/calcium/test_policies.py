"""Detection policies, weights and categories (SCORING.md A.2, A.4.1, A.9) against hand values."""

import json

import numpy as np
import pytest

from vascalc.calcium import (KV_TABLE, AdaptivePolicy, AgatstonPolicy, FixedHUPolicy, Window8bitPolicy,
                             adaptive_threshold, cac_drs_class, classic_band, density_weight, parse_method,
                             risk_categories, window8bit_equivalent_hu)
from vascalc.calcium.policies import kv_bands, to_8bit
from vascalc.errors import MethodError


def test_kv_table_is_verbatim():
    assert KV_TABLE == {70: (207, 318, 477, 636), 80: (177, 271, 408, 544), 100: (145, 222, 334, 446),
                        120: (130, 200, 300, 400), 135: (119, 183, 274, 364)}
    # the 80 kVp weight-2 edge is 271, not the 272 one scale factor would give
    assert KV_TABLE[80][1] != round(1.36 * 200)


@pytest.mark.parametrize("peak, weight", [(129, 0), (130, 1), (199, 1), (199.9, 1), (200, 2), (299, 2),
                                          (300, 3), (399, 3), (400, 4), (2000, 4)])
def test_density_weight_edges(peak, weight):
    assert int(density_weight(peak)) == weight


def test_kv_bands_selection_and_refusal():
    assert kv_bands(100, AgatstonPolicy())[0] == (145, 222, 334, 446)
    assert kv_bands(None, AgatstonPolicy())[0] == (130, 200, 300, 400)
    assert kv_bands(80, AgatstonPolicy(kv_adjust=False))[0] == (130, 200, 300, 400)
    with pytest.raises(MethodError, match="90 kVp"):
        kv_bands(90, AgatstonPolicy())
    assert kv_bands(90, AgatstonPolicy(bands_hu=(150, 230, 340, 450)))[0] == (150, 230, 340, 450)


def test_parse_method_forms():
    assert parse_method("agatston") == AgatstonPolicy()
    assert parse_method("hu=300") == FixedHUPolicy(threshold_hu=300.0)
    assert parse_method("window8bit") == Window8bitPolicy()
    w = parse_method("window8bit:lo=-1000,hi=1000,threshold=140,rounding=trunc")
    assert (w.lo_hu, w.hi_hu, w.threshold, w.rounding) == (-1000, 1000, 140, "trunc")
    a = parse_method("adaptive:k=2,scope=per_slice,stat=classic,floor=150")
    assert (a.k, a.scope, a.stat, a.floor_hu) == (2, "per_slice", "classic", 150)
    assert parse_method("agatston:strict=true").strict is True
    for bad in ("otsu", "hu=abc", "adaptive:q=3", "adaptive:scope=global", "window8bit:lo=5,hi=1"):
        with pytest.raises(MethodError):
            parse_method(bad)
    json.dumps(a.to_dict())


def test_window8bit_equivalent_hu_formula():
    # round, strict ">145": HU ≥ lo + 145.5·(hi − lo)/255  (SCORING.md A.2.4)
    assert window8bit_equivalent_hu(-1024, 1300, 145) == pytest.approx(-1024 + 145.5 * 2324 / 255)
    assert window8bit_equivalent_hu(-1024, 1300, 145) == pytest.approx(302.047, abs=0.001)
    assert window8bit_equivalent_hu(-1024, 1300, 145, "trunc") == pytest.approx(-1024 + 146 * 2324 / 255)
    # the formula agrees with the actual 8-bit mapping just below and at the equivalent HU
    for rounding in ("round", "trunc"):
        eq = window8bit_equivalent_hu(-1024, 1300, 145, rounding)
        values = to_8bit(np.array([eq - 1e-6, eq + 1e-6]), -1024, 1300, rounding)
        assert values[0] <= 145 < values[1]


def test_adaptive_threshold_by_hand():
    values = np.arange(1.0, 101.0)             # 1 … 100 HU
    policy = AdaptivePolicy(k=3, floor_hu=0)
    t, mu, sigma = adaptive_threshold(values, policy)
    q = 1 + 0.1587 * 99                         # numpy linear quantile of 1..100
    assert mu == 50.5 and sigma == pytest.approx(50.5 - q)
    assert t == pytest.approx(50.5 + 3 * (50.5 - q))
    t2, mu2, s2 = adaptive_threshold(values, AdaptivePolicy(k=2, stat="classic", floor_hu=0))
    assert mu2 == 50.5 and s2 == pytest.approx(np.std(values, ddof=1))
    assert t2 == pytest.approx(50.5 + 2 * np.std(values, ddof=1))
    assert adaptive_threshold(values / 2, AdaptivePolicy())[0] == 130.0   # floor wins (μ+3σ ≈ 76)


@pytest.mark.parametrize("score, band, extended, drs", [
    (0, "none", "none", "A0"), (10, "minimal", "minimal", "A1"), (10.4, "mild", "mild", "A1"),
    (99.9, "mild", "mild", "A1"), (100, "mild", "mild", "A2"), (100.1, "moderate", "moderate", "A2"),
    (299.9, "moderate", "moderate", "A2"), (300, "moderate", "moderate", "A3"), (400, "moderate", "moderate", "A3"),
    (400.5, "severe", "significant", "A3"), (1000.5, "severe", "very_significant", "A3")])
def test_risk_bands(score, band, extended, drs):
    assert classic_band(score) == band
    assert classic_band(score, extended=True) == extended
    assert cac_drs_class(score) == drs


def test_cac_drs_n_counts_calcified_coronaries():
    r = risk_categories(150, {"lad": 100, "lcx": 0, "rca": 50})
    assert (r.cac_drs_a, r.cac_drs_n, r.lm_separate) == ("A2", 2, False)
    assert risk_categories(5, {"aorta": 5}).cac_drs_n is None
