"""Round-2 partial-volume mechanisms: the ``mad`` spread and lumen ``core`` of ``adaptive`` (A.2.5
[T]), PV-only seed regions for calcium the threshold misses, and the wall/lumen layers of the PV
background in a contrast scan (A.7 [T]). Hand-built tubes with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from vascalc.calcium import ScoringOptions, parse_method, score_calcium
from vascalc.calcium.background import group_median, signed_depth_mm, vessel_background
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


# ---- model-based background (calcium.background, the default PV background) -----------------------

def _rendered_tube(seed: int, lumen_hu: float, plaque_hu: float | None = None, noise_sd: float = 10.0,
                   thickness_mm: float = 1.2, arc_deg: float = 100.0, shape=(24, 56, 56), ss: int = 4):
    """A CT-like tube along z: lumen (r ≤ 7 mm), wall 45 HU (to 9 mm), fat −100 HU, anti-aliased by
    4×4 in-plane supersampling, 1 mm FWHM in-plane PSF and a 0.9 mm FWHM slice profile, white noise.
    ``plaque_hu``: a wall sector from the lumen surface outwards (``thickness_mm``, ``arc_deg``,
    slices 8–15) that replaces the wall. Returns (image, vessel mask, grid, true plaque mass mg at
    1 HU per mg/cm³, true plaque volume mm³)."""
    dy = SPACING[1]
    n = shape[1]
    c = (n * dy) / 2.0 + 0.13                                  # off-grid centre
    fine = (np.arange(n * ss) + 0.5) * dy / ss
    yy, xx = np.meshgrid(fine - c, fine - c, indexing="ij")
    r = np.hypot(yy, xx)
    theta = np.degrees(np.arctan2(yy, xx))

    def cover(mask):                                           # in-plane area fraction per voxel
        return mask.reshape(n, ss, n, ss).mean(axis=(1, 3))

    lumen, wall = cover(r <= 7.0), cover((r > 7.0) & (r <= 9.0))
    sector = cover((r > 7.0) & (r <= 7.0 + thickness_mm) & (np.abs(theta - 30.0) <= arc_deg / 2))
    sl = np.zeros(shape[0])
    sl[8:16] = 1.0
    base = lumen_hu * lumen + 45.0 * wall - 100.0 * (1.0 - lumen - wall)
    img = np.broadcast_to(base, shape).astype(np.float64).copy()
    mass = volume = 0.0
    if plaque_hu is not None:
        img += (plaque_hu - 45.0) * sl[:, None, None] * sector[None]
        volume = float(sector.sum() * sl.sum() * np.prod(SPACING))
        mass = volume * plaque_hu / 1000.0
    sig = 1.0 / 2.3548
    img = ndi.gaussian_filter(img, (0.9 / 2.3548 / SPACING[0], sig / dy, sig / dy), mode="nearest")
    img += np.random.default_rng(seed).normal(0.0, noise_sd, shape)
    vessel = np.broadcast_to((cover(r <= 9.0) >= 0.5), shape).astype(np.int16)
    return img.astype(np.float32), vessel, Grid(shape=shape, spacing_mm=SPACING), mass, volume


def test_group_median_by_hand():
    med, count = group_median(np.array([0, 0, 0, 2, 2]), np.array([5.0, 1.0, 3.0, 4.0, 8.0]), 4)
    assert count.tolist() == [3, 0, 2, 0]
    assert med[0] == 3.0 and med[2] == 6.0 and np.isnan(med[1]) and np.isnan(med[3])


def test_signed_depth_is_sub_voxel_for_a_voxelised_disc():
    """Distance to the smooth surface behind a voxelised disc (radius 7.3 mm, 0.8 mm pixels), within
    2 mm of it: unbiased (|mean| < 0.05 mm) with an SD of ≈ 0.1 mm, well below the staircase's."""
    shape = (6, 40, 40)
    _, yy, xx = np.indices(shape)
    rr = np.hypot((yy - 19.6) * 0.8, (xx - 19.3) * 0.8)
    inside = rr <= 7.3
    true = 7.3 - rr
    band = np.abs(true) < 2.0
    smooth = signed_depth_mm(inside, SPACING, reach_mm=3.0) - true
    stair = signed_depth_mm(inside, SPACING, reach_mm=3.0, staircase=True) - true
    assert abs(smooth[band].mean()) < 0.05 and smooth[band].std() < 0.12
    assert smooth[band].std() < 0.7 * stair[band].std()


