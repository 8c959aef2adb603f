"""DRR physics of the vascular phantom: plaques projected at their own resolution (analytic chords)."""

import numpy as np
import pytest
from scipy import integrate

from vascalc.errors import InputError
from vascalc.phantoms import PlaqueSpec, make_vascular_phantom, project_lateral_radiograph
from vascalc.phantoms import radiograph as R
from vascalc.phantoms.geometry import WallSector
from vascalc.phantoms.vascular import abdominal_vessels


def _annulus_chord(d: float, r0: float, r1: float) -> float:
    """Chord (mm) of a ray at distance d from the axis through the annulus r0 ≤ r < r1 (normal incidence)."""
    outer = 2.0 * np.sqrt(max(r1 * r1 - d * d, 0.0))
    inner = 2.0 * np.sqrt(max(r0 * r0 - d * d, 0.0))
    return outer - inner


def test_ha_excess_attenuation_by_hand():
    # 0.5 g/cm³ HA: 0.5 · (0.40 − 0.206 / 3.16) cm⁻¹ = 0.16741 cm⁻¹ = 0.016741 mm⁻¹
    assert R.ha_excess_attenuation_per_mm(500.0) == pytest.approx(0.5 * (0.40 - 0.206 / 3.16) / 10, rel=1e-9)
    assert R.ha_excess_attenuation_per_mm(500.0) == pytest.approx(0.016741, abs=2e-6)
    # linear in density, and within 15 % of the bilinear HU map the CT body uses (1 HU per mg/cm³)
    assert R.ha_excess_attenuation_per_mm(1000.0) == pytest.approx(2 * R.ha_excess_attenuation_per_mm(500.0))
    bilinear = float(R.attenuation_per_mm(np.array([500.0]))[0] - R.attenuation_per_mm(np.array([0.0]))[0])
    assert R.ha_excess_attenuation_per_mm(500.0) == pytest.approx(bilinear, rel=0.15)


@pytest.mark.parametrize("pixel_mm", [0.5, 1.0])
def test_sector_chords_match_the_analytic_annulus(pixel_mm):
    """A vertical tube wall (axis along z through y = 0), anterior half only (angle 0, ±90°): rays in
    front of the axis cross the full annulus chord 2(√(r1²−d²) − √(r0²−d²)), rays behind it nothing.
    Each pixel value must equal that chord averaged over the pixel (quadrature), within 2 %."""
    r0, r1 = 10.0, 11.5
    sector = WallSector(a=(0.0, 0.0, -50.0), u=(0.0, 0.0, 1.0), s0=0.0, s1=40.0, r0=r0, r1=r1,
                        angle_rad=0.0, half_arc_rad=np.pi / 2)
    rows_z = np.arange(0.0, -60.0, -pixel_mm)
    cols_y = np.arange(-15.0, 15.0 + 1e-9, pixel_mm)
    rs, cs, block = R.sector_chord_image(sector, rows_z, cols_y, pixel_mm)
    full = np.zeros((rows_z.size, cols_y.size))
    full[rs, cs] = block
    inside_rows = (rows_z - pixel_mm / 2 > -50.0) & (rows_z + pixel_mm / 2 < -10.0)
    for j, y in enumerate(cols_y):
        lo, hi = y - pixel_mm / 2, y + pixel_mm / 2
        # anterior is −y: the ray at y < 0 lies in front of the axis, at distance d = −y
        expected = integrate.quad(lambda t: _annulus_chord(-t, r0, r1) if t < 0 else 0.0, lo, hi,
                                  points=[-r1, -r0, 0.0], limit=200)[0] / pixel_mm
        got = full[inside_rows, j]
        assert np.allclose(got, expected, rtol=0.02, atol=0.02 * 2 * np.sqrt(2 * r0 * (r1 - r0))), (y, got[0], expected)
    # the tangent pixel carries the long chord (≈ 2√(2·r0·t) over the shell's width), not a 1.5-mm one
    assert full[inside_rows].max() > 3.0
    # z ends: a pixel straddling the plaque's end holds half the chord
    assert np.all(full[rows_z > -10.0 + pixel_mm] == 0.0)


def test_sector_chords_keep_the_volume_of_an_oblique_plaque():
    aorta = next(v for v in abdominal_vessels() if v.name == "aorta")
    sector = aorta.sector(PlaqueSpec("aorta", 80.0, 12.0, 75.0, 140.0, 1.2, 500.0))
    for pixel_mm in (3.2, 0.7):
        rows_z = np.arange(0.0, -300.0, -pixel_mm)
        cols_y = np.arange(-100.0, 100.0, pixel_mm)
        _, _, block = R.sector_chord_image(sector, rows_z, cols_y, pixel_mm)
        assert block.sum() * pixel_mm ** 2 == pytest.approx(sector.volume_mm3, rel=0.01)


