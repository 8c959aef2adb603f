"""Area-integrating detector of the lateral-film generator (round 14, issue 7): known-answer tests.

A pixel of an integrating detector records the mean line integral over its area. Truths used here:
a cylinder along the projection axis projects to a disc of constant chord L, so each pixel's value
is L × (covered fraction of the pixel) and the pixel sum × ps² is L·πa² exactly; a shell sector of
the aorta (`shell_sector_chord`) integrates across the wall to α·(R² − (R − t)²) per mm of length.
"""

from __future__ import annotations

import numpy as np
import pytest

import vascalc.phantoms.lateral_spine as ls
from vascalc.errors import InputError


def _rod(radius_mm: float, length_mm: float, centre_rc: tuple[float, float], mu: float = 1.0) -> ls.Solid:
    """A cylinder of ``radius_mm`` along x (the rays), ``length_mm`` long: projects to a disc."""
    A = np.diag([1e-12, 1.0 / radius_mm ** 2, 1.0 / radius_mm ** 2])  # x unbounded by the quadric …
    x_slab = (np.array([1.0, 0.0, 0.0]), length_mm / 2)               # … and cut to the length by a slab
    return ls.Solid(np.array([0.0, *centre_rc]), A, (x_slab,), mu, True, (radius_mm * 1.01, radius_mm * 1.01))


def _render(solids, shape, ps, k):
    soft, hard = np.zeros(shape), np.zeros(shape)
    ls._render_solids(soft, hard, solids, ps, k)
    return hard


def _disc_coverage(radius_mm, centre_rc, shape, ps, n=400):
    """Independent reference: each pixel's covered fraction by brute-force n × n point counting."""
    sub = (np.arange(n) + 0.5) / n - 0.5
    rr = ((np.arange(shape[0])[:, None] + sub) * ps - centre_rc[0]).ravel()
    cc = ((np.arange(shape[1])[:, None] + sub) * ps - centre_rc[1]).ravel()
    inside = rr[:, None] ** 2 + cc[None, :] ** 2 <= radius_mm ** 2
    return inside.reshape(shape[0], n, shape[1], n).mean(axis=(1, 3))


@pytest.mark.parametrize("ps", [0.4, 0.9])
def test_disc_pixel_sum_is_its_area_and_pixels_are_their_covered_fraction(ps):
    radius, length, centre = 1.1, 10.0, (3.03, 2.71)  # 1.2–2.75 pixels across, off the pixel grid
    shape = (int(6.5 / ps), int(6.5 / ps))
    area = _render([_rod(radius, length, centre)], shape, ps, ls.DETECTOR_SUPERSAMPLING)
    point = _render([_rod(radius, length, centre)], shape, ps, 1)
    exact_mm3 = length * np.pi * radius ** 2
    assert area.sum() * ps ** 2 == pytest.approx(exact_mm3, rel=0.01)
    # the point-sampled disc counts whole pixels: its sum misses the area by several per cent here
    assert abs(point.sum() * ps ** 2 / exact_mm3 - 1) > 0.03
    coverage = _disc_coverage(radius, centre, shape, ps, n=120 if ps > 0.5 else 60)
    # each area-integrated pixel is L × its covered fraction (edge pixels within 1/20 of the
    # pixel's full value); point samples are 0 or L, off by up to half a pixel's value
    assert np.abs(area / length - coverage).max() < 0.05
    assert np.abs(point / length - coverage).max() > 0.3


def test_annulus_from_two_rods_integrates_to_the_ring_area():
    ps, k = 0.9, ls.DETECTOR_SUPERSAMPLING
    outer, inner = _rod(3.0, 4.0, (5.0, 5.0)), _rod(2.2, 4.0, (5.0, 5.0), mu=-1.0)  # a 0.8-mm ring
    ring = _render([outer, inner], (12, 12), ps, k)
    assert ring.sum() * ps ** 2 == pytest.approx(4.0 * np.pi * (3.0 ** 2 - 2.2 ** 2), rel=0.01)
    assert ring.min() > -1e-9  # the inner rod never removes more than the outer rod put in


