"""Grader test-time augmentation (vascalc.learn.aac): perturbations by hand and against scipy's
affine_transform, TTA = mean of the perturbed views, the expected-grade rule, the folder switch."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

pytest.importorskip("torch")
pytest.importorskip("monai")

from aac_fixtures import spine_landmarks  # noqa: E402
from vascalc.errors import InputError  # noqa: E402
from vascalc.learn.aac import (  # noqa: E402
    DEFAULT_TTA,
    TTA_SETS,
    AacConfig,
    PatchPerturbation,
    build_coral_network,
    coral_probabilities,
    grader_inputs,
    grader_tta,
    grader_tta_method,
    grades_by_rule,
    perturb_patches,
    predict_grades,
    save_aac_ensemble,
    segment_patches,
    tta_probabilities,
)
from vascalc.radiograph.kauppila import SEGMENTS  # noqa: E402

H, W = 16, 32  # the bundled model's patch: 16 samples along the wall, 32 across


def _standardise(p):
    m = p.mean(axis=(-2, -1), keepdims=True)
    return (p - m) / (p.std(axis=(-2, -1), keepdims=True) + 1e-3)


def _patches(n=2, seed=0):
    return _standardise(np.random.default_rng(seed).normal(size=(n, len(SEGMENTS), H, W))).astype(np.float32)


def _nets(k=2, in_channels=1):
    import torch

    nets = []
    for i in range(k):
        torch.manual_seed(i)
        net = build_coral_network(width=4, in_channels=in_channels)
        net.eval()
        nets.append(net)
    return nets


def test_identity_and_constant_patches_are_unchanged():
    p = _patches()
    assert np.array_equal(perturb_patches(p, PatchPerturbation()), p)
    flat = np.zeros((1, len(SEGMENTS), H, W), dtype=np.float32)  # a blank crop after standardising
    for perts in TTA_SETS.values():
        for q in perts:
            assert np.array_equal(perturb_patches(flat, q), flat), q


def test_flip_and_whole_sample_shift_by_hand():
    p = _patches()
    assert np.array_equal(perturb_patches(p, PatchPerturbation(flip_t=True)), p[..., ::-1, :])
    # +1 sample along t: row r reads row r − 1, the first row repeated (nearest edge), then re-standardised
    shifted = np.concatenate([p[..., :1, :], p[..., :-1, :]], axis=-2)
    assert np.allclose(perturb_patches(p, PatchPerturbation(shift_t_px=1.0)), _standardise(shifted), atol=1e-5)
    shifted = np.concatenate([p[..., :, 1:], p[..., :, -1:]], axis=-1)  # −1 sample along d
    assert np.allclose(perturb_patches(p, PatchPerturbation(shift_d_px=-1.0)), _standardise(shifted), atol=1e-5)


@pytest.mark.parametrize("q", [PatchPerturbation(scale=1.05), PatchPerturbation(scale=0.95, shift_t_px=0.5),
                               PatchPerturbation(shift_d_px=-1.5, scale=1.1)])
def test_zoom_and_shift_match_scipy_affine_transform(q):
    p = _patches(n=1)[0, 3]
    centre = (np.array([H, W]) - 1) / 2
    shift = np.array([q.shift_t_px, q.shift_d_px])
    # output o reads input c + (o − c − shift)/scale = o/scale + (c − (c + shift)/scale)
    ref = ndimage.affine_transform(p, np.full(2, 1 / q.scale), offset=centre - (centre + shift) / q.scale,
                                   order=1, mode="nearest")
    assert np.allclose(perturb_patches(p, q), _standardise(ref), atol=1e-5)


def test_gamma_by_hand():
    p = _patches(n=1)
    lo, hi = p.min(axis=(-2, -1), keepdims=True), p.max(axis=(-2, -1), keepdims=True)
    expect = _standardise(((p - lo) / (hi - lo)) ** 0.8)
    assert np.allclose(perturb_patches(p, PatchPerturbation(gamma=0.8)), expect, atol=1e-5)
    with pytest.raises(InputError, match="gamma"):
        PatchPerturbation(gamma=0.0)


def test_tta_is_the_mean_over_views_and_folds_and_deterministic():
    cfg = AacConfig(highpass_px=1.0)  # the bundled settings: film + high-pass channel
    nets = _nets(2, in_channels=cfg.in_channels)
    p = _patches(n=2, seed=3)
    perts = TTA_SETS[DEFAULT_TTA]
    got = tta_probabilities(nets, p, cfg, perts)
    by_hand = np.mean([[coral_probabilities(net, grader_inputs(perturb_patches(p, q), cfg)) for net in nets]
                       for q in perts], axis=(0, 1)).reshape(2, len(SEGMENTS), 3)
    assert got.shape == (2, len(SEGMENTS), 3)
    assert np.allclose(got, by_hand, atol=1e-7)
    assert np.array_equal(got, tta_probabilities(nets, p, cfg, perts))  # same input → identical output
    assert np.all(np.diff(got, axis=-1) <= 0)  # still rank-consistent
    plain = np.mean([coral_probabilities(net, grader_inputs(p, cfg)) for net in nets], axis=0)
    assert np.allclose(tta_probabilities(nets, p, cfg, TTA_SETS["none"]).reshape(-1, 3), plain)
    assert not np.allclose(got.reshape(-1, 3), plain)  # the views do change a textured patch's answer
    blank = np.zeros((1, len(SEGMENTS), H, W), dtype=np.float32)
    blank_plain = np.mean([coral_probabilities(net, grader_inputs(blank, cfg)) for net in nets], axis=0)
    assert np.allclose(tta_probabilities(nets, blank, cfg, perts).reshape(-1, 3), blank_plain, atol=1e-12)


def test_expected_grade_rule_by_hand():
    prob = np.array([[0.9, 0.6, 0.2], [0.4, 0.3, 0.1], [0.3, 0.2, 0.0], [0.99, 0.98, 0.51], [0.2, 0.1, 0.1]])
    # Σ P(grade > k) = 1.7, 0.8, 0.5, 2.48, 0.4 → rounded half up
    assert grades_by_rule(prob, "expected").tolist() == [2, 1, 1, 2, 0]
    assert grades_by_rule(prob, "threshold").tolist() == [2, 0, 0, 3, 0]
    with pytest.raises(InputError, match="grade rule"):
        grades_by_rule(prob, "median")


def test_predict_grades_uses_tta_by_default_and_the_folder_can_switch_it_off(tmp_path):
    cfg = AacConfig(patch_px=H, band_px=W, highpass_px=0.0, width=4)
    nets = _nets(2)
    save_aac_ensemble(tmp_path, nets, [], {"config": {**cfg.__dict__, "band_mm": list(cfg.band_mm)}})
    image = np.random.default_rng(1).random((180, 120)).astype(np.float32)
    patches = segment_patches(image, spine_landmarks(), 1.0, patch_px=H, band_mm=cfg.band_mm, band_px=W)[None]
    grades, prob = predict_grades(tmp_path, image, spine_landmarks(), 1.0)
    expect = tta_probabilities(nets, patches, cfg, TTA_SETS[DEFAULT_TTA])[0]
    assert np.allclose([prob[s] for s in SEGMENTS], expect, atol=1e-6)
    assert [grades[s] for s in SEGMENTS] == (expect > 0.5).sum(axis=1).tolist()
    off, prob_off = predict_grades(tmp_path, image, spine_landmarks(), 1.0, tta=False)
    plain = np.mean([coral_probabilities(net, grader_inputs(patches, cfg)) for net in nets], axis=0)
    assert np.allclose([prob_off[s] for s in SEGMENTS], plain, atol=1e-6)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert grader_tta(meta) == DEFAULT_TTA and grader_tta_method(meta)["tta_views"] == len(TTA_SETS[DEFAULT_TTA])
    meta["inference"] = {"grader_tta": False}
    (tmp_path / "model.json").write_text(json.dumps(meta))
    assert predict_grades(tmp_path, image, spine_landmarks(), 1.0) == (off, prob_off)
    assert grader_tta_method(meta) == {"tta": "none", "tta_views": 1, "grade_rule": "threshold",
                                       "tta_perturbations": [PatchPerturbation().__dict__]}
    with pytest.raises(InputError, match="test-time augmentation"):
        grader_tta(meta, "spin")


def test_bundled_result_records_the_grader_inference(tmp_path):
    from PIL import Image

    from vascalc.phantoms.lateral_spine import make_lateral_spine
    from vascalc.radiograph.learned import BUNDLED_MODEL, score_radiograph_learned

    film = make_lateral_spine(4_000_000, chain="radiograph", pixel_spacing_mm=0.6)  # a validation seed
    path = tmp_path / "film.png"
    Image.fromarray((film.image * 65535).astype(np.uint16)).save(path)
    result = score_radiograph_learned(path, pixel_spacing_mm=0.6)
    inference = result.method["grader_inference"]
    assert inference["tta"] == DEFAULT_TTA and inference["tta_views"] == 10 and inference["grade_rule"] == "threshold"
    # the recorded probabilities are the TTA ensemble's on the film and corners the pipeline used
    _, prob = predict_grades(BUNDLED_MODEL, result.radiograph.image, result.localisation.vertebrae, 0.6)
    _, prob_off = predict_grades(BUNDLED_MODEL, result.radiograph.image, result.localisation.vertebrae, 0.6, tta=False)
    assert result.method["segment_probabilities_gt"] == prob != prob_off


def test_validate_grader_tta_compares_sets_on_the_same_validation_films():
    from vascalc.learn.aac import validate_grader_tta
    from vascalc.radiograph.learned import BUNDLED_MODEL

    r = validate_grader_tta(BUNDLED_MODEL, n_radiograph=3, n_dxa=2, candidates=("flip",),
                            rules=("threshold", "expected"), n_boot=50)
    assert set(r) == {"none", "flip"}  # the reference is always added
    for rule in ("threshold", "expected"):
        none = r["none"][rule]
        assert none["delta_mae_vs_none"] == 0.0 and none["delta_mae_ci95"] == [0.0, 0.0]
        assert none["radiograph_true"]["n"] == 3 and none["dxa_true"]["n"] == 2
        # pooled = film-weighted mean of the sub-sets; Δ = difference of the pooled MAEs
        pooled = (3 * r["flip"][rule]["radiograph_true"]["mae"] + 2 * r["flip"][rule]["dxa_true"]["mae"]) / 5
        assert r["flip"][rule]["pooled_mae"] == pytest.approx(pooled, abs=1e-3)
        assert r["flip"][rule]["delta_mae_vs_none"] == pytest.approx(
            r["flip"][rule]["pooled_mae"] - none["pooled_mae"], abs=1e-3)


def test_validate_grader_tta_valblur_subsets_match_grading_the_blurred_films_directly():
    """The ``valblur`` sub-set is the blurred copy of the same radiograph-chain validation films
    graded with their true landmarks: its MAE and bias equal an independent recomputation with
    blur_validation_film + predict_grades (no TTA); the pairing against ``reference`` is exact."""
    from vascalc.learn.aac import (VALIDATION_SEED_OFFSET, blur_validation_film, synthetic_case,
                                   validate_grader_tta)
    from vascalc.radiograph.learned import BUNDLED_MODEL

    r = validate_grader_tta(BUNDLED_MODEL, n_radiograph=3, n_dxa=0, candidates=("flip",), n_boot=50,
                            valblur=True, reference="flip")
    none = r["none"]["threshold"]
    assert set(none) >= {"radiograph_true", "radiograph_valblur_true"} and "dxa_true" not in none
    errors = []
    for i in range(3):
        c = synthetic_case(VALIDATION_SEED_OFFSET + i)
        blurred = blur_validation_film(c.image, c.pixel_spacing_mm, c.seed)
        assert np.abs(blurred - c.image).mean() > 1e-3  # the copy really is a different film
        grades, _ = predict_grades(BUNDLED_MODEL, blurred, c.vertebrae, c.pixel_spacing_mm, tta=False)
        errors.append(sum(grades.values()) - sum(c.grades.values()))
    sub = none["radiograph_valblur_true"]
    assert sub["n"] == 3
    assert sub["mae"] == pytest.approx(np.mean(np.abs(errors)), abs=1e-4)
    assert sub["bias"] == pytest.approx(np.mean(errors), abs=1e-4)
    # Δ against the reference: zero for the reference itself, the pooled difference for "none"
    assert r["flip"]["threshold"]["delta_mae_vs_flip"] == 0.0
    assert none["delta_mae_vs_flip"] == pytest.approx(none["pooled_mae"] - r["flip"]["threshold"]["pooled_mae"], abs=1e-3)
    with pytest.raises(InputError, match="unknown TTA set"):
        validate_grader_tta(BUNDLED_MODEL, n_radiograph=1, n_dxa=0, candidates=("spin",))
