"""Known-answer tests of the grader-input restoration (vascalc.radiograph.sharpen, round 19)."""

from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage

from vascalc.errors import InputError
from vascalc.radiograph.sharpen import (
    FWHM_PER_SIGMA,
    deconvolve_gaussian,
    edge_blur_fwhm_mm,
    excess_sigma_mm,
    film_noise_sd,
    landmark_box,
    regulariser_for_noise,
    sharpen_film,
    wiener_noise_gain,
)

SPACING = (0.2, 0.2)


def _step(fwhm_mm: float, noise: float = 0.0, shape=(120, 240), spacing=SPACING) -> np.ndarray:
    """A vertical step edge (off the pixel grid) blurred by a Gaussian of the given FWHM along x."""
    x = (np.arange(shape[1]) - shape[1] / 2 - 0.3) * spacing[1]
    img = np.tile((x > 0).astype(float), (shape[0], 1))
    img = ndimage.gaussian_filter(img, (0, fwhm_mm / FWHM_PER_SIGMA / spacing[1]))
    return img + np.random.default_rng(0).normal(0.0, noise, shape) if noise else img


@pytest.mark.parametrize("fwhm", [1.5, 2.0, 3.0])
def test_blur_index_measures_a_blurred_step_edge(fwhm):
    assert edge_blur_fwhm_mm(_step(fwhm), SPACING) == pytest.approx(fwhm, rel=0.15)


def test_blur_index_is_in_mm_for_anisotropic_pixels():
    # the same 2 mm edge sampled at 0.1 × 0.25 mm (edge along rows → x spacing 0.25 mm)
    b = edge_blur_fwhm_mm(_step(2.0, shape=(200, 160), spacing=(0.1, 0.25)), (0.1, 0.25))
    assert b == pytest.approx(2.0, rel=0.15)


def test_excess_sigma_adds_in_quadrature():
    # Gaussian FWHMs add in quadrature: 1.0 mm → 2.0 mm needs FWHM √3 mm, σ = √3 / 2.3548
    assert excess_sigma_mm(2.0, 1.0) == pytest.approx(np.sqrt(3.0) / FWHM_PER_SIGMA, rel=1e-12)
    assert excess_sigma_mm(0.9, 1.0) == 0.0
    assert excess_sigma_mm(float("inf"), 1.0) == 0.0


def test_restored_edge_is_closer_to_the_target_and_noise_within_the_cap():
    b0, cap = 1.0, 0.02
    film = _step(2.5, noise=0.005)
    b = edge_blur_fwhm_mm(film, SPACING)
    assert b == pytest.approx(2.5, rel=0.15)
    sigma_px = excess_sigma_mm(b, b0) / np.asarray(SPACING)
    lam = regulariser_for_noise(sigma_px, film_noise_sd(film), cap)
    restored = deconvolve_gaussian(film, sigma_px, lam)
    b_restored = edge_blur_fwhm_mm(restored, SPACING)
    assert abs(b_restored - b0) < 0.5 * abs(b - b0)
    # white noise alone through the same filter: its SD stays within the cap
    noise = np.random.default_rng(1).normal(0.0, film_noise_sd(film), (256, 256))
    assert deconvolve_gaussian(noise, sigma_px, lam).std() <= cap * 1.05


def test_noise_gain_matches_filtered_white_noise_and_falls_with_lambda():
    noise = np.random.default_rng(2).normal(0.0, 1.0, (256, 256))
    for lam in (1e-3, 1e-2, 1e-1):
        assert deconvolve_gaussian(noise, (2.0, 2.0), lam).std() == pytest.approx(wiener_noise_gain((2.0, 2.0), lam), rel=0.03)
    assert wiener_noise_gain((2.0, 2.0), 1e-3) > wiener_noise_gain((2.0, 2.0), 1e-2) > wiener_noise_gain((2.0, 2.0), 1e-1)
    # a noisy film gets a larger λ than a clean one for the same cap
    assert regulariser_for_noise((2.0, 2.0), 0.02, 0.02) > regulariser_for_noise((2.0, 2.0), 0.002, 0.02)


def test_noise_estimate_ignores_edges_and_offsets():
    rng = np.random.default_rng(3)
    assert film_noise_sd(rng.normal(0.0, 0.01, (200, 200)) + _step(1.0, shape=(200, 200))) == pytest.approx(0.01, rel=0.08)


def _box_landmarks(shape):
    # four "vertebrae" whose corners span the middle of the image
    r, c = shape
    corners = [(r * 0.3, c * 0.3), (r * 0.3, c * 0.7), (r * 0.7, c * 0.7), (r * 0.7, c * 0.3)]
    return [SimpleNamespace(corners_px=corners)]


