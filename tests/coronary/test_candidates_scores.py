"""Candidates and scores on tiny hand-made volumes: every number computed by hand (SCORING.md A.3–A.4, A.9)."""

from __future__ import annotations

import numpy as np
import pytest

from vascalc.calcium.policies import CLASSIC_BANDS
from vascalc.coronary.candidates import find_candidates
from vascalc.coronary.score import artery_scores, cluster_scores, risk_band

SPACING = (3.0, 0.5, 0.5)


def _volume() -> np.ndarray:
    """5×40×40 at 40 HU with three lesions and a speck (pixel area 0.25 mm²)."""
    hu = np.full((5, 40, 40), 40, dtype=np.int16)
    hu[1, 5:7, 5:7] = 250            # A: 4 px = 1.00 mm² (kept: inclusive), peak 250 → weight 2 → 2.0
    hu[1, 20, 20] = 500              # speck: 0.25 mm² < 1 mm² → dropped whatever its HU
    hu[2, 10:13, 25:28] = 150        # C: 9 px = 2.25 mm², peak 450 → weight 4 → 9.0
    hu[2, 11, 26] = 450
    hu[3, 10:13, 25:28] = 199        # C continues one slice down: 2.25 mm², peak 199 → weight 1 → 2.25
    return hu


def _all(hu):
    box = tuple(slice(0, n) for n in hu.shape)
    return box, np.ones(hu.shape, dtype=bool)


def test_hand_computed_agatston_volume_and_specks():
    hu = _volume()
    box, zone = _all(hu)
    cand = find_candidates(hu, box, zone, SPACING, 130.0)
    assert cand.n == 2                                   # A and C (C spans two slices: one 3-D cluster)
    assert cand.n_small_2d == 1                          # the speck
    per = cluster_scores(cand.clusters, cand.lesions_2d, cand.n, hu, SPACING, CLASSIC_BANDS)
    assert sorted(per["agatston_raw"][1:].tolist()) == pytest.approx([2.0, 11.25])
    assert per["n_voxels"][1:].sum() == 4 + 9 + 9
    arteries, total = artery_scores(per, np.array([0, 1, 2]), SPACING, "none", False, None)
    assert total.agatston_raw == pytest.approx(13.25)
    assert total.calcium_volume_mm3 == pytest.approx(22 * 0.75)
    assert total.mass_mg is None                          # no calibration: no silent mass (A.6)
    assert total.n_lesions == 2 and total.n_lesions_2d == 3
    # artery 1 holds the cluster labelled first in raster order (A), artery 2 the other (C)
    assert {a.name: a.agatston_raw for a in arteries} == pytest.approx({"rca": 2.0, "lad": 11.25, "lcx": 0.0})
    assert total.risk.cac_drs_n == 2 and total.risk.cac_drs_a == "A1"


def test_threshold_is_inclusive_and_strict_option():
    hu = np.full((3, 20, 20), 40, dtype=np.int16)
    hu[1, 5:9, 5:9] = 130
    box, zone = _all(hu)
    assert find_candidates(hu, box, zone, SPACING, 130.0).n == 1
    assert find_candidates(hu, box, zone, SPACING, 130.0, strict=True).n == 0


def test_bone_mostly_outside_the_zone_is_removed():
    hu = np.full((4, 60, 60), 40, dtype=np.int16)
    hu[1:3, 30, 2:58] = 700          # a rib crossing the zone edge: 4 of its 56 columns inside
    hu[2, 10:13, 10:13] = 400        # a plaque inside the zone
    zone = np.zeros(hu.shape, dtype=bool)
    zone[:, :, :14] = True
    zone[:, 26:34, 54:58] = True
    box = tuple(slice(0, n) for n in hu.shape)
    cand = find_candidates(hu, box, zone, SPACING, 130.0)
    assert cand.n == 1 and cand.n_bone_components == 1
    assert cand.clusters[2, 11, 11] == 1 and not cand.clusters[:, 30].any()


def test_increment_normalisation_and_mass_calibration():
    hu = _volume()
    box, zone = _all(hu)
    spacing = (1.5, 0.5, 0.5)
    cand = find_candidates(hu, box, zone, spacing, 130.0)
    per = cluster_scores(cand.clusters, cand.lesions_2d, cand.n, hu, spacing, CLASSIC_BANDS)
    _, total = artery_scores(per, np.array([0, 3, 3]), spacing, "increment", False, 0.8)
    assert total.agatston_3mm == pytest.approx(13.25 * 1.5 / 3.0)
    voxel = 1.5 * 0.25
    rel = (4 * 250 + 8 * 150 + 450 + 9 * 199) * voxel
    assert total.relative_mass_hu_mm3 == pytest.approx(rel)
    assert total.mass_mg == pytest.approx(0.8 * rel / 1000.0)


@pytest.mark.parametrize("score, band", [(0, "0"), (0.5, "1-99"), (99.99, "1-99"), (100, "100-399"),
                                         (399.9, "100-399"), (400, ">=400"), (2500, ">=400")])
def test_risk_bands(score, band):
    assert risk_band(score) == band
