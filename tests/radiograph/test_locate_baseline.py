"""Model-free localiser and wall grader on phantom DRRs and synthetic profiles; the xray workflow and CLI."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vascalc.errors import GeometryError
from vascalc.imaging.radiograph import radiograph_from_array
from vascalc.phantoms import make_vascular_phantom, project_lateral_radiograph
from vascalc.phantoms.types import VertebraLandmark
from vascalc.radiograph.baseline import BaselineParams, grade_baseline
from vascalc.radiograph.kauppila import spine_geometry
from vascalc.radiograph.locate import locate_vertebrae

#: Localiser tolerance on the L1–L4 body centres, mm (about 1.5 DRR pixels of 3.2 mm).
CENTRE_TOLERANCE_MM = 8.0


@pytest.fixture(scope="module")
def drrs():
    return {seed: project_lateral_radiograph(make_vascular_phantom(seed, plaque_rate=2), seed=seed)
            for seed in (3, 11, 23)}


@pytest.mark.parametrize("flip", [False, True], ids=["facing_left", "facing_right"])
def test_localiser_finds_l1_l4_on_drrs(drrs, flip):
    for seed, xr in drrs.items():
        image = xr.image[:, ::-1] if flip else xr.image
        loc = locate_vertebrae(radiograph_from_array(image, xr.pixel_spacing_mm))
        assert loc.facing == ("right" if flip else "left")
        found = loc.by_name()
        for truth in xr.vertebrae:
            centre = np.array(truth.centre_px)
            if flip:
                centre[1] = image.shape[1] - 1 - centre[1]
            error_mm = np.linalg.norm((np.array(found[truth.name].centre_px) - centre) * xr.pixel_spacing_mm)
            assert error_mm < CENTRE_TOLERANCE_MM, (seed, truth.name, error_mm)
        if flip:  # a mirrored film gives exactly the mirrored landmarks
            plain = locate_vertebrae(radiograph_from_array(xr.image, xr.pixel_spacing_mm)).by_name()
            for name, v in plain.items():
                mirrored = [(r, round(image.shape[1] - 1 - c, 3)) for r, c in v.corners_px]
                assert np.allclose(found[name].corners_px, mirrored, atol=1e-3)
        # corners keep their anatomical order: anterior corners on the facing side
        l2 = np.array(found["L2"].corners_px)
        assert (l2[0, 1] < l2[1, 1]) == (not flip)


def test_localiser_refuses_an_image_without_a_spine(spineless_images):
    for image in spineless_images:
        with pytest.raises(GeometryError, match="vertebral bodies"):
            locate_vertebrae(radiograph_from_array(image, 3.0))


def synthetic_film(calcified_rows: slice, column: int, *, seed: int = 0) -> np.ndarray:
    """Smooth background (slow gradient), noise, and a bright calcified wall run of known rows."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:140, 0:100]
    image = 0.4 + 0.002 * rows + 0.001 * cols + rng.normal(0, 0.005, size=rows.shape)
    image[calcified_rows, column] += 0.08
    return image


def test_baseline_grades_a_known_wall_run():
    # vertical spine, bodies 20 px, discs 10 px, 1 mm pixels: segments 30 mm high; boundaries at
    # rows 5, 35, 65, 95, 125 so that the 1 mm profile samples fall on pixel centres
    verts = [VertebraLandmark(n, ((t, 50.0), (t, 80.0), (t + 20, 80.0), (t + 20, 50.0)), (t + 10, 65.0))
             for n, t in (("L1", 10.0), ("L2", 40.0), ("L3", 70.0), ("L4", 100.0))]
    g = spine_geometry(verts, (1.0, 1.0))
    # posterior wall run 5 mm in front of the body, rows 70–89 → L3 posterior f = 20/30 → grade 3
    rg = radiograph_from_array(synthetic_film(slice(70, 90), 45), (1.0, 1.0))
    params = BaselineParams()
    result = grade_baseline(rg, g, params).result
    assert result.fractions["L3_posterior"] == pytest.approx(20 / 30, abs=1e-6)
    assert result.grades["L3_posterior"] == 3
    assert result.aac24 == 3 and sum(result.grades.values()) == 3
    # the same run 25 mm in front (beyond the 14 mm centreline) is anterior wall
    rg2 = radiograph_from_array(synthetic_film(slice(70, 80), 25), (1.0, 1.0))
    r2 = grade_baseline(rg2, g, params).result
    assert r2.grades["L3_anterior"] == 2 and r2.aac24 == 2
    # determinism
    assert grade_baseline(rg, g, params).result.fractions == result.fractions


def test_workflow_and_cli_on_a_16_bit_png(tmp_path, drrs):
    from vascalc.cli.xray import app

    xr = drrs[3]
    Image.fromarray((xr.image * 65535).astype(np.uint16)).save(tmp_path / "film.png")
    out = tmp_path / "out"
    run = CliRunner().invoke(app, ["score", str(tmp_path / "film.png"), "--pixel-spacing", "3.2", "--model", "baseline",
                                   "-o", str(out)])
    assert run.exit_code == 0, run.output
    data = json.loads((out / "result.json").read_text())
    assert data["kind"] == "xray" and data["schema_version"] == "1.0"
    assert [s["name"] for s in data["structures"]] == [f"L{i}_{w}" for i in range(1, 5) for w in ("anterior", "posterior")]
    assert data["total"]["aac24"] == sum(s["grade"] for s in data["structures"])
    assert data["categories"]["aac24_severity"]["scheme"] == "low_moderate_high"
    assert data["method"]["model_id"] == "model-free:profile_v1"
    assert data["input"]["geometry"]["facing"] == "left"
    assert (out / "qc.png").stat().st_size > 5000
    again = CliRunner().invoke(app, ["score", str(tmp_path / "film.png"), "-o", str(out)])
    assert again.exit_code != 0 and "not empty" in again.output
    # no spacing given: estimated from the vertebral pitch (3.2 mm within 10 %), and said so (test_spacing.py)
    unknown = CliRunner().invoke(app, ["score", str(tmp_path / "film.png"), "--model", "baseline", "-o", str(tmp_path / "o3")])
    assert unknown.exit_code == 0, unknown.output
    data3 = json.loads((tmp_path / "o3" / "result.json").read_text())
    assert data3["input"]["geometry"]["pixel_spacing_mm"][0] == pytest.approx(3.2, rel=0.10)
    assert any("estimated" in w and "vertebral pitch" in w for w in data3["warnings"])
    Image.fromarray((xr.image * 255).astype(np.uint8)).save(tmp_path / "film8.png")
    two = CliRunner().invoke(app, ["score", str(tmp_path / "film.png"), str(tmp_path / "film8.png"),
                                   "--pixel-spacing", "3.2", "--model", "baseline", "-o", str(tmp_path / "o4")])
    assert two.exit_code == 0, two.output
    totals = [json.loads((tmp_path / "o4" / n / "result.json").read_text())["total"]["aac24"] for n in ("film", "film8")]
    assert abs(totals[0] - totals[1]) <= 2  # 8-bit quantisation changes little
    bad = CliRunner().invoke(app, ["score", str(tmp_path / "film.png"), "--bands", "nonsense", "-o", str(tmp_path / "o2")])
    assert bad.exit_code != 0 and "bands" in bad.output