def test_model_reproduces_a_calcium_free_contrast_tube():
    """Calcium-free tube: image − model is unbiased (mean within 1 HU over the vessel and its band)
    with a robust SD within 35 % of the 10 HU noise (the rest is the lumen edge seen through a
    voxelised mask), and the model records lumen, tissue and displaced-wall levels."""
    img, vessel, grid, _, _ = _rendered_tube(11, 350.0)
    box = ndi.find_objects(vessel)[0]
    near = np.where(ndi.distance_transform_edt(vessel == 0, sampling=SPACING) <= 4.0, 1, 0)
    bg = vessel_background(img, vessel, near, [box], SPACING, None, band_mm=2.0)
    assert bg.valid[0]
    assert 10.0 <= bg.residual_sd_hu[0] <= 13.5
    around = np.isfinite(bg.model_hu) & (near > 0)
    assert abs(float((img - bg.model_hu)[around].mean())) < 1.0
    assert bg.inside_hu[0] == pytest.approx(350.0, abs=3.0)
    assert bg.tissue_hu[0] == pytest.approx(-100.0, abs=5.0)
    assert bg.wall_hu[0] == 45.0                             # contrast: the soft-tissue wall


@pytest.mark.parametrize("plaque_hu,tolerance", [(900.0, 0.05), (700.0, 0.05), (500.0, 0.08)])
def test_model_mass_of_a_wall_plaque_in_a_contrast_lumen(plaque_hu, tolerance):
    """A blurred 1.2 mm wall plaque next to a 350 HU lumen: model-based PV mass within 5 % of truth
    (8 % at 500 HU, measured −6 %: the mask-derived depth is uncertain by ≈ 0.1 mm, which at the
    lumen edge (≈ 300 HU/mm) biases the model locally by a few HU over the plaque's region, a larger
    share of a fainter plaque's signal). The old compartments background is far off (layer split)."""
    img, vessel, grid, mass, _ = _rendered_tube(12, 350.0, plaque_hu)
    res = score_calcium(img, vessel, {1: "aorta"}, grid, "adaptive:stat=mad;core=0.5")
    s = res.structures[0]
    assert res.method["pv"]["background"] == "model"
    assert res.method["pv"]["background_model"]["vessels"]["aorta"]["valid"]
    assert s.integrated_mass_mg == pytest.approx(mass, rel=tolerance)
    # volume fraction over the same per-voxel background (one ring value over lumen + wall + fat went
    # negative here: −48 to −79 mg); its 800 HU reference object makes it +9 % at 900 HU, +2 % at 500
    assert s.volume_fraction_mass_mg == pytest.approx(mass, rel=0.12)


def test_plaque_darker_than_the_lumen_is_found_by_the_model_only():
    """A 250 HU plaque in the wall of a 350 HU lumen: no threshold above the lumen sees it (no lesion),
    the model's residual does (a PV-only region) and its mass is within 10 %; the intensity seeds
    of the compartments background find nothing."""
    img, vessel, grid, mass, _ = _rendered_tube(13, 350.0, 250.0, thickness_mm=1.5, arc_deg=120.0)
    res = score_calcium(img, vessel, {1: "aorta"}, grid, "adaptive:stat=mad;core=0.5")
    s = res.structures[0]
    assert s.calcium_volume_mm3 == 0.0 and not res.lesions
    assert res.method["pv"]["seed"]["n_regions"] >= 1
    assert s.integrated_mass_mg == pytest.approx(mass, rel=0.10)
    old = score_calcium(img, vessel, {1: "aorta"}, grid, "adaptive:stat=mad;core=0.5",
                        ScoringOptions(pv_background="compartments")).structures[0]
    assert old.integrated_mass_mg == 0.0


