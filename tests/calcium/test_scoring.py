"""score_calcium against hand-computed values (SCORING.md A.1–A.8, E.9)."""

import json

import numpy as np
import pytest

from vascalc.anatomy.regions import RegionSplit
from vascalc.calcium import ScoringOptions, score_calcium
from vascalc.errors import MethodError
from vascalc.imaging.grid import Grid


def score(hu, vessels, spacing=(0.5, 0.5, 0.5), names=None, **kw):
    grid = kw.pop("grid", None) or Grid(shape=hu.shape, spacing_mm=spacing)
    return score_calcium(hu, vessels, names or {1: "aorta"}, grid, **kw)


def e9_volume(value=400):
    hu = np.zeros((2, 4, 4), dtype=np.int16)
    hu[:, 0:2, :] = value                      # a 4×2 block per slice (8 voxels)
    return hu, np.ones(hu.shape, dtype=np.int32)


def test_e9_example_1_agatston_volume_mass():
    hu, v = e9_volume()
    r = score(hu, v, options=ScoringOptions(slice_normalisation="none", mass_calibration_mg_per_cm3_per_hu=0.75))
    t = r.total
    assert t.agatston_raw == 16.0 and t.agatston_3mm == 16.0
    assert t.calcium_volume_mm3 == pytest.approx(2.0)
    assert t.mass_mg == pytest.approx(0.6)            # c_HA·ΣHU·v/1000 = 0.75·400·2/1000
    assert t.relative_mass_hu_mm3 == pytest.approx(800.0)
    assert (t.n_lesions_2d, t.n_clusters_3d) == (2, 1)
    inc = score(hu, v, options=ScoringOptions(slice_normalisation="increment")).total
    assert inc.agatston_raw == 16.0 and inc.agatston_3mm == pytest.approx(16 * 0.5 / 3)   # 2.6667
    assert inc.mass_mg is None                          # never a silent default (A.6)


@pytest.mark.parametrize("kvp, value", [(135, 260), (120, 280), (100, 310), (80, 400)])
def test_e9_example_2_kv_bands(kvp, value):
    hu = np.zeros((2, 4, 4), dtype=np.int16)
    hu[:, 0:4, 0:3] = value                             # 4×3 block, 3.0 mm² per slice
    r = score(hu, np.ones(hu.shape, np.int32), kvp=kvp, options=ScoringOptions(slice_normalisation="none"))
    assert r.total.agatston_raw == 12.0
    assert r.method["kv_row"] == kvp


@pytest.mark.parametrize("value, weight", [(129, 0), (130, 1), (199, 1), (200, 2), (299, 2), (300, 3),
                                           (399, 3), (400, 4)])
def test_weight_edges_and_inclusive_threshold(value, weight):
    hu = np.zeros((1, 6, 6), dtype=np.int16)
    hu[0, 1:3, 1:3] = value                              # 4 px = 1.0 mm²
    r = score(hu, np.ones(hu.shape, np.int32), options=ScoringOptions(slice_normalisation="none"))
    assert r.total.agatston_raw == pytest.approx(1.0 * weight)
    assert r.total.n_calcium_voxels == (4 if value >= 130 else 0)


def test_strict_threshold_drops_exactly_130():
    hu = np.zeros((1, 6, 6), dtype=np.int16)
    hu[0, 1:3, 1:3] = 130
    assert score(hu, np.ones(hu.shape, np.int32), method="agatston:strict=true").total.n_calcium_voxels == 0
    assert score(hu, np.ones(hu.shape, np.int32), options=ScoringOptions(strict=True)).total.n_calcium_voxels == 0


def test_minimum_area_three_vs_four_pixels():
    hu = np.zeros((1, 10, 10), dtype=np.int16)
    hu[0, 1, 1:4] = 300                                  # 3 px = 0.75 mm²: dropped
    hu[0, 6:8, 6:8] = 300                                # 4 px = 1.00 mm²: kept (inclusive)
    t = score(hu, np.ones(hu.shape, np.int32), options=ScoringOptions(slice_normalisation="none")).total
    assert t.n_lesions_2d == 1 and t.n_calcium_voxels == 4 and t.agatston_raw == 3.0


