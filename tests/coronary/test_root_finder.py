"""The image-based aortic root finder (vascalc.coronary.anatomy): analytic sections, a synthetic
heart + ascending aorta with a known axis, and a cohort phantom against its true aorta."""

import numpy as np
import pytest

from vascalc.coronary.anatomy import aortic_root_from_image, heart_frame, round_sections
from vascalc.imaging.grid import Grid

LUNG_HU, TISSUE_HU = -800.0, 40.0


def _plane(n=160, px=1.0):
    yy, xx = np.mgrid[0:n, 0:n] * px
    return yy, xx


def test_round_sections_disc_vs_band():
    yy, xx = _plane()
    disc = np.where(np.hypot(yy - 50.0, xx - 50.0) <= 12.0, TISSUE_HU, LUNG_HU)
    window = np.ones(disc.shape, bool)
    found = round_sections(disc, (1.0, 1.0), window)
    assert len(found) >= 1
    best = found[np.argmax(found[:, 2])]
    # the 3×3 smoothing against −800 HU lung turns every pixel with a lung neighbour into non-tissue
    # (one lung pixel in nine pulls 40 HU below −50), so the 12 mm disc's EDT peak is ≈ 12 − 1 − ½ mm
    assert abs(best[0] - 50.0) <= 1.0 and abs(best[1] - 50.0) <= 1.0
    assert 10.0 <= best[2] <= 11.5
    assert best[3] == pytest.approx(1.0)  # a free-standing disc: the whole rim is lung
    # a 31 mm band (mediastinum): its EDT ridge (≈ 15 mm) lies in the aortic radius range, but the band
    # runs through the rim circle (radius ≈ 18 mm): lung only where |cos θ| > 14.5 / 18, i.e. a free rim of
    # (2/π)·acos(0.81) ≈ 0.40 (window away from the image edge, where the circle would leave the image)
    band = np.where(np.abs(xx - 80.0) <= 15.0, TISSUE_HU, LUNG_HU)
    window[:40] = window[120:] = False
    found = round_sections(band, (1.0, 1.0), window)
    assert len(found) > 0
    assert np.all((found[:, 3] > 0.33) & (found[:, 3] < 0.45))


def _heart_and_aorta(dz=2.5, px=1.25, aorta_r=14.0):
    """A heart ellipsoid (semi-axes 50, 45, 45 mm) in lung, an ascending aorta (vertical tube of
    ``aorta_r`` mm, axis at x = −10, y = −20 mm) rising from its upper part to the top of the volume,
    and a 20 mm mediastinal band behind it; z up (LPS), origin at the corner."""
    shape = (48, 128, 128)
    z, y, x = np.meshgrid(np.arange(shape[0]) * dz - 90.0, np.arange(shape[1]) * px - 80.0,
                          np.arange(shape[2]) * px - 80.0, indexing="ij")
    heart = ((x - 5.0) / 50.0) ** 2 + (y / 45.0) ** 2 + ((z + 60.0) / 45.0) ** 2 <= 1.0
    aorta = (np.hypot(x + 10.0, y + 20.0) <= aorta_r) & (z >= -40.0)
    band = (np.abs(x - 5.0) <= 10.0) & (y > 0.0) & (y < 60.0)
    hu = np.where(heart | aorta | band, TISSUE_HU, LUNG_HU).astype(np.float32)
    grid = Grid(shape=shape, spacing_mm=(dz, px, px), origin_lps_mm=(-80.0, -80.0, -90.0),
                direction=tuple(np.eye(3).ravel()))
    return hu, grid, heart


def test_root_found_on_synthetic_aorta_where_the_heart_region_includes_it():
    hu, grid, heart = _heart_and_aorta()
    # the region given to the frame includes the ascending aorta up to the volume's top (as the built-in
    # region does), so "the slices above the region" do not exist: the old finder could not find it
    region = heart | ((hu > 0) & (np.arange(hu.shape[1])[None, :, None] * 1.25 - 80.0 < 0.0))
    box = tuple(slice(0, n) for n in hu.shape)
    frame = heart_frame(hu, grid, region, box)
    assert frame.aortic_root_lps_mm is not None, "root not found"
    x, y, z = frame.aortic_root_lps_mm
    assert np.hypot(x + 10.0, y + 20.0) <= 2.0  # on the tube's axis
    # the lowest free-standing section: where the tube leaves the heart ellipsoid's surface
    # (at the tube axis the ellipsoid top is z = −60 + 45·√(1 − (15/50)² − (20/45)²) ≈ −23.5 mm)
    assert -28.0 <= z <= -15.0
    # inscribed radius of the 14 mm tube less the one-pixel (1.25 mm) edge erosion of the 3×3 smoothing
    assert 12.0 <= frame.aortic_root_radius_mm <= 13.5
    assert "ascending aorta" in frame.aortic_root_source


def test_no_root_without_a_tube():
    hu, grid, heart = _heart_and_aorta()
    hu = np.where(heart, TISSUE_HU, LUNG_HU).astype(np.float32)  # the heart alone
    from vascalc.coronary.anatomy import heart_extent
    box = tuple(slice(0, n) for n in hu.shape)
    centre, semi, top, _, _ = heart_extent(heart, grid, box)
    assert aortic_root_from_image(hu, grid, centre, semi, top) is None


def test_root_found_on_a_cohort_phantom():
    from vascalc.coronary.training import make_case
    from vascalc.workflows.coronary import score_coronary

    phantom = make_case(500000)  # dev case whose built-in heart region runs to the top of the field of view
    result = score_coronary(phantom.volume, segmenter="builtin", model="rules", force=True)
    assert not any("aortic root not found" in w for w in result.warnings)
    frame = result.frame if isinstance(result.frame, dict) else result.frame.to_dict()
    root = np.asarray(frame["aortic_root_lps_mm"])
    true_root = np.asarray(phantom.truth["landmarks"]["aortic_root_lps_mm"])
    top = np.asarray(phantom.truth["vessels"]["aorta"]["centreline_lps_mm"][-1])
    t = (root[2] - true_root[2]) / (top[2] - true_root[2])
    axis_at_root = true_root + t * (top - true_root)
    assert np.hypot(*(root[:2] - axis_at_root[:2])) <= 4.0
    # the entry of the aorta into the heart lies above the valve (the phantom's root point)
    assert 10.0 <= root[2] - true_root[2] <= 35.0
    radius = phantom.truth["vessels"]["aorta"]["lumen_radius_mm"][0]
    assert abs(frame["aortic_root_radius_mm"] - radius) <= 2.5