@pytest.mark.parametrize("seed", [21, 22, 23])
@pytest.mark.parametrize("lumen_hu", [40.0, 350.0])
def test_model_adds_nothing_to_calcium_free_vessels(seed, lumen_hu):
    img, vessel, grid, _, _ = _rendered_tube(seed, lumen_hu, noise_sd=20.0)
    method = "agatston" if lumen_hu < 100 else "adaptive:stat=mad;core=0.5"
    s = score_calcium(img, vessel, {1: "aorta"}, grid, method).structures[0]
    assert s.integrated_volume_mm3 <= 5.0


def test_model_is_the_default_and_the_old_backgrounds_stay_selectable():
    assert ScoringOptions().pv_background == "model"
    for name in ("compartments", "inpaint", "median", "mean"):
        assert ScoringOptions(pv_background=name).pv_background == name
    with pytest.raises(MethodError):
        ScoringOptions(pv_background="radial")


def test_model_scores_are_deterministic_and_keep_the_classic_scores():
    img, vessel, grid, _, _ = _rendered_tube(14, 40.0, 600.0)
    a = score_calcium(img, vessel, {1: "aorta"}, grid, "agatston")
    b = score_calcium(img, vessel, {1: "aorta"}, grid, "agatston")
    old = score_calcium(img, vessel, {1: "aorta"}, grid, "agatston", ScoringOptions(pv_background="compartments"))
    sa, sb, so = a.structures[0], b.structures[0], old.structures[0]
    assert sa.integrated_mass_mg == sb.integrated_mass_mg and sa.integrated_volume_mm3 == sb.integrated_volume_mm3
    # the background only changes the PV scores: threshold volume, Agatston and lesions are the same
    assert (sa.calcium_volume_mm3, sa.agatston_raw, sa.n_clusters_3d) == (so.calcium_volume_mm3, so.agatston_raw,
                                                                          so.n_clusters_3d)
    assert sa.calcium_volume_mm3 > 0


def test_local_offset_removes_a_coherent_model_error(monkeypatch):
    """Round 4: a calcium-free model that is 25 HU too low around a plaque (a tapering lumen, an organ
    on one side) would add 25 HU × |R| to the PV mass; the ring just outside the region reads that
    offset and removes it: the mass moves < 2 % (+11 % with the offset switched off)."""
    from dataclasses import replace

    from vascalc.calcium import pv

    img, vessel, grid, mass, _ = _rendered_tube(15, 350.0, 700.0)
    box = ndi.find_objects(vessel)[0]
    near = np.where(ndi.distance_transform_edt(vessel == 0, sampling=SPACING) <= 4.0, 1, 0).astype(np.int16)
    clusters, n = ndi.label(img > 500.0)
    assert n == 1
    cand = ndi.binary_dilation(clusters > 0)
    bg = vessel_background(img, vessel, near, [box], SPACING, cand, band_mm=2.0)

    def pv_mass(bias_hu: float) -> float:
        model = replace(bg, model_hu=bg.model_hu - bias_hu)
        res = pv.cluster_pv(img, clusters, 1, np.array([0, 1]), near, None, cand, SPACING, 1.2, 2.0, 800.0, 800.0,
                            "model", min_region_voxels=1.0, mask_vessel=vessel, near_vessel=near, model=model)
        return float(res.mass_mg[0])

    base = pv_mass(0.0)
    assert base == pytest.approx(mass, rel=0.10)
    assert pv_mass(25.0) == pytest.approx(base, rel=0.02)
    monkeypatch.setattr(pv, "LOCAL_OFFSET", False)
    assert pv_mass(25.0) / pv_mass(0.0) - 1.0 > 0.08


