"""Local corner stage of the learned localiser (round 16): the body-frame patch geometry (exact
round trip, known images), the region resampling in mm, flip averaging, a tiny training run that
lowers the loss, and a model folder with / without the stage (without it: exactly the shipped path)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from vascalc.learn.aac_local import (LocalStageConfig, body_frame, film_mm_to_patch, patch_to_film_mm,
                                     resample_region, sample_patch)

SMALL = LocalStageConfig(mm_per_px=1.0, patch_px=32, channels=(4, 8, 16), epochs=6, batch_size=8,
                         learning_rate=5e-3, jitter_mm=2.0, jitter_deg=5.0)


def test_patch_film_mapping_round_trip_is_exact_and_orthonormal():
    cfg = LocalStageConfig()
    rng = np.random.default_rng(3)
    q = rng.uniform(-5, 70, size=(50, 2))
    for deg in (0.0, 17.0, -95.0):
        t = np.deg2rad(deg)
        axis = np.array([np.cos(t), np.sin(t)])
        p = patch_to_film_mm(q, (120.5, 80.25), axis, cfg)
        np.testing.assert_allclose(film_mm_to_patch(p, (120.5, 80.25), axis, cfg), q, atol=1e-9)
        # distances scale by mm_per_px exactly (a rigid map)
        np.testing.assert_allclose(np.linalg.norm(p[1:] - p[:-1], axis=1),
                                   cfg.mm_per_px * np.linalg.norm(q[1:] - q[:-1], axis=1), rtol=1e-12)
    # the patch centre is the body centre; rows run along u, columns along u turned +90°
    h = (cfg.patch_px - 1) / 2
    np.testing.assert_allclose(patch_to_film_mm([[h, h], [h + 1, h], [h, h + 1]], (10.0, 20.0), (1.0, 0.0), cfg),
                               [[10.0, 20.0], [10.0 + cfg.mm_per_px, 20.0], [10.0, 20.0 + cfg.mm_per_px]])


def test_body_frame_of_a_tilted_rectangle():
    # a 30 × 20 mm body tilted by 20°: centre is the rectangle's centre, u its superior → inferior side
    t = np.deg2rad(20.0)
    u, n = np.array([np.cos(t), np.sin(t)]), np.array([-np.sin(t), np.cos(t)])
    c0 = np.array([100.0, 50.0])
    corners = [c0 - 10 * u - 15 * n, c0 - 10 * u + 15 * n, c0 + 10 * u + 15 * n, c0 + 10 * u - 15 * n]
    centre, axis = body_frame(corners)
    np.testing.assert_allclose(centre, c0, atol=1e-12)
    np.testing.assert_allclose(axis, u, atol=1e-12)


def test_corner_targets_land_on_the_corners_of_a_drawn_body():
    """A bright tilted rectangle on a 0.5-mm film: mapped into its own patch, its corners are at
    ±10 / ±15 mm from the centre, and the patch is bright inside and dark outside near each corner."""
    cfg = LocalStageConfig(mm_per_px=1.0, patch_px=48)
    sp = 0.5
    t = np.deg2rad(-12.0)
    u, n = np.array([np.cos(t), np.sin(t)]), np.array([-np.sin(t), np.cos(t)])
    c0 = np.array([60.3, 55.1])
    rr, cc = np.mgrid[0:240, 0:240] * sp
    d = np.stack([rr - c0[0], cc - c0[1]], axis=-1)
    image = ((np.abs(d @ u) < 10) & (np.abs(d @ n) < 15)).astype(np.float32)
    corners = np.array([c0 - 10 * u - 15 * n, c0 - 10 * u + 15 * n, c0 + 10 * u + 15 * n, c0 + 10 * u - 15 * n])
    centre, axis = body_frame(corners)
    h = (cfg.patch_px - 1) / 2
    q = film_mm_to_patch(corners, centre, axis, cfg)
    np.testing.assert_allclose(q, [[h - 10, h - 15], [h - 10, h + 15], [h + 10, h + 15], [h + 10, h - 15]], atol=1e-9)
    region, origin = resample_region(image, (sp, sp), centre, 40.0, cfg.mm_per_px)
    patch = sample_patch(region, origin, cfg.mm_per_px, centre, axis, cfg)
    inside, outside = patch.max(), patch.min()
    for (r, c), (dr, dc) in zip(q, ((1, 1), (1, -1), (-1, -1), (-1, 1))):
        assert patch[int(round(r + 3 * dr)), int(round(c + 3 * dc))] == pytest.approx(inside, abs=0.05)
        assert patch[int(round(r - 3 * dr)), int(round(c - 3 * dc))] == pytest.approx(outside, abs=0.05)


def test_resample_region_reproduces_a_ramp_in_mm_at_any_pixel_size():
    """A linear ramp f(mm) = 2·row_mm − 0.5·col_mm is preserved by the anti-aliasing Gaussian and linear
    interpolation, so the region holds f at its grid points whatever the film's pixel size."""
    for sp in (0.2, 0.7, 2.0):
        shape = (int(200 / sp), int(160 / sp))
        rr, cc = np.mgrid[0:shape[0], 0:shape[1]] * sp
        image = (2.0 * rr - 0.5 * cc).astype(np.float64)
        region, origin = resample_region(image, (sp, sp), (100.0, 80.0), 30.0, 1.25)
        m = region.shape[0]
        g = origin[:, None] + np.arange(m)[None, :] * 1.25
        expected = 2.0 * g[0][:, None] - 0.5 * g[1][None, :]
        np.testing.assert_allclose(region, expected, atol=2e-3 * np.abs(expected).max())
    # axis-aligned patch at the region's own step and centre: the standardised region itself, sample for sample
    image = np.random.default_rng(0).normal(size=(80, 80)).astype(np.float32)
    cfg = LocalStageConfig(mm_per_px=1.0, patch_px=16)
    region, origin = resample_region(image, (1.0, 1.0), (39.5, 39.5), 7.5, 1.0)
    np.testing.assert_allclose(region, image[32:48, 32:48], atol=1e-6)
    patch = sample_patch(region, origin, 1.0, (39.5, 39.5), (1.0, 0.0), cfg)
    crop = image[32:48, 32:48]
    np.testing.assert_allclose(patch, (crop - crop.mean()) / (crop.std() + 1e-3), atol=1e-5)


