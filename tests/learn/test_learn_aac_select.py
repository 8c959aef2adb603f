"""Grader-recipe selection on validation films (vascalc.learn.aac): the blurred validation copy
(``valblur``), the validation patches, one-network screening and the ensemble's validation check."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("monai")

from vascalc.learn.aac import (  # noqa: E402
    TEST_SEED_OFFSET,
    VALBLUR_FWHM_MM,
    VALBLUR_NOISE,
    VALIDATION_SEED_OFFSET,
    AacConfig,
    augment_film,
    blur_validation_film,
    case_inputs,
    save_aac_ensemble,
    screen_grader_recipe,
    segment_patches,
    synthetic_case,
    synthetic_training_set,
    train_model,
    validate_grader,
    validation_patches,
)

from vascalc.radiograph.kauppila import SEGMENTS  # noqa: E402

FWHM_PER_SIGMA = 2 * np.sqrt(2 * np.log(2))


def _tiny(**kw) -> AacConfig:
    return AacConfig(patch_px=8, band_px=8, epochs=1, batch_size=16, width=4, **kw)


@pytest.mark.parametrize("seed", [4_000_003, 4_000_011])
def test_valblur_draws_its_blur_and_noise_from_the_seed(seed):
    """A vertical line of amplitude 0.4 on grey 0.5 (no clipping): the mean row profile is the line
    blurred by a Gaussian whose FWHM (mm) is the one drawn from the seed; the flat part's SD is the noise."""
    spacing = (0.5, 0.5)
    image = np.full((1000, 121), 0.5, dtype=np.float32)
    image[:, 60] += 0.4
    out = blur_validation_film(image, spacing, seed)
    rng = np.random.default_rng([seed, 17])
    fwhm_mm, sd = rng.uniform(*VALBLUR_FWHM_MM), rng.uniform(*VALBLUR_NOISE)
    assert VALBLUR_FWHM_MM[0] <= fwhm_mm <= VALBLUR_FWHM_MM[1]
    profile = out.mean(axis=0) - 0.5
    x = np.arange(image.shape[1]) - 60.0
    core = np.abs(x) <= 20  # ±10 mm ≥ 4σ of the widest blur
    area = profile[core].sum()
    assert area == pytest.approx(0.4, rel=0.02)  # the blur conserves the line's integral
    # a Gaussian of integral A peaks at A / (√(2π) σ): the peak gives σ with little noise (1000 rows averaged)
    sigma_mm = area / (np.sqrt(2 * np.pi) * profile[60]) * spacing[1]
    assert sigma_mm * FWHM_PER_SIGMA == pytest.approx(fwhm_mm, rel=0.03)
    assert out[:, :30].std() == pytest.approx(sd, rel=0.05)
    np.testing.assert_array_equal(out, blur_validation_film(image, spacing, seed))  # deterministic


def test_validation_patches_are_the_validation_films_clean_and_blurred():
    cfg = AacConfig(patch_px=8, band_px=16)
    clean, blurred, grades = validation_patches(2, cfg)
    assert clean.shape == blurred.shape == (2, 8, 8, 16) and grades.shape == (2, 8)
    c = synthetic_case(VALIDATION_SEED_OFFSET + 1)
    assert grades[1].tolist() == [c.grades[s] for s in SEGMENTS] and grades[1].sum() == c.aac24
    kw = {"patch_px": 8, "band_mm": cfg.band_mm, "band_px": 16}
    np.testing.assert_array_equal(clean[1], segment_patches(c.image, c.vertebrae, c.pixel_spacing_mm, **kw))
    np.testing.assert_array_equal(blurred[1], segment_patches(blur_validation_film(c.image, c.pixel_spacing_mm, c.seed),
                                                              c.vertebrae, c.pixel_spacing_mm, **kw))
    # blur lowers the patches' high-frequency content (standardised patches: compare neighbour differences)
    assert np.abs(np.diff(blurred, axis=-1)).mean() < np.abs(np.diff(clean, axis=-1)).mean()
    assert VALIDATION_SEED_OFFSET >= 2 * TEST_SEED_OFFSET  # never a held-out film