def test_junction_and_cap_voxels_grow_a_calcification_but_never_seed_one():
    """Round 4: half of a 700 HU wall plaque lies in a zone marked as a branch junction. There the
    residual is scored against the zone's own spread (joining at ZONE_GROW_K_SD of it) and capped just
    below the seed level: the plaque's voxels stay above the growth level (a cluster found in the tube
    grows over them) but none reaches the seed level, while the tube half does."""
    from dataclasses import replace

    from vascalc.calcium.background import RESIDUAL_K_SD, RESIDUAL_SEED_K_SD, residual_detection

    img, vessel, grid, _, _ = _rendered_tube(16, 350.0, 700.0)
    box = ndi.find_objects(vessel)[0]
    near = np.where(ndi.distance_transform_edt(vessel == 0, sampling=SPACING) <= 4.0, 1, 0).astype(np.int16)
    cand = ndi.binary_dilation(img > 500.0)
    bg = vessel_background(img, vessel, near, [box], SPACING, cand, band_mm=2.0)
    junction = np.zeros(img.shape, dtype=bool)
    junction[:12] = True                                     # slices 8–11 of the plaque's 8–15
    score, _ = residual_detection(img, replace(bg, junction=junction), vessel)
    plaque = img > 500.0
    in_zone, in_tube = score[plaque & junction], score[plaque & ~junction]
    assert in_zone.max() < RESIDUAL_SEED_K_SD and np.median(in_zone) > RESIDUAL_K_SD
    assert in_tube.max() > RESIDUAL_SEED_K_SD


def _tube_beside_an_organ(seed: int, lumen_hu: float, organ_hu: float = 80.0, shape=(24, 56, 56), ss: int = 4):
    """:func:`_rendered_tube` without plaque, with an organ (``organ_hu``) filling the fat on one side
    (x beyond the wall's outer surface, |y| < 5 mm), touching the wall: no fat plane there."""
    dy = SPACING[1]
    n = shape[1]
    c = (n * dy) / 2.0 + 0.13
    fine = (np.arange(n * ss) + 0.5) * dy / ss
    yy, xx = np.meshgrid(fine - c, fine - c, indexing="ij")
    r = np.hypot(yy, xx)

    def cover(mask):
        return mask.reshape(n, ss, n, ss).mean(axis=(1, 3))

    lumen, wall = cover(r <= 7.0), cover((r > 7.0) & (r <= 9.0))
    organ = cover((r > 9.0) & (xx > 0) & (np.abs(yy) < 5.0))
    base = lumen_hu * lumen + 45.0 * wall + organ_hu * organ - 100.0 * (1.0 - lumen - wall - organ)
    img = ndi.gaussian_filter(np.broadcast_to(base, shape).astype(np.float64),
                              (0.9 / 2.3548 / SPACING[0], 1 / 2.3548 / dy, 1 / 2.3548 / dy), mode="nearest")
    img += np.random.default_rng(seed).normal(0.0, 10.0, shape)
    vessel = np.broadcast_to((cover(r <= 9.0) >= 0.5), shape).astype(np.int16)
    side = np.broadcast_to(cover((r > 7.5) & (r <= 9.0) & (xx > 0) & (np.abs(yy) < 4.0)) > 0.5, shape)
    return img.astype(np.float32), vessel, side


@pytest.mark.parametrize("lumen_hu", [40.0, 350.0])
def test_model_outer_wall_beside_a_touching_organ(monkeypatch, lumen_hu):
    """Round 5: the outer wall next to an organ touching the vessel (80 HU instead of −100 HU fat)
    is brightened by the blur; the circumferential inside profile alone leaves a residual of tens of
    HU there (a false PV-only seed in calcium-free phantom aortas), the side correction brings it
    within a few HU."""
    import vascalc.calcium.background as background

    img, vessel, side = _tube_beside_an_organ(5, lumen_hu)
    box = ndi.find_objects(vessel)[0]
    near = np.where(ndi.distance_transform_edt(vessel == 0, sampling=SPACING) <= 4.0, 1, 0)
    outer = side & (vessel > 0)
    means = {}
    for on in (False, True):
        monkeypatch.setattr(background, "SIDE_EDGE", on)
        bg = vessel_background(img, vessel, near, [box], SPACING, None, band_mm=2.0)
        d = bg.depth_mm
        sel = outer & (d > 0) & (d < 0.6)
        means[on] = float((img - bg.model_hu)[sel].mean())
    assert means[False] > 20.0
    assert abs(means[True]) < 5.0
