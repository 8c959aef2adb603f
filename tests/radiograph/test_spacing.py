"""Pixel spacing estimated from the vertebral pitch when a film comes without one (radiograph/spacing.py)."""

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from typer.testing import CliRunner

from vascalc.errors import GeometryError
from vascalc.imaging.radiograph import radiograph_from_array
from vascalc.phantoms import make_vascular_phantom, project_lateral_radiograph
from vascalc.phantoms.lateral_spine import make_lateral_spine
from vascalc.phantoms.types import VertebraLandmark
from vascalc.radiograph.spacing import (
    NOMINAL_GAP_MM,
    SOURCE,
    estimate_pixel_spacing,
    estimate_spacing_model_free,
    pitch_from_landmarks,
)
from vascalc.workflows.xray import score_radiograph


def body(name: str, centre_row: float, col: float = 50.0, half_height: float = 5.0, half_depth: float = 6.0):
    r, c = centre_row, col
    corners = ((r - half_height, c - half_depth), (r - half_height, c + half_depth),
               (r + half_height, c + half_depth), (r + half_height, c - half_depth))
    return VertebraLandmark(name=name, corners_px=corners, centre_px=(r, c))


def test_pitch_from_landmarks_by_hand():
    # centres 10, 22, 36, 50 px: gaps 12, 14, 14 → mean 40/3 px; nominal mean (34.25 + 36.5 + 38.25) / 3 mm
    bodies = [body("L1", 10), body("L2", 22), body("L3", 36), body("L4", 50)]
    measured, nominal, used = pitch_from_landmarks(bodies, ("L1", "L2", "L3", "L4"))
    assert measured == pytest.approx(40 / 3)
    assert nominal == pytest.approx((34.25 + 36.5 + 38.25) / 3)
    assert used == ("L1", "L2", "L3", "L4")
    # a missing level breaks the run: L3–L5 are used, not L1 … L5
    gappy = [body("L1", 10), body("L3", 36), body("L4", 50), body("L5", 64)]
    measured, nominal, used = pitch_from_landmarks(gappy)
    assert used == ("L3", "L4", "L5") and measured == pytest.approx(14.0)
    assert nominal == pytest.approx((NOMINAL_GAP_MM[("L3", "L4")] + NOMINAL_GAP_MM[("L4", "L5")]) / 2)
    with pytest.raises(GeometryError, match="three consecutive"):
        pitch_from_landmarks([body("L1", 10), body("L2", 22)])


def test_estimate_picks_the_self_consistent_candidate():
    # A fake localiser that finds bodies of the size it expects only near the true scale (0.5 mm):
    # there its landmarks have the true pitch (36.33 mm = 72.67 px); elsewhere it finds nothing.
    nominal = (34.25 + 36.5 + 38.25) / 3
    pitch_px = nominal / 0.5

    def locate(spacing):
        if abs(np.log(spacing[0] / 0.5)) > np.log(1.2):
            raise GeometryError("nothing at this scale")
        return [body(n, 40 + k * pitch_px, half_height=26, half_depth=34)
                for k, n in enumerate(("L1", "L2", "L3", "L4"))]

    est = estimate_pixel_spacing((600, 500), locate, localiser="fake", levels=("L1", "L2", "L3", "L4"))
    assert est.pixel_spacing_mm == pytest.approx((0.5, 0.5), rel=1e-4)
    assert est.field_height_mm == pytest.approx(300.0, abs=0.1)
    assert est.source == SOURCE and est.levels == ("L1", "L2", "L3", "L4")
    assert all(abs(np.log(h / 600 / 0.5)) <= np.log(1.2) for h in est.candidates_passed)


def drr_film():
    return project_lateral_radiograph(make_vascular_phantom(3, plaque_rate=2), seed=3)


