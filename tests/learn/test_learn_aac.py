"""Learned AAC-24 graders (vascalc.learn.aac): CORAL by hand, a tiny training run, save/load, prediction."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("monai")

import torch  # noqa: E402

from vascalc.learn.aac import (  # noqa: E402
    AacConfig,
    build_coral_network,
    coral_levels,
    coral_loss,
    coral_probabilities,
    grades_from_probabilities,
    load_aac_ensemble,
    predict_aac24_regression,
    predict_grades,
    save_aac_ensemble,
    segment_patches,
    train_model,
)
from aac_fixtures import spine_landmarks, stripe_patches  # noqa: E402
from vascalc.phantoms.types import VertebraLandmark  # noqa: E402
from vascalc.radiograph.kauppila import SEGMENTS  # noqa: E402

P = 16  # tiny patches keep the whole file fast


def test_coral_levels_and_loss_by_hand():
    levels = coral_levels([0, 1, 3])
    assert levels.tolist() == [[0, 0, 0], [1, 0, 0], [1, 1, 1]]
    logits = torch.tensor([[0.0, 1.0, -2.0], [2.0, 0.5, 0.0], [1.0, 1.0, 1.0]])
    y = torch.from_numpy(levels)
    # −[y log σ(z) + (1 − y) log(1 − σ(z))] summed over the 3 tasks, mean over the 3 samples
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    z = logits.numpy().astype(float)
    expected = -(levels * np.log(sig(z)) + (1 - levels) * np.log(1 - sig(z))).sum(axis=1).mean()
    assert float(coral_loss(logits, y)) == pytest.approx(expected, rel=1e-6)
    assert grades_from_probabilities(np.array([[0.9, 0.6, 0.2], [0.4, 0.3, 0.1], [0.99, 0.98, 0.51]])).tolist() == [2, 0, 3]


def test_coral_head_is_rank_consistent():
    net = build_coral_network(width=4)
    with torch.no_grad():
        net.first_bias.fill_(1.0)
        net.bias_steps.copy_(torch.tensor([-3.0, 2.0]))  # any raw values: softplus keeps the steps > 0
    b = net.biases().detach().numpy()
    assert b[0] == pytest.approx(1.0)
    assert b[1] == pytest.approx(1.0 - np.log1p(np.exp(-3.0)), rel=1e-5)
    assert b[2] == pytest.approx(b[1] - np.log1p(np.exp(2.0)), rel=1e-5)
    net.eval()
    prob = coral_probabilities(net, np.random.default_rng(0).normal(size=(10, P, P)).astype(np.float32))
    assert prob.shape == (10, 3)
    assert np.all(np.diff(prob, axis=1) < 0)  # P(grade > k) strictly decreases with k


def _tiny_config(**kw) -> AacConfig:
    # raw one-channel patches: the high-pass channel of the default settings is tested in test_learn_aac_rank.py
    return AacConfig(patch_px=P, epochs=kw.pop("epochs", 25), batch_size=8, learning_rate=5e-3, width=4,
                     highpass_px=0.0, **kw)


def test_tiny_training_lowers_loss_and_beats_chance():
    x, g = stripe_patches(40, seed=1, patch_px=P)
    net, losses = train_model("coral", x, g, _tiny_config(), seed=0)
    assert losses[-1] < 0.6 * losses[0]
    xt, gt = stripe_patches(40, seed=2, patch_px=P)
    pred = grades_from_probabilities(coral_probabilities(net, xt))
    assert np.mean(pred == gt) > 0.5  # chance is 0.25 with 4 balanced grades
    assert np.mean(np.abs(pred - gt)) < 0.75


def test_training_is_deterministic_with_a_seed():
    x, g = stripe_patches(16, seed=3, patch_px=P)
    cfg = _tiny_config(epochs=2)
    a, la = train_model("coral", x, g, cfg, seed=5)
    b, lb = train_model("coral", x, g, cfg, seed=5)
    assert la == lb
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(ta, tb), name


def test_segment_patches_follow_the_walls():
    """A bright vertical line 5 mm in front of the spine over L2's level only lights L2's posterior
    patch at the near columns and its mirrored anterior patch at the far columns."""
    image = np.zeros((180, 120), dtype=np.float32)
    # L2's level runs between the disc midpoints, rows 50–85; a 3-px line (cols 54–56, i.e. 4–6 mm
    # in front of the anterior border at col 60) survives the 2-mm column sampling of the patch
    image[55:80, 54:57] = 1.0
    patches = segment_patches(image, spine_landmarks(), 1.0, patch_px=P, band_mm=(0.0, 30.0))
    assert patches.shape == (8, P, P)
    names = list(SEGMENTS)
    post, ant = patches[names.index("L2_posterior")], patches[names.index("L2_anterior")]
    col = int(np.argmax(post.mean(axis=0)))
    assert 2 <= col <= 3  # 4–6 mm of a 0–30 mm band sampled every 2 mm: columns 2–3
    assert np.array_equal(ant, post[:, ::-1])  # the same level, mirrored along d
    # the line covers rows 55–80 of the level's 50–85, i.e. 25/35 of its height: ≈ 11.4 of 16 patch rows
    lit = post[:, col] > 0.5 * post[:, col].max()
    assert 11 <= lit.sum() <= 13 and np.all(post[:, 6:] < 0)
    assert np.allclose(patches[names.index("L1_posterior")], 0.0)  # flat patch → 0 after standardising


def test_save_load_round_trip_and_prediction(tmp_path):
    x, g = stripe_patches(16, seed=4, patch_px=P)
    cfg = _tiny_config(epochs=1, n_folds=2)
    nets = [train_model("coral", x, g, cfg, seed=k)[0] for k in range(2)]
    crops = np.random.default_rng(0).normal(size=(6, 4 * P, P)).astype(np.float32)
    reg = [train_model("regressor", crops, np.array([0, 3, 6, 9, 12, 24], dtype=np.float32), cfg, seed=9)[0]]
    meta = {"config": {**cfg.__dict__, "band_mm": list(cfg.band_mm)}}
    save_aac_ensemble(tmp_path, nets, reg, meta)
    loaded = load_aac_ensemble(tmp_path)
    assert len(loaded.graders) == 2 and len(loaded.regressors) == 1 and loaded.config == cfg
    for a, b in zip(nets, loaded.graders):
        assert np.array_equal(coral_probabilities(a, x), coral_probabilities(b, x))
    image = np.random.default_rng(1).random((180, 120)).astype(np.float32)
    grades, prob = predict_grades(tmp_path, image, spine_landmarks(), 1.0)
    assert list(grades) == list(SEGMENTS) and all(v in (0, 1, 2, 3) for v in grades.values())
    for s in SEGMENTS:
        p = np.array(prob[s])
        assert p.shape == (3,) and np.all((p > 0) & (p < 1)) and np.all(np.diff(p) <= 0)
        assert grades[s] == int((p > 0.5).sum())
    score = predict_aac24_regression(loaded, image, spine_landmarks(), 1.0)
    assert 0.0 <= score <= 24.0


# ----------------------------------------------------------------------------- learned localiser

def test_localiser_canvas_mapping_and_decoding_by_hand():
    from vascalc.learn.aac_localiser import LocaliserConfig, _canvas_to_film, corner_targets, decode, to_canvas

    cfg = LocaliserConfig(mm_per_px=4.0, canvas_px=32)
    image = np.zeros((100, 80), dtype=np.float32)  # 1-mm pixels: 25 × 20 canvas pixels, centred on 32
    canvas, off, zoom = to_canvas(image, (1.0, 1.0), cfg)
    assert canvas.shape == (32, 32) and np.allclose(zoom, 0.25) and off.tolist() == [3.0, 6.0]
    lm = (VertebraLandmark("L1", ((10.0, 20.0), (10.0, 50.0), (40.0, 50.0), (40.0, 20.0)), (25.0, 35.0)),)
    pts = corner_targets(lm, off, zoom)
    assert np.isnan(pts[0]).all() and np.allclose(_canvas_to_film(pts[4:8], off, zoom), lm[0].corners_px)
    # a logit map peaked between pixels (10, 12) and (10, 13) decodes to column 12.5
    logits = np.full((1, 32, 32), -50.0)
    logits[0, 10, 12] = logits[0, 10, 13] = 5.0
    assert np.allclose(decode(logits)[0], [10.0, 12.5], atol=1e-6)


def test_localiser_tiny_training_lowers_the_loss():
    from vascalc.learn.aac_localiser import LocaliserConfig, locate_learned, LocaliserModel, train_localiser
    from vascalc.phantoms.lateral_spine import ChainParams, make_lateral_spine

    films = [make_lateral_spine(s, chain=ChainParams(pixel_spacing_mm=2.0)) for s in range(6)]
    cfg = LocaliserConfig(mm_per_px=8.0, canvas_px=48, channels=(4, 8), epochs=4, batch_size=3)
    net, losses = train_localiser([f.image for f in films], [f.pixel_spacing_mm for f in films],
                                  [f.vertebrae for f in films], cfg, seed=0)
    assert losses[-1] < losses[0]
    found = locate_learned(LocaliserModel((net,), cfg, {}), films[0].image, films[0].pixel_spacing_mm)
    assert [v.name for v in found] == ["T12", "L1", "L2", "L3", "L4", "L5"]
    assert all(0 <= r < films[0].image.shape[0] + 40 for v in found for r, _ in v.corners_px)


# ----------------------------------------------------------------------------- calibration (thresholds τ_k)

def test_fit_coral_thresholds_recovers_a_known_shift():
    """An under-confident grader: P_k = 0.38 when grade > k, 0.28 when not, so CORAL's 0.5 rule grades
    everything 0 while any τ in [0.28, 0.38) is error-free; the tie rule picks the grid value closest to
    0.5, i.e. 0.37."""
    from vascalc.learn.aac import fit_coral_thresholds

    g = np.tile(np.arange(4), 25)
    prob = np.where(coral_levels(g).astype(bool), 0.38, 0.28)
    tau = fit_coral_thresholds(prob, g)
    assert np.allclose(tau, 0.37)
    assert np.array_equal(grades_from_probabilities(prob, tau), g)
    assert np.all(grades_from_probabilities(prob) == 0)  # the plain 0.5 rule under-grades everything
    assert np.array_equal(fit_coral_thresholds(prob, g), tau)  # deterministic


def test_calibrated_grade_is_monotone_in_probability():
    from vascalc.learn.aac import fit_total_thresholds

    rng = np.random.default_rng(5)
    truth = rng.integers(0, 4, size=(40, 8))
    # probabilities that systematically miss grade boundaries by 0.15 (under-grading)
    base = np.where(coral_levels(truth.ravel()).astype(bool), 0.45, 0.1) + rng.uniform(-0.04, 0.04, (320, 3))
    prob = np.sort(base, axis=1)[:, ::-1].reshape(40, 8, 3)  # rank-consistent P_0 ≥ P_1 ≥ P_2
    tau = fit_total_thresholds(prob, truth)
    assert np.all((tau > 0.14) & (tau < 0.41))  # between the two clusters
    pred = grades_from_probabilities(prob, tau)
    assert np.array_equal(pred, truth)  # every film's AAC-24 (and grade) recovered
    assert np.array_equal(fit_total_thresholds(prob, truth), tau)
    # monotone: raising every P_k never lowers a grade
    assert np.all(grades_from_probabilities(np.clip(prob + 0.1, 0, 1), tau) >= pred)


def test_predict_grades_applies_stored_calibration(tmp_path):
    import json

    x, g = stripe_patches(16, seed=4, patch_px=P)
    cfg = _tiny_config(epochs=1, n_folds=2)
    nets = [train_model("coral", x, g, cfg, seed=k)[0] for k in range(2)]
    save_aac_ensemble(tmp_path, nets, [], {"config": {**cfg.__dict__, "band_mm": list(cfg.band_mm)}})
    image = np.random.default_rng(1).random((180, 120)).astype(np.float32)
    plain, prob = predict_grades(tmp_path, image, spine_landmarks(), 1.0)
    meta = json.loads((tmp_path / "model.json").read_text())
    for tau, expect in (([0.0, 0.0, 0.0], 3), ([1.0, 1.0, 1.0], 0)):  # extreme thresholds: known answers
        meta["calibration"] = {"version": 1, "method": "coral_thresholds", "thresholds": tau}
        (tmp_path / "model.json").write_text(json.dumps(meta))
        cal, prob2 = predict_grades(tmp_path, image, spine_landmarks(), 1.0)
        assert prob2 == prob and set(cal.values()) == {expect}
        again, _ = predict_grades(tmp_path, image, spine_landmarks(), 1.0, calibrated=False)
        assert again == plain  # the uncalibrated path is kept
    meta["calibration"] = {"version": 99, "method": "coral_thresholds", "thresholds": [0.5] * 3}
    (tmp_path / "model.json").write_text(json.dumps(meta))
    from vascalc.errors import InputError

    with pytest.raises(InputError, match="calibration"):
        predict_grades(tmp_path, image, spine_landmarks(), 1.0)


def test_bundled_model_selection_used_only_disjoint_seeds():
    """The bundled model's decision rule was tried on calibration films and selected on validation
    films — neither may overlap the training (< 10⁶) or held-out (10⁶ … 2·10⁶ − 1) seeds."""
    import json

    from vascalc.learn.aac import (
        CALIBRATION_SEED_OFFSET,
        TEST_SEED_OFFSET,
        VALIDATION_SEED_OFFSET,
        calibration_thresholds,
        load_aac_ensemble,
    )
    from vascalc.radiograph.learned import BUNDLED_MODEL

    meta = json.loads((BUNDLED_MODEL / "model.json").read_text())
    v_lo, v_hi = meta["selection"]["validation_seeds"]
    assert v_lo >= VALIDATION_SEED_OFFSET and v_lo >= 2 * TEST_SEED_OFFSET and v_hi < VALIDATION_SEED_OFFSET + 10**6
    applied = calibration_thresholds(load_aac_ensemble(BUNDLED_MODEL))
    cal = meta.get("calibration") or meta.get("calibration_not_applied")
    if cal is None:  # v5 (round 18): no calibration was fitted, so CORAL's plain 0.5 rule applies
        assert applied is None
        return
    lo, hi = cal["seeds"]
    assert lo >= CALIBRATION_SEED_OFFSET and hi < CALIBRATION_SEED_OFFSET + 10_000
    assert hi < TEST_SEED_OFFSET or lo >= 2 * TEST_SEED_OFFSET  # never a held-out or training seed
    assert len(cal["thresholds"]) == 3
    if "calibration" in meta:  # kept only when it lowered the AAC-24 error
        assert cal["after"]["aac24_mae"] <= cal["before"]["aac24_mae"] and applied is not None
    else:  # rejected: it raised the error on the calibration or the validation films, and the plain
        # 0.5 rule is what predict_grades applies (v3: lower on calibration films, higher on validation)
        val = cal.get("validation_films", {})
        raised_on_validation = val.get("aac24_mae_calibrated", 0.0) > val.get("aac24_mae_plain_0.5", 0.0)
        assert cal["after"]["aac24_mae"] > cal["before"]["aac24_mae"] or raised_on_validation
        assert applied is None
        v_lo, v_hi = val["seeds"]
        assert v_lo >= VALIDATION_SEED_OFFSET and v_hi < VALIDATION_SEED_OFFSET + 10**6


def test_a_labelled_film_without_spacing_takes_it_from_its_landmarks():
    from vascalc.learn.aac_data import LabelledFilm, film_spacing_mm
    from vascalc.radiograph.spacing import NOMINAL_GAP_MM

    def body(name, row):  # a 40 × 40 px body centred at (row, 100)
        return VertebraLandmark(name, ((row - 20, 80), (row - 20, 120), (row + 20, 120), (row + 20, 80)), (row, 100))

    # L1…L4 centres 70 px apart: spacing = mean nominal gap (mm) / 70 px
    vertebrae = tuple(body(n, 100 + 70 * i) for i, n in enumerate(("L1", "L2", "L3", "L4")))
    film = LabelledFilm("f.png", np.zeros((500, 300)), None, vertebrae, None, 0)
    nominal = np.mean([NOMINAL_GAP_MM[("L1", "L2")], NOMINAL_GAP_MM[("L2", "L3")], NOMINAL_GAP_MM[("L3", "L4")]])
    assert film_spacing_mm(film) == pytest.approx((nominal / 70.0,) * 2)
    given = LabelledFilm("g.png", film.image, (0.5, 0.5), vertebrae, None, 0)
    assert film_spacing_mm(given) == (0.5, 0.5)
