"""Round-3 lesion context features with known answers: plate vs tube, fat on each side, vessel
direction, and the ellipsoid of the epicardial fat."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vascalc.coronary import context as C

SPACING = (1.0, 1.0, 1.0)


def _points(index: np.ndarray) -> np.ndarray:
    """Crop indices (z, y, x) → LPS mm (x, y, z) on a 1 mm identity grid."""
    return np.asarray(index, dtype=float)[:, ::-1]


def _covariance_of(mask: np.ndarray) -> np.ndarray:
    labels = mask.astype(np.int64)
    z, y, x = np.nonzero(mask)
    _, _, cov = C.weighted_covariance(labels[z, y, x], _points(np.stack([z, y, x], axis=1)), 1)
    return cov


def test_weighted_covariance_matches_numpy():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(500, 3)) * [1.0, 2.0, 3.0]
    labels = rng.integers(1, 4, size=500)
    total, cen, cov = C.weighted_covariance(labels, pts, 3)
    for k in (1, 2, 3):
        sel = pts[labels == k]
        assert total[k - 1] == sel.shape[0]
        assert np.allclose(cen[k - 1], sel.mean(axis=0))
        assert np.allclose(cov[k - 1], np.cov(sel.T, bias=True))


def test_plate_versus_tube():
    zz, yy, xx = np.mgrid[0:21, 0:21, 0:21]
    # a disc of radius 6 mm, 1 voxel thick (pericardial plate) and a rod 9 mm long, 3 mm across (plaque)
    plate = (zz == 10) & ((yy - 10) ** 2 + (xx - 10) ** 2 <= 36)
    tube = (np.abs(zz - 10) <= 4) & ((yy - 10) ** 2 + (xx - 10) ** 2 <= 1)
    shapes = C.shape_axes(np.concatenate([_covariance_of(plate), _covariance_of(tube)]), SPACING)
    # disc: eigenvalues (0 + voxel 1/12) and ≈ R²/4 → plate index ≈ √(9/(1/12)) ≈ 10; rod: ≈ 1
    assert shapes.plate_index[0] > 5.0 and shapes.plate_index[1] < 1.3
    assert shapes.tube_index[1] > 2.5 and shapes.tube_index[0] < 1.3
    assert shapes.thickness_mm[0] == pytest.approx(1.0, rel=1e-9)     # one 1 mm voxel thick
    # the rod's long axis is z (LPS index 2), the plate's normal too
    assert abs(shapes.main_axis[1, 2]) == pytest.approx(1.0, abs=1e-6)
    assert abs(shapes.eigenvectors[0, 2, 0]) == pytest.approx(1.0, abs=1e-6)


def test_one_voxel_has_the_voxel_shape():
    shapes = C.shape_axes(np.zeros((1, 3, 3)), (3.0, 1.0, 1.0))
    assert np.allclose(shapes.eigenvalues_mm2[0], [1 / 12, 1 / 12, 9 / 12])
    assert shapes.plate_index[0] == pytest.approx(1.0)


def test_side_fat_fractions_plate_outside_fat():
    """Heart below z = 10 (surface distance = z − 10); fat from z 10 to 16; a lesion at z 13 inside
    the fat has fat on both sides, a lesion at z 18 (outside the fat, in soft tissue) only inside."""
    shape = (30, 20, 40)
    z = np.arange(shape[0])[:, None, None] * np.ones(shape)
    surface = (z - 10.0).astype(np.float32)
    fat = (z >= 10) & (z <= 16)
    clusters = np.zeros(shape, dtype=np.int32)
    clusters[13, 9:11, 5:8] = 1
    clusters[18, 9:11, 30:33] = 2
    near, dist = C.nearest_lesion(clusters, SPACING)
    lesion_surface = np.array([3.0, 8.0])
    inner, outer = C.side_fat_fractions(near, dist, clusters, 2, fat, surface, lesion_surface, shell_mm=3.0)
    assert inner[0] == pytest.approx(1.0) and outer[0] == pytest.approx(1.0)
    # lesion 2: inner side reaches z 15–17, fat at 15 and 16 only; outer side z 19–21: no fat
    assert 0.3 < inner[1] < 1.0 and outer[1] == 0.0


def test_nearest_lesion_distances():
    clusters = np.zeros((1, 1, 10), dtype=np.int32)
    clusters[0, 0, 0] = 1
    clusters[0, 0, 9] = 2
    near, dist = C.nearest_lesion(clusters, (1.0, 1.0, 2.0))
    assert near[0, 0].tolist() == [1] * 5 + [2] * 5
    assert dist[0, 0].tolist() == [0, 2, 4, 6, 8, 8, 6, 4, 2, 0]


@pytest.mark.parametrize("runs", ["vertical", "around"])
def test_vessel_direction_in_the_fat_layer(runs):
    """A soft-tissue tube in a fat layer over a flat 'heart' face (x < 5): its axis is recovered.
    LAD-like: along z; LCX-like: along y."""
    shape = (31, 31, 20)
    zz, yy, xx = np.mgrid[0:shape[0], 0:shape[1], 0:shape[2]]
    surface = (xx - 5.0).astype(np.float32)           # heart for x < 5, surface distance along x
    hu = np.where(xx < 5, 40.0, -100.0)
    if runs == "vertical":
        tube = (yy - 15) ** 2 + (xx - 9) ** 2 <= 4
    else:
        tube = (zz - 15) ** 2 + (xx - 9) ** 2 <= 4
    hu = np.where(tube, 40.0, hu)
    clusters = np.zeros(shape, dtype=np.int32)
    clusters[14:17, 14:17, 10:12] = 1
    hu[clusters > 0] = 400.0
    fat = C.fat_mask(hu)
    near, dist = C.nearest_lesion(clusters, SPACING)
    axis, linear, count = C.vessel_direction(near, dist, 1, fat, surface, np.array([5.5]), _points, radius_mm=8.0)
    expected = np.array([0.0, 0.0, 1.0]) if runs == "vertical" else np.array([0.0, 1.0, 0.0])  # LPS x, y, z
    assert abs(axis[0] @ expected) > 0.98
    assert linear[0] > 2.0 and count[0] > 50
    vertical, along, around = C.direction_components(axis, np.array([[9.0, 15.0, 15.0]]), np.array([0.0, 15.0, 15.0]),
                                                     np.array([0.0, 0.0, -1.0]))
    assert vertical[0] == pytest.approx(along[0])
    # around the 'heart' centre (to the lesion's right in x) the horizontal tangent is y
    assert (around[0] > 0.98) == (runs == "around") and (vertical[0] > 0.98) == (runs == "vertical")


def test_fit_ellipsoid_recovers_a_rotated_ellipsoid():
    rng = np.random.default_rng(3)
    d = rng.normal(size=(3000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    semi = np.array([55.0, 45.0, 62.0])
    rot = Rotation.from_euler("xyz", [20.0, -10.0, 35.0], degrees=True).as_matrix()
    centre = np.array([12.0, -20.0, -85.0])
    pts = centre + (d * semi) @ rot.T
    fit = C.fit_ellipsoid(pts)
    assert fit is not None
    c, s, vectors = fit
    assert np.allclose(c, centre, atol=1e-6)
    order = np.argsort(s)
    assert np.allclose(s[order], np.sort(semi), atol=1e-6)
    # the longest fitted axis is the rotated third axis (sign-free)
    assert abs(vectors[:, order[-1]] @ rot[:, 2]) == pytest.approx(1.0, abs=1e-9)
    assert C.fit_ellipsoid(pts[:5]) is None


def test_fat_envelope_of_a_fat_shell():
    """A 6 mm fat shell around an ellipsoidal 'heart' tilted 20° → centre and long axis recovered."""
    shape = (80, 80, 80)
    zz, yy, xx = np.mgrid[0:shape[0], 0:shape[1], 0:shape[2]].astype(float)
    rot = Rotation.from_euler("y", 20.0, degrees=True).as_matrix()
    rel = np.stack([xx - 40, yy - 41, zz - 39], axis=-1) @ rot          # LPS x, y, z in the heart's frame
    r_heart = np.sqrt((rel[..., 0] / 22) ** 2 + (rel[..., 1] / 20) ** 2 + (rel[..., 2] / 30) ** 2)
    r_fat = np.sqrt((rel[..., 0] / 28) ** 2 + (rel[..., 1] / 26) ** 2 + (rel[..., 2] / 36) ** 2)
    heart = r_heart <= 1.0
    fat = ~heart & (r_fat <= 1.0)
    from vascalc.coronary.assign import signed_surface_distance_mm

    surface = signed_surface_distance_mm(heart, SPACING)
    env = C.fat_envelope(fat, surface, _points)
    assert env is not None
    assert np.allclose(env.centre_lps_mm, (40.0, 41.0, 39.0), atol=0.5)
    axis = rot[:, 2]
    assert abs(np.asarray(env.long_axis) @ axis) > np.cos(np.radians(3.0))
    assert env.long_axis[2] < 0                                      # base → apex: inferior
    inside, outside = env.ellipsoidal_radius(np.array([[40.0, 41.0, 39.0], [40.0, 41.0, 75.0]]))
    assert inside == pytest.approx(0.0, abs=0.05) and outside > 1.0
    assert C.fat_envelope(np.zeros(shape, dtype=bool), surface, _points) is None


def test_pericardial_plate_versus_coronary_plaque_on_the_phantom():
    """A development-cohort chest phantom (seed 500000: varied anatomy, a pericardial calcification
    2–4 mm beyond the epicardial fat, RCA and LAD plaques): the distractor candidates lie outside
    the fat envelope (radius > 1.05) and the pericardial one is a plate; the coronary ones lie
    within it. Features as the pipeline computes them (``result.features``)."""
    from vascalc.coronary.assign import FEATURES
    from vascalc.coronary.training import cluster_truth, make_case
    from vascalc.workflows.coronary import score_coronary

    phantom = make_case(500_000)
    assert "pericardium" in {d["kind"] for d in phantom.truth["distractors"]}
    result = score_coronary(phantom.volume, segmenter="builtin", model="rules")
    classes, distractor = cluster_truth(result.cluster_labels, result.cluster_box, phantom)
    radius = result.features[:, FEATURES.index("envelope_radius")]
    plate = result.features[:, FEATURES.index("plate_index")]
    coronary = classes > 0
    assert distractor.sum() >= 1 and coronary.sum() >= 2
    assert radius[distractor].min() > 1.05 > radius[coronary].max()
    assert radius[coronary].min() > 0.85                       # in the fat shell, not inside the heart
    assert plate[distractor].max() > 4.0 > 2.0 * plate[coronary].max()