def test_connectivity_diagonal_pixels():
    hu = np.zeros((1, 8, 8), dtype=np.int16)
    hu[0, [1, 2, 3, 4], [1, 2, 3, 4]] = 300              # a diagonal of 4 px: one lesion only when 8-connected
    v = np.ones(hu.shape, np.int32)
    assert score(hu, v).total.n_lesions_2d == 1
    assert score(hu, v, options=ScoringOptions(connectivity_2d=4)).total.n_lesions_2d == 0


def test_anisotropic_spacing():
    hu = np.zeros((3, 8, 8), dtype=np.int16)
    hu[1, 2:4, 2:5] = 250                                # 6 px at 0.4 × 0.6 mm = 1.44 mm², weight 2
    r = score(hu, np.ones(hu.shape, np.int32), spacing=(2.0, 0.4, 0.6),
              options=ScoringOptions(slice_normalisation="none"))
    assert r.total.agatston_raw == pytest.approx(2 * 6 * 0.24)
    assert r.total.calcium_volume_mm3 == pytest.approx(6 * 2.0 * 0.24)
    inc = score(hu, np.ones(hu.shape, np.int32), spacing=(2.0, 0.4, 0.6)).total
    assert inc.agatston_normalisation == "increment" and inc.agatston_3mm == pytest.approx(2 * 1.44 * 2 / 3)
    # 3-mm series with 3-mm thickness: auto → none
    t3 = score(hu, np.ones(hu.shape, np.int32), spacing=(3.0, 0.4, 0.6), slice_thickness_mm=3.0).total
    assert t3.agatston_normalisation == "none"
    assert score(hu, np.ones(hu.shape, np.int32), spacing=(3.0, 0.4, 0.6),
                 slice_thickness_mm=5.0).total.agatston_normalisation == "increment"


def _phantom_lps():
    """A plaque-bearing tube, returned with its grid (LPS storage, identity direction)."""
    rng = np.random.default_rng(3)
    hu = rng.normal(40, 10, size=(12, 30, 30)).astype(np.int16)
    zz, yy, xx = np.indices(hu.shape)
    v = (((yy - 14) ** 2 + (xx - 12) ** 2) <= 36).astype(np.int32)
    hu[3:6, 9:12, 14:18] = 420
    hu[8, 18:21, 10:12] = 260
    return hu, v, Grid(hu.shape, (1.0, 0.7, 0.7), origin_lps_mm=(10.0, -5.0, 100.0))


def test_same_object_lps_vs_ras_storage_gives_same_scores():
    hu, v, grid = _phantom_lps()
    a = score(hu, v, grid=grid)
    # the same voxels stored with x and y reversed (RAS-like arrays) and z feet-first
    sx, sy, sz = grid.spacing_mm[2], grid.spacing_mm[1], grid.spacing_mm[0]
    nz, ny, nx = hu.shape
    origin = np.array(grid.origin_lps_mm) + np.array([(nx - 1) * sx, (ny - 1) * sy, (nz - 1) * sz])
    grid2 = Grid(hu.shape, grid.spacing_mm, tuple(origin), (-1, 0, 0, 0, -1, 0, 0, 0, -1))
    b = score(hu[::-1, ::-1, ::-1].copy(), v[::-1, ::-1, ::-1].copy(), grid=grid2)
    for field in ("agatston_raw", "agatston_3mm", "calcium_volume_mm3", "n_lesions_2d", "n_clusters_3d",
                  "integrated_mass_mg", "burden_fraction", "vessel_volume_mm3", "roi_volume_mm3"):
        assert getattr(a.total, field) == pytest.approx(getattr(b.total, field)), field
    assert a.total.agatston_raw > 0
    # lesions are the same objects at the same patient positions
    pa = sorted(tuple(np.round(l.centroid_lps_mm, 6)) for l in a.lesions)
    pb = sorted(tuple(np.round(l.centroid_lps_mm, 6)) for l in b.lesions)
    assert pa == pb
    # profile z_mm follows the patient axis: same (z_mm, area) pairs
    assert sorted((round(p[1], 6), p[2]) for p in a.total.profile) == sorted((round(p[1], 6), p[2]) for p in b.total.profile)


