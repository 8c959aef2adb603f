"""Grader inputs of the finer demo model: context rows, coordinate channels and the rank-aware
contrastive term (vascalc.learn.aac), checked by hand on tiny inputs."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("monai")

import torch  # noqa: E402

from vascalc.errors import InputError  # noqa: E402
from vascalc.learn.aac import (  # noqa: E402
    AacConfig,
    coral_probabilities,
    grader_inputs,
    grades_from_probabilities,
    highpass_residual,
    load_aac_ensemble,
    predict_grades,
    rank_contrastive_loss,
    save_aac_ensemble,
    segment_patches,
    train_model,
)
from aac_fixtures import spine_landmarks, stripe_patches  # noqa: E402
from vascalc.radiograph.kauppila import SEGMENTS  # noqa: E402

P = 16


def test_rank_contrastive_loss_by_hand():
    # unit vectors (1,0), (0,1), (1,1)/√2, (−1,0) with grades 0, 0, 1, 3 and margin m = 0.5
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [-3.0, 0.0]])
    grades = torch.tensor([0, 0, 1, 3])
    # pairs: (0,1) equal grades → D² = 2; (0,2), (1,2): Δ=1, D = √(2−√2) ≈ 0.765 > 0.5 → 0;
    # (0,3): Δ=3, D = 2 > 1.5 → 0; (1,3): Δ=3, D = √2 < 1.5 → (1.5 − √2)²; (2,3): Δ=2, D = √(2+√2) > 1 → 0
    expected = (2.0 + (1.5 - np.sqrt(2.0)) ** 2) / 6
    assert float(rank_contrastive_loss(emb, grades, margin=0.5)) == pytest.approx(expected, rel=1e-6)
    # equal grades on one point and different grades far enough apart: nothing to pull or push
    assert float(rank_contrastive_loss(torch.tensor([[1.0, 0.0], [5.0, 0.0], [-1.0, 0.0]]),
                                       torch.tensor([2, 2, 0]), margin=0.5)) == pytest.approx(0.0, abs=1e-9)


def test_rank_contrastive_gradient_pulls_equal_and_pushes_different_grades():
    def moved(grades):
        emb = torch.tensor([[1.0, 0.1], [1.0, -0.1]], requires_grad=True)
        rank_contrastive_loss(emb, torch.tensor(grades), margin=0.5).backward()
        before = torch.nn.functional.normalize(emb.detach(), dim=1)
        after = torch.nn.functional.normalize(emb.detach() - 0.1 * emb.grad, dim=1)
        return float(torch.dist(*after)), float(torch.dist(*before))

    after, before = moved([1, 1])
    assert after < before  # equal grades pulled together
    after, before = moved([1, 3])
    assert after > before  # D ≈ 0.2 < m·2 = 1: grades 1 and 3 pushed apart


def test_context_rows_show_the_neighbouring_level():
    """A line over rows 55–80 (inside L2's level, 50–85) appears in L1's patch only in its lower context rows."""
    image = np.zeros((180, 120), dtype=np.float32)
    image[55:80, 54:57] = 1.0
    patches = segment_patches(image, spine_landmarks(), 1.0, patch_px=P, band_mm=(0.0, 30.0), band_px=P, context_px=4)
    assert patches.shape == (8, P + 8, P)
    names = list(SEGMENTS)
    l1 = patches[names.index("L1_posterior")]
    col = int(np.argmax(l1.max(axis=0)))
    assert 2 <= col <= 3  # 4–6 mm in front of the border, 2-mm columns
    # L1's context below starts at the L1/L2 mid-point (row 50) with 35/16 mm rows: centres 51.1, 53.3, 55.5, 57.7
    profile = l1[:, col]
    assert profile[22] > 0.5 * profile.max() and profile[23] > 0.5 * profile.max()
    assert np.all(profile[4:20] < 0.25 * profile.max())  # the graded level itself is clear
    l2 = patches[names.index("L2_posterior")][:, col]
    lit = l2[4:20] > 0.5 * l2.max()  # 25 of the level's 35 mm: ≈ 11.4 of 16 rows
    assert 11 <= lit.sum() <= 13


def test_grader_inputs_channels():
    cfg = AacConfig(patch_px=P, band_px=P, coord_channels=True, context=0.25, highpass_px=0.0)
    assert cfg.context_px == 4 and cfg.in_channels == 4
    patches = np.random.default_rng(0).normal(size=(2, 8, P + 8, P)).astype(np.float32)
    x = grader_inputs(patches, cfg)
    assert x.shape == (16, 4, P + 8, P)
    assert np.array_equal(x[:, 0], patches.reshape(16, P + 8, P))
    ant, post = SEGMENTS.index("L3_anterior"), SEGMENTS.index("L3_posterior")
    # d runs −1 → +1 from the vertebral border outwards; anterior patches are mirrored, so reversed there
    assert x[post, 1, 0, 0] == -1.0 and x[post, 1, 0, -1] == 1.0
    assert x[ant, 1, 0, 0] == 1.0 and x[ant, 1, 0, -1] == -1.0
    assert np.all(x[ant, 2] == 1.0) and np.all(x[post, 2] == -1.0)
    assert np.all(x[post, 3, :4] == -1.0) and np.all(x[post, 3, 4:-4] == 1.0) and np.all(x[post, 3, -4:] == -1.0)
    assert grader_inputs(patches[:, :, 4:-4], AacConfig(patch_px=P, band_px=P, highpass_px=0.0)).shape == (16, 1, P, P)
    assert AacConfig().in_channels == 2  # the default: film + high-pass residual
    with pytest.raises(InputError, match="segment patches"):
        grader_inputs(patches[0], cfg)
    with pytest.raises(InputError, match="loss"):
        AacConfig(loss="triplet")


def test_highpass_channel_keeps_a_faint_line_and_drops_a_ramp():
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:32, 0:32].astype(np.float32)
    # a steep soft-tissue ramp (30 units across the patch), unit noise, and a 3-unit line at column 20
    patch = 1.0 * cols + rng.normal(0.0, 1.0, (32, 32)).astype(np.float32)
    patch[:, 20] += 3.0
    res = highpass_residual(patch, 2.0)
    assert int(np.argmax(res[4:-4].mean(axis=0))) == 20  # the line, not the ramp, dominates
    assert res[4:-4, 20].mean() > 2.0 and abs(float(np.median(res[4:-4, 4:16]))) < 0.3
    assert np.allclose(highpass_residual(np.full((2, 8, 8), 5.0), 1.5), 0.0)  # flat → 0
    cfg = AacConfig(patch_px=P, band_px=P, highpass_px=1.5, coord_channels=True)
    assert cfg.in_channels == 5
    x = grader_inputs(patch[None, None, :P, :P].repeat(8, axis=1), cfg)
    assert x.shape == (8, 5, P, P) and np.allclose(x[0, 1], highpass_residual(patch[:P, :P], 1.5))


def test_rank_contrastive_training_lowers_the_loss_and_beats_chance():
    cfg = AacConfig(patch_px=P, band_px=P, epochs=25, batch_size=8, learning_rate=5e-3, width=4,
                    loss="coral+rank_contrastive", rank_weight=0.5, highpass_px=0.0)
    x, g = stripe_patches(40, seed=1, patch_px=P)
    with pytest.raises(InputError, match="channel"):  # one-channel patches, two-channel settings
        train_model("coral", x, g, AacConfig(patch_px=P, band_px=P, epochs=1), seed=0)
    net, losses = train_model("coral", x, g, cfg, seed=0)
    assert losses[-1] < 0.6 * losses[0]
    xt, gt = stripe_patches(40, seed=2, patch_px=P)
    pred = grades_from_probabilities(coral_probabilities(net, xt))
    assert np.mean(pred == gt) > 0.5  # chance: 0.25


def test_coordinate_channel_model_round_trip(tmp_path):
    cfg = AacConfig(patch_px=P, band_px=P, epochs=1, batch_size=8, width=4, n_folds=2, coord_channels=True,
                    context=0.25, regressor=False)
    patches = np.random.default_rng(3).normal(size=(2, 8, P + 8, P)).astype(np.float32)
    x = grader_inputs(patches, cfg)
    net, _ = train_model("coral", x, np.arange(16) % 4, cfg, seed=0)
    save_aac_ensemble(tmp_path, [net], [], {"config": {**cfg.__dict__, "band_mm": list(cfg.band_mm)}})
    loaded = load_aac_ensemble(tmp_path)
    assert loaded.config == cfg
    assert np.array_equal(coral_probabilities(net, x), coral_probabilities(loaded.graders[0], x))
    image = np.random.default_rng(1).random((180, 120)).astype(np.float32)
    grades, prob = predict_grades(tmp_path, image, spine_landmarks(), 1.0)
    assert list(grades) == list(SEGMENTS)
    assert all(grades[s] == int((np.array(prob[s]) > 0.5).sum()) for s in SEGMENTS)


def test_synthetic_training_uses_only_the_training_chain_and_seeds(tmp_path, monkeypatch):
    """Held-out chains (DXA, fine pixels, the 3-D phantom DRR) and held-out/validation/calibration
    seeds never reach training: every film train_aac_grader draws is recorded."""
    import vascalc.learn.aac as aac

    drawn = []
    real = aac.synthetic_case

    def spy(seed, *, source="radiograph", vary=True):
        drawn.append((seed, source))
        return real(seed, source=source, vary=vary)

    monkeypatch.setattr(aac, "synthetic_case", spy)
    cfg = AacConfig(n_folds=2, batch_size=8, width=4, regressor=False)
    report = aac.train_aac_grader(tmp_path, n_train=4, seed=2, epochs=1, config=cfg)
    assert [s for s, _ in drawn] == [20_000, 20_001, 20_002, 20_003]
    assert {src for _, src in drawn} == {"radiograph"}
    assert all(s < aac.TEST_SEED_OFFSET for s, _ in drawn)
    assert report["config"]["highpass_px"] == 1.0 and report["train_seeds"] == [20_000, 20_003]
    assert aac.load_aac_ensemble(tmp_path).config.in_channels == 2


def test_augment_film_is_seeded_and_only_blurs_or_adds_noise():
    from vascalc.learn.aac import augment_film

    image = np.zeros((64, 64), dtype=np.float32)
    image[:, 32] = 1.0  # one sharp line
    outs = {s: augment_film(image, (0.5, 0.5), s, max_blur_fwhm_mm=2.5, max_noise=0.02) for s in range(20)}
    untouched = [s for s, o in outs.items() if o is image]
    assert 3 <= len(untouched) <= 17  # probability 1/2 per film
    for s, o in outs.items():
        assert np.array_equal(o, augment_film(image, (0.5, 0.5), s, max_blur_fwhm_mm=2.5, max_noise=0.02))
        assert o.min() >= 0.0 and o.max() <= 1.0
        if o is not image:
            assert o[:, 32].mean() < 1.0 or np.abs(o - image).max() > 0  # blurred or noisy
    # blur only: the line's profile keeps its total (Gaussian, 'nearest' edges far away) and spreads
    blurred = next(o for s in range(50) if (o := augment_film(image, (0.5, 0.5), s, max_blur_fwhm_mm=2.5,
                                                              max_noise=0.0)) is not image and o[:, 32].mean() < 0.9)
    assert blurred[:, 24:41].sum(axis=1) == pytest.approx(np.ones(64), rel=1e-3)
    assert augment_film(image, (0.5, 0.5), 0, max_blur_fwhm_mm=0.0, max_noise=0.0) is image