def test_model_free_workflow_estimates_the_spacing_of_a_drr(tmp_path):
    from vascalc.cli.xray import app

    xr = drr_film()  # 3.2 mm pixels
    est = estimate_spacing_model_free(radiograph_from_array(xr.image))
    assert est.pixel_spacing_mm[0] == pytest.approx(3.2, rel=0.10)
    Image.fromarray((xr.image * 65535).astype(np.uint16)).save(tmp_path / "film.png")
    run = CliRunner().invoke(app, ["score", str(tmp_path / "film.png"), "--model", "baseline",
                                   "-o", str(tmp_path / "o")])
    assert run.exit_code == 0, run.output
    data = json.loads((tmp_path / "o" / "result.json").read_text())
    assert data["input"]["geometry"]["pixel_spacing_mm"] == [est.pixel_spacing_mm[0]] * 2
    assert data["input"]["image"]["spacing_source"] == SOURCE
    assert data["method"]["pixel_spacing_estimate"]["localiser"] == "model-free:profile_v1"
    assert data["geometry"]["unit"] == "mm"
    assert sum(w.startswith("pixel spacing unknown") for w in data["warnings"]) == 1
    assert not any("field of view" in w for w in data["warnings"])
    assert not any("reported in pixels" in n for n in data["input"]["notes"])
    # the grades with the estimated spacing are those with the true one, or within a grade or two
    known = score_radiograph(radiograph_from_array(xr.image, xr.pixel_spacing_mm)).kauppila.aac24
    assert abs(data["total"]["aac24"] - known) <= 2


def test_image_without_a_spine_is_refused_when_the_spacing_is_unknown(spineless_images):
    for image in spineless_images:
        with pytest.raises(GeometryError, match="could not be estimated.*--pixel-spacing"):
            score_radiograph(radiograph_from_array(image))


def test_learned_pipeline_refuses_an_image_without_a_spine_when_the_spacing_is_unknown():
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    from vascalc.radiograph.learned import score_radiograph_learned

    rng = np.random.default_rng(1)
    blobs = ndimage.gaussian_filter(rng.normal(size=(400, 350)), 5)  # the learned localiser always answers:
    with pytest.raises(GeometryError, match="could not be estimated"):  # the check must reject it at every scale
        score_radiograph_learned(radiograph_from_array(blobs))


#: Films whose drawn anatomical size is within 1 % of the nominal one (generator size factor): their
#: estimate must land within ±10 % of the true spacing. Any film's estimate must match its OWN
#: vertebral pitch (spacing × true pitch / nominal pitch) within 4 % — the localiser's share of the error.
KNOWN_FILMS = (("radiograph", 7_000_000, 0.8), ("radiograph", 7_000_003, 0.8), ("dxa", 7_000_002, 0.9))


@pytest.mark.parametrize("chain,seed,spacing", KNOWN_FILMS)
def test_learned_pipeline_estimates_a_generated_film_within_10_percent(chain, seed, spacing):
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    from vascalc.radiograph.learned import score_radiograph_learned

    film = make_lateral_spine(seed, chain=chain, pixel_spacing_mm=spacing)
    result = score_radiograph_learned(radiograph_from_array(film.image))
    est = result.radiograph.pixel_spacing_mm[0]
    assert est == pytest.approx(spacing, rel=0.10)
    true_px, nominal_mm, _ = pitch_from_landmarks(film.vertebrae, ("L1", "L2", "L3", "L4"))
    assert est == pytest.approx(nominal_mm / true_px, rel=0.04)
    data = result.to_dict()
    assert data["input"]["image"]["spacing_source"] == SOURCE
    assert data["method"]["pixel_spacing_estimate"]["pixel_spacing_mm"] == [est, est]
    assert data["method"]["pixel_spacing_estimate"]["localiser"].startswith("learned:")
    assert sum(w.startswith("pixel spacing unknown") for w in result.warnings) == 1
    assert any("rests on this estimate" in w for w in result.warnings)
    known = score_radiograph_learned(radiograph_from_array(film.image, spacing))
    assert abs(result.kauppila.aac24 - known.kauppila.aac24) <= 3


def test_validation_report_adds_up_and_refuses_held_out_seeds():
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    from vascalc.errors import InputError
    from vascalc.radiograph.spacing import validate_spacing_estimate

    report = validate_spacing_estimate(2, seed_offset=7_000_000, pixel_spacing_mm=0.8, score=False)
    films = report["films"]
    assert [f["seed"] for f in films] == [7_000_000, 7_000_001] and report["fraction_estimated"] == 1.0
    err = [abs(f["estimate_mm"] / 0.8 - 1) for f in films]
    assert report["spacing_error_max"] == pytest.approx(max(err), abs=1e-4)
    # the error splits into the localiser's pitch and the anatomy: estimate / truth = 1 / (pitch × anatomy)
    for f in films:
        assert f["estimate_mm"] / 0.8 == pytest.approx(1 / (f["pitch_ratio"] * f["anatomy_ratio"]), rel=1e-3)
        assert f["pitch_ratio"] == pytest.approx(1.0, abs=0.05)
    assert "aac24_mae_known" not in report
    with pytest.raises(InputError, match="held out"):
        validate_spacing_estimate(3, seed_offset=999_999)