def test_nearest_vessel_split_and_ties():
    hu = np.zeros((1, 5, 12), dtype=np.int16)
    v = np.zeros(hu.shape, np.int32)
    v[0, :, 0:4] = 1                                     # vessel 1 at x 0–3
    v[0, :, 8:12] = 2                                    # vessel 2 at x 8–11
    hu[0, 1:4, 4:8] = 300                                # calcium in the gap x 4–7, 3 rows
    r = score(hu, v, spacing=(1.0, 1.0, 1.0), names={1: "iliac_artery_left", 2: "iliac_artery_right"},
              options=ScoringOptions(wall_mm=2.0, slice_normalisation="none"))
    left, right = r.structures
    # x=4,5 nearer vessel 1 (1, 2 mm), x=6,7 nearer vessel 2 (2, 1 mm); no ties here
    assert left.n_calcium_voxels == 6 and right.n_calcium_voxels == 6
    assert left.agatston_raw == 6 * 3 and right.agatston_raw == 6 * 3   # one lesion split into two parts
    assert r.total.n_lesions_2d == 2 and r.total.agatston_raw == 36
    # a tie (equal distance) goes to the lower label id
    v2 = np.zeros((1, 5, 11), np.int32)
    v2[0, :, 0:4] = 1
    v2[0, :, 7:11] = 2
    hu2 = np.zeros(v2.shape, np.int16)
    hu2[0, 1:4, 4:7] = 300                               # x=5 is 2 mm from both vessels
    r2 = score(hu2, v2, spacing=(1.0, 1.0, 1.0), names={1: "iliac_artery_left", 2: "iliac_artery_right"},
               options=ScoringOptions(wall_mm=2.0))
    assert [s.n_calcium_voxels for s in r2.structures] == [6, 3]


def test_bone_next_to_aorta_is_not_counted():
    hu = np.full((4, 30, 30), 40, dtype=np.int16)
    zz, yy, xx = np.indices(hu.shape)
    v = (((yy - 10) ** 2 + (xx - 15) ** 2) <= 25).astype(np.int32)
    bone = ((yy >= 16) & (yy < 26) & (xx >= 10) & (xx < 20))
    hu[bone] = 700                                       # vertebra one voxel outside the aorta mask
    hu[:, 5:7, 14:16] = 500                              # real wall calcium, far from bone
    opts = ScoringOptions(wall_mm=2.0)
    without = score(hu, v, spacing=(1.0, 1.0, 1.0), options=opts)
    with_bone = score(hu, v, spacing=(1.0, 1.0, 1.0), options=opts, bone_mask=bone)
    assert with_bone.total.n_calcium_voxels == 4 * 4     # only the wall calcium
    assert without.total.n_calcium_voxels > with_bone.total.n_calcium_voxels
    assert any("bone" in w for w in with_bone.warnings)


def _contrast_tube(lumen=300.0, sd=20.0, seed=0):
    rng = np.random.default_rng(seed)
    hu = rng.normal(40, 5, size=(20, 40, 40))
    zz, yy, xx = np.indices(hu.shape)
    r2 = (yy - 20) ** 2 + (xx - 20) ** 2
    v = (r2 <= 64).astype(np.int32)                      # radius 8 mm at 1 mm pixels
    hu[v > 0] = rng.normal(lumen, sd, size=int(v.sum()))
    return hu.round().astype(np.int16), v


def test_contrast_guard_refuses_agatston():
    hu, v = _contrast_tube()
    with pytest.raises(MethodError, match="--method adaptive"):
        score(hu, v, spacing=(1.0, 1.0, 1.0))
    forced = score(hu, v, spacing=(1.0, 1.0, 1.0), options=ScoringOptions(force=True))
    assert forced.method["contrast_guard"]["median_lumen_hu"] > 100
    assert any("overridden" in w for w in forced.warnings)


def test_adaptive_threshold_from_eroded_lumen_by_hand():
    hu, v = _contrast_tube()
    hu[10, 12:14, 14:17] = 600                           # wall calcium inside the mask edge
    r = score(hu, v, spacing=(1.0, 1.0, 1.0), method="adaptive")
    info = r.thresholds["aorta"]
    zz, yy, xx = np.indices(hu.shape)
    lumen = ((yy - 20) ** 2 + (xx - 20) ** 2) <= 36      # eroded by 2 mm: distance to outside > 2
    sample = hu[lumen].astype(float)
    mu = np.median(sample)
    sigma = mu - np.quantile(sample, 0.1587)
    assert info["n_lumen_voxels"] == lumen.sum()
    assert info["mu_hu"] == pytest.approx(mu) and info["sigma_hu"] == pytest.approx(sigma)
    assert info["threshold_hu"] == pytest.approx(max(130, mu + 3 * sigma))
    assert r.total.agatston_like is True
    assert r.structures[0].n_calcium_voxels == 6          # the plaque, no lumen noise
    per_slice = score(hu, v, spacing=(1.0, 1.0, 1.0), method="adaptive:scope=per_slice")
    rows = per_slice.thresholds["aorta"]["per_slice"]
    assert len(rows) == 20 and all(row[1] >= 130 for row in rows)