def test_flip_average_mirrors_the_local_heatmaps_back():
    torch = pytest.importorskip("torch")
    from vascalc.learn.aac_local import local_logits

    class Peak(torch.nn.Module):  # ignores its input: one peak at (5, 3) in every view
        def forward(self, x):
            out = torch.zeros((x.shape[0], 4, 16, 16))
            out[:, :, 5, 3] = 10.0
            return out

    patches = np.zeros((2, 16, 16), np.float32)
    both = local_logits([Peak()], patches, flip_average=True)
    assert both.shape == (2, 4, 16, 16)
    assert both[0, 0, 5, 3] == 5.0 and both[0, 0, 5, 12] == 5.0 and np.count_nonzero(both[0, 0]) == 2


def _films(n, seed0=600_000):
    from vascalc.phantoms.lateral_spine import make_lateral_spine

    return [make_lateral_spine(seed0 + i, pixel_spacing_mm=(1.0, 1.5)) for i in range(n)]


def test_tiny_training_lowers_the_loss_and_is_deterministic():
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    from vascalc.learn.aac_local import body_regions, train_local_network

    bodies = [b for f in _films(3) for b in body_regions(f.image, f.pixel_spacing_mm, f.vertebrae, SMALL)]
    assert len(bodies) == 18 and bodies[0]["region"].ndim == 2
    net, losses = train_local_network(bodies, SMALL, seed=1)
    # uniform heatmaps cost log(32²) = 6.93 nats; the loss must fall well below where it started
    assert losses[-1] < losses[0] - 0.3, losses
    _, again = train_local_network(bodies, SMALL, seed=1)
    assert again == losses


