"""Learned L1–L4 localiser, inference side: left/right mirror mapping of landmarks, test-time flip
averaging (exact equivariance on a mirrored film), the geometric landmark check on spines with known
defects, and the score path that flags a film whose landmarks fail the check."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from vascalc.learn.aac_localiser import CHECK_LIMITS, check_landmarks, mirror_points
from vascalc.phantoms.types import VertebraLandmark


def _spine(names=("L1", "L2", "L3", "L4"), *, height_px=50.0, pitch_px=66.0, anterior_col=60.0, depth_px=70.0):
    """Rectangular bodies facing left (anterior at ``anterior_col``): corners AS, PS, PI, AI."""
    out = []
    for i, name in enumerate(names):
        top = 20.0 + pitch_px * i
        bottom = top + height_px
        a, p = anterior_col, anterior_col + depth_px
        out.append(VertebraLandmark(name=name, corners_px=((top, a), (top, p), (bottom, p), (bottom, a)),
                                    centre_px=((top + bottom) / 2, (a + p) / 2)))
    return tuple(out)


def _replace(spine, name, corners):
    return tuple(VertebraLandmark(v.name, tuple(map(tuple, corners)), tuple(np.mean(corners, axis=0)))
                 if v.name == name else v for v in spine)


def test_mirror_points_maps_columns_and_is_an_involution():
    p = np.array([[3.0, 0.0], [5.5, 2.25], [7.0, 9.0]])
    m = mirror_points(p, 10)
    np.testing.assert_allclose(m, [[3.0, 9.0], [5.5, 6.75], [7.0, 0.0]])
    np.testing.assert_allclose(mirror_points(m, 10), p)
    # a pixel index and its mirrored index address the same value of image[:, ::-1]
    img = np.arange(40.0).reshape(4, 10)
    r, c = mirror_points([[2.0, 3.0]], 10)[0].astype(int)
    assert img[:, ::-1][r, c] == img[2, 3]


def test_flip_average_mirrors_a_fixed_heatmap_back():
    torch = pytest.importorskip("torch")
    from vascalc.learn.aac_localiser import decode, heatmap_logits

    n = 16

    class Peak(torch.nn.Module):  # ignores its input: one peak at (5, 3) in every view
        def forward(self, x):
            out = torch.zeros((x.shape[0], 1, n, n))
            out[:, 0, 5, 3] = 10.0
            return out

    canvas = np.random.default_rng(0).normal(size=(n, n)).astype(np.float32)
    plain = heatmap_logits([Peak()], canvas)
    both = heatmap_logits([Peak()], canvas, flip_average=True)
    assert plain[0, 5, 3] == 10.0 and np.count_nonzero(plain) == 1
    # the mirrored view's peak lands at column n − 1 − 3 = 12 once mapped back; each view weighs ½
    assert both[0, 5, 3] == 5.0 and both[0, 5, 12] == 5.0 and np.count_nonzero(both) == 2
    # decoding the averaged map lands between the two peaks' windows only if they overlap: they do not
    assert abs(decode(both)[0, 0] - 5.0) < 1e-9


def test_flip_averaged_localiser_is_exactly_mirror_equivariant():
    """With flip averaging, locating a mirrored film gives the mirrored landmarks (a random, untrained
    U-Net: equivariance is a property of the inference, not of the training)."""
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    from vascalc.learn._deps import deterministic
    from vascalc.learn.aac_localiser import LocaliserConfig, LocaliserModel, build_localiser, locate_learned

    cfg = LocaliserConfig(canvas_px=32, channels=(4, 8))
    with deterministic(0):
        net = build_localiser(cfg).eval()
    model = LocaliserModel((net,), cfg, {"inference": {"flip_average": True}})
    assert model.flip_average
    # 4 mm pixels = the network grid (no resampling); 32 − 20 columns is even, so the canvas of the
    # mirrored film is the mirrored canvas
    film = np.random.default_rng(1).random((24, 20)).astype(np.float32)
    a = locate_learned(model, film, (4.0, 4.0))
    b = locate_learned(model, film[:, ::-1], (4.0, 4.0))
    for va, vb in zip(a, b):
        np.testing.assert_allclose(mirror_points(va.corners_px, 20), vb.corners_px, atol=2e-3)
    # without flip averaging the random network is not equivariant
    c = locate_learned(model, film[:, ::-1], (4.0, 4.0), flip_average=False)
    assert max(np.abs(mirror_points(va.corners_px, 20) - np.asarray(vc.corners_px)).max() for va, vc in zip(a, c)) > 0.1


def test_check_passes_a_regular_spine_and_reports_its_measures():
    check = check_landmarks(_spine(), (0.5, 0.5))
    assert check.ok and check.problems == () and check.flagged_levels == ()
    assert check.heights_mm == (25.0,) * 4 and check.depths_mm == (35.0,) * 4 and check.gaps_mm == (33.0,) * 3
    # facing right (anterior on the right) is as plausible
    right = tuple(VertebraLandmark(v.name, tuple((r, 200.0 - c) for r, c in v.corners_px), v.centre_px)
                  for v in _spine())
    assert check_landmarks(right, (0.5, 0.5)).ok


def test_check_flags_the_defective_level():
    spine = _spine()
    c = np.asarray(spine[1].corners_px)  # L2
    # L2's anterior-superior corner jumped up onto L1's superior endplate (anterior height 116 px against
    # 50 posterior: ratio 2.3 > 1.67). A jump of one disc only (16 px) stays within the tolerances.
    jumped = c.copy()
    jumped[0, 0] = 20.0
    assert check_landmarks(_replace(spine, "L2", np.where([[True, False], [False, False], [False, False],
                                                             [False, False]], 70.0, c)), (0.5, 0.5)).ok
    bad = check_landmarks(_replace(spine, "L2", jumped), (0.5, 0.5))
    assert not bad.ok and "L2" in bad.flagged_levels and "L4" not in bad.flagged_levels
    assert any("height ratio" in p for p in bad.problems)
    # L2 and L3 swapped: out of order along the spine
    swapped = (spine[0], dataclasses.replace(spine[2], name="L2"), dataclasses.replace(spine[1], name="L3"), spine[3])
    bad = check_landmarks(swapped, (0.5, 0.5))
    assert not bad.ok and any("out of order" in p for p in bad.problems)
    # one body mirrored (anterior corners on the posterior side): facing inconsistent
    flipped = c[[1, 0, 3, 2]]
    bad = check_landmarks(_replace(spine, "L2", flipped), (0.5, 0.5))
    assert not bad.ok and any("facing" in p for p in bad.problems)
    # a body half the height of the others
    short = c.copy()
    short[2:, 0] -= 25.0
    bad = check_landmarks(_replace(spine, "L2", short), (0.5, 0.5))
    assert bad.flagged_levels[0] == "L2" and any("height 12.5 mm" in p for p in bad.problems)
    # a missing level
    bad = check_landmarks(spine[:3], (0.5, 0.5))
    assert not bad.ok and bad.flagged_levels == ("L4",)


def test_check_tolerance_is_relative_to_the_median():
    lo, hi = CHECK_LIMITS["height"]
    spine = _spine()
    c = np.asarray(spine[3].corners_px)
    for factor, ok in ((hi - 0.05, True), (hi + 0.05, False)):
        tall = c.copy()
        tall[2:, 0] = tall[0, 0] + 50.0 * factor
        assert check_landmarks(_replace(spine, "L4", tall), (0.5, 0.5)).ok is ok


def test_true_landmarks_of_generated_films_pass_the_check():
    from vascalc.phantoms.lateral_spine import make_lateral_spine

    for seed, chain in ((4_090_001, "radiograph"), (4_090_002, "dxa"), (4_090_003, "radiograph")):
        film = make_lateral_spine(seed, chain=chain)
        check = check_landmarks(film.vertebrae, film.pixel_spacing_mm)
        assert check.ok, check.problems


def test_bundled_localiser_uses_flip_averaging():
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    from vascalc.learn.aac_localiser import load_localiser
    from vascalc.radiograph.learned import BUNDLED_MODEL

    meta = json.loads((BUNDLED_MODEL / "localiser.json").read_text())
    assert meta["inference"]["flip_average"] is True
    assert load_localiser(BUNDLED_MODEL).flip_average


def test_score_path_halves_confidence_of_levels_failing_the_check(monkeypatch, tmp_path):
    """Learned landmarks with L3 far too deep, no model-free fallback:
    the film is scored, warned about, and L3's two segments carry half the grader's confidence."""
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    import vascalc.learn.aac_localiser as loc
    import vascalc.radiograph.locate as locate
    from vascalc.errors import GeometryError
    from vascalc.phantoms.lateral_spine import make_lateral_spine
    from vascalc.radiograph.learned import score_radiograph_learned

    from PIL import Image

    from vascalc.workflows.xray import radiograph_input

    film = make_lateral_spine(4_090_005, chain="radiograph", pixel_spacing_mm=0.6)
    path = tmp_path / "film.png"
    Image.fromarray((film.image * 65535).astype(np.uint16)).save(path)
    good = score_radiograph_learned(path, pixel_spacing_mm=0.6)
    truth = {v.name: np.asarray(v.corners_px) for v in film.vertebrae}
    c = truth["L3"].copy()
    # L3's posterior corners decoded 80 % of a body depth too far back (depth 1.8× the median)
    c[1] += 0.8 * (c[1] - c[0])
    c[2] += 0.8 * (c[2] - c[3])
    broken = tuple(VertebraLandmark(v.name, tuple(map(tuple, c)) if v.name == "L3" else v.corners_px, v.centre_px)
                   for v in film.vertebrae)

    def no_model_free(*args, **kwargs):
        raise GeometryError("no spine found")

    monkeypatch.setattr(loc, "locate_learned", lambda *a, **k: broken)
    monkeypatch.setattr(locate, "locate_vertebrae", no_model_free)
    flagged = score_radiograph_learned(path, pixel_spacing_mm=0.6)
    check = flagged.method["landmark_check"]
    assert check["ok"] is False and "L3" in check["flagged_levels"] and check["landmarks_used"] == "learned"
    assert good.method["landmark_check"] == {"ok": True, "problems": [], "flagged_levels": [], "landmarks_used": "learned"}
    assert any("geometric check" in w for w in flagged.warnings)
    # the grader's own confidences on the same (broken) landmarks: halved on the flagged levels only
    from vascalc.radiograph.kauppila import spine_geometry
    from vascalc.radiograph.learned import grade_learned

    plain = {s.name: s.confidence for s in grade_learned(radiograph_input(path, 0.6)[0].image,
                                                         spine_geometry(broken, (0.6, 0.6))).result.segments}
    for s in flagged.kauppila.segments:
        factor = 0.5 if s.level in check["flagged_levels"] else 1.0
        assert s.confidence == pytest.approx(factor * plain[s.name], abs=1e-4)


def test_synthetic_training_saves_an_ensemble_with_its_inference_setting(tmp_path):
    """Two tiny networks, each on its own films: saved, reloaded, and their ensemble locates a film."""
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    from vascalc.learn.aac_localiser import LocaliserConfig, load_localiser, locate_learned, train_synthetic_localiser
    from vascalc.phantoms.lateral_spine import make_lateral_spine

    cfg = LocaliserConfig(channels=(4, 8), epochs=2, batch_size=4, n_folds=2)
    report = train_synthetic_localiser(tmp_path / "m", n_train=4, seed=0, config=cfg)
    assert len(report["loss_first_last"]) == 2
    assert all(last < first for first, last in report["loss_first_last"])  # each network's loss fell
    model = load_localiser(tmp_path / "m")
    assert len(model.networks) == 2 and model.flip_average
    film = make_lateral_spine(4_090_006, chain="radiograph")
    found = locate_learned(model, film.image, film.pixel_spacing_mm)
    assert [v.name for v in found] == ["T12", "L1", "L2", "L3", "L4", "L5"]
    assert np.isfinite(np.asarray([v.corners_px for v in found])).all()
