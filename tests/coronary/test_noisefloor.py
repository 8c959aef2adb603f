"""Round 4: the noise floor of coronary presence (coronary/noisefloor.py, training.noise_limited_presence,
the bench's reader ceiling) — analytic probabilities, Monte-Carlo agreement, and a phantom whose
noise-free presence the function must reproduce."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from vascalc.bench.coronary import reader_ceiling
from vascalc.coronary.noisefloor import artery_presence_probability, presence_probability, presence_probability_mc
from vascalc.coronary.training import noise_limited_presence, truth_image_agatston
from vascalc.phantoms import make_chest_phantom
from vascalc.phantoms.types import PlaqueSpec


def test_presence_probability_by_hand():
    assert presence_probability([130.0], 25.0) == pytest.approx(0.5)
    assert presence_probability([130.0, 130.0], 25.0) == pytest.approx(0.75)
    # a pixel at 131 HU under 25 HU of noise: 1 − Φ(−1/25)
    assert presence_probability([131.0], 25.0) == pytest.approx(1 - norm.cdf(-1 / 25))
    assert presence_probability([100.0, 129.0], 0.0) == 0.0 and presence_probability([130.0], 0.0) == 1.0
    assert presence_probability([], 10.0) == 0.0
    assert presence_probability([np.nan, 130.0], 25.0) == pytest.approx(0.5)
    # thousands of voxels: no underflow (0.5^5000 in log space), and far-below voxels stay ≈ 0
    assert presence_probability(np.full(5000, 130.0), 10.0) == 1.0
    assert presence_probability(np.full(50, -100.0), 10.0) < 1e-30


def test_monte_carlo_agrees_with_the_formula_and_the_area_rule():
    values = np.array([[[120.0, 135.0], [110.0, 128.0]]])
    region = np.ones_like(values, dtype=bool)
    exact = presence_probability(values, 15.0)
    mc = presence_probability_mc(values, region, 15.0, pixel_area_mm2=1.5625, n_draws=4000, seed=1)
    assert mc == pytest.approx(exact, abs=0.03)
    assert mc == presence_probability_mc(values, region, 15.0, 1.5625, n_draws=4000, seed=1)  # deterministic
    # 0.5 mm² pixels: one pixel is never a lesion (A.3: ≥ 1 mm²); two in-plane neighbours at the
    # threshold make one with probability 1/4; the same two in adjacent slices never do
    one = np.full((1, 1, 1), 130.0)
    assert presence_probability_mc(one, np.ones((1, 1, 1), bool), 20.0, 0.5, n_draws=500) == 0.0
    pair = np.full((1, 1, 2), 130.0)
    assert presence_probability_mc(pair, np.ones((1, 1, 2), bool), 20.0, 0.5, n_draws=4000) == \
        pytest.approx(0.25, abs=0.025)
    stacked = np.full((2, 1, 1), 130.0)
    assert presence_probability_mc(stacked, np.ones((2, 1, 1), bool), 20.0, 0.5, n_draws=500) == 0.0
    # voxels outside the region never count
    assert presence_probability_mc(pair, np.zeros((1, 1, 2), bool), 20.0, 2.0) == 0.0


def test_artery_presence_probability_per_code():
    hu = np.array([[[131.0, 40.0, 129.0], [40.0, 40.0, 40.0]]])
    code = np.array([[[1, 0, 2], [0, 0, 0]]])
    p = artery_presence_probability(hu, code, 25.0, (2.5, 1.25, 1.25))
    assert set(p) == {1, 2}
    assert p[1] == pytest.approx(1 - norm.cdf(-1 / 25)) and p[2] == pytest.approx(1 - norm.cdf(1 / 25))
    # pixels of 0.7 × 0.7 mm (0.49 mm²): the Monte-Carlo path, where a lone pixel is no lesion
    p_small = artery_presence_probability(hu, code, 25.0, (2.5, 0.7, 0.7), n_draws=100)
    assert p_small == {1: 0.0, 2: 0.0}


@pytest.fixture(scope="module")
def lad_phantom():
    """Fixed-layout chest phantom, noise free, with one dense LAD plaque and no other calcium."""
    return make_chest_phantom(6, vary_anatomy=False, distractors="none", motion_blur_mm=0.0, noise_sd_hu=0.0,
                              plaques=[PlaqueSpec("lad", 25.0, 6.0, 180.0, 0.0, 1.0, 700.0)])


def test_noise_limited_presence_reproduces_the_reference(lad_phantom):
    clean = lad_phantom.volume.hu
    reference = truth_image_agatston(lad_phantom, clean)
    p0 = noise_limited_presence(lad_phantom, clean, 0.0)
    assert {a: p0[a] > 0 for a in p0} == {a: reference[a]["agatston_3mm"] > 0 for a in ("rca", "lad", "lcx")}
    assert p0 == {"rca": 0.0, "lad": 1.0, "lcx": 0.0}
    # a dense plaque stays visible under noise; arteries without plaque never become present
    p = noise_limited_presence(lad_phantom, clean, 25.0)
    assert p["lad"] > 0.999 and p["rca"] == 0.0 and p["lcx"] == 0.0


def test_reader_ceiling_by_hand():
    rows = pd.DataFrame({"rca_truth_present": [1, 1, 0, 0], "rca_reader_p_present": [0.9, 0.5, 0.1, 0.3]})
    assert reader_ceiling(rows, "rca") == pytest.approx({"reader_sensitivity": 0.7, "reader_specificity": 0.8})
    missing = reader_ceiling(rows.assign(total_truth_present=[1, 0, 1, 0]), "total")
    assert np.isnan(missing["reader_sensitivity"]) and np.isnan(missing["reader_specificity"])
