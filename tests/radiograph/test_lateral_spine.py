"""The analytic lateral-spine generator: chords against brute-force ray marching, truth by hand,
determinism, mirroring, resolution independence of the spine-frame patches, score spread."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vascalc.phantoms.lateral_spine import (
    ChainParams,
    _plaque_intervals,
    _rotation,
    chord_lengths,
    cylinder_body,
    ellipsoid,
    make_lateral_spine,
    shell_sector_chord,
)
from vascalc.phantoms.types import VertebraLandmark
from vascalc.radiograph.kauppila import SEGMENTS, score_intervals, spine_geometry


def _march(inside, dr, dc, half=80.0, n=16001):
    """Independent check: path length along x by sampling the indicator on a fine x grid."""
    x = np.linspace(-half, half, n)
    return np.array([inside(x, r, c).sum() * (x[1] - x[0]) for r, c in zip(dr, dc)])


def test_ellipsoid_chord_is_the_analytic_one():
    s = ellipsoid((0, 0, 0), (20.0, 10.0, 5.0), np.eye(3), 1.0)
    dr, dc = np.array([0.0, 5.0, 9.0, 11.0]), np.array([0.0, 2.0, 0.0, 0.0])
    expected = 2 * 20.0 * np.sqrt(np.clip(1 - (dr / 10) ** 2 - (dc / 5) ** 2, 0, None))
    assert np.allclose(chord_lengths(s, dr, dc), expected, atol=1e-9)


def test_rotated_cut_cylinder_chord_matches_ray_marching():
    rot = _rotation(np.deg2rad(12), np.deg2rad(7), np.deg2rad(20))
    s = cylinder_body((0, 0, 0), 22.0, 16.0, 13.0, rot, 1.0)
    e_lr, e_si, e_ant = rot[:, 0], rot[:, 1], rot[:, 2]

    def inside(x, r, c):
        p = np.stack([x, np.full_like(x, r), np.full_like(x, c)], axis=1)
        return ((p @ e_lr / 22.0) ** 2 + (p @ e_ant / 16.0) ** 2 <= 1) & (np.abs(p @ e_si) <= 13.0)

    rng = np.random.default_rng(0)
    dr, dc = rng.uniform(-16, 16, 25), rng.uniform(-18, 18, 25)
    assert np.allclose(chord_lengths(s, dr, dc), _march(inside, dr, dc), atol=0.03)


def test_plaque_shell_sector_chord_matches_ray_marching():
    R, t, alpha = 12.0, 1.0, np.deg2rad(40)

    def inside(x, r, u):  # r unused: the tube is straight along r
        rad = np.hypot(x, u)
        return (rad <= R) & (rad >= R - t) & (u > 0) & (np.abs(np.arctan2(x, u)) <= alpha)

    u = np.array([-3.0, 2.0, 8.0, 9.5, 11.2, 11.9, 12.5])
    assert np.allclose(shell_sector_chord(u, R, t, alpha), _march(inside, np.zeros_like(u), u, half=20), atol=0.01)
    assert shell_sector_chord(np.array([-5.0]), R, t, alpha)[0] == 0.0  # the other wall's side


def _straight_landmarks():
    """L1–L4: 25-mm bodies, 10-mm discs, vertical axis (1-mm units), anterior border at c = 60."""
    out = []
    for i, name in enumerate(("T12", "L1", "L2", "L3", "L4", "L5")):
        top, bottom = -15.0 + 35.0 * i, 10.0 + 35.0 * i
        out.append(VertebraLandmark(name=name, corners_px=((top, 60.0), (top, 90.0), (bottom, 90.0), (bottom, 60.0)),
                                    centre_px=((top + bottom) / 2, 75.0)))
    return tuple(out)


def test_plaque_truth_by_hand():
    """Disc mid-points at rows 15, 50, 85, 120, 155 (levels 35 mm). A posterior plaque over rows
    60–80 covers 20/35 of L2 → grade 2; an anterior one over 40–55 covers 10/35 of L1 (grade 1)
    and 5/35 of L2 (grade 1); AAC-24 = 4."""
    geometry = spine_geometry(_straight_landmarks(), 1.0)
    aorta = {"rows": np.array([0.0, 300.0]), "centre_c": np.array([40.0, 40.0]), "radius": 10.0}
    plaques = [{"wall": "posterior", "r0_mm": 60.0, "r1_mm": 80.0, "half_arc_deg": 30.0},
               {"wall": "anterior", "r0_mm": 40.0, "r1_mm": 55.0, "half_arc_deg": 30.0}]
    result = score_intervals(geometry, _plaque_intervals(plaques, aorta, geometry))
    expected = dict.fromkeys(SEGMENTS, 0) | {"L2_posterior": 2, "L1_anterior": 1, "L2_anterior": 1}
    assert result.grades == expected and result.aac24 == 4
    assert result.fractions["L2_posterior"] == pytest.approx(20 / 35, abs=1e-6)


def test_generator_is_deterministic_and_labels_are_consistent():
    a, b = make_lateral_spine(11), make_lateral_spine(11)
    assert np.array_equal(a.image, b.image) and a.segment_grades == b.segment_grades
    assert a.image.dtype == np.float32 and 0.0 <= a.image.min() and a.image.max() <= 1.0
    assert a.aac24 == sum(a.segment_grades.values())
    assert [v.name for v in a.vertebrae] == ["T12", "L1", "L2", "L3", "L4", "L5"]
    rows = np.array([[c[0] for c in v.corners_px] for v in a.vertebrae])
    cols = np.array([[c[1] for c in v.corners_px] for v in a.vertebrae])
    assert rows.min() > 0 and rows.max() < a.image.shape[0] and cols.min() > 0 and cols.max() < a.image.shape[1]
    assert np.all(np.diff(rows.mean(axis=1)) > 0)  # cranio-caudal order
    none = make_lateral_spine(11, burden=0.0)
    assert none.aac24 == 0 and not none.plaques


def test_facing_right_is_the_mirror_image():
    left = make_lateral_spine(5, chain=ChainParams(pixel_spacing_mm=0.8, facing="left"))
    right = make_lateral_spine(5, chain=ChainParams(pixel_spacing_mm=0.8, facing="right"))
    assert np.array_equal(right.image, left.image[:, ::-1])
    n_c = left.image.shape[1]
    for lv, rv in zip(left.vertebrae, right.vertebrae):
        assert np.allclose([c[1] for c in rv.corners_px], [n_c - 1 - c[1] for c in lv.corners_px])
    assert left.segment_grades == right.segment_grades


def test_spine_frame_patches_do_not_depend_on_pixel_size():
    """The same scene at 0.25-mm and 0.8-mm pixels (quiet chain) gives nearly the same segment patches:
    the anti-aliased spine-frame sampling is what makes the grader generator-independent."""
    from vascalc.learn.aac import segment_patches

    quiet = ChainParams(pixel_spacing_mm=0.25, photons_per_mm2=1e9, electronic_noise=0.0, bits=16)
    fine = make_lateral_spine(3, chain=quiet, burden=2.0)
    coarse = make_lateral_spine(3, chain=dataclasses.replace(quiet, pixel_spacing_mm=0.8), burden=2.0)
    assert fine.segment_grades == coarse.segment_grades  # truth is geometric, not pixel-bound
    pf = segment_patches(fine.image, fine.vertebrae, fine.pixel_spacing_mm)
    pc = segment_patches(coarse.image, coarse.vertebrae, coarse.pixel_spacing_mm)
    r = [np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(pf, pc)]
    assert min(r) > 0.95


def test_scores_spread_over_the_scale():
    scores = np.array([make_lateral_spine(s, chain=ChainParams(pixel_spacing_mm=1.0)).aac24 for s in range(40)])
    assert 0.2 <= np.mean(scores == 0) <= 0.6  # many films without calcification …
    assert scores.max() >= 12 and len(set(scores.tolist())) >= 8  # … and a long tail


def test_dxa_chain_is_coarse_and_noisy():
    film = make_lateral_spine(4, chain="dxa")
    assert film.chain.kind == "dxa" and 0.4 <= film.pixel_spacing_mm[0] <= 1.0 and film.chain.blur_fwhm_mm >= 1.0