def test_synthetic_training_set_augments_each_film_from_its_seed():
    cfg = AacConfig(patch_px=8, band_px=8)
    patches, crops, grades = synthetic_training_set([0, 1, 2, 3], cfg)
    plain, _, same = synthetic_training_set([0, 1, 2, 3], AacConfig(patch_px=8, band_px=8, augment_blur_mm=0.0,
                                                                     augment_noise=0.0))
    np.testing.assert_array_equal(grades, same)  # augmentation never changes the truth
    for i in range(4):
        c = synthetic_case(i)
        image = augment_film(c.image, c.pixel_spacing_mm, c.seed, max_blur_fwhm_mm=2.5, max_noise=0.02)
        p, cr = case_inputs(image, c.vertebrae, c.pixel_spacing_mm, cfg)
        np.testing.assert_array_equal(patches[i], p)
        np.testing.assert_array_equal(crops[i], cr)
        # films drawn for augmentation (probability 1/2) differ from their plain patches, the others not
        assert np.array_equal(patches[i], plain[i]) == (image is c.image)


def test_screen_grader_recipe_reports_consistent_numbers():
    r = screen_grader_recipe(_tiny(), n_train=8, n_val=4, seed=1, tta="flip")
    assert r["n_train"] == 8 and r["n_val"] == 4 and r["tta"] == "flip" and r["config"]["patch_px"] == 8
    assert r["train_s"] >= 0 and r["train_cpu_s"] >= 0 and len(r["load_avg_1min"]) == 2
    _, _, truth = validation_patches(4, _tiny())
    for key in ("clean", "blurred", "clean_no_tta", "blurred_no_tta"):
        errors = np.array(r[key]["aac24_errors"])
        assert r[key]["n"] == 4 and len(errors) == 4
        assert r[key]["mae"] == pytest.approx(np.abs(errors).mean(), abs=1e-4)
        assert r[key]["bland_altman"]["bias"] == pytest.approx(errors.mean(), abs=1e-4)
        assert np.all(errors + truth.sum(axis=1) >= 0) and np.all(errors + truth.sum(axis=1) <= 24)
    again = screen_grader_recipe(_tiny(), n_train=8, n_val=4, seed=1, tta="flip")
    assert again["clean"]["aac24_errors"] == r["clean"]["aac24_errors"]  # deterministic for a seed
    assert again["loss_first_last"] == r["loss_first_last"]


def test_validate_grader_uses_the_folders_tta_unless_told(tmp_path):
    import json

    cfg = _tiny()
    patches, _, grades = synthetic_training_set(range(8), cfg)
    from vascalc.learn.aac import grader_inputs

    net, _ = train_model("coral", grader_inputs(patches, cfg), grades.ravel(), cfg, seed=0)
    meta = {"config": {**cfg.__dict__, "band_mm": list(cfg.band_mm)}, "inference": {"grader_tta": "flip"}}
    save_aac_ensemble(tmp_path, [net], [], meta)
    r = validate_grader(tmp_path, n_val=3)
    assert r["tta"] == "flip" and set(r) == {"tta", "clean", "blurred", "clean_no_tta", "blurred_no_tta"}
    assert json.loads((tmp_path / "model.json").read_text())["inference"]["grader_tta"] == "flip"
    plain = validate_grader(tmp_path, n_val=3, tta="none")
    assert set(plain) == {"tta", "clean", "blurred"}  # no TTA: one grading per set
    assert plain["clean"]["aac24_errors"] == r["clean_no_tta"]["aac24_errors"]
    from vascalc.errors import InputError

    with pytest.raises(InputError, match="test-time augmentation"):
        validate_grader(tmp_path, n_val=1, tta="spin")