def test_model_folder_with_and_without_local_stage(tmp_path):
    """Without a ``local_stage`` block a folder behaves exactly as before (coarse → repair → refine);
    with one, the stage runs after refinement and its block / weights are stored next to the coarse ones."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("monai")
    from vascalc.learn.aac_local import LOCAL_BLOCK, apply_local_stage, build_local_network, save_local_stage
    from vascalc.errors import InputError
    from vascalc.learn.aac_localiser import (corner_error_mm, load_localiser, locate_learned, refine_corners,
                                             repair_heights, validate_localiser)
    from vascalc.radiograph.learned import BUNDLED_MODEL

    folder = tmp_path / "loc"
    folder.mkdir()
    # the bundled coarse localiser without its local stage (bundled since round 16c): the plain starting point
    for path in BUNDLED_MODEL.glob("localiser_fold*.pt"):
        shutil.copy(path, folder / path.name)
    meta = json.loads((BUNDLED_MODEL / "localiser.json").read_text())
    meta.pop(LOCAL_BLOCK, None)
    (folder / "localiser.json").write_text(json.dumps(meta, indent=2))
    film = _films(1, seed0=600_900)[0]
    sp = film.pixel_spacing_mm
    plain = load_localiser(folder)
    assert plain.local is None
    raw = locate_learned(plain, film.image, sp, refine=False)
    shipped = locate_learned(plain, film.image, sp)
    assert shipped == refine_corners(film.image, sp, repair_heights(raw, sp))

    torch.manual_seed(0)
    net = build_local_network(SMALL).eval()
    before = json.loads((folder / "localiser.json").read_text())
    save_local_stage(folder, [net], SMALL)
    after = json.loads((folder / "localiser.json").read_text())
    assert {k: v for k, v in after.items() if k != LOCAL_BLOCK} == before
    assert after[LOCAL_BLOCK]["order"] == "after_refine" and (folder / "localiser_local_fold0.pt").is_file()
    staged = load_localiser(folder)
    assert staged.local is not None and staged.local.config == SMALL
    final = locate_learned(staged, film.image, sp)
    assert final == apply_local_stage(staged.local, film.image, sp, shipped)
    assert [v.name for v in final] == [v.name for v in shipped] and final != shipped
    # the coarse corners alone are untouched by the stage
    assert locate_learned(staged, film.image, sp, refine=False) == raw
    report = validate_localiser(staged, 1, seed_offset=600_900, pixel_spacing_mm=(1.0, 1.5))
    assert report["corner_error_mm_mean_local"] == pytest.approx(corner_error_mm(film.vertebrae, final, sp), abs=1e-3)
    assert "corner_error_mm_mean_local" not in validate_localiser(plain, 1, seed_offset=600_900,
                                                                   pixel_spacing_mm=(1.0, 1.5))
    # the other order: the stage instead of the edge snapping, straight after the repair
    save_local_stage(folder, [net], SMALL, order="replace_refine")
    replaced = locate_learned(load_localiser(folder), film.image, sp)
    assert replaced == apply_local_stage(staged.local, film.image, sp, repair_heights(raw, sp))
    with pytest.raises(InputError, match="order"):
        save_local_stage(folder, [net], SMALL, order="sideways")


def test_score_path_runs_the_local_stage_of_a_model_folder(tmp_path, monkeypatch):
    """``score_radiograph_learned`` with a folder whose localiser has a local stage grades the corners
    of repair → refinement → stage, and the method says so. The stage is replaced by a known shift
    (+0.25 px down every corner) so that its use is visible exactly."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("monai")
    from PIL import Image

    import vascalc.learn.aac_localiser as localiser_mod
    from vascalc.learn.aac_local import build_local_network, save_local_stage
    from vascalc.learn.aac_localiser import load_localiser, locate_learned, refine_corners, repair_heights
    from vascalc.phantoms.types import VertebraLandmark
    from vascalc.radiograph.learned import BUNDLED_MODEL, score_radiograph_learned
    from vascalc.workflows.xray import radiograph_input

    def shifted(stage, image, spacing_mm, vertebrae):
        return tuple(VertebraLandmark(v.name, tuple((r + 0.25, c) for r, c in v.corners_px),
                                      (v.centre_px[0] + 0.25, v.centre_px[1])) for v in vertebrae)

    monkeypatch.setattr(localiser_mod, "apply_local_stage", shifted)
    folder = tmp_path / "model"
    folder.mkdir()
    for path in list(BUNDLED_MODEL.glob("*.pt")) + [BUNDLED_MODEL / "model.json", BUNDLED_MODEL / "localiser.json"]:
        shutil.copy(path, folder / path.name)
    torch.manual_seed(0)
    save_local_stage(folder, [build_local_network(SMALL).eval()], SMALL)
    film = _films(1, seed0=600_901)[0]
    png = tmp_path / "film.png"
    Image.fromarray((film.image * 65535).astype(np.uint16)).save(png)
    sp = film.pixel_spacing_mm
    image = radiograph_input(png, sp[0])[0].image  # the film as the score path reads it
    result = score_radiograph_learned(png, model_dir=folder, pixel_spacing_mm=sp[0])
    assert result.method["localiser"] == "learned_corner_heatmaps_local_stage"
    assert result.method["landmark_check"]["landmarks_used"] == "learned"
    raw = locate_learned(load_localiser(folder), image, sp, refine=False)
    expected = shifted(None, None, None, refine_corners(image, sp, repair_heights(raw, sp)))
    got = result.localisation.vertebrae
    np.testing.assert_allclose([v.corners_px for v in got], [v.corners_px for v in expected], atol=1e-6)