def test_sharpen_film_changes_only_blurred_films():
    sharp = _step(0.9, noise=0.002)
    out = sharpen_film(sharp, SPACING, _box_landmarks(sharp.shape), target_fwhm_mm=1.2, max_noise_sd=0.02)
    assert out.excess_sigma_mm == 0.0 and np.array_equal(out.image, sharp.astype(np.float32))
    blurred = _step(2.5, noise=0.002)
    res = sharpen_film(blurred, SPACING, _box_landmarks(blurred.shape), target_fwhm_mm=1.0, max_noise_sd=0.02)
    assert res.blur_fwhm_mm == pytest.approx(2.5, rel=0.15)
    assert res.excess_sigma_mm == pytest.approx(excess_sigma_mm(res.blur_fwhm_mm, 1.0))
    assert res.restored_noise_sd <= 0.02 + 1e-9 and res.regulariser > 0
    assert abs(edge_blur_fwhm_mm(res.image, SPACING) - 1.0) < abs(res.blur_fwhm_mm - 1.0)


def test_landmark_box_and_errors():
    rows, cols = landmark_box(_box_landmarks((100, 200)), (100, 200), margin_fraction=0.25)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (20, 81, 40, 161)
    with pytest.raises(InputError):
        edge_blur_fwhm_mm(np.zeros((4, 4)), SPACING)
    with pytest.raises(InputError):
        sharpen_film(np.zeros((50, 50)), (0.0, 0.2), _box_landmarks((50, 50)), target_fwhm_mm=1.0, max_noise_sd=0.02)


def test_model_json_switch_is_off_by_default_and_validated():
    from vascalc.learn.aac import grader_sharpening

    assert grader_sharpening({"inference": {"grader_tta": "flip_shift_td"}}) is None
    assert grader_sharpening({"inference": {"sharpen": False}}) is None
    on = {"target_fwhm_mm": 1.3, "max_noise_sd": 0.02}
    assert grader_sharpening({"inference": {"sharpen": on}}) == on
    with pytest.raises(InputError):
        grader_sharpening({"inference": {"sharpen": {"target_fwhm_mm": 1.3}}})
    with pytest.raises(InputError):
        grader_sharpening({"inference": {"sharpen": {**on, "strength": 2}}})


def test_predict_grades_grades_the_restored_film_when_the_folder_switches_it_on():
    pytest.importorskip("torch")
    import copy

    from vascalc.learn.aac import AacEnsemble, load_aac_ensemble, predict_grades
    from vascalc.phantoms.lateral_spine import make_lateral_spine
    from vascalc.radiograph.learned import BUNDLED_MODEL

    ens = load_aac_ensemble(BUNDLED_MODEL)
    assert not ens.metadata.get("inference", {}).get("sharpen")  # the bundled folder: off (round 19)
    film = make_lateral_spine(4_625_003, chain="dxa")  # a selection film with blur above b0
    sp = np.asarray(film.pixel_spacing_mm, float)
    setting = {"target_fwhm_mm": 1.0, "max_noise_sd": 0.02}
    meta = copy.deepcopy(ens.metadata)
    meta["inference"]["sharpen"] = setting
    on = AacEnsemble(ens.graders, ens.regressors, meta)
    restored = sharpen_film(film.image, sp, film.vertebrae, **setting)
    assert restored.excess_sigma_mm > 0
    assert predict_grades(on, film.image, film.vertebrae, sp)[1] == predict_grades(ens, restored.image, film.vertebrae, sp)[1]
    assert predict_grades(on, film.image, film.vertebrae, sp)[1] != predict_grades(ens, film.image, film.vertebrae, sp)[1]


def test_landmark_box_from_a_spine_geometry_covers_the_bodies():
    from vascalc.phantoms.types import VertebraLandmark
    from vascalc.radiograph.kauppila import spine_geometry

    # 1-mm pixels: L1–L4 25 mm tall, 10 mm apart, 30 mm deep (columns 60–90, anterior border at 60)
    marks = []
    for i, name in enumerate(("L1", "L2", "L3", "L4")):
        top, bottom = 20.0 + 35.0 * i, 45.0 + 35.0 * i
        marks.append(VertebraLandmark(name=name, corners_px=((top, 60.0), (top, 90.0), (bottom, 90.0), (bottom, 60.0)),
                                      centre_px=((top + bottom) / 2, 75.0)))
    rows, cols = landmark_box(spine_geometry(marks, (1.0, 1.0)), (300, 300), pixel_spacing_mm=(1.0, 1.0))
    exact_rows, exact_cols = landmark_box(marks, (300, 300))
    # the geometry's outline: the same rows, the anterior border exact, depth 1.2 × 25 mm = 30 mm
    assert abs(rows.start - exact_rows.start) <= 1 and abs(rows.stop - exact_rows.stop) <= 1
    assert abs(cols.start - exact_cols.start) <= 1 and abs(cols.stop - exact_cols.stop) <= 1