def test_adaptive_parent_fallback():
    hu, v = _contrast_tube()
    v[:, 34:36, 34:36] = 2                               # a thin iliac: no lumen after 2 mm erosion
    r = score(hu, v, spacing=(1.0, 1.0, 1.0), method="adaptive",
              names={1: "aorta", 2: "iliac_artery_left"})
    child = r.thresholds["iliac_artery_left"]
    assert child["used_parent"] is True and child["parent"] == "aorta"
    assert child["threshold_hu"] == pytest.approx(r.thresholds["aorta"]["threshold_hu"])


def test_window8bit_policy_counts_above_equivalent_hu():
    hu = np.zeros((1, 8, 8), dtype=np.int16)
    hu[0, 1:3, 1:3] = 303                                # 8-bit 145.60 → 146 > 145
    hu[0, 5:7, 5:7] = 302                                # 8-bit 145.495 → 145: not calcium
    r = score(hu, np.ones(hu.shape, np.int32), method="window8bit")
    assert r.total.n_calcium_voxels == 4
    assert r.thresholds["aorta"]["threshold_hu"] == pytest.approx(302.047, abs=1e-3)
    assert r.method["equivalent_threshold_hu"] == pytest.approx(302.047, abs=1e-3)


def test_fixed_hu_policy_and_agatston_like():
    hu, v = e9_volume(350)
    r = score(hu, v, method="hu=300", options=ScoringOptions(slice_normalisation="none"))
    assert r.total.n_calcium_voxels == 16 and r.total.agatston_like
    assert r.total.agatston_raw == 2 * 2.0 * 3
    assert score(hu, v, method="hu=351").total.n_calcium_voxels == 0


def test_burden_bounds_and_cluster_stats():
    hu, v, grid = _phantom_lps()
    r = score(hu, v, grid=grid)
    s = r.structures[0]
    assert 0 < s.burden_fraction <= 1 and s.burden_percent == pytest.approx(100 * s.burden_fraction)
    vox = 0.7 * 0.7 * 1.0
    assert s.calcium_volume_mm3 == pytest.approx(s.n_calcium_voxels * vox)
    assert sum(s.cluster_volumes_mm3) == pytest.approx(s.calcium_volume_mm3)
    assert s.cluster_volume_max_mm3 == max(s.cluster_volumes_mm3)
    assert s.calcium_hu_peak == 420
    # all-calcium vessel: burden exactly 1
    hu2, v2 = e9_volume()
    v2[:, 2:, :] = 0
    assert score(hu2, v2).structures[0].burden_fraction == pytest.approx(1.0)


def test_profile_and_region_split_parts_add_up():
    hu, v, grid = _phantom_lps()
    plane = grid.index_to_lps(np.array([7.0, 0, 0]))[2]  # between the two plaques (slices 3–5 and 8)
    split = RegionSplit("aorta", float(plane), "aorta_upper", "aorta_lower")
    r = score(hu, v, grid=grid, region_splits=[split])
    names = [s.name for s in r.structures]
    assert names == ["aorta", "aorta_upper", "aorta_lower"]
    whole, upper, lower = r.structures
    assert upper.n_calcium_voxels + lower.n_calcium_voxels == whole.n_calcium_voxels
    assert upper.agatston_raw + lower.agatston_raw == pytest.approx(whole.agatston_raw)
    assert upper.vessel_volume_mm3 + lower.vessel_volume_mm3 == pytest.approx(whole.vessel_volume_mm3)
    assert upper.n_calcium_voxels == 6 and lower.n_calcium_voxels == 36   # identity direction: S grows with z
    assert r.total.calcium_volume_mm3 == pytest.approx(whole.calcium_volume_mm3)   # parts not double counted
    prof = {row[0]: row for row in whole.profile}
    assert len(prof) == 12
    assert prof[4][2] == pytest.approx(12 * 0.49) and prof[4][3] == pytest.approx(12 * 0.49)
    assert sum(row[3] for row in whole.profile) == pytest.approx(whole.calcium_volume_mm3)