@pytest.mark.parametrize("sagittal_deg", [0.0, 25.0])
def test_tilted_vertebral_body_integrates_to_its_volume(sagittal_deg):
    """An elliptic cylinder cut by its endplates (a body, tilted and rotated): Σ P · ps² = μ·πab·2h.
    Before round 14 the footprint's box clipped a tilted body's corners (−5 % here at 25°)."""
    a, b, h, mu, ps = 21.0, 16.0, 12.5, 0.04, 0.9
    rot = ls._rotation(np.deg2rad(sagittal_deg), np.deg2rad(4.0), np.deg2rad(7.0))
    body = ls.cylinder_body((0.0, 40.0, 40.0), a, b, h, rot, mu)
    for k in (1, ls.DETECTOR_SUPERSAMPLING):
        P = _render([body], (90, 90), ps, k)
        assert P.sum() * ps ** 2 == pytest.approx(mu * np.pi * a * b * 2 * h, rel=0.01)
        assert P[0].max() == P[-1].max() == P[:, 0].max() == P[:, -1].max() == 0  # wholly on the film


def test_plaque_shell_integrates_to_the_sector_area_and_length():
    """A straight aorta, one plaque without texture: Σ P · ps² = Δμ · α(R² − r²) · length."""
    R, t, alpha_deg = 11.0, 0.7, 40.0
    aorta = {"rows": np.linspace(0, 200, 256), "centre_c": np.full(256, 60.3), "radius": R}
    plaque = {"wall": "anterior", "r0_mm": 40.37, "r1_mm": 61.81, "thickness_mm": t, "half_arc_deg": alpha_deg,
              "mu_scale": 1.0, "patchiness": 0.0, "phase": 0.0, "period_mm": 5.0}
    d_mu = ls.MU["plaque"] - ls.MU["tissue"]
    exact = d_mu * np.deg2rad(alpha_deg) * (R ** 2 - (R - t) ** 2) * (61.81 - 40.37)
    for ps in (0.4, 0.65, 0.9):
        area = np.zeros((int(120 / ps), int(120 / ps)))
        ls._render_plaques(area, [plaque], aorta, ps, ls.DETECTOR_SUPERSAMPLING)
        assert area.sum() * ps ** 2 == pytest.approx(exact, rel=0.01)
    # at 0.9 mm the point-sampled shell is aliased: same total within a few per cent, but its
    # pixels differ from the area mean by far more than the supersampled ones do
    ps = 0.9
    layers = {}
    for k in (1, ls.DETECTOR_SUPERSAMPLING, 24):
        layers[k] = np.zeros((int(120 / ps), int(120 / ps)))
        ls._render_plaques(layers[k], [plaque], aorta, ps, k)
    ref = layers[24]
    err = {k: np.abs(layers[k] - ref).sum() / ref.sum() for k in (1, ls.DETECTOR_SUPERSAMPLING)}
    assert err[ls.DETECTOR_SUPERSAMPLING] < 0.02 and err[1] > 0.05


def test_default_film_is_area_integrated_and_k1_is_the_point_sampled_film():
    film = ls.make_lateral_spine(7, burden=2.0)
    point = ls.make_lateral_spine(7, burden=2.0, detector_supersampling=1)
    assert film.chain.detector_supersampling == ls.DETECTOR_SUPERSAMPLING and point.chain.detector_supersampling == 1
    # same draw: same scene, truth and image size; only the rendering of outlines differs
    assert film.segment_grades == point.segment_grades and film.image.shape == point.image.shape
    assert film.plaques == point.plaques and film.vertebrae == point.vertebrae
    assert np.abs(film.image - point.image).max() > 0.01  # rendered two ways
    with pytest.raises(InputError, match="detector_supersampling"):
        ls.make_lateral_spine(7, detector_supersampling=0)
