"""Round-2 partial-volume mechanisms: the ``mad`` spread and lumen ``core`` of ``adaptive`` (A.2.5
[T]), PV-only seed regions for calcium the threshold misses, and the wall/lumen layers of the PV
background in a contrast scan (A.7 [T]). Hand-built tubes with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from vascalc.calcium import ScoringOptions, parse_method, score_calcium
from vascalc.calcium.policies import adaptive_threshold
from vascalc.calcium.pv import pv_seed_regions
from vascalc.calcium.roi import eroded_lumen
from vascalc.errors import MethodError
from vascalc.imaging.grid import Grid

SPACING = (1.0, 0.8, 0.8)


def _tube(seed: int, lumen_hu: float, wall_hu: float = 40.0, noise_sd: float = 10.0, shape=(24, 56, 56),
          lumen_r_vox: float = 10.0, wall_vox: float = 4.0):
    """Tube along z: lumen, a wall ring (both inside the vessel mask), fat outside, white noise."""
    rng = np.random.default_rng(seed)
    _, yy, xx = np.indices(shape)
    r = np.hypot(yy - shape[1] / 2 + 0.5, xx - shape[2] / 2 + 0.5)
    hu = np.where(r <= lumen_r_vox, lumen_hu, np.where(r <= lumen_r_vox + wall_vox, wall_hu, -100.0))
    vessel = (r <= lumen_r_vox + wall_vox).astype(np.int16)
    noisy = hu + rng.normal(0.0, noise_sd, size=shape)
    return noisy.astype(np.float32), hu, vessel, r, Grid(shape=shape, spacing_mm=SPACING)


# ---- adaptive: mad spread and lumen core ----------------------------------------------------------

def test_mad_spread_by_hand():
    # median 3; |x − 3| = 2, 1, 0, 1, 97 → MAD 1 → σ = 1.4826; T = 3 + 3σ, above the 0 floor
    t, mu, sigma = adaptive_threshold(np.array([1.0, 2.0, 3.0, 4.0, 100.0]), parse_method("adaptive:stat=mad;floor=0"))
    assert (mu, sigma) == pytest.approx((3.0, 1.4826))
    assert t == pytest.approx(3.0 + 3 * 1.4826)
    # the robust spread of A.2.5 reads the lower tail: Q0.1587 of the same sample is 1.63 → σ = 1.37;
    # with a long LOWER tail (wall in the sample) it explodes while MAD does not
    sample = np.r_[np.full(80, 350.0), np.full(20, 40.0)]
    _, _, s_robust = adaptive_threshold(sample, parse_method("adaptive"))
    _, _, s_mad = adaptive_threshold(sample, parse_method("adaptive:stat=mad"))
    assert s_robust == pytest.approx(310.0) and s_mad == 0.0


def test_policy_parameters_are_validated_and_semicolon_separated():
    p = parse_method("adaptive:stat=mad;core=0.5")
    assert (p.stat, p.core) == ("mad", 0.5)
    assert parse_method("adaptive").core == 0.0          # A.2.5 as written by default
    with pytest.raises(MethodError):
        parse_method("adaptive:core=1.2")
    with pytest.raises(MethodError):
        parse_method("adaptive:stat=mode")


def test_lumen_core_keeps_only_the_centre():
    _, _, vessel, r, _ = _tube(0, 350.0)
    box = ndi.find_objects(vessel)[0]
    keep, sub = eroded_lumen(vessel, 1, box, SPACING, 2.0, core_fraction=0.5)
    rr = r[sub][keep]
    # radius 14 voxels = 11.2 mm: the core is d ≥ 5.6 mm from the edge, i.e. r ≤ 7 voxels (+ voxel rounding)
    assert rr.max() <= 7.0 + 0.75 and rr.min() < 1.0
    keep0, _ = eroded_lumen(vessel, 1, box, SPACING, 2.0)
    assert r[sub][keep0].max() > 11.0                     # the plain 2 mm erosion keeps wall voxels


def test_adaptive_threshold_with_wall_in_the_mask():
    hu, _, vessel, _, grid = _tube(1, 350.0, noise_sd=10.0)
    plain = score_calcium(hu, vessel, {1: "aorta"}, grid, "adaptive").thresholds["aorta"]["threshold_hu"]
    fixed = score_calcium(hu, vessel, {1: "aorta"}, grid, "adaptive:stat=mad;core=0.5").thresholds["aorta"]
    assert plain > 800.0                                  # the wall in the sample inflates σ
    assert fixed["threshold_hu"] == pytest.approx(350.0 + 3 * 10.0, abs=6.0)
    assert fixed["core"] == 0.5 and fixed["stat"] == "mad"


# ---- PV-only seed regions --------------------------------------------------------------------------

def test_seed_recovers_a_plaque_below_the_threshold():
    hu, _, vessel, r, grid = _tube(2, 40.0, noise_sd=5.0, shape=(24, 64, 64), lumen_r_vox=8.0, wall_vox=10.0)
    # a 3×6×6-voxel plaque of 110 HU in the wall (resolved: it shows a plateau): under 130 HU, so
    # no threshold voxel at all
    block = (slice(10, 13), slice(16, 22), slice(29, 35))
    assert np.all((r[block] > 8) & (r[block] <= 18))
    hu[block] += 70.0
    n_vox = 3 * 6 * 6
    v = float(np.prod(SPACING))
    res = score_calcium(hu, vessel, {1: "aorta"}, grid, "agatston")
    s = res.structures[0]
    assert s.calcium_volume_mm3 == 0.0 and s.agatston_raw == 0.0 and not res.lesions
    assert res.method["pv"]["seed"]["n_regions"] == 1
    # default reference (1 HU per mg/cm³): the plateau reads 110 HU → V = Σ(HU − 40)/(110 − 40)
    assert s.integrated_volume_mm3 == pytest.approx(n_vox * v, rel=0.10)
    assert s.integrated_mass_mg == pytest.approx(n_vox * v * 110.0 / 1000.0, rel=0.10)
    off = score_calcium(hu, vessel, {1: "aorta"}, grid, "agatston", ScoringOptions(pv_seed=False)).structures[0]
    assert off.integrated_volume_mm3 == 0.0
    # threshold scores never change with the seed step
    assert (off.calcium_volume_mm3, off.agatston_raw) == (s.calcium_volume_mm3, s.agatston_raw)


@pytest.mark.parametrize("seed", [3, 4, 5])
@pytest.mark.parametrize("lumen_hu", [40.0, 350.0])
def test_seed_adds_nothing_to_calcium_free_vessels(seed, lumen_hu):
    hu, _, vessel, _, grid = _tube(seed, lumen_hu, noise_sd=20.0)
    method = "agatston" if lumen_hu < 100 else "adaptive:stat=mad;core=0.5"
    s = score_calcium(hu, vessel, {1: "aorta"}, grid, method).structures[0]
    assert s.integrated_volume_mm3 <= 5.0


def test_seed_regions_by_hand():
    """Levels from the mask sample (median, 1.4826·MAD) and the rule 'not touching calcium'."""
    hu = np.zeros((5, 9, 9), dtype=np.float32)
    owner = np.ones(hu.shape, dtype=np.int16)
    mask = owner.copy()
    calcium = np.zeros(hu.shape, dtype=bool)
    hu[1:3, 1:3, 1:3] = 60.0                     # 8 voxels above 0 + max(3·0, 50): a seed region
    hu[3, 6:8, 6:8] = 60.0                       # 4 voxels touching calcium: that lesion's rim
    calcium[4, 6:8, 6:8] = True
    hu[4, 6:8, 6:8] = 500.0
    hu[0, 7, 0] = 60.0                           # 1 voxel: below the minimum size
    seeds = pv_seed_regions(hu, owner, mask, calcium, 1, sd_k=3.0, floor_hu=50.0, min_voxels=3)
    assert seeds.n == 1 and seeds.level_hu[0] == pytest.approx(50.0)
    assert int((seeds.labels == 1).sum()) == 8 and seeds.vessel.tolist() == [1]


# ---- wall/lumen layers of the PV background in CTA ---------------------------------------------------

def test_wall_plaque_next_to_a_contrast_lumen():
    """A 700 HU plaque in the wall of a 350 HU lumen, blurred: one inside median (≈ lumen) made its
    region's wall voxels look 300 HU dark and cancelled the plaque; two layers recover its mass."""
    _, clean, vessel, r, grid = _tube(6, 350.0, noise_sd=0.0)
    frac = np.zeros(clean.shape)
    block = (slice(8, 16), slice(14, 18), slice(24, 32))   # in the wall ring, next to the lumen
    frac[block] = ((r[block] > 10.0) & (r[block] <= 14.0)).astype(float)
    assert frac.sum() > 30
    img = np.where(frac > 0, 700.0, clean)
    img = ndi.gaussian_filter(img, (0.5, 0.6, 0.6), mode="nearest")
    img = img + np.random.default_rng(6).normal(0.0, 10.0, img.shape)
    v = float(np.prod(SPACING))
    true_mass = frac.sum() * v * 700.0 / 1000.0
    s = score_calcium(img.astype(np.float32), vessel, {1: "aorta"}, grid, "adaptive:stat=mad;core=0.5").structures[0]
    assert s.calcium_volume_mm3 > 0
    assert s.integrated_mass_mg == pytest.approx(true_mass, rel=0.10)