def test_lesion_ids_deterministic_and_json():
    hu, v, grid = _phantom_lps()
    a = score(hu, v, grid=grid)
    b = score(hu, v, grid=grid)
    assert np.array_equal(a.lesion_labels, b.lesion_labels)
    assert a.lesion_labels.dtype == np.uint16 and a.lesion_labels.shape == hu.shape
    assert [l.id for l in a.lesions] == [1, 2]
    first = [np.flatnonzero(a.lesion_labels.ravel() == l.id)[0] for l in a.lesions]
    assert first == sorted(first)                        # ordered by first voxel
    assert a.to_dict() == b.to_dict()
    text = json.dumps(a.to_dict())
    assert "NaN" not in text
    assert a.lesions[0].volume_mm3 == pytest.approx(36 * 0.49) and a.lesions[0].peak_hu == 420
    assert a.lesions[0].bbox_zyx == (3, 9, 14, 5, 11, 17)


def test_empty_vessel_flagged():
    hu, v = e9_volume()
    r = score(hu, v, names={1: "aorta", 5: "iliac_artery_left"})
    assert [s.present for s in r.structures] == [True, False]
    assert r.structures[1].agatston_raw == 0 and r.structures[1].burden_fraction is None


def test_resample3mm_slabs():
    hu = np.zeros((6, 6, 6), dtype=np.int16)
    hu[0:3, 1:3, 1:3] = 400                              # three 1-mm slices → one 3-mm slab at 400
    hu[3:6, 1:3, 1:3] = 200                              # slab 2: mean 200 → weight 2
    r = score(hu, np.ones(hu.shape, np.int32), spacing=(1.0, 1.0, 1.0),
              options=ScoringOptions(slice_normalisation="resample3mm"))
    assert r.total.agatston_3mm == pytest.approx(4 * 4 + 4 * 2)
    assert r.total.agatston_raw == pytest.approx(3 * 16 + 3 * 8)
    with pytest.raises(MethodError):
        score(hu, np.ones(hu.shape, np.int32), spacing=(0.7, 1.0, 1.0),
              options=ScoringOptions(slice_normalisation="resample3mm"))


def test_window8bit_per_slice_minmax_uses_imagej_scaling():
    hu = np.zeros((1, 8, 8), dtype=np.int16)
    hu[0, 0, 0] = -1000                                   # slice min
    hu[0, 7, 7] = 1047                                    # slice max: 256/(2047+1) = 0.125 per HU
    hu[0, 1:3, 1:3] = 168                                 # floor(1168·0.125) = 146 > 145
    hu[0, 4:6, 4:6] = 167                                 # floor(1167·0.125) = 145: not calcium
    r = score(hu, np.ones(hu.shape, np.int32), method="window8bit:per_slice_minmax=true")
    assert r.total.n_calcium_voxels == 4                  # the lone 1047 HU max pixel is < 1 mm²
    row = r.thresholds["aorta"]["per_slice"][0]
    assert row == [0, pytest.approx(-1000 + 146 * 2048 / 256)]


def test_mass_from_calibration_rods_and_options_record():
    from vascalc.calcium import CalibrationReference
    hu, v = e9_volume()
    rods = CalibrationReference((100.0, 400.0), (130.0, 520.0), water_hu=0.0)   # 1.3 HU per mg/cm³
    r = score(hu, v, calibration=rods, options=ScoringOptions(keep_calcium_mask=True))
    assert rods.mg_per_cm3_per_hu == pytest.approx(1 / 1.3)
    assert r.total.mass_mg == pytest.approx(800.0 / 1.3 / 1000.0)   # c·ΣHU·v/1000
    assert r.method["mass_calibration_mg_per_cm3_per_hu"] == pytest.approx(1 / 1.3)
    assert r.calcium_mask is not None and r.calcium_mask.sum() == 16
    assert r.method["options"]["wall_mm"] == 1.0 and r.method["policy"] == "agatston"
    roi = CalibrationReference.from_roi(hu.astype(float), {400.0: hu == 400}, water_hu=0.0)
    assert roi.mean_hu == (400.0,) and roi.mg_per_cm3_per_hu == pytest.approx(1.0)
