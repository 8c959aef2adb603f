import numpy as np
import pytest

from vascalc.phantoms import physics


def test_ha_density_to_hu_is_linear_over_the_matrix():
    assert physics.ha_density_to_hu(400.0) == pytest.approx(400.0 * physics.HU_PER_MG_HA_CM3)
    assert physics.ha_density_to_hu(200.0, hu_per_mg_cm3=0.9, hu_matrix=10.0) == pytest.approx(190.0)
    np.testing.assert_allclose(physics.ha_density_to_hu(np.array([0.0, 800.0]), hu_per_mg_cm3=1.1), [0.0, 880.0])


def test_fwhm_sigma_relation():
    # FWHM = 2·sqrt(2 ln 2)·σ ≈ 2.35482·σ
    assert physics.fwhm_to_sigma(2.35482) == pytest.approx(1.0, rel=1e-5)


def test_box_ssp_weights_are_overlap_over_thickness():
    # A pure box of 3 mm: a 0.5 mm sample wholly inside weighs 0.5/3; one straddling the edge by half, 0.25/3.
    W = physics.ssp_weights(np.array([0.0]), np.array([0.0, 1.5, 5.0]), 0.5, thickness_mm=3.0, blur_fwhm_mm=0.0)
    np.testing.assert_allclose(W[0], [0.5 / 3, 0.25 / 3, 0.0])


@pytest.mark.parametrize("thickness, increment, blur", [(3.0, 1.5, 1.5), (2.0, 2.0, 1.0), (5.0, 2.5, 0.0)])
def test_slice_profile_keeps_the_z_integral(thickness, increment, blur):
    centres = np.arange(-40, 41) * increment
    step = 0.1
    z_fine = np.arange(-10, 10, step) + step / 2
    W = physics.ssp_weights(centres, z_fine, step, thickness_mm=thickness, blur_fwhm_mm=blur)
    # Σ_c W[c, f] · dz = step for every fine sample when thickness ≥ increment (box multiple or blurred)
    np.testing.assert_allclose(W.sum(axis=0) * increment, step, rtol=2e-3)
    # and each slice's weights integrate the unit-area profile: Σ_f W[c, f] = 1 for a central slice
    W_c = physics.ssp_weights(np.array([0.0]), np.arange(-30, 30, step) + step / 2, step,
                              thickness_mm=thickness, blur_fwhm_mm=blur)
    assert W_c.sum() == pytest.approx(1.0, abs=1e-9)


def test_psf_keeps_the_integral_of_hu_minus_background():
    hu = np.full((3, 64, 64), 40.0, np.float32)
    hu[1, 30:33, 31:33] = 900.0
    out = physics.apply_psf(hu, (2.0, 0.7, 0.7), fwhm_mm=1.2)
    assert float((out - 40.0).sum()) == pytest.approx(float((hu - 40.0).sum()), rel=1e-5)
    assert out.max() < 900.0  # blurred: the peak drops (blooming spreads it)


@pytest.mark.parametrize("corr", [0.0, 1.5])
def test_noise_has_the_requested_sd_and_is_seeded(corr):
    a = physics.add_noise(np.zeros((8, 128, 128), np.float32), 20.0, np.random.default_rng(3),
                          spacing_mm=(2.0, 0.7, 0.7), corr_fwhm_mm=corr)
    b = physics.add_noise(np.zeros((8, 128, 128), np.float32), 20.0, np.random.default_rng(3),
                          spacing_mm=(2.0, 0.7, 0.7), corr_fwhm_mm=corr)
    assert np.array_equal(a, b)
    assert a.std() == pytest.approx(20.0, rel=0.03)
    assert abs(a.mean()) < 0.5
    if corr:
        # correlated noise: neighbouring pixels agree (lag-1 correlation well above 0)
        r = np.corrcoef(a[:, :, :-1].ravel(), a[:, :, 1:].ravel())[0, 1]
        assert r > 0.5