@pytest.fixture(scope="module")
def one_plaque_and_none():
    """The same seeded phantom with one anterior aortic plaque and without: noise and anatomy are
    identical (neither draws plaques from the generator), so their difference is the plaque alone."""
    aorta = next(v for v in abdominal_vessels() if v.name == "aorta")
    starts = np.concatenate([[0.0], np.cumsum(aorta.segment_lengths())])
    z_pts = np.array([p[2] for p in aorta.points])
    s0 = float(np.interp(80.0, -z_pts, starts))  # from z = −80 to −95 mm: inside L2 (−74.5 … −110.5)
    spec = PlaqueSpec("aorta", s0, 15.0, 60.0, 0.0, 1.5, 600.0)
    return make_vascular_phantom(seed=0, plaques=[spec]), make_vascular_phantom(seed=0, plaques="none")


def test_drr_adds_exactly_the_plaque_line_integral(one_plaque_and_none):
    """P(one plaque) − P(no plaque) = Δμ_HA · chord: the CT's own, partial-volumed copy of the
    calcium is removed from the body (residual < 1 % of the plaque's peak), the exact one added."""
    one, none = one_plaque_and_none
    for pixel_mm in (3.2, 0.8):
        p1, ps, z_top, y0 = R.lateral_line_integral(one, pixel_mm)
        p0, *_ = R.lateral_line_integral(none, pixel_mm)
        rows_z, cols_y = z_top - np.arange(p1.shape[0]) * ps, y0 + np.arange(p1.shape[1]) * ps
        calcium = R.calcium_line_integral(one.truth, rows_z, cols_y, ps)
        peak = calcium.max()
        assert np.abs((p1 - p0) - calcium).max() < 0.01 * peak
        # total: Δμ(600 mg/cm³) × the plaque's analytic volume (mm³ → per mm² of detector)
        sector = R._plaque_sectors(one.truth)[0][0]
        assert calcium.sum() * ps * ps == pytest.approx(R.ha_excess_attenuation_per_mm(600.0) * sector.volume_mm3,
                                                        rel=0.01)
    # at detector-like pixels the analytic plaque is sharper than the CT's 3-mm copy (same mass)
    p_ct, *_ = R.lateral_line_integral(one, 0.8, calcium="ct")
    p_an, *_ = R.lateral_line_integral(one, 0.8)
    p0, *_ = R.lateral_line_integral(none, 0.8)
    assert (p_an - p0).max() > 1.5 * (p_ct - p0).max()
    assert (p_an - p0).sum() == pytest.approx((p_ct - p0).sum(), rel=0.05)


def test_drr_keeps_the_truth_and_refuses_bad_options(one_plaque_and_none):
    one, _ = one_plaque_and_none
    analytic = project_lateral_radiograph(one, seed=2)
    old = project_lateral_radiograph(one, seed=2, calcium="ct")
    assert analytic.segment_grades == old.segment_grades and analytic.aac24 == old.aac24
    assert analytic.truth["parameters"]["calcium"] == "analytic"
    assert analytic.image.shape == old.image.shape
    with pytest.raises(InputError, match="calcium"):
        project_lateral_radiograph(one, calcium="voxels")
    with pytest.raises(InputError, match="pixel spacing"):
        R.lateral_line_integral(one, -1.0)


def test_segment_cnr_of_a_known_anterior_plaque(one_plaque_and_none):
    """The 15-mm plaque at z = −80 … −95 mm covers 15/36 of L2 (grade 2, anterior wall). Its CNR scales
    as √dose exactly; at 3.2-mm pixels the analytic and the CT calcium have the same contrast (same
    mass, both smeared by the pixel), at 0.8 mm the analytic plaque's sharp tangent line is brighter."""
    one, _ = one_plaque_and_none
    coarse = R.segment_calcium_cnr(one, min_grade=2)
    assert coarse["segments"] == ["L2_anterior"]
    assert coarse["analytic"]["p90"][0] == pytest.approx(coarse["ct"]["p90"][0], rel=0.25)
    fine = R.segment_calcium_cnr(one, pixel_spacing_mm=0.8, min_grade=2)
    assert fine["analytic"]["p90"][0] > 1.3 * fine["ct"]["p90"][0]
    quadruple = R.segment_calcium_cnr(one, pixel_spacing_mm=0.8, min_grade=2, photons_per_mm2=8.0e5)
    assert quadruple["analytic"]["p90"][0] == pytest.approx(2.0 * fine["analytic"]["p90"][0], rel=1e-3)
    assert R.segment_calcium_cnr(one, min_grade=3)["segments"] == []
